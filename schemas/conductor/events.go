package conductor

import (
	"encoding/json"
	"maps"
)

// EventHandler acts on the events that arrive on Event: when Condition
// holds for an event's payload, each of Actions runs, its parameters'
// ${...} expressions read from the payload. Raw keeps the JSON it was
// decoded from.
type EventHandler struct {
	Name          string        `json:"name"`
	Event         string        `json:"event"`
	Condition     string        `json:"condition,omitempty"`
	EvaluatorType string        `json:"evaluatorType,omitempty"`
	Actions       []EventAction `json:"actions"`
	Active        bool          `json:"active"`
	Description   string        `json:"description,omitempty"`
	Tags          []Tag         `json:"tags,omitempty"`
	// Set by the server: who saved the handler first and last, and when
	// (Unix ms). Its actions run as UpdatedBy.
	CreatedBy  string `json:"createdBy,omitempty"`
	UpdatedBy  string `json:"updatedBy,omitempty"`
	CreateTime int64  `json:"createTime,omitempty"`
	UpdateTime int64  `json:"updateTime,omitempty"`

	// Raw is the JSON this handler was decoded from, its scalars coerced
	// (see coerce) when they were of the wrong type.
	Raw json.RawMessage `json:"-"`
	// wasCoerced: Raw is not the JSON as given.
	wasCoerced bool
}

// UnmarshalJSON decodes the handler and keeps its raw JSON.
func (h *EventHandler) UnmarshalJSON(b []byte) error {
	type plain EventHandler
	var p plain
	raw, coerced, err := unmarshalExact(b, &p)
	if err != nil {
		return err
	}
	*h = EventHandler(p)
	h.Raw, h.wasCoerced = raw, coerced
	return nil
}

func (h *EventHandler) coerced() bool { return h.wasCoerced }

// Event handler actions (EventAction.Action).
const (
	ActionStartWorkflow           = "start_workflow"
	ActionCompleteTask            = "complete_task"
	ActionFailTask                = "fail_task"
	ActionTerminateWorkflow       = "terminate_workflow"
	ActionUpdateWorkflowVariables = "update_workflow_variables"
)

// EventAction is one action of an event handler. Its parameters stay JSON
// objects until an event arrives: any value in them may be an expression
// over the payload, a version or a workflow id alike. The one that Action
// names is read: a start_workflow's as a StartWorkflowRequest; a
// complete_task's or fail_task's as EventTaskDetails; a
// terminate_workflow's as EventTerminate; an update_workflow_variables's
// as EventUpdateVariables.
type EventAction struct {
	Action                  string         `json:"action"`
	StartWorkflow           map[string]any `json:"start_workflow,omitempty"`
	CompleteTask            map[string]any `json:"complete_task,omitempty"`
	FailTask                map[string]any `json:"fail_task,omitempty"`
	TerminateWorkflow       map[string]any `json:"terminate_workflow,omitempty"`
	UpdateWorkflowVariables map[string]any `json:"update_workflow_variables,omitempty"`
	// ExpandInlineJSON parses payload strings that hold JSON objects or
	// arrays before the parameters read them.
	ExpandInlineJSON bool `json:"expandInlineJSON,omitempty"`
}

// Params returns the parameters of the action a names (nil when absent).
func (a EventAction) Params() map[string]any {
	switch a.Action {
	case ActionStartWorkflow:
		return a.StartWorkflow
	case ActionCompleteTask:
		return a.CompleteTask
	case ActionFailTask:
		return a.FailTask
	case ActionTerminateWorkflow:
		return a.TerminateWorkflow
	case ActionUpdateWorkflowVariables:
		return a.UpdateWorkflowVariables
	}
	return nil
}

// InlineWorkflowDef is the start_workflow parameter that holds the
// started workflow's definition. Its expressions are that workflow's,
// evaluated as it runs, not over the event.
const InlineWorkflowDef = "workflowDef"

// EventParams returns the parameters that are expressions over the
// event: Params without a start_workflow's inline definition.
func (a EventAction) EventParams() map[string]any {
	params := a.Params()
	if a.Action != ActionStartWorkflow || params[InlineWorkflowDef] == nil {
		return params
	}
	params = maps.Clone(params)
	delete(params, InlineWorkflowDef)
	return params
}

// EventTaskDetails names the task that a complete_task or fail_task action
// updates (by workflowId and taskRefName, or by taskId) and its output.
type EventTaskDetails struct {
	WorkflowID  string         `json:"workflowId,omitempty"`
	TaskRefName string         `json:"taskRefName,omitempty"`
	TaskID      string         `json:"taskId,omitempty"`
	Output      map[string]any `json:"output,omitempty"`
}

// EventTerminate names the workflow a terminate_workflow action ends.
type EventTerminate struct {
	WorkflowID        string `json:"workflowId"`
	TerminationReason string `json:"terminationReason,omitempty"`
}

// EventUpdateVariables is what an update_workflow_variables action sets.
type EventUpdateVariables struct {
	WorkflowID  string         `json:"workflowId"`
	Variables   map[string]any `json:"variables"`
	AppendArray bool           `json:"appendArray,omitempty"`
}
