package webhooks

import (
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/executor"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/secrets"
)

func TestValidate(t *testing.T) {
	start := map[string]int{"flow": 1}
	for _, tc := range []struct {
		name string
		c    conductor.WebhookConfig
		bad  string // the field named, "" for a valid config
	}{
		{"header", conductor.WebhookConfig{Name: "h", Verifier: "HEADER_BASED", Headers: map[string]string{"X-T": "${workflow.secrets.tok}"}, WorkflowsToStart: start}, ""},
		{"hmac", conductor.WebhookConfig{Name: "h", Verifier: "HMAC_BASED", HeaderKey: "X-Sig", SecretValue: "${workflow.secrets.tok}", ReceiverWorkflowNamesToVersions: start}, ""},
		{"literal header", conductor.WebhookConfig{Name: "h", Verifier: "HEADER_BASED", Headers: map[string]string{"X-T": "abc"}, WorkflowsToStart: start}, "headers.X-T"},
		{"reference in text", conductor.WebhookConfig{Name: "h", Verifier: "HEADER_BASED", Headers: map[string]string{"X-T": "Bearer ${workflow.secrets.tok}"}, WorkflowsToStart: start}, "headers.X-T"},
		{"bad secret name", conductor.WebhookConfig{Name: "h", Verifier: "HMAC_BASED", HeaderKey: "X-Sig", SecretValue: "${workflow.secrets.a.b}", WorkflowsToStart: start}, "secretValue"},
		{"no headers", conductor.WebhookConfig{Name: "h", Verifier: "HEADER_BASED", WorkflowsToStart: start}, "headers"},
		{"no header key", conductor.WebhookConfig{Name: "h", Verifier: "SIGNATURE_BASED", SecretValue: "${workflow.secrets.tok}", WorkflowsToStart: start}, "headerKey"},
		{"no verifier", conductor.WebhookConfig{Name: "h", WorkflowsToStart: start}, "verifier"},
		{"unserved verifier", conductor.WebhookConfig{Name: "h", Verifier: "SENDGRID", WorkflowsToStart: start}, "verifier"},
		{"stripe", conductor.WebhookConfig{Name: "h", Verifier: "STRIPE", SecretValue: "${workflow.secrets.whsec}", WorkflowsToStart: start}, ""},
		{"slack without its secret", conductor.WebhookConfig{Name: "h", Verifier: "SLACK_BASED", WorkflowsToStart: start}, "secretValue"},
		{"no name", conductor.WebhookConfig{Verifier: "HMAC_BASED", HeaderKey: "X", SecretValue: "${workflow.secrets.tok}", WorkflowsToStart: start}, "name"},
		{"no workflow", conductor.WebhookConfig{Name: "h", Verifier: "HMAC_BASED", HeaderKey: "X", SecretValue: "${workflow.secrets.tok}"}, "workflowsToStart"},
		{"blank workflow name", conductor.WebhookConfig{Name: "h", Verifier: "HMAC_BASED", HeaderKey: "X", SecretValue: "${workflow.secrets.tok}",
			WorkflowsToStart: map[string]int{" ": 0}}, "workflowsToStart"},
		{"negative version", conductor.WebhookConfig{Name: "h", Verifier: "HMAC_BASED", HeaderKey: "X", SecretValue: "${workflow.secrets.tok}",
			WorkflowsToStart: start, ReceiverWorkflowNamesToVersions: map[string]int{"flow": -1}}, "receiverWorkflowNamesToVersions.flow"},
		{"latest version", conductor.WebhookConfig{Name: "h", Verifier: "HMAC_BASED", HeaderKey: "X", SecretValue: "${workflow.secrets.tok}",
			WorkflowsToStart: map[string]int{"flow": 0}}, ""},
		// secretKey, which nothing reads, is held to what secretValue is.
		{"literal secretKey", conductor.WebhookConfig{Name: "h", Verifier: "HMAC_BASED", HeaderKey: "X", SecretKey: "whsec_pasted",
			SecretValue: "${workflow.secrets.tok}", WorkflowsToStart: start}, "secretKey"},
		{"literal secretKey, header verifier", conductor.WebhookConfig{Name: "h", Verifier: "HEADER_BASED", SecretKey: "whsec_pasted",
			Headers: map[string]string{"X-T": "${workflow.secrets.tok}"}, WorkflowsToStart: start}, "secretKey"},
		{"secretKey a reference", conductor.WebhookConfig{Name: "h", Verifier: "STRIPE", SecretKey: "${workflow.secrets.other}",
			SecretValue: "${workflow.secrets.tok}", WorkflowsToStart: start}, ""},
		// Orkes's idempotency entries of workflowsToStart.
		{"idempotency", conductor.WebhookConfig{Name: "h", Verifier: "STRIPE", SecretValue: "${workflow.secrets.tok}", WorkflowsToStart: start,
			IdempotencyKey: "${workflow.input.id}", IdempotencyStrategy: "RETURN_EXISTING"}, ""},
		{"idempotency key, FAIL by default", conductor.WebhookConfig{Name: "h", Verifier: "STRIPE", SecretValue: "${workflow.secrets.tok}",
			WorkflowsToStart: start, IdempotencyKey: "order-${workflow.input.order.id}"}, ""},
		{"unknown idempotency strategy", conductor.WebhookConfig{Name: "h", Verifier: "STRIPE", SecretValue: "${workflow.secrets.tok}",
			WorkflowsToStart: start, IdempotencyKey: "${workflow.input.id}", IdempotencyStrategy: "RETURN_EXISTNG"}, "workflowsToStart.idempotencyStrategy"},
		{"idempotency key reads a secret", conductor.WebhookConfig{Name: "h", Verifier: "STRIPE", SecretValue: "${workflow.secrets.tok}",
			WorkflowsToStart: start, IdempotencyKey: "${workflow.input.id}-${workflow.secrets.pasted}"}, "workflowsToStart.idempotencyKey"},
		{"idempotency key reads an environment value", conductor.WebhookConfig{Name: "h", Verifier: "STRIPE", SecretValue: "${workflow.secrets.tok}",
			WorkflowsToStart: start, IdempotencyKey: "${ workflow.env.pasted}"}, "workflowsToStart.idempotencyKey"},
		{"idempotency key's syntax", conductor.WebhookConfig{Name: "h", Verifier: "STRIPE", SecretValue: "${workflow.secrets.tok}",
			WorkflowsToStart: start, IdempotencyKey: "${workflow.input.id"}, "workflowsToStart.idempotencyKey"},
		{"idempotency key without a start", conductor.WebhookConfig{Name: "h", Verifier: "STRIPE", SecretValue: "${workflow.secrets.tok}",
			ReceiverWorkflowNamesToVersions: start, IdempotencyKey: "${workflow.input.id}"}, "workflowsToStart.idempotencyKey"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Validate(&tc.c)
			var ve *fault.ValidationError
			switch {
			case tc.bad == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.bad != "" && (!errors.As(err, &ve) || len(ve.Fields) != 1 || ve.Fields[0].Path != tc.bad):
				t.Fatalf("error %v, want one naming %s", err, tc.bad)
			case err != nil && strings.Contains(err.Error(), "pasted"):
				t.Fatalf("the refusal quotes the value: %v", err)
			}
		})
	}
}

func TestVerify(t *testing.T) {
	key := []byte("s3cret-key-for-tests")
	secret := func(name string) ([]byte, error) {
		if name != "tok" {
			return nil, fault.NotFound("secret %s", name)
		}
		return key, nil
	}
	body := []byte(`{"a":1}`)
	mac := hmac.New(sha256.New, key)
	mac.Write(body)
	sum := mac.Sum(nil)
	hmacCfg := &conductor.WebhookConfig{Verifier: "HMAC_BASED", HeaderKey: "X-Sig", SecretValue: "${workflow.secrets.tok}"}
	headerCfg := &conductor.WebhookConfig{Verifier: "HEADER_BASED", Headers: map[string]string{"X-Token": "${workflow.secrets.tok}"}}
	for _, tc := range []struct {
		name   string
		c      *conductor.WebhookConfig
		header http.Header
		ok     bool
	}{
		{"hex", hmacCfg, http.Header{"X-Sig": {hex.EncodeToString(sum)}}, true},
		{"github's sha256=hex", hmacCfg, http.Header{"X-Sig": {"sha256=" + hex.EncodeToString(sum)}}, true},
		{"base64", hmacCfg, http.Header{"X-Sig": {base64.StdEncoding.EncodeToString(sum)}}, true},
		{"another body's signature", hmacCfg, http.Header{"X-Sig": {hex.EncodeToString(sum[:31]) + "00"}}, false},
		{"no signature", hmacCfg, http.Header{}, false},
		{"header", headerCfg, http.Header{"X-Token": {string(key)}}, true},
		{"header twice", headerCfg, http.Header{"X-Token": {string(key), string(key)}}, false},
		{"wrong header", headerCfg, http.Header{"X-Token": {string(key) + "!"}}, false},
		{"missing header", headerCfg, http.Header{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := verify(tc.c, tc.header, body, time.Now(), secret)
			if ok := err == nil; ok != tc.ok || !ok && !errors.Is(err, ErrUnverified) {
				t.Fatalf("verify = %v, want ok %v", err, tc.ok)
			}
		})
	}
	missing := &conductor.WebhookConfig{Verifier: "HMAC_BASED", HeaderKey: "X-Sig", SecretValue: "${workflow.secrets.gone}"}
	if err := verify(missing, http.Header{"X-Sig": {hex.EncodeToString(sum)}}, body, time.Now(), secret); err == nil || strings.Contains(err.Error(), string(key)) {
		t.Fatalf("a webhook without its secret: %v", err)
	}
}

// Stripe's and Slack's signatures cover a timestamp and the body; a
// timestamp further than five minutes from the receiver's clock is
// refused, however well signed (a delivery recorded and sent again).
func TestVerifyTimestamped(t *testing.T) {
	key := []byte("whsec_test-signing-secret")
	secret := func(name string) ([]byte, error) {
		if name != "signing" {
			return nil, fault.NotFound("secret %s", name)
		}
		return key, nil
	}
	body := []byte(`{"id":"evt_1","type":"invoice.paid"}`)
	now := time.Unix(1_790_000_000, 0)
	sign := func(prefix string) string {
		mac := hmac.New(sha256.New, key)
		mac.Write([]byte(prefix))
		mac.Write(body)
		return hex.EncodeToString(mac.Sum(nil))
	}
	ts := strconv.FormatInt(now.Unix(), 10)
	old := strconv.FormatInt(now.Add(-6*time.Minute).Unix(), 10)
	stripe := &conductor.WebhookConfig{Verifier: "STRIPE", SecretValue: "${workflow.secrets.signing}"}
	slack := &conductor.WebhookConfig{Verifier: "SLACK_BASED", SecretValue: "${workflow.secrets.signing}"}
	for _, tc := range []struct {
		name   string
		c      *conductor.WebhookConfig
		header http.Header
		ok     bool
	}{
		{"stripe", stripe, http.Header{"Stripe-Signature": {"t=" + ts + ",v1=" + sign(ts+".")}}, true},
		{"stripe, a rolled secret's signature first", stripe, http.Header{"Stripe-Signature": {"t=" + ts + ",v1=" + sign("x") + ",v1=" + sign(ts+".") + ",v0=00"}}, true},
		{"stripe, another timestamp signed", stripe, http.Header{"Stripe-Signature": {"t=" + ts + ",v1=" + sign(old+".")}}, false},
		{"stripe, too old", stripe, http.Header{"Stripe-Signature": {"t=" + old + ",v1=" + sign(old+".")}}, false},
		{"stripe, no timestamp", stripe, http.Header{"Stripe-Signature": {"v1=" + sign(".")}}, false},
		{"stripe, no header", stripe, http.Header{}, false},
		{"slack", slack, http.Header{"X-Slack-Request-Timestamp": {ts}, "X-Slack-Signature": {"v0=" + sign("v0:"+ts+":")}}, true},
		{"slack, without v0=", slack, http.Header{"X-Slack-Request-Timestamp": {ts}, "X-Slack-Signature": {sign("v0:" + ts + ":")}}, false},
		{"slack, too old", slack, http.Header{"X-Slack-Request-Timestamp": {old}, "X-Slack-Signature": {"v0=" + sign("v0:"+old+":")}}, false},
		{"slack, timestamp not signed", slack, http.Header{"X-Slack-Request-Timestamp": {ts}, "X-Slack-Signature": {"v0=" + sign("v0:"+old+":")}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := verify(tc.c, tc.header, body, now, secret)
			if ok := err == nil; ok != tc.ok || !ok && !errors.Is(err, ErrUnverified) {
				t.Fatalf("verify = %v, want ok %v", err, tc.ok)
			}
		})
	}
	// A timestamp a little ahead of the receiver's clock passes.
	ahead := strconv.FormatInt(now.Add(time.Minute).Unix(), 10)
	if err := verify(stripe, http.Header{"Stripe-Signature": {"t=" + ahead + ",v1=" + sign(ahead+".")}}, body, now, secret); err != nil {
		t.Fatalf("a clock a minute ahead: %v", err)
	}
}

func TestMatches(t *testing.T) {
	payload := map[string]any{"event": map[string]any{"type": "push", "n": int64(3)}, "list": []any{"x", map[string]any{"k": "v"}},
		"order": map[string]any{"id": int64(9007199254740993), "big": uint64(18446744073709551615), "item": map[string]any{"qty": int64(5)}}}
	for _, tc := range []struct {
		want map[string]any
		ok   bool
	}{
		{nil, true},
		{map[string]any{"$['event']['type']": "push"}, true},
		{map[string]any{"$.event.type": "push", "$.event.n": float64(3)}, true},
		{map[string]any{"$.list[1].k": "v", "$.list[0]": "x"}, true},
		{map[string]any{"$.event.type": "pull"}, false},
		{map[string]any{"$.event.missing": "push"}, false},
		{map[string]any{"$.list[2]": "x"}, false},
		{map[string]any{"event.type": "push"}, false},
		{map[string]any{"$['event'": "push"}, false},
		// Quotes that overlap the brackets: the key was sliced [2:1].
		{map[string]any{"$[']": "push"}, false},
		{map[string]any{"$.event[']": "push"}, false},
		{map[string]any{"$['']": "push"}, false},
		// Integers by their exact value: 2^53+1 is not 2^53, though
		// float64 holds both as 2^53.
		{map[string]any{"$.order.id": int64(9007199254740993)}, true},
		{map[string]any{"$.order.id": int64(9007199254740992)}, false},
		{map[string]any{"$.order.id": float64(9007199254740992)}, false},
		{map[string]any{"$.order.big": uint64(18446744073709551615)}, true},
		{map[string]any{"$.order.big": int64(-1)}, false},
		// Numbers by value inside objects and lists too.
		{map[string]any{"$.order.item": map[string]any{"qty": float64(5)}}, true},
		{map[string]any{"$.order.item": map[string]any{"qty": float64(5.5)}}, false},
		{map[string]any{"$.list": []any{"x", map[string]any{"k": "v"}}}, true},
		{map[string]any{"$.list": []any{"x"}}, false},
	} {
		if got := matches(tc.want, payload); got != tc.ok {
			t.Errorf("matches(%v) = %v, want %v", tc.want, got, tc.ok)
		}
	}
}

// A delivery refused by what any sender can send unsigned (a stale
// timestamp, a header missing or twice, a signature that is no SHA-256
// digest) reads no secret: each read decrypts it. Its refusal is the
// sender's, not the webhook's: only a secret that cannot be read is
// ErrSecretUnreadable, which the server logs as a warning (a sender could
// otherwise write warnings at will).
func TestUnsignedDeliveryReadsNoSecret(t *testing.T) {
	now := time.Unix(1_790_000_000, 0)
	fresh := strconv.FormatInt(now.Unix(), 10)
	stripe := &conductor.WebhookConfig{Verifier: "STRIPE", SecretValue: "${workflow.secrets.signing}"}
	slack := &conductor.WebhookConfig{Verifier: "SLACK_BASED", SecretValue: "${workflow.secrets.signing}"}
	headers := &conductor.WebhookConfig{Verifier: "HEADER_BASED", Headers: map[string]string{"X-A": "${workflow.secrets.a}", "X-B": "${workflow.secrets.b}"}}
	hmacCfg := &conductor.WebhookConfig{Verifier: "HMAC_BASED", HeaderKey: "X-Sig", SecretValue: "${workflow.secrets.signing}"}
	signature := &conductor.WebhookConfig{Verifier: "SIGNATURE_BASED", HeaderKey: "X-Sig", SecretValue: "${workflow.secrets.signing}"}
	for _, tc := range []struct {
		name string
		c    *conductor.WebhookConfig
		h    http.Header
	}{
		{"stripe, stale", stripe, http.Header{"Stripe-Signature": {"t=1,v1=00"}}},
		{"stripe, no timestamp", stripe, http.Header{"Stripe-Signature": {"v1=00"}}},
		{"slack, stale", slack, http.Header{"X-Slack-Request-Timestamp": {"1"}, "X-Slack-Signature": {"v0=00"}}},
		{"slack, not a number", slack, http.Header{"X-Slack-Request-Timestamp": {"x"}, "X-Slack-Signature": {"v0=00"}}},
		// A timestamp of now is anyone's to send too.
		{"stripe, no signature", stripe, http.Header{"Stripe-Signature": {"t=" + fresh}}},
		{"stripe, not a digest", stripe, http.Header{"Stripe-Signature": {"t=" + fresh + ",v1=00,v1=zz"}}},
		{"slack, no signature", slack, http.Header{"X-Slack-Request-Timestamp": {fresh}}},
		{"slack, without v0=", slack, http.Header{"X-Slack-Request-Timestamp": {fresh}, "X-Slack-Signature": {strings.Repeat("ab", sha256.Size)}}},
		{"slack, not a digest", slack, http.Header{"X-Slack-Request-Timestamp": {fresh}, "X-Slack-Signature": {"v0=00"}}},
		{"headers, none", headers, http.Header{}},
		{"headers, the second missing", headers, http.Header{"X-A": {"v"}}},
		{"headers, the first missing", headers, http.Header{"X-B": {"v"}}},
		{"headers, one twice", headers, http.Header{"X-A": {"v"}, "X-B": {"v", "v"}}},
		{"hmac, no signature", hmacCfg, http.Header{}},
		{"hmac, empty signature", hmacCfg, http.Header{"X-Sig": {"sha256="}}},
		{"hmac, not hex or base64", hmacCfg, http.Header{"X-Sig": {"sha256=zz"}}},
		{"hmac, too short a digest", hmacCfg, http.Header{"X-Sig": {"sha256=" + strings.Repeat("ab", 31)}}},
		{"signature, no signature", signature, http.Header{"Other": {"x"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reads := 0
			secret := func(string) ([]byte, error) { reads++; return []byte("k"), nil }
			err := verify(tc.c, tc.h, []byte(`{}`), now, secret)
			if !errors.Is(err, ErrUnverified) || errors.Is(err, ErrSecretUnreadable) {
				t.Errorf("verify = %v, want ErrUnverified, not ErrSecretUnreadable", err)
			}
			if reads != 0 {
				t.Errorf("read the secret %d times", reads)
			}
		})
	}
}

// A HEADER_BASED delivery with a wrong value in one header reads and
// compares every header's secret all the same: one that stopped at the
// first wrong header answered sooner than one whose first header was
// right (it read no other secret), which told a sender each header's
// value apart from the others'.
func TestEveryHeaderIsCompared(t *testing.T) {
	c := &conductor.WebhookConfig{Verifier: "HEADER_BASED", Headers: map[string]string{"X-A": "${workflow.secrets.a}", "X-B": "${workflow.secrets.b}"}}
	values := map[string]string{"a": "value-of-a", "b": "value-of-b"}
	for _, tc := range []struct {
		name string
		h    http.Header
		ok   bool
	}{
		{"both right", http.Header{"X-A": {"value-of-a"}, "X-B": {"value-of-b"}}, true},
		{"the first wrong", http.Header{"X-A": {"wrong"}, "X-B": {"value-of-b"}}, false},
		{"the second wrong", http.Header{"X-A": {"value-of-a"}, "X-B": {"wrong"}}, false},
		{"both wrong", http.Header{"X-A": {"wrong"}, "X-B": {"wrong"}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var read []string
			secret := func(name string) ([]byte, error) { read = append(read, name); return []byte(values[name]), nil }
			err := verify(c, tc.h, []byte(`{}`), time.Now(), secret)
			if ok := err == nil; ok != tc.ok || !ok && (!errors.Is(err, ErrUnverified) || errors.Is(err, ErrSecretUnreadable)) {
				t.Fatalf("verify = %v, want ok %v", err, tc.ok)
			}
			if !slices.Equal(read, []string{"a", "b"}) {
				t.Fatalf("read the secrets %v, want [a b]: every header compared", read)
			}
		})
	}
}

type noSecrets struct{}

func (noSecrets) MayReadSecret(context.Context, string, string) error {
	return fault.ErrForbidden
}
func (noSecrets) MayStart(context.Context, []string, conductor.StartWorkflowRequest) (executor.Pin, error) {
	return executor.Pin{}, nil
}
func (noSecrets) MayExecute(context.Context, string, *engine.Workflow) error { return nil }
func (noSecrets) MayRead(context.Context, string, *engine.Workflow) error    { return nil }

type oneHook struct{ c *conductor.WebhookConfig }

func (o oneHook) Webhook(context.Context, string) (*conductor.WebhookConfig, error) { return o.c, nil }

// A secret the webhook's owner may not read is the webhook's fault.
func TestUnreadableSecretIsTheWebhooks(t *testing.T) {
	c := &conductor.WebhookConfig{ID: "h", Verifier: "HMAC_BASED", HeaderKey: "X-Sig", SecretValue: "${workflow.secrets.gone}", UpdatedBy: "u"}
	r := &Receiver{Store: oneHook{c}, Authz: noSecrets{}, Secrets: oneSecret("never-read")}
	_, err := r.Deliver(context.Background(), "h", http.Header{"X-Sig": {strings.Repeat("00", sha256.Size)}}, []byte(`{}`))
	if !errors.Is(err, ErrUnverified) || !errors.Is(err, ErrSecretUnreadable) {
		t.Fatalf("Deliver = %v, want ErrUnverified and ErrSecretUnreadable", err)
	}
}

// waitingWorkflows holds workflows of one WAIT_FOR_WEBHOOK task each, and
// records the tasks completed.
type waitingWorkflows struct {
	wfs       map[string]*engine.Workflow
	completed []string
	// after is the status a result leaves its task in ("": COMPLETED).
	after string
}

func (w *waitingWorkflows) WaitingForWebhook(_ context.Context, fn func(*conductor.Task)) error {
	for _, id := range slices.Sorted(maps.Keys(w.wfs)) {
		wf := w.wfs[id]
		fn(&conductor.Task{TaskID: wf.Tasks[0].ID, WorkflowInstanceID: wf.ID, WorkflowType: wf.Name, InputData: wf.Tasks[0].Input})
	}
	return nil
}

func (w *waitingWorkflows) StartWorkflow(context.Context, conductor.StartWorkflowRequest, executor.StartOptions) (string, uint64, error) {
	return "", 0, errors.New("no starts here")
}

func (w *waitingWorkflows) Submit(_ context.Context, id string, trig engine.Trigger, _ executor.Meta) (executor.Outcome, error) {
	if res, ok := trig.(engine.Result); ok {
		w.completed = append(w.completed, res.Result.TaskID)
		state := w.wfs[id].Clone()
		for i, t := range state.Tasks {
			if t.ID == res.Result.TaskID {
				decided := *t
				decided.Status = cmp.Or(w.after, conductor.TaskCompleted)
				state.Tasks[i] = &decided
			}
		}
		return executor.Outcome{State: state, Appended: true}, nil
	}
	return executor.Outcome{State: w.wfs[id]}, nil
}

type registeredNames []string

func (r registeredNames) GetWorkflowDef(_ context.Context, name string, _ *int) (*conductor.WorkflowDef, error) {
	if slices.Contains(r, name) {
		return &conductor.WorkflowDef{Name: name}, nil
	}
	return nil, fault.NotFound("workflow %s not found", name)
}

// A workflow of a receiving name takes deliveries only where the name has
// a registered definition: without one, anyone who may start an inline
// definition of the name runs its workflows, and would receive every
// delivery.
func TestReceiversHaveRegisteredDefinitions(t *testing.T) {
	waiting := func(id, name string) *engine.Workflow {
		return &engine.Workflow{ID: id, Name: name, Version: 1, Tasks: []*engine.Task{{ID: id + "-w", Type: conductor.TaskTypeWaitForWebhook,
			Status: conductor.TaskInProgress, Input: map[string]any{}}}}
	}
	e := &waitingWorkflows{wfs: map[string]*engine.Workflow{"a": waiting("a", "orders"), "b": waiting("b", "unregistered")}}
	r := &Receiver{Definitions: registeredNames{"orders"}, Authz: noSecrets{}, Engine: e, Waiting: e}
	done, err := r.complete(context.Background(), "app:admin", map[string]int{"orders": 0, "unregistered": 0}, map[string]any{"n": 1})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(done, []string{"a-w"}) || !slices.Equal(e.completed, []string{"a-w"}) {
		t.Fatalf("completed %v (submitted %v), want the registered workflow's task alone", done, e.completed)
	}
}

// A webhook is answered with every field that must name a secret and
// does not (a secretKey saved before Validate checked it) masked, and the
// stored configuration is left as it is.
func TestShown(t *testing.T) {
	c := &conductor.WebhookConfig{ID: "h", Name: "h", Verifier: "HEADER_BASED", SecretKey: "whsec_pasted", SecretValue: "${workflow.secrets.tok}",
		Headers: map[string]string{"X-A": "${workflow.secrets.a}", "X-B": "pasted-too"}, HeaderKey: "X-Sig"}
	got := Shown(c)
	want := conductor.WebhookConfig{ID: "h", Name: "h", Verifier: "HEADER_BASED", SecretKey: "***", SecretValue: "${workflow.secrets.tok}",
		Headers: map[string]string{"X-A": "${workflow.secrets.a}", "X-B": "***"}, HeaderKey: "X-Sig"}
	if !reflect.DeepEqual(*got, want) {
		t.Fatalf("Shown = %+v, want %+v", *got, want)
	}
	if c.SecretKey != "whsec_pasted" || c.Headers["X-B"] != "pasted-too" {
		t.Fatalf("Shown changed the stored configuration: %+v", c)
	}
	if empty := Shown(&conductor.WebhookConfig{Name: "e"}); empty.SecretKey != "" || empty.SecretValue != "" || empty.Headers != nil {
		t.Fatalf("Shown of a configuration without secrets: %+v", empty)
	}
}

type allowAll struct{}

func (allowAll) MayReadSecret(context.Context, string, string) error { return nil }
func (allowAll) MayStart(context.Context, []string, conductor.StartWorkflowRequest) (executor.Pin, error) {
	return executor.Pin{}, nil
}
func (allowAll) MayExecute(context.Context, string, *engine.Workflow) error { return nil }
func (allowAll) MayRead(context.Context, string, *engine.Workflow) error    { return nil }

type oneSecret []byte

func (s oneSecret) Revision(context.Context, string) (secrets.Revision, error) {
	return secrets.Revision{Exists: true}, nil
}

func (s oneSecret) Read(context.Context, string, secrets.Revision) (secrets.Value, secrets.Served, error) {
	return secrets.Value(slices.Clone(s)), secrets.Served{}, nil
}

type failingAudit struct{}

func (failingAudit) SecretReadForWebhook(context.Context, string, string, string, secrets.Served) error {
	return fmt.Errorf("audit log: %w", fault.ErrUnavailable)
}

// A verified delivery whose secret's read the audit trail cannot record
// does nothing, and is counted as the server's failure, not as a delivery
// partly done.
func TestUnrecordedReadIsAnError(t *testing.T) {
	c := &conductor.WebhookConfig{ID: "h", Verifier: "HEADER_BASED", Headers: map[string]string{"X-Token": "${workflow.secrets.tok}"},
		WorkflowsToStart: map[string]int{"flow": 0}, UpdatedBy: "u"}
	e := &waitingWorkflows{}
	reg := prometheus.NewRegistry()
	r := &Receiver{Store: oneHook{c}, Authz: allowAll{}, Secrets: oneSecret("s3cret-token"), Audit: failingAudit{}, Engine: e, Waiting: e,
		Deliveries: DeliveriesCounter(reg)}
	out, err := r.Deliver(context.Background(), "h", http.Header{"X-Token": {"s3cret-token"}}, []byte(`{"n":1}`))
	if out != nil || !errors.Is(err, fault.ErrUnavailable) || errors.Is(err, ErrUnverified) || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("Deliver = %+v, %v; want nothing done and the audit trail's error", out, err)
	}
	for outcome, want := range map[string]float64{OutcomeError: 1, OutcomePartial: 0, OutcomeDone: 0} {
		if got := testutil.MetricValue(t, reg, "flowvault_webhook_deliveries_total", map[string]string{"outcome": outcome}); got != want {
			t.Errorf("deliveries_total{outcome=%q} = %v, want %v", outcome, got, want)
		}
	}
}

// A task whose completion the state shows not COMPLETED (its
// definition's outputSchema refused the payload, and failed it) is not
// reported as completed, and the delivery is counted partly done.
func TestOnlyCompletedTasksAreReported(t *testing.T) {
	waiting := func(id string) *engine.Workflow {
		return &engine.Workflow{ID: id, Name: "orders", Version: 1, Tasks: []*engine.Task{{ID: id + "-w", Type: conductor.TaskTypeWaitForWebhook,
			Status: conductor.TaskInProgress, Input: map[string]any{}}}}
	}
	for _, tc := range []struct {
		name    string
		after   string // the task's status once the result is decided
		done    []string
		outcome string
	}{
		{"completed", conductor.TaskCompleted, []string{"a-w"}, OutcomeDone},
		{"failed by its output schema", conductor.TaskFailed, []string{}, OutcomePartial},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := &waitingWorkflows{wfs: map[string]*engine.Workflow{"a": waiting("a")}, after: tc.after}
			reg := prometheus.NewRegistry()
			c := &conductor.WebhookConfig{ID: "h", Verifier: "HEADER_BASED", Headers: map[string]string{"X-Token": "${workflow.secrets.tok}"},
				ReceiverWorkflowNamesToVersions: map[string]int{"orders": 0}, UpdatedBy: "u"}
			r := &Receiver{Store: oneHook{c}, Authz: allowAll{}, Secrets: oneSecret("tok"), Engine: e, Waiting: e, Deliveries: DeliveriesCounter(reg)}
			out, err := r.Deliver(context.Background(), "h", http.Header{"X-Token": {"tok"}}, []byte(`{"n":1}`))
			if out == nil || !slices.Equal(out.Completed, tc.done) || (err != nil) != (tc.outcome == OutcomePartial) {
				t.Fatalf("Deliver = %+v, %v; want completed %v", out, err, tc.done)
			}
			if got := testutil.MetricValue(t, reg, "flowvault_webhook_deliveries_total", map[string]string{"outcome": tc.outcome}); got != 1 {
				t.Errorf("deliveries_total{outcome=%q} = %v, want 1", tc.outcome, got)
			}
		})
	}
}

// starts records the start requests a delivery makes, and answers each
// with its name, or with the error err gives.
type starts struct {
	waitingWorkflows
	reqs []conductor.StartWorkflowRequest
	err  func(req conductor.StartWorkflowRequest) error
}

func (s *starts) StartWorkflow(_ context.Context, req conductor.StartWorkflowRequest, _ executor.StartOptions) (string, uint64, error) {
	s.reqs = append(s.reqs, req)
	if s.err != nil {
		if err := s.err(req); err != nil {
			return "", 0, err
		}
	}
	return "wf-" + req.Name, 1, nil
}

// A webhook's idempotency key is read from each delivery, with
// workflow.input the payload, and every start of the delivery carries it
// and the strategy; one that reads as nothing starts without a key, one
// that cannot be a key starts nothing.
func TestDeliveryIdempotencyKey(t *testing.T) {
	for _, tc := range []struct {
		name, key, body string
		want            string // the key the starts carry; "-": none start
	}{
		{"an id", "${workflow.input.id}", `{"id":"evt_1"}`, "evt_1"},
		{"in text", "order-${workflow.input.order.id}", `{"order":{"id":7}}`, "order-7"},
		{"a number", "${workflow.input.n}", `{"n":42}`, "42"},
		{"absent", "${workflow.input.id}", `{"n":1}`, ""},
		{"empty", "${workflow.input.id}", `{"id":""}`, ""},
		{"an object", "${workflow.input.order}", `{"order":{"id":7}}`, "-"},
		{"a secret named by the payload", "${workflow.secrets.${workflow.input.n}}", `{"n":"db"}`, "-"},
		{"sealed data", "${workflow.input._secrets.token}", `{"_secrets":{"token":"db-token-value"}}`, "-"},
		{"masked data in text", "k-${workflow.input._masked.pin}", `{"_masked":{"pin":"db-pin-4321"}}`, "-"},
		{"beside sealed data", "${workflow.input.id}", `{"id":"evt_2","_secrets":{"token":"db-token-value"}}`, "evt_2"},
		{"none", "", `{"id":"evt_1"}`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &conductor.WebhookConfig{ID: "h", Verifier: "HEADER_BASED", Headers: map[string]string{"X-Token": "${workflow.secrets.tok}"},
				WorkflowsToStart: map[string]int{"a": 0, "b": 2}, IdempotencyKey: tc.key, IdempotencyStrategy: conductor.IdempotencyFail, UpdatedBy: "u"}
			e := &starts{}
			reg := prometheus.NewRegistry()
			r := &Receiver{Store: oneHook{c}, Authz: allowAll{}, Secrets: oneSecret("tok"), Engine: e, Waiting: e, Deliveries: DeliveriesCounter(reg)}
			out, err := r.Deliver(context.Background(), "h", http.Header{"X-Token": {"tok"}}, []byte(tc.body))
			if tc.want == "-" {
				if out == nil || len(out.Started) != 0 || len(e.reqs) != 0 || !errors.Is(err, fault.ErrInvalid) ||
					!strings.Contains(err.Error(), "idempotencyKey") || strings.Contains(err.Error(), "db") {
					t.Fatalf("Deliver = %+v, %v (started %d); want no starts and the key's refusal", out, err, len(e.reqs))
				}
				if got := testutil.MetricValue(t, reg, "flowvault_webhook_deliveries_total", map[string]string{"outcome": OutcomePartial}); got != 1 {
					t.Errorf("deliveries_total{outcome=partial} = %v, want 1", got)
				}
				return
			}
			if err != nil || !slices.Equal(out.Started, []string{"wf-a", "wf-b"}) || len(e.reqs) != 2 {
				t.Fatalf("Deliver = %+v, %v; want both started", out, err)
			}
			for _, req := range e.reqs {
				wantStrategy := conductor.IdempotencyFail
				if tc.want == "" {
					wantStrategy = ""
				}
				if req.IdempotencyKey != tc.want || req.IdempotencyStrategy != wantStrategy {
					t.Errorf("start %s: key %q, strategy %q; want %q, %q", req.Name, req.IdempotencyKey, req.IdempotencyStrategy, tc.want, wantStrategy)
				}
			}
		})
	}
}

// readNone refuses every read of a workflow.
type readNone struct{ allowAll }

func (readNone) MayRead(context.Context, string, *engine.Workflow) error { return fault.ErrForbidden }

// A RETURN_EXISTING delivery answers the workflow its key found only if
// whoever the delivery acts as may read it (the key is shared by every
// starter of the name), as the API answers its caller; a FAIL's refusal
// is the delivery's error, as any start's refusal is. A delivery whose
// only starts not made are those its key refused is a duplicate (a
// sender's retry), counted apart from one that failed (partial).
func TestDeliveryFoundByItsKey(t *testing.T) {
	found := &engine.Workflow{ID: "wf-found", Name: "a", CreatedBy: "someone"}
	for _, tc := range []struct {
		name     string
		strategy string
		authz    Authorizer
		errs     map[string]error // each start's, by workflow name ("a" alone when none)
		started  []string
		refusal  string // in the delivery's error; "" for none
		outcome  string
	}{
		{"returned", conductor.IdempotencyReturnExisting, allowAll{}, nil, []string{"wf-found"}, "", OutcomeDone},
		{"returned, not readable", conductor.IdempotencyReturnExisting, readNone{}, nil, []string{},
			`start a: a workflow with idempotency key "evt_1" exists`, OutcomeDuplicate},
		{"refused", conductor.IdempotencyFail, allowAll{}, map[string]error{"a": executor.ErrKeyHeld}, []string{},
			"start a: " + executor.ErrKeyHeld.Error(), OutcomeDuplicate},
		{"refused, FAIL_ON_RUNNING", conductor.IdempotencyFailOnRunning, allowAll{}, map[string]error{"a": executor.ErrKeyHeld}, []string{},
			"start a: " + executor.ErrKeyHeld.Error(), OutcomeDuplicate},
		{"one refused, one started", conductor.IdempotencyFail, allowAll{}, map[string]error{"a": executor.ErrKeyHeld, "b": nil},
			[]string{"wf-found"}, "start a: " + executor.ErrKeyHeld.Error(), OutcomeDuplicate},
		{"failed", conductor.IdempotencyFail, allowAll{}, map[string]error{"a": fault.ErrForbidden}, []string{},
			"start a: " + fault.ErrForbidden.Error(), OutcomePartial},
		{"one refused, one failed", conductor.IdempotencyFail, allowAll{}, map[string]error{"a": executor.ErrKeyHeld, "b": fault.ErrForbidden},
			[]string{}, "start b: " + fault.ErrForbidden.Error(), OutcomePartial},
	} {
		t.Run(tc.name, func(t *testing.T) {
			toStart := map[string]int{"a": 0}
			for name := range tc.errs {
				toStart[name] = 0
			}
			c := &conductor.WebhookConfig{ID: "h", Verifier: "HEADER_BASED", Headers: map[string]string{"X-Token": "${workflow.secrets.tok}"},
				WorkflowsToStart: toStart, IdempotencyKey: "${workflow.input.id}", IdempotencyStrategy: tc.strategy, UpdatedBy: "u"}
			e := &starts{waitingWorkflows: waitingWorkflows{wfs: map[string]*engine.Workflow{"wf-found": found}}}
			e.err = func(req conductor.StartWorkflowRequest) error { return tc.errs[req.Name] }
			reg := prometheus.NewRegistry()
			r := &Receiver{Store: oneHook{c}, Authz: tc.authz, Secrets: oneSecret("tok"), Engine: foundEngine{e}, Waiting: e,
				Deliveries: DeliveriesCounter(reg)}
			out, err := r.Deliver(context.Background(), "h", http.Header{"X-Token": {"tok"}}, []byte(`{"id":"evt_1"}`))
			if out == nil || !slices.Equal(out.Started, tc.started) {
				t.Fatalf("Deliver = %+v, %v; want started %v", out, err, tc.started)
			}
			if (tc.refusal == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tc.refusal) {
				t.Fatalf("Deliver's error %v, want %q", err, tc.refusal)
			}
			if errors.Is(err, ErrDuplicate) != (tc.outcome == OutcomeDuplicate) {
				t.Errorf("Deliver's error %v: a duplicate %v, want %v", err, errors.Is(err, ErrDuplicate), tc.outcome == OutcomeDuplicate)
			}
			if got := testutil.MetricValue(t, reg, "flowvault_webhook_deliveries_total", map[string]string{"outcome": tc.outcome}); got != 1 {
				t.Errorf("deliveries_total{outcome=%s} = %v, want 1", tc.outcome, got)
			}
		})
	}
}

// foundEngine answers a start with the workflow the key found.
type foundEngine struct{ *starts }

func (f foundEngine) StartWorkflow(ctx context.Context, req conductor.StartWorkflowRequest, o executor.StartOptions) (string, uint64, error) {
	if _, _, err := f.starts.StartWorkflow(ctx, req, o); err != nil {
		return "", 0, err
	}
	return "wf-found", 0, nil
}
