package engine_test

import (
	"testing"
	"time"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// Times past what int64 milliseconds (or a time.Duration) hold never make
// a timer fire at once, nor leave a task waiting with no timer it should
// have. Each case is an input the API accepts.

// A timeoutSeconds of Long.MAX_VALUE ("never", as a Java client may send)
// never times the task out, and asks for no timer: StartTime +
// 9223372036854775807*1000 must not wrap to StartTime-1000.
func TestHugeTaskTimeoutDoesNotFireAtOnce(t *testing.T) {
	def := `{"name":"w","tasks":[{"name":"a","taskReferenceName":"a"}]}`
	h := newHarness(t, def, nil, `{"name":"a","retryCount":0,"timeoutSeconds":9223372036854775807,"responseTimeoutSeconds":3600}`)
	h.take("a")
	h.advance(time.Second)
	h.decide(engine.Tick{})
	h.wantTask("a", conductor.TaskInProgress)
	for _, at := range engine.Deadlines(h.w) {
		if at == engine.Never || at < h.now.UnixMilli() {
			t.Fatalf("deadlines %v: want none that never comes or has passed", engine.Deadlines(h.w))
		}
	}
}

// The same for the workflow's own timeoutSeconds.
func TestHugeWorkflowTimeoutDoesNotFireAtOnce(t *testing.T) {
	def := `{"name":"w","timeoutPolicy":"TIME_OUT_WF","timeoutSeconds":9223372036854775807,"tasks":[{"name":"a","taskReferenceName":"a"}]}`
	h := newHarness(t, def, nil, `{"name":"a","retryCount":0}`)
	h.advance(time.Second)
	h.decide(engine.Tick{})
	h.wantStatus(conductor.WorkflowRunning)
}

// pollTimeoutSeconds likewise times a SCHEDULED task out at its first tick.
func TestHugePollTimeoutDoesNotFireAtOnce(t *testing.T) {
	def := `{"name":"w","tasks":[{"name":"a","taskReferenceName":"a"}]}`
	h := newHarness(t, def, nil, `{"name":"a","retryCount":0,"pollTimeoutSeconds":9223372036854775807}`)
	h.advance(time.Second)
	h.decide(engine.Tick{})
	h.wantTask("a", conductor.TaskScheduled)
}

// A LINEAR_BACKOFF delay that overflows waits as long as Conductor's
// does (Integer.MAX_VALUE seconds), not none.
func TestOverflowingRetryDelayDoesNotRetryAtOnce(t *testing.T) {
	def := `{"name":"w","tasks":[{"name":"a","taskReferenceName":"a"}]}`
	h := newHarness(t, def, nil, `{"name":"a","retryCount":2,"retryLogic":"LINEAR_BACKOFF","retryDelaySeconds":10,"backoffScaleFactor":4611686018427387904}`)
	h.take("a")
	h.report("a", conductor.TaskFailed, nil, "boom")
	retry := h.w.LatestByRef("a")
	if retry == nil || retry.RetryCount != 1 {
		t.Fatalf("no retry scheduled")
	}
	if retry.AvailableAt <= h.now.UnixMilli() {
		t.Fatalf("retry available at %d, not after now %d: an overflowed delay retries at once", retry.AvailableAt, h.now.UnixMilli())
	}
}

// A WAIT "duration" whose parts are each in range but whose total passes
// time.Duration's 292 years wakes when it says, in the future: it must not
// wrap to a time that has passed ("200000d") or one before 1970, which
// no timer would wake ("106752d").
func TestWaitDurationOverflow(t *testing.T) {
	def := `{"name":"w","tasks":[{"name":"wait","taskReferenceName":"wait","type":"WAIT","inputParameters":{"duration":"${workflow.input.d}"}}]}`
	for _, d := range []string{"106752d", "200000d", "2147483647 days 2147483647 days"} {
		h := newHarness(t, def, map[string]any{"d": d})
		wt := h.task("wait")
		if wt.Status == conductor.TaskInProgress {
			if dl := engine.Deadlines(h.w); len(dl) != 1 || dl[0] <= h.now.UnixMilli() {
				t.Errorf("duration %q: deadlines %v, want one in the future (or a refusal)", d, dl)
			}
		} else if wt.Status == conductor.TaskCompleted {
			t.Errorf("duration %q: WAIT completed at once", d)
		}
	}
}

// An "until" before 1970 is in the past, and the WAIT completes at once as
// Conductor's does: its Unix ms, <= 0, must not read as no time at all.
func TestWaitUntilBefore1970IsPast(t *testing.T) {
	def := `{"name":"w","tasks":[{"name":"wait","taskReferenceName":"wait","type":"WAIT","inputParameters":{"until":"${workflow.input.u}"}}]}`
	for _, u := range []string{"0001-01-01 00:00 UTC", "1969-12-31", "1970-01-01"} {
		h := newHarness(t, def, map[string]any{"u": u})
		h.decide(engine.Tick{})
		if wt := h.task("wait"); wt.Status == conductor.TaskInProgress && len(engine.Deadlines(h.w)) == 0 {
			t.Errorf("until %q: WAIT in progress with no deadline (waits forever)", u)
		}
	}
}

// A cached output's time to live past int64 milliseconds never ends: it
// must not wrap to an expiry in the past, which no run would reuse.
func TestHugeCacheTTLNeverExpires(t *testing.T) {
	def := `{"name":"cached","tasks":[{"name":"fetch","taskReferenceName":"fetch",
	  "cacheConfig":{"key":"k","ttlInSecond":9223372036854775807}}]}`
	h := newHarness(t, def, nil)
	h.complete("fetch", map[string]any{"body": "A"})
	if stored := effectsOf[engine.CacheOutput](h.last); len(stored) != 1 || stored[0].ExpiresAt != engine.Never {
		t.Fatalf("cache effects %+v, want one that never expires", stored)
	}
}

// A backoffJitterMs of Long.MAX_VALUE (the API takes any that is not
// negative) draws a jitter up to that: added to now, one past
// MaxInt64-now wrapped into the past and the retry was handed out at
// once. It waits as long as it can, as an overflowing retry delay does.
// wf-568628's first task draws such a jitter (9223370985267568057 ms).
func TestHugeBackoffJitterDoesNotRetryAtOnce(t *testing.T) {
	for _, tc := range []struct {
		name, taskDef string
	}{
		{"no retry delay", `{"name":"a","retryCount":1,"retryDelaySeconds":0,"backoffJitterMs":9223372036854775807}`},
		{"a retry delay", `{"name":"a","retryCount":1,"retryDelaySeconds":60,"backoffJitterMs":9223372036854775807}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &harness{t: t, now: epoch, taskDefs: map[string]*conductor.TaskDef{}}
			var td conductor.TaskDef
			if err := conductor.Unmarshal([]byte(tc.taskDef), &td); err != nil {
				t.Fatal(err)
			}
			h.taskDefs[td.Name] = &td
			h.decide(engine.Start{WorkflowID: "wf-568628", Def: parseDef(t, `{"name":"w","tasks":[{"name":"a","taskReferenceName":"a"}]}`), CreatedBy: "app:tester"})
			h.take("a")
			d := h.report("a", conductor.TaskFailed, nil, "boom")
			retry := h.wantTask("a", conductor.TaskScheduled)
			if retry.RetryCount != 1 || retry.AvailableAt != engine.Never || len(effectsOf[engine.Dispatch](d)) != 0 {
				t.Fatalf("retry %d due at %d (now %d), dispatches %+v: want it due never", retry.RetryCount, retry.AvailableAt, h.now.UnixMilli(),
					effectsOf[engine.Dispatch](d))
			}
		})
	}
}
