package conductor

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
