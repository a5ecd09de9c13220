package eventlog

import (
	"errors"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

func TestKeptTakesAGapForLostRecords(t *testing.T) {
	tests := []struct {
		name    string
		st      jetstream.StreamState
		refused bool // the stream's first writes refused on a full disk
		lost    bool
	}{
		{"empty", jetstream.StreamState{}, false, false},
		{"from 1 without a gap", jetstream.StreamState{FirstSeq: 1, LastSeq: 5, Msgs: 5}, false, false},
		{"a gap in the middle", jetstream.StreamState{FirstSeq: 1, LastSeq: 5, Msgs: 4}, false, true},
		{"its first record gone", jetstream.StreamState{FirstSeq: 2, LastSeq: 5, Msgs: 4}, false, true},
		{"its only record gone", jetstream.StreamState{FirstSeq: 2, LastSeq: 1}, false, true},
		{"first write refused, nothing since", jetstream.StreamState{FirstSeq: 2, LastSeq: 1}, true, false},
		{"first writes refused, records since", jetstream.StreamState{FirstSeq: 3, LastSeq: 7, Msgs: 5}, true, false},
		{"first writes refused, a gap since", jetstream.StreamState{FirstSeq: 3, LastSeq: 7, Msgs: 4}, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := kept("FV_WF", tt.st, tt.refused)
			if lost := errors.Is(err, ErrLogLost); lost != tt.lost || (err != nil) != lost {
				t.Fatalf("kept(%+v, refused %v) = %v; want lost %v", tt.st, tt.refused, err, tt.lost)
			}
		})
	}
}
