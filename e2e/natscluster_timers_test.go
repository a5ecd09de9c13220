package e2e_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/node"
	"github.com/flowvault/flowvault/scheduler"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/workers"
)

// Two engines on a 3-node cluster (replicas 3), engine A on server 0 and
// B on server 1, workers on server 2. Every stream's leader is moved to
// server 0, which shuts down while durable timers are pending: WAITs due
// within seconds, retry delays begun just before, tasks a worker took and
// never answers (their response timeout runs out during the election),
// workflows whose timeoutSeconds runs out, and two every-second
// schedules. Each timer fires once: a WAIT completes once, a retry is
// scheduled once, each attempt of a silent task times out at most once
// and a retry of it completes, a workflow times out once, and each fire
// time of either schedule is claimed once in the log and its outcome
// recorded once, EXECUTED. The schedule that catches up
// (runCatchupScheduleInstances) claims every time from its first to its
// last, the ones due during the failover included, however long it took;
// the one that does not (Conductor's default) claims each time within its
// own second: a time it skips is one no scan claimed in, never one lost.
// Nothing asserted depends on how long the failover takes, only on its
// ending within failoverWait. Then both engines stop within nodetest's
// budget.
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
	 {"name":"tw_silent","retryCount":%d,"retryLogic":"FIXED","retryDelaySeconds":0,"responseTimeoutSeconds":%d}]`,
		silentRetries, silentResponseTimeout))

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
	ea.must(http.StatusNoContent, "POST", "/api/scheduler/schedules",
		`{"name":"tw_catchup","cronExpression":"*/1 * * * * *","runCatchupScheduleInstances":true,"startWorkflowRequest":{"name":"tw_held"}}`)
	schedules := []string{"tw_tick", "tw_catchup"}
	// fires lists the executions of each schedule that e lists.
	fires := func(e *env) map[string][]conductor.ScheduleExecution {
		x := e.scheduleExecutions()
		if x.TotalHits > len(x.Results) {
			t.Fatalf("%d schedule executions, %d listed", x.TotalHits, len(x.Results))
		}
		out := map[string][]conductor.ScheduleExecution{}
		for _, ex := range x.Results {
			out[ex.ScheduleName] = append(out[ex.ScheduleName], ex)
		}
		return out
	}
	waitExecutions := func(e *env, want map[string]int) {
		testutil.Eventually(t, 45*time.Second, 50*time.Millisecond, func() error {
			got := fires(e)
			for _, name := range schedules {
				if len(got[name]) < want[name] {
					return fmt.Errorf("%s: %d executions, want %d", name, len(got[name]), want[name])
				}
			}
			return nil
		})
	}
	waitExecutions(eb, map[string]int{"tw_tick": 3, "tw_catchup": 3})

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
	// Server 0 led the meta group as well: until another leads it, a
	// server answers the reads below "JetStream system temporarily
	// unavailable" though every stream has its leader (seen once the
	// streams were led 6.5 s after a crash).
	testutil.Eventually(t, failoverWait, 20*time.Millisecond, func() error {
		for _, s := range eventlog.AllStreams {
			if c.leaderOf(s.Name) < 0 {
				return fmt.Errorf("%s has no leader", s.Name)
			}
		}
		meta := false
		for i, s := range c.servers {
			if s == nil || !s.Running() {
				continue
			}
			if !s.JetStreamIsCurrent() {
				return fmt.Errorf("server %d's JetStream is not current", i)
			}
			meta = meta || s.JetStreamIsLeader()
		}
		if !meta {
			return errors.New("no meta leader")
		}
		return nil
	})
	t.Logf("every stream and the meta group led again %s after the shutdown began", time.Since(downAt).Round(10*time.Millisecond))
	if t.Failed() {
		t.FailNow()
	}
	afterFailover := map[string]int{}
	for name, xs := range fires(eb) {
		afterFailover[name] = len(xs) + 5
	}

	// subjectEvents lists a subject's events as the log holds them, read
	// through engine B, whose connection stayed.
	subjectEvents := func(subject string) []schemas.Event {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		recs, err := b.Log().ReadSubject(ctx, subject, 0)
		if err != nil {
			t.Fatalf("read %s: %v", subject, err)
		}
		var out []schemas.Event
		for _, r := range recs {
			for _, env := range r.Events {
				ev, err := schemas.Default.Decode(env)
				if err != nil {
					t.Fatalf("%s: %v", subject, err)
				}
				out = append(out, ev)
			}
		}
		return out
	}
	events := func(id string) []schemas.Event { return subjectEvents("fv.wf." + id) }
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
	retried, mostRetries := 0, 0
	for i, id := range silentIDs {
		wf := engines[(i+1)%2].waitStatus(id, conductor.WorkflowCompleted)
		// The taken attempt times out, and a retry completes. Retries may
		// time out as well, each once: the result of one sent to engine
		// A, whose connection went with server 0, waits until A has
		// checked every stream after its reconnection (eventlog's
		// intact), which waits for the last stream's election, and loses
		// to the timeout engine B decides once the workflows' stream is
		// led again (seen under load: a result sent 0.5 s after FV_WF had
		// a leader was answered 3.6 s later, ignored as late).
		// silentRetries outlasts that wait.
		want := []string{conductor.TaskTimedOut}
		for _, task := range wf.Tasks {
			if task.ReferenceTaskName == "silent" && task.RetryCount > 0 {
				want = append(want, conductor.TaskTimedOut)
				retried++
			}
		}
		want[len(want)-1] = conductor.TaskCompleted
		mostRetries = max(mostRetries, len(want)-1)
		if len(want) > 1+silentRetries {
			t.Errorf("workflow %s: %d attempts of its silent task, its definition allows %d", id, len(want), 1+silentRetries)
		}
		attempts(wf, "silent", want...)
	}
	mu.Lock()
	t.Logf("silent tasks: %d retries for %d tasks (at most %d for one), %d results ignored as late", retried, k, mostRetries, lateResults)
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

	// The schedules go on after the failover, then are paused. Once
	// paused, nothing claims another fire time (a claim names the
	// schedule's sequence, which the pause moved), and both engines come
	// to list every fire time claimed in the log: a claim made as the
	// pause came may not be in their read models yet, and its start may
	// not have landed (POLLED, recorded EXECUTED once it does).
	waitExecutions(eb, afterFailover)
	for _, name := range schedules {
		eb.must(http.StatusOK, "GET", "/api/scheduler/schedules/"+name+"/pause", nil)
	}
	// claimed lists a schedule's claims in the log, and how many
	// outcomes each fire time has there.
	claimed := func(name string) ([]*schemas.ScheduleFired, map[int64]int) {
		var claims []*schemas.ScheduleFired
		outcomes := map[int64]int{}
		for _, ev := range subjectEvents(scheduler.Subject(name)) {
			switch e := ev.(type) {
			case *schemas.ScheduleFired:
				claims = append(claims, e)
			case *schemas.ScheduleExecuted:
				outcomes[e.ScheduledTime]++
			}
		}
		return claims, outcomes
	}
	var x map[string][]conductor.ScheduleExecution
	testutil.Eventually(t, 30*time.Second, 100*time.Millisecond, func() error {
		xa, xb := fires(ea), fires(eb)
		for _, name := range schedules {
			claims, _ := claimed(name)
			for _, l := range []struct {
				engine string
				x      []conductor.ScheduleExecution
			}{{"A", xa[name]}, {"B", xb[name]}} {
				listed := map[int64]bool{}
				for _, ex := range l.x {
					if ex.State == "POLLED" {
						return fmt.Errorf("%s: %s lists fire time %d POLLED", name, l.engine, ex.ScheduledTime)
					}
					listed[ex.ScheduledTime] = true
				}
				for _, c := range claims {
					if !listed[c.ScheduledTime] {
						return fmt.Errorf("%s: %s does not list fire time %d", name, l.engine, c.ScheduledTime)
					}
				}
			}
		}
		x = xb
		return nil
	})
	// Each fire time is claimed once in the log and its outcome recorded
	// once, EXECUTED: a second claim would be a fire time firing twice
	// (the executions listing, keyed by fire time, would not show it), a
	// claim without its outcome a fire lost.
	for _, name := range schedules {
		claims, outcomes := claimed(name)
		times := map[int64]int{}
		first, last := int64(0), int64(0)
		for _, c := range claims {
			times[c.ScheduledTime]++
			// Without catch-up, a claim takes the latest fire time due,
			// so it is made within that time's second however late the
			// scan, and the times skipped are those no scan claimed in:
			// the failover's, or a scan's delay under load.
			if name == "tw_tick" && (c.Time < c.ScheduledTime || c.Time >= c.ScheduledTime+1000) {
				t.Errorf("%s: fire time %d claimed at %d, which is not the latest fire time due then", name, c.ScheduledTime, c.Time)
			}
			if first == 0 || c.ScheduledTime < first {
				first = c.ScheduledTime
			}
			last = max(last, c.ScheduledTime)
		}
		for at, n := range times {
			if n != 1 || outcomes[at] != 1 {
				t.Errorf("%s: fire time %d claimed %d times, its outcome recorded %d times", name, at, n, outcomes[at])
			}
		}
		for at := range outcomes {
			if times[at] == 0 {
				t.Errorf("%s: fire time %d has an outcome and no claim", name, at)
			}
		}
		for _, ex := range x[name] {
			if ex.State != "EXECUTED" {
				t.Errorf("%s: fire time %d: %s %s", name, ex.ScheduledTime, ex.State, ex.Reason)
			}
			if times[ex.ScheduledTime] == 0 {
				t.Errorf("%s: fire time %d listed, not claimed in the log", name, ex.ScheduledTime)
			}
		}
		var missed []int64
		for at := first; at <= last; at += 1000 {
			if times[at] == 0 {
				missed = append(missed, at)
			}
		}
		t.Logf("%s: %d fire times from %d to %d, %d missed %v", name, len(times), first, last, len(missed), missed)
		// A schedule that catches up claims the time after its last
		// claim, one by one, so a gap is a fire lost.
		if name == "tw_catchup" && len(missed) > 0 {
			t.Errorf("%s catches up, yet missed %d fire times: %v", name, len(missed), missed)
		}
	}

	stopWithinBudget(t, map[string]*node.Node{"A": a, "B": b})
}

// failoverWait bounds the wait for every stream to be led again after
// server 0 goes down: a crash's election took 4 to 13 s under load.
const failoverWait = 30 * time.Second

// silentResponseTimeout is the responseTimeoutSeconds of the task a worker
// takes and never answers: short, so that it runs out during the
// election.
const silentResponseTimeout = 2

// silentRetries is the retryCount of that task. Its retries' results may
// be held until every stream is led again and checked (see the silent
// workflows' check), which failoverWait bounds: the retries, each as long
// as a response timeout, outlast twice that, so that the task's budget
// does not race the failover. With 3 (6 s of retries), a CI run saw
// every retry of a workflow time out, and the workflow FAILED.
const silentRetries = 2 * int(failoverWait/time.Second) / silentResponseTimeout
