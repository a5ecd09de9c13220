package engine

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/flowvault/flowvault/engine/expr"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/masking"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// Tasks whose configuration is decided at run time (DYNAMIC, the tasks a
// FORK_JOIN_DYNAMIC spawns) carry it in TaskScheduled.Config; plan.config
// returns it, and navigation (plan.after) still goes by the reference name:
// a DYNAMIC task's resolved instance continues where the DYNAMIC task sits
// in the definition, a spawned task has no successor (its fork's JOIN
// continues).

// leafSystemTypes are the system task types a DYNAMIC task or a dynamic fork
// may run besides SIMPLE: tasks without branches or bodies of their own.
var leafSystemTypes = map[string]bool{
	conductor.TaskTypeHTTP: true, conductor.TaskTypeInline: true, conductor.TaskTypeJSONJQ: true,
	conductor.TaskTypeLambda: true, conductor.TaskTypeWait: true, conductor.TaskTypeSetVariable: true,
	conductor.TaskTypeTerminate: true, conductor.TaskTypeNoop: true, conductor.TaskTypeStartWorkflow: true,
	conductor.TaskTypeSubWorkflow: true, conductor.TaskTypeHuman: true, conductor.TaskTypeEvent: true,
	conductor.TaskTypeWaitForWebhook: true,
}

// containerTypes have branches or bodies, which only a definition can place.
var containerTypes = map[string]bool{
	conductor.TaskTypeSwitch: true, conductor.TaskTypeDecision: true, conductor.TaskTypeForkJoin: true,
	conductor.TaskTypeForkJoinDynamic: true, conductor.TaskTypeJoin: true, conductor.TaskTypeExclusiveJoin: true,
	conductor.TaskTypeDoWhile: true,
}

// resolveDynamic turns a DYNAMIC configuration into the configuration of the
// task it names (input[dynamicTaskNameParam]): SIMPLE unless the name is a
// system task type, with the DYNAMIC task's reference name and input
// parameters.
func resolveDynamic(wt *conductor.WorkflowTask, input map[string]any) (*conductor.WorkflowTask, error) {
	if wt.DynamicTaskNameParam == "" {
		return nil, fmt.Errorf("DYNAMIC %s has no dynamicTaskNameParam", wt.TaskReferenceName)
	}
	name, _ := input[wt.DynamicTaskNameParam].(string)
	if name == "" {
		return nil, fmt.Errorf("DYNAMIC %s: input %q holds no task name", wt.TaskReferenceName, wt.DynamicTaskNameParam)
	}
	if containerTypes[name] || name == conductor.TaskTypeDynamic {
		return nil, fmt.Errorf("DYNAMIC %s cannot run a %s task", wt.TaskReferenceName, name)
	}
	typ := conductor.TaskTypeSimple
	if leafSystemTypes[name] {
		typ = name
	}
	return &conductor.WorkflowTask{
		Name: name, TaskReferenceName: wt.TaskReferenceName, Type: typ, Description: wt.Description,
		InputParameters: wt.InputParameters, Optional: wt.Optional, AsyncComplete: wt.AsyncComplete,
		StartDelay: wt.StartDelay, RetryCount: wt.RetryCount, SubWorkflowParam: wt.SubWorkflowParam,
	}, nil
}

// unsealedText reports whether s holds text that this decision's events
// keep under a _secrets or _masked key (or in a maskedFields field): the
// guard seals those values before the events are written, but a task's
// name, type and reference name are written as given (a queue is named
// after its type). In a later decision such a value is sealed, and no
// name can be made of it.
func (d *decision) unsealedText(s string) bool {
	if s == "" {
		return false
	}
	// Each event is read once a decision: a loop of DYNAMIC tasks asks
	// for every iteration.
	for _, ev := range d.events[d.maskedRead:] {
		for _, m := range eventData(ev) {
			d.masked = appendMasked(d.masked, m, false, nonEmptyString)
		}
		d.masked = d.appendMaskedFields(d.masked, ev, nonEmptyString)
	}
	d.maskedRead = len(d.events)
	for _, x := range d.masked {
		if x == s || len(x) >= masking.MinLength && strings.Contains(s, x) {
			return true
		}
	}
	return false
}

// eventData returns the data ev brings the workflow that the guard seals
// where it sits under a _secrets or _masked key.
func eventData(ev schemas.Event) []map[string]any {
	switch e := ev.(type) {
	case *schemas.TaskUpdated:
		return []map[string]any{e.Output}
	case *schemas.TaskScheduled:
		return []map[string]any{e.Input, e.Output}
	case *schemas.VariablesUpdated:
		return []map[string]any{e.Variables}
	case *schemas.WorkflowStarted:
		return []map[string]any{e.Input, e.Variables}
	}
	return nil
}

// appendMaskedFields appends what text makes of each leaf of the values
// that ev, when it sets the workflow's input (a start, a rerun, an
// upgrade) or records fields of it again (see keptInput), gives the
// fields the definition names in maskedFields: the guard seals them as it
// seals _masked data, once the events are, and this decision alone reads
// them plain.
func (d *decision) appendMaskedFields(out []string, ev schemas.Event, text func(any) (string, bool)) []string {
	var input, fields map[string]any
	switch e := ev.(type) {
	case *schemas.WorkflowStarted:
		input = e.Input
	case *schemas.WorkflowReset:
		input, fields = e.Input, e.InputFields
	case *schemas.WorkflowUpgraded:
		input, fields = e.Input, e.InputFields
	}
	if len(input)+len(fields) == 0 {
		return out
	}
	def, err := d.w.Def()
	if err != nil {
		return out
	}
	for _, f := range def.MaskedFields {
		for _, m := range []map[string]any{input, fields} {
			if v, ok := m[f]; ok && v != nil {
				out = appendMasked(out, v, true, text)
			}
		}
	}
	return out
}

// appendMasked appends what text makes of each leaf v holds under a
// _secrets or _masked key (anywhere, when masked), where it makes any.
func appendMasked(out []string, v any, masked bool, text func(any) (string, bool)) []string {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			out = appendMasked(out, e, masked || masking.IsMaskedKey(k), text)
		}
		return out
	case []any:
		for _, e := range x {
			out = appendMasked(out, e, masked, text)
		}
		return out
	}
	if !masked {
		return out
	}
	if s, ok := text(v); ok {
		out = append(out, s)
	}
	return out
}

// nonEmptyString is a leaf's text when it is a string, for appendMasked.
func nonEmptyString(v any) (string, bool) {
	s, ok := v.(string)
	return s, ok && s != ""
}

// configJSON encodes a task configuration for TaskScheduled.Config.
func configJSON(wt *conductor.WorkflowTask) []byte {
	b, err := json.Marshal(wt)
	if err != nil {
		return nil
	}
	return b
}

// dynamicFork is what a FORK_JOIN_DYNAMIC task spawns.
type dynamicFork struct {
	tasks  []*conductor.WorkflowTask
	inputs map[string]map[string]any // by reference name
	// from is the key of the fork's input the inputs were read from: a
	// map by reference name or, indexed, forkTaskInputs, whose element i
	// is the input of tasks[i], as {"input": element} where wrapped[i].
	from    string
	indexed bool
	wrapped []bool
}

// deferred returns, by reference name, the paths in a task's input of the
// secret and environment references (and reads of sealed data in text) it
// takes from the fork's input, given the fork's paths (Task.Deferred): the
// definition wrote them there, and a forked task is handed them resolved
// as any task is. The fork's paths read back from the log or a snapshot
// have their list indices decoded as any integer type (expr.Index).
func (f *dynamicFork) deferred(deferred [][]any) map[string][][]any {
	var out map[string][][]any
	for _, p := range deferred {
		if f.from == "" || len(p) < 2 || p[0] != f.from {
			continue
		}
		var ref string
		var at []any
		if f.indexed {
			i, ok := expr.Index(p[1])
			if !ok || i < 0 || i >= len(f.tasks) {
				continue
			}
			ref = f.tasks[i].TaskReferenceName
			switch {
			case f.wrapped[i]:
				at = append([]any{"input"}, p[2:]...)
			case len(p) < 3 || p[2] == "__index":
				continue // the index is set over it
			default:
				at = slices.Clone(p[2:])
			}
		} else {
			ref, _ = p[1].(string)
			if len(p) < 3 || f.inputs[ref] == nil {
				continue
			}
			at = slices.Clone(p[2:])
		}
		if out == nil {
			out = map[string][][]any{}
		}
		out[ref] = append(out[ref], at)
	}
	return out
}

// forkSpec reads the tasks a FORK_JOIN_DYNAMIC spawns from its input:
// input[dynamicForkTasksParam] is a list of task configurations and
// input[dynamicForkTasksInputParamName] maps their reference names to
// their inputs; or (OSS) input.forkTaskName / forkTaskType /
// forkTaskWorkflow with input.forkTaskInputs, a list: one task per element,
// named "_<forkTaskName>_<i>", its input the element (or {"input": element})
// with "__index": i.
func (d *decision) forkSpec(wt *conductor.WorkflowTask, ref string, iteration int, input map[string]any) (*dynamicFork, error) {
	var f *dynamicFork
	var err error
	// Conductor's own examples of forkTaskInputs name a dynamicForkTasksParam
	// their input does not hold: the list given wins, else forkTaskInputs.
	if list, ok := input["forkTaskInputs"].([]any); ok && (wt.DynamicForkTasksParam == "" || input[wt.DynamicForkTasksParam] == nil) {
		f, err = simpleForkSpec(wt, input, list)
	} else {
		f, err = listForkSpec(wt, ref, input)
	}
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for i, t := range f.tasks {
		switch {
		case t == nil || t.TaskReferenceName == "":
			return nil, fmt.Errorf("FORK_JOIN_DYNAMIC %s: forked task %d has no taskReferenceName", ref, i)
		case d.unsealedText(t.Name) || d.unsealedText(t.TaskReferenceName):
			return nil, fmt.Errorf("FORK_JOIN_DYNAMIC %s: forked task %d takes its name or reference name from the workflow's _secrets or _masked data, "+
				"which a name would show in plain text", ref, i)
		case t.Name == "":
			return nil, fmt.Errorf("FORK_JOIN_DYNAMIC %s: forked task %s has no name", ref, t.TaskReferenceName)
		case containerTypes[t.TaskType()]:
			return nil, fmt.Errorf("FORK_JOIN_DYNAMIC %s: forked task %s is a %s: only tasks without branches can be forked dynamically", ref, t.TaskReferenceName, t.TaskType())
		case !KnownTaskType(t.TaskType()) && t.TaskType() != conductor.TaskTypeDynamic:
			return nil, fmt.Errorf("FORK_JOIN_DYNAMIC %s: forked task %s has unsupported type %s", ref, t.TaskReferenceName, t.TaskType())
		case seen[t.TaskReferenceName]:
			return nil, fmt.Errorf("FORK_JOIN_DYNAMIC %s: taskReferenceName %s is forked twice", ref, t.TaskReferenceName)
		case d.plan.node(t.TaskReferenceName) != nil:
			// node also finds "x__2" as an iteration of the definition's x.
			return nil, fmt.Errorf("FORK_JOIN_DYNAMIC %s: forked taskReferenceName %s is already a task of the definition", ref, t.TaskReferenceName)
		}
		seen[t.TaskReferenceName] = true
		if wt.Optional && !t.Optional {
			t.Optional, t.Raw = true, nil // an optional fork forks optional tasks
		}
	}
	return f, nil
}

// forkNameReferenced names the field of a dynamic fork's input (deferred
// its paths holding references) that gives a forked task its name or
// reference name from a secret or an environment value, or "". Such a
// reference resolves at hand-off only: the task would be named after its
// text. The fork is read as forkSpec reads it.
func forkNameReferenced(wt *conductor.WorkflowTask, input map[string]any, deferred [][]any) string {
	param := wt.DynamicForkTasksParam
	simple := param == "" || input[param] == nil
	for _, p := range deferred {
		switch {
		case simple && len(p) == 1 && p[0] == "forkTaskName":
			return "forkTaskName"
		case !simple && len(p) == 3 && p[0] == param && (p[2] == "name" || p[2] == "taskReferenceName"):
			return fmt.Sprintf("%s[%v].%s", param, p[1], p[2])
		}
	}
	return ""
}

func listForkSpec(wt *conductor.WorkflowTask, ref string, input map[string]any) (*dynamicFork, error) {
	if wt.DynamicForkTasksParam == "" {
		return nil, fmt.Errorf("FORK_JOIN_DYNAMIC %s needs dynamicForkTasksParam (or input forkTaskName and forkTaskInputs)", ref)
	}
	// A missing list is not an empty one: an expression that finds nothing
	// (a misspelt path) would fork nothing and go on as if every task had
	// run. Conductor's mapper fails the workflow there too.
	if input[wt.DynamicForkTasksParam] == nil {
		return nil, fmt.Errorf("FORK_JOIN_DYNAMIC %s: input %q is null, want a list of workflow tasks (an empty list forks nothing)", ref, wt.DynamicForkTasksParam)
	}
	raw, err := json.Marshal(input[wt.DynamicForkTasksParam])
	if err != nil {
		return nil, fmt.Errorf("FORK_JOIN_DYNAMIC %s: input %q: %v", ref, wt.DynamicForkTasksParam, err)
	}
	var tasks []*conductor.WorkflowTask
	if err := conductor.Unmarshal(raw, &tasks); err != nil {
		return nil, fmt.Errorf("FORK_JOIN_DYNAMIC %s: input %q is not a list of workflow tasks: %v", ref, wt.DynamicForkTasksParam, err)
	}
	f := &dynamicFork{tasks: tasks, inputs: map[string]map[string]any{}, from: wt.DynamicForkTasksInputParamName}
	if wt.DynamicForkTasksInputParamName == "" {
		return f, nil
	}
	switch in := input[wt.DynamicForkTasksInputParamName].(type) {
	case nil:
	case map[string]any:
		for k, v := range in {
			m, ok := v.(map[string]any)
			if !ok && v != nil {
				return nil, fmt.Errorf("FORK_JOIN_DYNAMIC %s: input %q.%s is %s, want an object", ref, wt.DynamicForkTasksInputParamName, k, jsonType(v))
			}
			f.inputs[k] = m
		}
	default:
		return nil, fmt.Errorf("FORK_JOIN_DYNAMIC %s: input %q is %s, want an object mapping reference names to inputs", ref, wt.DynamicForkTasksInputParamName, jsonType(in))
	}
	return f, nil
}

func simpleForkSpec(wt *conductor.WorkflowTask, input map[string]any, list []any) (*dynamicFork, error) {
	name, _ := input["forkTaskName"].(string)
	typ, _ := input["forkTaskType"].(string)
	sub, _ := input["forkTaskWorkflow"].(string)
	if typ != "" && name == "" && leafSystemTypes[typ] {
		name = typ
	}
	if name == "" {
		name = wt.TaskReferenceName
	}
	if typ == "" {
		typ = conductor.TaskTypeSimple
	}
	f := &dynamicFork{inputs: map[string]map[string]any{}, from: "forkTaskInputs", indexed: true}
	for i, el := range list {
		in := map[string]any{}
		m, ok := el.(map[string]any)
		f.wrapped = append(f.wrapped, !ok)
		if ok {
			for k, v := range m {
				in[k] = v
			}
		} else {
			in["input"] = el
		}
		in["__index"] = int64(i)
		t := &conductor.WorkflowTask{Name: name, TaskReferenceName: fmt.Sprintf("_%s_%d", name, i), Type: typ}
		if sub != "" {
			t.Name, t.Type = sub, conductor.TaskTypeSubWorkflow
			t.TaskReferenceName = fmt.Sprintf("_%s_%d", name, i)
			p := &conductor.SubWorkflowParams{Name: sub}
			if v, ok := intValue(input["forkTaskWorkflowVersion"]); ok {
				p.Version = &v
			}
			t.SubWorkflowParam = p
		}
		f.tasks = append(f.tasks, t)
		f.inputs[t.TaskReferenceName] = in
	}
	return f, nil
}

// prepareFork completes a FORK_JOIN_DYNAMIC being scheduled, its output
// naming what it forks: {"forkedTasks": [refs], "forkedTaskInputs": {ref:
// input}}. The tasks are scheduled by spawnForked; the JOIN that follows
// waits for exactly these (dynamicJoinRefs).
func (d *decision) prepareFork(wt *conductor.WorkflowTask, ev *schemas.TaskScheduled) error {
	f, err := d.forkSpec(wt, ev.Ref, ev.Iteration, ev.Input)
	if err != nil {
		return err
	}
	if field := forkNameReferenced(wt, ev.Input, ev.Deferred); field != "" {
		return fmt.Errorf("FORK_JOIN_DYNAMIC %s: %s", ev.Ref, sealedReason(field, sealedDataRead))
	}
	for _, t := range f.tasks {
		if d.latest(iterRef(t.TaskReferenceName, ev.Iteration)) != nil {
			return fmt.Errorf("FORK_JOIN_DYNAMIC %s: a task %s exists already", ev.Ref, t.TaskReferenceName)
		}
	}
	refs := make([]any, len(f.tasks))
	inputs := map[string]any{}
	for i, t := range f.tasks {
		refs[i] = t.TaskReferenceName
		ev.Forked = append(ev.Forked, t.TaskReferenceName)
		if in := f.inputs[t.TaskReferenceName]; in != nil {
			inputs[t.TaskReferenceName] = in
		}
	}
	ev.Status = conductor.TaskCompleted
	ev.Output = map[string]any{"forkedTasks": refs, "forkedTaskInputs": inputs}
	return nil
}

// spawnForked schedules the tasks of a completed FORK_JOIN_DYNAMIC. A
// forked task's input is its own inputParameters, resolved, with the input
// given for its reference name on top.
func (d *decision) spawnForked(wt *conductor.WorkflowTask, fork *Task) {
	f, err := d.forkSpec(wt, fork.Ref, fork.Iteration, fork.Input)
	if err != nil {
		return // prepareFork checked the same input
	}
	d.scheduleForked(fork, f, func(string) bool { return true })
}

// scheduleForked schedules the tasks of f that spawn picks, by reference
// name, and the JOIN after fork unless it is scheduled already: together,
// as Conductor's mapper makes them.
func (d *decision) scheduleForked(fork *Task, f *dynamicFork, spawn func(ref string) bool) {
	held := d.hold()
	defer d.release(held)
	deferred := f.deferred(fork.Deferred)
	for _, t := range f.tasks {
		if d.w.Status != conductor.WorkflowRunning {
			return
		}
		if spawn(t.TaskReferenceName) {
			d.schedule(t, scheduleOpts{iteration: fork.Iteration, parentTaskID: fork.ID, fromData: true,
				mergeInput: f.inputs[t.TaskReferenceName], mergeDeferred: deferred[t.TaskReferenceName]})
		}
	}
	if next, why, _ := d.plan.after(fork.Ref); why == endNone && next.TaskType() == conductor.TaskTypeJoin && !d.scheduledAfter(next.TaskReferenceName, fork) {
		d.schedule(next, scheduleOpts{iteration: fork.Iteration})
	}
}

// respawnForked schedules again the tasks of a FORK_JOIN_DYNAMIC that a
// rerun from one of them removed (those forked after it): nothing else
// schedules a forked task, and the JOIN waits for every one.
func (d *decision) respawnForked(fork *Task) {
	if fork == nil || fork.Type != conductor.TaskTypeForkJoinDynamic {
		return
	}
	wt := d.plan.config(fork)
	if wt == nil {
		return
	}
	f, err := d.forkSpec(wt, fork.Ref, fork.Iteration, fork.Input)
	if err != nil {
		return
	}
	d.scheduleForked(fork, f, func(ref string) bool { return d.latest(iterRef(ref, fork.Iteration)) == nil })
}

// canRespawnForked refuses a rerun inside a FORK_JOIN_DYNAMIC, or from the
// fork itself with its stored input, when that input no longer names the
// tasks it forked: redaction replaced a value in it that equals a secret
// the workflow resolved (a reference name, most likely). Spawned from that
// input, the tasks would not be the ones the JOIN of the first run waited
// for (fork.Forked), and would be named "***".
func (d *decision) canRespawnForked(fork *Task) error {
	if fork == nil || fork.Type != conductor.TaskTypeForkJoinDynamic || len(fork.Forked) == 0 {
		return nil
	}
	wt := d.plan.config(fork)
	if wt == nil {
		return nil
	}
	if f, err := d.forkSpec(wt, fork.Ref, fork.Iteration, fork.Input); err == nil && slices.EqualFunc(f.tasks, fork.Forked,
		func(t *conductor.WorkflowTask, ref string) bool { return t.TaskReferenceName == ref }) {
		return nil
	}
	return fault.Conflict("cannot rerun from or inside FORK_JOIN_DYNAMIC %s: its stored input no longer names the tasks it forked "+
		"(a value in it equal to a resolved secret was redacted); rerun the workflow from a task before the fork, from its start, "+
		"or from the fork with a taskInput", fork.Ref)
}

// dynamicJoinRefs returns the tasks a JOIN that follows a FORK_JOIN_DYNAMIC
// waits for: those the fork spawned. ok is false for other JOINs.
func (d *decision) dynamicJoinRefs(join *Task) (refs []string, ok bool) {
	forkRef, ok := dynamicForkBefore(d.plan, join)
	if !ok {
		return nil, false
	}
	fork := d.latest(forkRef)
	if fork == nil {
		return nil, true
	}
	if len(fork.Forked) > 0 {
		return fork.Forked, true
	}
	list, _ := fork.Output["forkedTasks"].([]any)
	for _, r := range list {
		if s, ok := r.(string); ok {
			refs = append(refs, s)
		}
	}
	return refs, true
}

// dynamicForkBefore returns the reference name (with the JOIN's iteration)
// of the FORK_JOIN_DYNAMIC a JOIN follows; ok is false for other JOINs.
func dynamicForkBefore(p *plan, join *Task) (forkRef string, ok bool) {
	n := p.node(join.Ref)
	if n == nil || n.idx == 0 || n.list[n.idx-1] == nil || n.list[n.idx-1].TaskType() != conductor.TaskTypeForkJoinDynamic {
		return "", false
	}
	return iterRef(n.list[n.idx-1].TaskReferenceName, join.Iteration), true
}

// joinInput is what Conductor's JoinTaskMapper, ForkJoinDynamicTaskMapper
// and ExclusiveJoinTaskMapper put in a JOIN's or an EXCLUSIVE_JOIN's input,
// which clients written for Conductor read (its UI draws a dynamic fork's
// tasks from the JOIN's joinOn): joinOn, the definition's (after a
// FORK_JOIN_DYNAMIC, the forkedTasks of the fork's output, as the fork
// shows them), and an EXCLUSIVE_JOIN's defaultExclusiveJoinTask. The
// state keeps neither: they are the definition's, and the fork's output.
// latest finds a task by reference name. nil for other tasks.
func (w *Workflow) joinInput(t *Task, latest func(string) *Task) map[string]any {
	if t.Type != conductor.TaskTypeJoin && t.Type != conductor.TaskTypeExclusiveJoin {
		return nil
	}
	p, err := w.planFor()
	if err != nil {
		return nil
	}
	wt := p.config(t)
	if wt == nil {
		return nil
	}
	in := map[string]any{"joinOn": stringsAny(wt.JoinOn)}
	if t.Type == conductor.TaskTypeExclusiveJoin {
		if wt.DefaultExclusiveJoinTask != nil {
			in["defaultExclusiveJoinTask"] = stringsAny(wt.DefaultExclusiveJoinTask)
		}
		return in
	}
	if forkRef, ok := dynamicForkBefore(p, t); ok {
		joinOn := []any{}
		if fork := latest(forkRef); fork != nil {
			list, _ := fork.Output["forkedTasks"].([]any)
			joinOn = append(joinOn, list...)
		}
		in["joinOn"] = joinOn
	}
	return in
}

func stringsAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// prepareStartWorkflow readies a START_WORKFLOW task: the workflow it
// starts gets an id derived from the task's, which the output carries
// ({"workflowId": id}); the StartWorkflow effect starts it, and the task
// waits IN_PROGRESS until the executor reports whether it did. tmpl is
// what the input was evaluated from.
func (d *decision) prepareStartWorkflow(ev *schemas.TaskScheduled, tmpl map[string]any) error {
	sw, ok := ev.Input["startWorkflow"].(map[string]any)
	if !ok {
		return fmt.Errorf("START_WORKFLOW %s: inputParameters.startWorkflow must be an object {name, version, input, correlationId}", ev.Ref)
	}
	// What the decider reads of the request to start it with (all but
	// its input, which the start resolves and seals into the new
	// workflow's) may not be sealed data: the decider would read the
	// value when the data was sealed in this decision and "***" in any
	// other, and the started workflow shows and indexes its correlation
	// id and domains in plain text.
	fields := [][]string{{"name"}, {"version"}, {"correlationId"}, {"priority"}, {"idempotencyKey"}, {"idempotencyStrategy"}}
	if t2d, ok := sw["taskToDomain"].(map[string]any); ok {
		for _, k := range slices.Sorted(maps.Keys(t2d)) {
			fields = append(fields, []string{"taskToDomain", k})
		}
	}
	for _, f := range fields {
		if reason := d.readsSealedAt(ev, tmpl, append([]string{"startWorkflow"}, f...)...); reason != "" {
			return fmt.Errorf("START_WORKFLOW %s: %s", ev.Ref, reason)
		}
	}
	// Nor a value redacted into a variable or an output, which the key
	// would keep as "***" (see readsRedacted).
	swTmpl, _ := tmpl["startWorkflow"].(map[string]any) // nil: read whole from data
	if readsRedacted(d.w, d, ev.TaskID, swTmpl["idempotencyKey"], sw["idempotencyKey"]) {
		return fmt.Errorf("START_WORKFLOW %s: %s", ev.Ref, redactedKeyReason("startWorkflow.idempotencyKey"))
	}
	if name, _ := sw["name"].(string); name == "" {
		return fmt.Errorf("START_WORKFLOW %s: inputParameters.startWorkflow.name is required", ev.Ref)
	}
	if in, ok := sw["input"]; ok && in != nil {
		if _, ok := in.(map[string]any); !ok {
			return fmt.Errorf("START_WORKFLOW %s: inputParameters.startWorkflow.input must be an object", ev.Ref)
		}
	}
	if p, ok := sw["priority"]; ok && p != nil {
		if _, ok := priorityValue(p); !ok {
			return fmt.Errorf("START_WORKFLOW %s: inputParameters.startWorkflow.priority %v: want an integer 0-99", ev.Ref, p)
		}
	}
	// The key is the started workflow's, shown, searched and indexed in
	// plain text: a secret or sealed data failed above.
	if _, ok := KeyText(sw["idempotencyKey"]); !ok {
		return fmt.Errorf("START_WORKFLOW %s: inputParameters.startWorkflow.idempotencyKey: want text or a number, not %T", ev.Ref, sw["idempotencyKey"])
	}
	if s, ok := sw["idempotencyStrategy"].(string); (!ok && sw["idempotencyStrategy"] != nil) || !conductor.KnownIdempotencyStrategy(s) {
		return fmt.Errorf("START_WORKFLOW %s: inputParameters.startWorkflow.idempotencyStrategy %v: %s", ev.Ref, sw["idempotencyStrategy"],
			conductor.WantIdempotencyStrategy)
	}
	ev.Status = conductor.TaskInProgress
	ev.Output = map[string]any{"workflowId": DeriveID(d.w.ID, "start", ev.TaskID)}
	return nil
}

// startWorkflowOf is the effect a START_WORKFLOW task waiting for its
// start implies (again, after a crash: one that exists is reported on).
func startWorkflowOf(w *Workflow, t *Task) (StartWorkflow, bool) {
	sw, _ := t.Input["startWorkflow"].(map[string]any)
	id, _ := t.Output["workflowId"].(string)
	name, _ := sw["name"].(string)
	if id == "" || name == "" {
		return StartWorkflow{}, false
	}
	eff := StartWorkflow{WorkflowID: id, Name: name, CreatedBy: w.CreatedBy, AlsoRunsAs: w.AlsoRunsAs, From: w.ID, SecretsKey: w.SecretsKey}
	eff.Depth, eff.Refused = startedBy(w)
	if t.Status == conductor.TaskInProgress {
		eff.StartTaskID = t.ID
	}
	if v, ok := intValue(sw["version"]); ok {
		eff.Version = &v
	}
	eff.Priority, _ = priorityValue(sw["priority"])
	eff.Input, _ = sw["input"].(map[string]any)
	// Orkes's: the workflow starts as a start request with them does.
	eff.IdempotencyKey, _ = KeyText(sw["idempotencyKey"])
	eff.IdempotencyStrategy, _ = sw["idempotencyStrategy"].(string)
	// Secret and environment references in the input resolve as the
	// starter's, sealed into the new workflow's input, as a SUB_WORKFLOW's.
	for _, p := range t.Deferred {
		if len(p) > 2 && p[0] == "startWorkflow" && p[1] == "input" {
			eff.InputDeferred = append(eff.InputDeferred, slices.Clone(p[2:]))
		}
	}
	eff.Sealed = sealedReadsOf(w, eff.Input, eff.InputDeferred, t.SealedReads)
	// A request without a correlationId or taskToDomain takes its
	// starter's, as Conductor's StartWorkflow does: the started workflow is
	// found by the starter's correlation id and polled from its domains.
	eff.CorrelationID, _ = sw["correlationId"].(string)
	if strings.TrimSpace(eff.CorrelationID) == "" {
		eff.CorrelationID = w.CorrelationID
	}
	if t2d, ok := sw["taskToDomain"].(map[string]any); !ok || len(t2d) == 0 {
		if len(w.TaskToDomain) > 0 {
			eff.TaskToDomain = maps.Clone(w.TaskToDomain)
		}
	} else {
		eff.TaskToDomain = map[string]string{}
		keys := make([]string, 0, len(t2d))
		for k := range t2d {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if s, ok := t2d[k].(string); ok {
				eff.TaskToDomain[k] = s
			}
		}
	}
	return eff, true
}

// intValue reads an integer given as a JSON number or a numeric string.
func intValue(v any) (int, bool) {
	switch x := v.(type) {
	case int64, int, float64, uint64, int32:
		return intOf(x), true
	case string:
		var n int
		if _, err := fmt.Sscanf(x, "%d", &n); err == nil {
			return n, true
		}
	}
	return 0, false
}

// priorityValue reads a workflow priority: an integer from 0 to 99.
func priorityValue(v any) (int, bool) {
	switch x := v.(type) {
	case float64:
		if x < 0 || x > 99 || x != float64(int(x)) {
			return 0, false
		}
		return int(x), true
	case string:
		p, err := strconv.Atoi(x)
		return p, err == nil && p >= 0 && p <= 99
	}
	p, ok := intValue(v)
	return p, ok && p >= 0 && p <= 99
}

// evaluateExclusiveJoin completes an EXCLUSIVE_JOIN once one of its joinOn
// tasks (else one of defaultExclusiveJoinTask) has finished, with that
// task's output; it fails if that task failed. When none of them ran and
// nothing that could still bring one runs (see mayStillRun), it completes
// with an empty output rather than wait forever, once a round of the
// decision schedules nothing (see step): a task that ended in this round
// may still be followed by one that leads to them.
func (d *decision) evaluateExclusiveJoin(ej *Task) bool {
	wt := d.plan.config(ej)
	if wt == nil {
		return false
	}
	find := func(refs []string) *Task {
		for _, ref := range refs {
			t := d.latest(iterRef(ref, ej.Iteration))
			if t == nil || t.Status == conductor.TaskSkipped {
				continue
			}
			if conductor.TaskTerminal(t.Status) {
				return t
			}
		}
		return nil
	}
	found := find(wt.JoinOn)
	if found == nil {
		found = find(wt.DefaultExclusiveJoinTask)
	}
	switch {
	case found == nil:
		if !d.mayStillRun(ej, wt) {
			d.unjoined = append(d.unjoined, ej)
		}
		return false
	case conductor.TaskSuccessful(found.Status):
		d.emit(&schemas.TaskUpdated{TaskID: ej.ID, Status: conductor.TaskCompleted, Output: copyMap(found.Output), Time: d.now})
	default:
		// The task's own reason, as Conductor's ExclusiveJoin gives it
		// (and a JOIN here): the workflow's reason is the EXCLUSIVE_JOIN's.
		d.emit(&schemas.TaskUpdated{TaskID: ej.ID, Status: conductor.TaskFailed, KeepOutput: true,
			Reason: failureReason(found), Time: d.now})
		d.failed(d.w.task(ej.ID))
	}
	return true
}

// mayStillRun reports whether a task of the workflow runs that could still
// lead to one an EXCLUSIVE_JOIN waits for (see leadsTo): a task in a
// parallel branch, which cannot, is not waited for. JOINs and
// EXCLUSIVE_JOINs run only by waiting for others, and a loop whose body
// holds ej waits for it: were they counted, a JOIN on ej (ej in a fork
// branch whose SWITCH took an empty case) would wait for ej and ej for the
// JOIN, for ever. A task the definition does not place (a dynamic fork's
// child is placed at its fork) or a name it lacks is waited for.
func (d *decision) mayStillRun(ej *Task, wt *conductor.WorkflowTask) bool {
	at := d.placeOf(ej)
	targets := make([]*node, 0, len(wt.JoinOn)+len(wt.DefaultExclusiveJoinTask))
	for _, ref := range slices.Concat(wt.JoinOn, wt.DefaultExclusiveJoinTask) {
		targets = append(targets, d.plan.node(ref))
	}
	for _, t := range d.w.Tasks {
		if !t.Active() || t.ID == ej.ID {
			continue
		}
		switch t.Type {
		case conductor.TaskTypeJoin, conductor.TaskTypeExclusiveJoin:
			continue
		case conductor.TaskTypeDoWhile:
			if ln := d.plan.node(t.Ref); ln != nil && d.inLoop(ej, ln) {
				continue
			}
		}
		from := d.placeOf(t)
		for _, to := range targets {
			if from == nil || to == nil || leadsTo(from, to, at) {
				return true
			}
		}
	}
	return false
}
