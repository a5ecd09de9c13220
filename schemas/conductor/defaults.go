package conductor

import (
	"bytes"
	"slices"
	"strconv"
	"sync"

	"github.com/go-json-experiment/json/jsontext"
)

// Conductor answers a definition as its Java model (TaskDef.java,
// WorkflowDef.java, WorkflowTask.java) writes it back: a field the
// registration left out reads as its default ("retryCount": 3, "timeoutSeconds":
// 0), one whose default is null not at all. The SDKs' types count on it
// (the JavaScript SDK's TaskDef requires timeoutSeconds and
// totalTimeoutSeconds), and a client reading the definition should see the
// policy the engine runs it with. The JSON as registered is kept and
// stored: the defaults are added when a definition is written out, after
// its last member, and only for a key it lacks as spelt (the decoder reads
// a member named in another case as one it does not know, as Jackson
// does: {"RETRYCOUNT":1} runs with retryCount 3).
//
// Every default here is what the engine does for the absent field
// (TaskDef.Effective, WorkflowDef.IsRestartable, a workflow timeout acting
// only on TIME_OUT_WF, an empty outputParameters read as none). A
// workflow's enforceSchema is left out: Conductor's default is true, the
// engine's false.

// defaultMember is a member a definition reads with when it lacks it.
type defaultMember struct {
	key, value string
	// unless, when set, leaves the member out of an object whose members
	// (those its shape reads) make the default one its registration would
	// refuse.
	unless func(read map[string][]byte) bool
}

// shape is what a definition's JSON value holds: an object with defaults
// and members to visit, a list or a map of values of one shape.
type shape struct {
	kind     jsontext.Kind // '{': an object with defaults; '[': a list of elem; 'm': a map of elem
	defaults []defaultMember
	members  map[string]*shape // key → the value's shape
	reads    []string          // keys of the scalars its defaults' unless reads
	elem     *shape
}

var (
	taskDefShape = &shape{kind: '{', defaults: []defaultMember{
		{key: "retryCount", value: strconv.Itoa(DefaultRetryCount)},
		{key: "timeoutSeconds", value: "0"},
		{key: "totalTimeoutSeconds", value: "0"},
		{key: "inputKeys", value: "[]"},
		{key: "outputKeys", value: "[]"},
		{key: "timeoutPolicy", value: strconv.Quote(TimeoutPolicyTimeOutWF)},
		{key: "retryLogic", value: strconv.Quote(RetryFixed)},
		{key: "retryDelaySeconds", value: strconv.Itoa(DefaultRetryDelaySeconds)},
		// The hour it defaults to is more than a timeoutSeconds under an
		// hour allows: such a definition, read and registered again, would
		// be refused. Conductor refuses it in the first place.
		{key: "responseTimeoutSeconds", value: strconv.Itoa(DefaultResponseTimeoutSeconds), unless: func(s map[string][]byte) bool {
			t, err := strconv.ParseFloat(string(s["timeoutSeconds"]), 64)
			return err == nil && t > 0 && t < DefaultResponseTimeoutSeconds
		}},
		{key: "inputTemplate", value: "{}"},
		{key: "rateLimitPerFrequency", value: "0"},
		{key: "rateLimitFrequencyInSeconds", value: "1"},
		{key: "backoffScaleFactor", value: "1"},
		{key: "enforceSchema", value: "false"},
	}, reads: []string{"timeoutSeconds"}}
	workflowTaskShape = &shape{kind: '{', defaults: []defaultMember{
		{key: "type", value: strconv.Quote(TaskTypeSimple)},
		{key: "inputParameters", value: "{}"},
		{key: "startDelay", value: "0"},
		{key: "optional", value: "false"},
		{key: "asyncComplete", value: "false"},
		{key: "permissive", value: "false"},
	}}
	taskListShape    = &shape{kind: '[', elem: workflowTaskShape}
	workflowDefShape = &shape{kind: '{', defaults: []defaultMember{
		{key: "inputParameters", value: "[]"},
		{key: "outputParameters", value: "{}"},
		{key: "schemaVersion", value: "2"},
		{key: "restartable", value: "true"},
		{key: "workflowStatusListenerEnabled", value: "false"},
		{key: "timeoutPolicy", value: strconv.Quote(TimeoutPolicyAlertOnly)},
		{key: "timeoutSeconds", value: "0"},
		{key: "variables", value: "{}"},
		{key: "inputTemplate", value: "{}"},
		{key: "metadata", value: "{}"},
		{key: "maskedFields", value: "[]"},
	}, members: map[string]*shape{"tasks": taskListShape}}
)

func init() {
	// The tasks of a task's branches, and its inline definition.
	workflowTaskShape.members = map[string]*shape{
		"decisionCases":  {kind: 'm', elem: taskListShape},
		"defaultCase":    taskListShape,
		"forkTasks":      {kind: '[', elem: taskListShape},
		"loopOver":       taskListShape,
		"taskDefinition": taskDefShape,
	}
}

// WorkflowDefWithDefaults is the workflow definition def as Conductor
// answers it: the defaults of the definition and of each of its tasks, at
// any depth, added where absent (see defaultMember). JSON it cannot read
// is returned as it is.
func WorkflowDefWithDefaults(def []byte) []byte { return withDefaults(def, workflowDefShape) }

// TaskDefWithDefaults is the task definition def with Conductor's defaults
// added where absent.
func TaskDefWithDefaults(def []byte) []byte { return withDefaults(def, taskDefShape) }

// WorkflowTaskWithDefaults is the task configuration wt with Conductor's
// defaults added where absent, in the tasks of its branches too.
func WorkflowTaskWithDefaults(wt []byte) []byte { return withDefaults(wt, workflowTaskShape) }

func withDefaults(in []byte, s *shape) []byte {
	if len(in) == 0 {
		return in
	}
	if len(in) > maxFilledKey {
		return fill(in, s)
	}
	// Every task of a definition hands its workers the same configuration
	// and definition, offer after offer: filled once, not per offer.
	filledMu.Lock()
	out, ok := filled[s][string(in)]
	filledMu.Unlock()
	if ok {
		return out
	}
	out = fill(in, s)
	out = out[:len(out):len(out)] // callers may append, never into the cache's
	filledMu.Lock()
	if filledCount >= maxFilled {
		clear(filled)
		filledCount = 0
	}
	if filled[s] == nil {
		filled[s] = map[string][]byte{}
	}
	filled[s][string(in)] = out
	filledCount++
	filledMu.Unlock()
	return out
}

// filled caches what withDefaults made of definitions of up to
// maxFilledKey bytes, by shape, up to maxFilled of them (then it starts
// over: definitions in use fill it again).
var (
	filledMu    sync.Mutex
	filled      = map[*shape]map[string][]byte{}
	filledCount int
)

const (
	maxFilledKey = 16 << 10
	maxFilled    = 2048
)

// fill is withDefaults without the cache.
func fill(in []byte, s *shape) []byte {
	f := &filler{in: in, dec: jsontext.NewDecoder(bytes.NewReader(in),
		jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true))}
	f.out = make([]byte, 0, len(in)+256)
	if err := f.value(s); err != nil {
		return in
	}
	return append(f.out, in[f.pos:]...)
}

// filler copies in to out as it reads it, adding the defaults its shapes
// name before the closing brace of each object: out holds in[:pos] so far,
// with what was added.
type filler struct {
	in  []byte
	dec *jsontext.Decoder
	out []byte
	pos int
}

// flush copies in up to off.
func (f *filler) flush(off int) {
	f.out = append(f.out, f.in[f.pos:off]...)
	f.pos = off
}

// value reads the next value, visiting it as s says when it has that
// shape, and skipping it otherwise.
func (f *filler) value(s *shape) error {
	k := f.dec.PeekKind()
	switch {
	case s == nil, s.kind == '[' && k != '[', s.kind != '[' && k != '{':
		return f.dec.SkipValue()
	case s.kind == '[':
		return f.list(s)
	}
	return f.object(s)
}

func (f *filler) list(s *shape) error {
	if _, err := f.dec.ReadToken(); err != nil {
		return err
	}
	for f.dec.PeekKind() != ']' {
		if err := f.value(s.elem); err != nil {
			return err
		}
	}
	_, err := f.dec.ReadToken()
	return err
}

func (f *filler) object(s *shape) error {
	if _, err := f.dec.ReadToken(); err != nil {
		return err
	}
	keys := make([]string, 0, 16)
	var read map[string][]byte
	for f.dec.PeekKind() != '}' {
		tok, err := f.dec.ReadToken()
		if err != nil {
			return err
		}
		key := tok.String()
		keys = append(keys, key)
		var member *shape
		if s.kind == 'm' {
			member = s.elem
		} else {
			member = s.members[key]
		}
		if member != nil {
			if err := f.value(member); err != nil {
				return err
			}
			continue
		}
		v, err := f.dec.ReadValue()
		if err != nil {
			return err
		}
		if slices.Contains(s.reads, key) {
			if read == nil {
				read = map[string][]byte{}
			}
			read[key] = bytes.Clone(v) // v is the decoder's until its next read
		}
	}
	if _, err := f.dec.ReadToken(); err != nil {
		return err
	}
	end := int(f.dec.InputOffset()) - 1 // the closing brace
	f.flush(end)
	n := len(keys)
	for _, d := range s.defaults {
		if slices.Contains(keys, d.key) || (d.unless != nil && d.unless(read)) {
			continue
		}
		if n > 0 {
			f.out = append(f.out, ',')
		}
		n++
		f.out = append(f.out, '"')
		f.out = append(f.out, d.key...)
		f.out = append(f.out, `":`...)
		f.out = append(f.out, d.value...)
	}
	return nil
}

// WorkflowDefJSON is a workflow definition's JSON as stored (an
// execution's workflowDefinition), written out with Conductor's defaults.
type WorkflowDefJSON []byte

// MarshalJSON writes the definition with its defaults.
func (d WorkflowDefJSON) MarshalJSON() ([]byte, error) { return marshalWith(d, workflowDefShape) }

// UnmarshalJSON keeps the JSON as given.
func (d *WorkflowDefJSON) UnmarshalJSON(b []byte) error { *d = append((*d)[:0], b...); return nil }

// WorkflowTaskJSON is a task configuration's JSON (a task's workflowTask),
// written out with Conductor's defaults.
type WorkflowTaskJSON []byte

// MarshalJSON writes the configuration with its defaults.
func (t WorkflowTaskJSON) MarshalJSON() ([]byte, error) { return marshalWith(t, workflowTaskShape) }

// UnmarshalJSON keeps the JSON as given.
func (t *WorkflowTaskJSON) UnmarshalJSON(b []byte) error { *t = append((*t)[:0], b...); return nil }

// TaskDefJSON is a task definition's JSON (a task's taskDefinition),
// written out with Conductor's defaults.
type TaskDefJSON []byte

// MarshalJSON writes the definition with its defaults.
func (d TaskDefJSON) MarshalJSON() ([]byte, error) { return marshalWith(d, taskDefShape) }

// UnmarshalJSON keeps the JSON as given.
func (d *TaskDefJSON) UnmarshalJSON(b []byte) error { *d = append((*d)[:0], b...); return nil }

func marshalWith(b []byte, s *shape) ([]byte, error) {
	if len(b) == 0 {
		return []byte("null"), nil
	}
	return withDefaults(b, s), nil
}
