package engine_test

import (
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/masking"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// A skipped task is created at once with the given data, and the workflow
// passes over it only when it gets there.
func TestSkipTask(t *testing.T) {
	h := newHarness(t, threeSimple, nil)
	h.decide(engine.SkipTask{Ref: "b_ref", Input: map[string]any{"i": int64(1)}, Output: map[string]any{"o": "x"}})
	h.wantRefs("a_ref", "b_ref")
	b := h.wantTask("b_ref", conductor.TaskSkipped)
	if !reflect.DeepEqual(b.Output, map[string]any{"o": "x"}) || !reflect.DeepEqual(b.Input, map[string]any{"i": int64(1)}) {
		t.Fatalf("skipped task data %v %v", b.Input, b.Output)
	}
	// c_ref is not scheduled before a_ref is done.
	h.decide(engine.Tick{})
	h.wantRefs("a_ref", "b_ref")
	h.complete("a_ref", map[string]any{"items": []any{int64(1), int64(2)}})
	h.wantRefs("a_ref", "b_ref", "c_ref")
	h.complete("c_ref", map[string]any{"sum": int64(3)})
	h.wantStatus(conductor.WorkflowCompleted)

	for _, tc := range []struct {
		ref  string
		kind error
	}{{"a_ref", fault.ErrConflict}, {"nope", fault.ErrInvalid}} {
		h := newHarness(t, threeSimple, nil)
		_, err := h.try(engine.SkipTask{Ref: tc.ref})
		wantErr(t, err, tc.kind)
	}
	_, err := h.try(engine.SkipTask{Ref: "c_ref"})
	wantErr(t, err, fault.ErrConflict) // completed workflow
}

// Skipping the last task of a fork branch lets the join complete once the
// rest of the branch is done.
func TestSkipInForkAndChain(t *testing.T) {
	h := newHarness(t, forkJoin, nil)
	h.decide(engine.SkipTask{Ref: "z"})
	h.decide(engine.SkipTask{Ref: "a2"})
	h.complete("b", map[string]any{"v": int64(1)})
	h.wantTask("join", conductor.TaskInProgress)
	h.complete("a", nil)
	h.wantTask("join", conductor.TaskCompleted)
	h.wantStatus(conductor.WorkflowCompleted)
}

func TestRemove(t *testing.T) {
	h := newHarness(t, threeSimple, nil)
	_, err := h.try(engine.Remove{Archive: true})
	wantErr(t, err, fault.ErrInvalid)

	h.decide(engine.Remove{Archive: true, Terminate: true, Reason: "cleanup"})
	if !h.w.Removed || !h.w.Archived || h.w.Status != conductor.WorkflowTerminated || h.w.Reason != "cleanup" {
		t.Fatalf("removed %v archived %v status %s reason %q", h.w.Removed, h.w.Archived, h.w.Status, h.w.Reason)
	}
	for _, trig := range []engine.Trigger{engine.Tick{}, engine.Reconcile{}, engine.Restart{}, engine.Remove{}} {
		_, err := h.try(trig)
		wantErr(t, err, fault.ErrNotFound)
	}

	running := newHarness(t, threeSimple, nil)
	d := running.decide(engine.Remove{})
	if !running.w.Removed || running.w.Archived || running.w.Status != conductor.WorkflowRunning || len(d.Effects) != 0 {
		t.Fatalf("hard remove of a running workflow: %+v effects %v", running.w, d.Effects)
	}
}

func TestResetCallbacks(t *testing.T) {
	h := newHarness(t, threeSimple, nil)
	h.take("a_ref")
	h.decide(engine.Result{Result: conductor.TaskResult{TaskID: h.task("a_ref").ID, Status: conductor.TaskInProgress, CallbackAfterSeconds: 60}})
	if a := h.task("a_ref"); a.AvailableAt <= h.now.UnixMilli() {
		t.Fatal("no callback delay")
	}
	d := h.decide(engine.ResetCallbacks{})
	if a := h.task("a_ref"); a.AvailableAt != h.now.UnixMilli() || a.CallbackAfterSeconds != 0 {
		t.Fatalf("after reset: available %d callback %d", a.AvailableAt, a.CallbackAfterSeconds)
	}
	if len(effectsOf[engine.Dispatch](d)) != 1 {
		t.Fatalf("effects %v", d.Effects)
	}
}

// A skipped SWITCH chose no case: the task after it runs next, not its
// default case (Conductor continues after a skipped task).
func TestSkipSwitch(t *testing.T) {
	h := newHarness(t, `{"name":"s","tasks":[{"name":"t1","taskReferenceName":"t1"},
	  {"name":"sw","taskReferenceName":"sw","type":"SWITCH","evaluatorType":"value-param","expression":"k","inputParameters":{"k":"a"},
	   "decisionCases":{"a":[{"name":"ca","taskReferenceName":"ca"}]},"defaultCase":[{"name":"dflt","taskReferenceName":"dflt"}]},
	  {"name":"t3","taskReferenceName":"t3"}]}`, nil)
	h.decide(engine.SkipTask{Ref: "sw"})
	h.complete("t1", nil)
	h.wantRefs("t1", "sw", "t3")
	h.complete("t3", nil)
	h.wantStatus(conductor.WorkflowCompleted)
}

// An upgrade keeps what the workflow ran, skips what the new version puts
// before the task it reached, and runs the new version from there.
func TestUpgrade(t *testing.T) {
	h := newHarness(t, threeSimple, map[string]any{"n": int64(1)})
	h.complete("a_ref", map[string]any{"items": []any{int64(1), int64(2)}})
	h.take("b_ref")
	v2 := parseDef(t, `{"name":"three","version":2,"tasks":[
	 {"name":"x","taskReferenceName":"x_ref"},
	 {"name":"a","taskReferenceName":"a_ref"},
	 {"name":"n","taskReferenceName":"n_ref"},
	 {"name":"b","taskReferenceName":"b_ref"},
	 {"name":"c","taskReferenceName":"c_ref"},
	 {"name":"d","taskReferenceName":"d_ref","inputParameters":{"k":"${workflow.input.k}","n":"${n_ref.output.v}"}}]}`)
	h.decide(engine.Upgrade{Def: v2, Input: map[string]any{"k": "new"}, TaskOutput: map[string]map[string]any{"n_ref": {"v": int64(9)}}, By: "app:tester", DecidedFor: h.w.Principals()})
	if h.w.Version != 2 || !reflect.DeepEqual(h.w.Input, map[string]any{"k": "new"}) {
		t.Fatalf("after the upgrade: version %d, input %v", h.w.Version, h.w.Input)
	}
	h.wantRefs("a_ref", "b_ref", "x_ref", "n_ref")
	h.wantTask("x_ref", conductor.TaskSkipped)
	if n := h.wantTask("n_ref", conductor.TaskSkipped); !reflect.DeepEqual(n.Output, map[string]any{"v": int64(9)}) {
		t.Fatalf("skipped task's output %v", n.Output)
	}
	h.wantTask("b_ref", conductor.TaskInProgress)
	h.complete("b_ref", nil)
	h.wantRefs("a_ref", "b_ref", "x_ref", "n_ref", "c_ref")
	h.complete("c_ref", nil)
	if d := h.wantTask("d_ref", conductor.TaskScheduled); !reflect.DeepEqual(d.Input, map[string]any{"k": "new", "n": int64(9)}) {
		t.Fatalf("new task's input %v", d.Input)
	}
	h.complete("d_ref", nil)
	h.wantStatus(conductor.WorkflowCompleted)

	for _, tc := range []struct {
		name string
		def  string
		kind error
	}{
		{"another workflow's definition", `{"name":"other","version":2,"tasks":[{"name":"a","taskReferenceName":"a_ref"},{"name":"b","taskReferenceName":"b_ref"}]}`, fault.ErrInvalid},
		{"a task it ran is gone", `{"name":"three","version":2,"tasks":[{"name":"b","taskReferenceName":"b_ref"}]}`, fault.ErrInvalid},
		{"its running task changes type", `{"name":"three","version":2,"tasks":[{"name":"a","taskReferenceName":"a_ref"},{"name":"b","taskReferenceName":"b_ref","type":"WAIT"}]}`, fault.ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, threeSimple, nil)
			h.complete("a_ref", nil)
			before := len(h.w.Tasks)
			_, err := h.try(engine.Upgrade{Def: parseDef(t, tc.def), DecidedFor: h.w.Principals()})
			wantErr(t, err, tc.kind)
			if len(h.w.Tasks) != before || h.w.Version != 1 {
				t.Fatalf("a refused upgrade changed the workflow: %d tasks, version %d", len(h.w.Tasks), h.w.Version)
			}
		})
	}
	_, err := h.try(engine.Upgrade{Def: v2, DecidedFor: h.w.Principals()})
	wantErr(t, err, fault.ErrConflict) // completed workflow
}

// Inside a fork the branches are lists of their own: a task put before the
// one a branch reached is skipped, one after it runs, and a new fork put
// before the running one is skipped whole, forking nothing.
func TestUpgradeFork(t *testing.T) {
	h := newHarness(t, forkJoin, nil)
	h.complete("a", nil) // a2 runs in the first branch, b in the second
	v2 := parseDef(t, `{"name":"fj","version":2,"tasks":[
	 {"name":"fork","taskReferenceName":"fork","type":"FORK_JOIN","forkTasks":[
	   [{"name":"p","taskReferenceName":"p"},{"name":"a","taskReferenceName":"a"},{"name":"a2","taskReferenceName":"a2"}],
	   [{"name":"f0","taskReferenceName":"f0","type":"FORK_JOIN","forkTasks":[[{"name":"q","taskReferenceName":"q"}]]},
	    {"name":"j0","taskReferenceName":"j0","type":"JOIN","joinOn":["q"]},
	    {"name":"b","taskReferenceName":"b"},{"name":"b2","taskReferenceName":"b2"}]]},
	 {"name":"join","taskReferenceName":"join","type":"JOIN","joinOn":["a2","b2"]},
	 {"name":"z","taskReferenceName":"z"}]}`)
	h.decide(engine.Upgrade{Def: v2, DecidedFor: h.w.Principals()})
	for _, ref := range []string{"f0", "j0", "p"} {
		h.wantTask(ref, conductor.TaskSkipped)
	}
	if h.w.LatestByRef("q") != nil || h.w.LatestByRef("b2") != nil {
		t.Fatal("the upgrade ran a task of a skipped fork, or one after a branch's running task")
	}
	h.complete("a2", nil)
	h.complete("b", nil)
	h.wantTask("join", conductor.TaskInProgress) // b2, new in the branch, runs
	h.complete("b2", nil)
	h.wantTask("join", conductor.TaskCompleted)
	h.complete("z", nil)
	h.wantStatus(conductor.WorkflowCompleted)
	if h.w.LatestByRef("q") != nil {
		t.Fatal("a skipped fork forked its branch")
	}
}

// A jump forward cancels what runs and goes on from the task; a jump back
// drops the run of the task and what came after it, which then runs again.
func TestJump(t *testing.T) {
	h := newHarness(t, threeSimple, map[string]any{"n": int64(1)})
	h.take("a_ref")
	h.decide(engine.Jump{Ref: "c_ref", Input: map[string]any{"given": true}, By: "app:tester"})
	if a := h.wantTask("a_ref", conductor.TaskCanceled); a.Reason != "jumped to c_ref" {
		t.Fatalf("canceled task's reason %q", a.Reason)
	}
	if c := h.wantTask("c_ref", conductor.TaskScheduled); !reflect.DeepEqual(c.Input, map[string]any{"given": true}) {
		t.Fatalf("jumped-to task's input %v", c.Input)
	}
	if h.w.LatestByRef("b_ref") != nil {
		t.Fatal("the jump ran a task it passed over")
	}
	h.complete("c_ref", map[string]any{"sum": int64(5)})
	h.wantStatus(conductor.WorkflowCompleted)

	back := newHarness(t, threeSimple, map[string]any{"n": int64(1)})
	back.complete("a_ref", map[string]any{"items": []any{"x", "y"}})
	first := back.task("a_ref")
	back.take("b_ref")
	back.decide(engine.Jump{Ref: "a_ref"})
	back.wantRefs("a_ref")
	a := back.wantTask("a_ref", conductor.TaskScheduled)
	if a.ID == first.ID || !reflect.DeepEqual(a.Input, first.Input) {
		t.Fatalf("jump back: task %s input %v, first run %s input %v", a.ID, a.Input, first.ID, first.Input)
	}
	back.complete("a_ref", map[string]any{"items": []any{"x", "z"}})
	if b := back.wantTask("b_ref", conductor.TaskScheduled); b.Input["fromA"] != "z" {
		t.Fatalf("b after the jump back reads %v", b.Input["fromA"])
	}

	for _, tc := range []struct {
		name string
		ref  string
		kind error
	}{
		{"unknown task", "nope", fault.ErrInvalid},
		{"inside a fork", "a2", fault.ErrInvalid},
		// It would wait for good for the branches the jump cancels
		// (FuzzLifecycle found the workflow stuck).
		{"to a JOIN", "join", fault.ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, forkJoin, nil)
			_, err := h.try(engine.Jump{Ref: tc.ref})
			wantErr(t, err, tc.kind)
		})
	}
	paused := newHarness(t, threeSimple, nil)
	paused.decide(engine.Pause{})
	_, err := paused.try(engine.Jump{Ref: "c_ref"})
	wantErr(t, err, fault.ErrConflict)

	// A record that drops a task still running is refused by the fold: no
	// jump writes one, and one that did would lose the task.
	running := newHarness(t, threeSimple, nil)
	if _, err := engine.Apply(running.w.Clone(), &schemas.WorkflowJumped{Ref: "a_ref", Dropped: []string{running.task("a_ref").ID}}); err == nil {
		t.Fatal("a jump record dropped a running task")
	}
}

// A jump away from a SUB_WORKFLOW ends its child, and recovery ends it
// again if the process died before it did.
func TestJumpEndsChild(t *testing.T) {
	def := `{"name":"parent","tasks":[{"name":"child","taskReferenceName":"child","type":"SUB_WORKFLOW",
	  "subWorkflowParam":{"name":"kid"}},{"name":"after","taskReferenceName":"after"}]}`
	h := newHarness(t, def, nil)
	kid := h.task("child").SubWorkflowID
	d := h.decide(engine.Jump{Ref: "after"})
	ends := effectsOf[engine.TerminateWorkflow](d)
	if len(ends) != 1 || ends[0].WorkflowID != kid || ends[0].ParentEnded == 0 {
		t.Fatalf("terminate effects %+v", ends)
	}
	if again := effectsOf[engine.TerminateWorkflow](h.decide(engine.Reconcile{})); !reflect.DeepEqual(again, ends) {
		t.Fatalf("recovery's terminate effects %+v, want %+v", again, ends)
	}
	// The child's end is late news.
	if d := h.decide(engine.ChildFinished{ChildID: kid, Status: conductor.WorkflowTerminated}); len(d.Events) != 0 {
		t.Fatal("the ended child's news changed the parent")
	}
	h.complete("after", nil)
	h.wantStatus(conductor.WorkflowCompleted)
}

// A task that caches its output completes from the cache when the key its
// input makes was cached by a run of the same task, by a workflow of the
// same principals, within its time to live; a key that would hold a
// secret, or an output with _secrets, is never cached.
func TestCachedOutput(t *testing.T) {
	def := `{"name":"cached","tasks":[
	 {"name":"fetch","taskReferenceName":"fetch","inputParameters":{"url":"${workflow.input.url}","tok":"${workflow.secrets.tok}"},
	  "cacheConfig":{"key":"${url}-get","ttlInSecond":60}},
	 {"name":"after","taskReferenceName":"after","inputParameters":{"body":"${fetch.output.body}"}}]}`
	first := newHarness(t, def, map[string]any{"url": "https://a"})
	first.complete("fetch", map[string]any{"body": "A"})
	stored := effectsOf[engine.CacheOutput](first.last)
	if len(stored) != 1 || stored[0].ExpiresAt != first.now.Add(time.Minute).UnixMilli() || stored[0].Output["body"] != "A" {
		t.Fatalf("cache effects %+v", stored)
	}
	start := func(t *testing.T, url, by string, advance time.Duration) *harness {
		h := &harness{t: t, now: epoch.Add(advance), taskDefs: map[string]*conductor.TaskDef{}, cached: first.cached}
		h.decide(engine.Start{WorkflowID: "wf-2", Def: parseDef(t, def), CreatedBy: by,
			Request: conductor.StartWorkflowRequest{Input: map[string]any{"url": url}}})
		return h
	}

	again := start(t, "https://a", "app:tester", 59*time.Second)
	if f := again.wantTask("fetch", conductor.TaskCompleted); f.Output["body"] != "A" {
		t.Fatalf("cached output %v", f.Output)
	}
	if ds := effectsOf[engine.Dispatch](again.last); len(ds) != 1 || ds[0].TaskType != "after" {
		t.Fatalf("dispatched %+v, want only the task after the cached one", ds)
	}
	if a := again.wantTask("after", conductor.TaskScheduled); a.Input["body"] != "A" {
		t.Fatalf("the next task reads %v", a.Input)
	}

	for _, tc := range []struct {
		name, url, by string
		advance       time.Duration
	}{
		{"another key", "https://b", "app:tester", 0},
		{"another principal", "https://a", "app:other", 0},
		{"expired", "https://a", "app:tester", time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start(t, tc.url, tc.by, tc.advance).wantTask("fetch", conductor.TaskScheduled)
		})
	}

	for _, tc := range []struct {
		name, key string
		output    map[string]any
	}{
		{"a key holding a secret", "${tok}", map[string]any{"body": "A"}},
		{"an output with _secrets", "${url}", map[string]any{"_secrets": map[string]any{"t": "x"}}},
		{"an output with _masked deep inside", "${url}", map[string]any{"list": []any{map[string]any{"_masked": "x"}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, strings.Replace(def, "${url}-get", tc.key, 1), map[string]any{"url": "https://a"})
			h.complete("fetch", tc.output)
			if c := effectsOf[engine.CacheOutput](h.last); len(c) != 0 {
				t.Fatalf("cached %+v", c)
			}
		})
	}
}

// A value found to be secret once a task's output was cached (marked by
// a ValuesMasked of the workflow, here one its starter's news records)
// takes the output out of the cache: the key of the task's output, once,
// however many paths mark it; not for a task that caches nothing, nor
// for paths outside task outputs. The state shows the output masked
// (OutputMasked), which the cache's write of the output, performed
// after the purge, reads.
func TestUncacheOutputs(t *testing.T) {
	def := `{"name":"cached","tasks":[
	 {"name":"fetch","taskReferenceName":"fetch","inputParameters":{"url":"${workflow.input.url}"},"cacheConfig":{"key":"${url}","ttlInSecond":60}},
	 {"name":"plain","taskReferenceName":"plain"}]}`
	h := newHarness(t, def, map[string]any{"url": "https://a"})
	h.complete("fetch", map[string]any{"token": "found-secret-later", "other": "found-secret-too"})
	stored := effectsOf[engine.CacheOutput](h.last)
	if len(stored) != 1 {
		t.Fatalf("cache effects %+v", stored)
	}
	h.complete("plain", map[string]any{"token": "found-secret-later"})
	fetch, plain := h.task("fetch").ID, h.task("plain").ID
	if stored[0].WorkflowID != h.w.ID || stored[0].TaskID != fetch {
		t.Fatalf("the cache effect names task %s of %s, want %s of %s", stored[0].TaskID, stored[0].WorkflowID, fetch, h.w.ID)
	}
	if engine.OutputMasked(h.w, fetch) {
		t.Fatal("fetch's output masked before any value was found secret")
	}
	masked := &schemas.ValuesMasked{Paths: []string{
		"task/" + fetch + "/output.token", "task/" + fetch + "/output.other", "task/" + plain + "/output.token",
		"task/" + fetch + "/input.url", "input.url"}}
	// The guard adds them to the decision that records the ValuesMasked,
	// a ValuesFound's too, on the state that decision folds to.
	d := h.decide(engine.ValuesFound{From: "parent", Masked: masked})
	if got := effectsOf[engine.UncacheOutput](d); len(got) != 0 {
		t.Fatalf("the decision has uncache effects of its own %+v: the guard's would purge each key twice", got)
	}
	got := effectsOf[engine.UncacheOutput](engine.Decision{Effects: engine.Uncache(h.w, masked)})
	if len(got) != 1 || got[0].Key != stored[0].Key {
		t.Fatalf("uncache effects %+v, want the one of key %s", got, stored[0].Key)
	}
	if !engine.OutputMasked(h.w, fetch) {
		t.Fatalf("fetch's output not masked once its values were found secret (masked paths %v)", h.w.MaskedPaths)
	}
	// Neither is recorded: recovery performs the purge again, and the
	// compaction, which is not recorded unless its purge succeeded first.
	if got := effectsOf[engine.UncacheOutput](h.decide(engine.Reconcile{})); len(got) != 1 || got[0] != (engine.UncacheOutput{Key: stored[0].Key}) {
		t.Fatalf("reconcile's uncache effects %+v, want the one of key %s", got, stored[0].Key)
	}
	if got := effectsOf[engine.UncacheOutput](h.decide(engine.Compact{})); len(got) != 1 || got[0] != (engine.UncacheOutput{Key: stored[0].Key, Required: true}) {
		t.Fatalf("compaction's uncache effects %+v, want the required one of key %s", got, stored[0].Key)
	}
}

// The principals a workflow runs as only grow (a variable set or a task
// reported on by an operator): an output cached before that is under the
// key of those it ran as then, which its purges take out, and not only
// under the key of those it runs as now, which names no entry.
func TestUncacheOutputsCachedBeforeMorePrincipals(t *testing.T) {
	def := `{"name":"cached","tasks":[
	 {"name":"fetch","taskReferenceName":"fetch","inputParameters":{"url":"${workflow.input.url}"},"cacheConfig":{"key":"${url}","ttlInSecond":60}},
	 {"name":"plain","taskReferenceName":"plain"}]}`
	h := newHarness(t, def, map[string]any{"url": "https://a"})
	h.complete("fetch", map[string]any{"token": "found-secret-later"})
	stored := effectsOf[engine.CacheOutput](h.last)
	if len(stored) != 1 {
		t.Fatalf("cache effects %+v", stored)
	}
	h.decide(engine.SetVariables{Variables: map[string]any{"v": 1}, By: "app:other"})
	if p := h.w.Principals(); len(p) != 2 {
		t.Fatalf("the workflow runs as %v, want its creator and app:other", p)
	}
	masked := &schemas.ValuesMasked{Paths: []string{"task/" + h.task("fetch").ID + "/output.token"}}
	h.decide(engine.ValuesFound{From: "parent", Masked: masked})
	for name, effs := range map[string][]engine.Effect{
		"the guard's": engine.Uncache(h.w, masked),
		"recovery's":  h.decide(engine.Reconcile{}).Effects,
	} {
		got := effectsOf[engine.UncacheOutput](engine.Decision{Effects: effs})
		if !slices.Contains(got, engine.UncacheOutput{Key: stored[0].Key}) {
			t.Errorf("%s uncache effects %+v, none of key %s, under which the output was cached", name, got, stored[0].Key)
		}
	}
}

// An upgrade may change a completed task's cacheConfig (its key, or none
// at all): its output was cached, or served, under the key of the
// definition it completed under, which its purges take out, and not only
// under the key of the version it runs now, which names no entry. The
// entry of a task served from the cache names the workflow that cached it,
// which masks nothing: left in the cache, it is served in plain text.
func TestUncacheOutputsCachedBeforeAnUpgrade(t *testing.T) {
	t.Parallel()
	v1 := `{"name":"cached","version":1,"tasks":[
	 {"name":"fetch","taskReferenceName":"fetch","inputParameters":{"url":"${workflow.input.url}"},"cacheConfig":{"key":"${url}","ttlInSecond":60}},
	 {"name":"plain","taskReferenceName":"plain"}]}`
	tests := []struct{ name, cacheConfig string }{
		{"another key", `,"cacheConfig":{"key":"v2:${url}","ttlInSecond":60}`},
		{"no cacheConfig", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, v1, map[string]any{"url": "https://a"})
			h.complete("fetch", map[string]any{"token": "found-secret-later"})
			stored := effectsOf[engine.CacheOutput](h.last)
			if len(stored) != 1 {
				t.Fatalf("cache effects %+v", stored)
			}
			h.decide(engine.Upgrade{Def: parseDef(t, `{"name":"cached","version":2,"tasks":[
			 {"name":"fetch","taskReferenceName":"fetch","inputParameters":{"url":"${workflow.input.url}"}`+tt.cacheConfig+`},
			 {"name":"plain","taskReferenceName":"plain"}]}`), DecidedFor: h.w.Principals()})
			masked := &schemas.ValuesMasked{Paths: []string{"task/" + h.task("fetch").ID + "/output.token"}}
			h.decide(engine.ValuesFound{From: "parent", Masked: masked})
			h.complete("plain", nil)
			for name, effs := range map[string][]engine.Effect{
				"the guard's":      engine.Uncache(h.w, masked),
				"recovery's":       h.decide(engine.Reconcile{}).Effects,
				"the compaction's": h.decide(engine.Compact{}).Effects,
			} {
				got := effectsOf[engine.UncacheOutput](engine.Decision{Effects: effs})
				if !slices.ContainsFunc(got, func(u engine.UncacheOutput) bool { return u.Key == stored[0].Key }) {
					t.Errorf("%s uncache effects %+v, none of key %s, under which version 1 cached the output", name, got, stored[0].Key)
				}
			}
		})
	}
}

// A worker task that waits before it is handed out, a retry's delay or a
// startDelay, waits out a callbackAfterSeconds until it is taken, as
// Conductor's: it shows the wait, and a reset of the callbacks hands it
// out at once.
func TestDelayedTaskWaitsOutACallback(t *testing.T) {
	for _, c := range []struct {
		name, def, taskDef string
		fail               bool // the delayed task is a's retry
		wait               int64
	}{
		{"a retry's delay", `{"name":"d","tasks":[{"name":"a","taskReferenceName":"a"}]}`,
			`{"name":"a","retryCount":1,"retryDelaySeconds":5}`, true, 5},
		{"a startDelay", `{"name":"d","tasks":[{"name":"a","taskReferenceName":"a","startDelay":3}]}`,
			`{"name":"a"}`, false, 3},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, c.def, nil, c.taskDef)
			if c.fail {
				h.advance(time.Second)
				h.take("a")
				h.report("a", conductor.TaskFailed, nil, "boom")
			}
			a := h.wantTask("a", conductor.TaskScheduled)
			if view := a.Conductor(h.w); view.CallbackAfterSeconds != c.wait || view.StartDelayInSeconds != c.wait {
				t.Fatalf("waiting: callbackAfterSeconds %d, startDelayInSeconds %d; want %d", view.CallbackAfterSeconds, view.StartDelayInSeconds, c.wait)
			}
			d := h.decide(engine.ResetCallbacks{})
			if a := h.task("a"); a.AvailableAt != h.now.UnixMilli() || a.CallbackAfterSeconds != 0 {
				t.Fatalf("after reset: available %d (now %d), callback %d", a.AvailableAt, h.now.UnixMilli(), a.CallbackAfterSeconds)
			}
			if len(effectsOf[engine.Dispatch](d)) != 1 {
				t.Fatalf("reset dispatched %v", d.Effects)
			}
		})
	}
}

// TestJumpedOverTasksStayEnded pins what becomes of the tasks a jump
// forward canceled (a SUB_WORKFLOW's child terminated), the workflow gone
// on past them: its retry runs again only what failed after the jump (as
// Orkes's retry runs the last failed task), a rerun from the jump's target
// does not run them again, and the child's retry does not reopen its
// SUB_WORKFLOW task, whether the workflow still runs or has ended. The
// child's retry, restart or rerun, decided with its parent as the
// executor reads it, is refused: it would run for nothing.
func TestJumpedOverTasksStayEnded(t *testing.T) {
	def := func(first string) string {
		return `{"name":"j","tasks":[` + first + `,{"name":"mid","taskReferenceName":"mid"},{"name":"after","taskReferenceName":"after"}]}`
	}
	kid := `{"name":"kid","taskReferenceName":"first","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"kid"}}`
	shapes := []struct {
		name, def string
		// child is the SUB_WORKFLOW task the jump canceled, if any.
		child string
		// canceled are the tasks the jump canceled.
		canceled []string
	}{
		{name: "a SUB_WORKFLOW", def: def(kid), child: "first", canceled: []string{"first"}},
		{name: "a worker's task", def: def(`{"name":"first","taskReferenceName":"first"}`), canceled: []string{"first"}},
		{name: "a fork", def: def(`{"name":"fork","taskReferenceName":"fork","type":"FORK_JOIN","forkTasks":[[` + kid + `],[{"name":"b","taskReferenceName":"b"}]]},
		  {"name":"join","taskReferenceName":"join","type":"JOIN","joinOn":["first","b"]}`), child: "first", canceled: []string{"first", "b", "join"}},
		{name: "a DO_WHILE", def: def(`{"name":"looping","taskReferenceName":"loop","type":"DO_WHILE","loopCondition":"$.loop['iteration'] < 3","loopOver":[` + kid + `]}`),
			child: "first__1", canceled: []string{"loop", "first__1"}},
	}
	fail := func(h *harness) {
		h.report("after", conductor.TaskFailed, nil, "down")
		h.wantStatus(conductor.WorkflowFailed)
	}
	reopen := func(h *harness, ref string) {
		if d := h.decide(engine.ChildReopened{ChildID: h.task(ref).SubWorkflowID, ResetTime: h.now.UnixMilli()}); len(d.Events) != 0 {
			h.t.Fatalf("the child's retry changed the parent: %s", describe(d))
		}
	}
	// refused decides trig for the child the jump terminated (ref's),
	// with the parent as it is, and wants it refused.
	kidDef := `{"name":"kid","tasks":[{"name":"k","taskReferenceName":"k"}]}`
	refused := func(h *harness, ref string, trig func(c *harness) engine.Trigger) {
		h.t.Helper()
		c := newHarness(h.t, kidDef, nil)
		c.w.ID, c.w.ParentWorkflowID = h.task(ref).SubWorkflowID, h.w.ID
		c.decide(engine.Terminate{Reason: "jumped"})
		c.advance(time.Second) // an operator's doing, after the end
		if _, err := c.try(trig(c)); !errorsIs(err, fault.ErrConflict) || !strings.Contains(err.Error(), "a jump passed over") {
			h.t.Fatalf("the jumped child's %s: %v, want refused", engine.TriggerName(trig(c)), err)
		}
		c.wantStatus(conductor.WorkflowTerminated)
	}
	ops := []struct {
		name      string
		needChild bool
		// again acts on the workflow once it jumped; ended: it leaves it
		// ended. added is how many tasks it adds (a retry's new instance).
		again func(h *harness, child string)
		ended bool
		added int
	}{
		{name: "the child's retry while the workflow runs", needChild: true, again: func(h *harness, child string) { reopen(h, child) }},
		{name: "the child's retry once the workflow failed", needChild: true, ended: true, again: func(h *harness, child string) {
			fail(h)
			reopen(h, child)
		}},
		{name: "the child's own retry is refused", needChild: true, again: func(h *harness, child string) {
			refused(h, child, func(*harness) engine.Trigger { return engine.Retry{Ancestors: []*engine.Workflow{h.w}} })
		}},
		{name: "the child's own restart is refused", needChild: true, again: func(h *harness, child string) {
			refused(h, child, func(*harness) engine.Trigger { return engine.Restart{Ancestors: []*engine.Workflow{h.w}} })
		}},
		{name: "the child's own rerun is refused once the workflow failed", needChild: true, ended: true, again: func(h *harness, child string) {
			fail(h)
			refused(h, child, func(c *harness) engine.Trigger {
				return engine.Rerun{Request: conductor.RerunWorkflowRequest{ReRunFromTaskID: c.task("k").ID}, Ancestors: []*engine.Workflow{h.w}}
			})
		}},
		{name: "a rerun asked of the child from a task of its own child is refused", needChild: true, again: func(h *harness, child string) {
			refused(h, child, func(c *harness) engine.Trigger {
				// c stands for the grandchild holding the task, kid for
				// the child asked, whose task k ran it.
				kid, k := *c.w, *c.task("k")
				k.SubWorkflowID = "grandkid"
				kid.Tasks = []*engine.Task{&k}
				c.w.ID, c.w.ParentWorkflowID = "grandkid", kid.ID
				return engine.Rerun{Request: conductor.RerunWorkflowRequest{ReRunFromTaskID: c.task("k").ID}, UpTo: kid.ID, Ancestors: []*engine.Workflow{&kid, h.w}}
			})
		}},
		{name: "retry", added: 1, again: func(h *harness, _ string) {
			fail(h)
			h.decide(engine.Retry{})
		}},
		{name: "rerun from the jump's target", again: func(h *harness, _ string) {
			fail(h)
			h.decide(engine.Rerun{Request: conductor.RerunWorkflowRequest{ReRunFromTaskID: h.task("after").ID}})
		}},
	}
	for _, shape := range shapes {
		for _, op := range ops {
			if op.needChild && shape.child == "" {
				continue
			}
			t.Run(shape.name+"/"+op.name, func(t *testing.T) {
				h := newHarness(t, shape.def, nil, `{"name":"after","retryCount":0}`)
				if shape.child == "" {
					h.take("first")
				}
				h.decide(engine.Jump{Ref: "after"})
				for _, ref := range shape.canceled {
					h.wantTask(ref, conductor.TaskCanceled)
				}
				h.wantTask("after", conductor.TaskScheduled)
				before := len(h.w.Tasks)
				op.again(h, shape.child)
				for _, ref := range shape.canceled {
					if x := h.wantTask(ref, conductor.TaskCanceled); x.Retried {
						t.Fatalf("task %s the jump canceled was run again: tasks %v", ref, h.refs())
					}
				}
				if op.ended {
					h.wantStatus(conductor.WorkflowFailed)
					// A retry with resumeSubworkflowTasks looks here for
					// the child to retry: not the one the jump terminated.
					if f := h.w.FirstFailed(); f == nil || f.Ref != "after" {
						t.Fatalf("first failed task %+v, want after", f)
					}
					return
				}
				h.wantStatus(conductor.WorkflowRunning)
				if len(h.w.Tasks) != before+op.added {
					t.Fatalf("tasks %v: more run again than the one that failed", h.refs())
				}
				h.wantTask("after", conductor.TaskScheduled)
				h.complete("after", nil)
				h.wantStatus(conductor.WorkflowCompleted)
			})
		}
	}

	// A rerun from the task the jump canceled runs it again, with what
	// follows it, as any rerun does.
	h := newHarness(t, def(kid), nil, `{"name":"after","retryCount":0}`)
	h.decide(engine.Jump{Ref: "after"})
	fail(h)
	h.decide(engine.Rerun{Request: conductor.RerunWorkflowRequest{ReRunFromTaskID: h.task("first").ID}})
	h.wantRefs("first")
	if got := effectsOf[engine.StartWorkflow](h.last); len(got) != 1 {
		t.Fatalf("the rerun from the jumped task started children %+v, want one", got)
	}

	// A rerun asked of the workflow from a task of the child the jump
	// terminated is, as in Conductor, its rerun from the SUB_WORKFLOW task
	// that ran the child, waiting for that child again: as a rerun from
	// the jumped task itself, it runs it again. The child holding the task
	// is asked nothing of its own (its parent has no parent), so it is not
	// refused.
	h = newHarness(t, def(kid), nil, `{"name":"after","retryCount":0}`)
	h.decide(engine.Jump{Ref: "after"})
	fail(h)
	jumped := h.task("first").SubWorkflowID
	c := newHarness(t, kidDef, nil)
	c.w.ID, c.w.ParentWorkflowID = jumped, h.w.ID
	c.decide(engine.Terminate{Reason: "jumped"})
	c.advance(time.Second)
	c.decide(engine.Rerun{Request: conductor.RerunWorkflowRequest{ReRunFromTaskID: c.task("k").ID}, UpTo: h.w.ID})
	c.wantStatus(conductor.WorkflowRunning)
	h.decide(engine.ChildReopened{ChildID: jumped, RerunUpTo: h.w.ID, ResetTime: c.w.ResetTime})
	h.wantRefs("first")
	if first := h.wantTask("first", conductor.TaskInProgress); first.SubWorkflowID != jumped {
		t.Fatalf("the rerun through the child waits for %s, want %s", first.SubWorkflowID, jumped)
	}
	// The SUB_WORKFLOW task waits for it again: its news counts, and its
	// retry is no longer refused.
	c.decide(engine.Terminate{Reason: "again"})
	if _, err := c.try(engine.Retry{Ancestors: []*engine.Workflow{h.w}}); err != nil {
		t.Fatalf("the retry of a child its parent reran through: %v", err)
	}
}

// forkAfterSwitch is a fork of three branches, the last going through a
// SWITCH's case before the task the JOIN joins.
const forkAfterSwitch = `{"name":"fs","tasks":[
 {"name":"fork","taskReferenceName":"fork","type":"FORK_JOIN","forkTasks":[
   [{"name":"a","taskReferenceName":"a"},{"name":"a2","taskReferenceName":"a2"}],
   [{"name":"b","taskReferenceName":"b"}],
   [{"name":"sw","taskReferenceName":"sw","type":"SWITCH","evaluatorType":"value-param","expression":"k","inputParameters":{"k":"x"},
     "decisionCases":{"y":[{"name":"c1","taskReferenceName":"c1"}]},"defaultCase":[{"name":"c0","taskReferenceName":"c0"}]},
    {"name":"c","taskReferenceName":"c"}]]},
 {"name":"join","taskReferenceName":"join","type":"JOIN","joinOn":["a2","b","c"]},
 {"name":"z","taskReferenceName":"z"}]}`

// A rerun from a task of a fork that a jump passed over runs its branch
// again, the JOIN and what follows it; the JOIN waits for the branches
// that are live, not for those the jump passed over, which stay canceled
// (FuzzLifecycle with jumps found the JOIN waiting for them for good, the
// workflow stuck RUNNING).
func TestRerunInsideAForkAJumpLeft(t *testing.T) {
	for _, tc := range []struct {
		name   string
		before []string // completed before the jump
		from   string
		then   []string
		passed []string // canceled by the jump, and left so
		joined []string // the JOIN's output
	}{
		// Before, the JOIN waited for a2 for good.
		{"a branch stopped before its joined task", nil, "b", []string{"b", "c0", "c", "z"}, []string{"a"}, []string{"b", "c"}},
		// Before, the JOIN failed by b.
		{"a joined task canceled", nil, "sw", []string{"c0", "c", "z"}, []string{"a", "b"}, []string{"c"}},
		// Before, the JOIN stayed canceled, and the workflow completed
		// after a2.
		{"the JOIN canceled, a branch stopped in a SWITCH's case", []string{"a"}, "a2", []string{"a2", "z"}, []string{"b", "c0"}, []string{"a2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, forkAfterSwitch, nil, `{"name":"z","retryCount":0}`)
			for _, ref := range tc.before {
				h.complete(ref, nil)
			}
			h.decide(engine.Jump{Ref: "z"})
			h.report("z", conductor.TaskFailed, nil, "down")
			h.wantStatus(conductor.WorkflowFailed)
			h.decide(engine.Rerun{Request: conductor.RerunWorkflowRequest{ReRunFromTaskID: h.task(tc.from).ID}})
			h.wantStatus(conductor.WorkflowRunning)
			for _, ref := range tc.then {
				h.complete(ref, nil)
			}
			h.wantStatus(conductor.WorkflowCompleted)
			for _, ref := range tc.passed {
				if x := h.wantTask(ref, conductor.TaskCanceled); x.Retried {
					t.Fatalf("%s, which the jump passed over, ran again: tasks %v", ref, h.refs())
				}
			}
			if got := slices.Sorted(maps.Keys(h.wantTask("join", conductor.TaskCompleted).Output)); !slices.Equal(got, tc.joined) {
				t.Fatalf("the JOIN joined %v, want %v", got, tc.joined)
			}
		})
	}
}

// A retry, restart or rerun, decided for a grandchild with its ancestors
// as the executor reads them, is refused when a workflow it would run
// again is the child of a task its parent went on past: the grandchild
// whose parent a jump passed over, and the jumped child's retry with
// resumeSubworkflowTasks (decided for the grandchild, asked of the child).
// The same line whose top an operator terminated is retried through, and a
// rerun asked of the top from the grandchild's task reruns each from its
// SUB_WORKFLOW task, as a rerun from the jumped task does. With
// retryIfRetriedByParent=false, a retry into the grandchild is refused by
// the parent of the workflow asked, which moved on from it.
func TestRefusedForWhatAnAncestorWentOnPast(t *testing.T) {
	const (
		topDef  = `{"name":"top","tasks":[{"name":"mid","taskReferenceName":"mid","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"mid"}},{"name":"after","taskReferenceName":"after"}]}`
		midDef  = `{"name":"mid","tasks":[{"name":"leaf","taskReferenceName":"leaf","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"leaf"}}]}`
		leafDef = `{"name":"leaf","tasks":[{"name":"k","taskReferenceName":"k"}]}`
	)
	// line is a top workflow, its child and its grandchild, decided each
	// on its own as the executor does.
	type line struct{ top, mid, leaf *harness }
	child := func(p *harness, ref, def string) *harness {
		sub := p.task(ref)
		return newHarnessStart(t, engine.Start{WorkflowID: sub.SubWorkflowID, Def: parseDef(t, def), CreatedBy: "app:tester",
			ParentWorkflowID: p.w.ID, ParentWorkflowTaskID: sub.ID})
	}
	// ended terminates the child and grandchild, as the top's jump or end
	// does.
	ended := func(l line) {
		l.mid.decide(engine.Terminate{Reason: "parent ended"})
		l.leaf.decide(engine.Terminate{Reason: "parent ended"})
	}
	jumped := func(l line) {
		l.top.decide(engine.Jump{Ref: "after"})
		ended(l)
	}
	failed := func(l line) {
		l.leaf.report("k", conductor.TaskFailedWithTerminalError, nil, "down")
		l.mid.decide(engine.ChildFinished{ChildID: l.leaf.w.ID, Status: conductor.WorkflowFailed, Reason: "down"})
		l.top.decide(engine.ChildFinished{ChildID: l.mid.w.ID, Status: conductor.WorkflowFailed, Reason: "down"})
		l.top.wantStatus(conductor.WorkflowFailed)
	}
	for _, tc := range []struct {
		name   string
		before func(l line)
		// trig is decided for the grandchild.
		trig func(l line, ancestors []*engine.Workflow) engine.Trigger
		// refused is what the refusal, which begins with the child's
		// id, says, %s the grandchild's id ("": taken).
		refused string
	}{
		{"the grandchild's retry", jumped, func(_ line, a []*engine.Workflow) engine.Trigger { return engine.Retry{Ancestors: a} },
			"which a jump passed over (jumped to after): the parent went on past it and would not wait for it, run again by a retry of workflow %s below it"},
		{"the grandchild's restart", jumped, func(_ line, a []*engine.Workflow) engine.Trigger { return engine.Restart{Ancestors: a} },
			"run again by a restart of workflow %s below it"},
		{"the grandchild's rerun", jumped, func(_ line, a []*engine.Workflow) engine.Trigger { return engine.Rerun{Ancestors: a} },
			"run again by a rerun of workflow %s below it"},
		{"the jumped child's retry into its grandchild", jumped, func(l line, a []*engine.Workflow) engine.Trigger {
			return engine.Retry{UpTo: l.mid.w.ID, Ancestors: a}
		}, "which a jump passed over (jumped to after): the parent went on past it and would not wait for a retry of it; rerun"},
		{"the jumped child's rerun from its grandchild's task", jumped, func(l line, a []*engine.Workflow) engine.Trigger {
			return engine.Rerun{Request: conductor.RerunWorkflowRequest{ReRunFromTaskID: l.leaf.task("k").ID}, UpTo: l.mid.w.ID, Ancestors: a}
		}, "would not wait for a rerun of it"},
		{"the top's rerun from its grandchild's task", func(l line) {
			jumped(l)
			l.top.report("after", conductor.TaskFailedWithTerminalError, nil, "down")
		}, func(l line, a []*engine.Workflow) engine.Trigger {
			return engine.Rerun{Request: conductor.RerunWorkflowRequest{ReRunFromTaskID: l.leaf.task("k").ID}, UpTo: l.top.w.ID, Ancestors: a}
		}, ""},
		{"the grandchild's retry once an operator terminated the top", func(l line) {
			l.top.decide(engine.Terminate{Reason: "stop"})
			ended(l)
		}, func(_ line, a []*engine.Workflow) engine.Trigger { return engine.Retry{Ancestors: a} }, ""},
		{"retryIfRetriedByParent=false, into the grandchild of a parent that moved on", func(l line) {
			failed(l)
			l.top.decide(engine.Retry{})
		}, func(l line, a []*engine.Workflow) engine.Trigger {
			return engine.Retry{UpTo: l.mid.w.ID, RefuseIfParentRetried: true, Ancestors: a}
		}, "is a sub-workflow its parent wf-1 no longer waits for"},
		{"retryIfRetriedByParent=false, into the grandchild of a parent that waits", failed, func(l line, a []*engine.Workflow) engine.Trigger {
			return engine.Retry{UpTo: l.mid.w.ID, RefuseIfParentRetried: true, Ancestors: a}
		}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			top := newHarness(t, topDef, nil)
			mid := child(top, "mid", midDef)
			l := line{top, mid, child(mid, "leaf", leafDef)}
			tc.before(l)
			// Later than the ends: an operator's doing.
			l.leaf.advance(time.Second)
			ancestors := []*engine.Workflow{l.mid.w, l.top.w}
			before := l.leaf.w.Status
			_, err := l.leaf.try(tc.trig(l, ancestors))
			if tc.refused == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				l.leaf.wantStatus(conductor.WorkflowRunning)
				return
			}
			want := strings.ReplaceAll(tc.refused, "%s", l.leaf.w.ID)
			if !errorsIs(err, fault.ErrConflict) || !strings.HasPrefix(err.Error(), "workflow "+l.mid.w.ID+" ") || !strings.Contains(err.Error(), want) {
				t.Fatalf("got %v, want refused naming workflow %s: %s", err, l.mid.w.ID, want)
			}
			l.leaf.wantStatus(before)
		})
	}
}

// A task skipped before the workflow reaches it never runs: a SUB_WORKFLOW
// skipped starts no child (skip refuses a task already scheduled, so it
// never ends one), and a retry or a rerun from a later task leaves it
// SKIPPED, running again only what failed.
func TestSkippedTaskStaysSkipped(t *testing.T) {
	def := `{"name":"s","tasks":[{"name":"a","taskReferenceName":"a"},
	  {"name":"kid","taskReferenceName":"sub","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"kid"}},
	  {"name":"after","taskReferenceName":"after"}]}`
	for _, tc := range []struct {
		name  string
		again func(h *harness)
	}{
		{"retry", func(h *harness) { h.decide(engine.Retry{}) }},
		{"rerun from the task after it", func(h *harness) {
			h.decide(engine.Rerun{Request: conductor.RerunWorkflowRequest{ReRunFromTaskID: h.task("after").ID}})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, def, nil, `{"name":"after","retryCount":0}`)
			h.decide(engine.SkipTask{Ref: "sub"})
			if _, err := h.try(engine.SkipTask{Ref: "a"}); !errorsIs(err, fault.ErrConflict) {
				t.Fatalf("skip of a scheduled task: %v", err)
			}
			h.complete("a", nil)
			h.wantTask("sub", conductor.TaskSkipped)
			h.report("after", conductor.TaskFailed, nil, "down")
			h.wantStatus(conductor.WorkflowFailed)
			if f := h.w.FirstFailed(); f == nil || f.Ref != "after" {
				t.Fatalf("first failed task %+v, want after", f)
			}
			tc.again(h)
			h.wantStatus(conductor.WorkflowRunning)
			if s := h.wantTask("sub", conductor.TaskSkipped); s.SubWorkflowID != "" {
				t.Fatalf("the skipped SUB_WORKFLOW ran child %s", s.SubWorkflowID)
			}
			h.wantTask("after", conductor.TaskScheduled)
			h.complete("after", nil)
			h.wantStatus(conductor.WorkflowCompleted)
			for _, x := range h.w.Tasks {
				if x.Ref == "sub" && x.Status != conductor.TaskSkipped {
					t.Fatalf("tasks %v: the skipped task ran", h.refs())
				}
			}
		})
	}
}

// A fork is not skipped: its branches would never run, and its JOIN,
// reached next, would wait for them for good (FuzzLifecycle found the
// workflow stuck). Nor is a JOIN: the flow went on past it while its
// branches ran, and a rerun that reopened it left it waiting for good
// (FuzzLifecycle again). Its branches' tasks may be, and the JOIN joins
// them.
func TestSkipForkRefused(t *testing.T) {
	const def = `{"name":"f","tasks":[{"name":"first","taskReferenceName":"first"},
	 {"name":"fork","taskReferenceName":"fork","type":"FORK_JOIN","forkTasks":[
	   [{"name":"a","taskReferenceName":"a"}],[{"name":"b","taskReferenceName":"b"}]]},
	 {"name":"join","taskReferenceName":"join","type":"JOIN","joinOn":["a","b"]},
	 {"name":"dyn","taskReferenceName":"dyn","type":"FORK_JOIN_DYNAMIC","dynamicForkTasksParam":"tasks",
	  "inputParameters":{"tasks":"${workflow.input.tasks}"}},
	 {"name":"djoin","taskReferenceName":"djoin","type":"JOIN"}]}`
	for _, ref := range []string{"fork", "dyn", "join", "djoin"} {
		h := newHarness(t, def, map[string]any{"tasks": []any{}})
		d, err := h.try(engine.SkipTask{Ref: ref})
		wantErr(t, err, fault.ErrInvalid)
		if len(d.Events) > 0 {
			t.Fatalf("skip of %s refused with events", ref)
		}
	}
	h := newHarness(t, def, map[string]any{"tasks": []any{}})
	h.decide(engine.SkipTask{Ref: "a"})
	h.decide(engine.SkipTask{Ref: "b"})
	h.complete("first", nil)
	h.wantTask("join", conductor.TaskCompleted)
	h.wantStatus(conductor.WorkflowCompleted)
}

// An upgrade, or a restart onto the latest definition, runs the new
// definition as everyone the workflow runs as, and the caller asked
// EXECUTE on it of those it read. One who joined since (here by a
// variables update, as an operator's result or a child's news would
// join them) was not asked: the move is refused as stale, to be asked
// again, and changes nothing. A caller that decided for nobody is a bug,
// not a conflict; a restart onto the definition the workflow ran decides
// nothing.
func TestMoveOntoDefinitionDecidedForWhomItRunsAs(t *testing.T) {
	t.Parallel()
	v2 := `{"name":"three","version":2,"tasks":[{"name":"a","taskReferenceName":"a_ref"},{"name":"z","taskReferenceName":"z_ref"}]}`
	move := map[string]func(t *testing.T, decidedFor []string) engine.Trigger{
		"upgrade": func(t *testing.T, decidedFor []string) engine.Trigger {
			return engine.Upgrade{Def: parseDef(t, v2), By: "app:tester", DecidedFor: decidedFor}
		},
		"restart": func(t *testing.T, decidedFor []string) engine.Trigger {
			return engine.Restart{Def: parseDef(t, v2), By: "app:tester", DecidedFor: decidedFor}
		},
	}
	tests := []struct {
		name       string
		joined     string   // who joins after the caller's read, if anyone
		decidedFor []string // nil: the workflow's principals as read
		nobody     bool     // decided for none (nil)
		kind       error    // nil: moved onto version 2
	}{
		{name: "same principals"},
		{name: "one more principal", joined: "bob@example.com", kind: fault.ErrStale},
		{name: "one more principal, decided for", joined: "bob@example.com", decidedFor: []string{"app:tester", "bob@example.com"}},
		{name: "decided for nobody", nobody: true},
	}
	for op, trigger := range move {
		for _, tt := range tests {
			t.Run(op+"/"+tt.name, func(t *testing.T) {
				t.Parallel()
				h := newHarness(t, threeSimple, nil)
				read := h.w.Principals()
				if tt.decidedFor != nil || tt.nobody {
					read = tt.decidedFor
				}
				if tt.joined != "" {
					h.decide(engine.SetVariables{Variables: map[string]any{"k": 1}, By: tt.joined})
				}
				if op == "restart" {
					h.decide(engine.Terminate{})
				}
				before := h.w
				_, err := h.try(trigger(t, read))
				switch {
				case tt.nobody:
					if err == nil || errorsIs(err, fault.ErrConflict) {
						t.Fatalf("err = %v, want an error that is no conflict", err)
					}
				case tt.kind != nil:
					wantErr(t, err, tt.kind)
					if !errorsIs(err, fault.ErrConflict) {
						t.Fatalf("err = %v, want a conflict too", err)
					}
				case err != nil:
					t.Fatal(err)
				}
				want := 2
				if err != nil {
					want = 1
					if h.w != before {
						t.Fatal("a refused move changed the workflow")
					}
				}
				if h.w.Version != want {
					t.Fatalf("the workflow runs version %d, want %d", h.w.Version, want)
				}
			})
		}
	}
	h := newHarness(t, threeSimple, nil)
	h.decide(engine.Terminate{})
	h.decide(engine.Restart{})
	h.wantStatus(conductor.WorkflowRunning)
}

// An upgrade, or a restart onto the latest version, that keeps the input
// onto a version masking a field of it held in plain text records again
// the fields that version seals (its maskedFields, and what it copies into
// a _secrets block), for the guard to seal, and nothing else of the input:
// the whole input, recorded again, took a record as large as the start's,
// and one near the log's record limit could not be kept. The state folds
// the input it kept, those fields replaced.
func TestMovingOntoMaskedFieldsRecordsTheFieldsItSeals(t *testing.T) {
	const v1 = `{"name":"mv","version":1,"tasks":[{"name":"a","taskReferenceName":"a_ref"}]}`
	const (
		masksCard = `{"name":"mv","version":2,"maskedFields":["card"],"tasks":[{"name":"a","taskReferenceName":"a_ref"}]}`
		copiesPin = `{"name":"mv","version":2,"maskedFields":["card"],"tasks":[{"name":"a","taskReferenceName":"a_ref",
		  "inputParameters":{"_secrets":{"p":"${workflow.input.pin}"}}}]}`
		masksNothing = `{"name":"mv","version":2,"tasks":[{"name":"a","taskReferenceName":"a_ref"}]}`
	)
	sealed := &masking.Sealed{Kind: masking.KindSecrets, Purpose: "wf/mv/input.card", Ciphertext: []byte{1}}
	input := func(card any) map[string]any {
		return map[string]any{"card": card, "pin": "1234", "note": "plain", "pad": strings.Repeat("x", 4<<10)}
	}
	upgrade := func(h *harness, def string) engine.Decision {
		return h.decide(engine.Upgrade{Def: parseDef(h.t, def), DecidedFor: h.w.Principals()})
	}
	restart := func(h *harness, def string) engine.Decision {
		h.complete("a_ref", nil)
		return h.decide(engine.Restart{Def: parseDef(h.t, def), DecidedFor: h.w.Principals()})
	}
	for _, tc := range []struct {
		name   string
		input  map[string]any
		def    string
		move   func(*harness, string) engine.Decision
		fields map[string]any // recorded again; nil: none
	}{
		{"an upgrade onto a version masking a field", input("4111-1111"), masksCard, upgrade, map[string]any{"card": "4111-1111"}},
		{"an upgrade onto one copying a field into _secrets too", input("4111-1111"), copiesPin, upgrade,
			map[string]any{"card": "4111-1111", "pin": "1234"}},
		{"an upgrade onto one masking a field that is sealed", input(sealed), copiesPin, upgrade, nil},
		{"an upgrade onto one masking nothing", input("4111-1111"), masksNothing, upgrade, nil},
		{"an upgrade onto one masking a field the input lacks", map[string]any{"note": "plain"}, masksCard, upgrade, nil},
		{"a restart onto a version masking a field", input("4111-1111"), masksCard, restart, map[string]any{"card": "4111-1111"}},
		{"a restart onto one copying a field into _secrets too", input("4111-1111"), copiesPin, restart,
			map[string]any{"card": "4111-1111", "pin": "1234"}},
		{"a restart onto one masking nothing", input("4111-1111"), masksNothing, restart, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, v1, tc.input)
			kept := maps.Clone(h.w.Input)
			dec := tc.move(h, tc.def)
			var set bool
			var in, fields map[string]any
			for _, ev := range dec.Events {
				switch e := ev.(type) {
				case *schemas.WorkflowUpgraded:
					set, in, fields = e.SetInput, e.Input, e.InputFields
				case *schemas.WorkflowReset:
					set, in, fields = e.SetInput, e.Input, e.InputFields
				}
			}
			if set || in != nil {
				t.Errorf("the input is recorded again whole (%d fields), want only the fields sealed", len(in))
			}
			if !reflect.DeepEqual(fields, tc.fields) {
				t.Errorf("records the fields %v again, want %v", slices.Sorted(maps.Keys(fields)), slices.Sorted(maps.Keys(tc.fields)))
			}
			if h.w.Version != 2 || !reflect.DeepEqual(h.w.Input, kept) {
				t.Errorf("version %d, input %v; want 2 and the input kept", h.w.Version, slices.Sorted(maps.Keys(h.w.Input)))
			}
		})
	}

	// Given input replaces the workflow's whole, as recorded.
	h := newHarness(t, v1, input("4111-1111"))
	given := map[string]any{"card": "5500-0000"}
	for _, ev := range h.decide(engine.Upgrade{Def: parseDef(t, masksCard), Input: given, DecidedFor: h.w.Principals()}).Events {
		if e, ok := ev.(*schemas.WorkflowUpgraded); ok && (!e.SetInput || !reflect.DeepEqual(e.Input, given) || e.InputFields != nil) {
			t.Errorf("an upgrade given input records set %v, input %v, fields %v; want the input given, set", e.SetInput, e.Input, e.InputFields)
		}
	}
	if !reflect.DeepEqual(h.w.Input, given) {
		t.Errorf("an upgrade given input leaves %v, want %v", h.w.Input, given)
	}
}
