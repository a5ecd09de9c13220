package engine_test

import (
	"strings"
	"testing"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// A workflow's priority goes with its worker tasks' dispatches, which the
// executor queues by it, and to the workflows it starts: a SUB_WORKFLOW's
// child takes the parent's unless subWorkflowParam.priority sets another
// (Orkes), a START_WORKFLOW's target the one its input names.
func TestPriority(t *testing.T) {
	start := func(def string, input map[string]any) *harness {
		t.Helper()
		return newHarnessStart(t, engine.Start{WorkflowID: "wf-1", Def: parseDef(t, def), CreatedBy: "app:tester",
			Request: conductor.StartWorkflowRequest{Input: input, Priority: 7}})
	}

	h := start(`{"name":"p","tasks":[{"name":"work","taskReferenceName":"work"}]}`, nil)
	if got := effectsOf[engine.Dispatch](h.last); len(got) != 1 || got[0].Priority != 7 {
		t.Fatalf("dispatch effects %+v, want one of priority 7", got)
	}

	sub := func(param string) string {
		return `{"name":"p","tasks":[{"name":"child","taskReferenceName":"child","type":"SUB_WORKFLOW",
		  "subWorkflowParam":{"name":"kid"` + param + `}}]}`
	}
	for _, tc := range []struct {
		name, param string
		want        int
		refused     string
	}{
		{"inherited", ``, 7, ""},
		{"set", `,"priority":2`, 2, ""},
		{"default set", `,"priority":0`, 0, ""},
		{"expression", `,"priority":"${workflow.input.p}"`, 12, ""},
		{"numeric string", `,"priority":"40"`, 40, ""},
		{"out of range", `,"priority":100`, 0, "subWorkflowParam.priority 100"},
		{"fraction", `,"priority":1.5`, 0, "subWorkflowParam.priority 1.5"},
		{"not a number", `,"priority":"high"`, 0, "subWorkflowParam.priority high"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := start(sub(tc.param), map[string]any{"p": int64(12)})
			got := effectsOf[engine.StartWorkflow](h.last)
			if len(got) != 1 {
				t.Fatalf("start effects %+v", got)
			}
			if tc.refused != "" {
				if !strings.Contains(got[0].Refused, tc.refused) {
					t.Fatalf("refusal %q, want it to name %q", got[0].Refused, tc.refused)
				}
				return
			}
			if got[0].Refused != "" || got[0].Priority != tc.want {
				t.Fatalf("child priority %d (refused %q), want %d", got[0].Priority, got[0].Refused, tc.want)
			}
		})
	}

	startWF := func(prio string) string {
		return `{"name":"p","tasks":[{"name":"s","taskReferenceName":"s","type":"START_WORKFLOW",
		  "inputParameters":{"startWorkflow":{"name":"other","priority":` + prio + `}}}]}`
	}
	h = start(startWF(`3`), nil)
	if got := effectsOf[engine.StartWorkflow](h.last); len(got) != 1 || got[0].Priority != 3 {
		t.Fatalf("START_WORKFLOW effects %+v, want priority 3", got)
	}
	h = start(startWF(`"${workflow.input.p}"`), map[string]any{"p": int64(120)})
	h.wantTask("s", conductor.TaskFailedWithTerminalError)
	if !strings.Contains(h.task("s").Reason, "startWorkflow.priority 120: want an integer 0-99") {
		t.Fatalf("reason %q", h.task("s").Reason)
	}
}
