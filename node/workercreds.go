package node

import (
	"context"
	"errors"
	"time"

	"github.com/flowvault/flowvault/api"
	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/internal/logkey"
	"github.com/flowvault/flowvault/natsauth"
	"github.com/flowvault/flowvault/projections"
)

// workerCreds are the node's worker credentials parts: the read model of
// those issued and revoked, and, on the embedded server, the gate that
// keeps its revocation list.
type workerCreds struct {
	ledger *natsauth.Ledger
	runner *projections.Runner
	gate   *natsauth.Gate // nil with an external NATS server
}

// pruneInterval is how often the gate drops expired credentials from
// the server's revocation list; syncRetry how soon it syncs again after a
// sync that failed, which may have refused a rightful worker
// (natsauth.ErrUnchecked).
const (
	pruneInterval = time.Hour
	syncRetry     = 30 * time.Second
)

// startWorkerCreds runs the worker credentials read model and, on the
// embedded server, opens the workers account (closed since the server
// started) with the revocations the log holds, before any worker, or the
// node's own EVENT publisher, can connect.
func (n *Node) startWorkerCreds(ctx, runCtx context.Context) error {
	c := &workerCreds{ledger: natsauth.NewLedger(n.store)}
	proj := natsauth.Projection{}
	if n.nats != nil {
		c.gate = natsauth.NewGate(n.nats, n.log.EmbeddedServer(), c.ledger, n.logger)
		authz := workflowAuthorizer{principals: n.auth.store, authz: n.auth.authorizer, insecure: n.cfg.Insecure}
		c.gate.RefuseUnentitled(entitlements{principals: n.auth.store, mayTake: authz.holderMayTake, insecure: n.cfg.Insecure})
		proj = natsauth.NewProjection(c.gate.Notify)
		n.gate.Store(c.gate)
	}
	var err error
	if c.runner, err = n.startProjection(ctx, runCtx, eventlog.Audit.Name, proj); err != nil {
		return err
	}
	n.workerCreds = c
	if err := catchUp(ctx, n.log, eventlog.Audit.Name, c.runner); err != nil {
		return err
	}
	if c.gate == nil {
		return nil
	}
	// Credentials whose principal's rights could not be read are refused,
	// and Run tries them again; the others' revocations are applied.
	if err := c.gate.Sync(); errors.Is(err, natsauth.ErrUnchecked) {
		n.logger.Warn("worker credentials refused until their principal's rights can be read", logkey.Err, err)
	} else if err != nil {
		return err
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		c.gate.Run(runCtx, pruneInterval, syncRetry)
	}()
	return nil
}

// notifyGate tells the gate, once there is one, that rights changed.
func (n *Node) notifyGate() {
	if g := n.gate.Load(); g != nil {
		g.Notify()
	}
}

// entitlements answers whether a principal may still hold credentials:
// while it exists; those that subscribe to events while it is an admin
// (api/workers.go issues them to admins alone); those that take tasks
// while it may take every type they name in every queue they reach. Credentials beyond their
// principal's rights are refused whole: the engines would refuse their
// takes and results, but the connection could still fetch and
// acknowledge the queue's announcements, which rightful workers would
// then not see until they are sent again, hours later.
type entitlements struct {
	principals principals
	mayTake    func(ctx context.Context, principal, taskType, domain string) error
	insecure   bool
}

func (e entitlements) MayHold(ctx context.Context, c natsauth.Issued) (bool, error) {
	if e.insecure {
		return true, nil
	}
	p, err := e.principals.Principal(ctx, c.IssuedBy)
	switch {
	case errors.Is(err, fault.ErrNotFound):
		return false, nil
	case err != nil:
		return false, err
	case len(c.Subscribe) > 0 && !p.IsAdmin():
		return false, nil
	}
	for _, taskType := range c.TaskTypes {
		for _, domain := range c.Queues() {
			err := e.mayTake(ctx, c.IssuedBy, taskType, domain)
			switch {
			case errors.Is(err, fault.ErrForbidden):
				return false, nil
			case err != nil:
				return false, err
			}
		}
	}
	return true, nil
}

// credentialIssuer is what the API issues and revokes worker credentials
// with: none with an external NATS server, whose operator decides.
func (n *Node) credentialIssuer() api.CredentialIssuer {
	if n.nats == nil {
		return nil
	}
	return natsauth.NewIssuer(n.nats, n.log, natsauth.IssuerConfig{ReadModel: n.workerCreds.runner, Gate: n.workerCreds.gate, Logger: n.logger})
}
