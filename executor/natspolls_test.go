package executor

import "testing"

// One worker's credentials hold at most their share of the poll slots:
// the rest stay for others; the engines' own account is bounded by the
// total alone.
func TestNATSPollsShare(t *testing.T) {
	p := natsPolls{slots: make(chan struct{}, 5), perOwner: 2}
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
	if p.byOwner["nats:C"] != 0 {
		t.Fatalf("a refused hold still counts: %v", p.byOwner)
	}
	p.release("nats:A")
	if !p.hold("nats:A") {
		t.Fatal("a released slot is not A's again")
	}
	p.release("nats:B")
	if _, held := p.byOwner["nats:B"]; held {
		t.Fatalf("B holds nothing and is still counted: %v", p.byOwner)
	}
}

// The poll slots of every credentials one principal holds count against
// that principal's one share: credentials issued by the hundred take no
// more of the slots than one.
func TestNATSPollsShareByPrincipal(t *testing.T) {
	owners := map[string]string{"nats:A1": "principal:a", "nats:A2": "principal:a", "nats:A3": "principal:a", "nats:B1": "principal:b"}
	e := &Executor{}
	e.natsPolls = natsPolls{slots: make(chan struct{}, 4), perOwner: 2}
	e.SetPollOwner(func(taker string) string { return owners[taker] })
	for i, tc := range []struct {
		taker string
		want  bool
	}{
		{"nats:A1", true}, {"nats:A2", true}, {"nats:A3", false}, // a's share is full, whichever credentials ask
		{"nats:B1", true},      // b still polls
		{"nats:unknown", true}, // unknown credentials: a share of their own
	} {
		if got := e.natsPolls.hold(e.ownerOf(tc.taker)); got != tc.want {
			t.Fatalf("hold %d (%q) = %v, want %v", i, tc.taker, got, tc.want)
		}
	}
	if e.ownerOf("") != "" {
		t.Fatal("the engines' own polls are owned by someone")
	}
	if maxNATSPollsPerOwner*10 > maxNATSPolls || maxNATSPollsPerOwner < 1000 {
		t.Fatalf("a principal's share %d of %d: want ten to fill them, and room for a fleet", maxNATSPollsPerOwner, maxNATSPolls)
	}
}
