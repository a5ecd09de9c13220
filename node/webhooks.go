package node

import (
	"context"
	"time"

	"github.com/flowvault/flowvault/audit"
	"github.com/flowvault/flowvault/auth"
	"github.com/flowvault/flowvault/projections/executions"
	"github.com/flowvault/flowvault/projections/executions/query"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/secrets"
	"github.com/flowvault/flowvault/webhooks"
)

// webhookReceiver takes deliveries to the webhooks of n's definitions.
func (n *Node) webhookReceiver(authz eventAuthorizer) *webhooks.Receiver {
	return &webhooks.Receiver{Store: n.metadata, Secrets: n.secrets, Authz: webhookAuthorizer{authz},
		Engine: n.executor, Waiting: waitingForWebhook{n.executions}, Audit: webhookAudit{n.audit},
		Deliveries: webhooks.DeliveriesCounter(n.registry)}
}

// webhookAuthorizer asks of whoever saved a webhook last what an event
// handler's principal is asked, and READ on its verifier's secret.
type webhookAuthorizer struct{ eventAuthorizer }

func (a webhookAuthorizer) MayReadSecret(ctx context.Context, principal, name string) error {
	_, err := a.authz.Authorize(ctx, principal, auth.Read, auth.Target{Type: auth.TargetSecret, ID: name})
	return err
}

// maxWaitingForWebhook bounds the tasks one delivery looks at.
const maxWaitingForWebhook = 1000

// waitingForWebhook finds the WAIT_FOR_WEBHOOK tasks in progress in the
// executions' task index, oldest first.
type waitingForWebhook struct{ r *executions.Reader }

func (w waitingForWebhook) WaitingForWebhook(ctx context.Context) ([]*conductor.Task, error) {
	_, tasks, err := w.r.SearchTasks(ctx, query.Search{
		Query: "taskType = " + conductor.TaskTypeWaitForWebhook + " AND status IN (" + conductor.TaskInProgress + ")",
		Sort:  []string{"scheduledTime:ASC"}, Size: maxWaitingForWebhook})
	return tasks, err
}

// webhookAudit records each read of a verifier's secret, as the API
// records a secret's read: who, which secret, which version, and where
// from (the webhook).
type webhookAudit struct{ r *audit.Recorder }

func (a webhookAudit) SecretReadForWebhook(ctx context.Context, id, principal, name string, served secrets.Served) error {
	return a.r.Record(ctx, principal, &schemas.SecretRead{Name: name, Version: served.Version, Fingerprint: served.Fingerprint,
		Addr: "webhook " + id, Time: time.Now().UnixMilli(), By: principal})
}
