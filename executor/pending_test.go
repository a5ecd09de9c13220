package executor

import (
	"fmt"
	"testing"
	"time"

	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// A DO_WHILE over more items than one decision runs (its body the decider
// completes alone) goes on right after each decision that yielded, not at
// the timer's next scan. The timer here never fires within the test (and
// has nothing scheduled to find): only the immediate Tick can complete it.
func TestLongDecidedLoopContinuesAtOnce(t *testing.T) {
	l := testutil.OpenLog(t, "")
	e := startExecutor(t, l, nothingScheduled{}, Config{TimerInterval: time.Hour})
	// Far below the timer's hour, far above what 3,000 iterations take on
	// a loaded machine under -race.
	ctx := testutil.Context(t, 5*time.Minute)

	const items = 3000
	def := fmt.Sprintf(`{"name":"long_decided_loop","version":1,"tasks":[{"name":"loop","taskReferenceName":"loop","type":"DO_WHILE",
	  "items":[%s],"inputParameters":{"keepLastN":3},
	  "loopOver":[{"name":"set","taskReferenceName":"set","type":"SET_VARIABLE","inputParameters":{"last":"${loop.output.loopItem}"}}]}]}`,
		joinInts(items))
	const id = "wf-long-decided-loop"
	startInline(ctx, t, e, id, def)

	for {
		w, err := e.State(ctx, id)
		if err != nil && ctx.Err() != nil {
			t.Fatal("the loop did not complete before the test timed out: it waits for the timer")
		}
		if err != nil {
			t.Fatalf("state of %s: %v", id, err)
		}
		if w.Status != conductor.WorkflowRunning {
			if w.Status != conductor.WorkflowCompleted || w.Variables["last"] != int64(items-1) {
				t.Fatalf("workflow %s (%s), variables %v", w.Status, w.Reason, w.Variables)
			}
			return
		}
		select {
		case <-ctx.Done():
			t.Fatal("the loop did not complete before the test timed out: it waits for the timer")
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func joinInts(n int) string {
	b := make([]byte, 0, n*5)
	for i := range n {
		if i > 0 {
			b = append(b, ',')
		}
		b = fmt.Append(b, i)
	}
	return string(b)
}
