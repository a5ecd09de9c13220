package secrets

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/internal/logkey"
)

// KeyBucket is the JetStream key-value bucket that holds the sealed
// keyring and the wrapped data keys of secrets. Its stream is KV_FV_KEYS.
const KeyBucket = "FV_KEYS"

// workflowKeyShards is how many buckets hold the workflows' data keys
// (FV_KEYS_WF00…). Destroying a key securely rewrites the whole message
// block that holds it, under its stream's lock: spread over many small
// streams, compaction rewrites a fraction of the bytes per key and erases
// in parallel.
const workflowKeyShards = 16

// dataKeyBucket names the KV bucket that holds data key id: workflow keys
// ("wf.…") and pages of pooled keys ("kp.…") are spread over the workflow
// key shards by a hash of the id (of the page's id for a pooled key),
// every other key is in KeyBucket.
func dataKeyBucket(id string) string {
	if !inShards(id) {
		return KeyBucket
	}
	return fmt.Sprintf("%s_WF%02d", KeyBucket, shardOf(id))
}

// DataKeyEntry names the KV bucket and the key within it of the entry that
// holds data key id wrapped: its own, or its page's for a pooled key.
func DataKeyEntry(id string) (bucket, key string) {
	if page, _, err := pageOf(id); err == nil {
		id = page
	}
	return dataKeyBucket(id), dataKeyPrefix + id
}

// inShards reports whether data key id lives in a workflow key shard.
func inShards(id string) bool { return strings.HasPrefix(id, "wf.") || IsPooledKey(id) }

func shardOf(id string) int {
	if page, _, err := pageOf(id); err == nil {
		id = page
	}
	h := fnv.New32a()
	h.Write([]byte(id))
	return int(h.Sum32() % workflowKeyShards)
}

const (
	// keyringKey holds the keyring sealed under the master key.
	keyringKey = "keyring"
	// dataKeyPrefix prefixes the bucket key of every wrapped data key.
	dataKeyPrefix = "dek."
	// keyHistory is how many revisions of a bucket key the stream keeps.
	// Two, not one: a superseded revision (a data key re-wrapped by a
	// rotation, an older keyring) must still be addressable so that it can
	// be securely erased after its replacement is durable. With one, the
	// server drops it without overwriting its bytes on disk.
	keyHistory = 2
)

// KeysOptions configures OpenKeys.
type KeysOptions struct {
	Logger *slog.Logger
	// Replicas of the bucket's stream (default 1).
	Replicas int
	// DevKeyFile enables dev mode: with no master key configured, the key
	// is read from this file, or generated into it (mode 0600) when no
	// keyring exists yet. Empty: a master key is required.
	DevKeyFile string
	// Now is the clock (default time.Now).
	Now func() time.Time
	// RequireKeyring makes OpenKeys fail when the bucket holds no keyring
	// instead of creating one (offline tools on an existing data dir).
	RequireKeyring bool
	// Guard guards the buckets' writes as the event log guards its
	// appends (nil: unguarded). A bucket's store that failed a write (a
	// full disk) answers none of them: unguarded, each waits out its
	// timeout and fails saying only that it timed out.
	Guard WriteGuard
	// Forming makes the buckets again while a NATS cluster forms or
	// elects a meta leader (nil: once).
	Forming Forming
}

// Forming runs an attempt to make something on the log's server, and on
// a cluster again while the cluster forms (*eventlog.Log).
type Forming interface {
	WhileForming(ctx context.Context, what string, attempt func(context.Context) error, args ...any) error
}

// WriteGuard runs a write to a bucket's stream, refusing it at once, and
// saying why, while the stream's store is known to store nothing
// (*eventlog.Log).
type WriteGuard interface {
	GuardWrite(ctx context.Context, stream string, write func(context.Context) error) error
}

// Keys is flowvault's key hierarchy and the store of its wrapped keys:
//
//	master key (FLOWVAULT_MASTER_KEY, --master-key-file, or dev file)
//	  └─ seals the keyring: KEK terms (AES-256), one active
//	       └─ each term wraps data keys (AES-256-GCM, one per secret version)
//	            └─ each data key seals one value; events hold only that
//	               ciphertext and the data key's id
//
// The sealed keyring and the wrapped data keys live in the KV bucket
// FV_KEYS, whose entries can be erased for good (DestroyKey), never in the
// event log. Keys is safe for concurrent use; several processes may share
// one bucket.
type Keys struct {
	redacted
	main   bucket   // the keyring and the secrets' data keys
	wf     []bucket // the workflows' data keys, by shardOf
	mk     *MasterKey
	ring   atomic.Pointer[Keyring]
	cache  *keyCache
	pool   keyPool
	logger *slog.Logger
	now    func() time.Time
	guard  WriteGuard

	reloadMu sync.Mutex // serializes keyring reloads and rotations
}

// OpenKeys binds the key bucket (creating it if needed) and opens the
// keyring with the master key mk, creating the keyring on first use.
//
// With mk nil and o.DevKeyFile set, it runs in dev mode: it reads the dev
// key file, or generates one when the bucket holds no keyring yet, and
// logs a warning either way. A keyring sealed under another master key
// fails with ErrWrongMasterKey, and nothing is written: not the bucket
// entry, not the key file.
//
// OpenKeys owns mk from then on: the returned Keys keeps it, and a failed
// OpenKeys wipes it.
func OpenKeys(ctx context.Context, js jetstream.JetStream, mk *MasterKey, o KeysOptions) (_ *Keys, err error) {
	defer func() {
		if err != nil && mk != nil {
			mk.Wipe()
		}
	}()
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	k := &Keys{cache: newKeyCache(keyCacheSize), logger: o.Logger.With(logkey.Component, "secrets"), now: o.Now, guard: o.Guard}
	if err := k.bind(ctx, js, o); err != nil {
		return nil, err
	}
	stored, err := k.main.kv.Get(ctx, keyringKey)
	if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, fmt.Errorf("read keyring: %w", err)
	}
	if stored == nil && o.RequireKeyring {
		return nil, fmt.Errorf("KV bucket %s holds no keyring: no server has stored a secret key here yet", KeyBucket)
	}
	if mk == nil {
		if mk, err = k.devMasterKey(o.DevKeyFile, stored != nil); err != nil {
			return nil, err
		}
	}
	k.mk = mk
	if stored == nil {
		// Another engine that started at the same moment may store its
		// keyring first: this one's is refused, and the stored one read.
		if err := k.createKeyring(ctx); err != nil {
			return nil, wrongMasterKey(err)
		}
		return k, nil
	}
	ring, err := openKeyring(mk, stored.Value())
	if errors.Is(err, ErrWrongMasterKey) {
		return nil, wrongMasterKey(err)
	}
	if err != nil {
		return nil, err
	}
	k.ring.Store(ring)
	return k, nil
}

// wrongMasterKey says what an ErrWrongMasterKey means to whoever starts
// the server; other errors are returned as they are.
func wrongMasterKey(err error) error {
	if !errors.Is(err, ErrWrongMasterKey) {
		return err
	}
	return fmt.Errorf("the master key does not match the keyring stored in KV bucket %s (wrong $%s or --master-key-file, or one that `flowvault keys rekey` replaced?); refusing to use it, nothing was changed: %w",
		KeyBucket, MasterKeyEnv, ErrWrongMasterKey)
}

// mainBucketDescription describes KeyBucket's stream.
const mainBucketDescription = "flowvault keys: the keyring sealed under the master key, data keys wrapped by the keyring"

// bucket is one KV bucket of the key store and its stream.
type bucket struct {
	name   string
	kv     jetstream.KeyValue
	stream jetstream.Stream
}

// bucketFor returns the bucket that holds data key id.
func (k *Keys) bucketFor(id string) bucket {
	if inShards(id) {
		return k.wf[shardOf(id)]
	}
	return k.main
}

// buckets returns every bucket of the key store.
func (k *Keys) buckets() []bucket { return append([]bucket{k.main}, k.wf...) }

// bind creates or updates the buckets' streams and binds to them.
func (k *Keys) bind(ctx context.Context, js jetstream.JetStream, o KeysOptions) error {
	var err error
	if k.main, err = bindBucket(ctx, js, KeyBucket, o, mainBucketDescription); err != nil {
		return err
	}
	k.wf = make([]bucket, workflowKeyShards)
	for i := range k.wf {
		name := fmt.Sprintf("%s_WF%02d", KeyBucket, i)
		if k.wf[i], err = bindBucket(ctx, js, name, o, "flowvault keys: workflows' data keys wrapped by the keyring"); err != nil {
			return err
		}
	}
	return nil
}

// bindBucket creates or updates a bucket's stream and binds to it, again
// while the cluster forms when o says how. Within OpenKeys: a failed one
// wipes the master key, which a caller's retry would not have.
func bindBucket(ctx context.Context, js jetstream.JetStream, name string, o KeysOptions, description string) (b bucket, err error) {
	attempt := func(ctx context.Context) error {
		b, err = bindBucketOnce(ctx, js, name, o.Replicas, description)
		return err
	}
	if o.Forming == nil {
		return b, attempt(ctx)
	}
	err = o.Forming.WhileForming(ctx, "key bucket not made yet", attempt, logkey.Stream, "KV_"+name)
	return b, err
}

// bindBucketOnce creates or updates a bucket's stream and binds to it. The
// stream is a standard KV stream except that it allows deleting messages,
// which is how DestroyKey erases a key.
func bindBucketOnce(ctx context.Context, js jetstream.JetStream, name string, replicas int, description string) (bucket, error) {
	s, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:              "KV_" + name,
		Description:       description,
		Subjects:          []string{"$KV." + name + ".>"},
		MaxMsgsPerSubject: keyHistory,
		MaxBytes:          -1,
		MaxMsgs:           -1,
		MaxMsgSize:        -1,
		MaxConsumers:      -1,
		Storage:           jetstream.FileStorage,
		Replicas:          replicas,
		AllowRollup:       true,
		// Every replica answers a direct get, a follower before it has
		// applied the newest writes: on a cluster, a key another engine
		// just created would read as not found, that is destroyed. Reads
		// there go to the leader.
		AllowDirect: replicas == 1,
		Duplicates:  2 * time.Minute,
		Discard:     jetstream.DiscardNew,
	})
	if err != nil {
		return bucket{}, fmt.Errorf("key bucket %s: %w", name, err)
	}
	kv, err := js.KeyValue(ctx, name)
	if err != nil {
		return bucket{}, fmt.Errorf("key bucket %s: %w", name, err)
	}
	return bucket{name: name, kv: kv, stream: s}, nil
}

// create stores key in b, unless it exists, and returns its revision.
func (k *Keys) create(ctx context.Context, b bucket, key string, value []byte) (rev uint64, err error) {
	err = k.write(ctx, b, func(ctx context.Context) (err error) {
		rev, err = b.kv.Create(ctx, key, value)
		return err
	})
	return rev, err
}

// update stores a new revision of key in b, unless its latest is not
// last, and returns it.
func (k *Keys) update(ctx context.Context, b bucket, key string, value []byte, last uint64) (rev uint64, err error) {
	err = k.write(ctx, b, func(ctx context.Context) (err error) {
		rev, err = b.kv.Update(ctx, key, value, last)
		return err
	})
	return rev, err
}

// write runs a write to b through the guard. JetStream's refusal for want
// of storage is eventlog.ErrNoStorage either way: a retryable 503 at the
// API, where its bare insufficient resources was an internal error.
func (k *Keys) write(ctx context.Context, b bucket, write func(context.Context) error) error {
	if k.guard == nil {
		return eventlog.NoStorage(write(ctx))
	}
	return k.guard.GuardWrite(ctx, "KV_"+b.name, write)
}

// devMasterKey provides the master key in dev mode.
func (k *Keys) devMasterKey(path string, ringExists bool) (*MasterKey, error) {
	if path == "" {
		return nil, fmt.Errorf("%w: set $%s or --master-key-file", ErrNoMasterKey, MasterKeyEnv)
	}
	return DevMasterKey(path, ringExists, k.logger)
}

// createKeyring stores a new keyring, unless another process got there
// first, in which case it opens that one.
func (k *Keys) createKeyring(ctx context.Context) error {
	ring, err := newKeyring(k.now())
	if err != nil {
		return err
	}
	blob, err := sealKeyring(k.mk, ring)
	if err != nil {
		return err
	}
	if _, err := k.create(ctx, k.main, keyringKey, blob); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return k.reload(ctx)
		}
		return fmt.Errorf("store keyring: %w", err)
	}
	k.ring.Store(ring)
	k.logger.Info("created keyring", logkey.Version, ring.ActiveTerm())
	return nil
}

// reload reads the keyring from the bucket (another process rotated it).
func (k *Keys) reload(ctx context.Context) error {
	e, err := k.main.kv.Get(ctx, keyringKey)
	if err != nil {
		return fmt.Errorf("read keyring: %w", err)
	}
	ring, err := openKeyring(k.mk, e.Value())
	if err != nil {
		return errStaleMasterKey(err)
	}
	k.ring.Store(ring)
	return nil
}

// WatchKeyring reloads the keyring whenever another process stores a new
// one (a rotation through an external NATS cluster), until ctx is done, so
// that this process seals new data keys under the new term at once.
func (k *Keys) WatchKeyring(ctx context.Context) {
	w, err := k.main.kv.Watch(ctx, keyringKey, jetstream.UpdatesOnly())
	if err != nil {
		if ctx.Err() == nil {
			k.logger.Warn("cannot watch the keyring; rotations by other processes are picked up on first use", logkey.Err, err)
		}
		return
	}
	defer w.Stop()
	// A rotation between OpenKeys and the watch is in the bucket already.
	k.reloadMu.Lock()
	if err := k.reload(ctx); err != nil && ctx.Err() == nil {
		k.logger.Warn("cannot reload the keyring", logkey.Err, err)
	}
	k.reloadMu.Unlock()
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-w.Updates():
			if !ok {
				return
			}
			if e == nil || e.Operation() != jetstream.KeyValuePut {
				continue
			}
			k.reloadMu.Lock()
			if ring, err := openKeyring(k.mk, e.Value()); errors.Is(err, ErrWrongMasterKey) {
				// A rekey changes no KEK term: the keyring in memory still
				// wraps and unwraps what the store holds, so this process
				// goes on with it, writing nothing the new key cannot open,
				// but it can load no later keyring. Say so loudly.
				k.logger.Error("the keyring was sealed under a new master key (flowvault keys rekey): this server still holds the old one; "+
					"it keeps the keyring it has in memory but can load no later one (a rotation) and will refuse to start with the old key: restart it with the new master key",
					logkey.Err, err)
			} else if err != nil {
				k.logger.Warn("cannot open the keyring another process stored", logkey.Err, err)
			} else if ring.ActiveTerm() > k.Keyring().ActiveTerm() {
				k.ring.Store(ring)
				k.logger.Info("keyring reloaded", logkey.Version, ring.ActiveTerm())
			}
			k.reloadMu.Unlock()
		}
	}
}

// Keyring returns the current keyring.
func (k *Keys) Keyring() *Keyring { return k.ring.Load() }

// Fingerprint is Keyring().Fingerprint(value).
func (k *Keys) Fingerprint(value []byte) string { return k.Keyring().Fingerprint(value) }

// CheckKeyID reports whether id can name a data key: bucket key
// characters (letters, digits, '-', '_', '='), tokens separated by single
// dots, at most 512 bytes; a pooled key's, kp.<page>.<slot> with a slot
// of its page.
func CheckKeyID(id string) error {
	if id == "" || len(id) > 512 || strings.HasPrefix(id, ".") || strings.HasSuffix(id, ".") || strings.Contains(id, "..") {
		return fmt.Errorf("data key id %q: %w: want dot-separated tokens of [-_=a-zA-Z0-9], at most 512 bytes", id, ErrInvalidKeyID)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '=' || c == '.') {
			return fmt.Errorf("data key id %q: %w: character %q not allowed; want dot-separated tokens of [-_=a-zA-Z0-9]", id, ErrInvalidKeyID, c)
		}
	}
	if IsPooledKey(id) {
		_, _, err := pageOf(id)
		return err
	}
	return nil
}

// NewDataKey generates a data key, stores it wrapped under the active KEK
// term as id, and returns it. The key is durable when NewDataKey returns,
// so a ciphertext sealed with it may be appended to the log. An id that
// exists already is an error: data keys are never replaced.
func (k *Keys) NewDataKey(ctx context.Context, id string) (*DataKey, error) {
	if err := CheckKeyID(id); err != nil {
		return nil, err
	}
	if IsPooledKey(id) {
		return nil, fmt.Errorf("data key id %q: %q names pooled keys (NewPooledKey)", id, pagePrefix)
	}
	raw := newKey()
	defer wipe(raw)
	aead, err := newGCM(raw)
	if err != nil {
		return nil, err
	}
	wrapped := k.Keyring().Seal(dataKeyPurpose(id), raw)
	if _, err := k.create(ctx, k.bucketFor(id), dataKeyPrefix+id, wrapped); err != nil {
		return nil, fmt.Errorf("store data key %s: %w", id, err)
	}
	dk := &DataKey{id: id, aead: aead, refused: k.cache}
	k.cache.put(id, dk) // a new id: never destroyed
	return dk, nil
}

// DataKey returns data key id, unwrapped. A destroyed (or never created)
// key fails with ErrKeyDestroyed. A key wrapped under a term this process
// does not know yet makes it reload the keyring once.
func (k *Keys) DataKey(ctx context.Context, id string) (*DataKey, error) {
	if dk := k.cache.get(id); dk != nil {
		return dk, nil
	}
	if err := CheckKeyID(id); err != nil {
		return nil, err
	}
	if IsPooledKey(id) {
		return k.pooledKey(ctx, id)
	}
	raw, _, err := k.unwrapStored(ctx, id)
	if err != nil {
		return nil, err
	}
	defer wipe(raw)
	return k.cached(id, raw)
}

// cached builds data key id from its raw bytes (which the caller still
// owns and wipes) and keeps it in the cache.
func (k *Keys) cached(id string, raw []byte) (*DataKey, error) {
	aead, err := newGCM(raw)
	if err != nil {
		return nil, fmt.Errorf("data key %s: %w", id, err)
	}
	dk := &DataKey{id: id, aead: aead, refused: k.cache}
	if !k.cache.put(id, dk) {
		return nil, fmt.Errorf("%s: %w", id, ErrKeyDestroyed)
	}
	return dk, nil
}

// unwrapStored reads the bucket entry of data key (or key page) id and
// unwraps it. The caller wipes the bytes.
func (k *Keys) unwrapStored(ctx context.Context, id string) ([]byte, jetstream.KeyValueEntry, error) {
	e, err := k.bucketFor(id).kv.Get(ctx, dataKeyPrefix+id)
	if errors.Is(err, jetstream.ErrKeyNotFound) && strings.HasPrefix(id, "wf.") {
		// A workflow key stored before the workflow key shards existed.
		e, err = k.main.kv.Get(ctx, dataKeyPrefix+id)
	}
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil, fmt.Errorf("%s: %w", id, ErrKeyDestroyed)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("read data key %s: %w", id, err)
	}
	raw, err := k.unwrap(ctx, id, e.Value())
	return raw, e, err
}

// unwrap opens the wrapped form of data key (or key page) id, reloading
// the keyring once for a term this process does not know yet.
func (k *Keys) unwrap(ctx context.Context, id string, wrapped []byte) ([]byte, error) {
	raw, err := k.Keyring().Open(dataKeyPurpose(id), wrapped)
	if errors.Is(err, errUnknownTerm) {
		if rerr := k.reloadIfUnknown(ctx, wrapped); rerr != nil {
			// Named as a key that does not open is: a caller that goes
			// on past it (PooledKeyIDs) says which one it could not read.
			return nil, fmt.Errorf("unwrap data key %s: %w", id, rerr)
		}
		raw, err = k.Keyring().Open(dataKeyPurpose(id), wrapped)
	}
	switch {
	case errors.Is(err, ErrDecrypt) && !errors.Is(err, errUnknownTerm):
		// A term unknown to the keyring read again a moment ago is not:
		// a rotation may not be visible here yet.
		return nil, fmt.Errorf("unwrap data key %s: %w: %w", id, ErrKeyDamaged, err)
	case err != nil:
		return nil, fmt.Errorf("unwrap data key %s: %w", id, err)
	}
	return raw, nil
}

func (k *Keys) reloadIfUnknown(ctx context.Context, ct []byte) error {
	k.reloadMu.Lock()
	defer k.reloadMu.Unlock()
	if term, ok := ciphertextTerm(ct); ok && k.Keyring().terms[term] != nil {
		return nil // another goroutine reloaded
	}
	return k.reload(ctx)
}

// DestroyKey erases data key id for good: every stored revision of it is
// securely deleted (overwritten on disk), so whatever it sealed can never
// be decrypted again, even with the master key. Destroying a key that does
// not exist is not an error.
func (k *Keys) DestroyKey(ctx context.Context, id string) error {
	if err := CheckKeyID(id); err != nil {
		return err
	}
	if IsPooledKey(id) {
		_, err := k.DestroyKeys(ctx, []string{id})
		return err
	}
	k.cache.destroy(id)
	erased, err := k.erase(ctx, k.bucketFor(id), dataKeyPrefix+id, 0)
	if err == nil && erased == 0 && k.bucketFor(id).name != k.main.name {
		// A workflow key stored before the workflow key shards existed
		// lives in the main bucket, and must not survive its destruction
		// there. A key is in one bucket only: one found in its shard is
		// not in the main bucket.
		_, err = k.erase(ctx, k.main, dataKeyPrefix+id, 0)
	}
	if err != nil {
		return fmt.Errorf("destroy data key %s: %w", id, err)
	}
	return nil
}

// DataKeyIDs lists the ids of the stored data keys whose ids start with
// prefix followed by a dot (prefix "secret.db" lists "secret.db.*"; an
// empty prefix lists all), with the time each was last written. A bucket
// it cannot list keeps only its own keys from the caller: it lists every
// other bucket, and fails naming those it could not.
func (k *Keys) DataKeyIDs(ctx context.Context, prefix string) (map[string]time.Time, error) {
	filter := dataKeyPrefix + ">"
	if prefix != "" {
		filter = dataKeyPrefix + prefix + ".>"
	}
	out := map[string]time.Time{}
	err := k.eachEntry(ctx, filter, func(_ bucket, e entry) error {
		out[strings.TrimPrefix(e.Key(), dataKeyPrefix)] = e.Created()
		return nil
	})
	return out, err
}

// eachEntry calls fn with the latest entry of every key matching filter,
// in every bucket, and the bucket holding it. A bucket whose listing
// fails (its stream gone, a read that errs) is left where it failed and
// the others are listed all the same: one shard that does not answer must
// not hide the keys of the shards behind it from a sweep or a rotation.
// It returns one error per such bucket, naming it. An error of fn stops
// it, as does ctx ending, where every bucket left would fail alike.
func (k *Keys) eachEntry(ctx context.Context, filter string, fn func(bucket, entry) error) error {
	var unlisted []error
	for _, b := range k.buckets() {
		var stop error
		err := b.eachEntry(ctx, filter, func(e entry) error {
			stop = fn(b, e)
			return stop
		})
		if err == nil {
			continue
		}
		unlisted = append(unlisted, fmt.Errorf("key bucket %s: %w", b.name, err))
		if stop != nil || ctx.Err() != nil {
			break
		}
	}
	return errors.Join(unlisted...)
}

// entry is the latest revision of a bucket key.
type entry struct {
	key      string
	value    []byte
	revision uint64
	created  time.Time
}

func (e entry) Key() string        { return e.key }
func (e entry) Value() []byte      { return e.value }
func (e entry) Revision() uint64   { return e.revision }
func (e entry) Created() time.Time { return e.created }

// eachEntry calls fn with the latest entry of every key matching filter.
// It lists the stream's subjects and reads each one's last message: a KV
// watch would wait for every message counted when it started, and hang
// when a concurrent erasure removes one of them first.
func (b bucket) eachEntry(ctx context.Context, filter string, fn func(entry) error) error {
	prefix := "$KV." + b.name + "."
	info, err := b.stream.Info(ctx, jetstream.WithSubjectFilter(prefix+filter))
	if err != nil {
		return err
	}
	subjects := slices.Sorted(maps.Keys(info.State.Subjects))
	for _, subj := range subjects {
		m, err := b.stream.GetLastMsgForSubject(ctx, subj)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue // erased meanwhile
		}
		if err != nil {
			return err
		}
		if m.Header.Get("KV-Operation") != "" {
			continue // a delete or purge marker
		}
		if err := fn(entry{key: strings.TrimPrefix(subj, prefix), value: m.Data, revision: m.Sequence, created: m.Time}); err != nil {
			return err
		}
	}
	return nil
}

// EraseSuperseded securely erases, in every bucket, each data key's (and
// key page's) revisions older than its latest, and returns how many it
// erased. Rewrites erase what they replace once the replacement is
// durable; a crash between the two leaves the replaced revision, which no
// read returns but the store's files keep: a page's revision holding keys
// destroyed by a compaction, which no later listing names since the live
// revision has them zeroed. None is needed: the latest revision holds
// every key still alive. Run at start-up, it finishes such erasures. A
// bucket where it fails is left there, as eachEntry leaves one, and the
// others are erased all the same: it fails naming each such bucket.
func (k *Keys) EraseSuperseded(ctx context.Context) (int, error) {
	erased := 0
	var errs []error
	for _, b := range k.buckets() {
		n, err := k.eraseSuperseded(ctx, b)
		erased += n
		if err == nil {
			continue
		}
		errs = append(errs, fmt.Errorf("key bucket %s: %w", b.name, err))
		if ctx.Err() != nil {
			break
		}
	}
	return erased, errors.Join(errs...)
}

// eraseSuperseded is EraseSuperseded in bucket b.
func (k *Keys) eraseSuperseded(ctx context.Context, b bucket) (int, error) {
	prefix := "$KV." + b.name + "."
	info, err := b.stream.Info(ctx, jetstream.WithSubjectFilter(prefix+dataKeyPrefix+">"))
	if err != nil {
		return 0, err
	}
	erased := 0
	for subj, revisions := range info.State.Subjects {
		if revisions < 2 {
			continue
		}
		m, err := b.stream.GetLastMsgForSubject(ctx, subj)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue // erased meanwhile
		}
		if err != nil {
			return erased, err
		}
		n, err := k.erase(ctx, b, strings.TrimPrefix(subj, prefix), m.Sequence)
		erased += n
		if err != nil {
			return erased, fmt.Errorf("erase superseded revisions of %s: %w", strings.TrimPrefix(subj, prefix+dataKeyPrefix), err)
		}
	}
	return erased, nil
}

// erase securely deletes the revisions of key in b older than keep (keep
// 0: all of them) and returns how many it deleted. Secure deletion
// overwrites the message on disk.
func (k *Keys) erase(ctx context.Context, b bucket, key string, keep uint64) (int, error) {
	subject := "$KV." + b.name + "." + key
	erased := 0
	if keep == 0 {
		// Newest first: the subject index finds each at once, where a
		// search from the stream's start reads every block.
		for {
			m, err := b.stream.GetLastMsgForSubject(ctx, subject)
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				return erased, nil
			}
			if err != nil {
				return erased, err
			}
			if err := b.stream.SecureDeleteMsg(ctx, m.Sequence); err != nil && !eventlog.DeletedAlready(err) {
				return erased, err
			}
			erased++
		}
	}
	for seq := uint64(1); ; {
		m, err := b.stream.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subject))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return erased, nil
		}
		if err != nil {
			return erased, err
		}
		if keep != 0 && m.Sequence >= keep {
			return erased, nil
		}
		if err := b.stream.SecureDeleteMsg(ctx, m.Sequence); err != nil && !eventlog.DeletedAlready(err) {
			return erased, err
		}
		erased++
		seq = m.Sequence + 1
	}
}

// RotateResult reports a rotation.
type RotateResult struct {
	// Term is the new active KEK term, Previous the one before.
	Term, Previous uint32
	// Rewrapped counts the data keys re-wrapped under Term.
	Rewrapped int
}

// Rotate adds a new KEK term, makes it the active one, and re-wraps every
// stored data key under it; the event log is not touched, since events
// reference data keys by id. Old terms stay in the keyring and only
// decrypt. Superseded revisions (the old keyring, the old wrapped keys)
// are securely erased once their replacements are stored.
//
// A rotation interrupted half-way leaves every key readable; running it
// again adds another term and finishes the re-wrap. A bucket it cannot
// list does not stop it: it re-wraps the keys of every other bucket and
// fails naming that one, whose keys stay under their old term until a
// rotation that lists it. Processes sharing the
// bucket pick up the new keyring when they meet a key wrapped under the
// new term.
func (k *Keys) Rotate(ctx context.Context) (RotateResult, error) {
	k.reloadMu.Lock()
	defer k.reloadMu.Unlock()
	e, err := k.main.kv.Get(ctx, keyringKey)
	if err != nil {
		return RotateResult{}, fmt.Errorf("read keyring: %w", err)
	}
	cur, err := openKeyring(k.mk, e.Value())
	if err != nil {
		return RotateResult{}, err
	}
	next, err := cur.rotated(k.now())
	if err != nil {
		return RotateResult{}, err
	}
	blob, err := sealKeyring(k.mk, next)
	if err != nil {
		return RotateResult{}, err
	}
	// A keyring an interrupted rotation left behind the current one is
	// erased first: the update would make it a third revision, which the
	// server drops without overwriting it, and a later rekey would leave
	// it on disk sealed under the master key it replaces.
	if _, err := k.erase(ctx, k.main, keyringKey, e.Revision()); err != nil {
		return RotateResult{}, fmt.Errorf("erase superseded keyring: %w", err)
	}
	rev, err := k.update(ctx, k.main, keyringKey, blob, e.Revision())
	if err != nil {
		return RotateResult{}, fmt.Errorf("store rotated keyring (a concurrent rotation?): %w", err)
	}
	k.ring.Store(next)
	res := RotateResult{Term: next.ActiveTerm(), Previous: cur.ActiveTerm()}
	if _, err := k.erase(ctx, k.main, keyringKey, rev); err != nil {
		return res, fmt.Errorf("erase superseded keyring: %w", err)
	}
	k.logger.Info("keyring rotated", logkey.Version, res.Term)
	err = k.eachEntry(ctx, dataKeyPrefix+">", func(b bucket, e entry) error {
		if term, ok := ciphertextTerm(e.Value()); ok && term == next.ActiveTerm() {
			return nil
		}
		id := strings.TrimPrefix(e.Key(), dataKeyPrefix)
		raw, err := next.Open(dataKeyPurpose(id), e.Value())
		if err != nil {
			return fmt.Errorf("unwrap data key %s: %w", id, err)
		}
		wrapped := next.Seal(dataKeyPurpose(id), raw)
		wipe(raw)
		// Erased before the update, so that there is never a third
		// revision for the server to drop without overwriting it (a page
		// rewritten by a concurrent compaction).
		if _, err := k.erase(ctx, b, e.Key(), e.Revision()); err != nil {
			return fmt.Errorf("erase superseded data key %s: %w", id, err)
		}
		rev, err := k.update(ctx, b, e.Key(), wrapped, e.Revision())
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
			return nil // destroyed or rewritten meanwhile
		}
		if err != nil {
			return fmt.Errorf("re-wrap data key %s: %w", id, err)
		}
		if _, err := k.erase(ctx, b, e.Key(), rev); err != nil {
			return fmt.Errorf("erase superseded data key %s: %w", id, err)
		}
		res.Rewrapped++
		return nil
	})
	if err != nil {
		return res, err
	}
	k.logger.Info("data keys re-wrapped", logkey.Version, res.Term, logkey.Count, res.Rewrapped)
	return res, nil
}

// KeyStatus describes the key store, never a key.
type KeyStatus struct {
	Terms []TermInfo
	// DataKeys counts the stored data keys by the term they are wrapped
	// under.
	DataKeys map[uint32]int
}

// Status reports the keyring's terms and how many data keys each wraps.
// A bucket it cannot list fails it, naming the bucket, with the keys of
// the others counted.
func (k *Keys) Status(ctx context.Context) (KeyStatus, error) {
	if err := k.reload(ctx); err != nil {
		return KeyStatus{}, err
	}
	st := KeyStatus{Terms: k.Keyring().Terms(), DataKeys: map[uint32]int{}}
	err := k.eachEntry(ctx, dataKeyPrefix+">", func(_ bucket, e entry) error {
		term, _ := ciphertextTerm(e.Value())
		st.DataKeys[term]++
		return nil
	})
	return st, err
}

// Destroyed refuses data key id from now on, and every copy of it this
// process handed out: another process destroyed it (a compaction another
// engine made), which erased it from the bucket but not from this
// process's cache, where it went on opening what was sealed under it.
func (k *Keys) Destroyed(id string) { k.cache.destroy(id) }

// ClearCache forgets the unwrapped data keys this process holds in memory;
// they are unwrapped again from the bucket on next use.
func (k *Keys) ClearCache() { k.cache.clear() }

// keyCacheSize bounds the unwrapped data keys kept in memory.
const keyCacheSize = 4096

// keyCache keeps unwrapped data keys (their ciphers only) so that reading
// a secret does not cost a bucket read and an unwrap every time.
type keyCache struct {
	mu  sync.Mutex
	max int
	m   map[string]*DataKey
	// destroyed remembers the keys destroyed lately, so that a load that
	// read one before its destruction cannot put it back afterwards (the
	// key would then open what compaction destroyed for as long as it
	// stayed cached), and a copy handed out before opens nothing, though
	// the cache let it go since. A load takes milliseconds, a holder keeps
	// its copy for a decision; the last destroyedMax destructions are
	// remembered, the oldest forgotten first. Written under mu, read
	// without it by every Open.
	destroyed sync.Map
	order     []string
	next      int
}

// destroyedMax bounds the tombstones: at a few thousand destructions a
// second, a load would have to take tens of seconds to outlive its own.
const destroyedMax = 1 << 16

func newKeyCache(max int) *keyCache {
	return &keyCache{max: max, m: map[string]*DataKey{}}
}

func (c *keyCache) get(id string) *DataKey {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[id]
}

// put keeps dk unless its key was destroyed meanwhile, and says whether
// it did.
func (c *keyCache) put(id string, dk *DataKey) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.isDestroyed(id) {
		return false
	}
	if _, ok := c.m[id]; !ok && len(c.m) >= c.max {
		for victim := range c.m {
			delete(c.m, victim)
			break
		}
	}
	c.m[id] = dk
	return true
}

// destroy drops key id and refuses it from now on, every copy handed
// out too. It is called before the key's stored form is erased.
func (c *keyCache) destroy(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, id)
	if c.isDestroyed(id) {
		return
	}
	if len(c.order) < destroyedMax {
		c.order = append(c.order, id)
	} else {
		c.destroyed.Delete(c.order[c.next])
		c.order[c.next] = id
		c.next = (c.next + 1) % destroyedMax
	}
	c.destroyed.Store(id, struct{}{})
}

// isDestroyed reports whether key id was destroyed lately.
func (c *keyCache) isDestroyed(id string) bool {
	_, gone := c.destroyed.Load(id)
	return gone
}

func (c *keyCache) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.m)
}
