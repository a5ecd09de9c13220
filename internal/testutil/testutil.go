// Package testutil holds the helpers flowvault's tests share: an embedded
// event log in a temporary directory, polling assertions and log capture.
package testutil

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/schemas"
)

// LogConfig returns an embedded, fully durable event log configuration that
// stores under dir. Its server does not listen: only the log's own
// in-process connection reaches it (a listening server needs
// credentials; see natsauth and internal/nodetest).
func LogConfig(dir string) eventlog.Config {
	cfg := eventlog.DefaultConfig()
	cfg.StoreDir = dir
	cfg.Listen = ""
	cfg.Name = "flowvault-test"
	return cfg
}

// OpenLog opens an embedded log under dir (a new temporary directory when
// dir is empty) and closes it when the test ends.
func OpenLog(tb testing.TB, dir string) *eventlog.Log {
	tb.Helper()
	if dir == "" {
		dir = tb.TempDir()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := eventlog.Open(ctx, LogConfig(dir), eventlog.Options{Logger: Logger(tb)})
	if err != nil {
		tb.Fatalf("open event log: %v", err)
	}
	tb.Cleanup(func() { l.Close() })
	return l
}

// Logger returns a logger that writes through tb.Log when FLOWVAULT_TEST_LOG
// is set, and nowhere otherwise.
func Logger(tb testing.TB) *slog.Logger {
	if os.Getenv("FLOWVAULT_TEST_LOG") == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(tbWriter{tb}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tbWriter struct{ tb testing.TB }

func (w tbWriter) Write(p []byte) (int, error) {
	w.tb.Log(string(p))
	return len(p), nil
}

// Eventually calls check every tick until it returns nil, failing the test
// with check's last error once wait has passed.
func Eventually(tb testing.TB, wait, tick time.Duration, check func() error) {
	tb.Helper()
	deadline := time.Now().Add(wait)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("condition not met after %s: %v", wait, err)
		}
		time.Sleep(tick)
	}
}

// Context returns a context that ends with the test or after d.
func Context(tb testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	tb.Cleanup(cancel)
	return ctx
}

// Note is a minimal event for tests of the log itself.
type Note struct {
	Text string `msgpack:"text"`
	N    int    `msgpack:"n"`
}

func (*Note) EventType() string { return "test.note" }

func init() { schemas.Default.Register(&Note{}, 1) }

// NoteEnvelope returns an encoded Note with the given id.
func NoteEnvelope(tb testing.TB, id string, n int) schemas.Envelope {
	tb.Helper()
	env, err := schemas.Default.Encode(&Note{Text: fmt.Sprintf("note %d", n), N: n})
	if err != nil {
		tb.Fatal(err)
	}
	env.ID = id
	env.Time = time.Now().UnixNano()
	return env
}

// LogBuffer is a concurrency-safe buffer for capturing log output.
type LogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *LogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Records returns the records written with message msg, decoded, in the
// order they were written.
func (b *LogBuffer) Records(msg string) []map[string]any {
	var out []map[string]any
	for line := range strings.SplitSeq(b.String(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil && rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

// CapturingLogger returns a JSON logger at debug level writing to a new
// LogBuffer.
func CapturingLogger() (*slog.Logger, *LogBuffer) {
	b := &LogBuffer{}
	return slog.New(slog.NewJSONHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})), b
}

// MetricValue returns the value of the counter or gauge called name whose
// labels include every pair of labels, summed over matching series.
func MetricValue(tb testing.TB, g prometheus.Gatherer, name string, labels map[string]string) float64 {
	tb.Helper()
	mfs, err := g.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue series
				}
			}
			switch {
			case m.GetCounter() != nil:
				sum += m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				sum += m.GetGauge().GetValue()
			}
		}
	}
	return sum
}
