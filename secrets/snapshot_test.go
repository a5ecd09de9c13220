package secrets

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// A snapshot answers the state it was taken in: a secret and an
// environment value removed after it, and one of each created after it
// by someone else, are answered as before the change, by every read a
// listing makes (names, access, what it shows), and a snapshot taken
// since answers the change.
func TestSnapshotIsOneState(t *testing.T) {
	t.Parallel()
	p := newProc(t, nil, nil, false)
	ctx := testutil.Context(t, time.Minute)
	tagged := func(name string) []conductor.Tag { return []conductor.Tag{{Key: "name", Value: name}} }
	put := func(name, by string) error {
		if _, err := p.s.Put(ctx, name, []byte("value of "+name), by); err != nil {
			return err
		}
		if err := p.s.PutTags(ctx, name, tagged(name), by); err != nil {
			return err
		}
		if err := p.env.Put(ctx, name, "value of "+name, by); err != nil {
			return err
		}
		return p.env.PutTags(ctx, name, tagged(name), by)
	}
	if err := put("went", "alice"); err != nil {
		t.Fatal(err)
	}
	secrets, err := p.s.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer secrets.Close()
	env, err := p.env.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer env.Close()
	if err := p.s.Delete(ctx, "went", "bob"); err != nil {
		t.Fatal(err)
	}
	if _, err := p.env.Delete(ctx, "went", "bob"); err != nil {
		t.Fatal(err)
	}
	if err := put("came", "bob"); err != nil {
		t.Fatal(err)
	}

	// described renders what a read answered of one name.
	described := func(first string, tags []conductor.Tag) string { return fmt.Sprintf("%s %v", first, tags) }
	for _, tc := range []struct {
		what          string
		names         func() ([]string, error)
		list          func() ([]string, error)
		access, shown func(name string) (string, error)
		wentShown     string
	}{
		{"secrets", secrets.Names, func() ([]string, error) {
			all, err := secrets.List()
			var out []string
			for _, m := range all {
				out = append(out, m.Name+" "+described(m.CreatedBy, m.Tags))
			}
			return out, err
		}, func(name string) (string, error) {
			creator, tags, err := secrets.Access(name)
			return described(creator, tags), err
		}, func(name string) (string, error) {
			tags, err := secrets.Tags(name)
			return described("", tags), err
		}, " [{name went }]"},
		{"environment values", env.Names, func() ([]string, error) {
			all, err := env.List()
			var out []string
			for _, v := range all {
				out = append(out, v.Name+" "+described(v.Value, v.Tags))
			}
			return out, err
		}, func(name string) (string, error) {
			creator, tags, err := env.Access(name)
			return described(creator, tags), err
		}, func(name string) (string, error) {
			v, err := env.Var(name)
			return described(v.Value, v.Tags), err
		}, "value of went [{name went }]"},
	} {
		if names, err := tc.names(); err != nil || !slices.Equal(names, []string{"went"}) {
			t.Errorf("%s: the snapshot's names are %q (%v), want went alone", tc.what, names, err)
		}
		if list, err := tc.list(); err != nil || len(list) != 1 || !strings.HasPrefix(list[0], "went ") || !strings.HasSuffix(list[0], " [{name went }]") {
			t.Errorf("%s: the snapshot lists %q (%v), want went alone", tc.what, list, err)
		}
		if got, err := tc.access("went"); err != nil || got != "alice [{name went }]" {
			t.Errorf("%s: the snapshot's access to went is %q (%v), want alice's and its tag", tc.what, got, err)
		}
		if got, err := tc.shown("went"); err != nil || got != tc.wentShown {
			t.Errorf("%s: the snapshot shows went as %q (%v), want %q", tc.what, got, err, tc.wentShown)
		}
		for what, read := range map[string]func(string) (string, error){"access": tc.access, "showing": tc.shown} {
			if got, err := read("came"); !errors.Is(err, fault.ErrNotFound) {
				t.Errorf("%s: the snapshot's %s of came, created after it, is %q (%v), want not found", tc.what, what, got, err)
			}
		}
	}
	now, err := p.s.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer now.Close()
	if names, err := now.Names(); err != nil || !slices.Equal(names, []string{"came"}) {
		t.Errorf("the secrets' names now are %q (%v), want came alone", names, err)
	}
}
