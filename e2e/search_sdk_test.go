package e2e_test

import (
	"encoding/json"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/flowvault/flowvault/internal/nodetest"
)

// The published Conductor SDK's workflowResource.searchWorkflowsByTasks
// and searchWorkflowsByTasksV2 (GET /api/workflow/search-by-tasks[-v2])
// find workflows by a query on their tasks: each workflow once, however
// many of its tasks match, with Conductor's totalHits (the tasks less
// those of the page that added no workflow); a task id finds its
// workflow; an application finds only the workflows it may read. The
// paths were read as workflow ids ("workflow search-by-tasks not found").
func TestSDKSearchesWorkflowsByTasks(t *testing.T) {
	t.Parallel()
	cfg := nodetest.SecureConfig(filepath.Join(t.TempDir(), "data"))
	_, base := nodetest.StartConfig(t, cfg)
	keyID, keySecret := nodetest.BootstrapKey(t, cfg)

	steps, out := runSDKScript(t, "searchbytasks.mjs", "CONDUCTOR_SERVER_URL="+base, "KEY_ID="+keyID, "KEY_SECRET="+keySecret)
	var admin struct {
		Flows       []string `json:"flows"`
		Other       string   `json:"other"`
		Found       [][]any  `json:"found"`
		TotalHits   float64  `json:"totalHits"`
		FoundV2     [][]any  `json:"foundV2"`
		TotalHitsV2 float64  `json:"totalHitsV2"`
		ByTaskID    []string `json:"byTaskId"`
		None        float64  `json:"none"`
	}
	decodeStep(t, steps, "admin", &admin, out)
	if len(admin.Flows) != 2 {
		t.Fatalf("admin step = %+v\n%s", admin, out)
	}
	// Ascending by workflow id, as the tasks were sorted.
	var want, wantV2 [][]any
	for i, id := range admin.Flows {
		n := float64(i + 1)
		want = append(want, []any{id, "sdk_sbt_flow", []string{"sbt-1", "sbt-2"}[i], "RUNNING", map[string]any{"n": n}})
		wantV2 = append(wantV2, []any{id, "sdk_sbt_flow", map[string]any{"n": n}})
	}
	byID := func(a, b []any) int { return strings.Compare(a[0].(string), b[0].(string)) }
	slices.SortFunc(want, byID)
	slices.SortFunc(wantV2, byID)
	for _, row := range admin.Found {
		// A summary's input is JSON text, as Conductor's.
		var in map[string]any
		if s, ok := row[4].(string); !ok || json.Unmarshal([]byte(s), &in) != nil {
			t.Fatalf("summary input %v is not JSON text", row[4])
		}
		row[4] = in
	}
	if !reflect.DeepEqual(admin.Found, want) || admin.TotalHits != 2 {
		t.Errorf("search-by-tasks = %v (totalHits %v), want %v (2)", admin.Found, admin.TotalHits, want)
	}
	if !reflect.DeepEqual(admin.FoundV2, wantV2) || admin.TotalHitsV2 != 2 {
		t.Errorf("search-by-tasks-v2 = %v (totalHits %v), want %v (2)", admin.FoundV2, admin.TotalHitsV2, wantV2)
	}
	if !slices.Equal(admin.ByTaskID, []string{admin.Other}) || admin.None != 0 {
		t.Errorf("by task id = %v, want [%s]; no match = %v results", admin.ByTaskID, admin.Other, admin.None)
	}

	var reader struct {
		Unseen     float64  `json:"unseen"`
		UnseenHits float64  `json:"unseenHits"`
		Seen       []string `json:"seen"`
		SeenHits   float64  `json:"seenHits"`
		SeenV2     []string `json:"seenV2"`
	}
	decodeStep(t, steps, "reader", &reader, out)
	if reader.Unseen != 0 || reader.UnseenHits != 0 {
		t.Errorf("an application without grants found %v workflows (totalHits %v)", reader.Unseen, reader.UnseenHits)
	}
	if mine := []string{admin.Other}; !slices.Equal(reader.Seen, mine) || reader.SeenHits != 1 || !slices.Equal(reader.SeenV2, mine) {
		t.Errorf("an application reading sdk_sbt_else found %v (totalHits %v), v2 %v; want %v (1)", reader.Seen, reader.SeenHits, reader.SeenV2, mine)
	}
}

// decodeStep decodes the script's line of step into v.
func decodeStep(t *testing.T, steps map[string]map[string]any, step string, v any, out []byte) {
	t.Helper()
	m, ok := steps[step]
	if !ok {
		t.Fatalf("no %q step in the output\n%s", step, out)
	}
	b, _ := json.Marshal(m)
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s step: %v\n%s", step, err, out)
	}
}
