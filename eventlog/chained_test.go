package eventlog

import (
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Each message of a direct-get batch, and its end, names the sequence of
// the message before it in the batch: one that does not follow the last
// record read means replies were lost on the way.
func TestChained(t *testing.T) {
	for _, tt := range []struct {
		name    string
		header  string // Nats-Last-Sequence; "" when absent
		read    []uint64
		wantErr bool
	}{
		{"first of a batch", "0", nil, false},
		{"next", "7", []uint64{5, 7}, false},
		{"not a batch", "", []uint64{5}, false},
		{"replies lost", "24", []uint64{9, 10}, true},
		{"first lost", "3", nil, true},
		{"bad header", "x", nil, true},
	} {
		m := nats.NewMsg("_INBOX.x")
		if tt.header != "" {
			m.Header.Set(jetstream.LastSequenceHeader, tt.header)
		}
		var recs []Record
		for _, seq := range tt.read {
			recs = append(recs, Record{Seq: seq})
		}
		if err := chained(m, recs); (err != nil) != tt.wantErr {
			t.Errorf("%s: %v, want error %v", tt.name, err, tt.wantErr)
		}
	}
}
