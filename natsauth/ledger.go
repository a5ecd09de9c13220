package natsauth

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/projections"
	"github.com/flowvault/flowvault/schemas"
)

// ProjectionName is the key space of the worker credentials read model.
const ProjectionName = "natscreds"

// Issued is what the read model knows of one issued credential: its
// issuance, and its revocation if any. Never the seed, which only the
// holder has.
type Issued struct {
	User           string   `msgpack:"user" json:"user"`
	Name           string   `msgpack:"n,omitempty" json:"name,omitempty"`
	TaskTypes      []string `msgpack:"types,omitempty" json:"taskTypes,omitempty"`
	Domains        []string `msgpack:"domains,omitempty" json:"domains,omitempty"`
	DomainsOnly    bool     `msgpack:"donly,omitempty" json:"domainsOnly,omitempty"`
	StartWorkflows []string `msgpack:"start,omitempty" json:"startWorkflows,omitempty"`
	Subscribe      []string `msgpack:"sub,omitempty" json:"subscribe,omitempty"`
	IssuedBy       string   `msgpack:"by" json:"issuedBy"`
	IssuedAt       int64    `msgpack:"ts" json:"issuedAt"`           // Unix milliseconds
	Expires        int64    `msgpack:"exp,omitempty" json:"expires"` // Unix milliseconds; 0: never
	RevokedBy      string   `msgpack:"rby,omitempty" json:"revokedBy,omitempty"`
	RevokedAt      int64    `msgpack:"rts,omitempty" json:"revokedAt,omitempty"` // Unix milliseconds
}

// Queues are the domains whose queues of c.TaskTypes the credentials
// reach, "" naming the queue without domain.
func (c Issued) Queues() []string { return queues(c.Domains, c.DomainsOnly) }

// Expired reports whether the credentials no longer work at now anyway.
func (c Issued) Expired(now time.Time) bool {
	return c.Expires != 0 && c.Expires <= now.UnixMilli()
}

// Projection folds the credentials' audit facts (AuditSubject, on
// eventlog.Audit) into the read model Ledger reads. Other audit facts
// are not its business and are skipped undecoded. The read model
// depends on the log alone, never on the clock: what has expired is
// decided when it is read.
//
// A Projection made by NewProjection calls its notify after each commit
// that applied credentials' facts (from the runner's goroutine: it must
// not block), so that the server's revocation list follows revocations
// made through any engine. Commits of the stream's other facts, a
// secret's every resolution among them, call nothing: each call has the
// gate read every credential that still works.
type Projection struct {
	notify  func()
	applied *atomic.Bool // set by Apply, taken by Committed
}

// NewProjection returns a Projection that calls notify after each
// commit of credentials' facts.
func NewProjection(notify func()) Projection {
	return Projection{notify: notify, applied: new(atomic.Bool)}
}

var (
	_ projections.Projection = Projection{}
	_ projections.Layouter   = Projection{}
)

// Name implements projections.Projection.
func (Projection) Name() string { return ProjectionName }

// Committed implements projections.Committer.
func (p Projection) Committed(uint64) {
	if p.notify != nil && p.applied.Swap(false) {
		p.notify()
	}
}

// Apply implements projections.Projection. A revocation of credentials
// the model never saw issued is kept all the same: refusing a user costs
// nothing, and its issuance may be in a record parked as poison.
func (p Projection) Apply(b *projections.Batch, rec eventlog.Record) error {
	if rec.Subject != AuditSubject {
		return nil
	}
	if p.applied != nil {
		p.applied.Store(true)
	}
	for _, env := range rec.Events {
		if env.Type != schemas.TypeWorkerCredentialsIssued && env.Type != schemas.TypeWorkerCredentialsRevoked {
			continue
		}
		ev, err := schemas.Default.Decode(env)
		if err != nil {
			return fmt.Errorf("%s #%d: %w", rec.Subject, rec.Seq, err)
		}
		switch e := ev.(type) {
		case *schemas.WorkerCredentialsIssued:
			c := Issued{User: e.User, Name: e.Name, TaskTypes: e.TaskTypes, Domains: e.Domains, DomainsOnly: e.DomainsOnly,
				StartWorkflows: e.StartWorkflows, Subscribe: e.Subscribe, IssuedBy: e.By, IssuedAt: e.Time, Expires: e.Expires * 1000}
			old, err := getIssued(b, e.User)
			had := err == nil
			if had {
				c.RevokedBy, c.RevokedAt = old.RevokedBy, old.RevokedAt
			} else if !errors.Is(err, projections.ErrNotFound) {
				return err
			}
			if err := putIssued(b, old, had, c); err != nil {
				return err
			}
		case *schemas.WorkerCredentialsRevoked:
			old, err := getIssued(b, e.User)
			had := err == nil
			if errors.Is(err, projections.ErrNotFound) {
				old = Issued{User: e.User}
			} else if err != nil {
				return err
			}
			if old.RevokedAt != 0 {
				continue // the first revocation stands
			}
			c := old
			c.RevokedBy, c.RevokedAt = e.By, e.Time
			if err := putIssued(b, old, had, c); err != nil {
				return err
			}
		}
	}
	return nil
}

// layout is the read model's layout (projections.Layouter): 2 indexes
// the credentials by expiry, the revoked apart from the others, so that
// a sync of the revocation list reads the credentials that still work,
// not every one ever issued; layout 1 indexed the revoked by user alone.
const layout = 2

// Layout implements projections.Layouter.
func (Projection) Layout() int { return layout }

// Keys: one entry per user, and an index of the users by expiry, the
// revoked ones (from which the server's revocation list is built at
// every change) apart from the others (whose principals' rights each
// change is checked against). An index key is its prefix, the expiry
// in Unix milliseconds as 16 hex digits (never: all f), "/" and the user.
const (
	issuedPrefix    = "u/"
	revokedPrefix   = "r/"
	unrevokedPrefix = "a/"
)

func issuedKey(user string) []byte { return []byte(issuedPrefix + user) }

// indexKey is c's key in the index by expiry.
func indexKey(c Issued) []byte {
	prefix := unrevokedPrefix
	if c.RevokedAt != 0 {
		prefix = revokedPrefix
	}
	return []byte(prefix + expiryHex(c.Expires) + "/" + c.User)
}

// expiryHex orders expiries as the index keys do: 0 (never) last, and a
// negative one (expired anyway) first.
func expiryHex(ms int64) string {
	switch {
	case ms == 0:
		return fmt.Sprintf("%016x", uint64(math.MaxUint64))
	case ms < 0:
		ms = 0
	}
	return fmt.Sprintf("%016x", uint64(ms))
}

// expiryHexLen is the length of an index key's expiry and the "/" after
// it.
const expiryHexLen = 16 + 1

// liveRange bounds the keys of the index under prefix whose credentials
// still work at now: those expiring after it.
func liveRange(prefix string, now time.Time) (lower, upper []byte) {
	lower = []byte(prefix + expiryHex(max(now.UnixMilli(), 0)+1))
	upper = []byte(strings.TrimSuffix(prefix, "/") + "0") // '0' follows '/'
	return lower, upper
}

type kvReader interface {
	Get(key []byte) ([]byte, error)
}

func getIssued(kv kvReader, user string) (Issued, error) {
	b, err := kv.Get(issuedKey(user))
	if err != nil {
		return Issued{}, err
	}
	var c Issued
	if err := msgpack.Unmarshal(b, &c); err != nil {
		return Issued{}, fmt.Errorf("worker credentials %s: %w", user, err)
	}
	return c, nil
}

// putIssued stores c, whose earlier version was old if had, and moves
// its index entry where its expiry and revocation put it.
func putIssued(b *projections.Batch, old Issued, had bool, c Issued) error {
	v, err := msgpack.Marshal(&c)
	if err != nil {
		return err
	}
	if err := b.Set(issuedKey(c.User), v); err != nil {
		return err
	}
	key := indexKey(c)
	if had {
		if was := indexKey(old); string(was) != string(key) {
			if err := b.Delete(was); err != nil {
				return err
			}
		}
	}
	return b.Set(key, nil)
}

// Ledger reads the worker credentials read model.
type Ledger struct {
	r projections.Reader
}

// NewLedger reads the read model Projection keeps in store.
func NewLedger(store *projections.Store) *Ledger {
	return &Ledger{r: store.Reader(ProjectionName)}
}

// Get returns the credentials of user, or a fault.ErrNotFound.
func (l *Ledger) Get(user string) (Issued, error) {
	c, err := getIssued(l.r, user)
	if errors.Is(err, projections.ErrNotFound) || err == nil && c.IssuedAt == 0 {
		return Issued{}, fault.NotFound("worker credentials %s not found", user)
	}
	return c, err
}

// List returns the credentials keep says to, newest first.
func (l *Ledger) List(keep func(Issued) bool) ([]Issued, error) {
	var (
		out  []Issued
		ferr error
	)
	err := l.r.Scan([]byte(issuedPrefix), func(key, value []byte) bool {
		var c Issued
		if ferr = msgpack.Unmarshal(value, &c); ferr != nil {
			ferr = fmt.Errorf("worker credentials %s: %w", strings.TrimPrefix(string(key), issuedPrefix), ferr)
			return false
		}
		if c.IssuedAt != 0 && keep(c) {
			out = append(out, c)
		}
		return true
	})
	if err = errors.Join(err, ferr); err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b Issued) int {
		return cmp.Or(cmp.Compare(b.IssuedAt, a.IssuedAt), strings.Compare(a.User, b.User))
	})
	return out, nil
}

// Revoked returns the server's revocation list at now: the users whose
// credentials were revoked and would still work, each with the time up
// to which the server refuses JWTs issued for it (Unix seconds). That is
// the credentials' expiry, so that every JWT of the user is refused
// whatever the clock of the engine that issued it said: a user key is
// never issued twice. Expired credentials need no entry, and are not
// read: the index holds the expiry.
func (l *Ledger) Revoked(now time.Time) (map[string]int64, error) {
	out := map[string]int64{}
	var ferr error
	lower, upper := liveRange(revokedPrefix, now)
	err := l.r.ScanRange(lower, upper, false, func(key, _ []byte) bool {
		rest := string(key[len(revokedPrefix):])
		var ms uint64
		if ms, ferr = strconv.ParseUint(rest[:expiryHexLen-1], 16, 64); ferr != nil {
			ferr = fmt.Errorf("revoked worker credentials index %q: %w", key, ferr)
			return false
		}
		c := Issued{Expires: int64(ms)}
		if ms == math.MaxUint64 {
			c.Expires = 0
		}
		out[rest[expiryHexLen:]] = c.refusedUntil()
		return true
	})
	if err = errors.Join(err, ferr); err != nil {
		return nil, err
	}
	return out, nil
}

// Unrevoked returns the credentials not revoked that still work at now,
// in no particular order.
func (l *Ledger) Unrevoked(now time.Time) ([]Issued, error) {
	var users []string
	lower, upper := liveRange(unrevokedPrefix, now)
	err := l.r.ScanRange(lower, upper, false, func(key, _ []byte) bool {
		users = append(users, string(key[len(unrevokedPrefix)+expiryHexLen:]))
		return true
	})
	if err != nil {
		return nil, err
	}
	out := make([]Issued, 0, len(users))
	for _, u := range users {
		c, err := getIssued(l.r, u)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// refusedUntil is the time up to which a revocation list refuses every
// JWT of c's user (Unix seconds): its expiry, or forever.
func (c Issued) refusedUntil() int64 {
	if c.Expires == 0 {
		return math.MaxInt64
	}
	return c.Expires / 1000
}
