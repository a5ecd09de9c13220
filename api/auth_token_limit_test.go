package api

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flowvault/flowvault/fault"
)

// One address spraying key ids is stopped by its own bucket, whatever the
// key ids; other addresses are not. A key's failures stop guesses on it
// from the address that failed, and no other: key ids are no secret, and
// anyone could otherwise lock a key's owner out.
func TestTokenLimiter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tl := newTokenLimiter(TokenLimits{PerAddr: 1, AddrBurst: 5, PerKey: 1, KeyBurst: 2})
	for i := range 5 {
		if err := tl.allow("10.0.0.1", "key-"+strconv.Itoa(i), now); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	err := tl.allow("10.0.0.1", "key-new", now)
	var rl *rateLimitedError
	if !errors.Is(err, fault.ErrRateLimited) || !errors.As(err, &rl) || !strings.Contains(err.Error(), "token requests from 10.0.0.1") || rl.seconds() < 1 {
		t.Fatalf("sixth request from one address: %v", err)
	}
	if err := tl.allow("10.0.0.2", "key-new", now); err != nil {
		t.Fatalf("another address: %v", err)
	}
	// Failures are charged to the key and address, successes are not.
	tl.failed("10.0.0.3", "key-x", now)
	tl.failed("10.0.0.3", "key-x", now)
	if err := tl.allow("10.0.0.3", "key-x", now); err == nil || !strings.Contains(err.Error(), "failed token requests for this key from 10.0.0.3") {
		t.Fatalf("a key after its failure budget: %v", err)
	}
	if err := tl.allow("10.0.0.3", "key-y", now); err != nil {
		t.Fatalf("another key: %v", err)
	}
	if err := tl.allow("10.0.0.4", "key-x", now); err != nil {
		t.Fatalf("the key from another address: %v", err)
	}
	if err := tl.allow("10.0.0.1", "key-new", now.Add(time.Second)); err != nil {
		t.Fatalf("the address a second later: %v", err)
	}
}
