package executor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/workers"
)

// keyHolder is a read model in which one workflow holds every idempotency
// key.
type keyHolder struct {
	nothingScheduled
	id, status string
}

func (k keyHolder) LookupIdempotencyKey(context.Context, string, string) (string, string, bool, error) {
	return k.id, k.status, k.id != "", nil
}

// startKeyed starts a workflow that waits, with idempotency key "k" and
// strategy, on an executor reading sched.
func startKeyed(ctx context.Context, t *testing.T, sched Schedule, strategy string, o StartOptions) (*Executor, string, error) {
	t.Helper()
	e := startExecutor(t, testutil.OpenLog(t, ""), sched, Config{})
	def := mustDef(t, `{"name":"keyed","version":1,"tasks":[{"name":"hold","taskReferenceName":"hold","type":"WAIT"}]}`)
	req := conductor.StartWorkflowRequest{Name: def.Name, WorkflowDef: def, IdempotencyKey: "k", IdempotencyStrategy: strategy}
	id, _, err := e.StartWorkflow(ctx, req, o)
	return e, id, err
}

// A start that names its workflow id (a schedule's run) is still decided
// by its idempotency key: the key's strategy refuses it, or answers the
// key's workflow, or lets it take the id it names; and a key held by that
// very id is a retry of the start, which is no refusal by the key.
func TestIdempotencyKeyDecidesANamedStart(t *testing.T) {
	tests := []struct {
		name       string
		holder     keyHolder
		strategy   string
		wantID     string
		wantErr    error
		notKeyHeld bool // the error is a conflict, but not ErrKeyHeld
		started    bool // tick-2 exists afterwards
	}{
		{"key free", keyHolder{}, conductor.IdempotencyFail, "tick-2", nil, false, true},
		{"held, FAIL", keyHolder{id: "tick-1", status: conductor.WorkflowRunning}, conductor.IdempotencyFail, "", ErrKeyHeld, false, false},
		{"held, no strategy", keyHolder{id: "tick-1", status: conductor.WorkflowCompleted}, "", "", ErrKeyHeld, false, false},
		{"held, RETURN_EXISTING", keyHolder{id: "tick-1", status: conductor.WorkflowRunning}, conductor.IdempotencyReturnExisting, "tick-1", nil, false, false},
		{"held running, FAIL_ON_RUNNING", keyHolder{id: "tick-1", status: conductor.WorkflowRunning}, conductor.IdempotencyFailOnRunning, "", ErrKeyHeld, false, false},
		{"held ended, FAIL_ON_RUNNING", keyHolder{id: "tick-1", status: conductor.WorkflowCompleted}, conductor.IdempotencyFailOnRunning, "tick-2", nil, false, true},
		{"held by its own id, FAIL", keyHolder{id: "tick-2", status: conductor.WorkflowRunning}, conductor.IdempotencyFail, "", fault.ErrConflict, true, false},
		{"held by its own id, RETURN_EXISTING", keyHolder{id: "tick-2", status: conductor.WorkflowRunning}, conductor.IdempotencyReturnExisting, "", fault.ErrConflict, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testutil.Context(t, 30*time.Second)
			e, id, err := startKeyed(ctx, t, tt.holder, tt.strategy, StartOptions{WorkflowID: "tick-2", RequestID: "tick-2"})
			if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) || id != tt.wantID {
				t.Fatalf("start: %q, %v; want %q, %v", id, err, tt.wantID, tt.wantErr)
			}
			if tt.notKeyHeld && errors.Is(err, ErrKeyHeld) {
				t.Fatalf("a retry of the start reads as the key's refusal: %v", err)
			}
			if errors.Is(err, ErrKeyHeld) && !errors.Is(err, fault.ErrConflict) {
				t.Fatalf("the key's refusal is not a conflict: %v", err)
			}
			w, err := e.State(ctx, "tick-2")
			if err != nil {
				t.Fatal(err)
			}
			if (w != nil) != tt.started {
				t.Fatalf("tick-2 started: %v, want %v", w != nil, tt.started)
			}
		})
	}
}

// A start that loses the append to another with its key, which the read
// model did not show yet, is refused as the key's strategy refuses it,
// without naming the winner's id (its caller may not read it).
func TestIdempotencyKeyLosingStartNamesNoWorkflow(t *testing.T) {
	for _, strategy := range []string{conductor.IdempotencyFail, conductor.IdempotencyFailOnRunning} {
		t.Run(strategy, func(t *testing.T) {
			ctx := testutil.Context(t, 30*time.Second)
			e := startExecutor(t, testutil.OpenLog(t, ""), keyHolder{}, Config{})
			def := mustDef(t, `{"name":"keyed","version":1,"tasks":[{"name":"hold","taskReferenceName":"hold","type":"WAIT"}]}`)
			req := conductor.StartWorkflowRequest{Name: def.Name, WorkflowDef: def, IdempotencyKey: "k", IdempotencyStrategy: strategy}
			winner, _, err := e.StartWorkflow(ctx, req, StartOptions{})
			if err != nil {
				t.Fatal(err)
			}
			_, _, err = e.StartWorkflow(ctx, req, StartOptions{})
			if !errors.Is(err, ErrKeyHeld) || !errors.Is(err, fault.ErrConflict) {
				t.Fatalf("second start: %v, want the key's refusal", err)
			}
			if strings.Contains(err.Error(), winner) {
				t.Fatalf("the refusal names the winner: %v", err)
			}
		})
	}
}

// A START_WORKFLOW under RETURN_EXISTING completes with the workflow
// holding its key only when its starter may read that workflow, as POST
// /api/workflow answers with it only such a caller; for any other starter
// the task fails as under FAIL, without naming it.
func TestStartWorkflowReturnExistingAsksToRead(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, 60*time.Second)
	e := New(testutil.OpenLog(t, ""), cleanupDefinitions{}, keyHolder{id: "holder", status: conductor.WorkflowRunning}, Config{})
	var mu sync.Mutex
	var asked []string
	e.SetReadCheck(func(_ context.Context, p, name, createdBy string) error {
		mu.Lock()
		defer mu.Unlock()
		asked = append(asked, p+" "+name+" "+createdBy)
		if p == "outsider" {
			return fmt.Errorf("%s may not READ WORKFLOW_DEF:%s: %w", p, name, fault.ErrForbidden)
		}
		return nil
	})
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Stop)
	if _, _, err := e.StartWorkflow(ctx, conductor.StartWorkflowRequest{Name: "cleanup"}, StartOptions{WorkflowID: "holder", CreatedBy: "owner"}); err != nil {
		t.Fatal(err)
	}
	def := mustDef(t, `{"name":"starter","version":1,"tasks":[{"name":"start","taskReferenceName":"start","type":"START_WORKFLOW",
	  "inputParameters":{"startWorkflow":{"name":"cleanup","idempotencyKey":"k","idempotencyStrategy":"RETURN_EXISTING"}}}]}`)
	for _, tc := range []struct {
		creator, status string
	}{
		{"insider", conductor.TaskCompleted},
		{"outsider", conductor.TaskFailed},
	} {
		t.Run(tc.creator, func(t *testing.T) {
			start := startTaskEnded(ctx, t, e, def, "wf-started-by-"+tc.creator, tc.creator)
			switch {
			case start.Status != tc.status:
				t.Fatalf("task %s %q, want %s", start.Status, start.Reason, tc.status)
			case tc.status == conductor.TaskCompleted && start.Output["workflowId"] != "holder":
				t.Fatalf("output %v, want the holder's id", start.Output)
			case tc.status == conductor.TaskFailed && (!strings.Contains(start.Reason, `a workflow with idempotency key "k" exists`) ||
				strings.Contains(start.Reason, "holder") || start.Output["workflowId"] != nil):
				t.Fatalf("reason %q, output %v: want the key's refusal, the holder not named", start.Reason, start.Output)
			}
		})
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(asked, []string{"insider cleanup owner", "outsider cleanup owner"}) {
		t.Fatalf("asked %v", asked)
	}
}

// movingHolder is a read model whose idempotency keys are all held by
// the workflow the test says, as it says (found false: removed).
type movingHolder struct {
	nothingScheduled
	mu         sync.Mutex
	id, status string
	found      bool
}

func (m *movingHolder) LookupIdempotencyKey(context.Context, string, string) (string, string, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.id, m.status, m.found, nil
}

func (m *movingHolder) set(id, status string, found bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.id, m.status, m.found = id, status, found
}

// A start command with an idempotency key delivered again (its ack was
// lost, its engine died before acking) or published again under the same
// message id is the start it made, even once the workflow it started has
// ended (FAIL_ON_RUNNING would let the key start another) or was removed
// (any strategy would): it starts nothing more. Another message, or the
// same message id from another creator, is another start, which the key's
// strategy decides.
func TestStartCommandAgainIsTheStartItMade(t *testing.T) {
	def := json.RawMessage(`{"name":"keyed","version":1,"tasks":[{"name":"hold","taskReferenceName":"hold","type":"WAIT"}]}`)
	tests := []struct {
		name     string
		strategy string
		ended    bool // the first workflow ended (else it was removed)
		msgID    string
		creator  string
		started  bool // the second delivery starts a workflow
	}{
		{"again, ended, FAIL_ON_RUNNING", conductor.IdempotencyFailOnRunning, true, "m-1", "alice", false},
		{"again, removed, FAIL", conductor.IdempotencyFail, false, "m-1", "alice", false},
		{"again, removed, FAIL_ON_RUNNING", conductor.IdempotencyFailOnRunning, false, "m-1", "alice", false},
		{"again, removed, RETURN_EXISTING", conductor.IdempotencyReturnExisting, false, "m-1", "alice", false},
		{"another message, ended, FAIL_ON_RUNNING", conductor.IdempotencyFailOnRunning, true, "m-2", "alice", true},
		{"another message, removed, FAIL", conductor.IdempotencyFail, false, "m-2", "alice", true},
		{"another creator's, ended, FAIL_ON_RUNNING", conductor.IdempotencyFailOnRunning, true, "m-1", "bob", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testutil.Context(t, 30*time.Second)
			holder := &movingHolder{}
			e := startExecutor(t, testutil.OpenLog(t, ""), holder, Config{})
			deliver := func(msgID, creator string, seq uint64) error {
				body, err := json.Marshal(map[string]any{"workflowDef": def, "createdBy": creator,
					"idempotencyKey": "k", "idempotencyStrategy": tt.strategy})
				if err != nil {
					t.Fatal(err)
				}
				return e.handleStartCommand(ctx, eventlog.Delivery{Subject: workers.StartCommandPrefix + "keyed", Data: body,
					Header: map[string][]string{"Nats-Msg-Id": {msgID}}, StreamSeq: seq})
			}
			if err := deliver("m-1", "alice", 1); err != nil {
				t.Fatal(err)
			}
			first := engine.DeriveID("idempotency", "keyed", "k", "")
			if w, err := e.State(ctx, first); err != nil || w == nil {
				t.Fatalf("the first start: %v, %v", w, err)
			}
			holder.set(first, conductor.WorkflowCompleted, tt.ended)
			seq := uint64(1)
			if tt.msgID != "m-1" {
				seq = 2
			}
			if err := deliver(tt.msgID, tt.creator, seq); err != nil {
				t.Fatalf("second delivery: %v", err)
			}
			w, err := e.State(ctx, engine.DeriveID("idempotency", "keyed", "k", first))
			if err != nil {
				t.Fatal(err)
			}
			if (w != nil) != tt.started {
				t.Fatalf("a second workflow started: %v, want %v", w != nil, tt.started)
			}
		})
	}
}

// keyRunners is a read model in which one workflow holds every
// idempotency key (found false: it was removed) and others run with it or
// ended.
type keyRunners struct {
	nothingScheduled
	holder, status string
	found          bool
	running        map[string]string // workflow id → status
	ended          map[string]int64  // workflow id → start time
}

func (k keyRunners) LookupIdempotencyKey(context.Context, string, string) (string, string, bool, error) {
	return k.holder, k.status, k.found, nil
}

func (k keyRunners) RunningWithIdempotencyKey(_ context.Context, _, _ string, fn func(wfID, status string) bool) error {
	for _, id := range slices.Sorted(maps.Keys(k.running)) {
		if !fn(id, k.running[id]) {
			break
		}
	}
	return nil
}

// WithIdempotencyKey lists the ended ones first: a running one is
// preferred wherever it is listed.
func (k keyRunners) WithIdempotencyKey(_ context.Context, _, _ string, fn func(wfID, status string, startTime int64) bool) error {
	for _, id := range slices.Sorted(maps.Keys(k.ended)) {
		if !fn(id, conductor.WorkflowCompleted, k.ended[id]) {
			return nil
		}
	}
	for _, id := range slices.Sorted(maps.Keys(k.running)) {
		if !fn(id, k.running[id], 1) {
			break
		}
	}
	return nil
}

// A key's holder is the workflow last started with it, but an older one
// runs with it again once restarted or retried: FAIL_ON_RUNNING refuses a
// start while any workflow with the key runs, and RETURN_EXISTING answers
// that one. Once the holder was removed, an older one with the key, ended
// or not, is what FAIL refuses a start for (Orkes's FAIL: no workflow with
// the key, running or completed) and RETURN_EXISTING answers (one that
// runs, else the last started). The workflow the start names is no other.
func TestIdempotencyKeyRunningOlderWorkflow(t *testing.T) {
	older := map[string]string{"older": conductor.WorkflowRunning}
	olderEnded := map[string]int64{"older": 5}
	tests := []struct {
		name       string
		read       keyRunners
		strategy   string
		named      string // the start's own workflow id
		wantErr    error
		wantReason string
		wantID     string
	}{
		{"holder ended, older running, FAIL_ON_RUNNING", keyRunners{holder: "last", status: conductor.WorkflowCompleted, found: true, running: older},
			conductor.IdempotencyFailOnRunning, "", ErrKeyHeld, `a workflow with idempotency key "k" is RUNNING`, ""},
		{"holder ended, older paused, FAIL_ON_RUNNING", keyRunners{holder: "last", status: conductor.WorkflowTerminated, found: true,
			running: map[string]string{"older": conductor.WorkflowPaused}}, conductor.IdempotencyFailOnRunning, "", ErrKeyHeld, `a workflow with idempotency key "k" is PAUSED`, ""},
		{"holder removed, older running, FAIL_ON_RUNNING", keyRunners{holder: "last", running: older},
			conductor.IdempotencyFailOnRunning, "", ErrKeyHeld, `a workflow with idempotency key "k" is RUNNING`, ""},
		{"holder removed, older running, FAIL", keyRunners{holder: "last", running: older},
			conductor.IdempotencyFail, "", ErrKeyHeld, `a workflow with idempotency key "k" exists`, ""},
		{"holder removed, older ended, FAIL", keyRunners{holder: "last", ended: olderEnded},
			conductor.IdempotencyFail, "", ErrKeyHeld, `a workflow with idempotency key "k" exists`, ""},
		{"holder removed, older ended, FAIL_ON_RUNNING", keyRunners{holder: "last", ended: olderEnded},
			conductor.IdempotencyFailOnRunning, "", nil, "", engine.DeriveID("idempotency", "keyed", "k", "last")},
		{"holder removed, none left, FAIL", keyRunners{holder: "last"},
			conductor.IdempotencyFail, "", nil, "", engine.DeriveID("idempotency", "keyed", "k", "last")},
		{"holder removed, only the named start left, FAIL", keyRunners{holder: "last", ended: map[string]int64{"tick-2": 5}},
			conductor.IdempotencyFail, "tick-2", nil, "", "tick-2"},
		{"holder removed, older ended, RETURN_EXISTING", keyRunners{holder: "last", ended: olderEnded},
			conductor.IdempotencyReturnExisting, "", nil, "", "older"},
		{"holder removed, two ended, RETURN_EXISTING", keyRunners{holder: "last", ended: map[string]int64{"first": 9, "older": 5}},
			conductor.IdempotencyReturnExisting, "", nil, "", "first"},
		{"holder removed, one ended and one running, RETURN_EXISTING", keyRunners{holder: "last", ended: map[string]int64{"first": 9},
			running: older}, conductor.IdempotencyReturnExisting, "", nil, "", "older"},
		{"holder ended, none running, FAIL_ON_RUNNING", keyRunners{holder: "last", status: conductor.WorkflowCompleted, found: true},
			conductor.IdempotencyFailOnRunning, "", nil, "", engine.DeriveID("idempotency", "keyed", "k", "last")},
		{"holder ended, the named start running, FAIL_ON_RUNNING", keyRunners{holder: "last", status: conductor.WorkflowCompleted, found: true,
			running: map[string]string{"tick-2": conductor.WorkflowRunning}}, conductor.IdempotencyFailOnRunning, "tick-2", nil, "", "tick-2"},
		{"holder ended, older running, RETURN_EXISTING", keyRunners{holder: "last", status: conductor.WorkflowCompleted, found: true, running: older},
			conductor.IdempotencyReturnExisting, "", nil, "", "older"},
		{"holder ended, none running, RETURN_EXISTING", keyRunners{holder: "last", status: conductor.WorkflowCompleted, found: true,
			ended: olderEnded}, conductor.IdempotencyReturnExisting, "", nil, "", "last"},
		{"holder running, older running, RETURN_EXISTING", keyRunners{holder: "last", status: conductor.WorkflowRunning, found: true, running: older},
			conductor.IdempotencyReturnExisting, "", nil, "", "last"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, id, err := startKeyed(testutil.Context(t, 30*time.Second), t, tt.read, tt.strategy, StartOptions{WorkflowID: tt.named})
			if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) || id != tt.wantID {
				t.Fatalf("start: %q, %v; want %q, %v", id, err, tt.wantID, tt.wantErr)
			}
			if err != nil && (err.Error() != tt.wantReason || !errors.Is(err, fault.ErrConflict)) {
				t.Fatalf("refused with %q, want the conflict %q (naming no workflow)", err, tt.wantReason)
			}
		})
	}
}

// An operator's restart, retry or rerun of an ended workflow is refused
// while another workflow with its idempotency key runs, as a
// FAIL_ON_RUNNING start is (409, naming no workflow): the two would run
// with one key. Once none runs, it goes ahead.
func TestReopenRefusedWhileAnotherRunsWithTheKey(t *testing.T) {
	tests := []struct {
		name string
		trig engine.Trigger
	}{
		{"restart", engine.Restart{}},
		{"retry", engine.Retry{}},
		{"rerun", engine.Rerun{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testutil.Context(t, 30*time.Second)
			read := keyRunners{running: map[string]string{}}
			e, id, err := startKeyed(ctx, t, read, conductor.IdempotencyFailOnRunning, StartOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := e.Submit(ctx, id, engine.Terminate{Reason: "stopped by the test"}, Meta{}); err != nil {
				t.Fatal(err)
			}
			read.running["other"] = conductor.WorkflowPaused
			_, err = e.Submit(ctx, id, tt.trig, Meta{})
			if want := `a workflow with idempotency key "k" is PAUSED`; !errors.Is(err, ErrKeyHeld) || !errors.Is(err, fault.ErrConflict) || err.Error() != want {
				t.Fatalf("%s while another runs with the key: %v, want the conflict %q", tt.name, err, want)
			}
			if w, err := e.State(ctx, id); err != nil || w == nil || w.Status != conductor.WorkflowTerminated {
				t.Fatalf("refused, the workflow is %v (%v), want it TERMINATED still", w, err)
			}
			delete(read.running, "other")
			if _, err := e.Submit(ctx, id, tt.trig, Meta{}); err != nil {
				t.Fatalf("%s once none runs: %v", tt.name, err)
			}
			if w, err := e.State(ctx, id); err != nil || w == nil || w.Status != conductor.WorkflowRunning {
				t.Fatalf("%s: the workflow is %v (%v), want it RUNNING", tt.name, w, err)
			}
		})
	}
}
