package executor

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/google/uuid"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/internal/logkey"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// StartOptions are the parts of a start that do not come from the request.
type StartOptions struct {
	// WorkflowID to use; a new random id when empty. With an idempotency
	// key the key still decides whether the start goes ahead: WorkflowID
	// is then the id it takes, and a key held by WorkflowID itself is a
	// retry of this start (fault.ErrConflict, not ErrKeyHeld).
	WorkflowID string
	CreatedBy  string
	// AlsoRunsAs are principals besides CreatedBy the workflow runs as:
	// those its starter runs as (engine.Workflow.AlsoRunsAs).
	AlsoRunsAs           []string
	ParentWorkflowID     string
	ParentWorkflowTaskID string
	Depth                int // see schemas.WorkflowStarted
	// RequestID identifies the request. With an idempotency key and no
	// WorkflowID, a key held by a workflow this request started (its
	// start record names the request and CreatedBy) is a retry of this
	// start (fault.ErrConflict), also once that workflow has ended or
	// was removed.
	RequestID string
	// Resolved names values resolved into the request's input.
	Resolved []schemas.ResolvedRef
	// Added are input keys the server put in the request's input, not its
	// sender (an event's conductor.event.name): the definition's input
	// schema does not judge them, since its author cannot foresee them.
	Added []string
	// Event is the event of the handler whose action starts the workflow
	// (engine.Start).
	Event string
	// FromWorkflow is set for a start a workflow asks for (a
	// SUB_WORKFLOW's, a START_WORKFLOW's, a failure workflow's): its
	// input and correlation id are the starter's data (a failure
	// workflow's, the failed run's view, reason and correlation id),
	// where "***" is a redacted value, which its rate limit key may not
	// read (engine.RateLimitUnder).
	FromWorkflow bool
	// Pin is what the start's access was decided on, which it holds to.
	Pin
}

// Pin is what a start's access check read of the definition it starts,
// which the start holds to: the name may move between the check and the
// start (someone else deletes it and registers it again, or registers a
// name registered nowhere), and the start is the name's.
type Pin struct {
	// Def is the registered definition of the request's name (and
	// version, when it names one) that the start's access was decided on
	// (metadata.Store.LookupStartable), which the start runs rather than
	// looking the name up again. Nil: the start looks it up.
	Def *conductor.WorkflowDef
	// Checked is, for a start of an inline definition, the state of its
	// name that the start's access was decided on; the start refuses
	// (fault.ErrStale) when the name has moved since (Executor.nameKept).
	// Nil: the start was not checked on it.
	Checked *NameState
}

// Idempotency finds the workflow last started with an idempotency key.
type Idempotency interface {
	// LookupIdempotencyKey returns the workflow last started with key.
	// One removed since is not found, but its id is still returned: the
	// next start derives its own from it.
	LookupIdempotencyKey(ctx context.Context, name, key string) (wfID, status string, found bool, err error)
}

// KeyRunners finds the workflows that run with an idempotency key, which
// the key's last holder alone does not tell: a restart, retry or rerun
// runs again a workflow that had ended before another took its key.
type KeyRunners interface {
	// RunningWithIdempotencyKey calls fn with each RUNNING or PAUSED
	// workflow started with key, and its status, until fn returns false.
	RunningWithIdempotencyKey(ctx context.Context, name, key string, fn func(wfID, status string) bool) error
}

// KeyHolders finds every workflow started with an idempotency key that
// was not removed, ended or not: once the key's last workflow was removed,
// an older one is what FAIL refuses a start for and RETURN_EXISTING
// answers, as Orkes's FAIL refuses while any workflow with the key exists.
type KeyHolders interface {
	// WithIdempotencyKey calls fn with each such workflow, its status and
	// its start time, until fn returns false.
	WithIdempotencyKey(ctx context.Context, name, key string, fn func(wfID, status string, startTime int64) bool) error
}

// ErrKeyHeld: a start its idempotency key's strategy (FAIL,
// FAIL_ON_RUNNING) refused, because another workflow holds the key. Such
// an error is a fault.ErrConflict too; a caller that names the workflow id
// tells the two apart, since for it a conflict alone means its own start
// landed already.
var ErrKeyHeld = errors.New("idempotency key held")

// keyHeld marks conflict as the refusal of an idempotency key's strategy;
// it reads as conflict does.
func keyHeld(conflict error) error { return &keyHeldError{conflict} }

type keyHeldError struct{ conflict error }

func (e *keyHeldError) Error() string   { return e.conflict.Error() }
func (e *keyHeldError) Unwrap() []error { return []error{e.conflict, ErrKeyHeld} }

// StartWorkflow starts a workflow from a Conductor StartWorkflowRequest:
// the inline definition if given, else the registered one (o.Def, else
// looked up: the latest version unless one is named). It returns the workflow id and the appended
// sequence. An unknown definition is fault.ErrNotFound; an existing id is
// fault.ErrConflict; a start its idempotency key refuses is ErrKeyHeld
// (and fault.ErrConflict); with RETURN_EXISTING, the key's workflow id is
// returned, with sequence 0 when it was looked up.
func (e *Executor) StartWorkflow(ctx context.Context, req conductor.StartWorkflowRequest, o StartOptions) (string, uint64, error) {
	if req.Priority < 0 || req.Priority > 99 {
		return "", 0, fault.Invalid("start workflow %s: priority %d: want 0-99", req.Name, req.Priority)
	}
	def := req.WorkflowDef
	if def == nil {
		if req.Name == "" {
			return "", 0, fault.Invalid("start workflow: name is required")
		}
		def = o.Def
		if def == nil && e.defs == nil {
			return "", 0, fault.NotFound("workflow definition %s not found", req.Name)
		}
		if def == nil {
			d, err := e.defs.LookupWorkflowDef(ctx, req.Name, req.Version)
			if err != nil {
				return "", 0, err
			}
			def = d
		}
		o.AlsoRunsAs = joining(o.CreatedBy, o.AlsoRunsAs, e.authorOf(ctx, def))
	} else {
		if def.Name == "" {
			def.Name = req.Name
		}
		check := engine.ValidateWorkflowDef
		if e.defs != nil {
			check = e.defs.CheckWorkflowDef
		}
		if err := check(def); err != nil {
			return "", 0, err
		}
		if o.Checked != nil && e.defs != nil {
			if err := e.nameKept(ctx, def.Name, *o.Checked); err != nil {
				return "", 0, err
			}
		}
	}
	if len(def.Raw) == 0 {
		return "", 0, fault.Invalid("start workflow %s: definition has no JSON", def.Name)
	}
	if err := e.checkStartInput(ctx, def, req.Input, o.Added); err != nil {
		return "", 0, err
	}
	if !conductor.KnownIdempotencyStrategy(req.IdempotencyStrategy) {
		return "", 0, fault.Invalid("idempotencyStrategy %q: %s", req.IdempotencyStrategy, conductor.WantIdempotencyStrategy)
	}
	id := o.WorkflowID
	if req.IdempotencyKey != "" {
		if err := e.keysCaughtUp(ctx); err != nil {
			return "", 0, fmt.Errorf("start workflow %s: %w", def.Name, err)
		}
		existing, status, found, err := e.lookupIdempotency(ctx, def.Name, req.IdempotencyKey)
		if err != nil {
			return "", 0, err
		}
		if found && id != "" && existing == id {
			// The caller's id is its request's: this is a retry of a start
			// that landed, not a second start with the key.
			return "", 0, fault.Conflict("workflow %s exists", id)
		}
		if found {
			switch req.IdempotencyStrategy {
			case conductor.IdempotencyReturnExisting:
				if conductor.WorkflowTerminal(status) {
					// An older workflow with the key may run again (a
					// restart, a retry): the key's work is that one's now.
					runner, _, err := e.runningWithKey(ctx, def.Name, req.IdempotencyKey, id)
					if err != nil {
						return "", 0, err
					}
					existing = cmp.Or(runner, existing)
				}
				return existing, 0, nil
			case conductor.IdempotencyFailOnRunning:
				if !conductor.WorkflowTerminal(status) {
					return "", 0, keyHeld(fault.Conflict("a workflow with idempotency key %q is %s", req.IdempotencyKey, status))
				}
			default:
				// Not named: the caller may not be allowed to read it.
				return "", 0, keyHeld(fault.Conflict("a workflow with idempotency key %q exists", req.IdempotencyKey))
			}
		}
		if id == "" && existing != "" && o.RequestID != "" {
			// The key's workflow, ended or removed, may be this request's
			// own start (a start command delivered again): a retry, not
			// a second start with the key.
			own, err := e.startedBy(ctx, existing, o)
			if err != nil {
				return "", 0, err
			}
			if own {
				return "", 0, fault.Conflict("workflow %s exists", existing)
			}
		}
		switch {
		case req.IdempotencyStrategy == conductor.IdempotencyFailOnRunning:
			// The key's holder has ended or is gone; an older workflow
			// with the key may run again all the same.
			runner, status, err := e.runningWithKey(ctx, def.Name, req.IdempotencyKey, o.WorkflowID)
			if err != nil {
				return "", 0, err
			}
			if runner != "" {
				return "", 0, keyHeld(fault.Conflict("a workflow with idempotency key %q is %s", req.IdempotencyKey, status))
			}
		case !found && existing != "":
			// The key's last workflow was removed; an older one with the
			// key may still be there.
			kept, err := e.keptWithKey(ctx, def.Name, req.IdempotencyKey, o.WorkflowID)
			if err != nil {
				return "", 0, err
			}
			if kept != "" && req.IdempotencyStrategy == conductor.IdempotencyReturnExisting {
				return kept, 0, nil
			}
			if kept != "" {
				return "", 0, keyHeld(fault.Conflict("a workflow with idempotency key %q exists", req.IdempotencyKey))
			}
		}
		if id == "" {
			// Concurrent starts with one key derive one id: the log lets
			// one win.
			id = engine.DeriveID("idempotency", def.Name, req.IdempotencyKey, existing)
		}
	}
	if id == "" {
		id = uuid.NewString()
	}
	rl, err := e.rateLimit(ctx, def, req, o.FromWorkflow)
	if err != nil {
		return "", 0, fmt.Errorf("start workflow %s: %w", def.Name, err)
	}
	if rl != nil && o.ParentWorkflowID != "" {
		// A SUB_WORKFLOW's child of a line one of its ancestors holds a
		// place in would queue behind the workflow that waits for it: with
		// places enough for every level but one, for good. It is part of
		// the work that ancestor was admitted with, and runs on its place,
		// unlimited itself, rather than failing its task: a limit spaces
		// trees out, and a tree that nests itself would never run (Orkes
		// documents neither). A START_WORKFLOW's or a failure workflow's
		// starter waits for nothing: they queue.
		on, err := e.onAncestorsPlace(ctx, def.Name, rl.Key, o.ParentWorkflowID)
		if err != nil {
			return "", 0, fmt.Errorf("start workflow %s: %w", def.Name, err)
		}
		if on {
			rl = nil
		}
	}
	queued := false
	if rl != nil {
		if queued, err = e.placeStart(ctx, def.Name, rl, id); err != nil {
			return "", 0, fmt.Errorf("start workflow %s: %w", def.Name, err)
		}
	}
	out, err := e.Submit(ctx, id, engine.Start{WorkflowID: id, Def: def, Request: req, CreatedBy: o.CreatedBy, AlsoRunsAs: o.AlsoRunsAs,
		ParentWorkflowID: o.ParentWorkflowID, ParentWorkflowTaskID: o.ParentWorkflowTaskID, Depth: o.Depth, Resolved: o.Resolved,
		Event: o.Event, RateLimit: rl, Queued: queued},
		Meta{Principal: o.CreatedBy, RequestID: o.RequestID})
	if err != nil && rl != nil && !errors.Is(err, fault.ErrConflict) && !ambiguous(err) {
		// Refused: its place goes on now rather than once the sweep finds
		// no such workflow. (A conflict is a start of this id recorded
		// before, whose place it is.)
		if ferr := e.freePlace(ctx, def.Name, rl.Key, id); ferr != nil {
			e.cfg.Logger.Warn("giving a refused start's rate limit place on failed", logkey.WorkflowID, id, logkey.Err, ferr)
		}
	}
	if errors.Is(err, fault.ErrConflict) && req.IdempotencyKey != "" && o.WorkflowID == "" &&
		req.IdempotencyStrategy == conductor.IdempotencyReturnExisting {
		// Another start with the key won the append: its record, the
		// sequence the rejection was decided at, is what the caller's
		// next read must see.
		return id, out.Seq, nil
	}
	if errors.Is(err, fault.ErrConflict) && req.IdempotencyKey != "" && o.WorkflowID == "" {
		// Another start with the key won the append: refused as the
		// lookup above refuses it, without the winner's id.
		return "", 0, keyHeld(fault.Conflict("a workflow with idempotency key %q exists", req.IdempotencyKey))
	}
	if err != nil {
		return "", 0, err
	}
	return id, out.Seq, nil
}

// NameState is what a start's check read of the name an inline
// definition runs under: whether a definition is registered under it, and
// its owner's id.
type NameState struct {
	Registered bool
	Owner      string
}

// nameKept fails with fault.ErrStale (a conflict) when workflow name was
// registered, or passed to another owner, since a start of an inline
// definition under it was checked on checked. The execution is the
// name's: its owner's readers read it, its idempotency keys are the
// name's, its grants reach it, and the check asked CREATE alone of a name
// registered nowhere, or UPDATE of the owner's definition it saw. A name
// deleted since asks no more than the check asked. The name is read here, before the start's
// idempotency key is looked up under it; one registered after that is one
// registered after the start, as it may be after any start.
func (e *Executor) nameKept(ctx context.Context, name string, checked NameState) error {
	owner, err := e.defs.WorkflowOwner(ctx, name)
	switch {
	case errors.Is(err, fault.ErrNotFound):
		return nil
	case err != nil:
		return fmt.Errorf("start workflow %s: owner of its name: %w", name, err)
	case !checked.Registered || owner != checked.Owner:
		// Neither owner is named: the caller may hold no right on either.
		// Stale, not a conflict alone: a starter that names the workflow
		// id reads a conflict as its own start landed already, and the
		// start, checked again on the name as it is, may go ahead.
		return fault.Stale("start workflow %s: its name was registered, or passed to another owner, since the start was checked", name)
	}
	return nil
}

// rateLimit is the limit a start of def puts it under. The line is the
// definition name's: a start of an inline definition of a registered name
// is limited by the registered definition's rateLimitConfig (its latest
// version's, which the line follows), not by its own, for an inline
// definition would otherwise change the limit of the name's line for
// every workflow in it, or start past it without a config.
func (e *Executor) rateLimit(ctx context.Context, def *conductor.WorkflowDef, req conductor.StartWorkflowRequest, fromWorkflow bool) (*engine.RateLimit, error) {
	if req.WorkflowDef == nil || e.defs == nil {
		return engine.RateLimitUnder(def.RateLimitConfig, def, req, fromWorkflow)
	}
	reg, err := e.defs.LookupWorkflowDef(ctx, def.Name, nil)
	switch {
	case errors.Is(err, fault.ErrNotFound):
		return engine.RateLimitUnder(def.RateLimitConfig, def, req, fromWorkflow)
	case err != nil:
		return nil, fmt.Errorf("rate limit of %s: %w", def.Name, err)
	}
	return engine.RateLimitUnder(reg.RateLimitConfig, def, req, fromWorkflow)
}

// startedBy reports whether workflow wfID was started by the request o
// describes: its start record carries the request's id and its creator.
// The workflow's read model does not keep them; the log does, also once
// the workflow is removed.
func (e *Executor) startedBy(ctx context.Context, wfID string, o StartOptions) (bool, error) {
	rec, found, err := e.log.FirstRecord(ctx, subject(wfID))
	if err != nil {
		return false, fmt.Errorf("start record of workflow %s: %w", wfID, err)
	}
	if !found || rec.Err != nil || len(rec.Events) == 0 {
		return false, nil
	}
	env := rec.Events[0]
	return env.CausationID == o.RequestID && env.Principal == o.CreatedBy, nil
}

func (e *Executor) lookupIdempotency(ctx context.Context, name, key string) (string, string, bool, error) {
	idem, ok := e.sched.(Idempotency)
	if !ok {
		return "", "", false, nil
	}
	id, status, found, err := idem.LookupIdempotencyKey(ctx, name, key)
	if err != nil {
		return "", "", false, fmt.Errorf("idempotency key %q: %w", key, err)
	}
	return id, status, found, nil
}

// CatchUp waits until the read model the Schedule reads has applied every
// record the workflows' stream held when it was called.
type CatchUp func(ctx context.Context) error

// SetCatchUp installs the wait that the checks of an idempotency key make
// before they read the key's workflows (before Start). An answered start,
// restart, retry or rerun waits only for its own engine's read model, and
// not for what it sets off; a check that read a model short of it would
// let a second workflow run with the key. Without it, the checks read the
// model as it is.
func (e *Executor) SetCatchUp(c CatchUp) { e.catchUp = c }

// keysCaughtUp makes the key's workflows, as the read model lists them
// next, include every one the log held when it was called. Only keyed
// starts and reopens of keyed workflows wait for it.
func (e *Executor) keysCaughtUp(ctx context.Context) error {
	if e.catchUp == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, e.cfg.KeyCatchUpWait)
	defer cancel()
	if err := e.catchUp(ctx); err != nil {
		return fmt.Errorf("idempotency key: the workflows read model is behind the log, try again: %v: %w", err, fault.ErrUnavailable)
	}
	return nil
}

// runningWithKey returns a workflow other than self that runs with key,
// and its status; none without a read model that lists them.
func (e *Executor) runningWithKey(ctx context.Context, name, key, self string) (wfID, status string, err error) {
	runners, ok := e.sched.(KeyRunners)
	if !ok {
		return "", "", nil
	}
	err = runners.RunningWithIdempotencyKey(ctx, name, key, func(id, st string) bool {
		if id == self {
			return true
		}
		wfID, status = id, st
		return false
	})
	if err != nil {
		return "", "", fmt.Errorf("idempotency key %q: running workflows: %w", key, err)
	}
	return wfID, status, nil
}

// keptWithKey returns a workflow other than self started with key and not
// removed: one that runs, else the one started last; none without a read
// model that lists them.
func (e *Executor) keptWithKey(ctx context.Context, name, key, self string) (string, error) {
	holders, ok := e.sched.(KeyHolders)
	if !ok {
		return "", nil
	}
	var kept string
	var keptStart int64
	err := holders.WithIdempotencyKey(ctx, name, key, func(id, status string, startTime int64) bool {
		if id == self {
			return true
		}
		if !conductor.WorkflowTerminal(status) {
			kept = id
			return false
		}
		if kept == "" || startTime > keptStart {
			kept, keptStart = id, startTime
		}
		return true
	})
	if err != nil {
		return "", fmt.Errorf("idempotency key %q: workflows: %w", key, err)
	}
	return kept, nil
}

// authorOf is who saved registered definition def last, when its
// workflows must run as them too: what a definition does with a secret is
// its author's choice, so a secret resolves only where its author may read
// it as well. Otherwise whoever may edit a definition could make it send
// the secrets of everyone who starts it wherever they like. The registry
// sets createdBy and updatedBy; an inline definition's are its sender's to
// write, and its author is its starter. An author who may do anything
// changes no decision and is not named.
func (e *Executor) authorOf(ctx context.Context, def *conductor.WorkflowDef) string {
	author := cmp.Or(def.UpdatedBy, def.CreatedBy)
	if author == "" || e.unrestricted != nil && e.unrestricted(ctx, author) {
		return ""
	}
	return author
}

// joining is also, the principals besides creator a workflow runs as,
// with p.
func joining(creator string, also []string, p string) []string {
	if p == "" || p == creator || slices.Contains(also, p) {
		return also
	}
	return append(slices.Clone(also), p)
}
