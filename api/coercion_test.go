package api_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/flowvault/flowvault/internal/nodetest"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// strictDecode decodes body into a typed value as an SDK does
// (conductor-go: Optional bool, RetryCount int32, ...): a scalar of the
// wrong type fails it.
func strictDecode[T any](t *testing.T, what, body string) T {
	t.Helper()
	var v T
	if err := json.NewDecoder(strings.NewReader(body)).Decode(&v); err != nil {
		t.Fatalf("%s does not decode as an SDK's typed model: %v\n%s", what, err, body)
	}
	return v
}

// The typed models a client decodes (conductor-go's fields and types).
type (
	sdkWorkflowTask struct {
		Name              string `json:"name"`
		TaskReferenceName string `json:"taskReferenceName"`
		Optional          bool   `json:"optional"`
		StartDelay        int32  `json:"startDelay"`
		RetryCount        int32  `json:"retryCount"`
	}
	sdkWorkflowDef struct {
		Name           string            `json:"name"`
		Version        int32             `json:"version"`
		TimeoutSeconds int64             `json:"timeoutSeconds"`
		Restartable    bool              `json:"restartable"`
		Tasks          []sdkWorkflowTask `json:"tasks"`
	}
	sdkTaskDef struct {
		Name           string `json:"name"`
		RetryCount     int32  `json:"retryCount"`
		TimeoutSeconds int64  `json:"timeoutSeconds"`
	}
	sdkEventHandler struct {
		Name   string `json:"name"`
		Active bool   `json:"active"`
	}
)

// A definition given with scalars of the wrong type is read as Conductor's
// Jackson reads it and served as Jackson writes it back: typed, wherever
// it shows (the definition, an execution's workflowDefinition, a poll's
// workflowTask), so that an SDK decoding into typed fields gets its tasks.
// Fields flowvault does not model are served as given.
func TestCoercedDefinitionsServedTyped(t *testing.T) {
	t.Parallel()
	_, base, token := nodetest.StartSecure(t)
	admin := client{t, base, token}

	send(t, admin, "POST", "/api/metadata/workflow?overwrite=true", `{"name":"qs","version":1,"restartable":"true","x-custom":{"optional":"false"},`+
		`"tasks":[{"name":"qs_task","taskReferenceName":"q1","startDelay":"0","optional":"false","retryCount":"1"}],"timeoutSeconds":"0"}`)
	def := admin.must(http.StatusOK, "GET", "/api/metadata/workflow/qs", "")
	if got := strictDecode[sdkWorkflowDef](t, "GET /api/metadata/workflow/qs", def); got.Tasks[0].RetryCount != 1 || !got.Restartable {
		t.Errorf("definition = %+v", got)
	}
	if !strings.Contains(def, `"x-custom":{"optional":"false"}`) {
		t.Errorf("a member flowvault does not model is not served as given: %s", def)
	}
	list := admin.must(http.StatusOK, "GET", "/api/metadata/workflow", "")
	strictDecode[[]sdkWorkflowDef](t, "GET /api/metadata/workflow", list)

	id := send(t, admin, "POST", "/api/workflow", `{"name":"qs","version":"1"}`)
	task := pollOne(t, admin, "qs_task")
	if got := strictDecode[sdkWorkflowTask](t, "the poll's workflowTask", string(task.WorkflowTask)); got.Optional || got.RetryCount != 1 {
		t.Errorf("workflowTask = %+v", got)
	}
	exec := decode[struct{ WorkflowDefinition json.RawMessage }](t, admin.must(http.StatusOK, "GET", "/api/workflow/"+id, ""))
	strictDecode[sdkWorkflowDef](t, "the execution's workflowDefinition", string(exec.WorkflowDefinition))

	for _, tt := range []struct{ method, path, body, get string }{
		{"PUT", "/api/metadata/taskdefs", `{"name":"qs_put","retryCount":"2","timeoutSeconds":"60","totalTimeoutSeconds":0}`, "/api/metadata/taskdefs/qs_put"},
		{"POST", "/api/metadata/taskdefs", `[{"name":5,"retryCount":"2","timeoutSeconds":"60"}]`, "/api/metadata/taskdefs/5"},
	} {
		send(t, admin, tt.method, tt.path, tt.body)
		if got := strictDecode[sdkTaskDef](t, "GET "+tt.get, admin.must(http.StatusOK, "GET", tt.get, "")); got.RetryCount != 2 || got.TimeoutSeconds != 60 {
			t.Errorf("%s = %+v", tt.get, got)
		}
	}
	send(t, admin, "POST", "/api/event", `{"name":"qs_handler","event":"nats:qs","active":"false","actions":[{"action":"complete_task","complete_task":{"workflowId":"${w}","taskRefName":"q1"}}]}`)
	if got := strictDecode[sdkEventHandler](t, "the event handler", admin.must(http.StatusOK, "GET", "/api/event/handler/qs_handler", "")); got.Active {
		t.Errorf("handler = %+v", got)
	}
}

// Jackson reads a whole number written 30.0 or 1e2 into an integer field
// (ACCEPT_FLOAT_AS_INT); Python's json.dumps writes 3600/2 as 1800.0. A
// fraction stays refused, saying an integer is wanted.
func TestWholeNumbersInIntegerFields(t *testing.T) {
	t.Parallel()
	_, base, token := nodetest.StartSecure(t)
	admin := client{t, base, token}
	send(t, admin, "POST", "/api/metadata/workflow", `{"name":"wn","version":2.0,"timeoutSeconds":1e2,"tasks":[{"name":"wn_task","taskReferenceName":"a","retryCount":1.0}]}`)
	if got := strictDecode[sdkWorkflowDef](t, "the definition", admin.must(http.StatusOK, "GET", "/api/metadata/workflow/wn?version=2.0", "")); got.Version != 2 || got.TimeoutSeconds != 100 {
		t.Errorf("definition = %+v", got)
	}
	send(t, admin, "PUT", "/api/metadata/taskdefs", `{"name":"wn_task","timeoutSeconds":60.0,"totalTimeoutSeconds":0,"responseTimeoutSeconds":3e1}`)
	ids := []string{
		send(t, admin, "POST", "/api/workflow", `{"name":"wn","version":2.0,"priority":1.0}`),
		send(t, admin, "POST", "/api/workflow/wn?version=2.0&priority=1.0", `{}`),
	}
	for _, id := range ids {
		if got := decode[conductor.Workflow](t, admin.must(http.StatusOK, "GET", "/api/workflow/"+id, "")); got.WorkflowVersion != 2 || got.Priority != 1 {
			t.Errorf("execution %s: version %d, priority %d", id, got.WorkflowVersion, got.Priority)
		}
	}
	for i, path := range []string{"/api/tasks", "/api/tasks/update-v2"} {
		task := pollOne(t, admin, "wn_task")
		send(t, admin, "POST", path, fmt.Sprintf(`{"taskId":%q,"workflowInstanceId":%q,"status":"IN_PROGRESS","callbackAfterSeconds":30.0,"outputData":{"i":%d}}`,
			task.TaskID, task.WorkflowInstanceID, i))
	}

	for _, tt := range []struct{ name, method, path, body, msg string }{
		{"a fraction", "POST", "/api/tasks", `{"taskId":"x","workflowInstanceId":"y","status":"COMPLETED","callbackAfterSeconds":30.5}`, "must be an integer, not a JSON number 30.5"},
		{"a fraction in a definition", "POST", "/api/metadata/workflow", `{"name":"wn2","version":1.5,"tasks":[{"name":"t","taskReferenceName":"t"}]}`, "must be an integer, not a JSON number 1.5"},
		{"a fraction in a start", "POST", "/api/workflow", `{"name":"wn","version":2.5}`, "must be an integer, not a JSON number 2.5"},
		{"a fraction in a query", "POST", "/api/workflow/wn?priority=1.5", `{}`, "priority"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := admin.do(tt.method, tt.path, tt.body).expectError(t, http.StatusBadRequest, "")
			if b, _ := json.Marshal(e); !bytes.Contains(b, []byte(tt.msg)) {
				t.Errorf("error = %s, want %q", b, tt.msg)
			}
		})
	}
}

// Tags are read as every body is: {"key":5} is the key "5", on every
// resource that takes tags.
func TestTagsCoerced(t *testing.T) {
	t.Parallel()
	_, base, token := nodetest.StartSecure(t)
	admin := client{t, base, token}
	send(t, admin, "POST", "/api/metadata/workflow", `{"name":"wf1","tasks":[{"name":"t","taskReferenceName":"t"}]}`)
	send(t, admin, "PUT", "/api/metadata/taskdefs", `{"name":"t"}`)
	send(t, admin, "PUT", "/api/secrets/s1", "v")
	for _, tags := range []string{"/api/metadata/workflow/wf1/tags", "/api/metadata/task/t/tags", "/api/secrets/s1/tags"} {
		t.Run(tags, func(t *testing.T) {
			if strings.HasPrefix(tags, "/api/metadata/") { // secrets' tags are PUT only
				send(t, admin, "POST", tags, `{"key":5,"value":true}`)
				if got, want := send(t, admin, "GET", tags, ""), `[{"key":"5","value":"true"}]`; got != want {
					t.Errorf("tags = %s, want %s", got, want)
				}
			}
			send(t, admin, "PUT", tags, `[{"key":5,"value":true},{"key":"env","value":1.5}]`)
			if got, want := send(t, admin, "GET", tags, ""), `[{"key":"5","value":"true"},{"key":"env","value":"1.5"}]`; got != want {
				t.Errorf("tags = %s, want %s", got, want)
			}
		})
	}
}

// A bulk operation on no workflows is refused, as Conductor's @NotEmpty
// list refuses it: null and [] alike.
func TestBulkWithoutIDsRefused(t *testing.T) {
	t.Parallel()
	_, base, token := nodetest.StartSecure(t)
	admin := client{t, base, token}
	for _, path := range []string{"PUT /api/workflow/bulk/pause", "PUT /api/workflow/bulk/resume", "POST /api/workflow/bulk/terminate",
		"POST /api/workflow/bulk/restart", "POST /api/workflow/bulk/retry", "POST /api/workflow/bulk/delete"} {
		method, path, _ := strings.Cut(path, " ")
		for _, body := range []string{`[]`, `null`} {
			admin.do(method, path, body).expectError(t, http.StatusBadRequest, "WorkflowIds list cannot be null.")
		}
		if got := decode[conductor.BulkResponse](t, admin.must(http.StatusOK, method, path, `["nope"]`)); len(got.BulkErrorResults) != 1 {
			t.Errorf("%s %s of an unknown id = %+v", method, path, got)
		}
	}
}
