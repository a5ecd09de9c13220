package scheduler

import (
	"context"
	"encoding/binary"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/projections"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// A schedule keeps its newest ExecutionsKept executions: the oldest goes
// as each new one comes.
func TestExecutionsKept(t *testing.T) {
	store := testutil.OpenStore(t)
	seq := uint64(0)
	apply := func(b *projections.Batch, ev schemas.Event) {
		t.Helper()
		env, err := schemas.Default.Encode(ev)
		if err != nil {
			t.Fatal(err)
		}
		seq++
		if err := (Projection{}).Apply(b, eventlog.Record{Subject: subjectPrefix + "often", Seq: seq, Events: []schemas.Envelope{env}}); err != nil {
			t.Fatal(err)
		}
	}
	const fires = ExecutionsKept + 5
	err := store.Update(ProjectionName, func(b *projections.Batch) error {
		apply(b, &schemas.ScheduleSaved{Def: []byte(`{"name":"often","cronExpression":"* * * * * ?","startWorkflowRequest":{"name":"w"}}`), By: "alice", Time: 1})
		for i := range int64(fires) {
			at := 1000 * (i + 1)
			apply(b, &schemas.ScheduleFired{ScheduledTime: at, WorkflowID: workflowID("often", at), Time: at})
		}
		var kept []int64
		err := b.Scan([]byte(keyExecution), func(key, _ []byte) bool {
			kept = append(kept, int64(binary.BigEndian.Uint64(key[len(key)-8:])))
			return true
		})
		if len(kept) != ExecutionsKept || kept[0] != 6000 || kept[len(kept)-1] != 1000*fires {
			t.Fatalf("kept %d executions, from %d to %d", len(kept), kept[0], kept[len(kept)-1])
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A record whose later event is poison writes nothing: parked, it must not
// leave the execution its earlier event would have recorded.
func TestPoisonRecordWritesNothing(t *testing.T) {
	store := testutil.OpenStore(t)
	record := func(seq uint64, events ...schemas.Event) eventlog.Record {
		return testutil.Record(t, subjectPrefix+"nightly", seq, events...)
	}
	def := []byte(`{"name":"nightly","cronExpression":"0 0 0 * * ?","startWorkflowRequest":{"name":"w"}}`)
	err := store.Update(ProjectionName, func(b *projections.Batch) error {
		if err := (Projection{}).Apply(b, record(1, &schemas.ScheduleSaved{Def: def, By: "alice", Time: 1})); err != nil {
			t.Fatal(err)
		}
		err := (Projection{}).Apply(b, record(2,
			&schemas.ScheduleFired{ScheduledTime: 1000, WorkflowID: "wf-1", Time: 2},
			&schemas.ScheduleSaved{Def: []byte(`{"name":`), By: "bob", Time: 2}))
		if !errors.Is(err, projections.ErrPoison) {
			t.Fatalf("a malformed definition: %v, want poison", err)
		}
		return b.Scan([]byte(keyExecution), func(key, _ []byte) bool {
			t.Errorf("the poison record wrote execution %q", key)
			return true
		})
	})
	if err != nil {
		t.Fatal(err)
	}
}

// dueIndex lists the due index as "name@time" entries.
func dueIndex(t *testing.T, s *Store) []string {
	t.Helper()
	var out []string
	err := s.reader.Scan([]byte(keyDue), func(key, _ []byte) bool {
		at, token, err := dueToken(key)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, untoken(token)+"@"+time.UnixMilli(at).UTC().Format(time.RFC3339))
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// A due key that the schedule's next fire time no longer puts there (new
// zone rules, new cron semantics) is corrected without waiting for the
// schedule's next event: when the firer finds it due, or when it sweeps
// the index. The test plants such keys where the read model put the
// schedule "noon" at 12:00 (its next fire time, computed now).
func TestStaleDueKeyCorrected(t *testing.T) {
	tests := []struct {
		name   string
		paused bool
		keep   bool     // keep the 12:00 key beside the planted ones
		plant  []string // "name@time" keys written into the index
		sweep  bool     // repair by sweeping, else by scanning at 11:30
		want   []string // the index after the repair
		starts []string // runs started by a scan at 12:00:01
	}{
		{name: "earlier, found due", plant: []string{"noon@2026-11-30T11:00:00Z"},
			want: []string{"noon@2026-11-30T12:00:00Z"}, starts: []string{"2026-11-30T12:00:00Z"}},
		{name: "later, swept", plant: []string{"noon@2026-11-30T13:00:00Z"}, sweep: true,
			want: []string{"noon@2026-11-30T12:00:00Z"}, starts: []string{"2026-11-30T12:00:00Z"}},
		{name: "beside the right one, swept", keep: true, plant: []string{"noon@2027-01-01T12:00:00Z"}, sweep: true,
			want: []string{"noon@2026-11-30T12:00:00Z"}, starts: []string{"2026-11-30T12:00:00Z"}},
		{name: "of a paused schedule, found due", paused: true, plant: []string{"noon@2026-11-30T11:00:00Z"}},
		{name: "of no schedule, found due", keep: true, plant: []string{"ghost@2026-11-30T11:00:00Z"},
			want: []string{"noon@2026-11-30T12:00:00Z"}, starts: []string{"2026-11-30T12:00:00Z"}},
		{name: "of no schedule, swept", keep: true, plant: []string{"ghost@2027-01-01T00:00:00Z"}, sweep: true,
			want: []string{"noon@2026-11-30T12:00:00Z"}, starts: []string{"2026-11-30T12:00:00Z"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			s, c := newTestStore(t)
			starts := &started{}
			f := NewFirer(s, starts, nil)
			if err := s.Save(ctx, &conductor.WorkflowSchedule{Name: "noon", CronExpression: "0 0 12 * * ?",
				StartWorkflowRequest: &conductor.StartWorkflowRequest{Name: "w"}}, "alice", nil); err != nil {
				t.Fatal(err)
			}
			if tt.paused {
				if err := s.SetPaused(ctx, "noon", true, "", "alice", held(t, s, "noon")); err != nil {
					t.Fatal(err)
				}
			}
			err := s.pstore.Update(ProjectionName, func(b *projections.Batch) error {
				if !tt.keep {
					if err := b.Delete(dueKey(ms("2026-11-30T12:00:00Z"), eventlog.Token("noon"))); err != nil {
						return err
					}
				}
				for _, k := range tt.plant {
					name, at, _ := strings.Cut(k, "@")
					if err := b.Set(dueKey(ms(at), eventlog.Token(name)), nil); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if tt.sweep {
				f.reconcile(ctx)
			} else {
				c.ms = ms("2026-11-30T11:30:00Z")
				f.scan(ctx)
			}
			if got := dueIndex(t, s); !slices.Equal(got, tt.want) {
				t.Fatalf("index %v, want %v", got, tt.want)
			}
			if len(starts.ids) != 0 {
				t.Fatalf("the repair started %v", starts.ids)
			}
			c.ms = ms("2026-11-30T12:00:01Z")
			f.scan(ctx)
			var want []string
			for _, at := range tt.starts {
				want = append(want, workflowID("noon", ms(at)))
			}
			if !slices.Equal(starts.ids, want) {
				t.Fatalf("at 12:00:01 started %v, want %v", starts.ids, want)
			}
		})
	}
}

// The sweep changes nothing in an index the projection keeps, whatever
// the schedules' states: it must not fight the projection.
func TestDueIndexSweepLeavesConsistentIndexAlone(t *testing.T) {
	ctx := context.Background()
	s, c := newTestStore(t)
	f := NewFirer(s, &started{}, nil)
	req := &conductor.StartWorkflowRequest{Name: "w"}
	defs := []*conductor.WorkflowSchedule{
		{Name: "plain", CronExpression: "0 0 12 * * ?", StartWorkflowRequest: req},
		{Name: "catchup", CronExpression: "0 * * * * ?", RunCatchupScheduleInstances: true, StartWorkflowRequest: req},
		{Name: "zoned", CronExpression: "0 30 1 * * ?", ZoneID: "America/New_York", StartWorkflowRequest: req},
		{Name: "ended", CronExpression: "0 0 12 * * ?", ScheduleEndTime: ms("2026-11-30T11:00:00Z"), StartWorkflowRequest: req},
		{Name: "paused", CronExpression: "0 0 12 * * ?", StartWorkflowRequest: req},
		{Name: "gone", CronExpression: "0 0 12 * * ?", StartWorkflowRequest: req},
	}
	for _, def := range defs {
		if err := s.Save(ctx, def, "alice", nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.SetPaused(ctx, "paused", true, "", "alice", held(t, s, "paused")); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "gone", "alice", held(t, s, "gone")); err != nil {
		t.Fatal(err)
	}
	c.ms = ms("2026-11-30T12:00:01Z") // catchup claims a scan's worth of its 120 missed runs, 10:01 to 11:40
	for _, name := range []string{"plain", "catchup"} {
		if err := f.fire(ctx, c.ms, name); err != nil {
			t.Fatal(err)
		}
		// Wait for the read model through a write that goes through it.
		saved, err := s.Get(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.ChangeTags(ctx, name, []conductor.Tag{{Key: "k", Value: "v"}}, false, "alice", saved); err != nil {
			t.Fatal(err)
		}
	}
	before := dueIndex(t, s)
	want := []string{"catchup@2026-11-30T11:41:00Z", "zoned@2026-12-01T06:30:00Z", "plain@2026-12-01T12:00:00Z"}
	if !slices.Equal(before, want) {
		t.Fatalf("index %v, want %v", before, want)
	}
	n, err := s.reconcileDue()
	if err != nil {
		t.Fatal(err)
	}
	if after := dueIndex(t, s); n != 0 || !slices.Equal(after, before) {
		t.Fatalf("the sweep changed %d schedules: index %v, was %v", n, after, before)
	}
}
