package node

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/flowvault/flowvault/api"
	"github.com/flowvault/flowvault/auth"
	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/internal/connlimit"
	"github.com/flowvault/flowvault/internal/harden"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/secrets"
)

// Config is the whole configuration of a flowvault server process. Every
// field has a flag and a FLOWVAULT_* environment variable (see cmd/flowvault).
type Config struct {
	// DataDir holds everything the process writes: the embedded NATS store
	// (DataDir/nats) and the read models (DataDir/pebble).
	DataDir string
	// HTTPAddr is the REST API, incoming webhooks, /health and /metrics address.
	HTTPAddr string
	// NATSListen is the embedded NATS server's client address.
	NATSListen string
	// HTTPMaxConns bounds the connections the HTTP listener holds open;
	// NATSMaxConns, the embedded NATS server's client connections
	// (server.Options.MaxConn), of which the workers' account may hold
	// nine in ten. Every connection is a file descriptor, shared with the
	// stores, whose writes fail, until a restart, when none is left. 0:
	// sized from RLIMIT_NOFILE (ConnBudget).
	HTTPMaxConns int
	NATSMaxConns int
	// HTTPIdleTimeout is how long an HTTP keep-alive connection may wait
	// for its next request.
	HTTPIdleTimeout time.Duration
	// NATSMaxStore bounds the bytes the embedded NATS server stores
	// (eventlog.Config.MaxStore); 0: 75% of the disk space free at start.
	NATSMaxStore int64
	// NATSURL connects to an external NATS server or cluster instead of
	// starting one; NATSCreds authenticates to it.
	NATSURL   string
	NATSCreds string
	// NATSReplicas is how many copies the streams and key-value buckets
	// keep on an external cluster (3 on a 3-node cluster); the embedded
	// server is one node and keeps 1. It is applied at every start, so it
	// also scales existing streams.
	NATSReplicas int
	// NATSTLSCert and NATSTLSKey are the client certificate shown to an
	// external server that verifies its clients; NATSCA, the CA that
	// signed the server's certificate, when the system's roots do not
	// hold it.
	NATSTLSCert string
	NATSTLSKey  string
	NATSCA      string
	// Fsync is "always" (fsync before every acknowledgement) or "relaxed".
	Fsync string
	// GroupCommit lets concurrent appends share one fsync in "always" mode.
	GroupCommit bool
	// RecordFormat is the newest log record format this server writes
	// (eventlog.Config.RecordFormat): lower it while servers of an older
	// version share the log, raise it once they are all upgraded.
	RecordFormat int
	// LogLevel is debug, info, warn or error; LogFormat is text or json.
	LogLevel  string
	LogFormat string
	// ShutdownTimeout bounds the graceful part of a shutdown.
	ShutdownTimeout time.Duration
	// CompactionDelay is how long after a workflow ends its _secrets data
	// stays readable (for retries and inspection) before its key is
	// destroyed.
	CompactionDelay time.Duration
	// CompactionSweep is how often the engine erases the keys of
	// workflows compacted by an engine that died before erasing them
	// (guard.Compactor.SweepEvery; 0: only at start). Not a flag: tests
	// shorten it.
	CompactionSweep time.Duration
	// PebbleMemTableSize replaces the read models' memtable size
	// (projections.StoreOptions.MemTableSize; 0: its 64 MiB). Not a flag:
	// a test makes it small to see flushes meet a full disk.
	PebbleMemTableSize uint64
	// QueueIdle is how long a task queue may go unused (nothing queued,
	// no poll) before the engine deletes its consumer, the server's
	// memory of it (executor.Config.QueueIdle).
	QueueIdle time.Duration
	// MaxRunningWorkflows bounds the workflows one principal (their
	// createdBy) has running or paused: past it, starts, sub-workflows,
	// scheduled runs, restarts, retries and reruns are refused
	// (executor.Config.MaxRunningWorkflows). 0: no bound.
	MaxRunningWorkflows int
	// MasterKey is the master key's base64 text ($FLOWVAULT_MASTER_KEY; no
	// flag, so that it never shows on a command line). MasterKeyFile is a
	// file holding it (--master-key-file). With neither, the server runs
	// in dev mode: the key is generated into DataDir/master.key.
	MasterKey     secrets.Value
	MasterKeyFile string
	// TokenTTL is the default lifetime of tokens (POST /api/token).
	TokenTTL time.Duration
	// TokenLimits rate-limit POST /api/token (zero: api.DefaultTokenLimits).
	// Not a flag: a test of the limits tightens them, so that it does not
	// depend on sending guesses faster than the buckets refill.
	TokenLimits api.TokenLimits
	// Insecure (--insecure-dev) turns authentication off: every request
	// acts as auth.Anonymous, an admin. Only for local experiments.
	Insecure bool
	// Dev (--dev) writes the bootstrap admin key to
	// DataDir/bootstrap-admin.json (mode 0600) even when the data dir
	// already existed.
	Dev bool
	// GCPercent is the garbage collector's target (GOGC) for a server
	// process, applied by Run unless $GOGC is set. Every event allocates
	// short-lived state (decoded records, decisions, read-model documents)
	// over a small live heap, so the default 100 spends about a fifth of
	// the CPU collecting; 400 takes a sixth less CPU per workflow for a few
	// hundred megabytes more under load. $GOMEMLIMIT still bounds the heap.
	GCPercent int
	// TLSCertFile and TLSKeyFile (PEM) serve the REST API over HTTPS and
	// make the embedded NATS server require TLS of its clients, both with
	// this one certificate. Without them both serve plaintext, which only
	// loopback addresses allow unless InsecurePlaintext is set: tokens,
	// secret values and the inputs handed to workers cross them.
	TLSCertFile string
	TLSKeyFile  string
	// TLSClientCAFile (PEM, one or more CA certificates) makes the API and
	// the embedded NATS listener require of every client a certificate
	// that one of them signed: mutual TLS, on top of the tokens and NATS
	// credentials, which it does not replace. It needs TLSCertFile.
	TLSClientCAFile string
	// InsecurePlaintext (--insecure-plaintext) lets the API and the NATS
	// listener serve plaintext on addresses other than loopback.
	InsecurePlaintext bool
	// Mlock is whether Run locks the process's memory, so that secret
	// values in it are never written to swap: auto (when the process may
	// lock all of it), require (refuse to start otherwise) or off.
	Mlock string
	// BootstrapOutput receives the bootstrap admin key banner of a fresh
	// server (default os.Stderr; `flowvault server` uses stdout, its log
	// goes to stderr). It is not the logger: the secret must not reach log
	// aggregation.
	BootstrapOutput io.Writer
	// Version is the build's version, which GET /api/version answers
	// (set by the binary, not configured).
	Version string
}

// DefaultMaxRunningWorkflows is the default quota on a principal's
// running workflows: far above what one tenant runs by design, far
// below the 2^100 workflows a definition that forks two sub-workflows
// of itself would start before the depth bound stopped it.
const DefaultMaxRunningWorkflows = 100_000

// DefaultConfig is `flowvault server` with no flags and no environment.
func DefaultConfig() Config {
	return Config{
		DataDir:             "./data",
		HTTPAddr:            "127.0.0.1:8080",
		NATSListen:          "127.0.0.1:4222",
		NATSReplicas:        1,
		HTTPIdleTimeout:     75 * time.Second,
		Fsync:               string(eventlog.FsyncAlways),
		GroupCommit:         true,
		RecordFormat:        int(schemas.LatestRecordFormat),
		LogLevel:            "info",
		LogFormat:           "text",
		ShutdownTimeout:     15 * time.Second,
		CompactionDelay:     5 * time.Second,
		CompactionSweep:     10 * time.Minute,
		QueueIdle:           5 * time.Minute,
		MaxRunningWorkflows: DefaultMaxRunningWorkflows,
		TokenTTL:            auth.DefaultTokenTTL,
		GCPercent:           400,
		Mlock:               string(harden.Auto),
	}
}

// Validate reports every problem with c.
func (c Config) Validate() error {
	var errs []error
	if c.DataDir == "" {
		errs = append(errs, errors.New("data dir is empty"))
	}
	if err := checkListen(c.HTTPAddr); err != nil {
		errs = append(errs, fmt.Errorf("http address %q: %w", c.HTTPAddr, err))
	}
	if _, err := ParseLevel(c.LogLevel); err != nil {
		errs = append(errs, err)
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		errs = append(errs, fmt.Errorf("log format %q: want text or json", c.LogFormat))
	}
	if c.HTTPMaxConns < 0 {
		errs = append(errs, fmt.Errorf("http max conns %d: want > 0, or 0 to size it from the open files limit", c.HTTPMaxConns))
	}
	if c.NATSMaxConns < 0 || c.NATSMaxConns > 0 && c.NATSMaxConns < connlimit.MinNATS {
		errs = append(errs, fmt.Errorf("nats max conns %d: want at least %d (the engines' own room and a worker's), or 0 to size it from the open files limit",
			c.NATSMaxConns, connlimit.MinNATS))
	}
	if c.HTTPIdleTimeout <= 0 {
		errs = append(errs, fmt.Errorf("http idle timeout %s: want > 0", c.HTTPIdleTimeout))
	}
	if c.CompactionDelay < 0 {
		errs = append(errs, fmt.Errorf("compaction delay %s: want >= 0", c.CompactionDelay))
	}
	if c.QueueIdle < time.Second {
		errs = append(errs, fmt.Errorf("queue idle %s: want at least 1s", c.QueueIdle))
	}
	if c.MaxRunningWorkflows < 0 {
		errs = append(errs, fmt.Errorf("max running workflows %d: want > 0, or 0 for no quota", c.MaxRunningWorkflows))
	}
	if c.TokenTTL <= 0 || c.TokenTTL > auth.MaxTokenTTL {
		errs = append(errs, fmt.Errorf("token ttl %s: want > 0 and at most %s", c.TokenTTL, auth.MaxTokenTTL))
	}
	if c.GCPercent <= 0 {
		errs = append(errs, fmt.Errorf("gc percent %d: want > 0", c.GCPercent))
	}
	errs = append(errs, c.validateTLS()...)
	if err := harden.Mode(c.Mlock).Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.ShutdownTimeout <= 0 {
		errs = append(errs, fmt.Errorf("shutdown timeout %s: want > 0", c.ShutdownTimeout))
	}
	ec := c.Eventlog()
	if int(ec.RecordFormat) != c.RecordFormat || !ec.RecordFormat.Valid() {
		errs = append(errs, fmt.Errorf("record format %d: want 1..%d", c.RecordFormat, schemas.LatestRecordFormat))
		ec.RecordFormat = schemas.LatestRecordFormat // reported above
	}
	if natsErrs := c.validateNATS(); len(natsErrs) > 0 {
		errs = append(errs, natsErrs...) // eventlog's check would repeat them in its own terms
	} else if err := ec.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.MasterKeySource().Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// checkListen checks a host:port listen address without resolving it. The
// port must be a number: net.SplitHostPort alone passes "host:99999" and
// "host:abc", which would only fail at listen time, after the data
// directory was opened. It mirrors eventlog's check of the NATS address.
func checkListen(addr string) error {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if port, err := strconv.Atoi(p); err != nil || port < 0 || port > 65535 {
		return fmt.Errorf("port %q: want a number from 0 to 65535", p)
	}
	return nil
}

// TuneRuntime applies the process-wide settings of c: the GC target, unless
// $GOGC chose one.
func (c Config) TuneRuntime() {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(c.GCPercent)
	}
}

// validateNATS checks the flags of an external NATS server, naming them:
// the embedded server makes its own credentials and certificates.
func (c Config) validateNATS() []error {
	var errs []error
	if c.NATSURL == "" {
		for _, f := range []struct{ flag, value string }{{"--nats-creds", c.NATSCreds}, {"--nats-tls-cert", c.NATSTLSCert},
			{"--nats-tls-key", c.NATSTLSKey}, {"--nats-ca", c.NATSCA}} {
			if f.value != "" {
				errs = append(errs, fmt.Errorf("%s is for an external NATS server (--nats); the embedded one makes its own", f.flag))
			}
		}
		if c.NATSReplicas != 1 {
			errs = append(errs, errors.New("--nats-replicas is for an external NATS cluster (--nats); the embedded server keeps one copy"))
		}
		return errs
	}
	if c.NATSReplicas < 1 || c.NATSReplicas > 5 {
		errs = append(errs, fmt.Errorf("--nats-replicas %d: want 1..5", c.NATSReplicas))
	}
	if c.NATSMaxStore != 0 {
		errs = append(errs, errors.New("--nats-max-store bounds the embedded NATS server; an external server's limits are set in its own configuration"))
	}
	if c.NATSMaxConns != 0 {
		errs = append(errs, errors.New("--nats-max-conns bounds the embedded NATS server; an external server's limits are set in its own configuration"))
	}
	if (c.NATSTLSCert == "") != (c.NATSTLSKey == "") {
		errs = append(errs, errors.New("give both --nats-tls-cert and --nats-tls-key, or neither"))
	}
	return errs
}

// MasterKeySource says where the master key comes from.
func (c Config) MasterKeySource() secrets.MasterKeySource {
	return secrets.MasterKeySource{Text: c.MasterKey, File: c.MasterKeyFile}
}

// DevKeyFile is where dev mode keeps a generated master key.
func (c Config) DevKeyFile() string { return filepath.Join(c.DataDir, secrets.DevKeyFileName) }

// Eventlog derives the event log configuration.
func (c Config) Eventlog() eventlog.Config {
	ec := eventlog.DefaultConfig()
	ec.StoreDir = filepath.Join(c.DataDir, "nats")
	ec.Listen = c.NATSListen
	ec.MaxStore = c.NATSMaxStore
	if c.NATSURL == "" {
		ec.MaxConns = c.ConnBudget().NATS
	}
	ec.URL = c.NATSURL
	ec.CredsFile = c.NATSCreds
	ec.Replicas = c.NATSReplicas
	ec.ClientCertFile, ec.ClientKeyFile, ec.CAFile = c.NATSTLSCert, c.NATSTLSKey, c.NATSCA
	ec.Fsync = eventlog.FsyncMode(c.Fsync)
	ec.GroupCommit = c.GroupCommit
	ec.RecordFormat = schemas.RecordFormat(c.RecordFormat) // a byte: Validate checks it fits
	return ec
}

// ConnBudget is how many connections the HTTP listener and the embedded
// NATS server hold at most: HTTPMaxConns and NATSMaxConns, or, where they
// are 0, what the process's open files limit leaves once the stores have
// their reserve (connlimit.NewBudget).
func (c Config) ConnBudget() connlimit.Budget {
	return connlimit.NewBudget(connlimit.FileLimit(), c.HTTPMaxConns, c.NATSMaxConns)
}

// PebbleDir is where the read models live.
func (c Config) PebbleDir() string { return filepath.Join(c.DataDir, "pebble") }

// ParseLevel maps a level name to its slog level.
func ParseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, nil
	case "info", "":
		return slog.LevelInfo, nil
	case "warn":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("log level %q: want debug, info, warn or error", s)
}
