package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowvault/flowvault/internal/nodetest"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/workers"
)

// gateWorker runs a task type's worker whose tasks wait at a gate, and
// counts how many are IN_PROGRESS at the worker at once.
type gateWorker struct {
	mu        sync.Mutex
	cur, peak int
	gate      chan struct{}
	once      sync.Once
}

// newGateWorker's gate opens at the latest when the test ends, before
// the workers registered before it stop: they wait for their tasks.
func newGateWorker(t testing.TB) *gateWorker {
	g := &gateWorker{gate: make(chan struct{})}
	t.Cleanup(g.open)
	return g
}

func (g *gateWorker) open() { g.once.Do(func() { close(g.gate) }) }

func (g *gateWorker) handle(ctx context.Context, _ *conductor.Task) (workers.Output, error) {
	g.mu.Lock()
	g.cur++
	g.peak = max(g.peak, g.cur)
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		g.cur--
		g.mu.Unlock()
	}()
	select {
	case <-g.gate:
	case <-ctx.Done():
		return workers.Output{}, ctx.Err()
	}
	return workers.Output{}, nil
}

func (g *gateWorker) counts() (cur, peak int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.cur, g.peak
}

// waitRunning waits until n tasks are IN_PROGRESS at the worker.
func (g *gateWorker) waitRunning(t *testing.T, n int) {
	t.Helper()
	testutil.Eventually(t, 30*time.Second, 10*time.Millisecond, func() error {
		if cur, _ := g.counts(); cur != n {
			return fmt.Errorf("%d tasks in progress at the worker, want %d", cur, n)
		}
		return nil
	})
}

const rateLimited = `{"name":"rl_flow","rateLimitConfig":{"rateLimitKey":"${workflow.correlationId}","concurrentExecLimit":2},
 "tasks":[{"name":"rl_work","taskReferenceName":"w"},{"name":"rl_after","taskReferenceName":"a"}]}`

// rateLimitedWork registers rl_flow and runs its workers on e, rl_work's
// at a gate.
func rateLimitedWork(e *env) *gateWorker {
	e.register(rateLimited)
	var g *gateWorker
	e.work("rl_work", 10, func(ctx context.Context, task *conductor.Task) (workers.Output, error) { return g.handle(ctx, task) })
	e.work("rl_after", 10, succeed)
	g = newGateWorker(e.t)
	return g
}

func (e *env) startCorrelated(name, corr string) string {
	e.t.Helper()
	return e.must(http.StatusOK, "POST", "/api/workflow", map[string]any{"name": name, "correlationId": corr})
}

// A definition's rateLimitConfig holds across two engines on one NATS
// server: of five workflows with one correlation id, started through
// either, at most two do work at any time; the others read RUNNING,
// rateLimited, without tasks, until a place is free, and all five
// complete. Another correlation id has places of its own, and a workflow
// without one is not limited.
func TestWorkflowRateLimitAcrossEngines(t *testing.T) {
	t.Parallel()
	a, baseA := nodetest.Start(t)
	b, baseB := nodetest.StartConfig(t, nodetest.JoinConfig(t, a, filepath.Join(t.TempDir(), "b")))
	ea, eb := &env{t: t, node: a, base: baseA}, &env{t: t, node: b, base: baseB}
	g := rateLimitedWork(ea)

	var ids []string
	for i := range 5 {
		e := ea
		if i%2 == 1 {
			e = eb
		}
		ids = append(ids, e.startCorrelated("rl_flow", "tenant-1"))
	}
	g.waitRunning(t, 2)
	queued := 0
	for i, id := range ids {
		e := ea // the engine that started it: the other's read model may lag
		if i%2 == 1 {
			e = eb
		}
		wf := e.workflow(id)
		if wf.Status != conductor.WorkflowRunning {
			t.Fatalf("workflow %s is %s", id, wf.Status)
		}
		if len(wf.Tasks) == 0 {
			queued++
			if !wf.RateLimited || wf.RateLimitKey != "tenant-1" {
				t.Fatalf("queued workflow %s: rateLimited %v, rateLimitKey %q", id, wf.RateLimited, wf.RateLimitKey)
			}
		}
	}
	if queued != 3 {
		t.Fatalf("%d workflows without tasks, want 3 queued", queued)
	}
	other := eb.startCorrelated("rl_flow", "tenant-2")
	free := ea.startCorrelated("rl_flow", "")
	g.waitRunning(t, 4)
	if wf := ea.workflow(free); wf.RateLimited || wf.RateLimitKey != "" {
		t.Fatalf("workflow without a correlation id: rateLimited %v, rateLimitKey %q", wf.RateLimited, wf.RateLimitKey)
	}

	g.open()
	for i, id := range append(ids, other, free) {
		e := ea
		if i%2 == 0 {
			e = eb
		}
		e.waitStatus(id, conductor.WorkflowCompleted)
	}
	if _, peak := g.counts(); peak != 4 {
		// tenant-1's two, tenant-2's and the unlimited one.
		t.Fatalf("at most %d tasks in progress at once, want 4", peak)
	}
}

// Five workflows of one key with a limit of two: never more than two at
// the worker at once, and all complete.
func TestWorkflowRateLimitOfTwo(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	g := rateLimitedWork(e)
	var ids []string
	for range 5 {
		ids = append(ids, e.startCorrelated("rl_flow", "k"))
	}
	g.waitRunning(t, 2)
	g.open()
	for _, id := range ids {
		e.waitStatus(id, conductor.WorkflowCompleted)
	}
	if _, peak := g.counts(); peak != 2 {
		t.Fatalf("at most %d tasks in progress at once, want 2", peak)
	}
}

// Queued workflows survive a restart of the server: the place of the one
// that ends after it goes to the next, in the order they started.
func TestWorkflowRateLimitSurvivesRestart(t *testing.T) {
	t.Parallel()
	cfg := nodetest.Config(filepath.Join(t.TempDir(), "data"))
	n, base := nodetest.StartConfig(t, cfg)
	e := &env{t: t, node: n, base: base}
	e.register(`{"name":"rl_one","rateLimitConfig":{"concurrentExecLimit":1},"tasks":[{"name":"rl_one_work","taskReferenceName":"w"}]}`)
	first := e.start("rl_one", nil)
	second := e.start("rl_one", nil)
	third := e.start("rl_one", nil)
	task := e.takeOne("rl_one_work")
	if task.WorkflowInstanceID != first {
		t.Fatalf("took a task of %s, want the first workflow's", task.WorkflowInstanceID)
	}
	e = restartNode(t, n, cfg)
	for _, id := range []string{second, third} {
		if wf := e.workflow(id); len(wf.Tasks) != 0 || !wf.RateLimited {
			t.Fatalf("workflow %s after the restart: %d tasks, rateLimited %v", id, len(wf.Tasks), wf.RateLimited)
		}
	}
	e.completeTask(task, nil)
	e.waitStatus(first, conductor.WorkflowCompleted)
	next := e.takeOne("rl_one_work")
	if next.WorkflowInstanceID != second {
		t.Fatalf("took a task of %s, want the second workflow's", next.WorkflowInstanceID)
	}
	if wf := e.workflow(third); len(wf.Tasks) != 0 {
		t.Fatalf("third workflow has %d tasks while the second runs", len(wf.Tasks))
	}
	e.completeTask(next, nil)
	e.completeTask(e.takeOne("rl_one_work"), nil)
	e.waitStatus(third, conductor.WorkflowCompleted)
}

// A workflow removed without being terminated (DELETE
// /api/workflow/{id}/remove?archiveWorkflow=false) never ends: its place
// goes on all the same, and a queued one removed leaves the queue, so
// the next one queued runs.
func TestWorkflowRateLimitPlaceOfRemovedWorkflow(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.register(`{"name":"rl_rm","rateLimitConfig":{"concurrentExecLimit":1},"tasks":[{"name":"rl_rm_work","taskReferenceName":"w"}]}`)
	holder := e.start("rl_rm", nil)
	queued := e.start("rl_rm", nil)
	next := e.start("rl_rm", nil)
	if task := e.takeOne("rl_rm_work"); task.WorkflowInstanceID != holder {
		t.Fatalf("took a task of %s, want the first workflow's", task.WorkflowInstanceID)
	}
	for _, id := range []string{holder, queued} {
		e.must(http.StatusNoContent, "DELETE", "/api/workflow/"+id+"/remove?archiveWorkflow=false", nil)
	}
	task := e.takeOne("rl_rm_work")
	if task.WorkflowInstanceID != next {
		t.Fatalf("took a task of %s, want the third workflow's", task.WorkflowInstanceID)
	}
	e.completeTask(task, nil)
	e.waitStatus(next, conductor.WorkflowCompleted)
}

// A definition registered again with a higher concurrentExecLimit lets
// the workflows queued already run, without waiting for another start
// to bring the new limit.
func TestWorkflowRateLimitRaisedWhileQueued(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	def := `{"name":"rl_up","rateLimitConfig":{"concurrentExecLimit":%d},"tasks":[{"name":"rl_up_work","taskReferenceName":"w"}]}`
	e.register(fmt.Sprintf(def, 1))
	var ids []string
	for range 3 {
		ids = append(ids, e.start("rl_up", nil))
	}
	e.takeOne("rl_up_work")
	e.must(http.StatusOK, "PUT", "/api/metadata/workflow", []json.RawMessage{json.RawMessage(fmt.Sprintf(def, 3))})
	for _, id := range ids[1:] {
		testutil.Eventually(t, 30*time.Second, 10*time.Millisecond, func() error {
			if wf := e.workflow(id); len(wf.Tasks) == 0 {
				return fmt.Errorf("workflow %s is still queued", id)
			}
			return nil
		})
	}
}

// Orkes's rate limit resource changes the definition's rateLimitConfig as
// a registration does: a limit raised through it lets the workflows
// queued already run, and once it is removed a start is not limited.
func TestWorkflowRateLimitSetThroughResource(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.register(`{"name":"rl_res","tasks":[{"name":"rl_res_work","taskReferenceName":"w"}]}`)
	e.must(http.StatusNoContent, "PUT", "/api/metadata/workflow/rl_res/rateLimit", map[string]any{"concurrentExecLimit": 1})
	var ids []string
	for range 3 {
		ids = append(ids, e.start("rl_res", nil))
	}
	for _, id := range ids[1:] {
		if wf := e.workflow(id); !wf.RateLimited || len(wf.Tasks) > 0 {
			t.Fatalf("workflow %s: rateLimited %v with %d tasks, want it queued", id, wf.RateLimited, len(wf.Tasks))
		}
	}
	e.must(http.StatusNoContent, "PUT", "/api/metadata/workflow/rl_res/rate-limit", map[string]any{"concurrentExecLimit": 3})
	for _, id := range ids[1:] {
		testutil.Eventually(t, 30*time.Second, 10*time.Millisecond, func() error {
			if wf := e.workflow(id); len(wf.Tasks) == 0 {
				return fmt.Errorf("workflow %s is still queued", id)
			}
			return nil
		})
	}
	e.must(http.StatusNoContent, "DELETE", "/api/metadata/workflow/rl_res/rateLimit", nil)
	if wf := e.workflow(e.start("rl_res", nil)); wf.RateLimited || wf.RateLimitKey != "" || len(wf.Tasks) == 0 {
		t.Fatalf("a start after the removal: rateLimited %v, key %q, %d tasks", wf.RateLimited, wf.RateLimitKey, len(wf.Tasks))
	}
}

// A rate limit key longer than engine.MaxRateLimitKeyLen bytes refuses
// the start (400, naming the field, not quoting the key): it would be
// kept in the start's record, shown and indexed.
func TestWorkflowRateLimitKeyIsBounded(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.register(`{"name":"rl_long","rateLimitConfig":{"rateLimitKey":"${workflow.correlationId}","concurrentExecLimit":1},` +
		`"tasks":[{"name":"hold","taskReferenceName":"hold","type":"WAIT"}]}`)
	e.startCorrelated("rl_long", strings.Repeat("c", 256))
	status, body := e.do("POST", "/api/workflow", map[string]any{"name": "rl_long", "correlationId": strings.Repeat("d", 257)})
	if status != http.StatusBadRequest || !strings.Contains(body, "rateLimitConfig.rateLimitKey") || strings.Contains(body, "ddd") {
		t.Fatalf("start with a 257-byte key: %d %s, want 400 naming the field", status, body)
	}
}

// A start of an inline definition of a registered name is limited by the
// registered definition's rateLimitConfig, which its line follows: an
// inline definition without one, or with a higher limit (which the line
// took as its own), started past the line.
func TestInlineDefinitionKeepsTheRegisteredRateLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const tasks = `"tasks":[{"name":"hold","taskReferenceName":"hold","type":"WAIT"}]`
	e.register(`{"name":"rl_inline","rateLimitConfig":{"concurrentExecLimit":1},` + tasks + `}`)
	first := e.start("rl_inline", nil)
	if wf := e.workflow(first); len(wf.Tasks) == 0 {
		t.Fatalf("first workflow queued: %+v", wf)
	}
	for _, tt := range []struct{ name, def string }{
		{"without a config", `{"name":"rl_inline",` + tasks + `}`},
		{"with a higher limit", `{"name":"rl_inline","rateLimitConfig":{"concurrentExecLimit":10},` + tasks + `}`},
	} {
		id := e.must(http.StatusOK, "POST", "/api/workflow", map[string]any{"name": "rl_inline", "workflowDef": json.RawMessage(tt.def)})
		if wf := e.workflow(id); !wf.RateLimited || len(wf.Tasks) > 0 {
			t.Errorf("inline definition %s: rateLimited %v with %d tasks, want it queued behind %s", tt.name, wf.RateLimited, len(wf.Tasks), first)
		}
	}
}

// rlSub is a SUB_WORKFLOW task of def's name (an inline definition when
// def is set) giving its child depth.
func rlSub(ref, name, depth, def string) string {
	inline := ""
	if def != "" {
		inline = `,"workflowDefinition":` + def
	}
	return `{"name":"` + name + `","taskReferenceName":"` + ref + `","type":"SUB_WORKFLOW","inputParameters":{"depth":"` + depth + `"},
	  "subWorkflowParam":{"name":"` + name + `"` + inline + `}}`
}

// rlNest is a definition that runs cases[depth] (a task) by its input's
// depth, and its leaf task otherwise.
func rlNest(name, config, leaf string, cases map[string]string) string {
	var dc []string
	for depth, task := range cases {
		dc = append(dc, `"`+depth+`":[`+task+`]`)
	}
	return `{"name":"` + name + `"` + config + `,"tasks":[{"name":"nest","taskReferenceName":"nest","type":"SWITCH",
	  "evaluatorType":"value-param","expression":"depth","inputParameters":{"depth":"${workflow.input.depth}"},
	  "decisionCases":{` + strings.Join(dc, ",") + `},"defaultCase":[{"name":"` + leaf + `","taskReferenceName":"leaf"}]}]}`
}

// A rate-limited workflow's sub-workflows of its own line (the same
// definition, or an inline one of its name, or one a workflow of another
// definition under it starts, with the same key) run on the place it
// holds: they are part of the work it was admitted with. They queued
// behind it while it waited for them, for ever: with a limit of 1 the
// first child, with a limit of 2 the grandchild. A sibling started from
// outside still waits for a place, and never runs beside them over the
// limit: at most limit leaves are at the worker at once.
func TestSubWorkflowOfItsOwnRateLimitLineRunsOnItsAncestorsPlace(t *testing.T) {
	t.Parallel()
	top := newEnv(t)
	for _, tc := range []struct {
		name  string
		defs  []string
		start string // started with depth "2"; siblings with depth "0"
		limit int
	}{{
		name: "itself, limit 1, two levels",
		defs: []string{rlNest("rl_self", `,"rateLimitConfig":{"concurrentExecLimit":1}`, "rl_self_leaf", map[string]string{
			"2": rlSub("child", "rl_self", "1", ""), "1": rlSub("grandchild", "rl_self", "0", "")})},
		start: "rl_self", limit: 1,
	}, {
		name: "itself by key, limit 2, three levels",
		defs: []string{rlNest("rl_self2", `,"rateLimitConfig":{"rateLimitKey":"${workflow.correlationId}","concurrentExecLimit":2}`, "rl_self2_leaf",
			map[string]string{"2": rlSub("child", "rl_self2", "1", ""), "1": rlSub("grandchild", "rl_self2", "0x", ""),
				"0x": rlSub("greatgrandchild", "rl_self2", "0", "")})},
		start: "rl_self2", limit: 2,
	}, {
		name: "an inline definition of its name",
		defs: []string{rlNest("rl_inl", `,"rateLimitConfig":{"concurrentExecLimit":1}`, "rl_inl_leaf", map[string]string{
			"2": rlSub("child", "rl_inl", "1", `{"name":"rl_inl","tasks":[{"name":"rl_inl_leaf","taskReferenceName":"leaf"}]}`)})},
		start: "rl_inl", limit: 1,
	}, {
		name: "through another definition",
		defs: []string{
			rlNest("rl_a", `,"rateLimitConfig":{"concurrentExecLimit":1}`, "rl_a_leaf", map[string]string{"2": rlSub("b", "rl_b", "1", "")}),
			rlNest("rl_b", `,"rateLimitConfig":{"concurrentExecLimit":1}`, "rl_b_leaf", map[string]string{"1": rlSub("a", "rl_a", "0", "")}),
		},
		start: "rl_a", limit: 1,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			e := &env{t: t, node: top.node, base: top.base}
			e.register(tc.defs...)
			g := newGateWorker(t)
			e.work(tc.start+"_leaf", 10, g.handle)
			start := func(depth string) string {
				return e.must(http.StatusOK, "POST", "/api/workflow", map[string]any{"name": tc.start, "correlationId": "tenant-1",
					"input": map[string]any{"depth": depth}})
			}
			root := start("2")
			g.waitRunning(t, 1) // the deepest one's leaf
			var siblings []string
			for range tc.limit {
				siblings = append(siblings, start("0"))
			}
			g.waitRunning(t, tc.limit)
			last := siblings[len(siblings)-1]
			if wf := e.workflow(last); wf.Status != conductor.WorkflowRunning || !wf.RateLimited || len(wf.Tasks) != 0 {
				t.Fatalf("sibling %s: %s, rateLimited %v, %d tasks; want it queued", last, wf.Status, wf.RateLimited, len(wf.Tasks))
			}
			g.open()
			for _, id := range append([]string{root}, siblings...) {
				e.waitStatus(id, conductor.WorkflowCompleted)
			}
			if _, peak := g.counts(); peak != tc.limit {
				t.Fatalf("at most %d leaves at the worker at once, want %d", peak, tc.limit)
			}
		})
	}
}
