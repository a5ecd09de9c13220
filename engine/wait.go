package engine

import (
	"errors"
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
	if given(input["duration"]) && given(input["until"]) {
		return 0, errWaitBoth
	}
	if s, err := waitSetting(input, "duration"); s != "" || err != nil {
		if err != nil {
			return 0, err
		}
		secs, err := parseWaitDuration(s)
		if err != nil {
			return 0, err
		}
		return afterSeconds(now, secs), nil
	}
	s, err := waitSetting(input, "until")
	if s == "" || err != nil {
		return 0, err
	}
	t, err := parseWaitDate(s)
	if err != nil {
		return 0, err
	}
	// A time before 1970 (0026-12-01, a typo) has passed, as one in 2020
	// has: 0 would read as no time at all, waiting for an update for good.
	return max(t.UnixMilli(), 1), nil
}

// waitSetting is a WAIT's "duration" or "until", "" when not given. Both
// are text, as Conductor reads them: a number (2, meant as seconds?) is
// refused rather than read as no wait at all, which would wait forever.
func waitSetting(input map[string]any, key string) (string, error) {
	v := input[key]
	if !given(v) {
		return "", nil
	}
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("%s %v: want text, such as \"30s\" or \"2026-12-01 10:00 UTC\"", key, v)
	}
	return s, nil
}

// errWaitBoth refuses a WAIT that says both how long and until when, as
// Conductor does, at registration and when they come from expressions.
var errWaitBoth = errors.New("both duration and until are given: give only one")

// errWaitUnexpected says where a duration stops parsing, not what is
// there: the whole value is quoted, which redaction finds when it is
// secret, but a part of it would pass unseen.
var errWaitUnexpected = errors.New("unexpected text")

// given reports whether a WAIT input is set: Conductor reads a blank one
// as not set.
func given(v any) bool { return v != nil && strings.TrimSpace(fmt.Sprint(v)) != "" }

// durationPart is one number and unit. The longest unit matches first, and
// what follows must be another part or the end ("5m10s", "5 mins"), which
// parseWaitDuration checks.
var durationPart = regexp.MustCompile(`(?i)(\d+)\s*(days|day|d|hours|hour|hrs|hr|h|minutes|minute|mins|min|m|seconds|second|secs|sec|s)`)

// parseWaitDuration accepts Conductor's duration syntax (DateTimeUtils),
// and returns it in seconds, at most Never's: a duration past every
// time.Duration (a thousand years) waits as long as it can.
func parseWaitDuration(s string) (int64, error) {
	s = strings.TrimSpace(s)
	parts := durationPart.FindAllStringSubmatchIndex(s, -1)
	if len(parts) == 0 {
		return 0, fmt.Errorf("duration %q: want e.g. \"30s\", \"5 minutes\" or \"1 days 2 hours\"", s)
	}
	var total int64
	covered := 0
	for _, p := range parts {
		if strings.TrimSpace(s[covered:p[0]]) != "" {
			return 0, fmt.Errorf("duration %q: %w at byte %d", s, errWaitUnexpected, covered)
		}
		covered = p[1]
		n, err := strconv.ParseInt(s[p[2]:p[3]], 10, 64)
		if err != nil || n > 1<<31 {
			return 0, fmt.Errorf("duration %q: number out of range", s)
		}
		unit := int64(1)
		switch u := strings.ToLower(s[p[4]:p[5]]); {
		case strings.HasPrefix(u, "d"):
			unit = 24 * 3600
		case strings.HasPrefix(u, "h"):
			unit = 3600
		case strings.HasPrefix(u, "m"):
			unit = 60
		}
		total = min(total+n*unit, Never/1000) // n*unit < 2^48: no overflow
	}
	if strings.TrimSpace(s[covered:]) != "" {
		return 0, fmt.Errorf("duration %q: %w at byte %d", s, errWaitUnexpected, covered)
	}
	return total, nil
}

var waitDateLayouts = []string{"2006-01-02 15:04 MST", "2006-01-02 15:04 -0700", "2006-01-02 15:04", "2006-01-02"}

// zoneOffsets are the zone abbreviations an "until" may name, with their
// offsets (seconds east of UTC). Go reads an abbreviation by the server's
// own zone, and one it does not know as UTC: neither is the same on every
// engine, nor what the author meant. Others are refused.
var zoneOffsets = map[string]int{
	"UTC": 0, "GMT": 0, "Z": 0,
	"HST": -10 * 3600, "AKST": -9 * 3600, "AKDT": -8 * 3600,
	"PST": -8 * 3600, "PDT": -7 * 3600, "MST": -7 * 3600, "MDT": -6 * 3600,
	"CST": -6 * 3600, "CDT": -5 * 3600, "EST": -5 * 3600, "EDT": -4 * 3600,
	"BST": 3600, "CET": 3600, "CEST": 2 * 3600, "EET": 2 * 3600, "EEST": 3 * 3600,
	"IST": 5*3600 + 1800, "JST": 9 * 3600, "AEST": 10 * 3600, "AEDT": 11 * 3600,
}

func parseWaitDate(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	for _, layout := range waitDateLayouts {
		t, err := time.ParseInLocation(layout, s, time.UTC)
		if err != nil {
			continue
		}
		if !strings.HasSuffix(layout, "MST") {
			return t, nil
		}
		zone, _ := t.Zone()
		if strings.HasPrefix(zone, "+") || strings.HasPrefix(zone, "-") {
			// Go reads "+0000" to "+0024" (and "-00nn") as a zone named
			// like tzdata's "+03", not as the offset the next layout
			// reads: refused as an unknown zone, "+0000" among them.
			continue
		}
		offset, ok := zoneOffsets[strings.ToUpper(zone)]
		if !ok {
			return time.Time{}, fmt.Errorf("until %q: unknown zone: give an offset (\"yyyy-MM-dd HH:mm -0800\") or UTC", s)
		}
		return time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), 0, 0, time.FixedZone(zone, offset)), nil
	}
	return time.Time{}, fmt.Errorf("until %q: want \"yyyy-MM-dd HH:mm z\", \"yyyy-MM-dd HH:mm\" or \"yyyy-MM-dd\"", s)
}
