// Package events runs Conductor event handlers: definitions (kept by
// package metadata) that act on the events EVENT tasks publish to NATS
// subjects, starting workflows or completing, failing, terminating and
// updating them, for the workflow that published the event and the
// principal that saved the handler, both.
package events

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/flowvault/flowvault/engine/expr"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/workers"
	"github.com/flowvault/flowvault/workers/system"
)

// natsPrefix is the only event queue type flowvault receives: the NATS
// subjects EVENT tasks publish on (sink nats:<subject>).
const natsPrefix = "nats:"

// Subject is the NATS subject (or pattern) event names, or false when it
// is not a nats:<subject> event. A queue group after it
// (nats:<subject>:<queue>, as Conductor's NATS module writes one, and as
// an EVENT task's sink may name it) says nothing here: the engines listen
// in a group of their own.
func Subject(event string) (string, bool) {
	subject, ok := strings.CutPrefix(event, natsPrefix)
	subject, _, _ = strings.Cut(subject, ":")
	return subject, ok
}

// evaluators are the condition languages Conductor names: javascript and
// graaljs run as JavaScript here, as the JavaScript SWITCH does;
// value-param names a member of the event (valueParam).
var evaluators = []string{"", "javascript", "graaljs", valueParam}

// valueParam is Conductor's ValueParamEvaluator: the condition is the name
// of a top-level member of the event, which holds when that member is
// true or a number above 0 (ScriptEvaluator.toBoolean).
const valueParam = "value-param"

// Validate reports every problem with h that would stop it from running:
// an event flowvault cannot receive, a condition that does not compile,
// an unknown action, a missing parameter, an expression that cannot
// parse. The error is a *fault.ValidationError naming JSON paths.
func Validate(h *conductor.EventHandler) error {
	ve := &fault.ValidationError{}
	if subj, ok := Subject(h.Event); !ok {
		ve.Add("event", "%q: want nats:<subject>, the sink of an EVENT task (other queue types are not served)", h.Event)
	} else if err := workers.CheckEventSubject(subj, true); err != nil {
		ve.Add("event", "%v", err)
	}
	if !slices.Contains(evaluators, h.EvaluatorType) {
		ve.Add("evaluatorType", "unknown evaluatorType %q: want javascript, graaljs or value-param", h.EvaluatorType)
	}
	if strings.TrimSpace(h.Condition) != "" && h.EvaluatorType != valueParam {
		if err := system.CheckScript(h.Condition); err != nil {
			ve.Add("condition", "%v", err)
		}
	}
	if len(h.Actions) == 0 {
		ve.Add("actions", "at least one action is required")
	}
	for i, a := range h.Actions {
		checkAction(ve, fmt.Sprintf("actions[%d]", i), a)
	}
	return ve.Err()
}

// required are the parameters each action needs, as alternatives: one
// list of the alternatives must be present in full.
var required = map[string][][]string{
	conductor.ActionStartWorkflow:           {{"name"}},
	conductor.ActionCompleteTask:            {{"workflowId", "taskRefName"}, {"taskId"}},
	conductor.ActionFailTask:                {{"workflowId", "taskRefName"}, {"taskId"}},
	conductor.ActionTerminateWorkflow:       {{"workflowId"}},
	conductor.ActionUpdateWorkflowVariables: {{"workflowId", "variables"}},
}

func checkAction(ve *fault.ValidationError, path string, a conductor.EventAction) {
	alternatives, known := required[a.Action]
	if !known {
		ve.Add(path+".action", "unknown action %q: want start_workflow, complete_task, fail_task, terminate_workflow or update_workflow_variables", a.Action)
		return
	}
	params := a.Params()
	ppath := path + "." + a.Action
	if params == nil {
		ve.Add(ppath, "the %s action needs its parameters here", a.Action)
		return
	}
	if !slices.ContainsFunc(alternatives, func(keys []string) bool {
		return !slices.ContainsFunc(keys, func(k string) bool { return params[k] == nil || params[k] == "" })
	}) {
		var want []string
		for _, keys := range alternatives {
			want = append(want, strings.Join(keys, " and "))
		}
		ve.Add(ppath, "%s needs %s", a.Action, strings.Join(want, ", or "))
	}
	// An inline definition is the started workflow's, checked as one
	// when the handler is stored (metadata), not as event expressions.
	params = a.EventParams()
	checkTypes(ve, ppath, a.Action, params)
	if s, ok := params["idempotencyStrategy"].(string); ok && a.Action == conductor.ActionStartWorkflow &&
		!strings.Contains(s, "${") && !conductor.KnownIdempotencyStrategy(s) {
		ve.Add(ppath+".idempotencyStrategy", "%q: %s", s, conductor.WantIdempotencyStrategy)
	}
	if v, set := params["appendArray"]; a.Action == conductor.ActionUpdateWorkflowVariables && set && v != nil && v != false && v != "false" {
		// true, and anything that may read as true when the event arrives
		// ("true", an expression): the action would set, not append.
		ve.Add(ppath+".appendArray", "appendArray is not supported: set the whole value")
	}
	for _, pe := range expr.ValidateTemplate(params) {
		ve.Add(ppath+"."+pe.Path, "%v", pe.Err)
	}
	walkStrings(params, nil, func(p expr.Path, s string) {
		// What the evaluator would leave for hand-off, as it reads it
		// ("${ workflow.secrets.x}" too; "$${workflow.secrets.x}" is text).
		if _, deferred, err := expr.Evaluate(s, expr.MapDoc{}); err == nil && len(deferred) > 0 {
			ve.Add(ppath+"."+p.String(), "secrets and environment values resolve inside a workflow, at hand-off: reference them in the workflow's definition, not in an event handler")
		}
	})
}

// paramTypes are what act decodes each action's evaluated parameters as.
var paramTypes = map[string]func() any{
	conductor.ActionStartWorkflow:           func() any { return new(conductor.StartWorkflowRequest) },
	conductor.ActionCompleteTask:            func() any { return new(conductor.EventTaskDetails) },
	conductor.ActionFailTask:                func() any { return new(conductor.EventTaskDetails) },
	conductor.ActionTerminateWorkflow:       func() any { return new(conductor.EventTerminate) },
	conductor.ActionUpdateWorkflowVariables: func() any { return new(conductor.EventUpdateVariables) },
}

// checkTypes refuses a parameter that no event can make readable: one
// without an expression, whose value every event leaves as it is, of a
// type its field does not take ("input": "text", "version": "abc").
// Stored, it failed the action at every event, as invalid.
func checkTypes(ve *fault.ValidationError, path, action string, params map[string]any) {
	for _, k := range slices.Sorted(maps.Keys(params)) {
		expression := false
		walkStrings(params[k], nil, func(_ expr.Path, s string) { expression = expression || strings.Contains(s, "${") })
		if expression {
			continue
		}
		b, err := json.Marshal(map[string]any{k: params[k]})
		if err == nil {
			err = conductor.Unmarshal(b, paramTypes[action]())
		}
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &te):
			ve.Add(path+"."+k, "must be %s, not a JSON %s", conductor.JSONKind(te.Type), te.Value)
		case err != nil:
			ve.Add(path+"."+k, "%v", err)
		}
	}
}

// walkStrings calls fn with the path and value of every string in v.
func walkStrings(v any, path expr.Path, fn func(path expr.Path, s string)) {
	switch x := v.(type) {
	case string:
		fn(path, x)
	case map[string]any:
		for _, k := range slices.Sorted(maps.Keys(x)) {
			walkStrings(x[k], append(path[:len(path):len(path)], k), fn)
		}
	case []any:
		for i, e := range x {
			walkStrings(e, append(path[:len(path):len(path)], i), fn)
		}
	}
}
