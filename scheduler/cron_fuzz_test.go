package scheduler

import (
	"testing"
	"time"

	"github.com/robfig/cron/v3"
)

// FuzzCron parses any expression a schedule may carry. One that parses
// must give a next fire time after the time given, in the zone given,
// whose wall-clock time and day the expression lists.
func FuzzCron(f *testing.F) {
	for _, expr := range []string{
		"0 0 9 ? * 7", "0 0 9 ? * SUN-THU", "0 0 9 ? * SUN-TUE/2", "0 0 9 ? * */2",
		"0 0 9 L * ?", "0 0 9 L-1 * ?", "0 0 9 LW * ?", "0 0 9 15W * ?",
		"0 0 9 ? * FRI#2", "0 0 9 ? * 5L", "0 0 9 1-7 * MON", "*/20 * * * * *",
		"@weekly", "0 0 9 30 2 ?", "0 1,,2 * * * *", "0 0 9 1 jan-dec/3 ?",
		"0 30 1 * * *", "0 0 9 1/5 * ?",
	} {
		f.Add(expr, int64(1796032800), "America/New_York")
	}
	f.Add("0 0 2 * * ?", int64(1792900000), "Australia/Lord_Howe")
	f.Fuzz(func(t *testing.T, expr string, from int64, zone string) {
		spec, err := parseCron(expr)
		if err != nil {
			return
		}
		loc, err := time.LoadLocation(zone)
		if err != nil {
			loc = time.UTC
		}
		// 1970 to 2200: where schedules run.
		at := time.Unix(from%(230*365*86400), 0).In(loc)
		if at.Unix() < 0 {
			at = time.Unix(-at.Unix(), 0).In(loc)
		}
		n := spec.Next(at)
		if n.IsZero() {
			return
		}
		if !n.After(at) {
			t.Fatalf("%q after %s: %s, not after", expr, at, n)
		}
		bits := spec.times.(*cron.SpecSchedule)
		w := n.In(loc)
		if !has(bits.Second, w.Second()) || !has(bits.Minute, w.Minute()) || !has(bits.Hour, w.Hour()) ||
			!has(bits.Month, int(w.Month())) || !spec.dom.matches(w) || !spec.dow.matches(w) {
			t.Fatalf("%q after %s: %s, which it does not list", expr, at, w)
		}
	})
}
