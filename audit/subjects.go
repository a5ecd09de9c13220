package audit

import (
	"github.com/flowvault/flowvault/auth"
	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/schemas"
)

// Subjects of the audit facts on FV_AUDIT. Facts about one secret or
// environment value, and refusals about one target, get a subject of
// their own, so that a filtered trail reads just those.
//
//	fv.audit.auth.token                   token issued or refused (package auth)
//	fv.audit.auth.nats                    NATS worker credentials issued (package natsauth)
//	fv.audit.auth.failed                  401: a request's token was refused
//	fv.audit.denied.<targetType>.<id>     403 about a target (REQUEST.<path> when none; an
//	                                      execution's: WORKFLOW_DEF.<name>, naming the
//	                                      workflow), or an UPDATE_SECRET refused
//	                                      (SECRET_NAME.<name>)
//	fv.audit.secret.<name>                a secret's value read through the API
//	fv.audit.env.<name>                   an environment value read or listed
//	fv.audit.dropped                      refusals not recorded (rate limits)
//	fv.audit.keys                         the keyring rotated or sealed under a new master
//	                                      key (flowvault keys rotate, flowvault keys rekey)
const (
	prefix            = "fv.audit."
	authFailedSubject = prefix + "auth.failed"
	deniedPrefix      = prefix + "denied."
	secretReadPrefix  = prefix + "secret."
	envReadPrefix     = prefix + "env."
	droppedSubject    = prefix + "dropped"
	keysSubject       = prefix + "keys"
	targetRequest     = "REQUEST"
	allSubjects       = prefix + ">"
)

// KeysSubject is the subject of the keyring's facts (rotations, rekeys).
const KeysSubject = keysSubject

// SecretSubject is the subject of the audit facts about secret name.
func SecretSubject(name string) string { return secretReadPrefix + eventlog.Token(name) }

// EnvSubject is the subject of the audit facts about environment value
// name.
func EnvSubject(name string) string { return envReadPrefix + eventlog.Token(name) }

// DeniedSubject is the subject of denied accesses to target type/id.
func DeniedSubject(targetType, id string) string {
	return deniedPrefix + eventlog.Token(targetType) + "." + eventlog.Token(id)
}

// subjectOf is where an audit fact is appended ("" for types that are not
// this package's).
func subjectOf(ev schemas.Event) string {
	switch e := ev.(type) {
	case *schemas.SecretRead:
		return SecretSubject(e.Name)
	case *schemas.EnvRead:
		return EnvSubject(e.Name)
	case *schemas.EnvListed:
		return EnvSubject("*") // one record for a listing; its entries name each value
	case *schemas.AuthFailed:
		return authFailedSubject
	case *schemas.AccessDenied:
		if e.TargetType == "" {
			return DeniedSubject(targetRequest, e.Path)
		}
		return DeniedSubject(e.TargetType, e.TargetID)
	case *schemas.RefusalsDropped:
		return droppedSubject
	case *schemas.TokenRefused:
		return auth.TokenAuditSubject
	case *schemas.KeyringRotated, *schemas.KeyringRekeyed:
		return keysSubject
	}
	return ""
}
