package e2e_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/flowvault/flowvault/internal/leaktest"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/masking"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/workers"
)

// A value-param SWITCH that routes on a task's _secrets output takes the
// case of the real value whether the decision that sealed the value goes on
// to the SWITCH (the result schedules it) or a later one does (a WAIT stands
// between them, a variable carries a copy): the case taken does not depend
// on timing. No read of the workflow shows the value, nor the SWITCH's
// output the case it took it for. A SWITCH on a secret takes the case of
// its value.
func TestSealedSwitchRoutesAlike(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// tier is long enough for redaction to look for it, and named in no
	// definition (the default case takes it).
	long := "tier-" + string(leaktest.RandomSecret(16))
	sc := leaktest.New([]byte(long))
	sw := func(ref, param string) string {
		return fmt.Sprintf(`{"name":"%[1]s","taskReferenceName":"%[1]s","type":"SWITCH","evaluatorType":"value-param","expression":"x",
		  "inputParameters":{"x":"%[2]s"},
		  "decisionCases":{"gold":[{"name":"sw_sink","taskReferenceName":"%[1]s_gold","inputParameters":{"case":"gold"}}],
		    "***":[{"name":"sw_sink","taskReferenceName":"%[1]s_masked","inputParameters":{"case":"masked"}}]},
		  "defaultCase":[{"name":"sw_sink","taskReferenceName":"%[1]s_other","inputParameters":{"case":"other"}}]}`, ref, param)
	}
	src := `{"name":"sw_src","taskReferenceName":"src","inputParameters":{"tier":"${workflow.input.tier}"}}`
	hold := `{"name":"hold","taskReferenceName":"hold","type":"WAIT"}`
	e.register(
		`{"name":"sw_now","tasks":[`+src+`,`+sw("sw", "${src.output._secrets.tier}")+`]}`,
		`{"name":"sw_later","tasks":[`+src+`,`+hold+`,`+sw("sw", "${src.output._secrets.tier}")+`]}`,
		`{"name":"sw_var","tasks":[`+src+`,{"name":"setv","taskReferenceName":"setv","type":"SET_VARIABLE","inputParameters":{"tier":"${src.output._secrets.tier}"}},`+
			hold+`,`+sw("sw", "${workflow.variables.tier}")+`]}`,
	)
	// A case read from a secret is the secret's value, resolved at
	// hand-off, not its reference's text.
	e.putSecret("sw_tier", "gold")
	e.register(`{"name":"sw_secret","tasks":[` + src + `,` + sw("sw", "${workflow.secrets.sw_tier}") + `]}`)
	e.work("sw_src", 2, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		return workers.Output{Data: map[string]any{"_secrets": map[string]any{"tier": task.InputData["tier"]}}}, nil
	})
	e.work("sw_sink", 2, succeed)

	completeHold := func(id string) {
		t.Helper()
		var h *conductor.Task
		testutil.Eventually(t, 20*time.Second, 20*time.Millisecond, func() error {
			if h = taskByRef(e.workflow(id), "hold"); h == nil || h.Status != conductor.TaskInProgress {
				return fmt.Errorf("%s does not wait yet", id)
			}
			return nil
		})
		e.must(http.StatusOK, "POST", "/api/tasks", conductor.TaskResult{TaskID: h.TaskID, WorkflowInstanceID: id, Status: conductor.TaskCompleted})
	}
	for _, name := range []string{"sw_now", "sw_later", "sw_var"} {
		for _, tc := range []struct{ tier, want string }{{"gold", "sw_gold"}, {"tin", "sw_other"}, {long, "sw_other"}} {
			id := e.start(name, map[string]any{"tier": tc.tier})
			if name != "sw_now" {
				completeHold(id)
			}
			wf := e.waitStatus(id, conductor.WorkflowCompleted)
			var took []string
			for _, ref := range []string{"sw_gold", "sw_masked", "sw_other"} {
				if taskByRef(wf, ref) != nil {
					took = append(took, ref)
				}
			}
			if len(took) != 1 || took[0] != tc.want {
				t.Errorf("%s with tier %q: the SWITCH ran %v, want %s (its output %v)", name, tc.tier, took, tc.want, taskByRef(wf, "sw").OutputData)
			}
			// The case is the value: shown neither where the SWITCH
			// took it nor where it reports it, even too short for
			// redaction to look for.
			got := taskByRef(wf, "sw")
			if got.InputData["x"] != masking.Mask || got.OutputData["selectedCase"] != masking.Mask ||
				fmt.Sprint(got.OutputData["evaluationResult"]) != "[***]" {
				t.Errorf("%s with tier %q: the SWITCH reads input %v, output %v", name, tc.tier, got.InputData, got.OutputData)
			}
			for _, p := range []string{"/api/workflow/" + id + "?includeTasks=true", "/api/tasks/" + taskByRef(wf, "sw").TaskID} {
				sc.Scan(name+" "+p, []byte(e.must(http.StatusOK, "GET", p, nil)))
			}
		}
	}
	id := e.start("sw_secret", map[string]any{"tier": "none"})
	wf := e.waitStatus(id, conductor.WorkflowCompleted)
	if taskByRef(wf, "sw_gold") == nil || taskByRef(wf, "sw").OutputData["selectedCase"] != masking.Mask {
		t.Errorf("a SWITCH on a secret: tasks %v, its output %v; want the gold case, reading ***", refsOf(wf.Tasks), taskByRef(wf, "sw").OutputData)
	}
	sc.Check(t)
}

// A SWITCH on text made of a _secrets value ("tier-${src.output._secrets.tier}")
// is handed to its system worker whether the decision that sealed the
// value schedules it or a later one does: it takes the case of the text
// with the value, and its output reads "***", the value being too short
// for redaction to look for. A TERMINATE whose status comes from sealed
// data fails, naming the field, in either decision.
func TestSealedTextAndEngineFieldsAlike(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	sw := `{"name":"sw","taskReferenceName":"sw","type":"SWITCH","evaluatorType":"value-param","expression":"x",
	  "inputParameters":{"x":"tier-${src.output._secrets.tier}"},
	  "decisionCases":{"tier-gold":[{"name":"st_sink","taskReferenceName":"sw_gold"}]},
	  "defaultCase":[{"name":"st_sink","taskReferenceName":"sw_other"}]}`
	term := `{"name":"term","taskReferenceName":"term","type":"TERMINATE","inputParameters":{"terminationStatus":"${src.output._secrets.tier}"}}`
	src := `{"name":"st_src","taskReferenceName":"src","inputParameters":{"tier":"${workflow.input.tier}"}}`
	hold := `{"name":"hold","taskReferenceName":"hold","type":"WAIT","inputParameters":{"duration":"1s"}}`
	e.register(
		`{"name":"st_now","tasks":[`+src+`,`+sw+`]}`,
		`{"name":"st_later","tasks":[`+src+`,`+hold+`,`+sw+`]}`,
		`{"name":"st_term_now","tasks":[`+src+`,`+term+`]}`,
		`{"name":"st_term_later","tasks":[`+src+`,`+hold+`,`+term+`]}`,
	)
	e.work("st_src", 2, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		return workers.Output{Data: map[string]any{"_secrets": map[string]any{"tier": task.InputData["tier"]}}}, nil
	})
	e.work("st_sink", 2, succeed)
	for _, name := range []string{"st_now", "st_later"} {
		wf := e.waitStatus(e.start(name, map[string]any{"tier": "gold"}), conductor.WorkflowCompleted)
		got := taskByRef(wf, "sw")
		if taskByRef(wf, "sw_gold") == nil || taskByRef(wf, "sw_other") != nil {
			t.Errorf("%s: the SWITCH ran %v, want sw_gold (its output %v)", name, refsOf(wf.Tasks), got.OutputData)
		}
		if got.OutputData["selectedCase"] != masking.Mask || fmt.Sprint(got.OutputData["evaluationResult"]) != "[***]" {
			t.Errorf("%s: the SWITCH's output %v, want its case read ***", name, got.OutputData)
		}
	}
	for _, name := range []string{"st_term_now", "st_term_later"} {
		wf := e.waitStatus(e.start(name, map[string]any{"tier": conductor.WorkflowCompleted}), conductor.WorkflowFailed)
		got := taskByRef(wf, "term")
		if got.Status != conductor.TaskFailedWithTerminalError || !strings.Contains(got.ReasonForIncompletion, "terminationStatus is sealed data") {
			t.Errorf("%s: TERMINATE %s (%q), want it failed naming terminationStatus", name, got.Status, got.ReasonForIncompletion)
		}
	}
}
