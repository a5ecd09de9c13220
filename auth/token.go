package auth

import (
	"bytes"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/flowvault/flowvault/fault"
)

// Token error codes. The Conductor SDKs refresh their token and retry when
// a 401 carries one of these in its "error" field: never rename them.
const (
	CodeInvalidToken = "INVALID_TOKEN"
	CodeExpiredToken = "EXPIRED_TOKEN"
)

// TokenError is a request whose token cannot be accepted. It wraps
// fault.ErrUnauthorized; Code is CodeInvalidToken or CodeExpiredToken.
type TokenError struct {
	Code   string
	Reason string
}

func (e *TokenError) Error() string { return e.Reason }

// Unwrap makes errors.Is(err, fault.ErrUnauthorized) hold.
func (e *TokenError) Unwrap() error { return fault.ErrUnauthorized }

func invalidToken(format string, args ...any) error {
	return &TokenError{Code: CodeInvalidToken, Reason: fmt.Sprintf(format, args...)}
}

// Claims are what a flowvault token asserts.
type Claims struct {
	// Subject is the principal id: "app:<id>" or a user id.
	Subject  string `json:"sub"`
	IssuedAt int64  `json:"iat"` // Unix seconds
	Expires  int64  `json:"exp"` // Unix seconds
	ID       string `json:"jti"`
	// KeyID is the access key the token was minted with. Requests check it
	// is still active, so pausing or deleting a key revokes its tokens.
	KeyID string `json:"keyId,omitempty"`
}

// TokenKeySource supplies the server secret that the token signing key is
// derived from. FileTokenKey keeps it in a file; the secrets engineer's
// keyring will provide it later.
type TokenKeySource interface {
	TokenSecret() ([]byte, error)
}

// FileTokenKey is a TokenKeySource backed by a file of 32 random bytes,
// created with mode 0600 on first use. A file that other users may read is
// refused.
type FileTokenKey struct{ Path string }

// TokenSecret implements TokenKeySource.
func (f FileTokenKey) TokenSecret() ([]byte, error) {
	b, err := os.ReadFile(f.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return f.create()
	}
	if err == nil && len(b) == 0 {
		// What a creation cut short leaves (the process killed between
		// the file's creation and its write): it signed nothing. Refused,
		// it would stop every start until someone deleted it.
		if err := os.Remove(f.Path); err != nil {
			return nil, fmt.Errorf("token key: %w", err)
		}
		return f.create()
	}
	if err != nil {
		return nil, fmt.Errorf("token key: %w", err)
	}
	if info, err := os.Stat(f.Path); err == nil && info.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("token key %s has mode %v: it must be readable by its owner only (chmod 600)", f.Path, info.Mode().Perm())
	}
	if len(b) < 32 {
		return nil, fmt.Errorf("token key %s holds %d bytes, want at least 32", f.Path, len(b))
	}
	return b, nil
}

func (f FileTokenKey) create() ([]byte, error) {
	if err := os.MkdirAll(filepath.Dir(f.Path), 0o700); err != nil {
		return nil, fmt.Errorf("token key: %w", err)
	}
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	file, err := os.OpenFile(f.Path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) { // another process created it first
		return f.TokenSecret()
	}
	if err != nil {
		return nil, fmt.Errorf("token key: %w", err)
	}
	_, err = file.Write(b)
	if err == nil {
		err = file.Sync()
	}
	if cerr := file.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		// A part of a key (a full disk) would be refused at every start.
		os.Remove(f.Path)
		return nil, fmt.Errorf("token key: %w", err)
	}
	return b, nil
}

// Signer mints and verifies HS256 JWTs with a key derived (HKDF-SHA256)
// from the server secret, so the secret itself never signs anything.
type Signer struct {
	key []byte
	now func() time.Time
}

// expiry is the exp claim of a token issued at now for lifetime: whole
// seconds, rounded up, so that a token lives at least its lifetime (a 2 s
// token minted at .999 of a second would otherwise expire 1.001 s later).
func expiry(now time.Time, lifetime time.Duration) int64 {
	end := now.Add(lifetime)
	if end.Nanosecond() == 0 {
		return end.Unix()
	}
	return end.Unix() + 1
}

// tokenKeyInfo binds the derived key to its one use.
const tokenKeyInfo = "flowvault api token HS256 v1"

// NewSigner derives the signing key from secret.
func NewSigner(secret []byte) (*Signer, error) {
	if len(secret) < 32 {
		return nil, fmt.Errorf("token secret: %d bytes, want at least 32", len(secret))
	}
	key, err := hkdf.Key(sha256.New, secret, nil, tokenKeyInfo, 32)
	if err != nil {
		return nil, err
	}
	return &Signer{key: key, now: time.Now}, nil
}

// jwtHeader is the only header flowvault writes or accepts.
var jwtHeader = b64([]byte(`{"alg":"HS256","typ":"JWT"}`))

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// Sign returns the compact JWT of c.
func (s *Signer) Sign(c Claims) (string, error) {
	payload, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	signing := jwtHeader + "." + b64(payload)
	return signing + "." + b64(s.mac(signing)), nil
}

func (s *Signer) mac(signing string) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(signing))
	return m.Sum(nil)
}

// maxTokenLen bounds what Verify parses.
const maxTokenLen = 4096

// Verify checks a token's form, header, signature (in constant time) and
// expiry, in that order, and returns its claims. Failures are *TokenError:
// CodeExpiredToken only for a correctly signed token past its expiry.
func (s *Signer) Verify(token string) (Claims, error) {
	if token == "" {
		return Claims{}, invalidToken("missing token: send it in the X-Authorization header (POST /api/token mints one)")
	}
	if len(token) > maxTokenLen {
		return Claims{}, invalidToken("malformed token: longer than %d bytes", maxTokenLen)
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return Claims{}, invalidToken("malformed token: want header.payload.signature")
	}
	header, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return Claims{}, invalidToken("malformed token header")
	}
	var h struct {
		Alg string `json:"alg"`
	}
	if err := json.Unmarshal(header, &h); err != nil {
		return Claims{}, invalidToken("malformed token header")
	}
	if h.Alg != "HS256" {
		return Claims{}, invalidToken("token algorithm %q is not accepted", h.Alg)
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || !hmac.Equal(sig, s.mac(parts[0]+"."+parts[1])) {
		return Claims{}, invalidToken("token signature does not verify")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return Claims{}, invalidToken("malformed token payload")
	}
	var c Claims
	dec := json.NewDecoder(bytes.NewReader(payload))
	if err := dec.Decode(&c); err != nil || c.Subject == "" || c.Expires == 0 {
		return Claims{}, invalidToken("malformed token claims")
	}
	if now := s.now().Unix(); now >= c.Expires {
		return Claims{}, &TokenError{Code: CodeExpiredToken, Reason: fmt.Sprintf("token expired %s ago: mint a new one with POST /api/token",
			time.Duration(now-c.Expires)*time.Second)}
	}
	return c, nil
}
