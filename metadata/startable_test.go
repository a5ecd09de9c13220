package metadata_test

import (
	"fmt"
	"reflect"
	"testing"

	"github.com/flowvault/flowvault/metadata"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// LookupStartable answers a definition with the owner and tags of its
// name in the same state, from the read model or, when that lacks it, the
// log: a name deleted and registered again answers its new owner with
// the new definition, never one with the other's.
func TestLookupStartable(t *testing.T) {
	t.Parallel()
	a := newNode(t, nil, metadata.Options{})
	stale := newStoppedNode(t, a.log)
	c := ctx(t)
	pay := []conductor.Tag{{Key: "team", Value: "pay"}}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(a.md.RegisterWorkflowDef(c, wf(t, simpleWF("versions", 1, "one")), true, "alice"))
	must(a.md.RegisterWorkflowDef(c, wf(t, simpleWF("versions", 2, "two")), true, "bob"))
	must(a.md.AddTags(c, metadata.KindWorkflow, "versions", pay, "alice"))
	must(a.md.RegisterWorkflowDef(c, wf(t, simpleWF("moved", 1, "alice's")), true, "alice"))
	must(a.md.AddTags(c, metadata.KindWorkflow, "moved", pay, "alice"))
	must(a.md.DeleteWorkflowDef(c, "moved", 1, "alice"))
	must(a.md.RegisterWorkflowDef(c, wf(t, simpleWF("moved", 1, "carol's")), true, "carol"))
	must(a.md.RegisterWorkflowDef(c, wf(t, simpleWF("deleted", 1, "")), true, "alice"))
	must(a.md.DeleteWorkflowDef(c, "deleted", 1, "alice"))
	a.caughtUp(t)

	for _, tt := range []struct {
		name    string
		version *int
		want    string // description; "": not found
		owner   string
		tags    []conductor.Tag
	}{
		{"versions", nil, "two", "alice", pay},
		// No version 0, though the latest (its cache key's version 0)
		// was looked up a moment ago.
		{"versions", ptr(0), "", "", nil},
		{"versions", ptr(1), "one", "alice", pay},
		{"versions", ptr(3), "", "", nil},
		{"moved", nil, "carol's", "carol", []conductor.Tag{}},
		{"deleted", nil, "", "", nil},
		{"nowhere", nil, "", "", nil},
	} {
		for _, n := range []struct {
			from string
			md   *metadata.Store
		}{{"read model", a.md}, {"log", stale.md}} {
			version := "latest"
			if tt.version != nil {
				version = fmt.Sprint(*tt.version)
			}
			t.Run(fmt.Sprintf("%s %s from the %s", tt.name, version, n.from), func(t *testing.T) {
				st, err := n.md.LookupStartable(c, tt.name, tt.version)
				if tt.want == "" {
					mustNotFound(t, err)
					return
				}
				if err != nil || st.Def.Description != tt.want || st.Owner != tt.owner || !reflect.DeepEqual(st.Tags, tt.tags) {
					t.Fatalf("startable = %+v, %v; want %q of %q, tagged %v", st, err, tt.want, tt.owner, tt.tags)
				}
			})
		}
	}
}

// LookupStartable answers one state of the name also when the name moves
// while the live read model is read: alice's definition deleted and
// bob's registered after her ownership was read answers bob's definition
// with bob, where it answered bob's as alice's, and her start, allowed as
// its owner, ran it with bob as its author.
func TestLookupStartableReadsOneStateOfAMovingName(t *testing.T) {
	t.Parallel()
	n := newNode(t, nil, metadata.Options{})
	c := ctx(t)
	if err := n.md.RegisterWorkflowDef(c, wf(t, simpleWF("moving", 1, "alice's")), true, "alice"); err != nil {
		t.Fatal(err)
	}
	reads, moved := 0, false
	n.md.HookLiveReads(func() {
		// The lookup's third read: the name's sequence and owner were read,
		// its tags and definition are not yet. The change's own reads come
		// through here too, once it is made.
		if reads++; reads != 3 {
			return
		}
		if err := n.md.DeleteWorkflowDef(c, "moving", 1, "alice"); err != nil {
			t.Error(err)
		}
		if err := n.md.RegisterWorkflowDef(c, wf(t, simpleWF("moving", 1, "bob's")), true, "bob"); err != nil {
			t.Error(err)
		}
		moved = true
	})
	st, err := n.md.LookupStartable(c, "moving", nil)
	if !moved {
		t.Fatalf("startable = %+v, %v before the name moved", st, err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if st.Owner+"'s" != st.Def.Description {
		t.Fatalf("startable = %s's definition of %q, want one owner's definition with its owner", st.Owner, st.Def.Description)
	}
}

// DefAccess answers one state of the name also when the name moves while
// the live read model is read: alice's definition deleted and bob's
// registered and tagged after her ownership was read answers bob with
// his tags, where it answered bob's tags as alice's, and a decision for
// alice counted her the owner of what they tag.
func TestDefAccessReadsOneStateOfAMovingName(t *testing.T) {
	t.Parallel()
	for _, kind := range []metadata.Kind{metadata.KindWorkflow, metadata.KindTask} {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			n := newNode(t, nil, metadata.Options{})
			register(t, n, kind, "moving", "alice", "alices")
			reads, moved := 0, false
			n.md.HookLiveReads(func() {
				// The third read: the name's sequence and owner were read,
				// its tags are not yet.
				if reads++; reads != 3 {
					return
				}
				remove(t, n, kind, "moving")
				register(t, n, kind, "moving", "bob", "bobs")
				moved = true
			})
			owner, tags, err := n.md.DefAccess(ctx(t), kind, "moving")
			if !moved {
				t.Fatalf("access = %s, %v, %v before the name moved", owner, tags, err)
			}
			if err != nil {
				t.Fatal(err)
			}
			if want := team(owner + "s"); !reflect.DeepEqual(tags, want) {
				t.Fatalf("access = %s's, tagged %v; want one owner's with its tags", owner, tags)
			}
		})
	}
}
