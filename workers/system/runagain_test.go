package system_test

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/workers/system"
)

// An HTTP task run again with the same task id (its engine died before
// its result was recorded: another runs it when its lease expires) calls
// again, as Conductor's does: at least once. What the receiver may
// deduplicate by is in the request, when the workflow puts it there: a
// header of ${CPEWF_TASK_ID}, the same on every run of the task (the
// hand-off resolves it to the id this test passes as it).
func TestHTTPRunAgainCallsAgain(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var keys []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		keys = append(keys, r.Header.Get("Idempotency-Key"))
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	task := &conductor.Task{TaskID: "task-1", ReferenceTaskName: "charge", TaskType: conductor.TaskTypeHTTP, WorkflowInstanceID: "wf-1",
		InputData: map[string]any{"http_request": map[string]any{"uri": srv.URL, "method": "POST",
			"headers": map[string]any{"Idempotency-Key": "task-1"}}}}
	ctx := testutil.Context(t, 30*time.Second)
	for range 2 {
		if res := (system.HTTP{}).Execute(ctx, task); res.Status != conductor.TaskCompleted {
			t.Fatalf("HTTP: %s %q", res.Status, res.ReasonForIncompletion)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(keys) != 2 || keys[0] != "task-1" || keys[1] != "task-1" {
		t.Fatalf("the receiver got %q, want two calls with the key task-1", keys)
	}
}

// An EVENT run again with the same task id publishes again, with the
// same message id (the task's): a subscriber gets it twice (at least
// once, as Conductor's), a stream recording the subject keeps one copy
// while its duplicate window lasts. JetStream's default window is
// shorter than the lease after which the task runs again: the README
// tells whoever records events to set a longer one.
func TestEventRunAgainPublishesOneMessageID(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, 30*time.Second)
	l := testutil.OpenLog(t, "")
	nc := l.Conn()
	stream, err := l.JetStream().CreateStream(ctx, jetstream.StreamConfig{Name: "ORDERS", Subjects: []string{"orders.>"}})
	if err != nil {
		t.Fatal(err)
	}
	sub, err := nc.SubscribeSync("orders.created")
	if err != nil {
		t.Fatal(err)
	}
	task := eventTask(map[string]any{"sink": "nats:orders.created", "order": 7})
	for range 2 {
		if res := (system.Event{Conn: nc}).Execute(ctx, task); res.Status != conductor.TaskCompleted {
			t.Fatalf("EVENT: %s %q", res.Status, res.ReasonForIncompletion)
		}
	}
	for i := range 2 {
		if _, err := sub.NextMsg(10 * time.Second); err != nil {
			t.Fatalf("event %d to the subscriber: %v", i+1, err)
		}
	}
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 {
		t.Errorf("the stream keeps %d copies of the event, want 1", info.State.Msgs)
	}
	if info.Config.Duplicates >= engine.SystemTaskLease {
		t.Errorf("JetStream's default duplicate window is %s, no longer shorter than the %s lease: the README's advice is moot",
			info.Config.Duplicates, engine.SystemTaskLease)
	}
}
