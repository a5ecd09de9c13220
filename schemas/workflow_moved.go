package schemas

// WorkflowUpgraded moves a running workflow to another version of its
// definition (Orkes's upgrade API). The tasks it holds stay as they are;
// the tasks of the new version that come before one it already reached
// are recorded as SKIPPED by the TaskScheduled records that follow in the
// same append. Input, when SetInput, replaces the workflow's input;
// InputFields, otherwise, replaces those of its fields.
type WorkflowUpgraded struct {
	Def      []byte         `msgpack:"def"`
	Input    map[string]any `msgpack:"in,omitempty"`
	SetInput bool           `msgpack:"setin,omitempty"`
	// InputFields, when not SetInput, replace those fields of the input
	// the workflow keeps, as WorkflowReset.InputFields do.
	InputFields map[string]any `msgpack:"infields,omitempty"`
	Time        int64          `msgpack:"ts"`
}

func (*WorkflowUpgraded) EventType() string { return "workflow.upgraded" }

// WorkflowJumped records that an operator moved a running workflow to the
// task Ref of its definition's top-level list (Orkes's jump API). The
// tasks that were running were canceled by the records before it; a jump
// back to a task the workflow already ran drops, as a rerun from that
// task does, the tasks Dropped (those of Ref and of the top-level tasks
// after it), so that what follows Ref is scheduled again. Ref's new
// instance follows in the same append.
type WorkflowJumped struct {
	Ref     string   `msgpack:"ref"`
	Dropped []string `msgpack:"drop,omitempty"`
	Time    int64    `msgpack:"ts"`
}

func (*WorkflowJumped) EventType() string { return "workflow.jumped" }

func init() {
	Default.Register(&WorkflowUpgraded{}, 1)
	Default.Register(&WorkflowJumped{}, 1)
}
