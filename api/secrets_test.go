package api_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flowvault/flowvault/internal/nodetest"
	"github.com/flowvault/flowvault/projections"
	"github.com/flowvault/flowvault/secrets"
)

// call is one HTTP exchange with an explicit content type.
func call(t *testing.T, client *http.Client, method, u, contentType, body string) response {
	t.Helper()
	var r io.Reader
	if body != "" || contentType != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, u, r)
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: string(b), chunked: len(resp.TransferEncoding) > 0}
}

// expectText checks a text/plain answer.
func (r response) expectText(t *testing.T, want string) {
	t.Helper()
	if r.status != http.StatusOK || !strings.HasPrefix(r.header.Get("Content-Type"), "text/plain") || r.body != want {
		t.Fatalf("got %d %q %q, want 200 text/plain %q", r.status, r.header.Get("Content-Type"), r.body, want)
	}
}

// expectEmptyOK checks a 200 with no body.
func (r response) expectEmptyOK(t *testing.T) {
	t.Helper()
	if r.status != http.StatusOK || r.body != "" || r.header.Get("Content-Length") != "0" {
		t.Fatalf("got %d %q (length %q), want an empty 200", r.status, r.body, r.header.Get("Content-Length"))
	}
}

const textPlain, appJSON = "text/plain", "application/json"

func TestSecretRoutes(t *testing.T) {
	t.Parallel()
	_, base := nodetest.Start(t)
	u := base + "/api/secrets"

	// The value is the raw body; a JSON string literal sent as JSON is
	// decoded (orkes-secrets.md §1.3).
	values := []struct {
		name, ct, body, want string
	}{
		{"plain", textPlain, "hunter2", "hunter2"},
		{"plain_quotes", textPlain, `"kept"`, `"kept"`},
		{"js_sdk", appJSON, `"secret-value"`, "secret-value"},
		{"json_escapes", "application/json; charset=utf-8", `"line1\nline2 \"q\" \\ \/ \u00e9 \ud83d\udd11"` + "\n", "line1\nline2 \"q\" \\ / é 🔑"},
		{"json_object", appJSON, `{"user":"app","password":"p"}`, `{"user":"app","password":"p"}`},
		{"json_broken", appJSON, `"not closed`, `"not closed`},
		{"json_two", appJSON, `"a" "b"`, `"a" "b"`},
		{"no_type", "", "raw", "raw"},
		{"pem", textPlain, "-----BEGIN KEY-----\nMII\n-----END KEY-----\n", "-----BEGIN KEY-----\nMII\n-----END KEY-----\n"},
		{"empty", textPlain, "", ""},
		{"empty_json", appJSON, `""`, ""},
	}
	for _, v := range values {
		call(t, nil, "PUT", u+"/"+v.name, v.ct, v.body).expect(t, http.StatusOK)
		r := call(t, nil, "GET", u+"/"+v.name, "", "")
		r.expectText(t, v.want)
		if r.header.Get("Cache-Control") != "no-store" {
			t.Fatalf("value answer is cacheable: %v", r.header)
		}
	}
	if r := call(t, nil, "PUT", u+"/plain", textPlain, "hunter3").expect(t, http.StatusOK); r.body != "{}" {
		t.Fatalf("PUT body %q", r.body)
	}
	call(t, nil, "GET", u+"/plain", "", "").expectText(t, "hunter3")

	if r := call(t, nil, "GET", u+"/plain/exists", "", "").expect(t, http.StatusOK); r.body != "true" {
		t.Fatalf("exists = %s", r.body)
	}
	call(t, nil, "GET", u+"/nope/exists", "", "").expectError(t, http.StatusNotFound, "secret nope not found")

	var all []string
	for _, v := range values {
		all = append(all, v.name)
	}
	wantNames := mustJSON(t, sortedCopy(all))
	for _, m := range []string{"GET", "POST"} {
		if r := call(t, nil, m, u, "", "").expect(t, http.StatusOK); r.body != wantNames {
			t.Fatalf("%s /api/secrets = %s, want %s", m, r.body, wantNames)
		}
	}
	if r := call(t, nil, "GET", u+"?access=READ&access=UPDATE", "", "").expect(t, http.StatusOK); r.body != wantNames {
		t.Fatalf("access filter = %s", r.body)
	}

	// Tags: PUT adds or updates by key, DELETE removes key/value pairs.
	call(t, nil, "PUT", u+"/plain/tags", appJSON, `[{"key":"env","value":"prod"},{"key":"team","value":"a"}]`).expectEmptyOK(t)
	call(t, nil, "PUT", u+"/plain/tags", appJSON, `[{"key":"env","value":"dev","type":"METADATA"}]`).expectEmptyOK(t)
	call(t, nil, "PUT", u+"/plain/tags", appJSON, `{"key":"one","value":"tag"}`).expectEmptyOK(t)
	if r := call(t, nil, "GET", u+"/plain/tags", "", "").expect(t, http.StatusOK); r.body != `[{"key":"env","value":"dev"},{"key":"team","value":"a"},{"key":"one","value":"tag"}]` {
		t.Fatalf("tags = %s", r.body)
	}
	call(t, nil, "DELETE", u+"/plain/tags", appJSON, `[{"key":"team","value":"a"},{"key":"one","value":"other"}]`).expectEmptyOK(t)
	if r := call(t, nil, "GET", u+"/plain/tags", "", "").expect(t, http.StatusOK); r.body != `[{"key":"env","value":"dev"},{"key":"one","value":"tag"}]` {
		t.Fatalf("tags after delete = %s", r.body)
	}
	if r := call(t, nil, "GET", u+"/empty/tags", "", "").expect(t, http.StatusOK); r.body != `[]` {
		t.Fatalf("no tags = %s", r.body)
	}
	for _, path := range []string{"/api/secrets-v2", "/api/secrets/v2"} {
		r := call(t, nil, "GET", base+path, "", "").expect(t, http.StatusOK)
		list := decode[[]map[string]any](t, r.body)
		if len(list) != len(values) || list[len(list)-2]["name"] != "plain" || fmt.Sprint(list[len(list)-2]["tags"]) != "[map[key:env value:dev] map[key:one value:tag]]" || fmt.Sprint(list[0]["tags"]) != "[]" {
			t.Fatalf("%s = %s", path, r.body)
		}
		if strings.Contains(r.body, "hunter") {
			t.Fatalf("%s lists a value", path)
		}
	}

	// Metadata (a flowvault extension): versions, fingerprints, never the value.
	r := call(t, nil, "GET", u+"/plain/metadata", "", "").expect(t, http.StatusOK)
	meta := decode[secrets.Meta](t, r.body)
	if meta.Name != "plain" || meta.Version != 2 || len(meta.Versions) != 2 || !strings.HasPrefix(meta.Fingerprint, "hmac-sha256:") ||
		meta.Fingerprint == meta.Versions[0].Fingerprint || meta.Size != 7 || len(meta.Tags) != 2 || strings.Contains(r.body, "hunter") {
		t.Fatalf("metadata = %s", r.body)
	}

	for _, c := range []string{"clearLocalCache", "clearRedisCache"} {
		r := call(t, nil, "GET", u+"/"+c, "", "").expect(t, http.StatusOK)
		if m := decode[map[string]string](t, r.body); len(m) != 1 {
			t.Fatalf("%s = %s", c, r.body)
		}
	}
	call(t, nil, "GET", u+"/plain", "", "").expectText(t, "hunter3") // after clearing the key cache

	if r := call(t, nil, "DELETE", u+"/plain", "", "").expect(t, http.StatusOK); r.body != "{}" {
		t.Fatalf("DELETE body %q", r.body)
	}
	call(t, nil, "GET", u+"/plain", "", "").expectError(t, http.StatusNotFound, "secret plain not found")
	call(t, nil, "DELETE", u+"/plain", "", "").expectError(t, http.StatusNotFound, "secret plain not found")
	call(t, nil, "GET", u+"/plain/exists", "", "").expectError(t, http.StatusNotFound, "not found")
	// A new value after a delete is a new version.
	call(t, nil, "PUT", u+"/plain", textPlain, "again").expect(t, http.StatusOK)
	if m := decode[secrets.Meta](t, call(t, nil, "GET", u+"/plain/metadata", "", "").expect(t, http.StatusOK).body); m.Version != 3 || len(m.Tags) != 0 {
		t.Fatalf("re-created: %+v", m)
	}
}

func sortedCopy(s []string) []string {
	out := append([]string(nil), s...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

func TestSecretBadInput(t *testing.T) {
	t.Parallel()
	_, base := nodetest.Start(t)
	u := base + "/api/secrets"
	call(t, nil, "PUT", u+"/known", textPlain, "v").expect(t, http.StatusOK)

	rule := "[a-zA-Z0-9_-]+"
	long := strings.Repeat("a", secrets.MaxNameLen+1)
	tests := []struct {
		name, method, path, ct, body string
		status                       int
		msg                          string
	}{
		{"dot", "PUT", "/a.b", textPlain, "v", 400, rule},
		{"space", "PUT", "/a%20b", textPlain, "v", 400, rule},
		{"slash", "PUT", "/a%2Fb", textPlain, "v", 400, rule},
		{"unicode", "PUT", "/n%C3%A4me", textPlain, "v", 400, rule},
		{"dollar", "PUT", "/$%7Bx%7D", textPlain, "v", 400, rule},
		{"too long", "PUT", "/" + long, textPlain, "v", 400, "at most 256"},
		{"reserved v2", "PUT", "/v2", textPlain, "v", 400, "reserved"},
		{"reserved cache", "PUT", "/clearLocalCache", textPlain, "v", 400, "reserved"},
		{"get dot", "GET", "/a.b", "", "", 400, rule},
		{"delete dot", "DELETE", "/a.b", "", "", 400, rule},
		{"exists dot", "GET", "/a.b/exists", "", "", 400, rule},
		{"tags dot", "GET", "/a.b/tags", "", "", 400, rule},
		{"put tags dot", "PUT", "/a.b/tags", appJSON, `[]`, 400, rule},
		{"metadata dot", "GET", "/a.b/metadata", "", "", 400, rule},
		{"oversized", "PUT", "/big", textPlain, strings.Repeat("x", secrets.MaxValueLen+1), 413, "the limit is 65535 bytes"},
		{"oversized json", "PUT", "/big", appJSON, `"` + strings.Repeat(`\u0041`, secrets.MaxValueLen+1) + `"`, 413, "65535"},
		{"huge body", "PUT", "/big", textPlain, strings.Repeat("x", 7*secrets.MaxValueLen), 413, "limit of 65535 bytes"},
		{"not utf8", "PUT", "/bin", "application/octet-stream", "\xff\xfe\x00", 400, "UTF-8"},
		{"unknown get", "GET", "/nope", "", "", 404, "secret nope not found"},
		{"unknown delete", "DELETE", "/nope", "", "", 404, "secret nope not found"},
		{"unknown tags", "GET", "/nope/tags", "", "", 404, "not found"},
		{"unknown put tags", "PUT", "/nope/tags", appJSON, `[{"key":"k","value":"v"}]`, 404, "not found"},
		{"unknown delete tags", "DELETE", "/nope/tags", appJSON, `[{"key":"k","value":"v"}]`, 404, "not found"},
		{"unknown metadata", "GET", "/nope/metadata", "", "", 404, "not found"},
		{"tags malformed", "PUT", "/known/tags", appJSON, `[{"key":`, 400, "malformed JSON"},
		{"tags empty body", "PUT", "/known/tags", appJSON, ``, 400, "empty"},
		{"tags null", "DELETE", "/known/tags", appJSON, `null`, 400, "body: must be a tag or an array of tags, not a JSON null"},
		{"tags not tags", "PUT", "/known/tags", appJSON, `"env"`, 400, "body: must be a tag or an array of tags, not a JSON string"},
		{"tag without key", "PUT", "/known/tags", appJSON, `[{"value":"v"}]`, 400, "Validation failed"},
		{"bad access", "GET", "?access=ALL", "", "", 400, "access"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := call(t, nil, tt.method, u+tt.path, tt.ct, tt.body).expectError(t, tt.status, "")
			msg := fmt.Sprint(e["message"], e["validationErrors"])
			if !strings.Contains(msg, tt.msg) {
				t.Fatalf("message %q, want it to mention %q", msg, tt.msg)
			}
			if !strings.HasSuffix(tt.path, "/tags") && len(tt.body) > 3 && strings.Contains(msg, tt.body) {
				t.Fatal("the error echoes the body")
			}
		})
	}
	if r := call(t, nil, "POST", u+"/known", textPlain, "v"); r.status != http.StatusMethodNotAllowed {
		t.Fatalf("POST /api/secrets/known = %d", r.status)
	}
	// Nothing of the refused requests was stored.
	if r := call(t, nil, "GET", u, "", "").expect(t, http.StatusOK); r.body != `["known"]` {
		t.Fatalf("names = %s", r.body)
	}
}

func TestEnvironmentRoutes(t *testing.T) {
	t.Parallel()
	_, base := nodetest.Start(t)
	u := base + "/api/environment"
	call(t, nil, "PUT", u+"/region", textPlain, "eu-west-1").expectEmptyOK(t)
	call(t, nil, "PUT", u+"/cfg", textPlain, `{"a":1}`).expectEmptyOK(t)
	call(t, nil, "PUT", u+"/quoted", appJSON, `"decoded"`).expectEmptyOK(t)
	call(t, nil, "GET", u+"/region", "", "").expectText(t, "eu-west-1")
	call(t, nil, "GET", u+"/quoted", "", "").expectText(t, "decoded")
	call(t, nil, "PUT", u+"/region", textPlain, "us-east-1").expectEmptyOK(t)
	call(t, nil, "PUT", u+"/region/tags", appJSON, `[{"key":"k","value":"v"}]`).expectEmptyOK(t)
	if r := call(t, nil, "GET", u+"/region/tags", "", "").expect(t, http.StatusOK); r.body != `[{"key":"k","value":"v"}]` {
		t.Fatalf("tags = %s", r.body)
	}
	r := call(t, nil, "GET", u, "", "").expect(t, http.StatusOK)
	if r.body != `[{"name":"cfg","value":"{\"a\":1}","tags":[]},{"name":"quoted","value":"decoded","tags":[]},{"name":"region","value":"us-east-1","tags":[{"key":"k","value":"v"}]}]` {
		t.Fatalf("list = %s", r.body)
	}
	call(t, nil, "DELETE", u+"/region/tags", appJSON, `[{"key":"k","value":"v"}]`).expectEmptyOK(t)
	call(t, nil, "DELETE", u+"/region", "", "").expectText(t, "us-east-1")
	call(t, nil, "GET", u+"/region", "", "").expectError(t, http.StatusNotFound, "environment variable region not found")
	call(t, nil, "DELETE", u+"/region", "", "").expectError(t, http.StatusNotFound, "not found")
	call(t, nil, "GET", u+"/region/tags", "", "").expectError(t, http.StatusNotFound, "not found")
	call(t, nil, "PUT", u+"/a.b", textPlain, "v").expectError(t, http.StatusBadRequest, "[a-zA-Z0-9_-]+")
	call(t, nil, "GET", u+"/a.b", "", "").expectError(t, http.StatusBadRequest, "[a-zA-Z0-9_-]+")
	call(t, nil, "PUT", u+"/big", textPlain, strings.Repeat("x", secrets.MaxValueLen+1)).expectError(t, http.StatusRequestEntityTooLarge, "65535")
	call(t, nil, "PUT", u+"/bin", textPlain, "\xff").expectError(t, http.StatusBadRequest, "UTF-8")
	call(t, nil, "PUT", u+"/cfg/tags", appJSON, `[{"key":`).expectError(t, http.StatusBadRequest, "malformed JSON")
	// ${workflow.env.HOME} never reads the server's process environment.
	call(t, nil, "GET", u+"/HOME", "", "").expectError(t, http.StatusNotFound, "not found")
	call(t, nil, "GET", u+"/PATH", "", "").expectError(t, http.StatusNotFound, "not found")
}

// withToken sends every request with an X-Authorization token.
type withToken string

func (tok withToken) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("X-Authorization", string(tok))
	return http.DefaultTransport.RoundTrip(r)
}

// The handlers ask the Authorizer before every operation; listings keep
// only what the caller may read. The caller here is an application with
// no roles and one grant: READ on the secret "open".
func TestSecretsAuthorizer(t *testing.T) {
	t.Parallel()
	n, base, adminToken := nodetest.StartSecure(t)
	admin := &http.Client{Transport: withToken(adminToken)}
	call(t, admin, "PUT", base+"/api/secrets/open", textPlain, "o").expect(t, http.StatusOK)
	call(t, admin, "PUT", base+"/api/secrets/closed", textPlain, "c").expect(t, http.StatusOK)
	call(t, admin, "PUT", base+"/api/environment/e", textPlain, "v").expectEmptyOK(t)
	appID, _, _, token := newApp(t, client{t: t, base: base, token: adminToken}, "reader")
	call(t, admin, "POST", base+"/api/auth/authorization", appJSON,
		`{"subject":{"type":"USER","id":"app:`+appID+`"},"target":{"type":"SECRET_NAME","id":"open"},"access":["READ"]}`).expect(t, http.StatusOK)
	reader := &http.Client{Transport: withToken(token)}
	u := base
	call(t, reader, "GET", u+"/api/secrets/open", "", "").expectText(t, "o")
	call(t, nil, "GET", u+"/api/secrets/open", "", "").expect(t, http.StatusUnauthorized)
	for _, c := range []struct{ method, path, ct, body string }{
		{"GET", "/api/secrets/closed", "", ""},
		{"GET", "/api/secrets/closed/exists", "", ""},
		{"GET", "/api/secrets/closed/metadata", "", ""},
		{"GET", "/api/secrets/closed/tags", "", ""},
		{"PUT", "/api/secrets/open", textPlain, "x"},
		{"PUT", "/api/secrets/new", textPlain, "x"},
		{"DELETE", "/api/secrets/open", "", ""},
		{"PUT", "/api/secrets/open/tags", appJSON, `[]`},
		{"GET", "/api/secrets/clearLocalCache", "", ""},
		{"GET", "/api/environment/e", "", ""},
		{"PUT", "/api/environment/e", textPlain, "w"},
		{"DELETE", "/api/environment/e", "", ""},
	} {
		call(t, reader, c.method, u+c.path, c.ct, c.body).expectError(t, http.StatusForbidden, "may not")
	}
	for _, p := range []string{"/api/secrets", "/api/secrets/v2"} {
		r := call(t, reader, "GET", u+p, "", "").expect(t, http.StatusOK)
		if strings.Contains(r.body, "closed") || !strings.Contains(r.body, "open") {
			t.Fatalf("%s = %s", p, r.body)
		}
	}
	if r := call(t, reader, "GET", u+"/api/environment", "", "").expect(t, http.StatusOK); r.body != "[]" {
		t.Fatalf("env list = %s", r.body)
	}
	// Nothing was changed by the refused requests.
	call(t, admin, "GET", base+"/api/secrets/open", "", "").expectText(t, "o")
	if ok, err := n.Secrets().Exists(context.Background(), "new"); ok || err != nil {
		t.Fatalf("refused PUT created a secret: %v %v", ok, err)
	}
}

// Deleting the read models and restarting rebuilds the secrets read model
// from the log with identical contents, and the secrets read as before.
func TestSecretsRebuildAfterPebbleLoss(t *testing.T) {
	t.Parallel()
	cfg := nodetest.Config(filepath.Join(t.TempDir(), "data"))
	n, base := nodetest.StartConfig(t, cfg)
	u := base + "/api/secrets/"
	call(t, nil, "PUT", u+"a", textPlain, "one").expect(t, http.StatusOK)
	call(t, nil, "PUT", u+"a", textPlain, "two").expect(t, http.StatusOK)
	call(t, nil, "PUT", u+"a/tags", appJSON, `[{"key":"k","value":"v"}]`).expectEmptyOK(t)
	call(t, nil, "PUT", u+"b", textPlain, "gone").expect(t, http.StatusOK)
	call(t, nil, "DELETE", u+"b", "", "").expect(t, http.StatusOK)
	call(t, nil, "PUT", base+"/api/environment/e", textPlain, "x").expectEmptyOK(t)
	dump := func() string {
		t.Helper()
		if err := n.Stop(context.Background()); err != nil {
			t.Fatal(err)
		}
		s, err := projections.OpenStore(cfg.PebbleDir(), projections.StoreOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		var b strings.Builder
		if err := s.Dump(&b); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	before := dump()
	if !strings.Contains(before, `p/secrets/s/a`) || !strings.Contains(before, `p/secrets/e/e`) {
		t.Fatalf("dump lacks the secrets read model:\n%s", before)
	}
	if err := os.RemoveAll(cfg.PebbleDir()); err != nil {
		t.Fatal(err)
	}
	// Compared before anything is read: reading a value is an audit fact,
	// which the worker credentials read model checkpoints past.
	n, _ = nodetest.StartConfig(t, cfg)
	if after := dump(); after != before {
		t.Fatalf("rebuilt read model differs:\n%s\n---\n%s", before, after)
	}
	_, base = nodetest.StartConfig(t, cfg)
	call(t, nil, "GET", base+"/api/secrets/a", "", "").expectText(t, "two")
}
