package auth_test

import (
	"context"
	"testing"
	"time"

	"github.com/flowvault/flowvault/auth"
	"github.com/flowvault/flowvault/internal/testutil"
)

// A group's defaultAccess gives its members that access on what any member
// created, and nothing on what outsiders created; leaving the group takes
// it away at once, because the grants are derived at decision time.
func TestGroupDefaultAccess(t *testing.T) {
	t.Parallel()
	l := testutil.OpenLog(t, "")
	e := newEngine(t, l)
	s, ctx := e.auth, testutil.Context(t, 30*time.Second)
	must[auth.Group](t)(s.UpsertGroup(ctx, "eng", auth.GroupRequest{
		DefaultAccess: map[string][]string{"WORKFLOW_DEF": {"READ", "EXECUTE"}}}, "root"))
	for _, u := range []struct {
		id     string
		groups []string
	}{{"alice@x", []string{"eng"}}, {"bob@x", []string{"eng"}}, {"carol@x", nil}} {
		must[auth.User](t)(s.UpsertUser(ctx, u.id, auth.UserRequest{Name: u.id, Roles: []string{auth.RoleUser}, Groups: u.groups}, "root"))
	}
	e.caughtUp(t, l)
	a := auth.NewAuthorizer(s)
	def := func(creator string) auth.Resource {
		return auth.Resource{Target: auth.Target{Type: auth.TargetWorkflowDef, ID: "flow"}, Creator: creator}
	}
	secret := auth.Resource{Target: auth.Target{Type: auth.TargetSecret, ID: "s"}, Creator: "alice@x"}

	for _, tc := range []struct {
		name   string
		who    string
		access auth.Access
		res    auth.Resource
		want   bool
	}{
		{"member reads a member's definition", "bob@x", auth.Read, def("alice@x"), true},
		{"member executes it", "bob@x", auth.Execute, def("alice@x"), true},
		{"but may not update it", "bob@x", auth.Update, def("alice@x"), false},
		{"outsider gets nothing", "carol@x", auth.Read, def("alice@x"), false},
		{"nothing on an outsider's definition", "bob@x", auth.Read, def("carol@x"), false},
		{"nothing on a type without default access", "bob@x", auth.Read, secret, false},
	} {
		p := must[auth.Principal](t)(s.Principal(ctx, tc.who))
		if d := a.Check(ctx, p, tc.access, tc.res); d.Allowed != tc.want || d.Err != nil {
			t.Errorf("%s: allowed=%v (%s, err %v), want %v", tc.name, d.Allowed, d.Reason, d.Err, tc.want)
		}
	}

	if err := s.ChangeMembers(ctx, "eng", []string{"alice@x"}, true, "root"); err != nil {
		t.Fatal(err)
	}
	e.caughtUp(t, l)
	p := must[auth.Principal](t)(s.Principal(ctx, "bob@x"))
	if d := a.Check(ctx, p, auth.Read, def("alice@x")); d.Allowed {
		t.Errorf("after alice left eng, bob still reads her definition: %s", d.Reason)
	}
}

// A DOMAIN grant reaches the Authorizer as every grant does: to a user,
// to its group, to its role; it covers the tasks of the domain's queue
// and no other, and its revocation counts from the next decision on. The
// listing of what a subject holds shows it like any other grant.
func TestDomainGrant(t *testing.T) {
	t.Parallel()
	l := testutil.OpenLog(t, "")
	e := newEngine(t, l)
	s, ctx := e.auth, testutil.Context(t, 30*time.Second)
	must[auth.Group](t)(s.UpsertGroup(ctx, "eu-workers", auth.GroupRequest{}, "root"))
	for _, u := range []struct {
		id     string
		roles  []string
		groups []string
	}{{"direct@x", nil, nil}, {"member@x", nil, []string{"eu-workers"}}, {"worker@x", []string{auth.RoleWorker}, nil}, {"other@x", nil, nil}} {
		must[auth.User](t)(s.UpsertUser(ctx, u.id, auth.UserRequest{Name: u.id, Roles: u.roles, Groups: u.groups}, "root"))
	}
	eu := auth.Target{Type: auth.TargetDomain, ID: "eu"}
	grants := []auth.Grant{
		{Subject: auth.Subject{Type: auth.SubjectUser, ID: "direct@x"}, Target: eu, Access: []auth.Access{auth.Execute}},
		{Subject: auth.Subject{Type: auth.SubjectGroup, ID: "eu-workers"}, Target: eu, Access: []auth.Access{auth.Execute}},
		{Subject: auth.Subject{Type: auth.SubjectRole, ID: auth.RoleWorker}, Target: eu, Access: []auth.Access{auth.Execute}},
	}
	for _, g := range grants {
		if err := s.Grant(ctx, g, "root"); err != nil {
			t.Fatal(err)
		}
	}
	e.caughtUp(t, l)
	a := auth.NewAuthorizer(s)
	task := func(domain string) auth.Resource {
		return auth.Resource{Target: auth.Target{Type: auth.TargetTaskDef, ID: "resize"}, Domain: domain}
	}
	check := func(t *testing.T, who string, res auth.Resource) auth.Decision {
		t.Helper()
		p := must[auth.Principal](t)(s.Principal(ctx, who))
		d := a.Check(ctx, p, auth.Execute, res)
		if d.Err != nil {
			t.Fatalf("%s: %v", who, d.Err)
		}
		return d
	}

	for _, tc := range []struct {
		name string
		who  string
		res  auth.Resource
		want bool
	}{
		{"user's grant", "direct@x", task("eu"), true},
		{"group's grant", "member@x", task("eu"), true},
		{"role's grant", "worker@x", task("eu"), true},
		{"no grant", "other@x", task("eu"), false},
		{"not the queue without domain", "direct@x", task(""), false},
		{"not another domain", "direct@x", task("us"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if d := check(t, tc.who, tc.res); d.Allowed != tc.want {
				t.Errorf("allowed=%v (%s), want %v", d.Allowed, d.Reason, tc.want)
			}
		})
	}

	listed := must[[]auth.GrantedAccess](t)(a.GrantedAccess(ctx, []auth.Subject{grants[0].Subject}))
	if len(listed) != 1 || listed[0].Target != eu || len(listed[0].Access) != 1 || listed[0].Access[0] != auth.Execute {
		t.Errorf("granted access of direct@x: %+v", listed)
	}

	for _, g := range grants {
		if err := s.Revoke(ctx, g, "root"); err != nil {
			t.Fatal(err)
		}
	}
	e.caughtUp(t, l)
	for _, who := range []string{"direct@x", "member@x", "worker@x"} {
		if d := check(t, who, task("eu")); d.Allowed {
			t.Errorf("%s still executes in eu after the revocation: %s", who, d.Reason)
		}
	}
}

// twoLives answers a target's tags and creator as two lives of one name
// would between two reads: TagsOf and CreatorOf each read it, and read
// different states; Describe reads one.
type twoLives struct{ separate, together int }

func (s *twoLives) TagsOf(context.Context, auth.Target) ([]string, error) {
	s.separate++
	return []string{"team:a"}, nil // the former life's tags
}

func (s *twoLives) CreatorOf(context.Context, auth.Target) (string, error) {
	s.separate++
	return "alice@x", nil // the present life's creator
}

func (s *twoLives) Describe(context.Context, auth.Target) ([]string, string, error) {
	s.together++
	return nil, "alice@x", nil
}

// A source that describes a target in one read (auth.Describer) is asked
// once per decision, its tags and creator from one state of the target:
// asked twice, a name deleted and registered again between the reads lent
// the former life's tags, and what a TAG grant gives on them, to the new
// one (and a workflow definition the read model lacked was read from the
// log twice).
func TestDescriberReadsOnce(t *testing.T) {
	t.Parallel()
	l := testutil.OpenLog(t, "")
	e := newEngine(t, l)
	s, ctx := e.auth, testutil.Context(t, 30*time.Second)
	must[auth.User](t)(s.UpsertUser(ctx, "carol@x", auth.UserRequest{Name: "carol", Roles: []string{auth.RoleUser}}, "root"))
	must[auth.User](t)(s.UpsertUser(ctx, "alice@x", auth.UserRequest{Name: "alice", Roles: []string{auth.RoleUser}}, "root"))
	if err := s.Grant(ctx, auth.Grant{Subject: auth.Subject{Type: auth.SubjectUser, ID: "carol@x"},
		Target: auth.Target{Type: auth.TargetTag, ID: "team:a"}, Access: []auth.Access{auth.Read}}, "root"); err != nil {
		t.Fatal(err)
	}
	e.caughtUp(t, l)
	a := auth.NewAuthorizer(s)
	src := &twoLives{}
	a.Register(auth.TargetWorkflowDef, src)
	flow := auth.Resource{Target: auth.Target{Type: auth.TargetWorkflowDef, ID: "flow"}}
	for _, tc := range []struct {
		who  string
		want bool
	}{{"alice@x", true}, {"carol@x", false}} {
		p := must[auth.Principal](t)(s.Principal(ctx, tc.who))
		if d := a.Check(ctx, p, auth.Read, flow); d.Allowed != tc.want || d.Err != nil {
			t.Errorf("%s reads flow: allowed=%v (%s, err %v), want %v", tc.who, d.Allowed, d.Reason, d.Err, tc.want)
		}
	}
	if src.together != 2 || src.separate != 0 {
		t.Fatalf("2 decisions asked Describe %d times and TagsOf or CreatorOf %d times, want 2 and 0", src.together, src.separate)
	}
}
