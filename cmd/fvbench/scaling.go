package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/flowvault/flowvault/eventlog"
)

// The scaling section runs long workflows, one at a time: a list of n
// SIMPLE tasks, a DO_WHILE of n iterations over one, and a
// FORK_JOIN_DYNAMIC of n branches, each at a small and a large n. It
// reports the CPU per task at each size and the ratio of the two, the
// small run being the baseline: work per task that does not grow with the
// workflow gives about 1; work that rescans or rewrites the whole workflow
// at every step gives about the ratio of the sizes. The event log's bytes
// per task, at both sizes, say the same of the log.
const (
	scaleSmall, scaleLarge = 100, 1600

	scaleLoop = `{"name":"scale_loop","version":1,"tasks":[
 {"name":"loop","taskReferenceName":"loop","type":"DO_WHILE","loopCondition":"$.loop.iteration < $.n",
  "inputParameters":{"n":"${workflow.input.n}"},"loopOver":[{"name":"bench_a","taskReferenceName":"step"}]}]}`
	scaleFork = `{"name":"scale_fork","version":1,"tasks":[
 {"name":"fork","taskReferenceName":"fork","type":"FORK_JOIN_DYNAMIC","dynamicForkTasksParam":"tasks",
  "inputParameters":{"tasks":"${workflow.input.tasks}"}},
 {"name":"join","taskReferenceName":"join","type":"JOIN"}]}`
)

// scaleShape is one shape of long workflow: the definition to register
// for n tasks (if it depends on n), and the start request's input.
type scaleShape struct {
	what  string
	name  func(n int) string
	def   func(n int) string
	input func(n int) map[string]any
}

var scaleShapes = []scaleShape{
	{
		what: "SIMPLE tasks in a row",
		name: func(n int) string { return fmt.Sprintf("scale_seq_%d", n) },
		def: func(n int) string {
			tasks := make([]string, n)
			for i := range tasks {
				tasks[i] = fmt.Sprintf(`{"name":"bench_a","taskReferenceName":"s%d"}`, i)
			}
			return fmt.Sprintf(`{"name":"scale_seq_%d","version":1,"tasks":[%s]}`, n, strings.Join(tasks, ","))
		},
		input: func(int) map[string]any { return nil },
	},
	{
		what:  "DO_WHILE iterations over a SIMPLE task",
		name:  func(int) string { return "scale_loop" },
		def:   func(int) string { return scaleLoop },
		input: func(n int) map[string]any { return map[string]any{"n": n} },
	},
	{
		what: "FORK_JOIN_DYNAMIC branches",
		name: func(int) string { return "scale_fork" },
		def:  func(int) string { return scaleFork },
		input: func(n int) map[string]any {
			tasks := make([]any, n)
			for i := range tasks {
				tasks[i] = map[string]any{"name": "bench_a", "taskReferenceName": fmt.Sprintf("b%d", i)}
			}
			return map[string]any{"tasks": tasks}
		},
	},
}

func benchScaling(ctx context.Context, _ opts) error {
	r, stop, err := prepare(ctx, eventlog.FsyncRelaxed, natsWorkers, "bench_three")
	if err != nil {
		return err
	}
	defer stop()
	for _, s := range scaleShapes {
		var perTask [2]time.Duration
		var logBytes [2]float64
		host0 := readHostTimes()
		for i, n := range []int{scaleSmall, scaleLarge} {
			if err := r.post("/api/metadata/workflow?overwrite=true", s.def(n), nil); err != nil {
				return err
			}
			bytes0, err := r.appendedBytes()
			if err != nil {
				return err
			}
			cpu0 := processCPU()
			if err := r.runOne(ctx, s.name(n), s.input(n)); err != nil {
				return fmt.Errorf("%s, n=%d: %w", s.what, n, err)
			}
			perTask[i] = (processCPU() - cpu0) / time.Duration(n)
			bytes1, err := r.appendedBytes()
			if err != nil {
				return err
			}
			logBytes[i] = (bytes1 - bytes0) / float64(n)
		}
		fmt.Printf("fsync=relaxed one workflow of n %-39s: n=%d %4dµs CPU/task, n=%d %5dµs CPU/task: ratio %.2f (constant work per task: 1, O(n): %d); log %.0f / %.0f bytes/task%s\n",
			s.what, scaleSmall, perTask[0].Microseconds(), scaleLarge, perTask[1].Microseconds(),
			float64(perTask[1])/float64(perTask[0]), scaleLarge/scaleSmall, logBytes[0], logBytes[1], stealSince(host0))
	}
	return nil
}

// runOne starts one workflow and waits until it completes.
func (r *engineRun) runOne(ctx context.Context, name string, input map[string]any) error {
	r.mu.Lock()
	r.lat, r.want, r.allDone = nil, 1, make(chan struct{})
	r.done.Store(0)
	r.mu.Unlock()
	body, err := json.Marshal(map[string]any{"name": name, "input": input})
	if err != nil {
		return err
	}
	t0 := time.Now()
	var id string
	if err := r.post("/api/workflow", string(body), &id); err != nil {
		return err
	}
	r.mu.Lock()
	r.started[id] = t0
	r.mu.Unlock()
	select {
	case <-r.allDone:
		return nil
	case <-time.After(10 * time.Minute):
		return fmt.Errorf("not completed after 10 minutes: %s", r.describe(id))
	case <-ctx.Done():
		return ctx.Err()
	}
}

// appendedBytes reads the bytes the node's event log has taken, as its
// /metrics reports them.
func (r *engineRun) appendedBytes() (float64, error) {
	var metrics string
	if err := r.send("GET", "/metrics", "", &metrics); err != nil {
		return 0, err
	}
	for _, line := range strings.Split(metrics, "\n") {
		if v, ok := strings.CutPrefix(line, "flowvault_eventlog_appended_bytes_total "); ok {
			return strconv.ParseFloat(v, 64)
		}
	}
	return 0, fmt.Errorf("/metrics has no flowvault_eventlog_appended_bytes_total")
}
