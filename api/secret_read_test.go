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

// changedBeforeEnvRead is an environment whose value someone changes
// once, after the caller's access was checked and before it is read.
type changedBeforeEnvRead struct {
	*secrets.Env
	once   sync.Once
	change func()
}

func (c *changedBeforeEnvRead) GetAt(ctx context.Context, name string, rev secrets.Revision) (string, error) {
	c.once.Do(c.change)
	return c.Env.GetAt(ctx, name, rev)
}

// GET /api/secrets/{key} serves the secret the caller's access was checked
// on, and GET /api/environment/{key} the environment value. The user may
// read its own value as its creator; the admin deletes it and creates the
// name again between the check and the read: the GET answers 409,
// retryable, not the admin's value. Asked again, the user is checked on
// the admin's value, and refused.
func TestSecretReadServesTheCheckedSecret(t *testing.T) {
	t.Parallel()
	// serving is e's store of a kind, changed before its read.
	serving := map[string]func(e *secretsEngine, change func()) api.Deps{
		"secret": func(e *secretsEngine, change func()) api.Deps {
			return api.Deps{Secrets: &changedBeforeRead{Store: e.s, change: change}}
		},
		"environment value": func(e *secretsEngine, change func()) api.Deps {
			return api.Deps{Environment: &changedBeforeEnvRead{Env: e.env, change: change}}
		},
	}
	for _, k := range valueKinds {
		t.Run(k.name, func(t *testing.T) {
			t.Parallel()
			ctx := testutil.Context(t, time.Minute)
			e, _ := newSecretsEngine(t, testutil.OpenLog(t, ""), secrets.GenerateMasterKey(), true)
			if err := k.put(ctx, e, "users-value-1", pinUser); err != nil {
				t.Fatal(err)
			}
			deps := serving[k.name](e, func() {
				if err := k.del(ctx, e); err != nil {
					t.Error(err)
				}
				if err := k.put(ctx, e, "admins-value-77", pinAdmin); err != nil {
					t.Error(err)
				}
			})
			authz := auth.NewAuthorizer(&interleavedGrants{})
			authz.Register(auth.TargetSecret, secretSource{e.s, e.env})
			authz.Register(auth.TargetEnvVariable, secretSource{e.s, e.env})
			deps.Logger, deps.Authorizer = testutil.Logger(t), authz
			deps.Tokens = tokenPrincipals{"user-token": {ID: pinUser, Roles: []string{auth.RoleUser}}}
			srv := httptest.NewServer(api.New(deps))
			t.Cleanup(srv.Close)
			user := client{t, srv.URL, "user-token"}

			got := user.do("GET", k.path, "")
			var body struct {
				Retryable bool `json:"retryable"`
			}
			_ = json.Unmarshal([]byte(got.body), &body)
			if strings.Contains(got.body, "admins-value") || got.status != http.StatusConflict || !body.Retryable {
				t.Fatalf("GET checked on the user's %s, of the admin's: %d %s, want 409 retryable", k.name, got.status, got.body)
			}
			if got = user.do("GET", k.path, ""); got.status != http.StatusForbidden || strings.Contains(got.body, "admins-value") {
				t.Fatalf("GET checked on the admin's %s: %d %s, want 403", k.name, got.status, got.body)
			}
		})
	}
}
