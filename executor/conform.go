package executor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// Conformance holds payloads to the schemas their definitions enforce
// (schemacheck.Checker). A payload that does not conform is
// fault.ErrInvalid, whose message quotes no value of it.
type Conformance interface {
	Check(ctx context.Context, schema *conductor.SchemaDef, payload map[string]any) error
}

// SetConformance installs the schema checks of definitions that enforce
// theirs (before Start): a start's input, a task's input at hand-off and
// a worker's output.
func (e *Executor) SetConformance(c Conformance) { e.conform = c }

// checkStartInput holds a start's input, with the definition's
// inputTemplate filling what it lacks as the start will, to the
// definition's inputSchema.
func (e *Executor) checkStartInput(ctx context.Context, def *conductor.WorkflowDef, input map[string]any, added []string) error {
	if e.conform == nil || !def.EnforceSchema || def.InputSchema == nil {
		return nil
	}
	in := maps.Clone(input)
	for _, k := range added {
		delete(in, k)
	}
	in = engine.StartInput(def, in)
	if err := e.conform.Check(ctx, def.InputSchema, in); err != nil {
		return fmt.Errorf("input of workflow %s %w", def.Name, err)
	}
	return nil
}

// checkTaskInput holds the input a task is handed, its secrets resolved,
// to its definition's inputSchema.
func (e *Executor) checkTaskInput(ctx context.Context, w *engine.Workflow, t *engine.Task, input map[string]any) error {
	td := e.enforcedTaskDef(w, t)
	if td == nil || td.InputSchema == nil {
		return nil
	}
	if err := e.conform.Check(ctx, td.InputSchema, input); err != nil {
		return fmt.Errorf("input of task %s %w", t.Ref, err)
	}
	return nil
}

// checkResult turns a completion whose output does not conform to the
// task definition's outputSchema into a failure that says why: the task
// fails and is retried as its definition says. The output is kept, for
// whoever looks into the failure (protected like any output).
func (e *Executor) checkResult(ctx context.Context, w *engine.Workflow, r engine.Result) (engine.Result, error) {
	if w == nil || r.Result.Status != conductor.TaskCompleted {
		return r, nil
	}
	t := w.TaskByIDDeciding(r.Result.TaskID)
	if t == nil || !t.Active() {
		return r, nil // the decision says why not
	}
	td := e.enforcedTaskDef(w, t)
	if td == nil || td.OutputSchema == nil {
		return r, nil
	}
	err := e.conform.Check(ctx, td.OutputSchema, r.Result.OutputData)
	switch {
	case err == nil:
		return r, nil
	case errors.Is(err, fault.ErrInvalid):
		r.Result.Status = conductor.TaskFailed
		r.Result.ReasonForIncompletion = fmt.Sprintf("output of task %s %v", t.Ref, err)
		return r, nil
	}
	return r, fmt.Errorf("check output of task %s: %w: %v", t.ID, fault.ErrUnavailable, err)
}

// enforceSchema is what every definition that enforces a schema holds:
// the look for it spares the others parsing theirs.
var enforceSchema = []byte(`"enforceSchema"`)

// enforcedTaskDef returns the definition task t runs under if it
// enforces its schemas: its configuration's inline one, else the
// registered one it was scheduled with; nil otherwise.
func (e *Executor) enforcedTaskDef(w *engine.Workflow, t *engine.Task) *conductor.TaskDef {
	if e.conform == nil {
		return nil
	}
	if bytes.Contains(w.DefJSON, enforceSchema) || bytes.Contains(t.Config, enforceSchema) {
		if td := w.InlineTaskDef(t); td != nil {
			if !td.EnforceSchema {
				return nil
			}
			return td
		}
	}
	if !bytes.Contains(t.TaskDef, enforceSchema) {
		return nil
	}
	var td conductor.TaskDef
	if conductor.Unmarshal(t.TaskDef, &td) != nil || !td.EnforceSchema {
		return nil
	}
	return &td
}
