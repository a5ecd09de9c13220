package executor

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// A line gives free places to the workflows queued longest, never more
// than its limit, and drops a workflow wherever it is.
func TestLinePromotesInStartOrder(t *testing.T) {
	t.Parallel()
	now := time.UnixMilli(1_000_000)
	l := wfLine{Limit: 2, Holders: []wfPlace{{W: "a"}, {W: "b"}}, Queue: []wfPlace{{W: "c"}, {W: "d"}, {W: "e"}}}
	if got := l.promote(now); len(got) != 0 {
		t.Fatalf("full line promoted %v", got)
	}
	l.drop("a")
	l.drop("d") // ended while queued
	if got := l.promote(now); !slices.Equal(got, []string{"c"}) {
		t.Fatalf("promoted %v, want [c]", got)
	}
	l.Limit = 4 // a later start's definition raised it
	if got := l.promote(now); !slices.Equal(got, []string{"e"}) {
		t.Fatalf("promoted %v, want [e]", got)
	}
	for _, w := range []string{"b", "c", "e"} {
		if held, queued := l.has(w); !held || queued {
			t.Fatalf("%s: held %v, queued %v", w, held, queued)
		}
	}
	if len(l.Queue) != 0 || len(l.Holders) != 3 {
		t.Fatalf("holders %v, queue %v", l.Holders, l.Queue)
	}
}

// A line's bucket key is a digest: the definition's name and the key's
// value (a tenant, a correlation id) are not kept in the clear.
func TestLineKeyIsADigest(t *testing.T) {
	t.Parallel()
	k := lineKey("orders", "tenant-acme")
	if strings.Contains(k, "orders") || strings.Contains(k, "acme") || !strings.HasPrefix(k, "w.") {
		t.Fatalf("line key %q", k)
	}
	if lineKey("orders", "a\x00b") == lineKey("orders\x00a", "b") || k == lineKey("orders", "tenant-acm") {
		t.Fatal("distinct lines share a key")
	}
}
