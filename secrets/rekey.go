package secrets

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/flowvault/flowvault/internal/logkey"
)

// Equal reports, in constant time, whether m and o are the same key.
func (m *MasterKey) Equal(o *MasterKey) bool {
	return m != nil && o != nil && subtle.ConstantTimeCompare(m.key, o.key) == 1
}

// Clone returns a copy of the key, for a callee that wipes the key it
// is given.
func (m *MasterKey) Clone() *MasterKey { return &MasterKey{key: bytes.Clone(m.key)} }

// CheckValue identifies the key without revealing it: the hex of the
// 8-byte check value the sealed keyring carries in the clear. Audit
// records name a master key by it.
func (m *MasterKey) CheckValue() string { return hex.EncodeToString(m.checkValue()) }

// ResealResult reports a Reseal.
type ResealResult struct {
	// ActiveTerm is the keyring's active KEK term, Terms how many it has;
	// a reseal changes neither.
	ActiveTerm uint32
	Terms      int
	// Resealed says that this call sealed the keyring under the new key;
	// false: it was sealed under it already (a run that was interrupted
	// after that step), and only the old sealed form was erased.
	Resealed bool
}

// errStaleMasterKey explains an ErrWrongMasterKey met by a process that
// opened the keyring before: someone sealed it under a new master key.
func errStaleMasterKey(err error) error {
	if !errors.Is(err, ErrWrongMasterKey) {
		return err
	}
	return fmt.Errorf("the keyring in KV bucket %s is now sealed under another master key than the one this process started with "+
		"(changed with `flowvault keys rekey`?): restart it with the new master key: %w", KeyBucket, err)
}

// Reseal seals the keyring that js holds under newMK in place of oldMK
// (`flowvault keys rekey`). The keyring's terms are not touched, so no
// data key is re-wrapped and no event changes: only the sealed keyring is
// replaced (one compare-and-set update, so a reader sees the old sealed
// form or the new one), and the old form is then erased securely, so that
// the old master key opens nothing the store still holds.
//
// It is safe to run again after a crash: a keyring already sealed under
// newMK is left as it is (its superseded form erased if that step did not
// happen), one sealed under neither key fails with ErrWrongMasterKey. step,
// when set, is called after each durable step (tests stop there).
func Reseal(ctx context.Context, js jetstream.JetStream, oldMK, newMK *MasterKey, o KeysOptions, step func(string)) (ResealResult, error) {
	if step == nil {
		step = func(string) {}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	k := &Keys{logger: o.Logger.With(logkey.Component, "secrets"), guard: o.Guard}
	main, err := bindBucket(ctx, js, KeyBucket, o, mainBucketDescription)
	if err != nil {
		return ResealResult{}, err
	}
	e, err := main.kv.Get(ctx, keyringKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return ResealResult{}, fmt.Errorf("KV bucket %s holds no keyring: no server has stored a secret key here yet", KeyBucket)
	}
	if err != nil {
		return ResealResult{}, fmt.Errorf("read keyring: %w", err)
	}
	ring, err := openKeyring(newMK, e.Value())
	if err == nil {
		// Sealed under the new key already: finish what an interrupted
		// run left, the erasure of the old sealed form.
		if _, err := k.erase(ctx, main, keyringKey, e.Revision()); err != nil {
			return ResealResult{}, fmt.Errorf("erase the keyring sealed under the old master key: %w", err)
		}
		return ResealResult{ActiveTerm: ring.ActiveTerm(), Terms: len(ring.terms)}, nil
	}
	if !errors.Is(err, ErrWrongMasterKey) {
		return ResealResult{}, err
	}
	ring, err = openKeyring(oldMK, e.Value())
	if errors.Is(err, ErrWrongMasterKey) {
		return ResealResult{}, fmt.Errorf("neither the current nor the new master key opens the keyring stored in KV bucket %s; nothing was changed: %w", KeyBucket, err)
	}
	if err != nil {
		return ResealResult{}, err
	}
	blob, err := sealKeyring(newMK, ring)
	if err != nil {
		return ResealResult{}, err
	}
	// An older keyring (an interrupted rotation's) goes first, as in
	// Rotate: past the bucket's history the server would drop it without
	// overwriting it, and the old master key would open it on disk.
	if _, err := k.erase(ctx, main, keyringKey, e.Revision()); err != nil {
		return ResealResult{}, fmt.Errorf("erase a superseded keyring: %w", err)
	}
	rev, err := k.update(ctx, main, keyringKey, blob, e.Revision())
	if err != nil {
		return ResealResult{}, fmt.Errorf("store the keyring sealed under the new master key (a concurrent rotation?): %w", err)
	}
	step("resealed")
	res := ResealResult{ActiveTerm: ring.ActiveTerm(), Terms: len(ring.terms), Resealed: true}
	if _, err := k.erase(ctx, main, keyringKey, rev); err != nil {
		return res, fmt.Errorf("erase the keyring sealed under the old master key: %w", err)
	}
	step("erased")
	k.logger.Info("keyring sealed under a new master key", logkey.Version, res.ActiveTerm)
	return res, nil
}
