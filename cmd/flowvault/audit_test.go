package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/flowvault/flowvault/internal/leaktest"
	"github.com/flowvault/flowvault/internal/nodetest"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/node"
	"github.com/flowvault/flowvault/schemas/conductor"
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
)

// normalize replaces what is random in a trail: times, token ids and
// expiries, and the ids and fingerprints the scenario noted.
func (s *auditScenario) normalize(out string) string {
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	for i, l := range lines {
		l = lineTime.ReplaceAllString(l, "T ")
		l = tokenID.ReplaceAllString(l, "token_id=<jti>")
		l = expiresAt.ReplaceAllString(l, "expires=<exp>")
		for v, name := range s.names {
			l = strings.ReplaceAll(l, v, name)
		}
		lines[i] = l
	}
	return strings.Join(lines, "\n") + "\n"
}

func TestAuditTrailCLI(t *testing.T) {
	t.Parallel()
	bin := buildBinary(t)
	s := newAuditScenario(t)
	out, errOut, code := cli(t, bin, []string{"FLOWVAULT_KEY_FILE=" + filepath.Join(s.cfg.DataDir, "bootstrap-admin.json")}, nil,
		"audit", "--server", s.base)
	t.Logf("code %d\n%s\n%s", code, s.normalize(out), errOut)
}
