package scheduler

import (
	"encoding/binary"
	"errors"
	"testing"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/projections"
	"github.com/flowvault/flowvault/schemas"
)

// A schedule keeps its newest ExecutionsKept executions: the oldest goes
// as each new one comes.
func TestExecutionsKept(t *testing.T) {
	store := testutil.OpenStore(t)
	seq := uint64(0)
	apply := func(b *projections.Batch, ev schemas.Event) {
		t.Helper()
		env, err := schemas.Default.Encode(ev)
		if err != nil {
			t.Fatal(err)
		}
		seq++
		if err := (Projection{}).Apply(b, eventlog.Record{Subject: subjectPrefix + "often", Seq: seq, Events: []schemas.Envelope{env}}); err != nil {
			t.Fatal(err)
		}
	}
	const fires = ExecutionsKept + 5
	err := store.Update(ProjectionName, func(b *projections.Batch) error {
		apply(b, &schemas.ScheduleSaved{Def: []byte(`{"name":"often","cronExpression":"* * * * * ?","startWorkflowRequest":{"name":"w"}}`), By: "alice", Time: 1})
		for i := range int64(fires) {
			at := 1000 * (i + 1)
			apply(b, &schemas.ScheduleFired{ScheduledTime: at, WorkflowID: workflowID("often", at), Time: at})
		}
		var kept []int64
		err := b.Scan([]byte(keyExecution), func(key, _ []byte) bool {
			kept = append(kept, int64(binary.BigEndian.Uint64(key[len(key)-8:])))
			return true
		})
		if len(kept) != ExecutionsKept || kept[0] != 6000 || kept[len(kept)-1] != 1000*fires {
			t.Fatalf("kept %d executions, from %d to %d", len(kept), kept[0], kept[len(kept)-1])
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A record whose later event is poison writes nothing: parked, it must not
// leave the execution its earlier event would have recorded.
func TestPoisonRecordWritesNothing(t *testing.T) {
	store := testutil.OpenStore(t)
	record := func(seq uint64, events ...schemas.Event) eventlog.Record {
		rec := eventlog.Record{Subject: subjectPrefix + "nightly", Seq: seq}
		for _, ev := range events {
			env, err := schemas.Default.Encode(ev)
			if err != nil {
				t.Fatal(err)
			}
			rec.Events = append(rec.Events, env)
		}
		return rec
	}
	def := []byte(`{"name":"nightly","cronExpression":"0 0 0 * * ?","startWorkflowRequest":{"name":"w"}}`)
	err := store.Update(ProjectionName, func(b *projections.Batch) error {
		if err := (Projection{}).Apply(b, record(1, &schemas.ScheduleSaved{Def: def, By: "alice", Time: 1})); err != nil {
			t.Fatal(err)
		}
		err := (Projection{}).Apply(b, record(2,
			&schemas.ScheduleFired{ScheduledTime: 1000, WorkflowID: "wf-1", Time: 2},
			&schemas.ScheduleSaved{Def: []byte(`{"name":`), By: "bob", Time: 2}))
		if !errors.Is(err, projections.ErrPoison) {
			t.Fatalf("a malformed definition: %v, want poison", err)
		}
		return b.Scan([]byte(keyExecution), func(key, _ []byte) bool {
			t.Errorf("the poison record wrote execution %q", key)
			return true
		})
	})
	if err != nil {
		t.Fatal(err)
	}
}
