package api_test

import (
	"context"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flowvault/flowvault/api"
	"github.com/flowvault/flowvault/auth"
	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/projections"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// appSource describes applications as the node's does: their creator and
// tags from one read of the store.
type appSource struct{ s *auth.Store }

func (src appSource) Describe(ctx context.Context, t auth.Target) ([]string, string, error) {
	app, err := src.s.GetApplication(ctx, t.ID)
	return auth.TagNames(app.Tags), app.CreatedBy, err
}

// appsListedMeanwhile is the applications, changed once as soon as a
// listing has read them.
type appsListedMeanwhile struct {
	*auth.Store
	changedOnce
}

func (l appsListedMeanwhile) ListApplications(ctx context.Context) ([]auth.Application, error) {
	list, err := l.Store.ListApplications(ctx)
	l.listed()
	return list, err
}

// An application listing shows each application as it read it, to those
// who may read it in that state. alice's "svc" is tagged team:a, or
// untagged, by the admin once the listing has read it; bob reads what
// team:a tags. Decided on the application's record when each check read
// it, the listing showed bob alice's application as listed untagged, and
// hid from him the one listed with team:a.
func TestAppListingDecidesOnTheListedState(t *testing.T) {
	t.Parallel()
	teamA := []conductor.Tag{{Key: "team", Value: "a"}}
	for _, tc := range []struct {
		name   string
		tagged bool // as listed: the change made meanwhile does the other
		who    string
		shown  bool
	}{
		{"tagged meanwhile", false, "bob", false},
		{"untagged meanwhile", true, "bob", true},
		{"tagged meanwhile", false, "alice", true},
	} {
		t.Run(tc.name+" "+tc.who, func(t *testing.T) {
			t.Parallel()
			ctx := testutil.Context(t, time.Minute)
			l := testutil.OpenLog(t, "")
			ps := testutil.OpenStore(t)
			runner := testutil.RunProjection(t, l, ps, auth.Projection{}, projections.RunnerConfig{Stream: eventlog.Access.Name})
			s := auth.NewStore(l, ps, runner, testutil.Logger(t))
			app, err := s.CreateApplication(ctx, "svc", "alice")
			if err == nil && tc.tagged {
				err = s.ChangeApplicationTags(ctx, app.ID, teamA, false, "alice", &app)
			}
			if err != nil {
				t.Fatal(err)
			}
			var changed atomic.Bool
			change := func() {
				listed, err := s.GetApplication(ctx, app.ID)
				if err == nil {
					err = s.ChangeApplicationTags(ctx, app.ID, teamA, tc.tagged, "admin", &listed)
				}
				if err != nil {
					t.Errorf("the change made meanwhile: %v", err)
				}
				changed.Store(true)
			}
			authz := auth.NewAuthorizer(&fixedGrants{grants: []auth.Grant{{
				Subject: auth.Subject{Type: auth.SubjectUser, ID: "bob"},
				Target:  auth.Target{Type: auth.TargetTag, ID: "team:a"},
				Access:  []auth.Access{auth.Read},
			}}})
			authz.Register(auth.TargetApplication, appSource{s})
			srv := httptest.NewServer(api.New(api.Deps{
				Logger:     testutil.Logger(t),
				Auth:       appsListedMeanwhile{Store: s, changedOnce: changedOnce{&sync.Once{}, change}},
				Authorizer: authz,
				Tokens:     tokenPrincipals{"token": {ID: tc.who, Roles: []string{auth.RoleUser}}},
			}))
			t.Cleanup(srv.Close)
			c := client{t, srv.URL, "token"}
			listed := decode[[]auth.Application](t, c.must(200, "GET", "/api/applications", ""))
			if !changed.Load() {
				t.Fatal("the change never landed")
			}
			shown := len(listed) == 1 && listed[0].ID == app.ID
			if shown != tc.shown || len(listed) > 1 {
				t.Errorf("%s's listing shows %+v, want svc shown: %t", tc.who, listed, tc.shown)
			} else if shown && (len(listed[0].Tags) > 0) != tc.tagged {
				t.Errorf("svc shown with tags %v, want them as listed", listed[0].Tags)
			}
		})
	}
}
