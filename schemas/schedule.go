package schemas

// Schedule events live on fv.meta.schedule.<name> (the metadata stream):
// one subject per schedule, so that saving, pausing and firing race on the
// subject's sequence and a fire time is claimed exactly once across engines.

// ScheduleSaved creates or replaces a schedule.
type ScheduleSaved struct {
	Def  []byte `msgpack:"def"` // conductor.WorkflowSchedule JSON, server fields cleared
	Time int64  `msgpack:"ts"`
	By   string `msgpack:"by,omitempty"`
}

func (*ScheduleSaved) EventType() string { return "schedule.saved" }

// ScheduleDeleted removes a schedule.
type ScheduleDeleted struct {
	Time int64  `msgpack:"ts"`
	By   string `msgpack:"by,omitempty"`
}

func (*ScheduleDeleted) EventType() string { return "schedule.deleted" }

// SchedulePauseChanged pauses (with a reason) or resumes a schedule.
type SchedulePauseChanged struct {
	Paused bool   `msgpack:"paused"`
	Reason string `msgpack:"why,omitempty"`
	Time   int64  `msgpack:"ts"`
	By     string `msgpack:"by,omitempty"`
}

func (*SchedulePauseChanged) EventType() string { return "schedule.pause_changed" }

// ScheduleFired claims one fire time: the workflow with WorkflowID is
// started for it (exactly once: the id derives from the schedule and time).
type ScheduleFired struct {
	ScheduledTime int64  `msgpack:"at"`
	WorkflowID    string `msgpack:"wf"`
	Time          int64  `msgpack:"ts"`
}

func (*ScheduleFired) EventType() string { return "schedule.fired" }

// ScheduleExecuted records the outcome of a fire: the workflow started, or
// why it could not.
type ScheduleExecuted struct {
	ScheduledTime int64  `msgpack:"at"`
	Failed        bool   `msgpack:"failed,omitempty"`
	Reason        string `msgpack:"why,omitempty"`
	Time          int64  `msgpack:"ts"`
	// WorkflowID, when set, is the fire's workflow instead of the one its
	// ScheduleFired named: the workflow holding the start request's
	// idempotency key, with strategy RETURN_EXISTING.
	WorkflowID string `msgpack:"wf,omitempty"`
}

func (*ScheduleExecuted) EventType() string { return "schedule.executed" }

// ScheduleTagsSet replaces a schedule's tags.
type ScheduleTagsSet struct {
	Tags []DefTag `msgpack:"tags"`
	Time int64    `msgpack:"ts"`
	By   string   `msgpack:"by,omitempty"`
}

func (*ScheduleTagsSet) EventType() string { return "schedule.tags_set" }

func init() {
	for _, e := range []Event{&ScheduleSaved{}, &ScheduleDeleted{}, &SchedulePauseChanged{}, &ScheduleFired{}, &ScheduleExecuted{}, &ScheduleTagsSet{}} {
		Default.Register(e, 1)
	}
}
