package api_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flowvault/flowvault/api"
	"github.com/flowvault/flowvault/auth"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/metadata"
	"github.com/flowvault/flowvault/projections/executions/query"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// failingLookup is the API's definition lookup, which fails, as a lookup
// the read model cannot answer and the log does not either, once failing
// is set.
type failingLookup struct {
	*metadata.Store
	failing *atomic.Bool
}

func (f failingLookup) LookupWorkflowDef(ctx context.Context, name string, version *int) (*conductor.WorkflowDef, error) {
	if f.failing.Load() {
		return nil, errors.New("nats: connection closed")
	}
	return f.Store.LookupWorkflowDef(ctx, name, version)
}

func (f failingLookup) ListWorkflowDefs(ctx context.Context) ([]*conductor.WorkflowDef, error) {
	if f.failing.Load() {
		return nil, errors.New("nats: connection closed")
	}
	return f.Store.ListWorkflowDefs(ctx)
}

// keptSchedules holds the schedules saved, and answers each read with a
// copy of them and an execution of each.
type keptSchedules struct {
	api.Schedules
	mu    sync.Mutex
	saved map[string]conductor.WorkflowSchedule
}

func (k *keptSchedules) Save(_ context.Context, def *conductor.WorkflowSchedule, _ string, _ *conductor.WorkflowSchedule) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.saved[def.Name] = *def
	return nil
}

func (k *keptSchedules) Get(_ context.Context, name string) (*conductor.WorkflowSchedule, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	def, ok := k.saved[name]
	if !ok {
		return nil, fault.NotFound("schedule %s not found", name)
	}
	return &def, nil
}

func (k *keptSchedules) GetChecked(ctx context.Context, name string, _ *conductor.WorkflowSchedule) (*conductor.WorkflowSchedule, error) {
	return k.Get(ctx, name)
}

func (k *keptSchedules) List(context.Context, string) ([]*conductor.WorkflowSchedule, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []*conductor.WorkflowSchedule
	for _, def := range k.saved {
		out = append(out, &def)
	}
	return out, nil
}

func (k *keptSchedules) Executions(ctx context.Context, _ query.Search, visible func(string) (*conductor.WorkflowSchedule, bool)) ([]conductor.ScheduleExecution, int, error) {
	list, _ := k.List(ctx, "")
	var out []conductor.ScheduleExecution
	for _, def := range list {
		if _, ok := visible(def.Name); ok {
			out = append(out, conductor.ScheduleExecution{ScheduleName: def.Name, State: "EXECUTED", Request: def.StartWorkflowRequest})
		}
	}
	return out, len(out), nil
}

// maskedFlowMetadata is a metadata store on a real log and read model
// holding masked_flow, whose definition masks pw.
func maskedFlowMetadata(ctx context.Context, t *testing.T) *metadata.Store {
	t.Helper()
	_, md := openMetadata(t)
	var def conductor.WorkflowDef
	if err := conductor.Unmarshal([]byte(`{"name":"masked_flow","maskedFields":["pw"],"tasks":[{"name":"w","taskReferenceName":"w","type":"WAIT"}]}`), &def); err != nil {
		t.Fatal(err)
	}
	if err := md.RegisterWorkflowDef(ctx, &def, true, pinAdmin); err != nil {
		t.Fatal(err)
	}
	return md
}

// A schedule's start input is stored in plain text, so a save is refused
// when the input sets a field the workflow masks, and reads show such a
// field, masked since, as "***". Both decide which fields are masked by
// looking the definition up: a lookup that fails (the read model lacks the
// definition and the log does not answer) fails the request, unavailable,
// where it counted as "no masked fields": the save, its EXECUTE check
// passed, stored the masked field in plain text, and the reads showed it.
func TestScheduleMaskingFailsClosed(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, time.Minute)
	md := maskedFlowMetadata(ctx, t)
	authz := auth.NewAuthorizer(&fixedGrants{grants: []auth.Grant{{
		Subject: auth.Subject{Type: auth.SubjectUser, ID: pinUser},
		Target:  auth.Target{Type: auth.TargetWorkflowDef, ID: "masked_flow"},
		Access:  []auth.Access{auth.Execute},
	}}})
	authz.Register(auth.TargetWorkflowDef, definitionSource{md})
	failing := &atomic.Bool{}
	schedules := &keptSchedules{saved: map[string]conductor.WorkflowSchedule{}}
	srv := httptest.NewServer(api.New(api.Deps{
		Logger:      testutil.Logger(t),
		Definitions: failingLookup{Store: md, failing: failing},
		Schedules:   schedules,
		Authorizer:  authz,
		Tokens: tokenPrincipals{
			"user-token":  {ID: pinUser, Roles: []string{auth.RoleUser}},
			"admin-token": {ID: pinAdmin, Roles: []string{auth.RoleAdmin}},
		},
	}))
	t.Cleanup(srv.Close)
	user, admin := client{t, srv.URL, "user-token"}, client{t, srv.URL, "admin-token"}

	const secret = "hunter2-value"
	save := `{"name":"nightly","cronExpression":"0 0 0 1 1 ?","startWorkflowRequest":{"name":"masked_flow","input":{"pw":"` + secret + `"}}}`
	failing.Store(true)
	if got := user.do("POST", "/api/scheduler/schedules", save); got.status != http.StatusServiceUnavailable || strings.Contains(got.body, secret) {
		t.Errorf("save with the lookup failing = %d %s, want 503", got.status, got.body)
	}
	if _, err := schedules.Get(ctx, "nightly"); !errors.Is(err, fault.ErrNotFound) {
		t.Errorf("the save with the lookup failing stored the schedule (%v)", err)
	}
	failing.Store(false)
	if got := user.do("POST", "/api/scheduler/schedules", save); got.status != http.StatusBadRequest {
		t.Errorf("save = %d %s, want 400: the workflow masks pw", got.status, got.body)
	}

	// Stored before the definition came to mask pw.
	if err := schedules.Save(ctx, &conductor.WorkflowSchedule{Name: "nightly", CronExpression: "0 0 0 1 1 ?",
		Tags:                 []conductor.Tag{{Key: "k", Value: "v"}},
		StartWorkflowRequest: &conductor.StartWorkflowRequest{Name: "masked_flow", Input: map[string]any{"pw": secret}}}, pinAdmin, nil); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{
		"/api/scheduler/schedules/nightly",
		"/api/scheduler/schedules",
		"/api/scheduler/schedules/tags?tag=k:v",
		"/api/scheduler/search/executions",
	} {
		t.Run(path, func(t *testing.T) {
			failing.Store(true)
			if got := admin.do("GET", path, ""); got.status != http.StatusServiceUnavailable || strings.Contains(got.body, secret) {
				t.Errorf("with the lookup failing: GET %s = %d %s, want 503", path, got.status, got.body)
			}
			failing.Store(false)
			if got := admin.do("GET", path, ""); got.status != http.StatusOK || strings.Contains(got.body, secret) || !strings.Contains(got.body, `"pw":"***"`) {
				t.Errorf("GET %s = %d %s, want pw masked", path, got.status, got.body)
			}
		})
	}
}
