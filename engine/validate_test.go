package engine_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/schemas/conductor"
)

func TestValidateWorkflowDef(t *testing.T) {
	tests := []struct {
		name string
		def  string
		path string // the field the error must name ("" = valid)
	}{
		{"valid", forkJoin, ""},
		{"control character in the name", `{"name":"a\u0000b","tasks":[{"name":"a","taskReferenceName":"a"}]}`, "name"},
		{"storable but unsupported type", `{"name":"x","tasks":[{"name":"llm","taskReferenceName":"llm","type":"LLM_CHAT_COMPLETE"}]}`, ""},
		{"unknown type", `{"name":"x","tasks":[{"name":"a","taskReferenceName":"a","type":"TELEPORT"}]}`, "tasks[0].type"},
		{"duplicate ref", `{"name":"x","tasks":[{"name":"a","taskReferenceName":"r"},{"name":"b","taskReferenceName":"r"}]}`, "tasks[1].taskReferenceName"},
		{"duplicate ref in a branch", `{"name":"x","tasks":[{"name":"a","taskReferenceName":"r"},{"name":"s","taskReferenceName":"s","type":"SWITCH","expression":"k","decisionCases":{"x":[{"name":"b","taskReferenceName":"r"}]}}]}`, "tasks[1].decisionCases.x[0].taskReferenceName"},
		{"fork without join", `{"name":"x","tasks":[{"name":"f","taskReferenceName":"f","type":"FORK_JOIN","forkTasks":[[{"name":"a","taskReferenceName":"a"}]]}]}`, "tasks[0]"},
		{"join on unknown ref", `{"name":"x","tasks":[{"name":"f","taskReferenceName":"f","type":"FORK_JOIN","forkTasks":[[{"name":"a","taskReferenceName":"a"}]]},{"name":"j","taskReferenceName":"j","type":"JOIN","joinOn":["a","ghost"]}]}`, "tasks[1].joinOn[1]"},
		{"join on a loop's task from outside it", `{"name":"x","tasks":[{"name":"f","taskReferenceName":"f","type":"FORK_JOIN","forkTasks":[
		  [{"name":"loop","taskReferenceName":"loop","type":"DO_WHILE","loopCondition":"false","loopOver":[{"name":"a","taskReferenceName":"a"}]}],
		  [{"name":"c","taskReferenceName":"c"}]]},{"name":"j","taskReferenceName":"j","type":"JOIN","joinOn":["a","c"]}]}`, "tasks[1].joinOn[0]"},
		{"join on the loop", `{"name":"x","tasks":[{"name":"f","taskReferenceName":"f","type":"FORK_JOIN","forkTasks":[
		  [{"name":"loop","taskReferenceName":"loop","type":"DO_WHILE","loopCondition":"false","loopOver":[{"name":"a","taskReferenceName":"a"}]}],
		  [{"name":"c","taskReferenceName":"c"}]]},{"name":"j","taskReferenceName":"j","type":"JOIN","joinOn":["loop","c"]}]}`, ""},
		{"join inside the loop", `{"name":"x","tasks":[{"name":"loop","taskReferenceName":"loop","type":"DO_WHILE","loopCondition":"false","loopOver":[
		  {"name":"f","taskReferenceName":"f","type":"FORK_JOIN","forkTasks":[[{"name":"a","taskReferenceName":"a"}],[{"name":"c","taskReferenceName":"c"}]]},
		  {"name":"j","taskReferenceName":"j","type":"JOIN","joinOn":["a","c"]}]}]}`, ""},
		// Inside a loop a join waits for ref__N of its iteration: a task
		// outside the loop never has that name, and the JOIN waited for
		// it for good (the workflow RUNNING with nothing scheduled), as
		// Conductor's does.
		{"join inside the loop on a task outside it", `{"name":"x","tasks":[{"name":"z","taskReferenceName":"z"},
		  {"name":"loop","taskReferenceName":"loop","type":"DO_WHILE","loopCondition":"false","loopOver":[
		  {"name":"f","taskReferenceName":"f","type":"FORK_JOIN","forkTasks":[[{"name":"a","taskReferenceName":"a"}],[{"name":"c","taskReferenceName":"c"}]]},
		  {"name":"j","taskReferenceName":"j","type":"JOIN","joinOn":["a","z"]}]}]}`, "tasks[1].loopOver[1].joinOn[1]"},
		{"join inside the loop on the loop", `{"name":"x","tasks":[{"name":"loop","taskReferenceName":"loop","type":"DO_WHILE","loopCondition":"false","loopOver":[
		  {"name":"f","taskReferenceName":"f","type":"FORK_JOIN","forkTasks":[[{"name":"a","taskReferenceName":"a"}],[{"name":"c","taskReferenceName":"c"}]]},
		  {"name":"j","taskReferenceName":"j","type":"JOIN","joinOn":["a","loop"]}]}]}`, "tasks[0].loopOver[1].joinOn[1]"},
		{"exclusive join inside the loop on a task outside it", `{"name":"x","tasks":[{"name":"z","taskReferenceName":"z"},
		  {"name":"loop","taskReferenceName":"loop","type":"DO_WHILE","loopCondition":"false","loopOver":[
		  {"name":"s","taskReferenceName":"s","type":"SWITCH","expression":"k","inputParameters":{"k":"a"},"decisionCases":{"a":[{"name":"a","taskReferenceName":"a"}]}},
		  {"name":"j","taskReferenceName":"j","type":"EXCLUSIVE_JOIN","joinOn":["a","z"]}]}]}`, "tasks[1].loopOver[1].joinOn[1]"},
		{"exclusive join's default inside the loop, the join outside it", `{"name":"x","tasks":[
		  {"name":"loop","taskReferenceName":"loop","type":"DO_WHILE","loopCondition":"false","loopOver":[
		  {"name":"s","taskReferenceName":"s","type":"SWITCH","expression":"k","inputParameters":{"k":"a"},"decisionCases":{"a":[{"name":"a","taskReferenceName":"a"}]}}]},
		  {"name":"j","taskReferenceName":"j","type":"EXCLUSIVE_JOIN","joinOn":["loop"],"defaultExclusiveJoinTask":["a"]}]}`, "tasks[1].defaultExclusiveJoinTask[0]"},
		{"join script", `{"name":"x","tasks":[{"name":"f","taskReferenceName":"f","type":"FORK_JOIN","forkTasks":[[{"name":"a","taskReferenceName":"a"}]]},
		  {"name":"j","taskReferenceName":"j","type":"JOIN","joinOn":["a"],"evaluatorType":"js","expression":"(function(){ return true; })()"}]}`, "tasks[1].expression"},
		{"switch without expression", `{"name":"x","tasks":[{"name":"s","taskReferenceName":"s","type":"SWITCH","evaluatorType":"value-param"}]}`, "tasks[0].expression"},
		{"sub workflow without name", `{"name":"x","tasks":[{"name":"s","taskReferenceName":"s","type":"SUB_WORKFLOW","subWorkflowParam":{}}]}`, "tasks[0].subWorkflowParam.name"},
		{"expression that cannot parse", `{"name":"x","tasks":[{"name":"a","taskReferenceName":"a","inputParameters":{"h":{"auth":"Bearer ${workflow.input.t"}}}]}`, "tasks[0].inputParameters.h.auth"},
		{"output expression", `{"name":"x","tasks":[{"name":"a","taskReferenceName":"a"}],"outputParameters":{"o":"${a.output"}}`, "outputParameters.o"},
		{"ref like an iteration of a loop's task", `{"name":"l","tasks":[{"name":"loop","taskReferenceName":"loop","type":"DO_WHILE","items":[1],
		  "loopOver":[{"name":"a","taskReferenceName":"a"}]},{"name":"a","taskReferenceName":"a__1"}]}`, "tasks[1].taskReferenceName"},
		{"ref like an iteration outside loops", `{"name":"l","tasks":[{"name":"a","taskReferenceName":"a"},{"name":"a","taskReferenceName":"a__1"}]}`, ""},
		{"cached", `{"name":"x","tasks":[{"name":"a","taskReferenceName":"a","cacheConfig":{"key":"${u}","ttlInSecond":"60"}}]}`, ""},
		{"cache without a key", `{"name":"x","tasks":[{"name":"a","taskReferenceName":"a","cacheConfig":{"ttlInSecond":60}}]}`, "tasks[0].cacheConfig.key"},
		{"cache without a time", `{"name":"x","tasks":[{"name":"a","taskReferenceName":"a","cacheConfig":{"key":"k"}}]}`, "tasks[0].cacheConfig.ttlInSecond"},
		{"wait both ways", `{"name":"x","tasks":[{"name":"w","taskReferenceName":"w","type":"WAIT","inputParameters":{"duration":"2s","until":"2030-01-01"}}]}`, "tasks[0].inputParameters"},
		{"bad wait duration", `{"name":"x","tasks":[{"name":"w","taskReferenceName":"w","type":"WAIT","inputParameters":{"duration":"eventually"}}]}`, "tasks[0].inputParameters.duration"},
		{"wait duration a number", `{"name":"x","tasks":[{"name":"w","taskReferenceName":"w","type":"WAIT","inputParameters":{"duration":2}}]}`, "tasks[0].inputParameters.duration"},
		{"terminate", `{"name":"x","tasks":[{"name":"t","taskReferenceName":"t","type":"TERMINATE","inputParameters":{"terminationStatus":"TERMINATED"}}]}`, ""},
		{"terminate status from data", `{"name":"x","tasks":[{"name":"t","taskReferenceName":"t","type":"TERMINATE","inputParameters":{"terminationStatus":"${workflow.input.s}"}}]}`, ""},
		{"optional terminate", `{"name":"x","tasks":[{"name":"t","taskReferenceName":"t","type":"TERMINATE","optional":true,"inputParameters":{"terminationStatus":"COMPLETED"}}]}`, "tasks[0].optional"},
		{"terminate without status", `{"name":"x","tasks":[{"name":"t","taskReferenceName":"t","type":"TERMINATE","inputParameters":{"workflowOutput":{}}}]}`, "tasks[0].inputParameters.terminationStatus"},
		{"terminate status unknown", `{"name":"x","tasks":[{"name":"t","taskReferenceName":"t","type":"TERMINATE","inputParameters":{"terminationStatus":"DONE"}}]}`, "tasks[0].inputParameters.terminationStatus"},
		{"bad wait until", `{"name":"x","tasks":[{"name":"w","taskReferenceName":"w","type":"WAIT","inputParameters":{"until":"2026-12-03T18:56:05Z"}}]}`, "tasks[0].inputParameters.until"},
		// A secret or environment value read where the engine evaluates
		// the expression reads null (see expr.MisplacedDeferred); a
		// reference of its own is resolved at hand-off.
		{"environment value", withInput("${workflow.env.region}"), ""},
		{"function of an environment value", withInput("${workflow.env.regions.length()}"), ""},
		{"secret named by data", withInput("Bearer ${workflow.secrets.${workflow.input.n}}"), ""},
		{"concat of the document", withInput("${$.concat($.workflow.input.a, '-')}"), ""},
		{"concat of an environment value", withInput("${$.concat($.workflow.env.region, '-')}"), "tasks[0].inputParameters.x"},
		{"concat of a secret", withInput("${$.concat('k-', $.workflow.secrets.tok)}"), "tasks[0].inputParameters.x"},
		{"filter on an environment value", withInput("${workflow.input.users[?(@.region == $.workflow.env.region)].name}"), "tasks[0].inputParameters.x"},
		{"environment value nested", withInput("${workflow.input.${workflow.env.key}}"), "tasks[0].inputParameters.x"},
		{"secret in outputParameters", `{"name":"x","tasks":[{"name":"a","taskReferenceName":"a"}],"outputParameters":{"o":"${$.workflow.secrets.s}"}}`, "outputParameters.o"},
		{"environment value in items", `{"name":"x","tasks":[{"name":"l","taskReferenceName":"l","type":"DO_WHILE","items":"${$.workflow.env.list}","loopOver":[{"name":"a","taskReferenceName":"a"}]}]}`, "tasks[0].items"},
		// A name spelled in the definition that no secret or environment
		// value can have (secrets.NameRule) fails every run at the
		// hand-off; one made of data is judged there.
		{"secret name with a space", withInput("${workflow.secrets.a b}"), "tasks[0].inputParameters.x"},
		{"secret name with a space in text", withInput("Bearer ${workflow.secrets.tok} ${workflow.secrets.a b}"), "tasks[0].inputParameters.x"},
		{"secret name in unicode", withInput("${workflow.secrets.clé}"), "tasks[0].inputParameters.x"},
		{"secret name empty", withInput("${workflow.secrets.}"), "tasks[0].inputParameters.x"},
		{"secret name empty before a field", withInput("${workflow.secrets..password}"), "tasks[0].inputParameters.x"},
		{"secret name with a slash", withInput("${workflow.secrets.db/prod}"), "tasks[0].inputParameters.x"},
		{"secret name of 257 characters", withInput("${workflow.secrets." + strings.Repeat("k", 257) + "}"), "tasks[0].inputParameters.x"},
		{"secret name in outputParameters", `{"name":"x","tasks":[{"name":"a","taskReferenceName":"a"}],"outputParameters":{"o":"${workflow.secrets.a b}"}}`, "outputParameters.o"},
		{"environment value name with a space", withInput("${workflow.env.my region}"), "tasks[0].inputParameters.x"},
		{"environment value name in unicode", withInput("${workflow.env.région}"), "tasks[0].inputParameters.x"},
		{"environment value name empty", withInput("${workflow.env.}"), "tasks[0].inputParameters.x"},
		{"secret field after a dot", withInput("${workflow.secrets.a.b}"), ""},
		{"secret name spaced in its braces", withInput("${ workflow.secrets.db_creds-2 }"), ""},
		{"secret name of 256 characters", withInput("${workflow.secrets." + strings.Repeat("k", 256) + "}"), ""},
		{"environment value field after a dot", withInput("${workflow.env.region.name}"), ""},
		{"secret name made of data with a space", withInput("${workflow.secrets.${workflow.input.n}}-${workflow.env.${workflow.input.e}}"), ""},
		// The fields of a subWorkflowParam the engine evaluates as it
		// starts the child.
		{"sub workflow keyed on the document", withSub(`"idempotencyKey":"${$.concat('k-', $.workflow.input.id)}"`), ""},
		{"sub workflow keyed on a secret's reference", withSub(`"idempotencyKey":"k-${workflow.secrets.tok}"`), ""}, // refused as the task runs
		{"sub workflow keyed on a concat of a secret", withSub(`"idempotencyKey":"${$.concat('k-', $.workflow.secrets.tok)}"`), "tasks[0].subWorkflowParam.idempotencyKey"},
		{"sub workflow named by an environment value's path", `{"name":"x","tasks":[{"name":"s","taskReferenceName":"s","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"${$.workflow.env.child}"}}]}`, "tasks[0].subWorkflowParam.name"},
		{"sub workflow prioritized by an environment value nested", withSub(`"priority":"${workflow.input.${workflow.env.p}}"`), "tasks[0].subWorkflowParam.priority"},
		{"sub workflow priority a number", withSub(`"priority":5`), ""},
		{"sub workflow domain filtered on a secret", withSub(`"taskToDomain":{"*":"${workflow.input.d[?(@ == $.workflow.secrets.d)]}"}`), "tasks[0].subWorkflowParam.taskToDomain['*']"},
		{"sub workflow domain of the document", withSub(`"taskToDomain":{"*":"${workflow.input.domain}"}`), ""},
		{"sub workflow definition read as a path", `{"name":"x","tasks":[{"name":"s","taskReferenceName":"s","type":"SUB_WORKFLOW","subWorkflowParam":{"workflowDefinition":"${$.workflow.env.def}"}}]}`, "tasks[0].subWorkflowParam.workflowDefinition"},
		{"sub workflow definition from data", `{"name":"x","tasks":[{"name":"s","taskReferenceName":"s","type":"SUB_WORKFLOW","subWorkflowParam":{"workflowDefinition":"${workflow.input.def}"}}]}`, ""},
		{"maskedFields", `{"name":"x","tasks":[{"name":"a","taskReferenceName":"a"}],"maskedFields":["card","pin_2"]}`, ""},
		{"maskedFields path", `{"name":"x","tasks":[{"name":"a","taskReferenceName":"a"}],"maskedFields":["card","creds.password"]}`, "maskedFields[1]"},
		{"maskedFields index", `{"name":"x","tasks":[{"name":"a","taskReferenceName":"a"}],"maskedFields":["cards[0]"]}`, "maskedFields[0]"},
		{"maskedFields expression", `{"name":"x","tasks":[{"name":"a","taskReferenceName":"a"}],"maskedFields":["${workflow.input.card}"]}`, "maskedFields[0]"},
		// START_WORKFLOW's request is in its inputParameters.
		{"start workflow input of a concat of a secret", `{"name":"x","tasks":[{"name":"s","taskReferenceName":"s","type":"START_WORKFLOW","inputParameters":{"startWorkflow":{"name":"c","input":{"k":"${$.concat('k-', $.workflow.secrets.tok)}"}}}}]}`, "tasks[0].inputParameters.startWorkflow.input.k"},
	}
	for _, tt := range tests {
		err := engine.ValidateWorkflowDef(parseDef(t, tt.def))
		if tt.path == "" {
			if err != nil {
				t.Errorf("%s: %v", tt.name, err)
			}
			continue
		}
		var ve *fault.ValidationError
		if !errors.As(err, &ve) || !errors.Is(err, fault.ErrInvalid) {
			t.Errorf("%s: err = %v, want a validation error", tt.name, err)
			continue
		}
		found := false
		for _, f := range ve.Fields {
			found = found || f.Path == tt.path
		}
		if !found {
			t.Errorf("%s: errors %v do not name %s", tt.name, ve.Fields, tt.path)
		}
	}
}

// Every problem is reported at once, not just the first.
func TestValidateReportsEveryProblem(t *testing.T) {
	err := engine.ValidateWorkflowDef(parseDef(t, `{"name":"x","tasks":[{"name":"a","taskReferenceName":"a","type":"NOPE"},{"name":"b","taskReferenceName":"a","inputParameters":{"x":"${"}}]}`))
	var ve *fault.ValidationError
	if !errors.As(err, &ve) || len(ve.Fields) != 3 {
		t.Fatalf("err = %v, want 3 field errors", err)
	}
	if !strings.Contains(err.Error(), "tasks[1].inputParameters.x") {
		t.Fatalf("message %q lacks the path", err)
	}
}

// A JSON_JQ_TRANSFORM's queryExpression, an INLINE's expression and a
// LAMBDA's scriptExpression may come from the task definition's
// inputTemplate, which the engine merges under the inputParameters, as
// Conductor's registration reads it; such a definition was refused.
func TestValidateScriptFromTaskTemplate(t *testing.T) {
	registered := map[string]map[string]any{
		"to_names": {"queryExpression": ".users | map(.name)"},
		"sum":      {"evaluatorType": "graaljs", "expression": "$.a + $.b"},
		"blank":    {"queryExpression": " "},
	}
	templates := func(name string) map[string]any { return registered[name] }
	const jqPath = "tasks[0].inputParameters.queryExpression"
	tests := []struct {
		name, task string
		path       string // the field the error must name ("" = valid)
	}{
		{"jq from a registered definition", `{"name":"to_names","taskReferenceName":"j","type":"JSON_JQ_TRANSFORM","inputParameters":{"users":"${workflow.input.users}"}}`, ""},
		{"jq null over a registered definition", `{"name":"to_names","taskReferenceName":"j","type":"JSON_JQ_TRANSFORM","inputParameters":{"queryExpression":null}}`, ""},
		{"jq from an inline definition", `{"name":"x","taskReferenceName":"j","type":"JSON_JQ_TRANSFORM","taskDefinition":{"name":"x","inputTemplate":{"queryExpression":"."}}}`, ""},
		{"an inline definition stands for the registered one", `{"name":"to_names","taskReferenceName":"j","type":"JSON_JQ_TRANSFORM","taskDefinition":{"name":"to_names"}}`, jqPath},
		{"blank in the template", `{"name":"blank","taskReferenceName":"j","type":"JSON_JQ_TRANSFORM"}`, jqPath},
		{"blank over the template", `{"name":"to_names","taskReferenceName":"j","type":"JSON_JQ_TRANSFORM","inputParameters":{"queryExpression":""}}`, jqPath},
		{"jq without a definition", `{"name":"none","taskReferenceName":"j","type":"JSON_JQ_TRANSFORM"}`, jqPath},
		{"inline from a registered definition", `{"name":"sum","taskReferenceName":"i","type":"INLINE","inputParameters":{"a":1,"b":2}}`, ""},
		{"inline without a definition", `{"name":"none","taskReferenceName":"i","type":"INLINE"}`, "tasks[0].inputParameters.expression"},
		{"lambda from an inline definition", `{"name":"l","taskReferenceName":"l","type":"LAMBDA","taskDefinition":{"name":"l","inputTemplate":{"scriptExpression":"return 1"}}}`, ""},
	}
	for _, tt := range tests {
		def := parseDef(t, `{"name":"v","tasks":[`+tt.task+`]}`)
		err := engine.ValidateWorkflowDefWith(def, templates)
		if tt.path == "" {
			if err != nil {
				t.Errorf("%s: %v", tt.name, err)
			}
			continue
		}
		var ve *fault.ValidationError
		if !errors.As(err, &ve) || len(ve.Fields) != 1 || ve.Fields[0].Path != tt.path {
			t.Errorf("%s: err = %v, want one naming %s", tt.name, err, tt.path)
		}
	}
	// Without the registered definitions, only an inline one is read.
	if err := engine.ValidateWorkflowDef(parseDef(t, `{"name":"v","tasks":[`+tests[0].task+`]}`)); err == nil {
		t.Fatal("a query from a registered definition passed without the definitions")
	}

	// The template gives the task its query when it runs.
	h := newHarness(t, `{"name":"v","tasks":[`+tests[0].task+`]}`, map[string]any{"users": []any{}},
		`{"name":"to_names","inputTemplate":{"queryExpression":".users | map(.name)"}}`)
	if got := h.wantTask("j", conductor.TaskScheduled).Input["queryExpression"]; got != ".users | map(.name)" {
		t.Fatalf("queryExpression %v", got)
	}
}

// withInput is a definition of one task whose input x is expression.
func withInput(expression string) string {
	return `{"name":"x","tasks":[{"name":"a","taskReferenceName":"a","inputParameters":{"x":"` + strings.ReplaceAll(expression, `"`, `\"`) + `"}}]}`
}

// withSub is a definition of one SUB_WORKFLOW whose subWorkflowParam has
// the name "c" and fields (JSON members).
func withSub(fields string) string {
	return `{"name":"x","tasks":[{"name":"s","taskReferenceName":"s","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"c",` + fields + `}}]}`
}

// A definition's variables, which each of its workflows starts with, are
// held to the limit a SET_VARIABLE and a caller's variables are: over it,
// every SET_VARIABLE of its workflows would fail. The refusal is a size
// limit's (413 over HTTP, as a caller's variables get), naming the field.
func TestDefinitionVariablesLimit(t *testing.T) {
	t.Parallel()
	// {"v":"…"} takes 8 bytes besides the text.
	sized := func(n int) string {
		return `{"name":"x","tasks":[{"name":"a","taskReferenceName":"a"}],"variables":{"v":"` + strings.Repeat("x", n-8) + `"}}`
	}
	for _, tc := range []struct {
		name    string
		def     string
		refused bool
	}{
		{"none", `{"name":"x","tasks":[{"name":"a","taskReferenceName":"a"}]}`, false},
		{"at the limit", sized(engine.MaxVariablesBytes), false},
		{"a byte over", sized(engine.MaxVariablesBytes + 1), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := engine.ValidateWorkflowDef(parseDef(t, tc.def))
			switch {
			case !tc.refused && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.refused && (!errors.Is(err, fault.ErrTooLarge) || errors.Is(err, fault.ErrInvalid) ||
				!strings.HasPrefix(err.Error(), "variables: ")):
				t.Fatalf("err = %v, want too large, naming variables", err)
			}
		})
	}
}
