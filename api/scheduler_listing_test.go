package api_test

import (
	"context"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flowvault/flowvault/api"
	"github.com/flowvault/flowvault/auth"
	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/projections"
	"github.com/flowvault/flowvault/scheduler"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// scheduleSource describes schedules as the node's does: their owner and
// tags from one read of the store.
type scheduleSource struct{ s *scheduler.Store }

func (src scheduleSource) Describe(ctx context.Context, t auth.Target) ([]string, string, error) {
	creator, tags, err := src.s.Access(ctx, t.ID)
	return auth.TagNames(tags), creator, err
}

// changedOnce is a change made once, as soon as a listing has read what
// it lists.
type changedOnce struct {
	once   *sync.Once
	change func()
}

func (m changedOnce) listed() { m.once.Do(m.change) }

// listedMeanwhile is the schedules, changed once as soon as a listing has
// read them.
type listedMeanwhile struct {
	*scheduler.Store
	changedOnce
}

func (l listedMeanwhile) List(ctx context.Context, workflowName string) ([]*conductor.WorkflowSchedule, error) {
	list, err := l.Store.List(ctx, workflowName)
	l.listed()
	return list, err
}

// A schedule listing shows each schedule as it read it, to those who may
// read it in that state. alice's "nightly", tagged team:a, is deleted and
// saved again by bob, tagged team:a too, once the listing has read it: it
// shows alice's "nightly" to alice, its owner, and to no one else. Decided
// on whatever held the name when each check read it, the listing showed
// alice's schedule to bob, as the owner of the new one, and not to alice.
func TestScheduleListingDecidesOnTheListedState(t *testing.T) {
	t.Parallel()
	teamA := []conductor.Tag{{Key: "team", Value: "a"}}
	for _, route := range []string{"/api/scheduler/schedules", "/api/scheduler/schedules/tags?tag=team:a"} {
		for _, tc := range []struct {
			who  string
			want []string // owners of the nightly schedules shown
		}{
			{"alice", []string{"alice"}},
			{"bob", nil},
		} {
			t.Run(route+" "+tc.who, func(t *testing.T) {
				t.Parallel()
				ctx := testutil.Context(t, time.Minute)
				l := testutil.OpenLog(t, "")
				ps := testutil.OpenStore(t)
				runner := testutil.RunProjection(t, l, ps, scheduler.Projection{}, projections.RunnerConfig{Stream: eventlog.Metadata.Name})
				s := scheduler.New(l, ps, runner, testutil.Logger(t))
				save := func(by string) error {
					return s.Save(ctx, &conductor.WorkflowSchedule{Name: "nightly", CronExpression: "0 0 2 * * ?", Tags: teamA,
						StartWorkflowRequest: &conductor.StartWorkflowRequest{Name: "report_of_" + by}}, by, nil)
				}
				if err := save("alice"); err != nil {
					t.Fatal(err)
				}
				var changed atomic.Bool
				change := func() {
					alices, err := s.Get(ctx, "nightly")
					if err == nil {
						err = s.Delete(ctx, "nightly", "admin", alices)
					}
					if err == nil {
						err = save("bob")
					}
					if err != nil {
						t.Errorf("the change made meanwhile: %v", err)
					}
					changed.Store(true)
				}
				authz := auth.NewAuthorizer(&fixedGrants{})
				authz.Register(auth.TargetWorkflowSchedule, scheduleSource{s})
				srv := httptest.NewServer(api.New(api.Deps{
					Logger:     testutil.Logger(t),
					Schedules:  listedMeanwhile{Store: s, changedOnce: changedOnce{&sync.Once{}, change}},
					Authorizer: authz,
					Tokens:     tokenPrincipals{"token": {ID: tc.who, Roles: []string{auth.RoleUser}}},
				}))
				t.Cleanup(srv.Close)
				c := client{t, srv.URL, "token"}
				listed := decode[[]conductor.WorkflowSchedule](t, c.must(200, "GET", route, ""))
				if !changed.Load() {
					t.Fatal("the change never landed")
				}
				var owners []string
				for _, def := range listed {
					if def.Name == "nightly" {
						owners = append(owners, def.CreatedBy)
						if def.StartWorkflowRequest.Name != "report_of_"+def.CreatedBy {
							t.Errorf("%s's nightly shown starting %s", def.CreatedBy, def.StartWorkflowRequest.Name)
						}
					}
				}
				if !slices.Equal(owners, tc.want) {
					t.Errorf("%s's listing shows nightly of %q, want of %q", tc.who, owners, tc.want)
				}
			})
		}
	}
}
