package engine

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"unicode"

	"github.com/flowvault/flowvault/engine/expr"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// storableTypes are Conductor and Orkes task types a definition may name.
// Types flowvault cannot run yet are accepted (a definition that uses them
// round-trips, as the SDKs expect); a task of such a type fails at run time
// with a reason saying so.
var storableTypes = map[string]bool{}

func init() {
	for _, t := range []string{
		// Conductor OSS TaskType.
		"SIMPLE", "DYNAMIC", "FORK_JOIN", "FORK_JOIN_DYNAMIC", "DECISION", "SWITCH", "JOIN", "DO_WHILE",
		"SUB_WORKFLOW", "START_WORKFLOW", "EVENT", "WAIT", "HUMAN", "USER_DEFINED", "HTTP", "LAMBDA", "INLINE",
		"EXCLUSIVE_JOIN", "TERMINATE", "KAFKA_PUBLISH", "JSON_JQ_TRANSFORM", "SET_VARIABLE", "NOOP",
		// Orkes and SDK extensions.
		"UPDATE_SECRET", "GET_SIGNED_JWT", "BUSINESS_RULE", "JDBC", "HTTP_POLL", "WAIT_FOR_WEBHOOK", "START",
		"TERMINAL", "GET_DOCUMENT", "GENERATE_IMAGE", "GENERATE_AUDIO", "PULL_WORKFLOW_MESSAGES", "QUERY_PROCESSOR",
		"OPS_GENIE", "SENDGRID", "LLM_TEXT_COMPLETE", "LLM_CHAT_COMPLETE", "LLM_GENERATE_EMBEDDINGS",
		"LLM_GET_EMBEDDINGS", "LLM_STORE_EMBEDDINGS", "LLM_SEARCH_INDEX", "LLM_INDEX_DOCUMENT", "LLM_INDEX_TEXT",
		"LLM_SEARCH_EMBEDDINGS",
	} {
		storableTypes[t] = true
	}
}

// ValidateWorkflowDef checks what the engine needs of a definition: known
// task types, unique reference names, a JOIN after every fork, complete
// SWITCH, SUB_WORKFLOW, DO_WHILE, INLINE, LAMBDA, JSON_JQ_TRANSFORM,
// DYNAMIC, FORK_JOIN_DYNAMIC, START_WORKFLOW and TERMINATE configurations, and
// expressions that parse. The error is a *fault.ValidationError naming each offending field
// by its JSON path; a definition valid but for variables over
// MaxVariablesBytes fails with fault.ErrTooLarge, naming the field.
func ValidateWorkflowDef(def *conductor.WorkflowDef) error {
	return ValidateWorkflowDefWith(def, nil)
}

// TaskTemplates returns the inputTemplate of the registered task
// definition of a name, nil when there is none.
type TaskTemplates func(name string) map[string]any

// ValidateWorkflowDefWith is ValidateWorkflowDef reading the registered
// task definitions' inputTemplate from templates (nil: none is read): a
// task's input is its inputParameters over its definition's template, so
// that, as in Conductor, a JSON_JQ_TRANSFORM's queryExpression (an INLINE's
// expression, a LAMBDA's scriptExpression) may come from there.
func ValidateWorkflowDefWith(def *conductor.WorkflowDef, templates TaskTemplates) error {
	v := &validator{refs: map[string]string{}, inLoop: map[string]bool{}, errs: &fault.ValidationError{}, templates: templates}
	// Registration checks names further (metadata); an inline definition
	// is checked here alone. Names are joined with NUL into derived ids
	// and index keys, where a control character would let two differ
	// only in where the name ends.
	if strings.ContainsFunc(def.Name, unicode.IsControl) {
		v.errs.Add("name", "must not contain control characters")
	}
	v.list("tasks", def.Tasks)
	v.joins("tasks", def.Tasks)
	for _, ref := range slices.Sorted(maps.Keys(v.refs)) {
		if base := baseRef(ref); base != ref && v.inLoop[base] {
			v.errs.Add(v.refs[ref]+".taskReferenceName", "%q reads as iteration %s of %q, a task of a DO_WHILE: pick another name", ref, ref[len(base)+2:], base)
		}
	}
	for _, pe := range templateErrors(def.OutputParameters) {
		v.errs.Add(join("outputParameters", pe.Path), "%v", pe.Err)
	}
	// maskedFields names top-level fields of the input and output, as
	// Orkes reads them: a path or an expression there names no field and
	// masks nothing, and the value its author meant hidden is shown,
	// searched and stored in plain text.
	for i, f := range def.MaskedFields {
		if strings.ContainsAny(f, ".[$") {
			v.errs.Add(fmt.Sprintf("maskedFields[%d]", i), "%q reads as a path or an expression, which maskedFields does not follow: "+
				"it names top-level fields of the workflow's input and output; name the field that holds the value, or copy the value into a _secrets block", f)
		}
	}
	// What a start without input shows already: a limit that is no
	// number, a key that reads a secret or an environment value.
	if _, err := RateLimitOf(def, conductor.StartWorkflowRequest{}); err != nil {
		v.errs.Add("rateLimitConfig", "%v", strings.TrimPrefix(err.Error(), "invalid: "))
	}
	if err := v.errs.Err(); err != nil {
		return err
	}
	return definedVariablesFit(def.Variables)
}

// definedVariablesFit refuses the variables of a definition, which each
// of its workflows starts with, over MaxVariablesBytes: every SET_VARIABLE
// of such a workflow would fail, however small, as variables a caller
// sends that take a workflow's over the limit are refused (ErrTooLarge).
func definedVariablesFit(vars map[string]any) error {
	if len(vars) == 0 {
		return nil
	}
	b, err := json.Marshal(vars)
	if err != nil {
		return fault.Invalid("variables: %v", err)
	}
	if len(b) > MaxVariablesBytes {
		return fmt.Errorf("variables: %d bytes as JSON, over the %d-byte limit of a workflow's variables: %w", len(b), MaxVariablesBytes, fault.ErrTooLarge)
	}
	return nil
}

type validator struct {
	refs      map[string]string // taskReferenceName → path where first defined
	inLoop    map[string]bool   // taskReferenceNames of the tasks of loops
	errs      *fault.ValidationError
	templates TaskTemplates
}

// inputText reports whether a task's input holds key as text that is not
// blank: its inputParameters' value, or, where they give none (or null),
// its task definition's inputTemplate's (the inline taskDefinition's, else
// the registered one's), as the engine merges them.
func (v *validator) inputText(t *conductor.WorkflowTask, key string) bool {
	val := t.InputParameters[key]
	if val == nil {
		switch {
		case t.TaskDefinition != nil:
			val = t.TaskDefinition.InputTemplate[key]
		case v.templates != nil:
			val = v.templates(t.Name)[key]
		}
	}
	s, ok := val.(string)
	return ok && strings.TrimSpace(s) != ""
}

func join(base, sub string) string {
	switch {
	case sub == "":
		return base
	case strings.HasPrefix(sub, "["):
		return base + sub
	}
	return base + "." + sub
}

func (v *validator) list(path string, tasks []*conductor.WorkflowTask) {
	for i, t := range tasks {
		p := fmt.Sprintf("%s[%d]", path, i)
		if t == nil {
			v.errs.Add(p, "task is null")
			continue
		}
		v.task(p, t, tasks, i)
	}
}

func (v *validator) task(p string, t *conductor.WorkflowTask, siblings []*conductor.WorkflowTask, i int) {
	typ := t.TaskType()
	if !storableTypes[typ] {
		v.errs.Add(p+".type", "unknown task type %q", t.Type)
	}
	if t.TaskReferenceName != "" {
		if first, dup := v.refs[t.TaskReferenceName]; dup {
			v.errs.Add(p+".taskReferenceName", "duplicate taskReferenceName %q (first used at %s)", t.TaskReferenceName, first)
		} else {
			v.refs[t.TaskReferenceName] = p
		}
	}
	for _, pe := range templateErrors(t.InputParameters) {
		v.errs.Add(join(p+".inputParameters", pe.Path), "%v", pe.Err)
	}
	if c := t.CacheConfig; c != nil {
		if c.Key == "" {
			v.errs.Add(p+".cacheConfig.key", "must not be empty: the task's input parameters that name its output, as ${url}-${method}")
		}
		if c.TTLInSecond <= 0 {
			v.errs.Add(p+".cacheConfig.ttlInSecond", "must be a positive number of seconds")
		}
	}
	switch typ {
	case conductor.TaskTypeForkJoin, conductor.TaskTypeForkJoinDynamic:
		if i+1 >= len(siblings) || siblings[i+1] == nil || siblings[i+1].TaskType() != conductor.TaskTypeJoin {
			v.errs.Add(p, "%s must be followed by a JOIN task", typ)
		}
		if _, simple := t.InputParameters["forkTaskInputs"]; typ == conductor.TaskTypeForkJoinDynamic && t.DynamicForkTasksParam == "" && !simple {
			v.errs.Add(p+".dynamicForkTasksParam", "FORK_JOIN_DYNAMIC needs dynamicForkTasksParam (the input parameter holding the tasks to fork), or inputParameters forkTaskName and forkTaskInputs")
		}
		if typ == conductor.TaskTypeForkJoin && len(t.ForkTasks) == 0 {
			v.errs.Add(p+".forkTasks", "FORK_JOIN needs at least one branch")
		}
		for b, branch := range t.ForkTasks {
			v.list(fmt.Sprintf("%s.forkTasks[%d]", p, b), branch)
		}
	case conductor.TaskTypeSwitch, conductor.TaskTypeDecision:
		switch {
		case typ == conductor.TaskTypeSwitch && (t.EvaluatorType == "" || t.EvaluatorType == "value-param") && t.Expression == "":
			v.errs.Add(p+".expression", "SWITCH with evaluatorType value-param needs expression: the input parameter holding the case")
		case typ == conductor.TaskTypeSwitch && (t.EvaluatorType == "javascript" || t.EvaluatorType == "graaljs"):
			if strings.TrimSpace(t.Expression) == "" {
				v.errs.Add(p+".expression", "SWITCH with evaluatorType %s needs expression: JavaScript over $ (the task input) giving the case", t.EvaluatorType)
			}
		case typ == conductor.TaskTypeSwitch && t.EvaluatorType != "" && t.EvaluatorType != "value-param":
			v.errs.Add(p+".evaluatorType", "unknown evaluatorType %q: want value-param, javascript or graaljs", t.EvaluatorType)
		case typ == conductor.TaskTypeDecision && t.CaseValueParam == "" && t.CaseExpression == "":
			v.errs.Add(p+".caseValueParam", "DECISION needs caseValueParam or caseExpression")
		}
		if len(t.DecisionCases) == 0 {
			// As Conductor refuses it: a switch with a default alone is a
			// mistake, not a choice.
			v.errs.Add(p+".decisionCases", "%s needs at least one case", typ)
		}
		for _, c := range sortedCases(t.DecisionCases) {
			v.list(fmt.Sprintf("%s.decisionCases.%s", p, c), t.DecisionCases[c])
		}
		v.list(p+".defaultCase", t.DefaultCase)
	case conductor.TaskTypeJoin:
		// Orkes's join script decides when its JOIN ends; run without it,
		// the JOIN would wait for every task it joins and end otherwise
		// than the definition says, the branches and what follows alike.
		if strings.TrimSpace(t.Expression) != "" {
			v.errs.Add(p+".expression", "a JOIN's join script (Orkes) is not supported: a JOIN waits for every task of joinOn "+
				"(after a FORK_JOIN_DYNAMIC, every task it forked); mark the tasks optional and decide after the JOIN")
		}
	case conductor.TaskTypeSubWorkflow:
		if t.SubWorkflowParam == nil || (t.SubWorkflowParam.Name == "" && len(t.SubWorkflowParam.WorkflowDefinition) == 0) {
			v.errs.Add(p+".subWorkflowParam.name", "SUB_WORKFLOW needs subWorkflowParam.name or an inline workflowDefinition")
		}
		if t.SubWorkflowParam != nil && !conductor.KnownIdempotencyStrategy(t.SubWorkflowParam.IdempotencyStrategy) {
			v.errs.Add(p+".subWorkflowParam.idempotencyStrategy", "%q: %s", t.SubWorkflowParam.IdempotencyStrategy, conductor.WantIdempotencyStrategy)
		}
		if t.SubWorkflowParam != nil {
			for _, pe := range expr.MisplacedDeferred(subWorkflowExpressions(t.SubWorkflowParam)) {
				v.errs.Add(join(p+".subWorkflowParam", pe.Path), "%v", pe.Err)
			}
		}
	case conductor.TaskTypeDoWhile:
		if len(t.LoopOver) == 0 {
			v.errs.Add(p+".loopOver", "DO_WHILE needs loopOver tasks")
		}
		items, hasItems := loopItemsSpec(t)
		if strings.TrimSpace(t.LoopCondition) == "" && !hasItems {
			v.errs.Add(p+".loopCondition", "DO_WHILE needs loopCondition (JavaScript) or items (a list to iterate over)")
		}
		if hasItems {
			switch x := items.(type) {
			case []any:
			case string:
				for _, pe := range templateErrors(map[string]any{"items": x}) {
					v.errs.Add(p+".items", "%v", pe.Err)
				}
			default:
				v.errs.Add(p+".items", "items must be a list or an expression yielding one")
			}
		}
		walk(t.LoopOver, p+".loopOver", func(cp string, c *conductor.WorkflowTask) {
			v.inLoop[c.TaskReferenceName] = true
			if c.TaskType() == conductor.TaskTypeDoWhile {
				v.errs.Add(cp+".type", "a DO_WHILE inside a DO_WHILE is not supported: use a SUB_WORKFLOW in the loop")
			}
		})
		v.list(p+".loopOver", t.LoopOver)
	case conductor.TaskTypeInline:
		if !v.inputText(t, "expression") {
			v.errs.Add(p+".inputParameters.expression", "INLINE needs inputParameters.expression (or its task definition's inputTemplate): the script to evaluate")
		}
	case conductor.TaskTypeLambda:
		if !v.inputText(t, "scriptExpression") && strings.TrimSpace(t.ScriptExpression) == "" {
			v.errs.Add(p+".inputParameters.scriptExpression", "LAMBDA needs inputParameters.scriptExpression (or its task definition's inputTemplate): the script to evaluate")
		}
	case conductor.TaskTypeJSONJQ:
		if !v.inputText(t, "queryExpression") {
			v.errs.Add(p+".inputParameters.queryExpression", "JSON_JQ_TRANSFORM needs inputParameters.queryExpression (or its task definition's inputTemplate): the jq query")
		}
	case conductor.TaskTypeDynamic:
		if t.DynamicTaskNameParam == "" {
			v.errs.Add(p+".dynamicTaskNameParam", "DYNAMIC needs dynamicTaskNameParam: the input parameter holding the name of the task to run")
		}
	case conductor.TaskTypeStartWorkflow:
		switch sw := t.InputParameters["startWorkflow"].(type) {
		case map[string]any:
			if name, ok := sw["name"].(string); !ok || strings.TrimSpace(name) == "" {
				v.errs.Add(p+".inputParameters.startWorkflow.name", "START_WORKFLOW needs the name of the workflow to start")
			}
			// One from an expression is checked when the task runs.
			if s, ok := sw["idempotencyStrategy"].(string); ok && !strings.Contains(s, "${") && !conductor.KnownIdempotencyStrategy(s) {
				v.errs.Add(p+".inputParameters.startWorkflow.idempotencyStrategy", "%q: %s", s, conductor.WantIdempotencyStrategy)
			}
		case string:
			if !strings.Contains(sw, "${") {
				v.errs.Add(p+".inputParameters.startWorkflow", "startWorkflow must be an object {name, version, input, correlationId}")
			}
		default:
			v.errs.Add(p+".inputParameters.startWorkflow", "START_WORKFLOW needs inputParameters.startWorkflow {name, version, input, correlationId}")
		}
	case conductor.TaskTypeTerminate:
		// As Conductor's registration refuses them: an optional TERMINATE
		// would let its workflow run on past a failed end, and a literal
		// status it does not know fails every run. One from an expression
		// is checked when the task runs.
		if t.Optional {
			v.errs.Add(p+".optional", "a TERMINATE task cannot be optional")
		}
		switch s, ok := t.InputParameters["terminationStatus"].(string); {
		case !ok || strings.TrimSpace(s) == "":
			v.errs.Add(p+".inputParameters.terminationStatus", "TERMINATE needs inputParameters.terminationStatus: COMPLETED, FAILED or TERMINATED")
		case strings.Contains(s, "${"):
		case s != conductor.WorkflowCompleted && s != conductor.WorkflowFailed && s != conductor.WorkflowTerminated:
			v.errs.Add(p+".inputParameters.terminationStatus", "%q is not a termination status: want COMPLETED, FAILED or TERMINATED", s)
		}
	case conductor.TaskTypeEvent:
		if strings.TrimSpace(t.Sink) == "" {
			v.errs.Add(p+".sink", "an EVENT task needs a sink: nats:<subject>")
		}
		for _, pe := range templateErrors(map[string]any{"sink": t.Sink}) {
			v.errs.Add(p+".sink", "%v", pe.Err)
		}
	case conductor.TaskTypeWait:
		if given(t.InputParameters["duration"]) && given(t.InputParameters["until"]) {
			v.errs.Add(p+".inputParameters", "%v", errWaitBoth)
		}
		for _, key := range []string{"duration", "until"} {
			s, err := waitSetting(t.InputParameters, key)
			if err == nil && s != "" && !strings.Contains(s, "${") {
				_, err = waitUntil(map[string]any{key: s}, 0)
			}
			if err != nil {
				v.errs.Add(p+".inputParameters."+key, "%v", err)
			}
		}
	}
}

// joins checks that every JOIN and EXCLUSIVE_JOIN waits only for tasks that
// exist, and none inside a loop the join is not in: an iteration's task
// is named ref__N, and the join would wait for ref for ever. Nor, inside a
// loop, for a task outside it: the join waits for the task of its own
// iteration, ref__N, which a task that is not in the loop never is (as
// Conductor's Join and ExclusiveJoin append the iteration to each name).
func (v *validator) joins(path string, tasks []*conductor.WorkflowTask) {
	loops := map[string][]string{}
	loopsOf(tasks, nil, loops)
	walk(tasks, path, func(p string, t *conductor.WorkflowTask) {
		typ := t.TaskType()
		if typ != conductor.TaskTypeJoin && typ != conductor.TaskTypeExclusiveJoin {
			return
		}
		check := func(field string, refs []string) {
			for j, ref := range refs {
				at := fmt.Sprintf("%s.%s[%d]", p, field, j)
				if _, ok := v.refs[ref]; !ok {
					v.errs.Add(at, "%s waits for %q, which is not a task of this workflow", typ, ref)
					continue
				}
				if loop, ok := notIn(loops[ref], loops[t.TaskReferenceName]); ok {
					v.errs.Add(at, "%s waits for %q, a task of the DO_WHILE %q, which the %s is not in: "+
						"it would wait for ever (each iteration's task is %s__N); join on the loop instead", typ, ref, loop, typ, ref)
				} else if loop, ok := notIn(loops[t.TaskReferenceName], loops[ref]); ok {
					v.errs.Add(at, "%s waits for %q, which is not in the DO_WHILE %q the %s is in: "+
						"it would wait for ever (in the loop it waits for %s__N, the task of its own iteration, which never runs)", typ, ref, loop, typ, ref)
				}
			}
		}
		check("joinOn", t.JoinOn)
		// The decider names the defaults with the iteration as it does
		// joinOn (Conductor's ExclusiveJoin does not, and in a loop finds
		// no default of the loop): they obey the same rule.
		check("defaultExclusiveJoinTask", t.DefaultExclusiveJoinTask)
	})
}

// notIn returns the first of loops that is not among others.
func notIn(loops, others []string) (string, bool) {
	for _, loop := range loops {
		if !slices.Contains(others, loop) {
			return loop, true
		}
	}
	return "", false
}

// loopsOf records in out, for each task reference under tasks, the
// DO_WHILE tasks enclosing it (enclosing, then its own loops).
func loopsOf(tasks []*conductor.WorkflowTask, enclosing []string, out map[string][]string) {
	for _, t := range tasks {
		if t == nil {
			continue
		}
		out[t.TaskReferenceName] = enclosing
		for _, c := range t.DecisionCases {
			loopsOf(c, enclosing, out)
		}
		loopsOf(t.DefaultCase, enclosing, out)
		for _, branch := range t.ForkTasks {
			loopsOf(branch, enclosing, out)
		}
		if len(t.LoopOver) > 0 {
			loopsOf(t.LoopOver, append(slices.Clip(enclosing), t.TaskReferenceName), out)
		}
	}
}

func walk(tasks []*conductor.WorkflowTask, path string, fn func(string, *conductor.WorkflowTask)) {
	for i, t := range tasks {
		if t == nil {
			continue
		}
		p := fmt.Sprintf("%s[%d]", path, i)
		fn(p, t)
		for _, c := range sortedCases(t.DecisionCases) {
			walk(t.DecisionCases[c], fmt.Sprintf("%s.decisionCases.%s", p, c), fn)
		}
		walk(t.DefaultCase, p+".defaultCase", fn)
		for b, branch := range t.ForkTasks {
			walk(branch, fmt.Sprintf("%s.forkTasks[%d]", p, b), fn)
		}
		walk(t.LoopOver, p+".loopOver", fn)
	}
}

// templateErrors are the errors of a template the engine evaluates:
// syntax, secrets or environment values read where they would read null
// (expr.MisplacedDeferred), and ones read by a name none can have
// (expr.ImpossibleNames).
func templateErrors(tmpl any) []expr.PathError {
	errs := append(expr.ValidateTemplate(tmpl), expr.MisplacedDeferred(tmpl)...)
	return append(errs, expr.ImpossibleNames(tmpl)...)
}

// subWorkflowExpressions are the fields of a SUB_WORKFLOW's
// subWorkflowParam that the engine evaluates itself when it starts the
// child (see childStart), by their JSON names: there, as in
// inputParameters, a secret or environment value read from the document
// reads null (a key of "k-" for ${$.concat('k-', $.workflow.secrets.tok)},
// shared by every run).
func subWorkflowExpressions(sp *conductor.SubWorkflowParams) map[string]any {
	m := map[string]any{"name": sp.Name, "idempotencyKey": sp.IdempotencyKey}
	if s, ok := sp.Priority.(string); ok {
		m["priority"] = s
	}
	if len(sp.TaskToDomain) > 0 {
		t2d := make(map[string]any, len(sp.TaskToDomain))
		for k, d := range sp.TaskToDomain {
			t2d[k] = d
		}
		m["taskToDomain"] = t2d
	}
	// An inline definition is checked when its child starts; one given
	// as an expression is evaluated here.
	var def string
	if json.Unmarshal(sp.WorkflowDefinition, &def) == nil {
		m["workflowDefinition"] = def
	}
	return m
}
