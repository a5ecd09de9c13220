package e2e_test

import (
	"context"
	"path/filepath"
	"sync"
	"testing"

	"github.com/flowvault/flowvault/internal/nodetest"
	"github.com/flowvault/flowvault/schemas/conductor"
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
