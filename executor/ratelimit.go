package executor

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// Rate limits. A task definition's rateLimitPerFrequency (N) and
// rateLimitFrequencyInSeconds (F) let at most N of its tasks be handed to
// workers in any F seconds, across engines, as Conductor's sliding window
// does: a take beyond them is refused, its announcement offered again
// once the oldest take of the window leaves it.
//
// Each limited definition keeps the times of the takes of its window in
// one entry of a JetStream key-value bucket in memory, updated by compare
// and set: engines never hand out more than N, whatever their number. A
// take whose record is then not stored still counts (the limit errs on
// the side of fewer), and a NATS server that restarts forgets the windows
// (the limit errs on the side of more for one window).

// rateBucket is the key-value bucket of the windows.
const rateBucket = "FV_RATE_LIMITS"

// RateLimitedError refuses a take: the definition's window is full until
// Until.
type RateLimitedError struct {
	TaskType string
	Until    time.Time
}

func (e *RateLimitedError) Error() string {
	return fmt.Sprintf("task type %s is rate limited until %s", e.TaskType, e.Until.UTC().Format(time.RFC3339Nano))
}

// Unwrap makes a refusal an ErrUnavailable: the worker is to try again
// later, the task is untouched.
func (e *RateLimitedError) Unwrap() error { return fault.ErrUnavailable }

type rateLimiter struct {
	log *eventlog.Log
	mu  sync.Mutex
	kv  jetstream.KeyValue
}

// casAttempts bounds the compare-and-set rounds of one take: each lost
// round is another engine's take of the same definition.
const casAttempts = 16

// rateLimitOf returns a definition's limit: 0 when it has none.
func rateLimitOf(td *conductor.TaskDef) (n int, per time.Duration) {
	if td == nil || td.RateLimitPerFrequency <= 0 {
		return 0, 0
	}
	f := 1 // Conductor's default frequency
	if td.RateLimitFrequencyInSeconds > 0 {
		f = td.RateLimitFrequencyInSeconds
	}
	return td.RateLimitPerFrequency, time.Duration(f) * time.Second
}

// admit records a take of taskType at now unless n takes are in the
// window before it.
func (r *rateLimiter) admit(ctx context.Context, taskType string, n int, per time.Duration, now time.Time) error {
	kv, err := r.bucket(ctx)
	if err != nil {
		return err
	}
	key := "t." + base64.RawURLEncoding.EncodeToString([]byte(taskType))
	for range casAttempts {
		var (
			times []int64
			rev   uint64
		)
		entry, err := kv.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return fmt.Errorf("%w: rate limit of %s: %v", fault.ErrUnavailable, taskType, err)
		default:
			times, rev = decodeTimes(entry.Value()), entry.Revision()
		}
		from := now.Add(-per).UnixMilli()
		kept := times[:0]
		for _, t := range times {
			if t > from {
				kept = append(kept, t)
			}
		}
		if len(kept) >= n {
			return &RateLimitedError{TaskType: taskType, Until: time.UnixMilli(kept[len(kept)-n]).Add(per)}
		}
		value := encodeTimes(append(kept, now.UnixMilli()))
		if rev == 0 {
			_, err = kv.Create(ctx, key, value)
		} else {
			_, err = kv.Update(ctx, key, value, rev)
		}
		if err == nil {
			return nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return fmt.Errorf("%w: rate limit of %s: %v", fault.ErrUnavailable, taskType, err)
		}
	}
	return fmt.Errorf("%w: rate limit of %s: too many engines taking at once", fault.ErrUnavailable, taskType)
}

func (r *rateLimiter) bucket(ctx context.Context) (jetstream.KeyValue, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.kv != nil {
		return r.kv, nil
	}
	kv, err := r.log.JetStream().CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: rateBucket,
		Description: "takes of rate-limited task types in their window", History: 1, Storage: jetstream.MemoryStorage})
	if err != nil {
		return nil, fmt.Errorf("%w: rate limit bucket: %v", fault.ErrUnavailable, err)
	}
	r.kv = kv
	return kv, nil
}

func encodeTimes(times []int64) []byte {
	b := make([]byte, 0, 8*len(times))
	for _, t := range times {
		b = binary.BigEndian.AppendUint64(b, uint64(t))
	}
	return b
}

func decodeTimes(b []byte) []int64 {
	times := make([]int64, 0, len(b)/8)
	for ; len(b) >= 8; b = b[8:] {
		times = append(times, int64(binary.BigEndian.Uint64(b)))
	}
	return times
}

// admitTake applies the rate limit of the task take asks for, as state
// shows it: a take of a task that is not waiting for one is left to the
// decision to refuse, and costs no place in the window.
func (e *Executor) admitTake(ctx context.Context, state *engine.Workflow, take engine.Take, now time.Time) error {
	if state == nil {
		return nil
	}
	t := state.TaskByID(take.TaskID)
	if t == nil || t.Status != conductor.TaskScheduled || !t.IsWorkerTask() {
		return nil
	}
	n, per := rateLimitOf(e.taskDefFunc(ctx)(t.Name))
	if n == 0 {
		return nil
	}
	return e.rates.admit(ctx, t.Name, n, per, now)
}
