package audit

import (
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/flowvault/flowvault/fault"
)

func TestParseFilter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 5, 6, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		query string
		want  Filter
		err   string // part of the fault.ErrInvalid message
	}{
		{"", Filter{}, ""},
		{"principal=app:x&secret=db&workflow=w-1&limit=5", Filter{Principal: "app:x", Secret: "db", Workflow: "w-1", Limit: 5}, ""},
		{"env=region", Filter{Env: "region"}, ""},
		{"from=2026-01-02T03:04:05.5%2B01:00&to=2026-01-03", Filter{
			From: time.Date(2026, 1, 2, 2, 4, 5, 500_000_000, time.UTC), To: time.Date(2026, 1, 3, 0, 0, 0, 0, time.UTC)}, ""},
		{"from=1767225600000", Filter{From: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}, ""},
		{"from=90m&to=2d", Filter{}, "must be before"},
		{"from=2d&to=90m", Filter{From: now.Add(-48 * time.Hour), To: now.Add(-90 * time.Minute)}, ""},
		{"from=200000d", Filter{From: time.UnixMilli(0).UTC()}, ""}, // past time.Duration: not wrapped into the future
		{"from=106751d", Filter{From: now.Add(-106751 * 24 * time.Hour)}, ""},
		{"since=1h", Filter{}, `unknown filter "since"`},
		{"secret=a&secret=b", Filter{}, "given 2 times"},
		{"secret=a&env=b", Filter{}, "give one"},
		{"limit=0", Filter{}, "limit"},
		{"limit=100001", Filter{}, "limit"},
		{"from=yesterday", Filter{}, "is not a time"},
		{"secret=no%20spaces", Filter{}, `secret name of 9 characters is invalid at character 3`},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			t.Parallel()
			q, err := url.ParseQuery(tt.query)
			if err != nil {
				t.Fatal(err)
			}
			got, err := ParseFilter(q, now)
			if tt.err == "" {
				if err != nil || got != tt.want {
					t.Fatalf("ParseFilter = %+v, %v; want %+v", got, err, tt.want)
				}
				return
			}
			if !errors.Is(err, fault.ErrInvalid) || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("ParseFilter = %+v, %v; want an invalid-filter error with %q", got, err, tt.err)
			}
		})
	}
}
