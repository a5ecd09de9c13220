package engine_test

import (
	"errors"
	"testing"
	"time"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// A rerun asked of a parent from a task of the child of a SUB_WORKFLOW
// task its FORK_JOIN_DYNAMIC forked reruns the parent from that task, as
// a rerun of the parent from it would, and is refused when that rerun
// would be: the fork's stored input no longer names what it forked (a
// value equal to a resolved secret redacted). Decided, the child ran
// again under a parent that took the news, reran nothing and stayed
// FAILED, its child RUNNING. A fork's input that changes once the rerun
// is decided (a compaction shredding a value of it found secret) has the
// parent refuse the child's news as a conflict, recording nothing, where
// it took the news and discarded the refusal.
func TestRerunThroughAForkedChild(t *testing.T) {
	t.Parallel()
	const kidDef = `{"name":"kid","version":1,"tasks":[{"name":"k","taskReferenceName":"k"}]}`
	forked := func(ref string) []any {
		return []any{map[string]any{"name": "kid", "taskReferenceName": ref, "type": "SUB_WORKFLOW",
			"subWorkflowParam": map[string]any{"name": "kid", "version": 1}}}
	}
	for _, tc := range []struct {
		name                    string
		redacted, redactedAfter bool
	}{
		{"the fork's input as it ran", false, false},
		{"the fork's input redacted", true, false},
		{"the fork's input redacted once the rerun is decided", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := newHarness(t, dynamicForkDef, map[string]any{"tasks": forked("child")})
			kid := p.startChild("child", kidDef)
			kid.report("k", conductor.TaskFailedWithTerminalError, nil, "down")
			tellEnd(p, kid)
			p.wantStatus(conductor.WorkflowFailed)
			if tc.redacted {
				p.storedAs("fork", func(f *engine.Task) { f.Input = map[string]any{"tasks": forked("***")} })
			}
			kid.advance(time.Minute) // an operator's doing, after the parent's end
			d, err := kid.try(engine.Rerun{Request: conductor.RerunWorkflowRequest{ReRunFromTaskID: kid.task("k").ID}, UpTo: p.w.ID,
				Ancestors: []*engine.Workflow{p.w}})
			if tc.redacted {
				if err == nil {
					for _, r := range effectsOf[engine.ReopenParent](d) {
						p.decide(r.Child)
					}
					t.Fatalf("the rerun was decided: the child is %s, its parent, told, %s; want it refused as a conflict, nothing run again", kid.w.Status, p.w.Status)
				}
				if !errors.Is(err, fault.ErrConflict) {
					t.Fatalf("the rerun answered %v, want a conflict", err)
				}
				kid.wantStatus(conductor.WorkflowFailed)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			reopen := effectsOf[engine.ReopenParent](d)
			if len(reopen) != 1 {
				t.Fatalf("reopen effects %+v", reopen)
			}
			if tc.redactedAfter {
				p.storedAs("fork", func(f *engine.Task) { f.Input = map[string]any{"tasks": forked("***")} })
				if d, err := p.try(reopen[0].Child); !errors.Is(err, fault.ErrConflict) || len(d.Events) > 0 {
					t.Fatalf("the parent told of the child's rerun: %v, %d events recorded; want a conflict, nothing recorded", err, len(d.Events))
				}
				p.wantStatus(conductor.WorkflowFailed)
				return
			}
			p.decide(reopen[0].Child)
			p.wantStatus(conductor.WorkflowRunning)
			if ct := p.wantTask("child", conductor.TaskInProgress); ct.SubWorkflowID != kid.w.ID {
				t.Fatalf("the parent's task waits for %s, want the child rerun, %s", ct.SubWorkflowID, kid.w.ID)
			}
			kid.complete("k", nil)
			tellEnd(p, kid)
			p.wantTask("join", conductor.TaskCompleted)
		})
	}
}
