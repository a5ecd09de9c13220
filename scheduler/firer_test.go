package scheduler

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowvault/flowvault/auth"
	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/executor"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/projections"
	"github.com/flowvault/flowvault/projections/executions/query"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// started records the starts a firer makes.
type started struct {
	mu    sync.Mutex
	reqs  []conductor.StartWorkflowRequest
	ids   []string
	added [][]string
}

func (s *started) StartWorkflow(_ context.Context, req conductor.StartWorkflowRequest, o executor.StartOptions) (string, uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reqs, s.ids, s.added = append(s.reqs, req), append(s.ids, o.WorkflowID), append(s.added, o.Added)
	return o.WorkflowID, 1, nil
}

func (s *started) State(_ context.Context, wfID string) (*engine.Workflow, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !slices.Contains(s.ids, wfID) {
		return nil, nil
	}
	return &engine.Workflow{ID: wfID}, nil
}

// clock is a test's time: the store reads it, the test moves it.
type clock struct{ ms int64 }

func (c *clock) now() time.Time { return time.UnixMilli(c.ms) }

// newTestStore returns a schedule store over an embedded log, its read
// model kept by a running projection, on the test's clock.
func newTestStore(t *testing.T) (*Store, *clock) {
	t.Helper()
	l := testutil.OpenLog(t, "")
	ps := testutil.OpenStore(t)
	runner := testutil.RunProjection(t, l, ps, Projection{}, projections.RunnerConfig{Stream: eventlog.Metadata.Name, Poison: projections.Halt})
	s := New(l, ps, runner, testutil.Logger(t))
	c := &clock{ms: ms("2026-11-30T10:00:00Z")}
	s.now = c.now
	return s, c
}

// claim appends a fire of schedule name at the time at, as a firer that
// then crashed before it started the workflow.
func claim(t *testing.T, s *Store, name string, at int64) {
	t.Helper()
	st, err := s.load(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	ev := &schemas.ScheduleFired{ScheduledTime: at, WorkflowID: workflowID(name, at), Time: s.now().UnixMilli()}
	if _, err := s.append(context.Background(), name, st.Seq, []schemas.Event{ev}); err != nil {
		t.Fatal(err)
	}
}

// A deleted and re-created schedule is a new one: a claim its former life
// left unfinished is not finished, and it fires first at its first tick
// after the re-creation, not at the times it missed while deleted.
func TestRecreatedScheduleFiresAsNew(t *testing.T) {
	ctx := context.Background()
	every5 := func(catchUp bool) *conductor.WorkflowSchedule {
		return &conductor.WorkflowSchedule{Name: "tick", CronExpression: "*/5 * * * * ?", RunCatchupScheduleInstances: catchUp,
			StartWorkflowRequest: &conductor.StartWorkflowRequest{Name: "w"}}
	}
	for _, catchUp := range []bool{false, true} {
		s, c := newTestStore(t)
		starts := &started{}
		f := NewFirer(s, starts, nil)
		if err := s.Save(ctx, every5(catchUp), "alice", nil); err != nil {
			t.Fatal(err)
		}
		old := ms("2026-11-30T10:00:05Z")
		c.ms = old + 100
		claim(t, s, "tick", old)
		if err := s.Delete(ctx, "tick", "alice", held(t, s, "tick")); err != nil {
			t.Fatal(err)
		}
		c.ms = ms("2026-11-30T10:00:31Z")
		if err := s.Save(ctx, every5(catchUp), "alice", nil); err != nil {
			t.Fatal(err)
		}
		c.ms = ms("2026-11-30T10:00:33Z")
		if err := f.fire(ctx, c.ms, "tick"); err != nil {
			t.Fatal(err)
		}
		if len(starts.ids) != 0 {
			t.Fatalf("catch-up %v: before its first tick the re-created schedule started %v", catchUp, starts.ids)
		}
		c.ms = ms("2026-11-30T10:00:36Z")
		if err := f.fire(ctx, c.ms, "tick"); err != nil {
			t.Fatal(err)
		}
		if want := workflowID("tick", ms("2026-11-30T10:00:35Z")); len(starts.ids) != 1 || starts.ids[0] != want {
			t.Fatalf("catch-up %v: started %v, want only the 10:00:35 run %s", catchUp, starts.ids, want)
		}
	}
}

// A scheduled run's input carries what Orkes adds to it, and what the
// schedule's own input says wins. The start is told which keys the
// scheduler added, so that an enforced inputSchema judges only the
// schedule's own.
func TestScheduledRunInput(t *testing.T) {
	ctx := context.Background()
	s, c := newTestStore(t)
	starts := &started{}
	f := NewFirer(s, starts, nil)
	def := &conductor.WorkflowSchedule{Name: "nightly", CronExpression: "0 0 * * * ?",
		StartWorkflowRequest: &conductor.StartWorkflowRequest{Name: "w", Input: map[string]any{"region": "eu", "_executionId": "mine"}}}
	if err := s.Save(ctx, def, "alice", nil); err != nil {
		t.Fatal(err)
	}
	c.ms = ms("2026-11-30T11:00:02Z")
	if err := f.fire(ctx, c.ms, "nightly"); err != nil {
		t.Fatal(err)
	}
	if len(starts.reqs) != 1 {
		t.Fatalf("%d starts, want 1", len(starts.reqs))
	}
	got, _ := json.Marshal(starts.reqs[0].Input)
	want, _ := json.Marshal(map[string]any{"region": "eu", "_executionId": "mine", "_scheduledTime": ms("2026-11-30T11:00:00Z"),
		"_executedTime": c.ms, "_startedByScheduler": "nightly"})
	if string(got) != string(want) {
		t.Fatalf("input %s, want %s", got, want)
	}
	if want := []string{"_executedTime", "_scheduledTime", "_startedByScheduler"}; !slices.Equal(starts.added[0], want) {
		t.Fatalf("the start was told the scheduler added %v, want %v (_executionId is the schedule's input's)", starts.added[0], want)
	}
	if def.StartWorkflowRequest.Input["_scheduledTime"] != nil {
		t.Fatal("the firer changed the schedule's input")
	}
	// A claim finished after a crash gives the run the same input.
	claim(t, s, "nightly", ms("2026-11-30T12:00:00Z"))
	claimed := c.ms
	c.ms = ms("2026-11-30T12:00:09Z")
	if err := f.fire(ctx, c.ms, "nightly"); err != nil {
		t.Fatal(err)
	}
	if in := starts.reqs[len(starts.reqs)-1].Input; in["_executedTime"] != claimed || in["_executionId"] != "mine" ||
		in["_scheduledTime"] != ms("2026-11-30T12:00:00Z") {
		t.Fatalf("finished claim's input %v, want executed at the claim, %d", in, claimed)
	}
}

// The firer asks its check about the schedule's whole start request, so
// that the check can apply the API's rule (CREATE on an inline
// definition's name, not EXECUTE on startWorkflowRequest.name).
func TestFirerChecksTheStartRequest(t *testing.T) {
	ctx := context.Background()
	s, c := newTestStore(t)
	var asked []conductor.StartWorkflowRequest
	check := func(_ context.Context, owner string, req conductor.StartWorkflowRequest) (executor.Pin, error) {
		if owner != "alice" {
			t.Errorf("checked owner %q", owner)
		}
		asked = append(asked, req)
		return executor.Pin{}, nil
	}
	starts := &started{}
	f := NewFirer(s, starts, check)
	def := &conductor.WorkflowSchedule{Name: "inline", CronExpression: "0 0 * * * ?",
		StartWorkflowRequest: &conductor.StartWorkflowRequest{WorkflowDef: &conductor.WorkflowDef{Name: "adhoc"}}}
	if err := s.Save(ctx, def, "alice", nil); err != nil {
		t.Fatal(err)
	}
	c.ms = ms("2026-11-30T11:00:01Z")
	if err := f.fire(ctx, c.ms, "inline"); err != nil {
		t.Fatal(err)
	}
	// Asked before the claim and again before the start.
	if len(asked) != 2 || asked[1].WorkflowDef == nil || asked[1].WorkflowDef.Name != "adhoc" || len(starts.ids) != 1 {
		t.Fatalf("checked %+v, started %v", asked, starts.ids)
	}
}

// A save applies to the schedule its access was checked on: CREATE on a
// name that turns out to exist, or UPDATE on a schedule since re-created
// or re-tagged, answers a conflict and changes nothing.
func TestSaveAppliesToTheCheckedSchedule(t *testing.T) {
	ctx := context.Background()
	s, c := newTestStore(t)
	def := func(wf string) *conductor.WorkflowSchedule {
		return &conductor.WorkflowSchedule{Name: "nightly", CronExpression: "0 0 * * * ?",
			StartWorkflowRequest: &conductor.StartWorkflowRequest{Name: wf}}
	}
	current := func() *conductor.WorkflowSchedule {
		t.Helper()
		st, err := s.load(ctx, "nightly")
		if err != nil {
			t.Fatal(err)
		}
		return shown(st.Def)
	}
	wantConflict := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, fault.ErrConflict) {
			t.Fatalf("%s: %v, want a conflict", what, err)
		}
		if got := current().StartWorkflowRequest.Name; got == "mallory_wf" {
			t.Fatalf("%s: the save applied", what)
		}
	}
	if err := s.Save(ctx, def("alice_wf"), "alice", nil); err != nil {
		t.Fatal(err)
	}
	wantConflict("created over an existing one", s.Save(ctx, def("mallory_wf"), "mallory", nil))
	checked := current()
	if err := s.Save(ctx, def("alice_wf2"), "alice", checked); err != nil {
		t.Fatalf("update of the checked schedule: %v", err)
	}
	checked = current()
	if err := s.ChangeTags(ctx, "nightly", []conductor.Tag{{Key: "team", Value: "ops"}}, false, "alice", checked); err != nil {
		t.Fatal(err)
	}
	wantConflict("re-tagged since", s.Save(ctx, def("mallory_wf"), "mallory", checked))
	checked = current()
	if err := s.Delete(ctx, "nightly", "alice", held(t, s, "nightly")); err != nil {
		t.Fatal(err)
	}
	c.ms += 1000
	if err := s.Save(ctx, def("carol_wf"), "carol", nil); err != nil {
		t.Fatal(err)
	}
	wantConflict("re-created since", s.Save(ctx, def("mallory_wf"), "mallory", checked))
}

// The executions search takes Conductor's query, freeText and sort, and
// lists the newest first by default.
func TestSearchExecutions(t *testing.T) {
	ctx := context.Background()
	s, c := newTestStore(t)
	f := NewFirer(s, &started{}, nil)
	for _, name := range []string{"alpha", "beta"} {
		if err := s.Save(ctx, &conductor.WorkflowSchedule{Name: name, CronExpression: "0 0 * * * ?",
			StartWorkflowRequest: &conductor.StartWorkflowRequest{Name: name + "_wf"}}, "alice", nil); err != nil {
			t.Fatal(err)
		}
	}
	for _, at := range []string{"2026-11-30T11:00:01Z", "2026-11-30T12:00:01Z"} {
		c.ms = ms(at)
		for _, name := range []string{"alpha", "beta"} {
			if err := f.fire(ctx, c.ms, name); err != nil {
				t.Fatal(err)
			}
		}
	}
	search := func(s0 query.Search) string {
		t.Helper()
		s0.Size = 10
		var got []string
		testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() error {
			_, total, err := s.Executions(ctx, query.Search{Query: "state = EXECUTED", Size: 10}, nil)
			if err != nil || total != 4 {
				return fmt.Errorf("%d executed (%v), want 4", total, err)
			}
			xs, _, err := s.Executions(ctx, s0, nil)
			if err != nil {
				return err
			}
			got = got[:0]
			for _, x := range xs {
				got = append(got, x.ScheduleName+"@"+time.UnixMilli(x.ScheduledTime).UTC().Format("15"))
			}
			return nil
		})
		return strings.Join(got, " ")
	}
	for _, tt := range []struct {
		search query.Search
		want   string
	}{
		{query.Search{}, "alpha@12 beta@12 alpha@11 beta@11"},
		{query.Search{Query: "scheduleName = beta"}, "beta@12 beta@11"},
		{query.Search{Query: "scheduledTime < 1796040000000"}, "alpha@11 beta@11"},
		{query.Search{FreeText: "alpha_wf"}, "alpha@12 alpha@11"},
		{query.Search{FreeText: "*"}, "alpha@12 beta@12 alpha@11 beta@11"},
		{query.Search{Sort: []string{"scheduledTime:ASC", "scheduleName:DESC"}}, "beta@11 alpha@11 beta@12 alpha@12"},
		{query.Search{Query: "state IN (EXECUTED)", Start: 3}, "beta@11"},
	} {
		if got := search(tt.search); got != tt.want {
			t.Errorf("%+v: %s, want %s", tt.search, got, tt.want)
		}
	}
	if _, _, err := s.Executions(ctx, query.Search{Query: "nosuch = 1"}, nil); !errors.Is(err, fault.ErrInvalid) {
		t.Fatalf("unknown field: %v", err)
	}
}

// A deleted schedule's executions go with it: whoever creates the name
// next sees only the new schedule's.
func TestDeleteTakesExecutions(t *testing.T) {
	ctx := context.Background()
	s, c := newTestStore(t)
	f := NewFirer(s, &started{}, nil)
	save := func(by, wf string) {
		t.Helper()
		if err := s.Save(ctx, &conductor.WorkflowSchedule{Name: "nightly", CronExpression: "0 0 * * * ?",
			StartWorkflowRequest: &conductor.StartWorkflowRequest{Name: wf}}, by, nil); err != nil {
			t.Fatal(err)
		}
	}
	save("alice", "alice_wf")
	c.ms = ms("2026-11-30T11:00:01Z")
	if err := f.fire(ctx, c.ms, "nightly"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "nightly", "alice", held(t, s, "nightly")); err != nil {
		t.Fatal(err)
	}
	save("bob", "bob_wf")
	c.ms = ms("2026-11-30T12:00:01Z")
	if err := f.fire(ctx, c.ms, "nightly"); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() error {
		xs, _, err := s.Executions(ctx, query.Search{Size: 10}, nil)
		if err != nil {
			return err
		}
		if len(xs) != 1 || xs[0].WorkflowName != "bob_wf" {
			return fmt.Errorf("executions %+v, want bob's one", xs)
		}
		return nil
	})
}

// A schedule whose owner lost the right to start its workflow starts
// nothing: the tick is recorded FAILED with the refusal, so that an
// executions search shows it, and the schedule pauses with a security
// error. So is a claim whose start a crash interrupted and which is
// started after the loss.
func TestRefusedOwnerRecordsTheRunAndPauses(t *testing.T) {
	for _, tt := range []struct {
		name    string
		pending bool // claimed before the loss
	}{
		{"due after the loss", false},
		{"claimed before the loss", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			s, c := newTestStore(t)
			revoked := false
			starts := &started{}
			f := NewFirer(s, starts, revocable(&revoked))
			saveHourly(t, s)
			at := ms("2026-11-30T11:00:00Z")
			if tt.pending {
				c.ms = at
				claim(t, s, "h", at)
			}
			revoked = true
			c.ms = ms("2026-11-30T11:05:00Z")
			if err := f.fire(ctx, c.ms, "h"); err != nil {
				t.Fatal(err)
			}
			st, err := s.load(ctx, "h")
			if err != nil {
				t.Fatal(err)
			}
			if len(starts.ids) != 0 || st.Pending() || !st.Def.Paused || !strings.HasPrefix(st.Def.PausedReason, "Security Error") {
				t.Fatalf("started %v; pending %v, paused %v (%q)", starts.ids, st.Pending(), st.Def.Paused, st.Def.PausedReason)
			}
			// The executions read model follows the log.
			testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() error {
				xs, _, err := s.Executions(ctx, query.Search{Query: "state = FAILED", Size: 10}, nil)
				if err != nil {
					return err
				}
				if len(xs) != 1 || xs[0].ScheduledTime != at || !strings.Contains(xs[0].Reason, "revoked") || xs[0].WorkflowID != "" {
					return fmt.Errorf("failed executions %+v, want the 11:00 one saying why", xs)
				}
				return nil
			})
		})
	}
}

// revocable is a check that allows every start until *revoked, and then
// refuses the owner's.
func revocable(revoked *bool) StartCheck {
	return func(_ context.Context, owner string, _ conductor.StartWorkflowRequest) (executor.Pin, error) {
		if *revoked {
			return executor.Pin{}, &auth.ForbiddenError{Principal: owner, Access: auth.Execute, Reason: "revoked"}
		}
		return executor.Pin{}, nil
	}
}

// saveHourly saves alice's schedule h of workflow w, firing on the hour.
func saveHourly(t *testing.T, s *Store) {
	t.Helper()
	if err := s.Save(context.Background(), &conductor.WorkflowSchedule{Name: "h", CronExpression: "0 0 * * * ?",
		StartWorkflowRequest: &conductor.StartWorkflowRequest{Name: "w"}}, "alice", nil); err != nil {
		t.Fatal(err)
	}
}

// A claim whose workflow started before its outcome was recorded (the
// start's answer lost with its server, an engine gone) is that run when a
// later scan finishes it, though the owner's check now refuses the start:
// it was recorded FAILED, and the schedule paused, with its workflow
// running.
func TestPendingClaimThatStartedIsItsRun(t *testing.T) {
	ctx := context.Background()
	s, c := newTestStore(t)
	revoked := false
	starter := &landing{err: errors.New("no answer: the server went")}
	f := NewFirer(s, starter, revocable(&revoked))
	saveHourly(t, s)
	at := ms("2026-11-30T11:00:00Z")
	c.ms = at
	if err := f.fire(ctx, c.ms, "h"); err == nil {
		t.Fatal("fire: no error, want the start's")
	}
	revoked = true
	c.ms = ms("2026-11-30T11:00:01Z")
	if err := f.fire(ctx, c.ms, "h"); err != nil {
		t.Fatal(err)
	}
	st, err := s.load(ctx, "h")
	if err != nil {
		t.Fatal(err)
	}
	if st.Pending() || st.Def.Paused || len(starter.ids) != 1 {
		t.Fatalf("claim pending %v, paused %v (%q), started %v; want the run recorded, started once, not paused",
			st.Pending(), st.Def.Paused, st.Def.PausedReason, starter.ids)
	}
	// The executions read model follows the log.
	testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() error {
		xs, _, err := s.Executions(ctx, query.Search{Size: 10}, nil)
		if err != nil {
			return err
		}
		if len(xs) != 1 || xs[0].ScheduledTime != at || xs[0].State != "EXECUTED" {
			return fmt.Errorf("executions %+v, want the 11:00 one EXECUTED", xs)
		}
		return nil
	})
}

// A schedule stored before input with _secrets or _masked was refused
// shows that data as "***" in every read path.
func TestStoredSecretInputReadsMasked(t *testing.T) {
	ctx := context.Background()
	s, c := newTestStore(t)
	raw := []byte(`{"name":"legacy","cronExpression":"0 0 * * * ?","startWorkflowRequest":{"name":"w",` +
		`"input":{"ok":"plain","creds":{"_secrets":{"token":"tok-SECRET-1"}},"list":[{"_masked":"tok-SECRET-2"}]}}}`)
	if _, err := s.append(ctx, "legacy", 0, []schemas.Event{&schemas.ScheduleSaved{Def: raw, Time: c.ms, By: "alice"}}); err != nil {
		t.Fatal(err)
	}
	saved := &conductor.WorkflowSchedule{CreateTime: c.ms, CreatedBy: "alice"}
	c.ms = ms("2026-11-30T11:00:01Z")
	if err := NewFirer(s, &started{}, nil).fire(ctx, c.ms, "legacy"); err != nil {
		t.Fatal(err)
	}
	// Wait for the read model through a write that goes through it.
	if err := s.ChangeTags(ctx, "legacy", []conductor.Tag{{Key: "k", Value: "v"}}, false, "alice", saved); err != nil {
		t.Fatal(err)
	}
	get, err := s.Get(ctx, "legacy")
	if err != nil {
		t.Fatal(err)
	}
	list, err := s.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	xs, _, err := s.Executions(ctx, query.Search{Size: 10}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]any{"get": get, "list": list, "executions": xs} {
		out, _ := json.Marshal(v)
		if strings.Contains(string(out), "SECRET") || !strings.Contains(string(out), `"plain"`) || !strings.Contains(string(out), `"_secrets":"***"`) {
			t.Errorf("%s shows %s", name, out)
		}
	}
	if len(xs) != 1 {
		t.Errorf("%d executions, want 1", len(xs))
	}
}

// The firer folds a schedule from where its last fold ended, not from the
// first record: a schedule firing every second appends two records a
// second. The test deletes the schedule's first record from the stream
// once it has been folded; a fold from the start would fail without it.
func TestFoldReadsOnlyNewRecords(t *testing.T) {
	ctx := context.Background()
	s, c := newTestStore(t)
	starts := &started{}
	f := NewFirer(s, starts, nil)
	def := &conductor.WorkflowSchedule{Name: "often", CronExpression: "* * * * * ?",
		StartWorkflowRequest: &conductor.StartWorkflowRequest{Name: "w"}}
	if err := s.Save(ctx, def, "alice", nil); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		c.ms += 1000
		if err := f.fire(ctx, c.ms, "often"); err != nil {
			t.Fatal(err)
		}
	}
	recs, err := s.log.ReadSubject(ctx, Subject("often"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 7 {
		t.Fatalf("%d records, want the save and 3 fires of 2", len(recs))
	}
	stream, err := s.log.JetStream().Stream(ctx, eventlog.Metadata.Name)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.DeleteMsg(ctx, recs[0].Seq); err != nil {
		t.Fatal(err)
	}
	c.ms += 1000
	if err := f.fire(ctx, c.ms, "often"); err != nil {
		t.Fatalf("fire after the first record is gone: %v", err)
	}
	if len(starts.ids) != 4 {
		t.Fatalf("started %v, want 4 runs", starts.ids)
	}
	// Another store (an engine started later) folds from the start.
	other := New(s.log, testutil.OpenStore(t), nil, testutil.Logger(t))
	if _, err := other.load(ctx, "often"); err == nil {
		t.Fatal("a fold from the first record read a schedule whose save is gone")
	}
}

// On the night a clock falls back, a schedule at a fixed time of day
// starts one run, and one every N minutes starts a run at each of its
// times through both passes of the repeated hour. America/New_York falls
// back at 06:00Z on 2026-11-01.
func TestFallBackNightRuns(t *testing.T) {
	tests := []struct {
		name, expr string
		scans      []string // when the firer scans
		want       []string // the scheduled times it starts
	}{
		{"a nightly time", "0 30 1 * * ?",
			[]string{"2026-11-01T05:30:01Z", "2026-11-01T06:30:01Z", "2026-11-02T06:30:01Z"},
			[]string{"2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"}},
		{"every 30 minutes", "0 */30 * * * ?",
			[]string{"2026-11-01T05:30:01Z", "2026-11-01T06:00:01Z", "2026-11-01T06:30:01Z"},
			[]string{"2026-11-01T05:30:00Z", "2026-11-01T06:00:00Z", "2026-11-01T06:30:00Z"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			s, c := newTestStore(t)
			starts := &started{}
			f := NewFirer(s, starts, nil)
			c.ms = ms("2026-11-01T04:00:00Z")
			if err := s.Save(ctx, &conductor.WorkflowSchedule{Name: "night", CronExpression: tt.expr, ZoneID: "America/New_York",
				StartWorkflowRequest: &conductor.StartWorkflowRequest{Name: "w"}}, "alice", nil); err != nil {
				t.Fatal(err)
			}
			for _, at := range tt.scans {
				c.ms = ms(at)
				if err := f.fire(ctx, c.ms, "night"); err != nil {
					t.Fatal(err)
				}
			}
			var want []string
			for _, at := range tt.want {
				want = append(want, workflowID("night", ms(at)))
			}
			if !slices.Equal(starts.ids, want) {
				t.Fatalf("started %v, want the runs of %v: %v", starts.ids, tt.want, want)
			}
		})
	}
}

// A claim whose start is refused for good (too large a start record, an
// unknown definition) is recorded FAILED with the reason, and the next
// tick fires; one refused for now stays pending, to be tried again.
func TestRefusedStartEndsTheClaim(t *testing.T) {
	tests := []struct {
		name    string
		err     error
		pending bool
	}{
		{"too large", fmt.Errorf("workflow x: %w: record too large", fault.ErrTooLarge), false},
		{"unknown definition", fault.NotFound("no such workflow"), false},
		{"unavailable", fmt.Errorf("executor stopped: %w", fault.ErrUnavailable), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			s, c := newTestStore(t)
			starter := &answering{err: tt.err}
			f := NewFirer(s, starter, nil)
			if err := s.Save(ctx, &conductor.WorkflowSchedule{Name: "h", CronExpression: "0 0 * * * ?",
				StartWorkflowRequest: &conductor.StartWorkflowRequest{Name: "w"}}, "alice", nil); err != nil {
				t.Fatal(err)
			}
			c.ms = ms("2026-11-30T11:00:00Z")
			err := f.fire(ctx, c.ms, "h")
			if tt.pending != (err != nil) {
				t.Fatalf("fire: %v", err)
			}
			st, err := s.load(ctx, "h")
			if err != nil {
				t.Fatal(err)
			}
			if st.Pending() != tt.pending || starter.tries != 1 {
				t.Fatalf("pending %v after %d tries, want %v", st.Pending(), starter.tries, tt.pending)
			}
			if tt.pending {
				return
			}
			c.ms = ms("2026-11-30T12:00:00Z")
			if err := f.fire(ctx, c.ms, "h"); err != nil || starter.tries != 2 {
				t.Fatalf("the next tick: %v, %d tries", err, starter.tries)
			}
		})
	}
}

// A paused schedule starts nothing, not even a claim made before the
// pause; resumed, it starts the claim.
func TestPausedScheduleHoldsItsClaim(t *testing.T) {
	ctx := context.Background()
	s, c := newTestStore(t)
	starts := &started{}
	f := NewFirer(s, starts, nil)
	if err := s.Save(ctx, &conductor.WorkflowSchedule{Name: "h", CronExpression: "0 0 * * * ?",
		StartWorkflowRequest: &conductor.StartWorkflowRequest{Name: "w"}}, "alice", nil); err != nil {
		t.Fatal(err)
	}
	c.ms = ms("2026-11-30T11:00:00Z")
	claim(t, s, "h", c.ms)
	if err := s.SetPaused(ctx, "h", true, "", "alice", held(t, s, "h")); err != nil {
		t.Fatal(err)
	}
	c.ms = ms("2026-11-30T11:05:00Z")
	if err := f.fire(ctx, c.ms, "h"); err != nil || len(starts.ids) != 0 {
		t.Fatalf("fire while paused: %v, started %v", err, starts.ids)
	}
	if err := s.SetPaused(ctx, "h", false, "", "alice", held(t, s, "h")); err != nil {
		t.Fatal(err)
	}
	if err := f.fire(ctx, c.ms, "h"); err != nil || len(starts.ids) != 1 || starts.ids[0] != workflowID("h", ms("2026-11-30T11:00:00Z")) {
		t.Fatalf("fire after resume: %v, started %v", err, starts.ids)
	}
}

// pausing is a starter that starts the workflow and, before it answers,
// pauses the schedule: the pause lands between the claim and its outcome.
type pausing struct {
	started
	store *Store
}

func (p *pausing) StartWorkflow(ctx context.Context, req conductor.StartWorkflowRequest, o executor.StartOptions) (string, uint64, error) {
	st, err := p.store.load(ctx, "h")
	if err != nil {
		return "", 0, err
	}
	if err := p.store.SetPaused(ctx, "h", true, "", "alice", &st.Def); err != nil {
		return "", 0, err
	}
	return p.started.StartWorkflow(ctx, req, o)
}

// A schedule paused while a tick's workflow starts records the run
// EXECUTED all the same: the outcome's append met the pause's record,
// and the run read POLLED for as long as the pause lasted (make test's
// failover test paused the schedule as it fired).
func TestPauseAsItFiresRecordsTheRun(t *testing.T) {
	ctx := context.Background()
	s, c := newTestStore(t)
	starter := &pausing{store: s}
	f := NewFirer(s, starter, nil)
	if err := s.Save(ctx, &conductor.WorkflowSchedule{Name: "h", CronExpression: "0 0 * * * ?",
		StartWorkflowRequest: &conductor.StartWorkflowRequest{Name: "w"}}, "alice", nil); err != nil {
		t.Fatal(err)
	}
	c.ms = ms("2026-11-30T11:00:00Z")
	if err := f.fire(ctx, c.ms, "h"); err != nil || len(starter.ids) != 1 {
		t.Fatalf("fire: %v, started %v", err, starter.ids)
	}
	st, err := s.load(ctx, "h")
	if err != nil {
		t.Fatal(err)
	}
	if !st.Def.Paused || st.Pending() {
		t.Fatalf("paused %v, claim pending %v; want paused with the run recorded", st.Def.Paused, st.Pending())
	}
}

// answering is a starter that answers every start with id (the id it was
// asked for when empty) and err.
type answering struct {
	id    string
	err   error
	tries int
	looks int // State calls
}

func (a *answering) StartWorkflow(_ context.Context, _ conductor.StartWorkflowRequest, o executor.StartOptions) (string, uint64, error) {
	a.tries++
	if a.err != nil {
		return "", 0, a.err
	}
	return cmp.Or(a.id, o.WorkflowID), 1, nil
}

func (a *answering) State(context.Context, string) (*engine.Workflow, error) {
	a.looks++
	return nil, nil
}

// landing is a starter whose starts land and answer err: their answer
// lost with a server, say.
type landing struct {
	started
	err error
}

func (l *landing) StartWorkflow(ctx context.Context, req conductor.StartWorkflowRequest, o executor.StartOptions) (string, uint64, error) {
	if _, _, err := l.started.StartWorkflow(ctx, req, o); err != nil {
		return "", 0, err
	}
	return "", 0, l.err
}

// claimThenPause saves the hourly schedule h, fires its 11:00 tick, whose
// start must answer an error, and pauses it: the claim stays pending.
func claimThenPause(t *testing.T, s *Store, c *clock, f *Firer) {
	t.Helper()
	ctx := context.Background()
	if err := s.Save(ctx, &conductor.WorkflowSchedule{Name: "h", CronExpression: "0 0 * * * ?",
		StartWorkflowRequest: &conductor.StartWorkflowRequest{Name: "w"}}, "alice", nil); err != nil {
		t.Fatal(err)
	}
	c.ms = ms("2026-11-30T11:00:00Z")
	if err := f.fire(ctx, c.ms, "h"); err == nil {
		t.Fatal("fire: no error, want the start's")
	}
	if err := s.SetPaused(ctx, "h", true, "", "alice", held(t, s, "h")); err != nil {
		t.Fatal(err)
	}
}

// scanPausedClaim is claimThenPause with starter, and a scan a second
// after the claim.
func scanPausedClaim(t *testing.T, starter Starter) (*Store, *Firer) {
	t.Helper()
	s, c := newTestStore(t)
	f := NewFirer(s, starter, nil)
	claimThenPause(t, s, c, f)
	c.ms = ms("2026-11-30T11:00:01Z")
	f.scan(context.Background())
	return s, f
}

// A tick whose workflow started but whose start answered an error is
// finished by a later scan; paused meanwhile, the schedule records the
// run all the same, and starts nothing: its run read POLLED for as long
// as the pause lasted, though its workflow ran (make test's failover
// test, its start's answer lost with a server, then a pause). The scan
// finds the claim: the read model lists it while the schedule is paused,
// with no fire time due.
func TestPausedScheduleRecordsARunThatStarted(t *testing.T) {
	starter := &landing{err: errors.New("no answer: the server went")}
	s, _ := scanPausedClaim(t, starter)
	st, err := s.load(context.Background(), "h")
	if err != nil {
		t.Fatal(err)
	}
	if st.Pending() || len(starter.ids) != 1 {
		t.Fatalf("claim pending %v, started %v; want the run recorded, started once", st.Pending(), starter.ids)
	}
}

// A paused schedule's claim whose workflow did not start is looked for
// again every lookEvery, not at every scan (five a second), for as long
// as the pause lasts.
func TestPausedClaimIsLookedForNowAndThen(t *testing.T) {
	ctx := context.Background()
	s, c := newTestStore(t)
	starter := &answering{err: errors.New("no engine available")}
	f := NewFirer(s, starter, nil)
	claimThenPause(t, s, c, f)
	for _, tc := range []struct {
		after time.Duration
		looks int
	}{{time.Second, 1}, {2 * time.Second, 1}, {lookEvery, 1}, {time.Second + lookEvery, 2}} {
		c.ms = ms("2026-11-30T11:00:00Z") + tc.after.Milliseconds()
		if err := f.fire(ctx, c.ms, "h"); err != nil {
			t.Fatal(err)
		}
		if starter.looks != tc.looks || starter.tries != 1 {
			t.Fatalf("%s after the claim: looked %d times, started %d; want %d, 1", tc.after, starter.looks, starter.tries, tc.looks)
		}
	}
}

// The firer forgets when it looked for a paused claim's workflow once a
// scan finds the claim no longer pending: its schedule deleted, or
// resumed and its claim started.
func TestLooksForgottenWithTheClaim(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		end   func(s *Store) error
		tries int // starts: the claim's, and the resumed claim's
	}{
		{"deleted", func(s *Store) error { return s.Delete(ctx, "h", "alice", held(t, s, "h")) }, 1},
		{"resumed", func(s *Store) error { return s.SetPaused(ctx, "h", false, "", "alice", held(t, s, "h")) }, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			starter := &answering{err: errors.New("no engine available")}
			s, f := scanPausedClaim(t, starter)
			if starter.looks != 1 || len(f.lookedFor) != 1 {
				t.Fatalf("looked %d times, %d claims remembered; want 1, 1", starter.looks, len(f.lookedFor))
			}
			if err := tc.end(s); err != nil {
				t.Fatal(err)
			}
			starter.err = nil
			// A scan starts the resumed claim; one that reads its outcome
			// (the read model catches up with it) forgets it.
			for deadline := time.Now().Add(10 * time.Second); len(f.lookedFor) != 0; time.Sleep(10 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("%d claims remembered after the claim's end, want none", len(f.lookedFor))
				}
				f.scan(ctx)
			}
			if starter.tries != tc.tries {
				t.Fatalf("started %d times, want %d", starter.tries, tc.tries)
			}
		})
	}
}

// A schedule whose start request carries an idempotency key starts what
// the key's strategy allows: a start the key refuses (FAIL) is recorded
// FAILED, saying why, and the next tick fires; RETURN_EXISTING records the
// key's workflow as the run. A conflict that is not the key's is the
// claim's own start, landed before (a crash, or two engines finishing one
// claim): the run is the claim's workflow, started once.
func TestIdempotentScheduleRecordsTheKeysOutcome(t *testing.T) {
	at := ms("2026-11-30T11:00:00Z")
	held := fmt.Errorf("start: %w", errors.Join(fault.Conflict(`a workflow with idempotency key "nightly" exists`), executor.ErrKeyHeld))
	tests := []struct {
		name      string
		strategy  string
		starter   *answering
		wantState string
		wantWf    string
		wantWhy   string
	}{
		{"refused by FAIL", conductor.IdempotencyFail, &answering{err: held}, "FAILED", "",
			`idempotencyStrategy FAIL: start: a workflow with idempotency key "nightly" exists`},
		{"refused, no strategy", "", &answering{err: held}, "FAILED", "", "idempotencyStrategy FAIL: "},
		{"RETURN_EXISTING", conductor.IdempotencyReturnExisting, &answering{id: "earlier"}, "EXECUTED", "earlier", ""},
		{"its own start landed", conductor.IdempotencyFail, &answering{err: fault.Conflict("workflow exists")}, "EXECUTED",
			workflowID("h", at), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			s, c := newTestStore(t)
			f := NewFirer(s, tt.starter, nil)
			if err := s.Save(ctx, &conductor.WorkflowSchedule{Name: "h", CronExpression: "0 0 * * * ?",
				StartWorkflowRequest: &conductor.StartWorkflowRequest{Name: "w", IdempotencyKey: "nightly",
					IdempotencyStrategy: tt.strategy}}, "alice", nil); err != nil {
				t.Fatal(err)
			}
			c.ms = at + 1
			if err := f.fire(ctx, c.ms, "h"); err != nil {
				t.Fatal(err)
			}
			st, err := s.load(ctx, "h")
			if err != nil {
				t.Fatal(err)
			}
			if st.Pending() || tt.starter.tries != 1 {
				t.Fatalf("pending %v after %d tries", st.Pending(), tt.starter.tries)
			}
			testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() error {
				xs, _, err := s.Executions(ctx, query.Search{Size: 10}, nil)
				if err != nil {
					return err
				}
				if len(xs) != 1 || xs[0].State != tt.wantState || xs[0].WorkflowID != tt.wantWf ||
					!strings.HasPrefix(xs[0].Reason, tt.wantWhy) || xs[0].ExecutionID != workflowID("h", at) {
					return fmt.Errorf("executions %+v", xs)
				}
				return nil
			})
			c.ms = ms("2026-11-30T12:00:01Z")
			if err := f.fire(ctx, c.ms, "h"); err != nil || tt.starter.tries != 2 {
				t.Fatalf("the next tick: %v, %d tries", err, tt.starter.tries)
			}
		})
	}
}

// A schedule's runs are of the workflow its request starts, an inline
// definition's name being the one a start takes: its executions name it,
// a search by it finds them and listing the schedules by it lists it.
func TestExecutionsNameTheWorkflowStarted(t *testing.T) {
	tests := []struct {
		name string
		req  conductor.StartWorkflowRequest
		want string
	}{
		{"registered", conductor.StartWorkflowRequest{Name: "nightly"}, "nightly"},
		{"inline", conductor.StartWorkflowRequest{WorkflowDef: &conductor.WorkflowDef{Name: "adhoc"}}, "adhoc"},
		{"inline named twice", conductor.StartWorkflowRequest{Name: "other", WorkflowDef: &conductor.WorkflowDef{Name: "adhoc"}}, "adhoc"},
		{"inline without a name", conductor.StartWorkflowRequest{Name: "nightly", WorkflowDef: &conductor.WorkflowDef{}}, "nightly"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			s, c := newTestStore(t)
			f := NewFirer(s, &started{}, nil)
			req := tt.req
			if err := s.Save(ctx, &conductor.WorkflowSchedule{Name: "h", CronExpression: "0 0 * * * ?",
				StartWorkflowRequest: &req}, "alice", nil); err != nil {
				t.Fatal(err)
			}
			c.ms = ms("2026-11-30T11:00:01Z")
			if err := f.fire(ctx, c.ms, "h"); err != nil {
				t.Fatal(err)
			}
			testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() error {
				xs, total, err := s.Executions(ctx, query.Search{Query: "workflowName = " + tt.want, Size: 10}, nil)
				if err != nil {
					return err
				}
				if total != 1 || xs[0].WorkflowName != tt.want || xs[0].State != "EXECUTED" {
					return fmt.Errorf("executions of %s: %+v", tt.want, xs)
				}
				return nil
			})
			list, err := s.List(ctx, tt.want)
			if err != nil || len(list) != 1 || list[0].Name != "h" {
				t.Fatalf("schedules starting %s: %v, %v", tt.want, list, err)
			}
		})
	}
}

// claimedTimes lists the fire times claimed in schedule name's log, in
// order, each as often as it was claimed.
func claimedTimes(t *testing.T, s *Store, name string) []int64 {
	t.Helper()
	recs, err := s.log.ReadSubject(context.Background(), Subject(name), 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []int64
	for _, r := range recs {
		for _, env := range r.Events {
			ev, err := schemas.Default.Decode(env)
			if err != nil {
				t.Fatal(err)
			}
			if f, ok := ev.(*schemas.ScheduleFired); ok {
				out = append(out, f.ScheduledTime)
			}
		}
	}
	return out
}

// A schedule that catches up runs the ticks an outage missed as fast as
// the firer starts them, up to catchupPerScan a scan, not one a scan: an
// hour's outage of an every-second schedule was 3,600 scans (12 minutes at
// 5 a second, while its on-time ticks waited behind them). Two engines
// catching up one schedule at once still claim each tick once.
func TestCatchUpRunsMissedTicksInFewScans(t *testing.T) {
	ctx := context.Background()
	const missed = 2*catchupPerScan + catchupPerScan/2
	every := &conductor.WorkflowSchedule{Name: "tick", CronExpression: "* * * * * ?", RunCatchupScheduleInstances: true,
		StartWorkflowRequest: &conductor.StartWorkflowRequest{Name: "w"}}
	want := func(from int64) []int64 {
		var ts []int64
		for i := range int64(missed) {
			ts = append(ts, from+1000*(i+1))
		}
		return ts
	}

	t.Run("one engine", func(t *testing.T) {
		s, c := newTestStore(t)
		starts := &started{}
		f := NewFirer(s, starts, nil)
		if err := s.Save(ctx, every, "alice", nil); err != nil {
			t.Fatal(err)
		}
		saved := c.ms
		c.ms += missed*1000 + 500
		for scan := 1; scan <= 3; scan++ {
			if err := f.fire(ctx, c.ms, "tick"); err != nil {
				t.Fatal(err)
			}
			if got, want := len(claimedTimes(t, s, "tick")), min(missed, scan*catchupPerScan); got != want {
				t.Fatalf("after %d scans %d ticks claimed, want %d", scan, got, want)
			}
		}
		if got := claimedTimes(t, s, "tick"); !slices.Equal(got, want(saved)) {
			t.Fatalf("claimed %v, want each missed second once, in order", got)
		}
		if len(starts.ids) != missed {
			t.Fatalf("%d runs started, want %d", len(starts.ids), missed)
		}
	})

	t.Run("two engines", func(t *testing.T) {
		a, c := newTestStore(t)
		b := New(a.log, testutil.OpenStore(t), nil, testutil.Logger(t))
		b.now = c.now
		if err := a.Save(ctx, every, "alice", nil); err != nil {
			t.Fatal(err)
		}
		saved := c.ms
		c.ms += missed*1000 + 500
		starts := &started{}
		var wg sync.WaitGroup
		errs := make(chan error, 2)
		for _, s := range []*Store{a, b} {
			f := NewFirer(s, starts, nil)
			wg.Go(func() {
				for range 4 * missed { // bounded: an engine stuck behind the other fails the test
					if err := f.fire(ctx, c.ms, "tick"); err != nil {
						errs <- err
						return
					}
					st, err := s.load(ctx, "tick")
					if err != nil {
						errs <- err
						return
					}
					if !st.Pending() && st.Due(c.ms) == 0 {
						return
					}
				}
				errs <- errors.New("never caught up")
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		if got := claimedTimes(t, a, "tick"); !slices.Equal(got, want(saved)) {
			t.Fatalf("claimed %v, want each missed second once, in order", got)
		}
		ids := map[string]bool{}
		for _, id := range starts.ids {
			ids[id] = true
		}
		for _, at := range want(saved) {
			if !ids[workflowID("tick", at)] {
				t.Fatalf("the run of %d was not started", at)
			}
		}
	})
}

// Schedules that catch up take turns with the others in a scan: a tick
// that came due on time is started after one tick of another schedule's
// backlog, not after a hundred of them (about a second at the firer's
// pace, in which the on-time run waited).
func TestCatchUpTakesTurnsWithOnTimeTicks(t *testing.T) {
	ctx := context.Background()
	s, c := newTestStore(t)
	starts := &started{}
	f := NewFirer(s, starts, nil)
	backlog := &conductor.WorkflowSchedule{Name: "backlog", CronExpression: "* * * * * ?", RunCatchupScheduleInstances: true,
		StartWorkflowRequest: &conductor.StartWorkflowRequest{Name: "w"}}
	if err := s.Save(ctx, backlog, "alice", nil); err != nil {
		t.Fatal(err)
	}
	c.ms += 3 * catchupPerScan * 1000
	onTime := &conductor.WorkflowSchedule{Name: "ontime", CronExpression: "0 * * * * ?",
		StartWorkflowRequest: &conductor.StartWorkflowRequest{Name: "w"}}
	if err := s.Save(ctx, onTime, "bob", nil); err != nil {
		t.Fatal(err)
	}
	next := NextAfter(onTime, c.ms)
	c.ms = next + 500
	f.scan(ctx)

	at := slices.IndexFunc(starts.ids, func(id string) bool { return strings.HasPrefix(id, workflowID("ontime", next)) })
	if at < 0 || at > 1 {
		t.Fatalf("the on-time tick was start %d of %d, want one of the first two", at, len(starts.ids))
	}
	if got := len(claimedTimes(t, s, "backlog")); got != catchupPerScan {
		t.Fatalf("the backlog claimed %d ticks in one scan, want %d", got, catchupPerScan)
	}
}
