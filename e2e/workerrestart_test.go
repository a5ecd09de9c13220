package e2e_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowvault/flowvault/internal/nodetest"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/node"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/workers"
)

// restartable is a node that an operator stops gracefully and starts
// again on the same data directory and ports, as workers know it.
type restartable struct {
	t   *testing.T
	cfg node.Config
	*env
}

func startRestartable(t *testing.T) *restartable {
	t.Helper()
	cfg := nodetest.Config(filepath.Join(t.TempDir(), "data"))
	cfg.NATSListen = "127.0.0.1:" + strconv.Itoa(testutil.FreePort(t))
	cfg.HTTPAddr = "127.0.0.1:" + strconv.Itoa(testutil.FreePort(t))
	r := &restartable{t: t, cfg: cfg}
	r.boot()
	return r
}

func (r *restartable) boot() {
	r.t.Helper()
	n, base := nodetest.StartConfig(r.t, r.cfg)
	r.env = &env{t: r.t, node: n, base: base}
}

func (r *restartable) halt() {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.ShutdownTimeout)
	defer cancel()
	if err := r.node.Stop(ctx); err != nil {
		r.t.Fatal(err)
	}
}

// completeAll waits for every workflow of ids to complete.
func (r *restartable) completeAll(ids []string) {
	r.t.Helper()
	for _, id := range ids {
		testutil.Eventually(r.t, 60*time.Second, 50*time.Millisecond, func() error {
			if wf := r.workflow(id); wf.Status != conductor.WorkflowCompleted {
				return fmt.Errorf("workflow %s is %s", id, wf.Status)
			}
			return nil
		})
	}
}

// Go SDK workers connected with workers.Connect's defaults ride out a
// graceful restart of the server on the same data directory and ports:
// the tasks they were running finish while the server is down, and their
// results, sent then, reach the restarted server (the connection holds
// them until it reconnects, and the worker sends again what got no
// answer): no workflow waits for a response timeout (10 minutes here,
// past the test's wait). The workers take the tasks scheduled after the
// restart, and no task runs twice.
func TestGoWorkersOutliveGracefulRestart(t *testing.T) {
	t.Parallel()
	r := startRestartable(t)
	r.must(http.StatusNoContent, "POST", "/api/metadata/taskdefs",
		`[{"name":"gr_a","responseTimeoutSeconds":600,"retryCount":0},{"name":"gr_b","responseTimeoutSeconds":600,"retryCount":0}]`)
	r.register(`{"name":"gr_flow","tasks":[{"name":"gr_a","taskReferenceName":"a"},{"name":"gr_b","taskReferenceName":"b"}]}`)
	var creds struct{ Creds string }
	if err := json.Unmarshal([]byte(r.must(http.StatusOK, "POST", "/api/workers/credentials",
		map[string]any{"taskTypes": []string{"gr_a", "gr_b"}})), &creds); err != nil {
		t.Fatal(err)
	}
	nc, err := workers.Connect("nats://"+r.cfg.NATSListen, []byte(creds.Creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close) // after the workers' cleanups: cleanups run last-in first-out

	const inFlight = 4
	runs := newCounter()
	var mu sync.Mutex
	hold := true
	started, release, returned := make(chan struct{}, inFlight), make(chan struct{}), make(chan struct{}, inFlight)
	handler := func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		runs.add(task.TaskID)
		mu.Lock()
		held := hold
		mu.Unlock()
		if held {
			started <- struct{}{}
			<-release
			defer func() { returned <- struct{}{} }()
		}
		return workers.Output{Data: map[string]any{"by": "go"}}, nil
	}
	runWorkerConfig(t, nc, workers.WorkerConfig{TaskType: "gr_a", Concurrency: inFlight, WorkerID: "go-gr"}, handler)
	runWorkerConfig(t, nc, workers.WorkerConfig{TaskType: "gr_b", Concurrency: inFlight, WorkerID: "go-gr"}, handler)

	var ids []string
	for range inFlight {
		ids = append(ids, r.start("gr_flow", nil))
	}
	for range inFlight {
		<-started
	}
	mu.Lock()
	hold = false
	mu.Unlock()
	r.halt()
	close(release) // the handlers return, and their results go out, while the server is down
	for range inFlight {
		<-returned
	}
	r.boot()
	for range inFlight {
		ids = append(ids, r.start("gr_flow", nil))
	}
	r.completeAll(ids)
	if dup := runs.duplicates(); len(dup) > 0 {
		t.Fatalf("tasks ran more than once: %v", dup)
	}
	if got := runs.total(); got != 4*inFlight {
		t.Fatalf("%d tasks ran, want %d", got, 4*inFlight)
	}
	if nc.Reconnects == 0 {
		t.Fatal("the workers' connection never reconnected: the server did not go away")
	}
}

// The Conductor JavaScript SDK's TaskManager, polling over HTTP, outlives
// a graceful restart of the server: the Node process keeps running, the
// results of the tasks it finished while the server was down reach the
// restarted server (the SDK retries an update 4 times, 10, 20 and 30 s
// apart), and it polls and completes the tasks scheduled after.
func TestJavaScriptWorkersOutliveRestart(t *testing.T) {
	t.Parallel()
	dir := npmDir(t, filepath.Join("testdata", "sdk"), "@io-orkes/conductor-javascript")
	r := startRestartable(t)
	r.must(http.StatusNoContent, "POST", "/api/metadata/taskdefs", `[{"name":"js_restart","responseTimeoutSeconds":600,"retryCount":0}]`)
	r.register(`{"name":"js_restart_flow","tasks":[{"name":"js_restart","taskReferenceName":"j","inputParameters":{"hold":"${workflow.input.hold}"}}]}`)

	ctx := testutil.Context(t, 3*time.Minute)
	cmd := exec.CommandContext(ctx, "node", "restart.mjs")
	cmd.Dir = dir
	cmd.Env = []string{"CONDUCTOR_SERVER_URL=" + r.base, "PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	lines := make(chan string, 64)
	go func() {
		for sc := bufio.NewScanner(stdout); sc.Scan(); {
			lines <- sc.Text()
		}
		close(lines)
		exited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill() // a no-op once it exited
		<-exited
	})
	runs := newCounter()
	// next returns the script's next line that is not a task's start,
	// counting those; the script ending is a failure.
	next := func() string {
		t.Helper()
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("restart.mjs ended: %v\n%s", <-exited, stderr.String())
				}
				if id, ran := strings.CutPrefix(l, "RAN "); ran {
					runs.add(id)
					return l
				}
				if !strings.HasPrefix(l, "[TaskRunner]") { // the SDK's own lines
					return l
				}
			case <-ctx.Done():
				t.Fatalf("restart.mjs said nothing more\n%s", stderr.String())
			}
		}
	}
	if l := next(); l != "READY" {
		t.Fatalf("restart.mjs said %q first", l)
	}
	const inFlight = 2
	var ids []string
	for range inFlight {
		ids = append(ids, r.start("js_restart_flow", map[string]any{"hold": true}))
	}
	for runs.total() < inFlight {
		next()
	}
	r.halt()
	if _, err := io.WriteString(stdin, "release\n"); err != nil {
		t.Fatal(err)
	}
	r.boot()
	for range inFlight {
		ids = append(ids, r.start("js_restart_flow", map[string]any{"hold": false}))
	}
	for runs.total() < 2*inFlight {
		next()
	}
	r.completeAll(ids)
	if dup := runs.duplicates(); len(dup) > 0 {
		t.Fatalf("tasks ran more than once: %v", dup)
	}
	if _, err := io.WriteString(stdin, "exit\n"); err != nil {
		t.Fatal(err)
	}
	for l := next(); l != "STOPPED"; l = next() {
	}
	if err := <-exited; err != nil {
		t.Fatalf("restart.mjs: %v\n%s", err, stderr.String())
	}
	exited <- nil // for the cleanup
}
