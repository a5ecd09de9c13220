package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flowvault/flowvault/api"
	"github.com/flowvault/flowvault/auth"
	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/metadata"
	"github.com/flowvault/flowvault/projections"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// tokenPrincipals authenticates a token as the principal it names.
type tokenPrincipals map[string]auth.Principal

func (tokenPrincipals) Issue(context.Context, string, string, int64, string) (string, error) {
	return "", errors.New("this server issues no tokens")
}

func (tp tokenPrincipals) Authenticate(_ context.Context, token string) (auth.Principal, auth.Claims, error) {
	p, ok := tp[token]
	if !ok {
		return auth.Principal{}, auth.Claims{}, &auth.TokenError{Code: auth.CodeInvalidToken, Reason: "unknown token"}
	}
	return p, auth.Claims{Subject: p.ID}, nil
}

// fixedGrants is a fixed set of grants.
type fixedGrants struct{ grants []auth.Grant }

func (g *fixedGrants) GrantsOn(_ context.Context, t auth.Target) ([]auth.Grant, error) {
	var out []auth.Grant
	for _, gr := range g.grants {
		if gr.Target == t {
			out = append(out, gr)
		}
	}
	return out, nil
}

func (g *fixedGrants) GrantsTo(context.Context, auth.Subject, string) ([]auth.Grant, error) {
	return nil, nil
}

// point is where in a request a change made meanwhile lands: between the
// state the request's access was decided on and its read or write at the
// revision checked, the window a concurrent writer has. The decision
// reads as little as it needs (auth.Authorizer.Check), so where that
// window opens depends on what decides it.
type point int

const (
	// afterDescription is once the decision on a definition has read its
	// tags and creator: a decision that depends on them reads nothing of
	// the definition after them.
	afterDescription point = iota
	// afterRevision is once the request has read the definition's
	// revision: a decision the roles make alone (role USER's CREATE of a
	// free name) reads nothing but the revision.
	afterRevision
	// beforeSnapshot is as a listing takes its snapshot of the read
	// model, which it reads every definition in.
	beforeSnapshot
	// duringCheck is once a decision that the roles do not make has
	// started, as it reads the grants on its target, before it reads the
	// target's tags and creator: as a user's listing checks its first
	// definition.
	duringCheck
	// beforeStart is once a start's access was decided, as the engine is
	// asked to start it.
	beforeStart
)

// meanwhile is a change someone else makes once, when the next request
// reaches the point it is armed at.
type meanwhile struct {
	mu     sync.Mutex
	at     point
	change func()
	ran    bool
}

// arm makes f the change made when a request next reaches at.
func (m *meanwhile) arm(at point, f func()) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.at, m.change, m.ran = at, f, false
}

// reached makes the change armed at p, if any, once.
func (m *meanwhile) reached(p point) {
	m.mu.Lock()
	var f func()
	if m.at == p {
		f, m.change = m.change, nil
	}
	m.mu.Unlock()
	if f == nil {
		return
	}
	f()
	m.mu.Lock()
	m.ran = true
	m.mu.Unlock()
}

func (m *meanwhile) fired() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.ran
}

// definitionReader reads the tags and creators of definitions.
type definitionReader interface {
	auth.TagSource
	auth.CreatorSource
}

// describedMeanwhile describes definitions to the Authorizer from src in
// one read (auth.Describer), as the node's source does, and reaches
// afterDescription once it has.
type describedMeanwhile struct {
	src     definitionReader
	changes *meanwhile
}

func (d describedMeanwhile) Describe(ctx context.Context, t auth.Target) ([]string, string, error) {
	tags, err := d.src.TagsOf(ctx, t)
	if err != nil {
		return nil, "", err
	}
	creator, err := d.src.CreatorOf(ctx, t)
	if err != nil {
		return nil, "", err
	}
	d.changes.reached(afterDescription)
	return tags, creator, nil
}

// grantsMeanwhile is the Authorizer's grants, which reach duringCheck as
// a decision first reads them.
type grantsMeanwhile struct {
	*fixedGrants
	changes *meanwhile
}

func (g grantsMeanwhile) GrantsOn(ctx context.Context, t auth.Target) ([]auth.Grant, error) {
	g.changes.reached(duringCheck)
	return g.fixedGrants.GrantsOn(ctx, t)
}

// revisedMeanwhile is the API's store, which reaches afterRevision once
// a request has read a definition's revision, and beforeSnapshot as it
// takes a snapshot.
type revisedMeanwhile struct {
	api.Metadata
	changes *meanwhile
}

func (r revisedMeanwhile) Revision(ctx context.Context, kind metadata.Kind, name string) (metadata.Revision, error) {
	rev, err := r.Metadata.Revision(ctx, kind, name)
	r.changes.reached(afterRevision)
	return rev, err
}

func (r revisedMeanwhile) Snapshot(ctx context.Context) (*metadata.Snapshot, error) {
	r.changes.reached(beforeSnapshot)
	return r.Metadata.Snapshot(ctx)
}

// definitionSource tells the Authorizer the tags and creators of
// definitions, as the node wires it.
type definitionSource struct{ md *metadata.Store }

func kindOf(t auth.Target) metadata.Kind {
	if t.Type == auth.TargetTaskDef {
		return metadata.KindTask
	}
	return metadata.KindWorkflow
}

func (d definitionSource) TagsOf(ctx context.Context, t auth.Target) ([]string, error) {
	return tagStrings(d.md.GetTags(ctx, kindOf(t), t.ID))
}

// tagStrings renders tags as the Authorizer compares them, "key:value";
// a target not found has none.
func tagStrings(tags []conductor.Tag, err error) ([]string, error) {
	if errors.Is(err, fault.ErrNotFound) {
		return nil, nil
	}
	var out []string
	for _, tag := range tags {
		out = append(out, tag.Key+":"+tag.Value)
	}
	return out, err
}

func (d definitionSource) CreatorOf(ctx context.Context, t auth.Target) (string, error) {
	var by string
	var err error
	if kindOf(t) == metadata.KindTask {
		var def *conductor.TaskDef
		if def, err = d.md.GetTaskDef(ctx, t.ID); err == nil {
			by = def.CreatedBy
		}
	} else {
		var def *conductor.WorkflowDef
		if def, err = d.md.GetWorkflowDef(ctx, t.ID, nil); err == nil {
			by = def.CreatedBy
		}
	}
	if errors.Is(err, fault.ErrNotFound) {
		return "", nil
	}
	return by, err
}

const (
	pinUser  = "user@example.com"
	pinAdmin = "admin@example.com"
)

// openMetadata opens a metadata store over a new log and its read model,
// whose projection runs.
func openMetadata(tb testing.TB) (*eventlog.Log, *metadata.Store) {
	tb.Helper()
	l := testutil.OpenLog(tb, "")
	store := testutil.OpenStore(tb)
	runner := testutil.RunProjection(tb, l, store, metadata.Projection{},
		projections.RunnerConfig{Stream: eventlog.Metadata.Name, Poison: projections.Park})
	return l, metadata.New(l, store, runner, metadata.Options{Logger: testutil.Logger(tb)})
}

// newPinServer serves the metadata API over a real log and read model,
// with the real Authorizer. The user holds role USER (CREATE on every
// definition name) and UPDATE on whatever is tagged team:x. A change armed
// on the meanwhile returned lands in the next request that reaches its
// point.
func newPinServer(tb testing.TB) (*metadata.Store, *meanwhile, string) {
	tb.Helper()
	return newPinServerWith(tb, func(md *metadata.Store) definitionReader { return definitionSource{md} }, nil)
}

// newPinServerWith is newPinServer whose Authorizer learns the tags and
// creators of definitions from source, and whose API reads the store
// through serve, when not nil.
func newPinServerWith(tb testing.TB, source func(*metadata.Store) definitionReader, serve func(*metadata.Store) api.Metadata) (*metadata.Store, *meanwhile, string) {
	tb.Helper()
	_, md := openMetadata(tb)
	changes := &meanwhile{}
	authz := auth.NewAuthorizer(grantsMeanwhile{changes: changes, fixedGrants: &fixedGrants{grants: []auth.Grant{{
		Subject: auth.Subject{Type: auth.SubjectUser, ID: pinUser},
		Target:  auth.Target{Type: auth.TargetTag, ID: "team:x"},
		Access:  []auth.Access{auth.Update},
	}}}})
	described := describedMeanwhile{src: source(md), changes: changes}
	authz.Register(auth.TargetWorkflowDef, described)
	authz.Register(auth.TargetTaskDef, described)
	var served api.Metadata = md
	if serve != nil {
		served = serve(md)
	}
	srv := httptest.NewServer(api.New(api.Deps{
		Logger:     testutil.Logger(tb),
		Metadata:   revisedMeanwhile{Metadata: served, changes: changes},
		Authorizer: authz,
		Tokens: tokenPrincipals{
			"user-token":  {ID: pinUser, Roles: []string{auth.RoleUser}},
			"admin-token": {ID: pinAdmin, Roles: []string{auth.RoleAdmin}},
		},
	}))
	tb.Cleanup(srv.Close)
	return md, changes, srv.URL
}

// Every definition write applies to the definition its access was checked
// on. Another writer that creates, re-creates or re-tags the definition
// while the user's access is being checked makes the write stale: it is
// checked again on the new state, where the user may not change the
// other writer's definition (403), which stays as it was. Without the pin
// the user would overwrite, delete or re-tag a definition it may not
// change. The change lands once the decision has read what it decides on
// (a free name's revision for role USER's CREATE, else the definition's
// tags and creator) and before the write, so that the write, not the
// check, is what meets it.
func TestMetadataWritesPinnedToCheckedDefinition(t *testing.T) {
	t.Parallel()
	md, changes, base := newPinServer(t)
	ctx := testutil.Context(t, time.Minute)
	must := func(t *testing.T, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	// The helpers return errors: the changes made meanwhile run on the
	// server's goroutine, where a test may not stop.
	registerWF := func(name, by string, tags ...conductor.Tag) error {
		var d conductor.WorkflowDef
		err := conductor.Unmarshal([]byte(`{"name":"`+name+`","description":"by `+by+`","tasks":[{"name":"a","taskReferenceName":"a"}]}`), &d)
		if err == nil {
			err = md.RegisterWorkflowDef(ctx, &d, true, by)
		}
		if err == nil {
			err = md.SetTags(ctx, metadata.KindWorkflow, name, tags, by)
		}
		return err
	}
	registerTask := func(name, by string, tags ...conductor.Tag) error {
		var d conductor.TaskDef
		err := conductor.Unmarshal([]byte(`{"name":"`+name+`","description":"by `+by+`"}`), &d)
		if err == nil {
			err = md.UpdateTaskDef(ctx, &d, by)
		}
		if err == nil {
			err = md.SetTags(ctx, metadata.KindTask, name, tags, by)
		}
		return err
	}
	recreateWF := func(name string) error {
		if err := md.DeleteWorkflowDef(ctx, name, 1, pinAdmin); err != nil {
			return err
		}
		return registerWF(name, pinAdmin)
	}
	recreateTask := func(name string) error {
		if err := md.DeleteTaskDef(ctx, name, pinAdmin); err != nil {
			return err
		}
		return registerTask(name, pinAdmin)
	}
	retag := func(kind metadata.Kind, name string, tags ...conductor.Tag) func() error {
		return func() error { return md.SetTags(ctx, kind, name, tags, pinAdmin) }
	}
	teamX := conductor.Tag{Key: "team", Value: "x"}
	teamY := conductor.Tag{Key: "team", Value: "y"}
	// createdBy/description of a definition, as the other writer left it.
	adminMade := pinAdmin + "/by " + pinAdmin
	wfBy := func(t *testing.T, name string) string {
		t.Helper()
		d, err := md.GetWorkflowDef(ctx, name, nil)
		must(t, err)
		return d.CreatedBy + "/" + d.Description
	}
	taskBy := func(t *testing.T, name string) string {
		t.Helper()
		d, err := md.GetTaskDef(ctx, name)
		must(t, err)
		return d.CreatedBy + "/" + d.Description
	}
	tagged := func(kind metadata.Kind, name string, want ...conductor.Tag) func(t *testing.T) bool {
		return func(t *testing.T) bool {
			tags, err := md.GetTags(ctx, kind, name)
			must(t, err)
			return slices.Equal(tags, want)
		}
	}
	none := func() error { return nil }

	tests := []struct {
		name               string
		setup              func() error
		method, path, body string
		meanwhile          func() error
		at                 point
		// status is the answer (403, but for bulk writes, which report
		// per name); intact checks the other writer's definition.
		status int
		intact func(t *testing.T) bool
	}{
		{"register over a workflow created meanwhile", none,
			"POST", "/api/metadata/workflow?overwrite=true", `{"name":"fresh_wf","description":"by user","tasks":[{"name":"a","taskReferenceName":"a"}]}`,
			func() error { return registerWF("fresh_wf", pinAdmin) }, afterRevision,
			http.StatusForbidden, func(t *testing.T) bool { return wfBy(t, "fresh_wf") == adminMade }},
		{"bulk put over a workflow created meanwhile", none,
			"PUT", "/api/metadata/workflow", `[{"name":"fresh_bulk","description":"by user","tasks":[{"name":"a","taskReferenceName":"a"}]}]`,
			func() error { return registerWF("fresh_bulk", pinAdmin) }, afterRevision,
			http.StatusOK, func(t *testing.T) bool { return wfBy(t, "fresh_bulk") == adminMade }},
		{"delete of a workflow re-created meanwhile", func() error { return registerWF("own_wf", pinUser) },
			"DELETE", "/api/metadata/workflow/own_wf/1", "",
			func() error { return recreateWF("own_wf") }, afterDescription,
			http.StatusForbidden, func(t *testing.T) bool { return wfBy(t, "own_wf") == adminMade }},
		{"workflow tags set on a workflow re-tagged meanwhile", func() error { return registerWF("tagged_wf", pinAdmin, teamX) },
			"PUT", "/api/metadata/workflow/tagged_wf/tags", `[{"key":"team","value":"x"},{"key":"owner","value":"user"}]`,
			retag(metadata.KindWorkflow, "tagged_wf", teamY), afterDescription,
			http.StatusForbidden, tagged(metadata.KindWorkflow, "tagged_wf", teamY)},
		{"upsert over a task created meanwhile", none,
			"PUT", "/api/metadata/taskdefs", `{"name":"fresh_task","description":"by user"}`,
			func() error { return registerTask("fresh_task", pinAdmin) }, afterRevision,
			http.StatusForbidden, func(t *testing.T) bool { return taskBy(t, "fresh_task") == adminMade }},
		{"register over a task created meanwhile", none,
			"POST", "/api/metadata/taskdefs", `[{"name":"fresh_tasks","description":"by user"}]`,
			func() error { return registerTask("fresh_tasks", pinAdmin) }, afterRevision,
			http.StatusForbidden, func(t *testing.T) bool { return taskBy(t, "fresh_tasks") == adminMade }},
		{"delete of a task re-created meanwhile", func() error { return registerTask("own_task", pinUser) },
			"DELETE", "/api/metadata/taskdefs/own_task", "",
			func() error { return recreateTask("own_task") }, afterDescription,
			http.StatusForbidden, func(t *testing.T) bool { return taskBy(t, "own_task") == adminMade }},
		{"task tag added to a task re-tagged meanwhile", func() error { return registerTask("tagged_task", pinAdmin, teamX) },
			"POST", "/api/metadata/task/tagged_task/tags", `{"key":"owner","value":"user"}`,
			retag(metadata.KindTask, "tagged_task", teamY), afterDescription,
			http.StatusForbidden, tagged(metadata.KindTask, "tagged_task", teamY)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			must(t, tt.setup())
			changes.arm(tt.at, func() {
				if err := tt.meanwhile(); err != nil {
					t.Errorf("the change made meanwhile: %v", err)
				}
			})
			got := client{t, base, "user-token"}.do(tt.method, tt.path, tt.body)
			if !changes.fired() {
				t.Fatal("the change was never made: the request never reached its point")
			}
			if got.status != tt.status || !strings.Contains(got.body, "user@example.com may not") {
				t.Errorf("answer %d %s, want %d refusing the user on the new state", got.status, got.body, tt.status)
			}
			if !tt.intact(t) {
				t.Errorf("the user's write changed the definition another writer made meanwhile")
			}
		})
	}
}

// A write gone stale is checked again on the new state and applied when
// that state grants it, as a client sending it again would have it: the
// definition was re-tagged meanwhile, and the user still holds UPDATE
// through team:x. One that goes stale at every try is answered 409,
// retryable: nothing was written, and the same request may succeed.
func TestMetadataStaleWriteCheckedAgain(t *testing.T) {
	t.Parallel()
	md, changes, base := newPinServer(t)
	ctx := testutil.Context(t, time.Minute)
	user := client{t, base, "user-token"}
	teamX := conductor.Tag{Key: "team", Value: "x"}
	var retags atomic.Int64
	retag := func(kind metadata.Kind, name string) error {
		n := retags.Add(1)
		return md.SetTags(ctx, kind, name, []conductor.Tag{teamX, {Key: "n", Value: fmt.Sprint(n)}}, pinAdmin)
	}
	for _, kind := range []metadata.Kind{metadata.KindTask, metadata.KindWorkflow} {
		name := "again_" + string(kind)
		put := func() response {
			if kind == metadata.KindTask {
				return user.do("PUT", "/api/metadata/taskdefs", `{"name":"`+name+`","description":"by user"}`)
			}
			return user.do("POST", "/api/metadata/workflow?overwrite=true", `{"name":"`+name+`","description":"by user","tasks":[{"name":"a","taskReferenceName":"a"}]}`)
		}
		description := func() string {
			if kind == metadata.KindTask {
				d, err := md.GetTaskDef(ctx, name)
				if err != nil {
					t.Fatal(err)
				}
				return d.Description
			}
			d, err := md.GetWorkflowDef(ctx, name, nil)
			if err != nil {
				t.Fatal(err)
			}
			return d.Description
		}
		admin := client{t, base, "admin-token"}
		if kind == metadata.KindTask {
			admin.must(http.StatusNoContent, "PUT", "/api/metadata/taskdefs", `{"name":"`+name+`","description":"by admin"}`)
		} else {
			admin.must(http.StatusNoContent, "POST", "/api/metadata/workflow", `{"name":"`+name+`","description":"by admin","tasks":[{"name":"a","taskReferenceName":"a"}]}`)
		}
		admin.must(http.StatusNoContent, "PUT", "/api/metadata/"+map[metadata.Kind]string{metadata.KindTask: "task", metadata.KindWorkflow: "workflow"}[kind]+"/"+name+"/tags", `[{"key":"team","value":"x"}]`)

		changes.arm(afterDescription, func() {
			if err := retag(kind, name); err != nil {
				t.Errorf("the change made meanwhile: %v", err)
			}
		})
		put().expect(t, http.StatusNoContent)
		if !changes.fired() {
			t.Fatal("the request was never checked against the definition")
		}
		if got := description(); got != "by user" {
			t.Errorf("%s: description %q after the user's write checked again", name, got)
		}

		// Changed meanwhile at every check.
		var again func()
		again = func() {
			if err := retag(kind, name); err != nil {
				t.Errorf("the change made meanwhile: %v", err)
			}
			changes.arm(afterDescription, again)
		}
		changes.arm(afterDescription, again)
		e := put().expectError(t, http.StatusConflict, "changed while this request's access was being checked")
		changes.arm(afterDescription, nil)
		if e["retryable"] != true {
			t.Errorf("%s: the stale write's answer is not retryable: %v", name, e)
		}
	}
}

// POST /api/metadata/taskdefs writes its definitions one at a time. One
// changed meanwhile by someone else is checked again on its new state with
// those after it, not the ones already written; refused there, the answer
// names the ones written before it, which stay.
func TestTaskDefsBulkRefusedPartway(t *testing.T) {
	t.Parallel()
	md, changes, base := newPinServer(t)
	ctx := testutil.Context(t, time.Minute)
	user := client{t, base, "user-token"}
	admin := client{t, base, "admin-token"}
	for _, name := range []string{"part_a", "part_b"} {
		admin.must(http.StatusNoContent, "PUT", "/api/metadata/taskdefs", `{"name":"`+name+`","description":"by admin"}`)
		admin.must(http.StatusNoContent, "PUT", "/api/metadata/task/"+name+"/tags", `[{"key":"team","value":"x"}]`)
	}
	// The decision on part_a passes; during the one on part_b, after it
	// read part_b's tags and creator, the admin moves part_b to a team the user may
	// not change.
	changes.arm(afterDescription, func() {
		changes.arm(afterDescription, func() {
			if err := md.SetTags(ctx, metadata.KindTask, "part_b", []conductor.Tag{{Key: "team", Value: "y"}}, pinAdmin); err != nil {
				t.Errorf("the change made meanwhile: %v", err)
			}
		})
	})
	user.do("POST", "/api/metadata/taskdefs", `[{"name":"part_a","description":"by user"},{"name":"part_b","description":"by user"}]`).
		expectError(t, http.StatusForbidden, "(registered before it: part_a)")
	for name, want := range map[string]string{"part_a": "by user", "part_b": "by admin"} {
		d, err := md.GetTaskDef(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if d.Description != want {
			t.Errorf("%s: description %q, want %q", name, d.Description, want)
		}
	}
}

// revisionCounter counts the revisions of definitions the API reads, one
// per definition it checks and reads at the state checked, the tag sets
// it reads one name at a time, and the snapshots it reads in.
type revisionCounter struct {
	api.Metadata
	n, tags, snapshots atomic.Int64
}

func (c *revisionCounter) Snapshot(ctx context.Context) (*metadata.Snapshot, error) {
	c.snapshots.Add(1)
	return c.Metadata.Snapshot(ctx)
}

func (c *revisionCounter) Revision(ctx context.Context, kind metadata.Kind, name string) (metadata.Revision, error) {
	c.n.Add(1)
	return c.Metadata.Revision(ctx, kind, name)
}

func (c *revisionCounter) GetTagsAt(ctx context.Context, kind metadata.Kind, name string, rev metadata.Revision) ([]conductor.Tag, error) {
	c.tags.Add(1)
	return c.Metadata.GetTagsAt(ctx, kind, name, rev)
}

// newCountingPinServer is newPinServer whose API reads the store through
// a revisionCounter.
func newCountingPinServer(t *testing.T) (*metadata.Store, *revisionCounter, string) {
	t.Helper()
	revisions := &revisionCounter{}
	md, _, base := newPinServerWith(t, func(md *metadata.Store) definitionReader { return definitionSource{md} }, func(md *metadata.Store) api.Metadata {
		revisions.Metadata = md
		return revisions
	})
	return md, revisions, base
}

// GET /api/metadata/tags lists the tags of every definition the caller
// may read, each once, sorted, from one snapshot of the read model: the
// user's listing checks each tagged definition on the state it read its
// tags in, the admin, who may read them all, is checked on none, and
// neither reads a revision or a tag set per name. The admin sees a
// definition's tags go with it.
func TestMetadataTagsListing(t *testing.T) {
	t.Parallel()
	md, revisions, base := newCountingPinServer(t)
	ctx := testutil.Context(t, time.Minute)
	set := func(kind metadata.Kind, name, by string, tags ...conductor.Tag) {
		t.Helper()
		var err error
		if kind == metadata.KindTask {
			var d conductor.TaskDef
			if err = conductor.Unmarshal([]byte(`{"name":"`+name+`"}`), &d); err == nil {
				err = md.UpdateTaskDef(ctx, &d, by)
			}
		} else {
			var d conductor.WorkflowDef
			if err = conductor.Unmarshal([]byte(`{"name":"`+name+`","tasks":[{"name":"a","taskReferenceName":"a"}]}`), &d); err == nil {
				err = md.RegisterWorkflowDef(ctx, &d, false, by)
			}
		}
		if err == nil {
			err = md.SetTags(ctx, kind, name, tags, by)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	tag := func(k, v string) conductor.Tag { return conductor.Tag{Key: k, Value: v} }
	user, admin := client{t, base, "user-token"}, client{t, base, "admin-token"}
	if got := user.must(http.StatusOK, "GET", "/api/metadata/tags", ""); got != "[]" {
		t.Fatalf("no tags = %s", got)
	}
	set(metadata.KindWorkflow, "users_flow", pinUser, tag("team", "core"), tag("env", "dev"))
	set(metadata.KindTask, "users_task", pinUser, tag("env", "dev"))
	set(metadata.KindWorkflow, "admins_flow", pinAdmin, tag("customer", "acme"), tag("env", "prod"))
	set(metadata.KindTask, "shared_task", pinAdmin, tag("team", "x"), tag("cost", "high")) // team:x grants the user UPDATE, so READ

	for _, tt := range []struct {
		who    client
		before func()
		want   string
	}{
		{user, nil, `[{"key":"cost","value":"high"},{"key":"env","value":"dev"},{"key":"team","value":"core"},{"key":"team","value":"x"}]`},
		{admin, nil, `[{"key":"cost","value":"high"},{"key":"customer","value":"acme"},{"key":"env","value":"dev"},{"key":"env","value":"prod"},` +
			`{"key":"team","value":"core"},{"key":"team","value":"x"}]`},
		{admin, func() {
			if err := md.DeleteWorkflowDef(ctx, "admins_flow", 1, pinAdmin); err != nil {
				t.Fatal(err)
			}
		}, `[{"key":"cost","value":"high"},{"key":"env","value":"dev"},{"key":"team","value":"core"},{"key":"team","value":"x"}]`},
	} {
		if tt.before != nil {
			tt.before()
		}
		revisions.n.Store(0)
		revisions.tags.Store(0)
		revisions.snapshots.Store(0)
		if got := tt.who.must(http.StatusOK, "GET", "/api/metadata/tags", ""); got != tt.want {
			t.Errorf("%s sees %s, want %s", tt.who.token, got, tt.want)
		}
		if got, sets, snaps := revisions.n.Load(), revisions.tags.Load(), revisions.snapshots.Load(); got != 0 || sets != 0 || snaps != 1 {
			t.Errorf("%s's listing read %d revisions and %d tag sets one at a time in %d snapshots, want 0, 0 and 1", tt.who.token, got, sets, snaps)
		}
	}
	client{t, base, ""}.do("GET", "/api/metadata/tags", "").expectError(t, http.StatusUnauthorized, "")
}

// Each definition listing is answered from one snapshot of the read
// model, without a revision read per name to pin it to a check, nor a
// snapshot per name: a user's, checked name by name on the state the
// snapshot holds, and an admin's, whom every check allows and who is
// checked on none. What the admin is answered is what a user allowed on
// every definition (tagged team:x) is answered.
func TestMetadataListingsReadOneSnapshot(t *testing.T) {
	t.Parallel()
	md, revisions, base := newCountingPinServer(t)
	ctx := testutil.Context(t, time.Minute)
	teamX := []conductor.Tag{{Key: "team", Value: "x"}}
	for _, w := range []struct {
		name    string
		version int
	}{{"flow_a", 1}, {"flow_a", 2}, {"flow_b", 1}} {
		var d conductor.WorkflowDef
		err := conductor.Unmarshal([]byte(fmt.Sprintf(`{"name":%q,"version":%d,"description":"v%d","tasks":[{"name":"a","taskReferenceName":"a"}]}`, w.name, w.version, w.version)), &d)
		if err == nil {
			err = md.RegisterWorkflowDef(ctx, &d, false, pinAdmin)
		}
		if err == nil {
			err = md.SetTags(ctx, metadata.KindWorkflow, w.name, teamX, pinAdmin)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"task_a", "task_b"} {
		var d conductor.TaskDef
		err := conductor.Unmarshal([]byte(`{"name":"`+name+`"}`), &d)
		if err == nil {
			err = md.UpdateTaskDef(ctx, &d, pinAdmin)
		}
		if err == nil {
			err = md.SetTags(ctx, metadata.KindTask, name, append(teamX, conductor.Tag{Key: "name", Value: name}), pinAdmin)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, path := range []string{
		"/api/metadata/workflow", "/api/metadata/workflow?metadata=true", "/api/metadata/workflow?name=flow_a&short=true",
		"/api/metadata/workflow?tagKey=team&tagValue=x", "/api/metadata/workflow?access=UPDATE",
		"/api/metadata/workflow/latest-versions", "/api/metadata/workflow/names-and-versions",
		"/api/metadata/taskdefs", "/api/metadata/taskdefs?metadata=true", "/api/metadata/taskdefs?tagKey=name&tagValue=task_b",
		"/api/metadata/tags",
	} {
		t.Run(path, func(t *testing.T) {
			list := func(who string) string {
				t.Helper()
				revisions.n.Store(0)
				revisions.snapshots.Store(0)
				got := client{t, base, who + "-token"}.must(http.StatusOK, "GET", path, "")
				if n := revisions.n.Load(); n != 0 {
					t.Errorf("the %s's listing read %d revisions, want 0", who, n)
				}
				if n := revisions.snapshots.Load(); n != 1 {
					t.Errorf("the %s's listing took %d snapshots, want 1", who, n)
				}
				return got
			}
			want := list("user")
			if want == "[]" || want == "{}" {
				t.Fatalf("the user is listed nothing")
			}
			if got := list("admin"); got != want {
				t.Errorf("the admin is listed\n%s\nthe user\n%s", got, want)
			}
		})
	}
}

// oneStateChanges are where a listing of one state meets "went" removed
// and "came" created by someone else, for each of the admin and the
// user, and which of the two it then lists: before its snapshot, came;
// once the user's listing has started to check its names, went.
var oneStateChanges = []struct {
	who, what  string
	at         point
	want, gone string
}{
	{"admin", "before its snapshot", beforeSnapshot, "came", "went"},
	{"user", "before its snapshot", beforeSnapshot, "came", "went"},
	{"user", "during its first check", duringCheck, "went", "came"},
}

// A listing reads its names in the snapshot it checks and reads their
// definitions in: a definition removed and another registered meanwhile
// are answered as the snapshot holds them. Just before the snapshot is
// taken, that is the new one alone, to the admin and to the user (both
// definitions are tagged team:x, which the user may read); once the
// user's listing has started to check the names it read, it is the
// removed one alone. Names read from the live store, each then checked
// and read live, would list neither: the removed name, found in no
// definition (or in no snapshot, for the admin's names read before it),
// and not the new one, never read, a state the definitions never had.
func TestMetadataListingIsOneState(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		kind  metadata.Kind
		paths []string
	}{
		{metadata.KindWorkflow, []string{"/api/metadata/workflow", "/api/metadata/workflow?tagKey=team&tagValue=x",
			"/api/metadata/workflow/latest-versions", "/api/metadata/workflow/names-and-versions", "/api/metadata/tags"}},
		{metadata.KindTask, []string{"/api/metadata/taskdefs", "/api/metadata/taskdefs?tagKey=team&tagValue=x", "/api/metadata/tags"}},
	} {
		for _, path := range tt.paths {
			for _, when := range oneStateChanges {
				t.Run(fmt.Sprintf("%s %s, the %s's, changed %s", tt.kind, path, when.who, when.what), func(t *testing.T) {
					t.Parallel()
					md, changes, base := newPinServer(t)
					ctx := testutil.Context(t, time.Minute)
					register := func(name string) error {
						var err error
						if tt.kind == metadata.KindTask {
							var d conductor.TaskDef
							if err = conductor.Unmarshal([]byte(`{"name":"`+name+`"}`), &d); err == nil {
								err = md.UpdateTaskDef(ctx, &d, pinAdmin)
							}
						} else {
							var d conductor.WorkflowDef
							if err = conductor.Unmarshal([]byte(`{"name":"`+name+`","version":1,"tasks":[{"name":"a","taskReferenceName":"a"}]}`), &d); err == nil {
								err = md.RegisterWorkflowDef(ctx, &d, false, pinAdmin)
							}
						}
						if err == nil {
							err = md.SetTags(ctx, tt.kind, name, []conductor.Tag{{Key: "team", Value: "x"}, {Key: "name", Value: name}}, pinAdmin)
						}
						return err
					}
					if err := register("went"); err != nil {
						t.Fatal(err)
					}
					changes.arm(when.at, func() {
						var err error
						if tt.kind == metadata.KindTask {
							err = md.DeleteTaskDef(ctx, "went", pinAdmin)
						} else {
							err = md.DeleteWorkflowDef(ctx, "went", 1, pinAdmin)
						}
						if err == nil {
							err = register("came")
						}
						if err != nil {
							t.Errorf("the change made meanwhile: %v", err)
						}
					})
					got := client{t, base, when.who + "-token"}.must(http.StatusOK, "GET", path, "")
					if !changes.fired() {
						t.Fatal("the change never landed")
					}
					if !strings.Contains(got, `"`+when.want+`"`) || strings.Contains(got, `"`+when.gone+`"`) {
						t.Errorf("the %s is listed %s, want %s alone", when.who, got, when.want)
					}
				})
			}
		}
	}
}

// What a GET of one definition answers (the definition, a version of it,
// it with ?metadata=true, its tags, its rateLimitConfig) is of the
// definition the caller's READ was checked on, as a write applies only to
// that one. The user may read its own definition as its creator, or the
// admin's as tagged team:x; once the check has read that, the admin
// deletes the definition and registers it again, or tags it otherwise:
// the answer is 409, retryable, not the admin's definition or tags. Asked
// again, the user is checked on the admin's, and refused.
func TestMetadataReadsServeTheCheckedDefinition(t *testing.T) {
	t.Parallel()
	md, changes, base := newPinServer(t)
	ctx := testutil.Context(t, time.Minute)
	teamX := conductor.Tag{Key: "team", Value: "x"}
	adminsTags := []conductor.Tag{{Key: "team", Value: "y"}, {Key: "owner", Value: "admins-tag"}}
	// Returning errors: the change made meanwhile runs on the server's
	// goroutine, where a test may not stop.
	register := func(kind metadata.Kind, name, by string, tags ...conductor.Tag) error {
		var err error
		if kind == metadata.KindTask {
			var d conductor.TaskDef
			if err = conductor.Unmarshal([]byte(`{"name":"`+name+`","description":"by `+by+`"}`), &d); err == nil {
				err = md.UpdateTaskDef(ctx, &d, by)
			}
		} else {
			var d conductor.WorkflowDef
			if err = conductor.Unmarshal([]byte(`{"name":"`+name+`","description":"by `+by+`","rateLimitConfig":{"rateLimitKey":"key of `+by+`","concurrentExecLimit":1},`+
				`"tasks":[{"name":"a","taskReferenceName":"a"}]}`), &d); err == nil {
				err = md.RegisterWorkflowDef(ctx, &d, true, by)
			}
		}
		if err == nil {
			err = md.SetTags(ctx, kind, name, tags, by)
		}
		return err
	}
	recreate := func(kind metadata.Kind, name string) error {
		var err error
		if kind == metadata.KindTask {
			err = md.DeleteTaskDef(ctx, name, pinAdmin)
		} else {
			err = md.DeleteWorkflowDef(ctx, name, 1, pinAdmin)
		}
		if err == nil {
			err = register(kind, name, pinAdmin, adminsTags...)
		}
		return err
	}
	retag := func(kind metadata.Kind, name string) error {
		return md.SetTags(ctx, kind, name, adminsTags, pinAdmin)
	}
	paths := map[metadata.Kind][]string{
		metadata.KindWorkflow: {"/api/metadata/workflow/%s", "/api/metadata/workflow/%s?version=1", "/api/metadata/workflow/%s?metadata=true",
			"/api/metadata/workflow/%s/tags", "/api/metadata/workflow/%s/rateLimit"},
		metadata.KindTask: {"/api/metadata/taskdefs/%s", "/api/metadata/taskdefs/%s?metadata=true", "/api/metadata/task/%s/tags"},
	}
	user := client{t, base, "user-token"}
	n := 0
	for _, kind := range []metadata.Kind{metadata.KindWorkflow, metadata.KindTask} {
		for _, path := range paths[kind] {
			for _, c := range []struct {
				how       string
				setup     func(name string) error
				meanwhile func(name string) error
			}{
				{"the user's, created again by the admin", func(name string) error { return register(kind, name, pinUser) },
					func(name string) error { return recreate(kind, name) }},
				{"the admin's, tagged otherwise", func(name string) error { return register(kind, name, pinAdmin, teamX) },
					func(name string) error { return retag(kind, name) }},
			} {
				n++
				name := fmt.Sprintf("read_%d", n)
				path := fmt.Sprintf(path, name)
				t.Run(path+" of "+c.how, func(t *testing.T) {
					if err := c.setup(name); err != nil {
						t.Fatal(err)
					}
					changes.arm(afterDescription, func() {
						if err := c.meanwhile(name); err != nil {
							t.Errorf("the change made meanwhile: %v", err)
						}
					})
					got := user.do("GET", path, "")
					if !changes.fired() {
						t.Fatal("the request was never checked against the definition")
					}
					var body struct {
						Retryable bool `json:"retryable"`
					}
					_ = json.Unmarshal([]byte(got.body), &body)
					if got.status != http.StatusConflict || !body.Retryable || strings.Contains(got.body, "admin") {
						t.Fatalf("GET checked on the definition before the admin's change: %d %s, want 409 retryable", got.status, got.body)
					}
					if got = user.do("GET", path, ""); got.status != http.StatusForbidden || strings.Contains(got.body, "admins-tag") {
						t.Fatalf("GET checked on the admin's definition: %d %s, want 403", got.status, got.body)
					}
				})
			}
		}
	}
}

// A listing shows each definition, and its tags, as it was when the
// caller's access to it was checked: both read the listing's snapshot.
// The user's workflow or task "own" (two versions of a workflow), tagged,
// is in the snapshot; as the check of the user's access to it starts, the
// admin deletes it and registers its own under the name. The user,
// allowed on its own where it was checked, is shown its own, versions,
// description and tags, and nothing of the admin's. Checked on the live
// store, the check would read the admin's and the listing leave both out.
func TestMetadataListingsServeTheCheckedDefinitions(t *testing.T) {
	t.Parallel()
	usersTags := []conductor.Tag{{Key: "owner", Value: "users-tag"}}
	for _, tc := range []struct {
		kind metadata.Kind
		path string
		want string // the answer, with the user's own definition
	}{
		{metadata.KindWorkflow, "/api/metadata/workflow", `"description":"by user@example.com"`},
		{metadata.KindWorkflow, "/api/metadata/workflow?metadata=true", `[{"tags":[{"key":"owner","value":"users-tag"}],"name":"own","version":1,"description":"by user@example.com"`},
		{metadata.KindWorkflow, "/api/metadata/workflow?name=own&short=true", `"version":2,"description":"by user@example.com","tasks":[]`},
		{metadata.KindWorkflow, "/api/metadata/workflow/latest-versions", `"version":2,"description":"by user@example.com"`},
		{metadata.KindWorkflow, "/api/metadata/workflow/names-and-versions", `{"own":[{"name":"own","version":1,`},
		{metadata.KindWorkflow, "/api/metadata/tags", `[{"key":"owner","value":"users-tag"}]`},
		{metadata.KindTask, "/api/metadata/taskdefs", `"description":"by user@example.com"`},
		{metadata.KindTask, "/api/metadata/taskdefs?metadata=true", `[{"tags":[{"key":"owner","value":"users-tag"}],"name":"own","description":"by user@example.com"`},
		{metadata.KindTask, "/api/metadata/tags", `[{"key":"owner","value":"users-tag"}]`},
	} {
		t.Run(string(tc.kind)+" "+tc.path, func(t *testing.T) {
			t.Parallel()
			ctx := testutil.Context(t, time.Minute)
			md, changes, base := newPinServer(t)
			register := func(by string, version int) error {
				var err error
				if tc.kind == metadata.KindTask {
					var d conductor.TaskDef
					if err = conductor.Unmarshal([]byte(`{"name":"own","description":"by `+by+`"}`), &d); err == nil {
						err = md.UpdateTaskDef(ctx, &d, by)
					}
					return err
				}
				var d conductor.WorkflowDef
				if err = conductor.Unmarshal([]byte(fmt.Sprintf(`{"name":"own","version":%d,"description":"by %s","tasks":[{"name":"a","taskReferenceName":"a"}]}`, version, by)), &d); err == nil {
					err = md.RegisterWorkflowDef(ctx, &d, false, by)
				}
				return err
			}
			err := register(pinUser, 1)
			if err == nil && tc.kind == metadata.KindWorkflow {
				err = register(pinUser, 2)
			}
			if err == nil {
				err = md.SetTags(ctx, tc.kind, "own", usersTags, pinUser)
			}
			if err != nil {
				t.Fatal(err)
			}
			changes.arm(duringCheck, func() {
				var err error
				if tc.kind == metadata.KindTask {
					err = md.DeleteTaskDef(ctx, "own", pinAdmin)
				} else if err = md.DeleteWorkflowDef(ctx, "own", 2, pinAdmin); err == nil {
					err = md.DeleteWorkflowDef(ctx, "own", 1, pinAdmin)
				}
				if err == nil {
					err = register(pinAdmin, 1)
				}
				if err == nil {
					err = md.SetTags(ctx, tc.kind, "own", []conductor.Tag{{Key: "owner", Value: "admins-tag"}}, pinAdmin)
				}
				if err != nil {
					t.Errorf("the change made meanwhile: %v", err)
				}
			})
			got := client{t, base, "user-token"}.must(http.StatusOK, "GET", tc.path, "")
			if !changes.fired() {
				t.Fatal("the listing was never checked against the definition")
			}
			if strings.Contains(got, "admin") || !strings.Contains(got, tc.want) {
				t.Fatalf("the user is shown %s, want its own definition (%s) alone", got, tc.want)
			}
		})
	}
}
