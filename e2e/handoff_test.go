package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/masking"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/workers"
)

// Every hand-off point resolves secret references, and none stores the
// value: INLINE and JSON_JQ_TRANSFORM see it and their outputs are
// redacted, SET_VARIABLE seals it under _secrets and wherever else it
// copies it (a later task gets it, every view shows "***"), and a SUB_WORKFLOW's child and a START_WORKFLOW's
// workflow get it sealed in their input.
func TestHandOffPoints(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const value = "handoff-secret-XYZ123"
	e.putSecret("hs", value)
	e.register(`{"name":"child_uses","tasks":[{"name":"child_worker","taskReferenceName":"cw","inputParameters":{"got":"${workflow.input.token}"}}],
	  "outputParameters":{"saw":"${cw.output.saw}"}}`,
		`{"name":"handoffs","tasks":[
	  {"name":"inline","taskReferenceName":"inline","type":"INLINE","inputParameters":{"evaluatorType":"graaljs",
	    "s":"${workflow.secrets.hs}","expression":"(function(){ return {len: $.s.length, echo: $.s}; })();"}},
	  {"name":"jq","taskReferenceName":"jq","type":"JSON_JQ_TRANSFORM","inputParameters":{"s":"${workflow.secrets.hs}","queryExpression":"{n: (.s | length), same: .s}"}},
	  {"name":"setv","taskReferenceName":"setv","type":"SET_VARIABLE","inputParameters":{"_secrets":{"tok":"${workflow.secrets.hs}"},"plain":"${workflow.secrets.hs}"}},
	  {"name":"use_var","taskReferenceName":"use_var","inputParameters":{"tok":"${workflow.variables._secrets.tok}","plain":"${workflow.variables.plain}"}},
	  {"name":"child","taskReferenceName":"child","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"child_uses"},"inputParameters":{"token":"${workflow.secrets.hs}"}},
	  {"name":"started","taskReferenceName":"started","type":"START_WORKFLOW","inputParameters":{"startWorkflow":{"name":"child_uses","input":{"token":"Bearer ${workflow.secrets.hs}"}}}}]}`)
	varIn := make(chan map[string]any, 1)
	e.work("use_var", 1, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		varIn <- task.InputData
		return workers.Output{}, nil
	})
	e.work("child_worker", 1, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		got := task.InputData["got"]
		return workers.Output{Data: map[string]any{"saw": got == value || got == "Bearer "+value}}, nil
	})
	id := e.start("handoffs", nil)
	in := <-varIn
	// The plain variable holds a copy of the value the same SET_VARIABLE
	// sealed under _secrets: the copy is sealed too, and its taker gets it.
	if in["tok"] != value || in["plain"] != value {
		t.Fatalf("task after SET_VARIABLE got %v: want the value for both", in)
	}
	wf := e.waitStatus(id, conductor.WorkflowCompleted)
	if wf.Variables["plain"] != "***" {
		t.Fatalf("variables %v: the plain copy must read ***", wf.Variables)
	}
	inline := taskByRef(wf, "inline").OutputData["result"].(map[string]any)
	if inline["len"] != float64(len(value)) || inline["echo"] != "***" {
		t.Fatalf("INLINE output %v: it must have seen the value, and its echo must be redacted", inline)
	}
	jq := taskByRef(wf, "jq").OutputData["result"].(map[string]any)
	if jq["n"] != float64(len(value)) || jq["same"] != "***" {
		t.Fatalf("JQ output %v", jq)
	}
	child := taskByRef(wf, "child")
	if child.OutputData["saw"] != true {
		t.Fatalf("the child's worker did not get the value: %v", child.OutputData)
	}
	sub := e.workflow(child.SubWorkflowID)
	started, _ := taskByRef(wf, "started").OutputData["workflowId"].(string)
	if out := e.waitStatus(started, conductor.WorkflowCompleted).Output; out["saw"] != true {
		t.Fatalf("the START_WORKFLOW's workflow's worker did not get the value: %v", out)
	}
	for _, id := range []string{id, child.SubWorkflowID, started} {
		view, _ := json.Marshal(e.workflow(id))
		if strings.Contains(string(view), value) || strings.Contains(e.rawLog(id), value) {
			t.Fatalf("workflow %s shows or logs the value: %s", id, view)
		}
	}
	if sub.Input["token"] != "***" {
		t.Fatalf("the child's input shows %v", sub.Input["token"])
	}
	// The child started with input sealed under its own secrets key, so
	// compaction must know to destroy that key when the child ends.
	sealed := false
	for _, ev := range e.events(child.SubWorkflowID) {
		_, ok := ev.(*schemas.SecretsSealed)
		sealed = sealed || ok
	}
	if !sealed {
		t.Fatal("the child's log does not record that it holds sealed secrets: it would never be compacted")
	}
}

// A DO_WHILE condition is a hand-off point too: a secret in the loop's
// inputParameters reaches the condition resolved, and a task's _secrets
// output reaches it opened, while neither shows anywhere. (The script
// builds its token: a literal equal to a value sealed before would be
// redacted from the next iteration's script.)
func TestLoopConditionHandOff(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const limit = "limit-value-123" // the condition checks its length, not itself: a literal would show
	e.putSecret("lim", limit)
	e.register(`{"name":"loop_handoff","tasks":[{"name":"loop","taskReferenceName":"loop","type":"DO_WHILE",
	  "inputParameters":{"k":"${workflow.secrets.lim}"},
	  "loopCondition":"$.loop['iteration'] < 3 && $.k.length == 15 && $.k.indexOf('limit-') == 0 && $.mint.result._secrets.token.length == 14",
	  "loopOver":[{"name":"mint","taskReferenceName":"mint","type":"INLINE",
	    "inputParameters":{"evaluatorType":"graaljs","expression":"({_secrets: {token: 'tok-' + 'abcdef-123'}})"}}]}]}`)
	id := e.start("loop_handoff", nil)
	wf := e.waitStatus(id, conductor.WorkflowCompleted)
	if n := taskByRef(wf, "loop").OutputData["iteration"]; n != float64(3) {
		t.Fatalf("the loop ran %v iterations, want 3: its condition did not see the values", n)
	}
	view, _ := json.Marshal(wf)
	if strings.Contains(string(view), limit) || strings.Contains(e.rawLog(id), limit) {
		t.Fatalf("the workflow shows or logs the secret: %s", view)
	}
}

// What a decision hands to another workflow is protected like what it
// stores: a child's failure reason reaches its parent and the parent's
// failure workflow redacted, and a _secrets value a worker returned reaches
// a sub-workflow scheduled in the same decision sealed under the child's
// key, not in plaintext.
func TestSecretsInWhatOtherWorkflowsGet(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const value = "effects-secret-Q7w2e9r4"
	const token = "fetched-token-Lp0o9i8u"
	e.putSecret("ef", value)
	e.must(http.StatusNoContent, "POST", "/api/metadata/taskdefs", `[{"name":"leaky","retryCount":0}]`)
	e.register(
		`{"name":"leaky_child","tasks":[{"name":"leaky","taskReferenceName":"leaky","inputParameters":{"key":"${workflow.secrets.ef}"}}]}`,
		`{"name":"leaky_parent","failureWorkflow":"leaky_cleanup","tasks":[
		  {"name":"child","taskReferenceName":"child","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"leaky_child"}}]}`,
		`{"name":"leaky_cleanup","tasks":[{"name":"cleanup","taskReferenceName":"cleanup","inputParameters":{"why":"${workflow.input.reason}"}}]}`,
		`{"name":"token_child","tasks":[{"name":"token_user","taskReferenceName":"use","inputParameters":{"got":"${workflow.input.token}"}}]}`,
		`{"name":"token_parent","tasks":[
		  {"name":"fetch","taskReferenceName":"fetch"},
		  {"name":"child","taskReferenceName":"child","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"token_child"},
		   "inputParameters":{"token":"${fetch.output._secrets.token}"}}]}`,
		`{"name":"short_parent","tasks":[
		  {"name":"fetch_short","taskReferenceName":"fetch"},
		  {"name":"child","taskReferenceName":"child","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"token_child"},
		   "inputParameters":{"token":"${fetch.output._secrets.token}"}}]}`)
	e.work("leaky", 1, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		return workers.Output{}, fmt.Errorf("401: key %v rejected", task.InputData["key"])
	})
	why := make(chan any, 1)
	e.work("cleanup", 1, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		why <- task.InputData["why"]
		return workers.Output{}, nil
	})
	e.work("fetch", 1, func(context.Context, *conductor.Task) (workers.Output, error) {
		return workers.Output{Data: map[string]any{"_secrets": map[string]any{"token": token}}}, nil
	})
	e.work("fetch_short", 1, func(context.Context, *conductor.Task) (workers.Output, error) {
		return workers.Output{Data: map[string]any{"_secrets": map[string]any{"token": "Zq#7x"}}}, nil
	})
	got := make(chan any, 1)
	e.work("token_user", 1, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		got <- task.InputData["got"]
		return workers.Output{}, nil
	})

	leaky := e.start("leaky_parent", nil)
	wf := e.waitStatus(leaky, conductor.WorkflowFailed)
	child := taskByRef(wf, "child")
	if !strings.Contains(child.ReasonForIncompletion, "401: key *** rejected") {
		t.Fatalf("the parent's SUB_WORKFLOW task failed with %q", child.ReasonForIncompletion)
	}
	select {
	case w := <-why:
		if s := fmt.Sprint(w); strings.Contains(s, value) || !strings.Contains(s, "***") {
			t.Fatalf("the failure workflow's input reason is %q", s)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the failure workflow did not run")
	}

	tp := e.start("token_parent", nil)
	if g := <-got; g != token {
		t.Fatalf("the child's worker got %v, want the fetched token", g)
	}
	wf = e.waitStatus(tp, conductor.WorkflowCompleted)
	sub := taskByRef(wf, "child").SubWorkflowID
	if in := e.workflow(sub).Input["token"]; in != "***" {
		t.Fatalf("the child's input shows %v", in)
	}

	// Also a value below redaction's floor, which redaction does not
	// look for: sealed all the same.
	sp := e.start("short_parent", nil)
	if g := <-got; g != "Zq#7x" {
		t.Fatalf("the child's worker got %v, want the short token", g)
	}
	shortSub := taskByRef(e.waitStatus(sp, conductor.WorkflowCompleted), "child").SubWorkflowID
	if strings.Contains(e.rawLog(shortSub), `"Zq#7x"`) {
		t.Fatal("the child's log holds the short token in plaintext")
	}

	ids := []string{leaky, child.SubWorkflowID, tp, sub}
	_, list := e.do("GET", "/api/workflow/search?query=workflowType%20IN%20(leaky_cleanup)", nil)
	if !strings.Contains(list, `"workflowId"`) {
		t.Fatalf("no failure workflow found: %s", list)
	}
	var found conductor.SearchResult[conductor.WorkflowSummary]
	if err := json.Unmarshal([]byte(list), &found); err != nil {
		t.Fatal(err)
	}
	for _, s := range found.Results {
		ids = append(ids, s.WorkflowID)
	}
	for _, id := range ids {
		view, _ := json.Marshal(e.workflow(id))
		raw := e.rawLog(id)
		for _, v := range []string{value, token} {
			if strings.Contains(string(view), v) || strings.Contains(raw, v) {
				t.Errorf("workflow %s shows or logs %q", id, v)
			}
		}
	}
}

// Values the engine copies as it schedules are sealed like the rest: a
// dynamic fork's task configuration (shown as its workflowTask) masks the
// _secrets its planner gave it, and a loop's first loopItem, which the
// loop's own scheduling records, keeps a _secrets number sealed.
func TestSecretsInRunTimeValues(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const apiKey = "planned-api-key-Hy6tG5rF"
	const pin = 918273645501
	e.register(`{"name":"planned_fork","tasks":[
	  {"name":"planner","taskReferenceName":"planner"},
	  {"name":"dfork","taskReferenceName":"dfork","type":"FORK_JOIN_DYNAMIC","dynamicForkTasksParam":"tasks",
	   "dynamicForkTasksInputParamName":"inputs","inputParameters":{"tasks":"${planner.output.tasks}","inputs":"${planner.output.inputs}"}},
	  {"name":"djoin","taskReferenceName":"djoin","type":"JOIN"}]}`,
		`{"name":"pin_loop","tasks":[
	  {"name":"each","taskReferenceName":"each","type":"DO_WHILE","items":"${workflow.input.items}",
	   "loopOver":[{"name":"pin_user","taskReferenceName":"use","inputParameters":{"pin":"${each.output.loopItem._secrets.pin}"}}]}]}`)
	e.work("planner", 1, func(context.Context, *conductor.Task) (workers.Output, error) {
		return workers.Output{Data: map[string]any{
			"tasks": []any{map[string]any{"name": "planned", "taskReferenceName": "c1",
				"inputParameters": map[string]any{"_secrets": map[string]any{"apiKey": apiKey}, "plain": "visible-param"}}},
			"inputs": map[string]any{"c1": map[string]any{}}}}, nil
	})
	got := make(chan any, 2)
	e.work("planned", 1, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		sec, _ := task.InputData["_secrets"].(map[string]any)
		got <- sec["apiKey"]
		return workers.Output{}, nil
	})
	e.work("pin_user", 1, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		got <- task.InputData["pin"]
		return workers.Output{}, nil
	})

	id := e.start("planned_fork", nil)
	if g := <-got; g != apiKey {
		t.Fatalf("the forked task got %v", g)
	}
	wf := e.waitStatus(id, conductor.WorkflowCompleted)
	var cfg struct {
		InputParameters map[string]any `json:"inputParameters"`
	}
	if err := json.Unmarshal(taskByRef(wf, "c1").WorkflowTask, &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.InputParameters["_secrets"] != "***" || cfg.InputParameters["plain"] != "visible-param" {
		t.Fatalf("the forked task's workflowTask shows %v", cfg.InputParameters)
	}
	view, _ := json.Marshal(e.workflow(id))
	if strings.Contains(string(view), apiKey) || strings.Contains(e.rawLog(id), apiKey) {
		t.Fatalf("the view or the log holds the planned key: %s", view)
	}

	id = e.start("pin_loop", map[string]any{"items": []any{map[string]any{"_secrets": map[string]any{"pin": pin}}}})
	if g := <-got; g != float64(pin) {
		t.Fatalf("the loop's task got %v", g)
	}
	e.waitStatus(id, conductor.WorkflowCompleted)
	if strings.Contains(e.rawLog(id), fmt.Sprint(pin)) {
		t.Fatal("the log holds the loop item's _secrets number")
	}
}

// A failure workflow starts with the failed workflow's input, _secrets
// included: sealed again under its own key, opened at its hand-offs.
func TestFailureWorkflowGetsSealedInput(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const value = "failed-input-secret-Mn4b"
	e.must(http.StatusNoContent, "POST", "/api/metadata/taskdefs", `[{"name":"breaks","retryCount":0}]`)
	e.register(`{"name":"sealed_fails","failureWorkflow":"sealed_cleanup","tasks":[{"name":"breaks","taskReferenceName":"breaks"}]}`,
		`{"name":"sealed_cleanup","tasks":[{"name":"sealed_clean","taskReferenceName":"clean","inputParameters":{"k":"${workflow.input._secrets.k}"}}]}`)
	e.work("breaks", 1, func(context.Context, *conductor.Task) (workers.Output, error) {
		return workers.Output{}, fmt.Errorf("broken")
	})
	got := make(chan any, 1)
	e.work("sealed_clean", 1, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		got <- task.InputData["k"]
		return workers.Output{}, nil
	})
	id := e.start("sealed_fails", map[string]any{"_secrets": map[string]any{"k": value}})
	e.waitStatus(id, conductor.WorkflowFailed)
	select {
	case g := <-got:
		if g != value {
			t.Fatalf("the failure workflow's task got %v", g)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the failure workflow did not run")
	}
	// The engine started it, not this client: search sees it once the
	// read model has applied its start.
	var found conductor.SearchResult[conductor.WorkflowSummary]
	testutil.Eventually(t, 10*time.Second, 50*time.Millisecond, func() error {
		_, list := e.do("GET", "/api/workflow/search?query=workflowType%20IN%20(sealed_cleanup)", nil)
		if err := json.Unmarshal([]byte(list), &found); err != nil || len(found.Results) != 1 {
			return fmt.Errorf("failure workflows: %v %s", err, list)
		}
		return nil
	})
	fw := found.Results[0].WorkflowID
	if view, _ := json.Marshal(e.workflow(fw)); strings.Contains(string(view), value) || strings.Contains(e.rawLog(fw), value) {
		t.Fatalf("the failure workflow shows or logs the value: %s", view)
	}
}

// Data is never code with the workflow's rights: a task configuration a
// worker returns for a dynamic fork, or a sub-workflow definition built
// from data, may not reference a secret (it would resolve as the
// workflow's principals, for whoever wrote the data) nor write one. The
// task fails, saying why, and the value goes nowhere.
func TestDataMayNotReachForSecrets(t *testing.T) {
	t.Parallel()
	e := newSecureEnv(t)
	const value = "creators-secret-Zq81mVx4"
	e.putSecret("fork_secret", value)
	e.register(`{"name":"data_fork","tasks":[
	  {"name":"data_planner","taskReferenceName":"planner"},
	  {"name":"dfork","taskReferenceName":"dfork","type":"FORK_JOIN_DYNAMIC","dynamicForkTasksParam":"tasks","inputParameters":{"tasks":"${planner.output.tasks}"}},
	  {"name":"djoin","taskReferenceName":"djoin","type":"JOIN"}]}`,
		`{"name":"data_child","tasks":[
	  {"name":"data_planner","taskReferenceName":"planner"},
	  {"name":"kid","taskReferenceName":"kid","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"built","workflowDefinition":"${planner.output.def}"}}]}`,
		`{"name":"data_fork_vars","tasks":[
	  {"name":"keep","taskReferenceName":"keep","type":"SET_VARIABLE","inputParameters":{"_secrets":{"tok":"${workflow.secrets.fork_secret}"}}},
	  {"name":"data_planner","taskReferenceName":"planner"},
	  {"name":"dfork","taskReferenceName":"dfork","type":"FORK_JOIN_DYNAMIC","dynamicForkTasksParam":"tasks","inputParameters":{"tasks":"${planner.output.tasks}"}},
	  {"name":"djoin","taskReferenceName":"djoin","type":"JOIN"}]}`)
	stealWith := func(ref string) map[string]any {
		return map[string]any{"name": "data_thief", "taskReferenceName": "steal", "inputParameters": map[string]any{"stolen": ref}}
	}
	steal := map[string]any{"name": "data_thief", "taskReferenceName": "steal", "inputParameters": map[string]any{"stolen": "${ workflow.secrets.fork_secret}"}}
	overwrite := map[string]any{"name": "rotate", "taskReferenceName": "overwrite", "type": "UPDATE_SECRET",
		"inputParameters": map[string]any{"_secrets": map[string]any{"secretKey": "fork_secret", "secretValue": "planners-value"}}}
	plans := make(chan map[string]any, 4)
	e.work("data_planner", 1, func(context.Context, *conductor.Task) (workers.Output, error) {
		return workers.Output{Data: <-plans}, nil
	})
	got := make(chan any, 4)
	e.work("data_thief", 1, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		got <- task.InputData["stolen"]
		return workers.Output{}, nil
	})
	for _, tc := range []struct {
		flow, failed string
		plan         map[string]any
	}{
		{"data_fork", "steal", map[string]any{"tasks": []any{steal}}},
		{"data_fork", "overwrite", map[string]any{"tasks": []any{overwrite}}},
		// The expression parser trims any space, a tab, a newline or a
		// no-break space among them.
		{"data_fork", "steal", map[string]any{"tasks": []any{stealWith("${\tworkflow.secrets.fork_secret}")}}},
		{"data_fork", "steal", map[string]any{"tasks": []any{stealWith("${\nworkflow.secrets.fork_secret}")}}},
		{"data_fork", "steal", map[string]any{"tasks": []any{stealWith("${\u00a0workflow.secrets.fork_secret}")}}},
		// What the workflow sealed is not data's to read either.
		{"data_fork_vars", "steal", map[string]any{"tasks": []any{stealWith("${workflow.variables._secrets.tok}")}}},
		{"data_child", "kid", map[string]any{"def": map[string]any{"name": "built", "tasks": []any{steal}}}},
		{"data_child", "kid", map[string]any{"def": map[string]any{"name": "built", "tasks": []any{overwrite}}}},
		{"data_child", "kid", map[string]any{"def": map[string]any{"name": "built", "tasks": []any{stealWith("${\tworkflow.secrets.fork_secret}")}}}},
	} {
		plans <- tc.plan
		wf := e.waitStatus(e.start(tc.flow, nil), conductor.WorkflowFailed)
		if reason := taskByRef(wf, tc.failed).ReasonForIncompletion; !strings.Contains(reason, "workflow's data") {
			t.Errorf("%s: %s failed with %q, want the refusal", tc.flow, tc.failed, reason)
		}
		if strings.Contains(e.rawLog(wf.WorkflowID), value) {
			t.Errorf("%s: the log holds the value", tc.flow)
		}
	}
	if len(got) != 0 {
		t.Fatalf("a worker received %v", <-got)
	}
	if v := e.must(http.StatusOK, "GET", "/api/secrets/fork_secret", nil); v != value {
		t.Fatalf("the secret reads %q after the planners ran", v)
	}
}

// A field of a JSON secret given to a child is redacted in the child too:
// its worker echoes the one field alone, in its reason and its log.
func TestChildRedactsSecretFields(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const password = "child-db-password-Kq19xw"
	e.putSecret("db", `{"creds":{"user":"svc_account","password":"`+password+`"}}`)
	e.must(http.StatusNoContent, "POST", "/api/metadata/taskdefs", `[{"name":"db_login","retryCount":0}]`)
	e.register(`{"name":"db_child","tasks":[{"name":"db_login","taskReferenceName":"login","inputParameters":{"creds":"${workflow.input.creds}"}}]}`,
		`{"name":"db_parent","tasks":[{"name":"kid","taskReferenceName":"kid","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"db_child"},
	   "inputParameters":{"creds":"${workflow.secrets.db.creds}"}}]}`)
	e.work("db_login", 1, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		creds, _ := task.InputData["creds"].(map[string]any)
		return workers.Output{Logs: []string{"tried " + fmt.Sprint(creds["password"])}},
			fmt.Errorf("login rejected for password %v", creds["password"])
	})
	wf := e.waitStatus(e.start("db_parent", nil), conductor.WorkflowFailed)
	child := taskByRef(wf, "kid").SubWorkflowID
	e.waitStatus(child, conductor.WorkflowFailed)
	view, _ := json.Marshal(e.workflow(child))
	login := taskByRef(e.workflow(child), "login")
	logs := e.must(http.StatusOK, "GET", "/api/tasks/"+login.TaskID+"/log", nil)
	if !strings.Contains(login.ReasonForIncompletion, "rejected") {
		t.Fatalf("the worker did not run: %q", login.ReasonForIncompletion)
	}
	for what, text := range map[string]string{"view": string(view), "logs": logs, "log": e.rawLog(child)} {
		if strings.Contains(text, password) {
			t.Errorf("the child's %s holds the password: %s", what, text)
		}
	}
}

// A workflow a START_WORKFLOW starts shows its correlation id and domains
// in plain text, and search finds it by them: masked data given for them
// fails the task naming the field, and nothing starts (it would have
// started with "***" there, or the value in plain text).
func TestStartedWorkflowHidesMaskedCorrelation(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.register(`{"name":"mc_target","tasks":[{"name":"g","taskReferenceName":"g","type":"WAIT"}]}`,
		`{"name":"mc_corr","tasks":[{"name":"sw","taskReferenceName":"sw","type":"START_WORKFLOW",
		  "inputParameters":{"startWorkflow":{"name":"mc_target","correlationId":"${workflow.input._masked.c}"}}}]}`,
		`{"name":"mc_domain","tasks":[{"name":"sw","taskReferenceName":"sw","type":"START_WORKFLOW",
		  "inputParameters":{"startWorkflow":{"name":"mc_target","taskToDomain":{"g":"${workflow.input._masked.d}"}}}}]}`)
	for starter, field := range map[string]string{"mc_corr": "startWorkflow.correlationId", "mc_domain": "startWorkflow.taskToDomain.g"} {
		id := e.start(starter, map[string]any{"_masked": map[string]any{"c": "masked-corr-value-77", "d": "domain-secret-99"}})
		sw := taskByRef(e.waitStatus(id, conductor.WorkflowFailed), "sw")
		if sw.Status != conductor.TaskFailedWithTerminalError || !strings.Contains(sw.ReasonForIncompletion, field+" is sealed data") {
			t.Errorf("%s: task %s %q, want it failed naming %s", starter, sw.Status, sw.ReasonForIncompletion, field)
		}
		for what, text := range map[string]string{"view": e.must(http.StatusOK, "GET", "/api/workflow/"+id, nil), "log": e.rawLog(id)} {
			if strings.Contains(text, "masked-corr-value-77") || strings.Contains(text, "domain-secret-99") {
				t.Errorf("%s: the starter's %s holds masked data: %s", starter, what, text)
			}
		}
	}
	if body := e.must(http.StatusOK, "GET", "/api/workflow/search?query="+url.QueryEscape(`workflowType = mc_target`), nil); !strings.Contains(body, `"totalHits":0`) {
		t.Errorf("a workflow started: %s", body)
	}
}

// A child's output reaches its parent as the child's readers see it,
// except that what it holds under _secrets is sealed again under the
// parent's key: a parent's task reads the value it needs there, and "***"
// for a secret the child copied anywhere else. No hand-off of the parent
// meets a value sealed under the child's key, which it could not open.
func TestChildOutputReachesItsParent(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const value = "child-passes-Wq3e5r7t"
	e.putSecret("co_s", value)
	e.register(
		`{"name":"co_child","tasks":[{"name":"sv","taskReferenceName":"sv","type":"SET_VARIABLE","inputParameters":{"cx":"${workflow.input.x}"}}],
		  "outputParameters":{"_secrets":{"tok":"${workflow.input.x}"},"raw":"${workflow.input.x}","v":"${workflow.variables.cx}","plain":"kept"}}`,
		`{"name":"co_parent","tasks":[
		  {"name":"child","taskReferenceName":"child","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"co_child"},"inputParameters":{"x":"${workflow.secrets.co_s}"}},
		  {"name":"co_use","taskReferenceName":"use","inputParameters":{"tok":"${child.output._secrets.tok}","all":"${child.output}"}},
		  {"name":"inl","taskReferenceName":"inl","type":"INLINE","inputParameters":{"evaluatorType":"javascript","expression":"$.o.plain + $.o.raw","o":"${child.output}"}}]}`)
	got := make(chan map[string]any, 1)
	e.work("co_use", 1, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		got <- task.InputData
		return workers.Output{}, nil
	})
	id := e.start("co_parent", nil)
	var in map[string]any
	select {
	case in = <-got:
	case <-time.After(20 * time.Second):
		wf := e.workflow(id)
		t.Fatalf("the parent's task was not handed off: workflow %s %s", wf.Status, wf.ReasonForIncompletion)
	}
	all, _ := in["all"].(map[string]any)
	if in["tok"] != value || all["raw"] != masking.Mask || all["v"] != masking.Mask || all["plain"] != "kept" {
		t.Fatalf("the parent's task got %v", in)
	}
	wf := e.waitStatus(id, conductor.WorkflowCompleted)
	if out := taskByRef(wf, "inl").OutputData["result"]; out != "kept***" {
		t.Fatalf("the parent's INLINE task computed %v", out)
	}
	child := taskByRef(wf, "child")
	view, _ := json.Marshal(wf)
	for _, where := range []string{string(view), e.rawLog(id), e.rawLog(child.SubWorkflowID)} {
		if strings.Contains(where, value) {
			t.Fatal("the value shows in a workflow or its log")
		}
	}
}

// A failure workflow's failedWorkflow is the failed one as every read shows
// it: a _secrets value its TERMINATE copied into the workflow's output
// reads "***" there, whether the value was sealed by an earlier decision or
// by the one that failed the workflow (which built the view before
// sealing). The failure workflow's own input still carries the failed
// one's _secrets to its tasks.
func TestFailureWorkflowSeesCopiesMasked(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const token, in = "terminate-copies-Ty7u8i9o", "failed-input-Rt5e4w3q"
	e.register(`{"name":"fv_cleanup","tasks":[{"name":"fv_clean","taskReferenceName":"clean",
	  "inputParameters":{"in":"${workflow.input._secrets.in}","fw":"${workflow.input.failedWorkflow}"}}]}`)
	e.work("fv_fetch", 1, func(context.Context, *conductor.Task) (workers.Output, error) {
		return workers.Output{Data: map[string]any{"_secrets": map[string]any{"x": token}}}, nil
	})
	got := make(chan map[string]any, 1)
	e.work("fv_clean", 1, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		got <- task.InputData
		return workers.Output{}, nil
	})
	terminate := `{"name":"term","taskReferenceName":"term","type":"TERMINATE","inputParameters":{"terminationStatus":"FAILED",
	  "workflowOutput":{"plain":"${fetch.output._secrets.x}"}}}`
	for name, between := range map[string]string{
		"same decision":    "",
		"earlier decision": `{"name":"hold","taskReferenceName":"hold","type":"WAIT","inputParameters":{"duration":"1s"}},`,
	} {
		flow := "fv_fails_" + strings.ReplaceAll(name, " ", "_")
		e.register(`{"name":"` + flow + `","failureWorkflow":"fv_cleanup","tasks":[
		  {"name":"fv_fetch","taskReferenceName":"fetch"},` + between + terminate + `]}`)
		id := e.start(flow, map[string]any{"_secrets": map[string]any{"in": in}})
		var input map[string]any
		select {
		case input = <-got:
		case <-time.After(30 * time.Second):
			t.Fatalf("%s: the failure workflow's task was not handed off", name)
		}
		if input["in"] != in {
			t.Errorf("%s: the failure workflow's task got %v for the failed one's _secrets input", name, input["in"])
		}
		fw, _ := input["fw"].(map[string]any)
		output, _ := fw["output"].(map[string]any)
		if output["plain"] != masking.Mask {
			t.Errorf("%s: failedWorkflow's output reads %v, want %q", name, output, masking.Mask)
		}
		js, _ := json.Marshal(fw)
		if strings.Contains(string(js), token) {
			t.Errorf("%s: the failure workflow's task got the value in failedWorkflow: %s", name, js)
		}
		if out := e.waitStatus(id, conductor.WorkflowFailed).Output; out["plain"] != masking.Mask {
			t.Errorf("%s: the failed workflow's output reads %v", name, out)
		}
	}
}
