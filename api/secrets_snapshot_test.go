package api_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/flowvault/flowvault/api"
	"github.com/flowvault/flowvault/auth"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/secrets"
)

// secretsSnapshotMeanwhile is the API's secrets, which reach
// beforeSnapshot as a listing takes its snapshot.
type secretsSnapshotMeanwhile struct {
	api.SecretStore
	changes *meanwhile
}

func (s secretsSnapshotMeanwhile) Snapshot(ctx context.Context) (api.SecretSnapshot, error) {
	s.changes.reached(beforeSnapshot)
	return s.SecretStore.Snapshot(ctx)
}

// envSnapshotMeanwhile is secretsSnapshotMeanwhile for the environment.
type envSnapshotMeanwhile struct {
	api.EnvStore
	changes *meanwhile
}

func (e envSnapshotMeanwhile) Snapshot(ctx context.Context) (api.EnvSnapshot, error) {
	e.changes.reached(beforeSnapshot)
	return e.EnvStore.Snapshot(ctx)
}

// newSnapshotServer serves the secrets and environment API of e, whose
// listings reach beforeSnapshot and whose decisions reach duringCheck on
// the meanwhile returned. The user holds role USER and READ on whatever
// is tagged team:x.
func newSnapshotServer(t *testing.T, e *secretsEngine) (*meanwhile, string) {
	t.Helper()
	changes := &meanwhile{}
	authz := auth.NewAuthorizer(grantsMeanwhile{changes: changes, fixedGrants: &fixedGrants{grants: []auth.Grant{{
		Subject: auth.Subject{Type: auth.SubjectUser, ID: pinUser},
		Target:  auth.Target{Type: auth.TargetTag, ID: "team:x"},
		Access:  []auth.Access{auth.Read},
	}}}})
	authz.Register(auth.TargetSecret, secretSource{e.s, e.env})
	authz.Register(auth.TargetEnvVariable, secretSource{e.s, e.env})
	srv := httptest.NewServer(api.New(api.Deps{
		Logger:      testutil.Logger(t),
		Secrets:     secretsSnapshotMeanwhile{SecretStore: api.SecretStore{Store: e.s}, changes: changes},
		Environment: envSnapshotMeanwhile{EnvStore: api.EnvStore{Env: e.env}, changes: changes},
		Authorizer:  authz,
		Tokens: tokenPrincipals{
			"user-token":  {ID: pinUser, Roles: []string{auth.RoleUser}},
			"admin-token": {ID: pinAdmin, Roles: []string{auth.RoleAdmin}},
		},
	}))
	t.Cleanup(srv.Close)
	return changes, srv.URL
}

// A secrets or environment listing reads its names in the snapshot it
// decides its caller's access in and reads what it shows in: a value
// removed and another created meanwhile are answered as the snapshot
// holds them. Just before the snapshot is taken, that is the new one
// alone, to the admin and to the user (both are tagged team:x, which the
// user may read); once the user's listing has started to check the names
// it read, it is the removed one alone. Names read from the live store,
// each then checked and read live, would list neither: the removed name,
// found in no value, and not the new one, never read, a state the values
// never had.
func TestSecretListingIsOneState(t *testing.T) {
	t.Parallel()
	kinds := []struct {
		name  string
		paths []string
		put   func(ctx context.Context, e *secretsEngine, name string) error
		del   func(ctx context.Context, e *secretsEngine, name string) error
	}{{
		name:  "secret",
		paths: []string{"GET /api/secrets", "POST /api/secrets", "GET /api/secrets-v2", "GET /api/secrets/v2?access=READ"},
		put: func(ctx context.Context, e *secretsEngine, name string) error {
			if _, err := e.s.Put(ctx, name, []byte("value of "+name), pinAdmin); err != nil {
				return err
			}
			return e.s.PutTags(ctx, name, []conductor.Tag{{Key: "team", Value: "x"}, {Key: "name", Value: name}}, pinAdmin)
		},
		del: func(ctx context.Context, e *secretsEngine, name string) error { return e.s.Delete(ctx, name, pinAdmin) },
	}, {
		name:  "environment value",
		paths: []string{"GET /api/environment"},
		put: func(ctx context.Context, e *secretsEngine, name string) error {
			if err := e.env.Put(ctx, name, "value of "+name, pinAdmin); err != nil {
				return err
			}
			return e.env.PutTags(ctx, name, []conductor.Tag{{Key: "team", Value: "x"}, {Key: "name", Value: name}}, pinAdmin)
		},
		del: func(ctx context.Context, e *secretsEngine, name string) error {
			_, err := e.env.Delete(ctx, name, pinAdmin)
			return err
		},
	}}
	for _, k := range kinds {
		for _, path := range k.paths {
			for _, when := range oneStateChanges {
				t.Run(fmt.Sprintf("%s, the %s's, changed %s", path, when.who, when.what), func(t *testing.T) {
					t.Parallel()
					ctx := testutil.Context(t, time.Minute)
					e, _ := newSecretsEngine(t, testutil.OpenLog(t, ""), secrets.GenerateMasterKey(), true)
					changes, base := newSnapshotServer(t, e)
					if err := k.put(ctx, e, "went"); err != nil {
						t.Fatal(err)
					}
					changes.arm(when.at, func() {
						err := k.del(ctx, e, "went")
						if err == nil {
							err = k.put(ctx, e, "came")
						}
						if err != nil {
							t.Errorf("the change made meanwhile: %v", err)
						}
					})
					method, target, _ := strings.Cut(path, " ")
					got := client{t, base, when.who + "-token"}.must(http.StatusOK, method, target, "")
					if !changes.fired() {
						t.Fatal("the change never landed")
					}
					if !strings.Contains(got, `"`+when.want+`"`) || strings.Contains(got, `"`+when.gone+`"`) {
						t.Errorf("the %s is listed %s, want %s alone", when.who, got, when.want)
					}
				})
			}
		}
	}
}
