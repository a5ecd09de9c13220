package api

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"time"

	"golang.org/x/time/rate"

	"github.com/flowvault/flowvault/auth"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/internal/logkey"
	"github.com/flowvault/flowvault/internal/ratelimit"
)

// maxTokenBody bounds POST /api/token: a key id, a secret and a number.
const maxTokenBody = 4 << 10

// TokenLimits rate-limits POST /api/token with token buckets per client
// address and per key id. Each request takes one token from both.
type TokenLimits struct {
	PerAddr   rate.Limit
	AddrBurst int
	PerKey    rate.Limit
	KeyBurst  int
}

// DefaultTokenLimits allow an SDK to mint (one request an hour) and a
// test suite to mint dozens, and stop guessing and argon2 CPU exhaustion.
var DefaultTokenLimits = TokenLimits{PerAddr: 5, AddrBurst: 30, PerKey: 1, KeyBurst: 10}

func (s *Server) tokenRoutes() {
	s.route("POST /api/token", auth.Rule{Public: true}, s.issueToken)
	s.route("GET /api/token/userInfo", auth.Authenticated, s.userInfo)
}

// generateTokenRequest is Orkes's GenerateTokenRequest.
type generateTokenRequest struct {
	KeyID      string `json:"keyId"`
	KeySecret  string `json:"keySecret"`
	Expiration int64  `json:"expiration"` // ms; 0 default; negative: the maximum
}

// issueToken is POST /api/token: 200 {"token":"<JWT>"}, 401 with a plain
// Conductor error body for credentials that are not accepted, 429 with
// Retry-After past the rate limits. Its caller is nobody the server
// knows yet: a failure of the server's is answered with a generic message
// (writePublicError), the log saying why.
func (s *Server) issueToken(w http.ResponseWriter, r *http.Request) {
	if s.deps.Tokens == nil || s.deps.Insecure {
		// Conductor OSS has no /api/token: on this 404 the SDKs carry on
		// without authentication, which is what --insecure-dev offers.
		s.writePublicError(w, r, fault.NotFound("token endpoint not enabled: authentication is off"))
		return
	}
	addr := clientAddr(r)
	var req generateTokenRequest
	if err := decodeJSON(w, r, maxTokenBody, &req); err != nil {
		s.writePublicError(w, r, err)
		return
	}
	if req.KeyID == "" || req.KeySecret == "" || len(req.KeyID) > 256 || len(req.KeySecret) > 1024 {
		s.writePublicError(w, r, fault.Invalid("keyId and keySecret are required"))
		return
	}
	keyID := req.KeyID
	if !auth.ValidKeyID(keyID) {
		keyID = "" // never logged nor keyed on: it may be the secret, fields swapped
	}
	if err := s.tokenLimiter.allow(addr, keyID, time.Now()); err != nil {
		s.deps.Logger.Warn("token requests rate limited", logkey.KeyID, keyID, logkey.Addr, addr, logkey.Err, err)
		s.recordAuthFailed(r, err)
		s.writePublicError(w, r, err)
		return
	}
	token, err := s.deps.Tokens.Issue(r.Context(), req.KeyID, req.KeySecret, req.Expiration, addr)
	if errors.Is(err, fault.ErrUnauthorized) {
		s.tokenLimiter.failed(addr, keyID, time.Now())
	}
	if err != nil {
		s.writePublicError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"token": token})
}

// clientAddr is the request's peer address without the port. Forwarding
// headers are not trusted: they are the client's to write.
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// userInfo is GET /api/token/userInfo[?claims=true]: the caller as a
// ConductorUser (roles with their permissions, groups), and with claims
// {"user":…,"claims":…}.
func (s *Server) userInfo(w http.ResponseWriter, r *http.Request) {
	withClaims, err := queryBool(r, "claims", false)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	p := caller(r)
	u := auth.User{ID: p.ID, Name: p.ID, Roles: p.Roles}
	if s.deps.Auth != nil && p.ID != auth.Anonymous.ID {
		if u, err = s.deps.Auth.GetUser(r.Context(), p.ID); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	v, err := s.viewUser(r.Context(), u)
	if err != nil || !withClaims {
		s.reply(w, r, v, err)
		return
	}
	claims, _ := r.Context().Value(claimsKey{}).(auth.Claims)
	writeJSON(w, http.StatusOK, map[string]any{"user": v, "claims": claims})
}

// tokenLimiter limits POST /api/token per client address (every request:
// each costs an argon2id hash) and per key id (failed requests only: a
// script minting a token per command with the right secret is not
// guessing).
type tokenLimiter struct {
	byAddr, byKey *ratelimit.Keyed
}

func newTokenLimiter(tl TokenLimits) *tokenLimiter {
	if tl == (TokenLimits{}) {
		tl = DefaultTokenLimits
	}
	return &tokenLimiter{byAddr: ratelimit.New(tl.PerAddr, tl.AddrBurst), byKey: ratelimit.New(tl.PerKey, tl.KeyBurst)}
}

// allow returns nil, or a rate-limit error saying when to retry. The
// address is checked first, so that one client spraying key ids is
// stopped by its own bucket. Failures count per key id and address: key
// ids are no secret (every token names its own), and failures counted per
// key alone let anyone lock a key's owner out by guessing at it.
func (t *tokenLimiter) allow(addr, keyID string, now time.Time) error {
	if d := t.byAddr.Reserve(addr, now); d > 0 {
		return &rateLimitedError{what: "token requests from " + addr, retryAfter: d}
	}
	if d := t.byKey.Check(failureKey(addr, keyID), now); d > 0 {
		return &rateLimitedError{what: "failed token requests for this key from " + addr, retryAfter: d}
	}
	return nil
}

// failed charges a refused attempt to its key id and address's bucket.
func (t *tokenLimiter) failed(addr, keyID string, now time.Time) {
	t.byKey.Reserve(failureKey(addr, keyID), now)
}

func failureKey(addr, keyID string) string { return addr + " " + keyID }

// rateLimitedError answers 429 with a Retry-After header.
type rateLimitedError struct {
	what       string
	retryAfter time.Duration
}

func (e *rateLimitedError) Error() string {
	return fmt.Sprintf("too many %s: retry after %ds", e.what, e.seconds())
}

func (e *rateLimitedError) seconds() int { return int(math.Ceil(e.retryAfter.Seconds())) }

// Unwrap makes errors.Is(err, fault.ErrRateLimited) hold.
func (e *rateLimitedError) Unwrap() error { return fault.ErrRateLimited }
