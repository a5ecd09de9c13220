package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/node"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/workers"
)

// Two engines on a 3-node cluster (replicas 3), engine A on server 0 and
// B on server 1, run workflows of three SIMPLE tasks with workers on
// servers 0 and 2. Every stream's leader is moved to server 0, which shuts
// down while a third of the tasks are done: the leaders, engine A's
// connection and a half of the workers' go at once. Then every workflow
// completes, every result a worker was told was stored is the task's
// output, no task runs again after its result was acknowledged, and a
// secret put before the shutdown resolves at either engine's hand-off.
// Then both engines stop within nodetest's budget.
func TestNATSClusterFailover(t *testing.T) {
	c := startNATSCluster(t)
	a, _ := c.startNode(0, 3, nil)
	b, _ := c.startNode(1, 3, nil)
	ea := &env{t: t, node: a, base: a.URL(), patience: 45 * time.Second}
	eb := &env{t: t, node: b, base: b.URL(), patience: 45 * time.Second}
	ea.register(threeSteps,
		`{"name":"failover_secret","tasks":[{"name":"failover_issue","taskReferenceName":"issue","inputParameters":{"tok":"${workflow.secrets.failover_tok}"}}]}`)
	ea.putSecret("failover_tok", "failover-secret-4242")

	runs := newCounter()
	var mu sync.Mutex
	acked := map[string]any{} // task id -> the output v the engine stored
	var afterAck []string
	handler := func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		runs.add(task.TaskID)
		mu.Lock()
		if _, ok := acked[task.TaskID]; ok {
			afterAck = append(afterAck, task.TaskID)
		}
		mu.Unlock()
		prev, _ := task.InputData["prev"].(float64)
		return workers.Output{Data: map[string]any{"v": prev + 1}}, nil
	}
	onResult := func(res conductor.TaskResult, reply workers.ResultReply) {
		if reply.OK {
			mu.Lock()
			acked[res.TaskID] = res.OutputData["v"]
			mu.Unlock()
		}
	}
	for _, step := range []string{"step1", "step2", "step3"} {
		for _, srv := range []int{0, 2} {
			runWorkerConfig(t, c.conn(srv, clusterWorkerUser, clusterWorkerPass), workers.WorkerConfig{TaskType: step, Concurrency: 8,
				WorkerID: fmt.Sprintf("%s-s%d", step, srv), OnResult: onResult}, handler)
		}
	}
	secretOut := make(chan string, 2)
	runWorkerConfig(t, c.conn(2, clusterWorkerUser, clusterWorkerPass), workers.WorkerConfig{TaskType: "failover_issue"},
		func(_ context.Context, task *conductor.Task) (workers.Output, error) {
			secretOut <- fmt.Sprint(task.InputData["tok"])
			return workers.Output{}, nil
		})

	const down = 0
	c.leadAll(down)

	// Half the workflows start before the shutdown, half while and after.
	const n = 120
	ids := make([]string, n)
	startAll := func(from, to int) {
		var wg sync.WaitGroup
		sem := make(chan struct{}, 8)
		for i := from; i < to; i++ {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				e := []*env{ea, eb}[i%2]
				ids[i] = e.startRetrying(conductor.StartWorkflowRequest{Name: "three_steps", Input: map[string]any{"i": i}})
			})
		}
		wg.Wait()
	}
	startAll(0, n/2)
	testutil.Eventually(t, 45*time.Second, 10*time.Millisecond, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(acked) < n/2 {
			return fmt.Errorf("%d results acknowledged", len(acked))
		}
		return nil
	})
	t.Logf("shutting down server %d, which leads every stream and holds engine A's connection", down)
	c.servers[down].Shutdown()
	c.servers[down].WaitForShutdown()
	startAll(n/2, n)
	if t.Failed() {
		t.FailNow()
	}

	for i, id := range ids {
		e := []*env{eb, ea}[i%2] // read on the engine that did not start it
		wf := e.waitStatus(id, conductor.WorkflowCompleted)
		if wf.Output["v"] != float64(3) {
			t.Errorf("workflow %s output %v, want v 3", id, wf.Output)
		}
		mu.Lock()
		for _, task := range wf.Tasks {
			if v, ok := acked[task.TaskID]; ok && (task.Status != conductor.TaskCompleted || task.OutputData["v"] != v) {
				t.Errorf("workflow %s task %s (%s): %s output %v, but the worker was told its result v=%v was stored",
					id, task.ReferenceTaskName, task.TaskID, task.Status, task.OutputData, v)
			}
		}
		mu.Unlock()
	}
	mu.Lock()
	if len(afterAck) > 0 {
		t.Errorf("tasks executed again after their result was acknowledged: %v", afterAck)
	}
	mu.Unlock()
	if d := runs.duplicates(); len(d) > 0 {
		t.Logf("tasks executed more than once, before an acknowledged result: %v", d)
	}
	if got := runs.total(); got != 3*n {
		t.Errorf("%d tasks executed, want %d", got, 3*n)
	}

	// The secret put before the shutdown resolves at either engine's
	// hand-off afterwards.
	for _, e := range []*env{ea, eb} {
		id := e.startRetrying(conductor.StartWorkflowRequest{Name: "failover_secret"})
		if got := <-secretOut; got != "failover-secret-4242" {
			t.Errorf("the worker got %q for the secret", got)
		}
		e.waitStatus(id, conductor.WorkflowCompleted)
	}

	// The engines stop within nodetest's budget while the workers still
	// poll, as in a rolling restart after the failover: nothing is left
	// to wait for, not even a request whose answer went with server 0.
	stopWithinBudget(t, map[string]*node.Node{"A": a, "B": b})
}

// stopWithinBudget stops each engine within its ShutdownTimeout.
func stopWithinBudget(t *testing.T, engines map[string]*node.Node) {
	t.Helper()
	for name, n := range engines {
		ctx, cancel := context.WithTimeout(context.Background(), n.Config().ShutdownTimeout)
		began := time.Now()
		if err := n.Stop(ctx); err != nil {
			t.Errorf("stop engine %s: %v", name, err)
		}
		cancel()
		t.Logf("engine %s stopped in %s", name, time.Since(began).Round(time.Millisecond))
	}
}

// startRetrying starts a workflow, sending the request again while the
// engine answers it cannot now (503: a stream without a leader yet).
func (e *env) startRetrying(req conductor.StartWorkflowRequest) string {
	e.t.Helper()
	for try := 0; ; try++ {
		code, body := e.do("POST", "/api/workflow", req)
		if code == http.StatusOK {
			return body
		}
		if code != http.StatusServiceUnavailable || try == 200 {
			e.t.Fatalf("start %s: %d %s", req.Name, code, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// leadAll moves the leader of every flowvault stream to server i.
func (c *natsCluster) leadAll(i int) {
	c.t.Helper()
	nc := c.conn((i+1)%len(c.servers), clusterEngineUser, clusterEnginePass)
	name := c.name(i)
	for _, s := range eventlog.AllStreams {
		testutil.Eventually(c.t, 30*time.Second, 200*time.Millisecond, func() error {
			if c.leaderOf(s.Name) == i {
				return nil
			}
			req, _ := json.Marshal(map[string]any{"placement": map[string]any{"preferred": name}})
			m, err := nc.Request("$JS.API.STREAM.LEADER.STEPDOWN."+s.Name, req, 5*time.Second)
			if err != nil {
				return fmt.Errorf("step down %s: %w", s.Name, err)
			}
			return fmt.Errorf("%s led by server %d after a step down (%s)", s.Name, c.leaderOf(s.Name), m.Data)
		})
	}
}
