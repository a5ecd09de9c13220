package executor

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// A line gives free places to the workflows queued longest, never more
// than its limit, and drops a workflow wherever it is.
func TestLinePromotesInStartOrder(t *testing.T) {
	t.Parallel()
	now := time.UnixMilli(1_000_000)
	l := wfLine{Limit: 2, Holders: []wfPlace{{W: "a"}, {W: "b"}}, Queue: []wfPlace{{W: "c"}, {W: "d"}, {W: "e"}}}
	if got := l.promote(now); len(got) != 0 {
		t.Fatalf("full line promoted %v", got)
	}
	l.drop("a")
	l.drop("d") // ended while queued
	if got := l.promote(now); !slices.Equal(got, []string{"c"}) {
		t.Fatalf("promoted %v, want [c]", got)
	}
	l.Limit = 4 // a later start's definition raised it
	if got := l.promote(now); !slices.Equal(got, []string{"e"}) {
		t.Fatalf("promoted %v, want [e]", got)
	}
	for _, w := range []string{"b", "c", "e"} {
		if held, queued := l.has(w); !held || queued {
			t.Fatalf("%s: held %v, queued %v", w, held, queued)
		}
	}
	if len(l.Queue) != 0 || len(l.Holders) != 3 {
		t.Fatalf("holders %v, queue %v", l.Holders, l.Queue)
	}
}

// A line's bucket key is a digest: the definition's name and the key's
// value (a tenant, a correlation id) are not kept in the clear.
func TestLineKeyIsADigest(t *testing.T) {
	t.Parallel()
	k := lineKey("orders", "tenant-acme")
	if strings.Contains(k, "orders") || strings.Contains(k, "acme") || !strings.HasPrefix(k, "w.") {
		t.Fatalf("line key %q", k)
	}
	if lineKey("orders", "a\x00b") == lineKey("orders\x00a", "b") || k == lineKey("orders", "tenant-acm") {
		t.Fatal("distinct lines share a key")
	}
}

// A line nobody is in any more is deleted: lines keyed by a value of each
// start (a correlation id) would otherwise pile up in the bucket, each
// read by every engine's sweep every second.
func TestEmptiedLineIsDeleted(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, time.Minute)
	e := startExecutor(t, testutil.OpenLog(t, ""), nothingScheduled{}, Config{})
	rl := &engine.RateLimit{Limit: 1, Key: "order-7"}
	for _, id := range []string{"w1", "w2"} {
		if _, err := e.placeStart(ctx, "n", rl, id); err != nil {
			t.Fatal(err)
		}
	}
	kv, err := e.limits.bucket(ctx)
	if err != nil {
		t.Fatal(err)
	}
	lines := func() []string {
		t.Helper()
		keys, err := kv.ListKeysFiltered(ctx, "w.*")
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for k := range keys.Keys() {
			out = append(out, k)
		}
		return out
	}
	for i, id := range []string{"w1", "w2"} {
		if got := lines(); len(got) != 1 {
			t.Fatalf("before %s's end: lines %q, want one", id, got)
		}
		if err := e.freePlace(ctx, "n", rl.Key, id); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			if _, err := kv.Get(ctx, lineKey("n", rl.Key)); err != nil {
				t.Fatalf("w2 queued behind w1: its line is gone (%v)", err)
			}
		}
	}
	if got := lines(); len(got) != 0 {
		t.Fatalf("lines %q after every workflow of the line ended, want none", got)
	}
	// A line emptied meanwhile is no obstacle to the next start.
	if queued, err := e.placeStart(ctx, "n", rl, "w3"); err != nil || queued {
		t.Fatalf("start after the line emptied: queued %v, %v", queued, err)
	}
}

// holdSlots takes every effect slot of e until the test ends, or until
// the function it returns is called: what e does on a slot waits.
func holdSlots(t *testing.T, e *Executor) (release func()) {
	t.Helper()
	for range cap(e.sem) {
		e.sem <- struct{}{}
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			for range cap(e.sem) {
				<-e.sem
			}
		})
	}
	t.Cleanup(release)
	return release
}

// A rate-limited workflow's end is decided, and answered, while every
// effect slot is busy: the shard does not wait for one to give the place
// on (what holds them may be waiting for that shard).
func TestRateLimitedEndDoesNotWaitForEffectSlots(t *testing.T) {
	t.Parallel()
	e := startExecutor(t, testutil.OpenLog(t, ""), nothingScheduled{}, Config{Shards: 1, EffectConcurrency: 2})
	ctx := testutil.Context(t, 30*time.Second)
	startInline(ctx, t, e, "wf-rl-end", `{"name":"rl_end","rateLimitConfig":{"concurrentExecLimit":1},
	  "tasks":[{"name":"rl_end_task","taskReferenceName":"t"}]}`)
	holdSlots(t, e)
	reqCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := e.Submit(reqCtx, "wf-rl-end", engine.Terminate{Reason: "enough"}, Meta{}); err != nil {
		t.Fatalf("terminate while effect slots are busy: %v", err)
	}
}

// beforeAppend runs fn once before the first append to subject: what
// another engine does while a decision's record is on its way.
type beforeAppend struct {
	log     *eventlog.Log
	mu      sync.Mutex
	subject string
	fn      func()
}

func (b *beforeAppend) Append(ctx context.Context, subj string, envs []schemas.Envelope, expected uint64, opts ...eventlog.AppendOption) (uint64, error) {
	b.mu.Lock()
	fn := b.fn
	if subj == b.subject {
		b.fn = nil
	} else {
		fn = nil
	}
	b.mu.Unlock()
	if fn != nil {
		fn()
	}
	return b.log.Append(ctx, subj, envs, expected, opts...)
}

// A workflow retried after its end keeps the place it held when its
// end's place is given on (in the background) after the retry, whether
// the retry's record is in the log by then or on its way: the place was
// given on, the next workflow admitted and the retried one ran beside it,
// one over the limit.
func TestRetriedWorkflowKeepsItsPlace(t *testing.T) {
	const def = `{"name":"rl_retry","rateLimitConfig":{"concurrentExecLimit":1},"tasks":[{"name":"rl_retry_task","taskReferenceName":"t"}]}`
	for _, tc := range []struct {
		name   string
		during bool // the free runs while the retry's record is on its way
	}{
		{name: "retry recorded"},
		{name: "retry on its way", during: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l := testutil.OpenLog(t, "")
			hook := &beforeAppend{log: l}
			e := startAppendingThrough(t, l, hook, nil)
			ctx := testutil.Context(t, 30*time.Second)
			startInline(ctx, t, e, "wf-a", def)
			startInline(ctx, t, e, "wf-b", def)
			// The end's own free waits for a slot until the retry is
			// under way; then the test runs one where it means to (the
			// end's own, running too, runs no sooner).
			release := holdSlots(t, e)
			if _, err := e.Submit(ctx, "wf-a", engine.Terminate{Reason: "try again"}, Meta{}); err != nil {
				t.Fatal(err)
			}
			var freeErr error
			free := func() {
				release()
				freeErr = e.freePlace(ctx, "rl_retry", "", "wf-a")
			}
			if tc.during {
				hook.mu.Lock()
				hook.subject, hook.fn = subject("wf-a"), free
				hook.mu.Unlock()
			}
			if _, err := e.Submit(ctx, "wf-a", engine.Retry{}, Meta{}); err != nil {
				t.Fatalf("retry: %v", err)
			}
			if !tc.during {
				free()
			}
			if freeErr != nil {
				t.Fatal(freeErr)
			}
			kv, err := e.limits.bucket(ctx)
			if err != nil {
				t.Fatal(err)
			}
			entry, err := kv.Get(ctx, lineKey("rl_retry", ""))
			if err != nil {
				t.Fatal(err)
			}
			line := decodeLine(entry.Value())
			if held, _ := line.has("wf-a"); !held || len(line.Holders) != 1 {
				t.Fatalf("holders %v, want the retried wf-a's alone", line.Holders)
			}
			if _, queued := line.has("wf-b"); !queued {
				t.Fatalf("queue %v, want wf-b still in it", line.Queue)
			}
		})
	}
}

// What the log says of a place: a workflow whose restart, retry or rerun
// gave its place back (Re) holds it while that record may be on its way,
// not for good if it never shows.
func TestPlaceState(t *testing.T) {
	t.Parallel()
	now := time.UnixMilli(10_000_000)
	recent, old := now.UnixMilli()-1, now.Add(-takeGrace).UnixMilli()
	ended := &engine.Workflow{Seq: 7}
	ended.Status = conductor.WorkflowFailed
	running := &engine.Workflow{Seq: 8}
	running.Status = conductor.WorkflowRunning
	removed := running.Clone()
	removed.Removed = true
	queued := running.Clone()
	queued.Queued = true
	for _, tc := range []struct {
		name string
		p    wfPlace
		w    *engine.Workflow
		want lineState
	}{
		{"start on its way", wfPlace{At: recent}, nil, lineRunning},
		{"never recorded", wfPlace{At: old}, nil, lineGone},
		{"ended", wfPlace{At: recent}, ended, lineGone},
		{"run again on its way", wfPlace{At: recent, Re: 7}, ended, lineRunning},
		{"run again never recorded", wfPlace{At: old, Re: 7}, ended, lineGone},
		{"ended again since", wfPlace{At: recent, Re: 6}, ended, lineGone},
		{"running", wfPlace{At: old, Re: 7}, running, lineRunning},
		{"removed", wfPlace{At: recent, Re: 7}, removed, lineGone},
		{"admission not recorded", wfPlace{At: old}, queued, lineWaiting},
	} {
		if got := placeState(tc.p, tc.w, now); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

// A start under a parent runs on a place of its line only if a workflow
// it runs under holds one, as the log has it: its parent, or one further
// up past a workflow of another definition. The parent's line must be its
// own (name and key), and the one holding it admitted and not ended; a
// start without a parent, its sibling, queues. Every such child queued
// behind the workflow that waited for it.
func TestSubWorkflowRunsOnItsAncestorsPlace(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, time.Minute)
	e := startExecutor(t, testutil.OpenLog(t, ""), nothingScheduled{}, Config{})
	const (
		limited = `{"name":"rl_tree","rateLimitConfig":{"rateLimitKey":"${workflow.correlationId}","concurrentExecLimit":1},
		  "tasks":[{"name":"hold","taskReferenceName":"hold","type":"WAIT"}]}`
		other = `{"name":"rl_other","tasks":[{"name":"hold","taskReferenceName":"hold","type":"WAIT"}]}`
	)
	start := func(t *testing.T, id, defJSON, corr, parent string) *engine.Workflow {
		t.Helper()
		def := mustDef(t, defJSON)
		if _, _, err := e.StartWorkflow(ctx, conductor.StartWorkflowRequest{Name: def.Name, WorkflowDef: def, CorrelationID: corr},
			StartOptions{WorkflowID: id, ParentWorkflowID: parent}); err != nil {
			t.Fatal(err)
		}
		w, err := e.State(ctx, id)
		if err != nil || w == nil {
			t.Fatalf("state of %s: %v, %v", id, w, err)
		}
		return w
	}
	if w := start(t, "holder", limited, "k", ""); w.Queued {
		t.Fatal("the first workflow of the line queued")
	}
	if w := start(t, "queued-parent", limited, "k", ""); !w.Queued {
		t.Fatal("the second workflow of the line did not queue")
	}
	start(t, "ended", limited, "k2", "")
	if _, err := e.Submit(ctx, "ended", engine.Terminate{Reason: "done"}, Meta{}); err != nil {
		t.Fatal(err)
	}
	start(t, "middle", other, "k", "holder")
	for _, tc := range []struct {
		name, id, corr, parent  string
		wantLimited, wantQueued bool
	}{
		{name: "child of the holder", id: "c1", corr: "k", parent: "holder"},
		{name: "grandchild through another definition", id: "c2", corr: "k", parent: "middle"},
		{name: "sibling", id: "c3", corr: "k", wantLimited: true, wantQueued: true},
		{name: "child of the holder under another key", id: "c4", corr: "k3", parent: "holder", wantLimited: true},
		{name: "child of a queued workflow", id: "c5", corr: "k", parent: "queued-parent", wantLimited: true, wantQueued: true},
		{name: "child of an ended holder", id: "c6", corr: "k2", parent: "ended", wantLimited: true},
		{name: "child of no workflow", id: "c7", corr: "k", parent: "nobody", wantLimited: true, wantQueued: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := start(t, tc.id, limited, tc.corr, tc.parent)
			if w.RateLimited != tc.wantLimited || w.Queued != tc.wantQueued {
				t.Fatalf("rateLimited %v, queued %v; want %v, %v", w.RateLimited, w.Queued, tc.wantLimited, tc.wantQueued)
			}
		})
	}
}

// An engine whose workflows have no rate limit sweeps no line, and makes
// no consumer to find that out: listing the bucket's keys made one and
// deleted it every second (on a cluster, two changes the meta group
// agrees on), rate limits in use or not. Once a line exists, the sweep
// lists the lines again.
func TestIdleSweepMakesNoConsumer(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, time.Minute)
	l := testutil.OpenLog(t, "")
	made := make(chan *nats.Msg, 64)
	sub, err := l.Conn().ChanSubscribe("$JS.EVENT.ADVISORY.CONSUMER.CREATED.KV_"+limitsBucket+".>", made)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	e := startExecutor(t, l, nothingScheduled{}, Config{})
	// Three sweeps' time.
	select {
	case m := <-made:
		t.Fatalf("an idle engine made a consumer on its limits bucket: %s", m.Data)
	case <-time.After(3*wfSweepEvery + wfSweepEvery/2):
	}
	if _, err := e.placeStart(ctx, "n", &engine.RateLimit{Limit: 1, Key: "k"}, "w1"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-made:
	case <-ctx.Done():
		t.Fatal("no sweep listed the lines once one existed")
	}
}
