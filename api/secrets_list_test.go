package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flowvault/flowvault/api"
	"github.com/flowvault/flowvault/auth"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/secrets"
)

// readLog records the names whose data a listing read to show it, apart
// from the names whose creator and tags the Authorizer decided on in the
// listing's snapshot, and counts the snapshots taken and the revisions
// read (one per name a listing would check and read at the state
// checked).
type readLog struct {
	mu        sync.Mutex
	read      []string
	described []string

	revisions atomic.Int64
	snapshots atomic.Int64
}

// wasRead reports whether the store was asked for name's data.
func (l *readLog) wasRead(name string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Contains(l.read, name)
}

// wasDescribed reports whether the snapshot was asked what access to name
// follows.
func (l *readLog) wasDescribed(name string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Contains(l.described, name)
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

func (l *readLog) describe(name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.described = append(l.described, name)
}

func (l *readLog) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.read, l.described = nil, nil
	l.revisions.Store(0)
	l.snapshots.Store(0)
}

// tagsReadStore is a secret store that records whose tags (or other
// metadata) the API read: a whole listing counts as a read of every
// secret's.
type tagsReadStore struct {
	api.SecretStore
	readLog
}

func (s *tagsReadStore) Snapshot(ctx context.Context) (api.SecretSnapshot, error) {
	s.snapshots.Add(1)
	sn, err := s.SecretStore.Snapshot(ctx)
	if err != nil {
		return nil, err
	}
	return tagsReadSnapshot{SecretSnapshot: sn, log: &s.readLog}, nil
}

func (s *tagsReadStore) Revision(ctx context.Context, name string) (secrets.Revision, error) {
	s.revisions.Add(1)
	return s.SecretStore.Revision(ctx, name)
}

func (s *tagsReadStore) TagsAt(ctx context.Context, name string, rev secrets.Revision) ([]conductor.Tag, error) {
	s.saw(name)
	return s.SecretStore.TagsAt(ctx, name, rev)
}

func (s *tagsReadStore) MetadataAt(ctx context.Context, name string, rev secrets.Revision) (*secrets.Meta, error) {
	s.saw(name)
	return s.SecretStore.MetadataAt(ctx, name, rev)
}

// tagsReadSnapshot is a listing's snapshot of tagsReadStore.
type tagsReadSnapshot struct {
	api.SecretSnapshot
	log *readLog
}

func (sn tagsReadSnapshot) Access(name string) (string, []conductor.Tag, error) {
	sn.log.describe(name)
	return sn.SecretSnapshot.Access(name)
}

func (sn tagsReadSnapshot) Tags(name string) ([]conductor.Tag, error) {
	sn.log.saw(name)
	return sn.SecretSnapshot.Tags(name)
}

func (sn tagsReadSnapshot) List() ([]secrets.Meta, error) {
	all, err := sn.SecretSnapshot.List()
	for _, m := range all {
		sn.log.saw(m.Name)
	}
	return all, err
}

// The secrets lists check the caller's access on each secret before they
// read anything of it to show: a user who may read the secrets it
// created, and not the admin's, gets its own, with their tags as before,
// and the API read the tags of no other to show (the Authorizer reads
// them for its decision, in the listing's snapshot). The admin, whom
// every check allows, gets every secret from one read, nothing decided.
// Each listing takes one snapshot and reads no revision.
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
	store := &tagsReadStore{SecretStore: api.SecretStore{Store: e.s}}
	authz := auth.NewAuthorizer(&fixedGrants{})
	authz.Register(auth.TargetSecret, secretSource{e.s, e.env})
	srv := httptest.NewServer(api.New(api.Deps{Logger: testutil.Logger(t), Secrets: store, Authorizer: authz,
		Tokens: tokenPrincipals{
			"user-token":  {ID: pinUser, Roles: []string{auth.RoleUser}},
			"admin-token": {ID: pinAdmin, Roles: []string{auth.RoleAdmin}},
		}}))
	t.Cleanup(srv.Close)

	mine := []string{"mine-a", "mine-b"}
	tagged := func(name, by string) map[string]any {
		return map[string]any{"name": name, "tags": []any{map[string]any{"key": "owner", "value": by}}}
	}
	withTags := []map[string]any{tagged("mine-a", pinUser), tagged("mine-b", pinUser)}
	all := []map[string]any{tagged("mine-a", pinUser), tagged("mine-b", pinUser), tagged("theirs", pinAdmin)}
	for _, tc := range []struct {
		token, method, path string
		want                any
		checked             bool // decided on each secret's creator and tags
	}{
		{"user-token", "GET", "/api/secrets", mine, true},
		{"user-token", "POST", "/api/secrets", mine, true},
		{"user-token", "GET", "/api/secrets-v2", withTags, true},
		{"user-token", "GET", "/api/secrets/v2", withTags, true},
		{"user-token", "GET", "/api/secrets-v2?access=READ&access=DELETE", withTags, true},
		{"admin-token", "GET", "/api/secrets", []string{"mine-a", "mine-b", "theirs"}, false},
		{"admin-token", "GET", "/api/secrets-v2", all, false},
		{"admin-token", "GET", "/api/secrets/v2?access=DELETE", all, false},
	} {
		store.reset()
		got := client{t, srv.URL, tc.token}.do(tc.method, tc.path, "")
		want, _ := json.Marshal(tc.want)
		var gotV, wantV any
		_ = json.Unmarshal(want, &wantV)
		if err := json.Unmarshal([]byte(got.body), &gotV); err != nil || got.status != http.StatusOK || !reflect.DeepEqual(gotV, wantV) {
			t.Errorf("%s: %s %s = %d %s, want %s", tc.token, tc.method, tc.path, got.status, got.body, want)
		}
		if n, m := store.revisions.Load(), store.snapshots.Load(); n != 0 || m != 1 {
			t.Errorf("%s: %s %s read %d revisions in %d snapshots, want 0 in 1", tc.token, tc.method, tc.path, n, m)
		}
		if got := store.wasDescribed("theirs"); got != tc.checked {
			t.Errorf("%s: %s %s decided on the creator and tags of the admin's secret in its snapshot: %t, want %t", tc.token, tc.method, tc.path, got, tc.checked)
		}
		if tc.token == "user-token" && store.wasRead("theirs") {
			t.Fatalf("%s %s: the API read the metadata of a secret the caller may not see", tc.method, tc.path)
		}
	}
}

// envReadStore is an environment that records whose value (or tags) the
// API read: a whole listing counts as a read of every value's.
type envReadStore struct {
	api.EnvStore
	readLog
}

func (s *envReadStore) Snapshot(ctx context.Context) (api.EnvSnapshot, error) {
	s.snapshots.Add(1)
	sn, err := s.EnvStore.Snapshot(ctx)
	if err != nil {
		return nil, err
	}
	return envReadSnapshot{EnvSnapshot: sn, log: &s.readLog}, nil
}

func (s *envReadStore) Revision(ctx context.Context, name string) (secrets.Revision, error) {
	s.revisions.Add(1)
	return s.EnvStore.Revision(ctx, name)
}

func (s *envReadStore) Get(ctx context.Context, name string) (string, error) {
	s.saw(name)
	return s.EnvStore.Get(ctx, name)
}

func (s *envReadStore) GetAt(ctx context.Context, name string, rev secrets.Revision) (string, error) {
	s.saw(name)
	return s.EnvStore.GetAt(ctx, name, rev)
}

// envReadSnapshot is a listing's snapshot of envReadStore.
type envReadSnapshot struct {
	api.EnvSnapshot
	log *readLog
}

func (sn envReadSnapshot) Access(name string) (string, []conductor.Tag, error) {
	sn.log.describe(name)
	return sn.EnvSnapshot.Access(name)
}

func (sn envReadSnapshot) Var(name string) (secrets.EnvVar, error) {
	sn.log.saw(name)
	return sn.EnvSnapshot.Var(name)
}

func (sn envReadSnapshot) List() ([]secrets.EnvVar, error) {
	all, err := sn.EnvSnapshot.List()
	for _, v := range all {
		sn.log.saw(v.Name)
	}
	return all, err
}

// GET /api/environment checks the caller's access on each value before it
// reads anything of it to show. A user who may read the value it created
// and one the admin tagged team:x (a READ grant on the tag), and not the
// admin's other value, is listed those two with their values and tags,
// as before; the admin is listed all three, from one read, nothing
// decided; and the API read nothing of the admin's other value for the
// user (the Authorizer reads creators and tags for its decision, in the
// listing's snapshot, without the value). Each listing takes one
// snapshot and reads no revision.
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
	store := &envReadStore{EnvStore: api.EnvStore{Env: e.env}}
	authz := auth.NewAuthorizer(&fixedGrants{grants: []auth.Grant{{
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
		store.reset()
		got := client{t, srv.URL, tc.token}.do("GET", "/api/environment", "")
		var gotV any
		if err := json.Unmarshal([]byte(got.body), &gotV); err != nil || got.status != http.StatusOK || !reflect.DeepEqual(gotV, any(tc.want)) {
			t.Errorf("%s: GET /api/environment = %d %s, want %v", tc.token, got.status, got.body, tc.want)
		}
		if n, m := store.revisions.Load(), store.snapshots.Load(); n != 0 || m != 1 {
			t.Errorf("%s: GET /api/environment read %d revisions in %d snapshots, want 0 in 1", tc.token, n, m)
		}
		if got, checked := store.wasDescribed("theirs"), tc.token == "user-token"; got != checked {
			t.Errorf("%s: GET /api/environment decided on the creator and tags of the admin's value in its snapshot: %t, want %t", tc.token, got, checked)
		}
		if tc.token == "user-token" && store.wasRead("theirs") {
			t.Errorf("listing for the user, the API read the value of one the caller may not read")
		}
	}
}

// BenchmarkSecretListings lists 5,000 tagged secrets and 5,000 tagged
// environment values, all the admin's, as the admin and as a user who may
// read none of them.
func BenchmarkSecretListings(b *testing.B) {
	const n = 5000
	ctx := testutil.Context(b, 5*time.Minute)
	e, _ := newSecretsEngine(b, testutil.OpenLog(b, ""), secrets.GenerateMasterKey(), true)
	for i := range n {
		name := fmt.Sprintf("key_%04d", i)
		tags := []conductor.Tag{{Key: "team", Value: string(rune('a' + i%10))}}
		_, err := e.s.Put(ctx, name, []byte("value"), pinAdmin)
		if err == nil {
			err = e.s.PutTags(ctx, name, tags, pinAdmin)
		}
		if err == nil {
			err = e.env.Put(ctx, name, "value", pinAdmin)
		}
		if err == nil {
			err = e.env.PutTags(ctx, name, tags, pinAdmin)
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	authz := auth.NewAuthorizer(&fixedGrants{})
	authz.Register(auth.TargetSecret, secretSource{e.s, e.env})
	authz.Register(auth.TargetEnvVariable, secretSource{e.s, e.env})
	srv := httptest.NewServer(api.New(api.Deps{Logger: testutil.Logger(b), Secrets: api.SecretStore{Store: e.s}, Environment: api.EnvStore{Env: e.env}, Authorizer: authz,
		Tokens: tokenPrincipals{
			"user-token":  {ID: pinUser, Roles: []string{auth.RoleUser}},
			"admin-token": {ID: pinAdmin, Roles: []string{auth.RoleAdmin}},
		}}))
	b.Cleanup(srv.Close)
	for _, path := range []string{"/api/secrets", "/api/secrets-v2", "/api/environment"} {
		for _, token := range []string{"admin-token", "user-token"} {
			b.Run(strings.TrimPrefix(path, "/api/")+" as "+strings.TrimSuffix(token, "-token"), func(b *testing.B) {
				for b.Loop() {
					get(b, srv.URL+path, token)
				}
			})
		}
	}
}
