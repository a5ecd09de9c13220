package system

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
	"time"

	"github.com/flowvault/flowvault/schemas/conductor"
)

// SignedJWT runs Orkes's GET_SIGNED_JWT: it signs a JWT (RS256) with the
// private key of its input, a secret as a rule (${workflow.secrets.NAME},
// resolved at hand-off), and returns it under _secrets, as Orkes does: so
// it is sealed before it is stored, reads show "***", compaction destroys
// it, and later tasks take it as ${ref.output._secrets.jwt}.
type SignedJWT struct {
	// Now is the clock of iat and exp (default time.Now).
	Now func() time.Time
}

// JWTOutputKey names the token under the task's _secrets output.
const JWTOutputKey = "jwt"

// Bounds of a token's lifetime: a day is generous for an access token,
// and a longer one outlives the point of minting it per workflow.
const maxJWTTTL = 24 * time.Hour

// minRSABits refuses keys too weak to sign with.
const minRSABits = 2048

// maxRSABits refuses keys larger than RS256 is used with, before they are
// parsed: parsing a key (Go checks its CRT values, working them out with a
// modular exponentiation when the key leaves them out) and signing with
// it take time cubic in its size, in steps no context ends, and a
// workflow's input can hold a key of any size (one of 32768 bits that
// leaves them out took 42 s to parse; a 64 KiB secret holds one of over
// 100,000 bits). With no number over 8192 bits, a parse takes at most
// about 3 s. Go's TLS refuses RSA keys over 8192 bits for the same reason.
const maxRSABits = 8192

// maxKeyNesting bounds how deep largestInteger looks into a key's DER:
// PKCS#8 holds a PKCS#1 key, whose other primes nest two deeper.
const maxKeyNesting = 6

// Execute implements executor.SystemTask.
func (s SignedJWT) Execute(_ context.Context, t *conductor.Task) conductor.TaskResult {
	token, err := s.sign(t.InputData)
	if err != nil {
		// Nothing here gets better on a retry: the input is what it is.
		return failed(conductor.TaskFailedWithTerminalError, "GET_SIGNED_JWT %s: %v", t.ReferenceTaskName, err)
	}
	return conductor.TaskResult{Status: conductor.TaskCompleted,
		OutputData: map[string]any{"_secrets": map[string]any{JWTOutputKey: token}}}
}

func (s SignedJWT) sign(in map[string]any) (string, error) {
	if alg, _ := in["algorithm"].(string); alg != "" && alg != "RS256" {
		return "", fmt.Errorf("algorithm %q: only RS256 is supported", alg)
	}
	claims := map[string]any{}
	for _, fc := range [][2]string{{"issuer", "iss"}, {"subject", "sub"}} {
		v, _ := in[fc[0]].(string)
		if v == "" {
			return "", fmt.Errorf("input %s is required, a string", fc[0])
		}
		claims[fc[1]] = v
	}
	switch aud := in["audience"].(type) {
	case string:
		if aud == "" {
			return "", errors.New("input audience is required, a string or an array of strings")
		}
		claims["aud"] = aud
	case []any:
		auds, ok := stringsOf(aud)
		if !ok || len(auds) == 0 {
			return "", errors.New("input audience must be a string or an array of strings")
		}
		claims["aud"] = auds
	default:
		return "", errors.New("input audience is required, a string or an array of strings")
	}
	switch scopes := in["scopes"].(type) {
	case nil:
	case string:
		if scopes != "" {
			claims["scope"] = scopes
		}
	case []any:
		list, ok := stringsOf(scopes)
		if !ok {
			return "", errors.New("input scopes must be a string or an array of strings")
		}
		claims["scope"] = strings.Join(list, " ") // space-delimited, as OAuth reads it
	default:
		return "", errors.New("input scopes must be a string or an array of strings")
	}
	ttl, err := jwtTTL(in)
	if err != nil {
		return "", err
	}
	key, err := parseRSAKey(in["privateKey"])
	if err != nil {
		return "", err
	}
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	iat := now().Unix()
	claims["iat"], claims["exp"] = iat, iat+int64(ttl/time.Second)
	header := map[string]any{"alg": "RS256", "typ": "JWT"}
	if kid, _ := in["privateKeyId"].(string); kid != "" {
		header["kid"] = kid
	}
	h, err := json.Marshal(header)
	if err != nil {
		return "", err
	}
	c, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	signing := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c)
	digest := sha256.Sum256([]byte(signing))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, digest[:])
	if err != nil {
		return "", fmt.Errorf("sign: %w", err)
	}
	return signing + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}

// jwtTTL reads ttlInSeconds (or Orkes's other spelling, ttlInSecond): a
// whole number of seconds, from 1 to a day.
func jwtTTL(in map[string]any) (time.Duration, error) {
	v, ok := in["ttlInSeconds"]
	if !ok {
		v = in["ttlInSecond"]
	}
	if v == nil {
		return 0, errors.New("input ttlInSeconds is required, the token's lifetime in seconds")
	}
	d, err := wholeSeconds(v, maxJWTTTL)
	if err != nil {
		return 0, fmt.Errorf("input ttlInSeconds %w", err)
	}
	return d, nil
}

// wholeSeconds reads a number of seconds, a number of any width the input
// decoded to or a numeric string, from 1 to most.
func wholeSeconds(v any, most time.Duration) (time.Duration, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return 0, fmt.Errorf("must be a number of seconds, not a %T", v)
	}
	secs, err := strconv.ParseFloat(strings.Trim(string(b), `"`), 64)
	if err != nil {
		return 0, fmt.Errorf("must be a number of seconds, not %s", b)
	}
	if secs != math.Trunc(secs) || secs < 1 || secs > most.Seconds() {
		return 0, fmt.Errorf("%v: want whole seconds from 1 to %d", secs, int(most.Seconds()))
	}
	return time.Duration(secs) * time.Second, nil
}

// parseRSAKey reads an RSA private key: PEM, PKCS#8 ("PRIVATE KEY", what
// Orkes asks for) or PKCS#1 ("RSA PRIVATE KEY"), or PKCS#8 DER in base64.
// Its errors never quote the input: it is a secret's value.
func parseRSAKey(v any) (*rsa.PrivateKey, error) {
	s, _ := v.(string)
	if strings.TrimSpace(s) == "" {
		return nil, errors.New("input privateKey is required: a PKCS#8 RSA private key, PEM (such as ${workflow.secrets.NAME})")
	}
	var der []byte
	pkcs1 := false
	if block, _ := pem.Decode([]byte(s)); block != nil {
		der, pkcs1 = block.Bytes, block.Type == "RSA PRIVATE KEY"
	} else if b, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(s), "")); err == nil {
		der = b
	} else {
		return nil, errors.New("input privateKey is neither PEM nor base64: want a PKCS#8 RSA private key")
	}
	if bits := largestInteger(der, 0); bits > maxRSABits {
		return nil, fmt.Errorf("input privateKey holds a number of %d bits: RS256 signs with keys of %d to %d bits", bits, minRSABits, maxRSABits)
	}
	var key any
	var err error
	if pkcs1 {
		key, err = x509.ParsePKCS1PrivateKey(der)
	} else {
		key, err = x509.ParsePKCS8PrivateKey(der)
	}
	if err != nil {
		return nil, errors.New("input privateKey is not a PKCS#8 (or PKCS#1) private key")
	}
	rsaKey, ok := key.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("input privateKey is a %T key: RS256 signs with an RSA key", key)
	}
	if bits := rsaKey.N.BitLen(); bits < minRSABits {
		return nil, fmt.Errorf("input privateKey has %d bits: RS256 wants at least %d", bits, minRSABits)
	}
	return rsaKey, nil
}

// largestInteger is the size in bits of the largest INTEGER of der, a
// private key's DER, looked for in its SEQUENCEs and OCTET STRINGs (PKCS#8
// holds the PKCS#1 key in one). What does not parse is left for x509 to
// refuse.
func largestInteger(der []byte, depth int) int {
	most := 0
	for len(der) > 0 && depth <= maxKeyNesting {
		var v asn1.RawValue
		rest, err := asn1.Unmarshal(der, &v)
		if err != nil {
			break
		}
		switch {
		case v.Class == asn1.ClassUniversal && v.Tag == asn1.TagInteger:
			most = max(most, new(big.Int).SetBytes(v.Bytes).BitLen())
		case v.IsCompound, v.Class == asn1.ClassUniversal && v.Tag == asn1.TagOctetString:
			most = max(most, largestInteger(v.Bytes, depth+1))
		}
		der = rest
	}
	return most
}

func stringsOf(list []any) ([]string, bool) {
	out := make([]string, 0, len(list))
	for _, v := range list {
		s, ok := v.(string)
		if !ok || s == "" {
			return nil, false
		}
		out = append(out, s)
	}
	return out, true
}
