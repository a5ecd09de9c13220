package system_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/workers/system"
)

// FuzzJQ runs any query over an input holding a secret and any data. A
// run ends within its budget (a hang detector, not a measure: a query
// still running seconds after its budget is one the budget cannot stop),
// and a failure's reason quotes the secret whole or not at all, unless
// the query cuts it up itself: redaction finds whole values only.
func FuzzJQ(f *testing.F) {
	for _, q := range []string{".", ".secret", ".secret | tonumber", ".secret | fromjson", ".secret * 1e9", `.secret | test("(a*)*b")`,
		`reduce range(1e9) as $i (0; . + 1)`, `[limit(1e9; repeat(1))] | length`, `def f: f; f`, `.data | fromjson | .a.b`,
		`{(.secret): 1} | keys | .[0] | ascii_downcase | error`, `.secret | error`, `.secret + 1`, `[.secret] | implode`,
		`.data | @base64d`, `range(1e9) | select(. < 0)`, `last(range(1e9))`, `.data | ltrimstr(.secret)`, `until(false; .)`,
		`[paths] | length`, `.data as $d | $d | tojson | fromjson`, `input`, `$__loc__`, `getpath(["a", .secret])`,
		`.secret * 40000 | test("[ab]{1000}c")`, `.secret | test("(?i)SK_" * 200)`, `.secret | ltrimstr("sk") | tonumber`} {
		f.Add(q, `{"a":{"b":"sk_live_51HxQzT8abcdefgh"}}`)
	}
	const secret = "sk_live_51HxQzT8abcdefghijKLMN"
	budget := system.Budget{Time: 200 * time.Millisecond, Memory: 16 << 20}
	f.Fuzz(func(t *testing.T, query, data string) {
		task := &conductor.Task{TaskType: conductor.TaskTypeJSONJQ, ReferenceTaskName: "jq",
			InputData: map[string]any{"queryExpression": query, "secret": secret, "data": data}}
		done := make(chan conductor.TaskResult, 1)
		go func() { done <- system.JQ{Budget: budget}.Execute(context.Background(), task) }()
		var res conductor.TaskResult
		select {
		case res = <-done:
		case <-time.After(budget.Time + 5*time.Second):
			t.Fatalf("query %q over %q: still running 5 s past its budget of %v", query, data, budget.Time)
		}
		if res.Status == conductor.TaskCompleted || cutsUp(query) {
			return
		}
		reason := res.ReasonForIncompletion + " " + fmt.Sprint(res.OutputData["error"])
		if strings.Contains(reason, secret) {
			return
		}
		for i := 0; i+10 <= len(secret); i++ {
			if strings.Contains(reason, secret[i:i+10]) {
				t.Fatalf("query %q: reason %q quotes part of the secret", query, reason)
			}
		}
	})
}

// cutsUp reports whether a query may cut a value up itself (a slice, a
// substitution, a split, a match, a change of case or encoding) and
// raise or fail on the part: what it shows then is its own doing.
func cutsUp(query string) bool {
	for _, w := range []string{"[", "trimstr", "sub", "split", "explode", "capture", "scan", "match", "ascii", "@base", "error", "implode"} {
		if strings.Contains(query, w) {
			return true
		}
	}
	return false
}
