package scheduler

import (
	"testing"
	"time"

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
