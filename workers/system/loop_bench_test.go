package system_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"testing"

	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/workers/system"
)

// BenchmarkLoopCondition checks the condition of a DO_WHILE loop after
// its n-th iteration: the loop's output holds an entry per iteration.
//
//	go test -run - -bench LoopCondition ./workers/system
func BenchmarkLoopCondition(b *testing.B) {
	cfg, _ := json.Marshal(map[string]any{"loopCondition": "$.loop['iteration'] < 100000"})
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("iterations=%d", n), func(b *testing.B) {
			out := map[string]any{"iteration": int64(n)}
			for i := 1; i <= n; i++ {
				out[strconv.Itoa(i)] = map[string]any{"step": map[string]any{"i": int64(i), "note": "done"}}
			}
			task := &conductor.Task{TaskType: conductor.TaskTypeDoWhile, ReferenceTaskName: "loop", WorkflowTask: cfg,
				InputData: map[string]any{"loop": out, "step": map[string]any{"i": int64(n)}}}
			for b.Loop() {
				if res := (system.LoopCondition{}).Execute(context.Background(), task); res.Status != conductor.TaskInProgress {
					b.Fatalf("%s: %s", res.Status, res.ReasonForIncompletion)
				}
			}
		})
	}
}
