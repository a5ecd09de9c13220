package executions_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/projections/executions"
)

// A workflow's head (GET /api/workflow/{id}?includeTasks=false, its
// status, an access check) is read in the same few keys at any size: it
// read every task, so that a client polling a loop of 2,000 iterations
// until it ended read 2,000 tasks at each poll, the whole run's reads
// growing with the square of its size. It renders as the whole
// workflow's view without tasks does.
func TestWorkflowHeadReadsNoTask(t *testing.T) {
	var seq uint64
	for _, tc := range []struct {
		name  string
		iters int
	}{
		{"decided loop of 10", 10},
		{"decided loop of 1,500", 1500},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, id, whole := storedLoop(t, tc.iters, &seq)
			head, err := r.WorkflowHead(context.Background(), id)
			if err != nil {
				t.Fatal(err)
			}
			if head.Tasks != nil {
				t.Errorf("the head holds %d tasks", len(head.Tasks))
			}
			got, _ := json.Marshal(head.Conductor(false))
			want, _ := json.Marshal(whole.Conductor(false))
			if string(got) != string(want) {
				t.Errorf("the head renders\n%s\nthe workflow without tasks\n%s", got, want)
			}
			keys, err := executions.KeysRead(r, id, false)
			if err != nil {
				t.Fatal(err)
			}
			// The head, the definition and the input.
			if keys != 3 {
				t.Errorf("the head read %d keys; want 3 (head, definition, input) at %d tasks", keys, len(whole.Tasks))
			}
			all, err := executions.KeysRead(r, id, true)
			if err != nil {
				t.Fatal(err)
			}
			if all < len(whole.Tasks) {
				t.Errorf("the whole workflow read %d keys for %d tasks", all, len(whole.Tasks))
			}
			if _, err := r.WorkflowHead(context.Background(), "nope"); !errors.Is(err, fault.ErrNotFound) {
				t.Errorf("an unknown workflow's head: %v; want not found", err)
			}
		})
	}
}
