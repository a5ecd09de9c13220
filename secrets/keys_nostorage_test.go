package secrets

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/internal/testutil"
)

// A key stored on a NATS server at its storage limit fails as an append
// there does: ErrNoStorage, unavailable (a retryable 503 at the API), not
// JetStream's bare insufficient resources, which the API answered as an
// internal error (500, not retryable) to a secret's PUT on a full store.
func TestNewKeyOnAFullServer(t *testing.T) {
	ns := testutil.StartNATS(t, t.TempDir(), 0, func(o *server.Options) { o.JetStreamMaxStore = 1 << 20 })
	l := testutil.OpenExternalLog(t, ns)
	k := mustOpenKeys(t, l, GenerateMasterKey())
	ctx := testutil.Context(t, 30*time.Second)
	if err := testutil.FillLog(t, l); !errors.Is(err, eventlog.ErrNoStorage) {
		t.Fatalf("filling the server: %v; want ErrNoStorage", err)
	}
	for _, tc := range []struct {
		name string
		make func(context.Context) (*DataKey, error)
	}{
		{"data key", func(ctx context.Context) (*DataKey, error) { return k.NewDataKey(ctx, "secret.full.k1") }},
		{"pooled key", k.NewPooledKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.make(ctx)
			if !errors.Is(err, eventlog.ErrNoStorage) || !errors.Is(err, fault.ErrUnavailable) {
				t.Fatalf("a new key on a full server: %v; want ErrNoStorage, unavailable", err)
			}
		})
	}
}
