package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flowvault/flowvault/secrets"
)

// stoppedContext is the context of the tests that expect `flowvault
// server` to refuse its configuration: should the check regress, the
// server stops as soon as it started instead of hanging the test.
func stoppedContext() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

// safeListeners points the server's listeners at ephemeral ports through
// the environment, so that a regression that drops the command line's
// flags cannot bind the default ports 8080 and 4222. Not for parallel tests.
func safeListeners(t *testing.T) {
	t.Helper()
	t.Setenv(envName("http"), "127.0.0.1:0")
	t.Setenv(envName("nats-listen"), "127.0.0.1:0")
}

// A positional argument would end flag parsing and silently drop every
// flag after it; the server refuses it as a usage error and starts nothing.
// Not parallel: it sets the environment.
func TestServerStrayArgument(t *testing.T) {
	safeListeners(t)
	data := filepath.Join(t.TempDir(), "data")
	var stdout, stderr bytes.Buffer
	code := run(stoppedContext(), []string{"server", "--data", data, "stray", "--http", "127.0.0.1:0"}, &stdout, &stderr)
	if code != 2 || !strings.Contains(stderr.String(), `unexpected argument "stray"`) {
		t.Fatalf("exit %d, stderr:\n%s\nwant exit 2 naming the stray argument", code, stderr.String())
	}
	if _, err := os.Stat(data); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the data dir was created (%v): a server started", err)
	}
}

// A master key variable that is set but blank is refused before anything
// is written: falling back to a generated dev key would seal secrets under
// a key nobody meant to use. Not parallel: it sets the environment.
func TestServerBlankMasterKey(t *testing.T) {
	safeListeners(t)
	for _, tt := range []struct{ name, value string }{
		{"empty", ""},
		{"whitespace", " \t\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(secrets.MasterKeyEnv, tt.value)
			data := filepath.Join(t.TempDir(), "data")
			var stdout, stderr bytes.Buffer
			code := run(stoppedContext(), []string{"server", "--data", data}, &stdout, &stderr)
			if code != 1 || !strings.Contains(stderr.String(), "$"+secrets.MasterKeyEnv+" is set but empty") {
				t.Fatalf("exit %d, stderr:\n%s\nwant exit 1 naming $%s", code, stderr.String(), secrets.MasterKeyEnv)
			}
			// keys rotate would use a dev key of the data dir as well.
			stderr.Reset()
			code = run(stoppedContext(), []string{"keys", "status", "--data", data}, &stdout, &stderr)
			if code != 1 || !strings.Contains(stderr.String(), "$"+secrets.MasterKeyEnv+" is set but empty") {
				t.Fatalf("keys status: exit %d, stderr:\n%s\nwant exit 1 naming $%s", code, stderr.String(), secrets.MasterKeyEnv)
			}
			if _, err := os.Stat(data); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("the data dir was created (%v); want nothing written, no %s", err, secrets.DevKeyFileName)
			}
		})
	}
}

// A flag wins over its environment variable even when the variable does
// not parse, and every bad variable left is reported, not just the first.
// Not parallel: it sets the environment.
func TestServerEnvErrors(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		args    []string
		want    []string // in the error; none means no error
		notWant []string
	}{
		{
			name: "flag overrides a bad duration",
			env:  map[string]string{"FLOWVAULT_TOKEN_TTL": "bogus"},
			args: []string{"--token-ttl", "2h"},
		},
		{
			name: "flag overrides a bad boolean",
			env:  map[string]string{"FLOWVAULT_DEV": "maybe"},
			args: []string{"--dev=false"},
		},
		{
			name: "every bad variable is named",
			env:  map[string]string{"FLOWVAULT_TOKEN_TTL": "bogus", "FLOWVAULT_GC_PERCENT": "lots"},
			want: []string{"$FLOWVAULT_TOKEN_TTL", "$FLOWVAULT_GC_PERCENT"},
		},
		{
			name: "a size without a number",
			env:  map[string]string{"FLOWVAULT_NATS_MAX_STORE": "lots"},
			want: []string{"$FLOWVAULT_NATS_MAX_STORE", `size "lots"`},
		},
		{
			name: "a store bound too small to hold a record",
			args: []string{"--nats-max-store", "20"},
			want: []string{"max store 20 bytes"},
		},
		{
			name: "a queue that is deleted as soon as it is idle",
			args: []string{"--queue-idle", "0s"},
			want: []string{"queue idle 0s: want at least 1s"},
		},
		{
			name: "a store bound for an external server",
			args: []string{"--nats", "nats://127.0.0.1:4222", "--nats-max-store", "1GiB"},
			want: []string{"--nats-max-store bounds the embedded NATS server"},
		},
		{
			name: "a connection bound for an external server",
			args: []string{"--nats", "nats://127.0.0.1:4222", "--nats-max-conns", "100"},
			want: []string{"--nats-max-conns bounds the embedded NATS server"},
		},
		{
			name: "negative connection bounds and no idle timeout",
			env:  map[string]string{"FLOWVAULT_HTTP_MAX_CONNS": "-1", "FLOWVAULT_NATS_MAX_CONNS": "-2", "FLOWVAULT_HTTP_IDLE_TIMEOUT": "0s"},
			want: []string{"http max conns -1", "nats max conns -2", "http idle timeout 0s"},
		},
		{
			// The server holds three itself: with one or two it failed to
			// start with "read/write on closed pipe", its admin key printed.
			name: "a connection bound below the engines' room",
			args: []string{"--nats-max-conns", "2"},
			want: []string{"nats max conns 2: want at least 33"},
		},
		{
			name:    "only the variables no flag replaces",
			env:     map[string]string{"FLOWVAULT_TOKEN_TTL": "bogus", "FLOWVAULT_GC_PERCENT": "lots"},
			args:    []string{"--gc-percent", "300"},
			want:    []string{"$FLOWVAULT_TOKEN_TTL"},
			notWant: []string{"FLOWVAULT_GC_PERCENT"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			var stderr bytes.Buffer
			_, err := serverConfig(tt.args, &stderr)
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("serverConfig(%q) = %v; want the flag to win\n%s", tt.args, err, stderr.String())
				}
				return
			}
			if err == nil {
				t.Fatalf("serverConfig(%q) accepted %v", tt.args, tt.env)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %s", err, w)
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(err.Error(), w) {
					t.Errorf("error %q names %s, which a flag replaced", err, w)
				}
			}
		})
	}
	// The flag's value is the one used.
	t.Setenv("FLOWVAULT_TOKEN_TTL", "bogus")
	t.Setenv("FLOWVAULT_NATS_MAX_STORE", "1TB")
	t.Setenv("FLOWVAULT_QUEUE_IDLE", "30s")
	t.Setenv("FLOWVAULT_HTTP_MAX_CONNS", "500")
	t.Setenv("FLOWVAULT_NATS_MAX_CONNS", "600")
	t.Setenv("FLOWVAULT_HTTP_IDLE_TIMEOUT", "bogus")
	cfg, err := serverConfig([]string{"--token-ttl", "2h", "--nats-max-store", "20GiB", "--http-idle-timeout", "30s"}, new(bytes.Buffer))
	if err != nil || cfg.TokenTTL != 2*time.Hour || cfg.NATSMaxStore != 20<<30 || cfg.QueueIdle != 30*time.Second {
		t.Fatalf("token ttl %s, max store %d, queue idle %s, %v; want the flags' 2h and 20GiB, and the environment's 30s",
			cfg.TokenTTL, cfg.NATSMaxStore, cfg.QueueIdle, err)
	}
	if cfg.HTTPMaxConns != 500 || cfg.NATSMaxConns != 600 || cfg.HTTPIdleTimeout != 30*time.Second {
		t.Fatalf("http max conns %d, nats max conns %d, idle timeout %s; want the environment's 500 and 600, the flag's 30s",
			cfg.HTTPMaxConns, cfg.NATSMaxConns, cfg.HTTPIdleTimeout)
	}
	if b := cfg.ConnBudget(); b.HTTP != 500 || b.NATS != 600 || cfg.Eventlog().MaxConns != 600 {
		t.Fatalf("budget %+v, eventlog max conns %d; want the configured 500 and 600", b, cfg.Eventlog().MaxConns)
	}
}

// A master key file that the flag or its variable names but leaves blank
// is refused like a blank master key, before anything is written: dev
// mode would generate a key nobody meant to use. Not parallel: it sets the
// environment.
func TestServerBlankMasterKeyFile(t *testing.T) {
	safeListeners(t)
	t.Setenv(secrets.MasterKeyEnv, "")
	os.Unsetenv(secrets.MasterKeyEnv)
	for _, tt := range blankFileCases("master-key-file") {
		t.Run(tt.name, func(t *testing.T) {
			tt.setEnv(t)
			data := filepath.Join(t.TempDir(), "data")
			for _, cmd := range [][]string{{"server"}, {"keys", "status"}} {
				var stdout, stderr bytes.Buffer
				code := run(stoppedContext(), append(append(cmd, "--data", data), tt.args...), &stdout, &stderr)
				if code != 1 || !strings.Contains(stderr.String(), tt.want) {
					t.Errorf("%s: exit %d, stderr:\n%s\nwant exit 1 mentioning %q", cmd[0], code, stderr.String(), tt.want)
				}
			}
			if _, err := os.Stat(data); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("the data dir was created (%v); want nothing written, no %s", err, secrets.DevKeyFileName)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

// blankFileCase names a key file blank on the command line or in the
// environment, and the refusal it should meet.
type blankFileCase struct {
	name string
	flag string
	env  *string // the flag's variable; nil for unset
	args []string
	want string
}

// blankFileCases are the ways to leave the key file of flag blank.
func blankFileCases(flag string) []blankFileCase {
	v := "$" + envName(flag) + " is set but empty"
	return []blankFileCase{
		{"empty variable", flag, ptr(""), nil, v},
		{"blank variable", flag, ptr(" "), nil, v},
		{"empty flag", flag, nil, []string{"--" + flag, ""}, "--" + flag + " is empty"},
		{"empty flag over a variable", flag, ptr("/some/key"), []string{"--" + flag + "="}, "--" + flag + " is empty"},
	}
}

// setEnv sets or unsets the flag's variable for the rest of the test.
func (c blankFileCase) setEnv(t *testing.T) {
	t.Helper()
	t.Setenv(envName(c.flag), "")
	if c.env == nil {
		os.Unsetenv(envName(c.flag))
	} else {
		t.Setenv(envName(c.flag), *c.env)
	}
}

func TestParseSize(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want int64 // -1: refused
	}{
		{"0", 0},
		{"1048576", 1 << 20},
		{"500MB", 500e6},
		{"500mb", 500e6},
		{"20GiB", 20 << 30},
		{"20 GiB", 20 << 30},
		{"2T", 2e12},
		{"3Ki", 3 << 10},
		{"64B", 64},
		{"", -1},
		{"GiB", -1},
		{"-1", -1},
		{"1.5GB", -1},
		{"20 gigabytes", -1},
		{"9223372036854775807", 1<<63 - 1},
		{"9223372036854775807KB", -1},
		{"10000000TiB", -1},
	}
	for _, tt := range tests {
		got, err := parseSize(tt.in)
		switch {
		case tt.want < 0 && err == nil:
			t.Errorf("parseSize(%q) = %d; want an error", tt.in, got)
		case tt.want >= 0 && (err != nil || got != tt.want):
			t.Errorf("parseSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
}
