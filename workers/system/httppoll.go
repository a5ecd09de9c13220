package system

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/flowvault/flowvault/schemas/conductor"
)

// HTTPPoll runs Orkes's HTTP_POLL: the HTTP task's call, made again until
// its terminationCondition holds. Each run makes one call; a condition that
// does not hold yet reports the task IN_PROGRESS with a callback after the
// polling interval, and the engine hands the task over again then (the
// task is in no engine's hands in between, and its task definition's
// timeoutSeconds bounds the whole polling). A call that fails (a status
// other than 2xx, no answer) fails the task, as an HTTP task's does.
type HTTPPoll struct {
	HTTP   HTTP
	Budget Budget
}

// Bounds of the polling interval.
const (
	defaultPollInterval = 60 * time.Second
	maxPollInterval     = 24 * time.Hour
)

// pollConfig is what HTTP_POLL adds to an HTTP request.
type pollConfig struct {
	condition string
	interval  time.Duration
	strategy  string
}

// delay is the wait before poll n+1, after poll n (n ≥ 1): FIXED the
// interval, LINEAR_BACKOFF n intervals, EXPONENTIAL_BACKOFF 2^(n-1).
func (c pollConfig) delay(n int) time.Duration {
	factor := 1.0
	switch n = max(n, 1); c.strategy {
	case "LINEAR_BACKOFF":
		factor = float64(n)
	case "EXPONENTIAL_BACKOFF":
		factor = math.Exp2(float64(n - 1))
	}
	if secs := c.interval.Seconds() * factor; secs < maxPollInterval.Seconds() {
		return time.Duration(secs) * time.Second
	}
	return maxPollInterval
}

// pollConfigOf reads terminationCondition, pollingInterval (seconds, a
// number or a numeric string) and pollingStrategy from http_request, or
// from the input itself (both forms are Orkes's).
func pollConfigOf(in map[string]any) (pollConfig, error) {
	// The poll's keys in http_request (Orkes's form) win over the same
	// keys beside it, which are read too: a setting is never dropped.
	src := in
	if req, ok := in["http_request"].(map[string]any); ok {
		src = maps.Clone(in)
		maps.Copy(src, req)
	}
	c := pollConfig{condition: "true", interval: defaultPollInterval, strategy: "FIXED"}
	if v, ok := src["terminationCondition"]; ok && v != nil {
		s, ok := v.(string)
		if !ok {
			return c, fmt.Errorf("terminationCondition must be a JavaScript expression, a string")
		}
		if strings.TrimSpace(s) != "" {
			c.condition = s
		}
	}
	if v, ok := src["pollingInterval"]; ok && v != nil {
		d, err := wholeSeconds(v, maxPollInterval)
		if err != nil {
			return c, fmt.Errorf("pollingInterval %w", err)
		}
		c.interval = d
	}
	if v, ok := src["pollingStrategy"]; ok && v != nil {
		s, _ := v.(string)
		switch s = strings.ToUpper(strings.TrimSpace(s)); s {
		case "", "FIXED", "LINEAR_BACKOFF", "EXPONENTIAL_BACKOFF":
			if s != "" {
				c.strategy = s
			}
		default:
			// Not quoted: it may be a resolved secret, which the
			// upper-casing turned into text redaction does not look for
			// (as http_request.method).
			return c, errors.New("pollingStrategy is not FIXED, LINEAR_BACKOFF or EXPONENTIAL_BACKOFF")
		}
	}
	return c, nil
}

// Execute makes one call and evaluates the termination condition with `$`
// holding the call's output ($.output.response.body…), the task's input
// ($.input) and the number of this poll ($.pollCount).
func (p HTTPPoll) Execute(ctx context.Context, t *conductor.Task) conductor.TaskResult {
	cfg, err := pollConfigOf(t.InputData)
	if err != nil {
		return failed(conductor.TaskFailedWithTerminalError, "HTTP_POLL task %s: %v", t.ReferenceTaskName, err)
	}
	res := p.HTTP.Execute(ctx, t)
	if res.Status != conductor.TaskCompleted && res.Status != conductor.TaskInProgress {
		res.ReasonForIncompletion = strings.Replace(res.ReasonForIncompletion, "HTTP task", "HTTP_POLL task", 1)
		return res
	}
	scope := map[string]any{"output": res.OutputData, "input": t.InputData, "pollCount": int64(t.PollCount)}
	done, err := Condition(ctx, p.Budget, cfg.condition, scope)
	if err != nil {
		configured := slices.Concat(configuredText(t, "http_request", "terminationCondition"), configuredText(t, "terminationCondition"))
		return failed(conductor.TaskFailedWithTerminalError, "HTTP_POLL task %s: terminationCondition: %v", t.ReferenceTaskName,
			withoutSplicedNames(err, t, cfg.condition, configured))
	}
	if done {
		return conductor.TaskResult{Status: conductor.TaskCompleted, OutputData: res.OutputData}
	}
	return conductor.TaskResult{Status: conductor.TaskInProgress, OutputData: res.OutputData,
		CallbackAfterSeconds: int64(cfg.delay(t.PollCount) / time.Second)}
}
