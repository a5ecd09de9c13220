package executor

import (
	"context"
	"testing"
	"time"

	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// An engine that stops gracefully right after a decision performs the
// decision's effects before it is gone: the task the decision scheduled
// is announced, and another engine's poll gets it. Left to the next
// start's recovery, the task waited, SCHEDULED and announced nowhere,
// for the periodic pass (a day) or a requeue, while the other engine ran
// on: a hand-off lost to a graceful scale-down. Here the decision's
// dispatch waits for an effect slot as the engine begins to stop.
func TestEffectsOfADecisionOutliveAGracefulStop(t *testing.T) {
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, 30*time.Second)
	a := startExecutor(t, l, nothingScheduled{}, Config{})
	b := New(l, noDefinitions{}, nothingScheduled{}, Config{Logger: testutil.Logger(t), EffectConcurrency: 1})
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	// The only effect slot is busy until b begins to stop.
	busy := make(chan struct{})
	b.onSlot(time.Minute, func(context.Context) { close(busy); <-b.ctx.Done() })
	<-busy

	const id = "wf-stop-effects"
	startInline(ctx, t, b, id, `{"name":"stop_flow","tasks":[{"name":"stop_task","taskReferenceName":"a"}]}`)
	b.Stop()

	if n := dispatched(ctx, t, l); n != 1 {
		t.Fatalf("%d announcements after the engine that scheduled the task stopped, want 1", n)
	}
	tasks, _, err := a.Poll(ctx, PollRequest{TaskType: "stop_task", WorkerID: "w1", Count: 1, Wait: 10 * time.Second})
	if err != nil || len(tasks) != 1 || tasks[0].Status != conductor.TaskInProgress {
		t.Fatalf("the other engine's poll got %d tasks (%v), want the one scheduled", len(tasks), err)
	}
}
