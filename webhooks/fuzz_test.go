package webhooks

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/flowvault/flowvault/schemas/conductor"
)

// FuzzVerify sends any signature headers and body to each verifier. None
// lets a delivery through without reading the secret it is checked with,
// and no refusal quotes that secret.
func FuzzVerify(f *testing.F) {
	f.Add(uint8(0), "sha256=zz", "1790000000", []byte(`{}`))
	f.Add(uint8(1), "t=1790000000,v1=00,v0=11", "", []byte(`{"a":1}`))
	f.Add(uint8(2), "v0="+strings.Repeat("ab", 32), "1790000000", []byte(`{}`))
	f.Add(uint8(3), "s3cret", "s3cret", []byte(``))
	f.Add(uint8(4), "q83vEjRWeJASNFZ4kBI0VniQEjRWeJASNFZ4kBI0Vng=", "", []byte(`x`))
	f.Add(uint8(1), "t=-9223372036854775808,v1=", "", []byte(``))
	key := []byte("s3cret-key-for-fuzzing")
	now := time.Unix(1_790_000_000, 0)
	configs := []*conductor.WebhookConfig{
		{Verifier: "HMAC_BASED", HeaderKey: "X-Sig", SecretValue: "${workflow.secrets.k}"},
		{Verifier: "STRIPE", SecretValue: "${workflow.secrets.k}"},
		{Verifier: "SLACK_BASED", SecretValue: "${workflow.secrets.k}"},
		{Verifier: "HEADER_BASED", Headers: map[string]string{"X-Sig": "${workflow.secrets.k}"}},
		{Verifier: "SIGNATURE_BASED", HeaderKey: "X-Sig", SecretValue: "${workflow.secrets.k}"},
	}
	f.Fuzz(func(t *testing.T, which uint8, sig, ts string, body []byte) {
		c := configs[int(which)%len(configs)]
		header := http.Header{}
		for _, k := range []string{"X-Sig", "Stripe-Signature", "X-Slack-Signature"} {
			header.Set(k, sig)
		}
		header.Set("X-Slack-Request-Timestamp", ts)
		read := false
		err := verify(c, header, body, now, func(name string) ([]byte, error) {
			read = true
			return key, nil
		})
		switch {
		case err == nil && !read:
			t.Fatalf("%s: verified without reading its secret", c.Verifier)
		case err != nil && !errors.Is(err, ErrUnverified):
			t.Fatalf("%s: %v, not ErrUnverified", c.Verifier, err)
		case err != nil && strings.Contains(err.Error(), string(key)):
			t.Fatalf("%s: %v quotes the secret", c.Verifier, err)
		}
	})
}

// FuzzLookup follows any path through a delivery: a name that any path
// spells, bracketed, finds its value.
func FuzzLookup(f *testing.F) {
	for _, p := range []string{"$['event']['type']", "$.event.type", "$.list[1].k", "$.list[2]", "event.type", "$['event'", "$[-1]", "$.a..b", "$[99999999999999999999]", "$[']"} {
		f.Add(p, "type")
	}
	payload := map[string]any{"event": map[string]any{"type": "push"}, "list": []any{"x", map[string]any{"k": "v"}}}
	f.Fuzz(func(t *testing.T, path, name string) {
		lookup(payload, path)
		if strings.Contains(name, "']") {
			return
		}
		doc := map[string]any{"x": map[string]any{name: "found"}}
		if got, ok := lookup(doc, "$.x['"+name+"']"); !ok || got != "found" {
			t.Fatalf("$.x['%s']: %v, %v", name, got, ok)
		}
	})
}
