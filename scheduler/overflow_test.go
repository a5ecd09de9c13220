package scheduler

import (
	"testing"
	"time"

	"github.com/flowvault/flowvault/schemas/conductor"
)

// A schedule saved with a scheduleStartTime near Long.MAX_VALUE (before
// Validate refused one) is never due: its next fire time would overflow
// Unix ms to a negative number, which timetable.latest would find again
// for ever (next(t) == t < now), hanging the firer's scan of every
// schedule.
func TestDueWithMaxStartTimeReturns(t *testing.T) {
	s := &State{Def: conductor.WorkflowSchedule{CronExpression: "0 0 * * * *", CreateTime: ms("2026-11-30T10:00:00Z"),
		ScheduleStartTime: 9223372036854775807}}
	done := make(chan int64, 1)
	go func() { done <- s.Due(ms("2026-11-30T10:00:17Z")) }()
	select {
	case got := <-done:
		if got != 0 {
			t.Fatalf("due = %d, want 0 (not yet)", got)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Due did not return: timetable.latest loops on an overflowed fire time")
	}
	s.Def.RunCatchupScheduleInstances = true
	if got := s.Due(ms("2026-11-30T10:00:17Z")); got != 0 {
		t.Fatalf("with catch-up, due = %d, want 0: the schedule fires at once with a negative _scheduledTime", got)
	}
}

// The fire times nextFewSchedules answers never wrap to negative.
func TestNextFewNeverNegative(t *testing.T) {
	times, err := NextFew("0 0 * * * *", 9223372036854775807, 0, 3)
	if err != nil {
		return // a refusal is fine
	}
	for _, x := range times {
		if x <= 0 {
			t.Fatalf("nextFewSchedules = %v: negative fire times", times)
		}
	}
}
