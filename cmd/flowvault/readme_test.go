package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/flowvault/flowvault/secrets"
)

// readmeTable returns the rows of the README's table whose header row is
// header, each a list of its cells.
func readmeTable(t *testing.T, header string) [][]string {
	t.Helper()
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, table, ok := strings.Cut(string(readme), "\n"+header+"\n")
	if !ok {
		t.Fatalf("README has no table %q", header)
	}
	var rows [][]string
	for _, line := range strings.Split(table, "\n") {
		if !strings.HasPrefix(line, "|") {
			break
		}
		if strings.HasPrefix(line, "| ---") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), " | ")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		rows = append(rows, cells)
	}
	return rows
}

var codeSpan = regexp.MustCompile("`([^`]*)`")

// codeSpans are the texts a README cell quotes as code.
func codeSpans(cell string) []string {
	var out []string
	for _, m := range codeSpan.FindAllStringSubmatch(cell, -1) {
		out = append(out, m[1])
	}
	return out
}

// serverFlag is what `flowvault server -h` says of one flag.
type serverFlag struct {
	env, def string
}

// serverFlags reads the server's flags from its usage text, as a user
// sees them: the environment variable each names and its default, when
// it prints one.
func serverFlags(t *testing.T) map[string]serverFlag {
	t.Helper()
	var stderr bytes.Buffer
	if _, err := serverConfig([]string{"-h"}, &stderr); err == nil {
		t.Fatal("server -h: no usage error")
	}
	flags := map[string]serverFlag{}
	name := ""
	envRe := regexp.MustCompile(`\(\$(FLOWVAULT_[A-Z_]+)\)`)
	defRe := regexp.MustCompile(`\(default "?([^")]*)"?\)$`)
	for _, line := range strings.Split(stderr.String(), "\n") {
		if rest, ok := strings.CutPrefix(line, "  -"); ok {
			name = strings.Fields(rest)[0]
			flags[name] = serverFlag{}
			continue
		}
		if name == "" {
			continue
		}
		f := flags[name]
		if m := envRe.FindStringSubmatch(line); m != nil {
			f.env = m[1]
		}
		if m := defRe.FindStringSubmatch(strings.TrimSpace(line)); m != nil {
			f.def = m[1]
		}
		flags[name] = f
	}
	if len(flags) == 0 {
		t.Fatalf("no flags in the usage:\n%s", stderr.String())
	}
	return flags
}

// sameDefault tells whether the README's default (a cell, code or prose)
// is the one the usage prints; durations compare by value (75s, 1m15s).
func sameDefault(doc, usage string) bool {
	spans := codeSpans(doc)
	if len(spans) != 1 || spans[0] != doc[1:len(doc)-1] {
		// Prose ("(empty)", "from the open files limit"): the flag's
		// default is its zero value, which the usage does not print.
		return usage == "" || usage == "0"
	}
	want := spans[0]
	if want == "false" {
		return usage == ""
	}
	if a, err := time.ParseDuration(want); err == nil {
		b, err := time.ParseDuration(usage)
		return err == nil && a == b
	}
	return want == usage
}

// The README's table of the server's flags is the one an operator reads:
// each of its flags exists with the environment variable and default it
// gives, and every flag of `flowvault server` is in it.
func TestServerFlagsTableMatchesREADME(t *testing.T) {
	t.Parallel()
	flags := serverFlags(t)
	documented := map[string]bool{}
	for _, row := range readmeTable(t, "| flag | environment | default | meaning |") {
		if len(row) < 4 {
			t.Errorf("README row %q: want 4 cells", row)
			continue
		}
		names, envs := codeSpans(row[0]), codeSpans(row[1])
		if len(names) == 0 { // "(none)": a variable without a flag
			if len(envs) != 1 || envs[0] != secrets.MasterKeyEnv {
				t.Errorf("README row %q: a variable without a flag other than $%s", row, secrets.MasterKeyEnv)
			}
			continue
		}
		if len(names) != len(envs) {
			t.Errorf("README row %q: %d flags, %d variables", row, len(names), len(envs))
			continue
		}
		for i, n := range names {
			name := strings.TrimPrefix(n, "--")
			documented[name] = true
			f, ok := flags[name]
			switch {
			case !ok:
				t.Errorf("README names %s, which flowvault server does not have", n)
			case f.env != envs[i]:
				t.Errorf("README gives %s the variable %s, the server $%s", n, envs[i], f.env)
			case !sameDefault(row[2], f.def):
				t.Errorf("README gives %s the default %s, the server %q", n, row[2], f.def)
			}
		}
	}
	for name := range flags {
		if !documented[name] {
			t.Errorf("flowvault server --%s is not in the README's table of flags", name)
		}
	}
}
