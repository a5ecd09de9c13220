package executions_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"maps"
	"math"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/executor"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/masking"
	"github.com/flowvault/flowvault/projections"
	"github.com/flowvault/flowvault/projections/executions"
	"github.com/flowvault/flowvault/projections/executions/query"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// fixture is a log, the executions projection following it, and its reader.
type fixture struct {
	t      *testing.T
	log    *eventlog.Log
	store  *projections.Store
	proj   *executions.Projection
	runner *projections.Runner
	stop   func() // stops the runner
	reader *executions.Reader
	now    time.Time
	states map[string]*engine.Workflow
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{t: t, log: testutil.OpenLog(t, ""), proj: executions.NewProjection(), now: time.UnixMilli(1_800_000_000_000),
		states: map[string]*engine.Workflow{}}
	f.store = testutil.OpenStore(t)
	f.runProjection()
	t.Cleanup(func() { f.stop() })
	f.reader = executions.NewReader(f.store)
	return f
}

func (f *fixture) runProjection() {
	r := projections.NewRunner(f.log, f.store, f.proj,
		projections.RunnerConfig{Stream: eventlog.Workflows.Name, Logger: testutil.Logger(f.t)})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	f.runner = r
	f.stop = func() {
		cancel()
		if err := <-done; err != nil {
			f.t.Errorf("projection: %v", err)
		}
	}
}

// restartProjection stops the projection and runs a new one over the same
// store, as a process restart does: it knows nothing but what is stored.
func (f *fixture) restartProjection() {
	f.stop()
	f.proj = executions.NewProjection()
	f.runProjection()
}

const oneWait = `{"name":"one_wait","version":1,"tasks":[{"name":"gate","taskReferenceName":"gate","type":"WAIT"}]}`

// decide runs a trigger against workflow id, appends its events and waits
// until the read model has them.
func (f *fixture) decide(id string, trig engine.Trigger) {
	f.t.Helper()
	f.now = f.now.Add(time.Millisecond)
	w := f.states[id]
	d, err := engine.Decide(engine.Input{State: w, Trigger: trig, Now: f.now})
	if err != nil {
		f.t.Fatalf("%T: %v", trig, err)
	}
	f.record(id, d.Events, d.State)
}

// record appends events to workflow id's log as one record, which leaves
// it in state, and waits until the read model has them.
func (f *fixture) record(id string, events []schemas.Event, state *engine.Workflow) {
	f.t.Helper()
	envs := make([]schemas.Envelope, len(events))
	for i, ev := range events {
		var err error
		if envs[i], err = schemas.Default.Encode(ev); err != nil {
			f.t.Fatal(err)
		}
		envs[i].ID = uuid.NewString()
	}
	var expected uint64
	if w := f.states[id]; w != nil {
		expected = w.Seq
	}
	ctx := testutil.Context(f.t, 10*time.Second)
	seq, err := f.log.Append(ctx, "fv.wf."+eventlog.Token(id), envs, expected)
	if err != nil {
		f.t.Fatal(err)
	}
	state.Seq = seq
	f.states[id] = state
	if err := f.runner.WaitFor(ctx, seq); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) start(corr string) string {
	f.t.Helper()
	return f.startWith(corr, "")
}

// startWith starts a one_wait workflow with a correlation id, created by
// principal.
func (f *fixture) startWith(corr, principal string) string {
	f.t.Helper()
	var def conductor.WorkflowDef
	if err := conductor.Unmarshal([]byte(oneWait), &def); err != nil {
		f.t.Fatal(err)
	}
	id := uuid.NewString()
	f.decide(id, engine.Start{WorkflowID: id, Def: &def, Request: conductor.StartWorkflowRequest{CorrelationID: corr}, CreatedBy: principal})
	return id
}

func (f *fixture) search(q string) []string {
	f.t.Helper()
	n, ws, err := f.reader.SearchWorkflows(context.Background(), query.Search{Query: q, Size: 100})
	if err != nil {
		f.t.Fatal(err)
	}
	ids := []string{}
	for _, w := range ws {
		ids = append(ids, w.ID)
	}
	if n != len(ids) {
		f.t.Fatalf("%q: totalHits %d for %d results", q, n, len(ids))
	}
	return ids
}

// indexedTasks lists the tasks of workflow id in the task status index.
func (f *fixture) indexedTasks(id string) []string {
	f.t.Helper()
	var tasks []string
	err := f.store.Reader(executions.Name).Scan([]byte("k/"), func(key, value []byte) bool {
		if string(value) == id {
			tasks = append(tasks, string(key[len(key)-len(id):])) // task ids are UUIDs too
		}
		return true
	})
	if err != nil {
		f.t.Fatal(err)
	}
	return tasks
}

// rebuild folds the log into a new store, as a rebuild from the log
// does, up to what the fixture's read model has applied.
func (f *fixture) rebuild() *projections.Store {
	f.t.Helper()
	store := testutil.OpenStore(f.t)
	r := projections.NewRunner(f.log, store, executions.NewProjection(),
		projections.RunnerConfig{Stream: eventlog.Workflows.Name, Logger: testutil.Logger(f.t)})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	f.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			f.t.Errorf("rebuild: %v", err)
		}
	})
	if err := r.WaitFor(testutil.Context(f.t, 10*time.Second), f.runner.Checkpoint()); err != nil {
		f.t.Fatal(err)
	}
	return store
}

func (f *fixture) dump() []byte {
	f.t.Helper()
	var b bytes.Buffer
	if err := f.store.Dump(&b); err != nil {
		f.t.Fatal(err)
	}
	return b.Bytes()
}

// The indexes follow status and correlation changes, and removal deletes
// every trace of a workflow unless it is archived.
func TestIndexesAndRemoval(t *testing.T) {
	f := newFixture(t)
	a, b := f.start("c-a"), f.start("c-b")
	f.decide(a, engine.Terminate{Reason: "x"})
	for q, want := range map[string][]string{
		"status = RUNNING":                             {b},
		"status = TERMINATED":                          {a},
		"status IN (RUNNING, TERMINATED)":              {b, a},
		"correlationId = c-a":                          {a},
		"workflowType = one_wait":                      {b, a},
		"workflowType = one_wait AND status = RUNNING": {b},
	} {
		if got := f.search(q); !equal(got, want) {
			t.Errorf("%q = %v, want %v", q, got, want)
		}
	}
	dropped := f.states[a].Tasks[0].ID
	f.decide(a, engine.Rerun{Request: conductor.RerunWorkflowRequest{CorrelationID: "c-new"}})
	if got := f.search("status = RUNNING AND correlationId = c-new"); !equal(got, []string{a}) {
		t.Fatalf("after rerun: %v", got)
	}
	// The rerun replaced the task: the task index and the lookups by id
	// hold the new one only.
	if got, want := f.indexedTasks(a), []string{f.states[a].Tasks[0].ID}; !equal(got, want) {
		t.Fatalf("tasks indexed after rerun: %v, want %v", got, want)
	}
	if _, err := f.reader.TaskWorkflow(context.Background(), dropped); err == nil {
		t.Fatal("the task the rerun dropped is still found by id")
	}
	if got := f.search("correlationId = c-a"); len(got) != 0 {
		t.Fatalf("old correlation id still indexed: %v", got)
	}

	f.decide(a, engine.Remove{Terminate: true, Archive: true})
	if got := f.search("status = TERMINATED"); !equal(got, []string{a}) {
		t.Fatalf("archived workflow not found: %v", got)
	}
	if _, err := f.reader.TaskWorkflow(context.Background(), f.states[a].Tasks[0].ID); err == nil {
		t.Fatal("an archived workflow's task is still found by id")
	}
	f.decide(b, engine.Remove{})
	if bytes.Contains(f.dump(), []byte(b)) {
		t.Fatalf("the read model still mentions removed workflow %s", b)
	}
	if got := f.search(""); !equal(got, []string{a}) {
		t.Fatalf("all = %v", got)
	}
}

// Watchers hear of commits that changed their workflows, and only those.
func TestWatch(t *testing.T) {
	f := newFixture(t)
	a, b := f.start(""), f.start("")
	c, stop := f.proj.Watch(a)
	defer stop()
	f.decide(b, engine.SetVariables{Variables: map[string]any{"x": int64(1)}})
	select {
	case <-c:
		t.Fatal("notified of another workflow's change")
	case <-time.After(50 * time.Millisecond):
	}
	f.decide(a, engine.SetVariables{Variables: map[string]any{"x": int64(1)}})
	select {
	case <-c:
	case <-time.After(5 * time.Second):
		t.Fatal("no notification")
	}
	stop()
	f.decide(a, engine.SetVariables{Variables: map[string]any{"x": int64(2)}})
	select {
	case <-c:
		t.Fatal("notified after stop")
	case <-time.After(50 * time.Millisecond):
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Only ended workflows with data sealed under their secrets key await
// compaction: those whose log says so (workflow.secrets_sealed), and those
// that ended before that event existed but hold sealed secrets.
func TestAwaitingCompaction(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	complete := func(id string, output map[string]any) {
		task := f.states[id].Tasks[0]
		f.decide(id, engine.Result{Result: conductor.TaskResult{TaskID: task.ID, WorkflowInstanceID: id,
			Status: conductor.TaskCompleted, OutputData: output}})
	}
	sealed := map[string]any{"_secrets": &masking.Sealed{Kind: masking.KindSecrets, Purpose: "p", Ciphertext: []byte{1, 2, 3}}}
	plain, legacy, later := f.start("plain"), f.start("legacy"), f.start("later")
	complete(later, sealed) // ends first, though its id may sort after
	complete(plain, map[string]any{"x": 1})
	complete(legacy, sealed)
	if f.states[plain].Status != conductor.WorkflowCompleted || f.states[legacy].Status != conductor.WorkflowCompleted {
		t.Fatalf("statuses %s %s", f.states[plain].Status, f.states[legacy].Status)
	}
	ctx := context.Background()
	ended, err := f.reader.AwaitingCompaction(ctx, math.MaxInt64, executions.Ended{}, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(ended) != 2 || ended[0].WorkflowID != later || ended[1].WorkflowID != legacy {
		t.Fatalf("awaiting compaction: %+v, want %s then %s, oldest end first", ended, later, legacy)
	}
	// Only those that ended by a given time: a pass reads what is due.
	if due, err := f.reader.AwaitingCompaction(ctx, f.states[later].EndTime, executions.Ended{}, 10); err != nil || len(due) != 1 || due[0].WorkflowID != later {
		t.Fatalf("ended by %d: %+v, %v; want only %s", f.states[later].EndTime, due, err, later)
	}
	if due, err := f.reader.AwaitingCompaction(ctx, f.states[later].EndTime-1, executions.Ended{}, 10); err != nil || len(due) != 0 {
		t.Fatalf("ended before either: %+v, %v; want none", due, err)
	}
	f.decide(legacy, engine.Compact{})
	if !f.states[legacy].Compacted {
		t.Fatal("compaction not recorded")
	}
	if ended, err := f.reader.AwaitingCompaction(ctx, math.MaxInt64, executions.Ended{}, 10); err != nil || len(ended) != 1 || ended[0].WorkflowID != later {
		t.Fatalf("awaiting compaction after compacting %s: %+v, %v; want only %s", legacy, ended, err, later)
	}
	// The compaction changes nothing its summary holds, which stays as the
	// end wrote it, found by the indexes as before.
	for _, q := range []string{"workflowId = " + legacy, "status = COMPLETED AND workflowId = " + legacy} {
		if got := f.search(q); !equal(got, []string{legacy}) {
			t.Errorf("%q after the compaction = %v", q, got)
		}
	}
}

// endSealed completes the first task of each workflow with an output
// sealed under its secrets key: each ends awaiting compaction.
func (f *fixture) endSealed(ids ...string) {
	sealed := map[string]any{"_secrets": &masking.Sealed{Kind: masking.KindSecrets, Purpose: "p", Ciphertext: []byte{1, 2, 3}}}
	for _, id := range ids {
		task := f.states[id].Tasks[0]
		f.decide(id, engine.Result{Result: conductor.TaskResult{TaskID: task.ID, WorkflowInstanceID: id,
			Status: conductor.TaskCompleted, OutputData: sealed}})
	}
}

// moveToLegacyList moves an ended workflow to the compaction list of the
// previous layout: k/<id> → end time.
func (f *fixture) moveToLegacyList(id string) {
	f.t.Helper()
	end := f.states[id].EndTime
	err := f.store.Update(executions.Name, func(b *projections.Batch) error {
		if err := b.Delete(append(binary.BigEndian.AppendUint64([]byte("e/"), uint64(end)), id...)); err != nil {
			return err
		}
		return b.Set([]byte("k/"+id), binary.BigEndian.AppendUint64(nil, uint64(end)))
	})
	if err != nil {
		f.t.Fatal(err)
	}
}

// A listing of the compaction list goes on after a workflow an earlier
// one returned, from the list keyed by id to the time-ordered one: page
// by page, it lists what one listing does, in its order. The compactor
// goes on so past workflows whose compaction keeps failing (see guard).
func TestAwaitingCompactionGoesOn(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ids := []string{f.start("old-1"), f.start("old-2"), f.start("new-1"), f.start("new-2")}
	f.endSealed(ids...)
	f.moveToLegacyList(ids[0])
	f.moveToLegacyList(ids[1])
	ctx := context.Background()
	all, err := f.reader.AwaitingCompaction(ctx, math.MaxInt64, executions.Ended{}, 10)
	if err != nil || len(all) != len(ids) {
		t.Fatalf("awaiting compaction: %+v, %v; want %d", all, err, len(ids))
	}
	var paged []executions.Ended
	for after := (executions.Ended{}); len(paged) <= len(ids); {
		page, err := f.reader.AwaitingCompaction(ctx, math.MaxInt64, after, 1)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		paged = append(paged, page...)
		after = page[0]
	}
	if !slices.Equal(paged, all) {
		t.Fatalf("listed one at a time: %+v, want %+v", paged, all)
	}
	for i, e := range all {
		if e.ByID != (i < 2) {
			t.Errorf("%+v listed on the list keyed by id: %t, want %t", e, e.ByID, i < 2)
		}
	}
}

// A data dir written before the time-ordered compaction list keeps its
// ended workflows in the list keyed by id: they are listed from there, and
// their compaction takes them off it.
func TestLegacyCompactionList(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	old, current := f.start("old"), f.start("current")
	f.endSealed(old, current)
	f.moveToLegacyList(old)
	awaiting := func() []string {
		t.Helper()
		ended, err := f.reader.AwaitingCompaction(context.Background(), math.MaxInt64, executions.Ended{}, 10)
		if err != nil {
			t.Fatal(err)
		}
		ids := []string{}
		for _, e := range ended {
			ids = append(ids, e.WorkflowID)
		}
		return ids
	}
	if got := awaiting(); len(got) != 2 || got[0] != old || got[1] != current {
		t.Fatalf("awaiting compaction: %v, want %s (old list) then %s", got, old, current)
	}
	f.decide(old, engine.Compact{})
	if got := awaiting(); len(got) != 1 || got[0] != current {
		t.Fatalf("after compacting %s: %v, want only %s", old, got, current)
	}
	f.decide(current, engine.Compact{})
	if got := awaiting(); len(got) != 0 {
		t.Fatalf("after compacting both: %v", got)
	}
	f.checkGauges("both compacted", executions.Gauges{})
}

const twoWaits = `{"name":"two_waits","version":1,"tasks":[{"name":"gate1","taskReferenceName":"gate1","type":"WAIT"},
 {"name":"gate2","taskReferenceName":"gate2","type":"WAIT"}]}`

// A state is stored in parts: its head, its definition, its input and
// each task, each written when it changes. They read back whole, and a state of the
// layout that kept them inside its head reads and moves them out.
func TestStateStoredInParts(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	raw := f.store.Reader(executions.Name)
	head := func(id string) *engine.Workflow {
		t.Helper()
		v, err := raw.Get([]byte("w/" + id))
		if err != nil {
			t.Fatal(err)
		}
		var w engine.Workflow
		if err := msgpack.Unmarshal(v, &w); err != nil {
			t.Fatal(err)
		}
		return &w
	}
	task0 := func(id string) []byte {
		t.Helper()
		v, _ := raw.Get([]byte("w/" + id + "\x00t\x00\x00\x00\x00"))
		return v
	}
	// readBack checks that the reader assembles the state the engine folded.
	readBack := func(id string) {
		t.Helper()
		got, err := f.reader.Workflow(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		want := f.states[id]
		if string(got.DefJSON) != string(want.DefJSON) || len(want.DefJSON) == 0 {
			t.Fatalf("definition read back: %s, want %s", got.DefJSON, want.DefJSON)
		}
		if !reflect.DeepEqual(got.Input, want.Input) {
			t.Fatalf("input read back: %v, want %v", got.Input, want.Input)
		}
		if len(got.Tasks) != len(want.Tasks) {
			t.Fatalf("%d tasks read back, want %d", len(got.Tasks), len(want.Tasks))
		}
		for i, task := range want.Tasks {
			if g := got.Tasks[i]; g.ID != task.ID || g.Status != task.Status || g.Reason != task.Reason {
				t.Fatalf("task %d read back as %s %s %q, want %s %s %q", i, g.ID, g.Status, g.Reason, task.ID, task.Status, task.Reason)
			}
		}
	}
	complete := func(id string, i int) {
		t.Helper()
		task := f.states[id].Tasks[i]
		f.decide(id, engine.Result{Result: conductor.TaskResult{TaskID: task.ID, WorkflowInstanceID: id, Status: conductor.TaskCompleted}})
	}

	var def conductor.WorkflowDef
	if err := conductor.Unmarshal([]byte(twoWaits), &def); err != nil {
		t.Fatal(err)
	}
	id := uuid.NewString()
	f.decide(id, engine.Start{WorkflowID: id, Def: &def, Request: conductor.StartWorkflowRequest{Input: map[string]any{"items": []any{"a", "b"}}}})
	complete(id, 0)
	if h := head(id); len(h.DefJSON) != 0 || h.Input != nil || h.Tasks != nil {
		t.Fatalf("the head holds a definition (%d bytes), input (%v) or tasks (%d)", len(h.DefJSON), h.Input, len(h.Tasks))
	}
	readBack(id)

	// A record that leaves the input and the first task as they were does
	// not write them: markers put in their place stay.
	markedInput := map[string]any{"marker": "input"}
	marked := *f.states[id].Tasks[0]
	marked.Reason = "marker"
	encInput, err := msgpack.Marshal(markedInput)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := msgpack.Marshal(&marked)
	if err != nil {
		t.Fatal(err)
	}
	err = f.store.Update(executions.Name, func(b *projections.Batch) error {
		if err := b.Set([]byte("w/"+id+"\x00in"), encInput); err != nil {
			return err
		}
		return b.Set([]byte("w/"+id+"\x00t\x00\x00\x00\x00"), enc)
	})
	if err != nil {
		t.Fatal(err)
	}
	complete(id, 1)
	if !bytes.Equal(task0(id), enc) {
		t.Fatal("a record that left the first task as it was wrote it again")
	}
	if v, _ := raw.Get([]byte("w/" + id + "\x00in")); !bytes.Equal(v, encInput) {
		t.Fatal("a record that left the input as it was wrote it again")
	}
	folded, foldedInput := f.states[id].Tasks[0], f.states[id].Input
	f.states[id].Tasks[0], f.states[id].Input = &marked, markedInput // what the store holds now
	readBack(id)
	f.states[id].Tasks[0], f.states[id].Input = folded, foldedInput

	// A rerun with new input drops the second task, replaces the first and
	// the input.
	f.decide(id, engine.Rerun{Request: conductor.RerunWorkflowRequest{WorkflowInput: map[string]any{"items": []any{"c"}}}})
	if bytes.Equal(task0(id), enc) {
		t.Fatal("the rerun left the first task as it was")
	}
	if _, err := raw.Get([]byte("w/" + id + "\x00t\x00\x00\x00\x01")); err == nil {
		t.Fatal("the rerun left the dropped second task")
	}
	readBack(id)

	var v2 conductor.WorkflowDef
	if err := conductor.Unmarshal([]byte(strings.Replace(twoWaits, `"version":1`, `"version":2`, 1)), &v2); err != nil {
		t.Fatal(err)
	}
	f.decide(id, engine.Terminate{Reason: "x"})
	f.decide(id, engine.Restart{Def: &v2, DecidedFor: f.states[id].Principals()})
	if w, err := f.reader.Workflow(context.Background(), id); err != nil || !strings.Contains(string(w.DefJSON), `"version":2`) {
		t.Fatalf("after a restart with version 2: %v, %v", w, err)
	}
	readBack(id)

	// The first layout: definition, input and tasks inside the state. The
	// projection forgets ended workflows, so the rerun reads it.
	legacy := uuid.NewString()
	f.decide(legacy, engine.Start{WorkflowID: legacy, Def: &def, Request: conductor.StartWorkflowRequest{Input: map[string]any{"k": "v"}}})
	f.decide(legacy, engine.Terminate{Reason: "x"})
	state, err := msgpack.Marshal(f.states[legacy])
	if err != nil {
		t.Fatal(err)
	}
	err = f.store.Update(executions.Name, func(b *projections.Batch) error {
		for _, part := range []string{"\x00def", "\x00in", "\x00t\x00\x00\x00\x00", "\x00t\x00\x00\x00\x01"} {
			if err := b.Delete([]byte("w/" + legacy + part)); err != nil {
				return err
			}
		}
		return b.Set([]byte("w/"+legacy), state)
	})
	if err != nil {
		t.Fatal(err)
	}
	readBack(legacy)
	f.decide(legacy, engine.Rerun{})
	if h := head(legacy); len(h.DefJSON) != 0 || h.Input != nil || h.Tasks != nil {
		t.Fatal("the next record kept the definition, input or tasks inside the legacy state")
	}
	readBack(legacy)
}

const itemsLoop = `{"name":"items_loop","version":1,"tasks":[
 {"name":"loop","taskReferenceName":"loop","type":"DO_WHILE","items":["a","b","c","d"],
  "loopOver":[{"name":"gate","taskReferenceName":"gate","type":"WAIT"}]}]}`

// A DO_WHILE's entry per iteration is stored apart from its task, each
// written once: the task reads back whole, an entry left as it was is not
// written again, a task stored with its entries inside reads and moves
// them out, and removal deletes them.
func TestLoopEntriesStoredApart(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	raw := f.store.Reader(executions.Name)
	var def conductor.WorkflowDef
	if err := conductor.Unmarshal([]byte(itemsLoop), &def); err != nil {
		t.Fatal(err)
	}
	id := uuid.NewString()
	loopKey := "w/" + id + "\x00t\x00\x00\x00\x00" // the DO_WHILE is the first task
	entry := func(n string) []byte {
		t.Helper()
		v, err := raw.Get([]byte(loopKey + n))
		if err != nil {
			t.Fatalf("entry %s: %v", n, err)
		}
		return v
	}
	// iterate opens the gate of the iteration running.
	iterate := func() {
		t.Helper()
		for _, task := range f.states[id].Tasks {
			if task.Type == conductor.TaskTypeWait && task.Status == conductor.TaskInProgress {
				f.decide(id, engine.Result{Result: conductor.TaskResult{TaskID: task.ID, WorkflowInstanceID: id, Status: conductor.TaskCompleted,
					OutputData: map[string]any{"seen": task.Iteration}}})
				return
			}
		}
		t.Fatal("no gate open")
	}
	readBack := func() {
		t.Helper()
		got, err := f.reader.Workflow(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		// As stored: the engine's ints are int64 once decoded.
		stored := func(v any) (d any) {
			b, err := msgpack.Marshal(v)
			if err == nil {
				err = msgpack.Unmarshal(b, &d)
			}
			if err != nil {
				t.Fatal(err)
			}
			return d
		}
		if want := f.states[id].Tasks; len(got.Tasks) != len(want) || !reflect.DeepEqual(stored(got.Tasks[0].Output), stored(want[0].Output)) {
			t.Fatalf("loop output read back: %v, want %v", got.Tasks[0].Output, want[0].Output)
		}
	}
	f.decide(id, engine.Start{WorkflowID: id, Def: &def})
	iterate()
	iterate()
	var part engine.Task
	v, err := raw.Get([]byte(loopKey))
	if err != nil {
		t.Fatal(err)
	}
	if err := msgpack.Unmarshal(v, &part); err != nil {
		t.Fatal(err)
	}
	if _, ok := part.Output["1"]; ok || part.Output["iteration"] == nil {
		t.Fatalf("the loop task is stored with output %v: want its iteration without the entries", part.Output)
	}
	readBack()

	// An entry left as it was is not written again: a marker put in its
	// place stays, and reads back.
	marker, err := msgpack.Marshal(map[string]any{"marker": true})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.store.Update(executions.Name, func(b *projections.Batch) error { return b.Set([]byte(loopKey+"1"), marker) }); err != nil {
		t.Fatal(err)
	}
	iterate()
	if !bytes.Equal(entry("1"), marker) {
		t.Fatal("a record that left entry 1 as it was wrote it again")
	}
	entry("3")
	folded := f.states[id].Tasks[0]
	marked := *folded
	marked.Output = maps.Clone(folded.Output)
	marked.Output["1"] = map[string]any{"marker": true}
	f.states[id].Tasks[0] = &marked
	readBack()
	f.states[id].Tasks[0] = folded

	// The layout before: the entries inside the task. They read back, and
	// the next record moves them out.
	whole, err := msgpack.Marshal(folded)
	if err != nil {
		t.Fatal(err)
	}
	err = f.store.Update(executions.Name, func(b *projections.Batch) error {
		for _, n := range []string{"1", "2", "3"} {
			if err := b.Delete([]byte(loopKey + n)); err != nil {
				return err
			}
		}
		return b.Set([]byte(loopKey), whole)
	})
	if err != nil {
		t.Fatal(err)
	}
	readBack()
	f.restartProjection() // forget the state folded last: the next record loads it
	iterate()
	for _, n := range []string{"1", "2", "3", "4"} {
		entry(n)
	}
	readBack()
	if f.states[id].Status != conductor.WorkflowCompleted {
		t.Fatalf("the loop of 4 items ended %s", f.states[id].Status)
	}

	// A rerun replaces the loop with a new one, without entries yet.
	f.decide(id, engine.Rerun{})
	if _, err := raw.Get([]byte(loopKey + "1")); err == nil {
		t.Fatal("the rerun left the replaced loop's entries")
	}
	iterate()
	entry("1")
	readBack()

	f.decide(id, engine.Remove{})
	if d := f.dump(); bytes.Contains(d, []byte(id)) {
		for _, l := range bytes.Split(d, []byte("\n")) {
			if bytes.Contains(l, []byte(id)) {
				t.Logf("%q", l)
			}
		}
		t.Fatalf("the read model still mentions removed workflow %s", id)
	}
}

// Due pages through passed deadlines in order, each page after the last
// one's final entry, and never past now.
func TestDuePages(t *testing.T) {
	f := newFixture(t)
	f.start("") // a WAIT without a duration: no deadline
	ctx := context.Background()
	if due, err := f.reader.Due(ctx, f.now.UnixMilli()+1e9, executor.Due{}, 10); err != nil || len(due) != 0 {
		t.Fatalf("due without deadlines: %v %v", due, err)
	}
	// Timeouts: each workflow's at a different time.
	var def conductor.WorkflowDef
	if err := conductor.Unmarshal([]byte(`{"name":"to","timeoutSeconds":1,"timeoutPolicy":"TIME_OUT_WF","tasks":[{"name":"gate","taskReferenceName":"gate","type":"WAIT"}]}`), &def); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for range 5 {
		id := uuid.NewString()
		f.decide(id, engine.Start{WorkflowID: id, Def: &def})
		ids = append(ids, id)
	}
	now := f.now.UnixMilli() + 999 // all but the last (started at f.now) are due
	var got []string
	var after executor.Due
	for pages := 0; ; pages++ {
		if pages > 5 {
			t.Fatalf("the pages do not advance: %v", got)
		}
		page, err := f.reader.Due(ctx, now, after, 2)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range page {
			got = append(got, d.WorkflowID)
		}
		if len(page) < 2 {
			break
		}
		after = page[len(page)-1]
	}
	if want := strings.Join(ids[:4], " "); strings.Join(got, " ") != want {
		t.Fatalf("due %v\nwant %v", got, want)
	}
}

// Workflows that ended with effects besides their parent's news (here a
// failure workflow to start) are listed by end time for recovery; one that
// completed is not, and one restarted leaves the list.
func TestEndedWithEffects(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	var def conductor.WorkflowDef
	if err := conductor.Unmarshal([]byte(`{"name":"ends","version":1,"failureWorkflow":"cleanup","tasks":[{"name":"gate","taskReferenceName":"gate","type":"WAIT"}]}`), &def); err != nil {
		t.Fatal(err)
	}
	start := func() string {
		id := uuid.NewString()
		f.decide(id, engine.Start{WorkflowID: id, Def: &def})
		return id
	}
	listed := func(since int64) []string {
		var ids []string
		if err := f.reader.EndedWithEffects(context.Background(), since, func(id string) bool { ids = append(ids, id); return true }); err != nil {
			t.Fatal(err)
		}
		return ids
	}
	terminated, completed := start(), start()
	f.decide(terminated, engine.Terminate{Reason: "operator", TriggerFailureWorkflow: true})
	gate := f.states[completed].Tasks[0]
	f.decide(completed, engine.Result{Result: conductor.TaskResult{TaskID: gate.ID, WorkflowInstanceID: completed, Status: conductor.TaskCompleted}})
	if got := listed(0); !equal(got, []string{terminated}) {
		t.Fatalf("listed %v, want only %s", got, terminated)
	}
	if got := listed(f.states[terminated].EndTime + 1); len(got) != 0 {
		t.Fatalf("ended since after its end: %v", got)
	}
	f.decide(terminated, engine.Restart{})
	if got := listed(0); len(got) != 0 {
		t.Fatalf("listed %v after the restart", got)
	}

	// The list keeps an hour's ends: recovery looks back ten minutes
	// from the log's last record. Older ones go as a later one joins.
	old := start()
	f.decide(old, engine.Terminate{TriggerFailureWorkflow: true})
	f.now = f.now.Add(59 * time.Minute)
	recent := start()
	f.decide(recent, engine.Terminate{TriggerFailureWorkflow: true})
	if got := listed(0); !equal(got, []string{old, recent}) {
		t.Fatalf("listed %v, want %s and %s", got, old, recent)
	}
	f.now = f.now.Add(2 * time.Minute)
	last := start()
	f.decide(last, engine.Terminate{TriggerFailureWorkflow: true})
	if got := listed(0); !equal(got, []string{recent, last}) {
		t.Fatalf("listed %v, want %s and %s: %s ended over an hour before", got, recent, last, old)
	}
}

// A workflow terminated and removed by one request (here with a child
// to terminate) is off the list of those that ended with effects, as one
// terminated, then removed, is: recovery cannot act on a removed workflow
// (the decider answers not found), and removal deletes every trace of it.
// The fuzzer (FuzzReadModel) found the entry left by a record that ends
// and removes a workflow at once.
func TestRemovalTakesAWorkflowOffTheEndedList(t *testing.T) {
	def := parseDef(t, `{"name":"parent","version":1,"tasks":[{"name":"kid","taskReferenceName":"kid","type":"SUB_WORKFLOW",
	 "subWorkflowParam":{"name":"kid","version":1}}]}`)
	for name, removal := range map[string][]engine.Trigger{
		"terminated, then removed":       {engine.Terminate{Reason: "operator"}, engine.Remove{}},
		"terminated and removed at once": {engine.Remove{Terminate: true, Reason: "operator"}},
	} {
		var seq uint64
		r := newRecorder(t, &seq)
		r.decide(engine.Start{WorkflowID: r.id, Def: def})
		for _, trig := range removal {
			r.decide(trig)
		}
		if !engine.HasTerminalEffects(r.w) {
			t.Fatalf("%s: the workflow ended without effects to list", name)
		}
		store := testutil.OpenStore(t)
		applyAll(t, store, executions.NewProjection(), r.recs)
		var listed []string
		err := executions.NewReader(store).EndedWithEffects(context.Background(), 0, func(id string) bool { listed = append(listed, id); return true })
		if err != nil {
			t.Fatal(err)
		}
		if len(listed) != 0 {
			t.Errorf("%s: listed as ended with effects: %v", name, listed)
		}
	}
}

// ScheduledBefore lists the workflows of tasks still SCHEDULED since a
// time or before, from the task status index: not a task taken since, nor
// one scheduled later.
func TestScheduledBefore(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	var def conductor.WorkflowDef
	if err := conductor.Unmarshal([]byte(`{"name":"one_task","version":1,"tasks":[{"name":"work","taskReferenceName":"w"}]}`), &def); err != nil {
		t.Fatal(err)
	}
	var ids []string
	var scheduled []int64
	for range 4 {
		id := uuid.NewString()
		f.decide(id, engine.Start{WorkflowID: id, Def: &def})
		ids, scheduled = append(ids, id), append(scheduled, f.states[id].Tasks[0].ScheduledTime)
	}
	taken := ids[1]
	f.decide(taken, engine.Take{TaskID: f.states[taken].Tasks[0].ID, WorkerID: "w1", TaskType: "work"})
	if got := f.states[taken].Tasks[0].Status; got != conductor.TaskInProgress {
		t.Fatalf("taken task is %s", got)
	}

	var got []string
	if err := f.reader.ScheduledBefore(context.Background(), scheduled[2], func(id string) bool {
		got = append(got, id)
		return true
	}); err != nil {
		t.Fatal(err)
	}
	if want := []string{ids[0], ids[2]}; !slices.Equal(got, want) {
		t.Fatalf("scheduled at or before the third: %v\nwant %v", got, want)
	}
}

// A value listed twice in IN finds its workflows once, and workflows
// searched by id are ordered by their start time like any others, not by
// their ids.
func TestSearchListsEachWorkflowOnceInStartOrder(t *testing.T) {
	f := newFixture(t)
	var def conductor.WorkflowDef
	if err := conductor.Unmarshal([]byte(oneWait), &def); err != nil {
		t.Fatal(err)
	}
	ids := []string{"wf-z", "wf-y", "wf-x"} // started in this order: their ids sort the other way
	for _, id := range ids {
		f.decide(id, engine.Start{WorkflowID: id, Def: &def})
	}
	newestFirst := []string{"wf-x", "wf-y", "wf-z"}
	for q, want := range map[string][]string{
		"status IN (RUNNING, RUNNING)":                    newestFirst,
		"workflowType IN (one_wait, one_wait)":            newestFirst,
		"workflowId IN (wf-y, wf-z, wf-x, wf-y)":          newestFirst,
		"workflowId = wf-y":                               {"wf-y"},
		"workflowId IN (wf-z, wf-x) AND status = RUNNING": {"wf-x", "wf-z"},
	} {
		if got := f.search(q); !equal(got, want) {
			t.Errorf("%q = %v, want %v", q, got, want)
		}
	}
}

// A comparison does not find a workflow that lacks the value, as
// Conductor's Elasticsearch index, whose WorkflowSummary leaves an unset
// end time or correlation id out, does not: endTime < t found the
// workflows still running, which a clean-up of the workflows that ended
// before t would then remove.
func TestAComparisonFindsNoWorkflowThatLacksTheValue(t *testing.T) {
	f := newFixture(t)
	ended, running := f.start("c-a"), f.start("")
	f.decide(ended, engine.Terminate{Reason: "x"})
	for _, c := range []struct {
		q    string
		want []string
	}{
		{"endTime < 1900000000000", []string{ended}},
		{"endTime <= 1900000000000", []string{ended}},
		{"endTime >= 0", []string{ended}},
		{"endTime BETWEEN 0 AND 1900000000000", []string{ended}},
		{"endTime IS NULL", []string{running}},
		{"endTime IS NOT NULL", []string{ended}},
		{"endTime != 1", []string{running, ended}},
		{"correlationId < zzz", []string{ended}},
		{"correlationId STARTS_WITH ''", []string{ended}},
		{"correlationId != c-a", []string{running}},
		{"correlationId NOT IN (c-a)", []string{running}},
		{"correlationId IS NULL", []string{running}},
		{"endTime < 1900000000000 OR correlationId IS NULL", []string{running, ended}},
	} {
		if got := f.search(c.q); !equal(got, c.want) {
			t.Errorf("%q = %v, want %v", c.q, got, c.want)
		}
	}
}

// IS NULL finds a workflow whose index document, as Conductor's
// WorkflowSummary makes it, lacks the field: an unset text or end time.
// A number is never null, 0 or not, as the summary always holds its
// priority, version and executionTime: priority IS NULL found every
// workflow started without a priority, and executionTime IS NULL the
// running ones, which priority = 0 and executionTime = 0 find.
func TestIsNullFindsTheWorkflowsWhoseIndexLacksTheField(t *testing.T) {
	f := newFixture(t)
	var def conductor.WorkflowDef
	if err := conductor.Unmarshal([]byte(oneWait), &def); err != nil {
		t.Fatal(err)
	}
	ids := map[string]string{"set": uuid.NewString(), "unset": uuid.NewString(), "zero": uuid.NewString()}
	f.decide(ids["set"], engine.Start{WorkflowID: ids["set"], Def: &def, CreatedBy: "alice", ParentWorkflowID: "parent-1",
		Request: conductor.StartWorkflowRequest{CorrelationID: "c-1", Priority: 7, IdempotencyKey: "k-1"}})
	f.decide(ids["set"], engine.Terminate{Reason: "stop"})
	f.decide(ids["unset"], engine.Start{WorkflowID: ids["unset"], Def: &def})
	// Each field given its zero value, and ended: its end time and
	// execution time are set.
	f.decide(ids["zero"], engine.Start{WorkflowID: ids["zero"], Def: &def, CreatedBy: "", ParentWorkflowID: "",
		Request: conductor.StartWorkflowRequest{CorrelationID: "", Priority: 0, IdempotencyKey: ""}})
	f.decide(ids["zero"], engine.Terminate{Reason: ""})

	all := []string{"set", "unset", "zero"}
	lacking := map[string][]string{ // field: the workflows IS NULL finds
		"workflowId": nil, "workflowType": nil, "version": nil, "status": nil,
		"priority": nil, "executionTime": nil, "startTime": nil, "updateTime": nil,
		"correlationId": {"unset", "zero"}, "createdBy": {"unset", "zero"}, "parentWorkflowId": {"unset", "zero"},
		"idempotencyKey": {"unset", "zero"}, "reasonForIncompletion": {"unset", "zero"},
		"endTime": {"unset"},
	}
	// found names the workflows q finds, in the order of all.
	found := func(q string) []string {
		got := f.search(q)
		return slices.DeleteFunc(slices.Clone(all), func(n string) bool { return !slices.Contains(got, ids[n]) })
	}
	checkNulls(t, executions.WorkflowFields, lacking, all, found)
	// A number's 0 is a value like any other.
	for q, want := range map[string][]string{
		"priority = 0": {"unset", "zero"}, "priority > 0": {"set"}, "executionTime = 0": {"unset"},
	} {
		if got := found(q); !equal(got, want) {
			t.Errorf("%q = %v, want %v", q, got, want)
		}
	}
}

// checkNulls checks that IS NULL finds, of the documents all names, those
// lacking gives for each field of schema, and IS NOT NULL the others, by
// found (which names what a query finds, in the order of all).
func checkNulls(t *testing.T, schema query.Schema, lacking map[string][]string, all []string, found func(q string) []string) {
	t.Helper()
	if len(lacking) != len(schema) {
		t.Fatalf("the table covers %d fields of %d", len(lacking), len(schema))
	}
	for field := range schema {
		null, ok := lacking[field]
		if !ok {
			t.Fatalf("no row for %s", field)
		}
		isNull := func(n string) bool { return slices.Contains(null, n) }
		for q, want := range map[string][]string{
			field + " IS NULL":     slices.DeleteFunc(slices.Clone(all), func(n string) bool { return !isNull(n) }),
			field + " IS NOT NULL": slices.DeleteFunc(slices.Clone(all), isNull),
		} {
			if got := found(q); !equal(got, want) {
				t.Errorf("%q = %v, want %v", q, got, want)
			}
		}
	}
}

// A freeText search reads of each workflow what it matches, its head
// (id, name, correlation id, input and output), and none of its tasks: it
// read every task of up to 100,000 workflows, 124 µs a workflow of 21
// tasks where the head takes 17. A workflow whose task cannot be read is
// still found.
func TestFreeTextReadsNoTask(t *testing.T) {
	f := newFixture(t)
	var def conductor.WorkflowDef
	if err := conductor.Unmarshal([]byte(oneWait), &def); err != nil {
		t.Fatal(err)
	}
	id := uuid.NewString()
	f.decide(id, engine.Start{WorkflowID: id, Def: &def, Request: conductor.StartWorkflowRequest{Input: map[string]any{"order": "o-42"}}})
	err := f.store.Update(executions.Name, func(b *projections.Batch) error {
		return b.Set(executions.TaskKey(id, 0), []byte{0xc1}) // a byte msgpack never writes
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.reader.Workflow(context.Background(), id); err == nil {
		t.Fatal("the workflow's task still reads")
	}
	ids, err := f.reader.SearchWorkflowIDs(context.Background(), query.Search{FreeText: "o-42"})
	if err != nil || !equal(ids, []string{id}) {
		t.Fatalf("found %v, err %v; want %s", ids, err, id)
	}
}

// A search of several index values reads them all as of one moment: a
// workflow that changed status between the scans of two values was found
// by both, listed and counted twice, or, scanned in the other order, by
// neither, where a task search reads one snapshot.
func TestASearchOfSeveralValuesListsAWorkflowThatMovesOnce(t *testing.T) {
	for _, q := range []string{"status IN (RUNNING, TERMINATED)", "status IN (TERMINATED, RUNNING)"} {
		t.Run(q, func(t *testing.T) {
			f := newFixture(t)
			ended := f.start("")
			f.decide(ended, engine.Terminate{Reason: "x"})
			moves := f.start("")
			moved := false
			n, ws, err := f.reader.SearchWorkflows(context.Background(), query.Search{Query: q, Size: 10,
				Visible: func(string, string) bool {
					// At the first candidate seen, one workflow ends
					// while the search runs.
					if !moved {
						moved = true
						f.decide(moves, engine.Terminate{Reason: "x"})
					}
					return true
				}})
			if err != nil {
				t.Fatal(err)
			}
			ids := []string{}
			for _, w := range ws {
				ids = append(ids, w.ID)
			}
			slices.Sort(ids)
			want := []string{ended, moves}
			slices.Sort(want)
			if !moved || n != 2 || !equal(ids, want) {
				t.Fatalf("moved %v: totalHits %d, results %v, want 2: %v", moved, n, ids, want)
			}
		})
	}
}

// keyRunners lists the workflows reader says run with an idempotency key
// of one_wait, and their status.
func keyRunners(t *testing.T, reader *executions.Reader, key string) map[string]string {
	t.Helper()
	got := map[string]string{}
	err := reader.RunningWithIdempotencyKey(context.Background(), "one_wait", key, func(id, status string) bool {
		got[id] = status
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// keyHolders lists the workflows reader says were started with an
// idempotency key of one_wait and not removed, and their status.
func keyHolders(t *testing.T, reader *executions.Reader, key string) map[string]string {
	t.Helper()
	got := map[string]string{}
	err := reader.WithIdempotencyKey(context.Background(), "one_wait", key, func(id, status string, startTime int64) bool {
		if startTime == 0 {
			t.Errorf("workflow %s listed without its start time", id)
		}
		got[id] = status
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// keyedStarts returns a function that starts a one_wait workflow with an
// idempotency key in f and returns its id.
func keyedStarts(t *testing.T, f *fixture) func(key string) string {
	t.Helper()
	var def conductor.WorkflowDef
	if err := conductor.Unmarshal([]byte(oneWait), &def); err != nil {
		t.Fatal(err)
	}
	return func(key string) string {
		id := uuid.NewString()
		f.decide(id, engine.Start{WorkflowID: id, Def: &def, Request: conductor.StartWorkflowRequest{IdempotencyKey: key}})
		return id
	}
}

// Every workflow started with an idempotency key is listed under it while
// it runs or is paused, the key's last or not (a restart runs an older one
// again), and no longer once it ends or is removed; a key that begins
// with another is not that key. A rebuild from the log lists the same.
func TestRunningWithIdempotencyKey(t *testing.T) {
	f := newFixture(t)
	start := keyedStarts(t, f)
	a, b, other := start("k"), start("k"), start("k\x00b")
	check := func(step string, want map[string]string) {
		t.Helper()
		if got := keyRunners(t, f.reader, "k"); !maps.Equal(got, want) {
			t.Fatalf("%s: running with the key: %v, want %v", step, got, want)
		}
	}
	check("started", map[string]string{a: conductor.WorkflowRunning, b: conductor.WorkflowRunning})
	f.decide(a, engine.Terminate{Reason: "x"})
	f.decide(b, engine.Pause{})
	check("a ended, b paused", map[string]string{b: conductor.WorkflowPaused})
	f.decide(b, engine.Remove{})
	check("b removed", map[string]string{})
	f.decide(a, engine.Restart{})
	check("a restarted", map[string]string{a: conductor.WorkflowRunning})
	if got := keyRunners(t, executions.NewReader(f.rebuild()), "k"); !maps.Equal(got, map[string]string{a: conductor.WorkflowRunning}) {
		t.Fatalf("rebuilt: %v", got)
	}
	if got := keyRunners(t, f.reader, "k\x00b"); !maps.Equal(got, map[string]string{other: conductor.WorkflowRunning}) {
		t.Fatalf("the other key: %v", got)
	}
}

// Every workflow started with an idempotency key is listed under it, ended
// or not, until it is removed without archive: the key's last one removed,
// FAIL still refuses a start while an older one is there.
func TestWithIdempotencyKey(t *testing.T) {
	f := newFixture(t)
	start := keyedStarts(t, f)
	a, b, c, other := start("k"), start("k"), start("k"), start("k\x00b")
	start("")
	check := func(step string, want map[string]string) {
		t.Helper()
		if got := keyHolders(t, f.reader, "k"); !maps.Equal(got, want) {
			t.Fatalf("%s: workflows with the key: %v, want %v", step, got, want)
		}
	}
	check("started", map[string]string{a: conductor.WorkflowRunning, b: conductor.WorkflowRunning, c: conductor.WorkflowRunning})
	f.decide(a, engine.Terminate{Reason: "x"})
	f.decide(b, engine.Terminate{Reason: "x"})
	f.decide(c, engine.Pause{})
	check("a and b ended, c paused", map[string]string{a: conductor.WorkflowTerminated, b: conductor.WorkflowTerminated, c: conductor.WorkflowPaused})
	f.decide(c, engine.Remove{})
	f.decide(b, engine.Remove{Archive: true})
	check("c removed, b archived", map[string]string{a: conductor.WorkflowTerminated, b: conductor.WorkflowTerminated})
	f.decide(a, engine.Restart{})
	check("a restarted", map[string]string{a: conductor.WorkflowRunning, b: conductor.WorkflowTerminated})
	if got := keyHolders(t, executions.NewReader(f.rebuild()), "k"); !maps.Equal(got, map[string]string{a: conductor.WorkflowRunning, b: conductor.WorkflowTerminated}) {
		t.Fatalf("rebuilt: %v", got)
	}
	if got := keyHolders(t, f.reader, "k\x00b"); !maps.Equal(got, map[string]string{other: conductor.WorkflowRunning}) {
		t.Fatalf("the other key: %v", got)
	}
}

// forgotten records the workflows the projection tells of.
type forgotten struct {
	mu  sync.Mutex
	ids []string
}

func (f *forgotten) Forget(wfID string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ids = append(f.ids, wfID)
}

func (f *forgotten) has(wfID string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Contains(f.ids, wfID)
}

// Every engine's read model tells the guard of each workflow a record
// leaves ended or removed, whichever engine recorded it: the engine that
// decides the end lets go of what its redaction looked for, and another
// engine that prepared a hand-off of the workflow kept the plaintext of
// the secrets it resolved, past the workflow's compaction.
func TestEndedWorkflowsAreForgotten(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.stop()
	told := &forgotten{}
	f.proj = executions.NewProjection()
	f.proj.ForgetEnded(told)
	f.runProjection()
	ended, removed := f.start("ended"), f.start("removed")
	if told.has(ended) || told.has(removed) {
		t.Fatalf("running workflows forgotten: %v", told.ids)
	}
	f.decide(ended, engine.Terminate{Reason: "done"})
	f.decide(removed, engine.Remove{})
	for _, id := range []string{ended, removed} {
		if !told.has(id) {
			t.Errorf("workflow %s (%s) was not forgotten: %v", id, f.states[id].Status, told.ids)
		}
	}
}

// shredded records the workflows a Shredder was told of, and the keys.
type shredded struct {
	forgotten
	keys map[string]string
}

func (s *shredded) Shred(wfID, secretsKey string) {
	s.Forget(wfID)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys[wfID] = secretsKey
}

func (s *shredded) key(wfID string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.keys[wfID]
}

// Every engine's read model tells of each workflow a record compacts,
// whichever engine recorded it, and of the key its log recorded, so that
// the engine refuses its secrets key: the engine that compacted it
// destroyed the key, and another that had read it kept it in its cache.
// An end alone tells nothing, nor does a removal, with an archive or
// without: a value the workflow found secret just before may still be
// looked for in its children until the compaction delay runs out. A
// workflow removed without an archive is told of at its compaction,
// though its state is gone by then.
func TestCompactedWorkflowsAreShredded(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.stop()
	told := &shredded{keys: map[string]string{}}
	f.proj = executions.NewProjection()
	f.proj.ShredCompacted(told)
	f.runProjection()
	ctx := testutil.Context(t, 10*time.Second)
	// sealUnder records what the guard does when a workflow first seals
	// secrets under a pooled key.
	sealUnder := func(id, key string) {
		t.Helper()
		ev := &schemas.SecretsSealed{Key: key}
		env, err := schemas.Default.Encode(ev)
		if err != nil {
			t.Fatal(err)
		}
		env.ID = uuid.NewString()
		seq, err := f.log.Append(ctx, "fv.wf."+eventlog.Token(id), []schemas.Envelope{env}, f.states[id].Seq)
		if err != nil {
			t.Fatal(err)
		}
		w, err := engine.Apply(f.states[id], ev)
		if err != nil {
			t.Fatal(err)
		}
		w.Seq, f.states[id] = seq, w
	}
	compacted, removed, archived := f.start("compacted"), f.start("removed"), f.start("archived")
	sealUnder(compacted, "kp.compacted.1")
	sealUnder(removed, "kp.removed.2")
	f.decide(compacted, engine.Terminate{Reason: "done"})
	f.decide(removed, engine.Remove{Terminate: true})
	f.decide(archived, engine.Remove{Archive: true, Terminate: true})
	if err := f.runner.WaitFor(ctx, f.states[archived].Seq); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{compacted, removed, archived} {
		if told.has(id) {
			t.Fatalf("workflow %s shredded before its compaction: %v", id, told.ids)
		}
	}
	for _, id := range []string{compacted, removed, archived} {
		f.decide(id, engine.Compact{})
	}
	for id, want := range map[string]string{compacted: "kp.compacted.1", removed: "kp.removed.2", archived: ""} {
		if !told.has(id) {
			t.Errorf("workflow %s (%s, removed %t) was not shredded: %v", id, f.states[id].Status, f.states[id].Removed, told.ids)
		} else if got := told.key(id); got != want {
			t.Errorf("workflow %s shredded with key %q, want %q", id, got, want)
		}
	}
}

// The read model shows the failed task names a retried run keeps, as
// Conductor's retry leaves them (the fold is the engine's), and so does
// a read model rebuilt from the log.
func TestFailedTaskNamesOfARetriedRun(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	id := f.start("c")
	gate := f.states[id].LatestByRef("gate")
	f.decide(id, engine.Result{Result: conductor.TaskResult{TaskID: gate.ID, WorkflowInstanceID: id, Status: conductor.TaskFailed}})
	f.decide(id, engine.Retry{})
	for name, reader := range map[string]*executions.Reader{"followed": f.reader, "rebuilt": executions.NewReader(f.rebuild())} {
		w, err := reader.WorkflowHead(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		view := w.Conductor(false)
		if view.Status != conductor.WorkflowRunning || !equal(view.FailedReferenceTaskNames, []string{"gate"}) || !equal(view.FailedTaskNames, []string{"gate"}) {
			t.Errorf("%s: %s, failedReferenceTaskNames %q, failedTaskNames %q, want RUNNING, [gate] and [gate]",
				name, view.Status, view.FailedReferenceTaskNames, view.FailedTaskNames)
		}
	}
}

// The read model holds the input an upgrade, or a restart onto the latest
// version, leaves a workflow that keeps its input onto a version masking a
// field of it as the engine folds it: the field sealed, the rest as kept,
// whether the record carries the field again alone (InputFields) or, as
// records before did, the whole input (SetInput). A rebuild from the log
// holds the same.
func TestInputKeptOntoMaskedFields(t *testing.T) {
	f := newFixture(t)
	var def conductor.WorkflowDef
	if err := conductor.Unmarshal([]byte(oneWait), &def); err != nil {
		t.Fatal(err)
	}
	v2 := []byte(`{"name":"one_wait","version":2,"maskedFields":["card"],"tasks":[{"name":"gate","taskReferenceName":"gate","type":"WAIT"}]}`)
	sealed := &masking.Sealed{Kind: masking.KindSecrets, Purpose: "wf/one_wait/input.card", Ciphertext: []byte{1, 2, 3}}
	kept := map[string]any{"card": "4111-1111", "note": "plain"}
	want := map[string]any{"card": sealed, "note": "plain"}
	ts := f.now.UnixMilli()
	ids := map[string]string{}
	for _, tc := range []struct {
		name    string
		restart bool
		moved   schemas.Event
	}{
		{"an upgrade recording the field", false, &schemas.WorkflowUpgraded{Def: v2, InputFields: map[string]any{"card": sealed}, Time: ts}},
		{"an upgrade recording the whole input", false, &schemas.WorkflowUpgraded{Def: v2, Input: want, SetInput: true, Time: ts}},
		{"a restart recording the field", true, &schemas.WorkflowReset{Kind: schemas.ResetRestart, Def: v2, InputFields: map[string]any{"card": sealed}, Time: ts}},
		{"a restart recording the whole input", true, &schemas.WorkflowReset{Kind: schemas.ResetRestart, Def: v2, Input: want, SetInput: true, Time: ts}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := uuid.NewString()
			ids[tc.name] = id
			f.decide(id, engine.Start{WorkflowID: id, Def: &def, Request: conductor.StartWorkflowRequest{Input: kept}})
			if tc.restart {
				f.decide(id, engine.Terminate{Reason: "again"})
			}
			folded, err := engine.Apply(f.states[id], tc.moved)
			if err != nil {
				t.Fatal(err)
			}
			f.record(id, []schemas.Event{tc.moved}, folded)
			if folded.Version != 2 || !reflect.DeepEqual(folded.Input, want) {
				t.Fatalf("the engine folds version %d, input %#v; want 2, %#v", folded.Version, folded.Input, want)
			}
			stored, err := f.reader.Workflow(context.Background(), id)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(stored.Input, folded.Input) {
				t.Errorf("the read model holds input %#v, the engine folds %#v", stored.Input, folded.Input)
			}
		})
	}
	rebuilt := executions.NewReader(f.rebuild())
	for name, id := range ids {
		w, err := rebuilt.Workflow(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(w.Input, want) {
			t.Errorf("%s: rebuilt from the log, the read model holds input %#v, want %#v", name, w.Input, want)
		}
	}
}
