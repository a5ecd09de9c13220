package system

import (
	"context"
	"fmt"
	"maps"
	"strings"

	"github.com/dop251/goja"

	"github.com/flowvault/flowvault/schemas/conductor"
)

// LoopCondition evaluates a DO_WHILE task's loopCondition once an
// iteration has finished (see engine/loop.go for the protocol). The engine
// hands the DO_WHILE task over with, as its input, the document the
// condition reads as `$`: the loop's inputParameters, `$[loopRef]` (the
// loop's output: iteration, one entry per iteration) and `$[childRef]`
// (the output of each task of the iteration that just ended). The report
// is the verdict:
//
//   - IN_PROGRESS: the condition is true, run another iteration;
//   - COMPLETED: the condition is false, the loop is done;
//   - FAILED_WITH_TERMINAL_ERROR: the condition threw, did not parse or
//     exceeded its budget (as Conductor, which does not retry it).
//
// The output is what the condition set in `$[loopRef]`, and the drop list
// (ExecuteDropping) the members it deleted from it: Conductor's condition
// is handed the loop's output map itself, so a value it stores there
// ($.loop.storage = 3) stays in the loop's output, and a member it deletes
// leaves it. It is the object bound as `$[loopRef]` that counts, reached
// by any name (var l = $.loop; $.loop = {}; l.x = 1 stores x); an object
// put in its place changes nothing ($.loop = {x: 1}), as Conductor's `$`
// is a map made for the condition, holding the output map. The keys the engine keeps there (conductor.DoWhileOwnedKey:
// the iteration count and one entry per iteration) are left out: the
// engine would ignore them. `$[loopRef]` is a lazyJSON: converting every
// iteration's outputs to JavaScript and back at every check made a loop of
// n iterations cost O(n²); now a check converts what it reads.
type LoopCondition struct {
	Budget Budget
}

// Execute evaluates the loop condition, reporting no deletions.
func (l LoopCondition) Execute(ctx context.Context, t *conductor.Task) conductor.TaskResult {
	res, _ := l.ExecuteDropping(ctx, t)
	return res
}

// ExecuteDropping evaluates the loop condition; drop are the members of
// `$[loopRef]` it deleted (executor.OutputDropper).
func (l LoopCondition) ExecuteDropping(ctx context.Context, t *conductor.Task) (res conductor.TaskResult, drop []string) {
	var cfg struct {
		LoopCondition string `json:"loopCondition"`
	}
	if len(t.WorkflowTask) > 0 {
		if err := conductor.Unmarshal(t.WorkflowTask, &cfg); err != nil {
			return loopFailed(t, fmt.Errorf("task configuration: %v", err)), nil
		}
	}
	ref := t.ReferenceTaskName
	if strings.TrimSpace(cfg.LoopCondition) == "" {
		return conductor.TaskResult{Status: conductor.TaskCompleted, OutputData: t.OutputData}, nil
	}
	type verdict struct {
		more bool
		out  map[string]any
		drop []string
	}
	scope := t.InputData
	if out, ok := scope[ref].(map[string]any); ok {
		scope = maps.Clone(scope)
		scope[ref] = lazyJSON(out)
	}
	v, err := runJS(ctx, l.Budget, cfg.LoopCondition, scope, func(r *jsRun, v goja.Value) (any, error) {
		more := scriptBool(v)
		out := map[string]any{}
		var drop []string
		if lazy := r.lazy[ref]; lazy != nil {
			// What the condition did not touch is as the engine has it.
			added := r.vm.NewObject()
			err := lazy.touched(func(k string, v goja.Value) error {
				if conductor.DoWhileOwnedKey(k) {
					return nil
				}
				return added.Set(k, v)
			})
			if err != nil {
				return nil, err
			}
			for _, k := range lazy.deleted() {
				if !conductor.DoWhileOwnedKey(k) {
					drop = append(drop, k)
				}
			}
			j, err := r.toJSON(added)
			if err != nil {
				return nil, err
			}
			if m, ok := j.(map[string]any); ok {
				out = m
			}
		}
		return verdict{more, out, drop}, nil
	})
	if err != nil {
		return loopFailed(t, err), nil
	}
	vd := v.(verdict)
	status := conductor.TaskCompleted
	if vd.more {
		status = conductor.TaskInProgress
	}
	return conductor.TaskResult{Status: status, OutputData: vd.out}, vd.drop
}

func loopFailed(t *conductor.Task, err error) conductor.TaskResult {
	return conductor.TaskResult{Status: conductor.TaskFailedWithTerminalError,
		ReasonForIncompletion: fmt.Sprintf("DO_WHILE %s: unable to evaluate loopCondition: %v", t.ReferenceTaskName, err)}
}

// scriptBool reads a loop condition's value as Conductor's
// ScriptEvaluator.evalBool does: a boolean, or a number above zero. Any
// other value (a string, an object) ends the loop, where JavaScript's
// truthiness would run it again.
func scriptBool(v goja.Value) bool {
	if v == nil {
		return false
	}
	return ScriptBool(v.Export())
}
