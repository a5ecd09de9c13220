package events

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// SeenBucket holds a key per action an event's message ran (or runs) of
// a handler, shared by every engine on the server, so that an event
// published again under its message id (an EVENT task run again after
// its lease ran out: minutes later, on any engine) runs no action twice.
// A key holds nothing: its name is a hash of the handler's name and the
// message id (either may hold what keys refuse), and the action's
// position.
const SeenBucket = "FV_EVENT_SEEN"

// SeenFor is how long a key is kept: far past the latest an EVENT task
// publishes again (its 5-minute lease, which runs out at most three
// times), short enough that the bucket holds a day's events at most.
const SeenFor = 24 * time.Hour

// Seen records which actions of which handlers ran on which events.
type Seen struct {
	kv jetstream.KeyValue
}

// OpenSeen creates or opens SeenBucket in js, kept on disk as the log is
// (replicas copies): a server's restart must not forget what ran.
func OpenSeen(ctx context.Context, js jetstream.JetStream, replicas int) (*Seen, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: SeenBucket,
		Description: "event handlers' actions run, by handler, message id and action", History: 1, TTL: SeenFor,
		Storage: jetstream.FileStorage, Replicas: replicas})
	if err != nil {
		return nil, fmt.Errorf("event handlers' bucket: %w", err)
	}
	return &Seen{kv: kv}, nil
}

// seenKey names action i of handler on the event with message id msgID.
// The handler's name is hashed after its length, so that no two pairs
// make the same text.
func seenKey(handler, msgID string, i int) string {
	sum := sha256.Sum256([]byte(strconv.Itoa(len(handler)) + ":" + handler + msgID))
	return hex.EncodeToString(sum[:]) + "." + strconv.Itoa(i)
}

// claim records key and reports whether this call did: false when it was
// there already (an engine ran, or runs, the action on this event).
func (s *Seen) claim(ctx context.Context, key string) (bool, error) {
	_, err := s.kv.Create(ctx, key, nil)
	if errors.Is(err, jetstream.ErrKeyExists) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("claim an event's action: %w", err)
	}
	return true, nil
}

// release removes key, so that the event published again runs the action
// again.
func (s *Seen) release(ctx context.Context, key string) error {
	if err := s.kv.Delete(ctx, key); err != nil {
		return fmt.Errorf("release an event's action: %w", err)
	}
	return nil
}
