package engine

import (
	"fmt"
	"slices"
	"time"

	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// SystemTaskLease is how long an engine may run a system task (an HTTP
// call) before another engine assumes it died and runs the task again.
const SystemTaskLease = 5 * time.Minute

// MaxLeaseExpiries is how many times a system task's lease may run out
// before the task fails instead of running again.
const MaxLeaseExpiries = 3

// Deadlines returns the times (Unix ms) at which the workflow needs a Tick:
// timeouts, WAIT wake-ups, delayed hand-offs, and, due at once, the next
// iteration of a loop a decision left for the next one (Pending). The executions read model
// indexes them; the executor ticks the workflow when one passes. A Tick
// that finds nothing due changes nothing, so deadlines need no bookkeeping
// of their own: they are a function of state. The executions read model
// indexes what this returns for each state, counting it part by part
// (WorkflowDeadlines, and TaskDeadlines of each task, which a record
// changes only for the tasks it replaces or appends): a version that
// changes what it returns for a state changes that read model's layout
// (projections.Layouter).
func Deadlines(w *Workflow) []int64 {
	if w.Terminal() {
		return nil
	}
	out := WorkflowDeadlines(w, nil)
	for _, t := range w.Tasks {
		out = TaskDeadlines(w, t, out)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// WorkflowDeadlines appends to out the deadline of a running w's own (its
// timeoutSeconds), if any: Deadlines is it and every task's TaskDeadlines.
func WorkflowDeadlines(w *Workflow, out []int64) []int64 {
	// Only deadlines a tick acts on: an alert-only timeout (which flowvault
	// does nothing for) would stay due in the timer index for good. A
	// paused workflow's time runs on, as in Conductor.
	if def, err := w.Def(); err == nil && def.TimeoutSeconds > 0 && def.TimeoutPolicy == conductor.TimeoutPolicyTimeOutWF {
		out = addDeadline(out, afterSeconds(w.timeoutFrom(), def.TimeoutSeconds))
	}
	return out
}

// TaskDeadlines appends to out the deadlines t, a task of a running w,
// needs, in no order. They are a function of t and of w's status (and,
// for a SUB_WORKFLOW, of w's LastRetriedTime, which only a retry changes,
// and it changes the status too), but for a DO_WHILE, whose next
// iteration's due time depends on whether w holds that iteration's first
// task.
func TaskDeadlines(w *Workflow, t *Task, out []int64) []int64 {
	// Most of a large workflow's tasks have ended: every case below is
	// about a scheduled or running one.
	if t.Status != conductor.TaskScheduled && t.Status != conductor.TaskInProgress {
		return out
	}
	// A paused workflow's tasks do not time out (see tick).
	paused := w.Status == conductor.WorkflowPaused
	p := &t.Policy
	switch {
	case t.Status == conductor.TaskScheduled:
		if t.AvailableAt > t.ScheduledTime {
			out = addDeadline(out, t.AvailableAt)
		}
		if paused {
			return out
		}
		if pollTimesOut(t) {
			out = addDeadline(out, afterSeconds(max(t.AvailableAt, t.ScheduledTime), p.PollTimeoutSeconds))
		}
		if timesOut(t) {
			out = addDeadline(out, timeoutAt(w, t)) // called back: still counting
		}
	case t.Status == conductor.TaskInProgress && t.Type == conductor.TaskTypeWait:
		out = addDeadline(out, t.AvailableAt)
		if timesOut(t) && !paused {
			out = addDeadline(out, timeoutAt(w, t))
		}
	case !paused && w.Status == conductor.WorkflowRunning && w.awaitsIteration(t):
		// A decision stopped between its iterations (see yieldAfter):
		// the next one is due at once.
		out = addDeadline(out, t.UpdateTime)
	case t.Status == conductor.TaskInProgress && leased(t):
		out = addDeadline(out, t.UpdateTime+SystemTaskLease.Milliseconds())
		if timesOut(t) && !paused {
			out = addDeadline(out, timeoutAt(w, t))
		}
	case awaitsUpdate(t) && timesOut(t) && !paused:
		out = addDeadline(out, timeoutAt(w, t))
	case t.Status == conductor.TaskInProgress && t.IsWorkerTask() && !paused:
		if p.ResponseTimeoutSeconds > 0 {
			out = addDeadline(out, afterSeconds(t.UpdateTime, p.ResponseTimeoutSeconds))
		}
		if timesOut(t) {
			out = addDeadline(out, timeoutAt(w, t))
		}
	}
	return out
}

// addDeadline appends t to out if it is a time a tick acts on.
func addDeadline(out []int64, t int64) []int64 {
	if t > 0 && t != Never {
		return append(out, t)
	}
	return out
}

// timeoutFrom is when the workflow's timeoutSeconds started to count:
// its start, or its last retry, restart, rerun or resume, each of which
// gives it the whole time again (a rerun of an old workflow would time out
// at once; Conductor's resume sets the lastRetriedTime its decider counts
// from).
func (w *Workflow) timeoutFrom() int64 {
	return max(w.StartTime, w.LastRetriedTime, w.ResetTime, w.ResumeTime)
}

// timesOut reports whether a started task's timeoutSeconds applies: set,
// acted on (not alert-only), and counting from its first IN_PROGRESS,
// across callbacks, as in Conductor.
func timesOut(t *Task) bool {
	return t.Policy.TimeoutSeconds > 0 && t.Policy.TimeoutPolicy != conductor.TimeoutPolicyAlertOnly && t.StartTime > 0
}

// pollTimesOut reports whether a scheduled worker task's
// pollTimeoutSeconds applies: set, and acted on (not alert-only).
func pollTimesOut(t *Task) bool {
	return t.Policy.PollTimeoutSeconds > 0 && t.Policy.TimeoutPolicy != conductor.TimeoutPolicyAlertOnly && t.IsWorkerTask()
}

// leased reports whether an IN_PROGRESS task is held by an engine's system
// worker, which must report within SystemTaskLease. A DO_WHILE is held only
// while its condition is evaluated; while its body runs, the decider has it.
// A task the system worker released (asyncComplete) waits for an update.
func leased(t *Task) bool {
	if t.Type == conductor.TaskTypeDoWhile {
		return loopRecorded(t)
	}
	return runsInSystemWorker(t.Type) && t.WorkerID != ""
}

// awaitsUpdate reports a task in progress that no engine holds and that
// waits for something else or for its time: a HUMAN or WAIT task, a
// SUB_WORKFLOW waiting for its child, a JOIN for the tasks it joins, a
// DO_WHILE for its iteration's tasks, a START_WORKFLOW for its workflow's
// start, or a system task that its system worker let go of
// (asyncComplete). Its task definition's timeoutSeconds applies, as
// Conductor's decider applies it to every pending task with a definition
// (DeciderService.checkTaskTimeout), built-in control tasks included.
// (Held by an engine, a task is leased: its timeoutSeconds applies there.)
func awaitsUpdate(t *Task) bool {
	if t.Status != conductor.TaskInProgress {
		return false
	}
	switch t.Type {
	case conductor.TaskTypeWait, conductor.TaskTypeSubWorkflow, conductor.TaskTypeJoin, conductor.TaskTypeExclusiveJoin,
		conductor.TaskTypeStartWorkflow:
		return true
	case conductor.TaskTypeDoWhile:
		return !leased(t)
	}
	return conductor.AwaitsOutside(t.Type) || runsInSystemWorker(t.Type) && !leased(t)
}

// timeoutStart is when t's timeoutSeconds started to count: its start
// plus the delay it waited before it could start (StartDelay), as
// Conductor's checkTaskTimeout counts from startTime +
// startDelayInSeconds; or, for a SUB_WORKFLOW task its workflow's retry
// reopened for a child an operator ran again (childReopened; the only
// task a retry reopens that a timeout applies to), that retry, which
// gives the workflow its whole timeoutSeconds again: counted from its
// first start, the task would time out at once and leave the child it
// waits for again behind. A task scheduled since started after the
// retry, so this is its start. The retry changes the workflow's status,
// so the executions read model counts every task's deadlines anew (see
// TaskDeadlines).
func timeoutStart(w *Workflow, t *Task) int64 {
	start := afterMs(t.StartTime, t.StartDelay)
	if t.Type == conductor.TaskTypeSubWorkflow {
		return max(start, w.LastRetriedTime)
	}
	return start
}

// timeoutAt is when t's timeoutSeconds runs out.
func timeoutAt(w *Workflow, t *Task) int64 {
	return afterSeconds(timeoutStart(w, t), t.Policy.TimeoutSeconds)
}

// tick acts on every deadline that has passed.
func (d *decision) tick() {
	if d.w.Terminal() {
		return
	}
	if d.plan.def.TimeoutSeconds > 0 && d.now >= afterSeconds(d.w.timeoutFrom(), d.plan.def.TimeoutSeconds) &&
		d.plan.def.TimeoutPolicy == conductor.TimeoutPolicyTimeOutWF {
		d.finish(conductor.WorkflowTimedOut, fmt.Sprintf("Workflow timed out after %d seconds. Timeout configured as %d seconds. "+
			"Timeout policy configured to %s", (d.now-d.w.timeoutFrom())/1000, d.plan.def.TimeoutSeconds, d.plan.def.TimeoutPolicy), nil)
		return
	}
	// Conductor's decider returns for a paused workflow before it checks
	// its tasks' timeouts: they wait for resume (and count from where
	// they began, so a long pause times them out then).
	paused := d.w.Status == conductor.WorkflowPaused
	// Only the tasks there before the tick: one it schedules (a retry of
	// a task it timed out) is handed off as it is scheduled, and a second
	// hand-off would only be refused.
	for i, n := 0, len(d.w.Tasks); i < min(n, len(d.w.Tasks)) && !d.w.Terminal(); i++ {
		t := d.w.Tasks[i]
		p := t.Policy
		switch {
		case paused && (t.Status == conductor.TaskScheduled && t.IsWorkerTask() || t.Status == conductor.TaskInProgress && t.IsWorkerTask()):
			if t.Status == conductor.TaskScheduled && t.AvailableAt <= d.now {
				d.effect(handOff(d.w, t)...)
			}
		case t.Status == conductor.TaskScheduled && timesOut(t) && !paused && d.now >= timeoutAt(d.w, t):
			d.timedOut(t, d.taskTimeoutReason(t), false)
		case t.Status == conductor.TaskScheduled && pollTimesOut(t) && d.now >= afterSeconds(max(t.AvailableAt, t.ScheduledTime), p.PollTimeoutSeconds):
			d.timedOut(t, fmt.Sprintf("Task poll timed out after %d seconds. Poll timeout configured as %d seconds. Timeout policy configured to %s",
				(d.now-max(t.AvailableAt, t.ScheduledTime))/1000, p.PollTimeoutSeconds, p.TimeoutPolicy), false)
		case t.Status == conductor.TaskScheduled && t.Type == conductor.TaskTypeSubWorkflow && t.AvailableAt <= d.now:
			d.startDelayedChild(t)
		case t.Status == conductor.TaskScheduled && t.AvailableAt <= d.now:
			d.effect(handOff(d.w, t)...)
		case t.Status == conductor.TaskInProgress && t.Type == conductor.TaskTypeWait && t.AvailableAt > 0 && d.now >= t.AvailableAt:
			d.emit(&schemas.TaskUpdated{TaskID: t.ID, Status: conductor.TaskCompleted, KeepOutput: true, Time: d.now})
		case t.Status == conductor.TaskInProgress && leased(t) && timesOut(t) && !paused && d.now >= timeoutAt(d.w, t):
			// Before the lease: a task that ran out of time is not run
			// again. The run under way ends as the task is no longer
			// active (the executor's runRegistry), and its result, if it
			// comes, is late news.
			d.timedOut(t, d.taskTimeoutReason(t), false)
		case t.Status == conductor.TaskInProgress && leased(t) && d.now >= t.UpdateTime+SystemTaskLease.Milliseconds():
			d.leaseExpired(t)
		case awaitsUpdate(t) && timesOut(t) && !paused && d.now >= timeoutAt(d.w, t):
			// A SUB_WORKFLOW's child is left to run, as Conductor leaves
			// it (only a CANCELED task's child is terminated): the task
			// is TIMED_OUT, so the parent's end cancels nothing of it,
			// and a retry starts a new child; the old one's end is news
			// no task waits for.
			d.timedOut(t, d.taskTimeoutReason(t), false)
		case t.Status == conductor.TaskInProgress && t.IsWorkerTask():
			switch {
			case timesOut(t) && d.now >= timeoutAt(d.w, t):
				d.timedOut(t, d.taskTimeoutReason(t), false)
			case p.ResponseTimeoutSeconds > 0 && d.now >= afterSeconds(t.UpdateTime, p.ResponseTimeoutSeconds):
				d.timedOut(t, fmt.Sprintf("responseTimeout: %d exceeded for the taskId: %s with Task Definition: %s",
					p.ResponseTimeoutSeconds, t.ID, t.Name), true)
			}
		}
	}
}

// leaseExpired runs again t, a leased task whose engine died running it,
// or fails it for good once engines died running it MaxLeaseExpiries
// times.
func (d *decision) leaseExpired(t *Task) {
	if t.LeaseExpiries+1 >= MaxLeaseExpiries {
		// Engines die running it, one after another: most likely it is
		// what kills them (a script that overflows the stack or memory),
		// and running it again would kill the next one.
		d.emit(&schemas.TaskUpdated{TaskID: t.ID, Status: conductor.TaskFailedWithTerminalError, KeepOutput: true, LeaseExpired: true,
			Reason: fmt.Sprintf("system task lease expired %d times: the engines running it stopped without reporting (did it crash them?); not run again", MaxLeaseExpiries),
			Time:   d.now})
		d.failed(d.w.task(t.ID))
		return
	}
	// The engine running it died: run it again.
	d.emit(&schemas.TaskUpdated{TaskID: t.ID, Status: conductor.TaskScheduled, KeepOutput: true, LeaseExpired: true,
		Reason: "system task lease expired", Time: d.now})
	d.effect(handOff(d.w, d.w.task(t.ID))...)
}

// reclaim takes back at once a leased task its holder's process left
// when it died (see Reclaim): what the lease's expiry would do 5 minutes
// on. A task that ran out of time meanwhile times out, as a tick would
// find it, rather than run again.
func (d *decision) reclaim(r Reclaim) error {
	t := d.w.task(r.TaskID)
	if t == nil {
		return fault.NotFound("task %s not found in workflow %s", r.TaskID, d.w.ID)
	}
	// Only the take the caller saw: one since (by another engine, after
	// the lease expired anyway) is that engine's, alive or not.
	if d.w.Terminal() || t.Status != conductor.TaskInProgress || !leased(t) || r.Holder == "" || t.WorkerID != r.Holder {
		return ErrTaskGone
	}
	if timesOut(t) && d.w.Status != conductor.WorkflowPaused && d.now >= timeoutAt(d.w, t) {
		d.timedOut(t, d.taskTimeoutReason(t), false)
		return nil
	}
	d.leaseExpired(t)
	return nil
}

// taskTimeoutReason is why t timed out by its timeoutSeconds, in
// Conductor's words (DeciderService.checkTaskTimeout), which failure
// workflows and alerts written for Conductor match.
func (d *decision) taskTimeoutReason(t *Task) string {
	return fmt.Sprintf("Task timed out after %d seconds. Timeout configured as %d seconds. Timeout policy configured to %s",
		(d.now-timeoutStart(d.w, t))/1000, t.Policy.TimeoutSeconds, t.Policy.TimeoutPolicy)
}

// timedOut marks t TIMED_OUT and applies its timeout policy. A response
// timeout always leads to a retry (Conductor's behaviour); the task and
// poll timeouts follow timeoutPolicy.
func (d *decision) timedOut(t *Task, reason string, alwaysRetry bool) {
	policy := t.Policy.TimeoutPolicy
	if !alwaysRetry && policy == conductor.TimeoutPolicyAlertOnly {
		return
	}
	d.emit(&schemas.TaskUpdated{TaskID: t.ID, Status: conductor.TaskTimedOut, KeepOutput: true, Reason: reason, Time: d.now})
	t = d.w.task(t.ID)
	if !alwaysRetry && policy == conductor.TimeoutPolicyTimeOutWF {
		d.endedBy = t.ID
		d.finish(conductor.WorkflowTimedOut, reason, nil)
		return
	}
	d.failed(t)
	if t.Type == conductor.TaskTypeDoWhile {
		d.abandonIteration(d.w.task(t.ID))
	}
}
