package executor

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/internal/logkey"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// systemHolder is the WorkerID a system task's take records: the engine
// and the process (boot) that took it, so that the engine, restarted,
// tells its own dead process's takes from another engine's. Without an
// engine id, the name older versions recorded.
func systemHolder(engineID, boot string) string {
	if engineID == "" {
		return "flowvault"
	}
	return "flowvault/" + engineID + "/" + boot
}

// reclaimSlack is how far past SystemTaskLease from now the scan looks:
// a lease's deadline is its take's time plus the lease, and the take was
// made before now, by a clock that may have been stepped back since.
const reclaimSlack = time.Minute

// reclaim takes back at once the system tasks this engine's earlier
// processes held when they died (engine.Reclaim), which would otherwise
// wait out their lease. Those tasks are leased, so the deadline index
// holds their lease's end, within SystemTaskLease of now: only the
// workflows due by then are read. A take by another engine, alive or not,
// is left to its lease. It returns how many tasks it took back.
func (e *Executor) reclaim(ctx context.Context) int {
	if e.cfg.EngineID == "" || e.sched == nil {
		return 0
	}
	prefix := systemHolder(e.cfg.EngineID, "")
	until := e.cfg.Now().Add(engine.SystemTaskLease + reclaimSlack).UnixMilli()
	const page = 10000
	seen := map[string]bool{}
	n := 0
	var after Due
	for {
		due, err := e.sched.Due(ctx, until, after, page)
		if err != nil {
			if ctx.Err() == nil {
				e.cfg.Logger.Warn("scan for the system tasks of an earlier process failed; they wait for their lease", logkey.Err, err)
			}
			return n
		}
		for _, d := range due {
			if seen[d.WorkflowID] {
				continue
			}
			seen[d.WorkflowID] = true
			n += e.reclaimIn(ctx, d.WorkflowID, prefix)
		}
		if len(due) < page {
			break
		}
		after = due[len(due)-1]
	}
	if n > 0 {
		e.cfg.Logger.Info("took back the system tasks an earlier process of this engine held", logkey.Count, n)
	}
	return n
}

// reclaimIn takes back wfID's tasks held under prefix by a process other
// than this one.
func (e *Executor) reclaimIn(ctx context.Context, wfID, prefix string) int {
	w, err := e.State(ctx, wfID)
	if err != nil || w == nil || w.Terminal() {
		if err != nil && !expected(err) && ctx.Err() == nil {
			e.cfg.Logger.Warn("reclaim: workflow not read", logkey.WorkflowID, wfID, logkey.Err, err)
		}
		return 0
	}
	n := 0
	for _, t := range w.Tasks {
		if t.Status != conductor.TaskInProgress || !strings.HasPrefix(t.WorkerID, prefix) || t.WorkerID == e.holder {
			continue
		}
		_, err := e.Submit(ctx, wfID, engine.Reclaim{TaskID: t.ID, Holder: t.WorkerID}, Meta{})
		switch {
		case err == nil:
			n++
		case errors.Is(err, engine.ErrTaskGone), expected(err):
			// Reported, released or taken again since it was read.
		default:
			e.cfg.Logger.Warn("reclaim failed; the task waits for its lease", logkey.WorkflowID, wfID, logkey.TaskID, t.ID, logkey.Err, err)
		}
	}
	return n
}
