package e2e_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/workers"
)

// A parent that finds a value to be secret after its SUB_WORKFLOW handed
// it to a child as plain data (a later task outputs it under _secrets or
// _masked, or reads the earlier task's output into a _secrets block) masks
// it in the child and the child's own child too, running or ended: the
// child's input, its tasks' inputs and outputs, its output, in the
// execution, its status, the searches. They showed it in plain text while
// the parent's read "***", and after compaction the read models kept it
// (a _secrets one is replaced there, in the children as in the parent).
func TestLateSecretReachesTheChildren(t *testing.T) {
	t.Parallel()
	e, cfg := compactingNode(t, 3*time.Second)
	n := e.node
	e.work("lc_echo", 4, echoV)
	const (
		echo  = `{"name":"lc_echo","taskReferenceName":"echo","inputParameters":{"v":"${workflow.input.v}"}}`
		grand = `{"name":"grand","taskReferenceName":"grand","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"lc_grand"},"inputParameters":{"v":"${workflow.input.v}"}}`
		wait  = `{"name":"hold","taskReferenceName":"hold","type":"WAIT"}`
		out   = `"outputParameters":{"v":"${echo.output.v}"}`
	)
	e.register(`{"name":"lc_grand","tasks":[`+echo+`],`+out+`}`,
		`{"name":"lc_child_running","tasks":[`+echo+`,`+grand+`,`+wait+`],`+out+`}`,
		`{"name":"lc_child_ended","tasks":[`+echo+`,`+grand+`],`+out+`}`)
	type row struct {
		name    string
		running bool   // the child still runs when the parent finds the value
		seal    string // b's inputParameters
		output  func(v string) map[string]any
		shred   bool // it went into _secrets: compaction replaces it
	}
	secretsOut := func(v string) map[string]any { return map[string]any{"_secrets": map[string]any{"t": v}} }
	maskedOut := func(v string) map[string]any { return map[string]any{"_masked": map[string]any{"t": v}} }
	none := func(string) map[string]any { return map[string]any{} }
	const readIn = `{"_secrets":{"t":"${a.output.tok}"}}`
	rows := []row{
		{name: "running_output", running: true, seal: `{}`, output: secretsOut, shred: true},
		{name: "running_input", running: true, seal: readIn, output: none, shred: true},
		{name: "ended_output", seal: `{}`, output: secretsOut, shred: true},
		{name: "ended_input", seal: readIn, output: none, shred: true},
		{name: "ended_masked", seal: `{}`, output: maskedOut},
	}
	values := map[string]string{}
	for _, r := range rows {
		values[r.name] = "late-child-" + alnum(16)
		src := `{"name":"lc_src_` + r.name + `","taskReferenceName":"a"}`
		gate := `{"name":"gate","taskReferenceName":"gate","type":"WAIT"}`
		b := `{"name":"lc_seal_` + r.name + `","taskReferenceName":"b","inputParameters":` + r.seal + `}`
		child := `"lc_child_ended"`
		if r.running {
			child = `"lc_child_running"`
		}
		c := `{"name":"c","taskReferenceName":"c","type":"SUB_WORKFLOW","subWorkflowParam":{"name":` + child + `},"inputParameters":{"v":"${a.output.tok}"}}`
		tasks := src + `,` + c + `,` + gate + `,` + b
		if r.running {
			tasks = src + `,{"name":"fork","taskReferenceName":"fork","type":"FORK_JOIN","forkTasks":[[` + c + `],[` + gate + `,` + b + `]]},
			  {"name":"join","taskReferenceName":"join","type":"JOIN","joinOn":["c","b"]}`
		}
		e.register(`{"name":"lc_` + r.name + `","tasks":[` + tasks + `]}`)
	}
	shows := func(e *env, v string, ids ...string) []string { return showing(e, []string{v}, ids) }
	t.Run("rows", func(t *testing.T) {
		for _, r := range rows {
			t.Run(r.name, func(t *testing.T) {
				t.Parallel()
				e := &env{t: t, node: n, base: e.base}
				v := values[r.name]
				id := e.start("lc_"+r.name, nil)
				e.completeTask(e.takeOne("lc_src_"+r.name), map[string]any{"tok": v})
				// get reads a workflow that an effect may not have started yet.
				get := func(id string) (*conductor.Workflow, error) {
					code, body := e.do("GET", "/api/workflow/"+id+"?includeTasks=true", nil)
					if code != http.StatusOK {
						return nil, fmt.Errorf("GET workflow %s: %d", id, code)
					}
					var wf conductor.Workflow
					return &wf, json.Unmarshal([]byte(body), &wf)
				}
				var child, grandchild string
				testutil.Eventually(t, 30*time.Second, 20*time.Millisecond, func() error {
					c := taskByRef(e.workflow(id), "c")
					if c == nil || c.SubWorkflowID == "" {
						return fmt.Errorf("no child yet")
					}
					child = c.SubWorkflowID
					cw, err := get(child)
					if err != nil {
						return err
					}
					g := taskByRef(cw, "grand")
					if g == nil || g.SubWorkflowID == "" {
						return fmt.Errorf("no grandchild yet")
					}
					grandchild = g.SubWorkflowID
					if gw, err := get(grandchild); err != nil || gw.Status != conductor.WorkflowCompleted {
						return fmt.Errorf("the grandchild has not ended (%v)", err)
					}
					if h := taskByRef(cw, "hold"); r.running && (h == nil || h.Status != conductor.TaskInProgress) {
						return fmt.Errorf("the child does not wait yet")
					}
					if !r.running && cw.Status != conductor.WorkflowCompleted {
						return fmt.Errorf("the child is %s", cw.Status)
					}
					return nil
				})
				if got := shows(e, v, child, grandchild); len(got) == 0 {
					t.Fatal("the child shows no value before the parent finds it secret: the test tests nothing")
				}
				e.must(http.StatusOK, "POST", "/api/tasks/"+id+"/gate/COMPLETED", nil)
				e.completeTask(e.takeOne("lc_seal_"+r.name), r.output(v))
				waitUnshown(t, func() []string { return shows(e, v, id, child, grandchild) })
				if r.running {
					// What the child writes after it knows the value is
					// redacted, as the parent's writes are.
					e.must(http.StatusOK, "POST", "/api/tasks/"+child+"/hold/COMPLETED", map[string]any{"echo": v})
				}
				e.waitStatus(child, conductor.WorkflowCompleted)
				e.waitStatus(id, conductor.WorkflowCompleted)
				if !r.shred {
					return // nothing to compact: _masked data stays
				}
				for _, wf := range []string{id, child, grandchild} {
					e.waitCompacted(wf)
				}
				for _, got := range shows(e, v, id, child, grandchild) {
					t.Errorf("after compaction %s", got)
				}
			})
		}
	})
	dump := stopForDump(t, n, cfg)
	for _, r := range rows {
		if !r.shred {
			continue
		}
		for _, l := range dump {
			if strings.Contains(l, values[r.name]) {
				t.Errorf("%s: the read models keep the value after compaction: %.300q", r.name, l)
			}
		}
	}
}

// showing lists the read paths of workflows ids (the execution with its
// tasks, its status, both searches), the task search and extra that show
// one of needles.
func showing(e *env, needles, ids []string, extra ...string) []string {
	var out []string
	look := func(path string) {
		body := e.must(http.StatusOK, "GET", path, nil)
		for _, s := range needles {
			if i := strings.Index(body, s); i >= 0 {
				out = append(out, fmt.Sprintf("GET %s: %.300s", path, body[i-min(200, i):]))
			}
		}
	}
	for _, id := range ids {
		for _, path := range []string{"/api/workflow/" + id + "?includeTasks=true",
			"/api/workflow/" + id + "/status?includeOutput=true&includeVariables=true",
			"/api/workflow/search?freeText=" + id + "&size=10", "/api/workflow/search-v2?freeText=" + id + "&size=10"} {
			look(path)
		}
	}
	for _, path := range append([]string{"/api/tasks/search?freeText=*&size=200"}, extra...) {
		look(path)
	}
	return out
}

// startSealing registers and starts <prefix>_parent, whose task
// <prefix>_src (the test's to take) outputs v, which a START_WORKFLOW
// hands to a workflow named child; the parent then waits at its WAIT
// task gate, and its task <prefix>_seal seals v in its _secrets. It
// returns the parent's id once child started, and the child's.
func startSealing(e *env, prefix, child, v string) (id, started string) {
	e.t.Helper()
	e.register(`{"name":"` + prefix + `_parent","tasks":[
	  {"name":"` + prefix + `_src","taskReferenceName":"a"},
	  {"name":"sw","taskReferenceName":"sw","type":"START_WORKFLOW","inputParameters":{"startWorkflow":{"name":"` + child + `","input":{"v":"${a.output.tok}"}}}},
	  {"name":"gate","taskReferenceName":"gate","type":"WAIT"},
	  {"name":"` + prefix + `_seal","taskReferenceName":"b","inputParameters":{"_secrets":{"t":"${a.output.tok}"}}}]}`)
	id = e.start(prefix+"_parent", nil)
	e.completeTask(e.takeOne(prefix+"_src"), map[string]any{"tok": v})
	testutil.Eventually(e.t, 30*time.Second, 20*time.Millisecond, func() error {
		sw := taskByRef(e.workflow(id), "sw")
		if sw == nil || sw.Status != conductor.TaskCompleted {
			return fmt.Errorf("the workflow has not been started yet")
		}
		started, _ = sw.OutputData["workflowId"].(string)
		return nil
	})
	return id, started
}

// waitUnshown waits until shows lists no read path showing the value.
func waitUnshown(t *testing.T, shows func() []string) {
	t.Helper()
	testutil.Eventually(t, 30*time.Second, 50*time.Millisecond, func() error {
		if got := shows(); len(got) > 0 {
			return fmt.Errorf("%d read paths show the value: %s", len(got), strings.Join(got, "\n"))
		}
		return nil
	})
}

// echoV is a worker that outputs the v it is given.
func echoV(_ context.Context, task *conductor.Task) (workers.Output, error) {
	return workers.Output{Data: map[string]any{"v": task.InputData["v"]}}, nil
}

// A value found to be secret later (a task reads an earlier task's output
// into a _secrets block) is masked where the workflow wrote it inside
// longer text before anyone knew, as redaction masks it in what is
// written after: the workflow's input ("the token will be V"), the
// earlier task's output ("got V", and "Basic <base64 of svc:V>", a form
// redaction looks for), a variable ("Bearer V"), a SUB_WORKFLOW's input
// built as text, the child's input, its task's input and output and its
// output, and the parent's copy of that output, in every view and after
// compaction in the read models. Only strings equal to the value were
// masked: text holding it stayed in plain text everywhere, in the parent
// and the child. The log line posted before is masked too.
func TestLateSecretInText(t *testing.T) {
	t.Parallel()
	e, cfg := compactingNode(t, 3*time.Second)
	n := e.node
	e.work("lt_echo", 2, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		return workers.Output{Data: map[string]any{"v": "echo: " + fmt.Sprint(task.InputData["v"])}}, nil
	})
	e.work("lt_seal", 2, succeed)
	e.register(`{"name":"lt_child","tasks":[{"name":"lt_echo","taskReferenceName":"echo","inputParameters":{"v":"${workflow.input.h}"}}],
	  "outputParameters":{"v":"${echo.output.v}"}}`,
		`{"name":"lt_parent","tasks":[
	  {"name":"lt_src","taskReferenceName":"a"},
	  {"name":"sv","taskReferenceName":"sv","type":"SET_VARIABLE","inputParameters":{"bearer":"Bearer ${a.output.tok}"}},
	  {"name":"c","taskReferenceName":"c","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"lt_child"},
	   "inputParameters":{"h":"Bearer ${a.output.tok}","url":"https://example.com/cb?k=${a.output.tok}"}},
	  {"name":"gate","taskReferenceName":"gate","type":"WAIT"},
	  {"name":"lt_seal","taskReferenceName":"b","inputParameters":{"_secrets":{"t":"${a.output.tok}"}}}],
	  "outputParameters":{"msg":"${a.output.msg}"}}`)
	v := "late-text-" + alnum(16)
	basic := base64.StdEncoding.EncodeToString([]byte("svc:" + v))
	id := e.start("lt_parent", map[string]any{"note": "the token will be " + v})
	a := e.takeOne("lt_src")
	e.must(http.StatusNoContent, "POST", "/api/tasks/"+a.TaskID+"/log", "logged "+v)
	e.completeTask(a, map[string]any{"tok": v, "msg": "got " + v, "auth": "Basic " + basic})
	var child string
	testutil.Eventually(t, 30*time.Second, 20*time.Millisecond, func() error {
		wf := e.workflow(id)
		c, g := taskByRef(wf, "c"), taskByRef(wf, "gate")
		if c == nil || c.Status != conductor.TaskCompleted || g == nil || g.Status != conductor.TaskInProgress {
			return fmt.Errorf("the child has not ended yet")
		}
		child = c.SubWorkflowID
		return nil
	})
	// shows lists the read paths that show the value, plain or in its
	// base64 form.
	shows := func(ids ...string) []string {
		return showing(e, []string{v, basic}, ids, "/api/tasks/"+a.TaskID+"/log")
	}
	if got := shows(id, child); len(got) == 0 {
		t.Fatal("nothing shows the value before it is found secret: the test tests nothing")
	}
	e.must(http.StatusOK, "POST", "/api/tasks/"+id+"/gate/COMPLETED", nil)
	e.waitStatus(id, conductor.WorkflowCompleted)
	waitUnshown(t, func() []string { return shows(id, child) })
	e.waitCompacted(id)
	e.waitCompacted(child)
	for _, got := range shows(id, child) {
		t.Errorf("after compaction %s", got)
	}
	for _, l := range stopForDump(t, n, cfg) {
		if strings.Contains(l, v) || strings.Contains(l, basic) {
			t.Errorf("the read models keep the value after compaction: %.300q", l)
		}
	}
}

// A workflow a START_WORKFLOW task started is told of a value its starter
// found to be secret after handing it over, as a SUB_WORKFLOW child is:
// its input and what its task echoed read "***" in every view. It was
// left showing the value: only SUB_WORKFLOW children were told.
func TestLateSecretReachesAStartedWorkflow(t *testing.T) {
	t.Parallel()
	e, _ := compactingNode(t, time.Hour)
	e.work("lsw_echo", 2, echoV)
	e.work("lsw_seal", 2, succeed)
	e.register(`{"name":"lsw_started","tasks":[{"name":"lsw_echo","taskReferenceName":"echo","inputParameters":{"v":"${workflow.input.v}"}}],
	  "outputParameters":{"v":"${echo.output.v}"}}`)
	v := "late-started-" + alnum(16)
	id, started := startSealing(e, "lsw", "lsw_started", v)
	e.waitStatus(started, conductor.WorkflowCompleted)
	if got := showing(e, []string{v}, []string{started}); len(got) == 0 {
		t.Fatal("the started workflow shows no value before it is found secret: the test tests nothing")
	}
	e.must(http.StatusOK, "POST", "/api/tasks/"+id+"/gate/COMPLETED", nil)
	e.waitStatus(id, conductor.WorkflowCompleted)
	waitUnshown(t, func() []string { return showing(e, []string{v}, []string{id, started}) })
}

// A failure workflow gets the failed workflow's input, which may hold a
// value the failed workflow finds to be secret late. Found before the
// end, or by the decision that ends it, the failure workflow's input
// reads "***" there as it starts (its start is redacted as the failed
// workflow's writes are). Found after the end, the failure workflow
// already holds it as given: a workflow whose starter finds the value
// after it failed (its SUB_WORKFLOW parent, told as children are), or
// one that finds it itself once retried. The failure workflow is told as
// a child is: its input, its task's echo and its output read "***" in
// every view. They showed the value: failure workflows were not told.
// After compaction the read models hold it nowhere.
func TestLateSecretReachesAFailureWorkflow(t *testing.T) {
	t.Parallel()
	e, cfg := compactingNode(t, 2*time.Second)
	n := e.node
	e.work("lf_echo", 4, echoV)
	e.must(http.StatusNoContent, "POST", "/api/metadata/taskdefs",
		`[{"name":"lf_fail","retryCount":0},{"name":"lf_seal","retryCount":0},{"name":"lf_src","retryCount":0}]`)
	// The failure workflow holds on until the test lets it end, so that
	// it is not compacted (which destroys its secrets key) before it is
	// told.
	e.register(`{"name":"lf_failure","tasks":[
	  {"name":"lf_echo","taskReferenceName":"echo","inputParameters":{"v":"${workflow.input.v}"}},
	  {"name":"hold","taskReferenceName":"hold","type":"WAIT"}],
	  "outputParameters":{"v":"${echo.output.v}"}}`)
	const (
		fail     = `{"name":"lf_fail","taskReferenceName":"fail","inputParameters":{"v":"${workflow.input.v}"}}`
		sealIn   = `{"name":"lf_seal","taskReferenceName":"seal","inputParameters":{"_secrets":{"t":"${workflow.input.v}"}}}`
		failure  = `"failureWorkflow":"lf_failure",`
		outputIn = `"outputParameters":{"v":"${workflow.input.v}"}`
	)
	e.register(
		`{"name":"lf_before",`+failure+`"tasks":[`+sealIn+`,`+fail+`],`+outputIn+`}`,
		`{"name":"lf_ending",`+failure+`"tasks":[`+fail+`],`+outputIn+`}`,
		`{"name":"lf_child",`+failure+`"tasks":[`+fail+`],`+outputIn+`}`,
		`{"name":"lf_parent","tasks":[
		  {"name":"lf_src","taskReferenceName":"a"},
		  {"name":"c","taskReferenceName":"c","type":"SUB_WORKFLOW","optional":true,"subWorkflowParam":{"name":"lf_child"},
		   "inputParameters":{"v":"${a.output.tok}"}},
		  {"name":"gate","taskReferenceName":"gate","type":"WAIT"},
		  {"name":"lf_seal","taskReferenceName":"seal","inputParameters":{"_secrets":{"t":"${a.output.tok}"}}}]}`,
		`{"name":"lf_retried",`+failure+`"tasks":[`+fail+`,`+sealIn+`],`+outputIn+`}`,
	)
	// failTask fails the next lf_fail task, with output.
	failTask := func(e *env, output map[string]any) {
		task := e.takeOne("lf_fail")
		e.must(http.StatusOK, "POST", "/api/tasks", map[string]any{"taskId": task.TaskID, "workflowInstanceId": task.WorkflowInstanceID,
			"status": "FAILED", "reasonForIncompletion": "refused", "outputData": output})
	}
	// failureOf waits for the failure workflow of the failed workflow id
	// to echo its input and hold.
	failureOf := func(e *env, id string) string {
		wf := e.waitStatus(id, conductor.WorkflowFailed)
		fw, _ := wf.Output["conductor.failure_workflow"].(string)
		if fw == "" {
			t.Fatalf("%s started no failure workflow: output %v", id, wf.Output)
		}
		testutil.Eventually(t, 30*time.Second, 20*time.Millisecond, func() error {
			if code, body := e.do("GET", "/api/workflow/"+fw, nil); code != http.StatusOK {
				return fmt.Errorf("the failure workflow %s does not exist yet: %d %s", fw, code, body)
			}
			if h := taskByRef(e.workflow(fw), "hold"); h == nil || h.Status != conductor.TaskInProgress {
				return fmt.Errorf("the failure workflow %s does not hold yet", fw)
			}
			return nil
		})
		return fw
	}
	type row struct {
		name string
		// run fails a workflow holding v and finds v to be secret, before,
		// as or after it ends; it returns the workflows that held v, the
		// failure workflow first.
		run func(e *env, v string) []string
	}
	rows := []row{
		{"found before the end", func(e *env, v string) []string {
			id := e.start("lf_before", map[string]any{"v": v})
			e.completeTask(e.takeOne("lf_seal"), nil)
			failTask(e, nil)
			return []string{failureOf(e, id), id}
		}},
		{"found by the decision that ends it", func(e *env, v string) []string {
			id := e.start("lf_ending", map[string]any{"v": v})
			failTask(e, map[string]any{"_secrets": map[string]any{"t": v}})
			return []string{failureOf(e, id), id}
		}},
		{"found by its parent after its end", func(e *env, v string) []string {
			id := e.start("lf_parent", nil)
			e.completeTask(e.takeOne("lf_src"), map[string]any{"tok": v})
			failTask(e, nil)
			var child string
			testutil.Eventually(t, 30*time.Second, 20*time.Millisecond, func() error {
				wf := e.workflow(id)
				c, g := taskByRef(wf, "c"), taskByRef(wf, "gate")
				if c == nil || g == nil || g.Status != conductor.TaskInProgress {
					return fmt.Errorf("the parent does not wait yet")
				}
				child = c.SubWorkflowID
				return nil
			})
			fw := failureOf(e, child)
			if got := showing(e, []string{v}, []string{fw}); len(got) == 0 {
				t.Fatal("the failure workflow shows no value before it is found secret: the test tests nothing")
			}
			e.must(http.StatusOK, "POST", "/api/tasks/"+id+"/gate/COMPLETED", nil)
			e.completeTask(e.takeOne("lf_seal"), nil)
			e.waitStatus(id, conductor.WorkflowCompleted)
			return []string{fw, child, id}
		}},
		{"found by itself once retried", func(e *env, v string) []string {
			id := e.start("lf_retried", map[string]any{"v": v})
			failTask(e, nil)
			fw := failureOf(e, id)
			if got := showing(e, []string{v}, []string{fw}); len(got) == 0 {
				t.Fatal("the failure workflow shows no value before it is found secret: the test tests nothing")
			}
			e.must(http.StatusNoContent, "POST", "/api/workflow/"+id+"/retry", nil)
			e.completeTask(e.takeOne("lf_fail"), nil)
			e.completeTask(e.takeOne("lf_seal"), nil)
			e.waitStatus(id, conductor.WorkflowCompleted)
			return []string{fw, id}
		}},
	}
	values := map[string]string{}
	for _, r := range rows {
		values[r.name] = "late-failure-" + alnum(16)
	}
	// One row at a time: the rows share their task types (lf_fail,
	// lf_seal), and a row taking another's task failed it with its own
	// value, or with none.
	t.Run("rows", func(t *testing.T) {
		for _, r := range rows {
			t.Run(r.name, func(t *testing.T) {
				e := &env{t: t, node: n, base: e.base}
				v := values[r.name]
				ids := r.run(e, v)
				waitUnshown(t, func() []string { return showing(e, []string{v}, ids) })
				e.must(http.StatusOK, "POST", "/api/tasks/"+ids[0]+"/hold/COMPLETED", nil)
				e.waitStatus(ids[0], conductor.WorkflowCompleted)
				for _, id := range ids {
					e.waitCompacted(id)
				}
				for _, got := range showing(e, []string{v}, ids) {
					t.Errorf("after compaction %s", got)
				}
			})
		}
	})
	dump := stopForDump(t, n, cfg)
	for name, v := range values {
		for _, l := range dump {
			if strings.Contains(l, v) {
				t.Errorf("%s: the read models keep the value after compaction: %.300q", name, l)
			}
		}
	}
}
