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

// readLog records the names whose data a store was asked for.
type readLog struct {
	mu   sync.Mutex
	read []string
}

func (l *readLog) saw(names ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, n := range names {
		if !slices.Contains(l.read, n) {
			l.read = append(l.read, n)
		}
	}
}

// tagsReadStore is a secret store that records whose tags (or other
// metadata) the API read: a whole listing counts as a read of every
// secret's.
type tagsReadStore struct {
	*secrets.Store
	readLog
}

func (s *tagsReadStore) List(ctx context.Context) ([]secrets.Meta, error) {
	all, err := s.Store.List(ctx)
	for _, m := range all {
		s.saw(m.Name)
	}
	return all, err
}

func (s *tagsReadStore) TagsAt(ctx context.Context, name string, rev secrets.Revision) ([]conductor.Tag, error) {
	s.saw(name)
	return s.Store.TagsAt(ctx, name, rev)
}

func (s *tagsReadStore) MetadataAt(ctx context.Context, name string, rev secrets.Revision) (*secrets.Meta, error) {
	s.saw(name)
	return s.Store.MetadataAt(ctx, name, rev)
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

// envReadStore is an environment that records whose value (or tags) the
// API read: a whole listing counts as a read of every value's.
type envReadStore struct {
	*secrets.Env
	readLog
}

func (s *envReadStore) List(ctx context.Context) ([]secrets.EnvVar, error) {
	all, err := s.Env.List(ctx)
	for _, v := range all {
		s.saw(v.Name)
	}
	return all, err
}

func (s *envReadStore) VarAt(ctx context.Context, name string, rev secrets.Revision) (secrets.EnvVar, error) {
	s.saw(name)
	return s.Env.VarAt(ctx, name, rev)
}

func (s *envReadStore) Get(ctx context.Context, name string) (string, error) {
	s.saw(name)
	return s.Env.Get(ctx, name)
}

func (s *envReadStore) GetAt(ctx context.Context, name string, rev secrets.Revision) (string, error) {
	s.saw(name)
	return s.Env.GetAt(ctx, name, rev)
}

func (s *envReadStore) Tags(ctx context.Context, name string) ([]conductor.Tag, error) {
	s.saw(name)
	return s.Env.Tags(ctx, name)
}

// GET /api/environment checks the caller's access on each value before it
// reads anything of it but its name. A user who may read the value it
// created and one the admin tagged team:x (a READ grant on the tag), and
// not the admin's other value, is listed those two with their values and
// tags, as before; the admin is listed all three; and the API read
// nothing of the admin's other value for the user (the Authorizer reads
// creators and tags for its decision, from its own source).
func TestEnvironmentListReadsOnlyWhatTheCallerMaySee(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, time.Minute)
	e, _ := newSecretsEngine(t, testutil.OpenLog(t, ""), secrets.GenerateMasterKey(), true)
	for _, v := range []struct {
		name, by string
		tag      conductor.Tag
	}{
		{"mine", pinUser, conductor.Tag{Key: "owner", Value: "user"}},
		{"shared", pinAdmin, conductor.Tag{Key: "team", Value: "x"}},
		{"theirs", pinAdmin, conductor.Tag{Key: "team", Value: "y"}},
	} {
		if err := e.env.Put(ctx, v.name, "value of "+v.name, v.by); err != nil {
			t.Fatal(err)
		}
		if err := e.env.PutTags(ctx, v.name, []conductor.Tag{v.tag}, v.by); err != nil {
			t.Fatal(err)
		}
	}
	store := &envReadStore{Env: e.env}
	authz := auth.NewAuthorizer(&interleavedGrants{grants: []auth.Grant{{
		Subject: auth.Subject{Type: auth.SubjectUser, ID: pinUser},
		Target:  auth.Target{Type: auth.TargetTag, ID: "team:x"},
		Access:  []auth.Access{auth.Read},
	}}})
	authz.Register(auth.TargetEnvVariable, secretSource{e.s, e.env})
	srv := httptest.NewServer(api.New(api.Deps{Logger: testutil.Logger(t), Environment: store, Authorizer: authz,
		Tokens: tokenPrincipals{
			"user-token":  {ID: pinUser, Roles: []string{auth.RoleUser}},
			"admin-token": {ID: pinAdmin, Roles: []string{auth.RoleAdmin}},
		}}))
	t.Cleanup(srv.Close)

	listed := func(name, key, value string) map[string]any {
		return map[string]any{"name": name, "value": "value of " + name, "tags": []any{map[string]any{"key": key, "value": value}}}
	}
	mine, shared, theirs := listed("mine", "owner", "user"), listed("shared", "team", "x"), listed("theirs", "team", "y")
	for _, tc := range []struct {
		token string
		want  []any
	}{
		{"user-token", []any{mine, shared}},
		{"admin-token", []any{mine, shared, theirs}},
	} {
		if tc.token == "user-token" {
			store.mu.Lock()
			store.read = nil
			store.mu.Unlock()
		}
		got := client{t, srv.URL, tc.token}.do("GET", "/api/environment", "")
		var gotV any
		if err := json.Unmarshal([]byte(got.body), &gotV); err != nil || got.status != http.StatusOK || !reflect.DeepEqual(gotV, any(tc.want)) {
			t.Errorf("%s: GET /api/environment = %d %s, want %v", tc.token, got.status, got.body, tc.want)
		}
		if tc.token == "user-token" {
			store.mu.Lock()
			read := slices.Clone(store.read)
			store.mu.Unlock()
			if slices.Contains(read, "theirs") {
				t.Errorf("listing for the user, the API read %v: the value of one the caller may not read", read)
			}
		}
	}
}
