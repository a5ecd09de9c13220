package system_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/flowvault/flowvault/masking"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/workers/system"
)

func inlineTask(expr string, extra map[string]any) *conductor.Task {
	in := map[string]any{"evaluatorType": "graaljs", "expression": expr}
	for k, v := range extra {
		in[k] = v
	}
	return &conductor.Task{TaskType: conductor.TaskTypeInline, ReferenceTaskName: "calc", InputData: in}
}

func TestInlineResults(t *testing.T) {
	t.Parallel()
	vars := map[string]any{"numberOne": int64(1), "numberTwo": int64(2), "name": "ada", "list": []any{int64(1), int64(2), int64(3)},
		"obj": map[string]any{"k": "v"}, "big": int64(1 << 40)}
	tests := []struct {
		name, expr string
		want       any
	}{
		{"SDK IIFE", "(function(){return $.numberOne+$.numberTwo;})();", int64(3)},
		{"expression", "$.numberOne + $.numberTwo", int64(3)},
		{"float", "$.numberOne / 4", 0.25},
		{"large integer", "$.big * 2", int64(1 << 41)},
		{"string", "'hello ' + $.name", "hello ada"},
		{"boolean", "$.list.length === 3", true},
		{"null", "null", nil},
		{"undefined", "undefined", nil},
		{"array methods", "$.list.map(function (x) { return x * 2 }).filter(x => x > 2)", []any{int64(4), int64(6)}},
		{"object", "({a: $.obj.k, n: [1, 2.5, {x: null}], nan: NaN})", map[string]any{"a": "v", "n": []any{int64(1), 2.5, map[string]any{"x": nil}}, "nan": nil}},
		{"date", "new Date(0)", "1970-01-01T00:00:00.000Z"},
		{"input is a native object", "Object.keys($).length > 3 && Array.isArray($.list) && JSON.stringify($.obj)", `{"k":"v"}`},
		{"console is harmless", "console.log('x'); console.error('y'); 1", int64(1)},
		{"no require", "typeof require + typeof process + typeof fetch + typeof ArrayBuffer + typeof Uint8Array", "undefinedundefinedundefinedundefinedundefined"},
		{"statements", "var s = 0; for (var i = 0; i < 10; i++) { s += i } s", int64(45)},
		// No Intl: a locale and options are ignored, as for dates and
		// strings; goja read the locale as a radix and threw.
		{"number toLocaleString with a locale", "(1234.5).toLocaleString('en-US') + ' ' + $.big.toLocaleString('de-DE', {maximumFractionDigits: 2})", "1234.5 1099511627776"},
		{"number toLocaleString", "(-0.25).toLocaleString() + (7).toLocaleString(undefined)", "-0.257"},
		{"number toLocaleString of a non-number", "try { Number.prototype.toLocaleString.call('1') } catch (e) { e.name }", "TypeError"},
	}
	for _, tt := range tests {
		res := system.Inline{}.Execute(context.Background(), inlineTask(tt.expr, vars))
		if res.Status != conductor.TaskCompleted {
			t.Errorf("%s: %s %s", tt.name, res.Status, res.ReasonForIncompletion)
			continue
		}
		if got := res.OutputData["result"]; !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: result = %#v (%T), want %#v (%T)", tt.name, got, got, tt.want, tt.want)
		}
	}

	// value-param and LAMBDA.
	res := system.Inline{}.Execute(context.Background(), &conductor.Task{TaskType: conductor.TaskTypeInline,
		InputData: map[string]any{"evaluatorType": "value-param", "expression": "name", "name": "ada"}})
	if res.Status != conductor.TaskCompleted || res.OutputData["result"] != "ada" {
		t.Fatalf("value-param: %+v", res)
	}
	res = system.Inline{}.Execute(context.Background(), &conductor.Task{TaskType: conductor.TaskTypeLambda,
		InputData: map[string]any{"scriptExpression": "if ($.n > 1) { return {twice: $.n * 2} } return null;", "n": int64(21)}})
	if res.Status != conductor.TaskCompleted || !reflect.DeepEqual(res.OutputData["result"], map[string]any{"twice": int64(42)}) {
		t.Fatalf("lambda: %+v", res)
	}
	// The result is plain JSON: it survives a round trip unchanged.
	res = system.Inline{}.Execute(context.Background(), inlineTask("({a: [1, {b: 'c'}]})", nil))
	b, _ := json.Marshal(res.OutputData)
	if string(b) != `{"result":{"a":[1,{"b":"c"}]}}` {
		t.Fatalf("output JSON %s", b)
	}
}

func TestInlineErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		task *conductor.Task
		want string
	}{
		{"throw", inlineTask("throw new Error('boom')", nil), "Error: boom"},
		{"throw a string", inlineTask("throw 'plain'", nil), "plain"},
		{"reference error", inlineTask("nope.x", nil), "ReferenceError: nope is not defined"},
		{"type error", inlineTask("null.x", nil), "TypeError"},
		{"syntax error", inlineTask("function (", nil), "SyntaxError: script: Line 1:10 Unexpected token"},
		{"no expression", &conductor.Task{TaskType: conductor.TaskTypeInline, InputData: map[string]any{"evaluatorType": "javascript"}}, "inputParameters.expression is required"},
		{"python", inlineTask("1", map[string]any{"evaluatorType": "python"}), `evaluatorType "python" is not supported`},
		{"lambda without script", &conductor.Task{TaskType: conductor.TaskTypeLambda, InputData: map[string]any{}}, "scriptExpression is required"},
		{"circular result", inlineTask("var o = {}; o.o = o; o", nil), "circular"},
		// Both crashed the process: goja's flat recursed in Go through the
		// cycle, its parser through the parentheses.
		{"flat of a cyclic array", inlineTask("var a = []; a[0] = a; a.flat(Infinity)", nil), "circular"},
		{"deeply nested source", inlineTask(strings.Repeat("(", 400000)+"1"+strings.Repeat(")", 400000), nil), "over the limit"},
		{"nested brackets", inlineTask(strings.Repeat("[", 300)+"1"+strings.Repeat("]", 300), nil), "nests brackets"},
		{"bigint result", inlineTask("10n", nil), "BigInt"},
	}
	for _, tt := range tests {
		res := system.Inline{}.Execute(context.Background(), tt.task)
		if res.Status != conductor.TaskFailed || !strings.Contains(res.ReasonForIncompletion, tt.want) {
			t.Errorf("%s: %s %q, want FAILED with %q", tt.name, res.Status, res.ReasonForIncompletion, tt.want)
			continue
		}
		if e, _ := res.OutputData["error"].(string); !strings.Contains(e, tt.want) || strings.Contains(e, "SyntaxError: SyntaxError") {
			t.Errorf("%s: output error %q", tt.name, e)
		}
	}
	// A thrown value's text is the error, without where it was thrown,
	// as GraalJS gives it to Conductor.
	for _, tt := range []struct{ src, want string }{
		{"throw new Error('boom')", "Error: boom"},
		{"(function(){ throw new TypeError('bad ' + $.x) })()", "TypeError: bad 1"},
		{"throw 'plain'", "plain"},
		{"nope.x", "ReferenceError: nope is not defined"},
	} {
		res := system.Inline{}.Execute(context.Background(), inlineTask(tt.src, map[string]any{"x": int64(1)}))
		if e, _ := res.OutputData["error"].(string); res.Status != conductor.TaskFailed || e != tt.want {
			t.Errorf("%s: %s, error %q, want %q", tt.src, res.Status, e, tt.want)
		}
	}
}

// An INLINE's expression is input, its references resolved at hand-off: a
// secret spliced into it that its own quote or '.' turns into code has
// goja's errors name a part of it (the name after the quote, the part
// before or after the '.'), which redaction, finding whole values only,
// would leave as it is. Such a name reads ***, whichever text the task
// was configured with (its inputParameters, its registered definition's
// inputTemplate, a LAMBDA's scriptExpression), when a name of that text
// holds it (work, of workflow), and when the task was configured without
// the text (a dynamic fork's, whose script is the fork's input); the
// script's own names, and what it threw, are kept.
func TestInlineErrorsQuoteNoSplicedName(t *testing.T) {
	t.Parallel()
	configured := func(task *conductor.Task, field, key, text string) *conductor.Task {
		js, _ := json.Marshal(map[string]any{"name": "calc", field: map[string]any{key: text}})
		if field == "inputTemplate" {
			task.TaskDefinition = js
		} else {
			task.WorkflowTask = js
		}
		return task
	}
	spliced := func(text, resolved string) *conductor.Task {
		return configured(inlineTask(resolved, map[string]any{"s": "from-input"}), "inputParameters", "expression", text)
	}
	lambda := &conductor.Task{TaskType: conductor.TaskTypeLambda, ReferenceTaskName: "calc", InputData: map[string]any{"scriptExpression": "return sklive.abcdefgh;"}}
	tests := []struct {
		name         string
		task         *conductor.Task
		want, hidden string
	}{
		{"a quote ends the string", spliced("'${workflow.secrets.pw}'.length", "'p4ss'+w0rdX9tail+''.length"), "ReferenceError: *** is not defined", "w0rdX9tail"},
		{"a part of a configured name", spliced("'${workflow.secrets.pw}'.length", "'p4ss'+work+''.length"), "ReferenceError: *** is not defined", "work"},
		{"a '.' cuts the value", spliced("var k = ${workflow.secrets.pw}; k", "var k = sklive.abcdefgh; k"), "ReferenceError: *** is not defined", "sklive"},
		{"a property", spliced("var o = {}; o.${workflow.secrets.pw}()", "var o = {}; o.q.rstuvwxyz()"), "TypeError: Cannot read property '***' of undefined", "rstuvwxyz"},
		{"an escaped name", spliced("'${workflow.secrets.pw}'.length", `'p4ss'+w\u0030rdX9tail+''.length`), "ReferenceError: *** is not defined", "w0rdX9tail"},
		{"a name escaped with braces", spliced("'${workflow.secrets.pw}'.length", `'p4ss'+\u{77}0rdX9tail+''.length`), "ReferenceError: *** is not defined", "w0rdX9tail"},
		{"an escaped property", spliced("'${workflow.secrets.pw}'.length", `'p4ss'+$['w\x30rdX9tail']()+''.length`), "TypeError: Object has no member '***'", "w0rdX9tail"},
		{"an octal and an identity escape", spliced("'${workflow.secrets.pw}'.length", `'p4ss'+$['w\60r\dX9tail']()+''.length`), "TypeError: Object has no member '***'", "w0rdX9tail"},
		{"a registered definition's template", configured(inlineTask("var k = sklive.abcdefgh; k", nil), "inputTemplate", "expression",
			"var k = ${workflow.secrets.pw}; k"), "ReferenceError: *** is not defined", "sklive"},
		{"a LAMBDA", configured(lambda, "inputParameters", "scriptExpression", "return ${workflow.secrets.pw};"), "ReferenceError: *** is not defined", "sklive"},
		{"a dynamic fork's, configured without the text", configured(inlineTask("'p4ss'+w0rdX9tail+''.length", nil), "inputParameters", "other", "x"),
			"ReferenceError: *** is not defined", "w0rdX9tail"},
		{"the script's own name", spliced("nope.x + '${workflow.secrets.pw}'", "nope.x + 'p4ssw0rd'"), "ReferenceError: nope is not defined", ""},
		{"what the script threw", spliced("throw new Error($.s + '${workflow.secrets.pw}')", "throw new Error($.s + 'p4ssw0rd')"), "Error: from-inputp4ssw0rd", ""},
		{"nothing spliced", spliced("nope.x", "nope.x"), "ReferenceError: nope is not defined", ""},
	}
	for _, tt := range tests {
		res := system.Inline{}.Execute(context.Background(), tt.task)
		e, _ := res.OutputData["error"].(string)
		if res.Status != conductor.TaskFailed || !strings.HasPrefix(e, tt.want) || !strings.Contains(res.ReasonForIncompletion, tt.want) {
			t.Errorf("%s: %s, reason %q, error %q, want %q", tt.name, res.Status, res.ReasonForIncompletion, e, tt.want)
		}
		if tt.hidden != "" && strings.Contains(res.ReasonForIncompletion+e, tt.hidden) {
			t.Errorf("%s: the reason or the error names %s", tt.name, tt.hidden)
		}
	}
}

// JSON.parse's errors quote the character the text stopped at, one of a
// secret's where the text is one (read from the input, or written into
// the script at hand-off): it reads ***, thrown or caught, in a script
// and in a condition.
func TestJSONParseErrorsQuoteNoCharacter(t *testing.T) {
	t.Parallel()
	in := map[string]any{"s": `{"user":"bob",Zpass}`}
	tests := []struct{ name, expr, want, hidden string }{
		{"thrown", "JSON.parse($.s)", "SyntaxError: invalid character '***' looking for beginning of object key string", "'Z'"},
		{"caught", "try { JSON.parse($.s) } catch (e) { throw e.message }", "invalid character '***' looking for beginning of object key string", "'Z'"},
		{"written into the script", `JSON.parse('{"a":Zpass}')`, "SyntaxError: invalid character '***' looking for beginning of value", "'Z'"},
		{"a single quote", `JSON.parse("{'a':1}")`, "SyntaxError: invalid character '***'", `'\''`},
		{"a control character", `JSON.parse('"\x01"')`, "SyntaxError: invalid character '***' in string literal", `\x01`},
	}
	for _, tt := range tests {
		res := system.Inline{}.Execute(context.Background(), inlineTask(tt.expr, in))
		if res.Status != conductor.TaskFailed || !strings.Contains(res.ReasonForIncompletion, tt.want) {
			t.Errorf("%s: %s %q, want FAILED with %q", tt.name, res.Status, res.ReasonForIncompletion, tt.want)
		}
		if strings.Contains(res.ReasonForIncompletion+fmt.Sprint(res.OutputData), tt.hidden) {
			t.Errorf("%s: the reason or output quotes %s", tt.name, tt.hidden)
		}
	}
	_, err := system.Condition(context.Background(), system.Budget{}, "JSON.parse($.s).user == 'bob'", in)
	if err == nil || !strings.Contains(err.Error(), "invalid character '***'") || strings.Contains(err.Error(), "'Z'") {
		t.Errorf("a condition: %v, want invalid character '***'", err)
	}
}

// Runaway scripts fail their task within their budget; the process (this
// test) carries on.
func TestScriptBudgets(t *testing.T) {
	// The memory cases get ample time, so that a slow machine (or the race
	// detector) cannot make them hit the time budget first.
	budget := system.Budget{Time: 500 * time.Millisecond, Memory: 16 << 20}
	memory := system.Budget{Time: 10 * time.Minute, Memory: 16 << 20}
	tests := []struct {
		name, expr string
		want       string
	}{
		{"infinite loop", "while (true) {}", "time budget"},
		{"busy recursion-free loop", "var i = 0; for (;;) { i++ }", "time budget"},
		{"runaway allocation", "var a = []; while (true) { a.push('x'.repeat(100000) + a.length) }", "memory budget"},
		{"runaway object growth", "var o = {}; for (var i = 0; ; i++) { o['k' + i] = [i, i, i, i] }", "memory budget"},
		{"doubling string", "var s = 'x'; while (true) { s = s + s }", "memory budget"},
		{"huge repeat", "'x'.repeat(1e10)", "exceeds the script memory budget"},
		{"huge pad", "''.padStart(1e10)", "exceeds the script memory budget"},
		{"sparse join", "new Array(1e9).join(',')", "exceeds the script memory budget"},
		{"sparse fill", "new Array(1e9).fill(0)", "exceeds the script memory budget"},
		{"sparse spread", "[...new Array(1e9)]", "exceeds the script memory budget"},
		{"sparse apply", "Math.max.apply(null, new Array(1e9))", "exceeds the script memory budget"},
		{"sparse stringify", "JSON.stringify({a: [new Array(1e9)]})", "exceeds the script memory budget"},
		{"sparse result", "var a = []; a[1e9] = 1; a", "exceeds the script memory budget"},
		{"array from", "Array.from({length: 1e9})", "exceeds the script memory budget"},
		{"recursion", "function f() { return f() } f()", "maximum call stack size exceeded"},
		{"backtracking regexp", "/(a*)*\\1b/.test('a'.repeat(40))", "budget"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			b := budget
			if strings.Contains(tt.want, "memory") || strings.Contains(tt.want, "call stack") {
				b = memory
			}
			res := system.Inline{Budget: b}.Execute(context.Background(), inlineTask(tt.expr, nil))
			took := time.Since(start)
			if res.Status != conductor.TaskFailed || !strings.Contains(res.ReasonForIncompletion, tt.want) {
				t.Fatalf("%s (%v): %s %q, want FAILED with %q", tt.name, took, res.Status, res.ReasonForIncompletion, tt.want)
			}
		})
	}
	// The engine's context ends a run too.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	res := system.Inline{}.Execute(ctx, inlineTask("while (true) {}", nil))
	if res.Status != conductor.TaskFailed || !strings.Contains(res.ReasonForIncompletion, "deadline") {
		t.Fatalf("canceled run: %s %q", res.Status, res.ReasonForIncompletion)
	}
	// A script that makes a lot of garbage but keeps little is not stopped.
	res = system.Inline{Budget: system.Budget{Time: 10 * time.Minute, Memory: 8 << 20}}.Execute(context.Background(),
		inlineTask("var n = 0; for (var i = 0; i < 400; i++) { n += 'y'.repeat(100000).length } n", nil))
	if res.Status != conductor.TaskCompleted || res.OutputData["result"] != int64(40000000) {
		t.Fatalf("garbage-heavy script: %s %q", res.Status, res.ReasonForIncompletion)
	}
}

// A pattern a script builds from a secret and goja cannot compile fails
// the script (or reaches a catch) naming the kind of error, not quoting
// the pattern: goja quoted it as rewritten for its engine (\s as a class
// of every space) and the engines the piece they stopped at, the secret's
// tail, neither of which redaction, finding whole values, recognizes.
func TestScriptRegexpErrorsQuoteNoPattern(t *testing.T) {
	t.Parallel()
	const grouping = "sk_live(?<Q7vT2mW9xK4p"       // regexp2: unrecognized grouping construct: (?<Q7vT…
	const rewritten = "sk_live\\sQ7vT2m[z-a]W9xK4p" // re2: the pattern with \s rewritten
	in := map[string]any{"grouping": grouping, "rewritten": rewritten}
	tests := []struct{ src, want string }{
		{"new RegExp($.grouping)", "SyntaxError: Invalid regular expression: unrecognized grouping construct: (…"},
		{"RegExp($.rewritten)", "SyntaxError: Invalid regular expression: invalid character class range"},
		{"'text'.match($.grouping)", "SyntaxError: Invalid regular expression: unrecognized grouping construct: (…"},
		{"'text'.search($.rewritten)", "SyntaxError: Invalid regular expression: invalid character class range"},
		{"[...'text'.matchAll($.grouping)]", "SyntaxError: Invalid regular expression: unrecognized grouping construct: (…"},
		{"/x/.compile($.grouping)", "SyntaxError: Invalid regular expression: unrecognized grouping construct: (…"},
		{"class R extends RegExp {}; new R($.rewritten)", "SyntaxError: Invalid regular expression: invalid character class range"},
		{"eval('/' + $.grouping + '/')", "SyntaxError: Invalid regular expression: unrecognized grouping construct: (…"},
		{"new Function('return /' + $.rewritten + '/')", "SyntaxError: Invalid regular expression: invalid character class range"},
		// An INLINE task's expression is input, resolved at hand-off.
		{"/" + grouping + "/.test('x')", "SyntaxError: Invalid regular expression: unrecognized grouping construct: (… at script:1:1"},
		// goja's parser's own errors quote nothing.
		{"new RegExp('(' + $.grouping.slice(10))", "SyntaxError: Unterminated group"},
	}
	for _, tt := range tests {
		res := system.Inline{}.Execute(context.Background(), inlineTask(tt.src, in))
		if res.Status != conductor.TaskFailed || res.OutputData["error"] != tt.want {
			t.Errorf("%s: %s %q, want FAILED with %q", tt.src, res.Status, res.OutputData["error"], tt.want)
		}
		if strings.Contains(res.ReasonForIncompletion+fmt.Sprint(res.OutputData), "Q7vT") {
			t.Errorf("%s: the reason or output quotes the pattern: %q", tt.src, res.ReasonForIncompletion)
		}
	}
	// A script that catches the error has the same message.
	res := system.Inline{}.Execute(context.Background(), inlineTask("try { new RegExp($.grouping) } catch (e) { e.message }", in))
	if want := "Invalid regular expression: unrecognized grouping construct: (…"; res.Status != conductor.TaskCompleted || res.OutputData["result"] != want {
		t.Errorf("caught: %s %v, want %q", res.Status, res.OutputData["result"], want)
	}
}

// A backtracking match that runs out of time fails the script, naming
// its budget, instead of reading as no match: the right answer here is
// true, and a SWITCH on a wrong false would take the wrong case. (The
// match's backtracking stack grows meanwhile: whether the time or the
// memory budget stops it first is a race.)
func TestRegexpOutOfTimeFailsTheScript(t *testing.T) {
	t.Parallel()
	res := system.Inline{Budget: system.Budget{Time: 3 * time.Second}}.Execute(context.Background(),
		inlineTask("/(a+)+(?=b)\\1|c/.test('a'.repeat(30) + 'c')", nil))
	if res.Status != conductor.TaskFailed || !strings.Contains(res.ReasonForIncompletion, "budget") {
		t.Fatalf("%s %q %v, want FAILED naming its budget", res.Status, res.ReasonForIncompletion, res.OutputData)
	}
}

func TestSwitchScript(t *testing.T) {
	t.Parallel()
	cfg := func(js string) conductor.WorkflowTaskJSON { return conductor.WorkflowTaskJSON(js) }
	tests := []struct {
		name string
		task *conductor.Task
		want string
	}{
		{"string case", &conductor.Task{TaskType: "SWITCH", WorkflowTask: cfg(`{"evaluatorType":"graaljs","expression":"$.n > 5 ? 'big' : 'small'"}`),
			InputData: map[string]any{"n": int64(8)}}, "big"},
		{"number case", &conductor.Task{TaskType: "SWITCH", WorkflowTask: cfg(`{"evaluatorType":"javascript","expression":"$.n + 1"}`),
			InputData: map[string]any{"n": int64(2)}}, "3"},
		{"boolean case", &conductor.Task{TaskType: "SWITCH", WorkflowTask: cfg(`{"evaluatorType":"javascript","expression":"$.n == 2"}`),
			InputData: map[string]any{"n": int64(2)}}, "true"},
		{"null case", &conductor.Task{TaskType: "SWITCH", WorkflowTask: cfg(`{"evaluatorType":"javascript","expression":"$.missing"}`),
			InputData: map[string]any{}}, "null"},
		{"decision caseExpression", &conductor.Task{TaskType: "DECISION", WorkflowTask: cfg(`{"caseExpression":"$.n % 2 == 0 ? 'even' : 'odd'"}`),
			InputData: map[string]any{"n": int64(3)}}, "odd"},
		// As Conductor's DecisionTaskMapper: the expression first.
		{"decision caseExpression and caseValueParam", &conductor.Task{TaskType: "DECISION", WorkflowTask: cfg(`{"caseValueParam":"n","caseExpression":"$.n % 2 == 0 ? 'even' : 'odd'"}`),
			InputData: map[string]any{"n": int64(3)}}, "odd"},
		{"decision caseValueParam", &conductor.Task{TaskType: "DECISION", WorkflowTask: cfg(`{"caseValueParam":"n","caseExpression":" "}`),
			InputData: map[string]any{"n": int64(3)}}, "3"},
		{"value-param", &conductor.Task{TaskType: "SWITCH", WorkflowTask: cfg(`{"evaluatorType":"value-param","expression":"c"}`),
			InputData: map[string]any{"c": "x"}}, "x"},
		// A double is Java's (Conductor's "" + value), whether a script
		// gave it (GraalJS's Double), the case value was sealed data
		// (opened as the workflow read it: an integer's text an int64,
		// and a whole 2.0 is sealed as 2) or a plain value equal to
		// sealed data, handed as it is.
		{"script's double", &conductor.Task{TaskType: "SWITCH", WorkflowTask: cfg(`{"evaluatorType":"javascript","expression":"$.n / 10000"}`),
			InputData: map[string]any{"n": int64(1)}}, "1.0E-4"},
		{"script's large double", &conductor.Task{TaskType: "SWITCH", WorkflowTask: cfg(`{"evaluatorType":"javascript","expression":"1e21"}`)}, "1.0E21"},
		{"opened value-param double", &conductor.Task{TaskType: "SWITCH", WorkflowTask: cfg(`{"evaluatorType":"value-param","expression":"c"}`),
			InputData: map[string]any{"c": opened(t, "0.0001")}}, "1.0E-4"},
		{"opened value-param integer", &conductor.Task{TaskType: "SWITCH", WorkflowTask: cfg(`{"evaluatorType":"value-param","expression":"c"}`),
			InputData: map[string]any{"c": opened(t, "2")}}, "2"},
		{"opened value-param whole number", &conductor.Task{TaskType: "SWITCH", WorkflowTask: cfg(`{"evaluatorType":"value-param","expression":"c"}`),
			InputData: map[string]any{"c": opened(t, "2.0")}}, "2"},
		{"opened caseValueParam whole number", &conductor.Task{TaskType: "DECISION", WorkflowTask: cfg(`{"caseValueParam":"n"}`),
			InputData: map[string]any{"n": opened(t, "3.0")}}, "3"},
		{"plain value-param double", &conductor.Task{TaskType: "SWITCH", WorkflowTask: cfg(`{"evaluatorType":"value-param","expression":"c"}`),
			InputData: map[string]any{"c": 2.0}}, "2.0"},
		// Members named in another case are not the configuration's, as
		// Jackson reads them: the engine reads it so too.
		{"members in another case", &conductor.Task{TaskType: "DECISION",
			WorkflowTask: cfg(`{"caseValueParam":"n","CaseExpression":"'expr'","Expression":"'expr'","caseexpression":"'expr'"}`),
			InputData:    map[string]any{"n": int64(3)}}, "3"},
	}
	for _, tt := range tests {
		res := system.Switch{}.Execute(context.Background(), tt.task)
		want := map[string]any{"evaluationResult": []any{tt.want}, "selectedCase": tt.want}
		if tt.task.TaskType == conductor.TaskTypeDecision {
			want["caseOutput"] = []any{tt.want} // Conductor's DecisionTaskMapper's
		}
		if res.Status != conductor.TaskCompleted || !reflect.DeepEqual(res.OutputData, want) {
			t.Errorf("%s: %s %s %v", tt.name, res.Status, res.ReasonForIncompletion, res.OutputData)
		}
	}
	res := system.Switch{}.Execute(context.Background(), &conductor.Task{TaskType: "SWITCH", ReferenceTaskName: "sw",
		WorkflowTask: cfg(`{"evaluatorType":"javascript","expression":"$.a.b.c"}`), InputData: map[string]any{}})
	if res.Status != conductor.TaskFailed || !strings.Contains(res.ReasonForIncompletion, "TypeError") {
		t.Fatalf("failing case expression: %s %q", res.Status, res.ReasonForIncompletion)
	}
}

// opened is the value the JSON text js, as the workflow reads it, opens as
// at a hand-off once sealed (a maskedFields field's).
func opened(t *testing.T, js string) any {
	t.Helper()
	var v any
	if err := conductor.Unmarshal([]byte(js), &v); err != nil {
		t.Fatal(err)
	}
	sealed, err := masking.SealFields(clearSealer{}, nil, "wf/x/input", map[string]any{"v": v}, []string{"v"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	o, err := masking.Open(sealed, clearSealer{}.Open)
	if err != nil {
		t.Fatal(err)
	}
	return o.(map[string]any)["v"]
}

// clearSealer seals a value as its plaintext: what a hand-off opens is
// what the value was sealed as, whatever the cipher.
type clearSealer struct{}

func (clearSealer) Seal(_ byte, _ string, plain []byte) ([]byte, error) {
	return bytes.Clone(plain), nil
}
func (clearSealer) Open(_ byte, _ string, ct []byte) ([]byte, error) { return bytes.Clone(ct), nil }

func TestLoopCondition(t *testing.T) {
	t.Parallel()
	task := func(cond string) *conductor.Task {
		cfg, _ := json.Marshal(map[string]any{"loopCondition": cond})
		return &conductor.Task{TaskType: "DO_WHILE", ReferenceTaskName: "loop", WorkflowTask: cfg,
			InputData: map[string]any{"max": int64(3), "loop": map[string]any{"iteration": int64(2), "2": map[string]any{"b": map[string]any{"ok": true}}},
				"b": map[string]any{"ok": true}}}
	}
	res := system.LoopCondition{}.Execute(context.Background(), task("$.loop['iteration'] < $.max && $.b.ok"))
	if res.Status != conductor.TaskInProgress || len(res.OutputData) != 0 {
		t.Fatalf("true condition: %+v", res)
	}
	// What the condition adds to the loop's output is reported; the keys
	// the engine keeps there are not, changed or not.
	res = system.LoopCondition{}.Execute(context.Background(), task("if ($.loop.iteration >= 2) { $.loop.storage = 3; $.loop.iteration = 9; $.loop['2'] = 0; false } else { true }"))
	if res.Status != conductor.TaskCompleted || !reflect.DeepEqual(res.OutputData, map[string]any{"storage": int64(3)}) {
		t.Fatalf("false condition: %+v", res)
	}
	// So is what it changes in place in a value stored there earlier.
	stored := task("$.loop.storage.n++; $.loop['2'].b.ok = false; true")
	stored.InputData["loop"].(map[string]any)["storage"] = map[string]any{"n": int64(1)}
	res = system.LoopCondition{}.Execute(context.Background(), stored)
	if res.Status != conductor.TaskInProgress || !reflect.DeepEqual(res.OutputData, map[string]any{"storage": map[string]any{"n": int64(2)}}) {
		t.Fatalf("changed in place: %+v", res)
	}
	if !reflect.DeepEqual(stored.InputData["loop"], map[string]any{"iteration": int64(2), "2": map[string]any{"b": map[string]any{"ok": true}}, "storage": map[string]any{"n": int64(1)}}) {
		t.Fatalf("the condition changed the task's input: %v", stored.InputData["loop"])
	}
	// A value is true as Conductor's evalBool reads it: a boolean, or a
	// number above zero.
	for cond, more := range map[string]bool{"1": true, "0.5": true, "0": false, "$.loop.iteration - 5": false,
		"'true'": false, "'false'": false, "$.b": false, "({})": false, "null": false, "undefined": false} {
		if res = (system.LoopCondition{}).Execute(context.Background(), task(cond)); (res.Status == conductor.TaskInProgress) != more {
			t.Fatalf("condition %s: %s, want another iteration: %v", cond, res.Status, more)
		}
	}
	// A member named in another case is not the loop's condition, as
	// Jackson reads it: none, the loop ends.
	res = system.LoopCondition{}.Execute(context.Background(), &conductor.Task{TaskType: "DO_WHILE", ReferenceTaskName: "loop",
		WorkflowTask: []byte(`{"LoopCondition":"true","loopcondition":"true"}`), InputData: map[string]any{}})
	if res.Status != conductor.TaskCompleted {
		t.Fatalf("LoopCondition read as the condition: %s %q", res.Status, res.ReasonForIncompletion)
	}
	for _, bad := range []string{"$.nope.x", "while (true) {}", "(("} {
		res = system.LoopCondition{Budget: system.Budget{Time: 200 * time.Millisecond}}.Execute(context.Background(), task(bad))
		if res.Status != conductor.TaskFailedWithTerminalError || !strings.Contains(res.ReasonForIncompletion, "unable to evaluate loopCondition") {
			t.Fatalf("%s: %+v", bad, res)
		}
	}
}

// The members of $.loop a condition deletes are reported to be dropped
// from the loop's output (Conductor's condition deletes them from the
// output itself), but for the engine's keys, one deleted then set again,
// and one that was not there; a nested member deleted is the member it is
// in, changed. A condition that fails reports nothing.
func TestLoopConditionReportsDeletes(t *testing.T) {
	t.Parallel()
	task := func(cond string) *conductor.Task {
		cfg, _ := json.Marshal(map[string]any{"loopCondition": cond})
		return &conductor.Task{TaskType: "DO_WHILE", ReferenceTaskName: "loop", WorkflowTask: cfg,
			InputData: map[string]any{"loop": map[string]any{"iteration": int64(2), "1": map[string]any{}, "2": map[string]any{},
				"storage": map[string]any{"n": int64(1), "m": int64(2)}, "gone": "x"}}}
	}
	cases := []struct {
		cond string
		out  map[string]any
		drop []string
	}{
		{"delete $.loop.gone; true", map[string]any{}, []string{"gone"}},
		{"delete $.loop.storage; delete $.loop.gone; false", map[string]any{}, []string{"gone", "storage"}},
		{"delete $.loop.storage.n; true", map[string]any{"storage": map[string]any{"m": int64(2)}}, nil},
		{"delete $.loop.gone; $.loop.gone = 'y'; true", map[string]any{"gone": "y"}, nil},
		{"$.loop.fresh = 1; delete $.loop.fresh; true", map[string]any{}, nil},
		{"delete $.loop.never; true", map[string]any{}, nil},
		{"delete $.loop.iteration; delete $.loop['1']; delete $.loop.loopItem; true", map[string]any{}, nil},
		{"delete $.loop.gone; $.nope.x", nil, nil},
	}
	for _, tc := range cases {
		res, drop := system.LoopCondition{}.ExecuteDropping(context.Background(), task(tc.cond))
		if !reflect.DeepEqual(res.OutputData, tc.out) || !reflect.DeepEqual(drop, tc.drop) {
			t.Errorf("%s: %s, output %#v, drop %q; want output %#v, drop %q", tc.cond, res.Status, res.OutputData, drop, tc.out, tc.drop)
		}
	}
}

// What the condition does to the object bound as $.loop is reported,
// through whatever name it reaches it; an object put in $.loop's place is
// not, as Conductor's $ is a map made for the condition, which holds the
// loop's output map.
func TestLoopConditionReportsTheBoundObject(t *testing.T) {
	t.Parallel()
	task := func(cond string) *conductor.Task {
		cfg, _ := json.Marshal(map[string]any{"loopCondition": cond})
		return &conductor.Task{TaskType: "DO_WHILE", ReferenceTaskName: "loop", WorkflowTask: cfg,
			InputData: map[string]any{"loop": map[string]any{"iteration": int64(1), "1": map[string]any{}, "gone": "x"}}}
	}
	cases := []struct {
		cond string
		out  map[string]any
		drop []string
	}{
		{"var l = $.loop; $.loop = {}; delete l.gone; l.x = 1; true", map[string]any{"x": int64(1)}, []string{"gone"}},
		{"var l = $.loop; $.loop = null; l.x = 1; true", map[string]any{"x": int64(1)}, nil},
		{"$.loop = {x: 1}; true", map[string]any{}, nil},
		{"$.loop = Object.assign($.loop, {x: 1}); true", map[string]any{"x": int64(1)}, nil},
	}
	for _, tc := range cases {
		res, drop := system.LoopCondition{}.ExecuteDropping(context.Background(), task(tc.cond))
		if res.Status != conductor.TaskInProgress || !reflect.DeepEqual(res.OutputData, tc.out) || !reflect.DeepEqual(drop, tc.drop) {
			t.Errorf("%s: %s, output %#v, drop %q; want output %#v, drop %q", tc.cond, res.Status, res.OutputData, drop, tc.out, tc.drop)
		}
	}
}

func jqTask(query string, in map[string]any) *conductor.Task {
	m := map[string]any{"queryExpression": query}
	for k, v := range in {
		m[k] = v
	}
	return &conductor.Task{TaskType: conductor.TaskTypeJSONJQ, ReferenceTaskName: "jq", InputData: m}
}

func TestJQ(t *testing.T) {
	t.Parallel()
	in := map[string]any{"a": int64(1), "b": int64(2), "items": []any{map[string]any{"n": "x", "p": 1.5}, map[string]any{"n": "y", "p": int64(2)}},
		"big": int64(1) << 60}
	tests := []struct {
		name, query string
		result      any
		list        []any
	}{
		{"sum", ".a + .b", int64(3), []any{int64(3)}},
		{"object", "{total: (.a + .b), names: [.items[].n]}", map[string]any{"total": int64(3), "names": []any{"x", "y"}}, nil},
		{"several results", ".items[] | .p", 1.5, []any{1.5, int64(2)}},
		{"no result", "empty", nil, []any{}},
		// The whole input, queryExpression included, as Conductor's.
		{"query is input", "has(\"queryExpression\")", true, []any{true}},
		{"large integer", ".big + 1", int64(1)<<60 + 1, []any{int64(1)<<60 + 1}},
		{"no environment", "$ENV | length", int64(0), []any{int64(0)}},
		{"float division", ".b / 4", 0.5, []any{0.5}},
	}
	for _, tt := range tests {
		res := system.JQ{}.Execute(context.Background(), jqTask(tt.query, in))
		if res.Status != conductor.TaskCompleted {
			t.Errorf("%s: %s %s", tt.name, res.Status, res.ReasonForIncompletion)
			continue
		}
		if !reflect.DeepEqual(res.OutputData["result"], tt.result) {
			t.Errorf("%s: result %#v, want %#v", tt.name, res.OutputData["result"], tt.result)
		}
		if tt.list != nil && !reflect.DeepEqual(res.OutputData["resultList"], tt.list) {
			t.Errorf("%s: resultList %#v, want %#v", tt.name, res.OutputData["resultList"], tt.list)
		}
	}

	errs := []struct {
		name string
		task *conductor.Task
		want string
	}{
		{"syntax", jqTask(".a +", nil), "queryExpression does not parse: unexpected EOF at byte 4"},
		{"unknown function", jqTask("nope(1)", nil), "queryExpression does not compile: function not defined"},
		// The query is the task's input with its secrets resolved: an error
		// quotes none of it, or a secret holding a quote shows its tail.
		{"syntax error hides the query", jqTask(`.a == "pw"sk_live_51HxQzT8abcdefghij`, nil), "unexpected token at byte"},
		{"unknown name hides the query", jqTask(`.a == "pw"|sk_live_51HxQzT8abcdefghij`, nil), "function not defined"},
		{"unknown variable hides the query", jqTask(`.a == "pw"|$sk_live_51HxQzT8abcdefghij`, nil), "variable not defined"},
		// gojq looks an unknown @format up as the query runs.
		{"unknown format hides the query", jqTask(`.a == "pw" + @sk_live_51HxQzT8abcdefghij + ""`, nil), "queryExpression does not compile: format not defined"},
		{"unknown format of a string hides the query", jqTask(`@sk_live_51HxQzT8abcdefghij "x\(.)"`, nil), "queryExpression does not compile: format not defined"},
		{"format by name hides the query", jqTask(`format("sk_live_51HxQzT8abcdefghij")`, nil), "queryExpression does not compile: format not defined"},
		{"runtime error", jqTask(`error("bad input")`, nil), "bad input"},
		{"type error", jqTask(".a.b", map[string]any{"a": "s"}), "expected an object"},
		// A type error quotes a preview of the value, cut short: a prefix
		// of a secret, which redaction would not know.
		{"type error hides the value", jqTask(".tok | .access_token", map[string]any{"tok": "sk_live_51HxQzT8abcdefghijklmnopqrstuvwxyz0123"}),
			"string (***)"},
		// An object's or an array's preview is cut mid-string.
		{"type error hides an object", jqTask(".tok | .[0]", map[string]any{"tok": map[string]any{"k": "sk_live_51HxQzT8abcdefghijklmnopqrstuvwxyz0123"}}),
			"object (***)"},
		{"type error hides an array", jqTask(".tok | .k", map[string]any{"tok": []any{"sk_live_51HxQzT8abcdefghijklmnopqrstuvwxyz0123"}}),
			"array (***)"},
		{"missing query", &conductor.Task{TaskType: conductor.TaskTypeJSONJQ, InputData: map[string]any{}}, "queryExpression is required"},
		{"no modules", jqTask(`import "x" as x; .`, nil), ""},
		{"infinite", jqTask("last(range(1e18))", nil), "time budget"},
		{"runaway memory", jqTask("[range(1e9) | tostring]", nil), "memory budget"},
	}
	for _, tt := range errs {
		b := system.Budget{Time: 500 * time.Millisecond, Memory: 32 << 20}
		if strings.Contains(tt.want, "memory") {
			b.Time = 10 * time.Minute
		}
		res := system.JQ{Budget: b}.Execute(context.Background(), tt.task)
		if res.Status != conductor.TaskFailed || !strings.Contains(res.ReasonForIncompletion, tt.want) {
			t.Errorf("%s: %s %q, want FAILED with %q", tt.name, res.Status, res.ReasonForIncompletion, tt.want)
			continue
		}
		if e, _ := res.OutputData["error"].(string); e == "" {
			t.Errorf("%s: no error in the output", tt.name)
		}
		if strings.Contains(res.ReasonForIncompletion+fmt.Sprint(res.OutputData), "sk_live_51Hx") {
			t.Errorf("%s: the reason or output quotes the value: %q", tt.name, res.ReasonForIncompletion)
		}
	}
}

// flat behaves as the specification says, bounded: default depth 1,
// holes skipped, Infinity flattens all.
func TestInlineFlat(t *testing.T) {
	t.Parallel()
	res := system.Inline{}.Execute(context.Background(), inlineTask(
		"[[1, [2, [3]]].flat(), [1, [2, [3]]].flat(Infinity), [1, , [2]].flat(), [[1]].flat(0)]", nil))
	want := []any{[]any{int64(1), int64(2), []any{int64(3)}}, []any{int64(1), int64(2), int64(3)}, []any{int64(1), int64(2)}, []any{[]any{int64(1)}}}
	if res.Status != conductor.TaskCompleted || fmt.Sprint(res.OutputData["result"]) != fmt.Sprint(want) {
		t.Fatalf("%s %v, want %v", res.Status, res.OutputData["result"], want)
	}
}

// A jq query's source is bounded as a script's is: gojq's parser recursed
// through a million brackets into a stack overflow.
func TestJQSourceBounded(t *testing.T) {
	t.Parallel()
	res := system.JQ{}.Execute(context.Background(), &conductor.Task{TaskType: conductor.TaskTypeJSONJQ,
		InputData: map[string]any{"queryExpression": strings.Repeat("[", 1000000) + "1" + strings.Repeat("]", 1000000)}})
	if res.Status != conductor.TaskFailed || !strings.Contains(res.ReasonForIncompletion, "limit") {
		t.Fatalf("%s %q", res.Status, res.ReasonForIncompletion)
	}
}
