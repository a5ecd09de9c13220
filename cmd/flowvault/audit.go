package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"

	"github.com/flowvault/flowvault/audit"
	"github.com/flowvault/flowvault/projections"
)

const auditUsage = `usage: flowvault audit [filters] [--json]
       flowvault audit --verify [--sample N]

Prints the audit trail, replayed from the server's event log, oldest entry
first, one line per entry (values are never shown):

  <time> <principal> <action> <target> [<key>=<value> ...]

The time is UTC with milliseconds; an absent principal or target is "-";
details follow in key order; a field with a space, a quote or '=' is
Go-quoted. --verify rebuilds every read model from the log and compares it
with the server's, key by key; it exits 1 when they differ.

filters (combined with AND):
  --principal P   entries whose actor is P (a user id, app:<id>)
  --secret S      entries about secret S (writes, reads, grants, resolutions)
  --env E         entries about environment value E
  --workflow W    entries about workflow W (resolutions, who joined it,
                  secrets its UPDATE_SECRET tasks wrote or were refused)
  --from T        entries at or after T: RFC 3339, a date (2026-01-02),
                  Unix milliseconds, or a duration ago (90m, 24h, 7d)
  --to T          entries before T
  --limit N       the most recent N entries (default 1000, at most 100000)

flags:
  --json          print the server's JSON answer instead of lines
  --verify        compare the read models with a rebuild from the log
  --sample N      with --verify: differences listed per read model (default 20)
` + clientUsage

// auditFilters are the filter flags, named as GET /api/audit's parameters.
var auditFilters = []string{"principal", "secret", "env", "workflow", "from", "to", "limit"}

// errDrift is the error of a verification that found differences.
var errDrift = errors.New("the read models differ from their rebuild from the log")

func runAudit(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, conn := clientFlagSet("audit", auditUsage, stderr)
	filters := map[string]*string{}
	for _, name := range auditFilters {
		filters[name] = fs.String(name, "", "filter: "+name)
	}
	asJSON := fs.Bool("json", false, "print the server's JSON answer")
	verify := fs.Bool("verify", false, "compare the read models with a rebuild from the log")
	sample := fs.Int("sample", 0, "with --verify: differences listed per read model")
	if err := fs.Parse(args); err != nil {
		return parseErr(err)
	}
	q := url.Values{}
	for _, name := range auditFilters {
		if v := *filters[name]; v != "" {
			q.Set(name, v)
		}
	}
	switch {
	case fs.NArg() > 0:
		fmt.Fprintf(stderr, "flowvault audit: unexpected argument %q\n\n%s", fs.Arg(0), auditUsage)
		return errUsage
	case *verify && len(q) > 0:
		fmt.Fprintf(stderr, "flowvault audit: --verify takes no filters\n\n%s", auditUsage)
		return errUsage
	case !*verify && *sample != 0:
		fmt.Fprintf(stderr, "flowvault audit: --sample goes with --verify\n\n%s", auditUsage)
		return errUsage
	}
	c, err := conn.client(stderr)
	if err != nil {
		return err
	}
	if *verify {
		c.http.Timeout = 0 // a rebuild of every read model takes what it takes; Ctrl-C stops it
		return auditVerify(ctx, c, *sample, *asJSON, stdout)
	}
	return auditTrail(ctx, c, q, *asJSON, stdout, stderr)
}

func auditTrail(ctx context.Context, c *apiClient, q url.Values, asJSON bool, stdout, stderr io.Writer) error {
	path := "/api/audit"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	b, err := c.do(ctx, "GET", path, "", nil)
	if err != nil {
		return err
	}
	if asJSON {
		_, err := stdout.Write(append(b, '\n'))
		return err
	}
	var res audit.Result
	if err := decodeAnswer(b, path, &res); err != nil {
		return err
	}
	for _, e := range res.Entries {
		fmt.Fprintln(stdout, audit.Line(e))
	}
	if res.Truncated {
		fmt.Fprintf(stderr, "(the %d most recent entries; narrow with --from/--to or raise --limit for older ones)\n", len(res.Entries))
	}
	return nil
}

// verifyAnswer is POST /api/audit/verify's answer.
type verifyAnswer struct {
	Drift      bool                       `json:"drift"`
	ReadModels []projections.VerifyResult `json:"readModels"`
}

func auditVerify(ctx context.Context, c *apiClient, sample int, asJSON bool, stdout io.Writer) error {
	path := "/api/audit/verify"
	if sample != 0 {
		path += "?sample=" + strconv.Itoa(sample)
	}
	b, err := c.do(ctx, "POST", path, "", nil)
	if err != nil {
		return err
	}
	var ans verifyAnswer
	if err := decodeAnswer(b, path, &ans); err != nil {
		return err
	}
	if asJSON {
		_, err = stdout.Write(append(b, '\n'))
	} else {
		printVerify(stdout, ans)
	}
	if err == nil && ans.Drift {
		err = errDrift
	}
	return err
}

// printVerify prints one line per read model, then its sample of
// differences (keys and value hashes, never values).
func printVerify(w io.Writer, ans verifyAnswer) {
	drifted := 0
	for _, r := range ans.ReadModels {
		status := "ok"
		switch {
		case r.Error != "":
			status = "ERROR: " + r.Error
		case r.Differences > 0:
			status = fmt.Sprintf("DRIFT: %d differences", r.Differences)
		}
		if r.Drifted() {
			drifted++
		}
		fmt.Fprintf(w, "%-12s %-10s checkpoint %-8d %6d keys  %s\n", r.Name, r.Stream, r.Checkpoint, r.Keys, status)
		for _, d := range r.Sample {
			fmt.Fprintf(w, "  %-8s %s", d.Kind, d.Key)
			if d.Live != "" {
				fmt.Fprintf(w, " live=%s", d.Live)
			}
			if d.Rebuilt != "" {
				fmt.Fprintf(w, " rebuilt=%s", d.Rebuilt)
			}
			fmt.Fprintln(w)
		}
		if n := r.Differences - len(r.Sample); n > 0 {
			fmt.Fprintf(w, "  … and %d more\n", n)
		}
	}
	if drifted == 0 {
		fmt.Fprintf(w, "no drift: %d read models match their rebuild from the log\n", len(ans.ReadModels))
		return
	}
	fmt.Fprintf(w, "drift: %d of %d read models differ from their rebuild from the log\n", drifted, len(ans.ReadModels))
}
