package node

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flowvault/flowvault/auth"
	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/executor"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/metadata"
	"github.com/flowvault/flowvault/natsauth"
	"github.com/flowvault/flowvault/projections"
	"github.com/flowvault/flowvault/projections/executions"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/secrets"
	"github.com/flowvault/flowvault/workers"
)

// Credentials revoked in the log are refused by the engines' take check
// even while the server still admits their connection: the gate applies
// the revocation list to the server when it syncs, which may fail (its
// error is only logged, and the next try waits for the next change or
// an hour) or come after the engine's read model. Their takes and
// results are answered forbidden, not served, and their start requests
// are refused, not stored.
func TestRevokedCredentialsLeftConnectedTakeNothing(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, 60*time.Second)
	mk := secrets.GenerateMasterKey()
	t.Cleanup(mk.Wipe)
	authority, err := natsauth.New(mk)
	if err != nil {
		t.Fatal(err)
	}
	cfg := testutil.LogConfig(t.TempDir())
	cfg.Listen = "127.0.0.1:0"
	l, err := eventlog.Open(ctx, cfg, eventlog.Options{Auth: authority})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	// Opened once, as a node's first sync does; no gate follows the
	// revocation below, as none that failed to sync would.
	if err := authority.Admit(l.EmbeddedServer(), nil); err != nil {
		t.Fatal(err)
	}
	store := testutil.OpenStore(t)
	runner := testutil.RunProjection(t, l, store, natsauth.Projection{}, projections.RunnerConfig{Stream: eventlog.Audit.Name})
	ledger := natsauth.NewLedger(store)
	issuer := natsauth.NewIssuer(authority, l, natsauth.IssuerConfig{ReadModel: runner})

	const principal, taskType = "app:worker", "rv_task"
	authz := workflowAuthorizer{
		principals: fakePrincipals{principal: {ID: principal, Roles: []string{auth.RoleWorker}}},
		authz: auth.NewAuthorizer(fakeGrants{{Subject: auth.Subject{Type: auth.SubjectUser, ID: principal},
			Target: auth.Target{Type: auth.TargetTaskDef, ID: taskType}, Access: []auth.Access{auth.Execute}}}),
	}
	e := executor.New(l, metadata.New(l, store, nil, metadata.Options{}), executions.NewReader(store), executor.Config{Logger: testutil.Logger(t)})
	e.SetTakeCheck(func(ctx context.Context, taker, taskType, domain string) error {
		return authz.workerMayTake(ctx, ledger, func(string) bool { return false }, taker, taskType, domain)
	})
	e.SetSenderCheck(func(_ context.Context, sender string) error {
		_, _, err := authz.liveCredentials(ledger, func(string) bool { return false }, sender)
		return err
	})
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Stop)

	creds, err := issuer.IssueWorker(ctx, principal, natsauth.WorkerSpec{TaskTypes: []string{taskType},
		StartWorkflows: []string{"rv_flow"}, Principal: principal}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(l.ClientURL(), append(creds.Options(), nats.Timeout(15*time.Second), nats.NoReconnect())...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	// The refusal comes before the task is looked for: a task that does
	// not exist tells an admitted sender (not_found) from a refused one.
	take, _ := json.Marshal(workers.TakeRequest{TaskID: "no-task", WorkflowInstanceID: "no-wf", WorkerID: "w"})
	result, _ := json.Marshal(workers.ResultRequest{TaskResult: conductor.TaskResult{TaskID: "no-task", WorkflowInstanceID: "no-wf",
		Status: conductor.TaskCompleted}})
	answer := func(subject string, body []byte) string {
		t.Helper()
		reply, err := nc.Request(subject, body, 15*time.Second)
		if err != nil {
			t.Fatalf("%s: %v", subject, err)
		}
		var r struct{ Error *workers.Error }
		if err := json.Unmarshal(reply.Data, &r); err != nil || r.Error == nil {
			t.Fatalf("%s: answered %s", subject, reply.Data)
		}
		return r.Error.Code
	}
	if got := answer(workers.TakeSubject(taskType, ""), take); got != workers.CodeNotFound {
		t.Fatalf("take before the revocation: %s, want %s", got, workers.CodeNotFound)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	start := func() error {
		_, err := js.Publish(ctx, workers.StartSubject("rv_flow", principal), []byte(`{}`))
		return err
	}
	if err := start(); err != nil {
		t.Fatalf("start before the revocation: %v", err)
	}

	if err := issuer.RevokeWorker(ctx, principal, creds.User); err != nil {
		t.Fatal(err)
	}
	if !nc.IsConnected() {
		t.Fatal("the connection closed: nothing here applies the revocation list")
	}
	for _, req := range []struct {
		subject string
		body    []byte
	}{
		{workers.TakeSubject(taskType, ""), take},
		{workers.ResultSubject(taskType, ""), result},
	} {
		if got := answer(req.subject, req.body); got != workers.CodeForbidden {
			t.Errorf("%s of revoked credentials: %s, want %s", req.subject, got, workers.CodeForbidden)
		}
	}
	// Refused before anything is stored: not a request whose
	// acknowledgement may have been lost, to be published again.
	var refused *jetstream.APIError
	if err := start(); !errors.As(err, &refused) || refused.Code != http.StatusForbidden ||
		!strings.HasPrefix(refused.Description, "start request refused: ") {
		t.Errorf("start of revoked credentials: %v, want \"start request refused: …\" (403)", err)
	}
}
