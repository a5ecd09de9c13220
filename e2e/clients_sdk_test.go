package e2e_test

import (
	"path/filepath"
	"testing"

	"github.com/flowvault/flowvault/internal/nodetest"
)

// The methods of the published Conductor SDK's clients that the other
// scripts leave out answer as the SDK expects on a secure node:
// clients.mjs calls each one (MetadataClient's tags and deletions,
// WorkflowExecutor's signals, state updates, skips, go-backs and
// removals, ApplicationClient, AuthorizationClient, SchedulerClient,
// TaskHandler's worker(), the EventClient calls not served) and checks its
// answer and the state it changed.
func TestSDKClientsCallEveryMethod(t *testing.T) {
	t.Parallel()
	cfg := nodetest.SecureConfig(filepath.Join(t.TempDir(), "data"))
	_, base := nodetest.StartConfig(t, cfg)
	keyID, keySecret := nodetest.BootstrapKey(t, cfg)

	steps, out := runSDKScript(t, "clients.mjs", "CONDUCTOR_SERVER_URL="+base, "KEY_ID="+keyID, "KEY_SECRET="+keySecret)
	// The count makes sure the script reached its end through every call.
	if n := steps["done"]["calls"]; n != 80.0 {
		t.Fatalf("clients.mjs made %v checked calls, want 80:\n%s", n, out)
	}
}
