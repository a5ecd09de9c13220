package api

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/flowvault/flowvault/engine/expr"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/masking"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// An event handler is stored and shown as given, as a schedule is: a
// start_workflow action's input setting a field its workflow masks
// (maskedFields) to data of the handler's own is refused, as is an
// action's _secrets or _masked data of its own (any definition's masked
// fields when an expression names the workflow), and such a field or data
// stored before reads "***". Data from the event ("${card}") is the
// started workflow's to seal, and the expression is definition text,
// shown as written; text beside it ("pin-${pin}") is the handler's own.

// refuseMaskedHandlerInput refuses handlers whose actions hold _secrets or
// _masked data of their own, or whose start_workflow input sets a field
// the workflow masks to data of its own. Fields are named as the store
// names them: "[j].actions[i]…" in a list (listed), else "actions[i]…".
func (s *Server) refuseMaskedHandlerInput(ctx context.Context, handlers []*conductor.EventHandler, listed bool) error {
	ve := &fault.ValidationError{}
	for j, h := range handlers {
		if h == nil {
			continue
		}
		prefix := ""
		if listed {
			prefix = fmt.Sprintf("[%d].", j)
		}
		for i, a := range h.Actions {
			ownSecrets(a.Action, a.Params(), fmt.Sprintf("%sactions[%d].%s", prefix, i, a.Action), false, func(path string) {
				ve.Add(path, "%s", "an event handler is stored in plain text, so it may not hold _secrets or _masked data of its own: "+
					"give it from the event (expressions and nothing else, such as ${token}), "+
					"or store the value with PUT /api/secrets/{key} and reference it as ${workflow.secrets.NAME} in the workflow definition")
			})
			fields, err := s.handlerMaskedFields(ctx, a)
			if err != nil {
				return err
			}
			for _, f := range fields {
				ve.Add(fmt.Sprintf("%sactions[%d].%s.input.%s", prefix, i, a.Action, f), "%s",
					"the workflow masks this field (a workflow or version an expression may name does), and an event handler is stored in plain text: give it from the event (expressions and nothing else, such as ${"+f+"}), "+
						"or store the value with PUT /api/secrets/{key} and reference it as ${workflow.secrets.NAME} in the workflow definition")
			}
		}
	}
	return ve.Err()
}

// maskedHandler returns h's JSON with each _secrets or _masked value of
// an action, and each start_workflow input field that its workflow
// masks, that holds data of the handler's own reading "***", encoded
// again (its members then in name order); any other as stored. A handler
// whose workflow's definition cannot be looked up is not shown
// (maskedFields).
func (s *Server) maskedHandler(ctx context.Context, h *conductor.EventHandler) (json.RawMessage, error) {
	masked := map[int][]string{}
	keyed := false // an action holds _secrets or _masked data of its own
	for i, a := range h.Actions {
		ownSecrets(a.Action, a.Params(), "", false, func(string) { keyed = true })
		fields, err := s.handlerMaskedFields(ctx, a)
		if err != nil {
			return nil, err
		}
		if len(fields) > 0 {
			masked[i] = fields
		}
	}
	if len(masked) == 0 && !keyed {
		return h.Raw, nil
	}
	var doc map[string]any
	if err := conductor.Unmarshal(h.Raw, &doc); err != nil {
		return nil, fmt.Errorf("event handler %s: %w", h.Name, err)
	}
	actions, _ := doc["actions"].([]any)
	if keyed {
		for i, a := range h.Actions {
			action, _ := actions[i].(map[string]any)
			params, _ := action[a.Action].(map[string]any)
			ownSecrets(a.Action, params, "", true, func(string) {})
		}
	}
	for i, fields := range masked {
		action, _ := actions[i].(map[string]any)
		params, _ := action[conductor.ActionStartWorkflow].(map[string]any)
		input, _ := params["input"].(map[string]any)
		params["input"] = masking.Fields(input, fields)
	}
	return json.Marshal(doc)
}

// handlerMaskedFields returns the fields of a start_workflow action's
// input that its workflow masks and that hold data of the handler's own
// (a value no expression over the event makes, at any depth). An action
// whose workflow an expression names may start any workflow, and one
// whose version an expression gives any version of it, so its fields
// are those any of them masks (anyMaskedFields), looked up only when its
// input holds data of its own.
func (s *Server) handlerMaskedFields(ctx context.Context, a conductor.EventAction) ([]string, error) {
	input, _ := a.StartWorkflow["input"].(map[string]any)
	if a.Action != conductor.ActionStartWorkflow || len(input) == 0 {
		return nil, nil
	}
	var fields []string
	var err error
	req, named := startedBy(a.StartWorkflow)
	if named {
		fields, err = s.maskedFields(ctx, req)
	}
	// The event chooses the workflow, or its version, that an expression
	// names: the action may start any of them.
	v := a.StartWorkflow["version"]
	chosen := !named || req.WorkflowDef == nil && v != nil && !written(v)
	if err == nil && chosen && slices.ContainsFunc(slices.Collect(maps.Values(input)), ownData) {
		name := ""
		if named {
			name = req.Name
		}
		var more []string
		more, err = s.anyMaskedFields(ctx, name)
		fields = append(fields, more...)
	}
	if err != nil {
		return nil, err
	}
	slices.Sort(fields)
	var out []string
	for _, f := range slices.Compact(fields) {
		if v, set := input[f]; set && ownData(v) {
			out = append(out, f)
		}
	}
	return out, nil
}

// anyMaskedFields are the input fields any version of the registered
// definitions of name masks, of every name when name is "". A list that
// fails fails, unavailable, as maskedFields' lookup does.
func (s *Server) anyMaskedFields(ctx context.Context, name string) ([]string, error) {
	if s.deps.Definitions == nil {
		return nil, nil
	}
	defs, err := s.deps.Definitions.ListWorkflowDefs(ctx)
	if err != nil {
		return nil, fmt.Errorf("list workflow definitions: %v: %w", err, fault.ErrUnavailable)
	}
	var out []string
	for _, def := range defs {
		if name == "" || def.Name == name {
			out = append(out, def.MaskedFields...)
		}
	}
	return out, nil
}

// ownSecrets calls found with the path under path of each _secrets or
// _masked key, at any depth of an action's params, whose value holds data
// of the handler's own (ownData), and, when mask, has that value read
// "***" in params. A start_workflow's inline workflowDef is left out: it
// is definition text, the started workflow's, shown as a definition is.
func ownSecrets(action string, params map[string]any, path string, mask bool, found func(path string)) {
	skip := ""
	if action == conductor.ActionStartWorkflow {
		skip = conductor.InlineWorkflowDef
	}
	ownSecretsIn(params, skip, path, mask, found)
}

// ownSecretsIn is ownSecrets for v, at path, leaving out its member skip
// unless skip is "" (a member named "" is walked as any other).
func ownSecretsIn(v any, skip, path string, mask bool, found func(path string)) {
	switch x := v.(type) {
	case map[string]any:
		for _, k := range slices.Sorted(maps.Keys(x)) {
			switch p := path + "." + k; {
			case skip != "" && k == skip:
			case !masking.IsMaskedKey(k):
				ownSecretsIn(x[k], "", p, mask, found)
			case ownData(x[k]):
				found(p)
				if mask {
					x[k] = masking.Mask
				}
			}
		}
	case []any:
		for i, e := range x {
			ownSecretsIn(e, "", fmt.Sprintf("%s[%d]", path, i), mask, found)
		}
	}
}

// startedBy is the request naming the workflow a start_workflow action's
// params start, when no expression names it: its inline definition, or
// its name and version (the latest when an expression gives the version,
// whose other versions handlerMaskedFields looks at too).
func startedBy(params map[string]any) (*conductor.StartWorkflowRequest, bool) {
	named := map[string]any{}
	switch def, name := params[conductor.InlineWorkflowDef], params["name"]; {
	case def != nil:
		named[conductor.InlineWorkflowDef] = def
	case written(name):
		named["name"] = name
		if v := params["version"]; written(v) {
			named["version"] = v
		}
	default:
		return nil, false
	}
	b, err := json.Marshal(named)
	var req conductor.StartWorkflowRequest
	if err == nil {
		err = conductor.Unmarshal(b, &req)
	}
	if err != nil {
		return nil, false
	}
	return &req, true
}

// ownData reports whether v holds a value no expression over the event
// makes: a string with any text of its own beside its expressions, as
// the listener evaluates it (expr.Spelled: "pin ${x}", an escaped
// "$${x}", which is text), a number, a boolean. A masked value with a
// literal part is a literal in the stored handler all the same.
func ownData(v any) bool {
	switch x := v.(type) {
	case nil:
		return false
	case string:
		return expr.Spelled(x)
	case map[string]any:
		for _, e := range x {
			if ownData(e) {
				return true
			}
		}
		return false
	case []any:
		for _, e := range x {
			if ownData(e) {
				return true
			}
		}
		return false
	}
	return true
}

// written reports whether a parameter is given as is: set, and no string
// holding an expression.
func written(v any) bool {
	s, ok := v.(string)
	return v != nil && (!ok || !strings.Contains(s, "${"))
}
