package node_test

import (
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/internal/nodetest"
	"github.com/flowvault/flowvault/internal/testutil"
)

// A node on an external NATS server that restarts without its data
// fails, as it would refuse to start on it: Failed is closed (Run stops
// the node and returns the error, and the server process exits non-zero),
// the health check says why, and nothing is written meanwhile. A restart
// with the data is a reconnection like any other.
func TestNodeOnAServerBackWithoutItsData(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		keep bool
	}{{"an empty store", false}, {"its data kept", true}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			natsDir := t.TempDir()
			ns := testutil.StartNATS(t, natsDir, 0)
			cfg := nodetest.Config(filepath.Join(t.TempDir(), "data"))
			cfg.NATSURL, cfg.NATSListen = ns.ClientURL(), ""
			n, base := nodetest.StartConfig(t, cfg)
			start := func(i int) (int, string) {
				resp, err := http.Post(base+"/api/workflow", "application/json", strings.NewReader(fmt.Sprintf(
					`{"name":"w","correlationId":"c%d","workflowDef":{"name":"w","tasks":[{"name":"w","taskReferenceName":"w","type":"WAIT"}]}}`, i)))
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return resp.StatusCode, string(b)
			}
			for i := range 3 {
				if code, body := start(i); code != http.StatusOK {
					t.Fatalf("start: %d %s", code, body)
				}
			}

			if tc.keep {
				testutil.RestartNATS(t, ns, natsDir)
				testutil.Eventually(t, 30*time.Second, 50*time.Millisecond, func() error {
					if code, body := start(100); code != http.StatusOK {
						return fmt.Errorf("start after the reconnection: %d %s", code, body)
					}
					return nil
				})
				select {
				case <-n.Failed():
					t.Fatalf("the node failed on a server that kept its data: %v", n.Err())
				default:
				}
				return
			}

			testutil.RestartNATS(t, ns, t.TempDir())
			failedWith(t, n, base, eventlog.ErrLogLost, "lost")
			if code, body := start(100); code == http.StatusOK {
				t.Fatalf("a start on a log that lost records: %d %s", code, body)
			}
		})
	}
}
