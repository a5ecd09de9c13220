package e2e_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// A schedule of an inline definition hands its tasks to workers only as a
// start through the API would: when another principal created the task
// definition of one of its task names since the schedule was saved (none
// of its runs in progress, so nothing refused the creation), the owner
// may not read it and its creator would take every later tick's tasks,
// secrets resolved as the owner's. The tick is refused as a start through
// the API is, and the schedule pauses itself with a Security Error.
func TestScheduleInlineTasksTakenOver(t *testing.T) {
	t.Parallel()
	e := newSecureEnv(t)
	owner, ownerToken := e.application("owner", "USER")
	_, otherToken := e.application("other", "USER", "WORKER")
	start := time.Now().Add(4 * time.Second).UnixMilli()
	e.as(ownerToken).must(http.StatusNoContent, "POST", "/api/scheduler/schedules", fmt.Sprintf(`{"name":"inline_tick","cronExpression":"* * * * * ?",
		"scheduleStartTime":%d,"startWorkflowRequest":{"name":"owners_inline","workflowDef":{"name":"owners_inline","schemaVersion":2,
		"tasks":[{"name":"owners_task","taskReferenceName":"t","type":"SIMPLE"}]}}}`, start))
	// Before the first tick: no run of it, nothing stops the name's claim.
	e.as(otherToken).must(http.StatusNoContent, "POST", "/api/metadata/taskdefs",
		`[{"name":"owners_task","ownerEmail":"o@example.com","responseTimeoutSeconds":60}]`)
	// As the API refuses the owner's own start of it now.
	if code, body := e.as(ownerToken).do("POST", "/api/workflow", `{"name":"owners_inline","workflowDef":{"name":"owners_inline","schemaVersion":2,
		"tasks":[{"name":"owners_task","taskReferenceName":"t","type":"SIMPLE"}]}}`); code != http.StatusForbidden {
		t.Fatalf("the owner's start through the API: %d %s", code, body)
	}
	testutil.Eventually(t, 15*time.Second, 100*time.Millisecond, func() error {
		def := e.schedule("inline_tick")
		if !def.Paused || !strings.HasPrefix(def.PausedReason, "Security Error") || !strings.Contains(def.PausedReason, "TASK_DEF:owners_task") ||
			!strings.Contains(def.PausedReason, owner) {
			return fmt.Errorf("schedule paused=%v reason %q", def.Paused, def.PausedReason)
		}
		return nil
	})
	for _, x := range e.scheduleExecutions().Results {
		if x.State == "EXECUTED" {
			t.Fatalf("a tick started %s, whose tasks the task definition's creator takes", x.WorkflowID)
		}
	}
}

// So does an event handler's start_workflow of an inline definition, for
// the publisher it acts for: a task definition another principal created
// under one of its task names, which the publisher may not read, would
// take the started workflow's tasks, which resolve the publisher's
// secrets. Such a start is refused; without that task definition, it
// starts.
func TestEventHandlerInlineTasksTakenOver(t *testing.T) {
	t.Parallel()
	e := newSecureEnv(t)
	e.register(`{"name":"inline_pub","tasks":[{"name":"announce","taskReferenceName":"announce","type":"EVENT","sink":"nats:inline.orders",
	  "inputParameters":{"orderId":"${workflow.input.orderId}"}}]}`)
	e.must(http.StatusNoContent, "POST", "/api/event", `[{"name":"inline_start","event":"nats:inline.orders","active":true,
	   "actions":[{"action":"start_workflow","start_workflow":{"name":"handlers_inline","correlationId":"${orderId}",
	     "workflowDef":{"name":"handlers_inline","schemaVersion":2,"tasks":[{"name":"handlers_task","taskReferenceName":"t","type":"SIMPLE"}]}}}]}]`)
	shop, shopToken := e.application("shop", "USER")
	_, otherToken := e.application("other", "USER", "WORKER")
	e.grant(shop, "WORKFLOW_DEF", "inline_pub", "EXECUTE")
	e.grant(shop, "WORKFLOW_DEF", "handlers_inline", "CREATE")
	as := e.as(shopToken)
	e.waitStatus(as.start("inline_pub", map[string]any{"orderId": "o-1"}), conductor.WorkflowCompleted)
	first := e.waitCorrelated("handlers_inline", "o-1")
	if code, body := e.do("DELETE", "/api/workflow/"+first, nil); code >= 300 {
		t.Fatalf("terminate: %d %s", code, body)
	}
	e.waitStatus(first, conductor.WorkflowTerminated)
	e.as(otherToken).must(http.StatusNoContent, "POST", "/api/metadata/taskdefs",
		`[{"name":"handlers_task","ownerEmail":"o@example.com","responseTimeoutSeconds":60}]`)
	e.waitStatus(as.start("inline_pub", map[string]any{"orderId": "o-2"}), conductor.WorkflowCompleted)
	// The refusal is logged, not answered: give the handler its time.
	e.waitStatus(as.start("inline_pub", map[string]any{"orderId": "o-3"}), conductor.WorkflowCompleted)
	time.Sleep(time.Second)
	if got := e.correlated("handlers_inline", "o-2"); len(got) != 0 {
		t.Fatalf("started %d workflows whose tasks another principal's task definition takes", len(got))
	}
}
