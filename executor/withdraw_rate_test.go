package executor

import (
	"runtime"
	"strconv"
	"testing"
	"time"
)

// A steady stream of withdrawals, once withdrawnTTL has passed, expires
// the oldest as each new one comes: each add costs about its own key, not
// a copy of every withdrawal remembered (98 KB an add at 10 a second,
// 1.5 MB at 160, before).
func TestWithdrawalsAtASteadyRate(t *testing.T) {
	for _, rate := range []int{10, 160} {
		w := newWithdrawals()
		start := time.Unix(0, 0)
		step := time.Second / time.Duration(rate)
		warm := int(withdrawnTTL / step)
		keys := make([]string, warm+10_000)
		for i := range keys {
			keys[i] = "k" + strconv.Itoa(i)
		}
		for i := range warm {
			w.add(keys[i], start.Add(time.Duration(i)*step))
		}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for j := warm; j < len(keys); j++ {
			w.add(keys[j], start.Add(time.Duration(j)*step))
		}
		runtime.ReadMemStats(&after)
		if perAdd := (after.TotalAlloc - before.TotalAlloc) / 10_000; perAdd > 1<<10 {
			t.Errorf("%d withdrawals a second: %d bytes allocated an add", rate, perAdd)
		}
		if kept := len(w.at.m); kept > warm+1 {
			t.Errorf("%d withdrawals a second: %d kept, want those of the last %s (%d)", rate, kept, withdrawnTTL, warm)
		}
	}
}

// A key deleted, or deleted and put again, does not take another key's
// place: expiry forgets only keys put before its limit, and the bound
// forgets the oldest still held.
func TestRecentForgetsOnlyWhatItShould(t *testing.T) {
	t0 := time.Unix(0, 0)
	r := newRecent[int](2)
	r.put("a", 1, t0)
	r.put("b", 2, t0.Add(2*time.Second))
	r.delete("a")
	r.expire(t0.Add(time.Second))
	if _, ok := r.get("b"); !ok {
		t.Fatal("expiry of a deleted key forgot the newer b")
	}
	r.put("a", 3, t0.Add(3*time.Second)) // again, after b
	r.put("c", 4, t0.Add(4*time.Second)) // past the bound: b, the oldest held, goes
	if _, ok := r.get("b"); ok {
		t.Fatal("the bound kept b, the oldest")
	}
	if v, ok := r.get("a"); !ok || v != 3 {
		t.Fatalf("a put again = %d, %v; want 3, kept", v, ok)
	}
	if v, ok := r.get("c"); !ok || v != 4 {
		t.Fatalf("c = %d, %v", v, ok)
	}
}

// Keys deleted as fast as they are put keep the map under its bound, so
// neither the bound nor expiry pops their places: the order stays within
// twice the bound instead of growing by a place each put (announced
// tasks all withdrawn unpolled, a queue no worker serves).
func TestRecentOrderBoundedUnderDeletes(t *testing.T) {
	const max = 8
	t0 := time.Unix(0, 0)
	r := newRecent[int](max)
	r.put("held", 0, t0)
	for i := range 10_000 {
		k := "k" + strconv.Itoa(i)
		r.put(k, i, t0.Add(time.Duration(i)*time.Millisecond))
		r.delete(k)
		if n := len(r.order) - r.head; n > 2*max {
			t.Fatalf("after %d puts and deletes the order holds %d places, want at most %d", i+1, n, 2*max)
		}
	}
	if v, ok := r.get("held"); !ok || v != 0 {
		t.Fatalf("held = %d, %v; want kept", v, ok)
	}
	r.put("late", 1, t0.Add(time.Hour))
	r.expire(t0.Add(time.Second)) // held was put at t0: it goes, late stays
	if _, ok := r.get("held"); ok {
		t.Fatal("expiry kept held")
	}
	if _, ok := r.get("late"); !ok {
		t.Fatal("expiry forgot late")
	}
}
