package e2e_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flowvault/flowvault/internal/nodetest"
	"github.com/flowvault/flowvault/internal/testutil"
)

// A client that swapped its access key's fields sends the secret as the
// key id. It is refused like any bad key, and the "key id" reaches neither
// the log nor the audit trail, which keeps a refusal for ever: a key id
// is never logged unless it is one in form (a UUID).
func TestSwappedKeyFieldsLeakNothing(t *testing.T) {
	t.Parallel()
	logger, logs := testutil.CapturingLogger()
	cfg := nodetest.SecureConfig(filepath.Join(t.TempDir(), "data"))
	n, base := nodetest.StartLogger(t, cfg, logger)
	e := &env{t: t, node: n, base: base, token: nodetest.AdminToken(t, cfg, base)}
	keyID, keySecret := nodetest.BootstrapKey(t, cfg)

	swapped := fmt.Sprintf(`{"keyId":%q,"keySecret":%q}`, keySecret, keyID)
	anon := e.as("")
	if status, body := anon.do("POST", "/api/token", swapped); status != http.StatusUnauthorized {
		t.Fatalf("swapped fields: %d %s", status, body)
	}
	// A well-formed key id with a wrong secret is logged by its id.
	if status, _ := anon.do("POST", "/api/token", fmt.Sprintf(`{"keyId":%q,"keySecret":"wrong"}`, keyID)); status != http.StatusUnauthorized {
		t.Fatalf("wrong secret: %d", status)
	}
	var trail struct {
		Entries []struct{ Action, Target string }
	}
	testutil.Eventually(t, 10*time.Second, 20*time.Millisecond, func() error {
		out := e.must(http.StatusOK, "GET", "/api/audit?limit=1000", nil)
		if strings.Contains(out, keySecret) {
			t.Fatal("the audit trail holds the key secret sent as a key id")
		}
		if err := json.Unmarshal([]byte(out), &trail); err != nil {
			return err
		}
		refused := 0
		for _, en := range trail.Entries {
			if en.Action == "token.refuse" {
				refused++
			}
		}
		if refused < 2 {
			return fmt.Errorf("%d token refusals in the trail, want 2: %+v", refused, trail.Entries)
		}
		return nil
	})
	if out := logs.String(); strings.Contains(out, keySecret) || !strings.Contains(out, keyID) {
		t.Fatalf("the log holds the secret sent as a key id (%v), or not the well-formed key id (%v)",
			strings.Contains(out, keySecret), strings.Contains(out, keyID))
	}
}
