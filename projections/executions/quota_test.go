package executions_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/projections/executions"
	"github.com/flowvault/flowvault/schemas/conductor"
)

func (f *fixture) startAs(principal string) string {
	f.t.Helper()
	return f.startWith("", principal)
}

// gate ends workflow id's WAIT task with status.
func (f *fixture) gate(id, status string) {
	f.t.Helper()
	f.decide(id, engine.Result{Result: conductor.TaskResult{TaskID: f.states[id].Tasks[len(f.states[id].Tasks)-1].ID,
		WorkflowInstanceID: id, Status: status}})
}

func runningOf(t *testing.T, r *executions.Reader, principal string) int {
	t.Helper()
	n, _, err := r.RunningOf(context.Background(), principal)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// Each principal's count of running workflows follows every change of a
// workflow's running state, PAUSED counting as running, and a rebuild
// from the log writes the same counts (and the same read model).
func TestRunningByPrincipal(t *testing.T) {
	f := newFixture(t)
	var a, b, c, d, e string
	steps := []struct {
		name       string
		do         func()
		alice, bob int
	}{
		{"starts", func() {
			a, b, c, d, e = f.startAs("alice"), f.startAs("alice"), f.startAs("alice"), f.startAs("bob"), f.startAs("bob")
		}, 3, 2},
		{"complete", func() { f.gate(a, conductor.TaskCompleted) }, 2, 2},
		{"terminate", func() { f.decide(b, engine.Terminate{Reason: "x"}) }, 1, 2},
		{"pause", func() { f.decide(c, engine.Pause{}) }, 1, 2},
		{"restart", func() { f.decide(a, engine.Restart{}) }, 2, 2},
		{"fail", func() { f.gate(d, conductor.TaskFailed) }, 2, 1},
		{"retry", func() { f.decide(d, engine.Retry{}) }, 2, 2},
		{"rerun", func() {
			f.decide(b, engine.Rerun{})
			f.decide(d, engine.Terminate{Reason: "x"})
		}, 3, 1},
		{"remove running", func() { f.decide(c, engine.Remove{Terminate: true}) }, 2, 1},
		{"archive running", func() { f.decide(e, engine.Remove{Terminate: true, Archive: true}) }, 2, 0},
		{"remove ended", func() { f.decide(d, engine.Remove{}) }, 2, 0},
		{"end", func() {
			f.decide(a, engine.Terminate{Reason: "x"})
			f.gate(b, conductor.TaskCompleted)
		}, 0, 0},
		{"run again", func() { f.decide(a, engine.Rerun{}) }, 1, 0},
	}
	for _, s := range steps {
		s.do()
		if got := runningOf(t, f.reader, "alice"); got != s.alice {
			t.Errorf("after %s: alice has %d running, want %d", s.name, got, s.alice)
		}
		if got := runningOf(t, f.reader, "bob"); got != s.bob {
			t.Errorf("after %s: bob has %d running, want %d", s.name, got, s.bob)
		}
	}

	// A rebuild from the log: a new store, folding every record.
	rebuilt := f.rebuild()
	if got := runningOf(t, executions.NewReader(rebuilt), "alice"); got != 1 {
		t.Errorf("rebuilt: alice has %d running, want 1", got)
	}
	var live, again bytes.Buffer
	if err := f.store.Dump(&live); err != nil {
		t.Fatal(err)
	}
	if err := rebuilt.Dump(&again); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(live.Bytes(), again.Bytes()) {
		t.Error("the rebuilt read model differs from the live one")
	}
}
