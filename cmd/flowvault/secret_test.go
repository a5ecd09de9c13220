package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flowvault/flowvault/internal/leaktest"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/secrets"
)

// cli runs the built binary and returns its output and exit code.
func cli(t *testing.T, bin string, env []string, stdin []byte, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = cleanEnv(env...)
	cmd.Stdin = bytes.NewReader(stdin)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatal(err)
	}
	return o.String(), e.String(), code
}

// refusedWhileServing runs the offline command args on data while a
// server started with env holds its lock: the command must refuse,
// naming the lock.
func refusedWhileServing(t *testing.T, bin, data string, env []string, args ...string) {
	t.Helper()
	cmd := exec.Command(bin, "server", "--log-format", "json", "--data", data, "--http", "127.0.0.1:0", "--nats-listen", "127.0.0.1:0")
	cmd.Env = cleanEnv(env...)
	p := startCmd(t, cmd)
	p.waitLog(t, "flowvault listening")
	if _, errOut, code := cli(t, bin, env, nil, args...); code != 1 || !strings.Contains(errOut, "in use by another flowvault process") {
		t.Fatalf("%s while a server runs: %d %q", strings.Join(args, " "), code, errOut)
	}
	stopServer(t, p)
}

// cleanEnv is the test process's environment without the variables the
// secret and keys commands read, plus extra.
func cleanEnv(extra ...string) []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "FLOWVAULT_MASTER_KEY") && !strings.HasPrefix(kv, "FLOWVAULT_SERVER=") &&
			!strings.HasPrefix(kv, "FLOWVAULT_KEY_") && !strings.HasPrefix(kv, "FLOWVAULT_TOKEN=") {
			out = append(out, kv)
		}
	}
	return append(out, extra...)
}

// startClientServer starts a server for client commands in a fresh data
// dir, and returns the dir and the server's URL.
func startClientServer(t *testing.T, bin string) (data, server string) {
	t.Helper()
	data = filepath.Join(t.TempDir(), "data")
	p := startServer(t, bin, []string{masterKeyEnv(bytes.Repeat([]byte{5}, 32))}, "--data", data, "--http", "127.0.0.1:0", "--nats-listen", "127.0.0.1:0")
	return data, "http://" + p.waitLog(t, "flowvault listening")["addr"].(string)
}

// keyFileEnv points the CLI at the bootstrap admin key a fresh server
// wrote into its data dir.
func keyFileEnv(data string) []string {
	return []string{"FLOWVAULT_KEY_FILE=" + filepath.Join(data, "bootstrap-admin.json")}
}

func masterKeyEnv(key []byte) string {
	return "FLOWVAULT_MASTER_KEY=" + base64.StdEncoding.EncodeToString(key)
}

// stopServer stops a server process with SIGINT and waits for it.
func stopServer(t *testing.T, p *serverProcess) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGINT)
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("server exit: %v\n%s", err, p.all)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("server did not stop")
	}
}

// The secret CLI against a real server: values go in through stdin or a
// file and come out only with --show-value; nothing else prints them.
func TestSecretCLI(t *testing.T) {
	t.Parallel()
	bin := buildBinary(t)
	data := filepath.Join(t.TempDir(), "data")
	keyEnv := masterKeyEnv(bytes.Repeat([]byte{7}, 32))
	p := startServer(t, bin, []string{keyEnv}, "--data", data, "--http", "127.0.0.1:0", "--nats-listen", "127.0.0.1:0")
	server := "http://" + p.waitLog(t, "flowvault listening")["addr"].(string)
	secret := leaktest.RandomSecret(32)
	sc := leaktest.New(secret)
	run := func(stdin []byte, args ...string) (string, string, int) {
		t.Helper()
		out, errOut, code := cli(t, bin, keyFileEnv(data), stdin, append(args, "--server", server)...)
		sc.Scan("stdout of "+strings.Join(args, " "), []byte(out))
		sc.Scan("stderr of "+strings.Join(args, " "), []byte(errOut))
		return out, errOut, code
	}

	out, errOut, code := run(secret, "secret", "put", "db")
	if code != 0 || !strings.Contains(out, "stored secret db version 1 (32 bytes, hmac-sha256:") {
		t.Fatalf("put from stdin: %d %q %q", code, out, errOut)
	}
	file := filepath.Join(t.TempDir(), "value.pem")
	fileValue := append(append([]byte("-----BEGIN-----\n"), secret...), "\n-----END-----\n"...)
	os.WriteFile(file, fileValue, 0o600)
	if out, _, code := run(nil, "secret", "put", "--file", file, "pem"); code != 0 || !strings.Contains(out, "stored secret pem version 1") {
		t.Fatalf("put --file before the name: %d %q", code, out)
	}
	if out, _, code := run(secret, "secret", "put", "db"); code != 0 || !strings.Contains(out, "version 2") {
		t.Fatalf("second put: %d %q", code, out)
	}
	out, _, code = run(nil, "secret", "get", "db")
	if code != 0 || !strings.Contains(out, "version:     2") || !strings.Contains(out, "fingerprint: hmac-sha256:") || !strings.Contains(out, "--show-value") {
		t.Fatalf("get: %d %q", code, out)
	}
	// The one output that carries a value: exact bytes, nothing added;
	// the file's last newline was not stored.
	got, _, code := cli(t, bin, nil, nil, "secret", "get", "pem", "--show-value", "--server", server, "--key-file", filepath.Join(data, "bootstrap-admin.json"))
	if want := strings.TrimSuffix(string(fileValue), "\n"); code != 0 || got != want {
		t.Fatalf("get --show-value: %d, %d bytes, want %d", code, len(got), len(want))
	}
	got, _, code = cli(t, bin, append(keyFileEnv(data), "FLOWVAULT_SERVER="+server), nil, "secret", "get", "--show-value", "db")
	if code != 0 || got != string(secret) {
		t.Fatalf("get --show-value via $FLOWVAULT_SERVER: %d, %d bytes", code, len(got))
	}
	if out, _, code := run(nil, "secret", "tag", "db", "env=prod", "team=a=b"); code != 0 || !strings.Contains(out, "env=prod,team=a=b") {
		t.Fatalf("tag: %d %q", code, out)
	}
	if out, _, code := run(nil, "secret", "tag", "--delete", "db", "env=prod"); code != 0 || !strings.Contains(out, "untagged") {
		t.Fatalf("untag: %d %q", code, out)
	}
	if out, _, code := run(nil, "secret", "list"); code != 0 || out != "db\tteam=a=b\npem\n" {
		t.Fatalf("list: %d %q", code, out)
	}
	if out, _, code := run(nil, "secret", "delete", "pem"); code != 0 || out != "deleted secret pem\n" {
		t.Fatalf("delete: %d %q", code, out)
	}

	bad := []struct {
		name  string
		stdin []byte
		args  []string
		code  int
		want  string
	}{
		{"unknown secret", nil, []string{"secret", "get", "pem"}, 1, "secret pem not found (HTTP 404)"},
		{"delete unknown", nil, []string{"secret", "delete", "pem"}, 1, "not found"},
		{"bad name", secret, []string{"secret", "put", "a.b"}, 1, "[a-zA-Z0-9_-]+"},
		{"too big", bytes.Repeat([]byte("x"), 65536), []string{"secret", "put", "big"}, 1, "limit of 65535 bytes"},
		{"missing file", nil, []string{"secret", "put", "x", "--file", "/nonexistent/f"}, 1, "no such file"},
		{"empty stdin", nil, []string{"secret", "put", "db"}, 1, "the value is empty: nothing was stored"},
		{"empty file", nil, []string{"secret", "put", "db", "--file", os.DevNull}, 1, "the value is empty: nothing was stored"},
		{"bad tag", nil, []string{"secret", "tag", "db", "novalue"}, 1, "want key=value"},
		{"no name", nil, []string{"secret", "put"}, 2, "wrong number of arguments"},
		{"two names", nil, []string{"secret", "get", "a", "b"}, 2, "wrong number of arguments"},
		{"no tags", nil, []string{"secret", "tag", "db"}, 2, "wrong number of arguments"},
		{"unknown command", nil, []string{"secret", "frob"}, 2, "unknown command"},
		{"unknown flag", nil, []string{"secret", "list", "--value", "x"}, 2, "flag provided but not defined"},
	}
	for _, tt := range bad {
		_, errOut, code := run(tt.stdin, tt.args...)
		if code != tt.code || !strings.Contains(errOut, tt.want) {
			t.Errorf("%s: exit %d %q, want %d mentioning %q", tt.name, code, errOut, tt.code, tt.want)
		}
	}
	// The refused puts sent nothing: db is still at version 2.
	if out, _, code := run(nil, "secret", "get", "db"); code != 0 || !strings.Contains(out, "version:     2\n") {
		t.Fatalf("get after the refused puts: %d %q", code, out)
	}
	if _, errOut, code := cli(t, bin, keyFileEnv(data), nil, "secret", "list", "--server", "http://127.0.0.1:1"); code != 1 || !strings.Contains(errOut, "server http://127.0.0.1:1") {
		t.Fatalf("server down: %d %q", code, errOut)
	}
	// Credentials: none is refused with the server's reason; a wrong key
	// names the key; a half-set pair is caught before any request.
	for _, c := range []struct {
		env  []string
		want string
	}{
		{nil, "missing token"},
		{[]string{"FLOWVAULT_KEY_ID=0b1e6f3c-1d2a-4b5c-8d7e-9f0a1b2c3d4e", "FLOWVAULT_KEY_SECRET=wrong"}, "sign in with key 0b1e6f3c-1d2a-4b5c-8d7e-9f0a1b2c3d4e"},
		// Not a key id in form: perhaps the secret, the fields swapped.
		{[]string{"FLOWVAULT_KEY_ID=Zq8-secret-like", "FLOWVAULT_KEY_SECRET=wrong"}, "keyId and keySecret swapped?"},
		{[]string{"FLOWVAULT_KEY_ID=nokey"}, "set both FLOWVAULT_KEY_ID and FLOWVAULT_KEY_SECRET"},
		{[]string{"FLOWVAULT_TOKEN=not-a-token"}, "malformed"},
	} {
		if _, errOut, code := cli(t, bin, c.env, nil, "secret", "list", "--server", server); code != 1 || !strings.Contains(errOut, c.want) {
			t.Errorf("credentials %v: exit %d %q, want %q", c.env, code, errOut, c.want)
		}
	}
	stopServer(t, p)
	sc.Scan("server log", []byte(p.all.String()))
	sc.Check(t)
}

// keys rotate re-wraps the data keys of a stopped server's data dir; the
// server then reads every secret. It refuses a running server's dir, a
// wrong master key and a directory that is not a data dir.
func TestKeysRotateCLI(t *testing.T) {
	t.Parallel()
	bin := buildBinary(t)
	data := filepath.Join(t.TempDir(), "data")
	keyEnv := masterKeyEnv(bytes.Repeat([]byte{9}, 32))
	serve := func(env ...string) (*serverProcess, string) {
		p := startServer(t, bin, env, "--data", data, "--http", "127.0.0.1:0", "--nats-listen", "127.0.0.1:0")
		return p, "http://" + p.waitLog(t, "flowvault listening")["addr"].(string)
	}
	p, server := serve(keyEnv)
	for _, name := range []string{"a", "b"} {
		if _, errOut, code := cli(t, bin, keyFileEnv(data), []byte("value-"+name), "secret", "put", name, "--server", server); code != 0 {
			t.Fatalf("put: %s", errOut)
		}
	}
	if _, errOut, code := cli(t, bin, []string{keyEnv}, nil, "keys", "rotate", "--data", data); code != 1 || !strings.Contains(errOut, "in use by another flowvault process") {
		t.Fatalf("rotate while running: %d %q", code, errOut)
	}
	stopServer(t, p)

	tests := []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"wrong key", []string{masterKeyEnv(bytes.Repeat([]byte{1}, 32))}, []string{"--data", data}, "does not match the keyring"},
		{"short key", []string{"FLOWVAULT_MASTER_KEY=" + base64.StdEncoding.EncodeToString([]byte("short"))}, []string{"--data", data}, "decodes to 5 bytes, want exactly 32"},
		{"not base64", []string{"FLOWVAULT_MASTER_KEY=***not-base64***"}, []string{"--data", data}, "not valid base64"},
		{"no key", nil, []string{"--data", data}, "no master key"},
		{"not a data dir", []string{keyEnv}, []string{"--data", t.TempDir()}, "not a flowvault data directory"},
		{"both keys", []string{keyEnv}, []string{"--data", data, "--master-key-file", "/x"}, "not both"},
	}
	for _, tt := range tests {
		if _, errOut, code := cli(t, bin, tt.env, nil, append([]string{"keys", "rotate"}, tt.args...)...); code != 1 || !strings.Contains(errOut, tt.want) {
			t.Errorf("%s: exit %d %q, want 1 mentioning %q", tt.name, code, errOut, tt.want)
		}
	}
	out, errOut, code := cli(t, bin, []string{keyEnv}, nil, "keys", "rotate", "--data", data)
	if code != 0 || out != "rotated the keyring to term 2 (was 1); re-wrapped 2 data keys\n" {
		t.Fatalf("rotate: %d %q %q", code, out, errOut)
	}
	keyFile := filepath.Join(t.TempDir(), "master.key")
	os.WriteFile(keyFile, []byte(strings.TrimPrefix(keyEnv, "FLOWVAULT_MASTER_KEY=")+"\n"), 0o600)
	out, _, code = cli(t, bin, nil, nil, "keys", "status", "--data", data, "--master-key-file", keyFile)
	if code != 0 || !strings.Contains(out, "term 1 ") || !strings.Contains(out, "data keys 0\n") || !strings.Contains(out, "data keys 2  (active)") {
		t.Fatalf("status: %d %q", code, out)
	}

	// A server started with a wrong key refuses, naming the cause, and
	// changes nothing; with the right key it serves the re-wrapped secrets.
	cmd := exec.Command(bin, "server", "--data", data, "--http", "127.0.0.1:0", "--nats-listen", "127.0.0.1:0")
	cmd.Env = cleanEnv(masterKeyEnv(bytes.Repeat([]byte{2}, 32)))
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "does not match the keyring") || !strings.Contains(string(out), "nothing was changed") {
		t.Fatalf("server with a wrong key: %v\n%s", err, out)
	}
	p, server = serve("FLOWVAULT_MASTER_KEY_FILE=" + keyFile)
	for _, name := range []string{"a", "b"} {
		if got, errOut, code := cli(t, bin, keyFileEnv(data), nil, "secret", "get", name, "--show-value", "--server", server); code != 0 || got != "value-"+name {
			t.Fatalf("after rotation %s: %d %q %q", name, code, got, errOut)
		}
	}
	// The rotation is in the audit trail, as who ran it.
	trail, errOut, code := cli(t, bin, keyFileEnv(data), nil, "audit", "--server", server)
	if code != 0 || !strings.Contains(trail, " keys.rotate KEYRING:2 previous=1 rewrapped=2") || !strings.Contains(trail, " os:") {
		t.Fatalf("audit after rotation: %d %q %q", code, trail, errOut)
	}
	stopServer(t, p)
	out, _, _ = cli(t, bin, []string{keyEnv}, nil, "keys", "status", "--data", data)
	if !strings.Contains(out, "term 2 ") || strings.Contains(out, "term 3") {
		t.Fatalf("status after the refused start: %q", out)
	}
}

// Without a master key the server runs in dev mode: it generates
// <data>/master.key (0600) with a loud warning that does not show the key,
// and keeps using that file.
func TestDevModeMasterKey(t *testing.T) {
	t.Parallel()
	bin := buildBinary(t)
	data := filepath.Join(t.TempDir(), "data")
	// No master key, not even one from the test's environment: a variable
	// set but empty is refused, not taken for dev mode.
	cmd := exec.Command(bin, "server", "--log-format", "json", "--data", data, "--http", "127.0.0.1:0", "--nats-listen", "127.0.0.1:0")
	cmd.Env = cleanEnv()
	p := startCmd(t, cmd)
	warn := p.waitLog(t, "DEV MODE: generated a new master key into the data directory (mode 0600); anyone who can read it can decrypt every secret. Set $FLOWVAULT_MASTER_KEY or --master-key-file in production")
	if warn["level"] != "WARN" {
		t.Fatalf("warning line: %v", warn)
	}
	server := "http://" + p.waitLog(t, "flowvault listening")["addr"].(string)
	if _, errOut, code := cli(t, bin, keyFileEnv(data), []byte("dev-value"), "secret", "put", "x", "--server", server); code != 0 {
		t.Fatal(errOut)
	}
	stopServer(t, p)
	path := filepath.Join(data, "master.key")
	info, err := os.Stat(path)
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("master.key: %v %v", info, err)
	}
	key, _ := os.ReadFile(path)
	if strings.Contains(p.all.String(), strings.TrimSpace(string(key))) {
		t.Fatal("the server log shows the master key")
	}
	// keys rotate finds the dev key in the data dir.
	if out, errOut, code := cli(t, bin, nil, nil, "keys", "rotate", "--data", data); code != 0 || !strings.Contains(out, "re-wrapped 1 data keys") {
		t.Fatalf("rotate in dev mode: %d %q %q", code, out, errOut)
	}
	// Config errors stop the server before it touches the data dir.
	for _, tt := range []struct {
		env  []string
		args []string
		want string
	}{
		{[]string{"FLOWVAULT_MASTER_KEY=abc"}, nil, "FLOWVAULT_MASTER_KEY: master key"},
		{[]string{"FLOWVAULT_MASTER_KEY="}, nil, "FLOWVAULT_MASTER_KEY is set but empty"},
		{nil, []string{"--master-key-file", "/nonexistent/key"}, "master key file"},
		{[]string{masterKeyEnv(make([]byte, 32))}, []string{"--master-key-file", path}, "not both"},
	} {
		fresh := filepath.Join(t.TempDir(), "fresh")
		cmd := exec.Command(bin, append([]string{"server", "--data", fresh, "--http", "127.0.0.1:0", "--nats-listen", "127.0.0.1:0"}, tt.args...)...)
		cmd.Env = cleanEnv(tt.env...)
		out, err := cmd.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), tt.want) {
			t.Errorf("%v %v: %v %s; want exit 1 mentioning %q", tt.env, tt.args, err, out, tt.want)
		}
		if _, err := os.Stat(fresh); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%v %v: the data dir was created", tt.env, tt.args)
		}
	}
}

// Every secret command checks the name before any request: "." or ".."
// would reach another route once the server cleans the path (another
// secret's value, the tags of a secret named "tags").
func TestSecretNameCheckedBeforeAnyRequest(t *testing.T) {
	t.Parallel()
	srv := newFakeServer(t, nil)
	keyFile := testKeyFile(t)
	for _, args := range [][]string{
		{"get", "."},
		{"get", "..", "--show-value"},
		{"get", "a/b"},
		{"get", "%2e"},
		{"get", "v2"},
		{"delete", "."},
		{"delete", ""},
		{"tag", ".", "k=v", "--delete"},
		{"tag", "..", "k=v"},
		{"put", ".", "--file", os.DevNull},
	} {
		_, errOut, code := runCLI(append([]string{"secret"}, append(args, "--server", srv.URL, "--key-file", keyFile)...)...)
		if code != 1 || !strings.Contains(errOut, "secret name") {
			t.Errorf("secret %q: exit %d %q; want 1 naming the rule", args, code, errOut)
		}
	}
	if got := srv.requests(); len(got) > 0 {
		t.Fatalf("requests sent for invalid names: %v", got)
	}
}

// An answer that is not the JSON expected is reported by its size alone:
// a misrouted request may have answered a secret's value.
func TestUnexpectedAnswerNotQuoted(t *testing.T) {
	t.Parallel()
	const value = "hunter2-is-the-value"
	srv := newFakeServer(t, map[string]string{
		"GET /api/secrets/db/metadata": value,
		"GET /api/secrets-v2":          value,
		"GET /api/secrets/db/tags":     value,
		"PUT /api/secrets/db":          `{}`,
	})
	keyFile := testKeyFile(t)
	for _, args := range [][]string{{"get", "db"}, {"list"}, {"put", "db", "--file", keyFile}, {"tag", "db", "k=v", "--delete"}} {
		_, errOut, code := runCLI(append([]string{"secret"}, append(args, "--server", srv.URL, "--key-file", keyFile)...)...)
		if code != 1 || !strings.Contains(errOut, "not the JSON expected") || strings.Contains(errOut, "hunter2") || strings.Contains(errOut, "'h'") {
			t.Errorf("secret %q: exit %d %q; want 1, the answer's size and nothing of it", args, code, errOut)
		}
	}
}

// Tags (and other strings of the server) reach the terminal escaped: a
// tag must not clear an admin's screen or retitle the window.
func TestTagsEscapedForTheTerminal(t *testing.T) {
	t.Parallel()
	const tags = `[{"key":"env\u001b[2J","value":"\u001b]0;owned\u0007"},{"key":"team","value":"a=b"}]`
	srv := newFakeServer(t, map[string]string{
		"GET /api/secrets-v2":          `[{"name":"db","tags":` + tags + `}]`,
		"GET /api/secrets/db/metadata": `{"name":"db","version":1,"updatedBy":"app:\u009bx","tags":` + tags + `}`,
	})
	keyFile := testKeyFile(t)
	for _, args := range [][]string{{"list"}, {"get", "db"}} {
		out, errOut, code := runCLI(append([]string{"secret"}, append(args, "--server", srv.URL, "--key-file", keyFile)...)...)
		if code != 0 || strings.ContainsAny(out, "\x1b\x07\u009b") || !strings.Contains(out, `"env\x1b[2J"="\x1b]0;owned\a",team=a=b`) {
			t.Errorf("secret %q: exit %d %q %q; want the tags escaped", args, code, out, errOut)
		}
	}
}

// Removing a tag the secret does not have is refused, naming it, and
// nothing is removed: the server would ignore it without a word.
func TestUntagWhatIsNotSet(t *testing.T) {
	t.Parallel()
	srv := newFakeServer(t, map[string]string{
		"GET /api/secrets/db/tags":    `[{"key":"env","value":"prod"}]`,
		"DELETE /api/secrets/db/tags": `{}`,
	})
	keyFile := testKeyFile(t)
	run := func(tags ...string) (string, string, int) {
		return runCLI(append([]string{"secret", "tag", "db", "--delete", "--server", srv.URL, "--key-file", keyFile}, tags...)...)
	}
	if _, errOut, code := run("env=prod", "team=core", "env=dev"); code != 1 || !strings.Contains(errOut, "secret db has no tag team=core,env=dev: nothing was removed") {
		t.Fatalf("exit %d %q; want 1 naming the tags that are not set", code, errOut)
	}
	if slices.Contains(srv.requests(), "DELETE /api/secrets/db/tags") {
		t.Fatal("sent the DELETE anyway")
	}
	if out, errOut, code := run("env=prod"); code != 0 || out != "untagged secret db: env=prod\n" {
		t.Fatalf("exit %d %q %q; want the tag removed", code, out, errOut)
	}
}

// A value from a pipe or a file (stdin also as --file -) loses one
// trailing line ending, as echo and editors add one; a value of nothing
// else is refused. Not parallel: it replaces stdin.
func TestReadValueTrimsOneNewline(t *testing.T) {
	saved := stdin
	t.Cleanup(func() { stdin = saved })
	full := strings.Repeat("x", secrets.MaxValueLen)
	tests := []struct {
		name, input, want string
		wantErr           string
	}{
		{"echo", "hunter2\n", "hunter2", ""},
		{"CRLF", "hunter2\r\n", "hunter2", ""},
		{"no newline", "hunter2", "hunter2", ""},
		{"two newlines keep one", "hunter2\n\n", "hunter2\n", ""},
		{"a lone CR stays", "hunter2\r", "hunter2\r", ""},
		{"PEM", "-----BEGIN-----\nAAAA\n-----END-----\n", "-----BEGIN-----\nAAAA\n-----END-----", ""},
		{"echo of an unset variable", "\n", "", "the value is empty"},
		{"CRLF alone", "\r\n", "", "the value is empty"},
		{"nothing", "", "", "the value is empty"},
		{"the limit and a newline", full + "\n", full, ""},
		{"over the limit", full + "x", "", "over the limit of 65535 bytes"},
	}
	for _, tt := range tests {
		file := filepath.Join(t.TempDir(), "value")
		if err := os.WriteFile(file, []byte(tt.input), 0o600); err != nil {
			t.Fatal(err)
		}
		for _, from := range []string{"", "-", file} {
			stdin = strings.NewReader(tt.input)
			got, err := readValue(context.Background(), "db", from, io.Discard)
			if string(got) != tt.want || (err == nil) != (tt.wantErr == "") || err != nil && !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%s (file %q): %.20q, %v; want %.20q, %q", tt.name, from, got, err, tt.want, tt.wantErr)
			}
		}
	}
}

// A value read from a pipe, and one an answer carries (secret get
// --show-value), are read so that, once the command wipes the value, no
// copy of it is left. Not parallel: it replaces stdin.
func TestValueReadLeavesNoCopy(t *testing.T) {
	saved := stdin
	t.Cleanup(func() { stdin = saved })
	value := strings.Repeat("s", 5000)

	piped := testutil.NewTracedReader(strings.NewReader(value))
	stdin = piped
	v, err := readValue(context.Background(), "db", "", io.Discard)
	if string(v) != value || err != nil {
		t.Fatalf("piped: %d bytes, %v", len(v), err)
	}
	clear(v)
	if left := piped.Left(); left != 0 {
		t.Errorf("piped: %d bytes of the value are left unwiped once it is", left)
	}

	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, value) }))
	t.Cleanup(srv.Close)
	c, err := newAPIClient(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	var answer *testutil.TracedReader
	c.http.Transport = roundTripper(func(r *http.Request) (*http.Response, error) {
		resp, err := http.DefaultTransport.RoundTrip(r)
		if err == nil {
			answer = testutil.NewTracedReader(resp.Body)
			resp.Body = struct {
				io.Reader
				io.Closer
			}{answer, resp.Body}
		}
		return resp, err
	})
	a, err := c.roundTrip(context.Background(), "GET", "/api/secrets/db", "", nil)
	if err != nil || string(a.body) != value {
		t.Fatalf("answered: %v", err)
	}
	clear(a.body)
	if left := answer.Left(); left != 0 {
		t.Errorf("answered: %d bytes of the value are left unwiped once it is", left)
	}
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// Reading --file of a directory says so once.
func TestPutFileDirectory(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	_, errOut, code := runCLI("secret", "put", "db", "--file", dir, "--server", "http://127.0.0.1:1", "--key-file", testKeyFile(t))
	if code != 1 || !strings.Contains(errOut, "is a directory") || strings.Count(errOut, dir) != 1 {
		t.Fatalf("exit %d %q; want 1 naming the directory once", code, errOut)
	}
}

// Whatever text of the server a command prints (a worker's reason, a
// workflow's, webhook's or schema's name) reaches the terminal escaped.
func TestServerTextEscapedForTheTerminal(t *testing.T) {
	t.Parallel()
	const evil = `boom\u001b[2J\u001b]0;owned\u0007\rALL GOOD`
	srv := newFakeServer(t, map[string]string{
		"GET /api/workflow/w1":                `{"workflowId":"w1","workflowName":"` + evil + `","workflowVersion":1,"status":"FAILED","reasonForIncompletion":"` + evil + `"}`,
		"GET /api/workflow/search":            `{"totalHits":1,"results":[{"workflowId":"w1","workflowType":"` + evil + `","version":1,"status":"FAILED"}]}`,
		"GET /api/metadata/webhook":           `[{"id":"h1","name":"` + evil + `","verifier":"HEADER_BASED"}]`,
		"GET /api/schema":                     `[{"name":"` + evil + `","version":1,"type":"JSON"}]`,
		"GET /api/applications/a1/accessKeys": `[{"id":"` + evil + `","status":"ACTIVE","createdAt":0}]`,
	})
	keyFile := testKeyFile(t)
	for _, args := range [][]string{{"workflow", "status", "w1"}, {"workflow", "search"}, {"webhook", "list"}, {"schema", "list"}, {"app", "keys", "a1"}} {
		out, errOut, code := runCLI(append(args, "--server", srv.URL, "--key-file", keyFile)...)
		if code != 0 || strings.ContainsAny(out, "\x1b\x07\r") || !strings.Contains(out, `\x1b[2J`) {
			t.Errorf("%q: exit %d %q %q; want the server's text escaped", args, code, out, errOut)
		}
	}
}

// A --file given empty (a variable expanded from nothing) is refused, not
// taken for stdin, which in a loop holds the next line.
func TestEmptyFileFlagRefused(t *testing.T) {
	t.Parallel()
	srv := newFakeServer(t, nil)
	_, errOut, code := runCLI("secret", "put", "db", "--file", "", "--server", srv.URL, "--key-file", testKeyFile(t))
	if code != 1 || !strings.Contains(errOut, "--file is set but empty") {
		t.Fatalf("exit %d %q; want 1 saying --file is empty", code, errOut)
	}
	if got := srv.requests(); len(got) > 0 {
		t.Fatalf("requests sent: %v", got)
	}
}
