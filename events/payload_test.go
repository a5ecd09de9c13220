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

// noDecisions is the Decided of an engine that no action was run on
// before: no request's decision is in its log.
type noDecisions struct{}

func (noDecisions) Decided(context.Context, string, string) (bool, error) { return false, nil }

// startEngine records the requests it is asked to start, and their
// options.
type startEngine struct {
	noDecisions
	started []conductor.StartWorkflowRequest
	options []executor.StartOptions
}

func (e *startEngine) StartWorkflow(_ context.Context, req conductor.StartWorkflowRequest, o executor.StartOptions) (string, uint64, error) {
	e.started = append(e.started, req)
	e.options = append(e.options, o)
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

// taskEngine holds one workflow, wf-1 with the task t-1 (wait), and
// records the results it is given.
type taskEngine struct {
	noDecisions
	results []conductor.TaskResult
}

func (e *taskEngine) StartWorkflow(context.Context, conductor.StartWorkflowRequest, executor.StartOptions) (string, uint64, error) {
	return "", 0, fault.Invalid("no starts here")
}

func (e *taskEngine) Submit(_ context.Context, id string, trig engine.Trigger, _ executor.Meta) (executor.Outcome, error) {
	if id != "wf-1" {
		return executor.Outcome{}, nil
	}
	if r, ok := trig.(engine.Result); ok {
		e.results = append(e.results, r.Result)
	}
	return executor.Outcome{State: &engine.Workflow{ID: "wf-1", CreatedBy: "app:shop", Tasks: []*engine.Task{{ID: "t-1", Ref: "wait"}}}}, nil
}

type oneTask struct{}

func (oneTask) TaskWorkflow(_ context.Context, taskID string) (string, error) {
	if taskID == "t-1" {
		return "wf-1", nil
	}
	return "", fault.NotFound("task %s not found", taskID)
}

// A task that a complete_task or fail_task action updates has the output
// Conductor's SimpleActionProcessor gives it: workflowId, taskId and
// taskRefName as the action names them (null where it names none), the
// action's output over them, then the event's name and message id over
// all. It had the action's output and the event's keys only, so that
// ${wait.output.workflowId} read null.
func TestTaskActionOutput(t *testing.T) {
	t.Parallel()
	payload := `{"wf": "wf-1", "task": "t-1", "amount": 150}`
	for _, tt := range []struct {
		name   string
		action string
		params map[string]any
		status string
		want   map[string]any
	}{
		{"by reference name", conductor.ActionCompleteTask,
			map[string]any{"workflowId": "${wf}", "taskRefName": "wait", "output": map[string]any{"paid": "${amount}"}},
			conductor.TaskCompleted,
			map[string]any{"workflowId": "wf-1", "taskId": nil, "taskRefName": "wait", "paid": int64(150)}},
		{"by task id", conductor.ActionCompleteTask,
			map[string]any{"taskId": "${task}", "output": map[string]any{"paid": true}},
			conductor.TaskCompleted,
			map[string]any{"workflowId": nil, "taskId": "t-1", "taskRefName": nil, "paid": true}},
		{"without output", conductor.ActionFailTask,
			map[string]any{"workflowId": "wf-1", "taskRefName": "wait"},
			conductor.TaskFailed,
			map[string]any{"workflowId": "wf-1", "taskId": nil, "taskRefName": "wait"}},
		{"the output over the names, the event over the output", conductor.ActionFailTask,
			map[string]any{"workflowId": "wf-1", "taskRefName": "wait",
				"output": map[string]any{"workflowId": "mine", "taskRefName": nil, "conductor.event.name": "mine"}},
			conductor.TaskFailed,
			map[string]any{"workflowId": "mine", "taskId": nil, "taskRefName": nil}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			eng := &taskEngine{}
			a := conductor.EventAction{Action: tt.action}
			if tt.action == conductor.ActionCompleteTask {
				a.CompleteTask = tt.params
			} else {
				a.FailTask = tt.params
			}
			h := &conductor.EventHandler{Name: "h", Event: "nats:payments.done", CreatedBy: "app:admin", Actions: []conductor.EventAction{a}}
			deliver(listening(h, Config{Engine: eng, Tasks: oneTask{}}), "payments.done", payload, "m-1")
			if len(eng.results) != 1 {
				t.Fatalf("%d results, want 1", len(eng.results))
			}
			r := eng.results[0]
			if r.TaskID != "t-1" || r.WorkflowInstanceID != "wf-1" || r.Status != tt.status {
				t.Fatalf("updated %s of %s to %s, want t-1 of wf-1 to %s", r.TaskID, r.WorkflowInstanceID, r.Status, tt.status)
			}
			want := map[string]any{"conductor.event.name": "nats:payments.done", "conductor.event.messageId": "m-1"}
			for k, v := range tt.want {
				want[k] = v
			}
			if !reflect.DeepEqual(r.OutputData, want) {
				t.Fatalf("output %#v\nwant %#v", r.OutputData, want)
			}
		})
	}
}
