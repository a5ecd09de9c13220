package system

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"runtime/metrics"
	"sync"
	"time"
)

// Budget bounds one run of user code: an INLINE or LAMBDA script, a
// JavaScript SWITCH expression or DO_WHILE loop condition, a
// JSON_JQ_TRANSFORM query. A run that exceeds its budget is stopped and
// fails its task; the engine carries on.
type Budget struct {
	// Time is the wall-clock limit of one run.
	Time time.Duration
	// Memory bounds the heap a run may hold on to, in bytes. It also
	// derives the largest array and string a single built-in call may
	// produce (see scriptLimits).
	Memory int64
	// MaxCallStack bounds the JavaScript call depth.
	MaxCallStack int
}

// Default budget values.
const (
	DefaultScriptTime         = 5 * time.Second
	DefaultScriptMemory       = 64 << 20
	DefaultScriptMaxCallStack = 1024
)

func (b Budget) withDefaults() Budget {
	if b.Time <= 0 {
		b.Time = DefaultScriptTime
	}
	if b.Memory <= 0 {
		b.Memory = DefaultScriptMemory
	}
	if b.MaxCallStack <= 0 {
		b.MaxCallStack = DefaultScriptMaxCallStack
	}
	return b
}

// Errors a run stopped by its budget fails with.
var (
	ErrTimeBudget   = errors.New("script exceeded its time budget")
	ErrMemoryBudget = errors.New("script exceeded its memory budget")
)

func budgetError(b Budget, err error) error {
	switch {
	case errors.Is(err, ErrTimeBudget):
		return fmt.Errorf("%w of %v", ErrTimeBudget, b.Time)
	case errors.Is(err, ErrMemoryBudget):
		return fmt.Errorf("%w of %d MiB", ErrMemoryBudget, b.Memory>>20)
	}
	return err
}

// scriptSlots bounds the runs in progress at once. The memory watch below
// measures the process heap, which every concurrent run shares: bounding
// concurrency bounds both the total memory scripts may take and how much
// one run's measurement can be inflated by the others.
var scriptSlots = make(chan struct{}, max(4, runtime.GOMAXPROCS(0)))

func acquireSlot(ctx context.Context) (release func(), err error) {
	select {
	case scriptSlots <- struct{}{}:
		return func() { <-scriptSlots }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// watchInterval is how often a run's heap is sampled.
const watchInterval = 2 * time.Millisecond

// watch enforces b on a run in progress: when the time budget passes, ctx
// ends, or the heap grows past the memory budget, it calls stop once with
// the reason (ErrTimeBudget, ErrMemoryBudget or ctx's error). The returned
// function ends the watch and reports the reason it stopped the run, if
// it did.
//
// Go has no per-goroutine allocation accounting, so the memory budget is
// measured on the process heap, in two steps. Every Memory bytes the
// process allocates while the run goes on (a cheap counter, sampled every
// watchInterval), the watch collects garbage and reads the live heap. The
// run has exceeded its budget when the live heap exceeds
//
//   - the heap objects (live or garbage) when the run started, plus
//     Memory: conservative, garbage present at the start only raises the
//     limit; or
//   - the live heap at the previous collection of this watch, plus Memory:
//     the run kept more than its budget since then.
//
// A script that allocates a lot of short-lived garbage is therefore not
// stopped (the watch then looks less often, up to every 8×Memory bytes, to
// spare collections), while one that keeps what it allocates (the runaway
// loop appending to an array) is, within about twice its budget. Other
// goroutines' retained allocations during the run count too: concurrency
// is bounded (scriptSlots), and at the default budget this is a
// theoretical concern.
func watch(ctx context.Context, b Budget, stop func(reason error)) (done func() error) {
	var (
		reason error
		quit   = make(chan struct{})
		exited = make(chan struct{})
	)
	limit := uint64(b.Memory)
	base := heapObjects()
	step := limit
	next := heapAllocs() + step
	var prevLive uint64
	deadline := time.NewTimer(b.Time)
	go func() {
		defer close(exited)
		defer deadline.Stop()
		tick := time.NewTicker(watchInterval)
		defer tick.Stop()
		fire := func(err error) {
			reason = err
			stop(err)
		}
		for {
			select {
			case <-quit:
				return
			case <-ctx.Done():
				fire(ctx.Err())
				return
			case <-deadline.C:
				fire(ErrTimeBudget)
				return
			case <-tick.C:
				if heapAllocs() < next {
					continue
				}
				live := liveAfterGC()
				if live > base+limit || (prevLive > 0 && live > prevLive+limit) {
					fire(ErrMemoryBudget)
					return
				}
				if prevLive > 0 && live > prevLive+limit/2 {
					step = limit // growing: keep looking closely
				} else {
					step = min(step*2, 8*limit) // garbage: look less often
				}
				prevLive = live
				next = heapAllocs() + step
			}
		}
	}()
	return func() error {
		close(quit)
		<-exited // the watch has stopped: reason is settled
		return reason
	}
}

// gcMu serializes the watches' collections: runs that look at the same
// moment share one collection.
var gcMu sync.Mutex

// liveAfterGC collects garbage (unless a collection completed while it
// waited for another watch's) and returns the live heap.
func liveAfterGC() uint64 {
	cycles := gcCycles()
	gcMu.Lock()
	if gcCycles() == cycles {
		runtime.GC()
	}
	gcMu.Unlock()
	return heapLive()
}

var heapSamples = []string{"/memory/classes/heap/objects:bytes", "/gc/heap/live:bytes", "/gc/cycles/total:gc-cycles", "/gc/heap/allocs:bytes"}

func readHeapSample(i int) uint64 {
	s := []metrics.Sample{{Name: heapSamples[i]}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

// heapObjects is the memory held by heap objects, live or not yet swept.
func heapObjects() uint64 { return readHeapSample(0) }

// heapLive is the live heap as of the last garbage collection.
func heapLive() uint64 { return readHeapSample(1) }

func gcCycles() uint64 { return readHeapSample(2) }

// heapAllocs counts the bytes the process ever allocated on the heap.
func heapAllocs() uint64 { return readHeapSample(3) }
