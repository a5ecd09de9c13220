package e2e_test

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/flowvault/flowvault/internal/nodetest"
)

// The published Conductor SDK's SchemaClient saves, versions, reads,
// lists and deletes schemas on a secure node; a workflow it registers
// with an enforced inputSchema refuses the SDK's start of an input that
// does not conform, with the reason, and accepts one that does.
func TestSDKManagesSchemas(t *testing.T) {
	t.Parallel()
	cfg := nodetest.SecureConfig(filepath.Join(t.TempDir(), "data"))
	_, base := nodetest.StartConfig(t, cfg)
	keyID, keySecret := nodetest.BootstrapKey(t, cfg)

	steps, out := runSDKScript(t, "schemas.mjs", "CONDUCTOR_SERVER_URL="+base, "KEY_ID="+keyID, "KEY_SECRET="+keySecret)
	manage := steps["manage"]
	if manage["latest"] != 2.0 || !slices.Equal(toStrings(manage["latestRequired"]), []string{"orderId", "amount"}) ||
		!slices.Equal(toStrings(manage["firstRequired"]), []string{"orderId"}) || manage["createdBy"] == "" {
		t.Fatalf("manage step = %v\n%s", manage, out)
	}
	if listed, _ := manage["listed"].([]any); len(listed) != 2 {
		t.Fatalf("listed versions = %v", manage["listed"])
	}
	start := steps["start"]
	if refused, _ := start["refused"].(string); start["started"] != true ||
		!strings.Contains(refused, `input of workflow sdk_schema_flow does not conform to schema sdk_order version 2: at /: missing "amount"`) {
		t.Fatalf("start step = %v\n%s", start, out)
	}
	if steps["delete"]["left"] != 0.0 {
		t.Fatalf("delete step = %v", steps["delete"])
	}
}
