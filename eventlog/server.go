package eventlog

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/flowvault/flowvault/internal/logkey"
	"github.com/flowvault/flowvault/internal/ratelimit"
)

// recordHeaderRoom is what a record's headers may add to its payload.
const recordHeaderRoom = 4 << 10

// startEmbedded runs nats-server in this process with JetStream on disk.
// With o.Auth the server authenticates every client; without, it does not
// listen at all (only the in-process connection reaches it). With o.TLS
// its clients must speak TLS, but for the in-process connection.
func startEmbedded(cfg Config, o Options) (*server.Server, error) {
	auth, logger := o.Auth, o.Logger
	opts := &server.Options{
		ServerName:             cfg.Name,
		JetStream:              true,
		StoreDir:               cfg.StoreDir,
		JetStreamMaxStore:      cfg.MaxStore,
		MaxConn:                cfg.MaxConns,
		MaxPayload:             int32(cfg.MaxRecordBytes + recordHeaderRoom),
		NoSigs:                 true, // the process owns signal handling
		DisableJetStreamBanner: true,
		DontListen:             cfg.Listen == "",
	}
	if cfg.Listen != "" {
		if auth == nil {
			return nil, errors.New("embedded nats: a server that listens needs an authenticator (Options.Auth)")
		}
		host, port, err := splitListen(cfg.Listen)
		if err != nil {
			return nil, err
		}
		if port == 0 {
			port = server.RANDOM_PORT
		} else if err := portFree(host, port); err != nil {
			// nats-server would log the bind failure and never become
			// ready: say so now, not after the readiness wait.
			return nil, fmt.Errorf("embedded nats: %w", err)
		}
		opts.Host, opts.Port = host, port
		if o.TLS != nil {
			opts.TLSConfig = o.TLS.Clone()
		}
	}
	if auth != nil {
		if err := auth.ConfigureServer(opts); err != nil {
			return nil, fmt.Errorf("embedded nats: %w", err)
		}
	}
	switch cfg.Fsync {
	case FsyncAlways:
		// JetStream acknowledges before fsync by default; Jepsen lost
		// acknowledged writes that way. An event store cannot.
		opts.SyncAlways = true
	case FsyncRelaxed:
		opts.SyncInterval = cfg.SyncInterval
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	ns.SetLoggerV2(newNATSLogger(logger.With(logkey.Component, "nats-server")), false, false, false)
	ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		ns.Shutdown()
		return nil, fmt.Errorf("embedded nats: not ready after 30s (listen %s, store %s)", cfg.Listen, cfg.StoreDir)
	}
	return ns, nil
}

// portFree reports (nil) whether host:port can be listened on now.
func portFree(host string, port int) error {
	ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return err
	}
	return ln.Close()
}

// natsLogger adapts nats-server's printf logger to slog.
type natsLogger struct {
	l *slog.Logger
	// authFailures bounds the lines of refused connections: anyone who
	// reaches the port could otherwise fill the log with them, one a
	// connection (2,000 in 1.5 s).
	authFailures *ratelimit.Lines
	// storeFailures bounds those of a store that fails its writes (a
	// full disk): one for every message the stream is sent.
	storeFailures *ratelimit.Lines
}

func newNATSLogger(l *slog.Logger) *natsLogger {
	return &natsLogger{l: l, authFailures: ratelimit.NewLines(), storeFailures: ratelimit.NewLines()}
}

func (n *natsLogger) Noticef(format string, v ...any) { n.l.Debug(fmt.Sprintf(format, v...)) }
func (n *natsLogger) Warnf(format string, v ...any)   { n.l.Warn(fmt.Sprintf(format, v...)) }
func (n *natsLogger) Fatalf(format string, v ...any)  { n.l.Error(fmt.Sprintf(format, v...)) }
func (n *natsLogger) Debugf(format string, v ...any)  { n.l.Debug(fmt.Sprintf(format, v...)) }
func (n *natsLogger) Tracef(format string, v ...any)  {}

func (n *natsLogger) Errorf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	switch {
	case strings.Contains(msg, "authentication error"):
		n.authFailures.Error(n.l, msg)
	case strings.Contains(msg, "failed to store"):
		n.storeFailures.Error(n.l, msg)
	default:
		n.l.Error(msg)
	}
}
