package guard

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/executor"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/internal/logkey"
	"github.com/flowvault/flowvault/masking"
	"github.com/flowvault/flowvault/projections/executions"
)

// Ended lists workflows waiting for compaction.
type Ended interface {
	AwaitingCompaction(ctx context.Context, limit int) ([]executions.Ended, error)
}

// Submitter runs triggers against workflows.
type Submitter interface {
	Submit(ctx context.Context, wfID string, trig engine.Trigger, meta executor.Meta) (executor.Outcome, error)
}

// Compactor destroys the secrets key of every workflow that ended at least
// Delay ago: first it appends workflow.compacted (which the decider refuses
// unless the workflow is still terminal, so a restarted workflow keeps its
// key), then it erases the key. Whatever was sealed under it — _secrets
// data in the log, in read models, in backups — can never be decrypted
// again, even with the master key. Data under _masked uses the other key
// and survives, so restarts still have it.
type Compactor struct {
	Ended    Ended
	Engine   Submitter
	Keys     Keys
	Delay    time.Duration
	Interval time.Duration
	Logger   *slog.Logger
	Now      func() time.Time
}

// Run compacts until ctx is done.
func (c *Compactor) Run(ctx context.Context) {
	if c.Interval <= 0 {
		c.Interval = 250 * time.Millisecond
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	t := time.NewTicker(c.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := c.Pass(ctx); err != nil && ctx.Err() == nil {
			c.Logger.Warn("compaction pass failed", logkey.Err, err)
		}
	}
}

// compactors bounds the compactions in flight: each waits on two durable
// writes (the event, the key's erasure), and only concurrent ones let the
// log batch its syncs.
const compactors = 32

// Pass compacts every workflow that is due and returns how many it did.
func (c *Compactor) Pass(ctx context.Context) (int, error) {
	ended, err := c.Ended.AwaitingCompaction(ctx, 4096)
	if err != nil {
		return 0, err
	}
	now := c.Now().UnixMilli()
	var done atomic.Int64
	var wg sync.WaitGroup
	due := make(chan string)
	for range min(compactors, len(ended)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range due {
				if err := c.compact(ctx, id); err != nil {
					if ctx.Err() == nil { // not the shutdown: the next pass retries it
						c.Logger.Warn("compaction failed", logkey.WorkflowID, id, logkey.Err, err)
					}
					continue
				}
				done.Add(1)
			}
		}()
	}
	for _, e := range ended {
		if e.EndTime+c.Delay.Milliseconds() <= now && ctx.Err() == nil {
			due <- e.WorkflowID
		}
	}
	close(due)
	wg.Wait()
	return int(done.Load()), nil
}

func (c *Compactor) compact(ctx context.Context, wfID string) error {
	_, err := c.Engine.Submit(ctx, wfID, engine.Compact{}, executor.Meta{RequestID: "compact:" + wfID})
	switch {
	case errors.Is(err, fault.ErrConflict):
		return nil // restarted meanwhile: it keeps its key
	case err != nil:
		return err
	}
	// Recorded as compacted: now the key goes, for good. A crash here
	// leaves the key; the next pass finds the workflow compacted and not
	// listed, so Sweep at start-up erases such leftovers.
	return c.Keys.DestroyKey(ctx, keyID(wfID, masking.KindSecrets))
}

// KeyLister lists data keys by id prefix.
type KeyLister interface {
	DataKeyIDs(ctx context.Context, prefix string) (map[string]time.Time, error)
}

// WorkflowState reads a workflow's state.
type WorkflowState interface {
	Workflow(ctx context.Context, id string) (*engine.Workflow, error)
}

// Sweep erases the secrets keys of workflows already compacted (a crash
// between the event and the erasure) and returns how many it erased.
func (c *Compactor) Sweep(ctx context.Context, keys KeyLister, states WorkflowState) (int, error) {
	ids, err := keys.DataKeyIDs(ctx, "wf")
	if err != nil {
		return 0, err
	}
	n := 0
	for id := range ids {
		rest, ok := strings.CutPrefix(id, "wf.")
		if !ok || !strings.HasSuffix(rest, "."+string(masking.KindSecrets)) {
			continue
		}
		wfID := strings.TrimSuffix(rest, "."+string(masking.KindSecrets))
		w, err := states.Workflow(ctx, wfID)
		if err != nil || !w.Compacted || !w.Terminal() {
			continue
		}
		if err := c.Keys.DestroyKey(ctx, id); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}
