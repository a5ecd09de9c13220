package engine_test

import (
	"testing"

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
			p.decide(engine.ChildReopened{ChildID: p.task("child").SubWorkflowID})
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
