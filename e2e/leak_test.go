package e2e_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowvault/flowvault/internal/leaktest"
	"github.com/flowvault/flowvault/internal/nodetest"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/masking"
	"github.com/flowvault/flowvault/node"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/secrets"
	"github.com/flowvault/flowvault/workers"
)

// The leak test. A random secret is planted, resolved into a worker task
// and an HTTP task; the worker echoes it in its output (plain, base64, URL
// encoded), in a log line and in an error message, and writes more random
// data under _secrets, which a downstream task receives. The workflow runs
// to completion and past compaction. Then both values are searched for, in
// all their encodings, in every REST response (the search API included),
// the server's log output, /metrics, every message of every stream read
// through the NATS API, every file under the data dir and every Pebble key
// and value: zero hits. With the master key at hand, the compacted _secrets
// value cannot be recovered: its key is gone from the key store and from
// the disk.
func TestLeak(t *testing.T) {
	t.Parallel()
	secret := leaktest.RandomSecret(32)
	data := leaktest.RandomSecret(32)
	scSecret, scData := leaktest.New(secret), leaktest.New(data)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// dev mode: the master key file is in the scanned data dir
	n := startLeakNode(ctx, t, func(cfg *node.Config) { cfg.MasterKey = nil })
	base := "http://" + n.HTTPAddr()
	// Every response is scanned for both values; none is exempt.
	client := scSecret.Client(func(*http.Request) bool { return false })
	client.Transport = scannerTransport{next: client.Transport, sc: scData}
	e := &env{t: t, node: n.Node, base: base}

	var remoteMu sync.Mutex
	var remoteAuth string
	remote := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		remoteMu.Lock()
		remoteAuth = r.Header.Get("Authorization")
		remoteMu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"youSent":%q}`, r.Header.Get("Authorization"))
	}))
	defer remote.Close()

	put, _ := http.NewRequest("PUT", base+"/api/secrets/leak", strings.NewReader(string(secret)))
	put.Header.Set("Content-Type", "text/plain")
	if res, err := client.Do(put); err != nil || res.StatusCode != 200 {
		t.Fatalf("put secret: %v %v", res, err)
	}
	e.must(http.StatusNoContent, "POST", "/api/metadata/taskdefs", `[{"name":"leaker","retryCount":1,"retryDelaySeconds":0}]`)
	e.register(`{"name":"leaky","tasks":[
	  {"name":"leaker","taskReferenceName":"leaker","inputParameters":{"s":"${workflow.secrets.leak}","auth":"Bearer ${workflow.secrets.leak}"}},
	  {"name":"consumer","taskReferenceName":"consumer","inputParameters":{"d":"${leaker.output._secrets.data}"}},
	  {"name":"call","taskReferenceName":"call","type":"HTTP","inputParameters":{"http_request":{"uri":"` + remote.URL + `","method":"GET",
	    "headers":{"Authorization":"Bearer ${workflow.secrets.leak}"}}}}],
	  "outputParameters":{"echo":"${leaker.output.echo}","d":"${leaker.output._secrets}"}}`)

	var mu sync.Mutex
	attempts := 0
	e.work("leaker", 1, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		s := task.InputData["s"].(string)
		if s != string(secret) || task.InputData["auth"] != "Bearer "+string(secret) {
			return workers.Output{}, workers.ErrTerminal
		}
		mu.Lock()
		attempts++
		first := attempts == 1
		mu.Unlock()
		if first {
			return workers.Output{}, fmt.Errorf("the upstream rejected credential %s", s)
		}
		return workers.Output{Data: map[string]any{
			"echo": s, "b64": base64.StdEncoding.EncodeToString([]byte(s)), "url": "https://x/?t=" + url.QueryEscape(s),
			"hex":      fmt.Sprintf("sent %X", "Bearer "+s),
			"_secrets": map[string]any{"data": string(data)},
		}, Logs: []string{"authenticated with " + s, "sent " + hex.EncodeToString([]byte(s))}}, nil
	})
	received := make(chan string, 1)
	e.work("consumer", 1, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		received <- fmt.Sprint(task.InputData["d"])
		return workers.Output{Data: map[string]any{"ok": true}}, nil
	})
	id := e.start("leaky", nil)
	if got := <-received; got != string(data) {
		t.Fatal("the downstream task did not receive the _secrets value")
	}
	e.waitStatus(id, conductor.WorkflowCompleted)
	remoteMu.Lock()
	if remoteAuth != "Bearer "+string(secret) {
		t.Fatal("the HTTP task did not send the resolved secret")
	}
	remoteMu.Unlock()

	// The workflow's _secrets key, wrapped, as the key store holds it now.
	js := n.Log().JetStream()
	keyID := e.secretsKey(id)
	bucket, entryKey := secrets.DataKeyEntry(keyID)
	kv, err := js.KeyValue(ctx, bucket)
	if err != nil {
		t.Fatal(err)
	}
	entry, err := kv.Get(ctx, entryKey)
	if err != nil {
		t.Fatalf("the workflow's secrets key is not in the key store before compaction: %v", err)
	}
	wrapped := append([]byte(nil), entry.Value()...)

	testutil.Eventually(t, 30*time.Second, 100*time.Millisecond, func() error {
		for _, ev := range e.events(id) {
			if _, ok := ev.(*schemas.WorkflowCompacted); ok {
				return nil
			}
		}
		return errors.New("not compacted yet")
	})

	// A webhook verified with the secret: a delivery that carries it, and
	// one that carries it wrong.
	e.register(`{"name":"hooked","tasks":[{"name":"v","taskReferenceName":"v","type":"SET_VARIABLE","inputParameters":{"n":"${workflow.input.n}"}}]}`)
	// deliver posts a delivery to webhook cfg (the JSON a save answered)
	// through the scanning client; it must be answered want.
	deliver := func(cfg string, header, value, body string, want int) {
		t.Helper()
		var c conductor.WebhookConfig
		if err := json.Unmarshal([]byte(cfg), &c); err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequest("POST", base+"/webhook/"+c.ID, strings.NewReader(body))
		req.Header.Set(header, value)
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != want {
			t.Fatalf("delivery to %s with %s: %d, want %d", c.Name, header, res.StatusCode, want)
		}
	}
	hook := e.must(http.StatusOK, "POST", "/api/metadata/webhook", map[string]any{"name": "leak-hook", "verifier": "HEADER_BASED",
		"headers": map[string]string{"X-Leak": "${workflow.secrets.leak}"}, "workflowsToStart": map[string]int{"hooked": 0}})
	deliver(hook, "X-Leak", string(secret), `{"n":1}`, http.StatusOK)
	deliver(hook, "X-Leak", string(secret)+"x", `{"n":1}`, http.StatusUnauthorized)

	// A Stripe webhook whose signing secret is the secret: a delivery
	// signed with it, and a stale one.
	stripe := e.must(http.StatusOK, "POST", "/api/metadata/webhook", map[string]any{"name": "leak-stripe", "verifier": "STRIPE",
		"secretValue": "${workflow.secrets.leak}", "workflowsToStart": map[string]int{"hooked": 0}})
	for at, want := range map[time.Time]int{time.Now(): http.StatusOK, time.Now().Add(-time.Hour): http.StatusUnauthorized} {
		ts := strconv.FormatInt(at.Unix(), 10)
		mac := hmac.New(sha256.New, secret)
		mac.Write([]byte(ts + `.{"n":2}`))
		deliver(stripe, "Stripe-Signature", "t="+ts+",v1="+hex.EncodeToString(mac.Sum(nil)), `{"n":2}`, want)
	}

	// Schemas the secret breaks, at hand-off and in a worker's output:
	// what the refusals say must not quote it.
	e.must(http.StatusNoContent, "POST", "/api/schema", `[{"name":"leak_in","type":"JSON","data":{"properties":{"s":{"pattern":"^nope-","minLength":99}}}},
	  {"name":"leak_out","type":"JSON","data":{"properties":{"echo":{"type":"integer","enum":[1]}}}}]`)
	e.must(http.StatusNoContent, "POST", "/api/metadata/taskdefs", `[{"name":"schema_in","enforceSchema":true,"inputSchema":{"name":"leak_in"}},
	  {"name":"schema_out","retryCount":0,"enforceSchema":true,"outputSchema":{"name":"leak_out"}}]`)
	e.register(`{"name":"schema_leaky","tasks":[
	  {"name":"schema_out","taskReferenceName":"out","optional":true,"inputParameters":{"s":"${workflow.secrets.leak}"}},
	  {"name":"schema_in","taskReferenceName":"in","inputParameters":{"s":"${workflow.secrets.leak}"}}]}`)
	e.work("schema_out", 1, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		return workers.Output{Data: map[string]any{"echo": task.InputData["s"]}}, nil
	})
	e.work("schema_in", 1, func(context.Context, *conductor.Task) (workers.Output, error) {
		return workers.Output{}, errors.New("handed an input its schema refuses")
	})
	refused := e.waitStatus(e.start("schema_leaky", nil), conductor.WorkflowFailed)
	for _, ref := range []string{"out", "in"} {
		if task := taskByRef(refused, ref); !strings.Contains(task.ReasonForIncompletion, "does not conform to schema leak_") {
			t.Fatalf("task %s: %s %q", ref, task.Status, task.ReasonForIncompletion)
		}
	}

	// Every read path a client has.
	for _, path := range []string{
		"/api/workflow/" + id + "?includeTasks=true", "/api/workflow/" + id + "/status?includeOutput=true&includeVariables=true",
		"/api/workflow/search?freeText=*&size=100", "/api/workflow/search-v2?freeText=*", "/api/tasks/search?freeText=*&size=100",
		"/api/workflow/" + id + "/tasks", "/api/secrets", "/api/secrets-v2", "/api/secrets/leak/exists", "/api/secrets/leak/metadata",
		"/api/metadata/workflow", "/api/event", "/api/metadata/webhook", "/api/audit", "/api/workers/credentials?includeExpired=true", "/api/schema",
		"/metrics", "/health",
	} {
		res, err := client.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != 200 {
			t.Fatalf("GET %s: %d", path, res.StatusCode)
		}
	}
	for _, task := range e.workflow(id).Tasks {
		for _, p := range []string{"/api/tasks/" + task.TaskID, "/api/tasks/" + task.TaskID + "/log"} {
			res, err := client.Get(base + p)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
		}
	}

	// With the master key at hand, the compacted value is unrecoverable:
	// the key store no longer has its key, and the log only its ciphertext.
	n.Keys().ClearCache()
	if _, err := n.Keys().DataKey(ctx, keyID); !errors.Is(err, secrets.ErrKeyDestroyed) {
		t.Fatalf("the compacted workflow's key is still readable: %v", err)
	}
	pooled, err := n.Keys().PooledKeyIDs(ctx)
	if err != nil || slices.Contains(pooled, keyID) {
		t.Fatalf("key %s still listed among %d pooled keys (%v)", keyID, len(pooled), err)
	}
	sealedInLog := false
	for _, ev := range e.events(id) {
		if u, ok := ev.(*schemas.TaskUpdated); ok {
			if s, ok := u.Output["_secrets"].(map[string]any); ok {
				_, sealedInLog = s["data"].(*masking.Sealed)
			}
		}
	}
	if !sealedInLog {
		t.Fatal("the log does not hold the _secrets value sealed")
	}

	for _, sc := range []*leaktest.Scanner{scSecret, scData} {
		sc.ScanStreams(t, js)
	}
	scKey := leaktest.New(wrapped)
	scKey.ScanStreams(t, js)
	n.stopAndScan(t, scSecret, scData, scKey)
	t.Log("the secret")
	scSecret.Check(t)
	t.Log("the _secrets data")
	scData.Check(t)
	t.Log("the wrapped key of the compacted workflow")
	scKey.Check(t)
	for _, sc := range []*leaktest.Scanner{scSecret, scData} {
		scanned := sc.Scanned()
		for _, cat := range []string{"http", "stream", "file", "pebble", "log"} {
			if scanned[cat] == 0 {
				t.Fatalf("nothing scanned in %s: %v", cat, scanned)
			}
		}
	}
}

// scannerTransport scans responses with a second scanner.
type scannerTransport struct {
	next http.RoundTripper
	sc   *leaktest.Scanner
}

func (s scannerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	res, err := s.next.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	s.sc.Scan("http "+r.Method+" "+r.URL.Path, body)
	res.Body = io.NopCloser(strings.NewReader(string(body)))
	return res, nil
}

// leakNode is a node a leak test searches: on a data dir of its own, with
// a short compaction delay and its log captured.
type leakNode struct {
	*node.Node
	cfg     node.Config
	logs    *testutil.LogBuffer
	stopped bool
}

// startLeakNode starts a leakNode, its configuration changed by adjust
// (nil: as nodetest's); the test's end stops it unless stopAndScan did.
func startLeakNode(ctx context.Context, t *testing.T, adjust func(*node.Config)) *leakNode {
	t.Helper()
	cfg := nodetest.Config(filepath.Join(t.TempDir(), "data"))
	cfg.CompactionDelay = time.Second
	if adjust != nil {
		adjust(&cfg)
	}
	return startLeakNodeConfig(ctx, t, cfg)
}

// startLeakNodeConfig starts a leakNode with cfg.
func startLeakNodeConfig(ctx context.Context, t *testing.T, cfg node.Config) *leakNode {
	t.Helper()
	logger, logs := testutil.CapturingLogger()
	n, err := node.Start(ctx, cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	ln := &leakNode{Node: n, cfg: cfg, logs: logs}
	t.Cleanup(func() {
		if !ln.stopped {
			n.Stop(context.Background())
		}
	})
	return ln
}

// hunt is a leakNode searched for a random value of each of a test's
// names, and an env on it whose answers are searched for them.
type hunt struct {
	*leakNode
	e        *env
	vals     map[string]string
	scanners []*leaktest.Scanner
	names    []string
}

// startHunt starts a hunt of a value for each of names (the name's first
// two letters and 30 random ones), the secret tok holding vals["tok"]
// when tok is one of them; the node lives until the test's end or scan.
func startHunt(t *testing.T, names ...string) *hunt {
	t.Helper()
	vals := map[string]string{}
	for _, name := range names {
		vals[name] = name[:2] + alnum(30)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	t.Cleanup(cancel) // after the node's stop, registered later
	h := &hunt{leakNode: startLeakNode(ctx, t, nil), vals: vals}
	h.scanners, h.names = scannersOf(vals)
	h.e = h.env(t, h.scanners...)
	if tok, ok := vals["tok"]; ok {
		h.e.putSecret("tok", tok)
	}
	return h
}

// scan searches everything for each value (scanEverything).
func (h *hunt) scan(t *testing.T) { h.scanEverything(t, h.scanners, h.names) }

// env is an env on the node whose client has each scanner search every
// answer.
func (ln *leakNode) env(t *testing.T, scanners ...*leaktest.Scanner) *env {
	var rt http.RoundTripper = http.DefaultTransport
	for _, sc := range scanners {
		rt = scannerTransport{next: rt, sc: sc}
	}
	return &env{t: t, node: ln.Node, base: "http://" + ln.HTTPAddr(), client: &http.Client{Timeout: 30 * time.Second, Transport: rt}}
}

// stopAndScan stops the node and has each scanner search its log output,
// every file of its data dir and every Pebble key and value: what only a
// stopped node's files hold whole.
func (ln *leakNode) stopAndScan(t *testing.T, scanners ...*leaktest.Scanner) {
	t.Helper()
	ln.stop(t)
	for _, sc := range scanners {
		sc.Scan("log output", []byte(ln.logs.String()))
		sc.ScanDir(t, ln.cfg.DataDir)
		sc.ScanPebble(t, ln.cfg.PebbleDir())
	}
}

// stopAndScanPebble stops the node and has sc search its Pebble files and
// every key and value, failing the test on each hit: what the read models
// keep, where the log's records may hold a value as it was given.
func (ln *leakNode) stopAndScanPebble(t *testing.T, sc *leaktest.Scanner) {
	t.Helper()
	ln.stop(t)
	sc.ScanDir(t, ln.cfg.PebbleDir())
	sc.ScanPebble(t, ln.cfg.PebbleDir())
	sc.Check(t)
}

// stop stops the node, for its files to be read whole.
func (ln *leakNode) stop(t *testing.T) {
	t.Helper()
	if err := ln.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	ln.stopped = true
}

// scanEverything has each scanner search every stream's messages, then
// stops the node for stopAndScan: each hit fails the test, naming the
// value (names[i] is what scanners[i] looks for).
func (ln *leakNode) scanEverything(t *testing.T, scanners []*leaktest.Scanner, names []string) {
	t.Helper()
	js := ln.Log().JetStream()
	for _, sc := range scanners {
		sc.ScanStreams(t, js)
	}
	ln.stopAndScan(t, scanners...)
	for i, sc := range scanners {
		for _, h := range sc.Hits() {
			t.Errorf("the %s value: %s", names[i], h)
		}
	}
}
