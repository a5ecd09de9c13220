package guard

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/url"
	"strings"
	"testing"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/internal/leaktest"
	"github.com/flowvault/flowvault/masking"
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
	src := fakeSecrets{"pw": "pw%2Fq7Lm9xR%40zK4vTn", "usr": "us%2Bm3Kq8Wd", "cred": "cr4Xm7Qd:p%3Dk9Lw2Zt6"}
	uris := map[string]string{
		"pw":   "https://svc:${workflow.secrets.pw}@host/a",
		"usr":  "https://${workflow.secrets.usr}:public@host/a",
		"cred": "https://${workflow.secrets.cred}@host/a",
	}
	live, w, recorded, in := handOff(t, `{"name":"w","version":1,"tasks":[{"name":"call","taskReferenceName":"call","type":"HTTP"}]}`, "HTTP", src, uris)
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
	for _, tc := range resolvedGuards(live, src, w, recorded) {
		out, err := json.Marshal(tc.completed(t, map[string]any{"authorization": echoed}))
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

// A whole user:password secret as a uri's userinfo reaches the server as
// the user and the password apart (Go's Basic Authorization header), and
// a server that decodes the header echoes them as separate fields: the
// password has every form of its own redacted (here as .NET's JSON and in
// base64, as the whole value's would be), the user too when it is at
// least masking.MinLength bytes long and the definition does not spell
// it, right after the hand-off and with what redaction looks for rebuilt
// from the log's record of the resolution.
func TestUserinfoHalvesRedacted(t *testing.T) {
	t.Parallel()
	tests := []struct {
		key, value string
		userKept   bool
	}{
		{"long", "svcadm1n:Qz7'pLm:9xR+Tv&w", false}, // the password holds ':', as Go reads it
		{"floor", "alice9:k3Y8wQ2r", false},
		{"short", "bob12:k4Y9wQ3r", true},
		{"public", "deploy-bot:Mx9Lq7Zp", true},
	}
	src, uris := fakeSecrets{}, map[string]string{}
	for _, tt := range tests {
		src[tt.key] = tt.value
		uris[tt.key] = "https://${workflow.secrets." + tt.key + "}@host/a"
	}
	live, w, recorded, in := handOff(t, `{"name":"w","version":1,"description":"calls as deploy-bot","tasks":[{"name":"call","taskReferenceName":"call","type":"HTTP"}]}`, "HTTP", src, uris)
	// What the server echoes: the user and the password of each uri's
	// header, decoded, and the password in base64 and as .NET writes JSON.
	echoed := map[string]any{}
	for _, tt := range tests {
		u, err := url.Parse(in[tt.key].(string))
		if err != nil {
			t.Fatalf("%s: %v", tt.key, err)
		}
		pass, _ := u.User.Password()
		echoed[tt.key] = map[string]any{"user": u.User.Username(), "password": pass,
			"b64": base64.StdEncoding.EncodeToString([]byte(pass)), "log": `{"password":"` + leaktest.DotNetJSON(pass) + `"}`}
	}
	for _, tc := range resolvedGuards(live, src, w, recorded) {
		out := tc.completed(t, echoed)
		for _, tt := range tests {
			got := out[tt.key].(map[string]any)
			user, pass, _ := strings.Cut(tt.value, ":")
			wantUser := masking.Mask
			if tt.userKept {
				wantUser = user
			}
			if got["user"] != wantUser || got["password"] != masking.Mask || got["log"] != `{"password":"***"}` {
				t.Errorf("%s: %s: user %q password %q log %q, want user %q and the password ***", tc.name, tt.key, got["user"], got["password"], got["log"], wantUser)
			}
			raw, _ := json.Marshal(got)
			sc := leaktest.New([]byte(pass))
			sc.Scan("the output", raw)
			for _, h := range sc.Hits() {
				t.Errorf("%s: %s: the password: %s", tc.name, tt.key, h)
			}
		}
	}
}

// handOff hands task t1 (call, of type typ) off, its input's fields the
// texts of fields resolved from src, in a workflow of definition def: the
// guard that resolved them, the workflow before and after the take's
// record, and the input handed.
func handOff(t *testing.T, def, typ string, src fakeSecrets, fields map[string]string) (live *Guard, w, recorded *engine.Workflow, in map[string]any) {
	t.Helper()
	input, deferred := map[string]any{}, [][]any{}
	for k, text := range fields {
		input[k] = text
		deferred = append(deferred, []any{k})
	}
	w = applyAll(t, nil,
		&schemas.WorkflowStarted{WorkflowID: "wf-handoff", Name: "w", Version: 1, Def: []byte(def)},
		&schemas.TaskScheduled{TaskID: "t1", Ref: "call", Name: "call", Type: typ, Status: "SCHEDULED",
			Input: input, Deferred: deferred, Time: 1})
	live = New(Config{Secrets: src, Authz: allowAll{}})
	in, refs, err := live.Prepare(context.Background(), w, w.Tasks[0])
	if err != nil {
		t.Fatal(err)
	}
	recorded = applyAll(t, w, &schemas.TaskStarted{TaskID: "t1", WorkerID: "system", Time: 2, Resolved: refs})
	return live, w, recorded, in
}

// A part of a secret shorter than masking.MinLength (a password, a
// query's piece) is kept as it is, and its escaped forms that reach the
// floor are redacted: a server's JSON log line quoting it as Go or .NET
// escapes it, right after the hand-off and with what redaction looks for
// rebuilt from the log's record of the resolution.
func TestShortPartEscapedRedacted(t *testing.T) {
	t.Parallel()
	tests := []struct {
		key, value, field, part, escaped string
	}{
		{"creds", "bob12:p&ss1", "https://${workflow.secrets.creds}@host/a", "p&ss1", `p\u0026ss1`},
		{"query", "pa'ss&w0rd=Zx81Lm0q", "https://host/a?k=${workflow.secrets.query}", "pa'ss", `pa\u0027ss`},
	}
	src, fields, echoed := fakeSecrets{}, map[string]string{}, map[string]any{}
	for _, tt := range tests {
		src[tt.key], fields[tt.key] = tt.value, tt.field
		echoed[tt.key] = map[string]any{"part": tt.part, "log": `{"part":"` + tt.escaped + `"}`}
	}
	live, w, recorded, _ := handOff(t, `{"name":"w","version":1,"tasks":[{"name":"call","taskReferenceName":"call","type":"HTTP"}]}`, "HTTP", src, fields)
	for _, tc := range resolvedGuards(live, src, w, recorded) {
		out := tc.completed(t, echoed)
		for _, tt := range tests {
			got := out[tt.key].(map[string]any)
			if got["part"] != tt.part || got["log"] != `{"part":"***"}` {
				t.Errorf("%s: %s: part %q log %q, want the part %q as it is and the log {\"part\":\"***\"}", tc.name, tt.key, got["part"], got["log"], tt.part)
			}
		}
	}
}

// completed returns the output of task t1's completion with output, as
// tc's guard records it.
func (tc resolvedGuard) completed(t *testing.T, output map[string]any) map[string]any {
	t.Helper()
	dec, err := tc.g.Protect(context.Background(), tc.before, engine.Decision{Events: []schemas.Event{
		&schemas.TaskUpdated{TaskID: "t1", Status: "COMPLETED", Time: 3, Output: output},
	}})
	if err != nil {
		t.Fatal(err)
	}
	return dec.Events[0].(*schemas.TaskUpdated).Output
}
