package api_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/flowvault/flowvault/api"
	"github.com/flowvault/flowvault/auth"
	"github.com/flowvault/flowvault/internal/nodetest"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/node"
)

// client sends requests as one principal (token "" sends none).
type client struct {
	t     *testing.T
	base  string
	token string
}

func (c client) do(method, path, body string) response {
	c.t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, c.base+path, r)
	if err != nil {
		c.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("X-Authorization", c.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: string(b), chunked: len(resp.TransferEncoding) > 0}
}

// must sends a request that must succeed with status and returns the body.
func (c client) must(status int, method, path, body string) string {
	c.t.Helper()
	return c.do(method, path, body).expect(c.t, status).body
}

// tokenError checks a 401 token answer: Conductor's error body plus
// "error": code, and nothing else.
func tokenError(t *testing.T, r response, code string) {
	t.Helper()
	e := r.expectError(t, http.StatusUnauthorized, "")
	if e["error"] != code {
		t.Fatalf("error = %v, want %s: %s", e["error"], code, r.body)
	}
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range e {
			if !yield(k) {
				return
			}
		}
	})
	if want := []string{"error", "instance", "message", "retryable", "status"}; !slices.Equal(keys, want) {
		t.Fatalf("token error body keys %v, want %v: %s", keys, want, r.body)
	}
}

// newApp creates an application with the given roles and an access key,
// and returns its id, key id, secret and a token.
func newApp(t *testing.T, admin client, name string, roles ...string) (id, keyID, secret, token string) {
	t.Helper()
	app := decode[auth.Application](t, admin.must(200, "POST", "/api/applications", `{"name":"`+name+`"}`))
	for _, r := range roles {
		admin.must(200, "POST", "/api/applications/"+app.ID+"/roles/"+r, "")
	}
	key := decode[auth.NewAccessKey](t, admin.must(200, "POST", "/api/applications/"+app.ID+"/accessKeys", ""))
	return app.ID, key.ID, key.Secret, nodetest.MintToken(t, admin.base, key.ID, key.Secret)
}

// A permissions listing shows, with its tag, every resource a TAG grant
// covers, whatever its type (Orkes's GrantedAccess: an ENV_VARIABLE
// listed with "tag":"dev:automation"): secrets, environment values,
// definitions and schedules, not applications alone.
func TestPermissionsListWhatATagGrantCovers(t *testing.T) {
	t.Parallel()
	_, base, token := nodetest.StartSecure(t)
	admin := client{t, base, token}
	const tag = `[{"key":"team","value":"payments"}]`
	admin.must(200, "PUT", "/api/groups/payments", `{"description":"payments team"}`)
	admin.must(200, "POST", "/api/auth/authorization",
		`{"subject":{"type":"GROUP","id":"payments"},"target":{"type":"TAG","id":"team:payments"},"access":["READ"]}`)
	send(t, admin, "PUT", "/api/secrets/stripe_key", "value-1")
	send(t, admin, "PUT", "/api/secrets/stripe_key/tags", tag)
	send(t, admin, "PUT", "/api/secrets/untagged_key", "value-2")
	send(t, admin, "PUT", "/api/environment/region", "eu")
	send(t, admin, "PUT", "/api/environment/region/tags", tag)
	send(t, admin, "POST", "/api/metadata/taskdefs", `[{"name":"charge"}]`)
	send(t, admin, "PUT", "/api/metadata/task/charge/tags", tag)
	send(t, admin, "POST", "/api/metadata/workflow", `{"name":"payout","tasks":[{"name":"charge","taskReferenceName":"c"}]}`)
	send(t, admin, "PUT", "/api/metadata/workflow/payout/tags", tag)
	send(t, admin, "POST", "/api/scheduler/schedules", `{"name":"nightly","cronExpression":"0 0 0 1 1 ?","paused":true,"startWorkflowRequest":{"name":"payout"}}`)
	send(t, admin, "PUT", "/api/scheduler/schedules/nightly/tags", tag)
	perms := decode[map[string][]auth.GrantedAccess](t, admin.must(200, "GET", "/api/groups/payments/permissions", ""))["grantedAccess"]
	want := []auth.GrantedAccess{
		{Target: auth.Target{Type: "ENV_VARIABLE", ID: "region"}, Access: []auth.Access{"READ"}, Tag: "team:payments"},
		{Target: auth.Target{Type: "SECRET_NAME", ID: "stripe_key"}, Access: []auth.Access{"READ"}, Tag: "team:payments"},
		{Target: auth.Target{Type: "TAG", ID: "team:payments"}, Access: []auth.Access{"READ"}},
		{Target: auth.Target{Type: "TASK_DEF", ID: "charge"}, Access: []auth.Access{"READ"}, Tag: "team:payments"},
		{Target: auth.Target{Type: "WORKFLOW_DEF", ID: "payout"}, Access: []auth.Access{"READ"}, Tag: "team:payments"},
		{Target: auth.Target{Type: "WORKFLOW_SCHEDULE", ID: "nightly"}, Access: []auth.Access{"READ"}, Tag: "team:payments"},
	}
	if !slices.EqualFunc(perms, want, func(a, b auth.GrantedAccess) bool {
		return a.Target == b.Target && a.Tag == b.Tag && slices.Equal(a.Access, b.Access)
	}) {
		t.Fatalf("the group's permissions = %+v, want %+v", perms, want)
	}
}

func TestAuthBootstrapAndUserInfo(t *testing.T) {
	t.Parallel()
	n, base, token := nodetest.StartSecure(t)
	admin := client{t, base, token}
	anon := client{t, base, ""}

	info := decode[map[string]any](t, admin.must(200, "GET", "/api/token/userInfo", ""))
	if info["id"] != "app:"+auth.BootstrapAppID || info["applicationUser"] != true {
		t.Fatalf("userInfo = %v", info)
	}
	if roles := info["roles"].([]any); len(roles) != 1 || roles[0].(map[string]any)["name"] != "ADMIN" ||
		len(roles[0].(map[string]any)["permissions"].([]any)) == 0 {
		t.Fatalf("userInfo roles = %v", info["roles"])
	}
	withClaims := decode[map[string]map[string]any](t, admin.must(200, "GET", "/api/token/userInfo?claims=true", ""))
	if withClaims["claims"]["sub"] != "app:"+auth.BootstrapAppID || withClaims["claims"]["exp"] == nil || withClaims["user"]["id"] == nil {
		t.Fatalf("userInfo?claims=true = %v", withClaims)
	}

	// No token: 401 INVALID_TOKEN everywhere under /api but health and token.
	for _, path := range []string{"/api/token/userInfo", "/api/metadata/workflow", "/api/applications", "/api/workflow/x"} {
		tokenError(t, anon.do("GET", path, ""), auth.CodeInvalidToken)
	}
	anon.must(200, "GET", "/health", "")
	anon.must(200, "GET", "/api/health", "")
	if r := anon.do("HEAD", "/api/health", ""); r.status != http.StatusOK { // a load balancer's check
		t.Fatalf("HEAD /api/health without a token: %d", r.status)
	}
	if r := anon.do("HEAD", "/api/metadata/workflow", ""); r.status != http.StatusUnauthorized {
		t.Fatalf("HEAD of a route that needs a token, without one: %d", r.status)
	}

	// Secrets on disk are the owner's only.
	for _, f := range []string{node.BootstrapFile, node.TokenKeyFile} {
		info, err := os.Stat(filepath.Join(nodeDataDir(n), f))
		if err != nil || info.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v mode %v, want 0600", f, err, info.Mode().Perm())
		}
	}
}

func nodeDataDir(n *node.Node) string { return n.Config().DataDir }

func TestApplicationsAccessKeysAndTokens(t *testing.T) {
	t.Parallel()
	_, base, token := nodetest.StartSecure(t)
	admin := client{t, base, token}

	app := decode[auth.Application](t, admin.must(200, "POST", "/api/applications", `{"name":"payments worker"}`))
	if app.ID == "" || app.Name != "payments worker" || app.CreatedBy != "app:"+auth.BootstrapAppID || app.CreateTime == 0 {
		t.Fatalf("created %+v", app)
	}
	admin.must(200, "POST", "/api/applications/"+app.ID+"/roles/WORKER", "")
	admin.do("POST", "/api/applications/"+app.ID+"/roles/NOPE", "").expectError(t, 400, `unknown role "NOPE": want one of ADMIN, USER, `)
	admin.do("POST", "/api/applications/nope/roles/WORKER", "").expectError(t, 404, "Application nope not found")

	created := admin.do("POST", "/api/applications/"+app.ID+"/accessKeys", "").expect(t, 200)
	key := decode[auth.NewAccessKey](t, created.body)
	if key.ID == "" || len(key.Secret) < 43 || created.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("access key %s (Cache-Control %q)", created.body, created.header.Get("Cache-Control"))
	}
	list := admin.must(200, "GET", "/api/applications/"+app.ID+"/accessKeys", "")
	keys := decode[[]map[string]any](t, list)
	if len(keys) != 1 || keys[0]["id"] != key.ID || keys[0]["status"] != "ACTIVE" || keys[0]["createdAt"] == nil || len(keys[0]) != 3 {
		t.Fatalf("access keys = %s", list)
	}
	if strings.Contains(list, key.Secret) || strings.Contains(list, "argon2") {
		t.Fatal("the key listing shows the secret or its hash")
	}
	if got := decode[auth.Application](t, admin.must(200, "GET", "/api/applications/key/"+key.ID, "")); got.ID != app.ID {
		t.Fatalf("application by key = %+v", got)
	}
	worker := client{t, base, nodetest.MintToken(t, base, key.ID, key.Secret)}
	info := decode[map[string]any](t, worker.must(200, "GET", "/api/token/userInfo", ""))
	if info["id"] != "app:"+app.ID || !strings.Contains(admin.must(200, "GET", "/api/users/app:"+app.ID, ""), `"name":"WORKER"`) {
		t.Fatalf("worker userInfo = %v", info)
	}
	// A worker manages neither users nor other applications.
	worker.do("GET", "/api/users", "").expectError(t, 403, "app:"+app.ID)
	worker.do("POST", "/api/applications/"+app.ID+"/roles/ADMIN", "").expectError(t, 403, "")

	// Pause the key: no new tokens (a plain 401), and its tokens are refused.
	paused := decode[auth.AccessKey](t, admin.must(200, "POST", "/api/applications/"+app.ID+"/accessKeys/"+key.ID+"/status", ""))
	if paused.Status != "INACTIVE" {
		t.Fatalf("toggle = %+v", paused)
	}
	bad := client{t, base, ""}.do("POST", "/api/token", `{"keyId":"`+key.ID+`","keySecret":"`+key.Secret+`"}`)
	if e := bad.expectError(t, 401, "invalid access key id or secret"); e["error"] != nil {
		t.Fatalf("refused credentials carry a token error code: %s", bad.body)
	}
	tokenError(t, worker.do("GET", "/api/token/userInfo", ""), auth.CodeInvalidToken)
	admin.must(200, "POST", "/api/applications/"+app.ID+"/accessKeys/"+key.ID+"/status", "")
	worker.must(200, "GET", "/api/token/userInfo", "")

	// Revoking a role takes effect on the next request.
	admin.must(200, "DELETE", "/api/applications/"+app.ID+"/roles/WORKER", "")
	if strings.Contains(worker.must(200, "GET", "/api/token/userInfo", ""), "WORKER") {
		t.Fatal("removed role still in the principal")
	}

	// Tags, rename, delete key, delete application.
	admin.must(204, "PUT", "/api/applications/"+app.ID+"/tags", `[{"key":"team","value":"payments"}]`)
	if tags := admin.must(200, "GET", "/api/applications/"+app.ID+"/tags", ""); tags != `[{"key":"team","value":"payments"}]` {
		t.Fatalf("tags = %s", tags)
	}
	if got := decode[auth.Application](t, admin.must(200, "PUT", "/api/applications/"+app.ID, `{"name":"renamed"}`)); got.Name != "renamed" {
		t.Fatalf("renamed = %+v", got)
	}
	admin.must(200, "DELETE", "/api/applications/"+app.ID+"/accessKeys/"+key.ID, "")
	tokenError(t, worker.do("GET", "/api/token/userInfo", ""), auth.CodeInvalidToken)
	admin.do("GET", "/api/applications/key/"+key.ID, "").expectError(t, 404, key.ID)
	if msg := admin.must(200, "DELETE", "/api/applications/"+app.ID, ""); msg != `{"message":"Deleted Application '`+app.ID+`'"}` {
		t.Fatalf("delete = %s", msg)
	}
	admin.do("GET", "/api/applications/"+app.ID, "").expectError(t, 404, app.ID)
}

func TestBadTokens(t *testing.T) {
	t.Parallel()
	_, base, token := nodetest.StartSecure(t)
	c := func(tok string) client { return client{t, base, tok} }
	parts := strings.Split(token, ".")
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(strings.Replace(string(payload), "bootstrap-admin", "bootstrap-admix", 1))) + "." + parts[2]
	none := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + parts[1] + "."
	other, err := auth.NewSigner([]byte(strings.Repeat("k", 32)))
	if err != nil {
		t.Fatal(err)
	}
	forged, _ := other.Sign(auth.Claims{Subject: "app:" + auth.BootstrapAppID, IssuedAt: time.Now().Unix(), Expires: time.Now().Add(time.Hour).Unix(), ID: "x"})
	for name, tok := range map[string]string{"garbage": "abc", "three parts": "a.b.c", "tampered payload": tampered,
		"alg none": none, "other key": forged, "bearer prefix": "Bearer " + token} {
		t.Run(name, func(t *testing.T) {
			tokenError(t, c(tok).do("GET", "/api/metadata/taskdefs", ""), auth.CodeInvalidToken)
		})
	}
	c(token).must(200, "GET", "/api/metadata/taskdefs", "")
}

func TestTokenExpiry(t *testing.T) {
	t.Parallel()
	cfg := nodetest.SecureConfig(filepath.Join(t.TempDir(), "data"))
	_, base := nodetest.StartConfig(t, cfg)
	id, secret := nodetest.BootstrapKey(t, cfg)
	anon := client{t, base, ""}
	// Only the expired answer is checked: whether a 1 s token is still
	// fresh at its first use depends on the machine's load.
	short := decode[map[string]string](t, anon.must(200, "POST", "/api/token", `{"keyId":"`+id+`","keySecret":"`+secret+`","expiration":1000}`))["token"]
	time.Sleep(2100 * time.Millisecond)
	tokenError(t, client{t, base, short}.do("GET", "/api/token/userInfo", ""), auth.CodeExpiredToken)
	anon.do("POST", "/api/token", `{"keyId":"`+id+`"}`).expectError(t, 400, "keySecret")
	anon.do("POST", "/api/token", `{"keyId":"`+id+`","keySecret":"`+strings.Repeat("x", 8000)+`"}`).expectError(t, 413, "")
}

func TestTokenBruteForceIsRateLimited(t *testing.T) {
	t.Parallel()
	cfg := nodetest.SecureConfig(filepath.Join(t.TempDir(), "data"))
	// The failures' bucket refills once an hour, not once a second: a
	// loaded machine (the race detector, parallel tests) checking a guess
	// in more than a second refilled the default bucket as fast as the
	// guesses emptied it, and no guess was ever limited.
	cfg.TokenLimits = api.DefaultTokenLimits
	cfg.TokenLimits.PerKey = rate.Every(time.Hour)
	logger, logs := testutil.CapturingLogger()
	_, base := nodetest.StartLogger(t, cfg, logger)
	id, secret := nodetest.BootstrapKey(t, cfg)
	anon := client{t, base, ""}
	// The right secret is not guessing: a script may mint more tokens than
	// the key's failure budget allows.
	var admin client
	for i := 0; i < 12; i++ {
		tok := decode[map[string]string](t, anon.must(200, "POST", "/api/token", `{"keyId":"`+id+`","keySecret":"`+secret+`"}`))["token"]
		admin = client{t, base, tok}
	}
	const guess = "guessed-secret-value-0123456789"
	var limited response
	refused := 0
	for i := 0; i < 60 && limited.status == 0; i++ {
		r := anon.do("POST", "/api/token", `{"keyId":"`+id+`","keySecret":"`+guess+`"}`)
		switch r.status {
		case 401:
			refused++
		case 429:
			limited = r
		default:
			t.Fatalf("guess %d: %d %s", i, r.status, r.body)
		}
	}
	if limited.status != 429 || limited.header.Get("Retry-After") == "" || refused != cfg.TokenLimits.KeyBurst {
		t.Fatalf("no 429 with Retry-After after %d wrong secrets (want %d): %+v", refused, cfg.TokenLimits.KeyBurst, limited)
	}
	limited.expectError(t, 429, "too many failed token requests")
	out := logs.String()
	if !strings.Contains(out, "token requests rate limited") || !strings.Contains(out, `"key_id":"`+id+`"`) ||
		!strings.Contains(out, "wrong access key secret") {
		t.Fatalf("brute force not logged with the key id:\n%.2000s", out)
	}
	if strings.Contains(out, guess) || strings.Contains(out, secret) {
		t.Fatal("a secret reached the log")
	}

	// The audit trail has every refused guess and the rate-limited one as
	// failed authentications from the client's address, never a secret.
	testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() error {
		trail := admin.must(200, "GET", "/api/audit", "")
		if strings.Contains(trail, guess) || strings.Contains(trail, secret) {
			t.Fatal("a secret reached the audit trail")
		}
		var refusals, limits int
		for _, e := range auditEntries(t, trail) {
			switch {
			case e.Action == "token.refuse" && e.Target == "ACCESS_KEY:"+id && e.Detail["reason"] == "wrong access key secret" && e.Detail["addr"] == "127.0.0.1":
				refusals++
			case e.Action == "auth.fail" && e.Target == "REQUEST:/api/token" && e.Detail["code"] == "RATE_LIMITED" && e.Detail["addr"] == "127.0.0.1":
				limits++
			}
		}
		if refusals != refused || limits != 1 {
			return fmt.Errorf("trail has %d refused guesses (want %d) and %d rate-limited ones (want 1):\n%.3000s", refusals, refused, limits, trail)
		}
		return nil
	})
}

func TestGrantsGroupsAndTags(t *testing.T) {
	t.Parallel()
	_, base, token := nodetest.StartSecure(t)
	admin := client{t, base, token}
	grant := func(method, subject, target, access string) response {
		return admin.do(method, "/api/auth/authorization", `{"subject":`+subject+`,"target":`+target+`,"access":`+access+`}`)
	}
	appTarget := func(id string) string { return `{"type":"APPLICATION","id":"` + id + `"}` }

	// Unknown subjects: users, applications and groups are 404, roles 400.
	grant("POST", `{"type":"user","id":"nobody@x"}`, appTarget("a"), `["READ"]`).expectError(t, 404, "User nobody@x not found")
	grant("POST", `{"type":"USER","id":"app:nope"}`, appTarget("a"), `["READ"]`).expectError(t, 404, "Application nope not found: app:<id> takes the application's id")
	grant("POST", `{"type":"GROUP","id":"ghosts"}`, appTarget("a"), `["READ"]`).expectError(t, 404, "Group ghosts not found")
	grant("POST", `{"type":"ROLE","id":"WIZARD"}`, appTarget("a"), `["READ"]`).expectError(t, 400, "unknown role")
	grant("POST", `{"type":"TEAM","id":"x"}`, appTarget("a"), `["READ"]`).expectError(t, 400, "subject type")
	grant("POST", `{"type":"ROLE","id":"USER"}`, `{"type":"TAG","id":"nocolon"}`, `["READ"]`).expectError(t, 400, "key:value")
	grant("POST", `{"type":"ROLE","id":"USER"}`, `{"type":"PLANET","id":"x"}`, `["READ"]`).expectError(t, 400, "target type")
	grant("POST", `{"type":"ROLE","id":"USER"}`, appTarget("a"), `["OWN"]`).expectError(t, 400, "access")

	// Users and groups; group roles stack onto members.
	admin.must(200, "PUT", "/api/groups/payments", `{"description":"payments team","roles":["USER"],"defaultAccess":{"WORKFLOW_DEF":["READ","EXECUTE"]}}`)
	admin.must(200, "PUT", "/api/groups/ops", `{"description":"ops","roles":["ADMIN"]}`)
	admin.do("PUT", "/api/users/carol@x", `{"name":"Carol","roles":["USER"],"groups":["nope"]}`).expectError(t, 404, "Group nope")
	admin.do("PUT", "/api/users/app:x", `{"name":"X"}`).expectError(t, 400, "reserved for applications")
	user := decode[map[string]any](t, admin.must(200, "PUT", "/api/users/carol@x", `{"name":"Carol","roles":["user"],"groups":["payments"]}`))
	if user["id"] != "carol@x" || len(user["groups"].([]any)) != 1 {
		t.Fatalf("upsert user = %v", user)
	}
	admin.must(200, "PUT", "/api/users/bob@x", `{"name":"Bob","roles":["USER"]}`)
	admin.must(200, "POST", "/api/groups/ops/users/bob@x", "")
	if members := admin.must(200, "GET", "/api/groups/ops/users", ""); !strings.Contains(members, `"id":"bob@x"`) {
		t.Fatalf("ops members = %s", members)
	}
	check := func(user, target string) map[string]bool {
		return decode[map[string]bool](t, admin.must(200, "GET", "/api/users/"+user+"/checkPermissions?type=APPLICATION&id="+target, ""))
	}

	// An application tagged team:payments; the group gets READ on the tag.
	app := decode[auth.Application](t, admin.must(200, "POST", "/api/applications", `{"name":"billing"}`))
	admin.must(204, "PUT", "/api/applications/"+app.ID+"/tags", `[{"key":"team","value":"payments"}]`)
	if got := check("carol@x", app.ID); got["READ"] || got["UPDATE"] {
		t.Fatalf("before the grant: %v", got)
	}
	if msg := grant("POST", `{"type":"group","id":"payments"}`, `{"type":"TAG","id":"team:payments"}`, `["READ"]`).expect(t, 200).body; msg != `{"message":"Granted permission"}` {
		t.Fatalf("grant = %s", msg)
	}
	if got := check("carol@x", app.ID); !got["READ"] || got["UPDATE"] || got["DELETE"] {
		t.Fatalf("tag grant through the group: %v", got)
	}
	if got := check("bob@x", app.ID); !got["READ"] || !got["DELETE"] { // ADMIN through group ops
		t.Fatalf("group role: %v", got)
	}
	perms := decode[map[string][]auth.GrantedAccess](t, admin.must(200, "GET", "/api/users/carol@x/permissions", ""))["grantedAccess"]
	want := []auth.GrantedAccess{
		{Target: auth.Target{Type: "APPLICATION", ID: app.ID}, Access: []auth.Access{"READ"}, Tag: "team:payments"},
		{Target: auth.Target{Type: "TAG", ID: "team:payments"}, Access: []auth.Access{"READ"}},
	}
	if !slices.EqualFunc(perms, want, func(a, b auth.GrantedAccess) bool {
		return a.Target == b.Target && a.Tag == b.Tag && slices.Equal(a.Access, b.Access)
	}) {
		t.Fatalf("carol's permissions = %+v, want %+v", perms, want)
	}
	if g := admin.must(200, "GET", "/api/groups/payments/permissions", ""); !strings.Contains(g, `"tag":"team:payments"`) {
		t.Fatalf("group permissions = %s", g)
	}

	// A direct grant, the listings by target and by subject, revocation.
	grant("POST", `{"type":"USER","id":"carol@x"}`, appTarget(app.ID), `["update","EXECUTE"]`).expect(t, 200)
	if got := check("carol@x", app.ID); !got["UPDATE"] || !got["EXECUTE"] || got["DELETE"] {
		t.Fatalf("direct grant: %v", got)
	}
	if got := admin.must(200, "GET", "/api/auth/authorization/APPLICATION/"+app.ID+"?groupBy=subject", ""); got != `{"USER:carol@x":["UPDATE","EXECUTE"]}` {
		t.Fatalf("by subject = %s", got)
	}
	if got := admin.must(200, "GET", "/api/auth/authorization/TAG/team:payments", ""); got != `{"READ":[{"type":"GROUP","id":"payments"}]}` {
		t.Fatalf("by access = %s", got)
	}
	if got := admin.must(200, "GET", "/api/auth/subjects/USER/carol@x/grants?resourceType=APPLICATION", ""); got != `[{"target":{"type":"APPLICATION","id":"`+app.ID+`"},"access":["UPDATE","EXECUTE"]}]` {
		t.Fatalf("subject grants = %s", got)
	}
	if msg := grant("DELETE", `{"type":"USER","id":"carol@x"}`, appTarget(app.ID), `["UPDATE"]`).expect(t, 200).body; msg != `{"message":"Removed permission"}` {
		t.Fatalf("revoke = %s", msg)
	}
	if got := check("carol@x", app.ID); got["UPDATE"] || !got["EXECUTE"] {
		t.Fatalf("after revoking UPDATE: %v", got)
	}

	// Leaving a group and deleting one take effect at once.
	admin.must(200, "DELETE", "/api/groups/ops/users/bob@x", "")
	if got := check("bob@x", app.ID); got["READ"] {
		t.Fatalf("after leaving ops: %v", got)
	}
	admin.must(200, "DELETE", "/api/groups/payments", "")
	if got := check("carol@x", app.ID); got["READ"] != true { // EXECUTE implies READ
		t.Fatalf("after deleting payments: %v", got)
	}
	if u := admin.must(200, "GET", "/api/users/carol@x", ""); strings.Contains(u, "payments") {
		t.Fatalf("carol still in a deleted group: %s", u)
	}
	if got := admin.must(200, "GET", "/api/auth/authorization/TAG/team:payments", ""); got != `{}` {
		t.Fatalf("grants of a deleted group remain: %s", got)
	}
	if msg := admin.must(200, "DELETE", "/api/users/carol@x", ""); msg != `{"message":"Deleted user 'carol@x'"}` {
		t.Fatalf("delete user = %s", msg)
	}
	if got := admin.must(200, "GET", "/api/auth/subjects/USER/carol@x/grants", ""); got != `[]` {
		t.Fatalf("grants of a deleted user remain: %s", got)
	}
	users := admin.must(200, "GET", "/api/users?apps=true", "")
	if !strings.Contains(users, `"id":"app:`+app.ID+`"`) || strings.Contains(admin.must(200, "GET", "/api/users", ""), "app:") {
		t.Fatalf("users?apps=true = %s", users)
	}
}

func TestInsecureDevMode(t *testing.T) {
	t.Parallel()
	_, base := nodetest.Start(t) // nodetest's default: --insecure-dev
	anon := client{t, base, ""}
	info := decode[map[string]any](t, anon.must(200, "GET", "/api/token/userInfo", ""))
	if info["id"] != "anonymous" {
		t.Fatalf("insecure userInfo = %v", info)
	}
	anon.must(200, "GET", "/api/users", "")
	anon.must(200, "GET", "/api/metadata/taskdefs", "")
	// No tokens without authentication: a 404, like Conductor OSS, on
	// which the SDKs carry on without one.
	anon.do("POST", "/api/token", `{"keyId":"k","keySecret":"s"}`).expectError(t, http.StatusNotFound, "authentication is off")
}

// The route table: each owned route with a principal that may call it
// and one that may not.
func TestRouteTable(t *testing.T) {
	t.Parallel()
	_, base, token := nodetest.StartSecure(t)
	admin := client{t, base, token}
	_, _, _, workerTok := newApp(t, admin, "worker", "WORKER")
	creatorID, _, _, creatorTok := newApp(t, admin, "creator", "APPLICATION_CREATOR")
	worker, creator := client{t, base, workerTok}, client{t, base, creatorTok}
	// The creator owns an application of its own.
	owned := decode[auth.Application](t, creator.must(200, "POST", "/api/applications", `{"name":"owned"}`))
	other := decode[auth.Application](t, admin.must(200, "POST", "/api/applications", `{"name":"other"}`))
	admin.must(200, "PUT", "/api/users/u@x", `{"name":"U"}`)

	type row struct {
		method, path, body string
		allowed, denied    client
	}
	rows := []row{
		{"GET", "/api/applications/" + owned.ID, "", creator, worker},
		{"PUT", "/api/applications/" + owned.ID, `{"name":"owned2"}`, creator, worker},
		{"GET", "/api/applications/" + owned.ID + "/tags", "", creator, worker},
		{"GET", "/api/applications/" + owned.ID + "/accessKeys", "", creator, worker},
		{"POST", "/api/applications/" + owned.ID + "/roles/WORKER", "", creator, worker},
		{"POST", "/api/applications/" + other.ID + "/roles/WORKER", "", admin, creator},
		{"POST", "/api/applications/" + owned.ID + "/roles/ADMIN", "", admin, creator},
		{"GET", "/api/applications/" + other.ID, "", admin, creator},
		{"POST", "/api/applications", `{"name":"n"}`, creator, worker},
		{"GET", "/api/users", "", admin, creator},
		{"GET", "/api/users/app:" + creatorID, "", creator, worker},
		{"PUT", "/api/users/u@x", `{"name":"U"}`, admin, creator},
		{"GET", "/api/users/u@x/checkPermissions?type=APPLICATION&id=" + owned.ID, "", admin, creator},
		{"GET", "/api/groups", "", admin, worker},
		{"PUT", "/api/groups/g", `{"description":"g"}`, admin, creator},
		{"POST", "/api/auth/authorization", `{"subject":{"type":"ROLE","id":"USER"},"target":{"type":"TAG","id":"a:b"},"access":["READ"]}`, admin, creator},
		{"GET", "/api/auth/authorization/TAG/a:b", "", admin, creator},
		{"GET", "/api/auth/subjects/USER/app:" + creatorID + "/grants", "", creator, worker},
		{"GET", "/api/token/userInfo", "", worker, client{t, base, ""}},
	}
	for _, r := range rows {
		if got := r.denied.do(r.method, r.path, r.body); got.status != 403 && got.status != 401 {
			t.Errorf("%s %s by a denied caller = %d %s", r.method, r.path, got.status, got.body)
		}
		if got := r.allowed.do(r.method, r.path, r.body); got.status >= 400 {
			t.Errorf("%s %s by an allowed caller = %d %s", r.method, r.path, got.status, got.body)
		}
	}
	// Listing shows a non-manager only what it may read.
	if list := creator.must(200, "GET", "/api/applications", ""); !strings.Contains(list, owned.ID) || strings.Contains(list, other.ID) {
		t.Fatalf("creator's application list = %s", list)
	}
}

// A caller lists its own grants without AUTHORIZATION_MANAGEMENT, as the
// USER subject of its id (an application's "app:<id>"), but not those of a
// group or role whose id is its own: they are not its record.
func TestSubjectGrantsOfItsOwnIDAreAUsers(t *testing.T) {
	t.Parallel()
	_, base, token := nodetest.StartSecure(t)
	admin := client{t, base, token}
	id, _, _, listerTok := newApp(t, admin, "lister")
	lister, self := client{t, base, listerTok}, "app:"+id
	admin.must(200, "PUT", "/api/groups/"+self, `{"description":"named like an application"}`)
	for subject, tag := range map[string]string{"USER": "own:grant", "GROUP": "group:grant"} {
		admin.must(200, "POST", "/api/auth/authorization",
			`{"subject":{"type":"`+subject+`","id":"`+self+`"},"target":{"type":"TAG","id":"`+tag+`"},"access":["READ"]}`)
	}
	for _, tc := range []struct {
		subjectType string
		status      int
		want        string
	}{
		{"USER", 200, "own:grant"},
		{"user", 200, "own:grant"},
		{"GROUP", 403, ""},
		{"group", 403, ""},
		{"ROLE", 403, ""},
	} {
		r := lister.do("GET", "/api/auth/subjects/"+tc.subjectType+"/"+self+"/grants", "")
		if r.status != tc.status || !strings.Contains(r.body, tc.want) || strings.Contains(r.body, "group:grant") {
			t.Errorf("%s %s's grants, asked by %s = %d %s, want %d", tc.subjectType, self, self, r.status, r.body, tc.status)
		}
	}
	if got := admin.must(200, "GET", "/api/auth/subjects/GROUP/"+self+"/grants", ""); !strings.Contains(got, "group:grant") {
		t.Fatalf("the group's grants, asked by an admin = %s", got)
	}
}

// auditEntry is an entry of GET /api/audit.
type auditEntry struct {
	Action, Target string
	Detail         map[string]string
}

// auditEntries decodes the entries of an answer of GET /api/audit.
func auditEntries(t *testing.T, trail string) []auditEntry {
	t.Helper()
	var res struct{ Entries []auditEntry }
	if err := json.Unmarshal([]byte(trail), &res); err != nil {
		t.Fatal(err)
	}
	return res.Entries
}
