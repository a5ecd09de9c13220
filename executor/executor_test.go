package executor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/workers"
)

// noDefinitions knows no stored definition: the test starts inline ones,
// and SIMPLE tasks run on defaults.
type noDefinitions struct{}

func (noDefinitions) LookupWorkflowDef(_ context.Context, name string, _ *int) (*conductor.WorkflowDef, error) {
	return nil, fault.NotFound("workflow definition %s not found: no stored definitions here", name)
}

func (noDefinitions) LookupTaskDef(context.Context, string) (*conductor.TaskDef, bool, error) {
	return nil, false, nil
}

func (noDefinitions) CheckWorkflowDef(def *conductor.WorkflowDef) error {
	return engine.ValidateWorkflowDef(def)
}

func (noDefinitions) WorkflowOwner(_ context.Context, name string) (string, error) {
	return "", fault.NotFound("workflow definition %s not found: no stored definitions here", name)
}

// nothingScheduled has no deadlines and no running workflows to recover.
type nothingScheduled struct{}

func (nothingScheduled) Due(context.Context, int64, Due, int) ([]Due, error)   { return nil, nil }
func (nothingScheduled) Running(context.Context, func(wfID string) bool) error { return nil }
func (nothingScheduled) ScheduledBefore(context.Context, int64, func(wfID string) bool) error {
	return nil
}

// startExecutor starts an executor on l, stopped when the test ends.
func startExecutor(t *testing.T, l *eventlog.Log, sched Schedule, cfg Config) *Executor {
	t.Helper()
	cfg.Logger = testutil.Logger(t)
	e := New(l, noDefinitions{}, sched, cfg)
	if err := e.Start(testutil.Context(t, 30*time.Second)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Stop)
	return e
}

// startInline starts workflow id of the inline definition defJSON on e.
func startInline(ctx context.Context, t *testing.T, e *Executor, id, defJSON string) {
	t.Helper()
	def := mustDef(t, defJSON)
	if _, _, err := e.StartWorkflow(ctx, conductor.StartWorkflowRequest{Name: def.Name, WorkflowDef: def}, StartOptions{WorkflowID: id}); err != nil {
		t.Fatal(err)
	}
}

// lostAnswer stores the first append it is given (of those only picks,
// when set), then answers it with an error: the answer of a publish the
// server stored was lost (a timeout, a connection that dropped). With
// giveUp set, the caller gives up (giveUp ends its context) while the
// append is under way, which is stored after that and answered with the
// caller's error: a batch written after its writer stopped waiting.
type lostAnswer struct {
	log    *eventlog.Log
	only   func([]schemas.Envelope) bool
	giveUp context.CancelFunc
	lost   atomic.Bool
}

func (l *lostAnswer) Append(ctx context.Context, subject string, envs []schemas.Envelope, expected uint64, opts ...eventlog.AppendOption) (uint64, error) {
	if l.lost.Load() || (l.only != nil && !l.only(envs)) {
		return l.log.Append(ctx, subject, envs, expected, opts...)
	}
	if l.giveUp != nil {
		l.giveUp()
		<-ctx.Done()
		_, err := l.log.Append(context.WithoutCancel(ctx), subject, envs, expected, opts...)
		if err == nil && l.lost.CompareAndSwap(false, true) {
			return 0, ctx.Err()
		}
		return 0, err
	}
	seq, err := l.log.Append(ctx, subject, envs, expected, opts...)
	if err == nil && l.lost.CompareAndSwap(false, true) {
		return 0, errors.New("publish answer lost")
	}
	return seq, err
}

// A decision whose append was stored although the executor was told it
// failed answers as stored, found in the log, while its caller waits; once
// its caller has given up it answers the caller's error. Either way its
// effects are performed: the task it scheduled is dispatched, without a
// restart's recovery.
func TestEffectsOfAnAppendWhoseAnswerWasLost(t *testing.T) {
	for _, late := range []bool{false, true} {
		t.Run(fmt.Sprintf("late=%v", late), func(t *testing.T) {
			testEffectsOfAnAppendWhoseAnswerWasLost(t, late)
		})
	}
}

func testEffectsOfAnAppendWhoseAnswerWasLost(t *testing.T, late bool) {
	l := testutil.OpenLog(t, "")
	lost := &lostAnswer{log: l}
	e := startAppendingThrough(t, l, lost, nil)
	ctx := testutil.Context(t, 30*time.Second)
	startCtx, giveUp := context.WithCancel(ctx)
	defer giveUp()
	if late {
		lost.giveUp = giveUp
	}

	def := &conductor.WorkflowDef{}
	if err := conductor.Unmarshal([]byte(`{"name":"lost_answer","version":1,"tasks":[{"name":"lost_answer_task","taskReferenceName":"t"}]}`), def); err != nil {
		t.Fatal(err)
	}
	const id = "wf-lost-answer"
	_, _, err := e.StartWorkflow(startCtx, conductor.StartWorkflowRequest{Name: def.Name, WorkflowDef: def}, StartOptions{WorkflowID: id})
	if late != (err != nil) {
		t.Fatalf("start whose answer was lost (caller gone: %v) answered %v", late, err)
	}
	// A caller who gave up is answered at once; the append goes on.
	testutil.Eventually(t, 20*time.Second, 20*time.Millisecond, func() error {
		if !lost.lost.Load() {
			return errors.New("the start's answer was not lost yet")
		}
		return nil
	})
	recs, err := l.ReadSubject(ctx, subject(id), 0)
	if err != nil || len(recs) != 1 {
		t.Fatalf("the start was not stored: %d records, %v", len(recs), err)
	}

	stream, err := l.JetStream().Stream(ctx, eventlog.Dispatch.Name)
	if err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 20*time.Second, 50*time.Millisecond, func() error {
		m, err := stream.GetLastMsgForSubject(ctx, workers.DispatchSubject("lost_answer_task", ""))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return errors.New("the scheduled task was never dispatched")
		}
		if err != nil {
			return err
		}
		var d workers.Dispatch
		if err := json.Unmarshal(m.Data, &d); err != nil || d.WorkflowInstanceID != id {
			return errors.New("a dispatch for another workflow")
		}
		return nil
	})
}

// A decision answers while every effect slot is taken: what holds the
// slots (takes and results of workers, system tasks reporting) may be
// waiting for the decision's shard. Its effects run once slots free up.
func TestDecisionDoesNotWaitForEffectSlots(t *testing.T) {
	l := testutil.OpenLog(t, "")
	e := startExecutor(t, l, nothingScheduled{}, Config{Shards: 1, EffectConcurrency: 2})
	ctx := testutil.Context(t, 30*time.Second)

	const branches = 8
	tasks := make([]any, branches)
	for i := range tasks {
		tasks[i] = map[string]any{"name": "slots_task", "taskReferenceName": fmt.Sprintf("b%d", i)}
	}
	def := &conductor.WorkflowDef{}
	if err := conductor.Unmarshal([]byte(`{"name":"slots","version":1,"tasks":[
	 {"name":"fork","taskReferenceName":"fork","type":"FORK_JOIN_DYNAMIC","dynamicForkTasksParam":"tasks","inputParameters":{"tasks":"${workflow.input.tasks}"}},
	 {"name":"join","taskReferenceName":"join","type":"JOIN"}]}`), def); err != nil {
		t.Fatal(err)
	}
	for range cap(e.sem) {
		e.sem <- struct{}{} // as takes waiting for this shard would
	}
	startCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	const id = "wf-slots"
	_, _, err := e.StartWorkflow(startCtx, conductor.StartWorkflowRequest{Name: def.Name, WorkflowDef: def, Input: map[string]any{"tasks": tasks}}, StartOptions{WorkflowID: id})
	if err != nil {
		t.Fatalf("the start waited for an effect slot: %v", err)
	}
	for range cap(e.sem) {
		<-e.sem
	}

	stream, err := l.JetStream().Stream(ctx, eventlog.Dispatch.Name)
	if err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 20*time.Second, 50*time.Millisecond, func() error {
		info, err := stream.Info(ctx) // this log's only dispatches
		if err != nil {
			return err
		}
		if n := info.State.Msgs; n != branches {
			return fmt.Errorf("%d of %d branches dispatched", n, branches)
		}
		return nil
	})
}

// scheduledLongAgo lists the given workflows as having tasks scheduled
// long ago, and nothing as running or due.
type scheduledLongAgo []string

func (scheduledLongAgo) Due(context.Context, int64, Due, int) ([]Due, error)   { return nil, nil }
func (scheduledLongAgo) Running(context.Context, func(wfID string) bool) error { return nil }
func (s scheduledLongAgo) ScheduledBefore(_ context.Context, _ int64, fn func(string) bool) error {
	for _, id := range s {
		if !fn(id) {
			break
		}
	}
	return nil
}

// A task no worker took before the dispatch stream dropped its message for
// age is announced again, while the executor runs: its workers may come
// back long after, and nothing else would announce it.
func TestExpiredDispatchIsSentAgain(t *testing.T) {
	// The message expires long after the stream forgets its id: here too.
	cfg := testutil.LogConfig(t.TempDir())
	cfg.DuplicateWindow = time.Second
	l, err := eventlog.Open(testutil.Context(t, 30*time.Second), cfg, eventlog.Options{Logger: testutil.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	const id = "wf-expired-dispatch"
	e := startExecutor(t, l, scheduledLongAgo{id}, Config{DispatchAge: 1500 * time.Millisecond, RedispatchInterval: 250 * time.Millisecond})
	ctx := testutil.Context(t, 30*time.Second)
	startInline(ctx, t, e, id, `{"name":"expiring","version":1,"tasks":[{"name":"expiring_task","taskReferenceName":"t"}]}`)
	stream, err := l.JetStream().Stream(ctx, eventlog.Dispatch.Name)
	if err != nil {
		t.Fatal(err)
	}
	subj := workers.DispatchSubject("expiring_task", "")
	waitDispatch := func(what string) {
		t.Helper()
		testutil.Eventually(t, 20*time.Second, 20*time.Millisecond, func() error {
			if _, err := stream.GetLastMsgForSubject(ctx, subj); err != nil {
				return fmt.Errorf("%s: %w", what, err)
			}
			return nil
		})
	}
	waitDispatch("the task was never dispatched")
	// As the stream's MaxAge would, long after the duplicate window.
	if err := stream.Purge(ctx); err != nil {
		t.Fatal(err)
	}
	waitDispatch("the expired dispatch was not sent again")
}

// A decision that finds nothing to do on a cached state checks the log
// first: another engine may have changed the workflow since. Here a pause
// on an engine whose cache still holds the workflow PAUSED, after another
// engine resumed it, must pause it again.
func TestNothingToDoIsCheckedAgainstTheLog(t *testing.T) {
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, 30*time.Second)
	a, b := startExecutor(t, l, nothingScheduled{}, Config{}), startExecutor(t, l, nothingScheduled{}, Config{})
	const id = "wf-stale-pause"
	startInline(ctx, t, a, id, `{"name":"paused","version":1,"tasks":[{"name":"gate","taskReferenceName":"gate","type":"WAIT"}]}`)
	for _, step := range []struct {
		e    *Executor
		trig engine.Trigger
	}{{a, engine.Pause{}}, {b, engine.Resume{}}, {a, engine.Pause{}}} {
		if _, err := step.e.Submit(ctx, id, step.trig, Meta{}); err != nil {
			t.Fatalf("%T: %v", step.trig, err)
		}
	}
	w, err := b.State(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if w.Status != conductor.WorkflowPaused {
		t.Fatalf("after pause, resume elsewhere and pause again: %s", w.Status)
	}
}

// A record that was appended already (another engine took the same
// request, e.g. a command redelivered after a crash) is the log's, not this
// decision's: the engine whose append was deduplicated must not cache what
// it decided, which differs (here: by its clock).
func TestDeduplicatedAppendIsNotCached(t *testing.T) {
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, 30*time.Second)
	clock := func(at time.Time) func() time.Time { return func() time.Time { return at } }
	first := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	a := startExecutor(t, l, nothingScheduled{}, Config{Now: clock(first)})
	b := startExecutor(t, l, nothingScheduled{}, Config{Now: clock(first.Add(time.Hour))})
	const id = "wf-dedup"
	startInline(ctx, t, a, id, `{"name":"dedup","version":1,"tasks":[{"name":"gate","taskReferenceName":"gate","type":"WAIT"}]}`)
	if _, err := b.State(ctx, id); err != nil { // b caches the started state
		t.Fatal(err)
	}
	meta := Meta{RequestID: "request-1"}
	set := engine.SetVariables{Variables: map[string]any{"v": int64(1)}}
	if _, err := a.Submit(ctx, id, set, meta); err != nil {
		t.Fatal(err)
	}
	out, err := b.Submit(ctx, id, set, meta)
	if err != nil {
		t.Fatal(err)
	}
	if got := out.State.UpdateTime; got != first.UnixMilli() {
		t.Fatalf("b answered a state updated at %d, the log's at %d", got, first.UnixMilli())
	}
	w, err := b.State(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if w.UpdateTime != first.UnixMilli() || w.Seq != out.Seq {
		t.Fatalf("b holds a state updated at %d (seq %d), the log's at %d (seq %d)", w.UpdateTime, w.Seq, first.UnixMilli(), out.Seq)
	}
}

// refusesNews refuses every append to the parent's subject that completes
// a task with output v == "x": the child's news, as its engine holds it,
// never reaches the parent.
type refusesNews struct {
	log    *eventlog.Log
	parent string
}

func (r *refusesNews) Append(ctx context.Context, subj string, envs []schemas.Envelope, expected uint64, opts ...eventlog.AppendOption) (uint64, error) {
	if subj == subject(r.parent) {
		for _, env := range envs {
			if ev, err := schemas.Default.Decode(env); err == nil {
				if u, ok := ev.(*schemas.TaskUpdated); ok && u.Output["v"] == "x" {
					return 0, errors.New("append refused")
				}
			}
		}
	}
	return r.log.Append(ctx, subj, envs, expected, opts...)
}

// opensOutput stands in for the guard: what it opens reads "opened".
type opensOutput struct{}

func (opensOutput) Prepare(context.Context, *engine.Workflow, *engine.Task) (map[string]any, []schemas.ResolvedRef, error) {
	return nil, nil, nil
}

func (opensOutput) OpenOutput(_ context.Context, w *engine.Workflow) (map[string]any, error) {
	out := maps.Clone(w.Output)
	out["v"] = "opened"
	return out, nil
}

// A parent told of its child's end by recovery (here: its append of the
// news failed, and the reconcile after it asked the child) gets the
// child's output from the child's stored state, opened: values sealed
// under the child's key are no use to the parent.
func TestRecoveredChildOutputIsOpened(t *testing.T) {
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, 30*time.Second)
	const parent = "wf-parent"
	e := New(l, noDefinitions{}, nothingScheduled{}, Config{Logger: testutil.Logger(t)})
	e.appender = &refusesNews{log: l, parent: parent}
	e.SetHandOff(opensOutput{})
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Stop)
	startInline(ctx, t, e, parent, `{"name":"parent","version":1,"tasks":[{"name":"sub","taskReferenceName":"sub","type":"SUB_WORKFLOW",
	  "subWorkflowParam":{"name":"kid","workflowDefinition":{"name":"kid","version":1,
	    "tasks":[{"name":"gate","taskReferenceName":"gate","type":"WAIT"}],"outputParameters":{"v":"x"}}}}]}`)
	var child *engine.Workflow
	testutil.Eventually(t, 20*time.Second, 10*time.Millisecond, func() error {
		p, err := e.State(ctx, parent)
		if err != nil {
			return err
		}
		if child, err = e.State(ctx, p.LatestByRef("sub").SubWorkflowID); err != nil || child == nil {
			return fmt.Errorf("the child has not started: %v", err)
		}
		return nil
	})
	gate := child.LatestByRef("gate")
	if _, err := e.Submit(ctx, child.ID, engine.Result{Result: conductor.TaskResult{TaskID: gate.ID, WorkflowInstanceID: child.ID,
		Status: conductor.TaskCompleted}}, Meta{}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 20*time.Second, 10*time.Millisecond, func() error {
		p, err := e.State(ctx, parent)
		if err != nil {
			return err
		}
		if sub := p.LatestByRef("sub"); sub.Status != conductor.TaskCompleted || sub.Output["v"] != "opened" {
			return fmt.Errorf("the parent's task is %s with output %v", sub.Status, sub.Output)
		}
		return nil
	})
}

// A parent whose child was never started (an engine died between the
// parent's append and the start) gets it started by recovery: the
// reconcile of a waiting SUB_WORKFLOW starts its child, and one that
// exists reports instead.
func TestLostChildStartIsRecovered(t *testing.T) {
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, 30*time.Second)
	e := startExecutor(t, l, nothingScheduled{}, Config{})
	const parent = "wf-lost-child"
	def := &conductor.WorkflowDef{}
	if err := conductor.Unmarshal([]byte(`{"name":"parent","version":1,"tasks":[{"name":"sub","taskReferenceName":"sub","type":"SUB_WORKFLOW",
	  "subWorkflowParam":{"name":"kid","workflowDefinition":{"name":"kid","version":1,"tasks":[{"name":"gate","taskReferenceName":"gate","type":"WAIT"}]}}}]}`), def); err != nil {
		t.Fatal(err)
	}
	// The parent's start is appended; its effects (the child's start) are
	// not performed.
	now := time.Now()
	dec, err := engine.Decide(engine.Input{Trigger: engine.Start{WorkflowID: parent, Def: def}, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	envs, err := envelopes(dec.Events, &job{wfID: parent, meta: Meta{RequestID: "lost"}}, 0, now, l.MaxRecordBytes())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(ctx, subject(parent), envs, 0); err != nil {
		t.Fatal(err)
	}
	child := dec.State.LatestByRef("sub").SubWorkflowID
	for range 2 { // the second finds the child and changes nothing
		if _, err := e.Submit(ctx, parent, engine.Reconcile{}, Meta{}); err != nil {
			t.Fatal(err)
		}
		testutil.Eventually(t, 20*time.Second, 10*time.Millisecond, func() error {
			w, err := e.State(ctx, child)
			if err != nil || w == nil || w.Status != conductor.WorkflowRunning {
				return fmt.Errorf("the child has not started: %v", err)
			}
			return nil
		})
	}
	recs, err := l.ReadSubject(ctx, subject(child), 0)
	if err != nil || len(recs) != 1 {
		t.Fatalf("the child's log has %d records (%v), want its start only", len(recs), err)
	}
}

// takeOver sends a take of wf's only task as a worker over NATS and
// returns the reply.
func takeOver(ctx context.Context, t *testing.T, l *eventlog.Log, e *Executor, wfID string) workers.TakeReply {
	t.Helper()
	w, err := e.State(ctx, wfID)
	if err != nil || w == nil || len(w.Tasks) == 0 {
		t.Fatalf("workflow %s: %v", wfID, err)
	}
	body, _ := json.Marshal(workers.TakeRequest{TaskID: w.Tasks[0].ID, WorkflowInstanceID: wfID, WorkerID: "w1"})
	m, err := l.Conn().RequestWithContext(ctx, workers.TakeSubject(w.Tasks[0].Name, ""), body)
	if err != nil {
		t.Fatalf("take: %v", err)
	}
	var reply workers.TakeReply
	if err := json.Unmarshal(m.Data, &reply); err != nil {
		t.Fatal(err)
	}
	return reply
}

// Worker requests have slots of their own: effects holding every effect
// slot (system tasks may, for minutes) do not hold up a take.
func TestTakeDoesNotWaitForEffectSlots(t *testing.T) {
	l := testutil.OpenLog(t, "")
	e := startExecutor(t, l, nothingScheduled{}, Config{Shards: 1, EffectConcurrency: 2})
	ctx := testutil.Context(t, 30*time.Second)
	startInline(ctx, t, e, "wf-take", `{"name":"take_flow","tasks":[{"name":"take_task","taskReferenceName":"t"}]}`)
	for range cap(e.sem) {
		e.sem <- struct{}{}
	}
	defer func() {
		for range cap(e.sem) {
			<-e.sem
		}
	}()
	reqCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if reply := takeOver(reqCtx, t, l, e, "wf-take"); reply.Error != nil || reply.Task == nil {
		t.Fatalf("take while effect slots are busy: %+v", reply.Error)
	}
}

// System tasks have slots of their own: slow calls holding every one of
// them (three hundred HTTP calls to a slow service) hold up neither the
// dispatch of other tasks nor a decision's other effects.
func TestDispatchDoesNotWaitForSystemTaskSlots(t *testing.T) {
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, 30*time.Second)
	e := New(l, noDefinitions{}, nothingScheduled{}, Config{Logger: testutil.Logger(t), Shards: 1, EffectConcurrency: 2})
	e.RegisterSystemTask(conductor.TaskTypeInline, completes{})
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Stop)
	for range cap(e.systemSem) {
		e.systemSem <- struct{}{} // as slow system tasks would
	}
	defer func() {
		for range cap(e.systemSem) {
			<-e.systemSem
		}
	}()
	// The script's branch comes first: its effect too.
	startInline(ctx, t, e, "wf-dispatch", `{"name":"dispatch_flow","tasks":[{"name":"fork","taskReferenceName":"fork","type":"FORK_JOIN","forkTasks":[
	  [{"name":"script","taskReferenceName":"script","type":"INLINE","inputParameters":{"evaluatorType":"javascript","expression":"1"}}],
	  [{"name":"dispatch_task","taskReferenceName":"t"}]]},
	 {"name":"join","taskReferenceName":"join","type":"JOIN","joinOn":["script","t"]}]}`)
	stream, err := l.JetStream().Stream(ctx, eventlog.Dispatch.Name)
	if err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 20*time.Second, 50*time.Millisecond, func() error {
		info, err := stream.Info(ctx)
		if err != nil {
			return err
		}
		if info.State.Msgs != 1 {
			return fmt.Errorf("%d tasks dispatched, want 1", info.State.Msgs)
		}
		return nil
	})
}

// completes is a system task that completes at once.
// Calls to other systems have slots of their own: HTTP tasks to a slow
// service holding every one of them hold up no INLINE task.
func TestScriptsDoNotWaitForCallSlots(t *testing.T) {
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, 30*time.Second)
	e := New(l, noDefinitions{}, nothingScheduled{}, Config{Logger: testutil.Logger(t), Shards: 1, EffectConcurrency: 2})
	e.RegisterSystemTask(conductor.TaskTypeInline, completes{})
	e.RegisterSystemTask(conductor.TaskTypeHTTP, completes{})
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Stop)
	for range cap(e.callSem) {
		e.callSem <- struct{}{} // as slow HTTP calls would
	}
	defer func() {
		for range cap(e.callSem) {
			<-e.callSem
		}
	}()
	startInline(ctx, t, e, "wf-script", `{"name":"script_flow","tasks":[
	  {"name":"script","taskReferenceName":"script","type":"INLINE","inputParameters":{"evaluatorType":"javascript","expression":"1"}}]}`)
	startInline(ctx, t, e, "wf-call", `{"name":"call_flow","tasks":[
	  {"name":"call","taskReferenceName":"call","type":"HTTP","inputParameters":{"http_request":{"uri":"http://127.0.0.1:9/"}}}]}`)
	testutil.Eventually(t, 20*time.Second, 20*time.Millisecond, func() error {
		if w, err := e.State(ctx, "wf-script"); err != nil || w.Status != conductor.WorkflowCompleted {
			return fmt.Errorf("the INLINE workflow is not completed: %v", err)
		}
		return nil
	})
	if w, err := e.State(ctx, "wf-call"); err != nil || w.Status != conductor.WorkflowRunning {
		t.Fatalf("the HTTP workflow ran without a call slot: %v %v", w.Status, err)
	}
}

type completes struct{}

func (completes) Execute(context.Context, *conductor.Task) conductor.TaskResult {
	return conductor.TaskResult{Status: conductor.TaskCompleted}
}

// A take that waited longer than StaleTake for a slot is not made: its
// worker may have given up, and the task would wait for its response
// timeout with an owner that never got it.
func TestStaleTakeIsNotMade(t *testing.T) {
	l := testutil.OpenLog(t, "")
	e := startExecutor(t, l, nothingScheduled{}, Config{Shards: 1, StaleTake: time.Nanosecond})
	ctx := testutil.Context(t, 30*time.Second)
	startInline(ctx, t, e, "wf-stale", `{"name":"stale_flow","tasks":[{"name":"stale_task","taskReferenceName":"t"}]}`)
	reply := takeOver(ctx, t, l, e, "wf-stale")
	if reply.Error == nil || reply.Error.Code != workers.CodeUnavailable || reply.Task != nil {
		t.Fatalf("stale take answered %+v %+v, want unavailable", reply.Task, reply.Error)
	}
	if w, err := e.State(ctx, "wf-stale"); err != nil || w.Tasks[0].Status != conductor.TaskScheduled {
		t.Fatalf("task after a stale take: %+v %v", w.Tasks[0], err)
	}
}
