package executor

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/internal/kvbucket"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// A task definition limits how its tasks go to workers:
// rateLimitPerFrequency how many in any window of time (ratelimit.go),
// concurrentExecLimit how many at once (concurrency.go). Both are checked
// when a task is taken, on every path (a poll's take, a take for a waiting
// worker in the decision that schedules the task, a NATS take request),
// against state every engine shares: a JetStream key-value bucket,
// updated by compare and set. A refused take leaves the task
// SCHEDULED and its announcement is offered again later. Both err on the
// side of fewer: a take admitted and then not recorded keeps its place
// for a while.

// limitsBucket is the key-value bucket of the limits' state.
const limitsBucket = "FV_TASK_LIMITS"

// casAttempts bounds the compare-and-set rounds of one take: each lost
// round is another engine's take of the same definition.
const casAttempts = 16

// limits keeps the state of the task definitions' limits.
type limits struct {
	log *eventlog.Log
	mu  sync.Mutex
	kv  jetstream.KeyValue
	// stream is kv's stream, whose state anyLines asks.
	stream jetstream.Stream
	// checked is when this engine last checked a task type's holders
	// against the log (concurrency.go).
	checked map[string]time.Time
	// purged is when this engine last purged the bucket's deletion
	// markers (markersDue).
	purged time.Time
}

// markersEvery is how often an engine purges the deletion markers of the
// workflow rate limits' emptied lines.
const markersEvery = 10 * time.Minute

// markersDue reports whether the deletion markers are due a purge, and
// if so counts it as done.
func (l *limits) markersDue(now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.purged) < markersEvery {
		return false
	}
	l.purged = now
	return true
}

func newLimits(log *eventlog.Log) *limits { return &limits{log: log, checked: map[string]time.Time{}} }

// bucket is the limits' bucket, made if it was not, and taken as it is
// when it was: its settings are the same at every version but the
// replicas, which the engine that made it chose.
func (l *limits) bucket(ctx context.Context) (jetstream.KeyValue, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.kv != nil {
		return l.kv, nil
	}
	js := l.log.JetStream()
	cfg := jetstream.KeyValueConfig{Bucket: limitsBucket,
		Description: "task definitions' limits: takes in their window, takes running", History: 1,
		Storage: jetstream.FileStorage, Replicas: l.log.Replicas()}
	kv, err := kvbucket.Open(ctx, js, cfg)
	var st jetstream.KeyValueStatus
	if err == nil {
		st, err = kv.Status(ctx)
	}
	// Kept on disk: a server's restart must not forget the takes of the
	// window and the tasks holding places, or it would hand out as many
	// again. A version before this one kept the bucket in memory, which
	// JetStream cannot change in place: that bucket goes (its state, all
	// of it in memory, is what a restart would have lost anyway).
	if err == nil && st.Config().Storage == jetstream.MemoryStorage {
		if err = js.DeleteKeyValue(ctx, limitsBucket); err == nil || errors.Is(err, jetstream.ErrBucketNotFound) {
			kv, err = kvbucket.Make(ctx, js, cfg)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%w: task limits bucket: %v", fault.ErrUnavailable, err)
	}
	l.kv = kv
	return kv, nil
}

// writeBucket runs write, a write to bucket on log's server that returns
// the revision it wrote, through the log's guard: on a bucket whose store
// failed (a full disk) it fails as an append does (eventlog.ErrNoStorage),
// at once once the store is known failed, where each write waited out its
// caller's time (GuardWrite).
func writeBucket(ctx context.Context, log *eventlog.Log, bucket string, write func(context.Context) (uint64, error)) (rev uint64, err error) {
	err = log.GuardWrite(ctx, "KV_"+bucket, func(ctx context.Context) (err error) {
		rev, err = write(ctx)
		return err
	})
	return rev, err
}

// anyLines reports whether the bucket holds a workflow rate limit's line
// or an emptied line's deletion marker, from the bucket stream's state:
// one request, where listing the keys makes a consumer and deletes it,
// on a cluster two changes the meta group agrees on, every second of
// every engine, rate limits in use or not.
func (l *limits) anyLines(ctx context.Context) (bool, error) {
	if _, err := l.bucket(ctx); err != nil {
		return false, err
	}
	l.mu.Lock()
	s := l.stream
	l.mu.Unlock()
	if s == nil {
		var err error
		if s, err = l.log.JetStream().Stream(ctx, "KV_"+limitsBucket); err != nil {
			return false, err
		}
		l.mu.Lock()
		l.stream = s
		l.mu.Unlock()
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter("$KV."+limitsBucket+"."+lineKeys))
	if err != nil {
		return false, err
	}
	return len(info.State.Subjects) > 0, nil
}

// cas runs change on the value of key (nil when it has none) and writes
// what it returns, until the write wins a compare and set: a lost round
// is another engine's write, and change runs again on what it wrote.
// change refuses with an error, writes nothing by returning nil, or
// deletes the key by returning removeEntry.
func (l *limits) cas(ctx context.Context, key, what string, change func(old []byte) ([]byte, error)) error {
	kv, err := l.bucket(ctx)
	if err != nil {
		return err
	}
	for range casAttempts {
		var (
			old []byte
			rev uint64
		)
		entry, err := kv.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return fmt.Errorf("%w: %s: %v", fault.ErrUnavailable, what, err)
		default:
			old, rev = entry.Value(), entry.Revision()
		}
		next, err := change(old)
		if err != nil || next == nil {
			return err
		}
		if len(next) == 0 && rev == 0 {
			return nil
		}
		_, err = writeBucket(ctx, l.log, limitsBucket, func(ctx context.Context) (uint64, error) {
			switch {
			case len(next) == 0:
				return 0, kv.Delete(ctx, key, jetstream.LastRevision(rev))
			case rev == 0:
				return kv.Create(ctx, key, next)
			}
			return kv.Update(ctx, key, next, rev)
		})
		switch {
		case err == nil:
			return nil
		case errors.Is(err, eventlog.ErrNoStorage), errors.Is(err, eventlog.ErrOutOfFiles):
			// Unavailable already, and a 503 that says why.
			return fmt.Errorf("%s: %w", what, err)
		case !errors.Is(err, jetstream.ErrKeyExists) && !errors.Is(err, jetstream.ErrKeyRevisionMismatch):
			return fmt.Errorf("%w: %s: %v", fault.ErrUnavailable, what, err)
		}
	}
	return fmt.Errorf("%w: %s: too many engines taking at once", fault.ErrUnavailable, what)
}

// removeEntry, returned by a cas change, deletes the key.
var removeEntry = []byte{}

// limitKey is a task type's key of one kind: task names may hold what
// keys may not.
func limitKey(kind, taskType string) string {
	return kind + base64.RawURLEncoding.EncodeToString([]byte(taskType))
}

// LimitedError refuses a take: a limit of the task's definition is
// reached, until Until at the earliest.
type LimitedError struct {
	TaskType string
	// Limit names the definition's field: rateLimitPerFrequency or
	// concurrentExecLimit.
	Limit string
	Until time.Time
}

func (e *LimitedError) Error() string {
	return fmt.Sprintf("task type %s is at its %s: try again after %s", e.TaskType, e.Limit, e.Until.UTC().Format(time.RFC3339Nano))
}

// Unwrap makes a refusal an ErrUnavailable: the worker is to try again
// later, the task is untouched.
func (e *LimitedError) Unwrap() error { return fault.ErrUnavailable }

// admitTake applies the limits of the task take asks for, as state shows
// it, and reports whether it did: a take of a task that state does not
// show waiting for one is left to the decision (or to an attempt on a
// fresher state) and costs no place.
func (e *Executor) admitTake(ctx context.Context, state *engine.Workflow, take engine.Take, now time.Time) (applied bool, err error) {
	if state == nil {
		return false, nil
	}
	t := state.TaskByIDDeciding(take.TaskID)
	if t == nil || t.Status != conductor.TaskScheduled || !t.IsWorkerTask() {
		return false, nil
	}
	err = e.admit(ctx, state, t, now)
	if limited := (*LimitedError)(nil); errors.As(err, &limited) {
		e.metrics.limited.WithLabelValues(limited.TaskType, limited.Limit).Inc()
	}
	return true, err
}

func (e *Executor) admit(ctx context.Context, state *engine.Workflow, t *engine.Task, now time.Time) error {
	// The definition the task was scheduled with: inline in the
	// workflow's, else the registered one (as it is now).
	td := state.InlineTaskDef(t)
	if td == nil {
		td = e.taskDefFunc(ctx)(t.Name)
	}
	// The window first: a take it refuses then holds no place among
	// those running, which is kept longer.
	if n, per := rateLimitOf(td); n > 0 {
		if err := e.limits.admitRate(ctx, t.Name, n, per, now); err != nil {
			return err
		}
	}
	if td != nil && td.ConcurrentExecLimit > 0 {
		return e.limits.admitRunning(ctx, t.Name, td.ConcurrentExecLimit, holder{Task: t.ID, Workflow: state.ID, At: now.UnixMilli()}, now,
			e.stillHolds)
	}
	return nil
}
