package metadata_test

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/metadata"
	"github.com/flowvault/flowvault/projections"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// node is one engine's view of the metadata: its own Pebble read model
// (with a running projection unless stopped) over a shared log.
type node struct {
	log    *eventlog.Log
	store  *projections.Store
	runner *projections.Runner
	md     *metadata.Store
}

// runProjection follows FV_META into store until the test ends.
func runProjection(tb testing.TB, l *eventlog.Log, store *projections.Store) *projections.Runner {
	tb.Helper()
	return testutil.RunProjection(tb, l, store, metadata.Projection{}, projections.RunnerConfig{Stream: eventlog.Metadata.Name, Poison: projections.Park})
}

// newNode returns a node over l (a new log when nil) with its projection
// running.
func newNode(tb testing.TB, l *eventlog.Log, opts metadata.Options) *node {
	tb.Helper()
	if l == nil {
		l = testutil.OpenLog(tb, "")
	}
	n := &node{log: l, store: testutil.OpenStore(tb)}
	n.runner = runProjection(tb, l, n.store)
	if opts.Logger == nil {
		opts.Logger = testutil.Logger(tb)
	}
	n.md = metadata.New(l, n.store, n.runner, opts)
	return n
}

// newStoppedNode returns a node whose projection never runs: its read
// model stays empty and writes do not wait for it.
func newStoppedNode(tb testing.TB, l *eventlog.Log) *node {
	tb.Helper()
	n := &node{log: l, store: testutil.OpenStore(tb)}
	n.md = metadata.New(l, n.store, nil, metadata.Options{Logger: testutil.Logger(tb)})
	return n
}

// caughtUp waits until n's projection has applied the whole stream.
func (n *node) caughtUp(tb testing.TB) {
	tb.Helper()
	ctx := testutil.Context(tb, 30*time.Second)
	last, err := n.log.StreamLastSeq(ctx, eventlog.Metadata.Name)
	if err != nil {
		tb.Fatal(err)
	}
	if err := n.runner.WaitFor(ctx, last); err != nil {
		tb.Fatal(err)
	}
}

func ctx(tb testing.TB) context.Context { return testutil.Context(tb, time.Minute) }

// wf decodes a workflow definition the way the API does.
func wf(tb testing.TB, js string) *conductor.WorkflowDef {
	tb.Helper()
	var d conductor.WorkflowDef
	if err := conductor.Unmarshal([]byte(js), &d); err != nil {
		tb.Fatalf("decode %s: %v", js, err)
	}
	return &d
}

// td decodes a task definition the way the API does.
func td(tb testing.TB, js string) *conductor.TaskDef {
	tb.Helper()
	var d conductor.TaskDef
	if err := conductor.Unmarshal([]byte(js), &d); err != nil {
		tb.Fatalf("decode %s: %v", js, err)
	}
	return &d
}

// simpleWF is a minimal valid definition.
func simpleWF(name string, version int, desc string) string {
	v := ""
	if version > 0 {
		v = `"version":` + strconv.Itoa(version) + `,`
	}
	return `{"name":"` + name + `",` + v + `"description":"` + desc + `","tasks":[{"name":"t","taskReferenceName":"t_ref","type":"SIMPLE"}],"timeoutSeconds":0}`
}

func ptr[T any](v T) *T { return &v }

func mustNotFound(tb testing.TB, err error) {
	tb.Helper()
	if !errors.Is(err, fault.ErrNotFound) {
		tb.Fatalf("err = %v, want not found", err)
	}
}

// clock is a time a test moves by hand (metadata.Options.Now).
type clock struct {
	mu sync.Mutex
	at time.Time
}

func newClock() *clock { return &clock{at: time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)} }

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.at
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.at = c.at.Add(d)
}
