package e2e_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/workers"
)

// A task that caches its output runs once for a key: the next workflow
// with the same key completes it from the cache, without a worker or a
// call; another key runs it. What the cache holds went through redaction:
// a worker that echoes a resolved secret leaves "***" there.
func TestCachedTaskOutput(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	token := "cache-token-7f3e91ab"
	e.must(http.StatusOK, "PUT", "/api/secrets/cache_tok", token)
	var calls, runs atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"temp":%d}`, len(r.URL.Query().Get("city")))
	}))
	defer srv.Close()
	e.register(`{"name":"cached_lookup","tasks":[
	  {"name":"lookup","taskReferenceName":"lookup","inputParameters":{"city":"${workflow.input.city}","tok":"${workflow.secrets.cache_tok}"},
	   "cacheConfig":{"key":"${city}","ttlInSecond":600}},
	  {"name":"weather","taskReferenceName":"weather","type":"HTTP","inputParameters":{"http_request":{"uri":"` + srv.URL + `?city=${workflow.input.city}","method":"GET"},"city":"${workflow.input.city}"},
	   "cacheConfig":{"key":"${city}","ttlInSecond":"600"}}],
	  "outputParameters":{"id":"${lookup.output.id}","echo":"${lookup.output.echo}","temp":"${weather.output.response.body.temp}"}}`)
	e.work("lookup", 2, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		n := runs.Add(1)
		return workers.Output{Data: map[string]any{"id": n, "echo": task.InputData["tok"]}}, nil
	})

	run := func(city string) *conductor.Workflow {
		t.Helper()
		return e.waitStatus(e.start("cached_lookup", map[string]any{"city": city}), "COMPLETED")
	}
	ctx := context.Background()
	entries := func() (map[string][]byte, error) {
		kv, err := e.node.Log().JetStream().KeyValue(ctx, "FV_TASK_CACHE")
		if err != nil {
			return nil, err
		}
		keys, err := kv.ListKeys(ctx)
		if err != nil {
			return nil, err
		}
		out := map[string][]byte{}
		for k := range keys.Keys() {
			entry, err := kv.Get(ctx, k)
			if err != nil && err != jetstream.ErrKeyNotFound {
				return nil, err
			}
			if entry != nil {
				out[k] = entry.Value()
			}
		}
		return out, nil
	}
	cachedSoon := func(want int) {
		t.Helper()
		// An output is cached by an effect of the decision that completed
		// its task, which may follow the workflow's end by a moment.
		testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() error {
			got, err := entries()
			if err == nil && len(got) != want {
				err = fmt.Errorf("%d cache entries, want %d", len(got), want)
			}
			return err
		})
	}
	first := run("paris")
	cachedSoon(2)
	second := run("paris")
	if runs.Load() != 1 || calls.Load() != 1 {
		t.Fatalf("worker ran %d times, the HTTP task called %d times; want once each", runs.Load(), calls.Load())
	}
	if second.Output["id"] != first.Output["id"] || second.Output["temp"] != float64(5) || second.Output["echo"] != "***" {
		t.Fatalf("from the cache: %v, first run %v", second.Output, first.Output)
	}
	if lookup := taskByRef(second, "lookup"); lookup.Status != "COMPLETED" || lookup.WorkerID != "" || lookup.PollCount != 0 {
		t.Fatalf("the cached task was handed out: %+v", lookup)
	}
	third := run("oslo")
	if runs.Load() != 2 || calls.Load() != 2 || third.Output["temp"] != float64(4) {
		t.Fatalf("another key: %d runs, %d calls, output %v", runs.Load(), calls.Load(), third.Output)
	}

	// The cache holds no secret.
	cachedSoon(4)
	// The counters too: a store is counted once its write returned.
	testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() error {
		for result, want := range map[string]float64{"hit": 2, "miss": 4, "stored": 4} {
			if got := testutil.MetricValue(t, e.node.Registry(), "flowvault_engine_task_cache_total", map[string]string{"result": result}); got != want {
				return fmt.Errorf("task_cache_total{result=%q} = %v, want %v", result, got, want)
			}
		}
		return nil
	})
	got, err := entries()
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range got {
		if strings.Contains(string(v), token) {
			t.Fatalf("the cache holds the secret: %s", v)
		}
	}
}
