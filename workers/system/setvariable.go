package system

import (
	"context"

	"github.com/flowvault/flowvault/schemas/conductor"
)

// SetVariable runs the SET_VARIABLE tasks whose values are resolved at
// hand-off (secret or environment references): its input, as handed off,
// is its output, and the engine sets the variables from it. The executor
// seals _secrets values and redacts resolved ones before they are stored.
// SET_VARIABLE tasks without such references are decided by the engine.
type SetVariable struct{}

// Execute implements executor.SystemTask.
func (SetVariable) Execute(_ context.Context, t *conductor.Task) conductor.TaskResult {
	return conductor.TaskResult{Status: conductor.TaskCompleted, OutputData: t.InputData}
}
