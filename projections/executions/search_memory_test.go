package executions_test

import (
	"context"
	"runtime"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/projections/executions/query"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// A task search on behalf of a caller who sees only some workflows decodes
// every candidate workflow; it kept up to 4096 of them for the request,
// whatever their size (100 of 512 KiB pinned 42 MiB). It keeps a few MiB.
func TestTaskSearchKeepsLittleDecoded(t *testing.T) {
	const n, size = 100, 512 << 10 // 100 workflows with a 512 KiB input
	f := newFixture(t)
	var def conductor.WorkflowDef
	if err := conductor.Unmarshal([]byte(oneWait), &def); err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("x", size)
	for range n {
		id := uuid.NewString()
		f.decide(id, engine.Start{WorkflowID: id, Def: &def, Request: conductor.StartWorkflowRequest{Input: map[string]any{"blob": big}}})
	}
	f.states = nil
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	calls := 0
	var peak uint64
	visible := func(name, createdBy string) bool {
		calls++
		if calls == n { // every candidate read: what the request holds now
			runtime.GC()
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			peak = m.HeapAlloc
		}
		return true
	}
	total, tasks, err := f.reader.SearchTasks(context.Background(), query.Search{Query: "status = IN_PROGRESS", Size: 10, Visible: visible})
	if err != nil {
		t.Fatal(err)
	}
	pinned := int64(peak) - int64(before.HeapAlloc)
	if total != n || len(tasks) != 10 {
		t.Fatalf("found %d tasks, a page of %d", total, len(tasks))
	}
	if pinned > int64(n*size)/2 {
		t.Errorf("the search held %d MiB of heap for %d workflows of %d KiB", pinned>>20, n, size>>10)
	}
}
