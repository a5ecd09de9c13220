package e2e_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
	"unicode/utf16"

	"github.com/flowvault/flowvault/internal/leaktest"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/workers"
)

// A worker's reason is shown cut to 500 characters, as Conductor's
// TaskResult cuts it. A secret the reason echoes across the cut, as is or
// in a form redaction knows (JSON-escaped, URL-encoded, base64), after
// characters that UTF-16 counts as one or two units, is redacted whole
// before the cut is made: neither the value nor the part of it a cut made
// first would leave is stored or shown anywhere.
func TestSecretAcrossTheReasonCut(t *testing.T) {
	t.Parallel()
	tok := `lk"q&r/+=` + alnum(24)
	forms := map[string]func(string) string{
		"raw":  func(s string) string { return s },
		"json": func(s string) string { b, _ := json.Marshal(s); return string(b[1 : len(b)-1]) },
		"url":  url.QueryEscape,
		"b64":  func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) },
	}
	const before = 12 // of the form's characters before the cut
	// 200 UTF-16 units in emoji, 100 in é, the rest in ASCII.
	filler := strings.Repeat("😀", 100) + strings.Repeat("é", 100) + strings.Repeat("x", conductor.MaxResultReason-300-before)
	scanners := []*leaktest.Scanner{leaktest.New([]byte(tok))}
	names := []string{"tok"}
	var tasks []string
	for name, form := range forms {
		scanners = append(scanners, leaktest.New([]byte(form(tok)[:before])))
		names = append(names, "first part of tok's "+name+" form")
		tasks = append(tasks, `{"name":"rc_echo","taskReferenceName":"`+name+`","optional":true,"retryCount":0,
			"inputParameters":{"s":"${workflow.secrets.tok}","form":"`+name+`"}}`)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	n := startLeakNode(ctx, t, nil)
	e := n.env(t, scanners...)
	e.putSecret("tok", tok)
	e.work("rc_echo", 1, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		form := forms[task.InputData["form"].(string)]
		return workers.Output{}, errors.New(filler + form(task.InputData["s"].(string)) + strings.Repeat("y", 100))
	})
	e.register(`{"name":"rc_echo","tasks":[` + strings.Join(tasks, ",") + `]}`)
	wf := e.waitStatus(e.start("rc_echo", nil), conductor.WorkflowCompleted)
	for name := range forms {
		echo := taskByRef(wf, name)
		if got := echo.ReasonForIncompletion; len(utf16.Encode([]rune(got))) > conductor.MaxResultReason || !strings.HasPrefix(got, filler) {
			t.Fatalf("%s: the task shows a reason of %d UTF-16 units (%.20q…), want at most %d starting with the worker's text",
				name, len(utf16.Encode([]rune(got))), got, conductor.MaxResultReason)
		}
		e.must(http.StatusOK, "GET", "/api/tasks/"+echo.TaskID, nil)
	}
	e.must(http.StatusOK, "GET", "/api/workflow/search?freeText=*&size=100", nil)
	e.must(http.StatusOK, "GET", "/api/tasks/search?freeText=*&size=100", nil)
	n.scanEverything(t, scanners, names)
}
