package executor

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

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
			if want := min(tc.first, tc.next) / heartbeats; next.presence.interval() != want {
				t.Errorf("the next engine heartbeats every %v, want %v: within the shorter of its TTL and the bucket's", next.presence.interval(), want)
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

// The presence bucket's TTL may change under a running engine: an engine
// of an older version makes the bucket again at its start, an operator
// edits it. Kept to the TTL read at its start, an engine whose heartbeats
// came to be further apart than the bucket's lapsed before each, and lost
// its system tasks to the others, for as long as it ran. It now reads the
// TTL again when it finds its key lapsed, and once a TTL, heartbeats
// within it and says so once, with the bucket's TTL before and after and
// its own. The test sends the heartbeats: of a 1-hour TTL, the engine's
// own loop sends none within it.
func TestPresenceFollowsTheBucketsTTL(t *testing.T) {
	t.Parallel()
	const own = time.Hour
	for _, tc := range []struct {
		name          string
		before, after time.Duration // the bucket's TTL at the engine's start, and as changed
		lapse         bool          // the key is gone at the first heartbeat after the change
		beats         int           // heartbeats after the change by which the engine follows it
		every         time.Duration // the heartbeat interval it follows to
	}{
		{"shortened, the key lapsed", own, time.Minute, true, 1, 10 * time.Second},
		{"shortened, the key kept", own, 2 * time.Minute, false, heartbeats, 20 * time.Second},
		{"lengthened past the engine's", 30 * time.Minute, 2 * time.Hour, false, heartbeats, 10 * time.Minute},
		{"unchanged", 30 * time.Minute, 30 * time.Minute, false, heartbeats, 5 * time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ns := testutil.StartNATS(t, t.TempDir(), 0)
			ctx := testutil.Context(t, 30*time.Second)
			js := testutil.OpenExternalLog(t, ns).JetStream()
			if _, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: presenceBucket, History: 1, TTL: tc.before, Storage: jetstream.FileStorage}); err != nil {
				t.Fatal(err)
			}
			logger, logs := testutil.CapturingLogger()
			e := New(testutil.OpenExternalLog(t, ns), noDefinitions{}, nothingScheduled{}, Config{Logger: logger, EngineID: "engine-a", PresenceTTL: own})
			if err := e.Start(ctx); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(e.Stop)

			setBucketTTL(ctx, t, js, tc.after)
			if tc.lapse {
				if err := e.presence.kv.Delete(ctx, e.boot); err != nil {
					t.Fatal(err)
				}
			}
			for i := range 2 * heartbeats {
				if err := e.heartbeat(ctx); err != nil {
					t.Fatalf("heartbeat %d: %v", i, err)
				}
				if i+1 == tc.beats && e.presence.interval() != tc.every {
					t.Errorf("%d heartbeats after the bucket's TTL went from %v to %v, the engine heartbeats every %v, want %v",
						tc.beats, tc.before, tc.after, e.presence.interval(), tc.every)
				}
			}

			changed := logs.Records("engines' presence bucket's TTL changed while this engine ran: its heartbeats keep within the shorter of the bucket's and its own")
			switch {
			case tc.before == tc.after:
				if len(changed) != 0 {
					t.Errorf("the engine warned %d times that the bucket's TTL changed, want none: %s", len(changed), logs)
				}
			case len(changed) != 1:
				t.Errorf("the engine warned %d times that the bucket's TTL changed, want once: %s", len(changed), logs)
			case changed[0][logkey.Duration] != float64(tc.after) || changed[0][logkey.Was] != float64(tc.before) ||
				changed[0][logkey.Want] != float64(own) || changed[0][logkey.Every] != float64(tc.every):
				t.Errorf("warned with the bucket's TTL %v, before %v, the engine's %v, every %v; want %v, %v, %v, %v",
					changed[0][logkey.Duration], changed[0][logkey.Was], changed[0][logkey.Want], changed[0][logkey.Every],
					tc.after, tc.before, own, tc.every)
			}
			if tc.lapse {
				lapsed := logs.Records("this engine's presence had lapsed (paused or cut from NATS longer than its TTL); other engines may have taken back its system tasks, whose results here are then ignored")
				if len(lapsed) != 1 || lapsed[0][logkey.Duration] != float64(tc.after) {
					t.Errorf("want one lapse warning naming the bucket's TTL as changed, %v: %s", tc.after, logs)
				}
			}
		})
	}
}

// setBucketTTL changes the presence bucket's TTL as an operator's edit,
// or an older engine's CreateOrUpdateKeyValue, does: its stream's age
// limit, within which the server keeps its duplicate window.
func setBucketTTL(ctx context.Context, t *testing.T, js jetstream.JetStream, ttl time.Duration) {
	t.Helper()
	s, err := js.Stream(ctx, "KV_"+presenceBucket)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	cfg.MaxAge = ttl
	if ttl > 0 {
		cfg.Duplicates = min(cfg.Duplicates, ttl)
	}
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatalf("the bucket's TTL set to %v: %v", ttl, err)
	}
}
