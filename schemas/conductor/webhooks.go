package conductor

import (
	"encoding/json"
	"fmt"
)

// WebhookConfig is an incoming webhook (Orkes's /api/metadata/webhook): a
// POST to /webhook/{id} that passes its verifier starts the workflows of
// WorkflowsToStart with the payload as input, and completes the
// WAIT_FOR_WEBHOOK tasks of the running workflows named in
// ReceiverWorkflowNamesToVersions whose matches the payload meets.
type WebhookConfig struct {
	ID                              string            `json:"id,omitempty"`
	Name                            string            `json:"name"`
	Verifier                        string            `json:"verifier,omitempty"`
	Headers                         map[string]string `json:"headers,omitempty"`
	HeaderKey                       string            `json:"headerKey,omitempty"`
	SecretKey                       string            `json:"secretKey,omitempty"`
	SecretValue                     string            `json:"secretValue,omitempty"`
	SourcePlatform                  string            `json:"sourcePlatform,omitempty"`
	ReceiverWorkflowNamesToVersions map[string]int    `json:"receiverWorkflowNamesToVersions,omitempty"`
	WorkflowsToStart                map[string]int    `json:"workflowsToStart,omitempty"`
	Tags                            []Tag             `json:"tags,omitempty"`
	// IdempotencyKey (an expression over the payload,
	// "${workflow.input.id}") and IdempotencyStrategy (FAIL when empty)
	// are the idempotency of every start of WorkflowsToStart. Orkes keeps
	// them as two text entries of workflowsToStart, among the versions;
	// they are read out of it and written back into it (MarshalJSON).
	IdempotencyKey      string `json:"-"`
	IdempotencyStrategy string `json:"-"`
	// Set by the server: who saved the webhook first and last, and when
	// (Unix ms). Deliveries act as UpdatedBy.
	CreatedBy  string `json:"createdBy,omitempty"`
	UpdatedBy  string `json:"updatedBy,omitempty"`
	CreateTime int64  `json:"createTime,omitempty"`
	UpdateTime int64  `json:"updateTime,omitempty"`
}

// Webhook verifiers flowvault serves.
const (
	VerifierHeaderBased    = "HEADER_BASED"
	VerifierHMACBased      = "HMAC_BASED"
	VerifierSignatureBased = "SIGNATURE_BASED"
	VerifierStripe         = "STRIPE"
	VerifierSlack          = "SLACK_BASED"
)

// The entries of an Orkes workflowsToStart that name no workflow.
const (
	webhookIdempotencyKey      = "idempotencyKey"
	webhookIdempotencyStrategy = "idempotencyStrategy"
)

// webhookConfig is WebhookConfig without its JSON methods.
type webhookConfig WebhookConfig

// MarshalJSON writes c as Orkes shows it: IdempotencyKey and
// IdempotencyStrategy are entries of workflowsToStart.
func (c WebhookConfig) MarshalJSON() ([]byte, error) {
	out := struct {
		webhookConfig
		WorkflowsToStart map[string]any `json:"workflowsToStart,omitempty"`
	}{webhookConfig: webhookConfig(c)}
	if len(c.WorkflowsToStart) > 0 || c.IdempotencyKey != "" || c.IdempotencyStrategy != "" {
		out.WorkflowsToStart = make(map[string]any, len(c.WorkflowsToStart)+2)
		for name, version := range c.WorkflowsToStart {
			out.WorkflowsToStart[name] = version
		}
		if c.IdempotencyKey != "" {
			out.WorkflowsToStart[webhookIdempotencyKey] = c.IdempotencyKey
		}
		if c.IdempotencyStrategy != "" {
			out.WorkflowsToStart[webhookIdempotencyStrategy] = c.IdempotencyStrategy
		}
	}
	return json.Marshal(out)
}

// UnmarshalJSON reads c as Orkes writes it: the idempotencyKey and
// idempotencyStrategy entries of workflowsToStart are taken out of it, as
// Orkes takes them out before it starts the others, and every other entry
// is a workflow's version. Scalars are coerced as everywhere (Unmarshal):
// a version "2" is 2, a key 42 is "42".
func (c *WebhookConfig) UnmarshalJSON(data []byte) error {
	var in struct {
		webhookConfig
		WorkflowsToStart map[string]json.RawMessage `json:"workflowsToStart,omitempty"`
	}
	if err := decodeCoercing(data, &in, false, 0); err != nil {
		return err
	}
	out := WebhookConfig(in.webhookConfig)
	out.WorkflowsToStart = nil
	if in.WorkflowsToStart != nil {
		for _, e := range []struct {
			name string
			to   *string
		}{{webhookIdempotencyKey, &out.IdempotencyKey}, {webhookIdempotencyStrategy, &out.IdempotencyStrategy}} {
			raw, ok := in.WorkflowsToStart[e.name]
			if !ok {
				continue
			}
			delete(in.WorkflowsToStart, e.name)
			if err := decodeCoercing(raw, e.to, true, 0); err != nil {
				return fmt.Errorf("workflowsToStart.%s: %w", e.name, err)
			}
		}
		versions, err := json.Marshal(in.WorkflowsToStart)
		if err != nil {
			return err
		}
		if err := decodeCoercing(versions, &out.WorkflowsToStart, true, 0); err != nil {
			return fmt.Errorf("workflowsToStart: %w", err)
		}
	}
	*c = out
	return nil
}
