package executor

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/internal/logkey"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/workers"
)

// A take for a waiting poll that is refused because the task's workflow's
// recorded definition does not parse tells an operator so, once, as a
// refusal in a shard does: it was dropped quietly, the task announced and
// the poll left waiting, and nothing told of the stuck workflow. The
// warning names the workflow and the take, and quotes none of the
// definition.
func TestMatchedTakeOfAnUnreadableWorkflowWarned(t *testing.T) {
	t.Parallel()
	l := testutil.OpenLog(t, "")
	logger, logs := testutil.CapturingLogger()
	reg := prometheus.NewRegistry()
	e := New(l, noDefinitions{}, nothingScheduled{}, Config{Logger: logger, Metrics: reg})
	ctx := testutil.Context(t, 30*time.Second)
	const (
		id     = "wf-matched-unreadable"
		marker = "unparsed-data-Mq7vR"
		warned = "workflow stuck: its recorded definition cannot be read; terminate or remove it"
		metric = "flowvault_engine_unreadable_definitions_total"
	)
	now := time.Now()
	started, err := engine.Decide(engine.Input{Trigger: engine.Start{WorkflowID: id, Def: mustDef(t, twoTasks)}, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	// What an earlier version could have recorded.
	state, err := engine.Apply(started.State, &schemas.WorkflowUpgraded{Def: []byte(`{"name":"match_flow","description":"` + marker + `","tasks":[{"name":`),
		Time: now.UnixMilli()})
	if err != nil {
		t.Fatal(err)
	}
	dec := engine.Decision{Events: started.Events, Effects: started.Effects, State: state}
	e.match.wait(ctx, workers.ConsumerName("match_task", ""), "w1", "")
	for range 2 {
		got, ms := e.takeForWaiters(ctx, dec, now)
		if len(ms) != 0 || !slices.ContainsFunc(got.Effects, func(eff engine.Effect) bool { _, ok := eff.(engine.Dispatch); return ok }) {
			t.Fatalf("took %d tasks for the poll, effects %v: want the task announced", len(ms), got.Effects)
		}
		if n := e.match.count(); n != 1 {
			t.Fatalf("%d polls wait, want the poll waiting again", n)
		}
	}
	if strings.Contains(logs.String(), marker) {
		t.Errorf("the log quotes the definition: %s", logs)
	}
	if lines := logs.Records(warned); len(lines) != 1 || lines[0]["level"] != "WARN" || lines[0][logkey.WorkflowID] != id || lines[0][logkey.Trigger] != "take" {
		t.Errorf("warned %v, want once, of workflow %s's take", lines, id)
	}
	if got := testutil.MetricValue(t, reg, metric, nil); got != 1 {
		t.Errorf("%s = %v, want 1", metric, got)
	}
}
