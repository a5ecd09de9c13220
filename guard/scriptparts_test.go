package guard

import (
	"context"
	"testing"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/schemas"
)

// A secret spliced into an INLINE's string ends it with its quote, and
// the name after the quote, code now, fails the script, which catches the
// error and returns its message: the name, a part of the value, reads ***
// when it is at least masking.MinLength bytes long and the definition
// does not spell it, right after the hand-off and with what redaction
// looks for rebuilt from the log's record of the resolution.
func TestScriptTokensOfASecretRedacted(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tests := []struct {
		key, value, message, want string
	}{
		{"long", "p4ss'+w0rdX9tail+'", "w0rdX9tail is not defined", "*** is not defined"},
		{"floor", "p4ss'+Qn7Vw2+'", "ReferenceError: Qn7Vw2 is not defined", "ReferenceError: *** is not defined"},
		{"short", "p4ss'+Qn7Vw+'", "ReferenceError: Qn7Vw is not defined", "ReferenceError: Qn7Vw is not defined"},
		{"public", "p4ss'+tail9Qz+'", "tail9Qz is not defined", "tail9Qz is not defined"},
	}
	src, fields := fakeSecrets{}, map[string]string{}
	for _, tt := range tests {
		src[tt.key] = tt.value
		fields[tt.key] = "try { f('${workflow.secrets." + tt.key + "}') } catch (e) { e.message }"
	}
	live, w, recorded, _ := handOff(t, `{"name":"w","version":1,"description":"may say tail9Qz","tasks":[{"name":"call","taskReferenceName":"call","type":"INLINE"}]}`, "INLINE", src, fields)
	out := map[string]any{}
	for _, tt := range tests {
		out[tt.key] = map[string]any{"result": tt.message}
	}
	for _, tc := range resolvedGuards(live, src, w, recorded) {
		dec, err := tc.g.Protect(ctx, tc.before, engine.Decision{Events: []schemas.Event{
			&schemas.TaskUpdated{TaskID: "t1", Status: "COMPLETED", Time: 3, Output: out},
		}})
		if err != nil {
			t.Fatal(err)
		}
		got := dec.Events[0].(*schemas.TaskUpdated).Output
		for _, tt := range tests {
			if r := got[tt.key].(map[string]any)["result"]; r != tt.want {
				t.Errorf("%s: %s: the script's result %q, want %q", tc.name, tt.key, r, tt.want)
			}
		}
	}
}
