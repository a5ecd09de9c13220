package eventlog

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"golang.org/x/time/rate"
)

// Refused connections, and messages a full disk refuses, log a bounded
// number of lines: a flood of them writes a burst, then counts those it
// left out in the next.
func TestRefusedConnectionsLogBounded(t *testing.T) {
	var logs bytes.Buffer
	n := newNATSLogger(slog.New(slog.NewTextHandler(&logs, nil)))
	for range 1000 {
		n.Errorf("%s - %s", "127.0.0.1:5000 - cid:9", "authentication error")
	}
	n.Errorf("%s", "something else")
	if got := strings.Count(logs.String(), "authentication error"); got < 1 || got > 20 {
		t.Fatalf("%d lines for 1000 refused connections", got)
	}
	if !strings.Contains(logs.String(), "something else") {
		t.Fatal("another error was left out")
	}
	for range 1000 {
		n.Errorf("JetStream failed to store a msg on stream '%s': %v", "$G > FV_WF", "write FV_WF/msgs/3.blk: no space left on device")
	}
	if got := strings.Count(logs.String(), "failed to store"); got < 1 || got > 20 {
		t.Fatalf("%d lines for 1000 messages a full disk refused", got)
	}
	n.authFailures.SetLimit(rate.Inf) // as if time passed
	n.Errorf("%s", "127.0.0.1:5001 - authentication error")
	if !strings.Contains(logs.String(), "suppressed=") {
		t.Fatalf("the lines left out are not counted:\n%s", logs.String())
	}
}
