package webhooks

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/schemas/conductor"
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
		{"unserved verifier", conductor.WebhookConfig{Name: "h", Verifier: "STRIPE", WorkflowsToStart: start}, "verifier"},
		{"no name", conductor.WebhookConfig{Verifier: "HMAC_BASED", HeaderKey: "X", SecretValue: "${workflow.secrets.tok}", WorkflowsToStart: start}, "name"},
		{"no workflow", conductor.WebhookConfig{Name: "h", Verifier: "HMAC_BASED", HeaderKey: "X", SecretValue: "${workflow.secrets.tok}"}, "workflowsToStart"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Validate(&tc.c)
			var ve *fault.ValidationError
			switch {
			case tc.bad == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.bad != "" && (!errors.As(err, &ve) || len(ve.Fields) != 1 || ve.Fields[0].Path != tc.bad):
				t.Fatalf("error %v, want one naming %s", err, tc.bad)
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
			err := verify(tc.c, tc.header, body, secret)
			if ok := err == nil; ok != tc.ok || !ok && !errors.Is(err, ErrUnverified) {
				t.Fatalf("verify = %v, want ok %v", err, tc.ok)
			}
		})
	}
	missing := &conductor.WebhookConfig{Verifier: "HMAC_BASED", HeaderKey: "X-Sig", SecretValue: "${workflow.secrets.gone}"}
	if err := verify(missing, http.Header{"X-Sig": {hex.EncodeToString(sum)}}, body, secret); err == nil || strings.Contains(err.Error(), string(key)) {
		t.Fatalf("a webhook without its secret: %v", err)
	}
}

func TestMatches(t *testing.T) {
	payload := map[string]any{"event": map[string]any{"type": "push", "n": int64(3)}, "list": []any{"x", map[string]any{"k": "v"}}}
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
	} {
		if got := matches(tc.want, payload); got != tc.ok {
			t.Errorf("matches(%v) = %v, want %v", tc.want, got, tc.ok)
		}
	}
}
