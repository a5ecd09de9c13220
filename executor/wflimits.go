package executor

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/internal/logkey"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// A workflow definition's rateLimitConfig (Orkes's workflow rate limit):
// at most concurrentExecLimit of its workflows running per value of its
// rateLimitKey, the others queued in the order they started. Each
// (definition name, key) is a line: one entry of the limits bucket (see
// limits.go), updated by compare and set by every engine, holding the
// workflows that have a place and those queued. A start takes a place if
// one is free and nobody queues before it, else queues: the engine
// records it RUNNING without tasks (engine.Start.Queued). A workflow
// that ends gives its place to the head of the queue, whose engine.Admit
// schedules its first tasks. As for a task's concurrentExecLimit, nothing
// but the log decides who holds a place: the holders are checked against
// it when the line is full and by each engine's sweep, so a crash between
// the end of one workflow and the admission of the next, an engine that
// stopped, or a workflow terminated while queued leaves no place taken
// and nobody waiting for ever.

// wfLine is a line's entry.
type wfLine struct {
	// Limit is the concurrentExecLimit of the line's latest start, or of
	// its definition as registered now (see sweepLines).
	Limit int `json:"l"`
	// Name is the definition's, for the sweep to read its limit.
	Name    string    `json:"n,omitempty"`
	Holders []wfPlace `json:"h,omitempty"`
	Queue   []wfPlace `json:"q,omitempty"`
}

// wfPlace is a workflow in a line, since At (Unix ms).
type wfPlace struct {
	W  string `json:"w"`
	At int64  `json:"at"`
	// Re is the log sequence of the ended state a restart, retry or
	// rerun gave the place back to, at At: until its record shows, the
	// log reads the workflow ended.
	Re uint64 `json:"re,omitempty"`
}

// wfSweepEvery is how often an engine looks at every line with a queue.
const wfSweepEvery = time.Second

// lineKey names the line of definition name's workflows under key: a
// digest, since keys may hold what bucket keys may not.
func lineKey(name, key string) string {
	sum := sha256.Sum256([]byte(strconv.Itoa(len(name)) + ":" + name + key))
	return "w." + base64.RawURLEncoding.EncodeToString(sum[:])
}

// lineKeys matches every line's key (lineKey).
const lineKeys = "w.*"

func decodeLine(old []byte) wfLine {
	var l wfLine
	if len(old) > 0 && json.Unmarshal(old, &l) != nil {
		l = wfLine{} // only engines write it: what they cannot read holds no place
	}
	return l
}

// encode is the line's entry, or removeEntry for a line nobody is in:
// keys that name a value of each start (a correlation id) would
// otherwise pile up, every one of them read by each sweep.
func (l *wfLine) encode() ([]byte, error) {
	if len(l.Holders) == 0 && len(l.Queue) == 0 {
		return removeEntry, nil
	}
	return json.Marshal(l)
}

func (l *wfLine) has(wfID string) (held, queued bool) {
	is := func(p wfPlace) bool { return p.W == wfID }
	return slices.ContainsFunc(l.Holders, is), slices.ContainsFunc(l.Queue, is)
}

func (l *wfLine) drop(wfID string) {
	is := func(p wfPlace) bool { return p.W == wfID }
	l.Holders = slices.DeleteFunc(l.Holders, is)
	l.Queue = slices.DeleteFunc(l.Queue, is)
}

// promote gives the free places to the head of the queue, and returns
// the workflows it gave one.
func (l *wfLine) promote(now time.Time) []string {
	var out []string
	for len(l.Holders) < l.Limit && len(l.Queue) > 0 {
		p := l.Queue[0]
		l.Queue = l.Queue[1:]
		l.Holders = append(l.Holders, wfPlace{W: p.W, At: now.UnixMilli()})
		out = append(out, p.W)
	}
	return out
}

// lineState is what the log says of a workflow in a line.
type lineState int

const (
	lineGone    lineState = iota // ended, or never recorded
	lineRunning                  // running (or paused), or too recent to tell
	lineWaiting                  // holds a place, but its admission is not recorded
)

// check drops from l's holders those whose place the log says they no
// longer need, and returns those still waiting for their Admit. The
// queue is not read (it may be long): a workflow that ends while queued
// leaves it at its end, and one whose end did not (its engine stopped)
// is dropped once promoted.
func (e *Executor) check(ctx context.Context, l *wfLine, now time.Time) ([]string, error) {
	var waiting []string
	kept := l.Holders[:0:0]
	for _, p := range l.Holders {
		st, err := e.lineStateOf(ctx, p, now)
		if err != nil {
			return nil, err
		}
		if st == lineGone {
			continue
		}
		if st == lineWaiting {
			waiting = append(waiting, p.W)
		}
		kept = append(kept, p)
	}
	l.Holders = kept
	return waiting, nil
}

func (e *Executor) lineStateOf(ctx context.Context, p wfPlace, now time.Time) (lineState, error) {
	w, err := e.current(ctx, p.W)
	if err != nil {
		return 0, fmt.Errorf("%w: workflow rate limit: %v", fault.ErrUnavailable, err)
	}
	return placeState(p, w, now), nil
}

// placeState is what w, as the log has it now (nil: not in it), says of
// its place p.
func placeState(p wfPlace, w *engine.Workflow, now time.Time) lineState {
	switch {
	case w == nil && now.UnixMilli()-p.At < takeGrace.Milliseconds():
		return lineRunning // its start may still be on its way to the log
	case w != nil && p.Re >= w.Seq && now.UnixMilli()-p.At < takeGrace.Milliseconds():
		return lineRunning // so may the record that makes it run again
	case w == nil || leftLine(w):
		// A workflow removed while it ran (or queued) never ends: no
		// record of it will give its place on.
		return lineGone
	case w.Queued:
		return lineWaiting
	}
	return lineRunning
}

// placeStart gives workflow wfID of definition name a place in its line,
// or queues it, and reports which. Those it promoted besides are
// admitted.
func (e *Executor) placeStart(ctx context.Context, name string, rl *engine.RateLimit, wfID string) (queued bool, err error) {
	key := lineKey(name, rl.Key)
	var promoted []string
	err = e.limits.cas(ctx, key, "workflow rate limit of "+name, func(old []byte) ([]byte, error) {
		now := e.cfg.Now()
		l := decodeLine(old)
		promoted, queued = nil, false
		if held, q := l.has(wfID); held || q {
			queued = q
			return nil, nil // a start again of one placed
		}
		l.Limit, l.Name = rl.Limit, name
		if len(l.Holders) >= l.Limit && len(l.Queue) == 0 {
			// Behind others, it waits anyway: the sweep checks for them.
			if _, err := e.check(ctx, &l, now); err != nil {
				return nil, err
			}
		}
		l.Queue = append(l.Queue, wfPlace{W: wfID, At: now.UnixMilli()})
		promoted = l.promote(now)
		if i := slices.Index(promoted, wfID); i >= 0 {
			promoted = slices.Delete(promoted, i, i+1)
		} else {
			queued = true
		}
		return json.Marshal(l)
	})
	if err != nil {
		return false, err
	}
	e.admitLater(promoted)
	if queued {
		e.metrics.wfQueued.Inc()
	}
	return queued, nil
}

// onAncestorsPlace reports whether parent, or a workflow it runs under up
// to the top of its tree, is admitted in the line of definition name
// under key and has not left it: what a sub-workflow of that line would
// wait for is then its own tree's end. The tree is read from the log, not
// from the engine that started it, so every engine decides alike; a
// workflow that ran on its ancestor's place is not limited itself, and
// the walk goes on past it to the one that holds the place.
func (e *Executor) onAncestorsPlace(ctx context.Context, name, key, parent string) (bool, error) {
	for range engine.MaxDepth + 1 {
		if parent == "" {
			return false, nil
		}
		w, err := e.current(ctx, parent)
		if err != nil {
			return false, fmt.Errorf("%w: workflow rate limit: ancestors: %v", fault.ErrUnavailable, err)
		}
		if w == nil {
			return false, nil
		}
		if w.RateLimited && !w.Queued && !leftLine(w) && w.Name == name && w.RateLimitKey == key {
			return true, nil
		}
		parent = w.ParentWorkflowID
	}
	return false, nil
}

// placeReopen gives an ended workflow that a restart, retry or rerun
// makes run again its place back, or refuses it: such a workflow cannot
// wait for one without tasks.
func (e *Executor) placeReopen(ctx context.Context, w *engine.Workflow) error {
	key := lineKey(w.Name, w.RateLimitKey)
	return e.limits.cas(ctx, key, "workflow rate limit of "+w.Name, func(old []byte) ([]byte, error) {
		now := e.cfg.Now()
		l := decodeLine(old)
		if i := slices.IndexFunc(l.Holders, func(p wfPlace) bool { return p.W == w.ID }); i >= 0 {
			// Its end's place may be given on meanwhile, in the
			// background: the mark keeps it.
			if l.Holders[i].Re >= w.Seq {
				return nil, nil
			}
			l.Holders[i].Re, l.Holders[i].At = w.Seq, now.UnixMilli()
			return json.Marshal(l)
		}
		// A line is written by the workflow's start: one without a limit
		// is none this engine can read, and lets one run.
		l.Limit = max(l.Limit, 1)
		if len(l.Holders) >= l.Limit && len(l.Queue) == 0 {
			if _, err := e.check(ctx, &l, now); err != nil {
				return nil, err
			}
		}
		if len(l.Holders) >= l.Limit || len(l.Queue) > 0 {
			return nil, fault.RateLimited("workflow %s: its definition's rateLimitConfig lets %d run at once under its rateLimitKey, and none is free: try again once one ends",
				w.ID, l.Limit)
		}
		l.drop(w.ID)
		l.Holders = append(l.Holders, wfPlace{W: w.ID, At: now.UnixMilli(), Re: w.Seq})
		return json.Marshal(l)
	})
}

// freePlace takes workflow wfID, ended or never recorded, out of its
// line, and admits those its place goes to. A place it holds is kept if
// the log says it needs it again: a restart, retry or rerun after its end
// keeps the place it held, and one given on as well would let the next
// workflow run beside it, one over the limit.
func (e *Executor) freePlace(ctx context.Context, name, rlKey, wfID string) error {
	var promoted []string
	err := e.limits.cas(ctx, lineKey(name, rlKey), "workflow rate limit of "+name, func(old []byte) ([]byte, error) {
		now := e.cfg.Now()
		l := decodeLine(old)
		promoted = nil
		i := slices.IndexFunc(l.Holders, func(p wfPlace) bool { return p.W == wfID })
		if _, queued := l.has(wfID); i < 0 && !queued {
			return nil, nil
		}
		if i >= 0 {
			// A start refused is not in the log, and its place goes on
			// now rather than once it is too old to be on its way.
			w, err := e.current(ctx, wfID)
			if err != nil {
				return nil, fmt.Errorf("%w: workflow rate limit: %v", fault.ErrUnavailable, err)
			}
			if w != nil && placeState(l.Holders[i], w, now) != lineGone {
				return nil, nil
			}
		}
		l.drop(wfID)
		promoted = l.promote(now)
		return l.encode()
	})
	if err != nil {
		return err
	}
	e.admitLater(promoted)
	return nil
}

// freePlaceLater is freePlace in the background: the shard that decided
// the end is the caller, and the admissions are decided on others. The
// wait for a slot is in the background too: what holds the slots may be
// waiting for that shard (see perform).
func (e *Executor) freePlaceLater(w *engine.Workflow) {
	name, key, id := w.Name, w.RateLimitKey, w.ID
	e.spawn(func() {
		e.onSlot(time.Minute, func(ctx context.Context) {
			if err := e.freePlace(ctx, name, key, id); err != nil && ctx.Err() == nil {
				// The sweep gives the place on.
				e.cfg.Logger.Warn("giving a workflow's rate limit place on failed", logkey.WorkflowID, id, logkey.Err, err)
			}
		})
	})
}

// admitLater submits Admit to each of wfIDs, in the background.
func (e *Executor) admitLater(wfIDs []string) {
	for _, id := range wfIDs {
		e.onSlot(time.Minute, func(ctx context.Context) {
			if _, err := e.Submit(ctx, id, engine.Admit{}, Meta{}); err != nil && !expected(err) && ctx.Err() == nil {
				// The sweep admits it again.
				e.cfg.Logger.Warn("admitting a queued workflow failed", logkey.WorkflowID, id, logkey.Err, err)
			}
		})
	}
}

// sweepLinesLoop checks every line now and then: the engine that should
// have given a place on may have stopped before it did.
func (e *Executor) sweepLinesLoop(ctx context.Context) {
	e.every(ctx, func() time.Duration { return wfSweepEvery }, "workflow rate limit sweep failed", e.sweepLines)
}

// sweepLines checks each line against the log, gives the places of
// workflows that ended on, and admits again the holders whose admission
// the log does not show.
func (e *Executor) sweepLines(ctx context.Context) error {
	kv, err := e.limits.bucket(ctx)
	if err != nil {
		return err
	}
	if held, err := e.limits.anyLines(ctx); err != nil || !held {
		if err != nil {
			return fmt.Errorf("%w: workflow rate limits: %v", fault.ErrUnavailable, err)
		}
		return nil
	}
	if e.limits.markersDue(e.cfg.Now()) {
		// An emptied line leaves a deletion marker, which the listing
		// below reads as well: those older than half an hour go.
		if err := kv.PurgeDeletes(ctx); err != nil {
			return fmt.Errorf("%w: workflow rate limits: purge emptied lines: %v", fault.ErrUnavailable, err)
		}
	}
	keys, err := kv.ListKeysFiltered(ctx, lineKeys)
	if err != nil {
		return fmt.Errorf("%w: workflow rate limits: %v", fault.ErrUnavailable, err)
	}
	// Read whole first: the lister blocks on keys not read.
	var all []string
	for key := range keys.Keys() {
		all = append(all, key)
	}
	limits := map[string]int{}
	for _, key := range all {
		var admit []string
		err := e.limits.cas(ctx, key, "workflow rate limit", func(old []byte) ([]byte, error) {
			now := e.cfg.Now()
			l := decodeLine(old)
			admit = nil
			if len(l.Holders) == 0 && len(l.Queue) == 0 {
				return removeEntry, nil
			}
			if len(l.Queue) > 0 && l.Name != "" {
				// A definition registered again with another limit
				// applies to those queued already, not only once the
				// next start writes it.
				if limit, err := e.registeredLimit(ctx, l.Name, limits); err != nil {
					return nil, err
				} else if limit > 0 {
					l.Limit = limit
				}
			}
			waiting, err := e.check(ctx, &l, now)
			if err != nil {
				return nil, err
			}
			admit = append(waiting, l.promote(now)...)
			next, err := l.encode()
			if err != nil || bytes.Equal(next, old) {
				return nil, err // unchanged: no write
			}
			return next, nil
		})
		if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			return err
		}
		e.admitLater(admit)
	}
	return nil
}

// leftLine reports whether w needs no place in its rate limit's line any
// more: it ended, or was removed without ending (a removal of a running
// workflow does not terminate it).
func leftLine(w *engine.Workflow) bool { return w.Terminal() || w.Removed }

// registeredLimit is the concurrentExecLimit of the latest registered
// definition called name, 0 when there is none or it sets none (the
// line's own limit stands: its queued workflows still wait for a place),
// looked up once per sweep.
func (e *Executor) registeredLimit(ctx context.Context, name string, seen map[string]int) (int, error) {
	if limit, ok := seen[name]; ok || e.defs == nil {
		return limit, nil
	}
	def, err := e.defs.LookupWorkflowDef(ctx, name, nil)
	switch {
	case errors.Is(err, fault.ErrNotFound):
		def = &conductor.WorkflowDef{}
	case err != nil:
		return 0, fmt.Errorf("workflow rate limit of %s: %w", name, err)
	}
	seen[name] = engine.ConcurrentExecLimit(def)
	return seen[name], nil
}
