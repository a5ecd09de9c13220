package system

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/dop251/goja"

	"github.com/flowvault/flowvault/masking"
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
		return s.javascript(ctx, t, "(function scriptFun(){"+src+"\n})()", in, src, configuredText(t, "scriptExpression"))
	}
	expression, ok := in["expression"].(string)
	if !ok || strings.TrimSpace(expression) == "" {
		return scriptFailed(t, fmt.Errorf("inputParameters.expression is required"))
	}
	switch ev, _ := in["evaluatorType"].(string); ev {
	case "javascript", "graaljs", "":
		return s.javascript(ctx, t, expression, in, expression, configuredText(t, "expression"))
	case "value-param":
		return conductor.TaskResult{Status: conductor.TaskCompleted, OutputData: map[string]any{"result": in[expression]}}
	default:
		return scriptFailed(t, fmt.Errorf("evaluatorType %q is not supported: use javascript, graaljs or value-param", ev))
	}
}

// javascript runs src, whose text from the task's input is given, and the
// texts the task was configured with that it may have come from.
func (s Inline) javascript(ctx context.Context, t *conductor.Task, src string, scope map[string]any, given string, configured []string) conductor.TaskResult {
	v, err := runJS(ctx, s.Budget, src, scope, func(r *jsRun, v goja.Value) (any, error) { return r.toJSON(v) })
	if err != nil {
		return scriptFailed(t, withoutSplicedNames(err, t, given, configured))
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

// withoutSplicedNames is err without the names it quotes that came into
// the script's text from the task's input at hand-off, given, rather than
// from the text the task was configured with. An INLINE's expression (an
// HTTP_POLL's terminationCondition) is input, its references resolved
// when it is handed off: a secret spliced into it becomes code where its
// own quote ends the string the author wrote around it
// ('${workflow.secrets.pw}' with pw = p4ss'+w0rdX9), or its '.' cuts it,
// and goja's errors quote the name they stopped at (ReferenceError:
// w0rdX9 is not defined), a part of the value, which redaction looks for
// only from masking.MinLength bytes on, in a value that ends a string
// (masking.Parts). Each such name reads ***; names of
// the configured text, and what the script computed (a message it threw,
// a property it read from its input), which redaction looks through, are
// kept. Names are compared whole, and as JavaScript reads their escapes
// too (scriptNames): a part that a name of the configured text holds
// (work, of workflow) is still a part of the value. A task configured
// without the text (a dynamic fork's, whose script comes from the fork's
// input) has every name of the script read so: none is the author's as
// the task was configured.
func withoutSplicedNames(err error, t *conductor.Task, given string, configured []string) error {
	if len(t.WorkflowTask) == 0 && len(t.TaskDefinition) == 0 || slices.Contains(configured, given) {
		return err // not configured at all (a test's task), or nothing was spliced
	}
	spliced := map[string]bool{}
	for _, name := range scriptNames(given) {
		spliced[name] = true
	}
	for _, c := range configured {
		for _, name := range scriptNames(c) {
			delete(spliced, name)
		}
	}
	msg := err.Error()
	out := scriptName.ReplaceAllStringFunc(msg, func(name string) string {
		if spliced[name] {
			return "***"
		}
		return name
	})
	if out == msg {
		return err
	}
	return errors.New(out)
}

// scriptName is a run of the characters a JavaScript name is made of.
var scriptName = regexp.MustCompile(`[\p{L}\p{N}_$]+`)

// scriptNames returns the names of src as it is written and as
// JavaScript reads its escapes: an error quotes a name as the parser
// decoded it, so that a spliced w\u0030rd, or 'w\x30rd' read as a
// property, is quoted w0rd, a name the text as written does not hold.
func scriptNames(src string) []string {
	names := scriptName.FindAllString(src, -1)
	if strings.Contains(src, `\`) {
		names = append(names, scriptName.FindAllString(masking.ScriptUnescaped(src), -1)...)
	}
	return names
}

// configuredText returns the texts the task was configured with at the
// path of its input: its inputParameters' (as the workflow's definition
// writes them), its inline or registered task definition's
// inputTemplate's, and a LAMBDA's field there.
func configuredText(t *conductor.Task, path ...string) []string {
	var out []string
	add := func(raw []byte, prefix ...string) {
		var v any
		if len(raw) == 0 || json.Unmarshal(raw, &v) != nil {
			return
		}
		for _, p := range slices.Concat(prefix, path) {
			m, _ := v.(map[string]any)
			v = m[p]
		}
		if s, ok := v.(string); ok {
			out = append(out, s)
		}
	}
	add(t.WorkflowTask, "inputParameters")
	add(t.WorkflowTask)
	add(t.WorkflowTask, "taskDefinition", "inputTemplate")
	add(t.TaskDefinition, "inputTemplate")
	return out
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
