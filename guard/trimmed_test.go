package guard

import (
	"context"
	"testing"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/internal/leaktest"
	"github.com/flowvault/flowvault/schemas"
)

// A secret stored with whitespace around it (read from a file with its
// newline, pasted with a space) reaches text without it: Go's net/http
// sends an HTTP task's header value trimmed, and the server that echoes
// it, or a worker that strips it before it logs or uses it, quotes the
// value without the whitespace, which a search for the whole value does
// not find. Such text is redacted right after the hand-off and with what
// redaction looks for rebuilt from the log's record of the resolution; a
// trimmed value the definition spells is its text, and kept.
func TestTrimmedSecretRedacted(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	token := "sk_live_" + string(leaktest.RandomSecret(16))
	pass := "p4ss-" + string(leaktest.RandomSecret(16))
	src := fakeSecrets{"tok": token + "\n", "pass": "\t " + pass + " ", "db": "postgres-admin\r\n"}
	w := applyAll(t, nil,
		&schemas.WorkflowStarted{WorkflowID: "wf-trim", Name: "w", Version: 1,
			Def: []byte(`{"name":"w","version":1,"tasks":[{"name":"call","taskReferenceName":"call","type":"HTTP",
			  "inputParameters":{"user":"postgres-admin"}}]}`)},
		&schemas.TaskScheduled{TaskID: "t1", Ref: "call", Name: "call", Type: "HTTP", Status: "SCHEDULED",
			Input:    map[string]any{"tok": "${workflow.secrets.tok}", "pass": "${workflow.secrets.pass}", "db": "${workflow.secrets.db}"},
			Deferred: [][]any{{"tok"}, {"pass"}, {"db"}}, Time: 1})
	live := New(Config{Secrets: src, Authz: allowAll{}})
	in, refs, err := live.Prepare(ctx, w, w.Tasks[0])
	if err != nil || in["pass"] != "\t "+pass+" " {
		t.Fatalf("prepared input %q, %v", in, err)
	}
	recorded := applyAll(t, w, &schemas.TaskStarted{TaskID: "t1", WorkerID: "system", Time: 2, Resolved: refs})

	for _, tc := range resolvedGuards(live, src, w, recorded) {
		dec, err := tc.g.Protect(ctx, tc.before, engine.Decision{Events: []schemas.Event{
			&schemas.TaskLogged{TaskID: "t1", Lines: []string{"using " + token}, Times: []int64{3}},
			&schemas.TaskUpdated{TaskID: "t1", Status: "FAILED", Reason: "rejected X-Key " + token, Time: 3,
				Output: map[string]any{"headers": map[string]any{"X-Pass": []any{pass}}, "user": "postgres-admin"}},
		}})
		if err != nil {
			t.Fatal(err)
		}
		logged, up := dec.Events[0].(*schemas.TaskLogged), dec.Events[1].(*schemas.TaskUpdated)
		if logged.Lines[0] != "using ***" || up.Reason != "rejected X-Key ***" {
			t.Errorf("%s: log line %q, reason %q, want the trimmed token read ***", tc.name, logged.Lines[0], up.Reason)
		}
		headers, _ := up.Output["headers"].(map[string]any)
		if got, _ := headers["X-Pass"].([]any); len(got) != 1 || got[0] != "***" {
			t.Errorf("%s: the echoed header %q, want the trimmed password read ***", tc.name, got)
		}
		if up.Output["user"] != "postgres-admin" {
			t.Errorf("%s: the definition's text %q was redacted", tc.name, up.Output["user"])
		}
	}
}
