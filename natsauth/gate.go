package natsauth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/flowvault/flowvault/internal/logkey"
	"github.com/flowvault/flowvault/workers"
)

// Gate keeps an embedded server's workers account in step with the
// ledger's revocations: Sync opens the account (closed since the server
// started) with the revocation list as the log has it, and each later
// change replaces the list, which closes the revoked users' connections.
//
// The server decides what a connection may do when it connects, so
// credentials are also refused while their principal may not hold them
// (Entitlements): a demoted admin's event subscriber, a worker whose
// principal lost its role or a grant on one of its types, or is gone, is
// disconnected, and connects again if the rights come back. The engines
// refuse such a worker's takes and results too, but its connection would
// still fetch and acknowledge its queue's announcements, which a rightful
// worker then waits for until they are sent again.
type Gate struct {
	authority    *Authority
	ns           *server.Server
	ledger       *Ledger
	entitlements Entitlements
	logger       *slog.Logger
	now          func() time.Time
	kick         chan struct{}
	// failed tells Run of a Sync that failed, its own or another's
	// (RevokeWorker's, the node's first), so that Run tries again soon.
	failed chan struct{}

	mu      sync.Mutex
	applied map[string]int64 // nil until the first Sync
}

// NewGate returns the gate of ns, which a configured, reading ledger.
func NewGate(a *Authority, ns *server.Server, ledger *Ledger, logger *slog.Logger) *Gate {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Gate{authority: a, ns: ns, ledger: ledger, logger: logger.With(logkey.Component, "natsauth"),
		now: time.Now, kick: make(chan struct{}, 1), failed: make(chan struct{}, 1)}
}

// Entitlements says whether the principal credentials were issued to may
// still hold them: they must not outlive its rights.
type Entitlements interface {
	MayHold(ctx context.Context, c Issued) (bool, error)
}

// RefuseUnentitled makes Sync refuse the credentials e says their
// principal may no longer hold. Call Notify when its answers may have
// changed. It must be called before Run.
func (g *Gate) RefuseUnentitled(e Entitlements) { g.entitlements = e }

// ErrUnchecked is what Sync returns, once it applied the list, when the
// rights of some credentials' principals could not be read: those are
// refused until a Sync reads them. A principal whose rights are unknown
// is not known to hold any, and its takes fail on the same read at the
// engines; the others' revocations must not wait for it.
var ErrUnchecked = errors.New("worker credentials refused: their principal's rights could not be read")

// Sync gives the server the ledger's revocation list now, with the
// credentials refused besides (refuseUnentitled), if it changed (the first
// call opens the workers account).
func (g *Gate) Sync() (err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	defer func() {
		if err != nil {
			g.signal(g.failed)
		}
	}()
	now := g.now()
	revoked, err := g.ledger.Revoked(now)
	if err != nil {
		return fmt.Errorf("revocation list: %w", err)
	}
	unchecked, err := g.refuseUnentitled(revoked, now)
	if err != nil {
		return err
	}
	if err := g.apply(revoked); err != nil {
		return err
	}
	if len(unchecked) > 0 {
		return fmt.Errorf("%w: %w", ErrUnchecked, errors.Join(unchecked...))
	}
	return nil
}

// apply gives the server revoked unless it has it already.
func (g *Gate) apply(revoked map[string]int64) error {
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
func (g *Gate) Notify() { g.signal(g.kick) }

// signal sends on c, a channel of one, unless it holds a signal already.
func (g *Gate) signal(c chan<- struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// Run syncs after each Notify, and every interval so that expired
// credentials leave the list, until ctx is done. After a Sync that failed
// (in part: ErrUnchecked), whoever called it, it syncs again after retry,
// not an interval later: until then credentials may be refused that their
// principal holds rightfully, or admitted though revoked.
func (g *Gate) Run(ctx context.Context, interval, retry time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	var again <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-g.failed:
			// A retry armed already stays as it is: failures that keep
			// coming must not put it off.
			if again == nil {
				again = time.After(retry)
			}
			continue
		case <-g.kick:
		case <-t.C:
		case <-again:
		}
		again = nil
		err := g.Sync()
		switch {
		case err == nil || ctx.Err() != nil:
		case errors.Is(err, ErrUnchecked):
			g.logger.Warn("revocation list applied, and worker credentials refused whose principal's rights could not be read", logkey.Err, err)
		default:
			g.logger.Error("revocation list not applied: revoked worker credentials may still connect", logkey.Err, err)
		}
	}
}

// refuseUnentitled adds to revoked the credentials whose principal may no
// longer hold them, and those whose event patterns are refused now: issued
// before CheckEventSubject refused Unicode white space, which the server
// splits a subscribe permission at, such a pattern may allow ">". It
// refuses too those whose principal's rights it could not read, and
// returns why (ErrUnchecked).
func (g *Gate) refuseUnentitled(revoked map[string]int64, now time.Time) (unchecked []error, err error) {
	active, err := g.ledger.Unrevoked(now)
	if err != nil {
		return nil, fmt.Errorf("credentials: %w", err)
	}
	ctx := context.Background()
	for _, c := range active {
		ok := !slices.ContainsFunc(c.Subscribe, func(p string) bool { return workers.CheckEventSubject(p, true) != nil })
		if ok && g.entitlements != nil {
			if ok, err = g.entitlements.MayHold(ctx, c); err != nil {
				unchecked = append(unchecked, fmt.Errorf("credentials %s of %s: %w", c.User, c.IssuedBy, err))
				ok = false
			}
		}
		if !ok {
			revoked[c.User] = c.refusedUntil()
		}
	}
	return unchecked, nil
}
