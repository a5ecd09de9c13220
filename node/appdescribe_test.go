package node

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/flowvault/flowvault/auth"
	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/projections"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// appAccessMeanwhile is the applications, changed once as soon as a
// decision has read one's creator and tags the first time.
type appAccessMeanwhile struct {
	*auth.Store
	accessMeanwhile
}

func (s appAccessMeanwhile) GetApplication(ctx context.Context, id string) (auth.Application, error) {
	app, err := s.Store.GetApplication(ctx, id)
	s.read()
	return app, err
}

// A decision on an application reads its creator and tags once, in one
// state. alice's application, tagged team:a, on which carol holds a TAG
// grant, is deleted as soon as the decision has read it: the decision is
// on the application as it was read, alice's by her creating it and
// carol's by the tag. Read apart (tags, then creator), the decision met a
// state the application never had, tagged and nobody's: alice, its
// creator, was refused, and the record was read twice. (An application's
// id is never given to another, so the two reads could not lend one
// life's tags to another's creator, as a secret's or a schedule's did.)
func TestAppDescribeReadsOnce(t *testing.T) {
	t.Parallel()
	for _, tc := range []decidedOnce{
		{"alice", true, "creator"},
		{"carol", true, "tag team:a granted to USER:carol"},
	} {
		t.Run(tc.who, func(t *testing.T) {
			t.Parallel()
			ctx := testutil.Context(t, time.Minute)
			l := testutil.OpenLog(t, "")
			ps := testutil.OpenStore(t)
			runner := testutil.RunProjection(t, l, ps, auth.Projection{}, projections.RunnerConfig{Stream: eventlog.Access.Name})
			s := auth.NewStore(l, ps, runner, testutil.Logger(t))
			app, err := s.CreateApplication(ctx, "ci", "alice")
			if err != nil {
				t.Fatal(err)
			}
			if err := s.ChangeApplicationTags(ctx, app.ID, []conductor.Tag{{Key: "team", Value: "a"}}, false, "alice", &app); err != nil {
				t.Fatal(err)
			}
			var reads int
			meanwhile := accessMeanwhile{reads: &reads, change: func() {
				tagged, err := s.GetApplication(ctx, app.ID)
				if err == nil {
					err = s.DeleteApplication(ctx, app.ID, "admin", &tagged)
				}
				if err != nil {
					t.Errorf("the change made meanwhile: %v", err)
				}
			}}
			tc.check(ctx, t, appTargets{appAccessMeanwhile{s, meanwhile}},
				auth.Target{Type: auth.TargetApplication, ID: app.ID}, meanwhile)
			if _, err := s.GetApplication(ctx, app.ID); !errors.Is(err, fault.ErrNotFound) {
				t.Errorf("after the decision the application reads err %v, want not found", err)
			}
		})
	}
}
