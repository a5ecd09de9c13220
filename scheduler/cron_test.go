package scheduler

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/flowvault/flowvault/schemas/conductor"
)

// Expressions read as Orkes's scheduler (Spring's CronExpression) reads
// them. 2026-11-30 is a Monday.
func TestCronDialect(t *testing.T) {
	tests := []struct {
		expr, from, want string // want "": never
	}{
		{"0 0 9 ? * 7", "2026-11-30T10:00:00Z", "2026-12-06T09:00:00Z"}, // 7 is Sunday
		{"0 0 9 ? * 0", "2026-11-30T10:00:00Z", "2026-12-06T09:00:00Z"}, // so is 0
		{"0 0 9 ? * 1", "2026-11-30T10:00:00Z", "2026-12-07T09:00:00Z"}, // 1 is Monday
		{"0 0 9 ? * 5-7", "2026-11-30T10:00:00Z", "2026-12-04T09:00:00Z"},
		{"0 0 9 ? * MON-SUN", "2026-11-30T10:00:00Z", "2026-12-01T09:00:00Z"},
		{"0 0 9 ? * sat,sun", "2026-11-30T10:00:00Z", "2026-12-05T09:00:00Z"},
		// Sunday starting a range is 0, not 7: a week from Sunday.
		{"0 0 9 ? * SUN-THU", "2026-12-03T10:00:00Z", "2026-12-06T09:00:00Z"},
		{"0 0 9 ? * SUN-SAT", "2026-12-04T10:00:00Z", "2026-12-05T09:00:00Z"},
		{"0 0 9 ? * 7-1", "2026-12-01T10:00:00Z", "2026-12-06T09:00:00Z"},
		{"0 0 9 ? * SUN-TUE/2", "2026-11-30T10:00:00Z", "2026-12-01T09:00:00Z"}, // Sunday and Tuesday
		// Sunday alone, as it fired before (Spring: every day).
		{"0 0 9 ? * SUN-SUN", "2026-12-04T10:00:00Z", "2026-12-06T09:00:00Z"},
		{"0 0 9 ? * */2", "2026-11-30T10:00:00Z", "2026-12-02T09:00:00Z"}, // from Monday: Mon, Wed, Fri, Sun
		{"0 0 9 L * ?", "2026-11-30T10:00:00Z", "2026-12-31T09:00:00Z"},
		{"0 0 9 L-1 * ?", "2026-11-30T10:00:00Z", "2026-12-30T09:00:00Z"},
		{"0 0 9 LW * ?", "2026-12-31T10:00:00Z", "2027-01-29T09:00:00Z"},  // January 31st is a Sunday
		{"0 0 9 15W * ?", "2026-11-01T00:00:00Z", "2026-11-16T09:00:00Z"}, // the 15th is a Sunday
		{"0 0 9 1W * ?", "2026-07-15T00:00:00Z", "2026-08-03T09:00:00Z"},  // August 1st is a Saturday: not July 31st
		{"0 0 9 ? * FRI#2", "2026-12-01T00:00:00Z", "2026-12-11T09:00:00Z"},
		{"0 0 9 ? * 5L", "2026-12-01T00:00:00Z", "2026-12-25T09:00:00Z"},
		{"0 0 9 ? * FRIL", "2026-12-01T00:00:00Z", "2026-12-25T09:00:00Z"},
		{"0 0 9 1-7 * MON", "2026-12-01T10:00:00Z", "2026-12-07T09:00:00Z"}, // both day fields: the first Monday
		{"0 0 9 1,L * ?", "2026-12-01T10:00:00Z", "2026-12-31T09:00:00Z"},
		{"*/20 * * * * *", "2026-12-01T10:00:05Z", "2026-12-01T10:00:20Z"},
		{"@weekly", "2026-11-30T10:00:00Z", "2026-12-06T00:00:00Z"},
		{"@HOURLY", "2026-11-30T10:00:00Z", "2026-11-30T11:00:00Z"},
		{"0 0 9 30 2 ?", "2026-11-30T10:00:00Z", ""},
		// A step past every value covers the start alone: one past the
		// largest int wrapped negative and the parse panicked.
		{"0 0 9 2/9223372036854775807 * ?", "2026-11-30T10:00:00Z", "2026-12-02T09:00:00Z"},
		{"0 0 9 ? * 2/9223372036854775807", "2026-11-30T10:00:00Z", "2026-12-01T09:00:00Z"},
		{"0 0 9 ? * */9223372036854775807", "2026-11-30T10:00:00Z", "2026-12-07T09:00:00Z"},
		{"5/9223372036854775807 0 9 * * ?", "2026-11-30T10:00:00Z", "2026-12-01T09:00:05Z"},
	}
	for _, tt := range tests {
		def := conductor.WorkflowSchedule{CronExpression: tt.expr}
		if err := Validate(&conductor.WorkflowSchedule{Name: "s", CronExpression: tt.expr,
			StartWorkflowRequest: &conductor.StartWorkflowRequest{Name: "w"}}); err != nil {
			t.Errorf("%q: %v", tt.expr, err)
			continue
		}
		want := int64(0)
		if tt.want != "" {
			want = ms(tt.want)
		}
		if got := NextAfter(&def, ms(tt.from)); got != want {
			t.Errorf("%q after %s: %s, want %s", tt.expr, tt.from, time.UnixMilli(got).UTC().Format(time.RFC3339), tt.want)
		}
	}
}

func TestCronDialectRefuses(t *testing.T) {
	for _, expr := range []string{
		"0 0 9 * *",        // five fields
		"0 0 9 * * ? 2027", // a year field
		"0 0 9 ? * 8",      // no eighth day
		"0 0 9 ? * FRI#6",  // no sixth Friday
		"0 0 9 32W * ?",    // no 32nd
		"0 0 9 L-31 * ?",   // no month that long
		"0 0 9 ? * 5-3",    // backwards
		"0 0 9 ? * */0",    // no step
		"0 0 9 ? * FUNDAY", // no such day
		"@every 5m",        // not an Orkes macro
		"0 0 25 * * ?",     // no 25th hour
		"0 0 9 * 13 ?",     // no 13th month
		"? ? ? * * ?",      // ? outside the day fields
		"0 0 9 * ? *",      // nor in the month
	} {
		err := Validate(&conductor.WorkflowSchedule{Name: "s", CronExpression: expr,
			StartWorkflowRequest: &conductor.StartWorkflowRequest{Name: "w"}})
		if err == nil {
			t.Errorf("%q: accepted", expr)
		}
	}
}

// A refused expression is told in its own terms: the field, its text and
// what is wrong with it, never robfig/cron's internals; and what
// robfig/cron would let through (an empty value, the end of "*-5") is
// refused too.
func TestCronErrorsNameTheField(t *testing.T) {
	tests := []struct{ expr, want string }{
		{"-1 * * * * *", `second "-1": -1 is not from 0 to 59`},
		{"60 * * * * *", `second "60": 60 is not from 0 to 59`},
		{"0 -5 * * * *", `minute "-5": -5 is not from 0 to 59`},
		{"0 0 24 * * *", `hour "24": 24 is not from 0 to 23`},
		{"0 0 1-x * * *", `hour "1-X": "X" is not a number`},
		{"0 0 9 * 0 *", `month "0": 0 is not from 1 to 12`},
		{"0 0 9 * DEC-JAN *", `month "DEC-JAN": DEC-JAN: range ends before it starts`},
		{"*/0 * * * * *", `second "*/0": */0: step "0" is not a positive number`},
		{"1,,2 * * * * *", `second "1,,2": a value is missing`},
		{"0 *-5 * * * *", `minute "*-5": "*" is not a number`},
	}
	for _, tt := range tests {
		err := Validate(&conductor.WorkflowSchedule{Name: "s", CronExpression: tt.expr,
			StartWorkflowRequest: &conductor.StartWorkflowRequest{Name: "w"}})
		if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "strconv") {
			t.Errorf("%q: %v; want it to say %s", tt.expr, err, tt.want)
		}
	}
	// What robfig/cron reads as the names of months still reads.
	if err := Validate(&conductor.WorkflowSchedule{Name: "s", CronExpression: "0 0 9 1 jan-dec/3 ?",
		StartWorkflowRequest: &conductor.StartWorkflowRequest{Name: "w"}}); err != nil {
		t.Errorf("months by name: %v", err)
	}
	// A schedule saved before with what is refused now fires as it did.
	stored := &conductor.WorkflowSchedule{CronExpression: "0 1,,2 * * * *"}
	if got, want := NextAfter(stored, ms("2026-11-30T10:01:30Z")), ms("2026-11-30T10:02:00Z"); got != want {
		t.Errorf("stored %q: next %d, want %d", stored.CronExpression, got, want)
	}
}

// A time of day that a daylight saving change skips fires at no such time,
// and the search steps over the short day, also where the change skips
// midnight itself.
func TestCronAcrossClockChange(t *testing.T) {
	tests := []struct {
		expr, zone, from, want string
	}{
		// 2027-03-28, a Sunday, has no 02:30 in Berlin.
		{"0 30 2 ? * SUN", "Europe/Berlin", "2027-03-27T00:00:00Z", "2027-04-04T00:30:00Z"},
		// In Santiago, 2026-09-06 begins at 01:00: its midnight does not exist.
		{"* * * ? * MON", "America/Santiago", "2026-09-01T03:59:59Z", "2026-09-07T03:00:00Z"},
		{"* * * ? * SUN", "America/Santiago", "2026-09-01T03:59:59Z", "2026-09-06T04:00:00Z"},
		{"* * * 7 * ?", "America/Santiago", "2026-09-01T03:59:59Z", "2026-09-07T03:00:00Z"},
		{"0 0 12 ? * MON", "America/Havana", "2027-03-09T00:00:00Z", "2027-03-15T16:00:00Z"},
	}
	for _, tt := range tests {
		def := conductor.WorkflowSchedule{CronExpression: tt.expr, ZoneID: tt.zone}
		if got := NextAfter(&def, ms(tt.from)); got != ms(tt.want) {
			t.Errorf("%q in %s after %s: %s, want %s", tt.expr, tt.zone, tt.from, time.UnixMilli(got).UTC().Format(time.RFC3339), tt.want)
		}
	}
}

// fireTimes lists the first len(want) fire times of expr in zone after
// from, as RFC 3339 UTC ("never" past the last).
func fireTimes(expr, zone, from string, n int) []string {
	def := conductor.WorkflowSchedule{CronExpression: expr, ZoneID: zone}
	var out []string
	at := ms(from)
	for range n {
		if at = NextAfter(&def, at); at == 0 {
			return append(out, "never")
		}
		out = append(out, time.UnixMilli(at).UTC().Format(time.RFC3339))
	}
	return out
}

// Where a clock change repeats an hour, fixed times of day fire once, at
// their first occurrence, while expressions with a *, a step or a range in
// a time field fire at every instant that matches, through both passes, as
// Spring's CronExpression does. America/New_York falls back at 06:00Z on
// 2026-11-01 (02:00 EDT becomes 01:00 EST), Europe/Berlin at 01:00Z on
// 2026-10-25, Australia/Lord_Howe by half an hour at 15:00Z on 2027-04-03.
func TestCronFallBackFiresOncePerWallClock(t *testing.T) {
	tests := []struct {
		name, expr, zone, from string
		want                   []string
	}{
		{"a daily time", "0 30 1 * * ?", "America/New_York", "2026-11-01T04:00:00Z",
			[]string{"2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"}},
		{"a list of times", "0 0,30 1 * * ?", "America/New_York", "2026-11-01T04:00:00Z",
			[]string{"2026-11-01T05:00:00Z", "2026-11-01T05:30:00Z", "2026-11-02T06:00:00Z"}},
		{"a weekly time", "0 15 1 ? * SUN", "America/New_York", "2026-11-01T04:00:00Z",
			[]string{"2026-11-01T05:15:00Z", "2026-11-08T06:15:00Z"}},
		{"searched from inside the repeat", "0 45 1 * * ?", "America/New_York", "2026-11-01T06:10:00Z",
			[]string{"2026-11-02T06:45:00Z"}},
		{"the last second of the repeat", "59 59 1 * * ?", "America/New_York", "2026-11-01T04:00:00Z",
			[]string{"2026-11-01T05:59:59Z", "2026-11-02T06:59:59Z"}},
		{"Berlin", "0 0 2 * * ?", "Europe/Berlin", "2026-10-24T23:00:00Z",
			[]string{"2026-10-25T00:00:00Z", "2026-10-26T01:00:00Z"}},
		{"a half-hour change", "0 45 1 * * ?", "Australia/Lord_Howe", "2027-04-03T13:00:00Z",
			[]string{"2027-04-03T14:45:00Z", "2027-04-04T15:15:00Z"}},
		{"every 15 minutes", "0 */15 * * * ?", "America/New_York", "2026-11-01T05:20:00Z",
			[]string{"2026-11-01T05:30:00Z", "2026-11-01T05:45:00Z", "2026-11-01T06:00:00Z", "2026-11-01T06:15:00Z",
				"2026-11-01T06:30:00Z", "2026-11-01T06:45:00Z", "2026-11-01T07:00:00Z"}},
		{"hourly", "@hourly", "America/New_York", "2026-11-01T04:30:00Z",
			[]string{"2026-11-01T05:00:00Z", "2026-11-01T06:00:00Z", "2026-11-01T07:00:00Z"}},
		{"every 2 hours", "0 0 */2 * * ?", "Europe/Berlin", "2026-10-24T23:30:00Z",
			[]string{"2026-10-25T00:00:00Z", "2026-10-25T01:00:00Z", "2026-10-25T03:00:00Z"}},
		{"every 15 minutes of one hour", "0 */15 1 * * ?", "America/New_York", "2026-11-01T05:40:00Z",
			[]string{"2026-11-01T05:45:00Z", "2026-11-01T06:00:00Z", "2026-11-01T06:15:00Z", "2026-11-01T06:30:00Z",
				"2026-11-01T06:45:00Z", "2026-11-02T06:00:00Z"}},
		{"a skipped time stays skipped", "0 30 2 * * ?", "America/New_York", "2026-03-08T05:00:00Z",
			[]string{"2026-03-09T06:30:00Z"}},
		// Pacific/Chatham moves by an hour at a quarter to the hour: back
		// at 14:00Z on 2026-04-04 (03:45 +13:45 becomes 02:45 +12:45),
		// forward at 14:00Z on 2026-09-26 (02:45 +12:45 becomes 03:45
		// +13:45).
		{"a step of hours past a change at a quarter to", "0 45 */3 * * ?", "Pacific/Chatham", "2026-04-04T10:00:00Z",
			[]string{"2026-04-04T11:00:00Z", "2026-04-04T15:00:00Z", "2026-04-04T18:00:00Z"}},
		{"the repeated part of an hour", "0 * 3 * * ?", "Pacific/Chatham", "2026-04-04T13:58:00Z",
			[]string{"2026-04-04T13:59:00Z", "2026-04-04T14:15:00Z", "2026-04-04T14:16:00Z"}},
		{"the part of an hour a change at a quarter to leaves", "0 * 3 * * ?", "Pacific/Chatham", "2026-09-26T12:00:00Z",
			[]string{"2026-09-26T14:00:00Z", "2026-09-26T14:01:00Z", "2026-09-26T14:02:00Z"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := fireTimes(tt.expr, tt.zone, tt.from, len(tt.want)); !slices.Equal(got, tt.want) {
				t.Errorf("%q in %s after %s:\n got %v\nwant %v", tt.expr, tt.zone, tt.from, got, tt.want)
			}
		})
	}
}

// Next agrees, second by second, with a search that knows nothing of
// robfig/cron: around every clock change of 2026 and 2027 in zones that
// change by an hour, by half an hour (Australia/Lord_Howe), at midnight
// (America/Santiago), or by two hours (Antarctica/Troll), every instant
// whose wall-clock time the expression lists fires, but a fixed time of
// day fires only at its first occurrence.
func TestCronMatchesASecondBySecondSearch(t *testing.T) {
	zones := []string{"Australia/Lord_Howe", "America/New_York", "Europe/Berlin", "America/Santiago", "Antarctica/Troll", "Pacific/Chatham"}
	exprs := []string{"0 0 2 * * ?", "0 30 1 * * ?", "0 0 3 * * ?", "0 45 1 * * ?", "0 59 1 * * ?", "0 0 0 * * ?",
		"0 0,30 * * * ?", "0 */20 2 * * ?", "0 0 * * * ?", "30 */7 * * * ?", "0 15 2 ? * SUN", "0 0 2-3 * * ?"}
	for _, zone := range zones {
		loc, err := time.LoadLocation(zone)
		if err != nil {
			t.Fatal(err)
		}
		for change := range clockChanges(loc, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2028, 1, 1, 0, 0, 0, 0, time.UTC)) {
			from, to := change.Add(-20*time.Hour), change.Add(28*time.Hour)
			for _, expr := range exprs {
				spec, err := parseCron(expr)
				if err != nil {
					t.Fatal(err)
				}
				want := searchSeconds(spec, from.In(loc), to)
				var got []time.Time
				for n := spec.Next(from.In(loc)); !n.IsZero() && n.Before(to); n = spec.Next(n) {
					got = append(got, n)
				}
				if !slices.EqualFunc(got, want, time.Time.Equal) {
					t.Errorf("%q in %s around the change at %s:\n got %v\nwant %v", expr, zone, change.UTC().Format(time.RFC3339), utc(got), utc(want))
				}
			}
		}
	}
}

// An expression that never matches is found never to in a zone whose
// clock moves by half an hour, twice a year for ever.
func TestCronNeverInAHalfHourZone(t *testing.T) {
	t.Parallel()
	for _, expr := range []string{"0 0 0 30 2 ?", "0 0 3 31 4 ?"} {
		if got := fireTimes(expr, "Australia/Lord_Howe", "2026-12-01T00:00:00Z", 1); !slices.Equal(got, []string{"never"}) {
			t.Errorf("%q: %v, want never", expr, got)
		}
	}
}

// clockChanges yields the instants in [from, to) at which loc's offset
// changes.
func clockChanges(loc *time.Location, from, to time.Time) func(func(time.Time) bool) {
	return func(yield func(time.Time) bool) {
		for t := from.In(loc); t.Before(to); {
			_, end := t.ZoneBounds()
			if end.IsZero() || !end.Before(to) {
				return
			}
			if !yield(end) {
				return
			}
			t = end
		}
	}
}

// firstMatch reports whether wall-clock time w matches spec, whose fields
// are bits, and is the first time its wall clock reads so where spec fires
// at a fixed time of day (seen holds those read so far).
func firstMatch(spec *cronSpec, bits *cron.SpecSchedule, w time.Time, seen map[string]bool) bool {
	if !has(bits.Second, w.Second()) || !has(bits.Minute, w.Minute()) || !has(bits.Hour, w.Hour()) ||
		!has(bits.Month, int(w.Month())) || !spec.dom.matches(w) || !spec.dow.matches(w) {
		return false
	}
	wall := w.Format(time.DateTime)
	if spec.wallClock && seen[wall] {
		return false
	}
	seen[wall] = true
	return true
}

// searchSeconds lists the instants after from and before to that spec
// fires at, looking at each second's wall-clock time.
func searchSeconds(spec *cronSpec, from, to time.Time) []time.Time {
	bits := spec.times.(*cron.SpecSchedule)
	seen := map[string]bool{}
	var out []time.Time
	for x := from.Add(time.Second); x.Before(to); x = x.Add(time.Second) {
		if !firstMatch(spec, bits, x.In(from.Location()), seen) {
			continue
		}
		out = append(out, x)
	}
	return out
}

func utc(ts []time.Time) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.UTC().Format(time.RFC3339)
	}
	return out
}

// nW fires as Spring's CronExpression fires it: not in a month that has no
// day n, nor when day n is a Sunday and the month's last day (the Monday
// after is in the next month). Each expectation is what Spring returns.
// 2026-05-31 and 2027-02-28 are Sundays, 2026-01-31 a Saturday,
// 2026-02-01 a Sunday.
func TestCronNearestWeekdayAsSpring(t *testing.T) {
	tests := []struct {
		expr, from string
		want       []string
	}{
		{"0 0 9 31W * ?", "2026-04-01T00:00:00Z", // April, May and June: none
			[]string{"2026-07-31T09:00:00Z", "2026-08-31T09:00:00Z", "2026-10-30T09:00:00Z"}},
		{"0 0 9 30W * ?", "2026-02-01T00:00:00Z", []string{"2026-03-30T09:00:00Z", "2026-04-30T09:00:00Z"}},
		{"0 0 9 29W * ?", "2026-02-01T00:00:00Z", []string{"2026-03-30T09:00:00Z"}},
		{"0 0 9 28W * ?", "2027-02-01T00:00:00Z", []string{"2027-03-29T09:00:00Z", "2027-04-28T09:00:00Z"}},
		{"0 0 9 31W,15 * ?", "2026-04-16T00:00:00Z", []string{"2026-05-15T09:00:00Z", "2026-06-15T09:00:00Z"}},
		{"0 0 9 31W * ?", "2026-01-01T00:00:00Z", []string{"2026-01-30T09:00:00Z"}}, // a Saturday: the Friday before
		{"0 0 9 1W * ?", "2026-01-15T00:00:00Z", []string{"2026-02-02T09:00:00Z"}},  // a Sunday: the Monday after
	}
	for _, tt := range tests {
		t.Run(tt.expr+" after "+tt.from, func(t *testing.T) {
			if got := fireTimes(tt.expr, "UTC", tt.from, len(tt.want)); !slices.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}
