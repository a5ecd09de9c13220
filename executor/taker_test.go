package executor

import (
	"testing"

	"github.com/nats-io/nats.go"
)

// takerOf reads the user the NATS server names in the last
// Nats-Request-Info header: the server appends its own after any the
// sender set.
func TestTakerOf(t *testing.T) {
	tests := []struct {
		name  string
		infos []string
		want  string
	}{
		{"none", nil, ""},
		{"the server's", []string{`{"acc":"AW","rtt":1000,"user":"UABC","name":"w"}`}, "nats:UABC"},
		{"a forged one first", []string{`{"user":"UFORGED"}`, `{"acc":"AW","user":"UREAL"}`}, "nats:UREAL"},
		{"no user shared", []string{`{"acc":"AW","rtt":1000}`}, ""},
		{"empty user", []string{`{"user":""}`}, ""},
	}
	for _, tt := range tests {
		m := &nats.Msg{Header: nats.Header{}}
		for _, v := range tt.infos {
			m.Header.Add(requestInfoHeader, v)
		}
		if got := takerOf(m); got != tt.want {
			t.Errorf("%s: %q, want %q", tt.name, got, tt.want)
		}
	}
	if got := takerOf(&nats.Msg{}); got != "" {
		t.Errorf("no header: %q", got)
	}
}
