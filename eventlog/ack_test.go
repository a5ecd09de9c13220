package eventlog

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

// Acknowledgements read by hand read as encoding/json reads them, and
// every other shape goes to encoding/json.
func TestParsePubAck(t *testing.T) {
	tests := []struct {
		in    string
		plain bool // read by hand
	}{
		{`{"stream":"FV_WF","seq":1}`, true},
		{`{"stream":"FV_WF","seq":18446744073709551615}`, true},
		{`{"stream":"FV_WF","seq":42,"duplicate": true}`, false},
		{`{"stream":"FV_WF","domain":"hub","seq":7}`, false},
		{`{"stream":"FV_WF","seq":7,"batch":"b1","count":3}`, false},
		{`{"stream":"F\"V","seq":7}`, false},
		{`{"error":{"code":400,"err_code":10071,"description":"wrong last sequence: 5"},"stream":"FV_WF","seq":0}`, false},
		{`{"stream":"FV_WF","seq":-1}`, false},
		{`{"stream":"FV_WF","seq":}`, false},
		{`{"stream":"","seq":3}`, false},
		{`{"stream":"FV_WF","seq":3} `, false},
	}
	for _, tt := range tests {
		_, plain := parsePlainAck([]byte(tt.in))
		if plain != tt.plain {
			t.Errorf("%s: read by hand %v, want %v", tt.in, plain, tt.plain)
		}
		got, err := parsePubAck([]byte(tt.in))
		var want pubAck
		wantErr := json.Unmarshal([]byte(tt.in), &want)
		if (err != nil) != (wantErr != nil) {
			t.Errorf("%s: error %v, encoding/json says %v", tt.in, err, wantErr)
			continue
		}
		if err != nil {
			if !errors.Is(err, jetstream.ErrInvalidJSAck) {
				t.Errorf("%s: %v, want ErrInvalidJSAck", tt.in, err)
			}
			continue
		}
		if got.Stream != want.Stream || got.Seq != want.Seq || got.Duplicate != want.Duplicate ||
			(got.Error == nil) != (want.Error == nil) || got.Error != nil && *got.Error != *want.Error {
			t.Errorf("%s: %+v, encoding/json reads %+v", tt.in, got, want)
		}
	}
}

func FuzzParsePubAck(f *testing.F) {
	f.Add(`{"stream":"FV_WF","seq":12}`)
	f.Add(`{"stream":"FV_WF","seq":42,"duplicate": true}`)
	f.Fuzz(func(t *testing.T, in string) {
		got, ok := parsePlainAck([]byte(in))
		if !ok {
			return
		}
		var want pubAck
		if err := json.Unmarshal([]byte(in), &want); err != nil || got.Stream != want.Stream || got.Seq != want.Seq || want.Duplicate || want.Error != nil {
			t.Fatalf("%q read by hand as %+v; encoding/json: %+v, %v", in, got, want, err)
		}
	})
}
