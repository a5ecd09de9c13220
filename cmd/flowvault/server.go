package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/flowvault/flowvault/node"
	"github.com/flowvault/flowvault/secrets"
)

// envPrefix prefixes the environment variable of every flag: --data is
// FLOWVAULT_DATA, --nats-listen is FLOWVAULT_NATS_LISTEN. A flag on the
// command line wins over the environment, which wins over the default.
const envPrefix = "FLOWVAULT_"

func runServer(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := serverConfig(args, stderr)
	if err != nil {
		return err
	}
	logger := newLogger(stderr, cfg)
	// The bootstrap key banner goes to stdout, apart from the log on stderr.
	cfg.BootstrapOutput = stdout
	cfg.Version = version
	return node.Run(ctx, cfg, logger)
}

// serverConfig reads the server's configuration from its command line and
// the environment, and validates it. It starts nothing and writes nothing
// but the usage text to stderr.
func serverConfig(args []string, stderr io.Writer) (node.Config, error) {
	cfg := node.DefaultConfig()
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	// envs set each flag from its environment variable once the command
	// line is parsed, unless the flag was given there, which replaces its
	// variable (and makes the variable's error moot). Set before the flag
	// was declared, a variable's value became the default the usage
	// prints, on a mistyped flag too, and $FLOWVAULT_NATS may hold the
	// engine's NATS password or token.
	envs := &envFlags{}
	usage := func(name, text string) string { return text + " ($" + envName(name) + ")" }
	str := func(p *string, name, text string) {
		fs.StringVar(p, name, *p, usage(name, text))
		envs.add(name, func() error { return fromEnv(p, name, func(s string) (string, error) { return s, nil }) })
	}
	dur := func(p *time.Duration, name, text string) {
		fs.DurationVar(p, name, *p, usage(name, text))
		envs.add(name, func() error { return fromEnv(p, name, time.ParseDuration) })
	}
	integer := func(p *int, name, text string) {
		fs.IntVar(p, name, *p, usage(name, text))
		envs.add(name, func() error { return fromEnv(p, name, strconv.Atoi) })
	}
	size := func(p *int64, name, text string) {
		fs.Func(name, usage(name, text), func(v string) error {
			n, err := parseSize(v)
			if err == nil {
				*p = n
			}
			return err
		})
		envs.add(name, func() error { return fromEnv(p, name, parseSize) })
	}
	boolean := func(p *bool, name, text string) {
		fs.BoolVar(p, name, *p, usage(name, text))
		envs.add(name, func() error { return fromEnv(p, name, strconv.ParseBool) })
	}
	str(&cfg.DataDir, "data", "data directory: embedded NATS store and read models")
	str(&cfg.HTTPAddr, "http", "HTTP listen address (REST API, incoming webhooks, /health, /metrics)")
	str(&cfg.NATSListen, "nats-listen", "embedded NATS server client address")
	integer(&cfg.HTTPMaxConns, "http-max-conns", "most HTTP connections held open; more are answered 503 and closed (default: sized from the open files limit)")
	dur(&cfg.HTTPIdleTimeout, "http-idle-timeout", "how long an HTTP keep-alive connection may wait for its next request")
	integer(&cfg.NATSMaxConns, "nats-max-conns", "most client connections of the embedded NATS server, workers' at most nine in ten (default: sized from the open files limit)")
	size(&cfg.NATSMaxStore, "nats-max-store", "most the embedded NATS server stores (bytes, or 500MB, 20GiB...); default 75% of the disk space free at start")
	str(&cfg.NATSURL, "nats", "external NATS server URL(s); disables the embedded server")
	str(&cfg.NATSCreds, "nats-creds", "credentials file for --nats")
	integer(&cfg.NATSReplicas, "nats-replicas", "copies each stream and bucket keeps on the --nats cluster (3 on a 3-node cluster)")
	str(&cfg.NATSTLSCert, "nats-tls-cert", "PEM client certificate for a --nats server that verifies its clients")
	str(&cfg.NATSTLSKey, "nats-tls-key", "PEM key of --nats-tls-cert")
	str(&cfg.NATSCA, "nats-ca", "PEM CA certificate(s) of the --nats server's certificate (default: the system's roots)")
	str(&cfg.TLSCertFile, "tls-cert-file", "PEM certificate (chain) for HTTPS and for the embedded NATS server's TLS")
	str(&cfg.TLSKeyFile, "tls-key-file", "PEM private key of --tls-cert-file")
	str(&cfg.TLSClientCAFile, "tls-client-ca-file", "PEM CA certificate(s): the API and the NATS listener require client certificates they signed (mutual TLS)")
	boolean(&cfg.InsecurePlaintext, "insecure-plaintext", "DANGER: serve HTTP and NATS without TLS on addresses other than loopback")
	str(&cfg.Fsync, "fsync", "embedded JetStream durability: always (fsync before ack) or relaxed")
	boolean(&cfg.GroupCommit, "group-commit", "with --fsync always, write concurrent appends as atomic batches that share one fsync")
	integer(&cfg.RecordFormat, "record-format", "newest log record format to write; while servers of an older version share the log, the newest they read")
	str(&cfg.LogLevel, "log-level", "debug, info, warn or error")
	str(&cfg.LogFormat, "log-format", "text or json")
	dur(&cfg.ShutdownTimeout, "shutdown-timeout", "graceful shutdown budget")
	dur(&cfg.QueueIdle, "queue-idle", "how long a task queue may go unused (nothing queued, no poll) before the engine deletes its consumer")
	integer(&cfg.MaxRunningWorkflows, "max-running-workflows", "most workflows one principal has running or paused; more starts, sub-workflows, restarts, retries and reruns are refused (0: no quota)")
	dur(&cfg.CompactionDelay, "compaction-delay", "how long an ended workflow's _secrets data stays readable before its key is destroyed")
	str(&cfg.MasterKeyFile, "master-key-file", "file holding the master key (base64 of 32 bytes); or set $"+secrets.MasterKeyEnv+"; with neither, dev mode generates <data>/master.key")
	// The master key itself has no flag: a command line is visible to
	// every user of the machine.
	envs.add("", func() error {
		v, set, err := masterKeyFromEnv()
		if set && err == nil {
			cfg.MasterKey = v
		}
		return err
	})
	dur(&cfg.TokenTTL, "token-ttl", "default lifetime of tokens minted by POST /api/token (at most 24h)")
	integer(&cfg.GCPercent, "gc-percent", "garbage collector target (GOGC) of the server process; $GOGC wins")
	str(&cfg.Mlock, "mlock", "lock the server's memory so that secret values are never written to swap: auto (when allowed), require or off")
	boolean(&cfg.Insecure, "insecure-dev", "DANGER: no authentication; every request acts as an anonymous admin")
	boolean(&cfg.Dev, "dev", "when this start creates the bootstrap admin (an empty log), write its key to <data>/bootstrap-admin.json even if the data dir existed")
	if err := fs.Parse(args); err != nil {
		return cfg, parseErr(err)
	}
	// The flag package stops at the first argument that is not a flag, so
	// every flag after a stray argument would be silently ignored.
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "flowvault server: unexpected argument %q\n\n", fs.Arg(0))
		fs.Usage()
		return cfg, errUsage
	}
	errs := envs.apply(fs)
	if err := checkMasterKeyFile(fs, cfg.MasterKeyFile); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return cfg, err
	}
	if err := cfg.Validate(); err != nil {
		return cfg, fmt.Errorf("config: %w", err)
	}
	return cfg, nil
}

// envFlags set flags from their environment variables once the command
// line is parsed (apply): set before the flags are declared, each
// variable's value would be its flag's default, which the usage prints,
// on a mistyped flag too.
type envFlags struct {
	flags []string
	sets  []func() error
}

// add has apply call set unless flag name is given on the command line
// ("" names a variable without a flag).
func (e *envFlags) add(name string, set func() error) {
	e.flags, e.sets = append(e.flags, name), append(e.sets, set)
}

// apply sets, from the environment, the flags of fs not given on its
// command line, and returns the errors of the variables that did not
// parse.
func (e *envFlags) apply(fs *flag.FlagSet) []error {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var errs []error
	for i, name := range e.flags {
		if given[name] {
			continue
		}
		if err := e.sets[i](); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
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

// masterKeyFromEnv reads $FLOWVAULT_MASTER_KEY; set is false when it is
// unset (dev mode). Set but blank is a mistake, such as a variable
// expanded from nothing, not a request for dev mode: a generated key would
// seal secrets that the intended key could never open.
func masterKeyFromEnv() (v secrets.Value, set bool, err error) {
	s, ok := os.LookupEnv(secrets.MasterKeyEnv)
	if !ok {
		return nil, false, nil
	}
	if strings.TrimSpace(s) == "" {
		return nil, true, fmt.Errorf("$%s is set but empty: want base64 of 32 random bytes (e.g. `openssl rand -base64 32`), or unset it for dev mode", secrets.MasterKeyEnv)
	}
	return secrets.Value(s), true, nil
}

// checkMasterKeyFile refuses a master key file that --master-key-file or
// its variable names but leaves blank, for the reason masterKeyFromEnv
// refuses a blank key: dev mode would seal secrets under a generated key.
func checkMasterKeyFile(fs *flag.FlagSet, path string) error {
	return checkKeyFile(fs, "master-key-file", path, "the master key", "dev mode")
}

// checkKeyFile refuses a key file that the flag name or its variable
// names but leaves blank: a variable expanded from nothing is a slip, not
// a request for what leaving the flag out does (without), which puts the
// data under a key nobody meant to use.
func checkKeyFile(fs *flag.FlagSet, name, path, key, without string) error {
	if strings.TrimSpace(path) != "" {
		return nil
	}
	given := false
	fs.Visit(func(f *flag.Flag) { given = given || f.Name == name })
	if given {
		return fmt.Errorf("--%s is empty: name the file holding %s, or leave the flag out for %s", name, key, without)
	}
	if _, set := os.LookupEnv(envName(name)); set {
		return fmt.Errorf("$%s is set but empty: name the file holding %s, or unset it for %s", envName(name), key, without)
	}
	return nil
}
