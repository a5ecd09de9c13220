package node_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/internal/nodetest"
	"github.com/flowvault/flowvault/metadata"
)

// A workflow definition's registration is refused over the limits of its
// tags (400, as a secret's, naming "tags") and its variables (413, as a
// caller's variables are, naming "variables"), by POST and by the PUT of
// a list; a definition within them registers.
func TestDefinitionLimitsOverHTTP(t *testing.T) {
	t.Parallel()
	_, base := nodetest.Start(t)
	tags := func(n int) string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprintf(`{"key":"k%d","value":"v"}`, i)
		}
		return `"tags":[` + strings.Join(out, ",") + `]`
	}
	// {"v":"…"} takes 8 bytes besides the text.
	variables := func(n int) string { return `"variables":{"v":"` + strings.Repeat("x", n-8) + `"}` }
	def := func(name, field string) string {
		return `{"name":"` + name + `","tasks":[{"name":"t","taskReferenceName":"t"}],` + field + `}`
	}
	for _, tc := range []struct {
		name, field string
		status      int // 0: a success
		says        string
	}{
		{"within", tags(metadata.MaxTags) + "," + variables(engine.MaxVariablesBytes), 0, ""},
		{"tags", tags(metadata.MaxTags + 1), http.StatusBadRequest, fmt.Sprintf(`tags","message":"%d tags; at most %d`, metadata.MaxTags+1, metadata.MaxTags)},
		{"variables", variables(engine.MaxVariablesBytes + 1), http.StatusRequestEntityTooLarge, `variables: `},
	} {
		for _, req := range []struct{ method, body string }{
			{"POST", def("limits-"+tc.name, tc.field)},
			{"PUT", "[" + def("limits-"+tc.name, tc.field) + "]"},
		} {
			r, err := http.NewRequest(req.method, base+"/api/metadata/workflow", strings.NewReader(req.body))
			if err != nil {
				t.Fatal(err)
			}
			r.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(r)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			ok := resp.StatusCode == tc.status || tc.status == 0 && resp.StatusCode < 300
			if !ok || !strings.Contains(string(body), tc.says) {
				t.Errorf("%s %s: %d %.300s, want %d with %s", req.method, tc.name, resp.StatusCode, body, tc.status, tc.says)
			}
		}
	}
}
