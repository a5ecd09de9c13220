package node_test

import (
	"bufio"
	"crypto/tls"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flowvault/flowvault/internal/nodetest"
	"github.com/flowvault/flowvault/internal/testutil"
)

// The HTTP server and the embedded NATS server each have their own copy
// of the certificate's TLS configuration: net/http adds HTTP/2's
// protocols to the configuration it serves with, while the start was
// copying the same one for NATS (a data race, and a NATS port that
// offered h2 to a client asking for it, or not, by timing).
func TestTLSConfigurationsAreApart(t *testing.T) {
	t.Parallel()
	certFile, keyFile, pool := testutil.TLSCert(t)
	cfg := nodetest.Config(filepath.Join(t.TempDir(), "data"))
	cfg.TLSCertFile, cfg.TLSKeyFile = certFile, keyFile
	n, base := nodetest.StartConfig(t, cfg)

	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}}
	res, err := client.Get(base + "/health")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.ProtoMajor != 2 {
		t.Errorf("the API answered over %s, want HTTP/2", res.Proto)
	}

	u, err := url.Parse(n.Log().ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// NATS sends its INFO in the clear, then the client starts TLS.
	info, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil || !strings.HasPrefix(info, "INFO ") {
		t.Fatalf("NATS greeting %q: %v", info, err)
	}
	tc := tls.Client(conn, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", NextProtos: []string{"h2"}})
	if err := tc.Handshake(); err != nil {
		t.Fatalf("TLS handshake with NATS: %v", err)
	}
	if p := tc.ConnectionState().NegotiatedProtocol; p != "" {
		t.Fatalf("the NATS port agreed to speak %q", p)
	}
}
