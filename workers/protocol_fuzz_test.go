package workers_test

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/workers"
)

// FuzzDecodeRequests reads any body as a result, a take, a poll and an
// offer's answer, as the engine does. A body that cannot be read is
// refused naming the field (docs/worker-protocol.md): its error quotes no
// string of the body, a key, a value, or a part of one, beyond a
// number where a number goes.
func FuzzDecodeRequests(f *testing.F) {
	for _, s := range []string{
		`{"taskId":"t","workflowInstanceId":"w","status":"COMPLETED","outputData":{"k":"sk_live_abcdef"},"lease":2,"next":{"waitMs":1000}}`,
		`{"taskId":"t","callbackAfterSeconds":"sk_live_abcdef"}`, `{"taskId":"t","logs":[{"log":"sk_live_abcdef","createdTime":"x"}]}`,
		`{"taskId":"t","extendLease":"sk_live_abcdef"}`, `{"taskId":"t","next":"sk_live_abcdef"}`, `{"waitMs":10000.0,"taskId":"t"}`,
		`{"taskId":"sk_live_abcdef" x}`, `{"sk_live_abcdef"}`, `{"taskId":"t"}"sk_live_abcdef"`, `{"accept":true}`, `{"accept":"yes"}`,
		`{"pollId":"p","domain":"d","waitMs":"1e3"}`, `{"outputData":{"a":1e999}}`, `{"TaskId":"t","taskid":"u"}`, `[]`, `null`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var result workers.ResultRequest
		var take workers.TakeRequest
		var poll workers.PollRequest
		var offer workers.OfferReply
		for _, v := range []any{&result, &take, &poll, &offer} {
			if err := conductor.UnmarshalNew(body, v); err != nil {
				quotesNoString(t, body, err.Error())
			}
		}
	})
}

var numberLiteral = regexp.MustCompile(`^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?$`)

// quotesNoString fails if msg holds a string of body of 6 bytes or more,
// other than a field the protocol names or a number.
func quotesNoString(t *testing.T, body []byte, msg string) {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(string(body)))
	for {
		tok, err := dec.Token()
		if err != nil {
			return
		}
		s, ok := tok.(string)
		if !ok || len(s) < 6 || numberLiteral.MatchString(strings.TrimSpace(s)) || strings.Contains(fieldNames, `"`+s+`"`) {
			continue
		}
		for i := 0; i+6 <= len(s); i++ {
			if part := s[i : i+6]; strings.Contains(msg, part) && !strings.Contains(fieldNames+" json: cannot unmarshal into Go struct field of type value", part) {
				t.Fatalf("%q: error %q quotes %q of the body", body, msg, part)
			}
		}
	}
}

// fieldNames are the fields of the requests, and the Go types an error names.
const fieldNames = `"taskId" "workflowInstanceId" "status" "outputData" "reasonForIncompletion" "callbackAfterSeconds" "workerId"
"logs" "log" "createdTime" "extendLease" "subWorkflowId" "lease" "next" "domain" "waitMs" "pollId" "accept"
ResultRequest TaskResult TakeRequest PollRequest OfferReply TaskExecLog conductor.TaskExecLog workers.PollRequest
map[string]interface {} string int64 int bool number object array after object key:value pair looking for beginning
unexpected data after the JSON value unexpected end of JSON input invalid character`
