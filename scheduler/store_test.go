package scheduler

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/projections"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// A user's pause reason cannot pass for the firer's security pause ("Security
// Error: …", by flowvault), however it is spaced, cased, punctuated,
// accented or spelled in look-alike letters; any other reason is kept as
// given.
func TestPauseReasonCannotPassForSecurityPause(t *testing.T) {
	tests := []struct {
		reason  string
		refused bool
	}{
		{"Security Error: alice may not EXECUTE w", true},
		{"Security Error", true},
		{"security error: lost access", true},
		{"  SECURITY-ERROR", true},
		{"\u200bSecurity\u00a0Error: spoofed", true},
		{"[Security] Error", true},
		{"Sécurity Érror", true},
		{"\uff33ecurity Error", true},           // full-width S
		{"\U0001d412ecurity Error", true},       // mathematical bold S
		{"\u0405\u0435\u0441urity Error", true}, // Cyrillic Ѕ, е, с
		{"Secur\u0456t\u0443 \u0435rr\u043er", true},
		{"\u0421afe to pause", false}, // a Cyrillic С elsewhere changes nothing
		{"maintenance window", false},
		{"Security review pending", false},
		{"Securit Error", false},
		{"", false},
	}
	ctx := context.Background()
	s, _ := newTestStore(t)
	def := &conductor.WorkflowSchedule{Name: "nightly", CronExpression: "0 0 0 * * ?",
		StartWorkflowRequest: &conductor.StartWorkflowRequest{Name: "w"}}
	if err := s.Save(ctx, def, "alice", nil); err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.reason, func(t *testing.T) {
			if err := s.SetPaused(ctx, "nightly", false, "", "alice", held(t, s, "nightly")); err != nil {
				t.Fatal(err)
			}
			err := s.SetPaused(ctx, "nightly", true, tt.reason, "alice", held(t, s, "nightly"))
			st, lerr := s.load(ctx, "nightly")
			if lerr != nil {
				t.Fatal(lerr)
			}
			if !tt.refused {
				if err != nil || !st.Def.Paused || st.Def.PausedReason != tt.reason {
					t.Fatalf("err %v; paused %v with %q, want paused with the reason given", err, st.Def.Paused, st.Def.PausedReason)
				}
				return
			}
			var ve *fault.ValidationError
			if !errors.Is(err, fault.ErrInvalid) || !errors.As(err, &ve) || len(ve.Fields) != 1 || ve.Fields[0].Path != "reason" {
				t.Fatalf("err %v, want a validation error on reason", err)
			}
			if st.Def.Paused || st.Def.PausedReason != "" {
				t.Fatalf("refused, yet paused %v with %q", st.Def.Paused, st.Def.PausedReason)
			}
		})
	}
}

// A schedule's start request names who its runs start as: the principal
// that saved it, not whom the request claims.
func TestSavedRequestNamesItsOwner(t *testing.T) {
	ctx := context.Background()
	s, _ := newTestStore(t)
	def := &conductor.WorkflowSchedule{Name: "claimed", CronExpression: "0 0 0 * * ?",
		StartWorkflowRequest: &conductor.StartWorkflowRequest{Name: "w", CreatedBy: "app:bootstrap-admin"}}
	if err := s.Save(ctx, def, "app:alice", nil); err != nil {
		t.Fatal(err)
	}
	st, err := s.load(ctx, "claimed")
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Def.StartWorkflowRequest.CreatedBy; got != "app:alice" || st.Owner() != "app:alice" {
		t.Fatalf("the saved request's createdBy %q, owner %q; want app:alice", got, st.Owner())
	}
	if def.StartWorkflowRequest.CreatedBy != "app:bootstrap-admin" {
		t.Fatal("Save changed the caller's schedule")
	}
}

// A schedule whose expression matches no time from its start on is
// refused, naming the expression; one that fires rarely, or only after a
// start years away, is saved.
func TestScheduleThatNeverFiresRefused(t *testing.T) {
	ctx := context.Background()
	s, _ := newTestStore(t)
	tests := []struct {
		cron  string
		zone  string
		start string
		ok    bool
	}{
		{"0 0 0 30 2 *", "", "", false},         // February 30th
		{"0 0 12 31 4,6,9,11 ?", "", "", false}, // the 31st of a 30-day month
		{"0 0 0 29 2 ?", "", "", true},          // a leap day
		{"0 0 0 29 2 MON", "Europe/Berlin", "", true},
		{"0 0 0 L 2 ?", "", "", true},
		{"0 0 0 30 2 *", "", "2031-01-01T00:00:00Z", false},
		{"0 0 0 1 1 ?", "", "2040-06-01T00:00:00Z", true},
	}
	for i, tt := range tests {
		def := &conductor.WorkflowSchedule{Name: fmt.Sprintf("s%d", i), CronExpression: tt.cron, ZoneID: tt.zone,
			StartWorkflowRequest: &conductor.StartWorkflowRequest{Name: "w"}}
		if tt.start != "" {
			def.ScheduleStartTime = ms(tt.start)
		}
		err := s.Save(ctx, def, "alice", nil)
		var ve *fault.ValidationError
		switch {
		case tt.ok && err != nil:
			t.Errorf("%q from %q: %v; want it saved", tt.cron, tt.start, err)
		case !tt.ok && (!errors.As(err, &ve) || ve.Fields[0].Path != "cronExpression" || !strings.Contains(err.Error(), "never fire")):
			t.Errorf("%q from %q: %v; want a validation error on cronExpression saying it never fires", tt.cron, tt.start, err)
		}
	}
}

// Pausing all schedules pauses each that runs, in its own log, and
// resuming all resumes those and only those: a schedule paused on its own,
// or by the firer for a right its owner lost, stays paused.
func TestPauseAllAndResumeAll(t *testing.T) {
	ctx := context.Background()
	s, _ := newTestStore(t)
	for _, name := range []string{"running", "held", "refused"} {
		if err := s.Save(ctx, &conductor.WorkflowSchedule{Name: name, CronExpression: "0 0 0 * * ?",
			StartWorkflowRequest: &conductor.StartWorkflowRequest{Name: "w"}}, "alice", nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.SetPaused(ctx, "held", true, "maintenance", "alice", held(t, s, "held")); err != nil {
		t.Fatal(err)
	}
	st, err := s.load(ctx, "refused")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.append(ctx, "refused", st.Seq, []schemas.Event{securityPause(errors.New("alice may not EXECUTE w"), 1)}); err != nil {
		t.Fatal(err)
	}
	paused := func() map[string]string {
		t.Helper()
		out := map[string]string{}
		for _, name := range []string{"running", "held", "refused"} {
			st, err := s.load(ctx, name)
			if err != nil {
				t.Fatal(err)
			}
			if st.Def.Paused {
				out[name] = st.Def.PausedReason
			}
		}
		return out
	}
	before := paused()
	if len(before) != 2 {
		t.Fatalf("paused before %v, want held and refused", before)
	}

	n, err := s.PauseAll(ctx, "root")
	if err != nil || n != 1 {
		t.Fatalf("pause all: %d, %v; want the 1 running", n, err)
	}
	want := maps.Clone(before)
	want["running"] = AdminPauseReason
	if got := paused(); !maps.Equal(got, want) {
		t.Fatalf("after pause all %v, want %v", got, want)
	}
	if n, err := s.PauseAll(ctx, "root"); err != nil || n != 0 {
		t.Fatalf("pause all again: %d, %v; want none", n, err)
	}

	n, err = s.ResumeAll(ctx, "root")
	if err != nil || n != 1 {
		t.Fatalf("resume all: %d, %v; want the 1 it paused", n, err)
	}
	if got := paused(); !maps.Equal(got, before) {
		t.Fatalf("after resume all %v, want as before %v", got, before)
	}
}

// A schedule this engine has not folded yet is folded from the read
// model's state on, reading from the log only what the read model has not
// applied: its subject grows by two records a tick, for ever, and read
// from the start it held up the firer's first scan after a restart for
// minutes (an every-second schedule's month). The result is the fold of
// the whole subject.
func TestColdFoldStartsFromTheReadModel(t *testing.T) {
	ctx := context.Background()
	s, c := newTestStore(t)
	def := &conductor.WorkflowSchedule{Name: "tick", CronExpression: "* * * * * *", StartWorkflowRequest: &conductor.StartWorkflowRequest{
		Name: "w", Input: map[string]any{"n": int64(1), "l": []any{"a", 1.5}}}}
	if err := s.Save(ctx, def, "u", nil); err != nil {
		t.Fatal(err)
	}
	st, err := s.load(ctx, "tick")
	if err != nil {
		t.Fatal(err)
	}
	seq := st.Seq
	for range 5 {
		c.ms += 1000
		if seq, err = s.append(ctx, "tick", seq, []schemas.Event{&schemas.ScheduleFired{ScheduledTime: c.ms, WorkflowID: workflowID("tick", c.ms), Time: c.ms}}); err != nil {
			t.Fatal(err)
		}
	}
	whole, err := s.load(ctx, "tick")
	if err != nil {
		t.Fatal(err)
	}
	token := eventlog.Token("tick")
	testutil.Eventually(t, 10*time.Second, 20*time.Millisecond, func() error {
		if rm, err := loadState(s.reader, token); err != nil || rm == nil || rm.Seq != seq {
			return fmt.Errorf("read model at %v (%v), want %d", rm, err, seq)
		}
		return nil
	})
	// Seeded from the read model, and only its tail read: as the whole.
	clear(s.folded)
	c.ms += 1000
	if seq, err = s.append(ctx, "tick", seq, []schemas.Event{&schemas.ScheduleExecuted{ScheduledTime: c.ms - 1000, Time: c.ms}}); err != nil {
		t.Fatal(err)
	}
	whole.Executed, whole.Seq = true, seq
	if got, err := s.load(ctx, "tick"); err != nil || !reflect.DeepEqual(*got, *whole) {
		t.Fatalf("folded from the read model:\n%+v (%v)\nwant the whole subject's fold:\n%+v", got, err, whole)
	}
	// The read model's state is where the fold starts: a mark put there
	// shows (the log alone would give 5 fires).
	testutil.Eventually(t, 10*time.Second, 20*time.Millisecond, func() error {
		if rm, err := loadState(s.reader, token); err != nil || rm == nil || rm.Seq != seq {
			return fmt.Errorf("read model at %v (%v), want %d", rm, err, seq)
		}
		return nil
	})
	clear(s.folded)
	err = s.pstore.Update(ProjectionName, func(b *projections.Batch) error {
		rm, err := loadState(b, token)
		if err != nil {
			return err
		}
		rm.Fires = 1_000_000
		v, err := msgpack.Marshal(rm)
		if err != nil {
			return err
		}
		return b.Set([]byte(keyState+token), v)
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s.load(ctx, "tick"); err != nil || got.Fires < 1_000_000 {
		t.Fatalf("fires %d (%v): the cold fold read the subject from its start", got.Fires, err)
	}
}

// A save carries paused but no reason (Orkes's SaveScheduleRequest): a
// schedule saved as paused as it was keeps the reason it was paused for,
// so that one edited during an admin's pause-all is still resumed by the
// admin's resume-all; a save that pauses or resumes it says no reason.
func TestSaveKeepsThePauseReason(t *testing.T) {
	ctx := context.Background()
	security := securityPause(errors.New("alice may not EXECUTE w"), 1).Reason
	tests := []struct {
		name        string
		pause       func(s *Store) error // before the save; nil: running
		savePaused  bool
		wantReason  string // "" with wantPaused false: running
		wantPaused  bool
		resumedByRA bool // resume-all resumes it
	}{
		{name: "admin-paused, saved paused", pause: func(s *Store) error { _, err := s.PauseAll(ctx, "root"); return err },
			savePaused: true, wantPaused: true, wantReason: AdminPauseReason, resumedByRA: true},
		{name: "admin-paused, saved running", pause: func(s *Store) error { _, err := s.PauseAll(ctx, "root"); return err },
			savePaused: false},
		{name: "paused by its owner, saved paused", pause: func(s *Store) error {
			return s.SetPaused(ctx, "tick", true, "maintenance", "alice", held(t, s, "tick"))
		},
			savePaused: true, wantPaused: true, wantReason: "maintenance"},
		{name: "security-paused, saved paused", pause: func(s *Store) error {
			st, err := s.load(ctx, "tick")
			if err != nil {
				return err
			}
			_, err = s.append(ctx, "tick", st.Seq, []schemas.Event{securityPause(errors.New("alice may not EXECUTE w"), 1)})
			return err
		}, savePaused: true, wantPaused: true, wantReason: security},
		{name: "running, saved paused", savePaused: true, wantPaused: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := newTestStore(t)
			def := func(cron string, paused bool) *conductor.WorkflowSchedule {
				return &conductor.WorkflowSchedule{Name: "tick", CronExpression: cron, Paused: paused,
					// a body read back and sent again names the reason; a save sets none
					PausedReason:         "from the body",
					StartWorkflowRequest: &conductor.StartWorkflowRequest{Name: "w"}}
			}
			if err := s.Save(ctx, def("0 0 0 * * ?", false), "alice", nil); err != nil {
				t.Fatal(err)
			}
			if tt.pause != nil {
				if err := tt.pause(s); err != nil {
					t.Fatal(err)
				}
			}
			checked, err := s.load(ctx, "tick")
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Save(ctx, def("0 0 12 * * ?", tt.savePaused), "bob", &checked.Def); err != nil {
				t.Fatal(err)
			}
			st, err := s.load(ctx, "tick")
			if err != nil {
				t.Fatal(err)
			}
			if st.Def.CronExpression != "0 0 12 * * ?" || st.Def.Paused != tt.wantPaused || st.Def.PausedReason != tt.wantReason {
				t.Fatalf("saved: cron %q paused %v reason %q; want the new cron, paused %v reason %q",
					st.Def.CronExpression, st.Def.Paused, st.Def.PausedReason, tt.wantPaused, tt.wantReason)
			}
			n, err := s.ResumeAll(ctx, "root")
			if err != nil {
				t.Fatal(err)
			}
			if resumed := n == 1; resumed != tt.resumedByRA {
				t.Fatalf("resume all resumed %d, want it to resume the schedule: %v", n, tt.resumedByRA)
			}
		})
	}
}

// A pause-all pauses each schedule in its own log, not the scheduler: a
// schedule its owner resumes (or pauses again, with a reason of its own)
// during it is theirs again, so that it runs (or stays paused) whatever
// the admin's resume-all does.
func TestOwnPauseOrResumeDuringPauseAll(t *testing.T) {
	ctx := context.Background()
	s, c := newTestStore(t)
	for _, name := range []string{"resumed", "held", "left"} {
		if err := s.Save(ctx, &conductor.WorkflowSchedule{Name: name, CronExpression: "* * * * * ?",
			StartWorkflowRequest: &conductor.StartWorkflowRequest{Name: "w"}}, "alice", nil); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := s.PauseAll(ctx, "root"); err != nil || n != 3 {
		t.Fatalf("pause all: %d, %v; want 3", n, err)
	}
	if err := s.SetPaused(ctx, "resumed", false, "", "alice", held(t, s, "resumed")); err != nil {
		t.Fatal(err)
	}
	if err := s.SetPaused(ctx, "held", true, "maintenance", "alice", held(t, s, "held")); err != nil {
		t.Fatal(err)
	}
	st, err := s.load(ctx, "resumed")
	if err != nil {
		t.Fatal(err)
	}
	if due := st.Due(c.ms + 1000); st.Def.Paused || due == 0 {
		t.Fatalf("resumed on its own during a pause-all: paused %v, due %d; want it to run", st.Def.Paused, due)
	}
	if n, err := s.ResumeAll(ctx, "root"); err != nil || n != 1 {
		t.Fatalf("resume all: %d, %v; want only the 1 still paused by the admin", n, err)
	}
	for name, want := range map[string]bool{"resumed": false, "held": true, "left": false} {
		st, err := s.load(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if st.Def.Paused != want {
			t.Errorf("%s after resume all: paused %v (reason %q), want %v", name, st.Def.Paused, st.Def.PausedReason, want)
		}
	}
}

// held is schedule name as the log holds it (nil: none), as a caller's
// access would have been checked on it.
func held(t testing.TB, s *Store, name string) *conductor.WorkflowSchedule {
	t.Helper()
	st, err := s.load(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	if !exists(st) {
		return nil
	}
	return &st.Def
}

// A delete, pause or resume applies to, and a read of it or its tags
// shows, the schedule the caller's access was checked on: one an admin
// deleted and saved again under the name, or tagged, meanwhile (a read
// model that lags the log) is left as it is and not shown, 409, as a save
// and a change of tags are refused.
func TestWritesWithoutABodyApplyToTheScheduleChecked(t *testing.T) {
	ctx := context.Background()
	save := func(s *Store, by string) {
		t.Helper()
		def := &conductor.WorkflowSchedule{Name: "nightly", CronExpression: "0 0 0 * * ?", StartWorkflowRequest: &conductor.StartWorkflowRequest{Name: "w"}}
		if err := s.Save(ctx, def, by, held(t, s, "nightly")); err != nil {
			t.Fatal(err)
		}
	}
	changes := []struct {
		name   string
		change func(s *Store) // by the admin, after the caller's check
	}{
		{"saved again by another", func(s *Store) {
			if err := s.Delete(ctx, "nightly", "root", held(t, s, "nightly")); err != nil {
				t.Fatal(err)
			}
			save(s, "root")
		}},
		{"tagged", func(s *Store) {
			if err := s.ChangeTags(ctx, "nightly", []conductor.Tag{{Key: "team", Value: "admins"}}, false, "root", held(t, s, "nightly")); err != nil {
				t.Fatal(err)
			}
		}},
		{"deleted", func(s *Store) {
			if err := s.Delete(ctx, "nightly", "root", held(t, s, "nightly")); err != nil {
				t.Fatal(err)
			}
		}},
	}
	writes := []struct {
		name  string
		write func(s *Store, checked *conductor.WorkflowSchedule) error
	}{
		{"delete", func(s *Store, checked *conductor.WorkflowSchedule) error {
			return s.Delete(ctx, "nightly", "alice", checked)
		}},
		{"pause", func(s *Store, checked *conductor.WorkflowSchedule) error {
			return s.SetPaused(ctx, "nightly", true, "mine", "alice", checked)
		}},
		{"resume", func(s *Store, checked *conductor.WorkflowSchedule) error {
			return s.SetPaused(ctx, "nightly", false, "", "alice", checked)
		}},
		{"get", func(s *Store, checked *conductor.WorkflowSchedule) error {
			_, err := s.GetChecked(ctx, "nightly", checked)
			return err
		}},
		{"tags", func(s *Store, checked *conductor.WorkflowSchedule) error {
			_, err := s.Tags(ctx, "nightly", checked)
			return err
		}},
	}
	for _, c := range changes {
		for _, w := range writes {
			t.Run(c.name+"/"+w.name, func(t *testing.T) {
				s, _ := newTestStore(t)
				save(s, "alice")
				if _, err := s.PauseAll(ctx, "root"); err != nil { // something for a resume to change
					t.Fatal(err)
				}
				checked := held(t, s, "nightly")
				c.change(s)
				before := held(t, s, "nightly")
				if err := w.write(s, checked); !errors.Is(err, fault.ErrConflict) {
					t.Fatalf("%s of a schedule changed since its check: %v, want a conflict", w.name, err)
				}
				if after := held(t, s, "nightly"); !reflect.DeepEqual(after, before) {
					t.Fatalf("the schedule changed:\n%+v\nwant\n%+v", after, before)
				}
			})
		}
	}
	// Checked as absent, a schedule saved since is not touched either.
	s, _ := newTestStore(t)
	save(s, "root")
	if err := s.Delete(ctx, "nightly", "alice", nil); !errors.Is(err, fault.ErrConflict) {
		t.Fatalf("delete of a schedule saved since a check found none: %v, want a conflict", err)
	}
	if _, err := s.GetChecked(ctx, "nightly", nil); !errors.Is(err, fault.ErrConflict) {
		t.Fatalf("read of a schedule saved since a check found none: %v, want a conflict", err)
	}
}
