package conductor_test

import (
	"strings"
	"testing"

	"github.com/flowvault/flowvault/schemas/conductor"
)

func TestCutReason(t *testing.T) {
	a := func(n int) string { return strings.Repeat("a", n) }
	for _, c := range []struct {
		name, reason, want string
	}{
		{"empty", "", ""},
		{"short", "boom", "boom"},
		{"exactly the limit", a(500), a(500)},
		{"over it", a(700), a(500)},
		{"two-byte characters count once", strings.Repeat("é", 600), strings.Repeat("é", 500)},
		{"a pair that fits", a(498) + "😀" + "b", a(498) + "😀"},
		{"a pair that would be split", a(499) + "😀" + "b", a(499)},
		{"invalid bytes count once", strings.Repeat("\xff", 600), strings.Repeat("\xff", 500)},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := conductor.CutReason(c.reason); got != c.want {
				t.Errorf("CutReason = %q (%d bytes), want %q (%d bytes)", got, len(got), c.want, len(c.want))
			}
		})
	}
}
