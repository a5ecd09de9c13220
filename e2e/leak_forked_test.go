package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowvault/flowvault/internal/leaktest"
	"github.com/flowvault/flowvault/internal/nodetest"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/masking"
	"github.com/flowvault/flowvault/node"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/workers"
)

// A dynamic fork's task is configured with values (its inputParameters,
// from a list the fork's input builds or a worker's output gives), which
// its workflowTask shows, and its fork's forkedTaskDefs. A value found to
// be secret later (a workflow input a later task passes into _secrets) is
// masked there once it is, as in the task's input: both showed it, and
// wherever else in the configuration it sits (restOfConfig), whose shape
// is kept, the value's strings reading "***". One a definition's
// maskedFields names is sealed from the start. Compaction is held off, so
// that what is read is the views' masking. Every REST answer about the
// ended workflows is searched for the value: none holds it.
func TestLateSecretInAForkedTasksConfiguration(t *testing.T) {
	t.Parallel()
	pw := "pw-" + alnum(24)
	sc := leaktest.New([]byte(pw))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	n := startLeakNode(ctx, t, func(cfg *node.Config) { cfg.CompactionDelay = time.Hour })
	e := n.env(t, sc)
	// Until the workflow seals the value, it is data like any other.
	raw := n.env(t)
	forkOfListed := registerLateSealedForks(e, func(context.Context, *conductor.Task) (workers.Output, error) {
		return workers.Output{Data: map[string]any{"ok": true}}, nil
	})
	e.register(`{"name":"lf_masked","maskedFields":["pw"],"tasks":[` + forkOfListed + `]}`)
	for _, name := range []string{"lf_listed", "lf_planned", "lf_masked"} {
		wf := e.workflow(raw.waitStatus(raw.start(name, map[string]any{"pw": pw}), conductor.WorkflowCompleted).WorkflowID)
		for _, tk := range wf.Tasks {
			e.must(http.StatusOK, "GET", "/api/tasks/"+tk.TaskID, nil)
		}
		// Masked, the configuration keeps Conductor's shape.
		var defs []struct {
			Ref    string         `json:"taskReferenceName"`
			Params map[string]any `json:"inputParameters"`
		}
		b, _ := json.Marshal(taskByRef(wf, "df").InputData["forkedTaskDefs"])
		if err := json.Unmarshal(b, &defs); err != nil || len(defs) != 1 || defs[0].Ref != "d1" || defs[0].Params["plain"] != "x" {
			t.Fatalf("%s: forkedTaskDefs %s (%v), want d1's workflowTask", name, b, err)
		}
		if name != "lf_masked" {
			if p := defs[0].Params["p"]; p != masking.Mask {
				t.Errorf("%s: forkedTaskDefs shows d1's inputParameter p as %d characters, want %q", name, len(fmt.Sprint(p)), masking.Mask)
			}
		}
	}
	names := registerLateSealedConfigs(t, e, func(context.Context, *conductor.Task) (workers.Output, error) {
		return workers.Output{Data: map[string]any{"ok": true}}, nil
	})
	for i, name := range names {
		at := restOfConfig[i/2].at
		wf := e.workflow(raw.waitStatus(raw.start(name, map[string]any{"pw": pw}), conductor.WorkflowCompleted).WorkflowID)
		for _, tk := range wf.Tasks {
			e.must(http.StatusOK, "GET", "/api/tasks/"+tk.TaskID, nil)
		}
		var defs []map[string]any
		b, _ := json.Marshal(taskByRef(wf, "df").InputData["forkedTaskDefs"])
		if err := json.Unmarshal(b, &defs); err != nil || len(defs) != 1 {
			t.Fatalf("%s: forkedTaskDefs of %d characters (%v), want d1's workflowTask", name, len(b), err)
		}
		var own map[string]any
		b, _ = json.Marshal(taskByRef(wf, "d1").WorkflowTask)
		if err := json.Unmarshal(b, &own); err != nil {
			t.Fatal(err)
		}
		for _, cfg := range []map[string]any{defs[0], own} {
			in, _ := cfg["inputParameters"].(map[string]any)
			if cfg["name"] != "lc_branch" || cfg["taskReferenceName"] != "d1" || in["plain"] != "x" {
				t.Errorf("%s: a workflowTask of d1 lost its shape: name, reference name or inputParameters.plain changed", name)
			}
			switch got := at(cfg).(type) {
			case string:
				if got != masking.Mask {
					t.Errorf("%s: d1's workflowTask shows the value's place as %d characters, want %q", name, len(got), masking.Mask)
				}
			case []any:
				for _, s := range got {
					if s != masking.Mask {
						t.Errorf("%s: d1's workflowTask shows the value's place as %d characters, want %q", name, len(fmt.Sprint(s)), masking.Mask)
					}
				}
			default:
				t.Errorf("%s: d1's workflowTask shows the value's place as %T", name, got)
			}
		}
	}
	e.must(http.StatusOK, "GET", "/api/workflow/search?freeText=*&size=100", nil)
	e.must(http.StatusOK, "GET", "/api/tasks/search?freeText=*&size=100", nil)
	for _, h := range sc.Hits() {
		t.Errorf("the value: %s", h)
	}
	if sc.Scanned()["http"] == 0 {
		t.Fatal("no answer was scanned")
	}
}

// registerLateSealedForks registers the workflows lf_listed and lf_planned,
// which configure a dynamic fork's task d1 (of type lf_branch, run by
// branch) with the input pw, listed by the fork's input or planned by a
// worker's output, and pass pw into _secrets after the fork's JOIN. It
// returns the fork and JOIN of lf_listed, for other definitions.
func registerLateSealedForks(e *env, branch workers.Handler) (forkOfListed string) {
	e.work("lf_branch", 2, branch)
	e.work("lf_src", 2, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		return workers.Output{Data: map[string]any{"tasks": []any{map[string]any{"name": "lf_branch", "taskReferenceName": "d1",
			"inputParameters": map[string]any{"p": task.InputData["s"], "plain": "x"}}}}}, nil
	})
	const fork = `{"name":"df","taskReferenceName":"df","type":"FORK_JOIN_DYNAMIC","dynamicForkTasksParam":"tasks","inputParameters":{"tasks":%s}},
	  {"name":"dj","taskReferenceName":"dj","type":"JOIN"}`
	const listed = `[{"name":"lf_branch","taskReferenceName":"d1","inputParameters":{"p":"${workflow.input.pw}","plain":"x"}}]`
	const seal = `{"name":"sv","taskReferenceName":"sv","type":"SET_VARIABLE","inputParameters":{"_secrets":{"v":"${workflow.input.pw}"}}}`
	forkOfListed = fmt.Sprintf(fork, listed)
	e.register(
		`{"name":"lf_listed","tasks":[`+forkOfListed+`,`+seal+`]}`,
		`{"name":"lf_planned","tasks":[{"name":"lf_src","taskReferenceName":"src","inputParameters":{"s":"${workflow.input.pw}"}},`+
			fmt.Sprintf(fork, `"${src.output.tasks}"`)+`,`+seal+`]}`,
	)
	return forkOfListed
}

// Compaction destroys for good a value that went into a _secrets block
// after a dynamic fork's task was configured with it: the task's
// workflowTask.inputParameters read "***" in the read models, as its input
// does, not only in the views, and so does every other string of the
// configuration that holds it (restOfConfig). The event log keeps the
// value as first written (a documented limitation), so Pebble alone is
// searched, every key and value and its dump. A restart after compaction
// hands the forked task "***" for it.
func TestCompactionDestroysALateSecretInAForkedTasksConfiguration(t *testing.T) {
	t.Parallel()
	pw := "pw-" + alnum(24)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	n := startLeakNode(ctx, t, nil)
	e := n.env(t)
	got := make(chan any, 8)
	registerLateSealedForks(e, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		got <- task.InputData["p"]
		return workers.Output{Data: map[string]any{"ok": true}}, nil
	})
	for _, name := range []string{"lf_listed", "lf_planned"} {
		// One workflow stays as compaction left it; the other is
		// restarted after it.
		var ids [2]string
		for i := range ids {
			ids[i] = e.start(name, map[string]any{"pw": pw})
			if p := <-got; p != pw {
				t.Fatalf("%s: d1 was handed p of %d characters before compaction, want the value", name, len(fmt.Sprint(p)))
			}
			e.waitStatus(ids[i], conductor.WorkflowCompleted)
			e.waitCompacted(ids[i])
		}
		e.must(http.StatusNoContent, "POST", "/api/workflow/"+ids[1]+"/restart", nil)
		if p := <-got; p != masking.Mask {
			t.Errorf("%s: a restart after compaction handed d1 p of %d characters, want %q", name, len(fmt.Sprint(p)), masking.Mask)
		}
		e.waitStatus(ids[1], conductor.WorkflowCompleted)
	}
	// Elsewhere in the configuration than its inputParameters.
	names := registerLateSealedConfigs(t, e, func(context.Context, *conductor.Task) (workers.Output, error) {
		return workers.Output{Data: map[string]any{"ok": true}}, nil
	})
	for _, name := range names {
		id := e.start(name, map[string]any{"pw": pw})
		e.waitStatus(id, conductor.WorkflowCompleted)
		e.waitCompacted(id)
	}
	if err := n.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	n.stopped = true
	sc := leaktest.New([]byte(pw))
	sc.ScanPebble(t, n.cfg.PebbleDir())
	for _, h := range sc.Hits() {
		t.Errorf("the value after compaction: %s", h)
	}
	if dump := nodetest.Dump(t, n.cfg); strings.Contains(dump, pw) {
		t.Error("the read models' dump holds the value after compaction")
	}
}

// restOfConfig are places of a dynamic fork's task's configuration other
// than its inputParameters where a planner may put a value v: its
// description, its inline taskDefinition (whose inputTemplate gives the
// task's input t), a field Conductor's model does not know (kept as
// given), and inputParameters named in another case, which is such a
// field too (the decoder matches names exactly, as Jackson does). at is
// where each shows v in the configuration.
var restOfConfig = []struct {
	name   string
	config func(v any) map[string]any
	at     func(cfg map[string]any) any
}{
	{"description", func(v any) map[string]any { return map[string]any{"description": v} },
		func(cfg map[string]any) any { return cfg["description"] }},
	{"taskDefinition", func(v any) map[string]any {
		return map[string]any{"taskDefinition": map[string]any{"name": "lc_branch", "description": v, "inputTemplate": map[string]any{"t": v}}}
	}, func(cfg map[string]any) any {
		td, _ := cfg["taskDefinition"].(map[string]any)
		tmpl, _ := td["inputTemplate"].(map[string]any)
		return []any{td["description"], tmpl["t"]}
	}},
	{"unknown", func(v any) map[string]any { return map[string]any{"notes": map[string]any{"by": []any{"x", v}}} },
		func(cfg map[string]any) any {
			notes, _ := cfg["notes"].(map[string]any)
			by, _ := notes["by"].([]any)
			if len(by) != 2 || by[0] != "x" {
				return by
			}
			return by[1]
		}},
	{"InputParameters", func(v any) map[string]any { return map[string]any{"InputParameters": map[string]any{"q": v}} },
		func(cfg map[string]any) any { in, _ := cfg["InputParameters"].(map[string]any); return in["q"] }},
}

// registerLateSealedConfigs registers, for each of restOfConfig, the
// workflows lc_<name>_listed and lc_<name>_planned, which configure a
// dynamic fork's task d1 (of type lc_branch, run by branch) with the input
// pw there, listed by the fork's input or planned by a worker's output,
// and pass pw into _secrets after the fork's JOIN.
func registerLateSealedConfigs(t *testing.T, e *env, branch workers.Handler) (names []string) {
	configOf := func(where string, v any) map[string]any {
		cfg := map[string]any{"name": "lc_branch", "taskReferenceName": "d1", "inputParameters": map[string]any{"plain": "x"}}
		for _, p := range restOfConfig {
			if p.name == where {
				maps.Copy(cfg, p.config(v))
			}
		}
		return cfg
	}
	e.work("lc_branch", 2, branch)
	e.work("lc_src", 2, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		where, _ := task.InputData["where"].(string)
		return workers.Output{Data: map[string]any{"tasks": []any{configOf(where, task.InputData["s"])}}}, nil
	})
	const fork = `{"name":"df","taskReferenceName":"df","type":"FORK_JOIN_DYNAMIC","dynamicForkTasksParam":"tasks","inputParameters":{"tasks":%s}},
	  {"name":"dj","taskReferenceName":"dj","type":"JOIN"}`
	const seal = `{"name":"sv","taskReferenceName":"sv","type":"SET_VARIABLE","inputParameters":{"_secrets":{"v":"${workflow.input.pw}"}}}`
	for _, p := range restOfConfig {
		listed, err := json.Marshal([]any{configOf(p.name, "${workflow.input.pw}")})
		if err != nil {
			t.Fatal(err)
		}
		e.register(
			fmt.Sprintf(`{"name":"lc_%s_listed","tasks":[`+fork+`,`+seal+`]}`, p.name, listed),
			fmt.Sprintf(`{"name":"lc_%s_planned","tasks":[{"name":"lc_src","taskReferenceName":"src","inputParameters":{"s":"${workflow.input.pw}","where":%q}},`+
				fork+`,`+seal+`]}`, p.name, p.name, `"${src.output.tasks}"`),
		)
		names = append(names, "lc_"+p.name+"_listed", "lc_"+p.name+"_planned")
	}
	return names
}

// The secret and environment references a definition writes into a
// FORK_JOIN_DYNAMIC's inputs for its tasks, by reference name or as
// forkTaskInputs, reach the forked tasks' worker resolved, as any task's
// do, and again when a rerun forks them from the fork's stored input; they
// used to reach it as their text, and the workflow completed with that.
// The tasks' stored inputs keep the references, the worker's
// echo of the secret reads "***", and no REST answer, stream message, log
// line, file or Pebble value holds the secret.
func TestForkedInputsResolveTheirReferences(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	n := startLeakNode(ctx, t, nil)
	secret := "fork-secret-" + alnum(20)
	sc := leaktest.New([]byte(secret))
	e := n.env(t, sc)
	e.putSecret("fr_tok", secret)
	e.must(http.StatusOK, "PUT", "/api/environment/fr_region", "eu-west-1")

	var mu sync.Mutex
	received := map[string]string{} // by workflow id and reference name: the input, as JSON
	e.work("fr_w", 4, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		b, _ := json.Marshal(task.InputData)
		mu.Lock()
		received[task.WorkflowInstanceID+"/"+task.ReferenceTaskName] = string(b)
		mu.Unlock()
		return workers.Output{Data: map[string]any{"echo": task.InputData}}, nil
	})
	e.register(
		`{"name":"fr_byref","tasks":[
		  {"name":"fork","taskReferenceName":"fork","type":"FORK_JOIN_DYNAMIC","dynamicForkTasksParam":"tasks","dynamicForkTasksInputParamName":"ins",
		   "inputParameters":{"tasks":[{"name":"fr_w","taskReferenceName":"d1"},{"name":"fr_w","taskReferenceName":"d2"}],
		     "ins":{"d1":{"s":"${workflow.secrets.fr_tok}","r":"${workflow.env.fr_region}","h":["Bearer ${workflow.secrets.fr_tok}"]},
		       "d2":{"r":"at ${workflow.env.fr_region}","_secrets":{"k":"key ${workflow.secrets.fr_tok}"}}}}},
		  {"name":"join","taskReferenceName":"join","type":"JOIN"}]}`,
		`{"name":"fr_list","tasks":[
		  {"name":"fork","taskReferenceName":"fork","type":"FORK_JOIN_DYNAMIC",
		   "inputParameters":{"forkTaskName":"fr_w","forkTaskInputs":[{"s":"${workflow.secrets.fr_tok}","r":"${workflow.env.fr_region}"},"${workflow.env.fr_region}"]}},
		  {"name":"join","taskReferenceName":"join","type":"JOIN"}]}`,
	)
	check := func(name, id string, want map[string]string) {
		t.Helper()
		mu.Lock()
		defer mu.Unlock()
		for ref, w := range want {
			if got := received[id+"/"+ref]; got != w {
				// The secret in the message would be found by the scan.
				t.Errorf("%s: the worker was handed %d bytes for %s, not the input resolved (%d bytes)", name, len(got), ref, len(w))
			}
		}
	}
	for _, tc := range []struct {
		name string
		want map[string]string // by reference name: the input the worker is handed, as JSON
	}{
		{"fr_byref", map[string]string{
			"d1": `{"h":["Bearer ` + secret + `"],"r":"eu-west-1","s":"` + secret + `"}`,
			"d2": `{"_secrets":{"k":"key ` + secret + `"},"r":"at eu-west-1"}`,
		}},
		{"fr_list", map[string]string{
			"_fr_w_0": `{"__index":0,"r":"eu-west-1","s":"` + secret + `"}`,
			"_fr_w_1": `{"__index":1,"input":"eu-west-1"}`,
		}},
	} {
		id := e.start(tc.name, nil)
		wf := e.waitStatus(id, conductor.WorkflowCompleted)
		check(tc.name, id, tc.want)
		// Forked again from the fork's stored input, its _secrets block
		// sealed.
		mu.Lock()
		clear(received)
		mu.Unlock()
		e.must(http.StatusOK, "POST", "/api/workflow/"+id+"/rerun", map[string]any{"reRunFromTaskId": taskByRef(wf, "fork").TaskID})
		testutil.Eventually(t, 20*time.Second, 50*time.Millisecond, func() error {
			mu.Lock()
			defer mu.Unlock()
			if len(received) < len(tc.want) {
				return fmt.Errorf("%s: the worker was handed %d tasks since the rerun, want %d", tc.name, len(received), len(tc.want))
			}
			return nil
		})
		wf = e.waitStatus(id, conductor.WorkflowCompleted)
		check(tc.name+", rerun from the fork", id, tc.want)
		for ref := range tc.want {
			task := taskByRef(wf, ref)
			if task == nil {
				t.Fatalf("%s: no task %s", tc.name, ref)
			}
			if ref == "d1" || ref == "_fr_w_0" {
				if s := task.InputData["s"]; s != "${workflow.secrets.fr_tok}" {
					t.Errorf("%s: %s's input shows s as %v, want the reference", tc.name, ref, s)
				}
				if echo, _ := task.OutputData["echo"].(map[string]any); echo["s"] != masking.Mask || echo["r"] != "eu-west-1" {
					t.Errorf("%s: %s's output shows the echo %v, want s %q and r the value", tc.name, ref, echo, masking.Mask)
				}
			}
		}
	}
	n.scanEverything(t, []*leaktest.Scanner{sc}, []string{"fr_tok"})
}
