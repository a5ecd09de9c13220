package executor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/workers"
)

const idleFlow = `{"name":"idle_flow","tasks":[{"name":"idle_task","taskReferenceName":"a"}]}`

// startInDomain starts workflow id of idleFlow with its task in domain, at
// priority.
func startInDomain(ctx context.Context, t *testing.T, e *Executor, id, domain string, priority int) {
	t.Helper()
	def := mustDef(t, idleFlow)
	if _, _, err := e.StartWorkflow(ctx, conductor.StartWorkflowRequest{Name: def.Name, WorkflowDef: def, Priority: priority,
		TaskToDomain: map[string]string{"*": domain}}, StartOptions{WorkflowID: id}); err != nil {
		t.Fatal(err)
	}
}

// pollOne polls idle_task in domain until it gets workflow id's task.
func pollOne(ctx context.Context, t *testing.T, e *Executor, domain, id string) {
	t.Helper()
	testutil.Eventually(t, 10*time.Second, 20*time.Millisecond, func() error {
		tasks, _, err := e.Poll(ctx, PollRequest{TaskType: "idle_task", Domain: domain, WorkerID: "w1", Count: 1})
		switch {
		case err != nil:
			return err
		case len(tasks) == 0:
			return fmt.Errorf("no task of %s handed out in domain %s", id, domain)
		case tasks[0].WorkflowInstanceID != id:
			t.Fatalf("polled a task of %s in domain %s, want %s's", tasks[0].WorkflowInstanceID, domain, id)
		}
		return nil
	})
}

func dispatchConsumers(ctx context.Context, t *testing.T, l *eventlog.Log) []string {
	t.Helper()
	stream, err := l.JetStream().Stream(ctx, eventlog.Dispatch.Name)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	lister := stream.ConsumerNames(ctx)
	for name := range lister.Name() {
		names = append(names, name)
	}
	if err := lister.Err(); err != nil {
		t.Fatal(err)
	}
	slices.Sort(names)
	return names
}

// engineQueues counts what e keeps in memory about queues' consumers.
func engineQueues(e *Executor) (queues, consumers, lanes int) {
	e.disp.mu.Lock()
	queues = len(e.disp.queues)
	e.disp.mu.Unlock()
	e.polls.mu.Lock()
	consumers = len(e.polls.consumers)
	e.polls.mu.Unlock()
	e.lanes.mu.Lock()
	lanes = len(e.lanes.byQueue)
	e.lanes.mu.Unlock()
	return queues, consumers, lanes
}

// Every (task type, domain) a task is dispatched to gets a consumer on
// the dispatch stream, and the engine remembers it: a start may name any
// domain. Once idle (drained, nothing waiting) for QueueIdle the consumers
// (queues' and priority lanes') are deleted, on the server and in the
// engine's memory; a task dispatched to such a queue later still reaches
// a worker, polling over HTTP or pulling the queue itself over NATS.
func TestIdleQueuesGoAway(t *testing.T) {
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, 60*time.Second)
	e := startExecutor(t, l, nothingScheduled{}, Config{QueueIdle: 300 * time.Millisecond})
	const n = 12
	for i := range n {
		priority := 0
		if i%3 == 0 {
			priority = 1 + i // a lane too
		}
		startInDomain(ctx, t, e, fmt.Sprintf("wf-idle-%d", i), fmt.Sprintf("d%d", i), priority)
	}
	// Half are polled, half terminated before any worker polled: their
	// announcements stay queued, of tasks that are gone.
	for i := range n {
		id := fmt.Sprintf("wf-idle-%d", i)
		if i%2 == 0 {
			pollOne(ctx, t, e, fmt.Sprintf("d%d", i), id)
		} else if _, err := e.Submit(ctx, id, engine.Terminate{Reason: "test"}, Meta{}); err != nil {
			t.Fatal(err)
		}
	}
	// A task no worker has polled yet keeps its queue.
	startInDomain(ctx, t, e, "wf-live", "live", 0)
	live := workers.ConsumerName("idle_task", "live")
	testutil.Eventually(t, 15*time.Second, 50*time.Millisecond, func() error {
		names := dispatchConsumers(ctx, t, l)
		q, c, ln := engineQueues(e)
		if !slices.Equal(names, []string{live}) || q > 1 || c > 1 || ln > 0 {
			return fmt.Errorf("consumers on the server: %v, want %s's alone; in the engine: %d queues, %d consumers, %d lanes", names, live, q, c, ln)
		}
		return nil
	})
	// Idle for longer than QueueIdle, a sweep reads its announcement,
	// and leaves it queued.
	testutil.Eventually(t, 15*time.Second, 50*time.Millisecond, func() error {
		cons, err := l.JetStream().Consumer(ctx, eventlog.Dispatch.Name, live)
		if err != nil {
			return err
		}
		info := cons.CachedInfo()
		if info.TimeStamp.Sub(info.Created) < 300*time.Millisecond {
			return errors.New("the live queue is not idle yet")
		}
		return nil
	})
	if err := e.sweepQueues(ctx); err != nil {
		t.Fatal(err)
	}
	if sizes, err := e.AllQueues(ctx); err != nil || sizes["live:idle_task"].Size != 1 {
		t.Fatalf("the live queue after a sweep: %+v, %v", sizes, err)
	}
	pollOne(ctx, t, e, "live", "wf-live")
	testutil.Eventually(t, 15*time.Second, 50*time.Millisecond, func() error {
		if names := dispatchConsumers(ctx, t, l); len(names) > 0 {
			return fmt.Errorf("consumers left on the server: %v", names)
		}
		return nil
	})

	// Polls of the deleted queues make none again.
	for i := range n {
		tasks, _, err := e.Poll(ctx, PollRequest{TaskType: "idle_task", Domain: fmt.Sprintf("d%d", i), WorkerID: "w1", Count: 1})
		if err != nil || len(tasks) != 0 {
			t.Fatalf("poll of a deleted queue: %v, %v", tasks, err)
		}
	}
	if names := dispatchConsumers(ctx, t, l); len(names) > 0 {
		t.Fatalf("polls made consumers %v", names)
	}

	// Over HTTP, with a priority lane.
	startInDomain(ctx, t, e, "wf-after-http", "d0", 3)
	pollOne(ctx, t, e, "d0", "wf-after-http")

	// Over NATS: the worker looks the consumer up again, pulls, takes.
	startInDomain(ctx, t, e, "wf-after-nats", "d1", 0)
	takeFromQueue(ctx, t, l, "d1", "wf-after-nats")
}

// takeFromQueue is a NATS worker: it waits for the queue's consumer,
// pulls an announcement and takes its task, which must be workflow id's.
func takeFromQueue(ctx context.Context, t *testing.T, l *eventlog.Log, domain, id string) {
	t.Helper()
	var msg jetstream.Msg
	testutil.Eventually(t, 10*time.Second, 50*time.Millisecond, func() error {
		cons, err := l.JetStream().Consumer(ctx, eventlog.Dispatch.Name, workers.ConsumerName("idle_task", domain))
		if err != nil {
			return err
		}
		b, err := cons.Fetch(1, jetstream.FetchMaxWait(200*time.Millisecond))
		if err != nil {
			return err
		}
		for m := range b.Messages() {
			msg = m
		}
		if msg == nil {
			return errors.New("no announcement pulled")
		}
		return nil
	})
	var d workers.Dispatch
	if err := json.Unmarshal(msg.Data(), &d); err != nil || d.WorkflowInstanceID != id {
		t.Fatalf("pulled %s (%v), want a task of %s", msg.Data(), err, id)
	}
	body, _ := json.Marshal(workers.TakeRequest{TaskID: d.TaskID, WorkflowInstanceID: id, WorkerID: "w1"})
	m, err := l.Conn().RequestWithContext(ctx, workers.TakeSubject("idle_task", domain), body)
	if err != nil {
		t.Fatalf("take: %v", err)
	}
	var reply workers.TakeReply
	if err := json.Unmarshal(m.Data, &reply); err != nil || reply.Task == nil {
		t.Fatalf("take of %s: %s", id, m.Data)
	}
	_ = msg.Ack()
}

// A dispatch that finds its queue's consumer known and publishes as a
// sweep deletes it leaves an announcement no consumer delivers: the sweep
// makes the consumer again, and a poll gets the task.
func TestDispatchRacingAQueuesDeletionReachesAWorker(t *testing.T) {
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, 60*time.Second)
	e := New(l, noDefinitions{}, nothingScheduled{}, Config{Logger: testutil.Logger(t), QueueIdle: 300 * time.Millisecond})
	var once sync.Once
	raced := make(chan struct{})
	e.queueDeleted = func(name string) {
		if name != workers.ConsumerName("idle_task", "race") {
			return
		}
		once.Do(func() {
			// The consumer is gone from the server, and the engine still
			// knows it: the dispatch publishes without making it.
			defer close(raced)
			startInDomain(ctx, t, e, "wf-raced", "race", 0)
			waitForMessages(ctx, t, l, workers.DispatchSubject("idle_task", "race"))
		})
	}
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Stop)
	startInDomain(ctx, t, e, "wf-first", "race", 0)
	pollOne(ctx, t, e, "race", "wf-first")
	select {
	case <-raced:
	case <-ctx.Done():
		t.Fatal("the queue was never deleted")
	}
	pollOne(ctx, t, e, "race", "wf-raced")
}

// waitForMessages waits until the dispatch stream holds a message on
// subject.
func waitForMessages(ctx context.Context, t *testing.T, l *eventlog.Log, subject string) {
	t.Helper()
	testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() error {
		stream, err := l.JetStream().Stream(ctx, eventlog.Dispatch.Name)
		if err != nil {
			return err
		}
		info, err := stream.Info(ctx, jetstream.WithSubjectFilter(subject))
		if err != nil {
			return err
		}
		if info.State.Subjects[subject] == 0 {
			return errors.New("nothing published on " + subject)
		}
		return nil
	})
}

// Another engine deletes a queue's consumer while this one still knows
// it (the notice has not reached it): this one's next dispatch publishes
// without making the consumer. The next sweep makes it again, and a NATS
// worker waiting for the consumer pulls and takes the task.
func TestDispatchToAQueueDeletedElsewhereReachesAWorker(t *testing.T) {
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, 60*time.Second)
	e := startExecutor(t, l, nothingScheduled{}, Config{QueueIdle: time.Hour})
	startInDomain(ctx, t, e, "wf-known", "elsewhere", 0)
	pollOne(ctx, t, e, "elsewhere", "wf-known")

	stream, err := l.JetStream().Stream(ctx, eventlog.Dispatch.Name)
	if err != nil {
		t.Fatal(err)
	}
	// Once its acknowledgement is processed, as a sweep would find it.
	testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() error {
		cons, err := stream.Consumer(ctx, workers.ConsumerName("idle_task", "elsewhere"))
		if err != nil {
			return err
		}
		if info, err := cons.Info(ctx); err != nil || info.NumAckPending > 0 || info.NumPending > 0 {
			return fmt.Errorf("the poll's announcement is still pending (%v)", err)
		}
		return nil
	})
	if err := stream.DeleteConsumer(ctx, workers.ConsumerName("idle_task", "elsewhere")); err != nil {
		t.Fatal(err)
	}
	startInDomain(ctx, t, e, "wf-unseen", "elsewhere", 0)
	waitForMessages(ctx, t, l, workers.DispatchSubject("idle_task", "elsewhere"))
	if err := e.sweepQueues(ctx); err != nil {
		t.Fatal(err)
	}
	takeFromQueue(ctx, t, l, "elsewhere", "wf-unseen")
}

// Two engines on one NATS server: a queue one of them deletes is
// forgotten by the other too, whose next dispatch makes it again.
func TestQueueDeletedByOneEngineIsForgottenByTheOther(t *testing.T) {
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, 60*time.Second)
	a := startExecutor(t, l, nothingScheduled{}, Config{QueueIdle: 300 * time.Millisecond})
	b := startExecutor(t, l, nothingScheduled{}, Config{QueueIdle: time.Hour})
	startInDomain(ctx, t, b, "wf-on-b", "shared", 0)
	pollOne(ctx, t, b, "shared", "wf-on-b")
	testutil.Eventually(t, 15*time.Second, 50*time.Millisecond, func() error {
		names := dispatchConsumers(ctx, t, l)
		q, c, ln := engineQueues(b)
		if len(names) > 0 || q > 0 || c > 0 || ln > 0 {
			return fmt.Errorf("consumers left on the server: %v; in engine b: %d queues, %d consumers, %d lanes", names, q, c, ln)
		}
		return nil
	})
	startInDomain(ctx, t, b, "wf-on-b-again", "shared", 0)
	pollOne(ctx, t, a, "shared", "wf-on-b-again")
}

// A queue's consumer deleted by another engine's sweep while this engine
// still holds its handle (the notice not yet, or never, arrived): a pull
// through the handle is answered "no responders". The poll forgets the
// handle and answers what is queued (nothing), not 503; a lane's too.
func TestPollOfAQueueDeletedUnnoticedAnswers(t *testing.T) {
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, 60*time.Second)
	e := startExecutor(t, l, nothingScheduled{}, Config{QueueIdle: time.Hour})
	stream, err := l.JetStream().Stream(ctx, eventlog.Dispatch.Name)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		domain   string
		priority int
	}{{"plain", 0}, {"lane", 5}} {
		startInDomain(ctx, t, e, "wf-"+c.domain, c.domain, c.priority)
		pollOne(ctx, t, e, c.domain, "wf-"+c.domain)
		queue := workers.ConsumerName("idle_task", c.domain)
		names := []string{queue}
		if c.priority != 0 {
			names = append(names, laneConsumer(queue, c.priority))
		}
		for _, name := range names {
			// A lane's consumer is made after the queue's announcement,
			// which the poll may have taken first.
			testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() error {
				_, err := stream.Consumer(ctx, name)
				return err
			})
			if err := stream.DeleteConsumer(ctx, name); err != nil {
				t.Fatal(err)
			}
		}
		for _, wait := range []time.Duration{0, 200 * time.Millisecond} {
			tasks, _, err := e.Poll(ctx, PollRequest{TaskType: "idle_task", Domain: c.domain, WorkerID: "w1", Count: 1, Wait: wait})
			if err != nil || len(tasks) != 0 {
				t.Fatalf("poll of %s's deleted queue (wait %v): %v, %v; want nothing, no error", c.domain, wait, tasks, err)
			}
		}
	}
}
