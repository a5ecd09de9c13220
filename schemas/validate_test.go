package schemas

import (
	"errors"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

func TestCheckMsgpack(t *testing.T) {
	valid, _ := msgpack.Marshal(map[string]any{"a": []any{1, "two", 3.0, nil, true, []byte{1, 2}}, "b": map[string]int{"x": -5}})
	tests := []struct {
		name string
		in   []byte
		ok   bool
	}{
		{"valid nested", valid, true},
		{"fixint", []byte{0x05}, true},
		{"empty", nil, false},
		{"array32 claims 2^32-1", []byte{0xdd, 0xff, 0xff, 0xff, 0xff, 0x01}, false},
		{"map16 claims more than remains", []byte{0xde, 0x00, 0x10, 0x01, 0x01}, false},
		{"str32 longer than input", []byte{0xdb, 0x00, 0x00, 0x10, 0x00, 'a'}, false},
		{"bin8 truncated", []byte{0xc4, 0x05, 1, 2}, false},
		{"never-used byte", []byte{0xc1}, false},
		{"trailing bytes", []byte{0x01, 0x02}, false},
		{"truncated array", []byte{0x92, 0x01}, false},
		{"ext8", []byte{0xc7, 0x02, 0x01, 0xaa, 0xbb}, true},
	}
	for _, tt := range tests {
		err := checkMsgpack(tt.in)
		if (err == nil) != tt.ok || (err != nil && !errors.Is(err, ErrCorrupt)) {
			t.Errorf("%s: checkMsgpack = %v, want ok=%v", tt.name, err, tt.ok)
		}
	}
	deep := make([]byte, 0, 1000)
	for i := 0; i < 999; i++ {
		deep = append(deep, 0x91)
	}
	deep = append(deep, 0x01)
	if err := checkMsgpack(deep); err == nil {
		t.Error("999 levels of nesting accepted")
	}
}
