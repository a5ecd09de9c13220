package expr

import (
	"encoding/json"
	"math"
	"testing"
)

func TestInterpolate(t *testing.T) {
	tests := []struct {
		v    any
		want string
	}{
		{nil, "null"},
		{"s", "s"},
		{true, "true"},
		{false, "false"},
		{int64(-42), "-42"},
		{int64(math.MaxInt64), "9223372036854775807"},
		{int(7), "7"},
		{int8(-8), "-8"},
		{int32(32), "32"},
		{uint(9), "9"},
		{uint8(8), "8"},
		{uint64(math.MaxUint64), "18446744073709551615"},
		{json.Number("1.50"), "1.50"},
		// Java's Double.toString.
		{0.0, "0.0"},
		{math.Copysign(0, -1), "-0.0"},
		{1.0, "1.0"},
		{-2.5, "-2.5"},
		{0.1, "0.1"},
		{0.001, "0.001"},
		{0.0001, "1.0E-4"},
		{1.23e-10, "1.23E-10"},
		{9999999.0, "9999999.0"},
		{1e7, "1.0E7"},
		{123456789.0, "1.23456789E8"},
		{1.5e300, "1.5E300"},
		{math.NaN(), "NaN"},
		{math.Inf(1), "Infinity"},
		{math.Inf(-1), "-Infinity"},
		{float32(0.1), "0.1"},
		{float32(1e10), "1.0E10"},
		// Compact JSON, keys sorted, HTML not escaped.
		{map[string]any{"b": int64(1), "a": "<&>"}, `{"a":"<&>","b":1}`},
		{[]any{int64(1), "x", nil, 2.5}, `[1,"x",null,2.5]`},
		{map[string]any{}, `{}`},
	}
	for _, tt := range tests {
		if got := interpolate(tt.v); got != tt.want {
			t.Errorf("interpolate(%#v) = %q, want %q", tt.v, got, tt.want)
		}
	}
}

func TestCompare(t *testing.T) {
	tests := []struct {
		l, r any
		op   string
		want bool
	}{
		{int64(1), 1.0, "==", true},
		{int(2), int64(1), ">", true},
		{uint64(math.MaxUint64), int64(1), ">", true},
		{int64(9007199254740993), int64(9007199254740992), ">", true},
		{float32(1.5), 1.5, "==", true},
		{"a", "b", "<", true},
		{"b", "b", ">=", true},
		{true, true, "==", true},
		{true, false, "!=", true},
		{true, true, "<=", false},
		{nil, nil, "==", true},
		{nil, nil, ">=", false},
		{nil, "x", "!=", true},
		{int64(1), "1", "==", false},
		{int64(1), "1", "!=", true},
		{int64(1), "1", "<", false},
		{math.NaN(), 1.0, "==", false},
		{math.NaN(), 1.0, "!=", true},
		{map[string]any{}, map[string]any{}, "==", false},
	}
	for _, tt := range tests {
		if got := compare(tt.l, tt.r, tt.op, newWork(MaxSteps)); got != tt.want {
			t.Errorf("compare(%#v %s %#v) = %v, want %v", tt.l, tt.op, tt.r, got, tt.want)
		}
	}
}
