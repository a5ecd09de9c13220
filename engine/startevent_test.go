package engine_test

import (
	"encoding/json"
	"testing"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// A workflow an event handler started shows the handler's event as
// Conductor's Workflow.event, recorded by its start and read back from the
// log, and keeps it through a restart, a retry and a rerun, as Conductor's
// do (they reset the same workflow). Other starts have none, and show no
// "event" key.
func TestStartedByEventShowsTheEvent(t *testing.T) {
	const event = "nats:orders.placed"
	for _, tt := range []struct {
		name  string
		event string
		reset func(h *harness)
	}{
		{"started", event, func(*harness) {}},
		{"restarted", event, func(h *harness) {
			h.decide(engine.Terminate{Reason: "stop"})
			h.decide(engine.Restart{})
		}},
		{"retried", event, func(h *harness) {
			h.report("b_ref", conductor.TaskFailedWithTerminalError, nil, "broken")
			h.wantStatus(conductor.WorkflowFailed)
			h.decide(engine.Retry{})
		}},
		{"rerun", event, func(h *harness) {
			h.complete("b_ref", nil)
			h.complete("c_ref", nil)
			h.wantStatus(conductor.WorkflowCompleted)
			h.decide(engine.Rerun{Request: conductor.RerunWorkflowRequest{ReRunFromTaskID: h.task("b_ref").ID}})
		}},
		{"not by an event", "", func(*harness) {}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarnessStart(t, engine.Start{WorkflowID: "wf-1", Def: parseDef(t, threeSimple), CreatedBy: "app:admin",
				Request: conductor.StartWorkflowRequest{Input: map[string]any{"n": int64(1)}}, Event: tt.event})
			started, ok := h.history[0][0].(*schemas.WorkflowStarted)
			if !ok {
				t.Fatalf("the first event is %T", h.history[0][0])
			}
			// As the log holds it: encoded, then decoded.
			env, err := schemas.Default.Encode(started)
			if err != nil {
				t.Fatal(err)
			}
			ev, err := schemas.Default.Decode(env)
			if err != nil {
				t.Fatal(err)
			}
			if got := ev.(*schemas.WorkflowStarted).Event; got != tt.event {
				t.Fatalf("the start records the event %q, want %q", got, tt.event)
			}
			h.complete("a_ref", nil)
			tt.reset(h)
			view := h.w.Conductor(false)
			if h.w.Event != tt.event || view.Event != tt.event {
				t.Fatalf("the workflow's event is %q, shown as %q: want %q", h.w.Event, view.Event, tt.event)
			}
			js, err := json.Marshal(view)
			if err != nil {
				t.Fatal(err)
			}
			var shown map[string]any
			if err := json.Unmarshal(js, &shown); err != nil {
				t.Fatal(err)
			}
			if got, present := shown["event"]; tt.event == "" && present || tt.event != "" && got != tt.event {
				t.Fatalf("the JSON shows event %v (present: %v), want %q", got, present, tt.event)
			}
		})
	}
}
