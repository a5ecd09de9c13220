package engine

import (
	"strings"

	"github.com/flowvault/flowvault/engine/expr"
	"github.com/flowvault/flowvault/masking"
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
// DECISION this decision schedules, is sealed data or is made of it.
func (d *decision) sealedCase(input map[string]any, deferred [][]any, param string) bool {
	for _, p := range deferred {
		if len(p) > 0 && p[0] == param {
			return true // a secret, or sealed data embedded in text
		}
	}
	v := input[param]
	if masking.HasSealed(v) || masking.HoldsMaskedKey(v) {
		return true // sealed by an earlier decision, or whole data holding a block
	}
	// Sealed by the guard once this decision's events are: a value they
	// bring under a _secrets or _masked key, or a copy of one. A plain
	// value equal to one is handed off too, and its worker takes the same
	// case the decider would.
	for _, ev := range d.events[d.casesRead:] {
		for _, m := range eventData(ev) {
			d.maskedCases = appendMasked(d.maskedCases, m, false, caseText)
		}
	}
	d.casesRead = len(d.events)
	c := conductor.SwitchCase(v)
	for _, x := range d.maskedCases {
		if x == c {
			return true
		}
	}
	return false
}

// caseText is a leaf's case text (conductor.SwitchCase), for appendMasked.
func caseText(v any) (string, bool) { return conductor.SwitchCase(v), true }

// scriptCase reports whether a SWITCH or DECISION of type typ takes its
// case from a script (JavaScript), not from a value of its input.
func scriptCase(typ string, wt *conductor.WorkflowTask) bool {
	if typ == conductor.TaskTypeSwitch {
		return wt.EvaluatorType == "javascript" || wt.EvaluatorType == "graaljs"
	}
	return wt.CaseValueParam == "" && wt.CaseExpression != ""
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
	if !sel && !res {
		return out
	}
	c := copyMap(out)
	if sel {
		c["selectedCase"] = masking.Mask
	}
	if res {
		c["evaluationResult"] = []any{masking.Mask}
	}
	return c
}
