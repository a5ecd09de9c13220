package events

import (
	"context"
	"reflect"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/executor"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// startEngine records the requests it is asked to start.
type startEngine struct {
	started []conductor.StartWorkflowRequest
}

func (e *startEngine) StartWorkflow(_ context.Context, req conductor.StartWorkflowRequest, o executor.StartOptions) (string, uint64, error) {
	e.started = append(e.started, req)
	return o.WorkflowID, 1, nil
}

func (e *startEngine) Submit(context.Context, string, engine.Trigger, executor.Meta) (executor.Outcome, error) {
	return executor.Outcome{}, fault.NotFound("no workflow")
}

// An action's parameters read the event's payload as Conductor's JSONPath
// does, the payload itself included: "${$}" is the whole event (Conductor
// OSS's own recipe for a start_workflow, "input": {"data": "${$}"}), and
// paths from the root that no single member names (a deep scan, a
// function of the root) read it too. They were null: the root was read as
// a workflow's document, whose sources cannot be enumerated.
func TestActionParametersReadTheWholePayload(t *testing.T) {
	t.Parallel()
	payload := `{"orderId": "o-1", "items": [{"sku": "a"}, {"sku": "b"}]}`
	whole := map[string]any{"orderId": "o-1", "items": []any{map[string]any{"sku": "a"}, map[string]any{"sku": "b"}}}
	for _, tt := range []struct {
		name  string
		input map[string]any
		want  map[string]any
	}{
		{"the payload", map[string]any{"data": "${$}"}, map[string]any{"data": whole}},
		{"the payload, spaced", map[string]any{"data": "${ $ }"}, map[string]any{"data": whole}},
		{"a member", map[string]any{"id": "${orderId}", "also": "${$.orderId}"}, map[string]any{"id": "o-1", "also": "o-1"}},
		{"a deep scan", map[string]any{"skus": "${$..sku}"}, map[string]any{"skus": []any{"a", "b"}}},
		{"a function of the root", map[string]any{"n": "${$.length()}"}, map[string]any{"n": int64(2)}},
		{"a missing member", map[string]any{"none": "${nothing}"}, map[string]any{"none": nil}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			eng := &startEngine{}
			h := &conductor.EventHandler{Name: "h", Event: "nats:orders.new", CreatedBy: "app:admin", Actions: []conductor.EventAction{{
				Action: conductor.ActionStartWorkflow, StartWorkflow: map[string]any{"name": "target", "input": tt.input}}}}
			l := New(context.Background(), Config{Engine: eng, Authz: allowAll{}})
			l.handlers = map[string][]*conductor.EventHandler{"orders.new": {h}}
			m := nats.NewMsg("orders.new")
			m.Data = []byte(payload)
			l.receive("orders.new", m)
			if len(eng.started) != 1 {
				t.Fatalf("%d starts, want 1", len(eng.started))
			}
			got := eng.started[0].Input
			delete(got, "conductor.event.name")
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("started with input %#v, want %#v", got, tt.want)
			}
		})
	}
}
