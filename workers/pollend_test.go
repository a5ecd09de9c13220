package workers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/workers"
)

// A worker that stops ends the polls it has waiting, so that no engine
// offers a task to a poll nobody answers, and returns once each is
// answered: by {} (the engine ended it), after sending the end again if
// the first went astray, or by an offer the engine made before it heard,
// which the stopping worker refuses. An engine that never answers holds it
// up only a few seconds, not the poll's wait.
func TestWorkerEndsItsPollsWhenStopping(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		// endsIgnored is how many ends of a poll the stand-in engine
		// ignores before it answers the poll.
		endsIgnored int
		offer       bool
	}{
		{name: "answered"},
		{name: "first end lost", endsIgnored: 1},
		{name: "offered before the end", offer: true},
		{name: "never answered", endsIgnored: 1000},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l := testutil.OpenLog(t, "")
			ctx := testutil.Context(t, 15*time.Second)
			nc := l.Conn()
			taskType := fmt.Sprintf("stopping_%d_%v", tt.endsIgnored, tt.offer)
			const slots = 2

			var mu sync.Mutex
			polls := map[string]string{} // poll id -> reply subject
			ends := map[string]int{}
			offers := make(chan workers.OfferReply, slots)
			sub, err := nc.Subscribe(workers.PollSubject(taskType, ""), func(m *nats.Msg) {
				var req workers.PollRequest
				if err := json.Unmarshal(m.Data, &req); err != nil || req.PollID == "" {
					t.Errorf("poll %s: want a poll id", m.Data)
					return
				}
				mu.Lock()
				defer mu.Unlock()
				polls[req.PollID] = m.Reply
			})
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Unsubscribe()
			endSub, err := nc.Subscribe(workers.PollEndSubject(taskType), func(m *nats.Msg) {
				var end workers.PollEnd
				_ = json.Unmarshal(m.Data, &end)
				mu.Lock()
				ends[end.PollID]++
				reply, n := polls[end.PollID], ends[end.PollID]
				mu.Unlock()
				if reply == "" || n != tt.endsIgnored+1 {
					return
				}
				if !tt.offer {
					_ = nc.Publish(reply, []byte(`{}`))
					return
				}
				body, _ := json.Marshal(workers.PollReply{Task: &conductor.Task{TaskID: "t-" + end.PollID, WorkflowInstanceID: "wf1", TaskType: taskType}})
				go func() {
					var r workers.OfferReply
					if ans, err := nc.Request(reply, body, 5*time.Second); err == nil {
						_ = json.Unmarshal(ans.Data, &r)
					} else {
						r.Accept = true // no answer: not the refusal wanted
					}
					offers <- r
				}()
			})
			if err != nil {
				t.Fatal(err)
			}
			defer endSub.Unsubscribe()

			ran := make(chan string, slots)
			w, err := workers.NewWorker(nc, workers.WorkerConfig{TaskType: taskType, Concurrency: slots, PollWait: 20 * time.Second},
				func(_ context.Context, task *conductor.Task) (workers.Output, error) {
					ran <- task.TaskID
					return workers.Output{}, nil
				})
			if err != nil {
				t.Fatal(err)
			}
			wctx, stop := context.WithCancel(ctx)
			returned := make(chan error, 1)
			go func() { returned <- w.Run(wctx) }()
			testutil.Eventually(t, 10*time.Second, 5*time.Millisecond, func() error {
				mu.Lock()
				defer mu.Unlock()
				if len(polls) < slots {
					return fmt.Errorf("%d polls wait", len(polls))
				}
				return nil
			})
			stop()
			select {
			case err := <-returned:
				if err != nil {
					t.Fatalf("Run: %v", err)
				}
			case <-ctx.Done():
				t.Fatal("the worker did not stop: its polls were not ended")
			}
			mu.Lock()
			defer mu.Unlock()
			for id := range polls {
				if want := min(tt.endsIgnored+1, 2); ends[id] < want {
					t.Errorf("poll %s ended %d times, want at least %d", id, ends[id], want)
				}
			}
			if tt.offer {
				for range slots {
					if r := <-offers; r.Accept {
						t.Fatal("a stopping worker accepted an offer")
					}
				}
			}
			if len(ran) != 0 {
				t.Fatalf("a stopping worker ran %s", <-ran)
			}
		})
	}
}

// The SDK's constant answers to offers are the protocol's JSON.
func TestOfferAnswersAreJSON(t *testing.T) {
	for answer, want := range map[string]bool{workers.AcceptOffer: true, workers.RefuseOffer: false} {
		var r workers.OfferReply
		if err := json.Unmarshal([]byte(answer), &r); err != nil || r.Accept != want {
			t.Errorf("%s reads %+v, %v", answer, r, err)
		}
	}
}

// A worker that stops while its last result waits for the next task ends
// that wait as it ends a poll, and takes the answer as the result's: the
// result is recorded, and the worker returns.
func TestWorkerEndsItsResultWaitWhenStopping(t *testing.T) {
	t.Parallel()
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, 15*time.Second)
	nc := l.Conn()
	const taskType = "stopping_result"
	standInEngine(t, nc, taskType, offerOnce(taskType), func(*testing.T, *nats.Conn, string) {})
	waiting := make(chan *nats.Msg, 1) // the result request, held unanswered
	waitID := make(chan string, 1)
	results, err := nc.Subscribe(workers.ResultSubject(taskType, ""), func(m *nats.Msg) {
		var req workers.ResultRequest
		if err := json.Unmarshal(m.Data, &req); err != nil || req.Next == nil || req.Next.PollID == "" {
			t.Errorf("result %s: want one that waits under a poll id", m.Data)
			return
		}
		waitID <- req.Next.PollID
		waiting <- m
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = results.Unsubscribe() })
	ended := make(chan string, 8)
	ends, err := nc.Subscribe(workers.PollEndSubject(taskType), func(m *nats.Msg) {
		var end workers.PollEnd
		_ = json.Unmarshal(m.Data, &end)
		ended <- end.PollID
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ends.Unsubscribe() })

	recorded := make(chan workers.ResultReply, 1)
	w, err := workers.NewWorker(nc, workers.WorkerConfig{TaskType: taskType, PollWait: 20 * time.Second,
		OnResult: func(_ conductor.TaskResult, r workers.ResultReply) { recorded <- r }},
		func(context.Context, *conductor.Task) (workers.Output, error) { return workers.Output{}, nil })
	if err != nil {
		t.Fatal(err)
	}
	wctx, stop := context.WithCancel(ctx)
	returned := make(chan error, 1)
	go func() { returned <- w.Run(wctx) }()

	var m *nats.Msg
	select {
	case m = <-waiting:
	case <-ctx.Done():
		t.Fatal("the result never came")
	}
	id := <-waitID
	stop()
	select {
	case got := <-ended:
		if got != id {
			t.Fatalf("ended wait %q, want the result's %q", got, id)
		}
	case <-ctx.Done():
		t.Fatal("the stopping worker did not end its result's wait")
	}
	body, _ := json.Marshal(workers.ResultReply{OK: true, Next: &workers.PollReply{}})
	if err := m.Respond(body); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-recorded:
		if !r.OK {
			t.Fatalf("OnResult saw %+v, want the result recorded", r)
		}
	case <-ctx.Done():
		t.Fatal("the result's answer was not taken")
	}
	select {
	case err := <-returned:
		if err != nil {
			t.Fatal(err)
		}
	case <-ctx.Done():
		t.Fatal("the worker did not return")
	}
}
