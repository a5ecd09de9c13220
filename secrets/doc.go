// Package secrets is flowvault's secret store: the key hierarchy, secrets
// as encrypted events with a metadata read model, environment values, and
// the authorizer interface their API and resolution go through.
//
// # Key hierarchy
//
//	master key   32 bytes: $FLOWVAULT_MASTER_KEY (base64), --master-key-file,
//	   │         or in dev mode <data>/master.key (generated, 0600, loud warning)
//	   │ seals (AES-256-GCM)
//	keyring      KEK terms 1..N (AES-256), one active; KV FV_KEYS "keyring"
//	   │ wraps (AES-256-GCM, term-tagged)
//	data keys    one per secret version, KV FV_KEYS "dek.secret.<name>.<v>";
//	             two per workflow (_secrets, _masked), KV FV_KEYS_WFnn "dek.wf.<id>.<s|m>"
//	   │ seals (AES-256-GCM)
//	values       in events on FV_SECRET: ciphertext + data key id, never plaintext
//
// A master key that does not open the stored keyring is refused with
// ErrWrongMasterKey before anything is written (the sealed keyring carries
// an 8-byte HMAC check value of the master key, so a wrong key is told
// apart from a damaged keyring).
//
// # Ciphertext formats
//
// Every ciphertext starts with a format byte; a reader refuses formats it
// does not know.
//
//	keyring (wraps data keys):  term u32 BE | 0x01 | nonce[12] | AES-256-GCM ct+tag
//	data key (seals values):    0x02 | nonce[12] | AES-256-GCM ct+tag
//	sealed keyring:             "FVKR" | 0x01 | check[8] | nonce[12] | AES-256-GCM(msgpack terms)
//
// Nonces are random; a data key seals one value, so no key ever meets a
// nonce-collision bound. The additional data is the ciphertext's purpose
// (Purpose: length-prefixed parts): SecretPurpose(name, version) for a
// secret value, ("data-key", id) for a wrapped data key. A ciphertext
// moved to another secret, version or key id does not open. Keyring.Seal
// and Open, and DataKey.Seal and Open, are the general API: later users
// (workflow _secrets fields) pick their own purpose, e.g.
// Purpose("workflow", id, fieldPath).
//
// # Storage
//
// The keyring and the wrapped data keys live in the JetStream KV bucket
// FV_KEYS (stream KV_FV_KEYS), outside the event log, so that a key can be
// destroyed for good (crypto-shredding): DestroyKey securely deletes every
// stored revision (the server overwrites the message on disk). The bucket
// keeps two revisions per key so that a superseded revision (after a
// rotation) is erased by us once its replacement is durable, instead of
// being dropped by the server without being overwritten. Every rewrite
// erases the revisions older than the one it read before it stores the
// next, so that a concurrent rewrite never leaves a third for the server
// to drop.
//
// Workflows' secrets keys are pooled (NewPooledKey): a page of 64 keys is
// one bucket entry, wrapped as a whole, and a key's id is
// "kp.<page>.<slot>". Creating a workflow's key costs nothing most of the
// time, and DestroyKeys erases a batch of them with one rewrite per page
// (the slots zeroed, the superseded revision securely deleted); a page
// with no key left is erased whole.
//
// Secrets are events on fv.secret.<name> (schemas/secret.go); environment
// values on fv.secret.env.<name>, in clear (they are not secrets; Orkes
// returns them to anyone who may list them). One projection (Projection,
// "secrets") folds both into Pebble: metadata (name, tags, version,
// created/updated by and at, fingerprint, a version list for audit), the
// current version's ciphertext and data key id, the version each workflow
// task wrote (kept after a delete, for an UPDATE_SECRET run again), and
// environment values.
// The read model never holds a secret value.
//
// # Versions and keys
//
// Every put is a new version under a fresh data key; once it is committed
// the previous version's key is destroyed, so an overwritten value cannot
// be decrypted again from the store, and delete destroys the last one. (A
// workflow that was handed the value keeps it sealed under its own key,
// for redaction, until its compaction: see guard.) Version numbers
// never go back, not even after a delete. A put destroys the keys of its
// attempts that lost a race, and of one refused (a stale revision, an
// invalid value), before it returns; keys whose destruction failed, and
// those of a put whose outcome is unknown (a timeout), are removed by
// SweepKeys.
//
// Rotation (Keys.Rotate, `flowvault keys rotate`) adds a KEK term, makes
// it active and re-wraps every data key under it; events are untouched
// because they reference data keys by id. Old terms stay and only
// decrypt. Processes sharing the bucket reload the keyring when it changes
// (WatchKeyring) or when they meet an unknown term.
//
// A rekey (Reseal, `flowvault keys rekey`) seals the keyring under a new
// master key and securely erases the form sealed under the old one; the
// terms, the data keys and the events stay. A process still holding the
// old key keeps the keyring it has in memory but can load no later one,
// and says so (WatchKeyring logs an error, reloads fail naming the cause).
//
// # Fingerprints
//
// Keyring.Fingerprint gives "hmac-sha256:<hex>" of a value under a key
// derived with HKDF-SHA256 from the keyring's first term: stable across
// rotations and processes, meaningless without the keyring. Metadata and
// audit records carry fingerprints, never values.
//
// # For secret resolution
//
// Resolution at task hand-off calls Source (*Store): Revision(ctx, name),
// then, once the Authorizer has allowed the workflow's principal to
// ActionRead Resource{ResourceSecret, name}, ResolveAt(ctx, name, rev)
// returns that revision's value (the caller wipes it) and its version,
// fault.ErrStale when the secret changed between the check and the read
// (check again), or an error wrapping fault.ErrNotFound that names the
// secret; Exists. Resolve(ctx, name) reads the current value, for what
// is served to no one (redaction). ${workflow.env.NAME} calls
// EnvSource (*Env) the same way: Revision(ctx, name), the check, then
// LookupAt(ctx, name, rev), fault.ErrStale when the value changed in
// between. Both read their read model and fall back to the log when a
// name is not there yet, so a value stored a moment ago by another
// process is found.
//
// # Hygiene
//
// Secret-bearing types (Value, MasterKey, Keyring, DataKey, Keys) print as
// "***" through fmt, encoding/json and slog. Raw key bytes are wiped after
// use where Go allows (the ciphers keep their own expanded keys); key check
// values and fingerprints are compared in constant time. Errors and log
// lines name secrets, versions and sizes, never values.
package secrets
