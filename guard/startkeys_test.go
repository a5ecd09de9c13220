package guard

import (
	"errors"
	"strings"
	"testing"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/schemas"
)

// A start's idempotency key and rate limit key are kept in its record and
// shown in plain text: one holding a value the start seals is refused,
// naming the field, never the value. They were recorded as given (a
// webhook's key read from a payload field its workflow names in
// maskedFields or copies into a _secrets block; a rate limit key read
// from an input its first task takes under _secrets), shown by the
// execution and indexed, with the value "***" in the input beside them.
func TestStartKeysHoldingSealedValuesAreRefused(t *testing.T) {
	ctx, keys := openKeys(t)
	const value = "tk-9f3b2c7d1e4a6b8c"
	copies := `{"name":"w","version":1,"tasks":[{"name":"t","taskReferenceName":"t","inputParameters":{"_secrets":{"t":"${workflow.input.tok}"}}}]}`
	masks := `{"name":"w","version":1,"maskedFields":["tok"],"tasks":[{"name":"t","taskReferenceName":"t"}]}`
	plain := `{"name":"w","version":1,"tasks":[{"name":"t","taskReferenceName":"t"}]}`
	firstTask := &schemas.TaskScheduled{TaskID: "t1", Ref: "t", Name: "t", Type: "SIMPLE", Status: "SCHEDULED",
		Input: map[string]any{"_secrets": map[string]any{"t": value}}, Time: 1}
	for _, tc := range []struct {
		name    string
		def     string
		input   map[string]any
		idem    string
		rlKey   string
		first   bool // the start schedules firstTask
		refused string
		corr    string
	}{
		{"idempotency key of an input the definition copies into _secrets", copies, map[string]any{"tok": value}, value, "", false, "idempotencyKey", ""},
		{"idempotency key of a masked field", masks, map[string]any{"tok": value}, value, "", false, "idempotencyKey", ""},
		{"idempotency key holding one in text", masks, map[string]any{"tok": value}, "order-" + value, "", false, "idempotencyKey", ""},
		{"idempotency key of its own _secrets data", plain, map[string]any{"_secrets": map[string]any{"x": value}}, value, "", false, "idempotencyKey", ""},
		{"rate limit key of what its first task takes under _secrets", plain, map[string]any{"k": value}, "", value, true, "rateLimitConfig.rateLimitKey", ""},
		{"rate limit key of a masked field", masks, map[string]any{"tok": value}, "", value, false, "rateLimitConfig.rateLimitKey", ""},
		{"plain keys", copies, map[string]any{"tok": value, "id": "evt_1"}, "evt_1", "evt_1", false, "", "evt_1"},
		// The correlation id is kept, shown, searched and indexed as the
		// keys are: it showed the value beside an input reading "***".
		{"correlation id of its own _secrets data", plain, map[string]any{"_secrets": map[string]any{"x": value}}, "", "", false, "correlationId", value},
		{"correlation id holding one in text", plain, map[string]any{"_secrets": map[string]any{"x": value}}, "", "", false, "correlationId", "order-" + value},
		{"correlation id of a short _secrets value", plain, map[string]any{"_secrets": map[string]any{"x": "pin9"}}, "", "", false, "correlationId", "pin9"},
		{"correlation id of a masked field", masks, map[string]any{"tok": value}, "", "", false, "correlationId", value},
		{"correlation id of an input the definition copies into _secrets", copies, map[string]any{"tok": value}, "", "", false, "correlationId", value},
		{"plain correlation id holding a short _secrets value", plain, map[string]any{"_secrets": map[string]any{"x": "pin9"}}, "", "", false, "", "order-pin9"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := &schemas.WorkflowStarted{WorkflowID: "wf-keys", Name: "w", Version: 1, Def: []byte(tc.def), Input: tc.input,
				IdempotencyKey: tc.idem, RateLimited: tc.rlKey != "", RateLimitKey: tc.rlKey, CorrelationID: tc.corr, CreatedBy: "admin"}
			events := []schemas.Event{start}
			if tc.first {
				events = append(events, firstTask)
			}
			dec, err := New(Config{Keys: keys}).Protect(ctx, nil, engine.Decision{Events: events})
			if tc.refused == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				w := applyAll(t, nil, dec.Events...)
				if w.IdempotencyKey != tc.idem || w.RateLimitKey != tc.rlKey || w.CorrelationID != tc.corr {
					t.Fatalf("keys %q, %q, correlation id %q, want %q, %q, %q", w.IdempotencyKey, w.RateLimitKey, w.CorrelationID, tc.idem, tc.rlKey, tc.corr)
				}
				return
			}
			if !errors.Is(err, fault.ErrInvalid) || !strings.Contains(err.Error(), tc.refused) || strings.Contains(err.Error(), value) ||
				strings.Contains(err.Error(), "pin9") {
				t.Fatalf("error %v, want one naming %s, not the value", err, tc.refused)
			}
		})
	}
}
