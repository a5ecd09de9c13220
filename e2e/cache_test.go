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
	"github.com/flowvault/flowvault/masking"
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
	entries := func() (map[string][]byte, error) { return cacheEntries(e) }
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

// cacheEntries reads every entry of the task output cache, by key.
func cacheEntries(e *env) (map[string][]byte, error) {
	ctx := context.Background()
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

// cacheHolding counts the task output cache's entries that hold v.
func cacheHolding(e *env, v string) (int, error) {
	got, err := cacheEntries(e)
	n := 0
	for _, entry := range got {
		if strings.Contains(string(entry), v) {
			n++
		}
	}
	return n, err
}

// tokenOnce answers token on its first run, and "run-again" on every
// later one: a task completed from the cache shows token.
func tokenOnce(token string) workers.Handler {
	var runs atomic.Int32
	return func(context.Context, *conductor.Task) (workers.Output, error) {
		if runs.Add(1) == 1 {
			return workers.Output{Data: map[string]any{"token": token}}, nil
		}
		return workers.Output{Data: map[string]any{"token": "run-again"}}, nil
	}
}

// heldUntil answers an empty output once release is closed.
func heldUntil(release <-chan struct{}) workers.Handler {
	return func(ctx context.Context, _ *conductor.Task) (workers.Output, error) {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return workers.Output{}, nil
	}
}

// An output cached before a value in it went into a _secrets block (a
// later task of its workflow) is dropped from the cache then: the cache
// kept it in plain text until it expired, after the workflow's
// compaction too, and the next workflow whose task had its key completed
// it with the output, showing the value where the first workflow shows
// "***". That workflow's task runs again instead.
func TestCachedOutputFoundSecretLaterLeavesTheCache(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const token = "cached-then-secret-Qw73vX9p"
	e.register(`{"name":"cl_src","tasks":[
	  {"name":"cl_token","taskReferenceName":"a","inputParameters":{"k":"${workflow.input.k}"},"cacheConfig":{"key":"${k}","ttlInSecond":600}},
	  {"name":"cl_mid","taskReferenceName":"b"},
	  {"name":"cl_use","taskReferenceName":"c","inputParameters":{"_secrets":{"t":"${a.output.token}"}}}]}`,
		`{"name":"cl_again","tasks":[
	  {"name":"cl_token","taskReferenceName":"a","inputParameters":{"k":"${workflow.input.k}"},"cacheConfig":{"key":"${k}","ttlInSecond":600}}]}`)
	e.work("cl_token", 1, tokenOnce(token))
	// b waits until a's output is cached: c, which finds it secret, is
	// scheduled by a later decision than the one that cached it.
	release := make(chan struct{})
	e.work("cl_mid", 1, heldUntil(release))
	e.work("cl_use", 1, func(context.Context, *conductor.Task) (workers.Output, error) { return workers.Output{}, nil })
	holding := func() (int, error) { return cacheHolding(e, token) }
	id := e.start("cl_src", map[string]any{"k": "x"})
	testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() error {
		if n, err := holding(); err != nil || n != 1 {
			return fmt.Errorf("%d cache entries hold the value (%v), want 1", n, err)
		}
		return nil
	})
	close(release)
	wf := e.waitStatus(id, conductor.WorkflowCompleted)
	if got := taskByRef(wf, "a").OutputData["token"]; got != masking.Mask {
		t.Fatalf("a's output token reads %d characters, want %q", len(fmt.Sprint(got)), masking.Mask)
	}
	testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() error {
		if n, err := holding(); err != nil || n != 0 {
			return fmt.Errorf("%d cache entries hold the value found secret (%v)", n, err)
		}
		return nil
	})
	if got := testutil.MetricValue(t, e.node.Registry(), "flowvault_engine_task_cache_total", map[string]string{"result": "dropped"}); got != 1 {
		t.Errorf("task_cache_total{result=\"dropped\"} = %v, want 1", got)
	}
	again := e.waitStatus(e.start("cl_again", map[string]any{"k": "x"}), conductor.WorkflowCompleted)
	if got := taskByRef(again, "a").OutputData["token"]; got != "run-again" {
		t.Errorf("the next workflow's a has token of %d characters, want the output of a run of its own", len(fmt.Sprint(got)))
	}
}

// An output served from the cache to a task whose value the very decision
// that served it finds secret (the next task, scheduled by it, passes
// the value into a _secrets block) leaves the cache too: the decision
// records the task's output redacted, so the workflow masks nothing there
// (no ValuesMasked) and purged nothing, and the entry, which names the
// workflow that cached it, which masks nothing either, completed the next
// task with the key with the value in plain text. So does one whose key
// is made of a value the decision finds secret too (the next task passes
// the key's input into the block as well): the purge is keyed by the
// input the task was served with, not by the one recorded, redacted.
func TestCachedOutputFoundSecretWhereServedLeavesTheCache(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, key, secrets string
		recorded           string // a's input k as recorded
	}{
		{"the output", "x", `{"t":"${a.output.token}"}`, "x"},
		{"the key's input too", "key-found-secret-Hn52xR", `{"t":"${a.output.token}","k":"${a.input.k}"}`, masking.Mask},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			const token = "served-then-secret-Jm62tQ"
			const fetch = `{"name":"cs_token","taskReferenceName":"a","inputParameters":{"k":"${workflow.input.k}"},"cacheConfig":{"key":"${k}","ttlInSecond":600}}`
			e.register(`{"name":"cs_first","tasks":[`+fetch+`]}`,
				`{"name":"cs_src","tasks":[`+fetch+`,
	  {"name":"cs_use","taskReferenceName":"c","inputParameters":{"_secrets":`+tc.secrets+`}}]}`)
			e.work("cs_token", 1, tokenOnce(token))
			e.work("cs_use", 1, func(context.Context, *conductor.Task) (workers.Output, error) { return workers.Output{}, nil })
			e.waitStatus(e.start("cs_first", map[string]any{"k": tc.key}), conductor.WorkflowCompleted)
			if n, err := cacheHolding(e, token); err != nil || n != 1 {
				t.Fatalf("%d cache entries hold the value (%v), want 1", n, err)
			}

			src := e.waitStatus(e.start("cs_src", map[string]any{"k": tc.key}), conductor.WorkflowCompleted)
			if got := testutil.MetricValue(t, e.node.Registry(), "flowvault_engine_task_cache_total", map[string]string{"result": "hit"}); got != 1 {
				t.Fatalf("task_cache_total{result=\"hit\"} = %v, want 1: a completed from the first workflow's entry", got)
			}
			if got := taskByRef(src, "a").OutputData["token"]; got != masking.Mask {
				t.Fatalf("a's token reads %d characters, want %q", len(fmt.Sprint(got)), masking.Mask)
			}
			if got := taskByRef(src, "a").InputData["k"]; got != tc.recorded {
				t.Fatalf("a's k reads %d characters, want %q", len(fmt.Sprint(got)), tc.recorded)
			}
			// Purged before the decision was recorded (Required).
			if n, err := cacheHolding(e, token); err != nil || n != 0 {
				t.Errorf("%d cache entries hold the value found secret (%v)", n, err)
			}
			again := e.waitStatus(e.start("cs_first", map[string]any{"k": tc.key}), conductor.WorkflowCompleted)
			if got := taskByRef(again, "a").OutputData["token"]; got != "run-again" {
				t.Errorf("the next workflow's a has token of %d characters, want the output of a run of its own", len(fmt.Sprint(got)))
			}
			if got := testutil.MetricValue(t, e.node.Registry(), "flowvault_engine_task_cache_total", map[string]string{"result": "dropped"}); got != 1 {
				t.Errorf("task_cache_total{result=\"dropped\"} = %v, want 1", got)
			}
		})
	}
}

// An output a child cached, in which the workflow that started it finds a
// value to be secret once the child ended (a later task of the parent
// passes the child's output into a _secrets block), leaves the cache too:
// the child, told of the value (ValuesFound), masks it and drops the entry,
// and the next child whose task has the key runs it again.
func TestCachedOutputFoundSecretByTheParentLeavesTheCache(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const token = "cached-then-found-Zr41kW8m"
	const sub = `{"name":"sub","taskReferenceName":"sub","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"clp_child"},"inputParameters":{"k":"${workflow.input.k}"}}`
	e.register(`{"name":"clp_child","tasks":[
	  {"name":"clp_token","taskReferenceName":"a","inputParameters":{"k":"${workflow.input.k}"},"cacheConfig":{"key":"${k}","ttlInSecond":600}}],
	  "outputParameters":{"token":"${a.output.token}"}}`,
		`{"name":"clp_parent","tasks":[`+sub+`,
	  {"name":"gate","taskReferenceName":"gate","type":"WAIT"},
	  {"name":"clp_use","taskReferenceName":"c","inputParameters":{"_secrets":{"t":"${sub.output.token}"}}}]}`,
		`{"name":"clp_again","tasks":[`+sub+`]}`)
	e.work("clp_token", 1, tokenOnce(token))
	e.work("clp_use", 1, func(context.Context, *conductor.Task) (workers.Output, error) { return workers.Output{}, nil })
	holding := func() (int, error) { return cacheHolding(e, token) }
	id := e.start("clp_parent", map[string]any{"k": "x"})
	child := ""
	testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() error {
		s := taskByRef(e.workflow(id), "sub")
		if s == nil || s.Status != conductor.TaskCompleted {
			return fmt.Errorf("the child has not ended yet")
		}
		child = s.SubWorkflowID
		if n, err := holding(); err != nil || n != 1 {
			return fmt.Errorf("%d cache entries hold the value (%v), want 1", n, err)
		}
		return nil
	})
	// The parent finds the value by a decision of its own, after the
	// child's ended: only the child's news of it can drop the entry.
	e.must(http.StatusOK, "POST", "/api/tasks/"+id+"/gate/COMPLETED", nil)
	e.waitStatus(id, conductor.WorkflowCompleted)
	testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() error {
		if got := taskByRef(e.workflow(child), "a").OutputData["token"]; got != masking.Mask {
			return fmt.Errorf("the child's a has token of %d characters, want %q", len(fmt.Sprint(got)), masking.Mask)
		}
		if n, err := holding(); err != nil || n != 0 {
			return fmt.Errorf("%d cache entries hold the value found secret (%v)", n, err)
		}
		return nil
	})
	again := e.waitStatus(e.start("clp_again", map[string]any{"k": "x"}), conductor.WorkflowCompleted)
	if got := taskByRef(e.workflow(taskByRef(again, "sub").SubWorkflowID), "a").OutputData["token"]; got != "run-again" {
		t.Errorf("the next child's a has token of %d characters, want the output of a run of its own", len(fmt.Sprint(got)))
	}
	if got := testutil.MetricValue(t, e.node.Registry(), "flowvault_engine_task_cache_total", map[string]string{"result": "dropped"}); got != 1 {
		t.Errorf("task_cache_total{result=\"dropped\"} = %v, want 1", got)
	}
}
