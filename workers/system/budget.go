package system

import (
	"context"
	"errors"
	"fmt"
	"math"
	"reflect"
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

// Limits on the source of user code, checked before it is compiled, which
// happens before any budget applies. goja's parser and both compilers
// recurse on the Go stack, whose overflow kills the process (fatal error:
// stack overflow) instead of failing the run: measured on 64 KiB of
// source, the deepest a source that size can nest, goja's parser takes up
// to 134 MB of stack for parentheses, both compilers up to 67 MB (goja:
// chained arrow functions) and 134 MB (gojq: `1+1+…`), against Go's 1 GB
// limit. goja also folds constant expressions while compiling, in time
// quadratic in how deep they nest (7 s for `1+1+…` 64 KiB long), and
// exponential for && || ?? chains over constants (`1&&1&&…`: 30 terms run
// for minutes).
const (
	// maxSourceBytes bounds the source of a script or a query: 64 KiB is
	// far more than a workflow's scripts hold, and keeps the worst case
	// above under 1/7 of the stack limit.
	maxSourceBytes = 64 << 10
	// maxSourceNesting bounds how deep brackets, braces, parentheses and
	// arrow functions nest in JavaScript source (checked on the text, as
	// the parser recurses on it): parsing then takes under 1 MB of stack.
	maxSourceNesting = 256
	// maxSyntaxDepth bounds how deep a parsed JavaScript syntax tree nests
	// (long chains of operators nest too): compiling then takes a few MB of
	// stack and milliseconds.
	maxSyntaxDepth = 1000
	// maxQueryDepth is maxSyntaxDepth for jq, whose syntax tree nests a
	// list (an array of 5000 literal elements nests 5000 deep): gojq's
	// compiler then takes at most 42 MB of stack and does not fold
	// constants.
	maxQueryDepth = 10000
	// maxConstantChain bounds a chain of && || ?? whose first operand is a
	// constant: goja's compile time doubles with each term.
	maxConstantChain = 16
)

// sourceSize checks the size of a source: what names it ("script",
// "queryExpression").
func sourceSize(what, src string) error {
	if len(src) > maxSourceBytes {
		return fmt.Errorf("%s of %d bytes is over the limit of %d bytes", what, len(src), maxSourceBytes)
	}
	return nil
}

// syntaxDepth walks a syntax tree, the nodes being pointers to structs of
// root's package (goja's ast, gojq's Query), depth first and without
// recursion; it returns an error as soon as the tree nests deeper than
// limit, or visit, if not nil, returns one for a node. A node met again
// (goja lists a function's variable declarations twice) is not walked
// again.
func syntaxDepth(what string, root any, limit int, visit func(node any) error) error {
	type item struct {
		v     reflect.Value
		depth int
	}
	pkg := reflect.TypeOf(root).Elem().PkgPath()
	seen := map[uintptr]bool{}
	stack := []item{{reflect.ValueOf(root), 0}}
	for len(stack) > 0 {
		it := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		v, depth := it.v, it.depth
		switch v.Kind() {
		case reflect.Pointer:
			if v.IsNil() || v.Type().Elem().Kind() != reflect.Struct || v.Type().Elem().PkgPath() != pkg || seen[v.Pointer()] {
				continue
			}
			seen[v.Pointer()] = true
			if depth++; depth > limit {
				return fmt.Errorf("%s nests more than %d levels deep", what, limit)
			}
			if visit != nil && v.CanInterface() {
				if err := visit(v.Interface()); err != nil {
					return err
				}
			}
			v = v.Elem()
		case reflect.Interface:
			if !v.IsNil() {
				stack = append(stack, item{v.Elem(), depth})
			}
			continue
		case reflect.Slice:
			for i := v.Len() - 1; i >= 0; i-- {
				stack = append(stack, item{v.Index(i), depth})
			}
			continue
		case reflect.Struct:
			if v.Type().PkgPath() != pkg {
				continue
			}
		default:
			continue
		}
		for i := v.NumField() - 1; i >= 0; i-- { // the first field is walked first
			stack = append(stack, item{v.Field(i), depth})
		}
	}
	return nil
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

// watch enforces b on a run in progress, registered with scriptHeap: when
// the time budget passes, ctx ends, or the heap grows past the memory
// budget, it calls stop once with the reason (ErrTimeBudget,
// ErrMemoryBudget or ctx's error). The returned function ends the watch
// and reports the reason it stopped the run, if it did.
func watch(ctx context.Context, b Budget, run *memRun, stop func(reason error)) (done func() error) {
	return scriptHeap.watch(ctx, b, run, stop)
}

// scriptHeap watches the memory of every run of user code. A run begins
// before its watch and ends once what it ran in (a goja runtime, a gojq
// iterator) is dropped: until then its memory is live.
var scriptHeap = &memWatch{heap: processHeap}

// heapSource reads the process heap: objects is the memory held by heap
// objects, live or not yet swept; liveAfterGC collects garbage and
// returns the live heap; allocs counts the bytes ever allocated; cycles
// counts the garbage collections completed.
type heapSource struct {
	objects, liveAfterGC, allocs, cycles func() uint64
}

var processHeap = heapSource{objects: heapObjects, liveAfterGC: liveAfterGC, allocs: heapAllocs, cycles: gcCycles}

// A memWatch enforces the memory budgets of the runs in progress.
//
// Go has no per-goroutine allocation accounting, so budgets are measured
// on the process heap, which every run in progress shares. Every Memory
// bytes the process allocates while a run goes on (a cheap counter,
// sampled every watchInterval), its watch collects garbage and reads the
// live heap. The runs in progress have exceeded their budgets when the
// live heap exceeds
//
//   - the heap objects (live or garbage) when the oldest of them began,
//     plus the sum of their budgets: conservative, garbage present at the
//     start only raises the limit; or
//   - the live heap at the watch's previous collection, plus the sum of
//     their budgets: they kept more than that since then.
//
// Measuring each run against its own budget alone made concurrent runs
// fail each other: three scripts keeping 40 MB each, well within 64 MiB,
// saw 80 MB grow under them. With the sum, no run fails while every run
// keeps within its budget; when the sum is exceeded, some run is over
// budget, and as the heap cannot tell which, every watch that looks stops
// its run. One run alone is held to its own budget, as before. A run that
// ended counts until two collections have completed since (the first may
// have begun before its memory became garbage).
//
// A script that allocates a lot of short-lived garbage is not stopped (the
// watch then looks less often, up to every 8×Memory bytes, to spare
// collections), while one that keeps what it allocates (the runaway loop
// appending to an array) is, within about twice the budgets of the runs in
// progress. Other goroutines' retained allocations during a run count too:
// concurrency is bounded (scriptSlots), and at the default budget this is
// a theoretical concern.
type memWatch struct {
	heap heapSource

	mu   sync.Mutex
	runs map[*memRun]struct{}
	// forgotAt is the collections completed when forget last looked.
	forgotAt uint64
}

// A memRun is one run: the heap objects when it began, its memory budget,
// and, once it ended, the collections completed then.
type memRun struct {
	base, limit uint64
	ended       bool
	endCycles   uint64
}

func (m *memWatch) begin(limit uint64) *memRun {
	r := &memRun{base: m.heap.objects(), limit: limit}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.runs == nil {
		m.runs = map[*memRun]struct{}{}
	}
	m.runs[r] = struct{}{}
	return r
}

// end marks r ended and, once a collection has completed since it last
// did, forgets the runs whose memory has been collected. over forgot them
// too, but only a watch that looks calls it, and a watch looks once the
// process has allocated its run's budget: a run of a few milliseconds
// never does, and every such run was kept for as long as the process ran
// (66 MB for a million runs).
func (m *memWatch) end(r *memRun) {
	cycles := m.heap.cycles()
	m.mu.Lock()
	defer m.mu.Unlock()
	r.ended, r.endCycles = true, cycles
	if cycles != m.forgotAt {
		m.forget(cycles)
	}
}

// forget drops the runs that ended two collections or more before cycles:
// the first may have begun before their memory became garbage. m.mu is
// held.
func (m *memWatch) forget(cycles uint64) {
	m.forgotAt = cycles
	for r := range m.runs {
		if r.ended && cycles >= r.endCycles+2 {
			delete(m.runs, r)
		}
	}
}

// over reports whether the runs have exceeded their budgets: the live
// heap, read by a watch whose previous reading was prevLive (0 at its
// first), grew past the sum of their budgets since the oldest of them
// began, or since that reading.
func (m *memWatch) over(live, prevLive uint64) bool {
	cycles := m.heap.cycles()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.forget(cycles)
	base, sum := uint64(math.MaxUint64), uint64(0)
	for r := range m.runs {
		base = min(base, r.base)
		sum += r.limit
	}
	return live > base+sum || (prevLive > 0 && live > prevLive+sum)
}

func (m *memWatch) watch(ctx context.Context, b Budget, run *memRun, stop func(reason error)) (done func() error) {
	var (
		reason error
		quit   = make(chan struct{})
		exited = make(chan struct{})
	)
	limit := run.limit
	step := limit
	next := m.heap.allocs() + step
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
				if m.heap.allocs() < next {
					continue
				}
				live := m.heap.liveAfterGC()
				if m.over(live, prevLive) {
					fire(ErrMemoryBudget)
					return
				}
				if prevLive > 0 && live > prevLive+limit/2 {
					step = limit // growing: keep looking closely
				} else {
					step = min(step*2, 8*limit) // garbage: look less often
				}
				prevLive = live
				next = m.heap.allocs() + step
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
