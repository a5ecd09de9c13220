package executions_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"testing"

	"github.com/google/uuid"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/masking"
	"github.com/flowvault/flowvault/projections/executions"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// counted is what the indexes the gauges count hold, read entry by entry.
func (f *fixture) counted() executions.Gauges {
	f.t.Helper()
	r := f.store.Reader(executions.Name)
	count := func(lower, upper []byte, ok func(v []byte) bool) int64 {
		var n int64
		if err := r.ScanRange(lower, upper, false, func(_, v []byte) bool {
			if ok == nil || ok(v) {
				n++
			}
			return true
		}); err != nil {
			f.t.Fatal(err)
		}
		return n
	}
	scheduled := append(binary.AppendUvarint([]byte("k/"), uint64(len(conductor.TaskScheduled))), conductor.TaskScheduled...)
	return executions.Gauges{
		Running:   count([]byte("r/"), []byte("r0"), nil),
		Scheduled: count(scheduled, append(bytes.Clone(scheduled), 0xff), nil),
		Timers:    count([]byte("d/"), []byte("d0"), nil),
		Compaction: count([]byte("e/"), []byte("e0"), nil) +
			count([]byte("k/0"), []byte("k/\x7f"), func(v []byte) bool { return len(v) == 8 }),
	}
}

// checkGauges fails the test unless the stored counts are what the
// indexes hold, and want.
func (f *fixture) checkGauges(step string, want executions.Gauges) {
	f.t.Helper()
	got, err := f.reader.Gauges(context.Background())
	if err != nil {
		f.t.Fatal(err)
	}
	if c := f.counted(); got != c {
		f.t.Fatalf("%s: gauges %+v, the indexes hold %+v", step, got, c)
	}
	if got != want {
		f.t.Fatalf("%s: gauges %+v, want %+v", step, got, want)
	}
}

// The gauges count the entries of their indexes through a workflow's
// life: tasks scheduled and taken, deadlines, ends, a rerun that drops
// tasks, retries, compaction, removal with and without an archive, and
// they read the same after a restart and after a rebuild from the log.
func TestGaugesFollowTheIndexes(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	var def conductor.WorkflowDef
	// A workflow's timeout is one timer, and its task's poll timeout, due
	// at the same time, is not another; a task taken has its response
	// timeout (3,600 s by default) too.
	if err := conductor.Unmarshal([]byte(`{"name":"g","version":1,"timeoutSeconds":600,"timeoutPolicy":"TIME_OUT_WF",
		"tasks":[{"name":"work","taskReferenceName":"w","taskDefinition":{"name":"work","pollTimeoutSeconds":600,"retryCount":0}}]}`), &def); err != nil {
		t.Fatal(err)
	}
	start := func() string {
		id := uuid.NewString()
		f.decide(id, engine.Start{WorkflowID: id, Def: &def})
		return id
	}
	task := func(id string) *engine.Task { return f.states[id].Tasks[len(f.states[id].Tasks)-1] }
	sealed := map[string]any{"_secrets": &masking.Sealed{Kind: masking.KindSecrets, Purpose: "p", Ciphertext: []byte{1, 2, 3}}}
	finish := func(id, status string, output map[string]any) {
		f.decide(id, engine.Result{Result: conductor.TaskResult{TaskID: task(id).ID, WorkflowInstanceID: id, Status: status, OutputData: output}})
	}

	f.checkGauges("empty", executions.Gauges{})
	a, b, c := start(), start(), start()
	f.checkGauges("three started", executions.Gauges{Running: 3, Scheduled: 3, Timers: 3})
	f.decide(a, engine.Take{TaskID: task(a).ID, WorkerID: "w1", TaskType: "work"})
	f.checkGauges("one taken", executions.Gauges{Running: 3, Scheduled: 2, Timers: 4})
	finish(a, conductor.TaskCompleted, sealed)
	f.checkGauges("one ended with a sealed secret", executions.Gauges{Running: 2, Scheduled: 2, Timers: 2, Compaction: 1})
	f.decide(b, engine.Terminate{Reason: "x"})
	f.checkGauges("one terminated", executions.Gauges{Running: 1, Scheduled: 1, Timers: 1, Compaction: 1})
	f.decide(b, engine.Rerun{})
	f.checkGauges("rerun", executions.Gauges{Running: 2, Scheduled: 2, Timers: 2, Compaction: 1})
	f.decide(b, engine.Take{TaskID: task(b).ID, WorkerID: "w1", TaskType: "work"})
	finish(b, conductor.TaskFailed, sealed)
	f.checkGauges("rerun failed", executions.Gauges{Running: 1, Scheduled: 1, Timers: 1, Compaction: 2})
	f.decide(b, engine.Retry{})
	f.checkGauges("retried", executions.Gauges{Running: 2, Scheduled: 2, Timers: 2, Compaction: 1})
	f.decide(a, engine.Compact{})
	f.checkGauges("compacted", executions.Gauges{Running: 2, Scheduled: 2, Timers: 2})

	f.restartProjection()
	d := start()
	f.decide(d, engine.Take{TaskID: task(d).ID, WorkerID: "w1", TaskType: "work"})
	finish(d, conductor.TaskCompleted, sealed)
	f.checkGauges("after a restart", executions.Gauges{Running: 2, Scheduled: 2, Timers: 2, Compaction: 1})
	f.decide(c, engine.Remove{Terminate: true, Archive: true})
	f.checkGauges("archived", executions.Gauges{Running: 1, Scheduled: 1, Timers: 1, Compaction: 1})
	f.decide(d, engine.Remove{})
	f.checkGauges("removed awaiting compaction", executions.Gauges{Running: 1, Scheduled: 1, Timers: 1, Compaction: 1})
	f.decide(d, engine.Compact{})
	f.checkGauges("removed and compacted", executions.Gauges{Running: 1, Scheduled: 1, Timers: 1})
	e := start()
	f.checkGauges("one more", executions.Gauges{Running: 2, Scheduled: 2, Timers: 2})
	f.decide(e, engine.Remove{Terminate: true})
	f.checkGauges("removed running", executions.Gauges{Running: 1, Scheduled: 1, Timers: 1})
	want := executions.Gauges{Running: 1, Scheduled: 1, Timers: 1}

	// A rebuild folds the same records into the same counts.
	store := f.rebuild()
	if got, err := executions.NewReader(store).Gauges(context.Background()); err != nil || got != want {
		t.Fatalf("rebuilt: %+v, %v; want %+v", got, err, want)
	}
}

// A batch whose records changed the counts writes them even when the
// changes add up to nothing, so that a rebuild, which folds in one batch
// the records the live runner folded in several, leaves the key as the
// live runner did: `flowvault audit --verify` compares them, and reported
// the live store's zeros as drift when the rebuild wrote no key.
func TestGaugesBackAtZeroAsARebuildLeavesThem(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	id := f.start("")
	f.checkGauges("started", executions.Gauges{Running: 1})
	f.decide(id, engine.Terminate{Reason: "x"})
	f.checkGauges("terminated", executions.Gauges{})
	live, err := f.store.Reader(executions.Name).Get([]byte("g/"))
	if err != nil {
		t.Fatalf("live: %v", err)
	}
	rebuilt, err := f.rebuild().Reader(executions.Name).Get([]byte("g/"))
	if err != nil || !bytes.Equal(rebuilt, live) {
		t.Fatalf("rebuilt: gauges %x (%v), live %x", rebuilt, err, live)
	}
}
