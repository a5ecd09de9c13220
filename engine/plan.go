package engine

import (
	"bytes"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"sync"

	"github.com/flowvault/flowvault/schemas/conductor"
)

// plan is a parsed workflow definition indexed for navigation: where each
// task configuration sits, and what comes after it.
type plan struct {
	def   *conductor.WorkflowDef
	nodes map[string]*node // by taskReferenceName
	// items holds the `items` of DO_WHILE configurations that have them.
	items map[string]any
	// secrecy is what of the input the definition copies into _secrets
	// or _masked blocks.
	secrecy InputSecrecy
}

// node places one task configuration: the list it belongs to, its index
// there, and the container task whose branch the list is (nil at top level).
type node struct {
	wt     *conductor.WorkflowTask
	list   []*conductor.WorkflowTask
	idx    int
	parent *node
}

func newPlan(def *conductor.WorkflowDef) *plan {
	p := &plan{def: def, nodes: make(map[string]*node), items: make(map[string]any)}
	p.index(def.Tasks, nil)
	p.secrecy = secrecyOf(def.Raw)
	return p
}

func (p *plan) index(list []*conductor.WorkflowTask, parent *node) {
	for i, wt := range list {
		if wt == nil {
			continue
		}
		n := &node{wt: wt, list: list, idx: i, parent: parent}
		if _, dup := p.nodes[wt.TaskReferenceName]; !dup {
			p.nodes[wt.TaskReferenceName] = n
		}
		if items, ok := loopItemsSpec(wt); ok {
			p.items[wt.TaskReferenceName] = items
		}
		for _, c := range sortedCases(wt.DecisionCases) {
			p.index(wt.DecisionCases[c], n)
		}
		p.index(wt.DefaultCase, n)
		for _, branch := range wt.ForkTasks {
			p.index(branch, n)
		}
		p.index(wt.LoopOver, n)
	}
}

// loopItemsSpec returns the `items` of a DO_WHILE configuration (OSS
// Conductor's list iteration), which the shared WorkflowTask model does not
// carry: it is read from the configuration's JSON.
func loopItemsSpec(wt *conductor.WorkflowTask) (any, bool) {
	if wt.TaskType() != conductor.TaskTypeDoWhile || len(wt.Raw) == 0 || !bytes.Contains(wt.Raw, []byte(`"items"`)) {
		return nil, false
	}
	var x struct {
		Items any `json:"items"`
	}
	if conductor.Unmarshal(wt.Raw, &x) != nil || x.Items == nil {
		return nil, false
	}
	return x.Items, true
}

// parseDef decodes a definition snapshot.
func parseDef(raw []byte) (*conductor.WorkflowDef, error) {
	var def conductor.WorkflowDef
	if err := conductor.UnmarshalStored(raw, &def); err != nil {
		return nil, fmt.Errorf("workflow definition: %w", err)
	}
	return &def, nil
}

// planFor returns the workflow's parsed definition.
func (w *Workflow) planFor() (*plan, error) {
	if w.plan == nil {
		p, err := plans.get(w.DefJSON)
		if err != nil {
			return nil, err
		}
		w.plan = p
	}
	return w.plan, nil
}

// plans shares parsed definitions between workflows: every instance of a
// definition carries the same JSON, and parsing it again for each state a
// read model decodes would dominate the engine's CPU time. Plans are
// immutable once built.
var plans = &planCache{m: map[uint64][]*cachedPlan{}}

type planCache struct {
	mu sync.Mutex
	m  map[uint64][]*cachedPlan
	n  int
}

type cachedPlan struct {
	raw []byte
	p   *plan
}

// maxCachedPlans bounds the cache; past it, the cache starts over.
const maxCachedPlans = 1024

func (c *planCache) get(raw []byte) (*plan, error) {
	h := fnv.New64a()
	h.Write(raw)
	key := h.Sum64()
	c.mu.Lock()
	for _, e := range c.m[key] {
		if bytes.Equal(e.raw, raw) {
			c.mu.Unlock()
			return e.p, nil
		}
	}
	c.mu.Unlock()
	def, err := parseDef(raw)
	if err != nil {
		return nil, err
	}
	p := newPlan(def)
	c.mu.Lock()
	if c.n >= maxCachedPlans {
		c.m, c.n = map[uint64][]*cachedPlan{}, 0
	}
	c.m[key] = append(c.m[key], &cachedPlan{raw: bytes.Clone(raw), p: p})
	c.n++
	c.mu.Unlock()
	return p, nil
}

// Def returns the definition the workflow runs.
func (w *Workflow) Def() (*conductor.WorkflowDef, error) {
	p, err := w.planFor()
	if err != nil {
		return nil, err
	}
	return p.def, nil
}

// InlineTaskDef returns the task definition t's configuration in w
// carries (its taskDefinition), which stands in for the registered one;
// nil when it has none.
func (w *Workflow) InlineTaskDef(t *Task) *conductor.TaskDef {
	if wt := w.TaskConfig(t); wt != nil {
		return wt.TaskDefinition
	}
	return nil
}

// TaskConfig returns t's configuration in w: from the definition, or the
// task's own copy for a task decided at run time; nil if there is none.
func (w *Workflow) TaskConfig(t *Task) *conductor.WorkflowTask {
	p, err := w.planFor()
	if err != nil {
		return nil
	}
	return p.config(t)
}

// config returns the configuration of task t: from the definition, or the
// task's own copy for dynamic tasks.
func (p *plan) config(t *Task) *conductor.WorkflowTask {
	if len(t.Config) > 0 {
		var wt conductor.WorkflowTask
		if conductor.Unmarshal(t.Config, &wt) == nil {
			return &wt
		}
	}
	if p == nil {
		return nil // no definition parsed: only a task's own copy
	}
	if n := p.node(t.Ref); n != nil {
		return n.wt
	}
	return nil
}

// end says why there is no next task in a list.
type end int

const (
	endNone     end = iota // there is a next task
	endWorkflow            // the top-level list is done
	endBranch              // a fork branch is done: its JOIN decides
	endLoop                // a loop body is done: its DO_WHILE decides
)

// after returns the task configuration that follows ref once ref is done,
// climbing out of finished SWITCH branches. container is the DO_WHILE or
// fork node whose list ended, for endLoop and endBranch.
func (p *plan) after(ref string) (next *conductor.WorkflowTask, why end, container *node) {
	n := p.node(ref)
	for n != nil {
		if n.idx+1 < len(n.list) {
			return n.list[n.idx+1], endNone, nil
		}
		if n.parent == nil {
			return nil, endWorkflow, nil
		}
		switch n.parent.wt.TaskType() {
		case conductor.TaskTypeForkJoin:
			return nil, endBranch, n.parent
		case conductor.TaskTypeDoWhile:
			return nil, endLoop, n.parent
		}
		n = n.parent // a SWITCH branch ended: continue after the SWITCH
	}
	return nil, endWorkflow, nil
}

// leadsTo reports whether the flow can still reach the task placed at to
// once the one placed at from runs: to is from or inside it (a loop
// still iterating), follows from or a container of it in a list, or
// shares a loop with it, whose next iteration runs its body again, but
// for a loop that also holds join, the task that waits: its next
// iteration waits for join. A fork's branch is a list of its own: a task
// in one branch leads to none in another, but to what follows the fork.
func leadsTo(from, to, join *node) bool {
	if within(to, from) {
		return true
	}
	for a := from; a != nil; a = a.parent {
		for b := to; b != nil; b = b.parent {
			if b.parent == a.parent && &b.list[0] == &a.list[0] && b.idx > a.idx {
				return true
			}
		}
		if loop := a.parent; loop != nil && loop.wt.TaskType() == conductor.TaskTypeDoWhile && within(to, loop) && !within(join, loop) {
			return true
		}
	}
	return false
}

// within reports whether n is c or placed inside it.
func within(n, c *node) bool {
	for ; n != nil; n = n.parent {
		if n == c {
			return true
		}
	}
	return false
}

// node returns the node of a task reference name: its own, or for an
// iteration of a loop's task ("ref__3"), the loop task's. A name that
// merely ends like an iteration is its own.
func (p *plan) node(ref string) *node {
	if n := p.nodes[ref]; n != nil {
		return n
	}
	return p.nodes[baseRef(ref)]
}

// baseRef strips a loop iteration suffix: "ref__3" → "ref".
func baseRef(ref string) string {
	if i := strings.LastIndex(ref, "__"); i > 0 {
		if _, err := strconv.Atoi(ref[i+2:]); err == nil {
			return ref[:i]
		}
	}
	return ref
}

func sortedCases(m map[string][]*conductor.WorkflowTask) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sortStrings(keys)
	return keys
}
