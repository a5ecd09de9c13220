package auth

import (
	"encoding/base64"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/internal/testutil"
)

func testSigner(t *testing.T, seed string) *Signer {
	t.Helper()
	s, err := NewSigner([]byte(strings.Repeat(seed, 32)))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func tokenCode(err error) string {
	var te *TokenError
	if errors.As(err, &te) && errors.Is(err, fault.ErrUnauthorized) {
		return te.Code
	}
	return "not a token error: " + err.Error()
}

// A token lives at least its lifetime, although its expiry is in whole
// seconds: a short-lived token minted late in a second is not cut short.
func TestExpiryRoundsUp(t *testing.T) {
	s := testSigner(t, "a")
	for _, issued := range []time.Time{time.Unix(1_800_000_000, 0), time.Unix(1_800_000_000, 999_000_000)} {
		c := Claims{Subject: "app:x", IssuedAt: issued.Unix(), Expires: expiry(issued, 2*time.Second), ID: "j1", KeyID: "k1"}
		tok, err := s.Sign(c)
		if err != nil {
			t.Fatal(err)
		}
		for _, tt := range []struct {
			at    time.Duration
			valid bool
		}{{0, true}, {1999 * time.Millisecond, true}, {3 * time.Second, false}} {
			s.now = func() time.Time { return issued.Add(tt.at) }
			if _, err := s.Verify(tok); (err == nil) != tt.valid {
				t.Errorf("issued %s, verified %s later: %v, want valid %v", issued.Format(time.StampMilli), tt.at, err, tt.valid)
			}
		}
	}
}

// A requested lifetime is capped in milliseconds, before it is a
// duration: one too long for nanoseconds gets the cap, not a wrapped one.
func TestLifetime(t *testing.T) {
	tk := &Tokens{ttl: DefaultTokenTTL}
	for _, tt := range []struct {
		ms   int64
		want time.Duration
	}{
		{0, DefaultTokenTTL},
		{-1, MaxTokenTTL},
		{1, time.Second},
		{90_000, 90 * time.Second},
		{MaxTokenTTL.Milliseconds(), MaxTokenTTL},
		{MaxTokenTTL.Milliseconds() + 1, MaxTokenTTL},
		{math.MaxInt64 / 1_000_000, MaxTokenTTL},
		{math.MaxInt64/1_000_000 + 1, MaxTokenTTL},
		{1e16, MaxTokenTTL},
		{math.MaxInt64, MaxTokenTTL},
	} {
		if got := tk.lifetime(tt.ms); got != tt.want {
			t.Errorf("expiration %d ms: lifetime %s, want %s", tt.ms, got, tt.want)
		}
	}
}

func TestJWT(t *testing.T) {
	s := testSigner(t, "a")
	now := time.Unix(1_800_000_000, 0)
	s.now = func() time.Time { return now }
	c := Claims{Subject: "app:x", IssuedAt: now.Unix(), Expires: now.Add(time.Hour).Unix(), ID: "j1", KeyID: "k1"}
	tok, err := s.Sign(c)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Verify(tok)
	if err != nil || got != c {
		t.Fatalf("verify = %+v, %v", got, err)
	}
	parts := strings.Split(tok, ".")
	if h, _ := base64.RawURLEncoding.DecodeString(parts[0]); string(h) != `{"alg":"HS256","typ":"JWT"}` {
		t.Fatalf("header %s", h)
	}
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	enc := base64.RawURLEncoding.EncodeToString
	none := enc([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + parts[1] + "."
	hs512 := enc([]byte(`{"alg":"HS512"}`)) + "." + parts[1] + "." + parts[2]
	tampered := parts[0] + "." + enc([]byte(strings.Replace(string(payload), "app:x", "app:y", 1))) + "." + parts[2]
	other, _ := testSigner(t, "b").Sign(c)
	for name, bad := range map[string]string{"empty": "", "garbage": "x", "two parts": "a.b", "alg none": none,
		"other alg": hs512, "tampered": tampered, "other key": other, "bad base64": parts[0] + ".!!." + parts[2],
		"too long": strings.Repeat("a", maxTokenLen+1)} {
		if _, err := s.Verify(bad); tokenCode(err) != CodeInvalidToken {
			t.Errorf("%s: %v", name, err)
		}
	}
	now = now.Add(time.Hour)
	if _, err := s.Verify(tok); tokenCode(err) != CodeExpiredToken {
		t.Fatalf("expired: %v", err)
	}
	// An expired token signed with another key is invalid, not expired.
	if _, err := s.Verify(other); tokenCode(err) != CodeInvalidToken {
		t.Fatalf("expired forgery: %v", err)
	}
}

func TestFileTokenKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "token.key")
	a, err := FileTokenKey{path}.TokenSecret()
	if err != nil || len(a) != 32 {
		t.Fatalf("create: %d bytes, %v", len(a), err)
	}
	b, err := FileTokenKey{path}.TokenSecret()
	if err != nil || string(a) != string(b) {
		t.Fatal("the key changed between reads")
	}
	if info, _ := os.Stat(path); info.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", info.Mode().Perm())
	}
	os.Chmod(path, 0o644)
	if _, err := (FileTokenKey{path}).TokenSecret(); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("world-readable key accepted: %v", err)
	}
}

func TestKeyHash(t *testing.T) {
	secret := newSecret()
	if len(secret) != 43 || newSecret() == secret {
		t.Fatalf("secret %q", secret)
	}
	h := hashSecret(secret)
	if !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$") || strings.Contains(h, secret) {
		t.Fatalf("hash %s", h)
	}
	if hashSecret(secret) == h {
		t.Fatal("hashes are not salted")
	}
	for s, want := range map[string]bool{secret: true, secret + "x": false, "": false, strings.ToUpper(secret): false} {
		if ok, err := verifySecret(h, s); ok != want || err != nil {
			t.Errorf("verify(%q) = %v, %v", s, ok, err)
		}
	}
	for _, bad := range []string{"", "$argon2i$v=19$m=8,t=1,p=1$AAAA$AAAA", "$argon2id$v=19$m=99999999,t=1,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA",
		strings.Replace(h, "v=19", "v=16", 1)} {
		if _, err := verifySecret(bad, secret); err == nil {
			t.Errorf("malformed hash %q accepted", bad)
		}
	}
}

// A token key whose write fails (a full disk) leaves no file behind: an
// empty one would be refused at every start after ("holds 0 bytes"),
// once the disk had room again, until someone deleted it by hand. A
// process killed between the file's creation and its write would leave
// the same.
func TestFileTokenKeyWrittenWholeOrNotAtAll(t *testing.T) {
	disk, child := testutil.SmallDisk(t, 1<<20)
	if !child {
		return
	}
	filler := filepath.Join(disk, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	for err == nil {
		_, err = f.Write(make([]byte, 64<<10))
	}
	f.Close()
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("fill the disk: %v", err)
	}
	path := filepath.Join(disk, "token.key")
	if _, err := (FileTokenKey{path}).TokenSecret(); err == nil {
		t.Fatal("a token key was written to a full disk")
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	key, err := FileTokenKey{path}.TokenSecret()
	if err != nil || len(key) != 32 {
		t.Fatalf("once the disk has room: %d bytes, %v", len(key), err)
	}
	if entries, err := os.ReadDir(disk); err != nil || len(entries) != 1 {
		t.Fatalf("the disk holds %v (%v), want the token key alone", entries, err)
	}
}

// An empty token key file, which a process killed between the file's
// creation and its write leaves, is replaced by a new key rather than
// refused at every start.
func TestFileTokenKeyCutShortIsMadeAgain(t *testing.T) {
	path := filepath.Join(t.TempDir(), "token.key")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	key, err := FileTokenKey{path}.TokenSecret()
	if err != nil || len(key) != 32 {
		t.Fatalf("token key after a creation cut short: %d bytes, %v", len(key), err)
	}
	again, err := FileTokenKey{path}.TokenSecret()
	if err != nil || string(again) != string(key) {
		t.Fatalf("the new key is not kept: %v", err)
	}
}
