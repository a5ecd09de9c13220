package guard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/flowvault/flowvault/auth"
	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/engine/expr"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/masking"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
)

const (
	secretsNS = "workflow.secrets."
	envNS     = "workflow.env."
)

// Prepare implements executor.HandOff: the task's input with sealed values
// opened and secret and environment references resolved, for its taker's
// eyes only. A task with neither gets nil: its stored input is handed over
// as it is.
func (g *Guard) Prepare(ctx context.Context, w *engine.Workflow, t *engine.Task) (map[string]any, []schemas.ResolvedRef, error) {
	if t.Type == conductor.TaskTypeUpdateSecret {
		if err := nameOfSecretValue(w, t); err != nil {
			return nil, nil, err
		}
	}
	doc, deferred := t.Input, t.Deferred
	if t.Type == conductor.TaskTypeDoWhile {
		// Its condition reads a document the decider builds: the loop's
		// inputParameters, evaluated again, and the iteration's outputs.
		doc, deferred = engine.LoopConditionInput(w, t)
	}
	// An EVENT publishes its input to whoever subscribes to its sink: it
	// gets no secret, and what the workflow sealed stays sealed ("***").
	publishes := t.Type == conductor.TaskTypeEvent
	sealed := !publishes && !w.Unsealed && masking.HasSealed(doc)
	if len(deferred) == 0 && !sealed {
		return nil, nil, nil
	}
	var input any = doc
	if sealed {
		var err error
		if input, err = masking.Open(input, g.opener(ctx, w)); err != nil {
			if errors.Is(err, errForeign) {
				return nil, nil, fault.Invalid("task %s: %v", t.Ref, err)
			}
			return nil, nil, err
		}
	}
	r := &resolver{g: g, ctx: ctx, w: w, memo: g.memoFor(w.ID), publishes: publishes}
	r.memo.useDefinition(w.DefJSON)
	if len(deferred) > 0 {
		paths := make([]expr.Path, len(deferred))
		for i, p := range deferred {
			paths[i] = expr.Path(p)
		}
		var err error
		if input, err = expr.ResolveDeferred(input, paths, r); err != nil {
			var rerr *resolveError
			if errors.As(err, &rerr) {
				return nil, r.refs, rerr.err
			}
			var perr expr.PathError
			if publishes && errors.As(err, &perr) && errors.Is(err, expr.ErrNoDeferredString) {
				// Its sealed data stays sealed, the reference in it unread.
				return nil, r.refs, fault.Invalid("task %s: %s refers to a secret, environment or sealed value inside sealed data (_secrets, _masked): "+
					"an EVENT task publishes its input to every subscriber of its sink, and resolves no reference there", t.Ref, perr.Path)
			}
			return nil, r.refs, fault.Invalid("task %s: %v", t.Ref, err)
		}
	}
	out, _ := input.(map[string]any)
	return out, r.refs, nil
}

// OpenInput returns t's input with the values its workflow sealed opened,
// where they are and where the input refers to them (those of a
// compacted workflow read "***"), and no secret or environment reference
// resolved (each reads "***"): what the task holds, for the engine's own
// comparisons (a WAIT_FOR_WEBHOOK's matches), never to be handed to
// anyone.
func (g *Guard) OpenInput(ctx context.Context, w *engine.Workflow, t *engine.Task) (map[string]any, error) {
	var input any = t.Input
	if !w.Unsealed && masking.HasSealed(t.Input) {
		var err error
		if input, err = masking.Open(input, g.opener(ctx, w)); err != nil {
			return nil, fmt.Errorf("open the input of task %s: %w", t.Ref, err)
		}
	}
	if len(t.Deferred) > 0 {
		paths := make([]expr.Path, len(t.Deferred))
		for i, p := range t.Deferred {
			paths[i] = expr.Path(p)
		}
		var err error
		r := sealedOnly{&resolver{g: g, ctx: ctx, w: w, memo: g.memoFor(w.ID)}}
		if input, err = expr.ResolveDeferred(input, paths, r); err != nil {
			return nil, fmt.Errorf("open the input of task %s: %w", t.Ref, err)
		}
	}
	out, _ := input.(map[string]any)
	return out, nil
}

// sealedOnly resolves the references to sealed values alone.
type sealedOnly struct{ r *resolver }

func (s sealedOnly) Resolve(body string) (any, error) {
	if ref, ok := strings.CutPrefix(body, expr.SealedPrefix); ok {
		return s.r.sealed(ref)
	}
	return masking.Mask, nil
}

// resolver resolves one task's deferred expressions as the workflow's
// creator and records what it resolved.
type resolver struct {
	g    *Guard
	ctx  context.Context
	w    *engine.Workflow
	memo *memo
	refs []schemas.ResolvedRef
	// publishes is set for a task whose input is published, not handed
	// to a worker: it resolves no secret.
	publishes bool
	// given, when set, holds the sealed values references read, by
	// reference: w is a stub of a child's starter, whose state it lacks.
	given map[string]*masking.Sealed
	// child, when set, is the memo of the workflow whose input this
	// resolves (not w's): it looks for every value resolved or opened,
	// alone, as w's does (a task of the child may echo one).
	child *memo
	// childSeal seals for the child's start what it opens of the sealed
	// data given (see keepOpened).
	childSeal *sealer
}

// resolveError carries a resolution failure through expr, which wraps it.
type resolveError struct{ err error }

func (e *resolveError) Error() string { return e.err.Error() }
func (e *resolveError) Unwrap() error { return e.err }

func (r *resolver) Resolve(body string) (any, error) {
	var v any
	var err error
	switch {
	case strings.HasPrefix(body, secretsNS):
		v, err = r.secret(strings.TrimPrefix(body, secretsNS))
	case strings.HasPrefix(body, envNS):
		v, err = r.env(strings.TrimPrefix(body, envNS))
	case strings.HasPrefix(body, expr.SealedPrefix):
		v, err = r.sealed(strings.TrimPrefix(body, expr.SealedPrefix))
	default:
		err = fault.Invalid("unknown deferred expression namespace in ${%s}", body)
	}
	if err != nil {
		return nil, &resolveError{err}
	}
	return v, nil
}

// sealed opens a value the workflow sealed that the task's input embeds
// in text ("Bearer ${t.output._secrets.token}"), found by its reference.
// A task that publishes its input gets the mask, and so does every task
// once compaction has destroyed the value.
func (r *resolver) sealed(ref string) (any, error) {
	s := r.given[ref]
	if r.given == nil {
		s = engine.FindSealed(r.w, ref)
	}
	if r.publishes || s == nil {
		return masking.Mask, nil
	}
	v, err := masking.Open(s, r.g.opener(r.ctx, r.w))
	if err != nil {
		return nil, fault.Invalid("open %s: %v", ref, err)
	}
	if r.child != nil {
		eachText(v, func(s string) { r.child.addSecret([]byte(s)) }, true)
		if err := r.keepOpened(ref, s.Kind, v); err != nil {
			return nil, err
		}
	}
	return v, nil
}

// principal names who resolutions run as: the workflow's creator, and
// those who joined it ("creator+other").
func (r *resolver) principal() string { return strings.Join(r.w.Principals(), "+") }

// authorize asks READ on target for every principal the workflow runs as:
// all must have it. It returns how each was granted access, or the first
// refusal and whose it is.
func (r *resolver) authorize(target auth.Target) (grantedBy, refused string, err error) {
	var how []string
	for _, p := range r.w.Principals() {
		g, err := r.g.cfg.Authz.Authorize(r.ctx, p, auth.Read, target)
		if err != nil {
			return "", p, err
		}
		how = append(how, g)
	}
	return strings.Join(how, "; "), "", nil
}

func principalName(p string) string {
	if p == "" {
		return "an unknown principal"
	}
	return p
}

// secret resolves "NAME" or "NAME.path" of ${workflow.secrets.NAME.path}.
// Missing and forbidden read the same to the workflow: a message naming the
// secret and the principal, never whether it exists.
func (r *resolver) secret(ref string) (any, error) {
	name, path, _ := strings.Cut(ref, ".")
	if name == "" {
		return nil, r.refuse("secret", name, errNoName, errNoName)
	}
	if r.publishes {
		refused := fault.Invalid("secret %s is not resolved for an EVENT task: it publishes its input to every subscriber of its sink", name)
		return nil, r.refuse("secret", name, refused, refused)
	}
	// Read before the check and resolved at it (ResolveAt): a secret
	// created again or untagged meanwhile is not served on the old one's
	// check.
	rev, revErr := r.g.cfg.Secrets.Revision(r.ctx, name)
	grantedBy, who, err := r.authorize(auth.Target{Type: auth.TargetSecret, ID: name})
	if who == "" {
		who = r.w.CreatedBy
	}
	denied := func() error {
		return fmt.Errorf("secret %s not found or not readable by %s: %w", name, principalName(who), fault.ErrForbidden)
	}
	if errors.Is(err, fault.ErrForbidden) {
		return nil, r.refuse("secret", name, err, denied())
	}
	if err == nil {
		err = revErr
	}
	if errors.Is(err, fault.ErrInvalid) {
		return nil, r.refuse("secret", name, err, denied())
	}
	if err != nil {
		return nil, err
	}
	value, version, err := r.g.cfg.Secrets.ResolveAt(r.ctx, name, rev)
	if errors.Is(err, fault.ErrNotFound) || errors.Is(err, fault.ErrInvalid) {
		return nil, r.refuse("secret", name, err, denied())
	}
	if err != nil {
		return nil, err
	}
	defer clear(value)
	r.memo.addSecret(value)
	if r.child != nil {
		r.child.addSecret(value)
	}
	r.memo.addResolved(name, version, value)
	r.refs = append(r.refs, schemas.ResolvedRef{Kind: "secret", Name: name, Version: version, Principal: r.principal(), GrantedBy: grantedBy})
	return pick(value, path, "secret "+name)
}

// env resolves "NAME", "NAME.path", "NAME.$" or "NAME.$.path".
func (r *resolver) env(ref string) (any, error) {
	name, path, _ := strings.Cut(ref, ".")
	if name == "" {
		return nil, r.refuse("env", name, errNoName, errNoName)
	}
	// Read before the check and looked up at it (LookupAt): tag grants
	// apply to environment values too, so one set again by another
	// principal or untagged meanwhile is not served on the old one's
	// check.
	rev, revErr := r.g.cfg.Env.Revision(r.ctx, name)
	grantedBy, who, err := r.authorize(auth.Target{Type: auth.TargetEnvVariable, ID: name})
	if errors.Is(err, fault.ErrForbidden) {
		return nil, r.refuse("env", name, err, fmt.Errorf("environment variable %s not found or not readable by %s: %w", name, principalName(who), fault.ErrForbidden))
	}
	if err == nil {
		err = revErr
	}
	if err != nil {
		return nil, err
	}
	value, ok, err := r.g.cfg.Env.LookupAt(r.ctx, name, rev)
	if err != nil {
		return nil, err
	}
	if !ok {
		missing := fault.NotFound("environment variable %s not found", name)
		return nil, r.refuse("env", name, missing, missing)
	}
	r.refs = append(r.refs, schemas.ResolvedRef{Kind: "env", Name: name, Principal: r.principal(), GrantedBy: grantedBy})
	if path == "$" {
		path = ""
		var v any
		if conductor.Unmarshal([]byte(value), &v) != nil {
			return nil, fault.Invalid("environment variable %s is not JSON", name)
		}
		return v, nil
	}
	return pick([]byte(value), strings.TrimPrefix(path, "$."), "environment variable "+name)
}

// errNoName is a reference whose name, made of data, was empty or held a
// brace, or was itself deferred (see expr.Evaluate): refused like a name
// that is not there.
var errNoName = fault.Invalid("a secret or environment reference whose name, made of data, is empty or holds a brace, " +
	"or is itself a secret or environment value")

// refuse records a reference that could not be resolved (the audit trail
// tells an admin why: denied, or missing) and returns what the workflow is
// told, which does not say which.

func (r *resolver) refuse(kind, name string, cause, told error) error {
	r.refs = append(r.refs, schemas.ResolvedRef{Kind: kind, Name: name, Principal: r.principal(), Refused: cause.Error()})
	return told
}

// pick returns the whole value as text, or the field at path of a JSON
// value, keeping its JSON type.
func pick(value []byte, path, what string) (any, error) {
	if path == "" {
		return string(value), nil
	}
	var doc any
	if err := conductor.Unmarshal(value, &doc); err != nil {
		return nil, fault.Invalid("%s is not JSON: cannot read .%s", what, path)
	}
	v, _, err := expr.Evaluate("${v."+path+"}", expr.MapDoc{"v": doc})
	if err != nil {
		return nil, fault.Invalid("%s: bad path .%s", what, path)
	}
	if v == nil {
		return nil, fault.Invalid("%s has no field .%s", what, path)
	}
	if b, ok := v.(string); ok {
		return b, nil
	}
	js, _ := json.Marshal(v)
	var out any
	_ = conductor.Unmarshal(js, &out)
	return out, nil
}

// nameOfSecretValue refuses an UPDATE_SECRET whose definition takes its
// secretKey from secret data: a secret's reference, or a value under
// _secrets or _masked (another task's output, the workflow's input). Its
// value would become a secret's name, which lists, audit records and
// errors show to whoever may read them. The configured expression tells
// where the name comes from; the value, opened at hand-off, no longer
// does.
func nameOfSecretValue(w *engine.Workflow, t *engine.Task) error {
	wt := w.TaskConfig(t)
	if wt == nil {
		return nil
	}
	block, _ := wt.InputParameters["_secrets"].(map[string]any)
	name, _ := block["secretKey"].(string)
	for rest := name; ; {
		_, body, ok := strings.Cut(rest, "${")
		if !ok {
			return nil
		}
		body, rest, _ = strings.Cut(body, "}")
		for _, secret := range []string{"workflow.secrets", "_secrets", "_masked", expr.SealedPrefix} {
			if strings.Contains(body, secret) {
				return fault.Invalid("UPDATE_SECRET %s: _secrets.secretKey %s names the secret by secret data, which a name would show to everyone who may list secrets",
					t.Ref, name)
			}
		}
	}
}
