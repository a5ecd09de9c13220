package executor

import (
	"fmt"
	"testing"
	"time"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/internal/testutil"
)

// Announcements of tasks that ended before anyone took them (their
// workflows terminated) are drained by a poll, which then gets the task
// queued behind them, rather than answering empty while it waits.
func TestPollDrainsAnnouncementsOfEndedTasks(t *testing.T) {
	l := testutil.OpenLog(t, "")
	e := startExecutor(t, l, nothingScheduled{}, Config{})
	ctx := testutil.Context(t, 60*time.Second)
	const def = `{"name":"stale_flow","tasks":[{"name":"stale_task","taskReferenceName":"t"}]}`
	const ended = 20
	for i := range ended {
		startInline(ctx, t, e, fmt.Sprintf("wf-ended-%d", i), def)
	}
	testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() error {
		if n := dispatched(ctx, t, l); n < ended {
			return fmt.Errorf("%d of %d tasks announced", n, ended)
		}
		return nil
	})
	for i := range ended {
		if _, err := e.Submit(ctx, fmt.Sprintf("wf-ended-%d", i), engine.Terminate{Reason: "ended by the test"}, Meta{}); err != nil {
			t.Fatal(err)
		}
	}
	startInline(ctx, t, e, "wf-live", def)
	tasks, _, err := e.Poll(ctx, PollRequest{TaskType: "stale_task", WorkerID: "w", Count: 1, Wait: 20 * time.Second})
	if err != nil || len(tasks) != 1 || tasks[0].WorkflowInstanceID != "wf-live" {
		t.Fatalf("poll: %d tasks (%v), want wf-live's", len(tasks), err)
	}
}
