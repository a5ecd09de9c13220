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
	"context"
	"errors"
	"fmt"
	"log/slog"
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
	DataKey(ctx context.Context, id string) (*secrets.DataKey, error)
	DestroyKey(ctx context.Context, id string) error
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
	mu       sync.Mutex
	values   [][]byte
	redactor *masking.Redactor
	built    bool // rebuilt from state at least once
}

func (m *memo) add(v []byte) {
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
	m.redactor = nil
}

func (m *memo) get() *masking.Redactor {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.redactor == nil {
		m.redactor = masking.NewRedactor(m.values...)
	}
	return m.redactor
}

// maxMemos bounds the workflows whose redaction values are kept in memory.
const maxMemos = 16384

func (g *Guard) memoFor(wfID string) *memo {
	g.mu.Lock()
	defer g.mu.Unlock()
	m := g.memos[wfID]
	if m == nil {
		if len(g.memos) >= maxMemos {
			clear(g.memos) // rebuilt from state on demand
		}
		m = &memo{}
		g.memos[wfID] = m
	}
	return m
}

func (g *Guard) forget(wfID string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.memos, wfID)
}

// keyID names a workflow's data key of a sealing kind.
func keyID(wfID string, kind byte) string {
	return "wf." + wfID + "." + string(kind)
}

// purposeOf binds a sealed value to its workflow.
func purposeOf(wfID, path string) []byte { return secrets.Purpose("workflow", wfID, path) }

// sealer seals and opens one workflow's values, creating its data keys on
// first use.
type sealer struct {
	ctx  context.Context
	keys Keys
	wfID string
	// noSecretsKey: the log shows that the workflow has no secrets key yet,
	// so the first seal creates one without looking for it first.
	noSecretsKey bool
}

func (s *sealer) key(kind byte, create bool) (*secrets.DataKey, error) {
	id := keyID(s.wfID, kind)
	if create && kind == masking.KindSecrets && s.noSecretsKey {
		s.noSecretsKey = false
		if dk, err := s.keys.NewDataKey(s.ctx, id); err == nil {
			return dk, nil
		}
		// Created meanwhile: by this process for a sub-workflow's input, by
		// another engine, or before an append that lost a conflict.
	}
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

// Seal implements masking.Sealer. Paths are relative to the workflow.
func (s *sealer) Seal(kind byte, path string, plaintext []byte) ([]byte, error) {
	dk, err := s.key(kind, true)
	if err != nil {
		return nil, err
	}
	return dk.Seal(purposeOf(s.wfID, path), plaintext), nil
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
	s := sealer{ctx: ctx, keys: g.cfg.Keys, wfID: w.ID}
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
