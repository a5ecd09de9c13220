package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/flowvault/flowvault/natsauth"
	"github.com/flowvault/flowvault/workers"
)

// worker-credentials asks the server for a .creds file: to stdout, or to
// a 0600 file with a summary on stdout; the NATS server accepts it.
func TestWorkerCredentialsCLI(t *testing.T) {
	t.Parallel()
	bin := buildBinary(t)
	data := filepath.Join(t.TempDir(), "data")
	p := startServer(t, bin, []string{masterKeyEnv(bytes.Repeat([]byte{5}, 32))}, "--data", data, "--http", "127.0.0.1:0", "--nats-listen", "127.0.0.1:0")
	natsURL := p.waitLog(t, "embedded nats started")["addr"].(string)
	server := "http://" + p.waitLog(t, "flowvault listening")["addr"].(string)
	run := func(args ...string) (string, string, int) {
		t.Helper()
		return cli(t, bin, keyFileEnv(data), nil, append(args, "--server", server)...)
	}
	connect := func(creds []byte) {
		t.Helper()
		nc, err := workers.Connect(natsURL, creds, nats.NoReconnect())
		if err != nil {
			t.Fatalf("connect with the credentials: %v", err)
		}
		nc.Close()
	}

	out, errOut, code := run("worker-credentials", "--task-types", "resize")
	if code != 0 || !strings.HasPrefix(out, "-----BEGIN NATS USER JWT-----") || !strings.Contains(out, "USER NKEY SEED") {
		t.Fatalf("to stdout: %d %q %q", code, out, errOut)
	}
	connect([]byte(out))

	file := filepath.Join(t.TempDir(), "resize.creds")
	before := time.Now()
	out, errOut, code = run("worker-credentials", "--task-types", "resize, thumbnail", "--expires", "2d", "--name", "img", "--out", file)
	if code != 0 || !strings.Contains(out, "wrote credentials for resize,thumbnail to "+file) || strings.Contains(out, "SEED") {
		t.Fatalf("--out: %d %q %q", code, out, errOut)
	}
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("creds file: %v %v", fi, err)
	}
	creds, _ := os.ReadFile(file)
	connect(creds)
	// The expiry is printed to the second: 2 days after the request.
	day := func(t time.Time) string { return t.Add(48 * time.Hour).UTC().Format("2006-01-02") }
	if !strings.Contains(out, "expires:      "+day(before)) && !strings.Contains(out, "expires:      "+day(time.Now())) {
		t.Fatalf("--expires 2d: %q, want expiry on %s", out, day(before))
	}

	// list shows them, newest first; revoke withdraws one, which the
	// server refuses from then on.
	user := strings.TrimSpace(strings.SplitN(strings.SplitN(out, "user:", 2)[1], "\n", 2)[0])
	out, errOut, code = run("worker-credentials", "list")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 2 || !strings.HasPrefix(lines[0], user+"\timg\tresize,thumbnail\tapp:") || !strings.HasSuffix(lines[0], "\t-") {
		t.Fatalf("list: %d %q %q", code, out, errOut)
	}
	out, errOut, code = run("worker-credentials", "revoke", user)
	if code != 0 || out != "revoked worker credentials "+user+"\n" {
		t.Fatalf("revoke: %d %q %q", code, out, errOut)
	}
	if nc, err := workers.Connect(natsURL, creds, nats.NoReconnect()); err == nil {
		nc.Close()
		t.Fatal("revoked credentials connected")
	}
	out, _, _ = run("worker-credentials", "list")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); !strings.Contains(lines[0], "\trevoked ") || strings.Contains(lines[1], "revoked") {
		t.Fatalf("list after revoke: %q", out)
	}
	unknown, _ := nkeys.CreateUser()
	unknownUser, _ := unknown.PublicKey()

	// An admin's (the bootstrap key's) credentials for events.
	out, errOut, code = run("worker-credentials", "--subscribe", "orders.>", "--out", filepath.Join(t.TempDir(), "events.creds"))
	if code != 0 || !strings.Contains(out, "wrote credentials for orders.> to ") {
		t.Fatalf("--subscribe: %d %q %q", code, out, errOut)
	}

	for _, tt := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no task types", []string{"worker-credentials"}, 2, "--task-types, --start-workflows or --subscribe is required"},
		{"every subject", []string{"worker-credentials", "--subscribe", ">"}, 1, "subscribe[0]"},
		{"only commas", []string{"worker-credentials", "--task-types", ",,"}, 1, "taskTypes"},
		{"an argument", []string{"worker-credentials", "--task-types", "a", "extra"}, 2, `unexpected argument "extra"`},
		{"bad expiry", []string{"worker-credentials", "--task-types", "a", "--expires", "soon"}, 1, "want a duration"},
		{"zero days", []string{"worker-credentials", "--task-types", "a", "--expires", "0d"}, 1, "want a duration"},
		{"beyond a year", []string{"worker-credentials", "--task-types", "a", "--expires", "400d"}, 1, "expiresInSeconds"},
		{"revoke no user", []string{"worker-credentials", "revoke"}, 2, "wrong number of arguments"},
		{"revoke not a key", []string{"worker-credentials", "revoke", "../secrets/x"}, 1, "not a NATS user public key"},
		{"revoke unknown", []string{"worker-credentials", "revoke", unknownUser}, 1, "not found"},
		{"list an argument", []string{"worker-credentials", "list", "x"}, 2, "wrong number of arguments"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, code := run(tt.args...)
			if code != tt.code || !strings.Contains(errOut, tt.want) || out != "" {
				t.Fatalf("exit %d %q %q, want %d mentioning %q", code, out, errOut, tt.code, tt.want)
			}
		})
	}
	stopServer(t, p)
}

// --expires beyond what a time.Duration holds is refused with a message,
// not wrapped around to a negative lifetime.
func TestParseLifetime(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		in      string
		want    time.Duration
		wantErr string
	}{
		{"", 0, ""},
		{"30d", 30 * 24 * time.Hour, ""},
		{"720h", 720 * time.Hour, ""},
		{"106751d", 106751 * 24 * time.Hour, ""}, // the server refuses it, saying why
		{"106752d", 0, "too long"},
		{"200000d", 0, "too long: the server allows at most 365d"},
		{"0d", 0, "want a duration"},
		{"-1d", 0, "want a duration"},
		{"99999999999999999999d", 0, "want a duration"},
		{"soon", 0, "want a duration"},
		{"10ms", 0, "at least 1s"},
	} {
		got, err := parseLifetime(tt.in)
		if got != tt.want || (err == nil) != (tt.wantErr == "") || err != nil && !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("parseLifetime(%q) = %v, %v; want %v, %q", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

// An --out that cannot take the file, or names one that exists, or is
// empty, is refused before the credentials are asked for, and nothing is
// written.
func TestWorkerCredentialsOutRefused(t *testing.T) {
	t.Parallel()
	srv := newFakeServer(t, map[string]string{"POST /api/workers/credentials": `{"creds":"-----BEGIN NATS USER JWT-----"}`})
	dir := t.TempDir()
	existing := filepath.Join(t.TempDir(), "admin.json")
	if err := os.WriteFile(existing, []byte("an admin's key"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		out  string
		want string
	}{
		{dir, "is a directory"},
		{filepath.Join(dir, "absent", "w.creds"), "no such file or directory"},
		{existing, "exists: remove it first"},
		{"/proc/w.creds", "cannot be written"}, // root may write anywhere else
		{"", "--out is set but empty"},
	} {
		_, errOut, code := runCLI("worker-credentials", "--task-types", "a", "--out", tt.out, "--server", srv.URL, "--key-file", testKeyFile(t))
		if code != 1 || !strings.Contains(errOut, tt.want) {
			t.Errorf("--out %s: exit %d %q; want 1 mentioning %q", tt.out, code, errOut, tt.want)
		}
	}
	if got := srv.requests(); len(got) > 0 {
		t.Fatalf("requests sent: %v", got)
	}
	if left, _ := os.ReadDir(dir); len(left) > 0 {
		t.Fatalf("files left in %s: %v", dir, left)
	}
	if b, _ := os.ReadFile(existing); string(b) != "an admin's key" {
		t.Fatalf("the existing file now holds %q", b)
	}
}

// list says what each credentials allow, their domains included: a line
// for domain eu's queue alone read as one for the type's every queue.
func TestIssuedLine(t *testing.T) {
	t.Parallel()
	const user = "UAB"
	expires := time.Date(2027, 1, 5, 0, 0, 0, 0, time.UTC).UnixMilli()
	for _, tt := range []struct {
		name string
		cr   natsauth.Issued
		want string
	}{
		{"types", natsauth.Issued{TaskTypes: []string{"resize", "thumb"}, Name: "img"},
			"UAB\timg\tresize,thumb\tapp:a\texpires 2027-01-05T00:00:00Z\t-"},
		{"domains", natsauth.Issued{TaskTypes: []string{"resize"}, Domains: []string{"eu", "us"}},
			"UAB\t-\tresize,domain:eu,domain:us\tapp:a\texpires 2027-01-05T00:00:00Z\t-"},
		{"domains only", natsauth.Issued{TaskTypes: []string{"resize"}, Domains: []string{"eu"}, DomainsOnly: true},
			"UAB\t-\tresize,domain:eu,domains-only\tapp:a\texpires 2027-01-05T00:00:00Z\t-"},
		{"starts and events", natsauth.Issued{StartWorkflows: []string{"wf"}, Subscribe: []string{"orders.>"}},
			"UAB\t-\tstart:wf,subscribe:orders.>\tapp:a\texpires 2027-01-05T00:00:00Z\t-"},
		{"revoked", natsauth.Issued{TaskTypes: []string{"resize"}, RevokedAt: expires, RevokedBy: "app:b"},
			"UAB\t-\tresize\tapp:a\texpires 2027-01-05T00:00:00Z\trevoked 2027-01-05T00:00:00Z by app:b"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cr := tt.cr
			cr.User, cr.IssuedBy, cr.Expires = user, "app:a", expires
			if got := issuedLine(cr); got != tt.want {
				t.Errorf("issuedLine = %q, want %q", got, tt.want)
			}
		})
	}
}
