package schemas

// WorkflowRemoved removes a workflow from the executions read model (the
// Conductor remove API). Archived keeps it readable and searchable as an
// archive; otherwise its read-model documents are deleted. The workflow's
// events stay in the log, and no trigger applies to it afterwards.
type WorkflowRemoved struct {
	Archived bool  `msgpack:"arch,omitempty"`
	Time     int64 `msgpack:"ts"`
}

func (*WorkflowRemoved) EventType() string { return "workflow.removed" }

func init() { Default.Register(&WorkflowRemoved{}, 1) }
