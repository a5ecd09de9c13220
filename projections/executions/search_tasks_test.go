package executions_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/flowvault/flowvault/engine"
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

// SearchTaskWorkflowIDs lists the workflow of each task that matches, in
// the search's order, all of them at once: a workflow twice for two of
// its tasks, a removed workflow not at all.
func TestSearchTaskWorkflowIDs(t *testing.T) {
	f := newFixture(t)
	one := parseDef(t, `{"name":"one_rq","tasks":[{"name":"rq","taskReferenceName":"a"}]}`)
	two := parseDef(t, `{"name":"two_rq","tasks":[
	 {"name":"fork","taskReferenceName":"fork","type":"FORK_JOIN","forkTasks":[[{"name":"rq","taskReferenceName":"a"}],[{"name":"rq","taskReferenceName":"b"}]]},
	 {"name":"join","taskReferenceName":"join","type":"JOIN","joinOn":["a","b"]}]}`)
	start := func(def *conductor.WorkflowDef) string {
		id := uuid.NewString()
		f.decide(id, engine.Start{WorkflowID: id, Def: def})
		return id
	}
	first, forked, removed := start(one), start(two), start(one)
	f.decide(removed, engine.Remove{Terminate: true})
	ids, err := f.reader.SearchTaskWorkflowIDs(context.Background(), query.Search{Query: "taskType = rq AND status = SCHEDULED", Sort: []string{"scheduledTime:ASC"}})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{first, forked, forked}; !slices.Equal(ids, want) {
		t.Fatalf("found %v, want %v", ids, want)
	}
}
