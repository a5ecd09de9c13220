package secrets

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/projections"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// proc is one process's view of the secrets: its own Pebble read model
// (with a running projection unless stopped) over a shared log and key
// bucket.
type proc struct {
	log    *eventlog.Log
	pebble *projections.Store
	runner *projections.Runner
	keys   *Keys
	s      *Store
	env    *Env
}

func runProjection(tb testing.TB, l *eventlog.Log, store *projections.Store) *projections.Runner {
	tb.Helper()
	return testutil.RunProjection(tb, l, store, Projection{}, projections.RunnerConfig{Stream: eventlog.Secrets.Name, Poison: projections.Park})
}

// newProc starts a process over l (a new log when nil) sealing with mk (a
// new key when nil). stopped: its projection never runs, so its read model
// stays empty and its writes do not wait.
func newProc(t *testing.T, l *eventlog.Log, mk *MasterKey, stopped bool) *proc {
	t.Helper()
	if l == nil {
		l = testutil.OpenLog(t, "")
	}
	if mk == nil {
		mk = GenerateMasterKey()
	}
	p := &proc{log: l, pebble: testutil.OpenStore(t), keys: mustOpenKeys(t, l, mk)}
	var w Waiter
	if !stopped {
		p.runner = runProjection(t, l, p.pebble)
		w = p.runner
	}
	opts := Options{Logger: testutil.Logger(t)}
	p.s = New(l, p.pebble, w, p.keys, opts)
	p.env = NewEnv(l, p.pebble, w, opts)
	return p
}

func isKind(err, kind error) bool { return errors.Is(err, kind) }

func TestPutGetValues(t *testing.T) {
	p := newProc(t, nil, nil, false)
	ctx := testutil.Context(t, 60*time.Second)
	tests := []struct {
		name  string
		value string
	}{
		{"text", "hunter2"},
		{"json", `{"user":"app","password":"p@ss \"quoted\""}`},
		{"empty", ""},
		{"multiline-pem", "-----BEGIN KEY-----\nMIIB\n-----END KEY-----\n"},
		{"unicode", "pässwört-🔑"},
		{"max", strings.Repeat("x", MaxValueLen)},
		{"Mixed_Case-123", "v"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ver, err := p.s.Put(ctx, tt.name, []byte(tt.value), "user:ada")
			if err != nil || ver != 1 {
				t.Fatalf("put = %d, %v", ver, err)
			}
			got, err := p.s.Get(ctx, tt.name)
			if err != nil || string(got.Bytes()) != tt.value {
				t.Fatalf("get = %d bytes, %v", got.Len(), err)
			}
			value, version, err := p.s.Resolve(ctx, tt.name)
			if err != nil || string(value) != tt.value || version != 1 {
				t.Fatalf("resolve = %d bytes v%d, %v", len(value), version, err)
			}
			if ok, err := p.s.Exists(ctx, tt.name); !ok || err != nil {
				t.Fatalf("exists = %v, %v", ok, err)
			}
			m, err := p.s.Metadata(ctx, tt.name)
			if err != nil {
				t.Fatal(err)
			}
			if m.Fingerprint != p.keys.Fingerprint([]byte(tt.value)) || m.Size != len(tt.value) || m.CreatedBy != "user:ada" || m.Version != 1 {
				t.Fatalf("metadata = %+v", m)
			}
		})
	}
}

func TestBadInput(t *testing.T) {
	p := newProc(t, nil, nil, false)
	ctx := testutil.Context(t, 30*time.Second)
	names := []struct{ name, want string }{
		{"", "empty"},
		{"a.b", "[a-zA-Z0-9_-]+"},
		{"a b", "[a-zA-Z0-9_-]+"},
		{"a/b", "[a-zA-Z0-9_-]+"},
		{"a*", "[a-zA-Z0-9_-]+"},
		{"a>", "[a-zA-Z0-9_-]+"},
		{"näme", "[a-zA-Z0-9_-]+"},
		{"${x}", "[a-zA-Z0-9_-]+"},
		{strings.Repeat("a", MaxNameLen+1), "at most 256"},
		{"v2", "reserved"},
		{"clearLocalCache", "reserved"},
		{"clearRedisCache", "reserved"},
	}
	for _, n := range names {
		_, err := p.s.Put(ctx, n.name, []byte("v"), "")
		if !isKind(err, fault.ErrInvalid) || !strings.Contains(err.Error(), n.want) {
			t.Errorf("put name %q: %v, want invalid mentioning %q", n.name, err, n.want)
		}
		if _, err := p.s.Get(ctx, n.name); !isKind(err, fault.ErrInvalid) {
			t.Errorf("get name %q: %v", n.name, err)
		}
		if _, err := p.s.Exists(ctx, n.name); !isKind(err, fault.ErrInvalid) {
			t.Errorf("exists name %q: %v", n.name, err)
		}
		if err := p.s.Delete(ctx, n.name, ""); !isKind(err, fault.ErrInvalid) {
			t.Errorf("delete name %q: %v", n.name, err)
		}
	}
	if _, err := p.s.Put(ctx, "big", make([]byte, MaxValueLen+1), ""); !isKind(err, fault.ErrTooLarge) || !strings.Contains(err.Error(), "65535") {
		t.Errorf("oversized: %v", err)
	}
	if _, err := p.s.Put(ctx, "bin", []byte{0xff, 0xfe, 0x00}, ""); !isKind(err, fault.ErrInvalid) || !strings.Contains(err.Error(), "UTF-8") {
		t.Errorf("binary: %v", err)
	}
	for _, op := range []func() error{
		func() error { _, err := p.s.Get(ctx, "missing"); return err },
		func() error { _, err := p.s.Metadata(ctx, "missing"); return err },
		func() error { _, _, err := p.s.Access(ctx, "missing"); return err },
		func() error { return p.s.Delete(ctx, "missing", "") },
		func() error { return p.s.PutTags(ctx, "missing", []conductor.Tag{{Key: "k"}}, "") },
		func() error { return p.s.DeleteTags(ctx, "missing", []conductor.Tag{{Key: "k"}}, "") },
	} {
		if err := op(); !isKind(err, fault.ErrNotFound) || !strings.Contains(err.Error(), "missing") {
			t.Errorf("unknown secret: %v", err)
		}
	}
	if ok, err := p.s.Exists(ctx, "missing"); ok || err != nil {
		t.Errorf("exists(missing) = %v, %v", ok, err)
	}
	if _, err := p.s.Put(ctx, "tagged", []byte("v"), ""); err != nil {
		t.Fatal(err)
	}
	for _, tags := range [][]conductor.Tag{{{Key: ""}}, {{Key: strings.Repeat("k", MaxTagLen+1)}}, make([]conductor.Tag, MaxTags+1)} {
		if err := p.s.PutTags(ctx, "tagged", tags, ""); !isKind(err, fault.ErrInvalid) {
			t.Errorf("bad tags %d: %v", len(tags), err)
		}
	}
	// Nothing invalid reached the log.
	if last, _ := p.log.StreamLastSeq(ctx, eventlog.Secrets.Name); last != 1 {
		t.Fatalf("stream has %d records, want only the one valid put", last)
	}
}

// rawStream returns the raw data of every message of FV_SECRET.
func rawStream(t *testing.T, l *eventlog.Log) [][]byte {
	t.Helper()
	ctx := testutil.Context(t, 10*time.Second)
	s, err := l.JetStream().Stream(ctx, eventlog.Secrets.Name)
	if err != nil {
		t.Fatal(err)
	}
	info, _ := s.Info(ctx)
	var out [][]byte
	for seq := uint64(1); seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m.Data)
	}
	return out
}

// Versions: every put is a new version with its own data key; the event
// holds only ciphertext; the replaced version's key is destroyed; delete
// destroys the last key; versions continue after a delete.
func TestVersionsAndDelete(t *testing.T) {
	p := newProc(t, nil, nil, false)
	ctx := testutil.Context(t, 60*time.Second)
	values := []string{"first-value-aaaa", "second-value-bbbb", "third-value-cccc"}
	for i, v := range values {
		ver, err := p.s.Put(ctx, "db", []byte(v), fmt.Sprintf("user:%d", i))
		if err != nil || ver != i+1 {
			t.Fatalf("put %d = %d, %v", i, ver, err)
		}
	}
	m, err := p.s.Metadata(ctx, "db")
	if err != nil {
		t.Fatal(err)
	}
	if m.Version != 3 || len(m.Versions) != 3 || m.CreatedBy != "user:0" || m.UpdatedBy != "user:2" {
		t.Fatalf("metadata = %+v", m)
	}
	for i, vi := range m.Versions {
		if vi.Version != i+1 || vi.By != fmt.Sprintf("user:%d", i) || vi.Fingerprint != p.keys.Fingerprint([]byte(values[i])) || vi.Size != len(values[i]) {
			t.Fatalf("version %d = %+v", i, vi)
		}
	}
	for _, raw := range rawStream(t, p.log) {
		for _, v := range values {
			if bytes.Contains(raw, []byte(v)) {
				t.Fatalf("the log holds a plaintext value")
			}
		}
	}
	// Old versions' keys are gone; only the current one is stored.
	recs, err := p.log.ReadSubject(ctx, SecretSubject("db"), 0)
	if err != nil {
		t.Fatal(err)
	}
	var keyIDs []string
	for _, r := range recs {
		ev, err := schemas.Default.Decode(r.Events[0])
		if err != nil {
			t.Fatal(err)
		}
		keyIDs = append(keyIDs, ev.(*schemas.SecretVersionPut).KeyID)
	}
	p.keys.ClearCache()
	for i, id := range keyIDs {
		_, err := p.keys.DataKey(ctx, id)
		if i < 2 && !errors.Is(err, ErrKeyDestroyed) || i == 2 && err != nil {
			t.Fatalf("key of version %d: %v", i+1, err)
		}
	}
	stored, _ := p.keys.DataKeyIDs(ctx, "secret.db")
	if len(stored) != 1 {
		t.Fatalf("stored keys for db: %v", stored)
	}

	if err := p.s.Delete(ctx, "db", "user:x"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := p.s.Exists(ctx, "db"); ok {
		t.Fatal("exists after delete")
	}
	if _, err := p.s.Get(ctx, "db"); !isKind(err, fault.ErrNotFound) {
		t.Fatalf("get after delete: %v", err)
	}
	if _, err := p.s.Metadata(ctx, "db"); !isKind(err, fault.ErrNotFound) {
		t.Fatalf("metadata after delete: %v", err)
	}
	if stored, _ := p.keys.DataKeyIDs(ctx, "secret.db"); len(stored) != 0 {
		t.Fatalf("keys left after delete: %v", stored)
	}
	if err := p.s.Delete(ctx, "db", ""); !isKind(err, fault.ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	ver, err := p.s.Put(ctx, "db", []byte("reborn"), "")
	if err != nil || ver != 4 {
		t.Fatalf("put after delete = %d, %v (versions must not be reused)", ver, err)
	}
	if m, _ := p.s.Metadata(ctx, "db"); len(m.Versions) != 1 || m.Tags == nil {
		t.Fatalf("metadata after re-create = %+v", m)
	}
}

func TestTags(t *testing.T) {
	p := newProc(t, nil, nil, false)
	ctx := testutil.Context(t, 30*time.Second)
	if _, err := p.s.Put(ctx, "api", []byte("v"), ""); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		op   string
		tags []conductor.Tag
		want string
	}{
		{"put", []conductor.Tag{{Key: "env", Value: "prod"}, {Key: "team", Value: "a"}}, "env=prod team=a"},
		{"put", []conductor.Tag{{Key: "env", Value: "dev"}}, "env=dev team=a"}, // same key: value updated
		{"put", []conductor.Tag{{Key: "owner", Value: "x"}}, "env=dev team=a owner=x"},
		{"delete", []conductor.Tag{{Key: "team", Value: "b"}}, "env=dev team=a owner=x"}, // value differs: kept
		{"delete", []conductor.Tag{{Key: "team", Value: "a"}, {Key: "nope", Value: ""}}, "env=dev owner=x"},
		{"delete", []conductor.Tag{{Key: "env", Value: "dev"}, {Key: "owner", Value: "x"}}, ""},
	}
	for i, st := range steps {
		var err error
		if st.op == "put" {
			err = p.s.PutTags(ctx, "api", st.tags, "")
		} else {
			err = p.s.DeleteTags(ctx, "api", st.tags, "")
		}
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		_, tags, err := p.s.Access(ctx, "api")
		if err != nil {
			t.Fatal(err)
		}
		var parts []string
		for _, tg := range tags {
			parts = append(parts, tg.Key+"="+tg.Value)
		}
		if got := strings.Join(parts, " "); got != st.want {
			t.Fatalf("step %d: tags %q, want %q", i, got, st.want)
		}
	}
	// Tags survive a new version.
	p.s.PutTags(ctx, "api", []conductor.Tag{{Key: "k", Value: "v"}}, "")
	p.s.Put(ctx, "api", []byte("v2"), "")
	sn, err := p.s.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer sn.Close()
	if list, _ := sn.List(); len(list) != 1 || len(list[0].Tags) != 1 {
		t.Fatalf("list = %+v", list)
	}
}

// Another process reads a secret written a moment ago although its read
// model has not applied it (it reads the log); a process whose cached
// state is stale after a replace or delete re-reads the log.
func TestOtherProcessReadsTheLog(t *testing.T) {
	a := newProc(t, nil, nil, false)
	mk := a.keys.mk
	b := newProc(t, a.log, mk, true) // read model never catches up
	ctx := testutil.Context(t, 30*time.Second)
	if _, err := a.s.Put(ctx, "fresh", []byte("value-1"), ""); err != nil {
		t.Fatal(err)
	}
	v, ver, err := b.s.Resolve(ctx, "fresh")
	if err != nil || string(v) != "value-1" || ver != 1 {
		t.Fatalf("other process: %q v%d %v", v, ver, err)
	}
	if ok, err := b.s.Exists(ctx, "fresh"); !ok || err != nil {
		t.Fatalf("other process exists: %v %v", ok, err)
	}
	if _, _, err := b.s.Resolve(ctx, "never"); !isKind(err, fault.ErrNotFound) {
		t.Fatalf("missing: %v", err)
	}

	// stale's read model applied the first version and then stopped; a
	// replaces the value, destroying the key that read model points at.
	stale := newProc(t, a.log, mk, true)
	catchUpOnce(t, stale, 1)
	if _, err := a.s.Put(ctx, "fresh", []byte("value-2"), ""); err != nil {
		t.Fatal(err)
	}
	if c, _, _ := readCipher(stale.s.w.reader, "fresh"); c.Version != 1 {
		t.Fatalf("stale read model at version %d", c.Version)
	}
	if v, ver, err := stale.s.Resolve(ctx, "fresh"); err != nil || string(v) != "value-2" || ver != 2 {
		t.Fatalf("stale read model: %q v%d %v", v, ver, err)
	}
}

// catchUpOnce runs p's projection until it has applied seq, then stops it.
func catchUpOnce(t *testing.T, p *proc, seq uint64) {
	t.Helper()
	testutil.CatchUpOnce(t, p.log, p.pebble, Projection{}, projections.RunnerConfig{Stream: eventlog.Secrets.Name}, seq)
}

// Processes racing to put one name all succeed with distinct versions, and
// the keys of the attempts that lost are destroyed.
func TestConcurrentPuts(t *testing.T) {
	a := newProc(t, nil, nil, false)
	b := newProc(t, a.log, a.keys.mk, false)
	ctx := testutil.Context(t, 120*time.Second)
	const each = 8
	var wg sync.WaitGroup
	versions := make(chan int, 2*each)
	for _, p := range []*proc{a, b} {
		wg.Add(1)
		go func(p *proc) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				v, err := p.s.Put(ctx, "hot", []byte(fmt.Sprint("v", i)), "")
				if err != nil {
					t.Error(err)
					return
				}
				versions <- v
			}
		}(p)
	}
	wg.Wait()
	close(versions)
	seen := map[int]bool{}
	for v := range versions {
		if seen[v] {
			t.Fatalf("version %d given twice", v)
		}
		seen[v] = true
	}
	if len(seen) != 2*each {
		t.Fatalf("%d versions", len(seen))
	}
	if err := b.runner.WaitFor(ctx, uint64(2*each)); err != nil {
		t.Fatal(err)
	}
	m, err := b.s.Metadata(ctx, "hot")
	if err != nil || m.Version != 2*each || len(m.Versions) != 2*each {
		t.Fatalf("metadata = %+v, %v", m, err)
	}
	if _, _, err := b.s.Resolve(ctx, "hot"); err != nil {
		t.Fatal(err)
	}
	stored, _ := a.keys.DataKeyIDs(ctx, "secret.hot")
	if len(stored) != 1 {
		t.Fatalf("%d data keys stored for one live version: %v", len(stored), stored)
	}
}

// SweepKeys destroys data keys no live version uses, after the grace.
func TestSweepKeys(t *testing.T) {
	p := newProc(t, nil, nil, false)
	ctx := testutil.Context(t, 30*time.Second)
	if _, err := p.s.Put(ctx, "live", []byte("v"), ""); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"secret.live.ORPHAN", "secret.gone.ORPHAN", "wf.other"} {
		if _, err := p.keys.NewDataKey(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := p.s.SweepKeys(ctx, time.Hour); err != nil || n != 0 {
		t.Fatalf("sweep within grace = %d, %v", n, err)
	}
	if n, err := p.s.SweepKeys(ctx, 0); err != nil || n != 2 {
		t.Fatalf("sweep = %d, %v", n, err)
	}
	ids, _ := p.keys.DataKeyIDs(ctx, "")
	if len(ids) != 2 || ids["wf.other"].IsZero() {
		t.Fatalf("left: %v", ids)
	}
	if _, _, err := p.s.Resolve(ctx, "live"); err != nil {
		t.Fatalf("live secret after sweep: %v", err)
	}
}

// A ciphertext that does not open (damaged, or moved to another secret)
// is an error for the reader, never a panic or a wrong value.
func TestCorruptCiphertextInLog(t *testing.T) {
	p := newProc(t, nil, nil, false)
	ctx := testutil.Context(t, 30*time.Second)
	if _, err := p.s.Put(ctx, "src", []byte("value"), ""); err != nil {
		t.Fatal(err)
	}
	c, _, _ := readCipher(p.s.w.reader, "src")
	appendPut := func(name string, ev *schemas.SecretVersionPut) {
		t.Helper()
		env, err := schemas.Default.Encode(ev)
		if err != nil {
			t.Fatal(err)
		}
		env.ID = "test-" + name
		seq, err := p.log.Append(ctx, SecretSubject(name), []schemas.Envelope{env}, eventlog.ExpectAny)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.runner.WaitFor(ctx, seq); err != nil {
			t.Fatal(err)
		}
	}
	flipped := bytes.Clone(c.Ciphertext)
	flipped[len(flipped)-3] ^= 1
	appendPut("damaged", &schemas.SecretVersionPut{Name: "damaged", Version: 1, KeyID: c.KeyID, Ciphertext: flipped})
	appendPut("moved", &schemas.SecretVersionPut{Name: "moved", Version: 1, KeyID: c.KeyID, Ciphertext: c.Ciphertext})
	appendPut("nokey", &schemas.SecretVersionPut{Name: "nokey", Version: 1, KeyID: "secret.nokey.X", Ciphertext: c.Ciphertext})
	for _, name := range []string{"damaged", "moved"} {
		if _, _, err := p.s.Resolve(ctx, name); !errors.Is(err, ErrDecrypt) || strings.Contains(err.Error(), "value") {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, _, err := p.s.Resolve(ctx, "nokey"); !errors.Is(err, ErrKeyDestroyed) {
		t.Errorf("nokey: %v", err)
	}
}

func TestEnvValues(t *testing.T) {
	p := newProc(t, nil, nil, false)
	ctx := testutil.Context(t, 30*time.Second)
	if err := p.env.Put(ctx, "region", "eu-west-1", "user:ada"); err != nil {
		t.Fatal(err)
	}
	if err := p.env.Put(ctx, "cfg", `{"a":1}`, ""); err != nil {
		t.Fatal(err)
	}
	if v, err := p.env.Get(ctx, "region"); err != nil || v != "eu-west-1" {
		t.Fatalf("get = %q, %v", v, err)
	}
	if v, found, err := p.env.Lookup(ctx, "cfg"); err != nil || !found || v != `{"a":1}` {
		t.Fatalf("lookup = %q %v %v", v, found, err)
	}
	if _, found, err := p.env.Lookup(ctx, "HOME"); found || err != nil {
		t.Fatalf("lookup of a process environment variable = %v, %v", found, err)
	}
	if err := p.env.PutTags(ctx, "region", []conductor.Tag{{Key: "k", Value: "v"}}, ""); err != nil {
		t.Fatal(err)
	}
	sn, err := p.env.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer sn.Close()
	list, err := sn.List()
	if err != nil || len(list) != 2 || list[1].Name != "region" || list[1].Value != "eu-west-1" || len(list[1].Tags) != 1 || list[0].Tags == nil {
		t.Fatalf("list = %+v, %v", list, err)
	}
	if names, err := sn.Names(); err != nil || !slices.Equal(names, []string{"cfg", "region"}) {
		t.Fatalf("names = %q, %v", names, err)
	}
	old, err := p.env.Delete(ctx, "region", "")
	if err != nil || old != "eu-west-1" {
		t.Fatalf("delete = %q, %v", old, err)
	}
	if _, err := p.env.Get(ctx, "region"); !isKind(err, fault.ErrNotFound) {
		t.Fatalf("after delete: %v", err)
	}
	if _, err := p.env.Delete(ctx, "region", ""); !isKind(err, fault.ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	if err := p.env.Put(ctx, "a.b", "v", ""); !isKind(err, fault.ErrInvalid) {
		t.Fatalf("bad name: %v", err)
	}
	if err := p.env.Put(ctx, "big", strings.Repeat("x", MaxValueLen+1), ""); !isKind(err, fault.ErrTooLarge) {
		t.Fatalf("big: %v", err)
	}
	// A secret and an environment value may share a name.
	if _, err := p.s.Put(ctx, "env", []byte("secret named env"), ""); err != nil {
		t.Fatal(err)
	}
	if err := p.env.Put(ctx, "env", "plain", ""); err != nil {
		t.Fatal(err)
	}
	if v, _ := p.s.Get(ctx, "env"); string(v) != "secret named env" {
		t.Fatal("secret env")
	}
	b := newProc(t, p.log, p.keys.mk, true)
	if v, found, err := b.env.Lookup(ctx, "cfg"); !found || err != nil || v != `{"a":1}` {
		t.Fatalf("other process lookup = %q %v %v", v, found, err)
	}
}

// Deleting the read model and replaying the log rebuilds it identically.
func TestProjectionRebuild(t *testing.T) {
	p := newProc(t, nil, nil, false)
	ctx := testutil.Context(t, 60*time.Second)
	p.s.Put(ctx, "a", []byte("1"), "user:1")
	p.s.Put(ctx, "a", []byte("2"), "user:2")
	p.s.PutTags(ctx, "a", []conductor.Tag{{Key: "k", Value: "v"}}, "")
	p.s.Put(ctx, "b", []byte("3"), "")
	p.s.Delete(ctx, "b", "")
	p.s.Put(ctx, "b", []byte("4"), "")
	p.env.Put(ctx, "e", "x", "")
	p.env.PutTags(ctx, "e", []conductor.Tag{{Key: "k", Value: "v"}}, "")
	p.env.Put(ctx, "gone", "y", "")
	p.env.Delete(ctx, "gone", "")
	last, _ := p.log.StreamLastSeq(ctx, eventlog.Secrets.Name)
	if err := p.runner.WaitFor(ctx, last); err != nil {
		t.Fatal(err)
	}
	var before bytes.Buffer
	p.pebble.Dump(&before)

	fresh := testutil.OpenStore(t)
	r := runProjection(t, p.log, fresh)
	if err := r.WaitFor(ctx, last); err != nil {
		t.Fatal(err)
	}
	var after bytes.Buffer
	fresh.Dump(&after)
	if before.String() != after.String() {
		t.Fatalf("rebuild differs:\n%s\n---\n%s", before.String(), after.String())
	}
	for _, want := range []string{`"p/secrets/s/a"`, `"p/secrets/e/e"`, `"p/secrets/c/b"`} {
		if !strings.Contains(before.String(), want) {
			t.Fatalf("dump lacks %s:\n%s", want, before.String())
		}
	}
}

// Events that do not belong on their subject are parked, not applied.
func TestPoisonRecords(t *testing.T) {
	p := newProc(t, nil, nil, false)
	ctx := testutil.Context(t, 30*time.Second)
	env, _ := schemas.Default.Encode(&schemas.SecretDeleted{Name: "other", Version: 1})
	env.ID = "poison-1"
	seq, err := p.log.Append(ctx, SecretSubject("mine"), []schemas.Envelope{env}, eventlog.ExpectAny)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.runner.WaitFor(ctx, seq); err != nil {
		t.Fatal(err)
	}
	parked, err := p.pebble.Parked(ProjectionName)
	if err != nil || len(parked) != 1 || parked[0].Seq != seq {
		t.Fatalf("parked = %+v, %v", parked, err)
	}
	// A write checked on the subject's revision still goes through: the
	// parked record is no change of the secret.
	rev, err := p.s.Revision(ctx, "mine")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.s.Put(ctx, "mine", []byte("after the poison"), "", At(rev)); err != nil {
		t.Fatalf("a write after a parked record: %v", err)
	}
}

// Resolve keeps ciphertexts while its read model applies nothing; once the
// read model has applied another process's put, the new value resolves,
// although this process still holds the old version's key in memory.
func TestResolveFollowsOtherProcesses(t *testing.T) {
	a := newProc(t, nil, nil, false)
	b := newProc(t, a.log, a.keys.mk, false)
	ctx := testutil.Context(t, 30*time.Second)
	for i, want := range []string{"value-1", "value-2", "value-3"} {
		if _, err := a.s.Put(ctx, "rotating", []byte(want), ""); err != nil {
			t.Fatal(err)
		}
		if err := b.runner.WaitFor(ctx, a.runner.Checkpoint()); err != nil {
			t.Fatal(err)
		}
		for range 2 { // the second one is answered from the cache
			v, ver, err := b.s.Resolve(ctx, "rotating")
			if err != nil || string(v) != want || ver != i+1 {
				t.Fatalf("after put %d: %q v%d %v", i+1, v, ver, err)
			}
		}
	}
}

// A process whose read model lags reads the log when the key of the
// version its read model names was destroyed. The access to a secret was
// checked on that read model (its creator, its tags), so the log's state
// is served only when it grants the same: a secret deleted and created
// again by another principal, or retagged, since then, is refused as a
// change (fault.ErrStale, which the API answers 409 and a hand-off tries
// again), where its value was returned to a caller checked against the
// old one's creator or tags.
func TestLogFallbackServesOnlyTheAccessChecked(t *testing.T) {
	userTag := []conductor.Tag{{Key: "team", Value: "x"}}
	recreate := func(by string) func(context.Context, *Store) error {
		return func(ctx context.Context, s *Store) error {
			if err := s.Delete(ctx, "db", "app:admin"); err != nil {
				return err
			}
			_, err := s.Put(ctx, "db", []byte("admins-value-77"), by)
			return err
		}
	}
	for _, tc := range []struct {
		name  string
		after func(ctx context.Context, s *Store) error // by another process
		serve bool
	}{
		{"updated by its creator", func(ctx context.Context, s *Store) error {
			_, err := s.Put(ctx, "db", []byte("users-value-2"), "app:user")
			return err
		}, true},
		{"updated by another", func(ctx context.Context, s *Store) error {
			_, err := s.Put(ctx, "db", []byte("users-value-2"), "app:admin")
			return err
		}, true},
		{"deleted and created again by another", recreate("app:admin"), false},
		{"deleted and created again by its creator, untagged", recreate("app:user"), false},
		{"untagged and updated", func(ctx context.Context, s *Store) error {
			if err := s.DeleteTags(ctx, "db", userTag, "app:admin"); err != nil {
				return err
			}
			_, err := s.Put(ctx, "db", []byte("admins-value-77"), "app:admin")
			return err
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newProc(t, nil, nil, false)
			ctx := testutil.Context(t, 30*time.Second)
			if _, err := a.s.Put(ctx, "db", []byte("users-value-1"), "app:user"); err != nil {
				t.Fatal(err)
			}
			if err := a.s.PutTags(ctx, "db", userTag, "app:user"); err != nil {
				t.Fatal(err)
			}
			stale := newProc(t, a.log, a.keys.mk, true)
			catchUpOnce(t, stale, a.runner.Checkpoint())
			if err := tc.after(ctx, a.s); err != nil {
				t.Fatal(err)
			}
			v, ver, err := stale.s.Resolve(ctx, "db")
			switch {
			case tc.serve && (err != nil || !strings.HasPrefix(string(v), "users-value-2")):
				t.Fatalf("stale read model: v%d %v, want the creator's second value", ver, err)
			case !tc.serve && bytes.Contains(v, []byte("admins-value")):
				t.Fatalf("stale read model served version %d, whose access it never saw", ver)
			case !tc.serve && !errors.Is(err, fault.ErrStale):
				t.Fatalf("stale read model: v%d %v, want fault.ErrStale", ver, err)
			}
		})
	}
}

// A delete pinned to the revision its access was checked on (At) applies
// to that revision only. On a process whose read model lags, a secret or
// environment value deleted and created again by another principal since
// is refused as stale: deciding again on the log's state, the delete took
// the new one (and destroyed its data key), and an environment value's
// delete returned the new value.
func TestDeleteAppliesOnlyToTheCheckedRevision(t *testing.T) {
	for _, tc := range []struct {
		name     string
		revision func(ctx context.Context, p *proc) (Revision, error)
		put      func(ctx context.Context, p *proc, value, by string) error
		del      func(ctx context.Context, p *proc, by string, opts ...WriteOption) (string, error)
		get      func(ctx context.Context, p *proc) (string, error)
	}{
		{"secret",
			func(ctx context.Context, p *proc) (Revision, error) { return p.s.Revision(ctx, "db") },
			func(ctx context.Context, p *proc, value, by string) error {
				_, err := p.s.Put(ctx, "db", []byte(value), by)
				return err
			},
			func(ctx context.Context, p *proc, by string, opts ...WriteOption) (string, error) {
				return "", p.s.Delete(ctx, "db", by, opts...)
			},
			func(ctx context.Context, p *proc) (string, error) {
				v, _, err := p.s.Resolve(ctx, "db")
				return string(v), err
			}},
		{"environment value",
			func(ctx context.Context, p *proc) (Revision, error) { return p.env.Revision(ctx, "db") },
			func(ctx context.Context, p *proc, value, by string) error { return p.env.Put(ctx, "db", value, by) },
			func(ctx context.Context, p *proc, by string, opts ...WriteOption) (string, error) {
				return p.env.Delete(ctx, "db", by, opts...)
			},
			func(ctx context.Context, p *proc) (string, error) { return p.env.Get(ctx, "db") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newProc(t, nil, nil, false)
			ctx := testutil.Context(t, 30*time.Second)
			if err := tc.put(ctx, a, "users-value-1", "app:user"); err != nil {
				t.Fatal(err)
			}
			stale := newProc(t, a.log, a.keys.mk, true)
			catchUpOnce(t, stale, a.runner.Checkpoint())
			rev, err := tc.revision(ctx, stale)
			if err != nil || !rev.Exists {
				t.Fatalf("revision %+v, %v", rev, err)
			}
			if _, err := tc.del(ctx, a, "app:admin"); err != nil {
				t.Fatal(err)
			}
			if err := tc.put(ctx, a, "admins-value-77", "app:admin"); err != nil {
				t.Fatal(err)
			}
			old, err := tc.del(ctx, stale, "app:user", At(rev))
			if !errors.Is(err, fault.ErrStale) || old != "" {
				t.Errorf("delete checked on the user's value: %q %v, want nothing and fault.ErrStale", old, err)
			}
			if v, err := tc.get(ctx, a); err != nil || v != "admins-value-77" {
				t.Errorf("the admin's value after the stale delete: %q %v", v, err)
			}
			// Checked on the current revision, it goes through.
			if rev, err = tc.revision(ctx, a); err != nil {
				t.Fatal(err)
			}
			if _, err := tc.del(ctx, a, "app:admin", At(rev)); err != nil {
				t.Errorf("delete on the current revision: %v", err)
			}
		})
	}
}

// A put refused as stale (At) after it lost a race destroys the data key
// it made for the attempt that lost at once: nothing holds it, and it
// waited for the hourly sweep. On a process whose read model lags, the put
// is decided on the checked revision, made a key, lost to the other
// process's write, and was refused on the log's state.
func TestStalePutLeavesNoKey(t *testing.T) {
	a := newProc(t, nil, nil, false)
	ctx := testutil.Context(t, 30*time.Second)
	if _, err := a.s.Put(ctx, "db", []byte("value-1"), "app:user"); err != nil {
		t.Fatal(err)
	}
	stale := newProc(t, a.log, a.keys.mk, true)
	catchUpOnce(t, stale, a.runner.Checkpoint())
	rev, err := stale.s.Revision(ctx, "db")
	if err != nil || !rev.Exists {
		t.Fatalf("revision %+v, %v", rev, err)
	}
	if _, err := a.s.Put(ctx, "db", []byte("value-2"), "app:admin"); err != nil {
		t.Fatal(err)
	}
	if _, err := stale.s.Put(ctx, "db", []byte("value-3"), "app:user", At(rev)); !errors.Is(err, fault.ErrStale) {
		t.Fatalf("put on the checked revision: %v, want fault.ErrStale", err)
	}
	cur, found, err := readCipher(a.s.w.reader, "db")
	if err != nil || !found {
		t.Fatalf("current version: %v %v", found, err)
	}
	stored, err := a.keys.DataKeyIDs(ctx, "secret.db")
	if err != nil {
		t.Fatal(err)
	}
	for id := range stored {
		if id != cur.KeyID {
			t.Errorf("data key %s is left after the stale put (the current version's is %s)", id, cur.KeyID)
		}
	}
	if v, _, err := a.s.Resolve(ctx, "db"); err != nil || string(v) != "value-2" {
		t.Fatalf("after the stale put: %q %v", v, err)
	}
}

// checkedKind is a secret or an environment value, named "db", as the
// tests of reads at a checked revision write and read it.
type checkedKind struct {
	name    string
	put     func(ctx context.Context, p *proc, value, by string) error
	untag   func(ctx context.Context, p *proc, tags []conductor.Tag, by string) error
	tag     func(ctx context.Context, p *proc, tags []conductor.Tag, by string) error
	del     func(ctx context.Context, p *proc, by string) error
	rev     func(ctx context.Context, p *proc) (Revision, error)
	current func(ctx context.Context, p *proc) error // a read of a moment ago
	// readAt is ResolveAt, or LookupAt ("" and version 0 for nothing).
	readAt  func(ctx context.Context, p *proc, rev Revision) (string, int, error)
	version int // what readAt reads of the value put first
}

var checkedKinds = []checkedKind{{
	name: "secret",
	put: func(ctx context.Context, p *proc, value, by string) error {
		_, err := p.s.Put(ctx, "db", []byte(value), by)
		return err
	},
	tag: func(ctx context.Context, p *proc, tags []conductor.Tag, by string) error {
		return p.s.PutTags(ctx, "db", tags, by)
	},
	untag: func(ctx context.Context, p *proc, tags []conductor.Tag, by string) error {
		return p.s.DeleteTags(ctx, "db", tags, by)
	},
	del: func(ctx context.Context, p *proc, by string) error { return p.s.Delete(ctx, "db", by) },
	rev: func(ctx context.Context, p *proc) (Revision, error) { return p.s.Revision(ctx, "db") },
	current: func(ctx context.Context, p *proc) error {
		_, _, err := p.s.Resolve(ctx, "db") // cached, as a resolution leaves it
		return err
	},
	readAt: func(ctx context.Context, p *proc, rev Revision) (string, int, error) {
		v, ver, err := p.s.ResolveAt(ctx, "db", rev)
		return string(v), ver, err
	},
	version: 1,
}, {
	name: "environment value",
	put:  func(ctx context.Context, p *proc, value, by string) error { return p.env.Put(ctx, "db", value, by) },
	tag: func(ctx context.Context, p *proc, tags []conductor.Tag, by string) error {
		return p.env.PutTags(ctx, "db", tags, by)
	},
	untag: func(ctx context.Context, p *proc, tags []conductor.Tag, by string) error {
		return p.env.DeleteTags(ctx, "db", tags, by)
	},
	del: func(ctx context.Context, p *proc, by string) error {
		_, err := p.env.Delete(ctx, "db", by)
		return err
	},
	rev: func(ctx context.Context, p *proc) (Revision, error) { return p.env.Revision(ctx, "db") },
	current: func(ctx context.Context, p *proc) error {
		_, _, err := p.env.Lookup(ctx, "db")
		return err
	},
	readAt: func(ctx context.Context, p *proc, rev Revision) (string, int, error) {
		v, _, err := p.env.LookupAt(ctx, "db", rev)
		return v, 0, err
	},
}}

// ResolveAt serves the revision access was checked on, and LookupAt an
// environment value's (tag grants apply to them too). On one process, a
// value changed between the check (after Revision) and the read is
// refused as stale, retryably, rather than served: created again by
// another principal, it would reach a principal allowed as the old one's
// creator; untagged, one allowed by the tag. Unchanged, or checked again,
// it is served, from the read model and from a secret's cache.
func TestResolveAtServesTheCheckedRevision(t *testing.T) {
	userTag := []conductor.Tag{{Key: "team", Value: "x"}}
	for _, k := range checkedKinds {
		for _, tc := range []struct {
			name    string
			between func(ctx context.Context, p *proc) error
		}{
			{"unchanged", nil},
			{"untagged", func(ctx context.Context, p *proc) error { return k.untag(ctx, p, userTag, "app:admin") }},
			{"deleted and created again by another", func(ctx context.Context, p *proc) error {
				if err := k.del(ctx, p, "app:admin"); err != nil {
					return err
				}
				return k.put(ctx, p, "admins-value-77", "app:admin")
			}},
			{"updated", func(ctx context.Context, p *proc) error { return k.put(ctx, p, "admins-value-77", "app:admin") }},
		} {
			t.Run(k.name+"/"+tc.name, func(t *testing.T) {
				p := newProc(t, nil, nil, false)
				ctx := testutil.Context(t, 30*time.Second)
				if err := k.put(ctx, p, "users-value-1", "app:user"); err != nil {
					t.Fatal(err)
				}
				if err := k.tag(ctx, p, userTag, "app:user"); err != nil {
					t.Fatal(err)
				}
				if err := k.current(ctx, p); err != nil {
					t.Fatal(err)
				}
				rev, err := k.rev(ctx, p)
				if err != nil || !rev.Exists {
					t.Fatalf("revision %+v, %v", rev, err)
				}
				if tc.between == nil {
					for range 2 { // from the read model, then from a cache
						if v, ver, err := k.readAt(ctx, p, rev); err != nil || v != "users-value-1" || ver != k.version {
							t.Fatalf("unchanged: %q v%d %v", v, ver, err)
						}
					}
					return
				}
				if err := tc.between(ctx, p); err != nil {
					t.Fatal(err)
				}
				v, ver, err := k.readAt(ctx, p, rev)
				if !errors.Is(err, fault.ErrStale) || v != "" {
					t.Fatalf("checked before it was %s: %q v%d %v, want nothing and fault.ErrStale", tc.name, v, ver, err)
				}
				// Checked again, on the revision it has now.
				if rev, err = k.rev(ctx, p); err != nil {
					t.Fatal(err)
				}
				if _, _, err := k.readAt(ctx, p, rev); err != nil {
					t.Fatalf("checked on the current revision: %v", err)
				}
			})
		}
	}
}
