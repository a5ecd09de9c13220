package executor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
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

const twoTasks = `{"name":"match_flow","tasks":[{"name":"match_task","taskReferenceName":"a","inputParameters":{"n":1}},
	{"name":"match_task","taskReferenceName":"b"}]}`

// polled is the outcome of a poll run in the background.
type polled struct {
	tasks []*conductor.Task
	seq   uint64
	err   error
}

// pollWaiting starts a poll of match_task for workerID and returns once it
// waits at e.
func pollWaiting(ctx context.Context, t *testing.T, e *Executor, workerID string) <-chan polled {
	t.Helper()
	before := e.match.count()
	out := make(chan polled, 1)
	go func() {
		tasks, seq, err := e.Poll(ctx, PollRequest{TaskType: "match_task", WorkerID: workerID, Count: 1, Wait: 20 * time.Second})
		out <- polled{tasks, seq, err}
	}()
	testutil.Eventually(t, 10*time.Second, 5*time.Millisecond, func() error {
		if e.match.count() <= before {
			return errors.New("the poll does not wait yet")
		}
		return nil
	})
	return out
}

// startAppendingThrough starts an executor on l whose appends go through
// a and whose hand-offs, with h set, h prepares; it stops when the test
// ends.
func startAppendingThrough(t *testing.T, l *eventlog.Log, a appender, h HandOff) *Executor {
	t.Helper()
	e := New(l, noDefinitions{}, nothingScheduled{}, Config{Logger: testutil.Logger(t)})
	e.appender = a
	if h != nil {
		e.SetHandOff(h)
	}
	if err := e.Start(testutil.Context(t, 30*time.Second)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Stop)
	return e
}

// answer waits for a poll's answer, failing the test if none comes.
func answer(ctx context.Context, t *testing.T, poll <-chan polled) polled {
	t.Helper()
	select {
	case p := <-poll:
		return p
	case <-ctx.Done():
		t.Fatal("the poll never answered")
		return polled{}
	}
}

// eventTypes lists the event types of each record of wfID's subject.
func eventTypes(ctx context.Context, t *testing.T, l *eventlog.Log, wfID string) [][]string {
	t.Helper()
	recs, err := l.ReadSubject(ctx, subject(wfID), 0)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]string
	for _, r := range recs {
		var types []string
		for _, env := range r.Events {
			types = append(types, env.Type)
		}
		out = append(out, types)
	}
	return out
}

// takesIn returns the TaskStarted events of recs' envelopes, with the
// principal of each.
func takesIn(ctx context.Context, t *testing.T, l *eventlog.Log, wfID string) (takes []*schemas.TaskStarted, principals []string) {
	t.Helper()
	recs, err := l.ReadSubject(ctx, subject(wfID), 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		for _, env := range r.Events {
			ev, err := schemas.Default.Decode(env)
			if err != nil {
				t.Fatal(err)
			}
			if s, ok := ev.(*schemas.TaskStarted); ok {
				takes, principals = append(takes, s), append(principals, env.Principal)
			}
		}
	}
	return takes, principals
}

// dispatched counts the announcements in the dispatch stream.
func dispatched(ctx context.Context, t *testing.T, l *eventlog.Log) uint64 {
	t.Helper()
	s, err := l.JetStream().Stream(ctx, eventlog.Dispatch.Name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info.State.LastSeq
}

// A poll waiting at the engine gets the task the next decision schedules,
// taken in that decision's own record: no announcement, no record of its
// own. The task is the poller's as a take would make it (IN_PROGRESS, its
// worker, poll count 1, its input as handed off), and the record's take
// names the poller.
func TestWaitingPollIsTakenForInTheSchedulingRecord(t *testing.T) {
	l := testutil.OpenLog(t, "")
	e := startAppendingThrough(t, l, l, &resolvesSecret{})
	ctx := testutil.Context(t, 30*time.Second)
	const id = "wf-matched"

	first := pollWaiting(ctx, t, e, "w1")
	startInline(ctx, t, e, id, twoTasks)
	got := answer(ctx, t, first)
	if got.err != nil || len(got.tasks) != 1 {
		t.Fatalf("poll: %d tasks, %v", len(got.tasks), got.err)
	}
	task := got.tasks[0]
	if task.ReferenceTaskName != "a" || task.Status != conductor.TaskInProgress || task.WorkerID != "w1" || task.PollCount != 1 {
		t.Fatalf("polled %s %s by %q, poll count %d; want a IN_PROGRESS by w1, 1", task.ReferenceTaskName, task.Status, task.WorkerID, task.PollCount)
	}
	if task.InputData["token"] != "resolved" {
		t.Fatalf("polled input %v, not the prepared one", task.InputData)
	}
	if types := eventTypes(ctx, t, l, id); len(types) != 1 || !slices.Contains(types[0], (&schemas.TaskStarted{}).EventType()) {
		t.Fatalf("records %v: want the start's, with the take in it", types)
	}
	if got.seq != 1 {
		t.Fatalf("poll answered at sequence %d, want the start's (1)", got.seq)
	}

	// The result's decision schedules b and takes it for the next poll.
	second := pollWaiting(ctx, t, e, "w2")
	res := conductor.TaskResult{TaskID: task.TaskID, WorkflowInstanceID: id, Status: conductor.TaskCompleted, WorkerID: "w1"}
	if _, err := e.ReportResult(ctx, res, "match_task", "w1"); err != nil {
		t.Fatal(err)
	}
	got = answer(ctx, t, second)
	if got.err != nil || len(got.tasks) != 1 || got.tasks[0].ReferenceTaskName != "b" || got.tasks[0].WorkerID != "w2" {
		t.Fatalf("second poll: %+v, %v", got.tasks, got.err)
	}
	if types := eventTypes(ctx, t, l, id); len(types) != 2 {
		t.Fatalf("records %v: want the start's and the result's", types)
	}
	takes, principals := takesIn(ctx, t, l, id)
	if len(takes) != 2 || takes[0].WorkerID != "w1" || takes[1].WorkerID != "w2" || !slices.Equal(principals, []string{"w1", "w2"}) {
		t.Fatalf("takes %+v by %v: want one each by w1 and w2", takes, principals)
	}
	if len(takes[0].Resolved) != 1 {
		t.Fatalf("the take records %d resolutions, want 1", len(takes[0].Resolved))
	}
	if n := dispatched(ctx, t, l); n != 0 {
		t.Fatalf("%d announcements published for tasks taken for waiting polls", n)
	}
}

// A poll whose client went away is not taken for: the task is announced.
func TestGonePollIsNotTakenFor(t *testing.T) {
	l := testutil.OpenLog(t, "")
	e := startExecutor(t, l, nothingScheduled{}, Config{})
	ctx := testutil.Context(t, 30*time.Second)
	pctx, cancel := context.WithCancel(ctx)
	w, _ := e.match.wait(pctx, workers.ConsumerName("match_task", ""), "w1", "")
	cancel()
	const id = "wf-poll-gone"
	startInline(ctx, t, e, id, twoTasks)
	if got := e.match.leave(w); got != nil {
		t.Fatalf("a poll that went away was handed task %s", got.task.TaskID)
	}
	if takes, _ := takesIn(ctx, t, l, id); len(takes) != 0 {
		t.Fatalf("%d takes for a poll that went away", len(takes))
	}
	testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() error {
		if n := dispatched(ctx, t, l); n != 1 {
			return fmt.Errorf("%d announcements, want 1", n)
		}
		return nil
	})
}

// A decision that took a task for a poll and then lost its append to
// another writer takes nothing: the poll waits again, and the next
// decision, on the log's state, takes the task for it once.
func TestMatchedTakeThatLostARaceIsTakenAgain(t *testing.T) {
	l := testutil.OpenLog(t, "")
	race := &matchLosesRace{log: l}
	e := startAppendingThrough(t, l, race, nil)
	ctx := testutil.Context(t, 30*time.Second)
	const id = "wf-match-race"
	startInline(ctx, t, e, id, twoTasks)
	// a was announced (no poll waited): taken from the queue.
	tasks, _, err := e.Poll(ctx, PollRequest{TaskType: "match_task", WorkerID: "w1", Count: 1, Wait: 10 * time.Second})
	if err != nil || len(tasks) != 1 {
		t.Fatalf("poll of a: %d tasks, %v", len(tasks), err)
	}
	a := tasks[0]

	poll := pollWaiting(ctx, t, e, "w2")
	res := conductor.TaskResult{TaskID: a.TaskID, WorkflowInstanceID: id, Status: conductor.TaskCompleted, WorkerID: "w1"}
	if _, err := e.ReportResult(ctx, res, "match_task", "w1"); err != nil {
		t.Fatal(err)
	}
	got := answer(ctx, t, poll)
	if got.err != nil || len(got.tasks) != 1 || got.tasks[0].ReferenceTaskName != "b" || got.tasks[0].PollCount != 1 {
		t.Fatalf("poll: %+v, %v", got.tasks, got.err)
	}
	if !race.lost.Load() {
		t.Fatal("no append with a matched take lost a race")
	}
	takes, _ := takesIn(ctx, t, l, id)
	if len(takes) != 2 || takes[1].WorkerID != "w2" {
		t.Fatalf("takes %+v: want a's and one of b by w2", takes)
	}
}

// matchLosesRace lets another writer append just before the first record
// that holds a take after other events (a take for a waiting poll).
type matchLosesRace struct {
	log  *eventlog.Log
	lost atomic.Bool
}

func (a *matchLosesRace) Append(ctx context.Context, subj string, envs []schemas.Envelope, expected uint64, opts ...eventlog.AppendOption) (uint64, error) {
	if matchedTake(envs) && a.lost.CompareAndSwap(false, true) {
		env, err := schemas.Default.Encode(&schemas.VariablesUpdated{Variables: map[string]any{"x": 1}, Time: 1})
		if err != nil {
			return 0, err
		}
		env.ID = "another-writer"
		if _, err := a.log.Append(ctx, subj, []schemas.Envelope{env}, expected); err != nil {
			return 0, err
		}
	}
	return a.log.Append(ctx, subj, envs, expected, opts...)
}

// matchedTake reports a record with a take after its first event.
func matchedTake(envs []schemas.Envelope) bool {
	for _, env := range envs[min(1, len(envs)):] {
		if env.Type == (&schemas.TaskStarted{}).EventType() {
			return true
		}
	}
	return false
}

// A record with a take for a poll, stored though its append answered an
// error, is found in the log: the poll gets its task, which is not handed
// out twice.
func TestMatchedTakeWhoseAnswerWasLostIsHandedOver(t *testing.T) {
	l := testutil.OpenLog(t, "")
	lost := &lostAnswer{log: l, only: matchedTake}
	e := startAppendingThrough(t, l, lost, nil)
	ctx := testutil.Context(t, 30*time.Second)
	const id = "wf-match-lost-answer"
	poll := pollWaiting(ctx, t, e, "w1")
	startInline(ctx, t, e, id, twoTasks)
	got := answer(ctx, t, poll)
	if !lost.lost.Load() {
		t.Fatal("the answer of the record with the take was not lost")
	}
	if got.err != nil || len(got.tasks) != 1 || got.tasks[0].WorkerID != "w1" || got.tasks[0].PollCount != 1 {
		t.Fatalf("poll: %+v, %v", got.tasks, got.err)
	}
	if takes, _ := takesIn(ctx, t, l, id); len(takes) != 1 {
		t.Fatalf("%d takes, want 1", len(takes))
	}
}

// A task offered to a NATS poll whose worker refuses it, or never
// answers, is handed out again: back in its queue, announced, and the
// next take holds the next lease.
func TestUnacceptedOfferIsHandedOutAgain(t *testing.T) {
	for _, tt := range []struct {
		name   string
		answer func(m *nats.Msg)
	}{
		{"refused", func(m *nats.Msg) { _ = m.Respond([]byte(`{"accept":false}`)) }},
		{"unanswered", func(*nats.Msg) {}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			l := testutil.OpenLog(t, "")
			e := startExecutor(t, l, nothingScheduled{}, Config{OfferTimeout: 200 * time.Millisecond})
			ctx := testutil.Context(t, 30*time.Second)
			offers := natsPollWaiting(t, l.Conn(), e, "poll-1")
			const id = "wf-offer-unaccepted"
			startInline(ctx, t, e, id, twoTasks)
			m, err := offers.NextMsgWithContext(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var offer workers.PollReply
			if err := json.Unmarshal(m.Data, &offer); err != nil || offer.Task == nil || m.Reply == "" {
				t.Fatalf("poll answered %s (reply %q), want an offer", m.Data, m.Reply)
			}
			tt.answer(m)

			testutil.Eventually(t, 20*time.Second, 20*time.Millisecond, func() error {
				w, err := e.State(ctx, id)
				if err != nil {
					return err
				}
				if got := w.TaskByID(offer.Task.TaskID); got.Status != conductor.TaskScheduled || got.PollCount != 1 {
					return fmt.Errorf("task %s, poll count %d", got.Status, got.PollCount)
				}
				return nil
			})
			reply := takeOver(ctx, t, l, e, id)
			if reply.Error != nil || reply.Task == nil || reply.Task.TaskID != offer.Task.TaskID || reply.Task.PollCount != 2 {
				t.Fatalf("the take after the offer answered %+v, task %+v", reply.Error, reply.Task)
			}
		})
	}
}

// A task offered to a NATS poll and accepted stays its worker's.
func TestAcceptedOfferIsTheWorkers(t *testing.T) {
	l := testutil.OpenLog(t, "")
	e := startExecutor(t, l, nothingScheduled{}, Config{OfferTimeout: 200 * time.Millisecond})
	ctx := testutil.Context(t, 30*time.Second)
	const id = "wf-offer-accepted"
	startInline(ctx, t, e, id, twoTasks)
	nc := l.Conn()
	inbox := nc.NewInbox()
	offers, err := nc.SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(workers.PollRequest{WorkerID: "w1", WaitMs: 20000})
	if err := nc.PublishRequest(workers.PollSubject("match_task", ""), inbox, body); err != nil {
		t.Fatal(err)
	}
	m, err := offers.NextMsgWithContext(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var offer workers.PollReply
	if err := json.Unmarshal(m.Data, &offer); err != nil || offer.Task == nil {
		t.Fatalf("poll answered %s, want an offer of the announced task", m.Data)
	}
	if err := m.Respond([]byte(`{"accept":true}`)); err != nil {
		t.Fatal(err)
	}
	// Past the offer timeout, the task is still the worker's.
	time.Sleep(time.Second)
	w, err := e.State(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if got := w.TaskByID(offer.Task.TaskID); got.Status != conductor.TaskInProgress || got.WorkerID != "w1" || got.PollCount != 1 {
		t.Fatalf("accepted task %s by %q, poll count %d", got.Status, got.WorkerID, got.PollCount)
	}
}

// A decision may announce a task twice (a response timeout's retry is),
// and announcements are idempotent. A waiting poll gets the task, taken
// once, and neither announcement is published.
func TestTaskAnnouncedTwiceIsTakenOnce(t *testing.T) {
	l := testutil.OpenLog(t, "")
	var now atomic.Int64
	now.Store(time.Now().UnixMilli())
	e := startExecutor(t, l, nothingScheduled{}, Config{Now: func() time.Time { return time.UnixMilli(now.Load()) }})
	ctx := testutil.Context(t, 30*time.Second)
	const id = "wf-announced-twice"
	startInline(ctx, t, e, id, `{"name":"response_timeout_flow","tasks":[{"name":"match_task","taskReferenceName":"a",
		"taskDefinition":{"name":"match_task","responseTimeoutSeconds":1,"retryCount":1,"retryDelaySeconds":0}}]}`)
	tasks, _, err := e.Poll(ctx, PollRequest{TaskType: "match_task", WorkerID: "w1", Count: 1, Wait: 10 * time.Second})
	if err != nil || len(tasks) != 1 {
		t.Fatalf("poll of a: %d tasks, %v", len(tasks), err)
	}
	first := tasks[0].TaskID

	now.Add(2000) // past a's response timeout
	waiter, _ := e.match.wait(ctx, workers.ConsumerName("match_task", ""), "w2", "")
	if _, err := e.Submit(ctx, id, engine.Tick{}, Meta{}); err != nil {
		t.Fatal(err)
	}
	got := e.match.leave(waiter)
	if got == nil {
		t.Fatal("the waiting poll got no task")
	}
	if got.task.TaskID == first || got.task.Status != conductor.TaskInProgress || got.task.WorkerID != "w2" || got.task.RetryCount != 1 {
		t.Fatalf("the poll got task %s (retry %d, %s by %q), want the retry of %s by w2", got.task.TaskID, got.task.RetryCount,
			got.task.Status, got.task.WorkerID, first)
	}
	takes, _ := takesIn(ctx, t, l, id)
	if len(takes) != 2 {
		t.Fatalf("%d takes, want a's and its retry's", len(takes))
	}
	// Only a's announcement. Effects run in the background: the retry's,
	// had it been kept, would be published well within this pause.
	time.Sleep(500 * time.Millisecond)
	if n := dispatched(ctx, t, l); n != 1 {
		t.Fatalf("%d announcements, want a's alone", n)
	}
}

// holdsMatchedTake holds the first append of a record with a take for a
// poll (with picks set, of a record it picks) until release is closed,
// telling held when it has it.
type holdsMatchedTake struct {
	log           *eventlog.Log
	held, release chan struct{}
	picks         func([]schemas.Envelope) bool
	once          sync.Once
}

func (h *holdsMatchedTake) Append(ctx context.Context, subj string, envs []schemas.Envelope, expected uint64, opts ...eventlog.AppendOption) (uint64, error) {
	picks := h.picks
	if picks == nil {
		picks = matchedTake
	}
	if picks(envs) {
		h.once.Do(func() {
			close(h.held)
			<-h.release
		})
	}
	return h.log.Append(ctx, subj, envs, expected, opts...)
}

// A poll whose client goes away while a task is being taken for it does
// not keep the task: once the take is stored, the task is handed back and
// goes to the next worker.
func TestTaskTakenForAPollThatEndedIsHandedBack(t *testing.T) {
	l := testutil.OpenLog(t, "")
	hold := &holdsMatchedTake{log: l, held: make(chan struct{}), release: make(chan struct{})}
	e := startAppendingThrough(t, l, hold, nil)
	ctx := testutil.Context(t, 30*time.Second)
	pctx, hangUp := context.WithCancel(ctx)
	defer hangUp()
	poll := pollWaiting(pctx, t, e, "w1")
	const id = "wf-poll-ended"
	started := make(chan error, 1)
	go func() {
		_, _, err := e.StartWorkflow(ctx, conductor.StartWorkflowRequest{Name: "match_flow", WorkflowDef: mustDef(t, twoTasks)}, StartOptions{WorkflowID: id})
		started <- err
	}()
	select {
	case <-hold.held:
	case <-ctx.Done():
		t.Fatal("no record with a take for the poll")
	}
	hangUp()
	close(hold.release)
	if err := <-started; err != nil {
		t.Fatal(err)
	}
	handedBack(ctx, t, e, id, poll)
}

// A poll whose caller goes away while a task it pulled from the queue is
// being taken for it (an HTTP client's timeout, a NATS poll ended) hands
// the task back too: nobody gets the answer, and the task waited for its
// response timeout, IN_PROGRESS for a worker that never got it.
func TestTaskAPollPulledAsItEndedIsHandedBack(t *testing.T) {
	l := testutil.OpenLog(t, "")
	hold := &holdsMatchedTake{log: l, held: make(chan struct{}), release: make(chan struct{}), picks: isTake}
	e := startAppendingThrough(t, l, hold, nil)
	ctx := testutil.Context(t, 30*time.Second)
	const id = "wf-poll-ended-pulled"
	startInline(ctx, t, e, id, twoTasks)
	testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() error {
		if n := dispatched(ctx, t, l); n != 1 {
			return fmt.Errorf("%d announcements, want 1", n)
		}
		return nil
	})
	pctx, hangUp := context.WithCancel(ctx)
	defer hangUp()
	poll := make(chan polled, 1)
	go func() {
		// No wait: the poll pulls the announcement itself.
		tasks, seq, err := e.Poll(pctx, PollRequest{TaskType: "match_task", WorkerID: "w1", Count: 1})
		poll <- polled{tasks, seq, err}
	}()
	select {
	case <-hold.held:
	case <-ctx.Done():
		t.Fatal("the poll took nothing")
	}
	hangUp()
	close(hold.release)
	handedBack(ctx, t, e, id, poll)
	if reply := takeOver(ctx, t, l, e, id); reply.Error != nil || reply.Task == nil || reply.Task.PollCount != 2 {
		t.Fatalf("the take after the hand-back answered %+v, task %+v", reply.Error, reply.Task)
	}
}

// handedBack checks that poll, which ended as the first task of workflow
// id was taken for it, got nothing, and waits until the task is back in
// its queue.
func handedBack(ctx context.Context, t *testing.T, e *Executor, id string, poll <-chan polled) {
	t.Helper()
	if got := answer(ctx, t, poll); len(got.tasks) != 0 {
		t.Fatalf("a poll that ended got %d tasks", len(got.tasks))
	}
	testutil.Eventually(t, 20*time.Second, 20*time.Millisecond, func() error {
		w, err := e.State(ctx, id)
		if err != nil {
			return err
		}
		if got := w.Tasks[0]; got.Status != conductor.TaskScheduled || got.PollCount != 1 {
			return fmt.Errorf("task %s, poll count %d", got.Status, got.PollCount)
		}
		return nil
	})
}

func mustDef(t *testing.T, defJSON string) *conductor.WorkflowDef {
	t.Helper()
	def := &conductor.WorkflowDef{}
	if err := conductor.Unmarshal([]byte(defJSON), def); err != nil {
		t.Fatal(err)
	}
	return def
}

// addsAnEvent protects a decision by adding an event after its own, as
// sealing does (SecretsSealed, ValuesMasked).
type addsAnEvent struct{}

func (addsAnEvent) Protect(_ context.Context, _ *engine.Workflow, dec engine.Decision) (engine.Decision, error) {
	dec.Events = append(slices.Clone(dec.Events), &schemas.VariablesUpdated{Variables: map[string]any{"protected": true}, Time: 1})
	return dec, nil
}

// A take for a poll is recorded as its worker's, also when protection
// adds events after the decision's: those stay the decision's.
func TestMatchedTakeNamesItsWorkerAfterProtection(t *testing.T) {
	l := testutil.OpenLog(t, "")
	e := New(l, noDefinitions{}, nothingScheduled{}, Config{Logger: testutil.Logger(t)})
	e.SetProtector(addsAnEvent{})
	ctx := testutil.Context(t, 30*time.Second)
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Stop)
	const id = "wf-matched-protected"
	poll := pollWaiting(ctx, t, e, "w1")
	if _, _, err := e.StartWorkflow(ctx, conductor.StartWorkflowRequest{Name: "match_flow", WorkflowDef: mustDef(t, twoTasks)},
		StartOptions{WorkflowID: id, CreatedBy: "alice"}); err != nil {
		t.Fatal(err)
	}
	if got := answer(ctx, t, poll); len(got.tasks) != 1 {
		t.Fatalf("poll: %d tasks, %v", len(got.tasks), got.err)
	}
	recs, err := l.ReadSubject(ctx, subject(id), 0)
	if err != nil || len(recs) != 1 {
		t.Fatalf("%d records, %v", len(recs), err)
	}
	for _, env := range recs[0].Events {
		want := "alice"
		if env.Type == (&schemas.TaskStarted{}).EventType() {
			want = "w1"
		}
		if env.Principal != want {
			t.Errorf("%s recorded as %q's, want %q's", env.Type, env.Principal, want)
		}
	}
}

// Two engines that decide one start request (a start command both took,
// as a schedule's tick is) each take the first task for a waiting poll of
// the same worker id. The log keeps the first record; the other engine's
// append is a duplicate of it, whose takes are not its own: its poll
// waits on, and the task is handed out once.
func TestDuplicateOfAnotherEnginesStartHandsNothingOver(t *testing.T) {
	l := testutil.OpenLog(t, "")
	gate := &heldAppend{log: l, release: make(chan struct{}), held: make(chan struct{})}
	a := startAppendingThrough(t, l, l, nil)
	b := startAppendingThrough(t, l, gate, nil)
	ctx := testutil.Context(t, 30*time.Second)
	const id = "wf-two-engines-one-start"
	def := mustDef(t, twoTasks)
	start := func(e *Executor) error {
		_, _, err := e.StartWorkflow(ctx, conductor.StartWorkflowRequest{Name: def.Name, WorkflowDef: def},
			StartOptions{WorkflowID: id, RequestID: "start-command-1"})
		return err
	}
	pollA := pollWaiting(ctx, t, a, "host-1")
	pollCtx, stopPollB := context.WithCancel(ctx)
	pollB := pollWaiting(pollCtx, t, b, "host-1")
	startedB := make(chan error, 1)
	go func() { startedB <- start(b) }()
	<-gate.held // b decided on the empty log, and took the task for its poll
	if err := start(a); err != nil {
		t.Fatal(err)
	}
	got := answer(ctx, t, pollA)
	if got.err != nil || len(got.tasks) != 1 {
		t.Fatalf("engine a's poll: %+v, %v", got.tasks, got.err)
	}
	close(gate.release)
	if err := <-startedB; err != nil {
		t.Fatalf("engine b's start of the same request: %v", err)
	}
	if n := b.match.count(); n != 1 {
		t.Fatalf("%d polls wait at engine b, want its poll waiting again", n)
	}
	stopPollB()
	if got := answer(ctx, t, pollB); len(got.tasks) != 0 {
		t.Fatalf("engine b's poll was handed %s too", got.tasks[0].TaskID)
	}
	if takes, _ := takesIn(ctx, t, l, id); len(takes) != 1 {
		t.Fatalf("%d takes, want 1", len(takes))
	}
}

// heldAppend holds the first append until release is closed, and says
// so on held.
type heldAppend struct {
	log     *eventlog.Log
	once    sync.Once
	held    chan struct{}
	release chan struct{}
}

func (h *heldAppend) Append(ctx context.Context, subj string, envs []schemas.Envelope, expected uint64, opts ...eventlog.AppendOption) (uint64, error) {
	h.once.Do(func() {
		close(h.held)
		<-h.release
	})
	return h.log.Append(ctx, subj, envs, expected, opts...)
}
