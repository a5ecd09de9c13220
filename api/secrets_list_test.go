package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/flowvault/flowvault/api"
	"github.com/flowvault/flowvault/auth"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/secrets"
)

// tagsReadStore is a secret store that records whose tags (or other
// metadata) the API read: a whole listing counts as a read of every
// secret's.
type tagsReadStore struct {
	*secrets.Store
	mu   sync.Mutex
	read []string
}

func (s *tagsReadStore) saw(names ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range names {
		if !slices.Contains(s.read, n) {
			s.read = append(s.read, n)
		}
	}
}

func (s *tagsReadStore) List(ctx context.Context) ([]secrets.Meta, error) {
	all, err := s.Store.List(ctx)
	for _, m := range all {
		s.saw(m.Name)
	}
	return all, err
}

func (s *tagsReadStore) Tags(ctx context.Context, name string) ([]conductor.Tag, error) {
	s.saw(name)
	return s.Store.Tags(ctx, name)
}

func (s *tagsReadStore) TagsAt(ctx context.Context, name string, rev secrets.Revision) ([]conductor.Tag, error) {
	s.saw(name)
	return s.Store.TagsAt(ctx, name, rev)
}

func (s *tagsReadStore) Metadata(ctx context.Context, name string) (*secrets.Meta, error) {
	s.saw(name)
	return s.Store.Metadata(ctx, name)
}

// The secrets lists check the caller's access on each secret before they
// read anything of it but its name: a user who may read the secrets it
// created, and not the admin's, gets its own, with their tags as before,
// and the API read the tags of no other (the Authorizer reads them for
// its decision, from its own source).
func TestSecretListsReadOnlyWhatTheCallerMaySee(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, time.Minute)
	e, _ := newSecretsEngine(t, testutil.OpenLog(t, ""), secrets.GenerateMasterKey(), true)
	for _, sc := range []struct{ name, by string }{{"mine-a", pinUser}, {"theirs", pinAdmin}, {"mine-b", pinUser}} {
		if _, err := e.s.Put(ctx, sc.name, []byte("value of "+sc.name), sc.by); err != nil {
			t.Fatal(err)
		}
		if err := e.s.PutTags(ctx, sc.name, []conductor.Tag{{Key: "owner", Value: sc.by}}, sc.by); err != nil {
			t.Fatal(err)
		}
	}
	store := &tagsReadStore{Store: e.s}
	authz := auth.NewAuthorizer(&interleavedGrants{})
	authz.Register(auth.TargetSecret, secretSource{e.s, e.env})
	srv := httptest.NewServer(api.New(api.Deps{Logger: testutil.Logger(t), Secrets: store, Authorizer: authz,
		Tokens: tokenPrincipals{"user-token": {ID: pinUser, Roles: []string{auth.RoleUser}}}}))
	t.Cleanup(srv.Close)
	user := client{t, srv.URL, "user-token"}

	mine := []string{"mine-a", "mine-b"}
	withTags := []map[string]any{
		{"name": "mine-a", "tags": []any{map[string]any{"key": "owner", "value": pinUser}}},
		{"name": "mine-b", "tags": []any{map[string]any{"key": "owner", "value": pinUser}}},
	}
	for _, tc := range []struct {
		method, path string
		want         any
	}{
		{"GET", "/api/secrets", mine},
		{"POST", "/api/secrets", mine},
		{"GET", "/api/secrets-v2", withTags},
		{"GET", "/api/secrets/v2", withTags},
		{"GET", "/api/secrets-v2?access=READ&access=DELETE", withTags},
	} {
		got := user.do(tc.method, tc.path, "")
		want, _ := json.Marshal(tc.want)
		var gotV, wantV any
		_ = json.Unmarshal(want, &wantV)
		if err := json.Unmarshal([]byte(got.body), &gotV); err != nil || got.status != http.StatusOK || !reflect.DeepEqual(gotV, wantV) {
			t.Errorf("%s %s = %d %s, want %s", tc.method, tc.path, got.status, got.body, want)
		}
	}
	store.mu.Lock()
	defer store.mu.Unlock()
	if slices.Contains(store.read, "theirs") {
		t.Fatalf("the API read the metadata of %v, of a secret the caller may not see", store.read)
	}
}
