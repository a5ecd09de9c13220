package node

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/flowvault/flowvault/api"
	"github.com/flowvault/flowvault/auth"
	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/projections"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/secrets"
)

// Where a tag's listing meets a change: just before it takes its
// snapshot, or once it has read the names in it.
const (
	beforeSnapshot = "before its snapshot"
	afterNames     = "once its names are read"
)

// tagChange is a change made once, where a listing reaches at.
type tagChange struct {
	at   string
	make func()
	made bool
}

func (c *tagChange) reached(at string) {
	if at == c.at && !c.made {
		c.made = true
		c.make()
	}
}

// secretsMeanwhile is the secrets, whose listings reach the points of
// change.
type secretsMeanwhile struct {
	api.SecretStore
	change *tagChange
}

func (s secretsMeanwhile) Snapshot(ctx context.Context) (api.SecretSnapshot, error) {
	s.change.reached(beforeSnapshot)
	sn, err := s.SecretStore.Snapshot(ctx)
	if err != nil {
		return nil, err
	}
	return secretNamesMeanwhile{sn, s.change}, nil
}

type secretNamesMeanwhile struct {
	api.SecretSnapshot
	change *tagChange
}

func (sn secretNamesMeanwhile) Names() ([]string, error) {
	names, err := sn.SecretSnapshot.Names()
	sn.change.reached(afterNames)
	return names, err
}

// envMeanwhile is secretsMeanwhile for the environment values.
type envMeanwhile struct {
	api.EnvStore
	change *tagChange
}

func (e envMeanwhile) Snapshot(ctx context.Context) (api.EnvSnapshot, error) {
	e.change.reached(beforeSnapshot)
	sn, err := e.EnvStore.Snapshot(ctx)
	if err != nil {
		return nil, err
	}
	return envNamesMeanwhile{sn, e.change}, nil
}

type envNamesMeanwhile struct {
	api.EnvSnapshot
	change *tagChange
}

func (sn envNamesMeanwhile) Names() ([]string, error) {
	names, err := sn.EnvSnapshot.Names()
	sn.change.reached(afterNames)
	return names, err
}

// tagGrants are grants to anyone asked.
type tagGrants []auth.Grant

func (g tagGrants) GrantsOn(context.Context, auth.Target) ([]auth.Grant, error) { return nil, nil }

func (g tagGrants) GrantsTo(context.Context, auth.Subject, string) ([]auth.Grant, error) {
	return g, nil
}

// openSecrets opens the secrets and environment values of one engine on
// a log of their own.
func openSecrets(ctx context.Context, t *testing.T) (*secrets.Store, *secrets.Env) {
	t.Helper()
	l := testutil.OpenLog(t, "")
	keys, err := secrets.OpenKeys(ctx, l.JetStream(), secrets.GenerateMasterKey(), secrets.KeysOptions{Logger: testutil.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	store := testutil.OpenStore(t)
	runner := testutil.RunProjection(t, l, store, secrets.Projection{}, projections.RunnerConfig{Stream: eventlog.Secrets.Name})
	opts := secrets.Options{Logger: testutil.Logger(t)}
	return secrets.New(l, store, runner, keys, opts), secrets.NewEnv(l, store, runner, opts)
}

// A permissions listing shows what a TAG grant covers of the secrets and
// environment values as one state of them: their names and each one's
// tags are read in one snapshot. A value removed and another created
// meanwhile, both tagged, are listed as the snapshot holds them: the new
// one alone before it is taken, the removed one alone once its names are
// read. Names read live, and each one's tags then read live, listed
// neither: the removed name, whose tags were no longer found, and not
// the new one, never read, a state the values never had.
func TestTaggedListingIsOneState(t *testing.T) {
	t.Parallel()
	tagged := []conductor.Tag{{Key: "team", Value: "x"}}
	kinds := []struct {
		targetType string
		put, del   func(ctx context.Context, s *secrets.Store, env *secrets.Env, name string) error
	}{{
		targetType: auth.TargetSecret,
		put: func(ctx context.Context, s *secrets.Store, _ *secrets.Env, name string) error {
			if _, err := s.Put(ctx, name, []byte("value of "+name), "admin"); err != nil {
				return err
			}
			return s.PutTags(ctx, name, tagged, "admin")
		},
		del: func(ctx context.Context, s *secrets.Store, _ *secrets.Env, name string) error {
			return s.Delete(ctx, name, "admin")
		},
	}, {
		targetType: auth.TargetEnvVariable,
		put: func(ctx context.Context, _ *secrets.Store, env *secrets.Env, name string) error {
			if err := env.Put(ctx, name, "value of "+name, "admin"); err != nil {
				return err
			}
			return env.PutTags(ctx, name, tagged, "admin")
		},
		del: func(ctx context.Context, _ *secrets.Store, env *secrets.Env, name string) error {
			_, err := env.Delete(ctx, name, "admin")
			return err
		},
	}}
	for _, k := range kinds {
		for _, when := range []struct {
			at   string
			want string
		}{
			{beforeSnapshot, "came"},
			{afterNames, "went"},
		} {
			t.Run(fmt.Sprintf("%s changed %s", k.targetType, when.at), func(t *testing.T) {
				t.Parallel()
				ctx := testutil.Context(t, time.Minute)
				s, env := openSecrets(ctx, t)
				if err := k.put(ctx, s, env, "went"); err != nil {
					t.Fatal(err)
				}
				change := &tagChange{at: when.at, make: func() {
					err := k.del(ctx, s, env, "went")
					if err == nil {
						err = k.put(ctx, s, env, "came")
					}
					if err != nil {
						t.Errorf("the change made meanwhile: %v", err)
					}
				}}
				authz := auth.NewAuthorizer(tagGrants{{
					Subject: auth.Subject{Type: auth.SubjectGroup, ID: "team"},
					Target:  auth.Target{Type: auth.TargetTag, ID: "team:x"},
					Access:  []auth.Access{auth.Read},
				}})
				targets := secretTargets{secretsMeanwhile{api.SecretStore{Store: s}, change}, envMeanwhile{api.EnvStore{Env: env}, change}}
				authz.Register(k.targetType, targets)
				granted, err := authz.GrantedAccess(ctx, []auth.Subject{{Type: auth.SubjectGroup, ID: "team"}})
				if err != nil {
					t.Fatal(err)
				}
				if !change.made {
					t.Fatal("the change never landed")
				}
				var listed []string
				for _, g := range granted {
					if g.Tag == "team:x" {
						listed = append(listed, g.Target.String())
					}
				}
				if want := []string{auth.Target{Type: k.targetType, ID: when.want}.String()}; !slices.Equal(listed, want) {
					t.Errorf("the TAG grant covers %q, want %q", listed, want)
				}
			})
		}
	}
}
