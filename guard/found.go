package guard

import (
	"context"
	"fmt"
	"slices"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/masking"
	"github.com/flowvault/flowvault/schemas"
)

// FindValues implements executor.ValuesFinder. A child got the values its
// parent found to be secret later as plain data (its input, what its
// tasks echoed), and holds them as given in its own records, views and
// read models: the parent's ValuesMasked masks the parent's data alone.
// The parent's record of each value (sealed under the parent's key, the
// only form the message between the two carries) is opened here, the
// child's state searched as the parent's was, and what it finds recorded
// as the child's own ValuesMasked, the values sealed under the child's key
// of the same kind: a memo rebuilt from the child's state looks for them,
// and the child's compaction destroys a _secrets one and replaces its
// copies. A compacted child whose compaction destroyed a secrets key or
// shredded data sealed under one (a key no workflow.secrets_sealed
// recorded, written before it existed) has no key to seal them under: it
// records them shredded, of either kind, which replaces them with "***"
// for good as it is folded (engine.Apply), as its compaction replaced its
// _secrets data. One whose compaction shredded nothing (no key,
// compacted only for the purges of the cached outputs it masks) records
// them as any child: what it records makes it await compaction again, and
// that compaction purges the cached outputs it finds the values in.
func (g *Guard) FindValues(ctx context.Context, w *engine.Workflow, found engine.ValuesFound) (engine.ValuesFound, error) {
	found.Masked, found.Key = nil, nil
	if w == nil || w.Removed || found.From == "" || found.From == w.ID {
		return found, nil
	}
	open := g.opener(ctx, &engine.Workflow{ID: found.From, SecretsKey: found.SecretsKey})
	var values, secretValues [][]byte
	kinds := map[string]byte{}
	for _, ref := range found.Sealed {
		kind, ok := openedKinds[ref.Kind]
		if !ok || !isLateRef(ref.Name) || len(ref.Sealed) == 0 {
			continue
		}
		sv := &masking.Sealed{Kind: kind, Purpose: latePath("wf/"+found.From, ref.Name), Ciphertext: ref.Sealed}
		v, err := masking.Open(sv, open)
		if err != nil {
			return found, fmt.Errorf("open %s's value %s: %w", found.From, ref.Name, err)
		}
		s, ok := v.(string)
		if !ok || s == masking.Mask || len(s) < masking.MinLength || kinds[s] == masking.KindSecrets {
			// "***": the sender's key is destroyed (compacted meanwhile).
			continue
		}
		if _, seen := kinds[s]; !seen {
			values = append(values, []byte(s))
		}
		kinds[s] = kind
		if kind == masking.KindSecrets {
			secretValues = append(secretValues, []byte(s))
		}
	}
	if len(values) == 0 {
		return found, nil
	}
	m := g.memoFor(w.ID)
	m.useDefinition(w.DefJSON)
	if err := g.rebuild(ctx, w, m); err != nil {
		return found, err
	}
	// Looked for from now on in what the child writes, as in the parent
	// (a running child's later task echoing it), and its copies sealed.
	for s, kind := range kinds {
		m.add([]byte(s))
		m.addKind(s, kind)
	}
	if w.Compacted && !w.ShreddedNothing {
		return shredFound(w, found, values, m.get()), nil
	}
	p := &protection{g: g, ctx: ctx, m: m, wf: "wf/" + w.ID, sealed: values, sealedSecretValues: secretValues,
		s: sealer{ctx: ctx, keys: g.cfg.Keys, wfID: w.ID, before: w, memo: m}}
	if w.SealsSecrets {
		p.s.secretsKey = secretsKeyOf(w)
	}
	paths := findValues(w, values, false, m.get())
	late, err := p.keepLate(w, paths)
	if err != nil {
		return found, err
	}
	shred := findValues(w, secretValues, true, m.get())
	texts := findTexts(w, m.get())
	if len(paths) == 0 && len(shred) == 0 && len(texts) == 0 {
		if w.Terminal() {
			g.forget(w.ID) // no decision follows that would drop it
		}
		return found, nil
	}
	found.Masked = &schemas.ValuesMasked{Paths: paths, Shred: shred, Texts: texts, Sealed: late}
	switch {
	case p.s.taken != "":
		found.Key = &schemas.SecretsSealed{Key: p.s.taken}
	case !w.SealsSecrets && slices.ContainsFunc(late, func(r schemas.ResolvedRef) bool { return r.Kind == masking.KeySecrets }):
		found.Key = &schemas.SecretsSealed{}
	}
	return found, nil
}

// shredFound records the values found in w, a compacted workflow whose
// secrets key is destroyed, as shredded, sealed nowhere: a _masked one
// too, which it holds as plain data and no key of its seals, and which
// the views would mask while its state and read models kept it.
func shredFound(w *engine.Workflow, found engine.ValuesFound, values [][]byte, r *masking.Redactor) engine.ValuesFound {
	paths, shred, texts := findValues(w, values, false, r), findValues(w, values, true, r), findTexts(w, r)
	if len(paths) > 0 || len(shred) > 0 || len(texts) > 0 {
		found.Masked = &schemas.ValuesMasked{Paths: paths, Shred: shred, Texts: texts}
	}
	return found
}

// lookFor tells the children of w (its state once events are recorded) of
// the values events found to be secret late (their ValuesMasked records'
// Sealed): each looks for them in its own data, and tells its own children
// in turn (FindValues). A child that ended is told too: its views and read
// models show what it holds until its compaction.
func lookFor(w *engine.Workflow, events []schemas.Event) []engine.Effect {
	if w == nil {
		return nil
	}
	var refs []schemas.ResolvedRef
	for _, ev := range events {
		if vm, ok := ev.(*schemas.ValuesMasked); ok {
			for _, ref := range vm.Sealed {
				if isLateRef(ref.Name) && len(ref.Sealed) > 0 {
					refs = append(refs, ref)
				}
			}
		}
	}
	return engine.TellChildren(w, refs)
}
