package audit

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/internal/logkey"
	"github.com/flowvault/flowvault/internal/ratelimit"
	"github.com/flowvault/flowvault/schemas"
)

// Appender is the part of the event log a Recorder writes with.
type Appender interface {
	Append(ctx context.Context, subject string, events []schemas.Envelope, expected uint64, opts ...eventlog.AppendOption) (uint64, error)
}

var _ Appender = (*eventlog.Log)(nil)

// RefusalLimits bound how many refusals (401s and 403s) are recorded: a
// token bucket per client address and one for all clients together.
// Refusals over the limits are counted, not recorded.
type RefusalLimits struct {
	PerAddr   rate.Limit
	AddrBurst int
	All       rate.Limit
	AllBurst  int
}

// DefaultRefusalLimits record every refusal of a client that retries
// now and then, and a few per second of a flood.
var DefaultRefusalLimits = RefusalLimits{PerAddr: 1, AddrBurst: 20, All: 20, AllBurst: 200}

// RecorderConfig configures a Recorder. The zero value logs nowhere,
// registers no metrics and uses DefaultRefusalLimits.
type RecorderConfig struct {
	Logger  *slog.Logger
	Metrics prometheus.Registerer
	Limits  RefusalLimits
	// Queue bounds the refusals waiting to be appended (default 1024);
	// refusals that find it full are counted as dropped.
	Queue int
	// FlushEvery is how often a count of dropped refusals is appended when
	// no refusal is recorded to carry it (default 30s).
	FlushEvery time.Duration
	// Now replaces the clock (tests).
	Now func() time.Time
}

// Recorder appends audit facts to FV_AUDIT. Reads are recorded before
// they are answered (Record, fail closed); refusals are recorded in the
// background, rate-limited so that a client cannot flood the log, with a
// count of what was left out (Refused). It is safe for concurrent use.
type Recorder struct {
	log     Appender
	cfg     RecorderConfig
	logger  *slog.Logger
	addrs   *ratelimit.Keyed
	all     *rate.Limiter
	queue   chan refusal
	dropped atomic.Uint64
	// droppedTotal counts refusals not recorded (Prometheus).
	droppedTotal prometheus.Counter
}

type refusal struct {
	principal string
	ev        schemas.Event
	at        time.Time // of the request: the record is appended later
}

// NewRecorder returns a Recorder appending to log. Run it to record
// refusals.
func NewRecorder(log Appender, cfg RecorderConfig) *Recorder {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Limits == (RefusalLimits{}) {
		cfg.Limits = DefaultRefusalLimits
	}
	if cfg.Queue <= 0 {
		cfg.Queue = 1024
	}
	if cfg.FlushEvery <= 0 {
		cfg.FlushEvery = 30 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	r := &Recorder{log: log, cfg: cfg, logger: cfg.Logger.With(logkey.Component, "audit"),
		addrs: ratelimit.New(cfg.Limits.PerAddr, cfg.Limits.AddrBurst),
		all:   rate.NewLimiter(cfg.Limits.All, cfg.Limits.AllBurst),
		queue: make(chan refusal, cfg.Queue),
		droppedTotal: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "flowvault", Subsystem: "audit", Name: "refusals_dropped_total",
			Help: "Refused requests (401, 403) not recorded in the audit log because of its rate limits.",
		}),
	}
	if cfg.Metrics != nil {
		cfg.Metrics.MustRegister(r.droppedTotal)
	}
	return r
}

// Record appends the audit fact ev as principal and returns once it is
// stored. A read is answered only when Record returned nil: an error
// (wrapping fault.ErrUnavailable) means the read must be refused.
func (r *Recorder) Record(ctx context.Context, principal string, ev schemas.Event) error {
	if err := r.append(ctx, principal, ev, r.cfg.Now()); err != nil {
		return fmt.Errorf("record audit fact: %v: %w", err, fault.ErrUnavailable)
	}
	return nil
}

// Refused records a refused request (schemas.AuthFailed or
// AccessDenied) from client address addr in the background, unless addr
// or all clients together are over their limits or the queue is full:
// then it is only counted. A refusal inside a workflow (an UPDATE_SECRET's)
// has no client: addr is then a key that names the principal refused, and
// no address can equal. The count is appended (RefusalsDropped) ahead
// of the next refusal recorded, every FlushEvery, and when Run ends.
func (r *Recorder) Refused(addr, principal string, ev schemas.Event) {
	now := r.cfg.Now()
	if r.addrs.Reserve(addr, now) > 0 || !r.all.AllowN(now, 1) {
		r.drop()
		return
	}
	select {
	case r.queue <- refusal{principal: principal, ev: ev, at: now}:
	default:
		r.drop()
	}
}

// MaxText bounds the text a refusal's record keeps that its requester
// controls (a path, a secret's name from a workflow's input, a reason that
// quotes a token's header).
const MaxText = 256

// Bounded is s cut to MaxText bytes, at a character's boundary.
func Bounded(s string) string {
	if len(s) <= MaxText {
		return s
	}
	cut := MaxText
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

func (r *Recorder) drop() {
	r.dropped.Add(1)
	r.droppedTotal.Inc()
}

// Run appends queued refusals until ctx is done, then those still queued
// and the count of dropped ones, and returns.
func (r *Recorder) Run(ctx context.Context) {
	tick := time.NewTicker(r.cfg.FlushEvery)
	defer tick.Stop()
	for {
		select {
		case f := <-r.queue:
			r.appendRefusal(ctx, f)
		case <-tick.C:
			r.flushDropped(ctx)
		case <-ctx.Done():
			r.drain()
			return
		}
	}
}

// drain appends what is queued when Run is told to stop, within a
// bounded time: the log is still open until Run returns.
func (r *Recorder) drain() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for {
		select {
		case f := <-r.queue:
			r.appendRefusal(ctx, f)
		default:
			r.flushDropped(ctx)
			return
		}
	}
}

func (r *Recorder) appendRefusal(ctx context.Context, f refusal) {
	r.flushDropped(ctx)
	if err := r.append(ctx, f.principal, f.ev, f.at); err != nil {
		r.logger.Warn("refusal not recorded in the audit log", logkey.Event, f.ev.EventType(), logkey.Err, err)
		r.drop()
	}
}

// flushDropped appends the count of refusals dropped since the last
// count, if any.
func (r *Recorder) flushDropped(ctx context.Context) {
	n := r.dropped.Swap(0)
	if n == 0 {
		return
	}
	now := r.cfg.Now()
	if err := r.append(ctx, "", &schemas.RefusalsDropped{Count: n, Time: now.UnixMilli()}, now); err != nil {
		r.dropped.Add(n) // counted again with the next flush
		r.logger.Warn("count of dropped refusals not recorded", logkey.Count, n, logkey.Err, err)
	}
}

func (r *Recorder) append(ctx context.Context, principal string, ev schemas.Event, at time.Time) error {
	subject := subjectOf(ev)
	if subject == "" {
		return fmt.Errorf("%s is not an audit fact", ev.EventType())
	}
	env, err := schemas.Default.Encode(ev)
	if err != nil {
		return err
	}
	env.ID, env.Time, env.Principal = rand.Text(), at.UnixNano(), principal
	_, err = r.log.Append(ctx, subject, []schemas.Envelope{env}, eventlog.ExpectAny)
	return err
}
