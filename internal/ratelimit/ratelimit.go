// Package ratelimit keeps token buckets by key (a client address, an
// access key id) in bounded memory.
package ratelimit

import (
	"container/list"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// MaxKeys bounds the buckets a Keyed holds. Idle buckets are dropped once
// it is reached; while it is full of busy ones, new keys are refused (an
// attacker spraying keys must not grow memory without bound).
const MaxKeys = 10000

// Keyed is a set of token buckets by key. It is safe for concurrent use.
type Keyed struct {
	limit rate.Limit
	burst int
	mu    sync.Mutex
	m     map[string]*list.Element // of *entry
	// byUse holds the buckets most recently used first, so that those
	// idle are found at its back: a new key into a full set looks at the
	// buckets it drops and one more, not at all MaxKeys of them.
	byUse *list.List
}

type entry struct {
	key  string
	l    *rate.Limiter
	seen time.Time
}

// New returns buckets that refill at limit per second up to burst.
func New(limit rate.Limit, burst int) *Keyed {
	return &Keyed{limit: limit, burst: burst, m: map[string]*list.Element{}, byUse: list.New()}
}

// Reserve takes a token for key, returning how long to wait when there is
// none (0: allowed).
func (k *Keyed) Reserve(key string, now time.Time) time.Duration {
	return k.take(key, now, true)
}

// Check returns how long to wait for a token for key without taking one.
func (k *Keyed) Check(key string, now time.Time) time.Duration {
	return k.take(key, now, false)
}

func (k *Keyed) take(key string, now time.Time, consume bool) time.Duration {
	k.mu.Lock()
	defer k.mu.Unlock()
	el := k.m[key]
	if el == nil {
		if len(k.m) >= MaxKeys {
			k.dropIdle(now)
			if len(k.m) >= MaxKeys {
				return time.Minute
			}
		}
		el = k.byUse.PushFront(&entry{key: key, l: rate.NewLimiter(k.limit, k.burst)})
		k.m[key] = el
	} else {
		k.byUse.MoveToFront(el)
	}
	e := el.Value.(*entry)
	e.seen = now
	if !consume && e.l.TokensAt(now) >= 1 || consume && e.l.AllowN(now, 1) {
		return 0
	}
	wait := (1 - e.l.TokensAt(now)) / float64(k.limit)
	return max(time.Second, time.Duration(wait*float64(time.Second)))
}

// dropIdle drops the buckets unused for more than a minute.
func (k *Keyed) dropIdle(now time.Time) {
	for el := k.byUse.Back(); el != nil; el = k.byUse.Back() {
		e := el.Value.(*entry)
		if now.Sub(e.seen) <= time.Minute {
			return
		}
		k.byUse.Remove(el)
		delete(k.m, e.key)
	}
}
