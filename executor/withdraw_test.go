package executor

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/workers"
)

// queued returns how many messages the dispatch stream holds on subject,
// and the size the queue size API reports for queue (a key of AllQueues).
func queued(ctx context.Context, t *testing.T, l *eventlog.Log, e *Executor, subject, queue string) (msgs uint64, size int64) {
	t.Helper()
	stream, err := l.JetStream().Stream(ctx, eventlog.Dispatch.Name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		t.Fatal(err)
	}
	sizes, err := e.AllQueues(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Subjects[subject], sizes[queue].Size
}

// waitQueued waits until subject holds want messages and the queue size
// API reports want for queue.
func waitQueued(ctx context.Context, t *testing.T, l *eventlog.Log, e *Executor, subject, queue string, want int) {
	t.Helper()
	testutil.Eventually(t, 15*time.Second, 20*time.Millisecond, func() error {
		if msgs, size := queued(ctx, t, l, e, subject, queue); msgs != uint64(want) || size != int64(want) {
			return fmt.Errorf("%s holds %d announcements, queue %s's size is %d; want %d", subject, msgs, queue, size, want)
		}
		return nil
	})
}

// keepBusy keeps the dispatch stream in use, as a worker of another type
// does: the sweep of idle queues would not delete the queue's consumer.
func keepBusy(ctx context.Context, t *testing.T, e *Executor) {
	t.Helper()
	startInline(ctx, t, e, "wf-busy", `{"name":"busy_flow","tasks":[{"name":"busy_task","taskReferenceName":"b"}]}`)
	testutil.Eventually(t, 10*time.Second, 20*time.Millisecond, func() error {
		tasks, _, err := e.Poll(ctx, PollRequest{TaskType: "busy_task", WorkerID: "busy", Count: 1})
		if err == nil && len(tasks) == 0 {
			err = fmt.Errorf("busy_task not handed out yet")
		}
		return err
	})
}

// A task that ends without being polled (its workflow terminated) leaves
// the queue: the dispatch stream keeps no announcement of it and the queue
// size API does not count it, while the queue stays in use (the sweep of
// idle queues does not help). A prioritized task's lane announcement goes
// too. Tasks still waiting keep theirs.
func TestTerminatedTasksLeaveTheQueue(t *testing.T) {
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, 60*time.Second)
	e := startExecutor(t, l, nothingScheduled{}, Config{})
	keepBusy(ctx, t, e)
	const n = 6
	for i := range n {
		priority := 0
		if i%2 == 1 {
			priority = 3
		}
		startInDomain(ctx, t, e, fmt.Sprintf("wf-gone-%d", i), "", priority)
	}
	startInDomain(ctx, t, e, "wf-stays", "", 3)
	subject := workers.DispatchSubject("idle_task", "")
	lane := laneSubject("idle_task", "", 3)
	waitQueued(ctx, t, l, e, subject, "idle_task", n+1)
	for i := range n {
		if _, err := e.Submit(ctx, fmt.Sprintf("wf-gone-%d", i), engine.Terminate{Reason: "test"}, Meta{}); err != nil {
			t.Fatal(err)
		}
	}
	waitQueued(ctx, t, l, e, subject, "idle_task", 1)
	testutil.Eventually(t, 15*time.Second, 20*time.Millisecond, func() error {
		if msgs, _ := queued(ctx, t, l, e, lane, ""); msgs != 1 {
			return fmt.Errorf("the lane holds %d announcements, want wf-stays's alone", msgs)
		}
		return nil
	})
	// The one left is wf-stays's, and a worker gets it.
	pollOne(ctx, t, e, "", "wf-stays")
}

const pollTimeoutFlow = `{"name":"poll_timeout_flow","tasks":[{"name":"idle_task","taskReferenceName":"a",
 "taskDefinition":{"name":"idle_task","retryCount":0,"pollTimeoutSeconds":1,"responseTimeoutSeconds":1,"timeoutSeconds":0}}]}`

// A task that times out waiting for a worker (pollTimeoutSeconds, no
// retries) leaves the queue too.
func TestPollTimedOutTaskLeavesTheQueue(t *testing.T) {
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, 60*time.Second)
	e := startExecutor(t, l, nothingScheduled{}, Config{})
	keepBusy(ctx, t, e)
	const n = 3
	for i := range n {
		startInline(ctx, t, e, fmt.Sprintf("wf-late-%d", i), pollTimeoutFlow)
	}
	subject := workers.DispatchSubject("idle_task", "")
	waitQueued(ctx, t, l, e, subject, "idle_task", n)
	// No timer loop here (nothingScheduled): tick until the tasks time out.
	testutil.Eventually(t, 15*time.Second, 50*time.Millisecond, func() error {
		for i := range n {
			out, err := e.Submit(ctx, fmt.Sprintf("wf-late-%d", i), engine.Tick{}, Meta{})
			if err != nil {
				return err
			}
			if task := out.State.Tasks[0]; task.Status != conductor.TaskTimedOut {
				return fmt.Errorf("task of wf-late-%d is %s", i, task.Status)
			}
		}
		return nil
	})
	waitQueued(ctx, t, l, e, subject, "idle_task", 0)
}

// The engine that ends a task need not be the one that announced it, which
// may be gone: an announcement is found on the stream, not in an engine's
// memory.
func TestTaskEndedByAnotherEngineLeavesTheQueue(t *testing.T) {
	ns := testutil.StartNATS(t, t.TempDir(), 0)
	l1, l2 := testutil.OpenExternalLog(t, ns), testutil.OpenExternalLog(t, ns)
	ctx := testutil.Context(t, 60*time.Second)
	e1 := startExecutor(t, l1, nothingScheduled{}, Config{})
	e2 := startExecutor(t, l2, nothingScheduled{}, Config{})
	keepBusy(ctx, t, e2)
	const n = 4
	for i := range n {
		startInDomain(ctx, t, e1, fmt.Sprintf("wf-other-%d", i), "", 0)
	}
	subject := workers.DispatchSubject("idle_task", "")
	waitQueued(ctx, t, l2, e2, subject, "idle_task", n)
	e1.Stop()
	for i := range n {
		if _, err := e2.Submit(ctx, fmt.Sprintf("wf-other-%d", i), engine.Terminate{Reason: "test"}, Meta{}); err != nil {
			t.Fatal(err)
		}
	}
	waitQueued(ctx, t, l2, e2, subject, "idle_task", 0)
}

// A retry of a task that timed out unpolled is a task of its own: its
// announcement stays while the timed-out one's goes.
func TestRetryOfWithdrawnTaskStaysQueued(t *testing.T) {
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, 60*time.Second)
	e := startExecutor(t, l, nothingScheduled{}, Config{})
	keepBusy(ctx, t, e)
	startInline(ctx, t, e, "wf-retry", `{"name":"retry_flow","tasks":[{"name":"idle_task","taskReferenceName":"a",
 "taskDefinition":{"name":"idle_task","retryCount":1,"retryDelaySeconds":0,"timeoutPolicy":"RETRY","pollTimeoutSeconds":1,"responseTimeoutSeconds":1}}]}`)
	subject := workers.DispatchSubject("idle_task", "")
	waitQueued(ctx, t, l, e, subject, "idle_task", 1)
	testutil.Eventually(t, 15*time.Second, 50*time.Millisecond, func() error {
		out, err := e.Submit(ctx, "wf-retry", engine.Tick{}, Meta{})
		if err != nil {
			return err
		}
		if n := len(out.State.Tasks); n != 2 || out.State.Tasks[0].Status != conductor.TaskTimedOut {
			return fmt.Errorf("%d tasks, the first %s", n, out.State.Tasks[0].Status)
		}
		return nil
	})
	waitQueued(ctx, t, l, e, subject, "idle_task", 1)
	pollOne(ctx, t, e, "", "wf-retry")
}
