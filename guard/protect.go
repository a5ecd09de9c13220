package guard

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/engine/expr"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/masking"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// Protect implements executor.Protector. Before a decision's events are
// appended it seals every leaf under _secrets and _masked (and the
// definition's maskedFields in the workflow's input and output) with the
// workflow's data keys, and redacts the values resolved for the workflow
// (and those it sealed) from everything else the events carry. Values that
// turn out to be secret after they were stored elsewhere in the workflow
// (a workflow input passed into a _secrets block) are marked for masking in
// every view. The decision's effects get the same redaction where they
// carry its data to another workflow (see effects).
func (g *Guard) Protect(ctx context.Context, before *engine.Workflow, dec engine.Decision) (engine.Decision, error) {
	events := dec.Events
	wfID, fields := workflowOf(before, events)
	if wfID == "" {
		return dec, nil
	}
	if schemas.OnlyCompaction(events) {
		// A compaction carries no data: rebuilding what redaction looks
		// for (resolving the workflow's secrets again) would find nothing
		// to do. A memo made since the workflow ended goes with its key:
		// a failure workflow's or a START_WORKFLOW's input prepared after
		// the end decision, a hand-off on a state that had not ended yet.
		g.forget(wfID)
		return dec, nil
	}
	if before != nil && before.Compacted && !before.ShreddedNothing && endsEnded(before, events) && slices.ContainsFunc(events, func(ev schemas.Event) bool {
		_, logged := ev.(*schemas.TaskLogged)
		return logged
	}) {
		// Its secrets key is destroyed: what its tasks were given can no
		// longer be looked for, and a worker still running (the workflow
		// was terminated under it) would write it in plaintext. One
		// compacted only for its purges lost nothing redaction reads.
		return engine.Decision{}, fault.Conflict("workflow %s has ended and its secrets were destroyed (compacted): its tasks take no more log lines", wfID)
	}
	m := g.memoFor(wfID)
	m.useDefinition(definitionOf(before, events))
	if before != nil {
		if err := g.rebuild(ctx, before, m); err != nil {
			return engine.Decision{}, err
		}
	}
	p := &protection{g: g, ctx: ctx, m: m, fields: fields, wf: "wf/" + wfID, events: events,
		s: sealer{ctx: ctx, keys: g.cfg.Keys, wfID: wfID, before: before, memo: m}}
	startSealed := startsSealed(events)
	switch {
	case before != nil && before.SealsSecrets && !before.Compacted:
		// A compacted workflow's key is destroyed or about to be (the
		// pass erases after recording, another engine may have it
		// cached): one that runs again seals under a new key.
		p.s.secretsKey = secretsKeyOf(before)
	case startSealed:
		// A child whose input PrepareChild sealed under the key named
		// after it.
		p.s.secretsKey = keyID(wfID, masking.KindSecrets)
	}
	// Every event is sealed before any is redacted: redaction looks for
	// the values sealing adds to the memo.
	out := slices.Clone(events)
	changed := false
	for _, step := range []func(schemas.Event) (schemas.Event, bool, error){p.sealEvent, p.redactEvent} {
		for i, ev := range out {
			pev, c, err := step(ev)
			if err != nil {
				return engine.Decision{}, err
			}
			out[i], changed = pev, changed || c
		}
	}
	// after is the state out folds to, when this pass had to fold it:
	// handed back, the executor does not fold the same events again.
	var after *engine.Workflow
	folded := 0
	if len(p.sealed) > 0 {
		// Look for the sealed values where the workflow stored them before
		// anyone knew they were secret, this decision included (a start
		// whose first task passes an input into _secrets).
		if before != nil {
			after = before.Clone()
		}
		var err error
		for _, ev := range out {
			if after, err = engine.Apply(after, ev); err != nil {
				return engine.Decision{}, fmt.Errorf("protect: %w", err)
			}
		}
		folded = len(out)
		found := findValues(after, p.sealed, false, p.m.get())
		late, err := p.keepLate(after, found)
		if err != nil {
			return engine.Decision{}, err
		}
		paths := found
		for _, path := range p.collapsed {
			if !slices.Contains(after.MaskedPaths, path) && !slices.Contains(paths, path) {
				paths = append(paths, path)
			}
		}
		shred := findValues(after, p.sealedSecretValues, true, p.m.get())
		texts := findTexts(after, p.m.get())
		if len(paths) > 0 || len(shred) > 0 || len(texts) > 0 {
			out = append(out, &schemas.ValuesMasked{Paths: paths, Shred: shred, Texts: texts, Sealed: late})
		}
	}
	switch {
	case p.s.taken != "":
		out = append(out, &schemas.SecretsSealed{Key: p.s.taken})
	case (before == nil || !before.SealsSecrets) && (p.sealedSecrets || startSealed):
		// A child's start names the key named after it, as a pooled key
		// is named: the read model keeps who holds each key named so,
		// which the compactor's sweep reads once the child is removed.
		out = append(out, &schemas.SecretsSealed{Key: p.s.secretsKey})
	}
	if after != nil {
		var err error
		for _, ev := range out[folded:] {
			if after, err = engine.Apply(after, ev); err != nil {
				return engine.Decision{}, fmt.Errorf("protect: %w", err)
			}
		}
	}
	effects, err := p.effects(dec.Effects)
	if err != nil {
		return engine.Decision{}, fmt.Errorf("protect effects: %w", err)
	}
	dec.Effects = effects
	state := cmp.Or(after, dec.State, before) // the engine's folded events as given
	dec.Effects = append(dec.Effects, lookFor(state, out)...)
	// Every ValuesMasked the decision records, a ValuesFound's too (the
	// engine records it as FindValues prepared it, and leaves its effects
	// to this pass, which sees the ones it appends itself as well). A
	// compacted workflow's fold shreds at once what it records, the
	// inputs the keys are made of among them: keyed on them before.
	keyed := state
	if before != nil && before.Compacted {
		keyed = before
	}
	for _, ev := range out {
		if vm, ok := ev.(*schemas.ValuesMasked); ok {
			dec.Effects = append(dec.Effects, engine.Uncache(keyed, vm)...)
		}
	}
	// A task this decision completed from the cache with an output it
	// redacted: the entry, another workflow's maybe, holds the value.
	for i, ev := range events {
		s, ok := ev.(*schemas.TaskScheduled)
		if !ok || s.Status != conductor.TaskCompleted {
			continue
		}
		if r, ok := out[i].(*schemas.TaskScheduled); !ok || !engine.SameMap(s.Output, r.Output) {
			dec.Effects = append(dec.Effects, engine.UncacheServed(state, s)...)
		}
	}
	if endsEnded(before, out) {
		// What redaction looks for is plaintext, or derived from it: an
		// ended workflow's goes now, not when the memo table fills. A
		// decision on it later (a task's late log line) rebuilds it
		// for that decision alone.
		g.forget(wfID)
	}
	if changed || len(out) != len(events) {
		dec.Events = out // else the executor keeps the decision's state
		if after != nil {
			dec.State = after
		}
	}
	return dec, nil
}

// endsEnded reports whether the workflow is ended once events are
// recorded: ended by them, or ended before and not run again by them.
func endsEnded(before *engine.Workflow, events []schemas.Event) bool {
	ended := before != nil && before.Terminal()
	for _, ev := range events {
		switch e := ev.(type) {
		case *schemas.WorkflowStatusChanged:
			ended = conductor.WorkflowTerminal(e.Status)
		case *schemas.WorkflowReset:
			ended = false
		}
	}
	return ended
}

// effects protects the data a decision's effects carry to other
// workflows, which the decision computed from its unprotected state: a new
// workflow's input (a sub-workflow's, a failure workflow's with the
// failure's reason, a START_WORKFLOW's), a task output for the cache
// (dropped if the decision sealed anything it might copy). A parent hears
// of its child's end from the child's recorded state instead (see the
// executor's NotifyParent). The values resolved for this workflow are
// redacted from them, as from its events; what is under _secrets and _masked is
// left for the receiving workflow to seal. A new workflow's input that
// copies a value sealed in this decision gets the sealed form instead, so
// that the child's preparation seals it again under the child's key, as it
// does for a value sealed by an earlier decision.
func (p *protection) effects(effs []engine.Effect) ([]engine.Effect, error) {
	r := p.m.get()
	if r.Empty() && len(p.bySealed) == 0 {
		// Nothing to look for: a value sealed below redaction's floor
		// still has to be substituted.
		return effs, nil
	}
	var out []engine.Effect // a copy, made at the first change
	set := func(i int, e engine.Effect) {
		if out == nil {
			out = slices.Clone(effs)
		}
		out[i] = e
	}
	for i, eff := range effs {
		switch e := eff.(type) {
		case engine.CacheOutput:
			if len(p.bySealed) > 0 {
				// The output may copy a value this decision sealed: not
				// worth caching at the risk of a secret in the cache.
				set(i, nil)
				continue
			}
			e.Output = redactOpen(r, e.Output)
			set(i, e)
		case engine.StartWorkflow:
			if len(p.bySealed) > 0 {
				if e.Failure {
					e.Input = p.maskFailedView(e.Input, e.From)
				}
				e.Input = p.substitute(e.Input).(map[string]any)
				if !e.Failure {
					// Text made of a value sealed in this decision
					// ("Bearer ${t.output._secrets.token}") reads it by
					// reference, as the task's own record does, for the
					// child's preparation to open: redacted, the child
					// got "Bearer ***". A failure workflow's input is
					// the failed run's view, not text its definition
					// made.
					e.Input, e.InputDeferred = p.deferSealed(e.Input, slices.Clip(e.InputDeferred))
					e.Sealed = p.sealedReads(e.Input, e.InputDeferred, e.Sealed)
				}
				if e.SecretsKey == "" && (masking.HasSealed(e.Input) || len(e.Sealed) > 0) {
					e.SecretsKey = p.s.secretsKey // taken in this decision
				}
			}
			// The started workflow shows its correlation id and domains
			// in plain text, searchable: a sealed or resolved value given
			// for them reads "***" there.
			e.CorrelationID = p.plainText(r, e.CorrelationID)
			if len(e.TaskToDomain) > 0 {
				t2d := make(map[string]string, len(e.TaskToDomain))
				for k, v := range e.TaskToDomain {
					t2d[k] = p.plainText(r, v)
				}
				e.TaskToDomain = t2d
			}
			// A definition is written as given, in plain text: one built
			// from data that a resolved or sealed value reached (a worker
			// echoed its secret into the definition it returned) does not
			// run, redacted or not. The definition's own text is not
			// looked for (TestDefinitionTextIsNotRedacted).
			if e.Refused == "" && e.DefFromData && r.String(string(e.Def)) != string(e.Def) {
				e.Def, e.Refused = nil, "the definition of the workflow to start holds a value resolved from a secret or "+
					"sealed by this workflow: give a child secrets in its input (under _secrets) or as ${workflow.secrets...} references, not in its definition"
			}
			// The child shows, searches and indexes its idempotency key in
			// plain text. The engine refuses a key from sealed data or a
			// secret, but not one a resolved value reached in this very
			// decision (a variable a SET_VARIABLE's result set from a
			// secret), which its state holds before this pass redacts it:
			// such a key is refused too, not stored as "***" (which every
			// such child would share).
			if e.IdempotencyKey != "" && p.plainText(r, e.IdempotencyKey) != e.IdempotencyKey {
				e.IdempotencyKey = ""
				field := "subWorkflowParam.idempotencyKey"
				if e.StartTaskID != "" {
					field = "startWorkflow.idempotencyKey"
				}
				if e.Refused == "" {
					e.Refused = field + " holds a value resolved from a secret or sealed by this workflow, " +
						"which the key would show in plain text: give it as plain data"
				}
			}
			in := e.Input
			e.Input = redactOpen(r, in)
			// A reference resolved when the child starts is a literal,
			// which redaction may match: a _secrets block of this
			// workflow sealed the same literal. Its path names the keys
			// as redactOpen does.
			deferred, renamed := e.InputDeferred, false
			for j, path := range e.InputDeferred {
				if v, ok := getPath(in, path); ok {
					named := namedPath(r, in, path)
					if err := setPath(e.Input, named, v); err != nil {
						return nil, err
					}
					if !slices.Equal(named, path) {
						if !renamed {
							deferred, renamed = slices.Clone(e.InputDeferred), true
						}
						deferred[j] = named
					}
				}
			}
			e.InputDeferred = deferred
			set(i, e)
		}
	}
	if out == nil {
		return effs, nil
	}
	return slices.DeleteFunc(out, func(e engine.Effect) bool { return e == nil }), nil
}

// plainText is s as a field that is never sealed may hold it: "***" for a
// value sealed in this pass (however short), redacted otherwise.
func (p *protection) plainText(r *masking.Redactor, s string) string {
	if s == "" {
		return s
	}
	// Asked of every task a decision schedules (its name, reference name
	// and domain): most passes seal nothing.
	if len(p.bySealed) > 0 {
		if js, err := json.Marshal(s); err == nil {
			if _, sealed := p.bySealed[string(js)]; sealed {
				return masking.Mask
			}
		}
	}
	return r.String(s)
}

// redactOpen redacts m except the values under _secrets and _masked keys,
// which the receiving workflow seals. Keys are redacted there too, named
// as masking.KeyNames names them, as this workflow's stored keys are: a
// child started by the decision that took in {"_secrets": {"<token>":
// …}} got the key as given, in its start's record and in the purposes
// of its values.
func redactOpen(r *masking.Redactor, m map[string]any) map[string]any {
	return redactOpenMap(r, m, false)
}

// redactOpenMap is redactOpen of m, within a _secrets or _masked block
// when masked.
func redactOpenMap(r *masking.Redactor, m map[string]any, masked bool) map[string]any {
	if m == nil {
		return nil
	}
	names := masking.KeyNames(r, m)
	out := make(map[string]any, len(m))
	for k, v := range m {
		name, renamed := names[k]
		if !renamed {
			name = k
		}
		out[name] = redactOpenValue(r, v, masked || masking.IsMaskedKey(k))
	}
	return out
}

func redactOpenValue(r *masking.Redactor, v any, masked bool) any {
	switch x := v.(type) {
	case map[string]any:
		return redactOpenMap(r, x, masked)
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = redactOpenValue(r, e, masked)
		}
		return out
	}
	if masked {
		return v
	}
	return r.Value(v) // a string, or a number equal to a value
}

// namedPath is path into m with its keys named as redactOpen names them,
// path itself when it names none otherwise.
func namedPath(r *masking.Redactor, m map[string]any, path []any) []any {
	out, cloned := path, false
	var v any = m
	for i, step := range path {
		switch x := v.(type) {
		case map[string]any:
			k, _ := step.(string)
			if r.String(k) != k {
				if !cloned {
					out, cloned = slices.Clone(path), true
				}
				out[i] = masking.KeyNames(r, x)[k]
			}
			v = x[k]
		case []any:
			if n, ok := expr.Index(step); ok && n >= 0 && n < len(x) {
				v = x[n]
			}
		}
	}
	return out
}

// workflowOf finds the workflow the events belong to and its maskedFields:
// those of the definition the events move it to, if they do (an upgrade,
// a restart onto the latest version), whose fields the input it gives
// and what follows are sealed by.
func workflowOf(before *engine.Workflow, events []schemas.Event) (string, []string) {
	if before != nil {
		if moved := definitionOf(nil, events); moved != nil {
			return before.ID, maskedFieldsOf(moved)
		}
		def, err := before.Def()
		if err != nil {
			return before.ID, nil
		}
		return before.ID, def.MaskedFields
	}
	for _, ev := range events {
		if s, ok := ev.(*schemas.WorkflowStarted); ok {
			return s.WorkflowID, maskedFieldsOf(s.Def)
		}
	}
	return "", nil
}

// maskedFieldsOf reads the maskedFields of a definition's JSON.
func maskedFieldsOf(def []byte) []string {
	if !mayNameMaskedFields(def) {
		return nil // most definitions: no parse
	}
	// Read as Workflow.Def reads it, by names matched exactly: a decision
	// after this one reads no other fields.
	var d struct {
		MaskedFields []string `json:"maskedFields"`
	}
	_ = conductor.UnmarshalStored(def, &d)
	return d.MaskedFields
}

// definitionOf returns the JSON of the definition the workflow runs: the
// state's, or the one a start or a reset records.
func definitionOf(before *engine.Workflow, events []schemas.Event) []byte {
	for _, ev := range events {
		switch e := ev.(type) {
		case *schemas.WorkflowStarted:
			return e.Def
		case *schemas.WorkflowReset:
			if len(e.Def) > 0 {
				return e.Def
			}
		case *schemas.WorkflowUpgraded:
			return e.Def
		}
	}
	if before != nil {
		return before.DefJSON
	}
	return nil
}

// mayNameMaskedFields reports whether a definition's JSON may hold a
// maskedFields key as the decoder reads keys: named exactly so, or spelt
// with escapes. A definition that cannot is not parsed on every start.
func mayNameMaskedFields(def []byte) bool {
	return bytes.Contains(def, []byte("maskedFields")) || bytes.Contains(def, []byte(`\u`))
}

// protection is one decision's protection pass.
type protection struct {
	g      *Guard
	ctx    context.Context
	s      sealer
	m      *memo
	fields []string
	// wf is the workflow's purpose prefix ("wf/<id>"), made once for the
	// pass's events.
	wf     string
	sealed [][]byte // plaintexts sealed in this pass
	// sealedSecrets is set when this pass sealed under the secrets key.
	sealedSecrets bool
	// sealedSecretValues are the strings of sealed that went under
	// _secrets: where the workflow stored them before, compaction replaces
	// them too (schemas.ValuesMasked.Shred).
	sealedSecretValues [][]byte
	// bySealed maps the JSON of each value sealed in this pass to its sealed
	// form: a later event of the same decision that copied the value (a task
	// scheduled from the output that was just sealed) gets the sealed form
	// in its place, so the copy is sealed too and its taker still gets it.
	bySealed map[string]*masking.Sealed
	// collapsed lists the input keys sealed leaf by leaf whose value is
	// an object or a list: each reads "***" as a whole, as the _secrets
	// block it goes to does.
	collapsed []string
	// events are the decision's events as given, which prescan reads.
	events []schemas.Event
	// prescanned: the memo knows every value this pass seals (prescan).
	prescanned bool
	// dry is set while prescan runs sealEvent for what it would seal.
	dry bool
}

// seal seals m's masked keys and fields under the purpose path names.
// path is built only when something is sealed: most events seal nothing,
// and every task event would otherwise format its path.
func (p *protection) seal(path func() string, m map[string]any, fields []string) (map[string]any, error) {
	return p.sealInput(path, m, fields, engine.InputSecrecy{})
}

// sealInput is seal for a workflow's input, which also seals, leaf by
// leaf, the keys the workflow's definition copies into a _secrets or
// _masked block (secrecy).
func (p *protection) sealInput(path func() string, m map[string]any, fields []string, secrecy engine.InputSecrecy) (map[string]any, error) {
	if m == nil {
		return nil, nil
	}
	if len(p.bySealed) > 0 {
		m = p.substitute(m).(map[string]any)
	}
	secrets, masked := secrecy.Fields(m)
	if !masking.HoldsMaskedKey(m) && !hasAny(m, fields) && len(secrets) == 0 && len(masked) == 0 {
		return m, nil
	}
	if p.dry {
		_, err := masking.SealInput(masking.DrySealer{}, nil, "", m, fields, secrets, masked, p.know)
		return m, err
	}
	names, err := p.prescan()
	if err != nil {
		return nil, err
	}
	var last []byte
	rec := sealRecorder{p, &last}
	found := func(plain []byte) {
		last = append(last[:0], plain...)
		if s, ok := jsonString(plain); ok {
			p.m.add([]byte(s))
			p.sealed = append(p.sealed, []byte(s))
		} else {
			p.m.add(plain)
		}
	}
	for _, k := range slices.Concat(secrets, masked) {
		switch m[k].(type) {
		case map[string]any, []any:
			p.collapsed = append(p.collapsed, "input."+k)
		}
	}
	out, err := masking.SealInput(rec, names, path(), m, fields, secrets, masked, found)
	if err != nil {
		return nil, err
	}
	return out, nil
}

// sealInputs seals, by the maskedFields of the decision and the secrecy of
// def, the input a reset or an upgrade records: the whole input it sets
// and the fields of the input kept it records again (see
// schemas.WorkflowReset.InputFields), at the input's own path, as the
// input they are part of would be. It reports whether any changed.
func (p *protection) sealInputs(wf string, def []byte, inputs ...*map[string]any) (changed bool, err error) {
	secrecy, err := secrecyOf(def)
	if err != nil {
		return false, err
	}
	for _, in := range inputs {
		sealed, err := p.sealInput(wfPath(wf, "input"), *in, p.fields, secrecy)
		if err != nil {
			return false, err
		}
		changed = changed || !engine.SameMap(sealed, *in)
		*in = sealed
	}
	return changed, nil
}

// prescan has the memo know, before this pass seals anything, every value
// it will seal, in any of the decision's events, and returns what then
// redacts them: a purpose is stored in plain text, and names a key that
// holds such a value (a worker's output keyed by its secret, sealed in
// the same block or by a later event) as the stored key reads once
// redacted (see masking.KeyNames). It runs once a pass, and only in one
// that seals: sealEvent runs dry on every event, sealing nothing.
func (p *protection) prescan() (*masking.Redactor, error) {
	if !p.prescanned {
		p.prescanned, p.dry = true, true
		defer func() { p.dry = false }()
		for _, ev := range p.events {
			if _, _, err := p.sealEvent(ev); err != nil {
				return nil, err
			}
		}
	}
	return p.m.get(), nil
}

// know has the memo look for a value sealing finds (the found callback of
// masking's sealing): the text of a string, the JSON of anything else.
func (p *protection) know(plain []byte) {
	if s, ok := jsonString(plain); ok {
		p.m.add([]byte(s))
	} else {
		p.m.add(plain)
	}
}

// secrecyOf returns what of a workflow's input the definition def (its
// JSON) copies into _secrets or _masked blocks.
func secrecyOf(def []byte) (engine.InputSecrecy, error) {
	s, err := engine.SecretInput(def)
	if err != nil {
		return s, fmt.Errorf("protect input: %w", err)
	}
	return s, nil
}

// startsSealed reports whether a start among events carries input already
// sealed under the secrets key (a sub-workflow's, see PrepareChild).
func startsSealed(events []schemas.Event) bool {
	found := false
	for _, ev := range events {
		if s, ok := ev.(*schemas.WorkflowStarted); ok {
			sealedPaths(s.Input, nil, func(_ expr.Path, kind byte) { found = found || kind == masking.KindSecrets })
		}
	}
	return found
}

// sealRecorder seals like the workflow's sealer and remembers each sealed
// value by its plaintext JSON (reported by the found callback just before).
type sealRecorder struct {
	p    *protection
	last *[]byte
}

func (r sealRecorder) Seal(kind byte, path string, plain []byte) ([]byte, error) {
	ct, err := r.p.s.Seal(kind, path, plain)
	if err == nil {
		if s, ok := jsonString(*r.last); ok {
			r.p.m.addKind(s, kind)
			if kind == masking.KindSecrets {
				r.p.sealedSecretValues = append(r.p.sealedSecretValues, []byte(s))
			}
		}
	}
	if err == nil && kind == masking.KindSecrets {
		r.p.sealedSecrets = true
	}
	if err == nil {
		if r.p.bySealed == nil {
			r.p.bySealed = map[string]*masking.Sealed{}
		}
		r.p.bySealed[string(*r.last)] = &masking.Sealed{Kind: kind, Purpose: path, Ciphertext: ct}
	}
	return ct, err
}

func (r sealRecorder) Open(kind byte, path string, ct []byte) ([]byte, error) {
	return r.p.s.Open(kind, path, ct)
}

// substitute replaces values equal to one sealed in this pass with its
// sealed form.
func (p *protection) substitute(v any) any {
	return p.replaceSealed(v, func(s *masking.Sealed) any { return s })
}

// replaceSealed replaces values equal to one sealed in this pass with what
// with makes of its sealed form.
func (p *protection) replaceSealed(v any, with func(*masking.Sealed) any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = p.replaceSealed(e, with)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = p.replaceSealed(e, with)
		}
		return out
	case *masking.Sealed, nil:
		return v
	}
	js, err := json.Marshal(v)
	if err != nil {
		return v
	}
	if sealed, ok := p.bySealed[string(js)]; ok {
		return with(sealed)
	}
	return v
}

// sealedReads adds to known the values sealed in this pass that the texts
// at the deferred paths of in read (StartWorkflow.Sealed), returning a
// copy when it adds any.
func (p *protection) sealedReads(in map[string]any, deferred [][]any, known map[string]*masking.Sealed) map[string]*masking.Sealed {
	byRef := map[string]*masking.Sealed{}
	for _, sv := range p.bySealed {
		if ref, ok := strings.CutPrefix(sv.Purpose, "wf/"+p.s.wfID+"/"); ok {
			byRef[ref] = sv
		}
	}
	out, copied := known, false
	for _, path := range deferred {
		for _, ref := range expr.SealedRefs(in, expr.Path(path)) {
			sv, ok := byRef[ref]
			if !ok || out[ref] != nil {
				continue
			}
			if !copied {
				out, copied = make(map[string]*masking.Sealed, len(known)+1), true
				maps.Copy(out, known)
			}
			out[ref] = sv
		}
	}
	return out
}

// maskFailedView masks, in a failure workflow's input, the values sealed in
// this pass that the failed workflow's view (failedWorkflow) copies: the
// decision that sealed them built the view from its state before sealing,
// where a copy of a value (a TERMINATE's workflowOutput taking a _secrets
// value) is still plaintext. Every read of the failed workflow shows the
// copy "***", as the view shows a value sealed by an earlier decision: the
// failure workflow's tasks get it so, not the value.
func (p *protection) maskFailedView(in map[string]any, failedID string) map[string]any {
	view, ok := in["failedWorkflow"].(map[string]any)
	if !ok || view["workflowId"] != failedID {
		return in // no view (too large): the key is the failed workflow's input
	}
	out := maps.Clone(in)
	out["failedWorkflow"] = p.replaceSealed(view, func(*masking.Sealed) any { return masking.Mask })
	return out
}

// deferSealed turns the copies of values sealed in this pass that a task's
// input embeds in text ("Bearer <token>" from "Bearer
// ${t.output._secrets.token}", scheduled by the decision that took in the
// token) into deferred reads of the sealed values: the stored input keeps a
// reference, and the taker gets the text with the value, as it would from
// an earlier decision (expr.SealedDoc). Values shorter than
// masking.MinLength are left to redaction.
func (p *protection) deferSealed(in map[string]any, deferred [][]any) (map[string]any, [][]any) {
	if len(p.bySealed) == 0 || in == nil {
		return in, deferred
	}
	type sealedText struct{ value, ref string }
	var values []sealedText
	for js, sv := range p.bySealed {
		plain, ok := jsonString([]byte(js))
		if !ok || len(plain) < masking.MinLength {
			continue
		}
		if ref, ok := strings.CutPrefix(sv.Purpose, "wf/"+p.s.wfID+"/"); ok {
			values = append(values, sealedText{plain, ref})
		}
	}
	if len(values) == 0 {
		return in, deferred
	}
	// Longest first, so that a value holding a shorter one is deferred
	// whole; then by value, so that every engine writes the same record.
	slices.SortFunc(values, func(a, b sealedText) int {
		return cmp.Or(len(b.value)-len(a.value), strings.Compare(a.value, b.value))
	})
	encoded := map[string]bool{}
	for _, d := range deferred {
		encoded[expr.Path(d).String()] = true
	}
	// walk returns v itself when nothing in it changed: most inputs hold
	// no copy, and are kept as they are.
	var walk func(v any, at expr.Path) (any, bool)
	walk = func(v any, at expr.Path) (any, bool) {
		switch x := v.(type) {
		case string:
			key := at.String()
			out, changed := x, false
			for _, sv := range values {
				var c bool
				if out, c = expr.DeferSealed(out, encoded[key] || changed, sv.value, sv.ref); c {
					changed = true
				}
			}
			if changed && !encoded[key] {
				encoded[key] = true
				deferred = append(deferred, append([]any(nil), at...))
			}
			return out, changed
		case map[string]any:
			var out map[string]any
			for k, e := range x {
				if ne, changed := walk(e, append(at, k)); changed {
					if out == nil {
						out = maps.Clone(x)
					}
					out[k] = ne
				}
			}
			if out == nil {
				return x, false
			}
			return out, true
		case []any:
			var out []any
			for i, e := range x {
				if ne, changed := walk(e, append(at, i)); changed {
					if out == nil {
						out = slices.Clone(x)
					}
					out[i] = ne
				}
			}
			if out == nil {
				return x, false
			}
			return out, true
		}
		return v, false
	}
	out, _ := walk(in, nil)
	return out.(map[string]any), deferred
}

// sealCopies seals, in the input of a task scheduled to be handed out,
// each text that holds a value the workflow sealed in an earlier decision
// (a workflow input kept as given that a task put in a _secrets block, read
// again as plain data): whole, under the kind the value went under. Its
// taker gets the text at hand-off, as a copy made in the decision that
// sealed the value gets it (substitute, deferSealed); the record and every
// view hold it sealed. Redacted instead, the taker got "***" for a value
// the workflow was given as plain data. Compaction destroys a copy sealed
// under _secrets, as the value.
func (p *protection) sealCopies(path func() string, in map[string]any) (map[string]any, error) {
	if in == nil || !p.m.sealsAny() || p.dry {
		return in, nil
	}
	var last []byte
	rec := sealRecorder{p, &last}
	// What redaction looks for holds every sealed value: a text it leaves
	// alone holds none, and the values need not be looked for one by one
	// (a loop that seals a value an iteration has one per iteration).
	r := p.m.get()
	// at is the way from in to the value walked; its purpose is made only
	// for a copy sealed (most inputs hold none), naming the keys as
	// sealInput's purposes do (see prescan), each map's once: KeyNames
	// numbers keys in map order.
	var at []copyStep
	var names map[uintptr]map[string]string
	purpose := func(redact *masking.Redactor) string {
		b := []byte(path())
		for _, st := range at {
			if st.in == nil {
				b = append(strconv.AppendInt(append(b, '['), int64(st.i), 10), ']')
				continue
			}
			name := st.key
			if redact.String(name) != name {
				id := reflect.ValueOf(st.in).Pointer()
				if _, ok := names[id]; !ok {
					if names == nil {
						names = map[uintptr]map[string]string{}
					}
					names[id] = masking.KeyNames(redact, st.in)
				}
				name = names[id][name]
			}
			b = append(append(b, '.'), name...)
		}
		return string(b)
	}
	var walk func(v any) (any, bool, error)
	walk = func(v any) (any, bool, error) {
		switch x := v.(type) {
		case string:
			if r.String(x) == x {
				return v, false, nil
			}
			kind, ok := p.m.copyKind(x)
			if !ok {
				return v, false, nil
			}
			redact, err := p.prescan()
			if err != nil {
				return nil, false, err
			}
			where := purpose(redact)
			plain, _ := json.Marshal(x)
			last = append(last[:0], plain...)
			ct, err := rec.Seal(kind, where, plain)
			clear(plain)
			if err != nil {
				return nil, false, fmt.Errorf("seal %s: %w", where, err)
			}
			return &masking.Sealed{Kind: kind, Purpose: where, Ciphertext: ct}, true, nil
		case map[string]any:
			var out map[string]any
			for k, e := range x {
				at = append(at, copyStep{in: x, key: k})
				ne, changed, err := walk(e)
				at = at[:len(at)-1]
				if err != nil {
					return nil, false, err
				}
				if changed {
					if out == nil {
						out = maps.Clone(x)
					}
					out[k] = ne
				}
			}
			if out == nil {
				return x, false, nil
			}
			return out, true, nil
		case []any:
			var out []any
			for i, e := range x {
				at = append(at, copyStep{i: i})
				ne, changed, err := walk(e)
				at = at[:len(at)-1]
				if err != nil {
					return nil, false, err
				}
				if changed {
					if out == nil {
						out = slices.Clone(x)
					}
					out[i] = ne
				}
			}
			if out == nil {
				return x, false, nil
			}
			return out, true, nil
		}
		return v, false, nil
	}
	out, _, err := walk(in)
	if err != nil {
		return nil, err
	}
	return out.(map[string]any), nil
}

// copyStep is a step of sealCopies's way: key of map in, or index i of a
// list (in nil).
type copyStep struct {
	in  map[string]any
	key string
	i   int
}

// wfPath and taskPath name a workflow's or a task's field as a purpose to
// seal under (see seal).
func wfPath(wf, field string) func() string { return func() string { return wf + "/" + field } }

func taskPath(wf, taskID, field string) func() string {
	return func() string { return wf + "/task/" + taskID + "/" + field }
}

// sealEvent seals what one event holds under masked keys and fields, and the
// values a hand-off resolved, returning the event as it is when nothing in
// it changes (changed is false).
func (p *protection) sealEvent(ev schemas.Event) (out schemas.Event, changed bool, err error) {
	wf := p.wf
	switch e := ev.(type) {
	case *schemas.WorkflowStarted:
		c := *e
		secrecy, err := secrecyOf(e.Def)
		if err != nil {
			return nil, false, err
		}
		if c.Input, err = p.sealInput(wfPath(wf, "input"), c.Input, p.fields, secrecy); err == nil {
			c.Variables, err = p.seal(wfPath(wf, "variables"), c.Variables, nil)
		}
		return &c, !engine.SameMap(c.Input, e.Input) || !engine.SameMap(c.Variables, e.Variables), err
	case *schemas.TaskScheduled:
		if e.Type == conductor.TaskTypeUpdateSecret {
			if name, ok := updatedSecretName(e.Input); ok {
				// A secret's name is its subject and its keys, listed to
				// everyone who may list secrets, and redaction stops
				// looking for it: made of a value this workflow resolved
				// or sealed (a worker's echo of a secret, which this
				// decision reads before it is redacted), it would name
				// the secret with the value, and the decision is not
				// recorded. A task failed as it is scheduled writes
				// nothing: the value is still looked for. A name
				// already a secret's (another UPDATE_SECRET of the
				// secret, sealing it in this pass) is plain.
				switch {
				case p.m.isName(name) || p.plainText(p.m.get(), name) == name:
					p.m.addName(name)
				case e.Status == conductor.TaskScheduled:
					return nil, false, fault.SecretInName("an UPDATE_SECRET this decision schedules would name the secret it writes "+
						"with a value resolved from a secret or sealed by workflow %s: give secret names as plain data", strings.TrimPrefix(p.wf, "wf/"))
				}
			}
		}
		input, err := p.seal(taskPath(wf, e.TaskID, "input"), e.Input, nil)
		if err != nil {
			return nil, false, err
		}
		// A task the engine completes as it schedules it has an output
		// already: a loop's first loopItem, a dynamic fork's inputs.
		output, err := p.seal(taskPath(wf, e.TaskID, "output"), e.Output, nil)
		if err != nil {
			return nil, false, err
		}
		if engine.HandsOffInput(e.Type) {
			if input, err = p.sealCopies(taskPath(wf, e.TaskID, "input"), input); err != nil {
				return nil, false, err
			}
		}
		input, deferred := p.deferSealed(input, e.Deferred)
		if engine.SameMap(input, e.Input) && engine.SameMap(output, e.Output) {
			return ev, false, nil
		}
		c := *e
		c.Input, c.Output, c.Deferred = input, output, deferred
		return &c, true, nil
	// An event is copied only when something in it changes: most change
	// nothing, and a copy made up front escapes to the heap.
	case *schemas.TaskUpdated:
		output, err := p.seal(taskPath(wf, e.TaskID, "output"), e.Output, nil)
		if err != nil || engine.SameMap(output, e.Output) {
			return ev, false, err
		}
		c := *e
		c.Output = output
		return &c, true, nil
	case *schemas.VariablesUpdated:
		vars, err := p.seal(wfPath(wf, "variables"), e.Variables, nil)
		if err != nil || engine.SameMap(vars, e.Variables) {
			return ev, false, err
		}
		c := *e
		c.Variables = vars
		return &c, true, nil
	case *schemas.WorkflowStatusChanged:
		output, err := p.seal(wfPath(wf, "output"), e.Output, p.fields)
		if err != nil || engine.SameMap(output, e.Output) {
			return ev, false, err
		}
		c := *e
		c.Output = output
		return &c, true, nil
	case *schemas.WorkflowReset:
		def := e.Def
		if len(def) == 0 && p.s.before != nil {
			def = p.s.before.DefJSON
		}
		c := *e
		changed, err := p.sealInputs(wf, def, &c.Input, &c.InputFields)
		return &c, changed, err
	case *schemas.WorkflowUpgraded:
		c := *e
		changed, err := p.sealInputs(wf, e.Def, &c.Input, &c.InputFields)
		return &c, changed, err
	case *schemas.TaskStarted:
		if p.dry {
			return ev, false, nil // a resolved value is known as it resolves
		}
		refs, err := p.sealResolved(wf, e.Resolved)
		if err != nil || refs == nil {
			return ev, false, err
		}
		c := *e
		c.Resolved = refs
		return &c, true, nil
	}
	return ev, false, nil
}

// redactEvent replaces every value the memo holds, in every form redaction
// knows, in the data and text of one sealed event, returning the event as
// it is when nothing in it changes. It runs once every event of the
// decision is sealed: an event must not keep a value a later one sealed
// (a result's log lines, which the decider records before the result
// whose _secrets they echo). A workflow's input is kept as written (see
// sealInput); findValues masks its copies.
func (p *protection) redactEvent(ev schemas.Event) (out schemas.Event, changed bool, err error) {
	r := p.m.get()
	switch e := ev.(type) {
	case *schemas.WorkflowStarted:
		// The start's idempotency key, rate limit key and correlation id
		// are kept in its record, shown, searched and indexed in plain
		// text, and match other starts (and correlated searches) as they
		// are: one holding a value this start seals (a webhook's key read
		// from a payload field its workflow names in maskedFields or
		// copies into a _secrets block, a key or correlation id equal to
		// its own _secrets data) cannot be redacted, which would key or
		// correlate every such start "***", and is refused. Looked for as
		// redaction looks elsewhere: whole at any length, within text
		// from masking.MinLength.
		for _, k := range []struct{ field, key string }{{"idempotencyKey", e.IdempotencyKey},
			{"rateLimitConfig.rateLimitKey", e.RateLimitKey}, {"correlationId", e.CorrelationID}} {
			if p.plainText(r, k.key) != k.key {
				return nil, false, fault.Invalid("start workflow %s: its %s holds a value the workflow seals (maskedFields, _secrets or _masked data) "+
					"or resolved from a secret, which the start would keep and show in plain text: give it as plain data", e.Name, k.field)
			}
		}
		return ev, false, nil
	case *schemas.WorkflowReset:
		// A rerun's correlation id is the workflow's from then on, kept,
		// shown and searched as a start's is, and refused as a start's is.
		if p.plainText(r, e.CorrelationID) != e.CorrelationID {
			return nil, false, fault.Invalid("%s workflow %s: its correlationId holds a value the workflow seals (maskedFields, _secrets or _masked data) "+
				"or resolved from a secret, which the workflow would keep and show in plain text: give it as plain data", e.Kind, strings.TrimPrefix(p.wf, "wf/"))
		}
		return ev, false, nil
	case *schemas.TaskScheduled:
		// A task's name, reference name and domain are how it runs (its
		// queue, the subject its workers listen on) and are shown and
		// searched as they are: made of a value this workflow resolved
		// or sealed (a DYNAMIC task named after a worker's echo), they
		// cannot be redacted, and the decision is not recorded.
		if p.plainText(r, e.Name) != e.Name || p.plainText(r, e.Ref) != e.Ref || p.plainText(r, e.Domain) != e.Domain {
			return nil, false, fault.SecretInName("a task this decision schedules would be named (its name, reference name or domain) "+
				"with a value resolved from a secret or sealed by workflow %s: give task names as plain data", strings.TrimPrefix(p.wf, "wf/"))
		}
		input, output, reason := r.Map(e.Input), r.Map(e.Output), r.String(e.Reason)
		config, err := p.config(e.Config)
		if err != nil {
			return nil, false, err
		}
		// A deferred text's path names the keys as the redacted input
		// does: it spelled a key holding a value, and named no key of it.
		deferred, renamed := e.Deferred, false
		for i, path := range e.Deferred {
			if named := namedPath(r, e.Input, path); !slices.Equal(named, path) {
				if !renamed {
					deferred, renamed = slices.Clone(e.Deferred), true
				}
				deferred[i] = named
			}
		}
		if engine.SameMap(input, e.Input) && engine.SameMap(output, e.Output) && reason == e.Reason &&
			bytes.Equal(config, e.Config) && !renamed {
			return ev, false, nil
		}
		c := *e
		c.Input, c.Output, c.Reason, c.Config, c.Deferred = input, output, reason, config, deferred
		return &c, true, nil
	case *schemas.TaskUpdated:
		// A worker names itself: it may name itself with what it was given.
		output, reason, worker := r.Map(e.Output), r.String(e.Reason), r.String(e.WorkerID)
		if engine.SameMap(output, e.Output) && reason == e.Reason && worker == e.WorkerID {
			return ev, false, nil
		}
		c := *e
		c.Output, c.Reason, c.WorkerID = output, reason, worker
		return &c, true, nil
	case *schemas.TaskLogged:
		var lines []string
		for i, l := range e.Lines {
			if rl := r.String(l); rl != l {
				if lines == nil {
					lines = slices.Clone(e.Lines)
				}
				lines[i] = rl
			}
		}
		if lines == nil {
			return ev, false, nil
		}
		c := *e
		c.Lines = lines
		return &c, true, nil
	case *schemas.VariablesUpdated:
		vars := r.Map(e.Variables)
		if engine.SameMap(vars, e.Variables) {
			return ev, false, nil
		}
		c := *e
		c.Variables = vars
		return &c, true, nil
	case *schemas.WorkflowStatusChanged:
		output, reason := r.Map(e.Output), r.String(e.Reason)
		if engine.SameMap(output, e.Output) && reason == e.Reason {
			return ev, false, nil
		}
		c := *e
		c.Output, c.Reason = output, reason
		return &c, true, nil
	case *schemas.TaskStarted:
		worker := r.String(e.WorkerID)
		if worker == e.WorkerID {
			return ev, false, nil
		}
		c := *e
		c.WorkerID = worker
		return &c, true, nil
	}
	return ev, false, nil
}

// sealResolved returns refs with the values resolved for them sealed in
// (nil if it sealed none). A memo rebuilt after a restart opens them: the
// secret may be overwritten by then, and its old value's key destroyed,
// while the worker that took the old value still runs and may echo it.
func (p *protection) sealResolved(wf string, refs []schemas.ResolvedRef) ([]schemas.ResolvedRef, error) {
	var out []schemas.ResolvedRef
	for i, ref := range refs {
		if ref.Kind != "secret" || ref.Refused != "" || len(ref.Sealed) > 0 {
			continue
		}
		v := p.m.resolvedValue(ref.Name, ref.Version)
		if v == nil {
			// The memo was dropped since the hand-off (the table filled
			// up): the one rebuilt for this decision read the state
			// before it, which names no such resolution, and is not
			// rebuilt again. Look for the current version now, and
			// seal it when it is the one the hand-off resolved.
			if p.g == nil || p.g.cfg.Secrets == nil {
				continue
			}
			cur, version, err := p.g.cfg.Secrets.Resolve(p.ctx, ref.Name)
			if err != nil {
				continue
			}
			p.m.addSecret(cur)
			if version != ref.Version {
				clear(cur)
				continue
			}
			p.m.addResolved(ref.Name, ref.Version, cur)
			v = p.m.resolvedValue(ref.Name, ref.Version)
			clear(cur)
		}
		ct, err := p.s.Seal(masking.KindSecrets, resolvedPath(wf, ref), v)
		if err != nil {
			return nil, err
		}
		if out == nil {
			out = slices.Clone(refs)
		}
		out[i].Sealed = ct
		p.sealedSecrets = true
	}
	return out, nil
}

// resolvedPath is what a resolved value's seal is bound to: the workflow
// and the secret's version, not the task, whose refs a loop collapses
// into its own.
func resolvedPath(wf string, ref schemas.ResolvedRef) string {
	return wf + "/resolved/" + ref.Name + "/" + strconv.Itoa(ref.Version)
}

// jsonString decodes js as json.Unmarshal into a string does, and
// reports whether it could. The JSON of a sealed string (what sealing
// hands its callbacks) mostly escapes nothing: its text is read as it is,
// without the decoder, which was a tenth of protecting a secrets
// workflow's values.
func jsonString(js []byte) (string, bool) {
	if n := len(js); n >= 2 && js[0] == '"' && js[n-1] == '"' && !needsJSONEscape(js[1:n-1]) {
		return string(js[1 : n-1]), true
	}
	var s string
	if json.Unmarshal(js, &s) != nil {
		return "", false
	}
	return s, true
}

// needsJSONEscape reports whether json.Marshal writes text other than as
// it is: quotes, backslashes, control characters, <, > and & (which it
// escapes for HTML), and anything not ASCII (U+2028 and U+2029 are
// escaped, invalid UTF-8 replaced).
func needsJSONEscape(text []byte) bool {
	for _, c := range text {
		if c < 0x20 || c >= utf8.RuneSelf || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return true
		}
	}
	return false
}

// config protects the configuration of a task decided at run time (a
// dynamic fork's task, from a worker's output). Its inputParameters are
// values, which the task's input holds sealed: their copy, shown as the
// task's workflowTask, gets "***" under _secrets and _masked. The values
// resolved for the workflow are redacted from all of it (a planner may
// echo one into a description). A sealed value is definition no more
// than the rest: a retry reads the configuration again.
func (p *protection) config(raw json.RawMessage) (json.RawMessage, error) {
	if len(raw) == 0 {
		return raw, nil
	}
	r := p.m.get()
	params := bytes.Contains(raw, []byte(`"inputParameters"`))
	if r.Empty() && !params {
		return raw, nil
	}
	var cfg map[string]any
	if err := conductor.Unmarshal(raw, &cfg); err != nil {
		return nil, fmt.Errorf("task configuration: %w", err)
	}
	in, _ := cfg["inputParameters"].(map[string]any)
	masked := in != nil && masking.HoldsMaskedKey(in)
	if masked {
		cfg["inputParameters"] = masking.KeysMap(in)
	}
	redacted := r.Map(cfg)
	if !masked && engine.SameMap(redacted, cfg) {
		return raw, nil
	}
	return json.Marshal(redacted)
}

func hasAny(m map[string]any, keys []string) bool {
	for _, k := range keys {
		if _, ok := m[k]; ok {
			return true
		}
	}
	return false
}

// rebuild refills a workflow's redaction memo after a restart: the values
// resolved for its tasks (and for the tasks it dropped), and the plaintext
// of what it sealed. A resolved
// value is opened from the task's record; one recorded without it (by an
// engine that did not seal them, or whose memo was dropped before the
// record) is looked for as the secret's current version.
func (g *Guard) rebuild(ctx context.Context, w *engine.Workflow, m *memo) error {
	m.mu.Lock()
	// A state past the records the memo saw holds another engine's
	// records: looking through it again adds what they resolved and
	// sealed (the memo keeps one copy of each value).
	done := m.built && w.Seq <= m.seq
	m.built = true
	m.seq = max(m.seq, w.Seq)
	m.mu.Unlock()
	if done {
		return nil
	}
	s := sealer{ctx: ctx, keys: g.cfg.Keys, wfID: w.ID, secretsKey: secretsKeyOf(w)}
	open := g.opener(ctx, w)
	opened, current := map[secretVersion]bool{}, map[string]bool{}
	addRefs := func(refs []schemas.ResolvedRef) {
		for _, ref := range refs {
			if kind, ok := openedKinds[ref.Kind]; ok {
				// The starter's sealed data opened into a child's input
				// text (see keepOpened); gone with its key.
				if len(ref.Sealed) == 0 {
					continue
				}
				purpose, late := openedPath("wf/"+w.ID, ref.Name), isLateRef(ref.Name)
				switch {
				case late:
					purpose = latePath("wf/"+w.ID, ref.Name)
				case strings.HasPrefix(ref.Name, schemas.DroppedRefPrefix):
					// A value a task a restart, rerun or jump dropped held
					// sealed, under the purpose it was sealed with.
					purpose = strings.TrimPrefix(ref.Name, schemas.DroppedRefPrefix)
				}
				sv := &masking.Sealed{Kind: kind, Purpose: purpose, Ciphertext: ref.Sealed}
				if v, err := masking.Open(sv, open); err == nil {
					eachText(v, func(s string) {
						m.addSecret([]byte(s))
						if late {
							// Its copies are sealed under its kind, as
							// in the decision that found it.
							m.addKind(s, kind)
						}
					}, true)
				}
				continue
			}
			sv := secretVersion{ref.Name, ref.Version}
			if ref.Kind != "secret" || opened[sv] {
				continue
			}
			if len(ref.Sealed) > 0 {
				if v, err := s.Open(masking.KindSecrets, resolvedPath("wf/"+w.ID, ref), ref.Sealed); err == nil {
					opened[sv] = true
					m.addSecret(v)
					clear(v)
					continue
				}
			}
			if current[ref.Name] {
				continue
			}
			current[ref.Name] = true
			v, _, err := g.cfg.Secrets.Resolve(ctx, ref.Name)
			if err == nil {
				m.addSecret(v)
				clear(v)
			}
		}
	}
	addRefs(w.Resolved) // what tasks dropped by a restart, rerun or jump resolved, and sealed
	for _, t := range w.Tasks {
		addRefs(t.Resolved)
	}
	add := func(s string) { m.add([]byte(s)) }
	collect := func(v map[string]any) map[string]any {
		if !masking.HasSealed(v) {
			return v
		}
		o, err := masking.Open(v, open)
		opened, _ := o.(map[string]any)
		if err != nil || opened == nil {
			return v
		}
		// Every value it sealed, wherever: under _secrets and _masked, a
		// maskedFields field, a child's input resolved or sealed by its
		// parent (input.token).
		sealedPaths(v, nil, func(p expr.Path, kind byte) {
			if value, ok := getPath(opened, p); ok {
				if s, text := value.(string); text {
					m.addKind(s, kind)
				}
				// A JSON secret resolved whole into a child's input is
				// a string: its fields are looked for too.
				eachText(value, func(s string) { m.addSecret([]byte(s)) }, true)
			}
		})
		eachText(opened, add, false)
		return opened
	}
	collect(w.Input)
	collect(w.Output)
	collect(w.Variables)
	for _, t := range w.Tasks {
		// A task failed as it is scheduled wrote nothing, and its name
		// may be a value the workflow sealed (sealEvent marks it no
		// name): marked one, the value would no longer be looked for.
		failedAsScheduled := t.Status == conductor.TaskFailedWithTerminalError && t.PollCount == 0
		if in := collect(t.Input); t.Type == conductor.TaskTypeUpdateSecret && !failedAsScheduled {
			if name, ok := updatedSecretName(in); ok {
				m.addName(name)
			}
		}
		collect(t.Output)
	}
	return nil
}

// updatedSecretName is the name of the secret an UPDATE_SECRET task's
// input writes.
func updatedSecretName(input map[string]any) (string, bool) {
	block, _ := input[masking.KeySecrets].(map[string]any)
	name, ok := block["secretKey"].(string)
	return name, ok && name != ""
}

// eachLeaf calls fn for every value under a _secrets or _masked key (or
// everywhere, with all) that is neither a map nor a list.
func eachLeaf(v any, fn func(any), all bool) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			eachLeaf(e, fn, all || masking.IsMaskedKey(k))
		}
	case []any:
		for _, e := range x {
			eachLeaf(e, fn, all)
		}
	default:
		if all {
			fn(x)
		}
	}
}

// eachText calls fn for every string under a _secrets or _masked key (or
// everywhere, with all), and for every number there in each way it is
// written (see masking.NumberForms): what redaction looks for. A task that
// takes a number (${workflow.secrets.acct.pin}) writes it in a string
// ('pin ' + $.pin), or outputs it as it is.
func eachText(v any, fn func(string), all bool) {
	eachLeaf(v, func(x any) {
		if s, ok := x.(string); ok {
			fn(s)
			return
		}
		for _, s := range masking.NumberForms(x) {
			fn(s)
		}
	}, all)
}

// latePrefix names the values found to be secret later that a
// ValuesMasked record keeps sealed (schemas.ValuesMasked.Sealed).
const latePrefix = schemas.LateRefPrefix

func isLateRef(name string) bool { return schemas.IsLateRef(name) }

// latePath is what such a value is sealed under.
func latePath(wf, name string) string { return wf + "/" + name }

// keepLate seals, for the ValuesMasked record, each value of this pass
// that paths (findValues's) found kept as given elsewhere in w. The memo
// of a workflow is rebuilt from its state (by another engine, after a
// restart) from what it holds sealed: once a jump, rerun or restart has
// dropped the task whose _secrets block sealed the value, the value was
// looked for nowhere, and the output the workflow ended with (its
// outputParameters copying the input), or a later task's input, held it
// in plain text.
func (p *protection) keepLate(w *engine.Workflow, paths []string) ([]schemas.ResolvedRef, error) {
	if len(paths) == 0 {
		return nil, nil
	}
	n := 0
	for _, ref := range w.Resolved {
		if isLateRef(ref.Name) {
			n++
		}
	}
	var out []schemas.ResolvedRef
	var kept [][]byte
	for _, v := range p.sealed {
		if len(v) < masking.MinLength || slices.ContainsFunc(kept, func(k []byte) bool { return bytes.Equal(k, v) }) {
			continue
		}
		// paths holds one of them: which, only when there are several.
		if len(p.sealed) > 1 && len(findValues(w, [][]byte{v}, false, p.m.get())) == 0 {
			continue
		}
		kind, block := masking.KindMasked, masking.KeyMasked
		if slices.ContainsFunc(p.sealedSecretValues, func(s []byte) bool { return bytes.Equal(s, v) }) {
			kind, block = masking.KindSecrets, masking.KeySecrets
		}
		name := latePrefix + strconv.Itoa(n+len(out))
		plain, err := json.Marshal(string(v))
		if err != nil {
			return nil, err
		}
		ct, err := p.s.Seal(kind, latePath(p.wf, name), plain)
		clear(plain)
		if err != nil {
			return nil, fmt.Errorf("seal a value found to be secret: %w", err)
		}
		kept = append(kept, v)
		out = append(out, schemas.ResolvedRef{Kind: block, Name: name, Sealed: ct})
	}
	return out, nil
}

// findTexts returns the paths (see schemas.ValuesMasked.Texts) of the
// workflow's reason and its tasks' reasons and log lines in which r finds
// a value: written before the value was known to be secret (a failed
// attempt's reason quoting what its retry returned under _secrets).
func findTexts(w *engine.Workflow, r *masking.Redactor) []string {
	var out []string
	holds := func(s string) bool { return s != masking.Mask && r.String(s) != s }
	if holds(w.Reason) {
		out = append(out, engine.ReasonPath(""))
	}
	for _, t := range w.Tasks {
		if holds(t.Reason) {
			out = append(out, engine.ReasonPath(t.ID))
		}
		for i, l := range t.Logs {
			if holds(l.Log) {
				out = append(out, engine.LogPath(t.ID, i))
			}
		}
	}
	return out
}

// configMayHold returns whether a task configuration's JSON holds one of
// values as a JSON string's text.
func configMayHold(values [][]byte) func([]byte) bool {
	texts := make([][]byte, 0, len(values))
	for _, v := range values {
		if len(v) < masking.MinLength {
			continue
		}
		js, err := json.Marshal(string(v))
		if err != nil {
			continue
		}
		texts = append(texts, js[1:len(js)-1])
	}
	return func(cfg []byte) bool {
		return slices.ContainsFunc(texts, func(text []byte) bool { return bytes.Contains(cfg, text) })
	}
}

// configPaths returns the paths (see engine.ConfigField) of what cfg, the
// configuration of a task id configured at run time, holds of values: the
// top-level keys of its inputParameters, and the strings elsewhere in it,
// that hold one at any depth, whole or within text (a planner may write it
// into a description); the whole configuration when a member's name holds
// one, for a path would spell it. The members the engine names the task by
// (engine.ConfigNames) are left as given.
func configPaths(id string, cfg map[string]any, values [][]byte) []string {
	holds := holdsText(values)
	var out []string
	whole := false
	// walk adds the strings v holds, at the pointer made of toks.
	var walk func(v any, toks []string)
	walk = func(v any, toks []string) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				if holds(k) {
					whole = true
					return
				}
				walk(e, append(slices.Clip(toks), k))
			}
		case []any:
			for i, e := range x {
				walk(e, append(slices.Clip(toks), strconv.Itoa(i)))
			}
		case string:
			if holds(x) {
				out = append(out, engine.ConfigPath(id, toks...))
			}
		}
	}
	for k, v := range cfg {
		in, isMap := v.(map[string]any)
		switch {
		case engine.ConfigNames(k):
			continue
		case holds(k):
			whole = true
		case isMap && k == "inputParameters":
			for key, e := range in {
				switch {
				case holds(key):
					whole = true
				case holdsAny(e, holds):
					out = append(out, "task/"+id+engine.ConfigInputField+"."+key)
				}
			}
		default:
			walk(v, []string{k})
		}
	}
	if whole {
		return []string{engine.ConfigPath(id)}
	}
	return out
}

// holdsText returns whether a text holds one of values, those redaction
// looks for (masking.MinLength), whole or within it.
func holdsText(values [][]byte) func(string) bool {
	texts := make([]string, 0, len(values))
	for _, v := range values {
		if len(v) >= masking.MinLength {
			texts = append(texts, string(v))
		}
	}
	return func(s string) bool {
		return len(s) >= masking.MinLength && slices.ContainsFunc(texts, func(v string) bool { return strings.Contains(s, v) })
	}
}

// holdsAny reports whether v is, or holds at any depth, a string or a
// member's name that holds says holds a value.
func holdsAny(v any, holds func(string) bool) bool {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if holds(k) || holdsAny(e, holds) {
				return true
			}
		}
	case []any:
		return slices.ContainsFunc(x, func(e any) bool { return holdsAny(e, holds) })
	case string:
		return holds(x)
	}
	return false
}

// findValues returns the paths (see schemas.ValuesMasked) of top-level
// values of the workflow's input, output, variables and task inputs and outputs
// that are, or hold at any depth, a string equal to one of values, a text
// holding one (textFinder), or a member whose name holds one, and those of
// what run-time configurations hold of them (configPaths). A path never
// spells a value: paths are metadata, kept in the log, the state and the
// read models after compaction. So a top-level key whose name holds one
// marks the whole of the input, the variables, or the task's input or
// output it is in, by its path without a key ("input", "task/<id>/output").
// known is the workflow's redactor (its memo's), which looks for values
// among others.
func findValues(w *engine.Workflow, values [][]byte, shred bool, known *masking.Redactor) []string {
	if len(values) == 0 {
		return nil
	}
	marked := func(path string) bool { return slices.Contains(w.MaskedPaths, path) }
	if shred {
		marked = func(path string) bool { return slices.Contains(w.MaskedPaths, engine.ShredPath(path)) }
	}
	var out []string
	text := textFinder{values: values, known: known}
	var holds func(v any) bool
	holds = func(v any) bool {
		switch x := v.(type) {
		case string:
			return text.holds(x)
		case map[string]any:
			for k, e := range x {
				if text.holds(k) || holds(e) {
					return true
				}
			}
		case []any:
			return slices.ContainsFunc(x, holds)
		}
		return false
	}
	add := func(path string) {
		if !marked(path) && !slices.Contains(out, path) {
			out = append(out, path)
		}
	}
	// A path is made only for a value that holds one: a task's prefix
	// for each task, twice a sealing decision, was most of the walk's
	// garbage.
	match := func(prefix, taskID, field string, m map[string]any) {
		var keys []string
		for k, v := range m {
			if text.holds(k) {
				add(prefix + taskID + field)
				return
			}
			if holds(v) {
				keys = append(keys, k)
			}
		}
		if len(keys) == 0 || marked(prefix+taskID+field) {
			return
		}
		for _, k := range keys {
			add(prefix + taskID + field + "." + k)
		}
	}
	match("input", "", "", w.Input)
	// The output of a workflow that ended before it was told of the value
	// (a child whose parent found it): one written since is redacted.
	match("output", "", "", w.Output)
	match("variables", "", "", w.Variables)
	var inConfig func([]byte) bool // whether a configuration's JSON may hold a value
	for _, t := range w.Tasks {
		match("task/", t.ID, "/input", t.Input)
		match("task/", t.ID, "/output", t.Output)
		if len(t.Config) == 0 {
			continue
		}
		// A dynamic fork's task shows its configuration, which holds
		// values anywhere (a planner's output, resolved expressions):
		// decoded only when its JSON holds a value's text.
		if inConfig == nil {
			inConfig = configMayHold(values)
		}
		if !inConfig(t.Config) {
			continue
		}
		var cfg map[string]any
		if conductor.Unmarshal(t.Config, &cfg) != nil {
			continue
		}
		for _, path := range configPaths(t.ID, cfg, values) {
			add(path)
		}
	}
	slices.Sort(out)
	return out
}

// textFinder reports whether a text is or holds one of values, plain or
// in a form redaction looks for (masking.Redactor: JSON-escaped,
// URL-encoded, base64; a value shorter than masking.MinLength is not
// looked for), or a part of one that redaction looks for (masking.Parts):
// a value written before it was known to be secret is marked
// where redaction would have masked it ("Bearer <v>", "Basic <base64 of
// user:v>"). known, the workflow's redactor, looks for values among others
// and is built already: a text it leaves as it is holds no form of them,
// and a decision that finds no value builds no redactor of its own (the
// one of values alone, which says whether a text known redacts holds one
// of them, is built for the first such text).
type textFinder struct {
	values [][]byte
	known  *masking.Redactor
	r      *masking.Redactor // of values, built on first use
}

func (f *textFinder) holds(s string) bool {
	if len(s) < masking.MinLength || s == masking.Mask {
		return false
	}
	// Plain, also a value known does not look for (one the definition
	// shows, see memo.public), as a string equal to it always was.
	if slices.ContainsFunc(f.values, func(v []byte) bool { return len(v) >= masking.MinLength && strings.Contains(s, string(v)) }) {
		return true
	}
	if f.known != nil && f.known.String(s) == s {
		return false
	}
	if f.r == nil {
		f.r = masking.NewRedactor(masking.WithParts(f.values)...)
	}
	return f.r.String(s) != s
}
