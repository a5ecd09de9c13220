package guard

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowvault/flowvault/auth"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/internal/testutil"
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

// A secret changed while its access is checked for a hand-off is not
// handed over on that check: created again by another principal, the
// workflow's principal would get a value it was allowed to read only as
// the old secret's creator; untagged, one it was allowed by the tag.
// The hand-off fails retryably (neither missing nor forbidden, which
// fail the task), and the next one, checked on the secret as it is now,
// goes through.
func TestHandOffServesTheSecretItChecked(t *testing.T) {
	tag := []conductor.Tag{{Key: "team", Value: "x"}}
	for _, tc := range []struct {
		name   string
		change func(ctx context.Context, s *secrets.Store) error
		want   string // what the hand-off checked again gets
	}{
		{"untagged", func(ctx context.Context, s *secrets.Store) error {
			return s.DeleteTags(ctx, "db", tag, "app:admin")
		}, "users-value-1"},
		{"deleted and created again by another", func(ctx context.Context, s *secrets.Store) error {
			if err := s.Delete(ctx, "db", "app:admin"); err != nil {
				return err
			}
			_, err := s.Put(ctx, "db", []byte("admins-value-77"), "app:admin")
			return err
		}, "admins-value-77"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testutil.Context(t, 60*time.Second)
			s, _ := openStore(t, ctx)
			if _, err := s.Put(ctx, "db", []byte("users-value-1"), "app:user"); err != nil {
				t.Fatal(err)
			}
			if err := s.PutTags(ctx, "db", tag, "app:user"); err != nil {
				t.Fatal(err)
			}
			change := func() {
				if err := tc.change(ctx, s); err != nil {
					t.Error(err)
				}
			}
			g := New(Config{Secrets: s, Authz: &changedWhileChecked{change: change}})
			w := applyAll(t, nil,
				&schemas.WorkflowStarted{WorkflowID: "wf-1", Name: "w", Version: 1, CreatedBy: "app:user",
					Def: []byte(`{"name":"w","version":1,"tasks":[{"name":"call","taskReferenceName":"call","type":"SIMPLE"}]}`)},
				&schemas.TaskScheduled{TaskID: "t1", Ref: "call", Name: "call", Type: "SIMPLE", Status: "SCHEDULED",
					Input: map[string]any{"pw": "${workflow.secrets.db}"}, Deferred: [][]any{{"pw"}}, Time: 1})

			in, _, err := g.Prepare(ctx, w, w.Tasks[0])
			if in != nil || !errors.Is(err, fault.ErrStale) ||
				errors.Is(err, fault.ErrNotFound) || errors.Is(err, fault.ErrForbidden) || errors.Is(err, fault.ErrInvalid) {
				t.Fatalf("hand-off checked before the secret was %s: %v, %v; want nothing and fault.ErrStale", tc.name, in, err)
			}
			if strings.Contains(err.Error(), "value") {
				t.Fatalf("the refusal %q names a value", err)
			}
			in, _, err = g.Prepare(ctx, w, w.Tasks[0])
			if err != nil || in["pw"] != tc.want {
				t.Fatalf("hand-off checked again: %v, %v; want %q", in, err, tc.want)
			}
		})
	}
}
