package node

import (
	"context"
	"fmt"
	"time"

	"github.com/flowvault/flowvault/audit"
	"github.com/flowvault/flowvault/auth"
	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/projections/executions/query"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/secrets"
	"github.com/flowvault/flowvault/webhooks"
)

// webhookReceiver takes deliveries to the webhooks of n's definitions.
func (n *Node) webhookReceiver(authz eventAuthorizer) *webhooks.Receiver {
	return &webhooks.Receiver{Store: n.metadata, Definitions: n.metadata, Secrets: n.secrets, Authz: webhookAuthorizer{authz},
		Engine: n.executor, Waiting: waitingForWebhook{n.executions, n.catchUpExecutions}, Audit: webhookAudit{n.audit}, Inputs: n.guard,
		Deliveries: webhooks.DeliveriesCounter(n.registry)}
}

// webhookAuthorizer asks of whoever saved a webhook last what an event
// handler's principal is asked, and READ on its verifier's secret.
type webhookAuthorizer struct{ eventAuthorizer }

func (a webhookAuthorizer) MayReadSecret(ctx context.Context, principal, name string) error {
	_, err := a.authz.Authorize(ctx, principal, auth.Read, auth.Target{Type: auth.TargetSecret, ID: name})
	return err
}

func (a webhookAuthorizer) MayRead(ctx context.Context, principal string, wf *engine.Workflow) error {
	return a.authz.mayReadExecution(ctx, principal, wf.Name, wf.CreatedBy)
}

// waitingForWebhook finds the WAIT_FOR_WEBHOOK tasks in progress in the
// executions' task index, once it has applied what the log held when a
// delivery came: the record that scheduled a task (a worker's result, whose
// answer does not wait for the read models) may be a moment older than
// the delivery it waits for.
type waitingForWebhook struct {
	r       taskSearch
	catchUp func(context.Context) error
}

// taskSearch is the executions read model's task search
// (*executions.Reader).
type taskSearch interface {
	EachTask(ctx context.Context, s query.Search, fn func(*conductor.Task) bool) error
}

// WaitingForWebhook calls fn with each waiting task once, oldest first,
// all found by one search: pages of a search stopped at a page shortened
// by a workflow removed while it was read, and skipped the tasks that a
// removal between pages moved up (tasks scheduled in one millisecond,
// paged by offset, as a dynamic fork schedules them).
func (w waitingForWebhook) WaitingForWebhook(ctx context.Context, fn func(*conductor.Task)) error {
	if err := w.catchUp(ctx); err != nil {
		return err
	}
	err := w.r.EachTask(ctx, query.Search{
		Query: fmt.Sprintf("taskType = %s AND status IN (%s)", conductor.TaskTypeWaitForWebhook, conductor.TaskInProgress),
		Sort:  []string{"scheduledTime:ASC"}}, func(t *conductor.Task) bool {
		fn(t)
		return true
	})
	if err != nil {
		return fmt.Errorf("find the tasks waiting for a webhook: %w", err)
	}
	return nil
}

// webhookAudit records each read of a verifier's secret, as the API
// records a secret's read: who, which secret, which version, and where
// from (the webhook).
type webhookAudit struct{ r *audit.Recorder }

func (a webhookAudit) SecretReadForWebhook(ctx context.Context, id, principal, name string, served secrets.Served) error {
	return a.r.Record(ctx, principal, &schemas.SecretRead{Name: name, Version: served.Version, Fingerprint: served.Fingerprint,
		Addr: "webhook " + id, Time: time.Now().UnixMilli(), By: principal})
}
