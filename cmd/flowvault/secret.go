package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/secrets"
)

// stdin is where `secret put` reads a value; tests replace it.
var stdin io.Reader = os.Stdin

const defaultServer = "http://127.0.0.1:8080"

const secretUsage = `usage: flowvault secret <command> [flags]

commands:
  put NAME [--file F]            store a value, read from F or stdin (also F "-"), never from the
                                 command line; a terminal takes one line typed without echo: a
                                 multi-line value (a PEM key) must come from --file or a pipe, of
                                 which one trailing newline (\n or \r\n) is dropped (end with two
                                 to keep one); an empty value is refused
  get NAME [--show-value]        print the secret's metadata, or with --show-value its value
  list                           list the secrets and their tags
  delete NAME                    delete a secret
  tag NAME key=value... [--delete]  add (or update by key) tags, or remove them (each must be set)

NAME matches [a-zA-Z0-9_-]+.

flags of every command:
` + clientUsage

func runSecret(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	sub, args, err := subcommand(args, secretUsage, stderr)
	if err != nil {
		return err
	}
	fs, conn := clientFlagSet("secret "+sub, secretUsage, stderr)
	var file string
	var showValue, del bool
	switch sub {
	case "put":
		fs.StringVar(&file, "file", "", "read the value from this file (default: stdin)")
	case "get":
		fs.BoolVar(&showValue, "show-value", false, "print the value itself to stdout")
	case "tag":
		fs.BoolVar(&del, "delete", false, "remove the given tags instead of adding them")
	case "list", "delete":
	default:
		fmt.Fprintf(stderr, "flowvault secret: unknown command %q\n\n%s", sub, secretUsage)
		return errUsage
	}
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	wantArgs := map[string][2]int{"put": {1, 1}, "get": {1, 1}, "list": {0, 0}, "delete": {1, 1}, "tag": {2, 1 << 20}}[sub]
	if len(pos) < wantArgs[0] || len(pos) > wantArgs[1] {
		fmt.Fprintf(stderr, "flowvault secret %s: wrong number of arguments\n\n%s", sub, secretUsage)
		return errUsage
	}
	// Checked before any request: a name such as "." or ".." is not
	// sent as itself, the path is cleaned to another route (another
	// secret's value, the tags of a secret named "tags").
	if len(pos) > 0 {
		if err := secrets.CheckSecretName(pos[0]); err != nil {
			return err
		}
	}
	c, err := conn.client(stderr)
	if err != nil {
		return err
	}
	switch sub {
	case "put":
		return secretPut(ctx, c, pos[0], file, stdout, stderr)
	case "get":
		return secretGet(ctx, c, pos[0], showValue, stdout)
	case "list":
		return secretList(ctx, c, stdout)
	case "delete":
		if _, err := c.do(ctx, "DELETE", secretPath(pos[0]), "", nil); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "deleted secret %s\n", pos[0])
		return nil
	default:
		return secretTag(ctx, c, pos[0], pos[1:], del, stdout)
	}
}

// secretPath is the API path of a secret, whose name was checked.
func secretPath(name string) string { return "/api/secrets/" + url.PathEscape(name) }

// parseInterspersed parses flags that may come before, between or after
// the positional arguments, and returns the positional arguments.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, parseErr(err)
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, refuseEmptyPaths(fs)
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), refuseEmptyPaths(fs)
		}
		pos, args = append(pos, args[0]), args[1:]
	}
}

// refuseEmptyPaths refuses a --file or --out given empty: a variable
// expanded from nothing, not a request for stdin or stdout, where a value
// would be read from the next line of a loop's input, or a key's secret
// printed into a CI log.
func refuseEmptyPaths(fs *flag.FlagSet) error {
	var err error
	fs.Visit(func(f *flag.Flag) {
		if (f.Name == "file" || f.Name == "out") && f.Value.String() == "" && err == nil {
			err = fmt.Errorf("--%s is set but empty: name a file, or leave the flag out", f.Name)
		}
	})
	return err
}

func secretPut(ctx context.Context, c *apiClient, name, file string, stdout, stderr io.Writer) error {
	value, err := readValue(ctx, name, file, stderr)
	if err != nil {
		return err
	}
	_, err = c.do(ctx, "PUT", secretPath(name), "text/plain", value)
	clear(value)
	if err != nil {
		return err
	}
	m, err := c.metadata(ctx, name)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "stored secret %s version %d (%d bytes, %s)\n", name, m.Version, m.Size, m.Fingerprint)
	return nil
}

// errEmptyValue refuses an empty value before anything is sent: it is
// almost always a slip (Enter alone, stdin not redirected as meant, a
// variable expanded from nothing), and a put destroys the previous
// version's key for good.
var errEmptyValue = errors.New("the value is empty: nothing was stored")

// errNoValue is end of input (Ctrl-D) at the prompt.
var errNoValue = errors.New("no value entered: nothing was stored")

// readValue reads the value to put from file, or else (no file, or "-")
// from stdin.
func readValue(ctx context.Context, name, file string, stderr io.Writer) ([]byte, error) {
	var value []byte
	var err error
	// "-" is stdin, as FILE is in the other commands.
	if file != "" && file != "-" {
		value, err = readValueFile(file)
	} else {
		value, err = readStdinValue(ctx, name, stderr)
	}
	if err != nil {
		return nil, err
	}
	if len(value) == 0 {
		return nil, errEmptyValue
	}
	return value, nil
}

// trimNewline drops one line ending, "\n" or "\r\n", from the end of a
// value from a file or a pipe: the one that echo, a here-string or an
// editor adds and users of `vault kv put k=@file` or `gh secret set` do
// not expect to store. Only one, so that a value that must end with a
// newline can still be stored: its file ends with two.
func trimNewline(b []byte) []byte {
	if v, ok := bytes.CutSuffix(b, []byte("\n")); ok {
		v, _ = bytes.CutSuffix(v, []byte("\r"))
		return v
	}
	return b
}

// readValueFile reads a value file, less its trailing newline.
func readValueFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readPiped(f, path)
}

// readPiped reads a value from a file or a pipe (named what in
// messages): every byte up to the value limit, less a trailing newline.
func readPiped(r io.Reader, what string) ([]byte, error) {
	// Room for the limit and a line ending, which does not count.
	b, err := secrets.ReadValue(io.LimitReader(r, secrets.MaxValueLen+int64(len("\r\n"))+1))
	if err != nil {
		// The error of a file names it already ("read F: is a directory").
		if pe := (*fs.PathError)(nil); !errors.As(err, &pe) {
			err = fmt.Errorf("read %s: %w", what, err)
		}
		return nil, err
	}
	v := trimNewline(b)
	if len(v) > secrets.MaxValueLen {
		clear(b)
		return nil, fmt.Errorf("the value from %s is over the limit of %d bytes", what, secrets.MaxValueLen)
	}
	return v, nil
}

// readStdinValue reads the value from stdin: from a terminal, one line
// typed without echo; from a pipe or a file, every byte but a trailing
// newline.
func readStdinValue(ctx context.Context, name string, stderr io.Writer) ([]byte, error) {
	f, isFile := stdin.(*os.File)
	if !isFile || !isTerminal(f) {
		return readPiped(stdin, "stdin")
	}
	fmt.Fprintf(stderr, "Value of secret %s, one line (input hidden, Enter to finish; a multi-line value must come from --file or a pipe): ", name)
	v, err := readHiddenLine(ctx, f)
	fmt.Fprintln(stderr)
	if errors.Is(err, io.EOF) {
		return nil, errNoValue
	}
	if err != nil {
		return nil, err
	}
	if len(v) > secrets.MaxValueLen {
		clear(v)
		return nil, fmt.Errorf("the value is over the limit of %d bytes", secrets.MaxValueLen)
	}
	return v, nil
}

func secretGet(ctx context.Context, c *apiClient, name string, showValue bool, stdout io.Writer) error {
	if showValue {
		v, err := c.do(ctx, "GET", secretPath(name), "", nil)
		if err != nil {
			return err
		}
		_, err = stdout.Write(v)
		clear(v)
		return err
	}
	m, err := c.metadata(ctx, name)
	if err != nil {
		return err
	}
	when := func(ms int64) string { return time.UnixMilli(ms).UTC().Format(time.RFC3339) }
	by := func(p string) string {
		if p == "" {
			return "anonymous"
		}
		return printable(p)
	}
	fmt.Fprintf(stdout, "name:        %s\n", printable(m.Name))
	fmt.Fprintf(stdout, "version:     %d\n", m.Version)
	fmt.Fprintf(stdout, "size:        %d bytes\n", m.Size)
	fmt.Fprintf(stdout, "fingerprint: %s\n", printable(m.Fingerprint))
	fmt.Fprintf(stdout, "created:     %s by %s\n", when(m.CreateTime), by(m.CreatedBy))
	fmt.Fprintf(stdout, "updated:     %s by %s\n", when(m.UpdateTime), by(m.UpdatedBy))
	fmt.Fprintf(stdout, "tags:        %s\n", formatTags(m.Tags))
	fmt.Fprintln(stdout, "versions:")
	for _, v := range m.Versions {
		fmt.Fprintf(stdout, "  %-4d %s  %-20s %s  %d bytes\n", v.Version, when(v.Time), by(v.By), printable(v.Fingerprint), v.Size)
	}
	fmt.Fprintln(stdout, "(the value is not shown; use --show-value)")
	return nil
}

// formatTags shows tags as key=value,…, escaped: anyone who may tag a
// secret could otherwise send escape sequences to an admin's terminal.
func formatTags(tags []conductor.Tag) string {
	parts := make([]string, len(tags))
	for i, t := range tags {
		parts[i] = printable(t.Key) + "=" + printable(t.Value)
	}
	return strings.Join(parts, ",")
}

// printable returns s Go-quoted, as `flowvault audit` shows such a field,
// when it holds what a terminal would act on or hide (control characters,
// escape sequences, invalid UTF-8), or a quote or a backslash (so that a
// quoted string is told from a plain one); else s itself.
func printable(s string) string {
	if q := strconv.Quote(s); q[1:len(q)-1] != s {
		return q
	}
	return s
}

// row is a tab-separated line of fields from the server, each printable:
// a worker's reason, a webhook's or workflow's name may hold a terminal's
// escape sequences (clear the screen, set the title, \r over the line).
func row(fields ...any) string {
	s := make([]string, len(fields))
	for i, f := range fields {
		s[i] = printable(fmt.Sprint(f))
	}
	return strings.Join(s, "\t")
}

func secretList(ctx context.Context, c *apiClient, stdout io.Writer) error {
	var list []struct {
		Name string          `json:"name"`
		Tags []conductor.Tag `json:"tags"`
	}
	if err := c.getJSON(ctx, "/api/secrets-v2", &list); err != nil {
		return err
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Name < list[j].Name })
	for _, s := range list {
		if len(s.Tags) == 0 {
			fmt.Fprintln(stdout, printable(s.Name))
			continue
		}
		fmt.Fprintf(stdout, "%s\t%s\n", printable(s.Name), formatTags(s.Tags))
	}
	return nil
}

func secretTag(ctx context.Context, c *apiClient, name string, pairs []string, del bool, stdout io.Writer) error {
	tags := make([]conductor.Tag, 0, len(pairs))
	for _, p := range pairs {
		k, v, ok := strings.Cut(p, "=")
		if !ok || k == "" {
			return fmt.Errorf("tag %s: want key=value", printable(p))
		}
		tags = append(tags, conductor.Tag{Key: k, Value: v})
	}
	method, verb := "PUT", "tagged"
	if del {
		if err := checkTagsSet(ctx, c, name, tags); err != nil {
			return err
		}
		method, verb = "DELETE", "untagged"
	}
	body, _ := json.Marshal(tags)
	if _, err := c.do(ctx, method, secretPath(name)+"/tags", "application/json", body); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s secret %s: %s\n", verb, name, formatTags(tags))
	return nil
}

// checkTagsSet refuses to remove tags the secret does not have: the
// server removes the tags that match and ignores the others, so a
// mistyped tag would look removed.
func checkTagsSet(ctx context.Context, c *apiClient, name string, tags []conductor.Tag) error {
	var set []conductor.Tag
	if err := c.getJSON(ctx, secretPath(name)+"/tags", &set); err != nil {
		return err
	}
	var missing []conductor.Tag
	for _, t := range tags {
		if !slices.ContainsFunc(set, func(s conductor.Tag) bool { return s.Key == t.Key && s.Value == t.Value }) {
			missing = append(missing, t)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("secret %s has no tag %s: nothing was removed", name, formatTags(missing))
	}
	return nil
}

func (c *apiClient) metadata(ctx context.Context, name string) (*secrets.Meta, error) {
	var m secrets.Meta
	if err := c.getJSON(ctx, secretPath(name)+"/metadata", &m); err != nil {
		return nil, err
	}
	return &m, nil
}
