package api_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// BenchmarkDefinitionListings lists 5,000 tagged workflow definitions and
// 5,000 tagged task definitions (ten teams and one env, twelve tags in
// all) as the admin and as a user who may read one of each (team:x),
// through a real log, read model and Authorizer.
func BenchmarkDefinitionListings(b *testing.B) {
	const n = 5000
	md, _, base := newPinServer(b)
	ctx := testutil.Context(b, 5*time.Minute)
	tagged := func(i int) string {
		team := 'a' + i%10
		if i == 0 {
			team = 'x' // the user's grant
		}
		return fmt.Sprintf(`"tags":[{"key":"team","value":"%c"},{"key":"env","value":"prod"}]`, team)
	}
	flows := make([]*conductor.WorkflowDef, n)
	tasks := make([]*conductor.TaskDef, n)
	for i := range n {
		flows[i], tasks[i] = &conductor.WorkflowDef{}, &conductor.TaskDef{}
		err := conductor.Unmarshal([]byte(fmt.Sprintf(`{"name":"flow_%04d","tasks":[{"name":"a","taskReferenceName":"a"}],%s}`, i, tagged(i))), flows[i])
		if err == nil {
			err = conductor.Unmarshal([]byte(fmt.Sprintf(`{"name":"task_%04d",%s}`, i, tagged(i))), tasks[i])
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	if res, err := md.PutWorkflowDefs(ctx, flows, false, pinAdmin); err != nil || len(res.BulkErrorResults) > 0 {
		b.Fatalf("register %d workflows: %v %v", n, err, res.BulkErrorResults)
	}
	if err := md.RegisterTaskDefs(ctx, tasks, pinAdmin); err != nil {
		b.Fatalf("register %d task definitions: %v", n, err)
	}
	for _, path := range []string{"/api/metadata/tags", "/api/metadata/workflow", "/api/metadata/workflow/names-and-versions", "/api/metadata/taskdefs"} {
		for _, token := range []string{"admin-token", "user-token"} {
			b.Run(strings.ReplaceAll(strings.TrimPrefix(path, "/api/metadata/"), "/", " ")+" as "+strings.TrimSuffix(token, "-token"), func(b *testing.B) {
				for b.Loop() {
					get(b, base+path, token)
				}
			})
		}
	}
}

// get sends GET url as token's principal and fails unless it is answered
// 200.
func get(tb testing.TB, url, token string) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("X-Authorization", token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer res.Body.Close()
	if _, err := io.Copy(io.Discard, res.Body); err != nil || res.StatusCode != http.StatusOK {
		tb.Fatalf("GET %s = %d (%v)", url, res.StatusCode, err)
	}
}
