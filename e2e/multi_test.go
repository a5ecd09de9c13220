package e2e_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowvault/flowvault/internal/nodetest"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/node"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/secrets"
	"github.com/flowvault/flowvault/workers"
)

const threeSteps = `{"name":"three_steps","version":1,"tasks":[
 {"name":"step1","taskReferenceName":"s1","inputParameters":{"i":"${workflow.input.i}"}},
 {"name":"step2","taskReferenceName":"s2","inputParameters":{"prev":"${s1.output.v}"}},
 {"name":"step3","taskReferenceName":"s3","inputParameters":{"prev":"${s2.output.v}"}}],
 "outputParameters":{"v":"${s3.output.v}"}}`

// Two engines on one NATS server run 500 workflows together: every
// workflow completes and no task runs twice.
func TestTwoEnginesNoDuplicateExecution(t *testing.T) {
	t.Parallel()
	a, baseA := nodetest.Start(t)
	cfgB := nodetest.JoinConfig(t, a, filepath.Join(t.TempDir(), "b"))
	b, baseB := nodetest.StartConfig(t, cfgB)
	ea, eb := &env{t: t, node: a, base: baseA}, &env{t: t, node: b, base: baseB}
	ea.register(threeSteps)

	runs := newCounter()
	handler := func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		runs.add(task.TaskID)
		prev, _ := task.InputData["prev"].(float64)
		return workers.Output{Data: map[string]any{"v": prev + 1}}, nil
	}
	// Two workers per step on the one NATS server (A's): each take or
	// result request reaches whichever engine answers first.
	for _, step := range []string{"step1", "step2", "step3"} {
		ea.work(step, 8, handler)
		ea.work(step, 8, handler)
	}

	const n = 500
	ids := make([]string, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for i := 0; i < n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer func() { <-sem; wg.Done() }()
			e := ea
			if i%2 == 1 {
				e = eb
			}
			ids[i] = e.start("three_steps", map[string]any{"i": int64(i)})
		}(i)
	}
	wg.Wait()
	for i, id := range ids {
		e := ea
		if i%3 == 0 {
			e = eb
		}
		wf := e.waitStatus(id, conductor.WorkflowCompleted)
		if wf.Output["v"] != float64(3) {
			t.Fatalf("workflow %s output %v", id, wf.Output)
		}
	}
	if d := runs.duplicates(); len(d) > 0 {
		t.Fatalf("tasks executed more than once: %v", d)
	}
	if got := runs.total(); got != 3*n {
		t.Fatalf("%d distinct tasks ran, want %d", got, 3*n)
	}
}

// Two engines seal the _secrets data of the workflows they run under
// pooled keys, each from pages of its own: a later task gets the real
// value whichever engine hands it over, no two workflows share a key, and
// once the workflows are compacted, by either engine, every key is gone
// for both.
func TestTwoEnginesPooledKeys(t *testing.T) {
	t.Parallel()
	cfgA := nodetest.Config(filepath.Join(t.TempDir(), "a"))
	cfgA.CompactionDelay = 300 * time.Millisecond
	a, baseA := nodetest.StartConfig(t, cfgA)
	cfgB := nodetest.JoinConfig(t, a, filepath.Join(t.TempDir(), "b"))
	cfgB.CompactionDelay = cfgA.CompactionDelay
	b, baseB := nodetest.StartConfig(t, cfgB)
	ea, eb := &env{t: t, node: a, base: baseA}, &env{t: t, node: b, base: baseB}
	ea.register(`{"name":"pooled","version":1,"tasks":[
	  {"name":"mint","taskReferenceName":"mint","inputParameters":{"i":"${workflow.input.i}"}},
	  {"name":"use","taskReferenceName":"use","inputParameters":{"token":"${mint.output._secrets.token}","i":"${workflow.input.i}"}}]}`)
	token := func(i any) string { return fmt.Sprintf("pooled-token-%v", i) }
	ea.work("mint", 8, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		return workers.Output{Data: map[string]any{"_secrets": map[string]any{"token": token(task.InputData["i"])}}}, nil
	})
	var mu sync.Mutex
	wrong := 0
	ea.work("use", 8, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		if task.InputData["token"] != token(task.InputData["i"]) {
			mu.Lock()
			wrong++
			mu.Unlock()
		}
		return workers.Output{}, nil
	})

	const n = 100
	ids := make([]string, n)
	for i := range ids {
		e := ea
		if i%2 == 1 {
			e = eb
		}
		ids[i] = e.start("pooled", map[string]any{"i": i})
	}
	keys := map[string]string{} // key → workflow
	pages := map[string]bool{}
	for _, id := range ids {
		ea.waitStatus(id, conductor.WorkflowCompleted)
		key := ea.secretsKey(id)
		if other, ok := keys[key]; ok {
			t.Fatalf("workflows %s and %s share the key %s", other, id, key)
		}
		keys[key] = id
		pages[key[:strings.LastIndexByte(key, '.')]] = true
	}
	if wrong > 0 {
		t.Fatalf("%d tasks did not get the sealed value", wrong)
	}
	if len(pages) < 2 || len(pages) > n/4 {
		t.Fatalf("%d workflows took keys from %d pages; want a few pages, at least one per engine", n, len(pages))
	}
	ctx := testutil.Context(t, 60*time.Second)
	testutil.Eventually(t, 30*time.Second, 100*time.Millisecond, func() error {
		for _, n := range []*node.Node{a, b} {
			n.Keys().ClearCache()
			for key, id := range keys {
				if _, err := n.Keys().DataKey(ctx, key); !errors.Is(err, secrets.ErrKeyDestroyed) {
					return fmt.Errorf("the key of %s is not destroyed yet: %v", id, err)
				}
			}
		}
		return nil
	})
	for _, id := range ids {
		wf := eb.workflow(id)
		if s := taskByRef(wf, "mint").OutputData["_secrets"]; s != "***" {
			t.Fatalf("workflow %s shows _secrets %v after compaction", id, s)
		}
	}
}
