package guard

import (
	"context"
	"testing"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/schemas"
)

// The decision of a result in a workflow that has resolved a secret: the
// task's end and the next task's schedule, neither sealing anything, both
// scanned for the resolved value. The secrets workload of fvbench pays
// this on two of its three results.
func BenchmarkProtectTaskEvents(b *testing.B) {
	ctx := context.Background()
	g := New(Config{})
	before, err := engine.Apply(nil, &schemas.WorkflowStarted{WorkflowID: "wf-1", Name: "w", Version: 1,
		Def: []byte(`{"name":"w","version":1,"tasks":[]}`), Input: map[string]any{"i": 1}})
	if err != nil {
		b.Fatal(err)
	}
	g.memoFor("wf-1").add([]byte("bench-password-9a07c3e2"))
	events := []schemas.Event{
		&schemas.TaskUpdated{TaskID: "t1", Status: "COMPLETED", Output: map[string]any{"v": 12345}, Time: 1},
		&schemas.TaskScheduled{TaskID: "t2", Ref: "c", Name: "bench_c", Type: "SIMPLE", Input: map[string]any{"prev": 12345}, Time: 1},
	}
	for b.Loop() {
		dec, err := g.Protect(ctx, before, engine.Decision{Events: events})
		if err != nil || len(dec.Events) != 2 {
			b.Fatal(dec.Events, err)
		}
	}
}
