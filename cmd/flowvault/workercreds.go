package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/flowvault/flowvault/natsauth"
	"github.com/flowvault/flowvault/node"
)

const workerCredsUsage = `usage: flowvault worker-credentials --task-types a,b [--start-workflows w1,w2] [--subscribe s1,s2] [flags]
       flowvault worker-credentials list [--all] [flags]
       flowvault worker-credentials revoke USER [flags]

Asks the server for NATS credentials for workers of the given task types,
for producers that start the given workflows by publishing (as you), or
for consumers of the events EVENT tasks publish, and prints them as a standard .creds file (user JWT and seed) to stdout,
or writes them to --out (mode 0600). The credentials allow exactly what
the worker protocol needs for those types (see docs/worker-protocol.md);
connect with inbox prefix _INBOX_<user public key> (the Go SDK's
workers.Connect does).

The caller needs the WORKER role and EXECUTE on every type (admins may
ask for any type), EXECUTE on every workflow to start, and the ADMIN
role to subscribe to events.

list prints the credentials you issued (an admin: everyone's), one line
each: user, name, what they allow, who issued them, when they expire,
and when and by whom they were revoked. --all adds expired ones.

revoke withdraws the credentials of USER (a public key, as printed when
they were issued and by list) before they expire: the NATS server
refuses them and closes their connections before the command returns.
You may revoke what you issued; an admin, anything.

flags:
  --task-types a,b   task types the worker serves
  --start-workflows w1,w2
                     workflows it may start by publishing to
                     fv.cmd.start.<workflow>.<your principal>
  --subscribe s1,s2  event subjects or patterns it may receive (EVENT
                     tasks' nats:<subject> sinks), e.g. orders.>
                     (one of --task-types, --start-workflows and
                     --subscribe is required)
  --domains d1,d2    task domains whose queues it may also pull from
  --domains-only     only the domains' queues, not those without domain
                     (what a DOMAIN grant allows)
  --name NAME        a name shown in NATS server monitoring
  --expires D        lifetime, e.g. 720h or 30d (default 30d, at most 365d)
  --out FILE         write the credentials to FILE (0600) instead of stdout
  --all              (list) expired credentials too
` + clientUsage

func runWorkerCredentials(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && (args[0] == "list" || args[0] == "revoke") {
		return manageWorkerCredentials(ctx, args[0], args[1:], stdout, stderr)
	}
	fs, conn := clientFlagSet("worker-credentials", workerCredsUsage, stderr)
	var types, starts, subscribe, domains, name, expires, out string
	fs.StringVar(&types, "task-types", "", "task types, comma-separated")
	fs.StringVar(&starts, "start-workflows", "", "workflows to start by publishing, comma-separated")
	fs.StringVar(&subscribe, "subscribe", "", "event subjects to receive, comma-separated")
	fs.StringVar(&domains, "domains", "", "task domains, comma-separated")
	domainsOnly := fs.Bool("domains-only", false, "only the domains' queues")
	fs.StringVar(&name, "name", "", "name of the NATS user")
	fs.StringVar(&expires, "expires", "", "lifetime (e.g. 720h, 30d)")
	fs.StringVar(&out, "out", "", "write to this file (0600) instead of stdout")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	switch {
	case len(pos) > 0:
		// A misspelt list or revoke lands here: name it, not the flags.
		fmt.Fprintf(stderr, "flowvault worker-credentials: unexpected argument %q (the commands are list and revoke; issuing takes flags only)\n\n%s", pos[0], workerCredsUsage)
		return errUsage
	case types == "" && starts == "" && subscribe == "":
		fmt.Fprint(stderr, "flowvault worker-credentials: --task-types, --start-workflows or --subscribe is required\n\n"+workerCredsUsage)
		return errUsage
	}
	ttl, err := parseLifetime(expires)
	if err != nil {
		return err
	}
	if out != "" {
		if err := checkOut(out); err != nil {
			return err
		}
	}
	c, err := conn.client(stderr)
	if err != nil {
		return err
	}
	body, _ := json.Marshal(map[string]any{"taskTypes": splitList(types), "startWorkflows": splitList(starts), "subscribe": splitList(subscribe), "domains": splitList(domains),
		"domainsOnly": *domainsOnly, "name": name,
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
	if err := node.WritePrivateFile(out, []byte(res.Creds)); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote credentials for %s to %s\n  user:         %s\n  inbox prefix: %s\n  expires:      %s\n",
		strings.Join(slices.Concat(splitList(types), splitList(starts), splitList(subscribe)), ","), out, res.User, res.InboxPrefix, time.UnixMilli(res.Expires).UTC().Format(time.RFC3339))
	return nil
}

// manageWorkerCredentials runs worker-credentials list and revoke.
func manageWorkerCredentials(ctx context.Context, sub string, args []string, stdout, stderr io.Writer) error {
	fs, conn := clientFlagSet("worker-credentials "+sub, workerCredsUsage, stderr)
	var all bool
	if sub == "list" {
		fs.BoolVar(&all, "all", false, "expired credentials too")
	}
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	want := map[string]int{"list": 0, "revoke": 1}[sub]
	if len(pos) != want {
		fmt.Fprintf(stderr, "flowvault worker-credentials %s: wrong number of arguments\n\n%s", sub, workerCredsUsage)
		return errUsage
	}
	// A user is a public key: checked before it becomes a path.
	if sub == "revoke" && !nkeys.IsValidPublicUserKey(pos[0]) {
		return fmt.Errorf("%s is not a NATS user public key (U followed by 55 base32 characters)", printable(pos[0]))
	}
	c, err := conn.client(stderr)
	if err != nil {
		return err
	}
	if sub == "revoke" {
		if _, err := c.do(ctx, "DELETE", "/api/workers/credentials/"+pos[0], "", nil); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "revoked worker credentials %s\n", pos[0])
		return nil
	}
	path := "/api/workers/credentials"
	if all {
		path += "?includeExpired=true"
	}
	var list []natsauth.Issued
	if err := c.getJSON(ctx, path, &list); err != nil {
		return err
	}
	for _, cr := range list {
		fmt.Fprintln(stdout, issuedLine(cr))
	}
	return nil
}

// issuedLine is one line of worker-credentials list. What the credentials
// allow names their domains, and "domains-only" when they reach no queue
// without domain: without them, credentials for domain eu's queue alone
// read as credentials for the type's every queue.
func issuedLine(cr natsauth.Issued) string {
	allows := slices.Concat(cr.TaskTypes, prefixed("domain:", cr.Domains), prefixed("start:", cr.StartWorkflows), prefixed("subscribe:", cr.Subscribe))
	if cr.DomainsOnly {
		allows = append(allows, "domains-only")
	}
	revoked := "-"
	if cr.RevokedAt != 0 {
		revoked = "revoked " + time.UnixMilli(cr.RevokedAt).UTC().Format(time.RFC3339) + " by " + printable(cr.RevokedBy)
	}
	return fmt.Sprintf("%s\t%s\t%s\t%s\texpires %s\t%s", cr.User, printable(cmp.Or(cr.Name, "-")), printable(strings.Join(allows, ",")),
		printable(cr.IssuedBy), time.UnixMilli(cr.Expires).UTC().Format(time.RFC3339), revoked)
}

// prefixed is each of list with prefix.
func prefixed(prefix string, list []string) []string {
	out := make([]string, len(list))
	for i, s := range list {
		out[i] = prefix + s
	}
	return out
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

const day = 24 * time.Hour

// maxLifetimeDays is the most days a time.Duration holds (about 292
// years): more would wrap around to a negative lifetime. The server
// allows far less, and says so.
const maxLifetimeDays = int(math.MaxInt64 / int64(day))

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
		if n > maxLifetimeDays {
			return 0, fmt.Errorf("--expires %q is too long: the server allows at most 365d", s)
		}
		return time.Duration(n) * day, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < time.Second {
		return 0, fmt.Errorf("--expires %q: want a duration of at least 1s, such as 720h or 30d", s)
	}
	return d, nil
}

// checkOut refuses an --out that cannot take the file before anything is
// asked for or written (a key created whose file cannot be written would
// be lost, its secret shown nowhere): a directory (the credentials, with
// their seed, would be written beside it before the rename failed), a
// path whose directory does not exist or cannot be written, or a file
// that exists (another key or credentials file, perhaps an admin's,
// replaced without a word).
func checkOut(path string) error {
	info, err := os.Stat(path)
	switch {
	case err == nil && info.IsDir():
		return fmt.Errorf("--out %s is a directory: name the file to write", path)
	case err == nil:
		return fmt.Errorf("--out %s exists: remove it first, or name another file", path)
	}
	dir := filepath.Dir(path)
	if info, err := os.Stat(dir); err != nil {
		return fmt.Errorf("--out %s: %w", path, err)
	} else if !info.IsDir() {
		return fmt.Errorf("--out %s: %s is not a directory", path, dir)
	}
	probe, err := os.CreateTemp(dir, ".flowvault-out-*")
	if err != nil {
		return fmt.Errorf("--out %s: %s cannot be written: %w", path, dir, err)
	}
	probe.Close()
	return os.Remove(probe.Name())
}
