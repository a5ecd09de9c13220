package auth

import (
	"errors"
	"fmt"

	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// Requirement is one access a request needs.
type Requirement struct {
	Access Access
	Target Target
}

// StartRequires lists what starting req asks of whoever starts it:
// EXECUTE on the definition; for a definition sent inline, CREATE on its
// name, UPDATE on a registered definition of that name (the inline one
// would run under its name, sharing its idempotency keys and readers),
// and EXECUTE on the failureWorkflow it names (which starts, unasked,
// when a run fails). lookup looks a registered definition up by name:
// fault.ErrNotFound when there is none. Any other error of it fails the
// list, unavailable: a name taken but not seen would be asked CREATE
// alone.
func StartRequires(req conductor.StartWorkflowRequest, lookup func(name string) error) ([]Requirement, error) {
	def := req.WorkflowDef
	if def == nil {
		return []Requirement{{Execute, Target{Type: TargetWorkflowDef, ID: req.Name}}}, nil
	}
	name := InlineName(req)
	out := []Requirement{{Create, Target{Type: TargetWorkflowDef, ID: name}}}
	if lookup != nil {
		switch err := LookupFault(name, lookup(name)); {
		case err == nil:
			out = append(out, Requirement{Update, Target{Type: TargetWorkflowDef, ID: name}})
		case !errors.Is(err, fault.ErrNotFound):
			return nil, err
		}
	}
	return append(out, FailureWorkflowRequires(def)...), nil
}

// InlineName is the name a start of req's inline definition runs under:
// the definition's, or the request's when the definition names none (the
// start names it so).
func InlineName(req conductor.StartWorkflowRequest) string {
	if req.WorkflowDef == nil || req.WorkflowDef.Name == "" {
		return req.Name
	}
	return req.WorkflowDef.Name
}

// LookupFault is what a lookup of workflow definition name that failed
// with err tells an access decision: not found, or, when it could not
// tell (the log not answering for a definition the read model lacks),
// unavailable.
func LookupFault(name string, err error) error {
	if err == nil || errors.Is(err, fault.ErrNotFound) {
		return err
	}
	return fmt.Errorf("look up workflow definition %s: %v: %w", name, err, fault.ErrUnavailable)
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
