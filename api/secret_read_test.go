package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
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
			src := &changedDuringCheck{secretSource: secretSource{e.s, e.env}, afterRead: true, change: func() {
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
// the first check reads the creator: before it is read, or after (the
// check has passed, on the old value).
type changedDuringCheck struct {
	secretSource
	once      sync.Once
	afterRead bool
	change    func()
}

func (c *changedDuringCheck) CreatorOf(ctx context.Context, t auth.Target) (string, error) {
	if !c.afterRead {
		c.once.Do(c.change)
	}
	owner, err := c.secretSource.CreatorOf(ctx, t)
	if c.afterRead {
		c.once.Do(c.change)
	}
	return owner, err
}

// GET /api/environment lists each value at the revision the caller's
// access was checked on. The listing's scan read one value of "db"; while
// the user's access to it is checked, it is deleted and set again by
// someone else, before the check reads the new value's creator or after
// it read the old one's. The user is listed its own value, never the
// admin's, and is not listed the admin's value its own was replaced with.
func TestEnvironmentListServesTheCheckedValues(t *testing.T) {
	t.Parallel()
	const usersValue, adminsValue = "users-value-1", "admins-value-77"
	for _, tc := range []struct {
		name         string
		before, by   string   // the value the scan reads, and who set it
		after, newBy string   // the value set during the check ("": none)
		afterRead    bool     // set once the check read the old creator
		want         []string // what may be listed of "db" ("": nothing)
	}{
		{name: "unchanged", before: usersValue, by: pinUser, want: []string{usersValue}},
		{name: "the admin's replaced by the user's", before: adminsValue, by: pinAdmin, after: usersValue, newBy: pinUser, want: []string{usersValue}},
		{name: "the user's replaced by the admin's", before: usersValue, by: pinUser, after: adminsValue, newBy: pinAdmin, want: []string{""}},
		// Checked on its own value, the user may be listed it, as it was.
		{name: "the user's replaced by the admin's after the check", before: usersValue, by: pinUser, after: adminsValue, newBy: pinAdmin, afterRead: true,
			want: []string{"", usersValue}},
		{name: "the admin's replaced by the user's after the check", before: adminsValue, by: pinAdmin, after: usersValue, newBy: pinUser, afterRead: true,
			want: []string{""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := testutil.Context(t, time.Minute)
			e, _ := newSecretsEngine(t, testutil.OpenLog(t, ""), secrets.GenerateMasterKey(), true)
			if err := e.env.Put(ctx, "db", tc.before, tc.by); err != nil {
				t.Fatal(err)
			}
			src := &changedDuringCheck{secretSource: secretSource{e.s, e.env}, afterRead: tc.afterRead, change: func() {
				if tc.after == "" {
					return
				}
				if _, err := e.env.Delete(ctx, "db", tc.newBy); err != nil {
					t.Error(err)
				}
				if err := e.env.Put(ctx, "db", tc.after, tc.newBy); err != nil {
					t.Error(err)
				}
			}}
			authz := auth.NewAuthorizer(&fixedGrants{})
			authz.Register(auth.TargetEnvVariable, src)
			srv := httptest.NewServer(api.New(api.Deps{
				Logger: testutil.Logger(t), Environment: e.env, Authorizer: authz,
				Tokens: tokenPrincipals{"user-token": {ID: pinUser, Roles: []string{auth.RoleUser}}},
			}))
			t.Cleanup(srv.Close)

			got := client{t, srv.URL, "user-token"}.do("GET", "/api/environment", "")
			var listed []secrets.EnvVar
			if err := json.Unmarshal([]byte(got.body), &listed); got.status != http.StatusOK || err != nil {
				t.Fatalf("GET /api/environment: %d %s (%v)", got.status, got.body, err)
			}
			var values []string
			for _, v := range listed {
				values = append(values, v.Value)
			}
			db := strings.Join(values, ",")
			if len(values) > 1 || !slices.Contains(tc.want, db) {
				t.Fatalf("listed %q, want one of %q", values, tc.want)
			}
		})
	}
}
