package e2e_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowvault/flowvault/internal/nodetest"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/secrets"
	"github.com/flowvault/flowvault/workers"
)

// cluster is engine A, in the test's process with the embedded NATS
// server, and engine B, a `flowvault server` child process on A's NATS
// server that the test kills with SIGKILL and starts again on its data.
type cluster struct {
	a, b *env
	p    *serverProc
}

// compactA and compactB are the engines' compaction delays.
func startCluster(t *testing.T, compactA, compactB time.Duration) *cluster {
	t.Helper()
	bin := buildFlowvault(t)
	cfgA := nodetest.Config(filepath.Join(t.TempDir(), "a"))
	cfgA.CompactionDelay = compactA
	cfgA.CompactionSweep = 2 * time.Second
	a, baseA := nodetest.StartConfig(t, cfgA)
	c, err := a.NATS().EngineCredentials()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	logFile, err := os.Create(filepath.Join(dir, "b.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logFile.Close() })
	httpPort := testutil.FreePort(t)
	baseB := "http://127.0.0.1:" + strconv.Itoa(httpPort)
	p := &serverProc{t: t, log: logFile, args: []string{bin, "server", "--data", filepath.Join(dir, "data"),
		"--http", "127.0.0.1:" + strconv.Itoa(httpPort), "--nats", a.Log().ClientURL(), "--nats-creds", nodetest.CredsFile(t, c),
		"--compaction-delay", compactB.String(), "--log-format", "json", "--insecure-dev"}}
	p.env = append(os.Environ(), "FLOWVAULT_MASTER_KEY="+nodetest.MasterKey)
	p.start(baseB)
	t.Cleanup(p.kill) // before A stops: cleanups run last-in first-out
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(logFile.Name())
			var keep []string
			for _, l := range strings.Split(string(b), "\n") {
				if l != "" && !strings.Contains(l, `"level":"INFO"`) && !strings.Contains(l, `"level":"DEBUG"`) && len(keep) < 200 {
					keep = append(keep, l)
				}
			}
			t.Logf("engine B's warnings and errors:\n%s", strings.Join(keep, "\n"))
		}
	})
	return &cluster{a: &env{t: t, node: a, base: baseA, patience: killPatience},
		b: &env{t: t, base: baseB, patience: killPatience, history: a}, p: p}
}

// killPatience bounds a wait for a workflow while engines are killed. A
// task whose announcement B had pulled for a waiting poll when it died is
// offered again only once the queue consumer's ack wait (30 s,
// docs/worker-protocol.md) has passed, and a take B recorded and never
// answered frees its task only at its response timeout: a workflow that
// met either waits longer than a live cluster's 30 s.
const killPatience = 90 * time.Second

// agree waits until both engines' read models hold the same JSON for
// every workflow of ids.
func (c *cluster) agree(t *testing.T, ids []string) {
	t.Helper()
	for _, id := range ids {
		testutil.Eventually(t, 30*time.Second, 50*time.Millisecond, func() error {
			a := c.a.must(http.StatusOK, "GET", "/api/workflow/"+id+"?includeTasks=true", nil)
			b := c.b.must(http.StatusOK, "GET", "/api/workflow/"+id+"?includeTasks=true", nil)
			var ja, jb any
			if err := json.Unmarshal([]byte(a), &ja); err != nil {
				return err
			}
			if err := json.Unmarshal([]byte(b), &jb); err != nil {
				return err
			}
			if !reflect.DeepEqual(ja, jb) {
				return fmt.Errorf("workflow %s differs:\nA %s\nB %s", id, a, b)
			}
			return nil
		})
	}
}

// Engine B dies (SIGKILL) with workflows mid-flight: tasks handed out,
// results arriving, retry delays and WAITs pending. Engine A goes on
// alone, B restarts and catches up while A works. Every workflow
// completes, no task runs again after its result was acknowledged, a WAIT
// ends once, and both engines serve the same JSON for every workflow.
func TestClusterEngineKilledMidFlight(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 5*time.Second, 5*time.Second)
	c.a.register(`{"name":"kill_mid","version":1,"tasks":[
	 {"name":"flaky","taskReferenceName":"flaky","inputParameters":{"i":"${workflow.input.i}"}},
	 {"name":"pause","taskReferenceName":"pause","type":"WAIT","inputParameters":{"duration":"1s"}},
	 {"name":"after","taskReferenceName":"after","inputParameters":{"prev":"${flaky.output.v}"}}],
	 "outputParameters":{"v":"${after.output.v}"}}`)
	// A take whose reply died with B is owned by nobody until its response
	// timeout frees it: keep that short.
	c.a.must(http.StatusNoContent, "POST", "/api/metadata/taskdefs", `[
	 {"name":"flaky","responseTimeoutSeconds":3,"retryCount":5,"retryLogic":"FIXED","retryDelaySeconds":1},
	 {"name":"after","responseTimeoutSeconds":3,"retryCount":5,"retryDelaySeconds":0}]`)

	var mu sync.Mutex
	executed := 0
	runs := map[string][]time.Time{} // task id → when each execution started
	ackedAt := map[string]time.Time{}
	handler := func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		mu.Lock()
		executed++
		runs[task.TaskID] = append(runs[task.TaskID], time.Now())
		mu.Unlock()
		if task.TaskDefName == "flaky" && task.RetryCount == 0 {
			// Every first attempt fails: its retry waits out a durable delay.
			return workers.Output{}, fmt.Errorf("first attempt of %s", task.TaskID)
		}
		i, _ := task.InputData["i"].(float64)
		prev, _ := task.InputData["prev"].(float64)
		return workers.Output{Data: map[string]any{"v": i + prev + 1}}, nil
	}
	onResult := func(res conductor.TaskResult, reply workers.ResultReply) {
		if reply.OK && !reply.Ignored {
			mu.Lock()
			ackedAt[res.TaskID] = time.Now()
			mu.Unlock()
		}
	}
	const n = 120
	ids := make([]string, n)
	for i := range ids {
		e := c.a
		if i%2 == 1 {
			e = c.b
		}
		ids[i] = e.start("kill_mid", map[string]any{"i": i})
	}
	// The workers start once every workflow has: started while the
	// workflows were, on a slow machine (the race detector) they ran 328
	// of the 360 tasks before the kill, and the 60 more awaited after it
	// could never run.
	nc := c.a.connect("flaky", "after")
	for _, tt := range []string{"flaky", "after"} {
		runWorkerConfig(t, nc, workers.WorkerConfig{TaskType: tt, Concurrency: 8, WorkerID: "go-" + tt,
			RequestTimeout: 2 * time.Second, OnResult: onResult}, handler)
	}
	waitExecuted := func(k int) {
		testutil.Eventually(t, 60*time.Second, 5*time.Millisecond, func() error {
			mu.Lock()
			defer mu.Unlock()
			if executed < k {
				return fmt.Errorf("%d tasks executed, want %d", executed, k)
			}
			return nil
		})
	}
	waitExecuted(n / 2)
	c.p.kill()
	mu.Lock()
	atKill := executed
	mu.Unlock()
	// A works alone for a while, then B comes back and catches up while A
	// keeps working. A workflow runs three tasks (flaky twice, after once):
	// under load the starts take long enough for most to run before the
	// kill, and a wait for more than 3n never ends.
	waitExecuted(min(atKill+n/2, 3*n))
	c.p.start(c.b.base)
	for i, id := range ids {
		e := c.a
		if i%2 == 1 {
			e = c.b
		}
		wf := e.waitStatus(id, conductor.WorkflowCompleted)
		if wf.Output["v"] != float64(i+2) {
			t.Fatalf("workflow %s (input %d) output %v", id, i, wf.Output)
		}
		waits := 0
		for _, task := range wf.Tasks {
			if task.ReferenceTaskName == "pause" {
				waits++
				if task.Status != conductor.TaskCompleted {
					t.Errorf("workflow %s: WAIT %s", id, task.Status)
				}
			}
		}
		if waits != 1 {
			t.Errorf("workflow %s has %d WAIT tasks", id, waits)
		}
	}
	mu.Lock()
	for taskID, at := range ackedAt {
		for _, started := range runs[taskID] {
			if started.After(at) {
				t.Errorf("task %s ran again at %s after its result was acknowledged at %s", taskID, started, at)
			}
		}
	}
	mu.Unlock()
	c.agree(t, ids)
}

// A schedule fires every second on both engines while B is killed and
// restarted twice: every fire time starts one workflow, whichever engine
// fired it, and the ticks go on while B is down.
func TestClusterScheduleEngineKilled(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 5*time.Second, 5*time.Second)
	c.a.register(`{"name":"held","tasks":[{"name":"h","taskReferenceName":"h","type":"WAIT"}]}`)
	c.a.must(http.StatusNoContent, "POST", "/api/scheduler/schedules",
		`{"name":"tick","cronExpression":"* * * * * ?","runCatchupScheduleInstances":true,"startWorkflowRequest":{"name":"held"}}`)
	waitHits := func(k int) {
		testutil.Eventually(t, 30*time.Second, 50*time.Millisecond, func() error {
			if x := c.a.scheduleExecutions(); x.TotalHits < k {
				return fmt.Errorf("%d executions, want %d", x.TotalHits, k)
			}
			return nil
		})
	}
	for round := 1; round <= 2; round++ {
		waitHits(4 * round)
		c.p.kill()
		waitHits(4*round + 2) // A fires alone
		c.p.start(c.b.base)
	}
	waitHits(12)
	c.a.must(http.StatusOK, "GET", "/api/scheduler/schedules/tick/pause", nil)
	var x executions
	testutil.Eventually(t, 30*time.Second, 50*time.Millisecond, func() error {
		xa, xb := c.a.scheduleExecutions(), c.b.scheduleExecutions()
		if xa.TotalHits != xb.TotalHits {
			return fmt.Errorf("A has %d executions, B %d", xa.TotalHits, xb.TotalHits)
		}
		x = xa
		return nil
	})
	ids := map[string]bool{}
	times := map[int64]int{}
	first, last := int64(-1), int64(0)
	for _, ex := range x.Results {
		if ids[ex.WorkflowID] {
			t.Fatalf("workflow %s started for two fire times", ex.WorkflowID)
		}
		ids[ex.WorkflowID] = true
		times[ex.ScheduledTime]++
		if first < 0 || ex.ScheduledTime < first {
			first = ex.ScheduledTime
		}
		last = max(last, ex.ScheduledTime)
	}
	for at, n := range times {
		if n != 1 {
			t.Errorf("fire time %d has %d executions", at, n)
		}
	}
	// runCatchupScheduleInstances: no tick between the first and the last
	// is skipped, whoever was down.
	for at := first; at <= last; at += 1000 {
		if times[at] == 0 {
			t.Errorf("fire time %d has no execution (first %d, last %d)", at, first, last)
		}
	}
	var wfIDs []string
	for id := range ids {
		wfIDs = append(wfIDs, id)
	}
	c.agree(t, wfIDs)
}

// Starts with an idempotency key are sent to B as it is killed; the
// client, which got no answer, sends the same start to A, and later to
// the restarted B: one workflow per key, the same one from every answer.
func TestClusterIdempotentStartEngineKilled(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 5*time.Second, 5*time.Second)
	c.a.register(`{"name":"keyed","tasks":[{"name":"h","taskReferenceName":"h","type":"WAIT"}]}`)
	startReq := func(key string) string {
		b, _ := json.Marshal(map[string]any{"name": "keyed", "idempotencyKey": key, "idempotencyStrategy": "RETURN_EXISTING"})
		return string(b)
	}
	// send posts a start and returns the workflow id, or "" when the
	// engine died before answering.
	send := func(base, key string) string {
		res, err := http.Post(base+"/api/workflow", "application/json", strings.NewReader(startReq(key)))
		if err != nil {
			return ""
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		if err != nil || res.StatusCode != http.StatusOK {
			return ""
		}
		return string(b)
	}
	const rounds, perRound = 3, 20
	var keys []string
	for round := range rounds {
		var wg sync.WaitGroup
		var roundKeys []string
		for i := range perRound {
			key := fmt.Sprintf("k-%d-%d", round, i)
			roundKeys = append(roundKeys, key)
			wg.Add(1)
			go func() { defer wg.Done(); send(c.b.base, key) }()
		}
		c.p.kill()
		wg.Wait()
		keys = append(keys, roundKeys...)
		for _, key := range roundKeys {
			if id := send(c.a.base, key); id == "" {
				t.Fatalf("A did not start %s", key)
			}
		}
		c.p.start(c.b.base)
	}
	for _, key := range keys {
		a, b := send(c.a.base, key), send(c.b.base, key)
		if a == "" || a != b {
			t.Fatalf("key %s: A answers %q, B %q", key, a, b)
		}
	}
	testutil.Eventually(t, 30*time.Second, 50*time.Millisecond, func() error {
		for _, e := range []*env{c.a, c.b} {
			var res struct{ TotalHits int }
			if err := json.Unmarshal([]byte(e.must(http.StatusOK, "GET", "/api/workflow/search?size=1&query=workflowType+IN+(keyed)", nil)), &res); err != nil {
				return err
			}
			if res.TotalHits != len(keys) {
				return fmt.Errorf("%s: %d workflows of %d keys", e.base, res.TotalHits, len(keys))
			}
		}
		return nil
	})
}

// B compacts ended workflows (A's delay is too long to) and is killed in
// the middle of a pass: the workflows it recorded as compacted lose their
// keys all the same, with B down for good.
func TestClusterCompactingEngineKilled(t *testing.T) {
	t.Parallel()
	c := startCluster(t, time.Hour, 10*time.Second)
	c.a.register(`{"name":"sealed","tasks":[{"name":"mint","taskReferenceName":"mint"}]}`)
	c.a.work("mint", 16, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		return workers.Output{Data: map[string]any{"_secrets": map[string]any{"token": "sealed-" + task.TaskID}}}, nil
	})
	const n = 300
	ids := make([]string, n)
	for i := range ids {
		ids[i] = c.a.start("sealed", nil)
	}
	for _, id := range ids {
		c.a.waitStatus(id, conductor.WorkflowCompleted)
	}
	compacted := func(id string) bool {
		for _, ev := range c.a.events(id) {
			if _, ok := ev.(*schemas.WorkflowCompacted); ok {
				return true
			}
		}
		return false
	}
	testutil.Eventually(t, 30*time.Second, time.Millisecond, func() error {
		// The first to end is among the first of B's pass to compact.
		if !compacted(ids[0]) {
			return fmt.Errorf("workflow %s not compacted yet", ids[0])
		}
		return nil
	})
	c.p.kill()
	keys := map[string]string{} // key → workflow, of the workflows B compacted
	for _, id := range ids {
		if compacted(id) {
			keys[c.a.secretsKey(id)] = id
		}
	}
	t.Logf("B compacted %d of %d workflows before it died", len(keys), n)
	ctx := testutil.Context(t, 60*time.Second)
	testutil.Eventually(t, 20*time.Second, 100*time.Millisecond, func() error {
		c.a.node.Keys().ClearCache()
		left := 0
		for key := range keys {
			if _, err := c.a.node.Keys().DataKey(ctx, key); !errors.Is(err, secrets.ErrKeyDestroyed) {
				left++
			}
		}
		if left > 0 {
			return fmt.Errorf("%d of %d compacted workflows keep their keys", left, len(keys))
		}
		return nil
	})
}
