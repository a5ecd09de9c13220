package executions_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"testing"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/masking"
	"github.com/flowvault/flowvault/projections/executions"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// A task read by id (a worker's result, a task's log, GET
// /api/tasks/{taskId}) reads its workflow's head and the task's key, the
// same few keys at any size: it read every task of the workflow, so that
// the results of a dynamic fork of 2,000 branches read 2,000 tasks each.
func TestWorkflowTaskReadsItsTask(t *testing.T) {
	var seq uint64
	for _, iters := range []int{10, 1500} {
		t.Run(fmt.Sprintf("decided loop of %d", iters), func(t *testing.T) {
			r, id, whole := storedLoop(t, iters, &seq)
			// The first iteration's task, one in the middle, the last.
			for _, i := range []int{1, len(whole.Tasks) / 2, len(whole.Tasks) - 1} {
				want := whole.Tasks[i]
				keys, direct, err := executions.TaskKeysRead(r, id, want.ID)
				if err != nil {
					t.Fatal(err)
				}
				// The head, the definition, the input and the task.
				if keys != 4 || !direct {
					t.Errorf("task %d of %d: read %d keys (its own: %v); want 4", i, len(whole.Tasks), keys, direct)
				}
			}
			all, err := executions.KeysRead(r, id, true)
			if err != nil {
				t.Fatal(err)
			}
			if all < len(whole.Tasks) {
				t.Errorf("the whole workflow read %d keys for %d tasks", all, len(whole.Tasks))
			}
		})
	}
}

// WorkflowTask answers what the whole workflow holds: the task as its list
// holds it, and the workflow's head as WorkflowHead reads it, so that a
// view of the task renders the same bytes, masked alike, once tasks have
// moved in the list (a restart, a rerun, a loop's iterations past
// keepLastN drop tasks before others), after compaction, in a loop and a
// dynamic fork. Each task is found where its lookup says, not by a read
// of the whole list. A task the workflow no longer holds is not found.
func TestWorkflowTaskAnswersAsTheWorkflow(t *testing.T) {
	var seq uint64
	start := func(t *testing.T, def string, input map[string]any) *recorder {
		r := newRecorder(t, &seq)
		r.decide(engine.Start{WorkflowID: r.id, Def: parseDef(t, def), Request: conductor.StartWorkflowRequest{Input: input}, CreatedBy: "someone"})
		return r
	}
	ids := func(w *engine.Workflow) []string {
		var out []string
		for _, t := range w.Tasks {
			out = append(out, t.ID)
		}
		return out
	}
	complete := func(r *recorder, ref string, output map[string]any) {
		r.tb.Helper()
		task := r.w.LatestByRef(ref)
		if task == nil {
			r.tb.Fatalf("no task %s: %s", ref, r.w.Status)
		}
		r.work(task.ID, output)
	}
	const steps = `{"name":"steps","version":1,"tasks":[
	 {"name":"step","taskReferenceName":"a"},{"name":"step","taskReferenceName":"b"},{"name":"step","taskReferenceName":"c"}]}`
	for _, tc := range []struct {
		name string
		run  func(t *testing.T) (r *recorder, dropped []string)
	}{
		{"masked", func(t *testing.T) (*recorder, []string) {
			r := start(t, `{"name":"masked","version":1,"maskedFields":["pw"],"outputParameters":{"pw":"${workflow.input.pw}"},"tasks":[
			 {"name":"step","taskReferenceName":"a","inputParameters":{"pw":"${workflow.input.pw}","_secrets":{"k":"v"},"_masked":{"m":"x"},"plain":"p"}}]}`,
				map[string]any{"pw": "hunter2", "_masked": "m"})
			complete(r, "a", map[string]any{"_masked": map[string]any{"o": int64(1)}, "v": int64(2)})
			return r, nil
		}},
		{"compacted", func(t *testing.T) (*recorder, []string) {
			r := start(t, oneWait, nil)
			r.sealAndCompact()
			return r, nil
		}},
		{"loop with keepLastN", func(t *testing.T) (*recorder, []string) {
			r := start(t, `{"name":"kept","version":1,"tasks":[{"name":"before","taskReferenceName":"before","type":"SET_VARIABLE","inputParameters":{"x":1}},
			 {"name":"loop","taskReferenceName":"loop","type":"DO_WHILE","items":"${workflow.input.items}","inputParameters":{"keepLastN":2},
			  "loopOver":[{"name":"step","taskReferenceName":"step"},{"name":"set","taskReferenceName":"set","type":"SET_VARIABLE","inputParameters":{"i":"${loop.output.loopIndex}"}}]},
			 {"name":"step","taskReferenceName":"after"}]}`, map[string]any{"items": itemsOf(6)})
			var seen []string
			for i := 1; i <= 6; i++ {
				seen = append(seen, ids(r.w)...)
				complete(r, fmt.Sprintf("step__%d", i), map[string]any{"n": int64(i)})
			}
			complete(r, "after", nil)
			return r, notIn(seen, r.w)
		}},
		{"decided loop", func(t *testing.T) (*recorder, []string) {
			r := newRecorder(t, &seq)
			r.recs = decidedLoopRecords(t, 300, &seq)
			return r, nil
		}},
		{"dynamic fork", func(t *testing.T) (*recorder, []string) {
			var branches []any
			for i := range 5 {
				branches = append(branches, map[string]any{"name": "step", "taskReferenceName": fmt.Sprintf("b%d", i),
					"inputParameters": map[string]any{"_secrets": map[string]any{"s": "v"}, "i": int64(i)}})
			}
			r := start(t, `{"name":"dyn","version":1,"tasks":[
			 {"name":"fork","taskReferenceName":"fork","type":"FORK_JOIN_DYNAMIC","dynamicForkTasksParam":"tasks","inputParameters":{"tasks":"${workflow.input.tasks}"}},
			 {"name":"join","taskReferenceName":"join","type":"JOIN"},{"name":"step","taskReferenceName":"after"}]}`,
				map[string]any{"tasks": branches})
			for _, i := range []int{3, 0, 4, 1, 2} {
				complete(r, fmt.Sprintf("b%d", i), map[string]any{"i": int64(i)})
			}
			return r, nil
		}},
		{"restarted", func(t *testing.T) (*recorder, []string) {
			r := start(t, steps, nil)
			complete(r, "a", nil)
			complete(r, "b", nil)
			before := ids(r.w)
			r.decide(engine.Terminate{})
			r.decide(engine.Restart{})
			complete(r, "a", nil)
			return r, notIn(before, r.w)
		}},
		{"rerun from a task", func(t *testing.T) (*recorder, []string) {
			r := start(t, steps, nil)
			complete(r, "a", nil)
			complete(r, "b", nil)
			complete(r, "c", nil)
			before := ids(r.w)
			r.decide(engine.Rerun{Request: conductor.RerunWorkflowRequest{ReRunFromTaskID: r.w.LatestByRef("b").ID}})
			complete(r, "b", map[string]any{"again": true})
			return r, notIn(before, r.w)
		}},
		{"sub-workflow and child", func(t *testing.T) (*recorder, []string) {
			r := start(t, `{"name":"parent","version":1,"tasks":[{"name":"sub","taskReferenceName":"sub","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"steps","version":1}}]}`, nil)
			sub := r.w.Tasks[0]
			child := newRecorder(t, &seq)
			child.decide(engine.Start{WorkflowID: child.id, Def: parseDef(t, steps), ParentWorkflowID: r.id, ParentWorkflowTaskID: sub.ID, Depth: 1})
			complete(child, "a", map[string]any{"_masked": "m"})
			r.recs = append(r.recs, child.recs...)
			return r, nil
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, dropped := tc.run(t)
			store := testutil.OpenStore(t)
			applyAll(t, store, executions.NewProjection(), r.recs)
			reader := executions.NewReader(store)
			ctx := context.Background()
			wfIDs := map[string]bool{}
			for _, rec := range r.recs {
				wfIDs[rec.Subject[len("fv.wf."):]] = true
			}
			for id := range wfIDs {
				whole, err := reader.Workflow(ctx, id)
				if err != nil {
					t.Fatal(err)
				}
				wholeHead, _ := json.Marshal(whole.Conductor(false))
				for _, want := range whole.Tasks {
					head, got, err := reader.WorkflowTask(ctx, id, want.ID)
					if err != nil {
						t.Fatalf("task %s (%s): %v", want.ID, want.Ref, err)
					}
					if head.Tasks != nil {
						t.Errorf("task %s: the head holds %d tasks", want.Ref, len(head.Tasks))
					}
					if !reflect.DeepEqual(got, want) {
						t.Errorf("task %s: read\n%+v\nthe workflow holds\n%+v", want.Ref, got, want)
					}
					if h, _ := json.Marshal(head.Conductor(false)); string(h) != string(wholeHead) {
						t.Errorf("task %s: its head renders\n%s\nthe workflow\n%s", want.Ref, h, wholeHead)
					}
					if !want.ViewReadsOtherTasks() {
						gotView, _ := json.Marshal(got.Conductor(head))
						wantView, _ := json.Marshal(want.Conductor(whole))
						if string(gotView) != string(wantView) {
							t.Errorf("task %s renders\n%s\nwith the whole workflow\n%s", want.Ref, gotView, wantView)
						}
					}
					if _, direct, err := executions.TaskKeysRead(reader, id, want.ID); err != nil || !direct {
						t.Errorf("task %s of %d was not where its lookup says (%v)", want.Ref, len(whole.Tasks), err)
					}
				}
			}
			for _, id := range dropped {
				if _, _, err := reader.WorkflowTask(ctx, r.id, id); !errors.Is(err, fault.ErrNotFound) || err.Error() != fault.NotFound("task %s not found", id).Error() {
					t.Errorf("dropped task %s: %v; want not found", id, err)
				}
				if _, err := reader.TaskWorkflow(ctx, id); !errors.Is(err, fault.ErrNotFound) {
					t.Errorf("dropped task %s is still looked up: %v", id, err)
				}
			}
			if _, _, err := reader.WorkflowTask(ctx, "nope", "nope"); !errors.Is(err, fault.ErrNotFound) {
				t.Errorf("an unknown workflow's task: %v; want not found", err)
			}
		})
	}
}

// notIn returns the ids of ids that w holds no task of.
func notIn(ids []string, w *engine.Workflow) []string {
	var out []string
	for _, id := range ids {
		if w.TaskByID(id) == nil {
			out = append(out, id)
		}
	}
	return out
}

// sealAndCompact completes the workflow's first task with an output whose
// _secrets are sealed, and compacts the workflow.
func (r *recorder) sealAndCompact() {
	r.tb.Helper()
	sealed := &masking.Sealed{Kind: masking.KindSecrets, Purpose: "p", Ciphertext: []byte{1, 2, 3}}
	r.decide(engine.Result{Result: conductor.TaskResult{TaskID: r.w.Tasks[0].ID, WorkflowInstanceID: r.id,
		Status: conductor.TaskCompleted, OutputData: map[string]any{"_secrets": sealed, "plain": "p"}}})
	r.decide(engine.Compact{})
	if !r.w.Compacted {
		r.tb.Fatal("not compacted")
	}
}
