package e2e_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/flowvault/flowvault/internal/nodetest"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/node"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/workers"
)

// With a certificate, the API answers over HTTPS only and the NATS
// listener speaks TLS only: a secret reaches a worker that trusts the
// certificate, and nothing answers in plaintext on either port.
func TestTLS(t *testing.T) {
	t.Parallel()
	certFile, keyFile, pool := testutil.TLSCert(t)
	cfg := nodetest.Config(filepath.Join(t.TempDir(), "data"))
	cfg.TLSCertFile, cfg.TLSKeyFile = certFile, keyFile
	n, base := nodetest.StartConfig(t, cfg)
	if !strings.HasPrefix(base, "https://") {
		t.Fatalf("base URL %s", base)
	}
	e := &env{t: t, node: n, base: base,
		client: &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}}

	const value = "tls-secret-7c1e9a0b5d"
	e.must(http.StatusOK, "PUT", "/api/secrets/tls_token", value)
	e.register(`{"name":"tls_flow","version":1,"tasks":[{"name":"tls_task","taskReferenceName":"a",
	  "inputParameters":{"token":"${workflow.secrets.tls_token}"}}]}`)
	creds, err := n.WorkerCredentials("tls_task")
	if err != nil {
		t.Fatal(err)
	}
	nc := nodetest.Connect(t, n, creds, nats.RootCAs(certFile))
	if !nc.TLSRequired() {
		t.Fatal("the worker's connection does not use TLS")
	}
	runWorker(t, nc, "tls_task", 1, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		return workers.Output{Data: map[string]any{"handed": task.InputData["token"] == value}}, nil
	})
	id := e.start("tls_flow", nil)
	if wf := e.waitStatus(id, conductor.WorkflowCompleted); taskByRef(wf, "a").OutputData["handed"] != true {
		t.Fatalf("the worker was not handed the secret: %v", taskByRef(wf, "a").OutputData)
	}

	// Plain HTTP to the API's port gets Go's refusal, not the API.
	res, err := http.Get("http://" + n.HTTPAddr() + "/health")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusBadRequest || strings.Contains(string(body), "healthy") {
		t.Fatalf("plain http: %d %s", res.StatusCode, body)
	}
	// A client that does not trust the certificate is refused.
	if _, err := http.Get(base + "/health"); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("untrusting https client: %v", err)
	}
	if c, err := nats.Connect(n.Log().ClientURL(), creds.Options()...); err == nil {
		c.Close()
		t.Fatal("a NATS client that does not trust the certificate connected")
	}
	// The NATS listener requires TLS before anything else.
	conn, err := net.DialTimeout("tcp", strings.TrimPrefix(n.Log().ClientURL(), "tls://"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	info, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil || !strings.Contains(info, `"tls_required":true`) {
		t.Fatalf("INFO %q, %v: want tls_required", info, err)
	}
}

// A certificate that cannot be read stops the server before it creates
// its data directory.
func TestTLSUnreadableCertificate(t *testing.T) {
	t.Parallel()
	certFile, _, _ := testutil.TLSCert(t)
	cfg := nodetest.Config(filepath.Join(t.TempDir(), "data"))
	cfg.TLSCertFile, cfg.TLSKeyFile = certFile, filepath.Join(t.TempDir(), "missing.pem")
	n, err := node.Start(testutil.Context(t, 30*time.Second), cfg, testutil.Logger(t))
	if err == nil {
		n.Stop(context.Background())
		t.Fatal("started with a key file that does not exist")
	}
	if !strings.Contains(err.Error(), "--tls-key-file") {
		t.Fatalf("start: %v; want an error naming --tls-key-file", err)
	}
	if _, err := os.Stat(cfg.DataDir); !os.IsNotExist(err) {
		t.Fatalf("the data directory: %v; want it not created", err)
	}
}
