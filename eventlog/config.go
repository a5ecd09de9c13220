package eventlog

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/flowvault/flowvault/schemas"
)

// FsyncMode says when the embedded server flushes JetStream writes to disk.
type FsyncMode string

const (
	// FsyncAlways fsyncs every message before it is acknowledged: an
	// acknowledged append survives a crash of the process and of the machine.
	FsyncAlways FsyncMode = "always"
	// FsyncRelaxed acknowledges before fsync and flushes in the background
	// (every SyncInterval): an acknowledged append survives a crash of the
	// process, but a power loss or kernel crash can lose the last interval.
	FsyncRelaxed FsyncMode = "relaxed"
)

// Config configures a Log. The zero value is not valid; start from
// DefaultConfig.
type Config struct {
	// URL of an external NATS server or cluster (comma-separated). Empty
	// means: start an embedded server.
	URL string
	// CredsFile, User/Password and Token authenticate to an external
	// server. At most one form may be set. The embedded server takes none:
	// its authentication comes from Options.Auth.
	CredsFile string
	User      string
	Password  string
	Token     string
	// ClientCertFile and ClientKeyFile (PEM) are the client certificate
	// shown to an external server that verifies its clients (mutual TLS);
	// CAFile, the CA certificates its own certificate is checked against
	// (the system's roots when empty).
	ClientCertFile string
	ClientKeyFile  string
	CAFile         string

	// StoreDir is where the embedded server keeps JetStream data.
	StoreDir string
	// MaxStore bounds the bytes the embedded server stores; past it,
	// appends fail with ErrNoStorage. Zero: 75% of the disk space free
	// when the server starts (nats-server's default).
	MaxStore int64
	// MaxConns bounds the embedded server's client connections, the
	// in-process ones included (server.Options.MaxConn); past it the
	// server refuses a connection ("maximum connections exceeded"). Zero:
	// nats-server's default, 64K.
	MaxConns int
	// Listen is the embedded server's client address. Port 0 picks a free
	// port. Empty: no listener, only this process's own connection reaches
	// the server. A listening server requires Options.Auth.
	Listen string
	// Fsync selects the embedded server's durability mode.
	Fsync FsyncMode
	// SyncInterval is the background flush period in FsyncRelaxed mode.
	SyncInterval time.Duration
	// GroupCommit writes concurrent appends to an event stream as atomic
	// batches, one sync per batch, when Fsync is FsyncAlways (commit.go).
	GroupCommit bool
	// RecordFormat is the newest record format appends write. Engines that
	// share a log read every format up to their own version's latest: while
	// older ones still run on it (a rolling upgrade), the newer ones write
	// what the oldest reads.
	RecordFormat schemas.RecordFormat

	// Replicas for every stream: 1 for a single server, 3 for a cluster.
	Replicas int
	// MaxRecordBytes bounds one appended record (one decision's events).
	MaxRecordBytes int
	// DuplicateWindow is how long the server remembers message ids, and so
	// how long a blind retry of an append is recognised as a duplicate.
	DuplicateWindow time.Duration
	// Name identifies this process's connection in server monitoring.
	Name string
}

// DefaultConfig returns the configuration of `flowvault server` with no flags:
// an embedded, fully durable server under ./data.
func DefaultConfig() Config {
	return Config{
		StoreDir:        "data/nats",
		Listen:          "127.0.0.1:4222",
		Fsync:           FsyncAlways,
		SyncInterval:    time.Second,
		GroupCommit:     true,
		RecordFormat:    schemas.LatestRecordFormat,
		Replicas:        1,
		MaxRecordBytes:  8<<20 - recordHeaderRoom,
		DuplicateWindow: 10 * time.Minute,
		Name:            "flowvault",
	}
}

// minMaxStore is the smallest MaxStore: room for a few records of the
// largest size, so that a typo (a count of gigabytes given as bytes)
// refuses to start rather than refusing every write.
const minMaxStore = 16 << 20

// Embedded reports whether the configuration starts an in-process server.
func (c Config) Embedded() bool { return c.URL == "" }

// Validate reports the first problem with c.
func (c Config) Validate() error {
	auth := 0
	for _, set := range []bool{c.CredsFile != "", c.User != "", c.Token != ""} {
		if set {
			auth++
		}
	}
	switch {
	case auth > 1:
		return errors.New("eventlog: set at most one of creds file, user/password and token")
	case c.Password != "" && c.User == "":
		return errors.New("eventlog: password without user")
	case (c.ClientCertFile == "") != (c.ClientKeyFile == ""):
		return errors.New("eventlog: give both a client certificate and its key, or neither")
	case c.Embedded() && (c.ClientCertFile != "" || c.CAFile != ""):
		return errors.New("eventlog: a client certificate or CA is for an external server (a URL)")
	case c.Replicas < 1 || c.Replicas > 5:
		return fmt.Errorf("eventlog: replicas %d: want 1..5", c.Replicas)
	case c.MaxRecordBytes < 1024 || c.MaxRecordBytes > 64<<20:
		return fmt.Errorf("eventlog: max record bytes %d: want 1KiB..64MiB", c.MaxRecordBytes)
	case c.DuplicateWindow < time.Second:
		return fmt.Errorf("eventlog: duplicate window %s: want at least 1s", c.DuplicateWindow)
	case !c.RecordFormat.Valid():
		return fmt.Errorf("eventlog: record format %d: want 1..%d", c.RecordFormat, schemas.LatestRecordFormat)
	case c.MaxStore < 0:
		return fmt.Errorf("eventlog: max store %d: want > 0, or 0 for 75%% of the free disk space", c.MaxStore)
	case c.MaxStore > 0 && !c.Embedded():
		return errors.New("eventlog: max store bounds the embedded server; an external server's limits are its own")
	case c.MaxConns < 0:
		return fmt.Errorf("eventlog: max conns %d: want > 0, or 0 for nats-server's default", c.MaxConns)
	case c.MaxConns > 0 && !c.Embedded():
		return errors.New("eventlog: max conns bounds the embedded server; an external server's limits are its own")
	case c.MaxStore > 0 && c.MaxStore < minMaxStore:
		return fmt.Errorf("eventlog: max store %d bytes: want at least %d (a few records of the largest size)", c.MaxStore, minMaxStore)
	}
	if !c.Embedded() {
		return nil
	}
	switch c.Fsync {
	case FsyncAlways:
	case FsyncRelaxed:
		if c.SyncInterval <= 0 {
			return fmt.Errorf("eventlog: sync interval %s: want > 0 in relaxed mode", c.SyncInterval)
		}
	default:
		return fmt.Errorf("eventlog: fsync mode %q: want %q or %q", c.Fsync, FsyncAlways, FsyncRelaxed)
	}
	if c.StoreDir == "" {
		return errors.New("eventlog: embedded server needs a store directory")
	}
	if auth > 0 {
		return errors.New("eventlog: credentials are for an external server; the embedded server's come from Options.Auth")
	}
	if c.Listen == "" {
		return nil
	}
	if _, _, err := splitListen(c.Listen); err != nil {
		return err
	}
	return nil
}

func splitListen(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("eventlog: listen address %q: %w", addr, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("eventlog: listen address %q: bad port", addr)
	}
	return host, port, nil
}
