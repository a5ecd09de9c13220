package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"time"

	"github.com/flowvault/flowvault/node"
	"github.com/flowvault/flowvault/secrets"
)

// envPrefix prefixes the environment variable of every flag: --data is
// FLOWVAULT_DATA, --nats-listen is FLOWVAULT_NATS_LISTEN. A flag on the
// command line wins over the environment, which wins over the default.
const envPrefix = "FLOWVAULT_"

func runServer(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg := node.DefaultConfig()
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var errs []error
	usage := func(name, text string) string { return text + " ($" + envName(name) + ")" }
	env := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	str := func(p *string, name, text string) {
		env(fromEnv(p, name, func(s string) (string, error) { return s, nil }))
		fs.StringVar(p, name, *p, usage(name, text))
	}
	dur := func(p *time.Duration, name, text string) {
		env(fromEnv(p, name, time.ParseDuration))
		fs.DurationVar(p, name, *p, usage(name, text))
	}
	integer := func(p *int, name, text string) {
		env(fromEnv(p, name, strconv.Atoi))
		fs.IntVar(p, name, *p, usage(name, text))
	}
	boolean := func(p *bool, name, text string) {
		env(fromEnv(p, name, strconv.ParseBool))
		fs.BoolVar(p, name, *p, usage(name, text))
	}
	str(&cfg.DataDir, "data", "data directory: embedded NATS store and read models")
	str(&cfg.HTTPAddr, "http", "HTTP listen address (REST API, console, /health, /metrics)")
	str(&cfg.NATSListen, "nats-listen", "embedded NATS server client address")
	str(&cfg.NATSURL, "nats", "external NATS server URL(s); disables the embedded server")
	str(&cfg.NATSCreds, "nats-creds", "credentials file for --nats")
	str(&cfg.Fsync, "fsync", "embedded JetStream durability: always (fsync before ack) or relaxed")
	boolean(&cfg.GroupCommit, "group-commit", "with --fsync always, write concurrent appends as atomic batches that share one fsync")
	str(&cfg.LogLevel, "log-level", "debug, info, warn or error")
	str(&cfg.LogFormat, "log-format", "text or json")
	dur(&cfg.ShutdownTimeout, "shutdown-timeout", "graceful shutdown budget")
	dur(&cfg.CompactionDelay, "compaction-delay", "how long an ended workflow's _secrets data stays readable before its key is destroyed")
	str(&cfg.MasterKeyFile, "master-key-file", "file holding the master key (base64 of 32 bytes); or set $"+secrets.MasterKeyEnv+"; with neither, dev mode generates <data>/master.key")
	// The master key itself has no flag: a command line is visible to
	// every user of the machine.
	if v, ok := os.LookupEnv(secrets.MasterKeyEnv); ok {
		cfg.MasterKey = secrets.Value(v)
	}
	dur(&cfg.TokenTTL, "token-ttl", "default lifetime of tokens minted by POST /api/token (at most 24h)")
	integer(&cfg.GCPercent, "gc-percent", "garbage collector target (GOGC) of the server process; $GOGC wins")
	boolean(&cfg.Insecure, "insecure-dev", "DANGER: no authentication; every request acts as an anonymous admin")
	boolean(&cfg.Dev, "dev", "development defaults: write the bootstrap admin key to <data>/bootstrap-admin.json")
	if err := fs.Parse(args); err != nil {
		return parseErr(err)
	}
	if len(errs) > 0 {
		return errs[0]
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	logger := newLogger(stderr, cfg)
	// The bootstrap key banner goes to stdout, apart from the log on stderr.
	cfg.BootstrapOutput = stdout
	return node.Run(ctx, cfg, logger)
}

// fromEnv sets *p from the environment variable of flag name, when set.
func fromEnv[T any](p *T, name string, parse func(string) (T, error)) error {
	v, ok := os.LookupEnv(envName(name))
	if !ok {
		return nil
	}
	x, err := parse(v)
	if err != nil {
		return fmt.Errorf("$%s: %w", envName(name), err)
	}
	*p = x
	return nil
}

func envName(flagName string) string {
	b := []byte(envPrefix + flagName)
	for i := len(envPrefix); i < len(b); i++ {
		switch c := b[i]; {
		case c == '-':
			b[i] = '_'
		case c >= 'a' && c <= 'z':
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}

func newLogger(w io.Writer, cfg node.Config) *slog.Logger {
	level, _ := node.ParseLevel(cfg.LogLevel) // validated
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
