package engine_test

import (
	"fmt"
	"testing"

	"github.com/flowvault/flowvault/engine"
)

// A running branch of a fork is quiet: the decision after a take or a
// result keeps open the JOIN alone, whatever the number of branches
// still running, and the harness checks after every decision that the
// sweep agrees with a look at the task list (engine.SweepAgrees) and
// that deciding on a state that forgot it decides the same.
func TestRunningBranchesAreQuiet(t *testing.T) {
	const n = 40
	h := newHarness(t, benchForkDef, map[string]any{"tasks": dynamicForkTasks(n)})
	for i := range n {
		ref := fmt.Sprintf("d%d", i)
		h.take(ref)
		if open, quiet := engine.SweepCounts(h.w); open != 1 || quiet != n-i {
			t.Fatalf("after the take of %s: %d open, %d quiet; want the JOIN open and the %d branches running quiet", ref, open, quiet, n-i)
		}
		h.complete(ref, nil)
		if i == n-1 {
			break
		}
		if open, quiet := engine.SweepCounts(h.w); open != 1 || quiet != n-i-1 {
			t.Fatalf("after the result of %s: %d open, %d quiet; want the JOIN open and the %d branches running quiet", ref, open, quiet, n-i-1)
		}
	}
	if !h.w.Terminal() {
		t.Fatalf("workflow %s after its last branch", h.w.Status)
	}
}
