package api

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"

	"github.com/flowvault/flowvault/audit"
	"github.com/flowvault/flowvault/auth"
	"github.com/flowvault/flowvault/engine/simulate"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/internal/logkey"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// Check is one named health check.
type Check struct {
	Name string
	// Probe returns nil when the component is healthy.
	Probe func(context.Context) error
	// Suppressed reports the probe in suppressedHealthResults, where
	// Conductor keeps the indicators that do not count towards the
	// answer: its failure is shown (and logged) but /health still says
	// healthy, with 200, for a condition an orchestrator's restart or
	// rerouting would only make worse.
	Suppressed bool
}

// Deps are the collaborators the HTTP surface needs. Routes whose
// collaborator is nil are not served.
type Deps struct {
	Logger   *slog.Logger
	Gatherer prometheus.Gatherer
	Checks   []Check
	// Metadata serves /api/metadata (workflow and task definitions, tags).
	Metadata Metadata
	// EventHandlers serves /api/event; EventListener, when set, is this
	// server's, which a change waits for.
	EventHandlers EventHandlers
	EventListener interface {
		Sync(ctx context.Context) error
	}
	// Engine, Executions and ExecutionsWaiter serve /api/workflow.
	Engine           Engine
	Executions       Executions
	ExecutionsWaiter Waiter
	// Definitions finds the latest definition for restarts, and the
	// definitions the test endpoint simulates.
	Definitions DefinitionLookup
	// Operators are the system task types POST /api/workflow/test runs
	// for real (INLINE, JSON_JQ_TRANSFORM, script SWITCHes, DO_WHILE
	// conditions), as Conductor's test does.
	Operators map[string]simulate.Operator
	// Schedules and NextFew serve /api/scheduler.
	Schedules Schedules
	NextFew   NextFewFunc
	// Search serves workflow and task search, correlation lookups and
	// running lists; Changes wakes synchronous executions.
	Search  Searcher
	Changes Changes
	// Tasks and TaskIndex (with Engine and Executions) serve /api/tasks.
	Tasks     TaskQueue
	TaskIndex TaskIndex
	// Secrets serves /api/secrets, Environment /api/environment.
	Secrets     Secrets
	Environment Environment

	// Auth, Tokens and Authorizer serve identities, grants and tokens and
	// authenticate every /api request except POST /api/token and
	// GET /api/health: a request without a valid X-Authorization token is
	// answered 401. Insecure (--insecure-dev) turns authentication off:
	// every caller is auth.Anonymous, an admin.
	Auth        AuthStore
	Tokens      TokenService
	Authorizer  *auth.Authorizer
	Insecure    bool
	TokenLimits TokenLimits
	// WorkerCredentials issues and revokes NATS credentials of workers
	// (/api/workers/credentials), which WorkerCredentialsLedger lists; nil
	// with an external NATS server.
	WorkerCredentials       CredentialIssuer
	WorkerCredentialsLedger CredentialLedger

	// Audit records reads of values and refused requests (nil: nothing
	// is recorded); Trail serves GET /api/audit and Verifier POST
	// /api/audit/verify.
	Audit    AuditLog
	Trail    AuditTrail
	Verifier ReadModelVerifier

	// Webhooks stores incoming webhooks, whose deliveries (POST
	// /webhook/{id}) WebhookReceiver takes.
	Webhooks        Webhooks
	WebhookReceiver WebhookReceiver

	// Schemas stores the JSON Schemas definitions enforce (/api/schema).
	Schemas Schemas

	// Version is the build's version, answered at GET /api/version.
	Version string
}

// Server routes flowvault's HTTP requests.
type Server struct {
	deps Deps
	mux  *http.ServeMux
	// stopping is closed by Shutdown: long waits (synchronous execution)
	// answer with what they have.
	stopping     chan struct{}
	stopOnce     sync.Once
	tokenLimiter *tokenLimiter
	// verifying lets one read-model verification run at a time.
	verifying sync.Mutex
}

// New returns the HTTP handler of a flowvault server.
func New(deps Deps) *Server {
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{deps: deps, mux: http.NewServeMux(), stopping: make(chan struct{}), tokenLimiter: newTokenLimiter(deps.TokenLimits)}
	s.mux.HandleFunc("GET /health", s.health)
	s.mux.HandleFunc("GET /api/health", s.health)
	s.routeWorkflows()
	s.routeScheduler()
	s.taskRoutes()
	if deps.Gatherer != nil {
		s.mux.Handle("GET /metrics", metricsHandler(deps.Gatherer, s.writePublicError))
	}
	if deps.Metadata != nil {
		s.metadataRoutes()
	}
	if deps.EventHandlers != nil {
		s.eventRoutes()
	}
	if deps.Webhooks != nil {
		s.webhookRoutes()
	}
	if deps.Schemas != nil {
		s.schemaRoutes()
	}
	if deps.Secrets != nil {
		s.secretRoutes()
	}
	if deps.Environment != nil {
		s.environmentRoutes()
	}
	if deps.Auth != nil && deps.Authorizer != nil {
		s.appRoutes()
		s.userRoutes()
		s.grantRoutes()
	}
	s.tokenRoutes()
	s.workerRoutes()
	s.auditRoutes()
	s.adminRoutes()
	return s
}

// ServeHTTP authenticates the request (see Deps.Auth) and routes it.
// No answer may be stored by a cache between client and server: a task
// handed out by a poll carries resolved secret values, and every other
// answer data that access control decides on per request. Nor may a
// browser take one for another type than it says.
func (s *Server) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	w := &watchedWriter{ResponseWriter: rw}
	defer s.recoverPanic(w, r)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	r, ok := s.authenticate(w, r)
	if !ok {
		return
	}
	if h, pattern := s.mux.Handler(r); pattern == "" {
		s.noRoute(w, r, h)
		return
	}
	s.mux.ServeHTTP(w, r)
}

// recoverPanic answers a request whose handler panicked with a 500 in
// Conductor's error body, as Conductor answers an unhandled exception:
// net/http would close the connection without a word, which a client reads
// as a network failure and sends again. Its log line would quote the
// panic's value, which may be a value the handler held (a secret's); the
// line here names a runtime error or the value's type only, and the
// stack. A panic once the answer began cannot be answered: the
// connection is cut, as before.
func (s *Server) recoverPanic(w *watchedWriter, r *http.Request) {
	p := recover()
	if p == nil {
		return
	}
	if p == http.ErrAbortHandler {
		panic(p)
	}
	what := fmt.Sprintf("a panic of type %T", p)
	if re, ok := p.(runtime.Error); ok {
		what = re.Error()
	}
	s.deps.Logger.Error("request handler panicked", logkey.Method, r.Method, logkey.Path, audit.Bounded(r.URL.Path),
		logkey.Err, what, logkey.Stack, string(debug.Stack()))
	if w.answered {
		panic(http.ErrAbortHandler)
	}
	writeJSON(w, http.StatusInternalServerError, errorBody{ErrorResponse: conductor.ErrorResponse{
		Status: http.StatusInternalServerError, Message: "internal error", Instance: "flowvault"}})
}

// watchedWriter tells whether a handler began its answer.
type watchedWriter struct {
	http.ResponseWriter
	answered bool
}

func (w *watchedWriter) WriteHeader(status int) {
	w.answered = true
	w.ResponseWriter.WriteHeader(status)
}

func (w *watchedWriter) Write(b []byte) (int, error) {
	w.answered = true
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach net/http's writer.
func (w *watchedWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// maxBytesReader is http.MaxBytesReader on net/http's own writer, which
// alone can tell the server to close the connection rather than read
// the rest of a body over the limit.
func maxBytesReader(w http.ResponseWriter, body io.ReadCloser, n int64) io.ReadCloser {
	if ww, ok := w.(*watchedWriter); ok {
		w = ww.ResponseWriter
	}
	return http.MaxBytesReader(w, body, n)
}

// noRoute answers a request no route takes with Conductor's JSON error
// body, where the mux would answer in plain text (404, or 405 with the
// Allow header for a path served for other methods): clients read the
// status and message from the body.
func (s *Server) noRoute(w http.ResponseWriter, r *http.Request, mux http.Handler) {
	probe := &statusProbe{header: http.Header{}}
	mux.ServeHTTP(probe, r)
	if probe.status == http.StatusMethodNotAllowed {
		w.Header()["Allow"] = probe.header["Allow"]
		s.writeError(w, r, fmt.Errorf("%s %s: %w", r.Method, audit.Bounded(r.URL.Path), errMethodNotAllowed))
		return
	}
	s.noEndpoint(w, r)
}

// noEndpoint answers 404 for a path no endpoint serves. The path is
// quoted cut short: a URL may be a megabyte long.
func (s *Server) noEndpoint(w http.ResponseWriter, r *http.Request) {
	s.writeError(w, r, fault.NotFound("no endpoint %s %s", r.Method, audit.Bounded(r.URL.Path)))
}

// notServed answers 404 for a path of Conductor's or Orkes's API whose
// feature flowvault does not serve, where a route of its own would
// otherwise take the path for something else.
func (s *Server) notServed(feature string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, r, fault.NotFound("no endpoint %s %s: %s are not served", r.Method, audit.Bounded(r.URL.Path), feature))
	}
}

// statusProbe records the status and headers a handler answers with, and
// drops its body.
type statusProbe struct {
	header http.Header
	status int
}

func (p *statusProbe) Header() http.Header { return p.header }

func (p *statusProbe) WriteHeader(status int) {
	if p.status == 0 {
		p.status = status
	}
}

func (p *statusProbe) Write(b []byte) (int, error) {
	p.WriteHeader(http.StatusOK)
	return len(b), nil
}

// Shutdown ends the server's long waits, so that in-flight requests finish
// promptly during a graceful shutdown (http.Server.RegisterOnShutdown). It
// is safe to call more than once.
func (s *Server) Shutdown() { s.stopOnce.Do(func() { close(s.stopping) }) }

type healthResult struct {
	Name    string `json:"name"`
	Healthy bool   `json:"healthy"`
	Error   string `json:"errorMessage,omitempty"`
}

// health answers in Conductor's shape, which readiness scripts parse, and
// 503 when a probe fails, which load balancers read. /health asks for no
// token: a failed probe's error, which may name the data dir, a stream or
// the NATS server, is logged, and answered only to an administrator (a
// valid ADMIN token, or --insecure-dev); anyone else reads which probe
// failed. A suppressed probe (Check.Suppressed) that fails is shown so,
// with its error to an administrator, and fails nothing.
func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	body := struct {
		HealthResults           []healthResult `json:"healthResults"`
		SuppressedHealthResults []healthResult `json:"suppressedHealthResults"`
		Healthy                 bool           `json:"healthy"`
	}{HealthResults: []healthResult{}, SuppressedHealthResults: []healthResult{}, Healthy: true}
	// failed are the results whose probe failed, by list and place.
	type failure struct {
		results *[]healthResult
		i       int
		err     error
	}
	var failed []failure
	for _, c := range s.deps.Checks {
		res := healthResult{Name: c.Name, Healthy: true}
		err := c.Probe(ctx)
		if err != nil {
			res.Healthy = false
			body.Healthy = body.Healthy && c.Suppressed
			s.deps.Logger.Warn("health check failed", logkey.Component, c.Name, logkey.Err, err)
		}
		results := &body.HealthResults
		if c.Suppressed {
			results = &body.SuppressedHealthResults
		}
		*results = append(*results, res)
		if err != nil {
			failed = append(failed, failure{results, len(*results) - 1, err})
		}
	}
	status := http.StatusOK
	if !body.Healthy {
		status = http.StatusServiceUnavailable
	}
	if len(failed) > 0 && s.healthDetailFor(r) {
		for _, f := range failed {
			(*f.results)[f.i].Error = f.err.Error()
		}
	}
	writeJSON(w, status, body)
}

// healthDetailFor reports whether the caller of /health is shown why a
// probe failed: an administrator. A token that does not authenticate is
// no reason to answer otherwise than without one: the status is what a
// load balancer reads.
func (s *Server) healthDetailFor(r *http.Request) bool {
	if s.deps.Insecure {
		return true
	}
	token := r.Header.Get(AuthHeader)
	if token == "" || s.deps.Tokens == nil {
		return false
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	p, _, err := s.deps.Tokens.Authenticate(ctx, token)
	return err == nil && p.IsAdmin()
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, `{"status":500,"message":"encode response"}`, http.StatusInternalServerError)
		return
	}
	writeRawJSON(w, status, b)
	// A polled task's answer holds its resolved input: written, the
	// response's copy of it is not kept.
	clear(b)
}

// writeRawJSON answers with b, which must be JSON. The explicit
// Content-Length keeps the body from being chunked (the SDKs cannot parse
// an empty chunked JSON body).
func writeRawJSON(w http.ResponseWriter, status int, b []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// writeRawArray answers with a JSON array of already encoded elements.
func writeRawArray(w http.ResponseWriter, elems []json.RawMessage) {
	n := 2 + len(elems)
	for _, e := range elems {
		n += len(e)
	}
	b := make([]byte, 0, n)
	b = append(b, '[')
	for i, e := range elems {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, e...)
	}
	writeRawJSON(w, http.StatusOK, append(b, ']'))
}

// metricsHandler serves what g gathers in Prometheus's formats. A
// gathering that fails is answered by fail (a generic 500, the error
// logged), not as promhttp answers it, with the error's text: that names
// internals (a file a collector read, a collector's defect) to whoever
// may scrape, and /metrics asks for no token.
func metricsHandler(g prometheus.Gatherer, fail func(http.ResponseWriter, *http.Request, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mfs, err := g.Gather()
		if err != nil {
			fail(w, r, fmt.Errorf("gather metrics: %w", err))
			return
		}
		gathered := prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) { return mfs, nil })
		promhttp.HandlerFor(gathered, promhttp.HandlerOpts{}).ServeHTTP(w, r)
	})
}

// Starting answers every request while a server starts (its read models
// replay the log): 503, retryable, and in Conductor's health shape on
// /health, so that a probe tells a starting server from a dead one. GET
// /metrics answers from metrics (when not nil) as it will once started: a
// rebuild of the read models takes minutes, and its progress is theirs. A
// scrape that fails is logged to logger (nil: not logged).
func Starting(metrics prometheus.Gatherer, logger *slog.Logger) http.Handler {
	const why = "starting: the read models are catching up with the log"
	health, _ := json.Marshal(struct {
		HealthResults           []healthResult `json:"healthResults"`
		SuppressedHealthResults []healthResult `json:"suppressedHealthResults"`
		Healthy                 bool           `json:"healthy"`
	}{HealthResults: []healthResult{{Name: "start", Error: why}}, SuppressedHealthResults: []healthResult{}})
	other, _ := json.Marshal(errorBody{ErrorResponse: conductor.ErrorResponse{Status: http.StatusServiceUnavailable, Message: why,
		Instance: "flowvault", Retryable: true}})
	var scrape http.Handler
	if metrics != nil {
		if logger == nil {
			logger = slog.New(slog.DiscardHandler)
		}
		// A failed scrape is answered as a started server answers it.
		scrape = metricsHandler(metrics, (&Server{deps: Deps{Logger: logger}}).writePublicError)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if scrape != nil && r.Method == http.MethodGet && r.URL.Path == "/metrics" {
			scrape.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Retry-After", "1")
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		if r.URL.Path == "/health" {
			writeRawJSON(w, http.StatusServiceUnavailable, health)
			return
		}
		writeRawJSON(w, http.StatusServiceUnavailable, other)
	})
}
