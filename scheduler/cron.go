package scheduler

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// A cron expression as Orkes's scheduler reads it (Spring's
// CronExpression): six fields, seconds first. Day of week is 0-7 or
// MON-SUN, where 0 and 7 are Sunday (robfig/cron, and Unix cron, count
// 0-6 from Sunday, Quartz 1-7 from Sunday: the same digit means a
// different day in each). The day fields take L, W and #. When both day
// fields are restricted a day must match both, not either as in Unix
// cron: "0 0 9 1-7 * MON" is the first Monday of each month.
//
// robfig/cron keeps the time of day and the month, which it gets right
// across daylight saving changes of whole hours made on the hour; days
// are matched here. It steps hours on the instant timeline, so after a
// change of half an hour (Australia/Lord_Howe's, twice a year) each step
// lands half past a wall-clock hour and the rest of the day's times are
// stepped over: "0 0 3 * * *" did not fire on the day the clock fell
// back. It looks at the hour again only when a minute's step reaches
// :00, so a change made at another minute (Pacific/Chatham's, by an hour
// at 02:45 and 03:45) changed the hour under its minute steps unseen:
// "0 45 */3 * * *" fired at 02:45, and "0 * 3 * * *" skipped the
// repeated 03:00-03:44. On such a day the times after the change are
// looked for a minute at a time instead (see nextTime).
//
// Where a clock change repeats an hour (autumn's fall-back), an expression
// of fixed times of day fires once per wall-clock time, at its first
// occurrence: "0 30 1 * * *" in America/New_York runs at 01:30 EDT, not
// again at 01:30 EST. Spring's CronExpression fires at both (it steps
// forward on the instant timeline and keeps the later offset), and so did
// this scheduler: a nightly job ran twice that night. Every other
// expression (a *, a step or a range in its second, minute or hour field:
// "0 */15 * * * *", "@hourly") fires at each instant that matches, through
// both passes, as Spring does: an every-15-minutes job keeps running
// through the repeated hour. The split is Quartz.NET's (Vixie cron's is
// close: it looks for a leading * in the minute and hour fields only).
// A time that a clock change skips (spring-forward) does not fire, as in
// Spring.

// cronSpec is a parsed cron expression.
type cronSpec struct {
	times cron.Schedule // seconds, minutes, hours and months, any day
	dom   dayOfMonth
	dow   dayOfWeek
	// wallClock: the second, minute and hour fields list fixed values
	// only, so the expression names times of day, each fired once even
	// where a clock change repeats it.
	wallClock bool
}

// cronMacros are the macros Orkes documents.
var cronMacros = map[string]string{
	"@yearly":   "0 0 0 1 1 *",
	"@annually": "0 0 0 1 1 *",
	"@monthly":  "0 0 0 1 * *",
	"@weekly":   "0 0 0 * * 0",
	"@daily":    "0 0 0 * * *",
	"@midnight": "0 0 0 * * *",
	"@hourly":   "0 0 * * * *",
}

// timeFields are the fields robfig/cron reads, by their index among the
// six, with the values each takes.
var timeFields = []struct {
	index  int
	name   string
	lo, hi int
	names  map[string]int
}{
	{0, "second", 0, 59, nil},
	{1, "minute", 0, 59, nil},
	{2, "hour", 0, 23, nil},
	{4, "month", 1, 12, monthNames},
}

var monthNames = map[string]int{"JAN": 1, "FEB": 2, "MAR": 3, "APR": 4, "MAY": 5, "JUN": 6,
	"JUL": 7, "AUG": 8, "SEP": 9, "OCT": 10, "NOV": 11, "DEC": 12}

var timeParser = cron.NewParser(cron.Second | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow)

// parseCron parses a six-field expression or a macro.
func parseCron(expr string) (*cronSpec, error) {
	expr = strings.TrimSpace(expr)
	if strings.HasPrefix(expr, "@") {
		m, ok := cronMacros[strings.ToLower(expr)]
		if !ok {
			return nil, fmt.Errorf("unknown macro %s (known: @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly)", expr)
		}
		expr = m
	}
	f := strings.Fields(strings.ToUpper(expr))
	if len(f) != 6 {
		return nil, fmt.Errorf("%d fields, want 6: second minute hour day-of-month month day-of-week", len(f))
	}
	for _, tf := range timeFields {
		if field := f[tf.index]; strings.Contains(field, "?") {
			return nil, fmt.Errorf("%s %q: ? stands for no specific value in the day fields only", tf.name, field)
		}
	}
	times, err := timeParser.Parse(strings.Join([]string{f[0], f[1], f[2], "*", f[4], "*"}, " "))
	if err != nil {
		// Told in the field's terms, not in robfig/cron's ("failed to
		// parse int from : strconv.Atoi…" for -1).
		if ferr := checkTimeFields(f); ferr != nil {
			return nil, ferr
		}
		return nil, fmt.Errorf("second, minute, hour or month: %w", err)
	}
	dom, err := parseDayOfMonth(f[3])
	if err != nil {
		return nil, fmt.Errorf("day of month %q: %w", f[3], err)
	}
	dow, err := parseDayOfWeek(f[5])
	if err != nil {
		return nil, fmt.Errorf("day of week %q: %w", f[5], err)
	}
	return &cronSpec{times: times, dom: dom, dow: dow, wallClock: fixedValues(f[0]) && fixedValues(f[1]) && fixedValues(f[2])}, nil
}

// checkTimeFields reads the fields robfig/cron reads, of the six fields f
// upper-cased, as this package reads the day fields. It refuses what
// robfig/cron refuses, and also what it lets through: an empty value
// ("1,,2", skipped) and a range from * ("*-5", read as *). Only a new
// expression is held to the latter (see checkCron): one saved before
// keeps firing as it did.
func checkTimeFields(f []string) error {
	for _, tf := range timeFields {
		field := f[tf.index]
		for part := range strings.SplitSeq(field, ",") {
			if _, err := parseRange(part, tf.lo, tf.hi, tf.names); err != nil {
				return fmt.Errorf("%s %q: %w", tf.name, field, err)
			}
		}
	}
	return nil
}

// checkCron parses a new expression, held to checkTimeFields.
func checkCron(expr string) error {
	if _, err := parseCron(expr); err != nil {
		return err
	}
	expr = strings.TrimSpace(expr)
	if m, ok := cronMacros[strings.ToLower(expr)]; ok {
		expr = m
	}
	return checkTimeFields(strings.Fields(strings.ToUpper(expr)))
}

// fixedValues reports whether a time field is a value or a list of values:
// no *, step or range.
func fixedValues(field string) bool {
	for part := range strings.SplitSeq(field, ",") {
		if part == "" || strings.Trim(part, "0123456789") != "" {
			return false
		}
	}
	return true
}

// cronSearchDays bounds the days Next looks through: an expression that
// matches no day in this long (February 30th) never fires.
const cronSearchDays = 5 * 366

// Next returns the first time after t the expression matches, or the zero
// time when there is none.
func (c *cronSpec) Next(t time.Time) time.Time {
	for range cronSearchDays {
		n := c.nextTime(t)
		if n.IsZero() {
			return n
		}
		if !c.dom.matches(n) || !c.dow.matches(n) {
			// No time of n's day fits: look from the end of the day.
			t = startOfNextDay(n).Add(-time.Second)
			if !t.After(n) {
				t = n // a day shortened by a clock change
			}
			continue
		}
		if c.wallClock {
			if end := repeatEnd(n); !end.IsZero() {
				// n's wall-clock time, and so every one up to end, fired
				// in the first pass: one step skips them all, so that a
				// long list of times costs no more than one.
				t = end.Add(-time.Second)
				continue
			}
		}
		return n
	}
	return time.Time{}
}

// nextTime is the first time after t that matches the time and month
// fields: robfig/cron's answer, unless a clock change it steps across
// wrongly (see oddOffsets) lies between the start of t's day and that
// answer. Up to such a change robfig/cron's steps are right, so its answer
// says nothing matched before it; from the change to the end of its day
// every minute is looked at (under 1,440), and from the next day on
// robfig/cron is right again, up to the next such change.
func (c *cronSpec) nextTime(t time.Time) time.Time {
	// Each pass ends a day or more later: as many as Next looks through.
	for range cronSearchDays {
		n := c.timesNext(t)
		change := oddChange(t, n)
		if change.IsZero() {
			return n
		}
		// From t's day when the change came before t: the end of the
		// change's own day may lie before t, where the clock went back
		// across midnight (America/St_Johns, 2010: 00:01 to 23:01).
		dayEnd := startOfNextDay(later(t, change))
		if m := c.scanMinutes(later(t, change.Add(-time.Second)), dayEnd.Add(time.Second)); !m.IsZero() {
			return m
		}
		t = dayEnd
	}
	return time.Time{}
}

// allMonths is a month field that lists every month.
const allMonths = 1<<13 - 2

// timesNext is robfig/cron's first time after t that matches the time and
// month fields, asked for within one month at a time where the month field
// leaves months out. robfig/cron steps over the months left out with
// AddDate from a month's first midnight, and where a clock change skipped
// that midnight time.Date moved it to 01:00, which each step carried into
// every month after: "0 0 0 * 7 *" in Africa/Cairo, from 2014-07-31
// (August 1st began at 01:00), next fired on 2015-07-02, not on July 1st,
// and "0 0 0 1 7 ?" not until 2016. Here the first month that matches is
// found first, from its first instant; an answer in a later month is
// looked for again from that month's.
func (c *cronSpec) timesNext(t time.Time) time.Time {
	months := c.times.(*cron.SpecSchedule).Month
	if months&allMonths == allMonths {
		return c.times.Next(t)
	}
	// robfig/cron's own reach: five years.
	for range 5 * 12 {
		from := t.Add(time.Second)
		if has(months, int(from.Month())) {
			n := c.times.Next(t)
			if n.IsZero() || n.Year() == from.Year() && n.Month() == from.Month() {
				return n
			}
		}
		t = startOfNextMonth(from).Add(-time.Second)
	}
	return time.Time{}
}

// startOfNextMonth is the first instant after t at which the month after
// t's begins (see startOfNextDay).
func startOfNextMonth(t time.Time) time.Time {
	y, m, _ := t.Date()
	return startOfNextDay(later(t, time.Date(y, m+1, 0, 12, 0, 0, 0, t.Location())))
}

// oddChange returns the clock change robfig/cron steps across wrongly
// (see oddOffsets) that lies between the start of t's day and n, or zero
// when there is none. When n is zero (nothing matches for years) only a
// change on t's day counts: the zone's changes go on for ever, and an
// expression that matches nothing (February 30th) would be searched again
// after each. An n not after t is one stepped back across the change that
// ends t's offset: robfig/cron truncates to the hour with time.Date,
// which picks the earlier of a repeated hour west of UTC, so from 00:00:59
// on America/St_Johns's 2010 fall-back day (00:01 became 23:01 the day
// before) "0 0 0 * * *" answered the 00:00 just gone.
func oddChange(t, n time.Time) time.Time {
	start, end := t.ZoneBounds()
	if !start.IsZero() && oddOffsets(start) && !start.Before(startOfDay(t)) {
		return start
	}
	if !end.IsZero() && !n.IsZero() && (!end.After(n) || !n.After(t)) && oddOffsets(end) {
		return end
	}
	return time.Time{}
}

// oddOffsets reports whether the clock change at instant change is one
// robfig/cron steps across wrongly: it moved the clock by other than a
// whole number of hours, or at other than a whole hour of the clock.
func oddOffsets(change time.Time) bool {
	return clockMove(change)%time.Hour != 0 || change.Minute() != 0 || change.Second() != 0
}

// clockMove is how far the clock change at instant change moved the clock:
// forward (positive) or back.
func clockMove(change time.Time) time.Duration {
	_, before := change.Add(-time.Nanosecond).Zone()
	_, after := change.Zone()
	return time.Duration(after-before) * time.Second
}

// scanMinutes returns the first time after from and before until whose
// month, hour, minute and second the expression lists, going one
// instant-timeline minute at a time, or zero.
func (c *cronSpec) scanMinutes(from, until time.Time) time.Time {
	s := c.times.(*cron.SpecSchedule)
	x := from.Truncate(time.Second).Add(time.Second)
	for x.Before(until) {
		w := x.In(from.Location())
		if has(s.Month, int(w.Month())) && has(s.Hour, w.Hour()) && has(s.Minute, w.Minute()) {
			for sec := w.Second(); sec < 60; sec++ {
				if has(s.Second, sec) {
					if m := x.Add(time.Duration(sec-w.Second()) * time.Second); m.Before(until) {
						return m
					}
					return time.Time{}
				}
			}
		}
		x = x.Add(time.Duration(60-w.Second()) * time.Second)
	}
	return time.Time{}
}

// has reports whether a robfig/cron field's bits include v.
func has(bits uint64, v int) bool { return bits&(1<<uint(v)) != 0 }

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// startOfDay is the first instant of t's day (see startOfNextDay).
func startOfDay(t time.Time) time.Time {
	y, m, d := t.Date()
	return startOfNextDay(time.Date(y, m, d-1, 12, 0, 0, 0, t.Location()))
}

// repeatEnd is the end of the repeated stretch n lies in when a clock
// change turned the clock back and n's wall-clock time already passed
// once, before the change; otherwise zero. The stretch runs from the
// change for as long as the clock went back: 01:00 to 02:00 EST on
// America/New_York's fall-back day, 01:30 to 02:00 in Australia/Lord_Howe.
func repeatEnd(n time.Time) time.Time {
	start, _ := n.ZoneBounds()
	if start.IsZero() {
		return time.Time{} // a zone without changes
	}
	end := start.Add(-clockMove(start))
	if !n.Before(end) {
		return time.Time{} // a clock turned forward, or n past the repeat
	}
	return end
}

// startOfNextDay is the first instant after t at which the day after t's
// begins: midnight, or, where a clock change skips midnight
// (America/Santiago, for one), the end of the gap. time.Date normalises a
// midnight that does not exist to a time of the day before, which would
// send the search back into that day. Where a change repeats midnight it
// is the first midnight after t: the first of the two, where time.Date
// picks the second east of UTC (Asia/Gaza's clock went back from 01:00 to
// 00:00 on Saturdays in 2016-2020, Asia/Amman's on Fridays until 2021), so
// that a search from the day before skipped the day's first hour: "0 0 0
// ? * SAT" found only the repeated midnight, which a fixed time of day
// skips, and did not fire that week; or the second, where t lies between
// the two (America/St_Johns's clock went back from 00:01 to 23:01 the day
// before until 2011): the first, before t, sent the search back to t's
// day for ever.
func startOfNextDay(t time.Time) time.Time {
	y, m, d := t.Date()
	next := time.Date(y, m, d+1, 0, 0, 0, 0, t.Location())
	for next.Day() == d {
		next = next.Add(time.Minute)
	}
	if twin := sameWallClock(next); twin.After(t) && (twin.Before(next) || !next.After(t)) {
		return twin
	}
	return next
}

// sameWallClock is the other instant whose wall-clock time is t's where a
// clock change turned the clock back over it, or zero: the earlier one
// when t lies in the repeat after the change, the later one when t lies in
// the stretch before the change that the repeat goes over again.
func sameWallClock(t time.Time) time.Time {
	start, end := t.ZoneBounds()
	if !repeatEnd(t).IsZero() {
		return t.Add(clockMove(start))
	}
	if !end.IsZero() {
		if move := clockMove(end); move < 0 && !t.Before(end.Add(move)) {
			return t.Add(-move)
		}
	}
	return time.Time{}
}

// dayOfMonth matches days of the month. The zero value matches any.
type dayOfMonth struct {
	restricted bool
	days       uint32 // bit d: day d (1-31)
	last       []int  // L-n: n days before the month's last
	lastWork   bool   // LW: the month's last weekday
	nearest    []int  // nW: the weekday nearest day n (see nearestWeekday)
}

func parseDayOfMonth(field string) (dayOfMonth, error) {
	var m dayOfMonth
	for part := range strings.SplitSeq(field, ",") {
		switch {
		case part == "*" || part == "?":
			return dayOfMonth{}, nil
		case part == "LW":
			m.lastWork = true
		case part == "L":
			m.last = append(m.last, 0)
		case strings.HasPrefix(part, "L-"):
			n, err := strconv.Atoi(part[2:])
			if err != nil || n < 0 || n > 30 {
				return m, fmt.Errorf("%s: want L-n with n from 0 to 30", part)
			}
			m.last = append(m.last, n)
		case strings.HasSuffix(part, "W"):
			n, err := strconv.Atoi(strings.TrimSuffix(part, "W"))
			if err != nil || n < 1 || n > 31 {
				return m, fmt.Errorf("%s: want nW with n from 1 to 31", part)
			}
			m.nearest = append(m.nearest, n)
		default:
			bits, err := parseRange(part, 1, 31, nil)
			if err != nil {
				return m, err
			}
			m.days |= uint32(bits)
		}
		m.restricted = true
	}
	return m, nil
}

func (m dayOfMonth) matches(t time.Time) bool {
	if !m.restricted {
		return true
	}
	d := t.Day()
	if m.days&(1<<d) != 0 {
		return true
	}
	last := daysIn(t)
	for _, n := range m.last {
		if d == last-n {
			return true
		}
	}
	if m.lastWork && d == lastWeekday(t, last) {
		return true
	}
	for _, n := range m.nearest {
		if w, ok := nearestWeekday(t, n, last); ok && d == w {
			return true
		}
	}
	return false
}

// daysIn is the number of days of t's month.
func daysIn(t time.Time) int {
	y, m, _ := t.Date()
	return time.Date(y, m+1, 0, 12, 0, 0, 0, time.UTC).Day()
}

// weekdayOn is the weekday of day d of t's month.
func weekdayOn(t time.Time, d int) time.Weekday {
	y, m, _ := t.Date()
	return time.Date(y, m, d, 12, 0, 0, 0, time.UTC).Weekday()
}

func lastWeekday(t time.Time, last int) int {
	switch weekdayOn(t, last) {
	case time.Saturday:
		return last - 1
	case time.Sunday:
		return last - 2
	}
	return last
}

// nearestWeekday is the day nW fires on in t's month, as Spring's
// CronExpression reads it: day n itself on a weekday, the Friday before a
// Saturday, the Monday after a Sunday, and Monday the 3rd for a Saturday
// the 1st. ok is false when nW does not fire that month: the month has no
// day n (31W in a 30-day month, 30W in February), or day n is a Sunday
// and the month's last day, whose Monday after is in the next month, where
// Spring does not fire it either. (This scheduler used to fire on the
// month's last day, or the Friday before.) Where Spring's answer depends
// on where its search starts (31W fires on a Friday the 30th when the
// search starts that day, not when it starts the day before), the answer
// here is the one for a search from an earlier day: a fire time depends
// on the date alone.
func nearestWeekday(t time.Time, n, last int) (day int, ok bool) {
	if n > last {
		return 0, false
	}
	switch weekdayOn(t, n) {
	case time.Saturday:
		if n == 1 {
			return 3, true
		}
		return n - 1, true
	case time.Sunday:
		if n == last {
			return 0, false
		}
		return n + 1, true
	}
	return n, true
}

// dayOfWeek matches days of the week. The zero value matches any.
type dayOfWeek struct {
	restricted bool
	days       uint8          // bit w: time.Weekday w
	last       []time.Weekday // dL: the month's last such day
	nth        []nthWeekday   // d#n: the month's n-th such day
}

type nthWeekday struct {
	day time.Weekday
	n   int
}

// weekdayNames number the days as Spring does: MON is 1, SUN 7 (and 0).
var weekdayNames = map[string]int{"MON": 1, "TUE": 2, "WED": 3, "THU": 4, "FRI": 5, "SAT": 6, "SUN": 7}

func parseDayOfWeek(field string) (dayOfWeek, error) {
	var w dayOfWeek
	for part := range strings.SplitSeq(field, ",") {
		switch {
		case part == "*" || part == "?":
			return dayOfWeek{}, nil
		case len(part) > 1 && strings.HasSuffix(part, "L"):
			d, err := weekday(strings.TrimSuffix(part, "L"))
			if err != nil {
				return w, err
			}
			w.last = append(w.last, d)
		case strings.Contains(part, "#"):
			day, nth, _ := strings.Cut(part, "#")
			d, err := weekday(day)
			if err != nil {
				return w, err
			}
			n, err := strconv.Atoi(nth)
			if err != nil || n < 1 || n > 5 {
				return w, fmt.Errorf("%s: want d#n with n from 1 to 5", part)
			}
			w.nth = append(w.nth, nthWeekday{d, n})
		default:
			if step, ok := strings.CutPrefix(part, "*/"); ok {
				part = "1-7/" + step // the week runs from Monday
			}
			bits, err := parseRange(sundayFirst(part), 0, 7, weekdayNames)
			if err != nil {
				return w, err
			}
			if bits&(1<<7) != 0 {
				bits |= 1 // 7 is Sunday, as 0 is
			}
			w.days |= uint8(bits)
		}
		w.restricted = true
	}
	return w, nil
}

// sundayFirst reads Sunday at the start of a range as 0, not 7, as
// Spring does: SUN-THU is a week from Sunday, SUN-SAT every day. Read as
// 7, each ended before it started and was refused. SUN-SUN stays Sunday,
// as it fired before: Spring reads it as every day.
func sundayFirst(part string) string {
	rng, step, stepped := strings.Cut(part, "/")
	from, to, isRange := strings.Cut(rng, "-")
	if n, err := value(from, 0, 7, weekdayNames); !isRange || err != nil || n != 7 {
		return part
	}
	if n, err := value(to, 0, 7, weekdayNames); err == nil && n == 7 {
		return part
	}
	if part = "0-" + to; stepped {
		part += "/" + step
	}
	return part
}

// weekday reads one day of the week: a number from 0 to 7 or a name.
func weekday(s string) (time.Weekday, error) {
	n, err := value(s, 0, 7, weekdayNames)
	return time.Weekday(n % 7), err
}

func (w dayOfWeek) matches(t time.Time) bool {
	if !w.restricted {
		return true
	}
	wd := t.Weekday()
	if w.days&(1<<wd) != 0 {
		return true
	}
	d := t.Day()
	for _, l := range w.last {
		if wd == l && d+7 > daysIn(t) {
			return true
		}
	}
	for _, n := range w.nth {
		if wd == n.day && (d-1)/7+1 == n.n {
			return true
		}
	}
	return false
}

// parseRange reads "*", "a", "a-b", each optionally "/step" ("a/step"
// runs to hi), as a bit set of the values from lo to hi it covers.
func parseRange(part string, lo, hi int, names map[string]int) (uint64, error) {
	rng, stepText, stepped := strings.Cut(part, "/")
	step := 1
	if stepped {
		var err error
		if step, err = strconv.Atoi(stepText); err != nil || step < 1 {
			return 0, fmt.Errorf("%s: step %q is not a positive number", part, stepText)
		}
		// A step past the field's span covers its start alone; unbounded,
		// from+step wrapped negative ("1/9223372036854775807") and the
		// shift below panicked.
		step = min(step, hi-lo+1)
	}
	from, to := lo, hi
	if rng != "*" {
		a, b, isRange := strings.Cut(rng, "-")
		if a == "" && isRange {
			// "-1" is a negative number, not a range without its start.
			a, isRange = rng, false
		}
		var err error
		if from, err = value(a, lo, hi, names); err != nil {
			return 0, err
		}
		switch {
		case isRange:
			if to, err = value(b, lo, hi, names); err != nil {
				return 0, err
			}
			if to < from {
				return 0, fmt.Errorf("%s: range ends before it starts", part)
			}
		case !stepped:
			to = from
		}
	}
	var bits uint64
	for v := from; v <= to; v += step {
		bits |= 1 << v
	}
	return bits, nil
}

// value reads a number from lo to hi or one of names.
func value(s string, lo, hi int, names map[string]int) (int, error) {
	if n, ok := names[s]; ok {
		return n, nil
	}
	if s == "" {
		return 0, fmt.Errorf("a value is missing")
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a number", s)
	}
	if n < lo || n > hi {
		return 0, fmt.Errorf("%d is not from %d to %d", n, lo, hi)
	}
	return n, nil
}
