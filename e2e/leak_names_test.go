package e2e_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/flowvault/flowvault/internal/leaktest"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/workers"
)

// A task's name, reference name and domain are its queue, its workers'
// subject and what searches show, as they are: a decision that would name
// a task with a value the workflow resolved (a DYNAMIC task or a dynamic
// fork's branch named after a worker's echo, a variable a SET_VARIABLE
// set from a secret) is not recorded. The result that brought the value
// fails its task for good instead, and nothing anywhere holds the value.
func TestTaskNamedWithASecretIsRefused(t *testing.T) {
	t.Parallel()
	tok := "lk-" + alnum(24)
	scanners := []*leaktest.Scanner{leaktest.New([]byte(tok))}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	n := startLeakNode(ctx, t, nil)
	e := n.env(t, scanners...)
	e.putSecret("tok", tok)
	e.work("ln_src", 2, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		s := fmt.Sprint(task.InputData["s"])
		return workers.Output{Data: map[string]any{
			"tasks":  []any{map[string]any{"name": "ln_branch", "taskReferenceName": "d_" + s}},
			"inputs": map[string]any{"d_" + s: map[string]any{}},
			"name":   "n_" + s}}, nil
	})
	e.work("ln_branch", 2, func(context.Context, *conductor.Task) (workers.Output, error) {
		return workers.Output{Data: map[string]any{"ok": true}}, nil
	})
	e.register(`{"name":"ln_fork","tasks":[
		  {"name":"ln_src","taskReferenceName":"src","inputParameters":{"s":"${workflow.secrets.tok}"}},
		  {"name":"df","taskReferenceName":"df","type":"FORK_JOIN_DYNAMIC","dynamicForkTasksParam":"tasks","dynamicForkTasksInputParamName":"inputs",
		   "inputParameters":{"tasks":"${src.output.tasks}","inputs":"${src.output.inputs}"}},
		  {"name":"dj","taskReferenceName":"dj","type":"JOIN"}]}`,
		`{"name":"ln_dynamic","tasks":[
		  {"name":"ln_src","taskReferenceName":"src","inputParameters":{"s":"${workflow.secrets.tok}"}},
		  {"name":"dt","taskReferenceName":"dt","type":"DYNAMIC","dynamicTaskNameParam":"tn","inputParameters":{"tn":"${src.output.name}"}}]}`,
		`{"name":"ln_variable","tasks":[
		  {"name":"sv","taskReferenceName":"sv","type":"SET_VARIABLE","inputParameters":{"v":"${workflow.secrets.tok}"}},
		  {"name":"dt","taskReferenceName":"dt","type":"DYNAMIC","dynamicTaskNameParam":"tn","inputParameters":{"tn":"${workflow.variables.v}"}}]}`)
	for _, tc := range []struct{ name, refused string }{
		{"ln_fork", "src"},
		{"ln_dynamic", "src"},
		{"ln_variable", "sv"},
	} {
		wf := e.waitStatus(e.start(tc.name, nil), conductor.WorkflowFailed)
		var refused *conductor.Task
		for _, tk := range wf.Tasks {
			if tk.ReferenceTaskName == tc.refused {
				refused = tk
			}
		}
		switch {
		case len(wf.Tasks) != 1 || refused == nil:
			t.Fatalf("%s: tasks %v; want %s alone, its successor never scheduled", tc.name, taskRefs(wf), tc.refused)
		case refused.Status != conductor.TaskFailedWithTerminalError || !strings.Contains(refused.ReasonForIncompletion, "would be named"):
			t.Fatalf("%s: %s %s %q; want it failed for good, saying a task would be named with a secret value",
				tc.name, tc.refused, refused.Status, refused.ReasonForIncompletion)
		}
	}
	e.must(http.StatusOK, "GET", "/api/workflow/search?freeText=*&size=100", nil)
	e.must(http.StatusOK, "GET", "/api/tasks/search?freeText=*&size=100", nil)
	e.must(http.StatusOK, "GET", "/api/tasks/queue/all/verbose", nil)
	e.must(http.StatusOK, "GET", "/metrics", nil)
	n.scanEverything(t, scanners, []string{"tok"})
}

func taskRefs(wf *conductor.Workflow) []string {
	var refs []string
	for _, tk := range wf.Tasks {
		refs = append(refs, tk.ReferenceTaskName+" "+tk.Status)
	}
	return refs
}

// Every field that names something (a child workflow, its idempotency
// key and domains, a started workflow's correlation id, a task's name or
// reference name, a case, an event's subject, a wait's time, a variable,
// an output's keys, a cached output's key, the secret an UPDATE_SECRET
// writes, a worker) given a secret, a worker's _secrets data or a
// worker's echo of a secret: the shape either fails naming the field, or
// runs with "***" where the value would be, and neither value is
// anywhere afterwards, the names of the data dir's files included.
func TestNamesMadeOfSecretValues(t *testing.T) {
	t.Parallel()
	// S is the shape's secret; ${src.output._secrets.v} its data,
	// ${src.output.echo} the worker's echo of the secret, and
	// ${workflow.input.card} a maskedFields field of its input.
	sub := func(param string) string {
		return `{"name":"c","taskReferenceName":"c","type":"SUB_WORKFLOW","subWorkflowParam":{` + param + `}}`
	}
	start := func(request string) string {
		return `{"name":"c","taskReferenceName":"c","type":"START_WORKFLOW","inputParameters":{"startWorkflow":{` + request + `}}}`
	}
	fork := func(tasks, inputs string) string {
		return `{"name":"df","taskReferenceName":"df","type":"FORK_JOIN_DYNAMIC","dynamicForkTasksParam":"tasks","dynamicForkTasksInputParamName":"inputs",
		  "inputParameters":{"tasks":` + tasks + `,"inputs":` + inputs + `}},{"name":"dj","taskReferenceName":"dj","type":"JOIN"}`
	}
	switchOn := func(evaluator, expression, x string) string {
		return `{"name":"sw","taskReferenceName":"sw","type":"SWITCH","evaluatorType":"` + evaluator + `","expression":"` + expression + `",
		  "inputParameters":{"x":"` + x + `"},"decisionCases":{"nope":[]},"defaultCase":[]}`
	}
	call := func(request string) string {
		return `{"name":"h","taskReferenceName":"h","type":"HTTP","optional":true,"inputParameters":{"http_request":{` + request + `,"connectionTimeOut":2000,"readTimeOut":2000}}}`
	}
	setFrom := func(ref string) string {
		return `{"name":"v","taskReferenceName":"v","type":"SET_VARIABLE","inputParameters":{"m":"${` + ref + `.output.result}"}}`
	}
	cached := func(k string) string {
		return `{"name":"nm_sink","taskReferenceName":"k","inputParameters":{"k":"` + k + `"},"cacheConfig":{"key":"${k}","ttlInSecond":600}}`
	}
	rotate := func(name string) string {
		return `{"name":"r","taskReferenceName":"r","type":"UPDATE_SECRET","inputParameters":{"_secrets":{"secretKey":"` + name + `","secretValue":"v"}}}`
	}
	const sealed = "is sealed data, a secret or an environment value"
	shapes := []struct {
		name, tasks string
		status      string // the workflow's
		reason      string // in its reason or a task's; "" for none looked for
	}{
		{"sub_name_secret", sub(`"name":"S"`), conductor.WorkflowFailed, "subWorkflowParam.name " + sealed},
		{"sub_name_data", sub(`"name":"${src.output._secrets.v}"`), conductor.WorkflowFailed, "subWorkflowParam.name " + sealed},
		{"sub_name_echo", sub(`"name":"${src.output.echo}"`), conductor.WorkflowFailed, "No such workflow found by name: ***"},
		{"sub_key_secret", sub(`"name":"nm_child","idempotencyKey":"S"`), conductor.WorkflowFailed, "subWorkflowParam.idempotencyKey " + sealed},
		{"sub_key_data", sub(`"name":"nm_child","idempotencyKey":"${src.output._secrets.v}"`), conductor.WorkflowFailed, "subWorkflowParam.idempotencyKey " + sealed},
		{"sub_key_echo", sub(`"name":"nm_child","idempotencyKey":"${src.output.echo}"`), conductor.WorkflowFailed, "idempotencyKey holds a value resolved from a secret"},
		{"sub_domain_secret", sub(`"name":"nm_child","taskToDomain":{"*":"S"}`), conductor.WorkflowFailed, "subWorkflowParam.taskToDomain.* " + sealed},
		{"sub_domain_data", sub(`"name":"nm_child","taskToDomain":{"*":"${src.output._secrets.v}"}`), conductor.WorkflowFailed, "subWorkflowParam.taskToDomain.* " + sealed},
		{"sub_domain_echo", sub(`"name":"nm_child","taskToDomain":{"*":"${src.output.echo}"}`), conductor.WorkflowCompleted, ""},
		{"sub_def_data", sub(`"name":"x","workflowDefinition":"${src.output._secrets.def}"`), conductor.WorkflowFailed, "holds a value resolved from a secret or sealed"},
		{"sub_def_echo", sub(`"name":"x","workflowDefinition":"${src.output.def}"`), conductor.WorkflowFailed, "holds a value resolved from a secret or sealed"},
		{"start_name_secret", start(`"name":"S"`), conductor.WorkflowFailed, "startWorkflow.name " + sealed},
		{"start_name_data", start(`"name":"${src.output._secrets.v}"`), conductor.WorkflowFailed, "startWorkflow.name " + sealed},
		{"start_name_echo", start(`"name":"${src.output.echo}"`), conductor.WorkflowFailed, "No such workflow found by name: ***"},
		{"start_corr_secret", start(`"name":"nm_child","correlationId":"S"`), conductor.WorkflowFailed, "startWorkflow.correlationId " + sealed},
		{"start_corr_data", start(`"name":"nm_child","correlationId":"${src.output._secrets.v}"`), conductor.WorkflowFailed, "startWorkflow.correlationId " + sealed},
		{"start_corr_echo", start(`"name":"nm_child","correlationId":"${src.output.echo}"`), conductor.WorkflowCompleted, ""},
		{"start_key_secret", start(`"name":"nm_child","idempotencyKey":"S"`), conductor.WorkflowFailed, "startWorkflow.idempotencyKey " + sealed},
		{"start_key_data", start(`"name":"nm_child","idempotencyKey":"${src.output._secrets.v}"`), conductor.WorkflowFailed, "startWorkflow.idempotencyKey " + sealed},
		{"start_domain_secret", start(`"name":"nm_child","taskToDomain":{"*":"S"}`), conductor.WorkflowFailed, "startWorkflow.taskToDomain.* " + sealed},
		{"start_domain_data", start(`"name":"nm_child","taskToDomain":{"*":"${src.output._secrets.v}"}`), conductor.WorkflowFailed, "startWorkflow.taskToDomain.* " + sealed},
		{"start_domain_echo", start(`"name":"nm_child","taskToDomain":{"*":"${src.output.echo}"}`), conductor.WorkflowCompleted, ""},
		{"dynamic_secret", `{"name":"d","taskReferenceName":"d","type":"DYNAMIC","dynamicTaskNameParam":"tn","inputParameters":{"tn":"S"}}`,
			conductor.WorkflowFailed, "DYNAMIC d: tn " + sealed},
		{"dynamic_data", `{"name":"d","taskReferenceName":"d","type":"DYNAMIC","dynamicTaskNameParam":"tn","inputParameters":{"tn":"${src.output._secrets.v}"}}`,
			conductor.WorkflowFailed, "takes its task name from the workflow's _secrets"},
		{"fork_ref_secret", fork(`[{"name":"nm_sink","taskReferenceName":"S"}]`, `{}`), conductor.WorkflowFailed, "tasks[0].taskReferenceName " + sealed},
		{"fork_ref_data", fork(`"${src.output._secrets.tasks}"`, `"${src.output._secrets.inputs}"`), conductor.WorkflowFailed, "takes its name or reference name from"},
		{"switch_value_secret", switchOn("value-param", "x", "S"), conductor.WorkflowCompleted, ""},
		{"switch_value_data", switchOn("value-param", "x", "${src.output._secrets.v}"), conductor.WorkflowCompleted, ""},
		{"switch_script_secret", switchOn("javascript", "$.x", "S"), conductor.WorkflowCompleted, ""},
		{"switch_script_data", switchOn("javascript", "$.x", "${src.output._secrets.v}"), conductor.WorkflowCompleted, ""},
		{"loop_condition_secret", `{"name":"l","taskReferenceName":"l","type":"DO_WHILE","inputParameters":{"x":"S"},"loopCondition":"if ($.x == 'nope') { true; } else { false; }",
		  "loopOver":[{"name":"lv","taskReferenceName":"lv","type":"SET_VARIABLE","inputParameters":{"a":1}}]}`, conductor.WorkflowCompleted, ""},
		{"http_host_secret", call(`"uri":"http://S.invalid/","method":"GET"`), conductor.WorkflowCompleted, ""},
		{"http_host_data", call(`"uri":"http://${src.output._secrets.v}.invalid/","method":"GET"`), conductor.WorkflowCompleted, ""},
		{"http_method_secret", call(`"uri":"http://127.0.0.1:1/","method":"S"`), conductor.WorkflowCompleted, "is not a standard HTTP method"},
		{"http_content_type_secret", call(`"uri":"http://127.0.0.1:1/","method":"POST","contentType":"S","body":{"a":1}`), conductor.WorkflowCompleted, ""},
		{"wait_until_secret", `{"name":"w","taskReferenceName":"w","type":"WAIT","inputParameters":{"until":"S"}}`, conductor.WorkflowFailed, "until " + sealed},
		{"wait_until_data", `{"name":"w","taskReferenceName":"w","type":"WAIT","inputParameters":{"until":"${src.output._secrets.v}"}}`, conductor.WorkflowFailed, "until " + sealed},
		{"wait_duration_data", `{"name":"w","taskReferenceName":"w","type":"WAIT","inputParameters":{"duration":"${src.output._secrets.v}"}}`, conductor.WorkflowFailed, "duration " + sealed},
		{"terminate_status_secret", `{"name":"t","taskReferenceName":"t","type":"TERMINATE","inputParameters":{"terminationStatus":"S"}}`, conductor.WorkflowFailed, "terminationStatus " + sealed},
		{"terminate_reason_data", `{"name":"t","taskReferenceName":"t","type":"TERMINATE","inputParameters":{"terminationStatus":"FAILED","terminationReason":"${src.output._secrets.v}"}}`,
			conductor.WorkflowFailed, "terminationReason " + sealed},
		{"event_sink_secret", `{"name":"e","taskReferenceName":"e","type":"EVENT","sink":"nats:S"}`, conductor.WorkflowFailed, "is not resolved for an EVENT task"},
		{"event_sink_data", `{"name":"e","taskReferenceName":"e","type":"EVENT","sink":"nats:${src.output._secrets.v}"}`, conductor.WorkflowFailed, "no sink"},
		{"event_sink_echo", `{"name":"e","taskReferenceName":"e","type":"EVENT","sink":"nats:${src.output.echo}"}`, conductor.WorkflowCompleted, ""},
		{"inline_key_secret", `{"name":"i","taskReferenceName":"i","type":"INLINE","inputParameters":{"evaluatorType":"javascript","s":"S",
		  "expression":"(function(){var o={}; o[$.s]=1; return o;})()"}},` + setFrom("i"), conductor.WorkflowCompleted, ""},
		{"jq_key_secret", `{"name":"j","taskReferenceName":"j","type":"JSON_JQ_TRANSFORM","inputParameters":{"s":"S","queryExpression":"{(.s): 1}"}},` + setFrom("j"),
			conductor.WorkflowCompleted, ""},
		{"jq_key_data", `{"name":"j","taskReferenceName":"j","type":"JSON_JQ_TRANSFORM","inputParameters":{"s":"${src.output._secrets.v}","queryExpression":"{(.s): 1}"}},` + setFrom("j"),
			conductor.WorkflowCompleted, ""},
		{"variable_named_secret", `{"name":"v","taskReferenceName":"v","type":"SET_VARIABLE","inputParameters":{"S":1}}`, conductor.WorkflowCompleted, ""},
		{"output_key_echo", `{"name":"nm_sink","taskReferenceName":"k","inputParameters":{"o":"${src.output.obj}"}}`, conductor.WorkflowCompleted, ""},
		{"secrets_key_echo", `{"name":"nm_sink","taskReferenceName":"k","inputParameters":{"o":"${src.output._secrets.ks}"}}`, conductor.WorkflowCompleted, ""},
		{"cache_key_secret", cached("S"), conductor.WorkflowCompleted, ""},
		{"cache_key_data", cached("${src.output._secrets.v}"), conductor.WorkflowCompleted, ""},
		{"cache_key_echo", cached("${src.output.echo}"), conductor.WorkflowCompleted, ""},
		{"secret_name_secret", rotate("S"), conductor.WorkflowFailed, "_secrets.secretKey " + sealed},
		{"secret_name_data", rotate("${src.output._secrets.v}"), conductor.WorkflowFailed, "_secrets.secretKey " + sealed},
		{"secret_name_echo", rotate("${src.output.echo}"), conductor.WorkflowFailed, "would name the secret it writes with a value"},
		{"secret_name_masked", rotate("${workflow.input.card}"), conductor.WorkflowFailed, "_secrets.secretKey " + sealed},
		{"sub_name_masked", sub(`"name":"${workflow.input.card}"`), conductor.WorkflowFailed, "subWorkflowParam.name " + sealed},
		{"start_corr_masked", start(`"name":"nm_child","correlationId":"${workflow.input.card}"`), conductor.WorkflowFailed, "startWorkflow.correlationId " + sealed},
		{"dynamic_masked", `{"name":"d","taskReferenceName":"d","type":"DYNAMIC","dynamicTaskNameParam":"tn","inputParameters":{"tn":"${workflow.input.card}"}}`,
			conductor.WorkflowFailed, `input "tn" holds no task name`},
		{"event_sink_masked", `{"name":"e","taskReferenceName":"e","type":"EVENT","sink":"nats:${workflow.input.card}"}`, conductor.WorkflowCompleted, ""},
		{"cache_key_masked", cached("${workflow.input.card}"), conductor.WorkflowCompleted, ""},
		{"worker_id_secret", `{"name":"nm_self","taskReferenceName":"self","inputParameters":{"s":"S"}}`, conductor.WorkflowCompleted, ""},
	}
	// Each shape has a workflow, a secret and _secrets data of its own:
	// values in lower case, which a host name may be made of.
	vals := map[string]string{}
	for _, tc := range shapes {
		vals[tc.name] = strings.ToLower("s" + alnum(30))
		vals[tc.name+" data"] = strings.ToLower("d" + alnum(30))
		vals[tc.name+" card"] = strings.ToLower("c" + alnum(30))
	}
	scanners, names := scannersOf(vals)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	n := startLeakNode(ctx, t, nil)
	e := n.env(t, scanners...)
	// Every subject a message is published to, and its headers (an
	// EVENT's sink is a subject no stream keeps): their data are left
	// out, as a hand-off carries the secret to its worker.
	published, err := n.Log().Conn().Subscribe(">", func(m *nats.Msg) {
		var hdr bytes.Buffer
		_ = http.Header(m.Header).Write(&hdr)
		for _, sc := range scanners {
			sc.Scan("published message's subject and headers", append([]byte(m.Subject+"\n"), hdr.Bytes()...))
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	e.must(http.StatusNoContent, "POST", "/api/metadata/taskdefs", `[{"name":"nm_src","retryCount":0},{"name":"nm_sink","retryCount":0},{"name":"nm_self","retryCount":0}]`)
	e.register(`{"name":"nm_child","tasks":[{"name":"v","taskReferenceName":"v","type":"SET_VARIABLE","inputParameters":{"a":1}}]}`)
	// The source of each shape's data, and of its echo of the secret.
	e.work("nm_src", 2, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		s, data := fmt.Sprint(task.InputData["s"]), vals[strings.TrimPrefix(task.WorkflowType, "nm_")+" data"]
		def := func(v string) map[string]any {
			return map[string]any{"name": v, "tasks": []any{map[string]any{"name": "dv", "taskReferenceName": v, "type": "SET_VARIABLE", "inputParameters": map[string]any{"z": 1}}}}
		}
		return workers.Output{Data: map[string]any{"echo": s, "obj": map[string]any{s: 1}, "def": def(s),
			"_secrets": map[string]any{"v": data, "ks": map[string]any{s: 1}, "def": def(data),
				"tasks": []any{map[string]any{"name": "nm_leaf", "taskReferenceName": data}}, "inputs": map[string]any{data: map[string]any{}}}}}, nil
	})
	e.work("nm_sink", 2, func(context.Context, *conductor.Task) (workers.Output, error) {
		return workers.Output{Data: map[string]any{"ok": true}}, nil
	})
	ids := map[string]string{}
	for _, tc := range shapes {
		e.putSecret(tc.name, vals[tc.name])
		ref := "${workflow.secrets." + tc.name + "}"
		src := `{"name":"nm_src","taskReferenceName":"src","inputParameters":{"s":"S"}},`
		def := strings.NewReplacer(`"S"`, `"`+ref+`"`, `//S.`, `//`+ref+`.`, `nats:S"`, `nats:`+ref+`"`).Replace(src + tc.tasks)
		e.register(`{"name":"nm_` + tc.name + `","maskedFields":["card"],"tasks":[` + def + `],"outputParameters":{"variables":"${workflow.variables}"}}`)
		ids[tc.name] = e.start("nm_"+tc.name, map[string]any{"card": vals[tc.name+" card"]})
	}
	// A worker that names itself with the secret it was handed.
	self := e.takeOne("nm_self")
	e.expect(e.call("POST", "/api/tasks", map[string]any{"taskId": self.TaskID, "workflowInstanceId": self.WorkflowInstanceID,
		"status": "COMPLETED", "workerId": fmt.Sprint(self.InputData["s"]), "outputData": map[string]any{}}, "application/json"), http.StatusOK, "text/plain")
	for _, tc := range shapes {
		wf := e.waitStatus(ids[tc.name], tc.status)
		if tc.reason == "" {
			continue
		}
		reasons := []string{wf.ReasonForIncompletion}
		for _, tk := range wf.Tasks {
			reasons = append(reasons, tk.ReasonForIncompletion)
		}
		if !slices.ContainsFunc(reasons, func(r string) bool { return strings.Contains(r, tc.reason) }) {
			t.Errorf("%s: reasons %q, want one saying %q", tc.name, reasons, tc.reason)
		}
	}
	for _, p := range []string{"/api/workflow/search?freeText=*&size=100", "/api/tasks/search?freeText=*&size=100",
		"/api/tasks/queue/all/verbose", "/metrics", "/api/secrets", "/api/secrets-v2"} {
		e.must(http.StatusOK, "GET", p, nil)
	}
	for _, id := range ids {
		e.must(http.StatusOK, "GET", "/api/workflow/"+id+"?includeTasks=true", nil)
	}
	if err := published.Drain(); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 30*time.Second, 10*time.Millisecond, func() error {
		if published.IsValid() {
			return errors.New("the subscription to every subject is still draining")
		}
		return nil
	})
	if scanners[0].Scanned()["published"] == 0 {
		t.Fatal("no published message was searched")
	}
	n.scanEverything(t, scanners, names)
}
