package engine

import (
	"slices"
	"strings"

	"github.com/flowvault/flowvault/engine/expr"
	"github.com/flowvault/flowvault/masking"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// workflowDoc exposes a workflow to parameter expressions: "workflow" and
// each task reference name are sources (conductor-api.md §6.2).
type workflowDoc struct {
	w      *Workflow
	taskID string
	// d, when set, is the decision deciding w: its reference index finds
	// a task without a scan (${loop.output.loopItem} in every iteration
	// of a long loop scanned back to the loop each time).
	d *decision
}

var _ expr.SealedDoc = (*workflowDoc)(nil)

// SealedRef names a value the workflow sealed (a _secrets or _masked
// leaf) by its purpose within the workflow: embedded in text, it is found
// by it and opened at hand-off (FindSealed).
func (d *workflowDoc) SealedRef(v any) (string, bool) {
	s, ok := v.(*masking.Sealed)
	if !ok || d.w.Unsealed {
		return "", false
	}
	return strings.CutPrefix(s.Purpose, "wf/"+d.w.ID+"/")
}

// FindSealed returns the sealed value of w that ref names (see SealedRef),
// or nil when w no longer holds it sealed (compaction replaced it).
func FindSealed(w *Workflow, ref string) *masking.Sealed {
	purpose := "wf/" + w.ID + "/" + ref
	var in []map[string]any
	if rest, ok := strings.CutPrefix(ref, "task/"); ok {
		id, _, _ := strings.Cut(rest, "/")
		if t := w.TaskByID(id); t != nil {
			in = append(in, t.Input, t.Output)
		}
	} else {
		in = append(in, w.Input, w.Variables, w.Output)
	}
	for _, m := range in {
		if s := masking.Find(m, func(s *masking.Sealed) bool { return s.Purpose == purpose }); s != nil {
			return s
		}
	}
	return nil
}

// sealedReadsOf returns the sealed values of w that the texts at the
// deferred paths of in read, by reference (StartWorkflow.Sealed), or nil.
// A text the stored input holds sealed whole (in a _secrets or _masked
// block) no longer shows them: what it reads is given by blockReads, the
// task's SealedReads.
func sealedReadsOf(w *Workflow, in map[string]any, deferred [][]any, blockReads []string) map[string]*masking.Sealed {
	var out map[string]*masking.Sealed
	add := func(ref string) {
		if s := FindSealed(w, ref); s != nil {
			if out == nil {
				out = map[string]*masking.Sealed{}
			}
			out[ref] = s
		}
	}
	for _, p := range deferred {
		for _, ref := range expr.SealedRefs(in, expr.Path(p)) {
			add(ref)
		}
	}
	for _, ref := range blockReads {
		add(ref)
	}
	return out
}

// blockReads returns the references to the workflow's sealed data
// (${sealed:REF}) that the texts at the deferred paths of in inside a
// _secrets or _masked block read (TaskScheduled.SealedReads): the guard
// seals such a text whole, and a child started from the stored state
// (recovery, a rerun) could not otherwise be handed the values it reads.
// carried are the references of the instance whose input in keeps (a
// retry's, a rerun's), whose texts are sealed already: they are kept
// while such a text is.
func blockReads(in map[string]any, deferred [][]any, carried []string) []string {
	var out []string
	keep := false
	for _, p := range deferred {
		if !slices.ContainsFunc(p, func(k any) bool { s, ok := k.(string); return ok && masking.IsMaskedKey(s) }) {
			continue
		}
		v, _ := expr.Path(p).In(in)
		if _, sealed := v.(*masking.Sealed); sealed {
			keep = true
			continue
		}
		for _, ref := range expr.SealedRefs(in, expr.Path(p)) {
			if !slices.Contains(out, ref) {
				out = append(out, ref)
			}
		}
	}
	if keep {
		for _, ref := range carried {
			if !slices.Contains(out, ref) {
				out = append(out, ref)
			}
		}
	}
	return out
}

func (d *workflowDoc) Lookup(name string) (any, bool) {
	w := d.w
	switch name {
	case "workflow":
		return map[string]any{
			"input": w.Input, "output": w.Output, "status": w.Status, "workflowId": w.ID,
			"parentWorkflowId": orNull(w.ParentWorkflowID), "parentWorkflowTaskId": orNull(w.ParentWorkflowTaskID),
			"workflowType": w.Name, "version": int64(w.Version), "correlationId": orNull(w.CorrelationID),
			"reasonForIncompletion": orNull(w.Reason), "schemaVersion": int64(2), "variables": w.Variables,
			"createTime": w.CreateTime, "priority": int64(w.Priority), "createdBy": orNull(w.CreatedBy),
		}, true
	case "CPEWF_TASK_ID":
		return d.taskID, d.taskID != ""
	}
	var t *Task
	if d.d != nil {
		t = d.d.latest(name)
	} else {
		t = w.LatestByRef(name)
	}
	if t == nil {
		// Inside and after a loop, a child is referenced without its
		// iteration suffix: take the latest iteration.
		for i := len(w.Tasks) - 1; i >= 0; i-- {
			if baseRef(w.Tasks[i].Ref) == name {
				t = w.Tasks[i]
				break
			}
		}
	}
	if t == nil {
		return nil, false
	}
	iteration := t.Iteration
	if t.Type == conductor.TaskTypeDoWhile {
		iteration = loopIteration(t)
	}
	latest := w.LatestByRef
	if d.d != nil {
		latest = d.d.latest
	}
	taskType, taskDefName := t.ShownType()
	return map[string]any{
		"input": w.shownInput(t, latest), "output": t.Output, "taskType": taskType, "status": t.Status,
		"referenceTaskName": t.Ref, "retryCount": int64(t.RetryCount), "correlationId": orNull(w.CorrelationID),
		"pollCount": int64(t.PollCount), "taskDefName": taskDefName, "scheduledTime": t.ScheduledTime,
		"startTime": t.StartTime, "endTime": t.EndTime, "workflowInstanceId": w.ID, "taskId": t.ID,
		"reasonForIncompletion": orNull(t.Reason), "callbackAfterSeconds": t.CallbackAfterSeconds,
		"workerId": orNull(t.WorkerID), "iteration": int64(iteration), "subWorkflowId": orNull(t.SubWorkflowID),
	}, true
}

// shownInput is the task's input as expressions read it: as its view shows
// it, Conductor's (a JOIN's and an EXCLUSIVE_JOIN's joinOn, a dynamic
// fork's forkedTasks, which the state keeps in its output), unmasked.
// forkedTaskDefs, which a fork's view shows, is left out: finding the
// forked tasks would take a pass over the workflow's at each read.
func (w *Workflow) shownInput(t *Task, latest func(string) *Task) map[string]any {
	if in := w.joinInput(t, latest); in != nil {
		for k, v := range t.Input {
			if _, ok := in[k]; !ok {
				in[k] = v
			}
		}
		return in
	}
	if forked, ok := t.Output["forkedTasks"]; ok && t.Type == conductor.TaskTypeForkJoinDynamic {
		in := make(map[string]any, len(t.Input)+1)
		for k, v := range t.Input {
			in[k] = v
		}
		in["forkedTasks"] = forked
		return in
	}
	return t.Input
}

// orNull is a text field as Conductor's document holds it: a field the
// workflow or task never set is null there (${workflow.correlationId} is null, and
// "c-null" inside text), where the state keeps "".
func orNull(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// taskTypeOf is Conductor's Task.taskType: the task name for SIMPLE tasks,
// the type otherwise.
func taskTypeOf(t *Task) string {
	if t.IsWorkerTask() {
		return t.Name
	}
	return t.Type
}
