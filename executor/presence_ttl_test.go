package executor

import (
	"errors"
	"testing"
	"time"

	"github.com/flowvault/flowvault/internal/logkey"
	"github.com/flowvault/flowvault/internal/testutil"
)

// Engines of another presence TTL sharing a server take the presence
// bucket as the first made it, where each start set its TTL to its own:
// the last engine started decided how soon the others' keys lapsed. The
// engine says so, with both TTLs, and heartbeats within the shorter: one
// of a 1-hour TTL in a bucket of 3 seconds, heartbeating every 10
// minutes, lapsed 3 seconds after its start, and its system tasks were
// taken back by the others. Whether a key lapses depends on how the
// machine schedules the heartbeats, so the test asserts the interval the
// engine keeps to, and that the key is refreshed, not that it never lapses.
func TestPresenceKeepsTheBucketsTTL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		first, next time.Duration // the engines' presence TTLs, in the order they start
		warned      string
	}{
		{"a bucket's TTL shorter", 6 * time.Second, time.Hour,
			"engines' presence bucket removes a key sooner than this engine's presence TTL: its heartbeats keep within the bucket's"},
		{"a bucket's TTL longer", time.Hour, 6 * time.Second,
			"engines' presence bucket removes a key later than this engine's presence TTL: the system tasks of a process that dies wait as long for another engine"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ns := testutil.StartNATS(t, t.TempDir(), 0)
			ctx := testutil.Context(t, 30*time.Second)
			first := New(testutil.OpenExternalLog(t, ns), noDefinitions{}, nothingScheduled{}, Config{Logger: testutil.Logger(t), EngineID: "engine-first", PresenceTTL: tc.first})
			if err := first.Start(ctx); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(first.Stop)
			logger, logs := testutil.CapturingLogger()
			next := New(testutil.OpenExternalLog(t, ns), noDefinitions{}, nothingScheduled{}, Config{Logger: logger, EngineID: "engine-next", PresenceTTL: tc.next})
			if err := next.Start(ctx); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(next.Stop)

			kv := next.presence.kv
			st, err := kv.Status(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if st.TTL() != tc.first {
				t.Errorf("after the next engine's start, the bucket's TTL is %v, want %v as the first made it", st.TTL(), tc.first)
			}
			lines := logs.Records(tc.warned)
			if len(lines) != 1 {
				t.Fatalf("the next engine warned %d times that the TTLs differ, want once: %s", len(lines), logs)
			}
			if lines[0][logkey.Duration] != float64(tc.first) || lines[0][logkey.Want] != float64(tc.next) {
				t.Errorf("warned with %v and %v, want the bucket's TTL %v and the engine's %v", lines[0][logkey.Duration], lines[0][logkey.Want], tc.first, tc.next)
			}

			// The next engine heartbeats within the bucket's TTL, whichever
			// TTL is its own, and its key is refreshed.
			if want := min(tc.first, tc.next) / heartbeats; next.presence.every != want {
				t.Errorf("the next engine heartbeats every %v, want %v: within the shorter of its TTL and the bucket's", next.presence.every, want)
			}
			refreshes, last := 0, uint64(0)
			testutil.Eventually(t, 15*time.Second, 50*time.Millisecond, func() error {
				entry, err := kv.Get(ctx, next.boot)
				if err != nil {
					return err // lapsed under a stall: the next heartbeat makes it again
				}
				if last != 0 && entry.Revision() != last {
					refreshes++
				}
				last = entry.Revision()
				if refreshes < 2 {
					return errors.New("the next engine's presence not refreshed twice yet")
				}
				return nil
			})
		})
	}
}
