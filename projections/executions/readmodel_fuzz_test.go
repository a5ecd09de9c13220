package executions_test

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/executor"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/internal/lifecyclegen"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/projections"
	"github.com/flowvault/flowvault/projections/executions"
	"github.com/flowvault/flowvault/projections/executions/query"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// FuzzReadModel drives up to three random workflows (the engine
// lifecycle fuzzers' grammar and triggers, internal/lifecyclegen),
// interleaved, through random lifecycles, with operators' compactions
// and removals (with and without archive, terminating a running one)
// among them, and up to two children their SUB_WORKFLOW tasks start,
// with what the executor does for them (readmodel_children_test.go), and
// records each decision as the executor appends it: one record a
// decision, the workflows' sequences one log's, now and then with the
// guard's seal of its values under a secrets key (which gives compaction
// a key to destroy). It folds the records into the executions
// read model on Pebble (in memory) and holds it to:
//
//   - Batch-split invariance: one record a commit, all in one commit, and
//     commits cut at random (each commit flushed, as the runner does),
//     some of the cuts with the projection made anew (a restart: the
//     states it kept in memory gone), leave the same keys and values; so
//     do folds through an index of the tasks (a large workflow's way) and
//     with engine.Apply event by event (FoldPlainly's reference).
//   - Derivability: each workflow's records merged into one record (its
//     events in order, applied in the order the workflows started) leave
//     the same keys and values as well. A record of every event folds
//     from nothing to the final state, so what it writes follows from
//     the final states alone: a key that record by record upkeep left
//     behind (a status a workflow left, a task a retry replaced, a timer
//     whose task ended) or failed to write shows as a difference.
//   - Public reads answer what the engine's final states say: a workflow
//     by id (with its tasks and without, or not found once removed
//     without archive), each of its tasks by id and through its lookup
//     (not found once a restart or rerun dropped it), the page of its
//     tasks with their
//     counts by status, searches by status, name, correlation id and
//     parent, the task search by status, each SUB_WORKFLOW task's child
//     and each child's parent task as the API reads them, the workflows
//     of a correlation id, the running set and each principal's count,
//     the timers (engine.Deadlines), the compaction list, the list of
//     those that ended with effects, the holder of each secrets key and
//     the gauges.
//   - The deadlines the read model counts at each record are those of a
//     walk over the state (see TestMain).
func FuzzReadModel(f *testing.F) {
	for _, seed := range [][]byte{
		{},
		{2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
		[]byte("simple tasks, answered, three workflows"),
		bytes.Repeat([]byte{1, 9, 4, 7, 0, 8, 2}, 24),
		bytes.Repeat([]byte{2, 3, 1, 13, 0, 2, 5, 14, 1, 15}, 16),
		bytes.Repeat([]byte{1, 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}, 6),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) { runReadModel(t, data) })
}

// fuzzEpoch is the virtual clock's start.
var fuzzEpoch = time.UnixMilli(1_800_000_000_000).UTC()

// fuzzWorkflow is one of a run's workflows as the engine decided it.
type fuzzWorkflow struct {
	id string
	// label names it in the run's trail: its place among the run's
	// workflows.
	label  string
	w      *engine.Workflow
	driver *lifecyclegen.Driver
	// gone: removed without archive; its records may only compact it.
	gone bool
	// tasks are the ids of every task it ever had.
	tasks map[string]bool
	// keys counts the secrets keys its data was sealed under.
	keys int
}

// key is the id of the n-th secrets key (from 1) wf's data was sealed
// under.
func (wf *fuzzWorkflow) key(n int) string { return fmt.Sprintf("dk-%s-%d", wf.id, n) }

// fuzzRun decides a run's workflows and records their decisions.
type fuzzRun struct {
	t     *testing.T
	src   *lifecyclegen.Src
	now   time.Time
	seq   uint64
	wfs   []*fuzzWorkflow
	recs  []eventlog.Record
	trail []string
	// lastEffects is the latest end with effects of any state a record
	// left (engine.HasTerminalEffects).
	lastEffects int64
	// byID are the run's workflows by id.
	byID map[string]*fuzzWorkflow
	// children are the ids of the children that run for real (see
	// readmodel_children_test.go), started or about to be.
	children map[string]bool
	// effects are those of the decisions the executor has not performed
	// yet that reach another of the run's workflows.
	effects []engine.Effect
}

func runReadModel(t *testing.T, data []byte) {
	src := lifecyclegen.NewSrc(data)
	r := &fuzzRun{t: t, src: src, now: fuzzEpoch, byID: map[string]*fuzzWorkflow{}, children: map[string]bool{}}
	for i := range 1 + src.N(3) {
		r.start(i)
	}
	for i := 0; i < 80 && !src.Done(); i++ {
		r.next()
	}
	r.settle()
	if len(r.recs) == 0 {
		t.Fatal("no records")
	}
	// TestMain's check of the deadlines counted at each record reports
	// at the process's end, which a fuzzing worker does not reach.
	var stray string
	defer executions.CheckTimers(func(w *engine.Workflow, counted []int64) {
		if want := engine.Deadlines(w); stray == "" && !slices.Equal(counted, want) {
			stray = fmt.Sprintf("workflow %s at %d (%s): counted deadlines %v, a walk finds %v", w.ID, w.Seq, w.Status, counted, want)
		}
	})()
	r.checkFolds(data)
	if stray != "" {
		r.fatalf("%s", stray)
	}
}

// start starts the i-th workflow: a definition from the grammar, one of
// two correlation ids, principals and idempotency keys (or none).
func (r *fuzzRun) start(i int) {
	src := r.src
	def := r.def("fz")
	wf := r.add(fmt.Sprintf("00000000-0000-4000-8000-%012d", i))
	req := conductor.StartWorkflowRequest{Input: map[string]any{"c": []string{"a", "b", "z"}[src.N(3)]},
		CorrelationID: []string{"", "corr-a", "corr-b"}[src.N(3)]}
	if k := src.N(3); k > 0 {
		req.IdempotencyKey = fmt.Sprintf("key-%d", k)
	}
	r.decide(wf, engine.Start{WorkflowID: wf.id, Def: def, Request: req, CreatedBy: []string{"app:a", "app:b"}[src.N(2)]})
}

// def returns a definition from the grammar, named name.
func (r *fuzzRun) def(name string) *conductor.WorkflowDef {
	js := lifecyclegen.Def(r.src, lifecyclegen.Grammar{ExclusiveJoins: r.src.N(2) == 0})
	// The grammar names its definitions "fz", the first key it writes.
	js = strings.Replace(js, `"name":"fz"`, fmt.Sprintf("%q:%q", "name", name), 1)
	def := parseDef(r.t, js)
	if err := engine.ValidateWorkflowDef(def); err != nil {
		r.t.Fatalf("the grammar made an invalid definition: %v\n%s", err, js)
	}
	return def
}

// add adds a workflow of id to the run, to be started.
func (r *fuzzRun) add(id string) *fuzzWorkflow {
	wf := &fuzzWorkflow{id: id, label: strconv.Itoa(len(r.wfs)), driver: lifecyclegen.NewDriver(r.src), tasks: map[string]bool{}}
	wf.driver.Runs = func(child string) bool { return r.children[child] }
	r.wfs = append(r.wfs, wf)
	r.byID[id] = wf
	return wf
}

// next picks a workflow and a trigger for it: mostly the lifecycle
// driver's, now and then an operator's compaction or removal; once a
// child runs for real, now and then the executor's performing of an
// effect that reaches another workflow instead.
func (r *fuzzRun) next() {
	src := r.src
	if len(r.children) > 0 && r.family() {
		return
	}
	wf := r.wfs[src.N(len(r.wfs))]
	if wf.w == nil {
		return
	}
	if op := src.N(24); op < 3 || wf.gone {
		switch {
		case op == 0 || wf.gone:
			r.decide(wf, engine.Compact{})
		case op == 1:
			r.decide(wf, engine.Remove{Archive: true})
		default:
			r.decide(wf, engine.Remove{Terminate: true, Reason: "removed"})
		}
		return
	}
	mv := wf.driver.Next(wf.w, r.now)
	r.now = mv.Now
	if mv.Trigger != nil {
		r.decide(wf, r.withAncestors(wf, mv.Trigger))
	}
}

// decide decides trig for wf and records its events, then what the
// decision left due at once (engine.Pending), as the executor does.
func (r *fuzzRun) decide(wf *fuzzWorkflow, trig engine.Trigger) {
	r.t.Helper()
	for range 100 {
		d, err := engine.Decide(engine.Input{State: wf.w, Trigger: trig, Now: r.now})
		var fault *engine.DeciderFault
		if errors.As(err, &fault) {
			r.t.Fatalf("%s: %v\n%s", engine.TriggerName(trig), err, fault.Stack)
		}
		if err != nil || len(d.Events) == 0 {
			r.trail = append(r.trail, fmt.Sprintf("%s %s at +%s: %v", wf.label, engine.TriggerName(trig), r.now.Sub(fuzzEpoch), err))
			return
		}
		if sealable(trig) && !d.State.Removed && r.src.N(6) == 0 {
			// The executor's guard sealed values of the decision under the
			// workflow's secrets key, or a new one once the old one was
			// destroyed (guard.protect): compaction has a key to destroy.
			if d.State.SecretsKey == "" || d.State.Compacted {
				wf.keys++
			}
			seal := &schemas.SecretsSealed{Key: wf.key(wf.keys)}
			if d.State, err = engine.Apply(d.State, seal); err != nil {
				r.t.Fatalf("seal: %v", err)
			}
			d.Events = append(d.Events, seal)
		}
		types := make([]string, len(d.Events))
		for i, ev := range d.Events {
			types[i] = ev.EventType()
		}
		r.trail = append(r.trail, fmt.Sprintf("%s %s at +%s: %v", wf.label, engine.TriggerName(trig), r.now.Sub(fuzzEpoch), types))
		envs := make([]schemas.Envelope, len(d.Events))
		for i, ev := range d.Events {
			if envs[i], err = schemas.Default.Encode(ev); err != nil {
				r.t.Fatal(err)
			}
		}
		r.seq++
		d.State.Seq = r.seq
		wf.w = d.State
		r.follow(wf, d.Effects)
		r.recs = append(r.recs, eventlog.Record{Subject: "fv.wf." + eventlog.Token(wf.id), Seq: r.seq, Events: envs})
		for _, t := range wf.w.Tasks {
			wf.tasks[t.ID] = true
		}
		if engine.HasTerminalEffects(wf.w) {
			r.lastEffects = max(r.lastEffects, wf.w.EndTime)
		}
		if wf.w.Removed && !wf.w.Archived {
			wf.gone = true
		}
		if wf.gone || !engine.Pending(wf.w) {
			return
		}
		trig = engine.Tick{}
	}
	r.t.Fatalf("still pending after 100 ticks\n%s", strings.Join(r.trail, "\n"))
}

// sealable reports whether a decision on trig may carry values the
// guard seals: not an operator's compaction or removal.
func sealable(trig engine.Trigger) bool {
	switch trig.(type) {
	case engine.Compact, engine.Remove:
		return false
	}
	return true
}

// fatalf fails the run with its triggers.
func (r *fuzzRun) fatalf(format string, args ...any) {
	r.t.Helper()
	r.t.Fatalf("%s\n%d records; triggers:\n  %s", fmt.Sprintf(format, args...), len(r.recs), strings.Join(r.trail, "\n  "))
}

// commitPlan says where a fold commits and where it makes its
// projection anew: after record i when cut(i), anew before the next
// commit when anew(i). set, if not nil, sets how the projection folds
// until the restore it returns.
type commitPlan struct {
	name      string
	cut, anew func(i int) bool
	set       func() (restore func())
}

// checkFolds folds the run's records under each commit plan and merged,
// compares what they stored, then reads the one folded record by record.
func (r *fuzzRun) checkFolds(data []byte) {
	r.t.Helper()
	h := fnv.New64a()
	h.Write(data)
	rnd := rand.New(rand.NewPCG(h.Sum64(), 1))
	cuts, anew := map[int]bool{}, map[int]bool{}
	for i := range r.recs {
		cuts[i] = rnd.IntN(3) == 0
		anew[i] = cuts[i] && rnd.IntN(2) == 0
	}
	never := func(int) bool { return false }
	always := func(int) bool { return true }
	plans := []commitPlan{
		{"one record a commit", always, never, nil},
		{"all in one commit", never, never, nil},
		{"random commits", func(i int) bool { return cuts[i] }, never, nil},
		{"random commits, restarted", func(i int) bool { return cuts[i] }, func(i int) bool { return anew[i] }, nil},
		{"one record a commit, restarted each", always, always, nil},
		// The paths of large workflows and of the reference fold.
		{"random commits, through an index of every state's tasks", func(i int) bool { return cuts[i] }, never,
			func() func() { return executions.IndexFrom(0) }},
		{"one record a commit, event by event with engine.Apply", always, never, executions.FoldPlainly},
	}
	// One store holds every fold, each in a key space of its own: the
	// first in the read model's, which the reads check.
	store, err := projections.OpenStore("", projections.StoreOptions{FS: vfs.NewMem(), Logger: testutil.Logger(r.t)})
	if err != nil {
		r.t.Fatal(err)
	}
	defer store.Close()
	spaces := make([]string, len(plans)+1)
	for i, plan := range plans {
		spaces[i] = executions.Name
		if i > 0 {
			spaces[i] = fmt.Sprintf("%s-%d", executions.Name, i)
		}
		if err := foldPlanned(store, spaces[i], r.recs, plan); err != nil {
			r.fatalf("%v", err)
		}
	}
	spaces[len(plans)] = executions.Name + "-merged"
	if err := foldPlanned(store, spaces[len(plans)], r.merged(), commitPlan{"merged", never, never, nil}); err != nil {
		r.fatalf("%v", err)
	}
	dumps := dumpSpaces(r.t, store, spaces)
	ref := dumps[0]
	for i, plan := range plans[1:] {
		if dump := dumps[i+1]; !bytes.Equal(dump, ref) {
			r.fatalf("folded %s, the read model differs from the one folded %s:\n%s", plan.name, plans[0].name, dumpDiff(ref, dump))
		}
	}
	if merged, ref := r.historyFree(dumps[len(plans)]), r.historyFree(ref); !bytes.Equal(merged, ref) {
		r.fatalf("each workflow's records merged into one, the read model differs from the one folded %s (- record by record, + merged):\n%s",
			plans[0].name, dumpDiff(ref, merged))
	}
	r.checkReads(executions.NewReader(store))
}

// historyFree drops from a store's dump the keys that keep some of the
// workflows' history by design, which a record of every event has not
// lived through: the holders of every secrets key a workflow's log
// recorded, not only its last (checkReads reads them), a principal's
// running count at 0 (kept, not deleted: see addRunning), the gauges at
// 0 (written by a commit whose records changed them, and a record of
// every event may change nothing), the
// idempotency key of a workflow removed without archive (kept, naming
// it: the next start with the key derives its id from it; a record of
// every event removes it unnamed, leaving the key to the one before).
func (r *fuzzRun) historyFree(dump []byte) []byte {
	var out []string
	for _, l := range strings.Split(string(dump), "\n") {
		switch {
		case strings.HasPrefix(l, `"p/executions/x/`),
			strings.HasPrefix(l, `"p/executions/q/`) && strings.HasSuffix(l, `="`+strings.Repeat(`\x00`, 8)+`"`),
			l == `"p/executions/g/"="`+strings.Repeat(`\x00`, 32)+`"`:
			continue
		case strings.HasPrefix(l, `"p/executions/i/`) && slices.ContainsFunc(r.wfs, func(wf *fuzzWorkflow) bool {
			return wf.gone && strings.HasPrefix(l, fmt.Sprintf(`"p/executions/i/%s\x00%s"=`, wf.w.Name, wf.w.IdempotencyKey))
		}):
			continue
		}
		out = append(out, l)
	}
	return []byte(strings.Join(out, "\n"))
}

// merged returns each workflow's records merged into one, with its last
// record's sequence, in the order the workflows started.
func (r *fuzzRun) merged() []eventlog.Record {
	var out []eventlog.Record
	at := map[string]int{}
	for _, rec := range r.recs {
		i, ok := at[rec.Subject]
		if !ok {
			at[rec.Subject] = len(out)
			out = append(out, eventlog.Record{Subject: rec.Subject})
			i = len(out) - 1
		}
		out[i].Seq = rec.Seq
		out[i].Events = append(out[i].Events, rec.Events...)
	}
	return out
}

// foldPlanned folds recs under plan into key space name of store, from
// nothing.
func foldPlanned(store *projections.Store, name string, recs []eventlog.Record, plan commitPlan) error {
	if plan.set != nil {
		defer plan.set()()
	}
	proj := executions.NewProjection()
	for from := 0; from < len(recs); {
		to := from + 1
		for to < len(recs) && !plan.cut(to-1) {
			to++
		}
		err := store.Update(name, func(b *projections.Batch) error {
			for _, rec := range recs[from:to] {
				if err := proj.Apply(b, rec); err != nil {
					return fmt.Errorf("apply %d: %w", rec.Seq, err)
				}
			}
			return proj.Flush(b)
		})
		if err != nil {
			return fmt.Errorf("fold %s: %w", plan.name, err)
		}
		if plan.anew(to - 1) {
			proj = executions.NewProjection()
		}
		from = to
	}
	return nil
}

// dumpSpaces returns the contents of each of store's key spaces, keyed
// as the read model's own.
func dumpSpaces(tb testing.TB, store *projections.Store, spaces []string) [][]byte {
	tb.Helper()
	var all bytes.Buffer
	if err := store.Dump(&all); err != nil {
		tb.Fatal(err)
	}
	dumps := make([][]byte, len(spaces))
	for _, l := range strings.SplitAfter(all.String(), "\n") {
		for i, space := range spaces {
			if rest, ok := strings.CutPrefix(l, `"p/`+space+`/`); ok {
				dumps[i] = append(dumps[i], `"p/`+executions.Name+`/`+rest...)
			}
		}
	}
	return dumps
}

// dumpDiff lists the lines of store dumps a and b that the other lacks.
func dumpDiff(a, b []byte) string {
	in := func(dump []byte) map[string]bool {
		m := map[string]bool{}
		for _, l := range strings.Split(string(dump), "\n") {
			m[l] = true
		}
		return m
	}
	ina, inb := in(a), in(b)
	var out []string
	for _, l := range slices.Sorted(maps.Keys(ina)) {
		if !inb[l] {
			out = append(out, "- "+short(l))
		}
	}
	for _, l := range slices.Sorted(maps.Keys(inb)) {
		if !ina[l] {
			out = append(out, "+ "+short(l))
		}
	}
	return strings.Join(out, "\n")
}

func short(l string) string {
	if len(l) > 300 {
		return l[:300] + "…"
	}
	return l
}

// checkReads holds the read model's public reads to the engine's final
// states.
func (r *fuzzRun) checkReads(reader *executions.Reader) {
	r.t.Helper()
	ctx := context.Background()
	var listed []*fuzzWorkflow // those the read model still shows
	running, byPrincipal := map[string]bool{}, map[string]int{}
	var gauges executions.Gauges
	var timers []executor.Due
	for _, wf := range r.wfs {
		// Every key its log recorded, removed or not: the compactor's
		// sweep finds the workflow whose key to destroy by it.
		for n := 1; n <= wf.keys; n++ {
			key := wf.key(n)
			if holder, ok, err := reader.KeyHolder(ctx, key); err != nil || !ok || holder != wf.id {
				r.fatalf("holder of secrets key %s: %q, %v, %v; want %s", key, holder, ok, err, wf.id)
			}
		}
		got, err := reader.Workflow(ctx, wf.id)
		if wf.gone {
			if !errors.Is(err, fault.ErrNotFound) {
				r.fatalf("workflow %s removed: read %v, %v", wf.id, got != nil, err)
			}
			for id := range wf.tasks {
				if wfID, err := reader.TaskWorkflow(ctx, id); !errors.Is(err, fault.ErrNotFound) {
					r.fatalf("task %s of removed workflow %s: found in %q, %v", id, wf.id, wfID, err)
				}
			}
			continue
		}
		if err != nil {
			r.fatalf("workflow %s: %v", wf.id, err)
		}
		listed = append(listed, wf)
		if a, b := conductorJSON(got), conductorJSON(wf.w); a != b {
			r.fatalf("workflow %s as read:\n%s\nas decided:\n%s", wf.id, a, b)
		}
		head, err := reader.WorkflowHead(ctx, wf.id)
		if err != nil {
			r.fatalf("head of workflow %s: %v", wf.id, err)
		}
		bare := wf.w.Clone()
		bare.Tasks = nil
		if a, b := conductorJSON(head), conductorJSON(bare); a != b {
			r.fatalf("head of workflow %s as read:\n%s\nas decided:\n%s", wf.id, a, b)
		}
		r.checkTasks(reader, wf)
		if !wf.w.Terminal() && !wf.w.Removed {
			running[wf.id] = true
			byPrincipal[wf.w.CreatedBy]++
			gauges.Running++
		}
		for _, t := range wf.w.Tasks {
			if t.Status == conductor.TaskScheduled && !wf.w.Removed {
				gauges.Scheduled++
			}
		}
		for _, at := range engine.Deadlines(wf.w) {
			timers = append(timers, executor.Due{WorkflowID: wf.id, At: at})
			gauges.Timers++
		}
	}
	var compaction []executions.Ended
	for _, wf := range r.wfs {
		if wf.w != nil && wf.w.AwaitsCompaction() {
			compaction = append(compaction, executions.Ended{WorkflowID: wf.id, EndTime: wf.w.EndTime, ByID: wf.gone})
			gauges.Compaction++
		}
		if wf.gone {
			if on, err := reader.RemovedAwaitingCompaction(ctx, wf.id); err != nil || on != wf.w.AwaitsCompaction() {
				r.fatalf("removed workflow %s on the compaction list: %v (%v), awaits compaction: %v", wf.id, on, err, wf.w.AwaitsCompaction())
			}
		}
	}
	r.checkEnded(reader)
	gotCompaction, err := reader.AwaitingCompaction(ctx, math.MaxInt64-1, executions.Ended{}, 1000)
	if err != nil {
		r.fatalf("awaiting compaction: %v", err)
	}
	byID := func(a, b executions.Ended) int { return strings.Compare(a.WorkflowID, b.WorkflowID) }
	slices.SortFunc(compaction, byID)
	if slices.SortFunc(gotCompaction, byID); !slices.Equal(gotCompaction, compaction) {
		r.fatalf("awaiting compaction %v, the states say %v", gotCompaction, compaction)
	}
	slices.SortFunc(timers, func(a, b executor.Due) int {
		return cmp.Or(cmp.Compare(a.At, b.At), strings.Compare(a.WorkflowID, b.WorkflowID))
	})
	gotTimers, err := reader.Due(ctx, math.MaxInt64-1, executor.Due{}, 1000)
	if err != nil {
		r.fatalf("due: %v", err)
	}
	if !slices.Equal(gotTimers, timers) {
		r.fatalf("timers %v, the states' deadlines %v", gotTimers, timers)
	}
	var gotRunning []string
	if err := reader.Running(ctx, func(id string) bool { gotRunning = append(gotRunning, id); return true }); err != nil {
		r.fatalf("running: %v", err)
	}
	if want := slices.Sorted(maps.Keys(running)); !slices.Equal(slices.Sorted(slices.Values(gotRunning)), want) {
		r.fatalf("running %v, want %v", gotRunning, want)
	}
	for _, p := range []string{"app:a", "app:b"} {
		if n, _, err := reader.RunningOf(ctx, p); err != nil || n != byPrincipal[p] {
			r.fatalf("running of %s: %d (%v), want %d", p, n, err, byPrincipal[p])
		}
	}
	got, err := reader.Gauges(ctx)
	if err != nil {
		r.fatalf("gauges: %v", err)
	}
	if got != gauges {
		r.fatalf("gauges %+v, the states' %+v", got, gauges)
	}
	r.checkSearches(reader, listed)
	r.checkLinks(reader, listed)
}

// checkEnded reads the list of workflows that ended with effects, for
// recovery: the workflows still shown whose state ended with effects. It
// reads those that ended within the hour before the latest such end, which
// the list keeps (endedKept); older ones may be gone.
func (r *fuzzRun) checkEnded(reader *executions.Reader) {
	r.t.Helper()
	since := r.lastEffects - time.Hour.Milliseconds()
	var want, got []string
	for _, wf := range r.wfs {
		if !wf.gone && engine.HasTerminalEffects(wf.w) && wf.w.EndTime >= since {
			want = append(want, wf.id)
		}
	}
	err := reader.EndedWithEffects(context.Background(), since, func(id string) bool { got = append(got, id); return true })
	if err != nil {
		r.fatalf("ended with effects: %v", err)
	}
	r.sameHits("ended with effects", len(got), len(got), func(i int) string { return got[i] }, want)
}

func conductorJSON(w *engine.Workflow) string {
	b, err := json.Marshal(w.Conductor(true))
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// checkTasks reads each task wf ever had, by id and in its page.
func (r *fuzzRun) checkTasks(reader *executions.Reader, wf *fuzzWorkflow) {
	r.t.Helper()
	ctx := context.Background()
	for id := range wf.tasks {
		want := wf.w.TaskByID(id)
		wfID, err := reader.TaskWorkflow(ctx, id)
		switch {
		case want == nil && !errors.Is(err, fault.ErrNotFound):
			r.fatalf("task %s, dropped from workflow %s: found in %q, %v", id, wf.id, wfID, err)
		case want != nil && wf.w.Removed && !errors.Is(err, fault.ErrNotFound):
			r.fatalf("task %s of archived workflow %s: found in %q, %v", id, wf.id, wfID, err)
		case want != nil && !wf.w.Removed && (err != nil || wfID != wf.id):
			r.fatalf("task %s of workflow %s: found in %q, %v", id, wf.id, wfID, err)
		}
		if want == nil {
			continue
		}
		_, got, err := reader.WorkflowTask(ctx, wf.id, id)
		if err != nil {
			r.fatalf("task %s of workflow %s: %v", id, wf.id, err)
		}
		a, _ := json.Marshal(wf.w.Conductor(true).Tasks[slices.Index(wf.w.Tasks, want)])
		b, _ := json.Marshal(renderTask(wf.w, got))
		if !bytes.Equal(a, b) {
			r.fatalf("task %s of workflow %s read:\n%s\ndecided:\n%s", id, wf.id, b, a)
		}
	}
	_, summary, matched, page, err := reader.WorkflowTaskPage(ctx, wf.id, func(string) bool { return true }, 0, 1000)
	if err != nil {
		r.fatalf("task page of %s: %v", wf.id, err)
	}
	want := map[string]int64{}
	for _, t := range wf.w.Tasks {
		want[t.Status]++
	}
	if !maps.Equal(summary, want) || matched != len(wf.w.Tasks) || len(page) != len(wf.w.Tasks) {
		r.fatalf("task page of %s: %d of %d tasks matched, %d in the page, counts %v, want %v", wf.id, matched, len(wf.w.Tasks), len(page), summary, want)
	}
	for i, t := range page {
		if t.ID != wf.w.Tasks[i].ID || t.Status != wf.w.Tasks[i].Status {
			r.fatalf("task page of %s: task %d is %s %s, want %s %s", wf.id, i, t.ID, t.Status, wf.w.Tasks[i].ID, wf.w.Tasks[i].Status)
		}
	}
}

// renderTask is t as a workflow's view shows it.
func renderTask(w *engine.Workflow, t *engine.Task) *conductor.Task {
	c := w.Clone()
	c.Tasks = []*engine.Task{t}
	return c.Conductor(true).Tasks[0]
}

// checkSearches searches the workflows and tasks by what the states say.
func (r *fuzzRun) checkSearches(reader *executions.Reader, listed []*fuzzWorkflow) {
	r.t.Helper()
	ctx := context.Background()
	search := func(q string, keep func(*engine.Workflow) bool) {
		r.t.Helper()
		var want []string
		for _, wf := range listed {
			if keep(wf.w) {
				want = append(want, wf.id)
			}
		}
		n, ws, err := reader.SearchWorkflows(ctx, query.Search{Query: q, Size: 100})
		if err != nil {
			r.fatalf("search %q: %v", q, err)
		}
		r.sameHits("search "+q, n, len(ws), func(i int) string { return ws[i].ID }, want)
	}
	for _, s := range []string{conductor.WorkflowRunning, conductor.WorkflowPaused, conductor.WorkflowCompleted, conductor.WorkflowFailed,
		conductor.WorkflowTerminated, conductor.WorkflowTimedOut} {
		search("status = "+s, func(w *engine.Workflow) bool { return w.Status == s })
	}
	for _, c := range []string{"corr-a", "corr-b"} {
		search("correlationId = "+c, func(w *engine.Workflow) bool { return w.CorrelationID == c })
	}
	for _, name := range []string{"fz", "kid"} {
		search("workflowType = "+name, func(w *engine.Workflow) bool { return w.Name == name })
	}
	for _, s := range []string{conductor.TaskScheduled, conductor.TaskInProgress, conductor.TaskCompleted, conductor.TaskFailed,
		conductor.TaskFailedWithTerminalError, conductor.TaskTimedOut, conductor.TaskCanceled, conductor.TaskSkipped,
		conductor.TaskCompletedWithErrors} {
		var want []string
		for _, wf := range listed {
			for _, t := range wf.w.Tasks {
				if t.Status == s {
					want = append(want, t.ID)
				}
			}
		}
		n, ts, err := reader.SearchTasks(ctx, query.Search{Query: "status = " + s, Size: 1000})
		if err != nil {
			r.fatalf("task search %s: %v", s, err)
		}
		r.sameHits("task search status = "+s, n, len(ts), func(i int) string { return ts[i].TaskID }, want)
	}
}

// sameHits fails the run unless a search's n hits, the ids of its page
// of size (id(i) the i-th), are want in any order.
func (r *fuzzRun) sameHits(what string, n, size int, id func(i int) string, want []string) {
	r.t.Helper()
	got := make([]string, size)
	for i := range got {
		got[i] = id(i)
	}
	slices.Sort(got)
	if slices.Sort(want); n != len(want) || !slices.Equal(got, want) {
		r.fatalf("%s: %d hits %v, want %v", what, n, got, want)
	}
}
