package audit

import (
	"testing"
	"time"
)

func TestLine(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 3, 4, 5, 6, 7, 891_000_000, time.FixedZone("CET", 3600))
	tests := []struct {
		name string
		e    Entry
		want string
	}{
		{"bare", Entry{Time: at, Principal: "alice", Action: ActSecretRead, Target: "SECRET_NAME:db"},
			"2026-03-04T04:06:07.891Z alice secret.read SECRET_NAME:db"},
		{"absent principal and target", Entry{Time: at, Action: ActRefusalsDrop, Detail: map[string]string{"count": "3"}},
			"2026-03-04T04:06:07.891Z - audit.dropped - count=3"},
		{"details in key order", Entry{Time: at, Principal: "p", Action: "a", Target: "t", Detail: map[string]string{"z": "1", "a": "2", "m": "3"}},
			"2026-03-04T04:06:07.891Z p a t a=2 m=3 z=1"},
		{"quoted fields", Entry{Time: at, Principal: "flowvault bootstrap", Action: "a", Target: `REQUEST:/x"y`,
			Detail: map[string]string{"reason": "no grant", "tags": "env=prod", "empty": "", "nl": "a\nb", "uni": "héllo"}},
			`2026-03-04T04:06:07.891Z "flowvault bootstrap" a "REQUEST:/x\"y" empty="" nl="a\nb" reason="no grant" tags="env=prod" uni=héllo`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := Line(tt.e); got != tt.want {
				t.Errorf("Line = %s\nwant   %s", got, tt.want)
			}
		})
	}
}
