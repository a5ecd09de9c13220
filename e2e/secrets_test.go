package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/executor"
	"github.com/flowvault/flowvault/internal/nodetest"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/masking"
	"github.com/flowvault/flowvault/node"
	readmodel "github.com/flowvault/flowvault/projections/executions"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/secrets"
	"github.com/flowvault/flowvault/workers"
)

func (e *env) putSecret(name, value string) {
	e.t.Helper()
	req, _ := http.NewRequest("PUT", e.base+"/api/secrets/"+name, strings.NewReader(value))
	req.Header.Set("Content-Type", "text/plain")
	if e.token != "" {
		req.Header.Set("X-Authorization", e.token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		e.t.Fatalf("put secret %s: %d", name, res.StatusCode)
	}
}

// records reads every record of a workflow from the log.
func (e *env) records(id string) []eventlog.Record {
	e.t.Helper()
	recs, err := e.node.Log().ReadSubject(context.Background(), "fv.wf."+id, 0)
	if err != nil {
		e.t.Fatal(err)
	}
	return recs
}

// events reads every event of a workflow from the log.
func (e *env) events(id string) []schemas.Event {
	e.t.Helper()
	var out []schemas.Event
	for _, r := range e.records(id) {
		out = append(out, e.recordEvents(r)...)
	}
	return out
}

// recordEvents returns the events of record r.
func (e *env) recordEvents(r eventlog.Record) []schemas.Event {
	e.t.Helper()
	out := make([]schemas.Event, 0, len(r.Events))
	for _, env := range r.Events {
		ev, err := schemas.Default.Decode(env)
		if err != nil {
			e.t.Fatal(err)
		}
		out = append(out, ev)
	}
	return out
}

// secretsKey returns the id of the key the workflow's log last recorded for
// its _secrets data.
func (e *env) secretsKey(id string) string {
	e.t.Helper()
	key := e.secretsKeyOrNone(id)
	if key == "" {
		e.t.Fatalf("workflow %s recorded no secrets key", id)
	}
	return key
}

func (e *env) secretsKeyOrNone(id string) string {
	e.t.Helper()
	key := ""
	for _, ev := range e.events(id) {
		if s, ok := ev.(*schemas.SecretsSealed); ok {
			key = s.Key
		}
	}
	return key
}

// rawLog returns every byte of a workflow's records.
func (e *env) rawLog(id string) string {
	e.t.Helper()
	var b strings.Builder
	for _, ev := range e.events(id) {
		js, _ := json.Marshal(ev)
		b.Write(js)
	}
	return b.String()
}

// Secret references resolve at hand-off, as the workflow's creator, into
// the worker's copy only; the stored input keeps the literal, and the
// resolution is recorded without its value.
func TestSecretResolutionAtHandOff(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.putSecret("api_token", "tok-0123456789")
	e.putSecret("db", `{"user":"svc_user","password":"pw-secret-value"}`)
	e.register(`{"name":"uses_secrets","tasks":[{"name":"call","taskReferenceName":"call","inputParameters":{
	  "auth":"Bearer ${workflow.secrets.api_token}","whole":"${workflow.secrets.api_token}",
	  "user":"${workflow.secrets.db.user}","dyn":"${workflow.secrets.${workflow.input.which}}",
	  "escaped":"$${workflow.secrets.api_token}","plain":"${workflow.input.which}"}}]}`)
	got := make(chan map[string]any, 1)
	e.work("call", 1, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		got <- task.InputData
		return workers.Output{Data: map[string]any{"ok": true}}, nil
	})
	id := e.start("uses_secrets", map[string]any{"which": "api_token"})
	in := <-got
	want := map[string]any{"auth": "Bearer tok-0123456789", "whole": "tok-0123456789", "user": "svc_user",
		"dyn": "tok-0123456789", "escaped": "${workflow.secrets.api_token}", "plain": "api_token"}
	for k, v := range want {
		if in[k] != v {
			t.Errorf("worker got %s = %v, want %v", k, in[k], v)
		}
	}
	wf := e.waitStatus(id, conductor.WorkflowCompleted)
	stored := wf.Tasks[0].InputData
	if stored["auth"] != "Bearer ${workflow.secrets.api_token}" || stored["dyn"] != "${workflow.secrets.api_token}" {
		t.Fatalf("stored input = %v", stored)
	}
	view, _ := json.Marshal(wf)
	if strings.Contains(string(view), "tok-0123456789") || strings.Contains(e.rawLog(id), "tok-0123456789") || strings.Contains(e.rawLog(id), "svc_user") {
		t.Fatal("a resolved value reached the view or the log")
	}
	var resolved []schemas.ResolvedRef
	for _, ev := range e.events(id) {
		if s, ok := ev.(*schemas.TaskStarted); ok {
			resolved = append(resolved, s.Resolved...)
		}
	}
	if len(resolved) != 4 || resolved[0].Kind != "secret" || resolved[0].Name != "api_token" || resolved[0].Version != 1 {
		t.Fatalf("resolution records = %+v", resolved)
	}
}

// A missing secret, a path into a non-JSON secret and a dynamic name that
// resolves to nothing fail the task for good, with a reason naming the
// secret and the principal; never a silent null.
func TestSecretResolutionFailures(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.putSecret("plain_text", "not-json-at-all")
	tests := []struct {
		name, param, reason string
	}{
		{"missing", "${workflow.secrets.nope}", "secret nope not found or not readable by anonymous"},
		{"path into text", "${workflow.secrets.plain_text.field}", "secret plain_text is not JSON"},
		{"dynamic name to nothing", "${workflow.secrets.${workflow.input.absent}}", "secret"},
		{"dynamic name that closes the reference", "${workflow.secrets.${workflow.input.closing}}", "name, made of data, is empty or holds a brace"},
		{"dynamic name that is empty", "Bearer ${workflow.env.${workflow.input.empty}}", "name, made of data, is empty or holds a brace"},
	}
	for i, tt := range tests {
		name := fmt.Sprintf("fails_%d", i)
		e.register(`{"name":"` + name + `","tasks":[{"name":"needs_secret","taskReferenceName":"t","inputParameters":{"v":"` + tt.param + `"}}]}`)
		id := e.start(name, map[string]any{"closing": "plain_text}", "empty": ""})
		if i == 0 {
			e.work("needs_secret", 1, func(context.Context, *conductor.Task) (workers.Output, error) {
				t.Error("a task whose secret could not be resolved reached a worker")
				return workers.Output{}, nil
			})
		}
		wf := e.waitStatus(id, conductor.WorkflowFailed)
		task := wf.Tasks[0]
		if task.Status != conductor.TaskFailedWithTerminalError || !strings.Contains(task.ReasonForIncompletion, tt.reason) {
			t.Errorf("%s: task %s %q, want a terminal failure mentioning %q", tt.name, task.Status, task.ReasonForIncompletion, tt.reason)
		}
	}
}

// Data under _secrets is sealed before it is stored, reads as "***", and
// reaches a downstream task's worker as the real value.
func TestSecretsKeyDownstream(t *testing.T) {
	t.Parallel()
	e := compactingEnv(t, time.Hour)
	e.register(`{"name":"pass_token","tasks":[
	  {"name":"issue","taskReferenceName":"issue"},
	  {"name":"use","taskReferenceName":"use","inputParameters":{"token":"${issue.output._secrets.token}","_masked":{"copy":"${issue.output._secrets.token}"}}}]}`)
	e.work("issue", 1, func(context.Context, *conductor.Task) (workers.Output, error) {
		return workers.Output{Data: map[string]any{"_secrets": map[string]any{"token": "issued-tok-987654"}, "visible": "yes"}}, nil
	})
	used := make(chan map[string]any, 1)
	e.work("use", 1, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		used <- task.InputData
		return workers.Output{}, nil
	})
	id := e.start("pass_token", nil)
	in := <-used
	if in["token"] != "issued-tok-987654" || in["_masked"].(map[string]any)["copy"] != "issued-tok-987654" {
		t.Fatalf("downstream worker got %v", in)
	}
	wf := e.waitStatus(id, conductor.WorkflowCompleted)
	view, _ := json.Marshal(wf)
	if strings.Contains(string(view), "issued-tok") || !strings.Contains(string(view), `"_secrets":"***"`) || !strings.Contains(string(view), `"visible":"yes"`) {
		t.Fatalf("view = %s", view)
	}
	if strings.Contains(e.rawLog(id), "issued-tok") {
		t.Fatal("the log holds the _secrets value in plaintext")
	}
}

// Values a worker echoes — in output, logs and error messages — are
// redacted before they are stored, in their encoded forms too; values below
// the floor are left alone.
func TestRedactionOfEchoedValues(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.putSecret("leaky", "leaky-value-42x")
	e.putSecret("pin", "1234")
	e.register(`{"name":"echo","tasks":[{"name":"echoer","taskReferenceName":"echo","inputParameters":{"s":"${workflow.secrets.leaky}","pin":"${workflow.secrets.pin}"}}]}`)
	e.must(http.StatusNoContent, "POST", "/api/metadata/taskdefs", `[{"name":"echoer","retryCount":1,"retryDelaySeconds":0}]`)
	var mu sync.Mutex
	attempts := 0
	e.work("echoer", 1, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		s := task.InputData["s"].(string)
		mu.Lock()
		attempts++
		first := attempts == 1
		mu.Unlock()
		if first {
			return workers.Output{}, fmt.Errorf("upstream refused key %s", s)
		}
		return workers.Output{Data: map[string]any{"echo": s, "url": "https://x/?k=" + s, "pin": task.InputData["pin"], "code": "CX1234"},
			Logs: []string{"using " + s}}, nil
	})
	id := e.start("echo", nil)
	wf := e.waitStatus(id, conductor.WorkflowCompleted)
	if !strings.Contains(wf.Tasks[0].ReasonForIncompletion, "upstream refused key ***") {
		t.Fatalf("error message not redacted: %q", wf.Tasks[0].ReasonForIncompletion)
	}
	out := wf.Tasks[1].OutputData
	if out["echo"] != "***" || out["url"] != "https://x/?k=***" || out["pin"] != "1234" || out["code"] != "CX1234" {
		t.Fatalf("output = %v (short values are not redacted, by design)", out)
	}
	logs := e.must(http.StatusOK, "GET", "/api/tasks/"+wf.Tasks[1].TaskID+"/log", nil)
	if !strings.Contains(logs, "using ***") || strings.Contains(logs, "leaky-value") {
		t.Fatalf("task logs = %s", logs)
	}
	if strings.Contains(e.rawLog(id), "leaky-value") {
		t.Fatal("the log holds the echoed value")
	}

	// A worker names itself, and may name itself with what it was given.
	e.register(`{"name":"named","tasks":[{"name":"namer","taskReferenceName":"namer","inputParameters":{"s":"${workflow.secrets.leaky}"}}]}`)
	id = e.start("named", nil)
	var polled conductor.Task
	testutil.Eventually(t, 30*time.Second, 20*time.Millisecond, func() error {
		body := e.must(http.StatusOK, "GET", "/api/tasks/poll/namer?workerid=w1", nil)
		if body == "" {
			return fmt.Errorf("no task yet")
		}
		return json.Unmarshal([]byte(body), &polled)
	})
	e.must(http.StatusOK, "POST", "/api/tasks", map[string]any{"taskId": polled.TaskID, "workflowInstanceId": id,
		"status": "COMPLETED", "workerId": "worker-" + polled.InputData["s"].(string)})
	wf = e.waitStatus(id, conductor.WorkflowCompleted)
	if view, _ := json.Marshal(wf); strings.Contains(string(view), "leaky-value") || wf.Tasks[0].WorkerID != "worker-***" {
		t.Fatalf("the worker's name shows the value: %s", view)
	}
	if strings.Contains(e.rawLog(id), "leaky-value") {
		t.Fatal("the log holds the worker's name with the value")
	}
}

// A SWITCH whose case value equals a secret the workflow resolved goes on
// in the branch it took, and shows the case as the definition writes it:
// text of the definition is not looked for (it once read "***", and the
// next decision took the default case too).
func TestSwitchOnAValueEqualToASecret(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.putSecret("region", "production-eu")
	e.register(`{"name":"routes","tasks":[
	  {"name":"uses_region","taskReferenceName":"uses","inputParameters":{"r":"${workflow.secrets.region}"}},
	  {"name":"route","taskReferenceName":"route","type":"SWITCH","evaluatorType":"value-param","expression":"env",
	   "inputParameters":{"env":"${workflow.input.env}"},
	   "decisionCases":{"production-eu":[{"name":"deploy","taskReferenceName":"deploy"},
	     {"name":"mark","taskReferenceName":"mark","type":"SET_VARIABLE","inputParameters":{"branch":"eu"}}]},
	   "defaultCase":[{"name":"fallback","taskReferenceName":"fallback","type":"SET_VARIABLE","inputParameters":{"branch":"default"}}]}]}`)
	e.work("uses_region", 1, succeed)
	e.work("deploy", 1, succeed)
	id := e.start("routes", map[string]any{"env": "production-eu"})
	wf := e.waitStatus(id, conductor.WorkflowCompleted)
	// The definition names the case: text anyone who reads the
	// definition reads, not looked for (TestDefinitionTextIsNotRedacted).
	if route := taskByRef(wf, "route"); route.OutputData["selectedCase"] != "production-eu" {
		t.Fatalf("the SWITCH's output %v: the case the definition names is rewritten", route.OutputData)
	}
	if taskByRef(wf, "fallback") != nil || taskByRef(wf, "mark") == nil || wf.Variables["branch"] != "eu" {
		t.Fatalf("tasks %v, variables %v: want the production-eu branch alone", refsOf(wf.Tasks), wf.Variables)
	}
}

// A FORK_JOIN_DYNAMIC that would fork a task whose reference name equals
// a secret the workflow resolved is not recorded, even when the name came
// from the starter's input: a name is shown, searched and makes the
// task's queue as it is, and cannot be redacted. The result that led to
// it fails its task for good instead (TestTaskNamedWithASecretIsRefused
// has the names made of a worker's echo).
func TestDynamicForkOfANameEqualToASecret(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.putSecret("region", "production-eu")
	e.register(`{"name":"fans","tasks":[
	  {"name":"uses_region","taskReferenceName":"uses","inputParameters":{"r":"${workflow.secrets.region}"}},
	  {"name":"fork","taskReferenceName":"fork","type":"FORK_JOIN_DYNAMIC","dynamicForkTasksParam":"tasks",
	   "inputParameters":{"tasks":"${workflow.input.tasks}"}},
	  {"name":"join","taskReferenceName":"join","type":"JOIN"}]}`)
	e.work("uses_region", 1, succeed)
	e.work("deploy", 2, succeed)
	id := e.start("fans", map[string]any{"tasks": []any{
		map[string]any{"name": "deploy", "taskReferenceName": "production-eu"},
		map[string]any{"name": "deploy", "taskReferenceName": "staging-us"}}})
	wf := e.waitStatus(id, conductor.WorkflowFailed)
	uses := taskByRef(wf, "uses")
	if len(wf.Tasks) != 1 || uses.Status != conductor.TaskFailedWithTerminalError || !strings.Contains(uses.ReasonForIncompletion, "would be named") {
		t.Fatalf("tasks %v, uses %s %q: want the fork never scheduled, uses failed for good saying a task would be named with a secret value",
			refsOf(wf.Tasks), uses.Status, uses.ReasonForIncompletion)
	}
}

// The HTTP task resolves secrets in its uri, headers and body: the remote
// end sees the values; the execution does not.
func TestHTTPTaskResolvesSecrets(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.putSecret("api_token", "http-token-abcdef")
	var mu sync.Mutex
	var seen []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		seen = append(seen, r.Header.Get("Authorization"), r.URL.Query().Get("k"), string(body))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"ok":true,"echo":"` + r.Header.Get("Authorization") + `"}`))
	}))
	defer srv.Close()
	e.register(`{"name":"http_secret","tasks":[{"name":"call","taskReferenceName":"call","type":"HTTP","inputParameters":{"http_request":{
	  "uri":"` + srv.URL + `/x?k=${workflow.secrets.api_token}","method":"POST",
	  "headers":{"Authorization":"Bearer ${workflow.secrets.api_token}"},"body":{"key":"${workflow.secrets.api_token}"}}}}]}`)
	id := e.start("http_secret", nil)
	wf := e.waitStatus(id, conductor.WorkflowCompleted)
	mu.Lock()
	if len(seen) != 3 || seen[0] != "Bearer http-token-abcdef" || seen[1] != "http-token-abcdef" || !strings.Contains(seen[2], "http-token-abcdef") {
		t.Fatalf("remote end saw %q", seen)
	}
	mu.Unlock()
	view, _ := json.Marshal(wf)
	if strings.Contains(string(view), "http-token-abcdef") || strings.Contains(e.rawLog(id), "http-token-abcdef") {
		t.Fatalf("the token leaked into the execution: %s", view)
	}
	if echo := wf.Tasks[0].OutputData["response"].(map[string]any)["body"].(map[string]any)["echo"]; echo != "Bearer ***" {
		t.Fatalf("echoed header in the response = %v", echo)
	}
}

// UPDATE_SECRET creates and updates secrets as the workflow's creator,
// from a value that only ever existed sealed (a worker's _secrets output,
// as in the rotation recipe); missing fields fail the workflow.
func TestUpdateSecretTask(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.register(`{"name":"rotate","tasks":[{"name":"fetch","taskReferenceName":"fetch","inputParameters":{"n":"${workflow.input.n}"}},
	  {"name":"set","taskReferenceName":"set","type":"UPDATE_SECRET",
	   "inputParameters":{"_secrets":{"secretKey":"${workflow.input.name}","secretValue":"${fetch.output._secrets.token}"}}}]}`,
		`{"name":"rotate_bad","tasks":[{"name":"set","taskReferenceName":"set","type":"UPDATE_SECRET","inputParameters":{"_secrets":{"secretKey":"x"}}}]}`)
	e.work("fetch", 1, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		return workers.Output{Data: map[string]any{"_secrets": map[string]any{"token": fmt.Sprintf("rotated-value-%v", task.InputData["n"])}}}, nil
	})
	for _, n := range []int64{1, 2} {
		id := e.start("rotate", map[string]any{"name": "rotated", "n": n})
		wf := e.waitStatus(id, conductor.WorkflowCompleted)
		value := fmt.Sprintf("rotated-value-%d", n)
		if got := e.must(http.StatusOK, "GET", "/api/secrets/rotated", nil); got != value {
			t.Fatalf("secret = %q, want %q", got, value)
		}
		if view, _ := json.Marshal(wf); strings.Contains(string(view), value) || strings.Contains(e.rawLog(id), value) {
			t.Fatalf("the new value reached the view or the log: %s", view)
		}
	}
	wf := e.waitStatus(e.start("rotate_bad", nil), conductor.WorkflowFailed)
	if !strings.Contains(wf.Tasks[0].ReasonForIncompletion, "secretValue") {
		t.Fatalf("reason %q", wf.Tasks[0].ReasonForIncompletion)
	}
	// A secret's value never becomes a secret's name, which lists show.
	e.putSecret("name_src", "value-as-name-5551")
	e.register(`{"name":"rotate_named_by_secret","tasks":[{"name":"set","taskReferenceName":"set","type":"UPDATE_SECRET",
	   "inputParameters":{"_secrets":{"secretKey":"${workflow.secrets.name_src}","secretValue":"v-1234567"}}}]}`)
	wf = e.waitStatus(e.start("rotate_named_by_secret", nil), conductor.WorkflowFailed)
	if reason := wf.Tasks[0].ReasonForIncompletion; !strings.Contains(reason, "_secrets.secretKey is sealed data") {
		t.Fatalf("reason %q", reason)
	}
	// Nor does a value a task returned under _secrets.
	e.register(`{"name":"rotate_named_by_output","tasks":[{"name":"fetch","taskReferenceName":"fetch","inputParameters":{"n":9}},
	  {"name":"set","taskReferenceName":"set","type":"UPDATE_SECRET",
	   "inputParameters":{"_secrets":{"secretKey":"x-${fetch.output['_secrets'].token}","secretValue":"v-1234567"}}}]}`)
	wf = e.waitStatus(e.start("rotate_named_by_output", nil), conductor.WorkflowFailed)
	if reason := taskByRef(wf, "set").ReasonForIncompletion; !strings.Contains(reason, "_secrets.secretKey is sealed data") {
		t.Fatalf("reason %q", reason)
	}
	if names := e.must(http.StatusOK, "GET", "/api/secrets", nil); strings.Contains(names, "value-as-name-5551") || strings.Contains(names, "rotated-value-9") {
		t.Fatalf("a secret is named by a secret's value: %s", names)
	}
	// A value passed as workflow input that flows into _secrets reads
	// "***" in every view (TestInputCopiedIntoSecretsIsSealedAtStart).
	e.register(`{"name":"rotate_from_input","tasks":[{"name":"set","taskReferenceName":"set","type":"UPDATE_SECRET",
	   "inputParameters":{"_secrets":{"secretKey":"from_input","secretValue":"${workflow.input.value}"}}}]}`)
	id := e.start("rotate_from_input", map[string]any{"value": "input-value-333"})
	wf = e.waitStatus(id, conductor.WorkflowCompleted)
	if view, _ := json.Marshal(wf); strings.Contains(string(view), "input-value-333") {
		t.Fatalf("the view shows a value that went into _secrets: %s", view)
	}
	// Also from inside an object of the input: the input's key that holds
	// it is masked as a whole.
	e.register(`{"name":"rotate_from_object","tasks":[{"name":"set","taskReferenceName":"set","type":"UPDATE_SECRET",
	   "inputParameters":{"_secrets":{"secretKey":"from_object","secretValue":"${workflow.input.creds.password}"}}}]}`)
	id = e.start("rotate_from_object", map[string]any{"creds": map[string]any{"user": "bob", "password": "nested-value-444"}, "other": "kept-as-given"})
	wf = e.waitStatus(id, conductor.WorkflowCompleted)
	if view, _ := json.Marshal(wf); strings.Contains(string(view), "nested-value-444") {
		t.Fatalf("the view shows a nested input value that went into _secrets: %s", view)
	}
	if wf.Input["creds"] != "***" || wf.Input["other"] != "kept-as-given" {
		t.Fatalf("input = %v", wf.Input)
	}
}

// After a workflow ends (and the compaction delay), its _secrets data is
// destroyed for good: views and hand-offs of a restart get "***"; _masked
// data survives. Before compaction a restart gets the real value. A stored
// secret reference is resolved again by every run.
func TestCompaction(t *testing.T) {
	t.Parallel()
	e := compactingEnv(t, 2*time.Second)
	n := e.node
	e.putSecret("stored", "stored-value-789")
	e.register(`{"name":"compacting","tasks":[
	  {"name":"produce","taskReferenceName":"produce"},
	  {"name":"consume","taskReferenceName":"consume","inputParameters":{"s":"${produce.output._secrets.v}","m":"${produce.output._masked.v}","r":"${workflow.secrets.stored}"}}]}`)
	e.work("produce", 1, func(context.Context, *conductor.Task) (workers.Output, error) {
		return workers.Output{Data: map[string]any{"_secrets": map[string]any{"v": "shred-me-123"}, "_masked": map[string]any{"v": "keep-me-456"}}}, nil
	})
	got := make(chan map[string]any, 4)
	e.work("consume", 1, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		got <- task.InputData
		return workers.Output{}, nil
	})
	// A workflow that never sealed a secret has no key to destroy and is
	// never compacted; it ends first, so it would be due first.
	e.register(`{"name":"plain","tasks":[{"name":"consume","taskReferenceName":"consume"}]}`)
	plain := e.start("plain", nil)
	<-got
	e.waitStatus(plain, conductor.WorkflowCompleted)
	id := e.start("compacting", nil)
	if in := <-got; in["s"] != "shred-me-123" || in["m"] != "keep-me-456" || in["r"] != "stored-value-789" {
		t.Fatalf("first run got %v", in)
	}
	e.waitStatus(id, conductor.WorkflowCompleted)
	// Rerun from the consumer before compaction: real values.
	consume := taskByRef(e.workflow(id), "consume")
	e.must(http.StatusOK, "POST", "/api/workflow/"+id+"/rerun", conductor.RerunWorkflowRequest{ReRunFromTaskID: consume.TaskID})
	if in := <-got; in["s"] != "shred-me-123" || in["r"] != "stored-value-789" {
		t.Fatalf("rerun before compaction got %v", in)
	}
	e.waitStatus(id, conductor.WorkflowCompleted)
	e.waitCompacted(id)
	compactedKey := e.secretsKey(id)
	consume = taskByRef(e.workflow(id), "consume")
	e.must(http.StatusOK, "POST", "/api/workflow/"+id+"/rerun", conductor.RerunWorkflowRequest{ReRunFromTaskID: consume.TaskID})
	if in := <-got; in["s"] != "***" || in["m"] != "keep-me-456" || in["r"] != "stored-value-789" {
		t.Fatalf("rerun after compaction got %v; want the _secrets value destroyed and the _masked one kept", in)
	}
	e.waitStatus(id, conductor.WorkflowCompleted)
	// The secrets key is gone: the sealed bytes in the log cannot be opened.
	if _, err := n.Keys().DataKey(context.Background(), compactedKey); err == nil {
		t.Fatal("the workflow's secrets key still exists after compaction")
	}
	count := func(id string) (sealed, compacted int) {
		for _, ev := range e.events(id) {
			switch ev.(type) {
			case *schemas.SecretsSealed:
				sealed++
			case *schemas.WorkflowCompacted:
				compacted++
			}
		}
		return sealed, compacted
	}
	// The rerun resolved the stored secret again, whose value its record
	// keeps sealed (for redaction after a restart) under a new key, until
	// the rerun's own compaction.
	rerunKey := e.secretsKey(id)
	if rerunKey == compactedKey {
		t.Fatal("the rerun after compaction sealed under the destroyed key")
	}
	testutil.Eventually(t, 20*time.Second, 100*time.Millisecond, func() error {
		if _, compacted := count(id); compacted < 2 {
			return fmt.Errorf("the rerun is not compacted yet")
		}
		if _, err := n.Keys().DataKey(context.Background(), rerunKey); err == nil {
			return fmt.Errorf("the rerun's key still exists after its compaction")
		}
		return nil
	})
	if sealed, _ := count(id); sealed != 2 {
		t.Errorf("compacting workflow: %d secrets_sealed events, want 2 (its first run, the rerun after compaction)", sealed)
	}
	if sealed, compacted := count(plain); sealed != 0 || compacted != 0 {
		t.Errorf("plain workflow: %d secrets_sealed events, %d compactions; want none", sealed, compacted)
	}
}

// A crash between a compaction's event and the erasure of the keys leaves
// keys that no pass lists again; the sweep at start-up erases them, and
// the key of a workflow compacted and then restarted, and leaves every
// key still in use. So it does for a child removed without an archive,
// whose input its start sealed under the key named after it: that key
// stayed, its state gone, taken for a start not applied yet.
func TestCompactionSweep(t *testing.T) {
	t.Parallel()
	cfg := nodetest.Config(filepath.Join(t.TempDir(), "data"))
	cfg.CompactionDelay = time.Hour // no pass compacts anything: the test does
	n, base := nodetest.StartConfig(t, cfg)
	e := &env{t: t, node: n, base: base}
	e.register(`{"name":"swept","tasks":[{"name":"set","taskReferenceName":"set","type":"SET_VARIABLE","inputParameters":{"done":true}}]}`)
	// Seals again when restarted: a new key takes the old one's place.
	e.register(`{"name":"resealing","tasks":[{"name":"mint","taskReferenceName":"mint","type":"INLINE",
	  "inputParameters":{"evaluatorType":"graaljs","expression":"(function () { return {_secrets: {t: 'resealed-456'}}; })()"}}]}`)
	// Its child's input holds the token: sealed under the child's own key.
	e.register(`{"name":"swept_parent","tasks":[{"name":"sub","taskReferenceName":"sub","type":"SUB_WORKFLOW",
	  "subWorkflowParam":{"name":"swept"},"inputParameters":{"_secrets":{"token":"${workflow.input._secrets.token}"}}}]}`)
	input := map[string]any{"_secrets": map[string]any{"token": "sweep-me-789"}}
	crashed, restarted, kept := e.start("swept", input), e.start("swept", input), e.start("swept", input)
	removed, removedWaiting := e.start("swept", input), e.start("swept", input)
	resealed := e.start("resealing", nil)
	parent := e.start("swept_parent", input)
	ctx := testutil.Context(t, 30*time.Second)
	keys := map[string]string{}
	for _, id := range []string{crashed, restarted, kept, removed, removedWaiting, resealed} {
		e.waitStatus(id, conductor.WorkflowCompleted)
		keys[id] = e.secretsKey(id)
	}
	e.waitStatus(parent, conductor.WorkflowCompleted)
	child := e.childOf(parent)
	keys[child] = "wf." + child + ".s"
	if _, err := n.Keys().DataKey(ctx, keys[child]); err != nil {
		t.Fatalf("the child's key %s: %v", keys[child], err)
	}
	distinct := map[string]bool{}
	for _, k := range keys {
		distinct[k] = true
	}
	if len(distinct) != len(keys) {
		t.Fatalf("workflows share secrets keys: %v", keys)
	}
	// Removed without an archive: their state leaves the read model.
	for _, id := range []string{removed, removedWaiting, child} {
		e.must(http.StatusNoContent, "DELETE", "/api/workflow/"+id+"/remove?archiveWorkflow=false", nil)
	}
	for _, id := range []string{crashed, restarted, removed, resealed, child} {
		// What a compaction pass does before it erases the keys.
		if _, err := n.Executor().Submit(ctx, id, engine.Compact{}, executor.Meta{RequestID: "compact:" + id}); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{restarted, resealed} {
		e.must(http.StatusNoContent, "POST", "/api/workflow/"+id+"/restart", nil)
		e.waitStatus(id, conductor.WorkflowCompleted)
	}
	newKey := e.secretsKeyOrNone(resealed)
	if newKey == "" || newKey == keys[resealed] {
		t.Fatalf("the restarted workflow that sealed again recorded key %q (it had %q)", newKey, keys[resealed])
	}
	if err := n.Stop(ctx); err != nil {
		t.Fatal(err)
	}

	n2, base2 := nodetest.StartConfig(t, cfg)
	e = &env{t: t, node: n2, base: base2}
	testutil.Eventually(t, 20*time.Second, 50*time.Millisecond, func() error {
		n2.Keys().ClearCache()
		for _, id := range []string{crashed, restarted, removed, resealed, child} {
			if _, err := n2.Keys().DataKey(ctx, keys[id]); !errors.Is(err, secrets.ErrKeyDestroyed) {
				return fmt.Errorf("key of %s not erased: %v", id, err)
			}
		}
		return nil
	})
	for _, id := range []string{kept, removedWaiting} {
		if _, err := n2.Keys().DataKey(ctx, keys[id]); err != nil {
			t.Fatalf("the sweep erased the key of a workflow not compacted (%s): %v", id, err)
		}
	}
	if _, err := n2.Keys().DataKey(ctx, newKey); err != nil {
		t.Fatalf("the sweep erased the new key of a workflow restarted after its compaction: %v", err)
	}
}

// A workflow removed for good, ended or still running, is compacted all
// the same: its events stay in the log, so its key must go, and it leaves
// the compaction list.
func TestCompactionOfARemovedWorkflow(t *testing.T) {
	t.Parallel()
	e := compactingEnv(t, time.Second)
	n := e.node
	e.register(`{"name":"removed","tasks":[{"name":"set","taskReferenceName":"set","type":"SET_VARIABLE","inputParameters":{"done":true}}]}`)
	e.register(`{"name":"removed_running","tasks":[{"name":"gate","taskReferenceName":"gate","type":"WAIT"}]}`)
	input := map[string]any{"_secrets": map[string]any{"token": "remove-me-321"}}
	ended, running := e.start("removed", input), e.start("removed_running", input)
	e.waitStatus(ended, conductor.WorkflowCompleted)
	keys := map[string]string{ended: e.secretsKey(ended), running: e.secretsKey(running)}
	for id := range keys {
		e.must(http.StatusNoContent, "DELETE", "/api/workflow/"+id+"/remove?archiveWorkflow=false", nil)
	}
	ctx := testutil.Context(t, 30*time.Second)
	testutil.Eventually(t, 20*time.Second, 50*time.Millisecond, func() error {
		n.Keys().ClearCache()
		for id, key := range keys {
			if _, err := n.Keys().DataKey(ctx, key); !errors.Is(err, secrets.ErrKeyDestroyed) {
				return fmt.Errorf("the key of removed workflow %s is not destroyed: %v", id, err)
			}
		}
		waiting, err := n.Executions().AwaitingCompaction(ctx, math.MaxInt64, readmodel.Ended{}, 10)
		if err != nil || len(waiting) != 0 {
			return fmt.Errorf("still awaiting compaction: %+v %v", waiting, err)
		}
		return nil
	})
}

// A workflow input its definition only copies into a _secrets block, by
// any task and not only the first, is sealed in the start's record: the
// log never holds it in plaintext, and compaction destroys it with the
// rest. The task that copies it gets the value at hand-off; a rerun after
// compaction gets "***". An input the definition also reads elsewhere
// (a SWITCH's case, a secret's name, UPDATE_SECRET's secretKey, text of a
// task's input) is kept as given, for the decider to read, and masked in
// every view, and in hand-offs after compaction.
func TestInputCopiedIntoSecretsIsSealedAtStart(t *testing.T) {
	t.Parallel()
	e := compactingEnv(t, 2*time.Second)
	const (
		password = "input-pw-Zx81qL4m"
		token    = "input-token-Vb63nR2k"
		apiKey   = "input-key-Pq27wE9n"
	)
	e.putSecret("named_by_input", "stored-by-name-9182")
	e.register(`{"name":"seals_input","tasks":[
	  {"name":"si_first","taskReferenceName":"first"},
	  {"name":"route","taskReferenceName":"route","type":"SWITCH","expression":"m","inputParameters":{"m":"${workflow.input.mode}"},
	   "decisionCases":{"fast-lane":[{"name":"si_use","taskReferenceName":"use","inputParameters":{
	     "_secrets":{"pw":"${workflow.input.creds.password}","key":"${workflow.input.apiKey}","mode":"${workflow.input.mode}"},
	     "plain":"key ${workflow.input.apiKey}","byName":"${workflow.secrets.${workflow.input.secretName}}"}}]}},
	  {"name":"set","taskReferenceName":"set","type":"UPDATE_SECRET",
	   "inputParameters":{"_secrets":{"secretKey":"${workflow.input.target}","secretValue":"${workflow.input.token}"}}}]}`)
	e.work("si_first", 1, func(context.Context, *conductor.Task) (workers.Output, error) { return workers.Output{}, nil })
	got := make(chan map[string]any, 2)
	e.work("si_use", 1, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		got <- task.InputData
		return workers.Output{}, nil
	})
	id := e.start("seals_input", map[string]any{
		"creds": map[string]any{"user": "bob", "password": password}, "token": token, "apiKey": apiKey, "mode": "fast-lane",
		"secretName": "named_by_input", "target": "written_by_input", "note": "kept-as-given"})
	in := <-got
	secrets, _ := in["_secrets"].(map[string]any)
	if secrets["pw"] != password || secrets["key"] != apiKey || secrets["mode"] != "fast-lane" ||
		in["plain"] != "key "+apiKey || in["byName"] != "stored-by-name-9182" {
		t.Fatalf("the task got %v", in)
	}
	wf := e.waitStatus(id, conductor.WorkflowCompleted)
	if wf.Input["creds"] != masking.Mask || wf.Input["token"] != masking.Mask || wf.Input["apiKey"] != masking.Mask ||
		wf.Input["secretName"] != "named_by_input" || wf.Input["note"] != "kept-as-given" {
		t.Fatalf("input reads %v", wf.Input)
	}
	if got := e.must(http.StatusOK, "GET", "/api/secrets/written_by_input", nil); !strings.Contains(got, token) {
		t.Fatalf("UPDATE_SECRET wrote %q", got)
	}
	raw := e.rawLog(id)
	for _, v := range []string{password, token} {
		if strings.Contains(raw, v) {
			t.Fatalf("the workflow's log holds %q in plaintext", v)
		}
	}
	if !strings.Contains(raw, "kept-as-given") || !strings.Contains(raw, "fast-lane") {
		t.Fatal("the log lost the input the decider reads")
	}
	e.waitCompacted(id)
	use := taskByRef(e.workflow(id), "use")
	e.must(http.StatusOK, "POST", "/api/workflow/"+id+"/rerun", conductor.RerunWorkflowRequest{ReRunFromTaskID: use.TaskID})
	in = <-got
	if secrets, _ := in["_secrets"].(map[string]any); secrets["pw"] != masking.Mask || secrets["key"] != masking.Mask || in["byName"] != "stored-by-name-9182" {
		t.Fatalf("a rerun after compaction got %v; want what went into _secrets destroyed", in)
	}
}

// compactingEnv is newEnv on a server that compacts ended workflows after
// delay.
func compactingEnv(t *testing.T, delay time.Duration) *env {
	e, _ := compactingNode(t, delay)
	return e
}

// compactingNode is compactingEnv, and the server's configuration (to
// start it again, or read its data).
func compactingNode(t *testing.T, delay time.Duration) (*env, node.Config) {
	cfg := nodetest.Config(filepath.Join(t.TempDir(), "data"))
	cfg.CompactionDelay = delay
	n, base := nodetest.StartConfig(t, cfg)
	return &env{t: t, node: n, base: base}, cfg
}

// waitCompacted waits for the workflow's compaction to be recorded.
func (e *env) waitCompacted(id string) {
	e.t.Helper()
	testutil.Eventually(e.t, 20*time.Second, 100*time.Millisecond, func() error {
		for _, ev := range e.events(id) {
			if _, ok := ev.(*schemas.WorkflowCompacted); ok {
				return nil
			}
		}
		return fmt.Errorf("not compacted yet")
	})
}

// A task's log line sent once its workflow ended and was compacted (a
// worker still running when the workflow was terminated) is refused (409)
// when the compaction destroyed what redaction would look for in it: the
// workflow's secrets key. One with no key, compacted only to purge the
// cached output it masks (found secret by _masked alone), lost nothing:
// its line is taken, and redacted, as it was before such workflows were
// compacted.
func TestLateLogLineOfACompactedWorkflow(t *testing.T) {
	t.Parallel()
	e := compactingEnv(t, time.Second)
	const token = "late-line-token-Hq52mZ"
	e.register(`{"name":"ll_keyless","tasks":[
	  {"name":"ll_token","taskReferenceName":"a","inputParameters":{"k":"x"},"cacheConfig":{"key":"${k}","ttlInSecond":600}},
	  {"name":"gate","taskReferenceName":"gate","type":"WAIT"},
	  {"name":"ll_hold_keyless","taskReferenceName":"h","inputParameters":{"_masked":{"t":"${a.output.token}"}}}]}`,
		`{"name":"ll_keyed","tasks":[
	  {"name":"ll_hold_keyed","taskReferenceName":"h","inputParameters":{"_secrets":{"t":"${workflow.input._secrets.t}"}}}]}`)
	e.work("ll_token", 1, func(context.Context, *conductor.Task) (workers.Output, error) {
		return workers.Output{Data: map[string]any{"token": token}}, nil
	})
	for _, tc := range []struct {
		name  string
		input map[string]any
		want  int
	}{
		{"keyless", nil, http.StatusNoContent},
		{"keyed", map[string]any{"_secrets": map[string]any{"t": token}}, http.StatusConflict},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := e.start("ll_"+tc.name, tc.input)
			if tc.name == "keyless" {
				// h finds a's output secret by a decision of its own, after
				// the one that cached it.
				testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() error {
					if gate := taskByRef(e.workflow(id), "gate"); gate == nil || gate.Status != conductor.TaskInProgress {
						return errors.New("a has not completed yet")
					}
					return nil
				})
				e.must(http.StatusOK, "POST", "/api/tasks/"+id+"/gate/COMPLETED", nil)
			}
			held := e.takeOne("ll_hold_" + tc.name)
			e.must(http.StatusNoContent, "DELETE", "/api/workflow/"+id, nil)
			e.waitStatus(id, conductor.WorkflowTerminated)
			e.waitCompacted(id)
			if keyed := e.secretsKeyOrNone(id) != ""; keyed != (tc.name == "keyed") {
				t.Fatalf("the workflow recorded a secrets key: %t", keyed)
			}
			status, body := e.do("POST", "/api/tasks/"+held.TaskID+"/log", `"late `+token+`"`)
			if status != tc.want {
				t.Fatalf("a late log line: %d %s, want %d", status, body, tc.want)
			}
			for _, ev := range e.events(id) {
				if l, ok := ev.(*schemas.TaskLogged); ok && strings.Contains(strings.Join(l.Lines, "\n"), token) {
					t.Errorf("the log line is recorded with the token in plain text")
				}
			}
			logs := e.must(http.StatusOK, "GET", "/api/tasks/"+held.TaskID+"/log", nil)
			if strings.Contains(logs, token) {
				t.Errorf("the task's log shows the token: %s", logs)
			}
			if want := tc.want == http.StatusNoContent; strings.Contains(logs, "late ***") != want {
				t.Errorf("the task's log %s; want the late line in it, redacted: %t", logs, want)
			}
		})
	}
}

// What a workflow's definition holds is not secret from anyone who reads
// the definition, so redaction does not rewrite it in what the workflow
// stores: a secret's name an UPDATE_SECRET wrote and a later task reads,
// a script's or a query's text equal to a field of a JSON secret, a
// literal of the output. Rewritten, a task read another secret, or
// computed another answer. The secrets' values still read "***".
func TestDefinitionTextIsNotRedacted(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	password := e.plantSecret("db_password_src", "pw-")
	e.putSecret("dbcreds", `{"user":"postgres","password":"`+password+`","host":"localhost"}`)
	e.putSecret("new_token_src", "token-value-8f3e1c2a")
	e.register(`{"name":"rotate_then_use","tasks":[
	  {"name":"upd","taskReferenceName":"upd","type":"UPDATE_SECRET",
	   "inputParameters":{"_secrets":{"secretKey":"rotate_target","secretValue":"${workflow.secrets.new_token_src}"}}},
	  {"name":"creds","taskReferenceName":"creds","type":"INLINE","inputParameters":{"evaluatorType":"javascript",
	   "expression":"(function(){ return 'pw=' + $.pw + ' for ' + $.user; })()",
	   "pw":"${workflow.secrets.dbcreds.password}","user":"${workflow.secrets.dbcreds.user}"}},
	  {"name":"use","taskReferenceName":"use","type":"INLINE","inputParameters":{"evaluatorType":"javascript",
	   "expression":"(function(){ return 'len ' + $.s.length + ' note: rotate_target done'; })()","s":"${workflow.secrets.rotate_target}"}},
	  {"name":"count","taskReferenceName":"count","type":"JSON_JQ_TRANSFORM",
	   "inputParameters":{"users":["postgres","alice","localhost"],"queryExpression":".users | map(select(. != \"postgres\")) | length"}}],
	 "outputParameters":{"msg":"rotated rotate_target ok","echo":"${creds.output.result}","use":"${use.output.result}","count":"${count.output.result}"}}`)
	wf := e.waitStatus(e.start("rotate_then_use", nil), conductor.WorkflowCompleted)
	want := map[string]any{"msg": "rotated rotate_target ok", "echo": "pw=*** for postgres",
		"use": "len 20 note: rotate_target done", "count": float64(2)}
	for k, v := range want {
		if wf.Output[k] != v {
			t.Errorf("output %s = %v, want %v", k, wf.Output[k], v)
		}
	}
	if view, _ := json.Marshal(wf); strings.Contains(string(view), password) || strings.Contains(string(view), "token-value-8f3e1c2a") {
		t.Fatalf("a secret's value shows: %s", view)
	}
}

// An input the definition reads elsewhere too is kept as given in the
// start's record; once it goes into a _secrets block it reads "***" in
// every view, and compaction replaces it for good: in the read models,
// and in what a restart hands out. A value that went into _masked stays,
// as _masked data does.
func TestCompactionDestroysValuesKeptAsGiven(t *testing.T) {
	t.Parallel()
	e, cfg := compactingNode(t, 2*time.Second)
	n := e.node
	const kept, masked = "kept-value-Hq29xL7c", "masked-value-Rt84kW2p"
	e.register(`{"name":"kept_wf","tasks":[
	  {"name":"kg_plain","taskReferenceName":"k1","inputParameters":{"plain":"${workflow.input.k}","m":"${workflow.input.m}"}},
	  {"name":"kg_secret","taskReferenceName":"k2","inputParameters":{"_secrets":{"pw":"${workflow.input.k}"},"_masked":{"m":"${workflow.input.m}"}}}]}`)
	got := make(chan map[string]any, 4)
	for _, name := range []string{"kg_plain", "kg_secret"} {
		e.work(name, 1, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
			got <- task.InputData
			return workers.Output{}, nil
		})
	}
	id := e.start("kept_wf", map[string]any{"k": kept, "m": masked, "other": "stays-as-given"})
	t.Cleanup(func() {
		if t.Failed() {
			e.logHistory(id) // seen to fail under load once, not since
		}
	})
	if in := <-got; in["plain"] != kept {
		t.Fatalf("k1 got %v", in)
	}
	<-got
	e.waitStatus(id, conductor.WorkflowCompleted)
	e.waitCompacted(id)

	e.must(http.StatusNoContent, "POST", "/api/workflow/"+id+"/restart", nil)
	if in := <-got; in["plain"] != masking.Mask || in["m"] != masked {
		t.Fatalf("a restart after compaction handed k1 %v: want the value that went into _secrets destroyed, the _masked one kept", in)
	}
	in := <-got
	if secrets, _ := in["_secrets"].(map[string]any); secrets["pw"] != masking.Mask {
		t.Fatalf("a restart after compaction handed k2 %v", in)
	}
	if wf := e.waitStatus(id, conductor.WorkflowCompleted); wf.Input["other"] != "stays-as-given" {
		t.Fatalf("input %v", wf.Input)
	}
	e.waitCompacted(id)
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.Stop(sctx); err != nil {
		t.Fatal(err)
	}
	if dump := nodetest.Dump(t, cfg); strings.Contains(dump, kept) {
		t.Fatal("the read models keep the value after compaction")
	}
}

// A field the definition names in maskedFields goes at compaction, as
// Orkes replaces it for good once the workflow is archived: a restart
// after it hands the task "***" for it, where _masked data survives. The
// start's record holds it sealed, in the log for good: it was sealed
// under the key compaction keeps, and a restart was handed the value.
func TestCompactionDestroysMaskedFields(t *testing.T) {
	t.Parallel()
	e := compactingEnv(t, 2*time.Second)
	const card, masked = "card-value-Wd73nP5q", "masked-value-Gs26vK9j"
	e.register(`{"name":"mf_wf","maskedFields":["card"],"tasks":[
	  {"name":"mf_plain","taskReferenceName":"m1","inputParameters":{"card":"${workflow.input.card}","_masked":{"m":"${workflow.input.m}"},"_secrets":{"s":"${workflow.input.s}"}}}]}`)
	got := make(chan map[string]any, 2)
	e.work("mf_plain", 1, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		got <- task.InputData
		return workers.Output{}, nil
	})
	// Its _secrets block has it compacted also where maskedFields alone
	// took no secrets key.
	id := e.start("mf_wf", map[string]any{"card": card, "m": masked, "s": "secret-value-Tq58mB3x"})
	if in := <-got; in["card"] != card {
		t.Fatalf("m1 was handed card of %d characters, want the value", len(fmt.Sprint(in["card"])))
	}
	e.waitStatus(id, conductor.WorkflowCompleted)
	e.waitCompacted(id)

	e.must(http.StatusNoContent, "POST", "/api/workflow/"+id+"/restart", nil)
	in := <-got
	if in["card"] != masking.Mask {
		t.Errorf("a restart after compaction handed m1 card of %d characters, want %q", len(fmt.Sprint(in["card"])), masking.Mask)
	}
	if kept, _ := in["_masked"].(map[string]any); kept["m"] != masked {
		t.Errorf("a restart after compaction handed m1 _masked.m of %d characters, want the value", len(fmt.Sprint(kept["m"])))
	}
	e.waitStatus(id, conductor.WorkflowCompleted)
}

// A value kept as given whose key names it (equal, or within the key's
// text) in the workflow's input, a task's output or the variables is
// marked, once it goes into a _secrets block, by paths that do not spell
// it: the whole input, output or variables. The views show it nowhere,
// keys included; the log's ValuesMasked records do not spell it; and after
// compaction the read models hold it nowhere (compaction destroys values,
// a path naming it was kept).
func TestCompactionDestroysALateSecretAKeyNames(t *testing.T) {
	t.Parallel()
	e, cfg := compactingNode(t, 2*time.Second)
	n := e.node
	const equal, within = "key-value-Zp31qW8e", "key-text-Lm47vB2n"
	values := []string{equal, within}
	e.register(`{"name":"keyname_wf","tasks":[
	  {"name":"kn_plain","taskReferenceName":"k1","inputParameters":{"a":"${workflow.input.a}","b":"${workflow.input.b}"}},
	  {"name":"kn_wait","taskReferenceName":"k3"},
	  {"name":"kn_secret","taskReferenceName":"k2","inputParameters":{"_secrets":{"a":"${workflow.input.a}","b":"${workflow.input.b}"}}}]}`)
	// k3 returns once the variables are set: k1's output and they hold
	// the values, recorded by earlier decisions than the one that puts
	// them in a _secrets block (which redacts what it records itself).
	proceed := make(chan struct{})
	e.work("kn_plain", 1, func(context.Context, *conductor.Task) (workers.Output, error) {
		return workers.Output{Data: map[string]any{equal: equal, "out " + within: within}}, nil
	})
	for _, name := range []string{"kn_wait", "kn_secret"} {
		e.work(name, 1, func(context.Context, *conductor.Task) (workers.Output, error) {
			<-proceed
			return workers.Output{}, nil
		})
	}
	id := e.start("keyname_wf", map[string]any{"a": equal, "b": within, equal: equal, "in " + within: within})
	e.must(http.StatusOK, "POST", "/api/workflow/"+id+"/state", map[string]any{
		"variables": map[string]any{equal: equal, "v " + within: within}})
	close(proceed)
	spells := func(what, s string) {
		t.Helper()
		for _, v := range values {
			if strings.Contains(s, v) {
				t.Errorf("%s holds %s: %s", what, v, s)
			}
		}
	}
	wf := e.waitStatus(id, conductor.WorkflowCompleted)
	view, _ := json.Marshal(wf)
	spells("the view", string(view))
	e.waitCompacted(id)
	for _, ev := range e.events(id) {
		if m, ok := ev.(*schemas.ValuesMasked); ok {
			spells("a ValuesMasked record", strings.Join(slices.Concat(m.Paths, m.Shred), " "))
		}
	}
	view, _ = json.Marshal(e.workflow(id))
	spells("the view after compaction", string(view))
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.Stop(sctx); err != nil {
		t.Fatal(err)
	}
	for _, v := range values {
		if strings.Contains(nodetest.Dump(t, cfg), v) {
			t.Errorf("the read models keep %s after compaction", v)
		}
	}
}

// recordBytes returns the msgpack of every event of a workflow's records
// as the log holds them: a sealed value's purpose is there in plain text,
// which the events' JSON renders as "***".
func (e *env) recordBytes(id string) []byte {
	e.t.Helper()
	var b []byte
	for _, r := range e.records(id) {
		for _, env := range r.Events {
			b = append(b, env.Data...)
		}
	}
	return b
}

// A worker that keys its output by the secrets it was given (under
// _secrets, and under _masked, which compaction keeps) leaves them in no
// record and no read model: not in the stored keys, which read "***",
// nor in the purposes the sealed values are stored with, before
// compaction and after.
func TestSealedValuesKeyedByASecretLeaveItNowhere(t *testing.T) {
	t.Parallel()
	cfg := nodetest.Config(filepath.Join(t.TempDir(), "data"))
	cfg.CompactionDelay = time.Hour // compacted after the restart below
	n, base := nodetest.StartConfig(t, cfg)
	e := &env{t: t, node: n, base: base}
	const tok, other = "purpose-tok-Rz84kQw2", "purpose-other-Gt51mVb7"
	e.putSecret("purpose_tok", tok)
	e.putSecret("purpose_other", other)
	e.register(`{"name":"keyed_by_secret","tasks":[{"name":"keyed","taskReferenceName":"k",
	  "inputParameters":{"tok":"${workflow.secrets.purpose_tok}","other":"${workflow.secrets.purpose_other}"}}]}`)
	given := make(chan map[string]any, 1)
	e.work("keyed", 1, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		given <- task.InputData
		v, _ := task.InputData["tok"].(string)
		w, _ := task.InputData["other"].(string)
		return workers.Output{Data: map[string]any{
			"_secrets": map[string]any{v: v},
			"_masked":  map[string]any{w: "masked-by-its-key"}}}, nil
	})
	id := e.start("keyed_by_secret", nil)
	if in := <-given; in["tok"] != tok || in["other"] != other {
		t.Fatalf("the worker was given %v", in)
	}
	wf := e.waitStatus(id, conductor.WorkflowCompleted)
	if out := taskByRef(wf, "k").OutputData; out["_secrets"] != masking.Mask || out["_masked"] != masking.Mask {
		t.Fatalf("output %v", out)
	}
	e.heldNowhere(cfg, "before compaction", []string{tok, other}, id)
	cfg.CompactionDelay = 0
	e.node, e.base = nodetest.StartConfig(t, cfg)
	e.waitCompacted(id)
	e.heldNowhere(cfg, "after compaction", []string{tok, other}, id)
}

// heldNowhere checks that no value of values is in the records of the
// workflows ids, nor, once it stops e's node (started with cfg), in its
// read models.
func (e *env) heldNowhere(cfg node.Config, when string, values []string, ids ...string) {
	e.t.Helper()
	for _, id := range ids {
		for _, v := range values {
			if bytes.Contains(e.recordBytes(id), []byte(v)) {
				e.t.Errorf("the log's records of %s hold %s %s", id, v, when)
			}
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.node.Stop(sctx); err != nil {
		e.t.Fatal(err)
	}
	dump := nodetest.Dump(e.t, cfg)
	for _, v := range values {
		if strings.Contains(dump, v) {
			e.t.Errorf("the read models hold %s %s", v, when)
		}
	}
}

// A child that the decision taking in a worker's output keyed by its
// secrets starts (a SUB_WORKFLOW or a START_WORKFLOW whose input copies
// the output's _secrets and _masked blocks) gets the keys as its parent
// stores them, "***": the decision computed the child's input from its
// state before sealing, and the child's start record kept the keys as
// given, in its input and in its values' purposes, and so did its read
// models. The child's task gets the values under the keys a task of the
// parent gets them under.
func TestChildStartedWithKeysThatSpellASecretLeavesThemNowhere(t *testing.T) {
	t.Parallel()
	cfg := nodetest.Config(filepath.Join(t.TempDir(), "data"))
	n, base := nodetest.StartConfig(t, cfg)
	e := &env{t: t, node: n, base: base}
	const tok, other = "childkey-tok-Jw63pLx8", "childkey-other-Vc29nRq4"
	e.putSecret("childkey_tok", tok)
	e.putSecret("childkey_other", other)
	const sinkInput = `{"row":"${workflow.input.row}","s":"${workflow.input._secrets}","m":"${workflow.input._masked}"}`
	const childInput = `{"row":"${workflow.input.row}","_secrets":"${k.output._secrets}","_masked":"${k.output._masked}"}`
	src := `{"name":"childkey_src","taskReferenceName":"k",
	  "inputParameters":{"tok":"${workflow.secrets.childkey_tok}","other":"${workflow.secrets.childkey_other}"}}`
	// The parent's own task reads the blocks as its child's does.
	peer := `{"name":"childkey_sink","taskReferenceName":"peer",
	  "inputParameters":{"row":"peer","s":"${k.output._secrets}","m":"${k.output._masked}"}}`
	e.register(`{"name":"childkey_child","tasks":[{"name":"childkey_sink","taskReferenceName":"sink","inputParameters":`+sinkInput+`}]}`,
		`{"name":"childkey_sub","tasks":[`+src+`,{"name":"sub","taskReferenceName":"sub","type":"SUB_WORKFLOW",
		  "subWorkflowParam":{"name":"childkey_child"},"inputParameters":`+childInput+`},`+peer+`]}`,
		`{"name":"childkey_start","tasks":[`+src+`,{"name":"start","taskReferenceName":"start","type":"START_WORKFLOW",
		  "inputParameters":{"startWorkflow":{"name":"childkey_child","input":`+childInput+`}}}]}`)
	e.work("childkey_src", 2, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		v, _ := task.InputData["tok"].(string)
		w, _ := task.InputData["other"].(string)
		return workers.Output{Data: map[string]any{
			"_secrets": map[string]any{v: "childkey-leaf-secret"},
			"_masked":  map[string]any{w: "childkey-leaf-masked"}}}, nil
	})
	got := make(chan map[string]any, 3)
	e.work("childkey_sink", 2, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		got <- task.InputData
		return workers.Output{}, nil
	})
	sub := e.start("childkey_sub", map[string]any{"row": "sub"})
	start := e.start("childkey_start", map[string]any{"row": "start"})
	received := map[string]map[string]any{}
	deadline := time.After(60 * time.Second)
	for len(received) < 3 {
		select {
		case in := <-got:
			received[fmt.Sprint(in["row"])] = in
		case <-deadline:
			t.Fatalf("the sinks got %v", received)
		}
	}
	want := map[string]any{"s": map[string]any{masking.Mask: "childkey-leaf-secret"}, "m": map[string]any{masking.Mask: "childkey-leaf-masked"}}
	for row, in := range received {
		for k, v := range want {
			if !reflect.DeepEqual(in[k], v) {
				t.Errorf("the %s sink got %s = %v, want %v", row, k, in[k], v)
			}
		}
	}
	ids := []string{sub, start}
	parent := e.waitStatus(sub, conductor.WorkflowCompleted)
	ids = append(ids, taskByRef(parent, "sub").SubWorkflowID)
	parent = e.waitStatus(start, conductor.WorkflowCompleted)
	kid, _ := taskByRef(parent, "start").OutputData["workflowId"].(string)
	ids = append(ids, kid)
	for _, id := range ids {
		e.waitStatus(id, conductor.WorkflowCompleted)
	}
	e.heldNowhere(cfg, "once they ended", []string{tok, other}, ids...)
}

// UPDATE_SECRETs of one secret in a fork's branches, named from the
// workflow's plain input, all write it, one after the other: the name
// one branch seals in its _secrets block is no secret value the other
// reads, for the decider nor for the guard.
func TestUpdateSecretsOfOneSecretInAForksBranches(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rotate := func(ref string) string {
		return `[{"name":"r","taskReferenceName":"` + ref + `","type":"UPDATE_SECRET",` +
			`"inputParameters":{"_secrets":{"secretKey":"${workflow.input.name}","secretValue":"v-` + ref + `-1234567"}}}]`
	}
	e.register(`{"name":"rotate_fork","tasks":[{"name":"f","taskReferenceName":"f","type":"FORK_JOIN","forkTasks":[` + rotate("a") + `,` + rotate("b") + `]},` +
		`{"name":"j","taskReferenceName":"j","type":"JOIN","joinOn":["a","b"]}]}`)
	e.waitStatus(e.start("rotate_fork", map[string]any{"name": "rotated_by_fork"}), conductor.WorkflowCompleted)
	if got := e.must(http.StatusOK, "GET", "/api/secrets/rotated_by_fork", nil); got != "v-a-1234567" && got != "v-b-1234567" {
		t.Fatalf("secret = %q, want one branch's value", got)
	}
}
