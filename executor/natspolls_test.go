package executor

import "testing"

// One worker's credentials hold at most their share of the poll slots:
// the rest stay for others; the engines' own account is bounded by the
// total alone.
func TestNATSPollsShare(t *testing.T) {
	p := natsPolls{slots: make(chan struct{}, 5), perTaker: 2}
	for i, tc := range []struct {
		taker string
		want  bool
	}{
		{"nats:A", true}, {"nats:A", true}, {"nats:A", false}, // A's share is full
		{"nats:B", true},       // others still poll
		{"", true}, {"", true}, // 5 of 5 slots
		{"nats:C", false}, // no slot left
	} {
		if got := p.hold(tc.taker); got != tc.want {
			t.Fatalf("hold %d (%q) = %v, want %v", i, tc.taker, got, tc.want)
		}
	}
	if p.byTaker["nats:C"] != 0 {
		t.Fatalf("a refused hold still counts: %v", p.byTaker)
	}
	p.release("nats:A")
	if !p.hold("nats:A") {
		t.Fatal("a released slot is not A's again")
	}
	p.release("nats:B")
	if _, held := p.byTaker["nats:B"]; held {
		t.Fatalf("B holds nothing and is still counted: %v", p.byTaker)
	}
}
