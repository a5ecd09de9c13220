package conductor_test

import (
	"math"
	"testing"

	"github.com/flowvault/flowvault/schemas/conductor"
)

func TestSwitchCase(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   any
		want string
	}{
		{nil, "null"},
		{"ups", "ups"},
		{"", ""},
		{true, "true"},
		{false, "false"},
		{int64(-3), "-3"},
		{float64(2.5), "2.5"},
		{float64(1e21), "1000000000000000000000"},
		{[]any{"a", int64(1)}, `["a",1]`},
		{map[string]any{"b": nil, "a": true}, `{"a":true,"b":null}`},
		{math.NaN(), "NaN"},
	}
	for _, tt := range tests {
		if got := conductor.SwitchCase(tt.in); got != tt.want {
			t.Errorf("SwitchCase(%#v) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
