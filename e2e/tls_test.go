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
	"github.com/flowvault/flowvault/natsauth"
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

// A certificate, or client CA, that cannot be read stops the server before it creates
// its data directory.
func TestTLSUnreadableCertificate(t *testing.T) {
	t.Parallel()
	certFile, keyFile, _ := testutil.TLSCert(t)
	missing := filepath.Join(t.TempDir(), "missing.pem")
	for _, tt := range []struct {
		name             string
		key, ca, wantErr string
	}{
		{"a key file that does not exist", missing, "", "--tls-key-file"},
		{"a client CA file that does not exist", keyFile, missing, "read --tls-client-ca-file"},
		{"a client CA file without a certificate", keyFile, keyFile, "holds no PEM certificate"},
	} {
		cfg := nodetest.Config(filepath.Join(t.TempDir(), "data"))
		cfg.TLSCertFile, cfg.TLSKeyFile, cfg.TLSClientCAFile = certFile, tt.key, tt.ca
		n, err := node.Start(testutil.Context(t, 30*time.Second), cfg, testutil.Logger(t))
		if err == nil {
			n.Stop(context.Background())
			t.Fatalf("started with %s", tt.name)
		}
		if !strings.Contains(err.Error(), tt.wantErr) {
			t.Fatalf("start with %s: %v; want an error saying %q", tt.name, err, tt.wantErr)
		}
		if _, err := os.Stat(cfg.DataDir); !os.IsNotExist(err) {
			t.Fatalf("the data directory: %v; want it not created", err)
		}
	}
}

// With --tls-client-ca-file, the API and the NATS listener take only
// clients that show a certificate the CA signed: one without, or with one
// another CA signed, fails its handshake; a client with one gets on with
// its token or credentials as before.
func TestMutualTLS(t *testing.T) {
	t.Parallel()
	certFile, keyFile, pool := testutil.TLSCert(t)
	caFile, issue := testutil.ClientCA(t)
	_, issueElsewhere := testutil.ClientCA(t)
	cfg := nodetest.Config(filepath.Join(t.TempDir(), "data"))
	cfg.TLSCertFile, cfg.TLSKeyFile, cfg.TLSClientCAFile = certFile, keyFile, caFile
	n, base := nodetest.StartConfig(t, cfg)
	signed, foreign := []tls.Certificate{issued(t, issue, "worker-1")}, []tls.Certificate{issued(t, issueElsewhere, "intruder")}
	client := func(certs []tls.Certificate) *http.Client {
		return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: certs}}}
	}

	e := &env{t: t, node: n, base: base, client: client(signed)}
	e.must(http.StatusOK, "GET", "/health", nil)
	e.register(doubleFlow)
	for name, certs := range map[string][]tls.Certificate{"no certificate": nil, "another CA's": foreign} {
		if res, err := client(certs).Get(base + "/health"); err == nil {
			res.Body.Close()
			t.Fatalf("https with %s: %s", name, res.Status)
		}
	}

	creds := mustCreds(t, n, "double")
	for name, certs := range map[string][]tls.Certificate{"no certificate": nil, "another CA's": foreign} {
		opts := append(creds.Options(), nats.Secure(&tls.Config{RootCAs: pool, Certificates: certs}), nats.NoReconnect())
		if c, err := nats.Connect(n.Log().ClientURL(), opts...); err == nil {
			c.Close()
			t.Fatalf("nats with %s connected", name)
		}
	}
	nc := nodetest.Connect(t, n, creds, nats.Secure(&tls.Config{RootCAs: pool, Certificates: signed}))
	runWorker(t, nc, "double", 1, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		n, _ := task.InputData["n"].(float64)
		return workers.Output{Data: map[string]any{"doubled": n * 2}}, nil
	})
	if wf := e.waitStatus(e.start("double_it", map[string]any{"n": 21}), conductor.WorkflowCompleted); wf.Output["doubled"] != 42.0 {
		t.Fatalf("output %v", wf.Output)
	}
}

// A second engine joins a first one's NATS server, which verifies its
// clients, with a client certificate the server's CA signed
// (--nats-tls-cert, --nats-tls-key, --nats-ca); without one it does not
// start.
func TestJoinOverMutualTLS(t *testing.T) {
	t.Parallel()
	certFile, keyFile, pool := testutil.TLSCert(t)
	caFile, issue := testutil.ClientCA(t)
	cfg := nodetest.Config(filepath.Join(t.TempDir(), "data"))
	cfg.TLSCertFile, cfg.TLSKeyFile, cfg.TLSClientCAFile = certFile, keyFile, caFile
	a, _ := nodetest.StartConfig(t, cfg)

	without := nodetest.JoinConfig(t, a, filepath.Join(t.TempDir(), "b"))
	without.NATSCA = certFile
	n, err := node.Start(testutil.Context(t, 30*time.Second), without, testutil.Logger(t))
	if err == nil {
		n.Stop(context.Background())
		t.Fatal("an engine without a client certificate joined")
	}
	// With TLS 1.3 the client may learn of the refusal as a certificate
	// alert or only as the connection closed after the handshake.
	if msg := err.Error(); !strings.Contains(msg, "connect nats") || !strings.Contains(msg, "tls") {
		t.Fatalf("start without a client certificate: %v; want the TLS layer's refusal", err)
	}

	join := nodetest.JoinConfig(t, a, filepath.Join(t.TempDir(), "c"))
	join.NATSCA = certFile
	join.NATSTLSCert, join.NATSTLSKey = issue("engine-b")
	b, base := nodetest.StartConfig(t, join)
	e := &env{t: t, node: b, base: base}
	e.register(doubleFlow)
	runWorker(t, nodetest.Connect(t, a, mustCreds(t, a, "double"), nats.Secure(&tls.Config{RootCAs: pool, Certificates: []tls.Certificate{issued(t, issue, "worker")}})),
		"double", 1, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
			n, _ := task.InputData["n"].(float64)
			return workers.Output{Data: map[string]any{"doubled": n * 2}}, nil
		})
	if wf := e.waitStatus(e.start("double_it", map[string]any{"n": 4}), conductor.WorkflowCompleted); wf.Output["doubled"] != 8.0 {
		t.Fatalf("output %v", wf.Output)
	}
}

func mustCreds(t *testing.T, n *node.Node, taskTypes ...string) *natsauth.Credentials {
	t.Helper()
	c, err := n.WorkerCredentials(taskTypes...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// issued is a client certificate issue makes for name.
func issued(t *testing.T, issue func(string) (string, string), name string) tls.Certificate {
	t.Helper()
	c, err := tls.LoadX509KeyPair(issue(name))
	if err != nil {
		t.Fatal(err)
	}
	return c
}
