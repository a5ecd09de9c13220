package engine

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/flowvault/flowvault/engine/expr"
	"github.com/flowvault/flowvault/masking"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// A value-param SWITCH or DECISION whose case value is sealed data (a
// value under _secrets or _masked, a copy of one, text built from one) or
// reads a secret is not decided by the decider: it sees the value only in
// the decision that sealed it (the result that brought it), and "***" in
// every later one, so the case taken would hang on timing. Its system
// worker decides it, as it does a JavaScript case, from the input handed
// to it, where the value is opened (and is "***" once compaction destroyed
// its key, as for any task). What it reports is the case of a secret: the
// task's output records the branch taken, not the value (maskCaseOutput).

// sealedCase reports whether input[param], the case value of a SWITCH or
// DECISION this decision schedules, evaluated from template tmpl, is sealed data
// or is made of it (see readSealed), and whether it is computed from it.
func (d *decision) sealedCase(tmpl, input map[string]any, deferred [][]any, param, taskID string) (sealed, computed bool) {
	r := d.readSealed(tmpl[param], input[param], slices.ContainsFunc(deferred, func(p []any) bool {
		return len(p) > 0 && p[0] == param
	}), taskID)
	return r != plainRead, r == computedRead
}

// sealedRead is what a value the decider reads itself (a SWITCH's case, a
// WAIT's duration, a sub-workflow's name) is made of.
type sealedRead int

const (
	plainRead sealedRead = iota
	// sealedDataRead: sealed data or a secret, whole or in text, which
	// the decider sees only in the decision that seals it ("***" in every
	// later one) and a hand-off opens.
	sealedDataRead
	// computedRead: computed by a function (sum(), concat(), ...) or a
	// filter's comparison from sealed data, which nothing computes again with the value opened: the
	// decision that seals the data computes it from the value, a later
	// one from "***".
	computedRead
)

// computingFuncs are the path functions whose result is computed from the
// values they read; the others give a count, keys or the values
// themselves (first(), append()), which stay sealed.
var computingFuncs = map[string]bool{"min": true, "max": true, "sum": true, "avg": true, "stddev": true, "concat": true}

// readSealed reports what v is made of, the value template tmpl gave in
// this decision for the task taskID (deferred: it kept references for the
// hand-off), alike in every decision: in the one that seals the data it
// is plain, and is recognised by the values its events bring under
// _secrets and _masked keys (a plain value equal to one counts too).
func (d *decision) readSealed(tmpl, v any, deferred bool, taskID string) sealedRead {
	s, isText := tmpl.(string)
	if isText && !deferred && !strings.Contains(s, "${") {
		return plainRead // the definition's text
	}
	r := &sealedReads{workflowDoc: &workflowDoc{w: d.w, taskID: taskID, d: d}, d: d}
	if isText && (strings.Contains(s, "(") || len(d.decisionMasked()) > 0) {
		// Evaluated again to see what it reads: text built in the
		// sealing decision holds the value, and a function's result
		// shows nothing of what it was computed from.
		if _, _, err := d.budget().Aside().EvaluateShared(s, r); err != nil {
			r.embedded, r.computed = false, false
		}
	}
	switch {
	case r.computed:
		return computedRead
	case deferred || r.embedded || d.holdsSealed(v):
		return sealedDataRead
	}
	return plainRead
}

// sealedReads is a workflow's document that notes what the decision
// treats as sealed among the values an evaluation embeds in text and the
// values its functions compute from.
type sealedReads struct {
	*workflowDoc
	d                  *decision
	embedded, computed bool
}

func (r *sealedReads) SealedRef(v any) (string, bool) {
	ref, ok := r.workflowDoc.SealedRef(v)
	if ok || r.d.holdsSealed(v) {
		r.embedded = true
	}
	return ref, ok
}

func (r *sealedReads) FuncOver(name string, model any, args []any) {
	if computingFuncs[name] && (r.d.holdsSealed(model) || slices.ContainsFunc(args, r.d.holdsSealed)) {
		r.computed = true
	}
}

// CompareOver notes a filter's comparison of sealed data: which elements
// the filter keeps is decided by the value in the decision that seals it
// and by "***" in a later one ([?(@.id == $.t.output._secrets.id)]).
func (r *sealedReads) CompareOver(_ string, lv, rv any) {
	if r.d.holdsSealed(lv) || r.d.holdsSealed(rv) {
		r.computed = true
	}
}

// holdsSealed reports whether v is or holds sealed data: sealed by an
// earlier decision, a whole block of it, or (sealed by the guard once this
// decision's events are) a value they bring under a _secrets or _masked
// key or in a maskedFields field of the input, or a copy of one. A plain
// value equal to one counts too, and the hand-off gives it as it is.
func (d *decision) holdsSealed(v any) bool {
	if v == nil {
		return false
	}
	if masking.HasSealed(v) || masking.HoldsMaskedKey(v) {
		return true
	}
	masked := d.decisionMasked()
	if len(masked) == 0 {
		return false
	}
	leaves := appendMasked([]string{expr.Text(v)}, v, true, func(v any) (string, bool) {
		return expr.Text(v), v != nil
	})
	for _, x := range masked {
		if slices.Contains(leaves, x) {
			return true
		}
	}
	return false
}

// decisionMasked returns the case texts of the values this decision's
// events bring under _secrets and _masked keys or in the input's
// maskedFields fields, read once each.
func (d *decision) decisionMasked() []string {
	for _, ev := range d.events[d.casesRead:] {
		for _, m := range eventData(withoutSecretName(ev)) {
			d.maskedCases = appendMasked(d.maskedCases, m, false, caseText)
		}
		d.maskedCases = d.appendMaskedFields(d.maskedCases, ev, caseText)
	}
	d.casesRead = len(d.events)
	return d.maskedCases
}

// withoutSecretName is ev without the name an UPDATE_SECRET it schedules
// holds under _secrets: the secret is listed by it, and the guard takes
// it as a name, not a value to seal, so that UPDATE_SECRETs of one secret
// scheduled together (a fork's branches) read it as plain data.
func withoutSecretName(ev schemas.Event) schemas.Event {
	e, ok := ev.(*schemas.TaskScheduled)
	if !ok || e.Type != conductor.TaskTypeUpdateSecret {
		return ev
	}
	block, ok := e.Input[masking.KeySecrets].(map[string]any)
	if _, named := block["secretKey"]; !ok || !named {
		return ev
	}
	c := *e
	c.Input = withoutSecretKey(e.Input, block)
	return &c
}

// caseText is a leaf's case text (expr.Text), for appendMasked.
func caseText(v any) (string, bool) { return expr.Text(v), true }

// scriptCase reports whether a SWITCH or DECISION of type typ takes its
// case from a script (JavaScript), not from a value of its input. A
// DECISION's caseExpression, when not blank, stands over its
// caseValueParam, as in Conductor's DecisionTaskMapper.
func scriptCase(typ string, wt *conductor.WorkflowTask) bool {
	if typ == conductor.TaskTypeSwitch {
		return wt.EvaluatorType == "javascript" || wt.EvaluatorType == "graaljs"
	}
	return conductor.DecisionScript(wt.CaseExpression)
}

// caseFromSecret reports whether a SWITCH or DECISION that a system worker
// completed chose its case from sealed data or a secret: a value-param
// one is handed to it for no other reason (sealedCase), a script one when
// its input holds sealed values, or deferred text that reads a secret or
// sealed data at hand-off.
func caseFromSecret(t *Task, wt *conductor.WorkflowTask) bool {
	if !scriptCase(t.Type, wt) || masking.HasSealed(t.Input) {
		return true
	}
	for _, p := range t.Deferred {
		s, _ := expr.Path(p).In(t.Input)
		if str, ok := s.(string); ok && (strings.Contains(str, "{workflow.secrets.") || strings.Contains(str, "{"+expr.SealedPrefix)) {
			return true
		}
	}
	return false
}

// maskCaseOutput returns the output of a SWITCH or DECISION that chose its
// case from sealed data or a secret with the case it reports masked: the
// case is the value, or computed from it, and a value shorter than
// redaction looks for would be stored as it is. The branch taken is
// recorded (Task.Case) and shows in the tasks that run.
func maskCaseOutput(out map[string]any) map[string]any {
	_, sel := out["selectedCase"]
	_, res := out["evaluationResult"]
	_, dec := out["caseOutput"]
	if !sel && !res && !dec {
		return out
	}
	c := copyMap(out)
	if sel {
		c["selectedCase"] = masking.Mask
	}
	if res {
		c["evaluationResult"] = []any{masking.Mask}
	}
	if dec {
		c["caseOutput"] = []any{masking.Mask}
	}
	return c
}

// readsSealed says why a task the decider runs itself may not run with
// the input keys it reads, or "": a value sealed, made of sealed data or
// a secret, or computed from them, which the decider would read as the
// value in the decision that seals it and as "***" in every later one.
// The reason names the key, never the value.
func (d *decision) readsSealed(ev *schemas.TaskScheduled, tmpl map[string]any, keys ...string) string {
	for _, k := range keys {
		deferred := slices.ContainsFunc(ev.Deferred, func(p []any) bool { return len(p) > 0 && p[0] == k })
		if r := d.readSealed(tmpl[k], ev.Input[k], deferred, ev.TaskID); r != plainRead {
			return sealedReason(k, r)
		}
	}
	return ""
}

// readsSealedAt is readsSealed for the value at path in a task's input (a
// START_WORKFLOW's startWorkflow.correlationId); the reason names the
// path. Where the template gives the path's object whole from one
// expression, the value alone tells what it holds.
func (d *decision) readsSealedAt(ev *schemas.TaskScheduled, tmpl map[string]any, path ...string) string {
	var t, v any = tmpl, ev.Input
	for _, k := range path {
		tm, _ := t.(map[string]any)
		vm, _ := v.(map[string]any)
		t, v = tm[k], vm[k]
	}
	deferred := slices.ContainsFunc(ev.Deferred, func(p []any) bool {
		if len(p) < len(path) {
			return false
		}
		for i, k := range path {
			if p[i] != k {
				return false
			}
		}
		return true
	})
	if r := d.readSealed(t, v, deferred, ev.TaskID); r != plainRead {
		return sealedReason(strings.Join(path, "."), r)
	}
	return ""
}

// paramSealed is readsSealed for a field of a task's configuration that
// the decider evaluates itself (a sub-workflow's name).
func (d *decision) paramSealed(taskID, field, tmpl string) string {
	if !strings.Contains(tmpl, "${") {
		return ""
	}
	v, deferred, err := d.evaluateAside(map[string]any{"v": tmpl}, taskID)
	if err != nil {
		return "" // reported where the field is read
	}
	if r := d.readSealed(tmpl, v["v"], len(deferred) > 0, taskID); r != plainRead {
		return sealedReason(field, r)
	}
	return ""
}

func sealedReason(field string, r sealedRead) string {
	what := "is sealed data, a secret or an environment value, or text made of them"
	if r == computedRead {
		what = "is computed by a function or a filter from sealed data or a secret"
	}
	return fmt.Sprintf("%s %s, which the engine does not read: give it as plain data", field, what)
}

// computedInput names the first key, in key order, of a task's input
// template (inputTemplate) whose value is computed by a function or a filter from
// sealed data or a secret, or "". Nothing computes such a value again
// with the data opened: the decision that seals the data computes it from
// the value (and would store the result in plain text), a later one from
// "***" (concat() gives "", a filter keeps nothing), so that the task
// would be handed what timing chose. A SWITCH's or DECISION's case value
// is left to prepare, which says so in a case's own words.
func (d *decision) computedInput(wt *conductor.WorkflowTask, eff conductor.EffectiveTaskDef, taskID string) string {
	if !callsFunction(wt.InputParameters) && !callsFunction(eff.InputTemplate) {
		return "" // as most tasks: nothing computed
	}
	tmpl := inputTemplate(wt, eff)
	skip := ""
	if t := wt.TaskType(); (t == conductor.TaskTypeSwitch || t == conductor.TaskTypeDecision) && !scriptCase(t, wt) {
		skip = wt.CaseValueParam
		if t == conductor.TaskTypeSwitch && wt.Expression != "" {
			skip = wt.Expression
		}
	}
	for _, k := range slices.Sorted(maps.Keys(tmpl)) {
		if k == skip || !callsFunction(tmpl[k]) {
			continue
		}
		r := &sealedReads{workflowDoc: &workflowDoc{w: d.w, taskID: taskID, d: d}, d: d}
		if _, _, err := d.budget().Aside().EvaluateShared(tmpl[k], r); err == nil && r.computed {
			return k
		}
	}
	return ""
}

// callsFunction reports whether template v holds an expression that may
// call a function or filter ("(" in it): only those compute a value.
func callsFunction(v any) bool {
	switch v := v.(type) {
	case string:
		i := strings.Index(v, "${")
		return i >= 0 && strings.Contains(v[i:], "(")
	case map[string]any:
		for _, x := range v {
			if callsFunction(x) {
				return true
			}
		}
	case []any:
		return slices.ContainsFunc(v, callsFunction)
	}
	return false
}

func computedInputReason(typ, ref, key string) string {
	return fmt.Sprintf("%s %s: input %s is computed by a function or a filter from sealed data or a secret, which the engine "+
		"does not compute (it holds the data sealed): compute it where the values are handed over (in the task itself, an INLINE task's script)",
		typ, ref, key)
}
