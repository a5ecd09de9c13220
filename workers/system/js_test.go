package system_test

import (
	"context"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/workers/system"
)

// A scriptCase is a script and what it comes to: a failure whose reason
// holds fails, or result.
type scriptCase struct {
	name, expr string
	fails      string
	result     any
}

func runScriptCases(t *testing.T, b system.Budget, tests []scriptCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkOutcome(t, system.Inline{Budget: b}.Execute(context.Background(), inlineTask(tt.expr, nil)), tt.fails, "result", tt.result)
		})
	}
}

// checkOutcome checks that res failed with a reason holding fails, or, if
// fails is "", completed with want as its output's key.
func checkOutcome(t *testing.T, res conductor.TaskResult, fails, key string, want any) {
	t.Helper()
	switch {
	case fails != "" && (res.Status != conductor.TaskFailed || !strings.Contains(res.ReasonForIncompletion, fails)):
		t.Fatalf("%s %q, want FAILED with %q", res.Status, res.ReasonForIncompletion, fails)
	case fails == "" && (res.Status != conductor.TaskCompleted || !reflect.DeepEqual(res.OutputData[key], want)):
		t.Fatalf("%s %q %#v, want %#v", res.Status, res.ReasonForIncompletion, res.OutputData[key], want)
	}
}

// Built-ins that recursed in Go without bound on cyclic or deep data, or on
// a method that leads back to them, killed the process (fatal error: stack
// overflow). They fail the script now.
// Not parallel: a call stack run out takes memory, and a test that runs
// its script out of memory stops the others running (see memWatch).
func TestScriptBuiltInsDoNotRecurseInGo(t *testing.T) {
	const deep = "more than 1000 levels deep"
	const stack = "maximum call stack size exceeded"
	runScriptCases(t, system.Budget{Time: 10 * time.Minute}, []scriptCase{
		{name: "flat of an array that holds itself", expr: "var a = []; a[0] = a; a.flat(Infinity)", fails: deep},
		{name: "flat", expr: "[1, [2, [3, [4]]], , 5].flat()", result: []any{int64(1), int64(2), []any{int64(3), []any{int64(4)}}, int64(5)}},
		{name: "flat to any depth", expr: "[1, [2, [3, [4]]], , 5].flat(Infinity)", result: []any{int64(1), int64(2), int64(3), int64(4), int64(5)}},
		{name: "flat to depth NaN", expr: "[1, , [2]].flat(NaN)", result: []any{int64(1), []any{int64(2)}}},
		{name: "flat of an array-like", expr: "Array.prototype.flat.call({length: 2, 0: [1], 1: 2})", result: []any{int64(1), int64(2)}},
		{name: "flat of a subclass", expr: "class A extends Array {}; A.from([[1], 2]).flat() instanceof A", result: true},
		{name: "flat ignores setters on Array.prototype", expr: "Object.defineProperty(Array.prototype, 0, {set: function () { throw 'set' }, configurable: true}); [[1]].flat()",
			result: []any{int64(1)}},
		{name: "error whose message is itself", expr: "var e = new Error(); e.message = e; String(e)", fails: stack},
		{name: "string method as toString", expr: "var o = {}; o.toString = String.prototype.trim; String(o)", fails: stack},
		{name: "toLocaleString as toString", expr: "var o = {}; o.toString = Object.prototype.toLocaleString; String(o)", fails: stack},
		{name: "regular expression toString", expr: "var r = {}; r.source = r; r.toString = RegExp.prototype.toString; String(r)", fails: stack},
		{name: "call as toString", expr: "var o = {}; o.toString = Function.prototype.call; String(o)", fails: stack},
		{name: "type check as toStringTag", expr: "var o = {}; Object.defineProperty(o, Symbol.toStringTag, {get: Set.prototype.has}); String(o)", fails: stack},
		{name: "bound built-in as valueOf", expr: "var o = {}; o.valueOf = Math.abs.bind(null, o); +o", fails: stack},
		{name: "bound hasInstance as getter", expr: "var hi = Function.prototype[Symbol.hasInstance], af = () => 0, g = hi.bind(af, {});" +
			"Object.defineProperty(Function.prototype, 'prototype', {get: g}); g()", fails: stack},
		{name: "forEach calling itself", expr: "var m = new Map(); m.set(Map.prototype.forEach, m); m.forEach(Map.prototype.forEach, m)", fails: "TypeError"},
		{name: "array nested deep to string", expr: "var a = [1]; for (var i = 0; i < 3000; i++) a = [a]; String(a)", fails: stack},
		// A proxy forwards to its target in Go, without end through a cycle.
		{name: "no Proxy", expr: "typeof Proxy", result: "undefined"},
		{name: "JSON.parse of deeply nested text", expr: "JSON.parse('['.repeat(1e5) + ']'.repeat(1e5)).length", fails: "JSON.parse: text nested " + deep},
		{name: "JSON.parse reviver that makes a cycle", expr: "JSON.parse('[1,2]', function (k, v) { if (k === '0') { var a = []; a[0] = a; this[1] = a } return v })",
			fails: "JSON.parse: value nested " + deep},
		{name: "JSON.parse reviver", expr: "JSON.parse('{\"a\":[1,{\"b\":2}],\"c\":3}', function (k, v) { return k === 'c' ? undefined : typeof v === 'number' ? v * 10 : v })",
			result: map[string]any{"a": []any{int64(10), map[string]any{"b": int64(20)}}}},
		{name: "JSON.stringify of endless toJSON", expr: "function F() {} F.prototype.toJSON = function () { return {v: new F()} }; JSON.stringify(new F())", fails: deep},
		{name: "JSON.stringify of endless replacer", expr: "JSON.stringify(1, function (k, v) { return {x: 1} })", fails: deep},
		{name: "JSON.stringify with a property list", expr: "JSON.stringify({b: 1, a: [1, {c: 3, d: 4}], d: 'x'}, ['d', 'a', 'c'])", result: `{"d":"x","a":[1,{"d":4,"c":3}]}`},
		{name: "JSON.stringify with replacer and space", expr: "JSON.stringify({a: 1, b: [2]}, function (k, v) { return v === 2 ? 'two' : v }, 1)", result: "{\n \"a\": 1,\n \"b\": [\n  \"two\"\n ]\n}"},
		{name: "JSON.stringify of a circular value", expr: "var o = {}; o.o = o; JSON.stringify(o)", fails: "circular"},
	})
	runScriptCases(t, system.Budget{Time: 10 * time.Minute, Memory: 1 << 20}, []scriptCase{
		{name: "flat of an array that holds itself twice", expr: "var a = []; a[0] = a; a[1] = a; a.flat(30)", fails: "memory budget"},
	})
}

// Compiling happens before any budget, and goja's parser and compiler
// recurse on the Go stack: deeply nested source killed the process.
func TestScriptSourceLimits(t *testing.T) {
	t.Parallel()
	nested := func(n int) string { return strings.Repeat("(", n) + "1" + strings.Repeat(")", n) }
	runScriptCases(t, system.Budget{Time: 10 * time.Minute}, []scriptCase{
		{name: "long source", expr: nested(4e5), fails: "script of 800001 bytes is over the limit of 65536 bytes"},
		{name: "nested parentheses", expr: nested(300), fails: "nests brackets, braces, parentheses or arrow functions more than 256 levels deep"},
		{name: "nested arrow functions", expr: strings.Repeat("x => ", 300) + "1", fails: "more than 256 levels deep"},
		{name: "nested templates", expr: strings.Repeat("`${", 300) + "1" + strings.Repeat("}`", 300), fails: "more than 256 levels deep"},
		{name: "nested functions", expr: strings.Repeat("function f() {", 300) + strings.Repeat("}", 300), fails: "more than 256 levels deep"},
		{name: "nested groups of a regular expression", expr: "/" + nested(300) + "/", fails: "more than 256 levels deep"},
		{name: "chain of prefix operators", expr: strings.Repeat("!", 60000) + "1", fails: "script nests more than 1000 levels deep"},
		{name: "chain of binary operators", expr: "1" + strings.Repeat(" + 1", 2000), fails: "script nests more than 1000 levels deep"},
		{name: "chain of && over constants", expr: "1" + strings.Repeat(" && 1", 30), fails: "script chains 30 && || ?? operators after a constant, more than 16"},
		{name: "nested within the limits", expr: nested(250), result: int64(1)},
		{name: "brackets in strings, comments and regular expressions",
			expr: "var s = '((((' + \"[[[[\" + `{{{${'('}`; // ((((\n /* [[[[ */ s.length + /\\(\\[[(]/.source.length", result: int64(19)},
		{name: "long script within the limits", expr: "var a = [" + strings.Repeat("1,", 30000) + "1]; a.length", result: int64(30001)},
		{name: "long chain of && over variables", expr: "var x = 1; x" + strings.Repeat(" && x", 100), result: int64(1)},
		{name: "eval of long source", expr: "eval('(' .repeat(4e5) + '1' + ')'.repeat(4e5))", fails: "over the limit of 65536 bytes"},
		{name: "eval of nested source", expr: "eval('(' .repeat(300) + '1' + ')'.repeat(300))", fails: "more than 256 levels deep"},
		{name: "Function of nested source", expr: "Function('return ' + '(' .repeat(300) + '1' + ')'.repeat(300))", fails: "more than 256 levels deep"},
		{name: "generator function of nested source", expr: "Object.getPrototypeOf(function* () {}).constructor('(' .repeat(300) + ')'.repeat(300))", fails: "more than 256 levels deep"},
		{name: "async function of nested source", expr: "Object.getPrototypeOf(async () => 1).constructor('(' .repeat(300) + ')'.repeat(300))", fails: "more than 256 levels deep"},
		{name: "generator function made by eval", expr: "Object.getPrototypeOf(eval('(function* () {})')).constructor('(' .repeat(300) + ')'.repeat(300))", fails: "more than 256 levels deep"},
		{name: "async function made by Function", expr: "Object.getPrototypeOf(Function('return async function () {}')()).constructor('(' .repeat(300) + ')'.repeat(300))", fails: "more than 256 levels deep"},
		{name: "eval", expr: "var x = 5; eval('x + 1')", result: int64(6)},
		{name: "Function", expr: "new Function('a', 'b', 'return a + b')(2, 3)", result: int64(5)},
		{name: "regular expression of long source", expr: "new RegExp('(' .repeat(1e5) + ')'.repeat(1e5))", fails: "regular expression of 200000 bytes is over the limit of 65536 bytes"},
		{name: "regular expression of nested groups", expr: "'x'.match('(' .repeat(300) + ')'.repeat(300))", fails: "regular expression nests groups more than 256 levels deep"},
		{name: "regular expression like object", expr: "new RegExp({[Symbol.match]: true, source: '(' .repeat(300) + ')'.repeat(300), flags: ''})", fails: "more than 256 levels deep"},
		{name: "regular expression", expr: "new RegExp('a(b)', 'g').exec('xab')[1] + RegExp(/c/g).flags + ('x'.match('x') !== null)", result: "bgtrue"},
		// BigInt arithmetic runs in Go, uninterrupted: 2n ** 10n ** 10n
		// would take the engine's memory and a core for minutes.
		{name: "BigInt literal", expr: "2n ** 10000000000n > 0n", fails: "script has a BigInt literal (2n)"},
		{name: "BigInt literal in a plain script", expr: "$ === undefined || 10n", fails: "BigInt literal"},
		{name: "BigInt literal in eval", expr: "eval('2n ** 10000000000n')", fails: "source has a BigInt literal"},
		{name: "BigInt literal in Function", expr: "Function('return 3n')()", fails: "BigInt literal"},
		{name: "BigInt constructor", expr: "BigInt(2) ** BigInt(1e10)", fails: "TypeError: Value is not an object: undefined"},
		{name: "no BigInt", expr: "typeof BigInt", result: "undefined"},
	})
	// Every kind of script goes through the limits.
	res := system.Inline{}.Execute(context.Background(), &conductor.Task{TaskType: conductor.TaskTypeLambda,
		InputData: map[string]any{"scriptExpression": "return " + nested(300)}})
	if res.Status != conductor.TaskFailed || !strings.Contains(res.ReasonForIncompletion, "256 levels") {
		t.Fatalf("LAMBDA: %s %q", res.Status, res.ReasonForIncompletion)
	}
}

// Single built-in calls allocated gigabytes before the memory watch could
// interrupt them. They compare what they would make with the limits the
// budget derives (at 64 MiB: arrays of 4M elements, 1M strings, 64K
// objects, strings of 32M characters).
func TestScriptBuiltInsStayWithinBudget(t *testing.T) {
	const refused = "exceeds the script memory budget"
	big := "var s = 'x'.repeat(4e6); "
	runScriptCases(t, system.Budget{Time: 10 * time.Minute, Memory: 64 << 20}, []scriptCase{
		{name: "split by a regular expression", expr: big + "s.split(/(?:)/).length", fails: refused},
		{name: "split by a string", expr: big + "s.split('').length", fails: refused},
		{name: "keys of a string", expr: big + "Object.keys(s).length", fails: refused},
		{name: "property names of a string", expr: big + "Object.getOwnPropertyNames(s).length", fails: refused},
		{name: "values of a string", expr: big + "Object.values(s).length", fails: refused},
		{name: "own keys of a string", expr: big + "Reflect.ownKeys(s).length", fails: refused},
		{name: "entries of a string", expr: "Object.entries('x'.repeat(1e5)).length", fails: refused},
		{name: "descriptors of a string", expr: "Object.getOwnPropertyDescriptors('x'.repeat(1e5))", fails: refused},
		{name: "assign of a string", expr: "Object.assign({}, 'x'.repeat(1e5))", fails: refused},
		{name: "array from a string", expr: big + "Array.from(s).length", fails: refused},
		{name: "spread of a string", expr: big + "[...s].length", fails: refused},
		{name: "array method on a string", expr: big + "Array.prototype.slice.call(s).length", fails: refused},
		{name: "global match", expr: big + "s.match(/./g).length", fails: refused},
		{name: "global match through its symbol", expr: big + "RegExp.prototype[Symbol.match].call(/./g, s).length", fails: refused},
		{name: "global replace", expr: big + "s.replace(/x/g, '').length", fails: refused},
		{name: "JSON.parse of many arrays", expr: "JSON.parse('[' + '[],'.repeat(3e5) + '[]]').length", fails: refused},
		{name: "JSON.parse of many values", expr: "JSON.parse('[' + '1,'.repeat(2e6) + '1]').length", fails: refused},
		{name: "join of one long string many times", expr: "var s = 'x'.repeat(1e6); new Array(100).fill(s).join().length", fails: refused},
		{name: "JSON.stringify of one long string many times", expr: "var s = 'x'.repeat(1e6); JSON.stringify(new Array(100).fill(s)).length", fails: refused},
		{name: "concat of one long string many times", expr: "var s = 'x'.repeat(1e6); ''.concat.apply('', new Array(100).fill(s)).length", fails: refused},
		// Built-ins the language calls by an object's member names, with
		// no call in the source (scripts without calls skip the guards
		// unless they can do this).
		{name: "join through an array prototype", expr: "({__proto__: [].constructor.prototype, length: 4e9}) + ''", fails: refused},
		{name: "repeat as toJSON", expr: "({'1e9': {toJSON: ''.constructor.prototype.repeat}})", fails: refused},
		// Ordinary use stays possible.
		{name: "split of a CSV", expr: "var csv = ('field,'.repeat(9) + 'last\\n').repeat(40000); [csv.length > 2e6, csv.split(',').length, csv.split('\\n').length]",
			result: []any{true, int64(360001), int64(40001)}},
		{name: "split with a limit", expr: big + "s.split('', 3)", result: []any{"x", "x", "x"}},
		{name: "keys of a short string", expr: "Object.keys('abc')", result: []any{"0", "1", "2"}},
		{name: "JSON round trip", expr: "JSON.parse(JSON.stringify({a: [1, 'x'.repeat(3000), {b: null}]})).a[1].length", result: int64(3000)},
	})
	// matchAll is lazy: each match goes through JavaScript, which the
	// memory watch interrupts.
	runScriptCases(t, system.Budget{Time: 10 * time.Minute, Memory: 16 << 20}, []scriptCase{
		{name: "spread of all matches", expr: "var s = 'x'.repeat(4e6); [...s.matchAll(/./g)].length", fails: "memory budget"},
	})
}

// Concurrent scripts each keeping well within their budget complete: the
// memory watch holds them to the sum of their budgets, not each to its own
// against a heap they share.
func TestConcurrentScriptsShareTheMemoryBudget(t *testing.T) {
	const src = "var a = []; for (var i = 0; i < 400; i++) { a.push('y'.repeat(100000) + i) } var n = 0; for (var j = 0; j < 3e5; j++) { n += j } a.length"
	b := system.Budget{Time: 10 * time.Minute, Memory: 64 << 20}
	var wg sync.WaitGroup
	results := make([]conductor.TaskResult, 3)
	for i := range results {
		wg.Go(func() { results[i] = system.Inline{Budget: b}.Execute(context.Background(), inlineTask(src, nil)) })
	}
	wg.Wait()
	for i, res := range results {
		if res.Status != conductor.TaskCompleted || res.OutputData["result"] != int64(400) {
			t.Errorf("script %d: %s %q", i, res.Status, res.ReasonForIncompletion)
		}
	}
}
