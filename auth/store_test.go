package auth_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowvault/flowvault/auth"
	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/projections"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// engine is one process's view: its own Pebble read model over a log.
type engine struct {
	store  *projections.Store
	runner *projections.Runner
	auth   *auth.Store
}

func newEngine(tb testing.TB, l *eventlog.Log) *engine {
	tb.Helper()
	ps := testutil.OpenStore(tb)
	r := testutil.RunProjection(tb, l, ps, auth.Projection{}, projections.RunnerConfig{Stream: eventlog.Access.Name, Poison: projections.Halt})
	return &engine{store: ps, runner: r, auth: auth.NewStore(l, ps, r, testutil.Logger(tb))}
}

func (e *engine) caughtUp(tb testing.TB, l *eventlog.Log) {
	tb.Helper()
	last, err := l.StreamLastSeq(context.Background(), eventlog.Access.Name)
	if err != nil {
		tb.Fatal(err)
	}
	if err := e.runner.WaitFor(testutil.Context(tb, 10*time.Second), last); err != nil {
		tb.Fatal(err)
	}
}

func dump(tb testing.TB, s *projections.Store) string {
	tb.Helper()
	var b bytes.Buffer
	if err := s.Dump(&b); err != nil {
		tb.Fatal(err)
	}
	return b.String()
}

func must[T any](tb testing.TB) func(T, error) T {
	return func(v T, err error) T {
		tb.Helper()
		if err != nil {
			tb.Fatal(err)
		}
		return v
	}
}

func TestStoreAndRebuild(t *testing.T) {
	t.Parallel()
	l := testutil.OpenLog(t, "")
	e := newEngine(t, l)
	s, ctx := e.auth, testutil.Context(t, 60*time.Second)

	boot, created, err := s.Bootstrap(ctx, nil)
	if err != nil || !created {
		t.Fatalf("bootstrap: %v %v", created, err)
	}
	if _, again, err := s.Bootstrap(ctx, nil); again || err != nil {
		t.Fatalf("second bootstrap: %v %v", again, err)
	}
	if app, err := s.VerifyAccessKey(ctx, boot.ID, boot.Secret); err != nil || app.ID != auth.BootstrapAppID || !slices.Equal(app.Roles, []string{auth.RoleAdmin}) {
		t.Fatalf("bootstrap key: %+v %v", app, err)
	}

	app := must[auth.Application](t)(s.CreateApplication(ctx, "billing", "alice"))
	key := must[auth.NewAccessKey](t)(s.CreateAccessKey(ctx, app.ID, "alice", appHeld(t, s, app.ID)))
	if err := s.SetApplicationRole(ctx, app.ID, auth.RoleWorker, false, "alice", appHeld(t, s, app.ID)); err != nil {
		t.Fatal(err)
	}
	if err := s.ChangeApplicationTags(ctx, app.ID, []conductor.Tag{{Key: "team", Value: "pay"}}, false, "alice", appHeld(t, s, app.ID)); err != nil {
		t.Fatal(err)
	}
	for secret, want := range map[string]string{key.Secret: "", "wrong": "wrong access key secret"} {
		_, err := s.VerifyAccessKey(ctx, key.ID, secret)
		if (want == "" && err != nil) || (want != "" && (err == nil || !strings.Contains(err.Error(), want) || !errors.Is(err, fault.ErrUnauthorized))) {
			t.Fatalf("verify %q: %v", secret, err)
		}
	}
	if _, err := s.VerifyAccessKey(ctx, "no-such-key", key.Secret); err == nil || !strings.Contains(err.Error(), "unknown access key") {
		t.Fatalf("unknown key: %v", err)
	}
	if k := must[auth.AccessKey](t)(s.ToggleAccessKey(ctx, app.ID, key.ID, "alice", appHeld(t, s, app.ID))); k.Status != auth.KeyInactive {
		t.Fatalf("toggle: %+v", k)
	}
	if _, err := s.VerifyAccessKey(ctx, key.ID, key.Secret); err == nil || !strings.Contains(err.Error(), "inactive") {
		t.Fatalf("inactive key: %v", err)
	}
	key2 := must[auth.NewAccessKey](t)(s.CreateAccessKey(ctx, app.ID, "alice", appHeld(t, s, app.ID)))
	if err := s.DeleteAccessKey(ctx, app.ID, key2.ID, "alice", appHeld(t, s, app.ID)); err != nil {
		t.Fatal(err)
	}

	must[auth.Group](t)(s.UpsertGroup(ctx, "ops", auth.GroupRequest{Description: "ops", Roles: []string{"workflow_manager"},
		DefaultAccess: map[string][]string{"WORKFLOW_DEF": {"execute", "READ"}}}, "root"))
	must[auth.User](t)(s.UpsertUser(ctx, "bob@x", auth.UserRequest{Name: "Bob", Roles: []string{"USER"}, Groups: []string{"ops"}}, "root"))
	must[auth.User](t)(s.UpsertUser(ctx, "eve@x", auth.UserRequest{Name: "Eve"}, "root"))
	if err := s.ChangeMembers(ctx, "ops", []string{"eve@x"}, false, "root"); err != nil {
		t.Fatal(err)
	}
	p := must[auth.Principal](t)(s.Principal(ctx, "bob@x"))
	if !slices.Equal(p.Roles, []string{auth.RoleUser, auth.RoleWorkflowManager}) || !slices.Equal(p.Groups, []string{"ops"}) {
		t.Fatalf("bob = %+v", p)
	}
	g := must[auth.Group](t)(s.GetGroup(ctx, "ops"))
	if !slices.Equal(g.DefaultAccess["WORKFLOW_DEF"], []auth.Access{auth.Read, auth.Execute}) {
		t.Fatalf("group = %+v", g)
	}
	grant := auth.Grant{Subject: auth.Subject{Type: "group", ID: "ops"}, Target: auth.Target{Type: "secret_name", ID: "db"}, Access: []auth.Access{"read", "UPDATE"}}
	if err := s.Grant(ctx, grant, "root"); err != nil {
		t.Fatal(err)
	}
	if err := s.Grant(ctx, auth.Grant{Subject: auth.Subject{Type: "USER", ID: "eve@x"}, Target: auth.Target{Type: "TAG", ID: "team:pay"}, Access: []auth.Access{"EXECUTE"}}, "root"); err != nil {
		t.Fatal(err)
	}
	on := must[[]auth.Grant](t)(s.GrantsOn(ctx, auth.Target{Type: auth.TargetSecret, ID: "db"}))
	if len(on) != 1 || on[0].Subject != (auth.Subject{Type: "GROUP", ID: "ops"}) || !slices.Equal(on[0].Access, []auth.Access{auth.Read, auth.Update}) {
		t.Fatalf("grants on db = %+v", on)
	}
	// A name that holds the keys' separator (a polled task type, a
	// secret's name in a path: "db%00GROUP") is its own target, not the
	// grants of "db" to groups.
	if on := must[[]auth.Grant](t)(s.GrantsOn(ctx, auth.Target{Type: auth.TargetSecret, ID: "db\x00GROUP"})); len(on) != 0 {
		t.Fatalf("grants on db\\x00GROUP = %+v", on)
	}
	if to := must[[]auth.Grant](t)(s.GrantsTo(ctx, auth.Subject{Type: "GROUP", ID: "ops\x00SECRET_NAME"}, "")); len(to) != 0 {
		t.Fatalf("grants to ops\\x00SECRET_NAME = %+v", to)
	}

	// The authorizer over the store: group grant, tag grant, creator.
	az := auth.NewAuthorizer(s)
	az.Register(auth.TargetApplication, appsDescribed{s})
	eve := must[auth.Principal](t)(s.Principal(ctx, "eve@x"))
	appRes := auth.Resource{Target: auth.Target{Type: auth.TargetApplication, ID: app.ID}}
	if d := az.Check(ctx, eve, auth.Read, appRes); !d.Allowed || d.Tag != "team:pay" {
		t.Fatalf("eve reads the tagged app: %+v", d)
	}
	if err := az.Authorize(ctx, p, auth.Update, appRes); !errors.Is(err, fault.ErrForbidden) || !strings.Contains(err.Error(), "bob@x may not UPDATE APPLICATION:"+app.ID) {
		t.Fatalf("bob updates the app: %v", err)
	}
	if err := az.Authorize(ctx, auth.Principal{ID: "alice"}, auth.Delete, appRes); err != nil {
		t.Fatalf("the creator: %v", err)
	}
	if err := az.Authorize(ctx, p, auth.Update, auth.Resource{Target: auth.Target{Type: auth.TargetSecret, ID: "db"}}); err != nil {
		t.Fatalf("group grant: %v", err)
	}

	// Deleting the group takes members out and revokes its grants.
	if err := s.DeleteGroup(ctx, "ops", "root"); err != nil {
		t.Fatal(err)
	}
	if u := must[auth.User](t)(s.GetUser(ctx, "bob@x")); len(u.Groups) != 0 {
		t.Fatalf("bob still in ops: %+v", u)
	}
	if on := must[[]auth.Grant](t)(s.GrantsOn(ctx, auth.Target{Type: auth.TargetSecret, ID: "db"})); len(on) != 0 {
		t.Fatalf("grants of a deleted group: %+v", on)
	}
	if err := s.DeleteUser(ctx, "bob@x", "root"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetUser(ctx, "bob@x"); !errors.Is(err, fault.ErrNotFound) {
		t.Fatalf("deleted user: %v", err)
	}
	other := must[auth.Application](t)(s.CreateApplication(ctx, "gone", "root"))
	if err := s.DeleteApplication(ctx, other.ID, "root", appHeld(t, s, other.ID)); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteApplication(ctx, other.ID, "root", appHeld(t, s, other.ID)); !errors.Is(err, fault.ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}

	// No event holds a secret.
	recs, err := l.ReadSubject(ctx, auth.AppSubject(app.ID), 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		for _, env := range r.Events {
			if bytes.Contains(env.Data, []byte(key.Secret)) {
				t.Fatalf("event %s holds the secret", env.Type)
			}
		}
	}

	// A read model rebuilt from nothing is identical.
	e.caughtUp(t, l)
	rebuilt := newEngine(t, l)
	rebuilt.caughtUp(t, l)
	if a, b := dump(t, e.store), dump(t, rebuilt.store); a != b {
		t.Fatalf("rebuild differs:\n%s\n---\n%s", a, b)
	}
}

// Two engines granting on one target at once lose nothing: every write is
// an append guarded by the target subject's sequence.
func TestConcurrentGrants(t *testing.T) {
	t.Parallel()
	l := testutil.OpenLog(t, "")
	a, b := newEngine(t, l), newEngine(t, l)
	ctx := testutil.Context(t, 60*time.Second)
	target := auth.Target{Type: auth.TargetWorkflowDef, ID: "wf"}
	var wg sync.WaitGroup
	for i, s := range []*auth.Store{a.auth, b.auth, a.auth, b.auth, a.auth} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			acc := auth.AllAccess[i]
			if err := s.Grant(ctx, auth.Grant{Subject: auth.Subject{Type: "ROLE", ID: "USER"}, Target: target, Access: []auth.Access{acc}}, "root"); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	b.caughtUp(t, l)
	got := must[[]auth.Grant](t)(b.auth.GrantsOn(ctx, target))
	if len(got) != 1 || !slices.Equal(got[0].Access, auth.AllAccess) {
		t.Fatalf("after concurrent grants: %+v", got)
	}
	// Exactly one engine bootstraps.
	l2 := testutil.OpenLog(t, "")
	c, d := newEngine(t, l2), newEngine(t, l2)
	results := make(chan bool, 2)
	for _, e := range []*engine{c, d} {
		go func() {
			_, created, err := e.auth.Bootstrap(ctx, nil)
			if err != nil {
				t.Error(err)
			}
			results <- created
		}()
	}
	if first, second := <-results, <-results; first == second {
		t.Fatalf("bootstrap created %v and %v", first, second)
	}
}

// A record holding an event for another subject is poison: the projection
// refuses it instead of writing another aggregate.
func TestProjectionRefusesMisplacedEvents(t *testing.T) {
	t.Parallel()
	l := testutil.OpenLog(t, "")
	env, err := schemas.Default.Encode(&schemas.UserDeleted{ID: "victim"})
	if err != nil {
		t.Fatal(err)
	}
	env.ID = "x"
	if _, err := l.Append(context.Background(), auth.UserSubject("attacker"), []schemas.Envelope{env}, 0); err != nil {
		t.Fatal(err)
	}
	ps, err := projections.OpenStore(t.TempDir(), projections.StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer ps.Close()
	r := projections.NewRunner(l, ps, auth.Projection{}, projections.RunnerConfig{Stream: eventlog.Access.Name, Poison: projections.Halt})
	err = r.Run(testutil.Context(t, 10*time.Second))
	if !errors.Is(err, projections.ErrPoison) || !strings.Contains(err.Error(), "belongs on") {
		t.Fatalf("run = %v", err)
	}
}

// deleteOnly appends the deletion of a user or group alone, as a
// deletion that failed before its grants and memberships went leaves it.
func deleteOnly(t *testing.T, l *eventlog.Log, subject string, ev schemas.Event) {
	t.Helper()
	ctx := testutil.Context(t, 10*time.Second)
	env, err := schemas.Default.Encode(ev)
	if err != nil {
		t.Fatal(err)
	}
	env.ID = rand.Text()
	seq, err := l.LastSeq(ctx, subject)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(ctx, subject, []schemas.Envelope{env}, seq); err != nil {
		t.Fatal(err)
	}
}

// A user or group created again under a deleted one's id holds none of
// its grants or members, also when the deletion stopped half-way (it
// appends the deletion, then revokes grants and memberships apart).
func TestRecreatedIDStartsClean(t *testing.T) {
	t.Parallel()
	l := testutil.OpenLog(t, "")
	e := newEngine(t, l)
	s, ctx := e.auth, testutil.Context(t, 60*time.Second)
	target := auth.Target{Type: "SECRET_NAME", ID: "db"}
	must[auth.User](t)(s.UpsertUser(ctx, "eve@x", auth.UserRequest{Name: "Eve"}, "root"))
	must[auth.User](t)(s.UpsertUser(ctx, "bob@x", auth.UserRequest{Name: "Bob"}, "root"))
	must[auth.Group](t)(s.UpsertGroup(ctx, "ops", auth.GroupRequest{Description: "ops"}, "root"))
	if err := s.ChangeMembers(ctx, "ops", []string{"eve@x", "bob@x"}, false, "root"); err != nil {
		t.Fatal(err)
	}
	for _, sub := range []auth.Subject{{Type: auth.SubjectUser, ID: "eve@x"}, {Type: auth.SubjectGroup, ID: "ops"}} {
		if err := s.Grant(ctx, auth.Grant{Subject: sub, Target: target, Access: []auth.Access{auth.Read}}, "root"); err != nil {
			t.Fatal(err)
		}
	}
	deleteOnly(t, l, auth.GroupSubject("ops"), &schemas.GroupDeleted{ID: "ops", By: "root"})
	deleteOnly(t, l, auth.UserSubject("eve@x"), &schemas.UserDeleted{ID: "eve@x", By: "root"})
	e.caughtUp(t, l)

	must[auth.User](t)(s.UpsertUser(ctx, "eve@x", auth.UserRequest{Name: "Another Eve"}, "root"))
	must[auth.Group](t)(s.UpsertGroup(ctx, "ops", auth.GroupRequest{Description: "new ops"}, "root"))
	for _, sub := range []auth.Subject{{Type: auth.SubjectUser, ID: "eve@x"}, {Type: auth.SubjectGroup, ID: "ops"}} {
		if grants := must[[]auth.Grant](t)(s.GrantsTo(ctx, sub, "")); len(grants) != 0 {
			t.Errorf("%s created again holds %v", sub.ID, grants)
		}
	}
	for _, id := range []string{"eve@x", "bob@x"} {
		if u := must[auth.User](t)(s.GetUser(ctx, id)); len(u.Groups) != 0 {
			t.Errorf("%s is in %v after ops was created again", id, u.Groups)
		}
	}
}

// Bootstrap gives keep its key before it records it, so that a process
// that dies once the record is stored still has the key where keep put it;
// keep's error stops it with nothing recorded, and a key kept by an
// engine whose bootstrap another engine's beat is not created.
func TestBootstrapKeepsTheKeyBeforeItIsRecorded(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, 60*time.Second)
	l := testutil.OpenLog(t, "")
	c, d := newEngine(t, l), newEngine(t, l)
	refused := errors.New("disk full")
	if _, created, err := c.auth.Bootstrap(ctx, func(auth.NewAccessKey) error { return refused }); !errors.Is(err, refused) || created {
		t.Fatalf("bootstrap whose keep failed: created %v, %v", created, err)
	}
	var kept auth.NewAccessKey
	_, created, err := c.auth.Bootstrap(ctx, func(k auth.NewAccessKey) error {
		if last, err := l.StreamLastSeq(ctx, eventlog.Access.Name); err != nil || last != 0 {
			t.Errorf("keep called with FV_AUTH at %d (%v): the key is recorded before it is kept", last, err)
		}
		kept = k
		// Another engine's bootstrap wins meanwhile.
		if _, won, err := d.auth.Bootstrap(ctx, nil); !won || err != nil {
			t.Errorf("the other engine's bootstrap: %v %v", won, err)
		}
		return nil
	})
	if err != nil || created {
		t.Fatalf("bootstrap beaten by another engine's: created %v, %v", created, err)
	}
	c.caughtUp(t, l)
	if kept.Secret == "" {
		t.Fatal("keep was not given the key")
	}
	if _, err := c.auth.VerifyAccessKey(ctx, kept.ID, kept.Secret); err == nil {
		t.Fatal("the key kept by the engine whose bootstrap lost opens the bootstrap application")
	}
}

// appsDescribed describes applications as the node's source does: their
// creator and tags from one read of the store.
type appsDescribed struct{ s *auth.Store }

func (a appsDescribed) Describe(ctx context.Context, t auth.Target) ([]string, string, error) {
	app, err := a.s.GetApplication(ctx, t.ID)
	return auth.TagNames(app.Tags), app.CreatedBy, err
}
