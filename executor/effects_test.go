package executor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/workers"
)

// bigOutput is a system task whose output is size bytes: more than the
// log takes in one record.
type bigOutput struct {
	size int
	runs atomic.Int32
}

func (b *bigOutput) Execute(context.Context, *conductor.Task) conductor.TaskResult {
	b.runs.Add(1)
	return conductor.TaskResult{Status: conductor.TaskCompleted, OutputData: map[string]any{"blob": strings.Repeat("x", b.size)}}
}

// A system task whose result the log refuses (here: too large an output)
// fails for good, saying why, instead of staying IN_PROGRESS until its
// lease expires and running again, every lease, forever.
func TestRefusedSystemResultFailsTheTask(t *testing.T) {
	ctx := testutil.Context(t, 60*time.Second)
	l := openSmallLog(t)

	var offset atomic.Int64 // how far the test moved the executor's clock
	now := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	e := New(l, noDefinitions{}, nothingScheduled{}, Config{Logger: testutil.Logger(t), Now: now})
	big := &bigOutput{size: 2 * smallRecord}
	e.RegisterSystemTask(conductor.TaskTypeInline, big) // as a huge INLINE output would
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Stop)

	const id = "wf-big-output"
	startInline(ctx, t, e, id, `{"name":"big_output","version":1,"tasks":[{"name":"big","taskReferenceName":"big","type":"INLINE",
	  "inputParameters":{"evaluatorType":"javascript","expression":"(function(){ return 1; })()"}}]}`)
	var task *engine.Task
	testutil.Eventually(t, 20*time.Second, 20*time.Millisecond, func() error {
		w, err := e.State(ctx, id)
		if err != nil {
			return err
		}
		if task = w.LatestByRef("big"); task.Status != conductor.TaskFailedWithTerminalError {
			return fmt.Errorf("the task is %s (%q), ran %d times", task.Status, task.Reason, big.runs.Load())
		}
		return nil
	})
	if !strings.Contains(task.Reason, "refused the result") || !strings.Contains(task.Reason, "too large") {
		t.Fatalf("the task failed with reason %q, want one saying the result was refused as too large", task.Reason)
	}
	if len(task.Output) != 0 {
		t.Fatalf("the failed task has output %d keys, want none", len(task.Output))
	}

	// Long after the lease, the task is not run again.
	offset.Store(int64(2 * engine.SystemTaskLease))
	out, err := e.Submit(ctx, id, engine.Tick{}, Meta{})
	if err != nil {
		t.Fatal(err)
	}
	if got := out.State.LatestByRef("big").Status; got != conductor.TaskFailedWithTerminalError || out.State.Status != conductor.WorkflowFailed {
		t.Fatalf("after the lease: task %s, workflow %s", got, out.State.Status)
	}
	if n := big.runs.Load(); n != 1 {
		t.Fatalf("the system task ran %d times, want once", n)
	}
}

// missingDefinitions stores no workflow definition, and answers as the
// metadata store does: not found. It counts the lookups of each name.
type missingDefinitions struct {
	noDefinitions
	lookups atomic.Int32
}

func (d *missingDefinitions) LookupWorkflowDef(_ context.Context, name string, _ *int) (*conductor.WorkflowDef, error) {
	d.lookups.Add(1)
	return nil, fault.NotFound("No such workflow found by name: %s", name)
}

// A failure workflow that cannot start (a typo in failureWorkflow) is given
// up on, not retried: the retries held an effect slot for the effect's
// whole timeout, and with all slots so held no task was dispatched.
func TestFailureWorkflowThatCannotStartFreesItsSlot(t *testing.T) {
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, 60*time.Second)
	defs := &missingDefinitions{}
	e := New(l, defs, nothingScheduled{}, Config{Logger: testutil.Logger(t), EffectConcurrency: 1})
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Stop)

	const failing = "wf-failing"
	startInline(ctx, t, e, failing, `{"name":"failing","version":1,"failureWorkflow":"missing_fw",
	  "tasks":[{"name":"gate","taskReferenceName":"gate","type":"WAIT"}]}`)
	if _, err := e.Submit(ctx, failing, engine.Terminate{Reason: "stopped by the test", TriggerFailureWorkflow: true}, Meta{}); err != nil {
		t.Fatal(err)
	}
	// The failure workflow's start has been tried, in the only slot.
	testutil.Eventually(t, 20*time.Second, 10*time.Millisecond, func() error {
		if defs.lookups.Load() == 0 {
			return errors.New("the failure workflow's start was not tried")
		}
		return nil
	})

	const id = "wf-after-failure"
	startInline(ctx, t, e, id, `{"name":"after_failure","version":1,"tasks":[{"name":"after_failure_task","taskReferenceName":"t"}]}`)
	stream, err := l.JetStream().Stream(ctx, eventlog.Dispatch.Name)
	if err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 20*time.Second, 50*time.Millisecond, func() error {
		_, err := stream.GetLastMsgForSubject(ctx, workers.DispatchSubject("after_failure_task", ""))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return fmt.Errorf("the task was not dispatched (%d lookups of the failure workflow)", defs.lookups.Load())
		}
		return err
	})
}

// A child whose start was under way when its parent was terminated (its
// order to end the child found no child yet) does not start, instead of
// running with nobody to report to. A child its parent waits for runs.
func TestChildOfAParentThatMovedOnIsTerminated(t *testing.T) {
	t.Parallel()
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, 60*time.Second)
	e := startExecutor(t, l, nothingScheduled{}, Config{})
	startInline(ctx, t, e, "parent", `{"name":"parent","version":1,"tasks":[
	  {"name":"sub","taskReferenceName":"sub","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"child","workflowDefinition":
	    {"name":"child","version":1,"tasks":[{"name":"hold","taskReferenceName":"hold","type":"WAIT"}]}}}]}`)
	var waited *engine.Task
	testutil.Eventually(t, 20*time.Second, 10*time.Millisecond, func() error {
		p, err := e.State(ctx, "parent")
		if err != nil {
			return err
		}
		if waited = p.LatestByRef("sub"); waited == nil || waited.SubWorkflowID == "" {
			return errors.New("the sub-workflow task has no child yet")
		}
		return nil
	})
	testutil.Eventually(t, 20*time.Second, 10*time.Millisecond, func() error {
		if c, err := e.State(ctx, waited.SubWorkflowID); err != nil || c == nil || c.Status != conductor.WorkflowRunning {
			return fmt.Errorf("the waited-for child: %v, %v", c, err)
		}
		return nil
	})

	if _, err := e.Submit(ctx, "parent", engine.Terminate{Reason: "stopped by the test"}, Meta{}); err != nil {
		t.Fatal(err)
	}
	// The start of a child the parent's decision asked for before it ended.
	def, _ := json.Marshal(mustDef(t, `{"name":"late_child","version":1,"tasks":[{"name":"hold","taskReferenceName":"hold","type":"WAIT"}]}`))
	late := engine.StartWorkflow{WorkflowID: "late-child", Name: "late_child", Def: def, From: "parent",
		ParentWorkflowID: "parent", ParentWorkflowTaskID: waited.ID}
	if err := e.startWorkflowEffect(ctx, late); err != nil {
		t.Fatal(err)
	}
	// Its parent has ended: it does not start (one that started
	// meanwhile is terminated as soon as it exists).
	c, err := e.State(ctx, "late-child")
	if err != nil || c != nil {
		t.Fatalf("the late child: %+v, %v", c, err)
	}
}

// blocks is a system task that runs until release is closed.
type blocks struct {
	running chan struct{}
	release chan struct{}
}

func (b blocks) Execute(context.Context, *conductor.Task) conductor.TaskResult {
	close(b.running)
	<-b.release
	return conductor.TaskResult{Status: conductor.TaskCompleted, OutputData: map[string]any{"done": true}}
}

// Drain lets a system task under way (an HTTP call) finish and report
// before a Stop: a graceful restart leaves no task to wait out its
// five-minute lease and run again.
func TestStopLetsSystemTasksReport(t *testing.T) {
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, 30*time.Second)
	e := New(l, noDefinitions{}, nothingScheduled{}, Config{Logger: testutil.Logger(t)})
	b := blocks{running: make(chan struct{}), release: make(chan struct{})}
	e.RegisterSystemTask(conductor.TaskTypeHTTP, b)
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	startInline(ctx, t, e, "wf-stop", `{"name":"stop_flow","tasks":[
	  {"name":"call","taskReferenceName":"call","type":"HTTP","inputParameters":{"http_request":{"uri":"http://127.0.0.1:9/"}}}]}`)
	<-b.running
	stopped := make(chan struct{})
	go func() {
		e.Drain(ctx)
		e.Stop()
		close(stopped)
	}()
	testutil.Eventually(t, 20*time.Second, time.Millisecond, func() error {
		e.lifeMu.Lock()
		defer e.lifeMu.Unlock()
		if !e.draining {
			return errors.New("not draining yet")
		}
		return nil
	})
	close(b.release) // the call ends while the executor drains
	<-stopped

	after := startExecutor(t, l, nothingScheduled{}, Config{})
	w, err := after.State(ctx, "wf-stop")
	if err != nil || w.Status != conductor.WorkflowCompleted || w.Tasks[0].Output["done"] != true {
		t.Fatalf("after a stop during its call the workflow is %v (%v), want completed with the call's output", w.Status, err)
	}
}

// Nothing starts under an ancestor that ended while the workflow below it
// on the way was part of its tree: a workflow that forks copies of itself
// stops growing as soon as its root is terminated, not one level at a
// time. A workflow started under the ended one afterwards (an operator's
// doing) starts its own children.
func TestNothingStartsUnderAnEndedAncestor(t *testing.T) {
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, 30*time.Second)
	var mu sync.Mutex
	clock := time.Now()
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	tick := func() { mu.Lock(); clock = clock.Add(time.Second); mu.Unlock() }
	e := startExecutor(t, l, nothingScheduled{}, Config{Now: now})
	const waits = `{"name":"tree","tasks":[{"name":"w","taskReferenceName":"w","type":"WAIT"}]}`
	def := mustDef(t, waits)
	start := func(id, parent string) {
		t.Helper()
		if _, _, err := e.StartWorkflow(ctx, conductor.StartWorkflowRequest{Name: def.Name, WorkflowDef: def},
			StartOptions{WorkflowID: id, ParentWorkflowID: parent, ParentWorkflowTaskID: "task-of-" + parent}); err != nil {
			t.Fatal(err)
		}
		tick()
	}
	start("root", "")
	start("inside", "root")
	if _, err := e.Submit(ctx, "root", engine.Terminate{Reason: "stop the tree"}, Meta{}); err != nil {
		t.Fatal(err)
	}
	tick()
	start("revived", "root") // started under the ended root afterwards

	for _, tc := range []struct {
		parent  string
		refused bool
	}{
		{"inside", true},
		{"revived", false},
	} {
		child := "child-of-" + tc.parent
		err := e.startWorkflowEffect(ctx, engine.StartWorkflow{WorkflowID: child, Name: def.Name, Def: json.RawMessage(waits),
			ParentWorkflowID: tc.parent, ParentWorkflowTaskID: "task-of-" + tc.parent, Depth: 2})
		if err != nil {
			t.Fatal(err)
		}
		w, err := e.State(ctx, child)
		if err != nil {
			t.Fatal(err)
		}
		if started := w != nil; started == tc.refused {
			t.Fatalf("a child under %s started: %t, want %t", tc.parent, started, !tc.refused)
		}
	}
}

// waitsForCancel is a system task that runs until its context ends.
type waitsForCancel struct{ running, ended chan struct{} }

func (w waitsForCancel) Execute(ctx context.Context, _ *conductor.Task) conductor.TaskResult {
	close(w.running)
	<-ctx.Done()
	close(w.ended)
	return conductor.TaskResult{Status: conductor.TaskFailed, ReasonForIncompletion: ctx.Err().Error()}
}

// runUntilCanceled starts an executor, on clock now, whose INLINE tasks
// run until their context ends.
func runUntilCanceled(t *testing.T, now func() time.Time) (context.Context, *Executor, waitsForCancel) {
	t.Helper()
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, 30*time.Second)
	e := New(l, noDefinitions{}, nothingScheduled{}, Config{Logger: testutil.Logger(t), Now: now})
	run := waitsForCancel{running: make(chan struct{}), ended: make(chan struct{})}
	e.RegisterSystemTask(conductor.TaskTypeInline, run)
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Stop)
	return ctx, e, run
}

// A system task whose workflow ends while it runs (a script that spins
// for its whole budget, in a fork whose other branch failed) is stopped at
// once: it would hold a script slot, for nothing, while others wait.
func TestSystemTaskOfAnEndedWorkflowStops(t *testing.T) {
	ctx, e, run := runUntilCanceled(t, nil)
	startInline(ctx, t, e, "wf-spin", `{"name":"spin","tasks":[
	  {"name":"spin","taskReferenceName":"spin","type":"INLINE","inputParameters":{"evaluatorType":"javascript","expression":"while(true){}"}}]}`)
	<-run.running
	if _, err := e.Submit(ctx, "wf-spin", engine.Terminate{Reason: "stop"}, Meta{}); err != nil {
		t.Fatal(err)
	}
	<-run.ended // the test binary's timeout catches a run left to its budget
}

// A failure workflow starts without asking the failed run's creator, for
// whom its definition's author chose it; the author is asked again when it
// starts. One who has lost EXECUTE on it since (or no longer exists) starts
// nothing, where one who still may starts it as before.
func TestFailureWorkflowAsksItsChooserAgain(t *testing.T) {
	t.Parallel()
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, 60*time.Second)
	logger, logs := testutil.CapturingLogger()
	e := New(l, cleanupDefinitions{}, nothingScheduled{}, Config{Logger: logger})
	var mu sync.Mutex
	asked := map[string][]string{} // failure workflow start checks by principal
	e.SetStartCheck(func(_ context.Context, ps []string, req conductor.StartWorkflowRequest) (Pin, error) {
		mu.Lock()
		defer mu.Unlock()
		for _, p := range ps {
			asked[p] = append(asked[p], req.Name)
			if p == "lost_author" {
				return Pin{}, fmt.Errorf("%s may not EXECUTE WORKFLOW_DEF:%s: %w", p, req.Name, fault.ErrForbidden)
			}
		}
		return Pin{}, nil
	})
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Stop)
	for _, tc := range []struct {
		author string
		starts bool
	}{
		{"kept_author", true},
		{"lost_author", false},
	} {
		t.Run(tc.author, func(t *testing.T) {
			id := "wf-chosen-by-" + tc.author
			def := mustDef(t, `{"name":"chosen","version":1,"failureWorkflow":"cleanup","updatedBy":"`+tc.author+`",
			  "tasks":[{"name":"gate","taskReferenceName":"gate","type":"WAIT"}]}`)
			if _, _, err := e.StartWorkflow(ctx, conductor.StartWorkflowRequest{Name: def.Name, WorkflowDef: def},
				StartOptions{WorkflowID: id, CreatedBy: "runner"}); err != nil {
				t.Fatal(err)
			}
			fw := terminateIntoFailureWorkflow(ctx, t, e, id)
			if tc.starts {
				testutil.Eventually(t, 20*time.Second, 10*time.Millisecond, func() error {
					if w, err := e.State(ctx, fw); err != nil || w == nil {
						return fmt.Errorf("failure workflow %s not started: %v", fw, err)
					}
					return nil
				})
			} else {
				testutil.Eventually(t, 20*time.Second, 10*time.Millisecond, func() error {
					if !strings.Contains(logs.String(), "failure workflow could not start") || !strings.Contains(logs.String(), id) {
						return errors.New("the refused failure workflow's start is not logged yet")
					}
					return nil
				})
				if w, err := e.State(ctx, fw); err != nil || w != nil {
					t.Fatalf("failure workflow started for an author who lost the right: %v %v", w, err)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if len(asked[tc.author]) != 1 || asked[tc.author][0] != "cleanup" {
				t.Fatalf("the author was asked %v", asked)
			}
		})
	}
	mu.Lock()
	defer mu.Unlock()
	if len(asked["runner"]) != 0 {
		t.Fatalf("the failed runs' creator was asked %v", asked["runner"])
	}
}

// A START_WORKFLOW whose workflow could not start fails without a
// workflowId in its output, as Conductor's: the id it was to have names no
// workflow, and a later task reading ${start.output.workflowId} would get
// a 404 for it.
func TestRefusedStartWorkflowNamesNoWorkflow(t *testing.T) {
	t.Parallel()
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, 60*time.Second)
	e := New(l, noDefinitions{}, nothingScheduled{}, Config{})
	e.SetStartCheck(func(_ context.Context, ps []string, req conductor.StartWorkflowRequest) (Pin, error) {
		return Pin{}, fmt.Errorf("%s may not EXECUTE WORKFLOW_DEF:%s: %w", ps[0], req.Name, fault.ErrForbidden)
	})
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Stop)
	def := mustDef(t, `{"name":"starter","version":1,"tasks":[{"name":"start","taskReferenceName":"start","type":"START_WORKFLOW",
	  "inputParameters":{"startWorkflow":{"name":"forbidden_child"}}}]}`)
	start := startTaskEnded(ctx, t, e, def, "wf-refused-start", "runner")
	if start.Status != conductor.TaskFailed || !strings.Contains(start.Reason, "could not start") {
		t.Fatalf("task %s %q, want it FAILED saying the workflow could not start", start.Status, start.Reason)
	}
	if id, ok := start.Output["workflowId"]; ok {
		t.Fatalf("the failed START_WORKFLOW's output names workflow %v, which never started: %v", id, start.Output)
	}
}

// startTaskEnded starts def, whose task "start" is a START_WORKFLOW, as
// workflow id created by creator, and returns that task once it has ended.
func startTaskEnded(ctx context.Context, t *testing.T, e *Executor, def *conductor.WorkflowDef, id, creator string) *engine.Task {
	t.Helper()
	if _, _, err := e.StartWorkflow(ctx, conductor.StartWorkflowRequest{Name: def.Name, WorkflowDef: def},
		StartOptions{WorkflowID: id, CreatedBy: creator}); err != nil {
		t.Fatal(err)
	}
	var start *engine.Task
	testutil.Eventually(t, 20*time.Second, 10*time.Millisecond, func() error {
		w, err := e.State(ctx, id)
		if err != nil || w == nil {
			return fmt.Errorf("workflow %s: %v", id, err)
		}
		if start = w.LatestByRef("start"); start == nil || !conductor.TaskTerminal(start.Status) {
			return fmt.Errorf("the START_WORKFLOW task is %+v, want it ended", start)
		}
		return nil
	})
	return start
}

// A child that ended as it started (a TERMINATE, before its parent was
// looked at) keeps how it ended when its parent no longer waits for it:
// terminated, a FAILED child read TERMINATED to whoever asked later, and
// a retried parent task waiting for it as the holder of its idempotency
// key (RETURN_EXISTING) was canceled, its parent TERMINATED.
func TestEndedChildOfAParentThatMovedOnKeepsItsEnd(t *testing.T) {
	t.Parallel()
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, 60*time.Second)
	e := startExecutor(t, l, nothingScheduled{}, Config{})
	// A parent that runs, waiting for no such child (as one that moved on
	// to a new child of its task does).
	startInline(ctx, t, e, "parent", `{"name":"parent","version":1,"tasks":[{"name":"hold","taskReferenceName":"hold","type":"WAIT"}]}`)
	def, _ := json.Marshal(mustDef(t, `{"name":"brief_child","version":1,"tasks":[{"name":"end","taskReferenceName":"end","type":"TERMINATE",
	  "inputParameters":{"terminationStatus":"FAILED","terminationReason":"broken"}}]}`))
	late := engine.StartWorkflow{WorkflowID: "brief-child", Name: "brief_child", Def: def, From: "parent",
		ParentWorkflowID: "parent", ParentWorkflowTaskID: "no-such-task"}
	if err := e.startWorkflowEffect(ctx, late); err != nil {
		t.Fatal(err)
	}
	c, err := e.State(ctx, "brief-child")
	if err != nil || c == nil {
		t.Fatalf("the child that ended as it started: %v, %v", c, err)
	}
	if c.Status != conductor.WorkflowFailed || c.Reason != "broken" {
		t.Fatalf("the child that ended as it started is %s (%q), want FAILED (broken)", c.Status, c.Reason)
	}
}

// A system task that runs past its task definition's timeoutSeconds (an
// HTTP call whose own timeouts are longer) is stopped by the tick that
// times it out: the task is no longer active, and the workflow is
// TIMED_OUT, not held until the run gives up or its lease expires.
func TestSystemTaskPastItsTimeoutStops(t *testing.T) {
	var offset atomic.Int64 // how far the test moved the executor's clock
	ctx, e, run := runUntilCanceled(t, func() time.Time { return time.Now().Add(time.Duration(offset.Load())) })
	startInline(ctx, t, e, "wf-overrun", `{"name":"overrun","tasks":[
	  {"name":"slow","taskReferenceName":"slow","type":"INLINE","inputParameters":{"evaluatorType":"javascript","expression":"1"},
	   "taskDefinition":{"name":"slow","timeoutSeconds":60,"timeoutPolicy":"TIME_OUT_WF","responseTimeoutSeconds":30}}]}`)
	<-run.running
	offset.Store(int64(61 * time.Second))
	if _, err := e.Submit(ctx, "wf-overrun", engine.Tick{}, Meta{}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-run.ended:
	case <-ctx.Done():
		t.Fatal("the run went on past its task's timeout")
	}
	w, err := e.State(ctx, "wf-overrun")
	if err != nil {
		t.Fatal(err)
	}
	if w.Status != conductor.WorkflowTimedOut || w.Tasks[0].Status != conductor.TaskTimedOut {
		t.Fatalf("workflow %s (%s), task %s", w.Status, w.Reason, w.Tasks[0].Status)
	}
}

// terminateIntoFailureWorkflow terminates workflow id, starting its
// failure workflow, and returns the failure workflow's id.
func terminateIntoFailureWorkflow(ctx context.Context, t *testing.T, e *Executor, id string) string {
	t.Helper()
	if _, err := e.Submit(ctx, id, engine.Terminate{Reason: "stopped by the test", TriggerFailureWorkflow: true}, Meta{}); err != nil {
		t.Fatal(err)
	}
	failed, err := e.State(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	fw, _ := failed.Output[engine.FailureWorkflowOutputKey].(string)
	if fw == "" {
		t.Fatalf("no failure workflow id in the output %v", failed.Output)
	}
	return fw
}

// rateLimitedFailureDefs holds failure workflow definitions by name.
type rateLimitedFailureDefs struct {
	noDefinitions
	defs map[string]string
}

func (d rateLimitedFailureDefs) LookupWorkflowDef(_ context.Context, name string, _ *int) (*conductor.WorkflowDef, error) {
	js, ok := d.defs[name]
	if !ok {
		return nil, fault.NotFound("workflow definition %s not found", name)
	}
	def := &conductor.WorkflowDef{}
	err := conductor.Unmarshal([]byte(js), def)
	return def, err
}

// A failure workflow's input and correlation id are the failed run's
// data (its view, reason and correlation id), where "***" is a value
// redacted (a variable set from a secret): its rate limit key may not
// read one, as a SUB_WORKFLOW's or START_WORKFLOW's child's may not. Such
// failure workflows started keyed "***" (or "c-***"), a line every
// failure workflow so keyed shared. A key read from plain data goes on.
func TestFailureWorkflowRateLimitKeyReadingARedactedValueIsRefused(t *testing.T) {
	t.Parallel()
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, 60*time.Second)
	logger, logs := testutil.CapturingLogger()
	fwDef := func(name, key string) string {
		return `{"name":"` + name + `","version":1,"rateLimitConfig":{"rateLimitKey":"` + key + `","concurrentExecLimit":1},
		  "tasks":[{"name":"fw_task","taskReferenceName":"f"}]}`
	}
	defs := rateLimitedFailureDefs{defs: map[string]string{
		"fw_var":   fwDef("fw_var", "${workflow.input.failedWorkflow.variables.v}"),
		"fw_text":  fwDef("fw_text", "t-${workflow.input.failedWorkflow.variables.v}"),
		"fw_corr":  fwDef("fw_corr", "${workflow.correlationId}"),
		"fw_plain": fwDef("fw_plain", "***-${workflow.input.failedWorkflow.variables.id}"),
	}}
	e := New(l, defs, nothingScheduled{}, Config{Logger: logger})
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Stop)
	for _, tc := range []struct {
		fw, corr string
		wantKey  string // "": refused
	}{
		{fw: "fw_var"},
		{fw: "fw_text"},
		{fw: "fw_corr", corr: "c-***"},
		{fw: "fw_plain", wantKey: "***-o-7"},
	} {
		t.Run(tc.fw, func(t *testing.T) {
			id := "wf-failing-into-" + tc.fw
			def := mustDef(t, `{"name":"failing_`+tc.fw+`","version":1,"failureWorkflow":"`+tc.fw+`",
			  "tasks":[{"name":"gate","taskReferenceName":"gate","type":"WAIT"}]}`)
			if _, _, err := e.StartWorkflow(ctx, conductor.StartWorkflowRequest{Name: def.Name, WorkflowDef: def, CorrelationID: tc.corr},
				StartOptions{WorkflowID: id, CreatedBy: "runner"}); err != nil {
				t.Fatal(err)
			}
			// What a SET_VARIABLE from a secret leaves in the state.
			if _, err := e.Submit(ctx, id, engine.SetVariables{Variables: map[string]any{"v": "***", "id": "o-7"}, By: "runner"}, Meta{}); err != nil {
				t.Fatal(err)
			}
			fw := terminateIntoFailureWorkflow(ctx, t, e, id)
			// Started, or its refusal logged: whichever comes first.
			var started *engine.Workflow
			refused := func() string {
				for _, line := range strings.Split(logs.String(), "\n") {
					if strings.Contains(line, "failure workflow could not start") && strings.Contains(line, id) {
						return line
					}
				}
				return ""
			}
			testutil.Eventually(t, 20*time.Second, 10*time.Millisecond, func() error {
				var err error
				if started, err = e.State(ctx, fw); err != nil || started != nil || refused() != "" {
					return err
				}
				return fmt.Errorf("failure workflow %s neither started nor refused", fw)
			})
			switch {
			case tc.wantKey == "" && started != nil:
				t.Fatalf("failure workflow started keyed %q, want refused", started.RateLimitKey)
			case tc.wantKey == "" && !strings.Contains(refused(), "rateLimitConfig.rateLimitKey"):
				t.Fatalf("refused without naming rateLimitConfig.rateLimitKey: %s", refused())
			case tc.wantKey != "" && (started == nil || started.RateLimitKey != tc.wantKey):
				t.Fatalf("failure workflow %+v, want one keyed %q", started, tc.wantKey)
			}
		})
	}
}
