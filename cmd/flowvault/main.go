// Command flowvault is the flowvault server and its command-line client.
//
//	flowvault server     run a server (embedded NATS + Pebble under ./data)
//	flowvault secret     put, get, list, delete and tag secrets on a server
//	flowvault workflow   register definitions; start, inspect and operate executions
//	flowvault app        applications, their roles and access keys
//	flowvault grant      grant and withdraw access
//	flowvault audit      print the audit trail; verify the read models
//	flowvault keys       rotate the key encryption key (stopped server)
//	flowvault worker-credentials  NATS credentials for workers of some task types
//	flowvault version    print the version (also --version, -v)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

type command struct {
	name  string
	short string
	run   func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

var commands = []command{
	{"server", "run a flowvault server", runServer},
	{"secret", "put, get, list, delete and tag secrets (REST API client)", runSecret},
	{"workflow", "register definitions; start, inspect, search and operate executions (REST API client)", runWorkflow},
	{"app", "create applications and their access keys, give them roles (REST API client)", runApp},
	{"grant", "grant and withdraw access, list grants (REST API client)", runGrant},
	{"webhook", "create, list and delete incoming webhooks (REST API client)", runWebhook},
	{"schema", "save, list and delete the JSON Schemas definitions enforce (REST API client)", runSchema},
	{"audit", "print the audit trail replayed from the log; --verify the read models", runAudit},
	{"keys", "rotate the key encryption key, change the master key, show the keyring", runKeys},
	{"admin", "recover admin access to a stopped server with the master key", runAdmin},
	{"worker-credentials", "NATS credentials for workers of given task types (REST API client)", runWorkerCredentials},
	{"version", "print the version", runVersion},
}

func main() {
	// A hang-up (the terminal closed) ends a command as Ctrl-C does: a
	// server stops gracefully, a prompt gives the terminal its echo back.
	// Unless it is ignored (nohup): asking for it would undo that.
	signals := []os.Signal{os.Interrupt, syscall.SIGTERM}
	if !signal.Ignored(syscall.SIGHUP) {
		signals = append(signals, syscall.SIGHUP)
	}
	ctx, stop := signal.NotifyContext(context.Background(), signals...)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	switch {
	case len(args) == 0:
		usage(stderr)
		return 2
	case args[0] == "-v" || args[0] == "--version" || args[0] == "-version":
		args = append([]string{"version"}, args[1:]...)
	case args[0] == "-h" || args[0] == "--help" || (args[0] == "help" && len(args) == 1):
		usage(stderr)
		return 0
	case args[0] == "help":
		// help CMD is CMD -h: the command's own usage.
		args = []string{args[1], "-h"}
	}
	for _, c := range commands {
		if c.name == args[0] {
			out := &outputWriter{w: stdout}
			err := c.run(ctx, args[1:], out, stderr)
			if err == nil && out.err != nil {
				// An export cut short (a full disk) is a failure too.
				err = fmt.Errorf("write output: %w", out.err)
			}
			return exitCode(stderr, c.name, err)
		}
	}
	fmt.Fprintf(stderr, "flowvault: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

// exitCode reports a command's error and returns the process's exit code:
// 2 for a command line that did not parse, 1 for any other failure.
func exitCode(stderr io.Writer, name string, err error) int {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	default:
		fmt.Fprintf(stderr, "flowvault %s: %v\n", name, err)
		return 1
	}
}

// errUsage reports a command line that could not be parsed; the flag
// package has already printed why.
var errUsage = errors.New("usage")

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: flowvault <command> [flags]\n\ncommands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-19s %s\n", c.name, c.short)
	}
	fmt.Fprintln(w, "\nRun 'flowvault help <command>' or 'flowvault <command> -h' for a command's flags;\n'flowvault --version' prints the version.")
}

func runVersion(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("version", flag.ContinueOnError)
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		return parseErr(err)
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "flowvault version: unexpected argument %q\n", fs.Arg(0))
		return errUsage
	}
	fmt.Fprintf(stdout, "flowvault %s\n", version)
	return nil
}

// subcommand splits a command's arguments into its subcommand and the
// rest; help (-h, --help, help) and a missing subcommand print usage.
func subcommand(args []string, usage string, stderr io.Writer) (sub string, rest []string, err error) {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, usage)
		if len(args) == 0 {
			return "", nil, errUsage
		}
		return "", nil, flag.ErrHelp
	}
	return args[0], args[1:], nil
}

func parseErr(err error) error {
	if errors.Is(err, flag.ErrHelp) {
		return err
	}
	return errUsage
}

// outputWriter keeps the first error of writes to a command's output,
// which commands print to without looking at each write's error.
type outputWriter struct {
	w   io.Writer
	err error
}

func (o *outputWriter) Write(p []byte) (int, error) {
	if o.err != nil {
		return 0, o.err
	}
	n, err := o.w.Write(p)
	o.err = err
	return n, err
}
