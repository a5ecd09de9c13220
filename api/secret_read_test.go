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
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/secrets"
)

// changedBeforeRead is a secret store whose secret someone changes once,
// after the caller's access was checked and before its value is read.
type changedBeforeRead struct {
	api.SecretStore
	once   sync.Once
	change func()
}

func (c *changedBeforeRead) Read(ctx context.Context, name string, rev secrets.Revision) (secrets.Value, secrets.Served, error) {
	c.once.Do(c.change)
	return c.SecretStore.Read(ctx, name, rev)
}

// changedBeforeEnvRead is an environment whose value someone changes
// once, after the caller's access was checked and before it is read.
type changedBeforeEnvRead struct {
	api.EnvStore
	once   sync.Once
	change func()
}

func (c *changedBeforeEnvRead) GetAt(ctx context.Context, name string, rev secrets.Revision) (string, error) {
	c.once.Do(c.change)
	return c.EnvStore.GetAt(ctx, name, rev)
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
			return api.Deps{Secrets: &changedBeforeRead{SecretStore: api.SecretStore{Store: e.s}, change: change}}
		},
		"environment value": func(e *secretsEngine, change func()) api.Deps {
			return api.Deps{Environment: &changedBeforeEnvRead{EnvStore: api.EnvStore{Env: e.env}, change: change}}
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
			authz := auth.NewAuthorizer(&fixedGrants{})
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

// What GET /api/secrets/{key}/metadata and the tags routes answer is of
// the secret or environment value the caller's access was checked on, as
// a value read is. The user may read its own "db" as its creator; once
// the check has read that, the admin deletes it and creates the name
// again, tagged: the answer is 409, retryable, not the admin's creator,
// tags or fingerprints. Asked again, the user is checked on the admin's,
// and refused.
func TestSecretDescriptionServesTheCheckedSecret(t *testing.T) {
	t.Parallel()
	adminsTag := []conductor.Tag{{Key: "owner", Value: "admins-tag"}}
	for _, tc := range []struct {
		name, path string
		kind       valueKind
		tag        func(ctx context.Context, e *secretsEngine) error
	}{
		{"secret metadata", "/api/secrets/db/metadata", valueKinds[0], func(ctx context.Context, e *secretsEngine) error {
			return e.s.PutTags(ctx, "db", adminsTag, pinAdmin)
		}},
		{"secret tags", "/api/secrets/db/tags", valueKinds[0], func(ctx context.Context, e *secretsEngine) error {
			return e.s.PutTags(ctx, "db", adminsTag, pinAdmin)
		}},
		{"environment value tags", "/api/environment/db/tags", valueKinds[1], func(ctx context.Context, e *secretsEngine) error {
			return e.env.PutTags(ctx, "db", adminsTag, pinAdmin)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := testutil.Context(t, time.Minute)
			e, _ := newSecretsEngine(t, testutil.OpenLog(t, ""), secrets.GenerateMasterKey(), true)
			if err := tc.kind.put(ctx, e, "users-value-1", pinUser); err != nil {
				t.Fatal(err)
			}
			src := &changedDuringCheck{secretSource: secretSource{e.s, e.env}, change: func() {
				if err := tc.kind.del(ctx, e); err != nil {
					t.Error(err)
				}
				if err := tc.kind.put(ctx, e, "admins-value-77", pinAdmin); err != nil {
					t.Error(err)
				}
				if err := tc.tag(ctx, e); err != nil {
					t.Error(err)
				}
			}}
			user := client{t, e.serveWith(t, src), "user-token"}

			got := user.do("GET", tc.path, "")
			var body struct {
				Retryable bool `json:"retryable"`
			}
			_ = json.Unmarshal([]byte(got.body), &body)
			if strings.Contains(got.body, pinAdmin) || strings.Contains(got.body, "admins-tag") || got.status != http.StatusConflict || !body.Retryable {
				t.Fatalf("GET checked on the user's %s, of the admin's: %d %s, want 409 retryable", tc.kind.name, got.status, got.body)
			}
			if got = user.do("GET", tc.path, ""); got.status != http.StatusForbidden || strings.Contains(got.body, "admins-tag") {
				t.Fatalf("GET checked on the admin's %s: %d %s, want 403", tc.kind.name, got.status, got.body)
			}
		})
	}
}

// changedDuringCheck tells the Authorizer the creators and tags of one
// engine's values, as secretSource does; someone changes them once, as
// soon as the first check has read the creator and tags (the check has
// passed, on the old value).
type changedDuringCheck struct {
	secretSource
	once   sync.Once
	change func()
}

func (c *changedDuringCheck) Describe(ctx context.Context, t auth.Target) ([]string, string, error) {
	tags, owner, err := c.secretSource.Describe(ctx, t)
	c.once.Do(c.change)
	return tags, owner, err
}

// GET /api/environment lists each value as the snapshot the caller's
// access to it was decided on holds it. While the user's access to "db"
// is checked, it is deleted and set again by someone else: the user is
// listed its own value, which it was checked on, or nothing where the
// snapshot holds the admin's, never the admin's value, nor its own
// value set over the admin's after the snapshot.
func TestEnvironmentListServesTheCheckedValues(t *testing.T) {
	t.Parallel()
	const usersValue, adminsValue = "users-value-1", "admins-value-77"
	for _, tc := range []struct {
		name         string
		before, by   string // the value the snapshot holds, and who set it
		after, newBy string // the value set during the check ("": none)
		want         string // what is listed of "db" ("": nothing)
	}{
		{name: "unchanged", before: usersValue, by: pinUser, want: usersValue},
		{name: "the admin's replaced by the user's", before: adminsValue, by: pinAdmin, after: usersValue, newBy: pinUser},
		{name: "the user's replaced by the admin's", before: usersValue, by: pinUser, after: adminsValue, newBy: pinAdmin, want: usersValue},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := testutil.Context(t, time.Minute)
			e, _ := newSecretsEngine(t, testutil.OpenLog(t, ""), secrets.GenerateMasterKey(), true)
			if err := e.env.Put(ctx, "db", tc.before, tc.by); err != nil {
				t.Fatal(err)
			}
			changes, base := newSnapshotServer(t, e)
			if tc.after != "" {
				changes.arm(duringCheck, func() {
					if _, err := e.env.Delete(ctx, "db", tc.newBy); err != nil {
						t.Error(err)
					}
					if err := e.env.Put(ctx, "db", tc.after, tc.newBy); err != nil {
						t.Error(err)
					}
				})
			}

			got := client{t, base, "user-token"}.do("GET", "/api/environment", "")
			var listed []secrets.EnvVar
			if err := json.Unmarshal([]byte(got.body), &listed); got.status != http.StatusOK || err != nil {
				t.Fatalf("GET /api/environment: %d %s (%v)", got.status, got.body, err)
			}
			if tc.after != "" && !changes.fired() {
				t.Fatal("the change never landed")
			}
			var values []string
			for _, v := range listed {
				values = append(values, v.Value)
			}
			if db := strings.Join(values, ","); len(values) > 1 || db != tc.want {
				t.Fatalf("listed %q, want %q", values, tc.want)
			}
		})
	}
}
