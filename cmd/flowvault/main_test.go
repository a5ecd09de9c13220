package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/node"
)

// buildBinary compiles cmd/flowvault once per test binary run.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "flowvault")
	cmd := exec.Command("go", "build", "-ldflags", "-X main.version=test-1.2.3", "-o", bin, ".")
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("go build: %v", err)
	}
	return bin
}

// serverProcess is a running `flowvault server` with its JSON log lines.
type serverProcess struct {
	cmd   *exec.Cmd
	lines chan map[string]any
	all   *testutil.LogBuffer // every line, written as the server logs
}

func startServer(t *testing.T, bin string, env []string, args ...string) *serverProcess {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"server", "--log-format", "json"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	return startCmd(t, cmd)
}

// startCmd starts a server command, collecting its JSON log lines.
func startCmd(t *testing.T, cmd *exec.Cmd) *serverProcess {
	t.Helper()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &serverProcess{cmd: cmd, lines: make(chan map[string]any, 1024), all: &testutil.LogBuffer{}}
	go func() {
		defer close(p.lines)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.all.Write([]byte(sc.Text() + "\n"))
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) == nil {
				p.lines <- m
			}
		}
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	return p
}

// waitLog returns the first log line with the given message.
func (p *serverProcess) waitLog(t *testing.T, msg string) map[string]any {
	t.Helper()
	return p.waitLogMatching(t, msg, func(m string) bool { return m == msg })
}

// waitLogMatching returns the first JSON log line whose message match
// accepts; what describes the message it wants.
func (p *serverProcess) waitLogMatching(t *testing.T, what string, match func(msg string) bool) map[string]any {
	t.Helper()
	// A bound for a server that never logs it, wide enough for one that
	// starts slowly under -race on a loaded machine.
	const wait = 2 * time.Minute
	timeout := time.After(wait)
	for {
		select {
		case m, ok := <-p.lines:
			if !ok {
				t.Fatalf("server exited before logging %q:\n%s", what, p.all)
			}
			if msg, _ := m["msg"].(string); match(msg) {
				return m
			}
		case <-timeout:
			t.Fatalf("no %q log line after %s:\n%s", what, wait, p.all)
		}
	}
}

// The built binary starts on a fresh data dir, answers /health and
// /metrics, and stops cleanly on SIGINT (Ctrl-C), SIGTERM and SIGHUP (its
// terminal closed).
func TestServerBinary(t *testing.T) {
	t.Parallel()
	bin := buildBinary(t)
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP} {
		t.Run(sig.String(), func(t *testing.T) {
			data := filepath.Join(t.TempDir(), "data")
			p := startServer(t, bin, nil, "--data", data, "--http", "127.0.0.1:0", "--nats-listen", "127.0.0.1:0")
			// The suite runs as root, which may lock all its memory.
			p.waitLog(t, "memory locked: secret values in memory are never written to swap")
			addr := p.waitLog(t, "flowvault listening")["addr"].(string)
			if kib := lockedKiB(t, p.cmd.Process.Pid); kib == 0 {
				t.Fatal("the server's VmLck is 0 kB")
			}

			res, err := http.Get("http://" + addr + "/health")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != 200 || !strings.Contains(string(body), `"healthy":true`) {
				t.Fatalf("/health = %d %s", res.StatusCode, body)
			}
			res, err = http.Get("http://" + addr + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			body, _ = io.ReadAll(res.Body)
			res.Body.Close()
			if !strings.Contains(string(body), "flowvault_eventlog_append_seconds") || !strings.Contains(string(body), "go_goroutines") {
				t.Fatalf("/metrics lacks flowvault metrics:\n%.500s", body)
			}
			for _, sub := range []string{"nats", "pebble"} {
				if _, err := os.Stat(filepath.Join(data, sub)); err != nil {
					t.Fatalf("data dir: %v", err)
				}
			}

			if err := p.cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			p.waitLog(t, "stopped")
			done := make(chan error, 1)
			go func() { done <- p.cmd.Wait() }()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("exit after %s: %v\n%s", sig, err, p.all)
				}
			case <-time.After(time.Minute):
				t.Fatalf("still running a minute after %s", sig)
			}
			if _, err := http.Get("http://" + addr + "/health"); err == nil {
				t.Fatal("still answering after shutdown")
			}
		})
	}
}

// lockedKiB is the memory process pid holds locked.
func lockedKiB(t *testing.T, pid int) int {
	t.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(status)) {
		if v, ok := strings.CutPrefix(line, "VmLck:"); ok {
			var kib int
			if _, err := fmt.Sscanf(strings.TrimSpace(v), "%d kB", &kib); err != nil {
				t.Fatalf("VmLck line %q: %v", line, err)
			}
			return kib
		}
	}
	t.Fatalf("no VmLck in /proc/%d/status", pid)
	return 0
}

// Environment variables configure the server; flags override them; bad
// values stop it with a clear error and exit code 1.
func TestServerConfigSources(t *testing.T) {
	t.Parallel()
	bin := buildBinary(t)
	data := filepath.Join(t.TempDir(), "envdata")
	p := startServer(t, bin, []string{"FLOWVAULT_DATA=" + data, "FLOWVAULT_HTTP=127.0.0.1:1", "FLOWVAULT_NATS_LISTEN=127.0.0.1:0"}, "--http", "127.0.0.1:0")
	line := p.waitLog(t, "flowvault listening")
	if line["dir"] != data || strings.HasSuffix(line["addr"].(string), ":1") {
		t.Fatalf("listening line = %v; want dir from env, addr from flag", line)
	}
	p.cmd.Process.Signal(syscall.SIGINT)
	p.cmd.Wait()

	tests := []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"bad fsync", nil, []string{"--fsync", "never"}, "fsync mode"},
		{"bad env duration", []string{"FLOWVAULT_SHUTDOWN_TIMEOUT=soon"}, nil, "FLOWVAULT_SHUTDOWN_TIMEOUT"},
		{"bad http", nil, []string{"--http", "nowhere"}, "http address"},
		{"bad env gc percent", []string{"FLOWVAULT_GC_PERCENT=lots"}, nil, "FLOWVAULT_GC_PERCENT"},
		{"gc off", nil, []string{"--gc-percent", "0"}, "gc percent 0"},
		{"record format past this version's", nil, []string{"--record-format", "3"}, "record format 3: want 1..2"},
		{"bad env record format", []string{"FLOWVAULT_RECORD_FORMAT=newest"}, nil, "FLOWVAULT_RECORD_FORMAT"},
		{"bad mlock", []string{"FLOWVAULT_MLOCK=sometimes"}, nil, `mlock "sometimes": want auto, require or off`},
		{"plaintext beyond loopback", nil, []string{"--http", "0.0.0.0:0"}, "--insecure-plaintext"},
		{"certificate without key", []string{"FLOWVAULT_TLS_CERT_FILE=cert.pem"}, nil, "give both --tls-cert-file and --tls-key-file"},
	}
	for _, tt := range tests {
		cmd := exec.Command(bin, append([]string{"server", "--data", t.TempDir()}, tt.args...)...)
		cmd.Env = append(os.Environ(), tt.env...)
		out, err := cmd.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), tt.want) {
			t.Errorf("%s: err=%v output=%s; want exit 1 mentioning %q", tt.name, err, out, tt.want)
		}
	}
}

func TestVersionAndUsage(t *testing.T) {
	t.Parallel()
	bin := buildBinary(t)
	out, err := exec.Command(bin, "version").Output()
	if err != nil || strings.TrimSpace(string(out)) != "flowvault test-1.2.3" {
		t.Fatalf("version = %q, %v", out, err)
	}
	for _, tt := range []struct {
		args       []string
		code       int
		wantStdout string
		wantStderr string
	}{
		{[]string{"frobnicate"}, 2, "", "unknown command"},
		{[]string{"version"}, 0, "flowvault dev\n", ""},
		{[]string{"--version"}, 0, "flowvault dev\n", ""},
		{[]string{"-v"}, 0, "flowvault dev\n", ""},
		{[]string{"version", "foo"}, 2, "", `unexpected argument "foo"`},
		{[]string{"help"}, 0, "", "commands:"},
		{[]string{"help", "secret"}, 0, "", "put NAME [--file F]"},
		{[]string{"help", "worker-credentials"}, 0, "", "--task-types a,b"},
		{[]string{"help", "frobnicate"}, 2, "", "unknown command"},
	} {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), tt.args, &stdout, &stderr)
		if code != tt.code || stdout.String() != tt.wantStdout || !strings.Contains(stderr.String(), tt.wantStderr) {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want %d, %q, stderr mentioning %q",
				tt.args, code, stdout.String(), stderr.String(), tt.code, tt.wantStdout, tt.wantStderr)
		}
	}
}

// A command line that cannot run exits 2 before anything is opened or
// sent, its message naming the mistake once: a missing required flag, an
// argument where a command takes flags only.
func TestCommandLineMistakes(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		args []string
		want string
		not  string
	}{
		{[]string{"admin", "recover", "--data", t.TempDir()}, "flowvault admin recover: --out is required", "flowvault admin: flowvault"},
		{[]string{"worker-credentials", "lsit", "--task-types", "a"}, `unexpected argument "lsit"`, "is required"},
		{[]string{"worker-credentials"}, "--task-types, --start-workflows or --subscribe is required", "unexpected argument"},
	} {
		_, errOut, code := runCLI(tt.args...)
		// The first line says what is wrong; the usage may follow.
		first, _, _ := strings.Cut(errOut, "\n")
		if code != 2 || !strings.Contains(first, tt.want) || strings.Contains(first, tt.not) {
			t.Errorf("%q: exit %d %q; want 2 mentioning %q, not %q", tt.args, code, first, tt.want, tt.not)
		}
	}
}

// keys and admin, whose flags are each command's, list them under a
// command's -h and point there without one: their usage ended in an empty
// "flags:" heading.
func TestOfflineCommandsHelp(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"keys", "-h"}, "Run 'flowvault keys <command> -h' for a command's flags."},
		{[]string{"admin", "-h"}, "Run 'flowvault admin recover -h' for its flags."},
		{[]string{"keys", "rotate", "-h"}, "flags:\n  -data string"},
		{[]string{"keys", "rekey", "-h"}, "-new-master-key-file string"},
		{[]string{"admin", "recover", "-h"}, "-out string"},
	} {
		out, errOut, code := runCLI(tt.args...)
		if code != 0 || out != "" || !strings.Contains(errOut, tt.want) || strings.HasSuffix(errOut, "flags:\n") {
			t.Errorf("%q: exit %d, stdout %q, stderr ending %q; want 0 and usage mentioning %q", tt.args, code, out, errOut[max(len(errOut)-200, 0):], tt.want)
		}
	}
}

// The documented defaults: `make run` serves on 127.0.0.1:8080 with data in
// ./data and embedded NATS on 127.0.0.1:4222, fully durable.
func TestDefaults(t *testing.T) {
	t.Parallel()
	c := node.DefaultConfig()
	got := fmt.Sprintf("%s %s %s %s", c.DataDir, c.HTTPAddr, c.NATSListen, c.Fsync)
	if want := "./data 127.0.0.1:8080 127.0.0.1:4222 always"; got != want {
		t.Fatalf("defaults = %q, want %q", got, want)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if envName("nats-listen") != "FLOWVAULT_NATS_LISTEN" {
		t.Fatal(envName("nats-listen"))
	}
}

// A fresh server prints its bootstrap admin key once, on stdout (the log
// on stderr never holds the secret), writes it to the data dir with mode
// 0600, and answers /api only with a token; the next start prints nothing.
func TestServerBootstrapKey(t *testing.T) {
	t.Parallel()
	bin := buildBinary(t)
	data := filepath.Join(t.TempDir(), "data")
	stdout := &testutil.LogBuffer{} // written by exec's copying goroutine
	p := startServerOut(t, bin, stdout, "--data", data, "--http", "127.0.0.1:0", "--nats-listen", "127.0.0.1:0")
	addr := p.waitLog(t, "flowvault listening")["addr"].(string)
	b, err := os.ReadFile(filepath.Join(data, node.BootstrapFile))
	if err != nil {
		t.Fatal(err)
	}
	var key struct{ KeyID, KeySecret string }
	if err := json.Unmarshal(b, &key); err != nil || key.KeySecret == "" {
		t.Fatalf("%s: %v", b, err)
	}
	if info, _ := os.Stat(filepath.Join(data, node.BootstrapFile)); info.Mode().Perm() != 0o600 {
		t.Fatalf("bootstrap file mode %v", info.Mode().Perm())
	}
	out := stdout.String()
	if !strings.Contains(out, "flowvault bootstrap admin key") || !strings.Contains(out, "keyId:       "+key.KeyID) || !strings.Contains(out, "keySecret:   "+key.KeySecret) {
		t.Fatalf("banner:\n%s", out)
	}
	res, err := http.Get("http://" + addr + "/api/metadata/taskdefs")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("without a token: %d", res.StatusCode)
	}
	body, _ := json.Marshal(map[string]string{"keyId": key.KeyID, "keySecret": key.KeySecret})
	res, err = http.Post("http://"+addr+"/api/token", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("token: %d", res.StatusCode)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	p.cmd.Wait()
	if strings.Contains(p.all.String(), key.KeySecret) {
		t.Fatal("the key secret is in the log")
	}

	stdout = &testutil.LogBuffer{}
	p = startServerOut(t, bin, stdout, "--data", data, "--http", "127.0.0.1:0", "--nats-listen", "127.0.0.1:0", "--insecure-dev")
	addr = p.waitLog(t, "flowvault listening")["addr"].(string)
	// The API reports the build's version.
	res, err = http.Get("http://" + addr + "/api/version")
	if err != nil {
		t.Fatal(err)
	}
	version, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || string(version) != "test-1.2.3" {
		t.Fatalf("GET /api/version = %d %q", res.StatusCode, version)
	}
	if stdout.String() != "" {
		t.Fatalf("second start printed:\n%s", stdout.String())
	}
	if !strings.Contains(p.all.String(), "AUTHENTICATION IS OFF") {
		t.Fatalf("--insecure-dev without a warning:\n%s", p.all.String())
	}
}

// startServerOut is startServer with stdout captured.
func startServerOut(t *testing.T, bin string, stdout io.Writer, args ...string) *serverProcess {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"server", "--log-format", "json"}, args...)...)
	cmd.Stdout = stdout
	return startCmd(t, cmd)
}

// With a certificate the built server answers over HTTPS, and the CLI
// reaches it by trusting the certificate the system's way
// (SSL_CERT_FILE); without that trust it refuses to send anything.
func TestServerTLS(t *testing.T) {
	t.Parallel()
	bin := buildBinary(t)
	certFile, keyFile, _ := testutil.TLSCert(t)
	data := filepath.Join(t.TempDir(), "data")
	p := startServer(t, bin, nil, "--data", data, "--http", "127.0.0.1:0", "--nats-listen", "127.0.0.1:0",
		"--tls-cert-file", certFile, "--tls-key-file", keyFile)
	listening := p.waitLog(t, "flowvault listening")
	server, _ := listening["url"].(string)
	if !strings.HasPrefix(server, "https://127.0.0.1:") || !strings.HasPrefix(listening["nats"].(string), "tls://") {
		t.Fatalf("listening at %v", listening)
	}
	out, errOut, code := cli(t, bin, append(keyFileEnv(data), "SSL_CERT_FILE="+certFile), []byte("tls-cli-value-3d9f"),
		"secret", "put", "over_tls", "--server", server)
	if code != 0 || !strings.Contains(out, "stored secret over_tls version 1") {
		t.Fatalf("put over https: %d %q %q", code, out, errOut)
	}
	out, errOut, code = cli(t, bin, keyFileEnv(data), []byte("tls-cli-value-3d9f"), "secret", "put", "untrusted", "--server", server)
	if code == 0 || !strings.Contains(errOut, "certificate") {
		t.Fatalf("put without trusting the certificate: %d %q %q", code, out, errOut)
	}
}

// With --tls-client-ca-file the CLI needs a client certificate the CA
// signed, from its flags or the environment.
func TestServerMutualTLS(t *testing.T) {
	t.Parallel()
	bin := buildBinary(t)
	certFile, keyFile, _ := testutil.TLSCert(t)
	caFile, issue := testutil.ClientCA(t)
	clientCert, clientKey := issue("operator")
	data := filepath.Join(t.TempDir(), "data")
	p := startServer(t, bin, nil, "--data", data, "--http", "127.0.0.1:0", "--nats-listen", "127.0.0.1:0",
		"--tls-cert-file", certFile, "--tls-key-file", keyFile, "--tls-client-ca-file", caFile)
	server, _ := p.waitLog(t, "flowvault listening")["url"].(string)
	trusting := append(keyFileEnv(data), "SSL_CERT_FILE="+certFile)
	for _, tt := range []struct {
		name string
		env  []string
		args []string
		ok   bool
	}{
		{"no client certificate", nil, nil, false},
		{"flags", nil, []string{"--tls-client-cert", clientCert, "--tls-client-key", clientKey}, true},
		{"environment", []string{"FLOWVAULT_TLS_CLIENT_CERT=" + clientCert, "FLOWVAULT_TLS_CLIENT_KEY=" + clientKey}, nil, true},
		{"certificate without key", nil, []string{"--tls-client-cert", clientCert}, false},
	} {
		args := append([]string{"secret", "list", "--server", server}, tt.args...)
		out, errOut, code := cli(t, bin, append(slices.Clone(trusting), tt.env...), nil, args...)
		if (code == 0) != tt.ok {
			t.Errorf("%s: exit %d %q %q", tt.name, code, out, errOut)
		}
	}
	// The handshakes refused are logged as the server logs, not in Go's
	// log package's own format.
	m := p.waitLogMatching(t, "http: TLS handshake error", func(msg string) bool { return strings.HasPrefix(msg, "http: TLS handshake error") })
	if m["level"] != "WARN" || m["component"] != "http" {
		t.Errorf("handshake error logged as %v", m)
	}
	stopServer(t, p)
}

// failingWriter is a full disk.
type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, syscall.ENOSPC }

// Output that could not be written is a failure, whichever command wrote
// it: `flowvault audit > trail.txt` on a full disk must not exit 0 with
// half an export.
func TestUnwrittenOutputFails(t *testing.T) {
	t.Parallel()
	var stderr bytes.Buffer
	if code := run(context.Background(), []string{"version"}, failingWriter{}, &stderr); code != 1 ||
		!strings.Contains(stderr.String(), "write output") || !strings.Contains(stderr.String(), "no space left") {
		t.Fatalf("version to a full disk: exit %d, stderr %q", code, stderr.String())
	}
}

// Under nohup, which ignores hang-ups, the server keeps ignoring them: it
// asked for SIGHUP, which undid nohup's, and stopped when its terminal
// closed. The signal that stops it is the one its log names.
func TestServerUnderNohupIgnoresHangUp(t *testing.T) {
	t.Parallel()
	bin := buildBinary(t)
	nohup, err := exec.LookPath("nohup")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(nohup, bin, "server", "--log-format", "json", "--data", filepath.Join(t.TempDir(), "data"),
		"--http", "127.0.0.1:0", "--nats-listen", "127.0.0.1:0")
	cmd.Dir = t.TempDir() // where nohup may put nohup.out
	p := startCmd(t, cmd)
	p.waitLog(t, "flowvault listening")
	for _, sig := range []syscall.Signal{syscall.SIGHUP, syscall.SIGTERM} {
		if err := p.cmd.Process.Signal(sig); err != nil {
			t.Fatal(err)
		}
	}
	if got := p.waitLog(t, "shutting down")["reason"]; got != "terminated signal received" {
		t.Fatalf("stopped by %v, want SIGTERM", got)
	}
	p.waitLog(t, "stopped")
	if err := p.cmd.Wait(); err != nil {
		t.Fatalf("exit: %v\n%s", err, p.all)
	}
}

// The usage, which a mistyped flag prints too, shows the flags' own
// defaults: it showed the environment's values, $FLOWVAULT_NATS among
// them, which may hold the engine's NATS password or token (a service's
// journal would keep them). The variables still set the flags not given.
func TestUsageShowsNoEnvironmentValue(t *testing.T) {
	const url = "nats://engine:s3cr3t-pw@127.0.0.1:4222,nats://t0k3n-value@127.0.0.1:4223"
	t.Setenv("FLOWVAULT_NATS", url)
	for _, args := range [][]string{
		{"server", "--bogus"}, {"server", "stray"}, {"server", "-h"},
		{"keys", "rotate", "--bogus"}, {"admin", "recover", "-h"},
	} {
		_, errOut, _ := runCLI(args...)
		if !strings.Contains(errOut, "-nats string") {
			t.Errorf("%q printed no usage: %q", args, errOut)
		}
		if strings.Contains(errOut, "s3cr3t-pw") || strings.Contains(errOut, "t0k3n-value") {
			t.Errorf("%q printed $FLOWVAULT_NATS's credentials:\n%s", args, errOut)
		}
	}
	cfg, err := serverConfig(nil, io.Discard)
	if err != nil || cfg.NATSURL != url {
		t.Fatalf("server from the environment: --nats %q, %v", cfg.NATSURL, err)
	}
	if cfg, err = serverConfig([]string{"--nats", "nats://127.0.0.1:1"}, io.Discard); err != nil || cfg.NATSURL != "nats://127.0.0.1:1" {
		t.Fatalf("server with --nats given: %q, %v", cfg.NATSURL, err)
	}
	t.Setenv("FLOWVAULT_SHUTDOWN_TIMEOUT", "soon")
	if _, err := serverConfig([]string{"--shutdown-timeout", "3s"}, io.Discard); err != nil {
		t.Fatalf("a variable that does not parse, replaced by its flag: %v", err)
	}
	if _, err := serverConfig(nil, io.Discard); err == nil || !strings.Contains(err.Error(), "$FLOWVAULT_SHUTDOWN_TIMEOUT") {
		t.Fatalf("a variable that does not parse: %v", err)
	}
}
