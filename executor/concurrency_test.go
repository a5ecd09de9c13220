package executor

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/internal/testutil"
)

// Places among the running: a holder keeps its place until a check of the
// log finds its task ended, checks come at most every recheckEvery per
// engine, and engines taking at once never admit more than the limit.
func TestConcurrencyLimit(t *testing.T) {
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, 30*time.Second)
	a, b := newLimits(l), newLimits(l)
	t0 := time.UnixMilli(1_000_000)
	var mu sync.Mutex
	ended := map[string]bool{}
	still := func(_ context.Context, h holder, _ time.Time) (bool, error) {
		mu.Lock()
		defer mu.Unlock()
		return !ended[h.Task], nil
	}
	h := func(n int) holder {
		return holder{Task: fmt.Sprint("t", n), Workflow: fmt.Sprint("w", n), At: t0.UnixMilli()}
	}

	for i, r := range []*limits{a, b} {
		if err := r.admitRunning(ctx, "resize", 2, h(i), t0, still); err != nil {
			t.Fatalf("take %d: %v", i, err)
		}
	}
	var limited *LimitedError
	if err := a.admitRunning(ctx, "resize", 2, h(2), t0, still); !errors.As(err, &limited) || limited.Limit != "concurrentExecLimit" {
		t.Fatalf("third take: %v, want refused by concurrentExecLimit", err)
	}
	if err := b.admitRunning(ctx, "resize", 2, h(0), t0, still); err != nil {
		t.Fatalf("a holder taken again (after a hand-back): %v", err)
	}
	mu.Lock()
	ended["t0"] = true
	mu.Unlock()
	// a checked a moment ago and found both running: it does not look
	// again yet; b never checked.
	if err := a.admitRunning(ctx, "resize", 2, h(2), t0.Add(recheckEvery/2), still); !errors.As(err, &limited) {
		t.Fatalf("take within a's recheck interval: %v, want refused", err)
	}
	if err := b.admitRunning(ctx, "resize", 2, h(2), t0.Add(recheckEvery/2), still); err != nil {
		t.Fatalf("take after t0 ended: %v", err)
	}
	if err := a.admitRunning(ctx, "resize", 2, h(3), t0.Add(2*recheckEvery), still); !errors.As(err, &limited) {
		t.Fatalf("take with t1 and t2 running: %v, want refused", err)
	}
	if err := a.admitRunning(ctx, "other", 1, h(4), t0, still); err != nil {
		t.Fatalf("another task type: %v", err)
	}

	// Many engines at once: exactly the limit gets in.
	if got := admittedAtOnce(t, 20, func(i int) error {
		return newLimits(l).admitRunning(ctx, "burst", 5, h(100+i), t0, still)
	}); got != 5 {
		t.Fatalf("%d takes admitted at once, want 5", got)
	}
}

// admittedAtOnce runs n takes at once and counts those admitted; a take
// must be admitted or refused by its limit. Only as many writes as the
// limit happen, so no take loses casAttempts rounds of compare and set.
func admittedAtOnce(t *testing.T, n int, take func(i int) error) int {
	t.Helper()
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		admitted int
	)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			switch err := take(i); {
			case err == nil:
				mu.Lock()
				admitted++
				mu.Unlock()
			case !errors.As(err, new(*LimitedError)):
				t.Errorf("take %d: %v", i, err)
			}
		}()
	}
	wg.Wait()
	return admitted
}

// The limits' bucket is kept on disk; one an earlier version kept in
// memory (which JetStream cannot change in place) is replaced, its state
// dropped as a restart would have dropped it.
func TestLimitsBucketOnDisk(t *testing.T) {
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, 30*time.Second)
	js := l.JetStream()
	old, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: limitsBucket, Storage: jetstream.MemoryStorage})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := old.Put(ctx, "c.stale", []byte(`[]`)); err != nil {
		t.Fatal(err)
	}
	kv, err := newLimits(l).bucket(ctx)
	if err != nil {
		t.Fatal(err)
	}
	st, err := kv.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Config().Storage != jetstream.FileStorage || st.Values() != 0 {
		t.Fatalf("bucket storage %v with %d values, want file storage and none", st.Config().Storage, st.Values())
	}
	// Another engine binds to the same bucket without dropping it.
	if _, err := kv.Put(ctx, "c.kept", []byte(`[]`)); err != nil {
		t.Fatal(err)
	}
	if kv2, err := newLimits(l).bucket(ctx); err != nil {
		t.Fatal(err)
	} else if _, err := kv2.Get(ctx, "c.kept"); err != nil {
		t.Fatalf("a second engine's bind lost the state: %v", err)
	}
}

// Engines sharing a server take the limits' bucket as it was made: one
// bounded by an operator, or made by another version, keeps its settings
// at every engine's start, where each start set them to its own.
func TestLimitsBucketKeptAsMade(t *testing.T) {
	t.Parallel()
	ns := testutil.StartNATS(t, t.TempDir(), 0)
	ctx := testutil.Context(t, 30*time.Second)
	const bound = 1 << 20
	made, err := testutil.OpenExternalLog(t, ns).JetStream().CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: limitsBucket,
		History: 1, MaxBytes: bound, Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := made.Put(ctx, "c.kept", []byte(`[]`)); err != nil {
		t.Fatal(err)
	}
	for _, engine := range []string{"a", "b"} {
		kv, err := newLimits(testutil.OpenExternalLog(t, ns)).bucket(ctx)
		if err != nil {
			t.Fatalf("engine %s: %v", engine, err)
		}
		if _, err := kv.Get(ctx, "c.kept"); err != nil {
			t.Errorf("engine %s lost the state: %v", engine, err)
		}
		st, err := kv.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got := st.Config().MaxBytes; got != bound {
			t.Errorf("after engine %s's start, the bucket's size limit is %d bytes, want %d as it was made", engine, got, bound)
		}
	}
}

// A task IN_PROGRESS in a workflow removed without being terminated
// (DELETE /api/workflow/{id}/remove?archiveWorkflow=false) gives its
// place on: the workflow never ends, and its task reads IN_PROGRESS for
// good. One still running, or terminated as it is removed, as before.
func TestConcurrencyPlaceOfRemovedWorkflow(t *testing.T) {
	const def = `{"name":"cl_rm","tasks":[{"name":"cl_rm_task","taskReferenceName":"t",
	  "taskDefinition":{"name":"cl_rm_task","concurrentExecLimit":1,"responseTimeoutSeconds":3600}}]}`
	for _, tc := range []struct {
		name   string
		remove *engine.Remove // of the holder's workflow; nil: none
		taken  bool           // the next workflow's task
	}{
		{name: "running", taken: false},
		{name: "removed", remove: &engine.Remove{}, taken: true},
		{name: "removed and terminated", remove: &engine.Remove{Terminate: true}, taken: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l := testutil.OpenLog(t, "")
			e := startExecutor(t, l, nothingScheduled{}, Config{})
			ctx := testutil.Context(t, 30*time.Second)
			startInline(ctx, t, e, "wf-holder", def)
			if reply := takeOver(ctx, t, l, e, "wf-holder"); reply.Error != nil || reply.Task == nil {
				t.Fatalf("first take: %+v", reply.Error)
			}
			if tc.remove != nil {
				if _, err := e.Submit(ctx, "wf-holder", *tc.remove, Meta{}); err != nil {
					t.Fatal(err)
				}
			}
			startInline(ctx, t, e, "wf-next", def)
			reply := takeOver(ctx, t, l, e, "wf-next")
			if taken := reply.Error == nil && reply.Task != nil; taken != tc.taken {
				t.Fatalf("next workflow's task taken %v (%+v), want %v", taken, reply.Error, tc.taken)
			}
		})
	}
}
