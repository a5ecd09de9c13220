package schemas

// TasksRemoved removes task instances from a workflow: the tasks of the
// iterations of a DO_WHILE older than its inputParameters.keepLastN, which
// Conductor removes from the workflow as it trims them from the loop's
// output. Loop is that DO_WHILE task: it keeps the names of what the
// removed tasks had resolved at their hand-offs (never a value), so that
// redaction still looks for those values.
type TasksRemoved struct {
	TaskIDs []string `msgpack:"ids"`
	Loop    string   `msgpack:"loop,omitempty"`
	Time    int64    `msgpack:"ts"`
}

func (*TasksRemoved) EventType() string { return "workflow.tasks_removed" }

func init() { Default.Register(&TasksRemoved{}, 1) }
