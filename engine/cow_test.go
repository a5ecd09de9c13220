package engine_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/masking"
	"github.com/flowvault/flowvault/schemas"
)

// Apply replaces a task it changes instead of changing it in place: the
// executor's clones share tasks with the state it caches, and the
// executions read model reuses the encoding of a task it has seen. So no
// event may change a task object of the state before it.
func TestApplyNeverChangesATaskInPlace(t *testing.T) {
	for name, events := range taskStreams(t) {
		var w *engine.Workflow
		for i, ev := range events {
			before := map[*engine.Task][]byte{}
			if w != nil {
				for _, task := range w.Tasks {
					before[task] = encodeTask(t, task)
				}
			}
			var err error
			if w, err = engine.Apply(w, ev); err != nil {
				t.Fatalf("%s, event %d: %v", name, i, err)
			}
			for task, enc := range before {
				if !bytes.Equal(encodeTask(t, task), enc) {
					t.Fatalf("%s, event %d (%s) changed task %s in place", name, i, ev.EventType(), task.ID)
				}
			}
			if _, compaction := ev.(*schemas.WorkflowCompacted); compaction && w.Tasks[0].Output["_secrets"].(map[string]any)["k"] != masking.Mask {
				t.Fatalf("%s: compaction left %v", name, w.Tasks[0].Output)
			}
		}
	}
}

// The read model's encoding of a state's head is the state's encoding
// without its definition, input and tasks, at every step of every stream. The
// read model appends each head to the buffer of the one before.
func TestAppendStateHeadMatchesMarshal(t *testing.T) {
	for name, events := range taskStreams(t) {
		var w *engine.Workflow
		var got []byte
		for i, ev := range events {
			var err error
			if w, err = engine.Apply(w, ev); err != nil {
				t.Fatalf("%s, event %d: %v", name, i, err)
			}
			if got, err = engine.AppendStateHead(got[:0], w); err != nil {
				t.Fatal(err)
			}
			head := *w
			head.DefJSON, head.Input, head.Tasks = nil, nil, nil
			want, err := schemas.MarshalSorted(&head)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("%s, event %d (%s): encodes to\n%x\nwant\n%x", name, i, ev.EventType(), got, want)
			}
		}
	}
}

// taskStreams are event streams that touch tasks every way: the replay
// fixtures, and one with the rest (logs, a lease extension, a retry,
// compaction of sealed output, resets, removal).
func taskStreams(t *testing.T) map[string][]schemas.Event {
	t.Helper()
	sealed := &masking.Sealed{Kind: masking.KindSecrets, Purpose: "wf/wf-1/task/t1/output._secrets.k", Ciphertext: []byte{1, 2, 3}}
	streams := map[string][]schemas.Event{"synthetic": {
		&schemas.WorkflowStarted{WorkflowID: "wf-1", Name: "w", Version: 1, Def: []byte(`{"name":"w","version":1,"tasks":[]}`),
			Input: map[string]any{"a": "input value"}, Time: 1},
		&schemas.TaskScheduled{TaskID: "t1", Ref: "a", Name: "a", Type: "SIMPLE", Status: "SCHEDULED", Seq: 1, Input: map[string]any{"x": int64(1)}, Time: 2},
		&schemas.TaskStarted{TaskID: "t1", WorkerID: "w1", Time: 3, Resolved: []schemas.ResolvedRef{{Kind: "secret", Name: "s"}}},
		&schemas.TaskLogged{TaskID: "t1", Lines: []string{"a line"}, Times: []int64{4}},
		&schemas.TaskUpdated{TaskID: "t1", Status: "IN_PROGRESS", LeaseExtended: true, Time: 5},
		&schemas.TaskUpdated{TaskID: "t1", Status: "FAILED", Reason: "boom", Output: map[string]any{"_secrets": map[string]any{"k": sealed}}, Time: 6},
		&schemas.TaskScheduled{TaskID: "t2", Ref: "a", Name: "a", Type: "SIMPLE", Status: "SCHEDULED", Seq: 2, RetriedTaskID: "t1", RetryCount: 1, Time: 7},
		&schemas.TaskUpdated{TaskID: "t2", Status: "COMPLETED", Output: map[string]any{"v": int64(1)}, Time: 8},
		&schemas.SecretsSealed{Key: "pooled-1"},
		&schemas.ValuesMasked{Paths: []string{"input.a"}},
		&schemas.VariablesUpdated{Variables: map[string]any{"v": int64(1)}, Time: 9},
		&schemas.WorkflowStatusChanged{Status: "COMPLETED", Time: 10},
		&schemas.WorkflowCompacted{Time: 11},
		&schemas.WorkflowReset{Kind: schemas.ResetRetry, Time: 12},
		&schemas.WorkflowReset{Kind: schemas.ResetRerun, KeepBeforeSeq: 2, Time: 13},
		&schemas.WorkflowRemoved{Archived: true, Time: 14},
	}}
	paths, _ := filepath.Glob(filepath.Join("testdata", "replay", "*.records"))
	for _, path := range paths {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, envs := range decodeRecords(t, b) {
			for _, env := range envs {
				ev, err := schemas.Default.Decode(env)
				if err != nil {
					t.Fatal(err)
				}
				streams[path] = append(streams[path], ev)
			}
		}
	}

	return streams
}

func encodeTask(t *testing.T, task *engine.Task) []byte {
	t.Helper()
	b, err := schemas.MarshalSorted(task)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSameValue(t *testing.T) {
	t.Parallel()
	m, s, n := map[string]any{"a": int64(1)}, []any{"x", "y"}, int64(1)
	type uncomparable struct{ _ []int }
	tests := []struct {
		name string
		a, b any
		want bool
	}{
		{"one map", m, m, true},
		{"equal maps", m, map[string]any{"a": int64(1)}, false},
		{"one slice", s, s, true},
		{"a shorter view of a slice", s, s[:1], false},
		{"equal slices", s, []any{"x", "y"}, false},
		{"one pointer", &n, &n, true},
		{"equal numbers", int64(1), int64(1), true},
		{"numbers of two types", 1, int64(1), false},
		{"equal strings", "x", "x", true},
		{"both nil", nil, nil, true},
		{"nil and a value", nil, "", false},
		{"a map and a value", m, "x", false},
		{"uncomparable", uncomparable{}, uncomparable{}, false},
	}
	for _, tt := range tests {
		if got := engine.SameValue(tt.a, tt.b); got != tt.want {
			t.Errorf("%s: SameValue = %v, want %v", tt.name, got, tt.want)
		}
	}
}
