package scheduler

import (
	"encoding/json"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flowvault/flowvault/fault"
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

// Catching up runs the times an outage missed, not those before an edit
// or during a pause: an edited or resumed schedule counts from then.
func TestDueCountsFromEditAndResume(t *testing.T) {
	monthly := []byte(`{"name":"m","cronExpression":"0 0 0 1 * ?","startWorkflowRequest":{"name":"w"}}`)
	daily := []byte(`{"name":"m","cronExpression":"0 0 0 * * ?","startWorkflowRequest":{"name":"w"}}`)
	for _, catchUp := range []bool{false, true} {
		fold := func(events ...schemas.Event) *State {
			var st *State
			for _, ev := range events {
				var err error
				if st, err = Apply(st, ev); err != nil {
					t.Fatal(err)
				}
				st.Def.RunCatchupScheduleInstances = catchUp
			}
			return st
		}
		edited := fold(&schemas.ScheduleSaved{Def: monthly, Time: ms("2026-11-30T10:00:00Z")},
			&schemas.ScheduleFired{ScheduledTime: ms("2026-12-01T00:00:00Z"), Time: ms("2026-12-01T00:00:01Z")},
			&schemas.ScheduleExecuted{ScheduledTime: ms("2026-12-01T00:00:00Z")},
			&schemas.ScheduleSaved{Def: daily, Time: ms("2026-12-15T10:00:00Z")})
		if got := edited.Due(ms("2026-12-15T10:00:01Z")); got != 0 {
			t.Errorf("catch-up %v: edited to daily, due at once: %s", catchUp, time.UnixMilli(got).UTC())
		}
		if got := edited.Due(ms("2026-12-16T00:00:01Z")); got != ms("2026-12-16T00:00:00Z") {
			t.Errorf("catch-up %v: edited to daily, due %s; want the first midnight after the edit", catchUp, time.UnixMilli(got).UTC())
		}
		resumed := fold(&schemas.ScheduleSaved{Def: daily, Time: ms("2026-11-30T10:00:00Z")},
			&schemas.SchedulePauseChanged{Paused: true, Time: ms("2026-11-30T11:00:00Z")},
			&schemas.SchedulePauseChanged{Paused: false, Time: ms("2026-12-03T12:00:00Z")})
		if got := resumed.Due(ms("2026-12-03T12:00:01Z")); got != 0 {
			t.Errorf("catch-up %v: resumed, due at once: %s", catchUp, time.UnixMilli(got).UTC())
		}
	}
}

// Without catch-up, a schedule missed for long is due at its latest time,
// however many it missed (here a month of an every-second schedule).
func TestDueAfterLongOutage(t *testing.T) {
	for _, zone := range []string{"", "Europe/Berlin", "America/Santiago"} {
		s := &State{Def: conductor.WorkflowSchedule{CronExpression: "* * * * * ?", ZoneID: zone, CreateTime: ms("2026-08-30T10:00:00Z")}}
		if got, want := s.Due(ms("2026-09-30T10:00:00.5Z")), ms("2026-09-30T10:00:00Z"); got != want {
			t.Errorf("zone %q: due %s, want %s", zone, time.UnixMilli(got).UTC(), time.UnixMilli(want).UTC())
		}
	}
	weekly := &State{Def: conductor.WorkflowSchedule{CronExpression: "0 0 9 ? * MON", CreateTime: ms("2025-01-01T00:00:00Z")}}
	if got := weekly.Due(ms("2026-12-01T00:00:00Z")); got != ms("2026-11-30T09:00:00Z") {
		t.Errorf("weekly: due %s, want the last Monday", time.UnixMilli(got).UTC())
	}
}

// Zone ids as Java's ZoneId.of reads them: regions, Z, offsets alone or
// after UTC, GMT or UT.
func TestZones(t *testing.T) {
	tests := []struct {
		id     string
		offset int // seconds east of UTC on 2026-12-01
	}{
		{"", 0}, {"Z", 0}, {"UTC", 0}, {"GMT", 0},
		{"Europe/Berlin", 3600}, {"America/New_York", -5 * 3600},
		{"+05:30", 5*3600 + 1800}, {"-08", -8 * 3600}, {"+0530", 5*3600 + 1800}, {"+5", 5 * 3600},
		{"UTC+01:00", 3600}, {"GMT+2", 2 * 3600}, {"UT-05:00", -5 * 3600}, {"+01:02:03", 3723},
	}
	for _, tt := range tests {
		loc, err := loadZone(tt.id)
		if err != nil {
			t.Errorf("%q: %v", tt.id, err)
			continue
		}
		if _, off := time.UnixMilli(ms("2026-12-01T00:00:00Z")).In(loc).Zone(); off != tt.offset {
			t.Errorf("%q: offset %d s, want %d", tt.id, off, tt.offset)
		}
	}
	for _, id := range []string{"Local", "+25", "+05:3", "+05:60", "GMT+", "UTC+1:00:00:00", "Mars/Olympus", "+", "++1"} {
		if _, err := loadZone(id); err == nil {
			t.Errorf("%q: accepted", id)
		}
	}
	// An offset zone fires at its offset.
	def := conductor.WorkflowSchedule{CronExpression: "0 0 9 * * ?", ZoneID: "+05:30"}
	if got := NextAfter(&def, ms("2026-12-01T00:00:00Z")); got != ms("2026-12-01T03:30:00Z") {
		t.Errorf("09:00 at +05:30: %s", time.UnixMilli(got).UTC())
	}
}

func TestValidate(t *testing.T) {
	ok := conductor.WorkflowSchedule{Name: "s", CronExpression: "0 * * * * ?", StartWorkflowRequest: &conductor.StartWorkflowRequest{Name: "wf"}}
	if err := Validate(&ok); err != nil {
		t.Fatal(err)
	}
	for name, mod := range map[string]func(*conductor.WorkflowSchedule){
		"no name":         func(d *conductor.WorkflowSchedule) { d.Name = "" },
		"5 fields":        func(d *conductor.WorkflowSchedule) { d.CronExpression = "* * * * *" },
		"bad zone":        func(d *conductor.WorkflowSchedule) { d.ZoneID = "Mars/Olympus" },
		"no workflow":     func(d *conductor.WorkflowSchedule) { d.StartWorkflowRequest = nil },
		"ends earlier":    func(d *conductor.WorkflowSchedule) { d.ScheduleStartTime, d.ScheduleEndTime = 10, 5 },
		"negative end":    func(d *conductor.WorkflowSchedule) { d.ScheduleStartTime, d.ScheduleEndTime = -5, -1 },
		"negative start":  func(d *conductor.WorkflowSchedule) { d.ScheduleStartTime = -1 },
		"start past 9999": func(d *conductor.WorkflowSchedule) { d.ScheduleStartTime = 9223372036854775807 },
		"end past 9999":   func(d *conductor.WorkflowSchedule) { d.ScheduleEndTime = maxScheduleTime + 1 },
		"reserved":        func(d *conductor.WorkflowSchedule) { d.Name = "tags" },
		"slash":           func(d *conductor.WorkflowSchedule) { d.Name = "a/b" },
		"dot dot":         func(d *conductor.WorkflowSchedule) { d.Name = ".." },
		"space":           func(d *conductor.WorkflowSchedule) { d.Name = "with space" },
		"local zone":      func(d *conductor.WorkflowSchedule) { d.ZoneID = "Local" },
		"bad offset":      func(d *conductor.WorkflowSchedule) { d.ZoneID = "+25:00" },
		"priority 100": func(d *conductor.WorkflowSchedule) {
			d.StartWorkflowRequest = &conductor.StartWorkflowRequest{Name: "wf", Priority: 100}
		},
		"priority -1": func(d *conductor.WorkflowSchedule) {
			d.StartWorkflowRequest = &conductor.StartWorkflowRequest{Name: "wf", Priority: -1}
		},
		"unknown idempotencyStrategy": func(d *conductor.WorkflowSchedule) {
			d.StartWorkflowRequest = &conductor.StartWorkflowRequest{Name: "wf", IdempotencyKey: "k", IdempotencyStrategy: "RETURN_EXISTNG"}
		},
	} {
		d := ok
		mod(&d)
		if Validate(&d) == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// Every field a request gets wrong is named in one answer, as Conductor's
// validation lists all its violations: a client fixing one at a time
// should not be sent back for the next.
func TestValidateNamesEveryWrongField(t *testing.T) {
	def := conductor.WorkflowSchedule{Name: "s", CronExpression: "0 * * * * ?", ScheduleEndTime: -1,
		StartWorkflowRequest: &conductor.StartWorkflowRequest{Name: "wf", Priority: 100, IdempotencyKey: "k", IdempotencyStrategy: "RETURN_EXISTNG"}}
	var ve *fault.ValidationError
	if err := Validate(&def); !errors.As(err, &ve) {
		t.Fatalf("Validate: %v, want a validation error", err)
	}
	var got []string
	for _, f := range ve.Fields {
		got = append(got, f.Path)
	}
	want := []string{"startWorkflowRequest.priority", "startWorkflowRequest.idempotencyStrategy", "scheduleEndTime"}
	if !slices.Equal(got, want) {
		t.Fatalf("fields %q, want %q", got, want)
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

// A schedule is stored and shown unsealed: input holding data a workflow
// would seal is refused, wherever it sits, with a message that names the
// key and the way out but never the value.
func TestValidateRefusesSecretInput(t *testing.T) {
	tests := []struct {
		name  string
		input string
		path  string // "" = accepted
	}{
		{"top level", `{"_secrets":{"token":"tok-VALUE"}}`, "startWorkflowRequest.input._secrets"},
		{"nested", `{"a":{"b":{"_masked":"tok-VALUE"}}}`, "startWorkflowRequest.input.a.b._masked"},
		{"in a list", `{"calls":[{"x":1},{"_secrets":"tok-VALUE"}]}`, "startWorkflowRequest.input.calls[1]._secrets"},
		{"a reference is fine", `{"token":"${workflow.secrets.api_token}","secrets":{"x":"y"}}`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var input map[string]any
			if err := json.Unmarshal([]byte(tt.input), &input); err != nil {
				t.Fatal(err)
			}
			def := conductor.WorkflowSchedule{Name: "s", CronExpression: "0 * * * * ?",
				StartWorkflowRequest: &conductor.StartWorkflowRequest{Name: "wf", Input: input}}
			err := Validate(&def)
			if tt.path == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if !errors.Is(err, fault.ErrInvalid) {
				t.Fatalf("err = %v, want invalid", err)
			}
			msg := err.Error()
			for _, want := range []string{tt.path + ":", "${workflow.secrets.NAME}", "PUT /api/secrets/{key}"} {
				if !strings.Contains(msg, want) {
					t.Errorf("message %q lacks %q", msg, want)
				}
			}
			if strings.Contains(msg, "VALUE") {
				t.Errorf("message %q shows the value", msg)
			}
		})
	}
}

// A deleted and re-created schedule counts from its re-creation like a
// fresh one; its former claim is neither pending nor due again, even when
// the re-creation's clock reads earlier than that claim.
func TestRecreatedScheduleCountsFromRecreation(t *testing.T) {
	def := []byte(`{"name":"tick","cronExpression":"*/5 * * * * ?","runCatchupScheduleInstances":true,"startWorkflowRequest":{"name":"w"}}`)
	tests := []struct {
		name              string
		recreated         string
		now               string
		wantDue, wantNext string // "" = none
	}{
		{"before its first tick", "2026-11-30T10:00:31Z", "2026-11-30T10:00:33Z", "", "2026-11-30T10:00:35Z"},
		{"at its first tick", "2026-11-30T10:00:31Z", "2026-11-30T10:00:36Z", "2026-11-30T10:00:35Z", "2026-11-30T10:00:35Z"},
		{"clock behind the old claim", "2026-11-30T10:00:03Z", "2026-11-30T10:00:07Z", "", "2026-11-30T10:00:10Z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var st *State
			var err error
			for _, ev := range []schemas.Event{
				&schemas.ScheduleSaved{Def: def, By: "alice", Time: ms("2026-11-30T10:00:00Z")},
				&schemas.ScheduleFired{ScheduledTime: ms("2026-11-30T10:00:05Z"), WorkflowID: "old", Time: ms("2026-11-30T10:00:05Z")},
				&schemas.ScheduleDeleted{By: "alice", Time: ms("2026-11-30T10:00:06Z")},
				&schemas.ScheduleSaved{Def: def, By: "alice", Time: ms(tt.recreated)},
			} {
				if st, err = Apply(st, ev); err != nil {
					t.Fatal(err)
				}
			}
			if st.Pending() {
				t.Error("the former life's claim is pending")
			}
			at := func(s string) int64 {
				if s == "" {
					return 0
				}
				return ms(s)
			}
			if got := st.Due(ms(tt.now)); got != at(tt.wantDue) {
				t.Errorf("due = %s, want %q", time.UnixMilli(got).UTC(), tt.wantDue)
			}
			if got := st.NextFire(); got != at(tt.wantNext) {
				t.Errorf("next fire = %s, want %q", time.UnixMilli(got).UTC(), tt.wantNext)
			}
		})
	}
}

// An expression that matches no time (February 30th) is refused by
// nextFewSchedules as the save refuses it, not answered with no times.
func TestNextFewRefusesWhatNeverFires(t *testing.T) {
	for _, tt := range []struct {
		expr  string
		start int64
	}{
		{"0 0 0 30 2 *", 0},
		{"0 0 0 31 4 ?", ms("2100-01-01T00:00:00Z")},
	} {
		times, err := NextFew(tt.expr, tt.start, 0, 3)
		if !errors.Is(err, fault.ErrInvalid) || !strings.Contains(err.Error(), "it would never fire") {
			t.Errorf("%q: next few %v, %v; want refused as never firing", tt.expr, times, err)
		}
	}
}

// A tick exactly at a future start time fires, so it is among the next
// few.
func TestNextFewIncludesStartTime(t *testing.T) {
	start := ms("2100-01-01T00:00:00Z")
	got, err := NextFew("0 0 0 * * ?", start, 0, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0] != start || got[1] != start+24*3600*1000 {
		t.Fatalf("next few = %v, want %d and a day later", got, start)
	}
}

// nextFewSchedules refuses what saving a schedule refuses, naming the
// field as the save does, rather than listing times for it.
func TestNextFewRefusesWhatSavingRefuses(t *testing.T) {
	for _, tt := range []struct{ expr, want string }{
		{"0 1,,2 * * * *", `minute "1,,2": a value is missing`},
		{"0 *-5 * * * *", `minute "*-5": "*" is not a number`},
		{"0 0 25 * * *", `hour "25": 25 is not from 0 to 23`},
	} {
		save := Validate(&conductor.WorkflowSchedule{Name: "s", CronExpression: tt.expr,
			StartWorkflowRequest: &conductor.StartWorkflowRequest{Name: "w"}})
		times, err := NextFew(tt.expr, 0, 0, 3)
		if save == nil || err == nil || !errors.Is(err, fault.ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: next few %v, %v; save %v; want both refused saying %s", tt.expr, times, err, save, tt.want)
		}
	}
}

// nextFewSchedules answers the fire times from now, or from a start ahead,
// up to the end and the limit (none for a limit of 0, as Orkes), and
// refuses the start and end times a save refuses, naming the parameter:
// a start of math.MinInt64 answered no times at all, as the start before
// it wrapped to the last instant there is.
func TestNextFewExtremeInputs(t *testing.T) {
	day := int64(24 * 3600 * 1000)
	start := ms("2100-01-01T00:00:00Z")
	for _, tt := range []struct {
		name       string
		start, end int64
		limit      int
		want       []int64 // nil: any limit times from now
		refused    string
	}{
		{name: "no start or end", limit: 3},
		{name: "start math.MinInt64", start: math.MinInt64, limit: 3, refused: "scheduleStartTime"},
		{name: "start negative", start: -1, limit: 3, refused: "scheduleStartTime"},
		{name: "start math.MaxInt64", start: math.MaxInt64, limit: 3, refused: "scheduleStartTime"},
		{name: "start past 9999", start: maxScheduleTime + 1, limit: 3, refused: "scheduleStartTime"},
		{name: "start at the last instant", start: maxScheduleTime, limit: 3, want: []int64{}},
		{name: "end math.MinInt64", end: math.MinInt64, limit: 3, refused: "scheduleEndTime"},
		{name: "end math.MaxInt64", end: math.MaxInt64, limit: 3, refused: "scheduleEndTime"},
		{name: "end before start", start: start + day, end: start, limit: 3, refused: "scheduleEndTime"},
		{name: "end at start", start: start, end: start, limit: 3, refused: "scheduleEndTime"},
		{name: "end bounds", start: start, end: start + day, limit: 3, want: []int64{start, start + day}},
		{name: "end passed", end: 1, limit: 3, want: []int64{}},
		{name: "limit 0", start: start, limit: 0, want: []int64{}},
		{name: "limit negative", start: start, limit: -1, refused: "limit"},
		{name: "limit huge", start: start, limit: math.MaxInt32,
			want: []int64{start, start + day, start + 2*day, start + 3*day, start + 4*day}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			before := time.Now().UnixMilli()
			got, err := NextFew("0 0 0 * * ?", tt.start, tt.end, tt.limit)
			if tt.refused != "" {
				var ve *fault.ValidationError
				if !errors.As(err, &ve) || len(ve.Fields) != 1 || ve.Fields[0].Path != tt.refused {
					t.Fatalf("next few = %v, %v; want refused naming %s", got, err, tt.refused)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.want == nil {
				if len(got) != tt.limit || got[0] <= before || got[1]-got[0] != day {
					t.Fatalf("next few = %v, want %d days from now", got, tt.limit)
				}
				return
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("next few = %v, want %v", got, tt.want)
			}
		})
	}
}
