package schemas_test

import (
	"testing"

	"github.com/flowvault/flowvault/internal/testutil/fields"
	"github.com/flowvault/flowvault/schemas"
)

// Without their methods, these encode and decode the reflective way.
type (
	reflectivePolicy      schemas.TaskPolicy
	reflectiveRef         schemas.ResolvedRef
	reflectiveStarted     schemas.WorkflowStarted
	reflectiveScheduled   schemas.TaskScheduled
	reflectiveTaskStarted schemas.TaskStarted
	reflectiveUpdated     schemas.TaskUpdated
	reflectiveStatus      schemas.WorkflowStatusChanged
	reflectiveEnvelope    schemas.Envelope
)

// The hand-written encoders write exactly the reflective encoding, with no
// field set, every field set, and each field alone: a field added to a
// struct and not to its encoder, or two fields in each other's place, fail
// here. (A struct's fields of types with their own encoder are encoded by
// it both ways; each of those types is checked on its own.)
func TestEncodingMatchesReflection(t *testing.T) {
	fields.MatchesReflection[schemas.TaskPolicy, reflectivePolicy](t)
	fields.MatchesReflection[schemas.ResolvedRef, reflectiveRef](t)
	fields.MatchesReflection[schemas.WorkflowStarted, reflectiveStarted](t)
	fields.MatchesReflection[schemas.TaskScheduled, reflectiveScheduled](t)
	fields.MatchesReflection[schemas.TaskStarted, reflectiveTaskStarted](t)
	fields.MatchesReflection[schemas.TaskUpdated, reflectiveUpdated](t)
	fields.MatchesReflection[schemas.WorkflowStatusChanged, reflectiveStatus](t)
	fields.MatchesReflection[schemas.Envelope, reflectiveEnvelope](t)
}
