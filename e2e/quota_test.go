package e2e_test

import (
	"cmp"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/internal/nodetest"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/workers"
)

const (
	quotaHold = `{"name":"quota_hold","tasks":[{"name":"h","taskReferenceName":"h","type":"WAIT"}]}`
	// quotaFork forks two sub-workflows of itself: a tree of 2^depth
	// workflows, but for the quota.
	quotaFork = `{"name":"quota_fork","tasks":[
	 {"name":"fork","taskReferenceName":"fork","type":"FORK_JOIN","forkTasks":[
	  [{"name":"a","taskReferenceName":"a","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"quota_fork"}}],
	  [{"name":"b","taskReferenceName":"b","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"quota_fork"}}]]},
	 {"name":"join","taskReferenceName":"join","type":"JOIN","joinOn":["a","b"]}]}`
)

// newQuotaEnv starts a node with authentication on and a quota of max
// running workflows per principal.
func newQuotaEnv(t *testing.T, max int) *env {
	t.Helper()
	cfg := nodetest.SecureConfig(filepath.Join(t.TempDir(), "data"))
	cfg.MaxRunningWorkflows = max
	n, base := nodetest.StartConfig(t, cfg)
	return &env{t: t, node: n, base: base, token: nodetest.AdminToken(t, cfg, base)}
}

// A principal at its quota of running workflows is refused further
// starts over REST (429, naming the quota and the principal) and over
// NATS (discarded), and a restart of one that ended; a repeated start
// still answers with its workflow, another principal still starts, and
// once its workflows end the principal starts again.
func TestQuotaRefusesStarts(t *testing.T) {
	t.Parallel()
	const quota = 10
	e := newQuotaEnv(t, quota)
	e.register(quotaHold)
	alice, aliceToken := e.application("alice")
	bob, bobToken := e.application("bob")
	for _, p := range []string{alice, bob} {
		e.grant(p, "WORKFLOW_DEF", "quota_hold", "EXECUTE")
	}
	a, b := e.as(aliceToken), e.as(bobToken)

	ended := a.start("quota_hold", nil)
	a.must(http.StatusNoContent, "DELETE", "/api/workflow/"+ended, nil)
	keyed := conductor.StartWorkflowRequest{Name: "quota_hold", IdempotencyKey: "k-1", IdempotencyStrategy: conductor.IdempotencyReturnExisting}
	held := []string{a.must(http.StatusOK, "POST", "/api/workflow", keyed)}
	for len(held) < quota {
		held = append(held, a.start("quota_hold", nil))
	}

	want := fmt.Sprintf("principal %s has %d workflows running; the limit is %d (--max-running-workflows)", alice, quota, quota)
	for _, req := range []struct{ method, path string }{{"POST", "/api/workflow"}, {"POST", "/api/workflow/quota_hold"},
		{"POST", "/api/workflow/" + ended + "/restart"}} {
		var body any = conductor.StartWorkflowRequest{Name: "quota_hold"}
		if strings.HasSuffix(req.path, "/restart") {
			body = nil
		}
		status, out := a.do(req.method, req.path, body)
		if status != http.StatusTooManyRequests || !strings.Contains(out, want) {
			t.Fatalf("%s %s at the quota = %d %s, want 429 saying %q", req.method, req.path, status, out, want)
		}
	}
	if got := a.must(http.StatusOK, "POST", "/api/workflow", keyed); got != held[0] {
		t.Fatalf("a repeated start at the quota answered %s, want %s", got, held[0])
	}

	// Over NATS, as a producer: the command is discarded.
	e.grant(alice, "WORKFLOW_DEF", "quota_hold", "EXECUTE")
	_, js := e.producer(aliceToken, []string{"quota_hold"})
	msg := &nats.Msg{Subject: workers.StartSubject("quota_hold", alice), Data: []byte(`{}`), Header: nats.Header{jetstream.MsgIDHeader: []string{"over"}}}
	if _, err := js.PublishMsg(testutil.Context(t, 10*time.Second), msg); err != nil {
		t.Fatal(err)
	}
	e.waitCommandsConsumed()
	if status, _ := e.do("GET", "/api/workflow/"+engine.DeriveID("start-command", alice, "over"), nil); status != http.StatusNotFound {
		t.Fatalf("a start published over the quota started a workflow (%d)", status)
	}

	b.start("quota_hold", nil) // another principal's quota is its own

	for _, id := range held {
		a.must(http.StatusNoContent, "DELETE", "/api/workflow/"+id, nil)
	}
	// The count is the read model's, which folds the terminations a
	// moment later.
	testutil.Eventually(t, 10*time.Second, 20*time.Millisecond, func() error {
		if status, out := a.do("POST", "/api/workflow", conductor.StartWorkflowRequest{Name: "quota_hold"}); status != http.StatusOK {
			return fmt.Errorf("start after the terminations: %d %s", status, out)
		}
		return nil
	})
}

// A definition that forks two sub-workflows of itself stops growing at
// the quota: at no moment do more than the quota of its workflows run
// (one engine counts its own starts not folded yet), the children
// refused fail their SUB_WORKFLOW tasks saying why, another principal
// still starts, and once the tree has ended its principal starts again.
func TestQuotaStopsAForkingTree(t *testing.T) {
	t.Parallel()
	const quota = 10
	e := newQuotaEnv(t, quota)
	e.register(quotaHold, quotaFork)
	alice, aliceToken := e.application("alice")
	bob, bobToken := e.application("bob")
	e.grant(alice, "WORKFLOW_DEF", "quota_fork", "EXECUTE")
	e.grant(bob, "WORKFLOW_DEF", "quota_hold", "EXECUTE")
	a, b := e.as(aliceToken), e.as(bobToken)

	a.start("quota_fork", nil)
	b.start("quota_hold", nil)
	// A refused child fails its parent, whose failure ends its other
	// child: the tree ends by itself. Terminated if it has not.
	testutil.Eventually(t, 30*time.Second, 50*time.Millisecond, func() error {
		if n := e.searchCount("workflowType IN (quota_fork) AND status IN (RUNNING, PAUSED)"); n != 0 {
			return fmt.Errorf("%d workflows of the tree still run", n)
		}
		return nil
	})

	var found conductor.SearchResult[conductor.WorkflowSummary]
	e.decode(http.StatusOK, "GET", "/api/workflow/search?size=1000&query="+urlEscape("workflowType IN (quota_fork)"), nil, &found)
	// Exactly the quota when every one ran until the refusal ended the tree.
	if found.TotalHits < quota {
		t.Fatalf("the tree started %d workflows: it never reached the quota of %d", found.TotalHits, quota)
	}
	// At most quota ran at once, in the log's order: the engine admits a
	// start only once its read model has folded the ends that make room
	// for it, so those ends lie before it in the stream. (The times the
	// workflows show are their decisions' clocks, read before the check.)
	var edges []runEdge
	refused := 0
	for _, s := range found.Results {
		wf := e.workflow(s.WorkflowID)
		if wf.EndTime == 0 {
			t.Fatalf("workflow %s of the tree has not ended", wf.WorkflowID)
		}
		edges = append(edges, e.runningEdges(s.WorkflowID)...)
		for _, task := range wf.Tasks {
			if strings.Contains(task.ReasonForIncompletion, fmt.Sprintf("the limit is %d (--max-running-workflows)", quota)) {
				if task.Status != conductor.TaskFailed {
					t.Errorf("a refused child's task is %s, want FAILED", task.Status)
				}
				refused++
			}
		}
	}
	slices.SortStableFunc(edges, func(x, y runEdge) int { return cmp.Compare(x.seq, y.seq) })
	running, most := 0, 0
	for _, ed := range edges {
		running += ed.delta
		most = max(most, running)
	}
	if most > quota {
		t.Fatalf("%d workflows of the tree ran at once, over the quota of %d", most, quota)
	}
	if refused == 0 {
		t.Fatal("no SUB_WORKFLOW task says the quota refused its child")
	}

	e.grant(alice, "WORKFLOW_DEF", "quota_hold", "EXECUTE")
	testutil.Eventually(t, 10*time.Second, 20*time.Millisecond, func() error {
		if status, out := a.do("POST", "/api/workflow", conductor.StartWorkflowRequest{Name: "quota_hold"}); status != http.StatusOK {
			return fmt.Errorf("start after the tree ended: %d %s", status, out)
		}
		return nil
	})
}

// runEdge is where in the log a workflow started (+1) or ended (-1).
type runEdge struct {
	seq   uint64
	delta int
}

// runningEdges returns the stream sequences of the records that started
// workflow id and that ended it.
func (e *env) runningEdges(id string) []runEdge {
	e.t.Helper()
	var out []runEdge
	started, ended := false, false
	for _, r := range e.records(id) {
		for _, ev := range e.recordEvents(r) {
			switch ev := ev.(type) {
			case *schemas.WorkflowStarted:
				if !started {
					out, started = append(out, runEdge{r.Seq, 1}), true
				}
			case *schemas.WorkflowStatusChanged:
				if started && !ended && conductor.WorkflowTerminal(ev.Status) {
					out, ended = append(out, runEdge{r.Seq, -1}), true
				}
			}
		}
	}
	if !started || !ended {
		e.t.Fatalf("workflow %s: the log shows it started %t, ended %t", id, started, ended)
	}
	return out
}
