package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flowvault/flowvault/internal/nodetest"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/workers"
)

// replayFlows use every task type the engine runs, secrets and
// environment values, a retried failing task with a failure workflow, a
// TERMINATE, an EVENT and a WAIT_FOR_WEBHOOK.
var replayFlows = []string{
	`{"name":"rp_main","version":1,"tasks":[
	  {"name":"rp_simple","taskReferenceName":"first","inputParameters":{"tok":"${workflow.secrets.rp_tok}","region":"${workflow.env.rp_region}","n":"${workflow.input.n}"}},
	  {"name":"fork","taskReferenceName":"fork","type":"FORK_JOIN","forkTasks":[
	    [{"name":"calc","taskReferenceName":"calc","type":"INLINE","inputParameters":{"evaluatorType":"javascript","expression":"$.n * 2","n":"${workflow.input.n}"}}],
	    [{"name":"shape","taskReferenceName":"shape","type":"JSON_JQ_TRANSFORM","inputParameters":{"queryExpression":"{doubled: [.l[] | . * 2]}","l":[1,2]}}]]},
	  {"name":"join","taskReferenceName":"join","type":"JOIN","joinOn":["calc","shape"]},
	  {"name":"dfork","taskReferenceName":"dfork","type":"FORK_JOIN_DYNAMIC","dynamicForkTasksParam":"tasks","dynamicForkTasksInputParamName":"inputs",
	   "inputParameters":{"tasks":[{"name":"rp_simple","taskReferenceName":"d1"},{"name":"rp_simple","taskReferenceName":"d2"}],"inputs":{"d1":{"n":1},"d2":{"n":2}}}},
	  {"name":"djoin","taskReferenceName":"djoin","type":"JOIN"},
	  {"name":"route","taskReferenceName":"route","type":"SWITCH","evaluatorType":"value-param","expression":"kind","inputParameters":{"kind":"${workflow.input.kind}"},
	   "decisionCases":{"a":[{"name":"mark","taskReferenceName":"mark_a","type":"SET_VARIABLE","inputParameters":{"route":"a"}}]},
	   "defaultCase":[{"name":"mark","taskReferenceName":"mark_other","type":"SET_VARIABLE","inputParameters":{"route":"other"}}]},
	  {"name":"loop","taskReferenceName":"loop","type":"DO_WHILE","inputParameters":{},"loopCondition":"$.loop['iteration'] < 2",
	   "loopOver":[{"name":"step","taskReferenceName":"step","type":"INLINE","inputParameters":{"evaluatorType":"javascript","expression":"$.i + 1","i":"${loop.output.iteration}"}}]},
	  {"name":"child","taskReferenceName":"child","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"rp_child","version":1},"inputParameters":{"from":"${workflow.workflowId}"}},
	  {"name":"call","taskReferenceName":"call","type":"HTTP","inputParameters":{"http_request":{"uri":"${workflow.input.url}","method":"GET"}}},
	  {"name":"nap","taskReferenceName":"nap","type":"WAIT","inputParameters":{"duration":"1s"}},
	  {"name":"announce","taskReferenceName":"announce","type":"EVENT","sink":"nats:rp.done","inputParameters":{"n":"${workflow.input.n}"}}],
	 "outputParameters":{"calc":"${calc.output.result}","shape":"${shape.output.result}","loop":"${loop.output.iteration}","child":"${child.output.said}",
	   "status":"${call.output.response.statusCode}","route":"${workflow.variables.route}"}}`,
	`{"name":"rp_child","version":1,"tasks":[{"name":"echo","taskReferenceName":"echo","type":"INLINE","inputParameters":{"evaluatorType":"javascript",
	   "expression":"'child of ' + $.from","from":"${workflow.input.from}"}}],"outputParameters":{"said":"${echo.output.result}"}}`,
	`{"name":"rp_term","version":1,"tasks":[{"name":"set","taskReferenceName":"set","type":"SET_VARIABLE","inputParameters":{"x":1}},
	   {"name":"term","taskReferenceName":"term","type":"TERMINATE","inputParameters":{"terminationStatus":"COMPLETED","terminationReason":"enough","workflowOutput":{"x":"${workflow.variables.x}"}}},
	   {"name":"never","taskReferenceName":"never","type":"WAIT"}]}`,
	`{"name":"rp_fail","version":1,"failureWorkflow":"rp_onfail","tasks":[{"name":"rp_flaky","taskReferenceName":"flaky"}]}`,
	`{"name":"rp_onfail","version":1,"tasks":[{"name":"note","taskReferenceName":"note","type":"SET_VARIABLE","inputParameters":{"failed":"${workflow.input.workflowId}"}}]}`,
	`{"name":"rp_wait","version":1,"tasks":[{"name":"hold","taskReferenceName":"hold","type":"WAIT"},
	   {"name":"after","taskReferenceName":"after","type":"SET_VARIABLE","inputParameters":{"done":true}}]}`,
	`{"name":"rp_sealed","version":1,"tasks":[{"name":"rp_sealer","taskReferenceName":"sealer"},
	   {"name":"use","taskReferenceName":"use","type":"SET_VARIABLE","inputParameters":{"auth":"Bearer ${sealer.output._secrets.jwt}"}}],
	 "outputParameters":{"jwt":"${sealer.output._secrets.jwt}"}}`,
	`{"name":"rp_hook","version":1,"tasks":[{"name":"w","taskReferenceName":"w","type":"WAIT_FOR_WEBHOOK","inputParameters":{"matches":{"$.repo":"${workflow.input.repo}"}}}],
	 "outputParameters":{"got":"${w.output.id}"}}`,
	`{"name":"rp_removed","version":1,"tasks":[{"name":"s","taskReferenceName":"s","type":"SET_VARIABLE","inputParameters":{"y":2}}]}`,
}

// Read models are projections of the log: rebuilt from it (the Pebble
// directory deleted), they answer every read as they did before. A varied
// mix of workflows, operations on them, secrets, environment values,
// schedules, event handlers, webhooks and applications runs on one node;
// every read is taken before and after the rebuild and compared, and so
// are the read models' dumps.
func TestReadModelsRebuildToTheSameAnswers(t *testing.T) {
	t.Parallel()
	cfg := nodetest.SecureConfig(filepath.Join(t.TempDir(), "data"))
	cfg.CompactionDelay = 100 * time.Millisecond
	n, base := nodetest.StartConfig(t, cfg)
	token := nodetest.AdminToken(t, cfg, base)
	e := &env{t: t, node: n, base: base, token: token}

	ok := func(method, path string, body any) string {
		t.Helper()
		code, out := e.do(method, path, body)
		if code/100 != 2 {
			t.Fatalf("%s %s = %d %s", method, path, code, out)
		}
		return out
	}
	const secret = "replay-secret-Qw81zR"
	const sealed = "replay-sealed-Jt55pX"
	e.putSecret("rp_tok", secret)
	ok("PUT", "/api/secrets/rp_tok/tags", []map[string]string{{"key": "team", "value": "pay"}})
	e.putSecret("rp_gone", "to-be-deleted-Hh2")
	ok("DELETE", "/api/secrets/rp_gone", nil)
	ok("PUT", "/api/environment/rp_region", "eu-west-1")
	ok("PUT", "/api/environment/rp_region/tags", []map[string]string{{"key": "team", "value": "ops"}})
	ok("POST", "/api/metadata/taskdefs",
		`[{"name":"rp_flaky","retryCount":1,"retryDelaySeconds":0},{"name":"rp_simple","retryCount":0},{"name":"rp_sealer","retryCount":0}]`)
	e.register(replayFlows...)
	ok("PUT", "/api/metadata/workflow/rp_main/tags", []map[string]string{{"key": "kind", "value": "mixed"}})
	ok("DELETE", "/api/metadata/taskdefs/rp_sealer", nil)
	ok("POST", "/api/metadata/taskdefs", `[{"name":"rp_sealer","retryCount":0,"description":"again"}]`)
	app, _ := e.application("rp_app", "WORKER")
	ok("PUT", "/api/applications/"+strings.TrimPrefix(app, "app:")+"/tags", []map[string]string{{"key": "owner", "value": "rp"}})

	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"ok":true}`)
	}))
	t.Cleanup(srv.Close)
	e.work("rp_simple", 2, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		return workers.Output{Data: map[string]any{"n": task.InputData["n"], "ref": task.ReferenceTaskName}, Logs: []string{"ran " + task.ReferenceTaskName}}, nil
	})
	e.work("rp_flaky", 1, func(context.Context, *conductor.Task) (workers.Output, error) {
		return workers.Output{}, errors.New("flaky says no")
	})
	e.work("rp_sealer", 1, func(context.Context, *conductor.Task) (workers.Output, error) {
		return workers.Output{Data: map[string]any{"_secrets": map[string]any{"jwt": sealed}, "plain": "p"}}, nil
	})
	ok("POST", "/api/event", `[{"name":"rp_on_done","event":"nats:rp.done","active":true,
	  "actions":[{"action":"start_workflow","start_workflow":{"name":"rp_term","correlationId":"from-event","input":{"n":"${n}"}}}]}]`)
	ok("PUT", "/api/event/rp_on_done/tags", []map[string]string{{"key": "k", "value": "v"}})

	var ids []string
	track := func(id string) string { ids = append(ids, id); return id }
	mainA := track(e.must(http.StatusOK, "POST", "/api/workflow", conductor.StartWorkflowRequest{Name: "rp_main", CorrelationID: "main-a",
		Input: map[string]any{"n": 3, "kind": "a", "url": srv.URL + "/a"}}))
	mainB := track(e.start("rp_main", map[string]any{"n": 4, "kind": "b", "url": srv.URL + "/b"}))
	term := track(e.start("rp_term", nil))
	failed := track(e.must(http.StatusOK, "POST", "/api/workflow", conductor.StartWorkflowRequest{Name: "rp_fail", CorrelationID: "fails"}))
	sealedWf := track(e.start("rp_sealed", nil))
	paused := track(e.start("rp_wait", map[string]any{"w": "paused"}))
	resumed := track(e.start("rp_wait", map[string]any{"w": "resumed"}))
	terminated := track(e.start("rp_wait", map[string]any{"w": "terminated"}))
	removed := e.start("rp_removed", nil)
	hooked := track(e.start("rp_hook", map[string]any{"repo": "r1"}))

	e.waitStatus(mainA, conductor.WorkflowCompleted)
	e.waitStatus(mainB, conductor.WorkflowCompleted)
	e.waitStatus(term, conductor.WorkflowCompleted)
	e.waitStatus(failed, conductor.WorkflowFailed)
	e.waitStatus(sealedWf, conductor.WorkflowCompleted)
	e.waitStatus(removed, conductor.WorkflowCompleted)
	e.waitCompacted(sealedWf)

	ok("PUT", "/api/workflow/"+paused+"/pause", nil)
	ok("PUT", "/api/workflow/"+resumed+"/pause", nil)
	ok("PUT", "/api/workflow/"+resumed+"/resume", nil)
	ok("DELETE", "/api/workflow/"+terminated+"?reason=enough", nil)
	ok("POST", "/api/workflow/"+term+"/restart", nil)
	e.waitStatus(term, conductor.WorkflowCompleted)
	ok("POST", "/api/workflow/"+failed+"/retry", nil)
	e.waitStatus(failed, conductor.WorkflowFailed)
	e.must(http.StatusOK, "POST", "/api/workflow/"+mainB+"/rerun", map[string]any{"reRunFromTaskId": taskByRef(e.workflow(mainB), "call").TaskID})
	e.waitStatus(mainB, conductor.WorkflowCompleted)
	ok("POST", "/api/workflow/"+resumed+"/variables", map[string]any{"v": 1})
	ok("DELETE", "/api/workflow/"+removed+"/remove?archiveWorkflow=false", nil)

	hook := ok("POST", "/api/metadata/webhook", map[string]any{"name": "rp_hook", "verifier": "HEADER_BASED",
		"headers": map[string]string{"X-Hook-Token": "${workflow.secrets.rp_tok}"}, "receiverWorkflowNamesToVersions": map[string]int{"rp_hook": 1}})
	var hookCfg conductor.WebhookConfig
	if err := json.Unmarshal([]byte(hook), &hookCfg); err != nil {
		t.Fatal(err)
	}
	if code, body := e.deliver(hookCfg.ID, map[string]string{"X-Hook-Token": secret}, `{"repo":"r1","id":"delivery-1"}`); code != http.StatusOK {
		t.Fatalf("webhook delivery: %d %s", code, body)
	}
	e.waitStatus(hooked, conductor.WorkflowCompleted)

	// A schedule that ran once, paused since so that it runs no more.
	ok("POST", "/api/scheduler/schedules", `{"name":"rp_tick","cronExpression":"* * * * * ?",
	  "startWorkflowRequest":{"name":"rp_removed","input":{"from":"schedule"}}}`)
	testutil.Eventually(t, 10*time.Second, 50*time.Millisecond, func() error {
		if x := e.scheduleExecutions(); x.TotalHits < 1 {
			return fmt.Errorf("%d executions", x.TotalHits)
		}
		return nil
	})
	ok("GET", "/api/scheduler/schedules/rp_tick/pause", nil)
	ok("PUT", "/api/scheduler/schedules/rp_tick/tags", []map[string]string{{"key": "k", "value": "v"}})
	ok("POST", "/api/scheduler/schedules", `{"name":"rp_later","cronExpression":"0 0 0 1 1 ?","paused":true,
	  "startWorkflowRequest":{"name":"rp_removed"}}`)

	// What changes after the runs: definitions overwritten, versioned and
	// deleted, a task definition gone, a secret rotated, an environment
	// value deleted, principals and grants, worker credentials, a task
	// nobody polls, one in progress with a callback, a skipped one, an
	// archived workflow, an idempotency key.
	ok("POST", "/api/metadata/workflow?overwrite=true", strings.Replace(replayFlows[1], `"version":1`, `"version":1,"description":"changed"`, 1))
	ok("POST", "/api/metadata/workflow?overwrite=true", strings.Replace(replayFlows[0], `"version":1`, `"version":2`, 1))
	ok("DELETE", "/api/metadata/workflow/rp_removed/1", nil)
	e.register(strings.Replace(replayFlows[8], `"type":"SET_VARIABLE"`, `"type":"SET_VARIABLE","description":"back"`, 1))
	ok("DELETE", "/api/metadata/taskdefs/rp_flaky", nil)
	e.putSecret("rp_tok", secret+"-rotated")
	ok("PUT", "/api/environment/rp_gone", "x")
	ok("DELETE", "/api/environment/rp_gone", nil)
	ok("PUT", "/api/groups/rp_team", `{"description":"team","roles":["USER"],"defaultAccess":{"WORKFLOW_DEF":["READ"]}}`)
	ok("PUT", "/api/users/rp_carol", `{"name":"Carol","roles":["USER"],"groups":["rp_team"]}`)
	e.grant("rp_carol", "WORKFLOW_DEF", "rp_main", "READ", "EXECUTE")
	e.revoke("rp_carol", "WORKFLOW_DEF", "rp_main", "EXECUTE")
	gone, _ := e.application("rp_gone_app", "USER")
	ok("DELETE", "/api/applications/"+strings.TrimPrefix(gone, "app:"), nil)
	ok("POST", "/api/workers/credentials", map[string]any{"taskTypes": []string{"rp_nobody"}})
	e.register(`{"name":"rp_queued","version":1,"tasks":[{"name":"rp_nobody","taskReferenceName":"nobody"}]}`,
		`{"name":"rp_callback","version":1,"tasks":[{"name":"rp_cb","taskReferenceName":"cb"}]}`,
		`{"name":"rp_skip","version":1,"tasks":[{"name":"hold","taskReferenceName":"hold","type":"WAIT"},
		  {"name":"rp_nobody","taskReferenceName":"skipped"},{"name":"s","taskReferenceName":"s","type":"SET_VARIABLE","inputParameters":{"z":3}}]}`)
	queued := track(e.must(http.StatusOK, "POST", "/api/workflow", conductor.StartWorkflowRequest{Name: "rp_queued", Priority: 7,
		IdempotencyKey: "rp-key", TaskToDomain: map[string]string{"*": "blue"}}))
	plainQueued := track(e.start("rp_queued", map[string]any{"plain": true}))
	cb := track(e.start("rp_callback", nil))
	var cbTask []*conductor.Task
	testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() error {
		if cbTask = decodeTasks(t, ok("GET", "/api/tasks/poll/batch/rp_cb?workerid=w1&count=1&timeout=100", nil)); len(cbTask) != 1 {
			return errors.New("no rp_cb task yet")
		}
		return nil
	})
	ok("POST", "/api/tasks", map[string]any{"taskId": cbTask[0].TaskID, "workflowInstanceId": cb, "status": "IN_PROGRESS",
		"callbackAfterSeconds": 600, "outputData": map[string]any{"progress": 0.5}, "logs": []map[string]any{{"log": "half way", "createdTime": 1}}})
	skip := track(e.start("rp_skip", nil))
	ok("PUT", "/api/workflow/"+skip+"/skiptask/skipped", map[string]any{"taskOutput": map[string]any{"o": 1}})
	ok("POST", "/api/tasks/"+skip+"/hold/COMPLETED", map[string]any{"waited": true})
	e.waitStatus(skip, conductor.WorkflowCompleted)
	archived := e.start("rp_removed", map[string]any{"archive": true})
	e.waitStatus(archived, conductor.WorkflowCompleted)
	ok("DELETE", "/api/workflow/"+archived+"/remove", nil)
	track(archived)

	// Everything the mix started settles: the event's workflow, the
	// failure workflows, the schedule's runs.
	waiting := []string{paused, resumed, queued, plainQueued, cb}
	var all []string
	testutil.Eventually(t, 20*time.Second, 100*time.Millisecond, func() error {
		res := e.search("/api/workflow/search?size=1000&sort=workflowId:ASC")
		all = all[:0]
		for _, s := range res.Results {
			all = append(all, s.WorkflowID)
			if s.Status == conductor.WorkflowRunning && !slices.Contains(waiting, s.WorkflowID) {
				return fmt.Errorf("workflow %s (%s) still running", s.WorkflowID, s.WorkflowType)
			}
		}
		if !strings.Contains(e.must(http.StatusOK, "GET", "/api/workflow/rp_term/correlated/from-event?includeClosed=true", nil), "workflowId") {
			return errors.New("the event handler started nothing yet")
		}
		return nil
	})
	for _, id := range all {
		if !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}

	// The audit trail records reads (GET /api/environment is one): each
	// read of the trail takes the records before the first.
	time.Sleep(2 * time.Millisecond)
	cutoff := time.Now().UTC().Format(time.RFC3339Nano)
	time.Sleep(2 * time.Millisecond)
	before := replayReads(e, ids, removed, cutoff)
	// What is not there answers 404, before and after: the removed
	// workflow, the deleted secret, and the tasks of the archived
	// workflow, which GET /api/tasks/{taskId} does not serve.
	absent := []string{"/api/workflow/" + removed, "/api/secrets/rp_gone/exists"}
	for _, task := range e.workflow(archived).Tasks {
		absent = append(absent, "/api/tasks/"+task.TaskID, "/api/tasks/"+task.TaskID+"/log")
	}
	for p, body := range before {
		if !strings.HasPrefix(body, "200 ") && !strings.HasPrefix(p, "/metrics") && !slices.Contains(absent, p) {
			t.Errorf("GET %s = %.300s", p, body)
		}
	}
	if again := replayReads(e, ids, removed, cutoff); !equalReads(t, "a second read", before, again) {
		t.Fatal("reads differ without a rebuild: the comparison below would not mean anything")
	}
	stop := func() {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := n.Stop(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if v := e.must(http.StatusOK, "POST", "/api/audit/verify", nil); !strings.Contains(v, `"drift":false`) {
		t.Errorf("the live read models differ from a rebuild: %s", v)
	}
	stop()
	dump := nodetest.Dump(t, cfg)
	if strings.Contains(dump, secret) || strings.Contains(dump, sealed) {
		t.Error("the read models hold a secret value")
	}
	if err := os.RemoveAll(cfg.PebbleDir()); err != nil {
		t.Fatal(err)
	}
	// The rebuild alone, then the reads, which write audit records (and
	// so move the checkpoint of the read model that follows them).
	n, _ = nodetest.StartConfig(t, cfg)
	stop()
	if got := nodetest.Dump(t, cfg); got != dump {
		t.Errorf("rebuilt read models differ:\n%s", dumpDiff(dump, got))
	}
	n, base = nodetest.StartConfig(t, cfg)
	e = &env{t: t, node: n, base: base, token: token}
	equalReads(t, "after the rebuild", before, replayReads(e, ids, removed, cutoff))
}

// replayReads reads everything the API answers about the mix, by path.
func replayReads(e *env, ids []string, removed, cutoff string) map[string]string {
	e.t.Helper()
	paths := []string{
		"/api/workflow/search?size=1000&sort=workflowId:ASC",
		"/api/workflow/search-v2?size=1000&sort=workflowId:ASC",
		"/api/workflow/search?size=1000&sort=workflowId:ASC&query=" + url.QueryEscape("status IN (FAILED, TERMINATED)"),
		"/api/workflow/search?size=1000&sort=workflowId:ASC&freeText=" + url.QueryEscape("rp_main"),
		"/api/workflow/search-by-tasks?size=1000&sort=workflowId:ASC&query=" + url.QueryEscape("taskType = rp_simple"),
		"/api/tasks/search?size=1000&sort=taskId:ASC",
		"/api/tasks/search-v2?size=1000&sort=taskId:ASC",
		"/api/workflow/rp_main/correlated/main-a?includeClosed=true&includeTasks=true",
		"/api/workflow/rp_fail/correlated/fails?includeClosed=true&includeTasks=true",
		"/api/workflow/rp_term/correlated/from-event?includeClosed=true&includeTasks=true",
		"/api/workflow/" + removed,
		"/api/metadata/workflow",
		"/api/metadata/workflow/names-and-versions",
		"/api/metadata/workflow/latest-versions",
		"/api/metadata/workflow/rp_main/tags",
		"/api/metadata/taskdefs",
		"/api/metadata/tags",
		"/api/secrets",
		"/api/secrets-v2",
		"/api/secrets/rp_tok/metadata",
		"/api/secrets/rp_tok/tags",
		"/api/secrets/rp_tok/exists",
		"/api/secrets/rp_gone/exists",
		"/api/environment",
		"/api/environment/rp_region",
		"/api/environment/rp_region/tags",
		"/api/scheduler/schedules",
		"/api/scheduler/schedules/rp_tick",
		"/api/scheduler/schedules/tags?tag=k:v",
		"/api/scheduler/search/executions?size=1000",
		"/api/event",
		"/api/event/rp_on_done/tags",
		"/api/metadata/webhook",
		"/api/tasks/queue/all",
		"/api/tasks/queue/sizes?taskType=rp_simple&taskType=rp_flaky",
		// Not /api/tasks/queue/polldata: each process keeps the polls it
		// served in memory (it is no read model), and the workers poll
		// on, each poll moving its lastPollTime.
		"/api/applications",
		"/api/users",
		"/api/groups",
		"/api/workers/credentials",
		"/api/schema",
		"/api/audit?limit=100000&to=" + url.QueryEscape(cutoff),
	}
	for _, id := range ids {
		paths = append(paths, "/api/workflow/"+id+"?includeTasks=true")
		var wf conductor.Workflow
		if err := json.Unmarshal([]byte(e.must(http.StatusOK, "GET", "/api/workflow/"+id+"?includeTasks=true", nil)), &wf); err != nil {
			e.t.Fatal(err)
		}
		for _, task := range wf.Tasks {
			paths = append(paths, "/api/tasks/"+task.TaskID, "/api/tasks/"+task.TaskID+"/log")
		}
	}
	out := map[string]string{}
	for _, p := range paths {
		code, body := e.do("GET", p, nil)
		var v any
		if json.Unmarshal([]byte(body), &v) == nil {
			b, _ := json.MarshalIndent(v, "", " ")
			body = string(b)
		}
		if p == "/api/tasks/queue/all" {
			// A queue shows while its consumer on the dispatch stream
			// lives, which is ephemeral (rebuilt from the log at start,
			// for the tasks still to take): an empty queue of a type
			// with no task definition, here rp_cb's, whose task is in
			// progress, goes with a restart, rebuild or not.
			body = emptyQueue.ReplaceAllString(body, "")
		}
		if strings.HasPrefix(p, "/api/audit") {
			// records counts what the trail scanned, the records of
			// these reads after the cutoff included.
			body = auditRecords.ReplaceAllString(body, `"records": (a count)`)
		}
		out[p] = fmt.Sprintf("%d %s", code, body)
	}
	metrics := e.must(http.StatusOK, "GET", "/metrics", nil)
	var gauges []string
	for l := range strings.Lines(metrics) {
		for _, g := range []string{"flowvault_workflows_running", "flowvault_tasks_scheduled", "flowvault_timers_pending", "flowvault_compaction_backlog_workflows"} {
			if strings.HasPrefix(l, g+" ") {
				gauges = append(gauges, strings.TrimSpace(l))
			}
		}
	}
	out["/metrics (cluster-wide gauges)"] = strings.Join(gauges, "\n")
	return out
}

var emptyQueue = regexp.MustCompile(`(?m)^ +"[^"]+": 0,?\n`)
var auditRecords = regexp.MustCompile(`"records": \d+`)

// equalReads reports every read that differs, and says whether none did.
func equalReads(t *testing.T, when string, want, got map[string]string) bool {
	t.Helper()
	var paths []string
	for p := range want {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	same := true
	for _, p := range paths {
		if got[p] != want[p] {
			same = false
			t.Errorf("%s: GET %s differs:\n%s", when, p, dumpDiff(want[p], got[p]))
		}
	}
	return same
}

// dumpDiff shows the lines of a that b does not have and the converse.
func dumpDiff(a, b string) string {
	count := func(s string) map[string]int {
		m := map[string]int{}
		for l := range strings.Lines(s) {
			m[strings.TrimRight(l, "\n")]++
		}
		return m
	}
	ca, cb := count(a), count(b)
	var buf bytes.Buffer
	for l := range strings.Lines(a) {
		l = strings.TrimRight(l, "\n")
		if cb[l] < ca[l] {
			fmt.Fprintf(&buf, "- %s\n", l)
			ca[l]--
		}
	}
	ca = count(a)
	for l := range strings.Lines(b) {
		l = strings.TrimRight(l, "\n")
		if ca[l] < cb[l] {
			fmt.Fprintf(&buf, "+ %s\n", l)
			cb[l]--
		}
	}
	return buf.String()
}
