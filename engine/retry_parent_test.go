package engine_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// retryIfRetriedByParent (Orkes's retry API; Conductor OSS has no such
// flag) is about retrying a sub-workflow itself: false refuses it once
// its parent has moved on to a new child (the parent was retried, or
// rerun or restarted, since). By default the retry goes ahead, and the
// child runs on its own: its parent ignores its news.
func TestRetryIfRetriedByParent(t *testing.T) {
	parentDef := `{"name":"parent","tasks":[{"name":"child","taskReferenceName":"child","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"kid"}}]}`
	kid := `{"name":"kid","tasks":[{"name":"k","taskReferenceName":"k"}]}`
	for _, tc := range []struct {
		name string
		// parent does what the parent did after the child failed it.
		parent      func(p *harness)
		refuse      bool // retryIfRetriedByParent=false
		passParent  bool
		wantRefused bool
		movedOn     bool // the parent ignores the child's news
	}{
		{"parent still waits, flag false", func(*harness) {}, true, true, false, false},
		{"parent reopened the same child, flag false", func(p *harness) {
			p.advance(time.Second)
			p.decide(engine.ChildReopened{ChildID: p.task("child").SubWorkflowID, ResetTime: p.now.UnixMilli()})
			p.wantStatus(conductor.WorkflowRunning)
		}, true, true, false, false},
		{"parent retried, flag false", func(p *harness) { p.decide(engine.Retry{}) }, true, true, true, true},
		{"parent rerun, flag false", func(p *harness) { p.decide(engine.Rerun{}) }, true, true, true, true},
		{"parent restarted, flag false", func(p *harness) { p.decide(engine.Restart{}) }, true, true, true, true},
		{"parent retried, flag true (default)", func(p *harness) { p.decide(engine.Retry{}) }, false, true, false, true},
		{"parent retried, its state unknown", func(p *harness) { p.decide(engine.Retry{}) }, true, false, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newHarness(t, parentDef, nil)
			sub := p.task("child")
			c := newHarnessStart(t, engine.Start{WorkflowID: sub.SubWorkflowID, Def: parseDef(t, kid), CreatedBy: "app:tester",
				ParentWorkflowID: p.w.ID, ParentWorkflowTaskID: sub.ID})
			c.report("k", conductor.TaskFailedWithTerminalError, nil, "down")
			c.wantStatus(conductor.WorkflowFailed)
			p.decide(engine.ChildFinished{ChildID: c.w.ID, Status: conductor.WorkflowFailed, Reason: "down"})
			p.wantStatus(conductor.WorkflowFailed)
			tc.parent(p)

			retry := engine.Retry{RefuseIfParentRetried: tc.refuse}
			if tc.passParent {
				retry.Ancestors = []*engine.Workflow{p.w}
			}
			d, err := c.try(retry)
			if tc.wantRefused {
				wantErr(t, err, fault.ErrConflict)
				c.wantStatus(conductor.WorkflowFailed)
				return
			}
			if err != nil {
				t.Fatalf("retry refused: %v", err)
			}
			c.wantStatus(conductor.WorkflowRunning)
			reopen := effectsOf[engine.ReopenParent](d)
			if len(reopen) != 1 || reopen[0].ParentWorkflowID != p.w.ID {
				t.Fatalf("reopen effects %+v", reopen)
			}
			if tc.movedOn {
				before := p.w.Status
				if d := p.decide(reopen[0].Child); len(d.Events) != 0 || p.w.Status != before {
					t.Fatalf("the parent took news of a child it no longer waits for: %v", p.refs())
				}
			}
		})
	}
}

// A SUB_WORKFLOW task whose child failed was retried with a new child (by
// its retryCount, or by the parent's retry); the old child is then
// retried by an operator. While the parent runs, it waits for the newer
// instance's child and ignores the old one's news: Conductor reopens the
// old instance beside the newer one, two instances of one task in
// progress. Once the parent has ended by the newer instance, a child
// retried since makes the parent run again as Conductor's
// updateAndPushParents does, failed names cleared, and a new instance of
// the task waits for that child: Conductor reopens the old instance,
// which its decider ignores, and ends the parent again at once by the
// newer instance, terminating the child just retried.
func TestRetryOfAChildTheParentReplaced(t *testing.T) {
	parentDef := `{"name":"parent","tasks":[
	  {"name":"child","taskReferenceName":"child","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"kid","version":1}},
	  {"name":"after","taskReferenceName":"after"}]}`
	childEnds := func(p *harness, status string) {
		p.decide(engine.ChildFinished{ChildID: p.task("child").SubWorkflowID, Name: "kid", Version: 1, Status: status, Reason: "kid " + status})
	}
	for _, tc := range []struct {
		name string
		// parent does what the parent did after its task's retry started
		// a second child.
		parent func(p *harness)
		// early: the news is of a retry from before the parent's end
		// (recovery sends it again).
		early   bool
		reopens bool
	}{
		{"running, the newer instance waits", func(*harness) {}, false, false},
		{"failed by the newer instance", func(p *harness) { childEnds(p, conductor.WorkflowFailed) }, false, true},
		{"failed by the newer instance, the retry before the end", func(p *harness) { childEnds(p, conductor.WorkflowFailed) }, true, false},
		{"timed out by the newer instance", func(p *harness) { childEnds(p, conductor.WorkflowTimedOut) }, false, true},
		{"terminated by an operator while the newer ran", func(p *harness) { p.decide(engine.Terminate{Reason: "operator"}) }, false, true},
		{"retried with a third child, which failed", func(p *harness) {
			childEnds(p, conductor.WorkflowFailed)
			p.decide(engine.Retry{})
			childEnds(p, conductor.WorkflowFailed)
		}, false, true},
		{"completed past the newer instance", func(p *harness) {
			childEnds(p, conductor.WorkflowCompleted)
			p.complete("after", nil)
		}, false, false},
		{"failed past the newer instance", func(p *harness) {
			childEnds(p, conductor.WorkflowCompleted)
			p.report("after", conductor.TaskFailed, nil, "after broke")
		}, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newHarness(t, parentDef, nil, `{"name":"child","retryCount":1,"retryDelaySeconds":0}`, `{"name":"after","retryCount":0}`)
			p.w.ParentWorkflowID = "grand-1"
			old := p.task("child").SubWorkflowID
			childEnds(p, conductor.WorkflowFailed)
			if ct := p.wantTask("child", conductor.TaskInProgress); ct.SubWorkflowID == old || ct.RetryCount != 1 {
				t.Fatalf("the task's retry waits for %s (retryCount %d), want a new child", ct.SubWorkflowID, ct.RetryCount)
			}
			p.advance(time.Second)
			tc.parent(p)
			before, status, latest := len(p.w.Tasks), p.w.Status, p.task("child")
			p.advance(time.Second)
			reset := p.now.UnixMilli()
			if tc.early {
				reset = p.w.EndTime - 1
			}

			d := p.decide(engine.ChildReopened{ChildID: old, ResetTime: reset})
			if !tc.reopens {
				if len(d.Events) != 0 || len(d.Effects) != 0 || p.w.Status != status {
					t.Fatalf("the %s parent took the news of its old child: %s", status, describe(d))
				}
				return
			}
			p.wantStatus(conductor.WorkflowRunning)
			p.wantFailedNames([]string{}, []string{})
			if p.w.FailedTaskID != "" {
				t.Errorf("failed task %s kept", p.w.FailedTaskID)
			}
			ct := p.wantTask("child", conductor.TaskInProgress)
			if len(p.w.Tasks) != before+1 || ct.SubWorkflowID != old || ct.RetriedTaskID != latest.ID || ct.RetryCount != latest.RetryCount+1 ||
				ct.Output["subWorkflowId"] != old || !p.w.TaskByID(latest.ID).Retried {
				t.Fatalf("reopened as %+v after %+v; tasks %v: want a retry of the latest instance waiting for %s", ct, latest, p.refs(), old)
			}
			if got := effectsOf[engine.CheckChild](d); len(got) != 1 || got[0].ChildID != old {
				t.Errorf("check effects %+v: the child may have ended already", got)
			}
			if got := effectsOf[engine.StartWorkflow](d); len(got) != 0 {
				t.Errorf("start effects %+v: the child exists", got)
			}
			if got := effectsOf[engine.ReopenParent](d); len(got) != 1 || got[0].ParentWorkflowID != "grand-1" || got[0].Child.ChildID != p.w.ID {
				t.Errorf("reopen effects %+v, want the grandparent told", got)
			}
			if d := p.decide(engine.ChildReopened{ChildID: old, ResetTime: reset}); len(d.Events) != 0 {
				t.Fatalf("repeated news reopened the task again: %s", describe(d))
			}
			childEnds(p, conductor.WorkflowCompleted)
			p.wantTask("child", conductor.TaskCompleted)
			p.complete("after", nil)
			p.wantStatus(conductor.WorkflowCompleted)
		})
	}
}

// A child run again makes each ancestor up the chain keep no failed task
// nor failed task names, as Conductor's updateAndPushParents clears every
// one's up to an optional SUB_WORKFLOW task: one that ended by the child
// runs again (its reset clears them), and so does one whose task still
// waits for the workflow below, which ran on past its permissive task, or
// was paused holding the failure back. Such a grandparent kept the names
// of an end before its retry. A paused workflow stays paused, where
// Conductor sets it RUNNING.
func TestChildRunAgainClearsAncestorsFailedNames(t *testing.T) {
	const (
		topDef  = `{"name":"top","tasks":[{"name":"x","taskReferenceName":"x"},{"name":"mid","taskReferenceName":"mid","type":"SUB_WORKFLOW","optional":%t,"subWorkflowParam":{"name":"mid"}}]}`
		midDef  = `{"name":"mid","tasks":[{"name":"leaf","taskReferenceName":"leaf","type":"SUB_WORKFLOW","permissive":%t,"subWorkflowParam":{"name":"leaf"}},{"name":"b","taskReferenceName":"b"}]}`
		leafDef = `{"name":"leaf","tasks":[{"name":"k","taskReferenceName":"k"}]}`
	)
	for _, tc := range []struct {
		name                    string
		topOptional, permissive bool
		// before runs once the leaf has failed.
		before func(top, mid, leaf *harness)
		// topBefore is top's status before the leaf's retry, midAfter
		// mid's after it.
		topBefore, midAfter string
		cleared             bool
	}{
		{"mid and top failed by it", false, false, func(top, mid, leaf *harness) {
			tellEnd(mid, leaf)
			tellEnd(top, mid)
		}, conductor.WorkflowFailed, conductor.WorkflowRunning, true},
		{"mid ran on past its permissive task", false, true, func(_, mid, leaf *harness) { tellEnd(mid, leaf) },
			conductor.WorkflowRunning, conductor.WorkflowRunning, true},
		{"mid paused, holding the failure back", false, false, func(_, mid, leaf *harness) {
			mid.decide(engine.Pause{})
			tellEnd(mid, leaf)
		}, conductor.WorkflowRunning, conductor.WorkflowPaused, true},
		{"mid ran on, top's task optional", true, true, func(_, mid, leaf *harness) { tellEnd(mid, leaf) },
			conductor.WorkflowRunning, conductor.WorkflowRunning, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			top := newHarness(t, fmt.Sprintf(topDef, tc.topOptional), nil, `{"name":"x","retryCount":0}`)
			top.report("x", conductor.TaskFailed, nil, "x broke")
			top.advance(time.Second)
			top.decide(engine.Retry{})
			top.complete("x", nil)
			mid := top.startChild("mid", fmt.Sprintf(midDef, tc.permissive))
			leaf := mid.startChild("leaf", leafDef)
			leaf.report("k", conductor.TaskFailedWithTerminalError, nil, "down")
			tc.before(top, mid, leaf)
			top.wantStatus(tc.topBefore)
			if len(top.w.FailedTaskRefs) == 0 || top.w.FailedTaskID == "" {
				t.Fatalf("top names no failed task: %v, %q", top.w.FailedTaskRefs, top.w.FailedTaskID)
			}
			tasks := len(top.w.Tasks)
			top.advance(time.Second) // an operator's doing, after the ends
			mid.now, leaf.now = top.now, top.now

			d := leaf.decide(engine.Retry{Ancestors: []*engine.Workflow{mid.w, top.w}})
			if got := reopenUp(d, mid, top); got == 0 {
				t.Fatal("no ancestor took the news")
			}
			mid.wantStatus(tc.midAfter)
			mid.wantTask("leaf", conductor.TaskInProgress)
			top.wantStatus(conductor.WorkflowRunning)
			if !tc.cleared {
				top.wantFailedNames([]string{"x"}, []string{"x"})
				return
			}
			top.wantFailedNames([]string{}, []string{})
			if top.w.FailedTaskID != "" {
				t.Errorf("failed task %s kept", top.w.FailedTaskID)
			}
			if ct := top.wantTask("mid", conductor.TaskInProgress); ct.SubWorkflowID != mid.w.ID || len(top.w.Tasks) != tasks {
				t.Errorf("top waits for %s, tasks %v: want its task waiting for %s as it was", ct.SubWorkflowID, top.refs(), mid.w.ID)
			}
			// The news again (recovery sends it): nothing left to change.
			recorded := len(mid.history) + len(top.history)
			reopenUp(mid.decide(engine.ChildReopened{ChildID: leaf.w.ID, ResetTime: leaf.w.ResetTime}), top)
			if n := len(mid.history) + len(top.history) - recorded; n != 0 {
				t.Errorf("the news again recorded %d more decisions", n)
			}
		})
	}
}

// reopenUp delivers the ReopenParent effects of d, and of the decisions
// they make, to the ancestors among hs, and returns how many it delivered.
func reopenUp(d engine.Decision, hs ...*harness) int {
	n := 0
	for _, e := range effectsOf[engine.ReopenParent](d) {
		for _, h := range hs {
			if h.w.ID == e.ParentWorkflowID {
				n += 1 + reopenUp(h.decide(e.Child), hs...)
			}
		}
	}
	return n
}

// tellEnd tells parent p that its child c ended as it did.
func tellEnd(p, c *harness) {
	p.t.Helper()
	p.decide(engine.ChildFinished{ChildID: c.w.ID, Name: c.w.Name, Version: 1, Status: c.w.Status, Reason: c.w.Reason})
}

// startChild starts, as its own harness, the child of the SUB_WORKFLOW
// task ref, of definition def, with the same task definitions.
func (h *harness) startChild(ref, def string) *harness {
	h.t.Helper()
	sub := h.task(ref)
	c := newHarnessStart(h.t, engine.Start{WorkflowID: sub.SubWorkflowID, Def: parseDef(h.t, def), CreatedBy: "app:tester",
		ParentWorkflowID: h.w.ID, ParentWorkflowTaskID: sub.ID})
	c.taskDefs = h.taskDefs
	return c
}

// A rerun asked of a parent from a task of the child of a SUB_WORKFLOW
// task instance retried since (by its retryCount, or by the parent's
// retry) reruns the parent from that instance, as Conductor's rerunWF
// looks for the task in the child of every instance: the rerun drops
// what came after that instance, the newer ones among them, and one
// instance of the task waits for the child rerun, the parent going on as
// it ends. News of such a rerun from before the parent's end (recovery
// sends it again) changes nothing.
func TestRerunThroughAChildItsTaskRetried(t *testing.T) {
	const (
		parentDef = `{"name":"parent","tasks":[
		  {"name":"child","taskReferenceName":"child","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"kid","version":1}},
		  {"name":"after","taskReferenceName":"after"}]}`
		kidDef = `{"name":"kid","version":1,"tasks":[{"name":"k","taskReferenceName":"k"}]}`
	)
	for _, tc := range []struct {
		name    string
		retries int // the SUB_WORKFLOW task's retryCount
		// run runs the parent past its first child's failure; child
		// runs, and ends as status, the child of its latest instance.
		run     func(p *harness, child func(status string))
		rerunOf int  // the instance whose child reruns, 0 the first
		early   bool // the news is of a rerun from before the parent's end
	}{
		{"failed by the newer instance", 1, func(_ *harness, child func(string)) { child(conductor.WorkflowFailed) }, 0, false},
		{"retried twice, from the middle one", 2, func(_ *harness, child func(string)) {
			child(conductor.WorkflowFailed)
			child(conductor.WorkflowFailed)
		}, 1, false},
		{"the parent retried and completed since", 0, func(p *harness, child func(string)) {
			p.decide(engine.Retry{})
			child(conductor.WorkflowCompleted)
			p.complete("after", nil)
		}, 0, false},
		{"news from before the parent's end", 1, func(_ *harness, child func(string)) { child(conductor.WorkflowFailed) }, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newHarness(t, parentDef, nil, fmt.Sprintf(`{"name":"child","retryCount":%d,"retryDelaySeconds":0}`, tc.retries),
				`{"name":"after","retryCount":0}`)
			var kids []*harness
			child := func(status string) {
				c := p.startChild("child", kidDef)
				kids = append(kids, c)
				if status == conductor.WorkflowCompleted {
					c.complete("k", nil)
				} else {
					c.report("k", conductor.TaskFailedWithTerminalError, nil, "down")
				}
				tellEnd(p, c)
			}
			child(conductor.WorkflowFailed)
			tc.run(p, child)
			if !p.w.Terminal() {
				t.Fatalf("the parent is %s, tasks %v", p.w.Status, p.refs())
			}
			status, tasks := p.w.Status, len(p.w.Tasks)
			kid := kids[tc.rerunOf]
			kid.advance(time.Minute) // an operator's doing, after the parent's end
			d := kid.decide(engine.Rerun{Request: conductor.RerunWorkflowRequest{ReRunFromTaskID: kid.task("k").ID}, UpTo: p.w.ID,
				Ancestors: []*engine.Workflow{p.w}})
			reopen := effectsOf[engine.ReopenParent](d)
			if len(reopen) != 1 {
				t.Fatalf("reopen effects %+v", reopen)
			}
			news := reopen[0].Child
			if tc.early {
				news.ResetTime = p.w.EndTime - 1
			}

			d = p.decide(news)
			if tc.early {
				if len(d.Events) != 0 || p.w.Status != status || len(p.w.Tasks) != tasks {
					t.Fatalf("the %s parent took old news: %s", status, describe(d))
				}
				return
			}
			p.wantStatus(conductor.WorkflowRunning)
			var instances []*engine.Task
			for _, x := range p.w.Tasks {
				if x.Ref == "child" {
					instances = append(instances, x)
				}
			}
			ct := p.wantTask("child", conductor.TaskInProgress)
			if len(instances) != tc.rerunOf+1 || ct.SubWorkflowID != kid.w.ID || p.w.LatestByRef("after") != nil {
				t.Fatalf("tasks %v, the last child instance waiting for %s: want %d instances, the last waiting for %s, nothing after it",
					p.refs(), ct.SubWorkflowID, tc.rerunOf+1, kid.w.ID)
			}
			if got := effectsOf[engine.StartWorkflow](d); len(got) != 0 {
				t.Errorf("start effects %+v: the child exists", got)
			}
			kid.complete("k", nil)
			tellEnd(p, kid)
			p.wantTask("child", conductor.TaskCompleted)
			p.complete("after", nil)
			p.wantStatus(conductor.WorkflowCompleted)
		})
	}
}
