package api_test

import (
	"cmp"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/flowvault/flowvault/internal/nodetest"
	"github.com/flowvault/flowvault/internal/testutil"
)

// securePrincipals starts a secure node and returns its admin's client and
// a function that creates an application with roles and returns its id
// and client.
func securePrincipals(t *testing.T) (client, func(name string, roles ...string) (string, client)) {
	_, base, token := nodetest.StartSecure(t)
	admin := client{t, base, token}
	return admin, func(name string, roles ...string) (string, client) {
		id, _, _, tok := newApp(t, admin, name, roles...)
		return id, client{t, base, tok}
	}
}

// A task that no task definition describes runs on defaults, and the
// creator of a definition may poll the tasks of its name, input and
// resolved secrets included. So a principal may not create the definition
// of a name that someone else's workflows hand to workers: not named by a
// workflow definition it may not update (at any depth), nor by tasks in
// progress of executions others started. Its own workflows' names, free
// names and names of tasks no worker takes stay its to create; admins and
// metadata managers may create any. Bulk and single registration are
// checked alike, and a refused bulk writes nothing.
func TestTaskDefTakeoverRefused(t *testing.T) {
	t.Parallel()
	admin, principal := securePrincipals(t)
	_, alice := principal("alice", "USER")
	_, bob := principal("bob", "USER")
	carolID, carol := principal("carol", "USER")
	daveID, dave := principal("dave", "USER", "METADATA_API") // an application updates definitions only with METADATA_API
	_, meta := principal("meta", "METADATA_MANAGER")

	// alice's workflows use tasks that have no definition, one of them
	// passing her secret to its worker.
	send(t, alice, "PUT", "/api/secrets/alice_key", "alice-secret-value")
	for _, def := range []string{
		`{"name":"wf_alice","tasks":[
			{"name":"a_plain","taskReferenceName":"plain","inputParameters":{"key":"${workflow.secrets.alice_key}"}},
			{"name":"a_http","taskReferenceName":"http","type":"HTTP","inputParameters":{"http_request":{"uri":"http://127.0.0.1:1/","method":"GET"}}},
			{"name":"sw","taskReferenceName":"sw","type":"SWITCH","evaluatorType":"value-param","expression":"x","inputParameters":{"x":"${workflow.input.x}"},
			 "decisionCases":{"a":[{"name":"a_nested","taskReferenceName":"nested"}]},
			 "defaultCase":[{"name":"sub","taskReferenceName":"sub","type":"SUB_WORKFLOW","subWorkflowParam":{"workflowDefinition":
				{"name":"child","tasks":[{"name":"a_inline","taskReferenceName":"inline"}]}}}]},
			{"name":"a_bulk","taskReferenceName":"bulk"},
			{"name":"a_put","taskReferenceName":"put"},
			{"name":"a_admin","taskReferenceName":"admin"},
			{"name":"a_meta","taskReferenceName":"meta"}]}`,
		`{"name":"wf_alice_read","tasks":[{"name":"a_readable","taskReferenceName":"r"}]}`,
		`{"name":"wf_alice_shared","tasks":[{"name":"a_shared","taskReferenceName":"s"}]}`,
	} {
		send(t, alice, "POST", "/api/metadata/workflow", def)
	}
	send(t, bob, "POST", "/api/metadata/workflow", `{"name":"wf_bob","tasks":[{"name":"b_own","taskReferenceName":"b"}]}`)
	send(t, admin, "POST", "/api/auth/authorization", fmt.Sprintf(grantTemplate, carolID, "WORKFLOW_DEF", "wf_alice_read", `["READ"]`))
	send(t, admin, "POST", "/api/auth/authorization", fmt.Sprintf(grantTemplate, daveID, "WORKFLOW_DEF", "wf_alice_shared", `["UPDATE"]`))

	// alice runs a workflow no stored definition shows: its task waits
	// for a worker of a_running. bob runs one of his own the same way, and
	// the admin runs bob's wf_bob: those tasks wait too, but are bob's to
	// route.
	send(t, alice, "POST", "/api/workflow", `{"name":"wf_alice_inline","workflowDef":{"name":"wf_alice_inline",
		"tasks":[{"name":"a_running","taskReferenceName":"run","inputParameters":{"key":"${workflow.secrets.alice_key}"}}]}}`)
	send(t, bob, "POST", "/api/workflow", `{"name":"wf_bob_inline","workflowDef":{"name":"wf_bob_inline",
		"tasks":[{"name":"b_running","taskReferenceName":"run"}]}}`)
	send(t, admin, "POST", "/api/workflow", `{"name":"wf_bob"}`)
	for _, task := range []string{"a_running", "b_running", "b_own"} {
		waiting := "/api/tasks/search?query=" + url.QueryEscape(`taskDefName = "`+task+`" AND status = SCHEDULED`)
		testutil.Eventually(t, 30*time.Second, 20*time.Millisecond, func() error {
			if body := send(t, admin, "GET", waiting, ""); !strings.Contains(body, `"totalHits":1`) {
				return fmt.Errorf("%s not scheduled yet: %s", task, body)
			}
			return nil
		})
	}

	refused := func(more ...string) []string {
		return append([]string{"may not CREATE TASK_DEF:", "METADATA_MANAGEMENT"}, more...)
	}
	for _, tc := range []struct {
		name         string
		by           client
		method, body string
		status       int
		says, hides  []string
		absent       []string // task definitions that must not exist afterwards
	}{
		{name: "other's workflow", by: bob, method: "POST", body: `[{"name":"a_plain"}]`, status: http.StatusForbidden,
			says: refused("a_plain", "1 you may not read"), hides: []string{"wf_alice"}, absent: []string{"a_plain"}},
		{name: "nested in other's SWITCH", by: bob, method: "POST", body: `[{"name":"a_nested"}]`, status: http.StatusForbidden,
			says: refused(), hides: []string{"wf_alice"}, absent: []string{"a_nested"}},
		{name: "other's inline sub-workflow", by: bob, method: "POST", body: `[{"name":"a_inline"}]`, status: http.StatusForbidden,
			says: refused(), hides: []string{"wf_alice"}, absent: []string{"a_inline"}},
		{name: "other's workflow, readable", by: carol, method: "POST", body: `[{"name":"a_readable"}]`, status: http.StatusForbidden,
			says: refused("(wf_alice_read)"), absent: []string{"a_readable"}},
		{name: "other's running task", by: bob, method: "POST", body: `[{"name":"a_running"}]`, status: http.StatusForbidden,
			says: refused("waiting for a worker"), hides: []string{"wf_alice"}, absent: []string{"a_running"}},
		{name: "bulk", by: bob, method: "POST", body: `[{"name":"bulk_free"},{"name":"a_bulk"}]`, status: http.StatusForbidden,
			says: refused("a_bulk"), hides: []string{"wf_alice"}, absent: []string{"bulk_free", "a_bulk"}},
		{name: "PUT", by: bob, method: "PUT", body: `{"name":"a_put"}`, status: http.StatusForbidden,
			says: refused("a_put"), hides: []string{"wf_alice"}, absent: []string{"a_put"}},
		{name: "own workflow, run by another", by: bob, method: "POST", body: `[{"name":"b_own"}]`, status: http.StatusNoContent},
		{name: "own running task", by: bob, method: "POST", body: `[{"name":"b_running"}]`, status: http.StatusNoContent},
		{name: "unused name", by: bob, method: "POST", body: `[{"name":"unused"}]`, status: http.StatusNoContent},
		{name: "unused name, PUT", by: bob, method: "PUT", body: `{"name":"unused_put"}`, status: http.StatusNoContent},
		// Its inputTemplate would add to the HTTP task's request.
		{name: "system task of that name", by: bob, method: "POST", body: `[{"name":"a_http"}]`, status: http.StatusForbidden,
			says: []string{"add to their input"}},
		{name: "workflow the caller may update", by: dave, method: "POST", body: `[{"name":"a_shared"}]`, status: http.StatusNoContent},
		{name: "admin", by: admin, method: "POST", body: `[{"name":"a_admin"}]`, status: http.StatusNoContent},
		{name: "metadata manager", by: meta, method: "POST", body: `[{"name":"a_meta"}]`, status: http.StatusNoContent},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.by.t = t
			r := tc.by.do(tc.method, "/api/metadata/taskdefs", tc.body)
			if tc.status != http.StatusForbidden {
				r.expect(t, tc.status)
				return
			}
			e := r.expectError(t, http.StatusForbidden, "")
			msg, _ := e["message"].(string)
			for _, s := range tc.says {
				if !strings.Contains(msg, s) {
					t.Errorf("message %q lacks %q", msg, s)
				}
			}
			for _, s := range tc.hides {
				if strings.Contains(msg, s) {
					t.Errorf("message %q names %q, which the caller may not read", msg, s)
				}
			}
			a := client{t, admin.base, admin.token}
			for _, name := range tc.absent {
				a.do("GET", "/api/metadata/taskdefs/"+name, "").expectError(t, http.StatusNotFound, name)
			}
		})
	}
}

// The same taking from the other side: a name whose definition another
// principal created first. A workflow that would hand tasks of that name
// to its creator's workers, input and resolved secrets included, is
// refused, registered or inline, unless the caller may READ that
// definition (and so knows whose it is), or an admin or metadata manager
// created it (a shared name), or the caller did.
func TestWorkflowOnAnotherPrincipalsTaskNameRefused(t *testing.T) {
	t.Parallel()
	admin, principal := securePrincipals(t)
	aliceID, alice := principal("alice", "USER")
	_, bob := principal("bob", "USER")
	_, meta := principal("meta", "METADATA_MANAGER")
	send(t, bob, "POST", "/api/metadata/taskdefs", `[{"name":"send_email"},{"name":"granted"},
		{"name":"templated","inputTemplate":{"http_request":{"uri":"http://127.0.0.1:9/bob"}}}]`)
	send(t, meta, "POST", "/api/metadata/taskdefs", `[{"name":"shared_meta"}]`)
	send(t, admin, "POST", "/api/metadata/taskdefs", `[{"name":"shared_admin"}]`)
	send(t, alice, "POST", "/api/metadata/taskdefs", `[{"name":"alice_own"}]`)
	send(t, admin, "POST", "/api/auth/authorization", fmt.Sprintf(grantTemplate, aliceID, "TASK_DEF", "granted", `["READ"]`))

	wf := func(name, task, typ string) string {
		return fmt.Sprintf(`{"name":%q,"tasks":[{"name":%q,"taskReferenceName":"t","type":%q}]}`, name, task, typ)
	}
	for _, tc := range []struct {
		name, task, typ string
		status          int
	}{
		{"another's task name", "send_email", "SIMPLE", http.StatusForbidden},
		{"nested in an inline sub-workflow", "", "", http.StatusForbidden},
		{"readable", "granted", "SIMPLE", http.StatusNoContent},
		{"made by a metadata manager", "shared_meta", "SIMPLE", http.StatusNoContent},
		{"made by an admin", "shared_admin", "SIMPLE", http.StatusNoContent},
		{"own", "alice_own", "SIMPLE", http.StatusNoContent},
		{"a system task of that name", "send_email", "HTTP", http.StatusNoContent},
		{"a system task of that name, templated", "templated", "HTTP", http.StatusForbidden},
		{"no definition", "free_name", "SIMPLE", http.StatusNoContent},
	} {
		t.Run(tc.name, func(t *testing.T) {
			alice.t = t
			def := wf("wf_"+strings.ReplaceAll(tc.name, " ", "_"), tc.task, tc.typ)
			if tc.task == "" {
				def = `{"name":"wf_nested","tasks":[{"name":"sub","taskReferenceName":"sub","type":"SUB_WORKFLOW","subWorkflowParam":{"workflowDefinition":
					{"name":"child","tasks":[{"name":"send_email","taskReferenceName":"s"}]}}}]}`
			}
			r := alice.do("POST", "/api/metadata/workflow", def)
			if tc.status != http.StatusForbidden {
				r.expect(t, tc.status)
				return
			}
			e := r.expectError(t, http.StatusForbidden, "")
			task := "TASK_DEF:" + cmp.Or(tc.task, "send_email")
			if msg, _ := e["message"].(string); !strings.Contains(msg, task) || !strings.Contains(msg, "another principal created") {
				t.Errorf("message %q", msg)
			}
			// Started inline, the same.
			alice.do("POST", "/api/workflow", `{"name":"inline","workflowDef":`+def+`}`).expectError(t, http.StatusForbidden, task)
		})
	}
}
