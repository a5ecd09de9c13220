package metadata_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/metadata"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// changedPhrase is what a write refused for a changed definition says.
const changedPhrase = "changed while this request's access was being checked"

func subjectOf(kind metadata.Kind, name string) string {
	if kind == metadata.KindTask {
		return metadata.TaskSubject(name)
	}
	return metadata.WorkflowSubject(name)
}

func lastSeq(tb testing.TB, n *node, subject string) uint64 {
	tb.Helper()
	seq, err := n.log.LastSeq(ctx(tb), subject)
	if err != nil {
		tb.Fatal(err)
	}
	return seq
}

func revision(tb testing.TB, n *node, kind metadata.Kind, name string) metadata.Revision {
	tb.Helper()
	rev, err := n.md.Revision(ctx(tb), kind, name)
	if err != nil {
		tb.Fatal(err)
	}
	return rev
}

func team(v string) []conductor.Tag { return []conductor.Tag{{Key: "team", Value: v}} }

// register stores definition name of kind as principal, tagged team:tag.
func register(tb testing.TB, n *node, kind metadata.Kind, name, principal, tag string) {
	tb.Helper()
	c := ctx(tb)
	var err error
	if kind == metadata.KindTask {
		err = n.md.UpdateTaskDef(c, td(tb, `{"name":"`+name+`"}`), principal)
	} else {
		err = n.md.RegisterWorkflowDef(c, wf(tb, simpleWF(name, 1, principal)), true, principal)
	}
	if err == nil {
		err = n.md.SetTags(c, kind, name, team(tag), principal)
	}
	if err != nil {
		tb.Fatal(err)
	}
}

// remove deletes definition name of kind (version 1 of a workflow).
func remove(tb testing.TB, n *node, kind metadata.Kind, name string) {
	tb.Helper()
	var err error
	if kind == metadata.KindTask {
		err = n.md.DeleteTaskDef(ctx(tb), name, "admin")
	} else {
		err = n.md.DeleteWorkflowDef(ctx(tb), name, 1, "admin")
	}
	if err != nil {
		tb.Fatal(err)
	}
}

// A write pinned to the revision its access was checked on applies to that
// revision only: whatever changed the definition since (created,
// re-created, re-tagged) refuses it with a conflict and nothing is
// appended. On the revision it was checked on, the same write goes through.
func TestWritesApplyOnlyToTheCheckedRevision(t *testing.T) {
	t.Parallel()
	n := newNode(t, nil, metadata.Options{})
	c := ctx(t)
	wfKind, taskKind := metadata.KindWorkflow, metadata.KindTask
	type write func(name string, rev metadata.Revision) error
	writes := []struct {
		name string
		kind metadata.Kind
		// bulk writes report a failure per name in their response.
		bulk bool
		do   write
	}{
		{"register workflow", wfKind, false, func(name string, rev metadata.Revision) error {
			return n.md.RegisterWorkflowDef(c, wf(t, simpleWF(name, 1, "mallory")), true, "mallory", metadata.At(rev))
		}},
		{"put workflows", wfKind, true, func(name string, rev metadata.Revision) error {
			resp, err := n.md.PutWorkflowDefs(c, []*conductor.WorkflowDef{wf(t, simpleWF(name, 1, "mallory"))}, true, "mallory", metadata.At(rev))
			if err != nil {
				return err
			}
			if msg, failed := resp.BulkErrorResults[name]; failed {
				return errors.New(msg)
			}
			return nil
		}},
		{"delete workflow", wfKind, false, func(name string, rev metadata.Revision) error {
			return n.md.DeleteWorkflowDef(c, name, 1, "mallory", metadata.At(rev))
		}},
		{"register task defs", taskKind, false, func(name string, rev metadata.Revision) error {
			return n.md.RegisterTaskDefs(c, []*conductor.TaskDef{td(t, `{"name":"`+name+`","retryCount":0}`)}, "mallory", metadata.At(rev))
		}},
		{"update task def", taskKind, false, func(name string, rev metadata.Revision) error {
			return n.md.UpdateTaskDef(c, td(t, `{"name":"`+name+`","retryCount":0}`), "mallory", metadata.At(rev))
		}},
		{"delete task def", taskKind, false, func(name string, rev metadata.Revision) error {
			return n.md.DeleteTaskDef(c, name, "mallory", metadata.At(rev))
		}},
	}
	for _, kind := range []metadata.Kind{wfKind, taskKind} {
		for _, op := range []struct {
			name string
			do   func(metadata.Kind, string, []conductor.Tag, string, ...metadata.WriteOption) error
		}{
			{"add tags", func(k metadata.Kind, name string, tags []conductor.Tag, p string, o ...metadata.WriteOption) error {
				return n.md.AddTags(c, k, name, tags, p, o...)
			}},
			{"set tags", func(k metadata.Kind, name string, tags []conductor.Tag, p string, o ...metadata.WriteOption) error {
				return n.md.SetTags(c, k, name, tags, p, o...)
			}},
			{"delete tags", func(k metadata.Kind, name string, tags []conductor.Tag, p string, o ...metadata.WriteOption) error {
				return n.md.DeleteTags(c, k, name, tags, p, o...)
			}},
		} {
			writes = append(writes, struct {
				name string
				kind metadata.Kind
				bulk bool
				do   write
			}{fmt.Sprintf("%s of %s", op.name, kind), kind, false, func(name string, rev metadata.Revision) error {
				return op.do(kind, name, team("mallory"), "mallory", metadata.At(rev))
			}})
		}
	}
	changes := []struct {
		name string
		// existed: the definition exists when access is checked.
		existed bool
		change  func(kind metadata.Kind, name string)
	}{
		{"created", false, func(kind metadata.Kind, name string) { register(t, n, kind, name, "admin", "b") }},
		{"re-created", true, func(kind metadata.Kind, name string) {
			remove(t, n, kind, name)
			register(t, n, kind, name, "admin", "a")
		}},
		{"re-tagged", true, func(kind metadata.Kind, name string) {
			if err := n.md.SetTags(c, kind, name, team("b"), "admin"); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for i, w := range writes {
		for j, ch := range changes {
			t.Run(w.name+" on a definition "+ch.name, func(t *testing.T) {
				name := fmt.Sprintf("def_%d_%d", i, j)
				if ch.existed {
					register(t, n, w.kind, name, "alice", "a")
				}
				checked := revision(t, n, w.kind, name)
				if checked.Exists != ch.existed {
					t.Fatalf("revision exists = %v, want %v", checked.Exists, ch.existed)
				}
				ch.change(w.kind, name)
				subject := subjectOf(w.kind, name)
				before := lastSeq(t, n, subject)

				err := w.do(name, checked)
				if err == nil || !strings.Contains(err.Error(), changedPhrase) || !strings.Contains(err.Error(), name) {
					t.Fatalf("write on a changed definition: %v, want a conflict naming %s", err, name)
				}
				if !w.bulk && !errors.Is(err, fault.ErrConflict) {
					t.Fatalf("err = %v, want fault.ErrConflict", err)
				}
				if after := lastSeq(t, n, subject); after != before {
					t.Fatalf("a refused write appended: last sequence %d, was %d", after, before)
				}
				// Checked again, on the state it now writes to, it goes through.
				if err := w.do(name, revision(t, n, w.kind, name)); err != nil {
					t.Fatalf("write on the checked revision: %v", err)
				}
			})
		}
	}
}

// A revision tells whether a definition is stored under its name, and at
// which sequence of the name's subject, whatever other names begin or
// continue it: a task definition's is a lookup of its key, a workflow's a
// look for any of its versions.
func TestRevisionTellsWhatIsStored(t *testing.T) {
	t.Parallel()
	n := newNode(t, nil, metadata.Options{})
	for _, kind := range []metadata.Kind{metadata.KindWorkflow, metadata.KindTask} {
		register(t, n, kind, "stored", "alice", "a")
		register(t, n, kind, "gone", "alice", "a")
		remove(t, n, kind, "gone")
		register(t, n, kind, "longer_name", "alice", "a")
		for _, tt := range []struct {
			name   string
			exists bool
		}{
			{"stored", true},
			{"gone", false},
			{"never", false},
			{"longer", false}, // a stored name begins with it
			{"stored_too", false},
			{"longer_name", true},
		} {
			t.Run(fmt.Sprintf("%s %s", kind, tt.name), func(t *testing.T) {
				rev := revision(t, n, kind, tt.name)
				if rev.Exists != tt.exists {
					t.Errorf("exists = %v, want %v", rev.Exists, tt.exists)
				}
				if want := lastSeq(t, n, subjectOf(kind, tt.name)); rev.Seq != want {
					t.Errorf("seq = %d, want %d, the subject's last", rev.Seq, want)
				}
			})
		}
	}
}

// A bulk registration holding several versions of one workflow (or one
// task definition twice) is checked on one revision per name; its own
// writes do not make its later writes to that name conflict.
func TestPinnedBulkFollowsItsOwnWrites(t *testing.T) {
	t.Parallel()
	n := newNode(t, nil, metadata.Options{})
	c := ctx(t)
	rev := revision(t, n, metadata.KindWorkflow, "multi")
	resp, err := n.md.PutWorkflowDefs(c, []*conductor.WorkflowDef{wf(t, simpleWF("multi", 1, "v1")), wf(t, simpleWF("multi", 2, "v2"))},
		true, "alice", metadata.At(rev))
	if err != nil || len(resp.BulkErrorResults) != 0 || len(resp.BulkSuccessfulResults) != 2 {
		t.Fatalf("bulk = %+v, %v", resp, err)
	}
	if got, err := n.md.GetWorkflowDef(c, "multi", nil); err != nil || got.Version != 2 {
		t.Fatalf("latest = %v, %v; want version 2", got, err)
	}
	rev = revision(t, n, metadata.KindTask, "twice")
	if err := n.md.RegisterTaskDefs(c, []*conductor.TaskDef{td(t, `{"name":"twice","retryCount":1}`), td(t, `{"name":"twice","retryCount":2}`)},
		"alice", metadata.At(rev)); err != nil {
		t.Fatal(err)
	}
	if got, err := n.md.GetTaskDef(c, "twice"); err != nil || *got.RetryCount != 2 {
		t.Fatalf("task = %v, %v; want retryCount 2", got, err)
	}
}

// A pinned write needs the revision of every name it changes, and one
// revision per name.
func TestPinnedWriteNeedsItsRevision(t *testing.T) {
	t.Parallel()
	n := newNode(t, nil, metadata.Options{})
	c := ctx(t)
	other := revision(t, n, metadata.KindWorkflow, "other")
	err := n.md.RegisterWorkflowDef(c, wf(t, simpleWF("mine", 1, "x")), false, "alice", metadata.At(other))
	if err == nil || errors.Is(err, fault.ErrConflict) {
		t.Fatalf("write with another name's revision: %v, want an error that is no conflict", err)
	}
	// A task definition's revision does not pin the workflow of that name.
	asTask := revision(t, n, metadata.KindTask, "mine")
	if err := n.md.RegisterWorkflowDef(c, wf(t, simpleWF("mine", 1, "x")), false, "alice", metadata.At(asTask)); err == nil {
		t.Fatal("a workflow write pinned by a task definition's revision went through")
	}

	register(t, n, metadata.KindWorkflow, "mine", "alice", "a")
	stale := revision(t, n, metadata.KindWorkflow, "mine")
	if err := n.md.SetTags(c, metadata.KindWorkflow, "mine", team("b"), "alice"); err != nil {
		t.Fatal(err)
	}
	current := revision(t, n, metadata.KindWorkflow, "mine")
	err = n.md.SetTags(c, metadata.KindWorkflow, "mine", team("c"), "alice", metadata.At(current, stale))
	if !errors.Is(err, fault.ErrConflict) {
		t.Fatalf("write pinned to two revisions of one name: %v, want a conflict", err)
	}
	if _, err := n.md.Revision(c, "schedule", "mine"); !errors.Is(err, fault.ErrInvalid) {
		t.Fatalf("revision of an unknown kind: %v", err)
	}
}

// unpinned returns a snapshot of n's read model, closed when the test
// ends, and its Unpinned revision of name.
func unpinned(tb testing.TB, n *node, kind metadata.Kind, name string) (*metadata.Snapshot, metadata.Revision) {
	tb.Helper()
	snap, err := n.md.Snapshot(ctx(tb))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := snap.Close(); err != nil {
			tb.Error(err)
		}
	})
	return snap, snap.Unpinned(kind, name)
}

// A read at Unpinned, for a caller every check allows, reads the read
// model as its snapshot holds it, where one at a revision is stale once
// the name moves; no write goes through pinned to it.
func TestUnpinnedReadsWhatIsThere(t *testing.T) {
	t.Parallel()
	n := newNode(t, nil, metadata.Options{})
	c := ctx(t)
	register(t, n, metadata.KindWorkflow, "open", "alice", "a")
	checked := revision(t, n, metadata.KindWorkflow, "open")
	if err := n.md.SetTags(c, metadata.KindWorkflow, "open", team("b"), "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := n.md.GetTagsAt(c, metadata.KindWorkflow, "open", checked); !errors.Is(err, fault.ErrStale) {
		t.Fatalf("tags at the revision before the change: %v, want stale", err)
	}
	snap, asIs := unpinned(t, n, metadata.KindWorkflow, "open")
	if got, err := n.md.GetTagsAt(c, metadata.KindWorkflow, "open", asIs); err != nil || tagString(got) != "team:b " {
		t.Fatalf("tags unpinned = %v, %v; want team:b", got, err)
	}
	if _, err := n.md.GetTagsAt(c, metadata.KindTask, "open", asIs); err == nil {
		t.Fatal("a task definition read at a workflow's unpinned revision")
	}
	err := n.md.SetTags(c, metadata.KindWorkflow, "open", team("c"), "mallory", metadata.At(asIs))
	if err == nil || errors.Is(err, fault.ErrConflict) {
		t.Fatalf("write pinned to Unpinned: %v, want an error that is no conflict", err)
	}
	if got, err := n.md.GetTags(c, metadata.KindWorkflow, "open"); err != nil || tagString(got) != "team:b " {
		t.Fatalf("tags after the refused write = %v, %v; want team:b", got, err)
	}
	remove(t, n, metadata.KindWorkflow, "open")
	if got, err := n.md.GetTagsAt(c, metadata.KindWorkflow, "open", snap.Unpinned(metadata.KindWorkflow, "open")); err != nil || tagString(got) != "team:b " {
		t.Fatalf("tags of the removed workflow in the snapshot taken before = %v, %v; want team:b", got, err)
	}
	_, after := unpinned(t, n, metadata.KindWorkflow, "open")
	if _, err := n.md.GetWorkflowDefAt(c, "open", nil, after); !errors.Is(err, fault.ErrNotFound) {
		t.Fatalf("removed workflow unpinned: %v, want not found", err)
	}
}

// A snapshot answers what a listing decides access on (DefAccess) and
// lists (DefNames, ListTags) as the read model held it when taken: a
// definition removed and another registered afterwards, by someone else,
// are the removed one, with its owner and tags, and no other. What the
// snapshot lacks is not found, not asked of the log.
func TestSnapshotIsOneState(t *testing.T) {
	t.Parallel()
	n := newNode(t, nil, metadata.Options{})
	for _, kind := range []metadata.Kind{metadata.KindWorkflow, metadata.KindTask} {
		t.Run(string(kind), func(t *testing.T) {
			register(t, n, kind, "went_"+string(kind), "alice", "a")
			snap, _ := unpinned(t, n, kind, "went_"+string(kind))
			remove(t, n, kind, "went_"+string(kind))
			register(t, n, kind, "came_"+string(kind), "bob", "b")

			owner, tags, err := snap.DefAccess(kind, "went_"+string(kind))
			if err != nil || owner != "alice" || tagString(tags) != "team:a " {
				t.Errorf("access to the removed one = %q, %v, %v; want alice, team:a", owner, tags, err)
			}
			_, _, err = snap.DefAccess(kind, "came_"+string(kind))
			mustNotFound(t, err)
			names, err := snap.DefNames(kind, metadata.TagFilter{})
			if err != nil || !slices.Contains(names, "went_"+string(kind)) || slices.Contains(names, "came_"+string(kind)) {
				t.Errorf("names = %v, %v; want the removed one's, not the new one's", names, err)
			}
			sets, err := snap.ListTags()
			if err != nil {
				t.Fatal(err)
			}
			var tagged []string
			for _, set := range sets {
				if set.Kind == kind {
					tagged = append(tagged, set.Name)
				}
			}
			if !slices.Contains(tagged, "went_"+string(kind)) || slices.Contains(tagged, "came_"+string(kind)) {
				t.Errorf("tagged names = %v; want the removed one's, not the new one's", tagged)
			}
		})
	}
}

// One answer at Unpinned is one state of its name, as one at a revision
// is (or stale): a change that lands between its reads (the definition,
// then its tags) is in none of it. Read from the live read model, the
// answer would hold the definition from before the change with the tags
// from after it, a state the name never had.
func TestUnpinnedAnswerIsOneState(t *testing.T) {
	t.Parallel()
	n := newNode(t, nil, metadata.Options{})
	c := ctx(t)
	withTags := metadata.TagFilter{Tags: true}
	for _, tt := range []struct {
		kind metadata.Kind
		// change makes the name's definitions other, and retags it team:b.
		change func(name string) error
		// read answers the name's definitions with their tags, one
		// "description:tags" each.
		read func(name string, rev metadata.Revision) ([]string, error)
	}{
		{metadata.KindWorkflow, func(name string) error {
			return n.md.RegisterWorkflowDef(c, wf(t, simpleWF(name, 2, "v2")), false, "bob")
		}, func(name string, rev metadata.Revision) ([]string, error) {
			defs, err := n.md.FindWorkflowDefsAt(c, metadata.WorkflowFilter{Name: name, TagFilter: withTags}, rev)
			var out []string
			for _, d := range defs {
				out = append(out, fmt.Sprintf("v%d:%s", d.Version, tagString(d.Tags)))
			}
			return out, err
		}},
		{metadata.KindTask, func(name string) error {
			return n.md.UpdateTaskDef(c, td(t, `{"name":"`+name+`","description":"changed"}`), "bob")
		}, func(name string, rev metadata.Revision) ([]string, error) {
			defs, err := n.md.FindTaskDefsAt(c, name, withTags, rev)
			var out []string
			for _, d := range defs {
				out = append(out, d.Description+":"+tagString(d.Tags))
			}
			return out, err
		}},
	} {
		t.Run(string(tt.kind), func(t *testing.T) {
			name := "one_state_" + string(tt.kind)
			register(t, n, tt.kind, name, "alice", "a")
			before, err := tt.read(name, revision(t, n, tt.kind, name))
			if err != nil {
				t.Fatal(err)
			}
			snap, _ := unpinned(t, n, tt.kind, name)
			var reads int
			var changed error
			snap.HookReads(func() {
				// After the definition's read, before its tags'.
				if reads++; reads == 2 {
					changed = errors.Join(tt.change(name), n.md.SetTags(c, tt.kind, name, team("b"), "bob"))
				}
			})
			got, err := tt.read(name, snap.Unpinned(tt.kind, name))
			if err != nil || changed != nil {
				t.Fatalf("read: %v; change meanwhile: %v", err, changed)
			}
			if reads < 2 {
				t.Fatalf("the answer made %d reads: no change landed between them", reads)
			}
			after, err := tt.read(name, revision(t, n, tt.kind, name))
			if err != nil {
				t.Fatal(err)
			}
			if slices.Equal(before, after) {
				t.Fatalf("the change left %v as it was", before)
			}
			if !slices.Equal(got, before) {
				t.Errorf("unpinned answer %v, want the state before the change %v (after it: %v)", got, before, after)
			}
		})
	}
}

// Another engine's write, which this engine's read model has not applied,
// is a change too: the write is decided again on the log and refused.
func TestPinnedWriteSeesAnotherEngine(t *testing.T) {
	t.Parallel()
	a := newNode(t, nil, metadata.Options{})
	b := newStoppedNode(t, a.log) // its read model stays empty
	c := ctx(t)
	checked := revision(t, b, metadata.KindWorkflow, "raced")
	register(t, a, metadata.KindWorkflow, "raced", "admin", "a")
	err := b.md.RegisterWorkflowDef(c, wf(t, simpleWF("raced", 1, "mallory")), true, "mallory", metadata.At(checked))
	if !errors.Is(err, fault.ErrConflict) {
		t.Fatalf("write checked before another engine's: %v, want a conflict", err)
	}
	if got, err := a.md.GetWorkflowDef(c, "raced", nil); err != nil || got.Description != "admin" {
		t.Fatalf("definition after the refused write: %v, %v", got, err)
	}
	checked = revision(t, b, metadata.KindWorkflow, "calm")
	if err := b.md.RegisterWorkflowDef(c, wf(t, simpleWF("calm", 1, "b")), false, "bob", metadata.At(checked)); err != nil {
		t.Fatalf("write on an unchanged name: %v", err)
	}
}

// A record the read model parked is no change of the definition: a write
// checked on the revision before it still goes through, rather than
// conflicting for good.
func TestPinnedWriteAfterParkedRecord(t *testing.T) {
	t.Parallel()
	n := newNode(t, nil, metadata.Options{})
	c := ctx(t)
	register(t, n, metadata.KindWorkflow, "sturdy", "alice", "a")
	poison := encode(t, &schemas.WorkflowDefRegistered{Name: "sturdy", Version: 1, Def: []byte("not json"), Time: 1})
	seq := appendRaw(t, n.log, metadata.WorkflowSubject("sturdy"), poison)
	n.caughtUp(t)
	parked, err := n.store.Parked(metadata.ProjectionName)
	if err != nil || len(parked) != 1 || parked[0].Seq != seq {
		t.Fatalf("parked = %+v, %v", parked, err)
	}
	rev := revision(t, n, metadata.KindWorkflow, "sturdy")
	if err := n.md.SetTags(c, metadata.KindWorkflow, "sturdy", team("b"), "alice", metadata.At(rev)); err != nil {
		t.Fatalf("a write after a parked record: %v", err)
	}
	if got, err := n.md.GetTags(c, metadata.KindWorkflow, "sturdy"); err != nil || tagString(got) != "team:b " {
		t.Fatalf("tags = %v, %v", got, err)
	}
}

// ListTags returns every tag set, by kind and name, and forgets a name's
// tags with its last definition.
func TestListTags(t *testing.T) {
	t.Parallel()
	n := newNode(t, nil, metadata.Options{})
	c := ctx(t)
	register(t, n, metadata.KindWorkflow, "flow/a", "alice", "a")
	if err := n.md.AddTags(c, metadata.KindWorkflow, "flow/a", []conductor.Tag{{Key: "env", Value: "prod"}}, "alice"); err != nil {
		t.Fatal(err)
	}
	register(t, n, metadata.KindTask, "task_b", "alice", "a")
	register(t, n, metadata.KindWorkflow, "untagged", "alice", "a")
	if err := n.md.SetTags(c, metadata.KindWorkflow, "untagged", nil, "alice"); err != nil {
		t.Fatal(err)
	}
	list := func() string {
		t.Helper()
		sets, err := n.md.ListTags(c)
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		for _, s := range sets {
			fmt.Fprintf(&b, "%s %s: %s| ", s.Kind, s.Name, tagString(s.Tags))
		}
		return b.String()
	}
	if got, want := list(), "task task_b: team:a | workflow flow/a: team:a env:prod | "; got != want {
		t.Fatalf("tags = %q, want %q", got, want)
	}
	remove(t, n, metadata.KindWorkflow, "flow/a")
	if got, want := list(), "task task_b: team:a | "; got != want {
		t.Fatalf("after removing the workflow: %q, want %q", got, want)
	}
}

// BenchmarkGetTagsAt measures a read of a definition's tags at the
// revision its caller's access was checked on, as a GET of one
// definition's tags reads them.
func BenchmarkGetTagsAt(b *testing.B) {
	n := newNode(b, nil, metadata.Options{})
	c := ctx(b)
	for _, kind := range []metadata.Kind{metadata.KindWorkflow, metadata.KindTask} {
		b.Run(string(kind), func(b *testing.B) {
			register(b, n, kind, "bench", "alice", "a")
			rev := revision(b, n, kind, "bench")
			b.ReportAllocs()
			for b.Loop() {
				if _, err := n.md.GetTagsAt(c, kind, "bench", rev); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRevision measures the read of a definition's revision that
// every pinned access check starts with (a GET of one, each name of a
// user's listing), for a task definition of a size users register.
func BenchmarkRevision(b *testing.B) {
	n := newNode(b, nil, metadata.Options{})
	registerUserSized(b, n, "bench")
	c := ctx(b)
	b.ReportAllocs()
	for b.Loop() {
		if rev, err := n.md.Revision(c, metadata.KindTask, "bench"); err != nil || !rev.Exists {
			b.Fatalf("revision = %+v, %v", rev, err)
		}
	}
}
