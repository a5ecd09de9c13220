package e2e_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"golang.org/x/text/unicode/norm"

	"github.com/flowvault/flowvault/internal/leaktest"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/masking"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/workers"
)

// alnum returns n random letters and digits.
func alnum(n int) string {
	const a = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = a[int(b[i])%len(a)]
	}
	return string(b)
}

// pctDecode decodes %XX escapes, and '+' as a space if plus, keeping a
// '%' that starts none (as a server's lenient decoder does).
func pctDecode(s string, plus bool) string {
	var b strings.Builder
	hex := func(c byte) (byte, bool) {
		switch {
		case '0' <= c && c <= '9':
			return c - '0', true
		case 'a' <= c && c <= 'f':
			return c - 'a' + 10, true
		case 'A' <= c && c <= 'F':
			return c - 'A' + 10, true
		}
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) {
			h, ok1 := hex(s[i+1])
			l, ok2 := hex(s[i+2])
			if ok1 && ok2 {
				b.WriteByte(h<<4 | l)
				i += 2
				continue
			}
		}
		if s[i] == '+' && plus {
			b.WriteByte(' ')
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// pieces returns the pieces a server that parses a uri holding s reads:
// s cut at '&', '#' and '?', and each piece at its first '='.
func pieces(s string) []string {
	var out []string
	for _, p := range strings.FieldsFunc(s, func(r rune) bool { return r == '&' || r == '#' || r == '?' }) {
		out = append(out, p)
		if k, v, ok := strings.Cut(p, "="); ok {
			out = append(out, k, v)
		}
	}
	return out
}

// The leak hunt over values shaped to stress redaction's forms: %XX
// escapes, '+', a lone '%', base64's alphabet, JSON's special characters,
// '&', '#', '=' that cut a value written into a uri, and spaces around
// it, which a header drops. Each goes into
// HTTP tasks' path, query, header and body, to a server that echoes them
// back parsed (a JSON answer) and quoted in an error page, and to a worker
// that echoes it in JSON as .NET writes it (a quote as \u0022, '+' as
// \u002B) and decomposed (NFD; a secret of accented letters too), in its
// output and a log line; a secret holding a quote goes into an INLINE's
// string, which the quote ends, the name after it failing the script (a
// name spelt with an escape too, which the script's error decodes), or
// returned as the message of the error the script catches, and
// into a jq query's, the @format after it failing the query; a script
// parses a secret that is not JSON; a
// worker's _secrets value too, and a DECISION's case comes from it. A task
// updated by reference name gets a _secrets value, then the value under a
// plain key. TERMINATEs whose reason a task definition's inputTemplate
// builds from sealed data, or a secret, and an input computed from sealed
// data fail naming the field. Every REST response, the log output,
// /metrics, every stream's messages, every file of the data dir and every
// Pebble key and value is searched for each value, decoded as the server
// reads it and in the pieces the uri cuts it into: none holds one.
func TestLeakShapes(t *testing.T) {
	t.Parallel()
	vals := map[string]string{
		"pct":  "pct%2Fsec%2Bret%3D" + alnum(12),
		"plus": "ab+cd/ef+" + alnum(12) + "gh9==",
		"lone": "100%pure-" + alnum(12) + "%zz%",
		"jsn":  `j"s\o<n>'/` + alnum(12),
		"amp":  alnum(10) + "&" + alnum(10) + "=" + alnum(10) + "#" + alnum(10),
		"sp":   " " + alnum(14) + " ", // Go sends it in a header trimmed, and the server echoes it so
	}
	data := "dat%2F" + alnum(8) + "+x/" + alnum(8) + "==" // a worker's _secrets value
	byref := "ref+" + alnum(8) + "%2F/" + alnum(8) + "==" // a by-ref update's _secrets value
	uni := "Pässwörter-" + alnum(12)                      // a secret a worker spells decomposed (NFD)
	name := "w" + alnum(11)                               // a script's name once the secret quo is spliced into it
	quo := "p4ss'+" + name + "+'"
	escName := "q" + alnum(11)                 // the same, its first letter escaped in the secret (\u0071)
	esc := `p4ss'+\u0071` + escName[1:] + "+'" // the script's error quotes the name as read: escName
	fmtName := "f" + alnum(11)                 // a jq query's @format once the secret jqf is spliced into it
	jqf := `p4ss" + @` + fmtName + ` + "`
	name6, name5 := "k"+alnum(5), "k"+alnum(4) // the names of two more such secrets: at the floor and shorter
	labelled := map[string]string{"data": data, "byref": byref, "uni": uni, "uni-nfd": norm.NFD.String(uni), "quo": quo, "quo-name": name,
		"esc": esc, "esc-name": escName, "jqf": jqf, "jqf-name": fmtName, "sp-trimmed": strings.TrimSpace(vals["sp"])}
	for k, v := range vals {
		labelled[k] = v
	}
	var scanners []*leaktest.Scanner
	var names []string
	for label, v := range labelled {
		seen := map[string]bool{}
		for _, f := range append([]string{v, pctDecode(v, false), pctDecode(v, true)}, pieces(v)...) {
			if !seen[f] && len(f) >= leaktest.MinFormLen {
				seen[f] = true
				scanners = append(scanners, leaktest.New([]byte(f)))
				names = append(names, label)
			}
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	n := startLeakNode(ctx, t, nil)
	e := n.env(t, scanners...)

	remote := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.URL.Query().Get("fail") != "" {
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprintf(w, "rejected %s path %s query %v header %s body %s", r.RequestURI, r.URL.Path, r.URL.Query(), r.Header.Get("X-S"), body)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"path": r.URL.Path, "rawPath": r.URL.RawPath, "rawQuery": r.URL.RawQuery,
			"query": r.URL.Query(), "headers": r.Header, "body": string(body), "uri": r.RequestURI})
	}))
	defer remote.Close()

	for k, v := range vals {
		e.putSecret(k, v)
	}
	e.putSecret("uni", uni)
	e.putSecret("quo", quo)
	e.putSecret("esc", esc)
	e.putSecret("jqf", jqf)
	e.putSecret("quo6", "p4ss'+"+name6+"+'")
	e.putSecret("quo5", "p4ss'+"+name5+"+'")
	call := func(ref, value, fail string) string {
		return fmt.Sprintf(`{"name":"http","taskReferenceName":"%s","type":"HTTP","optional":true,"inputParameters":{"http_request":{
		  "uri":"%s/p/%s?q=%s%s","method":"POST","headers":{"X-S":"%s"},"body":{"s":"%s"}}}}`, ref, remote.URL, value, value, fail, value, value)
	}
	var tasks []string
	for k := range vals {
		ref := "${workflow.secrets." + k + "}"
		tasks = append(tasks, call("h_"+k, ref, ""), call("h_"+k+"_fail", ref, "&fail=1"),
			`{"name":"shp_respell","taskReferenceName":"rs_`+k+`","inputParameters":{"s":"`+ref+`"}}`)
	}
	tasks = append(tasks, `{"name":"shp_respell","taskReferenceName":"rs_uni","inputParameters":{"s":"${workflow.secrets.uni}"}}`,
		`{"name":"inl","taskReferenceName":"inl_quo","type":"INLINE","optional":true,
		  "inputParameters":{"evaluatorType":"javascript","expression":"'${workflow.secrets.quo}'.length"}}`,
		`{"name":"inl","taskReferenceName":"inl_esc","type":"INLINE","optional":true,
		  "inputParameters":{"evaluatorType":"javascript","expression":"'${workflow.secrets.esc}'.length"}}`,
		catchShape("quo"), catchShape("esc"), catchShape("quo6"), catchShape("quo5"),
		`{"name":"jq","taskReferenceName":"jq_fmt","type":"JSON_JQ_TRANSFORM","optional":true,
		  "inputParameters":{"queryExpression":"\"${workflow.secrets.jqf}\""}}`,
		`{"name":"inl","taskReferenceName":"inl_json","type":"INLINE","optional":true,
		  "inputParameters":{"evaluatorType":"javascript","expression":"JSON.parse($.c)","c":"${workflow.secrets.jsn}"}}`)
	tasks = append(tasks, call("h_data", "${src.output._secrets.v}", ""), call("h_data_fail", "${src.output._secrets.v}", "&fail=1"))
	src := `{"name":"shp_src","taskReferenceName":"src"}`
	e.must(http.StatusNoContent, "POST", "/api/metadata/taskdefs",
		`[{"name":"shp_term_def","inputTemplate":{"terminationReason":"declined: ${src.output._secrets.v}"}}]`)
	e.register(`{"name":"shp","tasks":[`+src+`,`+strings.Join(tasks, ",")+`,
	  {"name":"dec","taskReferenceName":"dec","type":"DECISION","caseValueParam":"x","inputParameters":{"x":"${src.output._secrets.v}"},
	   "decisionCases":{"gold":[{"name":"shp_sink","taskReferenceName":"gold"}]},"defaultCase":[{"name":"shp_sink","taskReferenceName":"other"}]},
	  {"name":"w","taskReferenceName":"w","type":"WAIT"},
	  {"name":"shp_sink","taskReferenceName":"after","inputParameters":{"k":"${w.output._secrets.k}","p":"${w.output.plain}"}}],
	  "outputParameters":{"dec":"${dec.output}","w":"${w.output}"}}`,
		`{"name":"shp_term","tasks":[`+src+`,{"name":"shp_term_def","taskReferenceName":"term","type":"TERMINATE",
		  "inputParameters":{"terminationStatus":"FAILED","terminationReason":null}}]}`,
		`{"name":"shp_term_inline","tasks":[`+src+`,{"name":"t2","taskReferenceName":"term","type":"TERMINATE","inputParameters":{"terminationStatus":"FAILED"},
		  "taskDefinition":{"name":"t2","inputTemplate":{"terminationReason":"no: ${src.output._secrets.v}"}}}]}`,
		`{"name":"shp_term_secret","tasks":[{"name":"t3","taskReferenceName":"term","type":"TERMINATE",
		  "inputParameters":{"terminationStatus":"FAILED","terminationReason":"bad ${workflow.secrets.amp}"}}]}`,
		`{"name":"shp_comp","tasks":[`+src+`,{"name":"shp_sink","taskReferenceName":"term","inputParameters":{"n":"${$.concat($.src.output._secrets.v, '!')}"}}]}`,
	)
	e.work("shp_src", 2, func(context.Context, *conductor.Task) (workers.Output, error) {
		return workers.Output{Data: map[string]any{"_secrets": map[string]any{"v": data}}}, nil
	})
	// A worker's own spellings: a C# worker's JSON, which System.Text.Json
	// escapes its own way, and Unicode decomposed, as a macOS file name is.
	e.work("shp_respell", 2, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		s := fmt.Sprint(task.InputData["s"])
		body := `{"token":"` + leaktest.DotNetJSON(s) + `"}`
		return workers.Output{Data: map[string]any{"sent": body, "file": "/Users/x/" + norm.NFD.String(s)},
			Logs: []string{"posted " + body, "wrote " + norm.NFD.String(s)}}, nil
	})
	got := make(chan map[string]any, 10)
	e.work("shp_sink", 2, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		got <- task.InputData
		return workers.Output{Data: map[string]any{"echo": task.InputData["p"]}}, nil
	})

	id := e.start("shp", nil)
	testutil.Eventually(t, 60*time.Second, 50*time.Millisecond, func() error {
		if w := taskByRef(e.workflow(id), "w"); w == nil || w.Status != conductor.TaskInProgress {
			return fmt.Errorf("w does not wait yet")
		}
		return nil
	})
	e.must(http.StatusOK, "POST", "/api/tasks/"+id+"/w/IN_PROGRESS", map[string]any{"_secrets": map[string]any{"k": byref}})
	e.must(http.StatusOK, "POST", "/api/tasks/"+id+"/w/COMPLETED", map[string]any{"plain": byref, "text": "is " + byref})
	wf := e.waitStatus(id, conductor.WorkflowCompleted)
	for _, ref := range []string{"h_pct", "h_plus", "h_jsn", "h_amp", "h_sp", "h_data"} {
		if tk := taskByRef(wf, ref); tk.Status != conductor.TaskCompleted {
			t.Errorf("%s: %s %q, want it to have called the server", ref, tk.Status, tk.ReasonForIncompletion)
		}
	}
	for _, ref := range []string{"inl_quo", "inl_esc"} {
		if inl := taskByRef(wf, ref); !strings.Contains(inl.ReasonForIncompletion, "ReferenceError: *** is not defined") {
			t.Errorf("%s, the INLINE whose string the secret ends: %s %q", ref, inl.Status, inl.ReasonForIncompletion)
		}
	}
	// A script that catches the error returns its message, whose name,
	// a part of the secret, is redacted from 6 bytes on.
	for ref, want := range map[string]string{"catch_quo": "*** is not defined", "catch_esc": "*** is not defined",
		"catch_quo6": "*** is not defined", "catch_quo5": name5 + " is not defined"} {
		if inl := taskByRef(wf, ref); inl.Status != conductor.TaskCompleted || inl.OutputData["result"] != want {
			t.Errorf("%s, the INLINE that catches the error of the secret's name: %s %v, want the result %q", ref, inl.Status, inl.OutputData, want)
		}
	}
	if jq := taskByRef(wf, "jq_fmt"); !strings.Contains(jq.ReasonForIncompletion, "format not defined") {
		t.Errorf("the JSON_JQ_TRANSFORM whose string the secret ends: %s %q", jq.Status, jq.ReasonForIncompletion)
	}
	// One character is too short to look for: the reason says it is not there.
	if inl := taskByRef(wf, "inl_json"); !strings.Contains(inl.ReasonForIncompletion, "SyntaxError: invalid character '***' looking for beginning of value") {
		t.Errorf("the INLINE parsing a secret that is not JSON: %s %q", inl.Status, inl.ReasonForIncompletion)
	}
	if dec := taskByRef(wf, "dec"); taskByRef(wf, "other") == nil || fmt.Sprint(dec.OutputData["caseOutput"]) != "[***]" {
		t.Errorf("the DECISION on sealed data: output %v, tasks %v", dec.OutputData, refsOf(wf.Tasks))
	}
	if w := taskByRef(wf, "w"); w.OutputData["plain"] != masking.Mask || w.OutputData["text"] != "is "+masking.Mask {
		t.Errorf("the task updated by reference: output %v", w.OutputData)
	}
	handed := false
	for range len(got) {
		in := <-got
		handed = handed || in["k"] == byref && in["p"] == byref
	}
	if !handed {
		t.Error("the task after the update by reference was not handed the value")
	}
	for name, field := range map[string]string{"shp_term": "terminationReason", "shp_term_inline": "terminationReason",
		"shp_term_secret": "terminationReason", "shp_comp": "input n is computed"} {
		twf := e.waitStatus(e.start(name, nil), conductor.WorkflowFailed)
		if tk := taskByRef(twf, "term"); tk.Status != conductor.TaskFailedWithTerminalError || !strings.Contains(tk.ReasonForIncompletion, field) {
			t.Errorf("%s: %s %q, want it failed naming %s", name, tk.Status, tk.ReasonForIncompletion, field)
		}
	}
	e.waitCompacted(id)

	for _, path := range []string{
		"/api/workflow/" + id + "?includeTasks=true", "/api/workflow/" + id + "/status?includeOutput=true&includeVariables=true",
		"/api/workflow/search?freeText=*&size=100", "/api/workflow/search-v2?freeText=*", "/api/tasks/search?freeText=*&size=100",
		"/api/workflow/" + id + "/tasks", "/api/secrets", "/metrics", "/api/audit",
	} {
		e.must(http.StatusOK, "GET", path, nil)
	}
	for _, tk := range e.workflow(id).Tasks {
		e.must(http.StatusOK, "GET", "/api/tasks/"+tk.TaskID, nil)
		e.must(http.StatusOK, "GET", "/api/tasks/"+tk.TaskID+"/log", nil)
	}
	n.scanEverything(t, scanners, names)
}

// catchShape is an INLINE task that splices secret into a string of its
// script, calls a function with it and returns the message of the error
// it catches: catch_<secret>.
func catchShape(secret string) string {
	return `{"name":"inl","taskReferenceName":"catch_` + secret + `","type":"INLINE","inputParameters":{"evaluatorType":"javascript",
	  "expression":"function f(s) { return s } try { f('${workflow.secrets.` + secret + `}') } catch (e) { e.message }"}}`
}
