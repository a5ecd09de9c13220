package secrets

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/internal/valuename"
	"github.com/flowvault/flowvault/projections"
	"github.com/flowvault/flowvault/schemas"
)

// ProjectionName is the read model's key space and checkpoint name.
const ProjectionName = "secrets"

// Subjects on the FV_SECRET stream.
const (
	secretSubjectPrefix = "fv.secret."
	envSubjectPrefix    = "fv.secret.env."
)

// SecretSubject is the subject of secret name (a valid name is one token).
func SecretSubject(name string) string { return secretSubjectPrefix + eventlog.Token(name) }

// EnvSubject is the subject of environment value name.
func EnvSubject(name string) string { return envSubjectPrefix + eventlog.Token(name) }

// Key layout inside the projection's key space. Names never contain 0x00,
// so the 0x00 after a name ends it unambiguously.
//
//	s/<name>                     storedSecret: metadata, never the value
//	c/<name>                     storedCipher: the current version's ciphertext
//	v/<name>\x00<version u32 BE> VersionInfo of every live version
//	e/<name>                     storedEnv
//	q/<subject>                  subjectState: last sequence, last version
//	t/<name>\x00<len(wf) uvarint><wf><task>
//	                             taskWrite: the version a workflow task wrote
//
// A t/ entry outlives its version: a delete keeps it (see applyEvent).
const (
	secretKeyPrefix  = "s/"
	cipherKeyPrefix  = "c/"
	versionKeyPrefix = "v/"
	envKeyPrefix     = "e/"
	subjectKeyPrefix = "q/"
	taskKeyPrefix    = "t/"
)

func secretKey(name string) []byte { return []byte(secretKeyPrefix + name) }
func cipherKey(name string) []byte { return []byte(cipherKeyPrefix + name) }
func envKey(name string) []byte    { return []byte(envKeyPrefix + name) }
func subjectKey(s string) []byte   { return []byte(subjectKeyPrefix + s) }

func versionPrefix(name string) []byte {
	return append([]byte(versionKeyPrefix+name), 0)
}

func versionKey(name string, v int) []byte {
	return binary.BigEndian.AppendUint32(versionPrefix(name), uint32(v))
}

// taskKey is the key of what task taskID of workflow wfID wrote of secret
// name. The workflow id is length-prefixed: ids are the engine's, but one
// holding a 0x00 must not make two tasks' keys meet.
func taskKey(name, wfID, taskID string) []byte {
	k := append([]byte(taskKeyPrefix+name), 0)
	k = binary.AppendUvarint(k, uint64(len(wfID)))
	return append(append(k, wfID...), taskID...)
}

// storedSecret is a secret's metadata. It holds no value.
type storedSecret struct {
	Version     int                 `msgpack:"ver"`
	Fingerprint string              `msgpack:"fp"`
	Size        int                 `msgpack:"size"`
	CreateTime  int64               `msgpack:"ct"`
	CreatedBy   string              `msgpack:"cb,omitempty"`
	UpdateTime  int64               `msgpack:"ut"`
	UpdatedBy   string              `msgpack:"ub,omitempty"`
	Tags        []schemas.SecretTag `msgpack:"tags,omitempty"`
}

// storedCipher is the current version's sealed value and key reference.
type storedCipher struct {
	Version    int    `msgpack:"ver"`
	KeyID      string `msgpack:"key"`
	Ciphertext []byte `msgpack:"ct"`
}

// VersionInfo is the audit record of one secret version: who wrote it,
// when, and its value's fingerprint. Never the value.
type VersionInfo struct {
	Version     int    `msgpack:"ver" json:"version"`
	Time        int64  `msgpack:"ts" json:"time"` // Unix milliseconds
	By          string `msgpack:"by,omitempty" json:"by"`
	Fingerprint string `msgpack:"fp" json:"fingerprint"`
	Size        int    `msgpack:"size" json:"size"`
}

// taskWrite is the version of a secret a workflow task wrote (ByTask),
// for WrittenByTask to read in one lookup rather than among every version.
type taskWrite struct {
	Version int `msgpack:"ver"`
}

// storedEnv is an environment value.
type storedEnv struct {
	Value      string              `msgpack:"val"`
	CreateTime int64               `msgpack:"ct"`
	CreatedBy  string              `msgpack:"cb,omitempty"`
	UpdateTime int64               `msgpack:"ut"`
	UpdatedBy  string              `msgpack:"ub,omitempty"`
	Tags       []schemas.SecretTag `msgpack:"tags,omitempty"`
}

// subjectState is what a writer needs of a subject: the sequence to expect
// and, for secrets, the last version it had (versions continue after a
// delete, so a version number is never reused for a name).
type subjectState struct {
	Seq         uint64 `msgpack:"seq"`
	LastVersion int    `msgpack:"lv,omitempty"`
}

// Projection folds the FV_SECRET stream into the secrets read model. It is
// stateless; run it with a projections.Runner over eventlog.Secrets.
type Projection struct{}

var _ projections.Projection = Projection{}

// Name implements projections.Projection.
func (Projection) Name() string { return ProjectionName }

// Layout implements projections.Layouter: 2 indexes the version each
// workflow task wrote (t/, WrittenByTask) and no longer names the task in
// each version (v/); a read model in layout 1, which found a task's
// version only by reading them all, is rebuilt from the log, which
// indexes the versions written before the upgrade.
func (Projection) Layout() int { return 2 }

// Apply implements projections.Projection. Undecodable records and events
// that do not belong on their subject are poison; unknown event types are
// skipped, so that a newer writer's additions do not stop an older reader.
func (Projection) Apply(b *projections.Batch, rec eventlog.Record) error {
	return applyRecord(b, rec)
}

// kvReader is the read side shared by the Pebble read model and the
// in-memory fold of one subject (projections.MemKV). Get returns
// projections.ErrNotFound for absent keys.
type kvReader interface {
	Get(key []byte) ([]byte, error)
	Scan(prefix []byte, fn func(key, value []byte) bool) error
}

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

func isSecretType(t string) bool {
	switch t {
	case schemas.TypeSecretVersionPut, schemas.TypeSecretDeleted, schemas.TypeSecretTagsSet,
		schemas.TypeEnvValuePut, schemas.TypeEnvValueDeleted, schemas.TypeEnvTagsSet:
		return true
	}
	return false
}

// applyRecord applies rec to kv. The Pebble batch and the in-memory fold
// must produce the same keys and values.
func applyRecord(kv kvWriter, rec eventlog.Record) error {
	if !strings.HasPrefix(rec.Subject, secretSubjectPrefix) {
		return nil
	}
	events := make([]schemas.Event, 0, len(rec.Events))
	for _, env := range rec.Events {
		if !isSecretType(env.Type) {
			continue
		}
		ev, err := schemas.Default.Decode(env)
		if err != nil {
			return err
		}
		if err := checkEvent(rec.Subject, ev); err != nil {
			return fmt.Errorf("%s #%d event %s: %w", rec.Subject, rec.Seq, env.ID, err)
		}
		events = append(events, ev)
	}
	st, err := readSubject(kv, rec.Subject)
	if err != nil {
		return err
	}
	for _, ev := range events {
		if err := applyEvent(kv, ev, &st); err != nil {
			return fmt.Errorf("%s #%d: %w", rec.Subject, rec.Seq, err)
		}
	}
	st.Seq = rec.Seq
	return setMsgpack(kv, subjectKey(rec.Subject), &st)
}

// checkEvent refuses events applyEvent could not apply or that belong to
// another subject.
func checkEvent(subject string, ev schemas.Event) error {
	poison := func(format string, args ...any) error {
		return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), projections.ErrPoison)
	}
	var name, want string
	var nameErr error
	switch e := ev.(type) {
	case *schemas.SecretVersionPut:
		if e.Version < 1 || e.KeyID == "" || len(e.Ciphertext) == 0 {
			return poison("secret version %d without key or ciphertext", e.Version)
		}
		name, want, nameErr = e.Name, SecretSubject(e.Name), valuename.Check("secret", e.Name)
	case *schemas.SecretDeleted:
		name, want, nameErr = e.Name, SecretSubject(e.Name), valuename.Check("secret", e.Name)
	case *schemas.SecretTagsSet:
		name, want, nameErr = e.Name, SecretSubject(e.Name), valuename.Check("secret", e.Name)
	case *schemas.EnvValuePut:
		name, want, nameErr = e.Name, EnvSubject(e.Name), CheckEnvName(e.Name)
	case *schemas.EnvValueDeleted:
		name, want, nameErr = e.Name, EnvSubject(e.Name), CheckEnvName(e.Name)
	case *schemas.EnvTagsSet:
		name, want, nameErr = e.Name, EnvSubject(e.Name), CheckEnvName(e.Name)
	default:
		return poison("unexpected event %T", ev)
	}
	if nameErr != nil || subject != want {
		return poison("name %q does not belong on subject %s", valuename.Shorten(name), subject)
	}
	return nil
}

func applyEvent(kv kvWriter, ev schemas.Event, st *subjectState) error {
	switch e := ev.(type) {
	case *schemas.SecretVersionPut:
		s, found, err := readSecret(kv, e.Name)
		if err != nil {
			return err
		}
		if !found {
			s = storedSecret{CreateTime: e.Time, CreatedBy: e.By}
		}
		s.Version, s.Fingerprint, s.Size, s.UpdateTime, s.UpdatedBy = e.Version, e.Fingerprint, e.Size, e.Time, e.By
		if err := setMsgpack(kv, secretKey(e.Name), &s); err != nil {
			return err
		}
		if err := setMsgpack(kv, cipherKey(e.Name), &storedCipher{Version: e.Version, KeyID: e.KeyID, Ciphertext: e.Ciphertext}); err != nil {
			return err
		}
		st.LastVersion = max(st.LastVersion, e.Version)
		if err := setMsgpack(kv, versionKey(e.Name, e.Version), &VersionInfo{Version: e.Version, Time: e.Time, By: e.By, Fingerprint: e.Fingerprint, Size: e.Size}); err != nil {
			return err
		}
		return indexTaskWrite(kv, e)
	case *schemas.SecretDeleted:
		// The versions go, their t/ entries stay: a task that wrote a
		// version still wrote it once the secret is deleted, and run
		// again (its engine died before its result was recorded) it must
		// not create the secret a user deleted since. The entries grow as
		// the log does, one per task's write, and a rebuild makes the same.
		var keys [][]byte
		err := kv.Scan(versionPrefix(e.Name), func(k, _ []byte) bool {
			keys = append(keys, bytes.Clone(k))
			return true
		})
		if err != nil {
			return err
		}
		keys = append(keys, secretKey(e.Name), cipherKey(e.Name))
		for _, k := range keys {
			if err := kv.Delete(k); err != nil {
				return err
			}
		}
		st.LastVersion = max(st.LastVersion, e.Version)
		return nil
	case *schemas.SecretTagsSet:
		s, found, err := readSecret(kv, e.Name)
		if err != nil || !found {
			return err // the writer checked it exists; a delete raced: nothing to tag
		}
		s.Tags = e.Tags
		return setMsgpack(kv, secretKey(e.Name), &s)
	case *schemas.EnvValuePut:
		v, found, err := readEnv(kv, e.Name)
		if err != nil {
			return err
		}
		if !found {
			v = storedEnv{CreateTime: e.Time, CreatedBy: e.By}
		}
		v.Value, v.UpdateTime, v.UpdatedBy = e.Value, e.Time, e.By
		return setMsgpack(kv, envKey(e.Name), &v)
	case *schemas.EnvValueDeleted:
		return kv.Delete(envKey(e.Name))
	case *schemas.EnvTagsSet:
		v, found, err := readEnv(kv, e.Name)
		if err != nil || !found {
			return err
		}
		v.Tags = e.Tags
		return setMsgpack(kv, envKey(e.Name), &v)
	}
	return nil
}

// indexTaskWrite records which version the workflow task that put e
// wrote. A task's first version is kept: the log of a version before
// WrittenByTask may hold two by one task run again, and the first was its
// outcome.
func indexTaskWrite(kv kvWriter, e *schemas.SecretVersionPut) error {
	if e.TaskID == "" {
		return nil // written through the API
	}
	key := taskKey(e.Name, e.WorkflowID, e.TaskID)
	var w taskWrite
	if found, err := getMsgpack(kv, key, &w); err != nil || found {
		return err
	}
	return setMsgpack(kv, key, &taskWrite{Version: e.Version})
}

// readTaskWrite returns the version task taskID of workflow wfID wrote
// of secret name, deleted since or not.
func readTaskWrite(r kvReader, name, wfID, taskID string) (int, bool, error) {
	var w taskWrite
	found, err := getMsgpack(r, taskKey(name, wfID, taskID), &w)
	return w.Version, found, err
}

func setMsgpack(kv kvWriter, key []byte, v any) error {
	b, err := msgpack.Marshal(v)
	if err != nil {
		return err
	}
	return kv.Set(key, b)
}

// getMsgpack decodes the value at key into v; found is false when absent.
func getMsgpack(r kvReader, key []byte, v any) (bool, error) {
	b, err := r.Get(key)
	if errors.Is(err, projections.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if err := msgpack.Unmarshal(b, v); err != nil {
		return false, fmt.Errorf("decode %q: %w", key, err)
	}
	return true, nil
}

func readSecret(r kvReader, name string) (storedSecret, bool, error) {
	var s storedSecret
	found, err := getMsgpack(r, secretKey(name), &s)
	return s, found, err
}

func readCipher(r kvReader, name string) (storedCipher, bool, error) {
	var c storedCipher
	found, err := getMsgpack(r, cipherKey(name), &c)
	return c, found, err
}

func readEnv(r kvReader, name string) (storedEnv, bool, error) {
	var v storedEnv
	found, err := getMsgpack(r, envKey(name), &v)
	return v, found, err
}

func readSubject(r kvReader, subject string) (subjectState, error) {
	var st subjectState
	_, err := getMsgpack(r, subjectKey(subject), &st)
	return st, err
}

func readVersions(r kvReader, name string) ([]VersionInfo, error) {
	var out []VersionInfo
	var derr error
	err := r.Scan(versionPrefix(name), func(_, v []byte) bool {
		var vi VersionInfo
		if derr = msgpack.Unmarshal(v, &vi); derr != nil {
			return false
		}
		out = append(out, vi)
		return true
	})
	if err == nil {
		err = derr
	}
	return out, err
}
