package metadata_test

import (
	"errors"
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
	}, "")
	if got, want := paths(t, err), "[1].tasks[0].taskReferenceName [2] [3].version [3].tasks"; got != want {
		t.Fatalf("paths = %q, want %q", got, want)
	}
	if all, _ := n.md.ListWorkflowDefs(c); len(all) != 0 {
		t.Fatalf("a partly invalid bulk request stored %d definitions", len(all))
	}
	if _, err := n.md.PutWorkflowDefs(c, nil, ""); !errors.Is(err, fault.ErrInvalid) {
		t.Fatalf("empty list: %v", err)
	}
	resp, err := n.md.PutWorkflowDefs(c, []*conductor.WorkflowDef{wf(t, simpleWF("x", 1, "")), wf(t, simpleWF("y", 1, ""))}, "")
	if err != nil || strings.Join(resp.BulkSuccessfulResults, " ") != "x y" || len(resp.BulkErrorResults) != 0 {
		t.Fatalf("bulk = %+v, %v", resp, err)
	}
	// PUT overwrites.
	if _, err := n.md.PutWorkflowDefs(c, []*conductor.WorkflowDef{wf(t, simpleWF("x", 1, "again"))}, ""); err != nil {
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
		return nil
	}
	n := newNode(t, nil, metadata.Options{ValidateWorkflow: hook})
	c := ctx(t)
	bad := `{"name":"h","tasks":[{"name":"t","taskReferenceName":"r","type":"NOPE"}]}`
	if got := paths(t, n.md.RegisterWorkflowDef(c, wf(t, bad), false, "")); got != "tasks[0].type" {
		t.Fatalf("paths = %q", got)
	}
	_, err := n.md.PutWorkflowDefs(c, []*conductor.WorkflowDef{wf(t, simpleWF("h", 1, "")), wf(t, bad)}, "")
	if got := paths(t, err); got != "[1].tasks[0].type" {
		t.Fatalf("bulk paths = %q", got)
	}
	if err := n.md.RegisterWorkflowDef(c, wf(t, simpleWF("h", 1, "plain")), false, ""); !errors.Is(err, fault.ErrInvalid) {
		t.Fatalf("plain hook error: %v", err)
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
