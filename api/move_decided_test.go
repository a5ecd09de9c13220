package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowvault/flowvault/api"
	"github.com/flowvault/flowvault/auth"
	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/executor"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// laggingModel is the executions read model as the engine knows each
// workflow, but for those held at an earlier state: a read model behind.
type laggingModel struct {
	e    *executor.Executor
	mu   sync.Mutex
	held map[string]*engine.Workflow
}

func (m *laggingModel) hold(w *engine.Workflow) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.held[w.ID] = w
}

func (m *laggingModel) catchUp(id string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.held, id)
}

func (m *laggingModel) Workflow(ctx context.Context, id string) (*engine.Workflow, error) {
	m.mu.Lock()
	w := m.held[id]
	m.mu.Unlock()
	if w != nil {
		return w, nil
	}
	w, err := m.e.State(ctx, id)
	if err == nil && w == nil {
		err = fault.NotFound("workflow %s not found", id)
	}
	return w, err
}

// knownPrincipals reads principals by id, as the auth store does: the
// rest of the store is not asked.
type knownPrincipals struct {
	api.AuthStore
	principals map[string]auth.Principal
}

func (k knownPrincipals) Principal(_ context.Context, id string) (auth.Principal, error) {
	p, ok := k.principals[id]
	if !ok {
		return auth.Principal{}, fault.NotFound("principal %s not found", id)
	}
	return p, nil
}

// An upgrade, or a restart onto the latest definition, is decided for
// everyone the workflow runs as, as the read model shows them. Bob joined
// the user's workflow (a variables update of his) where the read model
// has not caught up yet: the user's move onto version 2 was decided for
// the user alone, and is refused as stale (409, retryable), the workflow
// left on version 1, where it moved the workflow onto a definition bob,
// who runs it from then on, was never asked about. Asked again once the
// read model caught up, bob is asked, and may not start it (403).
func TestMoveRefusedWhenSomeoneJoinedSinceItsCheck(t *testing.T) {
	t.Parallel()
	const bob = "bob@example.com"
	ctx := testutil.Context(t, time.Minute)
	l, md := openMetadata(t)
	e := executor.New(l, md, nil, executor.Config{Logger: testutil.Logger(t)})
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Stop)
	model := &laggingModel{e: e, held: map[string]*engine.Workflow{}}
	authz := auth.NewAuthorizer(&fixedGrants{})
	authz.Register(auth.TargetWorkflowDef, definitionSource{md})
	srv := httptest.NewServer(api.New(api.Deps{
		Logger:      testutil.Logger(t),
		Engine:      e,
		Executions:  model,
		Metadata:    md,
		Definitions: md,
		Authorizer:  authz,
		Auth:        knownPrincipals{principals: map[string]auth.Principal{bob: {ID: bob}}},
		Tokens:      tokenPrincipals{"user-token": {ID: pinUser, Roles: []string{auth.RoleUser}}},
	}))
	t.Cleanup(srv.Close)
	user := client{t, srv.URL, "user-token"}

	register := func(version int) {
		t.Helper()
		var def conductor.WorkflowDef
		js := fmt.Sprintf(`{"name":"moved","version":%d,"tasks":[{"name":"w","taskReferenceName":"w","type":"WAIT"}]}`, version)
		if err := conductor.Unmarshal([]byte(js), &def); err != nil {
			t.Fatal(err)
		}
		if err := md.RegisterWorkflowDef(ctx, &def, true, pinUser); err != nil {
			t.Fatal(err)
		}
	}
	register(1)
	rows := []struct {
		op, path, body string
		bulk           bool // answered in a bulk response's body
	}{
		{"restart", "/api/workflow/%s/restart?useLatestDefinitions=true", "", false},
		{"upgrade", "/api/workflow/%s/upgrade", `{"name":"moved"}`, false},
		{"restart", "/api/workflow/bulk/restart?useLatestDefinitions=true", `["%s"]`, true},
	}
	ids := make([]string, len(rows))
	for i, tt := range rows {
		got := user.do("POST", "/api/workflow/moved", "{}")
		if got.status != http.StatusOK {
			t.Fatalf("start = %d %s", got.status, got.body)
		}
		ids[i] = got.body
		read, err := e.State(ctx, ids[i])
		if err != nil {
			t.Fatal(err)
		}
		model.hold(read)
		if _, err := e.Submit(ctx, ids[i], engine.SetVariables{Variables: map[string]any{"k": 1}, By: bob}, executor.Meta{}); err != nil {
			t.Fatal(err)
		}
		if tt.op == "restart" {
			if _, err := e.Submit(ctx, ids[i], engine.Terminate{Reason: "done"}, executor.Meta{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	register(2)

	version := func(id string) int {
		t.Helper()
		w, err := e.State(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return w.Version
	}
	// ask asks tt of workflow id, and returns its refusal's status
	// (bulk: 200), message and retryable, or a message of "" where it
	// passed.
	ask := func(i int) (int, string, bool) {
		tt, id := rows[i], ids[i]
		path, body := fmt.Sprintf(tt.path, id), tt.body
		if tt.bulk {
			path, body = tt.path, fmt.Sprintf(tt.body, id)
		}
		got := user.do("POST", path, body)
		if tt.bulk {
			var res conductor.BulkResponse
			if err := json.Unmarshal([]byte(got.body), &res); err != nil {
				t.Fatalf("bulk %s: %d %s", tt.op, got.status, got.body)
			}
			return got.status, res.BulkErrorResults[id], false
		}
		var answer conductor.ErrorResponse
		if got.status >= 300 {
			_ = json.Unmarshal([]byte(got.body), &answer)
		}
		return got.status, answer.Message, answer.Retryable
	}
	for i, tt := range rows {
		id, wantStatus := ids[i], map[bool]int{false: http.StatusConflict, true: http.StatusOK}[tt.bulk]
		status, msg, retryable := ask(i)
		if status != wantStatus || !strings.Contains(msg, "since its "+tt.op+" was checked") || retryable == tt.bulk {
			t.Errorf("%s of %s (bulk %v), decided before bob joined: %d %q (retryable %v), want %d, stale",
				tt.op, id, tt.bulk, status, msg, retryable, wantStatus)
		}
		if v := version(id); v != 1 {
			t.Errorf("%s of %s (bulk %v), decided before bob joined: it runs version %d, want 1", tt.op, id, tt.bulk, v)
		}
		model.catchUp(id)
		wantStatus = map[bool]int{false: http.StatusForbidden, true: http.StatusOK}[tt.bulk]
		if status, msg, _ := ask(i); status != wantStatus || !strings.Contains(msg, "runs as "+bob) {
			t.Errorf("%s of %s (bulk %v) asked again: %d %q, want %d naming bob", tt.op, id, tt.bulk, status, msg, wantStatus)
		}
		if v := version(id); v != 1 {
			t.Errorf("%s of %s (bulk %v) asked again: it runs version %d, want 1", tt.op, id, tt.bulk, v)
		}
	}
}
