package e2e_test

import (
	"path/filepath"
	"testing"

	"github.com/flowvault/flowvault/internal/nodetest"
)

// The published Conductor SDK's MetadataClient sets, reads and removes a
// workflow's rate limit (it calls /api/metadata/workflow/{name}/rate-limit,
// and reads a 404 as none set) on a secure node, and the limit it sets
// queues a second start under the same key.
func TestSDKManagesWorkflowRateLimit(t *testing.T) {
	t.Parallel()
	cfg := nodetest.SecureConfig(filepath.Join(t.TempDir(), "data"))
	_, base := nodetest.StartConfig(t, cfg)
	keyID, keySecret := nodetest.BootstrapKey(t, cfg)

	steps, out := runSDKScript(t, "ratelimit.mjs", "CONDUCTOR_SERVER_URL="+base, "KEY_ID="+keyID, "KEY_SECRET="+keySecret)
	set, _ := steps["set"]["set"].(map[string]any)
	if steps["set"]["before"] != nil || set["concurrentExecLimit"] != 1.0 || set["rateLimitKey"] != "${workflow.correlationId}" {
		t.Fatalf("set step = %v\n%s", steps["set"], out)
	}
	if start := steps["start"]; start["secondRateLimited"] != true || start["secondTasks"] != 0.0 {
		t.Fatalf("start step = %v\n%s", start, out)
	}
	if remove, ok := steps["remove"]; !ok || remove["after"] != nil {
		t.Fatalf("remove step = %v\n%s", remove, out)
	}
}
