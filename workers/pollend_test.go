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
