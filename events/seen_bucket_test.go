package events

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/flowvault/flowvault/internal/logkey"
	"github.com/flowvault/flowvault/internal/testutil"
)

// Engines sharing a server take the event handlers' bucket as another
// engine (another version) made it, where each start set its age limit
// to its own; one that keeps what ran for less than this engine asks is
// warned about, with both limits, as events published again after it
// run their actions again.
func TestSeenBucketKeptAsMade(t *testing.T) {
	t.Parallel()
	const warned = "event handlers' bucket keeps what ran for less than this engine asks: an event published again after that runs its actions again"
	for _, tc := range []struct {
		name string
		made time.Duration
		warn bool
	}{
		{"shorter", time.Hour, true},
		{"longer", 2 * SeenFor, false},
		{"the same", SeenFor, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ns := testutil.StartNATS(t, t.TempDir(), 0)
			ctx := testutil.Context(t, 30*time.Second)
			if _, err := testutil.OpenExternalLog(t, ns).JetStream().CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: SeenBucket,
				History: 1, TTL: tc.made, Storage: jetstream.FileStorage}); err != nil {
				t.Fatal(err)
			}
			for _, engine := range []string{"a", "b"} {
				l := testutil.OpenExternalLog(t, ns)
				logger, logs := testutil.CapturingLogger()
				s, err := OpenSeen(ctx, l.JetStream(), 1, l, logger)
				if err != nil {
					t.Fatalf("engine %s: %v", engine, err)
				}
				st, err := s.kv.Status(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if st.TTL() != tc.made {
					t.Errorf("after engine %s's start, the bucket keeps its keys %v, want %v as it was made", engine, st.TTL(), tc.made)
				}
				lines := logs.Records(warned)
				if len(lines) != map[bool]int{true: 1}[tc.warn] {
					t.Fatalf("engine %s warned %d times, want a warning %v: %s", engine, len(lines), tc.warn, logs)
				}
				if tc.warn && (lines[0][logkey.Duration] != float64(tc.made) || lines[0][logkey.Want] != float64(SeenFor)) {
					t.Errorf("engine %s warned with %v and %v, want the bucket's %v and its own %v", engine,
						lines[0][logkey.Duration], lines[0][logkey.Want], tc.made, SeenFor)
				}
			}
		})
	}
}
