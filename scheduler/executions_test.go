package scheduler

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/projections/executions/query"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// fireMany records n fires of schedule name, an hour apart from at, and
// waits for the read model to hold them.
func fireMany(t testing.TB, s *Store, name string, at int64, n int) {
	t.Helper()
	ctx := context.Background()
	_, before, err := s.Executions(ctx, query.Search{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for done := 0; done < n; {
		batch := min(n-done, 100)
		err := s.appendEvents(ctx, name, "root", func(*State) ([]schemas.Event, error) {
			evs := make([]schemas.Event, batch)
			for i := range evs {
				tick := at + int64(done+i)*3600*1000
				evs[i] = &schemas.ScheduleFired{ScheduledTime: tick, WorkflowID: workflowID(name, tick), Time: tick}
			}
			return evs, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		done += batch
	}
	testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() error {
		if _, total, err := s.Executions(ctx, query.Search{}, nil); err != nil || total != before+n {
			return fmt.Errorf("%d executions (%v), want %d", total, err, before+n)
		}
		return nil
	})
}

func saveSchedule(t testing.TB, s *Store, name, by string) {
	t.Helper()
	def := &conductor.WorkflowSchedule{Name: name, CronExpression: "0 0 * * * ?", StartWorkflowRequest: &conductor.StartWorkflowRequest{Name: "w"}}
	var checked *conductor.WorkflowSchedule
	if st, err := s.load(context.Background(), name); err != nil {
		t.Fatal(err)
	} else if exists(st) {
		checked = &st.Def
	}
	if err := s.Save(context.Background(), def, by, checked); err != nil {
		t.Fatal(err)
	}
}

// readableBy is a caller's access as the API checks it: the schedule read
// first, then the caller's right to it, here its creator's alone.
func readableBy(s *Store, principal string, calls map[string]int) func(string) (*conductor.WorkflowSchedule, bool) {
	return func(name string) (*conductor.WorkflowSchedule, bool) {
		calls[name]++
		def, err := s.Get(context.Background(), name)
		if err != nil {
			return nil, false
		}
		return def, def.CreatedBy == principal
	}
}

// An executions search shows, and counts, only the executions of the
// schedules the caller may read, and asks about each schedule once, not
// once per execution.
func TestExecutionsShowOnlyReadableSchedules(t *testing.T) {
	t.Parallel()
	s, _ := newTestStore(t)
	saveSchedule(t, s, "mine", "alice")
	saveSchedule(t, s, "theirs", "bob")
	fireMany(t, s, "mine", ms("2026-11-30T10:00:00Z"), 5)
	fireMany(t, s, "theirs", ms("2026-11-30T10:00:00Z"), 7)
	calls := map[string]int{}
	xs, total, err := s.Executions(context.Background(), query.Search{Size: 100}, readableBy(s, "alice", calls))
	if err != nil {
		t.Fatal(err)
	}
	if total != 5 || len(xs) != 5 {
		t.Fatalf("%d executions shown of %d, want alice's 5", len(xs), total)
	}
	for _, x := range xs {
		if x.ScheduleName != "mine" {
			t.Fatalf("alice sees an execution of %s", x.ScheduleName)
		}
	}
	if calls["mine"] != 1 || calls["theirs"] != 1 || len(calls) != 2 {
		t.Fatalf("access checked %v, want once per schedule", calls)
	}
}

// A schedule deleted and created again under its name by the caller while
// the search checked the caller's access shows none of its former life's
// executions: the check was made on the new one, which the caller may
// read, and the former was another principal's.
func TestExecutionsOfAScheduleCreatedAgainDuringTheSearch(t *testing.T) {
	t.Parallel()
	s, _ := newTestStore(t)
	saveSchedule(t, s, "nightly", "bob")
	fireMany(t, s, "nightly", ms("2026-11-30T10:00:00Z"), 3)
	calls := map[string]int{}
	check := readableBy(s, "alice", calls)
	recreated := false
	xs, total, err := s.Executions(context.Background(), query.Search{Size: 100}, func(name string) (*conductor.WorkflowSchedule, bool) {
		if !recreated {
			recreated = true
			if err := s.Delete(context.Background(), name, "bob", held(t, s, name)); err != nil {
				t.Fatal(err)
			}
			saveSchedule(t, s, name, "alice")
			testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() error {
				if def, err := s.Get(context.Background(), name); err != nil || def.CreatedBy != "alice" {
					return fmt.Errorf("schedule %+v (%v), want alice's", def, err)
				}
				return nil
			})
		}
		return check(name)
	})
	if err != nil {
		t.Fatal(err)
	}
	if total != 0 || len(xs) != 0 {
		t.Fatalf("alice sees %d executions (total %d) of bob's former schedule: %+v", len(xs), total, xs)
	}
}
