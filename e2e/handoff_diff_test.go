package e2e_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/masking"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// A worker task reaches its worker by one of two hand-offs: a poll that
// waits at the engine when the task is scheduled takes it in the
// scheduling decision's record; a task nobody waits for is announced on
// its queue and taken later, from the stored state. Each row runs its
// workflow once by each and compares what the worker was handed (every
// field but the ids and times of the run): they are equal, and the input
// is what the README promises. The first took its input from the
// decision's state before protection, which handed out what protection
// then redacted (the echo, variable and forms rows).
func TestBothHandOffsHandTheSameTask(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const (
		plain  = "plain-secret-Hq7vN2xR"
		token  = "sealed-token-Zp4kW9mB"
		masked = "masked-value-Lc3tY8qJ"
		card   = "4111-2222-3333-4444"
		envVal = "env-value-Rb5sD1gK"
	)
	e.putSecret("hd_plain", plain)
	e.putSecret("hd_json", `{"user":"hd-user-Vx2q","pass":"hd-pass-Mk8wT3"}`)
	e.putSecret("eu_hd_key", "region-secret-Pf6jA0nE")
	e.must(http.StatusOK, "PUT", "/api/environment/hd_env", envVal)
	b64 := base64.StdEncoding.EncodeToString([]byte(token))
	quoted, _ := json.Marshal(`say "` + token + `"`)

	// Each row's tasks name the worker task compared DST, and the worker
	// task before it (completed by the test with out) SRC.
	rows := []struct {
		name  string
		extra string // more fields of the workflow's definition
		tasks string
		child string // the tasks of a child workflow named after the row
		input map[string]any
		out   map[string]any
		want  map[string]any
		srcIn map[string]any // what SRC must be handed, if checked
		noSrc bool
		// retry: DST's first attempt, taken from its queue, fails; its
		// retry is compared.
		retry   bool
		taskDef string // DST's registered task definition, if any
	}{
		{name: "secret", noSrc: true,
			tasks: `{"name":"DST","taskReferenceName":"dst","inputParameters":{"v":"${workflow.secrets.hd_plain}","t":"Bearer ${workflow.secrets.hd_plain}"}}`,
			want:  map[string]any{"v": plain, "t": "Bearer " + plain}},
		{name: "jsonsecret", noSrc: true,
			tasks: `{"name":"DST","taskReferenceName":"dst","inputParameters":{"v":"${workflow.secrets.hd_json.pass}","t":"u=${workflow.secrets.hd_json.user}"}}`,
			want:  map[string]any{"v": "hd-pass-Mk8wT3", "t": "u=hd-user-Vx2q"}},
		{name: "dynname", noSrc: true, input: map[string]any{"region": "eu"},
			tasks: `{"name":"DST","taskReferenceName":"dst","inputParameters":{"v":"${workflow.secrets.${workflow.input.region}_hd_key}"}}`,
			want:  map[string]any{"v": "region-secret-Pf6jA0nE"}},
		{name: "env", noSrc: true,
			tasks: `{"name":"DST","taskReferenceName":"dst","inputParameters":{"v":"${workflow.env.hd_env}","t":"at ${workflow.env.hd_env}"}}`,
			want:  map[string]any{"v": envVal, "t": "at " + envVal}},
		{name: "escape", noSrc: true,
			tasks: `{"name":"DST","taskReferenceName":"dst","inputParameters":{"v":"$${workflow.secrets.hd_plain}","t":"x $${workflow.input.a}"}}`,
			want:  map[string]any{"v": "${workflow.secrets.hd_plain}", "t": "x ${workflow.input.a}"}},
		{name: "sealedout",
			tasks: `{"name":"SRC","taskReferenceName":"src"},
			  {"name":"DST","taskReferenceName":"dst","inputParameters":{"v":"${src.output._secrets.token}","t":"Bearer ${src.output._secrets.token}","m":"${src.output._masked.m}","tm":"m=${src.output._masked.m}"}}`,
			out:  map[string]any{"_secrets": map[string]any{"token": token}, "_masked": map[string]any{"m": masked}},
			want: map[string]any{"v": token, "t": "Bearer " + token, "m": masked, "tm": "m=" + masked}},
		{name: "wholeout",
			tasks: `{"name":"SRC","taskReferenceName":"src"},
			  {"name":"DST","taskReferenceName":"dst","inputParameters":{"o":"${src.output}"}}`,
			out:  map[string]any{"_secrets": map[string]any{"token": token}, "_masked": map[string]any{"m": masked}, "p": "x"},
			want: map[string]any{"o": map[string]any{"_secrets": map[string]any{"token": token}, "_masked": map[string]any{"m": masked}, "p": "x"}}},
		{name: "samedecisioncopy",
			tasks: `{"name":"SRC","taskReferenceName":"src"},
			  {"name":"DST","taskReferenceName":"dst","inputParameters":{"c":"${src.output.copy}","t":"${src.output.txt}"}}`,
			out:  map[string]any{"_secrets": map[string]any{"token": token}, "copy": token, "txt": "x " + token},
			want: map[string]any{"c": token, "t": "x " + token}},
		{name: "variable",
			tasks: `{"name":"SRC","taskReferenceName":"src"},
			  {"name":"setv","taskReferenceName":"setv","type":"SET_VARIABLE","inputParameters":{"tok":"${src.output._secrets.token}","p":"${workflow.secrets.hd_plain}"}},
			  {"name":"DST","taskReferenceName":"dst","inputParameters":{"v":"${workflow.variables.tok}","p":"${workflow.variables.p}"}}`,
			out: map[string]any{"_secrets": map[string]any{"token": token}},
			// A variable set from a secret is redacted where it is stored.
			want: map[string]any{"v": token, "p": masking.Mask}},
		{name: "template", noSrc: true,
			taskDef: `{"name":"DST","retryCount":0,"inputTemplate":{"k":"${workflow.secrets.hd_plain}","d":"default"}}`,
			tasks:   `{"name":"DST","taskReferenceName":"dst","inputParameters":{"v":"x"}}`,
			want:    map[string]any{"v": "x", "k": plain, "d": "default"}},
		{name: "retry", noSrc: true, retry: true, input: map[string]any{"s": token},
			taskDef: `{"name":"DST","retryCount":1,"retryLogic":"FIXED","retryDelaySeconds":0}`,
			tasks: `{"name":"seal","taskReferenceName":"seal","type":"SET_VARIABLE","inputParameters":{"_secrets":{"s":"${workflow.input.s}"}}},
			  {"name":"DST","taskReferenceName":"dst","inputParameters":{"v":"${workflow.secrets.hd_plain}","t":"Bearer ${workflow.secrets.hd_plain}","s":"${workflow.input.s}"}}`,
			want: map[string]any{"v": plain, "t": "Bearer " + plain, "s": token}},
		{name: "sealedoutlater",
			tasks: `{"name":"SRC","taskReferenceName":"src"},
			  {"name":"WAIT","taskReferenceName":"pause","type":"WAIT","inputParameters":{"duration":"1 seconds"}},
			  {"name":"DST","taskReferenceName":"dst","inputParameters":{"v":"${src.output._secrets.token}","t":"Bearer ${src.output._secrets.token}","m":"${src.output._masked.m}"}}`,
			out:  map[string]any{"_secrets": map[string]any{"token": token}, "_masked": map[string]any{"m": masked}},
			want: map[string]any{"v": token, "t": "Bearer " + token, "m": masked}},
		{name: "maskedfields", noSrc: true, extra: `"maskedFields":["card"],`, input: map[string]any{"card": card},
			tasks: `{"name":"DST","taskReferenceName":"dst","inputParameters":{"v":"${workflow.input.card}","t":"card ${workflow.input.card}"}}`,
			want:  map[string]any{"v": card, "t": "card " + card}},
		{name: "keptthensealed", input: map[string]any{"s": token, "m": masked},
			tasks: `{"name":"SRC","taskReferenceName":"src","inputParameters":{"_secrets":{"s":"${workflow.input.s}"},"_masked":{"m":"${workflow.input.m}"}}},
			  {"name":"DST","taskReferenceName":"dst","inputParameters":{"s":"${workflow.input.s}","m":"${workflow.input.m}","t":"s=${workflow.input.s}"}}`,
			want: map[string]any{"s": token, "m": masked, "t": "s=" + token}},
		{name: "echo",
			tasks: `{"name":"SRC","taskReferenceName":"src","inputParameters":{"k":"${workflow.secrets.hd_plain}"}},
			  {"name":"DST","taskReferenceName":"dst","inputParameters":{"v":"${src.output.echo}","t":"got ${src.output.echo}","o":"${src.output}"}}`,
			srcIn: map[string]any{"k": plain},
			out:   map[string]any{"echo": plain, "other": "x"},
			want:  map[string]any{"v": masking.Mask, "t": "got " + masking.Mask, "o": map[string]any{"echo": masking.Mask, "other": "x"}}},
		{name: "forms",
			tasks: `{"name":"SRC","taskReferenceName":"src"},
			  {"name":"DST","taskReferenceName":"dst","inputParameters":{"b":"${src.output.b}","u":"${src.output.u}","j":"${src.output.j}"}}`,
			out: map[string]any{"_secrets": map[string]any{"token": token}, "b": b64, "u": url.QueryEscape("a=" + token), "j": string(quoted)},
			// The base64 form is redacted in SRC's output, the others hold
			// the value as it is, which is sealed where it is copied.
			want: map[string]any{"b": masking.Mask, "u": url.QueryEscape("a=" + token), "j": string(quoted)}},
		{name: "child",
			tasks: `{"name":"SRC","taskReferenceName":"src"},
			  {"name":"sub","taskReferenceName":"sub","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"CHILD"},
			   "inputParameters":{"tok":"${src.output._secrets.token}","t":"Bearer ${src.output._secrets.token}","m":"${src.output._masked.m}"}}`,
			child: `{"name":"DST","taskReferenceName":"dst","inputParameters":{"tok":"${workflow.input.tok}","t":"${workflow.input.t}","m":"${workflow.input.m}","p":"${workflow.secrets.hd_plain}"}}`,
			out:   map[string]any{"_secrets": map[string]any{"token": token}, "_masked": map[string]any{"m": masked}},
			// Text made of a sealed value reaches the child with the
			// value, as a worker task of the parent gets it.
			want: map[string]any{"tok": token, "t": "Bearer " + token, "m": masked, "p": plain}},
		{name: "loop",
			tasks: `{"name":"loop","taskReferenceName":"loop","type":"DO_WHILE","loopCondition":"false",
			   "loopOver":[{"name":"SRC","taskReferenceName":"src"}]},
			  {"name":"DST","taskReferenceName":"dst","inputParameters":{"v":"${src.output._secrets.token}","t":"Bearer ${src.output._secrets.token}","m":"${src.output._masked.m}"}}`,
			out:  map[string]any{"_secrets": map[string]any{"token": token}, "_masked": map[string]any{"m": masked}},
			want: map[string]any{"v": token, "t": "Bearer " + token, "m": masked}},
		{name: "fork",
			tasks: `{"name":"fork","taskReferenceName":"fork","type":"FORK_JOIN","forkTasks":[
			     [{"name":"SRC","taskReferenceName":"src"}],
			     [{"name":"noop","taskReferenceName":"noop","type":"INLINE","inputParameters":{"evaluatorType":"graaljs","expression":"1"}}]]},
			  {"name":"join","taskReferenceName":"join","type":"JOIN","joinOn":["src","noop"]},
			  {"name":"DST","taskReferenceName":"dst","inputParameters":{"v":"${src.output._secrets.token}","t":"Bearer ${src.output._secrets.token}","m":"${src.output._masked.m}","j":"${join.output}"}}`,
			out:  map[string]any{"_secrets": map[string]any{"token": token}, "_masked": map[string]any{"m": masked}},
			want: map[string]any{"v": token, "t": "Bearer " + token, "m": masked}},
	}
	for _, r := range rows {
		src, dst := "hd_src_"+r.name, "hd_dst_"+r.name
		wfName, child := "hd_"+r.name, "hd_child_"+r.name
		tasks := strings.NewReplacer("SRC", src, "DST", dst, "CHILD", child).Replace(r.tasks)
		if r.child != "" {
			e.register(`{"name":"` + child + `","tasks":[` + strings.NewReplacer("DST", dst).Replace(r.child) + `]}`)
			tasks = strings.NewReplacer("SRC", src, "CHILD", child).Replace(r.tasks)
		}
		if r.taskDef != "" {
			e.must(http.StatusNoContent, "POST", "/api/metadata/taskdefs", "["+strings.ReplaceAll(r.taskDef, "DST", dst)+"]")
		}
		e.register(`{"name":"` + wfName + `",` + r.extra + `"tasks":[` + tasks + `]}`)

		got := map[string]map[string]any{}
		for _, how := range []string{"queued", "matched"} {
			matchedBefore := e.matchedTakes()
			var polled chan []map[string]any
			waitFor := func() {
				if how != "matched" {
					return
				}
				polled = make(chan []map[string]any, 1)
				go func() { polled <- e.rawPoll(dst, "waiting-worker", 20*time.Second) }()
				// The poll must wait at the engine before DST is
				// scheduled (matchedTakes tells whether it did).
				testutil.Eventually(t, 10*time.Second, 5*time.Millisecond, func() error {
					if n := e.engineMetric("flowvault_engine_waiting_polls"); n != 1 {
						return fmt.Errorf("%d polls wait at the engine, want 1", n)
					}
					return nil
				})
			}
			var id string
			if r.noSrc && !r.retry {
				waitFor()
			}
			id = e.start(wfName, r.input)
			if !r.noSrc {
				e.waitQueueSize(src, 1)
				taken := e.rawPoll(src, "src-worker", 0)
				if len(taken) != 1 {
					t.Fatalf("%s %s: polled %d %s tasks", r.name, how, len(taken), src)
				}
				if r.srcIn != nil && !reflect.DeepEqual(taken[0]["inputData"], r.srcIn) {
					t.Fatalf("%s %s: %s got %v, want %v", r.name, how, src, taken[0]["inputData"], r.srcIn)
				}
				if !r.retry {
					waitFor()
				}
				e.must(http.StatusOK, "POST", "/api/tasks", map[string]any{"taskId": taken[0]["taskId"], "workflowInstanceId": id,
					"status": "COMPLETED", "outputData": r.out})
			}
			if r.retry {
				e.waitQueueSize(dst, 1)
				first := e.rawPoll(dst, "first-worker", 0)
				if len(first) != 1 {
					t.Fatalf("%s %s: polled %d %s tasks", r.name, how, len(first), dst)
				}
				waitFor()
				e.must(http.StatusOK, "POST", "/api/tasks", map[string]any{"taskId": first[0]["taskId"], "workflowInstanceId": id,
					"status": "FAILED", "reasonForIncompletion": "failed with " + plain, "outputData": map[string]any{"echo": plain}})
			}
			var task map[string]any
			if how == "matched" {
				var tasks []map[string]any
				select {
				case tasks = <-polled:
				case <-time.After(30 * time.Second):
					t.Fatalf("%s: the waiting poll got nothing", r.name)
				}
				if len(tasks) != 1 {
					t.Fatalf("%s %s: the waiting poll got %d tasks", r.name, how, len(tasks))
				}
				task = tasks[0]
			} else {
				e.waitQueueSize(dst, 1)
				tasks := e.rawPoll(dst, "queued-worker", 0)
				if len(tasks) != 1 {
					t.Fatalf("%s %s: polled %d %s tasks", r.name, how, len(tasks), dst)
				}
				task = tasks[0]
			}
			wantMatched := 0
			if how == "matched" {
				wantMatched = 1
			}
			if n := e.matchedTakes() - matchedBefore; n != wantMatched {
				t.Fatalf("%s %s: %d takes matched with a waiting poll, want %d", r.name, how, n, wantMatched)
			}
			e.must(http.StatusOK, "POST", "/api/tasks", map[string]any{"taskId": task["taskId"], "workflowInstanceId": task["workflowInstanceId"], "status": "COMPLETED"})
			e.waitStatus(id, conductor.WorkflowCompleted)
			got[how] = comparable(task)
		}
		if !reflect.DeepEqual(got["queued"], got["matched"]) {
			q, _ := json.MarshalIndent(got["queued"], "", " ")
			m, _ := json.MarshalIndent(got["matched"], "", " ")
			t.Errorf("%s: the hand-offs differ:\nqueued:  %s\nmatched: %s", r.name, q, m)
		}
		if r.want != nil {
			for how, task := range got {
				in, _ := task["inputData"].(map[string]any)
				for k, want := range r.want {
					if !reflect.DeepEqual(in[k], want) {
						t.Errorf("%s %s: input %s = %v, want %v", r.name, how, k, in[k], want)
					}
				}
			}
		}
	}
}

// comparable is a polled task without what differs between two runs of
// one workflow: ids and times.
func comparable(task map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range task {
		switch k {
		case "taskId", "workflowInstanceId", "scheduledTime", "startTime", "updateTime", "endTime", "firstStartTime",
			"queueWaitTime", "workerId", "parentTaskId", "subWorkflowId", "retriedTaskId":
			continue
		}
		out[k] = v
	}
	return out
}

// rawPoll polls once for taskType and returns the tasks as JSON objects.
func (e *env) rawPoll(taskType, workerID string, wait time.Duration) []map[string]any {
	e.t.Helper()
	q := url.Values{"workerid": {workerID}, "count": {"1"}, "timeout": {fmt.Sprint(wait.Milliseconds())}}
	status, body := e.do("GET", "/api/tasks/poll/batch/"+url.PathEscape(taskType)+"?"+q.Encode(), nil)
	if status != http.StatusOK {
		e.t.Errorf("poll %s: %d %s", taskType, status, body)
		return nil
	}
	var tasks []map[string]any
	if err := json.Unmarshal([]byte(body), &tasks); err != nil {
		e.t.Errorf("poll %s: %v: %s", taskType, err, body)
	}
	return tasks
}

// matchedTakes reads flowvault_engine_matched_takes_total.
func (e *env) matchedTakes() int { return e.engineMetric("flowvault_engine_matched_takes_total") }

// engineMetric reads the value of the metric name (without labels) from
// /metrics: 0 when it is not there yet.
func (e *env) engineMetric(name string) int {
	e.t.Helper()
	for line := range strings.SplitSeq(e.must(http.StatusOK, "GET", "/metrics", nil), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				e.t.Fatalf("metric %s: %v", line, err)
			}
			return int(f)
		}
	}
	return 0
}
