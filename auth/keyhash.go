package auth

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"

	"golang.org/x/crypto/argon2"
)

// Access key secrets are 32 random bytes (256 bits), shown to the caller
// once as unpadded base64url. Only their argon2id hash is kept.
const secretBytes = 32

// newSecret returns a fresh access key secret.
func newSecret() string {
	b := make([]byte, secretBytes)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return base64.RawURLEncoding.EncodeToString(b)
}

// hashParams are argon2id's cost parameters. The defaults are OWASP's
// minimum for argon2id (19 MiB, 2 passes, 1 lane): about 30 ms per hash on
// the CI machine. A 256-bit random secret does not need a slow hash to
// resist guessing; the slow hash protects a leaked log or read model from
// any shortcut and costs one hash per token, not per request.
type hashParams struct {
	memory  uint32 // KiB
	time    uint32
	threads uint8
	keyLen  uint32
}

var defaultHashParams = hashParams{memory: 19 * 1024, time: 2, threads: 1, keyLen: 32}

// hashSecret returns the PHC string of secret's argon2id hash:
// $argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash> (unpadded standard base64).
func hashSecret(secret string) string {
	return hashWith(defaultHashParams, secret)
}

func hashWith(p hashParams, secret string) string {
	salt := make([]byte, 16)
	_, _ = rand.Read(salt)
	sum := argon2.IDKey([]byte(secret), salt, p.time, p.memory, p.threads, p.keyLen)
	enc := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.memory, p.time, p.threads,
		enc.EncodeToString(salt), enc.EncodeToString(sum))
}

var errBadHash = errors.New("malformed access key hash")

// verifySecret reports whether secret matches the PHC hash, comparing in
// constant time.
func verifySecret(hash, secret string) (bool, error) {
	parts := strings.Split(hash, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return false, errBadHash
	}
	var version int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return false, errBadHash
	}
	var p hashParams
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.memory, &p.time, &p.threads); err != nil {
		return false, errBadHash
	}
	// Bound the cost a stored hash can ask for.
	if p.memory < 8 || p.memory > 1<<20 || p.time < 1 || p.time > 16 || p.threads < 1 || p.threads > 16 {
		return false, errBadHash
	}
	salt, err := base64.RawStdEncoding.DecodeString(parts[4])
	if err != nil {
		return false, errBadHash
	}
	want, err := base64.RawStdEncoding.DecodeString(parts[5])
	if err != nil || len(want) < 16 || len(want) > 64 {
		return false, errBadHash
	}
	got := argon2.IDKey([]byte(secret), salt, p.time, p.memory, p.threads, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}

// dummyHash is verified against when a key id is unknown, so that an
// unknown key costs the same time as a wrong secret.
var dummyHash = sync.OnceValue(func() string { return hashSecret("flowvault: no such access key") })
