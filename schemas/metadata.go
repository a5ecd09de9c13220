package schemas

// Metadata events: workflow and task definitions and their tags, and
// event handlers. They live
// on the FV_META stream, one subject per definition name (see package
// metadata for the subject scheme), so that every change to a name is
// ordered and guarded by that subject's last sequence.
//
// Definitions travel as the JSON the client sent, byte for byte: the log is
// the audit record of what was registered, and fields flowvault does not
// model must survive. The read model derives what GET returns from it.

// Event type names of the metadata events. They are part of the log's wire
// format: never rename one.
const (
	TypeWorkflowDefRegistered = "metadata.workflow_def_registered"
	TypeWorkflowDefRemoved    = "metadata.workflow_def_removed"
	TypeTaskDefRegistered     = "metadata.task_def_registered"
	TypeTaskDefRemoved        = "metadata.task_def_removed"
	TypeDefTagsSet            = "metadata.def_tags_set"
	TypeEventHandlerSaved     = "metadata.event_handler_saved"
	TypeEventHandlerRemoved   = "metadata.event_handler_removed"
	TypeWebhookSaved          = "metadata.webhook_saved"
	TypeWebhookRemoved        = "metadata.webhook_removed"
	TypeSchemaSaved           = "metadata.schema_saved"
	TypeSchemaRemoved         = "metadata.schema_removed"
)

// Definition kinds carried by DefTagsSet.Kind.
const (
	DefKindWorkflow = "workflow"
	DefKindTask     = "task"
)

// WorkflowDefRegistered records that version Version of workflow Name was
// created or overwritten with Def.
type WorkflowDefRegistered struct {
	Name    string `msgpack:"n"`
	Version int    `msgpack:"ver"`
	// Def is the definition's JSON exactly as the client sent it.
	Def  []byte `msgpack:"def"`
	Time int64  `msgpack:"ts"` // Unix milliseconds
	By   string `msgpack:"by,omitempty"`
}

// EventType implements Event.
func (*WorkflowDefRegistered) EventType() string { return TypeWorkflowDefRegistered }

// WorkflowDefRemoved records that version Version of workflow Name was
// unregistered.
type WorkflowDefRemoved struct {
	Name    string `msgpack:"n"`
	Version int    `msgpack:"ver"`
	Time    int64  `msgpack:"ts"` // Unix milliseconds
	By      string `msgpack:"by,omitempty"`
}

// EventType implements Event.
func (*WorkflowDefRemoved) EventType() string { return TypeWorkflowDefRemoved }

// TaskDefRegistered records that task definition Name was created or
// replaced with Def.
type TaskDefRegistered struct {
	Name string `msgpack:"n"`
	// Def is the definition's JSON exactly as the client sent it.
	Def  []byte `msgpack:"def"`
	Time int64  `msgpack:"ts"` // Unix milliseconds
	By   string `msgpack:"by,omitempty"`
}

// EventType implements Event.
func (*TaskDefRegistered) EventType() string { return TypeTaskDefRegistered }

// TaskDefRemoved records that task definition Name was unregistered.
type TaskDefRemoved struct {
	Name string `msgpack:"n"`
	Time int64  `msgpack:"ts"` // Unix milliseconds
	By   string `msgpack:"by,omitempty"`
}

// EventType implements Event.
func (*TaskDefRemoved) EventType() string { return TypeTaskDefRemoved }

// DefTag is one key/value label of a definition.
type DefTag struct {
	Key   string `msgpack:"k"`
	Value string `msgpack:"v"`
}

// DefTagsSet records the complete tag set of a definition name after a
// change: it replaces the previous set. Adding or deleting single tags is
// computed by the writer, so the event stays a plain fact.
type DefTagsSet struct {
	Kind string   `msgpack:"kind"` // DefKindWorkflow or DefKindTask
	Name string   `msgpack:"n"`
	Tags []DefTag `msgpack:"tags"`
	Time int64    `msgpack:"ts"` // Unix milliseconds
	By   string   `msgpack:"by,omitempty"`
}

// EventType implements Event.
func (*DefTagsSet) EventType() string { return TypeDefTagsSet }

// EventHandlerSaved records that event handler Name was created or
// replaced with Def.
type EventHandlerSaved struct {
	Name string `msgpack:"n"`
	// Def is the handler's JSON exactly as the client sent it.
	Def  []byte `msgpack:"def"`
	Time int64  `msgpack:"ts"` // Unix milliseconds
	By   string `msgpack:"by,omitempty"`
}

// EventType implements Event.
func (*EventHandlerSaved) EventType() string { return TypeEventHandlerSaved }

// EventHandlerRemoved records that event handler Name was removed.
type EventHandlerRemoved struct {
	Name string `msgpack:"n"`
	Time int64  `msgpack:"ts"` // Unix milliseconds
	By   string `msgpack:"by,omitempty"`
}

// EventType implements Event.
func (*EventHandlerRemoved) EventType() string { return TypeEventHandlerRemoved }

// WebhookSaved records that webhook ID was created or replaced with Def,
// its JSON (secret values are never in it: only references to secrets).
type WebhookSaved struct {
	ID   string `msgpack:"id"`
	Def  []byte `msgpack:"def"`
	Time int64  `msgpack:"ts"` // Unix milliseconds
	By   string `msgpack:"by,omitempty"`
}

// EventType implements Event.
func (*WebhookSaved) EventType() string { return TypeWebhookSaved }

// WebhookRemoved records that webhook ID was removed.
type WebhookRemoved struct {
	ID   string `msgpack:"id"`
	Time int64  `msgpack:"ts"` // Unix milliseconds
	By   string `msgpack:"by,omitempty"`
}

// EventType implements Event.
func (*WebhookRemoved) EventType() string { return TypeWebhookRemoved }

// SchemaSaved records that version Version of schema Name was created or
// overwritten with Def, its SchemaDef JSON.
type SchemaSaved struct {
	Name    string `msgpack:"n"`
	Version int    `msgpack:"ver"`
	Def     []byte `msgpack:"def"`
	Time    int64  `msgpack:"ts"` // Unix milliseconds
	By      string `msgpack:"by,omitempty"`
}

// EventType implements Event.
func (*SchemaSaved) EventType() string { return TypeSchemaSaved }

// SchemaRemoved records that version Version of schema Name was removed;
// Version 0 removes every version.
type SchemaRemoved struct {
	Name    string `msgpack:"n"`
	Version int    `msgpack:"ver,omitempty"`
	Time    int64  `msgpack:"ts"` // Unix milliseconds
	By      string `msgpack:"by,omitempty"`
}

// EventType implements Event.
func (*SchemaRemoved) EventType() string { return TypeSchemaRemoved }

func init() {
	Default.Register(&SchemaSaved{}, 1)
	Default.Register(&SchemaRemoved{}, 1)
	Default.Register(&WebhookSaved{}, 1)
	Default.Register(&WebhookRemoved{}, 1)
	Default.Register(&EventHandlerSaved{}, 1)
	Default.Register(&EventHandlerRemoved{}, 1)
	Default.Register(&WorkflowDefRegistered{}, 1)
	Default.Register(&WorkflowDefRemoved{}, 1)
	Default.Register(&TaskDefRegistered{}, 1)
	Default.Register(&TaskDefRemoved{}, 1)
	Default.Register(&DefTagsSet{}, 1)
}
