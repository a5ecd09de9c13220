package metadata_test

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/metadata"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// paths returns the JSON paths of a validation error, or fails.
func paths(tb testing.TB, err error) string {
	tb.Helper()
	var ve *fault.ValidationError
	if !errors.As(err, &ve) || !errors.Is(err, fault.ErrInvalid) {
		tb.Fatalf("err = %v, want a validation error", err)
	}
	var ps []string
	for _, f := range ve.Fields {
		ps = append(ps, f.Path)
	}
	return strings.Join(ps, " ")
}

func TestWorkflowValidation(t *testing.T) {
	t.Parallel()
	n := newNode(t, nil, metadata.Options{})
	task := `{"name":"t","taskReferenceName":"r"}`
	tests := []struct {
		name, def, want string
	}{
		{"no name", `{"tasks":[` + task + `]}`, "name"},
		{"empty name", `{"name":"","tasks":[` + task + `]}`, "name"},
		{"long name", `{"name":"` + strings.Repeat("n", metadata.MaxNameLen+1) + `","tasks":[` + task + `]}`, "name"},
		{"control character", `{"name":"a\nb","tasks":[` + task + `]}`, "name"},
		{"no tasks", `{"name":"w"}`, "tasks"},
		{"empty tasks", `{"name":"w","tasks":[]}`, "tasks"},
		{"version 0", `{"name":"w","version":0,"tasks":[` + task + `]}`, "version"},
		{"negative version", `{"name":"w","version":-2,"tasks":[` + task + `]}`, "version"},
		{"task without reference", `{"name":"w","tasks":[` + task + `,` + task + `,{"name":"x"}]}`, "tasks[2].taskReferenceName"},
		{"null task", `{"name":"w","tasks":[null]}`, "tasks[0]"},
		{"nested tasks", `{"name":"w","tasks":[{"name":"s","taskReferenceName":"s","type":"SWITCH",
			"decisionCases":{"b":[{"name":"x"}],"a":[{"taskReferenceName":"y"}]},"defaultCase":[{}]},
			{"name":"f","taskReferenceName":"f","type":"FORK_JOIN","forkTasks":[[` + task + `],[{"name":"z"}]]},
			{"name":"l","taskReferenceName":"l","type":"DO_WHILE","loopOver":[{"name":"q"}]}]}`,
			"tasks[0].decisionCases.a[0].name tasks[0].decisionCases.b[0].taskReferenceName tasks[0].defaultCase[0].name tasks[0].defaultCase[0].taskReferenceName tasks[1].forkTasks[1][0].taskReferenceName tasks[2].loopOver[0].taskReferenceName"},
		{"tag without key", `{"name":"w","tasks":[` + task + `],"tags":[{"value":"v"}]}`, "tags[0].key"},
		{"overwriteTags not a boolean", `{"name":"w","tasks":[` + task + `],"overwriteTags":"yes"}`, "overwriteTags"},
		{"several", `{"name":"","version":0}`, "name version tasks"},
		{"misspelt timeoutPolicy", `{"name":"w","tasks":[` + task + `],"timeoutPolicy":"TIMEOUT_WF"}`, "timeoutPolicy"},
		{"task-only timeoutPolicy", `{"name":"w","tasks":[` + task + `],"timeoutPolicy":"RETRY"}`, "timeoutPolicy"},
		{"negative timeoutSeconds", `{"name":"w","tasks":[` + task + `],"timeoutSeconds":-1}`, "timeoutSeconds"},
		{"schemaVersion 1", `{"name":"w","tasks":[` + task + `],"schemaVersion":1}`, "schemaVersion"},
		{"inline schema that does not compile", `{"name":"w","tasks":[` + task + `],"inputSchema":{"name":"s","data":{"type":"strung"}}}`, "inputSchema"},
		{"schema without name or data", `{"name":"w","tasks":[` + task + `],"outputSchema":{"version":2}}`, "outputSchema.name"},
		{"task's inline schema", `{"name":"w","tasks":[{"name":"t","taskReferenceName":"r","taskDefinition":{"name":"t","outputSchema":{"name":"s","type":"AVRO"}}}]}`,
			"tasks[0].taskDefinition.outputSchema.type"},
		{"schemaVersion 0", `{"name":"w","tasks":[` + task + `],"schemaVersion":0}`, "schemaVersion"},
		{"negative startDelay", `{"name":"w","tasks":[{"name":"t","taskReferenceName":"r","startDelay":-5}]}`, "tasks[0].startDelay"},
		{"negative retryCount", `{"name":"w","tasks":[` + task + `,{"name":"t","taskReferenceName":"s","retryCount":-1}]}`, "tasks[1].retryCount"},
		{"nested negative retryCount", `{"name":"w","tasks":[{"name":"f","taskReferenceName":"f","type":"FORK_JOIN",
			"forkTasks":[[{"name":"t","taskReferenceName":"r","retryCount":-1,"startDelay":-1}]]}]}`,
			"tasks[0].forkTasks[0][0].startDelay tasks[0].forkTasks[0][0].retryCount"},
		{"inline task definition", `{"name":"w","tasks":[{"name":"t","taskReferenceName":"r","taskDefinition":{"name":"t","retryLogic":"EXPONENTIAL"}}]}`,
			"tasks[0].taskDefinition.retryLogic"},
		{"inline task definition's inputTemplate", `{"name":"w","tasks":[{"name":"t","taskReferenceName":"r","taskDefinition":{"name":"t","inputTemplate":{"k":"${workflow.input.${workflow.env.key}}"}}}]}`,
			"tasks[0].taskDefinition.inputTemplate.k"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := n.md.RegisterWorkflowDef(ctx(t), wf(t, tt.def), false, "")
			if got := paths(t, err); got != tt.want {
				t.Fatalf("paths = %q, want %q (%v)", got, tt.want, err)
			}
		})
	}
	if all, err := n.md.ListWorkflowDefs(ctx(t)); err != nil || len(all) != 0 {
		t.Fatalf("invalid definitions were stored: %d, %v", len(all), err)
	}
	if err := n.md.RegisterWorkflowDef(ctx(t), nil, false, ""); !errors.Is(err, fault.ErrInvalid) {
		t.Fatalf("nil definition: %v", err)
	}
	if err := n.md.RegisterWorkflowDef(ctx(t), wf(t, `null`), false, ""); !errors.Is(err, fault.ErrInvalid) {
		t.Fatalf("null definition: %v", err)
	}

	// The values Conductor takes stay valid, as does every field left
	// out: the checks of policies and numbers refuse only what it refuses.
	for i, extra := range []string{
		``,
		`,"timeoutPolicy":"TIME_OUT_WF","timeoutSeconds":60`,
		`,"timeoutPolicy":"ALERT_ONLY","timeoutSeconds":0`,
		`,"timeoutPolicy":""`,
		`,"schemaVersion":2`,
		`,"schemaVersion":null`,
	} {
		def := `{"name":"w` + strconv.Itoa(i) + `","tasks":[{"name":"t","taskReferenceName":"r","startDelay":0,"retryCount":0},
			{"name":"t","taskReferenceName":"s","startDelay":10,"retryCount":5}]` + extra + `}`
		if err := n.md.RegisterWorkflowDef(ctx(t), wf(t, def), false, ""); err != nil {
			t.Errorf("%s: %v", def, err)
		}
	}
}

// A task definition's policies must be Conductor's and its numbers in
// Conductor's ranges; the paths name the field, under its index in a list.
func TestTaskDefValidation(t *testing.T) {
	t.Parallel()
	n := newNode(t, nil, metadata.Options{})
	c := ctx(t)
	tests := []struct {
		name, field, want string
	}{
		{"misspelt timeoutPolicy", `"timeoutPolicy":"TIMEOUT_WF"`, "timeoutPolicy"},
		{"lower-case timeoutPolicy", `"timeoutPolicy":"retry"`, "timeoutPolicy"},
		{"misspelt retryLogic", `"retryLogic":"EXPONENTIAL"`, "retryLogic"},
		{"negative retryCount", `"retryCount":-1`, "retryCount"},
		{"negative timeoutSeconds", `"timeoutSeconds":-1`, "timeoutSeconds"},
		{"negative retryDelaySeconds", `"retryDelaySeconds":-1`, "retryDelaySeconds"},
		{"zero responseTimeoutSeconds", `"responseTimeoutSeconds":0`, "responseTimeoutSeconds"},
		{"responseTimeoutSeconds past timeoutSeconds", `"responseTimeoutSeconds":61,"timeoutSeconds":60`, "responseTimeoutSeconds"},
		{"negative concurrentExecLimit", `"concurrentExecLimit":-1`, "concurrentExecLimit"},
		{"negative rateLimitPerFrequency", `"rateLimitPerFrequency":-1`, "rateLimitPerFrequency"},
		{"negative rateLimitFrequencyInSeconds", `"rateLimitFrequencyInSeconds":-1`, "rateLimitFrequencyInSeconds"},
		{"negative pollTimeoutSeconds", `"pollTimeoutSeconds":-1`, "pollTimeoutSeconds"},
		{"zero backoffScaleFactor", `"backoffScaleFactor":0`, "backoffScaleFactor"},
		{"negative totalTimeoutSeconds", `"totalTimeoutSeconds":-1`, "totalTimeoutSeconds"},
		{"timeoutSeconds past totalTimeoutSeconds", `"timeoutSeconds":1000,"totalTimeoutSeconds":900`, "timeoutSeconds"},
		{"negative maxRetryDelaySeconds", `"maxRetryDelaySeconds":-1`, "maxRetryDelaySeconds"},
		{"negative backoffJitterMs", `"backoffJitterMs":-1`, "backoffJitterMs"},
		{"several", `"retryLogic":"NONE","retryCount":-3,"timeoutPolicy":"NEVER"`, "timeoutPolicy retryLogic retryCount"},
		{"schema reading a file", `"inputSchema":{"name":"s","data":{"$ref":"file:///etc/hostname"}}`, "inputSchema"},
		// The engine evaluates a task's input over its inputTemplate,
		// where a secret or environment value read from the document
		// reads null (expr.MisplacedDeferred).
		{"inputTemplate reading a secret as a path", `"inputTemplate":{"k":"${$.workflow.secrets.tok}"}`, "inputTemplate.k"},
		{"inputTemplate concat of an environment value", `"inputTemplate":{"h":{"a":"${$.concat('k-', $.workflow.env.region)}"}}`, "inputTemplate.h.a"},
		// Or by a name no secret or environment value can have.
		{"inputTemplate reading a secret no secret can be", `"inputTemplate":{"k":"Bearer ${workflow.secrets.a b}"}`, "inputTemplate.k"},
		{"inputTemplate reading an environment value by an empty name", `"inputTemplate":{"k":"${workflow.env.}"}`, "inputTemplate.k"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := paths(t, n.md.UpdateTaskDef(c, td(t, `{"name":"x",`+tt.field+`}`), "")); got != tt.want {
				t.Fatalf("paths = %q, want %q", got, tt.want)
			}
		})
	}
	err := n.md.RegisterTaskDefs(c, []*conductor.TaskDef{td(t, `{"name":"a"}`), td(t, `{"name":"b","retryLogic":"FIXD"}`)}, "")
	if got := paths(t, err); got != "[1].retryLogic" {
		t.Fatalf("bulk paths = %q, want [1].retryLogic", got)
	}
	if _, err := n.md.GetTaskDef(c, "x"); !errors.Is(err, fault.ErrNotFound) {
		t.Fatalf("an invalid definition was stored: %v", err)
	}

	// Every value Conductor takes, the boundaries included, and nothing
	// at all: absent fields get their defaults.
	valid := []string{
		`{"name":"v0"}`,
		`{"name":"v1","timeoutPolicy":"RETRY","retryLogic":"FIXED"}`,
		`{"name":"v2","timeoutPolicy":"TIME_OUT_WF","retryLogic":"EXPONENTIAL_BACKOFF"}`,
		`{"name":"v3","timeoutPolicy":"ALERT_ONLY","retryLogic":"LINEAR_BACKOFF","backoffScaleFactor":1}`,
		`{"name":"v4","retryCount":0,"timeoutSeconds":0,"retryDelaySeconds":0,"responseTimeoutSeconds":1,"concurrentExecLimit":0,
			"rateLimitPerFrequency":0,"rateLimitFrequencyInSeconds":0,"pollTimeoutSeconds":0,"totalTimeoutSeconds":0,
			"maxRetryDelaySeconds":0,"backoffJitterMs":0}`,
		`{"name":"v6","timeoutSeconds":900,"totalTimeoutSeconds":900,"responseTimeoutSeconds":900}`,
		`{"name":"v7","timeoutSeconds":1000,"totalTimeoutSeconds":0,"responseTimeoutSeconds":60}`,
		`{"name":"v8","timeoutSeconds":0,"totalTimeoutSeconds":60}`,
		`{"name":"v5","timeoutPolicy":"","retryLogic":"","retryCount":null,"responseTimeoutSeconds":null,"backoffScaleFactor":null}`,
		`{"name":"v9","inputTemplate":{"k":"${workflow.secrets.tok}","r":"${workflow.env.region}","c":"${$.concat('k-', $.workflow.input.id)}"}}`,
	}
	defs := make([]*conductor.TaskDef, len(valid))
	for i, js := range valid {
		defs[i] = td(t, js)
	}
	if err := n.md.RegisterTaskDefs(c, defs, ""); err != nil {
		t.Fatalf("valid definitions refused: %v", err)
	}
}

// A definition built in Go (no raw JSON) is stored as its encoding, with
// version 0 meaning "absent".
func TestWorkflowBuiltInGo(t *testing.T) {
	t.Parallel()
	n := newNode(t, nil, metadata.Options{})
	def := &conductor.WorkflowDef{Name: "go", Tasks: []*conductor.WorkflowTask{{Name: "t", TaskReferenceName: "r"}}}
	if err := n.md.RegisterWorkflowDef(ctx(t), def, false, ""); err != nil {
		t.Fatal(err)
	}
	got, err := n.md.GetWorkflowDef(ctx(t), "go", nil)
	if err != nil || got.Version != 1 || got.Tasks[0].TaskReferenceName != "r" {
		t.Fatalf("got %v, %v", got, err)
	}
}

func TestBulkValidation(t *testing.T) {
	t.Parallel()
	n := newNode(t, nil, metadata.Options{})
	c := ctx(t)
	_, err := n.md.PutWorkflowDefs(c, []*conductor.WorkflowDef{
		wf(t, simpleWF("ok", 1, "")), wf(t, `{"name":"bad","tasks":[{"name":"t"}]}`), nil, wf(t, `{"name":"v","version":0}`),
	}, true, "")
	if got, want := paths(t, err), "[1].tasks[0].taskReferenceName [2] [3].version [3].tasks"; got != want {
		t.Fatalf("paths = %q, want %q", got, want)
	}
	if all, _ := n.md.ListWorkflowDefs(c); len(all) != 0 {
		t.Fatalf("a partly invalid bulk request stored %d definitions", len(all))
	}
	if _, err := n.md.PutWorkflowDefs(c, nil, true, ""); !errors.Is(err, fault.ErrInvalid) {
		t.Fatalf("empty list: %v", err)
	}
	resp, err := n.md.PutWorkflowDefs(c, []*conductor.WorkflowDef{wf(t, simpleWF("x", 1, "")), wf(t, simpleWF("y", 1, ""))}, true, "")
	if err != nil || strings.Join(resp.BulkSuccessfulResults, " ") != "x y" || len(resp.BulkErrorResults) != 0 {
		t.Fatalf("bulk = %+v, %v", resp, err)
	}
	// PUT overwrites.
	if _, err := n.md.PutWorkflowDefs(c, []*conductor.WorkflowDef{wf(t, simpleWF("x", 1, "again"))}, true, ""); err != nil {
		t.Fatal(err)
	}

	err = n.md.RegisterTaskDefs(c, []*conductor.TaskDef{td(t, `{"name":"fine"}`), td(t, `{"description":"no name"}`)}, "")
	if got := paths(t, err); got != "[1].name" {
		t.Fatalf("task paths = %q", got)
	}
	if _, err := n.md.GetTaskDef(c, "fine"); !errors.Is(err, fault.ErrNotFound) {
		t.Fatalf("a partly invalid task list stored a definition: %v", err)
	}
	if err := n.md.RegisterTaskDefs(c, nil, ""); !errors.Is(err, fault.ErrInvalid) {
		t.Fatalf("empty task list: %v", err)
	}
	if got := paths(t, n.md.UpdateTaskDef(c, td(t, `{"name":""}`), "")); got != "name" {
		t.Fatalf("update paths = %q", got)
	}
}

// The engine's validation runs after the basic checks, and its paths are
// placed under the definition's index in bulk requests.
func TestValidateWorkflowHook(t *testing.T) {
	t.Parallel()
	calls := 0
	hook := func(def *conductor.WorkflowDef) error {
		calls++
		for i, task := range def.Tasks {
			if task.TaskType() == "NOPE" {
				ve := &fault.ValidationError{}
				ve.Add("tasks["+string(rune('0'+i))+"].type", "unknown task type %q", task.Type)
				return ve
			}
		}
		if def.Description == "plain" {
			return errors.New("plain error")
		}
		if def.Description == "large" {
			return fmt.Errorf("variables: too many bytes: %w", fault.ErrTooLarge)
		}
		return nil
	}
	n := newNode(t, nil, metadata.Options{ValidateWorkflow: hook})
	c := ctx(t)
	bad := `{"name":"h","tasks":[{"name":"t","taskReferenceName":"r","type":"NOPE"}]}`
	if got := paths(t, n.md.RegisterWorkflowDef(c, wf(t, bad), false, "")); got != "tasks[0].type" {
		t.Fatalf("paths = %q", got)
	}
	_, err := n.md.PutWorkflowDefs(c, []*conductor.WorkflowDef{wf(t, simpleWF("h", 1, "")), wf(t, bad)}, true, "")
	if got := paths(t, err); got != "[1].tasks[0].type" {
		t.Fatalf("bulk paths = %q", got)
	}
	if err := n.md.RegisterWorkflowDef(c, wf(t, simpleWF("h", 1, "plain")), false, ""); !errors.Is(err, fault.ErrInvalid) {
		t.Fatalf("plain hook error: %v", err)
	}
	// A size limit's refusal stays one (413 over HTTP), in a list under
	// the definition's index.
	_, err = n.md.PutWorkflowDefs(c, []*conductor.WorkflowDef{wf(t, simpleWF("h", 1, "")), wf(t, simpleWF("h", 2, "large"))}, true, "")
	if !errors.Is(err, fault.ErrTooLarge) || errors.Is(err, fault.ErrInvalid) || !strings.HasPrefix(err.Error(), "[1]: variables: ") {
		t.Fatalf("too large hook error: %v", err)
	}
	// Definitions that fail the basic checks never reach the hook.
	before := calls
	_ = n.md.RegisterWorkflowDef(c, wf(t, `{"name":"h"}`), false, "")
	if calls != before {
		t.Fatal("hook ran on a definition without tasks")
	}
	if err := n.md.RegisterWorkflowDef(c, wf(t, simpleWF("h", 1, "")), false, ""); err != nil {
		t.Fatal(err)
	}
}
