package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/url"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/flowvault/flowvault/schemas/conductor"
)

const workflowUsage = `usage: flowvault workflow <command> [flags]

commands:
  register FILE                   register workflow definitions from FILE ("-": stdin), one
                                  definition or an array; a name and version registered before
                                  is replaced
  start NAME                      start a workflow and print its id
      --version N                 the definition's version (default: the latest)
      --input JSON                its input, a JSON object (or --input-file F, "-" for stdin)
      --correlation-id ID, --priority P (0-99)
  get ID [--tasks]                print the execution as JSON, masked as every read is
  status ID                       print its status, and the reason it ended if it failed
  search [QUERY] [--size N]       list executions, newest first (Conductor's query syntax:
                                  'status = RUNNING AND workflowType = order_flow'); N at most 5000
  terminate ID [--reason R]       terminate a running workflow
  pause ID, resume ID             pause or resume it
  retry ID                        retry the last failed task of an ended workflow
  restart ID [--latest]           run an ended workflow again from its start (--latest: on the
                                  latest version of its definition)
  rerun ID [--from-task TASK_ID]  run an ended workflow again from a task (default: the start)
  upgrade ID [--version N]        move a running or paused workflow to another version of its
                                  definition (default: the latest); --input (or --input-file)
                                  replaces its input
  jump ID TASK_REF                move a running workflow to a task of its top-level list, with
                                  --input (or --input-file) as the task's input

flags of every command:
` + clientUsage

func runWorkflow(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return runClientCommands(ctx, "workflow", workflowUsage, workflowCommands, args, stdout, stderr)
}

// workflowCommands declares each command's flags on fs.
func workflowCommands(fs *flag.FlagSet) map[string]clientCommand {
	var (
		version, priority             int
		input, inputFile, correlation string
		reason, fromTask              string
		tasks, latest                 bool
		size                          int
	)
	path := func(id, op string) string { return "/api/workflow/" + url.PathEscape(id) + op }
	operate := func(method, op, done string, query func() url.Values) clientCommand {
		return clientCommand{args: 1, ids: true, run: func(ctx context.Context, c *apiClient, pos []string, stdout io.Writer) error {
			p := path(pos[0], op)
			if q := query(); len(q) > 0 {
				p += "?" + q.Encode()
			}
			if _, err := c.do(ctx, method, p, "", nil); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "%s %s\n", done, pos[0])
			return nil
		}}
	}
	none := func() url.Values { return nil }
	cmds := map[string]clientCommand{
		"register": {args: 1, run: workflowRegister},
		"start": {args: 1, run: func(ctx context.Context, c *apiClient, pos []string, stdout io.Writer) error {
			return workflowStart(ctx, c, pos[0], version, priority, input, inputFile, correlation, stdout)
		}},
		"get": {args: 1, ids: true, run: func(ctx context.Context, c *apiClient, pos []string, stdout io.Writer) error {
			b, err := c.do(ctx, "GET", path(pos[0], "?includeTasks="+strconv.FormatBool(tasks)), "", nil)
			if err != nil {
				return err
			}
			return printIndented(stdout, b, pos[0])
		}},
		"status": {args: 1, ids: true, run: workflowStatus},
		"search": {args: 1, optional: true, run: func(ctx context.Context, c *apiClient, pos []string, stdout io.Writer) error {
			return workflowSearch(ctx, c, pos, size, stdout)
		}},
		"terminate": operate("DELETE", "", "terminated", func() url.Values {
			if reason == "" {
				return nil
			}
			return url.Values{"reason": {reason}}
		}),
		"pause":  operate("PUT", "/pause", "paused", none),
		"resume": operate("PUT", "/resume", "resumed", none),
		"retry":  operate("POST", "/retry", "retried", none),
		"restart": operate("POST", "/restart", "restarted", func() url.Values {
			return url.Values{"useLatestDefinitions": {strconv.FormatBool(latest)}}
		}),
		"upgrade": {args: 1, ids: true, run: func(ctx context.Context, c *apiClient, pos []string, stdout io.Writer) error {
			return workflowUpgrade(ctx, c, pos[0], version, input, inputFile, stdout)
		}},
		"jump": {args: 2, ids: true, run: func(ctx context.Context, c *apiClient, pos []string, stdout io.Writer) error {
			in, err := jsonObject(input, inputFile)
			if err != nil {
				return err
			}
			body, err := json.Marshal(in)
			if err != nil {
				return err
			}
			if _, err := c.do(ctx, "POST", path(pos[0], "/jump/"+url.PathEscape(pos[1])), "application/json", body); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "%s jumped to %s\n", pos[0], pos[1])
			return nil
		}},
		"rerun": {args: 1, ids: true, run: func(ctx context.Context, c *apiClient, pos []string, stdout io.Writer) error {
			body, _ := json.Marshal(conductor.RerunWorkflowRequest{ReRunFromTaskID: fromTask})
			if _, err := c.do(ctx, "POST", path(pos[0], "/rerun"), "application/json", body); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "rerun %s\n", pos[0])
			return nil
		}},
	}
	switch fs.Name() {
	case "workflow start":
		fs.IntVar(&version, "version", 0, "the definition's version (default: the latest)")
		fs.StringVar(&input, "input", "", "the input, a JSON object")
		fs.StringVar(&inputFile, "input-file", "", `a file holding the input ("-": stdin)`)
		fs.StringVar(&correlation, "correlation-id", "", "the correlation id")
		fs.IntVar(&priority, "priority", 0, "priority, 0-99")
	case "workflow get":
		fs.BoolVar(&tasks, "tasks", false, "include the tasks")
	case "workflow search":
		fs.IntVar(&size, "size", 20, "at most this many")
	case "workflow terminate":
		fs.StringVar(&reason, "reason", "", "why")
	case "workflow restart":
		fs.BoolVar(&latest, "latest", false, "on the latest version of the definition")
	case "workflow rerun":
		fs.StringVar(&fromTask, "from-task", "", "the id of the task to run again from")
	case "workflow upgrade", "workflow jump":
		if fs.Name() == "workflow upgrade" {
			fs.IntVar(&version, "version", 0, "the definition's version (default: the latest)")
		}
		fs.StringVar(&input, "input", "", "the input, a JSON object")
		fs.StringVar(&inputFile, "input-file", "", `a file holding the input ("-": stdin)`)
	}
	return cmds
}

// printIndented prints a JSON answer indented.
func printIndented(stdout io.Writer, b []byte, what string) error {
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		return fmt.Errorf("the server's answer about %s is not JSON (%d bytes)", what, len(b))
	}
	out.WriteByte('\n')
	_, err := out.WriteTo(stdout)
	return err
}

// workflowRegister sends the definitions of a file as Conductor's bulk
// upsert, the file's JSON as it is (fields flowvault does not act on
// round-trip).
func workflowRegister(ctx context.Context, c *apiClient, pos []string, stdout io.Writer) error {
	b, err := readJSONFile(pos[0])
	if err != nil {
		return fmt.Errorf("read definitions: %w", err)
	}
	b = bytes.TrimSpace(b)
	if err := checkJSON(b, pos[0]); err != nil {
		return err
	}
	if len(b) > 0 && b[0] == '{' {
		b = slices.Concat([]byte("["), b, []byte("]"))
	}
	answer, err := c.do(ctx, "PUT", "/api/metadata/workflow", "application/json", b)
	if err != nil {
		return err
	}
	var res conductor.BulkResponse
	if err := decodeAnswer(answer, "/api/metadata/workflow", &res); err != nil {
		return err
	}
	for _, name := range res.BulkSuccessfulResults {
		fmt.Fprintf(stdout, "registered %s\n", name)
	}
	if len(res.BulkErrorResults) > 0 {
		var errs []error
		for _, name := range slices.Sorted(maps.Keys(res.BulkErrorResults)) {
			errs = append(errs, fmt.Errorf("%s: %s", name, res.BulkErrorResults[name]))
		}
		return errors.Join(errs...)
	}
	return nil
}

// maxJSONFile bounds what the workflow commands read: the server's own
// limit on a request body is lower still.
const maxJSONFile = 16 << 20

// checkJSON refuses what readJSONFile read of name unless it is JSON,
// saying whether it was empty (a pipe that sent nothing, stdin not
// redirected as meant) and naming stdin as such, not as "-".
func checkJSON(b []byte, name string) error {
	name = inputName(name)
	switch {
	case len(bytes.TrimSpace(b)) == 0:
		return fmt.Errorf("%s is empty: want JSON", name)
	case !json.Valid(b):
		return fmt.Errorf("%s is not JSON", name)
	}
	return nil
}

// readJSONFile reads a file, or stdin for "-", refusing one over
// maxJSONFile rather than sending it cut short.
func readJSONFile(name string) ([]byte, error) {
	var r io.Reader = stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, maxJSONFile+1))
	if err == nil && len(b) > maxJSONFile {
		err = fmt.Errorf("%s is over %d MiB", inputName(name), maxJSONFile>>20)
	}
	return b, err
}

// inputName is how messages name a file argument: "-" is stdin.
func inputName(name string) string {
	if name == "-" {
		return "stdin"
	}
	return name
}

func workflowStart(ctx context.Context, c *apiClient, name string, version, priority int, input, inputFile, correlation string, stdout io.Writer) error {
	req := conductor.StartWorkflowRequest{Name: name, CorrelationID: correlation, Priority: priority}
	if version > 0 {
		req.Version = &version
	}
	var err error
	if req.Input, err = jsonObject(input, inputFile); err != nil {
		return err
	}
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	id, err := c.do(ctx, "POST", "/api/workflow", "application/json", body)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s\n", bytes.TrimSpace(id))
	return nil
}

// jsonObject is the JSON object given by --input or --input-file, nil
// when neither is.
func jsonObject(input, inputFile string) (map[string]any, error) {
	raw := []byte(input)
	switch {
	case input != "" && inputFile != "":
		return nil, errors.New("give --input or --input-file, not both")
	case inputFile != "":
		b, err := readJSONFile(inputFile)
		if err != nil {
			return nil, fmt.Errorf("read the input: %w", err)
		}
		raw = b
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil, nil
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		return nil, errors.New("the input must be a JSON object")
	}
	return m, nil
}

// workflowUpgrade moves workflow id to a version of the definition it runs.
func workflowUpgrade(ctx context.Context, c *apiClient, id string, version int, input, inputFile string, stdout io.Writer) error {
	in, err := jsonObject(input, inputFile)
	if err != nil {
		return err
	}
	var wf conductor.Workflow
	if err := c.getJSON(ctx, "/api/workflow/"+url.PathEscape(id)+"?includeTasks=false", &wf); err != nil {
		return err
	}
	req := conductor.UpgradeWorkflowRequest{Name: wf.WorkflowName, WorkflowInput: in}
	if version > 0 {
		req.Version = &version
	}
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	if _, err := c.do(ctx, "POST", "/api/workflow/"+url.PathEscape(id)+"/upgrade", "application/json", body); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "upgraded %s\n", id)
	return nil
}

func workflowStatus(ctx context.Context, c *apiClient, pos []string, stdout io.Writer) error {
	var wf conductor.Workflow
	if err := c.getJSON(ctx, "/api/workflow/"+url.PathEscape(pos[0])+"?includeTasks=false", &wf); err != nil {
		return err
	}
	line := row(wf.WorkflowID, fmt.Sprintf("%s v%d", wf.WorkflowName, wf.WorkflowVersion), wf.Status)
	if wf.ReasonForIncompletion != "" {
		line += "\t" + printable(wf.ReasonForIncompletion)
	}
	_, err := fmt.Fprintln(stdout, line)
	return err
}

func workflowSearch(ctx context.Context, c *apiClient, pos []string, size int, stdout io.Writer) error {
	q := url.Values{"size": {strconv.Itoa(size)}, "sort": {"startTime:DESC"}}
	if len(pos) > 0 {
		q.Set("query", pos[0])
	}
	var res conductor.SearchResult[conductor.WorkflowSummary]
	if err := c.getJSON(ctx, "/api/workflow/search?"+q.Encode(), &res); err != nil {
		return err
	}
	for _, s := range res.Results {
		start := "-"
		if t, err := time.Parse(time.RFC3339, s.StartTime); err == nil {
			start = t.UTC().Format(time.RFC3339)
		} else if s.StartTime != "" {
			start = s.StartTime
		}
		fmt.Fprintln(stdout, row(s.WorkflowID, fmt.Sprintf("%s v%d", s.WorkflowType, s.Version), s.Status, start))
	}
	if res.TotalHits > int64(len(res.Results)) && c.notes != nil {
		fmt.Fprintf(c.notes, "(%d of %d)\n", len(res.Results), res.TotalHits)
	}
	return nil
}
