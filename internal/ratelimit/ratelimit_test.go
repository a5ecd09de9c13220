package ratelimit

import (
	"strconv"
	"testing"
	"time"
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
