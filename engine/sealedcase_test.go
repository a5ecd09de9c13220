package engine_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/masking"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// A value-param SWITCH or DECISION whose case value is sealed data takes
// the case of the value whichever decision schedules it: the one that
// brought the value (still plain in it), or a later one (sealed: "***" to
// the decider). Neither decides it: its system worker does, from the input
// handed to it with the value opened, and the task's output shows "***" in
// place of the value. A case value that is not sealed is decided at once.
func TestSealedSwitchDecidedAtHandOff(t *testing.T) {
	sealed := &masking.Sealed{Kind: masking.KindSecrets, Purpose: "wf/wf-1/task/x/output._secrets.tier", Ciphertext: []byte{1}}
	const cases = `"decisionCases":{"gold":[{"name":"g","taskReferenceName":"g"}],"***":[{"name":"m","taskReferenceName":"m"}]},
	  "defaultCase":[{"name":"o","taskReferenceName":"o"}]`
	sw := func(param string) string {
		return `{"name":"sw","taskReferenceName":"sw","type":"SWITCH","evaluatorType":"value-param","expression":"x",
		  "inputParameters":{"x":"` + param + `"},` + cases + `}`
	}
	const (
		src  = `{"name":"src","taskReferenceName":"src"}`
		hold = `{"name":"hold","taskReferenceName":"hold","type":"WAIT"}`
		setv = `{"name":"setv","taskReferenceName":"setv","type":"SET_VARIABLE","inputParameters":{"tier":"${src.output._secrets.tier}"}}`
	)
	for _, tc := range []struct {
		name, tasks string
		out         any // what src's output holds under _secrets.tier
		handedOff   bool
	}{
		{"same decision", src + `,` + sw("${src.output._secrets.tier}"), "gold", true},
		{"later decision", src + `,` + hold + `,` + sw("${src.output._secrets.tier}"), sealed, true},
		{"copy in a variable, same decision", src + `,` + setv + `,` + sw("${workflow.variables.tier}"), "gold", true},
		{"copy in a variable, later decision", src + `,` + setv + `,` + hold + `,` + sw("${workflow.variables.tier}"), sealed, true},
		{"whole output, same decision", src + `,` + sw("${src.output}"), "gold", true},
		{"embedded in text, same decision", src + `,` + sw("tier-${src.output._secrets.tier}"), "gold", true},
		{"embedded in text, later decision", src + `,` + hold + `,` + sw("tier-${src.output._secrets.tier}"), sealed, true},
		{"copy in a variable embedded in text, same decision", src + `,` + setv + `,` + sw("tier-${workflow.variables.tier}"), "gold", true},
		{"DECISION on text, same decision", src + `,` + `{"name":"sw","taskReferenceName":"sw","type":"DECISION","caseValueParam":"x",
		  "inputParameters":{"x":"tier-${src.output._secrets.tier}"},` + cases + `}`, "gold", true},
		{"secret", src + `,` + sw("${workflow.secrets.tier}"), "gold", true},
		{"DECISION", src + `,` + hold + `,` + `{"name":"sw","taskReferenceName":"sw","type":"DECISION","caseValueParam":"x",
		  "inputParameters":{"x":"${src.output._secrets.tier}"},` + cases + `}`, sealed, true},
		{"plain value", src + `,` + sw("${src.output.tier}"), "other", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, `{"name":"sw","tasks":[`+tc.tasks+`]}`, nil)
			h.complete("src", map[string]any{"_secrets": map[string]any{"tier": tc.out}, "tier": "gold"})
			if strings.Contains(tc.tasks, `"hold"`) {
				h.complete("hold", nil)
			}
			if !tc.handedOff {
				wantOutput(t, h.wantTask("sw", conductor.TaskCompleted), map[string]any{"evaluationResult": []any{"gold"}, "selectedCase": "gold"})
				h.wantTask("g", conductor.TaskScheduled)
				return
			}
			h.wantTask("sw", conductor.TaskScheduled)
			// Its system worker is handed the value opened, and reports
			// its case.
			typ := h.task("sw").Type
			h.system("sw", conductor.TaskCompleted, conductor.CaseOutput(typ, "gold"), "")
			wantOutput(t, h.wantTask("sw", conductor.TaskCompleted), conductor.CaseOutput(typ, masking.Mask))
			h.wantTask("g", conductor.TaskScheduled)
			for _, task := range h.w.Tasks {
				if task.Ref == "m" || task.Ref == "o" {
					t.Fatalf("the SWITCH also took the case of %s", task.Ref)
				}
			}
		})
	}
}

// A JavaScript SWITCH is decided by its system worker whatever it reads;
// the case it reports reads "***" in its output when its input holds
// sealed data, and is kept as reported otherwise.
func TestScriptCaseOfSealedDataMasked(t *testing.T) {
	sealed := &masking.Sealed{Kind: masking.KindSecrets, Purpose: "wf/wf-1/task/x/output._secrets.tier", Ciphertext: []byte{1}}
	for _, tc := range []struct {
		name, param string
		want        any
	}{
		{"sealed", "${src.output._secrets.tier}", masking.Mask},
		{"plain", "${src.output.tier}", "gold"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, `{"name":"sw","tasks":[{"name":"src","taskReferenceName":"src"},
			  {"name":"sw","taskReferenceName":"sw","type":"SWITCH","evaluatorType":"javascript","expression":"$.x",
			   "inputParameters":{"x":"`+tc.param+`"},"decisionCases":{"gold":[{"name":"g","taskReferenceName":"g"}]}}]}`, nil)
			h.complete("src", map[string]any{"_secrets": map[string]any{"tier": sealed}, "tier": "gold"})
			h.system("sw", conductor.TaskCompleted, map[string]any{"evaluationResult": []any{"gold"}, "selectedCase": "gold"}, "")
			wantOutput(t, h.wantTask("sw", conductor.TaskCompleted), map[string]any{"evaluationResult": []any{tc.want}, "selectedCase": tc.want})
			h.wantTask("g", conductor.TaskScheduled)
		})
	}
}

// A function that computes from sealed data (sum(), concat(), ...), or a
// filter that compares it, gives the decider a result of the value in the
// decision that seals it, and of "***" in every later one, and no
// hand-off computes it again: a SWITCH whose case value is one fails,
// saying which, in every decision. A function that counts (length())
// reads the same in every decision and is decided as any value.
func TestSealedSwitchOnFunctionResult(t *testing.T) {
	sealedLeaf := func(i int) *masking.Sealed {
		return &masking.Sealed{Kind: masking.KindSecrets, Purpose: fmt.Sprintf("wf/wf-1/task/x/output._secrets.amounts[%d]", i), Ciphertext: []byte{1}}
	}
	for _, tc := range []struct {
		name, fn string
		later    bool
		computed bool
	}{
		{"sum, same decision", "_secrets.amounts.sum()", false, true},
		{"sum, later decision", "_secrets.amounts.sum()", true, true},
		{"concat, same decision", "_secrets.amounts.concat()", false, true},
		{"concat, later decision", "_secrets.amounts.concat()", true, true},
		{"concat of an argument, same decision", "_secrets.amounts.concat($.src.output._secrets.amounts[0])", false, true},
		{"length, same decision", "_secrets.amounts.length()", false, false},
		{"length, later decision", "_secrets.amounts.length()", true, false},
		// A filter comparing sealed data keeps what the value or "***"
		// decides.
		{"filter on sealed data, same decision", "_secrets.amounts[?(@ > '15')]", false, true},
		{"filter on sealed data, later decision", "_secrets.amounts[?(@ > '15')]", true, true},
		{"filter against sealed data, same decision", "ids[?(@.id == $.src.output._secrets.amounts[0])].name.first()", false, true},
		{"filter against sealed data, later decision", "ids[?(@.id == $.src.output._secrets.amounts[0])].name.first()", true, true},
		{"filter on plain data", "ids[?(@.id == 'a1')].name.first()", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tasks := `{"name":"src","taskReferenceName":"src"},`
			if tc.later {
				tasks += `{"name":"hold","taskReferenceName":"hold","type":"WAIT"},`
			}
			tasks += `{"name":"sw","taskReferenceName":"sw","type":"SWITCH","evaluatorType":"value-param","expression":"x",
			  "inputParameters":{"x":"${src.output.` + tc.fn + `}"},"decisionCases":{"2":[{"name":"g","taskReferenceName":"g"}]}}`
			h := newHarness(t, `{"name":"sw","tasks":[`+tasks+`]}`, nil)
			amounts := []any{"20", "10"}
			if tc.later {
				amounts = []any{sealedLeaf(0), sealedLeaf(1)}
			}
			h.complete("src", map[string]any{"_secrets": map[string]any{"amounts": amounts},
				"ids": []any{map[string]any{"id": "a1", "name": "2"}, map[string]any{"id": "b2", "name": "3"}}})
			if tc.later {
				h.complete("hold", nil)
			}
			if !tc.computed {
				wantOutput(t, h.wantTask("sw", conductor.TaskCompleted), map[string]any{"evaluationResult": []any{"2"}, "selectedCase": "2"})
				return
			}
			sw := h.wantTask("sw", conductor.TaskFailedWithTerminalError)
			if !strings.Contains(sw.Reason, "case value (x) is computed by a function or a filter from sealed data") {
				t.Errorf("reason %q does not say the case value is computed from sealed data", sw.Reason)
			}
			h.wantStatus(conductor.WorkflowFailed)
		})
	}
}

// A WAIT's duration or until, a TERMINATE's terminationStatus and
// terminationReason, a SUB_WORKFLOW's name, a DYNAMIC task's name, a dynamic fork's task's name or reference name and the name of the secret an UPDATE_SECRET writes, which the decider reads itself or which names something, taken from sealed
// data (whole, in text, computed from it) or a secret fail the task with
// a reason naming the field, not the value, in the decision that seals
// the data as in a later one; plain values run.
func TestEngineReadFieldFromSealedDataFails(t *testing.T) {
	sealedAs := func(key string) *masking.Sealed {
		return &masking.Sealed{Kind: masking.KindSecrets, Purpose: "wf/wf-1/task/x/output._secrets." + key, Ciphertext: []byte{1}}
	}
	wait := func(param string) string {
		return `{"name":"w","taskReferenceName":"t","type":"WAIT","inputParameters":{"duration":"` + param + `"}}`
	}
	terminate := func(param string) string {
		return `{"name":"term","taskReferenceName":"t","type":"TERMINATE","inputParameters":{"terminationStatus":"` + param + `"}}`
	}
	reason := func(param string) string {
		return `{"name":"term","taskReferenceName":"t","type":"TERMINATE","inputParameters":{"terminationStatus":"FAILED","terminationReason":"` + param + `"}}`
	}
	// The field from the task definition's inputTemplate, which fills a
	// key the inputParameters lack or give as null.
	templated := func(typ, given, field, param string) string {
		return `{"name":"x","taskReferenceName":"t","type":"` + typ + `","inputParameters":{` + given + `},` +
			`"taskDefinition":{"name":"x","inputTemplate":{"` + field + `":"` + param + `"}}}`
	}
	sub := func(param string) string {
		return `{"name":"child","taskReferenceName":"t","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"` + param + `","version":1}}`
	}
	subDomain := func(param string) string {
		return `{"name":"child","taskReferenceName":"t","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"kid","version":1,"taskToDomain":{"*":"` + param + `"}}}`
	}
	start := func(request string) string {
		return `{"name":"start","taskReferenceName":"t","type":"START_WORKFLOW","inputParameters":{"startWorkflow":{` + request + `}}}`
	}
	fork := func(task string) string {
		return `{"name":"f","taskReferenceName":"t","type":"FORK_JOIN_DYNAMIC","dynamicForkTasksParam":"ts","inputParameters":{"ts":[` + task + `]}},` +
			`{"name":"j","taskReferenceName":"j","type":"JOIN"}`
	}
	rotate := func(param string) string {
		return `{"name":"r","taskReferenceName":"t","type":"UPDATE_SECRET","inputParameters":{"_secrets":{"secretKey":"` + param + `","secretValue":"v"}}}`
	}
	dynamic := func(param string) string {
		return `{"name":"d","taskReferenceName":"t","type":"DYNAMIC","dynamicTaskNameParam":"tn","inputParameters":{"tn":"` + param + `"}}`
	}
	const value = "COMPLETED" // a valid value of every field below but a name
	for _, tc := range []struct {
		name, task, field string
		later             bool
		fails             bool
		plainStatus       string
	}{
		{"WAIT duration, same decision", wait("${src.output._secrets.v}"), "duration", false, true, ""},
		{"WAIT duration, later decision", wait("${src.output._secrets.v}"), "duration", true, true, ""},
		{"WAIT duration in text, same decision", wait("1${src.output._secrets.v}"), "duration", false, true, ""},
		{"WAIT duration, a secret", wait("${workflow.secrets.wait}"), "duration", false, true, ""},
		{"WAIT duration, plain", wait("${src.output.wait}"), "duration", false, false, conductor.TaskInProgress},
		{"TERMINATE status, same decision", terminate("${src.output._secrets.v}"), "terminationStatus", false, true, ""},
		{"TERMINATE status, later decision", terminate("${src.output._secrets.v}"), "terminationStatus", true, true, ""},
		{"TERMINATE status, computed", terminate("${src.output._secrets.list.concat()}"), "terminationStatus", false, true, ""},
		{"TERMINATE status, plain", terminate("${src.output.status}"), "terminationStatus", false, false, conductor.TaskCompleted},
		// The reason would be the workflow's (and its failure
		// workflow's): the value, then "***" or a reference's text.
		{"TERMINATE reason, same decision", reason("${src.output._secrets.v}"), "terminationReason", false, true, ""},
		{"TERMINATE reason, later decision", reason("${src.output._secrets.v}"), "terminationReason", true, true, ""},
		{"TERMINATE reason in text, same decision", reason("declined: ${src.output._secrets.v}"), "terminationReason", false, true, ""},
		{"TERMINATE reason in text, later decision", reason("declined: ${src.output._secrets.v}"), "terminationReason", true, true, ""},
		{"TERMINATE reason, a secret", reason("${workflow.secrets.why}"), "terminationReason", false, true, ""},
		{"TERMINATE reason, computed", reason("${src.output._secrets.list.concat()}"), "terminationReason", true, true, ""},
		{"TERMINATE reason, plain", reason("${src.output.status}"), "terminationReason", false, false, conductor.TaskCompleted},
		{"TERMINATE reason from the template, same decision", templated("TERMINATE", `"terminationStatus":"FAILED"`, "terminationReason", "declined: ${src.output._secrets.v}"), "terminationReason", false, true, ""},
		{"TERMINATE reason from the template over null, same decision", templated("TERMINATE", `"terminationStatus":"FAILED","terminationReason":null`, "terminationReason", "declined: ${src.output._secrets.v}"), "terminationReason", false, true, ""},
		{"TERMINATE reason from the template, plain", templated("TERMINATE", `"terminationStatus":"FAILED"`, "terminationReason", "declined: ${src.output.status}"), "terminationReason", false, false, conductor.TaskCompleted},
		{"WAIT duration from the template in text, same decision", templated("WAIT", ``, "duration", "1${src.output._secrets.v}"), "duration", false, true, ""},
		{"TERMINATE reason, counted", reason("${src.output._secrets.list.length()} left"), "terminationReason", true, false, conductor.TaskCompleted},
		{"SUB_WORKFLOW name, same decision", sub("${src.output._secrets.v}"), "subWorkflowParam.name", false, true, ""},
		{"SUB_WORKFLOW name, later decision", sub("${src.output._secrets.v}"), "subWorkflowParam.name", true, true, ""},
		{"SUB_WORKFLOW name, plain", sub("${src.output.status}"), "subWorkflowParam.name", false, false, conductor.TaskInProgress},
		{"SUB_WORKFLOW domain, same decision", subDomain("${src.output._secrets.v}"), "subWorkflowParam.taskToDomain.*", false, true, ""},
		{"SUB_WORKFLOW domain, later decision", subDomain("${src.output._secrets.v}"), "subWorkflowParam.taskToDomain.*", true, true, ""},
		{"SUB_WORKFLOW domain, plain", subDomain("${src.output.status}"), "subWorkflowParam.taskToDomain.*", false, false, conductor.TaskInProgress},
		// The started workflow shows and indexes its correlation id and
		// domains; its input alone is resolved (and sealed) for it.
		{"START_WORKFLOW correlationId, same decision", start(`"name":"kid","correlationId":"${src.output._secrets.v}"`), "startWorkflow.correlationId", false, true, ""},
		{"START_WORKFLOW correlationId, later decision", start(`"name":"kid","correlationId":"${src.output._secrets.v}"`), "startWorkflow.correlationId", true, true, ""},
		{"START_WORKFLOW correlationId in text, later decision", start(`"name":"kid","correlationId":"order-${src.output._secrets.v}"`), "startWorkflow.correlationId", true, true, ""},
		{"START_WORKFLOW correlationId, a secret", start(`"name":"kid","correlationId":"${workflow.secrets.corr}"`), "startWorkflow.correlationId", false, true, ""},
		{"START_WORKFLOW correlationId, plain", start(`"name":"kid","correlationId":"${src.output.status}"`), "", false, false, conductor.TaskInProgress},
		{"START_WORKFLOW domain, same decision", start(`"name":"kid","taskToDomain":{"*":"${src.output._secrets.v}"}`), "startWorkflow.taskToDomain.*", false, true, ""},
		{"START_WORKFLOW domain, later decision", start(`"name":"kid","taskToDomain":{"*":"${src.output._secrets.v}"}`), "startWorkflow.taskToDomain.*", true, true, ""},
		{"START_WORKFLOW name, same decision", start(`"name":"${src.output._secrets.v}"`), "startWorkflow.name", false, true, ""},
		{"START_WORKFLOW priority, same decision", start(`"name":"kid","priority":"${src.output._secrets.v}"`), "startWorkflow.priority", false, true, ""},
		{"START_WORKFLOW version, later decision", start(`"name":"kid","version":"${src.output._secrets.v}"`), "startWorkflow.version", true, true, ""},
		// The task would be named after the reference's text.
		{"DYNAMIC name, a secret", dynamic("${workflow.secrets.tn}"), "tn", false, true, ""},
		{"DYNAMIC name in text, a secret", dynamic("w_${workflow.secrets.tn}"), "tn", false, true, ""},
		{"DYNAMIC name, an environment value", dynamic("${workflow.env.tn}"), "tn", true, true, ""},
		{"DYNAMIC name, plain", dynamic("${src.output.wait}"), "", false, false, conductor.TaskScheduled},
		{"forked task's reference name, a secret", fork(`{"name":"w","taskReferenceName":"${workflow.secrets.ref}"}`), "ts[0].taskReferenceName", false, true, ""},
		{"forked task's name in text, a secret", fork(`{"name":"w_${workflow.secrets.n}","taskReferenceName":"f"}`), "ts[0].name", false, true, ""},
		{"forked task's reference name, an environment value", fork(`{"name":"w","taskReferenceName":"${workflow.env.ref}"}`), "ts[0].taskReferenceName", true, true, ""},
		{"simple fork's task name, a secret", `{"name":"f","taskReferenceName":"t","type":"FORK_JOIN_DYNAMIC","inputParameters":{"forkTaskName":"${workflow.secrets.n}","forkTaskInputs":[1]}},` +
			`{"name":"j","taskReferenceName":"j","type":"JOIN"}`, "forkTaskName", false, true, ""},
		{"forked task's input, a secret", fork(`{"name":"w","taskReferenceName":"f","inputParameters":{"k":"${workflow.secrets.k}"}}`), "", false, false, conductor.TaskCompleted},
		// The secret's name, which lists and its subject show.
		{"UPDATE_SECRET name, same decision", rotate("${src.output._secrets.v}"), "_secrets.secretKey", false, true, ""},
		{"UPDATE_SECRET name, later decision", rotate("${src.output._secrets.v}"), "_secrets.secretKey", true, true, ""},
		{"UPDATE_SECRET name in text, later decision", rotate("k_${src.output._secrets.v}"), "_secrets.secretKey", true, true, ""},
		{"UPDATE_SECRET name, a secret", rotate("${workflow.secrets.n}"), "_secrets.secretKey", false, true, ""},
		{"UPDATE_SECRET name, plain", rotate("${src.output.status}"), "", false, false, conductor.TaskScheduled},
		{"START_WORKFLOW input, later decision", start(`"name":"kid","input":{"x":"${src.output._secrets.v}"}`), "", true, false, conductor.TaskInProgress},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tasks := `{"name":"src","taskReferenceName":"src"},`
			if tc.later {
				tasks += `{"name":"hold","taskReferenceName":"hold","type":"WAIT"},`
			}
			h := newHarness(t, `{"name":"wf","tasks":[`+tasks+tc.task+`]}`, nil)
			secrets := map[string]any{"v": value, "list": []any{"COMP", "LETED"}}
			if tc.later {
				secrets = map[string]any{"v": sealedAs("v"), "list": []any{sealedAs("list[0]"), sealedAs("list[1]")}}
			}
			// A plain value equal to one the decision seals would count
			// as sealed: the plain ones differ.
			h.complete("src", map[string]any{"_secrets": secrets, "wait": "7s", "status": conductor.WorkflowTerminated})
			if tc.later {
				h.complete("hold", nil)
			}
			if !tc.fails {
				h.wantTask("t", tc.plainStatus)
				return
			}
			task := h.wantTask("t", conductor.TaskFailedWithTerminalError)
			if !strings.Contains(task.Reason, tc.field+" is ") || strings.Contains(task.Reason, value) {
				t.Errorf("reason %q: want it to name %s and not hold the value", task.Reason, tc.field)
			}
			h.wantStatus(conductor.WorkflowFailed)
		})
	}
}

// Any task's input computed by a function (concat(), sum(), ...) or a
// filter's comparison from sealed data fails the task naming the key, in
// the decision that seals the data (which computed it from the value, and
// stored the result in plain text) as in a later one (from "***": concat()
// gave "", a filter kept nothing). References to sealed data, and
// functions that count or pick (length(), first()), are handed off as
// before.
func TestTaskInputComputedFromSealedDataFails(t *testing.T) {
	sealedAs := func(key string) *masking.Sealed {
		return &masking.Sealed{Kind: masking.KindSecrets, Purpose: "wf/wf-1/task/x/output._secrets." + key, Ciphertext: []byte{1}}
	}
	for _, tc := range []struct {
		name, param, key string // key: the one the reason names, "" when the task runs
		later            bool
	}{
		{"concat, same decision", `"${src.output._secrets.list.concat()}"`, "p", false},
		{"concat, later decision", `"${src.output._secrets.list.concat()}"`, "p", true},
		{"filter, same decision", `"${src.output.users[?(@.id == $.src.output._secrets.id)].name.first()}"`, "p", false},
		{"filter, later decision", `"${src.output.users[?(@.id == $.src.output._secrets.id)].name.first()}"`, "p", true},
		{"nested, later decision", `{"body":{"all":"${src.output._secrets.list.concat()}"}}`, "p", true},
		{"length", `"${src.output._secrets.list.length()}"`, "", true},
		{"first", `"${src.output._secrets.list.first()}"`, "", true},
		{"reference", `"${src.output._secrets.id}"`, "", true},
		{"in text", `"id-${src.output._secrets.id}"`, "", true},
		{"filter on plain data", `"${src.output.users[?(@.id == 'u-1')].name.first()}"`, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tasks := `{"name":"src","taskReferenceName":"src"},`
			if tc.later {
				tasks += `{"name":"hold","taskReferenceName":"hold","type":"WAIT"},`
			}
			tasks += `{"name":"w","taskReferenceName":"w","inputParameters":{"a":"plain","p":` + tc.param + `}}`
			h := newHarness(t, `{"name":"wf","tasks":[`+tasks+`]}`, nil)
			secrets := map[string]any{"id": "u-1-secret", "list": []any{"part-one", "part-two"}}
			if tc.later {
				secrets = map[string]any{"id": sealedAs("id"), "list": []any{sealedAs("list[0]"), sealedAs("list[1]")}}
			}
			h.complete("src", map[string]any{"_secrets": secrets,
				"users": []any{map[string]any{"id": "u-1-secret", "name": "ann"}, map[string]any{"id": "u-1", "name": "bob"}}})
			if tc.later {
				h.complete("hold", nil)
			}
			if tc.key == "" {
				h.wantTask("w", conductor.TaskScheduled)
				return
			}
			task := h.wantTask("w", conductor.TaskFailedWithTerminalError)
			if !strings.Contains(task.Reason, "input "+tc.key+" is computed by a function or a filter from sealed data") {
				t.Errorf("reason %q does not name input %s", task.Reason, tc.key)
			}
			for _, v := range []string{"part-onepart-two", "ann"} {
				if strings.Contains(fmt.Sprint(task.Input), v) {
					t.Errorf("the failed task's input %v holds %q", task.Input, v)
				}
			}
			h.wantStatus(conductor.WorkflowFailed)
		})
	}
}

// A value-param SWITCH's case value that its task definition's
// inputTemplate builds from sealed data is decided at hand-off, as one
// its inputParameters build: the decider, reading the template's key as
// plain, completed it with the value in plain text as its selectedCase.
func TestSwitchCaseFromTemplateOfSealedData(t *testing.T) {
	for _, tc := range []struct {
		name, given string
	}{
		{"lacking", `{}`},
		{"null", `{"k":null}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			task := `{"name":"sw","taskReferenceName":"t","type":"SWITCH","evaluatorType":"value-param","expression":"k",` +
				`"inputParameters":` + tc.given + `,"taskDefinition":{"name":"sw","inputTemplate":{"k":"x-${src.output._secrets.v}"}},` +
				`"decisionCases":{"x-TOPSECRETVALUE":[]},"defaultCase":[]}`
			h := newHarness(t, `{"name":"wf","tasks":[{"name":"src","taskReferenceName":"src"},`+task+`]}`, nil)
			h.complete("src", map[string]any{"_secrets": map[string]any{"v": "TOPSECRETVALUE"}})
			sw := h.wantTask("t", conductor.TaskScheduled)
			if strings.Contains(fmt.Sprint(sw.Output), "TOPSECRETVALUE") || sw.Case != "" {
				t.Errorf("output %v, case %q: the decider chose the case from the value", sw.Output, sw.Case)
			}
		})
	}
}

// A field the definition names in maskedFields is sealed by the guard as
// _masked data is, once the decision that brings it (the start, a rerun
// with new input) is recorded: that decision alone reads it plain. What the
// decider reads itself from it fails the task naming the field, and a case
// from it goes to the SWITCH's system worker, as for _secrets data: the
// value, too short here for redaction, would otherwise be the workflow's
// reason, a started workflow's correlation id, a sub-workflow's name or a
// secret's name in plain text.
func TestEngineReadFieldFromMaskedFieldFails(t *testing.T) {
	const card = "kid-1" // shorter than redaction looks for
	terminate := func(reason string) string {
		return `{"name":"term","taskReferenceName":"t","type":"TERMINATE","inputParameters":{"terminationStatus":"FAILED","terminationReason":"` + reason + `"}}`
	}
	start := func(corr string) string {
		return `{"name":"start","taskReferenceName":"t","type":"START_WORKFLOW","inputParameters":{"startWorkflow":{"name":"kid","correlationId":"` + corr + `"}}}`
	}
	for _, tc := range []struct {
		name, task string
		rerun      bool   // the value comes with a rerun's new input
		field      string // what the reason names; "" when the task goes on
		status     string
	}{
		{"TERMINATE reason", terminate("${workflow.input.card}"), false, "terminationReason", conductor.TaskFailedWithTerminalError},
		{"TERMINATE reason in text", terminate("declined ${workflow.input.card}"), false, "terminationReason", conductor.TaskFailedWithTerminalError},
		{"TERMINATE reason, a rerun's input", terminate("declined ${workflow.input.card}"), true, "terminationReason", conductor.TaskFailedWithTerminalError},
		{"TERMINATE reason, a field not masked", terminate("declined ${workflow.input.open}"), false, "", conductor.TaskCompleted},
		{"START_WORKFLOW correlationId", start("c-${workflow.input.card}"), false, "startWorkflow.correlationId", conductor.TaskFailedWithTerminalError},
		{"START_WORKFLOW correlationId, a field not masked", start("c-${workflow.input.open}"), false, "", conductor.TaskInProgress},
		{"SUB_WORKFLOW name", `{"name":"child","taskReferenceName":"t","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"${workflow.input.card}","version":1}}`,
			false, "subWorkflowParam.name", conductor.TaskFailedWithTerminalError},
		{"WAIT duration", `{"name":"w","taskReferenceName":"t","type":"WAIT","inputParameters":{"duration":"${workflow.input.wait}"}}`,
			false, "duration", conductor.TaskFailedWithTerminalError},
		{"DYNAMIC name", `{"name":"d","taskReferenceName":"t","type":"DYNAMIC","dynamicTaskNameParam":"n","inputParameters":{"n":"${workflow.input.card}"}}`,
			false, "DYNAMIC t takes its task name", conductor.TaskFailedWithTerminalError},
		{"UPDATE_SECRET name", `{"name":"r","taskReferenceName":"t","type":"UPDATE_SECRET","inputParameters":{"_secrets":{"secretKey":"${workflow.input.card}","secretValue":"v"}}}`,
			false, "_secrets.secretKey", conductor.TaskFailedWithTerminalError},
		{"UPDATE_SECRET name, a rerun's input", `{"name":"r","taskReferenceName":"t","type":"UPDATE_SECRET","inputParameters":{"_secrets":{"secretKey":"k_${workflow.input.card}","secretValue":"v"}}}`,
			true, "_secrets.secretKey", conductor.TaskFailedWithTerminalError},
		{"UPDATE_SECRET name, a field not masked", `{"name":"r","taskReferenceName":"t","type":"UPDATE_SECRET","inputParameters":{"_secrets":{"secretKey":"${workflow.input.open}","secretValue":"v"}}}`,
			false, "", conductor.TaskScheduled},
		// Handed to the system worker, which gets the value opened.
		{"SWITCH case", `{"name":"sw","taskReferenceName":"t","type":"SWITCH","evaluatorType":"value-param","expression":"c",` +
			`"inputParameters":{"c":"${workflow.input.card}"},"decisionCases":{"` + card + `":[]}}`, false, "", conductor.TaskScheduled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			def := `{"name":"wf","maskedFields":["card","wait"],"tasks":[` + tc.task + `]}`
			input := map[string]any{"card": card, "wait": "7s", "open": "kid-2"}
			if tc.rerun {
				h := newHarness(t, def, map[string]any{"card": "x"})
				h.wantStatus(conductor.WorkflowFailed)
				h.decide(engine.Rerun{Request: conductor.RerunWorkflowRequest{WorkflowInput: input}})
				checkMaskedFieldRead(t, h, tc.field, tc.status, card)
				return
			}
			checkMaskedFieldRead(t, newHarness(t, def, input), tc.field, tc.status, card)
		})
	}
}

func checkMaskedFieldRead(t *testing.T, h *harness, field, status, value string) {
	t.Helper()
	task := h.wantTask("t", status)
	if field == "" {
		if task.Case != "" {
			t.Errorf("the decider chose case %q from the value", task.Case)
		}
		return
	}
	if !strings.Contains(task.Reason, field) || strings.Contains(task.Reason, value) {
		t.Errorf("reason %q: want it to name %s and not hold the value", task.Reason, field)
	}
	if strings.Contains(h.w.Reason, value) {
		t.Errorf("the workflow's reason %q holds the value", h.w.Reason)
	}
	h.wantStatus(conductor.WorkflowFailed)
}

// UPDATE_SECRETs of one secret that one decision schedules (a fork's
// branches) all run: the name the first brings under _secrets is not
// sealed data the second reads.
func TestEngineUpdateSecretsOfOneNameScheduledTogether(t *testing.T) {
	rotate := func(ref string) string {
		return `[{"name":"r","taskReferenceName":"` + ref + `","type":"UPDATE_SECRET","inputParameters":{"_secrets":{"secretKey":"${workflow.input.name}","secretValue":"v-` + ref + `"}}}]`
	}
	def := `{"name":"wf","tasks":[{"name":"f","taskReferenceName":"f","type":"FORK_JOIN","forkTasks":[` + rotate("a") + `,` + rotate("b") + `]},` +
		`{"name":"j","taskReferenceName":"j","type":"JOIN","joinOn":["a","b"]}]}`
	h := newHarness(t, def, map[string]any{"name": "deploy_key"})
	h.wantTask("b", conductor.TaskScheduled)
	h.wantTask("a", conductor.TaskScheduled)
}
