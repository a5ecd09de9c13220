// Package executions is the read model of workflow executions: each
// workflow's state folded from its events, plus the indexes the engine and
// the API query — tasks by id, deadlines by time (the timers), running
// workflows (recovery) and idempotency keys.
package executions

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/executor"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/projections"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// Name is the projection's name (its key space and checkpoint).
const Name = "executions"

// Key layout, inside the projection's key space.
const (
	prefixWorkflow    = "w/" // w/<wf token> → msgpack engine.Workflow without definition, input and tasks; beside it (see stateKey) those, and the tasks' statuses (statusKey)
	prefixTask        = "t/" // t/<task id> → the task's index in its workflow (uint32 BE, see taskKey), then the workflow id
	prefixDue         = "d/" // d/<ms BE><wf id> → ""
	prefixRunning     = "r/" // r/<wf id> → ""
	prefixIdempotency = "i/" // i/<name>\x00<key> → workflow id
	prefixCompaction  = "e/" // e/<end ms BE><wf id> → "": terminal, not compacted yet
	prefixLegacyList  = "k/" // k/<wf id> → end time (ms BE), secrets key id: the same, for removed workflows (whose state is gone) and as data dirs before e/ held it (without the key)
	prefixKeyHolder   = "x/" // x/<secrets key id> → workflow id
	prefixEnded       = "z/" // z/<end ms BE><wf id> → "": ended with effects besides its parent's news (engine.HasTerminalEffects)
	prefixRunningBy   = "q/" // q/<principal> → uint64 BE: how many of the workflows under r/ it created (0 once none: see addRunning)
	prefixKeyRunning  = "j/" // j/<name>\x00<len key uvarint><key><wf id> → "": the workflows under r/ started with an idempotency key
	prefixKeyKept     = "h/" // h/<name>\x00<len key uvarint><key><wf id> → "": every workflow started with an idempotency key, until removed without archive
	// g/ → Gauges (gaugesKey)
)

// layout is the read model's layout (projections.Layouter): 2 counts the
// running workflows of each principal (q/), which a read model written
// before lacks; 3 the entries of the indexes an operator watches (g/, see
// Gauges); 4 lists the running workflows of each idempotency key (j/); 5
// every workflow of each key, ended ones too (h/); 6 the index of each
// task in its workflow's list in its lookup (t/, see taskLookup); 7 the
// statuses of each workflow's tasks beside them (see statusKey); 8 the
// deadlines of the timeoutSeconds of tasks that waited before they could
// start, which count past that wait (engine.TaskDeadlines), from states
// that hold it (engine.Task.StartDelay): stored before, a task's state
// lacks it and its deadline would be indexed before the time a tick
// times it out; 9 the cacheConfig keys of the definitions a task
// completed under that an upgrade replaced (engine.Task.CacheKeys), which
// the executor's purges of a cached output found secret start from, and
// the ended workflows with no secrets key that mask a cached output on
// the compaction list (engine.Workflow.AwaitsCompaction), and whether a
// compaction shredded nothing (engine.Workflow.ShreddedNothing, without
// which a task's late log line is refused): stored before, a state lacks
// the keys and that mark, and the list those workflows; 10 which tasks
// had completed when an upgrade replaced their workflow's definition by
// one that does not parse (engine.Task.KeysKept), whose outputs are
// purged by key alone: stored before, a state lacks the mark, and the
// compaction of such a workflow reads every cache entry for them.
const layout = 10

// The legacy compaction list shares its prefix with the task statistics
// index (prefixTaskStat, "k/<len>…"), whose length byte sorts below every
// workflow id (UUIDs: a hex digit first). A scan of the list is bounded to
// the ids' range, or it would step over every task ever scheduled.
var (
	legacyListFirst = []byte(prefixLegacyList + "0")
	legacyListEnd   = []byte(prefixLegacyList + "\x7f")
)

// Projection folds the FV_WF stream. It keeps the states it folded last in
// memory, so that a workflow's next record does not decode its state from
// Pebble again.
type Projection struct {
	recent *recentStates
	// touched lists the workflows (tokens) written since the last commit;
	// only the runner's goroutine uses it.
	touched map[string]struct{}
	hub     *hub
	legacy  legacyState
	// scratch holds the documents being written: the batch copies them.
	scratch []byte
	// delta is what the record being applied changed of the Gauges,
	// pending what the batch's records applied so far did (Flush), and
	// counted whether any of them changed a count.
	delta, pending Gauges
	counted        bool
	// timerChange is the record's change of its workflow's timers.
	timerChange timerChange
	// changed is the buffer of a record's taskMatch.
	changed []int
	// statuses are the chunks of task statuses a record changes.
	statuses statusChunks
	// forgetter is told of the workflows records leave ended or removed,
	// shredder of those they compact or remove.
	forgetter Forgetter
	shredder  Shredder
}

// Forgetter lets go of what the process holds in memory of a workflow's
// secrets (guard.Guard: what its redaction looks for).
type Forgetter interface {
	Forget(wfID string)
}

// ForgetEnded has the projection tell f of each workflow a record leaves
// ended or removed, whichever engine recorded it: every engine folds
// every record, where only the engine that decided an end knew of it,
// and the plaintext another engine gathered (a hand-off it prepared)
// stayed in its memory.
func (p *Projection) ForgetEnded(f Forgetter) { p.forgetter = f }

// Shredder refuses the secrets key of a workflow from now on
// (guard.Shredded): secretsKey is the one its state names, or "" for the
// one named after the workflow.
type Shredder interface {
	Shred(wfID, secretsKey string)
}

// ShredCompacted has the projection tell s of each workflow a record
// compacts, whichever engine recorded it: the engine that compacts a
// workflow destroys its secrets key in the bucket and in its own memory,
// and another engine that had read the key (a hand-off it prepared, a
// result it protected) kept it and went on opening the workflow's
// _secrets. The record comes before the key's erasure. A workflow removed
// without an archive is told of at its compaction too, not at its
// removal, which would refuse its key before the compaction delay ran
// out (a value it found secret just before, still to be looked for in
// its children): its state is gone by then, and the compaction list's
// entry names the key.
func (p *Projection) ShredCompacted(s Shredder) { p.shredder = s }

// NewProjection returns the executions projection.
func NewProjection() *Projection {
	return &Projection{recent: newRecentStates(16384), touched: map[string]struct{}{}, hub: newHub()}
}

// Name implements projections.Projection.
func (*Projection) Name() string { return Name }

// Layout implements projections.Layouter.
func (*Projection) Layout() int { return layout }

// Reset forgets the in-memory states: the runner calls it before resuming
// from its checkpoint, after which they may be ahead of the store.
func (p *Projection) Reset() {
	p.recent.clear()
	clear(p.touched)
	p.legacy = legacyUnknown
	p.pending, p.counted = Gauges{}, false
}

// Apply implements projections.Projection.
func (p *Projection) Apply(b *projections.Batch, rec eventlog.Record) (err error) {
	token, ok := strings.CutPrefix(rec.Subject, "fv.wf.")
	if !ok {
		return fmt.Errorf("subject %s: %w", rec.Subject, projections.ErrPoison)
	}
	p.delta = Gauges{}
	defer func() {
		if err == nil && p.delta != (Gauges{}) {
			p.pending, p.counted = p.pending.add(p.delta), true
		}
	}()
	events := make([]schemas.Event, 0, len(rec.Events))
	for _, env := range rec.Events {
		ev, err := schemas.Default.Decode(env)
		if err != nil {
			return err
		}
		events = append(events, ev)
	}
	r, ok := p.recent.get(token)
	if !ok {
		r = &recent{}
		if !startsSubject(events) {
			if r, err = load(b, token); err != nil {
				return err
			}
		}
	}
	w := r.w
	if w == nil && schemas.OnlyCompaction(events) {
		return p.compactedAfterRemoval(b, token)
	}
	defer func() {
		if err != nil || w.Removed && !w.Archived {
			p.recent.drop(token) // it may be half-folded, or is gone
		} else {
			r.w = w
			p.recent.put(token, r)
		}
	}()
	prev := snapshot(w, r)
	if !r.timers.known && w != nil {
		// What the index holds for the state loaded.
		p.timerChange.buf = r.timers.recount(w, p.timerChange.buf)
	}
	if w != nil && len(w.Tasks) >= indexFrom {
		// Only this goroutine folds it, record after record (see
		// recentStates): each event's task is found through an index
		// rather than a scan, which meets a branch in the middle of a
		// fork after half the list.
		w.OwnIndex()
	}
	if w, err = foldRecord(w, events); err != nil {
		return fmt.Errorf("%w: %v", projections.ErrPoison, err)
	}
	w.Seq = rec.Seq
	p.touched[token] = struct{}{}
	if p.forgetter != nil && (w.Terminal() || w.Removed) {
		p.forgetter.Forget(w.ID)
	}
	if p.shredder != nil && w.Compacted && slices.ContainsFunc(events, isCompaction) {
		p.shredder.Shred(w.ID, w.SecretsKey)
	}
	err = p.store(b, token, w, prev, r)
	if cap(p.scratch) > maxScratch {
		p.scratch = nil // one large workflow does not pin its buffer
	}
	return err
}

func isCompaction(ev schemas.Event) bool {
	_, ok := ev.(*schemas.WorkflowCompacted)
	return ok
}

// indexFrom is the task count from which a state the read model keeps
// folds through an index of its tasks (engine.Workflow.OwnIndex). Below
// it a scan costs little, less than an index's two maps would weigh on
// each of the thousands of recent states.
var indexFrom = 512

// maxScratch bounds the buffer kept for the next record's documents.
const maxScratch = 1 << 20

// startsSubject reports whether a record starts its workflow, so that no
// state can exist to load: the executor appends a start only to an empty
// subject (expected sequence 0). The lookup it saves misses every level
// of the store, for every workflow.
func startsSubject(events []schemas.Event) bool {
	if len(events) == 0 {
		return false
	}
	_, ok := events[0].(*schemas.WorkflowStarted)
	return ok
}

// load reads a workflow's state from the batch, and what it found stored
// beside its head: nothing of what an earlier layout kept inside it.
func load(b *projections.Batch, token string) (*recent, error) {
	w, inside, err := readState(b.ScanRange, token)
	if w == nil || err != nil {
		return &recent{}, err
	}
	r := &recent{w: w, inputStored: !inside.input}
	if !inside.def {
		r.def = w.DefJSON
	}
	if r.inputStored {
		r.input = w.Input
	}
	if !inside.tasks {
		r.tasks = slices.Clone(w.Tasks)
		for _, i := range inside.entries {
			r.tasks[i] = nil // as if never written: its entries go apart
		}
	}
	return r, nil
}

// A workflow's state is stored as its head, its definition, its input and
// each of its tasks (with a DO_WHILE's iteration entries beside it, see
// entryKey), then its tasks' statuses (statusKey), under keys that start
// with the head's. Tokens hold no control characters, so no other
// workflow's key falls between them: one scan reads them all from one
// snapshot, in this order.
func stateKey(token string) []byte { return []byte(prefixWorkflow + token) }

func defKey(token string) []byte { return []byte(prefixWorkflow + token + "\x00def") }

func inputKey(token string) []byte { return []byte(prefixWorkflow + token + "\x00in") }

// taskKey is the key of the i-th task: big-endian, so tasks scan in order.
func taskKey(token string, i int) []byte {
	return binary.BigEndian.AppendUint32([]byte(prefixWorkflow+token+"\x00t"), uint32(i))
}

// taskLookup is the value of a task's lookup (t/): its index in the list
// of workflow wfID, where its key is (taskKey), then wfID. A task read by
// id reads that key and its workflow's head, not every task before it.
func taskLookup(wfID string, i int) []byte {
	return append(binary.BigEndian.AppendUint32(nil, uint32(i)), wfID...)
}

// parseTaskLookup reads a value taskLookup made.
func parseTaskLookup(v []byte) (wfID string, i int, err error) {
	if len(v) < 4 {
		return "", 0, fmt.Errorf("task lookup of %d bytes", len(v))
	}
	return string(v[4:]), int(binary.BigEndian.Uint32(v)), nil
}

// storeLookups writes the lookup of each task of w that is new or moved
// in the list since before. A record appends tasks, and replaces them in
// their places, but for those that drop tasks (a restart, a rerun, a loop's
// iterations past keepLastN): the tasks after those move up, and their
// keys are written again anyway (storeState).
func storeLookups(b *projections.Batch, w *engine.Workflow, before []*engine.Task, match taskMatch) error {
	set := func(i int) error { return b.Set([]byte(prefixTask+w.Tasks[i].ID), taskLookup(w.ID, i)) }
	if match.aligned {
		for _, i := range match.changed {
			if i >= len(before) {
				if err := set(i); err != nil {
					return err
				}
			}
		}
		return nil
	}
	for i, t := range w.Tasks {
		if i >= len(before) || before[i].ID != t.ID {
			if err := set(i); err != nil {
				return err
			}
		}
	}
	return nil
}

// inside says which parts of a state an earlier layout kept in its head,
// and which tasks it stored with the output entries now stored apart.
type inside struct {
	def, input, tasks bool
	entries           []int
}

// readState reads a workflow's state with scan, or nil if the workflow is
// not stored.
func readState(scan func(lower, upper []byte, fn func(key, value []byte) bool) error, token string) (w *engine.Workflow, in inside, err error) {
	return readParts(scan, token, true)
}

// readParts is readState; without withTasks it reads the head, the
// definition and the input alone, leaving Tasks nil: the tasks' keys sort
// after those (taskKey), so the scan ends before the first of them.
func readParts(scan func(lower, upper []byte, fn func(key, value []byte) bool) error, token string, withTasks bool) (w *engine.Workflow, in inside, err error) {
	head := stateKey(token)
	def, input, tasks := defKey(token), inputKey(token), taskKey(token, 0)[:len(head)+2]
	upper := endOfTasks(token)
	if !withTasks {
		upper = tasks
	}
	var decodeErr error
	err = scan(head, upper, func(key, value []byte) bool {
		switch {
		case bytes.Equal(key, head):
			w = new(engine.Workflow)
			if decodeErr = msgpack.Unmarshal(value, w); decodeErr != nil {
				return false
			}
			in = inside{def: len(w.DefJSON) > 0, input: w.Input != nil, tasks: w.Tasks != nil}
		case w == nil:
			// Parts without a head: not a stored workflow.
		case bytes.Equal(key, def) && !in.def:
			w.DefJSON = bytes.Clone(value)
		case bytes.Equal(key, input) && !in.input:
			decodeErr = msgpack.Unmarshal(value, &w.Input)
			return decodeErr == nil
		case bytes.HasPrefix(key, tasks) && !in.tasks && len(key) > len(tasks)+4:
			// An entry of the output of the task read last.
			if len(w.Tasks) == 0 || binary.BigEndian.Uint32(key[len(tasks):]) != uint32(len(w.Tasks)-1) {
				decodeErr = fmt.Errorf("output entry of task %x stored after task %d", key[len(tasks):len(tasks)+4], len(w.Tasks)-1)
				return false
			}
			decodeErr = addEntry(w.Tasks[len(w.Tasks)-1], key[len(tasks)+4:], value)
			return decodeErr == nil
		case bytes.HasPrefix(key, tasks) && !in.tasks:
			if len(key) != len(tasks)+4 || binary.BigEndian.Uint32(key[len(tasks):]) != uint32(len(w.Tasks)) {
				decodeErr = fmt.Errorf("task %d stored under %x", len(w.Tasks), key[len(tasks):])
				return false
			}
			var t *engine.Task
			if t, decodeErr = decodeTask(value); decodeErr != nil {
				return false
			}
			if holdsApart(t) {
				in.entries = append(in.entries, len(w.Tasks))
			}
			w.Tasks = append(w.Tasks, t)
		}
		return true
	})
	if err == nil && decodeErr != nil {
		err = fmt.Errorf("stored workflow %s: %w", token, decodeErr)
	}
	if err != nil {
		return nil, inside{}, err
	}
	if w != nil && !withTasks {
		// An earlier layout kept the tasks in the head: a head read
		// shows none whatever the layout.
		w.Tasks = nil
	}
	return w, in, nil
}

func decodeTask(value []byte) (*engine.Task, error) {
	t := new(engine.Task)
	if err := msgpack.Unmarshal(value, t); err != nil {
		return nil, err
	}
	return t, nil
}

// addEntry adds an output entry stored apart (entryKey) to t's output.
func addEntry(t *engine.Task, name, value []byte) error {
	var v any
	if err := msgpack.Unmarshal(value, &v); err != nil {
		return err
	}
	if t.Output == nil {
		t.Output = map[string]any{}
	}
	t.Output[string(name)] = v
	return nil
}

// readTaskAt reads the i-th task of a workflow with scan, with the output
// entries stored apart beside it, or nil if there is none.
func readTaskAt(scan func(lower, upper []byte, fn func(key, value []byte) bool) error, token string, i int) (t *engine.Task, err error) {
	key := taskKey(token, i)
	var decodeErr error
	err = scan(key, taskKey(token, i+1), func(k, value []byte) bool {
		switch {
		case len(k) == len(key):
			t, decodeErr = decodeTask(value)
		case t == nil:
			decodeErr = fmt.Errorf("output entry %q of task %d stored without it", k[len(key):], i)
		default:
			decodeErr = addEntry(t, k[len(key):], value)
		}
		return decodeErr == nil
	})
	if err == nil && decodeErr != nil {
		err = fmt.Errorf("stored workflow %s: %w", token, decodeErr)
	}
	if err != nil {
		return nil, err
	}
	return t, nil
}

// deleteTask deletes the i-th task, t as stored (nil: stored whole).
func (p *Projection) deleteTask(b *projections.Batch, token string, i int, t *engine.Task) error {
	if err := b.Delete(taskKey(token, i)); err != nil {
		return err
	}
	if t == nil {
		return nil
	}
	return p.storeEntries(b, token, i, t, nil)
}

// store writes w, folded from prev, and its indexes; r is what the
// projection remembers of the workflow between records.
func (p *Projection) store(b *projections.Batch, token string, w *engine.Workflow, prev before, r *recent) (err error) {
	if err := storeEnded(b, w, prev); err != nil {
		return err
	}
	if err := p.storeCompaction(b, w, prev); err != nil {
		return err
	}
	if w.Removed && !w.Archived {
		return p.removeAll(b, token, w, prev, r)
	}
	match := matchTasks(prev.tasks, w.Tasks, p.changed)
	p.changed = match.changed
	if err := p.storeState(b, token, w, r, match); err != nil {
		return err
	}
	if w.Removed && !prev.removed {
		// An archived workflow's tasks are no longer found by id.
		for _, t := range w.Tasks {
			if err := b.Delete([]byte(prefixTask + t.ID)); err != nil {
				return err
			}
		}
	} else if err := storeLookups(b, w, prev.tasks, match); err != nil {
		return err
	}
	if running := !w.Terminal(); running != prev.running || !prev.exists {
		if err := listed(b, []byte(prefixRunning+w.ID), running); err != nil {
			return err
		}
		p.delta.Running += b2i(running) - b2i(prev.running)
		// Every one that runs, not only the key's last: a restart or retry
		// runs an older one again.
		if w.IdempotencyKey != "" {
			if err := listed(b, keyRunningKey(w.Name, w.IdempotencyKey, w.ID), running); err != nil {
				return err
			}
		}
	}
	if err := countRunning(b, prev, w); err != nil {
		return err
	}
	// The key names the workflow last started with it: a later record of
	// an older one (a log line, its compaction) must not take it back.
	// The list keeps the older ones, which FAIL still refuses a start for
	// once the last was removed.
	if w.IdempotencyKey != "" && !prev.exists {
		if err := b.Set(idempotencyKey(w.Name, w.IdempotencyKey), []byte(w.ID)); err != nil {
			return err
		}
		if err := b.Set(keyListKey(prefixKeyKept, w.Name, w.IdempotencyKey, w.ID), nil); err != nil {
			return err
		}
	}
	if err := p.storeTimers(b, w, match, &r.timers); err != nil {
		return err
	}
	if err := p.storeIndexes(b, token, w, prev, match); err != nil {
		return err
	}
	// Last: prev's tasks may be r's.
	if r.exact && match.aligned {
		for _, i := range match.changed {
			if i < len(r.tasks) {
				r.tasks[i] = w.Tasks[i]
			} else {
				r.tasks = append(r.tasks, w.Tasks[i])
			}
		}
	} else {
		r.tasks = append(r.tasks[:0], w.Tasks...)
		r.exact = true
	}
	return nil
}

// storeState writes w's head, and its definition, input and those of its
// tasks that changed since r's: Apply replaces what it changes (a map, a
// task), so an input that is the same map and a task that is the same
// object at the same index are as stored. match pairs w's tasks with
// those before the record.
func (p *Projection) storeState(b *projections.Batch, token string, w *engine.Workflow, r *recent, match taskMatch) (err error) {
	p.statuses = p.statuses[:0]
	if !bytes.Equal(w.DefJSON, r.def) {
		if err := b.Set(defKey(token), w.DefJSON); err != nil {
			return err
		}
		r.def = w.DefJSON
	}
	if !r.inputStored || !engine.SameMap(w.Input, r.input) {
		if p.scratch, err = schemas.AppendSorted(p.scratch[:0], w.Input); err != nil {
			return err
		}
		if err := b.Set(inputKey(token), p.scratch); err != nil {
			return err
		}
		r.input, r.inputStored = w.Input, true
	}
	write := func(i int) error {
		t := w.Tasks[i]
		var was *engine.Task
		if i < len(r.tasks) {
			was = r.tasks[i]
		}
		if was == t {
			return nil
		}
		if p.scratch, err = schemas.AppendSorted(p.scratch[:0], withoutApart(t)); err != nil {
			return err
		}
		if err := b.Set(taskKey(token, i), p.scratch); err != nil {
			return err
		}
		if was == nil || was.Status != t.Status {
			p.statuses.touch(i)
		}
		return p.storeEntries(b, token, i, was, t)
	}
	if r.exact && match.aligned {
		// r's tasks are those before the record, in their places: the
		// changed are those that differ.
		for _, i := range match.changed {
			if err := write(i); err != nil {
				return err
			}
		}
	} else {
		for i := range w.Tasks {
			if err := write(i); err != nil {
				return err
			}
		}
	}
	// Restart and rerun drop tasks.
	for i := len(w.Tasks); i < len(r.tasks); i++ {
		if err := p.deleteTask(b, token, i, r.tasks[i]); err != nil {
			return err
		}
	}
	if err := p.storeStatuses(b, token, w, len(r.tasks), p.statuses); err != nil {
		return err
	}
	if p.scratch, err = engine.AppendStateHead(p.scratch[:0], w); err != nil {
		return err
	}
	return b.Set(stateKey(token), p.scratch)
}

func dueKey(at int64, wfID string) []byte {
	k := binary.BigEndian.AppendUint64([]byte(prefixDue), uint64(at))
	return append(k, wfID...)
}

func idempotencyKey(name, key string) []byte {
	return []byte(prefixIdempotency + name + "\x00" + key)
}

// listed sets key, an entry of a list, or deletes it.
func listed(b *projections.Batch, key []byte, in bool) error {
	if in {
		return b.Set(key, nil)
	}
	return b.Delete(key)
}

// keyListPrefix is where a list of the workflows of an idempotency key
// (prefixKeyRunning, prefixKeyKept) holds them: the key's length first, so
// that no key's entries fall under another's that it begins with.
func keyListPrefix(list, name, key string) []byte {
	k := binary.AppendUvarint([]byte(list+name+"\x00"), uint64(len(key)))
	return append(k, key...)
}

func keyListKey(list, name, key, wfID string) []byte {
	return append(keyListPrefix(list, name, key), wfID...)
}

func keyRunningKey(name, key, wfID string) []byte {
	return keyListKey(prefixKeyRunning, name, key, wfID)
}

// Reader queries the executions read model.
type Reader struct {
	r     projections.Reader
	store *projections.Store
	// wholeTasks has a task search read every task of the workflows it
	// finds tasks of, as it did before tasks were read alone: the
	// reference the tests compare its answers with.
	wholeTasks bool
}

// NewReader reads the executions projection of store.
func NewReader(store *projections.Store) *Reader { return &Reader{r: store.Reader(Name), store: store} }

var _ executor.Schedule = (*Reader)(nil)
var _ executor.Idempotency = (*Reader)(nil)
var _ executor.KeyRunners = (*Reader)(nil)
var _ executor.KeyHolders = (*Reader)(nil)
var _ executor.RunningCounter = (*Reader)(nil)

// Workflow returns a workflow's state, or an error wrapping
// fault.ErrNotFound.
func (r *Reader) Workflow(_ context.Context, id string) (*engine.Workflow, error) {
	w, _, _, err := r.workflowParts(id, true)
	return w, err
}

// WorkflowHead returns a workflow's state without its tasks (Tasks nil),
// or an error wrapping fault.ErrNotFound: all that a view without tasks
// shows (GET /api/workflow/{id}?includeTasks=false, its status) or an
// access check reads. It reads three keys where Workflow reads every
// task, so that a client polling a workflow of thousands of tasks until
// it ends costs what polling one of a few does, not the workflow's size at
// every poll.
func (r *Reader) WorkflowHead(_ context.Context, id string) (*engine.Workflow, error) {
	w, _, _, err := r.workflowParts(id, false)
	return w, err
}

// countingScan returns a scan of r's keys in order that adds the size of
// what it reads to *size and the count of its keys to *keys.
func countingScan(r projections.Reader, size, keys *int) func(lower, upper []byte, fn func(key, value []byte) bool) error {
	return func(lower, upper []byte, fn func(key, value []byte) bool) error {
		return r.ScanRange(lower, upper, false, func(key, value []byte) bool {
			*size += len(key) + len(value)
			*keys++
			return fn(key, value)
		})
	}
}

// workflowParts reads a workflow (without its tasks unless withTasks),
// with the size of what it read and its count of keys.
func (r *Reader) workflowParts(id string, withTasks bool) (w *engine.Workflow, size, keys int, err error) {
	if w, _, err = readParts(countingScan(r.r, &size, &keys), eventlog.Token(id), withTasks); err != nil {
		return nil, 0, 0, err
	}
	if w == nil {
		return nil, 0, 0, fault.NotFound("workflow %s not found", id)
	}
	return w, size, keys, nil
}

// TaskWorkflow returns the id of the workflow a task belongs to.
func (r *Reader) TaskWorkflow(_ context.Context, taskID string) (string, error) {
	wfID, _, err := taskLookupIn(r.r, taskID)
	return wfID, err
}

func taskLookupIn(r projections.Reader, taskID string) (wfID string, i int, err error) {
	v, err := r.Get([]byte(prefixTask + taskID))
	if errors.Is(err, projections.ErrNotFound) {
		return "", 0, fault.NotFound("task %s not found", taskID)
	}
	if err != nil {
		return "", 0, err
	}
	if wfID, i, err = parseTaskLookup(v); err != nil {
		return "", 0, fmt.Errorf("task %s: %w", taskID, err)
	}
	return wfID, i, nil
}

// WorkflowTask returns task taskID of workflow wfID, and the workflow
// without its tasks (Tasks nil, as WorkflowHead reads it), or an error
// wrapping fault.ErrNotFound: the workflow's ("workflow %s not found") or
// the task's ("task %s not found"), as Workflow and a look for the task in
// its list answer. It reads the head's three keys and the task's (with
// the output entries stored beside it) where Workflow reads every task,
// so that a worker's result, a task's log or a view of one task costs
// what it does in a workflow of a few tasks. Its reads are of one
// snapshot of the read model.
func (r *Reader) WorkflowTask(_ context.Context, wfID, taskID string) (*engine.Workflow, *engine.Task, error) {
	w, t, _, _, err := r.workflowTask(wfID, taskID)
	return w, t, err
}

// workflowTask is WorkflowTask, with the count of the workflow's keys it
// read, and whether it found the task where its lookup says (direct),
// without reading the workflow's list.
func (r *Reader) workflowTask(wfID, taskID string) (w *engine.Workflow, t *engine.Task, keys int, direct bool, err error) {
	at, _, release, err := r.store.ReaderAt(Name)
	if err != nil {
		return nil, nil, 0, false, err
	}
	defer release()
	scan := countingScan(at, new(int), &keys)
	token := eventlog.Token(wfID)
	w, in, err := readParts(scan, token, false)
	if err != nil {
		return nil, nil, keys, false, err
	}
	if w == nil {
		return nil, nil, keys, false, fault.NotFound("workflow %s not found", wfID)
	}
	listedIn, i, err := taskLookupIn(at, taskID)
	if err != nil && !errors.Is(err, fault.ErrNotFound) {
		return nil, nil, keys, false, err
	}
	if err == nil && listedIn == wfID && !in.tasks {
		if t, err = readTaskAt(scan, token, i); err != nil {
			return nil, nil, keys, false, err
		}
		if t != nil && t.ID == taskID {
			return w, t, keys, true, nil
		}
	}
	// Not where the lookup says (a task of another workflow, one the
	// workflow's reset dropped, a head of an earlier layout that holds
	// the tasks): the workflow's list answers, as it does for Workflow's
	// reader.
	whole, _, err := readParts(scan, token, true)
	if err != nil {
		return nil, nil, keys, false, err
	}
	if whole == nil {
		return nil, nil, keys, false, fault.NotFound("workflow %s not found", wfID)
	}
	if t = whole.TaskByID(taskID); t == nil {
		return nil, nil, keys, false, fault.NotFound("task %s not found", taskID)
	}
	whole.Tasks = nil
	return whole, t, keys, false, nil
}

// Due implements executor.Schedule.
func (r *Reader) Due(_ context.Context, now int64, after executor.Due, limit int) ([]executor.Due, error) {
	var out []executor.Due
	// The bound, not the callback, ends the scan: the index's deletions
	// of later deadlines (every task that completed in time) lie before
	// the first later entry, and an iterator without a bound steps over
	// each of them on every scan.
	upper := binary.BigEndian.AppendUint64([]byte(prefixDue), uint64(now)+1)
	lower := []byte(prefixDue)
	if after != (executor.Due{}) {
		lower = append(binary.BigEndian.AppendUint64(lower, uint64(after.At)), after.WorkflowID...)
		lower = append(lower, 0) // the first key after after's
	}
	err := r.r.ScanRange(lower, upper, false, func(key, _ []byte) bool {
		k := key[len(prefixDue):]
		if len(k) < 8 {
			return true
		}
		out = append(out, executor.Due{At: int64(binary.BigEndian.Uint64(k[:8])), WorkflowID: string(k[8:])})
		return len(out) < limit
	})
	return out, err
}

// ScheduledBefore implements executor.Schedule, from the task status
// index.
func (r *Reader) ScheduledBefore(_ context.Context, before int64, fn func(wfID string) bool) error {
	lower := valuePrefix(prefixTaskStat, conductor.TaskScheduled)
	upper := binary.BigEndian.AppendUint64(slices.Clone(lower), uint64(max(before, 0))+1)
	return r.r.ScanRange(lower, upper, false, func(_, wfID []byte) bool { return fn(string(wfID)) })
}

// RunningOf returns how many workflows created by principal have not
// finished, and the stream sequence the read model had committed when
// it was asked: the count holds every record up to it, and perhaps
// some after.
func (r *Reader) RunningOf(_ context.Context, principal string) (count int, asOf uint64, err error) {
	// The count and the checkpoint of one commit: read apart, a commit
	// between them made the count hold starts after the checkpoint, which
	// the quota counts again as its own not folded yet, and refused a
	// start a place early.
	at, asOf, release, err := r.store.ReaderAt(Name)
	if err != nil {
		return 0, 0, err
	}
	defer release()
	v, err := at.Get(runningByKey(principal))
	if errors.Is(err, projections.ErrNotFound) {
		return 0, asOf, nil
	}
	if err != nil {
		return 0, 0, fmt.Errorf("running workflows of a principal: %w", err)
	}
	if len(v) != 8 {
		return 0, 0, fmt.Errorf("running workflows of a principal: a count of %d bytes", len(v))
	}
	return int(min(binary.BigEndian.Uint64(v), math.MaxInt32)), asOf, nil
}

// Running calls fn with the id of every workflow that has not finished.
func (r *Reader) Running(_ context.Context, fn func(string) bool) error {
	return r.r.Scan([]byte(prefixRunning), func(key, _ []byte) bool {
		return fn(string(key[len(prefixRunning):]))
	})
}

// LookupIdempotencyKey implements executor.Idempotency.
func (r *Reader) LookupIdempotencyKey(ctx context.Context, name, key string) (string, string, bool, error) {
	v, err := r.r.Get(idempotencyKey(name, key))
	if errors.Is(err, projections.ErrNotFound) {
		return "", "", false, nil
	}
	if err != nil {
		return "", "", false, err
	}
	w, err := r.Workflow(ctx, string(v))
	if errors.Is(err, fault.ErrNotFound) {
		// Removed: no start to return or wait for, but the id the next
		// one derives its own from.
		return string(v), "", false, nil
	}
	if err != nil {
		return "", "", false, err
	}
	status := w.Status
	if status == "" {
		status = conductor.WorkflowRunning
	}
	return w.ID, status, true, nil
}

// RunningWithIdempotencyKey implements executor.KeyRunners.
func (r *Reader) RunningWithIdempotencyKey(_ context.Context, name, key string, fn func(wfID, status string) bool) error {
	return r.eachWithKey(prefixKeyRunning, name, key, func(s *Summary) bool { return fn(s.ID, s.Status) })
}

// WithIdempotencyKey implements executor.KeyHolders.
func (r *Reader) WithIdempotencyKey(_ context.Context, name, key string, fn func(wfID, status string, startTime int64) bool) error {
	return r.eachWithKey(prefixKeyKept, name, key, func(s *Summary) bool { return fn(s.ID, s.Status, s.StartTime) })
}

// eachWithKey calls fn with the summary of each workflow of key that list
// holds (its status never empty) until fn returns false.
func (r *Reader) eachWithKey(list, name, key string, fn func(*Summary) bool) error {
	prefix := keyListPrefix(list, name, key)
	var err error
	scanErr := r.r.Scan(prefix, func(k, _ []byte) bool {
		var s *Summary
		if s, err = r.summary(string(k[len(prefix):])); err != nil {
			return false
		}
		s.Status = cmp.Or(s.Status, conductor.WorkflowRunning)
		return fn(s)
	})
	return cmp.Or(scanErr, err)
}

// recent is a state the projection folded, and what the keys beside its
// head hold: its definition, input and tasks as last written (nil, false:
// none written; a nil task: one stored with the output entries now stored
// apart inside it). Most records change one task and leave the rest as
// they are.
type recent struct {
	w           *engine.Workflow
	def         []byte
	input       map[string]any
	inputStored bool
	tasks       []*engine.Task
	// exact: tasks are the state's own list, as store leaves it (load's
	// may mark tasks nil), so that the next record's snapshot shares it
	// instead of copying it.
	exact bool
	// timers are w's deadlines as the index holds them.
	timers timers
}

// recentStates is a bounded map of recently folded states. Only the
// runner's goroutine uses it.
type recentStates struct {
	max int
	m   map[string]*recent
}

func newRecentStates(max int) *recentStates {
	return &recentStates{max: max, m: make(map[string]*recent)}
}

func (r *recentStates) get(token string) (*recent, bool) {
	s, ok := r.m[token]
	return s, ok
}

func (r *recentStates) put(token string, s *recent) {
	if w := s.w; w.Terminal() && !w.AwaitsCompaction() {
		// Rarely another record (a retry, a removal): not worth the heap
		// every collection marks.
		delete(r.m, token)
		return
	}
	if _, ok := r.m[token]; !ok && len(r.m) >= r.max {
		// The ended workflows wait for their compaction record, the
		// others for their next step: forget the first, then everything
		// if that is not enough.
		for k, old := range r.m {
			if old.w.Terminal() {
				delete(r.m, k)
			}
		}
		if len(r.m) >= r.max {
			clear(r.m)
		}
	}
	r.m[token] = s
}

func (r *recentStates) drop(token string) { delete(r.m, token) }

func (r *recentStates) clear() { clear(r.m) }

// storeCompaction keeps the list of ended workflows not compacted yet
// (engine.Workflow.AwaitsCompaction), oldest end first, so that the
// compactor reads only the entries that are due; removed workflows stay on
// it, since their events stay in the log. Workflows that never sealed a
// secret have no secrets key and are left out, unless they mask a cached
// output that their compaction purges: compacting the others would cost an
// append for nothing.
//
// It also keeps which workflow each recorded secrets key belongs to, for
// the compactor's sweep after a crash (see KeyHolder).
func (p *Projection) storeCompaction(b *projections.Batch, w *engine.Workflow, prev before) error {
	if w.SecretsKey != "" && w.SecretsKey != prev.secretsKey {
		if err := b.Set([]byte(prefixKeyHolder+w.SecretsKey), []byte(w.ID)); err != nil {
			return err
		}
	}
	awaits := w.AwaitsCompaction()
	if prev.awaitsCompaction && (!awaits || prev.endTime != w.EndTime) {
		if err := b.Delete(compactionKey(prev.endTime, w.ID)); err != nil {
			return err
		}
		// A data dir written before the time-ordered list may hold the
		// workflow in the old one: on one list or the other, it leaves
		// the backlog once.
		if _, err := p.unlistLegacy(b, w.ID); err != nil {
			return err
		}
		p.delta.Compaction--
	}
	if awaits && (!prev.awaitsCompaction || prev.endTime != w.EndTime) {
		p.delta.Compaction++
		return b.Set(compactionKey(w.EndTime, w.ID), nil)
	}
	return nil
}

// storeEnded keeps the list of ended workflows whose end has effects
// recovery performs again (see EndedWithEffects). A workflow removed
// without archive leaves it with its other documents, here rather than
// in removeAll, which sees only what was listed before the record: one
// record may end and remove a workflow (a terminate-remove).
func storeEnded(b *projections.Batch, w *engine.Workflow, prev before) error {
	ended := engine.HasTerminalEffects(w) && (!w.Removed || w.Archived)
	if prev.endedWithEffects && (!ended || prev.endTime != w.EndTime) {
		if err := b.Delete(endedKey(prev.endTime, w.ID)); err != nil {
			return err
		}
	}
	if ended && (!prev.endedWithEffects || prev.endTime != w.EndTime) {
		if err := pruneEnded(b, w.EndTime-endedKept.Milliseconds()); err != nil {
			return err
		}
		return b.Set(endedKey(w.EndTime, w.ID), nil)
	}
	return nil
}

// endedKept is how long the list keeps a workflow after a later one ended:
// well past the executor's lookback (10 minutes before the log's last
// record), so that nothing recovery might look for is gone.
const endedKept = time.Hour

// pruneEnded deletes the entries of workflows that ended before the given
// time (Unix ms). It runs as a workflow joins the list, so that the list
// holds an hour's ends rather than every end ever, and a rebuild, which
// folds the same records in the same order, prunes the same entries.
func pruneEnded(b *projections.Batch, before int64) error {
	return b.DeleteRange([]byte(prefixEnded), endedKey(max(before, 0), ""))
}

func endedKey(endTime int64, wfID string) []byte {
	return append(binary.BigEndian.AppendUint64([]byte(prefixEnded), uint64(endTime)), wfID...)
}

// EndedWithEffects calls fn with each workflow that ended at or after
// since (Unix ms) with effects besides its parent's news, until fn
// returns false.
func (r *Reader) EndedWithEffects(_ context.Context, since int64, fn func(wfID string) bool) error {
	from := binary.BigEndian.AppendUint64([]byte(prefixEnded), uint64(max(since, 0)))
	to := binary.BigEndian.AppendUint64([]byte(prefixEnded), math.MaxUint64)
	return r.r.ScanRange(from, to, false, func(key, _ []byte) bool {
		return fn(string(key[len(prefixEnded)+8:]))
	})
}

// listRemoved moves a removed workflow that awaits compaction to the list
// keyed by id: its state goes, its events stay, so its key must still be
// destroyed, and the compaction event finds the entry without the state.
func (p *Projection) listRemoved(b *projections.Batch, w *engine.Workflow) error {
	if !w.AwaitsCompaction() {
		return nil
	}
	if err := b.Delete(compactionKey(w.EndTime, w.ID)); err != nil {
		return err
	}
	p.legacy = legacyMayHold
	// The key's id, for the shredder once the compaction is recorded.
	return b.Set([]byte(prefixLegacyList+w.ID), append(binary.BigEndian.AppendUint64(nil, uint64(w.EndTime)), w.SecretsKey...))
}

// compactedAfterRemoval takes a removed workflow off the compaction list.
func (p *Projection) compactedAfterRemoval(b *projections.Batch, token string) error {
	id, err := eventlog.Untoken(token)
	if err != nil {
		return fmt.Errorf("subject token %s: %w", token, projections.ErrPoison)
	}
	entry, err := p.unlistLegacy(b, id)
	if entry != nil {
		p.delta.Compaction--
	}
	if err == nil && entry != nil && p.shredder != nil {
		p.shredder.Shred(id, string(entry[min(len(entry), 8):]))
	}
	return err
}

// legacyState is what the projection knows of the id-keyed compaction
// list: a compaction looks its workflow up there only while the list may
// hold entries, since a read that misses searches every level of the
// store (a third of a compaction's cost in the read model otherwise).
type legacyState int

const (
	legacyUnknown legacyState = iota // look before the next lookup
	legacyEmpty                      // no entries: nothing to look up
	legacyMayHold                    // entries, or was not looked at since one was added
)

// unlistLegacy takes a workflow off the id-keyed compaction list, and
// reports whether it was on it. It looks the entry up first: a tombstone
// for every compaction would make each scan of that list step over them.
func (p *Projection) unlistLegacy(b *projections.Batch, wfID string) (entry []byte, err error) {
	if p.legacy == legacyUnknown {
		p.legacy = legacyEmpty
		err := b.ScanRange(legacyListFirst, legacyListEnd, func(_, _ []byte) bool {
			p.legacy = legacyMayHold
			return false
		})
		if err != nil {
			p.legacy = legacyUnknown
			return nil, err
		}
	}
	if p.legacy == legacyEmpty {
		return nil, nil
	}
	key := []byte(prefixLegacyList + wfID)
	entry, err = b.Get(key)
	if errors.Is(err, projections.ErrNotFound) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	p.legacy = legacyUnknown // it may have been the last one
	return entry, b.Delete(key)
}

func compactionKey(endTime int64, wfID string) []byte {
	k := binary.BigEndian.AppendUint64([]byte(prefixCompaction), uint64(endTime))
	return append(k, wfID...)
}

// KeyHolder returns the id of the workflow whose log recorded secrets key
// keyID; ok is false for a key no workflow recorded.
func (r *Reader) KeyHolder(_ context.Context, keyID string) (wfID string, ok bool, err error) {
	v, err := r.r.Get([]byte(prefixKeyHolder + keyID))
	if errors.Is(err, projections.ErrNotFound) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	return string(v), true, nil
}

// RemovedAwaitingCompaction reports whether workflow wfID, removed
// without an archive, is still on the compaction list.
func (r *Reader) RemovedAwaitingCompaction(_ context.Context, wfID string) (bool, error) {
	_, err := r.r.Get([]byte(prefixLegacyList + wfID))
	if errors.Is(err, projections.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// Ended is a workflow waiting for compaction.
type Ended struct {
	WorkflowID string
	EndTime    int64
	// ByID says it is on the list keyed by id (removed workflows, and
	// those a data dir written before the time-ordered list holds), which
	// is listed first: a listing that goes on after it knows which list
	// to go on in.
	ByID bool
}

// AwaitingCompaction lists ended workflows not compacted yet that ended
// at or before endedBy (Unix ms), oldest first, at most limit of them,
// after after (one an earlier listing returned; the zero Ended: from the
// first).
func (r *Reader) AwaitingCompaction(_ context.Context, endedBy int64, after Ended, limit int) ([]Ended, error) {
	var out []Ended
	lower := []byte(prefixCompaction)
	if after == (Ended{}) || after.ByID {
		// Entries of removed workflows, and of a data dir written before
		// the time-ordered list: a compaction takes each out.
		first := legacyListFirst
		if after.ByID {
			first = append([]byte(prefixLegacyList+after.WorkflowID), 0) // the first key after after's
		}
		err := r.r.ScanRange(first, legacyListEnd, false, func(key, v []byte) bool {
			if len(v) >= 8 {
				if end := int64(binary.BigEndian.Uint64(v)); end <= endedBy {
					out = append(out, Ended{WorkflowID: string(key[len(prefixLegacyList):]), EndTime: end, ByID: true})
				}
			}
			return len(out) < limit
		})
		if err != nil || len(out) >= limit {
			return out, err
		}
	} else {
		lower = append(compactionKey(after.EndTime, after.WorkflowID), 0)
	}
	upper := compactionKey(endedBy, "\xff")
	if bytes.Compare(lower, upper) >= 0 {
		return out, nil // after ended after endedBy: a clock set back since
	}
	err := r.r.ScanRange(lower, upper, false, func(key, _ []byte) bool {
		k := key[len(prefixCompaction):]
		if len(k) > 8 {
			out = append(out, Ended{WorkflowID: string(k[8:]), EndTime: int64(binary.BigEndian.Uint64(k[:8]))})
		}
		return len(out) < limit
	})
	return out, err
}
