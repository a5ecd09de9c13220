package guard

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/url"
	"testing"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/internal/leaktest"
	"github.com/flowvault/flowvault/schemas"
)

// A secret holding %XX escapes in an HTTP task's uri before its '@' is
// decoded by Go, which sends the Basic Authorization header of the
// decoded user and password, base64-encoded: a server echoing the header
// back has it redacted right after the hand-off and with what redaction
// looks for rebuilt from the log's record of the resolution, whether the
// secret is the password, the user or the whole user:password.
func TestDecodedUserinfoRedacted(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	src := fakeSecrets{"pw": "pw%2Fq7Lm9xR%40zK4vTn", "usr": "us%2Bm3Kq8Wd", "cred": "cr4Xm7Qd:p%3Dk9Lw2Zt6"}
	uris := map[string]string{
		"pw":   "https://svc:${workflow.secrets.pw}@host/a",
		"usr":  "https://${workflow.secrets.usr}:public@host/a",
		"cred": "https://${workflow.secrets.cred}@host/a",
	}
	input, deferred := map[string]any{}, [][]any{}
	for k, uri := range uris {
		input[k] = uri
		deferred = append(deferred, []any{k})
	}
	w := applyAll(t, nil,
		&schemas.WorkflowStarted{WorkflowID: "wf-userinfo", Name: "w", Version: 1,
			Def: []byte(`{"name":"w","version":1,"tasks":[{"name":"call","taskReferenceName":"call","type":"HTTP"}]}`)},
		&schemas.TaskScheduled{TaskID: "t1", Ref: "call", Name: "call", Type: "HTTP", Status: "SCHEDULED",
			Input: input, Deferred: deferred, Time: 1})
	live := New(Config{Secrets: src, Authz: allowAll{}})
	in, refs, err := live.Prepare(ctx, w, w.Tasks[0])
	if err != nil {
		t.Fatal(err)
	}
	// What the server echoes: the header Go builds from each uri.
	echoed := map[string]any{}
	for k := range uris {
		u, err := url.Parse(in[k].(string))
		if err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		pass, _ := u.User.Password()
		echoed[k] = "Basic " + base64.StdEncoding.EncodeToString([]byte(u.User.Username()+":"+pass))
	}
	recorded := applyAll(t, w, &schemas.TaskStarted{TaskID: "t1", WorkerID: "system", Time: 2, Resolved: refs})

	for _, tc := range resolvedGuards(live, src, w, recorded) {
		dec, err := tc.g.Protect(ctx, tc.before, engine.Decision{Events: []schemas.Event{
			&schemas.TaskUpdated{TaskID: "t1", Status: "COMPLETED", Time: 3, Output: map[string]any{"authorization": echoed}},
		}})
		if err != nil {
			t.Fatal(err)
		}
		out, err := json.Marshal(dec.Events[0].(*schemas.TaskUpdated).Output)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range src {
			decoded, _ := url.PathUnescape(v)
			sc := leaktest.New([]byte(decoded))
			sc.Scan("the output", out)
			for _, h := range sc.Hits() {
				t.Errorf("%s: %s decoded: %s", tc.name, k, h)
			}
		}
	}
}
