package auth_test

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/flowvault/flowvault/auth"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// appHeld is application id as the read model holds it (nil: none), as a
// caller's access would have been checked on it.
func appHeld(tb testing.TB, s *auth.Store, id string) *auth.Application {
	tb.Helper()
	a, err := s.GetApplication(context.Background(), id)
	if errors.Is(err, fault.ErrNotFound) {
		return nil
	}
	if err != nil {
		tb.Fatal(err)
	}
	return &a
}

// A write to an application applies to the application the caller's
// access was checked on: one an admin tagged otherwise (a tag grant may be
// what let the caller in) or deleted meanwhile, as a read model that lags
// the log shows it, is left as it is, 409 to send again. A write that
// gives or takes the application's powers (a key, its deletion) is refused
// too once the roles or groups it holds, which the caller had to be able
// to give, are others; a rename, a role or a tag is not.
func TestWritesApplyToTheApplicationChecked(t *testing.T) {
	t.Parallel()
	l := testutil.OpenLog(t, "")
	s, ctx := newEngine(t, l).auth, testutil.Context(t, 120*time.Second)
	must[auth.Group](t)(s.UpsertGroup(ctx, "admins", auth.GroupRequest{Roles: []string{auth.RoleAdmin}}, "root"))
	payTag := []conductor.Tag{{Key: "team", Value: "pay"}}

	changes := []struct {
		name   string
		powers bool // refuses only the writes of the application's powers
		change func(id string)
	}{
		{"tagged", false, func(id string) {
			if err := s.ChangeApplicationTags(ctx, id, []conductor.Tag{{Key: "team", Value: "admins"}}, false, "root", appHeld(t, s, id)); err != nil {
				t.Fatal(err)
			}
		}},
		{"untagged", false, func(id string) {
			if err := s.ChangeApplicationTags(ctx, id, payTag, true, "root", appHeld(t, s, id)); err != nil {
				t.Fatal(err)
			}
		}},
		{"deleted", false, func(id string) {
			if err := s.DeleteApplication(ctx, id, "root", appHeld(t, s, id)); err != nil {
				t.Fatal(err)
			}
		}},
		{"made admin", true, func(id string) {
			if err := s.SetApplicationRole(ctx, id, auth.RoleAdmin, false, "root", appHeld(t, s, id)); err != nil {
				t.Fatal(err)
			}
		}},
		{"put in a group", true, func(id string) {
			if err := s.ChangeMembers(ctx, "admins", []string{auth.AppPrefix + id}, false, "root"); err != nil {
				t.Fatal(err)
			}
		}},
	}
	writes := []struct {
		name   string
		powers bool
		write  func(id, keyID string, checked *auth.Application) error
	}{
		{"rename", false, func(id, _ string, checked *auth.Application) error {
			_, err := s.UpdateApplication(ctx, id, "renamed", "alice", checked)
			return err
		}},
		{"add a role", false, func(id, _ string, checked *auth.Application) error {
			return s.SetApplicationRole(ctx, id, auth.RoleWorker, false, "alice", checked)
		}},
		{"remove a role", false, func(id, _ string, checked *auth.Application) error {
			return s.SetApplicationRole(ctx, id, auth.RoleMetadataAPI, true, "alice", checked)
		}},
		{"tag", false, func(id, _ string, checked *auth.Application) error {
			return s.ChangeApplicationTags(ctx, id, []conductor.Tag{{Key: "env", Value: "prod"}}, false, "alice", checked)
		}},
		{"untag", false, func(id, _ string, checked *auth.Application) error {
			return s.ChangeApplicationTags(ctx, id, payTag, true, "alice", checked)
		}},
		{"delete", true, func(id, _ string, checked *auth.Application) error {
			return s.DeleteApplication(ctx, id, "alice", checked)
		}},
		{"create a key", true, func(id, _ string, checked *auth.Application) error {
			_, err := s.CreateAccessKey(ctx, id, "alice", checked)
			return err
		}},
		{"pause a key", true, func(id, keyID string, checked *auth.Application) error {
			_, err := s.ToggleAccessKey(ctx, id, keyID, "alice", checked)
			return err
		}},
		{"delete a key", true, func(id, keyID string, checked *auth.Application) error {
			return s.DeleteAccessKey(ctx, id, keyID, "alice", checked)
		}},
	}
	type held struct {
		app  *auth.Application
		keys []auth.AccessKey
	}
	state := func(id string) held {
		t.Helper()
		keys, err := s.AccessKeys(ctx, id)
		if err != nil && !errors.Is(err, fault.ErrNotFound) {
			t.Fatal(err)
		}
		return held{appHeld(t, s, id), keys}
	}
	// alice's application, tagged for a grant and with a role and a key to
	// change; a key costs an argon2id hash, so the rows share applications
	// where they can.
	newApp := func() (id, keyID string) {
		t.Helper()
		app := must[auth.Application](t)(s.CreateApplication(ctx, "billing", "alice"))
		if err := s.ChangeApplicationTags(ctx, app.ID, payTag, false, "alice", appHeld(t, s, app.ID)); err != nil {
			t.Fatal(err)
		}
		if err := s.SetApplicationRole(ctx, app.ID, auth.RoleMetadataAPI, false, "alice", appHeld(t, s, app.ID)); err != nil {
			t.Fatal(err)
		}
		key := must[auth.NewAccessKey](t)(s.CreateAccessKey(ctx, app.ID, "alice", appHeld(t, s, app.ID)))
		return app.ID, key.ID
	}
	for _, c := range changes {
		for _, w := range writes {
			t.Run(c.name+"/"+w.name, func(t *testing.T) {
				id, keyID := newApp()
				checked := appHeld(t, s, id)
				c.change(id)
				before := state(id)
				err := w.write(id, keyID, checked)
				if c.powers && !w.powers {
					if err != nil {
						t.Fatalf("%s of an application %s since its check: %v, want it done", w.name, c.name, err)
					}
					return
				}
				if !errors.Is(err, fault.ErrStale) || !errors.Is(err, fault.ErrConflict) {
					t.Fatalf("%s of an application %s since its check: %v, want stale (409)", w.name, c.name, err)
				}
				if after := state(id); !reflect.DeepEqual(after, before) {
					t.Fatalf("the application changed:\n%+v\nwant\n%+v", after, before)
				}
			})
		}
	}
	// Checked as absent (a read model that has not seen its creation), an
	// application is not touched either.
	for _, w := range writes {
		t.Run("checked absent/"+w.name, func(t *testing.T) {
			id, keyID := newApp()
			before := state(id)
			if err := w.write(id, keyID, nil); !errors.Is(err, fault.ErrStale) {
				t.Fatalf("%s of an application created since a check found none: %v, want stale", w.name, err)
			}
			if after := state(id); !reflect.DeepEqual(after, before) {
				t.Fatalf("the application changed:\n%+v\nwant\n%+v", after, before)
			}
		})
	}
}
