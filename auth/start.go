package auth

import "github.com/flowvault/flowvault/schemas/conductor"

// Requirement is one access a request needs.
type Requirement struct {
	Access Access
	Target Target
}

// StartRequires lists what starting req asks of whoever starts it:
// EXECUTE on the definition; for a definition sent inline, CREATE on its
// name, UPDATE on a registered definition of that name (registered
// reports one: the inline one would run under its name, sharing its
// idempotency keys and readers), and EXECUTE on the failureWorkflow it
// names (which starts, unasked, when a run fails).
func StartRequires(req conductor.StartWorkflowRequest, registered func(name string) bool) []Requirement {
	def := req.WorkflowDef
	if def == nil {
		return []Requirement{{Execute, Target{Type: TargetWorkflowDef, ID: req.Name}}}
	}
	out := []Requirement{{Create, Target{Type: TargetWorkflowDef, ID: def.Name}}}
	if registered != nil && registered(def.Name) {
		out = append(out, Requirement{Update, Target{Type: TargetWorkflowDef, ID: def.Name}})
	}
	return append(out, FailureWorkflowRequires(def)...)
}

// FailureWorkflowRequires is what choosing def's failureWorkflow asks of
// def's author: EXECUTE on it, since it starts as the failed run's
// creator without asking them (the author is asked again when it starts).
func FailureWorkflowRequires(def *conductor.WorkflowDef) []Requirement {
	if def == nil || def.FailureWorkflow == "" {
		return nil
	}
	return []Requirement{{Execute, Target{Type: TargetWorkflowDef, ID: def.FailureWorkflow}}}
}
