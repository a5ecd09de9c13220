package engine

import (
	"reflect"
	"testing"

	"github.com/flowvault/flowvault/engine/expr"
	"github.com/flowvault/flowvault/masking"
)

// Each ${workflow.X} is the value and JSON type of Conductor's
// ParametersUtils document, whether the workflow set the field or not: a
// text field never set is null (a whole-string expression yields null,
// one inside text "null"), not "".
func TestWorkflowFields(t *testing.T) {
	unset := &Workflow{ID: "wf-1", Name: "orders", Version: 3, Status: "RUNNING", CreateTime: 1700000000000,
		Input: map[string]any{}, Output: map[string]any{}, Variables: map[string]any{}}
	set := &Workflow{ID: "wf-2", Name: "orders", Version: 4, Status: "FAILED", CreateTime: 1700000000001,
		Input: map[string]any{"n": int64(1)}, Output: map[string]any{"o": true}, Variables: map[string]any{"v": "x"},
		CorrelationID: "c-1", ParentWorkflowID: "parent-1", ParentWorkflowTaskID: "ptask-1", Reason: "boom",
		CreatedBy: "user:ann", Priority: 7}
	wantFields(t, "workflow", unset, set, []field{
		{"input", map[string]any{}, map[string]any{"n": int64(1)}},
		{"output", map[string]any{}, map[string]any{"o": true}},
		{"status", "RUNNING", "FAILED"},
		{"workflowId", "wf-1", "wf-2"},
		{"parentWorkflowId", nil, "parent-1"},
		{"parentWorkflowTaskId", nil, "ptask-1"},
		{"workflowType", "orders", "orders"},
		{"version", int64(3), int64(4)},
		{"correlationId", nil, "c-1"},
		{"reasonForIncompletion", nil, "boom"},
		{"schemaVersion", int64(2), int64(2)},
		{"variables", map[string]any{}, map[string]any{"v": "x"}},
		// flowvault's own: Conductor's document has none of these (null).
		{"createTime", int64(1700000000000), int64(1700000000001)},
		{"priority", int64(0), int64(7)},
		{"createdBy", nil, "user:ann"},
		// Workflow fields Conductor's document leaves out.
		{"startTime", nil, nil},
		{"endTime", nil, nil},
		{"updateTime", nil, nil},
		{"taskToDomain", nil, nil},
		{"ownerApp", nil, nil},
		{"failedReferenceTaskNames", nil, nil},
		{"workflowDefinition", nil, nil},
	})
}

// Each ${ref.X} is the value and JSON type of Conductor's document too: a
// task not taken has no workerId, one that did not fail no
// reasonForIncompletion, and its correlationId is its workflow's.
func TestTaskFields(t *testing.T) {
	unsetT := &Task{ID: "t-1", Ref: "a", Name: "a", Type: "SIMPLE", Status: "SCHEDULED", ScheduledTime: 5}
	setT := &Task{ID: "t-2", Ref: "a", Name: "a", Type: "SUB_WORKFLOW", Status: "FAILED", ScheduledTime: 5, StartTime: 6,
		EndTime: 7, RetryCount: 1, PollCount: 2, WorkerID: "w-1", Reason: "boom", CallbackAfterSeconds: 30, SubWorkflowID: "child-1"}
	unset := &Workflow{ID: "wf-1", Tasks: []*Task{unsetT}}
	set := &Workflow{ID: "wf-2", CorrelationID: "c-1", Tasks: []*Task{setT}}
	wantFields(t, "a", unset, set, []field{
		{"taskType", "a", "SUB_WORKFLOW"},
		{"status", "SCHEDULED", "FAILED"},
		{"referenceTaskName", "a", "a"},
		{"retryCount", int64(0), int64(1)},
		{"correlationId", nil, "c-1"},
		{"pollCount", int64(0), int64(2)},
		{"taskDefName", "a", "a"},
		{"scheduledTime", int64(5), int64(5)},
		{"startTime", int64(0), int64(6)},
		{"endTime", int64(0), int64(7)},
		{"workflowInstanceId", "wf-1", "wf-2"},
		{"taskId", "t-1", "t-2"},
		{"reasonForIncompletion", nil, "boom"},
		{"callbackAfterSeconds", int64(0), int64(30)},
		{"workerId", nil, "w-1"},
		{"iteration", int64(0), int64(0)},
		// flowvault's own: Conductor's document has no subWorkflowId.
		{"subWorkflowId", nil, "child-1"},
		{"domain", nil, nil},
	})
}

// field is a field of an expression source, its value in a workflow that
// did not set it and in one that did.
type field struct {
	name       string
	unset, set any
}

// wantFields checks each ${source.field} of unset and set, whole and, for
// a text or null value, inside text.
func wantFields(t *testing.T, source string, unset, set *Workflow, fields []field) {
	t.Helper()
	for _, f := range fields {
		for _, c := range []struct {
			name string
			w    *Workflow
			want any
		}{{"unset", unset, f.unset}, {"set", set, f.set}} {
			path := "${" + source + "." + f.name + "}"
			got, _, err := expr.Evaluate(path, &workflowDoc{w: c.w})
			if err != nil || !reflect.DeepEqual(got, c.want) {
				t.Errorf("%s %s = %#v (%v), want %#v", c.name, path, got, err, c.want)
			}
			want := "x-null"
			if s, ok := c.want.(string); ok {
				want = "x-" + s
			} else if c.want != nil {
				continue
			}
			if got, _, err := expr.Evaluate("x-"+path, &workflowDoc{w: c.w}); err != nil || got != want {
				t.Errorf("%s x-%s = %#v (%v), want %q", c.name, path, got, err, want)
			}
		}
	}
}

// A task's record names what the texts it holds sealed whole read of the
// workflow's sealed data (TaskScheduled.SealedReads): the texts inside a
// _secrets or _masked block, which the guard seals, and those an instance
// whose input is kept carried while such a text still is sealed. Text
// outside a block stays readable and is not named again.
func TestBlockReads(t *testing.T) {
	text := func(ref string) string {
		s, ok := expr.DeferSealed("Bearer tok-123456789", false, "tok-123456789", ref)
		if !ok {
			t.Fatalf("no reference to %s", ref)
		}
		return s
	}
	sealed := &masking.Sealed{Kind: masking.KindSecrets, Purpose: "wf/w/task/t2/input._secrets.auth"}
	for _, tc := range []struct {
		name     string
		in       map[string]any
		deferred [][]any
		carried  []string
		want     []string
	}{
		{"in a _secrets block", map[string]any{"_secrets": map[string]any{"auth": text("task/t1/output._secrets.a")}},
			[][]any{{"_secrets", "auth"}}, nil, []string{"task/t1/output._secrets.a"}},
		{"deeper, in a _masked block", map[string]any{"startWorkflow": map[string]any{"input": map[string]any{"_masked": map[string]any{"l": []any{text("input._secrets.b")}}}}},
			[][]any{{"startWorkflow", "input", "_masked", "l", 0}}, nil, []string{"input._secrets.b"}},
		{"outside a block", map[string]any{"auth": text("task/t1/output._secrets.a")}, [][]any{{"auth"}}, nil, nil},
		{"each once", map[string]any{"_secrets": map[string]any{"a": text("input._secrets.b"), "b": text("input._secrets.b")}},
			[][]any{{"_secrets", "a"}, {"_secrets", "b"}}, nil, []string{"input._secrets.b"}},
		{"carried while sealed", map[string]any{"_secrets": map[string]any{"auth": sealed}},
			[][]any{{"_secrets", "auth"}}, []string{"task/t1/output._secrets.a"}, []string{"task/t1/output._secrets.a"}},
		{"not carried once evaluated again", map[string]any{"_secrets": map[string]any{"auth": text("input._secrets.b")}},
			[][]any{{"_secrets", "auth"}}, []string{"task/t1/output._secrets.a"}, []string{"input._secrets.b"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := blockReads(tc.in, tc.deferred, tc.carried); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("blockReads = %v, want %v", got, tc.want)
			}
		})
	}
}
