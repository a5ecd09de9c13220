package e2e_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flowvault/flowvault/internal/nodetest"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas/conductor"
)

type executions struct {
	TotalHits int                           `json:"totalHits"`
	Results   []conductor.ScheduleExecution `json:"results"`
}

func (e *env) scheduleExecutions() executions {
	e.t.Helper()
	var x executions
	if err := json.Unmarshal([]byte(e.must(http.StatusOK, "GET", "/api/scheduler/search/executions?size=1000", nil)), &x); err != nil {
		e.t.Fatal(err)
	}
	return x
}

const everySecond = `{"name":"tick","cronExpression":"* * * * * ?","startWorkflowRequest":{"name":"held","input":{"from":"schedule"}}}`

// A schedule starts its workflow every second; pausing stops it, resuming
// restarts it, deleting removes it.
func TestSchedule(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.register(`{"name":"held","tasks":[{"name":"h","taskReferenceName":"h","type":"WAIT"}]}`)
	e.must(http.StatusNoContent, "POST", "/api/scheduler/schedules", everySecond)
	var def conductor.WorkflowSchedule
	json.Unmarshal([]byte(e.must(http.StatusOK, "GET", "/api/scheduler/schedules/tick", nil)), &def)
	if def.CronExpression != "* * * * * ?" || def.CreateTime == 0 || def.Paused {
		t.Fatalf("schedule = %+v", def)
	}
	testutil.Eventually(t, 10*time.Second, 100*time.Millisecond, func() error {
		if x := e.scheduleExecutions(); x.TotalHits < 2 {
			return fmt.Errorf("%d executions", x.TotalHits)
		}
		return nil
	})
	x := e.scheduleExecutions()
	seen := map[int64]bool{}
	for _, ex := range x.Results {
		if seen[ex.ScheduledTime] {
			t.Fatalf("fire time %d started twice", ex.ScheduledTime)
		}
		seen[ex.ScheduledTime] = true
		if ex.State == "EXECUTED" {
			wf := e.workflow(ex.WorkflowID)
			if wf.WorkflowName != "held" || wf.Input["from"] != "schedule" {
				t.Fatalf("scheduled workflow %+v", wf)
			}
		}
	}
	e.must(http.StatusOK, "GET", "/api/scheduler/schedules/tick/pause", nil)
	paused := e.scheduleExecutions().TotalHits
	time.Sleep(2500 * time.Millisecond)
	if got := e.scheduleExecutions().TotalHits; got > paused+1 { // one may have been claimed as we paused
		t.Fatalf("%d executions while paused (had %d)", got, paused)
	}
	e.must(http.StatusOK, "GET", "/api/scheduler/schedules/tick/resume", nil)
	testutil.Eventually(t, 10*time.Second, 100*time.Millisecond, func() error {
		if got := e.scheduleExecutions().TotalHits; got < paused+2 {
			return fmt.Errorf("%d executions after resume", got)
		}
		return nil
	})
	e.must(http.StatusNoContent, "PUT", "/api/scheduler/schedules/tick/tags", `[{"key":"team","value":"ops"}]`)
	if tags := e.must(http.StatusOK, "GET", "/api/scheduler/schedules/tick/tags", nil); !strings.Contains(tags, `"team"`) {
		t.Fatalf("tags %s", tags)
	}
	if list := e.must(http.StatusOK, "GET", "/api/scheduler/schedules?workflowName=held", nil); !strings.Contains(list, `"tick"`) {
		t.Fatalf("list %s", list)
	}
	e.must(http.StatusNoContent, "DELETE", "/api/scheduler/schedules/tick", nil)
	e.must(http.StatusNotFound, "GET", "/api/scheduler/schedules/tick", nil)
	next := e.must(http.StatusOK, "GET", "/api/scheduler/nextFewSchedules?cronExpression=0%200%2012%20*%20*%20%3F&limit=3", nil)
	var times []int64
	if err := json.Unmarshal([]byte(next), &times); err != nil || len(times) != 3 || times[1]-times[0] != 24*3600*1000 {
		t.Fatalf("nextFewSchedules = %s", next)
	}
	// Five at most, as Orkes answers.
	next = e.must(http.StatusOK, "GET", "/api/scheduler/nextFewSchedules?cronExpression=0%200%2012%20*%20*%20%3F&limit=10", nil)
	if err := json.Unmarshal([]byte(next), &times); err != nil || len(times) != 5 {
		t.Fatalf("nextFewSchedules of 10 = %s", next)
	}
}

// Two engines see every schedule; each fire time starts one workflow.
func TestScheduleFiresOnceAcrossEngines(t *testing.T) {
	t.Parallel()
	a, baseA := nodetest.Start(t)
	cfgB := nodetest.JoinConfig(t, a, filepath.Join(t.TempDir(), "b"))
	b, baseB := nodetest.StartConfig(t, cfgB)
	ea, eb := &env{t: t, node: a, base: baseA}, &env{t: t, node: b, base: baseB}
	ea.register(`{"name":"held","tasks":[{"name":"h","taskReferenceName":"h","type":"WAIT"}]}`)
	ea.must(http.StatusNoContent, "POST", "/api/scheduler/schedules", everySecond)
	testutil.Eventually(t, 15*time.Second, 100*time.Millisecond, func() error {
		if x := eb.scheduleExecutions(); x.TotalHits < 4 {
			return fmt.Errorf("%d executions", x.TotalHits)
		}
		return nil
	})
	ea.must(http.StatusOK, "GET", "/api/scheduler/schedules/tick/pause", nil)
	x := ea.scheduleExecutions()
	ids := map[string]bool{}
	for _, ex := range x.Results {
		if ids[ex.WorkflowID] {
			t.Fatalf("workflow %s started for two fire times", ex.WorkflowID)
		}
		ids[ex.WorkflowID] = true
	}
	// Each fire time is one execution record and one workflow, whichever
	// engine fired it.
	times := map[int64]int{}
	for _, ex := range x.Results {
		times[ex.ScheduledTime]++
	}
	for at, n := range times {
		if n != 1 {
			t.Fatalf("fire time %d has %d executions", at, n)
		}
	}
}

func TestScheduleBadInput(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tests := []struct {
		name, method, path, body, want string
		status                         int
	}{
		{"bad cron", "POST", "/api/scheduler/schedules", `{"name":"s","cronExpression":"* * * *","startWorkflowRequest":{"name":"w"}}`, "cronExpression", 400},
		{"negative second", "POST", "/api/scheduler/schedules", `{"name":"s","cronExpression":"-1 * * * * *","startWorkflowRequest":{"name":"w"}}`,
			`second \"-1\": -1 is not from 0 to 59`, 400},
		{"bad zone", "POST", "/api/scheduler/schedules", `{"name":"s","cronExpression":"* * * * * ?","zoneId":"Nowhere/Zone","startWorkflowRequest":{"name":"w"}}`, "zoneId", 400},
		{"no workflow", "POST", "/api/scheduler/schedules", `{"name":"s","cronExpression":"* * * * * ?"}`, "startWorkflowRequest", 400},
		{"malformed", "POST", "/api/scheduler/schedules", `{"name":`, "malformed JSON", 400},
		{"unknown schedule", "GET", "/api/scheduler/schedules/nope", "", "nope", 404},
		{"pause unknown", "GET", "/api/scheduler/schedules/nope/pause", "", "nope", 404},
		{"bad paging", "GET", "/api/scheduler/search/executions?start=-1", "", "paging", 400},
		{"bad next few", "GET", "/api/scheduler/nextFewSchedules?cronExpression=nope", "", "cron", 400},
	}
	for _, tt := range tests {
		var body any
		if tt.body != "" {
			body = tt.body
		}
		status, out := e.do(tt.method, tt.path, body)
		if status != tt.status || !strings.Contains(out, tt.want) {
			t.Errorf("%s: %d %s; want %d mentioning %q", tt.name, status, out, tt.status, tt.want)
		}
	}
}

// A schedule whose start request carries an idempotency key starts one
// workflow for the key, tick after tick: with FAIL every later tick is
// recorded FAILED, saying why; with RETURN_EXISTING every tick records the
// key's workflow.
func TestScheduleIdempotencyKey(t *testing.T) {
	t.Parallel()
	for _, strategy := range []string{conductor.IdempotencyFail, conductor.IdempotencyReturnExisting} {
		t.Run(strategy, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			e.register(`{"name":"held","tasks":[{"name":"h","taskReferenceName":"h","type":"WAIT"}]}`)
			e.must(http.StatusNoContent, "POST", "/api/scheduler/schedules", `{"name":"keyed","cronExpression":"* * * * * ?",`+
				`"startWorkflowRequest":{"name":"held","idempotencyKey":"once","idempotencyStrategy":"`+strategy+`"}}`)
			var ended []conductor.ScheduleExecution
			testutil.Eventually(t, 15*time.Second, 100*time.Millisecond, func() error {
				ended = nil
				for _, x := range e.scheduleExecutions().Results {
					if x.State != "POLLED" {
						ended = append(ended, x)
					}
				}
				if len(ended) < 3 {
					return fmt.Errorf("%d executions ended", len(ended))
				}
				return nil
			})
			runs := map[string]bool{}
			for _, x := range ended {
				switch {
				case x.State == "EXECUTED":
					runs[x.WorkflowID] = true
				case strategy == conductor.IdempotencyFail && x.State == "FAILED" &&
					strings.Contains(x.Reason, `idempotency key "once" exists`):
				default:
					t.Fatalf("execution %+v", x)
				}
			}
			if len(runs) != 1 {
				t.Fatalf("workflows %v started for one key, want one", runs)
			}
			for id := range runs {
				if wf := e.workflow(id); wf.IdempotencyKey != "once" {
					t.Fatalf("the key's workflow %+v", wf)
				}
			}
		})
	}
}
