package events

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/flowvault/flowvault/internal/kvbucket"
	"github.com/flowvault/flowvault/internal/logkey"
)

// SeenBucket holds a key per action an event's message ran (or runs) of
// a handler, shared by every engine on the server, so that an event
// published again under its message id (an EVENT task run again after
// its lease ran out: minutes later, on any engine) runs no action twice.
// A key's name is a hash of the handler's name and the message id (either
// may hold what keys refuse) and the action's position; its value says
// whether the action runs, ran or is to run again, nothing of the event.
const SeenBucket = "FV_EVENT_SEEN"

// SeenFor is how long a key is kept: far past the latest an EVENT task
// publishes again (its 5-minute lease, which runs out at most three
// times), short enough that the bucket holds a day's events at most.
const SeenFor = 24 * time.Hour

// ClaimLease is how long an action's claim keeps other engines from
// running it while its engine runs it: past it, the engine is taken to
// have died, and a copy of the event that comes then (an EVENT task run
// again once its 5-minute lease ran out) takes the claim over. A live
// engine's claim ends well before: its actions have actionTimeout, the
// claim's end flushTimeout more, and an append given up on may still be
// stored for about a minute (eventlog's retries). Nothing extends it.
const ClaimLease = 2 * time.Minute

// What a key's value says of its action. A key written by an engine
// before this version holds nothing: the action ran or runs, as done.
var (
	// claimRuns: an engine runs it, since the entry's time.
	claimRuns = []byte("runs")
	// claimDone: it ran, or failed for good.
	claimDone = []byte("done")
	// claimRetry: it failed in a way that may pass; the next copy of the
	// event runs it.
	claimRetry = []byte("retry")
)

// Seen records which actions of which handlers ran on which events.
type Seen struct {
	kv    jetstream.KeyValue
	guard WriteGuard
	lease time.Duration
	now   func() time.Time
}

// WriteGuard runs a write to a bucket's stream, refusing it at once, and
// saying why, while the stream's store is known to store nothing, and
// ending it once the store is found failed (*eventlog.Log). Unguarded, a
// claim on a bucket whose store failed (a full disk) waited out the time
// of the event's actions, and the action, run then, failed for want of
// it.
type WriteGuard interface {
	GuardWrite(ctx context.Context, stream string, write func(context.Context) error) error
}

// SeenLog is the log the bucket is kept next to (*eventlog.Log): it
// guards the bucket's writes, and makes it again while a NATS cluster
// forms or elects a meta leader (a start then failed that succeeds
// seconds later).
type SeenLog interface {
	WriteGuard
	WhileForming(ctx context.Context, what string, attempt func(context.Context) error, args ...any) error
}

// OpenSeen opens SeenBucket in js, made when it is missing, kept on disk
// as the log is (replicas copies): a server's restart must not forget
// what ran. log, when set, guards its writes and makes it while the
// cluster forms. A bucket another engine made is taken as it is; one
// that keeps its keys for less than SeenFor (made by another version) is
// warned about through logger, as an event published again after its
// keys went runs its actions again. Made again to this engine's
// settings, it would follow the last engine started.
func OpenSeen(ctx context.Context, js jetstream.JetStream, replicas int, log SeenLog, logger *slog.Logger) (*Seen, error) {
	var (
		kv jetstream.KeyValue
		st jetstream.KeyValueStatus
	)
	attempt := func(ctx context.Context) (err error) {
		kv, err = kvbucket.Open(ctx, js, jetstream.KeyValueConfig{Bucket: SeenBucket,
			Description: "event handlers' actions run, by handler, message id and action", History: 1, TTL: SeenFor,
			Storage: jetstream.FileStorage, Replicas: replicas})
		if err == nil {
			st, err = kv.Status(ctx)
		}
		return err
	}
	var err error
	if log == nil {
		err = attempt(ctx)
	} else {
		err = log.WhileForming(ctx, "event handlers' bucket not made yet", attempt, logkey.Stream, "KV_"+SeenBucket)
	}
	if err != nil {
		return nil, fmt.Errorf("event handlers' bucket: %w", err)
	}
	if ttl := st.TTL(); ttl > 0 && ttl < SeenFor {
		logger.Warn("event handlers' bucket keeps what ran for less than this engine asks: an event published again after that runs its actions again",
			logkey.Stream, "KV_"+SeenBucket, logkey.Duration, ttl, logkey.Want, SeenFor)
	}
	s := &Seen{kv: kv, lease: ClaimLease, now: time.Now}
	if log != nil {
		s.guard = log
	}
	return s, nil
}

// write runs write, a write to the bucket that returns the revision it
// wrote, through the guard.
func (s *Seen) write(ctx context.Context, write func(context.Context) (uint64, error)) (rev uint64, err error) {
	if s.guard == nil {
		return write(ctx)
	}
	err = s.guard.GuardWrite(ctx, "KV_"+SeenBucket, func(ctx context.Context) (err error) {
		rev, err = write(ctx)
		return err
	})
	return rev, err
}

// seenKey names action i of handler on the event with message id msgID.
// The handler's name is hashed after its length, so that no two pairs
// make the same text.
func seenKey(handler, msgID string, i int) string {
	sum := sha256.Sum256([]byte(strconv.Itoa(len(handler)) + ":" + handler + msgID))
	return hex.EncodeToString(sum[:]) + "." + strconv.Itoa(i)
}

// claimed is what claim found of an action.
type claimed int

const (
	claimHeld      claimed = iota // this call holds the claim: run the action
	claimRan                      // it ran (or failed for good) already
	claimElsewhere                // another engine runs it, within the lease
)

// claim is an action's claim that this engine holds.
type claim struct {
	key string // "" for none (the action runs unrecorded)
	rev uint64
	// resumed: taken over from an engine that died running the action,
	// or from a run that failed in a way that may pass. Its decision may
	// have landed: whoever takes it looks first.
	resumed bool
}

// claim takes key for this engine: when it is new, when its action
// failed in a way that may pass, or when the engine that runs it claimed
// it longer than the lease ago. A compare-and-set on the revision read
// makes one engine of those that try at once the taker.
func (s *Seen) claim(ctx context.Context, key string) (claim, claimed, error) {
	// A key deleted or expired between the tries is created again; an
	// engine of an older version deletes the claims of actions that
	// failed in a way that may pass.
	for range 3 {
		rev, err := s.write(ctx, func(ctx context.Context) (uint64, error) { return s.kv.Create(ctx, key, claimRuns) })
		if err == nil {
			return claim{key: key, rev: rev}, claimHeld, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return claim{}, 0, fmt.Errorf("claim an event's action: %w", err)
		}
		e, err := s.kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return claim{}, 0, fmt.Errorf("read an event's action's claim: %w", err)
		}
		switch v := e.Value(); {
		case bytes.Equal(v, claimRetry):
		case bytes.Equal(v, claimRuns) && s.now().Sub(e.Created()) >= s.lease:
		case bytes.Equal(v, claimRuns):
			return claim{}, claimElsewhere, nil
		default:
			return claim{}, claimRan, nil
		}
		rev, err = s.write(ctx, func(ctx context.Context) (uint64, error) { return s.kv.Update(ctx, key, claimRuns, e.Revision()) })
		if err == nil {
			return claim{key: key, rev: rev, resumed: true}, claimHeld, nil
		}
		if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return claim{}, 0, fmt.Errorf("take over an event's action's claim: %w", err)
		}
	}
	return claim{}, 0, fmt.Errorf("claim an event's action: its claim changed on every try")
}

// end records how c's action ended (claimDone, claimRetry), unless
// another engine took the claim over since.
func (s *Seen) end(ctx context.Context, c claim, how []byte) error {
	if _, err := s.write(ctx, func(ctx context.Context) (uint64, error) { return s.kv.Update(ctx, c.key, how, c.rev) }); err != nil {
		return fmt.Errorf("end an event's action's claim: %w", err)
	}
	return nil
}
