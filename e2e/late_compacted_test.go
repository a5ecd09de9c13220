package e2e_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/masking"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// A workflow compacted before its starter finds a value it handed over to
// be secret (a START_WORKFLOW's child, ended, its secrets key destroyed)
// replaces the value with "***" for good wherever it holds it: its input,
// its task's input, output and log line, its output, in every view, the
// searches and its read models, and the cached output of its task leaves
// the cache. It kept them all in plain text, having no key to seal the
// value under, and the cache served the output to the next task with the
// key. A restart of it hands its task "***" there, as Orkes documents for
// compacted _secrets.
func TestLateSecretShreddedInACompactedChild(t *testing.T) {
	t.Parallel()
	e, cfg := compactingNode(t, time.Second)
	v := "late-compacted-" + alnum(16)
	// Its SET_VARIABLE seals data of its own: its compaction destroys a
	// key. It comes first, for a decision that seals caches no output.
	e.register(`{"name":"lcc_child","tasks":[
	  {"name":"own","taskReferenceName":"own","type":"SET_VARIABLE","inputParameters":{"_secrets":"own-sealed-data"}},
	  {"name":"lcc_echo","taskReferenceName":"echo","inputParameters":{"v":"${workflow.input.v}"},"cacheConfig":{"key":"${v}","ttlInSecond":600}}],
	  "outputParameters":{"v":"${echo.output.v}"}}`)
	id, child := startSealing(e, "lcc", "lcc_child", v)
	echo := e.takeOne("lcc_echo")
	e.must(http.StatusNoContent, "POST", "/api/tasks/"+echo.TaskID+"/log", "echoing "+v)
	e.completeTask(echo, map[string]any{"v": v})
	e.waitStatus(child, conductor.WorkflowCompleted)
	e.waitCompacted(child)
	shows := func() []string { return showing(e, []string{v}, []string{id, child}) }
	if len(shows()) == 0 {
		t.Fatal("the child shows no value before its starter finds it secret: the test tests nothing")
	}
	if n, err := cacheHolding(e, v); err != nil || n != 1 {
		t.Fatalf("%d cache entries hold the value (%v), want 1: the test tests nothing", n, err)
	}

	e.must(http.StatusOK, "POST", "/api/tasks/"+id+"/gate/COMPLETED", nil)
	e.completeTask(e.takeOne("lcc_seal"), map[string]any{})
	waitUnshown(t, shows)
	testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() error {
		if n, err := cacheHolding(e, v); err != nil || n != 0 {
			return fmt.Errorf("%d cache entries hold the value found secret (%v)", n, err)
		}
		return nil
	})

	e.must(http.StatusNoContent, "POST", "/api/workflow/"+child+"/restart", nil)
	again := e.takeOne("lcc_echo")
	if got := again.InputData["v"]; got != masking.Mask {
		t.Errorf("the restarted child's task is handed v of %d characters, want %q", len(fmt.Sprint(got)), masking.Mask)
	}
	e.completeTask(again, map[string]any{"v": "run-again"})
	e.waitStatus(child, conductor.WorkflowCompleted)
	e.waitStatus(id, conductor.WorkflowCompleted)
	e.waitCompacted(id)
	for _, got := range shows() {
		t.Errorf("after the restart %s", got)
	}
	for _, l := range stopForDump(t, e.node, cfg) {
		if strings.Contains(l, v) {
			t.Errorf("the read models keep the value: %.300q", l)
		}
	}
}
