package engine_test

import (
	"strings"
	"testing"

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
		{"embedded in text, later decision", src + `,` + hold + `,` + sw("tier-${src.output._secrets.tier}"), sealed, true},
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
			h.system("sw", conductor.TaskCompleted, map[string]any{"evaluationResult": []any{"gold"}, "selectedCase": "gold"}, "")
			wantOutput(t, h.wantTask("sw", conductor.TaskCompleted), map[string]any{"evaluationResult": []any{masking.Mask}, "selectedCase": masking.Mask})
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
