package kvbucket_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/flowvault/flowvault/internal/kvbucket"
	"github.com/flowvault/flowvault/internal/testutil"
)

// Whichever engine comes first makes a bucket; the others, asking for
// other settings, take it as it is: Open, and Make for an engine that
// found it missing an instant before another made it.
func TestOpenTakesTheBucketAsMade(t *testing.T) {
	t.Parallel()
	first := jetstream.KeyValueConfig{Bucket: "FV_TEST", History: 1, TTL: time.Hour, MaxBytes: 1 << 20, Storage: jetstream.FileStorage}
	second := first
	second.TTL, second.MaxBytes = time.Minute, 2<<20
	for _, tc := range []struct {
		name string
		open func(context.Context, jetstream.JetStream, jetstream.KeyValueConfig) (jetstream.KeyValue, error)
	}{
		{"open", kvbucket.Open},
		{"make", kvbucket.Make},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := testutil.Context(t, 30*time.Second)
			js := testutil.OpenLog(t, "").JetStream()
			made, err := kvbucket.Open(ctx, js, first)
			if err != nil {
				t.Fatalf("made missing: %v", err)
			}
			if _, err := made.Put(ctx, "k", []byte("v")); err != nil {
				t.Fatal(err)
			}
			kv, err := tc.open(ctx, js, second)
			if err != nil {
				t.Fatalf("%s an existing bucket with other settings: %v", tc.name, err)
			}
			if _, err := kv.Get(ctx, "k"); err != nil {
				t.Errorf("the key the first made: %v", err)
			}
			st, err := kv.Status(ctx)
			if err != nil {
				t.Fatal(err)
			}
			cfg := st.Config()
			if cfg.TTL != first.TTL || cfg.MaxBytes != first.MaxBytes {
				t.Errorf("after the %s, TTL %v and size limit %d, want %v and %d as the first made it",
					tc.name, cfg.TTL, cfg.MaxBytes, first.TTL, first.MaxBytes)
			}
		})
	}
}

// A bucket missing is made with the settings asked.
func TestOpenMakesAMissingBucket(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, 30*time.Second)
	js := testutil.OpenLog(t, "").JetStream()
	want := jetstream.KeyValueConfig{Bucket: "FV_TEST", History: 1, TTL: time.Hour, Storage: jetstream.FileStorage}
	kv, err := kvbucket.Open(ctx, js, want)
	if err != nil {
		t.Fatal(err)
	}
	st, err := kv.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Config(); got.TTL != want.TTL || got.Storage != want.Storage {
		t.Errorf("made with TTL %v and storage %v, want %v and %v", got.TTL, got.Storage, want.TTL, want.Storage)
	}
}
