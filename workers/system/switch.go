package system

import (
	"context"
	"fmt"
	"strings"

	"github.com/dop251/goja"

	"github.com/flowvault/flowvault/engine/expr"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// Switch evaluates the case of a SWITCH whose evaluatorType is
// "javascript" or "graaljs" (expression) and of a DECISION with a
// caseExpression: JavaScript over `$`, the task input. The case is the
// result's text ("true", "3", "null", the string itself); the task
// completes with {"evaluationResult":[case],"selectedCase":case} (a
// DECISION also with Conductor's "caseOutput":[case]), and the
// engine runs the branch. A value-param SWITCH, and a DECISION's
// caseValueParam, reach it only when their case value is sealed data or a
// secret, opened in the input it is handed; the engine decides the others
// itself.
type Switch struct {
	Budget Budget
}

type switchConfig struct {
	EvaluatorType  string `json:"evaluatorType"`
	Expression     string `json:"expression"`
	CaseValueParam string `json:"caseValueParam"`
	CaseExpression string `json:"caseExpression"`
}

// Execute evaluates the case expression.
func (s Switch) Execute(ctx context.Context, t *conductor.Task) conductor.TaskResult {
	var cfg switchConfig
	if len(t.WorkflowTask) > 0 {
		if err := conductor.Unmarshal(t.WorkflowTask, &cfg); err != nil {
			return scriptFailed(t, fmt.Errorf("task configuration: %v", err))
		}
	}
	var c string
	switch {
	case t.TaskType == conductor.TaskTypeDecision && conductor.DecisionScript(cfg.CaseExpression):
		v, err := s.evaluate(ctx, cfg.CaseExpression, t.InputData)
		if err != nil {
			return scriptFailed(t, err)
		}
		c = expr.Text(v)
	case t.TaskType == conductor.TaskTypeDecision:
		c = expr.Text(t.InputData[cfg.CaseValueParam])
	case cfg.EvaluatorType == "javascript" || cfg.EvaluatorType == "graaljs":
		if strings.TrimSpace(cfg.Expression) == "" {
			return scriptFailed(t, fmt.Errorf("expression is required"))
		}
		v, err := s.evaluate(ctx, cfg.Expression, t.InputData)
		if err != nil {
			return scriptFailed(t, err)
		}
		c = expr.Text(v)
	case cfg.EvaluatorType == "" || cfg.EvaluatorType == "value-param":
		param := cfg.Expression
		if param == "" {
			param = cfg.CaseValueParam // as the engine reads it
		}
		c = expr.Text(t.InputData[param])
	default:
		return scriptFailed(t, fmt.Errorf("evaluatorType %q is not supported", cfg.EvaluatorType))
	}
	return conductor.TaskResult{Status: conductor.TaskCompleted,
		OutputData: conductor.CaseOutput(t.TaskType, c)}
}

func (s Switch) evaluate(ctx context.Context, src string, scope map[string]any) (any, error) {
	return runJS(ctx, s.Budget, src, scope, func(r *jsRun, v goja.Value) (any, error) { return r.toJSON(v) })
}
