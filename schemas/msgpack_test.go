package schemas_test

import (
	"bytes"
	"reflect"
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
	matchesReflection[schemas.TaskPolicy, reflectivePolicy](t)
	matchesReflection[schemas.ResolvedRef, reflectiveRef](t)
	matchesReflection[schemas.WorkflowStarted, reflectiveStarted](t)
	matchesReflection[schemas.TaskScheduled, reflectiveScheduled](t)
	matchesReflection[schemas.TaskStarted, reflectiveTaskStarted](t)
	matchesReflection[schemas.TaskUpdated, reflectiveUpdated](t)
	matchesReflection[schemas.WorkflowStatusChanged, reflectiveStatus](t)
	matchesReflection[schemas.Envelope, reflectiveEnvelope](t)
}

func matchesReflection[T, R any](t *testing.T) {
	t.Helper()
	for i, v := range fields.Variants[T]() {
		got, err := schemas.MarshalSorted(v)
		if err != nil {
			t.Fatal(err)
		}
		want, err := schemas.MarshalSorted(reflect.ValueOf(v).Convert(reflect.TypeFor[*R]()).Interface())
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%T #%d encodes to\n%x\nreflection gives\n%x", v, i, got, want)
		}
	}
}
