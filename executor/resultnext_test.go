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

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/workers"
)

// oneTask is a workflow of one task of match_task's queue.
const oneTask = `{"name":"match_one","tasks":[{"name":"match_task","taskReferenceName":"a"}]}`

// takenByPoll starts an executor on a new log and workflow id (of def) on
// it, whose first task a NATS poll takes; it returns the task, taken.
func takenByPoll(t *testing.T, id, def string) (context.Context, *Executor, *nats.Conn, *conductor.Task) {
	t.Helper()
	l := testutil.OpenLog(t, "")
	e := startExecutor(t, l, nothingScheduled{}, Config{})
	ctx := testutil.Context(t, 30*time.Second)
	return ctx, e, l.Conn(), acceptedByPoll(ctx, t, e, l.Conn(), id, def)
}

// acceptedByPoll starts workflow id (of def) on e, whose first task a NATS
// poll takes and accepts; it returns the task, taken.
func acceptedByPoll(ctx context.Context, t *testing.T, e *Executor, nc *nats.Conn, id, def string) *conductor.Task {
	t.Helper()
	answers := natsPollWaiting(t, nc, e, "poll-"+id)
	startInline(ctx, t, e, id, def)
	r, m := offerIn(ctx, t, answers)
	if r.Task == nil {
		t.Fatalf("poll answered %s, want an offer", m.Data)
	}
	if err := m.Respond([]byte(workers.AcceptOffer)); err != nil {
		t.Fatal(err)
	}
	return r.Task
}

// offerIn reads the answer to a poll, leaving an offer unanswered.
func offerIn(ctx context.Context, t *testing.T, answers *nats.Subscription) (workers.PollReply, *nats.Msg) {
	t.Helper()
	m, err := answers.NextMsgWithContext(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var r workers.PollReply
	if err := json.Unmarshal(m.Data, &r); err != nil {
		t.Fatalf("poll answered %q: %v", m.Data, err)
	}
	return r, m
}

// reportWaiting reports task COMPLETED (or status, when set) with a result
// request that waits for the next task as next says, and returns the
// inbox its answer comes to.
func reportWaiting(t *testing.T, nc *nats.Conn, task *conductor.Task, status string, next *workers.PollRequest) *nats.Subscription {
	t.Helper()
	if status == "" {
		status = conductor.TaskCompleted
	}
	inbox := nc.NewInbox()
	answers, err := nc.SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(workers.ResultRequest{TaskResult: conductor.TaskResult{TaskID: task.TaskID,
		WorkflowInstanceID: task.WorkflowInstanceID, WorkerID: task.WorkerID, Status: status}, Lease: task.PollCount, Next: next})
	if err := nc.PublishRequest(workers.ResultSubject(task.TaskDefName, task.Domain), inbox, body); err != nil {
		t.Fatal(err)
	}
	return answers
}

// resultAnswer waits for the answer to a result request.
func resultAnswer(ctx context.Context, t *testing.T, answers *nats.Subscription) (workers.ResultReply, *nats.Msg) {
	t.Helper()
	m, err := answers.NextMsgWithContext(ctx)
	if err != nil {
		t.Fatalf("the result was not answered: %v", err)
	}
	var r workers.ResultReply
	if err := json.Unmarshal(m.Data, &r); err != nil {
		t.Fatalf("result answered %q: %v", m.Data, err)
	}
	return r, m
}

// taskState returns the state of workflow wfID's task ref as e keeps it.
func taskState(ctx context.Context, t *testing.T, e *Executor, wfID, ref string) (status, workerID string, polls int) {
	t.Helper()
	w, err := e.State(ctx, wfID)
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range w.Tasks {
		if task.Ref == ref {
			status, workerID, polls = task.Status, task.WorkerID, task.PollCount
		}
	}
	return status, workerID, polls
}

// A result that waits for the next task is answered once, with both: the
// result recorded, and the next task of its queue offered. The task is
// the worker's once it accepts, as after a poll. The last result, with no
// task to come, is answered when its wait runs out.
func TestResultWaitsForTheNextTask(t *testing.T) {
	ctx, e, nc, a := takenByPoll(t, "wf-next", twoTasks)

	r, m := resultAnswer(ctx, t, reportWaiting(t, nc, a, "", &workers.PollRequest{WaitMs: 20000, PollID: "next-1"}))
	if !r.OK || r.Error != nil || r.Next == nil || r.Next.Task == nil || m.Reply == "" {
		t.Fatalf("result answered %s (reply %q), want ok and an offer", m.Data, m.Reply)
	}
	b := r.Next.Task
	if b.ReferenceTaskName != "b" || b.WorkerID != a.WorkerID || b.Status != conductor.TaskInProgress || b.InputData == nil {
		t.Fatalf("offered %s %s to %q, want b IN_PROGRESS to %q", b.ReferenceTaskName, b.Status, b.WorkerID, a.WorkerID)
	}
	if err := m.Respond([]byte(workers.AcceptOffer)); err != nil {
		t.Fatal(err)
	}
	if status, _, _ := taskState(ctx, t, e, "wf-next", "a"); status != conductor.TaskCompleted {
		t.Fatalf("a is %s after its result was answered", status)
	}

	const wait = 300 * time.Millisecond
	sent := time.Now()
	r, m = resultAnswer(ctx, t, reportWaiting(t, nc, b, "", &workers.PollRequest{WaitMs: wait.Milliseconds()}))
	if !r.OK || r.Next == nil || r.Next.Task != nil || r.Next.Error != nil || m.Reply != "" {
		t.Fatalf("last result answered %s (reply %q), want ok and no task", m.Data, m.Reply)
	}
	if waited := time.Since(sent); waited < wait {
		t.Fatalf("answered after %v, before the wait of %v ran out", waited, wait)
	}
	w, err := e.State(ctx, "wf-next")
	if err != nil || w.Status != conductor.WorkflowCompleted {
		t.Fatalf("workflow %v, %v: want COMPLETED", w, err)
	}
}

// A result the engine does not record is answered at once with the
// error, and waits for nothing: the worker reports again before it polls.
func TestRefusedResultDoesNotWait(t *testing.T) {
	ctx, e, nc, a := takenByPoll(t, "wf-refused", twoTasks)
	waiting := e.match.count()

	r, m := resultAnswer(ctx, t, reportWaiting(t, nc, a, "DONE_ISH", &workers.PollRequest{WaitMs: 20000}))
	if r.OK || r.Error == nil || r.Error.Code != workers.CodeInvalid || r.Next != nil || m.Reply != "" {
		t.Fatalf("result answered %s (reply %q), want an invalid error and no wait", m.Data, m.Reply)
	}
	if n := e.match.count(); n != waiting {
		t.Fatalf("%d polls wait after a refused result, want %d", n, waiting)
	}
	if status, _, _ := taskState(ctx, t, e, "wf-refused", "a"); status != conductor.TaskInProgress {
		t.Fatalf("a is %s after a refused result, want IN_PROGRESS", status)
	}
}

// The task offered with a result's answer goes to another worker when the
// worker refuses it, as a poll's offer does.
func TestRefusedNextTaskIsHandedOutAgain(t *testing.T) {
	ctx, e, nc, a := takenByPoll(t, "wf-refuse-next", twoTasks)

	other := natsPollWaiting(t, nc, e, "poll-other")
	// The waiting poll came first: the result's decision takes b for it.
	// The result's own wait gets nothing; end it.
	r, m := resultAnswer(ctx, t, reportWaiting(t, nc, a, "", &workers.PollRequest{WaitMs: 200}))
	if !r.OK || r.Next == nil || r.Next.Task != nil {
		t.Fatalf("result answered %s, want ok and no task: b went to the poll that waited first", m.Data)
	}
	pm, err := other.NextMsgWithContext(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var pr workers.PollReply
	if err := json.Unmarshal(pm.Data, &pr); err != nil || pr.Task == nil || pr.Task.ReferenceTaskName != "b" {
		t.Fatalf("the waiting poll was answered %s, want b", pm.Data)
	}
	// Refused by the poll, b is handed out again: to a result that waits.
	if err := pm.Respond([]byte(workers.RefuseOffer)); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() error {
		if status, _, _ := taskState(ctx, t, e, "wf-refuse-next", "b"); status != conductor.TaskScheduled {
			return fmt.Errorf("b is %s, want SCHEDULED again", status)
		}
		return nil
	})
	_, _, before := taskState(ctx, t, e, "wf-refuse-next", "b")

	// A result of a's (a duplicate, ignored) that waits gets b, and refuses
	// it in turn: b goes back once more, under a new lease.
	r, m = resultAnswer(ctx, t, reportWaiting(t, nc, a, "", &workers.PollRequest{WaitMs: 20000}))
	if !r.OK || !r.Ignored || r.Next == nil || r.Next.Task == nil || r.Next.Task.ReferenceTaskName != "b" || m.Reply == "" {
		t.Fatalf("duplicate result answered %s (reply %q), want ok, ignored, and b offered", m.Data, m.Reply)
	}
	if err := m.Respond([]byte(workers.RefuseOffer)); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() error {
		status, _, polls := taskState(ctx, t, e, "wf-refuse-next", "b")
		if status != conductor.TaskScheduled || polls <= before {
			return fmt.Errorf("b is %s after %d takes, want SCHEDULED after more than %d", status, polls, before)
		}
		return nil
	})
}

// A worker that stops ends the wait of its last result as it ends a poll:
// by the wait's pollId, answered at once.
func TestResultWaitEndsEarly(t *testing.T) {
	ctx, e, nc, a := takenByPoll(t, "wf-end", oneTask)
	waiting := e.match.count()

	answers := reportWaiting(t, nc, a, "", &workers.PollRequest{WaitMs: 30000, PollID: "result-wait"})
	testutil.Eventually(t, 10*time.Second, 5*time.Millisecond, func() error {
		if e.match.count() <= waiting {
			return errors.New("the result does not wait yet")
		}
		return nil
	})
	endPoll(t, nc, "match_task", "result-wait")
	r, m := resultAnswer(ctx, t, answers)
	if !r.OK || r.Next == nil || r.Next.Task != nil || m.Reply != "" {
		t.Fatalf("ended wait answered %s (reply %q), want ok and no task", m.Data, m.Reply)
	}
}

// A result that asks to wait but gives no reply subject is recorded, and
// waits for nothing: there is nowhere to answer.
func TestResultWithoutReplyDoesNotWait(t *testing.T) {
	ctx, e, nc, a := takenByPoll(t, "wf-noreply", oneTask)
	waiting := e.match.count()

	body, _ := json.Marshal(workers.ResultRequest{TaskResult: conductor.TaskResult{TaskID: a.TaskID,
		WorkflowInstanceID: a.WorkflowInstanceID, WorkerID: a.WorkerID, Status: conductor.TaskCompleted},
		Lease: a.PollCount, Next: &workers.PollRequest{WaitMs: 30000}})
	if err := nc.Publish(workers.ResultSubject("match_task", ""), body); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() error {
		if w, err := e.State(ctx, "wf-noreply"); err != nil || w.Status != conductor.WorkflowCompleted {
			return fmt.Errorf("workflow %v, %v: want COMPLETED", w, err)
		}
		return nil
	})
	if n := e.match.count(); n != waiting {
		t.Fatalf("%d polls wait after a result without a reply subject, want %d", n, waiting)
	}
}

// A domain's tasks are waited for on the poll subject that names the
// domain, which a worker's credentials allow or not: a domain named only
// in the body is refused. (A result's next: TestResultNextWaitsForItsSubjectsDomain.)
func TestPollDomainIsTheSubjects(t *testing.T) {
	l := testutil.OpenLog(t, "")
	e := startExecutor(t, l, nothingScheduled{}, Config{})
	ctx := testutil.Context(t, 30*time.Second)
	nc := l.Conn()

	m, err := pollRequest(t, nc, workers.PollSubject("match_task", ""), workers.PollRequest{Domain: "eu", WaitMs: 20000}).NextMsgWithContext(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var r workers.PollReply
	if err := json.Unmarshal(m.Data, &r); err != nil || r.Error == nil || r.Error.Code != workers.CodeInvalid {
		t.Fatalf("a domain named in the body only was answered %s, want invalid", m.Data)
	}
	takenInDomain(ctx, t, e, nc, "wf-eu")
}

// pollRequest publishes a poll request req on subject and returns the
// inbox its answer comes to.
func pollRequest(t *testing.T, nc *nats.Conn, subject string, req workers.PollRequest) *nats.Subscription {
	t.Helper()
	inbox := nc.NewInbox()
	answers, err := nc.SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(req)
	if err := nc.PublishRequest(subject, inbox, body); err != nil {
		t.Fatal(err)
	}
	return answers
}

// takenInDomain starts workflow id of twoTasks with match_task in domain
// eu, whose first task a NATS poll on the domain's subject takes and
// accepts for worker w-eu; it returns the task.
func takenInDomain(ctx context.Context, t *testing.T, e *Executor, nc *nats.Conn, id string) *conductor.Task {
	t.Helper()
	waiting := e.match.count()
	answers := pollRequest(t, nc, workers.PollSubject("match_task", "eu"), workers.PollRequest{WorkerID: "w-eu", WaitMs: 20000})
	testutil.Eventually(t, 10*time.Second, 5*time.Millisecond, func() error {
		if e.match.count() <= waiting {
			return errors.New("the domain's poll does not wait yet")
		}
		return nil
	})
	def := mustDef(t, twoTasks)
	if _, _, err := e.StartWorkflow(ctx, conductor.StartWorkflowRequest{Name: def.Name, WorkflowDef: def,
		TaskToDomain: map[string]string{"match_task": "eu"}}, StartOptions{WorkflowID: id}); err != nil {
		t.Fatal(err)
	}
	m, err := answers.NextMsgWithContext(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var r workers.PollReply
	if err := json.Unmarshal(m.Data, &r); err != nil || r.Task == nil || r.Task.Domain != "eu" {
		t.Fatalf("the domain's poll was answered %s, want its task", m.Data)
	}
	if err := m.Respond([]byte(workers.AcceptOffer)); err != nil {
		t.Fatal(err)
	}
	return r.Task
}

// A result's next is a poll's body, and reads as one: a domain it names
// must be the result subject's, and without one it waits for the queue
// the subject names, a domain's included, taking the next task in the
// result's own record. A worker written from the protocol page (the Node
// test worker's next is {"waitMs":5000}) would otherwise be told invalid
// after every result of a domain's task.
func TestResultNextWaitsForItsSubjectsDomain(t *testing.T) {
	for _, tc := range []struct {
		name    string
		domain  string // next's domain
		invalid bool
	}{
		{name: "none named", domain: ""},
		{name: "the subject's", domain: "eu"},
		{name: "another", domain: "us", invalid: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := testutil.OpenLog(t, "")
			e := startExecutor(t, l, nothingScheduled{}, Config{})
			ctx := testutil.Context(t, 30*time.Second)
			nc := l.Conn()
			const id = "wf-next-eu"
			a := takenInDomain(ctx, t, e, nc, id)

			res, m := resultAnswer(ctx, t, reportWaiting(t, nc, a, "", &workers.PollRequest{Domain: tc.domain, WaitMs: 20000}))
			if tc.invalid {
				if !res.OK || res.Next == nil || res.Next.Error == nil || res.Next.Error.Code != workers.CodeInvalid || m.Reply != "" {
					t.Fatalf("a result waiting for another domain's task was answered %s, want ok and an invalid wait", m.Data)
				}
				return
			}
			if !res.OK || res.Next == nil || res.Next.Task == nil || res.Next.Task.Domain != "eu" || res.Next.Task.ReferenceTaskName != "b" ||
				res.Next.Task.WorkerID != "w-eu" || m.Reply == "" {
				t.Fatalf("a result on the domain's subject waiting with next domain %q was answered %s, want ok and an offer of b", tc.domain, m.Data)
			}
			if err := m.Respond([]byte(workers.AcceptOffer)); err != nil {
				t.Fatal(err)
			}
			if types := eventTypes(ctx, t, l, id); len(types) != 2 {
				t.Fatalf("records %v: want the start's and the result's, which takes b", types)
			}
			if n := dispatched(ctx, t, l); n != 0 {
				t.Fatalf("%d announcements published: b was not taken in the result's record", n)
			}
		})
	}
}

// A lease extension that carries next takes no task: its worker keeps the
// one it holds and asked for no other, as update-v2 with extendLease
// answers 204 and polls nothing. It took the task queued behind, which the
// worker, still busy, would have held unstarted (or refused).
func TestLeaseExtensionTakesNoNextTask(t *testing.T) {
	ctx, e, nc, a := takenByPoll(t, "wf-ext", oneTask)
	startInline(ctx, t, e, "wf-ext-2", oneTask)

	inbox := nc.NewInbox()
	answers, err := nc.SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(workers.ResultRequest{TaskResult: conductor.TaskResult{TaskID: a.TaskID, WorkflowInstanceID: a.WorkflowInstanceID,
		WorkerID: a.WorkerID, Status: conductor.TaskInProgress, ExtendLease: true}, Lease: a.PollCount, Next: &workers.PollRequest{WaitMs: 2000}})
	if err := nc.PublishRequest(workers.ResultSubject(a.TaskDefName, a.Domain), inbox, body); err != nil {
		t.Fatal(err)
	}
	r, m := resultAnswer(ctx, t, answers)
	if !r.OK || r.Error != nil || r.Next != nil || m.Reply != "" {
		t.Fatalf("lease extension answered %s (reply %q), want ok and no next", m.Data, m.Reply)
	}
	if status, _, _ := taskState(ctx, t, e, "wf-ext", "a"); status != conductor.TaskInProgress {
		t.Fatalf("the extended task is %s, want IN_PROGRESS", status)
	}
	if status, _, _ := taskState(ctx, t, e, "wf-ext-2", "a"); status != conductor.TaskScheduled {
		t.Fatalf("the task queued behind is %s after the extension, want SCHEDULED", status)
	}
}

// A result whose poll for the next task waits ahead of its decision, and
// whose decision fails, ends that poll without holding up its shard: the
// poll, claimed meanwhile by the queue's feeder for a task that workflow
// of the same shard holds, waited there for that task's take, which
// waited for the shard, until the take gave up (takeTimeout, 30 s),
// every workflow of the shard stopped as long.
func TestFailedResultsNextPollDoesNotHoldItsShard(t *testing.T) {
	l := testutil.OpenLog(t, "")
	refuse := &refusesResult{log: l, held: make(chan struct{}), release: make(chan struct{})}
	e := New(l, noDefinitions{}, nothingScheduled{}, Config{Shards: 1, Logger: testutil.Logger(t)})
	e.appender = refuse
	ctx := testutil.Context(t, 60*time.Second)
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Stop)
	const id = "wf-result-refused-ahead"
	startInline(ctx, t, e, id, oneTask)
	var a *conductor.Task
	testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() error {
		tasks, _, err := e.Poll(ctx, PollRequest{TaskType: "match_task", WorkerID: "w1", Count: 1})
		if err != nil || len(tasks) == 0 {
			return fmt.Errorf("poll: %d tasks, %v", len(tasks), err)
		}
		a = tasks[0]
		return nil
	})
	// A poll that waits runs the queue's feeder.
	pollWaiting(ctx, t, e, "w2")

	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	reported := make(chan error, 1)
	go func() {
		res := conductor.TaskResult{TaskID: a.TaskID, WorkflowInstanceID: id, Status: conductor.TaskCompleted, WorkerID: "w1"}
		_, err := e.Submit(rctx, id, engine.Result{Result: res, TaskType: "match_task"},
			Meta{NextPoll: &PollRequest{WorkerID: "w1", Count: 1}})
		reported <- err
	}()
	select {
	case <-refuse.held:
	case <-ctx.Done():
		t.Fatal("the result was not decided")
	}
	// Announcements of tasks of workflows of the one shard, for the
	// feeder to take for both polls, the result's included.
	for i := range 2 {
		body, _ := json.Marshal(workers.Dispatch{TaskID: fmt.Sprint("task-", i), WorkflowInstanceID: fmt.Sprint("wf-elsewhere-", i), TaskType: "match_task"})
		if _, err := l.JetStream().Publish(ctx, workers.DispatchSubject("match_task", ""), body); err != nil {
			t.Fatal(err)
		}
	}
	testutil.Eventually(t, 10*time.Second, 5*time.Millisecond, func() error {
		if e.match.has(workers.ConsumerName("match_task", "")) {
			return errors.New("a poll waits unclaimed")
		}
		return nil
	})
	close(refuse.release)
	if err := <-reported; !errors.Is(err, eventlog.ErrClosed) {
		t.Fatalf("the refused result answered %v, want its refusal", err)
	}
}

// refusesResult refuses the first record of a result (ErrClosed: nothing
// stored), once release is closed, telling held when it has it.
type refusesResult struct {
	log           *eventlog.Log
	held, release chan struct{}
	once          sync.Once
}

func (r *refusesResult) Append(ctx context.Context, subj string, envs []schemas.Envelope, expected uint64, opts ...eventlog.AppendOption) (uint64, error) {
	refused := false
	if len(envs) > 0 && envs[0].Type == (&schemas.TaskUpdated{}).EventType() {
		r.once.Do(func() {
			close(r.held)
			<-r.release
			refused = true
		})
	}
	if refused {
		return 0, eventlog.ErrClosed
	}
	return r.log.Append(ctx, subj, envs, expected, opts...)
}
