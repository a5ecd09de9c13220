package schemas_test

import (
	"maps"
	"reflect"
	"slices"
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

// Every event type, with every field set (down through nested structs,
// maps, slices and pointers) and with each field alone, reaches the log and
// comes back from it whole: encoded as the executor encodes it (its own
// encoder, if it has one), framed in a record of each format and read back
// as a projection reads it. An event type needs no entry here.
func TestEveryEventSurvivesTheLog(t *testing.T) {
	types := schemas.Default.EventTypes()
	if len(types) < 40 {
		t.Fatalf("%d event types registered", len(types))
	}
	for _, name := range slices.Sorted(maps.Keys(types)) {
		full := reflect.New(types[name])
		fields.Fill(full.Elem(), -1)
		variants := []reflect.Value{full}
		for i := range types[name].NumField() {
			v := reflect.New(types[name])
			fields.Fill(v.Elem(), i)
			variants = append(variants, v)
		}
		for i, v := range variants {
			ev := v.Interface().(schemas.Event)
			env, err := schemas.Default.Encode(ev)
			if err != nil {
				t.Fatalf("%s #%d: %v", name, i, err)
			}
			env.ID, env.Time = "rec-1", 1_700_000_000_000_000_000
			for _, format := range []schemas.RecordFormat{schemas.RecordFormat1, schemas.RecordFormat2} {
				rec, err := format.Encode([]schemas.Envelope{env})
				if err != nil {
					t.Fatalf("%s #%d: %v", name, i, err)
				}
				envs, err := schemas.DecodeRecord(rec)
				if err != nil {
					t.Fatalf("%s #%d, format %d: %v", name, i, format, err)
				}
				back, err := schemas.Default.Decode(envs[0])
				if err != nil {
					t.Fatalf("%s #%d, format %d: %v", name, i, format, err)
				}
				if d := fields.Diff(ev, back); d != "" {
					t.Errorf("%s #%d, format %d, does not survive the log: %s", name, i, format, d)
				}
			}
		}
	}
}

// An envelope, every field set, survives a record of each format: the
// second writes the envelopes' shared fields by hand.
func TestEveryEnvelopeFieldSurvivesARecord(t *testing.T) {
	env := schemas.Envelope{}
	fields.Fill(reflect.ValueOf(&env).Elem(), -1)
	for _, format := range []schemas.RecordFormat{schemas.RecordFormat1, schemas.RecordFormat2} {
		rec, err := format.Encode([]schemas.Envelope{env})
		if err != nil {
			t.Fatal(err)
		}
		envs, err := schemas.DecodeRecord(rec)
		if err != nil {
			t.Fatal(err)
		}
		if len(envs) != 1 {
			t.Fatalf("format %d: %d envelopes", format, len(envs))
		}
		if d := fields.Diff(env, envs[0]); d != "" {
			t.Errorf("format %d: %s", format, d)
		}
	}
}
