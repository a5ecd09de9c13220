package auth

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/projections"
	"github.com/flowvault/flowvault/schemas"
)

// ProjectionName is the auth read model's key space and checkpoint name.
const ProjectionName = "auth"

// Subjects on the FV_AUTH stream: one per aggregate, so that each change
// is an append guarded by that aggregate's last sequence.
//
//	fv.auth.app.<id>                  an application and its access keys
//	fv.auth.user.<id>                 a user (name, roles, groups)
//	fv.auth.group.<id>                a group (description, roles, default access)
//	fv.auth.grant.<targetType>.<id>   every grant on one target
//
// Token issuance and refusals are audit facts on fv.audit.auth.token.
const (
	appSubjectPrefix   = "fv.auth.app."
	userSubjectPrefix  = "fv.auth.user."
	groupSubjectPrefix = "fv.auth.group."
	grantSubjectPrefix = "fv.auth.grant."
	// TokenAuditSubject holds TokenIssued and TokenRefused facts.
	TokenAuditSubject = "fv.audit.auth.token"
)

// AppSubject is the subject of application id.
func AppSubject(id string) string { return appSubjectPrefix + eventlog.Token(id) }

// UserSubject is the subject of user id.
func UserSubject(id string) string { return userSubjectPrefix + eventlog.Token(id) }

// GroupSubject is the subject of group id.
func GroupSubject(id string) string { return groupSubjectPrefix + eventlog.Token(id) }

// GrantSubject is the subject that holds every grant on target t.
func GrantSubject(t Target) string {
	return grantSubjectPrefix + eventlog.Token(t.Type) + "." + eventlog.Token(t.ID)
}

// Key layout inside the projection's key space. Ids never contain control
// characters (checkID), so 0x00 separates the parts of composite keys.
//
//	a/<appId>                                   appState (msgpack)
//	k/<keyId>                                   owning application id
//	u/<userId>                                  userState
//	g/<groupId>                                 groupState
//	m/<groupId>\0<userId>                       membership index (empty)
//	t/<targetType>\0<targetId>\0<subjType>\0<subjId>   []string accesses
//	j/<subjType>\0<subjId>\0<targetType>\0<targetId>   the same, by subject
//	s/<subject>                                 last sequence of subject (uint64 BE)
const (
	appKeyPrefix    = "a/"
	keyKeyPrefix    = "k/"
	userKeyPrefix   = "u/"
	groupKeyPrefix  = "g/"
	memberKeyPrefix = "m/"
	grantKeyPrefix  = "t/"
	bySubjKeyPrefix = "j/"
	seqKeyPrefix    = "s/"
)

func joinKey(prefix string, parts ...string) []byte {
	return []byte(prefix + strings.Join(parts, "\x00"))
}

func appKey(id string) []byte             { return joinKey(appKeyPrefix, id) }
func keyKey(keyID string) []byte          { return joinKey(keyKeyPrefix, keyID) }
func userKey(id string) []byte            { return joinKey(userKeyPrefix, id) }
func groupKey(id string) []byte           { return joinKey(groupKeyPrefix, id) }
func memberKey(group, user string) []byte { return joinKey(memberKeyPrefix, group, user) }
func seqKey(subject string) []byte        { return joinKey(seqKeyPrefix, subject) }

func grantKey(t Target, s Subject) []byte {
	return joinKey(grantKeyPrefix, t.Type, t.ID, s.Type, s.ID)
}

func bySubjectKey(s Subject, t Target) []byte {
	return joinKey(bySubjKeyPrefix, s.Type, s.ID, t.Type, t.ID)
}

// splitKey returns the n parts of a composite key after its prefix.
func splitKey(k []byte, prefix string, n int) ([]string, bool) {
	parts := strings.Split(string(k[len(prefix):]), "\x00")
	return parts, len(parts) == n
}

// kvReader is the read side shared by the Pebble read model
// (projections.Reader, *projections.Batch).
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
)

// getValue decodes the msgpack value at key into v; found is false when
// the key is absent.
func getValue(r kvReader, key []byte, v any) (found bool, err error) {
	b, err := r.Get(key)
	if errors.Is(err, projections.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if err := msgpackUnmarshal(b, v); err != nil {
		return false, fmt.Errorf("decode %q: %w", key, err)
	}
	return true, nil
}

// putValue stores v at key with sorted map keys, so that a rebuild writes
// the same bytes.
func putValue(w kvWriter, key []byte, v any) error {
	b, err := schemas.MarshalSorted(v)
	if err != nil {
		return err
	}
	return w.Set(key, b)
}

// maxIDLen bounds every identifier: application, key, user, group, role
// and target ids.
const maxIDLen = 256

// checkID refuses empty, overlong and non-UTF-8 identifiers and control
// characters (which the key layout uses as separators).
func checkID(what, id string) error {
	if id == "" {
		return fault.Invalid("%s must not be empty", what)
	}
	if len(id) > maxIDLen {
		return fault.Invalid("%s is longer than %d bytes", what, maxIDLen)
	}
	if !utf8.ValidString(id) {
		return fault.Invalid("%s is not valid UTF-8", what)
	}
	for _, r := range id {
		if r < 0x20 || r == 0x7f {
			return fault.Invalid("%s must not contain control characters", what)
		}
	}
	return nil
}
