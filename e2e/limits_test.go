package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flowvault/flowvault/internal/nodetest"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/workers"
)

// A task definition's rateLimitPerFrequency holds for every way a worker
// takes a task and across engines: of five tasks queued, two go out in the
// window (an hour here, so that the test does not race its end), the rest
// stay SCHEDULED, and polls answer nothing.
func TestRateLimitPerFrequency(t *testing.T) {
	t.Parallel()
	const limit, queued = 2, 5
	setup := func(t *testing.T) (a, b *env, ids []string) {
		a = newEnv(t)
		a.must(http.StatusNoContent, "POST", "/api/metadata/taskdefs",
			fmt.Sprintf(`[{"name":"rl_task","rateLimitPerFrequency":%d,"rateLimitFrequencyInSeconds":3600,"responseTimeoutSeconds":3600}]`, limit))
		a.register(`{"name":"rl_flow","version":1,"tasks":[{"name":"rl_task","taskReferenceName":"t"}]}`)
		n, base := nodetest.StartConfig(t, nodetest.JoinConfig(t, a.node, filepath.Join(t.TempDir(), "b")))
		b = &env{t: t, node: n, base: base}
		for range queued {
			ids = append(ids, a.start("rl_flow", nil))
		}
		waitQueueSize(t, a, "rl_task", queued)
		return a, b, ids
	}
	inProgress := func(t *testing.T, e *env, ids []string) int {
		t.Helper()
		n := 0
		for _, id := range ids {
			switch s := e.workflow(id).Tasks[0].Status; s {
			case conductor.TaskInProgress, conductor.TaskCompleted:
				n++
			case conductor.TaskScheduled:
			default:
				t.Fatalf("workflow %s task %s", id, s)
			}
		}
		return n
	}
	// pollNothing polls each engine over HTTP: every poll must come back
	// empty, the window being full.
	pollNothing := func(t *testing.T, engines ...*env) {
		t.Helper()
		for _, e := range engines {
			body := e.must(http.StatusOK, "GET", "/api/tasks/poll/batch/rl_task?workerid=late&count=5&timeout=100", nil)
			if body != "[]" {
				t.Fatalf("a poll past the limit got %s", body)
			}
		}
	}

	t.Run("http polls on two engines", func(t *testing.T) {
		t.Parallel()
		a, b, ids := setup(t)
		var got []*conductor.Task
		for _, e := range []*env{a, b, a, b} {
			var tasks []*conductor.Task
			if err := json.Unmarshal([]byte(e.must(http.StatusOK, "GET", "/api/tasks/poll/batch/rl_task?workerid=w&count=5&timeout=100", nil)), &tasks); err != nil {
				t.Fatal(err)
			}
			got = append(got, tasks...)
		}
		if len(got) != limit {
			t.Fatalf("%d tasks handed out, want %d", len(got), limit)
		}
		for _, task := range got {
			a.must(http.StatusOK, "POST", "/api/tasks", conductor.TaskResult{TaskID: task.TaskID, WorkflowInstanceID: task.WorkflowInstanceID,
				Status: conductor.TaskCompleted})
		}
		// Completing them frees no place: the window counts takes.
		pollNothing(t, a, b)
		if n := inProgress(t, a, ids); n != limit {
			t.Fatalf("%d tasks taken, want %d", n, limit)
		}
		// A worker that pulls announcements itself is told to try again
		// later, and the task stays as it was.
		var waiting *conductor.Task
		for _, id := range ids {
			if task := a.workflow(id).Tasks[0]; task.Status == conductor.TaskScheduled {
				waiting = task
			}
		}
		body, _ := json.Marshal(workers.TakeRequest{TaskID: waiting.TaskID, WorkflowInstanceID: waiting.WorkflowInstanceID, WorkerID: "puller"})
		reply, err := a.connect("rl_task").Request(workers.TakeSubject("rl_task", ""), body, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var take workers.TakeReply
		if err := json.Unmarshal(reply.Data, &take); err != nil || take.Error == nil || take.Error.Code != workers.CodeUnavailable ||
			!strings.Contains(take.Error.Message, "rateLimitPerFrequency") {
			t.Fatalf("take past the limit: %s", reply.Data)
		}
		if got := a.workflow(waiting.WorkflowInstanceID).Tasks[0]; got.Status != conductor.TaskScheduled || got.PollCount != waiting.PollCount {
			t.Fatalf("refused take changed the task: %s, %d polls", got.Status, got.PollCount)
		}
		// The engines counted what they refused: the first poll's three
		// tasks past the limit (it pulled all five), and the NATS take.
		refused := 0.0
		for _, e := range []*env{a, b} {
			refused += testutil.MetricValue(t, e.node.Registry(), "flowvault_engine_limited_takes_total",
				map[string]string{"task_type": "rl_task", "limit": "rateLimitPerFrequency"})
		}
		if refused < queued-limit+1 {
			t.Fatalf("%v takes counted as refused, want at least %d", refused, queued-limit+1)
		}
	})

	t.Run("go sdk workers waiting", func(t *testing.T) {
		t.Parallel()
		a, b, ids := setup(t)
		var ran atomic.Int32
		// Workers that wait at the engines are matched with tasks as
		// they are scheduled, or fed from the queue: either way through
		// the limit.
		handler := func(context.Context, *conductor.Task) (workers.Output, error) {
			ran.Add(1)
			return workers.Output{}, nil
		}
		// Two workers on the one NATS server: each poll reaches either
		// engine.
		a.work("rl_task", 5, handler)
		a.work("rl_task", 5, handler)
		testutil.Eventually(t, 30*time.Second, 20*time.Millisecond, func() error {
			if n := ran.Load(); n < limit {
				return fmt.Errorf("%d tasks ran", n)
			}
			return nil
		})
		// Scheduled while the workers wait at the engines, with their
		// queue's announcements held back: a decision that would take it
		// for one of them asks the limit too.
		ids = append(ids, a.start("rl_flow", nil), b.start("rl_flow", nil))
		pollNothing(t, a, b)
		if n := inProgress(t, a, ids); n != limit || ran.Load() != limit {
			t.Fatalf("%d tasks taken and %d ran, want %d", n, ran.Load(), limit)
		}
	})
}

// A definition inline in the workflow's (taskDefinition) limits its task
// as a registered one would, and in its place.
func TestInlineTaskDefinitionLimits(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.must(http.StatusNoContent, "POST", "/api/metadata/taskdefs", `[{"name":"inline_task","rateLimitPerFrequency":5}]`)
	e.register(`{"name":"inline_flow","version":1,"tasks":[{"name":"inline_task","taskReferenceName":"t",
	  "taskDefinition":{"name":"inline_task","rateLimitPerFrequency":1,"rateLimitFrequencyInSeconds":3600,"responseTimeoutSeconds":3600}}]}`)
	for range 3 {
		e.start("inline_flow", nil)
	}
	waitQueueSize(t, e, "inline_task", 3)
	var tasks []*conductor.Task
	for range 2 {
		var got []*conductor.Task
		if err := json.Unmarshal([]byte(e.must(http.StatusOK, "GET", "/api/tasks/poll/batch/inline_task?workerid=w&count=3&timeout=100", nil)), &got); err != nil {
			t.Fatal(err)
		}
		tasks = append(tasks, got...)
	}
	if len(tasks) != 1 {
		t.Fatalf("%d tasks handed out, want the inline definition's 1", len(tasks))
	}
	// The task shows the limit it is under, as Conductor's Task JSON does.
	if got := tasks[0]; got.RateLimitPerFrequency != 1 || got.RateLimitFrequencyInSeconds != 3600 {
		t.Fatalf("task shows rate limit %d per %d s, want 1 per 3600", got.RateLimitPerFrequency, got.RateLimitFrequencyInSeconds)
	}
}

// A task definition's concurrentExecLimit holds across engines: of five
// tasks queued, two run at once. A place frees when a running task ends
// however it ends (completed here, or canceled by its workflow's
// termination, which nobody reports to the limit), and the next queued
// task goes out then.
func TestConcurrentExecLimit(t *testing.T) {
	t.Parallel()
	const limit = 2
	a := newEnv(t)
	a.must(http.StatusNoContent, "POST", "/api/metadata/taskdefs",
		fmt.Sprintf(`[{"name":"cl_task","concurrentExecLimit":%d,"responseTimeoutSeconds":3600}]`, limit))
	a.register(`{"name":"cl_flow","version":1,"tasks":[{"name":"cl_task","taskReferenceName":"t"}]}`)
	n, base := nodetest.StartConfig(t, nodetest.JoinConfig(t, a.node, filepath.Join(t.TempDir(), "b")))
	b := &env{t: t, node: n, base: base}
	var ids []string
	for range 5 {
		ids = append(ids, a.start("cl_flow", nil))
	}
	waitQueueSize(t, a, "cl_task", 5)
	poll := func(e *env) []*conductor.Task {
		t.Helper()
		var tasks []*conductor.Task
		if err := json.Unmarshal([]byte(e.must(http.StatusOK, "GET", "/api/tasks/poll/batch/cl_task?workerid=w&count=5&timeout=100", nil)), &tasks); err != nil {
			t.Fatal(err)
		}
		return tasks
	}
	running := func() []string {
		t.Helper()
		var out []string
		for _, id := range ids {
			if a.workflow(id).Tasks[0].Status == conductor.TaskInProgress {
				out = append(out, id)
			}
		}
		return out
	}
	var taken []*conductor.Task
	for _, e := range []*env{a, b, a, b} {
		taken = append(taken, poll(e)...)
	}
	if len(taken) != limit || len(running()) != limit {
		t.Fatalf("%d tasks handed out, %d running, want %d", len(taken), len(running()), limit)
	}
	// takeOneMore polls both engines until one more task goes out, and
	// then finds no other.
	takeOneMore := func(why string) {
		t.Helper()
		var got []*conductor.Task
		testutil.Eventually(t, 30*time.Second, 50*time.Millisecond, func() error {
			got = append(append(got, poll(a)...), poll(b)...)
			if len(got) == 0 {
				return fmt.Errorf("no task went out after %s", why)
			}
			return nil
		})
		got = append(append(got, poll(a)...), poll(b)...)
		if len(got) != 1 || len(running()) != limit {
			t.Fatalf("after %s: %d more tasks went out, %d running, want 1 and %d", why, len(got), len(running()), limit)
		}
	}

	done := taken[0]
	a.must(http.StatusOK, "POST", "/api/tasks", conductor.TaskResult{TaskID: done.TaskID, WorkflowInstanceID: done.WorkflowInstanceID,
		Status: conductor.TaskCompleted})
	takeOneMore("a task completed")

	a.must(http.StatusNoContent, "DELETE", "/api/workflow/"+running()[0]+"?reason=enough", nil)
	takeOneMore("a running task's workflow was terminated")
	// A's first poll pulled all five and was refused three.
	if got := testutil.MetricValue(t, a.node.Registry(), "flowvault_engine_limited_takes_total",
		map[string]string{"task_type": "cl_task", "limit": "concurrentExecLimit"}); got < 3 {
		t.Fatalf("%v refused takes counted, want at least 3", got)
	}
}

// A restart forgets neither limit: the window's takes and the tasks holding
// places are kept with the log, so the restarted server hands out no more
// than the one before it would have.
func TestLimitsSurviveRestart(t *testing.T) {
	t.Parallel()
	cfg := nodetest.Config(filepath.Join(t.TempDir(), "data"))
	n, base := nodetest.StartConfig(t, cfg)
	e := &env{t: t, node: n, base: base}
	e.must(http.StatusNoContent, "POST", "/api/metadata/taskdefs", `[
	  {"name":"lr_running","concurrentExecLimit":1,"responseTimeoutSeconds":3600},
	  {"name":"lr_window","rateLimitPerFrequency":1,"rateLimitFrequencyInSeconds":3600,"responseTimeoutSeconds":3600}]`)
	types := []string{"lr_running", "lr_window"}
	for _, typ := range types {
		e.register(fmt.Sprintf(`{"name":"%s_flow","version":1,"tasks":[{"name":"%s","taskReferenceName":"t"}]}`, typ, typ))
		e.start(typ+"_flow", nil)
		e.start(typ+"_flow", nil)
	}
	poll := func(e *env, typ string) int {
		t.Helper()
		var tasks []*conductor.Task
		if err := json.Unmarshal([]byte(e.must(http.StatusOK, "GET", "/api/tasks/poll/batch/"+typ+"?workerid=w&count=2&timeout=100", nil)), &tasks); err != nil {
			t.Fatal(err)
		}
		return len(tasks)
	}
	for _, typ := range types {
		waitQueueSize(t, e, typ, 2)
		if got := poll(e, typ) + poll(e, typ); got != 1 {
			t.Fatalf("%s: %d tasks went out, want 1", typ, got)
		}
	}
	e2 := restartNode(t, n, cfg)
	for _, typ := range types {
		waitQueueSize(t, e2, typ, 1) // recovery announced the one still SCHEDULED
		if got := poll(e2, typ) + poll(e2, typ); got != 0 {
			t.Fatalf("%s: %d tasks went out after the restart, want none", typ, got)
		}
	}
}

// Tasks a limit holds back stay in their queue's size, as Conductor's
// postponed messages do: a poll past the limit pulled their announcements
// and was refused their takes, and the announcements wait to be offered
// again (delivered, not acknowledged), which a size of only those not
// yet delivered left out: 0 with three tasks SCHEDULED, for anyone who
// sizes a worker pool by it.
func TestLimitedTasksStayInTheQueueSize(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ name, limit string }{
		{"rate", `"rateLimitPerFrequency":2,"rateLimitFrequencyInSeconds":3600`},
		{"concurrency", `"concurrentExecLimit":2`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			typ := "ls_" + tt.name
			e := newEnv(t)
			e.must(http.StatusNoContent, "POST", "/api/metadata/taskdefs",
				fmt.Sprintf(`[{"name":"%s",%s,"responseTimeoutSeconds":3600}]`, typ, tt.limit))
			e.register(fmt.Sprintf(`{"name":"%s_flow","version":1,"tasks":[{"name":"%s","taskReferenceName":"t"}]}`, typ, typ))
			for range 5 {
				e.start(typ+"_flow", nil)
			}
			e.waitQueueSize(typ, 5)
			if got := e.pollBatch(typ, "w", 5, 100*time.Millisecond, ""); len(got) != 2 {
				t.Fatalf("%d tasks handed out, want 2", len(got))
			}
			testutil.Eventually(t, 10*time.Second, 20*time.Millisecond, func() error {
				var all map[string]int64
				if err := json.Unmarshal([]byte(e.must(http.StatusOK, "GET", "/api/tasks/queue/all", nil)), &all); err != nil {
					return err
				}
				var verbose map[string]map[string]map[string]int64
				if err := json.Unmarshal([]byte(e.must(http.StatusOK, "GET", "/api/tasks/queue/all/verbose", nil)), &verbose); err != nil {
					return err
				}
				if size := e.queueSize(typ); size != 3 || all[typ] != 3 || verbose[typ]["a"]["size"] != 3 {
					return fmt.Errorf("queue sizes %d, all %d, verbose %v; want 3 held back by the limit", size, all[typ], verbose[typ])
				}
				return nil
			})
		})
	}
}
