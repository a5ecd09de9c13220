package metadata

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/flowvault/flowvault/engine/expr"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/internal/taglimit"
	"github.com/flowvault/flowvault/schemacheck"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// MaxNameLen bounds a definition name, in bytes. Names become subject
// tokens and Pebble keys; Conductor itself sets no limit.
const MaxNameLen = 256

// MaxTags bounds a name's tag set and MaxTagLen a tag's key and its value,
// in bytes: the limits every holder of tags keeps to (see taglimit).
const (
	MaxTags   = taglimit.Max
	MaxTagLen = taglimit.MaxLen
)

// registration is a validated definition, ready to become events.
type registration struct {
	name    string
	version int    // workflows only: the effective version
	raw     []byte // the JSON as received
	// tags is nil when the registration carries no "tags"; otherwise the
	// tags to apply, replacing the current set when overwriteTags is true.
	tags          []schemas.DefTag
	overwriteTags bool
}

// at joins a path prefix ("" or "[3]") and a field path.
func at(prefix, path string) string {
	switch {
	case prefix == "":
		return path
	case path == "" || strings.HasPrefix(path, "["):
		return prefix + path
	}
	return prefix + "." + path
}

// checkName reports what is wrong with a definition name.
func checkName(ve *fault.ValidationError, path, name string) {
	switch {
	case name == "":
		ve.Add(path, "must not be empty")
	case len(name) > MaxNameLen:
		ve.Add(path, "must be at most %d bytes", MaxNameLen)
	case !utf8.ValidString(name):
		ve.Add(path, "must be valid UTF-8")
	case strings.ContainsFunc(name, unicode.IsControl):
		ve.Add(path, "must not contain control characters")
	}
}

// registrable reports whether name passes checkName. No other name was
// ever registered, so the log is never asked of one: a name of a megabyte
// makes a subject past the NATS server's max_control_line, which closes
// the connection the log shares.
func registrable(name string) bool {
	ve := &fault.ValidationError{}
	checkName(ve, "name", name)
	return ve.Err() == nil
}

// topLevel decodes the registration's top-level members, for what the
// typed struct cannot tell: whether "version" was given, "overwriteTags".
func topLevel(raw []byte, prefix string) (map[string][]byte, error) {
	fields, err := splitObject(raw)
	if err != nil {
		if prefix == "" {
			return nil, fault.Invalid("definition must be a JSON object")
		}
		ve := &fault.ValidationError{}
		ve.Add(prefix, "must be a JSON object")
		return nil, ve
	}
	m := make(map[string][]byte, len(fields))
	for _, f := range fields {
		m[f.key] = f.value
	}
	return m, nil
}

// rawJSON returns the JSON a definition was decoded from, or its encoding
// when it was built in Go.
func rawJSON(decoded json.RawMessage, v any) ([]byte, bool, error) {
	if len(decoded) > 0 {
		return decoded, true, nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, false, fault.Invalid("encode definition: %v", err)
	}
	return b, false, nil
}

// prepareWorkflow validates def. prefix locates def in a list ("[2]").
func prepareWorkflow(def *conductor.WorkflowDef, prefix string, hook func(*conductor.WorkflowDef) error) (registration, error) {
	return checkWorkflow(def, prefix, hook, true)
}

// checkWorkflow validates def; its version only when it is to be stored.
func checkWorkflow(def *conductor.WorkflowDef, prefix string, hook func(*conductor.WorkflowDef) error, stored bool) (registration, error) {
	if def == nil {
		return registration{}, nullDef(prefix)
	}
	raw, fromJSON, err := rawJSON(def.Raw, def)
	if err != nil {
		return registration{}, err
	}
	top, err := topLevel(raw, prefix)
	if err != nil {
		return registration{}, err
	}
	ve := &fault.ValidationError{}
	checkName(ve, at(prefix, "name"), def.Name)
	reg := registration{name: def.Name, raw: raw, version: def.Version}
	explicit := fromJSON && !isNull(top[jsonVersion])
	switch {
	case !stored:
	case def.Version == 0 && !explicit:
		reg.version = 1
	case def.Version < 1:
		ve.Add(at(prefix, "version"), "must be at least 1")
	case def.Version > math.MaxInt32:
		ve.Add(at(prefix, "version"), "must be at most %d", math.MaxInt32)
	}
	if len(def.Tasks) == 0 {
		ve.Add(at(prefix, "tasks"), "must not be empty")
	}
	checkEnum(ve, at(prefix, "timeoutPolicy"), def.TimeoutPolicy, workflowTimeoutPolicies)
	checkMin(ve, at(prefix, "timeoutSeconds"), def.TimeoutSeconds, 0)
	// Conductor knows only schema version 2 and refuses any other it is
	// given, 0 included; absent, it is 2.
	if !isNull(top["schemaVersion"]) && def.SchemaVersion != 2 {
		ve.Add(at(prefix, "schemaVersion"), "must be 2")
	}
	checkTasks(ve, at(prefix, "tasks"), def.Tasks)
	checkSchema(ve, at(prefix, "inputSchema"), def.InputSchema)
	checkSchema(ve, at(prefix, "outputSchema"), def.OutputSchema)
	reg.tags, reg.overwriteTags = prepareTags(ve, prefix, def.Tags, top)
	if err := ve.Err(); err != nil {
		return registration{}, err
	}
	if hook != nil {
		if err := hook(def); err != nil {
			return registration{}, prefixed(prefix, err)
		}
	}
	return reg, nil
}

// prepareTask validates def. prefix locates def in a list ("[2]").
func prepareTask(def *conductor.TaskDef, prefix string) (registration, error) {
	if def == nil {
		return registration{}, nullDef(prefix)
	}
	raw, _, err := rawJSON(def.Raw, def)
	if err != nil {
		return registration{}, err
	}
	top, err := topLevel(raw, prefix)
	if err != nil {
		return registration{}, err
	}
	ve := &fault.ValidationError{}
	checkName(ve, at(prefix, "name"), def.Name)
	checkTaskDef(ve, prefix, def)
	reg := registration{name: def.Name, raw: raw}
	reg.tags, reg.overwriteTags = prepareTags(ve, prefix, def.Tags, top)
	return reg, ve.Err()
}

// The enums Conductor's definitions accept (its JSON Schemas of WorkflowDef
// and TaskDef). An empty value is an absent one: the default applies.
var (
	workflowTimeoutPolicies = []string{conductor.TimeoutPolicyTimeOutWF, conductor.TimeoutPolicyAlertOnly}
	taskTimeoutPolicies     = []string{conductor.TimeoutPolicyRetry, conductor.TimeoutPolicyTimeOutWF, conductor.TimeoutPolicyAlertOnly}
	retryLogics             = []string{conductor.RetryFixed, conductor.RetryExponentialBackoff, conductor.RetryLinearBackoff}
)

// checkTaskDef checks a task definition's policies and numbers against
// what Conductor accepts, and its inputTemplate's reads of secrets and
// environment values. The engine would otherwise run a misspelt policy
// as another one (a timeoutPolicy of "TIMEOUT_WF" retries the task instead
// of timing the workflow out) and a negative count or timeout as whatever
// its arithmetic makes of it. Absent fields stay valid: defaults apply.
func checkTaskDef(ve *fault.ValidationError, prefix string, def *conductor.TaskDef) {
	checkEnum(ve, at(prefix, "timeoutPolicy"), def.TimeoutPolicy, taskTimeoutPolicies)
	checkEnum(ve, at(prefix, "retryLogic"), def.RetryLogic, retryLogics)
	checkMinPtr(ve, at(prefix, "retryCount"), def.RetryCount, 0)
	checkMin(ve, at(prefix, "timeoutSeconds"), def.TimeoutSeconds, 0)
	checkMinPtr(ve, at(prefix, "retryDelaySeconds"), def.RetryDelaySeconds, 0)
	checkMinPtr(ve, at(prefix, "responseTimeoutSeconds"), def.ResponseTimeoutSeconds, 1)
	if r := def.ResponseTimeoutSeconds; r != nil && def.TimeoutSeconds > 0 && *r > def.TimeoutSeconds {
		// Conductor's TaskTimeoutConstraint: the task would time out
		// before a worker is ever late. (Conductor also holds an absent
		// responseTimeoutSeconds, its default an hour, to this.)
		ve.Add(at(prefix, "responseTimeoutSeconds"), "%d must be at most timeoutSeconds (%d)", *r, def.TimeoutSeconds)
	}
	checkMin(ve, at(prefix, "concurrentExecLimit"), def.ConcurrentExecLimit, 0)
	checkMin(ve, at(prefix, "rateLimitPerFrequency"), def.RateLimitPerFrequency, 0)
	// The schema's minimum is 1, but Conductor's TaskDef sets none and its
	// rate limiter reads 0 as "no limit"; 0 is also what an absent field
	// decodes to here.
	checkMin(ve, at(prefix, "rateLimitFrequencyInSeconds"), def.RateLimitFrequencyInSeconds, 0)
	checkMinPtr(ve, at(prefix, "pollTimeoutSeconds"), def.PollTimeoutSeconds, 0)
	checkMinPtr(ve, at(prefix, "backoffScaleFactor"), def.BackoffScaleFactor, 1)
	checkMin(ve, at(prefix, "totalTimeoutSeconds"), def.TotalTimeoutSeconds, 0)
	if def.TimeoutSeconds > 0 && def.TotalTimeoutSeconds > 0 && def.TimeoutSeconds > def.TotalTimeoutSeconds {
		// Conductor's TaskTimeoutConstraint again: the attempts' budget
		// would end before the first attempt could time out.
		ve.Add(at(prefix, "timeoutSeconds"), "%d must be at most totalTimeoutSeconds (%d)", def.TimeoutSeconds, def.TotalTimeoutSeconds)
	}
	checkMin(ve, at(prefix, "maxRetryDelaySeconds"), def.MaxRetryDelaySeconds, 0)
	checkMin(ve, at(prefix, "backoffJitterMs"), def.BackoffJitterMs, 0)
	checkSchema(ve, at(prefix, "inputSchema"), def.InputSchema)
	checkSchema(ve, at(prefix, "outputSchema"), def.OutputSchema)
	// A task's input is evaluated over this template as over its
	// inputParameters, where the engine refuses a secret or environment
	// value read from the document (it reads null, and the key falls back
	// to the template's text) or by a name none can have.
	for _, pe := range append(expr.MisplacedDeferred(def.InputTemplate), expr.ImpossibleNames(def.InputTemplate)...) {
		ve.Add(at(at(prefix, "inputTemplate"), pe.Path), "%v", pe.Err)
	}
}

// checkSchema requires a schema a definition names to have a name, or
// data that compiles: a schema to enforce that cannot be would fail every
// start or task it is enforced on. One named without data is looked up
// when enforced, and may be saved after the definition.
func checkSchema(ve *fault.ValidationError, path string, ref *conductor.SchemaDef) {
	switch {
	case ref == nil:
	case schemacheck.HasData(ref):
		if _, err := schemacheck.Compile(ref); err != nil {
			ve.Add(path, "%v", err)
		}
	case ref.Name == "":
		ve.Add(path+".name", "must name a schema, or the schema carry its data")
	case ref.Type != "" && ref.Type != conductor.SchemaTypeJSON:
		ve.Add(path+".type", "only JSON schemas are supported, not %s", ref.Type)
	}
}

// checkEnum requires v, when given, to be one of allowed.
func checkEnum(ve *fault.ValidationError, path, v string, allowed []string) {
	if v == "" || slices.Contains(allowed, v) {
		return
	}
	ve.Add(path, "must be one of %s, not %q", strings.Join(allowed, ", "), v)
}

// checkMin requires v to be at least least.
func checkMin[T int | int64](ve *fault.ValidationError, path string, v, least T) {
	if v < least {
		ve.Add(path, "must be at least %d", least)
	}
}

// checkMinPtr is checkMin of an optional field: nil is absent, and valid.
func checkMinPtr[T int | int64](ve *fault.ValidationError, path string, v *T, least T) {
	if v != nil {
		checkMin(ve, path, *v, least)
	}
}

// checkTasks requires a name and a reference name of every task, and a
// startDelay and retryCount of at least 0, including the tasks nested in
// SWITCH, FORK_JOIN and DO_WHILE.
func checkTasks(ve *fault.ValidationError, path string, tasks []*conductor.WorkflowTask) {
	for i, t := range tasks {
		p := fmt.Sprintf("%s[%d]", path, i)
		if t == nil {
			ve.Add(p, "must not be null")
			continue
		}
		if t.Name == "" {
			ve.Add(p+".name", "must not be empty")
		}
		if t.TaskReferenceName == "" {
			ve.Add(p+".taskReferenceName", "must not be empty")
		}
		checkMin(ve, p+".startDelay", t.StartDelay, 0)
		checkMinPtr(ve, p+".retryCount", t.RetryCount, 0)
		if t.TaskDefinition != nil {
			checkTaskDef(ve, p+".taskDefinition", t.TaskDefinition)
		}
		cases := make([]string, 0, len(t.DecisionCases))
		for k := range t.DecisionCases {
			cases = append(cases, k)
		}
		sort.Strings(cases)
		for _, k := range cases {
			checkTasks(ve, p+".decisionCases."+k, t.DecisionCases[k])
		}
		checkTasks(ve, p+".defaultCase", t.DefaultCase)
		for j, branch := range t.ForkTasks {
			checkTasks(ve, fmt.Sprintf("%s.forkTasks[%d]", p, j), branch)
		}
		checkTasks(ve, p+".loopOver", t.LoopOver)
	}
}

// prepareTags reads a registration's "tags" and "overwriteTags" (default
// true). A nil result means the registration leaves tags alone.
func prepareTags(ve *fault.ValidationError, prefix string, tags []conductor.Tag, top map[string][]byte) ([]schemas.DefTag, bool) {
	overwrite := true
	switch v := string(top[jsonOverwriteTags]); v {
	case "", "null", "true":
	case "false":
		overwrite = false
	default:
		ve.Add(at(prefix, jsonOverwriteTags), "must be a boolean")
	}
	if tags == nil {
		return nil, overwrite
	}
	return checkTags(ve, at(prefix, jsonTags), tags), overwrite
}

// checkTags converts tags (see taglimit.Check).
func checkTags(ve *fault.ValidationError, path string, tags []conductor.Tag) []schemas.DefTag {
	return defTags(taglimit.Check(ve, path, tags))
}

func defTags(tags []conductor.Tag) []schemas.DefTag {
	out := make([]schemas.DefTag, len(tags))
	for i, t := range tags {
		out[i] = schemas.DefTag{Key: t.Key, Value: t.Value}
	}
	return out
}

// prefixed places the errors of the engine's validation hook under prefix.
// Errors other than a *fault.ValidationError become ErrInvalid, but for
// one of a size limit (ErrTooLarge), answered as its limit is elsewhere.
func prefixed(prefix string, err error) error {
	var ve *fault.ValidationError
	if errors.As(err, &ve) {
		out := &fault.ValidationError{Fields: make([]fault.FieldError, len(ve.Fields))}
		for i, f := range ve.Fields {
			f.Path = at(prefix, f.Path)
			out.Fields[i] = f
		}
		return out
	}
	if prefix != "" {
		err = fmt.Errorf("%s: %w", prefix, err)
	}
	if errors.Is(err, fault.ErrInvalid) || errors.Is(err, fault.ErrTooLarge) {
		return err
	}
	return fmt.Errorf("%w: %w", fault.ErrInvalid, err)
}

func isNull(v []byte) bool { return len(v) == 0 || string(v) == "null" }

// nullDef refuses a missing definition; in a list, as a field error.
func nullDef(prefix string) error {
	if prefix == "" {
		return fault.Invalid("definition must not be null")
	}
	ve := &fault.ValidationError{}
	ve.Add(prefix, "must not be null")
	return ve
}
