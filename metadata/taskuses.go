package metadata

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// Task uses and starts: which workflow definition versions name which
// tasks, and which start which workflows by name.
//
// A workflow may run a task that has no task definition: a SIMPLE task
// runs on defaults. Workers take tasks by name, and the creator of a task
// definition may take the tasks of its name, so whoever creates the
// definition of a name that other principals' workflows use takes their
// tasks, input and resolved secrets included. The API refuses such a
// creation; this index tells it, without reading every definition, which
// workflow versions use a name and who created them. Likewise a
// definition that starts a workflow by name (its failureWorkflow, a
// SUB_WORKFLOW, a START_WORKFLOW) hands that workflow its data: the API
// asks Starters before anyone else creates the definition of such a name.
//
// The indexes are a function of the stored definitions alone, so a read model
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
	var out []TaskUse
	err := taskUseIndex.scan(s.reader, name, func(wf string, version int, v []byte) error {
		var u taskUse
		if err := msgpack.Unmarshal(v, &u); err != nil {
			return fmt.Errorf("decode use by %s version %d: %w", wf, version, err)
		}
		out = append(out, TaskUse{Workflow: wf, Version: version, Types: u.Types, CreatedBy: u.CreatedBy})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("uses of task %s: %w", name, err)
	}
	return out, nil
}

// writers is the value of an n/ key: who wrote a workflow version that
// starts a workflow by name.
type writers struct {
	CreatedBy string `msgpack:"c,omitempty"`
	UpdatedBy string `msgpack:"u,omitempty"`
}

// Starter is a stored workflow definition version that starts a workflow
// by one name (see StartedNames), and who wrote it.
type Starter struct {
	Workflow  string
	Version   int
	CreatedBy string
	UpdatedBy string
}

// Starters returns the stored workflow definition versions that start a
// workflow named name (StartedNames), sorted by workflow name, then
// version.
func (s *Store) Starters(ctx context.Context, name string) ([]Starter, error) {
	if !indexableName(name) {
		return nil, nil // no workflow definition can have it
	}
	var out []Starter
	err := startIndex.scan(s.reader, name, func(wf string, version int, v []byte) error {
		var w writers
		if err := msgpack.Unmarshal(v, &w); err != nil {
			return fmt.Errorf("decode start by %s version %d: %w", wf, version, err)
		}
		out = append(out, Starter{Workflow: wf, Version: version, CreatedBy: w.CreatedBy, UpdatedBy: w.UpdatedBy})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("starters of workflow %s: %w", name, err)
	}
	return out, nil
}

// indexDef records the names workflow version d (just stored) refers to,
// replacing what was recorded for the version before. A definition the
// engine cannot parse runs nothing, and refers to none.
func indexDef(kv kvWriter, workflow string, version int, d storedDef) error {
	uses, starts := map[string]any{}, map[string]any{}
	if def, err := parseWorkflow(d.JSON); err == nil {
		for _, t := range TaskNames(def) {
			uses[t.Name] = &taskUse{Types: t.Types, CreatedBy: d.CreatedBy}
		}
		for _, name := range StartedNames(def) {
			starts[name] = &writers{CreatedBy: d.CreatedBy, UpdatedBy: d.UpdatedBy}
		}
	}
	if err := taskUseIndex.write(kv, workflow, version, uses); err != nil {
		return err
	}
	return startIndex.write(kv, workflow, version, starts)
}

// unindexDef removes what is recorded for a workflow version.
func unindexDef(kv kvWriter, workflow string, version int) error {
	if err := taskUseIndex.remove(kv, workflow, version); err != nil {
		return err
	}
	return startIndex.remove(kv, workflow, version)
}

// maxInlineDepth bounds how deep inline sub-workflow definitions are read
// for their tasks.
const maxInlineDepth = 32

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
// (switch cases, fork branches, loop bodies, the constant list a dynamic
// fork forks, inline sub-workflow definitions, one level deeper each, up
// to maxInlineDepth).
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
		walkTasks(forkedList(t), depth, fn)
		if p := t.SubWorkflowParam; p != nil && depth < maxInlineDepth && isObject(p.WorkflowDefinition) {
			var sub conductor.WorkflowDef
			if conductor.Unmarshal(p.WorkflowDefinition, &sub) == nil {
				walkTasks(sub.Tasks, depth+1, fn)
			}
		}
	}
}

// forkedList is the list of tasks a FORK_JOIN_DYNAMIC forks when its
// input fixes it (dynamicForkTasksParam naming a constant list), else nil.
func forkedList(t *conductor.WorkflowTask) []*conductor.WorkflowTask {
	if t.TaskType() != conductor.TaskTypeForkJoinDynamic || t.DynamicForkTasksParam == "" {
		return nil
	}
	list, ok := t.InputParameters[t.DynamicForkTasksParam].([]any)
	if !ok {
		return nil
	}
	b, err := json.Marshal(list)
	var forked []*conductor.WorkflowTask
	if err != nil || conductor.Unmarshal(b, &forked) != nil {
		return nil
	}
	return forked
}

// StartedNames returns the names of the registered workflows def starts
// by a name it fixes: its failureWorkflow, and those of its SUB_WORKFLOW
// and START_WORKFLOW tasks that name a registered definition rather than
// carry their own (inline definitions' tasks and failureWorkflow
// included, and the tasks a dynamic fork lists), those of a DYNAMIC
// task's subWorkflowParam and startWorkflow (it runs as the type its input
// names, either of those among them, with its own), and the
// forkTaskWorkflow of a dynamic fork. A name given by an expression is
// known at run time only, and is not among them.
func StartedNames(def *conductor.WorkflowDef) []string {
	names := map[string]bool{}
	if def.FailureWorkflow != "" {
		names[def.FailureWorkflow] = true
	}
	walkTasks(def.Tasks, 0, func(t *conductor.WorkflowTask, _ int) {
		typ := t.TaskType()
		dynamic := typ == conductor.TaskTypeDynamic
		if p := t.SubWorkflowParam; p != nil && (typ == conductor.TaskTypeSubWorkflow || dynamic) {
			switch {
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
		}
		if sw, ok := t.InputParameters["startWorkflow"].(map[string]any); ok && (typ == conductor.TaskTypeStartWorkflow || dynamic) {
			if name, ok := constant(sw["name"]); ok && name != "" {
				names[name] = true
			}
		}
		if typ == conductor.TaskTypeForkJoinDynamic {
			// Each element of forkTaskInputs starts the workflow
			// forkTaskWorkflow names, with that element as its input.
			if _, ok := t.InputParameters["forkTaskInputs"]; ok {
				if name, ok := constant(t.InputParameters["forkTaskWorkflow"]); ok && name != "" {
					names[name] = true
				}
			}
		}
	})
	return slices.Sorted(maps.Keys(names))
}

// HandlerStartedNames lists the workflows an event handler's actions start
// by a registered definition's name: each start_workflow's, unless an
// expression names it or it carries its definition inline.
func HandlerStartedNames(h *conductor.EventHandler) []string {
	names := map[string]bool{}
	for _, a := range h.Actions {
		if a.Action != conductor.ActionStartWorkflow || a.StartWorkflow[conductor.InlineWorkflowDef] != nil {
			continue
		}
		if name, ok := constant(a.StartWorkflow["name"]); ok && name != "" {
			names[name] = true
		}
	}
	return slices.Sorted(maps.Keys(names))
}

// WebhookStartedNames lists the workflows a webhook's deliveries reach by
// name: those it starts and those whose WAIT_FOR_WEBHOOK tasks it
// completes.
func WebhookStartedNames(c *conductor.WebhookConfig) []string {
	names := slices.Collect(maps.Keys(c.WorkflowsToStart))
	names = slices.AppendSeq(names, maps.Keys(c.ReceiverWorkflowNamesToVersions))
	slices.Sort(names)
	return slices.Compact(names)
}

// task follows the engine (engine/schedule.go, engine/dynamic.go): a task
// is scheduled under its name, DYNAMIC schedules the task its input names
// (SIMPLE unless a system type), FORK_JOIN_DYNAMIC the tasks its input
// lists or names.
func (w usesWalker) task(t *conductor.WorkflowTask, _ int) {
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
		w.dynamicFork(t)
	}
}

// dynamicFork adds the tasks a FORK_JOIN_DYNAMIC forks in Conductor OSS's
// form, forkTaskName and forkTaskType with forkTaskInputs, when its input
// gives them as constants (walkTasks walks a constant list of task
// configurations). The engine forks so also when a dynamicForkTasksParam
// is named but its input holds nothing there, as Conductor's own examples
// write it.
func (w usesWalker) dynamicFork(t *conductor.WorkflowTask) {
	in := t.InputParameters
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
