package conductor

// WorkflowSchedule is a schedule as the Orkes scheduler API shows it
// (POST /api/scheduler/schedules takes the same fields).
type WorkflowSchedule struct {
	Name                        string                `json:"name"`
	CronExpression              string                `json:"cronExpression"`
	ZoneID                      string                `json:"zoneId,omitempty"`
	Paused                      bool                  `json:"paused"`
	PausedReason                string                `json:"pausedReason,omitempty"`
	RunCatchupScheduleInstances bool                  `json:"runCatchupScheduleInstances"`
	ScheduleStartTime           int64                 `json:"scheduleStartTime,omitempty"`
	ScheduleEndTime             int64                 `json:"scheduleEndTime,omitempty"`
	StartWorkflowRequest        *StartWorkflowRequest `json:"startWorkflowRequest"`
	Description                 string                `json:"description,omitempty"`
	CreatedBy                   string                `json:"createdBy,omitempty"`
	UpdatedBy                   string                `json:"updatedBy,omitempty"`
	CreateTime                  int64                 `json:"createTime,omitempty"`
	UpdatedTime                 int64                 `json:"updatedTime,omitempty"`
	Tags                        []Tag                 `json:"tags,omitempty"`
}

// ScheduleExecution is one firing of a schedule.
type ScheduleExecution struct {
	ExecutionID   string                `json:"executionId"`
	ScheduleName  string                `json:"scheduleName"`
	ScheduledTime int64                 `json:"scheduledTime"`
	ExecutionTime int64                 `json:"executionTime"`
	WorkflowName  string                `json:"workflowName"`
	WorkflowID    string                `json:"workflowId,omitempty"`
	Reason        string                `json:"reason,omitempty"`
	State         string                `json:"state"` // POLLED, EXECUTED, FAILED
	ZoneID        string                `json:"zoneId,omitempty"`
	Request       *StartWorkflowRequest `json:"startWorkflowRequest,omitempty"`
}
