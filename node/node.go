// Package node assembles one flowvault server process: the event log
// (embedded or external NATS), the read-model store, the projection runners
// and the HTTP surface. cmd/flowvault runs a Node; end-to-end tests start one
// in-process.
package node

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/flowvault/flowvault/api"
	"github.com/flowvault/flowvault/audit"
	"github.com/flowvault/flowvault/auth"
	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/engine/simulate"
	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/events"
	"github.com/flowvault/flowvault/executor"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/guard"
	"github.com/flowvault/flowvault/internal/connlimit"
	"github.com/flowvault/flowvault/internal/logkey"
	"github.com/flowvault/flowvault/internal/ratelimit"
	"github.com/flowvault/flowvault/metadata"
	"github.com/flowvault/flowvault/natsauth"
	"github.com/flowvault/flowvault/projections"
	"github.com/flowvault/flowvault/projections/executions"
	"github.com/flowvault/flowvault/scheduler"
	"github.com/flowvault/flowvault/schemacheck"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/secrets"
	"github.com/flowvault/flowvault/workers/system"
)

// Node is a running flowvault server.
type Node struct {
	cfg      Config
	logger   *slog.Logger
	registry *prometheus.Registry
	log      *eventlog.Log
	store    *projections.Store
	// projMetrics are the projection runners' collectors, registered once
	// and shared by every runner.
	projMetrics *projections.Metrics
	metadata    *metadata.Store
	executions  *executions.Reader
	execRunner  *projections.Runner
	// runners are every read model's, for the health check.
	runners     []*projections.Runner
	executor    *executor.Executor
	schedules   *scheduler.Store
	keys        *secrets.Keys
	nats        *natsauth.Authority // nil with an external NATS server
	secrets     *secrets.Store
	env         *secrets.Env
	auth        *authParts
	workerCreds *workerCreds
	// ownWorkers are the NATS users of the worker credentials this node
	// made for itself (WorkerCredentials), which no ledger lists.
	ownWorkers sync.Map
	// guard protects what the executor records and hands off.
	guard   *guard.Guard
	audit   *audit.Recorder
	httpSrv *http.Server
	front   frontHandler
	ln      net.Listener
	unlock  func()
	// events is the connection EVENT tasks publish on (eventsConn);
	// listener runs the event handlers, receiving on listenerConn.
	events       *nats.Conn
	listener     atomic.Pointer[events.Listener]
	listenerConn *nats.Conn
	// stopListening has the listener leave its queue groups and returns
	// once it handled the events it took, or ctx ends (nil before the
	// listener runs).
	stopListening func(ctx context.Context)
	// gate keeps the embedded NATS server's revocation list; the access
	// read model, which starts first, tells it of changes in rights.
	gate atomic.Pointer[natsauth.Gate]

	// failed is closed, failure set, when the node cannot go on (Failed).
	failed   chan struct{}
	failOnce sync.Once
	failure  error

	cancel   context.CancelFunc
	wg       sync.WaitGroup
	stopOnce sync.Once
	stopped  chan struct{} // closed when shutdown returned
	stopping stopStep      // the part shutdown is stopping
	stopErr  error
}

// The API reads the views without tasks, and checks access, through the
// read model's head reads (api.ExecutionHeads): without them it would read
// every task of a workflow for them.
var _ api.ExecutionHeads = (*executions.Reader)(nil)

// stopStep names the part a shutdown is stopping, and how long each part
// took: a budget that ran out says where it went.
type stopStep struct {
	mu    sync.Mutex
	parts []string
	began []time.Time
}

// enter records that the shutdown is now stopping part.
func (s *stopStep) enter(part string) {
	s.mu.Lock()
	s.parts, s.began = append(s.parts, part), append(s.began, time.Now())
	s.mu.Unlock()
}

// String is the part being stopped, how long it has taken, and what the
// parts before it took: "the event log (9.2s; the HTTP server 0s, the
// executor 0.8s)".
func (s *stopStep) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	last := len(s.parts) - 1
	if last < 0 {
		return "nothing yet"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s (%s", s.parts[last], time.Since(s.began[last]).Round(100*time.Millisecond))
	for i := range last {
		sep := ", "
		if i == 0 {
			sep = "; "
		}
		fmt.Fprintf(&b, "%s%s %s", sep, s.parts[i], s.began[i+1].Sub(s.began[i]).Round(100*time.Millisecond))
	}
	b.WriteString(")")
	return b.String()
}

// Start opens everything and starts serving. On error, whatever was opened
// is closed again.
func Start(ctx context.Context, cfg Config, logger *slog.Logger) (_ *Node, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	runCtx, cancel := context.WithCancel(context.Background())
	n := &Node{cfg: cfg, logger: logger, registry: reg, cancel: cancel, failed: make(chan struct{})}
	defer func() {
		if err != nil {
			n.Stop(context.Background())
		}
	}()

	tlsConfig, err := cfg.loadTLS()
	if err != nil {
		return nil, err
	}
	// A data dir is fresh until its first start got through bootstrap: a
	// first start that failed half-way (a port taken) leaves the dir, and
	// the next one still owes the bootstrap key its file. An empty one is
	// fresh too: systemd's StateDirectory, a container's volume, made for
	// the server before its first start.
	firstStart := filepath.Join(cfg.DataDir, firstStartFile)
	freshData := emptyOrAbsent(cfg.DataDir) || exists(firstStart)
	// A bad master key stops the server before it touches the data dir.
	mk, err := secrets.LoadMasterKey(cfg.MasterKeySource(), logger)
	if err != nil {
		return nil, err
	}
	// A taken port stops the server before it touches the data dir too: a
	// first start that failed after it printed the bootstrap admin key
	// would have shown the key only in the output of a failed run.
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", cfg.HTTPAddr, err)
	}
	n.ln = n.limitConns(ln, tlsConfig != nil)
	// Served from the first moment, every request answered with a
	// retryable 503 until the read models caught up: a probe tells a
	// starting server from a dead one, and a client does not hang.
	// /metrics answers meanwhile, showing the read models catch up.
	n.front.set(api.Starting(reg, logger))
	n.serveHTTP(tlsConfig)
	if n.unlock, err = LockDataDir(cfg.DataDir); err != nil {
		return nil, err
	}
	dataDir, err := newDataDirWatch(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		dataDir.run(runCtx, n.fail)
	}()
	if err := CheckRekeyPending(cfg.DataDir); err != nil {
		return nil, err
	}
	if freshData {
		if err := os.WriteFile(firstStart, nil, 0o600); err != nil {
			return nil, fmt.Errorf("data dir: %w", err)
		}
	}
	if err := projections.RemoveVerifyLeftovers(cfg.DataDir); err != nil {
		return nil, fmt.Errorf("remove a verification's leftovers: %w", err)
	}
	// The data dir too: in one others may write to, they could plant the
	// token signing key (token.key) a server reads.
	stores := []string{cfg.DataDir, cfg.PebbleDir()}
	if cfg.NATSURL == "" {
		stores = append(stores, cfg.Eventlog().StoreDir) // the embedded server's
	}
	if err := privateDirs(stores...); err != nil {
		return nil, err
	}
	engineID, err := loadEngineID(cfg.DataDir, logger)
	if err != nil {
		return nil, err
	}
	if n.log, mk, n.nats, err = OpenLog(ctx, cfg, mk, eventlog.Options{Logger: logger, Metrics: reg, TLS: tlsConfig}); err != nil {
		return nil, err
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		select {
		case <-n.log.Lost():
			n.fail(n.log.Err())
		case <-runCtx.Done():
		}
	}()
	n.audit = audit.NewRecorder(n.log, audit.RecorderConfig{Logger: logger, Metrics: reg})
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		n.audit.Run(runCtx)
	}()
	// A master key that does not open the stored keyring stops it before
	// anything is written.
	if n.keys, err = secrets.OpenKeys(ctx, n.log.JetStream(), mk, secrets.KeysOptions{
		Logger: logger, Replicas: cfg.Eventlog().Replicas, DevKeyFile: cfg.DevKeyFile(), Guard: n.log, Forming: n.log,
	}); err != nil {
		return nil, err
	}
	if _, err := os.Stat(cfg.DevKeyFile()); err == nil && cfg.MasterKeySource().Configured() {
		// Moved from dev mode to a master key of its own (perhaps the
		// dev file's, copied): the file still opens every secret.
		logger.Warn("a dev-mode master key file is still in the data dir while a master key is configured: "+
			"anyone who can read it can decrypt every secret; remove it once the server runs", logkey.Path, cfg.DevKeyFile())
	}
	if n.store, err = projections.OpenStore(cfg.PebbleDir(), projections.StoreOptions{Logger: logger, MemTableSize: cfg.PebbleMemTableSize}); err != nil {
		return nil, err
	}
	n.projMetrics = projections.NewMetrics(reg)
	metaRunner, err := n.startProjection(ctx, runCtx, eventlog.Metadata.Name, metadata.NewProjection(n.notifyListener))
	if err != nil {
		return nil, err
	}
	n.metadata = metadata.New(n.log, n.store, metaRunner, metadata.Options{Logger: logger,
		ValidateWorkflow:     func(def *conductor.WorkflowDef) error { return engine.ValidateWorkflowDefWith(def, n.taskTemplate) },
		ValidateEventHandler: events.Validate})
	// Serve definitions only once the read model has caught up with the
	// log (after a rebuild it starts from nothing).
	if err := catchUp(ctx, n.log, eventlog.Metadata.Name, metaRunner); err != nil {
		return nil, err
	}
	secRunner, err := n.startProjection(ctx, runCtx, eventlog.Secrets.Name, secrets.Projection{})
	if err != nil {
		return nil, err
	}
	n.secrets = secrets.New(n.log, n.store, secRunner, n.keys, secrets.Options{Logger: logger})
	n.env = secrets.NewEnv(n.log, n.store, secRunner, secrets.Options{Logger: logger})
	if err := catchUp(ctx, n.log, eventlog.Secrets.Name, secRunner); err != nil {
		return nil, err
	}
	if n.auth, err = n.startAuth(ctx, runCtx, freshData); err != nil {
		return nil, err
	}
	if freshData {
		if err := os.Remove(firstStart); err != nil {
			return nil, fmt.Errorf("data dir: %w", err)
		}
	}
	if err := n.startWorkerCreds(ctx, runCtx); err != nil {
		return nil, err
	}
	targets := secretTargets{api.SecretStore{Store: n.secrets}, api.EnvStore{Env: n.env}}
	n.auth.authorizer.Register(auth.TargetSecret, targets)
	n.auth.authorizer.Register(auth.TargetEnvVariable, targets)
	n.wg.Add(2)
	go func() {
		defer n.wg.Done()
		n.secrets.RunSweeper(runCtx, time.Hour, 10*time.Minute)
	}()
	go func() {
		defer n.wg.Done()
		n.keys.WatchKeyring(runCtx)
	}()
	n.executions = executions.NewReader(n.store)
	n.executor = executor.New(n.log, n.metadata, n.executions, executor.Config{Logger: logger, Metrics: reg, Snapshots: n.executions, QueueIdle: cfg.QueueIdle,
		MaxRunningWorkflows: cfg.MaxRunningWorkflows, EngineID: engineID})
	authz := workflowAuthorizer{principals: n.auth.store, authz: n.auth.authorizer, insecure: cfg.Insecure}
	g := guard.New(guard.Config{Secrets: n.secrets, Env: n.env, Authz: authz, Keys: n.keys, Logger: logger})
	n.guard = g
	n.executor.SetHandOff(g)
	n.executor.SetProtector(g)
	mayStart := startCheck(n.metadata, authz)
	n.executor.SetStartCheck(mayStart)
	n.executor.SetReadCheck(authz.mayReadExecution)
	n.executor.SetTakeCheck(func(ctx context.Context, taker, taskType, domain string) error {
		return authz.workerMayTake(ctx, n.workerCreds.ledger, n.unlistedWorker, taker, taskType, domain)
	})
	n.executor.SetSenderCheck(func(_ context.Context, sender string) error {
		_, _, err := authz.liveCredentials(n.workerCreds.ledger, n.unlistedWorker, sender)
		return err
	})
	n.executor.SetPollOwner(n.pollOwner)
	n.executor.SetUnrestricted(authz.unrestricted)
	n.executor.SetConformance(schemacheck.New(n.metadata))
	n.executor.RegisterSystemTask(conductor.TaskTypeUpdateSecret, guard.UpdateSecret{Store: n.secrets, Authz: authz, Refusals: n.audit})
	n.executor.RegisterSystemTask(conductor.TaskTypeSetVariable, system.SetVariable{}) // only those with secret references
	n.executor.RegisterSystemTask(conductor.TaskTypeHTTP, system.HTTP{})
	n.executor.RegisterSystemTask(conductor.TaskTypeHTTPPoll, system.HTTPPoll{})
	n.executor.RegisterSystemTask(conductor.TaskTypeGetSignedJWT, system.SignedJWT{})
	if n.events, err = n.eventsConn(); err != nil {
		return nil, err
	}
	n.executor.RegisterSystemTask(conductor.TaskTypeEvent, system.Event{Conn: n.events})
	// User code (JavaScript, jq) runs in system tasks: the decider stays pure.
	n.executor.RegisterSystemTask(conductor.TaskTypeInline, system.Inline{})
	n.executor.RegisterSystemTask(conductor.TaskTypeLambda, system.Inline{})
	n.executor.RegisterSystemTask(conductor.TaskTypeJSONJQ, system.JQ{})
	n.executor.RegisterSystemTask(conductor.TaskTypeSwitch, system.Switch{})   // javascript/graaljs cases
	n.executor.RegisterSystemTask(conductor.TaskTypeDecision, system.Switch{}) // caseExpression
	n.executor.RegisterSystemTask(conductor.TaskTypeDoWhile, system.LoopCondition{})
	// The executions model folds workflows with the system task types
	// registered: a replay without them would index no lease deadline of
	// a system task a crash left running, and it would never run again.
	execProj := executions.NewProjection()
	// Whichever engine ended a workflow, this one lets go of what its
	// guard gathered of it.
	execProj.ForgetEnded(n.guard)
	// Whichever engine compacted a workflow, this one refuses its key.
	execProj.ShredCompacted(guard.Shredded{Keys: n.keys})
	execRunner, err := n.startProjection(ctx, runCtx, eventlog.Workflows.Name, execProj)
	if err != nil {
		return nil, err
	}
	n.execRunner = execRunner
	n.executor.SetCatchUp(n.catchUpExecutions)
	// Timers and recovery read the executions model: let it catch up first.
	if err := catchUp(ctx, n.log, eventlog.Workflows.Name, execRunner); err != nil {
		return nil, err
	}
	// Before the executor starts: its recovery may start children, which
	// it authorizes against the definitions' creators and tags.
	n.auth.authorizer.Register(auth.TargetWorkflowDef, definitionTargets{n.metadata})
	n.auth.authorizer.Register(auth.TargetTaskDef, definitionTargets{n.metadata})
	if err := n.executor.Start(ctx); err != nil {
		return nil, err
	}
	// A start no request of its starter's asks for (a schedule's tick, an
	// event handler's start_workflow) is asked what the API asks of one:
	// an inline definition's tasks too (see mayHandTasks).
	mayStartUnasked := func(ctx context.Context, principals []string, req conductor.StartWorkflowRequest) (executor.Pin, error) {
		pin, err := mayStart(ctx, principals, req)
		for i := 0; err == nil && i < len(principals); i++ {
			err = authz.mayHandTasks(ctx, api.TaskHandOff{TaskDefs: n.metadata, Principals: n.auth.store, Authorizer: n.auth.authorizer}, principals[i], req.WorkflowDef)
		}
		if err != nil {
			return executor.Pin{}, err
		}
		return pin, nil
	}
	actAs := eventAuthorizer{authz: authz, mayStart: mayStartUnasked}
	if err := n.startEventHandlers(ctx, runCtx, actAs); err != nil {
		return nil, err
	}
	compactor := &guard.Compactor{Ended: n.executions, Engine: n.executor, Keys: n.keys, Delay: cfg.CompactionDelay, Logger: logger,
		SweepEvery: cfg.CompactionSweep, Listed: n.keys, States: n.executions}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		compactor.SweepAndLog(runCtx)
		compactor.Run(runCtx)
	}()
	schedRunner, err := n.startProjection(ctx, runCtx, eventlog.Metadata.Name, scheduler.Projection{})
	if err != nil {
		return nil, err
	}
	n.schedules = scheduler.New(n.log, n.store, schedRunner, logger)
	if err := catchUp(ctx, n.log, eventlog.Metadata.Name, schedRunner); err != nil {
		return nil, err
	}
	n.auth.authorizer.Register(auth.TargetWorkflowSchedule, scheduleTargets{n.schedules})
	firer := scheduler.NewFirer(n.schedules, n.executor, func(ctx context.Context, owner string, req conductor.StartWorkflowRequest) (executor.Pin, error) {
		return mayStartUnasked(ctx, []string{owner}, req)
	})
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		firer.Run(runCtx)
	}()

	handler := api.New(api.Deps{
		Logger:   logger,
		Gatherer: reg,
		Metadata: n.metadata,

		EventHandlers: n.metadata,
		EventListener: n.listener.Load(),

		Webhooks:        n.metadata,
		Schemas:         n.metadata,
		WebhookReceiver: n.webhookReceiver(actAs),

		Engine:           n.executor,
		Executions:       n.executions,
		ExecutionsWaiter: execRunner,
		Definitions:      n.metadata,
		Operators: map[string]simulate.Operator{
			conductor.TaskTypeInline: system.Inline{}, conductor.TaskTypeLambda: system.Inline{},
			conductor.TaskTypeJSONJQ: system.JQ{}, conductor.TaskTypeSwitch: system.Switch{},
			conductor.TaskTypeDecision: system.Switch{}, conductor.TaskTypeDoWhile: system.LoopCondition{},
		},
		Schedules: n.schedules,
		NextFew:   scheduler.NextFew,
		Search:    n.executions,
		Changes:   execProj,
		Tasks:     n.executor,
		TaskIndex: foundTasks{n},

		Secrets:     api.SecretStore{Store: n.secrets},
		Environment: api.EnvStore{Env: n.env},
		Auth:        n.auth.store,
		Tokens:      n.auth.tokens,
		Authorizer:  n.auth.authorizer,
		Insecure:    cfg.Insecure,
		TokenLimits: cfg.TokenLimits,
		Audit:       n.audit,
		Trail:       audit.NewTrail(n.log),
		Verifier:    verifier{n},
		Version:     cmp.Or(cfg.Version, "dev"),

		WorkerCredentials:       n.credentialIssuer(),
		WorkerCredentialsLedger: n.workerCreds.ledger,
		Checks: []api.Check{{Name: "nats", Probe: func(ctx context.Context) error {
			if err := n.log.Err(); err != nil {
				return err
			}
			if !n.log.Conn().IsConnected() {
				return errors.New("not connected to nats")
			}
			return n.log.StorageError(ctx)
		}}, {Name: "read models", Probe: n.readModelsHealthy}, {Name: "data dir", Probe: func(context.Context) error {
			return dataDir.check()
		}}, {Name: "storage", Suppressed: true, Probe: func(context.Context) error {
			// Suppressed: writes are refused at the store's bound, but
			// reads are served, and a restart without more room comes
			// back at the same bound (an orchestrator's liveness restart
			// would loop, replaying the read models each time, and a
			// readiness failure would take the reads away too).
			return n.log.StoreFull()
		}}},
	})
	n.httpSrv.RegisterOnShutdown(handler.Shutdown)
	n.httpSrv.RegisterOnShutdown(n.executor.StopPolling)
	// Every read model runs by now: the slice is not appended to again.
	n.registry.MustRegister(newReadModelLag(slices.Clone(n.runners)), newLoadGauges(n.executions.Gauges))
	n.front.set(handler)
	logger.Info("flowvault listening", logkey.Addr, n.HTTPAddr(), logkey.URL, n.URL(), logkey.NATS, n.log.ClientURL(), logkey.Dir, cfg.DataDir)
	return n, nil
}

// taskTemplate is the inputTemplate of the registered task definition
// name, which a definition's registration reads (engine.TaskTemplates).
// One that cannot be read counts as none: the registration is refused if
// it needed it.
func (n *Node) taskTemplate(name string) map[string]any {
	td, found, err := n.metadata.LookupTaskDef(context.Background(), name)
	if err != nil || !found {
		return nil
	}
	return td.InputTemplate
}

// serveHTTP serves the front handler on the node's listener until the
// node stops. A request body trickling in holds a connection and a
// handler: bodies are bounded in size, and in time too.
func (n *Node) serveHTTP(tlsConfig *tls.Config) {
	n.httpSrv = &http.Server{Handler: &n.front, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 2 * time.Minute,
		IdleTimeout: n.cfg.HTTPIdleTimeout,
		// What net/http reports (a refused TLS handshake, a handler's
		// panic) goes where the server logs, in its format.
		ErrorLog: slog.NewLogLogger(n.logger.With(logkey.Component, "http").Handler(), slog.LevelWarn)}
	serve := func() error { return n.httpSrv.Serve(n.ln) }
	if tlsConfig != nil {
		// A copy of its own: ServeTLS adds HTTP/2's protocols to the
		// configuration it is given, in its goroutine, while the start
		// goes on to copy the original for the NATS listener.
		n.httpSrv.TLSConfig = tlsConfig.Clone()
		serve = func() error { return n.httpSrv.ServeTLS(n.ln, "", "") }
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := serve(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.logger.Error("http server stopped", logkey.Err, err)
		}
	}()
}

// limitConns bounds the connections ln holds open to the HTTP share of
// the node's connection budget (Config.ConnBudget), and counts them in
// the node's metrics. A connection beyond it is answered 503 and closed at
// once, over TLS closed without a word (plaintext would read as a broken
// handshake): every connection is a file descriptor, which the stores
// share, and a flood of idle ones once took the event log's last.
func (n *Node) limitConns(ln net.Listener, tls bool) *connlimit.Listener {
	b := n.cfg.ConnBudget()
	if !b.Fits() {
		n.logger.Warn("the connection bounds leave the stores few of the open files the process may hold: raise its limit (ulimit -n, systemd's LimitNOFILE) or lower --http-max-conns or --nats-max-conns",
			"open_files_limit", b.Files, "http_max_conns", b.HTTP, "nats_max_conns", b.NATS)
	}
	refusal := connlimit.HTTPRefusal
	if tls {
		refusal = nil
	}
	lines := ratelimit.NewLines()
	logger := n.logger.With(logkey.Component, "http")
	var l *connlimit.Listener
	l = connlimit.NewListener(ln, b.HTTP, refusal, func() {
		lines.Error(logger, fmt.Sprintf("connection refused: %d are open, the most --http-max-conns allows", l.Max()))
	})
	n.registry.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "flowvault_http_connections_open", Help: "HTTP connections open."},
			func() float64 { return float64(l.Open()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "flowvault_http_connections_max", Help: "Most HTTP connections held open at once (--http-max-conns)."},
			func() float64 { return float64(l.Max()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "flowvault_http_connections_refused_total", Help: "HTTP connections refused because --http-max-conns were open."},
			func() float64 { return float64(l.Refused()) }),
	)
	return l
}

// frontHandler is the HTTP server's handler: api.Starting while the node
// starts, the API once it has.
type frontHandler struct{ h atomic.Pointer[http.Handler] }

func (f *frontHandler) set(h http.Handler) { f.h.Store(&h) }

func (f *frontHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	(*f.h.Load()).ServeHTTP(w, r)
}

// startProjection runs proj over stream until the node stops. Poison
// records are parked, so one bad record cannot stop a read model.
func (n *Node) startProjection(ctx, runCtx context.Context, stream string, proj projections.Projection) (*projections.Runner, error) {
	r := projections.NewRunner(n.log, n.store, proj, projections.RunnerConfig{
		Stream:  stream,
		Poison:  projections.Park,
		Logger:  n.logger,
		Metrics: n.projMetrics,
	})
	// Refused before anything is served: a read model that fails only
	// once it runs would have the server answer, and write, meanwhile.
	if err := r.Check(ctx); err != nil {
		return nil, err
	}
	n.runners = append(n.runners, r)
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := r.Run(runCtx); err != nil {
			n.logger.Error("projection stopped", logkey.Projection, proj.Name(), logkey.Err, err)
		}
	}()
	return r, nil
}

// readModelStall is how long a read model may apply nothing while records
// wait before the health check says so.
const readModelStall = 30 * time.Second

// readModelsHealthy is the health check of the read models: none stopped
// or stalled, which would serve stale reads and keep writes waiting for
// them.
func (n *Node) readModelsHealthy(ctx context.Context) error {
	var errs []error
	for _, r := range n.runners {
		if err := r.Stalled(ctx, readModelStall); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// catchUp waits until r has applied everything stream held when it was
// called.
func catchUp(ctx context.Context, l *eventlog.Log, stream string, r *projections.Runner) error {
	last, err := l.StreamLastSeq(ctx, stream)
	if err != nil {
		return err
	}
	if err := r.WaitFor(ctx, last); err != nil {
		return fmt.Errorf("catch up with %s: %w", stream, err)
	}
	return nil
}

// catchUpExecutions waits until the executions model has applied what the
// workflows' stream held when it was called.
func (n *Node) catchUpExecutions(ctx context.Context) error {
	return catchUp(ctx, n.log, eventlog.Workflows.Name, n.execRunner)
}

// foundTasks finds a task's workflow in the executions model, and when
// the task is not there, looks again once the model has applied what the
// log held: a worker that took a task over NATS, or an event about such a
// task, may ask before the model has it (a take's answer does not wait for
// the read models, as an HTTP poll's does).
type foundTasks struct{ n *Node }

func (f foundTasks) TaskWorkflow(ctx context.Context, taskID string) (string, error) {
	wfID, err := f.n.executions.TaskWorkflow(ctx, taskID)
	if !errors.Is(err, fault.ErrNotFound) {
		return wfID, err
	}
	if err := f.n.catchUpExecutions(ctx); err != nil {
		return "", err
	}
	return f.n.executions.TaskWorkflow(ctx, taskID)
}

// firstStartFile marks a data dir whose first start has not got through
// bootstrap yet.
const firstStartFile = "first-start"

// HTTPAddr is the address the HTTP server is bound to.
func (n *Node) HTTPAddr() string {
	if n.ln == nil {
		return ""
	}
	return n.ln.Addr().String()
}

// URL is the REST API's base URL: https:// with a certificate, http://
// without.
func (n *Node) URL() string {
	if n.ln == nil {
		return ""
	}
	if n.cfg.TLSCertFile != "" {
		return "https://" + n.HTTPAddr()
	}
	return "http://" + n.HTTPAddr()
}

// Log is the node's event log.
func (n *Node) Log() *eventlog.Log { return n.log }

// Metadata is the node's workflow and task definition store.
func (n *Node) Metadata() *metadata.Store { return n.metadata }

// Executor is the node's command loop.
func (n *Node) Executor() *executor.Executor { return n.executor }

// Executions reads the node's executions read model.
func (n *Node) Executions() *executions.Reader { return n.executions }

// Secrets is the node's secret store (secret resolution reads it).
func (n *Node) Secrets() *secrets.Store { return n.secrets }

// Environment is the node's store of environment values.
func (n *Node) Environment() *secrets.Env { return n.env }

// Keys is the node's key hierarchy (keyring, data keys).
func (n *Node) Keys() *secrets.Keys { return n.keys }

// NATS is the authority of the node's embedded NATS server: it signs
// credentials. It is nil when the node uses an external server.
func (n *Node) NATS() *natsauth.Authority { return n.nats }

// WorkerCredentials mints credentials for a worker of taskTypes in this
// process, without expiry and without an audit record: for tests and
// benchmarks that run workers next to a node. Everything else asks
// POST /api/workers/credentials.
func (n *Node) WorkerCredentials(taskTypes ...string) (*natsauth.Credentials, error) {
	if n.nats == nil {
		return nil, errors.New("worker credentials: the node uses an external NATS server")
	}
	c, err := n.nats.IssueWorker(natsauth.WorkerSpec{TaskTypes: taskTypes, Name: "in-process worker"})
	if err == nil {
		n.ownWorkers.Store(c.User, true)
	}
	return c, err
}

// pollOwner is the principal worker credentials' user (the executor's
// taker, "nats:" and the user's public key) was issued to, whose share of
// an engine's poll slots every credentials of its hold together; "" when
// the ledger does not know the user (the taker's own share then). The
// node's own workers are looked up first: the ledger never holds them, and
// a miss there, on every poll, cost 2% of a saturated engine's CPU.
func (n *Node) pollOwner(taker string) string {
	user, ok := strings.CutPrefix(taker, "nats:")
	if !ok {
		return ""
	}
	if _, own := n.ownWorkers.Load(user); own {
		return ""
	}
	c, err := n.workerCreds.ledger.Get(user)
	if err != nil || c.IssuedBy == "" {
		return ""
	}
	return "principal:" + c.IssuedBy
}

// unlistedWorker reports whether the NATS user of worker credentials the
// ledger does not know may take tasks all the same: this node made them
// for itself (WorkerCredentials), or the server is external, whose
// operator issues the credentials.
func (n *Node) unlistedWorker(user string) bool {
	if n.nats == nil {
		return true
	}
	_, own := n.ownWorkers.Load(user)
	return own
}

// eventsConn is the connection EVENT tasks publish on: on the embedded
// server, one in the workers account, where the consumers that
// credentials allow (natsauth.WorkerSpec.Subscribe) receive the events;
// on an external server, the log's own, in whatever account its operator
// gave the engines.
func (n *Node) eventsConn() (*nats.Conn, error) {
	if n.nats == nil {
		return n.log.Conn(), nil
	}
	c, err := n.nats.EventPublisherCredentials()
	if err != nil {
		return nil, fmt.Errorf("event publisher: %w", err)
	}
	nc, err := n.log.ConnectInProcess(append(c.Options(), nats.MaxReconnects(-1))...)
	if err != nil {
		return nil, fmt.Errorf("event publisher: %w", err)
	}
	return nc, nil
}

// Config is the configuration the node was started with.
func (n *Node) Config() Config { return n.cfg }

// Auth is the node's identity and grant store.
func (n *Node) Auth() *auth.Store { return n.auth.store }

// Registry is the node's Prometheus registry.
func (n *Node) Registry() *prometheus.Registry { return n.registry }

// Stop shuts down gracefully: stop accepting requests and let in-flight ones
// finish, stop background work, drain NATS (flushing pending publishes),
// close Pebble and the embedded server. It is safe to call more than once.
func (n *Node) Stop(ctx context.Context) error {
	n.stopOnce.Do(func() {
		n.stopped = make(chan struct{})
		go func() {
			defer close(n.stopped)
			n.stopErr = n.shutdown(ctx)
		}()
	})
	select {
	case <-n.stopped:
		return n.stopErr
	case <-ctx.Done():
		// What is left (a worker request that does not end, a disk that
		// does not answer) goes with the process: every acknowledged
		// write is in the log already.
		return fmt.Errorf("shutdown: the budget ran out while stopping %s: %w", &n.stopping, ctx.Err())
	}
}

// systemDrain bounds how long a shutdown waits for the system tasks under
// way (an HTTP call) to end and report, and for the events the listener
// took to be handled.
const systemDrain = 10 * time.Second

// drainWithin is ctx bounded for a step of the shutdown that waits for
// work under way: half of what is left of the budget, at most
// systemDrain.
func drainWithin(ctx context.Context) (context.Context, context.CancelFunc) {
	drain := systemDrain
	if deadline, ok := ctx.Deadline(); ok {
		drain = min(drain, time.Until(deadline)/2)
	}
	return context.WithTimeout(ctx, drain)
}

// shutdown stops everything Start opened, in order, and names the part it
// is stopping for Stop to report.
func (n *Node) shutdown(ctx context.Context) error {
	var errs []error
	step := n.stopping.enter
	if n.httpSrv != nil {
		step("the HTTP server")
		if err := n.httpSrv.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("http shutdown: %w", err))
		}
	} else if n.ln != nil {
		n.ln.Close()
	}
	if n.stopListening != nil {
		step("the event handlers")
		// Before the executor, which handles the events the listener
		// took (they failed for want of it); the events to come go to
		// the other engines.
		dctx, cancel := drainWithin(ctx)
		n.stopListening(dctx)
		cancel()
	}
	if n.executor != nil {
		step("the system tasks under way")
		dctx, cancel := drainWithin(ctx)
		n.executor.Drain(dctx)
		cancel()
		step("the executor")
		n.executor.StopWithin(ctx)
	}
	for _, c := range []*nats.Conn{n.events, n.listenerConn} {
		if c != nil && c != n.log.Conn() {
			c.Close()
		}
	}
	step("background work")
	n.cancel()
	n.wg.Wait()
	if n.log != nil {
		step("the event log")
		errs = append(errs, n.log.Close())
	}
	if n.store != nil {
		step("the read models' store")
		if errors.Is(n.Err(), ErrDataDirGone) {
			errs = append(errs, n.store.Abandon())
		} else {
			errs = append(errs, n.store.Close())
		}
	}
	if n.unlock != nil {
		n.unlock()
	}
	return errors.Join(errs...)
}

// Run starts a node and serves until ctx is done, then stops it within the
// configured shutdown timeout. It applies the process-wide settings of cfg
// (hardenProcess, Config.TuneRuntime) first.
func Run(ctx context.Context, cfg Config, logger *slog.Logger) error {
	if err := hardenProcess(cfg, logger); err != nil {
		return err
	}
	cfg.TuneRuntime()
	n, err := Start(ctx, cfg, logger)
	if err != nil {
		return err
	}
	var failure error
	select {
	case <-ctx.Done():
		logger.Info("shutting down", logkey.Reason, context.Cause(ctx).Error())
	case <-n.Failed():
		// As at start: a log that lost acknowledged records, or a data
		// directory that is gone, is not served, nor written to.
		failure = n.Err()
		logger.Error("shutting down: the node cannot go on", logkey.Err, failure)
	}
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := n.Stop(sctx); err != nil {
		return errors.Join(failure, err)
	}
	if failure != nil {
		return failure
	}
	logger.Info("stopped")
	return nil
}

// Failed is closed when the node cannot go on: its event log's server
// came back, after a reconnection, without records the node saw
// acknowledged (eventlog.Log.Lost: its log refuses appends and its read
// models stop), or its data directory was removed or replaced
// (ErrDataDirGone). Run stops the node then and returns Err.
func (n *Node) Failed() <-chan struct{} { return n.failed }

// Err is why the node failed (Failed), nil while it runs.
func (n *Node) Err() error {
	select {
	case <-n.failed:
		return n.failure
	default:
		return nil
	}
}

// fail records why the node cannot go on, the first time.
func (n *Node) fail(err error) {
	n.failOnce.Do(func() {
		n.failure = err
		close(n.failed)
	})
}

// privateDirs creates dirs, or restricts them, to their owner (0700). The
// stores' files are created 0644: in a data dir that existed already,
// readable by others (a container's volume), the read models (access key
// hashes, environment values, workflow data) and the log would be readable
// by every local user.
func privateDirs(dirs ...string) error {
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("data dir: %w", err)
		}
		if err := os.Chmod(d, 0o700); err != nil {
			return fmt.Errorf("data dir: %w", err)
		}
	}
	return nil
}
