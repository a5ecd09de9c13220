package e2e_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/internal/nodetest"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/workers"
)

const doubleFlow = `{"name":"double_it","tasks":[{"name":"double","taskReferenceName":"d","inputParameters":{"n":"${workflow.input.n}","fail":"${workflow.input.fail}"}}],
 "outputParameters":{"doubled":"${d.output.doubled}","by":"${d.output.by}"}}`

// A worker written in JavaScript from docs/worker-protocol.md, with only the
// NATS client packages, completes and fails tasks: taking announced tasks,
// waiting for tasks at an engine, and waiting for them with its results.
func TestNodeWorker(t *testing.T) {
	t.Parallel()
	dir := npmDir(t, filepath.Join("..", "workers", "testdata", "node"), "@nats-io/jetstream")
	for _, mode := range []string{"take", "poll", "chain"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			testNodeWorker(t, dir, mode)
		})
	}
}

func testNodeWorker(t *testing.T, dir, mode string) {
	e := newSecureEnv(t)
	e.register(doubleFlow)
	creds := e.workerCredentials("double")
	// The second has a priority: a worker that pulls the queue itself
	// gets it from the queue's consumer, one that waits at an engine from
	// its priority lane.
	ids := []string{
		e.start("double_it", map[string]any{"n": int64(1)}),
		e.must(http.StatusOK, "POST", "/api/workflow", conductor.StartWorkflowRequest{Name: "double_it",
			Input: map[string]any{"n": int64(21)}, Priority: 3}),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "worker.mjs")
	cmd.Dir = dir
	credsFile := filepath.Join(t.TempDir(), "double.creds")
	if err := os.WriteFile(credsFile, creds, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd.Env = append(os.Environ(), "NATS_URL="+e.node.Log().ClientURL(), "NATS_CREDS="+credsFile,
		"TASK_TYPE=double", "TASKS=3", "WORKER_ID=node-7", "MODE="+mode)
	type result struct {
		out []byte
		err error
	}
	finished := make(chan result, 1)
	go func() {
		out, err := cmd.CombinedOutput()
		finished <- result{out, err}
	}()
	// The last workflow starts while the worker starts up.
	ids = append(ids, e.start("double_it", map[string]any{"n": int64(5), "fail": true}))
	r := <-finished
	if r.err != nil || !strings.Contains(string(r.out), "done 3") {
		t.Fatalf("node worker: %v\n%s", r.err, r.out)
	}
	// The first two tasks were queued before the worker started: the
	// second comes with the first's result, at least.
	if none := strings.Contains(string(r.out), "chained 0"); none == (mode == "chain") {
		t.Fatalf("node worker in mode %s: %s", mode, r.out)
	}
	for i, want := range []float64{2, 42} {
		wf := e.waitStatus(ids[i], conductor.WorkflowCompleted)
		if wf.Output["doubled"] != want || wf.Output["by"] != "node" || wf.Tasks[0].WorkerID != "node-7" {
			t.Fatalf("workflow %d output %v worker %s", i, wf.Output, wf.Tasks[0].WorkerID)
		}
	}
	failed := e.waitStatus(ids[2], conductor.WorkflowFailed)
	if task := failed.Tasks[0]; task.Status != conductor.TaskFailedWithTerminalError || task.ReasonForIncompletion != "asked to fail" {
		t.Fatalf("failed task %+v", task)
	}
}

// workerCredentials signs in as a new application with the WORKER role
// and EXECUTE on taskTypes, and returns the NATS credentials it gets from
// POST /api/workers/credentials: a worker's way in on a secure node.
func (e *env) workerCredentials(taskTypes ...string) []byte {
	e.t.Helper()
	return e.workerCredentialsIn(nil, taskTypes...)
}

// workerCredentialsIn is workerCredentials for the queues of domains too.
func (e *env) workerCredentialsIn(domains []string, taskTypes ...string) []byte {
	e.t.Helper()
	principal, token := e.application("worker-"+strings.Join(taskTypes, "-")+"-"+strings.Join(domains, "-"), "WORKER")
	for _, typ := range taskTypes {
		e.grant(principal, "TASK_DEF", typ, "EXECUTE")
	}
	var c struct{ Creds string }
	if err := json.Unmarshal([]byte(e.as(token).must(http.StatusOK, "POST", "/api/workers/credentials",
		map[string]any{"taskTypes": taskTypes, "domains": domains, "name": principal})), &c); err != nil {
		e.t.Fatal(err)
	}
	return []byte(c.Creds)
}

// The Go SDK worker, connected with the credentials a secure node issued
// for its type, takes and completes its tasks over NATS.
func TestSecureGoWorkerOverNATS(t *testing.T) {
	t.Parallel()
	e := newSecureEnv(t)
	e.register(doubleFlow)
	nc, err := workers.Connect(e.node.Log().ClientURL(), e.workerCredentials("double"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	runWorker(t, nc, "double", 2, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		n, _ := task.InputData["n"].(float64)
		return workers.Output{Data: map[string]any{"doubled": n * 2, "by": "go"}}, nil
	})
	id := e.start("double_it", map[string]any{"n": int64(8)})
	wf := e.waitStatus(id, conductor.WorkflowCompleted)
	if wf.Output["doubled"] != float64(16) || wf.Output["by"] != "go" || wf.Tasks[0].WorkerID != "go-double" {
		t.Fatalf("output %v worker %s", wf.Output, wf.Tasks[0].WorkerID)
	}
}

// A Go SDK worker of a task domain, with credentials for that domain's
// queue, waits for the domain's tasks on the poll subject naming it, and
// completes them.
func TestSecureGoWorkerOfADomain(t *testing.T) {
	t.Parallel()
	e := newSecureEnv(t)
	e.register(doubleFlow)
	nc, err := workers.Connect(e.node.Log().ClientURL(), e.workerCredentialsIn([]string{"eu"}, "double"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	runWorkerConfig(t, nc, workers.WorkerConfig{TaskType: "double", Domain: "eu", WorkerID: "go-eu"},
		func(_ context.Context, task *conductor.Task) (workers.Output, error) {
			n, _ := task.InputData["n"].(float64)
			return workers.Output{Data: map[string]any{"doubled": n * 2, "by": task.Domain}}, nil
		})
	var ids []string
	for _, n := range []int64{3, 4} {
		ids = append(ids, e.must(http.StatusOK, "POST", "/api/workflow", map[string]any{"name": "double_it",
			"input": map[string]any{"n": n}, "taskToDomain": map[string]string{"double": "eu"}}))
	}
	for i, want := range []float64{6, 8} {
		wf := e.waitStatus(ids[i], conductor.WorkflowCompleted)
		if wf.Output["doubled"] != want || wf.Output["by"] != "eu" || wf.Tasks[0].WorkerID != "go-eu" {
			t.Fatalf("workflow %d: output %v worker %s", i, wf.Output, wf.Tasks[0].WorkerID)
		}
	}
}

// The node's NATS server refuses connections without credentials, with
// authentication on and with --insecure-dev alike.
func TestNATSRefusesAnonymous(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name  string
		start func(testing.TB) *env
	}{
		{"secure", newSecureEnv},
		{"insecure dev", newEnv},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := tt.start(t)
			nc, err := nats.Connect(e.node.Log().ClientURL(), nats.NoReconnect())
			if err == nil {
				nc.Close()
				t.Fatal("an anonymous connection was accepted")
			}
			if !errors.Is(err, nats.ErrAuthorization) {
				t.Fatalf("refused with %v, want an authorization violation", err)
			}
		})
	}
}

// A producer starts workflows by publishing; the message id makes a repeated
// publish start one workflow. A poison command is discarded and logged, and
// the commands after it still run.
func TestStartByPublishing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.register(`{"name":"published","tasks":[{"name":"h","taskReferenceName":"h","type":"WAIT"}]}`)
	// A producer, not a worker: engine credentials.
	js, err := jetstream.New(nodetest.EngineConn(t, e.node))
	if err != nil {
		t.Fatal(err)
	}
	ctx := testutil.Context(t, 30*time.Second)
	publish := func(subject, body, msgID string) {
		msg := &nats.Msg{Subject: subject, Data: []byte(body), Header: nats.Header{}}
		if msgID != "" {
			msg.Header.Set(jetstream.MsgIDHeader, msgID)
		}
		if _, err := js.PublishMsg(ctx, msg); err != nil {
			t.Fatal(err)
		}
	}
	publish("fv.cmd.start.published", "{not json", "")
	publish("fv.cmd.start.nonexistent", `{"input":{}}`, "")
	for i := 0; i < 3; i++ {
		publish("fv.cmd.start.published", `{"input":{"order":"o-77"},"correlationId":"c-77"}`, "order-77")
	}
	publish("fv.cmd.start.published", `{"name":"published","input":{"order":"o-78"}}`, "order-78")
	// With an idempotency key, the key decides: published again under
	// another message id, or none, it is one start.
	for _, msgID := range []string{"keyed-1", "keyed-2", ""} {
		publish("fv.cmd.start.published", `{"input":{"order":"o-79"},"idempotencyKey":"order-79","idempotencyStrategy":"FAIL"}`, msgID)
	}
	// A command the stream takes whose start record would be too large (its
	// input and the definition together): rejected for good, not retried
	// until the consumer gives up on it.
	e.register(`{"name":"published_big","description":"` + strings.Repeat("d", 16<<10) + `","tasks":[{"name":"h","taskReferenceName":"h","type":"WAIT"}]}`)
	pad := strings.Repeat("x", eventlog.DefaultConfig().MaxRecordBytes-2048)
	publish("fv.cmd.start.published_big", `{"input":{"pad":"`+pad+`"}}`, "too-large")
	publish("fv.cmd.start.published", `{"input":{"order":"o-80"},"priority":100}`, "bad-priority")

	for _, msgID := range []string{"order-77", "order-78"} {
		id := engine.DeriveID("start-command", msgID)
		testutil.Eventually(t, 20*time.Second, 50*time.Millisecond, func() error {
			if status, _ := e.do("GET", "/api/workflow/"+id, nil); status != 200 {
				return fmt.Errorf("workflow for %s: %d", msgID, status)
			}
			return nil
		})
	}
	e.waitCommandsConsumed()
	res := e.search("/api/workflow/search?query=" + urlEscape("workflowType = published"))
	keyed := 0
	for _, sum := range res.Results {
		if strings.Contains(sum.Input, "o-79") {
			keyed++
		}
	}
	if keyed != 1 {
		t.Fatalf("%d workflows started with idempotency key order-79, want 1", keyed)
	}
	wf := e.workflow(engine.DeriveID("start-command", "order-77"))
	if wf.Input["order"] != "o-77" || wf.CorrelationID != "c-77" {
		t.Fatalf("published workflow = %v %q", wf.Input, wf.CorrelationID)
	}
	// The commands stream is a work queue: everything was consumed, the
	// poison messages included.
	e.waitCommandsConsumed()
	for _, msgID := range []string{"too-large", "bad-priority"} {
		if recs, err := e.node.Log().ReadSubject(ctx, "fv.wf."+engine.DeriveID("start-command", msgID), 0); err != nil || len(recs) != 0 {
			t.Fatalf("the %s start: %d records, %v", msgID, len(recs), err)
		}
	}
}

// Garbage on a task subject and garbage results stop nothing.
func TestWorkerProtocolBadInput(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.register(doubleFlow)
	// Planting a poison dispatch message and asking about another queue
	// take more than a worker of "double" may: engine credentials.
	nc := nodetest.EngineConn(t, e.node)
	js, _ := jetstream.New(nc)
	ctx := testutil.Context(t, 30*time.Second)
	id := e.start("double_it", map[string]any{"n": int64(4)})
	// A poison dispatch message before the real one reaches the queue.
	if _, err := js.Publish(ctx, workers.DispatchSubject("double", ""), []byte("\x00garbage")); err != nil {
		t.Fatal(err)
	}
	request := func(subject string, body any) map[string]any {
		b, _ := json.Marshal(body)
		if s, ok := body.(string); ok {
			b = []byte(s)
		}
		m, err := nc.RequestWithContext(ctx, subject, b)
		if err != nil {
			t.Fatal(err)
		}
		var reply map[string]any
		if err := json.Unmarshal(m.Data, &reply); err != nil {
			t.Fatalf("reply is not JSON: %s", m.Data)
		}
		return reply
	}
	wf := e.workflow(id)
	task := wf.Tasks[0]
	tests := []struct {
		name    string
		subject string
		body    any
		code    string
	}{
		{"result not JSON", workers.ResultSubject("double", ""), "garbage", "invalid"},
		{"result without ids", workers.ResultSubject("double", ""), map[string]any{"status": "COMPLETED"}, "invalid"},
		{"result bad status", workers.ResultSubject("double", ""), map[string]any{"taskId": task.TaskID, "workflowInstanceId": id, "status": "BANANA"}, "invalid"},
		{"result on another queue", workers.ResultSubject("triple", ""), map[string]any{"taskId": task.TaskID, "workflowInstanceId": id, "status": "COMPLETED"}, "not_found"},
		{"take unknown task", workers.TakeSubject("double", ""), map[string]any{"taskId": "nope", "workflowInstanceId": id}, "not_found"},
		{"take unknown workflow", workers.TakeSubject("double", ""), map[string]any{"taskId": "nope", "workflowInstanceId": "nope"}, "not_found"},
		{"take garbage", workers.TakeSubject("double", ""), "[]", "invalid"},
	}
	for _, tt := range tests {
		reply := request(tt.subject, tt.body)
		errObj, _ := reply["error"].(map[string]any)
		if errObj == nil || errObj["code"] != tt.code {
			t.Errorf("%s: reply %v, want error code %s", tt.name, reply, tt.code)
		}
	}
	// A take whose answer would go anywhere but an inbox is not made:
	// aimed at the workflow's own log, or at nobody.
	take, _ := json.Marshal(map[string]any{"taskId": task.TaskID, "workflowInstanceId": id, "workerId": "aimer"})
	for _, reply := range []string{"fv.wf." + id, ""} {
		if err := nc.PublishMsg(&nats.Msg{Subject: workers.TakeSubject("double", ""), Reply: reply, Data: take}); err != nil {
			t.Fatal(err)
		}
	}
	request(workers.TakeSubject("double", ""), "[]") // a round trip after them
	if got := e.workflow(id).Tasks[0].Status; got != conductor.TaskScheduled {
		t.Fatalf("task is %s after garbage, want SCHEDULED", got)
	}
	// A real worker still gets the task past the poison dispatch message.
	e.work("double", 1, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		return workers.Output{Data: map[string]any{"doubled": task.InputData["n"].(float64) * 2}}, nil
	})
	if wf := e.waitStatus(id, conductor.WorkflowCompleted); wf.Output["doubled"] != float64(8) {
		t.Fatalf("output %v", wf.Output)
	}
}

// A producer's credentials start the workflows they name, as the producer:
// the start subject carries its principal, its credentials allow no other,
// and a creator named in the body is ignored. Another workflow's subject
// and another principal's are refused by NATS, and a request on its own
// subject for another workflow is discarded.
func TestProducerStartsAsItself(t *testing.T) {
	t.Parallel()
	e := newSecureEnv(t)
	e.register(`{"name":"pub_flow","tasks":[{"name":"h","taskReferenceName":"h","type":"WAIT"}]}`)
	e.register(`{"name":"other_flow","tasks":[{"name":"h","taskReferenceName":"h","type":"WAIT"}]}`)
	principal, token := e.application("producer")
	e.grant(principal, "WORKFLOW_DEF", "pub_flow", "EXECUTE")
	refusals := make(chan error, 8)
	nc, js := e.producer(token, []string{"pub_flow"},
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { refusals <- err }))
	ctx := testutil.Context(t, 30*time.Second)
	publish := func(subject, body, msgID string) {
		t.Helper()
		msg := &nats.Msg{Subject: subject, Data: []byte(body), Header: nats.Header{jetstream.MsgIDHeader: []string{msgID}}}
		if _, err := js.PublishMsg(ctx, msg); err != nil {
			t.Fatalf("publish to %s: %v", subject, err)
		}
	}
	publish(workers.StartSubject("pub_flow", principal), `{"input":{"k":"v"},"createdBy":"app:bootstrap-admin"}`, "p-1")
	publish(workers.StartSubject("pub_flow", principal), `{"name":"other_flow"}`, "p-2")
	id := engine.DeriveID("start-command", principal, "p-1")
	testutil.Eventually(t, 20*time.Second, 50*time.Millisecond, func() error {
		if status, _ := e.do("GET", "/api/workflow/"+id, nil); status != http.StatusOK {
			return fmt.Errorf("workflow %s: %d", id, status)
		}
		return nil
	})
	if wf := e.workflow(id); wf.CreatedBy != principal || wf.WorkflowName != "pub_flow" || wf.Input["k"] != "v" {
		t.Fatalf("started %s by %q with %v, want pub_flow by %s", wf.WorkflowName, wf.CreatedBy, wf.Input, principal)
	}

	for _, subject := range []string{workers.StartSubject("other_flow", principal), workers.StartSubject("pub_flow", "app:bootstrap-admin"),
		"fv.cmd.start.pub_flow"} {
		if err := nc.Publish(subject, []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-refusals:
			if !strings.Contains(err.Error(), "Permissions Violation") || !strings.Contains(err.Error(), subject) {
				t.Fatalf("publish to %s: %v", subject, err)
			}
		case <-ctx.Done():
			t.Fatalf("publish to %s was not refused", subject)
		}
	}
	// Everything published was consumed; the request for another workflow
	// started nothing.
	e.waitCommandsConsumed()
	if status, _ := e.do("GET", "/api/workflow/"+engine.DeriveID("start-command", principal, "p-2"), nil); status != http.StatusNotFound {
		t.Fatalf("a request for other_flow on pub_flow's subject started a workflow (%d)", status)
	}
	if n := e.searchCount("workflowType IN (other_flow)"); n != 0 {
		t.Fatalf("%d other_flow workflows started", n)
	}
}

// producer connects with credentials issued to the holder of token for
// starting workflows by publishing, closed when the test ends.
func (e *env) producer(token string, workflows []string, opts ...nats.Option) (*nats.Conn, jetstream.JetStream) {
	e.t.Helper()
	var c struct{ Creds string }
	if err := json.Unmarshal([]byte(e.as(token).must(http.StatusOK, "POST", "/api/workers/credentials",
		map[string]any{"startWorkflows": workflows})), &c); err != nil {
		e.t.Fatal(err)
	}
	nc, err := workers.Connect(e.node.Log().ClientURL(), []byte(c.Creds), opts...)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		e.t.Fatal(err)
	}
	return nc, js
}

// waitCommandsConsumed waits until the engine consumed every start command
// (FV_CMD is a work queue).
func (e *env) waitCommandsConsumed() { e.waitCommandsLeft(0) }

// waitCommandsLeft waits until the command stream holds left commands
// (those nobody consumes): a handled command goes once it is answered.
func (e *env) waitCommandsLeft(left uint64) {
	e.t.Helper()
	ctx := testutil.Context(e.t, 10*time.Second)
	testutil.Eventually(e.t, 10*time.Second, 50*time.Millisecond, func() error {
		s, err := e.node.Log().JetStream().Stream(ctx, "FV_CMD")
		if err != nil {
			return err
		}
		info, err := s.Info(ctx)
		if err != nil {
			return err
		}
		if info.State.Msgs != left {
			return fmt.Errorf("%d commands left, want %d", info.State.Msgs, left)
		}
		return nil
	})
}

// A Go SDK worker that stops leaves no poll waiting at the engine: its next
// task goes straight to the worker that runs, handed out once. (A poll
// left waiting would be offered the task first, and behind the workers
// account's boundary the engine cannot tell that nobody listens: the task
// would go out again only after the offer timeout, under a second lease.)
func TestStoppedWorkerLeavesNoPollBehind(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.register(doubleFlow)
	run := func(workerID string) (stop func()) {
		w, err := workers.NewWorker(e.connect("double"), workers.WorkerConfig{TaskType: "double", Concurrency: 4,
			WorkerID: workerID, PollWait: 25 * time.Second, Logger: testutil.Logger(t)},
			func(_ context.Context, task *conductor.Task) (workers.Output, error) {
				return workers.Output{Data: map[string]any{"doubled": 2.0, "by": workerID}}, nil
			})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- w.Run(ctx) }()
		return func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("worker %s: %v", workerID, err)
			}
		}
	}
	stopFirst := run("first")
	// Its polls wait at the engine once the poll data names it.
	testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() error {
		if body := e.must(http.StatusOK, "GET", "/api/tasks/queue/polldata?taskType=double", nil); !strings.Contains(body, `"workerId":"first"`) {
			return fmt.Errorf("poll data %s", body)
		}
		return nil
	})
	stopFirst()
	t.Cleanup(run("second"))

	wf := e.waitStatus(e.start("double_it", map[string]any{"n": 1}), conductor.WorkflowCompleted)
	if task := wf.Tasks[0]; task.WorkerID != "second" || task.PollCount != 1 {
		t.Fatalf("task run by %q under lease %d, want the running worker's first", task.WorkerID, task.PollCount)
	}
}

// A handler that runs past its task's response timeout keeps the task:
// the Go SDK extends the lease over NATS while the handler runs, and each
// extension moves the engine's timeout. Without them the task would time
// out after 2 seconds and run again, twice, and the workflow would fail.
func TestGoWorkerExtendsTheLeaseOfALongTask(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.must(http.StatusNoContent, "POST", "/api/metadata/taskdefs",
		`[{"name":"long","retryCount":1,"retryDelaySeconds":0,"timeoutSeconds":0,"responseTimeoutSeconds":2}]`)
	e.register(`{"name":"long_run","version":1,"tasks":[{"name":"long","taskReferenceName":"l"}]}`)
	runs := newCounter()
	e.work("long", 1, func(ctx context.Context, task *conductor.Task) (workers.Output, error) {
		runs.add(task.TaskID)
		select {
		case <-time.After(5 * time.Second): // two and a half response timeouts
		case <-ctx.Done():
			return workers.Output{}, ctx.Err()
		}
		return workers.Output{Data: map[string]any{"done": true}}, nil
	})
	id := e.start("long_run", nil)
	wf := e.waitStatus(id, conductor.WorkflowCompleted)
	if len(wf.Tasks) != 1 || wf.Tasks[0].Status != conductor.TaskCompleted || wf.Tasks[0].RetryCount != 0 || wf.Tasks[0].PollCount != 1 {
		t.Fatalf("tasks %+v, want the first run completed under its first lease", wf.Tasks)
	}
	if runs.total() != 1 {
		t.Fatalf("the handler ran %d times, want once", runs.total())
	}
}

// The audit trail names the NATS credentials that took a task with a
// secret: the user's public key as the NATS server vouches for it (the
// nats.credentials fact says who was issued them), whatever worker id the
// worker gives itself.
func TestTrailNamesTheNATSCredentialsThatTookTheSecret(t *testing.T) {
	t.Parallel()
	e := newSecureEnv(t)
	e.putSecret("nats_taken", "nats-taken-value-6e03")
	// The second task is taken for the poll its worker's first result
	// carries.
	e.register(`{"name":"nt_flow","tasks":[{"name":"nt_task","taskReferenceName":"t1","inputParameters":{"k":"${workflow.secrets.nats_taken}"}},
	  {"name":"nt_task","taskReferenceName":"t2","inputParameters":{"k":"${workflow.secrets.nats_taken}"}}]}`)
	creds := e.workerCredentials("nt_task")
	token, err := jwt.ParseDecoratedJWT(creds)
	if err != nil {
		t.Fatal(err)
	}
	claims, err := jwt.DecodeUserClaims(token)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := workers.Connect(e.node.Log().ClientURL(), creds)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	got := make(chan any, 2)
	runWorker(t, nc, "nt_task", 1, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		got <- task.InputData["k"]
		return workers.Output{}, nil
	})
	e.waitStatus(e.start("nt_flow", nil), conductor.WorkflowCompleted)
	for range 2 {
		if v := <-got; v != "nats-taken-value-6e03" {
			t.Fatalf("the worker got %v", v)
		}
	}
	all := e.resolutionsOf("nats_taken")
	if len(all) != 2 {
		t.Fatalf("%d resolutions in the trail, want 2: %+v", len(all), all)
	}
	for _, en := range all {
		if en.Detail["taken_by"] != "nats:"+claims.Subject || en.Detail["worker"] != "go-nt_task" {
			t.Fatalf("the resolution's entry: %+v, want it taken by nats:%s", en, claims.Subject)
		}
	}
}

// Producers' message ids are their own: two producers that publish under
// the same Nats-Msg-Id (both numbering their requests from 1) each start
// their workflow, and each is told its request was stored, not a
// duplicate. The stream's duplicate window, which keys on the id alone,
// dropped the second producer's request and answered it "duplicate",
// which JetStream clients take for success. The same producer publishing
// its id again is still answered "duplicate" and starts nothing more.
func TestProducersShareNoMessageIDs(t *testing.T) {
	t.Parallel()
	e := newSecureEnv(t)
	e.register(`{"name":"pub_flow","tasks":[{"name":"h","taskReferenceName":"h","type":"WAIT"}]}`)
	ctx := testutil.Context(t, 30*time.Second)
	publish := func(js jetstream.JetStream, principal string) *jetstream.PubAck {
		t.Helper()
		msg := &nats.Msg{Subject: workers.StartSubject("pub_flow", principal), Data: []byte(`{"input":{"by":"` + principal + `"}}`),
			Header: nats.Header{jetstream.MsgIDHeader: []string{"1"}}}
		ack, err := js.PublishMsg(ctx, msg)
		if err != nil {
			t.Fatalf("%s publishes: %v", principal, err)
		}
		if ack.Stream != "FV_CMD" {
			t.Fatalf("%s's acknowledgement names stream %q", principal, ack.Stream)
		}
		return ack
	}
	var producers []string
	var streams []jetstream.JetStream
	for _, name := range []string{"producer_a", "producer_b"} {
		principal, token := e.application(name)
		e.grant(principal, "WORKFLOW_DEF", "pub_flow", "EXECUTE")
		_, js := e.producer(token, []string{"pub_flow"})
		producers, streams = append(producers, principal), append(streams, js)
	}
	for i, principal := range producers {
		if ack := publish(streams[i], principal); ack.Duplicate {
			t.Errorf("%s's first request was answered as a duplicate", principal)
		}
	}
	if ack := publish(streams[1], producers[1]); !ack.Duplicate {
		t.Errorf("%s's request published again was not answered as a duplicate", producers[1])
	}
	e.waitCommandsConsumed()
	for _, principal := range producers {
		id := engine.DeriveID("start-command", principal, "1")
		if wf := e.waitStatus(id, conductor.WorkflowRunning); wf.CreatedBy != principal || wf.Input["by"] != principal {
			t.Errorf("workflow %s: started by %q with %v, want %s's", id, wf.CreatedBy, wf.Input, principal)
		}
	}
	if n := e.searchCount("workflowType IN (pub_flow)"); n != 2 {
		t.Fatalf("%d pub_flow workflows started, want 2", n)
	}
}
