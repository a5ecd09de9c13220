package executions

import (
	"strconv"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/projections"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// A DO_WHILE's output holds an entry per iteration ("1", "2", …: the
// outputs of that iteration's tasks), and the loop task changes twice per
// iteration. Stored inside the task, every change rewrote every entry:
// O(n²) bytes for a loop of n iterations. The entries are stored apart,
// each under its task's key followed by the entry's own, and written when
// the state holds another value for it (Apply replaces what it changes).

// entryKey is the key of entry k of the i-th task's output. Task keys all
// have one length, so an entry's key is longer than any task's and sorts
// right after its own task's.
func entryKey(token string, i int, k string) []byte { return append(taskKey(token, i), k...) }

// storedApart reports whether entry k of t's output is stored apart.
func storedApart(t *engine.Task, k string) bool {
	if t.Type != conductor.TaskTypeDoWhile {
		return false
	}
	_, err := strconv.Atoi(k)
	return err == nil
}

// holdsApart reports whether some entry of t's output is stored apart.
func holdsApart(t *engine.Task) bool {
	if t.Type != conductor.TaskTypeDoWhile {
		return false
	}
	for k := range t.Output {
		if storedApart(t, k) {
			return true
		}
	}
	return false
}

// withoutApart returns t as its own key stores it: without the entries
// stored apart.
func withoutApart(t *engine.Task) *engine.Task {
	if t.Type != conductor.TaskTypeDoWhile {
		return t
	}
	out, apart := make(map[string]any), false
	for k, v := range t.Output {
		if storedApart(t, k) {
			apart = true
		} else {
			out[k] = v
		}
	}
	if !apart {
		return t
	}
	c := *t
	c.Output = out
	return &c
}

// storeEntries writes the entries of t, the i-th task, that differ from
// those of was, the task stored there before (nil: none, or one whose
// entries are not stored apart), and deletes those t no longer has.
func (p *Projection) storeEntries(b *projections.Batch, token string, i int, was, t *engine.Task) (err error) {
	var before map[string]any
	if was != nil {
		before = was.Output
	}
	if t != nil {
		for k, v := range t.Output {
			if !storedApart(t, k) {
				continue
			}
			if old, ok := before[k]; ok && storedApart(was, k) && engine.SameValue(old, v) {
				continue
			}
			if p.scratch, err = schemas.AppendSorted(p.scratch[:0], v); err != nil {
				return err
			}
			if err := b.Set(entryKey(token, i, k), p.scratch); err != nil {
				return err
			}
		}
	}
	for k := range before {
		if !storedApart(was, k) {
			continue
		}
		if t != nil && storedApart(t, k) {
			if _, ok := t.Output[k]; ok {
				continue
			}
		}
		if err := b.Delete(entryKey(token, i, k)); err != nil {
			return err
		}
	}
	return nil
}
