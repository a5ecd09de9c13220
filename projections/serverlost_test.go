package projections_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/projections"
	"github.com/flowvault/flowvault/schemas"
)

// An external NATS server that restarts without its data (a fresh store,
// or one that lost its tail under its sync interval) is noticed by a
// running engine, as it is at start: its read models stop, and its log
// refuses appends, with ErrLogLost. Followed on, a read model whose
// checkpoint is past the new stream's start would skip the records that
// reuse those sequences, and apply the rest as if nothing had happened;
// and the engine would decide, and write, on a log that lost
// acknowledged records. A server that restarts with its data is followed
// on as before.
func TestServerBackWithoutItsData(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		// restart shuts ns down and starts it again, on its port.
		restart func(t *testing.T, ns *server.Server, dir string) *server.Server
		lost    bool
	}{
		{"an empty store", func(t *testing.T, ns *server.Server, dir string) *server.Server {
			return testutil.RestartNATS(t, ns, t.TempDir())
		}, true},
		{"its tail lost", func(t *testing.T, ns *server.Server, dir string) *server.Server {
			ns.Shutdown()
			ns.WaitForShutdown()
			testutil.CutLastBlock(t, testutil.StreamDir(t, dir, eventlog.Workflows.Name), -1)
			return testutil.RestartNATS(t, ns, dir)
		}, true},
		{"its tail lost, its index rebuilt", func(t *testing.T, ns *server.Server, dir string) *server.Server {
			ns.Shutdown()
			ns.WaitForShutdown()
			streamDir := testutil.StreamDir(t, dir, eventlog.Workflows.Name)
			testutil.CutLastBlock(t, streamDir, -1)
			// Without its index the server counts what the blocks hold: the
			// stream ends before the records it lost.
			if err := os.Remove(filepath.Join(streamDir, "msgs", "index.db")); err != nil && !errors.Is(err, os.ErrNotExist) {
				t.Fatal(err)
			}
			return testutil.RestartNATS(t, ns, dir)
		}, true},
		{"its data kept", func(t *testing.T, ns *server.Server, dir string) *server.Server {
			return testutil.RestartNATS(t, ns, dir)
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			ctx := testutil.Context(t, time.Minute)
			ns := testutil.StartNATS(t, dir, 0)
			l := testutil.OpenExternalLog(t, ns)
			s := openStore(t, t.TempDir())
			defer s.Close()
			last, events := appendNotes(t, l, 2, 10)
			r, stop := run(t, l, s, projections.RunnerConfig{})
			if err := r.WaitFor(ctx, last); err != nil {
				t.Fatal(err)
			}

			ns = tc.restart(t, ns, dir)
			// Another engine on the same server appends (on an empty
			// server, from sequence 1 again).
			other := testutil.OpenExternalLog(t, ns)
			otherLast, otherEvents := appendNotesAs(t, other, "other", 3, 10)
			streamLast, _ := other.StreamLastSeq(ctx, eventlog.Workflows.Name)
			t.Logf("the read model holds %s up to %d; after the restart, the stream ends at %d (%v)",
				eventlog.Workflows.Name, last, streamLast, other.CheckKept(ctx, eventlog.Workflows.Name))

			if !tc.lost {
				// The runner follows on: it applies the new records, once.
				if err := r.WaitFor(ctx, otherLast); err != nil {
					t.Fatal(err)
				}
				if got := noteCount(t, s); got != uint64(events+otherEvents) {
					t.Fatalf("the read model counts %d events, the log holds %d", got, events+otherEvents)
				}
				testutil.Eventually(t, 20*time.Second, 20*time.Millisecond, func() error {
					_, err := l.Append(ctx, "fv.wf.after", []schemas.Envelope{testutil.NoteEnvelope(t, "after", 1)}, 0)
					return err
				})
				if err := r.WaitFor(ctx, otherLast+1); err != nil {
					t.Fatal(err)
				}
				if err := stop(); err != nil {
					t.Fatalf("Run returned %v", err)
				}
				return
			}

			// The runner stops with ErrLogLost, having applied nothing
			// of the server's new records.
			runErr := waitStopped(t, r, 20*time.Second)
			if !errors.Is(runErr, eventlog.ErrLogLost) {
				t.Fatalf("the runner stopped with %v, want ErrLogLost", runErr)
			}
			if got := noteCount(t, s); got != uint64(events) {
				t.Fatalf("the read model counts %d events, %d before the restart: it applied records of a log that lost records", got, events)
			}
			if err := stop(); !errors.Is(err, eventlog.ErrLogLost) {
				t.Fatalf("Run returned %v, want ErrLogLost", err)
			}
			// And the engine's log refuses to write on.
			_, err := l.Append(ctx, "fv.wf.after", []schemas.Envelope{testutil.NoteEnvelope(t, "after", 1)}, 0)
			if !errors.Is(err, eventlog.ErrLogLost) {
				t.Fatalf("an append after the loss: %v, want ErrLogLost", err)
			}
			select {
			case <-l.Lost():
			default:
				t.Fatal("the log does not report the loss")
			}
			if err := l.Err(); !errors.Is(err, eventlog.ErrLogLost) || !strings.Contains(err.Error(), eventlog.Workflows.Name) {
				t.Fatalf("the log's error: %v, want ErrLogLost naming %s", err, eventlog.Workflows.Name)
			}
		})
	}
}

// waitStopped waits until r has stopped and returns its error, failing
// the test if it has not stopped within d or applied anything past its
// checkpoint meanwhile.
func waitStopped(t *testing.T, r *projections.Runner, d time.Duration) error {
	t.Helper()
	start := r.Checkpoint()
	deadline := time.Now().Add(d)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		err := r.WaitFor(ctx, 1<<62)
		cancel()
		if got := r.Checkpoint(); got != start {
			t.Fatalf("the runner moved from %d to %d on a server that lost its data", start, got)
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			return err
		}
		if time.Now().After(deadline) {
			t.Fatalf("the runner still runs %s after the server came back without its data", d)
		}
	}
}
