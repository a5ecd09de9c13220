package projections_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/projections"
	"github.com/flowvault/flowvault/schemas"
)

// A runner catches up over large records without losing the engine's
// connection: a pull of 2048 messages with no byte bound made the server
// queue far more than its 64 MiB max_pending to the connection, which it
// then closed as a slow consumer (every reader on it affected).
func TestRunnerCatchesUpOverLargeRecords(t *testing.T) {
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, 3*time.Minute)
	big := strings.Repeat("x", 2<<20)
	var last uint64
	const n = 60 // 120 MiB
	for i := range n {
		env, err := schemas.Default.Encode(&testutil.Note{Text: big, N: i})
		if err != nil {
			t.Fatal(err)
		}
		env.ID = fmt.Sprintf("big-%d", i)
		if last, err = l.Append(ctx, fmt.Sprintf("fv.wf.big%d", i), []schemas.Envelope{env}, 0); err != nil {
			t.Fatal(err)
		}
	}
	s := openStore(t, t.TempDir())
	defer s.Close()
	r, stop := run(t, l, s, projections.RunnerConfig{})
	err := r.WaitFor(ctx, last)
	if stopErr := stop(); err == nil {
		err = stopErr
	}
	if err != nil {
		t.Fatalf("catching up over %d records of 2 MiB: %v", n, err)
	}
	if rc := l.Conn().Reconnects; rc > 0 {
		t.Fatalf("catching up dropped the engine's NATS connection %d times (slow consumer)", rc)
	}
}
