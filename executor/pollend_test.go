package executor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/workers"
)

// natsPollWaiting publishes a NATS poll of match_task named id, waiting
// longer than the test runs, and returns its answers once it waits at e.
func natsPollWaiting(t *testing.T, nc *nats.Conn, e *Executor, id string) *nats.Subscription {
	t.Helper()
	before := e.match.count()
	inbox := nc.NewInbox()
	answers, err := nc.SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(workers.PollRequest{WorkerID: "w-" + id, WaitMs: 30000, PollID: id})
	if err := nc.PublishRequest(workers.PollSubject("match_task", ""), inbox, body); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, 5*time.Millisecond, func() error {
		if e.match.count() <= before {
			return errors.New("the poll does not wait yet")
		}
		return nil
	})
	return answers
}

func endPoll(t *testing.T, nc *nats.Conn, taskType, id string) {
	t.Helper()
	body, _ := json.Marshal(workers.PollEnd{PollID: id})
	if err := nc.Publish(workers.PollEndSubject(taskType), body); err != nil {
		t.Fatal(err)
	}
}

// A poll its worker ends is answered at once, as if its wait had run out,
// and no longer waits for a task; an end for another type, an unknown id
// or one that is not a poll end ends nothing. (Poll ends are handled in the order they are sent, so
// once the second poll is answered, the ends before it were heard.)
func TestEndedPollIsAnsweredAtOnce(t *testing.T) {
	l := testutil.OpenLog(t, "")
	e := startExecutor(t, l, nothingScheduled{}, Config{})
	ctx := testutil.Context(t, 20*time.Second)
	nc := l.Conn()
	kept := natsPollWaiting(t, nc, e, "poll-kept")
	ended := natsPollWaiting(t, nc, e, "poll-ended")
	waiting := e.match.count()

	endPoll(t, nc, "other_task", "poll-kept")
	endPoll(t, nc, "match_task", "poll-unknown")
	for _, poison := range []string{"not json", `{"pollId":""}`, `["poll-kept"]`} {
		if err := nc.Publish(workers.PollEndSubject("match_task"), []byte(poison)); err != nil {
			t.Fatal(err)
		}
	}
	endPoll(t, nc, "match_task", "poll-ended")
	m, err := ended.NextMsgWithContext(ctx)
	if err != nil {
		t.Fatalf("the ended poll was not answered: %v", err)
	}
	var r workers.PollReply
	if err := json.Unmarshal(m.Data, &r); err != nil || r.Task != nil || r.Error != nil || m.Reply != "" {
		t.Fatalf("the ended poll was answered %s (reply %q), want {}", m.Data, m.Reply)
	}
	testutil.Eventually(t, 10*time.Second, 5*time.Millisecond, func() error {
		if n := e.match.count(); n != waiting-1 {
			return fmt.Errorf("%d polls wait, want %d", n, waiting-1)
		}
		return nil
	})

	// The poll that was not ended is the one the next task goes to.
	startInline(ctx, t, e, "wf-poll-end", twoTasks)
	m, err = kept.NextMsgWithContext(ctx)
	if err != nil {
		t.Fatalf("the poll that was not ended got no task: %v", err)
	}
	if err := json.Unmarshal(m.Data, &r); err != nil || r.Task == nil || m.Reply == "" {
		t.Fatalf("the poll that was not ended was answered %s, want an offer", m.Data)
	}
	_ = m.Respond([]byte(`{"accept":true}`))
}

// An offer is accepted by the Go SDK's answer and by any JSON object that
// says so, as other languages write it; anything else refuses it.
func TestOfferAnswers(t *testing.T) {
	for _, tc := range []struct {
		answer string
		want   bool
	}{
		{workers.AcceptOffer, true},
		{`{"accept": true}`, true},
		{`{ "accept" : true, "workerId": "w1" }`, true},
		{workers.RefuseOffer, false},
		{`{}`, false},
		{`{"accept":"true"}`, false},
		{`accept`, false},
		{``, false},
	} {
		if got := accepts([]byte(tc.answer)); got != tc.want {
			t.Errorf("accepts(%q) = %v, want %v", tc.answer, got, tc.want)
		}
	}
}

// slowTakes appends a take's record only after delay, as a busy log
// would.
type slowTakes struct {
	log   *eventlog.Log
	delay time.Duration
}

func (s slowTakes) Append(ctx context.Context, subj string, envs []schemas.Envelope, expected uint64, opts ...eventlog.AppendOption) (uint64, error) {
	if isTake(envs) {
		time.Sleep(s.delay)
	}
	return s.log.Append(ctx, subj, envs, expected, opts...)
}

// A take recorded after its worker stopped waiting for the answer (the
// waitMs it sent) is handed out again at once: the worker will never run
// it, and the task would otherwise wait for its response timeout. A take
// within the wait, or from a worker that did not say, is the worker's; a
// wait too short for any answer is refused, nothing taken.
func TestTakeRecordedAfterItsWorkersWaitIsHandedBack(t *testing.T) {
	for _, tc := range []struct {
		name   string
		waitMs int64
		append time.Duration // how long a take's append takes
		want   string        // the answer: a task, or an error code
	}{
		// The wait leaves 0.9 s for the take's append.
		{"recorded after the wait", 1000, 1500 * time.Millisecond, workers.CodeUnavailable},
		{"recorded within the wait", 60000, 1500 * time.Millisecond, "task"},
		{"no wait given", 0, 0, "task"},
		{"a wait too short", 50, 0, workers.CodeInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := testutil.OpenLog(t, "")
			e := startAppendingThrough(t, l, slowTakes{log: l, delay: tc.append}, nil)
			ctx := testutil.Context(t, 30*time.Second)
			id := "wf-take-wait-" + fmt.Sprint(tc.waitMs)
			startInline(ctx, t, e, id, twoTasks)
			w, err := e.State(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			taskID := w.Tasks[0].ID
			body, _ := json.Marshal(workers.TakeRequest{TaskID: taskID, WorkflowInstanceID: id, WorkerID: "w1", WaitMs: tc.waitMs})
			m, err := l.Conn().RequestWithContext(ctx, workers.TakeSubject("match_task", ""), body)
			if err != nil {
				t.Fatal(err)
			}
			var reply workers.TakeReply
			if err := json.Unmarshal(m.Data, &reply); err != nil {
				t.Fatal(err)
			}
			switch {
			case tc.want == "task":
				if reply.Task == nil || reply.Task.PollCount != 1 {
					t.Fatalf("take answered %s, want the task", m.Data)
				}
				return
			case reply.Task != nil || reply.Error == nil || reply.Error.Code != tc.want:
				t.Fatalf("take answered %s, want %s", m.Data, tc.want)
			case tc.want == workers.CodeInvalid:
				if w, err := e.State(ctx, id); err != nil || w.TaskByID(taskID).PollCount != 0 {
					t.Fatalf("a refused take took the task: %v", err)
				}
				return
			}
			testutil.Eventually(t, 20*time.Second, 20*time.Millisecond, func() error {
				w, err := e.State(ctx, id)
				if err != nil {
					return err
				}
				if got := w.TaskByID(taskID); got.Status != conductor.TaskScheduled || got.PollCount != 1 {
					return fmt.Errorf("task %s, poll count %d", got.Status, got.PollCount)
				}
				return nil
			})
			if reply := takeOver(ctx, t, l, e, id); reply.Task == nil || reply.Task.TaskID != taskID || reply.Task.PollCount != 2 {
				t.Fatalf("the next take answered %+v, task %+v", reply.Error, reply.Task)
			}
		})
	}
}
