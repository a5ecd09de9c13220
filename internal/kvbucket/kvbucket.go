// Package kvbucket opens the JetStream key-value buckets that every engine
// on a server shares. Engines of other versions, or started with other
// flags, share them too: each bucket is made once, by whichever engine
// comes first, and then taken as it is. Made again at each start
// (CreateOrUpdateKeyValue), its configuration would follow the last engine
// started, rewritten under the others, and an update the server refuses (a
// size limit its store does not fit) would fail that engine's every use of
// the bucket.
package kvbucket

import (
	"context"
	"errors"

	"github.com/nats-io/nats.go/jetstream"
)

// Open returns the bucket cfg names as it is when it exists, and makes it
// with cfg when it does not. Its configuration may differ from cfg: a
// caller that depends on a setting reads it (KeyValue.Status) and says
// what it does about it.
func Open(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	kv, err := js.KeyValue(ctx, cfg.Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return Make(ctx, js, cfg)
	}
	return kv, err
}

// Make makes the bucket cfg names, found missing, with cfg. One that
// another engine made since, with another configuration, is taken as it
// is (the server refuses to make it again with other settings); with the
// same, the server answers as if made here.
func Make(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	kv, err := js.CreateKeyValue(ctx, cfg)
	if errors.Is(err, jetstream.ErrBucketExists) {
		return js.KeyValue(ctx, cfg.Bucket)
	}
	return kv, err
}
