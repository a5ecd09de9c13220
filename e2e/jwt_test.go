package e2e_test

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/flowvault/flowvault/schemas/conductor"
)

// GET_SIGNED_JWT signs with a private key kept as a secret; the next task
// sends the token to a service that verifies it, while the execution shows
// "***" for it and neither the token nor the key reaches the log's events.
func TestSignedJWTTask(t *testing.T) {
	t.Parallel()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var received string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		mu.Lock()
		received = token
		mu.Unlock()
		parts := strings.Split(token, ".")
		if len(parts) != 3 {
			http.Error(w, "no token", http.StatusUnauthorized)
			return
		}
		digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
		sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
		if rsa.VerifyPKCS1v15(&key.PublicKey, crypto.SHA256, digest[:], sig) != nil {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		claims, _ := base64.RawURLEncoding.DecodeString(parts[1])
		w.Header().Set("Content-Type", "application/json")
		w.Write(claims)
	}))
	t.Cleanup(srv.Close)

	e := newEnv(t)
	e.putSecret("jwt_key", string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})))
	sign := `{"name":"sign","taskReferenceName":"sign","type":"GET_SIGNED_JWT","inputParameters":{
	    "subject":"${workflow.input.who}","issuer":"flowvault","privateKey":"${workflow.secrets.jwt_key}",
	    "privateKeyId":"k1","audience":"` + srv.URL + `","ttlInSeconds":300,"scopes":["read"],"algorithm":"RS256"}}`
	call := `{"name":"call","taskReferenceName":"call","type":"HTTP","inputParameters":{"http_request":{
	    "uri":"` + srv.URL + `","method":"GET","headers":{"Authorization":"Bearer ${sign.output._secrets.jwt}"}}}}`
	// The call scheduled by the decision that takes in the token, and by a
	// later one (after a WAIT): the token reaches the call either way.
	e.register(`{"name":"jwt_flow","tasks":[`+sign+`,`+call+`],"outputParameters":{"sub":"${call.output.response.body.sub}"}}`,
		`{"name":"jwt_flow_later","tasks":[`+sign+`,{"name":"pause","taskReferenceName":"pause","type":"WAIT","inputParameters":{"duration":"1s"}},`+call+`],
		  "outputParameters":{"sub":"${call.output.response.body.sub}"}}`)
	var token string
	for _, name := range []string{"jwt_flow", "jwt_flow_later"} {
		id := e.start(name, map[string]any{"who": "svc-1"})
		wf := e.waitStatus(id, conductor.WorkflowCompleted)
		if wf.Output["sub"] != "svc-1" {
			t.Fatalf("%s: output %v (the service did not verify the token)", name, wf.Output)
		}
		if sign := taskByRef(wf, "sign"); sign.OutputData["_secrets"] != "***" {
			t.Fatalf("%s: sign output %v", name, sign.OutputData)
		}
		mu.Lock()
		token = received
		mu.Unlock()
		body := e.must(http.StatusOK, "GET", "/api/workflow/"+id+"?includeTasks=true", nil)
		raw := e.rawLog(id)
		for _, leak := range []string{token, strings.Split(token, ".")[2], "PRIVATE KEY"} {
			if strings.Contains(body, leak) || strings.Contains(raw, leak) {
				t.Fatalf("%s: %.20q… reached the execution's JSON or its events", name, leak)
			}
		}
	}
	var claims map[string]any
	b, _ := base64.RawURLEncoding.DecodeString(strings.Split(token, ".")[1])
	if json.Unmarshal(b, &claims) != nil || claims["aud"] != srv.URL || claims["scope"] != "read" {
		t.Fatalf("claims %v", claims)
	}
}
