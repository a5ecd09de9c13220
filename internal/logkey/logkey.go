// Package logkey holds the attribute keys flowvault logs with, so that every
// package spells them the same way and log queries can rely on them.
package logkey

const (
	Component  = "component"
	Stream     = "stream"
	Subject    = "subject"
	Seq        = "seq"
	Projection = "projection"
	Err        = "err"
	Addr       = "addr"
	URL        = "url"
	Dir        = "dir"
	Mode       = "mode"
	Count      = "count"
	Duration   = "duration"
	WorkflowID = "workflow_id"
	TaskID     = "task_id"
	TaskType   = "task_type"
	Principal  = "principal"
	Version    = "version"
	Method     = "method"
	Path       = "path"
	Status     = "status"
	Secret     = "secret"
	Event      = "event"
	KeyID      = "key_id" // an access key's id (never its secret)
	Reason     = "reason"
	User       = "user"       // a NATS user's public key (never its seed)
	Account    = "account"    // a NATS account's public key
	Expires    = "expires"    // when credentials stop working
	Handler    = "handler"    // an event handler's name
	Action     = "action"     // an event handler's action
	Index      = "index"      // a position in a list
	Webhook    = "webhook"    // an incoming webhook's id
	Trigger    = "trigger"    // what a workflow decision answered (engine.TriggerName)
	Suppressed = "suppressed" // like lines left out before this one
	Layout     = "layout"     // the layout a read model was written in
	Stack      = "stack"      // a goroutine's stack: functions and lines, no values
	NATS       = "nats"       // the NATS server a node uses, without credentials
	Free       = "free"       // bytes free on a file system
	Need       = "need"       // bytes a file system must have free
	Consumer   = "consumer"   // a JetStream durable consumer's name
	Child      = "child_id"   // a sub-workflow's id, beside its parent's WorkflowID
	Want       = "want"       // the setting this engine asks for, beside another one it found (Duration)
	Was        = "was"        // a setting's value before it changed, beside the one now (Duration)
	Every      = "every"      // how often something is done, as it now is
	Page       = "page"       // a key page's id (kp.…), never its keys
)
