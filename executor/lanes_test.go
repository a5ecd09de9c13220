package executor

import (
	"testing"

	"github.com/flowvault/flowvault/workers"
)

func TestLaneNames(t *testing.T) {
	for _, tc := range []struct {
		taskType, domain string
		priority         int
		subject, name    string
	}{
		{"resize", "", 1, "fv.taskp.01.resize", "fvp01_resize"},
		{"resize", "eu", 42, "fv.taskp.42.resize.eu", "fvp42_resize@eu"},
		{"a.b", "x@y", 99, "fv.taskp.99.a%2Eb.x@y", "fvp99_a%2Eb@x%40y"},
	} {
		if got := laneSubject(tc.taskType, tc.domain, tc.priority); got != tc.subject {
			t.Errorf("laneSubject(%q, %q, %d) = %q, want %q", tc.taskType, tc.domain, tc.priority, got, tc.subject)
		}
		queue := workers.ConsumerName(tc.taskType, tc.domain)
		name := laneConsumer(queue, tc.priority)
		if name != tc.name {
			t.Errorf("laneConsumer(%q, %d) = %q, want %q", queue, tc.priority, name, tc.name)
		}
		if q, p, ok := parseLaneConsumer(name); !ok || q != queue || p != tc.priority {
			t.Errorf("parseLaneConsumer(%q) = %q, %d, %v", name, q, p, ok)
		}
	}
	for _, name := range []string{"fvq_resize", "fvp00_resize", "fvp1_resize", "fvpxx_resize", "fvp07resize", "fvp07_"} {
		if q, p, ok := parseLaneConsumer(name); ok {
			t.Errorf("parseLaneConsumer(%q) = %q, %d: want no lane", name, q, p)
		}
	}
}

func TestLanesOrder(t *testing.T) {
	l := newLanes()
	for _, p := range []int{7, 1, 99, 7, 30} {
		l.add("fvq_a", p)
	}
	held := l.of("fvq_a")
	l.remove("fvq_a", 30)
	if got := l.of("fvq_a"); len(got) != 3 || got[0] != 1 || got[1] != 7 || got[2] != 99 {
		t.Fatalf("lanes %v, want [1 7 99]", got)
	}
	if len(held) != 4 || held[2] != 30 {
		t.Fatalf("a removal changed a slice handed out: %v", held)
	}
	if len(l.of("fvq_b")) != 0 {
		t.Fatal("another queue has lanes")
	}
}

func TestLanesAddCopies(t *testing.T) {
	l := newLanes()
	l.add("fvq_a", 1)
	l.add("fvq_a", 50)
	l.remove("fvq_a", 50) // leaves room in the backing array
	held := l.of("fvq_a")
	l.add("fvq_a", 7)
	if full := held[:cap(held)]; len(held) != 1 || held[0] != 1 || len(full) > 1 && full[1] == 7 {
		t.Fatalf("an addition wrote into a slice handed out: %v", full)
	}
}
