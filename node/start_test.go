package node_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/internal/nodetest"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/node"
	"github.com/flowvault/flowvault/projections"
	"github.com/flowvault/flowvault/secrets"
)

// workflowsThenStop starts a node on cfg, starts n workflows that wait,
// and stops it.
func workflowsThenStop(t *testing.T, cfg node.Config, n int) {
	t.Helper()
	nd, base := nodetest.StartConfig(t, cfg)
	for i := range n {
		resp, err := http.Post(base+"/api/workflow", "application/json", strings.NewReader(
			fmt.Sprintf(`{"name":"w","correlationId":"c%d","workflowDef":{"name":"w","tasks":[{"name":"w","taskReferenceName":"w","type":"WAIT"}]}}`, i)))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("start: %d", resp.StatusCode)
		}
	}
	stop(t, nd)
}

// A log that no longer holds records it acknowledged (part of a block
// lost to a power cut under relaxed fsync, a damaged disk) is refused at
// start: the workflows whose last records went would fail every write
// after it, and the read models would answer for records that are gone.
// A log that lost a whole stream under read models that hold it is
// refused too, before the server serves, or writes, anything.
func TestStartRefusesALogThatLostRecords(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		lose func(t *testing.T, streamDir string)
		want error
	}{
		{"a block cut short", func(t *testing.T, streamDir string) {
			testutil.CutLastBlock(t, streamDir, -1)
		}, eventlog.ErrLogLost},
		{"the stream gone", func(t *testing.T, streamDir string) {
			if err := os.RemoveAll(streamDir); err != nil {
				t.Fatal(err)
			}
		}, projections.ErrAheadOfLog},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := nodetest.Config(filepath.Join(t.TempDir(), "data"))
			workflowsThenStop(t, cfg, 50)
			tc.lose(t, testutil.StreamDir(t, cfg.Eventlog().StoreDir, eventlog.Workflows.Name))

			n, err := node.Start(context.Background(), cfg, testutil.Logger(t))
			if err == nil {
				stop(t, n)
				t.Fatal("started on a log that lost records")
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("start: %v, want %v", err, tc.want)
			}
			// Refused before anything was written to what is left.
			ctx := testutil.Context(t, 30*time.Second)
			mk, err := secrets.LoadMasterKey(cfg.MasterKeySource(), testutil.Logger(t))
			if err != nil {
				t.Fatal(err)
			}
			l, _, _, err := node.OpenLog(ctx, cfg, mk, eventlog.Options{Logger: testutil.Logger(t)})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			after, err := l.StreamLastSeq(ctx, eventlog.Workflows.Name)
			if err != nil {
				t.Fatal(err)
			}
			if tc.want == projections.ErrAheadOfLog && after != 0 {
				t.Fatalf("the refused start wrote %d records", after)
			}
			if tc.want == eventlog.ErrLogLost && after == 0 {
				t.Fatal("the stream that lost part of a block reads as empty: the check saw nothing to refuse")
			}
		})
	}
}

// A taken HTTP address stops the server before it touches its data dir:
// a first start that failed after bootstrap showed the admin key only in
// the output of a failed run, and no later start shows it again.
func TestTakenHTTPAddressStopsTheStartFirst(t *testing.T) {
	t.Parallel()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	cfg := nodetest.SecureConfig(filepath.Join(t.TempDir(), "data"))
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil { // a volume made beforehand
		t.Fatal(err)
	}
	var banner bytes.Buffer
	cfg.BootstrapOutput = &banner
	cfg.HTTPAddr = taken.Addr().String()
	if _, err := node.Start(context.Background(), cfg, testutil.Logger(t)); err == nil || !strings.Contains(err.Error(), "listen") {
		t.Fatalf("start on a taken address: %v", err)
	}
	if banner.Len() != 0 {
		t.Fatalf("the failed start showed the bootstrap key: %q", banner.String())
	}
	entries, err := os.ReadDir(cfg.DataDir)
	if err != nil || len(entries) != 0 {
		t.Fatalf("the failed start wrote to the data dir: %v %v", entries, err)
	}
	cfg.HTTPAddr = "127.0.0.1:0"
	n, err := node.Start(context.Background(), cfg, testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer stop(t, n)
	if !strings.Contains(banner.String(), "keySecret:") {
		t.Fatal("the start that got through showed no bootstrap key")
	}
}

// A starting server answers from the first moment: every request gets a
// retryable 503 until it has started, so that a probe tells it from a
// dead one and no client hangs. Here the start waits for a NATS server
// that accepted the connection and says nothing.
func TestStartingServerAnswers503(t *testing.T) {
	t.Parallel()
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	connected := make(chan net.Conn, 1)
	go func() {
		if c, err := silent.Accept(); err == nil {
			connected <- c
		}
	}()
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := free.Addr().String()
	free.Close()

	cfg := nodetest.Config(filepath.Join(t.TempDir(), "data"))
	cfg.HTTPAddr, cfg.NATSURL = addr, "nats://"+silent.Addr().String()
	started := make(chan error, 1)
	go func() {
		n, err := node.Start(context.Background(), cfg, testutil.Logger(t))
		if err == nil {
			stop(t, n)
		}
		started <- err
	}()
	c := <-connected // the start waits for the silent server's answer
	defer c.Close()
	resp, err := http.Get("http://" + addr + "/health")
	if err != nil {
		t.Fatalf("the starting server does not answer: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("the starting server answered %d %v, want a retryable 503", resp.StatusCode, resp.Header)
	}
	// Its metrics answer meanwhile, as they will once it has started.
	if code, body := get(t, "http://"+addr+"/metrics"); code != http.StatusOK || !strings.Contains(body, "go_goroutines") {
		t.Fatalf("the starting server's /metrics = %d %.300s, want its metrics", code, body)
	}
	if err := <-started; err == nil {
		t.Fatal("started without a NATS server that answers")
	}
}
