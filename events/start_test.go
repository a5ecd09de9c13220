package events

import (
	"context"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go"
	dto "github.com/prometheus/client_model/go"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/executor"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// keyEngine refuses every start after the first as a held idempotency key
// does (executor.ErrKeyHeld, a fault.ErrConflict too).
type keyEngine struct {
	noDecisions
	starts int
}

func (e *keyEngine) StartWorkflow(_ context.Context, _ conductor.StartWorkflowRequest, o executor.StartOptions) (string, uint64, error) {
	e.starts++
	if e.starts > 1 {
		return "", 0, fmt.Errorf("%w: %w", fault.ErrConflict, executor.ErrKeyHeld)
	}
	return o.WorkflowID, 1, nil
}

func (e *keyEngine) Submit(context.Context, string, engine.Trigger, executor.Meta) (executor.Outcome, error) {
	return executor.Outcome{}, fault.NotFound("no workflow")
}

type allowAll struct{}

func (allowAll) MayStart(context.Context, []string, conductor.StartWorkflowRequest) (executor.Pin, error) {
	return executor.Pin{}, nil
}
func (allowAll) MayExecute(context.Context, string, *engine.Workflow) error { return nil }

// A start_workflow that the request's idempotency key refuses (another
// event's workflow holds the key) failed: it is counted and logged as a
// failure, not as a repeat of this event's own start, which runs nothing
// new and is fine.
func TestStartRefusedByIdempotencyKeyFails(t *testing.T) {
	h := &conductor.EventHandler{Name: "h", CreatedBy: "app:admin", Actions: []conductor.EventAction{{Action: conductor.ActionStartWorkflow,
		StartWorkflow: map[string]any{"name": "target", "idempotencyKey": "k1"}}}}
	l := New(context.Background(), Config{Engine: &keyEngine{}, Authz: allowAll{}})
	l.handlers = map[string][]*conductor.EventHandler{"orders.new": {h}}
	for i := range 2 {
		m := nats.NewMsg("orders.new")
		m.Data = []byte(`{}`)
		m.Header.Set(nats.MsgIdHdr, fmt.Sprintf("msg-%d", i))
		l.receive("orders.new", m)
	}
	count := func(outcome string) float64 {
		var m dto.Metric
		if err := l.runs.WithLabelValues(conductor.ActionStartWorkflow, outcome).Write(&m); err != nil {
			t.Fatal(err)
		}
		return m.GetCounter().GetValue()
	}
	ran, failed := count(outcomeRan), count(outcomeFailed)
	if ran != 1 || failed != 1 {
		t.Fatalf("ran %v, failed %v: want 1 and 1 (the second start was refused by its key)", ran, failed)
	}
}

// A workflow a start_workflow action starts is started with the handler's
// event, which it shows as Conductor's Workflow.event: the handler's, a
// pattern as written, not the subject the message came on.
func TestStartCarriesTheHandlersEvent(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ name, event, subject string }{
		{"a subject", "nats:orders.placed", "orders.placed"},
		{"a pattern", "nats:orders.>", "orders.placed"},
		{"with a queue", "nats:orders.placed:workers", "orders.placed"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			eng := &startEngine{}
			h := &conductor.EventHandler{Name: "h", Event: tt.event, CreatedBy: "app:admin", Actions: []conductor.EventAction{{
				Action: conductor.ActionStartWorkflow, StartWorkflow: map[string]any{"name": "target"}}}}
			deliver(listening(h, Config{Engine: eng}), tt.subject, `{}`, "")
			if len(eng.options) != 1 {
				t.Fatalf("%d starts, want 1", len(eng.options))
			}
			if got := eng.options[0].Event; got != tt.event {
				t.Fatalf("started with the event %q, want the handler's %q", got, tt.event)
			}
		})
	}
}
