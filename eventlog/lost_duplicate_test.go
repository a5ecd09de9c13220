package eventlog_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/internal/testutil"
)

// An append answered as a duplicate (its first attempt stored, the answer
// lost; the retry finds it by its message id) is acknowledged like any
// other: a server that comes back without it stops the log. It was not
// noted as seen, so a stream that lost it, and took another record at its
// sequence, passed the reconnection's check, and the log wrote on.
func TestAppendAnsweredAsADuplicateIsKept(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		subject  string
		stream   string
		expected uint64
	}{
		// A single server checks the expectation first: a conflict,
		// resolved by the message id (findMsgID).
		{"expected sequence", "fv.wf.dup", eventlog.Workflows.Name, 0},
		// No expectation: the server answers "duplicate".
		{"no expectation", "fv.audit.dup", eventlog.Audit.Name, eventlog.ExpectAny},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			ctx := testutil.Context(t, time.Minute)
			ns := testutil.StartNATS(t, dir, 0)
			l := testutil.OpenExternalLog(t, ns)
			// The first attempt, stored, its answer lost: here another
			// writer's, which l does not see.
			evs := notes(t, "cmd", 1)
			first := testutil.OpenExternalLog(t, ns)
			if _, err := first.Append(ctx, tc.subject, evs, tc.expected); err != nil {
				t.Fatal(err)
			}
			first.Close()
			dup := false
			seq, err := l.Append(ctx, tc.subject, evs, tc.expected, eventlog.ReportDuplicate(&dup))
			if err != nil || seq != 1 || !dup {
				t.Fatalf("the retry = %d, duplicate %v, %v; want 1, true, nil", seq, dup, err)
			}

			// The server comes back without it, its index rebuilt from
			// what its block holds: the stream ends before it.
			ns.Shutdown()
			ns.WaitForShutdown()
			streamDir := testutil.StreamDir(t, dir, tc.stream)
			testutil.CutLastBlock(t, streamDir, 0)
			if err := os.Remove(filepath.Join(streamDir, "msgs", "index.db")); err != nil && !errors.Is(err, os.ErrNotExist) {
				t.Fatal(err)
			}
			ns = testutil.RestartNATS(t, ns, dir)
			other := testutil.OpenExternalLog(t, ns)
			if seq, err := other.Append(ctx, tc.subject, notes(t, "other", 1), tc.expected); err != nil || seq != 1 {
				t.Fatalf("another engine's append = %d, %v; want 1 (the stream lost the record)", seq, err)
			}

			select {
			case <-l.Lost():
			case <-time.After(20 * time.Second):
				t.Fatal("the log wrote on, its server having lost the record it acknowledged at 1")
			}
			if err := l.Err(); !errors.Is(err, eventlog.ErrLogLost) {
				t.Fatalf("the log's error: %v, want ErrLogLost", err)
			}
		})
	}
}
