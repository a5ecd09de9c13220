package conductor

// Models of the workflow API beyond start/get: search results, synchronous
// execution, the test endpoint, skip and correlation requests.

// SearchResult is a page of search results.
type SearchResult[T any] struct {
	TotalHits int64 `json:"totalHits"`
	Results   []T   `json:"results"`
}

// WorkflowSummary is a workflow as search results show it: times are ISO
// 8601 strings, input and output JSON strings.
type WorkflowSummary struct {
	WorkflowType             string            `json:"workflowType"`
	Version                  int               `json:"version"`
	WorkflowID               string            `json:"workflowId"`
	CorrelationID            string            `json:"correlationId,omitempty"`
	StartTime                string            `json:"startTime,omitempty"`
	UpdateTime               string            `json:"updateTime,omitempty"`
	EndTime                  string            `json:"endTime,omitempty"`
	Status                   string            `json:"status"`
	Input                    string            `json:"input"`
	Output                   string            `json:"output"`
	ReasonForIncompletion    string            `json:"reasonForIncompletion,omitempty"`
	ExecutionTime            int64             `json:"executionTime"`
	Event                    string            `json:"event,omitempty"`
	FailedReferenceTaskNames string            `json:"failedReferenceTaskNames"`
	FailedTaskNames          []string          `json:"failedTaskNames"`
	Priority                 int               `json:"priority"`
	TaskToDomain             map[string]string `json:"taskToDomain,omitempty"`
	CreatedBy                string            `json:"createdBy,omitempty"`
	IdempotencyKey           string            `json:"idempotencyKey,omitempty"`
	InputSize                int64             `json:"inputSize"`
	OutputSize               int64             `json:"outputSize"`
}

// TaskSummary is a task as search results show it: every time is set, a
// time the task has not set being the epoch, as in Conductor's.
type TaskSummary struct {
	TaskID                string `json:"taskId"`
	TaskType              string `json:"taskType"`
	TaskDefName           string `json:"taskDefName"`
	TaskReferenceName     string `json:"taskReferenceName"`
	WorkflowID            string `json:"workflowId"`
	WorkflowType          string `json:"workflowType"`
	CorrelationID         string `json:"correlationId,omitempty"`
	Status                string `json:"status"`
	ScheduledTime         string `json:"scheduledTime"`
	StartTime             string `json:"startTime"`
	UpdateTime            string `json:"updateTime"`
	EndTime               string `json:"endTime"`
	Input                 string `json:"input"`
	Output                string `json:"output"`
	ReasonForIncompletion string `json:"reasonForIncompletion,omitempty"`
	ExecutionTime         int64  `json:"executionTime"`
	QueueWaitTime         int64  `json:"queueWaitTime"`
	WorkflowPriority      int    `json:"workflowPriority"`
	Domain                string `json:"domain,omitempty"`
}

// Return strategies of synchronous execution (WorkflowRun.ResponseType).
const (
	ReturnTargetWorkflow    = "TARGET_WORKFLOW"
	ReturnBlockingWorkflow  = "BLOCKING_WORKFLOW"
	ReturnBlockingTask      = "BLOCKING_TASK"
	ReturnBlockingTaskInput = "BLOCKING_TASK_INPUT"
	// ReturnBlockingTaskList answers the blocking task as BLOCKING_TASK
	// does, but as a Task in tasks instead of the flattened TaskRun
	// fields (the Conductor Java SDK's ReturnStrategy).
	ReturnBlockingTaskList = "BLOCKING_TASK_LIST"
	// ReturnTargetWorkflowOutput answers the target workflow's identity,
	// input and output alone, whatever blocks (Conductor OSS's
	// OutputOnlyRun): an OutputOnlyRun, not a WorkflowRun.
	ReturnTargetWorkflowOutput = "TARGET_WORKFLOW_OUTPUT"
)

// SignalResponse is what every synchronous answer holds (Conductor's
// SignalResponse).
type SignalResponse struct {
	ResponseType         string         `json:"responseType"`
	TargetWorkflowID     string         `json:"targetWorkflowId"`
	TargetWorkflowStatus string         `json:"targetWorkflowStatus"`
	RequestID            string         `json:"requestId"`
	WorkflowID           string         `json:"workflowId"`
	CorrelationID        string         `json:"correlationId,omitempty"`
	Input                map[string]any `json:"input"`
	Output               map[string]any `json:"output"`
	// SignalTimeout: the wait ended with the target neither ended nor
	// blocked in a task (Conductor's flag for a wait that ran out).
	SignalTimeout bool `json:"signalTimeout"`
}

// OutputOnlyRun is the answer of a synchronous execution, signal or state
// update asked for TARGET_WORKFLOW_OUTPUT: the SignalResponse of the
// target workflow (its input and output masked as every view is), and
// nothing of its tasks, variables or what blocks.
type OutputOnlyRun struct {
	SignalResponse
}

// WorkflowRun is the answer of POST /api/workflow/execute (Orkes'
// SignalResponse): the workflow's state when execution stopped blocking,
// or, for the task strategies, the blocking task's (Conductor's TaskRun:
// createdBy is its workerId, createTime its startTime, priority and
// workflowType its workflow's, output its output). ResponseType is always
// the strategy asked for, as Conductor's NotificationResult answers it:
// with no blocking task, a task strategy names none (no taskId, no tasks)
// and the rest describes the target.
type WorkflowRun struct {
	SignalResponse
	Status     string         `json:"status"`
	Tasks      []*Task        `json:"tasks,omitempty"`
	Variables  map[string]any `json:"variables,omitempty"`
	Priority   int            `json:"priority"`
	CreateTime int64          `json:"createTime,omitempty"`
	UpdateTime int64          `json:"updateTime,omitempty"`
	CreatedBy  string         `json:"createdBy,omitempty"`
	// TargetWorkflowVariables are the target's variables, for every
	// strategy (the Java SDK's SignalResponse).
	TargetWorkflowVariables map[string]any `json:"targetWorkflowVariables,omitempty"`
	// BlockingTaskID and BlockingTaskReferenceName name, for
	// BLOCKING_WORKFLOW alone, the task of Tasks that blocks.
	BlockingTaskID            string `json:"blockingTaskId,omitempty"`
	BlockingTaskReferenceName string `json:"blockingTaskReferenceName,omitempty"`
	// The blocking task, for the task strategies. RetryCount is set for
	// them alone, and then always: the Java SDK's getBlockingTask unboxes
	// it into an int.
	TaskID            string `json:"taskId,omitempty"`
	TaskType          string `json:"taskType,omitempty"`
	TaskDefName       string `json:"taskDefName,omitempty"`
	ReferenceTaskName string `json:"referenceTaskName,omitempty"`
	RetryCount        *int   `json:"retryCount,omitempty"`
	WorkflowType      string `json:"workflowType,omitempty"`
	// RetriedTaskID and ReasonForIncompletion complete Conductor's TaskRun.
	RetriedTaskID         string `json:"retriedTaskId,omitempty"`
	ReasonForIncompletion string `json:"reasonForIncompletion,omitempty"`
}

// TaskMock is one mocked execution of a task in a WorkflowTestRequest.
type TaskMock struct {
	Status        string         `json:"status"`
	Output        map[string]any `json:"output"`
	ExecutionTime int64          `json:"executionTime,omitempty"`
	QueueWaitTime int64          `json:"queueWaitTime,omitempty"`
}

// WorkflowTestRequest is the body of POST /api/workflow/test.
type WorkflowTestRequest struct {
	StartWorkflowRequest
	TaskRefToMockOutput    map[string][]TaskMock          `json:"taskRefToMockOutput,omitempty"`
	SubWorkflowTestRequest map[string]WorkflowTestRequest `json:"subWorkflowTestRequest,omitempty"`
}

// SkipTaskRequest is the body of PUT /api/workflow/{id}/skiptask/{ref}.
type SkipTaskRequest struct {
	TaskInput  map[string]any `json:"taskInput,omitempty"`
	TaskOutput map[string]any `json:"taskOutput,omitempty"`
}

// UpgradeWorkflowRequest is the body of POST /api/workflow/{id}/upgrade
// (Orkes): the version to move a running workflow to (absent: the latest),
// the output of the tasks the move skips, by reference name, and the
// workflow's new input.
type UpgradeWorkflowRequest struct {
	Name          string                    `json:"name"`
	Version       *int                      `json:"version,omitempty"`
	TaskOutput    map[string]map[string]any `json:"taskOutput,omitempty"`
	WorkflowInput map[string]any            `json:"workflowInput,omitempty"`
}

// CorrelationIdsSearchRequest is the body of POST
// /api/workflow/correlated/batch.
type CorrelationIdsSearchRequest struct {
	CorrelationIDs []string `json:"correlationIds"`
	WorkflowNames  []string `json:"workflowNames"`
}
