package workers_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/workers"
)

// A take answered "internal" or "unavailable" says nothing about the task:
// the worker must offer the announcement again rather than drop it, or the
// task would wait for a worker forever. Here a stand-in engine fails the
// first two takes; the third hands the task out and the handler runs it.
func TestWorkerRetriesTakeAfterEngineError(t *testing.T) {
	t.Parallel()
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, 30*time.Second)
	nc := l.Conn()
	const taskType = "flaky_take"
	ensureQueue(t, ctx, l, taskType)
	var takes atomic.Int32
	answers := []workers.TakeReply{
		{Error: &workers.Error{Code: workers.CodeInternal, Message: "internal error"}},
		{Error: &workers.Error{Code: workers.CodeUnavailable, Message: "starting"}},
		{Task: &conductor.Task{TaskID: "t1", WorkflowInstanceID: "wf1", TaskType: taskType, Status: conductor.TaskInProgress}},
	}
	standInEngine(t, nc, taskType, func() workers.TakeReply {
		return answers[min(int(takes.Add(1))-1, len(answers)-1)]
	})

	body, _ := json.Marshal(workers.Dispatch{TaskID: "t1", WorkflowInstanceID: "wf1", TaskType: taskType})
	if _, err := l.JetStream().Publish(ctx, workers.DispatchSubject(taskType, ""), body); err != nil {
		t.Fatal(err)
	}
	ran, _ := runRecording(t, ctx, nc, workers.WorkerConfig{TaskType: taskType, PollWait: time.Second})
	select {
	case id := <-ran:
		if id != "t1" || takes.Load() != 3 {
			t.Fatalf("ran %s after %d takes, want t1 after 3", id, takes.Load())
		}
	case <-ctx.Done():
		t.Fatalf("the task never ran: %d takes; the announcement was dropped", takes.Load())
	}
}

// A worker that cannot look its queue up (here the dispatch stream itself
// is missing, as while a server restarts) keeps trying instead of giving
// up, and takes the task once the queue is back.
func TestWorkerOutlastsAMissingQueue(t *testing.T) {
	t.Parallel()
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, 30*time.Second)
	nc, js := l.Conn(), l.JetStream()
	const taskType = "patient"
	if err := js.DeleteStream(ctx, eventlog.Dispatch.Name); err != nil {
		t.Fatal(err)
	}
	standInEngine(t, nc, taskType, func() workers.TakeReply {
		return workers.TakeReply{Task: &conductor.Task{TaskID: "t1", WorkflowInstanceID: "wf1", TaskType: taskType, Status: conductor.TaskInProgress}}
	})
	logger, logs := testutil.CapturingLogger()
	ran, done := runRecording(t, ctx, nc, workers.WorkerConfig{TaskType: taskType, PollWait: time.Second, Logger: logger})

	// Once the worker has failed to find its queue, the server comes back.
	testutil.Eventually(t, 10*time.Second, 20*time.Millisecond, func() error {
		if !strings.Contains(logs.String(), "queue consumer lookup failed") {
			return errors.New("the worker has not looked for its queue yet")
		}
		return nil
	})
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: eventlog.Dispatch.Name, Subjects: eventlog.Dispatch.Subjects,
		Retention: jetstream.WorkQueuePolicy, Storage: jetstream.MemoryStorage}); err != nil {
		t.Fatal(err)
	}
	ensureQueue(t, ctx, l, taskType)
	body, _ := json.Marshal(workers.Dispatch{TaskID: "t1", WorkflowInstanceID: "wf1", TaskType: taskType})
	if _, err := js.Publish(ctx, workers.DispatchSubject(taskType, ""), body); err != nil {
		t.Fatal(err)
	}
	select {
	case id := <-ran:
		if id != "t1" {
			t.Fatalf("ran %s", id)
		}
	case err := <-done:
		t.Fatalf("the worker gave up: %v", err)
	case <-ctx.Done():
		t.Fatal("the task never ran")
	}
}

// runRecording runs a worker, until the test ends, whose handler reports
// the id of each task it runs; done reports Run's return, should the
// worker give up.
func runRecording(t *testing.T, ctx context.Context, nc *nats.Conn, cfg workers.WorkerConfig) (ran <-chan string, done <-chan error) {
	t.Helper()
	ids := make(chan string, 1)
	w, err := workers.NewWorker(nc, cfg, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		ids <- task.TaskID
		return workers.Output{}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	wctx, stop := context.WithCancel(ctx)
	returned, exited := make(chan error, 1), make(chan struct{})
	go func() {
		defer close(exited)
		returned <- w.Run(wctx)
	}()
	t.Cleanup(func() { stop(); <-exited })
	return ids, returned
}

// standInEngine answers take requests for taskType with take() and
// accepts every result. It stops at cleanup, after a worker started later
// (cleanups run last-registered first), so that the worker's last result
// is answered.
func standInEngine(t *testing.T, nc *nats.Conn, taskType string, take func() workers.TakeReply) {
	t.Helper()
	for subject, reply := range map[string]func() any{
		workers.TakeSubject(taskType):   func() any { return take() },
		workers.ResultSubject(taskType): func() any { return workers.ResultReply{OK: true} },
	} {
		sub, err := nc.Subscribe(subject, func(m *nats.Msg) {
			body, _ := json.Marshal(reply())
			_ = m.Respond(body)
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = sub.Unsubscribe() })
	}
}

// A result the engine refuses as invalid (an output too large, say) is
// followed by a FAILED one that says why: the engine kept nothing, and the
// task would otherwise wait for its response timeout.
func TestRefusedResultFailsTheTask(t *testing.T) {
	t.Parallel()
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, 30*time.Second)
	nc := l.Conn()
	const taskType = "too_big"
	ensureQueue(t, ctx, l, taskType)
	take, err := nc.Subscribe(workers.TakeSubject(taskType), func(m *nats.Msg) {
		body, _ := json.Marshal(workers.TakeReply{Task: &conductor.Task{TaskID: "t1", WorkflowInstanceID: "wf1", TaskType: taskType, Status: conductor.TaskInProgress}})
		_ = m.Respond(body)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer take.Unsubscribe()
	results := make(chan conductor.TaskResult, 4)
	result, err := nc.Subscribe(workers.ResultSubject(taskType), func(m *nats.Msg) {
		var res conductor.TaskResult
		_ = json.Unmarshal(m.Data, &res)
		reply := workers.ResultReply{OK: true}
		if len(results) == 0 {
			reply = workers.ResultReply{Error: &workers.Error{Code: workers.CodeInvalid, Message: "record too large"}}
		}
		results <- res
		body, _ := json.Marshal(reply)
		_ = m.Respond(body)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer result.Unsubscribe()
	body, _ := json.Marshal(workers.Dispatch{TaskID: "t1", WorkflowInstanceID: "wf1", TaskType: taskType})
	if _, err := l.JetStream().Publish(ctx, workers.DispatchSubject(taskType, ""), body); err != nil {
		t.Fatal(err)
	}
	runRecording(t, ctx, nc, workers.WorkerConfig{TaskType: taskType, PollWait: time.Second})
	var got []conductor.TaskResult
	for len(got) < 2 {
		select {
		case res := <-results:
			got = append(got, res)
		case <-ctx.Done():
			t.Fatalf("results %+v: no second result after the refusal", got)
		}
	}
	if got[0].Status != conductor.TaskCompleted || got[1].Status != conductor.TaskFailed ||
		!strings.Contains(got[1].ReasonForIncompletion, "record too large") || len(got[1].OutputData) != 0 {
		t.Fatalf("results %+v, want COMPLETED refused, then FAILED saying why", got)
	}
}

// ensureQueue creates taskType's queue consumer, as an engine does when it
// first dispatches a task of the type.
func ensureQueue(t *testing.T, ctx context.Context, l *eventlog.Log, taskType string) {
	t.Helper()
	if _, err := l.EnsureConsumer(ctx, eventlog.ConsumerConfig{Stream: eventlog.Dispatch.Name, Durable: workers.ConsumerName(taskType, ""),
		Filter: workers.DispatchSubject(taskType, ""), AckWait: time.Minute, MaxDeliver: -1}); err != nil {
		t.Fatal(err)
	}
}
