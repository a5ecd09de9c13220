package eventlog

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowvault/flowvault/internal/logkey"
	"github.com/flowvault/flowvault/internal/natsurl"
	"github.com/flowvault/flowvault/schemas"
)

// ExpectAny disables the optimistic-concurrency check of an append. Use it
// only for subjects with no single writer, such as audit records.
const ExpectAny uint64 = math.MaxUint64

// Log is flowvault's event store on JetStream. It is safe for concurrent use.
type Log struct {
	cfg     Config
	logger  *slog.Logger
	metrics *metrics
	ns      *server.Server // nil when connected to an external server
	nc      *nats.Conn
	js      jetstream.JetStream
	closed  atomic.Bool
	// storeStarted is when the embedded server's store last started
	// (Unix ns), its streams recovered: see madeSinceStart.
	storeStarted atomic.Int64
	// committers batch the appends of each event stream that takes atomic
	// batches, in FsyncAlways mode (see commit.go).
	committers map[string]*committer
	// storeFailed holds the names of the streams whose store was found
	// failed a write (streamWriteError), the log's and the key-value
	// buckets' written through GuardWrite: a write to one asks again
	// before it sends, rather than waiting out a publish nobody answers.
	storeFailed sync.Map
	// jsConfig is the embedded server's JetStream configuration as it
	// started (its bound on the store computed), which a restart of its
	// store takes again (recover.go); nil for an external server.
	jsConfig *server.JetStreamConfig
	// holes names the event streams whose first sequences writes refused
	// on a full disk may have taken (holes.go); nil for an external
	// server.
	holes *holes
	// storeRestarts counts the store's restarts (recover.go), each one
	// checked as a reconnection is (reconnections).
	storeRestarts atomic.Uint64
	// reconnects carries the connection's reconnections to restore, which
	// makes sure of the streams again and then runs onReconnect.
	reconnects  chan struct{}
	done        chan struct{}
	restoring   sync.WaitGroup // restoreLoop, waited for by Close
	hooksMu     sync.Mutex
	onReconnect []func(context.Context)
	// lost checks each reconnection's server for the data the log knew
	// (lost.go).
	lost lostState
	// directAPI prefixes direct gets: "$JS.API.DIRECT.GET.", or in a test
	// a stand-in for a follower that lags.
	directAPI string
	// leaderAPI prefixes the gets only a stream's leader answers:
	// "$JS.API.STREAM.MSG.GET.", or in a test a stand-in for a leader
	// that died with a request.
	leaderAPI string
	// leaderReads: direct gets may be answered by a follower (replicas >
	// 1), so reads that answer without appending end at the leader (read.go).
	leaderReads bool
	// infoAPI prefixes stream info requests: "$JS.API.STREAM.INFO.", or
	// in a test a stand-in for a leader that died with a request.
	infoAPI string
	// metaAPI is where a cluster's meta leader is asked for: "$JS.API.INFO",
	// or in a test a stand-in for a cluster that elects one.
	metaAPI string
	// replies routes the answers to publishes (resend.go).
	replies atomic.Pointer[replies]
	// resend: a publish unanswered is sent again every resendEvery. Not
	// to this process's own server alone (embedded, one replica), which
	// loses no request while it runs: sent again, a slow append would
	// only load the server that is slow.
	resend bool
	// publishPrefix prefixes the subjects of publishes: "", or in a test
	// a stand-in for a stream leader that died with a publish.
	publishPrefix string
}

// Options carries Open's collaborators. The zero value logs nowhere,
// registers no metrics, and runs an embedded server only for this
// process (no listener).
type Options struct {
	Logger  *slog.Logger
	Metrics prometheus.Registerer
	// Auth secures the embedded server; a server that listens (Config.Listen
	// set) requires it. Unused with an external server.
	Auth Authenticator
	// TLS, when set, is required of the embedded server's clients but for
	// this process's own connection, which does not leave the process.
	// Unused with an external server.
	TLS *tls.Config
}

// Open starts the embedded server (unless cfg.URL is set), connects, and
// creates or updates flowvault's streams. Open is idempotent across restarts.
func Open(ctx context.Context, cfg Config, o Options) (*Log, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	l := &Log{cfg: cfg, logger: o.Logger.With(logkey.Component, "eventlog"), metrics: newMetrics(o.Metrics),
		reconnects: make(chan struct{}, 1), done: make(chan struct{}), lost: newLostState(),
		directAPI: directGetAPI, leaderAPI: leaderGetAPI, leaderReads: cfg.Replicas > 1,
		infoAPI: streamInfoAPI, metaAPI: accountInfoAPI, resend: cfg.Replicas > 1 || !cfg.Embedded()}
	nopts := []nats.Option{
		nats.Name(cfg.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		// A publish while the connection is away fails at once, rather
		// than wait in a buffer sent on reconnection: an append its
		// caller was told failed would be stored after all.
		nats.ReconnectBufSize(-1),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				l.logger.Warn("nats disconnected", logkey.Err, err)
			}
		}),
		l.asyncErrors(),
		nats.ClosedHandler(func(*nats.Conn) {
			if r := l.replies.Load(); r != nil {
				r.close()
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) {
			l.logger.Info("nats reconnected", logkey.Addr, withoutUserinfo(c.ConnectedUrl()))
			l.signalRestore()
		}),
	}
	switch {
	case cfg.CredsFile != "":
		nopts = append(nopts, nats.UserCredentials(cfg.CredsFile))
	case cfg.User != "":
		nopts = append(nopts, nats.UserInfo(cfg.User, cfg.Password))
	case cfg.Token != "":
		nopts = append(nopts, nats.Token(cfg.Token))
	}
	if cfg.ClientCertFile != "" {
		nopts = append(nopts, nats.ClientCert(cfg.ClientCertFile, cfg.ClientKeyFile))
	}
	if cfg.CAFile != "" {
		nopts = append(nopts, nats.RootCAs(cfg.CAFile))
	}
	url := cfg.URL
	if cfg.Embedded() {
		ns, err := l.startEmbedded(o)
		if err != nil {
			return nil, err
		}
		if o.Metrics != nil {
			o.Metrics.MustRegister(storeUsage{l})
		}
		// The engine talks to its own server without a TCP hop, and so
		// without TLS: the URL (tls:// when clients must use TLS) only
		// names the server here.
		url = strings.Replace(ns.ClientURL(), "tls://", "nats://", 1)
		nopts = append(nopts, nats.InProcessServer(ns))
		if o.Auth != nil {
			eopts, err := o.Auth.EngineOptions()
			if err != nil {
				l.shutdownServer()
				return nil, err
			}
			nopts = append(nopts, eopts...)
		}
	}
	nc, err := nats.Connect(url, nopts...)
	if err != nil {
		l.shutdownServer()
		return nil, fmt.Errorf("connect nats: %w", natsurl.ConnectError(err, url))
	}
	l.nc = nc
	r, err := newReplies(nc)
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("subscribe to publish replies: %w", err)
	}
	l.replies.Store(r)
	js, err := jetstream.New(nc)
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	l.js = js
	if max := nc.MaxPayload(); max < int64(cfg.MaxRecordBytes) {
		l.Close()
		return nil, fmt.Errorf("server max_payload %d is below max record bytes %d", max, cfg.MaxRecordBytes)
	}
	if err := l.ensureStreamsWhileForming(ctx); err != nil {
		l.Close()
		return nil, err
	}
	if err := l.knowStreams(ctx); err != nil {
		l.Close()
		return nil, err
	}
	if !cfg.Embedded() {
		l.logger.Warn("external nats: durability depends on the server's sync_interval; use 'always' and R3 in production", logkey.Addr, withoutUserinfo(nc.ConnectedUrl()))
	}
	l.restoring.Add(1)
	go l.restoreLoop()
	if l.recovers() {
		l.restoring.Add(1)
		go l.watchStore()
	}
	return l, nil
}

// OnReconnect registers fn to run each time the connection comes back
// after it was lost, once the log has made sure of its streams again. A
// NATS server that restarted has lost FV_DISPATCH, which it keeps in
// memory, with its consumers: fn rebuilds what lived there. fn's context
// ends when the log closes.
func (l *Log) OnReconnect(fn func(context.Context)) {
	l.hooksMu.Lock()
	l.onReconnect = append(l.onReconnect, fn)
	l.hooksMu.Unlock()
}

// restoreLoop restores the streams after each reconnection, until the log
// closes.
func (l *Log) restoreLoop() {
	defer l.restoring.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-l.done
		cancel()
	}()
	for {
		select {
		case <-l.done:
			return
		case <-l.reconnects:
		}
		// A server that just came back may not serve JetStream yet. One
		// that came back without its data stops the log: its streams are
		// not made again.
		for backoff := 100 * time.Millisecond; ; backoff = min(2*backoff, 5*time.Second) {
			checked := l.reconnections()
			err := l.checkStreams(ctx)
			if errors.Is(err, ErrLogLost) {
				l.fail(err)
				return
			}
			if err == nil {
				// Appends and deliveries wait for the check alone. Making
				// the streams sure of asks the meta leader, which may
				// have died with the server this connection was on: a
				// request sent before another is elected (4.7-7.5 s after
				// a kill) is never answered, and they waited out two 5 s
				// timeouts with their streams' leaders alive. A stream
				// the check found exists; FV_DISPATCH, made again here,
				// is not checked, and the hooks below wait for it.
				l.setVerified(checked)
				_, err = l.createStreams(ctx)
			}
			if err == nil {
				break
			}
			l.logger.Warn("streams not restored after a reconnection; trying again", logkey.Err, err)
			select {
			case <-l.done:
				return
			case <-time.After(backoff):
			}
		}
		l.hooksMu.Lock()
		hooks := slices.Clone(l.onReconnect)
		l.hooksMu.Unlock()
		for _, fn := range hooks {
			fn(ctx)
		}
	}
}

// startEmbedded starts the in-process server, in o.Auth's account, with
// o.TLS; the server logs through o.Logger.
func (l *Log) startEmbedded(o Options) (*server.Server, error) {
	if o.Auth != nil {
		if err := prepareStore(l.cfg.StoreDir, o.Auth.Account(), l.logger); err != nil {
			return nil, err
		}
	}
	ns, err := startEmbedded(l.cfg, o)
	if err != nil {
		return nil, err
	}
	l.ns = ns
	l.storeStarted.Store(time.Now().UnixNano())
	l.jsConfig = ns.JetStreamConfig()
	if l.holes, err = openHoles(l.cfg.StoreDir); err != nil {
		l.shutdownServer()
		return nil, err
	}
	addr := l.ClientURL()
	if addr == "" {
		addr = "in-process only"
	}
	l.logger.Info("embedded nats started", logkey.Addr, addr, logkey.Dir, l.cfg.StoreDir, logkey.Mode, string(l.cfg.Fsync))
	return ns, nil
}

// ensureStreams creates or updates the streams, and sets up the group
// commit of those that take atomic batches.
func (l *Log) ensureStreams(ctx context.Context) error {
	batched, err := l.createStreams(ctx)
	if err != nil {
		return err
	}
	for _, name := range batched {
		if l.committers == nil {
			l.committers = map[string]*committer{}
		}
		l.committers[name] = newCommitter(name, l.nc, l.logger, l.metrics.batchSize)
	}
	return nil
}

// ensureStreamsWhileForming is ensureStreams, tried again while the
// cluster is still forming (until ctx ends): engines started with their
// NATS servers, or a server that restarted, find a meta leader that
// places no replicated stream until it hears from enough peers ("no
// suitable peers for placement, peer offline") or none yet. A start
// that failed then had the engine exit, although the same request
// succeeds seconds later.
func (l *Log) ensureStreamsWhileForming(ctx context.Context) error {
	return l.whileForming(ctx, "streams not made yet", bounded(l.ensureStreams))
}

// WhileForming runs attempt, the making of what a start needs next to
// the log (a bucket, a stream's consumers listed), and on a cluster again
// while the cluster forms or elects a meta leader, each attempt bounded
// by formingAttempt, until ctx ends; each retry is logged as what, with
// args. An engine started during an election failed its start when the
// making of its secrets' key buckets found no meta leader, although the
// same request succeeds seconds later. On a single server attempt runs
// once, with ctx: there is no election to wait out.
func (l *Log) WhileForming(ctx context.Context, what string, attempt func(context.Context) error, args ...any) error {
	if l.cfg.Replicas == 1 {
		return attempt(ctx)
	}
	return l.whileForming(ctx, what, bounded(attempt), args...)
}

// bounded is attempt given formingAttempt at most: a cluster without a
// meta leader may answer nothing at all, and each attempt asks anew.
func bounded(attempt func(context.Context) error) func(context.Context) error {
	return func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, formingAttempt)
		defer cancel()
		return attempt(ctx)
	}
}

// whileForming runs attempt, and again after a growing wait while it
// fails with a forming cluster's answer (clusterForming) or none in its
// time, until ctx ends; each retry is logged as what, with args.
func (l *Log) whileForming(ctx context.Context, what string, attempt func(context.Context) error, args ...any) error {
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, 2*time.Second) {
		err := attempt(ctx)
		if err == nil || ctx.Err() != nil || !clusterForming(err) && !errors.Is(err, context.DeadlineExceeded) {
			return err
		}
		l.logger.Warn(what+": the NATS cluster is not ready; trying again", append(args, logkey.Err, err)...)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
	}
}

// formingAttempt bounds one attempt of ensureStreamsWhileForming and of
// WhileForming (bounded).
const formingAttempt = 5 * time.Second

// clusterForming reports whether err is a JetStream cluster's answer
// while it forms, or elects a meta leader after losing one: no peers to
// place a stream on, or no meta leader.
func clusterForming(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode == jsErrCodeNoPeers || apiErr.ErrorCode == jsErrCodeClusterNotAvailable
	}
	return errors.Is(err, nats.ErrNoResponders)
}

// createStreams creates or updates the streams, and returns those whose
// appends go in atomic batches.
func (l *Log) createStreams(ctx context.Context) (batched []string, err error) {
	for _, s := range AllStreams {
		sc := l.streamConfig(s)
		// Opening never narrows what a stream captures: engines of an
		// earlier version, still running in a rolling upgrade, may rely on
		// a subject this version no longer captures until whatever takes
		// it over runs, and then applies the stream's own (ApplySubjects).
		info, err := l.streamInfo(ctx, s.Name)
		switch {
		case err == nil && capturesAll(info.Config.Subjects, s.Subjects):
			sc.Subjects = info.Config.Subjects
		case err != nil && !errors.Is(err, jetstream.ErrStreamNotFound):
			return nil, fmt.Errorf("ensure stream %s: %w", s.Name, err)
		}
		st, err := l.js.CreateOrUpdateStream(ctx, sc)
		if err != nil {
			return nil, fmt.Errorf("ensure stream %s: %w", s.Name, err)
		}
		// A server too old for atomic batches does not echo the setting
		// back; its appends go alone.
		if sc.AllowAtomicPublish && st.CachedInfo().Config.AllowAtomicPublish {
			batched = append(batched, s.Name)
		}
	}
	return batched, nil
}

// streamConfig is the configuration the log gives stream s.
func (l *Log) streamConfig(s Stream) jetstream.StreamConfig {
	sc := jetstream.StreamConfig{
		Name:        s.Name,
		Description: s.Description,
		Subjects:    s.Subjects,
		Replicas:    l.cfg.Replicas,
		MaxMsgSize:  int32(l.cfg.MaxRecordBytes + recordHeaderRoom),
		Duplicates:  l.cfg.DuplicateWindow,
		AllowDirect: true,
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardNew, // never silently drop history
	}
	switch s.Kind {
	case WorkQueue:
		sc.Retention = jetstream.WorkQueuePolicy
	case Ephemeral:
		sc.Retention = jetstream.WorkQueuePolicy
		sc.Storage = jetstream.MemoryStorage
		sc.MaxAge = DispatchMaxAge
	}
	sc.AllowAtomicPublish = l.cfg.GroupCommit && l.cfg.Fsync == FsyncAlways && s.Kind == EventStream
	return sc
}

// ApplySubjects has s's stream capture s.Subjects alone, where opening
// the log left it capturing more (see createStreams): for the one that
// takes over what the stream no longer captures, once it does.
func (l *Log) ApplySubjects(ctx context.Context, s Stream) error {
	if _, err := l.js.UpdateStream(ctx, l.streamConfig(s)); err != nil {
		return fmt.Errorf("apply the subjects of stream %s: %w", s.Name, err)
	}
	return nil
}

// Subjects returns the subjects stream captures now, as its leader says.
func (l *Log) Subjects(ctx context.Context, stream string) ([]string, error) {
	info, err := l.streamInfo(ctx, stream)
	if err != nil {
		return nil, err
	}
	return info.Config.Subjects, nil
}

// Captures reports whether a stream of subjects captures subject.
func Captures(subjects []string, subject string) bool {
	return slices.ContainsFunc(subjects, func(pattern string) bool { return server.SubjectMatchesFilter(subject, pattern) })
}

// capturesAll reports whether a stream of subjects captures every
// subject that one of want does.
func capturesAll(subjects, want []string) bool {
	return !slices.ContainsFunc(want, func(w string) bool { return !Captures(subjects, w) })
}

// Conn returns the NATS connection the log uses. Other packages use it for
// request/reply and for their own consumers.
func (l *Log) Conn() *nats.Conn { return l.nc }

// MaxRecordBytes is the most bytes one appended record may hold.
func (l *Log) MaxRecordBytes() int { return l.cfg.MaxRecordBytes }

// JetStream returns the JetStream context the log uses.
func (l *Log) JetStream() jetstream.JetStream { return l.js }

// Replicas is how many copies the log's streams keep: state others keep
// next to the log (key-value buckets) keeps as many.
func (l *Log) Replicas() int { return l.cfg.Replicas }

// MaxStore is the bound of the embedded server's store (Config.MaxStore;
// 0: none set, or an external server). A stream or bucket with a size
// limit reserves it against this bound when it is made.
func (l *Log) MaxStore() int64 { return l.cfg.MaxStore }

// Publish stores msg in the stream that takes its subject, once (a
// retry with the same Nats-Msg-Id header is a duplicate), and returns its
// sequence: jetstream's PublishMsg for messages that are not events (the
// dispatch announcements), reading the acknowledgement as appends do.
// The acknowledgement is waited for at most publishTimeout, whatever
// ctx allows.
func (l *Log) Publish(ctx context.Context, msg *nats.Msg) (seq uint64, duplicate bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, publishTimeout)
	defer cancel()
	return l.request(ctx, msg)
}

// publishTimeout bounds the wait for one publish's acknowledgement, as
// for each attempt of an append. An acknowledgement lost with the server
// that would send it (a stream leader, or the server the connection was
// on, gone in a failover: nats.go does not fail the requests under way
// when it reconnects) never comes: bound only by its caller's deadline,
// an executor's dispatch waited out the 5 minutes an effect may take, its
// retry and its task's announcement with it, and held a node's stop for
// its whole grace for effects (10 s).
const publishTimeout = 5 * time.Second

// asyncErrors sends a connection's asynchronous errors (a slow consumer,
// a permissions violation) to the log: without a handler nats.go writes
// them to stderr as plain text, outside --log-format.
func (l *Log) asyncErrors() nats.Option {
	return nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
		if sub != nil {
			l.logger.Warn("nats error", logkey.Subject, sub.Subject, logkey.Err, err)
			return
		}
		l.logger.Warn("nats error", logkey.Err, err)
	})
}

// ConnectInProcess opens another connection to the embedded server,
// without a TCP hop, with opts (credentials, for one). The caller closes
// it before the log.
func (l *Log) ConnectInProcess(opts ...nats.Option) (*nats.Conn, error) {
	if l.ns == nil {
		return nil, errors.New("connect in process: the log uses an external NATS server")
	}
	opts = append([]nats.Option{nats.InProcessServer(l.ns), nats.Name(l.cfg.Name), l.asyncErrors()}, opts...)
	nc, err := nats.Connect(strings.Replace(l.ns.ClientURL(), "tls://", "nats://", 1), opts...)
	if err != nil {
		return nil, fmt.Errorf("connect in process: %w", err)
	}
	return nc, nil
}

// EmbeddedServer is the in-process NATS server, nil when the log uses an
// external one.
func (l *Log) EmbeddedServer() *server.Server { return l.ns }

// StorageError returns the embedded server's JetStream health error: a
// stream whose store failed a write (the disk full, the data directory
// gone) keeps that error and neither stores nor acknowledges anything
// until the server restarts, or, for a full disk, until the log restarts
// the store once the disk has room again (recover.go), so appends to it
// fail. Nil when the store is healthy, or when the log uses an external
// server (whose own health endpoint says so).
//
// nats-server's health check says a stream "could not be recovered"
// whenever its directory is there and the stream is not: while it is
// being made too, so that making any bucket would fail a probe. A stream
// whose directory was made since the store started is being made (or
// deleted), not recovered, and is no error for a minute (makingGrace);
// one that was there before (its deletion) counts only once it outlasts
// creationGrace, asked again until then (or until ctx ends), as does a
// readiness the check says failed (see passing). Under make test's load, a bucket's making
// outlasted a grace of 2 s.
func (l *Log) StorageError(ctx context.Context) error {
	if l.ns == nil {
		return nil
	}
	deadline := time.Now().Add(creationGrace)
	races := 0
	for wait := 10 * time.Millisecond; ; wait = min(2*wait, 200*time.Millisecond) {
		msg := l.healthError()
		for msg != "" && notReady(msg) && races < maxReadinessRaces && l.ns.ReadyForConnections(creationGrace) {
			// The check's own race (see passing), the server ready when
			// asked without its 1 ms bound: asked again at once. Asked
			// again only after a wait, a healthy log's probe failed at
			// every try for 2 s under make test's heaviest load.
			races++
			msg = l.healthError()
		}
		if msg == "" {
			return nil
		}
		err := fmt.Errorf("embedded nats: %s (%s)", msg, l.storeFailureHint(msg))
		if !passing(msg) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
	}
}

// healthError returns the embedded server's first health error but a
// stream made since the store started (see StorageError), "" if none.
func (l *Log) healthError() string {
	for _, e := range l.ns.Healthz(&server.HealthzOptions{Details: true}).Errors {
		if e.Type == server.HealthzErrorStream && strings.Contains(e.Error, "could not be recovered") && l.madeSinceStart(e.Account, e.Stream) {
			continue
		}
		return e.Error
	}
	return ""
}

// madeSinceStart reports whether the directory of account's stream was
// made (or its entries last changed) after the store started, and within
// makingGrace: nats-server recovers the streams whose directories are
// there when it starts, and leaves a stream it could not recover
// untouched. A directory left that long with no stream in it is a making
// that failed, and an error again.
func (l *Log) madeSinceStart(account, stream string) bool {
	fi, err := os.Stat(filepath.Join(l.cfg.StoreDir, "jetstream", account, "streams", stream))
	if err != nil {
		return false
	}
	changed := fi.ModTime()
	return changed.UnixNano() > l.storeStarted.Load() && time.Since(changed) < makingGrace
}

// makingGrace bounds how long a stream's directory may be there without
// its stream, once made while the store runs, before the health check
// counts it: far longer than any making takes (under make test's load, a
// bucket's outlasted 2 s).
const makingGrace = time.Minute

// passing says whether a health error may be gone when asked again: a
// stream being made (see StorageError), or the server's readiness, which
// the health check asks with a 1 ms bound, lost when its goroutine is
// descheduled inside it (a few calls in 100,000 on a loaded machine) long
// after Open saw the server ready.
func passing(msg string) bool {
	return strings.Contains(msg, "could not be recovered") || notReady(msg)
}

func notReady(msg string) bool { return strings.Contains(msg, "failed to be ready for connections") }

// maxReadinessRaces bounds the health checks StorageError asks again at
// once for a readiness the server had when asked itself.
const maxReadinessRaces = 100

// creationGrace bounds how long StorageError takes a stream the server
// cannot find, whose directory is older than the store's start, for one
// being deleted, and a failed readiness for the check's own race.
const creationGrace = 2 * time.Second

// StoreFull returns an error when the embedded server's store holds more
// than its bound (Config.MaxStore, by default 75% of the disk space free
// at its start), as nats-server itself decides, before each write, to
// refuse it (insufficient resources): every append then fails with
// ErrNoStorage, until retention frees some (a task output cache's entry
// expiring) or a restart gives it more room. A restart alone does not:
// nats-server keeps a dynamic bound where it was, adding back what its
// streams hold. Nil when the store has room, or when the log uses an
// external server, whose own monitoring tells.
func (l *Log) StoreFull() error {
	if l.ns == nil {
		return nil
	}
	jsz, err := l.ns.Jsz(nil)
	if err != nil || jsz.Disabled {
		return nil // StorageError and the appends tell
	}
	if used, bound := jsz.Store, jsz.Config.MaxStore; bound > 0 && used > uint64(bound) {
		return fmt.Errorf("embedded nats: the store holds %d bytes, over its bound of %d: writes are refused until it has room (restart it with more disk or a higher bound)", used, bound)
	}
	return nil
}

// storeFailureHint is what to do about a store's write error: the disk
// full, or the process out of file descriptors (a flood of connections).
func (l *Log) storeFailureHint(msg string) string {
	switch {
	case outOfFiles(msg):
		return "the process ran out of open files: restart the server, and raise its open files limit or lower its connection bounds"
	case l.recovers() && outOfSpace(msg):
		return "it restarts by itself once the disk has room"
	}
	return "restart the server once the disk has room"
}

// outOfFiles reports whether the text of a store's error is the process's
// or the system's file descriptors running out: EMFILE ("too many open
// files") or ENFILE ("too many open files in system"), which nats-server
// reports only as text.
func outOfFiles(msg string) bool {
	return strings.Contains(msg, "too many open files")
}

// streamWriteError returns the write error the embedded server keeps for
// stream, if any (see StorageError).
func (l *Log) streamWriteError(stream string) error {
	if l.ns == nil {
		return nil
	}
	for _, e := range l.ns.Healthz(&server.HealthzOptions{Details: true}).Errors {
		if e.Type == server.HealthzErrorStream && e.Stream == stream && strings.Contains(e.Error, "write error") {
			return fmt.Errorf("embedded nats: %s (%s)", e.Error, l.storeFailureHint(e.Error))
		}
	}
	return nil
}

// ClientURL is the address workers and other processes connect to, with
// credentials of their own; "" for an embedded server that does not
// listen. An external server's is without the userinfo of the URL the
// engine connected with (see withoutUserinfo).
func (l *Log) ClientURL() string {
	switch {
	case l.ns != nil && l.cfg.Listen == "":
		return ""
	case l.ns != nil:
		return l.ns.ClientURL()
	}
	return withoutUserinfo(l.nc.ConnectedUrl())
}

// withoutUserinfo is a server's URL without its userinfo, which holds the
// engine's credentials when the URL carries them (nats://user:password@host,
// or nats://token@host): nats.go's ConnectedUrlRedacted hides a password
// but not a token, which sits where a user name does.
func withoutUserinfo(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		if i := strings.LastIndex(s, "@"); i >= 0 {
			return s[i+1:]
		}
		return s
	}
	u.User = nil
	return u.String()
}

// Close drains the connection, which waits for in-flight publishes, and
// shuts the embedded server down. It is safe to call more than once.
func (l *Log) Close() error {
	if !l.closed.CompareAndSwap(false, true) {
		return nil
	}
	close(l.done)
	l.restoring.Wait()
	for _, c := range l.committers {
		c.close()
	}
	if l.nc != nil {
		_ = l.nc.Drain()
		for i := 0; i < 100 && !l.nc.IsClosed(); i++ {
			time.Sleep(20 * time.Millisecond)
		}
		l.nc.Close()
	}
	l.shutdownServer()
	l.holes.close()
	return nil
}

func (l *Log) shutdownServer() {
	if l.ns != nil {
		l.ns.Shutdown()
		l.ns.WaitForShutdown()
	}
}

// AppendOption changes one append.
type AppendOption func(*appendOpts)

type appendOpts struct {
	msgID     string
	duplicate *bool
}

// WithMsgID sets the deduplication id of an append. By default it is the ID
// of the record's first event, which callers derive from the event's cause.
func WithMsgID(id string) AppendOption { return func(o *appendOpts) { o.msgID = id } }

// ReportDuplicate sets *dup to whether the record was on the subject
// already, under its id: appended by an earlier attempt, or by another
// writer of the same request, whose events may differ from these.
func ReportDuplicate(dup *bool) AppendOption { return func(o *appendOpts) { o.duplicate = dup } }

// Append writes events to subject as one record and returns its stream
// sequence. expected is the subject's last sequence as the caller last saw it
// (0: the subject must be empty; ExpectAny: no check).
//
// A retry of an append that already succeeded returns the original sequence.
// A stale expectation returns a *ConflictError (errors.Is ErrConflict). A
// record over the size limit returns ErrTooLarge and writes nothing.
func (l *Log) Append(ctx context.Context, subject string, events []schemas.Envelope, expected uint64, opts ...AppendOption) (uint64, error) {
	if l.closed.Load() {
		return 0, ErrClosed
	}
	stream, err := streamOf("append", subject)
	if err != nil {
		return 0, err
	}
	if !validSubject(subject) {
		return 0, fmt.Errorf("append %s: %w", subject, ErrInvalidSubject)
	}
	// After a reconnection, nothing is written before the server is known
	// to hold what the log acknowledged.
	if err := l.intact(ctx, true); err != nil {
		return 0, fmt.Errorf("append %s: %w", subject, err)
	}
	if len(events) == 0 {
		return 0, fmt.Errorf("append %s: no events", subject)
	}
	o := appendOpts{msgID: events[0].ID}
	for _, opt := range opts {
		opt(&o)
	}
	if o.msgID == "" {
		return 0, fmt.Errorf("append %s: record needs an id for deduplication", subject)
	}
	data, err := l.cfg.RecordFormat.Encode(events)
	if err != nil {
		return 0, fmt.Errorf("append %s: %w", subject, err)
	}
	if len(data) > l.cfg.MaxRecordBytes {
		l.metrics.appends.WithLabelValues("too_large").Inc()
		return 0, fmt.Errorf("append %s: %d bytes, limit %d: %w", subject, len(data), l.cfg.MaxRecordBytes, ErrTooLarge)
	}
	if err := schemas.CheckRecord(data); err != nil {
		l.metrics.appends.WithLabelValues("too_deep").Inc()
		return 0, fmt.Errorf("append %s: %w (%v)", subject, ErrTooDeep, err)
	}
	msg := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{}}
	msg.Header.Set(jetstream.MsgIDHeader, o.msgID)
	if expected != ExpectAny {
		msg.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(expected, 10))
	}
	start := time.Now()
	seq, dup, err := l.write(ctx, stream, msg)
	l.metrics.appendDur.Observe(time.Since(start).Seconds())
	if o.duplicate != nil {
		*o.duplicate = dup
	}
	switch {
	case err == nil && dup:
		// Acknowledged all the same, its first answer lost: a server that
		// comes back without it has lost an acknowledged record.
		l.metrics.appends.WithLabelValues("duplicate").Inc()
		l.saw(stream.Name, seq, o.msgID)
	case err == nil:
		l.metrics.appends.WithLabelValues("ok").Inc()
		l.metrics.bytes.Add(float64(len(data)))
		l.saw(stream.Name, seq, o.msgID)
	case errors.Is(err, ErrConflict):
		// A single server checks the expectation before the message id, so a
		// retry of an append that succeeded looks like a conflict. The record
		// is then on the subject after expected, under our id.
		if prior, ok := l.findMsgID(ctx, subject, expected, o.msgID); ok {
			l.metrics.appends.WithLabelValues("duplicate").Inc()
			l.saw(stream.Name, prior, o.msgID)
			if o.duplicate != nil {
				*o.duplicate = true
			}
			return prior, nil
		}
		l.metrics.appends.WithLabelValues("conflict").Inc()
		var ce *ConflictError
		if errors.As(err, &ce) {
			ce.Expected = expected
		}
	case errors.Is(err, ErrTooLarge):
		l.metrics.appends.WithLabelValues("too_large").Inc()
	default:
		l.metrics.appends.WithLabelValues("error").Inc()
	}
	if err != nil {
		return 0, fmt.Errorf("append %s: %w", subject, err)
	}
	return seq, nil
}

// write appends msg as part of a batch where its stream gathers them, and
// alone otherwise.
func (l *Log) write(ctx context.Context, s Stream, msg *nats.Msg) (seq uint64, dup bool, err error) {
	if err := l.knownFailed(s.Name); err != nil {
		return 0, false, err
	}
	if c := l.committers[s.Name]; c != nil {
		seq, written, release, err := c.append(ctx, msg)
		if err != nil || written {
			return seq, false, err
		}
		defer release()
	}
	seq, dup, err = l.publish(ctx, msg, func() error { return l.storeWriteError(s.Name) })
	if errors.Is(err, ErrStoreFailed) {
		// Which stream, for the operator; the store's own words stay out
		// (storeFull).
		err = fmt.Errorf("%w (stream %s)", err, s.Name)
	}
	return seq, dup, err
}

// storeWriteError is streamWriteError, remembered for the next appends to
// stream (knownFailed).
func (l *Log) storeWriteError(stream string) error {
	werr := l.streamWriteError(stream)
	if werr != nil {
		l.storeFailed.Store(stream, struct{}{})
	} else {
		l.storeFailed.Delete(stream)
	}
	if werr != nil && outOfSpace(werr.Error()) {
		l.refusedForSpace(stream)
	}
	return werr
}

// refusedForSpace notes a write to stream refused for want of disk space:
// before the log acknowledged any record of it, the sequence it may have
// taken is no record lost (holes.go).
func (l *Log) refusedForSpace(stream string) {
	k := l.lost.known[stream]
	if k == nil {
		return
	}
	k.mu.Lock()
	seen := k.seq
	k.mu.Unlock()
	if seen != 0 {
		return
	}
	if err := l.holes.add(stream); err != nil {
		l.logger.Warn("a stream's write refused on a full disk not noted; its first sequence may read as a record lost",
			logkey.Stream, stream, logkey.Err, err)
	}
}

// knownFailed refuses an append to a stream whose store failed a write, at
// once and before anything is sent: the server would neither store it nor
// answer, and the append would wait out a publish timeout for the same
// error. A stream not known to have failed costs a flag's load. One that
// did is asked about again each time: nats-server never clears a stream's
// write error (stream.werr, the filestore's werr), but a stream made anew
// (the server or its store restarted, the stream deleted and created
// again) has none and is written to again.
func (l *Log) knownFailed(stream string) error {
	if _, failed := l.storeFailed.Load(stream); !failed {
		return nil
	}
	werr := l.storeWriteError(stream)
	if werr == nil {
		return nil
	}
	// Not ErrStoreFailed: nothing was sent, so nothing was stored.
	until := "the server restarts"
	if l.recovers() && outOfSpace(werr.Error()) {
		until = "its disk has room again"
	}
	return fmt.Errorf("%w: stream %s failed a write and stores nothing until %s", storeFull(werr), stream, until)
}

// GuardWrite runs write, a write to stream that is no append (a put to a
// key-value bucket on the log's server), as an append is guarded: refused
// at once while the stream's store is known to have failed a write
// (knownFailed), and, when it goes unanswered because that store failed,
// failed with why (ErrNoStorage or ErrOutOfFiles, and ErrStoreFailed:
// whether it was stored is unknown) rather than with a bare timeout, and
// no later than an append would find it out: a write still unanswered
// after publishTimeout is cut short once its store is found failed,
// whatever time its caller gave it. A refusal for want of storage is
// ErrNoStorage (NoStorage). Without it, a bucket whose store failed on a
// full disk had each of its writes wait out its whole timeout, for
// "context deadline exceeded": a task's take its 30 s, an event's claim
// the 30 s its actions had, a cached output the 5 minutes of an effect.
func (l *Log) GuardWrite(ctx context.Context, stream string, write func(context.Context) error) error {
	if err := l.knownFailed(stream); err != nil {
		return err
	}
	wctx, stop := l.cutIfStoreFails(ctx, stream)
	err := write(wctx)
	stop()
	var cut *storeCut
	if err != nil && errors.As(context.Cause(wctx), &cut) {
		// Cut, not answered: one answered as the cut came keeps its
		// answer.
		return fmt.Errorf("no answer in %s (%w: %w) (stream %s)", publishTimeout, storeFull(cut.werr), ErrStoreFailed, stream)
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) {
		if werr := l.storeWriteError(stream); werr != nil {
			return fmt.Errorf("%w (%w: %w) (stream %s)", err, storeFull(werr), ErrStoreFailed, stream)
		}
	}
	return NoStorage(err)
}

// storeCut is why cutIfStoreFails ended a write: its stream's store
// failed a write (werr).
type storeCut struct{ werr error }

func (c *storeCut) Error() string { return c.werr.Error() }

// cutIfStoreFails returns ctx for a write to stream that ends, once the
// write has gone unanswered for publishTimeout, as soon as a look at the
// stream (every publishTimeout) finds its store failed, and stop, which
// ends the looking once the write returned. The looking is a timer, made
// and stopped for a write answered in time. None for an external
// server, whose store is not looked at (streamWriteError), nor for a
// write whose caller gives it no longer than a look would wait, or no
// deadline, which JetStream's client bounds by its default timeout (the
// same 5 s): it times out first, and GuardWrite asks why.
func (l *Log) cutIfStoreFails(ctx context.Context, stream string) (context.Context, func()) {
	if d, ok := ctx.Deadline(); l.ns == nil || !ok || time.Until(d) <= publishTimeout {
		return ctx, func() {}
	}
	wctx, cancel := context.WithCancelCause(ctx)
	var t *time.Timer
	look := func() {
		if wctx.Err() != nil {
			return // answered, or its caller gave up
		}
		if werr := l.storeWriteError(stream); werr != nil {
			cancel(&storeCut{werr: werr})
			return
		}
		t.Reset(publishTimeout)
	}
	// Made stopped and then set, so that look sees t.
	t = time.AfterFunc(math.MaxInt64, look)
	t.Reset(publishTimeout)
	return wctx, func() {
		t.Stop()
		cancel(nil)
	}
}

// storeFull is the error a store's write error werr means for an append:
// ErrOutOfFiles when the process ran out of file descriptors (more disk
// would not help), ErrNoStorage otherwise. Its own words stay out: they
// name the account and a file under the data dir, and reach every
// caller's 503; the server's log and the health probe (to an
// administrator) have them.
func storeFull(werr error) error {
	if outOfFiles(werr.Error()) {
		return ErrOutOfFiles
	}
	return ErrNoStorage
}

// publish sends msg until the server answers definitively. Timeouts are
// ambiguous (the write may have happened), so they are retried with the same
// message id: the server recognises the retry and returns the original ack.
func (l *Log) publish(ctx context.Context, msg *nats.Msg, broken func() error) (seq uint64, dup bool, err error) {
	return publishUntilAnswered(ctx, msg, l.checkedRequest, broken, l.logger)
}

// checkedRequest is request once the streams are known to be intact: an
// append tried again across a reconnection is not sent to a server that
// came back without its data.
func (l *Log) checkedRequest(ctx context.Context, msg *nats.Msg) (uint64, bool, error) {
	if err := l.intact(ctx, true); err != nil {
		return 0, false, err
	}
	return l.request(ctx, msg)
}

// publishUntilAnswered is publish's retry policy, with send doing each
// attempt. broken, asked after an attempt that went unanswered, says why
// the stream answers nothing: a stream whose store failed a write (a full
// disk) neither stores nor answers until the server restarts, and trying
// again for 40 s would only hide that.
func publishUntilAnswered(ctx context.Context, msg *nats.Msg, send func(context.Context, *nats.Msg) (uint64, bool, error), broken func() error, logger *slog.Logger) (seq uint64, dup bool, err error) {
	backoff := 5 * time.Millisecond
	// unknown is the error of an attempt that may have been stored: a
	// later attempt's failure to be sent at all does not settle it.
	var unknown error
	for attempt := 1; ; attempt++ {
		pctx, cancel := context.WithTimeout(ctx, publishTimeout)
		seq, dup, err := send(pctx, msg)
		cancel()
		if err == nil {
			return seq, dup, nil
		}
		if errors.Is(err, nats.ErrReconnectBufExceeded) {
			// nats.go's words, with no buffer while reconnecting, read as
			// load.
			err = fmt.Errorf("the NATS server is out of reach, reconnecting: %w", err)
		}
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) {
			switch apiErr.ErrorCode {
			case jetstream.JSErrCodeStreamWrongLastSequence:
				return 0, false, &ConflictError{Subject: msg.Subject, Actual: parseActual(apiErr.Description)}
			case jetstream.JSErrCodeStreamWrongLastSequenceConstant:
				return 0, false, &ConflictError{Subject: msg.Subject}
			case jsErrCodeDuplicateInProcess:
				// The same id is still being proposed: wait for its outcome.
			case jsErrCodeMessageTooLarge:
				return 0, false, fmt.Errorf("%w: %s", ErrTooLarge, apiErr.Description)
			case jsErrCodeInsufficientResources:
				return 0, false, fmt.Errorf("%w: %s", ErrNoStorage, apiErr.Description)
			default:
				return 0, false, err
			}
		} else if errors.Is(err, nats.ErrMaxPayload) {
			return 0, false, fmt.Errorf("%w: %v", ErrTooLarge, err)
		} else if !retryable(err) {
			if unknown != nil {
				// An earlier attempt may have been stored: a later one
				// that failed (the connection closing) does not settle it.
				// A log found lost says so all the same: its owner stops.
				if errors.Is(err, ErrLogLost) {
					return 0, false, fmt.Errorf("%w (later attempt: %w)", unknown, err)
				}
				return 0, false, fmt.Errorf("%w (later attempt: %v)", unknown, err)
			}
			return 0, false, err
		}
		if unknown == nil && !errors.Is(err, nats.ErrReconnectBufExceeded) && !errors.Is(err, nats.ErrNoResponders) {
			unknown = err
		}
		if errors.Is(err, context.DeadlineExceeded) && broken != nil {
			if werr := broken(); werr != nil {
				// Still ambiguous: an earlier attempt may have been
				// stored before the store failed.
				return 0, false, fmt.Errorf("%w (%w: %w)", unknown, storeFull(werr), ErrStoreFailed)
			}
		}
		if ctx.Err() != nil || attempt >= 8 {
			if unknown != nil && errors.Is(err, nats.ErrReconnectBufExceeded) {
				return 0, false, fmt.Errorf("%w (later attempts not sent: %v)", unknown, err)
			}
			return 0, false, err
		}
		logger.Warn("append retry", logkey.Subject, msg.Subject, logkey.Err, err)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return 0, false, ctx.Err()
		}
		backoff = min(backoff*2, 500*time.Millisecond)
	}
}

// findMsgID looks for a record with msgID on subject after sequence after.
func (l *Log) findMsgID(ctx context.Context, subject string, after uint64, msgID string) (uint64, bool) {
	if after == ExpectAny {
		return 0, false
	}
	recs, err := l.ReadSubject(ctx, subject, after)
	if err != nil {
		return 0, false
	}
	for _, r := range recs {
		if r.MsgID == msgID {
			return r.Seq, true
		}
	}
	return 0, false
}

const (
	jsErrCodeDuplicateInProcess jetstream.ErrorCode = 10158
	jsErrCodeMessageTooLarge    jetstream.ErrorCode = 10054
	// Insufficient resources: the server's storage is full.
	jsErrCodeInsufficientResources jetstream.ErrorCode = 10023
	// A cluster that cannot place a stream's replicas: too few peers
	// known, or offline.
	jsErrCodeNoPeers jetstream.ErrorCode = 10005
	// A cluster without a meta leader.
	jsErrCodeClusterNotAvailable jetstream.ErrorCode = 10008
)

func retryable(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, nats.ErrConnectionReconnecting) || errors.Is(err, nats.ErrReconnectBufExceeded)
}

// parseActual reads N from the server's "wrong last sequence: N".
func parseActual(desc string) uint64 {
	i := strings.LastIndexByte(desc, ':')
	if i < 0 {
		return 0
	}
	n, _ := strconv.ParseUint(strings.TrimSpace(desc[i+1:]), 10, 64)
	return n
}
