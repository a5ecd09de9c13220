package node

import (
	"testing"
	"time"
)

func TestStopStepSaysWhereTheBudgetWent(t *testing.T) {
	var s stopStep
	if got := s.String(); got != "nothing yet" {
		t.Errorf("before any part: %q", got)
	}
	s.enter("the HTTP server")
	s.enter("the executor")
	s.enter("the event log")
	now := time.Now()
	s.began = []time.Time{now.Add(-9 * time.Second), now.Add(-8800 * time.Millisecond), now.Add(-1200 * time.Millisecond)}
	const want = "the event log (1.2s; the HTTP server 200ms, the executor 7.6s)"
	if got := s.String(); got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}
