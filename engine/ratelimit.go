package engine

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/flowvault/flowvault/engine/expr"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/masking"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// RateLimit is what a workflow definition's rateLimitConfig (Orkes's
// workflow rate limit) asks of one start: at most Limit workflows of the
// definition's name running under Key, the others queued.
type RateLimit struct {
	Limit int
	Key   string
}

func (r *RateLimit) key() string {
	if r == nil {
		return ""
	}
	return r.Key
}

// sealedMark stands for the data of a start's input no key may read: the
// fields maskedFields names and whatever is under _secrets or _masked.
const sealedMark = "\uf8ffsealed\uf8ff" // private use: no encoding escapes it

// RateLimitOf returns the limit def's rateLimitConfig puts on a start of
// req, nil for none: no config, a concurrentExecLimit of 0 or less, or a
// rateLimitKey that reads as empty text (Orkes leaves a workflow without
// a correlation id unlimited under "${workflow.correlationId}"). A config
// without rateLimitKey limits the definition's workflows together.
//
// The key is text with expressions of the start: ${workflow.correlationId},
// ${workflow.input.…}, ${workflow.workflowType}, ${workflow.version}. The
// executor keeps it, and it shows in the execution: one that reads a
// secret, an environment value, a masked field or sealed data is refused
// (fault.ErrInvalid), as is a config Orkes's model cannot hold.
func RateLimitOf(def *conductor.WorkflowDef, req conductor.StartWorkflowRequest) (*RateLimit, error) {
	return RateLimitUnder(def.RateLimitConfig, def, req, false)
}

// RateLimitUnder is RateLimitOf with cfg in place of def's own
// rateLimitConfig: that of the registered definition of def's name, for a
// start of an inline definition (see executor.StartWorkflow). The key
// reads def's start, and what def seals of it, for def is what runs.
//
// fromWorkflow tells a start a workflow asks for (a SUB_WORKFLOW's
// child, a START_WORKFLOW's, a failure workflow, whose input is the
// failed run's view and reason), whose input and correlation id its
// starter made of its own data: there, "***" is what redaction left of a value
// (a variable set from a secret, from _secrets data or from a masked
// field), and a key that reads it is refused as one that reads sealed
// data, never kept as "***", a line every such start would share.
func RateLimitUnder(cfg map[string]any, def *conductor.WorkflowDef, req conductor.StartWorkflowRequest, fromWorkflow bool) (*RateLimit, error) {
	if cfg == nil {
		return nil, nil
	}
	limit, err := configLimit(cfg["concurrentExecLimit"])
	if err != nil || limit <= 0 {
		return nil, err
	}
	tmpl, ok := cfg["rateLimitKey"].(string)
	if !ok && cfg["rateLimitKey"] != nil {
		return nil, fault.Invalid("rateLimitConfig.rateLimitKey: want text")
	}
	if tmpl == "" {
		return &RateLimit{Limit: limit}, nil
	}
	version := def.Version
	if version == 0 {
		version = 1
	}
	input := StartInput(def, req.Input)
	raw := def.Raw
	if len(raw) == 0 {
		var err error
		if raw, err = json.Marshal(def); err != nil {
			return nil, fmt.Errorf("rateLimitConfig: %w", err)
		}
	}
	// An input the definition copies into a _secrets or _masked block is
	// secret, sealed at the start or once the task that takes it is
	// scheduled: for a queued start, after the key is recorded. The plan
	// the start builds anyway knows which (read once per definition).
	secrecy, err := SecretInput(raw)
	if err != nil {
		return nil, fault.Invalid("rateLimitConfig: %v", err)
	}
	hidden := slices.Concat(def.MaskedFields, secrecy.sealedKeys(input))
	correlationID := req.CorrelationID
	if fromWorkflow && strings.Contains(correlationID, masking.Mask) {
		correlationID = sealedMark
	}
	doc := expr.MapDoc{"workflow": map[string]any{
		"correlationId": correlationID,
		"input":         markSealed(input, hidden, false, fromWorkflow),
		"workflowType":  def.Name,
		"version":       version,
	}}
	v, deferred, err := expr.Evaluate(tmpl, doc)
	if err != nil {
		return nil, fault.Invalid("rateLimitConfig.rateLimitKey: %v", err)
	}
	if len(deferred) > 0 || ReadsSealed(v) {
		return nil, fault.Invalid("rateLimitConfig.rateLimitKey reads a secret, an environment value, a masked field or sealed data " +
			"(or, for a workflow another starts, a value its starter kept as \"***\"): the key is kept and shown")
	}
	// As an idempotency key is read: a number as its JSON text (1, not
	// the 1.0 of a double interpolated into text).
	key, ok := KeyText(v)
	if !ok {
		return nil, fault.Invalid("rateLimitConfig.rateLimitKey: reads an object or a list, want text")
	}
	if key == "" {
		return nil, nil
	}
	if len(key) > MaxRateLimitKeyLen {
		// Not quoted: it is the start's data, and long.
		return nil, fault.Invalid("rateLimitConfig.rateLimitKey: reads %d bytes, at most %d", len(key), MaxRateLimitKeyLen)
	}
	return &RateLimit{Limit: limit, Key: key}, nil
}

// MaxRateLimitKeyLen bounds a workflow rate limit key, in bytes. The key
// names a group of a definition's workflows as the definition's name names
// them all, and is bounded as names are (metadata.MaxNameLen): it is kept
// in each start's record and the workflow's read model, shown by the
// execution and indexed for search, on every start.
const MaxRateLimitKeyLen = 256

// ConcurrentExecLimit is def's rateLimitConfig's concurrentExecLimit, 0
// for none (or one no start could use).
func ConcurrentExecLimit(def *conductor.WorkflowDef) int {
	n, err := configLimit(def.RateLimitConfig["concurrentExecLimit"])
	if err != nil {
		return 0
	}
	return n
}

// configLimit reads concurrentExecLimit as Orkes's model holds it: an
// int32 (JSON gives a float64; 0 when absent).
func configLimit(v any) (int, error) {
	var f float64
	switch n := v.(type) {
	case nil:
		return 0, nil
	case float64:
		f = n
	case int:
		f = float64(n)
	case int64:
		f = float64(n)
	case json.Number:
		var err error
		if f, err = n.Float64(); err != nil {
			return 0, fault.Invalid("rateLimitConfig.concurrentExecLimit: %q is not a number", n)
		}
	case string:
		var err error
		if f, err = strconv.ParseFloat(n, 64); err != nil {
			return 0, fault.Invalid("rateLimitConfig.concurrentExecLimit: %q is not a number", n)
		}
	default:
		return 0, fault.Invalid("rateLimitConfig.concurrentExecLimit: want a number")
	}
	if f != math.Trunc(f) || f > math.MaxInt32 || f < math.MinInt32 {
		return 0, fault.Invalid("rateLimitConfig.concurrentExecLimit: %v is not a 32-bit integer", f)
	}
	return int(f), nil
}

// MarkSealed is input with what a workflow would seal of it (the fields
// masked names, whatever is under _secrets or _masked) replaced by a
// mark, for a key read from a start's input that is kept and shown as
// text: ReadsSealed tells whether such a key read any of it.
func MarkSealed(input map[string]any, masked []string) any {
	return markSealed(input, masked, false, false)
}

// ReadsSealed reports whether v, read from what MarkSealed returned, read
// data a workflow would seal.
func ReadsSealed(v any) bool {
	s, _ := v.(string)
	return masking.HasSealed(v) || strings.Contains(s, sealedMark)
}

// markSealed copies v with sealedMark in place of what a rate limit key
// must not read: the top-level fields masked names, and everything under
// a _secrets or _masked key at any depth; with redacted, text holding
// "***" too (see RateLimitUnder's fromWorkflow). Below a hidden key,
// every leaf is the mark, so that a path into it reads the mark too, not
// nothing.
func markSealed(v any, masked []string, under, redacted bool) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			hide := under || masking.IsMaskedKey(k) || slices.Contains(masked, k)
			out[k] = markSealed(e, nil, hide, redacted)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = markSealed(e, nil, under, redacted)
		}
		return out
	case string:
		if redacted && strings.Contains(x, masking.Mask) {
			return sealedMark
		}
	}
	if under {
		return sealedMark
	}
	return v
}

// admit schedules the first tasks of a workflow queued by its rate limit.
func (d *decision) admit() {
	if !d.w.Queued || d.w.Terminal() {
		return
	}
	d.emit(&schemas.WorkflowAdmitted{Time: d.now})
	if d.w.Status == conductor.WorkflowPaused {
		// It takes its place, as a paused workflow keeps one, but nothing
		// is scheduled for a paused workflow: resume schedules its first
		// tasks (scheduleAdmitted).
		return
	}
	d.scheduleAdmitted()
}

// scheduleAdmitted schedules the first tasks of a workflow admitted
// while paused: the only running workflow without a task whose
// definition has some.
func (d *decision) scheduleAdmitted() {
	if tasks := d.plan.def.Tasks; len(tasks) > 0 && len(d.w.Tasks) == 0 && !d.w.Queued {
		d.schedule(tasks[0], scheduleOpts{})
	}
}
