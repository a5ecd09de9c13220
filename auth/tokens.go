package auth

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/internal/logkey"
	"github.com/flowvault/flowvault/schemas"
	"github.com/google/uuid"
)

// Token lifetimes.
const (
	// DefaultTokenTTL is a token's lifetime when the request names none.
	DefaultTokenTTL = time.Hour
	// MaxTokenTTL caps a requested lifetime. Orkes mints never-expiring
	// tokens for a negative "expiration"; flowvault gives those the cap.
	MaxTokenTTL = 24 * time.Hour
)

// Tokens mints tokens for access keys and authenticates requests by them.
type Tokens struct {
	store  *Store
	signer *Signer
	log    *eventlog.Log
	ttl    time.Duration
	logger *slog.Logger
	// refusals records refused requests in the background, within rate
	// limits; nil: each is appended before the refusal answers.
	refusals Refusals
}

// Refusals records refused requests from a client address, as far as the
// audit log's flood limits let it (audit.Recorder).
type Refusals interface {
	Refused(addr, principal string, ev schemas.Event)
}

// SetRefusals routes the records of refused token requests through r.
func (t *Tokens) SetRefusals(r Refusals) { t.refusals = r }

// ValidKeyID reports whether id has the form of an access key id (a
// UUID). Anything else is never logged, recorded or keyed on: a client
// that swapped its key's fields would put the secret there.
func ValidKeyID(id string) bool {
	u, err := uuid.Parse(id)
	return err == nil && u.String() == id
}

// NewTokens returns the token service. ttl is the default lifetime (0:
// DefaultTokenTTL); token issuance and refusals are appended to the audit
// stream through log.
func NewTokens(store *Store, signer *Signer, log *eventlog.Log, ttl time.Duration, logger *slog.Logger) *Tokens {
	if ttl <= 0 {
		ttl = DefaultTokenTTL
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Tokens{store: store, signer: signer, log: log, ttl: min(ttl, MaxTokenTTL), logger: logger.With(logkey.Component, "auth")}
}

// lifetime is the token lifetime for a request's "expiration" (ms).
func (t *Tokens) lifetime(expirationMs int64) time.Duration {
	switch {
	case expirationMs == 0:
		return t.ttl
	case expirationMs < 0, expirationMs > MaxTokenTTL.Milliseconds():
		// Compared in milliseconds: past about 292 years, the duration in
		// nanoseconds overflows (Long.MAX_VALUE, a client's "forever", made
		// a one-second token).
		return MaxTokenTTL
	}
	return max(time.Second, time.Duration(expirationMs)*time.Millisecond)
}

// ErrBadCredentials is what a client learns about a refused token request,
// whatever the reason (unknown key, wrong secret, inactive key).
var ErrBadCredentials = fmt.Errorf("invalid access key id or secret: %w", fault.ErrUnauthorized)

// Issue verifies an access key and mints a token for its application,
// valid for expirationMs (0: the default lifetime; negative: the maximum).
// Every issuance and refusal is appended to the audit stream and refusals
// are logged with the key id (never the secret); addr is the client's
// address. A refusal returns ErrBadCredentials.
func (t *Tokens) Issue(ctx context.Context, keyID, secret string, expirationMs int64, addr string) (string, error) {
	if !ValidKeyID(keyID) {
		return "", t.refuse(ctx, "", "malformed key id", addr)
	}
	app, err := t.store.VerifyAccessKey(ctx, keyID, secret)
	if errors.Is(err, fault.ErrUnauthorized) {
		return "", t.refuse(ctx, keyID, strings.TrimSuffix(err.Error(), ": "+fault.ErrUnauthorized.Error()), addr)
	}
	if err != nil {
		return "", err
	}
	now := t.signer.now()
	c := Claims{Subject: app.PrincipalID(), IssuedAt: now.Unix(), Expires: expiry(now, t.lifetime(expirationMs)),
		ID: rand.Text(), KeyID: keyID}
	token, err := t.signer.Sign(c)
	if err != nil {
		return "", err
	}
	if err := t.audit(ctx, &schemas.TokenIssued{KeyID: keyID, Principal: c.Subject, TokenID: c.ID, Expires: c.Expires,
		Addr: addr, Time: now.UnixMilli()}); err != nil {
		return "", err
	}
	t.logger.Info("token issued", logkey.KeyID, keyID, logkey.Principal, c.Subject, logkey.Addr, addr)
	return token, nil
}

// refuse logs and records a refused token request and returns
// ErrBadCredentials, or the error of a record that had to be appended.
func (t *Tokens) refuse(ctx context.Context, keyID, reason, addr string) error {
	t.logger.Warn("token request refused", logkey.KeyID, keyID, logkey.Addr, addr, logkey.Reason, reason)
	ev := &schemas.TokenRefused{KeyID: keyID, Reason: reason, Addr: addr, Time: time.Now().UnixMilli()}
	if t.refusals != nil {
		t.refusals.Refused(addr, "", ev)
	} else if err := t.audit(ctx, ev); err != nil {
		return err
	}
	return ErrBadCredentials
}

// audit appends one audit fact. Issuance fails closed: no record, no token.
func (t *Tokens) audit(ctx context.Context, ev schemas.Event) error {
	env, err := schemas.Default.Encode(ev)
	if err != nil {
		return err
	}
	env.ID, env.Time = rand.Text(), time.Now().UnixNano()
	if _, err := t.log.Append(ctx, TokenAuditSubject, []schemas.Envelope{env}, eventlog.ExpectAny); err != nil {
		return fmt.Errorf("record token audit event: %v: %w", err, fault.ErrUnavailable)
	}
	return nil
}

// Authenticate returns the principal a token speaks for, with its roles
// and groups as the read model has them now (a revoked role takes effect
// on the next request). A token minted with an access key is refused once
// the key is paused or deleted. Failures are *TokenError.
func (t *Tokens) Authenticate(ctx context.Context, token string) (Principal, Claims, error) {
	c, err := t.signer.Verify(token)
	if err != nil {
		return Principal{}, Claims{}, err
	}
	if c.KeyID != "" {
		appID, ok := strings.CutPrefix(c.Subject, AppPrefix)
		if !ok {
			return Principal{}, Claims{}, invalidToken("malformed token claims")
		}
		usable, err := t.store.keyUsable(appID, c.KeyID)
		if err != nil {
			return Principal{}, Claims{}, err
		}
		if !usable {
			return Principal{}, Claims{}, invalidToken("the access key this token was minted with is inactive or deleted")
		}
	}
	p, err := t.store.Principal(ctx, c.Subject)
	if errors.Is(err, fault.ErrNotFound) {
		return Principal{}, Claims{}, invalidToken("%s no longer exists", c.Subject)
	}
	if err != nil {
		return Principal{}, Claims{}, err
	}
	return p, c, nil
}
