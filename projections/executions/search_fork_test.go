package executions_test

import (
	"context"
	"slices"
	"testing"

	"github.com/google/uuid"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/projections/executions/query"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// A task search finds a fork by the type and name its views show
// (FORK, as Conductor's), not by the definition's type.
func TestTaskSearchFindsAForkAsShown(t *testing.T) {
	f := newFixture(t)
	var def conductor.WorkflowDef
	if err := conductor.Unmarshal([]byte(`{"name":"fj","tasks":[
	 {"name":"fork","taskReferenceName":"fork","type":"FORK_JOIN","forkTasks":[[{"name":"a","taskReferenceName":"a"}],[{"name":"b","taskReferenceName":"b"}]]},
	 {"name":"join","taskReferenceName":"join","type":"JOIN","joinOn":["a","b"]}]}`), &def); err != nil {
		t.Fatal(err)
	}
	id := uuid.NewString()
	f.decide(id, engine.Start{WorkflowID: id, Def: &def})
	visible := func(name, createdBy string) bool { return true }
	for _, tc := range []struct {
		query string
		want  int
	}{
		{"taskType = FORK", 1},
		{"taskDefName = FORK", 1},
		{"taskType = FORK_JOIN", 0},
	} {
		total, tasks, err := f.reader.SearchTasks(context.Background(), query.Search{Query: tc.query, Size: 10, Visible: visible})
		if err != nil {
			t.Fatal(err)
		}
		if total != tc.want || len(tasks) != tc.want {
			t.Fatalf("%s: found %d tasks (%d listed), want %d", tc.query, total, len(tasks), tc.want)
		}
		if tc.want > 0 && (tasks[0].TaskType != "FORK" || tasks[0].ReferenceTaskName != "fork") {
			t.Fatalf("%s: found %+v", tc.query, tasks[0])
		}
	}
}

// A task search's freeText matches what each task's view shows, the views
// of a workflow's tasks rendered together: a dynamic fork by the tasks it
// forked, its JOIN by what it joins on, as the forked task by its name.
func TestTaskSearchFreeTextFindsAForkAndItsJoinAsShown(t *testing.T) {
	f := newFixture(t)
	var def conductor.WorkflowDef
	if err := conductor.Unmarshal([]byte(`{"name":"dyn","tasks":[
	 {"name":"fork","taskReferenceName":"fork","type":"FORK_JOIN_DYNAMIC","dynamicForkTasksParam":"tasks","inputParameters":{"tasks":"${workflow.input.tasks}"}},
	 {"name":"join","taskReferenceName":"join","type":"JOIN"}]}`), &def); err != nil {
		t.Fatal(err)
	}
	id := uuid.NewString()
	f.decide(id, engine.Start{WorkflowID: id, Def: &def, Request: conductor.StartWorkflowRequest{Input: map[string]any{
		"tasks": []any{map[string]any{"name": "step", "taskReferenceName": "branchref"}}}}})
	_, tasks, err := f.reader.SearchTasks(context.Background(), query.Search{Query: "workflowId = " + id, FreeText: "branchref", Size: 10})
	if err != nil {
		t.Fatal(err)
	}
	var refs []string
	for _, ct := range tasks {
		refs = append(refs, ct.ReferenceTaskName)
	}
	slices.Sort(refs)
	if !slices.Equal(refs, []string{"branchref", "fork", "join"}) {
		t.Fatalf("freeText found %v, want the forked task, the fork and the JOIN", refs)
	}
}
