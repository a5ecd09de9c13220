package e2e_test

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flowvault/flowvault/internal/nodetest"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/workers"
)

const prioFlow = `{"name":"prio_flow","version":1,"tasks":[
 {"name":"prio_task","taskReferenceName":"t","inputParameters":{"i":"${workflow.input.i}"}}]}`

// queued is a task as a worker got it: its workflow's priority and its
// place in the order the workflows started.
type queued struct{ priority, i int }

// Queued tasks go to workers by their workflow's priority, as Orkes hands
// them out: 1 first, 99 last, then the default, 0; within one priority in
// the order they were announced (each decision's effects run apart, so
// that is the order the workflows started only roughly, as Orkes
// promises). Whichever way the worker waits, and whichever engine it
// waits at: one that saw the lanes created, or one that started after.
func TestPriorityOrdersQueuedTasks(t *testing.T) {
	t.Parallel()
	priorities := []int{0, 7, 1, 0, 99, 7, 1, 50, 0, 1, 99, 7}
	prioritized := 0
	for _, p := range priorities {
		if p != 0 {
			prioritized++
		}
	}

	for _, tc := range []struct {
		name string
		// drain takes every queued task, one at a time, from the node
		// at base (or the engines' NATS server).
		drain func(t *testing.T, e *env, n int) []queued
		// joined: the tasks are taken through a second engine, which
		// joins before the tasks are queued or after.
		joined, joinFirst bool
		// poison: lanes and the lanes' notices get garbage too.
		poison bool
	}{
		{name: "http poll", drain: drainHTTP},
		{name: "poisoned lanes", drain: drainHTTP, poison: true},
		{name: "go sdk", drain: drainSDK},
		{name: "engine joined before", drain: drainHTTP, joined: true, joinFirst: true},
		{name: "engine joined after", drain: drainHTTP, joined: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a := newEnv(t)
			a.register(prioFlow)
			taker := a
			join := func() {
				b, base := nodetest.StartConfig(t, nodetest.JoinConfig(t, a.node, filepath.Join(t.TempDir(), "b")))
				taker = &env{t: t, node: b, base: base}
			}
			if tc.joined && tc.joinFirst {
				join()
			}
			started := map[string]queued{}
			for i, p := range priorities {
				id := a.must(http.StatusOK, "POST", "/api/workflow", conductor.StartWorkflowRequest{Name: "prio_flow",
					Input: map[string]any{"i": i}, Priority: p})
				started[id] = queued{p, i}
			}
			// The queue counts every task once, lanes or not.
			waitQueueSize(t, a, "prio_task", len(priorities))
			want := announced(t, a, started, len(priorities)+prioritized)
			if tc.poison {
				poisonLanes(t, a)
			}
			if tc.joined && !tc.joinFirst {
				join()
			}
			got := tc.drain(t, taker, len(priorities))
			if !slices.Equal(got, want) {
				t.Fatalf("tasks taken in the order\n%v, want\n%v", got, want)
			}
			// Each lane's message took its twin in the queue along.
			waitQueueSize(t, a, "prio_task", 0)
		})
	}
}

// announced waits until the dispatch stream holds n announcements, and
// returns the order Orkes would hand the tasks out in: each lane's in the
// order announced, lanes by priority, then the default's in the queue's
// order.
func announced(t *testing.T, e *env, started map[string]queued, n int) []queued {
	t.Helper()
	js, err := jetstream.New(nodetest.EngineConn(t, e.node))
	if err != nil {
		t.Fatal(err)
	}
	ctx := testutil.Context(t, 30*time.Second)
	stream, err := js.Stream(ctx, "FV_DISPATCH")
	if err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() error {
		info, err := stream.Info(ctx)
		if err != nil {
			return err
		}
		if info.State.Msgs != uint64(n) {
			return fmt.Errorf("%d announcements, want %d", info.State.Msgs, n)
		}
		return nil
	})
	// Nothing has taken a task yet: the stream holds them from 1 on.
	var order []queued
	for seq := uint64(1); seq <= uint64(n); seq++ {
		m, err := stream.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("announcement %d: %v", seq, err)
		}
		var d workers.Dispatch
		if err := json.Unmarshal(m.Data, &d); err != nil {
			t.Fatal(err)
		}
		q, ok := started[d.WorkflowInstanceID]
		if !ok || q.priority != d.Priority {
			t.Fatalf("announcement %s of workflow %s, priority %d", m.Subject, d.WorkflowInstanceID, d.Priority)
		}
		if d.Priority == 0 || m.Subject != workers.DispatchSubject("prio_task", "") {
			order = append(order, q) // a lane's, or the queue's of a default task
		} // else a prioritized task's twin in the queue
	}
	rank := func(p int) int { return cmp.Or(p, 100) }
	slices.SortStableFunc(order, func(a, b queued) int { return cmp.Compare(rank(a.priority), rank(b.priority)) })
	return order
}

// poisonLanes publishes what only engines should on the lanes: a message
// that is not JSON, and one that names a workflow that does not exist and,
// as its twin in the queue, the announcement of another task (the first
// workflow's): neither may cost a task. And a notice of a lane that is
// not one.
func poisonLanes(t *testing.T, e *env) {
	t.Helper()
	nc := nodetest.EngineConn(t, e.node)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := testutil.Context(t, 10*time.Second)
	stream, err := js.Stream(ctx, "FV_DISPATCH")
	if err != nil {
		t.Fatal(err)
	}
	var victim uint64
	for seq := uint64(1); victim == 0; seq++ {
		m, err := stream.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("no announcement of the first task found: %v", err)
		}
		var d workers.Dispatch
		if m.Subject == workers.DispatchSubject("prio_task", "") && json.Unmarshal(m.Data, &d) == nil && d.Priority == 0 {
			victim = seq
		}
	}
	publish := func(subject, body string, header nats.Header) {
		t.Helper()
		if _, err := js.PublishMsg(ctx, &nats.Msg{Subject: subject, Data: []byte(body), Header: header}); err != nil {
			t.Fatal(err)
		}
	}
	publish("fv.taskp.01.prio_task", "\x00garbage", nil)
	publish("fv.taskp.50.prio_task", `{"taskId":"t","workflowInstanceId":"no-such-workflow","taskType":"prio_task","priority":50}`,
		nats.Header{"Fv-Twin-Seq": []string{strconv.FormatUint(victim, 10)}})
	if err := nc.Publish("fv.engines.lane", []byte("fvp07_")); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
}

// waitQueueSize waits until taskType's queue holds n tasks.
func waitQueueSize(t *testing.T, e *env, taskType string, n int) {
	t.Helper()
	testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() error {
		var sizes map[string]int
		if err := json.Unmarshal([]byte(e.must(http.StatusOK, "GET", "/api/tasks/queue/sizes?taskType="+url.QueryEscape(taskType), nil)), &sizes); err != nil {
			return err
		}
		if sizes[taskType] != n {
			return fmt.Errorf("queue size %d, want %d", sizes[taskType], n)
		}
		return nil
	})
}

func takenAs(t *testing.T, task *conductor.Task) queued {
	t.Helper()
	i, ok := task.InputData["i"].(float64)
	if !ok {
		t.Fatalf("task %s input %v", task.TaskID, task.InputData)
	}
	return queued{task.WorkflowPriority, int(i)}
}

// drainHTTP polls Conductor's task API, one task a poll.
func drainHTTP(t *testing.T, e *env, n int) []queued {
	var got []queued
	for range n {
		var task conductor.Task
		if err := json.Unmarshal([]byte(e.must(http.StatusOK, "GET", "/api/tasks/poll/prio_task?workerid=w1", nil)), &task); err != nil {
			t.Fatal(err)
		}
		got = append(got, takenAs(t, &task))
	}
	if status, body := e.do("GET", "/api/tasks/poll/prio_task?workerid=w1", nil); status != http.StatusNoContent {
		t.Fatalf("poll of an empty queue = %d %s", status, body)
	}
	return got
}

// drainSDK runs a Go SDK worker of one slot until it has run n tasks.
func drainSDK(t *testing.T, e *env, n int) []queued {
	var (
		mu   sync.Mutex
		got  []queued
		done = make(chan struct{})
	)
	e.work("prio_task", 1, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, takenAs(t, task))
		if len(got) == n {
			close(done)
		}
		return workers.Output{}, nil
	})
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("the worker ran %d of %d tasks", len(got), n)
	}
	mu.Lock()
	defer mu.Unlock()
	return slices.Clone(got)
}
