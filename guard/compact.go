package guard

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/executor"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/internal/logkey"
	"github.com/flowvault/flowvault/masking"
	"github.com/flowvault/flowvault/projections/executions"
	"github.com/flowvault/flowvault/secrets"
)

// Ended lists workflows waiting for compaction.
type Ended interface {
	// AwaitingCompaction lists the workflows that ended at or before
	// endedBy (Unix ms), oldest first, after after (one it listed before;
	// the zero Ended: from the first).
	AwaitingCompaction(ctx context.Context, endedBy int64, after executions.Ended, limit int) ([]executions.Ended, error)
}

// Submitter runs triggers against workflows.
type Submitter interface {
	Submit(ctx context.Context, wfID string, trig engine.Trigger, meta executor.Meta) (executor.Outcome, error)
}

// KeyDestroyer erases data keys for good.
type KeyDestroyer interface {
	// DestroyKeys erases a batch of keys; pooled keys of one page cost one
	// rewrite of it. It erases all it can, and returns the keys it could
	// not and may later (kept), and why; secrets.DamagedKeys(err) names
	// those kept that no later call erases until their page is restored.
	DestroyKeys(ctx context.Context, ids []string) (kept []string, err error)
}

// KeyRefuser refuses a data key that another process destroyed
// (*secrets.Keys).
type KeyRefuser interface {
	Destroyed(id string)
}

// Shredded refuses, on this engine, the secrets key of each workflow the
// read model folds compacted (executions.Shredder), whichever engine's
// compaction destroys it.
type Shredded struct{ Keys KeyRefuser }

// Shred implements executions.Shredder.
func (s Shredded) Shred(wfID, recorded string) { s.Keys.Destroyed(secretsKey(wfID, recorded)) }

// Compactor destroys the secrets key of every workflow that ended (or was
// removed) at least Delay ago: first it appends workflow.compacted (which
// the decider refuses unless the workflow is still terminal or removed, so
// a restarted workflow keeps its key), then it erases the keys of the pass
// in one batch. A workflow with no key is compacted too when it masks a
// cached output (engine.Workflow.AwaitsCompaction), for the purges its
// compaction performs first, and has no key erased. Whatever was
// sealed under them — _secrets data in the log, in read models, in backups
// — can never be decrypted again, even with the master key. Data under
// _masked uses the other key and survives, so restarts still have it.
type Compactor struct {
	Ended    Ended
	Engine   Submitter
	Keys     KeyDestroyer
	Delay    time.Duration
	Interval time.Duration
	Logger   *slog.Logger
	Now      func() time.Time
	// After waits between passes (time.After when nil).
	After func(time.Duration) <-chan time.Time
	// SweepEvery is how often Run sweeps for keys of compacted workflows
	// that are still there (Sweep; 0: never). An engine killed between a
	// pass's compacted records and its erasure leaves those keys, and no
	// other engine's pass lists the workflows again: without a sweep here
	// they stay until an engine starts.
	SweepEvery time.Duration
	// Listed and States are what Sweep reads.
	Listed KeyLister
	States WorkflowState

	// unerased are keys of compacted workflows whose erasure failed, and
	// may not next time: the next pass tries them again (a restart leaves
	// them to Sweep). Only those, not their batch, and not one that can
	// never be erased (secrets.ErrInvalidKeyID), nor one whose page is
	// damaged (secrets.ErrKeyDamaged), which fails alike until the page is
	// restored: either would come first in every later batch, tried four
	// times a second. A damaged page's key is left to Sweep, which erases
	// the page whole once no live workflow holds a key of it, or the key
	// once the page reads again (at start-up, and every SweepEvery): no
	// memory holds it meanwhile, however many there are, and a restart
	// loses none.
	unerased []string
	// next is where the next pass's listing starts: after the last
	// workflow a full pass tried, and from the first (the zero Ended) once
	// a pass listed the rest. Workflows whose compaction keeps failing
	// stay first on the list: passes that each started from the first
	// listed them alone once there were a pass's worth, and the workflows
	// behind them kept their keys for good.
	next executions.Ended
	// passSize bounds the workflows one pass lists (0: the constant; tests
	// make it small).
	passSize int
	// failedCompactions and failedErasures say which failures of
	// workflows (by id) and keys (by key id) to log.
	failedCompactions, failedErasures repeats
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
	if c.After == nil {
		c.After = time.After
	}
	// wait grows while passes fail (the log out of storage, say), so that
	// a log that refuses every write is not asked again four times a
	// second, nor the failure logged each time.
	wait := c.Interval
	swept := c.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.After(wait):
		}
		if c.SweepEvery > 0 && c.Now().Sub(swept) >= c.SweepEvery {
			swept = c.Now()
			c.SweepAndLog(ctx)
		}
		// A full pass leaves more due (a backlog after a restart, a burst
		// of ends): the next starts at once, not a tick later.
		var failed bool
		for {
			n, more, err := c.Pass(ctx)
			if err != nil && ctx.Err() == nil {
				failed = true
				c.Logger.Warn("compaction pass failed", logkey.Err, err, logkey.Duration, min(wait*2, maxPassBackoff))
			}
			if err != nil || !more || n == 0 {
				break
			}
		}
		if ctx.Err() != nil {
			return
		}
		if failed {
			wait = min(wait*2, maxPassBackoff)
		} else {
			wait = c.Interval
		}
	}
}

// maxPassBackoff bounds the wait between failing passes.
const maxPassBackoff = 30 * time.Second

// unavailable reports whether err says the log takes no writes now (out
// of storage, not answering), or the key store does not answer: every
// other compaction, or erasure, would fail the same. The key store passes
// its connection's errors on as they are (eventlog.Unavailable).
func unavailable(err error) bool {
	return errors.Is(err, fault.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) || eventlog.Unavailable(err)
}

const (
	// compactors bounds the compactions in flight: only concurrent
	// appends let the log batch its syncs, and larger batches cost less
	// each. A backlog of ended workflows (after a restart) goes about 30%
	// faster with 512 than with 128 together with the back-to-back passes
	// above (fvbench's compaction section, 4 runs each); while ends come
	// at a steady rate a pass holds far fewer.
	compactors = 512
	// passSize bounds the workflows one pass lists.
	passSize = 4096
)

// Pass compacts every workflow that is due, as many as a pass lists after
// those the previous pass tried (see next), and returns how many it
// recorded as compacted and whether more may be due.
// (A workflow the read model lists a moment after its compaction is
// listed again, and only its key erased again.) Pass is not safe for
// concurrent use.
func (c *Compactor) Pass(ctx context.Context) (compacted int, more bool, err error) {
	size := cmp.Or(c.passSize, passSize)
	ended, err := c.Ended.AwaitingCompaction(ctx, c.Now().UnixMilli()-c.Delay.Milliseconds(), c.next, size)
	if err != nil {
		return 0, false, err
	}
	var (
		mu  sync.Mutex
		ids = c.unerased
		wg  sync.WaitGroup
		// stop is the first error saying the log takes no writes.
		stop error
	)
	due := make(chan string)
	for range min(compactors, len(ended)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for wfID := range due {
				mu.Lock()
				stopped := stop != nil
				mu.Unlock()
				if stopped {
					continue
				}
				id, appended, err := c.compact(ctx, wfID)
				if err != nil && unavailable(err) && ctx.Err() == nil {
					// The log refuses writes: the rest of the pass would
					// fail alike, each with its own line. Stop it; the
					// pass's error says why, once.
					mu.Lock()
					if stop == nil {
						stop = err
					}
					mu.Unlock()
					continue
				}
				if err != nil {
					if ctx.Err() != nil {
						continue // the shutdown, not a failure
					}
					// The next pass retries it.
					if ok, left := c.failedCompactions.log(wfID, c.Now()); ok {
						c.Logger.Warn("compaction failed", logkey.WorkflowID, wfID, logkey.Err, err, logkey.Suppressed, left)
					}
					continue
				}
				mu.Lock()
				if id != "" {
					ids = append(ids, id)
				}
				if appended {
					compacted++
				}
				mu.Unlock()
			}
		}()
	}
	for _, e := range ended {
		mu.Lock()
		stopped := stop != nil
		mu.Unlock()
		if ctx.Err() != nil || stopped {
			break
		}
		due <- e.WorkflowID
	}
	close(due)
	wg.Wait()
	// Recorded as compacted: now the keys go, for good. A crash here
	// leaves them; the next pass does not list those workflows, so Sweep
	// at start-up erases such leftovers.
	c.unerased = nil
	more = len(ended) == size
	switch {
	case stop != nil || ctx.Err() != nil:
		// Some were not tried: the next pass lists them again.
	case more:
		c.next = ended[len(ended)-1]
	default:
		c.next = executions.Ended{}
	}
	if stop != nil {
		more = false
		stop = fmt.Errorf("the log takes no writes, pass stopped after %d of %d due workflows: %w", compacted, len(ended), stop)
	}
	if len(ids) == 0 {
		return compacted, more, stop
	}
	// A workflow the read model lists again (it lags) names the key the
	// last pass kept a second time: DestroyKeys would keep each copy, and
	// every such pass would carry one more.
	slices.Sort(ids)
	ids = slices.Compact(ids)
	kept, err := c.Keys.DestroyKeys(ctx, ids)
	damaged := secrets.DamagedKeys(err)
	c.unerased = slices.DeleteFunc(kept, func(id string) bool { return slices.Contains(damaged, id) })
	switch {
	case err == nil:
	case unavailable(err) || ctx.Err() != nil:
		// The key store does not answer: the next pass waits longer.
		return compacted, false, errors.Join(stop, fmt.Errorf("erase the keys of %d compacted workflows, %d kept: %w", len(ids), len(c.unerased), err))
	default:
		// As a workflow whose compaction failed: logged, tried again by
		// the next pass (an invalid id or a damaged page's key: once, see
		// unerased), and no reason for that pass to wait longer. Logged
		// when a key fails for the first time (or warnEvery after its
		// last line), or an id names no key: one failing again and again
		// would repeat the line every pass. A damaged page's key is not
		// carried, but a lagging list names it again at every pass.
		warn, left := len(c.unerased) == 0 && len(damaged) == 0 || errors.Is(err, secrets.ErrInvalidKeyID), 0
		now := c.Now()
		for _, id := range slices.Concat(c.unerased, damaged) {
			if ok, n := c.failedErasures.log(id, now); ok {
				warn, left = true, max(left, n)
			}
		}
		if warn {
			c.Logger.Warn("erasing keys of compacted workflows failed", logkey.Err, err, logkey.Suppressed, left)
		}
	}
	return compacted, more, stop
}

// compact records workflow wfID as compacted and returns the id of the
// key to erase (none when it was restarted meanwhile, since it keeps it,
// or when it has none) and whether it appended the record (not when
// another did first).
func (c *Compactor) compact(ctx context.Context, wfID string) (keyID string, appended bool, err error) {
	out, err := c.Engine.Submit(ctx, wfID, engine.Compact{}, executor.Meta{RequestID: "compact:" + wfID})
	switch {
	case errors.Is(err, fault.ErrConflict):
		return "", false, nil
	case err != nil:
		return "", false, err
	case out.State == nil:
		return "", false, fmt.Errorf("compacted workflow %s: no state", wfID)
	case out.State.ShreddedNothing:
		// No key recorded and nothing sealed under the one named after it
		// (a workflow that sealed data before workflow.secrets_sealed
		// existed shreds it): compacted only for its purges, it has no
		// key, and erasing the one named after it costs the key store two
		// reads for nothing.
		return "", out.Appended, nil
	}
	return secretsKeyOf(out.State), out.Appended, nil
}

// KeyLister lists the keys that may still need erasing.
type KeyLister interface {
	// DataKeyIDs lists the keys whose ids start with prefix; on failure,
	// with those of every bucket it could list.
	DataKeyIDs(ctx context.Context, prefix string) (map[string]time.Time, error)
	// PooledKeyIDs lists the pages it can read, and fails naming those
	// it cannot, one error per page (*secrets.DamagedPageError for a
	// damaged one), or per keyring term that does not match the pages
	// wrapped under it (secrets.ErrKeyringMismatch).
	PooledKeyIDs(ctx context.Context) ([]string, error)
	// EraseDamagedPage erases a damaged key page whole, and reports
	// whether it did.
	EraseDamagedPage(ctx context.Context, page string) (bool, error)
	// EraseSuperseded erases the revisions a crash left behind a rewrite.
	EraseSuperseded(ctx context.Context) (int, error)
}

// WorkflowState reads a workflow's state, finds which workflow a pooled
// key belongs to, and whether a removed one still awaits compaction.
type WorkflowState interface {
	Workflow(ctx context.Context, id string) (*engine.Workflow, error)
	KeyHolder(ctx context.Context, keyID string) (wfID string, ok bool, err error)
	RemovedAwaitingCompaction(ctx context.Context, wfID string) (bool, error)
}

// Sweep erases the secrets keys of workflows already compacted (a crash
// between the event and the erasure) and returns how many it erased. It
// first erases what a crash left of a page's rewrite: the revision before
// it, which holds the keys the rewrite zeroed, and which neither the
// listings below nor any later compaction pass would name again. That
// erasure failing keeps no key from the rest of the sweep, which goes on
// and fails naming it: nothing after it needs it done first, as a page's
// rewrite (DestroyKeys) erases a revision left behind it before storing
// its own, and the erasure of a key or a damaged page takes every
// revision.
//
// A listing of the key store that fails (a page it cannot read, a bucket
// that does not answer) keeps only the keys it did not list: the sweep
// erases the spent keys of what it listed, and fails naming what it could
// not; a damaged page, though, it erases whole once no live workflow
// holds a key of it (eraseDamagedPage). A key whose holder or workflow the
// read model cannot read is kept whatever the others: whether its
// workflow is done with it is unknown, and a key erased too soon destroys
// what a live workflow sealed.
func (c *Compactor) Sweep(ctx context.Context) (int, error) {
	keys, states := c.Listed, c.States
	_, unsuperseded := keys.EraseSuperseded(ctx)
	if unsuperseded != nil {
		unsuperseded = fmt.Errorf("erase superseded key revisions: %w", unsuperseded)
	}
	var (
		gone     []string
		unjudged unjudged
	)
	judge := func(id string, spent bool, err error) {
		switch {
		case err != nil:
			unjudged.add(id, err)
		case spent:
			gone = append(gone, id)
		}
	}
	// Keys named after their workflows.
	named, unnamed := keys.DataKeyIDs(ctx, "wf")
	if unnamed != nil {
		unnamed = fmt.Errorf("list the keys named after workflows: %w", unnamed)
	}
	for id := range named {
		rest, _ := strings.CutPrefix(id, "wf.")
		wfID, ok := strings.CutSuffix(rest, "."+string(masking.KindSecrets))
		if !ok {
			continue
		}
		// A workflow not found may be a child whose input was sealed a
		// moment ago, its start not applied yet: its key stays. One whose
		// log recorded the key (a child's start names it) was removed.
		holder, recorded, err := states.KeyHolder(ctx, id)
		if err != nil {
			judge(id, false, err)
			continue
		}
		spent, err := keySpent(ctx, states, wfID, id, recorded && holder == wfID)
		judge(id, spent, err)
	}
	// Pooled keys: a key no workflow recorded is one nobody took yet, or
	// one whose taker lost a race; it sealed nothing that was kept. A page
	// the listing cannot read keeps its own keys, not the others' nor the
	// named ones: the sweep erases what it listed and fails with the page
	// named (unlisted), unless it erases a damaged page whole.
	pooled, unlisted := keys.PooledKeyIDs(ctx)
	var (
		erased int
		unread []error
	)
	for _, err := range joined(unlisted) {
		var d *secrets.DamagedPageError
		if !errors.As(err, &d) {
			unread = append(unread, err)
			continue
		}
		n, err := c.eraseDamagedPage(ctx, d)
		erased += n
		if err != nil {
			unread = append(unread, err)
		}
	}
	unlisted = errors.Join(unread...)
	for _, id := range pooled {
		wfID, ok, err := states.KeyHolder(ctx, id)
		if err != nil || !ok {
			judge(id, false, err)
			continue
		}
		// A key's holder is recorded with its state: a workflow not found
		// was removed.
		spent, err := keySpent(ctx, states, wfID, id, true)
		judge(id, spent, err)
	}
	// An id that cannot name a key (a damaged record's) erases nothing:
	// DestroyKeys would refuse it without keeping it, and the count of
	// what the sweep erased would include it.
	errs := []error{unsuperseded, unnamed, unlisted, unjudged.err()}
	gone = slices.DeleteFunc(gone, func(id string) bool {
		err := secrets.CheckKeyID(id)
		if err != nil {
			errs = append(errs, err)
		}
		return err != nil
	})
	if len(gone) == 0 {
		return erased, errors.Join(errs...)
	}
	kept, err := c.Keys.DestroyKeys(ctx, gone)
	return erased + len(gone) - len(kept), errors.Join(append(errs, err)...)
}

// joined returns the errors err joins, or err alone.
func joined(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	if err == nil {
		return nil
	}
	return []error{err}
}

// eraseDamagedPage erases key page d, which does not open, when no live
// workflow holds a key of it, and returns how many spent keys it erased
// with it. Judged by the read model alone, as the page cannot be read: a
// key no workflow recorded sealed nothing that was kept (see Sweep), or
// was taken a moment ago from a page whose stored form is lost already.
// Its spent keys cannot be erased on their own, and they open to anyone
// who has the master key and decrypts the page without checking its tag:
// kept, a damaged page would keep the values of compacted workflows for
// good. A page with a live key is kept, and named in the sweep's error:
// its workflow fails to open its values (ErrKeyDamaged) rather than read
// them as "***" as it would a destroyed key's, and a restore of the page
// or of the keyring brings them back. The page goes at the first sweep
// after its last live key is spent. A key the read model cannot judge
// keeps the page too. The erasure is logged, whatever it counts: a page
// whose keys no workflow recorded counts none.
func (c *Compactor) eraseDamagedPage(ctx context.Context, d *secrets.DamagedPageError) (int, error) {
	keys, states := c.Listed, c.States
	var (
		spent, live int
		first       string // the first live key's workflow
	)
	for _, id := range d.Keys() {
		wfID, held, err := states.KeyHolder(ctx, id)
		done := !held
		if err == nil && held {
			done, err = keySpent(ctx, states, wfID, id, true)
		}
		switch {
		case err != nil:
			return 0, fmt.Errorf("%w; kept, the read model did not say whether key %s is spent: %w", d, id, err)
		case !done:
			if live++; first == "" {
				first = wfID
			}
		case held:
			spent++
		}
	}
	if live > 0 {
		return 0, fmt.Errorf("%w; kept while live workflows hold %d of its keys (%s the first), erased whole once they are spent", d, live, first)
	}
	erased, err := keys.EraseDamagedPage(ctx, d.Page)
	if err != nil || !erased {
		return 0, err
	}
	cmp.Or(c.Logger, slog.New(slog.DiscardHandler)).Warn("erased a damaged key page whole, as no live workflow held a key of it; count: the keys of compacted workflows erased with it",
		logkey.Page, d.Page, logkey.Count, spent)
	return spent, nil
}

// unjudged counts the keys a sweep kept because the read model could not
// say whether they are spent, and keeps the first one's error: a read
// model that fails, fails for every key, and one line naming them all
// would be as long as the list.
type unjudged struct {
	n     int
	first error
}

func (u *unjudged) add(id string, err error) {
	if u.n++; u.first == nil {
		u.first = fmt.Errorf("key %s: %w", id, err)
	}
}

func (u *unjudged) err() error {
	if u.n == 0 {
		return nil
	}
	return fmt.Errorf("%d keys kept, the read model did not say whether they are spent (the first: %w)", u.n, u.first)
}

// SweepAndLog sweeps (Sweep) and logs how many keys it erased, and why it
// failed if it did: a sweep goes on past a key it cannot erase, so one
// that fails may have erased the others, and its warning says how many.
func (c *Compactor) SweepAndLog(ctx context.Context) {
	erased, err := c.Sweep(ctx)
	switch {
	case err != nil && ctx.Err() == nil:
		c.Logger.Warn("compaction sweep failed", logkey.Count, erased, logkey.Err, err)
	case erased > 0:
		c.Logger.Info("erased keys of compacted workflows", logkey.Count, erased)
	}
}

// keySpent reports whether workflow wfID is done with secrets key id: it
// was compacted (and not restarted since); it was compacted, then
// restarted, and seals under another key or nothing; or, when a missing
// state means it was removed, it has left the compaction list. It fails
// when the read model cannot say.
func keySpent(ctx context.Context, states WorkflowState, wfID, id string, missingMeansRemoved bool) (bool, error) {
	w, err := states.Workflow(ctx, wfID)
	switch {
	case errors.Is(err, fault.ErrNotFound) && missingMeansRemoved:
		waiting, err := states.RemovedAwaitingCompaction(ctx, wfID)
		if err != nil {
			return false, fmt.Errorf("whether removed workflow %s awaits compaction: %w", wfID, err)
		}
		return !waiting, nil
	case errors.Is(err, fault.ErrNotFound):
		return false, nil // a start not applied yet: see Sweep
	case err != nil:
		return false, fmt.Errorf("workflow %s: %w", wfID, err)
	}
	switch {
	case w.Compacted && w.Terminal():
		return true, nil
	case !w.SealsSecrets:
		// Restarted after a compaction. Data sealed before keys were
		// recorded keeps its key.
		return !w.Holds(masking.KindSecrets), nil
	}
	return secretsKeyOf(w) != id, nil
}
