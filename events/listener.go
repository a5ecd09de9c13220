package events

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/engine/expr"
	"github.com/flowvault/flowvault/executor"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/internal/logkey"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/workers"
	"github.com/flowvault/flowvault/workers/system"
)

// Handlers lists the event handlers (*metadata.Store).
type Handlers interface {
	EventHandlers(ctx context.Context) ([]*conductor.EventHandler, error)
}

// Engine runs what actions ask (*executor.Executor).
type Engine interface {
	StartWorkflow(ctx context.Context, req conductor.StartWorkflowRequest, o executor.StartOptions) (string, uint64, error)
	Submit(ctx context.Context, wfID string, trig engine.Trigger, meta executor.Meta) (executor.Outcome, error)
	// Decided reports whether workflow wfID's log holds a decision of the
	// request requestID (executor.Meta's RequestID).
	Decided(ctx context.Context, wfID, requestID string) (bool, error)
}

// Authorizer decides whether each principal an action acts for (see
// actingAs) may do what it asks, when it runs: a grant revoked since the
// handler was saved counts.
type Authorizer interface {
	// MayStart is asked before a start_workflow action, of every
	// principal the action acts for, decided on one state of the
	// definition. It returns what it decided on, which the action's
	// start holds to (executor.StartCheck): the name deleted and
	// registered again by someone else meanwhile would run theirs, or an
	// inline definition as theirs.
	MayStart(ctx context.Context, principals []string, req conductor.StartWorkflowRequest) (executor.Pin, error)
	// MayExecute is asked before an action on a running workflow.
	MayExecute(ctx context.Context, principal string, wf *engine.Workflow) error
}

// TaskIndex finds the workflow of a task, for actions that name a task by
// id alone.
type TaskIndex interface {
	TaskWorkflow(ctx context.Context, taskID string) (string, error)
}

// Config is what a Listener needs.
type Config struct {
	Handlers Handlers
	// Conn receives the events: a connection in the account EVENT tasks
	// publish in, allowed to subscribe to the handlers' subjects.
	Conn   *nats.Conn
	Engine Engine
	Authz  Authorizer
	Tasks  TaskIndex
	// Budget bounds each condition's run (system.Budget defaults).
	Budget system.Budget
	Logger *slog.Logger
	// Metrics, when set, registers flowvault_event_handler_runs_total.
	Metrics prometheus.Registerer
	// MarkedOnly runs handlers on the messages EVENT tasks marked
	// (workers.EventHeader) alone: where only they publish events (the
	// embedded server's workers account), any other message on a
	// handler's subject is an answer a worker aimed there, naming the
	// subject as its request's reply, which would run the handler as its
	// principal. On an external server others may publish events.
	MarkedOnly bool
	// Seen, when set, runs each action of a handler once per event
	// message id, whichever engine receives the event and however often,
	// and has a copy of the event past ClaimLease finish an action whose
	// engine died running it (see handle). Without it, or for an event
	// without a message id, every delivery runs the actions.
	Seen *Seen
}

// Outcomes of a handler on one event (the runs metric's outcome label).
const (
	outcomeRan          = "ran"    // an action ran
	outcomeFailed       = "failed" // an action failed or was refused
	outcomeNotMet       = "condition_false"
	outcomeConditionErr = "condition_error"
	outcomeRefused      = "event_refused" // not JSON, or from an unknown workflow
	outcomeDuplicate    = "duplicate"     // the action ran, or runs elsewhere, on this event already (Config.Seen)
)

// QueueGroup is the queue group in which every engine's listener
// subscribes to subject, so that each event is handled once. One group
// per subject: a message goes to one member of each group among all the
// subscriptions it matches, and a subject can match several patterns
// (ops.commands and ops.*), each with handlers of its own. The names
// share a prefix of tokens that subscribers' credentials may not join
// (workers.EventHandlerQueues).
func QueueGroup(subject string) string {
	sum := sha256.Sum256([]byte(subject))
	return workers.EventHandlerQueues + "." + hex.EncodeToString(sum[:8])
}

const (
	// actionTimeout bounds the actions of one event.
	actionTimeout = 30 * time.Second
	// staleStarts bounds the checks of a start_workflow whose inline
	// definition's name keeps moving between its check and its start.
	staleStarts = 3
	// flushTimeout bounds the round trip that makes subscriptions take.
	flushTimeout = 10 * time.Second
)

// Listener subscribes to the subjects of the active event handlers and
// runs their actions. An event reaches one engine's listener (a queue
// group): at most once, as core NATS delivers; an event published again
// with the same message id (an engine published again after a crash)
// runs no action again (Config.Seen), but one that an engine which died
// left unfinished, and its start starts no second workflow either way.
type Listener struct {
	cfg    Config
	ctx    context.Context
	logger *slog.Logger
	kick   chan struct{}
	runs   *prometheus.CounterVec

	// syncing orders Syncs (a semaphore of one, which a Sync whose
	// context ends stops waiting for): each reads the handlers after the
	// one before it applied what it read, so that a Sync of older
	// handlers never lands after one of newer.
	syncing chan struct{}
	// mu guards what receive reads; it is not held through a flush, so
	// that events keep running while one waits.
	mu       sync.Mutex
	subs     map[string]*nats.Subscription
	handlers map[string][]*conductor.EventHandler // active ones, by subject
	// stopped: Run's context ended; no Sync subscribes again.
	stopped bool
}

// New returns a listener whose actions run under ctx.
func New(ctx context.Context, cfg Config) *Listener {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	runs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "flowvault", Subsystem: "event_handler", Name: "runs_total",
		Help: "Event handler outcomes: per action (ran, failed, duplicate), per handler (condition_false, condition_error), per event (event_refused).",
	}, []string{"action", "outcome"})
	if cfg.Metrics != nil {
		cfg.Metrics.MustRegister(runs)
	}
	return &Listener{cfg: cfg, ctx: ctx, logger: cfg.Logger.With(logkey.Component, "events"), kick: make(chan struct{}, 1),
		syncing: make(chan struct{}, 1), runs: runs, subs: map[string]*nats.Subscription{}, handlers: map[string][]*conductor.EventHandler{}}
}

// Sync reads the handlers and subscribes to the subjects of the active
// ones (and no others) before it returns: an event published afterwards
// reaches them.
func (l *Listener) Sync(ctx context.Context) error {
	select {
	case l.syncing <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("event handlers: %w", ctx.Err())
	}
	defer func() { <-l.syncing }()
	all, err := l.cfg.Handlers.EventHandlers(ctx)
	if err != nil {
		return fmt.Errorf("event handlers: %w", err)
	}
	bySubject := map[string][]*conductor.EventHandler{}
	for _, h := range all {
		subj, ok := Subject(h.Event)
		if !ok || !h.Active {
			continue
		}
		if err := workers.CheckEventSubject(subj, true); err != nil {
			// Saved before the check refused it: subscribing could close
			// the connection every handler listens on.
			l.logger.Warn("event handler not listened to", logkey.Handler, h.Name, logkey.Err, err)
			continue
		}
		bySubject[subj] = append(bySubject[subj], h)
	}
	if err := l.subscribe(bySubject); err != nil {
		return err
	}
	if err := l.cfg.Conn.FlushTimeout(flushTimeout); err != nil {
		return fmt.Errorf("subscribe to events: %w", err)
	}
	if err := l.cfg.Conn.LastError(); err != nil && refusesOneOf(err, bySubject) {
		return fmt.Errorf("subscribe to events: %w", err)
	}
	return nil
}

// refusesOneOf reports whether err, a connection's last error, is the
// server's refusal of a subscription to one of the subjects. Any other
// (a slow consumer, a refusal of a subject no longer listened to) stays
// the connection's until another replaces it: each Sync after it, at a
// node's start or a handler's save, failed, on a connection that had
// only dropped a burst's excess.
func refusesOneOf(err error, bySubject map[string][]*conductor.EventHandler) bool {
	if !errors.Is(err, nats.ErrPermissionViolation) {
		return false
	}
	for subj := range bySubject {
		if strings.Contains(err.Error(), `Subscription to "`+subj+`"`) {
			return true
		}
	}
	return false
}

// subscribe makes the listener's handlers and subscriptions bySubject's.
func (l *Listener) subscribe(bySubject map[string][]*conductor.EventHandler) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.handlers = bySubject
	if l.stopped {
		return nil
	}
	for subj, sub := range l.subs {
		if _, ok := bySubject[subj]; !ok {
			if err := sub.Unsubscribe(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
				return fmt.Errorf("unsubscribe %s: %w", subj, err)
			}
			delete(l.subs, subj)
		}
	}
	for _, subj := range slices.Sorted(maps.Keys(bySubject)) {
		if _, ok := l.subs[subj]; ok {
			continue
		}
		sub, err := l.cfg.Conn.QueueSubscribe(subj, QueueGroup(subj), func(m *nats.Msg) { l.receive(subj, m) })
		if err != nil {
			return fmt.Errorf("subscribe %s: %w", subj, err)
		}
		l.subs[subj] = sub
	}
	return nil
}

// Notify asks Run to Sync soon; it never blocks (metadata.Projection's
// Notify).
func (l *Listener) Notify() {
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// Run syncs after each Notify (the definitions' read model changed,
// through any engine) until ctx is done, then stops listening: it
// returns once the events its subscriptions took are handled, or the
// listener's own context ends. A node stops listening before it stops
// its engine, which handles them.
func (l *Listener) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			l.stopListening()
			return
		case <-l.kick:
		}
		if err := l.Sync(ctx); err != nil && ctx.Err() == nil {
			l.logger.Warn("event handlers not synced", logkey.Err, err)
		}
	}
}

// stopListening leaves every subscription's queue group, so that the
// events to come go to the other engines' listeners, and waits until
// the events the subscriptions took already are handled, or l.ctx ends:
// each reached this engine alone, and unsubscribing dropped them.
func (l *Listener) stopListening() {
	l.mu.Lock()
	l.stopped = true
	subs := slices.Collect(maps.Values(l.subs))
	clear(l.subs)
	l.mu.Unlock()
	var closed []<-chan nats.SubStatus
	for _, sub := range subs {
		c := sub.StatusChanged(nats.SubscriptionClosed)
		if err := sub.Drain(); err != nil {
			continue // its connection closed: nothing of it is handled any more
		}
		closed = append(closed, c)
	}
	for _, c := range closed {
		select {
		case <-c:
		case <-l.ctx.Done():
			return
		}
	}
}

// receive runs the handlers of subject on one event. Nothing of the
// payload is logged: names and reasons only.
func (l *Listener) receive(subject string, m *nats.Msg) {
	l.mu.Lock()
	handlers := l.handlers[subject]
	l.mu.Unlock()
	if l.cfg.MarkedOnly && m.Header.Get(workers.EventHeader) == "" {
		l.runs.WithLabelValues("", outcomeRefused).Inc()
		// Debug: a worker may send such answers as fast as it likes.
		l.logger.Debug("message not published by an EVENT task: no handler runs", logkey.Subject, m.Subject)
		return
	}
	var payload map[string]any
	if err := conductor.Unmarshal(m.Data, &payload); err != nil || payload == nil {
		l.runs.WithLabelValues("", outcomeRefused).Inc()
		l.logger.Warn("event is not a JSON object: no handler runs", logkey.Subject, m.Subject, "bytes", len(m.Data))
		return
	}
	ctx, cancel := context.WithTimeout(l.ctx, actionTimeout)
	defer cancel()
	msgID := m.Header.Get(nats.MsgIdHdr)
	publisher, err := l.publisher(ctx, payload)
	if err != nil {
		l.runs.WithLabelValues("", outcomeRefused).Inc()
		l.logger.Warn("event from an unknown workflow: no handler runs", logkey.Subject, m.Subject, logkey.Reason, failure(err))
		return
	}
	for _, h := range handlers {
		l.handle(ctx, h, m.Subject, msgID, payload, publisher)
	}
}

// publisher returns the principals of the workflow whose EVENT task
// published the event (its workflowInstanceId, which the task sets over
// anything its input says), or none for an event that names no workflow.
// An event naming one that does not exist is refused: only engines
// publish on the embedded server, and a name that leads nowhere is not
// theirs.
func (l *Listener) publisher(ctx context.Context, payload map[string]any) ([]string, error) {
	id, _ := payload["workflowInstanceId"].(string)
	if id == "" {
		return nil, nil
	}
	out, err := l.cfg.Engine.Submit(ctx, id, nil, executor.Meta{})
	if err != nil {
		return nil, err
	}
	if out.State == nil {
		return nil, fault.NotFound("workflow %s not found", id)
	}
	return out.State.Principals(), nil
}

// actingAs is who a handler's actions act for: the principals of the
// workflow that published the event, whose data it is, then the
// handler's, whose policy it is. Every one must be allowed what an action
// does, and a workflow it starts runs as all of them (as a sub-workflow
// runs as its parent's): a handler never lends its rights to a publisher,
// nor a publisher's event its rights to a handler.
func actingAs(h *conductor.EventHandler, publisher []string) []string {
	out := slices.Clone(publisher)
	if p := cmp.Or(h.UpdatedBy, h.CreatedBy); !slices.Contains(out, p) {
		out = append(out, p)
	}
	return out
}

func (l *Listener) handle(ctx context.Context, h *conductor.EventHandler, subject, msgID string, payload map[string]any, publisher []string) {
	logger := l.logger.With(logkey.Handler, h.Name, logkey.Subject, subject)
	if strings.TrimSpace(h.Condition) != "" {
		// Conductor's DefaultEventProcessor reads every condition over the
		// payload with JSON held in strings expanded (jsonUtils.expand),
		// whatever the actions' expandInlineJSON: "$.detail.n > 1" holds
		// of {"detail": "{\"n\":3}"}.
		scope := expandInlineJSON(payload).(map[string]any)
		var ok bool
		var err error
		if h.EvaluatorType == valueParam {
			ok = system.ScriptBool(scope[h.Condition])
		} else {
			ok, err = system.Condition(ctx, l.cfg.Budget, h.Condition, scope)
		}
		if err != nil {
			l.runs.WithLabelValues("", outcomeConditionErr).Inc()
			logger.Warn("event handler condition failed: no action runs", logkey.Reason, failure(err))
			return
		}
		if !ok {
			l.runs.WithLabelValues("", outcomeNotMet).Inc()
			logger.Debug("event handler condition is false")
			return
		}
	}
	as := actingAs(h, publisher)
	for i, a := range h.Actions {
		c, found := l.claim(ctx, logger, h.Name, msgID, i, a.Action)
		switch found {
		case claimRan:
			l.runs.WithLabelValues(a.Action, outcomeDuplicate).Inc()
			logger.Info("event handler action skipped: it ran on this event already", logkey.Action, a.Action, logkey.Index, i)
			continue
		case claimElsewhere:
			// Another copy of the event, on another engine, runs this
			// action: the ones after it are that engine's too, so that
			// they land in the order the handler gives them.
			for j, rest := range h.Actions[i:] {
				l.runs.WithLabelValues(rest.Action, outcomeDuplicate).Inc()
				logger.Info("event handler action skipped: another engine runs this event's", logkey.Action, rest.Action, logkey.Index, i+j)
			}
			return
		}
		doc := payload
		if a.ExpandInlineJSON {
			doc = expandInlineJSON(payload).(map[string]any)
		}
		params, _, err := expr.Evaluate(a.EventParams(), expr.PayloadDoc(doc))
		if err == nil {
			// Validation requires the parameters, an object: a handler that
			// lacks them anyway (one saved by a version that checked less) fails its action,
			// not the process.
			p, ok := params.(map[string]any)
			if !ok {
				err = fault.Invalid("the %s action has no parameters", a.Action)
			} else {
				if def := a.Params()[conductor.InlineWorkflowDef]; def != nil {
					p[conductor.InlineWorkflowDef] = def
				}
				err = l.act(ctx, h, i, a.Action, p, as, msgID, c.resumed)
			}
		}
		switch {
		case errors.Is(err, errLanded):
			l.runs.WithLabelValues(a.Action, outcomeDuplicate).Inc()
			logger.Info("event handler action skipped: the run it took over had landed", logkey.Action, a.Action, logkey.Index, i)
		case err != nil:
			l.runs.WithLabelValues(a.Action, outcomeFailed).Inc()
			logger.Warn("event handler action failed", logkey.Action, a.Action, logkey.Index, i, logkey.Principal, as, logkey.Reason, failure(err))
			if transient(err) {
				l.end(ctx, logger, c, claimRetry, a.Action, i)
				continue
			}
		default:
			l.runs.WithLabelValues(a.Action, outcomeRan).Inc()
			logger.Debug("event handler action ran", logkey.Action, a.Action, logkey.Index, i, logkey.Principal, as)
		}
		l.end(ctx, logger, c, claimDone, a.Action, i)
	}
}

// errLanded: an action whose claim was taken over (its engine died
// running it, or it failed in a way that may pass) had its decision
// recorded already.
var errLanded = errors.New("the action's decision is recorded already")

// claim takes the claim of action i of handler on the event msgID, and
// reports what it found: claimHeld to run it. It holds no key (the action
// runs unrecorded) without Seen, without a message id (an event
// published by hand, which nothing can tell from another), or with a
// bucket that cannot be written, when the action runs anyway, as it did
// before there was one (core NATS delivers an event once: skipping it
// would lose it).
func (l *Listener) claim(ctx context.Context, logger *slog.Logger, handler, msgID string, i int, action string) (claim, claimed) {
	if l.cfg.Seen == nil || msgID == "" {
		return claim{}, claimHeld
	}
	c, found, err := l.cfg.Seen.claim(ctx, seenKey(handler, msgID, i))
	if err != nil {
		logger.Warn("event handler action runs unrecorded: an event published again may run it again",
			logkey.Action, action, logkey.Index, i, logkey.Reason, failure(err))
		return claim{}, claimHeld
	}
	if c.resumed {
		logger.Info("event handler action taken over: its run before ended unfinished", logkey.Action, action, logkey.Index, i)
	}
	return c, found
}

// end records how the action of claim c ended: claimDone when it ran or
// failed for good (run again later it could act on what came since: a
// task of the same reference name a rerun scheduled), claimRetry when it
// failed in a way that may pass, so that the event published again runs
// it again, as Conductor removes the execution of an action that failed
// so. A claim whose end is not recorded stays running, and is taken over
// once its lease passes.
func (l *Listener) end(ctx context.Context, logger *slog.Logger, c claim, how []byte, action string, i int) {
	if c.key == "" {
		return
	}
	// The action's time may be what ran out.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), flushTimeout)
	defer cancel()
	if err := l.cfg.Seen.end(ctx, c, how); err != nil {
		logger.Warn("event handler action's end unrecorded: a copy of the event past its lease looks whether it landed",
			logkey.Action, action, logkey.Index, i, logkey.Reason, failure(err))
	}
}

// transient reports whether an action's failure may pass: the engine was
// unavailable or busy, its time ran out, a write found its workflow
// changed, or a failure of no known kind.
func transient(err error) bool {
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled),
		errors.Is(err, fault.ErrUnavailable), errors.Is(err, fault.ErrRateLimited), errors.Is(err, fault.ErrStale):
		return true
	}
	return fault.Kind(err) == "internal error"
}

// act runs action i of h with its evaluated params, for the principals
// as (actingAs). An action on a running workflow is decided as a request
// of its own (actionRequest): resumed, it returns errLanded when that
// request's decision is recorded already.
func (l *Listener) act(ctx context.Context, h *conductor.EventHandler, i int, action string, params map[string]any, as []string, msgID string, resumed bool) error {
	principal := as[0]
	request := actionRequest{resumed: resumed}
	if msgID != "" {
		request.id = "event." + seenKey(h.Name, msgID, i)
	}
	switch action {
	case conductor.ActionStartWorkflow:
		var req conductor.StartWorkflowRequest
		if err := decode(params, &req); err != nil {
			return err
		}
		req.CreatedBy = ""
		var added []string
		req.Input, added = eventMarked(req.Input, h.Event, msgID)
		o := executor.StartOptions{CreatedBy: principal, AlsoRunsAs: as[1:], Added: added, Event: h.Event}
		if msgID != "" {
			// The same event published again starts nothing new.
			o.WorkflowID = engine.DeriveID("event", h.Name, msgID, strconv.Itoa(i))
		}
		var err error
		for attempt := 1; ; attempt++ {
			if o.Pin, err = l.cfg.Authz.MayStart(ctx, as, req); err != nil {
				return err
			}
			_, _, err = l.cfg.Engine.StartWorkflow(ctx, req, o)
			// An inline definition whose name moved since its check
			// started nothing: checked again at once on the name as it
			// is, as nothing but its publisher sends the event again.
			if !errors.Is(err, fault.ErrStale) || attempt == staleStarts {
				break
			}
		}
		if errors.Is(err, fault.ErrConflict) && !errors.Is(err, executor.ErrKeyHeld) && !errors.Is(err, fault.ErrStale) && o.WorkflowID != "" {
			// This event's own start, landed already. A start refused
			// by the request's idempotency key (FAIL, FAIL_ON_RUNNING)
			// is a conflict too, but a refusal, not a repeat; so is a
			// stale one, which the event published again checks again
			// (transient).
			return nil
		}
		return err
	case conductor.ActionCompleteTask, conductor.ActionFailTask:
		var d conductor.EventTaskDetails
		if err := decode(params, &d); err != nil {
			return err
		}
		status := conductor.TaskCompleted
		if action == conductor.ActionFailTask {
			status = conductor.TaskFailed
		}
		d.Output = taskOutput(params, d.Output, h.Event, msgID)
		return l.updateTask(ctx, d, status, as, request)
	case conductor.ActionTerminateWorkflow:
		var d conductor.EventTerminate
		if err := decode(params, &d); err != nil {
			return err
		}
		reason := cmp.Or(d.TerminationReason, "terminated by event handler "+h.Name)
		return l.submit(ctx, d.WorkflowID, as, request, func(*engine.Workflow) (engine.Trigger, error) {
			return engine.Terminate{Reason: reason, By: principal, AlsoBy: as[1:]}, nil
		})
	case conductor.ActionUpdateWorkflowVariables:
		var d conductor.EventUpdateVariables
		if err := decode(params, &d); err != nil {
			return err
		}
		if d.AppendArray {
			// Validate refuses it as written; an expression may still
			// read as true. Setting instead would lose the values there.
			return fault.Invalid("appendArray is not supported: set the whole value")
		}
		return l.submit(ctx, d.WorkflowID, as, request, func(*engine.Workflow) (engine.Trigger, error) {
			return engine.SetVariables{Variables: d.Variables, By: principal, AlsoBy: as[1:]}, nil
		})
	}
	return fmt.Errorf("unknown action %q", action)
}

// eventMarked returns m with what Conductor adds to the data an event's
// action writes (a started workflow's input, an updated task's output):
// the handler's event and the event message's id, when it has one (an
// EVENT task's event does: Nats-Msg-Id). It returns the keys it set too.
func eventMarked(m map[string]any, event, msgID string) (map[string]any, []string) {
	out := make(map[string]any, len(m)+2)
	maps.Copy(out, m)
	added := []string{"conductor.event.name"}
	out[added[0]] = event
	if msgID != "" {
		out["conductor.event.messageId"] = msgID
		added = append(added, "conductor.event.messageId")
	}
	return out, added
}

// taskNaming are the parameters by which a complete_task or fail_task
// action names its task.
var taskNaming = []string{"workflowId", "taskId", "taskRefName"}

// taskOutput is the output a complete_task or fail_task action gives its
// task, as Conductor's SimpleActionProcessor builds it: the task as the
// action named it (params, evaluated: null where it named none), then the
// action's output over those keys, then eventMarked's. A workflow reads
// ${wait.output.workflowId} after an event completed wait, as it does in
// Conductor.
func taskOutput(params, output map[string]any, event, msgID string) map[string]any {
	out := make(map[string]any, len(taskNaming)+len(output))
	for _, k := range taskNaming {
		out[k] = params[k]
	}
	maps.Copy(out, output)
	out, _ = eventMarked(out, event, msgID)
	return out
}

// updateTask completes or fails the task d names.
func (l *Listener) updateTask(ctx context.Context, d conductor.EventTaskDetails, status string, as []string, req actionRequest) error {
	wfID := d.WorkflowID
	if wfID == "" {
		if l.cfg.Tasks == nil {
			return fault.Invalid("no workflowId, and tasks cannot be looked up by id here")
		}
		id, err := l.cfg.Tasks.TaskWorkflow(ctx, d.TaskID)
		if err != nil {
			return err
		}
		wfID = id
	}
	return l.submit(ctx, wfID, as, req, func(w *engine.Workflow) (engine.Trigger, error) {
		taskID := d.TaskID
		if taskID == "" {
			t := w.LatestByRef(d.TaskRefName)
			if t == nil {
				return nil, fault.NotFound("workflow %s has no task with reference name %q", wfID, d.TaskRefName)
			}
			taskID = t.ID
		}
		return engine.Result{Result: conductor.TaskResult{TaskID: taskID, WorkflowInstanceID: wfID, Status: status,
			OutputData: d.Output}, By: as[0], AlsoBy: as[1:]}, nil
	})
}

// actionRequest is the request an action on a running workflow is
// decided as.
type actionRequest struct {
	// id names the handler, the event's message id and the action (a
	// hash, as its claim's key): every run of the action on this event
	// is this request. "" for an event without a message id.
	id string
	// resumed: the action ran before on this event, unfinished (its
	// engine died, or it failed in a way that may pass).
	resumed bool
}

// submit runs the trigger that trig makes of workflow wfID's state, once
// every principal of as may act on it, and unless it is resumed and its
// decision landed before: the state now may hold what came since (a task
// of the same reference name a rerun scheduled, a restart), which the
// action run again would act on.
func (l *Listener) submit(ctx context.Context, wfID string, as []string, req actionRequest, trig func(*engine.Workflow) (engine.Trigger, error)) error {
	if wfID == "" {
		return fault.Invalid("no workflowId")
	}
	out, err := l.cfg.Engine.Submit(ctx, wfID, nil, executor.Meta{})
	if err != nil {
		return err
	}
	if out.State == nil {
		return fault.NotFound("workflow %s not found", wfID)
	}
	if req.resumed && req.id != "" {
		landed, err := l.cfg.Engine.Decided(ctx, wfID, req.id)
		if err != nil {
			return err
		}
		if landed {
			return errLanded
		}
	}
	for _, p := range as {
		if err := l.cfg.Authz.MayExecute(ctx, p, out.State); err != nil {
			return err
		}
	}
	t, err := trig(out.State)
	if err != nil {
		return err
	}
	_, err = l.cfg.Engine.Submit(ctx, wfID, t, executor.Meta{Principal: as[0], RequestID: req.id})
	return err
}

// decode reads evaluated parameters as v.
func decode(params map[string]any, v any) error {
	b, err := json.Marshal(params)
	if err != nil {
		return fault.Invalid("parameters: %v", err)
	}
	if err := conductor.Unmarshal(b, v); err != nil {
		return fault.Invalid("parameters: %v", err)
	}
	return nil
}

// expandInlineJSON returns v with every string that holds a JSON object
// or array replaced by what it holds.
func expandInlineJSON(v any) any {
	switch x := v.(type) {
	case string:
		if s := strings.TrimSpace(x); strings.HasPrefix(s, "{") || strings.HasPrefix(s, "[") {
			var inner any
			if conductor.Unmarshal([]byte(s), &inner) == nil {
				return expandInlineJSON(inner)
			}
		}
		return x
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = expandInlineJSON(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = expandInlineJSON(e)
		}
		return out
	}
	return v
}

// failure is what the log says of a handler's failure: its kind, never its
// text, which may quote the event (a script's error names the value it
// choked on, an action's the workflow name it took from the event).
func failure(err error) string {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "timed out"
	case errors.Is(err, context.Canceled):
		return "canceled"
	}
	if kind := fault.Kind(err); kind != "internal error" {
		return kind
	}
	return "failed"
}
