package metadata_test

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/metadata"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/nats-io/nats.go"
)

func TestWorkflowDefLifecycle(t *testing.T) {
	t.Parallel()
	n := newNode(t, nil, metadata.Options{})
	c := ctx(t)
	for _, js := range []string{simpleWF("b", 0, "b1"), simpleWF("a", 2, "a2"), simpleWF("a", 1, "a1"), simpleWF("a", 10, "a10")} {
		if err := n.md.RegisterWorkflowDef(c, wf(t, js), false, "alice"); err != nil {
			t.Fatal(err)
		}
	}

	latest, err := n.md.GetWorkflowDef(c, "a", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := latest.Version, 10; got != want {
		t.Fatalf("latest version = %d, want %d", got, want)
	}
	v2, err := n.md.GetWorkflowDef(c, "a", ptr(2))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := v2.Description, "a2"; got != want {
		t.Fatalf("description = %q, want %q", got, want)
	}
	b, err := n.md.GetWorkflowDef(c, "b", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := b.Version, 1; got != want {
		t.Fatalf("absent version stored as %d, want %d", got, want)
	}

	all, err := n.md.ListWorkflowDefs(c)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range all {
		got = append(got, fmt.Sprintf("%s.%d", d.Name, d.Version))
	}
	if want := "a.1 a.2 a.10 b.1"; strings.Join(got, " ") != want {
		t.Fatalf("list = %v, want %s", got, want)
	}

	if err := n.md.DeleteWorkflowDef(c, "a", 10, "bob"); err != nil {
		t.Fatal(err)
	}
	if latest, err = n.md.GetWorkflowDef(c, "a", nil); err != nil || latest.Version != 2 {
		t.Fatalf("latest after delete = %v, %v; want version 2", latest, err)
	}
	mustNotFound(t, n.md.DeleteWorkflowDef(c, "a", 10, "bob"))
	_, err = n.md.GetWorkflowDef(c, "a", ptr(10))
	mustNotFound(t, err)
	_, err = n.md.GetWorkflowDef(c, "nope", nil)
	mustNotFound(t, err)
	mustNotFound(t, n.md.DeleteWorkflowDef(c, "nope", 1, ""))
	mustNotFound(t, n.md.DeleteWorkflowDef(c, "a", -1, ""))
	for _, v := range []int{1, 2} {
		if err := n.md.DeleteWorkflowDef(c, "a", v, ""); err != nil {
			t.Fatal(err)
		}
	}
	_, err = n.md.GetWorkflowDef(c, "a", nil)
	mustNotFound(t, err)
}

func TestTaskDefLifecycle(t *testing.T) {
	t.Parallel()
	n := newNode(t, nil, metadata.Options{})
	c := ctx(t)
	if err := n.md.RegisterTaskDefs(c, []*conductor.TaskDef{
		td(t, `{"name":"t2","retryCount":1,"timeoutSeconds":10,"totalTimeoutSeconds":0}`),
		td(t, `{"name":"t1","retryCount":2,"timeoutSeconds":10,"totalTimeoutSeconds":0}`),
	}, "alice"); err != nil {
		t.Fatal(err)
	}
	// POST again replaces (Conductor OSS semantics), PUT upserts.
	if err := n.md.RegisterTaskDefs(c, []*conductor.TaskDef{td(t, `{"name":"t1","retryCount":5,"timeoutSeconds":10}`)}, "bob"); err != nil {
		t.Fatal(err)
	}
	if err := n.md.UpdateTaskDef(c, td(t, `{"name":"t3","timeoutSeconds":3600,"totalTimeoutSeconds":0}`), "carol"); err != nil {
		t.Fatal(err)
	}
	t1, err := n.md.GetTaskDef(c, "t1")
	if err != nil {
		t.Fatal(err)
	}
	if *t1.RetryCount != 5 || t1.CreatedBy != "alice" || t1.UpdatedBy != "bob" || t1.CreateTime == 0 || t1.UpdateTime < t1.CreateTime {
		t.Fatalf("t1 = %s", t1.Raw)
	}
	all, err := n.md.ListTaskDefs(c)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range all {
		names = append(names, d.Name)
	}
	if got, want := strings.Join(names, " "), "t1 t2 t3"; got != want {
		t.Fatalf("list = %s, want %s", got, want)
	}
	if err := n.md.DeleteTaskDef(c, "t2", ""); err != nil {
		t.Fatal(err)
	}
	_, err = n.md.GetTaskDef(c, "t2")
	mustNotFound(t, err)
	mustNotFound(t, n.md.DeleteTaskDef(c, "t2", ""))
	if _, found, err := n.md.LookupTaskDef(c, "t2"); err != nil || found {
		t.Fatalf("lookup of a removed task = %v, %v", found, err)
	}
}

func TestServerOwnedFields(t *testing.T) {
	t.Parallel()
	n := newNode(t, nil, metadata.Options{})
	c := ctx(t)
	start := time.Now().UnixMilli()
	// Client-supplied audit fields are replaced by the server's.
	js := `{"name":"audit","createTime":5,"updateTime":6,"createdBy":"mallory","updatedBy":"mallory","tasks":[{"name":"t","taskReferenceName":"r"}]}`
	if err := n.md.RegisterWorkflowDef(c, wf(t, js), false, "alice"); err != nil {
		t.Fatal(err)
	}
	first, err := n.md.GetWorkflowDef(c, "audit", nil)
	if err != nil {
		t.Fatal(err)
	}
	if first.CreatedBy != "alice" || first.UpdatedBy != "alice" || first.CreateTime < start || first.UpdateTime != first.CreateTime || first.Version != 1 {
		t.Fatalf("after create: %s", first.Raw)
	}
	if strings.Contains(string(first.Raw), "mallory") {
		t.Fatalf("client audit fields survived: %s", first.Raw)
	}
	time.Sleep(2 * time.Millisecond)
	if err := n.md.RegisterWorkflowDef(c, wf(t, js), true, "bob"); err != nil {
		t.Fatal(err)
	}
	second, err := n.md.GetWorkflowDef(c, "audit", ptr(1))
	if err != nil {
		t.Fatal(err)
	}
	if second.CreatedBy != "alice" || second.UpdatedBy != "bob" || second.CreateTime != first.CreateTime || second.UpdateTime <= first.UpdateTime {
		t.Fatalf("after overwrite: %s (before: %s)", second.Raw, first.Raw)
	}
}

func TestOverwriteConflict(t *testing.T) {
	t.Parallel()
	n := newNode(t, nil, metadata.Options{})
	c := ctx(t)
	if err := n.md.RegisterWorkflowDef(c, wf(t, simpleWF("wf", 3, "first")), false, ""); err != nil {
		t.Fatal(err)
	}
	err := n.md.RegisterWorkflowDef(c, wf(t, simpleWF("wf", 3, "second")), false, "")
	if !errors.Is(err, fault.ErrConflict) || !strings.Contains(err.Error(), "Workflow with wf.3 already exists!") {
		t.Fatalf("err = %v, want a conflict naming wf.3", err)
	}
	if d, _ := n.md.GetWorkflowDef(c, "wf", nil); d.Description != "first" {
		t.Fatalf("refused registration changed the definition: %s", d.Raw)
	}
	if err := n.md.RegisterWorkflowDef(c, wf(t, simpleWF("wf", 3, "second")), true, ""); err != nil {
		t.Fatal(err)
	}
	if d, _ := n.md.GetWorkflowDef(c, "wf", nil); d.Description != "second" {
		t.Fatalf("overwrite not visible: %s", d.Raw)
	}
	// Another version is not a conflict.
	if err := n.md.RegisterWorkflowDef(c, wf(t, simpleWF("wf", 4, "v4")), false, ""); err != nil {
		t.Fatal(err)
	}
}

// Two engines (each with its own read model) race to register the same new
// name and version without overwrite: the log lets exactly one win.
func TestConcurrentRegistration(t *testing.T) {
	t.Parallel()
	a := newNode(t, nil, metadata.Options{})
	b := newNode(t, a.log, metadata.Options{})
	c := ctx(t)
	for i := range 20 {
		name := fmt.Sprintf("race-%d", i)
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for j, n := range []*node{a, b} {
			wg.Go(func() {
				// Identical bodies: the ids of the two appends must still differ.
				errs[j] = n.md.RegisterWorkflowDef(c, wf(t, simpleWF(name, 1, "same")), false, "")
			})
		}
		wg.Wait()
		ok, conflicts := 0, 0
		for _, err := range errs {
			switch {
			case err == nil:
				ok++
			case errors.Is(err, fault.ErrConflict):
				conflicts++
			default:
				t.Fatalf("%s: unexpected error %v", name, err)
			}
		}
		if ok != 1 || conflicts != 1 {
			t.Fatalf("%s: %d succeeded, %d conflicted (%v); want 1 and 1", name, ok, conflicts, errs)
		}
	}
	a.caughtUp(t)
	b.caughtUp(t)
	for _, n := range []*node{a, b} {
		all, err := n.md.ListWorkflowDefs(c)
		if err != nil || len(all) != 20 {
			t.Fatalf("list = %d definitions, %v; want 20", len(all), err)
		}
	}
}

// Concurrent overwrites through two engines all succeed, each deciding
// again after losing a race.
func TestConcurrentOverwrites(t *testing.T) {
	t.Parallel()
	a := newNode(t, nil, metadata.Options{})
	b := newNode(t, a.log, metadata.Options{})
	c := ctx(t)
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := range 40 {
		n := []*node{a, b}[i%2]
		wg.Go(func() {
			errs <- n.md.RegisterWorkflowDef(c, wf(t, simpleWF("hot", 1, fmt.Sprint(i))), true, "")
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// Registrations of one name as new versions (Orkes's newVersion) through
// two engines each get a version of their own, whatever version they name:
// each decides it again after losing a race.
func TestConcurrentNewVersions(t *testing.T) {
	t.Parallel()
	a := newNode(t, nil, metadata.Options{})
	b := newNode(t, a.log, metadata.Options{})
	c := ctx(t)
	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		node := []*node{a, b}[i%2]
		wg.Go(func() {
			errs <- node.md.RegisterWorkflowDef(c, wf(t, simpleWF("nv", 1, fmt.Sprint(i))), false, "", metadata.NewVersion())
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	a.caughtUp(t)
	b.caughtUp(t)
	for _, node := range []*node{a, b} {
		rev, err := node.md.Revision(c, metadata.KindWorkflow, "nv")
		if err != nil {
			t.Fatal(err)
		}
		defs, err := node.md.FindWorkflowDefsAt(c, metadata.WorkflowFilter{Name: "nv"}, rev)
		if err != nil || len(defs) != n {
			t.Fatalf("versions of nv = %d, %v; want %d", len(defs), err, n)
		}
		seen := map[string]bool{}
		for i, d := range defs {
			if d.Version != i+1 || seen[d.Description] {
				t.Fatalf("nv's definition %d is version %d, description %q (seen: %v)", i, d.Version, d.Description, seen[d.Description])
			}
			seen[d.Description] = true
		}
	}
}

func TestReadYourWrites(t *testing.T) {
	t.Parallel()
	n := newNode(t, nil, metadata.Options{})
	c := ctx(t)
	for i := range 25 {
		desc := fmt.Sprintf("d%d", i)
		if err := n.md.RegisterWorkflowDef(c, wf(t, simpleWF("ryw", 1, desc)), true, ""); err != nil {
			t.Fatal(err)
		}
		got, err := n.md.GetWorkflowDef(c, "ryw", nil)
		if err != nil || got.Description != desc {
			t.Fatalf("read after write %d = %v, %v", i, got, err)
		}
		if err := n.md.UpdateTaskDef(c, td(t, `{"name":"ryw","description":"`+desc+`","timeoutSeconds":1}`), ""); err != nil {
			t.Fatal(err)
		}
		if got, err := n.md.GetTaskDef(c, "ryw"); err != nil || got.Description != desc {
			t.Fatalf("task read after write %d = %v, %v", i, got, err)
		}
	}
	if err := n.md.DeleteWorkflowDef(c, "ryw", 1, ""); err != nil {
		t.Fatal(err)
	}
	_, err := n.md.GetWorkflowDef(c, "ryw", nil)
	mustNotFound(t, err)
}

// An engine whose read model has not seen a definition finds it in the log,
// and decides writes on the log's state.
func TestLogFallback(t *testing.T) {
	t.Parallel()
	a := newNode(t, nil, metadata.Options{})
	stale := newStoppedNode(t, a.log)
	c := ctx(t)
	if err := a.md.RegisterWorkflowDef(c, wf(t, simpleWF("fb", 1, "v1")), false, ""); err != nil {
		t.Fatal(err)
	}
	if err := a.md.RegisterWorkflowDef(c, wf(t, simpleWF("fb", 2, "v2")), false, ""); err != nil {
		t.Fatal(err)
	}
	if err := a.md.UpdateTaskDef(c, td(t, `{"name":"fb_task","retryCount":7,"timeoutSeconds":1}`), ""); err != nil {
		t.Fatal(err)
	}

	_, err := stale.md.GetWorkflowDef(c, "fb", nil)
	mustNotFound(t, err) // the read model is empty

	got, err := stale.md.LookupWorkflowDef(c, "fb", nil)
	if err != nil || got.Description != "v2" {
		t.Fatalf("lookup latest = %v, %v", got, err)
	}
	if got, err = stale.md.LookupWorkflowDef(c, "fb", ptr(1)); err != nil || got.Description != "v1" {
		t.Fatalf("lookup v1 = %v, %v", got, err)
	}
	_, err = stale.md.LookupWorkflowDef(c, "fb", ptr(3))
	mustNotFound(t, err)
	// So are task definitions (a retry on the defaults, a minute apart,
	// where the definition registered on another engine says 3 s).
	if d, found, err := stale.md.LookupTaskDef(c, "fb_task"); err != nil || !found || *d.RetryCount != 7 {
		t.Fatalf("lookup task on a stale read model = %v, %v, %v", d, found, err)
	}
	if _, found, err := stale.md.LookupTaskDef(c, "unregistered"); err != nil || found {
		t.Fatalf("lookup of an unregistered task = %v, %v", found, err)
	}

	// Writes through the stale engine see the log's state.
	err = stale.md.RegisterWorkflowDef(c, wf(t, simpleWF("fb", 2, "again")), false, "")
	if !errors.Is(err, fault.ErrConflict) {
		t.Fatalf("register over an existing version via a stale read model: %v, want conflict", err)
	}
	if err := stale.md.RegisterWorkflowDef(c, wf(t, simpleWF("fb", 2, "v2b")), true, ""); err != nil {
		t.Fatal(err)
	}
	if err := stale.md.DeleteWorkflowDef(c, "fb", 1, ""); err != nil {
		t.Fatalf("delete via a stale read model: %v", err)
	}
	if err := stale.md.AddTags(c, metadata.KindTask, "fb_task", []conductor.Tag{{Key: "k", Value: "v"}}, ""); err != nil {
		t.Fatalf("tag via a stale read model: %v", err)
	}
	a.caughtUp(t)
	if got, err := a.md.GetWorkflowDef(c, "fb", nil); err != nil || got.Description != "v2b" {
		t.Fatalf("after stale overwrite: %v, %v", got, err)
	}
	_, err = a.md.GetWorkflowDef(c, "fb", ptr(1))
	mustNotFound(t, err)
	if tags, err := a.md.GetTags(c, metadata.KindTask, "fb_task"); err != nil || len(tags) != 1 {
		t.Fatalf("tags = %v, %v", tags, err)
	}
}

// A task definition the read model lacks is asked of the log; the log's
// "none" holds for a second, then the log is asked again: a definition
// registered meanwhile on another engine is found, whether or not this
// engine had looked the name up before (a cached "none" hid it until the
// read model applied it).
func TestTaskDefAbsenceIsAskedAgain(t *testing.T) {
	t.Parallel()
	a := newNode(t, nil, metadata.Options{})
	clock := newClock()
	stale := &node{log: a.log, store: testutil.OpenStore(t)}
	stale.md = metadata.New(a.log, stale.store, nil, metadata.Options{Logger: testutil.Logger(t), Now: clock.now})
	c := ctx(t)
	if _, found, err := stale.md.LookupTaskDef(c, "late"); err != nil || found {
		t.Fatalf("lookup before it is registered = %v, %v", found, err)
	}
	if err := a.md.UpdateTaskDef(c, td(t, `{"name":"late","retryCount":1}`), ""); err != nil {
		t.Fatal(err)
	}
	if _, found, err := stale.md.LookupTaskDef(c, "late"); err != nil || found {
		t.Fatalf("lookup within a second of the log's none = %v, %v; want the cached none", found, err)
	}
	clock.add(time.Second)
	if d, found, err := stale.md.LookupTaskDef(c, "late"); err != nil || !found || *d.RetryCount != 1 {
		t.Fatalf("lookup a second later = %v, %v, %v; want the definition from the log", d, found, err)
	}
}

// Once a task definition's cached "none" expires, one lookup asks the log
// again and the lookups that arrive meanwhile answer the renewed "none":
// every decision scheduling the name asked the log at once, a read each
// (in the benchmark dozens a second, 1.6% of its CPU).
func TestTaskDefAbsenceIsAskedOnceAtATime(t *testing.T) {
	t.Parallel()
	n := newNode(t, nil, metadata.Options{})
	clock := newClock()
	md := metadata.New(n.log, n.store, n.runner, metadata.Options{Logger: testutil.Logger(t), Now: clock.now})
	c := ctx(t)
	if _, found, err := md.LookupTaskDef(c, "unregistered"); err != nil || found {
		t.Fatalf("first lookup = %v, %v", found, err)
	}
	// The reads the lookups make, each a direct get published on the
	// log's connection, which delivers its own messages to it as well.
	gets := make(chan *nats.Msg, 64)
	sub, err := n.log.Conn().ChanSubscribe("$JS.API.DIRECT.GET.>", gets)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	clock.add(time.Second)
	const lookups = 32
	var lookedUp sync.WaitGroup
	start := make(chan struct{})
	for range lookups {
		lookedUp.Go(func() {
			<-start
			if _, found, err := md.LookupTaskDef(c, "unregistered"); err != nil || found {
				t.Errorf("lookup after the none expired = %v, %v", found, err)
			}
		})
	}
	close(start)
	lookedUp.Wait()
	// The server has delivered every request published before the flush's
	// answer, and the connection puts each in gets as it reads it.
	if err := n.log.Conn().Flush(); err != nil {
		t.Fatal(err)
	}
	if len(gets) != 1 {
		t.Fatalf("%d lookups asked the log %d times, want once", lookups, len(gets))
	}
}

func TestLookupCache(t *testing.T) {
	t.Parallel()
	n := newNode(t, nil, metadata.Options{})
	c := ctx(t)
	if err := n.md.RegisterWorkflowDef(c, wf(t, simpleWF("cached", 1, "one")), false, ""); err != nil {
		t.Fatal(err)
	}
	first, err := n.md.LookupWorkflowDef(c, "cached", nil)
	if err != nil {
		t.Fatal(err)
	}
	again, err := n.md.LookupWorkflowDef(c, "cached", nil)
	if err != nil {
		t.Fatal(err)
	}
	if first != again {
		t.Fatal("second lookup parsed the definition again")
	}
	if err := n.md.RegisterWorkflowDef(c, wf(t, simpleWF("cached", 1, "two")), true, ""); err != nil {
		t.Fatal(err)
	}
	after, err := n.md.LookupWorkflowDef(c, "cached", nil)
	if err != nil || after.Description != "two" {
		t.Fatalf("lookup after overwrite = %v, %v", after, err)
	}
	if err := n.md.RegisterWorkflowDef(c, wf(t, simpleWF("cached", 2, "v2")), false, ""); err != nil {
		t.Fatal(err)
	}
	if latest, err := n.md.LookupWorkflowDef(c, "cached", nil); err != nil || latest.Version != 2 {
		t.Fatalf("latest after a new version = %v, %v", latest, err)
	}
	if err := n.md.DeleteWorkflowDef(c, "cached", 2, ""); err != nil {
		t.Fatal(err)
	}
	if latest, err := n.md.LookupWorkflowDef(c, "cached", nil); err != nil || latest.Version != 1 {
		t.Fatalf("latest after deleting v2 = %v, %v", latest, err)
	}
	_, err = n.md.LookupWorkflowDef(c, "cached", ptr(2))
	mustNotFound(t, err)
}

// Fields flowvault does not model, and numbers beyond 2^53, come back byte
// for byte in place; HTML-significant characters are not escaped.
func TestVerbatimRoundTrip(t *testing.T) {
	t.Parallel()
	n := newNode(t, nil, metadata.Options{})
	c := ctx(t)
	body := `{"name":"verbatim","x-custom":{"a":[1,2.5,"s"]},"tasks":[{"name":"t","taskReferenceName":"r","type":"LLM_CHAT_COMPLETE",` +
		`"inputParameters":{"big":9007199254740993,"expr":"$.a < 3 && $.b > 1","f":1.50},"x-task":{"k" : [true, null]}}],` +
		`"tags":[{"key":"team","value":"core"}],"overwriteTags":true,"timeoutSeconds":0}`
	if err := n.md.RegisterWorkflowDef(c, wf(t, body), false, ""); err != nil {
		t.Fatal(err)
	}
	got, err := n.md.GetWorkflowDef(c, "verbatim", nil)
	if err != nil {
		t.Fatal(err)
	}
	raw := string(got.Raw)
	// Everything but the tag keys is kept in order, then the server's keys follow.
	want := strings.Replace(body, `"tags":[{"key":"team","value":"core"}],"overwriteTags":true,`, "", 1)
	want = strings.TrimSuffix(want, "}") + `,"version":1,"createTime":`
	if !strings.HasPrefix(raw, want) {
		t.Fatalf("stored JSON\n got %s\nwant %s...", raw, want)
	}
	for _, def := range []*conductor.WorkflowDef{got, lookup(t, n, "verbatim")} {
		in := def.Tasks[0].InputParameters
		if big, ok := in["big"].(int64); !ok || big != 9007199254740993 {
			t.Fatalf("big = %T %v, want int64 9007199254740993", in["big"], in["big"])
		}
		if f, ok := in["f"].(float64); !ok || f != 1.5 {
			t.Fatalf("f = %T %v", in["f"], in["f"])
		}
	}
	tags, err := n.md.GetTags(c, metadata.KindWorkflow, "verbatim")
	if err != nil || len(tags) != 1 || tags[0] != (conductor.Tag{Key: "team", Value: "core"}) {
		t.Fatalf("tags from registration = %v, %v", tags, err)
	}
}

func lookup(tb testing.TB, n *node, name string) *conductor.WorkflowDef {
	tb.Helper()
	d, err := n.md.LookupWorkflowDef(ctx(tb), name, nil)
	if err != nil {
		tb.Fatal(err)
	}
	return d
}

// The hot-path lookups answer from their cache without reading the read
// model while it has applied nothing new, and must still see a change made
// through another engine once their read model has applied it.
func TestLookupsFollowChangesFromAnotherEngine(t *testing.T) {
	t.Parallel()
	a := newNode(t, nil, metadata.Options{})
	b := newNode(t, a.log, metadata.Options{})
	c := ctx(t)
	if err := a.md.RegisterTaskDefs(c, []*conductor.TaskDef{td(t, `{"name":"hot","retryCount":1}`)}, "alice"); err != nil {
		t.Fatal(err)
	}
	if err := a.md.RegisterWorkflowDef(c, wf(t, `{"name":"hotflow","description":"one","tasks":[{"name":"hot","taskReferenceName":"h"}]}`), true, "alice"); err != nil {
		t.Fatal(err)
	}
	b.caughtUp(t)
	for range 3 { // the later lookups are served from the cache
		d, found, err := b.md.LookupTaskDef(c, "hot")
		if err != nil || !found || *d.RetryCount != 1 {
			t.Fatalf("lookup = %+v, %v, %v", d, found, err)
		}
		if w, err := b.md.LookupWorkflowDef(c, "hotflow", nil); err != nil || w.Description != "one" {
			t.Fatalf("workflow lookup = %+v, %v", w, err)
		}
	}
	if err := a.md.UpdateTaskDef(c, td(t, `{"name":"hot","retryCount":2}`), "alice"); err != nil {
		t.Fatal(err)
	}
	if err := a.md.RegisterWorkflowDef(c, wf(t, `{"name":"hotflow","description":"two","tasks":[{"name":"hot","taskReferenceName":"h"}]}`), true, "alice"); err != nil {
		t.Fatal(err)
	}
	b.caughtUp(t)
	if d, found, err := b.md.LookupTaskDef(c, "hot"); err != nil || !found || *d.RetryCount != 2 {
		t.Fatalf("lookup after the update = %+v, %v, %v; want retryCount 2", d, found, err)
	}
	if w, err := b.md.LookupWorkflowDef(c, "hotflow", nil); err != nil || w.Description != "two" {
		t.Fatalf("workflow lookup after the update = %+v, %v; want description two", w, err)
	}
}

// The owner and tags of a workflow or task definition, which access to
// it follows, are the same read from an engine's read model and, while
// that lacks the name, from the log: a name registered again by someone
// else keeps its owner, one deleted and registered again by someone else
// is owned by them and carries none of its tags from before, and one
// deleted, never registered or that could never be registered is not
// found (the last without asking the log, whose subject it would
// overflow).
func TestDefAccess(t *testing.T) {
	t.Parallel()
	a := newNode(t, nil, metadata.Options{})
	stale := newStoppedNode(t, a.log)
	c := ctx(t)
	pay := []conductor.Tag{{Key: "team", Value: "pay"}}
	for _, k := range []struct {
		kind     metadata.Kind
		register func(name, by string) error
		remove   func(name string) error
	}{
		{metadata.KindWorkflow,
			func(name, by string) error {
				return a.md.RegisterWorkflowDef(c, wf(t, simpleWF(name, 1, "")), true, by)
			},
			func(name string) error { return a.md.DeleteWorkflowDef(c, name, 1, "alice") }},
		{metadata.KindTask,
			func(name, by string) error {
				return a.md.RegisterTaskDefs(c, []*conductor.TaskDef{td(t, `{"name":"`+name+`"}`)}, by)
			},
			func(name string) error { return a.md.DeleteTaskDef(c, name, "alice") }},
	} {
		must := func(err error) {
			t.Helper()
			if err != nil {
				t.Fatalf("%s: %v", k.kind, err)
			}
		}
		for _, name := range []string{"owned", "replaced", "deleted", "moved"} {
			must(k.register(name, "alice"))
			must(a.md.AddTags(c, k.kind, name, pay, "alice"))
		}
		must(k.register("replaced", "bob"))
		must(k.remove("deleted"))
		must(k.remove("moved"))
		must(k.register("moved", "carol"))
		a.caughtUp(t)

		for _, tt := range []struct {
			name, owner string // owner "": not found
			tags        []conductor.Tag
		}{
			{"owned", "alice", pay},
			{"replaced", "alice", pay},
			{"moved", "carol", []conductor.Tag{}},
			{"deleted", "", nil},
			{"nowhere", "", nil},
			{strings.Repeat("x", 2000), "", nil},
		} {
			for _, n := range []struct {
				from string
				md   *metadata.Store
			}{{"read model", a.md}, {"log", stale.md}} {
				t.Run(fmt.Sprintf("%s %.16s from the %s", k.kind, tt.name, n.from), func(t *testing.T) {
					owner, tags, err := n.md.DefAccess(c, k.kind, tt.name)
					if tt.owner == "" {
						mustNotFound(t, err)
						return
					}
					if err != nil || owner != tt.owner || !reflect.DeepEqual(tags, tt.tags) {
						t.Fatalf("access = %q, %v, %v; want %q, %v", owner, tags, err, tt.owner, tt.tags)
					}
				})
			}
		}
	}
}

// BenchmarkDefAccess measures the read of a task definition's creator and
// tags that a non-admin worker's poll of its type is decided on, for a
// definition of a size users register.
func BenchmarkDefAccess(b *testing.B) {
	n := newNode(b, nil, metadata.Options{})
	c := ctx(b)
	registerUserSized(b, n, "bench")
	b.ReportAllocs()
	for b.Loop() {
		if owner, _, err := n.md.DefAccess(c, metadata.KindTask, "bench"); err != nil || owner != "alice" {
			b.Fatalf("access = %q, %v", owner, err)
		}
	}
}

// registerUserSized registers task definition name as alice, of a size
// users register.
func registerUserSized(tb testing.TB, n *node, name string) {
	tb.Helper()
	keys := `"` + strings.Join(strings.Fields(strings.Repeat("key ", 20)), `","`) + `"`
	def := `{"name":"` + name + `","description":"` + strings.Repeat("d", 400) + `","retryCount":3,"timeoutSeconds":600,` +
		`"inputKeys":[` + keys + `],"outputKeys":[` + keys + `],"inputTemplate":{"url":"https://example.com/a","retries":3}}`
	if err := n.md.UpdateTaskDef(ctx(tb), td(tb, def), "alice"); err != nil {
		tb.Fatal(err)
	}
}
