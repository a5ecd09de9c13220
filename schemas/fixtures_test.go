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

// secretEvents is one event of every secret and environment type, as the
// fixture holds them.
func secretEvents() []schemas.Event {
	return []schemas.Event{
		&schemas.SecretVersionPut{Name: "db", Version: 2, KeyID: "secret.db.ABC", Ciphertext: []byte{0x02, 1, 2, 3},
			Fingerprint: "hmac-sha256:00ff", Size: 12, Time: 1732939000000, By: "user:ada"},
		&schemas.SecretDeleted{Name: "db", Version: 2, Time: 1732939000001},
		&schemas.SecretTagsSet{Name: "db", Tags: []schemas.SecretTag{{Key: "env", Value: "prod"}}, Time: 1732939000002, By: "app:ci"},
		&schemas.EnvValuePut{Name: "region", Value: "eu-west-1", Time: 1732939000003},
		&schemas.EnvValueDeleted{Name: "region", Time: 1732939000004, By: "user:ada"},
		&schemas.EnvTagsSet{Name: "region", Tags: []schemas.SecretTag{{Key: "k", Value: "v"}}, Time: 1732939000005},
	}
}

// auditEvents is one event of every audit fact type, as the fixture holds
// them.
func auditEvents() []schemas.Event {
	return []schemas.Event{
		&schemas.SecretRead{Name: "db", Version: 2, Fingerprint: "hmac-sha256:00ff", Addr: "10.0.0.1", Time: 1732939000000, By: "user:ada"},
		&schemas.EnvRead{Name: "region", Addr: "10.0.0.1", Time: 1732939000001, By: "app:ci"},
		&schemas.EnvListed{Names: []string{"region", "zone"}, Time: 1732939000002, By: "app:ci"},
		&schemas.AuthFailed{Code: "INVALID_TOKEN", Reason: "bad signature", Method: "GET", Path: "/api/secrets", Addr: "10.0.0.2", Time: 1732939000003},
		&schemas.AccessDenied{Access: "UPDATE", TargetType: "SECRET_NAME", TargetID: "db", Reason: "no grant", Method: "PUT",
			Path: "/api/secrets/db", Addr: "10.0.0.3", Time: 1732939000004, By: "app:ci"},
		&schemas.RefusalsDropped{Count: 7, Time: 1732939000005},
		&schemas.KeyringRotated{Term: 2, Previous: 1, Rewrapped: 9, By: "root", Time: 1732939000006},
	}
}

// Each fixture holds events written by schema version 1. They must decode
// forever; regenerate one only with -update for a new fixture.
func TestEventFixtures(t *testing.T) {
	for _, tc := range []struct {
		file   string
		events func() []schemas.Event
	}{
		{"metadata_v1.record", metadataEvents},
		{"secret_v1.record", secretEvents},
		{"audit_v1.record", auditEvents},
	} {
		t.Run(tc.file, func(t *testing.T) {
			path := filepath.Join("testdata", tc.file)
			if *update {
				writeFixture(t, path, tc.events())
			}
			envs := readFixture(t, path)
			want := tc.events()
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
		})
	}
}

// readFixture returns the envelopes of the record stored at path.
func readFixture(t *testing.T, path string) []schemas.Envelope {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	envs, err := schemas.DecodeRecord(raw)
	if err != nil {
		t.Fatal(err)
	}
	return envs
}

func writeFixture(t *testing.T, path string, events []schemas.Event) {
	t.Helper()
	var envs []schemas.Envelope
	for i, ev := range events {
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
