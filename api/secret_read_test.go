package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowvault/flowvault/api"
	"github.com/flowvault/flowvault/auth"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/secrets"
)

// changedBeforeRead is a secret store whose secret someone changes once,
// after the caller's access was checked and before its value is read.
type changedBeforeRead struct {
	*secrets.Store
	once   sync.Once
	change func()
}

func (c *changedBeforeRead) Read(ctx context.Context, name string, rev secrets.Revision) (secrets.Value, secrets.Served, error) {
	c.once.Do(c.change)
	return c.Store.Read(ctx, name, rev)
}

// GET /api/secrets/{key} serves the secret the caller's access was checked
// on. The user may read its own secret as its creator; the admin deletes
// it and creates the name again between the check and the read: the
// GET answers 409, retryable, not the admin's value. Asked again, the
// user is checked on the admin's secret, and refused.
func TestSecretReadServesTheCheckedSecret(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, time.Minute)
	e, _ := newSecretsEngine(t, testutil.OpenLog(t, ""), secrets.GenerateMasterKey(), true)
	if _, err := e.s.Put(ctx, "db", []byte("users-value-1"), pinUser); err != nil {
		t.Fatal(err)
	}
	store := &changedBeforeRead{Store: e.s, change: func() {
		if err := e.s.Delete(ctx, "db", pinAdmin); err != nil {
			t.Error(err)
		}
		if _, err := e.s.Put(ctx, "db", []byte("admins-value-77"), pinAdmin); err != nil {
			t.Error(err)
		}
	}}
	authz := auth.NewAuthorizer(&interleavedGrants{})
	authz.Register(auth.TargetSecret, secretSource{e.s, e.env})
	srv := httptest.NewServer(api.New(api.Deps{
		Logger:     testutil.Logger(t),
		Secrets:    store,
		Authorizer: authz,
		Tokens:     tokenPrincipals{"user-token": {ID: pinUser, Roles: []string{auth.RoleUser}}},
	}))
	t.Cleanup(srv.Close)
	user := client{t, srv.URL, "user-token"}

	got := user.do("GET", "/api/secrets/db", "")
	var body struct {
		Retryable bool `json:"retryable"`
	}
	_ = json.Unmarshal([]byte(got.body), &body)
	if strings.Contains(got.body, "admins-value") || got.status != http.StatusConflict || !body.Retryable {
		t.Fatalf("GET checked on the user's secret, of the admin's: %d %s, want 409 retryable", got.status, got.body)
	}
	if got = user.do("GET", "/api/secrets/db", ""); got.status != http.StatusForbidden || strings.Contains(got.body, "admins-value") {
		t.Fatalf("GET checked on the admin's secret: %d %s, want 403", got.status, got.body)
	}
}
