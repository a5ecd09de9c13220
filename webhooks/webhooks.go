// Package webhooks receives incoming webhooks (Orkes's /webhook/{id}): a
// delivery that passes its webhook's verifier starts the workflows the
// webhook names, with the payload as input, and completes the
// WAIT_FOR_WEBHOOK tasks its payload matches.
//
// A verifier's secret is never part of the webhook's configuration: the
// configuration names a secret of the secret store
// ("${workflow.secrets.NAME}"), read at each delivery as whoever saved
// the webhook last, who must hold READ on it. A delivery acts as them
// too.
package webhooks

import (
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"maps"
	"math"
	"math/big"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/engine/expr"
	"github.com/flowvault/flowvault/executor"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/masking"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/secrets"
)

// ErrUnverified is the error of a delivery its verifier refused. What a
// sender is told says no more than that: which header, or that the
// webhook's secret could not be read, would help whoever guesses; the
// error Deliver returns wraps the cause, for the server's log.
var ErrUnverified = fmt.Errorf("webhook delivery not verified: %w", fault.ErrUnauthorized)

// ErrSecretUnreadable is wrapped, with ErrUnverified, by the error of a
// delivery refused because the webhook's verifier secret could not be
// read (as whoever saved it last): the webhook's fault, for an operator to
// mend, where every other refusal is the sender's.
var ErrSecretUnreadable = errors.New("the webhook's verifier secret cannot be read")

// ErrDuplicate is wrapped by the error of a delivery whose only starts
// not made are those its idempotency key refused, a workflow with the key
// being there already (FAIL, FAIL_ON_RUNNING, or RETURN_EXISTING's
// workflow not readable by whoever the delivery acts as): what a sender's
// retried delivery is expected to come to, not a failure.
var ErrDuplicate = errors.New("webhook delivery already handled")

const secretRefPrefix = "${workflow.secrets."

// secretRef returns NAME of a value "${workflow.secrets.NAME}".
func secretRef(v string) (string, bool) {
	name, ok := strings.CutPrefix(v, secretRefPrefix)
	if !ok {
		return "", false
	}
	name, ok = strings.CutSuffix(name, "}")
	return name, ok && secrets.CheckSecretName(name) == nil
}

// Validate checks a webhook's configuration before it is stored: a name, a
// verifier flowvault serves with what it needs, its secrets as references,
// and at least one workflow to start or to receive deliveries.
func Validate(c *conductor.WebhookConfig) error {
	ve := &fault.ValidationError{}
	if strings.TrimSpace(c.Name) == "" {
		ve.Add("name", "must not be empty")
	}
	ref := func(path, v string) {
		if _, ok := secretRef(v); !ok {
			ve.Add(path, "must be a reference to a secret, ${workflow.secrets.NAME}: store the value with PUT /api/secrets/NAME")
		}
	}
	// Orkes gives secretKey no meaning flowvault serves, and nothing reads
	// it; held to what the secret fields are, a secret pasted there is
	// refused rather than kept in the log and shown on every read.
	if c.SecretKey != "" {
		ref("secretKey", c.SecretKey)
	}
	switch c.Verifier {
	case conductor.VerifierHeaderBased:
		if len(c.Headers) == 0 {
			ve.Add("headers", "HEADER_BASED needs the headers a delivery must carry")
		}
		for _, k := range slices.Sorted(maps.Keys(c.Headers)) {
			ref("headers."+k, c.Headers[k])
		}
	case conductor.VerifierHMACBased, conductor.VerifierSignatureBased:
		if c.HeaderKey == "" {
			ve.Add("headerKey", "%s needs the header that carries the signature", c.Verifier)
		}
		ref("secretValue", c.SecretValue)
	case conductor.VerifierStripe, conductor.VerifierSlack:
		ref("secretValue", c.SecretValue) // the endpoint's or app's signing secret
	case "":
		ve.Add("verifier", "must not be empty: "+servedVerifiers)
	default:
		ve.Add("verifier", "%s is not served: %s", c.Verifier, servedVerifiers)
	}
	if !conductor.KnownIdempotencyStrategy(c.IdempotencyStrategy) {
		ve.Add("workflowsToStart.idempotencyStrategy", "%q: %s", c.IdempotencyStrategy, conductor.WantIdempotencyStrategy)
	}
	if c.IdempotencyKey != "" {
		const keyPath = "workflowsToStart.idempotencyKey"
		if len(c.WorkflowsToStart) == 0 {
			ve.Add(keyPath, "keys the starts of workflowsToStart: name a workflow there")
		}
		// The key is stored and shown as text, and each workflow it starts
		// shows what it read: a secret or an environment value there
		// would be shown too.
		if err := expr.Validate(c.IdempotencyKey); err != nil {
			ve.Add(keyPath, "%v", err)
		} else if _, deferred, err := expr.Evaluate(c.IdempotencyKey, expr.MapDoc{}); err == nil && len(deferred) > 0 {
			ve.Add(keyPath, "may not reference secrets or environment values: the key is shown as text; build it from the payload, ${workflow.input.id}")
		}
	}
	if len(c.WorkflowsToStart) == 0 && len(c.ReceiverWorkflowNamesToVersions) == 0 {
		ve.Add("workflowsToStart", "name a workflow to start, or one whose WAIT_FOR_WEBHOOK tasks receive deliveries (receiverWorkflowNamesToVersions)")
	}
	// A blank name would fail every delivery's start; a negative version
	// would be read as the latest (or any), which is 0's to say.
	for _, f := range []struct {
		field     string
		workflows map[string]int
	}{{"workflowsToStart", c.WorkflowsToStart}, {"receiverWorkflowNamesToVersions", c.ReceiverWorkflowNamesToVersions}} {
		field, workflows := f.field, f.workflows
		for _, name := range slices.Sorted(maps.Keys(workflows)) {
			if strings.TrimSpace(name) == "" {
				ve.Add(field, "a workflow name must not be empty")
			}
			if workflows[name] < 0 {
				ve.Add(field+"."+name, "version %d: want 0 (the latest) or more", workflows[name])
			}
		}
	}
	return ve.Err()
}

// Shown is c as the API answers it: a field that should hold a secret's
// reference and holds something else (a secretKey saved before Validate
// checked it) shows as masking.Mask, so that a secret pasted there is not
// read back.
func Shown(c *conductor.WebhookConfig) *conductor.WebhookConfig {
	out := *c
	mask := func(v string) string {
		if _, ok := secretRef(v); v == "" || ok {
			return v
		}
		return masking.Mask
	}
	out.SecretKey, out.SecretValue = mask(c.SecretKey), mask(c.SecretValue)
	if c.Headers != nil {
		out.Headers = make(map[string]string, len(c.Headers))
		for k, v := range c.Headers {
			out.Headers[k] = mask(v)
		}
	}
	return &out
}

const servedVerifiers = "HEADER_BASED, HMAC_BASED, SIGNATURE_BASED, STRIPE or SLACK_BASED"

// signedAge bounds how far a signed timestamp (Stripe's, Slack's) may be
// from the receiver's clock, either way, as both platforms' own libraries
// do: a delivery recorded and sent again later is refused.
const signedAge = 5 * time.Minute

// verify checks a delivery against c's verifier at time now; secret
// returns the value of a secret c names.
func verify(c *conductor.WebhookConfig, header http.Header, body []byte, now time.Time, secret func(name string) ([]byte, error)) error {
	switch c.Verifier {
	case conductor.VerifierHeaderBased:
		// Every header there first, as signedAt checks the timestamp: a
		// delivery without them (anyone's) reads no secret.
		keys := slices.Sorted(maps.Keys(c.Headers))
		for _, k := range keys {
			if len(header.Values(k)) != 1 {
				return ErrUnverified
			}
		}
		// Every value compared before any is judged: stopping at the
		// first wrong one answered sooner than when it was right (no other
		// secret read), which told a sender each header's value apart.
		equal := 1
		for _, k := range keys {
			eq, err := headerEquals(header.Get(k), c.Headers[k], secret)
			if err != nil {
				return err
			}
			equal &= eq
		}
		if equal != 1 {
			return ErrUnverified
		}
		return nil
	case conductor.VerifierHMACBased, conductor.VerifierSignatureBased:
		// The signature first: one that is missing, or is no SHA-256
		// digest, reads no secret.
		sigs := signatureDigests(header.Get(c.HeaderKey))
		if len(sigs) == 0 {
			return ErrUnverified
		}
		name, _ := secretRef(c.SecretValue)
		key, err := secret(name)
		if err != nil {
			return err
		}
		mac := hmac.New(sha256.New, key)
		mac.Write(body)
		sum := mac.Sum(nil)
		if slices.ContainsFunc(sigs, func(sig []byte) bool { return hmac.Equal(sig, sum) }) {
			return nil
		}
		return ErrUnverified
	case conductor.VerifierStripe:
		// Stripe-Signature: t=<unix seconds>,v1=<hex HMAC of "t.body">[,v1=…]
		var ts string
		var sigs [][]byte
		for _, part := range strings.Split(header.Get("Stripe-Signature"), ",") {
			k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
			switch k {
			case "t":
				ts = v
			case "v1":
				if sig, ok := hexDigest(v); ok {
					sigs = append(sigs, sig)
				}
			}
		}
		return signedAt(c, ts, sigs, now, secret, func(mac hash.Hash) {
			mac.Write([]byte(ts + "."))
			mac.Write(body)
		})
	case conductor.VerifierSlack:
		// X-Slack-Signature: v0=<hex HMAC of "v0:<timestamp>:body">
		ts := header.Get("X-Slack-Request-Timestamp")
		var sigs [][]byte
		if v, ok := strings.CutPrefix(header.Get("X-Slack-Signature"), "v0="); ok {
			if sig, ok := hexDigest(v); ok {
				sigs = append(sigs, sig)
			}
		}
		return signedAt(c, ts, sigs, now, secret, func(mac hash.Hash) {
			mac.Write([]byte("v0:" + ts + ":"))
			mac.Write(body)
		})
	}
	return ErrUnverified
}

// signedAt verifies a signature over a timestamp and the body: the
// timestamp (Unix seconds) must be within signedAge of now, and one of
// sigs must be the HMAC-SHA256, keyed with c's secret, of what signed
// writes.
func signedAt(c *conductor.WebhookConfig, ts string, sigs [][]byte, now time.Time, secret func(string) ([]byte, error), signed func(hash.Hash)) error {
	// The timestamp and the signatures' form first: a delivery they
	// refuse (anyone's, unsigned: a timestamp of now is anyone's to send)
	// reads no secret.
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || len(sigs) == 0 {
		return ErrUnverified
	}
	if age := now.Sub(time.Unix(sec, 0)); age > signedAge || age < -signedAge {
		return fmt.Errorf("%w: signed %s from the receiver's clock", ErrUnverified, age.Round(time.Second))
	}
	name, _ := secretRef(c.SecretValue)
	key, err := secret(name)
	if err != nil {
		return err
	}
	mac := hmac.New(sha256.New, key)
	signed(mac)
	sum := mac.Sum(nil)
	if !slices.ContainsFunc(sigs, func(sig []byte) bool { return hmac.Equal(sig, sum) }) {
		return ErrUnverified
	}
	return nil
}

// hexDigest reads a hex signature as a SHA-256 digest, or false when it
// is none.
func hexDigest(sig string) ([]byte, bool) {
	got, err := hex.DecodeString(strings.TrimSpace(sig))
	return got, err == nil && len(got) == sha256.Size
}

// headerEquals returns 1 when got is the value of the secret want names,
// 0 when it is not.
func headerEquals(got, want string, secret func(string) ([]byte, error)) (int, error) {
	name, _ := secretRef(want)
	value, err := secret(name)
	if err != nil {
		return 0, err
	}
	// Digests of equal length, compared in constant time: a comparison of
	// the values themselves would end sooner for a wrong length.
	a, b := sha256.Sum256([]byte(got)), sha256.Sum256(value)
	return subtle.ConstantTimeCompare(a[:], b[:]), nil
}

// signatureDigests reads a signature header as the SHA-256 digests it may
// carry: hex ("sha256=" before it, as GitHub sends it, or not) or
// standard base64; none when it is neither.
func signatureDigests(sig string) [][]byte {
	sig = strings.TrimSpace(sig)
	sig, _ = strings.CutPrefix(sig, "sha256=")
	var out [][]byte
	if got, err := hex.DecodeString(sig); err == nil && len(got) == sha256.Size {
		out = append(out, got)
	}
	if got, err := base64.StdEncoding.DecodeString(sig); err == nil && len(got) == sha256.Size {
		out = append(out, got)
	}
	return out
}

// matches reports whether payload meets every condition of want: a JSON
// path ("$.event.type", "$['event']['type']") to the value it must have.
// A task without conditions takes any delivery.
func matches(want map[string]any, payload map[string]any) bool {
	for path, v := range want {
		got, ok := lookup(payload, path)
		if !ok || !sameJSON(got, v) {
			return false
		}
	}
	return true
}

// sameJSON compares JSON values, at every depth: numbers by value,
// whatever Go type the decoder chose for each, and exactly. Integers
// compared as float64 would match ids above 2^53 that differ (snowflake
// ids 128 apart), and a delivery complete another order's task.
func sameJSON(a, b any) bool {
	switch x := a.(type) {
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, v := range x {
			if w, ok := y[k]; !ok || !sameJSON(v, w) {
				return false
			}
		}
		return true
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !sameJSON(x[i], y[i]) {
				return false
			}
		}
		return true
	}
	if x, ok := number(a); ok {
		y, ok := number(b)
		return ok && x.Cmp(y) == 0
	}
	return reflect.DeepEqual(a, b)
}

// number is a JSON number's exact value.
func number(v any) (*big.Float, bool) {
	switch n := v.(type) {
	case int64:
		return new(big.Float).SetInt64(n), true
	case int:
		return new(big.Float).SetInt64(int64(n)), true
	case uint64:
		return new(big.Float).SetUint64(n), true
	case float64:
		if math.IsNaN(n) {
			return nil, false
		}
		return big.NewFloat(n), true
	}
	return nil, false
}

// lookup follows a JSON path of names and indexes from the document root.
func lookup(doc any, path string) (any, bool) {
	rest, ok := strings.CutPrefix(path, "$")
	if !ok {
		return nil, false
	}
	cur := doc
	for rest != "" {
		var key string
		switch {
		case strings.HasPrefix(rest, "['"):
			// The closing quote is looked for after the opening one: in
			// "[']" they overlap, and the key sliced [2:1] panicked.
			end := strings.Index(rest[2:], "']")
			if end < 0 {
				return nil, false
			}
			key, rest = rest[2:2+end], rest[2+end+2:]
		case strings.HasPrefix(rest, "["):
			end := strings.Index(rest, "]")
			if end < 0 {
				return nil, false
			}
			i, err := strconv.Atoi(rest[1:end])
			list, isList := cur.([]any)
			if err != nil || !isList || i < 0 || i >= len(list) {
				return nil, false
			}
			cur, rest = list[i], rest[end+1:]
			continue
		case strings.HasPrefix(rest, "."):
			rest = rest[1:]
			end := strings.IndexAny(rest, ".[")
			if end < 0 {
				end = len(rest)
			}
			key, rest = rest[:end], rest[end:]
		default:
			return nil, false
		}
		m, isMap := cur.(map[string]any)
		if !isMap {
			return nil, false
		}
		if cur, ok = m[key]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// Store reads webhooks (*metadata.Store).
type Store interface {
	Webhook(ctx context.Context, id string) (*conductor.WebhookConfig, error)
}

// Secrets reads a secret's value (*secrets.Store) at the revision its
// reader's access was checked on, and says which version it read, for the
// audit record.
type Secrets interface {
	Revision(ctx context.Context, name string) (secrets.Revision, error)
	Read(ctx context.Context, name string, rev secrets.Revision) (secrets.Value, secrets.Served, error)
}

// staleReads bounds how often a verifier's secret is checked and read
// again when it changed between the two (fault.ErrStale).
const staleReads = 3

// Authorizer decides, when a delivery comes, what whoever saved the
// webhook last may do: a grant revoked since counts.
type Authorizer interface {
	MayReadSecret(ctx context.Context, principal, name string) error
	// MayStart returns what it decided on, which the delivery's start
	// holds to (events.Authorizer).
	MayStart(ctx context.Context, principals []string, req conductor.StartWorkflowRequest) (executor.Pin, error)
	MayExecute(ctx context.Context, principal string, wf *engine.Workflow) error
	// MayRead: a delivery answers the workflow its idempotency key found
	// (RETURN_EXISTING) only if principal may read it.
	MayRead(ctx context.Context, principal string, wf *engine.Workflow) error
}

// Engine starts workflows and completes tasks (*executor.Executor).
type Engine interface {
	StartWorkflow(ctx context.Context, req conductor.StartWorkflowRequest, o executor.StartOptions) (string, uint64, error)
	Submit(ctx context.Context, wfID string, trig engine.Trigger, meta executor.Meta) (executor.Outcome, error)
}

// Inputs opens a task's input (*guard.Guard).
type Inputs interface {
	OpenInput(ctx context.Context, w *engine.Workflow, t *engine.Task) (map[string]any, error)
}

// Waiting lists WAIT_FOR_WEBHOOK tasks in progress (the executions read
// model's task search): each once, all of them, and every one scheduled
// before the call among them.
type Waiting interface {
	WaitingForWebhook(ctx context.Context, fn func(*conductor.Task)) error
}

// Audit records each read of a verifier's secret (no value).
type Audit interface {
	SecretReadForWebhook(ctx context.Context, webhookID, principal, name string, served secrets.Served) error
}

// Definitions finds a workflow's registered definition (*metadata.Store):
// fault.ErrNotFound when its name has none.
type Definitions interface {
	GetWorkflowDef(ctx context.Context, name string, version *int) (*conductor.WorkflowDef, error)
}

// Receiver handles deliveries.
type Receiver struct {
	Store Store
	// Definitions, when set, limits the receiving workflows to names with
	// a registered definition: a name without one is anyone's who may
	// start an inline definition of it, and their WAIT_FOR_WEBHOOK tasks
	// would take every delivery.
	Definitions Definitions
	Secrets     Secrets
	Authz       Authorizer
	Engine      Engine
	Waiting     Waiting
	Audit       Audit
	// Inputs, when set, opens what a waiting task's workflow sealed of its
	// input: a matches condition built from masked or secret data (an
	// e-mail address, say) is compared as the workflow gave it, not as
	// the read model shows it ("***").
	Inputs Inputs
	// Deliveries, when set, counts deliveries by outcome (see
	// DeliveriesCounter).
	Deliveries *prometheus.CounterVec
	// Now is the clock signed timestamps are held to (nil: time.Now).
	Now func() time.Time
}

func (r *Receiver) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// Outcomes of a delivery, the deliveries counter's label.
const (
	OutcomeDone       = "done"       // verified, and all of it done
	OutcomePartial    = "partial"    // verified, some of it not done
	OutcomeDuplicate  = "duplicate"  // verified, its starts refused by their idempotency key (ErrDuplicate), the rest done
	OutcomeUnverified = "unverified" // refused by the verifier
	OutcomeInvalid    = "invalid"    // not a JSON object
	OutcomeUnknown    = "unknown"    // no such webhook
	OutcomeError      = "error"      // none of it done: the server failed (the webhook or the audit trail)
)

// DeliveriesCounter is flowvault_webhook_deliveries_total, registered
// with reg.
func DeliveriesCounter(reg prometheus.Registerer) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "flowvault", Subsystem: "webhook", Name: "deliveries_total",
		Help: "Incoming webhook deliveries by outcome (done, duplicate, partial, unverified, invalid, unknown, error).",
	}, []string{"outcome"})
	reg.MustRegister(c)
	return c
}

// Delivered is what a delivery did.
type Delivered struct {
	Started   []string `json:"workflowIds"`
	Completed []string `json:"completedTaskIds"`
	// Challenge answers Slack's check of a new request URL (a verified
	// url_verification event), which starts and completes nothing.
	Challenge string `json:"challenge,omitempty"`
}

// Deliver verifies a delivery to webhook id and acts on it. A webhook that
// does not exist is fault.ErrNotFound, a delivery its verifier refuses
// ErrUnverified, a payload that is not a JSON object fault.ErrInvalid.
func (r *Receiver) Deliver(ctx context.Context, id string, header http.Header, body []byte) (*Delivered, error) {
	out, err := r.deliver(ctx, id, header, body)
	if r.Deliveries != nil {
		outcome := OutcomeDone
		switch {
		case errors.Is(err, ErrUnverified):
			outcome = OutcomeUnverified
		case errors.Is(err, fault.ErrNotFound) && out == nil:
			outcome = OutcomeUnknown
		case errors.Is(err, fault.ErrInvalid) && out == nil:
			outcome = OutcomeInvalid
		case err != nil && out == nil:
			// Nothing was started or completed (the audit trail refused
			// the secret's read, say): answered with the error, for the
			// sender to try again.
			outcome = OutcomeError
		case errors.Is(err, ErrDuplicate):
			outcome = OutcomeDuplicate
		case err != nil:
			outcome = OutcomePartial
		}
		r.Deliveries.WithLabelValues(outcome).Inc()
	}
	return out, err
}

func (r *Receiver) deliver(ctx context.Context, id string, header http.Header, body []byte) (*Delivered, error) {
	c, err := r.Store.Webhook(ctx, id)
	if err != nil {
		return nil, err
	}
	// As an event handler's actions do: who chose what the webhook does
	// answers for it, and lends nobody else's rights to it.
	owner := cmp.Or(c.UpdatedBy, c.CreatedBy)
	type read struct {
		name   string
		value  secrets.Value
		served secrets.Served
	}
	var reads []read
	defer func() {
		for _, rd := range reads {
			rd.value.Wipe()
		}
	}()
	secret := func(name string) ([]byte, error) {
		unreadable := func(err error) error {
			return fmt.Errorf("%w: %w: webhook %s: its verifier's secret %s: %w", ErrUnverified, ErrSecretUnreadable, id, name, err)
		}
		for attempt := 1; ; attempt++ {
			// Read on the revision the check saw (secrets.ResolveAt):
			// a secret created again or untagged meanwhile is checked
			// again, not read on the old one's check.
			rev, err := r.Secrets.Revision(ctx, name)
			if err != nil {
				return nil, unreadable(err)
			}
			if err := r.Authz.MayReadSecret(ctx, owner, name); err != nil {
				return nil, unreadable(err)
			}
			v, served, err := r.Secrets.Read(ctx, name, rev)
			if errors.Is(err, fault.ErrStale) && attempt < staleReads {
				continue
			}
			if err != nil {
				return nil, unreadable(err)
			}
			reads = append(reads, read{name, v, served})
			return v.Bytes(), nil
		}
	}
	if err := verify(c, header, body, r.now(), secret); err != nil {
		return nil, err
	}
	// Recorded once the delivery is verified: a refused one wrote
	// nothing, so that anyone who can reach the endpoint cannot fill the
	// log.
	for _, rd := range reads {
		if r.Audit == nil {
			break
		}
		if err := r.Audit.SecretReadForWebhook(ctx, id, owner, rd.name, rd.served); err != nil {
			return nil, fmt.Errorf("webhook %s: record the read of its verifier's secret: %w", id, err)
		}
	}
	var payload map[string]any
	if err := conductor.Unmarshal(body, &payload); err != nil || payload == nil {
		return nil, fault.Invalid("webhook %s: the payload is not a JSON object", id)
	}
	out := &Delivered{Started: []string{}, Completed: []string{}}
	if challenge, ok := payload["challenge"].(string); ok && c.Verifier == conductor.VerifierSlack && payload["type"] == "url_verification" {
		out.Challenge = challenge
		return out, nil
	}
	var errs []error
	// duplicates are the starts the key refused: a workflow with it is
	// there already.
	duplicates := 0
	key, err := idempotencyKey(c, payload)
	if err != nil {
		// Started without it, a delivery sent again would start them
		// again.
		errs = append(errs, fmt.Errorf("start %s: %w", strings.Join(slices.Sorted(maps.Keys(c.WorkflowsToStart)), ", "), err))
	} else {
		for _, name := range slices.Sorted(maps.Keys(c.WorkflowsToStart)) {
			wfID, err := r.start(ctx, owner, name, c.WorkflowsToStart[name], key, c.IdempotencyStrategy, payload)
			if err != nil {
				if key != "" && errors.Is(err, executor.ErrKeyHeld) {
					duplicates++
				}
				errs = append(errs, fmt.Errorf("start %s: %w", name, err))
				continue
			}
			out.Started = append(out.Started, wfID)
		}
	}
	if len(c.ReceiverWorkflowNamesToVersions) > 0 {
		done, err := r.complete(ctx, owner, c.ReceiverWorkflowNamesToVersions, payload)
		out.Completed = append(out.Completed, done...)
		if err != nil {
			errs = append(errs, err)
		}
	}
	if duplicates > 0 && duplicates == len(errs) {
		return out, fmt.Errorf("%w: %w", ErrDuplicate, errors.Join(errs...))
	}
	return out, errors.Join(errs...)
}

// idempotencyKey is c's idempotency key for a delivery of payload, read
// as Orkes reads it, with workflow.input the payload; "" (no key) when c
// has none or it reads as null or "".
func idempotencyKey(c *conductor.WebhookConfig, payload map[string]any) (string, error) {
	if c.IdempotencyKey == "" {
		return "", nil
	}
	val, deferred, err := expr.Evaluate(c.IdempotencyKey, expr.MapDoc{"workflow": map[string]any{"input": engine.MarkSealed(payload, nil)}})
	if err != nil {
		return "", fault.Invalid("workflowsToStart.idempotencyKey: %v", err)
	}
	if len(deferred) > 0 {
		// Validate refuses such a key; one built from the payload can
		// still name a secret (${workflow.secrets.${workflow.input.n}}).
		return "", fault.Invalid("workflowsToStart.idempotencyKey may not reference secrets or environment values")
	}
	if engine.ReadsSealed(val) {
		// The workflows started seal it; the key, kept in their start
		// records and shown, would not.
		return "", fault.Invalid("workflowsToStart.idempotencyKey may not read the payload's _secrets or _masked data: the key is shown as text")
	}
	key, ok := engine.KeyText(val)
	if !ok {
		return "", fault.Invalid("workflowsToStart.idempotencyKey: want text or a number, not %T", val)
	}
	return key, nil
}

func (r *Receiver) start(ctx context.Context, owner, name string, version int, key, strategy string, payload map[string]any) (string, error) {
	req := conductor.StartWorkflowRequest{Name: name, Input: payload}
	if version > 0 {
		req.Version = &version
	}
	if key != "" {
		req.IdempotencyKey, req.IdempotencyStrategy = key, strategy
	}
	pin, err := r.Authz.MayStart(ctx, []string{owner}, req)
	if err != nil {
		return "", err
	}
	id, _, err := r.Engine.StartWorkflow(ctx, req, executor.StartOptions{CreatedBy: owner, Pin: pin})
	if err != nil || key == "" || strategy != conductor.IdempotencyReturnExisting {
		return id, err
	}
	// The workflow the key found may be another starter's (the key is
	// shared by every start of the name): answered, as the API answers
	// its caller, only when whoever the delivery acts as may read it.
	cur, err := r.Engine.Submit(ctx, id, nil, executor.Meta{})
	if err != nil && !errors.Is(err, fault.ErrNotFound) {
		return "", fmt.Errorf("workflow %s, found by its idempotency key: %w", id, err)
	}
	if err != nil || cur.State == nil || r.Authz.MayRead(ctx, owner, cur.State) != nil {
		return "", keyRefused{fault.Conflict("a workflow with idempotency key %q exists", key)}
	}
	return id, nil
}

// keyRefused is a start refused by its idempotency key, as the engine's
// refusal is (executor.ErrKeyHeld); it reads as its conflict does.
type keyRefused struct{ conflict error }

func (e keyRefused) Error() string   { return e.conflict.Error() }
func (e keyRefused) Unwrap() []error { return []error{e.conflict, executor.ErrKeyHeld} }

// complete completes, with the payload as output, each WAIT_FOR_WEBHOOK
// task in progress of the receiving workflows whose matches it meets.
func (r *Receiver) complete(ctx context.Context, owner string, receivers map[string]int, payload map[string]any) ([]string, error) {
	if r.Definitions != nil {
		registered := make(map[string]int, len(receivers))
		for name, version := range receivers {
			switch _, err := r.Definitions.GetWorkflowDef(ctx, name, nil); {
			case err == nil:
				registered[name] = version
			case !errors.Is(err, fault.ErrNotFound):
				return nil, fmt.Errorf("receiving workflow %s: %w", name, err)
			}
		}
		receivers = registered
		if len(receivers) == 0 {
			return nil, nil
		}
	}
	// All found before any is completed: a completion changes the index
	// being read.
	var tasks []*conductor.Task
	err := r.Waiting.WaitingForWebhook(ctx, func(t *conductor.Task) {
		if _, ok := receivers[t.WorkflowType]; ok && mayMatch(t.InputData, payload) {
			tasks = append(tasks, t)
		}
	})
	if err != nil {
		return nil, err
	}
	var done []string
	var errs []error
	for _, t := range tasks {
		switch ok, err := r.completeTask(ctx, owner, receivers[t.WorkflowType], t.WorkflowInstanceID, t.TaskID, payload); {
		case err != nil:
			errs = append(errs, fmt.Errorf("task %s: %w", t.TaskID, err))
		case ok:
			done = append(done, t.TaskID)
		}
	}
	return done, errors.Join(errs...)
}

// completeTask completes task taskID of workflow wfID if it still waits,
// its workflow runs the receiving version (0: any) and the payload meets
// its matches, read from the workflow's state: the read model shows
// masked data as "***".
func (r *Receiver) completeTask(ctx context.Context, owner string, version int, wfID, taskID string, payload map[string]any) (bool, error) {
	cur, err := r.Engine.Submit(ctx, wfID, nil, executor.Meta{})
	if err != nil {
		return false, err
	}
	wf := cur.State
	if wf == nil || version > 0 && wf.Version != version {
		return false, nil
	}
	t := wf.TaskByID(taskID)
	if t == nil || t.Type != conductor.TaskTypeWaitForWebhook || t.Status != conductor.TaskInProgress {
		return false, nil
	}
	input := t.Input
	if r.Inputs != nil {
		if input, err = r.Inputs.OpenInput(ctx, wf, t); err != nil {
			return false, err
		}
	}
	if !matchesTask(input, payload) {
		return false, nil
	}
	if err := r.Authz.MayExecute(ctx, owner, wf); err != nil {
		return false, err
	}
	out, err := r.Engine.Submit(ctx, wf.ID, engine.Result{Result: conductor.TaskResult{TaskID: t.ID, WorkflowInstanceID: wf.ID,
		Status: conductor.TaskCompleted, OutputData: payload}, By: owner}, executor.Meta{Principal: owner})
	if err != nil || !out.Appended {
		return false, err
	}
	// The result asked for COMPLETED; what the task became is the
	// state's to say: an output its definition's outputSchema refuses
	// fails it instead.
	if out.State != nil {
		if after := out.State.TaskByID(t.ID); after != nil && after.Status != conductor.TaskCompleted {
			return false, fmt.Errorf("workflow %s: the delivery left its task %s, not COMPLETED (its reasonForIncompletion says why)", wf.ID, after.Status)
		}
	}
	return true, nil
}

// mayMatch reports whether payload may meet the matches of a task's
// input as the search index holds it: where it shows masked or sealed
// data ("***", a reference to a sealed value), only the workflow's state
// can tell, and the task is read whole (completeTask); elsewhere the
// index answers, and most waiting tasks are never read.
func mayMatch(indexed, payload map[string]any) bool {
	if hidden(indexed["matches"]) {
		return true
	}
	return matchesTask(indexed, payload)
}

// hidden reports whether v holds a value a view does not show.
func hidden(v any) bool {
	switch x := v.(type) {
	case *masking.Sealed:
		return true
	case string:
		return x == masking.Mask || strings.Contains(x, "${"+expr.SealedPrefix)
	case map[string]any:
		for _, e := range x {
			if hidden(e) {
				return true
			}
		}
	case []any:
		for _, e := range x {
			if hidden(e) {
				return true
			}
		}
	}
	return false
}

// matchesTask reports whether payload meets the matches of a task's
// input. A task without them takes any delivery; one whose matches is not
// an object (an expression that gave a string, say) takes none.
func matchesTask(input, payload map[string]any) bool {
	v, ok := input["matches"]
	if !ok || v == nil {
		return true
	}
	want, ok := v.(map[string]any)
	return ok && matches(want, payload)
}
