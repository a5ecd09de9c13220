package secrets

import (
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/flowvault/flowvault/internal/testutil"
)

// ReadValue leaves no copy of what it read but the value it returns: once
// that is wiped, every byte a read put anywhere is zero. A read that
// fails leaves none at all.
func TestReadValueLeavesNoCopy(t *testing.T) {
	errReset := errors.New("connection reset")
	for _, tc := range []struct {
		name string
		size int
		fail bool
	}{
		{"empty", 0, false},
		{"short", 100, false},
		{"one buffer", 512, false},
		{"grown once", 513, false},
		{"the limit", MaxValueLen, false},
		{"failed", 5000, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := strings.Repeat("s", tc.size)
			var r io.Reader = strings.NewReader(want)
			if tc.fail {
				r = io.MultiReader(r, iotest.ErrReader(errReset))
			}
			tr := testutil.NewTracedReader(r)
			v, err := ReadValue(tr)
			switch {
			case tc.fail && (!errors.Is(err, errReset) || v != nil):
				t.Fatalf("read %d bytes, then failed: %d bytes, %v; want none and the failure", tc.size, len(v), err)
			case !tc.fail && (err != nil || string(v) != want):
				t.Fatalf("read %d bytes: %d bytes, %v", tc.size, len(v), err)
			}
			v.Wipe()
			if left := tr.Left(); left != 0 {
				t.Fatalf("%d of the %d bytes read are left unwiped once the value is", left, tc.size)
			}
		})
	}
}
