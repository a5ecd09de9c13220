package e2e_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas"
)

// A follower (what a read model reads the log with) on a cluster whose
// consumer is held by another server than its own says it is lost
// (ErrFollowerLost) once that server has shut down, before any record
// appended after: its consumer went with the server, and the follower
// made again after its last record has every record once and in order.
// It notices by two missed 1 s heartbeats, about 2 s. Broken, nats.go's
// ordered consumer noticed by two missed 5 s heartbeats (the server's
// "409 Server Shutdown" is only noted) and made its consumer again
// itself: the records came 10 s after the shutdown, and a read model
// never heard (on a dead server's, the making never ended).
func TestNATSClusterFollowerOutlivesItsConsumersServer(t *testing.T) {
	c := startNATSCluster(t)
	l := c.openClusterLog(1)
	c.leadMeta(1)
	c.leadAll(1)
	ctx := testutil.Context(t, 2*time.Minute)
	stream, err := c.jsAPI().Stream(ctx, eventlog.Metadata.Name)
	if err != nil {
		t.Fatal(err)
	}
	var seqs []uint64
	appendOne := func(i int) {
		t.Helper()
		seq, err := l.Append(ctx, fmt.Sprintf("fv.meta.follow-%d", i),
			[]schemas.Envelope{testutil.NoteEnvelope(t, fmt.Sprintf("follow-%d", i), i)}, 0)
		if err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
		seqs = append(seqs, seq)
	}
	appendOne(0)

	// Its consumer goes where the meta leader puts it: follow again until
	// it is on another server than the follower's own, and has given the
	// first record (on a loaded machine a follower is now and then lost
	// before it, two heartbeats missed; a read model's runner follows
	// again, as this does).
	var f *eventlog.Follower
	next := func(within time.Duration) (eventlog.Record, error) {
		wctx, cancel := context.WithTimeout(ctx, within)
		defer cancel()
		rec, _, err := f.Next(wctx)
		return rec, err
	}
	holder := -1
	for try := 0; holder < 0; try++ {
		if try == 30 {
			t.Fatal("every follower's consumer was put on server 1, or lost before its first record")
		}
		if f, err = l.Follow(ctx, eventlog.Metadata.Name, 0); err != nil {
			t.Fatal(err)
		}
		for info := range stream.ListConsumers(ctx).Info() {
			if info.Cluster == nil || info.Cluster.Leader == c.name(1) {
				continue
			}
			for i := range c.servers {
				if c.name(i) == info.Cluster.Leader {
					holder = i
				}
			}
		}
		if holder < 0 {
			f.Stop()
			continue
		}
		rec, err := next(10 * time.Second)
		switch {
		case errors.Is(err, eventlog.ErrFollowerLost):
			t.Logf("follower lost before its first record: %v", err)
			f.Stop()
			holder = -1
		case err != nil || rec.Seq != seqs[0]:
			t.Fatalf("first record %d (%v), want %d", rec.Seq, err, seqs[0])
		}
	}
	defer func() { f.Stop() }()

	t.Logf("server %d, which holds the follower's consumer, shuts down", holder)
	down := time.Now()
	c.servers[holder].Shutdown()
	c.servers[holder].WaitForShutdown()
	for i := 1; i <= 3; i++ {
		appendOne(i)
	}
	// Far above the 2 s it takes, far below never.
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	rec, _, err := f.Next(wctx)
	if !errors.Is(err, eventlog.ErrFollowerLost) {
		t.Fatalf("after the shutdown the follower gave record %d (%v), want it lost: its consumer went with the server", rec.Seq, err)
	}
	t.Logf("follower lost %s after the shutdown began: %v", time.Since(down).Round(time.Millisecond), err)
	f.Stop()
	if f, err = l.Follow(ctx, eventlog.Metadata.Name, seqs[0]); err != nil {
		t.Fatalf("follow again: %v", err)
	}
	for _, want := range seqs[1:] {
		if rec, err := next(30 * time.Second); err != nil || rec.Seq != want {
			t.Fatalf("record %d (%v) followed again, want %d", rec.Seq, err, want)
		}
	}
	t.Logf("the records appended after the shutdown followed %s after it began", time.Since(down).Round(time.Millisecond))
}
