package metadata_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/metadata"
	"github.com/flowvault/flowvault/projections"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
)

func dump(tb testing.TB, s *projections.Store) string {
	tb.Helper()
	var b bytes.Buffer
	if err := s.Dump(&b); err != nil {
		tb.Fatal(err)
	}
	return b.String()
}

// A read model rebuilt from an empty Pebble directory is identical to the
// one that was built while the changes happened.
func TestProjectionRebuild(t *testing.T) {
	t.Parallel()
	n := newNode(t, nil, metadata.Options{})
	c := ctx(t)
	steps := []func() error{
		func() error { return n.md.RegisterWorkflowDef(c, wf(t, simpleWF("r1", 1, "a")), false, "alice") },
		func() error { return n.md.RegisterWorkflowDef(c, wf(t, simpleWF("r1", 2, "b")), false, "alice") },
		func() error { return n.md.RegisterWorkflowDef(c, wf(t, simpleWF("r1", 1, "c")), true, "bob") },
		func() error { return n.md.DeleteWorkflowDef(c, "r1", 2, "bob") },
		func() error { return n.md.RegisterWorkflowDef(c, wf(t, simpleWF("r.2 *>", 1, "odd name")), false, "") },
		func() error {
			return n.md.AddTags(c, metadata.KindWorkflow, "r1", []conductor.Tag{{Key: "a", Value: "1"}, {Key: "b", Value: "2"}}, "")
		},
		func() error {
			return n.md.DeleteTags(c, metadata.KindWorkflow, "r1", []conductor.Tag{{Key: "a", Value: "1"}}, "")
		},
		func() error {
			return n.md.RegisterTaskDefs(c, []*conductor.TaskDef{td(t, `{"name":"t1","timeoutSeconds":1}`), td(t, `{"name":"t2","timeoutSeconds":2}`)}, "")
		},
		func() error {
			return n.md.SetTags(c, metadata.KindTask, "t1", []conductor.Tag{{Key: "x", Value: "y"}}, "")
		},
		func() error { return n.md.DeleteTaskDef(c, "t2", "") },
		func() error {
			return n.md.UpdateTaskDef(c, td(t, `{"name":"t1","timeoutSeconds":9,"tags":[{"key":"z","value":"w"}]}`), "")
		},
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	n.caughtUp(t)
	before := dump(t, n.store)

	rebuilt := testutil.OpenStore(t)
	r := runProjection(t, n.log, rebuilt)
	ctx := testutil.Context(t, 30*time.Second)
	last, err := n.log.StreamLastSeq(ctx, eventlog.Metadata.Name)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.WaitFor(ctx, last); err != nil {
		t.Fatal(err)
	}
	if after := dump(t, rebuilt); after != before {
		t.Fatalf("rebuilt read model differs\nbefore:\n%s\nafter:\n%s", before, after)
	}
	for _, want := range []string{`r.2 *>`, `"p/metadata/t/t1"`, `"p/metadata/g/task/t1"`, `"p/metadata/g/workflow/r1"`} {
		if !strings.Contains(before, want) {
			t.Fatalf("dump lacks %s:\n%s", want, before)
		}
	}
}

func appendRaw(tb testing.TB, l *eventlog.Log, subject string, envs ...schemas.Envelope) uint64 {
	tb.Helper()
	for i := range envs {
		envs[i].ID = subject + "-" + envs[i].Type + "-" + time.Now().Format(time.RFC3339Nano)
		envs[i].Time = time.Now().UnixNano()
	}
	seq, err := l.Append(ctx(tb), subject, envs, eventlog.ExpectAny)
	if err != nil {
		tb.Fatal(err)
	}
	return seq
}

func encode(tb testing.TB, ev schemas.Event) schemas.Envelope {
	tb.Helper()
	env, err := schemas.Default.Encode(ev)
	if err != nil {
		tb.Fatal(err)
	}
	return env
}

// Records the projection cannot apply are parked without writing anything;
// events of unknown types are ignored; writers still get past them.
func TestProjectionPoisonAndUnknown(t *testing.T) {
	t.Parallel()
	n := newNode(t, nil, metadata.Options{})
	c := ctx(t)
	good := encode(t, &schemas.WorkflowDefRegistered{Name: "ok", Version: 1, Def: []byte(`{"name":"ok","tasks":[]}`), Time: 1})

	// Poison: a definition that is not JSON, a payload that is not msgpack,
	// an event for another name than its subject's. Each record also holds
	// a good event, which must not be applied either.
	notJSON := encode(t, &schemas.WorkflowDefRegistered{Name: "bad1", Version: 1, Def: []byte("not json"), Time: 1})
	appendRaw(t, n.log, metadata.WorkflowSubject("bad1"), encode(t, &schemas.DefTagsSet{Kind: "workflow", Name: "bad1", Time: 1}), notJSON)
	// Well-formed msgpack of the wrong shape: the record decodes, the event
	// does not.
	corrupt := schemas.Envelope{Type: schemas.TypeTaskDefRegistered, Version: 1, Data: []byte{0x93, 1, 2, 3}}
	appendRaw(t, n.log, metadata.TaskSubject("bad2"), corrupt)
	appendRaw(t, n.log, metadata.WorkflowSubject("bad3"), good)
	// A webhook that is not a JSON object, and one on another's subject.
	appendRaw(t, n.log, metadata.WebhookSubject("bad4"), encode(t, &schemas.WebhookSaved{ID: "bad4", Def: []byte("[1]"), Time: 1}))
	appendRaw(t, n.log, metadata.WebhookSubject("bad5"), encode(t, &schemas.WebhookSaved{ID: "other", Def: []byte(`{"name":"x"}`), Time: 1}))
	// A schema whose version is out of range, and a removal of another's.
	appendRaw(t, n.log, metadata.SchemaSubject("bad6"), encode(t, &schemas.SchemaSaved{Name: "bad6", Version: 0, Def: []byte(`{"name":"bad6"}`), Time: 1}))
	appendRaw(t, n.log, metadata.SchemaSubject("bad7"), encode(t, &schemas.SchemaRemoved{Name: "other", Time: 1}))

	// Unknown types, beside a good event on the right subject.
	future := schemas.Envelope{Type: "metadata.something_new", Version: 1, Data: []byte{0x81, 0xa1, 'x', 1}}
	note := testutil.NoteEnvelope(t, "n1", 1)
	appendRaw(t, n.log, metadata.WorkflowSubject("ok"), future, note, good)
	n.caughtUp(t)

	parked, err := n.store.Parked(metadata.ProjectionName)
	if err != nil {
		t.Fatal(err)
	}
	var subjects []string
	for _, p := range parked {
		subjects = append(subjects, p.Subject)
	}
	if got, want := strings.Join(subjects, " "), "fv.meta.wfdef.bad1 fv.meta.taskdef.bad2 fv.meta.wfdef.bad3 fv.meta.webhook.bad4 fv.meta.webhook.bad5 fv.meta.schema.bad6 fv.meta.schema.bad7"; got != want {
		t.Fatalf("parked = %s, want %s", got, want)
	}
	for _, line := range strings.Split(dump(t, n.store), "\n") {
		if strings.HasPrefix(line, `"p/`) && strings.Contains(line, "bad") {
			t.Fatalf("a poison record left data behind: %s", line)
		}
	}
	if _, err := n.md.GetWorkflowDef(c, "ok", nil); err != nil {
		t.Fatalf("good event beside unknown ones: %v", err)
	}
	if _, err := n.md.Webhook(c, "other"); !errors.Is(err, fault.ErrNotFound) {
		t.Fatalf("a webhook saved on another's subject: %v", err)
	}

	// The read model never recorded the poison records' sequence; a write
	// conflicts, reads the subject from the log and succeeds.
	if err := n.md.RegisterWorkflowDef(c, wf(t, simpleWF("bad1", 1, "fixed")), false, ""); err != nil {
		t.Fatal(err)
	}
	if got, err := n.md.GetWorkflowDef(c, "bad1", nil); err != nil || got.Description != "fixed" {
		t.Fatalf("after repair: %v, %v", got, err)
	}
}

// The event handlers' listener hears of commits that applied an event
// handler's record, and of no other: every notice has it read every
// handler, and a schedule's every fire is a record of the same stream.
func TestProjectionNotifiesOfEventHandlersOnly(t *testing.T) {
	t.Parallel()
	store := testutil.OpenStore(t)
	notices := 0
	p := metadata.NewProjection(func() { notices++ })
	for i, tt := range []struct {
		subject string
		ev      schemas.Event
		want    int
	}{
		{metadata.WorkflowSubject("w"), &schemas.WorkflowDefRegistered{Name: "w", Version: 1, Def: []byte(`{"name":"w","tasks":[]}`), Time: 1}, 0},
		{metadata.EventHandlerSubject("h"), &schemas.EventHandlerSaved{Name: "h", Def: []byte(`{"name":"h","event":"nats:a.b","actions":[]}`), Time: 2}, 1},
		{metadata.TaskSubject("t"), &schemas.TaskDefRegistered{Name: "t", Def: []byte(`{"name":"t"}`), Time: 3}, 1},
		{metadata.EventHandlerSubject("h"), &schemas.EventHandlerRemoved{Name: "h", Time: 4}, 2},
	} {
		rec := testutil.Record(t, tt.subject, uint64(i+1), tt.ev)
		if err := store.Update(metadata.ProjectionName, func(b *projections.Batch) error { return p.Apply(b, rec) }); err != nil {
			t.Fatal(err)
		}
		p.Committed(rec.Seq)
		if notices != tt.want {
			t.Fatalf("after a commit of %s: %d notices, want %d", tt.subject, notices, tt.want)
		}
	}
}
