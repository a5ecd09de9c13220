package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

const workerCredsUsage = `usage: flowvault worker-credentials --task-types a,b [--start-workflows w1,w2] [flags]

Asks the server for NATS credentials for workers of the given task types,
or for producers that start the given workflows by publishing (as you),
and prints them as a standard .creds file (user JWT and seed) to stdout,
or writes them to --out (mode 0600). The credentials allow exactly what
the worker protocol needs for those types (see docs/worker-protocol.md);
connect with inbox prefix _INBOX_<user public key> (the Go SDK's
workers.Connect does).

The caller needs the WORKER role and EXECUTE on every type (admins may
ask for any type), and EXECUTE on every workflow to start.

flags:
  --task-types a,b   task types the worker serves
  --start-workflows w1,w2
                     workflows it may start by publishing to
                     fv.cmd.start.<workflow>.<your principal>
                     (one of --task-types and --start-workflows is required)
  --domains d1,d2    task domains whose queues it may also pull from
  --name NAME        a name shown in NATS server monitoring
  --expires D        lifetime, e.g. 720h or 30d (default 30d, at most 365d)
  --out FILE         write the credentials to FILE (0600) instead of stdout
` + clientUsage

func runWorkerCredentials(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("worker-credentials", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, workerCredsUsage) }
	var conn connection
	conn.flags(fs)
	var types, starts, domains, name, expires, out string
	fs.StringVar(&types, "task-types", "", "task types, comma-separated")
	fs.StringVar(&starts, "start-workflows", "", "workflows to start by publishing, comma-separated")
	fs.StringVar(&domains, "domains", "", "task domains, comma-separated")
	fs.StringVar(&name, "name", "", "name of the NATS user")
	fs.StringVar(&expires, "expires", "", "lifetime (e.g. 720h, 30d)")
	fs.StringVar(&out, "out", "", "write to this file (0600) instead of stdout")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 || types == "" && starts == "" {
		fmt.Fprint(stderr, "flowvault worker-credentials: --task-types or --start-workflows is required, and there are no arguments\n\n"+workerCredsUsage)
		return errUsage
	}
	ttl, err := parseLifetime(expires)
	if err != nil {
		return err
	}
	c, err := conn.client()
	if err != nil {
		return err
	}
	body, _ := json.Marshal(map[string]any{"taskTypes": splitList(types), "startWorkflows": splitList(starts), "domains": splitList(domains), "name": name,
		"expiresInSeconds": int64(ttl / time.Second)})
	b, err := c.do(ctx, "POST", "/api/workers/credentials", "application/json", body)
	if err != nil {
		return err
	}
	var res struct {
		Creds       string `json:"creds"`
		User        string `json:"user"`
		InboxPrefix string `json:"inboxPrefix"`
		Expires     int64  `json:"expires"`
	}
	err = json.Unmarshal(b, &res)
	clear(b)
	if err != nil || res.Creds == "" {
		return errors.New("the server answered no credentials")
	}
	if out == "" {
		_, err = io.WriteString(stdout, res.Creds)
		return err
	}
	if err := writePrivateFile(out, []byte(res.Creds)); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote credentials for %s to %s\n  user:         %s\n  inbox prefix: %s\n  expires:      %s\n",
		strings.Join(append(splitList(types), splitList(starts)...), ","), out, res.User, res.InboxPrefix, time.UnixMilli(res.Expires).UTC().Format(time.RFC3339))
	return nil
}

// splitList reads a comma-separated list, dropping empty entries.
func splitList(s string) []string {
	out := []string{}
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// parseLifetime reads a Go duration or a number of days ("30d"); "" is 0,
// the server's default.
func parseLifetime(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n <= 0 {
			return 0, fmt.Errorf("--expires %q: want a duration such as 720h or 30d", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < time.Second {
		return 0, fmt.Errorf("--expires %q: want a duration of at least 1s, such as 720h or 30d", s)
	}
	return d, nil
}

// writePrivateFile replaces path with data, readable by its owner only:
// written to a temporary file in the same directory and renamed, so that
// no reader sees a partial file and no other user ever could read it.
func writePrivateFile(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
