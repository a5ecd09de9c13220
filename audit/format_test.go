package audit

import (
	"testing"
	"time"

	"github.com/flowvault/flowvault/schemas"
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
		{"fields named -", Entry{Time: at, Principal: "-", Action: "a", Target: "-", Detail: map[string]string{"by": "-"}},
			`2026-03-04T04:06:07.891Z "-" a "-" by="-"`},
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

// A list in an entry's details splits back into the names it lists, tags
// into their keys and values, whatever characters the names hold.
func TestListsSplitBackIntoTheirNames(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, got, want string
	}{
		{"plain names", list([]string{"ADMIN", "USER"}), "ADMIN,USER"},
		{"a name with a comma", list([]string{"a,b", "c"}), `"a,b",c`},
		{"a name with a quote", list([]string{`x"y`}), `"x\"y"`},
		{"none", list(nil), ""},
		{"tags", secretTags([]schemas.SecretTag{{Key: "env", Value: "prod"}, {Key: "team", Value: "a"}}), "env=prod,team=a"},
		{"a tag value with a comma", secretTags([]schemas.SecretTag{{Key: "env", Value: "prod,team=a"}}), `env="prod,team=a"`},
		{"a tag key with =", defTags([]schemas.DefTag{{Key: "k=v", Value: "w"}}), `"k=v"=w`},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: %s, want %s", tt.name, tt.got, tt.want)
		}
	}
}
