package conductor_test

import (
	"fmt"
	"reflect"
	"testing"

	"github.com/flowvault/flowvault/schemas/conductor"
)

// resultRequest is the shape of a NATS worker's result: a TaskResult
// embedded, and members of its own.
type resultRequest struct {
	conductor.TaskResult
	Lease int `json:"lease,omitempty"`
	Next  *struct {
		WorkerID string `json:"workerId,omitempty"`
		WaitMs   int64  `json:"waitMs,omitempty"`
	} `json:"next,omitempty"`
}

// unmarshalNewCases are results that UnmarshalNew must read exactly as
// Unmarshal does, each a way in which encoding/json/v2 and encoding/json
// differ, or the numbers Normalize converts.
var unmarshalNewCases = []string{
	`{"taskId":"t1","workflowInstanceId":"w1","status":"COMPLETED","outputData":{"v":2,"s":"x"},"workerId":"k","lease":3,"next":{"workerId":"k","waitMs":1000}}`,
	// Numbers in untyped values: int64 when whole, float64, or the text
	// when neither holds them.
	`{"taskId":"t1","outputData":{"big":9007199254740993,"f":2.5,"e":1e2,"whole":2.0,"huge":1e400,"neg":-0,"list":[1,2.5,[3]],"deep":{"n":{"m":7}}}}`,
	`{"taskId":"t1","outputData":{"over":123456789012345678901234567890}}`,
	// Names in another case, or another spelling v2 would fold.
	`{"TASKID":"t1","WorkflowInstanceId":"w1","Status":"FAILED"}`,
	`{"task_id":"t1","workflow-instance-id":"w1"}`,
	`{"taſkId":"t1"}`,
	`{"taskId":"t1","next":{"WORKERID":"k"}}`,
	`{"taskId":"t1","logs":[{"Log":"line","createdTime":1}]}`,
	// Duplicates: the last wins.
	`{"taskId":"t1","taskId":"t2"}`,
	`{"taskId":"t1","outputData":{"a":1,"a":2}}`,
	`{"taskId":"t1","outputData":{"a":1},"outputData":{"b":2}}`,
	// Scalars of another type, which Unmarshal coerces or refuses.
	`{"taskId":"t1","callbackAfterSeconds":"30"}`,
	`{"taskId":"t1","callbackAfterSeconds":30.0}`,
	`{"taskId":"t1","callbackAfterSeconds":1e2}`,
	`{"taskId":"t1","callbackAfterSeconds":99999999999999999999}`,
	`{"taskId":7}`,
	`{"taskId":"t1","extendLease":"true"}`,
	`{"taskId":"t1","lease":"2"}`,
	// Nulls, unknown members, strings v2 reads otherwise.
	`{"taskId":null,"outputData":null,"logs":null,"next":null}`,
	`{"taskId":"t1","outputData":{"n":null,"b":true,"e":{},"l":[]}}`,
	`{"taskId":"t1","externalOutputPayloadStoragePath":"x","unknown":{"a":1}}`,
	"{\"taskId\":\"t\xff1\"}",
	`{"taskId":"\ud800x","outputData":{"s":"\udc00\u00e9"}}`,
	`{"taskId":"t1","outputData":{"\u0074":"escaped key"}}`,
	// Not a result at all.
	`{"taskId":"t1"} trailing`,
	`{"taskId":"t1"`,
	`[]`,
	`null`,
	``,
}

// UnmarshalNew reads every result as Unmarshal does: the same value, or
// an error from both.
func TestUnmarshalNewReadsAsUnmarshal(t *testing.T) {
	t.Parallel()
	for _, body := range unmarshalNewCases {
		t.Run(body, func(t *testing.T) { sameAsUnmarshal(t, []byte(body)) })
	}
}

func FuzzUnmarshalNew(f *testing.F) {
	for _, body := range unmarshalNewCases {
		f.Add([]byte(body))
	}
	f.Fuzz(sameAsUnmarshal)
}

func sameAsUnmarshal(t *testing.T, body []byte) {
	var want, got resultRequest
	wantErr := conductor.Unmarshal(body, &want)
	gotErr := conductor.UnmarshalNew(body, &got)
	if (wantErr == nil) != (gotErr == nil) {
		t.Fatalf("%q: Unmarshal: %v, UnmarshalNew: %v", body, wantErr, gotErr)
	}
	if wantErr == nil && !reflect.DeepEqual(got, want) {
		t.Fatalf("%q:\nUnmarshal    %s\nUnmarshalNew %s", body, show(want), show(got))
	}
}

func show(r resultRequest) string { return fmt.Sprintf("%#v next %#v", r, r.Next) }

// BenchmarkUnmarshalResult decodes a NATS worker's usual result with
// Unmarshal and with UnmarshalNew (go test -bench UnmarshalResult
// ./schemas/conductor).
func BenchmarkUnmarshalResult(b *testing.B) {
	body := []byte(unmarshalNewCases[0])
	for name, unmarshal := range map[string]func([]byte, any) error{"Unmarshal": conductor.Unmarshal, "UnmarshalNew": conductor.UnmarshalNew} {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				var r resultRequest
				if err := unmarshal(body, &r); err != nil || r.TaskID != "t1" {
					b.Fatal(r, err)
				}
			}
		})
	}
}
