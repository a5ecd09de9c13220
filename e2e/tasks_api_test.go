package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/workers"
)

// Conductor's task API (/api/tasks): workers polling over HTTP, updates,
// logs and queue statistics, against a whole node with plain net/http
// clients.

// reply is a response read whole.
type reply struct {
	status int
	ctype  string
	body   string
}

// call sends body (a string as is, anything else as JSON) with
// contentType (application/json when empty and there is a body).
func (e *env) call(method, path string, body any, contentType string) reply {
	e.t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b)
	default:
		js, _ := json.Marshal(b)
		r = strings.NewReader(string(js))
	}
	req, err := http.NewRequest(method, e.base+path, r)
	if err != nil {
		e.t.Fatal(err)
	}
	if body != nil {
		if contentType == "" {
			contentType = "application/json"
		}
		req.Header.Set("Content-Type", contentType)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	out, _ := io.ReadAll(res.Body)
	return reply{res.StatusCode, res.Header.Get("Content-Type"), string(out)}
}

// expect checks a reply's status and content type.
func (e *env) expect(rp reply, status int, ctype string) {
	e.t.Helper()
	if rp.status != status || rp.ctype != ctype {
		e.t.Fatalf("reply %d %q %s, want %d %q", rp.status, rp.ctype, rp.body, status, ctype)
	}
}

func decodeTasks(t testing.TB, body string) []*conductor.Task {
	t.Helper()
	var tasks []*conductor.Task
	if err := json.Unmarshal([]byte(body), &tasks); err != nil {
		t.Fatalf("poll reply is not a task array: %v: %s", err, body)
	}
	return tasks
}

func decodeTask(t testing.TB, body string) *conductor.Task {
	t.Helper()
	var task conductor.Task
	if err := json.Unmarshal([]byte(body), &task); err != nil || task.TaskID == "" {
		t.Fatalf("reply is not a task: %v: %s", err, body)
	}
	return &task
}

// pollBatch polls once and returns the tasks handed out.
func (e *env) pollBatch(taskType, workerID string, count int, timeout time.Duration, domain string) []*conductor.Task {
	e.t.Helper()
	tasks, err := e.pollBatchRetryable(taskType, workerID, count, timeout, domain)
	if err != nil {
		e.t.Fatal(err)
	}
	return tasks
}

// pollBatchRetryable is pollBatch that returns a retryable 503 (a queue's
// consumer not made in time on a loaded cluster, say) as an error to try
// again on, as a worker would, instead of failing the test.
func (e *env) pollBatchRetryable(taskType, workerID string, count int, timeout time.Duration, domain string) ([]*conductor.Task, error) {
	e.t.Helper()
	q := url.Values{"workerid": {workerID}, "count": {fmt.Sprint(count)}, "timeout": {fmt.Sprint(timeout.Milliseconds())}}
	if domain != "" {
		q.Set("domain", domain)
	}
	rp := e.call("GET", "/api/tasks/poll/batch/"+url.PathEscape(taskType)+"?"+q.Encode(), nil, "")
	if rp.status == http.StatusServiceUnavailable && strings.Contains(rp.body, `"retryable":true`) {
		return nil, fmt.Errorf("poll: %s", rp.body)
	}
	e.expect(rp, http.StatusOK, "application/json")
	return decodeTasks(e.t, rp.body), nil
}

func (e *env) queueSize(taskType string) int64 {
	e.t.Helper()
	var sizes map[string]int64
	if err := json.Unmarshal([]byte(e.must(http.StatusOK, "GET", "/api/tasks/queue/sizes?taskType="+url.QueryEscape(taskType), nil)), &sizes); err != nil {
		e.t.Fatal(err)
	}
	return sizes[taskType]
}

func (e *env) waitQueueSize(taskType string, want int64) {
	e.t.Helper()
	testutil.Eventually(e.t, 10*time.Second, 20*time.Millisecond, func() error {
		if got := e.queueSize(taskType); got != want {
			return fmt.Errorf("queue %s has %d tasks, want %d", taskType, got, want)
		}
		return nil
	})
}

// recordOf returns the ids of the tasks taken in the record of workflow
// id that set task taskID to status.
func (e *env) recordOf(id, taskID, status string) []string {
	e.t.Helper()
	for _, r := range e.records(id) {
		var taken []string
		found := false
		for _, ev := range e.recordEvents(r) {
			switch ev := ev.(type) {
			case *schemas.TaskUpdated:
				found = found || ev.TaskID == taskID && ev.Status == status
			case *schemas.TaskStarted:
				taken = append(taken, ev.TaskID)
			}
		}
		if found {
			return taken
		}
	}
	e.t.Fatalf("no record of workflow %s sets task %s to %s", id, taskID, status)
	return nil
}

const httpPairFlow = `{"name":"http_pair","version":1,"tasks":[
 {"name":"hw","taskReferenceName":"first","inputParameters":{"n":"${workflow.input.n}"}},
 {"name":"hw","taskReferenceName":"second","inputParameters":{"n":"${first.output.n}"}}],
 "outputParameters":{"n":"${second.output.n}"}}`

// The Conductor worker loop: batch poll, then update-v2, which answers the
// next task of the same type until there is none.
func TestHTTPWorkerPollUpdateV2(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.must(http.StatusNoContent, "POST", "/api/metadata/taskdefs", `[{"name":"hw","retryCount":0,"timeoutSeconds":0,"responseTimeoutSeconds":120}]`)
	e.register(httpPairFlow)

	// Nothing queued: an empty JSON array for batch polls, 204 for single
	// polls, after waiting about the timeout.
	begin := time.Now()
	if tasks := e.pollBatch("hw", "w1", 5, 300*time.Millisecond, ""); len(tasks) != 0 {
		t.Fatalf("empty queue polled %d tasks", len(tasks))
	}
	if waited := time.Since(begin); waited < 250*time.Millisecond || waited > 5*time.Second {
		t.Fatalf("empty poll with timeout=300 took %s", waited)
	}
	if rp := e.call("GET", "/api/tasks/poll/hw?workerid=w1&timeout=0", nil, ""); rp.status != http.StatusNoContent || rp.body != "" {
		t.Fatalf("single poll of an empty queue = %d %q", rp.status, rp.body)
	}

	// A long poll returns as soon as a task is scheduled.
	var polled []*conductor.Task
	var pollTook time.Duration
	done := make(chan struct{})
	go func() {
		defer close(done)
		begin := time.Now()
		q := "/api/tasks/poll/batch/hw?workerid=w1&count=3&timeout=10000"
		res, err := http.Get(e.base + q)
		if err != nil {
			t.Error(err)
			return
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		pollTook = time.Since(begin)
		if err := json.Unmarshal(b, &polled); err != nil {
			t.Errorf("poll: %v %s", err, b)
		}
	}()
	time.Sleep(300 * time.Millisecond)
	id := e.start("http_pair", map[string]any{"n": int64(20)})
	<-done
	if len(polled) != 1 || pollTook > 5*time.Second {
		t.Fatalf("long poll returned %d tasks after %s", len(polled), pollTook)
	}
	first := polled[0]
	if first.Status != conductor.TaskInProgress || first.ReferenceTaskName != "first" || first.TaskType != "hw" ||
		first.WorkflowInstanceID != id || first.ResponseTimeoutSeconds != 120 || first.PollCount != 1 ||
		first.WorkerID != "w1" || first.InputData["n"] != float64(20) {
		t.Fatalf("polled task = %+v", first)
	}
	// The poll is visible at once (read-your-writes).
	if got := taskByRef(e.workflow(id), "first"); got.Status != conductor.TaskInProgress || got.WorkerID != "w1" {
		t.Fatalf("after the poll the task is %s by %q", got.Status, got.WorkerID)
	}

	// update-v2 records the result and hands out the next task.
	rp := e.call("POST", "/api/tasks/update-v2", map[string]any{"taskId": first.TaskID, "workflowInstanceId": id,
		"status": "COMPLETED", "outputData": map[string]any{"n": 21}, "workerId": "w1"}, "")
	e.expect(rp, http.StatusOK, "application/json")
	second := decodeTask(t, rp.body)
	if second.ReferenceTaskName != "second" || second.Status != conductor.TaskInProgress || second.InputData["n"] != float64(21) ||
		second.WorkerID != "w1" || second.ResponseTimeoutSeconds != 120 {
		t.Fatalf("next task = %+v", second)
	}
	// The worker's poll waited while its result was decided: the record
	// of the result took the next task for it. Polled after the result,
	// it raced the task's announcement, and lost on a loaded machine.
	if got := e.recordOf(id, first.TaskID, conductor.TaskCompleted); !slices.Contains(got, second.TaskID) {
		t.Fatalf("the record of the first task's result took %v, want the second task %s", got, second.TaskID)
	}
	rp = e.call("POST", "/api/tasks/update-v2", map[string]any{"taskId": second.TaskID, "workflowInstanceId": id,
		"status": "COMPLETED", "outputData": map[string]any{"n": 22}, "workerId": "w1"}, "")
	if rp.status != http.StatusNoContent || rp.body != "" {
		t.Fatalf("last update-v2 = %d %q, want 204", rp.status, rp.body)
	}
	wf := e.waitStatus(id, conductor.WorkflowCompleted)
	if wf.Output["n"] != float64(22) {
		t.Fatalf("output %v", wf.Output)
	}
	// A duplicate (late) update of a finished task is accepted and ignored.
	rp = e.call("POST", "/api/tasks/update-v2", map[string]any{"taskId": second.TaskID, "workflowInstanceId": id,
		"status": "FAILED", "reasonForIncompletion": "late", "workerId": "w1"}, "")
	if rp.status != http.StatusNoContent {
		t.Fatalf("late update-v2 = %d %s", rp.status, rp.body)
	}
	if got := taskByRef(e.workflow(id), "second"); got.Status != conductor.TaskCompleted || got.OutputData["n"] != float64(22) {
		t.Fatalf("a late update changed the task: %+v", got)
	}
}

// The legacy update answers the task id as text; extendLease keeps a task
// past its response timeout; without it the task times out and a late
// result is still answered 200.
func TestLegacyUpdateAndExtendLease(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.must(http.StatusNoContent, "POST", "/api/metadata/taskdefs", `[{"name":"lease","retryCount":1,"retryDelaySeconds":0,"timeoutSeconds":0,"responseTimeoutSeconds":2}]`)
	e.register(`{"name":"leased","version":1,"tasks":[{"name":"lease","taskReferenceName":"l"}]}`)

	id := e.start("leased", nil)
	tasks := e.pollBatch("lease", "slow", 1, 5*time.Second, "")
	if len(tasks) != 1 || tasks[0].ResponseTimeoutSeconds != 2 {
		t.Fatalf("polled %+v", tasks)
	}
	task := tasks[0]
	// Heartbeats for twice the response timeout.
	for range 8 {
		rp := e.call("POST", "/api/tasks", map[string]any{"taskId": task.TaskID, "workflowInstanceId": id,
			"status": "IN_PROGRESS", "extendLease": true, "workerId": "slow"}, "")
		e.expect(rp, http.StatusOK, "text/plain")
		if rp.body != task.TaskID {
			t.Fatalf("legacy update answered %q, want the task id", rp.body)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if got := e.workflow(id).Tasks; len(got) != 1 || got[0].Status != conductor.TaskInProgress {
		t.Fatalf("with lease extensions the task is %s (%d instances)", got[len(got)-1].Status, len(got))
	}
	rp := e.call("POST", "/api/tasks", map[string]any{"taskId": task.TaskID, "workflowInstanceId": id,
		"status": "COMPLETED", "outputData": map[string]any{"done": true}, "workerId": "slow"}, "")
	e.expect(rp, http.StatusOK, "text/plain")
	e.waitStatus(id, conductor.WorkflowCompleted)

	// Without heartbeats the task times out and is retried; the first
	// worker's late result is answered 200 and ignored.
	id = e.start("leased", nil)
	task = e.pollBatch("lease", "slow", 1, 5*time.Second, "")[0]
	testutil.Eventually(t, 15*time.Second, 50*time.Millisecond, func() error {
		if got := taskByRef(e.workflow(id), "l"); got.TaskID == task.TaskID {
			return fmt.Errorf("task still %s", got.Status)
		}
		return nil
	})
	rp = e.call("POST", "/api/tasks", map[string]any{"taskId": task.TaskID, "workflowInstanceId": id,
		"status": "COMPLETED", "workerId": "slow"}, "")
	e.expect(rp, http.StatusOK, "text/plain")
	wf := e.workflow(id)
	if wf.Tasks[0].Status != conductor.TaskTimedOut || wf.Tasks[1].Status != conductor.TaskScheduled || wf.Tasks[1].RetryCount != 1 {
		t.Fatalf("after timeout and late result: %s/%s", wf.Tasks[0].Status, wf.Tasks[1].Status)
	}
	// The retry goes to the next poller, who finishes the workflow.
	retry := e.pollBatch("lease", "fast", 1, 5*time.Second, "")
	if len(retry) != 1 || retry[0].TaskID != wf.Tasks[1].TaskID || retry[0].RetryCount != 1 {
		t.Fatalf("retry polled %+v", retry)
	}
	e.expect(e.call("POST", "/api/tasks", map[string]any{"taskId": retry[0].TaskID, "workflowInstanceId": id, "status": "COMPLETED"}, ""),
		http.StatusOK, "text/plain")
	e.waitStatus(id, conductor.WorkflowCompleted)
}

// A lease extension through update-v2 hands out no next task, as
// Conductor's answers 204 to it (its updateTask returns no task for a
// lease extension): the worker holds the task it extends and asked for no
// other. A lease extension may leave out the status, which Conductor does
// not read for one.
func TestLeaseExtensionIsNoResult(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.register(`{"name":"lease_v2","version":1,"tasks":[{"name":"lv2","taskReferenceName":"l"}]}`)
	id := e.start("lease_v2", nil)
	other := e.start("lease_v2", nil)
	e.waitQueueSize("lv2", 2)
	held := e.pollBatch("lv2", "w1", 1, 5*time.Second, "")[0]
	rp := e.call("POST", "/api/tasks/update-v2", map[string]any{"taskId": held.TaskID, "workflowInstanceId": held.WorkflowInstanceID,
		"status": "IN_PROGRESS", "extendLease": true, "workerId": "w1"}, "")
	if rp.status != http.StatusNoContent {
		t.Fatalf("update-v2 lease extension: %d %s, want 204 and no next task", rp.status, rp.body)
	}
	rp = e.call("POST", "/api/tasks", map[string]any{"taskId": held.TaskID, "workflowInstanceId": held.WorkflowInstanceID,
		"extendLease": true, "workerId": "w1"}, "")
	e.expect(rp, http.StatusOK, "text/plain")
	if rp.body != held.TaskID {
		t.Fatalf("lease extension without a status answered %q, want the task id", rp.body)
	}
	// The other workflow's task is still there for the next poll, and the
	// extended one still held.
	next := e.pollBatch("lv2", "w2", 1, 5*time.Second, "")
	if len(next) != 1 || next[0].TaskID == held.TaskID {
		t.Fatalf("after the lease extensions the next poll got %+v", next)
	}
	if got := decodeTask(t, e.must(http.StatusOK, "GET", "/api/tasks/"+held.TaskID, nil)); got.Status != conductor.TaskInProgress || got.WorkerID != "w1" {
		t.Fatalf("the extended task is %s, held by %q", got.Status, got.WorkerID)
	}
	for _, wf := range []string{id, other} {
		if got := e.workflow(wf); got.Status != conductor.WorkflowRunning || len(got.Tasks) != 1 {
			t.Fatalf("workflow %s: %s with %d tasks", wf, got.Status, len(got.Tasks))
		}
	}
}

// A paused workflow's task can still be polled and completed; the workflow
// schedules nothing new until it is resumed (Conductor's behaviour).
func TestTaskUpdateWhilePaused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.register(httpPairFlow)
	id := e.start("http_pair", map[string]any{"n": int64(1)})
	e.must(http.StatusNoContent, "PUT", "/api/workflow/"+id+"/pause", nil)
	first := e.pollBatch("hw", "p", 1, 5*time.Second, "")
	if len(first) != 1 {
		t.Fatal("the scheduled task of a paused workflow was not handed out")
	}
	rp := e.call("POST", "/api/tasks/update-v2", map[string]any{"taskId": first[0].TaskID, "workflowInstanceId": id,
		"status": "COMPLETED", "outputData": map[string]any{"n": 2}, "workerId": "p"}, "")
	if rp.status != http.StatusNoContent {
		t.Fatalf("update-v2 of a paused workflow's task = %d %s, want 204 (nothing to hand out)", rp.status, rp.body)
	}
	wf := e.workflow(id)
	if wf.Status != conductor.WorkflowPaused || len(wf.Tasks) != 1 || wf.Tasks[0].Status != conductor.TaskCompleted {
		t.Fatalf("paused workflow after the update: %s with %d tasks", wf.Status, len(wf.Tasks))
	}
	e.must(http.StatusNoContent, "PUT", "/api/workflow/"+id+"/resume", nil)
	second := e.pollBatch("hw", "p", 1, 5*time.Second, "")
	if len(second) != 1 || second[0].ReferenceTaskName != "second" {
		t.Fatalf("after resume polled %+v", second)
	}
	e.expect(e.call("POST", "/api/tasks", map[string]any{"taskId": second[0].TaskID, "workflowInstanceId": id,
		"status": "COMPLETED", "outputData": map[string]any{"n": 3}}, ""), http.StatusOK, "text/plain")
	e.waitStatus(id, conductor.WorkflowCompleted)
	// A terminated workflow's task updates are answered 200 and ignored.
	id = e.start("http_pair", map[string]any{"n": int64(1)})
	e.must(http.StatusNoContent, "DELETE", "/api/workflow/"+id+"?reason=stop", nil)
	task := e.workflow(id).Tasks[0]
	e.expect(e.call("POST", "/api/tasks", map[string]any{"taskId": task.TaskID, "workflowInstanceId": id, "status": "COMPLETED"}, ""),
		http.StatusOK, "text/plain")
	if got := e.workflow(id).Tasks[0].Status; got != conductor.TaskCanceled {
		t.Fatalf("task of a terminated workflow is %s after an update", got)
	}
}

// Updating by reference name works for a SCHEDULED task nobody polled and
// for a WAIT task; the body is output as given, set over the task's.
func TestUpdateTaskByRefName(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.register(`{"name":"by_ref","version":1,"tasks":[
	 {"name":"manual","taskReferenceName":"m"},
	 {"name":"hold","taskReferenceName":"w","type":"WAIT"}],
	 "outputParameters":{"m":"${m.output}","w":"${w.output}"}}`)
	id := e.start("by_ref", nil)
	e.waitQueueSize("manual", 1)
	scheduled := e.workflow(id).Tasks[0]
	if scheduled.Status != conductor.TaskScheduled {
		t.Fatalf("task is %s", scheduled.Status)
	}
	// A reference that has not run yet has no pending task: Conductor's
	// TaskService answers 200 with no body, its /sync 404.
	rp := e.call("POST", "/api/tasks/"+id+"/w/COMPLETED", map[string]any{"early": true}, "")
	e.expect(rp, http.StatusOK, "text/plain")
	if rp.body != "" {
		t.Fatalf("by-ref update of a reference that never ran answered %q, want no body", rp.body)
	}
	rp = e.call("POST", "/api/tasks/"+id+"/w/COMPLETED/sync", map[string]any{"early": true}, "")
	if rp.status != http.StatusNotFound || !strings.Contains(rp.body, "found no running task w of workflow "+id) {
		t.Fatalf("sync by-ref update of a reference that never ran: %d %s, want 404", rp.status, rp.body)
	}
	// TaskClient.updateTaskResult sends the output wrapped: stored as given.
	rp = e.call("POST", "/api/tasks/"+id+"/m/COMPLETED?workerid=operator", `{"outputData":{"k":1}}`, "")
	e.expect(rp, http.StatusOK, "text/plain")
	if rp.body != scheduled.TaskID {
		t.Fatalf("by-ref update answered %q, want %s", rp.body, scheduled.TaskID)
	}
	// The stale dispatch message is skipped: nothing to poll, queue empty.
	if tasks := e.pollBatch("manual", "late", 1, 200*time.Millisecond, ""); len(tasks) != 0 {
		t.Fatalf("a completed task was polled: %+v", tasks[0])
	}
	if n := e.queueSize("manual"); n != 0 {
		t.Fatalf("queue size %d after the stale dispatch was skipped", n)
	}
	// A WAIT task: IN_PROGRESS keeps it waiting with the output stored ...
	e.waitStatus(id, conductor.WorkflowRunning)
	testutil.Eventually(t, 10*time.Second, 20*time.Millisecond, func() error {
		if w := taskByRef(e.workflow(id), "w"); w == nil || w.Status != conductor.TaskInProgress {
			return fmt.Errorf("WAIT task not waiting yet")
		}
		return nil
	})
	e.expect(e.call("POST", "/api/tasks/"+id+"/w/IN_PROGRESS", map[string]any{"greet": "hi"}, ""), http.StatusOK, "text/plain")
	waitTask := taskByRef(e.workflow(id), "w")
	if waitTask.Status != conductor.TaskInProgress || !reflect.DeepEqual(waitTask.OutputData, map[string]any{"greet": "hi"}) {
		t.Fatalf("WAIT after IN_PROGRESS update: %s %v", waitTask.Status, waitTask.OutputData)
	}
	// ... and /sync completes it, answering the workflow: its output is
	// set over the task's, as Conductor merges it.
	rp = e.call("POST", "/api/tasks/"+id+"/w/COMPLETED/sync?workerid=operator", map[string]any{"answer": 42}, "")
	e.expect(rp, http.StatusOK, "application/json")
	var got conductor.Workflow
	if err := json.Unmarshal([]byte(rp.body), &got); err != nil {
		t.Fatal(err)
	}
	if got.WorkflowID != id || got.Status != conductor.WorkflowCompleted || len(got.Tasks) != 2 {
		t.Fatalf("sync answered %s %s with %d tasks", got.WorkflowID, got.Status, len(got.Tasks))
	}
	wf := e.waitStatus(id, conductor.WorkflowCompleted)
	want := map[string]any{"m": map[string]any{"outputData": map[string]any{"k": float64(1)}}, "w": map[string]any{"greet": "hi", "answer": float64(42)}}
	if !reflect.DeepEqual(wf.Output, want) {
		t.Fatalf("output %v, want %v", wf.Output, want)
	}
	if m := taskByRef(wf, "m"); m.WorkerID != "operator" {
		t.Fatalf("by-ref worker id %q", m.WorkerID)
	}
	// Late by-ref updates of finished tasks find no pending task: 200
	// with no body, 404 with sync, and nothing changes.
	rp = e.call("POST", "/api/tasks/"+id+"/m/FAILED", map[string]any{}, "")
	e.expect(rp, http.StatusOK, "text/plain")
	if rp.body != "" {
		t.Fatalf("late by-ref update answered %q, want no body", rp.body)
	}
	if rp = e.call("POST", "/api/tasks/"+id+"/m/FAILED/sync", map[string]any{}, ""); rp.status != http.StatusNotFound {
		t.Fatalf("late sync by-ref update: %d %s, want 404", rp.status, rp.body)
	}
	if s := taskByRef(e.workflow(id), "m").Status; s != conductor.TaskCompleted {
		t.Fatalf("late by-ref update made the task %s", s)
	}
}

// An update by reference name starts from the pending task, as
// Conductor's does (TaskResult(pending)): a worker's task waiting for its
// callbackAfterSeconds waits again as long, and keeps the
// reasonForIncompletion its worker gave, where the update is only output.
func TestUpdateByRefKeepsCallbackAndReason(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.register(`{"name":"by_ref_cb","version":1,"tasks":[{"name":"cbw","taskReferenceName":"c"}]}`)
	id := e.start("by_ref_cb", nil)
	task := e.pollBatch("cbw", "w1", 1, 5*time.Second, "")[0]
	e.expect(e.call("POST", "/api/tasks", map[string]any{"taskId": task.TaskID, "workflowInstanceId": id, "status": "IN_PROGRESS",
		"callbackAfterSeconds": 600, "reasonForIncompletion": "waiting on the batch job", "outputData": map[string]any{"p": 1}, "workerId": "w1"}, ""),
		http.StatusOK, "text/plain")
	rp := e.call("POST", "/api/tasks/"+id+"/c/IN_PROGRESS", map[string]any{"note": "looked at"}, "")
	e.expect(rp, http.StatusOK, "text/plain")
	if rp.body != task.TaskID {
		t.Fatalf("by-ref update answered %q, want %s", rp.body, task.TaskID)
	}
	got := decodeTask(t, e.must(http.StatusOK, "GET", "/api/tasks/"+task.TaskID, nil))
	want := map[string]any{"p": float64(1), "note": "looked at"}
	if got.Status != conductor.TaskScheduled || got.CallbackAfterSeconds != 600 || got.ReasonForIncompletion != "waiting on the batch job" ||
		!reflect.DeepEqual(got.OutputData, want) {
		t.Fatalf("after the by-ref update: %s, callbackAfterSeconds %d, reason %q, output %v; want SCHEDULED, 600, the worker's reason, %v",
			got.Status, got.CallbackAfterSeconds, got.ReasonForIncompletion, got.OutputData, want)
	}
	// Still waiting for its callback: no worker is handed it.
	if tasks := e.pollBatch("cbw", "w2", 1, 200*time.Millisecond, ""); len(tasks) != 0 {
		t.Fatalf("the task waiting for its callback was handed out: %+v", tasks[0])
	}
	// Completed by reference name, it ends with the reason it had.
	e.expect(e.call("POST", "/api/tasks/"+id+"/c/COMPLETED", map[string]any{"done": true}, ""), http.StatusOK, "text/plain")
	wf := e.waitStatus(id, conductor.WorkflowCompleted)
	if c := taskByRef(wf, "c"); c.ReasonForIncompletion != "waiting on the batch job" || c.OutputData["done"] != true {
		t.Fatalf("completed by reference name: reason %q, output %v", c.ReasonForIncompletion, c.OutputData)
	}
}

// GET /api/tasks/{id} and task logs (JSON string bodies, text/plain, and
// the logs a result carries).
func TestGetTaskAndLogs(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.register(httpPairFlow)
	id := e.start("http_pair", map[string]any{"n": int64(1)})
	task := e.pollBatch("hw", "logger", 1, 5*time.Second, "")[0]

	rp := e.call("GET", "/api/tasks/"+task.TaskID, nil, "")
	e.expect(rp, http.StatusOK, "application/json")
	if got := decodeTask(t, rp.body); got.TaskID != task.TaskID || got.Status != conductor.TaskInProgress || got.WorkflowInstanceID != id {
		t.Fatalf("getTask = %+v", got)
	}
	rp = e.call("GET", "/api/tasks/"+task.TaskID+"/log", nil, "")
	e.expect(rp, http.StatusOK, "application/json")
	if rp.body != "[]" {
		t.Fatalf("logs of a task without logs = %s, want []", rp.body)
	}
	if rp := e.call("POST", "/api/tasks/"+task.TaskID+"/log", `"hello log"`, ""); rp.status != http.StatusNoContent {
		t.Fatalf("add log = %d %s", rp.status, rp.body)
	}
	if rp := e.call("POST", "/api/tasks/"+task.TaskID+"/log", "plain line", "text/plain"); rp.status != http.StatusNoContent {
		t.Fatalf("add text/plain log = %d %s", rp.status, rp.body)
	}
	// The Go SDK's TaskClient.Log sends the line unquoted, as JSON.
	if rp := e.call("POST", "/api/tasks/"+task.TaskID+"/log", "raw line", "application/json"); rp.status != http.StatusNoContent {
		t.Fatalf("add an unquoted log line sent as JSON = %d %s", rp.status, rp.body)
	}
	e.expect(e.call("POST", "/api/tasks/update-v2", map[string]any{"taskId": task.TaskID, "workflowInstanceId": id, "status": "COMPLETED",
		"outputData": map[string]any{"n": 2}, "logs": []map[string]any{{"log": "from result", "createdTime": 1}}}, ""), http.StatusOK, "application/json")
	var logs []conductor.TaskExecLog
	if err := json.Unmarshal([]byte(e.must(http.StatusOK, "GET", "/api/tasks/"+task.TaskID+"/log", nil)), &logs); err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range logs {
		lines = append(lines, l.Log)
		if l.TaskID != task.TaskID || l.CreatedTime == 0 {
			t.Errorf("log entry %+v", l)
		}
	}
	if !reflect.DeepEqual(lines, []string{"hello log", "plain line", "raw line", "from result"}) {
		t.Fatalf("logs %q", lines)
	}
}

// Queue sizes count tasks waiting to be taken; poll data records who
// polled; domains isolate queues.
func TestQueueSizesPollDataDomains(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.register(`{"name":"sized","version":1,"tasks":[{"name":"sz","taskReferenceName":"s"}]}`)
	for range 3 {
		e.start("sized", nil)
	}
	e.waitQueueSize("sz", 3)
	var sizes map[string]int64
	rp := e.call("GET", "/api/tasks/queue/sizes?taskType=sz&taskType=never_seen", nil, "")
	e.expect(rp, http.StatusOK, "application/json")
	if err := json.Unmarshal([]byte(rp.body), &sizes); err != nil || !reflect.DeepEqual(sizes, map[string]int64{"sz": 3, "never_seen": 0}) {
		t.Fatalf("sizes %s", rp.body)
	}
	if rp := e.call("GET", "/api/tasks/queue/sizes", nil, ""); rp.body != "{}" {
		t.Fatalf("sizes of no types = %s", rp.body)
	}

	before := time.Now().UnixMilli()
	if got := len(e.pollBatch("sz", "worker-a", 2, time.Second, "")); got != 2 {
		t.Fatalf("polled %d", got)
	}
	e.pollBatch("sz", "worker-b", 1, time.Second, "")
	e.waitQueueSize("sz", 0)

	// A workflow mapping the task to a domain: only domain pollers see it.
	var req = conductor.StartWorkflowRequest{Name: "sized", TaskToDomain: map[string]string{"sz": "blue"}}
	id := e.must(http.StatusOK, "POST", "/api/workflow", req)
	testutil.Eventually(t, 10*time.Second, 20*time.Millisecond, func() error {
		var all map[string]int64
		if err := json.Unmarshal([]byte(e.must(http.StatusOK, "GET", "/api/tasks/queue/all", nil)), &all); err != nil {
			return err
		}
		if all["blue:sz"] != 1 || all["sz"] != 0 {
			return fmt.Errorf("queue/all = %v", all)
		}
		var verbose map[string]map[string]map[string]int64
		if err := json.Unmarshal([]byte(e.must(http.StatusOK, "GET", "/api/tasks/queue/all/verbose", nil)), &verbose); err != nil {
			return err
		}
		if verbose["blue:sz"]["a"]["size"] != 1 || verbose["sz"]["a"]["size"] != 0 {
			return fmt.Errorf("queue/all/verbose = %v", verbose)
		}
		return nil
	})
	if got := e.pollBatch("sz", "worker-a", 1, 200*time.Millisecond, ""); len(got) != 0 {
		t.Fatal("a domain task went to a poller without domain")
	}
	got := e.pollBatch("sz", "worker-c", 1, time.Second, "blue")
	if len(got) != 1 || got[0].WorkflowInstanceID != id || got[0].Domain != "blue" {
		t.Fatalf("domain poll %+v", got)
	}

	rp = e.call("GET", "/api/tasks/queue/polldata?taskType=sz", nil, "")
	e.expect(rp, http.StatusOK, "application/json")
	var polls []map[string]any
	if err := json.Unmarshal([]byte(rp.body), &polls); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, p := range polls {
		if p["queueName"] != "sz" || p["lastPollTime"].(float64) < float64(before) {
			t.Errorf("poll data %v", p)
		}
		seen[fmt.Sprint(p["workerId"], "/", p["domain"])] = true
	}
	if !seen["worker-a/<nil>"] || !seen["worker-b/<nil>"] || !seen["worker-c/blue"] || len(polls) != 3 {
		t.Fatalf("poll data %s", rp.body)
	}
	if rp := e.call("GET", "/api/tasks/queue/polldata?taskType=nobody_polls", nil, ""); rp.body != "[]" {
		t.Fatalf("poll data of an unpolled type = %s", rp.body)
	}
}

// A task taken over HTTP cannot be taken over NATS, and one a NATS worker
// holds is not handed out over HTTP: both paths share the queue and the
// first take wins.
func TestHTTPAndNATSShareTasks(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.register(`{"name":"shared","version":1,"tasks":[{"name":"sh","taskReferenceName":"s"}]}`)
	nc := e.connect("sh")
	ctx := testutil.Context(t, 60*time.Second)

	// HTTP first.
	id := e.start("shared", nil)
	byHTTP := e.pollBatch("sh", "http-worker", 1, 5*time.Second, "")
	if len(byHTTP) != 1 {
		t.Fatal("HTTP poll got nothing")
	}
	body, _ := json.Marshal(workers.TakeRequest{TaskID: byHTTP[0].TaskID, WorkflowInstanceID: id, WorkerID: "nats-worker"})
	m, err := nc.RequestWithContext(ctx, workers.TakeSubject("sh", ""), body)
	if err != nil {
		t.Fatal(err)
	}
	var take workers.TakeReply
	if err := json.Unmarshal(m.Data, &take); err != nil || take.Error == nil || take.Error.Code != workers.CodeGone {
		t.Fatalf("NATS take of a task taken over HTTP answered %s", m.Data)
	}
	e.expect(e.call("POST", "/api/tasks", map[string]any{"taskId": byHTTP[0].TaskID, "workflowInstanceId": id, "status": "COMPLETED"}, ""),
		http.StatusOK, "text/plain")
	if wf := e.waitStatus(id, conductor.WorkflowCompleted); wf.Tasks[0].WorkerID != "http-worker" {
		t.Fatalf("worker %q", wf.Tasks[0].WorkerID)
	}

	// NATS first: the Go SDK worker holds the task while HTTP polls.
	holding := make(chan string, 1)
	release := make(chan struct{})
	runWorker(t, nc, "sh", 1, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		holding <- task.TaskID
		<-release
		return workers.Output{Data: map[string]any{"by": "nats"}}, nil
	})
	id = e.start("shared", nil)
	var held string
	select {
	case held = <-holding:
	case <-ctx.Done():
		t.Fatal("the NATS worker got no task")
	}
	if got := e.pollBatch("sh", "http-worker", 5, 500*time.Millisecond, ""); len(got) != 0 {
		t.Fatalf("HTTP poll got %s, which a NATS worker holds", got[0].TaskID)
	}
	testutil.Eventually(t, 10*time.Second, 20*time.Millisecond, func() error {
		rp := e.call("GET", "/api/tasks/"+held, nil, "")
		if task := decodeTask(t, rp.body); task.Status != conductor.TaskInProgress || task.WorkerID != "go-sh" {
			return fmt.Errorf("held task %s by %q", task.Status, task.WorkerID)
		}
		return nil
	})
	close(release)
	if wf := e.waitStatus(id, conductor.WorkflowCompleted); wf.Tasks[0].WorkerID != "go-sh" || wf.Output["by"] != "nats" {
		t.Fatalf("worker %q output %v", wf.Tasks[0].WorkerID, wf.Output)
	}
}

// httpWorker is a Conductor-style worker over plain net/http: batch poll,
// execute, update-v2 (running the task it answers, if any).
type httpWorker struct {
	base     string
	client   *http.Client
	taskType string
	workerID string
	count    int
	execute  func(*conductor.Task) (string, map[string]any)
}

func (w *httpWorker) run(ctx context.Context, errs chan<- error) {
	for ctx.Err() == nil {
		req, _ := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("%s/api/tasks/poll/batch/%s?workerid=%s&count=%d&timeout=500",
			w.base, w.taskType, w.workerID, w.count), nil)
		res, err := w.client.Do(req)
		if err != nil {
			if ctx.Err() == nil {
				sendErr(errs, err)
			}
			return
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		var tasks []*conductor.Task
		if res.StatusCode != http.StatusOK || json.Unmarshal(b, &tasks) != nil {
			sendErr(errs, fmt.Errorf("poll %s: %d %s", w.taskType, res.StatusCode, b))
			return
		}
		var wg sync.WaitGroup
		for _, t := range tasks {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for t != nil && ctx.Err() == nil {
					t = w.work(ctx, t, errs)
				}
			}()
		}
		wg.Wait()
	}
}

// work executes one task and reports it; it returns the next task
// update-v2 handed out.
func (w *httpWorker) work(ctx context.Context, t *conductor.Task, errs chan<- error) *conductor.Task {
	status, out := w.execute(t)
	body, _ := json.Marshal(conductor.TaskResult{TaskID: t.TaskID, WorkflowInstanceID: t.WorkflowInstanceID,
		Status: status, OutputData: out, WorkerID: w.workerID})
	req, _ := http.NewRequestWithContext(ctx, "POST", w.base+"/api/tasks/update-v2", strings.NewReader(string(body)))
	req.Header.Set("Content-Type", "application/json")
	res, err := w.client.Do(req)
	if err != nil {
		if ctx.Err() == nil {
			sendErr(errs, err)
		}
		return nil
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	switch res.StatusCode {
	case http.StatusNoContent:
		return nil
	case http.StatusOK:
		var next conductor.Task
		if err := json.Unmarshal(b, &next); err != nil || next.TaskID == "" {
			sendErr(errs, fmt.Errorf("update-v2 answered %s", b))
			return nil
		}
		return &next
	}
	sendErr(errs, fmt.Errorf("update-v2 %s: %d %s", t.TaskID, res.StatusCode, b))
	return nil
}

// sendErr reports an error without blocking: the first ones are enough.
func sendErr(errs chan<- error, err error) {
	select {
	case errs <- err:
	default:
	}
}

// Exactly once over HTTP: 50 workflows of 5 SIMPLE tasks, three concurrent
// pollers per type taking batches; every task body runs exactly once.
func TestHTTPWorkersExactlyOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const workflows, steps, pollers = 50, 5, 3
	var tasks []string
	for i := 1; i <= steps; i++ {
		prev := "${workflow.input.n}"
		if i > 1 {
			prev = fmt.Sprintf("${s%d.output.n}", i-1)
		}
		tasks = append(tasks, fmt.Sprintf(`{"name":"eo_%d","taskReferenceName":"s%d","inputParameters":{"n":"%s"}}`, i, i, prev))
	}
	e.register(fmt.Sprintf(`{"name":"five","version":1,"tasks":[%s],"outputParameters":{"n":"${s%d.output.n}"}}`, strings.Join(tasks, ","), steps))

	runs := newCounter()
	ctx, cancel := context.WithCancel(context.Background())
	errs := make(chan error, 100)
	var wg sync.WaitGroup
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	for i := 1; i <= steps; i++ {
		for p := 0; p < pollers; p++ {
			w := &httpWorker{base: e.base, client: client, taskType: fmt.Sprintf("eo_%d", i), workerID: fmt.Sprintf("p%d-%d", i, p), count: 4,
				execute: func(t *conductor.Task) (string, map[string]any) {
					runs.add(t.TaskID)
					n, _ := t.InputData["n"].(float64)
					return conductor.TaskCompleted, map[string]any{"n": n + 1}
				}}
			wg.Add(1)
			go func() {
				defer wg.Done()
				w.run(ctx, errs)
			}()
		}
	}
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	ids := make([]string, workflows)
	var started atomic.Int64
	var swg sync.WaitGroup
	for i := range ids {
		swg.Add(1)
		go func() {
			defer swg.Done()
			ids[i] = e.start("five", map[string]any{"n": int64(i * 100)})
			started.Add(1)
		}()
	}
	swg.Wait()
	for i, id := range ids {
		select {
		case err := <-errs:
			t.Fatal(err)
		default:
		}
		wf := e.waitStatus(id, conductor.WorkflowCompleted)
		if wf.Output["n"] != float64(i*100+steps) {
			t.Fatalf("workflow %d output %v", i, wf.Output)
		}
	}
	if d := runs.duplicates(); len(d) > 0 {
		t.Fatalf("tasks executed more than once: %v", d)
	}
	if got := runs.total(); got != workflows*steps {
		t.Fatalf("%d tasks executed, want %d", got, workflows*steps)
	}
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
}

// Bad input to every task endpoint is a 4xx with a JSON error body that
// says what is wrong.
func TestTasksAPIBadInput(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.register(httpPairFlow)
	id := e.start("http_pair", map[string]any{"n": int64(1)})
	task := e.workflow(id).Tasks[0]
	long := strings.Repeat("x", 300)
	tests := []struct {
		name, method, path string
		body               any
		status             int
		message            string
	}{
		{"count 0", "GET", "/api/tasks/poll/batch/hw?count=0", nil, 400, "count"},
		{"count negative", "GET", "/api/tasks/poll/batch/hw?count=-3", nil, 400, "count"},
		{"count not a number", "GET", "/api/tasks/poll/batch/hw?count=many", nil, 400, "count"},
		{"timeout negative", "GET", "/api/tasks/poll/batch/hw?timeout=-1", nil, 400, "timeout"},
		{"timeout not a number", "GET", "/api/tasks/poll/batch/hw?timeout=1.5s", nil, 400, "timeout"},
		{"single poll bad timeout", "GET", "/api/tasks/poll/hw?timeout=x", nil, 400, "timeout"},
		{"task type too long", "GET", "/api/tasks/poll/batch/" + long, nil, 400, "too long"},
		{"worker id too long", "GET", "/api/tasks/poll/batch/hw?workerid=" + long, nil, 400, "workerid"},
		{"update-v2 malformed JSON", "POST", "/api/tasks/update-v2", `{"taskId":`, 400, "malformed JSON"},
		{"update-v2 wrong type", "POST", "/api/tasks/update-v2", `{"taskId":[5],"status":"COMPLETED"}`, 400, `"path":"taskId","message":"must be a string, not a JSON array"`},
		{"update-v2 output not an object", "POST", "/api/tasks/update-v2", `{"taskId":"t","status":"COMPLETED","outputData":[1]}`, 400, `"path":"outputData","message":"must be an object, not a JSON array"`},
		{"update-v2 empty body", "POST", "/api/tasks/update-v2", "", 400, "empty"},
		{"update-v2 no task id", "POST", "/api/tasks/update-v2", `{"status":"COMPLETED"}`, 400, "taskId"},
		{"update-v2 bad status", "POST", "/api/tasks/update-v2", map[string]any{"taskId": task.TaskID, "workflowInstanceId": id, "status": "DONE"}, 400, "status"},
		{"update-v2 no status", "POST", "/api/tasks/update-v2", map[string]any{"taskId": task.TaskID, "workflowInstanceId": id}, 400, "status"},
		{"update-v2 unknown task", "POST", "/api/tasks/update-v2", map[string]any{"taskId": "nope", "workflowInstanceId": id, "status": "COMPLETED"}, 404, "nope"},
		{"update-v2 unknown task, no workflow id", "POST", "/api/tasks/update-v2", map[string]any{"taskId": "nope", "status": "COMPLETED"}, 404, "nope"},
		{"update-v2 unknown workflow", "POST", "/api/tasks/update-v2", map[string]any{"taskId": task.TaskID, "workflowInstanceId": "nowf", "status": "COMPLETED"}, 404, "not found"},
		{"update malformed JSON", "POST", "/api/tasks", `[`, 400, "malformed JSON"},
		{"update array", "POST", "/api/tasks", `[{"taskId":"x"}]`, 400, "body: must be an object, not a JSON array"},
		{"update bad status", "POST", "/api/tasks", map[string]any{"taskId": task.TaskID, "workflowInstanceId": id, "status": "CANCELED"}, 400, "status"},
		{"update unknown task", "POST", "/api/tasks", map[string]any{"taskId": "nope", "workflowInstanceId": id, "status": "COMPLETED"}, 404, "nope"},
		{"by ref bad status", "POST", "/api/tasks/" + id + "/first/DONE", `{}`, 400, "status"},
		{"by ref body not an object", "POST", "/api/tasks/" + id + "/first/COMPLETED", `[1,2]`, 400, "body: must be an object, not a JSON array"},
		{"by ref malformed body", "POST", "/api/tasks/" + id + "/first/COMPLETED", `{"a":`, 400, "malformed JSON"},
		{"by ref unknown workflow", "POST", "/api/tasks/nowf/first/COMPLETED", `{}`, 404, "nowf"},
		{"by ref sync unknown ref", "POST", "/api/tasks/" + id + "/nope/COMPLETED/sync", `{}`, 404, "nope"},
		{"by ref sync unknown workflow", "POST", "/api/tasks/nowf/first/COMPLETED/sync", `{}`, 404, "nowf"},
		{"get unknown task", "GET", "/api/tasks/nope", nil, 404, "nope"},
		{"logs of unknown task", "GET", "/api/tasks/nope/log", nil, 404, "nope"},
		{"log to unknown task", "POST", "/api/tasks/nope/log", `"x"`, 404, "nope"},
		{"log empty", "POST", "/api/tasks/" + task.TaskID + "/log", `""`, 400, "empty"},
		{"poll data without type", "GET", "/api/tasks/queue/polldata", nil, 400, "taskType"},
		{"queue size of a too long type", "GET", "/api/tasks/queue/sizes?taskType=" + long, nil, 400, "too long"},
		{"unknown GET below /api/tasks", "GET", "/api/tasks/" + task.TaskID + "/nothing", nil, 404, "no endpoint GET /api/tasks/"},
	}
	for _, tt := range tests {
		rp := e.call(tt.method, tt.path, tt.body, "")
		if rp.status != tt.status || rp.ctype != "application/json" || !strings.Contains(rp.body, tt.message) || !strings.Contains(rp.body, fmt.Sprintf(`"status":%d`, tt.status)) {
			t.Errorf("%s: %d %q %s; want %d mentioning %q", tt.name, rp.status, rp.ctype, rp.body, tt.status, tt.message)
		}
	}
	// Out-of-range counts and timeouts above the caps are lowered, not
	// refused: a huge count hands out what there is.
	got := e.pollBatch("hw", "big", 100000, 100*time.Second, "")
	if len(got) != 1 || got[0].TaskID != task.TaskID {
		t.Fatalf("capped poll got %d tasks", len(got))
	}
	// Nothing above changed the workflow.
	if wf := e.workflow(id); len(wf.Tasks) != 1 || wf.Tasks[0].Status != conductor.TaskInProgress || len(wf.Tasks[0].OutputData) != 0 {
		t.Fatalf("bad input changed the workflow: %+v", wf.Tasks[0])
	}
}

// A long poll does not hold up a graceful stop: it answers [] within about
// a second of the shutdown.
func TestLongPollEndsOnShutdown(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	type polled struct {
		status int
		body   string
	}
	done := make(chan polled, 1)
	go func() {
		res, err := http.Get(e.base + "/api/tasks/poll/batch/idle?workerid=w&timeout=30000")
		if err != nil {
			done <- polled{body: err.Error()}
			return
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		done <- polled{res.StatusCode, string(b)}
	}()
	testutil.Eventually(t, 10*time.Second, 20*time.Millisecond, func() error {
		if len(e.node.Executor().PollData("idle")) == 0 {
			return fmt.Errorf("the poll has not arrived")
		}
		return nil
	})
	// The poll waits up to 30 s: a stop that waited for it would run out
	// of its context and fail.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.node.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if p := <-done; p.status != http.StatusOK || p.body != "[]" {
		t.Fatalf("the long poll answered %d %s", p.status, p.body)
	}
}

// A result whose body is over the API's 8 MiB fails its task for good,
// saying why, rather than being refused: refused, a worker would send it
// again and again, and the task would run again into the same refusal
// after its response timeout. Over 32 MiB, the body is refused (413).
func TestOversizedResultFailsTheTask(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.register(`{"name":"big_out","tasks":[{"name":"big_task","taskReferenceName":"t"}]}`)
	result := func(taskID, wfID string, size int) string {
		return `{"outputData":{"blob":"` + strings.Repeat("x", size) + `","nested":[{"a":[1,{"b":"c"}]}]},"taskId":"` + taskID +
			`","workflowInstanceId":"` + wfID + `","workerId":"w1","status":"COMPLETED"}`
	}

	id := e.start("big_out", nil)
	task := e.pollBatch("big_task", "w1", 1, 10*time.Second, "")[0]
	if status, body := e.do("POST", "/api/tasks", result(task.TaskID, id, 40<<20)); status != http.StatusRequestEntityTooLarge {
		t.Fatalf("a 40 MiB result: %d %s, want 413", status, body)
	}
	e.must(http.StatusOK, "POST", "/api/tasks", result(task.TaskID, id, 9<<20))
	wf := e.waitStatus(id, conductor.WorkflowFailed)
	got := wf.Tasks[0]
	if got.Status != conductor.TaskFailedWithTerminalError || !strings.Contains(got.ReasonForIncompletion, "its body is over") || len(got.OutputData) != 0 {
		t.Fatalf("the task of an oversized result: %s %q %d output keys", got.Status, got.ReasonForIncompletion, len(got.OutputData))
	}
}
