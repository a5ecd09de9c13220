package executions

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/projections"
)

// The count of each principal's running workflows (q/) is what the
// engine's quota on them reads (executor.RunningCounter): one Get per
// start, where counting the running index would read every entry. It is
// updated in the batch that flips a workflow's running state, from the
// folded states alone, so a rebuild from the log writes the same counts.

func runningByKey(principal string) []byte { return []byte(prefixRunningBy + principal) }

// countRunning moves w from its principal's count before the record to
// its count after, if it started, ended or ran again.
func countRunning(b *projections.Batch, prev before, w *engine.Workflow) error {
	wasBy, running := prev.summary.CreatedBy, !w.Terminal()
	if prev.running == running && (!running || wasBy == w.CreatedBy) {
		return nil
	}
	if prev.running {
		if err := addRunning(b, wasBy, -1); err != nil {
			return err
		}
	}
	if running {
		return addRunning(b, w.CreatedBy, 1)
	}
	return nil
}

// addRunning adds delta to principal's count. A count of none stays a
// key holding 0: deleted, it made each later read of the key (the next
// start of a principal who runs one workflow at a time) step over every
// version of it in the memtable, Pebble's iterator skipping a deleted
// key's older versions one by one; a read of a key whose newest version
// is set stops there.
func addRunning(b *projections.Batch, principal string, delta int64) error {
	key := runningByKey(principal)
	var n uint64
	v, err := b.Get(key)
	switch {
	case errors.Is(err, projections.ErrNotFound):
	case err != nil:
		return fmt.Errorf("running workflows of a principal: %w", err)
	case len(v) != 8:
		return fmt.Errorf("running workflows of a principal: a count of %d bytes", len(v))
	default:
		n = binary.BigEndian.Uint64(v)
	}
	if delta < 0 && n < uint64(-delta) {
		// Never, as the count is folded with the states; were it so, a
		// count below none would refuse nothing the states allow.
		n = 0
	} else {
		n = uint64(int64(n) + delta)
	}
	return b.Set(key, binary.BigEndian.AppendUint64(nil, n))
}
