package node

import (
	"context"
	"testing"
	"time"

	"github.com/flowvault/flowvault/auth"
	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/projections"
	"github.com/flowvault/flowvault/scheduler"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// scheduleAccessMeanwhile is the schedules, changed once as soon as a
// decision has read one's creator and tags the first time.
type scheduleAccessMeanwhile struct {
	*scheduler.Store
	accessMeanwhile
}

func (s scheduleAccessMeanwhile) Access(ctx context.Context, name string) (string, []conductor.Tag, error) {
	return s.after(s.Store.Access(ctx, name))
}

// A decision on a schedule reads its creator and tags once, in one state.
// alice's "nightly", tagged team:a, on which carol holds a TAG grant, is
// deleted and saved again by bob, untagged, as soon as the decision has
// read it: the decision is alice's "nightly"'s, carol's by the tag and
// not bob's. Read apart (tags, then creator), the former life's tags met
// the new life's creator: bob was allowed as the creator of a schedule
// whose tags were alice's, and the record was read twice.
func TestScheduleDescribeReadsOnce(t *testing.T) {
	t.Parallel()
	save := func(ctx context.Context, s *scheduler.Store, by string, tags []conductor.Tag) error {
		return s.Save(ctx, &conductor.WorkflowSchedule{Name: "nightly", CronExpression: "0 0 2 * * ?", Tags: tags,
			StartWorkflowRequest: &conductor.StartWorkflowRequest{Name: "report"}}, by, nil)
	}
	for _, tc := range []decidedOnce{
		{"carol", true, "tag team:a granted to USER:carol"},
		{"bob", false, "no grant of READ on WORKFLOW_SCHEDULE:nightly"},
	} {
		t.Run(tc.who, func(t *testing.T) {
			t.Parallel()
			ctx := testutil.Context(t, time.Minute)
			l := testutil.OpenLog(t, "")
			ps := testutil.OpenStore(t)
			runner := testutil.RunProjection(t, l, ps, scheduler.Projection{}, projections.RunnerConfig{Stream: eventlog.Metadata.Name})
			s := scheduler.New(l, ps, runner, testutil.Logger(t))
			if err := save(ctx, s, "alice", []conductor.Tag{{Key: "team", Value: "a"}}); err != nil {
				t.Fatal(err)
			}
			var reads int
			meanwhile := accessMeanwhile{reads: &reads, change: func() {
				alices, err := s.Get(ctx, "nightly")
				if err == nil {
					err = s.Delete(ctx, "nightly", "admin", alices)
				}
				if err == nil {
					err = save(ctx, s, "bob", nil)
				}
				if err != nil {
					t.Errorf("the change made meanwhile: %v", err)
				}
			}}
			tc.check(ctx, t, scheduleTargets{scheduleAccessMeanwhile{s, meanwhile}},
				auth.Target{Type: auth.TargetWorkflowSchedule, ID: "nightly"}, meanwhile)
			if got, err := s.Get(ctx, "nightly"); err != nil || got.CreatedBy != "bob" {
				t.Errorf("after the decision nightly is %+v (err %v), want bob's", got, err)
			}
		})
	}
}
