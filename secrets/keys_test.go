package secrets

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/internal/testutil"
)

func openKeys(t *testing.T, l *eventlog.Log, mk *MasterKey, devFile string) (*Keys, error) {
	t.Helper()
	return OpenKeys(testutil.Context(t, 30*time.Second), l.JetStream(), mk, KeysOptions{DevKeyFile: devFile, Logger: testutil.Logger(t)})
}

func mustOpenKeys(t *testing.T, l *eventlog.Log, mk *MasterKey) *Keys {
	t.Helper()
	k, err := openKeys(t, l, mk, "")
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// keyStreams names the streams of every key bucket.
func keyStreams() []string {
	out := []string{"KV_" + KeyBucket}
	for i := range workflowKeyShards {
		out = append(out, fmt.Sprintf("KV_%s_WF%02d", KeyBucket, i))
	}
	return out
}

// subjectCounts returns how many messages the key streams hold per subject.
func subjectCounts(t *testing.T, l *eventlog.Log) map[string]uint64 {
	t.Helper()
	ctx := testutil.Context(t, 10*time.Second)
	counts := map[string]uint64{}
	for _, name := range keyStreams() {
		s, err := l.JetStream().Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(ctx, jetstream.WithSubjectFilter(">"))
		if err != nil {
			t.Fatal(err)
		}
		maps.Copy(counts, info.State.Subjects)
	}
	return counts
}

// rawMessages returns the data of every message of the key streams.
func rawMessages(t *testing.T, l *eventlog.Log) [][]byte {
	t.Helper()
	var out [][]byte
	for _, name := range keyStreams() {
		out = append(out, streamMessages(t, l, name)...)
	}
	return out
}

func streamMessages(t *testing.T, l *eventlog.Log, name string) [][]byte {
	t.Helper()
	ctx := testutil.Context(t, 10*time.Second)
	s, err := l.JetStream().Stream(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && seq > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m.Data)
	}
	return out
}

// Keys reload from the bucket: a second process (another Keys on the same
// bucket) opens what the first sealed; fingerprints agree.
func TestKeysReload(t *testing.T) {
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, 30*time.Second)
	mk := GenerateMasterKey()
	a := mustOpenKeys(t, l, mk)
	dk, err := a.NewDataKey(ctx, "test.one")
	if err != nil {
		t.Fatal(err)
	}
	ct := dk.Seal(Purpose("t"), []byte("hello"))
	if _, err := a.NewDataKey(ctx, "test.one"); err == nil {
		t.Fatal("a data key id was created twice")
	}

	b := mustOpenKeys(t, l, mk)
	dk2, err := b.DataKey(ctx, "test.one")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := dk2.Open(Purpose("t"), ct); err != nil || string(got) != "hello" {
		t.Fatalf("reloaded key opens %q, %v", got, err)
	}
	if a.Fingerprint([]byte("x")) != b.Fingerprint([]byte("x")) {
		t.Fatal("fingerprints differ between processes")
	}
	if _, err := b.DataKey(ctx, "test.none"); !errors.Is(err, ErrKeyDestroyed) {
		t.Fatalf("missing key: %v", err)
	}
	// kp.… names pooled keys, which only NewPooledKey hands out.
	for _, bad := range []string{"", ".x", "x.", "a..b", "a b", "a/b", "a*", strings.Repeat("a", 513), "kp.x.3"} {
		if _, err := a.NewDataKey(ctx, bad); err == nil {
			t.Errorf("key id %q accepted", bad)
		}
	}
}

// A master key other than the keyring's is refused at start with a clear
// error, and nothing is overwritten.
func TestWrongMasterKeyRefuses(t *testing.T) {
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, 30*time.Second)
	mk := GenerateMasterKey()
	k := mustOpenKeys(t, l, mk)
	before, err := k.main.kv.Get(ctx, keyringKey)
	if err != nil {
		t.Fatal(err)
	}
	_, err = openKeys(t, l, GenerateMasterKey(), "")
	if !errors.Is(err, ErrWrongMasterKey) || !strings.Contains(err.Error(), "nothing was changed") || !strings.Contains(err.Error(), MasterKeyEnv) {
		t.Fatalf("wrong master key: %v", err)
	}
	after, err := k.main.kv.Get(ctx, keyringKey)
	if err != nil {
		t.Fatal(err)
	}
	if after.Revision() != before.Revision() || !bytes.Equal(after.Value(), before.Value()) {
		t.Fatal("the keyring was rewritten")
	}
	// No master key at all, not in dev mode.
	if _, err := openKeys(t, l, nil, ""); !errors.Is(err, ErrNoMasterKey) {
		t.Fatalf("no master key: %v", err)
	}
	if _, err := openKeys(t, l, mk, ""); err != nil {
		t.Fatalf("right key after refusals: %v", err)
	}
}

// Dev mode generates a key file (0600) once, reads it afterwards, and
// refuses to invent a new key for an existing keyring.
func TestDevMasterKey(t *testing.T) {
	l := testutil.OpenLog(t, "")
	dir := t.TempDir()
	path := filepath.Join(dir, "data", DevKeyFileName)
	logger, logs := testutil.CapturingLogger()
	k, err := OpenKeys(testutil.Context(t, 30*time.Second), l.JetStream(), nil, KeysOptions{DevKeyFile: path, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Fatalf("dev key file mode %v", info.Mode().Perm())
	}
	text, _ := os.ReadFile(path)
	mk, err := ParseMasterKey(string(text))
	if err != nil {
		t.Fatalf("dev key file does not hold a key: %v", err)
	}
	if !strings.Contains(logs.String(), "DEV MODE") || !strings.Contains(logs.String(), `"level":"WARN"`) {
		t.Fatalf("no loud warning: %s", logs)
	}
	if strings.Contains(logs.String(), strings.TrimSpace(string(text))) {
		t.Fatal("the log holds the generated key")
	}
	fp := k.Fingerprint([]byte("v"))

	// Restart: the file is read, not regenerated.
	k2, err := openKeys(t, l, nil, path)
	if err != nil {
		t.Fatal(err)
	}
	if k2.Fingerprint([]byte("v")) != fp {
		t.Fatal("restart in dev mode changed the keyring")
	}
	text2, _ := os.ReadFile(path)
	if !bytes.Equal(text, text2) {
		t.Fatal("dev key file rewritten")
	}
	// The explicit key equals the dev key: same keyring.
	if _, err := openKeys(t, l, mk, ""); err != nil {
		t.Fatal(err)
	}
	// The file is gone but the keyring exists: refuse, create nothing.
	os.Remove(path)
	if _, err := openKeys(t, l, nil, path); !errors.Is(err, ErrNoMasterKey) || !strings.Contains(err.Error(), path) {
		t.Fatalf("lost dev key: %v", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a new dev key file was created: %v", err)
	}
}

// An empty dev key file, which a process killed between the file's
// creation and its write leaves, is replaced by a new key while nothing
// is sealed yet, rather than refused at every start; once data exists it
// is refused as before, and left as it is.
func TestDevMasterKeyCutShort(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name       string
		dataExists bool
	}{{"nothing sealed yet", false}, {"data sealed", true}} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), DevKeyFileName)
			if err := os.WriteFile(path, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			mk, err := DevMasterKey(path, tt.dataExists, testutil.Logger(t))
			text, rerr := os.ReadFile(path)
			if rerr != nil {
				t.Fatal(rerr)
			}
			if tt.dataExists {
				if err == nil || len(text) != 0 {
					t.Fatalf("an empty dev key file under sealed data: %v, file of %d bytes; want it refused and left", err, len(text))
				}
				return
			}
			if err != nil {
				t.Fatalf("dev key after a creation cut short: %v", err)
			}
			again, err := ParseMasterKey(string(text))
			if err != nil || !again.Equal(mk) {
				t.Fatalf("the file does not hold the key given: %v", err)
			}
		})
	}
}

// DestroyKey erases every stored revision of a data key: the wrapped key
// is no longer in the stream, and ciphertexts under it never open again.
func TestDestroyKey(t *testing.T) {
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, 30*time.Second)
	k := mustOpenKeys(t, l, GenerateMasterKey())
	dk, err := k.NewDataKey(ctx, "wf.abc")
	if err != nil {
		t.Fatal(err)
	}
	ct := dk.Seal(Purpose("f"), []byte("shred me"))
	e, _ := k.bucketFor("wf.abc").kv.Get(ctx, dataKeyPrefix+"wf.abc")
	wrapped := bytes.Clone(e.Value())
	if _, err := k.Rotate(ctx); err != nil { // two revisions have existed
		t.Fatal(err)
	}
	if err := k.DestroyKey(ctx, "wf.abc"); err != nil {
		t.Fatal(err)
	}
	if _, err := k.DataKey(ctx, "wf.abc"); !errors.Is(err, ErrKeyDestroyed) {
		t.Fatalf("destroyed key: %v", err)
	}
	// Another process, which never cached it, cannot get it either.
	k2 := mustOpenKeys(t, l, k.mk)
	if _, err := k2.DataKey(ctx, "wf.abc"); !errors.Is(err, ErrKeyDestroyed) {
		t.Fatalf("destroyed key, other process: %v", err)
	}
	if n := subjectCounts(t, l)["$KV."+dataKeyBucket("wf.abc")+"."+dataKeyPrefix+"wf.abc"]; n != 0 {
		t.Fatalf("%d messages left for the destroyed key", n)
	}
	for _, m := range rawMessages(t, l) {
		if bytes.Contains(m, wrapped[5:]) {
			t.Fatal("the wrapped key is still in the stream")
		}
	}
	_ = ct
	if err := k.DestroyKey(ctx, "wf.abc"); err != nil {
		t.Fatalf("destroying twice: %v", err)
	}
}

// Rotate adds a term and re-wraps every data key under it without touching
// anything else; superseded revisions are erased; every process still
// opens every key.
func TestRotateRewraps(t *testing.T) {
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, 60*time.Second)
	mk := GenerateMasterKey()
	k := mustOpenKeys(t, l, mk)
	other := mustOpenKeys(t, l, mk) // a second process, opened before the rotation
	cts := map[string][]byte{}
	// Secrets' keys and workflows' keys, which live in the shard buckets.
	for _, id := range []string{"secret.s0.x", "secret.s1.x", "wf.a.s", "wf.b.s", "wf.c.m"} {
		dk, err := k.NewDataKey(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		cts[id] = dk.Seal(Purpose(id), []byte(id))
	}
	res, err := k.Rotate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Term != 2 || res.Previous != 1 || res.Rewrapped != 5 {
		t.Fatalf("rotate = %+v", res)
	}
	st, err := k.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.DataKeys[2] != 5 || st.DataKeys[1] != 0 || len(st.Terms) != 2 || !st.Terms[1].Active {
		t.Fatalf("status = %+v", st)
	}
	for subj, n := range subjectCounts(t, l) {
		if n != 1 {
			t.Fatalf("%s keeps %d revisions after the rotation", subj, n)
		}
	}
	for _, keys := range []*Keys{k, other, mustOpenKeys(t, l, mk)} {
		keys.ClearCache()
		for id, ct := range cts {
			dk, err := keys.DataKey(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if got, err := dk.Open(Purpose(id), ct); err != nil || string(got) != id {
				t.Fatalf("%s after rotation: %q %v", id, got, err)
			}
		}
	}
	if other.Keyring().ActiveTerm() != 2 {
		t.Fatal("the other process did not reload the keyring on meeting term 2")
	}
	// New keys are wrapped under the new term; a second rotation works.
	if _, err := other.NewDataKey(ctx, "secret.new.x"); err != nil {
		t.Fatal(err)
	}
	res, err = k.Rotate(ctx)
	if err != nil || res.Term != 3 || res.Rewrapped != 6 {
		t.Fatalf("second rotate = %+v, %v", res, err)
	}
}

// A damaged wrapped key or keyring fails with an error, not a panic.
func TestCorruptStoredKeys(t *testing.T) {
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, 30*time.Second)
	mk := GenerateMasterKey()
	k := mustOpenKeys(t, l, mk)
	if _, err := k.NewDataKey(ctx, "t.k"); err != nil {
		t.Fatal(err)
	}
	e, _ := k.main.kv.Get(ctx, dataKeyPrefix+"t.k")
	bad := bytes.Clone(e.Value())
	bad[len(bad)-1] ^= 0x80
	if _, err := k.main.kv.Put(ctx, dataKeyPrefix+"t.k", bad); err != nil {
		t.Fatal(err)
	}
	k.ClearCache()
	if _, err := k.DataKey(ctx, "t.k"); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("corrupt wrapped key: %v", err)
	}
	// A wrapped key moved to another id does not open.
	if _, err := k.main.kv.Put(ctx, dataKeyPrefix+"t.moved", e.Value()); err != nil {
		t.Fatal(err)
	}
	if _, err := k.DataKey(ctx, "t.moved"); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("moved wrapped key: %v", err)
	}
	if _, err := k.main.kv.Put(ctx, keyringKey, []byte("garbage")); err != nil {
		t.Fatal(err)
	}
	if _, err := openKeys(t, l, mk, ""); err == nil {
		t.Fatal("a garbage keyring opened")
	}
}

// Secret-bearing types print as "***" in every form.
func TestRedactedTypes(t *testing.T) {
	l := testutil.OpenLog(t, "")
	mk := GenerateMasterKey()
	keys := mustOpenKeys(t, l, mk)
	dk, err := keys.NewDataKey(testutil.Context(t, 10*time.Second), "t.redact")
	if err != nil {
		t.Fatal(err)
	}
	secret := "s3cr3t-value-1234"
	val := Value(secret)
	mkText := string(mk.Text())
	for name, v := range map[string]any{
		"Value": val, "*MasterKey": mk, "*DataKey": dk, "*Keyring": keys.Keyring(), "*Keys": keys,
		"struct": struct{ V Value }{val}, "map": map[string]any{"v": val},
	} {
		var outs []string
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d"} {
			outs = append(outs, fmt.Sprintf(verb, v))
		}
		j, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("%s: json: %v", name, err)
		}
		outs = append(outs, string(j))
		var buf bytes.Buffer
		slog.New(slog.NewJSONHandler(&buf, nil)).Info("m", "v", v)
		slog.New(slog.NewTextHandler(&buf, nil)).Info("m", "v", v)
		outs = append(outs, buf.String())
		for i, out := range outs {
			for _, leak := range []string{secret, fmt.Sprintf("%x", secret), mkText, fmt.Sprintf("%x", mk.key)} {
				if strings.Contains(out, leak) {
					t.Errorf("%s form %d leaks: %s", name, i, out)
				}
			}
			if !strings.Contains(out, Redacted) {
				t.Errorf("%s form %d: %s, want ***", name, i, out)
			}
		}
	}
	if string(val.Bytes()) != secret {
		t.Fatal("Bytes")
	}
	val.Wipe()
	if !bytes.Equal(val, make([]byte, len(secret))) {
		t.Fatal("Wipe")
	}
}

// A process watching the keyring seals new data keys under a term another
// process rotated to, without waiting to meet it.
func TestWatchKeyring(t *testing.T) {
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, 30*time.Second)
	mk := GenerateMasterKey()
	a, b := mustOpenKeys(t, l, mk), mustOpenKeys(t, l, mk)
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { b.WatchKeyring(wctx); close(done) }()
	defer func() { cancel(); <-done }()
	if _, err := a.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() error {
		if term := b.Keyring().ActiveTerm(); term != 2 {
			return fmt.Errorf("term %d", term)
		}
		return nil
	})
	if _, err := b.NewDataKey(ctx, "t.after"); err != nil {
		t.Fatal(err)
	}
	e, _ := b.main.kv.Get(ctx, dataKeyPrefix+"t.after")
	if term, _ := ciphertextTerm(e.Value()); term != 2 {
		t.Fatalf("new key wrapped under term %d", term)
	}
}

// A workflow key written to the main bucket, where workflow keys lived
// before the shard buckets, still opens, and destroying it erases it there.
func TestLegacyWorkflowKey(t *testing.T) {
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, 30*time.Second)
	k := mustOpenKeys(t, l, GenerateMasterKey())
	const id = "wf.legacy.s"
	raw := newKey()
	if _, err := k.main.kv.Create(ctx, dataKeyPrefix+id, k.Keyring().Seal(dataKeyPurpose(id), raw)); err != nil {
		t.Fatal(err)
	}
	dk, err := k.DataKey(ctx, id)
	if err != nil {
		t.Fatalf("legacy key: %v", err)
	}
	ct := dk.Seal(Purpose("p"), []byte("old data"))
	if got, err := dk.Open(Purpose("p"), ct); err != nil || string(got) != "old data" {
		t.Fatalf("open with the legacy key: %q %v", got, err)
	}
	if err := k.DestroyKey(ctx, id); err != nil {
		t.Fatal(err)
	}
	k.ClearCache()
	if _, err := k.DataKey(ctx, id); !errors.Is(err, ErrKeyDestroyed) {
		t.Fatalf("destroyed legacy key: %v", err)
	}
	if n := subjectCounts(t, l)["$KV."+KeyBucket+"."+dataKeyPrefix+id]; n != 0 {
		t.Fatalf("%d messages left for the destroyed legacy key", n)
	}
}

// A key another process destroyed (a compaction another engine made)
// opens nothing here once Destroyed is told of it: neither from the cache
// nor through a copy a holder took before, whether the cache still held
// that copy or had let it go, nor loaded again by a read that began before
// the erasure.
func TestKeyDestroyedElsewhere(t *testing.T) {
	t.Parallel()
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, 30*time.Second)
	mk := GenerateMasterKey()
	a := mustOpenKeys(t, l, mk)
	b := mustOpenKeys(t, l, mk)
	pooled, err := a.NewPooledKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	named, err := a.NewDataKey(ctx, "wf.elsewhere.s")
	if err != nil {
		t.Fatal(err)
	}
	for _, dk := range []*DataKey{pooled, named} {
		t.Run(dk.ID(), func(t *testing.T) {
			ct := dk.Seal(Purpose("f"), []byte("shred me"))
			// A copy the cache let go before the destruction, and one it
			// still holds.
			evicted, err := b.DataKey(ctx, dk.ID())
			if err != nil {
				t.Fatal(err)
			}
			b.ClearCache()
			held, err := b.DataKey(ctx, dk.ID())
			if err != nil {
				t.Fatal(err)
			}
			// A read that began before the erasure: its bytes are read,
			// not yet cached.
			_, entry := DataKeyEntry(dk.ID())
			raw, _, err := b.unwrapStored(ctx, strings.TrimPrefix(entry, dataKeyPrefix))
			if err != nil {
				t.Fatal(err)
			}
			defer wipe(raw)
			if _, err := a.DestroyKeys(ctx, []string{dk.ID()}); err != nil {
				t.Fatal(err)
			}
			b.Destroyed(dk.ID())
			if got, err := b.DataKey(ctx, dk.ID()); !errors.Is(err, ErrKeyDestroyed) {
				t.Errorf("the other process's cache: %v, want ErrKeyDestroyed", err)
			} else if got != nil {
				t.Error("a key returned with ErrKeyDestroyed")
			}
			for name, copy := range map[string]*DataKey{"held": held, "evicted": evicted} {
				if got, err := copy.Open(Purpose("f"), ct); !errors.Is(err, ErrKeyDestroyed) {
					t.Errorf("the %s copy taken before opens %q, %v; want ErrKeyDestroyed", name, got, err)
				}
			}
			// Either key is its entry's first: the page's slot 0.
			if _, err := b.cached(dk.ID(), raw[:KeySize]); !errors.Is(err, ErrKeyDestroyed) {
				t.Errorf("the read begun before the erasure cached the key: %v", err)
			}
		})
	}
}
