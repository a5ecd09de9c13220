package api_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/flowvault/flowvault/internal/nodetest"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/natsauth"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/workers"
)

type issuedCredentials struct {
	Creds       string `json:"creds"`
	User        string `json:"user"`
	InboxPrefix string `json:"inboxPrefix"`
	Expires     int64  `json:"expires"`
}

// A worker asks for credentials of its type: a .creds file the embedded
// server accepts, never cached, expiring as asked, and an audit record
// naming the user and the caller but holding no seed.
func TestWorkerCredentials(t *testing.T) {
	t.Parallel()
	n, base, token := nodetest.StartSecure(t)
	admin := client{t, base, token}
	admin.must(204, "POST", "/api/metadata/taskdefs", `[{"name":"resize"}]`)
	appID, _, _, workerToken := newApp(t, admin, "resizer", "WORKER")
	admin.must(200, "POST", "/api/auth/authorization", `{"subject":{"type":"USER","id":"app:`+appID+`"},"target":{"type":"TASK_DEF","id":"resize"},"access":["EXECUTE"]}`)
	worker := client{t, base, workerToken}

	for _, tt := range []struct {
		name string
		body string
		ttl  time.Duration
	}{
		{"default lifetime", `{"taskTypes":["resize"],"name":"resizer-1"}`, natsauth.DefaultWorkerTTL},
		{"one hour", `{"taskTypes":["resize","resize"],"expiresInSeconds":3600}`, time.Hour},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := time.Now().Truncate(time.Second)
			r := worker.do("POST", "/api/workers/credentials", tt.body).expect(t, http.StatusOK)
			after := time.Now()
			if cc := r.header.Get("Cache-Control"); cc != "no-store" {
				t.Fatalf("Cache-Control %q", cc)
			}
			var c issuedCredentials
			if err := json.Unmarshal([]byte(r.body), &c); err != nil {
				t.Fatal(err)
			}
			if c.InboxPrefix != workers.InboxPrefix(c.User) || !strings.HasPrefix(c.User, "U") {
				t.Fatalf("user %q, inbox prefix %q", c.User, c.InboxPrefix)
			}
			if exp := time.UnixMilli(c.Expires); exp.Before(before.Add(tt.ttl)) || exp.After(after.Add(tt.ttl)) {
				t.Fatalf("expires %s, want %s after the request", exp, tt.ttl)
			}
			nc, err := workers.Connect(n.Log().ClientURL(), []byte(c.Creds), nats.NoReconnect())
			if err != nil {
				t.Fatalf("connect with the issued credentials: %v", err)
			}
			nc.Close()

			_, rest, _ := strings.Cut(c.Creds, "-----BEGIN USER NKEY SEED-----")
			seed, _, _ := strings.Cut(strings.TrimSpace(rest), "\n")
			if !strings.HasPrefix(seed, "SU") {
				t.Fatalf("no seed in %q", rest)
			}
			recs, err := n.Log().ReadSubject(testutil.Context(t, 30*time.Second), natsauth.AuditSubject, 0)
			if err != nil {
				t.Fatal(err)
			}
			var found *schemas.WorkerCredentialsIssued
			for _, rec := range recs {
				for _, env := range rec.Events {
					ev, err := schemas.Default.Decode(env)
					if err != nil {
						t.Fatal(err)
					}
					if wc, ok := ev.(*schemas.WorkerCredentialsIssued); ok && wc.User == c.User {
						found = wc
					}
				}
				for _, env := range rec.Events {
					if strings.Contains(string(env.Data), seed) {
						t.Fatal("the audit record holds the seed")
					}
				}
			}
			if found == nil || found.By != "app:"+appID || strings.Join(found.TaskTypes, ",") != "resize" {
				t.Fatalf("audit record %+v", found)
			}
			// The trail shows it: who asked, for which user and types.
			trail := admin.must(200, "GET", "/api/audit?principal=app:"+appID, "")
			var res struct {
				Entries []struct {
					Principal, Action, Target string
					Detail                    map[string]string
				}
			}
			if err := json.Unmarshal([]byte(trail), &res); err != nil {
				t.Fatal(err)
			}
			shown := false
			for _, e := range res.Entries {
				shown = shown || e.Action == "nats.credentials" && e.Target == "NATS_USER:"+c.User && e.Detail["task_types"] == "resize" &&
					e.Detail["expires"] == time.UnixMilli(c.Expires).UTC().Format(time.RFC3339)
			}
			if !shown || strings.Contains(trail, seed) {
				t.Fatalf("trail %.2000s", trail)
			}
		})
	}
}

// Requests the server cannot serve are 400 with the field named, before
// access is decided; types the caller may not poll are 403.
func TestWorkerCredentialsBadInput(t *testing.T) {
	t.Parallel()
	_, base, token := nodetest.StartSecure(t)
	admin := client{t, base, token}
	admin.must(204, "POST", "/api/metadata/taskdefs", `[{"name":"mine"},{"name":"theirs"}]`)
	appID, _, _, workerToken := newApp(t, admin, "w", "WORKER")
	admin.must(200, "POST", "/api/auth/authorization", `{"subject":{"type":"USER","id":"app:`+appID+`"},"target":{"type":"TASK_DEF","id":"mine"},"access":["EXECUTE"]}`)
	_, _, _, userToken := newApp(t, admin, "u", "USER")
	worker, user, anon := client{t, base, workerToken}, client{t, base, userToken}, client{t, base, ""}
	long := strings.Repeat("x", 300)
	for _, tt := range []struct {
		name   string
		c      client
		body   string
		status int
		want   string
	}{
		{"no task types", worker, `{}`, 400, "taskTypes"},
		{"empty task types", worker, `{"taskTypes":[]}`, 400, "taskTypes"},
		{"empty type", worker, `{"taskTypes":["mine",""]}`, 400, "taskTypes[1]"},
		{"long type", worker, `{"taskTypes":["` + long + `"]}`, 400, "taskTypes[0]"},
		{"empty domain", worker, `{"taskTypes":["mine"],"domains":[""]}`, 400, "domains[0]"},
		{"negative expiry", worker, `{"taskTypes":["mine"],"expiresInSeconds":-1}`, 400, "expiresInSeconds"},
		{"expiry beyond a year", worker, `{"taskTypes":["mine"],"expiresInSeconds":31622400}`, 400, "expiresInSeconds"},
		{"not json", worker, `taskTypes=mine`, 400, ""},
		{"task types not a list", worker, `{"taskTypes":"mine"}`, 400, ""},
		{"another type", worker, `{"taskTypes":["theirs"]}`, 403, ""},
		{"one type of two", worker, `{"taskTypes":["mine","theirs"]}`, 403, ""},
		{"unknown type", worker, `{"taskTypes":["nosuchtype"]}`, 403, ""},
		{"not a worker", user, `{"taskTypes":["mine"]}`, 403, ""},
		{"not a worker, no types", user, `{}`, 400, "taskTypes"},
		{"start a workflow without EXECUTE", user, `{"startWorkflows":["nosuchflow"]}`, 403, ""},
		{"empty workflow name", user, `{"startWorkflows":[""]}`, 400, "startWorkflows[0]"},
		{"anonymous", anon, `{"taskTypes":["mine"]}`, 401, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.c.do("POST", "/api/workers/credentials", tt.body)
			if r.status != tt.status || !strings.Contains(r.body, tt.want) || strings.Contains(r.body, "BEGIN NATS") {
				t.Fatalf("%d %s, want %d mentioning %q", r.status, r.body, tt.status, tt.want)
			}
		})
	}
}

// An engine on an external NATS server issues no credentials: that
// server's operator does.
func TestWorkerCredentialsExternalNATS(t *testing.T) {
	t.Parallel()
	a, _ := nodetest.Start(t)
	_, base := nodetest.StartConfig(t, nodetest.JoinConfig(t, a, filepath.Join(t.TempDir(), "b")))
	for _, req := range [][3]string{
		{"POST", "/api/workers/credentials", `{"taskTypes":["mine"]}`},
		{"GET", "/api/workers/credentials", ""},
		{"DELETE", "/api/workers/credentials/UABC", ""},
	} {
		r := client{t, base, ""}.do(req[0], req[1], req[2])
		if r.status != http.StatusNotFound || !strings.Contains(r.body, "external NATS server") {
			t.Fatalf("%s %s: %d %s", req[0], req[1], r.status, r.body)
		}
	}
}

// issue asks for credentials of body and returns them.
func issue(t *testing.T, c client, body string) issuedCredentials {
	t.Helper()
	var out issuedCredentials
	if err := json.Unmarshal([]byte(c.must(http.StatusOK, "POST", "/api/workers/credentials", body)), &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// listed is GET /api/workers/credentials as c, by user.
func listed(t *testing.T, c client, query string) map[string]natsauth.Issued {
	t.Helper()
	var list []natsauth.Issued
	if err := json.Unmarshal([]byte(c.must(http.StatusOK, "GET", "/api/workers/credentials"+query, "")), &list); err != nil {
		t.Fatal(err)
	}
	out := make(map[string]natsauth.Issued, len(list))
	for _, c := range list {
		out[c.User] = c
	}
	return out
}

// Whoever issued credentials, or an admin, revokes them: by the time the
// DELETE answers, the worker's connection is closed and the server
// refuses the credentials; others' credentials are unaffected; the trail
// names who revoked what. Others' credentials read as missing.
func TestRevokeWorkerCredentials(t *testing.T) {
	t.Parallel()
	n, base, token := nodetest.StartSecure(t)
	admin := client{t, base, token}
	admin.must(204, "POST", "/api/metadata/taskdefs", `[{"name":"resize"}]`)
	grant := func(appID string) {
		admin.must(200, "POST", "/api/auth/authorization", `{"subject":{"type":"USER","id":"app:`+appID+`"},"target":{"type":"TASK_DEF","id":"resize"},"access":["EXECUTE"]}`)
	}
	aID, _, _, aToken := newApp(t, admin, "a", "WORKER")
	bID, _, _, bToken := newApp(t, admin, "b", "WORKER")
	grant(aID)
	grant(bID)
	a, b := client{t, base, aToken}, client{t, base, bToken}
	a1 := issue(t, a, `{"taskTypes":["resize"],"name":"a1"}`)
	a2 := issue(t, a, `{"taskTypes":["resize"],"name":"a2"}`)
	b1 := issue(t, b, `{"taskTypes":["resize"],"name":"b1"}`)

	if got := listed(t, a, ""); len(got) != 2 || got[a1.User].Name != "a1" || got[a2.User].IssuedBy != "app:"+aID {
		t.Fatalf("a lists %+v", got)
	}
	if got := listed(t, admin, ""); len(got) != 3 || got[b1.User].IssuedBy != "app:"+bID {
		t.Fatalf("the admin lists %+v", got)
	}

	closed := make(chan struct{})
	nc, err := workers.Connect(n.Log().ClientURL(), []byte(a1.Creds), nats.NoReconnect(), nats.ClosedHandler(func(*nats.Conn) { close(closed) }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	for _, tt := range []struct {
		name string
		c    client
		user string
	}{
		{"another's credentials", b, a1.User},
		{"never issued", a, "UNOSUCHUSER"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if r := tt.c.do("DELETE", "/api/workers/credentials/"+tt.user, ""); r.status != http.StatusNotFound {
				t.Fatalf("%d %s", r.status, r.body)
			}
		})
	}
	select {
	case <-closed:
		t.Fatal("a refused revocation closed the connection")
	default:
	}

	open := func() int {
		t.Helper()
		cz, err := n.Log().EmbeddedServer().Connz(&server.ConnzOptions{User: a1.User, State: server.ConnOpen})
		if err != nil {
			t.Fatal(err)
		}
		return cz.NumConns
	}
	if open() != 1 {
		t.Fatal("the worker's connection is not on the server")
	}
	a.must(http.StatusNoContent, "DELETE", "/api/workers/credentials/"+a1.User, "")
	if c := open(); c != 0 {
		t.Fatalf("%d connections of revoked credentials open after the DELETE answered", c)
	}
	select {
	case <-closed:
	case <-time.After(30 * time.Second):
		t.Fatal("the worker never saw its connection closed")
	}
	if nc, err := workers.Connect(n.Log().ClientURL(), []byte(a1.Creds), nats.NoReconnect()); err == nil {
		nc.Close()
		t.Fatal("revoked credentials connected")
	}
	for _, c := range []issuedCredentials{a2, b1} {
		nc, err := workers.Connect(n.Log().ClientURL(), []byte(c.Creds), nats.NoReconnect())
		if err != nil {
			t.Fatalf("credentials not revoked: %v", err)
		}
		nc.Close()
	}
	got := listed(t, admin, "")
	if c := got[a1.User]; c.RevokedBy != "app:"+aID || c.RevokedAt == 0 || got[a2.User].RevokedAt != 0 {
		t.Fatalf("listed %+v", got)
	}
	// Again, by an admin: nothing more to record.
	admin.must(http.StatusNoContent, "DELETE", "/api/workers/credentials/"+a1.User, "")
	recs, err := n.Log().ReadSubject(testutil.Context(t, 30*time.Second), natsauth.AuditSubject, 0)
	if err != nil {
		t.Fatal(err)
	}
	revocations := 0
	for _, rec := range recs {
		for _, env := range rec.Events {
			if env.Type == schemas.TypeWorkerCredentialsRevoked {
				revocations++
			}
		}
	}
	if revocations != 1 {
		t.Fatalf("%d revocations recorded, want 1", revocations)
	}
	var trail struct {
		Entries []struct{ Principal, Action, Target string }
	}
	if err := json.Unmarshal([]byte(admin.must(200, "GET", "/api/audit?principal=app:"+aID, "")), &trail); err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(trail.Entries, func(e struct{ Principal, Action, Target string }) bool {
		return e.Action == "nats.credentials.revoke" && e.Target == "NATS_USER:"+a1.User && e.Principal == "app:"+aID
	}) {
		t.Fatalf("trail %+v", trail.Entries)
	}
}

// Expired credentials are listed only when asked for; bad query values
// are 400.
func TestListWorkerCredentialsExpired(t *testing.T) {
	t.Parallel()
	_, base, token := nodetest.StartSecure(t)
	admin := client{t, base, token}
	admin.must(204, "POST", "/api/metadata/taskdefs", `[{"name":"resize"}]`)
	c := issue(t, admin, `{"taskTypes":["resize"],"expiresInSeconds":1}`)
	deadline := time.UnixMilli(c.Expires)
	for time.Now().Before(deadline.Add(time.Millisecond)) {
		time.Sleep(time.Until(deadline) + time.Millisecond)
	}
	if got := listed(t, admin, ""); len(got) != 0 {
		t.Fatalf("expired credentials listed: %+v", got)
	}
	if got := listed(t, admin, "?includeExpired=true"); got[c.User].Expires != c.Expires {
		t.Fatalf("includeExpired: %+v", got)
	}
	if r := admin.do("GET", "/api/workers/credentials?includeExpired=maybe", ""); r.status != http.StatusBadRequest || !strings.Contains(r.body, "includeExpired") {
		t.Fatalf("%d %s", r.status, r.body)
	}
	// Revoking expired credentials records nothing: they work nowhere.
	admin.must(http.StatusNoContent, "DELETE", "/api/workers/credentials/"+c.User, "")
	if got := listed(t, admin, "?includeExpired=true"); got[c.User].RevokedAt != 0 {
		t.Fatalf("expired credentials revoked: %+v", got[c.User])
	}
}

// Revocations outlive a restart: the server admits workers only once it
// has them back, and refuses the revoked credentials from its first
// moment.
func TestRevocationSurvivesRestart(t *testing.T) {
	t.Parallel()
	cfg := nodetest.SecureConfig(filepath.Join(t.TempDir(), "data"))
	n, base := nodetest.StartConfig(t, cfg)
	admin := client{t, base, nodetest.AdminToken(t, cfg, base)}
	admin.must(204, "POST", "/api/metadata/taskdefs", `[{"name":"resize"}]`)
	revoked := issue(t, admin, `{"taskTypes":["resize"]}`)
	kept := issue(t, admin, `{"taskTypes":["resize"]}`)
	admin.must(http.StatusNoContent, "DELETE", "/api/workers/credentials/"+revoked.User, "")
	if err := n.Stop(testutil.Context(t, 30*time.Second)); err != nil {
		t.Fatal(err)
	}

	n, base = nodetest.StartConfig(t, cfg)
	if nc, err := workers.Connect(n.Log().ClientURL(), []byte(revoked.Creds), nats.NoReconnect()); err == nil {
		nc.Close()
		t.Fatal("revoked credentials connected after a restart")
	}
	nc, err := workers.Connect(n.Log().ClientURL(), []byte(kept.Creds), nats.NoReconnect())
	if err != nil {
		t.Fatalf("credentials not revoked, after a restart: %v", err)
	}
	nc.Close()
	admin = client{t, base, nodetest.AdminToken(t, cfg, base)}
	if got := listed(t, admin, ""); got[revoked.User].RevokedAt == 0 || got[kept.User].RevokedAt != 0 {
		t.Fatalf("listed %+v", got)
	}
}

// Worker credentials do not outlive their principal's rights: once it
// loses its WORKER role or its grant on one of their types, or is gone,
// their connections are closed and refused (they could otherwise drain
// the type's queue of announcements that rightful workers then never
// see), and they work again once the rights come back. The engines ask
// the same of every poll, take and result (executor
// TestTakeCheckRefusesTheSender), for the moment before the gate acts.
func TestWorkerCredentialsFollowTheirPrincipalsRights(t *testing.T) {
	t.Parallel()
	cfg := nodetest.SecureConfig(filepath.Join(t.TempDir(), "data"))
	logger, logs := testutil.CapturingLogger()
	n, base := nodetest.StartLogger(t, cfg, logger)
	admin := client{t, base, nodetest.AdminToken(t, cfg, base)}
	send(t, admin, "PUT", "/api/secrets/owner_key", "owner-secret-value-5f1c")

	for _, tc := range []struct {
		name         string
		lose, regain func(appID, taskType string)
	}{
		{name: "grant revoked",
			lose: func(appID, taskType string) {
				send(t, admin, "DELETE", "/api/auth/authorization", fmt.Sprintf(grantTemplate, appID, "TASK_DEF", taskType, `["EXECUTE"]`))
			},
			regain: func(appID, taskType string) {
				send(t, admin, "POST", "/api/auth/authorization", fmt.Sprintf(grantTemplate, appID, "TASK_DEF", taskType, `["EXECUTE"]`))
			}},
		{name: "role removed",
			lose:   func(appID, _ string) { send(t, admin, "DELETE", "/api/applications/"+appID+"/roles/WORKER", "") },
			regain: func(appID, _ string) { send(t, admin, "POST", "/api/applications/"+appID+"/roles/WORKER", "") }},
		{name: "application deleted", lose: func(appID, _ string) { send(t, admin, "DELETE", "/api/applications/"+appID, "") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			taskType := strings.ReplaceAll(tc.name, " ", "_")
			flow := "flow_" + taskType
			send(t, admin, "POST", "/api/metadata/taskdefs", `[{"name":"`+taskType+`"}]`)
			send(t, admin, "POST", "/api/metadata/workflow", `{"name":"`+flow+`","tasks":[{"name":"`+taskType+`","taskReferenceName":"t",
				"inputParameters":{"key":"${workflow.secrets.owner_key}"}}]}`)
			appID, _, _, token := newApp(t, admin, "worker-"+taskType, "WORKER")
			send(t, admin, "POST", "/api/auth/authorization", fmt.Sprintf(grantTemplate, appID, "TASK_DEF", taskType, `["EXECUTE"]`))
			c := issue(t, client{t, base, token}, `{"taskTypes":["`+taskType+`"]}`)
			connect := func(opts ...nats.Option) (*nats.Conn, error) {
				quiet := nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {})
				return workers.Connect(n.Log().ClientURL(), []byte(c.Creds), append(opts, nats.NoReconnect(), quiet)...)
			}
			poll := func(nc *nats.Conn) workers.PollReply {
				t.Helper()
				m, err := nc.Request(workers.PollSubject(taskType, ""), []byte(`{"workerId":"w","waitMs":5000}`), 20*time.Second)
				if err != nil {
					t.Fatalf("poll: %v", err)
				}
				r := decode[workers.PollReply](t, string(m.Data))
				if r.Task != nil && m.Reply != "" {
					if err := m.Respond([]byte(workers.AcceptOffer)); err != nil {
						t.Fatal(err)
					}
				}
				return r
			}
			closed := make(chan struct{})
			nc, err := connect(nats.ClosedHandler(func(*nats.Conn) { close(closed) }))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(nc.Close)

			// While the rights hold, the credentials take a task.
			send(t, admin, "POST", "/api/workflow/"+flow, `{}`)
			if r := poll(nc); r.Task == nil {
				t.Fatalf("no task for credentials with their rights: %+v", r.Error)
			}

			tc.lose(appID, taskType)
			<-closed // the test binary's timeout catches a connection left open
			if nc, err := connect(); err == nil {
				nc.Close()
				t.Fatal("credentials beyond their principal's rights connected")
			}
			if tc.regain == nil {
				return
			}
			tc.regain(appID, taskType)
			var again *nats.Conn
			testutil.Eventually(t, 20*time.Second, 20*time.Millisecond, func() error {
				again, err = connect()
				return err
			})
			t.Cleanup(again.Close)
			send(t, admin, "POST", "/api/workflow/"+flow, `{}`)
			if r := poll(again); r.Task == nil {
				t.Fatalf("no task for credentials whose rights came back: %+v", r.Error)
			}
		})
	}
	if strings.Contains(logs.String(), "owner-secret-value") {
		t.Fatal("the secret reached the log")
	}

	// Credentials that only start workflows need no WORKER role: they stay
	// connected, and a start their principal may no longer make is
	// refused, not run.
	send(t, admin, "POST", "/api/metadata/workflow", `{"name":"flow_starter","tasks":[{"name":"noop","taskReferenceName":"n","type":"NOOP"}]}`)
	appID, _, _, token := newApp(t, admin, "starter", "WORKER")
	send(t, admin, "POST", "/api/auth/authorization", fmt.Sprintf(grantTemplate, appID, "WORKFLOW_DEF", "flow_starter", `["EXECUTE"]`))
	starter, err := workers.Connect(n.Log().ClientURL(), []byte(issue(t, client{t, base, token}, `{"startWorkflows":["flow_starter"]}`).Creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(starter.Close)
	send(t, admin, "DELETE", "/api/auth/authorization", fmt.Sprintf(grantTemplate, appID, "WORKFLOW_DEF", "flow_starter", `["EXECUTE"]`))
	ack, err := starter.Request(workers.StartSubject("flow_starter", "app:"+appID), []byte(`{"input":{"n":1}}`), 20*time.Second)
	if err != nil || !strings.Contains(string(ack.Data), `"seq"`) {
		t.Fatalf("publish start: %v %s", err, ack.Data)
	}
	testutil.Eventually(t, 20*time.Second, 20*time.Millisecond, func() error {
		if strings.Contains(logs.String(), "start command rejected") && strings.Contains(logs.String(), "flow_starter") {
			return nil
		}
		return fmt.Errorf("the published start was not refused yet")
	})
	// The producer's mistake, not the server's failure.
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, "start command rejected") && !strings.Contains(line, `"level":"WARN"`) {
			t.Errorf("a refused start command is logged at another level than warning: %s", line)
		}
	}
	if found := send(t, admin, "GET", "/api/workflow/search?query="+url.QueryEscape("workflowType = flow_starter"), ""); !strings.Contains(found, `"totalHits":0`) {
		t.Fatalf("published start ran: %s", found)
	}

	// Credentials no ledger lists, which the node did not make for itself
	// either (signed with the server's keys by hand, or recorded in a
	// record parked as poison), take nothing.
	send(t, admin, "POST", "/api/metadata/taskdefs", `[{"name":"unlisted"}]`)
	unlisted, err := n.NATS().IssueWorker(natsauth.WorkerSpec{TaskTypes: []string{"unlisted"}})
	if err != nil {
		t.Fatal(err)
	}
	nc := nodetest.Connect(t, n, unlisted)
	m, err := nc.Request(workers.PollSubject("unlisted", ""), []byte(`{"workerId":"w","waitMs":200}`), 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if r := decode[workers.PollReply](t, string(m.Data)); r.Error == nil || r.Error.Code != workers.CodeUnavailable {
		t.Fatalf("a poll with unlisted credentials: %s", m.Data)
	}
}

// The NATS server decides what a connection may subscribe to when it
// connects, so subscribe credentials, which only admins may hold, are
// refused, and their connections closed, while their principal is no
// admin; they work again once it is one.
func TestSubscribeCredentialsFollowTheirPrincipalsRole(t *testing.T) {
	t.Parallel()
	n, base, adminToken := nodetest.StartSecure(t)
	admin := client{t, base, adminToken}
	appID, _, _, token := newApp(t, admin, "event-reader", "ADMIN")
	creds := issue(t, client{t, base, token}, `{"subscribe":["orders.>"]}`).Creds
	connect := func(opts ...nats.Option) (*nats.Conn, error) {
		quiet := nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {})
		return workers.Connect(n.Log().ClientURL(), []byte(creds), append(opts, nats.NoReconnect(), quiet)...)
	}

	closed := make(chan struct{})
	nc, err := connect(nats.ClosedHandler(func(*nats.Conn) { close(closed) }))
	if err != nil {
		t.Fatalf("subscribe credentials of an admin: %v", err)
	}
	t.Cleanup(nc.Close)
	if _, err := nc.SubscribeSync("orders.created"); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	admin.must(200, "DELETE", "/api/applications/"+appID+"/roles/ADMIN", "")
	<-closed // the test binary's timeout catches a connection left open
	if nc, err := connect(); err == nil {
		nc.Close()
		t.Fatal("subscribe credentials of a principal that is no admin connected")
	}

	admin.must(200, "POST", "/api/applications/"+appID+"/roles/ADMIN", "")
	testutil.Eventually(t, 20*time.Second, 20*time.Millisecond, func() error {
		nc, err := connect()
		if err != nil {
			return fmt.Errorf("subscribe credentials of an admin again: %w", err)
		}
		nc.Close()
		return nil
	})
}

// A poll that waits is asked again, when a task comes for it, what it was
// asked when it came: its token as it is now (its key, its application)
// and its principal's role and grants. Rights revoked during the wait
// take nothing: the poll is refused, and the task, its secret resolved for
// nobody, waits for another worker.
func TestWaitingPollFollowsRevokedRights(t *testing.T) {
	t.Parallel()
	_, base, adminToken := nodetest.StartSecure(t)
	admin := client{t, base, adminToken}
	send(t, admin, "PUT", "/api/secrets/api_key", "sk-live-waiting-poll-5e2d")
	for _, tc := range []struct {
		name string
		lose func(appID, keyID, taskType string)
	}{
		{"application deleted", func(appID, _, _ string) { send(t, admin, "DELETE", "/api/applications/"+appID, "") }},
		{"key deleted", func(appID, keyID, _ string) {
			send(t, admin, "DELETE", "/api/applications/"+appID+"/accessKeys/"+keyID, "")
		}},
		{"role removed", func(appID, _, _ string) { send(t, admin, "DELETE", "/api/applications/"+appID+"/roles/WORKER", "") }},
		{"grant revoked", func(appID, _, taskType string) {
			send(t, admin, "DELETE", "/api/auth/authorization", fmt.Sprintf(grantTemplate, appID, "TASK_DEF", taskType, `["EXECUTE"]`))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			taskType := "waited_" + strings.ReplaceAll(tc.name, " ", "_")
			send(t, admin, "POST", "/api/metadata/taskdefs", `[{"name":"`+taskType+`"}]`)
			send(t, admin, "POST", "/api/metadata/workflow", `{"name":"flow_`+taskType+`","tasks":[{"name":"`+taskType+`","taskReferenceName":"t",
				"inputParameters":{"k":"${workflow.secrets.api_key}"}}]}`)
			appID, keyID, _, token := newApp(t, admin, "poller-"+taskType, "WORKER")
			send(t, admin, "POST", "/api/auth/authorization", fmt.Sprintf(grantTemplate, appID, "TASK_DEF", taskType, `["EXECUTE"]`))

			polled := make(chan response, 1)
			go func() {
				polled <- client{t, base, token}.do("GET", "/api/tasks/poll/"+taskType+"?workerid=w-"+taskType+"&timeout=20000", "")
			}()
			testutil.Eventually(t, 20*time.Second, 10*time.Millisecond, func() error {
				if data := send(t, admin, "GET", "/api/tasks/queue/polldata?taskType="+taskType, ""); !strings.Contains(data, "w-"+taskType) {
					return errors.New("the poll does not wait yet")
				}
				return nil
			})
			tc.lose(appID, keyID, taskType)
			run := send(t, admin, "POST", "/api/workflow/flow_"+taskType, `{}`)

			r := <-polled
			if r.status != http.StatusForbidden && r.status != http.StatusUnauthorized || strings.Contains(r.body, "sk-live") {
				t.Fatalf("the waiting poll was answered %d %s, want a refusal", r.status, r.body)
			}
			testutil.Eventually(t, 20*time.Second, 20*time.Millisecond, func() error {
				wf := decode[map[string]any](t, send(t, admin, "GET", "/api/workflow/"+run, ""))
				if task := wf["tasks"].([]any)[0].(map[string]any); task["status"] != "SCHEDULED" {
					return fmt.Errorf("the refused poll's task is %v", task["status"])
				}
				return nil
			})
		})
	}
}

// A principal whose right is a DOMAIN grant gets credentials for that
// domain's queues alone (domainsOnly), works a task of the domain over
// NATS with them, and loses it with the grant, over NATS and HTTP alike.
func TestDomainGrantOverNATS(t *testing.T) {
	t.Parallel()
	n, base, token := nodetest.StartSecure(t)
	admin := client{t, base, token}
	send(t, admin, "POST", "/api/metadata/taskdefs", `[{"name":"dg_task"}]`)
	send(t, admin, "POST", "/api/metadata/workflow", `{"name":"dg_flow","tasks":[{"name":"dg_task","taskReferenceName":"t"}]}`)
	appID, _, _, workerToken := newApp(t, admin, "eu-worker", "WORKER")
	grant := fmt.Sprintf(grantTemplate, appID, "DOMAIN", "eu", `["EXECUTE"]`)
	send(t, admin, "POST", "/api/auth/authorization", grant)
	worker := client{t, base, workerToken}

	// Without domainsOnly the credentials would reach the queue without
	// domain too, which the grant does not cover.
	worker.do("POST", "/api/workers/credentials", `{"taskTypes":["dg_task"],"domains":["eu"]}`).expect(t, http.StatusForbidden)
	c := issue(t, worker, `{"taskTypes":["dg_task"],"domains":["eu"],"domainsOnly":true}`)
	if got := listed(t, worker, "")[c.User]; !got.DomainsOnly || !slices.Equal(got.Domains, []string{"eu"}) {
		t.Fatalf("listed %+v", got)
	}
	closed := make(chan struct{})
	nc, err := workers.Connect(n.Log().ClientURL(), []byte(c.Creds), nats.NoReconnect(),
		nats.ClosedHandler(func(*nats.Conn) { close(closed) }), nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	start := func() string {
		return send(t, admin, "POST", "/api/workflow", `{"name":"dg_flow","taskToDomain":{"dg_task":"eu"}}`)
	}
	poll := func() (workers.PollReply, *nats.Msg) {
		t.Helper()
		m, err := nc.Request(workers.PollSubject("dg_task", "eu"), []byte(`{"workerId":"w","waitMs":5000}`), 20*time.Second)
		if err != nil {
			t.Fatalf("poll: %v", err)
		}
		return decode[workers.PollReply](t, string(m.Data)), m
	}

	id := start()
	r, m := poll()
	if r.Task == nil || r.Task.WorkflowInstanceID != id {
		t.Fatalf("poll of eu: %s", m.Data)
	}
	if err := m.Respond([]byte(workers.AcceptOffer)); err != nil {
		t.Fatal(err)
	}
	res, _ := json.Marshal(workers.ResultRequest{TaskResult: conductor.TaskResult{TaskID: r.Task.TaskID, WorkflowInstanceID: id,
		WorkerID: "w", Status: conductor.TaskCompleted}, Lease: r.Task.PollCount})
	m, err = nc.Request(workers.ResultSubject("dg_task", "eu"), res, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if rr := decode[workers.ResultReply](t, string(m.Data)); !rr.OK || rr.Ignored {
		t.Fatalf("result: %s", m.Data)
	}

	// The grant listings show it like any other grant.
	for path, want := range map[string]string{
		"/api/auth/authorization/DOMAIN/eu":                                    `{"EXECUTE":[{"type":"USER","id":"app:` + appID + `"}]}`,
		"/api/auth/subjects/USER/app:" + appID + "/grants?resourceType=DOMAIN": `[{"target":{"type":"DOMAIN","id":"eu"},"access":["EXECUTE"]}]`,
		"/api/users/app:" + appID + "/permissions":                             `{"grantedAccess":[{"target":{"type":"DOMAIN","id":"eu"},"access":["EXECUTE"]}]}`,
	} {
		if got := strings.TrimSpace(send(t, admin, "GET", path, "")); got != want {
			t.Errorf("GET %s = %s, want %s", path, got, want)
		}
	}

	// Revoked, the credentials are beyond their principal's rights: their
	// connection is closed (TestWorkerCredentialsFollowTheirPrincipalsRights).
	send(t, admin, "DELETE", "/api/auth/authorization", grant)
	<-closed // the test binary's timeout catches a connection left open
	start()
	worker.do("GET", "/api/tasks/poll/dg_task?domain=eu&timeout=0", "").expect(t, http.StatusForbidden)
}
