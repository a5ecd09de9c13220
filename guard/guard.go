// Package guard keeps secrets out of everything flowvault stores and shows,
// while tasks still get them:
//
//   - at hand-off (Prepare) it resolves ${workflow.secrets.X} and
//     ${workflow.env.X} references, as the workflow's creator, into the copy
//     of a task's input that goes to its taker, and opens sealed values;
//   - before every append (Protect) it seals data under _secrets and
//     _masked (and a definition's maskedFields) with the workflow's own data
//     keys, and redacts the values it resolved, in every encoding, from what
//     the workflow writes;
//   - once a workflow has ended (Compactor) it destroys the workflow's
//     secrets key, so that nothing sealed with it can be recovered, from the
//     log, the read models or a backup, even with the master key.
//
// The engine never sees a secret value: references stay literal in stored
// task inputs, sealed values are opaque to it.
package guard

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"sync"

	"github.com/flowvault/flowvault/auth"
	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/masking"
	"github.com/flowvault/flowvault/secrets"
)

// Keys are the data keys guard seals with.
type Keys interface {
	NewDataKey(ctx context.Context, id string) (*secrets.DataKey, error)
	NewPooledKey(ctx context.Context) (*secrets.DataKey, error)
	DataKey(ctx context.Context, id string) (*secrets.DataKey, error)
}

// Authorizer decides what the principal a workflow runs as may do; it
// knows the principal by id (the workflow's createdBy) and says how the
// access was granted, for the record of the resolution. A refusal wraps
// fault.ErrForbidden.
type Authorizer interface {
	Authorize(ctx context.Context, principalID string, access auth.Access, t auth.Target) (grantedBy string, err error)
}

// Config wires a Guard.
type Config struct {
	Secrets secrets.Source
	Env     secrets.EnvSource
	Authz   Authorizer
	Keys    Keys
	Logger  *slog.Logger
}

// Guard implements executor.HandOff and executor.Protector.
type Guard struct {
	cfg   Config
	mu    sync.Mutex
	memos map[string]*memo // workflow id → what redaction looks for
}

// New returns a guard.
func New(cfg Config) *Guard {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Guard{cfg: cfg, memos: map[string]*memo{}}
}

// memo is what redaction looks for in one workflow's writes: the values
// resolved for it and the plaintext of what it sealed. It lives in memory
// only, and is rebuilt from the state after a restart.
type memo struct {
	mu     sync.Mutex
	values [][]byte
	// kinds is the kind each text value the workflow sealed went under
	// (KindSecrets over KindMasked): a task scheduled later that copies
	// one as plain data gets the copy sealed under the same kind
	// (protection.sealCopies).
	kinds map[string]byte
	// resolved are the secret values resolved for the workflow, by name
	// and version, until the decision's record seals them (see
	// schemas.ResolvedRef.Sealed).
	resolved map[secretVersion][]byte
	// def is the workflow's definition JSON, names the secret names its
	// UPDATE_SECRET tasks wrote: text that is not secret from anyone who
	// reads the definition or the audit trail. A value found in either is
	// not looked for: redacting it would rewrite the definition's own text
	// in what the workflow stores (a script, a query, a reference to the
	// secret by name, a header's "Bearer"), and change what it computes.
	def   []byte
	names [][]byte
	// kept are the values of values[:scanned] that redaction looks for.
	kept    [][]byte
	scanned int
	// redactor looks for kept[:covered]; get extends it when more came
	// (masking.Redactor.SharedWith).
	redactor *masking.Redactor
	covered  int
	// held are the shared redactors get was handed, for drop to give
	// back: the first and the latest (the ones between are given back as
	// it grows). Kept while the workflow runs, they are shared with the
	// workflows that resolve the same values; given back, the cache lets
	// go of them with the last such workflow.
	held []*masking.Redactor
	// gone: the memo left the table (letGo) while a decision may still
	// use it. The redactors get builds for that decision are not held:
	// nothing would give them back, and the cache would keep the values'
	// forms.
	gone  bool
	built bool // rebuilt from state at least once
	// seq is the log sequence of the last record of the workflow whose
	// values the memo holds: the state it was rebuilt from, or a record
	// of a decision it protected (Recorded). A state past it holds
	// records another engine decided (a result it recorded, a take it
	// resolved secrets for), which the memo has not seen: it is rebuilt
	// from that state again.
	seq uint64
	// pending is a pooled key taken in epoch pendingEpoch of the workflow
	// (see engine.Workflow.Epoch), perhaps not recorded.
	pending      string
	pendingEpoch int
}

// pendingKey returns the key taken in epoch, if any. A key taken in an
// earlier epoch may have been recorded, then compacted and destroyed:
// this process may still hold it in memory, but it must not seal again.
func (m *memo) pendingKey(epoch int) string {
	if m == nil {
		return ""
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.pendingEpoch != epoch {
		return ""
	}
	return m.pending
}

func (m *memo) setPendingKey(id string, epoch int) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pending, m.pendingEpoch = id, epoch
}

// add remembers v and its parts (masking.Parts: the user and the password
// of a user:password, a query's parameters), each as addSpellings does,
// for redaction to look for: a part the definition spells is public on
// its own.
func (m *memo) add(v []byte) {
	m.addSpellings(v)
	for _, p := range masking.Parts(v) {
		m.addSpellings(p)
	}
}

// addSpellings remembers v for redaction to look for, and v without the
// whitespace around it when it has some: a value stored with its file's
// newline or a pasted space reaches text without it (Go's net/http sends
// an HTTP task's header value trimmed, and a server echoes it so; a
// worker strips it before it uses or logs it), where a search for v finds
// nothing. A v holding %XX escapes is remembered decoded too, with every
// form of its own: in an HTTP task's uri before the '@', Go decodes it
// and sends it base64-encoded in the Basic Authorization header, which
// redaction's forms of v (the decoded text alone) do not find. Each is
// public or not on its own: a definition may spell the trimmed or the
// decoded value.
func (m *memo) addSpellings(v []byte) {
	m.addValue(v)
	if t := bytes.TrimSpace(v); len(t) < len(v) {
		m.addValue(t)
	}
	if bytes.IndexByte(v, '%') >= 0 {
		// As url.Parse decodes a userinfo: one invalid escape and Go
		// refuses the uri, and sends nothing.
		if d, err := url.PathUnescape(string(v)); err == nil && len(d) < len(v) {
			m.addValue([]byte(d))
		}
	}
}

func (m *memo) addValue(v []byte) {
	if len(v) < masking.MinLength {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, have := range m.values {
		if string(have) == string(v) {
			return
		}
	}
	m.values = append(m.values, append([]byte(nil), v...))
}

// addKind remembers that the workflow sealed text v under kind.
func (m *memo) addKind(v string, kind byte) {
	if len(v) < masking.MinLength {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.kinds == nil {
		m.kinds = map[string]byte{}
	}
	if have, ok := m.kinds[v]; !ok || have != masking.KindSecrets {
		m.kinds[v] = kind
	}
}

// copyKind reports whether text holds a value the workflow sealed, and
// the kind to seal it under: KindSecrets if any of them went under it. A
// value the definition holds is public, as for redaction.
func (m *memo) copyKind(text string) (kind byte, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for v, k := range m.kinds {
		if kind != masking.KindSecrets && strings.Contains(text, v) && !m.public([]byte(v)) {
			kind, ok = k, true
		}
	}
	return kind, ok
}

// sealsAny reports whether the memo knows a value the workflow sealed.
func (m *memo) sealsAny() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.kinds) > 0
}

type secretVersion struct {
	name    string
	version int
}

// addResolved remembers v as the value of secret name's version.
func (m *memo) addResolved(name string, version int, v []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.resolved == nil {
		m.resolved = map[secretVersion][]byte{}
	}
	m.resolved[secretVersion{name, version}] = bytes.Clone(v)
}

// resolvedValue returns the value resolved for secret name's version, if
// this memo saw its resolution.
func (m *memo) resolvedValue(name string, version int) []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.resolved[secretVersion{name, version}]
}

// addSecret adds a secret's value and, when it is JSON, every string and
// number in it: a task may take one field (${workflow.secrets.db.password},
// ${workflow.secrets.acct.pin}), and a memo rebuilt after a restart, or on
// another engine than the hand-off's, must look for that field without
// knowing which one was taken. Numbers are decoded as written, so that
// their forms include the secret's own text (918273645501.0).
func (m *memo) addSecret(v []byte) {
	m.add(v)
	if !mayBeJSON(v) || !json.Valid(v) {
		return
	}
	var doc any
	d := json.NewDecoder(bytes.NewReader(v))
	d.UseNumber()
	if d.Decode(&doc) != nil {
		return
	}
	if _, text := doc.(string); !text {
		eachText(doc, func(s string) { m.add([]byte(s)) }, true)
	}
}

func (m *memo) get() *masking.Redactor {
	m.mu.Lock()
	defer m.mu.Unlock()
	for ; m.scanned < len(m.values); m.scanned++ {
		if v := m.values[m.scanned]; !m.public(v) {
			m.kept = append(m.kept, v)
		}
	}
	if m.redactor == nil || m.covered < len(m.kept) {
		m.redactor, m.covered = m.redactor.SharedWith(m.kept, m.covered), len(m.kept)
		if m.gone {
			// Given back at once: it stays usable.
			m.redactor.Release()
			return m.redactor
		}
		m.held = append(m.held, m.redactor)
		if n := len(m.held); n > 2 {
			// The first (most often the secrets the workflow resolved,
			// which its definition's other runs resolve too) is what
			// other workflows share, and the latest is in use; the ones
			// between, each a little larger, would pile up for the
			// workflow's life: a loop sealing a new token each iteration
			// would hold one redactor an iteration.
			m.held[n-2].Release()
			m.held = append(m.held[:n-2], m.redactor)
		}
	}
	return m.redactor
}

// release gives back the shared redactors the memo holds.
func (m *memo) release() {
	for _, r := range m.held {
		r.Release()
	}
	m.held = nil
}

// drop lets go of the memo's plaintext when its workflow has ended: the
// shared redactors it holds, and the bytes of the values it copied,
// zeroed (the redactors' forms are strings, which Go cannot zero: they
// go with the last reference to them). A memo dropped so is not used
// again: a decision on its workflow rebuilds another.
func (m *memo) drop() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.release()
	for _, v := range m.values {
		clear(v)
	}
	for _, v := range m.resolved {
		clear(v)
	}
	m.values, m.resolved, m.kinds, m.kept, m.scanned, m.redactor, m.covered = nil, nil, nil, nil, 0, nil, 0
}

// public reports whether v is text of the definition, as written or
// JSON-escaped, or a secret's name.
func (m *memo) public(v []byte) bool {
	if slices.ContainsFunc(m.names, func(n []byte) bool { return bytes.Equal(n, v) }) || bytes.Contains(m.def, v) {
		return true
	}
	if !needsJSONEscape(v) {
		return false // its escaped form is v
	}
	escaped, _ := json.Marshal(string(v))
	escaped = escaped[1 : len(escaped)-1]
	return !bytes.Equal(escaped, v) && bytes.Contains(m.def, escaped)
}

// mayBeJSON reports whether v starts as a JSON value may: most secrets are
// text that cannot, and json.Valid builds an error to say so.
func mayBeJSON(v []byte) bool {
	v = bytes.TrimLeft(v, " \t\n\r")
	return len(v) > 0 && strings.IndexByte(`{["-0123456789tfn`, v[0]) >= 0
}

// useDefinition tells the memo the workflow's definition (a restart or
// an upgrade may change it): what it holds is not looked for.
func (m *memo) useDefinition(def []byte) {
	if m == nil || len(def) == 0 {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	// The definition's JSON is shared by the workflow's states, never
	// changed: held, not copied, and most often the very same bytes.
	if len(m.def) == len(def) && (&m.def[0] == &def[0] || bytes.Equal(m.def, def)) {
		return
	}
	m.def = def
	m.forgetSearch()
}

// addName tells the memo a secret's name, which an UPDATE_SECRET holds
// under _secrets beside the value: it is not looked for.
func (m *memo) addName(name string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.hasName(name) {
		m.names = append(m.names, []byte(name))
		m.forgetSearch()
	}
}

// isName reports whether addName was told name.
func (m *memo) isName(name string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.hasName(name)
}

func (m *memo) hasName(name string) bool {
	return slices.ContainsFunc(m.names, func(n []byte) bool { return string(n) == name })
}

// letGo gives back the shared redactors of a memo that leaves the table
// while a decision may still use it: they stay usable, and its values are
// not zeroed.
func (m *memo) letGo() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.release()
	m.gone = true
}

// forgetSearch has get choose the values to look for afresh.
func (m *memo) forgetSearch() {
	m.release()
	m.kept, m.scanned, m.redactor, m.covered = nil, 0, nil, 0
}

// maxMemos bounds the workflows whose redaction values are kept in memory.
const maxMemos = 16384

func (g *Guard) memoFor(wfID string) *memo {
	g.mu.Lock()
	defer g.mu.Unlock()
	m := g.memos[wfID]
	if m == nil {
		if len(g.memos) >= maxMemos {
			// Rebuilt from state on demand. A memo may be in use by a
			// decision on its workflow: its redactors are given back
			// (they stay usable), its values are not zeroed.
			for _, old := range g.memos {
				old.letGo()
			}
			clear(g.memos)
		}
		m = &memo{}
		g.memos[wfID] = m
	}
	return m
}

// Recorded tells the guard that the decision it protected last for
// workflow wfID was stored as the log's record seq: its memo holds every
// value of the records up to it, and is not rebuilt for a state folded
// to that record alone.
func (g *Guard) Recorded(wfID string, seq uint64) {
	g.mu.Lock()
	m := g.memos[wfID]
	g.mu.Unlock()
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.built && seq > m.seq {
		m.seq = seq
	}
}

// Forget lets go of what redaction looks for in workflow wfID, which a
// record from any engine has ended or removed. The engine that decides
// the end, or the compaction, lets go of its memo as it protects it; one
// another engine made (a hand-off it prepared, a result it protected)
// stayed, the workflow's plaintext with it, until its memo table filled,
// compacted or not. A decision that holds the memo goes on with it (see
// letGo); the next one rebuilds it.
func (g *Guard) Forget(wfID string) {
	if m := g.unlink(wfID); m != nil {
		m.letGo()
	}
}

func (g *Guard) forget(wfID string) {
	if m := g.unlink(wfID); m != nil {
		m.drop()
	}
}

// unlink takes workflow wfID's memo out of the table and returns it.
func (g *Guard) unlink(wfID string) *memo {
	g.mu.Lock()
	defer g.mu.Unlock()
	m := g.memos[wfID]
	delete(g.memos, wfID)
	return m
}

// keyID names a workflow's data key of a sealing kind.
func keyID(wfID string, kind byte) string {
	return "wf." + wfID + "." + string(kind)
}

// purposeOf binds a sealed value to its workflow.
func purposeOf(wfID, path string) []byte { return secrets.Purpose("workflow", wfID, path) }

// secretsKeyOf names the key that seals w's _secrets data: the one its
// log recorded, or for logs from before keys were recorded, the key named
// after the workflow.
func secretsKeyOf(w *engine.Workflow) string { return secretsKey(w.ID, w.SecretsKey) }

// secretsKey is secretsKeyOf given the workflow's id and the key its log
// recorded ("" for none).
func secretsKey(wfID, recorded string) string {
	if recorded != "" {
		return recorded
	}
	return keyID(wfID, masking.KindSecrets)
}

// sealer seals and opens one workflow's values. Its _masked data goes
// under a key named after the workflow, created on first use. Its
// _secrets data goes under the key secretsKey names; a workflow without
// one yet takes a pooled key on its first seal, which the decision then
// records (taken).
type sealer struct {
	ctx  context.Context
	keys Keys
	wfID string
	// secretsKey is the id of the workflow's secrets key; empty while it
	// has none.
	secretsKey string
	// fresh: secretsKey names a key that does not exist yet (a child's,
	// see PrepareChild), so the first seal creates it without looking.
	fresh bool
	// before is the workflow's state before the decision, nil for a start.
	before *engine.Workflow
	// memo remembers a pooled key taken by a decision whose append lost a
	// race, for the retry to take it again.
	memo *memo
	// taken is the pooled key this pass took, for the decision to record.
	taken string
}

func (s *sealer) key(kind byte, create bool) (*secrets.DataKey, error) {
	if kind != masking.KindSecrets {
		return s.named(keyID(s.wfID, kind), create)
	}
	switch {
	case s.secretsKey == "" && create:
		return s.take()
	case s.secretsKey == "":
		return s.named(keyID(s.wfID, kind), false)
	case s.fresh && create:
		s.fresh = false
		if dk, err := s.keys.NewDataKey(s.ctx, s.secretsKey); err == nil {
			return dk, nil
		}
		// Created meanwhile: by another engine, or before an append that
		// lost a conflict.
	}
	dk, err := s.named(s.secretsKey, create && !secrets.IsPooledKey(s.secretsKey))
	if create && errors.Is(err, secrets.ErrKeyDestroyed) {
		// Compacted while it still ran into a seal: what it held sealed is
		// "***" now, what it seals from now on goes under a new key.
		return s.take()
	}
	return dk, err
}

// named returns data key id, creating it when create is set and it does
// not exist.
func (s *sealer) named(id string, create bool) (*secrets.DataKey, error) {
	dk, err := s.keys.DataKey(s.ctx, id)
	if err == nil || !create || !errors.Is(err, secrets.ErrKeyDestroyed) {
		return dk, err
	}
	dk, err = s.keys.NewDataKey(s.ctx, id)
	if err != nil {
		// Another engine may have created it a moment ago.
		if dk2, err2 := s.keys.DataKey(s.ctx, id); err2 == nil {
			return dk2, nil
		}
		return nil, err
	}
	return dk, nil
}

// take gives a workflow without a secrets key one from the pool.
func (s *sealer) take() (*secrets.DataKey, error) {
	if s.before != nil && s.before.Holds(masking.KindSecrets) {
		// Data sealed before keys were recorded: the key is named after
		// the workflow.
		s.secretsKey = keyID(s.wfID, masking.KindSecrets)
		return s.named(s.secretsKey, true)
	}
	epoch := 0
	if s.before != nil {
		epoch = s.before.Epoch
	}
	if id := s.memo.pendingKey(epoch); id != "" && id != s.secretsKey {
		if dk, err := s.keys.DataKey(s.ctx, id); err == nil {
			s.secretsKey, s.taken = id, id
			return dk, nil
		}
	}
	dk, err := s.keys.NewPooledKey(s.ctx)
	if err != nil {
		return nil, err
	}
	s.secretsKey, s.taken = dk.ID(), dk.ID()
	s.memo.setPendingKey(dk.ID(), epoch)
	return dk, nil
}

// Seal implements masking.Sealer. Paths are relative to the workflow.
//
// A value a task's output held sealed at the same path before the
// decision keeps the seal it had: the state keeps every seal an update
// replaced (a worker may echo a session it reported before, see the
// engine's keepSealed), and a worker that reports the same session in
// each IN_PROGRESS update added one to keep on each, without bound. Equal
// seals tell a reader of the log that the value at one path did not
// change between two updates, and nothing of the value: the price of the
// bound.
func (s *sealer) Seal(kind byte, path string, plaintext []byte) ([]byte, error) {
	dk, err := s.key(kind, true)
	if err != nil {
		return nil, err
	}
	purpose := purposeOf(s.wfID, path)
	if held := s.heldSeal(kind, path); held != nil {
		if old, err := dk.Open(purpose, held); err == nil {
			same := subtle.ConstantTimeCompare(old, plaintext) == 1
			clear(old)
			if same {
				return held, nil
			}
		}
	}
	return dk.Seal(purpose, plaintext), nil
}

// heldSeal returns the seal a task's output held at path before the
// decision, nil if none.
func (s *sealer) heldSeal(kind byte, path string) []byte {
	rest, ok := strings.CutPrefix(path, "wf/"+s.wfID+"/task/")
	if !ok || s.before == nil {
		return nil
	}
	id, field, _ := strings.Cut(rest, "/")
	if !strings.HasPrefix(field, "output") {
		return nil
	}
	t := s.before.TaskByID(id)
	if t == nil {
		return nil
	}
	held := masking.Find(t.Output, func(v *masking.Sealed) bool { return v.Kind == kind && v.Purpose == path })
	if held == nil {
		return nil
	}
	return held.Ciphertext
}

// Open implements masking.Sealer.
func (s *sealer) Open(kind byte, path string, ciphertext []byte) ([]byte, error) {
	dk, err := s.key(kind, false)
	if err != nil {
		return nil, err
	}
	return dk.Open(purposeOf(s.wfID, path), ciphertext)
}

// opener opens the sealed values of workflow w for a hand-off. A value
// sealed in another workflow does not open; one whose key was destroyed
// (the workflow was compacted) opens as "***".
func (g *Guard) opener(ctx context.Context, w *engine.Workflow) masking.Opener {
	s := sealer{ctx: ctx, keys: g.cfg.Keys, wfID: w.ID, secretsKey: secretsKeyOf(w)}
	return func(kind byte, purpose string, ct []byte) ([]byte, error) {
		if !strings.HasPrefix(purpose, "wf/"+w.ID+"/") {
			return nil, fmt.Errorf("a sealed value from another workflow: %w", errForeign)
		}
		plain, err := s.Open(kind, purpose, ct)
		if errors.Is(err, secrets.ErrKeyDestroyed) {
			return []byte(`"` + masking.Mask + `"`), nil
		}
		return plain, err
	}
}

var errForeign = errors.New("foreign sealed value")
