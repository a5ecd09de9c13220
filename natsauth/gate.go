package natsauth

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/flowvault/flowvault/internal/logkey"
)

// Gate keeps an embedded server's workers account in step with the
// ledger's revocations: Sync opens the account (closed since the server
// started) with the revocation list as the log has it, and each later
// change replaces the list, which closes the revoked users' connections.
type Gate struct {
	authority *Authority
	ns        *server.Server
	ledger    *Ledger
	logger    *slog.Logger
	now       func() time.Time
	kick      chan struct{}

	mu      sync.Mutex
	applied map[string]int64 // nil until the first Sync
}

// NewGate returns the gate of ns, which a configured, reading ledger.
func NewGate(a *Authority, ns *server.Server, ledger *Ledger, logger *slog.Logger) *Gate {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Gate{authority: a, ns: ns, ledger: ledger, logger: logger.With(logkey.Component, "natsauth"),
		now: time.Now, kick: make(chan struct{}, 1)}
}

// Sync gives the server the ledger's revocation list now, if it changed
// (the first call opens the workers account).
func (g *Gate) Sync() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	revoked, err := g.ledger.Revoked(g.now())
	if err != nil {
		return fmt.Errorf("revocation list: %w", err)
	}
	if g.applied != nil && maps.Equal(g.applied, revoked) {
		return nil
	}
	if err := g.authority.Admit(g.ns, revoked); err != nil {
		return err
	}
	if g.applied == nil {
		g.logger.Info("workers admitted", logkey.Count, len(revoked))
	}
	g.applied = revoked
	return nil
}

// Notify asks Run to Sync soon; it never blocks (Projection.Notify).
func (g *Gate) Notify() {
	select {
	case g.kick <- struct{}{}:
	default:
	}
}

// Run syncs after each Notify, and every interval so that expired
// credentials leave the list, until ctx is done.
func (g *Gate) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-g.kick:
		case <-t.C:
		}
		if err := g.Sync(); err != nil && ctx.Err() == nil {
			g.logger.Error("revocation list not applied: revoked worker credentials may still connect", logkey.Err, err)
		}
	}
}
