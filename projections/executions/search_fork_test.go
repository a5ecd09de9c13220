package executions_test

import (
	"context"
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
