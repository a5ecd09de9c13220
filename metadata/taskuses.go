package metadata

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/projections"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// Task uses: which workflow definition versions name which tasks.
//
// A workflow may run a task that has no task definition: a SIMPLE task
// runs on defaults. Workers take tasks by name, and the creator of a task
// definition may take the tasks of its name, so whoever creates the
// definition of a name that other principals' workflows use takes their
// tasks, input and resolved secrets included. The API refuses such a
// creation; this index tells it, without reading every definition, which
// workflow versions use a name and who created them.
//
// The index is a function of the stored definitions alone, so a read model
// rebuilt from the log has the same one.

// taskUse is the value of a u/ key: how one workflow version names a task.
type taskUse struct {
	Types     []string `msgpack:"t"`
	CreatedBy string   `msgpack:"b,omitempty"`
}

// TaskUse is a stored workflow definition version that has tasks of one
// name.
type TaskUse struct {
	Workflow string
	Version  int
	// Types are the task types the name has in that version, sorted: SIMPLE
	// (or another type the engine hands to workers), or a system type (an
	// HTTP task may carry any name).
	Types []string
	// CreatedBy is who created the version ("" when unknown).
	CreatedBy string
}

// TaskUses returns the stored workflow definition versions that have a
// task named name, sorted by workflow name, then version. Tasks count
// wherever the engine would find them: nested in SWITCH, FORK_JOIN and
// DO_WHILE tasks, in inline sub-workflow definitions, and as the task a
// DYNAMIC or FORK_JOIN_DYNAMIC task runs when its input names it with a
// constant. A name chosen at run time (an expression, a worker's output)
// is data, not part of any definition, and is not found here.
func (s *Store) TaskUses(ctx context.Context, name string) ([]TaskUse, error) {
	if !indexableName(name) {
		return nil, nil // no task definition can have it
	}
	indexed, err := taskUsesIndexed(s.reader)
	if err != nil {
		return nil, fmt.Errorf("uses of task %s: %w", name, err)
	}
	if !indexed {
		// Built by a version without the index, and given no record
		// since: read the definitions themselves.
		uses, err := scanTaskUses(ctx, s.reader, name)
		if err != nil {
			return nil, fmt.Errorf("uses of task %s: %w", name, err)
		}
		return uses, nil
	}
	var out []TaskUse
	var decodeErr error
	prefix := usePrefix(name)
	err = s.reader.Scan(prefix, func(k, v []byte) bool {
		wf, version, ok := parseUseKey(k[len(prefix):])
		if !ok {
			return true // not a key useKey writes
		}
		var u taskUse
		if err := msgpack.Unmarshal(v, &u); err != nil {
			decodeErr = fmt.Errorf("decode use by %s version %d: %w", wf, version, err)
			return false
		}
		out = append(out, TaskUse{Workflow: wf, Version: version, Types: u.Types, CreatedBy: u.CreatedBy})
		return true
	})
	if err == nil {
		err = decodeErr
	}
	if err != nil {
		return nil, fmt.Errorf("uses of task %s: %w", name, err)
	}
	return out, nil
}

// taskUsesIndexed reports whether r's u/ keys cover every stored version.
func taskUsesIndexed(r kvReader) (bool, error) {
	_, err := r.Get([]byte(usesIndexedKey))
	if errors.Is(err, projections.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// scanTaskUses is TaskUses without the index: every stored version is
// parsed.
func scanTaskUses(ctx context.Context, r kvReader, name string) ([]TaskUse, error) {
	var out []TaskUse
	var ferr error
	err := r.Scan([]byte(workflowKeyPrefix), func(k, v []byte) bool {
		if ferr = ctx.Err(); ferr != nil {
			return false
		}
		wf, version, ok := parseWorkflowKey(k)
		if !ok {
			return true
		}
		d, _, err := decodeStored(v)
		if err != nil {
			ferr = fmt.Errorf("workflow %s version %d: %w", wf, version, err)
			return false
		}
		if types := taskUsesOf(d.JSON)[name]; len(types) > 0 {
			out = append(out, TaskUse{Workflow: wf, Version: version, Types: types, CreatedBy: d.CreatedBy})
		}
		return true
	})
	if err == nil {
		err = ferr
	}
	return out, err
}

// indexTaskUses records the tasks of workflow version d (just stored),
// replacing what was recorded for the version before.
func indexTaskUses(kv kvWriter, workflow string, version int, d storedDef) error {
	return writeTaskUses(kv, workflow, version, d.CreatedBy, taskUsesOf(d.JSON))
}

// writeTaskUses records uses (see taskUsesOf) of a workflow version
// created by createdBy, replacing what was recorded for it before.
func writeTaskUses(kv kvWriter, workflow string, version int, createdBy string, uses map[string][]string) error {
	if err := unindexTaskUses(kv, workflow, version); err != nil {
		return err
	}
	if len(uses) == 0 {
		return nil
	}
	names := slices.Sorted(maps.Keys(uses))
	for _, n := range names {
		v, err := msgpack.Marshal(&taskUse{Types: uses[n], CreatedBy: createdBy})
		if err != nil {
			return err
		}
		if err := kv.Set(useKey(n, workflow, version), v); err != nil {
			return err
		}
	}
	v, err := msgpack.Marshal(names)
	if err != nil {
		return err
	}
	return kv.Set(usesOfKey(workflow, version), v)
}

// unindexTaskUses removes what is recorded for a workflow version.
func unindexTaskUses(kv kvWriter, workflow string, version int) error {
	v, err := kv.Get(usesOfKey(workflow, version))
	if errors.Is(err, projections.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	var names []string
	if err := msgpack.Unmarshal(v, &names); err != nil {
		return fmt.Errorf("decode task uses of %s version %d: %w", workflow, version, err)
	}
	for _, n := range names {
		if err := kv.Delete(useKey(n, workflow, version)); err != nil {
			return err
		}
	}
	return kv.Delete(usesOfKey(workflow, version))
}

// ensureTaskUses indexes every stored version unless the read model says
// it has been. A read model built from the first record on is indexed
// version by version and only gains the marker here; one built by an
// earlier flowvault is indexed here in full, in the batch of the first
// record applied after the upgrade. Either way the keys are the same.
func ensureTaskUses(kv kvWriter) error {
	indexed, err := taskUsesIndexed(kv)
	if err != nil || indexed {
		return err
	}
	type version struct {
		name      string
		version   int
		createdBy string
		uses      map[string][]string
	}
	var all []version
	var derr error
	err = kv.Scan([]byte(workflowKeyPrefix), func(k, v []byte) bool {
		name, n, ok := parseWorkflowKey(k)
		if !ok {
			return true
		}
		d, _, err := decodeStored(v)
		if err != nil {
			derr = fmt.Errorf("workflow %s version %d: %w", name, n, err)
			return false
		}
		all = append(all, version{name: name, version: n, createdBy: d.CreatedBy, uses: taskUsesOf(d.JSON)})
		return true
	})
	if err == nil {
		err = derr
	}
	if err != nil {
		return fmt.Errorf("index task uses: %w", err)
	}
	for _, v := range all {
		if err := writeTaskUses(kv, v.name, v.version, v.createdBy, v.uses); err != nil {
			return fmt.Errorf("index task uses of %s version %d: %w", v.name, v.version, err)
		}
	}
	return kv.Set([]byte(usesIndexedKey), []byte{1})
}

// maxInlineDepth bounds how deep inline sub-workflow definitions are read
// for their tasks.
const maxInlineDepth = 32

// taskUsesOf returns the names of the tasks a stored workflow definition
// has (see TaskUses), each with its types, sorted. A definition the engine
// cannot parse runs nothing, and has none.
func taskUsesOf(defJSON []byte) map[string][]string {
	def, err := parseWorkflow(defJSON)
	if err != nil {
		return nil
	}
	w := usesWalker{}
	w.tasks(def.Tasks, 0)
	out := make(map[string][]string, len(w))
	for name, types := range w {
		out[name] = slices.Sorted(maps.Keys(types))
	}
	return out
}

// TaskNames returns the names under which def hands out tasks (inline
// sub-workflow definitions included, see TaskUses), each with its types,
// sorted by name.
func TaskNames(def *conductor.WorkflowDef) []TaskName {
	w := usesWalker{}
	w.tasks(def.Tasks, 0)
	out := make([]TaskName, 0, len(w))
	for _, name := range slices.Sorted(maps.Keys(w)) {
		out = append(out, TaskName{Name: name, Types: slices.Sorted(maps.Keys(w[name]))})
	}
	return out
}

// TaskName is a name a definition schedules tasks under, and their types.
type TaskName struct {
	Name  string
	Types []string
}

// usesWalker collects task names and their types.
type usesWalker map[string]map[string]bool

func (w usesWalker) add(name, typ string) {
	if !indexableName(name) {
		return
	}
	if w[name] == nil {
		w[name] = map[string]bool{}
	}
	w[name][typ] = true
}

func (w usesWalker) tasks(ts []*conductor.WorkflowTask, depth int) { walkTasks(ts, depth, w.task) }

// walkTasks calls fn with each task of ts and of the tasks they hold
// (switch cases, fork branches, loop bodies, inline sub-workflow
// definitions, one level deeper each, up to maxInlineDepth).
func walkTasks(ts []*conductor.WorkflowTask, depth int, fn func(t *conductor.WorkflowTask, depth int)) {
	for _, t := range ts {
		if t == nil {
			continue
		}
		fn(t, depth)
		for _, c := range t.DecisionCases {
			walkTasks(c, depth, fn)
		}
		walkTasks(t.DefaultCase, depth, fn)
		for _, branch := range t.ForkTasks {
			walkTasks(branch, depth, fn)
		}
		walkTasks(t.LoopOver, depth, fn)
		if p := t.SubWorkflowParam; p != nil && depth < maxInlineDepth && isObject(p.WorkflowDefinition) {
			var sub conductor.WorkflowDef
			if conductor.Unmarshal(p.WorkflowDefinition, &sub) == nil {
				walkTasks(sub.Tasks, depth+1, fn)
			}
		}
	}
}

// StartedNames returns the names of the registered workflows def starts
// by a name it fixes: its failureWorkflow, and those of its SUB_WORKFLOW
// and START_WORKFLOW tasks that name a registered definition rather than
// carry their own (inline definitions' tasks and failureWorkflow
// included). A name given by an
// expression is known at run time only, and is not among them.
func StartedNames(def *conductor.WorkflowDef) []string {
	names := map[string]bool{}
	if def.FailureWorkflow != "" {
		names[def.FailureWorkflow] = true
	}
	walkTasks(def.Tasks, 0, func(t *conductor.WorkflowTask, _ int) {
		switch t.TaskType() {
		case conductor.TaskTypeSubWorkflow:
			p := t.SubWorkflowParam
			switch {
			case p == nil:
			case len(p.WorkflowDefinition) == 0:
				if name, ok := constant(p.Name); ok && name != "" {
					names[name] = true
				}
			case isObject(p.WorkflowDefinition):
				// An inline definition's own failureWorkflow gets the
				// child's input, which this definition hands it.
				var sub conductor.WorkflowDef
				if conductor.Unmarshal(p.WorkflowDefinition, &sub) == nil && sub.FailureWorkflow != "" {
					names[sub.FailureWorkflow] = true
				}
			}
		case conductor.TaskTypeStartWorkflow:
			if sw, ok := t.InputParameters["startWorkflow"].(map[string]any); ok {
				if name, ok := constant(sw["name"]); ok && name != "" {
					names[name] = true
				}
			}
		}
	})
	return slices.Sorted(maps.Keys(names))
}

// task follows the engine (engine/schedule.go, engine/dynamic.go): a task
// is scheduled under its name, DYNAMIC schedules the task its input names
// (SIMPLE unless a system type), FORK_JOIN_DYNAMIC the tasks its input
// lists or names.
func (w usesWalker) task(t *conductor.WorkflowTask, depth int) {
	typ := t.TaskType()
	w.add(t.Name, typ)
	switch typ {
	case conductor.TaskTypeDynamic:
		if t.DynamicTaskNameParam != "" {
			if name, ok := constant(t.InputParameters[t.DynamicTaskNameParam]); ok {
				w.add(name, conductor.TaskTypeSimple)
			}
		}
	case conductor.TaskTypeForkJoinDynamic:
		w.dynamicFork(t, depth)
	}
}

// dynamicFork adds the tasks a FORK_JOIN_DYNAMIC forks when its input
// gives them as constants: a list of task configurations, or (Conductor
// OSS's form) forkTaskName and forkTaskType with forkTaskInputs.
func (w usesWalker) dynamicFork(t *conductor.WorkflowTask, depth int) {
	in := t.InputParameters
	if t.DynamicForkTasksParam != "" {
		list, ok := in[t.DynamicForkTasksParam].([]any)
		if !ok {
			return
		}
		b, err := json.Marshal(list)
		var forked []*conductor.WorkflowTask
		if err == nil && conductor.Unmarshal(b, &forked) == nil {
			w.tasks(forked, depth)
		}
		return
	}
	if _, ok := in["forkTaskInputs"]; !ok {
		return
	}
	if sub, ok := constant(in["forkTaskWorkflow"]); !ok || sub != "" {
		return // sub-workflows, or known at run time only
	}
	name, ok := constant(in["forkTaskName"])
	if !ok {
		return
	}
	typ, ok := constant(in["forkTaskType"])
	if !ok || typ == "" {
		typ = conductor.TaskTypeSimple // or the type it turns out to be: counted as a worker's
	}
	if name == "" {
		name = t.TaskReferenceName // a system type's forks take its name, but are not workers'
	}
	w.add(name, typ)
}

// constant is an input parameter's string value when the definition fixes
// it: ok is false for an expression, evaluated at run time. Anything but a
// string reads as "", as the engine reads it.
func constant(v any) (string, bool) {
	s, _ := v.(string)
	if strings.Contains(s, "${") {
		return "", false
	}
	return s, true
}

// isObject reports whether raw is a JSON object (not an expression string).
func isObject(raw json.RawMessage) bool {
	for _, c := range raw {
		switch c {
		case ' ', '\t', '\n', '\r':
			continue
		}
		return c == '{'
	}
	return false
}

// indexableName reports whether a task definition could be named name:
// names no definition can have are not indexed.
func indexableName(name string) bool {
	ve := &fault.ValidationError{}
	checkName(ve, "", name)
	return ve.Err() == nil
}
