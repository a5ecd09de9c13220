package scheduler

import (
	"fmt"
	"testing"
	"time"

	"github.com/robfig/cron/v3"
)

// zoneCronExprs hit the minutes clock changes are made at: midnight, the
// small hours, every hour and quarter, and a weekly time.
var zoneCronExprs = []string{"0 0 0 * * *", "0 30 1 * * *", "0 0 * * * *", "0 */15 * * * *", "0 0 2 * * SUN"}

// Next agrees with a minute-by-minute search of the wall clock (fixed
// times of day at their first occurrence only) around every clock change
// of years in which zones' rules, as the Go toolchain ships them, did
// something odd: from each hour of the two days around the change, from
// just before, at and after it, and from each time it fires. Every search
// ends: its loops count days and months, not time, so one that stops
// moving answers "never" here and fails, where it used to spin for ever.
func TestCronThroughHistoricClockChanges(t *testing.T) {
	t.Parallel()
	tests := []struct {
		zone     string
		from, to int      // years, inclusive
		exprs    []string // besides zoneCronExprs
	}{
		// Forward at 00:01, back from 00:01 to 23:01 the day before.
		{"America/St_Johns", 2009, 2011, nil},
		// Back from 01:00 to 00:00: midnight twice, on Saturdays in Gaza
		// and on Fridays in Amman.
		{"Asia/Gaza", 2016, 2020, []string{"0 0 0 ? * SAT", "0 30 0 ? * SAT"}},
		{"Asia/Amman", 2014, 2014, []string{"0 0 0 ? * FRI"}},
		// August 1st's midnight skipped; and June 1st's.
		{"Africa/Cairo", 2014, 2014, []string{"0 0 0 * 7 *", "0 0 0 1 7 ?", "0 0 * * 7 *"}},
		{"Africa/Casablanca", 2008, 2008, []string{"0 0 0 * 5 *"}},
		{"Australia/Lord_Howe", 2026, 2026, nil},                // by half an hour
		{"Pacific/Chatham", 2026, 2026, nil},                    // at a quarter to the hour
		{"Asia/Kathmandu", 1985, 1986, nil},                     // +05:30 to +05:45, at the start of 1986
		{"Pacific/Apia", 2011, 2011, []string{"0 0 12 30 * ?"}}, // December 30th skipped
		{"Africa/Casablanca", 2019, 2020, nil},                  // back and forth around Ramadan
		{"America/Santiago", 2018, 2019, nil},                   // midnight skipped, 23:00 repeated
		{"Asia/Tehran", 2021, 2022, nil},                        // at midnight, until 2022
		{"Australia/Adelaide", 2026, 2026, nil},                 // +09:30 and +10:30
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/%d-%d", tt.zone, tt.from, tt.to), func(t *testing.T) {
			loc, err := time.LoadLocation(tt.zone)
			if err != nil {
				t.Fatal(err)
			}
			changes := 0
			from, to := time.Date(tt.from, 1, 1, 0, 0, 0, 0, loc), time.Date(tt.to+1, 1, 1, 0, 0, 0, 0, loc)
			for change := range clockChanges(loc, from, to) {
				changes++
				for _, expr := range append(zoneCronExprs, tt.exprs...) {
					checkAroundChange(t, expr, loc, change)
				}
			}
			if changes == 0 {
				t.Fatalf("no clock change from %d to %d", tt.from, tt.to)
			}
		})
	}
}

// checkAroundChange compares Next with minuteSearch from each hour of the
// 30 before and after change, from the change's second and those either
// side of it, and from each fire time in between.
func checkAroundChange(t *testing.T, expr string, loc *time.Location, change time.Time) {
	t.Helper()
	spec, err := parseCron(expr)
	if err != nil {
		t.Fatal(err)
	}
	from, to := change.Add(-30*time.Hour), change.Add(30*time.Hour)
	want := minuteSearch(spec, loc, from, to)
	if len(want) == 0 || !want[len(want)-1].After(to) {
		t.Fatalf("%q: no fire time within a year after %s", expr, to)
	}
	starts := []time.Time{change.Add(-time.Second), change, change.Add(time.Second)}
	for x := from; x.Before(to); x = x.Add(time.Hour) {
		starts = append(starts, x)
	}
	starts = append(starts, want[:len(want)-1]...)
	for _, x := range starts {
		i := 0
		for !want[i].After(x) {
			i++
		}
		if got := spec.Next(x.In(loc)); !got.Equal(want[i]) {
			t.Errorf("%q in %s after %s (change at %s): %s, want %s", expr, loc, x.In(loc).Format(time.RFC3339),
				change.Format(time.RFC3339), wallClock(got, loc), wallClock(want[i], loc))
			return
		}
	}
}

// minuteSearch lists the instants on whole minutes after from, up to the
// first after to, that spec fires at, looking at each minute's wall-clock
// time: a fixed time of day only at its first occurrence. It looks a year
// past to at most.
func minuteSearch(spec *cronSpec, loc *time.Location, from, to time.Time) []time.Time {
	bits := spec.times.(*cron.SpecSchedule)
	seen := map[string]bool{}
	var out []time.Time
	for x := from.Truncate(time.Minute).Add(time.Minute); x.Before(to.AddDate(1, 0, 0)); x = x.Add(time.Minute) {
		w := x.In(loc)
		if !has(bits.Month, int(w.Month())) && w.Day() < 27 {
			x = x.Add(12*time.Hour - time.Minute) // still in the month
			continue
		}
		if !firstMatch(spec, bits, w, seen) {
			continue
		}
		if out = append(out, x); x.After(to) {
			break
		}
	}
	return out
}

// wallClock is t in loc as RFC 3339, or "never" for the zero time.
func wallClock(t time.Time, loc *time.Location) string {
	if t.IsZero() {
		return "never"
	}
	return t.In(loc).Format(time.RFC3339)
}
