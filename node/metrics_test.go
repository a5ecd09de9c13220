package node_test

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/flowvault/flowvault/internal/nodetest"
	"github.com/flowvault/flowvault/internal/testutil"
)

// /metrics after a workload is valid Prometheus text, every family
// described and named by the conventions dashboards rely on, no label
// value taken from what users name, and it tells how many workflows
// started and ended how, and how far each read model is behind its stream.
func TestMetricsExposition(t *testing.T) {
	t.Parallel()
	_, base := nodetest.Start(t)
	c := nodetest.Client{TB: t, Base: base}
	c.Must(http.StatusNoContent, "POST", "/api/metadata/taskdefs",
		`[{"name":"obs_work","retryCount":0,"responseTimeoutSeconds":60,"ownerEmail":"a@b.c"}]`)
	c.Must(http.StatusNoContent, "POST", "/api/metadata/workflow", `{"name":"obs_wf","version":1,"ownerEmail":"a@b.c","schemaVersion":2,
		"tasks":[{"name":"obs_work","taskReferenceName":"obs_ref","type":"SIMPLE"}]}`)
	var ids []string
	for _, status := range []string{"COMPLETED", "FAILED"} {
		wf := c.Must(http.StatusOK, "POST", "/api/workflow/obs_wf?correlationId=obs_corr", `{}`)
		ids = append(ids, wf)
		task := c.Must(http.StatusOK, "GET", "/api/tasks/poll/obs_work?workerid=obs_worker", "")
		taskID := field(t, task, "taskId")
		c.Must(http.StatusOK, "POST", "/api/tasks", fmt.Sprintf(`{"taskId":%q,"workflowInstanceId":%q,"status":%q}`, taskID, wf, status))
		testutil.Eventually(t, 10*time.Second, 20*time.Millisecond, func() error {
			if got := field(t, c.Must(http.StatusOK, "GET", "/api/workflow/"+wf+"?includeTasks=false", ""), "status"); got != status {
				return fmt.Errorf("workflow %s is %s, want %s", wf, got, status)
			}
			return nil
		})
	}

	_, body := c.Do("GET", "/metrics", "")
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("/metrics is not Prometheus text: %v\n%s", err, body)
	}
	users := append([]string{"obs_work", "obs_wf", "obs_ref", "obs_corr", "obs_worker"}, ids...)
	for name, f := range families {
		if !strings.HasPrefix(name, "flowvault_") {
			continue
		}
		if f.GetHelp() == "" {
			t.Errorf("%s has no HELP", name)
		}
		switch f.GetType() {
		case dto.MetricType_COUNTER:
			if !strings.HasSuffix(name, "_total") {
				t.Errorf("counter %s does not end in _total", name)
			}
		case dto.MetricType_GAUGE, dto.MetricType_HISTOGRAM:
			if strings.HasSuffix(name, "_total") {
				t.Errorf("%s %s ends in _total", f.GetType(), name)
			}
		default:
			t.Errorf("%s is %s", name, f.GetType())
		}
		for _, unit := range []string{"_ms", "_milliseconds", "_millis", "_duration", "_bytes_count"} {
			if strings.HasSuffix(strings.TrimSuffix(name, "_total"), unit) {
				t.Errorf("%s: durations are in _seconds, sizes in _bytes", name)
			}
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if slices.Contains(users, l.GetValue()) {
					t.Errorf("%s{%s=%q}: a label value users chose, without a bound", name, l.GetName(), l.GetValue())
				}
			}
		}
	}

	want := []struct {
		name   string
		labels map[string]string
		value  float64
	}{
		{"flowvault_engine_workflows_started_total", nil, 2},
		{"flowvault_engine_workflows_ended_total", map[string]string{"status": "COMPLETED"}, 1},
		{"flowvault_engine_workflows_ended_total", map[string]string{"status": "FAILED"}, 1},
		{"flowvault_workflows_running", nil, 0},
		{"flowvault_tasks_scheduled", nil, 0},
		{"flowvault_timers_pending", nil, 0},
		{"flowvault_compaction_backlog_workflows", nil, 0},
	}
	for _, w := range want {
		if got, ok := sample(families, w.name, w.labels); !ok || got != w.value {
			t.Errorf("%s%v = %v (found %v), want %v", w.name, w.labels, got, ok, w.value)
		}
	}
	for _, proj := range []string{"auth", "executions", "metadata", "natscreds", "schedules", "secrets"} {
		if _, ok := sample(families, "flowvault_projection_lag_records", map[string]string{"projection": proj}); !ok {
			t.Errorf("flowvault_projection_lag_records has no sample for read model %s", proj)
		}
	}
}

// The load gauges count what the log holds: workflows left with their
// task queued and no worker, their timeouts, and ended workflows whose
// sealed secrets await compaction; they read the same after a restart
// and after the read models are rebuilt from the log, when a count of
// what happened since the start would read nothing.
func TestLoadGaugesSurviveRestartAndRebuild(t *testing.T) {
	t.Parallel()
	cfg := nodetest.Config(filepath.Join(t.TempDir(), "data"))
	cfg.CompactionDelay = time.Hour // the ended workflows stay in the backlog
	n, base := nodetest.StartConfig(t, cfg)
	c := nodetest.Client{TB: t, Base: base}
	c.Must(http.StatusNoContent, "POST", "/api/metadata/taskdefs",
		`[{"name":"load_work","retryCount":0,"responseTimeoutSeconds":60,"ownerEmail":"a@b.c"}]`)
	c.Must(http.StatusNoContent, "POST", "/api/metadata/workflow", `{"name":"load_wf","version":1,"ownerEmail":"a@b.c","schemaVersion":2,
		"timeoutSeconds":3600,"timeoutPolicy":"TIME_OUT_WF","tasks":[{"name":"load_work","taskReferenceName":"load_ref","type":"SIMPLE"}]}`)
	var ids []string
	for range 5 {
		ids = append(ids, c.Must(http.StatusOK, "POST", "/api/workflow/load_wf", `{"_secrets":{"token":"load-secret-value"}}`))
	}
	// One completed, one terminated: both sealed a secret, so both await
	// compaction; three wait for a worker.
	task := c.Must(http.StatusOK, "GET", "/api/tasks/poll/load_work?workerid=load_worker", "")
	done := field(t, task, "workflowInstanceId")
	c.Must(http.StatusOK, "POST", "/api/tasks", fmt.Sprintf(`{"taskId":%q,"workflowInstanceId":%q,"status":"COMPLETED"}`, field(t, task, "taskId"), done))
	terminated := ids[0]
	if terminated == done {
		terminated = ids[1]
	}
	c.Must(http.StatusNoContent, "DELETE", "/api/workflow/"+terminated, "")
	for _, id := range []string{done, terminated} {
		testutil.Eventually(t, 10*time.Second, 20*time.Millisecond, func() error {
			if got := field(t, c.Must(http.StatusOK, "GET", "/api/workflow/"+id+"?includeTasks=false", ""), "status"); got == "RUNNING" {
				return fmt.Errorf("workflow %s still running", id)
			}
			return nil
		})
	}
	want := map[string]float64{"flowvault_workflows_running": 3, "flowvault_tasks_scheduled": 3,
		"flowvault_timers_pending": 3, "flowvault_compaction_backlog_workflows": 2}
	check := func(step, base string) {
		t.Helper()
		_, body := nodetest.Client{TB: t, Base: base}.Do("GET", "/metrics", "")
		parser := expfmt.NewTextParser(model.UTF8Validation)
		families, err := parser.TextToMetricFamilies(strings.NewReader(body))
		if err != nil {
			t.Fatalf("%s: /metrics is not Prometheus text: %v", step, err)
		}
		for name, v := range want {
			if got, ok := sample(families, name, nil); !ok || got != v {
				t.Errorf("%s: %s = %v (found %v), want %v", step, name, got, ok, v)
			}
		}
		if strings.Contains(body, "load-secret-value") {
			t.Errorf("%s: /metrics holds the secret value", step)
		}
	}
	check("started", base)
	stop(t, n)
	for _, wipe := range []bool{false, true} {
		step := map[bool]string{false: "restarted", true: "rebuilt"}[wipe]
		if wipe {
			if err := os.RemoveAll(cfg.PebbleDir()); err != nil {
				t.Fatal(err)
			}
		}
		n, base := nodetest.StartConfig(t, cfg)
		check(step, base)
		stop(t, n)
	}
}

// field returns the first string field called name in a JSON object.
func field(t *testing.T, body, name string) string {
	t.Helper()
	key := `"` + name + `":"`
	i := strings.Index(body, key)
	if i < 0 {
		t.Fatalf("no %s in %s", name, body)
	}
	rest := body[i+len(key):]
	return rest[:strings.IndexByte(rest, '"')]
}

// sample returns the value of the counter or gauge name with exactly
// labels.
func sample(families map[string]*dto.MetricFamily, name string, labels map[string]string) (float64, bool) {
	f, ok := families[name]
	if !ok {
		return 0, false
	}
	for _, m := range f.GetMetric() {
		if len(m.GetLabel()) != len(labels) {
			continue
		}
		match := true
		for _, l := range m.GetLabel() {
			match = match && labels[l.GetName()] == l.GetValue()
		}
		if !match {
			continue
		}
		if m.GetCounter() != nil {
			return m.GetCounter().GetValue(), true
		}
		return m.GetGauge().GetValue(), true
	}
	return 0, false
}
