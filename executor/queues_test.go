package executor

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/workers"
)

// running lists a fixed set of running workflows for recovery.
type running []string

func (running) Due(context.Context, int64, Due, int) ([]Due, error) { return nil, nil }
func (r running) Running(_ context.Context, fn func(string) bool) error {
	for _, id := range r {
		fn(id)
	}
	return nil
}
func (running) ScheduledBefore(context.Context, int64, func(string) bool) error { return nil }

// A NATS server that restarts keeps the log, on disk, and loses
// FV_DISPATCH, which lives in memory, with its consumers. Once the
// engine is connected again it makes the stream again and announces the
// tasks that wait for a worker: a poll gets the task scheduled before the
// restart.
func TestRestartedNATSServerGetsItsQueuesBack(t *testing.T) {
	dir := t.TempDir()
	ns := testutil.StartNATS(t, dir, 0)
	l := testutil.OpenExternalLog(t, ns)
	ctx := testutil.Context(t, 60*time.Second)
	const id = "wf-across-a-nats-restart"
	e := startExecutor(t, l, running{id}, Config{})
	startInline(ctx, t, e, id, twoTasks)

	testutil.RestartNATS(t, ns, dir)

	testutil.Eventually(t, 30*time.Second, 100*time.Millisecond, func() error {
		tasks, _, err := e.Poll(ctx, PollRequest{TaskType: "match_task", WorkerID: "w1", Count: 1, Wait: 200 * time.Millisecond})
		switch {
		case err != nil:
			return err
		case len(tasks) == 0:
			return errors.New("no task handed out")
		case tasks[0].ReferenceTaskName != "a" || tasks[0].WorkflowInstanceID != id:
			t.Fatalf("polled %s of %s", tasks[0].ReferenceTaskName, tasks[0].WorkflowInstanceID)
		}
		return nil
	})
}

// A poll creates no queue: polls of task types nothing was ever
// dispatched for leave no consumer behind (a worker's made-up types would
// fill the server's consumers), and a task dispatched later is still
// handed to the next poll.
func TestPollsCreateNoQueue(t *testing.T) {
	l := testutil.OpenLog(t, "")
	e := startExecutor(t, l, nil, Config{})
	ctx := testutil.Context(t, 30*time.Second)
	for i := range 20 {
		tasks, _, err := e.Poll(ctx, PollRequest{TaskType: fmt.Sprintf("made_up_%d", i), WorkerID: "w1", Count: 1})
		if err != nil || len(tasks) != 0 {
			t.Fatalf("poll of a made-up type: %v, %v", tasks, err)
		}
	}
	stream, err := l.JetStream().Stream(ctx, eventlog.Dispatch.Name)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for name := range stream.ConsumerNames(ctx).Name() {
		names = append(names, name)
	}
	if len(names) != 0 {
		t.Fatalf("polls created consumers %v", names)
	}
	startInline(ctx, t, e, "wf-dispatched-after-polls", twoTasks)
	testutil.Eventually(t, 10*time.Second, 50*time.Millisecond, func() error {
		tasks, _, err := e.Poll(ctx, PollRequest{TaskType: "match_task", WorkerID: "w1", Count: 1})
		if err != nil {
			return err
		}
		if len(tasks) != 1 {
			return errors.New("no task handed out")
		}
		return nil
	})
}

// The NATS server makes a queue's consumer visible (a lookup finds it)
// before it listens for the consumer's pulls: a poll in between, while
// the first dispatch makes the queue, is answered "no responders" however
// often it looks the consumer up again. Nothing can be pulled yet, so a
// poll answers as from an empty queue, not 503, and a poll that waits
// gets the task once the consumer answers. A mapping of the consumer's
// pull subject to one nobody listens on holds the server in between.
func TestPollOfAQueueNotListeningYet(t *testing.T) {
	l := testutil.OpenLog(t, "")
	e := startExecutor(t, l, nil, Config{})
	ctx := testutil.Context(t, 60*time.Second)
	name := workers.ConsumerName("match_task", "")
	acc := l.EmbeddedServer().GlobalAccount()
	pull := fmt.Sprintf("$JS.API.CONSUMER.MSG.NEXT.%s.%s", eventlog.Dispatch.Name, name)
	if err := acc.AddMapping(pull, "fv.test.nobody"); err != nil {
		t.Fatal(err)
	}
	const id = "wf-queue-not-listening"
	startInline(ctx, t, e, id, twoTasks)
	testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() error {
		_, err := l.JetStream().Consumer(ctx, eventlog.Dispatch.Name, name)
		return err
	})

	tasks, _, err := e.Poll(ctx, PollRequest{TaskType: "match_task", WorkerID: "w1", Count: 1})
	if err != nil || len(tasks) != 0 {
		t.Fatalf("poll of a queue not listening yet: %v, %v", tasks, err)
	}

	waiting := pollWaiting(ctx, t, e, "w1")
	acc.RemoveMapping(pull)
	got := answer(ctx, t, waiting)
	if got.err != nil || len(got.tasks) != 1 || got.tasks[0].WorkflowInstanceID != id || got.tasks[0].ReferenceTaskName != "a" {
		t.Fatalf("waiting poll: %v, %v", got.tasks, got.err)
	}
}
