package executor

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// runningOnly lists the given workflows as running, and nothing as due.
type runningOnly []string

func (runningOnly) Due(context.Context, int64, Due, int) ([]Due, error) { return nil, nil }
func (r runningOnly) Running(_ context.Context, fn func(wfID string) bool) error {
	for _, id := range r {
		if !fn(id) {
			break
		}
	}
	return nil
}
func (runningOnly) ScheduledBefore(context.Context, int64, func(wfID string) bool) error {
	return nil
}

// newCachedRig readies a cacheRig whose output is cached, and found
// secret since when masked, by a decision of b whose purge was not
// performed: no guard adds it here, as if b was killed after the append.
func newCachedRig(t *testing.T, masked bool) (context.Context, cacheRig) {
	t.Helper()
	ctx, rig := newCacheRig(t)
	if err := rig.a.performOne(ctx, rig.write); err != nil {
		t.Fatalf("write: %v", err)
	}
	if masked {
		vm := &schemas.ValuesMasked{Paths: []string{"task/" + rig.fetch + "/output.token"}}
		if _, err := rig.b.Submit(ctx, rig.id, engine.ValuesFound{Masked: vm}, Meta{}); err != nil {
			t.Fatal(err)
		}
	}
	return ctx, rig
}

// An output found secret whose purge never ran (the engine that recorded
// the finding stopped before performing it, or the purge failed) leaves
// the cache when an engine starts: its recovery performs again the purges
// of the outputs each running workflow masks, and no hit has to read the
// entry first. An output never found secret stays.
func TestCachedOutputFoundSecretLeavesTheCacheOnRecovery(t *testing.T) {
	t.Parallel()
	for _, masked := range []bool{true, false} {
		t.Run(fmt.Sprintf("masked_%t", masked), func(t *testing.T) {
			t.Parallel()
			ctx, rig := newCachedRig(t, masked)
			reg := prometheus.NewRegistry()
			c := New(rig.a.log, noDefinitions{}, runningOnly{rig.id}, Config{Logger: testutil.Logger(t), Metrics: reg})
			if err := c.Start(ctx); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(c.Stop)
			testutil.Eventually(t, 20*time.Second, 10*time.Millisecond, func() error {
				if testutil.MetricValue(t, reg, "flowvault_engine_decisions_total", map[string]string{"trigger": "reconcile"}) == 0 {
					return errors.New("recovery reconciled nothing")
				}
				return nil
			})
			c.Stop() // once the reconcile's effects are performed

			kv, err := c.outputs.bucket(ctx)
			if err != nil {
				t.Fatal(err)
			}
			_, err = kv.Get(ctx, rig.write.Key)
			switch {
			case masked && !errors.Is(err, jetstream.ErrKeyNotFound):
				t.Errorf("get after the recovery: %v, want no entry: the output found secret is still cached", err)
			case !masked && err != nil:
				t.Errorf("get after the recovery: %v, want the output never found secret kept", err)
			}
			want := map[bool]float64{true: 1, false: 0}[masked]
			if got := testutil.MetricValue(t, reg, "flowvault_engine_task_cache_total", map[string]string{"result": "dropped"}); got != want {
				t.Errorf("task_cache_total{result=\"dropped\"} = %v, want %v", got, want)
			}
			if lookups := testutil.MetricValue(t, reg, "flowvault_engine_task_cache_total", map[string]string{"result": "hit"}) +
				testutil.MetricValue(t, reg, "flowvault_engine_task_cache_total", map[string]string{"result": "miss"}); lookups != 0 {
				t.Errorf("%v lookups of the cache; want none: no hit read the entry", lookups)
			}
		})
	}
}

// refusesPurges is a cache bucket that refuses every purge while refuse
// is set.
type refusesPurges struct {
	jetstream.KeyValue
	refuse atomic.Bool
}

func (k *refusesPurges) Purge(ctx context.Context, key string, opts ...jetstream.KVDeleteOpt) error {
	if k.refuse.Load() {
		return errors.New("purge refused")
	}
	return k.KeyValue.Purge(ctx, key, opts...)
}

// A workflow's compaction, which the compactor tries again until it is
// recorded, and never again once it is, purges the cached outputs the
// workflow masks first, and is not recorded while a purge fails: an
// output found secret whose purge failed or never ran does not outlive
// the workflow's end in the cache, and no hit has to read it first. A
// workflow that masks no output compacts whatever the cache answers.
func TestCachedOutputFoundSecretLeavesTheCacheBeforeCompaction(t *testing.T) {
	t.Parallel()
	for _, masked := range []bool{true, false} {
		t.Run(fmt.Sprintf("masked_%t", masked), func(t *testing.T) {
			t.Parallel()
			ctx, rig := newCachedRig(t, masked)
			b := rig.b
			if _, err := b.Submit(ctx, rig.id, engine.Terminate{Reason: "done"}, Meta{}); err != nil {
				t.Fatal(err)
			}
			kv, err := b.outputs.bucket(ctx)
			if err != nil {
				t.Fatal(err)
			}
			refusing := &refusesPurges{KeyValue: kv}
			refusing.refuse.Store(true)
			b.outputs.mu.Lock()
			b.outputs.kv = refusing
			b.outputs.mu.Unlock()
			compacted := func() bool {
				t.Helper()
				w, err := b.State(ctx, rig.id)
				if err != nil {
					t.Fatal(err)
				}
				return w.Compacted
			}

			_, err = b.Submit(ctx, rig.id, engine.Compact{}, Meta{RequestID: "compact:" + rig.id})
			switch {
			case masked && (err == nil || compacted()):
				t.Errorf("compaction while the purge is refused: %v, compacted %t; want it refused and not recorded", err, compacted())
			case !masked && (err != nil || !compacted()):
				t.Fatalf("compaction of a workflow that masks no output while the cache refuses purges: %v, compacted %t; want it recorded",
					err, compacted())
			}
			if _, err := kv.Get(ctx, rig.write.Key); err != nil {
				t.Fatalf("get after the compaction: %v, want the entry the refused purge left", err)
			}
			if !masked {
				return
			}

			// The compactor's next pass.
			refusing.refuse.Store(false)
			if _, err := b.Submit(ctx, rig.id, engine.Compact{}, Meta{RequestID: "compact:" + rig.id}); err != nil {
				t.Fatalf("compaction once the cache purges: %v", err)
			}
			if !compacted() {
				t.Fatal("the workflow is not compacted")
			}
			if _, err := kv.Get(ctx, rig.write.Key); !errors.Is(err, jetstream.ErrKeyNotFound) {
				t.Errorf("get once the compaction is recorded: %v, want no entry: the output found secret is still cached", err)
			}
			if got := testutil.MetricValue(t, rig.regB, "flowvault_engine_task_cache_total", map[string]string{"result": "dropped"}); got != 1 {
				t.Errorf("task_cache_total{result=\"dropped\"} = %v, want 1", got)
			}
		})
	}
}

// A workflow that masks the output of a task with a cacheConfig compacts
// when the cache bucket was never made, for there is nothing to purge:
// on a server whose store is too small for the bucket's size limit (an
// external one, whose bound the engine does not know) the bucket is
// refused at every attempt, for good, and a compaction that made it
// first, to purge what it cannot hold, was refused at every pass.
func TestCompactionWithoutTheCacheBucket(t *testing.T) {
	t.Parallel()
	ns := testutil.StartNATS(t, t.TempDir(), 0, func(o *server.Options) { o.JetStreamMaxStore = 64 << 20 })
	l := testutil.OpenExternalLog(t, ns)
	ctx := testutil.Context(t, 30*time.Second)
	e := startExecutor(t, l, nothingScheduled{}, Config{})
	const id = "wf-cached-nowhere"
	startInline(ctx, t, e, id, cachedFetchDef)
	w, err := e.State(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	fetch := w.LatestByRef("fetch").ID
	if _, _, err := e.take(ctx, id, fetch, PollRequest{TaskType: "fetch", WorkerID: "w1"}); err != nil {
		t.Fatalf("take: %v", err)
	}
	if _, err := e.Submit(ctx, id, engine.Result{Result: conductor.TaskResult{TaskID: fetch, WorkflowInstanceID: id,
		Status: conductor.TaskCompleted, OutputData: map[string]any{"token": "found-secret-later"}}, TaskType: "fetch"}, Meta{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.outputs.bucket(ctx); err == nil {
		t.Fatal("the cache bucket was made; want it refused, as the server's store is smaller than its size limit")
	}
	vm := &schemas.ValuesMasked{Paths: []string{"task/" + fetch + "/output.token"}}
	if _, err := e.Submit(ctx, id, engine.ValuesFound{Masked: vm}, Meta{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Submit(ctx, id, engine.Terminate{Reason: "done"}, Meta{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Submit(ctx, id, engine.Compact{}, Meta{RequestID: "compact:" + id}); err != nil {
		t.Fatalf("compaction: %v, want it recorded: no bucket holds an output to purge", err)
	}
	if w, err := e.State(ctx, id); err != nil || !w.Compacted {
		t.Fatalf("state after the compaction: %v; want it compacted", err)
	}
}
