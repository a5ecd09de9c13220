package workers_test

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/workers"
)

// A poll answered "internal" or "unavailable" says nothing about the
// tasks: the worker polls again rather than stop. Here a stand-in engine
// fails the first two polls; the third offers a task, which the worker
// accepts and runs.
func TestWorkerPollsAgainAfterEngineError(t *testing.T) {
	t.Parallel()
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, 30*time.Second)
	nc := l.Conn()
	const taskType = "flaky_poll"
	var polls atomic.Int32
	answers := []workers.PollReply{
		{Error: &workers.Error{Code: workers.CodeInternal, Message: "internal error"}},
		{Error: &workers.Error{Code: workers.CodeUnavailable, Message: "starting"}},
		{Task: &conductor.Task{TaskID: "t1", WorkflowInstanceID: "wf1", TaskType: taskType, Status: conductor.TaskInProgress}},
	}
	accepted := standInEngine(t, nc, taskType, func() (workers.PollReply, bool) {
		n := int(polls.Add(1))
		if n > len(answers) {
			return workers.PollReply{}, false
		}
		return answers[n-1], true
	}, okResults)

	ran, _ := runRecording(t, ctx, nc, workers.WorkerConfig{TaskType: taskType, PollWait: time.Second})
	select {
	case id := <-ran:
		if id != "t1" || polls.Load() < 3 {
			t.Fatalf("ran %s after %d polls, want t1 after 3", id, polls.Load())
		}
	case <-ctx.Done():
		t.Fatalf("the task never ran: %d polls", polls.Load())
	}
	if got := <-accepted; got != (offerAnswer{"t1", true}) {
		t.Fatalf("offer answered %+v, want t1 accepted", got)
	}
}

// A worker started before any engine (its polls find no responders, as
// while a server restarts) keeps polling instead of giving up, and takes
// the task once an engine answers.
func TestWorkerOutlastsNoEngine(t *testing.T) {
	t.Parallel()
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, 30*time.Second)
	nc := l.Conn()
	const taskType = "patient"
	logger, logs := testutil.CapturingLogger()
	okResults(t, nc, taskType) // answers the worker's result until it has stopped
	ran, done := runRecording(t, ctx, nc, workers.WorkerConfig{TaskType: taskType, PollWait: time.Second, Logger: logger})

	// Once the worker has found no engine, one starts.
	testutil.Eventually(t, 10*time.Second, 20*time.Millisecond, func() error {
		if !strings.Contains(logs.String(), "no responders") {
			return errors.New("the worker has not polled yet")
		}
		return nil
	})
	standInEngine(t, nc, taskType, offerOnce(taskType), func(*testing.T, *nats.Conn, string) {})
	select {
	case id := <-ran:
		if id != "t1" {
			t.Fatalf("ran %s", id)
		}
	case err := <-done:
		t.Fatalf("the worker gave up: %v", err)
	case <-ctx.Done():
		t.Fatal("the task never ran")
	}
}

// The answer to a poll the worker gave up on (the engine held it past the
// worker's wait) is refused if it offers a task: the slot that asked has
// moved on, and the engine must hand the task to someone else. The offer
// that answers the poll the slot waits on is accepted.
func TestWorkerRefusesTheOfferOfAPollGivenUp(t *testing.T) {
	t.Parallel()
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, 30*time.Second)
	nc := l.Conn()
	const taskType = "slow_engine"
	var held atomic.Pointer[nats.Msg]
	answers := make(chan offerAnswer, 4)
	offer := func(reply, taskID string) {
		body, _ := json.Marshal(workers.PollReply{Task: &conductor.Task{TaskID: taskID, WorkflowInstanceID: "wf1", TaskType: taskType}})
		ans, err := nc.Request(reply, body, 5*time.Second)
		if err != nil {
			answers <- offerAnswer{taskID, false}
			return
		}
		var r workers.OfferReply
		_ = json.Unmarshal(ans.Data, &r)
		answers <- offerAnswer{taskID, r.Accept}
	}
	sub, err := nc.Subscribe(workers.PollSubject(taskType, ""), func(m *nats.Msg) {
		if held.CompareAndSwap(nil, m) {
			return // the first poll: answered below, once the worker has given up on it
		}
		if prev := held.Load(); prev != nil && prev.Reply != "" && prev != m {
			// The second poll: the worker gave up on the first. Answer
			// the first now, then this one.
			go func() {
				offer(prev.Reply, "stale")
				offer(m.Reply, "t1")
			}()
			held.Store(&nats.Msg{})
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	okResults(t, nc, taskType)

	ran, _ := runRecording(t, ctx, nc, workers.WorkerConfig{TaskType: taskType, PollWait: 100 * time.Millisecond, RequestTimeout: 100 * time.Millisecond})
	select {
	case id := <-ran:
		if id != "t1" {
			t.Fatalf("ran %s, want t1", id)
		}
	case <-ctx.Done():
		t.Fatal("the task never ran")
	}
	got := map[string]bool{}
	for range 2 {
		a := <-answers
		got[a.taskID] = a.accept
	}
	if got["stale"] || !got["t1"] {
		t.Fatalf("offers answered %v, want the stale one refused and t1 accepted", got)
	}
}

// runRecording runs a worker, until the test ends, whose handler reports
// the id of each task it runs; done reports Run's return, should the
// worker give up.
func runRecording(t *testing.T, ctx context.Context, nc *nats.Conn, cfg workers.WorkerConfig) (ran <-chan string, done <-chan error) {
	t.Helper()
	ids := make(chan string, 1)
	return ids, runWorker(t, ctx, nc, cfg, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		ids <- task.TaskID
		return workers.Output{}, nil
	})
}

// runWorker runs a worker with handler until the test ends; done reports
// Run's return, should the worker give up.
func runWorker(t *testing.T, ctx context.Context, nc *nats.Conn, cfg workers.WorkerConfig, handler workers.Handler) (done <-chan error) {
	t.Helper()
	w, err := workers.NewWorker(nc, cfg, handler)
	if err != nil {
		t.Fatal(err)
	}
	wctx, stop := context.WithCancel(ctx)
	returned, exited := make(chan error, 1), make(chan struct{})
	go func() {
		defer close(exited)
		returned <- w.Run(wctx)
	}()
	t.Cleanup(func() { stop(); <-exited })
	return returned
}

// offerAnswer is a worker's answer to an offer of taskID.
type offerAnswer struct {
	taskID string
	accept bool
}

// standInEngine answers polls for taskType with poll(): a task is offered
// (and the worker's answer sent on the returned channel), other replies
// are sent as they are, and false leaves the poll unanswered. results
// answers results. It stops at cleanup, after a worker started later
// (cleanups run last-registered first), so that the worker's last result
// is answered.
func standInEngine(t *testing.T, nc *nats.Conn, taskType string, poll func() (workers.PollReply, bool),
	results func(*testing.T, *nats.Conn, string)) <-chan offerAnswer {
	t.Helper()
	answers := make(chan offerAnswer, 16)
	sub, err := nc.Subscribe(workers.PollSubject(taskType, ""), func(m *nats.Msg) {
		reply, ok := poll()
		if !ok {
			return
		}
		body, _ := json.Marshal(reply)
		if reply.Task == nil {
			_ = m.Respond(body)
			return
		}
		go offer(nc, m, body, reply.Task.TaskID, answers)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	results(t, nc, taskType)
	return answers
}

// offer answers m with body, an offer of taskID, as an engine does, and
// sends the worker's answer to answers.
func offer(nc *nats.Conn, m *nats.Msg, body []byte, taskID string, answers chan<- offerAnswer) {
	ans, err := nc.Request(m.Reply, body, 5*time.Second)
	var r workers.OfferReply
	if err == nil {
		_ = json.Unmarshal(ans.Data, &r)
	}
	answers <- offerAnswer{taskID, r.Accept}
}

// offerOnce offers task t1 to the first poll and leaves the others
// unanswered.
func offerOnce(taskType string) func() (workers.PollReply, bool) {
	var offered atomic.Bool
	return func() (workers.PollReply, bool) {
		if offered.Swap(true) {
			return workers.PollReply{}, false
		}
		return workers.PollReply{Task: &conductor.Task{TaskID: "t1", WorkflowInstanceID: "wf1", TaskType: taskType, Status: conductor.TaskInProgress}}, true
	}
}

// okResults answers every result of taskType "ok".
func okResults(t *testing.T, nc *nats.Conn, taskType string) {
	t.Helper()
	sub, err := nc.Subscribe(workers.ResultSubject(taskType, ""), func(m *nats.Msg) {
		body, _ := json.Marshal(workers.ResultReply{OK: true})
		_ = m.Respond(body)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
}

// A result the engine cannot keep fails its task, saying why, without
// its output; otherwise the task would wait for its response timeout. One
// the engine refuses as invalid (a bad status, say; it kept nothing) is
// followed by a FAILED one, to be retried. One over the NATS server's
// max_payload cannot be sent at all, and never will be: it is followed by
// a FAILED_WITH_TERMINAL_ERROR one instead of being sent again until the
// worker gives up; so is one that cannot be written as JSON (a NaN, or a
// value whose MarshalJSON panics, which must not end the process).
func TestUnkeptResultFailsTheTask(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name      string
		refuse    bool // the engine refuses the first result as invalid
		oversized bool // the handler's output is over the max payload
		odd       any  // a value of the handler's output that JSON cannot write
		want      []string
		reason    string
	}{
		{"refused as invalid", true, false, nil, []string{conductor.TaskCompleted, conductor.TaskFailed}, "record too large"},
		{"over max_payload", false, true, nil, []string{conductor.TaskFailedWithTerminalError}, "maximum payload exceeded"},
		{"not JSON", false, false, math.NaN(), []string{conductor.TaskFailedWithTerminalError}, "unsupported value: NaN"},
		{"MarshalJSON panics", false, false, panicky{}, []string{conductor.TaskFailedWithTerminalError}, "panic: boom"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l := testutil.OpenLog(t, "")
			ctx := testutil.Context(t, 30*time.Second)
			nc := l.Conn()
			const taskType = "unkept"
			results := make(chan conductor.TaskResult, 4)
			result, err := nc.Subscribe(workers.ResultSubject(taskType, ""), func(m *nats.Msg) {
				var res conductor.TaskResult
				_ = json.Unmarshal(m.Data, &res)
				reply := workers.ResultReply{OK: true}
				if tt.refuse && len(results) == 0 {
					reply = workers.ResultReply{Error: &workers.Error{Code: workers.CodeInvalid, Message: "record too large"}}
				}
				results <- res
				body, _ := json.Marshal(reply)
				_ = m.Respond(body)
			})
			if err != nil {
				t.Fatal(err)
			}
			defer result.Unsubscribe()
			standInEngine(t, nc, taskType, offerOnce(taskType), func(*testing.T, *nats.Conn, string) {})
			output := map[string]any{"done": true}
			if tt.oversized {
				output["big"] = strings.Repeat("a", int(nc.MaxPayload()))
			}
			if tt.odd != nil {
				output["odd"] = tt.odd
			}
			runWorker(t, ctx, nc, workers.WorkerConfig{TaskType: taskType, PollWait: time.Second},
				func(context.Context, *conductor.Task) (workers.Output, error) {
					return workers.Output{Data: output}, nil
				})
			var got []conductor.TaskResult
			for len(got) < len(tt.want) {
				select {
				case res := <-results:
					got = append(got, res)
				case <-ctx.Done():
					t.Fatalf("results %+v: want %v, the last saying why", got, tt.want)
				}
			}
			last := got[len(got)-1]
			for i, res := range got {
				if res.TaskID != "t1" || res.Status != tt.want[i] {
					t.Fatalf("results %+v: want %v", got, tt.want)
				}
			}
			if !strings.Contains(last.ReasonForIncompletion, tt.reason) || len(last.OutputData) != 0 {
				t.Fatalf("last result %+v: want no output and a reason saying %q", last, tt.reason)
			}
		})
	}
}

// panicky is a value whose MarshalJSON panics.
type panicky struct{}

func (panicky) MarshalJSON() ([]byte, error) { panic("boom") }

// A worker's result waits for its next task, and the task the engine
// offers with the result's answer is accepted and run without another
// poll. Here a stand-in engine offers t1 to the first poll and t2 with
// t1's result; t2's result gets no task.
func TestWorkerTakesTheNextTaskWithTheResult(t *testing.T) {
	t.Parallel()
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, 30*time.Second)
	nc := l.Conn()
	const taskType = "chained"
	var polls atomic.Int32
	first := offerOnce(taskType)
	standInEngine(t, nc, taskType, func() (workers.PollReply, bool) {
		polls.Add(1)
		return first()
	}, func(*testing.T, *nats.Conn, string) {})
	requests := make(chan workers.ResultRequest, 4)
	accepted := make(chan offerAnswer, 1)
	// The polls made before t2's result: after it, t2's result gets no
	// task and the slot polls again.
	var pollsBeforeLast atomic.Int32
	sub, err := nc.Subscribe(workers.ResultSubject(taskType, ""), func(m *nats.Msg) {
		var req workers.ResultRequest
		_ = json.Unmarshal(m.Data, &req)
		if req.TaskID != "t1" {
			pollsBeforeLast.CompareAndSwap(0, polls.Load())
		}
		requests <- req
		reply := workers.ResultReply{OK: true, Next: &workers.PollReply{}}
		if req.TaskID != "t1" {
			body, _ := json.Marshal(reply)
			_ = m.Respond(body)
			return
		}
		reply.Next.Task = &conductor.Task{TaskID: "t2", WorkflowInstanceID: "wf2", TaskType: taskType, Status: conductor.TaskInProgress}
		body, _ := json.Marshal(reply)
		go offer(nc, m, body, "t2", accepted)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })

	var shown atomic.Int32 // results whose answer OnResult saw with a task in it
	ran, _ := runRecording(t, ctx, nc, workers.WorkerConfig{TaskType: taskType, WorkerID: "w1", PollWait: 20 * time.Second,
		OnResult: func(_ conductor.TaskResult, reply workers.ResultReply) {
			if reply.Next != nil {
				shown.Add(1)
			}
		}})
	for _, want := range []string{"t1", "t2"} {
		select {
		case id := <-ran:
			if id != want {
				t.Fatalf("ran %s, want %s", id, want)
			}
		case <-ctx.Done():
			t.Fatalf("%s never ran", want)
		}
	}
	if got := <-accepted; !got.accept {
		t.Fatal("the task offered with the result was refused")
	}
	for _, want := range []string{"t1", "t2"} {
		req := <-requests
		if req.TaskID != want || req.Next == nil || req.Next.PollID == "" || req.Next.WaitMs != 20000 {
			t.Fatalf("result of %s: next %+v, want the result of %s to wait 20 s under a poll id", req.TaskID, req.Next, want)
		}
	}
	if n := pollsBeforeLast.Load(); n != 1 {
		t.Fatalf("%d polls before t2's result, want 1: t2 came with t1's result", n)
	}
	if n := shown.Load(); n != 0 {
		t.Fatalf("OnResult saw %d answers with the next task in them: its input is resolved, never for a callback", n)
	}
}

// A worker whose credentials' principal may no longer take its tasks is
// told so (forbidden), and stops: Run returns the refusal, where other
// errors have it poll again.
func TestWorkerStopsWhenForbidden(t *testing.T) {
	t.Parallel()
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, 30*time.Second)
	nc := l.Conn()
	const taskType = "revoked"
	var polls atomic.Int32
	standInEngine(t, nc, taskType, func() (workers.PollReply, bool) {
		polls.Add(1)
		return workers.PollReply{Error: &workers.Error{Code: workers.CodeForbidden, Message: "no longer has the WORKER role"}}, true
	}, okResults)
	_, done := runRecording(t, ctx, nc, workers.WorkerConfig{TaskType: taskType, PollWait: time.Second, Concurrency: 2})
	select {
	case err := <-done:
		var pe *workers.Error
		if !errors.As(err, &pe) || pe.Code != workers.CodeForbidden {
			t.Fatalf("Run returned %v, want the refusal", err)
		}
	case <-ctx.Done():
		t.Fatalf("the worker went on polling: %d polls", polls.Load())
	}
}

// A worker whose connection closes for good (it ran out of reconnection
// attempts) stops, Run returning nats.ErrConnectionClosed, instead of
// polling a connection that never comes back: it looked alive and took no
// task. A task it was running when the connection closed is finished
// first.
func TestWorkerStopsWhenItsConnectionCloses(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		engine  bool // an engine offers a task, running when the connection closes
		handled int32
	}{
		{name: "polling", engine: false, handled: 0},
		{name: "running a task", engine: true, handled: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l := testutil.OpenLog(t, "")
			ctx := testutil.Context(t, 30*time.Second)
			const taskType = "cut_off"
			var polls atomic.Int32
			offers := offerOnce(taskType)
			standInEngine(t, l.Conn(), taskType, func() (workers.PollReply, bool) {
				polls.Add(1)
				if !tc.engine {
					return workers.PollReply{}, false // holds the poll, as an engine with nothing queued
				}
				return offers()
			}, okResults)
			nc, err := l.ConnectInProcess()
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			running, release := make(chan struct{}), make(chan struct{})
			var handled atomic.Int32
			done := runWorker(t, ctx, nc, workers.WorkerConfig{TaskType: taskType, PollWait: time.Second, RequestTimeout: time.Second, Concurrency: 2},
				func(context.Context, *conductor.Task) (workers.Output, error) {
					close(running)
					<-release
					handled.Add(1)
					return workers.Output{}, nil
				})
			if tc.engine {
				<-running
			}
			testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() error {
				if polls.Load() < 2 {
					return errors.New("the worker's slots are not polling yet")
				}
				return nil
			})
			nc.Close()
			close(release)
			select {
			case err := <-done:
				if !errors.Is(err, nats.ErrConnectionClosed) || handled.Load() != tc.handled {
					t.Fatalf("Run returned %v with %d tasks handled, want the closed connection after %d", err, handled.Load(), tc.handled)
				}
			case <-ctx.Done():
				t.Fatal("the worker went on polling a closed connection")
			}
		})
	}
}

// Connect's connection reconnects for ever: nats.go's default gives up
// after 60 attempts 2 s apart, shorter than a restart whose read models
// take long to catch up, and leaves a worker without a connection for
// good. An option given to Connect still wins.
func TestConnectReconnectsForEver(t *testing.T) {
	t.Parallel()
	url := testutil.StartNATS(t, t.TempDir(), 0).ClientURL()
	creds := userCreds(t)
	for _, tc := range []struct {
		name string
		opts []nats.Option
		want int
	}{
		{name: "default", want: -1},
		{name: "caller's", opts: []nats.Option{nats.MaxReconnects(5)}, want: 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nc, err := workers.Connect(url, creds, tc.opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			if nc.Opts.MaxReconnect != tc.want {
				t.Fatalf("MaxReconnect = %d, want %d", nc.Opts.MaxReconnect, tc.want)
			}
		})
	}
}

// userCreds is a .creds file of a new user signed by a new account (a test
// server without authentication takes any).
func userCreds(t *testing.T) []byte {
	t.Helper()
	account, err := nkeys.CreateAccount()
	if err != nil {
		t.Fatal(err)
	}
	user, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := user.PublicKey()
	token, err := jwt.NewUserClaims(pub).Encode(account)
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := user.Seed()
	creds, err := jwt.FormatUserConfig(token, seed)
	if err != nil {
		t.Fatal(err)
	}
	return creds
}

// offerTwoTasks has a stand-in engine offer two tasks of taskType, t1 and
// t2, and nothing after them.
func offerTwoTasks(t *testing.T, nc *nats.Conn, taskType string) {
	var offered atomic.Int32
	standInEngine(t, nc, taskType, func() (workers.PollReply, bool) {
		n := offered.Add(1)
		if n > 2 {
			return workers.PollReply{}, false
		}
		return workers.PollReply{Task: &conductor.Task{TaskID: "t" + strconv.Itoa(int(n)), WorkflowInstanceID: "wf1",
			TaskType: taskType, Status: conductor.TaskInProgress}}, true
	}, okResults)
}

// A handler that panics fails its task, the panic's value as the reason,
// and the worker goes on: the slot takes its next task.
func TestHandlerPanicFailsTheTask(t *testing.T) {
	t.Parallel()
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, 30*time.Second)
	const taskType = "panicky"
	offerTwoTasks(t, l.Conn(), taskType)
	results := make(chan conductor.TaskResult, 4)
	cfg := workers.WorkerConfig{TaskType: taskType, PollWait: time.Second,
		OnResult: func(res conductor.TaskResult, _ workers.ResultReply) { results <- res }}
	runWorker(t, ctx, l.Conn(), cfg, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		if task.TaskID == "t1" {
			panic("boom")
		}
		return workers.Output{}, nil
	})
	for _, want := range []struct{ id, status, reason string }{
		{"t1", conductor.TaskFailed, "worker panic: boom"},
		{"t2", conductor.TaskCompleted, ""},
	} {
		select {
		case r := <-results:
			if r.TaskID != want.id || r.Status != want.status || r.ReasonForIncompletion != want.reason {
				t.Fatalf("result %s %s %q, want %s %s %q", r.TaskID, r.Status, r.ReasonForIncompletion, want.id, want.status, want.reason)
			}
		case <-ctx.Done():
			t.Fatalf("no result for %s", want.id)
		}
	}
}

// A panic in OnResult, the caller's code run on the slot's goroutine, ends
// neither the process nor the slot: the result was recorded already, and
// the slot takes its next task.
func TestOnResultPanicLeavesTheWorkerRunning(t *testing.T) {
	t.Parallel()
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, 30*time.Second)
	const taskType = "panicky-callback"
	offerTwoTasks(t, l.Conn(), taskType)
	results := make(chan string, 4)
	cfg := workers.WorkerConfig{TaskType: taskType, PollWait: time.Second,
		OnResult: func(res conductor.TaskResult, _ workers.ResultReply) {
			results <- res.TaskID
			if res.TaskID == "t1" {
				panic("callback boom")
			}
		}}
	runWorker(t, ctx, l.Conn(), cfg, func(context.Context, *conductor.Task) (workers.Output, error) {
		return workers.Output{}, nil
	})
	for _, want := range []string{"t1", "t2"} {
		select {
		case id := <-results:
			if id != want {
				t.Fatalf("result for %s, want %s", id, want)
			}
		case <-ctx.Done():
			t.Fatalf("no result for %s", want)
		}
	}
}
