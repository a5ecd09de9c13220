package executor

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// nested is a value n levels of objects deep.
func nested(n int) any {
	var v any = "bottom"
	for range n {
		v = map[string]any{"n": v}
	}
	return v
}

// A worker's result whose record the log cannot hold fails its task for
// good, without the output, saying why, and the report succeeds: refused,
// the task would wait for its response timeout and run again into the same
// refusal. The record counts what the result leads to: b's input built
// from a's output twice over (three times would be over the bound of b's
// evaluation, which fails b instead: see engine.Input.MaxRecordBytes).
func TestResultTheLogCannotHoldFailsTheTask(t *testing.T) {
	ctx := testutil.Context(t, 60*time.Second)
	l := openSmallLog(t)
	e := startExecutor(t, l, nothingScheduled{}, Config{})

	const def = `{"name":"refused_result","tasks":[
	  {"name":"refused_a","taskReferenceName":"a"},
	  {"name":"refused_b","taskReferenceName":"b","inputParameters":{"x":"${a.output.blob}","y":"${a.output.blob}"}}]}`
	tests := []struct {
		name   string
		output map[string]any
		want   string // the task's status
		reason string // in the task's reason when it failed
	}{
		{"fits", map[string]any{"blob": strings.Repeat("x", 1<<10)}, conductor.TaskCompleted, ""},
		{"output over the limit", map[string]any{"blob": strings.Repeat("x", 2*smallRecord)}, conductor.TaskFailedWithTerminalError, "too large"},
		{"next inputs over the limit", map[string]any{"blob": strings.Repeat("x", smallRecord/3)}, conductor.TaskFailedWithTerminalError, "too large"},
		// Refused as invalid, as Conductor's JSON parser refuses it: its
		// sender may send it flatter.
		{"output nested too deep", map[string]any{"blob": nested(300)}, conductor.TaskInProgress, ""},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := "wf-refused-" + string(rune('a'+i))
			startInline(ctx, t, e, id, def)
			err := completeA(ctx, t, l, e, id, tt.output)
			if refused := tt.want == conductor.TaskInProgress; refused != errors.Is(err, fault.ErrInvalid) || !refused && err != nil {
				t.Fatalf("report: %v", err)
			}
			w := mustState(t, e, id)
			a := w.LatestByRef("a")
			if a.Status != tt.want {
				t.Fatalf("task a is %s (%q), want %s", a.Status, a.Reason, tt.want)
			}
			if tt.want == conductor.TaskInProgress {
				return
			}
			if tt.reason == "" {
				if b := w.LatestByRef("b"); b == nil {
					t.Fatal("task b was not scheduled after a completed")
				}
				return
			}
			if !strings.Contains(a.Reason, "refused the result") || !strings.Contains(a.Reason, tt.reason) {
				t.Fatalf("task a failed with reason %q, want one saying the result was refused as %s", a.Reason, tt.reason)
			}
			if len(a.Output) != 0 || len(a.Logs) != 0 {
				t.Fatalf("the failed task kept %d output keys and %d log lines, want none", len(a.Output), len(a.Logs))
			}
			if w.Status != conductor.WorkflowFailed || w.LatestByRef("b") != nil {
				t.Fatalf("workflow %s, task b %v: want FAILED without b", w.Status, w.LatestByRef("b"))
			}
		})
	}
}

// smallRecord is the record limit of openSmallLog's logs.
const smallRecord = 16 << 10

// openSmallLog opens an event log whose records hold at most smallRecord
// bytes.
func openSmallLog(t *testing.T) *eventlog.Log {
	t.Helper()
	cfg := testutil.LogConfig(t.TempDir())
	cfg.MaxRecordBytes = smallRecord
	l, err := eventlog.Open(testutil.Context(t, 30*time.Second), cfg, eventlog.Options{Logger: testutil.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// completeA takes task a of workflow id over NATS, as worker w1, and
// reports it COMPLETED with output and a log line.
func completeA(ctx context.Context, t *testing.T, l *eventlog.Log, e *Executor, id string, output map[string]any) error {
	t.Helper()
	if reply := takeOver(ctx, t, l, e, id); reply.Error != nil || reply.Task == nil {
		t.Fatalf("take: %+v", reply)
	}
	res := conductor.TaskResult{TaskID: mustState(t, e, id).LatestByRef("a").ID, WorkflowInstanceID: id, WorkerID: "w1",
		Status: conductor.TaskCompleted, OutputData: output, Logs: []conductor.TaskExecLog{{Log: "done"}}}
	_, err := e.ReportResult(ctx, res, "refused_a", "w1")
	return err
}

// mustState is workflow id's state as e knows it.
func mustState(t *testing.T, e *Executor, id string) *engine.Workflow {
	t.Helper()
	w, err := e.State(testutil.Context(t, 10*time.Second), id)
	if err != nil || w == nil {
		t.Fatalf("workflow %s: %v", id, err)
	}
	return w
}

// A decision the log cannot hold that no result made (a timer's tick or a
// resume, each scheduling a fork of many branches, a child's end copying
// the child's large output into its task's output and twice into the next
// task's input) fails the workflow, saying why: tried again it would be
// refused again, for ever, and the workflow wait for good. (A task input
// alone over the record's bound fails at its evaluation, before.)
func TestDecisionTheLogCannotHoldFailsTheWorkflow(t *testing.T) {
	ctx := testutil.Context(t, 60*time.Second)
	l := openSmallLog(t)
	var offset atomic.Int64 // how far the test moved the executor's clock
	e := startExecutor(t, l, nothingScheduled{}, Config{Now: func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }})

	blob := strings.Repeat("x", smallRecord/3)
	branches, refs := make([]string, 150), make([]string, 150)
	for i := range branches {
		refs[i] = fmt.Sprintf(`"f%d"`, i)
		branches[i] = fmt.Sprintf(`[{"name":"refused_f","taskReferenceName":"f%d"}]`, i)
	}
	fork := `{"name":"fork","taskReferenceName":"fork","type":"FORK_JOIN","forkTasks":[` + strings.Join(branches, ",") + `]},
	  {"name":"join","taskReferenceName":"join","type":"JOIN","joinOn":[` + strings.Join(refs, ",") + `]}`
	complete := func(t *testing.T, id string) {
		t.Helper()
		if err := completeA(ctx, t, l, e, id, map[string]any{"blob": blob}); err != nil {
			t.Fatalf("report: %v", err)
		}
	}
	tests := []struct {
		name string
		def  string
		next string // the task the refused decision scheduled
		run  func(t *testing.T, id string)
	}{
		{"tick", `{"name":"refused_tick","tasks":[{"name":"refused_a","taskReferenceName":"a"},
		  {"name":"wait","taskReferenceName":"wait","type":"WAIT","inputParameters":{"duration":"1s"}},` + fork + `]}`, "f0",
			func(t *testing.T, id string) {
				complete(t, id)
				offset.Add(int64(time.Minute))
				if _, err := e.Submit(ctx, id, engine.Tick{}, Meta{}); err != nil {
					t.Fatalf("tick: %v", err)
				}
			}},
		{"resume", `{"name":"refused_resume","tasks":[{"name":"refused_a","taskReferenceName":"a"},` + fork + `]}`, "f0",
			func(t *testing.T, id string) {
				if _, err := e.Submit(ctx, id, engine.Pause{}, Meta{}); err != nil {
					t.Fatalf("pause: %v", err)
				}
				complete(t, id) // recorded: a paused workflow schedules nothing
				if _, err := e.Submit(ctx, id, engine.Resume{}, Meta{}); err != nil {
					t.Fatalf("resume: %v", err)
				}
			}},
		{"child's end", `{"name":"refused_parent","tasks":[{"name":"sub","taskReferenceName":"sub","type":"SUB_WORKFLOW",
		  "subWorkflowParam":{"name":"refused_child","workflowDefinition":{"name":"refused_child","tasks":[{"name":"refused_a","taskReferenceName":"a"}],
		    "outputParameters":{"blob":"${a.output.blob}"}}}},
		  {"name":"refused_b","taskReferenceName":"b","inputParameters":{"x":"${sub.output.blob}","y":"${sub.output.blob}"}}]}`, "b",
			func(t *testing.T, id string) {
				var child string
				testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() error {
					if child = mustState(t, e, id).LatestByRef("sub").SubWorkflowID; child == "" {
						return fmt.Errorf("no child yet")
					}
					if w, err := e.State(ctx, child); err != nil || w == nil {
						return fmt.Errorf("child %s: %v", child, err)
					}
					return nil
				})
				complete(t, child)
				testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() error {
					if w := mustState(t, e, id); !w.Terminal() {
						return fmt.Errorf("the parent is %s", w.Status)
					}
					return nil
				})
			}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := "wf-unrecordable-" + string(rune('a'+i))
			startInline(ctx, t, e, id, tt.def)
			tt.run(t, id)
			w := mustState(t, e, id)
			if w.Status != conductor.WorkflowFailed || !strings.Contains(w.Reason, "refused the workflow's next record") || !strings.Contains(w.Reason, "too large") {
				t.Fatalf("workflow %s (%q), want FAILED saying the log refused its record", w.Status, w.Reason)
			}
			if w.LatestByRef(tt.next) != nil || len(w.Output) != 0 {
				t.Fatalf("%s %v, output %d keys: want no %s, no output", tt.next, w.LatestByRef(tt.next), len(w.Output), tt.next)
			}
		})
	}
}

// A caller's request the log cannot hold for its own data (here a skip
// with an output too large) is refused, and the workflow stays as it was:
// the caller may send less. Only what moves a workflow on with the data
// it holds already falls back to failing it.
func TestRequestTheLogCannotHoldIsRefused(t *testing.T) {
	ctx := testutil.Context(t, 60*time.Second)
	l := openSmallLog(t)
	e := startExecutor(t, l, nothingScheduled{}, Config{})
	const id = "wf-refused-skip"
	startInline(ctx, t, e, id, `{"name":"refused_skip","tasks":[{"name":"refused_a","taskReferenceName":"a"},{"name":"refused_b","taskReferenceName":"b"}]}`)
	_, err := e.Submit(ctx, id, engine.SkipTask{Ref: "b", Output: map[string]any{"blob": strings.Repeat("x", 2*smallRecord)}}, Meta{})
	if !errors.Is(err, fault.ErrTooLarge) {
		t.Fatalf("skip with an output over the limit: %v, want too large", err)
	}
	if w := mustState(t, e, id); w.Status != conductor.WorkflowRunning || w.LatestByRef("a").Status != conductor.TaskScheduled {
		t.Fatalf("workflow %s (%q), a %s: want it RUNNING as before", w.Status, w.Reason, w.LatestByRef("a").Status)
	}
}

// A child whose start the log cannot hold fails its SUB_WORKFLOW task,
// saying why: retried, the start effect would hold its slot for ever and
// the parent wait.
func TestChildStartTheLogCannotHoldFailsItsTask(t *testing.T) {
	ctx := testutil.Context(t, 60*time.Second)
	l := openSmallLog(t)
	e := startExecutor(t, l, nothingScheduled{}, Config{})
	const id = "wf-big-child"
	// The child's definition and its input fit in the parent's records
	// apart; together, in the child's start, they do not.
	pad := strings.Repeat("d", 10<<10)
	startInline(ctx, t, e, id, `{"name":"big_child_parent","tasks":[{"name":"refused_a","taskReferenceName":"a"},
	  {"name":"sub","taskReferenceName":"sub","type":"SUB_WORKFLOW","inputParameters":{"x":"${a.output.blob}"},
	   "subWorkflowParam":{"name":"big_child","workflowDefinition":{"name":"big_child","description":"`+pad+`",
	     "tasks":[{"name":"w","taskReferenceName":"w","type":"WAIT"}]}}}]}`)
	if err := completeA(ctx, t, l, e, id, map[string]any{"blob": strings.Repeat("x", 6<<10)}); err != nil {
		t.Fatalf("report: %v", err)
	}
	testutil.Eventually(t, 20*time.Second, 10*time.Millisecond, func() error {
		w := mustState(t, e, id)
		if sub := w.LatestByRef("sub"); sub == nil || sub.Status != conductor.TaskFailed || !strings.Contains(sub.Reason, "too large") {
			return fmt.Errorf("workflow %s, sub %v: want sub FAILED as too large", w.Status, sub != nil && sub.Status == conductor.TaskFailed)
		}
		return nil
	})
}

// A decision's events are refused as soon as those encoded are over the
// log's limit, the rest never encoded: a fork whose hundreds of branches
// each copy a large input would otherwise take gigabytes to be refused.
// (Here the last event cannot be encoded at all: reaching it would fail
// otherwise.)
func TestEnvelopesStopAtTheLimit(t *testing.T) {
	big := &schemas.TaskUpdated{TaskID: "t", Status: conductor.TaskCompleted, Output: map[string]any{"blob": strings.Repeat("x", 2048)}}
	unencodable := &schemas.TaskUpdated{TaskID: "t", Status: conductor.TaskCompleted, Output: map[string]any{"c": make(chan int)}}
	if _, err := envelopes([]schemas.Event{big, big, unencodable}, &job{wfID: "wf-big"}, 0, time.Now(), 3000); !errors.Is(err, eventlog.ErrTooLarge) {
		t.Fatalf("events over the limit: %v, want too large", err)
	}
	if _, err := envelopes([]schemas.Event{big}, &job{wfID: "wf-big"}, 0, time.Now(), 3000); err != nil {
		t.Fatalf("events under the limit: %v", err)
	}
}

// A state update (a result with variables, Orkes's updateState) the log
// cannot hold is refused whole, whichever part is large, and the workflow
// stays as it was: failing the task without the variables, as a worker's
// result alone would, would apply half of the update.
func TestStateUpdateTheLogCannotHoldIsRefused(t *testing.T) {
	ctx := testutil.Context(t, 60*time.Second)
	l := openSmallLog(t)
	e := startExecutor(t, l, nothingScheduled{}, Config{})
	blob := strings.Repeat("x", 2*smallRecord)
	tests := []struct {
		name      string
		variables map[string]any
		output    map[string]any
	}{
		{"variables over the limit", map[string]any{"blob": blob}, map[string]any{"o": 1}},
		{"output over the limit", map[string]any{"v": 1}, map[string]any{"blob": blob}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := fmt.Sprintf("wf-refused-state-%d", i)
			startInline(ctx, t, e, id, `{"name":"refused_state","tasks":[{"name":"refused_a","taskReferenceName":"a"},{"name":"refused_b","taskReferenceName":"b"}]}`)
			res := conductor.TaskResult{TaskID: mustState(t, e, id).LatestByRef("a").ID, WorkflowInstanceID: id,
				Status: conductor.TaskCompleted, OutputData: tt.output}
			_, err := e.Submit(ctx, id, engine.Result{Result: res, By: "user:op", Variables: tt.variables}, Meta{})
			if !errors.Is(err, fault.ErrTooLarge) {
				t.Fatalf("state update: %v, want too large", err)
			}
			w := mustState(t, e, id)
			if a := w.LatestByRef("a"); w.Status != conductor.WorkflowRunning || a.Status != conductor.TaskScheduled || len(w.Variables) != 0 {
				t.Fatalf("workflow %s (%q), a %s (%q), variables %d: want it RUNNING as before, without variables",
					w.Status, w.Reason, a.Status, a.Reason, len(w.Variables))
			}
		})
	}
}
