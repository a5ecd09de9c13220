package e2e_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/flowvault/flowvault/internal/leaktest"
	"github.com/flowvault/flowvault/masking"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// A secret in an HTTP task's uri before its '@' (the password, the user,
// or the whole user:password) holding %XX escapes reaches the server
// decoded, in the Basic Authorization header Go builds from the URL's
// userinfo: base64 of user:password, the escapes decoded. A whole
// user:password (with escapes or without) reaches it as the user and the
// password apart, which a server that decodes the header echoes as
// separate fields. A server that echoes the header back, and the user and
// the password it decoded, has none of the values, as they are or
// decoded, nor the password of a user:password, in any form stored or
// shown anywhere; the user of one reads *** in the task's output when it
// is 6 bytes long (masking.MinLength), and is kept when shorter.
func TestUserinfoSecretRedacted(t *testing.T) {
	t.Parallel()
	vals := map[string]string{
		"pw":   "pw" + alnum(8) + "%2F" + alnum(8) + "%40" + alnum(8),
		"usr":  "us" + alnum(8) + "%2B" + alnum(8),
		"cred": "cr" + alnum(8) + ":" + alnum(8) + "%2F" + alnum(8),
		"svc":  "svc" + alnum(7) + ":" + alnum(6) + "!" + alnum(8),
		"at6":  "alice9:" + alnum(12),
		"at5":  "bob12:" + alnum(12),
	}
	labelled := map[string]string{}
	for k, v := range vals {
		labelled[k], labelled[k+"-decoded"] = v, pctDecode(v, false)
		if user, password, ok := strings.Cut(v, ":"); ok {
			labelled[k+"-password"] = pctDecode(password, false)
			if len(user) >= leaktest.MinFormLen {
				labelled[k+"-user"] = user
			}
		}
	}
	scanners, names := scannersOf(labelled)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	n := startLeakNode(ctx, t, nil)
	e := n.env(t, scanners...)
	remote := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		user, password, _ := r.BasicAuth()
		json.NewEncoder(w).Encode(map[string]any{"authorization": r.Header.Get("Authorization"), "user": user, "password": password})
	}))
	defer remote.Close()
	host := strings.TrimPrefix(remote.URL, "http://")

	for k, v := range vals {
		e.putSecret(k, v)
	}
	uris := map[string]string{
		"pw":   "http://svc:${workflow.secrets.pw}@" + host + "/a",
		"usr":  "http://${workflow.secrets.usr}:public@" + host + "/a",
		"cred": "http://${workflow.secrets.cred}@" + host + "/a",
		"svc":  "http://${workflow.secrets.svc}@" + host + "/a",
		"at6":  "http://${workflow.secrets.at6}@" + host + "/a",
		"at5":  "http://${workflow.secrets.at5}@" + host + "/a",
	}
	var tasks []string
	for ref, uri := range uris {
		tasks = append(tasks, `{"name":"http","taskReferenceName":"`+ref+`","type":"HTTP","inputParameters":{"http_request":{"uri":"`+uri+`","method":"GET"}}}`)
	}
	e.register(`{"name":"ui","tasks":[` + strings.Join(tasks, ",") + `]}`)
	id := e.start("ui", nil)
	wf := e.waitStatus(id, conductor.WorkflowCompleted)
	for ref := range uris {
		res, _ := taskByRef(wf, ref).OutputData["response"].(map[string]any)
		body, _ := res["body"].(map[string]any)
		if auth, _ := body["authorization"].(string); !strings.HasPrefix(auth, "Basic ") {
			t.Errorf("%s: the server echoed %v, want the Basic credentials the uri gave", ref, body)
		}
	}
	for _, ref := range []string{"cred", "svc", "at6", "at5"} {
		res, _ := taskByRef(wf, ref).OutputData["response"].(map[string]any)
		body, _ := res["body"].(map[string]any)
		wantUser := masking.Mask
		if user, _, _ := strings.Cut(vals[ref], ":"); len(user) < masking.MinLength {
			wantUser = user
		}
		if body["user"] != wantUser || body["password"] != masking.Mask {
			t.Errorf("%s: the server's echo reads user %v password %v, want user %q and password ***", ref, body["user"], body["password"], wantUser)
		}
	}
	e.waitCompacted(id)

	e.must(http.StatusOK, "GET", "/api/workflow/"+id+"?includeTasks=true", nil)
	e.must(http.StatusOK, "GET", "/api/workflow/search?freeText=*&size=100", nil)
	for _, tk := range wf.Tasks {
		e.must(http.StatusOK, "GET", "/api/tasks/"+tk.TaskID, nil)
	}
	n.scanEverything(t, scanners, names)
}
