package guard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/engine/expr"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/masking"
	"github.com/flowvault/flowvault/schemas"
)

// OpenOutput implements executor.OutputOpener: w's output with what it
// sealed under _secrets and _masked keys opened ("***" where its key was
// destroyed), which the parent seals again under its own key. A value
// sealed elsewhere (a maskedFields field) reads "***", as the child's news
// gives it when the child's redaction is at hand: the parent would store
// it in plaintext.
func (g *Guard) OpenOutput(ctx context.Context, w *engine.Workflow) (map[string]any, error) {
	if !masking.HasSealed(w.Output) {
		return w.Output, nil
	}
	v, err := masking.Open(w.Output, g.opener(ctx, w))
	if err != nil {
		return nil, err
	}
	out, _ := v.(map[string]any)
	var maskErr error
	sealedPaths(w.Output, nil, func(p expr.Path, _ byte) {
		if maskErr == nil && !slices.ContainsFunc(p, func(k any) bool { s, ok := k.(string); return ok && masking.IsMaskedKey(s) }) {
			maskErr = setPath(out, p, masking.Mask)
		}
	})
	return out, maskErr
}

// PrepareChild implements executor.ChildPreparer for a workflow another
// one starts (eff.From: a SUB_WORKFLOW's parent, a failed workflow starting
// its failure workflow, a START_WORKFLOW's). Its input's secret references
// are resolved as the starter's creator, its sealed values opened, and
// every such value is sealed again with the child's own key before the
// child's first event is written: the child's tasks get the values at
// their hand-offs, and the child's log never holds them in plaintext.
//
// The child's key is named after it: its start event cannot name a pooled
// one, since the values are sealed before that event exists.
func (g *Guard) PrepareChild(ctx context.Context, eff engine.StartWorkflow) (map[string]any, []schemas.ResolvedRef, error) {
	parentID, childID, input := eff.From, eff.WorkflowID, eff.Input
	parent := &engine.Workflow{ID: parentID, CreatedBy: eff.CreatedBy, AlsoRunsAs: eff.AlsoRunsAs, SecretsKey: eff.SecretsKey}
	kinds := map[string]byte{} // path → kind, for the values to seal again
	sealedPaths(input, nil, func(p expr.Path, kind byte) { kinds[p.String()] = kind })
	var v any = input
	var err error
	if len(kinds) > 0 {
		if v, err = masking.Open(v, g.opener(ctx, parent)); err != nil {
			if errors.Is(err, errForeign) {
				return nil, nil, fault.Invalid("sub workflow input: %v", err)
			}
			return nil, nil, err
		}
	}
	// Text made of the starter's sealed data reads it by reference
	// ("Bearer ${sealed:task/…}"), handed over in eff.Sealed. A value
	// resolved or opened into text is sealed with the text below, and the
	// child's tasks may echo it alone: the child looks for it too.
	memo := g.memoFor(childID)
	child := &sealer{ctx: ctx, keys: g.cfg.Keys, wfID: childID, secretsKey: keyID(childID, masking.KindSecrets), fresh: true}
	r := &resolver{g: g, ctx: ctx, w: parent, memo: g.memoFor(parentID), given: eff.Sealed, child: memo, childSeal: child}
	if r.given == nil {
		r.given = map[string]*masking.Sealed{} // the stub parent holds none
	}
	paths := make([]expr.Path, len(eff.InputDeferred))
	deferred := make(map[string]bool, len(paths))
	for i, p := range eff.InputDeferred {
		paths[i] = expr.Path(p)
		at := paths[i].String()
		deferred[at] = true
		// Text the starter sealed whole (in a _secrets or _masked block)
		// takes the stronger of its block's kind and what it reads.
		if kinds[at] != masking.KindSecrets {
			kinds[at] = textKind(v, paths[i], r.given)
		}
	}
	if len(paths) > 0 {
		if v, err = expr.ResolveDeferred(v, paths, r); err != nil {
			var rerr *resolveError
			if errors.As(err, &rerr) {
				return nil, r.refs, rerr.err
			}
			return nil, r.refs, fault.Invalid("sub workflow input: %v", err)
		}
	}
	out, _ := v.(map[string]any)
	seal := func(p expr.Path, kind byte) error {
		value, ok := getPath(out, p)
		if !ok {
			return nil
		}
		plain, err := json.Marshal(value)
		if err != nil {
			return err
		}
		// Every string and number in it, a field of a JSON secret
		// included: a task of the child may echo one field alone.
		// A whole JSON secret is a string: its fields are looked for too,
		// as the parent's resolution looks for them (memo.addSecret).
		eachText(value, func(s string) { memo.addSecret([]byte(s)) }, true)
		purpose := "wf/" + childID + "/input." + p.String()
		ct, err := child.Seal(kind, purpose, plain)
		clear(plain)
		if err != nil {
			return err
		}
		return setPath(out, p, &masking.Sealed{Kind: kind, Purpose: purpose, Ciphertext: ct})
	}
	for _, p := range paths {
		if err := seal(p, kinds[p.String()]); err != nil {
			return nil, nil, err
		}
	}
	var sealErr error
	sealedPaths(input, nil, func(p expr.Path, kind byte) {
		// A deferred text the starter sealed is sealed above, once:
		// sealed again, the child's task got the mask.
		if sealErr == nil && !deferred[p.String()] {
			sealErr = seal(p, kind)
		}
	})
	if sealErr != nil {
		return nil, nil, sealErr
	}
	return out, r.refs, nil
}

// textKind is the kind a child's input text at deferred path p is sealed
// under: _masked when every value it reads is the starter's _masked data,
// which outlives the child's compaction as the starter's does; _secrets
// when it reads a secret, an environment value or _secrets data (or a
// value given is missing, which reads "***").
func textKind(in any, p expr.Path, given map[string]*masking.Sealed) byte {
	reads := expr.DeferredReads(in, p)
	for _, body := range reads {
		ref, ok := strings.CutPrefix(body, expr.SealedPrefix)
		if s := given[ref]; !ok || s == nil || s.Kind != masking.KindMasked {
			return masking.KindSecrets
		}
	}
	if len(reads) == 0 {
		return masking.KindSecrets
	}
	return masking.KindMasked
}

// openedKinds names the kinds of the starter's sealed data a child's start
// records (schemas.ResolvedRef.Kind) by the block they come from.
var openedKinds = map[string]byte{masking.KeySecrets: masking.KindSecrets, masking.KeyMasked: masking.KindMasked}

// openedPath is what a value of its starter's sealed data opened into a
// child's input text is sealed under, for the child's start to record.
func openedPath(wf, ref string) string { return wf + "/opened/" + ref }

// keepOpened records on the child's start a value of its starter's sealed
// data the resolver opened into the child's input text, sealed under the
// child's key of the value's kind: the text is sealed whole, and a memo
// rebuilt from the child's state (another engine, a restart) looks for
// the value alone only so. The child's compaction destroys a _secrets one.
func (r *resolver) keepOpened(ref string, kind byte, v any) error {
	name := masking.KeySecrets
	if kind == masking.KindMasked {
		name = masking.KeyMasked
	}
	if v == masking.Mask || slices.ContainsFunc(r.refs, func(o schemas.ResolvedRef) bool { return o.Kind == name && o.Name == ref }) {
		return nil
	}
	plain, err := json.Marshal(v)
	if err != nil {
		return err
	}
	ct, err := r.childSeal.Seal(kind, openedPath("wf/"+r.childSeal.wfID, ref), plain)
	clear(plain)
	if err != nil {
		return fmt.Errorf("seal %s for the child's start: %w", ref, err)
	}
	r.refs = append(r.refs, schemas.ResolvedRef{Kind: name, Name: ref, Sealed: ct})
	return nil
}

// sealedPaths calls fn with the path and kind of every sealed value in v.
func sealedPaths(v any, at expr.Path, fn func(expr.Path, byte)) {
	switch x := v.(type) {
	case *masking.Sealed:
		fn(append(expr.Path(nil), at...), x.Kind)
	case map[string]any:
		for k, e := range x {
			sealedPaths(e, append(at, k), fn)
		}
	case []any:
		for i, e := range x {
			sealedPaths(e, append(at, i), fn)
		}
	}
}

func getPath(v any, p expr.Path) (any, bool) {
	for _, step := range p {
		switch s := step.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil, false
			}
			if v, ok = m[s]; !ok {
				return nil, false
			}
		default:
			i, isIndex := expr.Index(s)
			l, ok := v.([]any)
			if !isIndex || !ok || i < 0 || i >= len(l) {
				return nil, false
			}
			v = l[i]
		}
	}
	return v, true
}

func setPath(root map[string]any, p expr.Path, value any) error {
	if len(p) == 0 {
		return fmt.Errorf("empty path")
	}
	parent, ok := getPath(root, p[:len(p)-1])
	if !ok {
		return fmt.Errorf("no parent for %s", p)
	}
	switch s := p[len(p)-1].(type) {
	case string:
		m, ok := parent.(map[string]any)
		if !ok {
			return fmt.Errorf("%s: not an object", p)
		}
		m[s] = value
	default:
		i, isIndex := expr.Index(s)
		l, ok := parent.([]any)
		if !isIndex || !ok || i < 0 || i >= len(l) {
			return fmt.Errorf("%s: not an index", p)
		}
		l[i] = value
	}
	return nil
}
