package e2e_test

import (
	"context"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/flowvault/flowvault/internal/nodetest"
	"github.com/flowvault/flowvault/masking"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/workers"
)

// A workflow input read by one task as it is and by another inside a
// _secrets or _masked block is kept as given; once the block seals it, a
// later task's plain copy of it is stored as "***" like every copy of a
// sealed value. The task still gets the value, however it is handed out:
// to a poll waiting at the engine when the task is scheduled (the take
// joins the scheduling record) or to a poll that takes it from its queue
// later. Once the workflow is compacted, a restart hands out "***" for the
// value that went into _secrets and the value for the one that went into
// _masked, again by either hand-off.
func TestSealedValuesCopiedPlainReachTheirTaskByEitherHandOff(t *testing.T) {
	t.Parallel()
	cfg := nodetest.Config(filepath.Join(t.TempDir(), "data"))
	cfg.CompactionDelay = time.Second
	n, base := nodetest.StartConfig(t, cfg)
	e := &env{t: t, node: n, base: base}
	const secret, masked = "copied-secret-T4mq8ZrB", "copied-masked-W2nc7YpK"
	e.register(`{"name":"copies_wf","tasks":[
	  {"name":"cp_seal","taskReferenceName":"seal","inputParameters":{"_secrets":{"s":"${workflow.input.s}"},"_masked":{"m":"${workflow.input.m}"}}},
	  {"name":"cp_copy","taskReferenceName":"copy","inputParameters":{"s":"${workflow.input.s}","m":"${workflow.input.m}"}}]}`)
	e.work("cp_seal", 2, func(context.Context, *conductor.Task) (workers.Output, error) { return workers.Output{}, nil })

	// queued takes cp_copy from its queue: no poll waits for it when it is
	// scheduled.
	queued := func(id string) map[string]any {
		t.Helper()
		e.waitQueueSize("cp_copy", 1)
		tasks := e.pollBatch("cp_copy", "queued-worker", 1, 0, "")
		if len(tasks) != 1 || tasks[0].WorkflowInstanceID != id {
			t.Fatalf("polled %v, want the copy task of %s", tasks, id)
		}
		e.must(http.StatusOK, "POST", "/api/tasks", map[string]any{"taskId": tasks[0].TaskID, "workflowInstanceId": id, "status": "COMPLETED"})
		return tasks[0].InputData
	}
	// waiting takes cp_copy by a poll that waits at the engine before the
	// task is scheduled.
	got := make(chan map[string]any, 1)
	waiting := func() map[string]any {
		t.Helper()
		select {
		case in := <-got:
			return in
		case <-time.After(30 * time.Second):
			t.Fatal("the waiting worker got no task")
			return nil
		}
	}
	check := func(how string, in map[string]any, wantSecret string) {
		t.Helper()
		if in["s"] != wantSecret || in["m"] != masked {
			t.Errorf("%s: the copy task got s=%v m=%v, want s=%q m=%q", how, in["s"], in["m"], wantSecret, masked)
		}
	}

	first := e.start("copies_wf", map[string]any{"s": secret, "m": masked})
	check("taken from its queue", queued(first), secret)
	e.waitStatus(first, conductor.WorkflowCompleted)
	if in := taskByRef(e.workflow(first), "copy").InputData; in["s"] != masking.Mask || in["m"] != masking.Mask {
		t.Fatalf("the copy task's input shows %v", in)
	}

	e.work("cp_copy", 1, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		got <- task.InputData
		return workers.Output{}, nil
	})
	second := e.start("copies_wf", map[string]any{"s": secret, "m": masked})
	check("taken by a waiting poll", waiting(), secret)
	e.waitStatus(second, conductor.WorkflowCompleted)

	// After compaction, restarted: the first by a waiting poll, the
	// second from its queue (the worker is busy with the first's).
	e.waitCompacted(first)
	e.waitCompacted(second)
	e.must(http.StatusNoContent, "POST", "/api/workflow/"+first+"/restart", nil)
	check("restarted after compaction, taken by a waiting poll", waiting(), masking.Mask)
	e.waitStatus(first, conductor.WorkflowCompleted)
}
