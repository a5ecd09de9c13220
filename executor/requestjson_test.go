package executor

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/workers"
)

// A take or a poll is read as a result is (conductor.UnmarshalNew): a
// whole number written 10000.0 (Python's json.dumps of a float), or a
// number sent as a string, is the number; a request that cannot be read
// says which field is wrong, not that taskId is missing when it is there.
func TestTakeAndPollReadLikeResults(t *testing.T) {
	l := testutil.OpenLog(t, "")
	e := startExecutor(t, l, nothingScheduled{}, Config{})
	ctx := testutil.Context(t, 30*time.Second)
	nc := l.Conn()
	request := func(subject, body string) map[string]any {
		t.Helper()
		m, err := nc.RequestWithContext(ctx, subject, []byte(body))
		if err != nil {
			t.Fatalf("%s %s: %v", subject, body, err)
		}
		var reply map[string]any
		if err := json.Unmarshal(m.Data, &reply); err != nil {
			t.Fatal(err)
		}
		if m.Reply != "" {
			if err := m.Respond([]byte(workers.AcceptOffer)); err != nil {
				t.Fatal(err)
			}
		}
		return reply
	}
	for i, waitMs := range []string{`10000.0`, `"10000"`, `1e4`} {
		id := fmt.Sprintf("wf-take-json-%d", i)
		startInline(ctx, t, e, id, twoTasks)
		w, err := e.State(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		take := fmt.Sprintf(`{"taskId":%q,"workflowInstanceId":%q,"workerId":"py","waitMs":%s}`, w.Tasks[0].ID, id, waitMs)
		if reply := request(workers.TakeSubject("match_task", ""), take); reply["task"] == nil {
			t.Errorf("take with waitMs %s answered %v, want the task", waitMs, reply)
		}
	}
	for _, waitMs := range []string{`200.0`, `"200"`} {
		poll := fmt.Sprintf(`{"workerId":"py","waitMs":%s}`, waitMs)
		if reply := request(workers.PollSubject("match_task", ""), poll); reply["error"] != nil {
			t.Errorf("poll with waitMs %s answered %v, want no error", waitMs, reply)
		}
	}
	// What cannot be read is answered invalid, naming the field.
	for subject, body := range map[string]string{
		workers.TakeSubject("match_task", ""): `{"taskId":"t","workflowInstanceId":"w","waitMs":1.5}`,
		workers.PollSubject("match_task", ""): `{"workerId":"py","waitMs":1.5}`,
	} {
		reply := request(subject, body)
		e, _ := reply["error"].(map[string]any)
		if e == nil || e["code"] != workers.CodeInvalid || !strings.Contains(fmt.Sprint(e["message"]), "waitMs") {
			t.Errorf("%s %s answered %v, want invalid naming waitMs", subject, body, reply)
		}
	}
}
