package guard

import (
	"testing"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/masking"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// A number the workflow sealed reaches the task it is handed to as the
// workflow read it, an integer's text an int64: written into text
// ("n=${t1.output._secrets.n}", an HTTP task's header) as Conductor's
// Java writes it, 2 as "2" and 0.5 as "0.5", and taken whole an integer,
// one past 2^53 with its digits.
func TestSealedNumbersOpenAsTheWorkflowReadThem(t *testing.T) {
	t.Parallel()
	ctx, keys := openKeys(t)
	g := New(Config{Keys: keys})
	var output map[string]any
	if err := conductor.Unmarshal([]byte(`{"_secrets":{"n":2,"neg":-3,"half":0.5,"big":9007199254740993}}`), &output); err != nil {
		t.Fatal(err)
	}
	w := protectAndFold(ctx, t, g, nil,
		&schemas.WorkflowStarted{WorkflowID: "wf-opened-numbers", Name: "w", Version: 1,
			Def: []byte(`{"name":"w","version":1,"tasks":[{"name":"t","taskReferenceName":"t1"},{"name":"h","taskReferenceName":"h","type":"HTTP"}]}`)},
		&schemas.TaskScheduled{TaskID: "t1", Ref: "t1", Name: "t", Type: "SIMPLE", Status: "SCHEDULED", Time: 1})
	w = protectAndFold(ctx, t, g, w, &schemas.TaskUpdated{TaskID: "t1", Status: conductor.TaskCompleted, Output: output, Time: 2})
	ref := func(key string) string { return "${sealed:task/t1/output._secrets." + key + "}" }
	w = protectAndFold(ctx, t, g, w, &schemas.TaskScheduled{TaskID: "h1", Ref: "h", Name: "h", Type: "HTTP", Status: "SCHEDULED", Time: 3,
		Input: map[string]any{
			"http_request": map[string]any{"uri": "http://example.com", "method": "GET",
				"headers": map[string]any{"X-N": "n=" + ref("n") + " neg=" + ref("neg") + " half=" + ref("half") + " big=" + ref("big")}},
			"n":   engine.FindSealed(w, "task/t1/output._secrets.n"),
			"big": engine.FindSealed(w, "task/t1/output._secrets.big"),
		},
		Deferred: [][]any{{"http_request", "headers", "X-N"}}})
	h := w.TaskByID("h1")
	if !masking.HasSealed(h.Input) {
		t.Fatalf("the HTTP task's input holds nothing sealed: %v", h.Input)
	}
	in, _, err := g.Prepare(ctx, w, h)
	if err != nil {
		t.Fatal(err)
	}
	header := in["http_request"].(map[string]any)["headers"].(map[string]any)["X-N"]
	if want := "n=2 neg=-3 half=0.5 big=9007199254740993"; header != want {
		t.Errorf("the header reads %q, want %q", header, want)
	}
	for key, want := range map[string]any{"n": int64(2), "big": int64(9007199254740993)} {
		if in[key] != want {
			t.Errorf("%s opens as %T %v, want %T %v", key, in[key], in[key], want, want)
		}
	}
}
