package engine

import (
	"fmt"
	"strings"
	"testing"
)

// FuzzWaitUntil reads any WAIT "duration" or "until" text. A duration
// wakes at or after now and reads back the same from its seconds; an
// until reads back the same from its own rendering; a refused duration
// quotes the whole text, never a part, so that redaction finds a secret
// in it.
func FuzzWaitUntil(f *testing.F) {
	for _, s := range []string{"30s", "1 days 2 hours", "5m 10s", "5m10s", "5 mins", "1 hours", "10s",
		"2147483648d", "99999999999999999999s", "5 parsecs", "2026-12-01 10:00 UTC", "2026-12-01 10:00",
		"2026-12-01", "2026-12-01 10:00 -0800", "2026-12-01 10:00 XYZ", "0026-12-01", " 3 D "} {
		f.Add(s)
	}
	const now = int64(1796032800000)
	f.Fuzz(func(t *testing.T, s string) {
		if at, err := waitUntil(map[string]any{"duration": s}, now); err == nil {
			if at < now && at != 0 {
				t.Fatalf("duration %q: wakes at %d, before now", s, at)
			}
		}
		secs, err := parseWaitDuration(s)
		switch {
		case err != nil:
			if !strings.Contains(err.Error(), fmt.Sprintf("%q", strings.TrimSpace(s))) {
				t.Fatalf("duration %q: %v does not quote the whole text", s, err)
			}
		case secs < 0 || secs > Never/1000:
			t.Fatalf("duration %q: %d seconds", s, secs)
		case secs/86400 <= 1<<31: // a part holds at most 2^31 of its unit
			text := fmt.Sprintf("%dd %dh %dm %ds", secs/86400, secs%86400/3600, secs%3600/60, secs%60)
			if again, err := parseWaitDuration(text); err != nil || again != secs {
				t.Fatalf("duration %q: %d seconds, read back as %d, %v", s, secs, again, err)
			}
		}
		if at, err := waitUntil(map[string]any{"until": s}, now); err == nil && strings.TrimSpace(s) != "" && at < 1 {
			t.Fatalf("until %q: %d", s, at)
		}
		if u, err := parseWaitDate(s); err == nil {
			again, err := parseWaitDate(u.Format("2006-01-02 15:04 -0700"))
			if err != nil || !again.Equal(u) {
				t.Fatalf("until %q: %s, read back as %s, %v", s, u, again, err)
			}
		}
	})
}
