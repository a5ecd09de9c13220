package secrets

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/internal/testutil"
)

// Reseal seals the keyring under a new master key: the new key opens it
// and every data key, the old one is refused and its sealed form is gone
// from the stream; run again (after a crash) it finishes; keys that do
// not open it are refused, changing nothing.
func TestReseal(t *testing.T) {
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, 60*time.Second)
	oldMK, newMK, stranger := GenerateMasterKey(), GenerateMasterKey(), GenerateMasterKey()
	k := mustOpenKeys(t, l, oldMK.Clone())
	cts := map[string][]byte{}
	for _, id := range []string{"secret.a.x", "wf.b.s"} {
		dk, err := k.NewDataKey(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		cts[id] = dk.Seal(Purpose(id), []byte(id))
	}
	if _, err := k.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	before := streamMessages(t, l, "KV_"+KeyBucket)

	for _, tt := range []struct {
		name       string
		old, new   *MasterKey
		wantErr    bool
		resealed   bool
		opensAfter *MasterKey
	}{
		{"neither key", stranger, GenerateMasterKey(), true, false, oldMK},
		{"reseal", oldMK, newMK, false, true, newMK},
		{"again, as after a crash", oldMK, newMK, false, false, newMK},
		{"the old key as the new one's replacement", stranger, oldMK, true, false, newMK},
	} {
		res, err := Reseal(ctx, l.JetStream(), tt.old, tt.new, KeysOptions{Logger: testutil.Logger(t)}, nil)
		if (err != nil) != tt.wantErr || (err != nil && !errors.Is(err, ErrWrongMasterKey)) {
			t.Fatalf("%s: %v, want error %v", tt.name, err, tt.wantErr)
		}
		if err == nil && (res.Resealed != tt.resealed || res.ActiveTerm != 2 || res.Terms != 2) {
			t.Fatalf("%s: %+v", tt.name, res)
		}
		if _, err := openKeys(t, l, tt.opensAfter.Clone(), ""); err != nil {
			t.Fatalf("%s: the keyring does not open with the expected key: %v", tt.name, err)
		}
	}
	if _, err := openKeys(t, l, oldMK.Clone(), ""); !errors.Is(err, ErrWrongMasterKey) {
		t.Fatalf("the old key after the reseal: %v", err)
	}
	k2 := mustOpenKeys(t, l, newMK.Clone())
	for id, ct := range cts {
		dk, err := k2.DataKey(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := dk.Open(Purpose(id), ct); err != nil || string(got) != id {
			t.Fatalf("%s after the reseal: %q %v", id, got, err)
		}
	}
	// The keyring sealed under the old key is erased, not kept as the
	// previous revision: the old key opens nothing the stream holds.
	after := streamMessages(t, l, "KV_"+KeyBucket)
	for _, m := range after {
		if _, err := openKeyring(oldMK, m); err == nil {
			t.Fatal("the stream still holds a keyring the old master key opens")
		}
	}
	for _, m := range before {
		if bytes.HasPrefix(m, keyringMagic) {
			for _, a := range after {
				if bytes.Equal(a, m) {
					t.Fatal("the old sealed keyring is still stored")
				}
			}
		}
	}
	// A process that opened the keyring before the reseal cannot load it
	// again, and says why.
	if err := k.reload(ctx); !errors.Is(err, ErrWrongMasterKey) || !bytes.Contains([]byte(err.Error()), []byte("flowvault keys rekey")) {
		t.Fatalf("reload with the old key: %v", err)
	}
}

// A rotation killed between storing the rotated keyring and erasing the
// one it replaced leaves that one as the previous revision. The next
// rotation or rekey stores a third revision: the one left behind must be
// erased first, or the server drops it past the bucket's history without
// overwriting it, and its bytes stay in the store's files, sealed under a
// master key that a rekey was meant to make open nothing.
func TestKeyringRewriteAfterAnInterruptedRotation(t *testing.T) {
	for _, tt := range []struct {
		name    string
		rewrite func(context.Context, *eventlog.Log, *Keys, *MasterKey) error
	}{
		{"rotate", func(ctx context.Context, _ *eventlog.Log, k *Keys, _ *MasterKey) error {
			_, err := k.Rotate(ctx)
			return err
		}},
		{"rekey", func(ctx context.Context, l *eventlog.Log, _ *Keys, mk *MasterKey) error {
			_, err := Reseal(ctx, l.JetStream(), mk, GenerateMasterKey(), KeysOptions{Logger: testutil.Logger(t)}, nil)
			return err
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			l := testutil.OpenLog(t, dir)
			ctx := testutil.Context(t, 60*time.Second)
			mk := GenerateMasterKey()
			k := mustOpenKeys(t, l, mk.Clone())
			first, err := k.main.kv.Get(ctx, keyringKey)
			if err != nil {
				t.Fatal(err)
			}
			// Rotate up to the crash: the rotated keyring stored, the one
			// it replaced not erased.
			ring, err := openKeyring(mk, first.Value())
			if err != nil {
				t.Fatal(err)
			}
			next, err := ring.rotated(time.Now())
			if err != nil {
				t.Fatal(err)
			}
			blob, err := sealKeyring(mk, next)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := k.main.kv.Update(ctx, keyringKey, blob, first.Revision()); err != nil {
				t.Fatal(err)
			}
			if n := subjectCounts(t, l)["$KV."+KeyBucket+"."+keyringKey]; n != 2 {
				t.Fatalf("%d revisions of the keyring after the crash, want 2", n)
			}
			sealed := bytes.Clone(first.Value()[len(keyringMagic):])
			if len(filesHolding(t, dir, sealed)) == 0 {
				t.Fatal("the first keyring is not found in the store's files")
			}

			if err := tt.rewrite(ctx, l, mustOpenKeys(t, l, mk.Clone()), mk); err != nil {
				t.Fatal(err)
			}
			l.Close() // the store's files are complete once the server is down
			if files := filesHolding(t, dir, sealed); len(files) != 0 {
				t.Fatalf("the keyring the interrupted rotation replaced is still on disk in %v", files)
			}
		})
	}
}
