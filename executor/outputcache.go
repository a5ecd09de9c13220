package executor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/internal/kvbucket"
	"github.com/flowvault/flowvault/internal/logkey"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// cacheBucket holds the tasks' cached outputs (engine.CacheOutput), which
// every engine reads: on disk, as many replicas as the log. An entry ends
// at its own expiry, which a read checks, and at the latest with the
// bucket's age limit; past its size limit the oldest go first. What it
// holds has been through redaction, and never a _secrets or _masked
// value (see engine/cache.go).
const (
	cacheBucket   = "FV_TASK_CACHE"
	cacheMaxAge   = 30 * 24 * time.Hour
	cacheMaxBytes = 256 << 20
)

// cacheBytes is the cache bucket's size limit under a store bounded to
// maxStore bytes (0: unbounded): JetStream reserves a bucket's limit
// against the bound when the bucket is made, and refuses one past what
// is left ("insufficient storage resources"), for good. Under a small
// bound (--nats-max-store) the cache takes at most a quarter of it, and
// the log the rest.
func cacheBytes(maxStore int64) int64 {
	if maxStore > 0 {
		return min(cacheMaxBytes, maxStore/4)
	}
	return cacheMaxBytes
}

// outputCache reads and writes the cache bucket.
type outputCache struct {
	log    *eventlog.Log
	logger *slog.Logger
	counts *prometheus.CounterVec // by result: hit, miss, error, stored, dropped
	mu     sync.Mutex
	kv     jetstream.KeyValue
	// refused: the last put was refused for want of storage, and said so.
	refused atomic.Bool
}

// cachedOutput is a cache entry.
type cachedOutput struct {
	ExpiresAt int64           `json:"expiresAt"`
	Output    json.RawMessage `json:"output"`
	// WorkflowID and TaskID name the task whose output it is, which a hit
	// reads (Executor.cachedOutput); an entry written before they were
	// kept names none.
	WorkflowID string `json:"workflowId,omitempty"`
	TaskID     string `json:"taskId,omitempty"`
}

// bucket is the cache bucket, made if it was not. A bucket that exists is
// taken as it is: made again (an update), one another engine made under
// another --nats-max-store would have its size limit set to this
// engine's, an update a server whose store does not fit the new limit
// refuses.
func (c *outputCache) bucket(ctx context.Context) (jetstream.KeyValue, error) {
	kv, err := c.existing(ctx)
	if err != nil || kv != nil {
		return kv, err
	}
	// Made since the look-up, by another engine under another bound, it is
	// taken as it is too.
	kv, err = kvbucket.Make(ctx, c.log.JetStream(), jetstream.KeyValueConfig{Bucket: cacheBucket,
		Description: "tasks' cached outputs (cacheConfig)", History: 1, TTL: cacheMaxAge, MaxBytes: cacheBytes(c.log.MaxStore()),
		Storage: jetstream.FileStorage, Replicas: c.log.Replicas()})
	if err != nil {
		return nil, fmt.Errorf("task output cache: %w", err)
	}
	return c.keep(kv), nil
}

// existing is the cache bucket if it was made, nil if not: a purge has
// nothing to take out of a bucket never made, and must not make it, for
// a store too small for its size limit (an external server's, whose
// bound the engine does not know) refuses it for good, and with it the
// compaction whose purges must succeed first (UncacheOutput.Required).
func (c *outputCache) existing(ctx context.Context) (jetstream.KeyValue, error) {
	c.mu.Lock()
	kv := c.kv
	c.mu.Unlock()
	if kv != nil {
		return kv, nil
	}
	kv, err := c.log.JetStream().KeyValue(ctx, cacheBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("task output cache: %w", err)
	}
	return c.keep(kv), nil
}

// keep holds kv for the uses to come, unless another caller's is held
// already, which it returns.
func (c *outputCache) keep(kv jetstream.KeyValue) jetstream.KeyValue {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.kv == nil {
		c.kv = kv
	}
	return c.kv
}

// get returns the entry cached under key, its output and its revision,
// unless it expired by now (Unix ms). A cache that cannot be read has
// nothing: the task runs. A hit is for the caller to count, once it has
// read the entry's task (Executor.cachedOutput).
func (c *outputCache) get(ctx context.Context, key string, now int64) (cachedOutput, map[string]any, uint64, bool) {
	kv, err := c.bucket(ctx)
	var entry jetstream.KeyValueEntry
	if err == nil {
		entry, err = kv.Get(ctx, key)
	}
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		c.counts.WithLabelValues("miss").Inc()
		return cachedOutput{}, nil, 0, false
	}
	var e cachedOutput
	if err == nil {
		err = json.Unmarshal(entry.Value(), &e)
	}
	var out map[string]any
	if err == nil {
		err = conductor.Unmarshal(e.Output, &out)
	}
	if err != nil {
		c.counts.WithLabelValues("error").Inc()
		c.logger.Warn("task output cache not read; the task runs", logkey.Err, err)
		return cachedOutput{}, nil, 0, false
	}
	if e.ExpiresAt <= now || out == nil {
		c.counts.WithLabelValues("miss").Inc()
		return cachedOutput{}, nil, 0, false
	}
	return e, out, entry.Revision(), true
}

// cachedOutput answers a decision's lookup of key (engine.Input.
// CachedOutput): the output cached under it, unless a value of it was
// found secret since. The decision that found it purges the key
// (UncacheOutput), but no effect is recorded: an engine killed after that
// decision's append and before its purge, or between a write and the
// write's read (cacheOutput), left the entry, holding the value in plain
// text until the next start's recovery, or the workflow's compaction,
// performs the purge again (engine.Effects, engine.Compact). So a hit
// reads the workflow of the task whose output it is, as the log has it now
// (its compaction keeps what it masked), and the output is not served, and
// is purged, if a value of it is masked there, if the log holds no such
// workflow, or if the entry names none (written before entries named their
// task).
//
// deciding is the state the lookup's decision is made on. An entry of
// that workflow's own (a loop's later iteration hitting its first) is
// checked on it, not read again: a read costs a fold of the whole
// workflow, each hit of a loop over its growing state, and a decision is
// appended only on the state it was made on, so one made before a
// masking decision the shard has not seen is refused and made again on
// the log's state.
func (e *Executor) cachedOutput(ctx context.Context, deciding *engine.Workflow, key string, now int64) (map[string]any, bool) {
	entry, out, rev, ok := e.outputs.get(ctx, key, now)
	if !ok {
		return nil, false
	}
	var w *engine.Workflow
	switch {
	case deciding != nil && entry.WorkflowID == deciding.ID:
		w = deciding
	case entry.WorkflowID != "":
		var err error
		// Not State: the caller is a shard deciding, which may be the one
		// of entry.WorkflowID.
		if w, err = e.current(ctx, entry.WorkflowID); err != nil {
			e.outputs.counts.WithLabelValues("error").Inc()
			e.cfg.Logger.Warn("task output cache: the cached output's workflow not read; the task runs", logkey.WorkflowID, entry.WorkflowID,
				logkey.Err, err)
			return nil, false
		}
	}
	if w != nil && !engine.OutputMasked(w, entry.TaskID) {
		e.outputs.counts.WithLabelValues("hit").Inc()
		return out, true
	}
	e.outputs.counts.WithLabelValues("miss").Inc()
	// Replaced since the read: another task's output, read at its hit.
	if err := e.outputs.purge(ctx, key, rev); err != nil && !errors.Is(err, errReplaced) {
		e.cfg.Logger.Warn("task output cache: an output not served is not dropped; the task runs", logkey.Err, err)
	}
	return nil, false
}

// cacheOutput performs eff: it stores the output, then reads the task's
// workflow as the log has it now and takes the output out again if a
// value of it was found secret since. The decision that found it purges
// the key (UncacheOutput), but its purge may be performed first, by
// another engine or while this waited for a slot or was retried: finding
// no entry, it left the one written after it, holding the value in plain
// text, to be served to the next task with the key. A purge is performed
// once its decision is in the log, so either it finds what was written
// here, or the read here, which follows the write, finds its decision.
func (e *Executor) cacheOutput(ctx context.Context, eff engine.CacheOutput) error {
	rev, err := e.outputs.put(ctx, eff)
	if err != nil || rev == 0 {
		return err
	}
	w, err := e.State(ctx, eff.WorkflowID)
	if err != nil {
		return fmt.Errorf("cache task output: %w", err)
	}
	if w != nil && !engine.OutputMasked(w, eff.TaskID) {
		return nil
	}
	// Found secret, or its workflow removed, which leaves nothing to
	// tell: a cache need not keep it. Replaced since, it is gone already,
	// or another task's output (which that task's write reads for).
	if err := e.outputs.purge(ctx, eff.Key, rev); !errors.Is(err, errReplaced) {
		return err
	}
	return nil
}

// uncacheAhead performs the purges of cached outputs among a decision's
// effects (UncacheOutput) before the decision is appended, as well as
// after, as any effect. No effect is recorded: an engine killed between
// the append and the purge leaves the entry until the next start's
// recovery or the workflow's compaction, and a hit, which reads the
// workflow of the task that cached the output (cachedOutput), serves it
// meanwhile when the task whose output the decision found secret was
// itself completed from the cache. The purge after the append is still
// needed: an output written in between, by a write whose read came first,
// is found there. A purge that fails here is left to that one, and to
// recovery, but for a Required one (the compaction's), whose failure is
// returned: its decision is not appended, and is tried again.
func (e *Executor) uncacheAhead(ctx context.Context, effects []engine.Effect) error {
	for _, eff := range effects {
		var (
			err      error
			required bool
		)
		switch u := eff.(type) {
		case engine.UncacheOutput:
			err, required = e.outputs.drop(ctx, u.Key), u.Required
		case engine.UncacheTasks:
			err, required = e.outputs.dropTasks(ctx, u.WorkflowID, u.TaskIDs), u.Required
		default:
			continue
		}
		switch {
		case err != nil && required:
			return fmt.Errorf("output found secret not dropped from the task output cache: %w", err)
		case err != nil:
			e.cfg.Logger.Warn("task output cache: an output found secret not dropped before its decision is recorded", logkey.Err, err)
		}
	}
	return nil
}

// put stores eff's output and returns the revision it wrote: 0 when the
// store has no room for it.
func (c *outputCache) put(ctx context.Context, eff engine.CacheOutput) (uint64, error) {
	kv, err := c.bucket(ctx)
	if err != nil {
		return 0, err
	}
	out, err := json.Marshal(eff.Output)
	if err != nil {
		return 0, fmt.Errorf("cache task output: %w", err)
	}
	b, err := json.Marshal(cachedOutput{ExpiresAt: eff.ExpiresAt, Output: out, WorkflowID: eff.WorkflowID, TaskID: eff.TaskID})
	if err != nil {
		return 0, err
	}
	rev, err := writeBucket(ctx, c.log, cacheBucket, func(ctx context.Context) (uint64, error) { return kv.Put(ctx, eff.Key, b) })
	if errors.Is(err, eventlog.ErrNoStorage) || errors.Is(err, eventlog.ErrOutOfFiles) {
		// A cache: the output is not kept, and the next task with its key
		// runs. Failed, the effect would be tried again for its 5
		// minutes, refused each time until the store has room, a warning
		// each.
		c.counts.WithLabelValues("error").Inc()
		if !c.refused.Swap(true) {
			c.logger.Warn("task outputs not cached until the cache's store has room: the tasks run again", logkey.Err, err)
		}
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("cache task output: %w", err)
	}
	if c.refused.Swap(false) {
		c.logger.Info("task outputs cached again")
	}
	c.counts.WithLabelValues("stored").Inc()
	return rev, nil
}

// drop removes the output cached under key, which holds a value found to
// be secret since (engine.Uncache): a purge, which reads as no entry at
// once and drops the revision from the bucket's stream. The stream's
// files may keep its bytes until JetStream compacts the block that holds
// them (a KV bucket's stream denies the secure delete of a message, and a
// bucket made so cannot be changed to allow it). A key with no entry is
// left as it is: a purge writes a marker, and a workflow's news may name
// the same output again. An entry written after the read finds none is
// its writer's to take out again (cacheOutput).
func (c *outputCache) drop(ctx context.Context, key string) error {
	kv, err := c.existing(ctx)
	if err != nil || kv == nil {
		return err
	}
	for {
		entry, err := kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil
		}
		var rev uint64 // a read that failed otherwise: purged whatever it holds
		if err == nil {
			rev = entry.Revision()
		}
		if err := c.purge(ctx, key, rev); !errors.Is(err, errReplaced) {
			return err
		}
		// Replaced since the read (purged by its writer, or written
		// again): read again.
	}
}

// dropTasks removes the outputs that the tasks taskIDs of workflow wfID
// cached, whatever their keys (engine.UncacheTasks): it reads every entry
// of the bucket (33 µs an entry), for the few workflows whose definition
// does not parse and that mask the output of a task completed under it
// (an earlier version's record). An entry written before entries named
// their task is not found; nor is one a task of another workflow wrote,
// from which a task of wfID was completed.
func (c *outputCache) dropTasks(ctx context.Context, wfID string, taskIDs []string) error {
	kv, err := c.existing(ctx)
	if err != nil || kv == nil {
		return err
	}
	listing, cancel := context.WithCancel(ctx)
	keys, err := kv.ListKeys(listing)
	if err != nil {
		cancel()
		return fmt.Errorf("list the task output cache: %w", err)
	}
	defer func() {
		// The lister's goroutine ends once its context is, or its
		// channel read to the end: a send may be blocked on it.
		cancel()
		for range keys.Keys() {
		}
	}()
	for key := range keys.Keys() {
		entry, err := kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // purged, or expired, since listed
		}
		if err != nil {
			return fmt.Errorf("read the task output cache: %w", err)
		}
		var e cachedOutput
		if json.Unmarshal(entry.Value(), &e) != nil || e.WorkflowID != wfID || !slices.Contains(taskIDs, e.TaskID) {
			continue
		}
		// Replaced since the read: by its writer's purge, or by another
		// task's output, which is not this workflow's to purge.
		if err := c.purge(ctx, key, entry.Revision()); err != nil && !errors.Is(err, errReplaced) {
			return err
		}
	}
	return ctx.Err()
}

// errReplaced: the revision a purge expected is not the key's last.
var errReplaced = errors.New("cached output replaced")

// purge purges key if its last revision is rev (0: any), and counts an
// output dropped; errReplaced if it is not, and nothing is written. As
// drop, it does not make the bucket (existing).
func (c *outputCache) purge(ctx context.Context, key string, rev uint64) error {
	kv, err := c.existing(ctx)
	if err != nil || kv == nil {
		return err
	}
	var opts []jetstream.KVDeleteOpt
	if rev != 0 {
		opts = append(opts, jetstream.LastRevision(rev))
	}
	_, err = writeBucket(ctx, c.log, cacheBucket, func(ctx context.Context) (uint64, error) { return 0, kv.Purge(ctx, key, opts...) })
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return errReplaced
	}
	if err != nil {
		return fmt.Errorf("drop cached task output: %w", err)
	}
	c.counts.WithLabelValues("dropped").Inc()
	return nil
}
