package executor

import "time"

// Work the executor does for each request, decision and effect runs on
// goroutines kept for the next piece of work, not on a new goroutine each
// time. A new goroutine starts with a small stack and grows it by copying
// as soon as a request's JSON or a decision goes deep: 3–4% of the CPU of
// a relaxed benchmark run went to copying stacks. A kept goroutine has
// grown its stack already (the collector halves the stack of one that sits
// idle, so a goroutine idle across many collections shrinks back).

// keepIdle is how long a goroutine waits for more work before it ends.
const keepIdle = 10 * time.Second

// spawn runs fn in the background, on an idle goroutine if one waits,
// counted in e.wg until fn returns.
func (e *Executor) spawn(fn func()) {
	e.wg.Add(1)
	select {
	case e.idle <- fn:
	default:
		go e.keep(fn)
	}
}

// keep runs fn, then whatever spawn hands it, until it has waited keepIdle
// for work or the executor stops.
func (e *Executor) keep(fn func()) {
	idle := time.NewTimer(keepIdle)
	defer idle.Stop()
	for {
		fn()
		e.wg.Done()
		idle.Reset(keepIdle)
		select {
		case fn = <-e.idle:
		case <-idle.C:
			return
		case <-e.ctx.Done():
			return
		}
	}
}
