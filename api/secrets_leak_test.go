package api_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flowvault/flowvault/internal/leaktest"
	"github.com/flowvault/flowvault/internal/nodetest"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/node"
)

// The secret store's leak test: a random secret planted through the REST
// API is read, listed, tagged, re-keyed and deleted, and then searched for,
// with its base64, hex, URL and JSON forms, in every response but the one
// GET that returns it, the server's log output, /metrics, every message of
// every stream, every file of the data directory and every Pebble key and
// value. It must be nowhere.
func TestSecretLeak(t *testing.T) {
	t.Parallel()
	secret := leaktest.RandomSecret(32)
	sc := leaktest.New(secret)

	dir := filepath.Join(t.TempDir(), "data")
	cfg := nodetest.Config(dir)
	cfg.MasterKey = nil // dev mode: the master key is in the data dir, which is scanned too
	logger, logs := testutil.CapturingLogger()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	n, err := node.Start(ctx, cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			n.Stop(context.Background())
		}
	}()
	base := "http://" + n.HTTPAddr()
	u := base + "/api/secrets/"

	// Only GET /api/secrets/leaky returns the value; everything else is scanned.
	valueGET := func(r *http.Request) bool {
		return r.Method == "GET" && (r.URL.Path == "/api/secrets/leaky" || r.URL.Path == "/api/secrets/leaky_json")
	}
	c := sc.Client(valueGET)
	jsonLiteral := mustJSON(t, string(secret))

	call(t, c, "PUT", u+"leaky", "text/plain", string(secret)).expect(t, http.StatusOK)
	call(t, c, "PUT", u+"leaky_json", "application/json", jsonLiteral).expect(t, http.StatusOK)
	call(t, c, "PUT", u+"other", "text/plain", "unrelated").expect(t, http.StatusOK)
	for _, name := range []string{"leaky", "leaky_json"} {
		if r := call(t, c, "GET", u+name, "", ""); r.body != string(secret) {
			t.Fatalf("GET %s does not return the value (%d, %d bytes)", name, r.status, len(r.body))
		}
	}
	// Everything else a client can do to it.
	for _, rq := range []struct{ method, path, ct, body string }{
		{"GET", "leaky/exists", "", ""},
		{"GET", "leaky/metadata", "", ""},
		{"PUT", "leaky/tags", "application/json", `[{"key":"env","value":"prod"}]`},
		{"GET", "leaky/tags", "", ""},
		{"GET", "", "", ""},
		{"POST", "", "", ""},
		{"GET", "v2", "", ""},
		{"GET", "clearLocalCache", "", ""},
		{"GET", "clearRedisCache", "", ""},
		// Refused writes that carry the value must not echo it.
		{"PUT", "bad.name", "text/plain", string(secret)},
		{"PUT", "binary", "application/octet-stream", string(secret) + "\xff"},
		{"PUT", "huge", "text/plain", strings.Repeat(string(secret), 2100)},
		{"PUT", "v2", "application/json", jsonLiteral},
		{"PUT", "leaky/tags", "application/json", `[{"key":"` + url.QueryEscape(string(secret))},
		{"DELETE", "leaky/tags", "application/json", `[{"key":"env","value":"prod"}]`},
	} {
		call(t, c, rq.method, u+rq.path, rq.ct, rq.body)
	}
	call(t, c, "GET", base+"/api/secrets-v2", "", "")
	// A new master key term re-wraps the data keys; the value still reads.
	res, err := n.Keys().Rotate(ctx)
	if err != nil || res.Rewrapped < 3 {
		t.Fatalf("rotate = %+v, %v", res, err)
	}
	n.Keys().ClearCache()
	if r := call(t, c, "GET", u+"leaky", "", ""); r.body != string(secret) {
		t.Fatal("value unreadable after rotation")
	}
	// Replace one, delete both.
	call(t, c, "PUT", u+"leaky_json", "text/plain", "replaced").expect(t, http.StatusOK)
	call(t, c, "DELETE", u+"leaky", "", "").expect(t, http.StatusOK)
	call(t, c, "DELETE", u+"leaky_json", "", "").expect(t, http.StatusOK)
	call(t, c, "GET", u+"leaky/exists", "", "").expect(t, http.StatusNotFound)
	call(t, c, "GET", u+"leaky/metadata", "", "").expect(t, http.StatusNotFound)
	call(t, c, "GET", base+"/metrics", "", "").expect2xx(t)

	sc.ScanStreams(t, n.Log().JetStream())
	for _, s := range []string{"FV_SECRET", "KV_FV_KEYS"} {
		if !strings.Contains(fmt.Sprint(sc.Streams()), s) {
			t.Fatalf("stream %s not scanned (scanned %v)", s, sc.Streams())
		}
	}
	if err := n.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	stopped = true
	sc.Scan("log output", []byte(logs.String()))
	sc.ScanDir(t, dir)
	sc.ScanPebble(t, cfg.PebbleDir())
	sc.Check(t)

	scanned := sc.Scanned()
	for _, cat := range []string{"http", "stream", "file", "pebble", "log"} {
		if scanned[cat] == 0 {
			t.Fatalf("nothing scanned in %s: %v", cat, scanned)
		}
	}
	if !strings.Contains(logs.String(), "secrets changed") {
		t.Fatal("the captured log does not show the secret writes: was the right logger captured?")
	}
}

func (r response) expect2xx(t *testing.T) {
	t.Helper()
	if r.status/100 != 2 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
}
