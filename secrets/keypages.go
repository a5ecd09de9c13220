package secrets

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/flowvault/flowvault/internal/logkey"
)

// Pooled keys. A workflow that seals a secret needs a data key of its own,
// which compaction destroys once the workflow has ended. One bucket entry
// per key costs a synced write to create it and two (an overwrite and a
// tombstone) to destroy it, for every such workflow. Pooled keys come in
// pages instead: a page is one bucket entry holding pageSlots keys, wrapped
// together under the keyring like any data key. A process takes the keys of
// a page it created one by one; destroying keys rewrites each page once for
// all the keys of a batch and securely erases the superseded revision, and
// a page whose keys are all destroyed is erased altogether.
//
// A pooled key's id is "kp.<page>.<slot>". A slot that was never handed out
// (its process stopped first) holds a key that sealed nothing; it keeps its
// page alive, and leaks nothing.
const (
	pagePrefix = "kp."
	pageSlots  = 64
)

// keyPool hands out the slots of the page this process created last.
type keyPool struct {
	mu   sync.Mutex
	page string // "kp.<random>"
	raw  []byte // the page's keys; each slot is wiped once handed out
	next int
}

// IsPooledKey reports whether id names a pooled key.
func IsPooledKey(id string) bool { return strings.HasPrefix(id, pagePrefix) }

// pageOf splits a pooled key id into its page's id and its slot.
func pageOf(id string) (page string, slot int, err error) {
	i := strings.LastIndexByte(id, '.')
	if !IsPooledKey(id) || i <= len(pagePrefix) {
		return "", 0, fmt.Errorf("pooled key id %q: %w: want kp.<page>.<slot>", id, ErrInvalidKeyID)
	}
	slot, err = strconv.Atoi(id[i+1:])
	if err != nil || slot < 0 || slot >= pageSlots || strconv.Itoa(slot) != id[i+1:] {
		return "", 0, fmt.Errorf("pooled key id %q: %w: slot is not in [0,%d)", id, ErrInvalidKeyID, pageSlots)
	}
	return id[:i], slot, nil
}

// NewPooledKey hands out a fresh data key from this process's current
// page, creating (and storing) a new page when none is left. Like
// NewDataKey's, the key is durable when NewPooledKey returns.
func (k *Keys) NewPooledKey(ctx context.Context) (*DataKey, error) {
	p := &k.pool
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.raw == nil {
		if err := k.newPage(ctx); err != nil {
			return nil, err
		}
	}
	slot := p.next
	raw := p.raw[slot*KeySize : (slot+1)*KeySize]
	aead, err := newGCM(raw)
	wipe(raw)
	if p.next++; p.next == pageSlots {
		p.raw = nil
	}
	if err != nil {
		return nil, err
	}
	dk := &DataKey{id: p.page + "." + strconv.Itoa(slot), aead: aead, refused: k.cache}
	k.cache.put(dk.id, dk) // a slot handed out the first time: never destroyed
	return dk, nil
}

// newPage generates a page of keys and stores it, wrapped.
func (k *Keys) newPage(ctx context.Context) error {
	var name [10]byte
	_, _ = rand.Read(name[:])
	page := pagePrefix + hex.EncodeToString(name[:])
	raw := make([]byte, 0, pageSlots*KeySize)
	for range pageSlots {
		key := newKey()
		raw = append(raw, key...)
		wipe(key)
	}
	wrapped := k.Keyring().Seal(dataKeyPurpose(page), raw)
	if _, err := k.create(ctx, k.bucketFor(page), dataKeyPrefix+page, wrapped); err != nil {
		wipe(raw)
		return fmt.Errorf("store key page %s: %w", page, err)
	}
	k.pool.page, k.pool.raw, k.pool.next = page, raw, 0
	return nil
}

// pooledKey unwraps pooled key id from its stored page.
func (k *Keys) pooledKey(ctx context.Context, id string) (*DataKey, error) {
	page, slot, err := pageOf(id)
	if err != nil {
		return nil, err
	}
	raw, _, err := k.unwrapStored(ctx, page)
	if err != nil {
		return nil, err
	}
	defer wipe(raw)
	if len(raw) != pageSlots*KeySize {
		return nil, fmt.Errorf("key page %s: %w: %d bytes, want %d", page, ErrKeyDamaged, len(raw), pageSlots*KeySize)
	}
	key := raw[slot*KeySize : (slot+1)*KeySize]
	if isZero(key) {
		return nil, fmt.Errorf("%s: %w", id, ErrKeyDestroyed)
	}
	return k.cached(id, key)
}

// DestroyKeys erases data keys for good, like DestroyKey, but rewrites
// each page of pooled keys once for all of its keys among ids. It erases
// every key of ids it can, and returns those it could not (kept, for a
// later call to erase) and why, one error per key or page, each naming
// it: a key that fails must not keep the rest of a batch. An id that
// cannot name a key (ErrInvalidKeyID) has its error but is not kept: no
// key was ever stored under it, so no later call erases anything. The
// keys of a damaged page (ErrKeyDamaged) are kept, as a restored page can
// be rewritten, and DamagedKeys names them: until then every call fails
// alike.
func (k *Keys) DestroyKeys(ctx context.Context, ids []string) (kept []string, err error) {
	var errs []error
	slots := map[string][]int{}     // page → slots to destroy
	pooled := map[string][]string{} // page → the ids of those slots
	for _, id := range ids {
		if !IsPooledKey(id) {
			if err := k.DestroyKey(ctx, id); err != nil {
				if !errors.Is(err, ErrInvalidKeyID) {
					kept = append(kept, id)
				}
				errs = append(errs, err)
			}
			continue
		}
		page, slot, err := pageOf(id)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		k.cache.destroy(id)
		slots[page] = append(slots[page], slot)
		pooled[page] = append(pooled[page], id)
	}
	// Pages in different shards are rewritten in parallel.
	const parallel = 8
	sem := make(chan struct{}, parallel)
	var (
		mu sync.Mutex
		wg sync.WaitGroup
	)
	for page, s := range slots {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := k.destroySlots(ctx, page, s); err != nil {
				err = fmt.Errorf("destroy keys of page %s: %w", page, err)
				if errors.Is(err, ErrKeyDamaged) {
					err = &damagedError{ids: pooled[page], err: err}
				}
				mu.Lock()
				kept = append(kept, pooled[page]...)
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return kept, errors.Join(errs...)
}

// damagedError is DestroyKeys' error for the keys ids it kept as their
// page is damaged.
type damagedError struct {
	ids []string
	err error
}

func (e *damagedError) Error() string { return e.err.Error() }
func (e *damagedError) Unwrap() error { return e.err }

// DamagedKeys returns the keys that DestroyKeys, failing with err, kept
// as their page is damaged (ErrKeyDamaged): those no later call erases
// until the page is restored.
func DamagedKeys(err error) []string {
	switch e := err.(type) {
	case nil:
		return nil
	case *damagedError:
		return e.ids
	case interface{ Unwrap() []error }:
		var ids []string
		for _, e := range e.Unwrap() {
			ids = append(ids, DamagedKeys(e)...)
		}
		return ids
	}
	return DamagedKeys(errors.Unwrap(err))
}

// destroySlots zeroes slots of page in a new revision of it and securely
// erases every older revision; a page left with no key is erased whole.
// A concurrent rewrite (another process's compaction, a rotation) makes
// it start over from the newer revision.
func (k *Keys) destroySlots(ctx context.Context, page string, slots []int) error {
	b := k.bucketFor(page)
	key := dataKeyPrefix + page
	for {
		raw, e, err := k.unwrapStored(ctx, page)
		if errors.Is(err, ErrKeyDestroyed) {
			return nil // the whole page is gone already
		}
		if err != nil {
			return err
		}
		if len(raw) != pageSlots*KeySize {
			wipe(raw)
			return fmt.Errorf("%w: %d bytes, want %d", ErrKeyDamaged, len(raw), pageSlots*KeySize)
		}
		changed := false
		for _, s := range slots {
			if slotKey := raw[s*KeySize : (s+1)*KeySize]; !isZero(slotKey) {
				clear(slotKey)
				changed = true
			}
		}
		if !changed {
			// Destroyed before (a repeated pass): only a revision a crash
			// left behind may still need erasing.
			wipe(raw)
			_, err := k.erase(ctx, b, key, e.Revision())
			return err
		}
		if isZero(raw) {
			_, err := k.erase(ctx, b, key, 0)
			return err
		}
		wrapped := k.Keyring().Seal(dataKeyPurpose(page), raw)
		wipe(raw)
		// The bucket keeps two revisions, and drops the older of three
		// without overwriting it: a revision that a concurrent rewrite (or
		// a crash) left behind is erased before there can be a third.
		if _, err := k.erase(ctx, b, key, e.Revision()); err != nil {
			return err
		}
		rev, err := k.update(ctx, b, key, wrapped, e.Revision())
		if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			continue
		}
		if err != nil {
			return err
		}
		// The revision just superseded still holds the destroyed keys.
		_, err = k.erase(ctx, b, key, rev)
		return err
	}
}

// PooledKeyIDs lists the pooled keys not destroyed yet, page by page,
// including slots that were never handed out. A page it cannot read (a
// damaged one) does not keep the others' keys from their callers: it
// lists every page it can, and returns with them one error per page it
// could not read, naming the page; a damaged page's is a
// *DamagedPageError. So does a bucket it cannot list: one error, naming
// the bucket, and the pages of the others. Pages that do not open under a
// term this keyring does not match (ErrKeyringMismatch, see
// damageProven) are not damaged: they have one error per term, which it
// also logs, naming the term.
func (k *Keys) PooledKeyIDs(ctx context.Context) ([]string, error) {
	var (
		out        []string
		unreadable []error
		unopened   []unopenedPage
		opens      = map[uint32]bool{} // terms a page opened under
	)
	err := k.eachEntry(ctx, dataKeyPrefix+pagePrefix+">", func(_ bucket, e entry) error {
		page := strings.TrimPrefix(e.Key(), dataKeyPrefix)
		raw, err := k.unwrap(ctx, page, e.Value())
		if err == nil {
			term, _ := ciphertextTerm(e.Value())
			opens[term] = true
		}
		switch {
		case err == nil && len(raw) != pageSlots*KeySize:
			// It opened: its term is the key that wrapped it.
			wipe(raw)
			unreadable = append(unreadable, &DamagedPageError{Page: page, err: fmt.Errorf("key page %s: %w: %d bytes, want %d", page, ErrKeyDamaged, len(raw), pageSlots*KeySize)})
			return nil
		case errors.Is(err, ErrKeyDamaged):
			unopened = append(unopened, unopenedPage{page: page, e: e, err: err})
			return nil
		case err != nil:
			unreadable = append(unreadable, err) // it names the page
			return nil
		}
		defer wipe(raw)
		for s := range len(raw) / KeySize {
			if !isZero(raw[s*KeySize : (s+1)*KeySize]) {
				out = append(out, page+"."+strconv.Itoa(s))
			}
		}
		return nil
	})
	unreadable = append(unreadable, k.judgeUnopened(ctx, unopened, opens)...)
	return out, errors.Join(append(unreadable, err)...)
}

// unopenedPage is a key page its term does not open.
type unopenedPage struct {
	page string
	e    entry
	err  error
}

// judgeUnopened returns an error for each page of unopened that is
// damaged (*DamagedPageError), and one for each term whose pages prove
// nothing, logged: a keyring replaced by mistake makes every page look
// damaged, and the operator must hear of it before a restore is too late.
func (k *Keys) judgeUnopened(ctx context.Context, unopened []unopenedPage, opens map[uint32]bool) []error {
	var (
		errs       []error
		mismatched = map[uint32][]unopenedPage{}
	)
	for _, u := range unopened {
		term, err := k.damageProven(ctx, u.e.Value(), u.e.Created(), opens)
		switch {
		case errors.Is(err, ErrKeyringMismatch):
			mismatched[term] = append(mismatched[term], u)
		case err != nil:
			errs = append(errs, fmt.Errorf("key page %s: %w", u.page, err))
		default:
			errs = append(errs, &DamagedPageError{Page: u.page, err: u.err})
		}
	}
	for term, pages := range mismatched {
		err := fmt.Errorf("%w for term %d: %d key pages wrapped under it do not open (%s the first: %w), and none is taken for damaged nor erased: nothing else stored under the term opens with this keyring, or they were stored before this keyring's term was created",
			ErrKeyringMismatch, term, len(pages), pages[0].page, pages[0].err)
		k.logger.Error("key pages do not open under a keyring term that does not match the key store (the keyring replaced, by a new one starting at term 1 again?): they are kept; put the keyring back to open them",
			logkey.Version, term, logkey.Count, len(pages), logkey.Page, pages[0].page)
		errs = append(errs, err)
	}
	return errs
}

// termTries bounds the stored keys damageProven tries under a term:
// under a keyring that does not match, every one fails, and each sweep
// would read the whole store.
const termTries = 16

// errStop ends an eachEntry early.
var errStop = errors.New("stop")

// damageProven returns the term of wrapped, a stored key page's value
// that does not open under it (ErrKeyDamaged), and nil if that proves the
// page damaged; ErrKeyringMismatch if it does not: this keyring's term of
// that number is not the key that wrapped the page. A keyring whose entry
// was replaced starts at term 1 again with a new key, and every page then
// fails under "term 1" alike. Proof is a page stored after this keyring
// created the term (one stored before cannot be its), and another stored
// key under the term that opens (opens caches the terms known to open,
// and is filled in). A ciphertext with no term is damaged.
func (k *Keys) damageProven(ctx context.Context, wrapped []byte, stored time.Time, opens map[uint32]bool) (uint32, error) {
	term, ok := ciphertextTerm(wrapped)
	if !ok {
		return 0, nil
	}
	t := k.Keyring().terms[term]
	if t == nil {
		return term, fmt.Errorf("%w %d", errUnknownTerm, term)
	}
	if !stored.After(time.UnixMilli(t.created)) {
		return term, fmt.Errorf("%w: stored before term %d was created", ErrKeyringMismatch, term)
	}
	works, known := opens[term]
	if !known {
		var err error
		if works, err = k.termOpens(ctx, term); err != nil {
			return term, fmt.Errorf("whether keyring term %d opens anything stored: %w", term, err)
		}
		opens[term] = works
	}
	if !works {
		return term, fmt.Errorf("%w: nothing stored under term %d opens", ErrKeyringMismatch, term)
	}
	return term, nil
}

// termOpens reports whether a stored data key or key page wrapped under
// term opens with this keyring, giving up after termTries that do not.
func (k *Keys) termOpens(ctx context.Context, term uint32) (bool, error) {
	ring := k.Keyring()
	tried, found := 0, false
	err := k.eachEntry(ctx, dataKeyPrefix+">", func(_ bucket, e entry) error {
		if t, ok := ciphertextTerm(e.Value()); !ok || t != term {
			return nil
		}
		raw, err := ring.Open(dataKeyPurpose(strings.TrimPrefix(e.Key(), dataKeyPrefix)), e.Value())
		if err == nil {
			wipe(raw)
			found = true
			return errStop
		}
		if tried++; tried == termTries {
			return errStop
		}
		return nil
	})
	if errors.Is(err, errStop) {
		err = nil
	}
	return found, err
}

// DamagedPageError is PooledKeyIDs' error for a key page whose stored
// value does not open under the keyring's term that wrapped it, or opens
// to the wrong size (ErrKeyDamaged). Which of its keys were destroyed and
// which are live is unknown, and none can be erased but with the whole
// page (EraseDamagedPage).
type DamagedPageError struct {
	Page string
	err  error
}

func (e *DamagedPageError) Error() string { return e.err.Error() }
func (e *DamagedPageError) Unwrap() error { return e.err }

// Keys returns the ids of every slot of the page.
func (e *DamagedPageError) Keys() []string {
	ids := make([]string, pageSlots)
	for s := range ids {
		ids[s] = e.Page + "." + strconv.Itoa(s)
	}
	return ids
}

// EraseDamagedPage securely erases every stored revision of key page
// page, the keys of all of its slots with it, if its latest revision is
// damaged (ErrKeyDamaged), and reports whether it did. The caller knows
// no workflow still needs a key of it. A damaged page cannot be
// rewritten with its spent keys zeroed, and AES-GCM is CTR mode and a
// tag: a flipped bit or a broken tag keeps the rest of the keys open to
// anyone who decrypts it, with the master key, without checking the tag.
// A page that opens (restored meanwhile) is not erased, nor one wrapped
// under a term the keyring does not hold, which a rotation not visible
// here yet explains, nor one whose term this keyring does not match
// (ErrKeyringMismatch, see damageProven); nor a revision stored after the
// damaged one was read. This process hands out no more keys of the page, and refuses
// those it handed out.
func (k *Keys) EraseDamagedPage(ctx context.Context, page string) (bool, error) {
	if _, _, err := pageOf(page + ".0"); err != nil {
		return false, err
	}
	raw, e, err := k.unwrapStored(ctx, page)
	switch {
	case errors.Is(err, ErrKeyDestroyed):
		return false, nil
	case err == nil:
		wipe(raw)
		if len(raw) == pageSlots*KeySize {
			return false, nil
		}
	case !errors.Is(err, ErrKeyDamaged):
		return false, err
	default:
		if _, err := k.damageProven(ctx, e.Value(), e.Created(), map[uint32]bool{}); err != nil {
			return false, fmt.Errorf("key page %s kept: %w", page, err)
		}
	}
	k.pool.mu.Lock()
	if k.pool.page == page && k.pool.raw != nil {
		wipe(k.pool.raw)
		k.pool.raw = nil
	}
	k.pool.mu.Unlock()
	for s := range pageSlots {
		k.cache.destroy(page + "." + strconv.Itoa(s))
	}
	n, err := k.erase(ctx, k.bucketFor(page), dataKeyPrefix+page, e.Revision()+1)
	if err != nil {
		return n > 0, fmt.Errorf("erase damaged key page %s: %w", page, err)
	}
	return n > 0, nil
}

func isZero(b []byte) bool {
	var acc byte
	for _, c := range b {
		acc |= c
	}
	return acc == 0
}
