package e2e_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/node"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/workers"
)

// Two engines on a 3-node cluster (replicas 3), engine A on server 0 and
// B on server 1, workers on server 2. Every stream's leader is moved to
// server 0, which shuts down while durable timers are pending: WAITs due
// within seconds, retry delays begun just before, tasks a worker took and
// never answers (their response timeout runs out during the election),
// workflows whose timeoutSeconds runs out, and an every-second schedule.
// Each timer fires once: a WAIT completes once, a retry is scheduled once,
// a silent task times out once and is retried, a workflow times out
// once, and no fire time of the schedule starts two workflows; the
// schedule misses a bounded number of fire times, the ones due while the
// schedules' stream had no leader (runCatchupScheduleInstances is off, so
// Conductor-like, a late claim takes the latest time due). Then both
// engines stop within nodetest's budget.
func TestNATSClusterFailoverTimers(t *testing.T) {
	for _, tt := range []struct {
		name  string
		start func(t *testing.T) (*natsCluster, func())
	}{
		// Shutdown hands server 0's raft leaderships over first: the
		// streams have leaders again within a second.
		{"shutdown", func(t *testing.T) (*natsCluster, func()) {
			c := startNATSCluster(t)
			return c, func() {
				c.servers[0].Shutdown()
				c.servers[0].WaitForShutdown()
			}
		}},
		// A crash leaves the streams without a leader until the others
		// elect one, seconds later: the timers due meanwhile wait.
		{"crash", func(t *testing.T) (*natsCluster, func()) {
			c := startNATSClusterProc(t, 0)
			return c, c.kill
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, down := tt.start(t)
			failoverTimers(t, c, down)
		})
	}
}

// failoverTimers runs TestNATSClusterFailoverTimers on c, whose server 0
// goes down with down.
func failoverTimers(t *testing.T, c *natsCluster, down func()) {
	a, _ := c.startNode(0, 3, nil)
	b, _ := c.startNode(1, 3, nil)
	ea := &env{t: t, node: a, base: a.URL(), patience: 45 * time.Second}
	eb := &env{t: t, node: b, base: b.URL(), patience: 45 * time.Second}
	engines := []*env{ea, eb}
	ea.register(
		`{"name":"tw_wait","tasks":[{"name":"w","taskReferenceName":"w","type":"WAIT","inputParameters":{"duration":"${workflow.input.d}"}}]}`,
		`{"name":"tw_retry","tasks":[{"name":"tw_flaky","taskReferenceName":"flaky"}]}`,
		`{"name":"tw_silent","tasks":[{"name":"tw_silent","taskReferenceName":"silent"}]}`,
		`{"name":"tw_wftimeout","timeoutSeconds":3,"timeoutPolicy":"TIME_OUT_WF",
		  "tasks":[{"name":"hold","taskReferenceName":"hold","type":"WAIT"}]}`,
		`{"name":"tw_held","tasks":[{"name":"h","taskReferenceName":"h","type":"WAIT"}]}`)
	ea.must(http.StatusNoContent, "POST", "/api/metadata/taskdefs", fmt.Sprintf(`[
	 {"name":"tw_flaky","retryCount":1,"retryLogic":"FIXED","retryDelaySeconds":3,"responseTimeoutSeconds":60},
	 {"name":"tw_silent","retryCount":%d,"retryLogic":"FIXED","retryDelaySeconds":0,"responseTimeoutSeconds":2}]`, silentRetries))

	// runs counts each worker execution by task id and attempt.
	runs := newCounter()
	var mu sync.Mutex
	failed := map[string]bool{} // workflow id -> its first attempt's failure was stored
	lateResults := 0            // silent tasks' retries whose result came after their timeout
	runWorkerConfig(t, c.conn(2, clusterWorkerUser, clusterWorkerPass), workers.WorkerConfig{TaskType: "tw_flaky", Concurrency: 8,
		WorkerID: "flaky-s2", OnResult: func(res conductor.TaskResult, reply workers.ResultReply) {
			if reply.OK && res.Status == conductor.TaskFailed {
				mu.Lock()
				failed[res.WorkflowInstanceID] = true
				mu.Unlock()
			}
		}}, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		runs.add(fmt.Sprintf("%s/%d", task.WorkflowInstanceID, task.RetryCount))
		if task.RetryCount == 0 {
			return workers.Output{}, fmt.Errorf("first attempt of %s", task.TaskID)
		}
		return workers.Output{Data: map[string]any{"attempt": task.RetryCount}}, nil
	})

	c.leadAll(0)
	c.leadMeta(0)
	ea.must(http.StatusNoContent, "POST", "/api/scheduler/schedules",
		`{"name":"tw_tick","cronExpression":"*/1 * * * * *","startWorkflowRequest":{"name":"tw_held"}}`)
	waitExecutions := func(e *env, k int) {
		testutil.Eventually(t, 45*time.Second, 50*time.Millisecond, func() error {
			if x := e.scheduleExecutions(); x.TotalHits < k {
				return fmt.Errorf("%d schedule executions, want %d", x.TotalHits, k)
			}
			return nil
		})
	}
	waitExecutions(eb, 3)

	// The retries' delay begins as their first attempts fail, just
	// before the shutdown: it ends during the election or after it.
	const k = 6
	start := func(name string, input func(i int) map[string]any) []string {
		ids := make([]string, k)
		for i := range ids {
			ids[i] = engines[i%2].startRetrying(conductor.StartWorkflowRequest{Name: name, Input: input(i)})
		}
		return ids
	}
	none := func(int) map[string]any { return nil }
	retryIDs := start("tw_retry", none)
	testutil.Eventually(t, 30*time.Second, 10*time.Millisecond, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(failed) < k {
			return fmt.Errorf("%d first attempts failed", len(failed))
		}
		return nil
	})
	// A worker takes each silent task and never answers: its response
	// timeout runs out 2 s later.
	silentIDs := start("tw_silent", none)
	taken := 0
	testutil.Eventually(t, 30*time.Second, 10*time.Millisecond, func() error {
		got, err := eb.pollBatchRetryable("tw_silent", "silent-taker", k-taken, 100*time.Millisecond, "")
		if err != nil {
			return err
		}
		taken += len(got)
		if taken < k {
			return fmt.Errorf("%d silent tasks taken", taken)
		}
		return nil
	})
	runWorkerConfig(t, c.conn(2, clusterWorkerUser, clusterWorkerPass), workers.WorkerConfig{TaskType: "tw_silent", Concurrency: 8,
		WorkerID: "silent-s2", OnResult: func(res conductor.TaskResult, reply workers.ResultReply) {
			if reply.Ignored {
				mu.Lock()
				lateResults++
				mu.Unlock()
			}
		}}, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		runs.add(fmt.Sprintf("%s/%d", task.WorkflowInstanceID, task.RetryCount))
		return workers.Output{Data: map[string]any{"attempt": task.RetryCount}}, nil
	})
	timeoutIDs := start("tw_wftimeout", none)
	waitIDs := start("tw_wait", func(i int) map[string]any { return map[string]any{"d": fmt.Sprintf("%ds", 1+i%4)} })

	t.Log("server 0, which leads every stream and holds engine A's connection, goes down")
	downAt := time.Now()
	down()
	testutil.Eventually(t, 30*time.Second, 20*time.Millisecond, func() error {
		for _, s := range eventlog.AllStreams {
			if c.leaderOf(s.Name) < 0 {
				return fmt.Errorf("%s has no leader", s.Name)
			}
		}
		return nil
	})
	t.Logf("every stream led again %s after the shutdown began", time.Since(downAt).Round(10*time.Millisecond))
	if t.Failed() {
		t.FailNow()
	}
	executionsAtShutdown := eb.scheduleExecutions().TotalHits

	// events lists a workflow's events as the log holds them, read
	// through engine B, whose connection stayed.
	events := func(id string) []schemas.Event {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		recs, err := b.Log().ReadSubject(ctx, "fv.wf."+id, 0)
		if err != nil {
			t.Fatalf("read workflow %s: %v", id, err)
		}
		var out []schemas.Event
		for _, r := range recs {
			for _, env := range r.Events {
				ev, err := schemas.Default.Decode(env)
				if err != nil {
					t.Fatalf("workflow %s: %v", id, err)
				}
				out = append(out, ev)
			}
		}
		return out
	}
	// updates counts the task updates of each task to each status.
	updates := func(id string) map[string]int {
		n := map[string]int{}
		for _, ev := range events(id) {
			if u, ok := ev.(*schemas.TaskUpdated); ok {
				n[u.TaskID+" "+u.Status]++
			}
		}
		return n
	}
	// attempts checks a workflow's tasks of ref: one per status in want,
	// in order, their retryCount 0, 1, ..., and each status set once.
	attempts := func(wf *conductor.Workflow, ref string, want ...string) {
		t.Helper()
		var got []string
		n := updates(wf.WorkflowID)
		for _, task := range wf.Tasks {
			if task.ReferenceTaskName != ref {
				continue
			}
			if task.RetryCount != len(got) {
				t.Errorf("workflow %s: task %s (%s) retryCount %d, want %d", wf.WorkflowID, ref, task.TaskID, task.RetryCount, len(got))
			}
			got = append(got, task.Status)
			if c := n[task.TaskID+" "+task.Status]; c != 1 {
				t.Errorf("workflow %s: task %s (%s) set %s %d times in the log", wf.WorkflowID, ref, task.TaskID, task.Status, c)
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("workflow %s: tasks %s %v, want %v", wf.WorkflowID, ref, got, want)
		}
	}
	var fired []string
	for i, id := range waitIDs {
		wf := engines[(i+1)%2].waitStatus(id, conductor.WorkflowCompleted)
		attempts(wf, "w", conductor.TaskCompleted)
		if w := taskByRef(wf, "w"); w != nil {
			fired = append(fired, fmt.Sprintf("%s:%+.1fs", wf.Input["d"], time.UnixMilli(w.EndTime).Sub(downAt).Seconds()))
		}
	}
	t.Logf("WAITs ended (their duration: when, from the shutdown) %v", fired)
	for i, id := range retryIDs {
		wf := engines[(i+1)%2].waitStatus(id, conductor.WorkflowCompleted)
		attempts(wf, "flaky", conductor.TaskFailed, conductor.TaskCompleted)
	}
	retried := 0
	for i, id := range silentIDs {
		wf := engines[(i+1)%2].waitStatus(id, conductor.WorkflowCompleted)
		// The taken attempt times out, and the retry completes. A retry
		// may time out as well: its result, sent while the stream had no
		// leader, waits for the answer to a publish the dead leader took
		// along (publishTimeout) and loses to the timeout decided once
		// the new leader is elected. The retries taken after it complete.
		want := []string{conductor.TaskTimedOut}
		for _, task := range wf.Tasks {
			if task.ReferenceTaskName == "silent" && task.RetryCount > 0 {
				want = append(want, conductor.TaskTimedOut)
				retried++
			}
		}
		want[len(want)-1] = conductor.TaskCompleted
		if len(want) > 1+silentRetries {
			t.Errorf("workflow %s: %d attempts of its silent task, its definition allows %d", id, len(want), 1+silentRetries)
		}
		attempts(wf, "silent", want...)
	}
	mu.Lock()
	t.Logf("silent tasks: %d retries for %d tasks, %d results ignored as late", retried, k, lateResults)
	mu.Unlock()
	for i, id := range timeoutIDs {
		wf := engines[(i+1)%2].waitStatus(id, conductor.WorkflowTimedOut)
		attempts(wf, "hold", conductor.TaskCanceled)
		ends := 0
		for _, ev := range events(id) {
			if s, ok := ev.(*schemas.WorkflowStatusChanged); ok && s.Status == conductor.WorkflowTimedOut {
				ends++
			}
		}
		if ends != 1 {
			t.Errorf("workflow %s timed out %d times in the log", id, ends)
		}
	}
	if d := runs.duplicates(); len(d) > 0 {
		t.Logf("attempts executed more than once (a result whose answer went with server 0): %v", d)
	}

	// The schedule goes on after the failover, then is paused; both
	// engines come to list the same executions.
	waitExecutions(eb, executionsAtShutdown+5)
	eb.must(http.StatusOK, "GET", "/api/scheduler/schedules/tw_tick/pause", nil)
	var x executions
	testutil.Eventually(t, 30*time.Second, 100*time.Millisecond, func() error {
		xa, xb := ea.scheduleExecutions(), eb.scheduleExecutions()
		if xa.TotalHits != xb.TotalHits {
			return fmt.Errorf("A lists %d executions, B %d", xa.TotalHits, xb.TotalHits)
		}
		// A fire claimed as the pause came (POLLED) is recorded EXECUTED
		// once its start lands.
		for _, ex := range xb.Results {
			if ex.State == "POLLED" {
				return fmt.Errorf("fire time %d still POLLED", ex.ScheduledTime)
			}
		}
		x = xb
		return nil
	})
	times := map[int64]int{}
	wfs := map[string]int{}
	first, last := int64(0), int64(0)
	for _, ex := range x.Results {
		times[ex.ScheduledTime]++
		wfs[ex.WorkflowID]++
		if ex.State != "EXECUTED" {
			t.Errorf("fire time %d: %s %s", ex.ScheduledTime, ex.State, ex.Reason)
		}
		if first == 0 || ex.ScheduledTime < first {
			first = ex.ScheduledTime
		}
		last = max(last, ex.ScheduledTime)
	}
	for at, n := range times {
		if n != 1 {
			t.Errorf("fire time %d has %d executions", at, n)
		}
	}
	for id, n := range wfs {
		if n != 1 {
			t.Errorf("workflow %s started by %d fire times", id, n)
		}
	}
	var missed []int64
	for at := first; at <= last; at += 1000 {
		if times[at] == 0 {
			missed = append(missed, at)
		}
	}
	t.Logf("schedule: %d fire times from %d to %d, %d missed %v", len(times), first, last, len(missed), missed)
	if len(missed) > maxMissedFires {
		t.Errorf("%d fire times missed, want at most %d: %v", len(missed), maxMissedFires, missed)
	}

	stopWithinBudget(t, map[string]*node.Node{"A": a, "B": b})
}

// silentRetries is the retryCount of the task a worker takes and never
// answers: its first retry may time out in a crash's failover.
const silentRetries = 3

// maxMissedFires bounds the fire times an every-second schedule misses in
// the failover. runCatchupScheduleInstances is off, so, as Conductor's
// scheduler, a claim made late takes the latest fire time due and skips
// those before it: the times due while the schedules' stream has no
// leader, which after a crash is the followers' election timeout (4 to
// 9 s) and a publish of the claim waiting for the dead leader's answer.
// Shutdown hands the leaderships over and misses none.
const maxMissedFires = 10
