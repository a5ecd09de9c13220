package executor

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// untilStopped runs a system task until its run is ended, as an HTTP
// call still waiting when its engine's stop runs out of time; it reports
// nothing the log records, since the engine has stopped deciding.
type untilStopped struct{ started chan struct{} }

func (u untilStopped) Execute(ctx context.Context, _ *conductor.Task) conductor.TaskResult {
	u.started <- struct{}{}
	<-ctx.Done()
	return conductor.TaskResult{Status: conductor.TaskFailed, ReasonForIncompletion: "cut short"}
}

// passes collects the listings of an engine's presence passes.
type passes struct {
	mu    sync.Mutex
	lists []map[string]bool
	more  chan struct{}
}

func (p *passes) add(present map[string]bool) {
	p.mu.Lock()
	p.lists = append(p.lists, present)
	p.mu.Unlock()
	select {
	case p.more <- struct{}{}:
	default:
	}
}

// await waits for a pass, from the from-th on, whose listing satisfies
// ok, and returns the index after it.
func (p *passes) await(ctx context.Context, t *testing.T, from int, what string, ok func(map[string]bool) bool) int {
	t.Helper()
	for {
		p.mu.Lock()
		for i := from; i < len(p.lists); i++ {
			if ok(p.lists[i]) {
				p.mu.Unlock()
				return i + 1
			}
		}
		from = len(p.lists)
		p.mu.Unlock()
		select {
		case <-p.more:
		case <-ctx.Done():
			t.Fatalf("no presence pass %s", what)
		}
	}
}

// A clean stop of an engine process that holds no system task, whether it
// ran none or ran one and reported it, says so as it withdraws its
// presence: the other engines, once they find it gone, do not scan the
// workflows due for its tasks (their scan counter does not move). Before,
// every departure had each live engine read every workflow due within
// the lease. One whose stop ran out of time while it ran a task leaves
// the task held, and says nothing: the others scan, take the task back
// and run it.
func TestCleanStopThatHeldNothingSparesTheOthersTheirScan(t *testing.T) {
	tests := []struct {
		name string
		run  bool // the stopping engine runs a system task
		// heldAtStop: its run goes on until its stop ends it, its result
		// never recorded.
		heldAtStop bool
	}{
		{name: "ran no system task"},
		{name: "ran one and reported it", run: true},
		{name: "held one at its stop", run: true, heldAtStop: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ns := testutil.StartNATS(t, t.TempDir(), 0)
			ctx := testutil.Context(t, 30*time.Second)
			const id, ttl = "wf-stop", 3 * time.Second
			sched := &leaseDue{wfID: id, at: time.Now().Add(engine.SystemTaskLease).UnixMilli(), recovered: make(chan struct{})}

			live := New(testutil.OpenExternalLog(t, ns), noDefinitions{}, sched, Config{Logger: testutil.Logger(t), EngineID: "engine-live", PresenceTTL: ttl})
			live.RegisterSystemTask(conductor.TaskTypeInline, completesBy("the live engine"))
			seen := &passes{more: make(chan struct{}, 1)}
			live.passed = seen.add
			if err := live.Start(ctx); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(live.Stop)

			stopping := New(testutil.OpenExternalLog(t, ns), noDefinitions{}, nothingScheduled{}, Config{Logger: testutil.Logger(t), EngineID: "engine-stopping", PresenceTTL: ttl})
			started := make(chan struct{}, 1)
			if tt.heldAtStop {
				stopping.RegisterSystemTask(conductor.TaskTypeInline, untilStopped{started: started})
			} else {
				stopping.RegisterSystemTask(conductor.TaskTypeInline, completesBy("the stopping engine"))
			}
			if err := stopping.Start(ctx); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(stopping.Stop)
			if tt.run {
				startInline(ctx, t, stopping, id, `{"name":"stop_flow","tasks":[{"name":"script","taskReferenceName":"script","type":"INLINE",
				  "inputParameters":{"evaluatorType":"javascript","expression":"1"}}]}`)
				if tt.heldAtStop {
					select {
					case <-started:
					case <-ctx.Done():
						t.Fatal("the system task never ran")
					}
				} else {
					waitWorkflow(ctx, t, live, id, conductor.WorkflowCompleted)
				}
			}
			// The live engine's scan at its start is over, and it has
			// listed the stopping engine.
			next := seen.await(ctx, t, 0, "listing the stopping engine", func(present map[string]bool) bool { return present[stopping.boot] })
			before := counted(t, live.metrics.reclaimScans)

			budget := context.Background()
			if tt.heldAtStop {
				// Its drain and its stop run out of time.
				short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
				defer cancel()
				stopping.Drain(short)
				budget = short
			}
			stopping.StopWithin(budget)
			seen.await(ctx, t, next, "finding the stopping engine gone", func(present map[string]bool) bool { return !present[stopping.boot] })
			scans := counted(t, live.metrics.reclaimScans) - before

			if !tt.heldAtStop {
				if scans != 0 {
					t.Fatalf("%v scans by the live engine after the clean stop of an engine that held nothing, want none", scans)
				}
				return
			}
			if scans != 1 {
				t.Fatalf("%v scans by the live engine after the stop of an engine that held a task, want 1", scans)
			}
			w := waitWorkflow(ctx, t, live, id, conductor.WorkflowCompleted)
			if task := w.LatestByRef("script"); task.Output["by"] != "the live engine" || task.LeaseExpiries != 1 {
				t.Fatalf("completed by %v after %d lease expiries, want taken back by the live engine", task.Output["by"], task.LeaseExpiries)
			}
		})
	}
}

// waitWorkflow waits until e reads workflow id in status.
func waitWorkflow(ctx context.Context, t *testing.T, e *Executor, id, status string) *engine.Workflow {
	t.Helper()
	for {
		w, err := e.State(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if w != nil && w.Status == status {
			return w
		}
		select {
		case <-ctx.Done():
			var got string
			if w != nil {
				got = w.Status
			}
			t.Fatalf("workflow %s is %s, want %s", id, got, status)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// counted reads counter c.
func counted(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// A heartbeat whose write was stored but whose answer was lost (stored
// after its timeout, or answered by a stream leader that then died)
// leaves the process's key at a revision it did not hear of. The key is
// this process's alone: the next heartbeat refreshes it from there. Before,
// it tried the revision it knew, then made the key anew, refused since the
// key is there, and so every heartbeat until the TTL removed the key,
// after which other engines took back the process's system tasks. A key
// that is gone is made again, as before.
func TestHeartbeatAfterAnAnswerLost(t *testing.T) {
	tests := []struct {
		name   string
		before func(ctx context.Context, e *Executor) error
	}{
		{name: "an answer lost", before: func(ctx context.Context, e *Executor) error {
			_, err := e.presence.kv.Update(ctx, e.boot, []byte(e.holder), e.presence.rev)
			return err
		}},
		{name: "the key gone", before: func(ctx context.Context, e *Executor) error {
			return e.presence.kv.Delete(ctx, e.boot)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ns := testutil.StartNATS(t, t.TempDir(), 0)
			ctx := testutil.Context(t, 30*time.Second)
			// No heartbeat of the loop's within the test: it calls them.
			e := New(testutil.OpenExternalLog(t, ns), noDefinitions{}, nothingScheduled{}, Config{Logger: testutil.Logger(t), EngineID: "engine-a", PresenceTTL: time.Hour})
			if err := e.Start(ctx); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(e.Stop)
			p := e.presence
			if err := tt.before(ctx, e); err != nil {
				t.Fatal(err)
			}
			for i := range 2 {
				if err := e.heartbeat(ctx); err != nil {
					t.Fatalf("heartbeat %d: %v", i, err)
				}
			}
			entry, err := p.kv.Get(ctx, e.boot)
			if err != nil {
				t.Fatal(err)
			}
			if p.rev != entry.Revision() || string(entry.Value()) != e.holder {
				t.Fatalf("key at revision %d holding %q, the process knows %d; want it known, holding %q",
					entry.Revision(), entry.Value(), p.rev, e.holder)
			}
		})
	}
}
