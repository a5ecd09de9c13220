package secrets

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/flowvault/flowvault/internal/testutil"
)

// A workflow key shard whose listing fails (its stream deleted) keeps
// only its own keys from the listings, Status and Rotate: each goes on
// with the shards behind it and fails naming it, and a rotation run again
// once the shard is back re-wraps the keys it skipped.
func TestListingsGoPastAShardThatFails(t *testing.T) {
	t.Parallel()
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, 60*time.Second)
	mk := GenerateMasterKey()
	k := mustOpenKeys(t, l, mk)
	const failing = 0 // the first shard: every other one is listed after it
	cts := map[string][]byte{}
	seal := func(dk *DataKey) {
		cts[dk.ID()] = dk.Seal(Purpose(dk.ID()), []byte(dk.ID()))
	}
	// Named keys in other shards, one in the failing shard, and a secret's
	// key in the main bucket.
	var named []string
	skipped := ""
	for i := 0; len(named) < 4 || skipped == ""; i++ {
		id := fmt.Sprintf("wf.w%d.secrets", i)
		if shardOf(id) == failing && skipped != "" {
			continue
		}
		dk, err := k.NewDataKey(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		seal(dk)
		if shardOf(id) == failing {
			skipped = id
		} else {
			named = append(named, id)
		}
	}
	secret, err := k.NewDataKey(ctx, "secret.db.1")
	if err != nil {
		t.Fatal(err)
	}
	seal(secret)
	// A pooled key whose page is in another shard.
	var pooled *DataKey
	for pooled == nil {
		dk, err := mustOpenKeys(t, l, mk).NewPooledKey(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if shardOf(dk.ID()) != failing {
			pooled = dk
		}
	}
	seal(pooled)
	listed := len(named) + 2 // the named keys, the secret's and the page

	shard := k.wf[failing]
	_, key := DataKeyEntry(skipped)
	kept, err := shard.kv.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.JetStream().DeleteStream(ctx, "KV_"+shard.name); err != nil {
		t.Fatal(err)
	}
	namesShard := func(what string, err error) {
		t.Helper()
		if err == nil || !strings.Contains(err.Error(), shard.name) {
			t.Errorf("%s: %v, want an error naming %s", what, err, shard.name)
		}
	}

	ids, err := k.DataKeyIDs(ctx, "wf")
	namesShard("DataKeyIDs", err)
	for _, id := range named {
		if _, ok := ids[id]; !ok {
			t.Errorf("DataKeyIDs lists %d keys, not %s of shard %d", len(ids), id, shardOf(id))
		}
	}
	pages, err := k.PooledKeyIDs(ctx)
	namesShard("PooledKeyIDs", err)
	if !slices.Contains(pages, pooled.ID()) {
		t.Errorf("PooledKeyIDs lists %d keys, not %s of shard %d", len(pages), pooled.ID(), shardOf(pooled.ID()))
	}
	st, err := k.Status(ctx)
	namesShard("Status", err)
	if st.DataKeys[1] != listed {
		t.Errorf("Status counts %v data keys by term, want %d under term 1", st.DataKeys, listed)
	}

	res, err := k.Rotate(ctx)
	namesShard("Rotate", err)
	if res.Term != 2 || res.Rewrapped != listed {
		t.Errorf("Rotate = %+v, want term 2 and %d keys re-wrapped", res, listed)
	}
	// The shard restored: the key it held is still under term 1, and a
	// second rotation re-wraps it with the others.
	if _, err := bindBucketOnce(ctx, l.JetStream(), shard.name, 1, "restored"); err != nil {
		t.Fatal(err)
	}
	if _, err := shard.kv.Create(ctx, key, kept.Value()); err != nil {
		t.Fatal(err)
	}
	if st, err := k.Status(ctx); err != nil || st.DataKeys[1] != 1 || st.DataKeys[2] != listed {
		t.Errorf("Status with the shard back = %v, %v; want 1 key under term 1, %d under term 2", st.DataKeys, err, listed)
	}
	res, err = k.Rotate(ctx)
	if err != nil || res.Term != 3 || res.Rewrapped != listed+1 {
		t.Errorf("Rotate again = %+v, %v; want term 3 and %d keys re-wrapped", res, err, listed+1)
	}
	k.ClearCache()
	for id, ct := range cts {
		dk, err := k.DataKey(ctx, id)
		if err != nil {
			t.Fatalf("%s after the rotations: %v", id, err)
		}
		if got, err := dk.Open(Purpose(id), ct); err != nil || string(got) != id {
			t.Fatalf("%s after the rotations opens %q, %v", id, got, err)
		}
	}
}

// EraseSuperseded goes past a shard it cannot read (its stream deleted):
// it erases the revision a crash left behind a rewrite in a shard after
// it, and fails naming it.
func TestEraseSupersededGoesPastAShardThatFails(t *testing.T) {
	t.Parallel()
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, 30*time.Second)
	k := mustOpenKeys(t, l, GenerateMasterKey())
	const failing = 0
	id := ""
	for i := 0; id == "" || shardOf(id) == failing; i++ {
		id = fmt.Sprintf("wf.w%d.secrets", i)
	}
	if _, err := k.NewDataKey(ctx, id); err != nil {
		t.Fatal(err)
	}
	b := k.bucketFor(id)
	e, err := b.kv.Get(ctx, dataKeyPrefix+id)
	if err != nil {
		t.Fatal(err)
	}
	// A rewrite whose erasure of the revision it replaced did not happen.
	if _, err := b.kv.Update(ctx, e.Key(), e.Value(), e.Revision()); err != nil {
		t.Fatal(err)
	}
	shard := k.wf[failing].name
	if err := l.JetStream().DeleteStream(ctx, "KV_"+shard); err != nil {
		t.Fatal(err)
	}
	n, err := k.EraseSuperseded(ctx)
	if n != 1 || err == nil || !strings.Contains(err.Error(), shard) {
		t.Errorf("EraseSuperseded = %d, %v; want 1 revision of %s (shard %d) erased and an error naming %s", n, err, id, shardOf(id), shard)
	}
	if _, err := b.stream.GetMsg(ctx, e.Revision()); !errors.Is(err, jetstream.ErrMsgNotFound) {
		t.Errorf("the replaced revision after EraseSuperseded: %v, want it erased", err)
	}
}
