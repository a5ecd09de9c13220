package executor

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/workers"
)

// A task an engine offered to a NATS worker as it stopped, which the
// worker never accepts, is handed back before the engine is gone: the
// next engine finds it SCHEDULED, to hand out again. Handed back once the
// executor had stopped, the hand-back was refused, and the task stayed
// IN_PROGRESS under a worker that never got it, for its response timeout
// (an hour by default). The offer goes to a plain poll, and to a result
// that waits for its worker's next task.
func TestOffersOutstandingAtStopAreHandedBack(t *testing.T) {
	for _, tc := range []struct {
		name, id string
		// offered makes e offer a task of workflow id's, whose
		// reference it returns, and leaves the offer unanswered.
		offered func(ctx context.Context, t *testing.T, e *Executor, nc *nats.Conn, id string) string
	}{
		{"poll", "wf-stop-offer-poll", func(ctx context.Context, t *testing.T, e *Executor, nc *nats.Conn, id string) string {
			answers := natsPollWaiting(t, nc, e, "poll-"+id)
			startInline(ctx, t, e, id, oneTask)
			if r, m := offerIn(ctx, t, answers); r.Task == nil {
				t.Fatalf("the poll was answered %s, want an offer", m.Data)
			}
			return "a"
		}},
		{"result's next", "wf-stop-offer-next", func(ctx context.Context, t *testing.T, e *Executor, nc *nats.Conn, id string) string {
			a := acceptedByPoll(ctx, t, e, nc, id, twoTasks)
			r, rm := resultAnswer(ctx, t, reportWaiting(t, nc, a, "", &workers.PollRequest{WaitMs: 20000}))
			if !r.OK || r.Next == nil || r.Next.Task == nil || rm.Reply == "" {
				t.Fatalf("the result was answered %s, want ok and b offered", rm.Data)
			}
			return "b"
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := testutil.OpenLog(t, "")
			ctx := testutil.Context(t, 30*time.Second)
			b := startExecutor(t, l, nothingScheduled{}, Config{OfferTimeout: time.Second})
			ref := tc.offered(ctx, t, b, l.Conn(), tc.id)
			b.Stop()

			a := startExecutor(t, l, nothingScheduled{}, Config{})
			if status, _, _ := taskState(ctx, t, a, tc.id, ref); status != conductor.TaskScheduled {
				t.Fatalf("%s is %s after the engine that offered it stopped, want SCHEDULED again", ref, status)
			}
			tasks, _, err := a.Poll(ctx, PollRequest{TaskType: "match_task", WorkerID: "w-next", Count: 1, Wait: 10 * time.Second})
			if err != nil || len(tasks) != 1 || tasks[0].ReferenceTaskName != ref {
				t.Fatalf("the next engine's poll got %d tasks (%v), want %s", len(tasks), err, ref)
			}
		})
	}
}

// Stop within a shutdown's budget waits for no offer past it: a budget
// already spent leaves the task offered to a worker that never answers
// IN_PROGRESS (its lease, or recovery, hands it out again), and Stop
// returns, where it waited for the offer's timeout and the hand-back,
// and the node's shutdown ran out of budget before it closed its stores.
func TestStopWithinASpentBudgetLeavesTheOffer(t *testing.T) {
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, 30*time.Second)
	const id = "wf-stop-offer-budget"
	b := startExecutor(t, l, nothingScheduled{}, Config{OfferTimeout: time.Second})
	answers := natsPollWaiting(t, l.Conn(), b, "poll-"+id)
	startInline(ctx, t, b, id, oneTask)
	if r, m := offerIn(ctx, t, answers); r.Task == nil {
		t.Fatalf("the poll was answered %s, want an offer", m.Data)
	}
	spent, cancel := context.WithCancel(ctx)
	cancel()
	b.StopWithin(spent)

	a := startExecutor(t, l, nothingScheduled{}, Config{})
	if status, _, _ := taskState(ctx, t, a, id, "a"); status != conductor.TaskInProgress {
		t.Fatalf("a is %s after a stop whose budget was spent, want IN_PROGRESS (left to its lease)", status)
	}
}
