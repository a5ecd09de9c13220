package e2e_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/internal/nodetest"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/workers"
)

// application creates an application with roles and returns its
// principal id ("app:<id>") and a token.
func (e *env) application(name string, roles ...string) (principal, token string) {
	e.t.Helper()
	var app struct{ ID string }
	if err := json.Unmarshal([]byte(e.must(http.StatusOK, "POST", "/api/applications", map[string]string{"name": name})), &app); err != nil {
		e.t.Fatal(err)
	}
	for _, r := range roles {
		e.must(http.StatusOK, "POST", "/api/applications/"+app.ID+"/roles/"+r, nil)
	}
	var key struct{ ID, Secret string }
	if err := json.Unmarshal([]byte(e.must(http.StatusOK, "POST", "/api/applications/"+app.ID+"/accessKeys", nil)), &key); err != nil {
		e.t.Fatal(err)
	}
	return "app:" + app.ID, nodetest.MintToken(e.t, e.base, key.ID, key.Secret)
}

// trailEntry is an entry of GET /api/audit.
type trailEntry struct {
	Principal, Action, Target string
	Detail                    map[string]string
}

// resolutionOf is the audit trail's first entry of a resolution of
// secret, or nil.
func (e *env) resolutionOf(secret string) *trailEntry {
	e.t.Helper()
	if all := e.resolutionsOf(secret); len(all) > 0 {
		return &all[0]
	}
	return nil
}

// resolutionsOf are the audit trail's entries of resolutions of secret.
func (e *env) resolutionsOf(secret string) []trailEntry {
	e.t.Helper()
	var trail struct{ Entries []trailEntry }
	if err := json.Unmarshal([]byte(e.must(http.StatusOK, "GET", "/api/audit?limit=1000", nil)), &trail); err != nil {
		e.t.Fatal(err)
	}
	var out []trailEntry
	for _, en := range trail.Entries {
		if en.Action == "secret.resolve" && en.Target == "SECRET_NAME:"+secret {
			out = append(out, en)
		}
	}
	return out
}

// grant gives (revoke takes back) access on a target to a principal.
func (e *env) grant(principal, targetType, targetID string, access ...string) {
	e.t.Helper()
	e.must(http.StatusOK, "POST", "/api/auth/authorization", grantBody(principal, targetType, targetID, access))
}

func (e *env) revoke(principal, targetType, targetID string, access ...string) {
	e.t.Helper()
	e.must(http.StatusOK, "DELETE", "/api/auth/authorization", grantBody(principal, targetType, targetID, access))
}

func grantBody(principal, targetType, targetID string, access []string) map[string]any {
	return map[string]any{"subject": map[string]string{"type": "USER", "id": principal},
		"target": map[string]string{"type": targetType, "id": targetID}, "access": access}
}

// resolutions returns the resolution records of a workflow's log.
func (e *env) resolutions(id string) []schemas.ResolvedRef {
	e.t.Helper()
	return e.resolvedRefs(id, false)
}

// refusals are the references of execution id that were refused at
// hand-off, as the log records them for the audit trail.
func (e *env) refusals(id string) []schemas.ResolvedRef {
	e.t.Helper()
	return e.resolvedRefs(id, true)
}

func (e *env) resolvedRefs(id string, refused bool) []schemas.ResolvedRef {
	e.t.Helper()
	var out []schemas.ResolvedRef
	for _, ev := range e.events(id) {
		if ts, ok := ev.(*schemas.TaskStarted); ok {
			for _, ref := range ts.Resolved {
				if (ref.Refused != "") == refused {
					out = append(out, ref)
				}
			}
		}
	}
	return out
}

// A secret reference resolves as the principal that started the
// workflow: without READ the task fails for good, naming the secret and
// the principal; a grant on a tag the secret carries lets it through, and
// the log records who resolved what, which version, and how access was
// granted. The value never reaches the log.
func TestResolutionRunsAsTheStarter(t *testing.T) {
	t.Parallel()
	e := newSecureEnv(t)
	e.putSecret("db_password", "db-value-5e1f9c")
	e.must(http.StatusOK, "PUT", "/api/secrets/db_password/tags", `[{"key":"env","value":"prod"}]`)
	e.register(`{"name":"uses_db","tasks":[{"name":"needs_db","taskReferenceName":"t","inputParameters":{"pw":"${workflow.secrets.db_password}"}}]}`)
	runner, runnerToken := e.application("runner")
	e.grant(runner, "WORKFLOW_DEF", "uses_db", "EXECUTE")
	var got atomic.Value
	e.work("needs_db", 1, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		got.Store(task.InputData["pw"])
		return workers.Output{Data: map[string]any{"ok": true}}, nil
	})
	asRunner := e.as(runnerToken)

	denied := asRunner.waitStatus(asRunner.start("uses_db", nil), conductor.WorkflowFailed)
	reason := denied.Tasks[0].ReasonForIncompletion
	if !strings.Contains(reason, "db_password") || !strings.Contains(reason, runner) || denied.Tasks[0].Status != conductor.TaskFailedWithTerminalError {
		t.Fatalf("denied resolution: task %s %q", denied.Tasks[0].Status, reason)
	}
	if got.Load() != nil {
		t.Fatalf("a worker received %v without the starter holding READ", got.Load())
	}

	e.grant(runner, "TAG", "env:prod", "READ")
	id := asRunner.start("uses_db", nil)
	asRunner.waitStatus(id, conductor.WorkflowCompleted)
	if got.Load() != "db-value-5e1f9c" {
		t.Fatalf("worker got %v", got.Load())
	}
	refs := e.resolutions(id)
	if len(refs) != 1 || refs[0].Name != "db_password" || refs[0].Version != 1 || refs[0].Principal != runner ||
		refs[0].GrantedBy != "tag env:prod granted to USER:"+runner {
		t.Fatalf("resolution record %+v", refs)
	}
	if strings.Contains(e.rawLog(id), "db-value-5e1f9c") {
		t.Fatal("the value reached the log")
	}
}

// A grant revoked while a workflow runs counts from its next resolution:
// the first task got the value, the second is refused.
func TestRevokedGrantStopsTheNextResolution(t *testing.T) {
	t.Parallel()
	e := newSecureEnv(t)
	e.putSecret("api_key", "api-value-77d0a2")
	e.register(`{"name":"two_steps","tasks":[
	  {"name":"step_one","taskReferenceName":"one","inputParameters":{"k":"${workflow.secrets.api_key}"}},
	  {"name":"step_two","taskReferenceName":"two","inputParameters":{"k":"${workflow.secrets.api_key}"}}]}`)
	runner, runnerToken := e.application("runner")
	e.grant(runner, "WORKFLOW_DEF", "two_steps", "EXECUTE")
	e.grant(runner, "SECRET_NAME", "api_key", "READ")
	echo := func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		return workers.Output{Data: map[string]any{"len": len(fmt.Sprint(task.InputData["k"]))}}, nil
	}
	e.work("step_one", 1, echo)
	asRunner := e.as(runnerToken)
	id := asRunner.start("two_steps", nil)
	testutil.Eventually(t, 30*time.Second, 20*time.Millisecond, func() error {
		wf := asRunner.workflow(id)
		if one := taskByRef(wf, "one"); one == nil || one.Status != conductor.TaskCompleted {
			return fmt.Errorf("step one not completed yet")
		}
		return nil
	})
	e.revoke(runner, "SECRET_NAME", "api_key", "READ")
	e.work("step_two", 1, echo)
	wf := asRunner.waitStatus(id, conductor.WorkflowFailed)
	if two := taskByRef(wf, "two"); !strings.Contains(two.ReasonForIncompletion, "api_key") || !strings.Contains(two.ReasonForIncompletion, runner) {
		t.Fatalf("step two: %s %q", two.Status, two.ReasonForIncompletion)
	}
	if refs := e.resolutions(id); len(refs) != 1 || refs[0].Principal != runner {
		t.Fatalf("resolutions %+v, want step one's only", refs)
	}
	if refs := e.refusals(id); len(refs) != 1 || refs[0].Principal != runner || refs[0].Name != "api_key" ||
		!strings.Contains(refs[0].Refused, "no grant of READ") || refs[0].GrantedBy != "" {
		t.Fatalf("refusals %+v, want step two's", refs)
	}
}

// A schedule runs as its owner; when the owner loses EXECUTE on the
// workflow, the schedule pauses itself with a Security Error instead of
// starting it.
func TestScheduleOwnerLosesExecute(t *testing.T) {
	t.Parallel()
	e := newSecureEnv(t)
	e.register(`{"name":"ticked","tasks":[{"name":"h","taskReferenceName":"h","type":"WAIT"}]}`)
	owner, ownerToken := e.application("owner", "USER")
	e.grant(owner, "WORKFLOW_DEF", "ticked", "EXECUTE")
	asOwner := e.as(ownerToken)
	asOwner.must(http.StatusNoContent, "POST", "/api/scheduler/schedules",
		`{"name":"owned_tick","cronExpression":"* * * * * ?","startWorkflowRequest":{"name":"ticked"}}`)
	var started string
	testutil.Eventually(t, 15*time.Second, 100*time.Millisecond, func() error {
		for _, ex := range e.scheduleExecutions().Results {
			if ex.State == "EXECUTED" && ex.WorkflowID != "" {
				started = ex.WorkflowID
				return nil
			}
		}
		return fmt.Errorf("no scheduled start yet")
	})
	if wf := e.workflow(started); wf.CreatedBy != owner {
		t.Fatalf("scheduled workflow created by %q, want the owner %q", wf.CreatedBy, owner)
	}
	// Its executions show to the owner, who may read the schedule, and
	// to no other user, not even in the count.
	_, otherToken := e.application("other", "USER")
	if x := asOwner.scheduleExecutions(); x.TotalHits < 1 || x.Results[0].ScheduleName != "owned_tick" {
		t.Fatalf("the owner sees executions %+v", x)
	}
	if x := e.as(otherToken).scheduleExecutions(); x.TotalHits != 0 || len(x.Results) != 0 {
		t.Fatalf("another user sees the owner's schedule executions: %+v", x)
	}
	e.revoke(owner, "WORKFLOW_DEF", "ticked", "EXECUTE")
	testutil.Eventually(t, 15*time.Second, 100*time.Millisecond, func() error {
		var def conductor.WorkflowSchedule
		json.Unmarshal([]byte(e.must(http.StatusOK, "GET", "/api/scheduler/schedules/owned_tick", nil)), &def)
		if !def.Paused || !strings.HasPrefix(def.PausedReason, "Security Error") || !strings.Contains(def.PausedReason, owner) {
			return fmt.Errorf("schedule paused=%v reason %q", def.Paused, def.PausedReason)
		}
		return nil
	})
}

// A workflow starts, as its creator, only the workflows its creator may
// start through the API: a SUB_WORKFLOW (or START_WORKFLOW) naming a
// definition its creator may not execute fails the task, starts nothing,
// and shows nothing of that definition. A START_WORKFLOW waits for its
// start, and fails when there is none (also of an unknown workflow).
func TestChildNeedsExecute(t *testing.T) {
	t.Parallel()
	e := newSecureEnv(t)
	e.register(`{"name":"guarded_child","tasks":[{"name":"gc_task","taskReferenceName":"g"}]}`,
		`{"name":"open_parent","tasks":[{"name":"sub","taskReferenceName":"sub","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"guarded_child"}}]}`,
		`{"name":"open_starter","tasks":[{"name":"sub","taskReferenceName":"sub","type":"START_WORKFLOW","inputParameters":{"startWorkflow":{"name":"guarded_child"}}},
		  {"name":"after_start","taskReferenceName":"after"}]}`,
		`{"name":"starter_of_nothing","tasks":[{"name":"sub","taskReferenceName":"sub","type":"START_WORKFLOW","inputParameters":{"startWorkflow":{"name":"never_registered"}}}]}`)
	runner, token := e.application("runner", "USER")
	for _, def := range []string{"open_parent", "open_starter", "starter_of_nothing"} {
		e.grant(runner, "WORKFLOW_DEF", def, "READ", "EXECUTE")
	}
	as := e.as(token)
	for name, start := range map[string]map[string]any{
		"registered":       {"name": "open_parent"},
		"START_WORKFLOW":   {"name": "open_starter"},
		"unknown workflow": {"name": "starter_of_nothing"},
		"inline": {"name": "own_inline", "workflowDef": map[string]any{"name": "own_inline", "tasks": []any{
			map[string]any{"name": "sub", "taskReferenceName": "sub", "type": "SUB_WORKFLOW", "subWorkflowParam": map[string]any{"name": "guarded_child"}}}}},
	} {
		id := as.must(http.StatusOK, "POST", "/api/workflow", start)
		wf := as.waitStatus(id, conductor.WorkflowFailed)
		sub := taskByRef(wf, "sub")
		if !strings.Contains(sub.ReasonForIncompletion, "could not start") || !strings.Contains(sub.ReasonForIncompletion, "guarded_child") && name != "unknown workflow" {
			t.Errorf("%s: the task failed with %q", name, sub.ReasonForIncompletion)
		}
		if taskByRef(wf, "after") != nil {
			t.Errorf("%s: the task after the failed start ran", name)
		}
		if sub.OutputData["subWorkflowId"] != nil || sub.OutputData["workflowId"] != nil {
			t.Errorf("%s: the output names a child that never started: %v", name, sub.OutputData)
		}
		child := sub.SubWorkflowID
		if sub.TaskType == "START_WORKFLOW" {
			child = engine.DeriveID(wf.WorkflowID, "start", sub.TaskID) // the id it would have had
		}
		if code, _ := e.do("GET", "/api/workflow/"+child, nil); child == "" || code != http.StatusNotFound {
			t.Errorf("%s: the child %q exists (%d)", name, child, code)
		}
	}
}

// Whoever gives a workflow data of their own joins those it runs as, and
// its secrets then resolve only where every one of them may: a principal
// with EXECUTE but without READ on a secret cannot steer it with data of
// their own (new input to a URL of their choosing, a signal's output), and
// a workflow whose creator lacks READ gains nothing from an admin's help.
// A rerun that gives no data, or the creator's own, changes nothing. The
// trail names who joined which workflow.
func TestDataGiverRunsTheWorkflow(t *testing.T) {
	t.Parallel()
	e := newSecureEnv(t)
	e.putSecret("deploy_key", "deploy-value-91c4e7")
	e.register(`{"name":"deploy","tasks":[
	  {"name":"deploy_prep","taskReferenceName":"prep","inputParameters":{"url":"${workflow.input.url}"}},
	  {"name":"deploy_send","taskReferenceName":"send","inputParameters":{"url":"${prep.output.url}","key":"${workflow.secrets.deploy_key}"}}]}`,
		`{"name":"approved_deploy","tasks":[{"name":"approval","taskReferenceName":"approval","type":"WAIT"},
	  {"name":"deploy_send","taskReferenceName":"send","inputParameters":{"url":"${approval.output.url}","key":"${workflow.secrets.deploy_key}"}}]}`,
		// The joined principals reach a child, and an UPDATE_SECRET.
		`{"name":"deploy_child","tasks":[{"name":"deploy_send","taskReferenceName":"send","inputParameters":{"url":"${workflow.input.url}","key":"${workflow.secrets.deploy_key}"}}]}`,
		`{"name":"approved_child","tasks":[{"name":"approval","taskReferenceName":"approval","type":"WAIT"},
	  {"name":"sub","taskReferenceName":"sub","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"deploy_child"},"inputParameters":{"url":"${approval.output.url}"}}]}`,
		`{"name":"approved_rotation","tasks":[{"name":"approval","taskReferenceName":"approval","type":"WAIT"},
	  {"name":"rotate","taskReferenceName":"rotate","type":"UPDATE_SECRET","inputParameters":{"_secrets":{"secretKey":"deploy_key","secretValue":"${approval.output.value}"}}}]}`)
	owner, ownerToken := e.application("owner")
	other, otherToken := e.application("other")
	for _, def := range []string{"deploy", "approved_deploy", "deploy_child", "approved_child", "approved_rotation"} {
		e.grant(owner, "WORKFLOW_DEF", def, "EXECUTE")
		e.grant(other, "WORKFLOW_DEF", def, "EXECUTE")
	}
	e.grant(owner, "SECRET_NAME", "deploy_key", "READ", "UPDATE")
	e.work("deploy_prep", 1, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		return workers.Output{Data: map[string]any{"url": task.InputData["url"]}}, nil
	})
	type send struct{ url, key string }
	var mu sync.Mutex
	var sent []send
	e.work("deploy_send", 1, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		mu.Lock()
		defer mu.Unlock()
		sent = append(sent, send{fmt.Sprint(task.InputData["url"]), fmt.Sprint(task.InputData["key"])})
		return workers.Output{}, nil
	})
	asOwner, asOther := e.as(ownerToken), e.as(otherToken)
	newInput := func(url string) func(*conductor.Workflow) conductor.RerunWorkflowRequest {
		return func(*conductor.Workflow) conductor.RerunWorkflowRequest {
			return conductor.RerunWorkflowRequest{WorkflowInput: map[string]any{"url": url}}
		}
	}
	for _, tc := range []struct {
		name    string
		starter *env
		as      *env
		rerun   func(wf *conductor.Workflow) conductor.RerunWorkflowRequest
		url     string // where the rerun sends the key: "" for where the first run did
		refused string // who the refusal names; "" if the rerun completes
		joined  string // who joins the workflow
	}{
		{name: "new workflow input", starter: asOwner, as: asOther, url: "https://other.example/1", refused: other, joined: other,
			rerun: newInput("https://other.example/1")},
		{name: "new task input", starter: asOwner, as: asOther, url: "https://other.example/2", refused: other, joined: other,
			rerun: func(wf *conductor.Workflow) conductor.RerunWorkflowRequest {
				return conductor.RerunWorkflowRequest{ReRunFromTaskID: taskByRef(wf, "prep").TaskID, TaskInput: map[string]any{"url": "https://other.example/2"}}
			}},
		{name: "no data", starter: asOwner, as: asOther,
			rerun: func(*conductor.Workflow) conductor.RerunWorkflowRequest { return conductor.RerunWorkflowRequest{} }},
		{name: "the owner's own data", starter: asOwner, as: asOwner, url: "https://owner.example/own-data",
			rerun: newInput("https://owner.example/own-data")},
		// The admin may read the key; the workflow's creator may not, and
		// still may not once the admin gave it data.
		{name: "an admin's help", starter: asOther, as: e, url: "https://other.example/3", refused: other, joined: "admin",
			rerun: newInput("https://other.example/3")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			first := "https://owner.example/first/" + strings.ReplaceAll(tc.name, " ", "-")
			id := tc.starter.start("deploy", map[string]any{"url": first})
			if tc.starter == asOther {
				// Its first run is refused: the creator lacks READ.
				e.waitStatus(id, conductor.WorkflowFailed)
			} else {
				e.waitStatus(id, conductor.WorkflowCompleted)
			}
			tc.as.must(http.StatusOK, "POST", "/api/workflow/"+id+"/rerun", tc.rerun(e.workflow(id)))
			if tc.refused == "" {
				e.waitStatus(id, conductor.WorkflowCompleted)
			} else {
				wf := e.waitStatus(id, conductor.WorkflowFailed)
				reason := taskByRef(wf, "send").ReasonForIncompletion
				if !strings.Contains(reason, "deploy_key") || !strings.Contains(reason, tc.refused) {
					t.Fatalf("send: %q, want a refusal naming %s", reason, tc.refused)
				}
			}
			url, want := tc.url, 1
			if url == "" {
				url, want = first, 2
			}
			if tc.refused != "" {
				want = 0
			}
			mu.Lock()
			var got int
			for _, s := range sent {
				if s.url == url && s.key == "deploy-value-91c4e7" {
					got++
				}
			}
			mu.Unlock()
			if got != want {
				t.Fatalf("%s received the key %d times, want %d", url, got, want)
			}
			var joined []string
			for _, ev := range e.events(id) {
				if ra, ok := ev.(*schemas.WorkflowRunAs); ok {
					joined = append(joined, ra.Principal)
				}
			}
			if tc.joined != "" && (len(joined) != 1 || !strings.Contains(joined[0], tc.joined)) || tc.joined == "" && len(joined) != 0 {
				t.Fatalf("joined %v, want %q", joined, tc.joined)
			}
		})
	}
	// A signal is data too: the operator's output may not steer the key.
	id := asOwner.start("approved_deploy", nil)
	e.waitStatus(id, conductor.WorkflowRunning)
	asOther.must(http.StatusOK, "POST", "/api/tasks/"+id+"/COMPLETED/signal", map[string]any{"url": "https://other.example/signal"})
	wf := e.waitStatus(id, conductor.WorkflowFailed)
	if reason := taskByRef(wf, "send").ReasonForIncompletion; !strings.Contains(reason, other) {
		t.Fatalf("send after another's signal: %q", reason)
	}
	// Its children run as it does; its UPDATE_SECRET writes only where every
	// one of its principals may.
	for def, task := range map[string]string{"approved_child": "send", "approved_rotation": "rotate"} {
		id := asOwner.start(def, nil)
		e.waitStatus(id, conductor.WorkflowRunning)
		asOther.must(http.StatusOK, "POST", "/api/tasks/"+id+"/COMPLETED/signal", map[string]any{"url": "https://other.example/" + def, "value": "other-value"})
		wf := e.waitStatus(id, conductor.WorkflowFailed)
		failed := taskByRef(wf, task)
		if def == "approved_child" {
			failed = taskByRef(e.waitStatus(taskByRef(wf, "sub").SubWorkflowID, conductor.WorkflowFailed), task)
		}
		if !strings.Contains(failed.ReasonForIncompletion, other) {
			t.Fatalf("%s: %s failed with %q, want a refusal naming %s", def, task, failed.ReasonForIncompletion, other)
		}
	}
	if got := e.must(http.StatusOK, "GET", "/api/secrets/deploy_key", nil); got != "deploy-value-91c4e7" {
		t.Fatalf("the secret was rewritten: %q", got)
	}
	// A worker reports on its own queue's tasks, whatever its roles: a WAIT
	// is nobody's queue, and it may not touch the execution.
	_, anyWorker := e.application("any_worker", "UNRESTRICTED_WORKER")
	id = asOwner.start("approved_deploy", nil)
	e.waitStatus(id, conductor.WorkflowRunning)
	e.as(anyWorker).fails(http.StatusNotFound, "POST", "/api/tasks/"+id+"/approval/COMPLETED", map[string]any{"url": "https://worker.example/"})
	approval := taskByRef(e.workflow(id), "approval")
	if approval.Status != conductor.TaskInProgress {
		t.Fatalf("a worker completed the WAIT: %s", approval.Status)
	}
	e.as(anyWorker).fails(http.StatusNotFound, "GET", "/api/tasks/"+approval.TaskID, nil)
	// The trail says who joined which workflow.
	var trail struct {
		Entries []struct{ Principal, Action, Target string }
	}
	if err := json.Unmarshal([]byte(e.must(http.StatusOK, "GET", "/api/audit?principal="+other, nil)), &trail); err != nil {
		t.Fatal(err)
	}
	var joins int
	for _, en := range trail.Entries {
		if en.Action == "workflow.run_as" && en.Principal == other && strings.HasPrefix(en.Target, "WORKFLOW:") {
			joins++
		}
	}
	if joins != 5 {
		t.Fatalf("trail has %d run-as entries by %s, want 5: %+v", joins, other, trail.Entries)
	}
}

// A retry with resumeSubworkflowTasks, or a rerun from a task id, goes
// into children only where the caller may execute them: the answer never
// names, nor acts on, a child the caller may not touch (the retry is
// refused, the rerun finds no such task).
func TestRetryIntoChildNeedsExecute(t *testing.T) {
	t.Parallel()
	e := newSecureEnv(t)
	e.must(http.StatusNoContent, "POST", "/api/metadata/taskdefs", `[{"name":"guarded_work","retryCount":0}]`)
	e.register(`{"name":"guarded_kid","tasks":[{"name":"guarded_work","taskReferenceName":"w"}]}`,
		`{"name":"open_mother","tasks":[{"name":"sub","taskReferenceName":"sub","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"guarded_kid"}}]}`)
	var calls atomic.Int64
	e.work("guarded_work", 1, func(context.Context, *conductor.Task) (workers.Output, error) {
		if calls.Add(1) == 1 {
			return workers.Output{}, errors.New("first try breaks")
		}
		return workers.Output{}, nil
	})
	runner, token := e.application("runner", "USER")
	e.grant(runner, "WORKFLOW_DEF", "open_mother", "READ", "EXECUTE")
	id := e.start("open_mother", nil)
	wf := e.waitStatus(id, conductor.WorkflowFailed)
	kid := taskByRef(wf, "sub").SubWorkflowID
	kidTask := taskByRef(e.waitStatus(kid, conductor.WorkflowFailed), "w").TaskID
	as := e.as(token)
	if code, body := as.do("POST", "/api/workflow/"+id+"/rerun", map[string]any{"reRunFromTaskId": kidTask}); code != http.StatusNotFound || strings.Contains(body, kid) {
		t.Fatalf("rerun from the child's task: %d %s", code, body)
	}
	// Retrying into it is refused, not turned into a new child behind the
	// caller's back; a plain retry starts one.
	if code, body := as.do("POST", "/api/workflow/"+id+"/retry?resumeSubworkflowTasks=true", nil); code != http.StatusForbidden || strings.Contains(body, kid) {
		t.Fatalf("retry into the child: %d %s", code, body)
	}
	as.must(http.StatusNoContent, "POST", "/api/workflow/"+id+"/retry", nil)
	wf = e.waitStatus(id, conductor.WorkflowCompleted)
	if got := taskByRef(wf, "sub").SubWorkflowID; got == kid {
		t.Fatalf("the retry went into the child %s", kid)
	}
	e.waitStatus(kid, conductor.WorkflowFailed)
}

// A restart on the latest definition, when it is not the one the workflow
// ran, runs as the restarter too: a new definition is data the restarter
// chose, and may not steer the creator's secrets. A restart on the same
// definition changes nothing.
func TestRestartOnNewDefinitionRunsAsRestarter(t *testing.T) {
	t.Parallel()
	e := newSecureEnv(t)
	e.putSecret("restart_key", "restart-value-5d1e09")
	e.register(`{"name":"rflow","version":1,"tasks":[{"name":"rsend","taskReferenceName":"send","inputParameters":{"note":"harmless"}}]}`)
	owner, ownerToken := e.application("owner")
	other, otherToken := e.application("other")
	e.grant(owner, "WORKFLOW_DEF", "rflow", "EXECUTE")
	e.grant(other, "WORKFLOW_DEF", "rflow", "EXECUTE")
	e.grant(owner, "SECRET_NAME", "restart_key", "READ")
	var mu sync.Mutex
	var keys []string
	e.work("rsend", 1, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		mu.Lock()
		defer mu.Unlock()
		keys = append(keys, fmt.Sprint(task.InputData["key"]))
		return workers.Output{}, nil
	})
	asOwner, asOther := e.as(ownerToken), e.as(otherToken)
	old := asOwner.start("rflow", nil)
	e.waitStatus(old, conductor.WorkflowCompleted)
	e.register(`{"name":"rflow","version":2,"tasks":[{"name":"rsend","taskReferenceName":"send","inputParameters":{"key":"${workflow.secrets.restart_key}"}}]}`)

	asOther.must(http.StatusNoContent, "POST", "/api/workflow/"+old+"/restart?useLatestDefinitions=true", nil)
	wf := e.waitStatus(old, conductor.WorkflowFailed)
	if reason := taskByRef(wf, "send").ReasonForIncompletion; !strings.Contains(reason, "restart_key") || !strings.Contains(reason, other) {
		t.Fatalf("send after another's restart on a new definition: %q, want a refusal naming %s", reason, other)
	}
	// On the definition it ran, a restart by another runs as before.
	current := asOwner.start("rflow", nil)
	e.waitStatus(current, conductor.WorkflowCompleted)
	asOther.must(http.StatusNoContent, "POST", "/api/workflow/"+current+"/restart?useLatestDefinitions=true", nil)
	e.waitStatus(current, conductor.WorkflowCompleted)
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"<nil>", "restart-value-5d1e09", "restart-value-5d1e09"}; !slices.Equal(keys, want) {
		t.Fatalf("the worker got %q, want %q", keys, want)
	}
}

// A restart onto the latest definition, or an upgrade, runs a definition
// as a start by name does, and is decided so: the caller and every
// principal the workflow runs as need EXECUTE on the definition it will
// run, read with its owner and tags. Alice's moved_flow was deleted and
// registered again by mallory, whose definition alice may not start:
// neither alice, whose workflows they are (and who may operate them),
// nor the admin, who may start it, moves alice's workflows onto it. A
// name alice still owns, whose version 2 is hers, is restarted and
// upgraded onto. Each refusal is in the workflow's trail, the admin's
// saying it was alice's right that lacked.
func TestRestartAndUpgradeDecideOnTheDefinitionTheyRun(t *testing.T) {
	t.Parallel()
	e := newSecureEnv(t)
	alice, aliceToken := e.application("alice", "USER", "METADATA_API")
	_, malloryToken := e.application("mallory", "METADATA_MANAGER")
	asAlice, asMallory := e.as(aliceToken), e.as(malloryToken)
	waits := func(name string, version int, refs ...string) string {
		var tasks []string
		for _, ref := range refs {
			tasks = append(tasks, `{"name":"`+ref+`","taskReferenceName":"`+ref+`","type":"WAIT"}`)
		}
		return fmt.Sprintf(`{"name":%q,"version":%d,"tasks":[%s]}`, name, version, strings.Join(tasks, ","))
	}
	asAlice.register(waits("moved_flow", 1, "w"), waits("kept_flow", 1, "w"))
	rows := []struct {
		op, name string
		by       *env
		status   int
		id       string // alice's workflow: ended to restart, running to upgrade
	}{
		{"restart", "moved_flow", asAlice, http.StatusForbidden, ""},
		{"restart", "moved_flow", e, http.StatusForbidden, ""},
		{"upgrade", "moved_flow", asAlice, http.StatusForbidden, ""},
		{"upgrade", "moved_flow", e, http.StatusForbidden, ""},
		{"restart", "kept_flow", asAlice, http.StatusNoContent, ""},
		{"upgrade", "kept_flow", asAlice, http.StatusOK, ""},
	}
	for i, tt := range rows {
		rows[i].id = asAlice.start(tt.name, nil)
		e.waitStatus(rows[i].id, conductor.WorkflowRunning)
		if tt.op == "restart" {
			asAlice.must(http.StatusNoContent, "DELETE", "/api/workflow/"+rows[i].id+"?reason=done", nil)
			e.waitStatus(rows[i].id, conductor.WorkflowTerminated)
		}
	}
	asAlice.must(http.StatusNoContent, "DELETE", "/api/metadata/workflow/moved_flow/1", nil)
	asMallory.register(waits("moved_flow", 1, "w", "mallorys_next"))
	asAlice.register(waits("kept_flow", 2, "w", "alices_next"))

	for _, tt := range rows {
		path, body := "/api/workflow/"+tt.id+"/restart?useLatestDefinitions=true", any(nil)
		if tt.op == "upgrade" {
			path, body = "/api/workflow/"+tt.id+"/upgrade", map[string]any{"name": tt.name}
		}
		if code, out := tt.by.do("POST", path, body); code != tt.status {
			t.Errorf("%s of %s onto the latest %s: %d %s, want %d", tt.op, tt.id, tt.name, code, out, tt.status)
			continue
		}
		// Refused, it runs alice's version 1 (one task); else her version 2.
		wf := e.workflow(tt.id)
		var def struct{ Tasks []json.RawMessage }
		if err := json.Unmarshal(wf.WorkflowDefinition, &def); err != nil {
			t.Fatal(err)
		}
		if want := map[bool]int{true: 1, false: 2}[tt.status == http.StatusForbidden]; wf.WorkflowVersion != want || len(def.Tasks) != want {
			t.Errorf("%s of %s onto the latest %s: it runs version %d of %d tasks, want %d", tt.op, tt.id, tt.name,
				wf.WorkflowVersion, len(def.Tasks), want)
		}
	}
	// Refusals are recorded in the background.
	for _, tt := range rows {
		if tt.status != http.StatusForbidden {
			continue
		}
		testutil.Eventually(t, 10*time.Second, 50*time.Millisecond, func() error {
			denied := e.trail("workflow="+tt.id, "access.deny")
			if len(denied) != 1 || denied[0].Target != "WORKFLOW_DEF:moved_flow" || denied[0].Detail["access"] != "EXECUTE" ||
				tt.by == e && !strings.Contains(denied[0].Detail["reason"], "runs as "+alice) {
				return fmt.Errorf("%s of %s: the workflow's refusals %+v, want one of EXECUTE on moved_flow (alice's, for the admin)", tt.op, tt.id, denied)
			}
			return nil
		})
	}
}

// Answers that are a whole workflow need READ on it: a worker may report
// on its task (the asynchronous forms) without reading the workflow's
// input, variables and other tasks through the synchronous ones.
func TestSyncAnswersNeedRead(t *testing.T) {
	t.Parallel()
	e := newSecureEnv(t)
	e.register(`{"name":"ra_private","tasks":[{"name":"ra_worker_task","taskReferenceName":"wt"}]}`)
	id := e.start("ra_private", map[string]any{"ssn": "123-45-6789-private"})
	wp, wtok := e.application("ra_worker", "WORKER")
	e.grant(wp, "TASK_DEF", "ra_worker_task", "EXECUTE")
	w := e.as(wtok)
	for _, tc := range []struct{ path string }{
		{"/api/tasks/" + id + "/wt/IN_PROGRESS/sync"},
		{"/api/workflow/" + id + "/state?requestId=r1&waitForSeconds=0"},
	} {
		body := any(map[string]any{"x": 1})
		if strings.Contains(tc.path, "/state") {
			body = map[string]any{"taskReferenceName": "wt", "taskResult": map[string]any{"status": "IN_PROGRESS"}}
		}
		status, out := w.do("POST", tc.path, body)
		if status != http.StatusNotFound || strings.Contains(out, "private") {
			t.Errorf("POST %s: %d %s; want 404", tc.path, status, out)
		}
	}
	// The asynchronous report still works.
	w.must(http.StatusOK, "POST", "/api/tasks/"+id+"/wt/IN_PROGRESS", map[string]any{"x": 1})
}

// Starting needs more than CREATE when the start reaches beyond the
// caller's own definition: an inline definition named like a registered
// one needs UPDATE on it (it would run under its name and share its
// idempotency keys), one naming a failureWorkflow needs EXECUTE on that
// (it starts unasked when a run fails), as does registering such a
// definition.
func TestStartsReachingOthers(t *testing.T) {
	t.Parallel()
	e := newSecureEnv(t)
	e.register(`{"name":"sr_victim","tasks":[{"name":"s","taskReferenceName":"v","type":"SET_VARIABLE","inputParameters":{"n":"${workflow.input.card}"}}],"outputParameters":{"card":"${workflow.input.card}"}}`,
		`{"name":"sr_guarded","tasks":[{"name":"n","taskReferenceName":"n","type":"SET_VARIABLE","inputParameters":{"a":1}}]}`)
	e.must(http.StatusOK, "POST", "/api/workflow", map[string]any{"name": "sr_victim", "input": map[string]any{"card": "4111-victim-card"}, "idempotencyKey": "order-42"})
	_, atok := e.application("sr_attacker", "USER")
	a := e.as(atok)
	task := []any{map[string]any{"name": "x", "taskReferenceName": "x", "type": "SET_VARIABLE", "inputParameters": map[string]any{"a": 1}}}
	for _, tc := range []struct {
		name, method, path string
		body               any
		status             int
	}{
		{"inline named like a registered definition", "POST", "/api/workflow/execute/sr_victim/1?waitForSeconds=1",
			map[string]any{"name": "sr_victim", "workflowDef": map[string]any{"name": "sr_victim", "tasks": task}, "idempotencyKey": "order-42", "idempotencyStrategy": "RETURN_EXISTING"}, http.StatusForbidden},
		{"inline naming a failure workflow", "POST", "/api/workflow",
			map[string]any{"name": "sr_inline", "workflowDef": map[string]any{"name": "sr_inline", "failureWorkflow": "sr_guarded", "tasks": task}}, http.StatusForbidden},
		{"registered naming a failure workflow", "POST", "/api/metadata/workflow",
			map[string]any{"name": "sr_own", "failureWorkflow": "sr_guarded", "tasks": task}, http.StatusForbidden},
	} {
		if status, out := a.do(tc.method, tc.path, tc.body); status != tc.status || strings.Contains(out, "4111") {
			t.Errorf("%s: %d %s; want %d", tc.name, status, out, tc.status)
		}
	}
}

// A workflow of a registered definition runs as the definition's author
// (who saved it last) too: whoever may edit a definition, but not read a
// secret, cannot make it send the secret of everyone who starts it to a
// worker of theirs. Saved again by someone who may read the secret, it
// runs for its starter as before.
func TestDefinitionRunsAsItsAuthor(t *testing.T) {
	t.Parallel()
	e := newSecureEnv(t)
	e.putSecret("vault_key", "vault-value-6b2d18")
	editor, editorToken := e.application("editor", "METADATA_API")
	starter, starterToken := e.application("starter")
	e.grant(starter, "SECRET_NAME", "vault_key", "READ")
	const def = `{"name":"payout","tasks":[{"name":"exfil","taskReferenceName":"exfil","inputParameters":{"k":"${workflow.secrets.vault_key}"}}]}`
	e.as(editorToken).must(http.StatusNoContent, "POST", "/api/metadata/workflow", def)
	e.grant(starter, "WORKFLOW_DEF", "payout", "EXECUTE")
	var got atomic.Value
	e.work("exfil", 1, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		got.Store(task.InputData["k"])
		return workers.Output{}, nil
	})
	asStarter := e.as(starterToken)

	wf := asStarter.waitStatus(asStarter.start("payout", nil), conductor.WorkflowFailed)
	if reason := taskByRef(wf, "exfil").ReasonForIncompletion; !strings.Contains(reason, "vault_key") || !strings.Contains(reason, editor) {
		t.Fatalf("the editor's definition, started by %s: %q, want a refusal naming the editor %s", starter, reason, editor)
	}
	if got.Load() != nil {
		t.Fatalf("a worker received %v through a definition its author may not read the secret of", got.Load())
	}

	e.must(http.StatusNoContent, "POST", "/api/metadata/workflow?overwrite=true", def) // saved again by the admin
	asStarter.waitStatus(asStarter.start("payout", nil), conductor.WorkflowCompleted)
	if got.Load() != "vault-value-6b2d18" {
		t.Fatalf("the worker got %v", got.Load())
	}
}

// The audit trail names who received a secret resolved into a task: the
// principal whose authenticated poll took it, beside the worker id the
// worker gave itself.
func TestTrailNamesWhoTookTheSecret(t *testing.T) {
	t.Parallel()
	e := newSecureEnv(t)
	e.putSecret("taken_key", "taken-value-4c81f2")
	e.register(`{"name":"tk_flow","tasks":[{"name":"tk_task","taskReferenceName":"t","inputParameters":{"k":"${workflow.secrets.taken_key}"}}]}`)
	wp, wtok := e.application("tk_worker", "WORKER")
	e.grant(wp, "TASK_DEF", "tk_task", "EXECUTE")
	id := e.start("tk_flow", nil)
	var task conductor.Task
	testutil.Eventually(t, 10*time.Second, 20*time.Millisecond, func() error {
		status, body := e.as(wtok).do("GET", "/api/tasks/poll/tk_task?workerid=host-7", nil)
		if status != http.StatusOK {
			return fmt.Errorf("poll: %d", status)
		}
		return json.Unmarshal([]byte(body), &task)
	})
	if task.InputData["k"] != "taken-value-4c81f2" || task.WorkflowInstanceID != id {
		t.Fatalf("polled %s of %s", task.TaskID, task.WorkflowInstanceID)
	}
	en := e.resolutionOf("taken_key")
	if en == nil || en.Detail["taken_by"] != wp || en.Detail["worker"] != "host-7" || en.Detail["task"] != task.TaskID {
		t.Fatalf("the resolution's entry: %+v, want it taken by %s as worker host-7", en, wp)
	}
}

// trail returns the audit trail's entries for query with action.
func (e *env) trail(query, action string) []trailEntry {
	e.t.Helper()
	var trail struct{ Entries []trailEntry }
	if err := json.Unmarshal([]byte(e.must(http.StatusOK, "GET", "/api/audit?"+query, nil)), &trail); err != nil {
		e.t.Fatal(err)
	}
	var out []trailEntry
	for _, en := range trail.Entries {
		if en.Action == action {
			out = append(out, en)
		}
	}
	return out
}

// The trail tells an UPDATE_SECRET's write from a write through the API
// by the same principal: its secret.put names the workflow and task. A
// refused UPDATE_SECRET is an access.deny naming the principal, the
// secret, the workflow and the task, as a resolution refused is recorded.
// The workflow's trail lists both; no entry holds a value.
func TestUpdateSecretTrailNamesTheWorkflow(t *testing.T) {
	t.Parallel()
	e := newSecureEnv(t)
	e.putSecret("rotated_key", "first-value-a17c")
	e.putSecret("guarded_key", "guarded-value-b28d")
	e.register(`{"name":"rotate_trail","tasks":[{"name":"set","taskReferenceName":"set","type":"UPDATE_SECRET",
	   "inputParameters":{"_secrets":{"secretKey":"${workflow.input.name}","secretValue":"${workflow.input.value}"}}}]}`)
	rotator, token := e.application("rotator")
	e.grant(rotator, "WORKFLOW_DEF", "rotate_trail", "EXECUTE")
	e.grant(rotator, "SECRET_NAME", "rotated_key", "UPDATE")
	asRotator := e.as(token)
	asRotator.putSecret("rotated_key", "api-value-c39e")

	id := asRotator.start("rotate_trail", map[string]any{"name": "rotated_key", "value": "task-value-d40f"})
	set := taskByRef(e.waitStatus(id, conductor.WorkflowCompleted), "set")
	puts := e.trail("secret=rotated_key", "secret.put")
	if len(puts) != 3 {
		t.Fatalf("%d secret.put entries, want 3: %+v", len(puts), puts)
	}
	if api := puts[1]; api.Principal != rotator || api.Detail["workflow"] != "" || api.Detail["task"] != "" {
		t.Fatalf("the API's write: %+v", api)
	}
	if task := puts[2]; task.Principal != rotator || task.Detail["workflow"] != id || task.Detail["task"] != set.TaskID {
		t.Fatalf("the task's write: %+v, want %s's with workflow %s task %s", task, rotator, id, set.TaskID)
	}

	id = asRotator.start("rotate_trail", map[string]any{"name": "guarded_key", "value": "stolen-value-e51a"})
	set = taskByRef(e.waitStatus(id, conductor.WorkflowFailed), "set")
	if !strings.Contains(set.ReasonForIncompletion, "403") {
		t.Fatalf("set: %q, want a refusal", set.ReasonForIncompletion)
	}
	// Refusals are recorded in the background.
	testutil.Eventually(t, 10*time.Second, 50*time.Millisecond, func() error {
		denied := e.trail("secret=guarded_key", "access.deny")
		if len(denied) != 1 {
			return fmt.Errorf("%d access.deny entries: %+v", len(denied), denied)
		}
		d := denied[0]
		if d.Principal != rotator || d.Target != "SECRET_NAME:guarded_key" || d.Detail["access"] != "UPDATE" ||
			d.Detail["workflow"] != id || d.Detail["task"] != set.TaskID {
			t.Fatalf("the refusal: %+v, want %s refused UPDATE in workflow %s task %s", d, rotator, id, set.TaskID)
		}
		return nil
	})
	if denied := e.trail("workflow="+id, "access.deny"); len(denied) != 1 {
		t.Fatalf("the workflow's trail has %d refusals: %+v", len(denied), denied)
	}
	if body := e.must(http.StatusOK, "GET", "/api/audit?limit=1000", nil); strings.Contains(body, "-value-") {
		t.Fatalf("a value in the trail: %s", body)
	}
	if got := e.must(http.StatusOK, "GET", "/api/secrets/guarded_key", nil); got != "guarded-value-b28d" {
		t.Fatalf("the refused write landed: %q", got)
	}
}

// A refused access to an execution is in that workflow's trail: a read
// answered 404 (the workflow, one of its tasks) and an operation answered
// 403 to a caller who may read it are access.deny entries naming the
// definition whose grant was missing, the workflow and, for a task, the
// task, so that GET /api/audit?workflow=<id> answers who was refused it.
func TestRefusedAccessToAnExecutionIsInItsTrail(t *testing.T) {
	t.Parallel()
	e := newSecureEnv(t)
	e.register(`{"name":"private_flow","tasks":[{"name":"private_task","taskReferenceName":"held","type":"SIMPLE"}]}`)
	id := e.start("private_flow", nil)
	held := taskByRef(e.waitStatus(id, conductor.WorkflowRunning), "held")
	outsider, outsiderToken := e.application("outsider")
	reader, readerToken := e.application("reader")
	e.grant(reader, "WORKFLOW_DEF", "private_flow", "READ")

	asOutsider, asReader := e.as(outsiderToken), e.as(readerToken)
	asOutsider.must(http.StatusNotFound, "GET", "/api/workflow/"+id, nil)
	asOutsider.must(http.StatusNotFound, "GET", "/api/tasks/"+held.TaskID, nil)
	asReader.must(http.StatusForbidden, "PUT", "/api/workflow/"+id+"/pause", nil)

	type refusal struct{ principal, access, task string }
	want := []refusal{{outsider, "READ", ""}, {outsider, "READ", held.TaskID}, {reader, "EXECUTE", ""}}
	// Refusals are recorded in the background.
	testutil.Eventually(t, 10*time.Second, 50*time.Millisecond, func() error {
		denied := e.trail("workflow="+id, "access.deny")
		var got []refusal
		for _, d := range denied {
			if d.Target != "WORKFLOW_DEF:private_flow" || d.Detail["workflow"] != id {
				return fmt.Errorf("a refusal in %s's trail: %+v", id, d)
			}
			got = append(got, refusal{d.Principal, d.Detail["access"], d.Detail["task"]})
		}
		if !slices.Equal(got, want) {
			return fmt.Errorf("the workflow's refusals: %+v, want %+v", got, want)
		}
		return nil
	})
	if denied := e.trail("workflow=no-such-workflow", "access.deny"); len(denied) != 0 {
		t.Fatalf("another workflow's trail lists %+v", denied)
	}
}

// A bulk operation's refusals are in the trail as those of one
// workflow's operations are: a caller that may read a workflow but not
// operate on it, answered in bulkErrorResults, is an access.deny naming
// the workflow and the access it lacked, for each bulk operation.
func TestBulkRefusalsAreInTheTrail(t *testing.T) {
	t.Parallel()
	e := newSecureEnv(t)
	e.register(`{"name":"bulk_flow","tasks":[{"name":"bulk_task","taskReferenceName":"held","type":"SIMPLE"}]}`)
	id := e.start("bulk_flow", nil)
	e.waitStatus(id, conductor.WorkflowRunning)
	reader, readerToken := e.application("reader")
	e.grant(reader, "WORKFLOW_DEF", "bulk_flow", "READ")
	asReader := e.as(readerToken)

	type refusal struct{ path, access string }
	var want []refusal
	for _, op := range []struct{ method, path, access string }{
		{"PUT", "/api/workflow/bulk/pause", "EXECUTE"},
		{"PUT", "/api/workflow/bulk/resume", "EXECUTE"},
		{"POST", "/api/workflow/bulk/terminate", "EXECUTE"},
		{"POST", "/api/workflow/bulk/restart", "EXECUTE"},
		{"POST", "/api/workflow/bulk/restart?useLatestDefinitions=true", "EXECUTE"},
		{"POST", "/api/workflow/bulk/retry", "EXECUTE"},
		{"POST", "/api/workflow/bulk/delete", "DELETE"},
	} {
		var res conductor.BulkResponse
		if err := json.Unmarshal([]byte(asReader.must(http.StatusOK, op.method, op.path, []string{id})), &res); err != nil {
			t.Fatal(err)
		}
		if _, refused := res.BulkErrorResults[id]; !refused || len(res.BulkSuccessfulResults) != 0 {
			t.Fatalf("%s %s: %+v, want %s refused", op.method, op.path, res, id)
		}
		path, _, _ := strings.Cut(op.path, "?")
		want = append(want, refusal{path, op.access})
	}
	// Refusals are recorded in the background.
	testutil.Eventually(t, 10*time.Second, 50*time.Millisecond, func() error {
		var got []refusal
		for _, d := range e.trail("workflow="+id, "access.deny") {
			if d.Principal != reader || d.Target != "WORKFLOW_DEF:bulk_flow" || d.Detail["workflow"] != id {
				return fmt.Errorf("a refusal in %s's trail: %+v", id, d)
			}
			got = append(got, refusal{d.Detail["path"], d.Detail["access"]})
		}
		if !slices.Equal(got, want) {
			return fmt.Errorf("the workflow's refusals: %+v, want %+v", got, want)
		}
		return nil
	})
	e.waitStatus(id, conductor.WorkflowRunning)
}

// A retry or rerun refused on a sub-workflow the caller may not execute is
// in that sub-workflow's trail: access.deny on its definition, naming it
// and, for a rerun from one of its own tasks, the task. A rerun from a
// task below it is refused on it too (it would rerun it); one from a task
// found nowhere refused nothing and leaves no record.
func TestChildRefusalsAreInTheChildsTrail(t *testing.T) {
	t.Parallel()
	e := newSecureEnv(t)
	e.must(http.StatusNoContent, "POST", "/api/metadata/taskdefs", `[{"name":"leaf_work","retryCount":0}]`)
	e.register(`{"name":"open_leaf","tasks":[{"name":"leaf_work","taskReferenceName":"w"}]}`,
		`{"name":"guarded_mid","tasks":[{"name":"sub","taskReferenceName":"sub","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"open_leaf"}}]}`,
		`{"name":"open_top","tasks":[{"name":"sub","taskReferenceName":"sub","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"guarded_mid"}}]}`)
	e.work("leaf_work", 1, func(context.Context, *conductor.Task) (workers.Output, error) {
		return workers.Output{}, errors.New("always breaks")
	})
	runner, token := e.application("runner", "USER")
	for _, def := range []string{"open_top", "open_leaf"} {
		e.grant(runner, "WORKFLOW_DEF", def, "READ", "EXECUTE")
	}
	top := e.start("open_top", nil)
	mid := taskByRef(e.waitStatus(top, conductor.WorkflowFailed), "sub").SubWorkflowID
	midSub := taskByRef(e.waitStatus(mid, conductor.WorkflowFailed), "sub")
	leafTask := taskByRef(e.waitStatus(midSub.SubWorkflowID, conductor.WorkflowFailed), "w").TaskID

	as := e.as(token)
	type refusal struct{ path, task string }
	var want []refusal
	for _, rq := range []struct {
		path   string
		body   any
		status int
		want   *refusal
	}{
		{"/api/workflow/" + top + "/rerun", map[string]any{"reRunFromTaskId": midSub.TaskID}, http.StatusNotFound, &refusal{"/api/workflow/" + top + "/rerun", midSub.TaskID}},
		{"/api/workflow/" + top + "/rerun", map[string]any{"reRunFromTaskId": leafTask}, http.StatusNotFound, &refusal{"/api/workflow/" + top + "/rerun", ""}},
		{"/api/workflow/" + top + "/rerun", map[string]any{"reRunFromTaskId": "no-such-task"}, http.StatusNotFound, nil},
		{"/api/workflow/" + top + "/retry?resumeSubworkflowTasks=true", nil, http.StatusForbidden, &refusal{"/api/workflow/" + top + "/retry", ""}},
	} {
		if code, body := as.do("POST", rq.path, rq.body); code != rq.status || strings.Contains(body, mid) {
			t.Fatalf("POST %s %v: %d %s, want %d", rq.path, rq.body, code, body, rq.status)
		}
		if rq.want != nil {
			want = append(want, *rq.want)
		}
	}
	// Refusals are recorded in the background.
	testutil.Eventually(t, 10*time.Second, 50*time.Millisecond, func() error {
		var got []refusal
		for _, d := range e.trail("workflow="+mid, "access.deny") {
			if d.Principal != runner || d.Target != "WORKFLOW_DEF:guarded_mid" || d.Detail["access"] != "EXECUTE" || d.Detail["workflow"] != mid {
				return fmt.Errorf("a refusal in %s's trail: %+v", mid, d)
			}
			got = append(got, refusal{d.Detail["path"], d.Detail["task"]})
		}
		if !slices.Equal(got, want) {
			return fmt.Errorf("the sub-workflow's refusals: %+v, want %+v", got, want)
		}
		return nil
	})
	for _, id := range []string{top, midSub.SubWorkflowID} {
		if denied := e.trail("workflow="+id, "access.deny"); len(denied) != 0 {
			t.Fatalf("%s's trail lists %+v", id, denied)
		}
	}
}
