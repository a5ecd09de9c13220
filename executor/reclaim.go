package executor

import (
	"context"
	"errors"
	"time"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/internal/logkey"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// systemHolder is the WorkerID a system task's take records: the engine
// and the process (boot) that took it, whose presence (presence.go)
// tells other engines whether it still runs the task.
func systemHolder(engineID, boot string) string {
	return "flowvault/" + engineID + "/" + boot
}

// reclaimSlack is how far past SystemTaskLease from now the scan looks:
// a lease's deadline is its take's time plus the lease, and the take was
// made before now, by a clock that may have been stepped back since.
const reclaimSlack = time.Minute

// reclaim takes back at once the system tasks held by processes no
// longer present (engine.Reclaim), which would otherwise wait out their
// lease. Those tasks are leased, so the deadline index holds their
// lease's end, within SystemTaskLease of now: only the workflows due by
// then are read, at most scanBudget of them from after on. present is
// the listing of the processes present. It returns where the next pass
// goes on, and whether there is more to read.
func (e *Executor) reclaim(ctx context.Context, present map[string]bool, after Due) (Due, bool) {
	until := e.cfg.Now().Add(engine.SystemTaskLease + reclaimSlack).UnixMilli()
	gone := map[string]bool{} // by boot, asked once a pass
	seen := map[string]bool{}
	n, read := 0, 0
	for {
		limit := min(scanBudget-read, 1000)
		if limit == 0 {
			e.tookBack(n)
			return after, true
		}
		due, err := e.sched.Due(ctx, until, after, limit)
		if err != nil {
			if ctx.Err() == nil {
				e.cfg.Logger.Warn("scan for the system tasks of engine processes no longer present failed; it goes on at the next heartbeat", logkey.Err, err)
			}
			e.tookBack(n)
			return after, true
		}
		read += len(due)
		for _, d := range due {
			if seen[d.WorkflowID] {
				continue
			}
			seen[d.WorkflowID] = true
			n += e.reclaimIn(ctx, d.WorkflowID, present, gone)
		}
		if len(due) < limit {
			break
		}
		after = due[len(due)-1]
	}
	e.tookBack(n)
	e.metrics.reclaimScans.Inc()
	if e.scanned != nil {
		e.scanned(n)
	}
	return Due{}, false
}

// tookBack counts and logs the n tasks a pass took back.
func (e *Executor) tookBack(n int) {
	if n > 0 {
		e.metrics.reclaimed.Add(float64(n))
		e.cfg.Logger.Info("took back the system tasks of engine processes no longer present", logkey.Count, n)
	}
}

// reclaimIn takes back wfID's tasks held by processes that are gone
// (processGone), gone caching the answers by boot.
func (e *Executor) reclaimIn(ctx context.Context, wfID string, present, gone map[string]bool) int {
	w, err := e.State(ctx, wfID)
	if err != nil || w == nil || w.Terminal() {
		if err != nil && !expected(err) && ctx.Err() == nil {
			e.cfg.Logger.Warn("reclaim: workflow not read", logkey.WorkflowID, wfID, logkey.Err, err)
		}
		return 0
	}
	n := 0
	for _, t := range w.Tasks {
		if t.Status != conductor.TaskInProgress || t.WorkerID == e.holder {
			continue
		}
		engineID, boot, ok := parseHolder(t.WorkerID)
		if !ok {
			continue
		}
		g, asked := gone[boot]
		if !asked {
			g = e.processGone(ctx, present, engineID, boot)
			gone[boot] = g
		}
		if !g {
			continue
		}
		// Decided once however many engines ask: the first takes it back,
		// and the others find it no longer held under that take.
		_, err := e.Submit(ctx, wfID, engine.Reclaim{TaskID: t.ID, Holder: t.WorkerID}, Meta{})
		switch {
		case err == nil:
			n++
		case errors.Is(err, engine.ErrTaskGone), expected(err):
			// Reported, released or taken back since it was read.
		default:
			e.cfg.Logger.Warn("reclaim failed; the task waits for its lease", logkey.WorkflowID, wfID, logkey.TaskID, t.ID, logkey.Err, err)
		}
	}
	return n
}
