// Package engine is flowvault's workflow decider: pure functions from a
// workflow's state and a trigger (a worker's result, a timer, an operator's
// command) to the events that record what happens next.
//
//	Apply(state, event) state
//	Decide(Input{State, Trigger, Now, ...}) (Decision, error)
//
// The package does no I/O, reads no clock and draws no random numbers: ids
// are derived from the workflow id and a counter, time comes in with the
// input. A workflow's state is the fold of its events, so any state can be
// rebuilt, and any decision replayed, from the log.
//
// A Decision also lists Effects: things outside the workflow that must
// happen because of it (hand a task to workers, run an HTTP call, start a
// child workflow, tell a parent its child finished). The executor performs
// them after the decision's events are durably appended; every effect is
// idempotent and can be recomputed from state (Effects), so a crash between
// append and effect loses nothing.
//
// Conductor's semantics are the reference: task types, retries, timeouts,
// optional tasks, pause/resume, terminate, restart, retry and rerun behave as
// conductor-api.md §6 describes.
package engine
