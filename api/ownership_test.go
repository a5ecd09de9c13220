package api_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/flowvault/flowvault/internal/testutil"
)

// nameClaim is a registration of a workflow name by a principal, and the
// status it answers.
type nameClaim struct {
	name, workflow string
	by             client
	status         int
}

// register registers body as c.by and checks the answer; a refusal must
// say why (it holds why) and store nothing the refused principal can read.
// It returns the refusal, "" when c is none.
func (c nameClaim) register(t *testing.T, body, why string) string {
	t.Helper()
	r := c.by.do("POST", "/api/metadata/workflow", body)
	if r.status != c.status {
		t.Fatalf("register %s = %d %s, want %d", c.workflow, r.status, r.body, c.status)
	}
	if c.status != http.StatusForbidden {
		return ""
	}
	if !strings.Contains(r.body, why) {
		t.Fatalf("refusal %s does not say why (%q)", r.body, why)
	}
	if got := c.by.do("GET", "/api/metadata/workflow/"+c.workflow, ""); got.status == http.StatusOK {
		t.Fatalf("refused definition stored: %s", got.body)
	}
	return r.body
}

// An execution belongs to its workflow's name, and the creator of the
// name's definition reads and operates every execution of it. So a
// principal may not create the definition of a name that executions others
// started carry (of an inline definition, or of a definition since
// deleted): it would take them over. Names only its own executions carry,
// and free names, stay its to create; admins and metadata managers may
// create any.
func TestWorkflowNameTakeoverRefused(t *testing.T) {
	t.Parallel()
	admin, principal := securePrincipals(t)
	_, alice := principal("alice", "USER")
	_, bob := principal("bob", "USER")
	_, meta := principal("meta", "METADATA_MANAGER")

	inline := func(name string) string {
		return fmt.Sprintf(`{"name":%q,"input":{"customer":"ACME-confidential"},"workflowDef":{"name":%q,"tasks":[{"name":"w","taskReferenceName":"w","type":"WAIT"}]}}`, name, name)
	}
	def := func(name string) string {
		return fmt.Sprintf(`{"name":%q,"tasks":[{"name":"w","taskReferenceName":"w","type":"WAIT"}]}`, name)
	}
	runs := map[string]string{}
	for _, name := range []string{"inflow", "inflow_meta", "inflow_admin", "own_inline"} {
		runs[name] = send(t, alice, "POST", "/api/workflow", inline(name))
	}
	// alice's registered definition, deleted by an admin after she ran it.
	send(t, alice, "POST", "/api/metadata/workflow", def("payroll"))
	runs["payroll"] = send(t, alice, "POST", "/api/workflow", `{"name":"payroll","input":{"salary":"123456"}}`)
	send(t, admin, "DELETE", "/api/metadata/workflow/payroll/1", "")

	for _, tc := range []nameClaim{
		{name: "another's inline runs", workflow: "inflow", by: bob, status: http.StatusForbidden},
		{name: "another's runs of a deleted definition", workflow: "payroll", by: bob, status: http.StatusForbidden},
		{name: "own inline runs", workflow: "own_inline", by: alice, status: http.StatusNoContent},
		{name: "free name", workflow: "fresh", by: bob, status: http.StatusNoContent},
		{name: "metadata manager", workflow: "inflow_meta", by: meta, status: http.StatusNoContent},
		{name: "admin", workflow: "inflow_admin", by: admin, status: http.StatusNoContent},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.register(t, def(tc.workflow), "executions that other principals started") == "" {
				return
			}
			if run, ok := runs[tc.workflow]; ok {
				if got := tc.by.do("GET", "/api/workflow/"+run, ""); got.status != http.StatusNotFound {
					t.Fatalf("another's run reads %d %s", got.status, got.body)
				}
				if got := tc.by.do("DELETE", "/api/workflow/"+run, ""); got.status != http.StatusNotFound {
					t.Fatalf("another's run terminated: %d %s", got.status, got.body)
				}
			}
			body := send(t, tc.by, "GET", "/api/workflow/search?query="+strings.ReplaceAll("workflowType="+tc.workflow, "=", "%3D"), "")
			if strings.Contains(body, "ACME") || strings.Contains(body, "123456") || !strings.Contains(body, `"totalHits":0`) {
				t.Fatalf("search shows another's runs: %s", body)
			}
		})
	}
}

// A failure workflow starts, unasked, as the failed run's creator and with
// its input, _secrets opened for its tasks; a sub-workflow runs as its
// parent's creator. So a principal may not create the definition of a name
// that another principal's definition starts by that name: it would
// receive those runs' data. Whoever wrote
// every definition naming it, admins and metadata managers may.
func TestStartedNameTakeoverRefused(t *testing.T) {
	t.Parallel()
	admin, principal := securePrincipals(t)
	_, alice := principal("alice", "USER", "METADATA_API")
	_, bob := principal("bob", "USER")
	_, meta := principal("meta", "METADATA_MANAGER")
	def := func(name, failure string) string {
		return fmt.Sprintf(`{"name":%q,"failureWorkflow":%q,"tasks":[{"name":"w","taskReferenceName":"w","type":"WAIT"}]}`, name, failure)
	}
	for _, failure := range []string{"pay_cleanup", "pay_cleanup_meta", "pay_cleanup_admin"} {
		send(t, admin, "POST", "/api/metadata/workflow", def("pay_"+failure, failure))
	}
	// Children started by a name the parent fixes, nested in a fork, a
	// switch and an inline definition, forked by a dynamic fork, run by a
	// DYNAMIC task; and one named by an expression.
	send(t, admin, "POST", "/api/metadata/workflow", `{"name":"parent","tasks":[
	 {"name":"f","taskReferenceName":"f","type":"FORK_JOIN","forkTasks":[[
	  {"name":"s","taskReferenceName":"s","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"child_sub"}}]]},
	 {"name":"j","taskReferenceName":"j","type":"JOIN","joinOn":["s"]},
	 {"name":"c","taskReferenceName":"c","type":"SWITCH","evaluatorType":"value-param","expression":"x","inputParameters":{"x":"a"},
	  "decisionCases":{"a":[{"name":"st","taskReferenceName":"st","type":"START_WORKFLOW","inputParameters":{"startWorkflow":{"name":"child_start"}}}]}},
	 {"name":"i","taskReferenceName":"i","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"inline","workflowDefinition":{"name":"inline","tasks":[
	  {"name":"n","taskReferenceName":"n","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"child_nested"}}],"failureWorkflow":"child_inline_failure"}}},
	 {"name":"d","taskReferenceName":"d","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"${workflow.input.child}"}},
	 {"name":"fd","taskReferenceName":"fd","type":"FORK_JOIN_DYNAMIC","inputParameters":{"forkTaskWorkflow":"child_forked","forkTaskInputs":[{"a":1}]}},
	 {"name":"jd","taskReferenceName":"jd","type":"JOIN"},
	 {"name":"fl","taskReferenceName":"fl","type":"FORK_JOIN_DYNAMIC","dynamicForkTasksParam":"ts","dynamicForkTasksInputParamName":"ins",
	  "inputParameters":{"ins":{},"ts":[{"name":"l","taskReferenceName":"l","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"child_listed"}}]}},
	 {"name":"jl","taskReferenceName":"jl","type":"JOIN"},
	 {"name":"dy","taskReferenceName":"dy","type":"DYNAMIC","dynamicTaskNameParam":"tn","inputParameters":{"tn":"SUB_WORKFLOW"},
	  "subWorkflowParam":{"name":"child_dynamic"}}]}`)
	const why = "starts a workflow by that name"
	// alice's own pair, its failure workflow deleted since.
	send(t, alice, "POST", "/api/metadata/workflow", def("own_cleanup", ""))
	send(t, alice, "POST", "/api/metadata/workflow", def("own_pay", "own_cleanup"))
	send(t, alice, "DELETE", "/api/metadata/workflow/own_cleanup/1", "")

	for _, tc := range []nameClaim{
		{name: "another's failure workflow", workflow: "pay_cleanup", by: bob, status: http.StatusForbidden},
		{name: "own failure workflow", workflow: "own_cleanup", by: alice, status: http.StatusNoContent},
		{name: "metadata manager", workflow: "pay_cleanup_meta", by: meta, status: http.StatusNoContent},
		{name: "admin", workflow: "pay_cleanup_admin", by: admin, status: http.StatusNoContent},
		{name: "another's SUB_WORKFLOW child", workflow: "child_sub", by: bob, status: http.StatusForbidden},
		{name: "another's START_WORKFLOW child", workflow: "child_start", by: bob, status: http.StatusForbidden},
		{name: "another's inline definition's child", workflow: "child_nested", by: bob, status: http.StatusForbidden},
		{name: "another's inline definition's failure workflow", workflow: "child_inline_failure", by: bob, status: http.StatusForbidden},
		{name: "another's dynamic fork's children", workflow: "child_forked", by: bob, status: http.StatusForbidden},
		{name: "another's dynamic fork's listed child", workflow: "child_listed", by: bob, status: http.StatusForbidden},
		{name: "another's DYNAMIC child", workflow: "child_dynamic", by: bob, status: http.StatusForbidden},
		{name: "a name no definition fixes", workflow: "child_free", by: bob, status: http.StatusNoContent},
	} {
		t.Run(tc.name, func(t *testing.T) {
			refusal := tc.register(t, def(tc.workflow, ""), why)
			if refusal == "" {
				return
			}
			if strings.Contains(refusal, "pay_pay_cleanup") || strings.Contains(refusal, "parent") {
				t.Fatalf("refusal %s names a definition the caller may not read", refusal)
			}
			if got := admin.do("GET", "/api/metadata/workflow/"+tc.workflow, ""); got.status == http.StatusOK {
				t.Fatalf("refused definition stored: %s", got.body)
			}
		})
	}
}

// An event handler's start_workflow and an incoming webhook name the
// workflows their events and deliveries reach, as a definition names its
// children: a principal that registered such a name first would read what
// every event or delivery hands it (a webhook's payloads). So the names
// they fix are refused to others than an admin or a metadata manager;
// names an expression or an inline definition gives are not foreseen.
func TestHandlerAndWebhookNameTakeoverRefused(t *testing.T) {
	t.Parallel()
	admin, principal := securePrincipals(t)
	_, bob := principal("bob", "USER")
	_, meta := principal("meta", "METADATA_MANAGER")
	send(t, admin, "POST", "/api/event", `[{"name":"eh","event":"nats:orders.new","actions":[
	 {"action":"start_workflow","start_workflow":{"name":"ev_child"}},
	 {"action":"start_workflow","start_workflow":{"name":"${which}"}},
	 {"action":"start_workflow","start_workflow":{"name":"ev_inline","workflowDef":{"name":"ev_inline","tasks":[{"name":"w","taskReferenceName":"w","type":"WAIT"}]}}},
	 {"action":"complete_task","complete_task":{"workflowId":"${wf}","taskRefName":"ev_completed"}}]}]`)
	send(t, admin, "POST", "/api/metadata/webhook", `{"name":"hook","verifier":"HMAC_BASED","headerKey":"X-Sig",
	 "secretValue":"${workflow.secrets.hook_key}","workflowsToStart":{"hook_start":0,"hook_meta":0},"receiverWorkflowNamesToVersions":{"hook_recv":1}}`)
	def := func(name string) string {
		return fmt.Sprintf(`{"name":%q,"tasks":[{"name":"w","taskReferenceName":"w","type":"WAIT"}]}`, name)
	}
	const why = "starts a workflow by that name"
	for _, tc := range []nameClaim{
		{name: "an event handler's start", workflow: "ev_child", by: bob, status: http.StatusForbidden},
		{name: "a webhook's start", workflow: "hook_start", by: bob, status: http.StatusForbidden},
		{name: "a webhook's receiver", workflow: "hook_recv", by: bob, status: http.StatusForbidden},
		{name: "metadata manager", workflow: "hook_meta", by: meta, status: http.StatusNoContent},
		{name: "an inline definition's name", workflow: "ev_inline", by: bob, status: http.StatusNoContent},
		{name: "a task reference, not a start", workflow: "ev_completed", by: bob, status: http.StatusNoContent},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.register(t, def(tc.workflow), why)
		})
	}
}

// UPDATE on a workflow definition registers new versions; it does not
// pass on the name's ownership. The first version's creator keeps full
// access; who registered a later version has what it was granted.
func TestDefinitionOwnerIsTheFirstVersionsCreator(t *testing.T) {
	t.Parallel()
	admin, principal := securePrincipals(t)
	_, alice := principal("alice", "USER", "METADATA_API")
	carlID, carl := principal("carl", "USER", "METADATA_API")

	send(t, alice, "POST", "/api/metadata/workflow", `{"name":"cflow","tasks":[{"name":"w","taskReferenceName":"w","type":"WAIT"}]}`)
	run := send(t, alice, "POST", "/api/workflow/cflow", `{}`)
	send(t, admin, "POST", "/api/auth/authorization", fmt.Sprintf(grantTemplate, carlID, "WORKFLOW_DEF", "cflow", `["UPDATE"]`))
	send(t, carl, "POST", "/api/metadata/workflow", `{"name":"cflow","version":2,"tasks":[{"name":"w2","taskReferenceName":"w2","type":"WAIT"}]}`)

	expectCalls(t, []expectedCall{
		{"the updater may not start", carl, "POST", "/api/workflow/cflow", "{}", http.StatusForbidden},
		{"the updater may not terminate the owner's run", carl, "DELETE", "/api/workflow/" + run, "", http.StatusForbidden},
		{"the updater may not delete a version", carl, "DELETE", "/api/metadata/workflow/cflow/1", "", http.StatusForbidden},
		{"the updater reads", carl, "GET", "/api/metadata/workflow/cflow", "", http.StatusOK},
		{"the owner reads the new version", alice, "GET", "/api/metadata/workflow/cflow?version=2", "", http.StatusOK},
		{"the owner starts", alice, "POST", "/api/workflow/cflow", "{}", http.StatusOK},
	})
	if status := decode[map[string]any](t, send(t, alice, "GET", "/api/workflow/"+run, ""))["status"]; status != "RUNNING" {
		t.Fatalf("the owner's run is %v", status)
	}
	// Nor is ownership passed on when the first version goes: the name's
	// owner stays who registered it first.
	send(t, alice, "DELETE", "/api/metadata/workflow/cflow/1", "")
	expectCalls(t, []expectedCall{
		{"the updater may not start, the first version gone", carl, "POST", "/api/workflow/cflow", "{}", http.StatusForbidden},
		{"the updater may not terminate, the first version gone", carl, "DELETE", "/api/workflow/" + run, "", http.StatusForbidden},
		{"the owner starts, the first version gone", alice, "POST", "/api/workflow/cflow", "{}", http.StatusOK},
	})
}

// An access key is its application's powers. Who may update an
// application (its creator, APPLICATION_MANAGER, a tag grant) may make,
// pause and delete its keys, and delete it, only if it could give every
// role the application holds: else an application manager makes itself
// an admin with a key of an admin application, or locks the admins out.
func TestApplicationKeysNeedTheApplicationsRoles(t *testing.T) {
	t.Parallel()
	admin, principal := securePrincipals(t)
	adminAppID, _ := principal("ops-admin", "ADMIN")
	workerAppID, _ := principal("plain-worker", "WORKER")
	_, manager := principal("manager", "APPLICATION_MANAGER")
	_, creator := principal("creator", "USER", "APPLICATION_CREATOR")
	own := decode[map[string]any](t, creator.must(http.StatusOK, "POST", "/api/applications", `{"name":"mine"}`))["id"].(string)
	send(t, admin, "POST", "/api/applications/"+own+"/roles/WORKFLOW_MANAGER", "")
	adminKey := decode[map[string]any](t, send(t, admin, "POST", "/api/applications/"+adminAppID+"/accessKeys", ""))["id"].(string)

	expectCalls(t, []expectedCall{
		{"manager mints a key of an admin application", manager, "POST", "/api/applications/" + adminAppID + "/accessKeys", "", http.StatusForbidden},
		{"manager pauses an admin application's key", manager, "POST", "/api/applications/" + adminAppID + "/accessKeys/" + adminKey + "/status", "", http.StatusForbidden},
		{"manager deletes an admin application's key", manager, "DELETE", "/api/applications/" + adminAppID + "/accessKeys/" + adminKey, "", http.StatusForbidden},
		{"manager deletes an admin application", manager, "DELETE", "/api/applications/" + adminAppID, "", http.StatusForbidden},
		{"creator mints a key after an admin gave a manager's role", creator, "POST", "/api/applications/" + own + "/accessKeys", "", http.StatusForbidden},
		{"manager mints a key of a worker application", manager, "POST", "/api/applications/" + workerAppID + "/accessKeys", "", http.StatusOK},
		{"admin mints a key of an admin application", admin, "POST", "/api/applications/" + adminAppID + "/accessKeys", "", http.StatusOK},
	})
	keys := send(t, admin, "GET", "/api/applications/"+adminAppID+"/accessKeys", "")
	if !strings.Contains(keys, adminKey) || !strings.Contains(keys, `"ACTIVE"`) {
		t.Fatalf("the admin application's key was changed: %s", keys)
	}
}

// A refusal that answers 404, so that a caller cannot probe for ids, is
// still a refusal: the audit trail records it.
func TestHiddenRefusalsAreAudited(t *testing.T) {
	t.Parallel()
	admin, principal := securePrincipals(t)
	_, alice := principal("alice", "USER")
	bobID, bob := principal("bob", "USER")
	run := send(t, alice, "POST", "/api/workflow", `{"name":"secretive","workflowDef":{"name":"secretive","tasks":[{"name":"w","taskReferenceName":"w","type":"WAIT"}]}}`)

	bob.do("DELETE", "/api/workflow/"+run, "").expect(t, http.StatusNotFound)
	testutil.Eventually(t, 10*time.Second, 20*time.Millisecond, func() error {
		trail := send(t, admin, "GET", "/api/audit?principal=app:"+bobID, "")
		for _, e := range auditEntries(t, trail) {
			if e.Action == "access.deny" && e.Target == "WORKFLOW_DEF:secretive" && strings.Contains(e.Detail["path"], run) {
				return nil
			}
		}
		return fmt.Errorf("no refusal of bob's terminate in %s", trail)
	})
}

// expectedCall is a request whose status a test expects.
type expectedCall struct {
	name               string
	by                 client
	method, path, body string
	status             int
}

// expectCalls makes each call, in order, as a subtest. A refusal must
// carry no access key secret.
func expectCalls(t *testing.T, calls []expectedCall) {
	t.Helper()
	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			r := c.by.do(c.method, c.path, c.body)
			if r.status != c.status {
				t.Fatalf("%s %s = %d %s, want %d", c.method, c.path, r.status, r.body, c.status)
			}
			if r.status == http.StatusForbidden && strings.Contains(r.body, `"secret"`) {
				t.Fatalf("a refusal carries a key: %s", r.body)
			}
		})
	}
}

// A name too long to register is refused by validation, saying so, before
// anything looks it up: the answer does not echo a megabyte back.
func TestOverlongWorkflowNameRefusedFirst(t *testing.T) {
	t.Parallel()
	_, principal := securePrincipals(t)
	_, user := principal("long-namer", "USER")
	name := strings.Repeat("n", 1<<20)
	r := user.do("PUT", "/api/metadata/workflow", `[{"name":"`+name+`","tasks":[{"name":"a","taskReferenceName":"a"}]}]`)
	r.expectError(t, http.StatusBadRequest, "")
	if !strings.Contains(r.body, "must be at most 256 bytes") || len(r.body) > 4096 {
		t.Fatalf("the refusal (%d bytes): %.300s", len(r.body), r.body)
	}
}

// A caller who may neither read a definition nor create one learns from a
// refused registration no more than of a free name: the refusal of a name
// taken by a definition, task definition or schedule it may not read is
// the refusal of a free one, its name aside.
func TestRefusedRegistrationDoesNotTellTakenNames(t *testing.T) {
	t.Parallel()
	admin, principal := securePrincipals(t)
	_, eve := principal("eve")
	send(t, admin, "POST", "/api/metadata/workflow", `{"name":"taken_flow","tasks":[{"name":"w","taskReferenceName":"w","type":"WAIT"}]}`)
	send(t, admin, "POST", "/api/metadata/taskdefs", `[{"name":"taken_task"}]`)
	send(t, admin, "POST", "/api/scheduler/schedules",
		`{"name":"taken_sched","cronExpression":"0 0 0 1 1 ?","paused":true,"startWorkflowRequest":{"name":"taken_flow"}}`)
	for _, tc := range []struct{ path, body string }{
		{"/api/metadata/workflow", `{"name":"%s","tasks":[{"name":"w","taskReferenceName":"w","type":"WAIT"}]}`},
		{"/api/metadata/workflow?overwrite=true", `{"name":"%s","tasks":[{"name":"w","taskReferenceName":"w","type":"WAIT"}]}`},
		{"/api/metadata/taskdefs", `[{"name":"%s"}]`},
		{"/api/scheduler/schedules", `{"name":"%s","cronExpression":"0 0 0 1 1 ?","paused":true}`},
	} {
		path, _, _ := strings.Cut(tc.path, "?")
		kind := path[strings.LastIndex(path, "/")+1:]
		taken := map[string]string{"workflow": "taken_flow", "taskdefs": "taken_task", "schedules": "taken_sched"}[kind]
		answer := func(name string) string {
			r := eve.do("POST", tc.path, fmt.Sprintf(tc.body, name))
			if r.status != http.StatusForbidden {
				t.Fatalf("POST %s %s as eve = %d %s, want 403", tc.path, name, r.status, r.body)
			}
			return strings.ReplaceAll(r.body, name, "NAME")
		}
		if a, b := answer(taken), answer("free_"+taken); a != b {
			t.Errorf("POST %s: a taken name is answered\n%s\nand a free one\n%s", tc.path, a, b)
		}
	}
}
