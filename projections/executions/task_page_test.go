package executions_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/projections/executions"
	"github.com/flowvault/flowvault/projections/executions/query"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// pageWorkflows records the workflows the task page and task search tests
// read: a loop of hundreds of iterations (a few chunks of statuses), one
// whose tasks fail and are retried, a dynamic fork of hundreds of
// branches whose inputs hold _secrets, a loop that keeps its last
// iterations (tasks drop), one restarted after hundreds of tasks, one
// compacted, one with masked fields. It returns the records and, by
// name, each workflow's id.
func pageWorkflows(t *testing.T, seq *uint64) ([]eventlog.Record, map[string]string) {
	t.Helper()
	var recs []eventlog.Record
	ids := map[string]string{}
	add := func(name string, r *recorder) {
		recs = append(recs, r.recs...)
		ids[name] = r.id
	}
	start := func(def string, input map[string]any) *recorder {
		r := newRecorder(t, seq)
		r.decide(engine.Start{WorkflowID: r.id, Def: parseDef(t, def), Request: conductor.StartWorkflowRequest{Input: input}, CreatedBy: "someone"})
		return r
	}
	report := func(r *recorder, ref, status string, output map[string]any) {
		t.Helper()
		task := r.w.LatestByRef(ref)
		if task == nil {
			t.Fatalf("%s: no task %s: %s", r.id, ref, r.w.Status)
		}
		r.decide(engine.Take{TaskID: task.ID, WorkerID: "w", TaskType: task.Name})
		r.decide(engine.Result{Result: conductor.TaskResult{TaskID: task.ID, WorkflowInstanceID: r.id, Status: status, OutputData: output,
			ReasonForIncompletion: map[bool]string{true: "broken"}[status == conductor.TaskFailed]}})
	}

	loop := newRecorder(t, seq)
	loop.recs = decidedLoopRecords(t, 600, seq)
	ids["decided loop"] = loop.recs[0].Subject[len("fv.wf."):]
	recs = append(recs, loop.recs...)

	retried := start(`{"name":"retried","version":1,"tasks":[{"name":"loop","taskReferenceName":"loop","type":"DO_WHILE","items":"${workflow.input.items}",
	 "loopOver":[{"name":"step","taskReferenceName":"step","retryCount":2,"retryDelaySeconds":0,"inputParameters":{"i":"${loop.output.loopIndex}"}}]},
	 {"name":"step","taskReferenceName":"after"}]}`, map[string]any{"items": itemsOf(40)})
	for i := 1; i <= 40; i++ {
		ref := fmt.Sprintf("step__%d", i)
		if i%3 == 0 {
			report(retried, ref, conductor.TaskFailed, map[string]any{"try": int64(1)})
			retried.now = retried.now.Add(10 * time.Minute) // past the retry's delay
			retried.decide(engine.Tick{})
		}
		report(retried, ref, conductor.TaskCompleted, map[string]any{"n": int64(i), "_masked": "m"})
	}
	add("retried", retried)

	var branches []any
	for i := range 300 {
		branches = append(branches, map[string]any{"name": "step", "taskReferenceName": fmt.Sprintf("b%d", i),
			"inputParameters": map[string]any{"_secrets": map[string]any{"s": "v"}, "i": int64(i)}})
	}
	fork := start(`{"name":"dyn","version":1,"tasks":[
	 {"name":"fork","taskReferenceName":"fork","type":"FORK_JOIN_DYNAMIC","dynamicForkTasksParam":"tasks","inputParameters":{"tasks":"${workflow.input.tasks}"}},
	 {"name":"join","taskReferenceName":"join","type":"JOIN"},{"name":"step","taskReferenceName":"after"}]}`,
		map[string]any{"tasks": branches})
	for i := range 300 {
		if i%7 != 0 {
			report(fork, fmt.Sprintf("b%d", i), conductor.TaskCompleted, map[string]any{"i": int64(i)})
		}
	}
	add("dynamic fork", fork)

	kept := start(`{"name":"kept","version":1,"tasks":[{"name":"before","taskReferenceName":"before","type":"SET_VARIABLE","inputParameters":{"x":1}},
	 {"name":"loop","taskReferenceName":"loop","type":"DO_WHILE","items":"${workflow.input.items}","inputParameters":{"keepLastN":2},
	  "loopOver":[{"name":"step","taskReferenceName":"step"},{"name":"set","taskReferenceName":"set","type":"SET_VARIABLE","inputParameters":{"i":"${loop.output.loopIndex}"}}]},
	 {"name":"step","taskReferenceName":"after"}]}`, map[string]any{"items": itemsOf(300)})
	for i := 1; i <= 300; i++ {
		report(kept, fmt.Sprintf("step__%d", i), conductor.TaskCompleted, map[string]any{"n": int64(i)})
	}
	add("loop with keepLastN", kept)

	restarted := start(`{"name":"restarted","version":1,"tasks":[{"name":"step","taskReferenceName":"first"},
	 {"name":"loop","taskReferenceName":"loop","type":"DO_WHILE","items":"${workflow.input.items}",
	  "loopOver":[{"name":"set","taskReferenceName":"set","type":"SET_VARIABLE","inputParameters":{"last":"${loop.output.loopItem}"}}]},
	 {"name":"step","taskReferenceName":"after"}]}`, map[string]any{"items": itemsOf(520)})
	report(restarted, "first", conductor.TaskCompleted, nil)
	for !restarted.w.Terminal() && restarted.w.LatestByRef("after") == nil {
		restarted.decide(engine.Tick{})
	}
	restarted.decide(engine.Terminate{})
	restarted.decide(engine.Restart{})
	add("restarted", restarted)

	compacted := start(oneWait, nil)
	compacted.sealAndCompact()
	add("compacted", compacted)

	masked := start(`{"name":"masked","version":1,"maskedFields":["pw"],"outputParameters":{"pw":"${workflow.input.pw}"},"tasks":[
	 {"name":"step","taskReferenceName":"a","inputParameters":{"pw":"${workflow.input.pw}","_secrets":{"k":"v"},"_masked":{"m":"x"},"plain":"p"}},
	 {"name":"step","taskReferenceName":"b"}]}`, map[string]any{"pw": "hunter2", "_masked": "m"})
	report(masked, "a", conductor.TaskCompleted, map[string]any{"_masked": map[string]any{"o": int64(1)}, "v": int64(2)})
	add("masked", masked)
	return recs, ids
}

// storedPageWorkflows folds pageWorkflows into a store: the first half
// of the records by one projection, the rest by another, which loads
// what the first stored (as after a restart).
func storedPageWorkflows(t *testing.T) (*executions.Reader, map[string]string) {
	t.Helper()
	var seq uint64
	recs, ids := pageWorkflows(t, &seq)
	store := testutil.OpenStore(t)
	applyAll(t, store, executions.NewProjection(), recs[:len(recs)/2])
	applyAll(t, store, executions.NewProjection(), recs[len(recs)/2:])
	return executions.NewReader(store), ids
}

// statusIn is the status filter of GET /api/workflow/{id}/tasks.
func statusIn(statuses ...string) func(string) bool {
	return func(s string) bool {
		if len(statuses) == 0 {
			return true
		}
		for _, x := range statuses {
			if strings.EqualFold(x, s) {
				return true
			}
		}
		return false
	}
}

// A page of a workflow's tasks (GET /api/workflow/{id}/tasks) reads the
// workflow's head, its tasks' statuses and the page's tasks, and answers
// what the whole workflow does: the same counts by status, the same
// number of matching tasks, the same tasks, rendered with the head as
// with every task, masked alike, for each status filter and at every
// edge of the paging (none asked, past the end, across a chunk of
// statuses). Tasks retried, forked, dropped by keepLastN or a restart,
// compacted or masked change nothing, nor a projection that loads what
// another stored.
func TestWorkflowTaskPageAnswersAsTheWorkflow(t *testing.T) {
	reader, ids := storedPageWorkflows(t)
	ctx := context.Background()
	for name, id := range ids {
		t.Run(name, func(t *testing.T) {
			whole, err := reader.Workflow(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			n := len(whole.Tasks)
			wholeHead, _ := json.Marshal(whole.Conductor(false))
			wholeView := whole.TaskViews()
			for _, statuses := range [][]string{nil, {conductor.TaskCompleted}, {"in_progress", " FAILED "}, {conductor.TaskScheduled, conductor.TaskCanceled}, {"NOPE"}} {
				match := statusIn(statuses...)
				var matching []*engine.Task
				wantSummary := map[string]int64{}
				for _, task := range whole.Tasks {
					wantSummary[task.Status]++
					if match(task.Status) {
						matching = append(matching, task)
					}
				}
				for _, pg := range []struct{ start, count int }{
					{0, 15}, {0, 0}, {5, 3}, {n - 2, 15}, {n, 5}, {n + 100, 15}, {0, 5000}, {255, 2}, {256, 1}, {len(matching) - 1, 1},
				} {
					if pg.start < 0 {
						continue
					}
					head, summary, matched, page, err := reader.WorkflowTaskPage(ctx, id, match, pg.start, pg.count)
					if err != nil {
						t.Fatalf("%v from %d, %d: %v", statuses, pg.start, pg.count, err)
					}
					var want []*engine.Task
					for i := pg.start; i < len(matching) && i < pg.start+pg.count; i++ {
						want = append(want, matching[i])
					}
					what := fmt.Sprintf("%v from %d, %d", statuses, pg.start, pg.count)
					if !reflect.DeepEqual(summary, wantSummary) || matched != len(matching) {
						t.Errorf("%s: %v, %d match; the workflow: %v, %d", what, summary, matched, wantSummary, len(matching))
					}
					if head.Tasks != nil {
						t.Errorf("%s: the head holds %d tasks", what, len(head.Tasks))
					}
					if h, _ := json.Marshal(head.Conductor(false)); string(h) != string(wholeHead) {
						t.Errorf("%s: the head renders\n%s\nthe workflow\n%s", what, h, wholeHead)
					}
					if len(page) != len(want) {
						t.Fatalf("%s: %d tasks; the workflow's page holds %d", what, len(page), len(want))
					}
					keys := 3 + (n+255)/256
					view := head.TaskViews()
					for i, task := range page {
						if !reflect.DeepEqual(task, want[i]) {
							t.Errorf("%s: task %d read\n%+v\nthe workflow holds\n%+v", what, i, task, want[i])
						}
						if !task.ViewReadsOtherTasks() {
							got, _ := json.Marshal(view(task))
							wantJS, _ := json.Marshal(wholeView(want[i]))
							if string(got) != string(wantJS) {
								t.Errorf("%s: task %s renders\n%s\nwith the whole workflow\n%s", what, task.Ref, got, wantJS)
							}
						}
						keys += 1 + len(task.Output) // its output entries may be stored apart
					}
					if read, err := executions.PageKeysRead(reader, id, match, pg.start, pg.count); err != nil || read > keys {
						t.Errorf("%s: read %d keys (%v); want at most %d of %d tasks", what, read, err, keys, n)
					}
				}
			}
		})
	}
	if _, _, _, _, err := reader.WorkflowTaskPage(ctx, "nope", statusIn(), 0, 15); !errors.Is(err, fault.ErrNotFound) {
		t.Errorf("an unknown workflow: %v; want not found", err)
	}
}

// The scenarios hold what the tests claim: retried, forked, dropped
// tasks, more than a chunk of statuses.
func TestPageWorkflowsHoldWhatTheyClaim(t *testing.T) {
	reader, ids := storedPageWorkflows(t)
	ctx := context.Background()
	read := func(name string) *engine.Workflow {
		w, err := reader.Workflow(ctx, ids[name])
		if err != nil {
			t.Fatal(err)
		}
		return w
	}
	count := func(w *engine.Workflow, status string) (n int) {
		for _, t := range w.Tasks {
			if t.Status == status {
				n++
			}
		}
		return n
	}
	if w := read("decided loop"); len(w.Tasks) <= 2*256 {
		t.Errorf("decided loop: %d tasks", len(w.Tasks))
	}
	if w := read("retried"); count(w, conductor.TaskFailed) == 0 || w.Status != conductor.WorkflowRunning {
		t.Errorf("retried: %d failed, %s", count(w, conductor.TaskFailed), w.Status)
	}
	if w := read("dynamic fork"); count(w, conductor.TaskScheduled) == 0 || len(w.Tasks) < 300 {
		t.Errorf("dynamic fork: %d tasks, %d scheduled", len(w.Tasks), count(w, conductor.TaskScheduled))
	}
	if w := read("loop with keepLastN"); len(w.Tasks) > 20 {
		t.Errorf("loop with keepLastN kept %d tasks", len(w.Tasks))
	}
	if w := read("restarted"); len(w.Tasks) > 256 || len(w.Tasks) == 0 {
		t.Errorf("restarted: %d tasks", len(w.Tasks))
	}
}

// A task search finds and shows what it did when it read every task of
// the workflows it found tasks of (WholeTaskReads), whether its tasks are
// named by id (read alone, with their workflows' heads), found by the
// status index (read alone) or by their workflows (read whole): the same
// total, the same page, rendered alike, masked alike; and so do the
// workflow ids of a page (SearchTaskPage), of every task found
// (SearchTaskWorkflowIDs) and EachTask.
func TestTaskSearchAnswersAsTheWholeWorkflows(t *testing.T) {
	reader, ids := storedPageWorkflows(t)
	whole := executions.WholeTaskReads(reader)
	ctx := context.Background()
	wfs := map[string]*engine.Workflow{}
	for name, id := range ids {
		w, err := reader.Workflow(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		wfs[name] = w
	}
	task := func(name string, i int) string {
		tasks := wfs[name].Tasks
		return tasks[(i+len(tasks))%len(tasks)].ID
	}
	in := func(ids ...string) string { return `taskId IN (` + strings.Join(ids, ",") + `)` }
	searches := []query.Search{
		{Query: fmt.Sprintf("taskId=%q", task("decided loop", 300))},
		{Query: fmt.Sprintf("taskId='%s'", task("compacted", 0))},
		{Query: in(task("decided loop", 1), task("retried", 5), task("dynamic fork", 0), task("dynamic fork", 1), task("dynamic fork", -1),
			task("masked", 0), task("compacted", 0), task("decided loop", 1), task("loop with keepLastN", -1), task("restarted", 0))},
		{Query: in(task("dynamic fork", 3), task("retried", 7)) + ` AND status="COMPLETED"`},
		{Query: in(task("retried", 2), task("retried", 3), task("retried", 4)), Sort: []string{"status:ASC"}},
		{Query: fmt.Sprintf("taskId=%q", "nope")},
		{Query: `status="COMPLETED"`},
		{Query: `status="COMPLETED"`, Start: 590, Size: 30},
		{Query: `status IN (FAILED,SCHEDULED)`, Sort: []string{"taskType:DESC"}},
		{Query: `status="COMPLETED" AND workflowType="retried"`, Sort: []string{"taskRefName:ASC"}},
		{Query: `workflowType="dyn"`, Start: 100, Size: 40},
		{Query: fmt.Sprintf("workflowId=%q", ids["masked"])},
		{FreeText: "hunter2"},
		{FreeText: "b17"},
		{Query: `status="IN_PROGRESS"`, FreeText: "*"},
	}
	for _, upTo := range []int{0, 64} {
		restore := executions.ReadWholeUpTo(upTo)
		for _, s := range searches {
			if s.Size == 0 {
				s.Size = 100
			}
			compareSearch(t, fmt.Sprintf("%q free %q sort %v from %d, %d; whole up to %d tasks", s.Query, s.FreeText, s.Sort, s.Start, s.Size, upTo), reader, whole, s)
		}
		restore()
	}
}

// compareSearch compares the answers of reader's task searches s with
// whole's.
func compareSearch(t *testing.T, what string, reader, whole *executions.Reader, s query.Search) {
	t.Helper()
	ctx := context.Background()
	total, tasks, err := reader.SearchTasks(ctx, s)
	wantTotal, wantTasks, wantErr := whole.SearchTasks(ctx, s)
	if err != nil || wantErr != nil {
		t.Fatalf("%s: %v; whole: %v", what, err, wantErr)
	}
	got, _ := json.Marshal(tasks)
	want, _ := json.Marshal(wantTasks)
	if total != wantTotal || string(got) != string(want) {
		t.Errorf("%s: %d, %.2000s\nread whole: %d, %.2000s", what, total, got, wantTotal, want)
	}
	pageTotal, pageIDs, err := reader.SearchTaskPage(ctx, s)
	var wantIDs []string
	for _, task := range wantTasks {
		wantIDs = append(wantIDs, task.WorkflowInstanceID)
	}
	if err != nil || pageTotal != wantTotal || fmt.Sprint(pageIDs) != fmt.Sprint(wantIDs) {
		t.Errorf("%s: page of %d, %v (%v); the tasks' workflows: %d, %v", what, pageTotal, pageIDs, err, wantTotal, wantIDs)
	}
	allIDs, err := reader.SearchTaskWorkflowIDs(ctx, s)
	wantAll, wantErr := whole.SearchTaskWorkflowIDs(ctx, s)
	if err != nil || wantErr != nil || fmt.Sprint(allIDs) != fmt.Sprint(wantAll) {
		t.Errorf("%s: workflow ids %v (%v); read whole %v (%v)", what, allIDs, err, wantAll, wantErr)
	}
	each := func(r *executions.Reader) string {
		var out []*conductor.Task
		if err := r.EachTask(ctx, s, func(t *conductor.Task) bool { out = append(out, t); return true }); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		js, _ := json.Marshal(out)
		return string(js)
	}
	if got, want := each(reader), each(whole); got != want {
		t.Errorf("%s: each task\n%.2000s\nread whole\n%.2000s", what, got, want)
	}
}

// A task search by task id reads the tasks named and their workflows'
// heads, not every task of their workflows: a search for one iteration
// of a loop of 600 read the loop's 601 tasks.
func TestTaskSearchByIDReadsItsTasks(t *testing.T) {
	reader, ids := storedPageWorkflows(t)
	ctx := context.Background()
	loop, err := reader.Workflow(ctx, ids["decided loop"])
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []query.Search{
		{Query: fmt.Sprintf("taskId=%q", loop.Tasks[300].ID), Size: 10},
		{Query: fmt.Sprintf("taskId IN (%s,%s) AND status=COMPLETED", loop.Tasks[1].ID, loop.Tasks[len(loop.Tasks)-1].ID), Size: 10},
	} {
		keys, err := executions.TaskSearchKeysRead(reader, s)
		if err != nil {
			t.Fatal(err)
		}
		// The head, the definition, the input and each task (the last
		// one, the loop's, with its iterations' entries).
		wholeKeys, err := executions.TaskSearchKeysRead(executions.WholeTaskReads(reader), s)
		if err != nil {
			t.Fatal(err)
		}
		if keys > 3+2+len(loop.Tasks[0].Output) || wholeKeys < len(loop.Tasks) {
			t.Errorf("%q read %d keys of a workflow of %d tasks; read whole, %d", s.Query, keys, len(loop.Tasks), wholeKeys)
		}
	}
}
