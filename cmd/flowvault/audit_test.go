package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/flowvault/flowvault/internal/leaktest"
	"github.com/flowvault/flowvault/internal/nodetest"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/metadata"
	"github.com/flowvault/flowvault/node"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/secrets"
)

// auditScenario is a secure node after a scripted series of the things
// the audit trail records, and what a test needs to read its trail: the
// random values to normalize and the planted secret.
type auditScenario struct {
	t       *testing.T
	n       *node.Node
	cfg     node.Config
	base    string
	admin   nodetest.Client
	app     nodetest.Client
	appID   string
	secret  []byte
	scanner *leaktest.Scanner
	// names maps the random strings of this run (ids, fingerprints) to
	// the placeholders the expected trail uses.
	names map[string]string
	// mid is a time between the first workflow's end and the revocation.
	mid time.Time
}

const auditFlow = `{"name":"audit_flow","version":1,"tasks":[{"name":"measure","taskReferenceName":"measure",
  "type":"JSON_JQ_TRANSFORM","inputParameters":{"queryExpression":".v | length","v":"${workflow.secrets.db}"}}]}`

func newAuditScenario(t *testing.T) *auditScenario {
	t.Helper()
	cfg := nodetest.SecureConfig(filepath.Join(t.TempDir(), "data"))
	n, base := nodetest.StartConfig(t, cfg)
	s := &auditScenario{t: t, n: n, cfg: cfg, base: base, secret: leaktest.RandomSecret(32), names: map[string]string{}}
	s.scanner = leaktest.New(s.secret)
	bootKey, _ := nodetest.BootstrapKey(t, cfg)
	s.names[bootKey] = "<bootstrap-key>"
	s.admin = nodetest.Client{TB: t, Base: base, Token: nodetest.AdminToken(t, cfg, base), HTTP: s.scanner.Client(isSecretRead)}
	admin := s.admin

	// An application that may run workflows, with an access key.
	var app struct{ ID string }
	decodeJSON(t, admin.Must(200, "POST", "/api/applications", `{"name":"billing"}`), &app)
	s.appID, s.names[app.ID] = app.ID, "<app>"
	admin.Must(200, "POST", "/api/applications/"+app.ID+"/roles/WORKFLOW_MANAGER", "")
	var key struct{ ID, Secret string }
	decodeJSON(t, admin.Must(200, "POST", "/api/applications/"+app.ID+"/accessKeys", ""), &key)
	s.names[key.ID] = "<app-key>"
	// READ on every secret tagged env:prod.
	admin.Must(200, "POST", "/api/auth/authorization", `{"subject":{"type":"USER","id":"app:`+app.ID+`"},"target":{"type":"TAG","id":"env:prod"},"access":["READ"]}`)
	// The secret, tagged into the grant.
	admin.Must(200, "PUT", "/api/secrets/db", string(s.secret))
	admin.Must(200, "PUT", "/api/secrets/db/tags", `[{"key":"env","value":"prod"}]`)
	var meta struct{ Fingerprint string }
	decodeJSON(t, admin.Must(200, "GET", "/api/secrets/db/metadata", ""), &meta)
	s.names[meta.Fingerprint] = "<fp>"
	admin.Must(204, "POST", "/api/metadata/workflow", auditFlow)

	// The application reads the secret through the API and has a workflow
	// resolve it at hand-off.
	s.app = nodetest.Client{TB: t, Base: base, Token: nodetest.MintToken(t, base, key.ID, key.Secret), HTTP: s.admin.HTTP}
	if got := s.app.Must(200, "GET", "/api/secrets/db", ""); got != string(s.secret) {
		t.Fatalf("the application read %d bytes, want the secret", len(got))
	}
	s.runFlow("<wf1>", conductor.WorkflowCompleted)
	s.mid = time.Now()

	// Revoked: the next read is denied and the next resolution refused.
	admin.Must(200, "DELETE", "/api/auth/authorization", `{"subject":{"type":"USER","id":"app:`+app.ID+`"},"target":{"type":"TAG","id":"env:prod"},"access":["READ"]}`)
	s.app.Must(403, "GET", "/api/secrets/db", "")
	s.runFlow("<wf2>", conductor.WorkflowFailed)

	// Failed authentications: a wrong key secret, a forged token.
	nodetest.Client{TB: t, Base: base}.Must(401, "POST", "/api/token", `{"keyId":"`+key.ID+`","keySecret":"wrong-secret"}`)
	nodetest.Client{TB: t, Base: base, Token: "not.a.token"}.Must(401, "GET", "/api/secrets/db", "")

	// An environment value written and read; the secret deleted.
	admin.Send("PUT", "/api/environment/region", "text/plain", "eu-west-1")
	admin.Must(200, "GET", "/api/environment/region", "")
	admin.Must(200, "DELETE", "/api/secrets/db", "")

	// Refusals are recorded in the background: wait for the last one.
	testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() error {
		if trail := admin.Must(200, "GET", "/api/audit?principal=&limit=5", ""); !strings.Contains(trail, `"auth.fail"`) {
			return fmt.Errorf("the 401 is not in the trail yet")
		}
		return nil
	})
	return s
}

// isSecretRead exempts the one response that carries the value from the
// leak scan.
func isSecretRead(r *http.Request) bool { return r.Method == "GET" && r.URL.Path == "/api/secrets/db" }

// runFlow starts audit_flow as the application and waits for status.
func (s *auditScenario) runFlow(name, status string) {
	s.t.Helper()
	id := s.app.Must(200, "POST", "/api/workflow", `{"name":"audit_flow"}`)
	s.names[id] = name
	var wf conductor.Workflow
	testutil.Eventually(s.t, 30*time.Second, 10*time.Millisecond, func() error {
		decodeJSON(s.t, s.admin.Must(200, "GET", "/api/workflow/"+id+"?includeTasks=true", ""), &wf)
		if wf.Status != status {
			return fmt.Errorf("workflow %s is %s, want %s", id, wf.Status, status)
		}
		return nil
	})
	s.names[wf.Tasks[0].TaskID] = name + "-task"
}

func decodeJSON(t *testing.T, s string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(s), v); err != nil {
		t.Fatalf("decode %.200s: %v", s, err)
	}
}

var (
	lineTime  = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z `)
	tokenID   = regexp.MustCompile(`token_id=\S+`)
	expiresAt = regexp.MustCompile(`expires=\S+`)
	// A system task's worker names the engine and its process.
	engineWorker = regexp.MustCompile(`worker=flowvault/[A-Z2-7]{26}/[0-9a-f-]{36}`)
)

// normalize replaces what is random in a trail: times, token ids and
// expiries, the engine and process of a system task's worker, and the ids
// and fingerprints the scenario noted.
func (s *auditScenario) normalize(out string) string {
	if out == "" {
		return ""
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	for i, l := range lines {
		l = lineTime.ReplaceAllString(l, "T ")
		l = tokenID.ReplaceAllString(l, "token_id=<jti>")
		l = expiresAt.ReplaceAllString(l, "expires=<exp>")
		l = engineWorker.ReplaceAllString(l, "worker=flowvault/<engine>/<boot>")
		for v, name := range s.names {
			l = strings.ReplaceAll(l, v, name)
		}
		lines[i] = l
	}
	return strings.Join(lines, "\n") + "\n"
}

// auditGolden is the whole trail of the scenario, normalized. Each line
// is one thing the trail must show: access-control changes and token
// issuance (auth stream), secret writes and tags (secrets stream), a read
// through the API, the resolution at hand-off with how it was granted, and
// the refusals (403, refused resolution, wrong key secret, forged token).
var auditGolden = strings.Split(`T "flowvault bootstrap" app.create APPLICATION:bootstrap-admin name="Bootstrap admin"
T "flowvault bootstrap" app.roles APPLICATION:bootstrap-admin added=ADMIN roles=ADMIN
T "flowvault bootstrap" key.create ACCESS_KEY:<bootstrap-key> application=bootstrap-admin
T app:bootstrap-admin token.issue ACCESS_KEY:<bootstrap-key> addr=127.0.0.1 expires=<exp> token_id=<jti>
T app:bootstrap-admin app.create APPLICATION:<app> name=billing
T app:bootstrap-admin app.roles APPLICATION:<app> added=WORKFLOW_MANAGER roles=WORKFLOW_MANAGER
T app:bootstrap-admin key.create ACCESS_KEY:<app-key> application=<app>
T app:bootstrap-admin access.grant TAG:env:prod access=READ granted=READ subject=USER:app:<app>
T app:bootstrap-admin secret.put SECRET_NAME:db fingerprint=<fp> size=32 version=1
T app:bootstrap-admin secret.tags SECRET_NAME:db tags="env=prod"
T app:bootstrap-admin workflowdef.register WORKFLOW_DEF:audit_flow version=1
T app:<app> token.issue ACCESS_KEY:<app-key> addr=127.0.0.1 expires=<exp> token_id=<jti>
T app:<app> secret.read SECRET_NAME:db addr=127.0.0.1 fingerprint=<fp> version=1
T app:<app> secret.resolve SECRET_NAME:db fingerprint=<fp> granted_by="tag env:prod granted to USER:app:<app>" task=<wf1>-task version=1 worker=flowvault/<engine>/<boot> workflow=<wf1>
T app:bootstrap-admin access.revoke TAG:env:prod revoked=READ subject=USER:app:<app>
T app:<app> access.deny SECRET_NAME:db access=READ addr=127.0.0.1 method=GET path=/api/secrets/db reason="no grant of READ on SECRET_NAME:db"
T app:<app> secret.resolve_refused SECRET_NAME:db reason="app:<app> may not READ SECRET_NAME:db (no grant of READ on SECRET_NAME:db)" task=<wf2>-task worker=flowvault/<engine>/<boot> workflow=<wf2>
T - token.refuse ACCESS_KEY:<app-key> addr=127.0.0.1 reason="wrong access key secret"
T - auth.fail REQUEST:/api/secrets/db addr=127.0.0.1 code=INVALID_TOKEN method=GET reason="malformed token header"
T app:bootstrap-admin env.put ENV_VARIABLE:region size=9
T app:bootstrap-admin env.read ENV_VARIABLE:region addr=127.0.0.1
T app:bootstrap-admin secret.delete SECRET_NAME:db version=1`, "\n")

// golden returns the golden trail's lines numbered from (1-based, as an
// editor shows them), joined as the CLI prints them.
func golden(lines ...int) string {
	var b strings.Builder
	for _, n := range lines {
		b.WriteString(auditGolden[n-1] + "\n")
	}
	return b.String()
}

func span(from, to int) []int {
	var out []int
	for n := from; n <= to; n++ {
		out = append(out, n)
	}
	return out
}

// The trail, replayed from the log by `flowvault audit`, is exactly the
// scenario's, and each filter narrows it to the entries it names. No
// output carries the secret's value in any encoding.
func TestAuditTrailCLI(t *testing.T) {
	t.Parallel()
	bin := buildBinary(t)
	s := newAuditScenario(t)
	// A token rather than the key file: the CLI minting its own would add
	// an issuance to the trail with every run.
	env := []string{"FLOWVAULT_TOKEN=" + s.admin.Token, "FLOWVAULT_SERVER=" + s.base}
	audit := func(t *testing.T, args ...string) string {
		t.Helper()
		out, errOut, code := cli(t, bin, env, nil, append([]string{"audit"}, args...)...)
		s.scanner.Scan("flowvault audit "+strings.Join(args, " "), []byte(out+errOut))
		if code != 0 {
			t.Fatalf("flowvault audit %v: exit %d\n%s%s", args, code, out, errOut)
		}
		return out
	}
	wf1, wf2 := s.id("<wf1>"), s.id("<wf2>")
	mid := s.mid.UTC().Format(time.RFC3339Nano)
	all := span(1, len(auditGolden))
	tests := []struct {
		name string
		args []string
		want []int
	}{
		{"everything", nil, all},
		{"principal", []string{"--principal", "app:" + s.appID}, []int{12, 13, 14, 16, 17}},
		{"secret", []string{"--secret", "db"}, []int{9, 10, 13, 14, 16, 17, 22}},
		{"env", []string{"--env", "region"}, []int{20, 21}},
		{"workflow resolved", []string{"--workflow", wf1}, []int{14}},
		{"workflow refused", []string{"--workflow", wf2}, []int{17}},
		{"to", []string{"--to", mid}, span(1, 14)},
		{"from", []string{"--from", mid}, span(15, 22)},
		{"principal and from", []string{"--principal", "app:" + s.appID, "--from", mid}, []int{16, 17}},
		{"secret and to", []string{"--secret", "db", "--to", mid}, []int{9, 10, 13, 14}},
		{"limit keeps the latest", []string{"--limit", "2"}, []int{21, 22}},
		{"nobody", []string{"--principal", "nobody"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, want := s.normalize(audit(t, tt.args...)), golden(tt.want...); got != want {
				t.Errorf("flowvault audit %v:\n%s\nwant:\n%s", tt.args, got, want)
			}
		})
	}
	// The JSON answer holds the same entries.
	var res struct {
		Entries []struct{ Action, Target string }
	}
	decodeJSON(t, audit(t, "--json", "--secret", "db"), &res)
	if len(res.Entries) != 7 || res.Entries[0].Action != "secret.put" || res.Entries[6].Action != "secret.delete" {
		t.Errorf("--json --secret db = %+v", res.Entries)
	}
	// The value is nowhere in what was printed, nor in the log the trail
	// was replayed from (the audit stream included).
	s.scanner.ScanStreams(t, s.n.Log().JetStream())
	s.scanner.Check(t)

	// Only admins read the trail, and the refusal is in it.
	out, errOut, code := cli(t, bin, []string{"FLOWVAULT_TOKEN=" + s.app.Token, "FLOWVAULT_SERVER=" + s.base}, nil, "audit")
	if code == 0 || out != "" || !strings.Contains(errOut, "403") {
		t.Fatalf("a non-admin's flowvault audit: exit %d\n%s%s", code, out, errOut)
	}
	s.app.Must(403, "POST", "/api/audit/verify", "")
	testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() error {
		got := s.normalize(audit(t, "--principal", "app:"+s.appID, "--from", mid))
		if !strings.Contains(got, "access.deny REQUEST:/api/audit addr=") ||
			!strings.Contains(got, "access.deny REQUEST:/api/audit/verify addr=") {
			return fmt.Errorf("the refusals of the trail are not in it:\n%s", got)
		}
		return nil
	})
}

// id is the scenario's id that normalizes to name.
func (s *auditScenario) id(name string) string {
	for id, n := range s.names {
		if n == name {
			return id
		}
	}
	s.t.Fatalf("no id named %s", name)
	return ""
}

// `flowvault audit --verify` finds no drift on a healthy node, and names
// the read model and key of each difference once the store of a stopped
// node was edited behind its projections' back.
func TestAuditVerifyCLI(t *testing.T) {
	t.Parallel()
	bin := buildBinary(t)
	s := newAuditScenario(t)
	env := keyFileEnv(s.cfg.DataDir)
	verify := func(base string) (string, int) {
		t.Helper()
		out, errOut, code := cli(t, bin, append(env, "FLOWVAULT_SERVER="+base), nil, "audit", "--verify")
		s.scanner.Scan("flowvault audit --verify", []byte(out+errOut))
		t.Logf("flowvault audit --verify: exit %d\n%s%s", code, out, errOut)
		return out, code
	}
	out, code := verify(s.base)
	if code != 0 || !strings.HasPrefix(lastLine(out), "no drift: 6 read models match") {
		t.Fatalf("a healthy node: exit %d\n%s", code, out)
	}
	for _, model := range []string{"auth", "executions", "metadata", "schedules", "secrets", "natscreds"} {
		if !regexp.MustCompile(`(?m)^` + model + ` .* ok$`).MatchString(out) {
			t.Errorf("read model %s not reported ok:\n%s", model, out)
		}
	}

	ctx := testutil.Context(t, 30*time.Second)
	if err := s.n.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	db, err := pebble.Open(s.cfg.PebbleDir(), &pebble.Options{Logger: quietPebble{}})
	if err != nil {
		t.Fatal(err)
	}
	changed := firstKey(t, db, "p/"+metadata.ProjectionName+"/")
	for _, kv := range [][2]string{{"p/" + secrets.ProjectionName + "/zz-planted", "x"}, {changed, "tampered"}, {"p/ghost/k", "v"}} {
		if err := db.Set([]byte(kv[0]), []byte(kv[1]), pebble.Sync); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	_, base := nodetest.StartConfig(t, s.cfg)
	out, code = verify(base)
	if code != 1 || lastLine(out) != "drift: 3 of 7 read models differ from their rebuild from the log" {
		t.Fatalf("a tampered node: exit %d\n%s", code, out)
	}
	for _, want := range []string{
		`(?m)^secrets .* DRIFT: 1 differences\n  extra +"p/secrets/zz-planted" live=sha256:\w+$`,
		`(?m)^metadata .* DRIFT: 1 differences\n  changed +` + regexp.QuoteMeta(strconv.Quote(changed)) + ` live=sha256:\w+ rebuilt=sha256:\w+$`,
		`(?m)^\(unowned\) .* DRIFT: 1 differences\n  extra +"p/ghost/k" live=sha256:\w+$`,
		`(?m)^auth .* ok$`,
	} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("verification does not match %s:\n%s", want, out)
		}
	}
	s.scanner.Check(t)
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// firstKey is the first key of db under prefix.
func firstKey(t *testing.T, db *pebble.DB, prefix string) string {
	t.Helper()
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte(prefix), UpperBound: []byte(prefix + "\xff")})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	if !it.First() {
		t.Fatalf("no key under %s", prefix)
	}
	return string(it.Key())
}

// quietPebble drops pebble's informational log lines (WAL replay).
type quietPebble struct{}

func (quietPebble) Infof(string, ...any)         {}
func (quietPebble) Errorf(f string, args ...any) { fmt.Fprintf(os.Stderr, "pebble: "+f+"\n", args...) }
func (quietPebble) Fatalf(f string, args ...any) { panic(fmt.Sprintf("pebble: "+f, args...)) }
