package webhooks

import (
	"testing"

	"github.com/flowvault/flowvault/masking"
)

// The index decides for the tasks whose matches it shows, so that a
// delivery reads whole only the waiting tasks it may complete: those
// whose matches hold data a view does not show.
func TestMayMatchReadsTheIndexWhereItCan(t *testing.T) {
	t.Parallel()
	payload := map[string]any{"customer": "ann@example.com", "n": 1}
	for _, tc := range []struct {
		name  string
		input map[string]any
		want  bool
	}{
		{"no matches", map[string]any{}, true},
		{"met", map[string]any{"matches": map[string]any{"$.customer": "ann@example.com"}}, true},
		{"not met", map[string]any{"matches": map[string]any{"$.customer": "bob@example.com"}}, false},
		{"not an object", map[string]any{"matches": "garbage"}, false},
		{"a list", map[string]any{"matches": []any{"$.customer", "x"}}, false},
		{"masked", map[string]any{"matches": map[string]any{"$.customer": masking.Mask}}, true},
		{"sealed", map[string]any{"matches": map[string]any{"$.customer": &masking.Sealed{Kind: masking.KindMasked}}}, true},
		{"a reference to a sealed value", map[string]any{"matches": map[string]any{"$.customer": "${sealed:task/x/input._secrets.e}"}}, true},
		{"masked as a whole", map[string]any{"matches": masking.Mask}, true},
	} {
		if got := mayMatch(tc.input, payload); got != tc.want {
			t.Errorf("%s: mayMatch = %v, want %v", tc.name, got, tc.want)
		}
	}
}
