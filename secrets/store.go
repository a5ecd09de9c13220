package secrets

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/internal/logkey"
	"github.com/flowvault/flowvault/internal/taglimit"
	"github.com/flowvault/flowvault/projections"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// Source is what secret resolution at task hand-off needs. *Store
// implements it.
type Source interface {
	// Resolve returns the current value of secret name and its version.
	// The caller owns the returned slice and should wipe it (clear) when
	// done. A missing secret fails with an error wrapping fault.ErrNotFound
	// that names the secret; an invalid name with fault.ErrInvalid.
	// Errors never contain the value.
	Resolve(ctx context.Context, name string) (value []byte, version int, err error)
	// Revision is secret name's revision as access checks read it: taken
	// before a principal's access is checked, it ties the value served to
	// what the check saw (ResolveAt).
	Revision(ctx context.Context, name string) (Revision, error)
	// ResolveAt is Resolve for a principal whose access was checked on
	// rev. A secret changed since (written, deleted, retagged) fails with
	// fault.ErrStale: checked again, it may be served.
	ResolveAt(ctx context.Context, name string, rev Revision) (value []byte, version int, err error)
	// Exists reports whether secret name has a value.
	Exists(ctx context.Context, name string) (bool, error)
}

var _ Source = (*Store)(nil)

// Options carries New's optional collaborators.
type Options struct {
	// Logger receives one line per change (never a value). Nil logs nowhere.
	Logger *slog.Logger
}

// Store keeps secrets as events on FV_SECRET, each value sealed under a
// data key of its own before it is appended, and serves their metadata from
// the secrets read model. It is safe for concurrent use; several Stores
// (one per process) may share one log and one key bucket.
type Store struct {
	w    *writer
	keys *Keys
	// generation is the read model's generation (projections.Runner's),
	// plus 2 so that 0 never names one; odd (never stable) when unknown.
	generation func() uint64
	ciphers    cipherCache
}

// generationer is a read model runner that counts its writes
// (projections.Runner.Generation).
type generationer interface{ Generation() uint64 }

// stable reports whether generation gen names a read model that no write
// is changing.
func stable(gen uint64) bool { return gen != 0 && gen%2 == 0 }

// cipherCache keeps the current ciphertexts Resolve read from the read
// model, with their subjects' sequences, while the read model's generation
// stays: every task that takes a secret would otherwise cost three reads
// of it (the revision its access check is tied to, the state after the
// check, the ciphertext), in a store whose memtable the executions read
// model keeps large. Ciphertexts only; values are opened on each
// resolution.
type cipherCache struct {
	mu  sync.Mutex
	gen uint64
	m   map[string]cachedCipher
}

// cachedCipher is a ciphertext with the sequence of its subject's state
// it was read at, which a checked resolution compares with its revision.
type cachedCipher struct {
	c   storedCipher
	seq uint64
}

const cipherCacheSize = 1024

// get returns name's ciphertext as the read model holds it in generation
// gen.
func (c *cipherCache) get(name string, gen uint64) (cachedCipher, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !stable(gen) || gen != c.gen {
		return cachedCipher{}, false
	}
	e, ok := c.m[name]
	return e, ok
}

// put keeps e, read from the read model in generation gen: read between
// two looks at the generation that both saw gen.
func (c *cipherCache) put(name string, e cachedCipher, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !stable(gen) {
		return
	}
	if gen != c.gen || len(c.m) >= cipherCacheSize {
		c.gen, c.m = gen, map[string]cachedCipher{}
	}
	c.m[name] = e
}

// New returns a Store that appends to log, reads the secrets read model in
// store, and seals values with keys. waiter is the read model's runner (a
// Projection over eventlog.Secrets); writes wait for it so that a caller
// reads its own writes.
func New(log *eventlog.Log, store *projections.Store, waiter Waiter, keys *Keys, opts Options) *Store {
	s := &Store{w: newWriter(log, store, waiter, opts.Logger), keys: keys, generation: func() uint64 { return 1 }}
	if r, ok := waiter.(generationer); ok {
		s.generation = func() uint64 { return r.Generation() + 2 }
	}
	return s
}

// Keys is the key store the Store seals with.
func (s *Store) Keys() *Keys { return s.keys }

// Meta is a secret's metadata: everything about it but its value.
type Meta struct {
	Name string          `json:"name"`
	Tags []conductor.Tag `json:"tags"`
	// Version counts the puts of this name, deletes included: it never
	// goes back and is never reused.
	Version int `json:"version"`
	// Fingerprint is the keyed HMAC of the current value
	// ("hmac-sha256:<hex>"), Size its length in bytes.
	Fingerprint string `json:"fingerprint"`
	Size        int    `json:"size"`
	CreateTime  int64  `json:"createTime"` // Unix milliseconds
	CreatedBy   string `json:"createdBy"`
	UpdateTime  int64  `json:"updateTime"`
	UpdatedBy   string `json:"updatedBy"`
	// Versions is the audit trail of the live versions, oldest first
	// (Metadata only; List leaves it empty).
	Versions []VersionInfo `json:"versions,omitempty"`
}

func newMeta(name string, s storedSecret) Meta {
	return Meta{Name: name, Tags: toConductorTags(s.Tags), Version: s.Version, Fingerprint: s.Fingerprint, Size: s.Size,
		CreateTime: s.CreateTime, CreatedBy: s.CreatedBy, UpdateTime: s.UpdateTime, UpdatedBy: s.UpdatedBy}
}

func secretNotFound(name string) error { return fault.NotFound("secret %s not found", name) }

// secretKeyPrefix is the data key id prefix of secret name's keys.
func secretKeyIDPrefix(name string) string { return "secret." + name }

// Put stores value as the next version of secret name, creating the secret
// if it has no value. The value is sealed under a fresh data key, with the
// name and version as additional data, before anything is appended; the
// previous version's data key is destroyed once the new version is
// committed, so an overwritten value can never be decrypted again.
func (s *Store) Put(ctx context.Context, name string, value []byte, principal string, opts ...WriteOption) (version int, err error) {
	if err := CheckSecretName(name); err != nil {
		return 0, err
	}
	if err := CheckValue("secret", value); err != nil {
		return 0, err
	}
	subject := SecretSubject(name)
	fp := s.keys.Fingerprint(value)
	o := collect(opts)
	var pending, superseded string // data keys of the current attempt, of the version it replaces
	_, err = s.w.update(ctx, subject, principal, func(v view) ([]schemas.Event, error) {
		if pending != "" {
			// The previous attempt lost a race: its record was not appended.
			s.destroy(ctx, pending)
			pending = ""
		}
		st, err := readSubject(v.KV, subject)
		if err != nil {
			return nil, err
		}
		cur, found, err := readCipher(v.KV, name)
		if err != nil {
			return nil, err
		}
		superseded = ""
		if found {
			superseded = cur.KeyID
		}
		version = st.LastVersion + 1
		id := secretKeyIDPrefix(name) + "." + rand.Text()
		dk, err := s.keys.NewDataKey(ctx, id)
		if err != nil {
			return nil, err
		}
		pending = id
		return []schemas.Event{&schemas.SecretVersionPut{
			Name: name, Version: version, KeyID: id,
			Ciphertext:  dk.Seal(SecretPurpose(name, version), value),
			Fingerprint: fp, Size: len(value), Time: s.w.millis(), By: principal,
			WorkflowID: o.workflow, TaskID: o.task,
		}}, nil
	}, named("secret "+name, opts)...)
	if err != nil {
		if pending != "" && definitelyNotWritten(err) {
			s.destroy(ctx, pending)
		}
		return 0, err
	}
	if superseded != "" {
		s.destroy(ctx, superseded)
	}
	return version, nil
}

// WrittenByTask reports whether task taskID of workflow wfID wrote a
// version of secret name (ByTask), and which: one lookup in the read
// model's task index, not a read of every version (a secret rotated every
// minute has half a million a year). A version deleted since still
// counts: the task did write, and run again it must not create the
// secret anew. It reads the log when the read model lags it.
func (s *Store) WrittenByTask(ctx context.Context, name, wfID, taskID string) (version int, found bool, err error) {
	if err := CheckSecretName(name); err != nil {
		return 0, false, err
	}
	v, err := s.w.freshView(ctx, SecretSubject(name))
	if err != nil {
		return 0, false, err
	}
	version, found, err = readTaskWrite(v.KV, name, wfID, taskID)
	if err != nil {
		return 0, false, fmt.Errorf("secret %s: written by task %s: %w", name, taskID, err)
	}
	return version, found, nil
}

// definitelyNotWritten reports whether a failed write certainly appended
// nothing. Other failures (timeouts, a read model that lags) may have
// appended, so their data keys must stay. A conflict (fault.ErrStale
// among them: a write At a revision the log has passed) is a decision's
// refusal: the append is the last step of an attempt, and an attempt
// decided again follows one whose append the log refused.
func definitelyNotWritten(err error) bool {
	return errors.Is(err, fault.ErrInvalid) || errors.Is(err, fault.ErrNotFound) ||
		errors.Is(err, fault.ErrTooLarge) || errors.Is(err, fault.ErrForbidden) ||
		errors.Is(err, fault.ErrConflict)
}

// destroy destroys a data key as cleanup: a failure is logged, and the
// key is left to SweepKeys.
func (s *Store) destroy(ctx context.Context, id string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := s.keys.DestroyKey(ctx, id); err != nil {
		s.w.logger.Warn("could not destroy data key; the key sweep will", logkey.Secret, id, logkey.Err, err)
	}
}

// Resolve implements Source. It reads the read model and, when that does
// not know the secret, the log: another process may have stored it a
// moment ago. A version another process replaced is read from the log
// too, unless the secret's creator or tags changed meanwhile (see
// sameAccess): that fails with fault.ErrStale. It serves whatever is
// current, checked against nothing: a value served to a principal goes
// through ResolveAt.
func (s *Store) Resolve(ctx context.Context, name string) ([]byte, int, error) {
	return s.resolve(ctx, name, nil)
}

// ResolveAt implements Source. Access was checked on the read model (the
// authorizer reads a secret's creator and tags there) after rev was read:
// the value is read from the read model only while its state is still
// rev's, so that a secret created again, retagged or untagged between the
// check and the read is not served to a principal checked on the old
// one; the log fallbacks of Resolve hold on that state.
func (s *Store) ResolveAt(ctx context.Context, name string, rev Revision) ([]byte, int, error) {
	return s.resolve(ctx, name, &rev.Seq)
}

// resolve is Resolve, and with checked ResolveAt of the revision at that
// sequence.
func (s *Store) resolve(ctx context.Context, name string, checked *uint64) ([]byte, int, error) {
	if err := CheckSecretName(name); err != nil {
		return nil, 0, err
	}
	subject := SecretSubject(name)
	gen := s.generation()
	if e, ok := s.ciphers.get(name, gen); ok {
		// A cached entry is the read model's state now: a write to it
		// would have moved the generation. A subject whose sequence is
		// still the checked revision's has not changed since it was
		// read, so the check read this state too.
		if checked == nil || e.seq == *checked {
			if value, err := s.open(ctx, name, e.c); err == nil {
				return value, e.c.Version, nil
			}
		}
	}
	v, err := s.w.projectionView(subject)
	if err != nil {
		return nil, 0, err
	}
	c, found, err := readCipher(v.KV, name)
	if err != nil {
		return nil, 0, err
	}
	// The read model's state of the secret, as an access check read it.
	st, _, err := readSecret(v.KV, name)
	if err != nil {
		return nil, 0, err
	}
	// The reader is the live read model, not a snapshot: read between two
	// reads of the subject's sequence that agree, the cipher and state are
	// that sequence's. A checked revision was read before the check, so a
	// sequence that is still the revision's after these reads is also the
	// one the check read.
	after, err := readSubject(v.KV, subject)
	if err != nil {
		return nil, 0, err
	}
	if checked != nil && after.Seq != *checked {
		return nil, 0, fault.Stale("secret %s changed while access to it was checked: try again", name)
	}
	if found && after.Seq == v.Seq && s.generation() == gen {
		s.ciphers.put(name, cachedCipher{c: c, seq: v.Seq}, gen)
	}
	if !found {
		// Not in the read model when access was checked: the check saw
		// no creator and no tags, so only grants that hold whatever the
		// state (by name, by role) let it through, and the log's value
		// may be served.
		if v, c, err = s.currentCipher(ctx, name, s.w.freshView); err != nil {
			return nil, 0, err
		}
	}
	value, err := s.open(ctx, name, c)
	if errors.Is(err, ErrKeyDestroyed) && !v.FromLog {
		// Another process replaced or deleted the secret after this read
		// model's state: read the log.
		if v, c, err = s.currentCipher(ctx, name, s.w.logView); err != nil {
			return nil, 0, err
		}
		now, _, rerr := readSecret(v.KV, name)
		if rerr != nil {
			return nil, 0, rerr
		}
		if !sameAccess(st, now) {
			return nil, 0, fault.Stale("secret %s was changed by another server (created again or retagged) since this one's read model, which its access is checked on: try again", name)
		}
		value, err = s.open(ctx, name, c)
	}
	if err != nil {
		return nil, 0, err
	}
	return value, c.Version, nil
}

// currentCipher reads secret name's ciphertext from the view read gives,
// failing with fault.ErrNotFound when it has none.
func (s *Store) currentCipher(ctx context.Context, name string, read func(context.Context, string) (view, error)) (view, storedCipher, error) {
	v, err := read(ctx, SecretSubject(name))
	if err != nil {
		return view{}, storedCipher{}, err
	}
	c, found, err := readCipher(v.KV, name)
	if err == nil && !found {
		err = secretNotFound(name)
	}
	return v, c, err
}

// sameAccess reports whether two states of a secret grant the same
// access: a caller's access is checked on the read model (the
// authorizer reads a secret's creator and tags there, Owner and Tags),
// so a value read from the log instead is served only when the log's
// state has the creator and tags that check saw. Grants by name hold
// whatever the state.
func sameAccess(checked, now storedSecret) bool {
	return checked.CreatedBy == now.CreatedBy && tagsEqual(checked.Tags, now.Tags)
}

func (s *Store) open(ctx context.Context, name string, c storedCipher) ([]byte, error) {
	dk, err := s.keys.DataKey(ctx, c.KeyID)
	if err != nil {
		return nil, fmt.Errorf("secret %s version %d: %w", name, c.Version, err)
	}
	value, err := dk.Open(SecretPurpose(name, c.Version), c.Ciphertext)
	if err != nil {
		return nil, fmt.Errorf("secret %s version %d: %w", name, c.Version, err)
	}
	return value, nil
}

// Get returns the current value of secret name.
func (s *Store) Get(ctx context.Context, name string) (Value, error) {
	v, _, err := s.Resolve(ctx, name)
	return Value(v), err
}

// Served identifies the value a read returned without revealing it: its
// version and keyed fingerprint (Keyring.Fingerprint, as the version's
// metadata has it).
type Served struct {
	Version     int
	Fingerprint string
}

// Read is Get for GET /api/secrets/{key}, of the revision the caller's
// access was checked on (see ResolveAt): it also says which version it
// returned, for the read's audit record.
func (s *Store) Read(ctx context.Context, name string, rev Revision) (Value, Served, error) {
	v, version, err := s.ResolveAt(ctx, name, rev)
	if err != nil {
		return nil, Served{}, err
	}
	return Value(v), Served{Version: version, Fingerprint: s.keys.Fingerprint(v)}, nil
}

// Exists implements Source.
func (s *Store) Exists(ctx context.Context, name string) (bool, error) {
	if err := CheckSecretName(name); err != nil {
		return false, err
	}
	subject := SecretSubject(name)
	v, err := s.w.projectionView(subject)
	if err != nil {
		return false, err
	}
	_, found, err := readSecret(v.KV, name)
	if err != nil || found {
		return found, err
	}
	if v, err = s.w.freshView(ctx, subject); err != nil {
		return false, err
	}
	_, found, err = readSecret(v.KV, name)
	return found, err
}

// Metadata returns secret name's metadata with its versions.
func (s *Store) Metadata(ctx context.Context, name string) (*Meta, error) {
	if err := CheckSecretName(name); err != nil {
		return nil, err
	}
	st, found, err := readSecret(s.w.reader, name)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, secretNotFound(name)
	}
	m := newMeta(name, st)
	if m.Versions, err = readVersions(s.w.reader, name); err != nil {
		return nil, err
	}
	return &m, nil
}

// scanNames returns the names of the read model's keys under prefix,
// sorted, from the keys alone: nothing stored under them is decoded.
func scanNames(r kvReader, prefix string) ([]string, error) {
	var names []string
	err := r.Scan([]byte(prefix), func(k, _ []byte) bool {
		names = append(names, string(k[len(prefix):]))
		return true
	})
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	return names, nil
}

// TagsAt is the tags of secret name, as GET /api/secrets-v2 lists them
// and GET /api/secrets/{key}/tags answers them, for a caller whose access
// was checked on rev (see secretAt).
func (s *Store) TagsAt(_ context.Context, name string, rev Revision) ([]conductor.Tag, error) {
	st, err := s.secretAt(name, rev, nil)
	if err != nil {
		return nil, err
	}
	return toConductorTags(st.Tags), nil
}

// MetadataAt is Metadata for a caller whose access was checked on rev
// (see secretAt): GET /api/secrets/{key}/metadata.
func (s *Store) MetadataAt(_ context.Context, name string, rev Revision) (*Meta, error) {
	var versions []VersionInfo
	st, err := s.secretAt(name, rev, func(r kvReader) (err error) {
		versions, err = readVersions(r, name)
		return err
	})
	if err != nil {
		return nil, err
	}
	m := newMeta(name, st)
	m.Versions = versions
	return &m, nil
}

// secretAt reads secret name's state, and with more anything else of it,
// from the read model, for a caller whose access was checked on rev: only
// while the secret's state is still rev's, and fault.ErrStale otherwise
// (see Env.varAt), so that a secret created again or retagged by someone
// else while it was checked is not described to a caller allowed on the
// old one. A secret the read model does not hold is fault.ErrNotFound.
func (s *Store) secretAt(name string, rev Revision, more func(kvReader) error) (storedSecret, error) {
	if err := CheckSecretName(name); err != nil {
		return storedSecret{}, err
	}
	st, found, err := readSecret(s.w.reader, name)
	if err == nil && found && more != nil {
		err = more(s.w.reader)
	}
	if err != nil {
		return storedSecret{}, err
	}
	// The reader is the live read model: what was read before a sequence
	// that is still the revision's, read before the check, is its.
	after, err := readSubject(s.w.reader, SecretSubject(name))
	if err != nil {
		return storedSecret{}, err
	}
	if after.Seq != rev.Seq {
		return storedSecret{}, fault.Stale("secret %s changed while access to it was checked: try again", name)
	}
	if !found {
		return storedSecret{}, secretNotFound(name)
	}
	return st, nil
}

// Delete deletes secret name: a SecretDeleted event, then its data key is
// destroyed. An unknown name fails with fault.ErrNotFound.
func (s *Store) Delete(ctx context.Context, name, principal string, opts ...WriteOption) error {
	if err := CheckSecretName(name); err != nil {
		return err
	}
	subject := SecretSubject(name)
	var keyID string
	_, err := s.w.update(ctx, subject, principal, func(v view) ([]schemas.Event, error) {
		c, found, err := readCipher(v.KV, name)
		if err != nil {
			return nil, err
		}
		if !found {
			return nil, secretNotFound(name)
		}
		st, err := readSubject(v.KV, subject)
		if err != nil {
			return nil, err
		}
		keyID = c.KeyID
		return []schemas.Event{&schemas.SecretDeleted{Name: name, Version: st.LastVersion, Time: s.w.millis(), By: principal}}, nil
	}, named("secret "+name, opts)...)
	if err != nil {
		return err
	}
	s.destroy(ctx, keyID)
	return nil
}

// PutTags adds tags to secret name; a tag whose key the secret has
// replaces that tag's value.
func (s *Store) PutTags(ctx context.Context, name string, tags []conductor.Tag, principal string, opts ...WriteOption) error {
	return s.changeTags(ctx, name, tags, principal, false, upsertTags, opts)
}

// DeleteTags removes the tags matching one of tags by key and value.
func (s *Store) DeleteTags(ctx context.Context, name string, tags []conductor.Tag, principal string, opts ...WriteOption) error {
	return s.changeTags(ctx, name, tags, principal, true, removeTags, opts)
}

func (s *Store) changeTags(ctx context.Context, name string, tags []conductor.Tag, principal string,
	removal bool, op func(cur, given []schemas.SecretTag) []schemas.SecretTag, opts []WriteOption) error {
	if err := CheckSecretName(name); err != nil {
		return err
	}
	given, err := givenTags(tags, removal)
	if err != nil {
		return err
	}
	_, err = s.w.update(ctx, SecretSubject(name), principal, func(v view) ([]schemas.Event, error) {
		st, found, err := readSecret(v.KV, name)
		if err != nil {
			return nil, err
		}
		if !found {
			return nil, secretNotFound(name)
		}
		next := op(st.Tags, given)
		if err := taglimit.Fit("", "secret "+name, len(st.Tags), len(next)); err != nil {
			return nil, err
		}
		if tagsEqual(st.Tags, next) {
			return nil, nil
		}
		return []schemas.Event{&schemas.SecretTagsSet{Name: name, Tags: next, Time: s.w.millis(), By: principal}}, nil
	}, named("secret "+name, opts)...)
	return err
}

// Revision is secret name's revision, for a write checked against it
// (see At).
func (s *Store) Revision(_ context.Context, name string) (Revision, error) {
	if err := CheckSecretName(name); err != nil {
		return Revision{}, err
	}
	if e, ok := s.ciphers.get(name, s.generation()); ok {
		// The read model's state now (see resolve). A secret with a
		// ciphertext has a value: applyEvent writes and deletes the two
		// together.
		return Revision{Seq: e.seq, Exists: true}, nil
	}
	return s.w.revision(SecretSubject(name), func(r kvReader) (bool, error) {
		_, found, err := readSecret(r, name)
		return found, err
	})
}

// Access is the creator and tags of secret name, which access to it
// follows besides the grants on it, read together from its one record
// in the read model (never its ciphertext): read apart, a secret deleted
// and created again between the reads would lend one life's tags to the
// other's creator. A secret not found is fault.ErrNotFound.
func (s *Store) Access(_ context.Context, name string) (creator string, tags []conductor.Tag, err error) {
	return secretAccess(s.w.reader, name)
}

// ClearCache forgets the data keys held in memory.
func (s *Store) ClearCache() { s.keys.ClearCache() }

// SweepKeys destroys the secret data keys that no live secret version uses
// and that are older than grace: keys of attempts that lost a race or
// failed, and keys whose destruction after an update or delete failed.
// grace protects keys another process created for a put it has not
// appended yet. It returns how many keys it destroyed.
func (s *Store) SweepKeys(ctx context.Context, grace time.Duration) (int, error) {
	ids, err := s.keys.DataKeyIDs(ctx, "secret")
	if err != nil {
		return 0, fmt.Errorf("sweep data keys: %w", err)
	}
	cutoff := s.w.now().Add(-grace)
	n := 0
	for id, written := range ids {
		if written.After(cutoff) {
			continue
		}
		rest := strings.TrimPrefix(id, "secret.")
		name, _, ok := strings.Cut(rest, ".")
		if !ok {
			continue
		}
		v, err := s.w.freshView(ctx, SecretSubject(name))
		if err != nil {
			return n, err
		}
		c, found, err := readCipher(v.KV, name)
		if err != nil {
			return n, err
		}
		if found && c.KeyID == id {
			continue
		}
		if err := s.keys.DestroyKey(ctx, id); err != nil {
			return n, err
		}
		n++
	}
	if n > 0 {
		s.w.logger.Info("destroyed unused secret data keys", logkey.Count, n)
	}
	return n, nil
}

// RunSweeper runs SweepKeys now and then every interval until ctx is done.
// Failures are logged and retried at the next interval.
func (s *Store) RunSweeper(ctx context.Context, interval, grace time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if _, err := s.SweepKeys(ctx, grace); err != nil && ctx.Err() == nil {
			s.w.logger.Warn("data key sweep failed", logkey.Err, err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
