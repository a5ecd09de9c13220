package conductor

import (
	"cmp"
	"encoding/json"
	"strconv"
	"strings"
)

// WorkflowDef is a workflow definition (the blueprint). Raw keeps the JSON it
// was decoded from; API reads return Raw so that fields flowvault does not
// model survive a round trip.
type WorkflowDef struct {
	Name                          string          `json:"name"`
	Description                   string          `json:"description,omitempty"`
	Version                       int             `json:"version"`
	Tasks                         []*WorkflowTask `json:"tasks"`
	InputParameters               []string        `json:"inputParameters,omitempty"`
	OutputParameters              map[string]any  `json:"outputParameters,omitempty"`
	InputTemplate                 map[string]any  `json:"inputTemplate,omitempty"`
	FailureWorkflow               string          `json:"failureWorkflow,omitempty"`
	FailureWorkflowVersion        *int            `json:"failureWorkflowVersion,omitempty"`
	SchemaVersion                 int             `json:"schemaVersion,omitempty"`
	Restartable                   *bool           `json:"restartable,omitempty"`
	WorkflowStatusListenerEnabled bool            `json:"workflowStatusListenerEnabled,omitempty"`
	OwnerEmail                    string          `json:"ownerEmail,omitempty"`
	TimeoutPolicy                 string          `json:"timeoutPolicy,omitempty"`
	TimeoutSeconds                int64           `json:"timeoutSeconds"`
	Variables                     map[string]any  `json:"variables,omitempty"`
	MaskedFields                  []string        `json:"maskedFields,omitempty"`
	Tags                          []Tag           `json:"tags,omitempty"`
	OwnerApp                      string          `json:"ownerApp,omitempty"`
	CreateTime                    int64           `json:"createTime,omitempty"`
	UpdateTime                    int64           `json:"updateTime,omitempty"`
	CreatedBy                     string          `json:"createdBy,omitempty"`
	UpdatedBy                     string          `json:"updatedBy,omitempty"`
	Metadata                      map[string]any  `json:"metadata,omitempty"`
	RateLimitConfig               map[string]any  `json:"rateLimitConfig,omitempty"`
	// InputSchema and OutputSchema, with EnforceSchema, are what a
	// start's input and the output of a workflow that would complete must
	// conform to.
	InputSchema   *SchemaDef `json:"inputSchema,omitempty"`
	OutputSchema  *SchemaDef `json:"outputSchema,omitempty"`
	EnforceSchema bool       `json:"enforceSchema,omitempty"`

	// Raw is the JSON this definition was decoded from, its scalars coerced
	// (see coerce) when they were of the wrong type.
	Raw json.RawMessage `json:"-"`
	// wasCoerced: Raw is not the JSON as given.
	wasCoerced bool
}

// UnmarshalJSON decodes the definition and keeps its raw JSON.
func (d *WorkflowDef) UnmarshalJSON(b []byte) error {
	type plain WorkflowDef
	var p plain
	raw, coerced, err := unmarshalExact(b, &p)
	if err != nil {
		return err
	}
	*d = WorkflowDef(p)
	d.Raw, d.wasCoerced = raw, coerced
	return nil
}

func (d *WorkflowDef) coerced() bool { return d.wasCoerced }

// IsRestartable reports the definition's restartable flag (default true).
func (d *WorkflowDef) IsRestartable() bool { return d.Restartable == nil || *d.Restartable }

// WorkflowTask is one task configuration inside a definition.
type WorkflowTask struct {
	Name                           string                     `json:"name"`
	TaskReferenceName              string                     `json:"taskReferenceName"`
	Description                    string                     `json:"description,omitempty"`
	Type                           string                     `json:"type,omitempty"`
	InputParameters                map[string]any             `json:"inputParameters,omitempty"`
	Optional                       bool                       `json:"optional,omitempty"`
	Permissive                     bool                       `json:"permissive,omitempty"`
	AsyncComplete                  bool                       `json:"asyncComplete,omitempty"`
	StartDelay                     int64                      `json:"startDelay,omitempty"`
	RetryCount                     *int                       `json:"retryCount,omitempty"`
	TaskDefinition                 *TaskDef                   `json:"taskDefinition,omitempty"`
	EvaluatorType                  string                     `json:"evaluatorType,omitempty"`
	Expression                     string                     `json:"expression,omitempty"`
	CaseValueParam                 string                     `json:"caseValueParam,omitempty"`
	CaseExpression                 string                     `json:"caseExpression,omitempty"`
	DecisionCases                  map[string][]*WorkflowTask `json:"decisionCases,omitempty"`
	DefaultCase                    []*WorkflowTask            `json:"defaultCase,omitempty"`
	ForkTasks                      [][]*WorkflowTask          `json:"forkTasks,omitempty"`
	JoinOn                         []string                   `json:"joinOn,omitempty"`
	LoopCondition                  string                     `json:"loopCondition,omitempty"`
	LoopOver                       []*WorkflowTask            `json:"loopOver,omitempty"`
	SubWorkflowParam               *SubWorkflowParams         `json:"subWorkflowParam,omitempty"`
	DynamicTaskNameParam           string                     `json:"dynamicTaskNameParam,omitempty"`
	DynamicForkTasksParam          string                     `json:"dynamicForkTasksParam,omitempty"`
	DynamicForkTasksInputParamName string                     `json:"dynamicForkTasksInputParamName,omitempty"`
	DefaultExclusiveJoinTask       []string                   `json:"defaultExclusiveJoinTask,omitempty"`
	Sink                           string                     `json:"sink,omitempty"`
	ScriptExpression               string                     `json:"scriptExpression,omitempty"`
	CacheConfig                    *CacheConfig               `json:"cacheConfig,omitempty"`

	// Raw is the JSON this task configuration was decoded from, its scalars coerced
	// (see coerce) when they were of the wrong type.
	Raw json.RawMessage `json:"-"`
	// wasCoerced: Raw is not the JSON as given.
	wasCoerced bool
}

// UnmarshalJSON decodes the task configuration and keeps its raw JSON.
func (t *WorkflowTask) UnmarshalJSON(b []byte) error {
	type plain WorkflowTask
	var p plain
	raw, coerced, err := unmarshalExact(b, &p)
	if err != nil {
		return err
	}
	*t = WorkflowTask(p)
	t.Raw, t.wasCoerced = raw, coerced
	return nil
}

func (t *WorkflowTask) coerced() bool { return t.wasCoerced }

// MarshalJSON writes the raw configuration when there is one.
func (t *WorkflowTask) MarshalJSON() ([]byte, error) {
	if len(t.Raw) > 0 {
		return t.Raw, nil
	}
	type plain WorkflowTask
	return json.Marshal((*plain)(t))
}

// TaskType returns the configured type, SIMPLE when absent.
func (t *WorkflowTask) TaskType() string {
	if t.Type == "" {
		return TaskTypeSimple
	}
	return t.Type
}

// SubWorkflowParams configures a SUB_WORKFLOW task.
type SubWorkflowParams struct {
	Name         string            `json:"name,omitempty"`
	Version      *int              `json:"version,omitempty"`
	TaskToDomain map[string]string `json:"taskToDomain,omitempty"`
	// WorkflowDefinition is an inline definition object or an expression.
	WorkflowDefinition  json.RawMessage `json:"workflowDefinition,omitempty"`
	IdempotencyKey      string          `json:"idempotencyKey,omitempty"`
	IdempotencyStrategy string          `json:"idempotencyStrategy,omitempty"`
	Priority            any             `json:"priority,omitempty"`
}

// TaskDef is a task definition. Pointer fields have non-zero defaults that
// Effective applies.
type TaskDef struct {
	Name                        string         `json:"name"`
	Description                 string         `json:"description,omitempty"`
	RetryCount                  *int           `json:"retryCount,omitempty"`
	TimeoutSeconds              int64          `json:"timeoutSeconds"`
	InputKeys                   []string       `json:"inputKeys,omitempty"`
	OutputKeys                  []string       `json:"outputKeys,omitempty"`
	TimeoutPolicy               string         `json:"timeoutPolicy,omitempty"`
	RetryLogic                  string         `json:"retryLogic,omitempty"`
	RetryDelaySeconds           *int64         `json:"retryDelaySeconds,omitempty"`
	ResponseTimeoutSeconds      *int64         `json:"responseTimeoutSeconds,omitempty"`
	ConcurrentExecLimit         int            `json:"concurrentExecLimit,omitempty"`
	InputTemplate               map[string]any `json:"inputTemplate,omitempty"`
	RateLimitPerFrequency       int            `json:"rateLimitPerFrequency,omitempty"`
	RateLimitFrequencyInSeconds int            `json:"rateLimitFrequencyInSeconds,omitempty"`
	OwnerEmail                  string         `json:"ownerEmail,omitempty"`
	PollTimeoutSeconds          *int64         `json:"pollTimeoutSeconds,omitempty"`
	BackoffScaleFactor          *int64         `json:"backoffScaleFactor,omitempty"`
	MaxRetryDelaySeconds        int64          `json:"maxRetryDelaySeconds,omitempty"`
	BackoffJitterMs             int64          `json:"backoffJitterMs,omitempty"`
	TotalTimeoutSeconds         int64          `json:"totalTimeoutSeconds"`
	OwnerApp                    string         `json:"ownerApp,omitempty"`
	CreateTime                  int64          `json:"createTime,omitempty"`
	UpdateTime                  int64          `json:"updateTime,omitempty"`
	CreatedBy                   string         `json:"createdBy,omitempty"`
	UpdatedBy                   string         `json:"updatedBy,omitempty"`
	Tags                        []Tag          `json:"tags,omitempty"`
	// InputSchema and OutputSchema, with EnforceSchema, are what the
	// task's input at hand-off and a worker's output must conform to.
	InputSchema   *SchemaDef `json:"inputSchema,omitempty"`
	OutputSchema  *SchemaDef `json:"outputSchema,omitempty"`
	EnforceSchema bool       `json:"enforceSchema,omitempty"`

	// Raw is the JSON this definition was decoded from, its scalars coerced
	// (see coerce) when they were of the wrong type.
	Raw json.RawMessage `json:"-"`
	// wasCoerced: Raw is not the JSON as given.
	wasCoerced bool
}

// UnmarshalJSON decodes the definition and keeps its raw JSON.
func (d *TaskDef) UnmarshalJSON(b []byte) error {
	type plain TaskDef
	var p plain
	raw, coerced, err := unmarshalExact(b, &p)
	if err != nil {
		return err
	}
	*d = TaskDef(p)
	d.Raw, d.wasCoerced = raw, coerced
	return nil
}

func (d *TaskDef) coerced() bool { return d.wasCoerced }

// EffectiveTaskDef is a TaskDef with every default applied.
type EffectiveTaskDef struct {
	RetryCount             int
	RetryLogic             string
	RetryDelaySeconds      int64
	BackoffScaleFactor     int64
	MaxRetryDelaySeconds   int64
	BackoffJitterMs        int64
	TimeoutSeconds         int64
	TotalTimeoutSeconds    int64
	TimeoutPolicy          string
	ResponseTimeoutSeconds int64
	PollTimeoutSeconds     int64
	InputTemplate          map[string]any
	// A task carries its definition's rate limit, as Conductor's Task
	// JSON shows it; both 0 when there is none.
	RateLimitPerFrequency       int
	RateLimitFrequencyInSeconds int
}

// Conductor's TaskDef defaults (TaskDef.java).
const (
	DefaultRetryCount             = 3
	DefaultRetryDelaySeconds      = 60
	DefaultResponseTimeoutSeconds = 3600
)

// Effective applies Conductor's defaults to d. A nil d is the ad-hoc
// definition of an unregistered task: SIMPLE tasks get the TaskDef defaults,
// system tasks get no retries and no response timeout.
func (d *TaskDef) Effective(system bool) EffectiveTaskDef {
	e := EffectiveTaskDef{
		RetryCount: DefaultRetryCount, RetryLogic: RetryFixed, RetryDelaySeconds: DefaultRetryDelaySeconds,
		BackoffScaleFactor: 1, TimeoutPolicy: TimeoutPolicyTimeOutWF, ResponseTimeoutSeconds: DefaultResponseTimeoutSeconds,
	}
	if d == nil {
		if system {
			e.RetryCount, e.ResponseTimeoutSeconds = 0, 0
		}
		return e
	}
	if d.RetryCount != nil {
		e.RetryCount = *d.RetryCount
	}
	if d.RetryLogic != "" {
		e.RetryLogic = d.RetryLogic
	}
	if d.RetryDelaySeconds != nil {
		e.RetryDelaySeconds = *d.RetryDelaySeconds
	}
	if d.BackoffScaleFactor != nil && *d.BackoffScaleFactor > 0 {
		e.BackoffScaleFactor = *d.BackoffScaleFactor
	}
	if d.TimeoutPolicy != "" {
		e.TimeoutPolicy = d.TimeoutPolicy
	}
	if d.ResponseTimeoutSeconds != nil {
		e.ResponseTimeoutSeconds = *d.ResponseTimeoutSeconds
	}
	if d.PollTimeoutSeconds != nil {
		e.PollTimeoutSeconds = *d.PollTimeoutSeconds
	}
	e.MaxRetryDelaySeconds, e.BackoffJitterMs = d.MaxRetryDelaySeconds, d.BackoffJitterMs
	e.TimeoutSeconds, e.TotalTimeoutSeconds = d.TimeoutSeconds, d.TotalTimeoutSeconds
	e.InputTemplate = d.InputTemplate
	if d.RateLimitPerFrequency > 0 {
		e.RateLimitPerFrequency, e.RateLimitFrequencyInSeconds = d.RateLimitPerFrequency, cmp.Or(d.RateLimitFrequencyInSeconds, 1)
	}
	return e
}

// Tag labels definitions, secrets and other resources.
type Tag struct {
	Key   string `json:"key"`
	Value string `json:"value"`
	Type  string `json:"type,omitempty"`
}

// BulkResponse reports a bulk operation item by item (PUT
// /api/metadata/workflow, the /api/workflow/bulk endpoints). Conductor OSS
// lists the names or ids that succeeded and maps each failed one to its
// error message.
type BulkResponse struct {
	BulkErrorResults      map[string]string `json:"bulkErrorResults"`
	BulkSuccessfulResults []string          `json:"bulkSuccessfulResults"`
}

// NewBulkResponse returns an empty response that encodes as
// {"bulkErrorResults":{},"bulkSuccessfulResults":[]}.
func NewBulkResponse() *BulkResponse {
	return &BulkResponse{BulkErrorResults: map[string]string{}, BulkSuccessfulResults: []string{}}
}

// TaskTypeFork is the type Conductor's mappers give the task a FORK_JOIN or
// FORK_JOIN_DYNAMIC runs as, which its executions show; no definition
// names it.
const TaskTypeFork = "FORK"

// Task types.
const (
	TaskTypeSimple          = "SIMPLE"
	TaskTypeHTTP            = "HTTP"
	TaskTypeSwitch          = "SWITCH"
	TaskTypeDecision        = "DECISION"
	TaskTypeForkJoin        = "FORK_JOIN"
	TaskTypeJoin            = "JOIN"
	TaskTypeForkJoinDynamic = "FORK_JOIN_DYNAMIC"
	TaskTypeExclusiveJoin   = "EXCLUSIVE_JOIN"
	TaskTypeDoWhile         = "DO_WHILE"
	TaskTypeSubWorkflow     = "SUB_WORKFLOW"
	TaskTypeStartWorkflow   = "START_WORKFLOW"
	TaskTypeSetVariable     = "SET_VARIABLE"
	TaskTypeTerminate       = "TERMINATE"
	TaskTypeWait            = "WAIT"
	TaskTypeInline          = "INLINE"
	TaskTypeJSONJQ          = "JSON_JQ_TRANSFORM"
	TaskTypeDynamic         = "DYNAMIC"
	TaskTypeUpdateSecret    = "UPDATE_SECRET"
	TaskTypeNoop            = "NOOP"
	TaskTypeHuman           = "HUMAN"
	TaskTypeEvent           = "EVENT"
	TaskTypeLambda          = "LAMBDA"
	TaskTypeGetSignedJWT    = "GET_SIGNED_JWT"
	TaskTypeHTTPPoll        = "HTTP_POLL"
	TaskTypeWaitForWebhook  = "WAIT_FOR_WEBHOOK"
)

// DoWhileOwnedKey reports whether a key of a DO_WHILE task's output is the
// engine's to keep: iteration, loopItem, loopIndex, or an iteration's
// number (the outputs of that iteration's tasks). A loop condition may add
// other keys ($.loop.storage = 3); it cannot change these.
func DoWhileOwnedKey(k string) bool {
	switch k {
	case "iteration", "loopItem", "loopIndex":
		return true
	}
	_, err := strconv.Atoi(k)
	return err == nil
}

// Retry logics, timeout policies.
const (
	RetryFixed              = "FIXED"
	RetryExponentialBackoff = "EXPONENTIAL_BACKOFF"
	RetryLinearBackoff      = "LINEAR_BACKOFF"

	TimeoutPolicyRetry     = "RETRY"
	TimeoutPolicyTimeOutWF = "TIME_OUT_WF"
	TimeoutPolicyAlertOnly = "ALERT_ONLY"
)

// CaseOutput is the output of a SWITCH or DECISION that chose case c:
// SWITCH's evaluationResult and selectedCase, and, for a DECISION, also
// Conductor's DecisionTaskMapper's caseOutput, which definitions written
// for it read (${decide.output.caseOutput[0]}).
func CaseOutput(taskType, c string) map[string]any {
	out := map[string]any{"evaluationResult": []any{c}, "selectedCase": c}
	if taskType == TaskTypeDecision {
		out["caseOutput"] = []any{c}
	}
	return out
}

// DecisionScript reports whether a DECISION with caseExpression takes its
// case from that script: when it is not blank, whatever its
// caseValueParam, as Conductor's DecisionTaskMapper reads them.
func DecisionScript(caseExpression string) bool { return strings.TrimSpace(caseExpression) != "" }

// AwaitsOutside reports a task type that is in progress from its start
// until someone outside completes it: Conductor's HUMAN (a task update, a
// signal) and Orkes's WAIT_FOR_WEBHOOK (a webhook delivery, or the same).
func AwaitsOutside(taskType string) bool {
	return taskType == TaskTypeHuman || taskType == TaskTypeWaitForWebhook
}

// CacheConfig caches a task's output (Orkes): Key, with ${name} standing
// for the task's input parameters, names what the output is of, and the
// output of a run that completed is reused for TTLInSecond seconds by the
// task of the same name whose key is the same.
type CacheConfig struct {
	Key         string  `json:"key"`
	TTLInSecond FlexInt `json:"ttlInSecond"`
}

// FlexInt is an integer a client may send as a JSON number or as a string
// of digits (Orkes's examples show both): the coercion every field of a
// definition gets (see coerce) reads "2500" as 2500.
type FlexInt int64
