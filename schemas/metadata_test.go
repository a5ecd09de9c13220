package schemas_test

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/flowvault/flowvault/schemas"
)

// metadataEvents is one event of every metadata type, as the fixture holds
// them.
func metadataEvents() []schemas.Event {
	return []schemas.Event{
		&schemas.WorkflowDefRegistered{Name: "wf", Version: 3, Def: []byte(`{"name":"wf","version":3,"tasks":[]}`), Time: 1732939000000, By: "app:ci"},
		&schemas.WorkflowDefRemoved{Name: "wf", Version: 3, Time: 1732939000001, By: "user:ada"},
		&schemas.TaskDefRegistered{Name: "t", Def: []byte(`{"name":"t","retryCount":1}`), Time: 1732939000002},
		&schemas.TaskDefRemoved{Name: "t", Time: 1732939000003, By: "user:ada"},
		&schemas.DefTagsSet{Kind: schemas.DefKindWorkflow, Name: "wf", Tags: []schemas.DefTag{{Key: "team", Value: "core"}}, Time: 1732939000004},
	}
}

// The fixture holds metadata events written by schema version 1. They must
// decode forever; regenerate it only with -update for a new fixture.
func TestMetadataEventsFixture(t *testing.T) {
	path := filepath.Join("testdata", "metadata_v1.record")
	if *update {
		var envs []schemas.Envelope
		for i, ev := range metadataEvents() {
			env, err := schemas.Default.Encode(ev)
			if err != nil {
				t.Fatal(err)
			}
			env.ID, env.Time = string(rune('a'+i)), 1732939000000000000
			envs = append(envs, env)
		}
		rec, err := schemas.EncodeRecord(envs)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, rec, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	envs, err := schemas.DecodeRecord(raw)
	if err != nil {
		t.Fatal(err)
	}
	want := metadataEvents()
	if len(envs) != len(want) {
		t.Fatalf("%d events, want %d", len(envs), len(want))
	}
	for i, env := range envs {
		if env.Version != 1 {
			t.Errorf("%s: version %d, want 1", env.Type, env.Version)
		}
		ev, err := schemas.Default.Decode(env)
		if err != nil {
			t.Fatal(err)
		}
		if ev.EventType() != env.Type || !reflect.DeepEqual(ev, want[i]) {
			t.Errorf("event %d = %#v, want %#v", i, ev, want[i])
		}
	}
}
