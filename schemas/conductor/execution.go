package conductor

import "unicode/utf16"

// StartWorkflowRequest starts a workflow (POST /api/workflow).
type StartWorkflowRequest struct {
	Name                string            `json:"name"`
	Version             *int              `json:"version,omitempty"`
	CorrelationID       string            `json:"correlationId,omitempty"`
	Input               map[string]any    `json:"input,omitempty"`
	TaskToDomain        map[string]string `json:"taskToDomain,omitempty"`
	WorkflowDef         *WorkflowDef      `json:"workflowDef,omitempty"`
	Priority            int               `json:"priority,omitempty"`
	CreatedBy           string            `json:"createdBy,omitempty"`
	IdempotencyKey      string            `json:"idempotencyKey,omitempty"`
	IdempotencyStrategy string            `json:"idempotencyStrategy,omitempty"`
}

// Idempotency strategies.
const (
	IdempotencyFail           = "FAIL"
	IdempotencyReturnExisting = "RETURN_EXISTING"
	IdempotencyFailOnRunning  = "FAIL_ON_RUNNING"
)

// KnownIdempotencyStrategy reports whether a start request may name s
// ("" is FAIL); WantIdempotencyStrategy says what a refusal wants.
func KnownIdempotencyStrategy(s string) bool {
	switch s {
	case "", IdempotencyFail, IdempotencyReturnExisting, IdempotencyFailOnRunning:
		return true
	}
	return false
}

// WantIdempotencyStrategy is what a refused idempotencyStrategy is told.
const WantIdempotencyStrategy = "want FAIL, RETURN_EXISTING or FAIL_ON_RUNNING"

// Workflow statuses.
const (
	WorkflowRunning    = "RUNNING"
	WorkflowCompleted  = "COMPLETED"
	WorkflowFailed     = "FAILED"
	WorkflowTimedOut   = "TIMED_OUT"
	WorkflowTerminated = "TERMINATED"
	WorkflowPaused     = "PAUSED"
)

// WorkflowTerminal reports whether a workflow status is final.
func WorkflowTerminal(s string) bool {
	return s == WorkflowCompleted || s == WorkflowFailed || s == WorkflowTimedOut || s == WorkflowTerminated
}

// Task statuses.
const (
	TaskScheduled               = "SCHEDULED"
	TaskInProgress              = "IN_PROGRESS"
	TaskCompleted               = "COMPLETED"
	TaskCompletedWithErrors     = "COMPLETED_WITH_ERRORS"
	TaskFailed                  = "FAILED"
	TaskFailedWithTerminalError = "FAILED_WITH_TERMINAL_ERROR"
	TaskTimedOut                = "TIMED_OUT"
	TaskCanceled                = "CANCELED"
	TaskSkipped                 = "SKIPPED"
)

// TaskTerminal reports whether a task status is final.
func TaskTerminal(s string) bool {
	switch s {
	case TaskCompleted, TaskCompletedWithErrors, TaskFailed, TaskFailedWithTerminalError, TaskTimedOut, TaskCanceled, TaskSkipped:
		return true
	}
	return false
}

// TaskSuccessful reports whether a task status lets the workflow continue.
func TaskSuccessful(s string) bool {
	return s == TaskCompleted || s == TaskCompletedWithErrors || s == TaskSkipped
}

// TaskRetriable reports whether a failed task status may be retried.
func TaskRetriable(s string) bool {
	return s != TaskFailedWithTerminalError && s != TaskCanceled && s != TaskSkipped
}

// Workflow is an execution as GET /api/workflow/{id} returns it.
type Workflow struct {
	WorkflowID               string            `json:"workflowId"`
	WorkflowName             string            `json:"workflowName"`
	WorkflowVersion          int               `json:"workflowVersion"`
	Status                   string            `json:"status"`
	Input                    map[string]any    `json:"input"`
	Output                   map[string]any    `json:"output"`
	Variables                map[string]any    `json:"variables"`
	Tasks                    []*Task           `json:"tasks"`
	CorrelationID            string            `json:"correlationId,omitempty"`
	Priority                 int               `json:"priority"`
	TaskToDomain             map[string]string `json:"taskToDomain"`
	ReasonForIncompletion    string            `json:"reasonForIncompletion,omitempty"`
	FailedReferenceTaskNames []string          `json:"failedReferenceTaskNames"`
	FailedTaskNames          []string          `json:"failedTaskNames"`
	ParentWorkflowID         string            `json:"parentWorkflowId,omitempty"`
	ParentWorkflowTaskID     string            `json:"parentWorkflowTaskId,omitempty"`
	ReRunFromWorkflowID      string            `json:"reRunFromWorkflowId,omitempty"`
	// Event is the event whose handler started the workflow.
	Event           string `json:"event,omitempty"`
	LastRetriedTime int64  `json:"lastRetriedTime,omitempty"`
	StartTime       int64  `json:"startTime"`
	EndTime         int64  `json:"endTime,omitempty"`
	CreateTime      int64  `json:"createTime"`
	UpdateTime      int64  `json:"updateTime"`
	CreatedBy       string `json:"createdBy,omitempty"`
	IdempotencyKey  string `json:"idempotencyKey,omitempty"`
	// RateLimitKey is the key its definition's rateLimitConfig limits it
	// under; RateLimited, that it waits for its place, without tasks.
	RateLimitKey       string          `json:"rateLimitKey,omitempty"`
	RateLimited        bool            `json:"rateLimited,omitempty"`
	WorkflowDefinition WorkflowDefJSON `json:"workflowDefinition,omitempty"`
	History            []any           `json:"history"`
}

// Task is a task execution as the API and the worker protocol show it.
type Task struct {
	TaskID                      string           `json:"taskId"`
	TaskType                    string           `json:"taskType"`
	TaskDefName                 string           `json:"taskDefName"`
	ReferenceTaskName           string           `json:"referenceTaskName"`
	Status                      string           `json:"status"`
	InputData                   map[string]any   `json:"inputData"`
	OutputData                  map[string]any   `json:"outputData"`
	WorkflowInstanceID          string           `json:"workflowInstanceId"`
	WorkflowType                string           `json:"workflowType"`
	CorrelationID               string           `json:"correlationId,omitempty"`
	RetryCount                  int              `json:"retryCount"`
	Retried                     bool             `json:"retried"`
	RetriedTaskID               string           `json:"retriedTaskId,omitempty"`
	Seq                         int              `json:"seq"`
	PollCount                   int              `json:"pollCount"`
	ScheduledTime               int64            `json:"scheduledTime"`
	StartTime                   int64            `json:"startTime"`
	EndTime                     int64            `json:"endTime"`
	UpdateTime                  int64            `json:"updateTime"`
	FirstStartTime              int64            `json:"firstStartTime,omitempty"`
	StartDelayInSeconds         int64            `json:"startDelayInSeconds"`
	CallbackAfterSeconds        int64            `json:"callbackAfterSeconds"`
	WaitTimeout                 int64            `json:"waitTimeout,omitempty"` // a WAIT's wake time (Unix ms), Conductor's TaskModel.waitTimeout
	CallbackFromWorker          bool             `json:"callbackFromWorker"`
	ResponseTimeoutSeconds      int64            `json:"responseTimeoutSeconds"`
	RateLimitPerFrequency       int              `json:"rateLimitPerFrequency"`
	RateLimitFrequencyInSeconds int              `json:"rateLimitFrequencyInSeconds"`
	WorkerID                    string           `json:"workerId,omitempty"`
	ReasonForIncompletion       string           `json:"reasonForIncompletion,omitempty"`
	Domain                      string           `json:"domain,omitempty"`
	Executed                    bool             `json:"executed"`
	Iteration                   int              `json:"iteration"`
	LoopOverTask                bool             `json:"loopOverTask"`
	SubWorkflowID               string           `json:"subWorkflowId,omitempty"`
	ParentTaskID                string           `json:"parentTaskId,omitempty"`
	WorkflowPriority            int              `json:"workflowPriority"`
	WorkflowTask                WorkflowTaskJSON `json:"workflowTask,omitempty"`
	TaskDefinition              TaskDefJSON      `json:"taskDefinition,omitempty"`
	QueueWaitTime               int64            `json:"queueWaitTime"`
}

// TaskResult is a worker's report on a task.
type TaskResult struct {
	TaskID                string         `json:"taskId"`
	WorkflowInstanceID    string         `json:"workflowInstanceId"`
	Status                string         `json:"status"`
	OutputData            map[string]any `json:"outputData,omitempty"`
	ReasonForIncompletion string         `json:"reasonForIncompletion,omitempty"`
	CallbackAfterSeconds  int64          `json:"callbackAfterSeconds,omitempty"`
	WorkerID              string         `json:"workerId,omitempty"`
	Logs                  []TaskExecLog  `json:"logs,omitempty"`
	ExtendLease           bool           `json:"extendLease,omitempty"`
	SubWorkflowID         string         `json:"subWorkflowId,omitempty"`
}

// TaskExecLog is one task log line.
type TaskExecLog struct {
	Log         string `json:"log"`
	TaskID      string `json:"taskId,omitempty"`
	CreatedTime int64  `json:"createdTime"`
}

// WorkflowStatus is GET /api/workflow/{id}/status.
type WorkflowStatus struct {
	WorkflowID    string `json:"workflowId"`
	CorrelationID string `json:"correlationId,omitempty"`
	Status        string `json:"status"`
	// Present when asked for, empty or not (Conductor's NON_NULL).
	Output    map[string]any `json:"output,omitzero"`
	Variables map[string]any `json:"variables,omitzero"`
}

// RerunWorkflowRequest is the body of POST /api/workflow/{id}/rerun.
type RerunWorkflowRequest struct {
	ReRunFromWorkflowID string         `json:"reRunFromWorkflowId,omitempty"`
	ReRunFromTaskID     string         `json:"reRunFromTaskId,omitempty"`
	WorkflowInput       map[string]any `json:"workflowInput,omitempty"`
	TaskInput           map[string]any `json:"taskInput,omitempty"`
	CorrelationID       string         `json:"correlationId,omitempty"`
}

// ErrorResponse is Conductor's error body.
type ErrorResponse struct {
	Status           int               `json:"status"`
	Message          string            `json:"message"`
	Instance         string            `json:"instance,omitempty"`
	Retryable        bool              `json:"retryable"`
	ValidationErrors []ValidationError `json:"validationErrors,omitempty"`
}

// ValidationError names one invalid field by its path.
type ValidationError struct {
	Path         string `json:"path"`
	Message      string `json:"message"`
	InvalidValue any    `json:"invalidValue,omitempty"`
}

// MaxResultReason is how much of a result's reasonForIncompletion a task
// shows: Conductor's TaskResult keeps its first 500 characters, counted as
// Java counts them, in UTF-16 code units.
const MaxResultReason = 500

// CutReason returns reason's first MaxResultReason UTF-16 code units. A
// character that would not fit whole (the second half of a pair, which
// Java's cut would split) is left out.
func CutReason(reason string) string {
	if len(reason) <= MaxResultReason {
		return reason // no string holds more UTF-16 code units than bytes
	}
	units := 0
	for i, r := range reason {
		n := utf16.RuneLen(r)
		if n < 0 {
			n = 1 // an invalid byte, shown as U+FFFD
		}
		if units+n > MaxResultReason {
			return reason[:i]
		}
		units += n
	}
	return reason
}
