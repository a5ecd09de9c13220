package metadata

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/projections"
)

// ProjectionName is the read model's key space and checkpoint name.
const ProjectionName = "metadata"

// Subject prefixes on the FV_META stream.
const (
	workflowSubjectPrefix = "fv.meta.wfdef."
	taskSubjectPrefix     = "fv.meta.taskdef."
	eventSubjectPrefix    = "fv.meta.event."
	webhookSubjectPrefix  = "fv.meta.webhook."
	schemaSubjectPrefix   = "fv.meta.schema."
)

// WorkflowSubject is the subject that holds every version of workflow name.
func WorkflowSubject(name string) string { return workflowSubjectPrefix + eventlog.Token(name) }

// TaskSubject is the subject of task definition name.
func TaskSubject(name string) string { return taskSubjectPrefix + eventlog.Token(name) }

// EventHandlerSubject is the subject of event handler name.
func EventHandlerSubject(name string) string { return eventSubjectPrefix + eventlog.Token(name) }

// WebhookSubject is the subject of webhook id.
func WebhookSubject(id string) string { return webhookSubjectPrefix + eventlog.Token(id) }

// SchemaSubject is the subject that holds every version of schema name.
func SchemaSubject(name string) string { return schemaSubjectPrefix + eventlog.Token(name) }

// Key layout inside the projection's key space. Definition names never
// contain control characters (see validName), so the 0x00 after a workflow
// name ends it unambiguously and keys sort by name, then version.
//
//	w/<name>\x00<version uint32 BE>  storedDef (msgpack)
//	t/<name>                         storedDef (msgpack)
//	e/<name>                         storedDef of an event handler (msgpack)
//	h/<id>                           storedDef of a webhook (msgpack)
//	j/<name>\x00<version uint32 BE>  storedDef of a schema (msgpack)
//	g/<kind>/<name>                  []schemas.DefTag (msgpack)
//	o/<name>                         a workflow name's owner: who registered its first version
//	s/<subject>                      last sequence of subject (uint64 BE)
//	u/<task>\x00<workflow>\x00<version uint32 BE>
//	                                 taskUse: a workflow version names a task (msgpack)
//	v/<workflow>\x00<version uint32 BE>
//	                                 []string: the task names its u/ keys hold (msgpack)
//	n/<started>\x00<workflow>\x00<version uint32 BE>
//	                                 writers: a workflow version starts a workflow by name (msgpack)
//	m/<workflow>\x00<version uint32 BE>
//	                                 []string: the workflow names its n/ keys hold (msgpack)
//
// Names in u/ and n/ keys are names a definition could have (see
// checkName): no control character, so the 0x00 after one ends it.
const (
	workflowKeyPrefix = "w/"
	taskKeyPrefix     = "t/"
	eventKeyPrefix    = "e/"
	webhookKeyPrefix  = "h/"
	schemaKeyPrefix   = "j/"
	tagsKeyPrefix     = "g/"
	ownerKeyPrefix    = "o/"
	seqKeyPrefix      = "s/"
)

func workflowPrefix(name string) []byte {
	k := make([]byte, 0, len(workflowKeyPrefix)+len(name)+5)
	return append(append(append(k, workflowKeyPrefix...), name...), 0)
}

func workflowKey(name string, version int) []byte {
	return binary.BigEndian.AppendUint32(workflowPrefix(name), uint32(version))
}

// parseWorkflowKey splits a key under workflowKeyPrefix (with the prefix).
func parseWorkflowKey(k []byte) (name string, version int, ok bool) {
	k = k[len(workflowKeyPrefix):]
	if len(k) < 5 || k[len(k)-5] != 0 {
		return "", 0, false
	}
	return string(k[:len(k)-5]), int(binary.BigEndian.Uint32(k[len(k)-4:])), true
}

func taskKey(name string) []byte { return []byte(taskKeyPrefix + name) }

func eventHandlerKey(name string) []byte { return []byte(eventKeyPrefix + name) }

func webhookKey(id string) []byte { return []byte(webhookKeyPrefix + id) }

func schemaPrefix(name string) []byte {
	k := make([]byte, 0, len(schemaKeyPrefix)+len(name)+5)
	return append(append(append(k, schemaKeyPrefix...), name...), 0)
}

func schemaKey(name string, version int) []byte {
	return binary.BigEndian.AppendUint32(schemaPrefix(name), uint32(version))
}

func tagsKey(kind Kind, name string) []byte { return []byte(tagsKeyPrefix + string(kind) + "/" + name) }

// ownerKey holds who owns workflow name: who registered its first version
// while it had none.
func ownerKey(name string) []byte { return []byte(ownerKeyPrefix + name) }

func seqKey(subject string) []byte { return []byte(seqKeyPrefix + subject) }

// kvReader is the read side shared by the Pebble read model
// (projections.Reader, *projections.Batch) and the in-memory fold of one
// subject (projections.MemKV). Get returns projections.ErrNotFound for absent keys.
type kvReader interface {
	Get(key []byte) ([]byte, error)
	Scan(prefix []byte, fn func(key, value []byte) bool) error
}

// kvWriter is what applying events needs.
type kvWriter interface {
	kvReader
	Set(key, value []byte) error
	Delete(key []byte) error
}

var (
	_ kvReader = projections.Reader{}
	_ kvWriter = (*projections.Batch)(nil)
	_ kvWriter = projections.MemKV{}
)

// subjectSeq reads the last sequence of subject recorded in r (0: none).
func subjectSeq(r kvReader, subject string) (uint64, error) {
	v, err := r.Get(seqKey(subject))
	if errors.Is(err, projections.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read sequence of %s: %w", subject, err)
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("sequence of %s: %d bytes, want 8", subject, len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}
