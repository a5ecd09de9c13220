package guard

import (
	"strings"
	"testing"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// A worker's reason is shown cut to 500 characters (engine's ShownReason).
// A secret value the reason quotes across the cut must leave no part of
// itself shown, whether the value is known when the reason is recorded
// (sealed by the same result) or only later (a retry that returns under
// _secrets what the failed attempt quoted): the redaction and the late
// masking find a value whole, so the cut must be made after both, never
// in the stored text.
func TestSecretAcrossTheReasonCutLeavesNoPart(t *testing.T) {
	const value = "token-zzz-987654" // no "x", no "*"
	reason := strings.Repeat("x", conductor.MaxResultReason-8) + value + strings.Repeat("x", 200)
	sealing := map[string]any{"_secrets": map[string]any{"token": value}}
	for _, c := range []struct {
		name      string
		decisions [][]schemas.Event
	}{
		{"sealed by the same result", [][]schemas.Event{{
			&schemas.TaskUpdated{TaskID: "t1", Status: "FAILED", Reason: reason, Output: sealing, Time: 3},
		}}},
		{"sealed by a later result", [][]schemas.Event{{
			&schemas.TaskUpdated{TaskID: "t1", Status: "FAILED", Reason: reason, Time: 3},
			&schemas.TaskScheduled{TaskID: "t2", Ref: "t", Name: "t", Type: "SIMPLE", Status: "SCHEDULED", RetryCount: 1, Time: 3},
		}, {
			&schemas.TaskStarted{TaskID: "t2", Time: 4},
		}, {
			&schemas.TaskUpdated{TaskID: "t2", Status: "COMPLETED", Output: sealing, Time: 5},
		}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx, keys := openKeys(t)
			g := New(Config{Keys: keys})
			w := applyAll(t, nil,
				&schemas.WorkflowStarted{WorkflowID: "wf-cut", Name: "w", Version: 1,
					Def: []byte(`{"name":"w","version":1,"tasks":[{"name":"t","taskReferenceName":"t"}]}`)},
				&schemas.TaskScheduled{TaskID: "t1", Ref: "t", Name: "t", Type: "SIMPLE", Status: "SCHEDULED", Time: 1},
				&schemas.TaskStarted{TaskID: "t1", Time: 2})
			// What the decision sealing the value stores: one before it
			// stores what was not known to be secret yet.
			var stored []string
			for _, events := range c.decisions {
				stored = stored[:0]
				dec, err := g.Protect(ctx, w, engine.Decision{Events: events})
				if err != nil {
					t.Fatal(err)
				}
				for _, ev := range dec.Events {
					if up, ok := ev.(*schemas.TaskUpdated); ok {
						stored = append(stored, up.Reason)
					}
				}
				w = applyAll(t, w, dec.Events...)
			}
			shown := w.TaskByID("t1").Conductor(w).ReasonForIncompletion
			if len(shown) > conductor.MaxResultReason {
				t.Errorf("shown reason of %d characters", len(shown))
			}
			for _, text := range append(stored, w.TaskByID("t1").Reason, shown) {
				if part := partOf(value, text); part != "" {
					t.Errorf("%q of the secret is left in %q", part, text)
				}
			}
		})
	}
}

// partOf returns the longest part of value, of at least three characters,
// that text holds.
func partOf(value, text string) string {
	for n := len(value); n >= 3; n-- {
		for i := 0; i+n <= len(value); i++ {
			if strings.Contains(text, value[i:i+n]) {
				return value[i : i+n]
			}
		}
	}
	return ""
}
