package main

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The workflow commands register a definition, start it, read it (masked
// as every read is), search for it and operate on it; bad input is
// refused before anything is sent.
func TestWorkflowCLI(t *testing.T) {
	t.Parallel()
	bin := buildBinary(t)
	data, server := startClientServer(t, bin)
	run := func(stdin string, args ...string) (string, string, int) {
		t.Helper()
		return cli(t, bin, keyFileEnv(data), []byte(stdin), append(args, "--server", server)...)
	}
	must := func(stdin string, args ...string) string {
		t.Helper()
		out, errOut, code := run(stdin, args...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s%s", args, code, out, errOut)
		}
		return out
	}

	def := filepath.Join(t.TempDir(), "gate.json")
	if err := os.WriteFile(def, []byte(`{"name":"cli_gate","version":1,"tasks":[{"name":"gate","taskReferenceName":"gate","type":"WAIT"}],
	  "outputParameters":{"who":"${workflow.input.who}"},"somethingWeDoNotActOn":{"kept":true}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if out := must("", "workflow", "register", def); out != "registered cli_gate\n" {
		t.Fatalf("register: %q", out)
	}
	// From stdin, an array; its second version too.
	if out := must(`[{"name":"cli_gate","version":2,"tasks":[{"name":"gate","taskReferenceName":"gate","type":"WAIT"}]}]`, "workflow", "register", "-"); out != "registered cli_gate\n" {
		t.Fatalf("register from stdin: %q", out)
	}

	id := strings.TrimSpace(must("", "workflow", "start", "cli_gate", "--version", "1", "--correlation-id", "c-cli",
		"--input", `{"who":"ops","_masked":{"pin":"1234"}}`))
	if len(id) != 36 {
		t.Fatalf("start printed %q, want an id", id)
	}
	var wf map[string]any
	if err := json.Unmarshal([]byte(must("", "workflow", "get", id, "--tasks")), &wf); err != nil {
		t.Fatal(err)
	}
	input, _ := wf["input"].(map[string]any)
	if wf["status"] != "RUNNING" || wf["correlationId"] != "c-cli" || wf["workflowVersion"] != float64(1) ||
		input["_masked"] != "***" || len(wf["tasks"].([]any)) != 1 {
		t.Fatalf("get: %v", wf)
	}
	if out := must("", "workflow", "status", id); out != id+"\tcli_gate v1\tRUNNING\n" {
		t.Fatalf("status: %q", out)
	}
	if out := must("", "workflow", "search", "correlationId = c-cli"); !strings.HasPrefix(out, id+"\tcli_gate v1\tRUNNING\t") {
		t.Fatalf("search: %q", out)
	}
	// A page of more: stdout holds the rows alone, for scripts that read
	// ids off it; the count goes to stderr.
	second := strings.TrimSpace(must("", "workflow", "start", "cli_gate", "--correlation-id", "c-cli"))
	if out, errOut, code := run("", "workflow", "search", "correlationId = c-cli", "--size", "1"); code != 0 ||
		strings.Count(out, "\n") != 1 || !strings.HasPrefix(out, second+"\t") || !strings.Contains(errOut, "(1 of 2)") {
		t.Fatalf("search a page: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	must("", "workflow", "terminate", second)

	for _, step := range []struct {
		args   []string
		out    string
		status string
	}{
		{[]string{"pause", id}, "paused " + id, "PAUSED"},
		{[]string{"resume", id}, "resumed " + id, "RUNNING"},
		{[]string{"terminate", id, "--reason", "enough"}, "terminated " + id, "TERMINATED\tenough"},
		{[]string{"retry", id}, "retried " + id, "RUNNING"},
		{[]string{"terminate", id}, "terminated " + id, "TERMINATED"},
		{[]string{"restart", id, "--latest"}, "restarted " + id, "RUNNING"},
		{[]string{"terminate", id}, "terminated " + id, "TERMINATED"},
		{[]string{"rerun", id}, "rerun " + id, "RUNNING"},
	} {
		if out := must("", append([]string{"workflow"}, step.args...)...); out != step.out+"\n" {
			t.Fatalf("%v: %q", step.args, out)
		}
		if out := must("", "workflow", "status", id); !strings.HasSuffix(out, "\t"+step.status+"\n") {
			t.Fatalf("after %v: %q, want %s", step.args, out, step.status)
		}
	}
	// The restart with --latest runs version 2; an upgrade moves it back
	// to 1 with new input, and a jump back starts its gate again.
	if out := must("", "workflow", "status", id); !strings.Contains(out, "cli_gate v2") {
		t.Fatalf("after restart --latest: %q", out)
	}
	if out := must("", "workflow", "upgrade", id, "--version", "1", "--input", `{"who":"dev"}`); out != "upgraded "+id+"\n" {
		t.Fatalf("upgrade: %q", out)
	}
	if out := must("", "workflow", "jump", id, "gate"); out != id+" jumped to gate\n" {
		t.Fatalf("jump: %q", out)
	}
	wf = nil
	if err := json.Unmarshal([]byte(must("", "workflow", "get", id, "--tasks")), &wf); err != nil {
		t.Fatal(err)
	}
	input, _ = wf["input"].(map[string]any)
	if tasks, _ := wf["tasks"].([]any); wf["status"] != "RUNNING" || wf["workflowVersion"] != float64(1) || input["who"] != "dev" || len(tasks) != 1 {
		t.Fatalf("after upgrade and jump: %v", wf)
	}

	// A webhook that starts the gate workflow, verified with a secret.
	must("hook-token-4e1f9a\n", "secret", "put", "cli_hook_token")
	hookFile := filepath.Join(t.TempDir(), "hook.json")
	if err := os.WriteFile(hookFile, []byte(`{"name":"cli_hook","verifier":"HEADER_BASED",
	  "headers":{"X-Token":"${workflow.secrets.cli_hook_token}"},"workflowsToStart":{"cli_gate":1}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	var hook struct{ ID, Name string }
	if err := json.Unmarshal([]byte(must("", "webhook", "create", hookFile)), &hook); err != nil || len(hook.ID) != 36 {
		t.Fatalf("webhook create: %+v %v", hook, err)
	}
	if out := must("", "webhook", "list"); out != hook.ID+"\tcli_hook\tHEADER_BASED\n" {
		t.Fatalf("webhook list: %q", out)
	}
	req, _ := http.NewRequest("POST", server+"/webhook/"+hook.ID, strings.NewReader(`{"who":"hook"}`))
	req.Header.Set("X-Token", "hook-token-4e1f9a")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("delivery: %d", res.StatusCode)
	}
	if out := must(`{"name":"renamed","verifier":"HEADER_BASED","headers":{"X-Token":"${workflow.secrets.cli_hook_token}"},"workflowsToStart":{"cli_gate":1}}`,
		"webhook", "update", hook.ID, "-"); !strings.Contains(out, `"name": "renamed"`) {
		t.Fatalf("webhook update: %q", out)
	}
	if out := must("", "webhook", "get", hook.ID); !strings.Contains(out, `"name": "renamed"`) || !strings.Contains(out, "${workflow.secrets.cli_hook_token}") {
		t.Fatalf("webhook get: %q", out)
	}
	if out := must("", "webhook", "delete", hook.ID); out != "deleted "+hook.ID+"\n" {
		t.Fatalf("webhook delete: %q", out)
	}

	// A schema, saved twice, read by version, deleted.
	must(`{"name":"cli_schema","type":"JSON","data":{"required":["who"]}}`, "schema", "put", "-")
	must(`[{"name":"cli_schema","type":"JSON","data":{"required":["who","why"]}}]`, "schema", "put", "-", "--new-version")
	if out := must("", "schema", "list"); out != "cli_schema\t1\tJSON\ncli_schema\t2\tJSON\n" {
		t.Fatalf("schema list: %q", out)
	}
	if out := must("", "schema", "get", "cli_schema", "--version", "1"); !strings.Contains(out, `"required": [
      "who"
    ]`) {
		t.Fatalf("schema get: %q", out)
	}
	if out := must("", "schema", "delete", "cli_schema", "--version", "2"); out != "deleted cli_schema\n" {
		t.Fatalf("schema delete: %q", out)
	}
	if out := must("", "schema", "list"); out != "cli_schema\t1\tJSON\n" {
		t.Fatalf("schema list after delete: %q", out)
	}

	for _, tc := range []struct {
		args  []string
		stdin string
		code  int
		want  string
	}{
		{[]string{"webhook", "get", hook.ID}, "", 1, "HTTP 404"},
		{[]string{"webhook", "update", "..", "-"}, "{}", 1, "not a name or id"},
		{[]string{"webhook", "create", "-"}, `{"name":"literal","verifier":"HEADER_BASED","headers":{"X-Token":"plain"},"workflowsToStart":{"cli_gate":1}}`, 1, "headers.X-Token"},
		{[]string{"workflow", "start", "no_such_flow"}, "", 1, "no_such_flow"},
		{[]string{"workflow", "start", "cli_gate", "--input", "[1]"}, "", 1, "the input must be a JSON object"},
		{[]string{"workflow", "start", "cli_gate", "--input", "{}", "--input-file", "-"}, "{}", 1, "not both"},
		{[]string{"workflow", "get", "no-such-id"}, "", 1, "HTTP 404"},
		{[]string{"workflow", "get", ".."}, "", 1, "not a name or id"},
		{[]string{"workflow", "register", "-"}, "{not json", 1, "is not JSON"},
		{[]string{"workflow", "register", "-"}, "[" + strings.Repeat(" ", 16<<20) + "]", 1, "stdin is over 16 MiB"},
		{[]string{"workflow", "register", "-"}, "", 1, "stdin is empty"},
		{[]string{"webhook", "create", "-"}, "\n", 1, "stdin is empty"},
		{[]string{"schema", "put", "-"}, " ", 1, "stdin is empty"},
		{[]string{"workflow", "register", "-"}, `{"name":"bad","tasks":[{"name":"x","taskReferenceName":"x","type":"NO_SUCH_TYPE"}]}`, 1, "NO_SUCH_TYPE"},
		{[]string{"workflow", "pause"}, "", 2, "wrong number of arguments"},
		{[]string{"workflow", "jump", id}, "", 2, "wrong number of arguments"},
		{[]string{"workflow", "upgrade", id, "--input", "[1]"}, "", 1, "the input must be a JSON object"},
		{[]string{"workflow", "fly", id}, "", 2, `unknown command "fly"`},
		{[]string{"schema", "put", "-"}, `{"name":"cli_avro","type":"AVRO","data":{}}`, 1, "only JSON schemas"},
		{[]string{"schema", "get", "cli_schema", "--version", "2"}, "", 1, "HTTP 404"},
	} {
		out, errOut, code := run(tc.stdin, tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit %d mentioning %q", tc.args, code, out, errOut, tc.code, tc.want)
		}
	}
}
