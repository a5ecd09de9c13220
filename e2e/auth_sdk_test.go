package e2e_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flowvault/flowvault/internal/nodetest"
	"github.com/flowvault/flowvault/internal/testutil"
)

// The published Conductor SDK (@io-orkes/conductor-javascript@4.0.0)
// authenticates against a secure node with the bootstrap access key: it
// mints a token, manages definitions and an application with its own key,
// logs in with that key, and when its token expires (a 2 s lifetime here)
// the server's EXPIRED_TOKEN answer makes it mint a new one and retry.
func TestSDKAuthenticatesAndRefreshes(t *testing.T) {
	t.Parallel()
	cfg := nodetest.SecureConfig(filepath.Join(t.TempDir(), "data"))
	cfg.TokenTTL = 2 * time.Second
	logger, logs := testutil.CapturingLogger()
	_, base := nodetest.StartLogger(t, cfg, logger)
	keyID, secret := nodetest.BootstrapKey(t, cfg)

	steps, out := runSDKScript(t, "auth.mjs", "CONDUCTOR_SERVER_URL="+base, "KEY_ID="+keyID, "KEY_SECRET="+secret, "WAIT_MS=3000")
	if s := steps["metadata"]; s["name"] != "sdk_auth_task" || s["createdBy"] != "app:bootstrap-admin" {
		t.Fatalf("metadata step = %v\n%s", s, out)
	}
	if s := steps["application"]; s["keys"] != 1.0 || s["status"] != "ACTIVE" || s["listed"] != false {
		t.Fatalf("application step = %v\n%s", s, out)
	}
	if s := steps["app-login"]; !strings.Contains(strings.Join(toStrings(s["taskDefs"]), ","), "sdk_auth_task") {
		t.Fatalf("app-login step = %v\n%s", s, out)
	}
	if s := steps["after-expiry"]; s["name"] != "sdk_auth_task" {
		t.Fatalf("no call after the token expired: %v\n%s", s, out)
	}
	l := logs.String()
	if !strings.Contains(l, `"reason":"EXPIRED_TOKEN"`) {
		t.Fatalf("the server never answered EXPIRED_TOKEN:\n%.3000s", l)
	}
	if n := strings.Count(l, `"msg":"token issued","component":"auth","key_id":"`+keyID+`"`); n < 2 {
		t.Fatalf("the SDK minted %d tokens with the bootstrap key, want a refresh (>= 2)", n)
	}
	if strings.Contains(l, secret) || strings.Contains(string(out), secret) {
		t.Fatal("the key secret was logged")
	}
}

// runSDKScript runs a script of testdata/sdk with node and returns the
// JSON lines it printed, by their "step" field, and its whole output.
func runSDKScript(t *testing.T, script string, env ...string) (map[string]map[string]any, []byte) {
	t.Helper()
	dir := npmDir(t, filepath.Join("testdata", "sdk"), "@io-orkes/conductor-javascript")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", script)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", script, err, out)
	}
	steps := map[string]map[string]any{}
	for _, line := range strings.Split(string(out), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["step"] != nil {
			steps[m["step"].(string)] = m
		}
	}
	return steps, out
}

func toStrings(v any) []string {
	var out []string
	for _, x := range v.([]any) {
		out = append(out, x.(string))
	}
	return out
}
