package natsauth

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"testing"
	"time"

	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/projections"
	"github.com/flowvault/flowvault/schemas"
)

type mayHoldAll struct{}

func (mayHoldAll) MayHold(context.Context, Issued) (bool, error) { return true, nil }

// BenchmarkGateSync is a revocation-list sync that changes nothing, over
// a ledger of 10 live credentials (5 revoked) after 10,000 expired ones
// (half of them revoked): what it costs should follow the live ones, not
// every credential ever issued.
func BenchmarkGateSync(b *testing.B) {
	store := testutil.OpenStore(b)
	now := time.UnixMilli(1_800_000_000_000)
	var evs []schemas.Event
	add := func(user string, expires int64, revoke bool) {
		evs = append(evs, &schemas.WorkerCredentialsIssued{User: user, By: "app:a", TaskTypes: []string{"t"}, Expires: expires, Time: 1})
		if revoke {
			evs = append(evs, &schemas.WorkerCredentialsRevoked{User: user, By: "app:a", Time: 2})
		}
	}
	for i := range 10_000 {
		add(fmt.Sprintf("UOLD%05d", i), now.Unix()-int64(i)-1, i%2 == 0)
	}
	for i := range 10 {
		add(fmt.Sprintf("ULIVE%02d", i), now.Unix()+3600, i%2 == 0)
	}
	rec := testutil.Record(b, AuditSubject, 1, evs...)
	if err := store.Update(ProjectionName, func(batch *projections.Batch) error { return Projection{}.Apply(batch, rec) }); err != nil {
		b.Fatal(err)
	}
	g := &Gate{ledger: NewLedger(store), entitlements: mayHoldAll{}, logger: slog.New(slog.DiscardHandler), now: func() time.Time { return now }}
	want, err := g.ledger.Revoked(now)
	if err != nil {
		b.Fatal(err)
	}
	if len(want) != 5 {
		b.Fatalf("revocation list of %d users, want 5", len(want))
	}
	// As applied by an earlier sync: Sync reads the ledger and leaves the
	// server alone.
	g.applied = maps.Clone(want)
	for b.Loop() {
		if err := g.Sync(); err != nil {
			b.Fatal(err)
		}
	}
}
