package system

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/dop251/goja"

	"github.com/flowvault/flowvault/schemas/conductor"
)

// Inline runs Conductor's INLINE task: inputParameters.expression
// evaluated by inputParameters.evaluatorType ("javascript" or "graaljs":
// JavaScript with `$` bound to the task input; "value-param": the input
// value the expression names). The output is {"result": value}. Also
// LAMBDA, INLINE's legacy form: inputParameters.scriptExpression is the
// body of a function whose return value is the result.
//
// A script that throws, does not parse or exceeds its budget fails the task
// (FAILED, retried if its task definition says so) with the error in
// reasonForIncompletion and in the output's "error".
type Inline struct {
	Budget Budget
}

// Execute evaluates the task's script.
func (s Inline) Execute(ctx context.Context, t *conductor.Task) conductor.TaskResult {
	in := t.InputData
	if t.TaskType == conductor.TaskTypeLambda {
		src, _ := in["scriptExpression"].(string)
		if src == "" {
			src = configString(t, "scriptExpression")
		}
		if strings.TrimSpace(src) == "" {
			return scriptFailed(t, fmt.Errorf("inputParameters.scriptExpression is required"))
		}
		return s.javascript(ctx, t, "(function scriptFun(){"+src+"\n})()", in)
	}
	expression, ok := in["expression"].(string)
	if !ok || strings.TrimSpace(expression) == "" {
		return scriptFailed(t, fmt.Errorf("inputParameters.expression is required"))
	}
	switch ev, _ := in["evaluatorType"].(string); ev {
	case "javascript", "graaljs", "":
		return s.javascript(ctx, t, expression, in)
	case "value-param":
		return conductor.TaskResult{Status: conductor.TaskCompleted, OutputData: map[string]any{"result": in[expression]}}
	default:
		return scriptFailed(t, fmt.Errorf("evaluatorType %q is not supported: use javascript, graaljs or value-param", ev))
	}
}

func (s Inline) javascript(ctx context.Context, t *conductor.Task, src string, scope map[string]any) conductor.TaskResult {
	v, err := runJS(ctx, s.Budget, src, scope, func(r *jsRun, v goja.Value) (any, error) { return r.toJSON(v) })
	if err != nil {
		return scriptFailed(t, err)
	}
	return conductor.TaskResult{Status: conductor.TaskCompleted, OutputData: map[string]any{"result": v}}
}

// scriptFailed fails a task whose user code failed: the error goes to the
// reason and to the output's "error", as Conductor does.
func scriptFailed(t *conductor.Task, err error) conductor.TaskResult {
	return conductor.TaskResult{Status: conductor.TaskFailed,
		ReasonForIncompletion: fmt.Sprintf("%s %s: %v", t.TaskType, t.ReferenceTaskName, err),
		OutputData:            map[string]any{"error": err.Error()}}
}

// configString reads a string field of the task's configuration.
func configString(t *conductor.Task, field string) string {
	var m map[string]any
	if len(t.WorkflowTask) == 0 || json.Unmarshal(t.WorkflowTask, &m) != nil {
		return ""
	}
	s, _ := m[field].(string)
	return s
}
