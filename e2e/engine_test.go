package e2e_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/workers"
)

const orderFlow = `{"name":"order_flow","version":1,"ownerEmail":"dev@example.com",
 "inputParameters":["orderId"],
 "outputParameters":{"label":"${ship_ref.output.label}","total":"${join_ref.output.price_ref.total}","child":"${child_ref.output.greeting}"},
 "tasks":[
  {"name":"fetch_order","taskReferenceName":"fetch_ref","inputParameters":{"orderId":"${workflow.input.orderId}"}},
  {"name":"fork","taskReferenceName":"fork_ref","type":"FORK_JOIN","forkTasks":[
     [{"name":"price","taskReferenceName":"price_ref","inputParameters":{"items":"${fetch_ref.output.items}"}}],
     [{"name":"child","taskReferenceName":"child_ref","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"greet"},
       "inputParameters":{"who":"${fetch_ref.output.customer}"}}]]},
  {"name":"join","taskReferenceName":"join_ref","type":"JOIN","joinOn":["price_ref","child_ref"]},
  {"name":"route","taskReferenceName":"route_ref","type":"SWITCH","evaluatorType":"value-param","expression":"carrier",
   "inputParameters":{"carrier":"${fetch_ref.output.carrier}"},
   "decisionCases":{"ups":[{"name":"ship","taskReferenceName":"ship_ref","inputParameters":{"via":"ups"}}]},
   "defaultCase":[{"name":"ship","taskReferenceName":"ship_other_ref","inputParameters":{"via":"other"}}]}]}`

const greetFlow = `{"name":"greet","version":1,"tasks":[
  {"name":"say_hello","taskReferenceName":"hello_ref","inputParameters":{"who":"${workflow.input.who}"}}],
 "outputParameters":{"greeting":"${hello_ref.output.text}"}}`

// A workflow with FORK/JOIN, SWITCH and a SUB_WORKFLOW completes over NATS
// workers with the right output.
func TestForkSwitchSubWorkflow(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.register(orderFlow, greetFlow)
	e.work("fetch_order", 2, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		return workers.Output{Data: map[string]any{"items": []any{int64(2), int64(3)}, "customer": "Ada", "carrier": "ups"}}, nil
	})
	e.work("price", 2, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		var sum int64
		for _, v := range task.InputData["items"].([]any) {
			sum += int64(v.(float64))
		}
		return workers.Output{Data: map[string]any{"total": sum}}, nil
	})
	e.work("say_hello", 1, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		return workers.Output{Data: map[string]any{"text": "hello " + task.InputData["who"].(string)}}, nil
	})
	e.work("ship", 1, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		return workers.Output{Data: map[string]any{"label": "LBL-" + task.InputData["via"].(string)}}, nil
	})

	id := e.start("order_flow", map[string]any{"orderId": "o-1"})
	wf := e.waitStatus(id, conductor.WorkflowCompleted)
	want := map[string]any{"label": "LBL-ups", "total": float64(5), "child": "hello Ada"}
	if !reflect.DeepEqual(wf.Output, want) {
		t.Fatalf("output = %#v, want %#v", wf.Output, want)
	}
	child := taskByRef(wf, "child_ref")
	if child.SubWorkflowID == "" || child.Status != conductor.TaskCompleted {
		t.Fatalf("child task = %+v", child)
	}
	sub := e.workflow(child.SubWorkflowID)
	if sub.Status != conductor.WorkflowCompleted || sub.ParentWorkflowID != id || sub.ParentWorkflowTaskID != child.TaskID {
		t.Fatalf("sub workflow = %s parent %s/%s", sub.Status, sub.ParentWorkflowID, sub.ParentWorkflowTaskID)
	}
	if taskByRef(wf, "ship_other_ref") != nil || taskByRef(wf, "fetch_ref").WorkerID != "go-fetch_order" {
		t.Fatal("wrong branch, or worker id not recorded")
	}
}

// A failing task is retried with backoff, then fails the workflow, which
// starts its failure workflow.
func TestRetryThenFailureWorkflow(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.must(http.StatusNoContent, "POST", "/api/metadata/taskdefs", `[{"name":"flaky","retryCount":2,"retryLogic":"EXPONENTIAL_BACKOFF","retryDelaySeconds":1,"responseTimeoutSeconds":60}]`)
	e.register(`{"name":"fragile","failureWorkflow":"cleanup","tasks":[{"name":"flaky","taskReferenceName":"flaky_ref"}]}`,
		`{"name":"cleanup","tasks":[{"name":"clean","taskReferenceName":"clean_ref","inputParameters":{"failed":"${workflow.input.workflowId}","why":"${workflow.input.reason}"}}]}`)
	attempts := make(chan time.Time, 10)
	e.work("flaky", 1, func(context.Context, *conductor.Task) (workers.Output, error) {
		attempts <- time.Now()
		return workers.Output{}, errors.New("downstream unavailable")
	})
	var cleanupInput map[string]any
	cleaned := make(chan struct{}, 1)
	e.work("clean", 1, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		cleanupInput = task.InputData
		cleaned <- struct{}{}
		return workers.Output{}, nil
	})
	id := e.start("fragile", map[string]any{"order": "o-9"})
	wf := e.waitStatus(id, conductor.WorkflowFailed)
	if n := len(wf.Tasks); n != 3 {
		t.Fatalf("%d task instances, want 3 (two retries)", n)
	}
	for i, task := range wf.Tasks {
		if task.RetryCount != i || task.Status != conductor.TaskFailed || task.ReasonForIncompletion != "downstream unavailable" {
			t.Fatalf("attempt %d: %+v", i, task)
		}
	}
	var times []time.Time
	for len(times) < 3 {
		times = append(times, <-attempts)
	}
	// EXPONENTIAL_BACKOFF with 1s: 1s then 2s between attempts.
	if g1, g2 := times[1].Sub(times[0]), times[2].Sub(times[1]); g1 < 900*time.Millisecond || g2 < 1900*time.Millisecond {
		t.Fatalf("retry gaps %s, %s; want about 1s and 2s", g1, g2)
	}
	select {
	case <-cleaned:
	case <-time.After(20 * time.Second):
		t.Fatal("failure workflow did not run")
	}
	if cleanupInput["failed"] != id || !strings.Contains(fmt.Sprint(cleanupInput["why"]), "downstream unavailable") {
		t.Fatalf("failure workflow input = %v", cleanupInput)
	}
}

// Terminate, restart, retry and rerun leave the execution in Conductor's
// documented states.
func TestLifecycleOverREST(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.register(`{"name":"two","tasks":[{"name":"first","taskReferenceName":"first"},{"name":"second","taskReferenceName":"second"}]}`)
	e.must(http.StatusNoContent, "POST", "/api/metadata/taskdefs", `[{"name":"second","retryCount":0}]`)
	fail := make(chan bool, 100)
	e.work("first", 2, func(context.Context, *conductor.Task) (workers.Output, error) {
		return workers.Output{Data: map[string]any{"ok": true}}, nil
	})
	e.work("second", 2, func(context.Context, *conductor.Task) (workers.Output, error) {
		select {
		case f := <-fail:
			if f {
				return workers.Output{}, errors.New("second failed")
			}
		default:
		}
		return workers.Output{Data: map[string]any{"done": true}}, nil
	})

	// retry: a failed workflow runs its failed task again and completes.
	fail <- true
	id := e.start("two", nil)
	wf := e.waitStatus(id, conductor.WorkflowFailed)
	if !reflect.DeepEqual(wf.FailedReferenceTaskNames, []string{"second"}) {
		t.Fatalf("failed refs %v", wf.FailedReferenceTaskNames)
	}
	e.must(http.StatusNoContent, "POST", "/api/workflow/"+id+"/retry", nil)
	wf = e.waitStatus(id, conductor.WorkflowCompleted)
	if len(wf.Tasks) != 3 || wf.Tasks[2].RetryCount != 1 || wf.LastRetriedTime == 0 || !wf.Tasks[1].Retried {
		t.Fatalf("after retry: %d tasks, %+v", len(wf.Tasks), wf.Tasks[len(wf.Tasks)-1])
	}

	// restart: same id, all tasks replaced, completes again.
	e.must(http.StatusNoContent, "POST", "/api/workflow/"+id+"/restart", nil)
	wf = e.waitStatus(id, conductor.WorkflowCompleted)
	if len(wf.Tasks) != 2 {
		t.Fatalf("after restart: %d tasks, want 2", len(wf.Tasks))
	}

	// rerun from a task, with new input for it.
	second := taskByRef(wf, "second")
	out := e.must(http.StatusOK, "POST", "/api/workflow/"+id+"/rerun", conductor.RerunWorkflowRequest{ReRunFromTaskID: second.TaskID, TaskInput: map[string]any{"again": true}})
	if out != id {
		t.Fatalf("rerun answered %q", out)
	}
	wf = e.waitStatus(id, conductor.WorkflowCompleted)
	if rerun := taskByRef(wf, "second"); rerun.TaskID == second.TaskID || rerun.InputData["again"] != true || len(wf.Tasks) != 2 {
		t.Fatalf("after rerun: %+v", rerun)
	}

	// terminate: a running workflow (a WAIT keeps it running) ends TERMINATED.
	e.register(`{"name":"waits","tasks":[{"name":"hold","taskReferenceName":"hold","type":"WAIT"}]}`)
	w2 := e.start("waits", nil)
	e.must(http.StatusNoContent, "PUT", "/api/workflow/"+w2+"/pause", nil)
	e.waitStatus(w2, conductor.WorkflowPaused)
	e.must(http.StatusNoContent, "PUT", "/api/workflow/"+w2+"/resume", nil)
	e.must(http.StatusConflict, "PUT", "/api/workflow/"+w2+"/resume", nil)
	e.must(http.StatusNoContent, "DELETE", "/api/workflow/"+w2+"?reason=enough", nil)
	wf = e.waitStatus(w2, conductor.WorkflowTerminated)
	if wf.ReasonForIncompletion != "enough" || wf.Tasks[0].Status != conductor.TaskCanceled {
		t.Fatalf("terminated: reason %q task %s", wf.ReasonForIncompletion, wf.Tasks[0].Status)
	}
	// Conductor's preconditions.
	e.must(http.StatusConflict, "PUT", "/api/workflow/"+w2+"/pause", nil)
	e.must(http.StatusConflict, "PUT", "/api/workflow/"+w2+"/resume", nil)
	// A canceled task is retryable: retry brings the WAIT back.
	e.must(http.StatusNoContent, "POST", "/api/workflow/"+w2+"/retry", nil)
	e.waitStatus(w2, conductor.WorkflowRunning)
}

// Read-your-writes: every write's answer is visible to the next read.
func TestReadYourWrites(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.register(`{"name":"hold","tasks":[{"name":"h","taskReferenceName":"h","type":"WAIT"}]}`)
	for i := 0; i < 20; i++ {
		id := e.start("hold", map[string]any{"i": int64(i)})
		if wf := e.workflow(id); wf.Status != conductor.WorkflowRunning || wf.Input["i"] != float64(i) {
			t.Fatalf("read after start: %s %v", wf.Status, wf.Input)
		}
		e.must(http.StatusNoContent, "DELETE", "/api/workflow/"+id, nil)
		if wf := e.workflow(id); wf.Status != conductor.WorkflowTerminated {
			t.Fatalf("read after terminate: %s", wf.Status)
		}
	}
}

// Bad input gets a clear error and stops nothing else.
func TestBadInput(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.register(`{"name":"ok","version":1,"tasks":[{"name":"h","taskReferenceName":"h","type":"WAIT"}]}`,
		`{"name":"bad_wait","tasks":[{"name":"x","taskReferenceName":"x","type":"WAIT","inputParameters":{"duration":"${workflow.input.d}"}}]}`)
	tests := []struct {
		name, method, path string
		body               any
		status             int
		message            string
	}{
		{"malformed JSON", "POST", "/api/workflow", `{"name":`, 400, "malformed JSON"},
		{"wrong type", "POST", "/api/workflow", `{"name":"ok","input":[1,2]}`, 400, `"path":"input","message":"must be an object, not a JSON array"`},
		{"no name", "POST", "/api/workflow", `{"input":{}}`, 400, "name is required"},
		{"unknown workflow", "POST", "/api/workflow", `{"name":"nope"}`, 404, "nope"},
		{"unknown version", "POST", "/api/workflow", `{"name":"ok","version":7}`, 404, "ok"},
		{"by name: bad version", "POST", "/api/workflow/ok?version=x", `{}`, 400, "version"},
		{"by name: input not an object", "POST", "/api/workflow/ok", `"text"`, 400, "body: must be an object, not a JSON string"},
		{"unknown workflow id", "GET", "/api/workflow/does-not-exist", nil, 404, "does-not-exist"},
		{"bad includeTasks", "GET", "/api/workflow/x?includeTasks=maybe", nil, 400, "includeTasks"},
		{"pause unknown", "PUT", "/api/workflow/does-not-exist/pause", nil, 404, "not found"},
		{"unparsable expression in a definition", "POST", "/api/metadata/workflow", `{"name":"bad","tasks":[{"name":"x","taskReferenceName":"x","inputParameters":{"v":"${workflow.input.a"}}]}`, 400, "tasks[0].inputParameters.v"},
		{"inline definition that does not validate", "POST", "/api/workflow", `{"name":"inline","workflowDef":{"name":"inline","tasks":[{"name":"f","taskReferenceName":"f","type":"FORK_JOIN","forkTasks":[[{"name":"a","taskReferenceName":"a"}]]}]}}`, 400, "JOIN"},
		// An inline definition is checked as registration checks one.
		{"inline definition without tasks", "POST", "/api/workflow", `{"workflowDef":{"name":"inline","tasks":[]}}`, 400, `"path":"tasks","message":"must not be empty"`},
		{"inline definition: bad timeoutPolicy", "POST", "/api/workflow", `{"workflowDef":{"name":"inline","timeoutPolicy":"SOMETIMES","tasks":[{"name":"h","taskReferenceName":"h","type":"WAIT"}]}}`, 400, "timeoutPolicy"},
		{"inline definition: bad task retryLogic", "POST", "/api/workflow", `{"workflowDef":{"name":"inline","tasks":[{"name":"h","taskReferenceName":"h","taskDefinition":{"name":"h","retryLogic":"SOMETIMES"}}]}}`, 400, "tasks[0].taskDefinition.retryLogic"},
		{"inline definition: name too long", "POST", "/api/workflow", `{"workflowDef":{"name":"` + strings.Repeat("n", 1000) + `","tasks":[{"name":"h","taskReferenceName":"h","type":"WAIT"}]}}`, 400, `"path":"name"`},
		{"oversized body", "POST", "/api/workflow", `{"name":"ok","input":{"x":"` + strings.Repeat("a", 9<<20) + `"}}`, 413, "bytes"},
		// JSON may nest 10,000 deep; the log's readers read 256.
		{"input nested deeper than the log reads", "POST", "/api/workflow", `{"name":"ok","input":` + deep(300) + `}`, 400, "nested too deep"},
	}
	for _, tt := range tests {
		status, body := e.do(tt.method, tt.path, tt.body)
		if status != tt.status || !strings.Contains(body, tt.message) || !strings.Contains(body, `"status":`) {
			t.Errorf("%s: %d %s; want %d mentioning %q", tt.name, status, body, tt.status, tt.message)
		}
	}
	// An expression whose value is unusable at run time fails its task with
	// a reason.
	id := e.start("bad_wait", map[string]any{"d": "whenever"})
	wf := e.waitStatus(id, conductor.WorkflowFailed)
	if wf.Tasks[0].Status != conductor.TaskFailedWithTerminalError || !strings.Contains(wf.Tasks[0].ReasonForIncompletion, "whenever") {
		t.Fatalf("task = %+v", wf.Tasks[0])
	}
	// A result nested too deep is refused, and the workflow it was for
	// reads and goes on as before.
	held := e.start("ok", nil)
	e.waitStatus(held, conductor.WorkflowRunning)
	if status, body := e.do("POST", "/api/tasks/"+held+"/h/COMPLETED", deep(300)); status != http.StatusBadRequest || !strings.Contains(body, "nested too deep") {
		t.Fatalf("a result nested too deep: %d %s", status, body)
	}
	e.must(http.StatusOK, "POST", "/api/tasks/"+held+"/h/COMPLETED", deep(200))
	e.waitStatus(held, conductor.WorkflowCompleted)
	// A task no worker could take (its name, or with its domain, too long
	// for a queue) fails for good, saying why, rather than wait for ever.
	long := strings.Repeat("m", 254)
	e.register(`{"name":"long_task","version":1,"tasks":[{"name":"`+long+`","taskReferenceName":"r"}]}`,
		`{"name":"short_task","version":1,"tasks":[{"name":"short","taskReferenceName":"r"}]}`)
	for _, req := range []conductor.StartWorkflowRequest{{Name: "long_task"},
		{Name: "short_task", TaskToDomain: map[string]string{"*": strings.Repeat("d", 300)}}} {
		id := e.must(http.StatusOK, "POST", "/api/workflow", req)
		wf := e.waitStatus(id, conductor.WorkflowFailed)
		if r := wf.Tasks[0]; r.Status != conductor.TaskFailedWithTerminalError || !strings.Contains(r.ReasonForIncompletion, "no worker can take it") {
			t.Fatalf("%s: task %s %q", req.Name, r.Status, r.ReasonForIncompletion)
		}
	}
	// The node still works.
	e.waitStatus(e.start("ok", nil), conductor.WorkflowRunning)
}

// deep is a JSON object nested n objects deep.
func deep(n int) string {
	return strings.Repeat(`{"a":`, n) + "1" + strings.Repeat("}", n)
}

// Retrying a failed child resumes its failed parents, which complete when
// the child does (Conductor's retry of a sub-workflow); so does a retry of
// the top workflow with resumeSubworkflowTasks, which finds the failed
// child. A plain retry of the top workflow starts a new child.
func TestRetryOfChildResumesParent(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.must(http.StatusNoContent, "POST", "/api/metadata/taskdefs", `[{"name":"kid_work","retryCount":0}]`)
	e.register(`{"name":"kid","tasks":[{"name":"kid_work","taskReferenceName":"kw","inputParameters":{"fail":"${workflow.input.fail}"}}],
		  "outputParameters":{"v":"${kw.output.v}"}}`,
		`{"name":"mother","tasks":[{"name":"sub","taskReferenceName":"sub","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"kid"},
		  "inputParameters":{"fail":"${workflow.input.fail}"}}],"outputParameters":{"v":"${sub.output.v}"}}`,
		`{"name":"grandmother","tasks":[{"name":"sub","taskReferenceName":"sub","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"mother"},
		  "inputParameters":{"fail":"${workflow.input.fail}"}}],"outputParameters":{"v":"${sub.output.v}"}}`)
	var mu sync.Mutex
	failed := map[string]bool{} // runs (by their input's fail key) that failed once
	e.work("kid_work", 2, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		mu.Lock()
		defer mu.Unlock()
		key, _ := task.InputData["fail"].(string)
		if !failed[key] {
			failed[key] = true
			return workers.Output{}, errors.New("first try breaks")
		}
		return workers.Output{Data: map[string]any{"v": "fixed"}}, nil
	})
	for _, tc := range []struct {
		name, retry string // retry is "child", "mother" or "top", with its query
		query       string
		// Whether the top workflow waits for the same mother, and the
		// mother for the same child: a plain retry starts a new one.
		sameMother, sameChild bool
	}{
		{name: "retry of the child", retry: "child", sameMother: true, sameChild: true},
		{name: "retry of the middle", retry: "mother", sameMother: true},
		{name: "resumeSubworkflowTasks", retry: "top", query: "?resumeSubworkflowTasks=true", sameMother: true, sameChild: true},
		{name: "plain retry", retry: "top"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := e.start("grandmother", map[string]any{"fail": tc.name})
			wf := e.waitStatus(id, conductor.WorkflowFailed)
			mother := taskByRef(wf, "sub").SubWorkflowID
			child := taskByRef(e.waitStatus(mother, conductor.WorkflowFailed), "sub").SubWorkflowID
			e.waitStatus(child, conductor.WorkflowFailed)
			target := map[string]string{"child": child, "mother": mother, "top": id}[tc.retry]
			e.must(http.StatusNoContent, "POST", "/api/workflow/"+target+"/retry"+tc.query, nil)
			wf = e.waitStatus(id, conductor.WorkflowCompleted)
			if wf.Output["v"] != "fixed" || wf.LastRetriedTime == 0 {
				t.Fatalf("top workflow after the retry: output %v, lastRetriedTime %d", wf.Output, wf.LastRetriedTime)
			}
			if got := taskByRef(wf, "sub").SubWorkflowID; (got == mother) != tc.sameMother {
				t.Fatalf("the top workflow waited for %s; the first mother was %s", got, mother)
			}
			if !tc.sameMother {
				return
			}
			if got := taskByRef(e.waitStatus(mother, conductor.WorkflowCompleted), "sub").SubWorkflowID; (got == child) != tc.sameChild {
				t.Fatalf("the mother waited for %s; the first child was %s", got, child)
			}
		})
	}
}

// Terminating a parent terminates its child; an operator's restart of
// that child afterwards reopens the parent, which completes with the
// child, as Conductor's updateAndPushParents does.
func TestRestartedChildReopensTerminatedParent(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.register(`{"name":"rc_kid","tasks":[{"name":"rc_hold","taskReferenceName":"hold","type":"WAIT"}],"outputParameters":{"v":"${hold.output.v}"}}`,
		`{"name":"rc_parent","tasks":[{"name":"sub","taskReferenceName":"sub","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"rc_kid"}}],
		  "outputParameters":{"v":"${sub.output.v}"}}`)
	id := e.start("rc_parent", nil)
	var child string
	testutil.Eventually(t, 30*time.Second, 20*time.Millisecond, func() error {
		if child = taskByRef(e.workflow(id), "sub").SubWorkflowID; child == "" {
			return errors.New("no child yet")
		}
		return nil
	})
	e.waitStatus(child, conductor.WorkflowRunning)
	e.must(http.StatusNoContent, "DELETE", "/api/workflow/"+id+"?reason=operator", nil)
	e.waitStatus(child, conductor.WorkflowTerminated)
	e.must(http.StatusNoContent, "POST", "/api/workflow/"+child+"/restart", nil)
	e.waitStatus(id, conductor.WorkflowRunning)
	e.waitStatus(child, conductor.WorkflowRunning)
	testutil.Eventually(t, 30*time.Second, 20*time.Millisecond, func() error {
		if taskByRef(e.workflow(child), "hold") == nil {
			return errors.New("the restarted child has not scheduled its task yet")
		}
		return nil
	})
	e.must(http.StatusOK, "POST", "/api/tasks/"+child+"/hold/COMPLETED", map[string]any{"v": "after restart"})
	if wf := e.waitStatus(id, conductor.WorkflowCompleted); wf.Output["v"] != "after restart" || taskByRef(wf, "sub").SubWorkflowID != child {
		t.Fatalf("parent output %v, waiting for %s", wf.Output, taskByRef(wf, "sub").SubWorkflowID)
	}
}

// A rerun of a parent from a task of its child (Conductor searches
// sub-workflows): the child reruns from that task, the parent from its
// SUB_WORKFLOW task, which waits for the same child, and both complete.
func TestRerunFromChildTask(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.register(`{"name":"rr_kid","tasks":[{"name":"rr_one","taskReferenceName":"one"},{"name":"rr_two","taskReferenceName":"two"}]}`,
		`{"name":"rr_parent","tasks":[{"name":"sub","taskReferenceName":"sub","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"rr_kid"}},
		  {"name":"rr_after","taskReferenceName":"after"}]}`)
	var ones, twos, afters atomic.Int64
	for name, n := range map[string]*atomic.Int64{"rr_one": &ones, "rr_two": &twos, "rr_after": &afters} {
		e.work(name, 1, func(context.Context, *conductor.Task) (workers.Output, error) {
			return workers.Output{Data: map[string]any{"run": n.Add(1)}}, nil
		})
	}
	id := e.start("rr_parent", nil)
	wf := e.waitStatus(id, conductor.WorkflowCompleted)
	child := taskByRef(wf, "sub").SubWorkflowID
	two := taskByRef(e.workflow(child), "two").TaskID
	// The workflowInput and correlationId of such a rerun are the parent's
	// in Conductor: the child does not take them as its own, it refuses
	// them, and nothing reruns.
	for _, extra := range []map[string]any{{"workflowInput": map[string]any{"v": "parent's"}}, {"correlationId": "parent's"}} {
		extra["reRunFromTaskId"] = two
		e.fails(http.StatusBadRequest, "POST", "/api/workflow/"+id+"/rerun", extra)
	}
	if kid := e.workflow(child); kid.Status != conductor.WorkflowCompleted || len(kid.Input) != 0 || kid.CorrelationID != "" {
		t.Fatalf("a refused rerun left the child %s, input %v, correlation id %q", kid.Status, kid.Input, kid.CorrelationID)
	}
	e.must(http.StatusOK, "POST", "/api/workflow/"+id+"/rerun", map[string]any{"reRunFromTaskId": two})
	e.waitStatus(child, conductor.WorkflowCompleted)
	testutil.Eventually(t, 30*time.Second, 20*time.Millisecond, func() error {
		if n := afters.Load(); n != 2 {
			return fmt.Errorf("the parent's task after the sub-workflow ran %d times, want 2", n)
		}
		return nil
	})
	wf = e.waitStatus(id, conductor.WorkflowCompleted)
	if ones.Load() != 1 || twos.Load() != 2 || taskByRef(wf, "sub").SubWorkflowID != child {
		t.Fatalf("runs: one %d, two %d, after %d; the parent waits for %s", ones.Load(), twos.Load(), afters.Load(), taskByRef(wf, "sub").SubWorkflowID)
	}
	// A task id found nowhere is still 404.
	e.fails(http.StatusNotFound, "POST", "/api/workflow/"+id+"/rerun", map[string]any{"reRunFromTaskId": "no-such-task"})
}

// A SUB_WORKFLOW whose definition is an expression runs the definition the
// workflow's data holds, an inline one and an object alike.
func TestSubWorkflowInlineDefinitions(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	child := `{"name":"kid","outputParameters":{"got":"${workflow.input.v}"},
	  "tasks":[{"name":"note","taskReferenceName":"note","type":"SET_VARIABLE","inputParameters":{"v":"${workflow.input.v}"}}]}`
	e.register(fmt.Sprintf(`{"name":"parent_inline","tasks":[
	  {"name":"fixed","taskReferenceName":"fixed","type":"SUB_WORKFLOW","inputParameters":{"v":"one"},
	   "subWorkflowParam":{"name":"kid","workflowDefinition":%s}},
	  {"name":"given","taskReferenceName":"given","type":"SUB_WORKFLOW","inputParameters":{"v":"two"},
	   "subWorkflowParam":{"name":"kid","workflowDefinition":"${workflow.input.def}"}}],
	 "outputParameters":{"a":"${fixed.output.got}","b":"${given.output.got}"}}`, child))
	var def map[string]any
	if err := json.Unmarshal([]byte(child), &def); err != nil {
		t.Fatal(err)
	}
	wf := e.waitStatus(e.start("parent_inline", map[string]any{"def": def}), conductor.WorkflowCompleted)
	if wf.Output["a"] != "one" || wf.Output["b"] != "two" {
		t.Fatalf("output %v, want each child's input back", wf.Output)
	}
	// A workflow whose data holds no definition fails its task, naming it.
	wf = e.waitStatus(e.start("parent_inline", map[string]any{"def": "kid"}), conductor.WorkflowFailed)
	if !strings.Contains(wf.ReasonForIncompletion, "kid") {
		t.Fatalf("reason %q does not name the workflow", wf.ReasonForIncompletion)
	}
}

// An operator's terminate starts the failure workflow only when asked
// (triggerFailureWorkflow=true), as in Conductor and Orkes; bulk terminate
// takes the same parameter.
func TestTerminateTriggersFailureWorkflowOnlyWhenAsked(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.register(`{"name":"tf_cleanup","tasks":[{"name":"n","taskReferenceName":"n","type":"SET_VARIABLE","inputParameters":{"a":1}}]}`,
		`{"name":"tf_fragile","failureWorkflow":"tf_cleanup","tasks":[{"name":"g","taskReferenceName":"g","type":"WAIT"}]}`)
	// The failure workflows of a run, found by its id in their input.
	cleanupsOf := func(id string) int {
		var res struct{ TotalHits int }
		q := "/api/workflow/search?query=" + url.QueryEscape("workflowType = tf_cleanup") + "&freeText=" + id
		if err := json.Unmarshal([]byte(e.must(http.StatusOK, "GET", q, nil)), &res); err != nil {
			t.Fatal(err)
		}
		return res.TotalHits
	}
	quiet := e.start("tf_fragile", nil)
	e.must(http.StatusNoContent, "DELETE", "/api/workflow/"+quiet+"?reason=op", nil)
	e.waitStatus(quiet, conductor.WorkflowTerminated)
	asked := e.start("tf_fragile", nil)
	e.must(http.StatusNoContent, "DELETE", "/api/workflow/"+asked+"?reason=op&triggerFailureWorkflow=true", nil)
	testutil.Eventually(t, 30*time.Second, 20*time.Millisecond, func() error {
		if n := cleanupsOf(asked); n != 1 {
			return fmt.Errorf("%d failure workflows for the run terminated with triggerFailureWorkflow, want 1", n)
		}
		return nil
	})
	if n := cleanupsOf(quiet); n != 0 {
		t.Fatalf("a plain terminate started %d failure workflows", n)
	}
	e.fails(http.StatusBadRequest, "DELETE", "/api/workflow/"+e.start("tf_fragile", nil)+"?triggerFailureWorkflow=maybe", nil)
}

// A definition whose sub-workflow is itself starts a chain of workflows
// that ends at engine.MaxDepth: the last start is refused, saying why, and
// the failure travels up to the first. Without the bound it would start
// workflows until the log filled.
func TestSelfStartingDefinitionStopsAtMaxDepth(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.register(`{"name":"recurse","tasks":[{"name":"again","taskReferenceName":"again","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"recurse"}}]}`)
	id := e.start("recurse", nil)
	deepest := id
	for depth := 1; depth <= engine.MaxDepth; depth++ {
		testutil.Eventually(t, 30*time.Second, 10*time.Millisecond, func() error {
			if status, _ := e.do("GET", "/api/workflow/"+deepest, nil); status != http.StatusOK {
				return fmt.Errorf("workflow %s at depth %d: %d", deepest, depth-1, status)
			}
			if task := taskByRef(e.workflow(deepest), "again"); task != nil && task.SubWorkflowID != "" {
				deepest = task.SubWorkflowID
				return nil
			}
			return fmt.Errorf("workflow %s at depth %d has no child yet", deepest, depth-1)
		})
	}
	wf := e.waitStatus(deepest, conductor.WorkflowFailed)
	if task := taskByRef(wf, "again"); task.SubWorkflowID != "" {
		if status, _ := e.do("GET", "/api/workflow/"+task.SubWorkflowID, nil); status != http.StatusNotFound {
			t.Fatalf("the workflow %d deep started a child (%d)", engine.MaxDepth, status)
		}
	}
	if !strings.Contains(wf.ReasonForIncompletion, fmt.Sprintf("the limit is %d", engine.MaxDepth)) {
		t.Fatalf("the deepest workflow failed with reason %q, want the limit named", wf.ReasonForIncompletion)
	}
	e.waitStatus(id, conductor.WorkflowFailed)
}

// A SUB_WORKFLOW whose subWorkflowParam.version is 0 runs the child's
// latest version, as one without a version does (Orkes's reading of 0).
func TestSubWorkflowVersionZeroRunsTheLatest(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	kid := `{"name":"kid_v","version":%d,"outputParameters":{"v":%d},
	  "tasks":[{"name":"n","taskReferenceName":"n","type":"SET_VARIABLE","inputParameters":{"a":1}}]}`
	e.register(fmt.Sprintf(kid, 1, 1), fmt.Sprintf(kid, 2, 2),
		`{"name":"parent_v","tasks":[
	  {"name":"zero","taskReferenceName":"zero","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"kid_v","version":0}},
	  {"name":"none","taskReferenceName":"none","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"kid_v"}},
	  {"name":"one","taskReferenceName":"one","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"kid_v","version":1}}],
	 "outputParameters":{"zero":"${zero.output.v}","none":"${none.output.v}","one":"${one.output.v}"}}`)
	wf := e.waitStatus(e.start("parent_v", nil), conductor.WorkflowCompleted)
	want := map[string]any{"zero": float64(2), "none": float64(2), "one": float64(1)}
	if !reflect.DeepEqual(wf.Output, want) {
		t.Fatalf("output %v, want %v", wf.Output, want)
	}
}
