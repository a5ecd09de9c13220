package node_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/internal/nodetest"
	"github.com/flowvault/flowvault/internal/testutil"
)

// A server whose embedded store reached --nats-max-store refuses every
// write until a restart with more room; /health says so in its storage
// probe, among the suppressed results (with how full, to an administrator:
// the config is --insecure-dev), and stays 200: a restart would come back
// at the same bound, and the reads are still served.
func TestHealthAtTheStoreLimit(t *testing.T) {
	t.Parallel()
	cfg := nodetest.Config(filepath.Join(t.TempDir(), "data"))
	cfg.NATSMaxStore = 16 << 20
	n, base := nodetest.StartConfig(t, cfg)
	type result struct {
		Name    string `json:"name"`
		Healthy bool   `json:"healthy"`
		Error   string `json:"errorMessage"`
	}
	var body struct {
		HealthResults           []result `json:"healthResults"`
		SuppressedHealthResults []result `json:"suppressedHealthResults"`
		Healthy                 bool     `json:"healthy"`
	}
	health := func(when string) {
		t.Helper()
		code, out := get(t, base+"/health")
		if err := json.Unmarshal([]byte(out), &body); err != nil || code != http.StatusOK || !body.Healthy ||
			len(body.SuppressedHealthResults) != 1 || body.SuppressedHealthResults[0].Name != "storage" {
			t.Fatalf("health %s: %d %s (%v); want 200, healthy, a storage probe among the suppressed", when, code, out, err)
		}
	}
	health("with room")
	if s := body.SuppressedHealthResults[0]; !s.Healthy || s.Error != "" {
		t.Fatalf("the storage probe with room: %+v", s)
	}

	if err := testutil.FillLog(t, n.Log()); !errors.Is(err, eventlog.ErrNoStorage) {
		t.Fatalf("filling the store: %v; want ErrNoStorage", err)
	}
	health("at the bound")
	if s := body.SuppressedHealthResults[0]; s.Healthy || !strings.Contains(s.Error, "over its bound of 16777216") {
		t.Fatalf("the storage probe at the bound: %+v; want it failed, saying so", s)
	}
	for _, r := range body.HealthResults {
		if !r.Healthy {
			t.Fatalf("probe %s failed at the store's bound: %+v", r.Name, r)
		}
	}
	// The reads are served.
	if code, out := get(t, base+"/api/metadata/workflow"); code != http.StatusOK {
		t.Fatalf("a read at the store's bound: %d %s", code, out)
	}
}
