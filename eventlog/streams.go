package eventlog

import (
	"fmt"
	"strings"
	"time"
)

// StreamKind says how a stream keeps its messages.
type StreamKind int

const (
	// EventStream keeps every record forever (limits retention, file
	// storage). This is the source of truth that projections replay.
	EventStream StreamKind = iota
	// WorkQueue keeps a message until one consumer acknowledges it (file
	// storage): commands that must not be lost but are done once handled.
	WorkQueue
	// Ephemeral keeps messages in memory only, until acknowledged. It is for
	// data that can be rebuilt from the log and must not reach disk.
	Ephemeral
)

// Stream describes one of flowvault's JetStream streams.
type Stream struct {
	Name        string
	Subjects    []string
	Kind        StreamKind
	Description string
}

// The streams flowvault creates at start. Names and subjects are part of
// the on-disk format and of the worker protocol: never rename one.
var (
	Workflows = Stream{Name: "FV_WF", Subjects: []string{"fv.wf.>"}, Kind: EventStream,
		Description: "workflow instance events, one subject per workflow id"}
	Metadata = Stream{Name: "FV_META", Subjects: []string{"fv.meta.>"}, Kind: EventStream,
		Description: "workflow and task definitions"}
	Secrets = Stream{Name: "FV_SECRET", Subjects: []string{"fv.secret.>"}, Kind: EventStream,
		Description: "secret versions, values encrypted before append"}
	Access = Stream{Name: "FV_AUTH", Subjects: []string{"fv.auth.>"}, Kind: EventStream,
		Description: "identities, keys and grants"}
	Audit = Stream{Name: "FV_AUDIT", Subjects: []string{"fv.audit.>"}, Kind: EventStream,
		Description: "audit trail: who read or changed what, never a value"}
	// Producers publish to fv.cmd.start.<workflow>.<principal>, which the
	// stream must not capture: an engine stores each request under
	// fv.cmd.producer, its message id under the principal's name, as the
	// stream's duplicate window would otherwise let one producer's ids
	// drop another's requests.
	Commands = Stream{Name: "FV_CMD", Subjects: []string{"fv.cmd.start.*", "fv.cmd.producer.>"}, Kind: WorkQueue,
		Description: "start requests of engines (fv.cmd.start.<workflow>) and producers (fv.cmd.producer.<workflow>.<principal>)"}
	Dispatch = Stream{Name: "FV_DISPATCH", Subjects: []string{"fv.task.>", "fv.taskp.>"}, Kind: Ephemeral,
		Description: "task availability for workers; rebuilt from the log if lost"}
)

// AllStreams lists every stream Open ensures exists.
var AllStreams = []Stream{Workflows, Metadata, Secrets, Access, Audit, Commands, Dispatch}

// streamFor returns the stream that captures subject.
// MaxSubjectLen bounds a subject the log appends to or reads, in bytes:
// the NATS server closes a connection whose protocol line is past its
// max_control_line (4 KiB by default), and the log's connection carries
// every append and read of the engine. A definition's name (at most 256
// bytes, escaped three to one at worst) stays well under it.
const MaxSubjectLen = 1024

// streamOf returns the stream that holds subject, or an error naming op
// and subject (its start alone when it is past MaxSubjectLen: the error
// may be logged and answered).
func streamOf(op, subject string) (Stream, error) {
	if len(subject) > MaxSubjectLen {
		return Stream{}, fmt.Errorf("%s %.64s… (%d bytes, at most %d): %w", op, subject, len(subject), MaxSubjectLen, ErrInvalidSubject)
	}
	s, ok := streamFor(subject)
	if !ok {
		return Stream{}, fmt.Errorf("%s %s: %w", op, subject, ErrInvalidSubject)
	}
	return s, nil
}

func streamFor(subject string) (Stream, bool) {
	for _, s := range AllStreams {
		for _, pat := range s.Subjects {
			if strings.HasSuffix(pat, ".>") && strings.HasPrefix(subject, pat[:len(pat)-1]) {
				return s, true
			}
		}
	}
	return Stream{}, false
}

// DispatchMaxAge bounds how long an unclaimed dispatch message lives in
// memory; the engine re-dispatches from the log after that.
const DispatchMaxAge = 24 * time.Hour
