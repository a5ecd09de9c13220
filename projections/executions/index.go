package executions

import (
	"encoding/binary"
	"maps"
	"slices"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/internal/msgfields"
	"github.com/flowvault/flowvault/projections"
	"github.com/flowvault/flowvault/schemas"
)

// Search indexes, inside the projection's key space. Values that vary in
// length are length-prefixed (uvarint) so that one value's keys are never a
// prefix scan away from another's; start and schedule times are big-endian
// Unix ms, so each index is in time order within a value.
const (
	prefixSummary  = "m/" // m/<wf token> → msgpack Summary
	prefixByStart  = "a/" // a/<start BE><wf id> → ""
	prefixByStatus = "s/" // s/<len><status><start BE><wf id> → ""
	prefixByName   = "n/" // n/<len><name><start BE><wf id> → ""
	prefixByCorr   = "c/" // c/<len><correlation id><start BE><wf id> → ""
	prefixTaskStat = "k/" // k/<len><task status><scheduled BE><task id> → wf id
)

// Summary is what search reads of a workflow without decoding its state.
type Summary struct {
	ID               string `msgpack:"id"`
	Name             string `msgpack:"name"`
	Version          int    `msgpack:"ver"`
	Status           string `msgpack:"st"`
	CorrelationID    string `msgpack:"corr,omitempty"`
	Priority         int    `msgpack:"prio,omitempty"`
	CreatedBy        string `msgpack:"by,omitempty"`
	ParentWorkflowID string `msgpack:"pwf,omitempty"`
	IdempotencyKey   string `msgpack:"idem,omitempty"`
	Reason           string `msgpack:"why,omitempty"`
	StartTime        int64  `msgpack:"stt"`
	UpdateTime       int64  `msgpack:"ut"`
	EndTime          int64  `msgpack:"et,omitempty"`
	Archived         bool   `msgpack:"arch,omitempty"`
}

// EncodeMsgpack implements msgpack.CustomEncoder: every record writes its
// workflow's summary (see msgfields).
func (s *Summary) EncodeMsgpack(e *msgpack.Encoder) error {
	w := msgfields.New(e)
	w.MapLen(6, s.CorrelationID != "", s.Priority != 0, s.CreatedBy != "", s.ParentWorkflowID != "",
		s.IdempotencyKey != "", s.Reason != "", s.EndTime != 0, s.Archived)
	w.Str("id", s.ID, false)
	w.Str("name", s.Name, false)
	w.Int("ver", s.Version, false)
	w.Str("st", s.Status, false)
	w.Str("corr", s.CorrelationID, true)
	w.Int("prio", s.Priority, true)
	w.Str("by", s.CreatedBy, true)
	w.Str("pwf", s.ParentWorkflowID, true)
	w.Str("idem", s.IdempotencyKey, true)
	w.Str("why", s.Reason, true)
	w.Int64("stt", s.StartTime, false)
	w.Int64("ut", s.UpdateTime, false)
	w.Int64("et", s.EndTime, true)
	w.Bool("arch", s.Archived)
	return w.Err()
}

func summaryOf(w *engine.Workflow) Summary {
	return Summary{ID: w.ID, Name: w.Name, Version: w.Version, Status: w.Status, CorrelationID: w.CorrelationID,
		Priority: w.Priority, CreatedBy: w.CreatedBy, ParentWorkflowID: w.ParentWorkflowID, IdempotencyKey: w.IdempotencyKey,
		Reason: w.Reason, StartTime: w.StartTime, UpdateTime: w.UpdateTime, EndTime: w.EndTime, Archived: w.Archived}
}

// indexKeys are the workflow's entries in the search indexes.
func (s *Summary) indexKeys() [][]byte {
	keys := [][]byte{
		timeKey([]byte(prefixByStart), s.StartTime, s.ID),
		valueTimeKey(prefixByStatus, s.Status, s.StartTime, s.ID),
		valueTimeKey(prefixByName, s.Name, s.StartTime, s.ID),
	}
	if s.CorrelationID != "" {
		keys = append(keys, valueTimeKey(prefixByCorr, s.CorrelationID, s.StartTime, s.ID))
	}
	return keys
}

// valuePrefix is the key prefix of one value of an index.
func valuePrefix(prefix, value string) []byte {
	k := binary.AppendUvarint([]byte(prefix), uint64(len(value)))
	return append(k, value...)
}

func valueTimeKey(prefix, value string, at int64, id string) []byte {
	return timeKey(valuePrefix(prefix, value), at, id)
}

func timeKey(prefix []byte, at int64, id string) []byte {
	k := binary.BigEndian.AppendUint64(prefix, uint64(max(at, 0)))
	return append(k, id...)
}

// taskEntry is a task's place in the task status index.
type taskEntry struct {
	status    string
	scheduled int64
}

func (e taskEntry) key(taskID string) []byte {
	return valueTimeKey(prefixTaskStat, e.status, e.scheduled, taskID)
}

// before is what the projection remembers of a workflow's state before a
// record, to update the indexes by difference.
type before struct {
	exists  bool
	running bool
	removed bool
	summary Summary
	// tasks are the state's tasks. Apply replaces a task it changes, so a
	// task still in its place is as it was.
	tasks []*engine.Task
	// awaitsCompaction: the state is on the compaction list.
	awaitsCompaction bool
	// endedWithEffects: the state is on the list recovery reads
	// (engine.HasTerminalEffects).
	endedWithEffects bool
	endTime          int64
	secretsKey       string
}

// snapshot returns what the projection remembers of w before a record
// folds into it; r is what it stored of w.
func snapshot(w *engine.Workflow, r *recent) before {
	if w == nil {
		return before{}
	}
	tasks := r.tasks
	if !r.exact {
		tasks = slices.Clone(w.Tasks)
	}
	return before{exists: true, running: !w.Terminal(), removed: w.Removed, summary: summaryOf(w),
		tasks: tasks, awaitsCompaction: w.AwaitsCompaction(),
		endedWithEffects: engine.HasTerminalEffects(w), endTime: w.EndTime, secretsKey: w.SecretsKey}
}

// taskMatch pairs the tasks of a state before a record with those after.
// A record appends tasks and replaces tasks in their places, but for the
// resets (restart, rerun), which drop tasks: a list that starts with the
// earlier one's tasks in their places is paired without a map, which for
// a workflow of n tasks cost O(n) allocations on every record.
type taskMatch struct {
	before  []*engine.Task
	aligned bool
	byID    map[string]*engine.Task // when not aligned
	// changed are the indexes of the tasks after that are not the task
	// before them (Apply replaced or appended them), in order: those
	// whose documents and index entries a record changes. A record
	// changes a few tasks of a large workflow, and each of the passes
	// that write them looked at every task.
	changed []int
}

// matchTasks pairs after with before; changed is a buffer for the match's
// changed.
func matchTasks(before, after []*engine.Task, changed []int) taskMatch {
	m := taskMatch{before: before, aligned: len(after) >= len(before), changed: changed[:0]}
	for i := 0; m.aligned && i < len(before); i++ {
		if after[i] != before[i] {
			m.aligned = after[i].ID == before[i].ID
			m.changed = append(m.changed, i)
		}
	}
	if m.aligned {
		for i := len(before); i < len(after); i++ {
			m.changed = append(m.changed, i)
		}
		return m
	}
	m.byID = make(map[string]*engine.Task, len(before))
	for _, t := range before {
		m.byID[t.ID] = t
	}
	m.changed = m.changed[:0]
	for i, t := range after {
		if m.byID[t.ID] != t {
			m.changed = append(m.changed, i)
		}
	}
	return m
}

// was returns the earlier task of after[i], nil if it is new.
func (m taskMatch) was(i int, after *engine.Task) *engine.Task {
	if m.aligned {
		if i < len(m.before) {
			return m.before[i]
		}
		return nil
	}
	return m.byID[after.ID]
}

// dropped returns the earlier tasks that after no longer holds.
func (m taskMatch) dropped(after []*engine.Task) []*engine.Task {
	if m.aligned {
		return nil
	}
	gone := maps.Clone(m.byID)
	for _, t := range after {
		delete(gone, t.ID)
	}
	return slices.Collect(maps.Values(gone))
}

func entryOf(t *engine.Task) taskEntry { return taskEntry{t.Status, t.ScheduledTime} }

// storeIndexes updates the summary and the search indexes.
func (p *Projection) storeIndexes(b *projections.Batch, token string, w *engine.Workflow, prev before, match taskMatch) (err error) {
	// A record that changes no field of the summary (a compaction, which
	// every secrets workflow gets) leaves it and its index entries as the
	// record before wrote them.
	if s := summaryOf(w); !prev.exists || s != prev.summary {
		if p.scratch, err = schemas.AppendSorted(p.scratch[:0], &s); err != nil {
			return err
		}
		if err := b.Set([]byte(prefixSummary+token), p.scratch); err != nil {
			return err
		}
		var old [][]byte
		if prev.exists {
			old = prev.summary.indexKeys()
		}
		if err := replaceKeys(b, old, s.indexKeys(), nil); err != nil {
			return err
		}
	}
	for _, i := range match.changed {
		t := w.Tasks[i]
		was := match.was(i, t)
		now := entryOf(t)
		if was != nil {
			if entryOf(was) == now {
				continue
			}
			if err := b.Delete(entryOf(was).key(t.ID)); err != nil {
				return err
			}
			p.delta.Scheduled -= scheduled(was)
		}
		if err := b.Set(now.key(t.ID), []byte(w.ID)); err != nil {
			return err
		}
		p.delta.Scheduled += scheduled(t)
	}
	// Restart and rerun drop tasks: their entries and lookups go.
	for _, t := range match.dropped(w.Tasks) {
		if err := b.Delete(entryOf(t).key(t.ID)); err != nil {
			return err
		}
		p.delta.Scheduled -= scheduled(t)
		if err := b.Delete([]byte(prefixTask + t.ID)); err != nil {
			return err
		}
	}
	return nil
}

// replaceKeys deletes the keys of old that are not in next and sets the
// keys of next that are not in old to value.
func replaceKeys(b *projections.Batch, old, next [][]byte, value []byte) error {
	for _, k := range old {
		if !slices.ContainsFunc(next, func(n []byte) bool { return string(n) == string(k) }) {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
	}
	for _, k := range next {
		if !slices.ContainsFunc(old, func(o []byte) bool { return string(o) == string(k) }) {
			if err := b.Set(k, value); err != nil {
				return err
			}
		}
	}
	return nil
}

// removeAll deletes every document of a workflow removed without archive:
// its state, summary, task lookups and every index entry. prev is the state
// before the removal, r what was stored of it (see recent).
func (p *Projection) removeAll(b *projections.Batch, token string, w *engine.Workflow, prev before, r *recent) error {
	for i, t := range r.tasks {
		if err := p.deleteTask(b, token, i, t); err != nil {
			return err
		}
	}
	if err := deleteStatuses(b, token, len(r.tasks)); err != nil {
		return err
	}
	if prev.running {
		if err := addRunning(b, prev.summary.CreatedBy, -1); err != nil {
			return err
		}
		p.delta.Running--
	}
	// Its entry in the list of those that ended with effects, storeEnded
	// deleted.
	keys := [][]byte{stateKey(token), defKey(token), inputKey(token), []byte(prefixSummary + token), []byte(prefixRunning + w.ID)}
	if prev.summary.IdempotencyKey != "" {
		keys = append(keys, keyListKey(prefixKeyKept, prev.summary.Name, prev.summary.IdempotencyKey, w.ID))
		if prev.running {
			keys = append(keys, keyRunningKey(prev.summary.Name, prev.summary.IdempotencyKey, w.ID))
		}
	}
	keys = append(keys, prev.summary.indexKeys()...)
	for _, t := range prev.tasks {
		keys = append(keys, []byte(prefixTask+t.ID), entryOf(t).key(t.ID))
		p.delta.Scheduled -= scheduled(t)
	}
	// An idempotency key's entry stays: the next start with the key
	// derives its id from the removed workflow's (whose events stay in
	// the log), not the key's first id again.
	for _, k := range keys {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	if err := p.dropTimers(b, w.ID, &r.timers); err != nil {
		return err
	}
	return p.listRemoved(b, w)
}
