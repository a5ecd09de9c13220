package system_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/workers/system"
)

func pkcs8PEM(t *testing.T, key any) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}

// oversizeKeyDER is PKCS#1 DER holding numbers of the sizes of a key of
// bits bits, without the CRT values, which parsing then works out with a
// modular exponentiation, in time cubic in the size. The numbers make no
// key: parsing them takes as long all the same, before it finds out.
func oversizeKeyDER(t *testing.T, bits int) []byte {
	t.Helper()
	odd := func(n int) *big.Int {
		v, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), uint(n)))
		if err != nil {
			t.Fatal(err)
		}
		return v.SetBit(v, n-1, 1).SetBit(v, 0, 1)
	}
	der, err := asn1.Marshal(struct {
		Version int
		N       *big.Int
		E       int
		D, P, Q *big.Int
	}{0, odd(bits), 65537, odd(bits - 1), odd(bits / 2), odd(bits / 2)})
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// GET_SIGNED_JWT signs RS256 with the key of its input and returns the
// token under _secrets; bad input fails it for good, and no failure
// quotes the key.
func TestSignedJWT(t *testing.T) {
	t.Parallel()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	task := system.SignedJWT{Now: func() time.Time { return now }}
	input := func(changes map[string]any) map[string]any {
		in := map[string]any{"subject": "svc@example.com", "issuer": "flowvault", "privateKey": pkcs8PEM(t, key),
			"privateKeyId": "key-123", "audience": "https://token.example.com", "ttlInSeconds": int64(3600),
			"scopes": []any{"read", "write"}, "algorithm": "RS256"}
		for k, v := range changes {
			if v == nil {
				delete(in, k)
			} else {
				in[k] = v
			}
		}
		return in
	}
	run := func(in map[string]any) conductor.TaskResult {
		return task.Execute(context.Background(), &conductor.Task{ReferenceTaskName: "jwt", InputData: in})
	}

	res := run(input(nil))
	secrets, _ := res.OutputData["_secrets"].(map[string]any)
	token, _ := secrets[system.JWTOutputKey].(string)
	if res.Status != conductor.TaskCompleted || len(res.OutputData) != 1 || token == "" {
		t.Fatalf("result %+v", res)
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("token %q", token)
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
	if err := rsa.VerifyPKCS1v15(&key.PublicKey, crypto.SHA256, digest[:], sig); err != nil {
		t.Fatalf("signature: %v", err)
	}
	decode := func(part string) map[string]any {
		b, _ := base64.RawURLEncoding.DecodeString(part)
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	if h := decode(parts[0]); !reflect.DeepEqual(h, map[string]any{"alg": "RS256", "typ": "JWT", "kid": "key-123"}) {
		t.Fatalf("header %v", h)
	}
	want := map[string]any{"iss": "flowvault", "sub": "svc@example.com", "aud": "https://token.example.com",
		"scope": "read write", "iat": float64(now.Unix()), "exp": float64(now.Unix() + 3600)}
	if c := decode(parts[1]); !reflect.DeepEqual(c, want) {
		t.Fatalf("claims %v, want %v", c, want)
	}

	// Other accepted shapes: a PKCS#1 key, an audience list, a scope
	// string, Orkes's ttlInSecond, a numeric string.
	pkcs1 := string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}))
	res = run(input(map[string]any{"privateKey": pkcs1, "audience": []any{"a", "b"}, "scopes": "admin",
		"ttlInSeconds": nil, "ttlInSecond": "60", "algorithm": nil, "privateKeyId": nil}))
	if res.Status != conductor.TaskCompleted {
		t.Fatalf("accepted shapes: %+v", res)
	}
	token = res.OutputData["_secrets"].(map[string]any)[system.JWTOutputKey].(string)
	if c := decode(strings.Split(token, ".")[1]); !reflect.DeepEqual(c["aud"], []any{"a", "b"}) || c["scope"] != "admin" || c["exp"] != float64(now.Unix()+60) {
		t.Fatalf("claims %v", c)
	}

	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	// Keys over 8192 bits are refused before they are parsed: parsing one
	// of 32768 bits took 42 s, in one step no context ends.
	oversize := oversizeKeyDER(t, 8200)
	oversizePKCS8, err := asn1.Marshal(struct {
		Version    int
		Algo       pkix.AlgorithmIdentifier
		PrivateKey []byte
	}{0, pkix.AlgorithmIdentifier{Algorithm: asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}, Parameters: asn1.NullRawValue}, oversize})
	if err != nil {
		t.Fatal(err)
	}
	garbage := "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1tYXRlcmlhbA==\n-----END PRIVATE KEY-----\n"
	for _, tc := range []struct {
		name    string
		changes map[string]any
		want    string
	}{
		{"no issuer", map[string]any{"issuer": nil}, "issuer is required"},
		{"no subject", map[string]any{"subject": ""}, "subject is required"},
		{"no audience", map[string]any{"audience": nil}, "audience is required"},
		{"audience not strings", map[string]any{"audience": []any{1}}, "audience must be"},
		{"scopes not strings", map[string]any{"scopes": 7}, "scopes must be"},
		{"HS256", map[string]any{"algorithm": "HS256"}, "only RS256"},
		{"no ttl", map[string]any{"ttlInSeconds": nil}, "ttlInSeconds is required"},
		{"ttl zero", map[string]any{"ttlInSeconds": 0}, "want whole seconds"},
		{"ttl two days", map[string]any{"ttlInSeconds": 172800}, "want whole seconds"},
		{"ttl fraction", map[string]any{"ttlInSeconds": 1.5}, "want whole seconds"},
		{"ttl word", map[string]any{"ttlInSeconds": "soon"}, "must be a number"},
		{"no key", map[string]any{"privateKey": nil}, "privateKey is required"},
		{"garbage key", map[string]any{"privateKey": garbage}, "not a PKCS#8"},
		{"not PEM or base64", map[string]any{"privateKey": "not a key at all!"}, "neither PEM nor base64"},
		{"EC key", map[string]any{"privateKey": pkcs8PEM(t, ec)}, "RSA key"},
		{"1024 bits", map[string]any{"privateKey": pkcs8PEM(t, small)}, "1024 bits"},
		{"PKCS#1 key over 8192 bits", map[string]any{"privateKey": string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: oversize}))},
			"holds a number of 8200 bits: RS256 signs with keys of 2048 to 8192 bits"},
		{"PKCS#8 key over 8192 bits", map[string]any{"privateKey": string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: oversizePKCS8}))},
			"holds a number of 8200 bits"},
		{"base64 key over 8192 bits", map[string]any{"privateKey": base64.StdEncoding.EncodeToString(oversizePKCS8)}, "holds a number of 8200 bits"},
	} {
		res := run(input(tc.changes))
		if res.Status != conductor.TaskFailedWithTerminalError || !strings.Contains(res.ReasonForIncompletion, tc.want) {
			t.Errorf("%s: %s %q, want FAILED_WITH_TERMINAL_ERROR mentioning %q", tc.name, res.Status, res.ReasonForIncompletion, tc.want)
		}
		for _, leak := range []string{"c2VjcmV0", "MII", "not a key at all"} {
			if strings.Contains(res.ReasonForIncompletion, leak) {
				t.Errorf("%s: the reason quotes the key: %q", tc.name, res.ReasonForIncompletion)
			}
		}
	}
}
