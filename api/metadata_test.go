package api_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/flowvault/flowvault/internal/nodetest"
)

// response is what a test sees of one HTTP exchange.
type response struct {
	status  int
	header  http.Header
	body    string
	chunked bool
}

func do(t *testing.T, method, u, body string) response {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, u, r)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: string(b),
		chunked: len(resp.TransferEncoding) > 0}
}

// expect checks the status and, for success, the shape the SDKs accept:
// 204 with no body for void answers, JSON with a length otherwise.
func (r response) expect(t *testing.T, status int) response {
	t.Helper()
	if r.status != status {
		t.Fatalf("status = %d, want %d; body %s", r.status, status, r.body)
	}
	switch {
	case status == http.StatusNoContent:
		if r.body != "" {
			t.Fatalf("204 with a body: %q", r.body)
		}
	default:
		if ct := r.header.Get("Content-Type"); ct != "application/json" {
			t.Fatalf("Content-Type = %q, want application/json (body %s)", ct, r.body)
		}
		if r.chunked || r.header.Get("Content-Length") == "" {
			t.Fatalf("JSON answer without Content-Length (chunked=%v)", r.chunked)
		}
		if !json.Valid([]byte(r.body)) {
			t.Fatalf("invalid JSON body: %s", r.body)
		}
	}
	return r
}

// expectError checks Conductor's error body.
func (r response) expectError(t *testing.T, status int, msgPart string) map[string]any {
	t.Helper()
	r.expect(t, status)
	var e map[string]any
	if err := json.Unmarshal([]byte(r.body), &e); err != nil {
		t.Fatal(err)
	}
	if got, _ := e["status"].(float64); int(got) != status {
		t.Fatalf("error body status = %v, want %d: %s", e["status"], status, r.body)
	}
	if msg, _ := e["message"].(string); !strings.Contains(msg, msgPart) {
		t.Fatalf("error message %q lacks %q", msg, msgPart)
	}
	return e
}

func decode[T any](t *testing.T, body string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
	return v
}

const sampleWF = `{"name":"wf1","description":"demo","version":1,"x-custom":{"a":[1,2.5,"s"]},` +
	`"tasks":[{"name":"my_task","taskReferenceName":"my_task_ref","type":"SIMPLE","inputParameters":{"x":"${workflow.input.x}","big":9007199254740993}}],` +
	`"timeoutSeconds":0,"inputParameters":[],"outputParameters":{}}`

func TestMetadataWorkflowRoutes(t *testing.T) {
	t.Parallel()
	_, base := nodetest.Start(t)
	api := base + "/api/metadata/workflow"

	do(t, "POST", api+"?overwrite=false", sampleWF).expect(t, http.StatusNoContent)
	do(t, "POST", api, sampleWF).expectError(t, http.StatusConflict, "Workflow with wf1.1 already exists!")
	do(t, "POST", api+"?overwrite=true", strings.Replace(sampleWF, "demo", "demo2", 1)).expect(t, http.StatusNoContent)
	do(t, "POST", api+"?overwrite=maybe", sampleWF).expectError(t, http.StatusBadRequest, "overwrite")

	got := do(t, "GET", api+"/wf1?metadata=false", "").expect(t, http.StatusOK).body
	for _, want := range []string{`"x-custom":{"a":[1,2.5,"s"]}`, `"big":9007199254740993`, `"description":"demo2"`, `"version":1`, `"createTime":`} {
		if !strings.Contains(got, want) {
			t.Fatalf("GET lacks %s: %s", want, got)
		}
	}
	do(t, "GET", api+"/wf1?version=1&metadata=false", "").expect(t, http.StatusOK)
	do(t, "GET", api+"/wf1?version=", "").expect(t, http.StatusOK) // empty = latest
	do(t, "GET", api+"/wf1?version=abc", "").expectError(t, http.StatusBadRequest, `version "abc"`)
	do(t, "GET", api+"/wf1?version=7", "").expectError(t, http.StatusNotFound, "No such workflow found by name: wf1, version: 7")
	do(t, "GET", api+"/unknown", "").expectError(t, http.StatusNotFound, "unknown")

	// Bulk create-or-update.
	bulk := `[` + sampleWF + `,` + strings.Replace(sampleWF, `"wf1"`, `"wf2"`, 1) + `]`
	resp := do(t, "PUT", api, bulk).expect(t, http.StatusOK)
	if want := `{"bulkErrorResults":{},"bulkSuccessfulResults":["wf1","wf2"]}`; resp.body != want {
		t.Fatalf("bulk = %s, want %s", resp.body, want)
	}
	if got := decode[map[string]any](t, do(t, "GET", api+"/wf1", "").body)["description"]; got != "demo" {
		t.Fatalf("PUT did not overwrite: description %v", got)
	}
	do(t, "POST", api, strings.Replace(sampleWF, `"version":1`, `"version":2`, 1)).expect(t, http.StatusNoContent)
	if v := decode[map[string]any](t, do(t, "GET", api+"/wf1", "").body)["version"]; v != 2.0 {
		t.Fatalf("latest version = %v, want 2", v)
	}

	list := decode[[]map[string]any](t, do(t, "GET", api, "").expect(t, http.StatusOK).body)
	var keys []string
	for _, d := range list {
		keys = append(keys, fmt.Sprintf("%s.%v", d["name"], d["version"]))
	}
	if got, want := strings.Join(keys, " "), "wf1.1 wf1.2 wf2.1"; got != want {
		t.Fatalf("list = %s, want %s", got, want)
	}

	do(t, "DELETE", api+"/wf2/1", "").expect(t, http.StatusNoContent)
	do(t, "DELETE", api+"/wf2/1", "").expectError(t, http.StatusNotFound, "wf2")
	do(t, "DELETE", api+"/wf1/abc", "").expectError(t, http.StatusBadRequest, `version "abc"`)
	do(t, "GET", api+"/wf2", "").expectError(t, http.StatusNotFound, "wf2")

	// Names that need escaping in a URL.
	odd := "my wf/v.1"
	do(t, "POST", api, strings.Replace(sampleWF, `"wf1"`, `"`+odd+`"`, 1)).expect(t, http.StatusNoContent)
	if got := decode[map[string]any](t, do(t, "GET", api+"/"+url.PathEscape(odd), "").expect(t, http.StatusOK).body)["name"]; got != odd {
		t.Fatalf("name = %v", got)
	}
	do(t, "DELETE", api+"/"+url.PathEscape(odd)+"/1", "").expect(t, http.StatusNoContent)
}

// Conductor OSS's MetadataResource serves a workflow's names and versions
// (GET /api/metadata/workflow/names-and-versions, Conductor's UI lists
// definitions with it) and the latest version of each definition (GET
// /api/metadata/workflow/latest-versions). Read as a definition's name,
// both were answered 404.
func TestMetadataWorkflowNamesAndLatestVersions(t *testing.T) {
	t.Parallel()
	_, base := nodetest.Start(t)
	api := base + "/api/metadata/workflow"

	// Before any definition: an empty object and an empty list.
	if got := do(t, "GET", api+"/names-and-versions", "").expect(t, http.StatusOK).body; got != "{}" {
		t.Fatalf("names-and-versions with no definitions = %s, want {}", got)
	}
	if got := do(t, "GET", api+"/latest-versions", "").expect(t, http.StatusOK).body; got != "[]" {
		t.Fatalf("latest-versions with no definitions = %s, want []", got)
	}

	def := func(name string, version int, description string) string {
		return fmt.Sprintf(`{"name":%q,"version":%d,"description":%q,"tasks":[{"name":"t","taskReferenceName":"t"}]}`, name, version, description)
	}
	for _, d := range []string{def("wf_b", 1, "b1"), def("wf_a", 3, "a3"), def("wf_a", 1, "a1"), def("wf_a", 2, "a2")} {
		do(t, "POST", api, d).expect(t, http.StatusNoContent)
	}
	do(t, "DELETE", api+"/wf_a/2", "").expect(t, http.StatusNoContent)

	versions := decode[map[string][]map[string]any](t, do(t, "GET", api+"/names-and-versions", "").expect(t, http.StatusOK).body)
	if len(versions) != 2 {
		t.Fatalf("names-and-versions = %v, want wf_a and wf_b", versions)
	}
	for name, want := range map[string][]float64{"wf_a": {1, 3}, "wf_b": {1}} {
		got := versions[name]
		if len(got) != len(want) {
			t.Fatalf("names-and-versions[%s] = %v, want versions %v", name, got, want)
		}
		for i, s := range got {
			if s["name"] != name || s["version"] != want[i] || len(s) != 3 {
				t.Fatalf("names-and-versions[%s][%d] = %v, want {name %s, version %v, createTime}", name, i, s, name, want[i])
			}
			if ct, ok := s["createTime"].(float64); !ok || ct <= 0 {
				t.Fatalf("names-and-versions[%s][%d].createTime = %v", name, i, s["createTime"])
			}
		}
	}

	latest := decode[[]map[string]any](t, do(t, "GET", api+"/latest-versions", "").expect(t, http.StatusOK).body)
	var got []string
	for _, d := range latest {
		got = append(got, d["name"].(string)+"."+d["description"].(string))
		// Each is the definition as GET returns it, defaults added.
		if d["schemaVersion"] != 2.0 || d["tasks"] == nil {
			t.Fatalf("latest-versions holds %v, want whole definitions with Conductor's defaults", d)
		}
	}
	if strings.Join(got, " ") != "wf_a.a3 wf_b.b1" {
		t.Fatalf("latest-versions = %v, want wf_a.a3 wf_b.b1", got)
	}
}

// Orkes's GET /api/metadata/workflow filters by name (every version of
// that name, not of names it begins), by tag (a definition whose name
// holds a tag of key tagKey and value tagValue, either alone matching any
// other) and answers short=true with each definition's tasks left out and
// metadata=true with its tags. All were ignored: every version of every
// definition was listed.
func TestMetadataWorkflowListFilters(t *testing.T) {
	t.Parallel()
	_, base := nodetest.Start(t)
	api := base + "/api/metadata/workflow"
	def := func(name string, version int) string {
		return fmt.Sprintf(`{"name":%q,"version":%d,"tasks":[{"name":"t","taskReferenceName":"t"}]}`, name, version)
	}
	for _, d := range []string{def("wf_a", 1), def("wf_a", 2), def("wf_ab", 1), def("wf_b", 1), def("wf_c", 1)} {
		do(t, "POST", api, d).expect(t, http.StatusNoContent)
	}
	do(t, "PUT", api+"/wf_a/tags", `[{"key":"team","value":"ops"},{"key":"tier","value":"gold"}]`).expect(t, http.StatusNoContent)
	do(t, "PUT", api+"/wf_b/tags", `[{"key":"team","value":"dev"}]`).expect(t, http.StatusNoContent)
	do(t, "PUT", api+"/wf_ab/tags", `[{"key":"env","value":"ops"}]`).expect(t, http.StatusNoContent)

	tests := []struct {
		query, want string
	}{
		{"", "wf_a.1 wf_a.2 wf_ab.1 wf_b.1 wf_c.1"},
		{"?name=wf_a", "wf_a.1 wf_a.2"},
		{"?name=wf_", ""},
		{"?name=no_such_flow", ""},
		{"?tagKey=team&tagValue=ops", "wf_a.1 wf_a.2"},
		{"?tagKey=team", "wf_a.1 wf_a.2 wf_b.1"},
		{"?tagValue=ops", "wf_a.1 wf_a.2 wf_ab.1"},
		{"?tagKey=team&tagValue=gold", ""}, // one tag must hold both
		{"?tagKey=nobody", ""},
		{"?name=wf_b&tagKey=team&tagValue=ops", ""},
		{"?name=wf_b&tagKey=team", "wf_b.1"},
		{"?access=READ&metadata=false&tagKey=team&tagValue=ops", "wf_a.1 wf_a.2"}, // as the JS SDK's getAllWorkflows sends it
		{"?short=true", "wf_a.1 wf_a.2 wf_ab.1 wf_b.1 wf_c.1"},
		{"?short=false&name=wf_c", "wf_c.1"},
	}
	for _, tc := range tests {
		list := decode[[]map[string]any](t, do(t, "GET", api+tc.query, "").expect(t, http.StatusOK).body)
		var got []string
		for _, d := range list {
			got = append(got, fmt.Sprintf("%s.%v", d["name"], d["version"]))
			tasks, _ := d["tasks"].([]any)
			if short := strings.Contains(tc.query, "short=true"); short != (len(tasks) == 0) || d["tasks"] == nil {
				t.Errorf("GET %s: %s has tasks %v", tc.query, got[len(got)-1], d["tasks"])
			}
			if d["schemaVersion"] != 2.0 {
				t.Errorf("GET %s: %v lacks Conductor's defaults", tc.query, d)
			}
		}
		if strings.Join(got, " ") != tc.want {
			t.Errorf("GET %s = %q, want %q", tc.query, strings.Join(got, " "), tc.want)
		}
	}

	list := decode[[]map[string]any](t, do(t, "GET", api+"?metadata=true", "").expect(t, http.StatusOK).body)
	tags := map[string]string{}
	for _, d := range list {
		tags[fmt.Sprintf("%s.%v", d["name"], d["version"])] = mustJSON(t, d["tags"])
	}
	want := map[string]string{
		"wf_a.1": `[{"key":"team","value":"ops"},{"key":"tier","value":"gold"}]`, "wf_a.2": `[{"key":"team","value":"ops"},{"key":"tier","value":"gold"}]`,
		"wf_ab.1": `[{"key":"env","value":"ops"}]`, "wf_b.1": `[{"key":"team","value":"dev"}]`, "wf_c.1": `[]`,
	}
	if mustJSON(t, tags) != mustJSON(t, want) {
		t.Errorf("GET ?metadata=true tags = %v, want %v", tags, want)
	}
	if body := do(t, "GET", api, "").body; strings.Contains(body, `"tags"`) {
		t.Errorf("GET without metadata=true shows tags: %.300s", body)
	}
	do(t, "GET", api+"?short=maybe", "").expectError(t, http.StatusBadRequest, "short")
}

// Orkes's GET /api/metadata/taskdefs reads the workflow list's tagKey,
// tagValue and metadata (it has no name or short): the JS SDK's
// metadataResource.getTaskDefs sends all three and access. All were
// ignored: every definition was listed, without tags.
func TestMetadataTaskDefListFilters(t *testing.T) {
	t.Parallel()
	_, base := nodetest.Start(t)
	api := base + "/api/metadata/taskdefs"
	do(t, "POST", api, `[{"name":"t_a"},{"name":"t_ab"},{"name":"t_b"},{"name":"t_c"}]`).expect(t, http.StatusNoContent)
	do(t, "PUT", base+"/api/metadata/task/t_a/tags", `[{"key":"team","value":"ops"},{"key":"tier","value":"gold"}]`).expect(t, http.StatusNoContent)
	do(t, "PUT", base+"/api/metadata/task/t_b/tags", `[{"key":"team","value":"dev"}]`).expect(t, http.StatusNoContent)
	do(t, "PUT", base+"/api/metadata/task/t_ab/tags", `[{"key":"env","value":"ops"}]`).expect(t, http.StatusNoContent)

	tests := []struct {
		query, want string
	}{
		{"", "t_a t_ab t_b t_c"},
		{"?tagKey=team&tagValue=ops", "t_a"},
		{"?tagKey=team", "t_a t_b"},
		{"?tagValue=ops", "t_a t_ab"},
		{"?tagKey=team&tagValue=gold", ""}, // one tag must hold both
		{"?tagKey=nobody", ""},
		{"?tagKey=t_a", ""},                                             // a name is no tag
		{"?access=READ&metadata=false&tagKey=team&tagValue=ops", "t_a"}, // as the JS SDK's getTaskDefs sends it
	}
	for _, tc := range tests {
		list := decode[[]map[string]any](t, do(t, "GET", api+tc.query, "").expect(t, http.StatusOK).body)
		var got []string
		for _, d := range list {
			got = append(got, fmt.Sprint(d["name"]))
			if d["retryLogic"] != "FIXED" {
				t.Errorf("GET %s: %v lacks Conductor's defaults", tc.query, d)
			}
		}
		if strings.Join(got, " ") != tc.want {
			t.Errorf("GET %s = %q, want %q", tc.query, strings.Join(got, " "), tc.want)
		}
	}

	for query, want := range map[string]map[string]string{
		"?metadata=true": {
			"t_a": `[{"key":"team","value":"ops"},{"key":"tier","value":"gold"}]`, "t_ab": `[{"key":"env","value":"ops"}]`,
			"t_b": `[{"key":"team","value":"dev"}]`, "t_c": `[]`,
		},
		"?metadata=true&tagValue=ops": {"t_a": `[{"key":"team","value":"ops"},{"key":"tier","value":"gold"}]`, "t_ab": `[{"key":"env","value":"ops"}]`},
	} {
		tags := map[string]string{}
		for _, d := range decode[[]map[string]any](t, do(t, "GET", api+query, "").expect(t, http.StatusOK).body) {
			tags[fmt.Sprint(d["name"])] = mustJSON(t, d["tags"])
		}
		if mustJSON(t, tags) != mustJSON(t, want) {
			t.Errorf("GET %s tags = %v, want %v", query, tags, want)
		}
	}
	if body := do(t, "GET", api, "").body; strings.Contains(body, `"tags"`) {
		t.Errorf("GET without metadata=true shows tags: %.300s", body)
	}
	do(t, "GET", api+"?metadata=maybe", "").expectError(t, http.StatusBadRequest, "metadata")
}

// Orkes's newVersion registers a definition as the version after its
// name's latest, whatever version it names (POST, and each definition of
// PUT); a name without versions gets the one it names. PUT's overwrite
// (true unless given) leaves a version that exists as it is, reported per
// definition as PUT reports what it could not store. Both flags were
// ignored: POST ?newVersion=true with version 1 registered answered 409.
func TestMetadataWorkflowNewVersion(t *testing.T) {
	t.Parallel()
	_, base := nodetest.Start(t)
	api := base + "/api/metadata/workflow"
	def := func(name, version, description string) string {
		v := ""
		if version != "" {
			v = `"version":` + version + `,`
		}
		return fmt.Sprintf(`{"name":%q,%s"description":%q,"tasks":[{"name":"t","taskReferenceName":"t"}]}`, name, v, description)
	}
	versions := func(name string) string {
		t.Helper()
		var got []string
		for _, d := range decode[[]map[string]any](t, do(t, "GET", api+"?name="+name, "").expect(t, http.StatusOK).body) {
			got = append(got, fmt.Sprintf("%v:%v", d["version"], d["description"]))
		}
		return strings.Join(got, " ")
	}

	do(t, "POST", api, def("w", "1", "one")).expect(t, http.StatusNoContent)
	steps := []struct {
		method, query, body string
		status              int
		want                string // w's versions after it
	}{
		{"POST", "?newVersion=true", def("w", "1", "two"), http.StatusNoContent, "1:one 2:two"},
		{"POST", "?newVersion=true&overwrite=false", def("w", "", "three"), http.StatusNoContent, "1:one 2:two 3:three"},
		{"POST", "?newVersion=true", def("w", "9", "four"), http.StatusNoContent, "1:one 2:two 3:three 4:four"},
		{"POST", "?newVersion=false", def("w", "1", "again"), http.StatusConflict, "1:one 2:two 3:three 4:four"},
		{"PUT", "?newVersion=true", "[" + def("w", "1", "five") + "," + def("w", "1", "six") + "]", http.StatusOK,
			"1:one 2:two 3:three 4:four 5:five 6:six"},
		{"PUT", "", "[" + def("w", "1", "uno") + "]", http.StatusOK, "1:uno 2:two 3:three 4:four 5:five 6:six"},
		{"PUT", "?overwrite=false", "[" + def("w", "2", "dos") + "]", http.StatusOK, "1:uno 2:two 3:three 4:four 5:five 6:six"},
		{"PUT", "?overwrite=false", "[" + def("w", "7", "seven") + "]", http.StatusOK, "1:uno 2:two 3:three 4:four 5:five 6:six 7:seven"},
	}
	for _, s := range steps {
		r := do(t, s.method, api+s.query, s.body)
		if r.status != s.status {
			t.Fatalf("%s %s %s = %d %s, want %d", s.method, s.query, s.body, r.status, r.body, s.status)
		}
		if got := versions("w"); got != s.want {
			t.Fatalf("after %s %s %s: versions %s, want %s", s.method, s.query, s.body, got, s.want)
		}
	}
	if got := do(t, "PUT", api+"?overwrite=false", "["+def("w", "2", "dos")+"]").body; got != `{"bulkErrorResults":{"w":"Workflow with w.2 already exists!"},"bulkSuccessfulResults":[]}` {
		t.Fatalf("PUT ?overwrite=false of an existing version = %s", got)
	}

	// A name without versions gets the version it names, 1 when none.
	do(t, "POST", api+"?newVersion=true", def("fresh", "", "f")).expect(t, http.StatusNoContent)
	do(t, "PUT", api+"?newVersion=true", "["+def("fresh5", "5", "f")+"]").expect(t, http.StatusOK)
	if got := versions("fresh") + "/" + versions("fresh5"); got != "1:f/5:f" {
		t.Fatalf("new names registered with newVersion = %s, want 1:f/5:f", got)
	}
	do(t, "POST", api+"?newVersion=perhaps", def("w", "1", "x")).expectError(t, http.StatusBadRequest, "newVersion")
	do(t, "PUT", api+"?newVersion=perhaps", "["+def("w", "1", "x")+"]").expectError(t, http.StatusBadRequest, "newVersion")
	do(t, "PUT", api+"?overwrite=perhaps", "["+def("w", "1", "x")+"]").expectError(t, http.StatusBadRequest, "overwrite")
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestMetadataBadInput(t *testing.T) {
	t.Parallel()
	_, base := nodetest.Start(t)
	wf := base + "/api/metadata/workflow"
	td := base + "/api/metadata/taskdefs"
	tests := []struct {
		name, method, url, body string
		status                  int
		msg                     string
	}{
		{"malformed JSON", "POST", wf, `{"name":`, 400, "malformed JSON"},
		{"empty body", "POST", wf, ``, 400, "empty"},
		{"string for a definition", "POST", wf, `"a string"`, 400, "body: must be an object, not a JSON string"},
		{"string for tasks", "POST", wf, `{"name":"w","tasks":"x"}`, 400, "Validation failed"},
		{"word for the version", "POST", wf, `{"name":"w","version":"two","tasks":[]}`, 400, "Validation failed"},
		{"trailing data", "POST", wf, `{"name":"w"} {}`, 400, "malformed JSON"},
		{"object where an array is expected", "PUT", wf, `{"name":"w"}`, 400, "body: must be an array, not a JSON object"},
		{"string where an array is expected", "PUT", wf, `"abc"`, 400, "body: must be an array, not a JSON string"},
		{"empty bulk", "PUT", wf, `[]`, 400, "must not be empty"},
		{"task defs object", "POST", td, `{"name":"t"}`, 400, "body: must be an array, not a JSON object"},
		{"task defs string", "POST", td, `"t"`, 400, "body: must be an array, not a JSON string"},
		{"task defs empty", "POST", td, `[]`, 400, "must not be empty"},
		{"task def array", "PUT", td, `[{"name":"t"}]`, 400, "body: must be an object, not a JSON array"},
		{"task def wrong type", "PUT", td, `{"name":"t","retryCount":"three"}`, 400, "Validation failed"},
		{"task def wrong type in a bulk", "POST", td, `[{"name":"a"},{"name":"b","retryCount":"2x"}]`, 400, "Validation failed"},
		{"nested wrong type", "POST", wf, `{"name":"w","tasks":[{"name":"a","taskReferenceName":"a","optional":"yes"}]}`, 400, "Validation failed"},
		{"oversized", "POST", wf, `{"name":"w","description":"` + strings.Repeat("x", 5<<20) + `"}`, 413, "bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			do(t, tt.method, tt.url, tt.body).expectError(t, tt.status, tt.msg)
		})
	}

	// A field of the wrong type is named by its JSON path, not by the Go
	// type that decodes it.
	for body, want := range map[string]string{
		`[{"name":"a"},{"name":"b","retryCount":"two"}]`: `{"message":"must be an integer, not a JSON string","path":"retryCount"}`,
		`[{"name":"a","pollTimeoutSeconds":true}]`:       `{"message":"must be an integer, not a JSON bool","path":"pollTimeoutSeconds"}`,
	} {
		e := do(t, "POST", td, body).expectError(t, http.StatusBadRequest, "Validation failed")
		if got := mustJSON(t, e["validationErrors"]); !strings.Contains(got, want) || strings.Contains(got, "plain") {
			t.Errorf("%s: validationErrors = %s, want %s", body, got, want)
		}
	}

	// Validation errors name JSON paths.
	e := do(t, "POST", wf, `{"name":"w","tasks":[{"name":"a","taskReferenceName":"a"},{"name":"b"}]}`).
		expectError(t, http.StatusBadRequest, "Validation failed")
	ves, _ := e["validationErrors"].([]any)
	if len(ves) != 1 || ves[0].(map[string]any)["path"] != "tasks[1].taskReferenceName" {
		t.Fatalf("validationErrors = %v", e["validationErrors"])
	}
	e = do(t, "PUT", wf, `[{"name":"ok","tasks":[{"name":"a","taskReferenceName":"a"}]},{"tasks":[]}]`).
		expectError(t, http.StatusBadRequest, "Validation failed")
	if got := mustJSON(t, e["validationErrors"]); !strings.Contains(got, `"[1].name"`) || !strings.Contains(got, `"[1].tasks"`) {
		t.Fatalf("validationErrors = %s", got)
	}
	do(t, "GET", wf+"/ok", "").expectError(t, http.StatusNotFound, "ok") // nothing of an invalid bulk is stored
	e = do(t, "POST", td, `[{"name":"fine"},{"description":"x"}]`).expectError(t, http.StatusBadRequest, "Validation failed")
	if got := mustJSON(t, e["validationErrors"]); !strings.Contains(got, `"[1].name"`) {
		t.Fatalf("validationErrors = %s", got)
	}
}

// The SDK's taskDefinition({name}) builder output, as TaskHandler sends it.
const sampleTask = `{"name":"my_task","ownerApp":"","description":"","retryCount":3,"timeoutSeconds":3600,"inputKeys":[],"outputKeys":[],` +
	`"timeoutPolicy":"TIME_OUT_WF","retryLogic":"FIXED","retryDelaySeconds":60,"responseTimeoutSeconds":600,"concurrentExecLimit":0,` +
	`"inputTemplate":{},"rateLimitPerFrequency":0,"rateLimitFrequencyInSeconds":1,"ownerEmail":"","pollTimeoutSeconds":3600,"backoffScaleFactor":1}`

func TestMetadataTaskDefRoutes(t *testing.T) {
	t.Parallel()
	_, base := nodetest.Start(t)
	api := base + "/api/metadata/taskdefs"

	do(t, "GET", api, "").expect(t, http.StatusOK)
	if got := do(t, "GET", api, "").body; got != "[]" {
		t.Fatalf("empty list = %s", got)
	}
	do(t, "GET", api+"/my_task", "").expectError(t, http.StatusNotFound, "my_task")
	do(t, "POST", api, `[`+sampleTask+`]`).expect(t, http.StatusNoContent)
	do(t, "POST", api, `[`+sampleTask+`]`).expect(t, http.StatusNoContent) // OSS: POST replaces

	got := decode[map[string]any](t, do(t, "GET", api+"/my_task", "").expect(t, http.StatusOK).body)
	for k, v := range decode[map[string]any](t, sampleTask) {
		if mustJSON(t, got[k]) != mustJSON(t, v) {
			t.Fatalf("field %s = %v, want %v", k, got[k], v)
		}
	}
	if got["createTime"] == nil || got["updateTime"] == nil {
		t.Fatalf("no server times: %v", got)
	}

	// PUT upserts: it creates, then replaces.
	do(t, "PUT", api, strings.Replace(sampleTask, `"my_task"`, `"other"`, 1)).expect(t, http.StatusNoContent)
	do(t, "PUT", api, strings.Replace(sampleTask, `"retryCount":3`, `"retryCount":9`, 1)).expect(t, http.StatusNoContent)
	if got := decode[map[string]any](t, do(t, "GET", api+"/my_task", "").body)["retryCount"]; got != 9.0 {
		t.Fatalf("retryCount after PUT = %v", got)
	}
	list := decode[[]map[string]any](t, do(t, "GET", api, "").expect(t, http.StatusOK).body)
	if len(list) != 2 || list[0]["name"] != "my_task" || list[1]["name"] != "other" {
		t.Fatalf("list = %v", list)
	}
	do(t, "DELETE", api+"/other", "").expect(t, http.StatusNoContent)
	do(t, "DELETE", api+"/other", "").expectError(t, http.StatusNotFound, "other")
	do(t, "GET", api+"/other", "").expectError(t, http.StatusNotFound, "other")
}

func TestMetadataTagRoutes(t *testing.T) {
	t.Parallel()
	_, base := nodetest.Start(t)
	do(t, "POST", base+"/api/metadata/workflow", sampleWF).expect(t, http.StatusNoContent)
	do(t, "PUT", base+"/api/metadata/taskdefs", sampleTask).expect(t, http.StatusNoContent)

	for _, tags := range []string{base + "/api/metadata/workflow/wf1/tags", base + "/api/metadata/task/my_task/tags"} {
		if got := do(t, "GET", tags, "").expect(t, http.StatusOK).body; got != "[]" {
			t.Fatalf("no tags = %s", got)
		}
		do(t, "POST", tags, `{"key":"team","value":"core"}`).expect(t, http.StatusNoContent)
		do(t, "POST", tags, `{"key":"env","value":"dev"}`).expect(t, http.StatusNoContent)
		if got, want := do(t, "GET", tags, "").expect(t, http.StatusOK).body, `[{"key":"team","value":"core"},{"key":"env","value":"dev"}]`; got != want {
			t.Fatalf("tags = %s, want %s", got, want)
		}
		do(t, "DELETE", tags, `{"key":"team","value":"core"}`).expect(t, http.StatusNoContent)
		if got, want := do(t, "GET", tags, "").body, `[{"key":"env","value":"dev"}]`; got != want {
			t.Fatalf("after delete = %s, want %s", got, want)
		}
		do(t, "PUT", tags, `[{"key":"a","value":"1"},{"key":"b","value":"2"}]`).expect(t, http.StatusNoContent)
		if got, want := do(t, "GET", tags, "").body, `[{"key":"a","value":"1"},{"key":"b","value":"2"}]`; got != want {
			t.Fatalf("after set = %s, want %s", got, want)
		}
		// Orkes's ?metadata=true: the definition as stored, with its
		// tags, which the Go SDK reads tags from.
		def := strings.TrimSuffix(tags, "/tags")
		if strings.Contains(def, "/task/") {
			def = base + "/api/metadata/taskdefs/my_task"
		}
		plain := do(t, "GET", def, "").expect(t, http.StatusOK).body
		if got, want := do(t, "GET", def+"?metadata=true", "").expect(t, http.StatusOK).body,
			`{"tags":[{"key":"a","value":"1"},{"key":"b","value":"2"}],`+plain[1:]; got != want {
			t.Fatalf("GET %s?metadata=true = %s, want %s", def, got, want)
		}
		if strings.Contains(plain, `"tags"`) {
			t.Fatalf("GET %s without metadata=true = %s: want no tags", def, plain)
		}
		do(t, "PUT", tags, `[]`).expect(t, http.StatusNoContent)
		if got := do(t, "GET", tags, "").body; got != "[]" {
			t.Fatalf("after clearing = %s", got)
		}
		if got := do(t, "GET", def+"?metadata=true", "").body; !strings.HasPrefix(got, `{"tags":[],"`) {
			t.Fatalf("GET %s?metadata=true with no tags = %s, want an empty list", def, got)
		}
		do(t, "POST", tags, `"team"`).expectError(t, http.StatusBadRequest, "body: must be a tag or an array of tags, not a JSON string")
		do(t, "PUT", tags, `null`).expectError(t, http.StatusBadRequest, "body: must be a tag or an array of tags, not a JSON null")
		do(t, "POST", tags, `{"value":"no key"}`).expectError(t, http.StatusBadRequest, "Validation failed")
	}
	for _, tags := range []string{base + "/api/metadata/workflow/nope/tags", base + "/api/metadata/task/nope/tags"} {
		do(t, "GET", tags, "").expectError(t, http.StatusNotFound, "nope")
		do(t, "POST", tags, `{"key":"k","value":"v"}`).expectError(t, http.StatusNotFound, "nope")
		do(t, "PUT", tags, `[{"key":"k","value":"v"}]`).expectError(t, http.StatusNotFound, "nope")
		do(t, "DELETE", tags, `{"key":"k","value":"v"}`).expectError(t, http.StatusNotFound, "nope")
	}
}

// A request no route takes gets Conductor's JSON error body, not the
// mux's plain text: 404 for an unknown path, 405 (with Allow) for a path
// served for other methods.
func TestNoRouteAnswersJSON(t *testing.T) {
	t.Parallel()
	_, base := nodetest.Start(t)
	for _, tt := range []struct {
		method, path string
		status       int
		allow        string
	}{
		{"GET", "/api/event/queue/config", http.StatusNotFound, ""},
		{"GET", "/api/no/such/thing", http.StatusNotFound, ""},
		{"GET", "/api/applications/some_app/nothing", http.StatusNotFound, ""},
		{"POST", "/api/metadata/workflow/some_name", http.StatusMethodNotAllowed, "GET"},
		{"PATCH", "/api/secrets/known", http.StatusMethodNotAllowed, "PUT"},
	} {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			r := call(t, nil, tt.method, base+tt.path, "application/json", "{}")
			if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Fatalf("content type %q: %s", ct, r.body)
			}
			r.expectError(t, tt.status, tt.path)
			if allow := r.header.Get("Allow"); !strings.Contains(allow, tt.allow) {
				t.Fatalf("Allow %q, want it to name %s", allow, tt.allow)
			}
		})
	}
	// A path of a hundred kilobytes is quoted cut short.
	long := "/api/no/such/" + strings.Repeat("x", 100_000)
	for _, path := range []string{long, "/api/workflow/a/b/" + long[5:], "/api/tasks/a/b" + long[4:], "/api/applications/a/" + long[13:]} {
		r := call(t, nil, "GET", base+path, "", "")
		r.expectError(t, http.StatusNotFound, "no endpoint GET /api/")
		if len(r.body) > 1000 {
			t.Errorf("GET %.40s…: %d bytes of error, want the path cut short", path, len(r.body))
		}
	}
}

// A definition nested deeper than the log could hold is refused before it
// is decoded, whose time grows much faster than the depth.
func TestDeeplyNestedDefinitionRefused(t *testing.T) {
	t.Parallel()
	_, base, token := nodetest.StartSecure(t)
	admin := client{t, base, token}
	task := `{"name":"leaf","taskReferenceName":"leaf"}`
	for i := range 300 {
		task = fmt.Sprintf(`{"name":"s%d","taskReferenceName":"s%d","type":"SWITCH","evaluatorType":"value-param","expression":"x",
			"inputParameters":{"x":"a"},"decisionCases":{"a":[%s]}}`, i, i, task)
	}
	admin.do("PUT", "/api/metadata/workflow", `[{"name":"deep","tasks":[`+task+`]}]`).expectError(t, http.StatusBadRequest, "nested too deep")
}
