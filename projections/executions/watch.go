package executions

import (
	"sync"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/projections"
)

var _ projections.Committer = (*Projection)(nil)

// Watch returns a channel that receives a value after every commit of the
// read model that changed one of the workflows ids (one value may stand for
// several commits), and a function that stops the watch. Readers that wait
// for a workflow to reach some state watch it, read it, and read again when
// the channel fires: a change committed after the read always fires it.
func (p *Projection) Watch(ids ...string) (<-chan struct{}, func()) {
	w := &watcher{c: make(chan struct{}, 1)}
	tokens := make([]string, len(ids))
	for i, id := range ids {
		tokens[i] = eventlog.Token(id)
	}
	p.hub.add(w, tokens)
	return w.c, func() { p.hub.remove(w, tokens) }
}

// Committed implements projections.Committer: it wakes the watchers of the
// workflows the committed batch wrote.
func (p *Projection) Committed(uint64) {
	if len(p.touched) == 0 {
		return
	}
	p.hub.notify(p.touched)
	clear(p.touched)
}

type watcher struct{ c chan struct{} }

// hub maps workflow tokens to their watchers.
type hub struct {
	mu sync.Mutex
	by map[string]map[*watcher]struct{}
}

func newHub() *hub { return &hub{by: map[string]map[*watcher]struct{}{}} }

func (h *hub) add(w *watcher, tokens []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, t := range tokens {
		if h.by[t] == nil {
			h.by[t] = map[*watcher]struct{}{}
		}
		h.by[t][w] = struct{}{}
	}
}

func (h *hub) remove(w *watcher, tokens []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, t := range tokens {
		delete(h.by[t], w)
		if len(h.by[t]) == 0 {
			delete(h.by, t)
		}
	}
}

func (h *hub) notify(tokens map[string]struct{}) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.by) == 0 {
		return
	}
	for t := range tokens {
		for w := range h.by[t] {
			select {
			case w.c <- struct{}{}:
			default: // already pending
			}
		}
	}
}
