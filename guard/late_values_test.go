package guard

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/masking"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/secrets"
)

// A whole JSON secret resolved into a child's input: a task of the child
// may echo one of its fields, as a task of the parent may, and the child's
// redaction looks for each field as the parent's does. It looked for the
// whole JSON text alone.
func TestChildRedactsAJSONSecretsFields(t *testing.T) {
	ctx, keys := openKeys(t)
	g := New(Config{Keys: keys, Authz: allowAll{}, Secrets: fakeSecrets{"db": `{"user":"svc-account","password":"hunter22-db-pass"}`}})
	in, _, err := g.PrepareChild(ctx, engine.StartWorkflow{WorkflowID: "kid", From: "parent", CreatedBy: "admin",
		Input: map[string]any{"creds": "${workflow.secrets.db}"}, InputDeferred: [][]any{{"creds"}}})
	if err != nil || !masking.HasSealed(in) {
		t.Fatalf("child input %v, %v", in, err)
	}
	r := g.memoFor("kid").get()
	if got := r.String("connecting with hunter22-db-pass"); got != "connecting with ***" {
		t.Fatalf("the child's log line redacted to %q", got)
	}
}

// versionedSecrets is a store whose secrets can be overwritten.
type versionedSecrets struct {
	vals map[string]string
	ver  map[string]int
}

func (f *versionedSecrets) Resolve(_ context.Context, name string) ([]byte, int, error) {
	v, ok := f.vals[name]
	if !ok {
		return nil, 0, fault.NotFound("secret %s not found", name)
	}
	return []byte(v), f.ver[name], nil
}

// Revision and ResolveAt: its values change under no access check.
func (f *versionedSecrets) Revision(context.Context, string) (secrets.Revision, error) {
	return secrets.Revision{}, nil
}

func (f *versionedSecrets) ResolveAt(ctx context.Context, name string, _ secrets.Revision) ([]byte, int, error) {
	return f.Resolve(ctx, name)
}

func (f *versionedSecrets) Exists(_ context.Context, name string) (bool, error) {
	_, ok := f.vals[name]
	return ok, nil
}

// So it does after its memo is rebuilt from its log (its first decision
// after the start, a restart), for the version its input took, also once
// the secret has a newer one.
func TestChildRedactsTheFieldsOfTheVersionItTook(t *testing.T) {
	ctx, keys := openKeys(t)
	src := &versionedSecrets{vals: map[string]string{"db": `{"user":"svc-account","password":"hunter22-db-pass-v1"}`}, ver: map[string]int{"db": 1}}
	g := New(Config{Keys: keys, Authz: allowAll{}, Secrets: src})
	in, refs, err := g.PrepareChild(ctx, engine.StartWorkflow{WorkflowID: "kid", From: "parent", CreatedBy: "admin",
		Input: map[string]any{"creds": "${workflow.secrets.db}"}, InputDeferred: [][]any{{"creds"}}})
	if err != nil {
		t.Fatal(err)
	}
	start := &schemas.WorkflowStarted{WorkflowID: "kid", Name: "kid", Version: 1, Input: in, Resolved: refs, CreatedBy: "admin",
		ParentWorkflowID: "parent",
		Def:              []byte(`{"name":"kid","version":1,"tasks":[{"name":"w","taskReferenceName":"w","type":"SIMPLE"}]}`), Time: 1}
	sched := &schemas.TaskScheduled{TaskID: "t1", Ref: "w", Name: "w", Type: "SIMPLE", Status: "SCHEDULED",
		Input: map[string]any{"creds": "${workflow.input.creds}"}, Time: 1}
	dec, err := g.Protect(ctx, nil, engine.Decision{Events: []schemas.Event{start, sched}})
	if err != nil {
		t.Fatal(err)
	}
	var w *engine.Workflow
	for _, ev := range dec.Events {
		if w, err = engine.Apply(w, ev); err != nil {
			t.Fatal(err)
		}
	}
	// The password is rotated while the child's worker runs.
	src.vals["db"], src.ver["db"] = `{"user":"svc-account","password":"hunter22-db-pass-v2"}`, 2
	dec, err = g.Protect(ctx, w, engine.Decision{Events: []schemas.Event{
		&schemas.TaskUpdated{TaskID: "t1", Status: "COMPLETED", Output: map[string]any{"msg": "logged in with hunter22-db-pass-v1"}, Time: 2},
		&schemas.TaskLogged{TaskID: "t1", Lines: []string{"password=hunter22-db-pass-v1"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	got := dec.Events[0].(*schemas.TaskUpdated).Output["msg"]
	line := dec.Events[1].(*schemas.TaskLogged).Lines[0]
	if got != "logged in with ***" || line != "password=***" {
		t.Fatalf("the child's output %q, log line %q: the old version's field is stored in plaintext", got, line)
	}
}

// The memo table is cleared when full (maxMemos) by any workflow's
// decision. Cleared between a hand-off (which put the resolved value in the
// memo) and the take's record, the memo rebuilt from the state before the
// take names no resolution yet: the take seals the secret's current
// version when it is the one handed off, and its value is redacted after.
func TestMemoClearedBetweenHandOffAndTake(t *testing.T) {
	ctx, keys := openKeys(t)
	const secret = "resolved-token-3c9d1e"
	src := &rotatingSecret{name: "token", value: secret, version: 1}
	w := callingWithToken(t, "wf-clear")
	g := New(Config{Keys: keys, Secrets: src, Authz: allowAll{}})
	_, refs, err := g.Prepare(ctx, w, w.Tasks[0])
	if err != nil {
		t.Fatal(err)
	}
	// Other workflows' decisions fill the memo table meanwhile.
	for i := range maxMemos {
		g.memoFor(fmt.Sprintf("other-%d", i))
	}
	dec, err := g.Protect(ctx, w, engine.Decision{Events: []schemas.Event{&schemas.TaskStarted{TaskID: "t1", WorkerID: "w1", Time: 2, Resolved: refs}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range dec.Events {
		if w, err = engine.Apply(w, ev); err != nil {
			t.Fatal(err)
		}
	}
	dec, err = g.Protect(ctx, w, engine.Decision{Events: []schemas.Event{
		&schemas.TaskLogged{TaskID: "t1", Lines: []string{"sent Bearer " + secret}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if line := dec.Events[0].(*schemas.TaskLogged).Lines[0]; line != "sent Bearer ***" {
		t.Fatalf("log line stored as %q", line)
	}
}

// A worker still running when its workflow was terminated logs the value
// it was given after compaction destroyed the workflow's secrets key: the
// memo rebuilt for that decision can open nothing, and the line would be
// stored in plaintext. It is refused, also for a workflow compacted before
// workflow.secrets_sealed existed, which records no key. One with no key
// (given the value under _masked, compacted for the purges of the cached
// outputs it masks) lost nothing: its line is taken, redacted by a memo
// rebuilt from the compacted state.
func TestLogLineAfterCompaction(t *testing.T) {
	ctx, keys := openKeys(t)
	const value = "sk-live-998877665544"
	for _, tc := range []struct {
		name, block string
		// recorded says whether workflow.secrets_sealed is folded.
		recorded bool
		refused  bool
	}{
		{"secrets_key", masking.KeySecrets, true, true},
		{"secrets_key_recorded_nowhere", masking.KeySecrets, false, true},
		{"no_key", masking.KeyMasked, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := New(Config{Keys: keys, Secrets: fakeSecrets{}, Authz: allowAll{}})
			wfID := "wf-late-" + tc.name
			var w *engine.Workflow
			apply := func(events ...schemas.Event) {
				t.Helper()
				dec, err := g.Protect(ctx, w, engine.Decision{Events: events})
				if err != nil {
					t.Fatal(err)
				}
				for _, ev := range dec.Events {
					if _, sealed := ev.(*schemas.SecretsSealed); sealed && !tc.recorded {
						continue
					}
					if w, err = engine.Apply(w, ev); err != nil {
						t.Fatal(err)
					}
				}
			}
			apply(&schemas.WorkflowStarted{WorkflowID: wfID, Name: "w", Version: 1,
				Def: []byte(`{"name":"w","version":1,"tasks":[{"name":"call","taskReferenceName":"call"}]}`), Time: 1},
				&schemas.TaskScheduled{TaskID: "t1", Ref: "call", Name: "call", Type: "SIMPLE", Status: "SCHEDULED",
					Input: map[string]any{tc.block: map[string]any{"k": value}}, Time: 1})
			apply(&schemas.TaskStarted{TaskID: "t1", WorkerID: "w1", Time: 2})
			apply(&schemas.WorkflowStatusChanged{Status: conductor.WorkflowTerminated, Reason: "stop", Time: 3})
			apply(&schemas.WorkflowCompacted{Time: 4})
			if w.SealsSecrets != tc.recorded {
				t.Fatalf("seals secrets %t, want %t", w.SealsSecrets, tc.recorded)
			}
			if tc.block == masking.KeySecrets {
				if err := keys.DestroyKey(ctx, secretsKeyOf(w)); err != nil {
					t.Fatal(err)
				}
			}
			// Another engine's guard: its memo is rebuilt from the state.
			other := New(Config{Keys: keys, Secrets: fakeSecrets{}, Authz: allowAll{}})
			dec, err := other.Protect(ctx, w, engine.Decision{Events: []schemas.Event{&schemas.TaskLogged{TaskID: "t1", Lines: []string{"late: " + value}}}})
			switch {
			case tc.refused && !errors.Is(err, fault.ErrConflict):
				t.Fatalf("a log line after compaction: %v, %v; want it refused", dec.Events, err)
			case tc.refused:
			case err != nil:
				t.Fatalf("a log line after compaction: %v; want it taken", err)
			case dec.Events[0].(*schemas.TaskLogged).Lines[0] != "late: "+masking.Mask:
				t.Fatalf("the log line is stored as %q", dec.Events[0].(*schemas.TaskLogged).Lines[0])
			}
		})
	}
}

// A child whose input text embeds a secret ("Bearer ${workflow.secrets.x}")
// holds the text sealed whole; a task of the child that echoes the secret
// alone has it redacted, also once the child's memo is rebuilt from its
// state by another engine (or this one after a restart), which knows the
// whole text only from the input: the start names what it resolved.
func TestRebuiltChildLooksForASecretResolvedIntoText(t *testing.T) {
	ctx, keys := openKeys(t)
	const secret = "child-text-secret-R7qw2"
	src := fakeSecrets{"tok": secret}
	g := New(Config{Keys: keys, Authz: allowAll{}, Secrets: src})
	in, refs, err := g.PrepareChild(ctx, engine.StartWorkflow{WorkflowID: "kid-text", From: "parent", CreatedBy: "admin",
		Input: map[string]any{"auth": "Bearer ${workflow.secrets.tok}"}, InputDeferred: [][]any{{"auth"}}})
	if err != nil || !masking.HasSealed(in) {
		t.Fatalf("child input %v, %v", in, err)
	}
	start := &schemas.WorkflowStarted{WorkflowID: "kid-text", Name: "kid", Version: 1, Input: in, Resolved: refs, CreatedBy: "admin",
		ParentWorkflowID: "parent",
		Def:              []byte(`{"name":"kid","version":1,"tasks":[{"name":"w","taskReferenceName":"w","type":"SIMPLE"}]}`), Time: 1}
	sched := &schemas.TaskScheduled{TaskID: "t1", Ref: "w", Name: "w", Type: "SIMPLE", Status: "SCHEDULED",
		Input: map[string]any{"auth": "${workflow.input.auth}"}, Time: 1}
	w := protectAndFold(ctx, t, g, nil, start, sched)
	for _, tc := range []struct {
		name string
		g    *Guard
	}{
		{"the preparing engine", g},
		{"another engine", New(Config{Keys: keys, Authz: allowAll{}, Secrets: src})},
	} {
		dec, err := tc.g.Protect(ctx, w, engine.Decision{Events: []schemas.Event{
			&schemas.TaskUpdated{TaskID: "t1", Status: "COMPLETED", Output: map[string]any{"echo": secret}, Time: 2}}})
		if err != nil {
			t.Fatal(err)
		}
		if got := dec.Events[0].(*schemas.TaskUpdated).Output["echo"]; got != masking.Mask {
			t.Errorf("%s: the child's echo of the secret is stored as %q", tc.name, got)
		}
	}
}
