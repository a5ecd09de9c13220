package executor

import (
	"errors"
	"testing"
	"time"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas/conductor"
)

func TestRateLimitOf(t *testing.T) {
	for _, tc := range []struct {
		td   *conductor.TaskDef
		n    int
		per  time.Duration
		name string
	}{
		{nil, 0, 0, "no definition"},
		{&conductor.TaskDef{}, 0, 0, "no limit"},
		{&conductor.TaskDef{RateLimitPerFrequency: 3}, 3, time.Second, "Conductor's default frequency"},
		{&conductor.TaskDef{RateLimitPerFrequency: 3, RateLimitFrequencyInSeconds: 60}, 3, time.Minute, "per minute"},
		{&conductor.TaskDef{RateLimitFrequencyInSeconds: 60}, 0, 0, "a frequency alone"},
	} {
		if n, per := rateLimitOf(tc.td); n != tc.n || per != tc.per {
			t.Errorf("%s: %d per %s, want %d per %s", tc.name, n, per, tc.n, tc.per)
		}
	}
}

// The window slides: of n takes in any per, the oldest leaving makes room
// for one more; limiters sharing a bucket (engines) share the window,
// however many take at once; task types are counted apart.
func TestRateLimiterWindow(t *testing.T) {
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, 30*time.Second)
	a, b := newLimits(l), newLimits(l)
	t0 := time.UnixMilli(1_000_000)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

	for i, r := range []*limits{a, b} {
		if err := r.admitRate(ctx, "resize", 2, time.Second, at(100*i)); err != nil {
			t.Fatalf("take %d: %v", i, err)
		}
	}
	err := a.admitRate(ctx, "resize", 2, time.Second, at(500))
	var limited *LimitedError
	if !errors.As(err, &limited) || !limited.Until.Equal(at(1000)) || !errors.Is(err, fault.ErrUnavailable) {
		t.Fatalf("third take in the window: %v, want rate limited until %s", err, at(1000))
	}
	if err := b.admitRate(ctx, "other", 1, time.Second, at(500)); err != nil {
		t.Fatalf("another task type: %v", err)
	}
	// The first take leaves the window at 1000 ms: one more fits, not two.
	if err := b.admitRate(ctx, "resize", 2, time.Second, at(1000)); err != nil {
		t.Fatalf("take once the oldest left: %v", err)
	}
	if err := a.admitRate(ctx, "resize", 2, time.Second, at(1050)); !errors.As(err, &limited) || !limited.Until.Equal(at(1100)) {
		t.Fatalf("take in the slid window: %v, want rate limited until %s", err, at(1100))
	}

	// Many engines at once, half of them through a: exactly n get in.
	if got := admittedAtOnce(t, 20, func(i int) error {
		r := newLimits(l)
		if i%2 == 0 {
			r = a
		}
		return r.admitRate(ctx, "burst", 5, time.Hour, at(2000))
	}); got != 5 {
		t.Fatalf("%d takes admitted at once, want 5", got)
	}
}

// A take is admitted on the state that shows its task waiting: an engine
// whose cached state predates the task (another engine scheduled it)
// applies the limit all the same, on the state it reads afresh.
func TestStaleCacheTakeIsAdmitted(t *testing.T) {
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, 30*time.Second)
	a, b := startExecutor(t, l, nothingScheduled{}, Config{}), startExecutor(t, l, nothingScheduled{}, Config{})
	const id = "wf-stale-rate"
	startInline(ctx, t, a, id, `{"name":"rl","tasks":[
	 {"name":"limited","taskReferenceName":"t1","taskDefinition":{"name":"limited","rateLimitPerFrequency":1,"rateLimitFrequencyInSeconds":600}},
	 {"name":"limited","taskReferenceName":"t2","taskDefinition":{"name":"limited","rateLimitPerFrequency":1,"rateLimitFrequencyInSeconds":600}}]}`)
	w, err := a.State(ctx, id) // a caches t1 scheduled
	if err != nil {
		t.Fatal(err)
	}
	t1 := w.LatestByRef("t1")
	if _, _, err := b.take(ctx, id, t1.ID, PollRequest{TaskType: "limited", WorkerID: "w-b"}); err != nil {
		t.Fatalf("take t1: %v", err)
	}
	out, err := b.Submit(ctx, id, engine.Result{Result: conductor.TaskResult{TaskID: t1.ID, WorkflowInstanceID: id,
		Status: conductor.TaskCompleted}, TaskType: "limited"}, Meta{})
	if err != nil {
		t.Fatal(err)
	}
	// The window holds t1's take for ten minutes: t2's is refused on a,
	// whose cache has not seen t2 scheduled.
	_, _, err = a.take(ctx, id, out.State.LatestByRef("t2").ID, PollRequest{TaskType: "limited", WorkerID: "w-a"})
	var limited *LimitedError
	if !errors.As(err, &limited) {
		t.Fatalf("take of t2 on the engine with a stale cache: %v, want rate limited", err)
	}
}
