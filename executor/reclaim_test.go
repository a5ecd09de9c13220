package executor

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// leaseDue holds one workflow's deadline, as the executions read model
// holds a leased task's: the lease's end, listed once it is at or before
// the time asked. Running, which recovery calls once the start's reclaim
// is over, closes recovered.
type leaseDue struct {
	wfID      string
	at        int64
	once      sync.Once
	recovered chan struct{}
}

func (s *leaseDue) Due(_ context.Context, now int64, after Due, _ int) ([]Due, error) {
	if after != (Due{}) || s.at > now {
		return nil, nil
	}
	return []Due{{WorkflowID: s.wfID, At: s.at}}, nil
}

func (s *leaseDue) Running(context.Context, func(wfID string) bool) error {
	s.once.Do(func() { close(s.recovered) })
	return nil
}

func (*leaseDue) ScheduledBefore(context.Context, int64, func(wfID string) bool) error { return nil }

// holds runs a system task until release is closed, ignoring its
// context: a process killed mid-task, which reports nothing.
type holds struct{ started, release chan struct{} }

func (h holds) Execute(context.Context, *conductor.Task) conductor.TaskResult {
	h.started <- struct{}{}
	<-h.release
	return conductor.TaskResult{Status: conductor.TaskCompleted, OutputData: map[string]any{"by": "the dead process"}}
}

type completesBy string

func (c completesBy) Execute(context.Context, *conductor.Task) conductor.TaskResult {
	return conductor.TaskResult{Status: conductor.TaskCompleted, OutputData: map[string]any{"by": string(c)}}
}

// An engine process killed while it ran a system task left it
// IN_PROGRESS under a lease that ends 5 minutes after the take
// (engine.SystemTaskLease); the killed process's presence outlives it by
// up to its TTL. The same engine, restarted (its engine id again, a new
// process), finds its earlier process still present, asks it, gets "no
// responders", and takes the task back at once. Another engine leaves a
// process that is present alone, as a copy of the engine's data
// directory (its engine id) leaves the original that runs: only once the
// killed process's presence runs out does an engine alive all along take
// the task back, and when several do, it is taken back once. In the cases
// whose TTL is an hour, no presence runs out during the test: a take-back
// is the probe's; in those where nothing is taken, the live engines' scan
// at their start is over when the task is read.
func TestEnginesTakeBackTheSystemTasksOfProcessesGone(t *testing.T) {
	tests := []struct {
		name      string
		dead      string   // the engine id of the process that takes the task
		live      []string // the engine ids of the engines that look
		ttl       time.Duration
		kill      bool // the process that took the task is killed
		liveFirst bool // the live engines start before the kill
		reclaimed bool
	}{
		{name: "the same engine restarted", dead: "engine-a", live: []string{"engine-a"}, ttl: time.Hour, kill: true, reclaimed: true},
		{name: "a copy of its data directory next to the process", dead: "engine-a", live: []string{"engine-a"}, ttl: time.Hour},
		{name: "another engine next to the process", dead: "engine-b", live: []string{"engine-a"}, ttl: time.Hour},
		{name: "another engine, the process killed, its presence not run out", dead: "engine-b", live: []string{"engine-a"}, ttl: time.Hour, kill: true},
		{name: "another engine alive all along, the presence run out", dead: "engine-b", live: []string{"engine-a"}, ttl: time.Second, kill: true, liveFirst: true, reclaimed: true},
		{name: "three engines racing", dead: "engine-d", live: []string{"engine-a", "engine-b", "engine-c"}, ttl: time.Second, kill: true, liveFirst: true, reclaimed: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ns := testutil.StartNATS(t, t.TempDir(), 0)
			deadLog := testutil.OpenExternalLog(t, ns)
			ctx := testutil.Context(t, 30*time.Second)
			const id = "wf-held"
			dead := New(deadLog, noDefinitions{}, nothingScheduled{}, Config{Logger: testutil.Logger(t), EngineID: tt.dead, PresenceTTL: tt.ttl})
			run := holds{started: make(chan struct{}, 1), release: make(chan struct{})}
			dead.RegisterSystemTask(conductor.TaskTypeInline, run)
			if err := dead.Start(ctx); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(dead.Stop)
			t.Cleanup(func() { close(run.release) }) // before the Stop, which waits for the run
			taken := time.Now()
			startInline(ctx, t, dead, id, `{"name":"held","tasks":[{"name":"script","taskReferenceName":"script","type":"INLINE",
			  "inputParameters":{"evaluatorType":"javascript","expression":"1"}}]}`)
			select {
			case <-run.started:
			case <-ctx.Done():
				t.Fatal("the system task never ran")
			}
			w, err := dead.State(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			held := w.LatestByRef("script")
			if held.Status != conductor.TaskInProgress || held.WorkerID != dead.holder || !strings.HasPrefix(held.WorkerID, "flowvault/"+tt.dead+"/") {
				t.Fatalf("task %s held by %q, want IN_PROGRESS held by %q", held.Status, held.WorkerID, dead.holder)
			}

			sched := &leaseDue{wfID: id, at: taken.Add(engine.SystemTaskLease).UnixMilli(), recovered: make(chan struct{})}
			var live []*Executor
			scanned := make(chan struct{}, len(tt.live))
			startLive := func() {
				for _, engineID := range tt.live {
					l := testutil.OpenExternalLog(t, ns)
					e := New(l, noDefinitions{}, sched, Config{Logger: testutil.Logger(t), EngineID: engineID, PresenceTTL: tt.ttl})
					e.RegisterSystemTask(conductor.TaskTypeInline, completesBy("a live engine"))
					var once sync.Once
					e.scanned = func(int) { once.Do(func() { scanned <- struct{}{} }) }
					if err := e.Start(ctx); err != nil {
						t.Fatal(err)
					}
					t.Cleanup(e.Stop)
					live = append(live, e)
				}
			}
			if tt.liveFirst {
				startLive()
			}
			if tt.kill {
				// Its connection closes, as a killed process's does; the
				// process reports nothing.
				deadLog.Conn().Close()
			}
			if !tt.liveFirst {
				startLive()
			}
			if !tt.reclaimed {
				for range tt.live {
					select {
					case <-scanned:
					case <-ctx.Done():
						t.Fatal("a live engine never scanned")
					}
				}
				w, err := live[0].State(ctx, id)
				if err != nil {
					t.Fatal(err)
				}
				if task := w.LatestByRef("script"); task.Status != conductor.TaskInProgress || task.WorkerID != dead.holder {
					t.Fatalf("a task taken back from a process present: %s held by %q", task.Status, task.WorkerID)
				}
				return
			}
			for {
				w, err := live[0].State(ctx, id)
				if err != nil {
					t.Fatal(err)
				}
				if w.Status == conductor.WorkflowCompleted {
					task := w.LatestByRef("script")
					if task.Output["by"] != "a live engine" || task.LeaseExpiries != 1 {
						t.Fatalf("completed by %v after %d lease expiries", task.Output["by"], task.LeaseExpiries)
					}
					return
				}
				select {
				case <-ctx.Done():
					t.Fatalf("the task of a process gone was not taken back: workflow %s, task %s", w.Status, w.LatestByRef("script").Status)
				case <-time.After(20 * time.Millisecond):
				}
			}
		})
	}
}

// A take's holder names the engine and the process; older versions' and
// workers' own names name no process, and are never asked after.
func TestParseHolder(t *testing.T) {
	tests := []struct {
		holder, engineID, boot string
		ok                     bool
	}{
		{holder: systemHolder("ENGINEID", "0b6f4a8e-1c2d-4e5f-8a9b-0c1d2e3f4a5b"), engineID: "ENGINEID", boot: "0b6f4a8e-1c2d-4e5f-8a9b-0c1d2e3f4a5b", ok: true},
		{holder: "flowvault"},
		{holder: "flowvault/"},
		{holder: "flowvault/engine"},
		{holder: "flowvault//boot"},
		{holder: "flowvault/engine/"},
		{holder: "flowvault/engine/a.b"}, // no key of the bucket, no token of a subject
		{holder: "flowvault/engine/a/b"}, // nor this
		{holder: "flowvault/engine/a>"},  // nor this
		{holder: "worker-1/engine/boot"}, // a worker's name
		{holder: "flowvault/engine/" + strings.Repeat("b", 65)},
	}
	for _, tt := range tests {
		engineID, boot, ok := parseHolder(tt.holder)
		if engineID != tt.engineID || boot != tt.boot || ok != tt.ok {
			t.Errorf("parseHolder(%q) = %q, %q, %v; want %q, %q, %v", tt.holder, engineID, boot, ok, tt.engineID, tt.boot, tt.ok)
		}
	}
}

// A scan is due when a process listed before is missing from the listing
// now; one that appeared, or none that changed, asks for nothing, and
// this process's own key missing (lapsed) asks for nothing either: it
// never takes back its own tasks.
func TestDeparted(t *testing.T) {
	set := func(boots ...string) map[string]bool {
		m := map[string]bool{}
		for _, b := range boots {
			m[b] = true
		}
		return m
	}
	tests := []struct {
		name          string
		seen, present map[string]bool
		want          []string
	}{
		{name: "nothing listed before", seen: nil, present: set("a")},
		{name: "the same", seen: set("a", "b"), present: set("a", "b")},
		{name: "one started", seen: set("a"), present: set("a", "b")},
		{name: "one gone", seen: set("a", "b"), present: set("a"), want: []string{"b"}},
		{name: "one gone, another started", seen: set("a", "b"), present: set("a", "c"), want: []string{"b"}},
		{name: "all gone", seen: set("a", "b"), present: set(), want: []string{"a", "b"}},
		{name: "this process's own key lapsed", seen: set("self", "a"), present: set("a")},
		{name: "its own and another's", seen: set("self", "a"), present: set(), want: []string{"a"}},
	}
	for _, tt := range tests {
		got := departed(tt.seen, tt.present, "self")
		slices.Sort(got)
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s: departed = %v, want %v", tt.name, got, tt.want)
		}
	}
}
