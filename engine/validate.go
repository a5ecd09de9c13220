package engine

import (
	"fmt"
	"strings"

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
// SWITCH, SUB_WORKFLOW and DO_WHILE configurations, and expressions that
// parse. The error is a *fault.ValidationError naming each offending field
// by its JSON path.
func ValidateWorkflowDef(def *conductor.WorkflowDef) error {
	v := &validator{refs: map[string]string{}, errs: &fault.ValidationError{}}
	v.list("tasks", def.Tasks)
	v.joins("tasks", def.Tasks)
	for _, pe := range expr.ValidateTemplate(def.OutputParameters) {
		v.errs.Add(join("outputParameters", pe.Path), "%v", pe.Err)
	}
	return v.errs.Err()
}

type validator struct {
	refs map[string]string // taskReferenceName → path where first defined
	errs *fault.ValidationError
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
	for _, pe := range expr.ValidateTemplate(t.InputParameters) {
		v.errs.Add(join(p+".inputParameters", pe.Path), "%v", pe.Err)
	}
	switch typ {
	case conductor.TaskTypeForkJoin, conductor.TaskTypeForkJoinDynamic:
		if i+1 >= len(siblings) || siblings[i+1] == nil || siblings[i+1].TaskType() != conductor.TaskTypeJoin {
			v.errs.Add(p, "%s must be followed by a JOIN task", typ)
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
		case typ == conductor.TaskTypeDecision && t.CaseValueParam == "" && t.CaseExpression == "":
			v.errs.Add(p+".caseValueParam", "DECISION needs caseValueParam or caseExpression")
		}
		for _, c := range sortedCases(t.DecisionCases) {
			v.list(fmt.Sprintf("%s.decisionCases.%s", p, c), t.DecisionCases[c])
		}
		v.list(p+".defaultCase", t.DefaultCase)
	case conductor.TaskTypeSubWorkflow:
		if t.SubWorkflowParam == nil || (t.SubWorkflowParam.Name == "" && len(t.SubWorkflowParam.WorkflowDefinition) == 0) {
			v.errs.Add(p+".subWorkflowParam.name", "SUB_WORKFLOW needs subWorkflowParam.name or an inline workflowDefinition")
		}
	case conductor.TaskTypeDoWhile:
		if len(t.LoopOver) == 0 {
			v.errs.Add(p+".loopOver", "DO_WHILE needs loopOver tasks")
		}
		v.list(p+".loopOver", t.LoopOver)
	case conductor.TaskTypeWait:
		if d, ok := t.InputParameters["duration"].(string); ok && !strings.Contains(d, "${") {
			if _, err := parseWaitDuration(d); err != nil {
				v.errs.Add(p+".inputParameters.duration", "%v", err)
			}
		}
	}
}

// joins checks that every JOIN waits only for tasks that exist.
func (v *validator) joins(path string, tasks []*conductor.WorkflowTask) {
	walk(tasks, path, func(p string, t *conductor.WorkflowTask) {
		if t.TaskType() != conductor.TaskTypeJoin {
			return
		}
		for j, ref := range t.JoinOn {
			if _, ok := v.refs[ref]; !ok {
				v.errs.Add(fmt.Sprintf("%s.joinOn[%d]", p, j), "JOIN waits for %q, which is not a task of this workflow", ref)
			}
		}
	})
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
