package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"time"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/node"
	"github.com/flowvault/flowvault/projections/executions"
)

// benchCompaction runs workflows that each seal a _secrets output to
// completion with compaction held back, restarts the node with no delay,
// and times the compactor appending each workflow's compaction event and
// destroying its key until none is left waiting.
func benchCompaction(ctx context.Context, o opts) error {
	dir, err := os.MkdirTemp("", "fvbench-compaction")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	live, err := finishHeld(ctx, dir, o.compactions)
	if err != nil {
		return err
	}

	begin := time.Now()
	r, stop, err := startEngine(ctx, eventlog.FsyncAlways, dir, func(c *node.Config) { c.CompactionDelay = 0 })
	if err != nil {
		return err
	}
	defer stop()
	startup := time.Since(begin)
	// Done when none is left waiting; stalled when the oldest waiting one
	// stays the same for a minute.
	var oldest string
	lastChange := time.Now()
	for {
		time.Sleep(20 * time.Millisecond)
		waiting, err := r.n.Executions().AwaitingCompaction(ctx, math.MaxInt64, executions.Ended{}, 1)
		if err != nil {
			return err
		}
		if len(waiting) == 0 {
			break
		}
		if waiting[0].WorkflowID != oldest {
			oldest, lastChange = waiting[0].WorkflowID, time.Now()
		} else if time.Since(lastChange) > time.Minute {
			return fmt.Errorf("compaction stalled at workflow %s", oldest)
		}
	}
	// The compactor erases a pass's keys after its events: done when only
	// the keys nobody took are left.
	for {
		left, err := r.n.Keys().PooledKeyIDs(ctx)
		if err != nil {
			return err
		}
		if len(left) <= live-o.compactions {
			break
		}
		if time.Since(lastChange) > time.Minute {
			return fmt.Errorf("key erasure stalled with %d keys left", len(left))
		}
		time.Sleep(20 * time.Millisecond)
	}
	took := time.Since(begin)
	fmt.Printf("fsync=always  compaction of %d ended workflows: %s  %7.0f workflows/s  (restart %s included; target >= 2000 workflows/s)\n",
		o.compactions, took.Round(time.Millisecond), float64(o.compactions)/took.Seconds(), startup.Round(time.Millisecond))
	return nil
}

// finishHeld runs n bench_secrets workflows to completion on a node in dir
// whose compaction delay is longer than the run, and returns how many
// pooled keys are left in the key store: theirs, and those nobody took.
func finishHeld(ctx context.Context, dir string, n int) (int, error) {
	r, stop, err := startEngine(ctx, eventlog.FsyncAlways, dir, func(c *node.Config) { c.CompactionDelay = time.Hour })
	if err != nil {
		return 0, err
	}
	defer stop()
	r.flow = "bench_secrets"
	nc, wc, err := r.connect()
	if err != nil {
		return 0, err
	}
	defer nc.Close()
	defer wc.Close()
	if err := r.watch(nc); err != nil {
		return 0, err
	}
	stopWorkers, err := r.workers(ctx, wc)
	if err != nil {
		return 0, err
	}
	defer stopWorkers()
	if _, err = r.load(n, 0); err != nil {
		return 0, err
	}
	live, err := r.n.Keys().PooledKeyIDs(ctx)
	return len(live), err
}
