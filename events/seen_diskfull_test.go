//go:build linux

package events

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/internal/testutil"
)

// An action's claim on a bucket whose store failed a write on a full disk
// fails once the store is found failed, leaving the event's actions most
// of their time to run unrecorded, and the claims after it fail at once;
// once the disk has room, claims are recorded again. Unguarded, the claim
// waited out the time of the event's actions (actionTimeout), and the
// action, run then, failed for want of it.
func TestClaimOnAFullDisk(t *testing.T) {
	l, disk, child := testutil.SmallDiskLog(t, 32<<20, nil)
	if !child {
		return
	}
	ctx := testutil.Context(t, 4*time.Minute)
	s, err := OpenSeen(ctx, l.JetStream(), 1, l, testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	// As an event's actions get it.
	expired := false
	claimOne := func(key string) error {
		actx, cancel := context.WithTimeout(ctx, actionTimeout)
		defer cancel()
		_, _, err := s.claim(actx, key)
		expired = actx.Err() != nil
		return err
	}
	if err := claimOne("room"); err != nil {
		t.Fatalf("a claim with room: %v", err)
	}

	filler := filepath.Join(disk, "filler")
	testutil.FillDisk(t, filler, 0)
	err = testutil.UntilRefused(t, "claim", func(i int) error { return claimOne(fmt.Sprintf("full-%d", i)) })
	if !errors.Is(err, eventlog.ErrNoStorage) {
		t.Fatalf("a claim on a full disk: %v; want ErrNoStorage", err)
	}
	if expired {
		t.Fatalf("a claim on a full disk took all the time of the event's actions: %v", err)
	}
	if err := claimOne("refused"); !errors.Is(err, eventlog.ErrNoStorage) ||
		!strings.Contains(err.Error(), "stream KV_"+SeenBucket+" failed a write and stores nothing until its disk has room again") {
		t.Fatalf("a claim after the bucket's store failed: %v; want ErrNoStorage at once", err)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 2*time.Minute, 200*time.Millisecond, func() error {
		return claimOne("room-again")
	})
	if _, found, err := s.claim(ctx, "room-again"); err != nil || found != claimElsewhere {
		t.Fatalf("the claim recorded once the disk has room: %v (%v), want it held", found, err)
	}
}
