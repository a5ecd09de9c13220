package engine_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// A rateLimitConfig's key is text of the start's correlation id, input,
// name and version; one that would keep a secret, an environment value or
// a masked field in the clear is refused, and one that reads empty limits
// nothing, as Orkes leaves a workflow without a correlation id unlimited.
func TestRateLimitOf(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name, config string
		input        map[string]any
		corr         string
		want         *engine.RateLimit
		invalid      bool
		fromWorkflow bool // a SUB_WORKFLOW's or START_WORKFLOW's start
	}{
		{name: "none", config: ``},
		{name: "no limit", config: `{"rateLimitKey":"k"}`},
		{name: "limit 0", config: `{"rateLimitKey":"k","concurrentExecLimit":0}`},
		{name: "negative limit", config: `{"rateLimitKey":"k","concurrentExecLimit":-3}`},
		{name: "no key: the definition's", config: `{"concurrentExecLimit":2}`, want: &engine.RateLimit{Limit: 2}},
		{name: "literal key", config: `{"rateLimitKey":"http","concurrentExecLimit":3}`, want: &engine.RateLimit{Limit: 3, Key: "http"}},
		{name: "correlation id", config: `{"rateLimitKey":"${workflow.correlationId}","concurrentExecLimit":1}`, corr: "c1",
			want: &engine.RateLimit{Limit: 1, Key: "c1"}},
		{name: "no correlation id", config: `{"rateLimitKey":"${workflow.correlationId}","concurrentExecLimit":1}`},
		{name: "input", config: `{"rateLimitKey":"tenant-${workflow.input.tenant}","concurrentExecLimit":2}`,
			input: map[string]any{"tenant": "acme"}, want: &engine.RateLimit{Limit: 2, Key: "tenant-acme"}},
		{name: "input template fills the input", config: `{"rateLimitKey":"${workflow.input.region}","concurrentExecLimit":2}`,
			want: &engine.RateLimit{Limit: 2, Key: "eu"}},
		{name: "name and version", config: `{"rateLimitKey":"${workflow.workflowType}:${workflow.version}","concurrentExecLimit":2}`,
			want: &engine.RateLimit{Limit: 2, Key: "rl:3"}},
		{name: "number as text", config: `{"rateLimitKey":"${workflow.input.n}","concurrentExecLimit":"2"}`,
			input: map[string]any{"n": json.Number("7")}, want: &engine.RateLimit{Limit: 2, Key: "7"}},
		{name: "number as a double", config: `{"rateLimitKey":"${workflow.input.n}","concurrentExecLimit":2}`,
			input: map[string]any{"n": float64(1)}, want: &engine.RateLimit{Limit: 2, Key: "1"}},
		{name: "a boolean", config: `{"rateLimitKey":"${workflow.input.b}","concurrentExecLimit":2}`,
			input: map[string]any{"b": true}, want: &engine.RateLimit{Limit: 2, Key: "true"}},
		{name: "secret", config: `{"rateLimitKey":"${workflow.secrets.tok}","concurrentExecLimit":1}`, invalid: true},
		{name: "environment value", config: `{"rateLimitKey":"a-${workflow.env.region}","concurrentExecLimit":1}`, invalid: true},
		{name: "masked field", config: `{"rateLimitKey":"${workflow.input.card}","concurrentExecLimit":1}`,
			input: map[string]any{"card": "4111"}, invalid: true},
		{name: "under _secrets", config: `{"rateLimitKey":"${workflow.input.a._secrets.k}","concurrentExecLimit":1}`,
			input: map[string]any{"a": map[string]any{"_secrets": map[string]any{"k": "v"}}}, invalid: true},
		{name: "_masked whole", config: `{"rateLimitKey":"x${workflow.input._masked}","concurrentExecLimit":1}`,
			input: map[string]any{"_masked": map[string]any{"k": "v"}}, invalid: true},
		// Read elsewhere too (by the key), they are sealed once the task
		// that takes them is scheduled: a queued start's key was
		// recorded before.
		{name: "an input a task takes under _secrets", config: `{"rateLimitKey":"${workflow.input.pin}","concurrentExecLimit":1}`,
			input: map[string]any{"pin": "p-123456"}, invalid: true},
		{name: "an input a task takes under _masked", config: `{"rateLimitKey":"k-${workflow.input.note}","concurrentExecLimit":1}`,
			input: map[string]any{"note": "n-123456"}, invalid: true},
		{name: "an object", config: `{"rateLimitKey":"${workflow.input.o}","concurrentExecLimit":1}`,
			input: map[string]any{"o": map[string]any{"k": "v"}}, invalid: true},
		{name: "limit not a number", config: `{"rateLimitKey":"k","concurrentExecLimit":"many"}`, invalid: true},
		{name: "limit not an integer", config: `{"rateLimitKey":"k","concurrentExecLimit":1.5}`, invalid: true},
		{name: "key not text", config: `{"rateLimitKey":5,"concurrentExecLimit":1}`, invalid: true},
		{name: "key at the bound", config: `{"rateLimitKey":"k-${workflow.correlationId}","concurrentExecLimit":1}`,
			corr: strings.Repeat("c", engine.MaxRateLimitKeyLen-2), want: &engine.RateLimit{Limit: 1, Key: "k-" + strings.Repeat("c", engine.MaxRateLimitKeyLen-2)}},
		{name: "key over the bound", config: `{"rateLimitKey":"k-${workflow.correlationId}","concurrentExecLimit":1}`,
			corr: strings.Repeat("c", engine.MaxRateLimitKeyLen-1), invalid: true},
		// A child's input and correlation id are its starter's data,
		// where "***" is a value redacted (a variable set from a
		// secret): keyed so, every such child shared one line.
		{name: "a child's input redacted", config: `{"rateLimitKey":"${workflow.input.tenant}","concurrentExecLimit":1}`,
			input: map[string]any{"tenant": "***"}, fromWorkflow: true, invalid: true},
		{name: "a child's input holding a redaction", config: `{"rateLimitKey":"t-${workflow.input.a.tenant}","concurrentExecLimit":1}`,
			input: map[string]any{"a": map[string]any{"tenant": "Bearer ***"}}, fromWorkflow: true, invalid: true},
		{name: "a child's correlation id redacted", config: `{"rateLimitKey":"${workflow.correlationId}","concurrentExecLimit":1}`,
			corr: "c-***", fromWorkflow: true, invalid: true},
		{name: "a child's plain input", config: `{"rateLimitKey":"***-${workflow.input.tenant}","concurrentExecLimit":1}`,
			input: map[string]any{"tenant": "acme", "other": "***"}, fromWorkflow: true, want: &engine.RateLimit{Limit: 1, Key: "***-acme"}},
		{name: "a caller's ***", config: `{"rateLimitKey":"${workflow.input.tenant}","concurrentExecLimit":1}`,
			input: map[string]any{"tenant": "***"}, want: &engine.RateLimit{Limit: 1, Key: "***"}},
		{name: "literal key over the bound", config: `{"rateLimitKey":"` + strings.Repeat("k", engine.MaxRateLimitKeyLen+1) + `","concurrentExecLimit":1}`, invalid: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			js := `{"name":"rl","version":3,"maskedFields":["card"],"inputTemplate":{"region":"eu"},"tasks":[{"name":"t","taskReferenceName":"t"},` +
				`{"name":"u","taskReferenceName":"u","inputParameters":{"_secrets":{"p":"${workflow.input.pin}"},"_masked":{"n":"${workflow.input.note}"}}}]`
			if tt.config != "" {
				js += `,"rateLimitConfig":` + tt.config
			}
			def, req := parseDef(t, js+`}`), conductor.StartWorkflowRequest{Input: tt.input, CorrelationID: tt.corr}
			got, err := engine.RateLimitOf(def, req)
			if tt.fromWorkflow {
				got, err = engine.RateLimitUnder(def.RateLimitConfig, def, req, true)
			}
			if tt.invalid {
				wantErr(t, err, fault.ErrInvalid)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (got == nil) != (tt.want == nil) || got != nil && *got != *tt.want {
				t.Fatalf("RateLimitOf = %+v, want %+v", got, tt.want)
			}
		})
	}
}

// A queued start records the workflow RUNNING without tasks, and nothing
// but Admit schedules them: not a tick, not a resume. A second Admit, or
// one of a workflow that was never queued, changes nothing.
func TestQueuedStartWaitsForAdmit(t *testing.T) {
	t.Parallel()
	def := parseDef(t, `{"name":"rl","rateLimitConfig":{"concurrentExecLimit":1},"tasks":[
		{"name":"a","taskReferenceName":"a","type":"SIMPLE"},{"name":"b","taskReferenceName":"b","type":"SIMPLE"}]}`)
	h := newHarnessStart(t, engine.Start{WorkflowID: "wf-q", Def: def, CreatedBy: "app:tester",
		RateLimit: &engine.RateLimit{Limit: 1, Key: "k"}, Queued: true})
	h.wantStatus(conductor.WorkflowRunning)
	h.wantRefs()
	if c := h.w.Conductor(true); !c.RateLimited || c.RateLimitKey != "k" {
		t.Fatalf("queued workflow reads rateLimited %v, rateLimitKey %q", c.RateLimited, c.RateLimitKey)
	}
	h.advance(time.Hour)
	h.decide(engine.Tick{})
	h.decide(engine.Pause{})
	h.decide(engine.Resume{})
	h.wantRefs()
	for _, trig := range []engine.Trigger{engine.Jump{Ref: "b"}, engine.SkipTask{Ref: "a"}} {
		if _, err := h.try(trig); !errorsIs(err, fault.ErrConflict) {
			t.Fatalf("%T of a queued workflow: %v, want a conflict", trig, err)
		}
	}

	h.decide(engine.Admit{})
	h.wantRefs("a")
	if c := h.w.Conductor(true); c.RateLimited || c.RateLimitKey != "k" {
		t.Fatalf("admitted workflow reads rateLimited %v, rateLimitKey %q", c.RateLimited, c.RateLimitKey)
	}
	if d := h.decide(engine.Admit{}); len(d.Events) != 0 {
		t.Fatalf("second admit: %s", describe(d))
	}
	h.take("a")
	h.complete("a", nil)
	h.take("b")
	h.complete("b", nil)
	h.wantStatus(conductor.WorkflowCompleted)

	// Admitted at its start, a workflow runs at once; Admit leaves it be.
	h = newHarnessStart(t, engine.Start{WorkflowID: "wf-r", Def: def, CreatedBy: "app:tester", RateLimit: &engine.RateLimit{Limit: 1}})
	h.wantRefs("a")
	if d := h.decide(engine.Admit{}); len(d.Events) != 0 {
		t.Fatalf("admit of a running workflow: %s", describe(d))
	}
	// A queued workflow terminated ends as any other.
	h = newHarnessStart(t, engine.Start{WorkflowID: "wf-t", Def: def, CreatedBy: "app:tester", RateLimit: &engine.RateLimit{Limit: 1}, Queued: true})
	h.decide(engine.Terminate{Reason: "no"})
	h.wantStatus(conductor.WorkflowTerminated)
	if d := h.decide(engine.Admit{}); len(d.Events) != 0 {
		t.Fatalf("admit of a terminated workflow: %s", describe(d))
	}
}

// A definition whose rateLimitConfig no start could use is refused when
// it is registered.
func TestRateLimitConfigValidated(t *testing.T) {
	t.Parallel()
	for _, config := range []string{
		`{"rateLimitKey":"${workflow.secrets.tok}","concurrentExecLimit":1}`,
		`{"rateLimitKey":"${workflow.env.region}","concurrentExecLimit":1}`,
		`{"rateLimitKey":"k","concurrentExecLimit":"many"}`,
	} {
		def := parseDef(t, `{"name":"rl","tasks":[{"name":"t","taskReferenceName":"t"}],"rateLimitConfig":`+config+`}`)
		err := engine.ValidateWorkflowDef(def)
		wantErr(t, err, fault.ErrInvalid)
		if !strings.Contains(err.Error(), "rateLimitConfig") {
			t.Fatalf("%s: %v", config, err)
		}
	}
	def := parseDef(t, `{"name":"rl","tasks":[{"name":"t","taskReferenceName":"t"}],
		"rateLimitConfig":{"rateLimitKey":"${workflow.input.tenant}","concurrentExecLimit":1}}`)
	if err := engine.ValidateWorkflowDef(def); err != nil {
		t.Fatal(err)
	}
}

// A queued workflow paused keeps its turn: admitted while paused, it
// takes its place, but nothing is scheduled (a system task would run)
// until it is resumed, which schedules its first task once.
func TestQueuedWorkflowAdmittedWhilePaused(t *testing.T) {
	t.Parallel()
	for _, first := range []string{
		`{"name":"a","taskReferenceName":"a","type":"SIMPLE"}`,
		`{"name":"a","taskReferenceName":"a","type":"INLINE","inputParameters":{"evaluatorType":"graaljs","expression":"1"}}`,
	} {
		def := parseDef(t, `{"name":"rl","rateLimitConfig":{"concurrentExecLimit":1},"tasks":[`+first+`]}`)
		h := newHarnessStart(t, engine.Start{WorkflowID: "wf-p", Def: def, CreatedBy: "app:tester",
			RateLimit: &engine.RateLimit{Limit: 1, Key: "k"}, Queued: true})
		h.decide(engine.Pause{})
		d := h.decide(engine.Admit{})
		h.wantStatus(conductor.WorkflowPaused)
		h.wantRefs()
		if len(d.Effects) != 0 {
			t.Fatalf("admit while paused: %s", describe(d))
		}
		if c := h.w.Conductor(true); c.RateLimited {
			t.Fatal("a workflow admitted while paused still reads rateLimited")
		}
		h.decide(engine.Resume{})
		h.wantStatus(conductor.WorkflowRunning)
		h.wantRefs("a")
		if d := h.decide(engine.Pause{}); len(d.Events) != 1 {
			t.Fatalf("pause: %s", describe(d))
		}
		h.decide(engine.Resume{})
		h.wantRefs("a") // once
	}
}
