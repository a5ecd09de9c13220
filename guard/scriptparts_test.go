package guard

import (
	"context"
	"fmt"
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
	const catch = "try { f('${workflow.secrets.%s}') } catch (e) { e.message }"
	checkScriptResults(t, []scriptCase{
		{"long", "p4ss'+w0rdX9tail+'", catch, "w0rdX9tail is not defined", "*** is not defined"},
		{"floor", "p4ss'+Qn7Vw2+'", catch, "ReferenceError: Qn7Vw2 is not defined", "ReferenceError: *** is not defined"},
		{"short", "p4ss'+Qn7Vw+'", catch, "ReferenceError: Qn7Vw is not defined", "ReferenceError: Qn7Vw is not defined"},
		{"public", "p4ss'+tail9Qz+'", catch, "tail9Qz is not defined", "tail9Qz is not defined"},
	})
}

// scriptCase is a secret spliced into an INLINE's expression (its key at
// %s), and what the script returned and is to be recorded.
type scriptCase struct {
	key, value, expression, result, want string
}

// checkScriptResults hands off an INLINE for each of tests, in a workflow
// whose definition spells tail9Qz, and checks that its result is recorded
// as wanted, after the hand-off and rebuilt from the log.
func checkScriptResults(t *testing.T, tests []scriptCase) {
	t.Helper()
	src, fields := fakeSecrets{}, map[string]string{}
	for _, tt := range tests {
		src[tt.key] = tt.value
		fields[tt.key] = fmt.Sprintf(tt.expression, tt.key)
	}
	live, w, recorded, _ := handOff(t, `{"name":"w","version":1,"description":"may say tail9Qz","tasks":[{"name":"call","taskReferenceName":"call","type":"INLINE"}]}`, "INLINE", src, fields)
	out := map[string]any{}
	for _, tt := range tests {
		out[tt.key] = map[string]any{"result": tt.result}
	}
	for _, tc := range resolvedGuards(live, src, w, recorded) {
		dec, err := tc.g.Protect(context.Background(), tc.before, engine.Decision{Events: []schemas.Event{
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
