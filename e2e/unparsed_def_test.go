package e2e_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/executor"
	"github.com/flowvault/flowvault/internal/logkey"
	"github.com/flowvault/flowvault/internal/nodetest"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/masking"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/secrets"
	"github.com/flowvault/flowvault/workers"
)

// A workflow whose definition snapshot no longer parses (a record an
// earlier version read, or a damaged one) is compacted like any other once
// it ended: its secrets key destroyed, its _secrets read as ***; and it
// is removed as any other. The compactor's decision asked the definition
// first, failed at every pass, and the key stayed.
func TestCompactedWhateverItsDefinition(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := compactingEnv(t, 100*time.Millisecond)
	const secret = "unparsed-secret-Vb72kQ"
	e.register(`{"name":"unparsed","version":1,"tasks":[{"name":"hold","taskReferenceName":"hold","type":"WAIT"}]}`)
	id := e.start("unparsed", map[string]any{"_secrets": map[string]any{"pw": secret}})
	e.waitStatus(id, conductor.WorkflowRunning)
	keyID := e.secretsKey(id)

	e.unparse(id, `{"name":"unparsed","version":2,"tasks":"none"}`, true)

	e.waitCompacted(id)
	e.node.Keys().ClearCache()
	if _, err := e.node.Keys().DataKey(ctx, keyID); !errors.Is(err, secrets.ErrKeyDestroyed) {
		t.Fatalf("the compacted workflow's key %s is still readable: %v", keyID, err)
	}
	testutil.Eventually(t, 10*time.Second, 50*time.Millisecond, func() error {
		if wf := e.workflow(id); wf.Status != conductor.WorkflowTerminated || wf.Input["_secrets"] != masking.Mask {
			return fmt.Errorf("the read model shows it %s, its input %v", wf.Status, wf.Input)
		}
		return nil
	})
	if raw := e.rawLog(id); strings.Contains(raw, secret) {
		t.Error("the log holds the secret in plain text")
	}
	e.must(http.StatusNoContent, "DELETE", "/api/workflow/"+id+"/remove?archiveWorkflow=true", nil)
}

// What else is asked of a workflow whose definition does not parse
// answers 409, in words that say so and quote none of it (its values may
// be data), where it answered 500 "internal error".
func TestUnparsedDefinitionConflicts(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const marker = "unparsed-data-Pq4zW"
	e.register(`{"name":"unparsed_ops","version":1,"tasks":[{"name":"hold","taskReferenceName":"hold","type":"WAIT"}]}`)
	for name, tc := range map[string]struct {
		ended        bool
		method, path string
	}{
		"pause a running one":  {method: "PUT", path: "/pause"},
		"restart an ended one": {ended: true, method: "POST", path: "/restart"},
	} {
		id := e.start("unparsed_ops", nil)
		e.waitStatus(id, conductor.WorkflowRunning)
		e.unparse(id, `{"name":"unparsed_ops","version":2,"description":"`+marker+`","tasks":[{"name":"a",`, tc.ended)
		er := e.fails(http.StatusConflict, tc.method, "/api/workflow/"+id+tc.path, nil)
		if !strings.Contains(er.Message, "recorded definition cannot be read") || strings.Contains(er.Message, marker) {
			t.Errorf("%s: answered %q, want that its definition cannot be read, quoting none of it", name, er.Message)
		}
	}
}

// GET /api/workflow/{id} of a workflow whose definition does not parse,
// not even as JSON, answers it without its workflowDefinition, and one
// that has not ended with a reasonForIncompletion that tells an operator
// why it does not move. It answered 500 "encode response".
func TestUnparsedDefinitionShown(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.register(`{"name":"unparsed_view","version":1,"tasks":[{"name":"hold","taskReferenceName":"hold","type":"WAIT"}]}`)
	for _, ended := range []bool{false, true} {
		id := e.start("unparsed_view", nil)
		e.waitStatus(id, conductor.WorkflowRunning)
		e.unparse(id, `{"name":"unparsed_view","version":2,"tasks":[{"name":"a",`, ended)
		want := "ended by an earlier version"
		if !ended {
			want = "its recorded definition cannot be read (an earlier version's record, or a damaged one): it can only be terminated or removed"
		}
		// Once the read model has the record.
		testutil.Eventually(t, 10*time.Second, 20*time.Millisecond, func() error {
			status, body := e.do("GET", "/api/workflow/"+id+"?includeTasks=true", nil)
			var wf conductor.Workflow
			if err := json.Unmarshal([]byte(body), &wf); status != http.StatusOK || err != nil {
				return fmt.Errorf("ended %v: GET answered %d %s", ended, status, body)
			}
			if wf.ReasonForIncompletion != want || wf.WorkflowDefinition != nil || len(wf.Tasks) != 1 {
				return fmt.Errorf("ended %v: reasonForIncompletion %q (want %q), workflowDefinition %s, %d tasks",
					ended, wf.ReasonForIncompletion, want, wf.WorkflowDefinition, len(wf.Tasks))
			}
			return nil
		})
	}
}

// A running workflow whose definition does not parse is terminated by
// DELETE /api/workflow/{id}, and terminate-removed, as any other: its
// tasks canceled, its child terminated, and its reason says that its
// output is empty and its failure workflow not started. Both answered
// 409, and it could only be removed, running, with archiveWorkflow=false
// (its tasks left as they were, its child running).
func TestTerminatedWhateverItsDefinition(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.register(`{"name":"unparsed_kid","version":1,"tasks":[{"name":"wait","taskReferenceName":"wait","type":"WAIT"}]}`,
		`{"name":"unparsed_end","version":1,"failureWorkflow":"unparsed_kid","tasks":[{"name":"fork","taskReferenceName":"fork","type":"FORK_JOIN","forkTasks":[
		  [{"name":"hold","taskReferenceName":"hold","type":"WAIT"}],
		  [{"name":"sub","taskReferenceName":"sub","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"unparsed_kid","version":1}}]]},
		 {"name":"join","taskReferenceName":"join","type":"JOIN","joinOn":["hold","sub"]}]}`)
	const unread = "its recorded definition cannot be read: its output is empty, and its failure workflow, if it names one, was not started"

	id := e.start("unparsed_end", nil)
	kid := e.childOf(id)
	e.waitStatus(kid, conductor.WorkflowRunning)
	e.unparse(id, `{"name":"unparsed_end","version":2,"tasks":[{"name":"a",`, false)
	e.must(http.StatusNoContent, "DELETE", "/api/workflow/"+id+"?reason=stop&triggerFailureWorkflow=true", nil)
	wf := e.waitStatus(id, conductor.WorkflowTerminated)
	if want := "stop (" + unread + ")"; wf.ReasonForIncompletion != want {
		t.Errorf("reasonForIncompletion %q, want %q", wf.ReasonForIncompletion, want)
	}
	for _, task := range wf.Tasks {
		if !conductor.TaskTerminal(task.Status) {
			t.Errorf("task %s is still %s", task.ReferenceTaskName, task.Status)
		}
	}
	if len(wf.Output) != 0 {
		t.Errorf("output %v", wf.Output)
	}
	e.waitStatus(kid, conductor.WorkflowTerminated)

	removed := e.start("unparsed_end", nil)
	kid = e.childOf(removed)
	e.waitStatus(kid, conductor.WorkflowRunning)
	e.unparse(removed, `{"name":"unparsed_end","version":2,"tasks":"none"}`, false)
	e.must(http.StatusNoContent, "DELETE", "/api/workflow/"+removed+"/terminate-remove?reason=gone", nil)
	// Archived: it still reads, ended.
	if wf := e.workflow(removed); wf.Status != conductor.WorkflowTerminated || wf.ReasonForIncompletion != "gone ("+unread+")" {
		t.Errorf("terminate-removed: %s %q", wf.Status, wf.ReasonForIncompletion)
	}
	e.waitStatus(kid, conductor.WorkflowTerminated)
}

// A workflow stuck on a recorded definition that does not parse is told
// of once, by a warning that names it and quotes none of the definition,
// and counted in flowvault_engine_unreadable_definitions_total, however
// often and by whichever path it is refused: its WAIT's tick, refused
// as a conflict, was dropped quietly, and nothing told of it.
func TestUnparsedDefinitionWarned(t *testing.T) {
	t.Parallel()
	logger, logs := testutil.CapturingLogger()
	n, base := nodetest.StartLogger(t, nodetest.Config(filepath.Join(t.TempDir(), "data")), logger)
	e := &env{t: t, node: n, base: base}
	const (
		marker = "unparsed-data-Wn3sQ"
		warned = "workflow stuck: its recorded definition cannot be read; terminate or remove it"
		metric = "flowvault_engine_unreadable_definitions_total"
	)
	e.register(`{"name":"unparsed_due","version":1,"tasks":[{"name":"hold","taskReferenceName":"hold","type":"WAIT","inputParameters":{"duration":"1 seconds"}}]}`)
	id := e.start("unparsed_due", nil)
	e.waitStatus(id, conductor.WorkflowRunning)
	e.unparse(id, `{"name":"unparsed_due","version":2,"description":"`+marker+`","tasks":[{"name":"a",`, false)

	// The WAIT's deadline passes, and its tick is refused.
	testutil.Eventually(t, 20*time.Second, 50*time.Millisecond, func() error {
		if !strings.Contains(logs.String(), warned) {
			return errors.New("no warning yet")
		}
		return nil
	})
	// Asked again, by a request: still once.
	for range 2 {
		e.fails(http.StatusConflict, "PUT", "/api/workflow/"+id+"/pause", nil)
	}
	if strings.Contains(logs.String(), marker) {
		t.Errorf("the log quotes the definition: %s", logs)
	}
	if lines := logs.Records(warned); len(lines) != 1 || lines[0]["level"] != "WARN" || lines[0][logkey.WorkflowID] != id || lines[0][logkey.Trigger] != "tick" {
		t.Errorf("warned %v, want once, of workflow %s's tick", lines, id)
	}
	if got := e.engineMetric(metric); got != 1 {
		t.Errorf("%s = %d, want 1", metric, got)
	}
}

// A workflow whose definition does not parse has the outputs it masks
// purged from the task output cache by its compaction, those of the
// tasks its definition configures too: here one that a purge left (an
// engine killed after the decision that found it secret was recorded),
// of a task completed before the upgrade onto that definition, which
// kept its key. Only a dynamic fork's tasks' were purged, by key, and
// this one stayed until it expired.
func TestCompactionUncachesWhateverItsDefinition(t *testing.T) {
	t.Parallel()
	e := compactingEnv(t, 100*time.Millisecond)
	const token = "unparsed-cached-Hk29sL"
	e.register(`{"name":"uc_src","tasks":[
	  {"name":"uc_token","taskReferenceName":"a","inputParameters":{"k":"${workflow.input.k}"},"cacheConfig":{"key":"${k}","ttlInSecond":600}},
	  {"name":"uc_mid","taskReferenceName":"b"},
	  {"name":"uc_use","taskReferenceName":"c","inputParameters":{"_secrets":{"t":"${a.output.token}"}}},
	  {"name":"hold","taskReferenceName":"hold","type":"WAIT"}]}`)
	e.work("uc_token", 1, tokenOnce(token))
	// b waits until the test has read a's cached output.
	release := make(chan struct{})
	e.work("uc_mid", 1, heldUntil(release))
	e.work("uc_use", 1, func(context.Context, *conductor.Task) (workers.Output, error) { return workers.Output{}, nil })
	id := e.start("uc_src", map[string]any{"k": "x", "_secrets": map[string]any{"pw": "p"}})

	var key string
	var entry []byte
	testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() error {
		entries, err := cacheEntries(e)
		for k, v := range entries {
			if strings.Contains(string(v), token) {
				key, entry = k, v
				return nil
			}
		}
		return fmt.Errorf("a's output is not cached yet (%v)", err)
	})
	close(release)
	e.waitStatus(id, conductor.WorkflowRunning)
	e.compactedWithEntry(id, `{"name":"uc_src","version":2,"tasks":"none"}`, key, entry, token)
}

// A cache entry is shared by every workflow whose task has its key: the
// one a task of another workflow wrote, from which a task of this one was
// completed, holds the value this one finds secret all the same, and its
// compaction purges it, though the entry names that other workflow and a
// definition that does not parse holds the task's cacheConfig: the
// upgrade onto it kept the task's key (Task.CacheKeys), and the purge is
// by that key, whoever wrote the entry. A read of every entry, by the task
// each names, did not find it.
func TestCompactionUncachesAnotherWorkflowsEntry(t *testing.T) {
	t.Parallel()
	e := compactingEnv(t, 100*time.Millisecond)
	const token = "shared-cached-Rt58qM"
	e.register(`{"name":"us_first","tasks":[
	  {"name":"us_token","taskReferenceName":"a","inputParameters":{"k":"${workflow.input.k}"},"cacheConfig":{"key":"${k}","ttlInSecond":600}}]}`,
		`{"name":"us_src","tasks":[
	  {"name":"us_token","taskReferenceName":"a","inputParameters":{"k":"${workflow.input.k}"},"cacheConfig":{"key":"${k}","ttlInSecond":600}},
	  {"name":"us_mid","taskReferenceName":"b"},
	  {"name":"us_use","taskReferenceName":"c","inputParameters":{"_secrets":{"t":"${a.output.token}"}}},
	  {"name":"hold","taskReferenceName":"hold","type":"WAIT"}]}`)
	e.work("us_token", 1, tokenOnce(token))
	done := func(context.Context, *conductor.Task) (workers.Output, error) { return workers.Output{}, nil }
	e.work("us_mid", 1, done)
	e.work("us_use", 1, done)
	first := e.waitStatus(e.start("us_first", map[string]any{"k": "x"}), conductor.WorkflowCompleted)
	entries, err := cacheEntries(e)
	if err != nil {
		t.Fatal(err)
	}
	var key string
	var entry []byte
	for k, v := range entries {
		if strings.Contains(string(v), token) && strings.Contains(string(v), first.WorkflowID) {
			key, entry = k, v
		}
	}
	if entry == nil {
		t.Fatalf("no entry of workflow %s holds its output (%d entries)", first.WorkflowID, len(entries))
	}

	id := e.start("us_src", map[string]any{"k": "x", "_secrets": map[string]any{"pw": "p"}})
	// c, a later decision than a's, finds the token secret: the entry
	// goes, whoever wrote it.
	e.compactedWithEntry(id, `{"name":"us_src","version":2,"tasks":"none"}`, key, entry, token)
	if got := testutil.MetricValue(t, e.node.Registry(), "flowvault_engine_task_cache_total", map[string]string{"result": "hit"}); got != 1 {
		t.Errorf("task_cache_total{result=\"hit\"} = %v, want 1: a completed from the first workflow's entry", got)
	}
	if got := taskByRef(e.workflow(id), "a").OutputData["token"]; got != masking.Mask {
		t.Errorf("a's token reads %d characters, want %q", len(fmt.Sprint(got)), masking.Mask)
	}
}

// compactedWithEntry waits until no cache entry holds token, found
// secret by workflow id, which waits in its task hold; then puts entry
// back under key, as a purge that never ran leaves it (an engine killed
// after the decision that found its value secret was recorded), replaces
// the workflow's definition by def, which does not parse, and ends it,
// and fails the test if a cache entry still holds token once the
// workflow is compacted.
func (e *env) compactedWithEntry(id, def, key string, entry []byte, token string) {
	e.t.Helper()
	testutil.Eventually(e.t, 10*time.Second, 10*time.Millisecond, func() error {
		if n, err := cacheHolding(e, token); err != nil || n != 0 {
			return fmt.Errorf("%d cache entries hold the value found secret (%v)", n, err)
		}
		if hold := taskByRef(e.workflow(id), "hold"); hold == nil || hold.Status != conductor.TaskInProgress {
			return errors.New("hold is not reached yet")
		}
		return nil
	})
	ctx := context.Background()
	kv, err := e.node.Log().JetStream().KeyValue(ctx, "FV_TASK_CACHE")
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := kv.Put(ctx, key, entry); err != nil {
		e.t.Fatal(err)
	}
	e.unparse(id, def, true)
	e.waitCompacted(id)
	if n, err := cacheHolding(e, token); err != nil || n != 0 {
		e.t.Errorf("%d cache entries hold the value found secret after the compaction (%v)", n, err)
	}
}

// A workflow an earlier version ended FAILED, starting its failure
// workflow, whose definition parses no more, is told by its starter of a
// value found to be secret after its end, and tells its failure workflow,
// which got the value in its input as given: both read "***" in every
// view. Both showed it: the ended workflow refused the news, its decision
// asking the definition, and its state, folded without the definition,
// named no failure workflow to tell.
func TestLateSecretReachesTheFailureWorkflowOfAnUnparsedOne(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// Compacted an hour after their end: the ended workflow is told
	// while it keeps its secrets key.
	e, _ := compactingNode(t, time.Hour)
	e.work("ulf_seal", 1, succeed)
	e.register(`{"name":"ulf_failure","tasks":[{"name":"hold","taskReferenceName":"hold","type":"WAIT"}]}`,
		`{"name":"ulf_ended","failureWorkflow":"ulf_failure","tasks":[{"name":"hold","taskReferenceName":"hold","type":"WAIT"}]}`)
	v := "late-unparsed-" + alnum(16)
	id, ended := startSealing(e, "ulf", "ulf_ended", v)
	testutil.Eventually(t, 30*time.Second, 20*time.Millisecond, func() error {
		if hold := taskByRef(e.workflow(ended), "hold"); hold == nil || hold.Status != conductor.TaskInProgress {
			return errors.New("the started workflow does not hold yet")
		}
		return nil
	})

	// What the earlier version recorded: its end, which named the failure
	// workflow it started, and that start, the value in its input.
	failure := engine.DeriveID(ended, "failure", "0")
	e.unparseEnding(ended, `{"name":"ulf_ended","version":2,"tasks":[{"name":"a",`, &schemas.WorkflowStatusChanged{Status: conductor.WorkflowFailed,
		Reason: "failed under an earlier version", Output: map[string]any{engine.FailureWorkflowOutputKey: failure}, NoFailedTask: true})
	if _, _, err := e.node.Executor().StartWorkflow(ctx, conductor.StartWorkflowRequest{Name: "ulf_failure",
		Input: map[string]any{"v": v, "workflowId": ended, "failureStatus": conductor.WorkflowFailed}},
		executor.StartOptions{WorkflowID: failure, CreatedBy: e.workflow(ended).CreatedBy, FromWorkflow: true}); err != nil {
		t.Fatal(err)
	}
	e.waitStatus(ended, conductor.WorkflowFailed)
	e.waitStatus(failure, conductor.WorkflowRunning)
	if got := showing(e, []string{v}, []string{ended, failure}); len(got) == 0 {
		t.Fatal("neither shows the value before it is found secret: the test tests nothing")
	}

	e.must(http.StatusOK, "POST", "/api/tasks/"+id+"/gate/COMPLETED", nil)
	e.waitStatus(id, conductor.WorkflowCompleted)
	waitUnshown(t, func() []string { return showing(e, []string{v}, []string{id, ended, failure}) })
}

// A running workflow whose definition parses no more (one an earlier
// version recorded), told by its starter of a value found to be secret
// after the START_WORKFLOW handed it over, masks it from its state alone:
// its input, its variables, its tasks' inputs and outputs, in every view,
// and tells its own child, which read "***" as well; it still waits, as
// it did, for a terminate. It refused the news, as for the definition,
// and both showed the value in plain text for as long as they ran.
func TestLateSecretReachesARunningUnparsedOne(t *testing.T) {
	t.Parallel()
	// Compacted an hour after their end: the starter keeps its secrets
	// key while the running one is told.
	e, _ := compactingNode(t, time.Hour)
	e.work("ulr_seal", 1, succeed)
	e.work("ulr_echo", 1, echoV)
	e.register(`{"name":"ulr_grand","tasks":[{"name":"hold","taskReferenceName":"hold","type":"WAIT"}]}`,
		`{"name":"ulr_running","tasks":[
		  {"name":"sv","taskReferenceName":"sv","type":"SET_VARIABLE","inputParameters":{"v":"${workflow.input.v}"}},
		  {"name":"ulr_echo","taskReferenceName":"echo","inputParameters":{"v":"${workflow.input.v}"}},
		  {"name":"sub","taskReferenceName":"sub","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"ulr_grand"},"inputParameters":{"v":"${echo.output.v}"}}]}`)
	v := "late-running-" + alnum(16)
	id, running := startSealing(e, "ulr", "ulr_running", v)
	grand := e.childOf(running)
	e.waitStatus(grand, conductor.WorkflowRunning)
	e.unparse(running, `{"name":"ulr_running","version":2,"tasks":[{"name":"a",`, false)
	for _, wf := range []string{running, grand} {
		if got := showing(e, []string{v}, []string{wf}); len(got) == 0 {
			t.Fatalf("%s shows no value before it is found secret: the test tests nothing", wf)
		}
	}

	e.must(http.StatusOK, "POST", "/api/tasks/"+id+"/gate/COMPLETED", nil)
	e.waitStatus(id, conductor.WorkflowCompleted)
	waitUnshown(t, func() []string { return showing(e, []string{v}, []string{id, running, grand}) })
	if wf := e.workflow(running); wf.Status != conductor.WorkflowRunning || taskByRef(wf, "sub").Status != conductor.TaskInProgress {
		t.Errorf("the started workflow is %s, its child's task %s: want it to wait as it did", wf.Status, taskByRef(wf, "sub").Status)
	}
}

// unparse appends to workflow id's log a record that replaces its
// definition by def, which does not parse, and ends it if ended (its
// running task canceled): what an earlier version could have recorded.
func (e *env) unparse(id, def string, ended bool) {
	e.t.Helper()
	var end *schemas.WorkflowStatusChanged
	if ended {
		end = &schemas.WorkflowStatusChanged{Status: conductor.WorkflowTerminated, Reason: "ended by an earlier version", NoFailedTask: true}
	}
	e.unparseEnding(id, def, end)
}

// unparseEnding is unparse, ending the workflow with end unless it is nil.
func (e *env) unparseEnding(id, def string, end *schemas.WorkflowStatusChanged) {
	e.t.Helper()
	now, subject := time.Now().UnixMilli(), "fv.wf."+eventlog.Token(id)
	evs := []schemas.Event{&schemas.WorkflowUpgraded{Def: []byte(def), Time: now}}
	if end != nil {
		for _, task := range e.workflow(id).Tasks {
			if task.Status == conductor.TaskInProgress {
				evs = append(evs, &schemas.TaskUpdated{TaskID: task.TaskID, Status: conductor.TaskCanceled, KeepOutput: true, Time: now})
			}
		}
		end.Time = now
		evs = append(evs, end)
	}
	rec := testutil.Record(e.t, subject, 0, evs...)
	for i := range rec.Events {
		rec.Events[i].ID, rec.Events[i].Time = fmt.Sprintf("%s-unparsed-%d", id, i), time.Now().UnixNano()
	}
	recs := e.records(id)
	if _, err := e.node.Log().Append(context.Background(), subject, rec.Events, recs[len(recs)-1].Seq); err != nil {
		e.t.Fatal(err)
	}
}
