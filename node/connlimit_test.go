package node_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/flowvault/flowvault/internal/nodetest"
	"github.com/flowvault/flowvault/internal/testutil"
)

// Idle keep-alive connections, which need no token, hold at most
// --http-max-conns file descriptors: the next connection is refused at
// once (a 503, or reset when its request crossed the close) and never
// served, and once they close, requests are served again. Unbounded, 21,000
// of them took the event log's last descriptors.
func TestHTTPConnectionsBounded(t *testing.T) {
	t.Parallel()
	const max = 4
	cfg := nodetest.Config(filepath.Join(t.TempDir(), "data"))
	cfg.HTTPMaxConns = max
	n, base := nodetest.StartConfig(t, cfg)
	// refused reports whether c's request was answered by the listener's
	// refusal rather than served: /health itself may answer 503 on a
	// loaded machine (a probe past its 2 s), which is served.
	refused := func(c net.Conn) (bool, string, error) {
		if _, err := fmt.Fprintf(c, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			return false, "", err
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return false, "", err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return false, "", err
		}
		return resp.StatusCode == http.StatusServiceUnavailable && strings.HasPrefix(string(body), "too many connections"), resp.Status, nil
	}
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for i := 0; ; i++ {
		c, err := net.Dial("tcp", n.HTTPAddr())
		if err != nil {
			t.Fatal(err)
		}
		wasRefused, got, err := refused(c)
		if i < max {
			held = append(held, c) // kept alive: it holds its slot
			if err != nil || wasRefused {
				t.Fatalf("connection %d of %d: %q, %v; want it served", i+1, max, got, err)
			}
			continue
		}
		c.Close()
		if err == nil && !wasRefused || err != nil && !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("connection %d past a bound of %d: %q, %v; want the refusal or reset", i+1, max, got, err)
		}
		break
	}
	for _, c := range held {
		c.Close()
	}
	held = nil
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	testutil.Eventually(t, 10*time.Second, 20*time.Millisecond, func() error {
		resp, err := client.Get(base + "/health")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("health %s after the connections closed", resp.Status)
		}
		return nil
	})
	if v := testutil.MetricValue(t, n.Registry(), "flowvault_http_connections_refused_total", nil); v < 1 {
		t.Fatalf("refused connections counted %v, want at least 1", v)
	}
}

// Worker credentials open at most the workers account's share of the
// embedded NATS server's connections: the server refuses the next one,
// and the engines' account still connects.
func TestNATSWorkerConnectionsBounded(t *testing.T) {
	t.Parallel()
	cfg := nodetest.Config(filepath.Join(t.TempDir(), "data"))
	cfg.NATSMaxConns = 40
	n, _ := nodetest.StartConfig(t, cfg)
	workers := cfg.ConnBudget().Workers
	if workers >= cfg.NATSMaxConns {
		t.Fatalf("workers may hold %d of %d connections: the engines have no room", workers, cfg.NATSMaxConns)
	}
	creds, err := n.WorkerCredentials("bounded_task")
	if err != nil {
		t.Fatal(err)
	}
	connect := func(opts ...nats.Option) (*nats.Conn, error) {
		nc, err := nats.Connect(n.Log().ClientURL(), append(opts, nats.NoReconnect())...)
		if err == nil {
			t.Cleanup(nc.Close)
		}
		return nc, err
	}
	// The workers account opens once the ledger is read: wait for it.
	testutil.Eventually(t, 10*time.Second, 20*time.Millisecond, func() error {
		_, err := connect(creds.Options()...)
		return err
	})
	// The engine's event publisher and listener are in the workers
	// account too: the account's bound counts them.
	opened := 1
	for ; ; opened++ {
		_, err := connect(creds.Options()...)
		if err == nil && opened < workers {
			continue
		}
		if err == nil || !strings.Contains(err.Error(), "maximum account active connections exceeded") {
			t.Fatalf("worker connection %d, past the account's %d: %v; want maximum account active connections exceeded", opened+1, workers, err)
		}
		break
	}
	if opened < workers-4 {
		t.Fatalf("workers opened %d connections of the account's %d", opened, workers)
	}
	engine, err := n.NATS().EngineCredentials()
	if err != nil {
		t.Fatal(err)
	}
	nc, err := connect(engine.Options()...)
	if err != nil {
		t.Fatalf("an engine connection with the workers' share taken: %v", err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	// The server's own bound holds every account, the engines' too: past
	// it a connection is refused before it costs more than a moment's
	// descriptor.
	for i := 0; ; i++ {
		_, err := connect(engine.Options()...)
		if err == nil && i < cfg.NATSMaxConns {
			continue
		}
		// The server says so and closes; a client still writing its
		// CONNECT may see only the close.
		if err == nil || !strings.Contains(err.Error(), "maximum connections exceeded") &&
			!errors.Is(err, syscall.EPIPE) && !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, io.EOF) {
			t.Fatalf("engine connection %d with the server's %d taken: %v; want maximum connections exceeded", i+1, cfg.NATSMaxConns, err)
		}
		break
	}
}
