package executor

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/internal/logkey"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// Definitions looks up registered definitions.
type Definitions interface {
	// LookupWorkflowDef fails with fault.ErrNotFound for a name or version
	// not registered: a start of an inline definition looks its name up.
	LookupWorkflowDef(ctx context.Context, name string, version *int) (*conductor.WorkflowDef, error)
	LookupTaskDef(ctx context.Context, name string) (*conductor.TaskDef, bool, error)
	// CheckWorkflowDef validates an inline definition as registration
	// would validate a stored one.
	CheckWorkflowDef(def *conductor.WorkflowDef) error
	// WorkflowOwner is the owner of workflow name's registration, failing
	// with fault.ErrNotFound while it is registered nowhere.
	WorkflowOwner(ctx context.Context, name string) (string, error)
}

// Snapshots reads a workflow's state as a read model folded it: the same
// events through the same Apply, up to the sequence it carries.
type Snapshots interface {
	Workflow(ctx context.Context, id string) (*engine.Workflow, error)
}

// Config tunes an Executor.
type Config struct {
	// Shards is the number of workflows decided concurrently.
	Shards int
	// CacheSize bounds the workflow states kept in memory per shard: the
	// running workflows, and the ended ones until their compaction.
	CacheSize int
	// MaxAttempts bounds decide-append rounds lost to concurrent writers.
	MaxAttempts int
	// TimerInterval is how often the timer loop looks for due deadlines.
	TimerInterval time.Duration
	// DispatchAge is how long the dispatch stream keeps an unclaimed
	// message (eventlog.DispatchMaxAge); every RedispatchInterval the
	// executor announces again the tasks whose message expired since.
	DispatchAge        time.Duration
	RedispatchInterval time.Duration
	// EffectConcurrency bounds effects and system tasks run at once, and,
	// apart from them, worker requests (takes and results over NATS).
	EffectConcurrency int
	// StaleTake is how long a take request may wait for a free slot and
	// still be made. A worker gives up on its take after a while (the Go
	// SDK after 10 s); a take made after that records an owner that never
	// got the task, which then waits for its response timeout. Older ones
	// are answered "unavailable", untaken.
	StaleTake time.Duration
	// OfferTimeout bounds the wait for a NATS worker to accept a task
	// offered to its poll: one that went away does not answer, and the
	// task is handed out again after it.
	OfferTimeout time.Duration
	// QueueIdle is how long a queue's consumer on the dispatch stream may
	// sit idle (nothing queued or awaiting an acknowledgement, no pull
	// waiting, nothing delivered) before the engine deletes it; the next
	// dispatch makes it again (see sweep.go).
	QueueIdle time.Duration
	// MaxRunningWorkflows bounds the workflows one principal (their
	// creator) has running, RUNNING or PAUSED: a start, restart, retry or
	// rerun past it is refused with fault.ErrRateLimited. 0: no bound. It
	// needs a Schedule that is a RunningCounter.
	MaxRunningWorkflows int
	// KeyCatchUpWait bounds how long a check of an idempotency key waits
	// for the read model to catch up with the log (see SetCatchUp), the
	// request's context bounding it too: past it the check is refused
	// with fault.ErrUnavailable rather than decided on what may be stale
	// (a read model rebuilding). Default 5 s.
	KeyCatchUpWait time.Duration
	// EngineID names the engine across its restarts (node: the data dir's
	// engine.id). Its system tasks' takes name it and the process's boot
	// (see systemHolder); an engine asks its earlier processes still
	// present whether they listen (presence.go), and takes back at once
	// the tasks of those that do not. Empty: a random one, a new engine
	// at each start.
	EngineID string
	// PresenceTTL is how long a process's presence outlives its last
	// heartbeat (DefaultPresenceTTL); engines on one log are to agree on
	// it: the presence bucket keeps the TTL of the engine that made it,
	// which an engine of another heartbeats within (warnPresenceTTL), as
	// it changes (followTTL).
	PresenceTTL time.Duration
	// Snapshots, when set, gives a state to start from on a cache miss
	// instead of folding the workflow's whole subject.
	Snapshots Snapshots
	Logger    *slog.Logger
	Metrics   prometheus.Registerer
	// Now is the clock (tests replace it).
	Now func() time.Time
}

func (c *Config) setDefaults() {
	if c.Shards <= 0 {
		c.Shards = 1024
	}
	if c.CacheSize <= 0 {
		c.CacheSize = 32
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 20
	}
	if c.TimerInterval <= 0 {
		c.TimerInterval = 100 * time.Millisecond
	}
	if c.DispatchAge <= 0 {
		c.DispatchAge = eventlog.DispatchMaxAge
	}
	if c.RedispatchInterval <= 0 {
		c.RedispatchInterval = 10 * time.Minute
	}
	if c.EffectConcurrency <= 0 {
		c.EffectConcurrency = 256
	}
	if c.StaleTake <= 0 {
		c.StaleTake = 5 * time.Second
	}
	if c.OfferTimeout <= 0 {
		c.OfferTimeout = 10 * time.Second
	}
	if c.QueueIdle <= 0 {
		c.QueueIdle = 5 * time.Minute
	}
	if c.PresenceTTL <= 0 {
		c.PresenceTTL = DefaultPresenceTTL
	}
	if c.EngineID == "" {
		c.EngineID = uuid.NewString()
	}
	if c.KeyCatchUpWait <= 0 {
		c.KeyCatchUpWait = 5 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Meta says who asked for a trigger and why.
type Meta struct {
	Principal string
	// RequestID identifies the request; retries of one append reuse it.
	RequestID string
	// FollowRelated has Outcome.Related follow what the decision sets off
	// in other workflows, for a caller that answers only once those are
	// readable too (an operator's lifecycle request).
	FollowRelated bool
	// NextPoll, with a worker's result, is its poll for its next task of
	// the result's task's queue (the executor fills in TaskType and
	// Domain), waiting from before the result is decided: Outcome.Next
	// (see AheadPoll).
	NextPoll *PollRequest
}

// Outcome is what Submit returns.
type Outcome struct {
	// State after the trigger (nil when the workflow does not exist).
	State *engine.Workflow
	// Seq is the sequence of the appended record, or of the state's last
	// record when nothing was appended. Wait for it before reading.
	Seq      uint64
	Appended bool
	Reply    any
	// HandOffInput is the prepared input of a taken task: for the taker's
	// eyes only, never stored.
	HandOffInput map[string]any
	// Related, with Meta.FollowRelated, follows the decision's effects on
	// other workflows; nil otherwise.
	Related *Related
	// Next is Meta.NextPoll's poll, nil when the result's task has no
	// queue: the caller ends it.
	Next *AheadPoll
}

// Executor is the command loop. Create with New, then Start.
type Executor struct {
	// lifeMu orders work begun from outside the executor's goroutines
	// (a reconnection's rebuild) before Stop's wait for it.
	lifeMu   sync.Mutex
	stopped  bool
	cfg      Config
	log      *eventlog.Log
	appender appender // the log, but for tests that lose an answer
	defs     Definitions
	metrics  *metrics
	shards   []*shard
	disp     *dispatcher
	system   map[string]SystemTask
	// boot names this process; holder is the WorkerID its system task
	// takes record; presence is its presence among the engines'.
	boot     string
	holder   string
	presence *presence
	// scanned, when set (tests), is called as a scan for the tasks of
	// processes no longer present ends, with how many it took back.
	scanned func(n int)
	// passed, when set (tests), is called as a presence pass ends, with
	// the processes it listed.
	passed func(present map[string]bool)
	sched  Schedule
	sem    chan struct{}
	// workerSem bounds the worker requests served at once: a pool apart
	// from effects, whose system tasks may hold a slot for minutes.
	workerSem chan struct{}
	// systemSem bounds the system tasks run at once, apart from the other
	// effects: three hundred slow HTTP calls must not hold up the
	// dispatch of every other workflow's tasks. callSem bounds those that
	// wait on other systems (callsOut), apart from the rest: nor must they
	// hold up every workflow's INLINE tasks, SWITCHes and loop conditions.
	systemSem chan struct{}
	callSem   chan struct{}
	handOff   HandOff
	conform   Conformance
	protector Protector
	mayStart  StartCheck
	mayRead   ReadCheck
	mayTake   TakeCheck
	maySend   SenderCheck
	pollOwner PollOwner
	// unrestricted tells the principals who may do anything (an admin).
	unrestricted Unrestricted
	catchUp      CatchUp
	polls        *poller
	lanes        *lanes
	limits       *limits
	outputs      *outputCache
	activity     *activity
	natsPolls    natsPolls
	handOuts     handOuts
	// commandsSubjects are those the commands stream captures, as last
	// read (see watchCommandsSubjects).
	commandsSubjects atomic.Pointer[[]string]
	// idle hands work to goroutines waiting for it (spawn).
	idle  chan func()
	match *matcher
	// queueDeleted, when set (tests), is called as a sweep deletes a
	// queue's consumer, before the engine forgets it.
	queueDeleted func(name string)

	wg     sync.WaitGroup
	ctx    context.Context
	cancel context.CancelFunc
	// effCtx is the context of the decisions' effects: Stop ends it only
	// once the shards have stopped and the effects they set off are done
	// (effects counts them), or after stopGrace.
	effCtx    context.Context
	effCancel context.CancelFunc
	effects   sync.WaitGroup
	shardsRun sync.WaitGroup
	// systemRuns counts the system tasks running; once draining (under
	// lifeMu), none begins, and Drain waits for those under way to report.
	systemRuns sync.WaitGroup
	draining   bool
	// holding counts, under lifeMu, the system takes of this process whose
	// task it may still hold: from before the take until the log has the
	// result, or refused the take. One whose outcome is unknown (an
	// error, a report that did not get through) stays counted: only a
	// process that holds nothing says so as it stops (withdrawPresence).
	holding int
	running runRegistry
	quota   *quota // nil: no quota

	// unreadable: the workflows warned of as stuck (stuckUnreadable).
	unreadable unreadable
}

// appender appends a decision's records.
type appender interface {
	Append(ctx context.Context, subject string, envs []schemas.Envelope, expected uint64, opts ...eventlog.AppendOption) (uint64, error)
}

// New returns an executor over log. Register system tasks before Start.
func New(log *eventlog.Log, defs Definitions, sched Schedule, cfg Config) *Executor {
	cfg.setDefaults()
	e := &Executor{cfg: cfg, log: log, appender: log, defs: defs, sched: sched, metrics: newMetrics(cfg.Metrics),
		system: map[string]SystemTask{}, sem: make(chan struct{}, cfg.EffectConcurrency),
		workerSem: make(chan struct{}, cfg.EffectConcurrency), systemSem: make(chan struct{}, cfg.EffectConcurrency),
		callSem: make(chan struct{}, cfg.EffectConcurrency)}
	e.boot = uuid.NewString()
	e.holder = systemHolder(cfg.EngineID, e.boot)
	e.lanes = newLanes()
	e.activity = newActivity()
	e.limits = newLimits(log)
	e.outputs = &outputCache{log: log, logger: e.cfg.Logger, counts: e.metrics.cache}
	e.disp = newDispatcher(log, cfg.Logger, e.lanes)
	e.polls = newPoller()
	e.match = newMatcher()
	if cfg.Metrics != nil {
		cfg.Metrics.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "flowvault", Subsystem: "engine", Name: "waiting_polls",
			Help: "Polls waiting at this engine for a task (NATS and HTTP long polls): the next task of their queues is taken for them as it is scheduled.",
		}, func() float64 { return float64(e.match.count()) }))
	}
	e.natsPolls.slots, e.natsPolls.perOwner = make(chan struct{}, maxNATSPolls), maxNATSPollsPerOwner
	e.idle = make(chan func())
	if counter, ok := sched.(RunningCounter); ok {
		e.quota = newQuota(cfg.MaxRunningWorkflows, counter)
	}
	e.ctx, e.cancel = context.WithCancel(context.Background())
	e.effCtx, e.effCancel = context.WithCancel(context.Background())
	return e
}

// RegisterSystemTask installs the implementation of a system task type.
func (e *Executor) RegisterSystemTask(typ string, t SystemTask) {
	e.system[typ] = t
	engine.RegisterSystemWorkerType(typ)
}

// Start runs the shards, the NATS handlers, the timer loop and recovery.
func (e *Executor) Start(ctx context.Context) error {
	e.shards = make([]*shard, e.cfg.Shards)
	for i := range e.shards {
		s := &shard{e: e, in: make(chan *job, 64), cache: newCache(e.cfg.CacheSize)}
		e.shards[i] = s
		e.wg.Add(1)
		e.shardsRun.Add(1)
		go func() {
			defer e.wg.Done()
			defer e.shardsRun.Done()
			s.run(e.ctx)
		}()
	}
	// Before any take.
	if err := e.announce(ctx); err != nil {
		e.Stop()
		return err
	}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		e.presenceLoop(e.ctx)
	}()
	// Before the consumers are read, so that no lane created meanwhile
	// goes unnoticed.
	if err := e.listenForLanes(); err != nil {
		e.Stop()
		return err
	}
	if err := e.listenForGoneQueues(); err != nil {
		e.Stop()
		return err
	}
	if err := e.listenForWithdrawals(); err != nil {
		e.Stop()
		return err
	}
	if err := e.listenForPolls(); err != nil {
		e.Stop()
		return err
	}
	if err := e.log.WhileForming(ctx, "queues not checked yet", e.disp.resetStaleQueues, logkey.Stream, eventlog.Dispatch.Name); err != nil {
		e.Stop()
		return err
	}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		e.sweepQueuesLoop(e.ctx)
	}()
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		e.sweepLinesLoop(e.ctx)
	}()
	e.log.OnReconnect(e.afterReconnect)
	if err := e.serveWorkers(ctx); err != nil {
		e.Stop()
		return err
	}
	if err := e.servePolls(); err != nil {
		e.Stop()
		return err
	}
	if err := e.consumeStartCommands(); err != nil {
		e.Stop()
		return err
	}
	if err := e.serveProducerStarts(ctx); err != nil {
		e.Stop()
		return err
	}
	if e.sched != nil {
		e.wg.Add(3)
		go func() {
			defer e.wg.Done()
			e.timerLoop(e.ctx)
		}()
		go func() {
			defer e.wg.Done()
			e.recover(e.ctx, engine.Reconcile{})
		}()
		go func() {
			defer e.wg.Done()
			e.redispatchLoop(e.ctx)
		}()
	}
	return nil
}

// afterReconnect rebuilds what a NATS server that restarted lost with
// FV_DISPATCH, which it keeps in memory: the queues' consumers, and the
// announcements of the tasks waiting for a worker, from the log, as a
// start's recovery does. After a reconnection to a server that kept them,
// the announcements sent again are duplicates the stream drops, or, past
// its duplicate window, ones whose takes find the task gone.
func (e *Executor) afterReconnect(ctx context.Context) {
	e.lifeMu.Lock()
	if e.stopped {
		e.lifeMu.Unlock()
		return
	}
	e.wg.Add(1)
	e.lifeMu.Unlock()
	defer e.wg.Done()
	e.disp.forget()
	e.polls.mu.Lock()
	clear(e.polls.consumers)
	e.polls.mu.Unlock()
	if err := e.disp.resetStaleQueues(ctx); err != nil {
		e.cfg.Logger.Warn("queues not reset after a reconnection", logkey.Err, err)
	}
	if e.presence != nil {
		e.presence.rescan.Store(true)
	}
	if e.sched != nil {
		e.recover(e.ctx, engine.Reconcile{})
	}
}

// Stop stops accepting work and waits for in-flight decisions and effects.
func (e *Executor) Stop() { e.StopWithin(context.Background()) }

// StopWithin is Stop within ctx, a shutdown's budget: the waits for the
// offers to settle (at most half of what is left of it) and for the
// effects of the decisions made end with it too. What they leave, a task
// offered to a worker that did not answer, an effect not performed, waits
// for its lease or for recovery, as after a crash; a node whose budget ran
// out would not close its stores.
func (e *Executor) StopWithin(ctx context.Context) {
	offers := e.cfg.OfferTimeout + handBackGrace
	if deadline, ok := ctx.Deadline(); ok {
		offers = min(offers, time.Until(deadline)/2)
	}
	e.lifeMu.Lock()
	e.stopped, e.draining = true, true
	e.lifeMu.Unlock()
	// The hand-outs to NATS workers end first, while decisions are still
	// made: the polls waiting answer now, and a task offered that its
	// worker does not accept (it stops too, or died) is handed back. Once
	// cancelled, the hand-back would be refused, and the task held for its
	// response timeout by a worker that never got it.
	e.StopPolling()
	if !doneWithin(ctx, offers, e.handOuts.stop()) {
		e.cfg.Logger.Warn("stopping with offers to workers not settled; their tasks wait for their leases")
	}
	e.cancel()
	// A decision appended is answered as done: what it set off (a task's
	// announcement, above all) is performed before the engine goes.
	// Recovery would perform it at the next start of this engine, but
	// the others recover nothing, and a task appended SCHEDULED and never
	// announced waits for the periodic pass (DispatchAge) or a requeue.
	e.shardsRun.Wait()
	effectsDone := make(chan struct{})
	go func() {
		e.effects.Wait()
		close(effectsDone)
	}()
	if !doneWithin(ctx, stopGrace, effectsDone) {
		e.cfg.Logger.Warn("stopping with effects of decisions not performed; recovery performs them at the next start")
	}
	e.effCancel()
	e.disp.stop()
	e.wg.Wait()
	e.withdrawPresence()
}

// doneWithin waits for done, at most d and until ctx ends, and reports
// whether it came.
func doneWithin(ctx context.Context, d time.Duration, done <-chan struct{}) bool {
	select {
	case <-done: // already, whatever ctx
		return true
	default:
	}
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	select {
	case <-done:
		return true
	case <-ctx.Done():
		return false
	}
}

// handBackGrace is what Stop allows, beyond an offer's timeout, for the
// hand-back of a task offered and not accepted.
const handBackGrace = 5 * time.Second

// stopGrace bounds how long Stop waits for the effects of the decisions
// made to be performed.
const stopGrace = 10 * time.Second

// Drain begins no new system task and waits, until ctx is done, for those
// under way (an HTTP call) to end and report, before a Stop: a graceful
// restart then leaves no task to wait out its lease and run again. A task
// whose system task does not begin waits, scheduled, for recovery or
// another engine.
func (e *Executor) Drain(ctx context.Context) {
	e.lifeMu.Lock()
	e.draining = true
	e.lifeMu.Unlock()
	drained := make(chan struct{})
	go func() {
		e.systemRuns.Wait()
		close(drained)
	}()
	select {
	case <-drained:
	case <-ctx.Done():
	}
}

// Submit runs trigger against workflow wfID and returns once the decision
// is durably appended (or found to change nothing).
func (e *Executor) Submit(ctx context.Context, wfID string, trig engine.Trigger, meta Meta) (Outcome, error) {
	if meta.RequestID == "" {
		meta.RequestID = uuid.NewString()
	}
	var err error
	switch t := trig.(type) {
	case engine.Restart:
		if t.Def != nil {
			t.Author = e.authorOf(ctx, t.Def)
		}
		t.Ancestors, err = e.reopening(ctx, wfID)
		trig = t
	case engine.Retry:
		t.Ancestors, err = e.reopening(ctx, wfID)
		trig = t
	case engine.Rerun:
		t.Ancestors, err = e.reopening(ctx, wfID)
		trig = t
	case engine.Upgrade:
		if t.Def != nil {
			t.Author = e.authorOf(ctx, t.Def)
			trig = t
		}
	}
	if err != nil {
		return Outcome{}, err
	}
	j := &job{ctx: ctx, wfID: wfID, trig: trig, meta: meta, done: make(chan jobResult, 1), related: relatedFrom(ctx)}
	if meta.FollowRelated && j.related == nil {
		j.related = &Related{}
	}
	s := e.shardFor(wfID)
	select {
	case s.in <- j:
	case <-ctx.Done():
		return Outcome{}, ctx.Err()
	case <-e.ctx.Done():
		return Outcome{}, fmt.Errorf("executor stopped: %w", fault.ErrUnavailable)
	}
	select {
	case r := <-j.done:
		if meta.FollowRelated && r.err == nil {
			r.out.Related = j.related
		}
		return r.out, r.err
	case <-ctx.Done():
		if meta.NextPoll != nil {
			e.spawn(func() { j.endAbandoned(e.ctx) })
		}
		return Outcome{}, ctx.Err()
	case <-e.ctx.Done():
		// Its shard may have stopped before it got to the job. Whether a
		// decision it was making landed is for the log to tell.
		return Outcome{}, fmt.Errorf("executor stopped: %w", fault.ErrUnavailable)
	}
}

// reopening readies a restart, retry or rerun of workflow wfID before a
// shard decides it. It returns wfID's ancestors, its parent first, which
// the decision is made with (engine.Retry.Ancestors): the workflow may run
// again in a parent, or a parent's parent, that went on past it, which the
// decision walks up to. The line ends at a workflow without a parent (or
// whose parent is gone). For a workflow with an idempotency key it waits
// until the read model the key's check reads has applied the log
// (keysCaughtUp). Both are done here, not in the decision: the shard
// deciding for wfID may be an ancestor's, which cannot answer while it
// decides, and a wait there would hold up every workflow the shard
// decides.
func (e *Executor) reopening(ctx context.Context, wfID string) ([]*engine.Workflow, error) {
	w, err := e.State(ctx, wfID)
	if err != nil {
		return nil, err
	}
	if w != nil && w.IdempotencyKey != "" {
		if err := e.keysCaughtUp(ctx); err != nil {
			return nil, fmt.Errorf("workflow %s: %w", wfID, err)
		}
	}
	var line []*engine.Workflow
	// Bounded as the chain of workflows that start one another is.
	for w != nil && w.ParentWorkflowID != "" && len(line) <= engine.MaxDepth {
		parent, err := e.State(ctx, w.ParentWorkflowID)
		if err != nil {
			return nil, fmt.Errorf("workflow %s: read its parent %s: %w", w.ID, w.ParentWorkflowID, err)
		}
		if parent != nil {
			line = append(line, parent)
		}
		w = parent
	}
	return line, nil
}

// endAbandoned ends the poll ahead of a job whose caller went away: a task
// taken for it goes back.
func (j *job) endAbandoned(stop context.Context) {
	select {
	case r := <-j.done:
		if r.out.Next != nil {
			_, _, _ = r.out.Next.End(j.ctx, false)
		}
	case <-stop.Done():
	}
}

// State returns the workflow's current state as this engine knows it,
// caught up with the log; nil if it does not exist.
func (e *Executor) State(ctx context.Context, wfID string) (*engine.Workflow, error) {
	out, err := e.Submit(ctx, wfID, nil, Meta{})
	return out.State, err
}

func (e *Executor) shardFor(wfID string) *shard {
	h := fnv.New32a()
	h.Write([]byte(wfID))
	return e.shards[h.Sum32()%uint32(len(e.shards))]
}

type job struct {
	ctx  context.Context
	wfID string
	trig engine.Trigger // nil: just return the state
	meta Meta
	done chan jobResult
	// related, when set, follows the decision's effects on other
	// workflows: the caller's (Meta.FollowRelated), or that of the effect
	// whose decision this is.
	related *Related
	// ahead is Meta.NextPoll's poll, once registered (Outcome.Next).
	ahead *AheadPoll
}

// followed is what follows the effects of the job's decision: its related,
// except for a workflow that a followed effect starts. That start is the
// consequence (the new workflow is readable once the caller answers);
// what the new workflow goes on to do is its own progress, which may be
// long: a chain of sub-workflows that end as they start.
func (j *job) followed() *Related {
	if _, start := j.trig.(engine.Start); start && !j.meta.FollowRelated {
		return nil
	}
	return j.related
}

type jobResult struct {
	out Outcome
	err error
}

// shard decides for the workflows that hash to it, one at a time.
type shard struct {
	e     *Executor
	in    chan *job
	cache *cache
}

func (s *shard) run(ctx context.Context) {
	for {
		select {
		case j := <-s.in:
			out, err := s.process(j)
			if ahead := j.ahead; ahead != nil {
				if err != nil {
					// Not here: End waits for a take under way for the
					// poll, which a feeder may be making in a workflow
					// of this shard.
					s.e.spawn(func() { _, _, _ = ahead.End(j.ctx, false) })
				} else {
					out.Next = j.ahead
				}
			}
			j.done <- jobResult{out, err}
		case <-ctx.Done():
			return
		}
	}
}

func (s *shard) process(j *job) (Outcome, error) {
	e := s.e
	ctx := j.ctx
	if ctx.Err() != nil {
		return Outcome{}, ctx.Err()
	}
	var w *engine.Workflow
	var err error
	// cached is true while w came from the cache without a read of the log:
	// another engine may have appended since.
	cached := false
	if _, isStart := j.trig.(engine.Start); !isStart {
		// A start needs no read: the id is new, and if it is not, the
		// append's expectation (an empty subject) fails and we catch up.
		if cw, ok := s.cache.get(j.wfID); ok && !needsFresh(j.trig) {
			w, cached = cw, true
		} else if w, err = s.load(ctx, j.wfID); err != nil {
			return Outcome{}, err
		}
	}
	if j.trig == nil {
		return Outcome{State: w, Seq: seqOf(w)}, nil
	}
	if j.meta.NextPoll != nil {
		j.ahead = e.pollAheadOf(ctx, w, j.trig, *j.meta.NextPoll)
	}
	name := engine.TriggerName(j.trig)
	start := time.Now()
	trig := j.trig
	var handOffInput map[string]any
	defer func() { e.metrics.decideDur.WithLabelValues(name).Observe(time.Since(start).Seconds()) }()
	// matches are the takes for waiting polls of the current attempt,
	// until they are stored and handed over; the waiters of an attempt that
	// stores nothing wait again.
	var matches []matched
	defer func() { e.unmatch(matches) }()
	fellBack := false // recorded in place of what the log refused
	// A take is admitted once, not per attempt (an attempt that loses a
	// conflict has taken its place in the window all the same), by the
	// first attempt whose state shows its task waiting: a cached state
	// may not show it scheduled yet.
	admitted := false
	// release gives back the place the quota reserved for a workflow this
	// decision makes run, once (nil: none reserved).
	var release func(seq uint64)
	defer func() {
		if release != nil {
			release(0)
		}
	}()
	// replaced: the rate limit of the workflow's definition gave it its
	// place back, for a reset that makes it run again.
	replaced := false
	// keyChecked: no other workflow ran with the idempotency key of the
	// workflow this decision makes run again.
	keyChecked := false
	for attempt := 1; ; attempt++ {
		e.unmatch(matches)
		matches = nil
		now := e.cfg.Now()
		if take, ok := j.trig.(engine.Take); ok && !admitted {
			if admitted, err = e.admitTake(ctx, w, take, now); err != nil {
				return Outcome{}, err
			}
		}
		if res, ok := j.trig.(engine.Result); ok && e.conform != nil {
			// Checked afresh on every attempt: the state may have moved.
			if trig, err = e.checkResult(ctx, w, res); err != nil {
				return Outcome{}, err
			}
		}
		if take, ok := j.trig.(engine.Take); ok && e.handOff != nil {
			// Prepared afresh from the trigger as submitted on every
			// attempt, and recorded only by the attempt whose record is
			// stored: an attempt that lost a conflict leaves no audit
			// record of what it resolved, so each resolution of the
			// hand-off is recorded once.
			var err error
			if trig, handOffInput, err = e.prepareHandOff(ctx, w, take); err != nil {
				return Outcome{}, err
			}
		}
		if found, ok := j.trig.(engine.ValuesFound); ok && w != nil {
			if finder, ok := e.protector.(ValuesFinder); ok {
				if trig, err = finder.FindValues(ctx, w, found); err != nil {
					return Outcome{}, fmt.Errorf("workflow %s: look for values found secret by %s: %w", j.wfID, found.From, err)
				}
			}
		}
		dec, err := engine.Decide(e.decisionInput(ctx, w, trig, now))
		if err != nil && cached {
			// A rejection must not rest on a stale state: a worker's take
			// or result for a task another engine scheduled a moment ago
			// would otherwise be refused as unknown.
			if w, err = s.refresh(ctx, j.wfID, w); err != nil {
				return Outcome{}, err
			}
			cached = false
			continue
		}
		if err != nil {
			if df := (*engine.DeciderFault)(nil); errors.As(err, &df) {
				e.cfg.Logger.Error("decision failed on a defect of the decider", logkey.WorkflowID, j.wfID,
					logkey.Trigger, name, logkey.Err, df.Panic, logkey.Stack, string(df.Stack))
			}
			if errors.Is(err, engine.ErrUnreadableDef) {
				e.stuckUnreadable(j.wfID, name)
			}
			e.metrics.decisions.WithLabelValues(name, "rejected").Inc()
			return Outcome{State: w, Seq: seqOf(w)}, err
		}
		if len(dec.Events) == 0 && cached {
			// Nothing to do must not rest on a stale state either: a pause
			// of a workflow this cache holds PAUSED, which another engine
			// has resumed since, would answer done and change nothing.
			if w, err = s.refresh(ctx, j.wfID, w); err != nil {
				return Outcome{}, err
			}
			cached = false
			continue
		}
		if len(dec.Events) == 0 {
			e.metrics.decisions.WithLabelValues(name, "noop").Inc()
			e.perform(dec.Effects, j.followed())
			return Outcome{State: w, Seq: seqOf(w), Reply: dec.Reply}, nil
		}
		if !keyChecked && reopens(trig) && w != nil && w.IdempotencyKey != "" && startsRunning(trig, w, dec.State) {
			// A restart, retry or rerun starts the workflow again, which
			// its key refuses while another workflow with it runs, as it
			// refuses a FAIL_ON_RUNNING start: two would run with it. The
			// read model it reads has caught up with the log (reopening).
			runner, status, err := e.runningWithKey(ctx, w.Name, w.IdempotencyKey, w.ID)
			if err != nil {
				return Outcome{}, err
			}
			if runner != "" {
				e.metrics.decisions.WithLabelValues(name, "rejected").Inc()
				return Outcome{State: w, Seq: seqOf(w)}, keyHeld(fault.Conflict("a workflow with idempotency key %q is %s", w.IdempotencyKey, status))
			}
			keyChecked = true
		}
		if release == nil && e.quota != nil && startsRunning(trig, w, dec.State) {
			var refused error
			release, refused = e.quota.admit(ctx, dec.State.CreatedBy)
			if errors.Is(refused, fault.ErrRateLimited) && w == nil {
				// A start is decided without reading its subject: the
				// workflow may exist, and a repeated start is answered as
				// one, over the quota or not.
				existing, err := s.load(ctx, j.wfID)
				if err != nil {
					return Outcome{}, err
				}
				if existing != nil {
					w, cached = existing, false
					continue
				}
			}
			if refused != nil {
				if errors.Is(refused, fault.ErrRateLimited) {
					e.metrics.quotaRefusals.Inc()
				}
				e.metrics.decisions.WithLabelValues(name, "rejected").Inc()
				return Outcome{State: w, Seq: seqOf(w)}, refused
			}
		}
		if !replaced && w != nil && w.RateLimited && startsRunning(trig, w, dec.State) {
			// Once: the place is the workflow's, whichever attempt appends.
			if err := e.placeReopen(ctx, w); err != nil {
				e.metrics.decisions.WithLabelValues(name, "rejected").Inc()
				return Outcome{State: w, Seq: seqOf(w)}, err
			}
			replaced = true
		}
		if e.match.waiting() && e.protector == nil {
			dec, matches = e.takeForWaiters(ctx, dec, now)
		}
		if e.protector != nil {
			if dec, err = e.protect(ctx, w, dec); err != nil {
				if instead := RecordInstead(j.trig, err, fellBack); instead != nil && errors.Is(err, fault.ErrSecretInName) {
					// Refused again, a worker's result would come back
					// into the same refusal: what the trigger brought is
					// dropped, as for a record too large.
					e.cfg.Logger.Warn("decision would name a task with a secret value; recording a failure instead", logkey.WorkflowID, j.wfID,
						logkey.Trigger, name)
					j.trig = instead
					trig, fellBack = instead, true
					continue
				}
				return Outcome{}, err
			}
			if e.match.waiting() {
				dec, matches = e.takeProtected(ctx, dec, now)
			}
		}
		if err := e.uncacheAhead(ctx, dec.Effects); err != nil {
			e.metrics.decisions.WithLabelValues(name, "error").Inc()
			return Outcome{}, fmt.Errorf("workflow %s: %w", j.wfID, err)
		}
		expected := seqOf(w)
		envs, err := envelopes(dec.Events, j, expected, now, e.log.MaxRecordBytes())
		if err != nil && !errors.Is(err, eventlog.ErrTooLarge) {
			return Outcome{}, err
		}
		var (
			dup      bool
			seq      uint64
			recordID string
		)
		if err == nil {
			takenBy(envs, matches)
			recordID = envs[0].ID
			seq, err = e.appender.Append(ctx, subject(j.wfID), envs, expected, eventlog.ReportDuplicate(&dup))
		}
		if err != nil && ambiguous(err) && ctx.Err() == nil {
			// A timeout or a lost connection says nothing of whether the
			// record was stored. One that was is this request's answer:
			// told it failed, a worker would retry its take and find the
			// task gone, taken by itself, until the lease expired.
			if landed, ok := e.landed(ctx, j.wfID, expected, recordID); ok {
				seq, err, dup = landed, nil, true
			}
		}
		if errors.Is(err, eventlog.ErrConflict) && attempt < e.cfg.MaxAttempts {
			recs, rerr := e.log.ReadSubject(ctx, subject(j.wfID), expected)
			if rerr != nil {
				return Outcome{}, fmt.Errorf("load workflow %s: %w", j.wfID, rerr)
			}
			if ownRecord(recs, recordID) {
				// The log looks for the id behind a conflict itself, but
				// that look can fail: the record in the way is this one,
				// stored by a publish whose answer was lost. Deciding again
				// would find its own take done and answer "task gone".
				seq, err, dup = recs[0].Seq, nil, true
			} else {
				e.metrics.conflicts.Inc()
				if w, err = s.catchUp(j.wfID, w, recs); err != nil {
					return Outcome{}, err
				}
				cached = false
				continue
			}
		}
		if err != nil && unrecordable(err) {
			// The log refused the record before storing anything, and
			// will refuse it however often it is tried. Refused, a
			// worker's result or a timer's tick would come again into the
			// same refusal, and the workflow wait for ever: what the log
			// can hold is recorded instead, on the same state.
			if instead := RecordInstead(j.trig, err, fellBack); instead != nil {
				e.cfg.Logger.Warn("decision too large for the log; recording a failure instead", logkey.WorkflowID, j.wfID,
					logkey.Trigger, name, logkey.Err, err)
				j.trig = instead
				trig, fellBack = instead, true
				continue
			}
			e.metrics.decisions.WithLabelValues(name, "rejected").Inc()
			if errors.Is(err, eventlog.ErrTooDeep) {
				return Outcome{}, fmt.Errorf("workflow %s: %w: %v", j.wfID, fault.ErrInvalid, err)
			}
			return Outcome{}, fmt.Errorf("workflow %s: %w: %v", j.wfID, fault.ErrTooLarge, err)
		}
		if err != nil {
			e.metrics.decisions.WithLabelValues(name, "error").Inc()
			s.cache.drop(j.wfID) // the append may or may not have happened
			// If it happened, nobody performs its effects: a retried
			// trigger finds its work done (a result already recorded) and
			// implies none, and the task it scheduled would wait for a
			// dispatch until the next start's recovery.
			e.reconcile(j.wfID, nil)
			if ambiguous(err) {
				for _, m := range matches {
					e.putBack(j.wfID, expected, stampOf(envs), m.task.ID, m.task.PollCount)
				}
			}
			if _, ok := trig.(engine.Take); ok && ambiguous(err) {
				if taken, ok := dec.Reply.(*engine.Task); ok {
					// The taker hears it failed and tries again, but a
					// take stored after all (late, or after the taker gave
					// up) makes the task its own: gone to every take, its
					// own included, until the lease expires (a system
					// task's too: the engine's effect that runs it is told
					// it failed).
					e.putBack(j.wfID, expected, stampOf(envs), taken.ID, taken.PollCount)
					return Outcome{}, fmt.Errorf("workflow %s: take of task %s unconfirmed (put back in the queue if it was recorded): %w: %w",
						j.wfID, taken.ID, fault.ErrUnavailable, err)
				}
			}
			return Outcome{}, fmt.Errorf("workflow %s: %w", j.wfID, err)
		}
		if dup {
			// The record is another decision's on the same request (made
			// on an older state, by another engine or before a crash), or
			// this one's whose answer was lost: the log's, with its
			// effects, is what stands.
			e.metrics.decisions.WithLabelValues(name, "duplicate").Inc()
			out, err := e.deduplicated(ctx, s, j.wfID, dec.Reply, j.related, j.followed())
			if _, taken := out.Reply.(*engine.Task); taken {
				out.HandOffInput = handOffInput
			}
			if err == nil && len(matches) > 0 && e.storedMade(ctx, j.wfID, expected, stampOf(envs)) {
				// Else the takes stored are another engine's, for its own
				// waiting polls: these wait again.
				matches = e.handOverStored(matches, out.State)
			}
			return out, err
		}
		dec.State.Seq = seq
		if rw, ok := e.protector.(RecordWatcher); ok {
			rw.Recorded(j.wfID, seq)
		}
		if release != nil {
			release(seq)
			release = nil
		}
		s.cache.put(j.wfID, dec.State)
		if dec.State.RateLimited && leftLine(dec.State) && (w == nil || !leftLine(w)) {
			e.freePlaceLater(dec.State)
		}
		e.running.endInactive(dec.State)
		e.metrics.decisions.WithLabelValues(name, "appended").Inc()
		e.metrics.appended(dec.Events)
		if j.related != nil {
			j.related.note(seq)
		}
		e.handOver(matches, dec.State, seq)
		matches = nil
		e.perform(dec.Effects, j.followed())
		if engine.Pending(dec.State) {
			e.continuePending(j.wfID)
		}
		out := Outcome{State: dec.State, Seq: seq, Appended: true, Reply: dec.Reply}
		if _, taken := dec.Reply.(*engine.Task); taken {
			out.HandOffInput = handOffInput
		}
		return out, nil
	}
}

// continuePending submits, in the background, the Tick that goes on with
// a workflow its last decision left with work due at once (a DO_WHILE of
// decider-completed tasks that yielded, see engine.Pending). The timer
// scan would find it too, but only every TimerInterval: a loop of a few
// thousand items, a few hundred iterations a decision, would take seconds
// of mostly waiting. Each Tick that goes on appends, and so sets off the
// next while the loop is pending; one that finds nothing to do ends it.
// Not on the shard's goroutine: the Tick is decided on that shard.
func (e *Executor) continuePending(wfID string) {
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		e.onSlot(time.Minute, func(ctx context.Context) {
			if _, err := e.Submit(ctx, wfID, engine.Tick{}, Meta{}); err != nil && !expected(err) && ctx.Err() == nil {
				// The timer scan retries it: Pending is due at once.
				e.cfg.Logger.Warn("continuing a pending workflow failed", logkey.WorkflowID, wfID, logkey.Err, err)
			}
		})
	}()
}

// deduplicated answers a decision whose record was appended already, by
// an earlier decision on the same request: with the log's state, and the
// task it holds for a take's reply. The earlier decision's effects may not
// have been performed (its engine may have crashed): a reconcile performs
// what the state implies, followed by follow. The record is noted on rel.
func (e *Executor) deduplicated(ctx context.Context, s *shard, wfID string, reply any, rel, follow *Related) (Outcome, error) {
	s.cache.drop(wfID)
	w, err := s.load(ctx, wfID)
	if err != nil {
		return Outcome{}, err
	}
	s.cache.put(wfID, w)
	if t, ok := reply.(*engine.Task); ok {
		reply = nil
		if held := w.TaskByID(t.ID); held != nil {
			reply = held
		}
	}
	if rel != nil {
		rel.note(seqOf(w))
	}
	e.reconcile(wfID, follow)
	return Outcome{State: w, Seq: seqOf(w), Appended: true, Reply: reply}, nil
}

// needsFresh reports triggers that must see the log's latest state: reads,
// and the timer and recovery passes, whose "nothing to do" on a stale state
// would not be corrected by a failed append.
func needsFresh(t engine.Trigger) bool {
	switch t.(type) {
	case nil, engine.Tick, engine.Reconcile:
		return true
	}
	return false
}

// prepareHandOff runs the hand-off preparation for a take of a scheduled
// task and records its outcome on the trigger.
func (e *Executor) prepareHandOff(ctx context.Context, w *engine.Workflow, take engine.Take) (engine.Trigger, map[string]any, error) {
	if w == nil {
		return take, nil, nil
	}
	t := w.TaskByIDDeciding(take.TaskID)
	if t == nil || t.Status != conductor.TaskScheduled {
		return take, nil, nil // the decision says why not
	}
	input, resolved, err := e.handOff.Prepare(ctx, w, t)
	take.HandOff = &engine.HandOff{Resolved: resolved}
	if err == nil {
		err = e.checkTaskInput(ctx, w, t, input)
	}
	switch {
	case err == nil:
	case errors.Is(err, fault.ErrNotFound), errors.Is(err, fault.ErrForbidden), errors.Is(err, fault.ErrInvalid):
		take.HandOff.Error = err.Error()
		input = nil
	default:
		return nil, nil, fmt.Errorf("prepare task %s: %w: %v", t.ID, fault.ErrUnavailable, err)
	}
	return take, input, nil
}

// protect lets the protector rewrite the decision's events and refolds the
// state from the rewritten ones (unless the protector folded them): the
// cache must hold what the log holds.
func (e *Executor) protect(ctx context.Context, w *engine.Workflow, dec engine.Decision) (engine.Decision, error) {
	protected, err := e.protector.Protect(ctx, w, dec)
	switch {
	case err == nil:
	case fault.Refused(err):
		// A refusal is the caller's to read as the protector worded it
		// (the field, the rule): a prefix of ours would only name our
		// internals in the answer.
		return engine.Decision{}, err
	default:
		return engine.Decision{}, fmt.Errorf("protect events: %w", err)
	}
	events := protected.Events
	dec.Effects = protected.Effects
	if sameSlice(events, dec.Events) {
		return dec, nil
	}
	if protected.State != nil && protected.State != dec.State {
		dec.Events, dec.State = events, protected.State
		return dec, nil
	}
	var state *engine.Workflow
	if w != nil {
		state = w.Clone()
	}
	for _, ev := range events {
		if state, err = engine.Apply(state, ev); err != nil {
			return engine.Decision{}, fmt.Errorf("protect events: %w", err)
		}
	}
	dec.Events, dec.State = events, state
	return dec, nil
}

// sameSlice reports whether a and b are one slice, not equal copies.
func sameSlice(a, b []schemas.Event) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

func seqOf(w *engine.Workflow) uint64 {
	if w == nil {
		return 0
	}
	return w.Seq
}

func subject(wfID string) string { return "fv.wf." + eventlog.Token(wfID) }

// envelopes wraps the decision's events. The record's id (its dedup id)
// names the workflow, the expected sequence and the request, so a retried
// append is recognised and two different decisions never collide.
func envelopes(events []schemas.Event, j *job, expected uint64, now time.Time, limit int) ([]schemas.Envelope, error) {
	recordID := engine.DeriveID(j.wfID, strconv.FormatUint(expected, 10), j.meta.RequestID)
	envs := make([]schemas.Envelope, len(events))
	size := 0
	for i, ev := range events {
		env, err := schemas.Default.Encode(ev)
		if err != nil {
			return nil, fmt.Errorf("workflow %s: %w", j.wfID, err)
		}
		// Refused as soon as the events encoded so far are over the
		// log's limit: a fork whose hundreds of branches each copy a
		// large input would otherwise be encoded whole, gigabytes, to be
		// refused all the same.
		if size += len(env.Data); size > limit {
			return nil, fmt.Errorf("append %s: over %d bytes by its first %d events of %d: %w",
				subject(j.wfID), limit, i+1, len(events), eventlog.ErrTooLarge)
		}
		env.ID = schemas.EventID(recordID, i)
		env.Time, env.Principal = now.UnixNano(), j.meta.Principal
		env.CausationID, env.CorrelationID = j.meta.RequestID, j.wfID
		envs[i] = env
	}
	return envs, nil
}

// load returns the state caught up with the log: the cached state plus the
// records after it, or the fold of the whole subject.
func (s *shard) load(ctx context.Context, wfID string) (*engine.Workflow, error) {
	w, ok := s.cache.get(wfID)
	if !ok && s.e.cfg.Snapshots != nil {
		// Records of one workflow are scattered through the stream, and
		// reading them all means reading much of what lies between. A
		// snapshot, caught up below, is as good as the fold: the append
		// that follows expects the sequence it was caught up to.
		if snap, err := s.e.cfg.Snapshots.Workflow(ctx, wfID); err == nil {
			w = snap
		}
	}
	return s.refresh(ctx, wfID, w)
}

// refresh applies the records after w's sequence (all of them if w is nil).
func (s *shard) refresh(ctx context.Context, wfID string, w *engine.Workflow) (*engine.Workflow, error) {
	recs, err := s.e.log.ReadSubject(ctx, subject(wfID), seqOf(w))
	if err != nil {
		return nil, fmt.Errorf("load workflow %s: %w", wfID, err)
	}
	return s.catchUp(wfID, w, recs)
}

// catchUp applies recs, the records after w's sequence, to a copy of w.
func (s *shard) catchUp(wfID string, w *engine.Workflow, recs []eventlog.Record) (*engine.Workflow, error) {
	if len(recs) == 0 {
		return w, nil
	}
	if w != nil {
		w = w.Clone()
	}
	w, err := Fold(w, recs)
	if err != nil {
		s.cache.drop(wfID)
		return nil, fmt.Errorf("load workflow %s: %w", wfID, err)
	}
	s.cache.put(wfID, w)
	return w, nil
}

// Fold applies records to w (nil for a new workflow).
func Fold(w *engine.Workflow, recs []eventlog.Record) (*engine.Workflow, error) {
	for _, r := range recs {
		if r.Err != nil {
			return nil, r.Err
		}
		for _, env := range r.Events {
			ev, err := schemas.Default.Decode(env)
			if err != nil {
				return nil, fmt.Errorf("record %d: %w", r.Seq, err)
			}
			if w, err = engine.Apply(w, ev); err != nil {
				return nil, fmt.Errorf("record %d: %w", r.Seq, err)
			}
		}
		w.Seq = r.Seq
	}
	return w, nil
}

func (e *Executor) taskDefFunc(ctx context.Context) func(string) *conductor.TaskDef {
	return func(name string) *conductor.TaskDef {
		if e.defs == nil {
			return nil
		}
		td, ok, err := e.defs.LookupTaskDef(ctx, name)
		if err != nil {
			e.cfg.Logger.Warn("task definition lookup failed", logkey.TaskType, name, logkey.Err, err)
			return nil
		}
		if !ok {
			return nil
		}
		return td
	}
}

// unrecordable reports whether the log refused a record for what it
// holds, which no retry changes.
func unrecordable(err error) bool {
	return errors.Is(err, eventlog.ErrTooLarge) || errors.Is(err, eventlog.ErrTooDeep)
}

// RecordInstead is what the executor records when the log refused trig's
// record for what it holds, or the guard its decision for naming a task
// with a secret value (why), or nil to refuse trig (the guard's fuzz
// target replays it):
//   - for a task's result too large, the task failed for good, saying
//     why, without what the result carried (output, logs, reason), as
//     Conductor fails a task whose output is over its payload limit; one
//     nested too deep is refused as invalid, as Conductor's JSON parser
//     refuses it, and its sender may send it flatter; one that carries
//     variables (updateState) is refused too: failing the task without
//     them would apply half of it, and its sender may send less;
//   - for what moves the workflow on with data it holds already (a tick
//     that schedules a task whose input is built from a large output, a
//     child's end, a resume), or a result whose failure was refused as
//     well, the workflow failed, without output;
//   - for anything else, a caller's request with data of its own (a
//     start, restart, retry, rerun, skip, upgrade, jump, terminate,
//     removal, new variables, a log line), nothing: it is refused, and
//     the caller may send less.
func RecordInstead(trig engine.Trigger, why error, fellBack bool) engine.Trigger {
	refused := "the event log refused the workflow's next record: "
	if errors.Is(why, fault.ErrSecretInName) {
		refused = "the engine refused the workflow's next decision: "
	}
	fail := engine.Fail{Reason: refused + why.Error()}
	switch t := trig.(type) {
	case engine.Result:
		switch {
		case fellBack:
			return fail
		case errors.Is(why, eventlog.ErrTooDeep), len(t.Variables) > 0:
			return nil
		}
		r := t.Result
		t.Result = conductor.TaskResult{TaskID: r.TaskID, WorkflowInstanceID: r.WorkflowInstanceID, WorkerID: r.WorkerID,
			Status: conductor.TaskFailedWithTerminalError, ReasonForIncompletion: "the engine refused the result: " + why.Error()}
		return t
	case engine.Tick, engine.ChildFinished, engine.ChildReopened, engine.ChildExisting, engine.Resume, engine.Reconcile:
		return fail
	}
	return nil
}
