package guard

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowvault/flowvault/auth"
	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/projections"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/secrets"
)

// changedWhileChecked allows every read, and while it checks the first
// one, someone changes the secret.
type changedWhileChecked struct {
	once   sync.Once
	change func()
}

func (c *changedWhileChecked) Authorize(context.Context, string, auth.Access, auth.Target) (string, error) {
	c.once.Do(c.change)
	return "tag team:x", nil
}

// valueWrites are the writes a test makes on a secret or an environment
// value named "db".
type valueWrites struct {
	put        func(value, by string) error
	tag, untag func(tags []conductor.Tag, by string) error
	del        func(by string) error
}

// handedKinds are the values a hand-off resolves after an access check:
// open gives the guard's configuration serving one and its writes.
var handedKinds = []struct {
	name, ref string
	open      func(t *testing.T, ctx context.Context) (Config, valueWrites)
}{{
	name: "secret", ref: "${workflow.secrets.db}",
	open: func(t *testing.T, ctx context.Context) (Config, valueWrites) {
		s, _ := openStore(t, ctx)
		return Config{Secrets: s}, valueWrites{
			put: func(value, by string) error {
				_, err := s.Put(ctx, "db", []byte(value), by)
				return err
			},
			tag:   func(tags []conductor.Tag, by string) error { return s.PutTags(ctx, "db", tags, by) },
			untag: func(tags []conductor.Tag, by string) error { return s.DeleteTags(ctx, "db", tags, by) },
			del:   func(by string) error { return s.Delete(ctx, "db", by) },
		}
	},
}, {
	name: "environment value", ref: "${workflow.env.db}",
	open: func(t *testing.T, ctx context.Context) (Config, valueWrites) {
		l := testutil.OpenLog(t, "")
		store := testutil.OpenStore(t)
		runner := testutil.RunProjection(t, l, store, secrets.Projection{}, projections.RunnerConfig{Stream: eventlog.Secrets.Name})
		env := secrets.NewEnv(l, store, runner, secrets.Options{Logger: testutil.Logger(t)})
		return Config{Env: env}, valueWrites{
			put:   func(value, by string) error { return env.Put(ctx, "db", value, by) },
			tag:   func(tags []conductor.Tag, by string) error { return env.PutTags(ctx, "db", tags, by) },
			untag: func(tags []conductor.Tag, by string) error { return env.DeleteTags(ctx, "db", tags, by) },
			del: func(by string) error {
				_, err := env.Delete(ctx, "db", by)
				return err
			},
		}
	},
}}

// A secret or an environment value (tag grants apply to them too)
// changed while its access is checked for a hand-off is not handed over
// on that check: created again by another principal, the workflow's
// principal would get a value it was allowed to read only as the old
// one's creator; untagged, one it was allowed by the tag. The hand-off
// fails retryably (neither missing nor forbidden, which fail the task),
// and the next one, checked on the value as it is now, goes through.
func TestHandOffServesTheSecretItChecked(t *testing.T) {
	tag := []conductor.Tag{{Key: "team", Value: "x"}}
	for _, k := range handedKinds {
		for _, tc := range []struct {
			name   string
			change func(w valueWrites) error
			want   string // what the hand-off checked again gets
		}{
			{"untagged", func(w valueWrites) error { return w.untag(tag, "app:admin") }, "users-value-1"},
			{"deleted and created again by another", func(w valueWrites) error {
				if err := w.del("app:admin"); err != nil {
					return err
				}
				return w.put("admins-value-77", "app:admin")
			}, "admins-value-77"},
		} {
			t.Run(k.name+"/"+tc.name, func(t *testing.T) {
				ctx := testutil.Context(t, 60*time.Second)
				cfg, w := k.open(t, ctx)
				if err := w.put("users-value-1", "app:user"); err != nil {
					t.Fatal(err)
				}
				if err := w.tag(tag, "app:user"); err != nil {
					t.Fatal(err)
				}
				change := func() {
					if err := tc.change(w); err != nil {
						t.Error(err)
					}
				}
				cfg.Authz = &changedWhileChecked{change: change}
				g := New(cfg)
				wf := applyAll(t, nil,
					&schemas.WorkflowStarted{WorkflowID: "wf-1", Name: "w", Version: 1, CreatedBy: "app:user",
						Def: []byte(`{"name":"w","version":1,"tasks":[{"name":"call","taskReferenceName":"call","type":"SIMPLE"}]}`)},
					&schemas.TaskScheduled{TaskID: "t1", Ref: "call", Name: "call", Type: "SIMPLE", Status: "SCHEDULED",
						Input: map[string]any{"pw": k.ref}, Deferred: [][]any{{"pw"}}, Time: 1})

				in, _, err := g.Prepare(ctx, wf, wf.Tasks[0])
				if in != nil || !errors.Is(err, fault.ErrStale) ||
					errors.Is(err, fault.ErrNotFound) || errors.Is(err, fault.ErrForbidden) || errors.Is(err, fault.ErrInvalid) {
					t.Fatalf("hand-off checked before the %s was %s: %v, %v; want nothing and fault.ErrStale", k.name, tc.name, in, err)
				}
				if strings.Contains(err.Error(), "value") {
					t.Fatalf("the refusal %q names a value", err)
				}
				in, _, err = g.Prepare(ctx, wf, wf.Tasks[0])
				if err != nil || in["pw"] != tc.want {
					t.Fatalf("hand-off checked again: %v, %v; want %q", in, err, tc.want)
				}
			})
		}
	}
}
