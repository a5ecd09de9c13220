package node_test

import (
	"errors"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/flowvault/flowvault/internal/nodetest"
	"github.com/flowvault/flowvault/internal/testutil"
)

// The --nats URL may carry the engine's credentials, nats.go's way to
// authenticate without a creds file: nats://user:password@host, or
// nats://token@host. They never reach the log, at the start (the
// listening line, the external server's durability warning) nor at a
// reconnection, where the server's address is logged without them.
func TestExternalNATSCredentialsStayOutOfTheLog(t *testing.T) {
	t.Parallel()
	const password, token = "nats-url-password-b7f3", "nats-url-token-9c2e"
	for _, tc := range []struct {
		name     string
		userinfo string
		auth     func(*server.Options)
		secret   string
	}{
		{"user and password", "fv-engine:" + password, func(o *server.Options) { o.Username, o.Password = "fv-engine", password }, password},
		{"token", token, func(o *server.Options) { o.Authorization = token }, token},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			natsDir := t.TempDir()
			ns := testutil.StartNATS(t, natsDir, 0, tc.auth)
			addr, err := url.Parse(ns.ClientURL())
			if err != nil {
				t.Fatal(err)
			}
			cfg := nodetest.Config(filepath.Join(t.TempDir(), "data"))
			cfg.NATSURL, cfg.NATSListen = "nats://"+tc.userinfo+"@"+addr.Host, ""
			logger, logs := testutil.CapturingLogger()
			n, _ := nodetest.StartLogger(t, cfg, logger)

			port, err := strconv.Atoi(addr.Port())
			if err != nil {
				t.Fatal(err)
			}
			ns.Shutdown()
			ns.WaitForShutdown()
			testutil.StartNATS(t, natsDir, port, tc.auth)
			testutil.Eventually(t, 30*time.Second, 50*time.Millisecond, func() error {
				if !strings.Contains(logs.String(), "nats reconnected") {
					return errors.New("no reconnection logged yet")
				}
				return nil
			})
			stop(t, n) // before the server's cleanup, which would leave it none to drain to

			out := logs.String()
			for _, msg := range []string{"flowvault listening", "external nats", "nats reconnected"} {
				if !strings.Contains(out, msg) {
					t.Errorf("no %q in the log", msg)
				}
			}
			if !strings.Contains(out, "nats://"+addr.Host) {
				t.Errorf("the log never names the server nats://%s", addr.Host)
			}
			if strings.Contains(out, tc.secret) {
				for _, line := range strings.Split(out, "\n") {
					if strings.Contains(line, tc.secret) {
						t.Errorf("the log holds the --nats URL's credentials: %s", line)
					}
				}
			}
		})
	}
}
