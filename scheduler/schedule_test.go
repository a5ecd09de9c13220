package scheduler

import (
	"testing"
	"time"

	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
)

func ms(s string) int64 {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t.UnixMilli()
}

func TestNextAfter(t *testing.T) {
	tests := []struct {
		name string
		def  conductor.WorkflowSchedule
		from string
		want string // "" = never
	}{
		{"every 30 minutes", conductor.WorkflowSchedule{CronExpression: "0 */30 * ? * *"}, "2026-11-30T10:07:03Z", "2026-11-30T10:30:00Z"},
		{"seconds field", conductor.WorkflowSchedule{CronExpression: "*/5 * * * * ?"}, "2026-11-30T10:07:03Z", "2026-11-30T10:07:05Z"},
		{"strictly after", conductor.WorkflowSchedule{CronExpression: "*/5 * * * * ?"}, "2026-11-30T10:07:05Z", "2026-11-30T10:07:10Z"},
		{"zone", conductor.WorkflowSchedule{CronExpression: "0 0 9 * * ?", ZoneID: "America/New_York"}, "2026-11-30T10:00:00Z", "2026-11-30T14:00:00Z"},
		{"start time", conductor.WorkflowSchedule{CronExpression: "0 0 * * * ?", ScheduleStartTime: ms("2026-12-01T00:00:00Z")}, "2026-11-30T10:00:00Z", "2026-12-01T00:00:00Z"},
		{"end time", conductor.WorkflowSchedule{CronExpression: "0 0 * * * ?", ScheduleEndTime: ms("2026-11-30T10:30:00Z")}, "2026-11-30T10:00:00Z", ""},
	}
	for _, tt := range tests {
		got := NextAfter(&tt.def, ms(tt.from))
		want := int64(0)
		if tt.want != "" {
			want = ms(tt.want)
		}
		if got != want {
			t.Errorf("%s: NextAfter = %s, want %s", tt.name, time.UnixMilli(got).UTC(), tt.want)
		}
	}
}

func TestDueAndCatchUp(t *testing.T) {
	every5 := conductor.WorkflowSchedule{CronExpression: "*/5 * * * * ?", CreateTime: ms("2026-11-30T10:00:00Z")}
	now := ms("2026-11-30T10:00:17Z")
	s := &State{Def: every5}
	if got := s.Due(now); got != ms("2026-11-30T10:00:15Z") {
		t.Fatalf("without catch-up, due = %s; want the latest missed time", time.UnixMilli(got).UTC())
	}
	s.Def.RunCatchupScheduleInstances = true
	if got := s.Due(now); got != ms("2026-11-30T10:00:05Z") {
		t.Fatalf("with catch-up, due = %s; want the first missed time", time.UnixMilli(got).UTC())
	}
	s.LastFired = ms("2026-11-30T10:00:15Z")
	if got := s.Due(now); got != 0 {
		t.Fatalf("nothing is due after the last fire, got %s", time.UnixMilli(got).UTC())
	}
	s.Def.Paused = true
	s.LastFired = 0
	if s.Due(now) != 0 || s.NextFire() != 0 {
		t.Fatal("a paused schedule is due")
	}
}

func TestValidate(t *testing.T) {
	ok := conductor.WorkflowSchedule{Name: "s", CronExpression: "0 * * * * ?", StartWorkflowRequest: &conductor.StartWorkflowRequest{Name: "wf"}}
	if err := Validate(&ok); err != nil {
		t.Fatal(err)
	}
	for name, mod := range map[string]func(*conductor.WorkflowSchedule){
		"no name":      func(d *conductor.WorkflowSchedule) { d.Name = "" },
		"5 fields":     func(d *conductor.WorkflowSchedule) { d.CronExpression = "* * * * *" },
		"bad zone":     func(d *conductor.WorkflowSchedule) { d.ZoneID = "Mars/Olympus" },
		"no workflow":  func(d *conductor.WorkflowSchedule) { d.StartWorkflowRequest = nil },
		"ends earlier": func(d *conductor.WorkflowSchedule) { d.ScheduleStartTime, d.ScheduleEndTime = 10, 5 },
	} {
		d := ok
		mod(&d)
		if Validate(&d) == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// A schedule's runs start as whoever saved its definition last: someone
// allowed to edit another's schedule chooses what runs, so it runs with
// the editor's rights, not the creator's. Pausing changes nothing of it.
func TestScheduleRunsAsItsLastEditor(t *testing.T) {
	def := []byte(`{"name":"nightly","cronExpression":"0 0 0 * * ?","startWorkflowRequest":{"name":"w"}}`)
	var st *State
	var err error
	for _, ev := range []schemas.Event{
		&schemas.ScheduleSaved{Def: def, By: "alice", Time: 1},
		&schemas.SchedulePauseChanged{Paused: true, By: "carol", Time: 2},
	} {
		if st, err = Apply(st, ev); err != nil {
			t.Fatal(err)
		}
	}
	if st.Owner() != "alice" {
		t.Fatalf("owner %q after alice's save and carol's pause", st.Owner())
	}
	if st, err = Apply(st, &schemas.ScheduleSaved{Def: def, By: "bob", Time: 3}); err != nil {
		t.Fatal(err)
	}
	if st.Owner() != "bob" || st.Def.CreatedBy != "alice" || st.Def.UpdatedBy != "bob" {
		t.Fatalf("owner %q, created by %q, updated by %q", st.Owner(), st.Def.CreatedBy, st.Def.UpdatedBy)
	}
}
