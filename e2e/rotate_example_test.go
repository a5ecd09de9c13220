package e2e_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// tokenEndpoint issues a fresh token for every request that presents the
// right key pair, like the token APIs the rotation recipe is written for.
type tokenEndpoint struct {
	keyID, keySecret string
	mu               sync.Mutex
	issued           []string
	refused          int
}

func (te *tokenEndpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body struct{ KeyID, KeySecret string }
	err := json.NewDecoder(r.Body).Decode(&body)
	te.mu.Lock()
	defer te.mu.Unlock()
	if err != nil || r.Method != http.MethodPost || body.KeyID != te.keyID || body.KeySecret != te.keySecret {
		te.refused++
		http.Error(w, `{"error":"bad key pair"}`, http.StatusUnauthorized)
		return
	}
	token := fmt.Sprintf("issued-token-%d-%d", time.Now().UnixNano(), len(te.issued))
	te.issued = append(te.issued, token)
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"token":%q,"expiresIn":1800}`, token)
}

func (te *tokenEndpoint) snapshot() (issued []string, refused int) {
	te.mu.Lock()
	defer te.mu.Unlock()
	return slices.Clone(te.issued), te.refused
}

// The rotation example in examples/rotate-secrets runs as shipped: its
// schedule (made to fire every second) starts the workflow, which buys a
// token with the long-lived key pair and stores it with UPDATE_SECRET, run
// after run. No execution view shows the key pair or a token.
//
// Its owner is an admin, or a USER holding the grants its README lists, and
// no more.
func TestRotateSecretsExample(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name  string
		owner func(e *env) *env
	}{
		{"admin", func(e *env) *env { return e }},
		{"the README's grants", func(e *env) *env {
			app, token := e.application("rotator", "USER")
			for _, g := range readmeGrants(t) {
				e.grant(app, g.target, g.id, strings.Split(g.access, ",")...)
			}
			return e.as(token)
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			runRotateExample(t, newSecureEnv(t), tt.owner)
		})
	}
}

// readmeGrants reads the grant commands of the example's README, so that
// the rights it tells a user to give are the ones the test gives.
func readmeGrants(t *testing.T) []struct{ target, id, access string } {
	t.Helper()
	readme, err := os.ReadFile("../examples/rotate-secrets/README.md")
	if err != nil {
		t.Fatal(err)
	}
	var grants []struct{ target, id, access string }
	for _, m := range regexp.MustCompile(`(?m)^bin/flowvault grant add \$rotator ([A-Z_]+):(\S+) (\S+)$`).FindAllStringSubmatch(string(readme), -1) {
		grants = append(grants, struct{ target, id, access string }{m[1], m[2], m[3]})
	}
	if len(grants) == 0 {
		t.Fatal("examples/rotate-secrets/README.md has no grant add $rotator lines")
	}
	return grants
}

func runRotateExample(t *testing.T, e *env, owner func(e *env) *env) {
	te := &tokenEndpoint{keyID: "app-key-id-7d41c9", keySecret: "app-key-secret-0b8e52f3"}
	srv := httptest.NewServer(te)
	defer srv.Close()

	workflow, err := os.ReadFile("../examples/rotate-secrets/workflow.json")
	if err != nil {
		t.Fatal(err)
	}
	scheduleJSON, err := os.ReadFile("../examples/rotate-secrets/schedule.json")
	if err != nil {
		t.Fatal(err)
	}
	var schedule map[string]any
	if err := json.Unmarshal(scheduleJSON, &schedule); err != nil {
		t.Fatal(err)
	}
	schedule["cronExpression"] = "* * * ? * *"

	e.must(http.StatusOK, "PUT", "/api/environment/token_endpoint", srv.URL+"/token")
	e.putSecret("appKeyId", te.keyID)
	e.putSecret("appKeySecret", te.keySecret)
	e.register(string(workflow))
	owner(e).must(http.StatusNoContent, "POST", "/api/scheduler/schedules", schedule)

	// Two rotations: the stored token is one the endpoint issued, and a
	// later run replaces it.
	var first string
	testutil.Eventually(t, 30*time.Second, 100*time.Millisecond, func() error {
		status, value := e.do("GET", "/api/secrets/my_secret_holding_a_token", nil)
		issued, _ := te.snapshot()
		switch {
		case status != http.StatusOK:
			return fmt.Errorf("token secret: %d %s", status, value)
		case !slices.Contains(issued, value):
			return fmt.Errorf("token secret %q was never issued (issued %q)", value, issued)
		case first == "":
			first = value
			return fmt.Errorf("one rotation")
		case value == first:
			return fmt.Errorf("not rotated again yet")
		}
		return nil
	})
	e.must(http.StatusOK, "GET", "/api/scheduler/schedules/rotate_tracker_app_token/pause", nil)

	issued, refused := te.snapshot()
	if refused != 0 {
		t.Fatalf("the token endpoint refused %d requests: the key pair did not resolve", refused)
	}
	// The run that stored the second token may still be finishing.
	var completed []*conductor.Workflow
	testutil.Eventually(t, 30*time.Second, 50*time.Millisecond, func() error {
		completed = completed[:0]
		for _, ex := range e.scheduleExecutions().Results {
			if ex.WorkflowID == "" {
				continue
			}
			if wf := e.workflow(ex.WorkflowID); wf.Status == conductor.WorkflowCompleted {
				completed = append(completed, wf)
			}
		}
		if len(completed) < 2 {
			return fmt.Errorf("%d completed scheduled runs, want at least 2", len(completed))
		}
		return nil
	})
	for _, wf := range completed {
		view, _ := json.Marshal(wf)
		for _, leaked := range append([]string{te.keyID, te.keySecret}, issued...) {
			if strings.Contains(string(view), leaked) || strings.Contains(e.rawLog(wf.WorkflowID), leaked) {
				t.Fatalf("%q reached the execution of %s: %s", leaked, wf.WorkflowID, view)
			}
		}
		if got := taskByRef(wf, "retrieve_token").OutputData["_secrets"]; got != "***" {
			t.Fatalf("retrieve_token output _secrets = %v, want ***", got)
		}
		if got := taskByRef(wf, "update_secret_task_ref").InputData["_secrets"]; got != "***" {
			t.Fatalf("update_secret input _secrets = %v, want ***", got)
		}
	}
}
