package engine_test

import (
	"testing"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// A result that carries variables (updateState) sets them in the decision
// that records it, before the task's update: what the update sets off
// reads them. A result refused (an error) or ignored (a task or workflow
// that has ended, progress on a DO_WHILE from an operator) sets none of
// them: the decision records nothing.
func TestResultVariablesGoWithTheResult(t *testing.T) {
	const gated = `{"name":"sv","tasks":[{"name":"gate","taskReferenceName":"gate","type":"WAIT"},
	  {"name":"w","taskReferenceName":"w","inputParameters":{"x":"${workflow.variables.x}"}}]}`
	const looped = `{"name":"lp","tasks":[{"name":"loop","taskReferenceName":"loop","type":"DO_WHILE","loopCondition":"false",
	  "loopOver":[{"name":"body","taskReferenceName":"body"}]}]}`
	vars := map[string]any{"x": int64(1)}
	tests := []struct {
		name  string
		def   string
		setup func(h *harness)
		ref   string
		res   conductor.TaskResult
		err   error // the refusal, nil when taken or ignored
		taken bool  // false: ignored or refused, and nothing recorded
	}{
		{name: "taken", def: gated, ref: "gate", res: conductor.TaskResult{Status: conductor.TaskCompleted}, taken: true},
		{name: "callbackAfterSeconds out of range", def: gated, ref: "gate",
			res: conductor.TaskResult{Status: conductor.TaskCompleted, CallbackAfterSeconds: -5}, err: fault.ErrInvalid},
		{name: "unknown status", def: gated, ref: "gate", res: conductor.TaskResult{Status: "DONE"}, err: fault.ErrInvalid},
		{name: "task ended", def: gated, setup: func(h *harness) { h.complete("gate", nil) }, ref: "gate",
			res: conductor.TaskResult{Status: conductor.TaskFailed}},
		{name: "workflow ended", def: gated, setup: func(h *harness) { h.decide(engine.Terminate{Reason: "stop"}) }, ref: "gate",
			res: conductor.TaskResult{Status: conductor.TaskCompleted}},
		{name: "DO_WHILE progress from an operator", def: looped, ref: "loop", res: conductor.TaskResult{Status: conductor.TaskInProgress}},
		{name: "DO_WHILE whose body runs", def: looped, ref: "loop", res: conductor.TaskResult{Status: conductor.TaskCompleted}, err: fault.ErrConflict},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, tt.def, nil)
			if tt.setup != nil {
				tt.setup(h)
			}
			res := tt.res
			res.TaskID, res.WorkflowInstanceID = h.task(tt.ref).ID, h.w.ID
			d, err := h.try(engine.Result{Result: res, By: "user:op", Variables: vars})
			switch {
			case tt.err != nil:
				wantErr(t, err, tt.err)
			case err != nil:
				t.Fatalf("result: %v", err)
			}
			if _, set := h.w.Variables["x"]; set != tt.taken {
				t.Fatalf("variables %v after the result (taken %v): %s", h.w.Variables, tt.taken, describe(d))
			}
			if !tt.taken {
				if len(d.Events) > 0 {
					t.Fatalf("a result not taken recorded %s", describe(d))
				}
				if reply, _ := d.Reply.(engine.ResultReply); tt.err == nil && !reply.Ignored {
					t.Fatalf("reply %+v, want the result ignored", d.Reply)
				}
				return
			}
			// Set before the task's update: the next task's input reads them.
			for _, ev := range d.Events {
				if _, ok := ev.(*schemas.TaskUpdated); ok {
					t.Fatalf("the task's update comes before the variables: %s", describe(d))
				}
				if _, ok := ev.(*schemas.VariablesUpdated); ok {
					break
				}
			}
			if got := h.task("w").Input["x"]; got != int64(1) {
				t.Fatalf("the next task's input reads x = %v, want 1", got)
			}
		})
	}
}
