package api_test

import (
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/flowvault/flowvault/internal/nodetest"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/natsauth"
	"github.com/flowvault/flowvault/schemas"
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
	r := client{t, base, ""}.do("POST", "/api/workers/credentials", `{"taskTypes":["mine"]}`)
	if r.status != http.StatusNotFound || !strings.Contains(r.body, "external NATS server") {
		t.Fatalf("%d %s", r.status, r.body)
	}
}
