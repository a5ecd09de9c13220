package engine

import (
	"fmt"
	"slices"

	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// Limits of one task's log: the lines AddLog adds and those results carry,
// together. A task's log lives in its workflow's state, which every
// decision on the workflow loads and every read of it returns: unbounded,
// one chatty worker (a progress line with each IN_PROGRESS update of a long
// task) grows it until the workflow no longer fits a log record. The API
// checks them too, against its read model; the decider is where they hold,
// since results from NATS workers reach it without passing the API, and
// requests in flight at the same moment all pass the API's check.
const (
	MaxTaskLogLines = 1000
	MaxTaskLogBytes = 512 << 10
)

// LogRoom is what is left of t's log budget; nil (a task not known yet)
// has all of it.
func LogRoom(t *Task) (lines, bytes int) {
	lines, bytes = MaxTaskLogLines, MaxTaskLogBytes
	if t == nil {
		return lines, bytes
	}
	for _, l := range t.Logs {
		lines, bytes = lines-1, bytes-len(l.Log)
	}
	return max(lines, 0), max(bytes, 0)
}

// ErrLogFull refuses a line that a task's log has no room for.
func ErrLogFull(taskID string) error {
	return fmt.Errorf("task %s: its log is full (a task keeps at most %d lines and %d KiB of log): %w",
		taskID, MaxTaskLogLines, MaxTaskLogBytes>>10, fault.ErrTooLarge)
}

// DroppedLogNote is the log line that stands for n lines dropped.
func DroppedLogNote(n int) string {
	return fmt.Sprintf("[flowvault] %d log lines dropped: a task keeps at most %d lines and %d KiB of log",
		n, MaxTaskLogLines, MaxTaskLogBytes>>10)
}

// CapLogs keeps the first of a result's log lines that t's log has room
// for, and a note of how many it dropped. A result is never refused for
// its logs: a worker would send it again (and again be refused), or give
// up and lose it. Once the log is full, results' lines are dropped without
// a note: the note that filled it says so. logs is not modified.
func CapLogs(taskID string, logs []conductor.TaskExecLog, t *Task) []conductor.TaskExecLog {
	lines, bytes := LogRoom(t)
	total := 0
	for _, l := range logs {
		total += len(l.Log)
	}
	if len(logs) <= lines && total <= bytes {
		return logs
	}
	// Room for the longest note this result can need.
	lines, bytes = lines-1, bytes-len(DroppedLogNote(len(logs)))
	if lines < 0 || bytes < 0 {
		return nil
	}
	n := 0
	for n < len(logs) && n < lines && len(logs[n].Log) <= bytes {
		bytes -= len(logs[n].Log)
		n++
	}
	return append(slices.Clone(logs[:n]), conductor.TaskExecLog{Log: DroppedLogNote(len(logs) - n), TaskID: taskID})
}
