package events

import (
	"errors"
	"slices"
	"testing"

	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// A parameter without an expression has the same value at every event:
// one of a type its field does not take is refused when the handler is
// saved, naming it, where it would fail the action at every event. One
// with an expression is the event's to decide, and a value the decoder
// coerces, as it does a request's, is fine.
func TestValidateParameterTypes(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name   string
		action string
		params map[string]any
		bad    []string // the paths refused, sorted
	}{
		{"start", conductor.ActionStartWorkflow, map[string]any{"name": "w", "version": 2, "input": map[string]any{"a": 1}, "priority": "3"}, nil},
		{"version not a number", conductor.ActionStartWorkflow, map[string]any{"name": "w", "version": "abc"}, []string{"start_workflow.version"}},
		{"input not an object", conductor.ActionStartWorkflow, map[string]any{"name": "w", "input": "text", "taskToDomain": 5},
			[]string{"start_workflow.input", "start_workflow.taskToDomain"}},
		{"name not text", conductor.ActionStartWorkflow, map[string]any{"name": map[string]any{"a": 1}}, []string{"start_workflow.name"}},
		{"from the event", conductor.ActionStartWorkflow, map[string]any{"name": "w", "version": "${v}", "input": "${payload}"}, nil},
		{"unknown idempotencyStrategy", conductor.ActionStartWorkflow, map[string]any{"name": "w", "idempotencyKey": "${id}", "idempotencyStrategy": "RETURN_EXISTNG"},
			[]string{"start_workflow.idempotencyStrategy"}},
		{"idempotencyStrategy from the event", conductor.ActionStartWorkflow, map[string]any{"name": "w", "idempotencyStrategy": "${s}"}, nil},
		{"output not an object", conductor.ActionCompleteTask, map[string]any{"taskId": "t", "output": "done"}, []string{"complete_task.output"}},
		{"fail output from the event", conductor.ActionFailTask, map[string]any{"taskId": "t", "output": map[string]any{"r": "${reason}"}}, nil},
		{"reason not text", conductor.ActionTerminateWorkflow, map[string]any{"workflowId": "w", "terminationReason": map[string]any{"a": 1}},
			[]string{"terminate_workflow.terminationReason"}},
		{"variables not an object", conductor.ActionUpdateWorkflowVariables, map[string]any{"workflowId": "w", "variables": "x"},
			[]string{"update_workflow_variables.variables"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a := conductor.EventAction{Action: tt.action}
			switch tt.action {
			case conductor.ActionStartWorkflow:
				a.StartWorkflow = tt.params
			case conductor.ActionCompleteTask:
				a.CompleteTask = tt.params
			case conductor.ActionFailTask:
				a.FailTask = tt.params
			case conductor.ActionTerminateWorkflow:
				a.TerminateWorkflow = tt.params
			case conductor.ActionUpdateWorkflowVariables:
				a.UpdateWorkflowVariables = tt.params
			}
			err := Validate(&conductor.EventHandler{Name: "h", Event: "nats:orders.new", Actions: []conductor.EventAction{a}})
			var got []string
			var ve *fault.ValidationError
			if errors.As(err, &ve) {
				for _, f := range ve.Fields {
					got = append(got, f.Path[len("actions[0]."):])
				}
			} else if err != nil {
				t.Fatalf("error %v, want a validation error", err)
			}
			slices.Sort(got)
			if !slices.Equal(got, tt.bad) {
				t.Fatalf("refused %v (%v), want %v", got, err, tt.bad)
			}
		})
	}
}
