package schemas

import (
	"math"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// EncodeRecord allocates its buffer once only if recordSize is at least
// the encoded size, whatever the envelopes' field sizes.
func TestRecordSizeBoundsEncoding(t *testing.T) {
	data, err := msgpack.Marshal(strings.Repeat("d", 70_000))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{0, 1, 31, 32, 255, 256, 65_536} {
		s := strings.Repeat("x", n)
		env := Envelope{Type: s, Version: math.MaxUint16, ID: s, Time: math.MinInt64, CausationID: s,
			CorrelationID: s, Principal: s, Data: data[:min(len(data), n+3)]}
		next := env
		next.ID = s + "/1"
		for _, envs := range [][]Envelope{{env, env, {Type: "t", Data: []byte{0xc0}}}, {env, next}} {
			rec, err := EncodeRecord(envs)
			if err != nil {
				t.Fatal(err)
			}
			if got, bound := len(rec), recordSize(envs); got > bound {
				t.Errorf("fields of %d bytes, format %d: record of %d bytes, recordSize %d", n, rec[0], got, bound)
			}
		}
	}
}

// shared recognises exactly the ids EventID makes.
func TestIsNthIDMatchesEventID(t *testing.T) {
	for n := 1; n <= 12; n++ {
		for m := 1; m <= 12; m++ {
			if got := isNthID(EventID("rec", m), "rec", n); got != (m == n) {
				t.Fatalf("isNthID(EventID(rec, %d), rec, %d) = %v", m, n, got)
			}
		}
	}
	for _, id := range []string{"rec", "rec/", "rec1", "rec/01", "rec/1x", "other/1"} {
		if isNthID(id, "rec", 1) {
			t.Fatalf("isNthID(%q, rec, 1) = true", id)
		}
	}
	if EventID("rec", 0) != "rec" {
		t.Fatalf("EventID(rec, 0) = %q", EventID("rec", 0))
	}
}
