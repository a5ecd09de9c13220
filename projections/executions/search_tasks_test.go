package executions_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/projections/executions"
	"github.com/flowvault/flowvault/projections/executions/query"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// A task search queries and sorts by executionTime and queueWaitTime, as
// Conductor's task index holds them (TaskSummary's): each as the task's
// summary shows it, 0 until the task started (waited) or ended (ran).
func TestTaskSearchByExecutionAndQueueWaitTime(t *testing.T) {
	f := newFixture(t)
	def := parseDef(t, `{"name":"timed","tasks":[{"name":"timed_task","taskReferenceName":"a"}]}`)
	// run starts a workflow whose task waits wait, then runs for run
	// (never taken for a wait < 0, not ended for a run < 0). Each
	// decision adds 1 ms: the task waits wait+1 ms and runs run+1 ms.
	run := func(wait, run time.Duration) string {
		id := uuid.NewString()
		f.decide(id, engine.Start{WorkflowID: id, Def: def})
		if wait < 0 {
			return id
		}
		task := f.states[id].Tasks[0].ID
		f.now = f.now.Add(wait)
		f.decide(id, engine.Take{TaskID: task, WorkerID: "w"})
		if run < 0 {
			return id
		}
		f.now = f.now.Add(run)
		f.decide(id, engine.Result{Result: conductor.TaskResult{TaskID: task, WorkflowInstanceID: id, Status: conductor.TaskCompleted}})
		return id
	}
	ran := run(100*time.Millisecond, time.Second)         // waited 101, ran 1001
	waitedLong := run(2*time.Second, 10*time.Millisecond) // waited 2001, ran 11
	running := run(500*time.Millisecond, -1)              // waited 501, runs
	queued := run(-1, -1)                                 // waits

	for _, tc := range []struct {
		query, sort string
		want        []string
	}{
		{"queueWaitTime > 1000", "", []string{waitedLong}},
		{"queueWaitTime BETWEEN 101 AND 501", "", []string{running, ran}},
		{"queueWaitTime = 0", "", []string{queued}},
		{"executionTime > 1000", "", []string{ran}},
		{"executionTime = 11", "", []string{waitedLong}},
		{"executionTime = 0", "", []string{queued, running}},
		{"", "queueWaitTime:DESC", []string{waitedLong, running, ran, queued}},
		{"", "executionTime:ASC", []string{queued, running, waitedLong, ran}}, // ties newest first
		{"executionTime > 0", "queueWaitTime:ASC", []string{ran, waitedLong}},
	} {
		total, tasks, err := f.reader.SearchTasks(context.Background(), query.Search{Query: tc.query, Sort: []string{tc.sort}, Size: 10})
		if err != nil {
			t.Fatalf("query %q sort %q: %v", tc.query, tc.sort, err)
		}
		var got []string
		for _, task := range tasks {
			got = append(got, task.WorkflowInstanceID)
		}
		if total != len(tc.want) || !slices.Equal(got, tc.want) {
			t.Fatalf("query %q sort %q found %d: %v, want %v", tc.query, tc.sort, total, got, tc.want)
		}
	}
}

// IS NULL finds a task whose index document lacks the field, as it finds
// a workflow: an unset text; a number is never null, 0 or not (retryCount
// IS NULL found every first try), nor is a time: one the task has not set
// is the epoch, as Conductor's TaskSummary indexes it (1970), so
// endTime < t finds the tasks still running and they sort first when
// ascending (they matched nothing but IS NULL, != and NOT IN, and sorted
// last).
func TestTaskIsNullFindsTheTasksWhoseIndexLacksTheField(t *testing.T) {
	f := newFixture(t)
	def := parseDef(t, `{"name":"nulls","tasks":[{"name":"rq","taskReferenceName":"a","taskDefinition":{"name":"rq","retryCount":1,"retryDelaySeconds":0}}]}`)
	wf := uuid.NewString()
	f.decide(wf, engine.Start{WorkflowID: wf, Def: def,
		Request: conductor.StartWorkflowRequest{CorrelationID: "c-1", Priority: 7, TaskToDomain: map[string]string{"rq": "d"}}})
	failed := f.states[wf].Tasks[0].ID
	f.decide(wf, engine.Take{TaskID: failed, WorkerID: "w-1"})
	f.decide(wf, engine.Result{Result: conductor.TaskResult{TaskID: failed, WorkflowInstanceID: wf, Status: conductor.TaskFailed, ReasonForIncompletion: "boom"}})
	if n := len(f.states[wf].Tasks); n != 2 {
		t.Fatalf("%d tasks, want the failed one and its retry", n)
	}
	retry := f.states[wf].Tasks[1].ID
	bareWf := uuid.NewString()
	f.decide(bareWf, engine.Start{WorkflowID: bareWf, Def: def})
	bare := f.states[bareWf].Tasks[0].ID
	ids := map[string]string{"failed": failed, "retry": retry, "bare": bare}
	all := []string{"bare", "retry", "failed"} // newest scheduled first, as a search lists them

	lacking := map[string][]string{ // field: the tasks IS NULL finds
		"taskId": nil, "taskType": nil, "taskDefName": nil, "taskRefName": nil, "referenceTaskName": nil,
		"taskReferenceName": nil, "status": nil, "workflowId": nil, "workflowType": nil,
		"retryCount": nil, "workflowPriority": nil, "executionTime": nil, "queueWaitTime": nil,
		"scheduledTime": nil, "updateTime": nil,
		"correlationId": {"bare"}, "domain": {"bare"},
		"workerId": {"retry", "bare"}, "reasonForIncompletion": {"retry", "bare"},
		"startTime": nil, "endTime": nil,
	}
	// found names the tasks q finds, in the order sort gives them.
	found := func(q, sort string) []string {
		_, tasks, err := f.reader.SearchTasks(context.Background(), query.Search{Query: q, Sort: []string{sort}, Size: 10})
		if err != nil {
			t.Fatalf("%q: %v", q, err)
		}
		got := []string{}
		for _, task := range tasks {
			for name, id := range ids {
				if task.TaskID == id {
					got = append(got, name)
				}
			}
		}
		return got
	}
	checkNulls(t, executions.TaskFields, lacking, all, func(q string) []string { return found(q, "") })
	for _, tc := range []struct {
		q, sort string
		want    []string
	}{
		{"retryCount = 0", "", []string{"bare", "failed"}}, // newest scheduled first
		{"retryCount = 1", "", []string{"retry"}},
		{"workflowPriority = 0", "", []string{"bare"}},
		{"endTime < 9000000000000", "", []string{"bare", "retry", "failed"}},
		{"endTime > 0", "", []string{"failed"}},
		{"startTime = 0", "", []string{"bare", "retry"}},
		{"startTime >= 0", "", []string{"bare", "retry", "failed"}},
		{"startTime < 1970-01-02", "", []string{"bare", "retry"}},
		{"workerId != w-2", "", []string{"bare", "retry", "failed"}},
		{"", "endTime:ASC", []string{"bare", "retry", "failed"}}, // the unset first, newest first
		{"", "startTime:DESC", []string{"failed", "bare", "retry"}},
	} {
		if got := found(tc.q, tc.sort); !slices.Equal(got, tc.want) {
			t.Errorf("%q sorted %q = %v, want %v", tc.q, tc.sort, got, tc.want)
		}
	}
}

// startScheduling starts, one after the other, a workflow that schedules
// a task rq, one that schedules two in a fork, one that schedules one and
// is removed, and more that schedule one each: their ids, but the
// removed one's.
func (f *fixture) startScheduling(more int) (first, forked string, rest []string) {
	f.t.Helper()
	one := parseDef(f.t, `{"name":"one_rq","tasks":[{"name":"rq","taskReferenceName":"a"}]}`)
	two := parseDef(f.t, `{"name":"two_rq","tasks":[
	 {"name":"fork","taskReferenceName":"fork","type":"FORK_JOIN","forkTasks":[[{"name":"rq","taskReferenceName":"a"}],[{"name":"rq","taskReferenceName":"b"}]]},
	 {"name":"join","taskReferenceName":"join","type":"JOIN","joinOn":["a","b"]}]}`)
	start := func(def *conductor.WorkflowDef) string {
		id := uuid.NewString()
		f.decide(id, engine.Start{WorkflowID: id, Def: def})
		return id
	}
	first, forked = start(one), start(two)
	f.decide(start(one), engine.Remove{Terminate: true})
	for range more {
		rest = append(rest, start(one))
	}
	return first, forked, rest
}

// SearchTaskWorkflowIDs lists the workflow of each task that matches, in
// the search's order, all of them at once: a workflow twice for two of
// its tasks, a removed workflow not at all.
func TestSearchTaskWorkflowIDs(t *testing.T) {
	f := newFixture(t)
	first, forked, _ := f.startScheduling(0)
	ids, err := f.reader.SearchTaskWorkflowIDs(context.Background(), query.Search{Query: "taskType = rq AND status = SCHEDULED", Sort: []string{"scheduledTime:ASC"}})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{first, forked, forked}; !slices.Equal(ids, want) {
		t.Fatalf("found %v, want %v", ids, want)
	}
}

// EachTask calls back with every task that matches, in the search's order,
// all of them from one search (its Start and Size page nothing), a
// workflow's twice for two of its tasks, a removed workflow's none, until
// the callback says stop.
func TestEachTask(t *testing.T) {
	f := newFixture(t)
	first, forked, more := f.startScheduling(1)
	last := more[0]
	s := query.Search{Query: "taskType = rq AND status = SCHEDULED", Sort: []string{"scheduledTime:ASC"}, Start: 1, Size: 1}
	for _, tc := range []struct {
		stopAfter int
		want      []string
	}{
		{0, []string{first, forked, forked, last}},
		{2, []string{first, forked}},
	} {
		var got []string
		err := f.reader.EachTask(context.Background(), s, func(task *conductor.Task) bool {
			if task.TaskDefName != "rq" || task.Status != conductor.TaskScheduled {
				t.Errorf("found task %s %s", task.TaskDefName, task.Status)
			}
			got = append(got, task.WorkflowInstanceID)
			return tc.stopAfter == 0 || len(got) < tc.stopAfter
		})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, tc.want) {
			t.Fatalf("stopping after %d: found %v, want %v", tc.stopAfter, got, tc.want)
		}
	}
}
