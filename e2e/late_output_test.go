package e2e_test

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flowvault/flowvault/internal/nodetest"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/node"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/workers"
)

// A value found to be secret later (a workflow input, or a task's output,
// that a task passes into a _secrets block) may reach the workflow's
// output: its outputParameters (also evaluated in the decision that seals
// it), the last task's output, a TERMINATE's workflowOutput, a child's
// output copied through its SUB_WORKFLOW task, a failed workflow's output
// and reason, which its failure workflow's input copies. The output is
// written as the workflow ends, after the value was sealed, and redaction
// replaces it there: no view shows it (the execution, its status with the
// output, the search, the failure workflow's), and after compaction the
// read models hold it nowhere. (The child is told of it as it ends, see
// TestLateSecretReachesTheChildren, and once compacted before its parent
// found the value, TestLateSecretShreddedInACompactedChild: its lines are
// not searched here.)
func TestLateSecretInTheWorkflowsOutput(t *testing.T) {
	t.Parallel()
	e, cfg := compactingNode(t, 2*time.Second)
	n := e.node
	// wo_echo returns what it is given as v; wo_fail fails quoting it.
	e.work("wo_plain", 2, succeed)
	e.work("wo_seal", 2, succeed)
	e.work("wo_echo", 2, echoV)
	e.work("wo_fail", 2, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		return workers.Output{}, fmt.Errorf("refused %v", task.InputData["v"])
	})
	const (
		plain   = `{"name":"wo_plain","taskReferenceName":"plain","inputParameters":{"p":"${workflow.input.pw}"}}`
		seal    = `{"name":"wo_seal","taskReferenceName":"seal","inputParameters":{"_secrets":{"pw":"${workflow.input.pw}"}}}`
		setVar  = `{"name":"sv","taskReferenceName":"sv","type":"SET_VARIABLE","inputParameters":{"_secrets":{"pw":"${workflow.input.pw}"}}}`
		echo    = `{"name":"wo_echo","taskReferenceName":"src","inputParameters":{"v":"${workflow.input.pw}"}}`
		sealSrc = `{"name":"wo_seal","taskReferenceName":"seal","inputParameters":{"_secrets":{"v":"${src.output.v}"}}}`
		outIn   = `"outputParameters":{"pw":"${workflow.input.pw}","text":"pw=${workflow.input.pw}","all":"${workflow.input}"}`
	)
	e.must(http.StatusNoContent, "POST", "/api/metadata/taskdefs", `[{"name":"wo_fail","retryCount":0}]`)
	e.register(
		`{"name":"wo_child","tasks":[`+echo+`],"outputParameters":{"v":"${src.output.v}"}}`,
		`{"name":"wo_failure","tasks":[{"name":"wo_plain","taskReferenceName":"plain","inputParameters":{"p":"${workflow.input.reason}"}}],
		  "outputParameters":{"in":"${workflow.input}"}}`,
	)
	values := map[string]string{} // by row
	var children []string         // whose own data holds a value
	for _, tc := range []struct {
		name, wf, def, status string
	}{
		{"input copied by outputParameters, sealed by the last task", "wo_last",
			`[` + plain + `,` + seal + `],` + outIn, conductor.WorkflowCompleted},
		{"input copied by outputParameters, sealed as the workflow ends", "wo_end",
			`[` + plain + `,` + setVar + `],` + outIn, conductor.WorkflowCompleted},
		{"task output copied by outputParameters, sealed by a later task", "wo_task",
			`[` + echo + `,` + sealSrc + `],"outputParameters":{"v":"${src.output.v}","out":"${src.output}"}`, conductor.WorkflowCompleted},
		{"the last task's output, the default output", "wo_default",
			`[` + seal + `,` + echo + `]`, conductor.WorkflowCompleted},
		{"a TERMINATE's workflowOutput", "wo_term", `[` + plain + `,` + seal + `,
		  {"name":"term","taskReferenceName":"term","type":"TERMINATE","inputParameters":{"terminationStatus":"COMPLETED",
		   "workflowOutput":{"pw":"${workflow.input.pw}","text":"pw=${workflow.input.pw}"}}}]`, conductor.WorkflowCompleted},
		{"a child's output through its SUB_WORKFLOW task", "wo_parent", `[
		  {"name":"sub","taskReferenceName":"sub","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"wo_child"},"inputParameters":{"pw":"${workflow.input.pw}"}},
		  {"name":"wo_seal","taskReferenceName":"seal","inputParameters":{"_secrets":{"v":"${sub.output.v}"}}}],
		  "outputParameters":{"v":"${sub.output.v}","out":"${sub.output}"}`, conductor.WorkflowCompleted},
		{"a failed workflow's output and reason, its failure workflow's input", "wo_failed",
			`[` + plain + `,` + seal + `,{"name":"wo_fail","taskReferenceName":"fail","inputParameters":{"v":"${workflow.input.pw}"}}],` + outIn,
			conductor.WorkflowFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := &env{t: t, node: n, base: e.base}
			pw := "late-output-" + alnum(16)
			values[tc.name] = pw
			failure := ""
			if tc.status == conductor.WorkflowFailed {
				failure = `"failureWorkflow":"wo_failure",`
			}
			e.register(`{"name":"` + tc.wf + `",` + failure + `"tasks":` + tc.def + `}`)
			id := e.start(tc.wf, map[string]any{"pw": pw})
			wf := e.waitStatus(id, tc.status)
			ids := []string{id}
			if fw, ok := wf.Output["conductor.failure_workflow"].(string); ok {
				e.waitStatus(fw, conductor.WorkflowCompleted)
				ids = append(ids, fw)
			} else if tc.status == conductor.WorkflowFailed {
				t.Fatalf("no failure workflow: output %v", wf.Output)
			}
			if sub := taskByRef(wf, "sub"); sub != nil {
				children = append(children, sub.SubWorkflowID)
			}
			shows := func(when string) {
				t.Helper()
				for _, id := range ids {
					for _, path := range []string{"/api/workflow/" + id, "/api/workflow/" + id + "/status?includeOutput=true&includeVariables=true",
						"/api/workflow/search?freeText=" + id + "&size=10"} {
						if body := e.must(http.StatusOK, "GET", path, nil); strings.Contains(body, pw) {
							t.Errorf("%s: GET %s shows the value: %s", when, path, body)
						}
					}
				}
			}
			shows("as it ends")
			for _, id := range ids {
				e.waitCompacted(id)
			}
			shows("after compaction")
		})
	}
	dump := stopForDump(t, n, cfg)
	for name, v := range values {
		for _, l := range dump {
			if strings.Contains(l, v) && !slices.ContainsFunc(children, func(id string) bool { return strings.Contains(l, id) }) {
				t.Errorf("%s: the read models keep the value after compaction: %.300q", name, l)
			}
		}
	}
}

// stopForDump stops n and returns the lines of its read models' dump.
func stopForDump(t *testing.T, n *node.Node, cfg node.Config) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := n.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	return strings.Split(nodetest.Dump(t, cfg), "\n")
}

// A value found to be secret later is looked for in what the workflow
// writes afterwards by an engine whose memo of the workflow is rebuilt
// from its state (this one after a restart, another one), also once the
// task whose _secrets block sealed it is gone (a jump dropped it) while
// the input keeps it as given, marked: the output its outputParameters
// copy it into reads "***", as does the input of a task that copies it,
// whose worker is handed the value. Both held it in plain text, in every
// view and, the output, in the read models after compaction.
func TestLateSecretLookedForAfterAJumpAndARestart(t *testing.T) {
	t.Parallel()
	cfg := nodetest.Config(filepath.Join(t.TempDir(), "data"))
	cfg.CompactionDelay = 2 * time.Second
	n, base := nodetest.StartConfig(t, cfg)
	e := &env{t: t, node: n, base: base}
	pw := "late-output-" + alnum(16)
	e.work("wo_seal", 1, succeed)
	e.register(`{"name":"wo_jump","tasks":[
	  {"name":"g1","taskReferenceName":"g1","type":"WAIT"},
	  {"name":"sw","taskReferenceName":"sw","type":"SWITCH","evaluatorType":"value-param","expression":"go","inputParameters":{"go":"${g1.output.go}"},
	   "decisionCases":{"seal":[{"name":"wo_seal","taskReferenceName":"seal","inputParameters":{"_secrets":{"pw":"${workflow.input.pw}"}}}]},
	   "defaultCase":[{"name":"wo_use","taskReferenceName":"use","inputParameters":{"p":"${workflow.input.pw}"}}]},
	  {"name":"g2","taskReferenceName":"g2","type":"WAIT"}],
	  "outputParameters":{"pw":"${workflow.input.pw}","text":"pw=${workflow.input.pw}"}}`)
	id := e.start("wo_jump", map[string]any{"pw": pw})
	waiting := func(e *env, ref string) {
		testutil.Eventually(t, 30*time.Second, 50*time.Millisecond, func() error {
			if tk := taskByRef(e.workflow(id), ref); tk == nil || tk.Status != conductor.TaskInProgress {
				return fmt.Errorf("%s does not wait yet", ref)
			}
			return nil
		})
	}
	waiting(e, "g1")
	e.must(http.StatusOK, "POST", "/api/tasks/"+id+"/g1/COMPLETED", map[string]any{"go": "seal"})
	waiting(e, "g2")
	e.must(http.StatusOK, "POST", "/api/workflow/"+id+"/jump/g1", nil)
	waiting(e, "g1")
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.Stop(sctx); err != nil {
		t.Fatal(err)
	}
	n, base = nodetest.StartConfig(t, cfg)
	e = &env{t: t, node: n, base: base}
	got := make(chan any, 1)
	e.work("wo_use", 1, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		got <- task.InputData["p"]
		return workers.Output{}, nil
	})
	e.must(http.StatusOK, "POST", "/api/tasks/"+id+"/g1/COMPLETED", map[string]any{"go": "skip"})
	if p := <-got; p != pw {
		t.Errorf("use was handed %d characters, want the value", len(fmt.Sprint(p)))
	}
	waiting(e, "g2")
	e.must(http.StatusOK, "POST", "/api/tasks/"+id+"/g2/COMPLETED", nil)
	e.waitStatus(id, conductor.WorkflowCompleted)
	for _, path := range []string{"/api/workflow/" + id, "/api/workflow/" + id + "/status?includeOutput=true",
		"/api/workflow/search?freeText=" + id + "&size=10"} {
		if body := e.must(http.StatusOK, "GET", path, nil); strings.Contains(body, pw) {
			t.Errorf("GET %s shows the value: %s", path, body)
		}
	}
	e.waitCompacted(id)
	if err := n.Stop(sctx); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(nodetest.Dump(t, cfg), pw) {
		t.Error("the read models keep the value after compaction")
	}
}
