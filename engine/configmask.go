package engine

import (
	"encoding/json"
	"strconv"
	"strings"

	"github.com/flowvault/flowvault/masking"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// A task configured at run time (a dynamic fork's task) keeps its
// configuration, the JSON a planner gave, which holds values: a value
// found to be secret later may sit anywhere in it. The MaskedPaths of such
// a task's configuration start with "task/<id>" + ConfigField:
//
//   - ConfigInputField + ".<key>": a top-level key of its inputParameters
//     (the member named inputParameters exactly: one named in another
//     case is a member Conductor's model does not know, masked as any
//     other, by pointer), masked whole, as the task's input is;
//   - ConfigField + a JSON pointer (RFC 6901), "/description",
//     "/taskDefinition/inputTemplate/t": a string elsewhere in it;
//   - ConfigField alone: the whole configuration, whose member names hold
//     the value (which no path may spell). Only the members the engine
//     names the task by are left (see ConfigNames).
//
// The state keeps the configuration whole, for a retry reads it again; the
// views mask what the paths name, and compaction replaces what the shred
// paths name.
const (
	ConfigField      = "/workflowTask"
	ConfigInputField = ConfigField + ".inputParameters"
)

// escapeToken and unescapeToken write and read a JSON pointer's token.
var (
	escapeToken   = strings.NewReplacer("~", "~0", "/", "~1")
	unescapeToken = strings.NewReplacer("~1", "/", "~0", "~")
)

// ConfigPath is the path of what task id's configuration holds at the JSON
// pointer made of tokens (member names and list indices): the whole
// configuration with none.
func ConfigPath(taskID string, tokens ...string) string {
	var b strings.Builder
	b.WriteString("task/" + taskID + ConfigField)
	for _, tok := range tokens {
		b.WriteByte('/')
		b.WriteString(escapeToken.Replace(tok))
	}
	return b.String()
}

// ConfigNames reports whether a configuration's top-level member named
// name is one the engine names and runs the task by (its name, reference
// name and type, named exactly so, as the decoder reads them): shown as
// given everywhere (the task's taskDefName and referenceTaskName, its
// fork's forkedTasks, its queue), it is neither masked nor replaced.
func ConfigNames(name string) bool {
	return name == "name" || name == "taskReferenceName" || name == "type"
}

// configMarks is what paths (MaskedPaths, each after the given prefix)
// name of task id's configuration.
type configMarks struct {
	whole    bool
	params   []string   // top-level keys of inputParameters
	pointers [][]string // JSON pointers' tokens
}

// marksOf returns what paths mark, under prefix ("" or shredPrefix), of
// task id's configuration, and whether they mark anything.
func marksOf(paths []string, prefix, id string) (configMarks, bool) {
	var m configMarks
	found := false
	base := prefix + "task/" + id + ConfigField
	for _, p := range paths {
		rest, ok := strings.CutPrefix(p, base)
		if !ok {
			continue
		}
		switch key, isParam := strings.CutPrefix(rest, ".inputParameters."); {
		case rest == "":
			m.whole, found = true, true
		case isParam:
			m.params, found = append(m.params, key), true
		case strings.HasPrefix(rest, "/"):
			toks := strings.Split(rest[1:], "/")
			for i, tok := range toks {
				toks[i] = unescapeToken.Replace(tok)
			}
			m.pointers, found = append(m.pointers, toks), true
		}
	}
	return m, found
}

// apply replaces in cfg (a decoded configuration, changed in place) what
// m names with "***", and reports whether it replaced anything.
func (m configMarks) apply(cfg map[string]any) bool {
	changed := false
	if m.whole {
		for k := range cfg {
			if !ConfigNames(k) {
				delete(cfg, k)
				changed = true
			}
		}
		return changed
	}
	if in, ok := cfg["inputParameters"].(map[string]any); ok {
		for _, key := range m.params {
			if x, present := in[key]; present && x != masking.Mask {
				in[key], changed = masking.Mask, true
			}
		}
	}
	for _, toks := range m.pointers {
		if len(toks) > 0 && !ConfigNames(toks[0]) && setPointer(cfg, toks) {
			changed = true
		}
	}
	return changed
}

// setPointer replaces the string at toks in v with "***", and reports
// whether there was one to replace.
func setPointer(v any, toks []string) bool {
	for i, tok := range toks {
		last := i == len(toks)-1
		switch x := v.(type) {
		case map[string]any:
			e, ok := x[tok]
			if s, isString := e.(string); ok && last && isString && s != masking.Mask {
				x[tok] = masking.Mask
				return true
			}
			v = e
		case []any:
			n, err := strconv.Atoi(tok)
			if err != nil || n < 0 || n >= len(x) {
				return false
			}
			if s, isString := x[n].(string); last && isString && s != masking.Mask {
				x[n] = masking.Mask
				return true
			}
			v = x[n]
		default:
			return false
		}
	}
	return false
}

// maskConfig is the task's configuration wt as a reader sees it: what
// MaskedPaths names of it reads "***" (see ConfigField). A configuration
// that cannot be read back is not shown.
func (w *Workflow) maskConfig(t *Task, wt conductor.WorkflowTaskJSON) conductor.WorkflowTaskJSON {
	if len(t.Config) == 0 || len(wt) == 0 {
		return wt
	}
	marks, ok := marksOf(w.MaskedPaths, "", t.ID)
	if !ok {
		return wt
	}
	var cfg map[string]any
	if conductor.Unmarshal(wt, &cfg) != nil {
		return nil
	}
	if !marks.apply(cfg) {
		return wt
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		return nil
	}
	return b
}

// shredKeptConfig returns t's run-time configuration (a dynamic fork's
// task) with what w's MaskedPaths mark for shredding replaced by "***",
// and whether anything was: the state would otherwise keep the value
// after compaction (the views mask it), and a retry would hand it out
// again with the configuration. The rest is kept as given, fields this
// version does not read included.
func shredKeptConfig(w *Workflow, t *Task) ([]byte, bool) {
	if len(t.Config) == 0 {
		return t.Config, false
	}
	marks, ok := marksOf(w.MaskedPaths, shredPrefix, t.ID)
	if !ok {
		return t.Config, false
	}
	var cfg map[string]any
	if conductor.Unmarshal(t.Config, &cfg) != nil {
		return t.Config, false // the guard marks only a configuration it read
	}
	if !marks.apply(cfg) {
		return t.Config, false
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		return t.Config, false
	}
	return b, true
}
