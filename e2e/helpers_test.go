package e2e_test

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/internal/nodetest"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/masking"
	"github.com/flowvault/flowvault/node"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/workers"
)

// env is one node under test and a client for it, sending token (if any)
// in X-Authorization.
type env struct {
	t     testing.TB
	node  *node.Node
	base  string
	token string
	// client sends the requests (nil: http.DefaultClient).
	client *http.Client
	// patience bounds waitStatus (0: 30 s).
	patience time.Duration
	// history, when set, reads the records of a workflow for the log of
	// a waitStatus that failed (nil: node's, if any).
	history *node.Node
}

func newEnv(t testing.TB) *env {
	t.Helper()
	n, base := nodetest.Start(t)
	return &env{t: t, node: n, base: base}
}

// newSecureEnv starts a node with authentication on; the env's requests
// carry the bootstrap admin's token.
func newSecureEnv(t testing.TB) *env {
	t.Helper()
	n, base, token := nodetest.StartSecure(t)
	return &env{t: t, node: n, base: base, token: token}
}

// as returns the env sending token instead.
func (e *env) as(token string) *env {
	c := *e
	c.token = token
	return &c
}

// do sends a request and returns the status and body.
func (e *env) do(method, path string, body any) (int, string) {
	e.t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b)
	default:
		js, _ := json.Marshal(b)
		r = bytes.NewReader(js)
	}
	req, err := http.NewRequest(method, e.base+path, r)
	if err != nil {
		e.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if e.token != "" {
		req.Header.Set("X-Authorization", e.token)
	}
	client := e.client
	if client == nil {
		client = http.DefaultClient
	}
	res, err := client.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	out, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(out)
}

// must sends a request that must answer want.
func (e *env) must(want int, method, path string, body any) string {
	e.t.Helper()
	status, out := e.do(method, path, body)
	if status != want {
		e.t.Fatalf("%s %s = %d %s, want %d", method, path, status, out, want)
	}
	return out
}

func (e *env) register(defs ...string) {
	e.t.Helper()
	for _, d := range defs {
		e.must(http.StatusNoContent, "POST", "/api/metadata/workflow?overwrite=true", d)
	}
}

func (e *env) start(name string, input map[string]any) string {
	e.t.Helper()
	return e.must(http.StatusOK, "POST", "/api/workflow", conductor.StartWorkflowRequest{Name: name, Input: input})
}

func (e *env) workflow(id string) *conductor.Workflow {
	e.t.Helper()
	var wf conductor.Workflow
	if err := json.Unmarshal([]byte(e.must(http.StatusOK, "GET", "/api/workflow/"+id+"?includeTasks=true", nil)), &wf); err != nil {
		e.t.Fatal(err)
	}
	return &wf
}

// waitStatus waits until the workflow reaches status.
func (e *env) waitStatus(id, status string) *conductor.Workflow {
	e.t.Helper()
	var wf *conductor.Workflow
	patience := cmp.Or(e.patience, 30*time.Second)
	deadline := time.Now().Add(patience)
	for {
		err := e.hasStatus(id, status, &wf)
		if err == nil {
			return wf
		}
		if time.Now().After(deadline) {
			e.logHistory(id)
			e.t.Fatalf("condition not met after %s: %v", patience, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (e *env) hasStatus(id, status string, wf **conductor.Workflow) error {
	// A workflow started by an effect (a child, START_WORKFLOW) may not
	// exist yet.
	if code, body := e.do("GET", "/api/workflow/"+id, nil); code == http.StatusNotFound {
		return fmt.Errorf("workflow %s does not exist yet: %s", id, body)
	}
	*wf = e.workflow(id)
	if (*wf).Status != status {
		var tasks []string
		for _, t := range (*wf).Tasks {
			tasks = append(tasks, fmt.Sprintf("%s:%s(polls %d, worker %q)", t.ReferenceTaskName, t.Status, t.PollCount, t.WorkerID))
		}
		return fmt.Errorf("workflow %s is %s (%s), want %s; tasks %v", id, (*wf).Status, (*wf).ReasonForIncompletion, status, tasks)
	}
	return nil
}

// sealedIn lists the paths of v's sealed values, with their kinds.
func sealedIn(v any, at string) []string {
	switch x := v.(type) {
	case *masking.Sealed:
		return []string{fmt.Sprintf("%s (%c)", at, x.Kind)}
	case map[string]any:
		var out []string
		for k, e := range x {
			out = append(out, sealedIn(e, at+"."+k)...)
		}
		slices.Sort(out)
		return out
	case []any:
		var out []string
		for i, e := range x {
			out = append(out, sealedIn(e, fmt.Sprintf("%s[%d]", at, i))...)
		}
		return out
	}
	return nil
}

// logHistory logs what a workflow that did not reach a status went
// through, for whoever reads a failure that does not come again: its
// records, event by event, and the task queues' consumers.
func (e *env) logHistory(id string) {
	n := cmp.Or(e.history, e.node)
	if n == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	recs, err := n.Log().ReadSubject(ctx, "fv.wf."+id, 0)
	if err != nil {
		e.t.Logf("history of %s: %v", id, err)
		return
	}
	var b strings.Builder
	for _, r := range recs {
		fmt.Fprintf(&b, "record %d at %s (%s):\n", r.Seq, r.Time.Format(time.RFC3339Nano), r.MsgID)
		for _, env := range r.Events {
			ev, err := schemas.Default.Decode(env)
			if err != nil {
				fmt.Fprintf(&b, "  %s: %v\n", env.Type, err)
				continue
			}
			j, _ := json.Marshal(ev)
			fmt.Fprintf(&b, "  %s %s\n", env.Type, j)
			if ts, ok := ev.(*schemas.TaskScheduled); ok {
				// "***" in the JSON is either a sealed value or text
				// redaction replaced: say which.
				if sealed := sealedIn(ts.Input, "input"); len(sealed) > 0 {
					fmt.Fprintf(&b, "    sealed: %s\n", strings.Join(sealed, ", "))
				}
			}
		}
	}
	js, err := jetstream.New(n.Log().Conn())
	if err == nil {
		var s jetstream.Stream
		if s, err = js.Stream(ctx, eventlog.Dispatch.Name); err == nil {
			lister := s.ListConsumers(ctx)
			for ci := range lister.Info() {
				fmt.Fprintf(&b, "queue %s: pending %d, ack pending %d, redelivered %d, waiting pulls %d\n",
					ci.Name, ci.NumPending, ci.NumAckPending, ci.NumRedelivered, ci.NumWaiting)
			}
			err = lister.Err()
		}
	}
	if err != nil {
		fmt.Fprintf(&b, "queues: %v\n", err)
	}
	e.t.Logf("history of workflow %s:\n%s", id, b.String())
}

// takeOne polls until it takes a task of taskType.
func (e *env) takeOne(taskType string) *conductor.Task {
	e.t.Helper()
	var task *conductor.Task
	testutil.Eventually(e.t, 30*time.Second, 10*time.Millisecond, func() error {
		if tasks := e.pollBatch(taskType, "w1", 1, 100*time.Millisecond, ""); len(tasks) == 1 {
			task = tasks[0]
			return nil
		}
		return fmt.Errorf("no %s task", taskType)
	})
	return task
}

// completeTask reports a task taken by takeOne COMPLETED with output.
func (e *env) completeTask(task *conductor.Task, output map[string]any) {
	e.t.Helper()
	e.expect(e.call("POST", "/api/tasks", map[string]any{"taskId": task.TaskID, "workflowInstanceId": task.WorkflowInstanceID,
		"status": "COMPLETED", "outputData": output}, "application/json"), http.StatusOK, "text/plain")
}

func taskByRef(wf *conductor.Workflow, ref string) *conductor.Task {
	var found *conductor.Task
	for _, t := range wf.Tasks {
		if t.ReferenceTaskName == ref {
			found = t
		}
	}
	return found
}

// connect opens a NATS connection to the node's server as a worker of
// taskTypes, with the permissions worker credentials carry.
func (e *env) connect(taskTypes ...string) *nats.Conn {
	e.t.Helper()
	return nodetest.WorkerConn(e.t, e.node, taskTypes...)
}

// work runs a Go SDK worker until the test ends.
func (e *env) work(taskType string, concurrency int, h workers.Handler) {
	e.t.Helper()
	runWorker(e.t, e.connect(taskType), taskType, concurrency, h)
}

// runWorker runs a Go SDK worker of taskType until the test ends.
func runWorker(t testing.TB, nc *nats.Conn, taskType string, concurrency int, h workers.Handler) {
	t.Helper()
	runWorkerConfig(t, nc, workers.WorkerConfig{TaskType: taskType, Concurrency: concurrency, WorkerID: "go-" + taskType}, h)
}

// runWorkerConfig runs a Go SDK worker of cfg (polls of a second unless
// set) until the test ends.
func runWorkerConfig(t testing.TB, nc *nats.Conn, cfg workers.WorkerConfig, h workers.Handler) {
	t.Helper()
	if cfg.PollWait == 0 {
		cfg.PollWait = time.Second
	}
	cfg.Logger = testutil.Logger(t)
	w, err := workers.NewWorker(nc, cfg, h)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := w.Run(ctx); err != nil {
			t.Errorf("worker %s: %v", cfg.TaskType, err)
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

// counter counts executions per task id.
type counter struct {
	mu sync.Mutex
	n  map[string]int
}

func newCounter() *counter { return &counter{n: map[string]int{}} }

func (c *counter) add(id string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n[id]++
	return c.n[id]
}

func (c *counter) duplicates() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for id, n := range c.n {
		if n > 1 {
			out = append(out, fmt.Sprintf("%s×%d", id, n))
		}
	}
	return out
}

func (c *counter) total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.n)
}

// succeed is a worker handler that completes each task with no output.
func succeed(context.Context, *conductor.Task) (workers.Output, error) { return workers.Output{}, nil }

// npmDir returns the absolute path of dir, a directory of npm test
// dependencies, once its node_modules holds pkg: make test installs them
// (npm ci) before the tests run.
func npmDir(t testing.TB, dir, pkg string) string {
	t.Helper()
	abs, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(abs, "node_modules", pkg, "package.json")); err != nil {
		t.Fatalf("%s has no node_modules: run `npm ci` there (make test does)", abs)
	}
	return abs
}
