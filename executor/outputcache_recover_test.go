package executor

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas"
)

// runningOnly lists the given workflows as running, and nothing as due.
type runningOnly []string

func (runningOnly) Due(context.Context, int64, Due, int) ([]Due, error) { return nil, nil }
func (r runningOnly) Running(_ context.Context, fn func(wfID string) bool) error {
	for _, id := range r {
		if !fn(id) {
			break
		}
	}
	return nil
}
func (runningOnly) ScheduledBefore(context.Context, int64, func(wfID string) bool) error {
	return nil
}

// An output found secret whose purge never ran (the engine that recorded
// the finding stopped before performing it, or the purge failed) leaves
// the cache when an engine starts: its recovery performs again the purges
// of the outputs each running workflow masks, and no hit has to read the
// entry first. An output never found secret stays.
func TestCachedOutputFoundSecretLeavesTheCacheOnRecovery(t *testing.T) {
	t.Parallel()
	for _, masked := range []bool{true, false} {
		t.Run(fmt.Sprintf("masked_%t", masked), func(t *testing.T) {
			t.Parallel()
			ctx, rig := newCacheRig(t)
			if err := rig.a.performOne(ctx, rig.write); err != nil {
				t.Fatalf("write: %v", err)
			}
			if masked {
				// No guard here: the decision has no UncacheOutput, as if
				// its engine was killed before performing it.
				vm := &schemas.ValuesMasked{Paths: []string{"task/" + rig.fetch + "/output.token"}}
				if _, err := rig.b.Submit(ctx, rig.id, engine.ValuesFound{Masked: vm}, Meta{}); err != nil {
					t.Fatal(err)
				}
			}

			reg := prometheus.NewRegistry()
			c := New(rig.a.log, noDefinitions{}, runningOnly{rig.id}, Config{Logger: testutil.Logger(t), Metrics: reg})
			if err := c.Start(ctx); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(c.Stop)
			testutil.Eventually(t, 20*time.Second, 10*time.Millisecond, func() error {
				if testutil.MetricValue(t, reg, "flowvault_engine_decisions_total", map[string]string{"trigger": "reconcile"}) == 0 {
					return errors.New("recovery reconciled nothing")
				}
				return nil
			})
			c.Stop() // once the reconcile's effects are performed

			kv, err := c.outputs.bucket(ctx)
			if err != nil {
				t.Fatal(err)
			}
			_, err = kv.Get(ctx, rig.write.Key)
			switch {
			case masked && !errors.Is(err, jetstream.ErrKeyNotFound):
				t.Errorf("get after the recovery: %v, want no entry: the output found secret is still cached", err)
			case !masked && err != nil:
				t.Errorf("get after the recovery: %v, want the output never found secret kept", err)
			}
			want := map[bool]float64{true: 1, false: 0}[masked]
			if got := testutil.MetricValue(t, reg, "flowvault_engine_task_cache_total", map[string]string{"result": "dropped"}); got != want {
				t.Errorf("task_cache_total{result=\"dropped\"} = %v, want %v", got, want)
			}
			if lookups := testutil.MetricValue(t, reg, "flowvault_engine_task_cache_total", map[string]string{"result": "hit"}) +
				testutil.MetricValue(t, reg, "flowvault_engine_task_cache_total", map[string]string{"result": "miss"}); lookups != 0 {
				t.Errorf("%v lookups of the cache; want none: no hit read the entry", lookups)
			}
		})
	}
}
