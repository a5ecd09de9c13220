package audit

import (
	"fmt"
	"math"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/flowvault/flowvault/fault"
)

// FilterParams are the query parameters of GET /api/audit, in the order
// the error for an unknown one lists them.
var FilterParams = []string{"principal", "secret", "env", "workflow", "from", "to", "limit"}

// ParseFilter reads a Filter from GET /api/audit's query. Unknown or
// repeated parameters and malformed values are fault.ErrInvalid errors
// that say what is accepted; now anchors relative times.
func ParseFilter(q url.Values, now time.Time) (Filter, error) {
	for k, vs := range q {
		if !slices.Contains(FilterParams, k) {
			return Filter{}, invalid("unknown filter %q: use %s", k, strings.Join(FilterParams, ", "))
		}
		if len(vs) > 1 {
			return Filter{}, invalid("filter %s given %d times: give it once", k, len(vs))
		}
	}
	f := Filter{Principal: q.Get("principal"), Secret: q.Get("secret"), Env: q.Get("env"), Workflow: q.Get("workflow")}
	var err error
	if f.From, err = parseParam(q, "from", now); err != nil {
		return Filter{}, err
	}
	if f.To, err = parseParam(q, "to", now); err != nil {
		return Filter{}, err
	}
	if s := q.Get("limit"); s != "" {
		if f.Limit, err = strconv.Atoi(s); err != nil || f.Limit < 1 {
			return Filter{}, invalid("limit %q: want a number from 1 to %d", s, MaxLimit)
		}
	}
	return f, f.check()
}

func parseParam(q url.Values, name string, now time.Time) (time.Time, error) {
	s := q.Get(name)
	if s == "" {
		return time.Time{}, nil
	}
	t, err := ParseTime(s, now)
	if err != nil {
		return time.Time{}, invalid("%s: %v", name, err)
	}
	return t, nil
}

// ParseTime reads a time as the audit filters take it: RFC 3339
// (2026-01-02T15:04:05Z, fractions and offsets allowed), a date
// (2026-01-02, midnight UTC), Unix milliseconds (as Conductor's times),
// or a duration before now (90m, 24h, 7d).
func ParseTime(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil && ms >= 0 {
		return time.UnixMilli(ms).UTC(), nil
	}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.Atoi(days); err == nil && n >= 0 {
			// Past time.Duration's 106,751 days, every day there is.
			if n > maxDaysAgo {
				return time.UnixMilli(0).UTC(), nil
			}
			return now.Add(-time.Duration(n) * 24 * time.Hour).UTC(), nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d).UTC(), nil
	}
	return time.Time{}, fmt.Errorf("%q is not a time: want RFC 3339 (2026-01-02T15:04:05Z), a date (2026-01-02), Unix milliseconds, or a duration ago (90m, 24h, 7d)", s)
}

// maxDaysAgo is the most days ago a time.Duration reaches.
const maxDaysAgo = int(math.MaxInt64 / int64(24*time.Hour))

func invalid(format string, args ...any) error { return fault.Invalid(format, args...) }
