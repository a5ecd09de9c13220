package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flowvault/flowvault/api"
	"github.com/flowvault/flowvault/auth"
	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/internal/nodetest"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/projections"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/secrets"
)

// outcome is what a request got: through access control (to be judged on
// its merits: a 409 for a workflow in the wrong state counts), refused,
// or told the resource does not exist.
type outcome string

const (
	ok     outcome = "ok"     // 2xx
	denied outcome = "denied" // 403
	hidden outcome = "hidden" // 404: an execution the caller may not see
	anon   outcome = "anon"   // 401
)

func outcomeOf(status int) outcome {
	switch {
	case status/100 == 2, status == http.StatusConflict:
		return ok
	case status == http.StatusForbidden:
		return denied
	case status == http.StatusNotFound:
		return hidden
	case status == http.StatusUnauthorized:
		return anon
	}
	return outcome(fmt.Sprint(status))
}

// authzWorld is a secure node with resources of every kind and one
// principal per way of holding access.
type authzWorld struct {
	base        string
	admin       client
	principals  map[string]client
	open, shut  string // executions of wf_open and wf_closed, started by the admin
	runnerStart string // an execution of wf_open started by runner
}

// send makes a request that must succeed (any 2xx) and returns the body.
func send(t *testing.T, c client, method, path, body string) string {
	t.Helper()
	r := c.do(method, path, body)
	if r.status/100 != 2 {
		t.Fatalf("%s %s = %d %s", method, path, r.status, r.body)
	}
	return r.body
}

const grantTemplate = `{"subject":{"type":"USER","id":"app:%s"},"target":{"type":"%s","id":"%s"},"access":%s}`

func newAuthzWorld(t *testing.T) *authzWorld {
	_, base, token := nodetest.StartSecure(t)
	admin := client{t, base, token}
	w := &authzWorld{base: base, admin: admin, principals: map[string]client{"admin": admin, "nobody": {t, base, ""}}}

	send(t, admin, "POST", "/api/metadata/taskdefs", `[{"name":"task_a"},{"name":"task_b"}]`)
	for _, def := range []string{
		`{"name":"wf_open","tasks":[{"name":"task_a","taskReferenceName":"a"}]}`,
		`{"name":"wf_closed","tasks":[{"name":"task_b","taskReferenceName":"b"}]}`,
	} {
		send(t, admin, "POST", "/api/metadata/workflow", def)
	}
	send(t, admin, "PUT", "/api/secrets/sec_open", "open-value-1")
	send(t, admin, "PUT", "/api/secrets/sec_closed", "closed-value-1")
	send(t, admin, "PUT", "/api/secrets/sec_open/tags", `[{"key":"team","value":"ops"}]`)
	send(t, admin, "PUT", "/api/environment/env_open", "e")
	send(t, admin, "POST", "/api/scheduler/schedules",
		`{"name":"sched_open","cronExpression":"0 0 0 1 1 ?","paused":true,"startWorkflowRequest":{"name":"wf_open"}}`)
	w.open = send(t, admin, "POST", "/api/workflow", `{"name":"wf_open"}`)
	w.shut = send(t, admin, "POST", "/api/workflow", `{"name":"wf_closed"}`)

	// Each principal holds access one way, and nothing else.
	type grant struct{ targetType, id, access string }
	for _, p := range []struct {
		name   string
		roles  []string
		grants []grant
	}{
		{"none", nil, nil},
		{"user", []string{"USER"}, nil},
		{"runner", nil, []grant{{"WORKFLOW_DEF", "wf_open", `["READ","EXECUTE"]`}, {"WORKFLOW_SCHEDULE", "sched_open", `["READ"]`}}},
		{"worker", []string{"WORKER"}, []grant{{"TASK_DEF", "task_a", `["EXECUTE"]`}}},
		{"domain", []string{"WORKER"}, []grant{{"DOMAIN", "eu", `["EXECUTE"]`}}},
		{"tagged", nil, []grant{{"TAG", "team:ops", `["READ"]`}}},
		{"metadata", []string{"METADATA_MANAGER"}, nil},
		{"manager", []string{"WORKFLOW_MANAGER"}, nil},
	} {
		id, _, _, tok := newApp(t, admin, p.name, p.roles...)
		for _, g := range p.grants {
			send(t, admin, "POST", "/api/auth/authorization", fmt.Sprintf(grantTemplate, id, g.targetType, g.id, g.access))
		}
		w.principals[p.name] = client{t, base, tok}
	}
	// member holds what its group holds: the group's role (USER) and the
	// group's grant (READ on sec_closed).
	memberID, _, _, memberTok := newApp(t, admin, "member")
	send(t, admin, "PUT", "/api/groups/readers", `{"description":"readers","roles":["USER"]}`)
	send(t, admin, "POST", "/api/groups/readers/users/app:"+memberID, "")
	send(t, admin, "POST", "/api/auth/authorization", `{"subject":{"type":"GROUP","id":"readers"},"target":{"type":"SECRET_NAME","id":"sec_closed"},"access":["READ"]}`)
	w.principals["member"] = client{t, base, memberTok}
	w.runnerStart = send(t, w.principals["runner"], "POST", "/api/workflow", `{"name":"wf_open"}`)
	return w
}

// The endpoint × principal matrix: every kind of endpoint, asked by each
// principal whose access differs on it.
func TestAuthorizationMatrix(t *testing.T) {
	t.Parallel()
	w := newAuthzWorld(t)
	type row struct {
		method, path, body string
		want               map[string]outcome
	}
	all := func(o outcome, except map[string]outcome) map[string]outcome {
		m := map[string]outcome{}
		for name := range w.principals {
			m[name] = o
		}
		m["nobody"] = anon
		for k, v := range except {
			m[k] = v
		}
		return m
	}
	rows := []row{
		// Definitions: READ by grant, role (METADATA_VIEW, WORKFLOW_MANAGEMENT) or admin.
		{"GET", "/api/metadata/workflow/wf_open", "", all(denied, map[string]outcome{"admin": ok, "runner": ok, "metadata": ok, "manager": ok})},
		{"GET", "/api/metadata/workflow/wf_closed", "", all(denied, map[string]outcome{"admin": ok, "metadata": ok, "manager": ok})},
		{"GET", "/api/metadata/taskdefs/task_a", "", all(denied, map[string]outcome{"admin": ok, "metadata": ok, "manager": ok, "worker": ok})},
		// Registering a new name needs CREATE (USER's CREATE_WORKFLOW_DEF);
		// changing one needs UPDATE.
		{"POST", "/api/metadata/workflow", `{"name":"wf_new_%s","tasks":[{"name":"task_a","taskReferenceName":"a"}]}`,
			all(denied, map[string]outcome{"admin": ok, "user": ok, "metadata": ok, "member": ok})},
		{"POST", "/api/metadata/workflow?overwrite=true", `{"name":"wf_open","version":2,"tasks":[{"name":"task_a","taskReferenceName":"a"}]}`,
			all(denied, map[string]outcome{"admin": ok, "metadata": ok})},
		// The creator of a definition has full access to it, except that
		// an application (every principal here is one) changes definitions
		// only with METADATA_API or another metadata-managing role.
		{"GET", "/api/metadata/workflow/wf_new_user", "", all(denied, map[string]outcome{"admin": ok, "user": ok, "metadata": ok, "manager": ok})},
		{"PUT", "/api/metadata/workflow/wf_new_user/tags", `[{"key":"k","value":"v"}]`, all(denied, map[string]outcome{"admin": ok, "metadata": ok})},
		{"PUT", "/api/metadata/workflow/wf_closed/tags", `[{"key":"k","value":"v"}]`, all(denied, map[string]outcome{"admin": ok, "metadata": ok})},
		{"DELETE", "/api/metadata/taskdefs/task_missing", "", all(denied, map[string]outcome{"admin": hidden, "metadata": hidden})},
		// Starting needs EXECUTE on the definition.
		{"POST", "/api/workflow", `{"name":"wf_open"}`, all(denied, map[string]outcome{"admin": ok, "runner": ok, "manager": ok})},
		{"POST", "/api/workflow/wf_closed", `{}`, all(denied, map[string]outcome{"admin": ok, "manager": ok})},
		// A simulation shows the definitions it runs: READ on each; an
		// inline one needs CREATE on its name, as its start would.
		{"POST", "/api/workflow/test", `{"name":"wf_open"}`, all(hidden, map[string]outcome{"admin": ok, "runner": ok, "metadata": ok, "manager": ok})},
		{"POST", "/api/workflow/test", `{"name":"wf_closed"}`, all(hidden, map[string]outcome{"admin": ok, "metadata": ok, "manager": ok})},
		{"POST", "/api/workflow/test", `{"name":"wf_sim","workflowDef":{"name":"wf_sim","tasks":[{"name":"task_a","taskReferenceName":"a"}]}}`,
			all(denied, map[string]outcome{"admin": ok, "user": ok, "metadata": ok, "member": ok})},
		// Executions: READ/EXECUTE through a grant on the definition, the
		// creator, or WORKFLOW_MANAGEMENT; a role that manages definitions
		// (METADATA_MANAGER) reaches none of the data their runs carry.
		// One the caller may not see is not found.
		{"GET", "/api/workflow/" + w.open, "", all(hidden, map[string]outcome{"admin": ok, "runner": ok, "manager": ok})},
		{"GET", "/api/workflow/" + w.shut, "", all(hidden, map[string]outcome{"admin": ok, "manager": ok})},
		{"GET", "/api/workflow/" + w.open + "/status", "", all(hidden, map[string]outcome{"admin": ok, "runner": ok, "manager": ok})},
		{"PUT", "/api/workflow/" + w.runnerStart + "/pause", "", all(hidden, map[string]outcome{"admin": ok, "runner": ok, "manager": ok})},
		{"PUT", "/api/workflow/" + w.runnerStart + "/resume", "", all(hidden, map[string]outcome{"admin": ok, "runner": ok, "manager": ok})},
		{"PUT", "/api/workflow/" + w.shut + "/pause", "", all(hidden, map[string]outcome{"admin": ok, "manager": ok})},
		{"GET", "/api/workflow/no-such-execution", "", all(hidden, nil)},
		// Tasks: polling needs WORKER and EXECUTE on the type, or, in a
		// domain's queue, on the domain (any type, that domain only).
		{"GET", "/api/tasks/poll/task_a?timeout=0", "", all(denied, map[string]outcome{"admin": ok, "worker": ok})},
		{"GET", "/api/tasks/poll/batch/task_b?timeout=0", "", all(denied, map[string]outcome{"admin": ok})},
		{"GET", "/api/tasks/poll/task_a?timeout=0&domain=eu", "", all(denied, map[string]outcome{"admin": ok, "worker": ok, "domain": ok})},
		{"GET", "/api/tasks/poll/batch/task_b?timeout=0&domain=eu", "", all(denied, map[string]outcome{"admin": ok, "domain": ok})},
		{"GET", "/api/tasks/poll/batch/task_missing?timeout=0&domain=eu", "", all(denied, map[string]outcome{"admin": ok, "domain": ok})},
		{"GET", "/api/tasks/poll/task_a?timeout=0&domain=us", "", all(denied, map[string]outcome{"admin": ok, "worker": ok})},
		{"GET", "/api/tasks/queue/sizes?taskType=task_a", "", all(ok, map[string]outcome{"none": denied, "tagged": denied, "runner": denied})},
		// NATS credentials take tasks as polling does: WORKER and EXECUTE
		// on every type asked for (admins may ask for a type not yet defined).
		{"POST", "/api/workers/credentials", `{"taskTypes":["task_a"]}`, all(denied, map[string]outcome{"admin": ok, "worker": ok})},
		{"POST", "/api/workers/credentials", `{"taskTypes":["task_a","task_b"]}`, all(denied, map[string]outcome{"admin": ok})},
		{"POST", "/api/workers/credentials", `{"taskTypes":["task_missing"]}`, all(denied, map[string]outcome{"admin": ok})},
		// Credentials reach the queue without domain of each type unless
		// domainsOnly: a DOMAIN grant allows those of its domain alone.
		{"POST", "/api/workers/credentials", `{"taskTypes":["task_a"],"domains":["eu"]}`, all(denied, map[string]outcome{"admin": ok, "worker": ok})},
		{"POST", "/api/workers/credentials", `{"taskTypes":["task_a","task_missing"],"domains":["eu"],"domainsOnly":true}`,
			all(denied, map[string]outcome{"admin": ok, "domain": ok})},
		{"POST", "/api/workers/credentials", `{"taskTypes":["task_a"],"domains":["eu","us"],"domainsOnly":true}`,
			all(denied, map[string]outcome{"admin": ok, "worker": ok})},
		// Secrets: READ by tag grant, CREATE by role permission.
		{"GET", "/api/secrets/sec_open", "", all(denied, map[string]outcome{"admin": ok, "tagged": ok})},
		{"GET", "/api/secrets/sec_closed", "", all(denied, map[string]outcome{"admin": ok, "member": ok})},
		{"GET", "/api/secrets/sec_open/exists", "", all(denied, map[string]outcome{"admin": ok, "tagged": ok})},
		{"PUT", "/api/secrets/sec_open", "x", all(denied, map[string]outcome{"admin": ok})},
		{"PUT", "/api/secrets/sec_new_%s", "x", all(denied, map[string]outcome{"admin": ok, "user": ok, "metadata": ok, "member": ok})},
		{"GET", "/api/secrets/sec_new_user", "", all(denied, map[string]outcome{"admin": ok, "user": ok})},
		{"GET", "/api/secrets/clearLocalCache", "", all(denied, map[string]outcome{"admin": ok})},
		{"GET", "/api/environment/env_open", "", all(denied, map[string]outcome{"admin": ok})},
		// Schedules: READ by grant; saving one needs EXECUTE on its workflow.
		{"GET", "/api/scheduler/schedules/sched_open", "", all(denied, map[string]outcome{"admin": ok, "runner": ok})},
		{"POST", "/api/scheduler/schedules", `{"name":"sched_new_%s","cronExpression":"0 0 0 1 1 ?","paused":true,"startWorkflowRequest":{"name":"wf_closed"}}`,
			all(denied, map[string]outcome{"admin": ok})},
		// The scheduler's admin switches act on every schedule: admins.
		{"GET", "/api/scheduler/admin/pause", "", all(denied, map[string]outcome{"admin": ok})},
		{"GET", "/api/scheduler/admin/resume", "", all(denied, map[string]outcome{"admin": ok})},
		{"GET", "/api/scheduler/admin/requeue", "", all(denied, map[string]outcome{"admin": ok})},
		// Access control itself: admins.
		{"GET", "/api/users", "", all(denied, map[string]outcome{"admin": ok})},
		{"POST", "/api/auth/authorization", `{"subject":{"type":"ROLE","id":"USER"},"target":{"type":"TAG","id":"x:y"},"access":["READ"]}`,
			all(denied, map[string]outcome{"admin": ok})},
		// The audit trail and the read-model verification: admins.
		{"GET", "/api/audit?secret=sec_open", "", all(denied, map[string]outcome{"admin": ok})},
		{"POST", "/api/audit/verify", "", all(denied, map[string]outcome{"admin": ok})},
		// Public.
		{"GET", "/api/health", "", all(ok, map[string]outcome{"nobody": ok})},
	}
	names := slices.Sorted(func(yield func(string) bool) {
		for n := range w.principals {
			if !yield(n) {
				return
			}
		}
	})
	for _, r := range rows {
		for _, name := range names {
			want, ok := r.want[name]
			if !ok {
				t.Fatalf("%s %s: no expectation for %s", r.method, r.path, name)
			}
			// %s in a path or body makes names of created resources
			// the principal's own.
			path, body := strings.ReplaceAll(r.path, "%s", name), strings.ReplaceAll(r.body, "%s", name)
			got := w.principals[name].do(r.method, path, body)
			if outcomeOf(got.status) != want {
				t.Errorf("%s %s as %s = %d %.200s, want %s", r.method, path, name, got.status, got.body, want)
			}
		}
	}
}

// Lists show each caller what it may read, and searches count only that.
func TestAuthorizationFiltersLists(t *testing.T) {
	t.Parallel()
	w := newAuthzWorld(t)
	runner, tagged := w.principals["runner"], w.principals["tagged"]
	if defs := runner.must(200, "GET", "/api/metadata/workflow", ""); !strings.Contains(defs, `"wf_open"`) || strings.Contains(defs, `"wf_closed"`) {
		t.Fatalf("runner's definitions = %.500s", defs)
	}
	for _, path := range []string{"/api/metadata/workflow/names-and-versions", "/api/metadata/workflow/latest-versions"} {
		if defs := runner.must(200, "GET", path, ""); !strings.Contains(defs, `"wf_open"`) || strings.Contains(defs, `"wf_closed"`) {
			t.Fatalf("runner's %s = %.500s", path, defs)
		}
	}
	// Orkes's filters select among what the caller may read.
	for _, name := range []string{"wf_open", "wf_closed"} {
		send(t, w.admin, "PUT", "/api/metadata/workflow/"+name+"/tags", `[{"key":"kind","value":"demo"}]`)
	}
	for _, q := range []string{"?name=wf_closed", "?name=wf_closed&metadata=true", "?tagKey=kind&tagValue=demo", "?tagKey=kind&short=true&metadata=true"} {
		defs := runner.must(200, "GET", "/api/metadata/workflow"+q, "")
		if strings.Contains(defs, `"wf_closed"`) || strings.Contains(q, "name=") != (defs == "[]") {
			t.Fatalf("runner's definitions %s = %.500s", q, defs)
		}
	}
	// Orkes's access asks for more than READ, all of it.
	// (A listing holds the name it wants, or is empty.)
	for q, want := range map[string]string{"?access=EXECUTE": `"wf_open"`, "?access=READ&access=UPDATE": "", "?access=EXECUTE&name=wf_open&access=DELETE": "",
		"?access=READ,EXECUTE": `"wf_open"`, "?access=EXECUTE,%20DELETE": ""} { // one value listing several, as Spring binds a List
		if defs := runner.must(200, "GET", "/api/metadata/workflow"+q, ""); (want == "") != (defs == "[]") || !strings.Contains(defs, want) || strings.Contains(defs, `"wf_closed"`) {
			t.Fatalf("runner's definitions %s = %.500s, want %s", q, defs, want)
		}
	}
	for q, want := range map[string]string{"?access=EXECUTE": `"task_a"`, "?access=DELETE": ""} {
		if defs := w.principals["worker"].must(200, "GET", "/api/metadata/taskdefs"+q, ""); (want == "") != (defs == "[]") || !strings.Contains(defs, want) || strings.Contains(defs, `"task_b"`) {
			t.Fatalf("worker's task definitions %s = %.500s, want %s", q, defs, want)
		}
	}
	for _, path := range []string{"/api/metadata/workflow?access=OWN", "/api/metadata/taskdefs?access=read"} {
		if got := runner.must(400, "GET", path, ""); !strings.Contains(got, "access") {
			t.Fatalf("%s answered %s", path, got)
		}
	}
	// worker may read task_a (EXECUTE), not task_b.
	for _, name := range []string{"task_a", "task_b"} {
		send(t, w.admin, "PUT", "/api/metadata/task/"+name+"/tags", `[{"key":"kind","value":"demo"}]`)
	}
	for _, q := range []string{"", "?tagKey=kind&tagValue=demo", "?tagValue=demo&metadata=true"} {
		defs := w.principals["worker"].must(200, "GET", "/api/metadata/taskdefs"+q, "")
		if !strings.Contains(defs, `"task_a"`) || strings.Contains(defs, `"task_b"`) || strings.Contains(q, "metadata=true") != strings.Contains(defs, `"kind"`) {
			t.Fatalf("worker's task definitions %s = %.500s", q, defs)
		}
	}
	var res conductor.SearchResult[conductor.WorkflowSummary]
	if err := json.Unmarshal([]byte(runner.must(200, "GET", "/api/workflow/search?size=100", "")), &res); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, s := range res.Results {
		ids = append(ids, s.WorkflowID)
	}
	slices.Sort(ids)
	want := []string{w.open, w.runnerStart}
	slices.Sort(want)
	if res.TotalHits != 2 || !slices.Equal(ids, want) {
		t.Fatalf("runner's search = %d %v, want %v", res.TotalHits, ids, want)
	}
	// A paging parameter's refusal quotes a bounded part of it.
	if got := runner.must(400, "GET", "/api/workflow/search?size="+strings.Repeat("9", 100_000), ""); len(got) > 1000 || !strings.Contains(got, "size=") {
		t.Fatalf("a long size was refused in %d bytes: %.300s", len(got), got)
	}
	if got := w.principals["none"].must(200, "GET", "/api/workflow/search", ""); !strings.Contains(got, `"totalHits":0`) {
		t.Fatalf("a caller without access searched %s", got)
	}
	if names := tagged.must(200, "GET", "/api/secrets", ""); names != `["sec_open"]` {
		t.Fatalf("tagged's secrets = %s", names)
	}
	if running := runner.must(200, "GET", "/api/workflow/running/wf_closed", ""); running != "[]" {
		t.Fatalf("runner sees running wf_closed executions: %s", running)
	}
}

// For a caller who may not see it, an execution that exists and one that
// does not get the same answer, and a secret it may not read the same as
// one that does not exist.
func TestNotVisibleReadsAsNotFound(t *testing.T) {
	t.Parallel()
	w := newAuthzWorld(t)
	runner := w.principals["runner"]
	const missing = "00000000-0000-0000-0000-000000000000"
	for _, path := range []string{"/api/workflow/%s", "/api/workflow/%s/status", "/api/workflow/%s/tasks"} {
		a := runner.do("GET", fmt.Sprintf(path, w.shut), "")
		b := runner.do("GET", fmt.Sprintf(path, missing), "")
		if a.status != b.status || strings.ReplaceAll(a.body, w.shut, "ID") != strings.ReplaceAll(b.body, missing, "ID") {
			t.Errorf("%s: hidden %d %s vs missing %d %s", path, a.status, a.body, b.status, b.body)
		}
	}
	a := runner.do("GET", "/api/secrets/sec_closed", "")
	b := runner.do("GET", "/api/secrets/sec_missing", "")
	if a.status != b.status || strings.ReplaceAll(a.body, "sec_closed", "S") != strings.ReplaceAll(b.body, "sec_missing", "S") {
		t.Errorf("secret: unreadable %d %s vs missing %d %s", a.status, a.body, b.status, b.body)
	}
}

// METADATA_API is a gate, not a permission: any USER may create an
// application and give it the role, so the role alone must reach no
// definition the application did not create or hold a grant on — else it
// could rewrite an admin's workflow to send the admin's secrets away, or
// take over a task queue by registering its definition again.
func TestSelfAssignedMetadataAPI(t *testing.T) {
	t.Parallel()
	_, base, token := nodetest.StartSecure(t)
	admin := client{t, base, token}
	send(t, admin, "POST", "/api/metadata/taskdefs", `[{"name":"charge"}]`)
	send(t, admin, "POST", "/api/metadata/workflow", `{"name":"payout","tasks":[{"name":"charge","taskReferenceName":"c"}]}`)
	_, _, _, userTok := newApp(t, admin, "a_user", "USER")
	_, _, _, appTok := newApp(t, client{t, base, userTok}, "sneaky", "METADATA_API", "WORKER")
	app := client{t, base, appTok}
	for _, req := range [][3]string{
		{"POST", "/api/metadata/workflow?overwrite=true", `{"name":"payout","version":1,"tasks":[{"name":"other","taskReferenceName":"o"}]}`},
		{"PUT", "/api/metadata/workflow", `[{"name":"payout","version":1,"tasks":[{"name":"other","taskReferenceName":"o"}]}]`},
		{"DELETE", "/api/metadata/workflow/payout/1", ""},
		{"PUT", "/api/metadata/workflow/payout/rateLimit", `{"concurrentExecLimit":1}`},
		{"DELETE", "/api/metadata/workflow/payout/rate-limit", ""},
		{"DELETE", "/api/metadata/taskdefs/charge", ""},
		{"PUT", "/api/metadata/taskdefs", `{"name":"charge","retryCount":0}`},
		{"GET", "/api/metadata/workflow/payout", ""},
	} {
		if r := app.do(req[0], req[1], req[2]); r.status != 403 {
			t.Errorf("%s %s: %d %s, want 403", req[0], req[1], r.status, r.body)
		}
	}
	// What it creates, it may change.
	send(t, app, "POST", "/api/metadata/workflow", `{"name":"own_flow","tasks":[{"name":"charge","taskReferenceName":"c"}]}`)
	send(t, app, "POST", "/api/metadata/workflow?overwrite=true", `{"name":"own_flow","version":1,"description":"changed","tasks":[{"name":"charge","taskReferenceName":"c"}]}`)
	send(t, app, "PUT", "/api/metadata/workflow/own_flow/rateLimit", `{"concurrentExecLimit":1}`)
}

// METADATA_API gates changes to definitions, not their executions: an
// application granted DELETE and EXECUTE on a definition removes its runs
// as a user holding those grants does.
func TestApplicationRemovesExecutionsWithoutMetadataAPI(t *testing.T) {
	t.Parallel()
	_, base, token := nodetest.StartSecure(t)
	admin := client{t, base, token}
	send(t, admin, "POST", "/api/metadata/workflow", `{"name":"nightly","tasks":[{"name":"pause","taskReferenceName":"p","type":"WAIT"}]}`)
	opsID, _, _, opsTok := newApp(t, admin, "ops", "WORKER")
	send(t, admin, "POST", "/api/auth/authorization", fmt.Sprintf(grantTemplate, opsID, "WORKFLOW_DEF", "nightly", `["DELETE","EXECUTE"]`))
	id := send(t, admin, "POST", "/api/workflow/nightly", `{}`)
	ops := client{t, base, opsTok}
	if r := ops.do("DELETE", "/api/workflow/"+id+"/remove?archiveWorkflow=false", ""); r.status/100 != 2 {
		t.Fatalf("remove: %d %s", r.status, r.body)
	}
	if r := admin.do("GET", "/api/workflow/"+id, ""); r.status != 404 {
		t.Errorf("removed workflow reads %d %s", r.status, r.body)
	}
}

// A listing of secrets needs READ on each, whatever other access it asks
// for: a USER holds CREATE on every name.
func TestSecretListingNeedsRead(t *testing.T) {
	t.Parallel()
	_, base, token := nodetest.StartSecure(t)
	admin := client{t, base, token}
	send(t, admin, "PUT", "/api/secrets/admins_only", "hidden-value-1")
	_, _, _, userTok := newApp(t, admin, "a_user", "USER")
	user := client{t, base, userTok}
	send(t, user, "PUT", "/api/secrets/users_own", "own-value-1")
	for _, path := range []string{"/api/secrets-v2?access=CREATE", "/api/secrets-v2", "/api/secrets?access=CREATE&access=UPDATE"} {
		body := send(t, user, "GET", path, "")
		if strings.Contains(body, "admins_only") || !strings.Contains(body, "users_own") {
			t.Errorf("GET %s = %s", path, body)
		}
	}
	// A write refused says the same whether the secret exists or not.
	_, _, _, workerTok := newApp(t, admin, "a_worker", "WORKER")
	worker := client{t, base, workerTok}
	existing, missing := worker.do("PUT", "/api/secrets/admins_only", "x"), worker.do("PUT", "/api/secrets/no_such_secret", "x")
	if existing.status != 403 || missing.status != 403 ||
		strings.ReplaceAll(existing.body, "admins_only", "NAME") != strings.ReplaceAll(missing.body, "no_such_secret", "NAME") {
		t.Errorf("refused writes differ: %d %s / %d %s", existing.status, existing.body, missing.status, missing.body)
	}
}

// Completing a task by reference name tells a caller who may not see the
// workflow nothing: not that it exists, not its reference names, not its
// task ids.
func TestTaskByRefHidesTheWorkflow(t *testing.T) {
	t.Parallel()
	_, base, token := nodetest.StartSecure(t)
	admin := client{t, base, token}
	send(t, admin, "POST", "/api/metadata/workflow", `{"name":"private_flow","tasks":[{"name":"gate","taskReferenceName":"gate","type":"WAIT"}]}`)
	id := send(t, admin, "POST", "/api/workflow", `{"name":"private_flow"}`)
	_, _, _, userTok := newApp(t, admin, "a_user", "USER")
	user := client{t, base, userTok}
	var bodies []string
	for _, path := range []string{"/api/tasks/" + id + "/gate/COMPLETED", "/api/tasks/" + id + "/nope/COMPLETED",
		"/api/tasks/no-such-workflow/gate/COMPLETED"} {
		r := user.do("POST", path, "{}")
		if r.status != 404 {
			t.Errorf("POST %s = %d %s, want 404", path, r.status, r.body)
		}
		bodies = append(bodies, strings.ReplaceAll(r.body, "no-such-workflow", id))
	}
	if bodies[0] != bodies[1] || bodies[1] != bodies[2] {
		t.Errorf("the answers differ:\n%s", strings.Join(bodies, "\n"))
	}
}

// A simulation shows no definition the caller may not read: not a
// workflow's, not a task's its inline definition names.
func TestSimulationShowsOnlyReadableDefinitions(t *testing.T) {
	t.Parallel()
	_, base, token := nodetest.StartSecure(t)
	admin := client{t, base, token}
	send(t, admin, "POST", "/api/metadata/taskdefs", `[{"name":"private_task","inputTemplate":{"endpoint":"http://internal-7f3a"}}]`)
	send(t, admin, "POST", "/api/metadata/workflow", `{"name":"private_flow","tasks":[{"name":"private_task","taskReferenceName":"p"}]}`)
	_, _, _, userTok := newApp(t, admin, "a_user", "USER")
	user := client{t, base, userTok}
	named, missing := user.do("POST", "/api/workflow/test", `{"name":"private_flow"}`), user.do("POST", "/api/workflow/test", `{"name":"no_such_flow"}`)
	if named.status != 404 || strings.ReplaceAll(named.body, "private_flow", "NAME") != strings.ReplaceAll(missing.body, "no_such_flow", "NAME") {
		t.Errorf("a definition the caller may not read: %d %s; a missing one: %d %s", named.status, named.body, missing.status, missing.body)
	}
	inline := user.do("POST", "/api/workflow/test",
		`{"name":"mine","workflowDef":{"name":"mine","tasks":[{"name":"private_task","taskReferenceName":"p"}]}}`)
	if inline.status != 200 || strings.Contains(inline.body, "internal-7f3a") {
		t.Errorf("inline definition naming a task the caller may not read: %d %s", inline.status, inline.body)
	}
	if got := send(t, admin, "POST", "/api/workflow/test", `{"name":"private_flow"}`); !strings.Contains(got, "internal-7f3a") {
		t.Errorf("the admin's simulation lacks the task's definition: %s", got)
	}
}

// A synchronous answer (updateState, a signal) shows a blocking
// sub-workflow only to a caller who may read it; to another it answers as
// when nothing blocks: the strategy asked for, with the target workflow
// or (the task strategies) no task.
func TestSyncAnswerHidesUnreadableChild(t *testing.T) {
	t.Parallel()
	_, base, token := nodetest.StartSecure(t)
	admin := client{t, base, token}
	send(t, admin, "POST", "/api/metadata/workflow", `{"name":"zz_child","tasks":[{"name":"hold","taskReferenceName":"hold","type":"WAIT","inputParameters":{"note":"child-only-data-55"}}]}`)
	send(t, admin, "POST", "/api/metadata/workflow", `{"name":"zz_parent","tasks":[{"name":"kid","taskReferenceName":"kid","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"zz_child"}}]}`)
	runnerID, _, _, runnerTok := newApp(t, admin, "runner")
	send(t, admin, "POST", "/api/auth/authorization", fmt.Sprintf(grantTemplate, runnerID, "WORKFLOW_DEF", "zz_parent", `["READ","EXECUTE"]`))
	runner := client{t, base, runnerTok}
	parent := send(t, admin, "POST", "/api/workflow", `{"name":"zz_parent"}`)
	// The child waits: its WAIT task is where a blocking answer stops.
	var child string
	testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() error {
		var wf conductor.Workflow
		if err := json.Unmarshal([]byte(send(t, admin, "GET", "/api/workflow/"+parent, "")), &wf); err != nil {
			return err
		}
		if len(wf.Tasks) == 0 || wf.Tasks[0].SubWorkflowID == "" {
			return fmt.Errorf("no child yet")
		}
		child = wf.Tasks[0].SubWorkflowID
		if r := admin.do("GET", "/api/workflow/"+child, ""); r.status != 200 || !strings.Contains(r.body, `"status":"IN_PROGRESS"`) {
			return fmt.Errorf("child not waiting yet: %d %s", r.status, r.body)
		}
		return nil
	})
	for _, strategy := range []string{"BLOCKING_WORKFLOW", "BLOCKING_TASK", "BLOCKING_TASK_INPUT", "BLOCKING_TASK_LIST"} {
		mine := send(t, runner, "POST", "/api/workflow/"+parent+"/state?returnStrategy="+strategy, `{}`)
		// The parent's own task names its child, as every read of it does.
		if strings.Contains(mine, `"workflowId":"`+child) || strings.Contains(mine, "child-only-data-55") ||
			!strings.Contains(mine, `"responseType":"`+strategy+`"`) || strings.Contains(mine, `"blockingTaskId"`) ||
			(strategy != "BLOCKING_WORKFLOW" && strings.Contains(mine, `"taskId"`)) {
			t.Errorf("%s as runner: %s", strategy, mine)
		}
		if all := send(t, admin, "POST", "/api/workflow/"+parent+"/state?returnStrategy="+strategy, `{}`); !strings.Contains(all, `"workflowId":"`+child) {
			t.Errorf("%s as admin does not show the blocking child: %s", strategy, all)
		}
	}
}

// slowWrite sends method path as c with a body it writes only after the
// server began reading it (past the handler's access check), and after
// meanwhile() ran. It returns the answer.
func (c client) slowWrite(method, path, body string, meanwhile func()) response {
	c.t.Helper()
	pr, pw := io.Pipe()
	reading := make(chan struct{})
	trace := &httptrace.ClientTrace{Got100Continue: func() { close(reading) }}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), method, c.base+path, pr)
	if err != nil {
		c.t.Fatal(err)
	}
	req.ContentLength = int64(len(body))
	req.Header.Set("Content-Type", "text/plain")
	req.Header.Set("Expect", "100-continue")
	req.Header.Set("X-Authorization", c.token)
	answered := make(chan response, 1)
	go func() {
		resp, err := (&http.Transport{ExpectContinueTimeout: time.Minute}).RoundTrip(req)
		if err != nil {
			answered <- response{status: -1, body: err.Error()}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		answered <- response{status: resp.StatusCode, body: string(b)}
	}()
	select {
	case <-reading:
	case r := <-answered:
		c.t.Fatalf("%s %s answered before reading its body: %d %s", method, path, r.status, r.body)
	}
	meanwhile()
	if _, err := pw.Write([]byte(body)); err != nil {
		c.t.Fatal(err)
	}
	pw.Close()
	return <-answered
}

// A write is checked and applied on one state of its target: one whose
// target changed while its body was on its way (created, re-created by
// another) is refused, not applied with access its writer lacks on the new
// state.
func TestWriteCheckedOnTheStateItChanges(t *testing.T) {
	t.Parallel()
	_, base, token := nodetest.StartSecure(t)
	admin := client{t, base, token}
	userID, _, _, userTok := newApp(t, admin, "a_user", "USER")
	user := client{t, base, userTok}

	// CREATE was checked; by the time the value arrives the name is the
	// admin's, which the user may not update.
	for _, path := range []string{"/api/secrets/prod_db", "/api/environment/api_url"} {
		got := user.slowWrite("PUT", path, "users-value", func() { send(t, admin, "PUT", path, "admins-value") })
		if got.status != http.StatusConflict {
			t.Errorf("PUT %s over the admin's new value: %d %s, want 409", path, got.status, got.body)
		}
		if v := send(t, admin, "GET", path, ""); v != "admins-value" {
			t.Errorf("%s holds %q after the user's write, want the admin's value", path, v)
		}
	}
	// UPDATE was checked on the user's own secret (a tag grants READ); the
	// admin re-created the name meanwhile: the tag must not land on it.
	send(t, admin, "POST", "/api/auth/authorization", fmt.Sprintf(grantTemplate, userID, "TAG", "team:x", `["READ"]`))
	send(t, user, "PUT", "/api/secrets/shared_name", "users-own")
	got := user.slowWrite("PUT", "/api/secrets/shared_name/tags", `[{"key":"team","value":"x"}]`, func() {
		send(t, admin, "DELETE", "/api/secrets/shared_name", "")
		send(t, admin, "PUT", "/api/secrets/shared_name", "admins-value-77")
	})
	if got.status != http.StatusConflict {
		t.Errorf("tags PUT on the re-created secret: %d %s, want 409", got.status, got.body)
	}
	if r := user.do("GET", "/api/secrets/shared_name", ""); r.status != http.StatusForbidden || strings.Contains(r.body, "admins-value-77") {
		t.Errorf("the user reads the admin's secret: %d %s", r.status, r.body)
	}
	// The same of a schedule's tags, added or removed.
	send(t, user, "POST", "/api/metadata/workflow", `{"name":"users_flow","tasks":[{"name":"pause","taskReferenceName":"p","type":"WAIT"}]}`)
	const schedule = `{"name":"shared_sched","cronExpression":"0 0 0 1 1 ?","paused":true,"startWorkflowRequest":{"name":"users_flow"%s}}`
	send(t, user, "POST", "/api/scheduler/schedules", fmt.Sprintf(schedule, ""))
	for _, method := range []string{"PUT", "DELETE"} {
		got := user.slowWrite(method, "/api/scheduler/schedules/shared_sched/tags", `[{"key":"team","value":"x"}]`, func() {
			send(t, admin, "DELETE", "/api/scheduler/schedules/shared_sched", "")
			send(t, admin, "POST", "/api/scheduler/schedules", fmt.Sprintf(schedule, `,"input":{"note":"admins-input-77"}`))
		})
		if got.status != http.StatusConflict {
			t.Errorf("tags %s on the re-created schedule: %d %s, want 409", method, got.status, got.body)
		}
		if r := user.do("GET", "/api/scheduler/schedules/shared_sched", ""); r.status != http.StatusForbidden || strings.Contains(r.body, "admins-input-77") {
			t.Fatalf("the user reads the admin's schedule: %d %s", r.status, r.body)
		}
		// The user's own, tagged, for the removal.
		send(t, admin, "DELETE", "/api/scheduler/schedules/shared_sched", "")
		send(t, user, "POST", "/api/scheduler/schedules", fmt.Sprintf(schedule, ""))
		send(t, user, "PUT", "/api/scheduler/schedules/shared_sched/tags", `[{"key":"team","value":"x"}]`)
	}
	// UPDATE on an application was checked through its tag, which the
	// admin removed meanwhile: the user's tags must not put it back.
	send(t, admin, "POST", "/api/auth/authorization", fmt.Sprintf(grantTemplate, userID, "TAG", "team:apps", `["UPDATE"]`))
	appID, _, _, _ := newApp(t, admin, "tagged_app", "WORKER")
	const appTag = `[{"key":"team","value":"apps"}]`
	send(t, admin, "PUT", "/api/applications/"+appID+"/tags", appTag)
	got = user.slowWrite("PUT", "/api/applications/"+appID+"/tags", appTag, func() {
		send(t, admin, "DELETE", "/api/applications/"+appID+"/tags", appTag)
	})
	if got.status != http.StatusConflict {
		t.Errorf("tags PUT on the application untagged meanwhile: %d %s, want 409", got.status, got.body)
	}
	if r := user.do("POST", "/api/applications/"+appID+"/accessKeys", ""); r.status != http.StatusForbidden {
		t.Errorf("the user makes a key of the application it lost: %d %s", r.status, r.body)
	}
}

// secretSource tells the Authorizer the creators and tags of secrets and
// environment values from one engine's read model, as the node wires it.
type secretSource struct {
	s   *secrets.Store
	env *secrets.Env
}

func (src secretSource) Describe(ctx context.Context, t auth.Target) ([]string, string, error) {
	var creator string
	var tags []conductor.Tag
	var err error
	if t.Type == auth.TargetEnvVariable {
		creator, tags, err = src.env.Access(ctx, t.ID)
	} else {
		creator, tags, err = src.s.Access(ctx, t.ID)
	}
	names, err := tagStrings(tags, err)
	return names, creator, err
}

func (src secretSource) TagsOf(ctx context.Context, t auth.Target) ([]string, error) {
	tags, _, err := src.Describe(ctx, t)
	return tags, err
}

// secretsEngine is one engine's secrets over a shared log: its own read
// model and key cache.
type secretsEngine struct {
	pebble *projections.Store
	s      *secrets.Store
	env    *secrets.Env
}

// newSecretsEngine opens an engine on l. running: its read model follows
// the log (and its writes wait for it); otherwise it stays as catchUp
// leaves it, as on an engine whose read model lags.
func newSecretsEngine(tb testing.TB, l *eventlog.Log, mk *secrets.MasterKey, running bool) (*secretsEngine, *projections.Runner) {
	tb.Helper()
	keys, err := secrets.OpenKeys(testutil.Context(tb, 30*time.Second), l.JetStream(), mk, secrets.KeysOptions{Logger: testutil.Logger(tb)})
	if err != nil {
		tb.Fatal(err)
	}
	e := &secretsEngine{pebble: testutil.OpenStore(tb)}
	var runner *projections.Runner
	var w secrets.Waiter
	if running {
		runner = testutil.RunProjection(tb, l, e.pebble, secrets.Projection{}, projections.RunnerConfig{Stream: eventlog.Secrets.Name})
		w = runner
	}
	opts := secrets.Options{Logger: testutil.Logger(tb)}
	e.s, e.env = secrets.New(l, e.pebble, w, keys, opts), secrets.NewEnv(l, e.pebble, w, opts)
	return e, runner
}

// catchUp runs the engine's read model until it has applied seq, then
// stops it.
func (e *secretsEngine) catchUp(t *testing.T, l *eventlog.Log, seq uint64) {
	t.Helper()
	testutil.CatchUpOnce(t, l, e.pebble, secrets.Projection{}, projections.RunnerConfig{Stream: eventlog.Secrets.Name}, seq)
}

// serve serves the secrets and environment API of e, with the real
// Authorizer reading e's read model. The user holds role USER and no
// grant: it may delete what it created, and nothing the admin did.
func (e *secretsEngine) serve(t *testing.T) string {
	return e.serveWith(t, secretSource{e.s, e.env})
}

// serveWith is serve with an Authorizer that reads the creators and tags
// of secrets and environment values from src.
func (e *secretsEngine) serveWith(t *testing.T, src any) string {
	t.Helper()
	authz := auth.NewAuthorizer(&fixedGrants{}) // no grants
	authz.Register(auth.TargetSecret, src)
	authz.Register(auth.TargetEnvVariable, src)
	srv := httptest.NewServer(api.New(api.Deps{
		Logger:      testutil.Logger(t),
		Secrets:     api.SecretStore{Store: e.s},
		Environment: api.EnvStore{Env: e.env},
		Authorizer:  authz,
		Tokens: tokenPrincipals{
			"user-token": {ID: pinUser, Roles: []string{auth.RoleUser}},
		},
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// valueKind is a secret or an environment value named "db" of an engine,
// as the tests of the API's checked reads and deletes write and read it.
type valueKind struct {
	name, path string
	put        func(ctx context.Context, e *secretsEngine, value, by string) error
	del        func(ctx context.Context, e *secretsEngine) error
	get        func(ctx context.Context, e *secretsEngine) (string, error)
}

var valueKinds = []valueKind{{
	name: "secret", path: "/api/secrets/db",
	put: func(ctx context.Context, e *secretsEngine, value, by string) error {
		_, err := e.s.Put(ctx, "db", []byte(value), by)
		return err
	},
	del: func(ctx context.Context, e *secretsEngine) error { return e.s.Delete(ctx, "db", pinAdmin) },
	get: func(ctx context.Context, e *secretsEngine) (string, error) {
		v, _, err := e.s.Resolve(ctx, "db")
		return string(v), err
	},
}, {
	name: "environment value", path: "/api/environment/db",
	put: func(ctx context.Context, e *secretsEngine, value, by string) error {
		return e.env.Put(ctx, "db", value, by)
	},
	del: func(ctx context.Context, e *secretsEngine) error {
		_, err := e.env.Delete(ctx, "db", pinAdmin)
		return err
	},
	get: func(ctx context.Context, e *secretsEngine) (string, error) { return e.env.Get(ctx, "db") },
}}

// A DELETE applies to the secret or environment value its access was
// checked on. On an engine whose read model lags, the user is allowed to
// delete as the creator of the value that read model holds; another
// engine deleted it meanwhile and the admin created the name again. The
// DELETE is refused as stale (409, retryable) and the admin's value stays:
// it was deleted, and a secret's data key destroyed for good, as the
// engine decided again on the log's state; an environment value's DELETE
// answered the admin's value. Nothing changed meanwhile, the DELETE goes
// through.
func TestDeleteAppliesToTheCheckedValue(t *testing.T) {
	t.Parallel()
	const usersValue, adminsValue = "users-value-1", "admins-value-77"
	for _, k := range valueKinds {
		for _, tc := range []struct {
			name      string
			recreated bool
		}{
			{"unchanged", false},
			{"deleted and created again by the admin", true},
		} {
			t.Run(k.name+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				ctx := testutil.Context(t, time.Minute)
				l := testutil.OpenLog(t, "")
				mk := secrets.GenerateMasterKey()
				fresh, runner := newSecretsEngine(t, l, mk, true)
				if err := k.put(ctx, fresh, usersValue, pinUser); err != nil {
					t.Fatal(err)
				}
				stale, _ := newSecretsEngine(t, l, mk, false)
				stale.catchUp(t, l, runner.Checkpoint())
				if tc.recreated {
					if err := k.del(ctx, fresh); err != nil {
						t.Fatal(err)
					}
					if err := k.put(ctx, fresh, adminsValue, pinAdmin); err != nil {
						t.Fatal(err)
					}
				}

				got := client{t, stale.serve(t), "user-token"}.do("DELETE", k.path, "")
				if strings.Contains(got.body, adminsValue) {
					t.Fatalf("DELETE answered the admin's value: %d %s", got.status, got.body)
				}
				// The fresh engine reads its own read model, which applies
				// the stale engine's DELETE when it gets there.
				last, err := l.StreamLastSeq(ctx, eventlog.Secrets.Name)
				if err != nil {
					t.Fatal(err)
				}
				if err := runner.WaitFor(ctx, last); err != nil {
					t.Fatal(err)
				}
				v, err := k.get(ctx, fresh)
				if !tc.recreated {
					if got.status != http.StatusOK || !errors.Is(err, fault.ErrNotFound) {
						t.Fatalf("DELETE of the user's own value: %d %s; afterwards %q %v", got.status, got.body, v, err)
					}
					return
				}
				var body struct {
					Retryable bool `json:"retryable"`
				}
				_ = json.Unmarshal([]byte(got.body), &body)
				if got.status != http.StatusConflict || !body.Retryable {
					t.Errorf("DELETE checked on the user's value, of the admin's: %d %s, want 409 retryable", got.status, got.body)
				}
				if err != nil || v != adminsValue {
					t.Errorf("the admin's value after the user's DELETE: %q %v", v, err)
				}
			})
		}
	}
}
