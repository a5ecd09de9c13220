package engine

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// waitUntil computes when a WAIT task wakes up (Unix ms) from its input:
// "duration" ("30s", "1 days 2 hours", "5m 10s"), or "until" (a date:
// "2026-12-01 10:00 UTC", "2026-12-01 10:00", "2026-12-01"). Neither means
// the task waits for an external update: 0.
func waitUntil(input map[string]any, now int64) (int64, error) {
	if s, ok := input["duration"].(string); ok && strings.TrimSpace(s) != "" {
		d, err := parseWaitDuration(s)
		if err != nil {
			return 0, err
		}
		return now + d.Milliseconds(), nil
	}
	if s, ok := input["until"].(string); ok && strings.TrimSpace(s) != "" {
		t, err := parseWaitDate(s)
		if err != nil {
			return 0, err
		}
		return t.UnixMilli(), nil
	}
	return 0, nil
}

var durationPart = regexp.MustCompile(`(?i)(\d+)\s*(days|day|d|hours|hour|hrs|hr|h|minutes|minute|mins|min|m|seconds|second|secs|sec|s)\b`)

// parseWaitDuration accepts Conductor's duration syntax (DateTimeUtils).
func parseWaitDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	parts := durationPart.FindAllStringSubmatchIndex(s, -1)
	if len(parts) == 0 {
		return 0, fmt.Errorf("duration %q: want e.g. \"30s\", \"5 minutes\" or \"1 days 2 hours\"", s)
	}
	var total time.Duration
	covered := 0
	for _, p := range parts {
		if strings.TrimSpace(s[covered:p[0]]) != "" {
			return 0, fmt.Errorf("duration %q: unexpected %q", s, s[covered:p[0]])
		}
		covered = p[1]
		n, err := strconv.ParseInt(s[p[2]:p[3]], 10, 64)
		if err != nil || n > 1<<31 {
			return 0, fmt.Errorf("duration %q: number out of range", s)
		}
		unit := time.Second
		switch u := strings.ToLower(s[p[4]:p[5]]); {
		case strings.HasPrefix(u, "d"):
			unit = 24 * time.Hour
		case strings.HasPrefix(u, "h"):
			unit = time.Hour
		case strings.HasPrefix(u, "m"):
			unit = time.Minute
		}
		total += time.Duration(n) * unit
	}
	if strings.TrimSpace(s[covered:]) != "" {
		return 0, fmt.Errorf("duration %q: unexpected %q", s, s[covered:])
	}
	return total, nil
}

var waitDateLayouts = []string{"2006-01-02 15:04 MST", "2006-01-02 15:04 -0700", "2006-01-02 15:04", "2006-01-02"}

func parseWaitDate(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	for _, layout := range waitDateLayouts {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("until %q: want \"yyyy-MM-dd HH:mm z\", \"yyyy-MM-dd HH:mm\" or \"yyyy-MM-dd\"", s)
}
