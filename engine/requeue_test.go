package engine_test

import (
	"testing"

	"github.com/flowvault/flowvault/engine"
)

// Only an explicit requeue marks its dispatches, with its time: recovery's
// and the periodic pass's dispatches keep the first one's message id, so
// that a task still queued is not announced twice.
func TestReconcileRequeueMarksDispatches(t *testing.T) {
	for _, tc := range []struct {
		name string
		trig engine.Reconcile
		want int64
	}{
		{"recovery", engine.Reconcile{}, 0},
		{"explicit requeue", engine.Reconcile{Requeue: true}, epoch.UnixMilli()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, threeSimple, nil)
			d := h.decide(tc.trig)
			dis := effectsOf[engine.Dispatch](d)
			if len(dis) != 1 || dis[0].TaskID != h.task("a_ref").ID {
				t.Fatalf("dispatches %+v, want a_ref's", dis)
			}
			if dis[0].Requeued != tc.want {
				t.Fatalf("Requeued = %d, want %d", dis[0].Requeued, tc.want)
			}
		})
	}
}
