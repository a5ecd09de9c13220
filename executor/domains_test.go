package executor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/workers"
)

// A task whose taskToDomain entry lists fallbacks goes to the first domain
// whose workers were seen within activeWindow: polls this engine served,
// or pulls waiting on the queue's consumer (a worker pulling over NATS,
// another engine's poll), read at most every activityScanEvery.
func TestFallbackDomainsFollowWorkers(t *testing.T) {
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, 30*time.Second)
	var mu sync.Mutex
	// The consumers' delivery times are the server's: the test's clock
	// starts from the real one.
	clock := time.Now()
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	advance := func(d time.Duration) { mu.Lock(); clock = clock.Add(d); mu.Unlock() }
	e := startExecutor(t, l, nothingScheduled{}, Config{Now: now})
	def := mustDef(t, `{"name":"fd","tasks":[{"name":"fd_task","taskReferenceName":"t"}]}`)
	n := 0
	domainOfNext := func() string {
		t.Helper()
		n++
		id, _, err := e.StartWorkflow(ctx, conductor.StartWorkflowRequest{Name: def.Name, WorkflowDef: def,
			TaskToDomain: map[string]string{"fd_task": "blue, green, NO_DOMAIN"}}, StartOptions{WorkflowID: "fd-" + string(rune('a'+n))})
		if err != nil {
			t.Fatal(err)
		}
		w, err := e.State(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return w.Tasks[0].Domain
	}
	if got := domainOfNext(); got != "" {
		t.Fatalf("with no worker anywhere: domain %q, want none", got)
	}

	// A worker polls green through this engine.
	if _, _, err := e.Poll(ctx, PollRequest{TaskType: "fd_task", Domain: "green", WorkerID: "w", Count: 1}); err != nil {
		t.Fatal(err)
	}
	if got := domainOfNext(); got != "green" {
		t.Fatalf("after a poll of green: domain %q", got)
	}

	// A worker pulls blue's queue itself; the engine sees it once it reads
	// the consumers again.
	if err := e.disp.ensureQueue(ctx, "fd_task", "blue"); err != nil {
		t.Fatal(err)
	}
	blue, err := e.consumer(ctx, workers.ConsumerName("fd_task", "blue"))
	if err != nil {
		t.Fatal(err)
	}
	pulled := make(chan error, 1)
	go func() {
		batch, err := blue.Fetch(1, jetstream.FetchMaxWait(2*time.Second))
		if err == nil {
			for range batch.Messages() {
			}
			err = batch.Error()
		}
		pulled <- err
	}()
	testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() error {
		info, err := blue.Info(ctx)
		if err == nil && info.NumWaiting == 0 {
			err = errNotYet
		}
		return err
	})
	if got := domainOfNext(); got != "green" {
		t.Fatalf("blue's pull before the next read of the consumers: domain %q, want green still", got)
	}
	advance(activityScanEvery)
	if got := domainOfNext(); got != "blue" {
		t.Fatalf("blue's pull seen: domain %q", got)
	}
	// That task went out to the waiting pull.
	if err := <-pulled; err != nil {
		t.Fatal(err)
	}

	// Past activeWindow without a poll or a pull, the last fallback.
	advance(activeWindow + activityScanEvery)
	testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() error {
		info, err := blue.Info(ctx)
		if err == nil && info.NumWaiting != 0 {
			err = errNotYet
		}
		return err
	})
	if got := domainOfNext(); got != "" {
		t.Fatalf("after the workers went quiet: domain %q, want none", got)
	}
}

var errNotYet = errors.New("not yet")

// The queues an engine has seen polled are bounded: past the bound, those
// seen longer ago than activeWindow make room, and with none to drop a
// new queue is not recorded (its tasks go to a later fallback).
func TestActivityBounded(t *testing.T) {
	a := newActivity()
	t0 := time.UnixMilli(1_000_000)
	for i := range maxPollRecords {
		a.polled("typ", fmt.Sprint("d", i), t0)
	}
	later := t0.Add(activeWindow + time.Second)
	a.polled("typ", "fresh", later)
	if !a.active("typ", "fresh", later) || len(a.seen) != 1 {
		t.Fatalf("after the stale queues: fresh active %v, %d queues kept", a.active("typ", "fresh", later), len(a.seen))
	}
	for i := range maxPollRecords - 1 {
		a.polled("typ", fmt.Sprint("e", i), later)
	}
	a.polled("typ", "one-too-many", later)
	if a.active("typ", "one-too-many", later) || len(a.seen) != maxPollRecords || !a.active("typ", "e0", later) {
		t.Fatalf("past the bound with none stale: %d queues kept", len(a.seen))
	}
}

// A take or a result names its queue in its subject, domain included,
// which a worker's credentials allow or not: a task of a domain is taken
// and reported on only through that domain's subjects, so that a worker
// without the domain cannot take it by its id (which it may derive).
func TestTakesAndResultsNameTheTasksDomain(t *testing.T) {
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, 30*time.Second)
	e := startExecutor(t, l, nothingScheduled{}, Config{})
	def := mustDef(t, `{"name":"dom","tasks":[{"name":"dom_task","taskReferenceName":"t"}]}`)
	if _, _, err := e.StartWorkflow(ctx, conductor.StartWorkflowRequest{Name: def.Name, WorkflowDef: def,
		TaskToDomain: map[string]string{"dom_task": "eu"}}, StartOptions{WorkflowID: "wf-dom"}); err != nil {
		t.Fatal(err)
	}
	w, err := e.State(ctx, "wf-dom")
	if err != nil || len(w.Tasks) != 1 || w.Tasks[0].Domain != "eu" {
		t.Fatalf("workflow: %+v %v", w, err)
	}
	taskID := w.Tasks[0].ID
	request := func(subject string, body any) []byte {
		t.Helper()
		data, _ := json.Marshal(body)
		m, err := l.Conn().RequestWithContext(ctx, subject, data)
		if err != nil {
			t.Fatalf("%s: %v", subject, err)
		}
		return m.Data
	}
	take := workers.TakeRequest{TaskID: taskID, WorkflowInstanceID: "wf-dom", WorkerID: "w1"}
	result := workers.ResultRequest{TaskResult: conductor.TaskResult{TaskID: taskID, WorkflowInstanceID: "wf-dom", WorkerID: "w1",
		Status: conductor.TaskCompleted}}

	for _, refused := range []struct {
		subject string
		body    any
	}{
		{workers.TakeSubject("dom_task", ""), take},
		{workers.TakeSubject("dom_task", "us"), take},
		{workers.ResultSubject("dom_task", ""), result},
	} {
		var r struct{ Error *workers.Error }
		if data := request(refused.subject, refused.body); json.Unmarshal(data, &r) != nil || r.Error == nil || r.Error.Code != workers.CodeNotFound {
			t.Fatalf("%s of a task of domain eu: %s, want %s", refused.subject, data, workers.CodeNotFound)
		}
	}
	if w, _ := e.State(ctx, "wf-dom"); w.Tasks[0].Status != conductor.TaskScheduled {
		t.Fatalf("after the refused requests the task is %s", w.Tasks[0].Status)
	}

	var took workers.TakeReply
	if data := request(workers.TakeSubject("dom_task", "eu"), take); json.Unmarshal(data, &took) != nil || took.Task == nil {
		t.Fatalf("take on the domain's subject: %s", data)
	}
	var reported workers.ResultReply
	if data := request(workers.ResultSubject("dom_task", "eu"), result); json.Unmarshal(data, &reported) != nil || !reported.OK {
		t.Fatalf("result on the domain's subject: %s", data)
	}
	if w, _ := e.State(ctx, "wf-dom"); w.Status != conductor.WorkflowCompleted {
		t.Fatalf("workflow %s after its task's result", w.Status)
	}
}

// The TakeCheck is asked about the sender the server names of every poll,
// take and result: a sender it refuses gets forbidden and changes nothing
// (the gate closes such a connection too, a moment later).
func TestTakeCheckRefusesTheSender(t *testing.T) {
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, 30*time.Second)
	e := New(l, noDefinitions{}, nothingScheduled{}, Config{Logger: testutil.Logger(t)})
	e.SetTakeCheck(func(_ context.Context, taker, taskType, domain string) error {
		if taker == "nats:UREVOKED" {
			return fmt.Errorf("%s may not take %s@%s: %w", taker, taskType, domain, fault.ErrForbidden)
		}
		return nil
	})
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Stop)
	startInline(ctx, t, e, "wf-tc", `{"name":"tc","tasks":[{"name":"tc_task","taskReferenceName":"t"}]}`)
	w, err := e.State(ctx, "wf-tc")
	if err != nil {
		t.Fatal(err)
	}
	taskID := w.Tasks[0].ID
	request := func(subject, user string, body any) *workers.Error {
		t.Helper()
		m := nats.NewMsg(subject)
		m.Data, _ = json.Marshal(body)
		m.Header.Set(requestInfoHeader, `{"acc":"AW","user":"`+user+`"}`)
		reply, err := l.Conn().RequestMsgWithContext(ctx, m)
		if err != nil {
			t.Fatalf("%s: %v", subject, err)
		}
		var r struct{ Error *workers.Error }
		if err := json.Unmarshal(reply.Data, &r); err != nil {
			t.Fatalf("%s: %q", subject, reply.Data)
		}
		return r.Error
	}
	take := workers.TakeRequest{TaskID: taskID, WorkflowInstanceID: "wf-tc", WorkerID: "w"}
	result := workers.ResultRequest{TaskResult: conductor.TaskResult{TaskID: taskID, WorkflowInstanceID: "wf-tc",
		Status: conductor.TaskFailedWithTerminalError, ReasonForIncompletion: "sabotaged"}}
	for _, tc := range []struct {
		subject string
		body    any
	}{
		{workers.PollSubject("tc_task", ""), workers.PollRequest{WorkerID: "w", WaitMs: 200}},
		{workers.TakeSubject("tc_task", ""), take},
		{workers.ResultSubject("tc_task", ""), result},
	} {
		if got := request(tc.subject, "UREVOKED", tc.body); got == nil || got.Code != workers.CodeForbidden {
			t.Fatalf("%s of a refused sender: %+v, want %s", tc.subject, got, workers.CodeForbidden)
		}
	}
	if w, _ := e.State(ctx, "wf-tc"); w.Status != conductor.WorkflowRunning || w.Tasks[0].Status != conductor.TaskScheduled {
		t.Fatalf("after refused requests: workflow %s, task %s", w.Status, w.Tasks[0].Status)
	}
	if got := request(workers.TakeSubject("tc_task", ""), "UALLOWED", take); got != nil {
		t.Fatalf("take of an allowed sender: %+v", got)
	}
}

// A poll one engine serves counts at the others, though the queue has no
// consumer to show it (none dispatched to yet, or swept idle): a workflow
// another engine starts puts its task in the polled domain.
func TestFallbackDomainsFollowPollsAtOtherEngines(t *testing.T) {
	ns := testutil.StartNATS(t, t.TempDir(), 0)
	starter := startExecutor(t, testutil.OpenExternalLog(t, ns), nothingScheduled{}, Config{})
	poller := startExecutor(t, testutil.OpenExternalLog(t, ns), nothingScheduled{}, Config{})
	ctx := testutil.Context(t, 30*time.Second)
	if _, _, err := poller.Poll(ctx, PollRequest{TaskType: "fd_task", Domain: "blue", WorkerID: "w", Count: 1}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() error {
		if !starter.activity.active("fd_task", "blue", time.Now()) {
			return errors.New("the starting engine has not seen blue's poll")
		}
		return nil
	})
	def := mustDef(t, `{"name":"fd","tasks":[{"name":"fd_task","taskReferenceName":"t"}]}`)
	id, _, err := starter.StartWorkflow(ctx, conductor.StartWorkflowRequest{Name: def.Name, WorkflowDef: def,
		TaskToDomain: map[string]string{"fd_task": "blue,NO_DOMAIN"}}, StartOptions{WorkflowID: "fd-other"})
	if err != nil {
		t.Fatal(err)
	}
	w, err := starter.State(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if got := w.Tasks[0].Domain; got != "blue" {
		t.Fatalf("domain %q, want blue, polled at the other engine", got)
	}
}
