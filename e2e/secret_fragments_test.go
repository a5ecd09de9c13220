package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/workers"
)

// A worker given a secret builds the definition of the child a
// SUB_WORKFLOW runs (Conductor's dynamic sub-workflow), with the value in
// it, or returns the definition under _secrets: a definition is written
// as given, in plain text, so the child does not start and the task fails
// saying why. Children take secrets in their input.
func TestChildDefinitionFromDataHoldingASecret(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, from string }{
		{"echoed into the output", "${build.output.def}"},
		{"under _secrets", "${build.output._secrets.def}"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			secret := e.plantSecret("child_tok", "ct-")
			wf := "child_def_" + string(rune('a'+i))
			e.register(`{"name":"` + wf + `","tasks":[
			  {"name":"build_def","taskReferenceName":"build","inputParameters":{"k":"${workflow.secrets.child_tok}"}},
			  {"name":"s","taskReferenceName":"s","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"x","workflowDefinition":"` + tt.from + `"}}]}`)
			e.work("build_def", 1, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
				def := map[string]any{"name": "built_child", "version": 1,
					"tasks": []any{map[string]any{"name": "use_tok", "taskReferenceName": "c", "inputParameters": map[string]any{"token": task.InputData["k"]}}}}
				return workers.Output{Data: map[string]any{"def": def, "_secrets": map[string]any{"def": def}}}, nil
			})
			id := e.start(wf, nil)
			got := e.waitStatus(id, conductor.WorkflowFailed)
			s := taskByRef(got, "s")
			if !strings.Contains(s.ReasonForIncompletion, "could not start: the definition of the workflow to start holds a value resolved from a secret") {
				t.Fatalf("SUB_WORKFLOW %s: %q, want it refused for the value in the definition", s.Status, s.ReasonForIncompletion)
			}
			if view, _ := json.Marshal(got); strings.Contains(string(view), secret) {
				t.Errorf("the workflow's view holds the secret: %s", view)
			}
			if strings.Contains(e.rawLog(id), secret) {
				t.Error("the workflow's log records hold the secret in plaintext")
			}
		})
	}
}

// A dynamic fork's task configured by data to read a secret is refused as
// it is scheduled, and shown: GET /api/workflow/{id} lists it in its fork's
// forkedTaskDefs with its configuration (the reference as text), and as its
// own workflowTask, as it shows any forked task. A retry refuses it again,
// for the same reason, and never hands it out: the secret shows nowhere.
func TestForkedTaskRefusedAsScheduledIsShownAndRefusedAgain(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	secret := e.plantSecret("fork_tok", "ft-")
	e.register(`{"name":"refused_fork","tasks":[
	  {"name":"fork","taskReferenceName":"fork","type":"FORK_JOIN_DYNAMIC","dynamicForkTasksParam":"tasks",
	   "inputParameters":{"tasks":"${workflow.input.tasks}"}},
	  {"name":"join","taskReferenceName":"join","type":"JOIN"}]}`)
	config := map[string]any{"name": "use_tok", "taskReferenceName": "refused", "inputParameters": map[string]any{"t": "${workflow.secrets.fork_tok}"}}
	id := e.start("refused_fork", map[string]any{"tasks": []any{map[string]any{"name": "other", "taskReferenceName": "other"}, config}})
	wf := e.waitStatus(id, conductor.WorkflowFailed)
	refused := taskByRef(wf, "refused")
	if refused == nil || refused.Status != conductor.TaskFailedWithTerminalError || !strings.Contains(refused.ReasonForIncompletion, "configured by the workflow's data") {
		t.Fatalf("refused task %+v, want it FAILED_WITH_TERMINAL_ERROR, configured by data", refused)
	}
	var defs []map[string]any
	b, _ := json.Marshal(taskByRef(wf, "fork").InputData["forkedTaskDefs"])
	if err := json.Unmarshal(b, &defs); err != nil || len(defs) != 2 || defs[1]["taskReferenceName"] != "refused" {
		t.Fatalf("forkedTaskDefs %s (%v), want other's and refused's workflowTask", b, err)
	}
	if params := defs[1]["inputParameters"]; !reflect.DeepEqual(params, config["inputParameters"]) {
		t.Fatalf("forkedTaskDefs shows refused's inputParameters %v, want %v", params, config["inputParameters"])
	}
	if own, _ := json.Marshal(refused.WorkflowTask); !bytes.Contains(own, []byte(`"taskReferenceName":"refused"`)) {
		t.Fatalf("refused's workflowTask %s", own)
	}

	e.must(http.StatusNoContent, "POST", "/api/workflow/"+id+"/retry", nil)
	// The retry fails the workflow again as it runs: wait for its run of
	// the task.
	var runs []*conductor.Task
	for deadline := time.Now().Add(30 * time.Second); len(runs) < 2; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the retry did not run refused again: %d runs", len(runs))
		}
		wf, runs = e.waitStatus(id, conductor.WorkflowFailed), nil
		for _, tk := range wf.Tasks {
			if tk.ReferenceTaskName == "refused" {
				runs = append(runs, tk)
			}
		}
	}
	if last := runs[len(runs)-1]; len(runs) != 2 || last.Status != conductor.TaskFailedWithTerminalError ||
		last.ReasonForIncompletion != refused.ReasonForIncompletion || last.PollCount != 0 || last.WorkerID != "" {
		t.Fatalf("after the retry, refused ran %d times, the last %+v; want it refused again as the first", len(runs), last)
	}
	if view, _ := json.Marshal(wf); strings.Contains(string(view), secret) {
		t.Errorf("the workflow's view holds the secret: %s", view)
	}
	if strings.Contains(e.rawLog(id), secret) {
		t.Error("the workflow's log records hold the secret in plaintext")
	}
}

// Error messages that quote part of a value: a secret holding a quote
// breaks a JSON_JQ_TRANSFORM's query, whose parse error quoted the token
// it stopped at, the secret's tail; a WAIT's duration from _secrets data
// that does not parse quoted the part that did not (such a duration now
// fails before it is parsed: the engine does not read sealed data).
// Redaction finds whole values only: the messages say where, not what.
func TestErrorsQuoteNoPartOfASecret(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const tail = "Zq81mWx0Lk27Pv93Hd54"
	e.putSecret("quoted_pw", `pw"`+tail)
	e.register(`{"name":"jq_on_secret","tasks":[
	  {"name":"jq","taskReferenceName":"j","type":"JSON_JQ_TRANSFORM","inputParameters":{"items":[{"t":"a"}],
	   "queryExpression":".items[] | select(.t == \"${workflow.secrets.quoted_pw}\")"}}]}`)
	const prefix = "QzxPFwJfJY4JkWAN"
	e.register(`{"name":"wait_on_secret","tasks":[
	  {"name":"issue_duration","taskReferenceName":"a"},
	  {"name":"w","taskReferenceName":"w","type":"WAIT","inputParameters":{"duration":"${a.output._secrets.d}"}}]}`)
	e.work("issue_duration", 1, func(context.Context, *conductor.Task) (workers.Output, error) {
		return workers.Output{Data: map[string]any{"_secrets": map[string]any{"d": prefix + "-XJ84D3FC0c 5s"}}}, nil
	})
	for _, tt := range []struct{ wf, ref, part, reason string }{
		{"jq_on_secret", "j", tail, "queryExpression does not parse: unexpected token at byte"},
		{"wait_on_secret", "w", prefix, "WAIT w: duration is sealed data, a secret or an environment value"},
	} {
		wf := e.waitStatus(e.start(tt.wf, nil), conductor.WorkflowFailed)
		if reason := taskByRef(wf, tt.ref).ReasonForIncompletion; !strings.Contains(reason, tt.reason) {
			t.Errorf("%s: reason %q, want %q", tt.wf, reason, tt.reason)
		}
		if view, _ := json.Marshal(wf); strings.Contains(string(view), tt.part) {
			t.Errorf("%s: the execution holds part of the secret: %s", tt.wf, view)
		}
		if strings.Contains(e.rawLog(wf.WorkflowID), tt.part) {
			t.Errorf("%s: the log records hold part of the secret", tt.wf)
		}
	}
}

// _secrets data a DYNAMIC task takes for its name fails the task: a name
// is written in plain text, as the task's type and its queue's name.
func TestDynamicTaskNameFromSecretsData(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const value = "dynName7c6b5a4938271605"
	e.register(`{"name":"dyn_from_secrets","tasks":[
	  {"name":"issue_name","taskReferenceName":"a"},
	  {"name":"d","taskReferenceName":"d","type":"DYNAMIC","dynamicTaskNameParam":"tn","inputParameters":{"tn":"${a.output._secrets.n}"}}]}`)
	e.work("issue_name", 1, func(context.Context, *conductor.Task) (workers.Output, error) {
		return workers.Output{Data: map[string]any{"_secrets": map[string]any{"n": value}}}, nil
	})
	id := e.start("dyn_from_secrets", nil)
	wf := e.waitStatus(id, conductor.WorkflowFailed)
	if d := taskByRef(wf, "d"); d.Status != conductor.TaskFailedWithTerminalError || !strings.Contains(d.ReasonForIncompletion, "_secrets or _masked data") {
		t.Errorf("DYNAMIC %s %q, want it failed for a name from _secrets data", d.Status, d.ReasonForIncompletion)
	}
	if view, _ := json.Marshal(wf); strings.Contains(string(view), value) || strings.Contains(e.rawLog(id), value) {
		t.Errorf("the _secrets value is written in plain text: %s", view)
	}
}
