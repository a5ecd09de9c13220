package executions_test

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/projections/executions"
	"github.com/flowvault/flowvault/projections/executions/query"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// FuzzReadModel's children. A SUB_WORKFLOW task's decision carries the
// start of its child (engine.StartWorkflow), which the executor performs
// after its append, as it performs every effect that reaches another
// workflow: the run does what executor.performOne does with them, at a
// random point after the decision (the executor performs them in the
// background, in no order), and again at random as recovery does
// (engine.Effects). Up to two children run for real, started by the
// run's first workflows, not by children: two levels already have every
// link the read model keeps. The tasks of any other child are answered
// as before, with news the driver makes up.

// maxChildren bounds the children that run for real.
const maxChildren = 2

// follow keeps the effects of wf's decision that reach a workflow of the
// run (or a child that is to run), for the executor to perform.
func (r *fuzzRun) follow(wf *fuzzWorkflow, effects []engine.Effect) {
	for _, eff := range effects {
		var to string
		switch eff := eff.(type) {
		case engine.StartWorkflow:
			if eff.ParentWorkflowID == "" {
				continue // a failure workflow's or a START_WORKFLOW's: the grammar has none
			}
			if !r.children[eff.WorkflowID] && wf.w.ParentWorkflowID == "" && len(r.children) < maxChildren {
				r.children[eff.WorkflowID] = true
			}
			to = eff.WorkflowID
		case engine.NotifyParent:
			to = eff.ParentWorkflowID
		case engine.ReopenParent:
			to = eff.ParentWorkflowID
		case engine.TerminateWorkflow:
			to = eff.WorkflowID
		case engine.CheckChild:
			to = eff.ChildID
		}
		if r.children[to] || r.byID[to] != nil {
			r.effects = append(r.effects, eff)
		}
	}
}

// family performs one of the effects not performed yet, or lets a
// recovery find a workflow's effects again (engine.Effects), or has an
// operator run an ended child again (which the drivers pick too seldom to
// reopen its parent often), or none of these: it reports whether it did.
func (r *fuzzRun) family() bool {
	switch op := r.src.N(8); {
	case op < 2 && len(r.effects) > 0:
		i := r.src.N(len(r.effects))
		eff := r.effects[i]
		r.effects = append(r.effects[:i], r.effects[i+1:]...)
		r.perform(eff)
		return true
	case op == 2:
		if wf := r.wfs[r.src.N(len(r.wfs))]; wf.w != nil {
			r.follow(wf, engine.Effects(wf.w, r.now.UnixMilli()))
		}
		return true
	case op == 3:
		var ended []*fuzzWorkflow
		for _, wf := range r.wfs {
			if wf.w != nil && wf.w.ParentWorkflowID != "" && wf.w.Terminal() && !wf.gone {
				ended = append(ended, wf)
			}
		}
		if len(ended) == 0 {
			return false
		}
		wf := ended[r.src.N(len(ended))]
		trig := []engine.Trigger{engine.Retry{}, engine.Restart{}, engine.Rerun{}}[r.src.N(3)]
		r.decide(wf, r.withAncestors(wf, trig))
		return true
	}
	return false
}

// settle performs the effects left, as the executor does once the run's
// triggers stop; each may set off more, up to a bound.
func (r *fuzzRun) settle() {
	for i := 0; i < 50 && len(r.effects) > 0; i++ {
		eff := r.effects[0]
		r.effects = r.effects[1:]
		r.perform(eff)
	}
}

// perform does what executor.performOne does with an effect that reaches
// another workflow, reading the states as the executor reads them
// (executor.State: a removed workflow's too). A workflow the run does not
// have is one the executor would not find either: its news is dropped.
func (r *fuzzRun) perform(eff engine.Effect) {
	r.t.Helper()
	switch eff := eff.(type) {
	case engine.StartWorkflow:
		r.startChild(eff)
	case engine.NotifyParent:
		r.reportChild(eff.ParentWorkflowID, eff.Child.ChildID)
	case engine.CheckChild:
		r.reportChild(eff.ParentWorkflowID, eff.ChildID)
	case engine.ReopenParent:
		if parent := r.byID[eff.ParentWorkflowID]; parent != nil && parent.w != nil {
			r.decide(parent, eff.Child)
		}
	case engine.TerminateWorkflow:
		if child := r.byID[eff.WorkflowID]; child != nil && child.w != nil {
			r.decide(child, engine.Terminate{Reason: eff.Reason, UnlessResetAfter: eff.ParentEnded})
		}
	}
}

// startChild starts the child eff asks for, as the executor's
// startWorkflowEffect does: one that exists is reported on (a repeated
// effect), none starts under a parent that has ended (endedAncestor), and
// one whose parent no longer waits for it once it runs is terminated
// (endIfOrphaned). Its definition is the grammar's, registered as the
// child's name.
func (r *fuzzRun) startChild(eff engine.StartWorkflow) {
	r.t.Helper()
	parent := r.byID[eff.ParentWorkflowID]
	if child := r.byID[eff.WorkflowID]; child != nil {
		r.reportChild(parent.id, child.id)
		return
	}
	if parent.w.Terminal() {
		r.decide(parent, engine.ChildFinished{ChildID: eff.WorkflowID, Status: conductor.WorkflowFailed, NotStarted: true,
			Reason: fmt.Sprintf("sub workflow could not start: workflow %s, which its parent runs under, is %s: nothing starts under it", parent.id, parent.w.Status)})
		return
	}
	req := conductor.StartWorkflowRequest{Name: eff.Name, Version: eff.Version, Input: eff.Input,
		CorrelationID: eff.CorrelationID, Priority: eff.Priority, TaskToDomain: eff.TaskToDomain,
		IdempotencyKey: eff.IdempotencyKey, IdempotencyStrategy: eff.IdempotencyStrategy}
	def := r.def(eff.Name)
	child := r.add(eff.WorkflowID)
	r.decide(child, engine.Start{WorkflowID: eff.WorkflowID, Def: def, Request: req, CreatedBy: eff.CreatedBy, AlsoRunsAs: eff.AlsoRunsAs,
		ParentWorkflowID: eff.ParentWorkflowID, ParentWorkflowTaskID: eff.ParentWorkflowTaskID, Depth: eff.Depth})
	if child.w == nil {
		r.fatalf("child %s of %s did not start", eff.WorkflowID, parent.id)
	}
	for _, t := range parent.w.Tasks {
		if t.SubWorkflowID == child.id && t.Active() && !parent.w.Terminal() {
			return
		}
	}
	r.decide(child, engine.Terminate{Reason: "parent workflow " + parent.id + " no longer waits for it", UnlessEnded: true})
}

// reportChild tells the parent how the child ended, if it has, as the
// executor's reportChild does.
func (r *fuzzRun) reportChild(parentID, childID string) {
	r.t.Helper()
	parent, child := r.byID[parentID], r.byID[childID]
	if parent == nil || parent.w == nil || child == nil || child.w == nil || !child.w.Terminal() {
		return
	}
	c := child.w
	r.decide(parent, engine.ChildFinished{ChildID: c.ID, Name: c.Name, Version: c.Version, Status: c.Status, Output: c.Output,
		Reason: c.Reason, RunsAs: c.AlsoRunsAs})
}

// withAncestors gives an operator's retry, restart or rerun of wf the
// ancestors it reopens, as the executor's submit reads them (reopening).
func (r *fuzzRun) withAncestors(wf *fuzzWorkflow, trig engine.Trigger) engine.Trigger {
	parent := r.byID[wf.w.ParentWorkflowID]
	if parent == nil || parent.w == nil {
		return trig
	}
	line := []*engine.Workflow{parent.w}
	switch t := trig.(type) {
	case engine.Retry:
		t.Ancestors = line
		return t
	case engine.Restart:
		t.Ancestors = line
		return t
	case engine.Rerun:
		t.Ancestors = line
		return t
	}
	return trig
}

// checkLinks reads the links between the run's workflows as the API
// does: the child of each SUB_WORKFLOW task of a workflow shown (found
// while it is shown), the parent task of each child shown through its
// lookup, each workflow's children by search, and the workflows of each
// correlation id, which a child shares with its parent, oldest first.
func (r *fuzzRun) checkLinks(reader *executions.Reader, listed []*fuzzWorkflow) {
	r.t.Helper()
	ctx := context.Background()
	for _, wf := range listed {
		for _, t := range wf.w.Tasks {
			if t.Type != conductor.TaskTypeSubWorkflow || t.SubWorkflowID == "" {
				continue
			}
			child := r.byID[t.SubWorkflowID]
			got, err := reader.Workflow(ctx, t.SubWorkflowID)
			switch {
			case child == nil || child.gone:
				if !errors.Is(err, fault.ErrNotFound) {
					r.fatalf("child %s of task %s of workflow %s, never started or removed: read %v, %v", t.SubWorkflowID, t.ID, wf.id, got != nil, err)
				}
			case err != nil || got.ID != child.id || got.ParentWorkflowID != child.w.ParentWorkflowID ||
				got.ParentWorkflowTaskID != child.w.ParentWorkflowTaskID:
				r.fatalf("child %s of task %s of workflow %s: read %v, %v; the state's parent %s, task %s", t.SubWorkflowID, t.ID, wf.id,
					got != nil, err, child.w.ParentWorkflowID, child.w.ParentWorkflowTaskID)
			}
		}
		if wf.w.ParentWorkflowID == "" {
			continue
		}
		parent := r.byID[wf.w.ParentWorkflowID]
		wfID, err := reader.TaskWorkflow(ctx, wf.w.ParentWorkflowTaskID)
		switch {
		case parent.gone || parent.w.Removed || parent.w.TaskByID(wf.w.ParentWorkflowTaskID) == nil:
			if !errors.Is(err, fault.ErrNotFound) {
				r.fatalf("parent task %s of workflow %s, dropped or removed: found in %q, %v", wf.w.ParentWorkflowTaskID, wf.id, wfID, err)
			}
		case err != nil || wfID != parent.id:
			r.fatalf("parent task %s of workflow %s: found in %q, %v; want %s", wf.w.ParentWorkflowTaskID, wf.id, wfID, err, parent.id)
		}
	}
	for _, wf := range r.wfs {
		var want []string
		for _, x := range listed {
			if x.w.ParentWorkflowID == wf.id {
				want = append(want, x.id)
			}
		}
		q := `parentWorkflowId = "` + wf.id + `"`
		n, ws, err := reader.SearchWorkflows(ctx, query.Search{Query: q, Size: 100})
		if err != nil {
			r.fatalf("search %q: %v", q, err)
		}
		r.sameHits("search "+q, n, len(ws), func(i int) string { return ws[i].ID }, want)
	}
	for _, c := range []string{"corr-a", "corr-b"} {
		var want []*engine.Workflow
		for _, wf := range listed {
			if wf.w.CorrelationID == c && !wf.w.Removed {
				want = append(want, wf.w)
			}
		}
		slices.SortFunc(want, func(a, b *engine.Workflow) int {
			return cmp.Or(cmp.Compare(a.StartTime, b.StartTime), strings.Compare(a.ID, b.ID))
		})
		got, err := reader.Correlated(ctx, c, nil)
		if err != nil {
			r.fatalf("correlated %s: %v", c, err)
		}
		ids := func(ws []*engine.Workflow) (out []string) {
			for _, w := range ws {
				out = append(out, w.ID)
			}
			return out
		}
		if !slices.Equal(ids(got), ids(want)) {
			r.fatalf("correlated %s: %v, want %v", c, ids(got), ids(want))
		}
		for i, w := range got {
			if a, b := conductorJSON(w), conductorJSON(want[i]); a != b {
				r.fatalf("correlated %s: workflow %s as read:\n%s\nas decided:\n%s", c, w.ID, a, b)
			}
		}
	}
}
