package system

import (
	"context"
	"runtime"
	"testing"

	"github.com/flowvault/flowvault/schemas/conductor"
)

// The memory budget is measured on the process heap, which concurrent runs
// share: a run within its budget must not fail because others are within
// theirs, and runs over their budgets must still be stopped.
func TestMemWatchSharesTheHeapFairly(t *testing.T) {
	const mib = 1 << 20
	type run struct{ base, limit uint64 }
	tests := []struct {
		name           string
		runs           []run
		live, prevLive uint64
		over           bool
	}{
		{"one run within its budget", []run{{100 * mib, 64 * mib}}, 160 * mib, 0, false},
		{"one run over its budget", []run{{100 * mib, 64 * mib}}, 170 * mib, 0, true},
		{"one run grew past its budget since the last look", []run{{100 * mib, 64 * mib}}, 250 * mib, 180 * mib, true},
		// Three scripts keeping 40 MB each, started one after the other.
		{"three runs within their budgets", []run{{100 * mib, 64 * mib}, {140 * mib, 64 * mib}, {180 * mib, 64 * mib}},
			220 * mib, 0, false},
		{"three runs within their budgets, looked at before", []run{{100 * mib, 64 * mib}, {140 * mib, 64 * mib}, {180 * mib, 64 * mib}},
			220 * mib, 110 * mib, false},
		{"three runs over their budgets", []run{{100 * mib, 64 * mib}, {140 * mib, 64 * mib}, {180 * mib, 64 * mib}},
			(100 + 3*64 + 1) * mib, 0, true},
		{"three runs that grew past their budgets since the last look",
			[]run{{100 * mib, 64 * mib}, {140 * mib, 64 * mib}, {180 * mib, 64 * mib}}, 400 * mib, 200 * mib, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var objects uint64
			m := &memWatch{heap: heapSource{objects: func() uint64 { return objects }, cycles: func() uint64 { return 0 }}}
			for _, r := range tt.runs {
				objects = r.base
				m.begin(r.limit)
			}
			if got := m.over(tt.live, tt.prevLive); got != tt.over {
				t.Fatalf("over(%d MiB, %d MiB) = %v, want %v", tt.live/mib, tt.prevLive/mib, got, tt.over)
			}
		})
	}
	// A run that ended counts until two collections have completed since:
	// the first may have begun before its memory became garbage.
	var objects, cycles uint64 = 100 * mib, 7
	m := &memWatch{heap: heapSource{objects: func() uint64 { return objects }, cycles: func() uint64 { return cycles }}}
	first := m.begin(64 * mib)
	m.begin(64 * mib)
	m.end(first)
	for cycles = 7; cycles < 9; cycles++ {
		if m.over(200*mib, 0) {
			t.Fatalf("%d collections after the first run ended, the runs keeping 100 MiB are over their budgets", cycles-7)
		}
	}
	if !m.over(200*mib, 0) {
		t.Fatal("one run keeping 100 MiB is within its budget of 64 MiB")
	}
}

// A run that ended is forgotten once its memory has been collected,
// whether or not a watch looked at the heap while it ran: runs of a few
// milliseconds, which never look, were kept for as long as the process
// ran. Not parallel: it counts the runs of every script the process runs.
func TestMemWatchForgetsEndedRuns(t *testing.T) {
	const scripts = 100
	run := func() {
		t.Helper()
		res := Inline{}.Execute(context.Background(), &conductor.Task{TaskType: conductor.TaskTypeInline, ReferenceTaskName: "calc",
			InputData: map[string]any{"evaluatorType": "javascript", "expression": "$.n + 1", "n": int64(1)}})
		if res.Status != conductor.TaskCompleted {
			t.Fatalf("%s %q", res.Status, res.ReasonForIncompletion)
		}
	}
	for range scripts {
		run()
	}
	// Two collections completed: the memory of every run above is gone.
	runtime.GC()
	runtime.GC()
	run()
	scriptHeap.mu.Lock()
	kept := len(scriptHeap.runs)
	scriptHeap.mu.Unlock()
	if kept > 1 {
		t.Fatalf("%d runs kept once %d scripts had ended and two collections completed, want the last one's alone", kept, scripts+1)
	}
}
