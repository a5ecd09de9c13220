package e2e_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas/conductor"
)

func (e *env) schedule(name string) conductor.WorkflowSchedule {
	e.t.Helper()
	var def conductor.WorkflowSchedule
	if err := json.Unmarshal([]byte(e.must(http.StatusOK, "GET", "/api/scheduler/schedules/"+name, nil)), &def); err != nil {
		e.t.Fatal(err)
	}
	return def
}

// A schedule's input is stored and shown in plain text: one that holds
// _secrets or _masked data anywhere is refused with a 400 that says what
// to do instead and never repeats the value, and nothing is stored.
func TestScheduleRefusesSecretInput(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tests := []struct{ name, input, key string }{
		{"top level", `{"_secrets":{"api_token":"tok-PLAINTEXT"}}`, "startWorkflowRequest.input._secrets"},
		{"deep in a list", `{"calls":[{"headers":{"_masked":{"auth":"tok-PLAINTEXT"}}}]}`, "startWorkflowRequest.input.calls[0].headers._masked"},
	}
	for _, tt := range tests {
		body := `{"name":"leaky","cronExpression":"0 0 * * * ?","paused":true,"startWorkflowRequest":{"name":"held","input":` + tt.input + `}}`
		status, out := e.do("POST", "/api/scheduler/schedules", body)
		if status != http.StatusBadRequest || strings.Contains(out, "PLAINTEXT") {
			t.Fatalf("%s: %d %s; want 400 without the value", tt.name, status, out)
		}
		for _, want := range []string{tt.key, "${workflow.secrets.NAME}", "PUT /api/secrets/{key}"} {
			if !strings.Contains(out, want) {
				t.Errorf("%s: %s does not say %q", tt.name, out, want)
			}
		}
	}
	e.must(http.StatusNotFound, "GET", "/api/scheduler/schedules/leaky", nil)
	if list := e.must(http.StatusOK, "GET", "/api/scheduler/schedules", nil); list != "[]" {
		t.Fatalf("schedules %s", list)
	}
}

// A field the workflow masks (its definition's maskedFields) is sealed by
// the workflow but would be stored in plain text by a schedule: such input
// is refused. A field a definition comes to mask later reads "***" in
// every schedule read path, as in the workflows the schedule starts.
func TestScheduleMaskedFields(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.register(`{"name":"login","version":1,"maskedFields":["password"],"tasks":[{"name":"h","taskReferenceName":"h","type":"WAIT"}]}`,
		`{"name":"later","version":1,"tasks":[{"name":"h","taskReferenceName":"h","type":"WAIT"}]}`)
	for name, req := range map[string]string{
		"registered": `{"name":"login","input":{"password":"hunter2-PLAIN"}}`,
		"inline":     `{"workflowDef":{"name":"inline_login","maskedFields":["password"],"tasks":[{"name":"h","taskReferenceName":"h","type":"WAIT"}]},"input":{"password":"hunter2-PLAIN"}}`,
	} {
		status, out := e.do("POST", "/api/scheduler/schedules", `{"name":"nightly_login","cronExpression":"0 0 * * * ?","startWorkflowRequest":`+req+`}`)
		if status != http.StatusBadRequest || strings.Contains(out, "hunter2") || !strings.Contains(out, "startWorkflowRequest.input.password") {
			t.Fatalf("%s: %d %s; want 400 naming the field, not the value", name, status, out)
		}
	}
	e.must(http.StatusNotFound, "GET", "/api/scheduler/schedules/nightly_login", nil)

	e.must(http.StatusNoContent, "POST", "/api/scheduler/schedules",
		`{"name":"often","cronExpression":"* * * * * ?","startWorkflowRequest":{"name":"later","input":{"user":"u","password":"hunter2-PLAIN"}}}`)
	testutil.Eventually(t, 30*time.Second, 50*time.Millisecond, func() error {
		if out := e.must(http.StatusOK, "GET", "/api/scheduler/search/executions", nil); !strings.Contains(out, `"EXECUTED"`) {
			return fmt.Errorf("no execution yet: %s", out)
		}
		return nil
	})
	e.must(http.StatusNoContent, "POST", "/api/metadata/workflow",
		`{"name":"later","version":2,"maskedFields":["password"],"tasks":[{"name":"h","taskReferenceName":"h","type":"WAIT"}]}`)
	for _, path := range []string{"/api/scheduler/schedules/often", "/api/scheduler/schedules", "/api/scheduler/search/executions"} {
		out := e.must(http.StatusOK, "GET", path, nil)
		if strings.Contains(out, "hunter2") || !strings.Contains(out, `"password":"***"`) || !strings.Contains(out, `"user":"u"`) {
			t.Errorf("GET %s: %s", path, out)
		}
	}
}

// A schedule with an inline definition, saved by a user allowed to create
// that definition (what the API checks), runs: the firer asks the same
// question instead of EXECUTE on a definition that is not registered.
func TestScheduleWithInlineDefinitionRuns(t *testing.T) {
	t.Parallel()
	e := newSecureEnv(t)
	_, token := e.application("scheduler", "USER")
	e.as(token).must(http.StatusNoContent, "POST", "/api/scheduler/schedules", `{"name":"adhoc","cronExpression":"* * * * * ?",`+
		`"startWorkflowRequest":{"name":"adhoc_wf","workflowDef":{"name":"adhoc_wf","tasks":[{"name":"h","taskReferenceName":"h","type":"WAIT"}]}}}`)
	var executed string
	testutil.Eventually(t, 15*time.Second, 100*time.Millisecond, func() error {
		if def := e.schedule("adhoc"); def.Paused {
			return nil // the assertion below says why
		}
		for _, x := range e.scheduleExecutions().Results {
			if x.State == "EXECUTED" {
				executed = x.WorkflowID
				return nil
			}
		}
		return fmt.Errorf("no run yet")
	})
	if def := e.schedule("adhoc"); def.Paused {
		t.Fatalf("the schedule paused itself: %q", def.PausedReason)
	}
	if wf := e.workflow(executed); wf.WorkflowName != "adhoc_wf" || wf.Input["_startedByScheduler"] != "adhoc" {
		t.Fatalf("scheduled run %s of %q, input %v", executed, wf.WorkflowName, wf.Input)
	}
}

// A schedule's inline definition is checked when it is saved, as a
// start's is: one without tasks or with an unknown task type was stored
// and failed every run.
func TestScheduleRefusesInvalidInlineDefinition(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, tt := range []struct{ name, def, path string }{
		{"no tasks", `{"name":"adhoc_bad","tasks":[]}`, "startWorkflowRequest.workflowDef.tasks"},
		{"unknown type, named by the request", `{"tasks":[{"name":"t","taskReferenceName":"t","type":"NO_SUCH_TYPE"}]}`, "startWorkflowRequest.workflowDef.tasks[0].type"},
	} {
		status, out := e.do("POST", "/api/scheduler/schedules", `{"name":"adhoc_bad","cronExpression":"0 0 * * * ?",`+
			`"startWorkflowRequest":{"name":"adhoc_bad","workflowDef":`+tt.def+`}}`)
		if status != http.StatusBadRequest || !strings.Contains(out, `"path":"`+tt.path+`"`) {
			t.Errorf("%s: %d %s; want 400 naming %s", tt.name, status, out, tt.path)
		}
	}
	e.must(http.StatusNotFound, "GET", "/api/scheduler/schedules/adhoc_bad", nil)
}

// GET /api/scheduler/schedules/tags?tag=key:value lists the schedules
// carrying the tag that the caller may read; "tags" is not a schedule.
func TestSchedulesByTag(t *testing.T) {
	t.Parallel()
	e := newSecureEnv(t)
	e.register(`{"name":"held","tasks":[{"name":"h","taskReferenceName":"h","type":"WAIT"}]}`)
	for name, tag := range map[string]string{"ops_a": "ops", "ops_b": "ops", "dev_c": "dev"} {
		e.must(http.StatusNoContent, "POST", "/api/scheduler/schedules", `{"name":"`+name+`","cronExpression":"0 0 * * * ?","paused":true,`+
			`"startWorkflowRequest":{"name":"held"},"tags":[{"key":"team","value":"`+tag+`"}]}`)
	}
	reader, token := e.application("reader", "USER")
	e.grant(reader, "WORKFLOW_SCHEDULE", "ops_b", "READ")
	names := func(e *env, query string) []string {
		t.Helper()
		var defs []conductor.WorkflowSchedule
		if err := json.Unmarshal([]byte(e.must(http.StatusOK, "GET", "/api/scheduler/schedules/tags?"+query, nil)), &defs); err != nil {
			t.Fatal(err)
		}
		out := []string{}
		for _, d := range defs {
			out = append(out, d.Name)
		}
		slices.Sort(out)
		return out
	}
	tests := []struct {
		name  string
		as    *env
		query string
		want  []string
	}{
		{"admin", e, "tag=team:ops", []string{"ops_a", "ops_b"}},
		{"other value", e, "tag=team:dev", []string{"dev_c"}},
		{"no such tag", e, "tag=team:none", []string{}},
		{"a reader sees what it may read", e.as(token), "tag=team:ops", []string{"ops_b"}},
	}
	for _, tt := range tests {
		if got := names(tt.as, tt.query); !slices.Equal(got, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
	for _, query := range []string{"", "tag=team"} {
		if status, out := e.do("GET", "/api/scheduler/schedules/tags?"+query, nil); status != http.StatusBadRequest || !strings.Contains(out, "key:value") {
			t.Errorf("?%s: %d %s, want 400", query, status, out)
		}
	}
}

// Pausing keeps the reason the JS SDK sends; resuming clears it.
func TestSchedulePauseReason(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.register(`{"name":"held","tasks":[{"name":"h","taskReferenceName":"h","type":"WAIT"}]}`)
	e.must(http.StatusNoContent, "POST", "/api/scheduler/schedules",
		`{"name":"nightly","cronExpression":"0 0 0 * * ?","startWorkflowRequest":{"name":"held"}}`)
	if out := e.must(http.StatusOK, "GET", "/api/scheduler/schedules/nightly/pause?reason=maintenance%20window", nil); out != "{}" {
		t.Fatalf("pause answered %q, want {} as the OpenAPI document says", out)
	}
	if def := e.schedule("nightly"); !def.Paused || def.PausedReason != "maintenance window" {
		t.Fatalf("paused %v, reason %q", def.Paused, def.PausedReason)
	}
	e.must(http.StatusOK, "GET", "/api/scheduler/schedules/nightly/resume?reason=ignored", nil)
	if def := e.schedule("nightly"); def.Paused || def.PausedReason != "" {
		t.Fatalf("resumed: paused %v, reason %q", def.Paused, def.PausedReason)
	}
}

// The admin switches the JS SDK's pauseAllSchedules, resumeAllSchedules
// and requeueAllExecutionRecords call answer maps, as Orkes's do: resuming
// all resumes what pausing all paused, not a schedule paused on its own.
func TestScheduleAdminSwitches(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.register(`{"name":"held","tasks":[{"name":"h","taskReferenceName":"h","type":"WAIT"}]}`)
	for _, name := range []string{"nightly", "weekly"} {
		e.must(http.StatusNoContent, "POST", "/api/scheduler/schedules",
			`{"name":"`+name+`","cronExpression":"0 0 0 * * ?","startWorkflowRequest":{"name":"held"}}`)
	}
	e.must(http.StatusOK, "GET", "/api/scheduler/schedules/weekly/pause?reason=maintenance", nil)
	if out := e.must(http.StatusOK, "GET", "/api/scheduler/admin/pause", nil); out != `{"paused":1}` {
		t.Fatalf("pause all answered %s", out)
	}
	if def := e.schedule("nightly"); !def.Paused || !strings.HasPrefix(def.PausedReason, "Paused by an admin") {
		t.Fatalf("after pause all: paused %v, reason %q", def.Paused, def.PausedReason)
	}
	// Edited during the pause, sent back paused as read: still the admin's.
	e.must(http.StatusNoContent, "POST", "/api/scheduler/schedules",
		`{"name":"nightly","cronExpression":"0 0 1 * * ?","paused":true,"startWorkflowRequest":{"name":"held"}}`)
	if def := e.schedule("nightly"); !def.Paused || !strings.HasPrefix(def.PausedReason, "Paused by an admin") || def.CronExpression != "0 0 1 * * ?" {
		t.Fatalf("edited during pause all: cron %q paused %v, reason %q", def.CronExpression, def.Paused, def.PausedReason)
	}
	if out := e.must(http.StatusOK, "GET", "/api/scheduler/admin/resume", nil); out != `{"resumed":1}` {
		t.Fatalf("resume all answered %s", out)
	}
	if def := e.schedule("nightly"); def.Paused {
		t.Fatalf("after resume all: paused, reason %q", def.PausedReason)
	}
	if def := e.schedule("weekly"); !def.Paused || def.PausedReason != "maintenance" {
		t.Fatalf("a schedule paused on its own: paused %v, reason %q", def.Paused, def.PausedReason)
	}
	if out := e.must(http.StatusOK, "GET", "/api/scheduler/admin/requeue", nil); out != "{}" {
		t.Fatalf("requeue answered %s", out)
	}
}

// A schedule whose definition was deleted under it records its runs
// FAILED as not found, as Orkes does, and stays running: its owner did not
// lose the right to start it, so it is no security pause.
func TestScheduleOfADeletedDefinition(t *testing.T) {
	t.Parallel()
	e := newSecureEnv(t)
	_, token := e.application("owner", "USER")
	owner := e.as(token)
	owner.must(http.StatusNoContent, "POST", "/api/metadata/workflow", `{"name":"gone_wf","version":1,"tasks":[{"name":"h","taskReferenceName":"h","type":"WAIT"}]}`)
	owner.must(http.StatusNoContent, "POST", "/api/scheduler/schedules", `{"name":"orphan","cronExpression":"* * * * * ?","startWorkflowRequest":{"name":"gone_wf","version":1}}`)
	e.must(http.StatusNoContent, "DELETE", "/api/metadata/workflow/gone_wf/1", nil)
	var failed conductor.ScheduleExecution
	testutil.Eventually(t, 15*time.Second, 100*time.Millisecond, func() error {
		if def := e.schedule("orphan"); def.Paused {
			return nil // the assertion below says why
		}
		for _, x := range e.scheduleExecutions().Results {
			if x.State == "FAILED" {
				failed = x
				return nil
			}
		}
		return fmt.Errorf("no failed run yet")
	})
	if def := e.schedule("orphan"); def.Paused {
		t.Fatalf("the schedule paused itself: %q", def.PausedReason)
	}
	if !strings.Contains(strings.ToLower(failed.Reason), "not found") && !strings.Contains(failed.Reason, "No such workflow") {
		t.Fatalf("the run failed with %q, want the definition named not found", failed.Reason)
	}
}

// The keys the scheduler adds to a run's input (_scheduledTime,
// _executedTime, _startedByScheduler, _executionId) are not judged by the
// definition's enforced inputSchema, as the keys an event's start adds
// are not: its author cannot list them, and a schema that allows no other
// keys failed every run. The schedule's own input is judged as any
// start's, a key it sets among those included.
func TestScheduledRunsOfAnEnforcedInputSchema(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.register(`{"name":"strict_in","enforceSchema":true,"inputSchema":{"name":"strict_in","type":"JSON","data":{"type":"object",
	    "properties":{"region":{"type":"string"}},"additionalProperties":false}},
	  "tasks":[{"name":"h","taskReferenceName":"h","type":"WAIT"}]}`)
	tests := []struct {
		name, input, want string
	}{
		{"conforming", `{"region":"eu"}`, "EXECUTED"},
		{"a key the schema refuses", `{"region":"eu","extra":1}`, "FAILED"},
		{"an added key the input sets", `{"region":"eu","_executionId":"mine"}`, "FAILED"},
	}
	for i, tt := range tests {
		e.must(http.StatusNoContent, "POST", "/api/scheduler/schedules", fmt.Sprintf(
			`{"name":"strict%d","cronExpression":"* * * * * ?","startWorkflowRequest":{"name":"strict_in","input":%s}}`, i, tt.input))
	}
	outcome := map[string]conductor.ScheduleExecution{}
	testutil.Eventually(t, 15*time.Second, 100*time.Millisecond, func() error {
		for _, x := range e.scheduleExecutions().Results {
			if _, seen := outcome[x.ScheduleName]; !seen && x.State != "POLLED" {
				outcome[x.ScheduleName] = x
			}
		}
		if len(outcome) < len(tests) {
			return fmt.Errorf("%d of %d schedules ran", len(outcome), len(tests))
		}
		return nil
	})
	for i, tt := range tests {
		x := outcome[fmt.Sprintf("strict%d", i)]
		if x.State != tt.want {
			t.Errorf("%s: the run is %s (%q), want %s", tt.name, x.State, x.Reason, tt.want)
			continue
		}
		if x.State == "EXECUTED" {
			if wf := e.workflow(x.WorkflowID); wf.Input["_startedByScheduler"] != "strict0" || wf.Input["region"] != "eu" {
				t.Errorf("%s: the run's input %v, want the schedule's and the scheduler's keys", tt.name, wf.Input)
			}
		}
	}
}

// An executions search shows, and counts, a user only the executions of
// the schedules they may read.
func TestScheduleExecutionsOfReadableSchedulesOnly(t *testing.T) {
	t.Parallel()
	e := newSecureEnv(t)
	e.register(`{"name":"held","tasks":[{"name":"h","taskReferenceName":"h","type":"WAIT"}]}`)
	for _, name := range []string{"seen", "hidden"} {
		e.must(http.StatusNoContent, "POST", "/api/scheduler/schedules", `{"name":"`+name+`","cronExpression":"* * * * * ?",`+
			`"startWorkflowRequest":{"name":"held"}}`)
	}
	reader, token := e.application("reader", "USER")
	e.grant(reader, "WORKFLOW_SCHEDULE", "seen", "READ")
	type page struct {
		TotalHits int                           `json:"totalHits"`
		Results   []conductor.ScheduleExecution `json:"results"`
	}
	search := func(as *env) page {
		t.Helper()
		var p page
		if err := json.Unmarshal([]byte(as.must(http.StatusOK, "GET", "/api/scheduler/search/executions?size=1000", nil)), &p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	testutil.Eventually(t, 20*time.Second, 100*time.Millisecond, func() error {
		fired := map[string]int{}
		for _, x := range search(e).Results {
			fired[x.ScheduleName]++
		}
		if fired["seen"] < 2 || fired["hidden"] < 2 {
			return fmt.Errorf("executions by schedule %v, want two of each", fired)
		}
		return nil
	})
	e.must(http.StatusOK, "PUT", "/api/scheduler/bulk/pause", `["seen","hidden"]`)
	got := search(e.as(token))
	if got.TotalHits < 2 || got.TotalHits != len(got.Results) {
		t.Fatalf("reader: %d executions, total %d; want those of seen", len(got.Results), got.TotalHits)
	}
	for _, x := range got.Results {
		if x.ScheduleName != "seen" {
			t.Fatalf("reader sees an execution of %s", x.ScheduleName)
		}
	}
}
