// Package scheduler runs workflows on cron schedules (Orkes's
// /api/scheduler). A schedule is an aggregate on its own subject of the
// metadata stream; firing appends ScheduleFired with the subject's sequence
// as the expectation, so each fire time is claimed by exactly one engine
// however many are running, and the workflow it starts has an id derived
// from the schedule and the time, so a repeated start is a no-op.
package scheduler

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
	// A region's rules come with the binary: a host without a zoneinfo
	// database (a scratch or distroless image) would refuse every
	// schedule's region zoneId and leave the ones saved elsewhere unfired.
	_ "time/tzdata"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/internal/taglimit"
	"github.com/flowvault/flowvault/masking"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// Subject is the subject of schedule name's events.
func Subject(name string) string { return "fv.meta.schedule." + eventlog.Token(name) }

// State is a schedule: the fold of its events.
type State struct {
	Def          conductor.WorkflowSchedule `msgpack:"def"`
	Deleted      bool                       `msgpack:"deleted,omitempty"`
	LastFired    int64                      `msgpack:"last,omitempty"`     // latest claimed fire time
	LastClaimed  int64                      `msgpack:"lastat,omitempty"`   // when it was claimed (Unix ms)
	LastWorkflow string                     `msgpack:"lastwf,omitempty"`   // the workflow started for it
	Executed     bool                       `msgpack:"executed,omitempty"` // its outcome is recorded
	Fires        int                        `msgpack:"fires,omitempty"`    // claims in this life
	// Floor is the latest fire time a former life of the schedule (before
	// a delete) claimed. A re-created schedule never claims it or an
	// earlier time again: the workflow id of a fire time is derived from
	// the name and the time alone, so it would be the former run's.
	Floor int64  `msgpack:"floor,omitempty"`
	Seq   uint64 `msgpack:"seq"`
	// RunAs is who saved the definition last: its runs start as this
	// principal. Keeping the creator would let anyone allowed to edit the
	// schedule choose what runs with the creator's rights.
	RunAs string `msgpack:"runas,omitempty"`
}

// Owner is the principal the schedule's runs start as.
func (s *State) Owner() string {
	if s.RunAs != "" {
		return s.RunAs
	}
	return s.Def.CreatedBy
}

// Apply folds one event into s (nil before the first save).
func Apply(s *State, ev schemas.Event) (*State, error) {
	if saved, ok := ev.(*schemas.ScheduleSaved); ok {
		var def conductor.WorkflowSchedule
		if err := conductor.Unmarshal(saved.Def, &def); err != nil {
			return nil, fmt.Errorf("schedule definition: %w", err)
		}
		if s == nil || s.Deleted {
			// A new life: it counts from its creation like a fresh
			// schedule, and its former claims are neither pending nor
			// due again.
			def.CreateTime, def.CreatedBy = saved.Time, saved.By
			s = &State{Floor: s.floor()}
		} else {
			def.CreateTime, def.CreatedBy = s.Def.CreateTime, s.Def.CreatedBy
			def.Tags = s.Def.Tags
		}
		def.UpdatedTime, def.UpdatedBy = saved.Time, saved.By
		s.Def, s.Deleted, s.RunAs = def, false, saved.By
		return s, nil
	}
	if s == nil {
		return nil, fmt.Errorf("%s before schedule.saved", ev.EventType())
	}
	switch e := ev.(type) {
	case *schemas.ScheduleDeleted:
		s.Deleted = true
	case *schemas.SchedulePauseChanged:
		s.Def.Paused, s.Def.PausedReason = e.Paused, e.Reason
		s.Def.UpdatedTime, s.Def.UpdatedBy = e.Time, e.By
	case *schemas.ScheduleFired:
		s.LastFired, s.LastClaimed, s.LastWorkflow, s.Executed = e.ScheduledTime, e.Time, e.WorkflowID, false
		s.Fires++
	case *schemas.ScheduleExecuted:
		if e.ScheduledTime == s.LastFired {
			s.Executed = true
		}
	case *schemas.ScheduleTagsSet:
		s.Def.Tags = nil
		for _, t := range e.Tags {
			s.Def.Tags = append(s.Def.Tags, conductor.Tag{Key: t.Key, Value: t.Value})
		}
	default:
		return nil, fmt.Errorf("unexpected event %s", ev.EventType())
	}
	return s, nil
}

// floor is the latest fire time s or any life before it claimed.
func (s *State) floor() int64 {
	if s == nil {
		return 0
	}
	return max(s.Floor, s.LastFired)
}

// Pending reports whether the schedule's latest claim still awaits its
// outcome: a crash came between the claim and the start, or the start
// failed for a while.
func (s *State) Pending() bool {
	return !s.Deleted && s.LastFired != 0 && !s.Executed
}

// Validate checks a schedule request.
func Validate(def *conductor.WorkflowSchedule) error {
	_, err := validate(def)
	return err
}

// validate is Validate, returning the schedule's tags as taglimit.Check
// keeps them: its tags are held to what every holder's are.
func validate(def *conductor.WorkflowSchedule) ([]conductor.Tag, error) {
	ve := &fault.ValidationError{}
	tags := taglimit.Check(ve, "tags", def.Tags)
	switch {
	case def.Name == "":
		ve.Add("name", "name is required")
	case len(def.Name) > 256:
		ve.Add("name", "name is longer than 256 characters")
	case !validName(def.Name):
		// It is a path segment of every schedule endpoint.
		ve.Add("name", "%q: want letters, digits, _ and - only", def.Name)
	case def.Name == "tags":
		ve.Add("name", "tags is reserved: GET /api/scheduler/schedules/tags lists schedules by tag")
	}
	if _, err := parse(def); err != nil {
		ve.Add("cronExpression", "%v", err)
	} else if err := checkCron(def.CronExpression); err != nil {
		ve.Add("cronExpression", "cron expression %q: %v", def.CronExpression, err)
	}
	if _, err := loadZone(def.ZoneID); err != nil {
		ve.Add("zoneId", "%v", err)
	}
	switch r := def.StartWorkflowRequest; {
	case r == nil || (r.Name == "" && r.WorkflowDef == nil):
		ve.Add("startWorkflowRequest.name", "the workflow to start is required")
	case r.Name == "" && r.WorkflowDef.Name == "":
		// Access to start it is asked of this name.
		ve.Add("startWorkflowRequest.workflowDef.name", "an inline definition needs a name")
	}
	if r := def.StartWorkflowRequest; r != nil {
		if r.Priority < 0 || r.Priority > 99 {
			ve.Add("startWorkflowRequest.priority", "%d: want 0-99", r.Priority)
		}
		if !conductor.KnownIdempotencyStrategy(r.IdempotencyStrategy) {
			// Saved, every run would be recorded failed for it.
			ve.Add("startWorkflowRequest.idempotencyStrategy", "%q: %s", r.IdempotencyStrategy, conductor.WantIdempotencyStrategy)
		}
	}
	checkTimes(ve, def.ScheduleStartTime, def.ScheduleEndTime)
	if r := def.StartWorkflowRequest; r != nil {
		// A schedule is stored and shown as it was given, unsealed: data
		// that a workflow would seal must not ride in its input.
		if path := maskedKeyPath("startWorkflowRequest.input", r.Input); path != "" {
			ve.Add(path, "%s", "a schedule's input is stored in plain text, so it may not hold _secrets or _masked data; "+
				"store the value with PUT /api/secrets/{key} and reference it as ${workflow.secrets.NAME} in the workflow definition")
		}
	}
	return tags, ve.Err()
}

// checkTimes adds to ve what is wrong with a schedule's start and end
// times (0: none).
func checkTimes(ve *fault.ValidationError, start, end int64) {
	if start < 0 || start > maxScheduleTime {
		ve.Add("scheduleStartTime", "%d: want epoch milliseconds up to %d (9999-12-31), or 0 for none", start, int64(maxScheduleTime))
	}
	if end < 0 || end > maxScheduleTime {
		// Read as no end, a negative one would run on forever.
		ve.Add("scheduleEndTime", "%d: want epoch milliseconds up to %d (9999-12-31), or 0 for none", end, int64(maxScheduleTime))
	}
	if end > 0 && end <= start {
		ve.Add("scheduleEndTime", "ends before it starts")
	}
}

// maxScheduleTime is the last time (Unix ms) a schedule fires at or is
// bounded by: 9999-12-31T23:59:59.999Z, the last a four-digit year
// writes. Times past it overflow on the way to Unix ms.
const maxScheduleTime = 253402300799999

// checkFires refuses a schedule whose expression matches no time from now
// (or its start) on, as far as Next looks (cronSearchDays days its other
// fields allow): February 30th would be saved, never start anything and
// never say why. Its end is not asked about: a schedule that ran its
// course stops as it would have anyway.
func checkFires(def *conductor.WorkflowSchedule, now time.Time) error {
	tt, err := newTimetable(def)
	if err != nil {
		return err
	}
	from := max(now.UnixMilli(), def.ScheduleStartTime)
	if tt.spec.Next(time.UnixMilli(from).In(tt.loc)).IsZero() {
		ve := &fault.ValidationError{}
		ve.Add("cronExpression", "cron expression %q matches no time from %s on: it would never fire",
			def.CronExpression, time.UnixMilli(from).In(tt.loc).Format(time.RFC3339))
		return ve.Err()
	}
	return nil
}

// workflowName is the name of the workflow r starts: an inline
// definition's own, as the start takes it, else the request's.
func workflowName(r *conductor.StartWorkflowRequest) string {
	switch {
	case r == nil:
		return ""
	case r.WorkflowDef != nil && r.WorkflowDef.Name != "":
		return r.WorkflowDef.Name
	}
	return r.Name
}

func validName(name string) bool {
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

// loadZone reads a zone id as Java's ZoneId.of does: a region ("Europe/Berlin"),
// "Z", or an offset, alone ("+05:30", "-08", "+0530") or after UTC, GMT or
// UT ("UTC+01:00", "GMT+2"). Empty is UTC. "Local", which Go would read as
// each engine's own zone, is refused: engines in different zones would fire
// at different times.
func loadZone(id string) (*time.Location, error) {
	switch id {
	case "", "Z", "UTC", "GMT", "UT":
		return time.UTC, nil
	case "Local":
		return nil, fmt.Errorf("unknown time zone %q: name a region (Europe/Berlin) or an offset (+01:00)", id)
	}
	prefix := ""
	for _, p := range []string{"UTC", "GMT", "UT"} {
		if strings.HasPrefix(id, p+"+") || strings.HasPrefix(id, p+"-") {
			prefix = p
			break
		}
	}
	if rest := id[len(prefix):]; strings.HasPrefix(rest, "+") || strings.HasPrefix(rest, "-") {
		secs, err := parseOffset(rest)
		if err != nil {
			return nil, fmt.Errorf("time zone %q: %v", id, err)
		}
		return time.FixedZone(id, secs), nil
	}
	loc, err := time.LoadLocation(id)
	if err != nil {
		return nil, fmt.Errorf("unknown time zone %q", id)
	}
	return loc, nil
}

// parseOffset reads ±h, ±hh, ±hh:mm, ±hhmm or ±hh:mm:ss, at most 18 hours
// as Java allows.
func parseOffset(s string) (int, error) {
	sign := 1
	if s[0] == '-' {
		sign = -1
	}
	s = s[1:]
	var parts []string
	switch {
	case strings.Contains(s, ":"):
		parts = strings.Split(s, ":")
	case len(s) <= 2:
		parts = []string{s}
	case len(s) == 4:
		parts = []string{s[:2], s[2:]}
	case len(s) == 6:
		parts = []string{s[:2], s[2:4], s[4:]}
	default:
		return 0, fmt.Errorf("offset %q: want ±hh:mm", s)
	}
	if len(parts) > 3 {
		return 0, fmt.Errorf("offset %q: want ±hh:mm", s)
	}
	secs := 0
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || strings.Trim(p, "0123456789") != "" || p == "" || len(p) > 2 || (i > 0 && (len(p) != 2 || n > 59)) {
			return 0, fmt.Errorf("offset %q: want ±hh:mm", s)
		}
		secs += n * []int{3600, 60, 1}[i]
	}
	if secs > 18*3600 {
		return 0, fmt.Errorf("offset %q: at most 18 hours", s)
	}
	return sign * secs, nil
}

// maskedKeyPath returns the path of the first _secrets or _masked key in v
// (at any depth), or "". It names keys only, never a value.
func maskedKeyPath(path string, v any) string {
	switch x := v.(type) {
	case map[string]any:
		for _, k := range slices.Sorted(maps.Keys(x)) {
			if masking.IsMaskedKey(k) {
				return path + "." + k
			}
			if p := maskedKeyPath(path+"."+k, x[k]); p != "" {
				return p
			}
		}
	case []any:
		for i, e := range x {
			if p := maskedKeyPath(fmt.Sprintf("%s[%d]", path, i), e); p != "" {
				return p
			}
		}
	}
	return ""
}

func parse(def *conductor.WorkflowSchedule) (*cronSpec, error) {
	if def.CronExpression == "" {
		return nil, fmt.Errorf("cronExpression is required")
	}
	sched, err := parseCron(def.CronExpression)
	if err != nil {
		return nil, fmt.Errorf("cron expression %q: %v (want 6 fields, seconds first, e.g. \"0 */30 * ? * *\")", def.CronExpression, err)
	}
	return sched, nil
}

// timetable is a schedule's fire times: its cron expression and zone,
// parsed once, within its start and end.
type timetable struct {
	spec       *cronSpec
	loc        *time.Location
	start, end int64
}

func newTimetable(def *conductor.WorkflowSchedule) (*timetable, error) {
	spec, err := parse(def)
	if err != nil {
		return nil, err
	}
	loc, err := loadZone(def.ZoneID)
	if err != nil {
		return nil, err
	}
	return &timetable{spec: spec, loc: loc, start: def.ScheduleStartTime, end: def.ScheduleEndTime}, nil
}

// next returns the first fire time strictly after t (Unix ms), or 0.
// One past maxScheduleTime is none: its Unix ms may have wrapped (a
// schedule saved with a start near Long.MAX_VALUE before Validate
// bounded it), and a time not after t would be found again for ever.
func (tt *timetable) next(t int64) int64 {
	next := tt.spec.Next(time.UnixMilli(max(t, tt.start-1)).In(tt.loc))
	if next.IsZero() || next.After(time.UnixMilli(maxScheduleTime)) || (tt.end > 0 && next.UnixMilli() > tt.end) {
		return 0
	}
	return next.UnixMilli()
}

// latest returns the last fire time not after now, given first, a fire
// time not after now. It looks back from now in windows that double, so
// that the times missed by a long pause or outage (a month of an
// every-second schedule) cost a few dozen searches, not one each.
func (tt *timetable) latest(first, now int64) int64 {
	for span := int64(1000); ; span *= 2 {
		t := tt.next(max(now-span, first-1))
		if t == 0 || t > now {
			continue // none in this window: the first lies further back
		}
		for {
			after := tt.next(t)
			if after == 0 || after > now {
				return t
			}
			t = after
		}
	}
}

// NextAfter returns the first fire time strictly after t (Unix ms), or 0
// when the schedule never fires again.
func NextAfter(def *conductor.WorkflowSchedule, t int64) int64 {
	tt, err := newTimetable(def)
	if err != nil {
		return 0
	}
	return tt.next(t)
}

// Due returns the fire time a scan at now should claim, or 0: the next fire
// time after the last one, or, when missed runs are not caught up, the
// latest one not after now.
func (s *State) Due(now int64) int64 {
	if s.Deleted || s.Def.Paused {
		return 0
	}
	tt, err := newTimetable(&s.Def)
	if err != nil {
		return 0
	}
	next := tt.next(s.countFrom())
	if next == 0 || next > now {
		return 0
	}
	if s.Def.RunCatchupScheduleInstances {
		return next
	}
	return tt.latest(next, now)
}

// NextFire is the schedule's next fire time for the due index: the time a
// scan must look at it (0: never).
func (s *State) NextFire() int64 {
	if s.Deleted || s.Def.Paused {
		return 0
	}
	return NextAfter(&s.Def, s.countFrom())
}

// countFrom is the time after which the schedule's next fire time lies:
// its last claim, its (re)creation or its last edit or resume, and never
// at or before a former life's last claim (with clocks apart, a
// re-creation may seem earlier). The times an edited schedule's new
// expression would have fired before the edit, and the times a pause
// skipped, are not missed runs: catching up runs only those an outage
// missed.
func (s *State) countFrom() int64 {
	return max(s.LastFired, s.Def.CreateTime, s.Def.UpdatedTime, s.Floor)
}
