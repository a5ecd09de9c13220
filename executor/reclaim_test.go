package executor

import (
	"context"
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

// An engine killed while it ran a system task left it IN_PROGRESS under a
// lease that ends 5 minutes after the take (engine.SystemTaskLease): the
// same engine, restarted (its engine id again, a new process), takes it
// back at once and runs it; another engine's restart, or an engine
// without an id (whose takes name no process), leaves it to its holder.
// The restarted engine's timers see no deadline before the lease's end,
// 5 minutes away, and the test's deadline is well inside that: the
// completion is the reclaim's.
func TestRestartedEngineTakesBackItsSystemTasks(t *testing.T) {
	tests := []struct {
		name          string
		dead, started string // engine ids
		reclaimed     bool
	}{
		{name: "the same engine restarted", dead: "engine-a", started: "engine-a", reclaimed: true},
		{name: "another engine started", dead: "engine-b", started: "engine-a"},
		{name: "engines without an id", dead: "", started: ""},
		{name: "an engine without an id died", dead: "", started: "engine-a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := testutil.OpenLog(t, "")
			ctx := testutil.Context(t, 30*time.Second)
			const id = "wf-held"
			dead := New(l, noDefinitions{}, nothingScheduled{}, Config{Logger: testutil.Logger(t), EngineID: tt.dead})
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
			if held.Status != conductor.TaskInProgress || held.WorkerID != dead.holder {
				t.Fatalf("task %s held by %q, want IN_PROGRESS held by %q", held.Status, held.WorkerID, dead.holder)
			}
			if tt.dead != "" && !strings.HasPrefix(held.WorkerID, "flowvault/"+tt.dead+"/") {
				t.Fatalf("the take names %q, not engine %s", held.WorkerID, tt.dead)
			}

			// The dead process is left as it is: it reports nothing.
			sched := &leaseDue{wfID: id, at: taken.Add(engine.SystemTaskLease).UnixMilli(), recovered: make(chan struct{})}
			next := New(l, noDefinitions{}, sched, Config{Logger: testutil.Logger(t), EngineID: tt.started})
			next.RegisterSystemTask(conductor.TaskTypeInline, completesBy("the restarted process"))
			if err := next.Start(ctx); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(next.Stop)
			select {
			case <-sched.recovered:
			case <-ctx.Done():
				t.Fatal("recovery never ran")
			}
			if !tt.reclaimed {
				w, err := next.State(ctx, id)
				if err != nil {
					t.Fatal(err)
				}
				if task := w.LatestByRef("script"); task.Status != conductor.TaskInProgress || task.WorkerID != dead.holder {
					t.Fatalf("another's task taken back: %s held by %q", task.Status, task.WorkerID)
				}
				return
			}
			for {
				w, err := next.State(ctx, id)
				if err != nil {
					t.Fatal(err)
				}
				if w.Status == conductor.WorkflowCompleted {
					task := w.LatestByRef("script")
					if task.Output["by"] != "the restarted process" || task.LeaseExpiries != 1 {
						t.Fatalf("completed by %v after %d lease expiries", task.Output["by"], task.LeaseExpiries)
					}
					return
				}
				select {
				case <-ctx.Done():
					t.Fatalf("the restarted engine did not take back its task: workflow %s, task %s", w.Status, w.LatestByRef("script").Status)
				case <-time.After(20 * time.Millisecond):
				}
			}
		})
	}
}
