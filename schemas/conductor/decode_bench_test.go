package conductor_test

import (
	"testing"

	"github.com/flowvault/flowvault/schemas/conductor"
)

// What the engine decodes on every start and registration: a start
// request and a workflow definition of a few tasks (go test -run '^$'
// -bench 'Unmarshal(StartRequest|WorkflowDef)' -benchmem ./schemas/conductor).
const (
	benchStart = `{"name":"orders","version":3,"correlationId":"order-8812","priority":1,
  "input":{"orderId":"o-8812","amount":129.5,"items":[{"sku":"a-1","qty":2},{"sku":"b-7","qty":1}],"customer":{"id":42,"email":"x@example.com"}},
  "taskToDomain":{"charge":"eu"}}`
	benchDef = `{"name":"orders","description":"charge and ship","version":3,"schemaVersion":2,"ownerEmail":"ops@example.com",
  "inputParameters":["orderId","amount"],"timeoutPolicy":"TIME_OUT_WF","timeoutSeconds":3600,
  "outputParameters":{"shipment":"${ship.output.id}"},
  "tasks":[
    {"name":"charge","taskReferenceName":"charge","type":"SIMPLE","inputParameters":{"order":"${workflow.input.orderId}","amount":"${workflow.input.amount}"},"retryCount":2},
    {"name":"route","taskReferenceName":"route","type":"SWITCH","evaluatorType":"value-param","expression":"region","inputParameters":{"region":"${workflow.input.region}"},
     "decisionCases":{"eu":[{"name":"ship_eu","taskReferenceName":"ship_eu","inputParameters":{"o":"${workflow.input.orderId}"}}]},
     "defaultCase":[{"name":"ship","taskReferenceName":"ship","inputParameters":{"o":"${workflow.input.orderId}"},"taskDefinition":{"name":"ship","retryCount":1,"timeoutSeconds":60,"responseTimeoutSeconds":30}}]},
    {"name":"notify","taskReferenceName":"notify","type":"HTTP","inputParameters":{"http_request":{"uri":"https://example.com/n","method":"POST","body":{"id":"${workflow.input.orderId}"}}}}
  ]}`
)

func BenchmarkUnmarshalStartRequest(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		var r conductor.StartWorkflowRequest
		if err := conductor.Unmarshal([]byte(benchStart), &r); err != nil || r.Name != "orders" {
			b.Fatal(r.Name, err)
		}
	}
}

func BenchmarkUnmarshalWorkflowDef(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		var d conductor.WorkflowDef
		if err := conductor.Unmarshal([]byte(benchDef), &d); err != nil || len(d.Tasks) != 3 {
			b.Fatal(len(d.Tasks), err)
		}
	}
}
