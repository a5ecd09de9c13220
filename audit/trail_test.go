package audit

import (
	"context"
	"crypto/rand"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/secrets"
)

// appendEvent appends ev on subject as principal.
func appendEvent(t *testing.T, l *eventlog.Log, subject, principal string, ev schemas.Event) {
	t.Helper()
	env, err := schemas.Default.Encode(ev)
	if err != nil {
		t.Fatal(err)
	}
	env.ID, env.Time, env.Principal = rand.Text(), time.Now().UnixNano(), principal
	if _, err := l.Append(context.Background(), subject, []schemas.Envelope{env}, eventlog.ExpectAny); err != nil {
		t.Fatal(err)
	}
}

// recordRefusals appends refusals as Recorder.Refused does, without its
// queue.
func recordRefusals(t *testing.T, l *eventlog.Log, evs ...*schemas.AccessDenied) {
	t.Helper()
	r := NewRecorder(l, RecorderConfig{})
	for _, ev := range evs {
		if err := r.Record(context.Background(), ev.By, ev); err != nil {
			t.Fatal(err)
		}
	}
}

// read returns the trail's entries for f with action.
func read(t *testing.T, trail *Trail, f Filter, action string) []Entry {
	t.Helper()
	res, err := trail.Read(context.Background(), f)
	if err != nil {
		t.Fatal(err)
	}
	var out []Entry
	for _, e := range res.Entries {
		if e.Action == action {
			out = append(out, e)
		}
	}
	return out
}

// A secret's version an UPDATE_SECRET wrote names its workflow and task
// on its secret.put entry, where a write through the API by the same
// principal names neither; the workflow's trail lists the former alone.
func TestTrailNamesTheTaskThatWroteASecret(t *testing.T) {
	t.Parallel()
	l := testutil.OpenLog(t, "")
	subject := secrets.SecretSubject("db")
	appendEvent(t, l, subject, "app:ci", &schemas.SecretVersionPut{Name: "db", Version: 1, KeyID: "secret.db.A", Ciphertext: []byte{2, 1},
		Fingerprint: "hmac-sha256:01", Size: 5, Time: 1, By: "app:ci"})
	appendEvent(t, l, subject, "app:ci", &schemas.SecretVersionPut{Name: "db", Version: 2, KeyID: "secret.db.B", Ciphertext: []byte{2, 2},
		Fingerprint: "hmac-sha256:02", Size: 6, Time: 2, By: "app:ci", WorkflowID: "wf-1", TaskID: "task-1"})
	trail := NewTrail(l)
	puts := read(t, trail, Filter{Secret: "db"}, ActSecretPut)
	if len(puts) != 2 {
		t.Fatalf("%d secret.put entries, want 2: %+v", len(puts), puts)
	}
	api := map[string]string{"version": "1", "fingerprint": "hmac-sha256:01", "size": "5"}
	task := map[string]string{"version": "2", "fingerprint": "hmac-sha256:02", "size": "6", "workflow": "wf-1", "task": "task-1"}
	if !maps.Equal(puts[0].Detail, api) || !maps.Equal(puts[1].Detail, task) {
		t.Fatalf("details %v and %v, want %v and %v", puts[0].Detail, puts[1].Detail, api, task)
	}
	for _, e := range puts {
		if e.Principal != "app:ci" || e.Target != "SECRET_NAME:db" {
			t.Fatalf("entry %+v", e)
		}
	}
	got := read(t, trail, Filter{Workflow: "wf-1"}, ActSecretPut)
	if len(got) != 1 || got[0].Detail["version"] != "2" {
		t.Fatalf("the workflow's trail has puts %+v, want version 2 alone", got)
	}
	if got := read(t, trail, Filter{Workflow: "wf-2"}, ActSecretPut); len(got) != 0 {
		t.Fatalf("another workflow's trail has puts %+v", got)
	}
}

// An UPDATE_SECRET refused is an access.deny entry naming the principal,
// the secret, the access, the workflow and the task; the workflow's trail
// lists it, and not the API's refusal of the same secret.
func TestTrailNamesTheTaskRefused(t *testing.T) {
	t.Parallel()
	l := testutil.OpenLog(t, "")
	recordRefusals(t, l,
		&schemas.AccessDenied{Access: "UPDATE", TargetType: "SECRET_NAME", TargetID: "db", Reason: "no grant", Method: "PUT", Path: "/api/secrets/db",
			Addr: "10.0.0.1", Time: 1, By: "app:ci"},
		&schemas.AccessDenied{Access: "UPDATE", TargetType: "SECRET_NAME", TargetID: "db", Reason: "no grant", Time: 2, By: "app:ci", Workflow: "wf-1", Task: "task-1"})
	trail := NewTrail(l)
	denied := read(t, trail, Filter{Secret: "db"}, ActAccessDeny)
	if len(denied) != 2 {
		t.Fatalf("%d access.deny entries, want 2: %+v", len(denied), denied)
	}
	want := map[string]string{"access": "UPDATE", "reason": "no grant", "workflow": "wf-1", "task": "task-1"}
	if e := denied[1]; e.Principal != "app:ci" || e.Target != "SECRET_NAME:db" || !maps.Equal(e.Detail, want) {
		t.Fatalf("the task's refusal: %+v, want app:ci on SECRET_NAME:db with %v", e, want)
	}
	if _, ok := denied[0].Detail["workflow"]; ok || denied[0].Detail["path"] != "/api/secrets/db" {
		t.Fatalf("the API's refusal: %+v", denied[0])
	}
	got := read(t, trail, Filter{Workflow: "wf-1"}, ActAccessDeny)
	if len(got) != 1 || got[0].Detail["task"] != "task-1" {
		t.Fatalf("the workflow's trail has refusals %+v, want the task's alone", got)
	}
}

// An access to an execution refused through the API names the definition
// whose grant was missing, and the workflow (and task): the workflow's
// trail lists it, another workflow's of the same definition does not.
func TestTrailOfAWorkflowListsTheAccessesRefused(t *testing.T) {
	t.Parallel()
	l := testutil.OpenLog(t, "")
	snooped := func(path, workflow, task string) *schemas.AccessDenied {
		return &schemas.AccessDenied{Access: "READ", TargetType: "WORKFLOW_DEF", TargetID: "orders", Reason: "no grant", Method: "GET",
			Path: path, Time: 1, By: "app:snoop", Workflow: workflow, Task: task}
	}
	recordRefusals(t, l, snooped("/api/workflow/wf-1", "wf-1", ""), snooped("/api/tasks/task-2", "wf-2", "task-2"),
		snooped("/api/metadata/workflow/orders", "", ""))
	trail := NewTrail(l)
	for _, tc := range []struct{ workflow, path, task string }{{"wf-1", "/api/workflow/wf-1", ""}, {"wf-2", "/api/tasks/task-2", "task-2"}} {
		got := read(t, trail, Filter{Workflow: tc.workflow}, ActAccessDeny)
		if len(got) != 1 || got[0].Target != "WORKFLOW_DEF:orders" || got[0].Detail["path"] != tc.path || got[0].Detail["task"] != tc.task {
			t.Fatalf("%s's trail has refusals %+v, want the one of %s", tc.workflow, got, tc.path)
		}
	}
}

// The workflow filter still lists what the workflow's own subject holds:
// resolutions and a principal that joined it.
func TestTrailOfAWorkflowKeepsItsOwnSubject(t *testing.T) {
	t.Parallel()
	l := testutil.OpenLog(t, "")
	wf := "fv.wf." + eventlog.Token("wf-1")
	appendEvent(t, l, wf, "app:ci", &schemas.TaskStarted{TaskID: "task-1", WorkerID: "w", Time: 1,
		Resolved: []schemas.ResolvedRef{{Kind: "secret", Name: "db", Version: 1, Principal: "app:ci", GrantedBy: "creator"}}})
	appendEvent(t, l, wf, "app:other", &schemas.WorkflowRunAs{Principal: "app:other", Time: 2})
	res, err := NewTrail(l).Read(context.Background(), Filter{Workflow: "wf-1"})
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, e := range res.Entries {
		actions = append(actions, e.Action)
	}
	if want := []string{ActSecretResolve, ActWorkflowRunAs}; !slices.Equal(actions, want) {
		t.Fatalf("the workflow's trail: %v, want %v", actions, want)
	}
}

// A child's start names the secrets resolved into its input and the
// values of its parent's sealed data opened into it (sealed for its
// memo): only the former are secret.resolve entries. The latter read no
// secret, and named one after the parent's reference.
func TestTrailOfAChildsStartListsItsSecretsAlone(t *testing.T) {
	t.Parallel()
	l := testutil.OpenLog(t, "")
	appendEvent(t, l, "fv.wf."+eventlog.Token("kid-1"), "app:ci", &schemas.WorkflowStarted{WorkflowID: "kid-1", Name: "kid", Version: 1,
		ParentWorkflowID: "wf-1", Time: 1, Resolved: []schemas.ResolvedRef{
			{Kind: "secret", Name: "db", Version: 1, Principal: "app:ci", GrantedBy: "creator"},
			{Kind: "_secrets", Name: "task/t1/output._secrets.token", Sealed: []byte{1}},
			{Kind: "_masked", Name: "task/t1/output._masked.note", Sealed: []byte{2}}}})
	res, err := NewTrail(l).Read(context.Background(), Filter{Workflow: "kid-1"})
	if err != nil {
		t.Fatal(err)
	}
	var targets []string
	for _, e := range res.Entries {
		targets = append(targets, e.Action+" "+e.Target)
	}
	if want := []string{ActSecretResolve + " SECRET_NAME:db"}; !slices.Equal(targets, want) {
		t.Fatalf("the child's trail: %v, want %v", targets, want)
	}
}
