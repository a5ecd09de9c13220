package executor

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/workers"
)

func isTake(envs []schemas.Envelope) bool { return takeOf(envs) != nil }

// startTakeTest starts an executor whose appends go through a, and a
// workflow of one worker task; it returns the executor.
func startTakeTest(t *testing.T, l *eventlog.Log, a appender, id string) *Executor {
	t.Helper()
	e := New(l, noDefinitions{}, nothingScheduled{}, Config{Logger: testutil.Logger(t)})
	e.appender = a
	ctx := testutil.Context(t, 30*time.Second)
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Stop)
	startInline(ctx, t, e, id, `{"name":"landed_flow","tasks":[{"name":"landed_task","taskReferenceName":"t"}]}`)
	return e
}

// startedRecords counts the take records of wf's subject.
func startedRecords(ctx context.Context, t *testing.T, l *eventlog.Log, wfID string) int {
	t.Helper()
	recs, err := l.ReadSubject(ctx, subject(wfID), 0)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, r := range recs {
		if isTake(r.Events) {
			n++
		}
	}
	return n
}

// A take whose record was stored though its append answered an error is
// the taker's: it is answered with the task, not an error that would make
// the worker try again and hear "gone" from a task that is its own.
func TestTakeWhoseAnswerWasLostIsHandedOver(t *testing.T) {
	l := testutil.OpenLog(t, "")
	lost := &lostAnswer{log: l, only: isTake}
	const id = "wf-take-answer-lost"
	e := startTakeTest(t, l, lost, id)
	ctx := testutil.Context(t, 30*time.Second)

	reply := takeOver(ctx, t, l, e, id)
	if !lost.lost.Load() {
		t.Fatal("the take's answer was not lost")
	}
	if reply.Error != nil || reply.Task == nil {
		t.Fatalf("take whose record was stored answered %+v", reply.Error)
	}
	if reply.Task.Status != conductor.TaskInProgress || reply.Task.WorkerID != "w1" {
		t.Fatalf("task handed over %s to %q", reply.Task.Status, reply.Task.WorkerID)
	}
	if n := startedRecords(ctx, t, l, id); n != 1 {
		t.Fatalf("%d take records, want 1", n)
	}
}

// ownConflict stores the first take, then answers it as a conflict: the
// log's answer when a retried publish finds its own record in the way and
// its look for the record's id fails.
type ownConflict struct {
	log  *eventlog.Log
	done atomic.Bool
}

func (o *ownConflict) Append(ctx context.Context, subj string, envs []schemas.Envelope, expected uint64, opts ...eventlog.AppendOption) (uint64, error) {
	seq, err := o.log.Append(ctx, subj, envs, expected, opts...)
	if err == nil && isTake(envs) && o.done.CompareAndSwap(false, true) {
		return 0, fmt.Errorf("append %s: %w", subj, &eventlog.ConflictError{Subject: subj, Expected: expected, Actual: seq})
	}
	return seq, err
}

// A conflict whose record in the way is the take's own is no lost race:
// the take is answered with the task, not "gone".
func TestTakeInTheWayOfItselfIsHandedOver(t *testing.T) {
	l := testutil.OpenLog(t, "")
	own := &ownConflict{log: l}
	const id = "wf-take-own-conflict"
	e := startTakeTest(t, l, own, id)
	ctx := testutil.Context(t, 30*time.Second)

	reply := takeOver(ctx, t, l, e, id)
	if !own.done.Load() {
		t.Fatal("the take's append was not answered as a conflict")
	}
	if reply.Error != nil || reply.Task == nil || reply.Task.WorkerID != "w1" {
		t.Fatalf("take found in its own way answered %+v", reply.Error)
	}
	if n := startedRecords(ctx, t, l, id); n != 1 {
		t.Fatalf("%d take records, want 1", n)
	}
}

// A take stored after its taker gave up (told it failed, with an error it
// retries on) would leave the task to its lease: IN_PROGRESS for a worker
// that does not have it, and "gone" to every take, that worker's retry
// included. It is put back in the queue instead, and the next take gets it.
func TestTakeStoredAfterItsTakerGaveUpIsPutBack(t *testing.T) {
	l := testutil.OpenLog(t, "")
	lost := &lostAnswer{log: l, only: isTake}
	const id = "wf-take-stored-late"
	e := startTakeTest(t, l, lost, id)
	ctx := testutil.Context(t, 30*time.Second)
	w, err := e.State(ctx, id)
	if err != nil || w == nil || len(w.Tasks) != 1 {
		t.Fatalf("workflow %s: %v", id, err)
	}
	task := w.Tasks[0]

	takeCtx, giveUp := context.WithCancel(ctx)
	defer giveUp()
	lost.giveUp = giveUp
	_, _, err = e.take(takeCtx, id, task.ID, PollRequest{TaskType: task.Name, WorkerID: "w1"})
	if err == nil {
		t.Fatal("a take whose taker gave up answered as made")
	}
	if code := e.protocolError(err, task.ID).Code; code != workers.CodeUnavailable {
		t.Fatalf("the taker was told %q (%v): want %q, which it retries on", code, err, workers.CodeUnavailable)
	}

	testutil.Eventually(t, 20*time.Second, 20*time.Millisecond, func() error {
		if !lost.lost.Load() {
			return errors.New("the take was not stored yet")
		}
		w, err := e.State(ctx, id)
		if err != nil {
			return err
		}
		if got := w.TaskByID(task.ID); got.Status != conductor.TaskScheduled || got.PollCount != 1 {
			return fmt.Errorf("task %s after its first take: poll count %d", got.Status, got.PollCount)
		}
		return nil
	})
	reply := takeOver(ctx, t, l, e, id)
	if reply.Error != nil || reply.Task == nil || reply.Task.PollCount != 2 {
		t.Fatalf("the take after the put-back answered %+v, task %+v", reply.Error, reply.Task)
	}
}

// storedLate answers the first append only accepts with an ambiguous error
// at once and stores its record on the next append of the subject: a
// batch in flight that the log writes after its writer stopped waiting, so
// that the writer's look for the record right after finds nothing.
type storedLate struct {
	log     *eventlog.Log
	only    func([]schemas.Envelope) bool
	mu      sync.Mutex
	pending func()
	late    atomic.Bool
}

func (s *storedLate) Append(ctx context.Context, subj string, envs []schemas.Envelope, expected uint64, opts ...eventlog.AppendOption) (uint64, error) {
	s.mu.Lock()
	if s.pending != nil {
		s.pending()
		s.pending = nil
	}
	if s.only(envs) && s.late.CompareAndSwap(false, true) {
		s.pending = func() {
			if _, err := s.log.Append(context.WithoutCancel(ctx), subj, envs, expected, opts...); err != nil {
				panic(fmt.Sprintf("storing the late record: %v", err))
			}
		}
		s.mu.Unlock()
		return 0, errors.New("publish timed out")
	}
	s.mu.Unlock()
	return s.log.Append(ctx, subj, envs, expected, opts...)
}

// A system task whose take is stored after the engine's effect that ran it
// was told the take failed is put back like a worker's, and run: not left
// IN_PROGRESS, owned by nobody, until its five-minute lease runs out.
func TestSystemTakeStoredLateIsPutBack(t *testing.T) {
	l := testutil.OpenLog(t, "")
	late := &storedLate{log: l, only: isTake}
	e := New(l, noDefinitions{}, nothingScheduled{}, Config{Logger: testutil.Logger(t)})
	e.appender = late
	ran := &countsRuns{}
	e.RegisterSystemTask(conductor.TaskTypeInline, ran)
	ctx := testutil.Context(t, 30*time.Second)
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Stop)
	const id = "wf-system-take-late"
	startInline(ctx, t, e, id, `{"name":"late_flow","tasks":[{"name":"script","taskReferenceName":"script","type":"INLINE",
	  "inputParameters":{"evaluatorType":"javascript","expression":"1"}}]}`)
	testutil.Eventually(t, 20*time.Second, 20*time.Millisecond, func() error {
		w, err := e.State(ctx, id)
		if err != nil {
			return err
		}
		if w.Status != conductor.WorkflowCompleted {
			return fmt.Errorf("workflow %s, task %s (lease %d)", w.Status, w.Tasks[0].Status, w.Tasks[0].PollCount)
		}
		return nil
	})
	if !late.late.Load() {
		t.Fatal("no take was stored late")
	}
	if n := ran.n.Load(); n != 1 {
		t.Fatalf("the system task ran %d times, want 1", n)
	}
}

type countsRuns struct{ n atomic.Int32 }

func (c *countsRuns) Execute(context.Context, *conductor.Task) conductor.TaskResult {
	c.n.Add(1)
	return conductor.TaskResult{Status: conductor.TaskCompleted}
}
