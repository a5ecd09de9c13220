package secrets

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/internal/testutil"
)

// pooledPurpose is the purpose every pooled-key test seals under: one
// purpose for all keys, so that a ciphertext opening under another slot's
// key would mean two slots share a key.
var pooledPurpose = Purpose("pooled-test")

// pageSubject is the stream subject of key page page's bucket entry.
func pageSubject(page string) string {
	return "$KV." + dataKeyBucket(page) + "." + dataKeyPrefix + page
}

// mustPageOf splits a pooled key id, failing the test on a malformed one.
func mustPageOf(t *testing.T, id string) (string, int) {
	t.Helper()
	page, slot, err := pageOf(id)
	if err != nil {
		t.Fatal(err)
	}
	return page, slot
}

// storedPage returns a copy of the wrapped bytes page's bucket entry holds.
func storedPage(t *testing.T, k *Keys, page string) []byte {
	t.Helper()
	e, err := k.bucketFor(page).kv.Get(testutil.Context(t, 10*time.Second), dataKeyPrefix+page)
	if err != nil {
		t.Fatalf("read key page %s: %v", page, err)
	}
	return bytes.Clone(e.Value())
}

// newPooled hands out n pooled keys from k and seals each key's own id
// with it; it returns the ids and the ciphertexts by id.
func newPooled(t *testing.T, k *Keys, n int) ([]string, map[string][]byte) {
	t.Helper()
	ctx := testutil.Context(t, 30*time.Second)
	var ids []string
	cts := map[string][]byte{}
	for range n {
		dk, err := k.NewPooledKey(ctx)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, dk.ID())
		cts[dk.ID()] = dk.Seal(pooledPurpose, []byte(dk.ID()))
	}
	return ids, cts
}

// checkOpens asserts that k unwraps each of ids from the bucket (its cache
// cleared first) and that the key opens what was sealed under it.
func checkOpens(t *testing.T, k *Keys, ids []string, cts map[string][]byte) {
	t.Helper()
	ctx := testutil.Context(t, 30*time.Second)
	k.ClearCache()
	for _, id := range ids {
		dk, err := k.DataKey(ctx, id)
		if err != nil {
			t.Fatalf("pooled key %s: %v", id, err)
		}
		if got, err := dk.Open(pooledPurpose, cts[id]); err != nil || string(got) != id {
			t.Fatalf("pooled key %s opens %q, %v", id, got, err)
		}
	}
}

// checkDestroyed asserts that k cannot get any of ids, neither from its
// cache nor, once the cache is cleared, from the bucket.
func checkDestroyed(t *testing.T, k *Keys, ids []string) {
	t.Helper()
	ctx := testutil.Context(t, 30*time.Second)
	for _, clearCache := range []bool{false, true} {
		if clearCache {
			k.ClearCache()
		}
		for _, id := range ids {
			if _, err := k.DataKey(ctx, id); !errors.Is(err, ErrKeyDestroyed) {
				t.Fatalf("destroyed pooled key %s (cache cleared: %v): %v", id, clearCache, err)
			}
		}
	}
}

// pageSlotIDs returns the ids of page's slots from..to-1.
func pageSlotIDs(page string, from, to int) []string {
	var out []string
	for s := from; s < to; s++ {
		out = append(out, page+"."+strconv.Itoa(s))
	}
	return out
}

// pooledIDsOf returns PooledKeyIDs restricted to page, sorted.
func pooledIDsOf(t *testing.T, k *Keys, page string) []string {
	t.Helper()
	all, err := k.PooledKeyIDs(testutil.Context(t, 30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, id := range all {
		if strings.HasPrefix(id, page+".") {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

func sorted(ids []string) []string {
	out := slices.Clone(ids)
	slices.Sort(out)
	return out
}

// checkErased asserts that no message of the key streams holds any of the
// wrapped page revisions (compared past their header, like TestDestroyKey).
func checkErased(t *testing.T, l *eventlog.Log, revisions ...[]byte) {
	t.Helper()
	for _, m := range rawMessages(t, l) {
		for i, wrapped := range revisions {
			if bytes.Contains(m, wrapped[5:]) {
				t.Fatalf("superseded page revision %d is still in the stream", i)
			}
		}
	}
}

// A page serves pageSlots keys, slot by slot, then a new page starts; each
// page is one bucket entry, and another process unwraps every slot key
// from it and opens what the first sealed.
func TestPooledKeysHandOut(t *testing.T) {
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, 30*time.Second)
	k := mustOpenKeys(t, l, GenerateMasterKey())
	ids, cts := newPooled(t, k, pageSlots+1)

	first, _ := mustPageOf(t, ids[0])
	seen := map[string]bool{}
	for i, id := range ids[:pageSlots] {
		if !IsPooledKey(id) || CheckKeyID(id) != nil {
			t.Fatalf("pooled key id %q", id)
		}
		page, slot := mustPageOf(t, id)
		if page != first || slot != i {
			t.Fatalf("key %d is %s: want slot %d of page %s", i, id, i, first)
		}
		if seen[id] {
			t.Fatalf("id %s handed out twice", id)
		}
		seen[id] = true
	}
	second, slot := mustPageOf(t, ids[pageSlots])
	if second == first || slot != 0 {
		t.Fatalf("key %d is %s: want slot 0 of a new page", pageSlots, ids[pageSlots])
	}

	// Exactly two entries, one per page, each written once.
	pages := map[string]uint64{}
	for subj, n := range subjectCounts(t, l) {
		if strings.Contains(subj, "."+dataKeyPrefix+pagePrefix) {
			pages[subj] = n
		}
	}
	want := map[string]uint64{pageSubject(first): 1, pageSubject(second): 1}
	if fmt.Sprint(pages) != fmt.Sprint(want) {
		t.Fatalf("page entries %v, want %v", pages, want)
	}

	// Each key opens its own ciphertext, and no other slot's: the slots
	// hold distinct keys.
	for i, id := range ids {
		dk, err := k.DataKey(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := dk.Open(pooledPurpose, cts[id]); err != nil || string(got) != id {
			t.Fatalf("%s opens %q, %v", id, got, err)
		}
		if i > 0 {
			if _, err := dk.Open(pooledPurpose, cts[ids[i-1]]); !errors.Is(err, ErrDecrypt) {
				t.Fatalf("%s opens the ciphertext of %s: %v", id, ids[i-1], err)
			}
		}
	}

	// Another process, which never saw the keys, unwraps them from the pages.
	checkOpens(t, mustOpenKeys(t, l, k.mk), ids, cts)

	// Every slot of both pages is live, handed out or not.
	if got, want := pooledIDsOf(t, k, first), sorted(pageSlotIDs(first, 0, pageSlots)); !slices.Equal(got, want) {
		t.Fatalf("PooledKeyIDs of the full page = %v", got)
	}
	if got := pooledIDsOf(t, k, second); len(got) != pageSlots {
		t.Fatalf("PooledKeyIDs of the new page lists %d slots, want %d", len(got), pageSlots)
	}
}

// A batch whose first id cannot name a key still has every other key
// erased, pooled and named alike, and that id reported, not kept: the
// compactor tried a batch that stopped at it again in every pass, ahead
// of every later workflow's key.
func TestDestroyKeysGoesPastAnInvalidID(t *testing.T) {
	t.Parallel()
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, 30*time.Second)
	k := mustOpenKeys(t, l, GenerateMasterKey())
	for _, tc := range []struct{ name, bad string }{
		{"named", "wf.bad..secrets"}, // fails CheckKeyID
		{"pooled", "kp.x.64"},        // a slot past its page
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := tc.bad
			pooled, _ := newPooled(t, k, 3)
			named, err := k.NewDataKey(ctx, "wf.good-"+tc.name+".secrets")
			if err != nil {
				t.Fatal(err)
			}
			good := append(pooled, named.ID())
			kept, err := k.DestroyKeys(ctx, append([]string{bad}, good...))
			if !errors.Is(err, ErrInvalidKeyID) || !strings.Contains(err.Error(), bad) || kept != nil {
				t.Fatalf("DestroyKeys = %q, %v; want nothing kept, ErrInvalidKeyID naming %s", kept, err, bad)
			}
			checkDestroyed(t, mustOpenKeys(t, l, k.mk), good)
		})
	}
}

// DestroyKeys keeps the keys of a damaged page (its wrapped value does not
// open) and names them (DamagedKeys) apart from those kept for a store that
// does not answer: its caller retried them all alike, and the damaged ones
// fail every time until the page is restored.
func TestDestroyKeysNamesTheKeysOfADamagedPage(t *testing.T) {
	t.Parallel()
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, 30*time.Second)
	k := mustOpenKeys(t, l, GenerateMasterKey())
	other := mustOpenKeys(t, l, k.mk) // another process: another page
	damaged, _ := newPooled(t, k, 2)
	good, _ := newPooled(t, other, 1)
	page, _ := mustPageOf(t, damaged[0])
	wrapped := storedPage(t, k, page)
	wrapped[len(wrapped)-1] ^= 1
	if _, err := k.bucketFor(page).kv.Put(ctx, dataKeyPrefix+page, wrapped); err != nil {
		t.Fatal(err)
	}
	kept, err := k.DestroyKeys(ctx, append(slices.Clone(damaged), good...))
	slices.Sort(kept)
	named := DamagedKeys(err)
	slices.Sort(named)
	if !errors.Is(err, ErrKeyDamaged) || !slices.Equal(kept, damaged) || !slices.Equal(named, damaged) {
		t.Fatalf("DestroyKeys = %q, %v, damaged %q; want %q kept and damaged, ErrKeyDamaged", kept, err, named, damaged)
	}
	checkDestroyed(t, k, good)

	l.Close()
	kept, err = other.DestroyKeys(ctx, damaged)
	if len(kept) != len(damaged) || errors.Is(err, ErrKeyDamaged) || DamagedKeys(err) != nil {
		t.Fatalf("DestroyKeys on a closed connection = %q, %v, damaged %q; want all kept, none damaged", kept, err, DamagedKeys(err))
	}
}

// DestroyKeys zeroes a batch of slots in one new page revision and erases
// the older one: the destroyed keys are gone for every process, the others
// of the page still open, and destroying them again is not an error.
func TestDestroyPooledKeys(t *testing.T) {
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, 30*time.Second)
	k := mustOpenKeys(t, l, GenerateMasterKey())
	ids, cts := newPooled(t, k, 8)
	page, _ := mustPageOf(t, ids[0])
	before := storedPage(t, k, page)

	gone := []string{ids[1], ids[3], ids[4]}
	kept := []string{ids[0], ids[2], ids[5], ids[6], ids[7]}
	if _, err := k.DestroyKeys(ctx, gone); err != nil {
		t.Fatal(err)
	}
	// This process dropped them from its cache; a fresh one never had them.
	checkDestroyed(t, k, gone)
	other := mustOpenKeys(t, l, k.mk)
	checkDestroyed(t, other, gone)
	checkOpens(t, k, kept, cts)
	checkOpens(t, other, kept, cts)

	// One rewrite, the superseded revision erased for good.
	if n := subjectCounts(t, l)[pageSubject(page)]; n != 1 {
		t.Fatalf("%d messages for the page, want 1", n)
	}
	if bytes.Equal(storedPage(t, k, page), before) {
		t.Fatal("the page was not rewritten")
	}
	checkErased(t, l, before)

	// Again, from the other process: nothing to do, no error, the page
	// still one message and its other keys intact.
	if _, err := other.DestroyKeys(ctx, gone); err != nil {
		t.Fatalf("destroying twice: %v", err)
	}
	if err := other.DestroyKey(ctx, ids[1]); err != nil {
		t.Fatalf("DestroyKey of a destroyed pooled key: %v", err)
	}
	if n := subjectCounts(t, l)[pageSubject(page)]; n != 1 {
		t.Fatalf("%d messages for the page after destroying twice, want 1", n)
	}
	checkDestroyed(t, mustOpenKeys(t, l, k.mk), gone)
	checkOpens(t, k, kept, cts)

	// DestroyKey on one pooled key goes through the page too.
	if err := k.DestroyKey(ctx, ids[7]); err != nil {
		t.Fatal(err)
	}
	checkDestroyed(t, mustOpenKeys(t, l, k.mk), ids[7:8])
	gone, kept = append(gone, ids[7]), kept[:len(kept)-1]

	// Live slots: every slot of the page but the destroyed ones, including
	// those never handed out.
	var want []string
	for _, id := range pageSlotIDs(page, 0, pageSlots) {
		if !slices.Contains(gone, id) {
			want = append(want, id)
		}
	}
	if got := pooledIDsOf(t, other, page); !slices.Equal(got, sorted(want)) {
		t.Fatalf("PooledKeyIDs = %v, want %v", got, sorted(want))
	}
	checkOpens(t, other, kept, cts)
}

// A page whose every slot is destroyed, by however many batches, leaves no
// message behind, and keys of other pages are untouched.
func TestDestroyWholePage(t *testing.T) {
	for _, tc := range []struct {
		name    string
		batches [][2]int // slot ranges [from, to) destroyed by one DestroyKeys each
	}{
		{"one batch", [][2]int{{0, pageSlots}}},
		{"two batches", [][2]int{{0, 30}, {30, pageSlots}}},
		// The slots never handed out keep a page alive until destroyed too.
		{"handed-out slots then the rest", [][2]int{{0, 3}, {3, pageSlots}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := testutil.OpenLog(t, "")
			ctx := testutil.Context(t, 60*time.Second)
			k := mustOpenKeys(t, l, GenerateMasterKey())
			// A full page, and one key of the next page, which must survive.
			ids, cts := newPooled(t, k, pageSlots+1)
			page, _ := mustPageOf(t, ids[0])
			next := ids[pageSlots]
			revisions := [][]byte{storedPage(t, k, page)}
			for i, b := range tc.batches {
				if _, err := k.DestroyKeys(ctx, pageSlotIDs(page, b[0], b[1])); err != nil {
					t.Fatal(err)
				}
				if i < len(tc.batches)-1 {
					if n := subjectCounts(t, l)[pageSubject(page)]; n != 1 {
						t.Fatalf("after batch %d: %d messages for the page, want 1", i, n)
					}
					revisions = append(revisions, storedPage(t, k, page))
				}
			}
			if n := subjectCounts(t, l)[pageSubject(page)]; n != 0 {
				t.Fatalf("%d messages left for a page with no key", n)
			}
			checkErased(t, l, revisions...)
			checkDestroyed(t, k, ids[:pageSlots])
			checkDestroyed(t, mustOpenKeys(t, l, k.mk), ids[:pageSlots])
			if got := pooledIDsOf(t, k, page); len(got) != 0 {
				t.Fatalf("PooledKeyIDs lists slots of an erased page: %v", got)
			}
			checkOpens(t, mustOpenKeys(t, l, k.mk), []string{next}, cts)

			// Destroying keys of an erased page is not an error, and brings
			// nothing back.
			if _, err := k.DestroyKeys(ctx, ids[:2]); err != nil {
				t.Fatalf("destroying keys of an erased page: %v", err)
			}
			if n := subjectCounts(t, l)[pageSubject(page)]; n != 0 {
				t.Fatalf("%d messages for the erased page after destroying again", n)
			}
		})
	}
}

// Rotation re-wraps a page like any data key: one revision left, under the
// new term; every process still opens its keys; and destroying slots
// afterwards rewrites the re-wrapped page.
func TestRotatePooledKeys(t *testing.T) {
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, 60*time.Second)
	mk := GenerateMasterKey()
	k := mustOpenKeys(t, l, mk)
	other := mustOpenKeys(t, l, mk) // opened before the rotation
	ids, cts := newPooled(t, k, 6)
	page, _ := mustPageOf(t, ids[0])
	before := storedPage(t, k, page)

	res, err := k.Rotate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Term != 2 || res.Rewrapped != 1 { // the page is the only data key entry
		t.Fatalf("rotate = %+v", res)
	}
	if n := subjectCounts(t, l)[pageSubject(page)]; n != 1 {
		t.Fatalf("%d revisions of the page after rotation, want 1", n)
	}
	if term, _ := ciphertextTerm(storedPage(t, k, page)); term != 2 {
		t.Fatalf("page wrapped under term %d after rotation", term)
	}
	checkErased(t, l, before)
	for _, keys := range []*Keys{k, other, mustOpenKeys(t, l, mk)} {
		checkOpens(t, keys, ids, cts)
	}

	// The process opened before the rotation destroys slots of the page
	// re-wrapped under a term it learnt by reading it.
	rotated := storedPage(t, k, page)
	gone, kept := []string{ids[0], ids[5]}, ids[1:5]
	if _, err := other.DestroyKeys(ctx, gone); err != nil {
		t.Fatal(err)
	}
	fresh := mustOpenKeys(t, l, mk)
	// k handed the keys out and still holds them in memory: like any data
	// key destroyed by another process, they are gone once unwrapped anew.
	k.ClearCache()
	checkDestroyed(t, k, gone)
	checkDestroyed(t, fresh, gone)
	checkOpens(t, fresh, kept, cts)
	if n := subjectCounts(t, l)[pageSubject(page)]; n != 1 {
		t.Fatalf("%d revisions of the page after destroying, want 1", n)
	}
	checkErased(t, l, before, rotated)
}

// concurrentDestroyed is how many slots destroyConcurrently destroys:
// 0..47, the even ones by one process and the odd ones by the other.
const concurrentDestroyed = 48

// destroyConcurrently has each of two processes destroy its half of
// ids[:concurrentDestroyed] in small batches, both at once, for many
// chances to rewrite the page from the same revision. With retry, a failed
// batch is tried again, as a caller would on its next run.
func destroyConcurrently(ctx context.Context, procs [2]*Keys, ids []string, retry bool) error {
	start := make(chan struct{})
	errs := make([]error, len(procs))
	var wg sync.WaitGroup
	for p, keys := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for from := 0; from < concurrentDestroyed; from += 8 {
				var batch []string
				for s := from + p; s < from+8; s += 2 {
					batch = append(batch, ids[s])
				}
				_, err := keys.DestroyKeys(ctx, batch)
				for try := 0; err != nil && retry && try < 5; try++ {
					_, err = keys.DestroyKeys(ctx, batch)
				}
				if err != nil {
					errs[p] = fmt.Errorf("process %d, slots from %d: %w", p, from, err)
					return
				}
			}
		}()
	}
	close(start)
	wg.Wait()
	return errors.Join(errs...)
}

// Two processes destroying disjoint slots of one page at the same time
// race on the page's revision: the loser starts over from the winner's
// revision, so every slot either destroyed ends destroyed, and the others
// still open. Neither sees an error: losing the race to erase a superseded
// revision is not a failure.
func TestDestroyPooledKeysConcurrently(t *testing.T) {
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, 60*time.Second)
	mk := GenerateMasterKey()
	k := mustOpenKeys(t, l, mk)
	ids, cts := newPooled(t, k, pageSlots)
	page, _ := mustPageOf(t, ids[0])
	before := storedPage(t, k, page)

	procs := [2]*Keys{mustOpenKeys(t, l, mk), mustOpenKeys(t, l, mk)}
	if err := destroyConcurrently(ctx, procs, ids, false); err != nil {
		t.Fatal(err)
	}

	fresh := mustOpenKeys(t, l, mk)
	checkDestroyed(t, fresh, ids[:concurrentDestroyed])
	k.ClearCache() // k handed the keys out: they are in its memory
	checkDestroyed(t, k, ids[:concurrentDestroyed])
	checkOpens(t, fresh, ids[concurrentDestroyed:], cts)
	if got, want := pooledIDsOf(t, fresh, page), sorted(ids[concurrentDestroyed:]); !slices.Equal(got, want) {
		t.Fatalf("PooledKeyIDs = %v, want %v", got, want)
	}
	if n := subjectCounts(t, l)[pageSubject(page)]; n != 1 {
		t.Fatalf("%d messages for the page, want 1", n)
	}
	checkErased(t, l, before)
}

// filesHolding lists the files under dir that contain b.
func filesHolding(t *testing.T, dir string, b []byte) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.Contains(data, b) {
			out = append(out, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Concurrent rewrites of a page leave none of its superseded revisions on
// disk: each holds keys destroyed since, and a revision the stream merely
// drops (say, past the bucket's history) is not overwritten. rawMessages
// cannot tell, since the server serves neither kind; the store's files can.
func TestDestroyPooledKeysConcurrentlyOnDisk(t *testing.T) {
	dir := t.TempDir()
	l := testutil.OpenLog(t, dir)
	ctx := testutil.Context(t, 60*time.Second)
	mk := GenerateMasterKey()
	k := mustOpenKeys(t, l, mk)
	ids, _ := newPooled(t, k, pageSlots)
	page, _ := mustPageOf(t, ids[0])
	before := storedPage(t, k, page)
	// The scan finds a live revision: it cannot pass for want of looking.
	if len(filesHolding(t, dir, before[5:])) == 0 {
		t.Fatal("the stored page is not found in the store's files")
	}

	// Every revision the page goes through.
	w, err := k.bucketFor(page).kv.Watch(ctx, dataKeyPrefix+page, jetstream.IncludeHistory())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	var mu sync.Mutex
	var revisions [][]byte
	go func() {
		for e := range w.Updates() {
			if e != nil {
				mu.Lock()
				revisions = append(revisions, bytes.Clone(e.Value()))
				mu.Unlock()
			}
		}
	}()

	// Retried, so that this test is about what stays on disk, not errors.
	if err := destroyConcurrently(ctx, [2]*Keys{mustOpenKeys(t, l, mk), mustOpenKeys(t, l, mk)}, ids, true); err != nil {
		t.Fatal(err)
	}
	last := storedPage(t, k, page)
	testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(revisions) == 0 || !bytes.Equal(revisions[len(revisions)-1], last) {
			return errors.New("the watch has not seen the last revision yet")
		}
		return nil
	})
	w.Stop()
	l.Close() // the store's files are complete once the server is down

	mu.Lock()
	defer mu.Unlock()
	if len(revisions) < 3 {
		t.Fatalf("%d revisions seen, want the original and several rewrites", len(revisions))
	}
	for i, r := range revisions[:len(revisions)-1] {
		if files := filesHolding(t, dir, r[5:]); len(files) != 0 {
			t.Errorf("superseded revision %d of %d is still on disk in %v", i, len(revisions), files)
		}
	}
}

// A malformed pooled key id is an error, never a panic, and never a key;
// nor is it reported as a destroyed key, which would let a caller take a
// typo for a finished erasure. A well-formed id of a missing page is a
// destroyed key.
func TestPooledKeyBadIDs(t *testing.T) {
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, 30*time.Second)
	k := mustOpenKeys(t, l, GenerateMasterKey())
	ids, _ := newPooled(t, k, 1)
	page, _ := mustPageOf(t, ids[0])
	for _, tc := range []struct {
		id        string
		destroyed bool // well-formed: ErrKeyDestroyed; otherwise another error
	}{
		{"kp.x.64", false},          // slot past the page
		{"kp.x.-1", false},          // negative slot
		{"kp.x.01", false},          // non-canonical slot: two ids for one key
		{"kp.x.+1", false},          // likewise
		{"kp.x", false},             // no slot
		{"kp.x.", false},            // empty slot
		{"kp.x.one", false},         // not a number
		{page, false},               // a page's id is not a key's
		{page + ".64", false},       // past the end of a real page
		{"kp.x.5", true},            // no such page
		{"kp.nosuchpage.0", true},   // likewise
		{page + ".99999999", false}, // far past the end
	} {
		t.Run(tc.id, func(t *testing.T) {
			var dk *DataKey
			var err error
			func() {
				defer func() {
					if r := recover(); r != nil {
						t.Fatalf("DataKey(%q) panics: %v", tc.id, r)
					}
				}()
				dk, err = k.DataKey(ctx, tc.id)
			}()
			if err == nil || dk != nil {
				t.Fatalf("DataKey(%q) = %v, %v: want an error", tc.id, dk, err)
			}
			if errors.Is(err, ErrKeyDestroyed) != tc.destroyed {
				t.Fatalf("DataKey(%q): %v; want ErrKeyDestroyed: %v", tc.id, err, tc.destroyed)
			}
			if !tc.destroyed {
				// Kept, it would be tried again for ever.
				if kept, err := k.DestroyKeys(ctx, []string{tc.id}); !errors.Is(err, ErrInvalidKeyID) || kept != nil {
					t.Fatalf("DestroyKeys(%q) = %q, %v; want ErrInvalidKeyID, nothing kept", tc.id, kept, err)
				}
			}
		})
	}
	// The real key was never touched by the bad ids.
	if _, err := k.DataKey(ctx, ids[0]); err != nil {
		t.Fatal(err)
	}
}

// A load of a key that read its stored form before the key's destruction
// and finishes after it cannot put the key back in the cache, where it
// would still open, in this process, what was sealed under it.
func TestDestroyedKeyNotCachedByALoadInFlight(t *testing.T) {
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, 30*time.Second)
	k := mustOpenKeys(t, l, GenerateMasterKey())
	ids, cts := newPooled(t, k, 2)
	k.ClearCache()

	// A pooled key: the load has read the page...
	page, slot := mustPageOf(t, ids[0])
	raw, _, err := k.unwrapStored(ctx, page)
	if err != nil {
		t.Fatal(err)
	}
	inFlight := bytes.Clone(raw[slot*KeySize : (slot+1)*KeySize])
	wipe(raw)
	// ...the key is destroyed...
	if _, err := k.DestroyKeys(ctx, ids[:1]); err != nil {
		t.Fatal(err)
	}
	// ...and the load finishes.
	if _, err := k.cached(ids[0], inFlight); !errors.Is(err, ErrKeyDestroyed) {
		t.Fatalf("pooled key loaded across its destruction: %v, want ErrKeyDestroyed", err)
	}
	checkDestroyed(t, k, ids[:1])
	checkOpens(t, k, ids[1:], cts)

	// A key of its own, the same way.
	if _, err := k.NewDataKey(ctx, "wf.inflight"); err != nil {
		t.Fatal(err)
	}
	k.ClearCache()
	own, _, err := k.unwrapStored(ctx, "wf.inflight")
	if err != nil {
		t.Fatal(err)
	}
	if err := k.DestroyKey(ctx, "wf.inflight"); err != nil {
		t.Fatal(err)
	}
	if _, err := k.cached("wf.inflight", own); !errors.Is(err, ErrKeyDestroyed) {
		t.Fatalf("own key loaded across its destruction: %v, want ErrKeyDestroyed", err)
	}
	wipe(own)
	if _, err := k.DataKey(ctx, "wf.inflight"); !errors.Is(err, ErrKeyDestroyed) {
		t.Fatalf("destroyed key: %v", err)
	}
}

// The cache forgets the oldest tombstones first, and only once it holds
// destroyedMax of them.
func TestKeyCacheTombstonesAreBounded(t *testing.T) {
	c := newKeyCache(4)
	for i := range destroyedMax + 10 {
		c.destroy("k" + strconv.Itoa(i))
	}
	n := 0
	c.destroyed.Range(func(any, any) bool { n++; return true })
	if n != destroyedMax {
		t.Fatalf("%d tombstones, want %d", n, destroyedMax)
	}
	for i, want := range map[int]bool{0: true, 9: true, 10: false, destroyedMax + 9: false} {
		if stored := c.put("k"+strconv.Itoa(i), &DataKey{}); stored != want {
			t.Errorf("put k%d after %d destructions: stored %v, want %v", i, destroyedMax+10, stored, want)
		}
	}
}

// A crash between a page's rewrite (a compaction's slot zeroed) and the
// erasure of the revision it replaced leaves that revision, the destroyed
// key in it, in the store's files; no read returns it and no listing names
// the key again, so no later destruction would. EraseSuperseded, which the
// start-up sweep runs, erases it, and nothing a live key needs.
func TestEraseSupersededAfterACrash(t *testing.T) {
	dir := t.TempDir()
	l := testutil.OpenLog(t, dir)
	ctx := testutil.Context(t, 60*time.Second)
	k := mustOpenKeys(t, l, GenerateMasterKey())
	ids, cts := newPooled(t, k, 4)
	page, slot := mustPageOf(t, ids[1])
	before := storedPage(t, k, page)

	// destroySlots of ids[1], up to the crash: the page rewritten, the
	// revision it replaced not erased yet.
	raw, e, err := k.unwrapStored(ctx, page)
	if err != nil {
		t.Fatal(err)
	}
	clear(raw[slot*KeySize : (slot+1)*KeySize])
	wrapped := k.Keyring().Seal(dataKeyPurpose(page), raw)
	wipe(raw)
	if _, err := k.bucketFor(page).kv.Update(ctx, dataKeyPrefix+page, wrapped, e.Revision()); err != nil {
		t.Fatal(err)
	}
	if n := subjectCounts(t, l)[pageSubject(page)]; n != 2 {
		t.Fatalf("%d revisions of the page after the crash, want 2", n)
	}

	// The restarted process: the key reads destroyed and is listed nowhere.
	k2 := mustOpenKeys(t, l, k.mk)
	checkDestroyed(t, k2, ids[1:2])
	if slices.Contains(pooledIDsOf(t, k2, page), ids[1]) {
		t.Fatalf("PooledKeyIDs lists the destroyed key %s", ids[1])
	}
	if n, err := k2.EraseSuperseded(ctx); err != nil || n != 1 {
		t.Fatalf("EraseSuperseded = %d, %v; want 1 revision erased", n, err)
	}
	checkErased(t, l, before)
	if n := subjectCounts(t, l)[pageSubject(page)]; n != 1 {
		t.Fatalf("%d revisions of the page after the sweep, want 1", n)
	}
	kept := []string{ids[0], ids[2], ids[3]}
	checkOpens(t, k2, kept, cts)
	checkDestroyed(t, mustOpenKeys(t, l, k.mk), ids[1:2])
	if n, err := k2.EraseSuperseded(ctx); err != nil || n != 0 {
		t.Fatalf("EraseSuperseded again = %d, %v; want nothing to erase", n, err)
	}
	l.Close() // the store's files are complete once the server is down
	if files := filesHolding(t, dir, before[5:]); len(files) != 0 {
		t.Fatalf("the revision holding the destroyed key is still on disk in %v", files)
	}
}

// A page wrapped under a term this process does not know (another
// process rotated the keyring since it started) and cannot learn (the
// keyring was sealed under a new master key since) is named in
// PooledKeyIDs's error, as a damaged page is: its error was the keyring
// reload's, which names no page, so the compaction sweep's warning could
// not say which page kept its keys.
func TestPooledKeyIDsNamesAPageOfATermItCannotLoad(t *testing.T) {
	t.Parallel()
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, 30*time.Second)
	mk := GenerateMasterKey()
	k, other := mustOpenKeys(t, l, mk), mustOpenKeys(t, l, mk)
	if _, err := other.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	dk, err := other.NewPooledKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Reseal(ctx, l.JetStream(), mk, GenerateMasterKey(), KeysOptions{}, nil); err != nil {
		t.Fatal(err)
	}
	page, _ := mustPageOf(t, dk.ID())
	ids, err := k.PooledKeyIDs(ctx)
	if len(ids) != 0 || !errors.Is(err, ErrWrongMasterKey) || !strings.Contains(fmt.Sprint(err), page) {
		t.Errorf("PooledKeyIDs = %v, %v; want no key listed and an error naming page %s", ids, err, page)
	}
}

// EraseDamagedPage erases every revision of a page that does not open, or
// opens to the wrong size, which PooledKeyIDs names as a *DamagedPageError
// with the ids of all of its slots; this process then hands out no key of
// the page and refuses those it handed out. A page that opens again (a
// restore) is kept, and so is a page that does not open under a term
// nothing else stored under opens with (ErrKeyringMismatch): the keyring
// may be the wrong one. PooledKeyIDs listed the keys of a page that
// opened to the wrong size, and no erasure of a damaged page existed.
func TestEraseDamagedPage(t *testing.T) {
	t.Parallel()
	flip := func(_ *Keys, _ string, w []byte) []byte { w[len(w)/2] ^= 1; return w }
	for _, tc := range []struct {
		name   string
		stored func(k *Keys, page string, wrapped []byte) []byte
		// alone: no other key is stored under the page's term.
		alone, erased bool
	}{
		{"a flipped bit", flip, false, true},
		{"the wrong size", func(k *Keys, page string, _ []byte) []byte {
			return k.Keyring().Seal(dataKeyPurpose(page), make([]byte, KeySize))
		}, true, true},
		{"restored", func(_ *Keys, _ string, w []byte) []byte { return w }, false, false},
		{"a flipped bit, alone under its term", flip, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l := testutil.OpenLog(t, "")
			ctx := testutil.Context(t, 30*time.Second)
			k := mustOpenKeys(t, l, GenerateMasterKey())
			if !tc.alone {
				if _, err := k.NewDataKey(ctx, "secret.other.1"); err != nil {
					t.Fatal(err)
				}
			}
			ids, cts := newPooled(t, k, 2)
			page, _ := mustPageOf(t, ids[0])
			held, err := k.DataKey(ctx, ids[0])
			if err != nil {
				t.Fatal(err)
			}
			b := k.bucketFor(page)
			if _, err := b.kv.Put(ctx, dataKeyPrefix+page, tc.stored(k, page, storedPage(t, k, page))); err != nil {
				t.Fatal(err)
			}

			listed, err := k.PooledKeyIDs(ctx)
			var d *DamagedPageError
			if got := errors.As(err, &d); got != tc.erased || got && (d.Page != page || len(d.Keys()) != pageSlots || d.Keys()[1] != ids[1] || !errors.Is(err, ErrKeyDamaged) || len(listed) != 0) {
				t.Fatalf("PooledKeyIDs = %q, %v; want a damaged page error for %s: %v", listed, err, page, tc.erased)
			}
			if tc.alone && !tc.erased && !errors.Is(err, ErrKeyringMismatch) {
				t.Fatalf("PooledKeyIDs = %q, %v; want ErrKeyringMismatch", listed, err)
			}
			erased, err := k.EraseDamagedPage(ctx, page)
			if erased != tc.erased || (err != nil) != (tc.alone && !tc.erased) {
				t.Fatalf("EraseDamagedPage = %v, %v; want %v", erased, err, tc.erased)
			}
			info, err := b.stream.Info(ctx, jetstream.WithSubjectFilter(pageSubject(page)))
			if err != nil {
				t.Fatal(err)
			}
			if !tc.erased {
				if len(info.State.Subjects) != 1 {
					t.Errorf("the page's subject holds %v; want its message kept", info.State.Subjects)
				}
				if !tc.alone {
					checkOpens(t, k, ids, cts)
				}
				return
			}
			if n := len(info.State.Subjects); n != 0 {
				t.Errorf("the page's subject holds messages after its erasure: %v", info.State.Subjects)
			}
			if _, err := held.Open(pooledPurpose, cts[ids[0]]); !errors.Is(err, ErrKeyDestroyed) {
				t.Errorf("a key of the erased page handed out before opens: %v; want ErrKeyDestroyed", err)
			}
			checkDestroyed(t, k, ids)
			dk, err := k.NewPooledKey(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if p, _ := mustPageOf(t, dk.ID()); p == page {
				t.Errorf("key %s handed out of the erased page", dk.ID())
			}
		})
	}
}
