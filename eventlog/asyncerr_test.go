package eventlog_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/internal/testutil"
)

// A connection's asynchronous errors (here a slow consumer) reach the
// engine's log, in its format, naming the subscription's subject: left
// to nats.go they went to stderr as plain text, outside --log-format.
// Both the log's own connection and the ones it opens in process.
func TestAsyncNATSErrorsAreLogged(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, 30*time.Second)
	logger, logs := testutil.CapturingLogger()
	l, err := eventlog.Open(ctx, testutil.LogConfig(t.TempDir()), eventlog.Options{Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	inProcess, err := l.ConnectInProcess()
	if err != nil {
		t.Fatal(err)
	}
	defer inProcess.Close()

	for _, tc := range []struct {
		name string
		nc   *nats.Conn
	}{{"the log's connection", l.Conn()}, {"a connection in process", inProcess}} {
		subject := "fv.test.slow." + strings.ReplaceAll(tc.name, " ", "_")
		release := make(chan struct{})
		sub, err := tc.nc.Subscribe(subject, func(*nats.Msg) { <-release })
		if err != nil {
			t.Fatal(err)
		}
		if err := sub.SetPendingLimits(1, -1); err != nil {
			t.Fatal(err)
		}
		for range 20 {
			if err := tc.nc.Publish(subject, []byte("x")); err != nil {
				t.Fatal(err)
			}
		}
		if err := tc.nc.Flush(); err != nil {
			t.Fatal(err)
		}
		testutil.Eventually(t, 10*time.Second, 20*time.Millisecond, func() error {
			for _, line := range strings.Split(logs.String(), "\n") {
				if strings.Contains(line, `"msg":"nats error"`) && strings.Contains(line, subject) && strings.Contains(line, "slow consumer") {
					return nil
				}
			}
			return errors.New("no slow consumer logged for " + subject)
		})
		close(release)
		if err := sub.Unsubscribe(); err != nil {
			t.Fatal(err)
		}
	}
}
