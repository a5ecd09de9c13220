package system_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/workers/system"
)

// HTTP_POLL makes one call per run: until its termination condition holds
// it reports IN_PROGRESS with a callback after the polling interval (grown
// by the strategy), then COMPLETED with the last call's output. A failed
// call, a bad configuration or a condition that throws fail the task.
func TestHTTPPoll(t *testing.T) {
	t.Parallel()
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/down" {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"n":%d,"auth":%q}`, calls.Add(1), r.Header.Get("Authorization"))
	}))
	defer srv.Close()
	poll := system.HTTPPoll{}
	run := func(in map[string]any, pollCount int) conductor.TaskResult {
		return poll.Execute(context.Background(), &conductor.Task{ReferenceTaskName: "p", PollCount: pollCount, InputData: in})
	}
	request := func(changes map[string]any) map[string]any {
		req := map[string]any{"uri": srv.URL + "/status", "method": "GET", "headers": map[string]any{"Authorization": "Bearer t0k3n"},
			"terminationCondition": "$.output.response.body.n >= 3 && $.input.want == 'ready'", "pollingInterval": "10"}
		for k, v := range changes {
			req[k] = v
		}
		return map[string]any{"http_request": req, "want": "ready"}
	}

	for _, tc := range []struct {
		strategy  string
		callbacks []int64
	}{
		{"FIXED", []int64{10, 10}},
		{"LINEAR_BACKOFF", []int64{10, 20}},
		{"exponential_backoff", []int64{10, 20}},
	} {
		calls.Store(0)
		in := request(map[string]any{"pollingStrategy": tc.strategy})
		for i, want := range tc.callbacks {
			res := run(in, i+1)
			if res.Status != conductor.TaskInProgress || res.CallbackAfterSeconds != want || res.OutputData["response"] == nil {
				t.Fatalf("%s poll %d: %s callback %d, want IN_PROGRESS after %d: %+v", tc.strategy, i+1, res.Status, res.CallbackAfterSeconds, want, res)
			}
		}
		res := run(in, 3)
		body := res.OutputData["response"].(map[string]any)["body"].(map[string]any)
		if res.Status != conductor.TaskCompleted || fmt.Sprint(body["n"]) != "3" || body["auth"] != "Bearer t0k3n" {
			t.Fatalf("%s poll 3: %+v", tc.strategy, res)
		}
	}
	// The fourth exponential poll waits 80 s; the interval caps at a day.
	if res := run(request(map[string]any{"pollingStrategy": "EXPONENTIAL_BACKOFF", "terminationCondition": "false"}), 4); res.CallbackAfterSeconds != 80 {
		t.Fatalf("exponential poll 4: callback %d", res.CallbackAfterSeconds)
	}
	if res := run(request(map[string]any{"pollingStrategy": "EXPONENTIAL_BACKOFF", "terminationCondition": "false"}), 40); res.CallbackAfterSeconds != 86400 {
		t.Fatalf("exponential poll 40: callback %d", res.CallbackAfterSeconds)
	}
	// Without a condition the first successful call completes it; the
	// keys may sit at the top level of the input too.
	if res := run(map[string]any{"uri": srv.URL + "/status", "method": "GET"}, 1); res.Status != conductor.TaskCompleted {
		t.Fatalf("no condition: %+v", res)
	}
	// Beside http_request, they are read too; its own keys win.
	beside := map[string]any{"http_request": map[string]any{"uri": srv.URL + "/status", "method": "GET", "pollingInterval": "7"},
		"terminationCondition": "false", "pollingInterval": "30"}
	if res := run(beside, 1); res.Status != conductor.TaskInProgress || res.CallbackAfterSeconds != 7 {
		t.Fatalf("settings beside http_request: %s after %d s, want IN_PROGRESS after 7", res.Status, res.CallbackAfterSeconds)
	}

	for _, tc := range []struct {
		name    string
		changes map[string]any
		status  string
		want    string
	}{
		{"service down", map[string]any{"uri": srv.URL + "/down"}, conductor.TaskFailed, "HTTP_POLL task p: GET answered 503"},
		{"bad strategy", map[string]any{"pollingStrategy": "SOMETIMES"}, conductor.TaskFailedWithTerminalError, "pollingStrategy"},
		{"bad interval", map[string]any{"pollingInterval": "0"}, conductor.TaskFailedWithTerminalError, "pollingInterval"},
		{"condition not a string", map[string]any{"terminationCondition": 5}, conductor.TaskFailedWithTerminalError, "terminationCondition must be"},
		{"condition throws", map[string]any{"terminationCondition": "$.output.nope.deeper > 1"}, conductor.TaskFailedWithTerminalError, "terminationCondition:"},
		{"no uri", map[string]any{"uri": nil}, conductor.TaskFailed, "uri"},
	} {
		res := run(request(tc.changes), 1)
		if res.Status != tc.status || !strings.Contains(res.ReasonForIncompletion, tc.want) {
			t.Errorf("%s: %s %q, want %s mentioning %q", tc.name, res.Status, res.ReasonForIncompletion, tc.status, tc.want)
		}
	}
	// The strategy may be a resolved secret, which upper-cased is text
	// redaction does not look for: the reason does not quote it.
	if res := run(request(map[string]any{"pollingStrategy": "sk_live_q7vt2mw9"}), 1); strings.Contains(strings.ToLower(res.ReasonForIncompletion), "q7vt2mw9") {
		t.Errorf("a bad strategy's reason %q quotes it", res.ReasonForIncompletion)
	}
}

// A terminationCondition is input, its references resolved at hand-off:
// a secret compared in it whose quote ends the string the author wrote
// around it fails the condition naming the part after the quote, which
// redaction, finding whole values only, would leave. It reads ***; a
// condition configured as it runs keeps the names its error quotes.
func TestHTTPPollConditionErrorsQuoteNoSplicedName(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"token":"x"}`)
	}))
	defer srv.Close()
	for _, tc := range []struct {
		configured, resolved, want, hidden string
	}{
		{"$.output.response.body.token == '${workflow.secrets.pw}'", "$.output.response.body.token == 'p4ss'+w0rdX9tail+''",
			"terminationCondition: ReferenceError: *** is not defined", "w0rdX9tail"},
		{"$.output.response.body.token == '${workflow.secrets.pw}'", "$.output.response.body.token == 'p4ss'+respon+''",
			"terminationCondition: ReferenceError: *** is not defined", "respon"},
		{"$.output.response.body.token == '${workflow.secrets.pw}'", `$.output.response.body.token == 'p4ss'+w\u0030rdX9tail+''`,
			"terminationCondition: ReferenceError: *** is not defined", "w0rdX9tail"},
		{"nope == 1", "nope == 1", "terminationCondition: ReferenceError: nope is not defined", ""},
	} {
		req := map[string]any{"uri": srv.URL, "method": "GET", "terminationCondition": tc.configured}
		wt, _ := json.Marshal(map[string]any{"name": "p", "type": "HTTP_POLL", "inputParameters": map[string]any{"http_request": req}})
		in := map[string]any{"http_request": map[string]any{"uri": srv.URL, "method": "GET", "terminationCondition": tc.resolved}}
		res := system.HTTPPoll{}.Execute(context.Background(), &conductor.Task{ReferenceTaskName: "p", PollCount: 1, InputData: in, WorkflowTask: wt})
		if res.Status != conductor.TaskFailedWithTerminalError || !strings.Contains(res.ReasonForIncompletion, tc.want) {
			t.Errorf("%s: %s %q, want it failed with %q", tc.configured, res.Status, res.ReasonForIncompletion, tc.want)
		}
		if tc.hidden != "" && strings.Contains(res.ReasonForIncompletion, tc.hidden) {
			t.Errorf("%s: the reason names %s", tc.configured, tc.hidden)
		}
	}
}
