package ratelimit

import (
	"strconv"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func TestKeyed(t *testing.T) {
	t.Parallel()
	type step struct {
		op   string // "reserve" or "check"
		key  string
		at   time.Duration // after t0
		wait bool          // a wait is expected (refused)
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"burst then refused", []step{
			{"reserve", "a", 0, false}, {"reserve", "a", 0, false}, {"reserve", "a", 0, false}, {"reserve", "a", 0, true}}},
		{"keys have their own buckets", []step{
			{"reserve", "a", 0, false}, {"reserve", "a", 0, false}, {"reserve", "a", 0, false}, {"reserve", "b", 0, false}, {"check", "a", 0, true}}},
		{"refills at the rate", []step{
			{"reserve", "a", 0, false}, {"reserve", "a", 0, false}, {"reserve", "a", 0, false},
			{"reserve", "a", 500 * time.Millisecond, true}, {"reserve", "a", time.Second, false}, {"reserve", "a", time.Second, true}}},
		{"check takes nothing", []step{
			{"check", "a", 0, false}, {"check", "a", 0, false}, {"check", "a", 0, false}, {"check", "a", 0, false},
			{"reserve", "a", 0, false}, {"reserve", "a", 0, false}, {"reserve", "a", 0, false}, {"check", "a", 0, true}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			k := New(1, 3)
			for i, s := range tt.steps {
				fn := k.Reserve
				if s.op == "check" {
					fn = k.Check
				}
				d := fn(s.key, t0.Add(s.at))
				if (d > 0) != s.wait {
					t.Fatalf("step %d %+v: wait %s", i, s, d)
				}
				if d > 0 && d < time.Second {
					t.Fatalf("step %d: wait %s, want at least a second (Retry-After)", i, d)
				}
			}
		})
	}
}

// A full set refuses new keys until its buckets are idle, then drops them.
func TestKeyedBounded(t *testing.T) {
	t.Parallel()
	k := New(1, 1)
	for i := range MaxKeys {
		if d := k.Reserve(strconv.Itoa(i), t0); d != 0 {
			t.Fatalf("key %d refused", i)
		}
	}
	if d := k.Reserve("new", t0.Add(time.Second)); d != time.Minute {
		t.Fatalf("a new key in a full set of busy buckets waits %s, want a minute", d)
	}
	if d := k.Reserve("new", t0.Add(2*time.Minute)); d != 0 {
		t.Fatalf("a new key after the others went idle waits %s", d)
	}
	if n := len(k.m); n != 1 {
		t.Fatalf("%d buckets kept, want the new one only", n)
	}
}

// A caller sending requests under ever new keys into a set full of busy
// buckets is refused at a cost that does not grow with the set: each new
// key was refused after a look at all MaxKeys buckets, under the lock
// every request takes.
func TestKeyedNewKeysIntoAFullSetCostLittle(t *testing.T) {
	t.Parallel()
	k := New(1, 1)
	for i := range MaxKeys {
		k.Reserve(strconv.Itoa(i), t0)
	}
	const sprayed = 200_000
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range sprayed {
			if d := k.Reserve("new"+strconv.Itoa(i), t0.Add(time.Second)); d != time.Minute {
				t.Errorf("new key %d into a full set of busy buckets waits %s, want a minute", i, d)
				return
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatalf("%d new keys into a full set not refused within a minute", sprayed)
	}
}

func BenchmarkKeyedNewKeyIntoAFullSet(b *testing.B) {
	k := New(1, 1)
	for i := range MaxKeys {
		k.Reserve(strconv.Itoa(i), t0)
	}
	b.ResetTimer()
	for i := range b.N {
		k.Reserve("new"+strconv.Itoa(i), t0.Add(time.Second))
	}
}

// A bucket used again is kept when those idle around it are dropped.
func TestKeyedKeepsBucketsUsedAgain(t *testing.T) {
	t.Parallel()
	k := New(rate.Every(time.Hour), 2)
	for i := range MaxKeys {
		k.Reserve(strconv.Itoa(i), t0)
	}
	if d := k.Reserve("0", t0.Add(59*time.Second)); d != 0 {
		t.Fatalf("bucket 0's second token waits %s", d)
	}
	if d := k.Reserve("new", t0.Add(90*time.Second)); d != 0 {
		t.Fatalf("a new key after all but one went idle waits %s", d)
	}
	if _, ok := k.m["0"]; !ok || len(k.m) != 2 {
		t.Fatalf("%d buckets kept (bucket 0: %t), want bucket 0 and the new one", len(k.m), ok)
	}
	if d := k.Reserve("0", t0.Add(91*time.Second)); d == 0 {
		t.Fatal("bucket 0 was dropped: a third token within the hour was given")
	}
}
