package engine

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/flowvault/flowvault/engine/expr"
	"github.com/flowvault/flowvault/masking"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
)

type scheduleOpts struct {
	iteration  int
	retryOf    *Task          // schedule a retry of this task instance
	input      map[string]any // explicit input: a rerun's (kept or given)
	deferred   [][]any        // the paths of input holding secret or environment references
	mergeInput map[string]any // set on top of the evaluated input (dynamic fork inputs)
	// mergeDeferred are the paths of mergeInput holding secret or
	// environment references.
	mergeDeferred [][]any
	// fromData marks a configuration that came from the workflow's data
	// (a dynamic fork's tasks, from a worker's output): see dataRefusal.
	fromData     bool
	availableAt  int64
	parentTaskID string
	// child, for a SUB_WORKFLOW, is a child that runs again (a rerun that
	// went through it): the task waits for it instead of starting one.
	child string
	// sealedReads are the SealedReads of the instance whose input is
	// kept (a rerun's).
	sealedReads []string
	// rerunOf is the instance a rerun runs again: the new one takes its
	// retryCount and retriedTaskId, as Conductor's rerun resets that
	// instance in place, so that it has the retries that one had left.
	rerunOf *Task
}

// systemWorkerTypes run in the engine's system workers: they may do I/O or
// run user code, which the decider must not. Executors register the types
// they implement (RegisterSystemWorkerType).
var systemWorkerTypes sync.Map // type → true

// decidedTypes are completed or started by the decider itself.
var decidedTypes = map[string]bool{
	conductor.TaskTypeSwitch: true, conductor.TaskTypeDecision: true, conductor.TaskTypeForkJoin: true,
	conductor.TaskTypeJoin: true, conductor.TaskTypeSetVariable: true, conductor.TaskTypeTerminate: true,
	conductor.TaskTypeWait: true, conductor.TaskTypeSubWorkflow: true, conductor.TaskTypeNoop: true,
	conductor.TaskTypeDoWhile: true, conductor.TaskTypeDynamic: true, conductor.TaskTypeForkJoinDynamic: true,
	conductor.TaskTypeStartWorkflow: true, conductor.TaskTypeExclusiveJoin: true, conductor.TaskTypeHuman: true,
	conductor.TaskTypeWaitForWebhook: true,
}

func runsInSystemWorker(typ string) bool {
	_, ok := systemWorkerTypes.Load(typ)
	return ok
}

func isSystemType(typ string) bool { return runsInSystemWorker(typ) || decidedTypes[typ] }

// HandsOffInput reports whether a task of typ is handed out with its input
// (to a worker, or to a system worker in the engine) rather than decided
// by the engine from it.
func HandsOffInput(typ string) bool { return !decidedTypes[typ] }

// KnownTaskType reports whether the engine can run tasks of typ.
func KnownTaskType(typ string) bool { return typ == conductor.TaskTypeSimple || isSystemType(typ) }

// RegisterSystemWorkerType declares a task type run by a system worker. The
// executor's system workers register the types they implement at start-up.
func RegisterSystemWorkerType(typ string) { systemWorkerTypes.Store(typ, true) }

// schedule adds an instance of task configuration wt.
func (d *decision) schedule(wt *conductor.WorkflowTask, o scheduleOpts) *Task {
	id := taskID(d.w)
	typ := wt.TaskType()
	ref := iterRef(wt.TaskReferenceName, o.iteration)
	if typ == conductor.TaskTypeDynamic {
		// The task to run is named by the input: resolve it, then schedule
		// that task in the DYNAMIC task's place.
		in, deferred := o.input, o.deferred
		if o.retryOf != nil {
			in, deferred = o.retryOf.Input, o.retryOf.Deferred
		}
		var err error
		if in == nil {
			in, deferred, err = d.evaluateAside(wt.InputParameters, id)
		}
		resolved, rerr := resolveDynamic(wt, in)
		switch {
		case rerr != nil:
		case d.unsealedText(resolved.Name):
			rerr = fmt.Errorf("DYNAMIC %s takes its task name from the workflow's _secrets or _masked data (or a maskedFields field), which a task's name "+
				"(and its queue's) would show in plain text", wt.TaskReferenceName)
		case slices.ContainsFunc(deferred, func(p []any) bool { return len(p) > 0 && p[0] == wt.DynamicTaskNameParam }):
			// A reference resolves at hand-off only: the task would be
			// named after its text, a queue no worker serves.
			rerr = fmt.Errorf("DYNAMIC %s: %s", wt.TaskReferenceName, sealedReason(wt.DynamicTaskNameParam, sealedDataRead))
		}
		if err == nil && rerr == nil {
			return d.schedule(resolved, o)
		}
		if err == nil {
			err = rerr
		}
		return d.scheduleFailed(wt, o, id, ref, err.Error())
	}
	ev := &schemas.TaskScheduled{TaskID: id, Ref: ref, Name: wt.Name, Type: typ, Status: conductor.TaskScheduled,
		Seq: d.nextSeq(), Iteration: o.iteration, ParentTaskID: o.parentTaskID, Time: d.now}
	o.carryCount(ev)
	if n := d.plan.nodes[wt.TaskReferenceName]; n == nil || n.wt != wt {
		ev.Config = configJSON(wt) // decided at run time: not in the definition
	}
	td := wt.TaskDefinition
	if td == nil {
		td = d.in.TaskDef(wt.Name)
		if td != nil {
			ev.TaskDef = td.Raw
		}
	}
	eff := td.Effective(typ != conductor.TaskTypeSimple)
	if wt.RetryCount != nil {
		eff.RetryCount = *wt.RetryCount
	}
	ev.Policy = policyOf(eff)
	if !isSystemType(typ) {
		// As Conductor's setTaskDomains: a system task runs in the
		// engine, from no worker's queue, and has no domain.
		ev.Domain = d.domainFor(wt.Name)
	}
	ev.AvailableAt = afterSeconds(d.now, wt.StartDelay)
	if o.availableAt > 0 {
		ev.AvailableAt = o.availableAt
	}
	if o.child != "" {
		ev.AvailableAt = d.now // it waits for a child that runs again now
	}

	if o.parentTaskID != "" && (o.retryOf != nil || o.input != nil) {
		// A dynamic fork's task (only those have a parent task) runs
		// again (a retry, a rerun) with the input it kept, which
		// dataRefusal judged when it was first scheduled: one it refused
		// kept its references as text, their paths dropped, and the
		// workflow's sealed data it read, which a hand-off opens. Its
		// configuration, from data, is judged again, as it was then.
		if reason := d.refusedAgain(wt, eff, id); reason != "" {
			return d.scheduleFailed(wt, o, id, ref, fmt.Sprintf("task %s, configured by the workflow's data: %s", ref, reason))
		}
	}
	switch {
	case o.retryOf != nil:
		r := o.retryOf
		ev.Input, ev.Deferred = r.Input, r.Deferred
		ev.RetryCount, ev.RetriedTaskID, ev.FirstScheduled = r.RetryCount+1, r.ID, r.FirstScheduled
		if len(r.Config) > 0 {
			ev.Config = r.Config
			break // its input was given with its configuration
		}
		// As Conductor does, the parameters are evaluated again over the
		// input of the failed run: the workflow's data may have changed
		// since (a variable, ${CPEWF_TASK_ID}).
		if in, deferred, err := d.evaluateInput(wt, eff, id); err == nil {
			ev.Input, ev.Deferred = overInput(r.Input, r.Deferred, in, deferred)
		}
		if key := d.computedInput(wt, eff, id); key != "" {
			ev.Input, ev.Deferred = r.Input, r.Deferred
			ev.Status, ev.Reason = conductor.TaskFailedWithTerminalError, computedInputReason(typ, ref, key)
		}
	case o.input != nil:
		ev.Input, ev.Deferred = o.input, o.deferred
	default:
		in, deferred, err := d.evaluateInput(wt, eff, id)
		if err != nil {
			ev.Status, ev.Reason = conductor.TaskFailedWithTerminalError, fmt.Sprintf("input of %s: %v", ref, err)
			break
		}
		if o.fromData {
			if reason := dataRefusal(wt, in, deferred); reason != "" {
				return d.scheduleFailed(wt, o, id, ref, fmt.Sprintf("task %s, configured by the workflow's data: %s", ref, reason))
			}
		}
		if key := d.computedInput(wt, eff, id); key != "" {
			ev.Status, ev.Reason = conductor.TaskFailedWithTerminalError, computedInputReason(typ, ref, key)
			break
		}
		ev.Input, ev.Deferred = in, deferred
		if o.mergeInput != nil {
			ev.Input, ev.Deferred = overInput(in, deferred, o.mergeInput, o.mergeDeferred)
		}
	}
	if wt.TaskDefinition == nil && td != nil && o.input == nil && ev.Status == conductor.TaskScheduled {
		// A registered definition's template (evaluated here, unless the
		// input was given) is code from its author, not the workflow's:
		// what it reads beyond the workflow's plain data must be its
		// author's to read.
		references, sealed := templateReads(wt, eff.InputTemplate, ev.Input, ev.Deferred)
		if sealed {
			return d.scheduleFailed(wt, o, id, ref, fmt.Sprintf("the inputTemplate of task definition %s may not read the workflow's "+
				"_secrets or _masked data: only the workflow's definition may", wt.Name))
		}
		if references {
			d.runAs(cmp.Or(td.UpdatedBy, td.CreatedBy))
		}
	}
	if ev.Status == conductor.TaskScheduled {
		d.fromCache(wt, ev)
	}
	if ev.Status == conductor.TaskScheduled {
		d.prepare(wt, eff, ev)
	}
	keep := o.child != "" && ev.Type == conductor.TaskTypeSubWorkflow && ev.SubWorkflowID != ""
	if keep {
		ev.SubWorkflowID = o.child
	}
	if ev.Type == conductor.TaskTypeSubWorkflow && ev.SubWorkflowID != "" {
		ev.Output = childOutput(ev.SubWorkflowID)
	}
	// A text the guard seals whole no longer shows what it reads of the
	// workflow's sealed data, which a child started from the stored
	// state is handed: the record names it.
	carried := o.sealedReads
	if o.retryOf != nil {
		carried = o.retryOf.SealedReads
	}
	ev.SealedReads = blockReads(ev.Input, ev.Deferred, carried)
	d.emit(ev)
	t := d.w.task(id)
	if keep {
		// The child may have ended again already: ask.
		d.effect(CheckChild{ParentWorkflowID: d.w.ID, ChildID: o.child})
		return t
	}
	d.afterScheduled(wt, t)
	return t
}

// evaluateInput evaluates a task's inputParameters over its definition's
// inputTemplate.
func (d *decision) evaluateInput(wt *conductor.WorkflowTask, eff conductor.EffectiveTaskDef, id string) (map[string]any, [][]any, error) {
	in, deferred, err := d.evaluate(inputTemplate(wt, eff), id)
	if err != nil {
		return nil, nil, err
	}
	for k, v := range eff.InputTemplate {
		if in[k] == nil {
			in[k] = v // a null result falls back to the template, as in Conductor
		}
	}
	return in, deferred, nil
}

// inputTemplate is what a task's input is evaluated from: its
// inputParameters over its definition's inputTemplate.
func inputTemplate(wt *conductor.WorkflowTask, eff conductor.EffectiveTaskDef) map[string]any {
	tmpl := make(map[string]any, len(wt.InputParameters)+len(eff.InputTemplate))
	maps.Copy(tmpl, wt.InputParameters)
	for k, v := range eff.InputTemplate {
		// Conductor merges the template with Java's putIfAbsent, which
		// also fills a key given as null: SDKs that write every field
		// send null for the ones not set.
		if tmpl[k] == nil {
			tmpl[k] = v
		}
	}
	if wt.TaskType() == conductor.TaskTypeEvent && wt.Sink != "" {
		// As Conductor does: the sink joins the input, where its
		// expressions are evaluated and every view shows where the
		// event went.
		tmpl["sink"] = wt.Sink
	}
	return tmpl
}

// templateReads reports what the keys a registered definition's
// inputTemplate gives a task (those its inputParameters leave out or give
// as null) read
// beyond the workflow's plain data: secrets or environment values
// (references, resolved at hand-off as whoever the workflow runs as), or
// its _secrets or _masked data (sealed).
func templateReads(wt *conductor.WorkflowTask, tmpl, in map[string]any, deferred [][]any) (references, sealed bool) {
	fromTemplate := func(key any) bool {
		k, ok := key.(string)
		_, templated := tmpl[k]
		return ok && templated && wt.InputParameters[k] == nil
	}
	for k, v := range in {
		if fromTemplate(k) && masking.HasSealed(v) {
			return references, true
		}
	}
	for _, p := range deferred {
		if len(p) == 0 || !fromTemplate(p[0]) {
			continue
		}
		v, _ := expr.Path(p).In(in)
		if text, _ := v.(string); strings.Contains(text, "${"+expr.SealedPrefix) {
			return references, true
		}
		references = true
	}
	return references, false
}

// overInput is the input old with the keys of fresh replaced, and the
// paths of their hand-off references with them.
func overInput(old map[string]any, oldDeferred [][]any, fresh map[string]any, deferred [][]any) (map[string]any, [][]any) {
	in := make(map[string]any, len(old)+len(fresh))
	maps.Copy(in, old)
	maps.Copy(in, fresh)
	for _, p := range oldDeferred {
		if len(p) > 0 {
			if _, replaced := fresh[fmt.Sprint(p[0])]; replaced {
				continue
			}
		}
		deferred = append(deferred, p)
	}
	return in, deferred
}

// scheduleFailed records a task that could not even be configured (a
// DYNAMIC task naming no task) or may not run (see dataRefusal): it fails
// at once. A configuration decided at run time is kept, as schedule keeps
// it: a dynamic fork shows its tasks' (forkedTaskDefs), and a retry, an
// optional task's pass and a rerun read it.
func (d *decision) scheduleFailed(wt *conductor.WorkflowTask, o scheduleOpts, id, ref, reason string) *Task {
	ev := &schemas.TaskScheduled{TaskID: id, Ref: ref, Name: wt.Name, Type: wt.TaskType(),
		Status: conductor.TaskFailedWithTerminalError, Reason: reason, Seq: d.nextSeq(), Iteration: o.iteration,
		ParentTaskID: o.parentTaskID, Input: o.input, Time: d.now}
	o.carryCount(ev)
	if n := d.plan.nodes[wt.TaskReferenceName]; n == nil || n.wt != wt {
		ev.Config = configJSON(wt)
	}
	if r := o.retryOf; r != nil {
		ev.Input, ev.RetryCount, ev.RetriedTaskID, ev.FirstScheduled = r.Input, r.RetryCount+1, r.ID, r.FirstScheduled
		if len(r.Config) > 0 {
			ev.Config = r.Config
		}
	}
	if ev.Input == nil {
		ev.Input, _, _ = d.evaluate(wt.InputParameters, id)
	}
	ev.Policy = policyOf(conductor.EffectiveTaskDef{})
	d.emit(ev)
	t := d.w.task(id)
	d.ending(t)
	return t
}

// carryCount gives ev, an instance a rerun runs again, the count of
// retries of the instance it replaces (rerunOf).
func (o scheduleOpts) carryCount(ev *schemas.TaskScheduled) {
	if r := o.rerunOf; r != nil {
		ev.RetryCount, ev.RetriedTaskID = r.RetryCount, r.RetriedTaskID
	}
}

func (d *decision) nextSeq() int {
	if len(d.w.Tasks) > scanBelow {
		// A decision that schedules n tasks asked a scan of the list n
		// times.
		return d.w.indexed().maxSeq + 1
	}
	seq := 0
	for _, t := range d.w.Tasks {
		seq = max(seq, t.Seq)
	}
	return seq + 1
}

// NoDomain in a taskToDomain entry stands for the queue without a domain.
const NoDomain = "NO_DOMAIN"

// domainFor is the domain a task of name goes to: its taskToDomain entry,
// else the "*" entry. An entry may list fallbacks, "d1,d2,NO_DOMAIN", as
// in Conductor: the first domain with active workers, else the last one
// listed.
func (d *decision) domainFor(name string) string {
	entry, ok := d.w.TaskToDomain[name]
	if !ok {
		entry = d.w.TaskToDomain["*"]
	}
	domains := strings.Split(entry, ",")
	for i := range domains {
		domains[i] = strings.TrimSpace(domains[i])
	}
	if len(domains) > 1 && d.in.ActiveDomain != nil {
		for _, dom := range domains {
			if dom != "" && !strings.EqualFold(dom, NoDomain) && d.in.ActiveDomain(name, dom) {
				return dom
			}
		}
	}
	if last := domains[len(domains)-1]; !strings.EqualFold(last, NoDomain) {
		return last
	}
	return ""
}

// HasFallbackDomains reports whether taskToDomain lists fallbacks, which
// are chosen among by the workers' activity (Input.ActiveDomain).
func HasFallbackDomains(taskToDomain map[string]string) bool {
	for _, entry := range taskToDomain {
		if strings.Contains(entry, ",") {
			return true
		}
	}
	return false
}

func policyOf(e conductor.EffectiveTaskDef) schemas.TaskPolicy {
	return schemas.TaskPolicy{
		RetryCount: e.RetryCount, RetryLogic: e.RetryLogic, RetryDelaySeconds: e.RetryDelaySeconds,
		BackoffScaleFactor: e.BackoffScaleFactor, MaxRetryDelaySeconds: e.MaxRetryDelaySeconds, BackoffJitterMs: e.BackoffJitterMs,
		TimeoutSeconds: e.TimeoutSeconds, TotalTimeoutSeconds: e.TotalTimeoutSeconds, TimeoutPolicy: e.TimeoutPolicy,
		ResponseTimeoutSeconds: e.ResponseTimeoutSeconds, PollTimeoutSeconds: e.PollTimeoutSeconds,
		RateLimitPerFrequency: e.RateLimitPerFrequency, RateLimitFrequencyInSeconds: e.RateLimitFrequencyInSeconds,
	}
}

// evaluate resolves a template against the workflow, for the task with id
// taskID (${CPEWF_TASK_ID}), for a value the decision keeps (a task's
// input, the workflow's output): what it builds counts against the
// decision's budget (Input.MaxRecordBytes).
func (d *decision) evaluate(tmpl any, taskID string) (map[string]any, [][]any, error) {
	return d.evaluateIn(d.budget(), tmpl, taskID)
}

// evaluateAside is evaluate for a value only read (a DYNAMIC task's input
// before the task it names evaluates its own, a loop condition's): within
// what is left of the decision's budget, and not counted against it.
func (d *decision) evaluateAside(tmpl any, taskID string) (map[string]any, [][]any, error) {
	return d.evaluateIn(d.budget().Aside(), tmpl, taskID)
}

func (d *decision) evaluateIn(b *expr.Budget, tmpl any, taskID string) (map[string]any, [][]any, error) {
	v, deferred, err := b.Evaluate(tmpl, &workflowDoc{w: d.w, taskID: taskID, d: d})
	if err != nil {
		return nil, nil, err
	}
	m, _ := v.(map[string]any)
	if m == nil {
		m = map[string]any{}
	}
	paths := make([][]any, len(deferred))
	for i, p := range deferred {
		paths[i] = []any(p)
	}
	return m, paths, nil
}

// prepare sets the type-specific status and output of a task about to be
// scheduled.
func (d *decision) prepare(wt *conductor.WorkflowTask, eff conductor.EffectiveTaskDef, ev *schemas.TaskScheduled) {
	fail := func(format string, args ...any) {
		ev.Status, ev.Reason = conductor.TaskFailedWithTerminalError, fmt.Sprintf(format, args...)
	}
	// tmpl is what the fields the decider reads were evaluated from: a
	// key the task definition's inputTemplate gives (or fills, over a
	// null) is read as its template says, as one of the inputParameters.
	tmpl := func() map[string]any {
		if len(eff.InputTemplate) == 0 {
			return wt.InputParameters
		}
		return inputTemplate(wt, eff)
	}
	switch ev.Type {
	case conductor.TaskTypeSimple:
	case conductor.TaskTypeSwitch, conductor.TaskTypeDecision:
		if ev.Type == conductor.TaskTypeSwitch {
			switch wt.EvaluatorType {
			case "", "value-param", "javascript", "graaljs":
			default:
				fail("SWITCH %s: evaluatorType %q is not supported: use value-param, javascript or graaljs", ev.Ref, wt.EvaluatorType)
				return
			}
		}
		if scriptCase(ev.Type, wt) {
			// Script evaluators run in a system worker, which reports the
			// selected case.
			if !runsInSystemWorker(ev.Type) {
				fail("%s %s: no system worker evaluates JavaScript cases", ev.Type, ev.Ref)
			}
			break
		}
		param := wt.Expression
		if ev.Type == conductor.TaskTypeDecision || param == "" {
			param = wt.CaseValueParam
		}
		sealed, computed := d.sealedCase(tmpl(), ev.Input, ev.Deferred, param, ev.TaskID)
		if computed {
			fail("%s %s: its case value (%s) is computed by a function or a filter from sealed data or a secret, "+
				"which only a script sees opened: use a javascript evaluator", ev.Type, ev.Ref, param)
			return
		}
		if sealed {
			// Decided at hand-off, where the value is opened (see
			// sealedCase).
			if !runsInSystemWorker(ev.Type) {
				fail("%s %s: no system worker evaluates a case made of sealed data", ev.Type, ev.Ref)
			}
			break
		}
		c := expr.Text(ev.Input[param])
		ev.Status = conductor.TaskCompleted
		ev.Output = conductor.CaseOutput(ev.Type, c)
		ev.Case, ev.CaseDefault = caseOf(wt, c)
	case conductor.TaskTypeSetVariable:
		if len(ev.Deferred) > 0 && runsInSystemWorker(conductor.TaskTypeSetVariable) {
			// Values resolved at hand-off: the system worker resolves
			// them, and the result sets the variables (sealed or redacted
			// by the executor before they are stored).
			break
		}
		if err := d.variablesFit(ev.Input); err != nil {
			fail("SET_VARIABLE %s: %v", ev.Ref, err)
			return
		}
		ev.Status = conductor.TaskCompleted
	case conductor.TaskTypeForkJoin, conductor.TaskTypeNoop:
		ev.Status = conductor.TaskCompleted
	case conductor.TaskTypeTerminate:
		// The reason is the workflow's and its failure workflow's: the
		// value in the decision that seals it, "***" or a reference's
		// text in a later one.
		if reason := d.readsSealed(ev, tmpl(), "terminationStatus", "terminationReason"); reason != "" {
			fail("TERMINATE %s: %s", ev.Ref, reason)
			return
		}
		// As Conductor's Terminate: the task's output is the workflow's
		// output to be, and a status it does not know fails it.
		switch status, _ := ev.Input["terminationStatus"].(string); status {
		case conductor.WorkflowCompleted, conductor.WorkflowFailed, conductor.WorkflowTerminated:
		default:
			fail("given termination status is not valid: %q, want COMPLETED, FAILED or TERMINATED", status)
			return
		}
		ev.Status, ev.Output = conductor.TaskCompleted, map[string]any{}
		switch out := ev.Input["workflowOutput"].(type) {
		case nil:
		case map[string]any:
			ev.Output = copyMap(out)
		default:
			ev.Output = map[string]any{"output": out}
		}
	case conductor.TaskTypeJoin, conductor.TaskTypeExclusiveJoin:
		ev.Status = conductor.TaskInProgress
	case conductor.TaskTypeDoWhile:
		if err := d.prepareLoop(wt, ev); err != nil {
			fail("%v", err)
		}
	case conductor.TaskTypeForkJoinDynamic:
		if err := d.prepareFork(wt, ev); err != nil {
			fail("%v", err)
		}
	case conductor.TaskTypeStartWorkflow:
		if err := d.prepareStartWorkflow(ev, tmpl()); err != nil {
			fail("%v", err)
		}
	case conductor.TaskTypeUpdateSecret:
		// The name is the secret's subject and its keys, listed to
		// everyone who may list secrets: sealed data it reads (a
		// maskedFields field, a copy of _secrets data) would be opened
		// into it at hand-off.
		if reason := d.readsSealedAt(ev, tmpl(), "_secrets", "secretKey"); reason != "" {
			fail("UPDATE_SECRET %s: %s", ev.Ref, reason)
			return
		}
		if !runsInSystemWorker(ev.Type) {
			fail("task type %s is not supported", ev.Type)
		}
	case conductor.TaskTypeWait:
		if reason := d.readsSealed(ev, tmpl(), "duration", "until"); reason != "" {
			fail("WAIT %s: %s", ev.Ref, reason)
			return
		}
		until, err := waitUntil(ev.Input, d.now)
		if err != nil {
			fail("WAIT %s: %v", ev.Ref, err)
			return
		}
		ev.Status, ev.AvailableAt = conductor.TaskInProgress, until
	case conductor.TaskTypeHuman, conductor.TaskTypeWaitForWebhook:
		// Conductor's HUMAN: in progress until someone updates it (a task
		// update, a signal), like a WAIT without a time. Orkes's forms,
		// assignments and claims are not served: the task is its own form.
		// WAIT_FOR_WEBHOOK likewise, until a delivery that meets its
		// inputParameters.matches (package webhooks).
		ev.Status = conductor.TaskInProgress
	case conductor.TaskTypeSubWorkflow:
		if wt.SubWorkflowParam == nil || (wt.SubWorkflowParam.Name == "" && len(wt.SubWorkflowParam.WorkflowDefinition) == 0) {
			fail("SUB_WORKFLOW %s has no subWorkflowParam.name", ev.Ref)
			return
		}
		p := wt.SubWorkflowParam
		if reason := d.paramSealed(ev.TaskID, "subWorkflowParam.name", p.Name); reason != "" {
			fail("SUB_WORKFLOW %s: %s", ev.Ref, reason)
			return
		}
		// The key is the child's, shown and searched as its
		// idempotencyKey, and a read model's index entry.
		if reason := d.paramSealed(ev.TaskID, "subWorkflowParam.idempotencyKey", p.IdempotencyKey); reason != "" {
			fail("SUB_WORKFLOW %s: %s", ev.Ref, reason)
			return
		}
		if readsRedacted(d.w, d, ev.TaskID, p.IdempotencyKey, nil) {
			fail("SUB_WORKFLOW %s: %s", ev.Ref, redactedKeyReason("subWorkflowParam.idempotencyKey"))
			return
		}
		if s, ok := p.Priority.(string); ok {
			if reason := d.paramSealed(ev.TaskID, "subWorkflowParam.priority", s); reason != "" {
				fail("SUB_WORKFLOW %s: %s", ev.Ref, reason)
				return
			}
		}
		// A domain names a queue and is shown on every task sent to it.
		for _, k := range slices.Sorted(maps.Keys(p.TaskToDomain)) {
			if reason := d.paramSealed(ev.TaskID, "subWorkflowParam.taskToDomain."+k, p.TaskToDomain[k]); reason != "" {
				fail("SUB_WORKFLOW %s: %s", ev.Ref, reason)
				return
			}
		}
		if ev.AvailableAt > d.now {
			return // a start or retry delay: the tick at AvailableAt starts it
		}
		ev.Status, ev.SubWorkflowID = conductor.TaskInProgress, childID(d.w, ev.TaskID)
	default:
		if !runsInSystemWorker(ev.Type) {
			fail("task type %s is not supported", ev.Type)
		}
	}
}

// MaxVariablesBytes bounds a workflow's variables, as JSON, after a
// SET_VARIABLE (Conductor's default conductor.max.workflow.variables.payload.threshold.kb).
const MaxVariablesBytes = 256 << 10

// variablesFit reports whether the workflow's variables with values set
// over them stay within MaxVariablesBytes.
func (d *decision) variablesFit(values map[string]any) error {
	merged := copyMap(d.w.Variables)
	maps.Copy(merged, values)
	b, err := json.Marshal(merged)
	if err != nil {
		return fmt.Errorf("variables: %w", err)
	}
	if len(b) > MaxVariablesBytes {
		return fmt.Errorf("the variables would take %d bytes, over the %d-byte limit", len(b), MaxVariablesBytes)
	}
	return nil
}

// afterScheduled performs what a newly scheduled task implies at once.
func (d *decision) afterScheduled(wt *conductor.WorkflowTask, t *Task) {
	switch {
	case t.Status == conductor.TaskFailedWithTerminalError:
		d.ending(t)
		return
	case t.Status == conductor.TaskScheduled:
		if t.AvailableAt <= d.now {
			d.effect(handOff(d.w, t)...)
		}
		return
	}
	switch t.Type {
	case conductor.TaskTypeSetVariable:
		if len(t.Input) > 0 {
			d.emit(&schemas.VariablesUpdated{Variables: t.Input, Time: d.now})
		}
	case conductor.TaskTypeTerminate:
		d.ending(t)
	case conductor.TaskTypeSubWorkflow:
		d.startChild(wt, t)
	case conductor.TaskTypeForkJoinDynamic:
		d.spawnForked(wt, t)
	case conductor.TaskTypeStartWorkflow:
		if eff, ok := startWorkflowOf(d.w, t); ok {
			d.effect(eff)
		}
	}
}

// hold makes the tasks scheduled from here on until release wait for
// one another: what ends the workflow from one of them (a TERMINATE, a
// task failed as it was scheduled) waits until they all are, as
// Conductor's mappers make a fork's tasks and its JOIN before any runs.
// Ended at once, the workflow left the branches after it and the JOIN
// unscheduled, missing from the execution, where Conductor shows them
// CANCELED. It reports whether this call holds (false inside another
// hold, whose release acts for both).
func (d *decision) hold() bool {
	if d.holding {
		return false
	}
	d.holding = true
	return true
}

// release ends the workflow by the first held task that ends it, if held
// is hold's report.
func (d *decision) release(held bool) {
	if !held {
		return
	}
	d.holding = false
	ends := d.ends
	d.ends = nil
	for _, id := range ends {
		if d.w.Status != conductor.WorkflowRunning {
			return
		}
		d.ending(d.w.task(id))
	}
}

// ending ends the workflow by t, a TERMINATE or a task failed as it was
// scheduled, or lets it wait for the hold's release.
func (d *decision) ending(t *Task) {
	if d.holding {
		d.ends = append(d.ends, t.ID)
		return
	}
	if t.Status == conductor.TaskFailedWithTerminalError {
		d.failed(t)
		return
	}
	d.terminateTask(t)
}

// startDelayedChild starts the child of a SUB_WORKFLOW task that waited
// out its start or retry delay.
func (d *decision) startDelayedChild(t *Task) {
	wt := d.plan.config(t)
	if wt == nil {
		return
	}
	child := childID(d.w, t.ID)
	d.emit(&schemas.TaskUpdated{TaskID: t.ID, Status: conductor.TaskInProgress, Output: childOutput(child), MergeOutput: true,
		SubWorkflowID: child, Time: d.now})
	d.startChild(wt, d.w.task(t.ID))
}

// childOutput is a SUB_WORKFLOW task's output while its child runs, and
// after, if the task is canceled: Conductor's, for ${ref.output.subWorkflowId}.
func childOutput(child string) map[string]any { return map[string]any{"subWorkflowId": child} }

func (d *decision) startChild(wt *conductor.WorkflowTask, t *Task) {
	d.effect(childStart(d.w, wt, t))
}

// childStart is the start of SUB_WORKFLOW task t's child.
func childStart(w *Workflow, wt *conductor.WorkflowTask, t *Task) StartWorkflow {
	p := wt.SubWorkflowParam
	t2d, domainRefused := childDomains(w, t, p.TaskToDomain)
	if t2d == nil {
		t2d = w.TaskToDomain
	}
	name := p.Name
	if v, _, err := expr.Evaluate(name, &workflowDoc{w: w, taskID: t.ID}); err == nil {
		if s, ok := v.(string); ok {
			name = s
		}
	}
	def, fromData, refused := childDef(w, t, p.WorkflowDefinition)
	if refused != "" {
		def, refused = nil, fmt.Sprintf("the definition of sub workflow %s comes from the workflow's data: %s", t.Ref, refused)
	}
	depth, tooDeep := startedBy(w)
	if refused == "" {
		refused = tooDeep
	}
	if refused == "" {
		refused = domainRefused
	}
	// The parent's priority, unless the task sets one (Orkes).
	priority := w.Priority
	if p.Priority != nil {
		v := p.Priority
		if s, ok := v.(string); ok {
			v, _, _ = expr.Evaluate(s, &workflowDoc{w: w, taskID: t.ID})
		}
		var ok bool
		if priority, ok = priorityValue(v); !ok && refused == "" {
			refused = fmt.Sprintf("sub workflow %s: subWorkflowParam.priority %v: want an integer 0-99", t.Ref, p.Priority)
		}
	}
	key, keyRefused := childKey(w, t, p.IdempotencyKey)
	if refused == "" {
		refused = keyRefused
	}
	// Orkes runs the latest version for a version of 0 as for none;
	// Conductor's lookup of version 0 finds nothing, so nothing that runs
	// there changes.
	version := p.Version
	if version != nil && *version == 0 {
		version = nil
	}
	return StartWorkflow{Refused: refused,
		WorkflowID: t.SubWorkflowID, Name: name, Version: version, Def: def, DefFromData: fromData,
		Input: t.Input, InputDeferred: t.Deferred, Sealed: sealedReadsOf(w, t.Input, t.Deferred, t.SealedReads), From: w.ID, SecretsKey: w.SecretsKey, CorrelationID: w.CorrelationID, Priority: priority, TaskToDomain: t2d,
		CreatedBy: w.CreatedBy, AlsoRunsAs: w.AlsoRunsAs, ParentWorkflowID: w.ID, ParentWorkflowTaskID: t.ID, Depth: depth,
		IdempotencyKey: key, IdempotencyStrategy: p.IdempotencyStrategy,
	}
}

// childKey is a SUB_WORKFLOW's subWorkflowParam.idempotencyKey with its
// expressions evaluated ("" for none, or one that evaluates to null or
// ""), and why it may not be the child's. A number or a boolean is its
// JSON text (an order's id given as a number), as Jackson reads one into
// Conductor's String key. The key is shown, searched and indexed in
// plain text, so one that references a secret or an environment value,
// or that is an object or a list, is refused: the child does not start
// and the task fails saying why (one from sealed data failed the task
// when it was scheduled).
func childKey(w *Workflow, t *Task, tmpl string) (string, string) {
	if tmpl == "" {
		return "", ""
	}
	val, deferred, err := expr.Evaluate(tmpl, &workflowDoc{w: w, taskID: t.ID})
	if err != nil {
		return "", fmt.Sprintf("sub workflow %s: subWorkflowParam.idempotencyKey: %v", t.Ref, err)
	}
	if len(deferred) > 0 {
		return "", fmt.Sprintf("sub workflow %s: subWorkflowParam.idempotencyKey may not reference secrets or environment values", t.Ref)
	}
	// Read again at the start, which a delay may put decisions after the
	// task's: what the key reads may have been redacted since.
	if readsRedacted(w, nil, t.ID, tmpl, nil) {
		return "", fmt.Sprintf("sub workflow %s: %s", t.Ref, redactedKeyReason("subWorkflowParam.idempotencyKey"))
	}
	key, ok := KeyText(val)
	if !ok {
		return "", fmt.Sprintf("sub workflow %s: subWorkflowParam.idempotencyKey: want text or a number, not %T", t.Ref, val)
	}
	return key, ""
}

// KeyText is an evaluated idempotency key as the start takes it ("" for
// null), and whether it may be one: text, or a number or a boolean as its
// JSON text; not an object or a list. An incoming webhook's key is read
// so too.
func KeyText(val any) (string, bool) {
	switch v := val.(type) {
	case nil:
		return "", true
	case string:
		return v, true
	case bool, float64, int, int64, json.Number:
		b, err := json.Marshal(v)
		if err == nil {
			return string(b), true
		}
	}
	return "", false
}

// childDomains is a SUB_WORKFLOW's subWorkflowParam.taskToDomain with its
// expressions evaluated, as Conductor's SubWorkflowTaskMapper evaluates
// it with the name ({"*": "${workflow.input.domain}"}); nil if the task
// gives none. An entry whose value is null is left out (Conductor's
// lookup of it finds nothing either). A domain names a queue and is shown
// on every task sent to it, so one that references a secret or an
// environment value (resolved only at hand-off), or that is not text, is
// refused: the child does not start and the task fails saying why.
func childDomains(w *Workflow, t *Task, t2d map[string]string) (map[string]string, string) {
	if t2d == nil {
		return nil, ""
	}
	out := make(map[string]string, len(t2d))
	// In key order: the reason of the first entry refused is the
	// decision's, the same at every replay.
	for _, k := range slices.Sorted(maps.Keys(t2d)) {
		val, deferred, err := expr.Evaluate(t2d[k], &workflowDoc{w: w, taskID: t.ID})
		switch s, ok := val.(string); {
		case err != nil:
			return nil, fmt.Sprintf("sub workflow %s: subWorkflowParam.taskToDomain %q: %v", t.Ref, k, err)
		case len(deferred) > 0:
			return nil, fmt.Sprintf("sub workflow %s: subWorkflowParam.taskToDomain %q may not reference secrets or environment values", t.Ref, k)
		case ok:
			out[k] = s
		case val != nil:
			return nil, fmt.Sprintf("sub workflow %s: subWorkflowParam.taskToDomain %q: want text, not %T", t.Ref, k, val)
		}
	}
	return out, ""
}

// inlineDef keeps a subWorkflowParam.workflowDefinition object; a string (an
// expression naming a definition) is not supported and yields nil.
// childDef is a SUB_WORKFLOW's inline definition: an object, or an
// expression that evaluates to one (a definition built by an earlier task,
// given in the input), as Conductor reads subWorkflowParam.workflowDefinition.
// refused says why a definition from data may not run (see dataRefusal).
func childDef(w *Workflow, t *Task, raw []byte) (def []byte, fromData bool, refused string) {
	if def := inlineDef(raw); def != nil {
		return def, false, ""
	}
	var s string
	if len(raw) == 0 || json.Unmarshal(raw, &s) != nil {
		return nil, false, ""
	}
	v, _, err := expr.Evaluate(s, &workflowDoc{w: w, taskID: t.ID})
	if m, ok := v.(map[string]any); ok && err == nil {
		if def, err := json.Marshal(m); err == nil {
			return def, true, defRefusal(m, def)
		}
	}
	return nil, false, ""
}

// dataRefusal says why a task configuration that came from the workflow's
// data (a worker's output) may not run, or "". Data is never code with the
// workflow's rights: its input may not reference secrets or environment
// values, which would resolve as the workflow's principals for whoever
// wrote the data, nor reach values the workflow sealed (_secrets data,
// opened at hand-off), and it may not write secrets (UPDATE_SECRET). It
// is judged on its evaluated input: the expression parser, not a pattern
// over the JSON, decides what a reference is.
func dataRefusal(wt *conductor.WorkflowTask, in map[string]any, deferred [][]any) string {
	switch {
	case wt.TaskType() == conductor.TaskTypeUpdateSecret:
		return "it may not be an " + conductor.TaskTypeUpdateSecret + " task: only a definition may"
	case len(deferred) > 0:
		return "its input may not reference secrets or environment values (${workflow.secrets...}, ${workflow.env...}), nor read the workflow's _secrets or _masked data: only a definition may"
	case masking.HasSealed(in):
		return "its input may not read the workflow's _secrets or _masked data: only a definition may"
	}
	return ""
}

// refusedAgain is dataRefusal for a task configured by the workflow's
// data that runs again, judged on its configuration evaluated anew (its
// kept input may hold references as text), or what kept it from being
// evaluated: it may not run unjudged.
func (d *decision) refusedAgain(wt *conductor.WorkflowTask, eff conductor.EffectiveTaskDef, id string) string {
	in, deferred, err := d.evaluateAside(inputTemplate(wt, eff), id)
	if err != nil {
		return fmt.Sprintf("its input: %v", err)
	}
	return dataRefusal(wt, in, deferred)
}

// defRefusal is dataRefusal for a whole definition built from data: no
// expression in it may reference secrets or environment values, no task
// may be an UPDATE_SECRET, and it may not hold the workflow's sealed data,
// which a definition would carry in plain text.
func defRefusal(def map[string]any, raw []byte) string {
	if bytes.Contains(raw, []byte(`"`+conductor.TaskTypeUpdateSecret+`"`)) {
		return "it may not hold an " + conductor.TaskTypeUpdateSecret + " task: only a definition may"
	}
	if masking.HasSealed(def) {
		return "it may not hold the workflow's _secrets or _masked data: give them to the child in its input"
	}
	if _, deferred, _ := expr.Evaluate(def, expr.MapDoc{}); len(deferred) > 0 {
		return "it may not reference secrets or environment values (${workflow.secrets...}, ${workflow.env...}): only a definition may"
	}
	return ""
}

func inlineDef(raw []byte) []byte {
	for _, c := range raw {
		switch c {
		case ' ', '\t', '\n', '\r':
			continue
		case '{':
			return raw
		}
		return nil
	}
	return nil
}

// terminateTask ends the workflow as a TERMINATE task says. One that
// completes it is held to the definition's outputSchema, as the workflow's
// last task is: its workflowOutput is the workflow's output, which those
// who read it (a parent, a caller of execute) trust the schema with.
func (d *decision) terminateTask(t *Task) {
	status, _ := t.Input["terminationStatus"].(string)
	reason, _ := t.Input["terminationReason"].(string)
	output := copyMap(t.Output)
	if status == conductor.WorkflowCompleted {
		switch refusal, err := d.outputRefusal(output); {
		case err != nil:
			d.failure = err
			return
		case refusal != "":
			status, reason = conductor.WorkflowFailed, refusal
		}
	}
	if status != conductor.WorkflowCompleted {
		d.endedBy = t.ID
		if reason == "" {
			reason = fmt.Sprintf("Workflow is %s by TERMINATE task: %s", status, t.ID)
		}
	}
	d.finish(status, reason, output)
}
