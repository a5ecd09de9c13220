package executions_test

import (
	"flag"
	"fmt"
	"os"
	"slices"
	"testing"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/projections/executions"
)

// The read model's tests check, after every record they fold, that the
// deadlines it counted record by record are those of a walk over the
// state (engine.Deadlines), as the engine's harness checks its derived
// counts: a count that strays would leave a timer in the index for good,
// or drop one a task waits for.
//
// Benchmarks fold without the check, which would cost them the walk.
func TestMain(m *testing.M) {
	flag.Parse()
	var stray error
	if flag.Lookup("test.bench").Value.String() == "" {
		executions.CheckTimers(func(w *engine.Workflow, counted []int64) {
			if want := engine.Deadlines(w); stray == nil && !slices.Equal(counted, want) {
				stray = fmt.Errorf("workflow %s at %d (%s, %d tasks): counted deadlines %v, a walk finds %v", w.ID, w.Seq, w.Status, len(w.Tasks), counted, want)
			}
		})
	}
	code := m.Run()
	if stray != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", stray)
		code = 1
	}
	os.Exit(code)
}
