package node

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/flowvault/flowvault/api"
	"github.com/flowvault/flowvault/auth"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/secrets"
)

// accessMeanwhile is a store whose values are changed once, as soon as
// a decision has read one's creator and tags the first time; it counts
// those reads.
type accessMeanwhile struct {
	reads  *int
	change func()
}

func (m accessMeanwhile) read() {
	if *m.reads++; *m.reads == 1 {
		m.change()
	}
}

// after counts a read of a creator and tags, and answers it.
func (m accessMeanwhile) after(creator string, tags []conductor.Tag, err error) (string, []conductor.Tag, error) {
	m.read()
	return creator, tags, err
}

type secretAccessMeanwhile struct {
	api.SecretStore
	accessMeanwhile
}

func (s secretAccessMeanwhile) Access(ctx context.Context, name string) (string, []conductor.Tag, error) {
	return s.after(s.SecretStore.Access(ctx, name))
}

type envAccessMeanwhile struct {
	api.EnvStore
	accessMeanwhile
}

func (e envAccessMeanwhile) Access(ctx context.Context, name string) (string, []conductor.Tag, error) {
	return e.after(e.EnvStore.Access(ctx, name))
}

// decidedOnce is a decision a principal's READ of a target should get,
// on the state the target's source read first.
type decidedOnce struct {
	who     string
	allowed bool
	reason  string
}

// check asks READ on target for d.who, of role USER, with src registered
// for its type and carol holding READ on what carries team:a, and checks
// the decision and that it read the target's creator and tags once.
func (d decidedOnce) check(ctx context.Context, t *testing.T, src any, target auth.Target, m accessMeanwhile) {
	t.Helper()
	authz := auth.NewAuthorizer(fakeGrants{{
		Subject: auth.Subject{Type: auth.SubjectUser, ID: "carol"},
		Target:  auth.Target{Type: auth.TargetTag, ID: "team:a"},
		Access:  []auth.Access{auth.Read},
	}})
	authz.Register(target.Type, src)
	p := auth.Principal{ID: d.who, Roles: []string{auth.RoleUser}}
	got := authz.Check(ctx, p, auth.Read, auth.Resource{Target: target})
	if got.Err != nil || got.Allowed != d.allowed || got.Reason != d.reason {
		t.Errorf("%s reads %s: allowed=%v (%s, err %v), want %v (%s)", d.who, target, got.Allowed, got.Reason, got.Err, d.allowed, d.reason)
	}
	if *m.reads != 1 {
		t.Errorf("the decision read %s's creator and tags %d times, want once", target, *m.reads)
	}
}

// A decision on a secret or environment value reads its creator and tags
// once, in one state. alice's "db", tagged team:a, on which carol holds a
// TAG grant, is deleted and created again by bob, untagged, as soon as
// the decision has read it: the decision is alice's "db"'s, carol's by
// the tag and not bob's. Read apart (tags, then creator), the former
// life's tags met the new life's creator: bob was allowed as the creator
// of a secret whose tags were alice's, carol's grant on them was applied
// to bob's, and the record was read twice.
func TestSecretDescribeReadsOnce(t *testing.T) {
	t.Parallel()
	teamA := []conductor.Tag{{Key: "team", Value: "a"}}
	kinds := []struct {
		targetType string
		put        func(ctx context.Context, s *secrets.Store, env *secrets.Env, by string, tags []conductor.Tag) error
		del        func(ctx context.Context, s *secrets.Store, env *secrets.Env) error
	}{{
		targetType: auth.TargetSecret,
		put: func(ctx context.Context, s *secrets.Store, _ *secrets.Env, by string, tags []conductor.Tag) error {
			if _, err := s.Put(ctx, "db", []byte("value of "+by), by); err != nil || tags == nil {
				return err
			}
			return s.PutTags(ctx, "db", tags, by)
		},
		del: func(ctx context.Context, s *secrets.Store, _ *secrets.Env) error { return s.Delete(ctx, "db", "admin") },
	}, {
		targetType: auth.TargetEnvVariable,
		put: func(ctx context.Context, _ *secrets.Store, env *secrets.Env, by string, tags []conductor.Tag) error {
			if err := env.Put(ctx, "db", "value of "+by, by); err != nil || tags == nil {
				return err
			}
			return env.PutTags(ctx, "db", tags, by)
		},
		del: func(ctx context.Context, _ *secrets.Store, env *secrets.Env) error {
			_, err := env.Delete(ctx, "db", "admin")
			return err
		},
	}}
	for _, k := range kinds {
		for _, tc := range []decidedOnce{
			{"carol", true, "tag team:a granted to USER:carol"},
			{"bob", false, "no grant of READ on " + k.targetType + ":db"},
		} {
			t.Run(fmt.Sprintf("%s %s", k.targetType, tc.who), func(t *testing.T) {
				t.Parallel()
				ctx := testutil.Context(t, time.Minute)
				s, env := openSecrets(ctx, t)
				if err := k.put(ctx, s, env, "alice", teamA); err != nil {
					t.Fatal(err)
				}
				var reads int
				meanwhile := accessMeanwhile{reads: &reads, change: func() {
					err := k.del(ctx, s, env)
					if err == nil {
						err = k.put(ctx, s, env, "bob", nil)
					}
					if err != nil {
						t.Errorf("the change made meanwhile: %v", err)
					}
				}}
				tc.check(ctx, t, secretTargets{secretAccessMeanwhile{api.SecretStore{Store: s}, meanwhile},
					envAccessMeanwhile{api.EnvStore{Env: env}, meanwhile}}, auth.Target{Type: k.targetType, ID: "db"}, meanwhile)
			})
		}
	}
}
