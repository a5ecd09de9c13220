package api_test

import (
	"encoding/json"
	"fmt"
	"maps"
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

// pollOne takes one task of taskType as c, waiting for it.
func pollOne(t *testing.T, c client, taskType string) conductor.Task {
	t.Helper()
	var task conductor.Task
	testutil.Eventually(t, 20*time.Second, 10*time.Millisecond, func() error {
		tasks := decode[[]conductor.Task](t, c.must(200, "GET", "/api/tasks/poll/batch/"+taskType+"?workerid=w1&timeout=1000", ""))
		if len(tasks) == 0 {
			return fmt.Errorf("no %s task yet", taskType)
		}
		task = tasks[0]
		return nil
	})
	return task
}

// Queue statistics show a caller only the queues of the task types whose
// definitions it may read: no other type's name, backlog or workers.
// Admins and METADATA_VIEW see them all.
func TestQueueStatisticsShowOnlyReadableTypes(t *testing.T) {
	t.Parallel()
	_, base, token := nodetest.StartSecure(t)
	admin := client{t, base, token}
	send(t, admin, "POST", "/api/metadata/taskdefs", `[{"name":"q_a"},{"name":"q_b"},{"name":"q_idle"}]`)
	send(t, admin, "PUT", "/api/metadata/task/q_b/tags", `[{"key":"team","value":"b"}]`)
	send(t, admin, "POST", "/api/metadata/workflow", `{"name":"q_flow_a","tasks":[{"name":"q_a","taskReferenceName":"a"}]}`)
	send(t, admin, "POST", "/api/metadata/workflow", `{"name":"q_flow_b","tasks":[{"name":"q_b","taskReferenceName":"b"}]}`)
	send(t, admin, "POST", "/api/workflow", `{"name":"q_flow_a"}`)
	send(t, admin, "POST", "/api/workflow", `{"name":"q_flow_b"}`)
	send(t, admin, "POST", "/api/workflow", `{"name":"q_flow_b","taskToDomain":{"q_b":"blue"}}`)
	testutil.Eventually(t, 20*time.Second, 10*time.Millisecond, func() error {
		all := decode[map[string]int64](t, send(t, admin, "GET", "/api/tasks/queue/all", ""))
		if all["q_a"] != 1 || all["q_b"] != 1 || all["blue:q_b"] != 1 || all["q_idle"] != 0 || len(all) != 4 {
			return fmt.Errorf("queues %v", all)
		}
		return nil
	})
	// Poll data for both types.
	send(t, admin, "GET", "/api/tasks/poll/batch/q_a?workerid=wa&timeout=0", "")
	send(t, admin, "GET", "/api/tasks/poll/batch/q_b?workerid=wb&timeout=0", "")

	workerID, _, _, workerTok := newApp(t, admin, "q_worker", "WORKER")
	send(t, admin, "POST", "/api/auth/authorization", fmt.Sprintf(grantTemplate, workerID, "TASK_DEF", "q_a", `["EXECUTE"]`))
	taggedID, _, _, taggedTok := newApp(t, admin, "q_tagged", "USER")
	send(t, admin, "POST", "/api/auth/authorization", fmt.Sprintf(grantTemplate, taggedID, "TAG", "team:b", `["READ"]`))
	_, _, _, userTok := newApp(t, admin, "q_user", "USER")
	_, _, _, viewerTok := newApp(t, admin, "q_viewer", "USER_READ_ONLY")

	keys := func(body string) []string {
		return slices.Sorted(maps.Keys(decode[map[string]json.RawMessage](t, body)))
	}
	queueNames := func(body string) []string {
		var names []string
		for _, d := range decode[[]struct{ QueueName string }](t, body) {
			if !slices.Contains(names, d.QueueName) {
				names = append(names, d.QueueName)
			}
		}
		slices.Sort(names)
		return names
	}
	type view struct{ sizes, all, pollData, pollDataB []string }
	// A defined type with no task yet has its queue too, as in Conductor.
	everything := view{sizes: []string{"q_a", "q_b"}, all: []string{"blue:q_b", "q_a", "q_b", "q_idle"},
		pollData: []string{"q_a", "q_b"}, pollDataB: []string{"q_b"}}
	for _, tc := range []struct {
		name  string
		token string
		want  view
	}{
		{"admin", token, everything},
		{"metadata viewer", viewerTok, everything},
		{"worker of q_a", workerTok, view{sizes: []string{"q_a"}, all: []string{"q_a"}, pollData: []string{"q_a"}}},
		{"user with a tag grant on q_b", taggedTok, view{sizes: []string{"q_b"}, all: []string{"blue:q_b", "q_b"},
			pollData: []string{"q_b"}, pollDataB: []string{"q_b"}}},
		{"user without grants", userTok, view{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := client{t, base, tc.token}
			got := view{
				sizes:     keys(c.must(200, "GET", "/api/tasks/queue/sizes?taskType=q_a&taskType=q_b", "")),
				all:       keys(c.must(200, "GET", "/api/tasks/queue/all", "")),
				pollData:  queueNames(c.must(200, "GET", "/api/tasks/queue/polldata/all", "")),
				pollDataB: queueNames(c.must(200, "GET", "/api/tasks/queue/polldata?taskType=q_b", "")),
			}
			if verbose := keys(c.must(200, "GET", "/api/tasks/queue/all/verbose", "")); !slices.Equal(verbose, got.all) {
				t.Errorf("verbose queues %v, plain %v", verbose, got.all)
			}
			for _, f := range []struct {
				what      string
				got, want []string
			}{{"sizes", got.sizes, tc.want.sizes}, {"all", got.all, tc.want.all},
				{"polldata/all", got.pollData, tc.want.pollData}, {"polldata?taskType=q_b", got.pollDataB, tc.want.pollDataB}} {
				if !slices.Equal(f.got, f.want) {
					t.Errorf("%s shows %v, want %v", f.what, f.got, f.want)
				}
			}
		})
	}
}

// Removing an execution needs DELETE on it, besides the EXECUTE any
// operation needs: EXECUTE alone (a runner's grant) does not remove, nor
// does METADATA_MANAGER's DELETE on every definition, which does not even
// show it the execution.
func TestRemoveNeedsDelete(t *testing.T) {
	t.Parallel()
	_, base, token := nodetest.StartSecure(t)
	admin := client{t, base, token}
	send(t, admin, "POST", "/api/metadata/workflow", `{"name":"rm_flow","tasks":[{"name":"hold","taskReferenceName":"hold","type":"WAIT"}]}`)
	principals := map[string]client{"admin": admin}
	for _, p := range []struct {
		name   string
		roles  []string
		target string
		access string
	}{
		{"runner", nil, "WORKFLOW_DEF", `["READ","EXECUTE"]`},
		{"remover", nil, "WORKFLOW", `["EXECUTE","DELETE"]`},
		{"deleter", nil, "WORKFLOW", `["DELETE"]`},
		{"metadata", []string{"METADATA_MANAGER"}, "", ""},
		{"manager", []string{"WORKFLOW_MANAGER"}, "", ""},
		{"stranger", []string{"USER"}, "", ""},
	} {
		id, _, _, tok := newApp(t, admin, "rm_"+p.name, p.roles...)
		if p.target != "" {
			send(t, admin, "POST", "/api/auth/authorization", fmt.Sprintf(grantTemplate, id, p.target, "rm_flow", p.access))
		}
		principals[p.name] = client{t, base, tok}
	}
	for _, tc := range []struct {
		who, how string
		own      bool // the caller started the execution
		want     int
	}{
		{"runner", "remove", false, http.StatusForbidden},
		{"runner", "terminate-remove", false, http.StatusForbidden},
		{"runner", "bulk", false, http.StatusForbidden},
		{"runner", "remove", true, http.StatusNoContent}, // its creator
		{"remover", "remove", false, http.StatusNoContent},
		{"remover", "terminate-remove", false, http.StatusNoContent},
		{"remover", "bulk", false, http.StatusNoContent},
		{"deleter", "remove", false, http.StatusForbidden},
		{"metadata", "remove", false, http.StatusNotFound},
		{"metadata", "bulk", false, -1}, // "not found"
		{"manager", "terminate-remove", false, http.StatusNoContent},
		{"admin", "remove", false, http.StatusNoContent},
		{"stranger", "remove", false, http.StatusNotFound},
	} {
		name := tc.who + " " + tc.how
		if tc.own {
			name += " of its own"
		}
		t.Run(name, func(t *testing.T) {
			c := principals[tc.who]
			starter := admin
			if tc.own {
				starter = c
			}
			id := send(t, starter, "POST", "/api/workflow", `{"name":"rm_flow"}`)
			var got int
			var body string
			switch tc.how {
			case "bulk":
				// A bulk answer is 200 with an outcome per id: 204 stands
				// for removed, 403 for refused.
				res := decode[conductor.BulkResponse](t, c.must(200, "POST", "/api/workflow/bulk/delete", `["`+id+`"]`))
				got, body = http.StatusNoContent, fmt.Sprint(res.BulkErrorResults)
				if msg, failed := res.BulkErrorResults[id]; failed {
					got = -1
					if strings.Contains(msg, " may not ") {
						got = http.StatusForbidden
					}
				}
			default:
				r := c.do("DELETE", "/api/workflow/"+id+"/"+tc.how+"?archiveWorkflow=false", "")
				got, body = r.status, r.body
			}
			if got != tc.want {
				t.Fatalf("%s as %s = %d %s, want %d", tc.how, tc.who, got, body, tc.want)
			}
			status := admin.do("GET", "/api/workflow/"+id, "").status
			if removed := status == http.StatusNotFound; removed != (tc.want == http.StatusNoContent) {
				t.Fatalf("after the %d answer the workflow reads %d", got, status)
			}
		})
	}
}

// A task's log is bounded in lines and in bytes: a result's lines past the
// bound are dropped (the result lands, with a note of what was dropped),
// a line sent on its own is refused with 413.
func TestTaskLogIsCapped(t *testing.T) {
	t.Parallel()
	_, base := nodetest.Start(t)
	c := client{t, base, ""}
	send(t, c, "POST", "/api/metadata/workflow", `{"name":"log_flow","tasks":[{"name":"chatty","taskReferenceName":"c"}]}`)
	lines := func(n, size int) []conductor.TaskExecLog {
		out := make([]conductor.TaskExecLog, n)
		for i := range out {
			out[i] = conductor.TaskExecLog{Log: fmt.Sprintf("%06d", i) + strings.Repeat("x", size-6)}
		}
		return out
	}
	for _, tc := range []struct {
		name        string
		result      []conductor.TaskExecLog
		wantKept    int // result lines kept, before the note
		wantDropped int
		extra       int // bytes of a line then sent on its own
		wantExtra   int
	}{
		{"within the bounds", lines(10, 100), 10, 0, 100, http.StatusNoContent},
		{"too many lines", lines(1200, 10), 999, 201, 10, http.StatusRequestEntityTooLarge},
		{"too many bytes", lines(10, 100<<10), 5, 5, 16 << 10, http.StatusRequestEntityTooLarge},
		{"room left after the bytes bound", lines(10, 100<<10), 5, 5, 1 << 10, http.StatusNoContent},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := send(t, c, "POST", "/api/workflow", `{"name":"log_flow"}`)
			task := pollOne(t, c, "chatty")
			if task.WorkflowInstanceID != id {
				t.Fatalf("polled a task of %s, want %s", task.WorkflowInstanceID, id)
			}
			res, _ := json.Marshal(conductor.TaskResult{TaskID: task.TaskID, WorkflowInstanceID: id, Status: conductor.TaskCompleted,
				WorkerID: "w1", Logs: tc.result})
			if got := send(t, c, "POST", "/api/tasks", string(res)); got != task.TaskID {
				t.Fatalf("update answered %q", got)
			}
			// A worker's result waits for the read model only briefly.
			testutil.Eventually(t, 20*time.Second, 10*time.Millisecond, func() error {
				if wf := decode[conductor.Workflow](t, send(t, c, "GET", "/api/workflow/"+id, "")); wf.Status != conductor.WorkflowCompleted {
					return fmt.Errorf("workflow %s, want the result recorded whatever its logs", wf.Status)
				}
				return nil
			})
			logs := decode[[]conductor.TaskExecLog](t, send(t, c, "GET", "/api/tasks/"+task.TaskID+"/log", ""))
			want := tc.wantKept
			if tc.wantDropped > 0 {
				want++
			}
			if len(logs) != want {
				t.Fatalf("%d log lines stored, want %d", len(logs), want)
			}
			for i := range tc.wantKept {
				if logs[i].Log != tc.result[i].Log {
					t.Fatalf("line %d is %.20q, want %.20q", i, logs[i].Log, tc.result[i].Log)
				}
			}
			if note := logs[len(logs)-1].Log; tc.wantDropped > 0 && !strings.Contains(note, fmt.Sprintf("%d log lines dropped", tc.wantDropped)) {
				t.Fatalf("last line %.100q, want a note of %d dropped", note, tc.wantDropped)
			}
			line, _ := json.Marshal(strings.Repeat("y", tc.extra))
			r := c.do("POST", "/api/tasks/"+task.TaskID+"/log", string(line))
			if r.status != tc.wantExtra {
				t.Fatalf("a line of %d bytes on its own = %d %s, want %d", tc.extra, r.status, r.body, tc.wantExtra)
			}
			if r.status == http.StatusRequestEntityTooLarge {
				r.expectError(t, r.status, "log is full")
			}
		})
	}
}

// POST /api/tasks/queue/requeue/{taskType} announces the type's waiting
// tasks again, for a queue that lost its messages, and answers their
// number; it is for the type's workers and workflow managers.
func TestRequeuePendingTasks(t *testing.T) {
	t.Parallel()
	n, base, token := nodetest.StartSecure(t)
	admin := client{t, base, token}
	send(t, admin, "POST", "/api/metadata/taskdefs", `[{"name":"rq_task"},{"name":"rq_other"}]`)
	send(t, admin, "POST", "/api/metadata/workflow", `{"name":"rq_flow","tasks":[{"name":"rq_task","taskReferenceName":"r"}]}`)
	ids := []string{send(t, admin, "POST", "/api/workflow", `{"name":"rq_flow"}`), send(t, admin, "POST", "/api/workflow", `{"name":"rq_flow"}`)}
	size := func() int64 {
		return decode[map[string]int64](t, send(t, admin, "GET", "/api/tasks/queue/sizes?taskType=rq_task", ""))["rq_task"]
	}
	testutil.Eventually(t, 20*time.Second, 10*time.Millisecond, func() error {
		if got := size(); got != 2 {
			return fmt.Errorf("queue size %d", got)
		}
		return nil
	})
	// The queue loses its messages, well within the stream's duplicate
	// window: a requeue's announcements carry ids of their own.
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
	testutil.Eventually(t, 20*time.Second, 10*time.Millisecond, func() error {
		if got := size(); got != 0 {
			return fmt.Errorf("queue size %d after the purge", got)
		}
		return nil
	})

	workerID, _, _, workerTok := newApp(t, admin, "rq_worker", "WORKER")
	send(t, admin, "POST", "/api/auth/authorization", fmt.Sprintf(grantTemplate, workerID, "TASK_DEF", "rq_task", `["EXECUTE"]`))
	otherID, _, _, otherTok := newApp(t, admin, "rq_other_worker", "WORKER")
	send(t, admin, "POST", "/api/auth/authorization", fmt.Sprintf(grantTemplate, otherID, "TASK_DEF", "rq_other", `["EXECUTE"]`))
	_, _, _, userTok := newApp(t, admin, "rq_user", "USER")
	_, _, _, managerTok := newApp(t, admin, "rq_manager", "WORKFLOW_MANAGER")
	worker := client{t, base, workerTok}
	for _, tc := range []struct {
		name     string
		c        client
		taskType string
		status   int
		body     string
	}{
		{"a user", client{t, base, userTok}, "rq_task", http.StatusForbidden, ""},
		{"a worker of another type", client{t, base, otherTok}, "rq_task", http.StatusForbidden, ""},
		{"a type nothing waits for", client{t, base, otherTok}, "rq_other", http.StatusOK, "0"},
		{"a workflow manager", client{t, base, managerTok}, "rq_task", http.StatusOK, "2"},
		{"a worker of the type", worker, "rq_task", http.StatusOK, "2"},
		{"a type named signal", client{t, base, managerTok}, "signal", http.StatusOK, "0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.c.do("POST", "/api/tasks/queue/requeue/"+tc.taskType, "")
			if r.status != tc.status || tc.status == http.StatusOK && (r.body != tc.body || !strings.HasPrefix(r.header.Get("Content-Type"), "text/plain")) {
				t.Fatalf("requeue %s = %d %s %s, want %d %s", tc.taskType, r.status, r.header.Get("Content-Type"), r.body, tc.status, tc.body)
			}
		})
	}
	// The worker gets both tasks again, once the first announcements have
	// left the shortened window (a requeue repeated meanwhile is harmless:
	// one announcement per task and attempt passes).
	var got []string
	testutil.Eventually(t, 20*time.Second, 50*time.Millisecond, func() error {
		for _, task := range decode[[]conductor.Task](t, worker.must(200, "GET", "/api/tasks/poll/batch/rq_task?workerid=w&count=2&timeout=100", "")) {
			got = append(got, task.WorkflowInstanceID)
		}
		if len(got) == 2 {
			return nil
		}
		// A requeue answers its count as text/plain, not JSON.
		if r := worker.do("POST", "/api/tasks/queue/requeue/rq_task", ""); r.status != http.StatusOK {
			t.Fatalf("requeue again: %d %s", r.status, r.body)
		}
		return fmt.Errorf("took %v", got)
	})
	slices.Sort(got)
	slices.Sort(ids)
	if !slices.Equal(got, ids) {
		t.Fatalf("took tasks of %v, want %v", got, ids)
	}
}

// A result for a task of a removed workflow is late, and both update
// endpoints ignore it with a success (update-v2's 404 would make the
// JavaScript SDK give up update-v2); a caller who may not report on the
// task gets the answer a missing task gets.
func TestResultForRemovedWorkflow(t *testing.T) {
	t.Parallel()
	_, base, token := nodetest.StartSecure(t)
	admin := client{t, base, token}
	send(t, admin, "POST", "/api/metadata/taskdefs", `[{"name":"late_task"}]`)
	send(t, admin, "POST", "/api/metadata/workflow", `{"name":"late_flow","tasks":[{"name":"late_task","taskReferenceName":"l"}]}`)
	workerID, _, _, workerTok := newApp(t, admin, "late_worker", "WORKER")
	send(t, admin, "POST", "/api/auth/authorization", fmt.Sprintf(grantTemplate, workerID, "TASK_DEF", "late_task", `["EXECUTE"]`))
	worker := client{t, base, workerTok}
	otherID, _, _, otherTok := newApp(t, admin, "other_worker", "WORKER")
	send(t, admin, "POST", "/api/auth/authorization", fmt.Sprintf(grantTemplate, otherID, "TASK_DEF", "other_task", `["EXECUTE"]`))
	other := client{t, base, otherTok}
	for _, tc := range []struct {
		name, path, removal string
		c                   client
		status              int
	}{
		{"v1 archived", "/api/tasks", "terminate-remove?archiveWorkflow=true", worker, http.StatusOK},
		{"v1 deleted", "/api/tasks", "terminate-remove?archiveWorkflow=false", worker, http.StatusOK},
		{"v2 archived", "/api/tasks/update-v2", "terminate-remove?archiveWorkflow=true", worker, http.StatusNoContent},
		{"v2 deleted while running", "/api/tasks/update-v2", "remove?archiveWorkflow=false", worker, http.StatusNoContent},
		{"v2 by a worker of another type", "/api/tasks/update-v2", "terminate-remove?archiveWorkflow=false", other, http.StatusNotFound},
		{"v1 by a worker of another type", "/api/tasks", "terminate-remove?archiveWorkflow=false", other, http.StatusNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := send(t, admin, "POST", "/api/workflow", `{"name":"late_flow"}`)
			task := pollOne(t, worker, "late_task")
			send(t, admin, "DELETE", "/api/workflow/"+id+"/"+tc.removal, "")
			res := `{"taskId":"` + task.TaskID + `","workflowInstanceId":"` + id + `","status":"COMPLETED","workerId":"w1"}`
			r := tc.c.do("POST", tc.path, res)
			if r.status != tc.status {
				t.Fatalf("POST %s = %d %s, want %d", tc.path, r.status, r.body, tc.status)
			}
			switch tc.status {
			case http.StatusOK:
				if r.body != task.TaskID {
					t.Fatalf("answer %q, want the task id", r.body)
				}
			case http.StatusNotFound:
				missing := tc.c.do("POST", tc.path, strings.ReplaceAll(res, task.TaskID, "no-such-task"))
				if missing.status != r.status || strings.ReplaceAll(r.body, task.TaskID, "ID") != strings.ReplaceAll(missing.body, "no-such-task", "ID") {
					t.Fatalf("removed: %d %s; missing: %d %s", r.status, r.body, missing.status, missing.body)
				}
			}
		})
	}
}

// Polling a task type without a definition takes POLL_ANY_TASK or a grant
// on that very name: a USER's CREATE on unused names does not reach it,
// and the refusal says what would.
func TestPollUnregisteredTaskType(t *testing.T) {
	t.Parallel()
	_, base, token := nodetest.StartSecure(t)
	admin := client{t, base, token}
	send(t, admin, "POST", "/api/metadata/workflow", `{"name":"ghost_flow","tasks":[{"name":"ghost","taskReferenceName":"g"}]}`)
	send(t, admin, "POST", "/api/workflow", `{"name":"ghost_flow"}`)
	_, _, _, userWorkerTok := newApp(t, admin, "user_worker", "USER", "WORKER")
	grantedID, _, _, grantedTok := newApp(t, admin, "granted", "WORKER")
	send(t, admin, "POST", "/api/auth/authorization", fmt.Sprintf(grantTemplate, grantedID, "TASK_DEF", "ghost", `["EXECUTE"]`))
	_, _, _, unrestrictedTok := newApp(t, admin, "unrestricted", "UNRESTRICTED_WORKER")
	for _, tc := range []struct {
		name   string
		token  string
		status int
		msg    string
	}{
		{"a user with the worker role", userWorkerTok, http.StatusForbidden, "task type ghost has no definition: polling an unregistered type needs"},
		{"a worker granted EXECUTE on the name", grantedTok, http.StatusOK, ""},
		{"an unrestricted worker", unrestrictedTok, http.StatusOK, ""},
		{"an admin", token, http.StatusOK, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := client{t, base, tc.token}
			for _, req := range [][3]string{
				{"GET", "/api/tasks/poll/batch/ghost?timeout=0", ""},
				{"GET", "/api/tasks/poll/ghost?timeout=0", ""},
				{"POST", "/api/workers/credentials", `{"taskTypes":["ghost"]}`},
			} {
				r := c.do(req[0], req[1], req[2])
				if r.status/100 == 2 && tc.status == http.StatusOK {
					continue
				}
				if r.status != tc.status {
					t.Fatalf("%s %s = %d %s, want %d", req[0], req[1], r.status, r.body, tc.status)
				}
				r.expectError(t, tc.status, tc.msg)
			}
		})
	}
}
