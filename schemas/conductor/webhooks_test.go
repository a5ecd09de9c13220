package conductor_test

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/flowvault/flowvault/schemas/conductor"
)

// Orkes keeps a webhook's idempotencyKey and idempotencyStrategy as text
// entries of workflowsToStart, among the versions: they are read out of
// it, every other entry is a workflow, and they are written back.
func TestWebhookConfigIdempotencyRoundTrip(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, in string
		want     conductor.WebhookConfig
		out      string // workflowsToStart written back; in's when ""
	}{
		{"orkes", `{"name":"h","workflowsToStart":{"flow":1,"other":0,"idempotencyKey":"${workflow.input.id}","idempotencyStrategy":"RETURN_EXISTING"}}`,
			conductor.WebhookConfig{Name: "h", WorkflowsToStart: map[string]int{"flow": 1, "other": 0},
				IdempotencyKey: "${workflow.input.id}", IdempotencyStrategy: "RETURN_EXISTING"}, ""},
		{"key alone", `{"name":"h","workflowsToStart":{"flow":0,"idempotencyKey":"${workflow.input.id}"}}`,
			conductor.WebhookConfig{Name: "h", WorkflowsToStart: map[string]int{"flow": 0}, IdempotencyKey: "${workflow.input.id}"}, ""},
		{"versions alone", `{"name":"h","workflowsToStart":{"flow":2}}`,
			conductor.WebhookConfig{Name: "h", WorkflowsToStart: map[string]int{"flow": 2}}, ""},
		{"none", `{"name":"h"}`, conductor.WebhookConfig{Name: "h"}, "null"},
		{"coerced", `{"name":"h","createTime":"5","workflowsToStart":{"flow":"2","idempotencyKey":42}}`,
			conductor.WebhookConfig{Name: "h", CreateTime: 5, WorkflowsToStart: map[string]int{"flow": 2}, IdempotencyKey: "42"},
			`{"flow":2,"idempotencyKey":"42"}`},
		{"null entries", `{"name":"h","workflowsToStart":{"flow":1,"idempotencyKey":null,"idempotencyStrategy":null}}`,
			conductor.WebhookConfig{Name: "h", WorkflowsToStart: map[string]int{"flow": 1}}, `{"flow":1}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, decode := range []struct {
				name string
				fn   func([]byte, any) error
			}{{"Unmarshal", conductor.Unmarshal}, {"json", json.Unmarshal}} {
				var got conductor.WebhookConfig
				if err := decode.fn([]byte(tc.in), &got); err != nil {
					t.Fatalf("%s: %v", decode.name, err)
				}
				if !reflect.DeepEqual(got, tc.want) {
					t.Fatalf("%s: decoded %+v, want %+v", decode.name, got, tc.want)
				}
			}
			b, err := json.Marshal(&tc.want)
			if err != nil {
				t.Fatal(err)
			}
			var back, in map[string]json.RawMessage
			if err := json.Unmarshal(b, &back); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal([]byte(tc.in), &in); err != nil {
				t.Fatal(err)
			}
			want := in["workflowsToStart"]
			if tc.out != "" {
				want = json.RawMessage(tc.out)
			}
			if tc.out == "null" {
				if _, ok := back["workflowsToStart"]; ok {
					t.Fatalf("wrote %s, want no workflowsToStart", b)
				}
				return
			}
			var gotStart, wantStart map[string]any
			if err := json.Unmarshal(back["workflowsToStart"], &gotStart); err != nil {
				t.Fatalf("%s: %v", b, err)
			}
			if err := json.Unmarshal(want, &wantStart); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(gotStart, wantStart) {
				t.Fatalf("wrote workflowsToStart %s, want %s", back["workflowsToStart"], want)
			}
			// A value, as a list of configurations holds them, writes the
			// same.
			if v, err := json.Marshal(tc.want); err != nil || string(v) != string(b) {
				t.Fatalf("by value: %s, %v; want %s", v, err, b)
			}
		})
	}
}

// An entry that is neither a version nor one of the two is refused, as a
// version that was not a number was.
func TestWebhookConfigWorkflowsToStartRefused(t *testing.T) {
	t.Parallel()
	for _, in := range []string{
		`{"name":"h","workflowsToStart":{"flow":"latest"}}`,
		`{"name":"h","workflowsToStart":{"flow":1,"idempotencyKey":{"a":1}}}`,
		`{"name":"h","workflowsToStart":{"flow":1,"idempotencyStrategy":["FAIL"]}}`,
		`{"name":"h","workflowsToStart":[1]}`,
	} {
		var c conductor.WebhookConfig
		if err := conductor.Unmarshal([]byte(in), &c); err == nil {
			t.Errorf("%s: decoded %+v, want an error", in, c)
		}
	}
}
