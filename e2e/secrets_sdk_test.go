package e2e_test

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/flowvault/flowvault/internal/nodetest"
)

// The published Conductor SDK's SecretClient puts, reads, lists, tags and
// deletes secrets on a secure node; a workflow started with the SDK sends
// `Authorization: Bearer ${workflow.secrets.api_token}` from its HTTP task
// and a local server receives the real value, while the workflow as the
// SDK and the REST API read it shows only the reference and `***`. The
// worker is an application of its own, with the WORKER role and EXECUTE on
// its one task type.
func TestSDKManagesAndUsesSecrets(t *testing.T) {
	t.Parallel()
	cfg := nodetest.SecureConfig(filepath.Join(t.TempDir(), "data"))
	_, base := nodetest.StartConfig(t, cfg)
	keyID, keySecret := nodetest.BootstrapKey(t, cfg)
	raw := make([]byte, 16)
	rand.Read(raw)
	value := hex.EncodeToString(raw)

	var mu sync.Mutex
	var gotAuth, gotEcho string
	remote := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		gotAuth, gotEcho = r.Header.Get("Authorization"), r.Header.Get("X-Echo")
		mu.Unlock()
		fmt.Fprint(w, `{"ok":true}`)
	}))
	defer remote.Close()

	steps, out := runSDKScript(t, "secrets.mjs", "CONDUCTOR_SERVER_URL="+base, "KEY_ID="+keyID, "KEY_SECRET="+keySecret,
		"SECRET_VALUE="+value, "HTTP_URL="+remote.URL)
	if strings.Contains(string(out), value) {
		t.Fatalf("the script printed the secret value:\n%s", out)
	}
	manage := steps["manage"]
	if names := toStrings(manage["names"]); !slices.Contains(names, "api_token") || slices.Contains(names, "sdk_scratch") {
		t.Errorf("names after delete = %v", names)
	}
	if tags := toStrings(manage["tags"]); !slices.Equal(tags, []string{"team:payments"}) {
		t.Errorf("tags = %v, want [team:payments]", tags)
	}

	run := steps["run"]
	if run["status"] != "COMPLETED" || run["leaked"] != false {
		t.Fatalf("run step = %v", run)
	}
	if output, _ := run["output"].(map[string]any); output["matched"] != true || output["status"] != 200.0 {
		t.Errorf("workflow output = %v: the worker did not see the value, or the call failed", output)
	}
	if run["literal"] != "${workflow.secrets.api_token}" {
		t.Errorf("stored task input = %v, want the reference", run["literal"])
	}
	if wo, _ := run["workerOutput"].(map[string]any); wo["_secrets"] != "***" {
		t.Errorf("worker output as read = %v, want _secrets masked", wo)
	}
	mu.Lock()
	defer mu.Unlock()
	if gotAuth != "Bearer "+value || gotEcho != value {
		t.Errorf("the local server got Authorization %q, X-Echo %q; want the real value", gotAuth, gotEcho)
	}

	e := &env{t: t, base: base, token: nodetest.MintToken(t, base, keyID, keySecret)}
	id := run["id"].(string)
	body := e.must(http.StatusOK, "GET", "/api/workflow/"+id+"?includeTasks=true", nil)
	if strings.Contains(body, value) || !strings.Contains(body, `"_secrets":"***"`) {
		t.Errorf("GET /api/workflow/%s: value present or _secrets not masked:\n%s", id, body)
	}
}
