package e2e_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/flowvault/flowvault/masking"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// A secret holding JavaScript escapes, spliced into an INLINE's string,
// is read by the script decoded: the script returns it, concatenates it
// with text and throws it, as a '-, "- and `-quoted literal reads it
// (\xHH, \uHHHH, \n, octal, a template's CRLF read as a LF). The decoded
// text reads *** in the task's output and reason when it is 6 bytes long
// (masking.MinLength), and is kept when shorter; no value is found, as it
// is or decoded, in any form, stored or shown anywhere. A regex literal's
// source is the value as written, redacted as it always was.
func TestScriptDecodedSecretsRedacted(t *testing.T) {
	t.Parallel()
	a, b, c := alnum(6), alnum(6), alnum(4)
	vals := map[string]string{
		"hex":    a + `\x41` + b,
		"uni":    `p\u0061ss` + alnum(10),
		"nl":     alnum(6) + `\n` + alnum(6),
		"oct":    alnum(6) + `\101\60` + alnum(6),
		"tpl":    a + `\u0042` + b + "\r\n" + c,
		"thrown": `t\x68rown` + alnum(8),
		"rx":     alnum(6) + `\x41` + alnum(6),
		"at6":    `\x51` + alnum(5),
		"at5":    `\x51` + alnum(4),
	}
	decoded := map[string]string{}
	for k, v := range vals {
		decoded[k] = masking.ScriptUnescaped(v)
	}
	decoded["tpl"] = a + "B" + b + "\n" + c // a template reads the CRLF as a LF
	labelled := map[string]string{}
	for k, v := range vals {
		labelled[k], labelled[k+"-decoded"] = v, decoded[k]
	}
	scanners, names := scannersOf(labelled)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	n := startLeakNode(ctx, t, nil)
	e := n.env(t, scanners...)
	for k, v := range vals {
		e.putSecret(k, v)
	}
	inline := func(ref, expression string) string {
		return `{"name":"inl","taskReferenceName":"` + ref + `","type":"INLINE","optional":true,
		  "inputParameters":{"evaluatorType":"javascript","expression":"` + expression + `"}}`
	}
	e.register(`{"name":"esc","tasks":[` + strings.Join([]string{
		inline("ret_hex", `'${workflow.secrets.hex}'`),
		inline("cat_uni", `\"token=\" + \"${workflow.secrets.uni}\" + \";\"`),
		inline("ret_nl", `'${workflow.secrets.nl}'`),
		inline("catch_oct", `try { throw new Error('bad ${workflow.secrets.oct}') } catch (e) { e.message }`),
		inline("ret_tpl", "`${workflow.secrets.tpl}`"),
		inline("throw", `throw new Error('bad ' + '${workflow.secrets.thrown}')`),
		inline("rx_source", `/${workflow.secrets.rx}/.source`),
		inline("ret_at6", `'${workflow.secrets.at6}'`),
		inline("ret_at5", `'${workflow.secrets.at5}'`),
	}, ",") + `]}`)
	id := e.start("esc", nil)
	wf := e.waitStatus(id, conductor.WorkflowCompleted)
	for ref, want := range map[string]string{"ret_hex": "***", "cat_uni": "token=***;", "ret_nl": "***", "catch_oct": "bad ***",
		"ret_tpl": "***", "rx_source": "***", "ret_at6": "***", "ret_at5": decoded["at5"]} {
		if tk := taskByRef(wf, ref); tk.Status != conductor.TaskCompleted || tk.OutputData["result"] != want {
			t.Errorf("%s: %s %v, want the result %q", ref, tk.Status, tk.OutputData, want)
		}
	}
	if tk := taskByRef(wf, "throw"); tk.Status != conductor.TaskCompletedWithErrors || !strings.Contains(tk.ReasonForIncompletion, "bad ***") {
		t.Errorf("the INLINE that throws the secret: %s %q, want it to have failed with bad ***", tk.Status, tk.ReasonForIncompletion)
	}
	e.waitCompacted(id)

	e.must(http.StatusOK, "GET", "/api/workflow/"+id+"?includeTasks=true", nil)
	e.must(http.StatusOK, "GET", "/api/workflow/search?freeText=*&size=100", nil)
	for _, tk := range wf.Tasks {
		e.must(http.StatusOK, "GET", "/api/tasks/"+tk.TaskID, nil)
		e.must(http.StatusOK, "GET", "/api/tasks/"+tk.TaskID+"/log", nil)
	}
	n.scanEverything(t, scanners, names)
}
