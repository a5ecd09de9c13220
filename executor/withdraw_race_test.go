package executor

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/workers"
)

// An explicit requeue (POST /api/tasks/queue/requeue) announces a queued
// task a second time; its end withdraws both announcements, not only the
// first, which the queue size API would go on counting.
func TestRequeuedTaskLeavesTheQueueWhole(t *testing.T) {
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, 60*time.Second)
	e := startExecutor(t, l, nothingScheduled{}, Config{})
	keepBusy(ctx, t, e)
	startInDomain(ctx, t, e, "wf-rq", "", 0)
	subject := workers.DispatchSubject("idle_task", "")
	waitQueued(ctx, t, l, e, subject, "idle_task", 1)
	time.Sleep(5 * time.Millisecond) // a requeue in the same millisecond is the same announcement
	if _, err := e.Submit(ctx, "wf-rq", engine.Reconcile{Requeue: true}, Meta{}); err != nil {
		t.Fatal(err)
	}
	waitQueued(ctx, t, l, e, subject, "idle_task", 2)
	if _, err := e.Submit(ctx, "wf-rq", engine.Terminate{Reason: "test"}, Meta{}); err != nil {
		t.Fatal(err)
	}
	waitQueued(ctx, t, l, e, subject, "idle_task", 0)
}

// An IN_PROGRESS update from outside (callbackAfterSeconds 0) on a task
// no worker polled announces it again, for its new availability; its end
// withdraws the first announcement too.
func TestTaskAnnouncedTwiceLeavesTheQueueWhole(t *testing.T) {
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, 60*time.Second)
	e := startExecutor(t, l, nothingScheduled{}, Config{})
	keepBusy(ctx, t, e)
	startInDomain(ctx, t, e, "wf-ip", "", 0)
	subject := workers.DispatchSubject("idle_task", "")
	waitQueued(ctx, t, l, e, subject, "idle_task", 1)
	w, err := e.State(ctx, "wf-ip")
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond) // another availability than the first's
	if _, err := e.Submit(ctx, "wf-ip", engine.Result{Result: conductor.TaskResult{TaskID: w.Tasks[0].ID, WorkflowInstanceID: "wf-ip",
		Status: conductor.TaskInProgress}}, Meta{}); err != nil {
		t.Fatal(err)
	}
	waitQueued(ctx, t, l, e, subject, "idle_task", 2)
	if _, err := e.Submit(ctx, "wf-ip", engine.Terminate{Reason: "test"}, Meta{}); err != nil {
		t.Fatal(err)
	}
	waitQueued(ctx, t, l, e, subject, "idle_task", 0)
}

// Two engines on one external NATS server, the one that schedules with a
// clock 3 s ahead of the server's (more than withdrawSlack): its task,
// terminated at the other engine, whose search from the task's time
// finds nothing, is found by a search of the whole queue.
func TestTaskOfAnEngineAheadOfTheServerLeavesTheQueue(t *testing.T) {
	ns := testutil.StartNATS(t, t.TempDir(), 0)
	l1, l2 := testutil.OpenExternalLog(t, ns), testutil.OpenExternalLog(t, ns)
	ctx := testutil.Context(t, 60*time.Second)
	ahead := func() time.Time { return time.Now().Add(3 * time.Second) }
	e1 := startExecutor(t, l1, nothingScheduled{}, Config{Now: ahead})
	e2 := startExecutor(t, l2, nothingScheduled{}, Config{})
	keepBusy(ctx, t, e2)
	startInDomain(ctx, t, e1, "wf-ahead", "", 0)
	subject := workers.DispatchSubject("idle_task", "")
	waitQueued(ctx, t, l2, e2, subject, "idle_task", 1)
	// Past the task's availability by either clock: the terminate asks
	// for a withdrawal.
	time.Sleep(4 * time.Second)
	if _, err := e2.Submit(ctx, "wf-ahead", engine.Terminate{Reason: "test"}, Meta{}); err != nil {
		t.Fatal(err)
	}
	waitQueued(ctx, t, l2, e2, subject, "idle_task", 0)
}

// Two engines on one NATS server; workflows at priorities 0, 3 and 7 are
// started, half of them terminated at either engine while workers poll
// both engines. Every task still SCHEDULED is handed out exactly once,
// none of a terminated workflow, and the queue ends empty: no poll racing
// a withdrawal errs, hangs or loses a task.
func TestTerminateWhilePollingLosesNoTask(t *testing.T) {
	ns := testutil.StartNATS(t, t.TempDir(), 0)
	l1, l2 := testutil.OpenExternalLog(t, ns), testutil.OpenExternalLog(t, ns)
	ctx := testutil.Context(t, 120*time.Second)
	e1 := startExecutor(t, l1, nothingScheduled{}, Config{})
	e2 := startExecutor(t, l2, nothingScheduled{}, Config{})
	keepBusy(ctx, t, e2)
	es := []*Executor{e1, e2}
	const n = 400
	var mu sync.Mutex
	terminated := map[string]bool{}
	got := map[string]int{}
	var wg, terminating sync.WaitGroup
	stop := make(chan struct{})
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e := es[w%2]
			time.Sleep(300 * time.Millisecond)
			for {
				select {
				case <-stop:
					return
				default:
				}
				tasks, _, err := e.Poll(ctx, PollRequest{TaskType: "idle_task", WorkerID: fmt.Sprintf("w%d", w), Count: 3, Wait: 100 * time.Millisecond})
				if err != nil {
					t.Errorf("poll: %v", err)
					return
				}
				mu.Lock()
				for _, task := range tasks {
					got[task.WorkflowInstanceID]++
				}
				mu.Unlock()
			}
		}()
	}
	for i := range n {
		id := fmt.Sprintf("wf-%d", i)
		startInDomain(ctx, t, es[i%2], id, "", []int{0, 3, 7}[i%3])
		if i%2 == 1 {
			terminating.Add(1)
			go func() {
				defer terminating.Done()
				// Terminated at the other engine, sometimes at once.
				if i%4 == 1 {
					time.Sleep(time.Duration(i%7) * time.Millisecond)
				}
				out, err := es[(i+1)%2].Submit(ctx, id, engine.Terminate{Reason: "test"}, Meta{})
				if err != nil {
					t.Errorf("terminate %s: %v", id, err)
					return
				}
				mu.Lock()
				if task := out.State.Tasks[0]; task.Status == conductor.TaskCanceled && task.PollCount == 0 {
					terminated[id] = true
				}
				mu.Unlock()
			}()
		}
	}
	// Every terminate answered before the tasks are counted: one still
	// under way when the test ended met a stopped executor.
	terminating.Wait()
	testutil.Eventually(t, 60*time.Second, 200*time.Millisecond, func() error {
		mu.Lock()
		defer mu.Unlock()
		missing := 0
		for i := range n {
			id := fmt.Sprintf("wf-%d", i)
			if !terminated[id] && got[id] == 0 {
				if w, err := e1.State(ctx, id); err == nil && w.Status == conductor.WorkflowRunning && w.Tasks[0].Status == conductor.TaskScheduled {
					missing++
				}
			}
		}
		if missing > 0 {
			return fmt.Errorf("%d tasks still SCHEDULED and not handed out", missing)
		}
		return nil
	})
	close(stop)
	wg.Wait()
	mu.Lock()
	for id, c := range got {
		if c != 1 || terminated[id] {
			t.Errorf("%s handed out %d times, terminated %v", id, c, terminated[id])
		}
	}
	mu.Unlock()
	subject := workers.DispatchSubject("idle_task", "")
	waitQueued(ctx, t, l1, e1, subject, "idle_task", 0)
}
