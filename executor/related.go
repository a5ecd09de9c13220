package executor

import (
	"context"
	"sync"

	"github.com/flowvault/flowvault/engine"
)

// Related follows what a decision sets off in other workflows: a parent
// reopened or told of its child's end, children terminated or started, a
// failure workflow started. Those are effects, performed after the
// decision's own append; Conductor makes them before an operator's request
// answers, and a caller who reads the parent right after a retry of its
// child must find it running again. Related follows the effects and the
// decisions they cause in turn (a terminated child terminating its own
// children), but not what a workflow they start goes on to do (see
// job.followed), and records the highest log sequence they appended.
type Related struct {
	mu      sync.Mutex
	pending int
	seq     uint64
	idle    chan struct{} // closed when pending drops to zero; nil until waited on
}

type relatedKey struct{}

// withRelated marks ctx as that of an effect rel follows: the decisions
// submitted with it report their appends to rel, which follows their own
// effects on other workflows too.
func withRelated(ctx context.Context, rel *Related) context.Context {
	return context.WithValue(ctx, relatedKey{}, rel)
}

func relatedFrom(ctx context.Context) *Related {
	rel, _ := ctx.Value(relatedKey{}).(*Related)
	return rel
}

// add counts n more effects in flight. An effect adds the effects of the
// decisions it causes before it is done itself, so the count never drops
// to zero while something is still to come.
func (r *Related) add(n int) {
	r.mu.Lock()
	r.pending += n
	r.mu.Unlock()
}

func (r *Related) done() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pending--
	if r.pending == 0 && r.idle != nil {
		close(r.idle)
		r.idle = nil
	}
}

// note records an append made on the decision's behalf.
func (r *Related) note(seq uint64) {
	r.mu.Lock()
	r.seq = max(r.seq, seq)
	r.mu.Unlock()
}

// Wait returns once every followed effect has been performed (or given
// up: a failed effect is retried in the background, and recovery performs
// it after a crash), with the highest sequence they appended: wait for it
// before reading. Nothing to follow returns at once.
func (r *Related) Wait(ctx context.Context) (uint64, error) {
	if r == nil {
		return 0, nil
	}
	for {
		r.mu.Lock()
		if r.pending == 0 {
			seq := r.seq
			r.mu.Unlock()
			return seq, nil
		}
		if r.idle == nil {
			r.idle = make(chan struct{})
		}
		idle := r.idle
		r.mu.Unlock()
		select {
		case <-idle:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

// reachesOthers reports the effects that change a related workflow: the
// starts, ends and reopenings, and CheckChild, which brings a parent news
// of its child, and LookFor, which masks in a child what its parent found
// to be secret. Dispatches and system tasks are a workflow's own
// progress, not a consequence of an operator's write on its relatives.
func reachesOthers(eff engine.Effect) bool {
	switch eff.(type) {
	case engine.StartWorkflow, engine.NotifyParent, engine.ReopenParent, engine.TerminateWorkflow, engine.CheckChild, engine.LookFor:
		return true
	}
	return false
}
