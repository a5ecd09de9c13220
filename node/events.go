package node

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go"

	"github.com/flowvault/flowvault/auth"
	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/events"
	"github.com/flowvault/flowvault/executor"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// startEventHandlers subscribes to the events of the active event
// handlers and runs them until the node stops.
func (n *Node) startEventHandlers(ctx, runCtx context.Context, authz eventAuthorizer) error {
	conn := n.log.Conn()
	if n.nats != nil {
		// Where EVENT tasks publish on the embedded server.
		c, err := n.nats.EventListenerCredentials()
		if err != nil {
			return fmt.Errorf("event handlers: %w", err)
		}
		if conn, err = n.log.ConnectInProcess(append(c.Options(), nats.MaxReconnects(-1))...); err != nil {
			return fmt.Errorf("event handlers: %w", err)
		}
		n.listenerConn = conn
	}
	// In the log's account, shared by every engine, whatever account the
	// events come in.
	seen, err := events.OpenSeen(ctx, n.log.JetStream(), n.log.Replicas(), n.log, n.logger)
	if err != nil {
		return err
	}
	l := events.New(runCtx, events.Config{Handlers: n.metadata, Conn: conn, Engine: n.executor,
		Authz: authz, Tasks: foundTasks{n}, Logger: n.logger,
		Metrics: n.registry, Seen: seen, MarkedOnly: n.nats != nil})
	// From here on, every change to the definitions syncs it; the first
	// sync reads what changed before.
	n.listener.Store(l)
	if err := l.Sync(ctx); err != nil {
		return err
	}
	// Its own context, which the node's shutdown ends before it stops
	// the engine (stopListening).
	listenCtx, stop := context.WithCancel(runCtx)
	listening := make(chan struct{})
	n.stopListening = func(ctx context.Context) {
		stop()
		select {
		case <-listening:
		case <-ctx.Done():
		}
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer close(listening)
		l.Run(listenCtx)
	}()
	return nil
}

// eventAuthorizer asks of an event handler's principal what the API asks
// of a caller: to start, what a start needs; to act on a running
// workflow, to be its creator or hold EXECUTE on it.
type eventAuthorizer struct {
	authz    workflowAuthorizer
	mayStart executor.StartCheck
}

func (a eventAuthorizer) MayStart(ctx context.Context, principals []string, req conductor.StartWorkflowRequest) (executor.Pin, error) {
	return a.mayStart(ctx, principals, req)
}

func (a eventAuthorizer) MayExecute(ctx context.Context, principal string, wf *engine.Workflow) error {
	return a.authz.mayExecution(ctx, principal, wf.Name, wf.CreatedBy, auth.Execute)
}

// notifyListener tells the event handlers' listener, once there is one,
// that the definitions changed.
func (n *Node) notifyListener() {
	if l := n.listener.Load(); l != nil {
		l.Notify()
	}
}
