package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net/url"
	"strconv"

	"github.com/flowvault/flowvault/schemas/conductor"
)

const schemaUsage = `usage: flowvault schema <command> [flags]

commands:
  put FILE [--new-version]        save the schemas in FILE ("-": stdin): one schema, or a list,
                                  each {"name", "version", "type": "JSON", "data": <a JSON Schema>};
                                  with --new-version, each as the version after its latest
  list                            list the schemas: name, version, type
  get NAME [--version N]          print a schema (default: its latest version)
  delete NAME [--version N]       delete one version of a schema, or every version

Definitions enforce a schema with "enforceSchema": true and "inputSchema"
(a workflow's: its input at start; a task's: its input at hand-off) or
"outputSchema" (a task's: a worker's output; a workflow's: its output).

flags of every command:
` + clientUsage

func runSchema(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return runClientCommands(ctx, "schema", schemaUsage, schemaCommands, args, stdout, stderr)
}

func schemaCommands(fs *flag.FlagSet) map[string]clientCommand {
	var (
		version    int
		newVersion bool
	)
	switch fs.Name() {
	case "schema put":
		fs.BoolVar(&newVersion, "new-version", false, "save each as the version after its latest")
	case "schema get":
		fs.IntVar(&version, "version", 0, "the version (default: the latest)")
	case "schema delete":
		fs.IntVar(&version, "version", 0, "the version to delete (default: every version)")
	}
	path := func(name string) string {
		p := "/api/schema/" + url.PathEscape(name)
		if version > 0 {
			p += "/" + strconv.Itoa(version)
		}
		return p
	}
	return map[string]clientCommand{
		"put": {args: 1, run: func(ctx context.Context, c *apiClient, pos []string, stdout io.Writer) error {
			b, err := readJSONFile(pos[0])
			if err != nil {
				return fmt.Errorf("read the schemas: %w", err)
			}
			b = bytes.TrimSpace(b)
			if err := checkJSON(b, pos[0]); err != nil {
				return err
			}
			if len(b) > 0 && b[0] == '{' {
				b = append(append([]byte("["), b...), ']')
			}
			p := "/api/schema"
			if newVersion {
				p += "?newVersion=true"
			}
			if _, err := c.do(ctx, "POST", p, "application/json", b); err != nil {
				return err
			}
			fmt.Fprintln(stdout, "saved")
			return nil
		}},
		"list":   listCommand("/api/schema?short=true", func(d conductor.SchemaDef) string { return row(d.Name, d.Version, d.Type) }),
		"get":    getCommand(path),
		"delete": deleteCommand(path),
	}
}
