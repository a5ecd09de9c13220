// Package executor runs flowvault's decider against the event log: the
// command loop of DESIGN §4.
//
// For each trigger (an API command, a worker's take or result, a timer) the
// executor loads the workflow's state (from its cache, catching up from the
// workflow's subject), asks engine.Decide what happens, appends the
// decision's events as one record with the state's sequence as the
// expectation, and then performs the decision's effects (hand tasks to
// workers, start children, notify parents).
//
// Workflows are processed in parallel, each serially: a workflow id hashes to
// one shard goroutine. Across processes nothing is locked: two engines that
// decide for the same workflow at once race on the append, the loser gets
// eventlog.ErrConflict, catches up and decides again. Effects are idempotent
// and recomputable from state, so a crash between append and effect is
// repaired by the reconciliation pass every engine runs at start.
//
// Timers are not stored anywhere of their own: deadlines are a function of
// workflow state (engine.Deadlines), indexed by the executions read model;
// the timer loop ticks each workflow whose deadline passed, and the append
// race makes a tick fire once however many engines see it.
package executor
