package auth_test

import (
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
