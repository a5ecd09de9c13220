package engine_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/schemas/conductor"
)

func logLines(n, size int) []string {
	out := make([]string, n)
	for i := range out {
		l := fmt.Sprintf("line %d ", i)
		out[i] = l + strings.Repeat("x", max(size-len(l), 0))
	}
	return out
}

func execLogs(lines []string) []conductor.TaskExecLog {
	out := make([]conductor.TaskExecLog, len(lines))
	for i, l := range lines {
		out[i] = conductor.TaskExecLog{Log: l}
	}
	return out
}

// The decider holds a task's log to its limits whatever the path a result
// took (NATS workers bypass the API's cap, concurrent requests overshoot
// it): a result's lines past the limit are dropped with a note, the result
// itself lands; an AddLog that does not fit is refused.
func TestTaskLogCap(t *testing.T) {
	big := engine.MaxTaskLogBytes / 3 // three do not fit with anything else
	cases := []struct {
		name    string
		before  []string // already in the log, from an earlier IN_PROGRESS result
		result  []string // a COMPLETED result's lines
		addLog  *string  // instead of a result
		wantErr error
		// wantKept lines of before+result kept in order, then the note (if
		// wantNote != "") and nothing else.
		wantKept int
		wantNote string
	}{
		{name: "result within limits", before: logLines(10, 10), result: logLines(990, 10), wantKept: 1000},
		{name: "result over the line limit", result: logLines(1200, 10), wantKept: 999, wantNote: engine.DroppedLogNote(201)},
		{name: "result over the line limit after earlier lines", before: logLines(600, 10), result: logLines(600, 10),
			wantKept: 999, wantNote: engine.DroppedLogNote(201)},
		{name: "result over the byte limit", result: logLines(3, big+1), wantKept: 2, wantNote: engine.DroppedLogNote(1)},
		{name: "result onto a full log drops without a note", before: logLines(1000, 10), result: logLines(5, 10), wantKept: 1000},
		{name: "result onto a log with room for the note only", before: logLines(999, 10), result: logLines(5, 10),
			wantKept: 999, wantNote: engine.DroppedLogNote(5)},
		{name: "add log fits", before: logLines(999, 10), addLog: new("last"), wantKept: 999},
		{name: "add log over the line limit", before: logLines(1000, 10), addLog: new("one more"), wantErr: fault.ErrTooLarge, wantKept: 1000},
		{name: "add log over the byte limit", before: logLines(2, big+1), addLog: new(strings.Repeat("y", big+1)),
			wantErr: fault.ErrTooLarge, wantKept: 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, threeSimple, nil)
			id := h.task("a_ref").ID
			if len(tc.before) > 0 {
				h.decide(engine.Result{Result: conductor.TaskResult{TaskID: id, Status: conductor.TaskInProgress, Logs: execLogs(tc.before)}})
			}
			if tc.addLog != nil {
				_, err := h.try(engine.AddLog{TaskID: id, Line: *tc.addLog})
				if tc.wantErr != nil {
					wantErr(t, err, tc.wantErr)
				} else if err != nil {
					t.Fatalf("AddLog: %v", err)
				}
			} else {
				h.decide(engine.Result{Result: conductor.TaskResult{TaskID: id, Status: conductor.TaskCompleted, Logs: execLogs(tc.result)}})
				// Never refused for its logs.
				h.wantTask("a_ref", conductor.TaskCompleted)
			}
			sent := append(append([]string(nil), tc.before...), tc.result...)
			if tc.addLog != nil && tc.wantErr == nil {
				sent, tc.wantKept = append(sent, *tc.addLog), tc.wantKept+1
			}
			got := h.w.TaskByID(id).Logs
			want := tc.wantKept
			if tc.wantNote != "" {
				want++
			}
			if len(got) != want {
				t.Fatalf("log has %d lines, want %d", len(got), want)
			}
			for i := range tc.wantKept {
				if got[i].Log != sent[i] {
					t.Fatalf("line %d = %.40q, want %.40q", i, got[i].Log, sent[i])
				}
			}
			if tc.wantNote != "" && got[len(got)-1].Log != tc.wantNote {
				t.Fatalf("last line = %q, want note %q", got[len(got)-1].Log, tc.wantNote)
			}
			lines, bytes := 0, 0
			for _, l := range got {
				lines, bytes = lines+1, bytes+len(l.Log)
			}
			if lines > engine.MaxTaskLogLines || bytes > engine.MaxTaskLogBytes {
				t.Fatalf("log holds %d lines, %d bytes: over the limits", lines, bytes)
			}
		})
	}
}

// The note reads as the API's does (one wording for both paths).
func TestDroppedLogNote(t *testing.T) {
	want := "[flowvault] 7 log lines dropped: a task keeps at most 1000 lines and 512 KiB of log"
	if got := engine.DroppedLogNote(7); got != want {
		t.Fatalf("note = %q, want %q", got, want)
	}
}
