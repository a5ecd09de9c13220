package executions

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/projections"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// Gauges count entries of the read model's indexes that an operator
// watches as load: the log's, so every engine's read model counts the
// same. They are kept as counts (g/), updated in the batch that adds or
// takes out an entry, from the folded states alone, so a rebuild from the
// log writes the same counts; counting the indexes at each scrape would
// read every entry.
type Gauges struct {
	// Running is the workflows not terminal (the r/ index).
	Running int64
	// Scheduled is the tasks SCHEDULED and not yet taken (their entries in
	// the task status index): a worker's, or a system task the engine
	// runs.
	Scheduled int64
	// Timers is the durable deadlines the timer loop waits for (the d/
	// index: engine.Deadlines of each workflow, timeouts, waits and retry
	// delays, a workflow's deadlines at one time one entry).
	Timers int64
	// Compaction is the ended workflows whose secrets key awaits its
	// erasure (the compaction lists, e/ and k/).
	Compaction int64
}

var _ projections.Flusher = (*Projection)(nil)

const gaugesKey = "g/"

const gaugesLen = 4 * 8

func (g Gauges) add(d Gauges) Gauges {
	return Gauges{Running: g.Running + d.Running, Scheduled: g.Scheduled + d.Scheduled,
		Timers: g.Timers + d.Timers, Compaction: g.Compaction + d.Compaction}
}

func (g Gauges) encode() []byte {
	b := make([]byte, 0, gaugesLen)
	for _, v := range []int64{g.Running, g.Scheduled, g.Timers, g.Compaction} {
		b = binary.BigEndian.AppendUint64(b, uint64(v))
	}
	return b
}

func decodeGauges(v []byte) (Gauges, error) {
	if len(v) != gaugesLen {
		return Gauges{}, fmt.Errorf("gauges: %d bytes", len(v))
	}
	at := func(i int) int64 { return int64(binary.BigEndian.Uint64(v[i*8:])) }
	return Gauges{Running: at(0), Scheduled: at(1), Timers: at(2), Compaction: at(3)}, nil
}

// Flush adds what the batch's records changed to the stored counts, one
// write a commit (projections.Flusher): a write a record put a version of
// the key into the memtable for each.
//
// A batch whose records changed the counts writes them even when the
// changes add up to nothing (a workflow that started and ended in it): a
// rebuild, which folds in one batch what the live runner folded in many,
// must leave the key as the live runner did (`flowvault audit --verify`
// compares them). A key at zero is kept, not deleted: a read of a key
// whose newest version is a deletion steps over every older version in
// the memtable (see addRunning).
func (p *Projection) Flush(b *projections.Batch) error {
	if !p.counted {
		return nil
	}
	var g Gauges
	v, err := b.Get([]byte(gaugesKey))
	switch {
	case errors.Is(err, projections.ErrNotFound):
	case err != nil:
		return fmt.Errorf("gauges: %w", err)
	default:
		if g, err = decodeGauges(v); err != nil {
			return err
		}
	}
	p.pending, p.counted, g = Gauges{}, false, g.add(p.pending)
	return b.Set([]byte(gaugesKey), g.encode())
}

// scheduled is 1 for a task whose entry in the task status index counts
// as Gauges.Scheduled.
func scheduled(t *engine.Task) int64 {
	if t.Status == conductor.TaskScheduled {
		return 1
	}
	return 0
}

// Gauges returns the counts as of the read model's last commit.
func (r *Reader) Gauges(context.Context) (Gauges, error) {
	v, err := r.r.Get([]byte(gaugesKey))
	if errors.Is(err, projections.ErrNotFound) {
		return Gauges{}, nil
	}
	if err != nil {
		return Gauges{}, fmt.Errorf("gauges: %w", err)
	}
	return decodeGauges(v)
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}
