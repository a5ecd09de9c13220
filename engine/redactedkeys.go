package engine

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/flowvault/flowvault/engine/expr"
	"github.com/flowvault/flowvault/masking"
)

// A key a workflow gives the workflow it starts (a SUB_WORKFLOW's or a
// START_WORKFLOW's idempotency key) is kept, shown and matched as plain
// text. A value redacted before it was stored (a variable or an output
// set from a secret, from _secrets data or from a masked field) reads
// "***" in every decision after the one that brought it: no longer sealed,
// nothing but that text tells it from plain data. A key read from one
// would be "***" (or "k-***") for every workflow so keyed, which would
// then share it: it is refused, as a key read from sealed data is.

// redactedReads is a workflow's document that notes whether an
// evaluation embeds in text a value that is or holds "***".
type redactedReads struct {
	*workflowDoc
	embedded, redacted bool
}

// SealedRef is asked of every value embedded in text: it is where the
// values read meet the template's own text.
func (r *redactedReads) SealedRef(v any) (string, bool) {
	r.embedded = true
	if holdsMask(v) {
		r.redacted = true
	}
	return r.workflowDoc.SealedRef(v)
}

// readsRedacted reports whether key template tmpl, evaluated for task
// taskID of w, reads a value that is or holds "***", which the
// template's own text does not count as. v is the value tmpl gave where
// tmpl is nil: the object holding it was read whole from the workflow's
// data ("startWorkflow": "${workflow.variables.request}").
func readsRedacted(w *Workflow, d *decision, taskID string, tmpl, v any) bool {
	s, isText := tmpl.(string)
	switch {
	case tmpl == nil:
		return holdsMask(v)
	case !isText || !strings.Contains(s, "${"):
		return false // the definition's text
	}
	r := &redactedReads{workflowDoc: &workflowDoc{w: w, taskID: taskID, d: d}}
	val, _, err := expr.EvaluateShared(s, r)
	if err != nil {
		return false // reported where the key is read
	}
	if r.embedded {
		return r.redacted
	}
	return holdsMask(val) // one expression: its value is what it read
}

// redactedKeyReason says why a key field read from a redacted value may
// not be one: never the value, which reads "***" anyway.
func redactedKeyReason(field string) string {
	return fmt.Sprintf("%s reads a value kept as %q (a secret, sealed or masked data that a variable or an output took in, redacted): "+
		"the key would be that text, kept and shown, and shared by every workflow so keyed: give it as plain data", field, masking.Mask)
}

// holdsMask reports whether v is or holds text with "***" in it; an
// object or a list as the JSON text a key embeds it as, its keys too
// (redaction renames a key that holds a value).
func holdsMask(v any) bool {
	switch x := v.(type) {
	case string:
		return strings.Contains(x, masking.Mask)
	case map[string]any, []any:
		b, err := json.Marshal(x)
		return err == nil && bytes.Contains(b, []byte(masking.Mask))
	}
	return false
}
