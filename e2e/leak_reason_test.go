package e2e_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/flowvault/flowvault/internal/leaktest"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/workers"
)

// A worker's reason is shown cut to 500 characters, as Conductor's
// TaskResult cuts it. A secret the reason echoes across the cut is
// redacted whole before the cut is made: neither the value nor the part of
// it a cut made first would leave is stored or shown anywhere.
func TestSecretAcrossTheReasonCut(t *testing.T) {
	t.Parallel()
	tok := "lk-" + alnum(24)
	const before = 12 // of tok's characters before the cut
	filler := strings.Repeat("x", conductor.MaxResultReason-before)
	scanners := []*leaktest.Scanner{leaktest.New([]byte(tok)), leaktest.New([]byte(tok[:before]))}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	n := startLeakNode(ctx, t, nil)
	e := n.env(t, scanners...)
	e.putSecret("tok", tok)
	e.work("rc_echo", 1, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		return workers.Output{}, errors.New(filler + task.InputData["s"].(string) + strings.Repeat("y", 100))
	})
	e.register(`{"name":"rc_echo","tasks":[
		{"name":"rc_echo","taskReferenceName":"echo","retryCount":0,"inputParameters":{"s":"${workflow.secrets.tok}"}}]}`)
	wf := e.waitStatus(e.start("rc_echo", nil), conductor.WorkflowFailed)
	echo := taskByRef(wf, "echo")
	if got := echo.ReasonForIncompletion; len(got) > conductor.MaxResultReason || !strings.HasPrefix(got, filler) {
		t.Fatalf("the task shows a reason of %d characters (%.20q…), want at most %d starting with the worker's text",
			len(got), got, conductor.MaxResultReason)
	}
	e.must(http.StatusOK, "GET", "/api/tasks/"+echo.TaskID, nil)
	e.must(http.StatusOK, "GET", "/api/workflow/search?freeText=*&size=100", nil)
	e.must(http.StatusOK, "GET", "/api/tasks/search?freeText=*&size=100", nil)
	n.scanEverything(t, scanners, []string{"tok", "first part of tok"})
}
