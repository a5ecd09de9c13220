package executor

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// changesAfterRead is a cache bucket in which, right after the first
// read, then changes the key read: another engine's write or purge.
type changesAfterRead struct {
	jetstream.KeyValue
	once sync.Once
	then func(ctx context.Context)
}

func (k *changesAfterRead) Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	entry, err := k.KeyValue.Get(ctx, key)
	k.once.Do(func() { k.then(ctx) })
	return entry, err
}

// A drop purges the key's entry once: a key with no entry (never cached,
// or dropped before, as a workflow's later news names the same output
// again) gets no purge marker of its own in the bucket's stream, nor a
// count of an output dropped. An entry purged by its writer between the
// drop's read and its purge (which found the output secret itself) is
// not purged again; one written again then is.
func TestOutputCacheDropsOnlyAnEntry(t *testing.T) {
	t.Parallel()
	rows := []struct {
		name        string
		cached      bool
		drops       int
		afterRead   string // "purged" by its writer, or "written" again
		wantLastSeq uint64 // the bucket's stream's: the entry, then its marker
		wantDropped float64
	}{
		{name: "entry", cached: true, drops: 1, wantLastSeq: 2, wantDropped: 1},
		{name: "entry_dropped_twice", cached: true, drops: 2, wantLastSeq: 2, wantDropped: 1},
		{name: "no_entry", drops: 1, wantLastSeq: 0, wantDropped: 0},
		{name: "entry_purged_after_the_read", cached: true, drops: 1, afterRead: "purged", wantLastSeq: 2, wantDropped: 1},
		{name: "entry_written_after_the_read", cached: true, drops: 1, afterRead: "written", wantLastSeq: 3, wantDropped: 1},
	}
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			reg := prometheus.NewRegistry()
			c := &outputCache{log: testutil.OpenLog(t, ""), logger: testutil.Logger(t), counts: newMetrics(reg).cache}
			const key = "k"
			put := func(ctx context.Context) uint64 {
				rev, err := c.put(ctx, engine.CacheOutput{Key: key, Output: map[string]any{"v": "found-secret-later"}, ExpiresAt: time.Now().Add(time.Hour).UnixMilli()})
				if err != nil {
					t.Error(err)
				}
				return rev
			}
			var rev uint64
			if r.cached {
				rev = put(ctx)
			}
			if r.afterRead != "" {
				kv, err := c.bucket(ctx)
				if err != nil {
					t.Fatal(err)
				}
				c.kv = &changesAfterRead{KeyValue: kv, then: func(ctx context.Context) {
					if r.afterRead == "written" {
						put(ctx)
					} else if err := c.purge(ctx, key, rev); err != nil {
						t.Error(err)
					}
				}}
			}
			for range r.drops {
				if err := c.drop(ctx, key); err != nil {
					t.Fatalf("drop: %v", err)
				}
			}
			kv, err := c.bucket(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := kv.Get(ctx, key); !errors.Is(err, jetstream.ErrKeyNotFound) {
				t.Errorf("get after the drop: %v, want no entry", err)
			}
			s, err := c.log.JetStream().Stream(ctx, "KV_"+cacheBucket)
			if err != nil {
				t.Fatal(err)
			}
			if got := s.CachedInfo().State.LastSeq; got != r.wantLastSeq {
				t.Errorf("the bucket's stream's last sequence is %d, want %d", got, r.wantLastSeq)
			}
			if got := testutil.MetricValue(t, reg, "flowvault_engine_task_cache_total", map[string]string{"result": "dropped"}); got != r.wantDropped {
				t.Errorf("task_cache_total{result=\"dropped\"} = %v, want %v", got, r.wantDropped)
			}
		})
	}
}

// holdsCacheWrites protects nothing, and holds back the decisions'
// CacheOutput effects, for the test to perform when it chooses.
type holdsCacheWrites chan engine.CacheOutput

func (h holdsCacheWrites) Protect(_ context.Context, _ *engine.Workflow, dec engine.Decision) (engine.Decision, error) {
	dec.Effects = slices.DeleteFunc(slices.Clone(dec.Effects), func(eff engine.Effect) bool {
		c, ok := eff.(engine.CacheOutput)
		if ok {
			h <- c
		}
		return ok
	})
	return dec, nil
}

// A task's cached output one of whose values is found secret later
// leaves the cache whatever the order its write and its purge are
// performed in: the purge of the decision that found it (here another
// engine's) may come first, find no entry and write nothing, and the
// write that follows takes the output out again once it reads the
// workflow, from the log, showing the value masked. Either way one
// output is counted dropped, and an output found secret never stays.
func TestCachedOutputFoundSecretLeavesTheCacheInEitherOrder(t *testing.T) {
	t.Parallel()
	rows := []struct {
		name        string
		steps       []string // mask: the decision that finds the value secret; purge: its UncacheOutput; write: the CacheOutput
		wantDropped float64
	}{
		{name: "purged_before_the_write", steps: []string{"mask", "purge", "write"}, wantDropped: 1},
		{name: "masked_before_the_write", steps: []string{"mask", "write", "purge"}, wantDropped: 1},
		{name: "written_before_the_mask", steps: []string{"write", "mask", "purge"}, wantDropped: 1},
		{name: "never_masked", steps: []string{"write"}},
	}
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			t.Parallel()
			l := testutil.OpenLog(t, "")
			ctx := testutil.Context(t, 30*time.Second)
			held := make(holdsCacheWrites, 4)
			regA, regB := prometheus.NewRegistry(), prometheus.NewRegistry()
			a := New(l, noDefinitions{}, nothingScheduled{}, Config{Logger: testutil.Logger(t), Metrics: regA})
			a.SetProtector(held)
			if err := a.Start(ctx); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(a.Stop)
			b := startExecutor(t, l, nothingScheduled{}, Config{Metrics: regB})
			const id = "wf-cached-then-secret"
			startInline(ctx, t, a, id, `{"name":"cached","version":1,"tasks":[
			  {"name":"fetch","taskReferenceName":"fetch","inputParameters":{"k":"x"},"cacheConfig":{"key":"${k}","ttlInSecond":600}},
			  {"name":"after","taskReferenceName":"after"}]}`)
			w, err := a.State(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			fetch := w.LatestByRef("fetch").ID
			if _, _, err := a.take(ctx, id, fetch, PollRequest{TaskType: "fetch", WorkerID: "w1"}); err != nil {
				t.Fatalf("take: %v", err)
			}
			if _, err := a.Submit(ctx, id, engine.Result{Result: conductor.TaskResult{TaskID: fetch, WorkflowInstanceID: id,
				Status: conductor.TaskCompleted, OutputData: map[string]any{"token": "found-secret-later"}}, TaskType: "fetch"}, Meta{}); err != nil {
				t.Fatal(err)
			}
			var write engine.CacheOutput
			select {
			case write = <-held:
			case <-ctx.Done():
				t.Fatal("the result's decision cached nothing")
			}
			var purge []engine.Effect
			for _, step := range r.steps {
				switch step {
				case "mask":
					masked := &schemas.ValuesMasked{Paths: []string{"task/" + fetch + "/output.token"}}
					out, err := b.Submit(ctx, id, engine.ValuesFound{Masked: masked}, Meta{})
					if err != nil {
						t.Fatal(err)
					}
					// The guard adds them to the decision that records it.
					if purge = engine.Uncache(out.State, masked); len(purge) != 1 || purge[0] != (engine.UncacheOutput{Key: write.Key}) {
						t.Fatalf("uncache effects %+v, want the one of key %s", purge, write.Key)
					}
				case "purge":
					if err := b.performOne(ctx, purge[0]); err != nil {
						t.Fatalf("purge: %v", err)
					}
				case "write":
					if err := a.performOne(ctx, write); err != nil {
						t.Fatalf("write: %v", err)
					}
				}
			}
			kv, err := a.outputs.bucket(ctx)
			if err != nil {
				t.Fatal(err)
			}
			entry, err := kv.Get(ctx, write.Key)
			switch {
			case r.wantDropped == 0 && (err != nil || !strings.Contains(string(entry.Value()), "found-secret-later")):
				t.Errorf("the output never found secret is not cached: %v", err)
			case r.wantDropped > 0 && !errors.Is(err, jetstream.ErrKeyNotFound):
				t.Errorf("get after %v: %v, want no entry: the output found secret is still cached", r.steps, err)
			}
			dropped := 0.0
			for _, reg := range []*prometheus.Registry{regA, regB} {
				dropped += testutil.MetricValue(t, reg, "flowvault_engine_task_cache_total", map[string]string{"result": "dropped"})
			}
			if dropped != r.wantDropped {
				t.Errorf("task_cache_total{result=\"dropped\"} = %v, want %v", dropped, r.wantDropped)
			}
		})
	}
}
