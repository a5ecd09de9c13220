package api_test

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/internal/nodetest"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// Conductor's admin API, from the log: the tasks of a type not yet ended,
// a sweep of one workflow, and a repair that announces its waiting tasks
// again after their queue lost them. Only admins may use it.
func TestAdminEndpoints(t *testing.T) {
	t.Parallel()
	n, base, token := nodetest.StartSecure(t)
	admin := client{t, base, token}
	// Answers are text, as Conductor's are.
	text := func(method, path string) string {
		t.Helper()
		r := admin.do(method, path, "")
		if r.status != http.StatusOK || !strings.HasPrefix(r.header.Get("Content-Type"), "text/plain") {
			t.Fatalf("%s %s = %d %s %q", method, path, r.status, r.header.Get("Content-Type"), r.body)
		}
		return r.body
	}
	if v := text("GET", "/api/version"); v != "dev" {
		t.Fatalf("version %q", v)
	}
	send(t, admin, "POST", "/api/metadata/workflow", `{"name":"adm_flow","tasks":[{"name":"adm_task","taskReferenceName":"a"}]}`)
	var ids []string
	for range 3 {
		ids = append(ids, send(t, admin, "POST", "/api/workflow", `{"name":"adm_flow"}`))
	}
	// pending lists the type's pending tasks as workflow:status, checking
	// that they come oldest first.
	pending := func(query string) []string {
		t.Helper()
		var got []string
		var last int64
		for _, task := range decode[[]conductor.Task](t, admin.must(200, "GET", "/api/admin/task/adm_task"+query, "")) {
			if task.TaskDefName != "adm_task" || task.ScheduledTime < last {
				t.Fatalf("pending adm_task lists a %s task scheduled at %d after one at %d", task.TaskDefName, task.ScheduledTime, last)
			}
			last = task.ScheduledTime
			got = append(got, task.WorkflowInstanceID+":"+task.Status)
		}
		return got
	}
	all := pending("")
	if want := []string{ids[0] + ":SCHEDULED", ids[1] + ":SCHEDULED", ids[2] + ":SCHEDULED"}; !sameSet(all, want) {
		t.Fatalf("pending = %v, want %v", all, want)
	}
	if got := pending("?start=1&count=1"); !slices.Equal(got, all[1:2]) {
		t.Fatalf("page = %v, want %v", got, all[1:2])
	}
	// A taken task is still pending; a completed one is not.
	first := pollOne(t, admin, "adm_task")
	second := pollOne(t, admin, "adm_task")
	send(t, admin, "POST", "/api/tasks", fmt.Sprintf(`{"taskId":%q,"workflowInstanceId":%q,"status":"COMPLETED"}`, first.TaskID, first.WorkflowInstanceID))
	waiting := slices.DeleteFunc(slices.Clone(ids), func(id string) bool { return id == first.WorkflowInstanceID || id == second.WorkflowInstanceID })
	if got, want := pending(""), []string{second.WorkflowInstanceID + ":IN_PROGRESS", waiting[0] + ":SCHEDULED"}; len(waiting) != 1 || !sameSet(got, want) {
		t.Fatalf("pending after a take and a completion = %v, want %v", got, want)
	}

	// The queue loses the last task's announcement, well within the
	// dispatch stream's duplicate window: the repair announces it again.
	ctx := testutil.Context(t, 30*time.Second)
	js, err := jetstream.New(nodetest.EngineConn(t, n))
	if err != nil {
		t.Fatal(err)
	}
	stream, err := js.Stream(ctx, eventlog.Dispatch.Name)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Purge(ctx); err != nil {
		t.Fatal(err)
	}
	if tasks := decode[[]conductor.Task](t, admin.must(200, "GET", "/api/tasks/poll/batch/adm_task?workerid=w&timeout=200", "")); len(tasks) != 0 {
		t.Fatalf("polled %d tasks from a purged queue", len(tasks))
	}
	if got := text("POST", "/api/admin/consistency/verifyAndRepair/"+waiting[0]); got != "true" {
		t.Fatalf("repair of a running workflow = %q", got)
	}
	if third := pollOne(t, admin, "adm_task"); third.WorkflowInstanceID != waiting[0] {
		t.Fatalf("took %s's task, want %s's", third.WorkflowInstanceID, waiting[0])
	}
	if got := text("POST", "/api/admin/sweep/requeue/"+second.WorkflowInstanceID); got != "true."+second.WorkflowInstanceID {
		t.Fatalf("sweep = %q", got)
	}
	if got := text("POST", "/api/admin/consistency/verifyAndRepair/"+first.WorkflowInstanceID); got != "false" {
		t.Fatalf("repair of a completed workflow = %q", got)
	}

	_, _, _, managerTok := newApp(t, admin, "adm_manager", "WORKFLOW_MANAGER")
	manager := client{t, base, managerTok}
	for _, tc := range []struct {
		c            client
		method, path string
		status       int
	}{
		{manager, "GET", "/api/admin/task/adm_task", http.StatusForbidden},
		{manager, "POST", "/api/admin/sweep/requeue/" + ids[0], http.StatusForbidden},
		{manager, "POST", "/api/admin/consistency/verifyAndRepair/" + ids[0], http.StatusForbidden},
		{manager, "GET", "/api/version", http.StatusOK},
		{client{t, base, ""}, "GET", "/api/version", http.StatusUnauthorized},
		{admin, "POST", "/api/admin/sweep/requeue/no-such-workflow", http.StatusNotFound},
		{admin, "POST", "/api/admin/consistency/verifyAndRepair/no-such-workflow", http.StatusNotFound},
		{admin, "GET", "/api/admin/task/adm_task?count=-1", http.StatusBadRequest},
		{admin, "GET", "/api/admin/task/adm_task?start=x", http.StatusBadRequest},
	} {
		if r := tc.c.do(tc.method, tc.path, ""); r.status != tc.status {
			t.Errorf("%s %s = %d %s, want %d", tc.method, tc.path, r.status, r.body, tc.status)
		}
	}
}

// sameSet reports whether a and b hold the same strings, in any order.
func sameSet(a, b []string) bool {
	return slices.Equal(slices.Sorted(slices.Values(a)), slices.Sorted(slices.Values(b)))
}
