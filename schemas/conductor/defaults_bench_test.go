package conductor

import (
	"encoding/json"
	"testing"
)

// A task handed to a worker is written with its configuration's and its
// definition's defaults: what that adds to each offer.
func BenchmarkMarshalTaskWithDefaults(b *testing.B) {
	t := &Task{TaskID: "t-1", TaskType: TaskTypeSimple, TaskDefName: "charge", ReferenceTaskName: "charge",
		Status: TaskInProgress, InputData: map[string]any{"order": "o-1", "amount": 12.5},
		WorkflowTask:   WorkflowTaskJSON(`{"name":"charge","taskReferenceName":"charge","inputParameters":{"order":"${workflow.input.order}","amount":"${workflow.input.amount}"}}`),
		TaskDefinition: TaskDefJSON(`{"name":"charge","retryCount":2,"ownerEmail":"ops@example.com"}`)}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := json.Marshal(t); err != nil {
			b.Fatal(err)
		}
	}
}
