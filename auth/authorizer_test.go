package auth_test

import (
	"context"
	"errors"
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

// tagReaders is an auth store holding alice@x and carol@x, of role USER,
// carol reading what carries tag, and root@x, an admin.
func tagReaders(t *testing.T, tag string) (*auth.Store, context.Context) {
	t.Helper()
	l := testutil.OpenLog(t, "")
	e := newEngine(t, l)
	s, ctx := e.auth, testutil.Context(t, 30*time.Second)
	must[auth.User](t)(s.UpsertUser(ctx, "carol@x", auth.UserRequest{Name: "carol", Roles: []string{auth.RoleUser}}, "root"))
	must[auth.User](t)(s.UpsertUser(ctx, "alice@x", auth.UserRequest{Name: "alice", Roles: []string{auth.RoleUser}}, "root"))
	must[auth.User](t)(s.UpsertUser(ctx, "root@x", auth.UserRequest{Name: "root", Roles: []string{auth.RoleAdmin}}, "root"))
	if err := s.Grant(ctx, auth.Grant{Subject: auth.Subject{Type: auth.SubjectUser, ID: "carol@x"},
		Target: auth.Target{Type: auth.TargetTag, ID: tag}, Access: []auth.Access{auth.Read}}, "root"); err != nil {
		t.Fatal(err)
	}
	e.caughtUp(t, l)
	return s, ctx
}

// A source that describes a target in one read (auth.Describer) is asked
// once per decision, its tags and creator from one state of the target:
// asked twice, a name deleted and registered again between the reads lent
// the former life's tags, and what a TAG grant gives on them, to the new
// one (and a workflow definition the read model lacked was read from the
// log twice).
func TestDescriberReadsOnce(t *testing.T) {
	t.Parallel()
	s, ctx := tagReaders(t, "team:a")
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

// A resource that brings its own Describer (a listing's snapshot of its
// store) is decided on what that one says, the registered source not
// asked: a TAG grant allows on the tags it reads, and the creator it
// names is the creator. Like a registered one, it is not asked when a
// role decides.
func TestResourceDescribesItself(t *testing.T) {
	t.Parallel()
	s, ctx := tagReaders(t, "team:pay")
	a := auth.NewAuthorizer(s)
	registered := &twoLives{} // untagged, and alice's only through TagsOf and CreatorOf
	a.Register(auth.TargetTaskDef, registered)
	for _, tc := range []struct {
		who   string
		allow bool
		reads int
	}{
		{"carol@x", true, 1}, // by the tag the resource's describer reads
		{"alice@x", true, 1}, // its creator
		{"root@x", true, 0},  // the role decides
	} {
		own := &countingDescriber{}
		res := auth.Resource{Target: auth.Target{Type: auth.TargetTaskDef, ID: "resize"}, Describer: own}
		p := must[auth.Principal](t)(s.Principal(ctx, tc.who))
		if d := a.Check(ctx, p, auth.Read, res); d.Allowed != tc.allow || d.Err != nil {
			t.Errorf("%s reads resize: allowed=%v (%s, err %v), want %v", tc.who, d.Allowed, d.Reason, d.Err, tc.allow)
		}
		if own.reads != tc.reads {
			t.Errorf("%s's decision read the resource's describer %d times, want %d", tc.who, own.reads, tc.reads)
		}
	}
	if registered.together != 0 || registered.separate != 0 {
		t.Errorf("the registered source was asked %d times, want 0", registered.together+registered.separate)
	}
}

// countingDescriber describes TASK_DEF targets as a definition source
// would, counting its reads: "resize", created by alice and tagged
// team:pay, and "broken", whose read fails.
type countingDescriber struct{ reads int }

func (d *countingDescriber) Describe(_ context.Context, t auth.Target) ([]string, string, error) {
	d.reads++
	if t.ID == "broken" {
		return nil, "", errors.New("log unavailable")
	}
	return []string{"team:pay"}, "alice@x", nil
}

// The Authorizer describes a target (its tags and creator, which for a
// definition this engine's read model lacks cost a request to the log)
// only when the decision depends on them: not when a role decides, nor a
// grant on the target, nor a DOMAIN grant; every decision is the one it
// was, and names the ground it did, but where a grant on the target or the
// domain and the creator or a tag grant both allow: the grant that needs
// no description is named.
func TestCheckDescribesOnlyWhenTheDecisionDependsOnIt(t *testing.T) {
	t.Parallel()
	l := testutil.OpenLog(t, "")
	e := newEngine(t, l)
	s, ctx := e.auth, testutil.Context(t, 30*time.Second)
	must[auth.Group](t)(s.UpsertGroup(ctx, "eng", auth.GroupRequest{
		DefaultAccess: map[string][]string{auth.TargetTaskDef: {"EXECUTE"}}}, "root"))
	must[auth.Group](t)(s.UpsertGroup(ctx, "typed", auth.GroupRequest{}, "root"))
	for _, u := range []struct {
		id     string
		roles  []string
		groups []string
	}{
		{"alice@x", []string{auth.RoleUser, auth.RoleWorker}, []string{"eng"}},
		{"dave@x", []string{auth.RoleWorker}, []string{"eng"}},
		{"root@x", []string{auth.RoleAdmin}, nil},
		{"any@x", []string{auth.RoleUnrestrictedWorker}, nil},
		{"typed@x", []string{auth.RoleWorker}, nil},
		{"member@x", []string{auth.RoleWorker}, []string{"typed"}},
		{"eu@x", []string{auth.RoleWorker}, nil},
		{"reader@x", []string{auth.RoleWorker}, nil},
		{"pay@x", []string{auth.RoleWorker}, nil},
		{"stranger@x", []string{auth.RoleWorker}, nil},
	} {
		must[auth.User](t)(s.UpsertUser(ctx, u.id, auth.UserRequest{Name: u.id, Roles: u.roles, Groups: u.groups}, "root"))
	}
	resize := auth.Target{Type: auth.TargetTaskDef, ID: "resize"}
	broken := auth.Target{Type: auth.TargetTaskDef, ID: "broken"}
	eu := auth.Target{Type: auth.TargetDomain, ID: "eu"}
	user := func(id string) auth.Subject { return auth.Subject{Type: auth.SubjectUser, ID: id} }
	grant := func(s auth.Subject, t auth.Target, acc auth.Access) auth.Grant {
		return auth.Grant{Subject: s, Target: t, Access: []auth.Access{acc}}
	}
	for _, g := range []auth.Grant{
		grant(user("typed@x"), resize, auth.Execute),
		grant(auth.Subject{Type: auth.SubjectGroup, ID: "typed"}, resize, auth.Execute),
		grant(user("typed@x"), broken, auth.Execute),
		grant(user("alice@x"), resize, auth.Read),
		grant(user("reader@x"), resize, auth.Read),
		grant(user("eu@x"), eu, auth.Execute),
		grant(user("pay@x"), eu, auth.Execute),
		grant(user("pay@x"), auth.Target{Type: auth.TargetTag, ID: "team:pay"}, auth.Execute),
	} {
		if err := s.Grant(ctx, g, "root"); err != nil {
			t.Fatal(err)
		}
	}
	e.caughtUp(t, l)
	a := auth.NewAuthorizer(s)
	src := &countingDescriber{}
	a.Register(auth.TargetTaskDef, src)

	task := func(id, domain string) auth.Resource {
		return auth.Resource{Target: auth.Target{Type: auth.TargetTaskDef, ID: id}, Domain: domain}
	}
	for _, tc := range []struct {
		name   string
		who    string
		access auth.Access
		res    auth.Resource
		reason string // "" for a decision that could not be made
		allow  bool
		reads  int
	}{
		{"an admin", "root@x", auth.Update, task("resize", ""), "admin", true, 0},
		{"an unrestricted worker's poll", "any@x", auth.Execute, task("resize", ""), "role permission POLL_ANY_TASK", true, 0},
		{"a grant on the type", "typed@x", auth.Execute, task("resize", ""), "grant to USER:typed@x", true, 0},
		{"a grant on the type to the group", "member@x", auth.Execute, task("resize", ""), "grant to GROUP:typed", true, 0},
		{"a grant on the type, in a domain's queue", "typed@x", auth.Execute, task("resize", "eu"), "grant to USER:typed@x", true, 0},
		{"a grant on the domain", "eu@x", auth.Execute, task("resize", "eu"), "domain eu granted to USER:eu@x", true, 0},
		{"a role, whatever the description", "any@x", auth.Execute, task("broken", ""), "role permission POLL_ANY_TASK", true, 0},
		{"a grant on the type, whatever the description", "typed@x", auth.Execute, task("broken", ""), "grant to USER:typed@x", true, 0},
		// Both grounds allow: the one that needs no description is named
		// (the creator and the tag were, before).
		{"the creator holding a grant on the type", "alice@x", auth.Read, task("resize", ""), "grant to USER:alice@x", true, 0},
		{"a tag grant and a domain grant", "pay@x", auth.Execute, task("resize", "eu"), "domain eu granted to USER:pay@x", true, 0},
		// The decision depends on the description.
		{"the creator, in a group whose default access allows too", "alice@x", auth.Execute, task("resize", ""), "creator", true, 1},
		{"a group's default access", "dave@x", auth.Execute, task("resize", ""), "grant to GROUP:eng", true, 1},
		{"a tag grant", "pay@x", auth.Execute, task("resize", ""), "tag team:pay granted to USER:pay@x", true, 1},
		{"a grant that is not enough", "reader@x", auth.Execute, task("resize", ""), "no grant of EXECUTE on TASK_DEF:resize", false, 1},
		{"a grant on another domain", "eu@x", auth.Execute, task("resize", "us"),
			"no grant of EXECUTE on TASK_DEF:resize or DOMAIN:us", false, 1},
		{"no ground", "stranger@x", auth.Execute, task("resize", ""), "no grant of EXECUTE on TASK_DEF:resize", false, 1},
		{"no ground, the description failing", "stranger@x", auth.Execute, task("broken", ""), "", false, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := must[auth.Principal](t)(s.Principal(ctx, tc.who))
			before := src.reads
			d := a.Check(ctx, p, tc.access, tc.res)
			if d.Allowed != tc.allow || tc.reason != "" && (d.Reason != tc.reason || d.Err != nil) || tc.reason == "" && d.Err == nil {
				t.Errorf("allowed=%v (%q, err %v), want %v (%q)", d.Allowed, d.Reason, d.Err, tc.allow, tc.reason)
			}
			if reads := src.reads - before; reads != tc.reads {
				t.Errorf("the target was described %d times, want %d", reads, tc.reads)
			}
		})
	}
}
