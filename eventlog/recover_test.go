//go:build linux

package eventlog_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas"
)

// A stream whose store failed a write on a full disk takes appends again
// once the disk has room, without a restart of the process: the log
// restarts the embedded server's store from its files, checks its streams
// as after a reconnection (the records acknowledged before are there),
// makes FV_DISPATCH again and runs the OnReconnect hooks, and counts the
// restart. A key-value bucket that failed with it takes puts again too,
// which, guarded (GuardWrite), it refused as the log refused appends.
func TestStoreRestartsOnceTheDiskHasRoom(t *testing.T) {
	disk, child := testutil.SmallDisk(t, 32<<20)
	if !child {
		return
	}
	reg := prometheus.NewRegistry()
	l, err := eventlog.Open(testutil.Context(t, 30*time.Second), testutil.LogConfig(filepath.Join(disk, "nats")),
		eventlog.Options{Logger: testutil.Logger(t), Metrics: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var hooks atomic.Int32
	l.OnReconnect(func(context.Context) { hooks.Add(1) })
	ctx := testutil.Context(t, 4*time.Minute)

	acked := map[string]uint64{}
	appendOne := func(i int) error {
		env, err := schemas.Default.Encode(&testutil.Note{Text: strings.Repeat("x", 4<<10), N: i})
		if err != nil {
			t.Fatal(err)
		}
		env.ID = fmt.Sprintf("rec-%d", i)
		subject := fmt.Sprintf("fv.wf.rec%d", i)
		seq, err := l.Append(ctx, subject, []schemas.Envelope{env}, 0)
		if err == nil {
			acked[subject] = seq
		}
		return err
	}
	for i := range 5 {
		if err := appendOne(i); err != nil {
			t.Fatalf("append %d with room: %v", i, err)
		}
	}
	if got := testutil.MetricValue(t, reg, "flowvault_eventlog_store_bytes", nil); got <= 0 {
		t.Errorf("flowvault_eventlog_store_bytes = %v with 5 records stored", got)
	}
	if got := testutil.MetricValue(t, reg, "flowvault_eventlog_store_max_bytes", nil); got <= 0 {
		t.Errorf("flowvault_eventlog_store_max_bytes = %v", got)
	}

	// A key-value bucket's stream fails and comes back with the others.
	kv, err := l.JetStream().CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "recover"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "before", []byte("kept")); err != nil {
		t.Fatal(err)
	}

	filler := filepath.Join(disk, "filler")
	testutil.FillDisk(t, filler, 64<<10)
	i := 5
	for ; ; i++ {
		if i == 1000 {
			t.Fatal("1000 appends on a full disk and none refused")
		}
		err := appendOne(i)
		if err == nil {
			continue
		}
		if !errors.Is(err, eventlog.ErrNoStorage) || !errors.Is(err, fault.ErrUnavailable) {
			t.Fatalf("append %d on a full disk: %v; want ErrNoStorage, unavailable", i, err)
		}
		break
	}
	// Guarded, a put to the bucket fails as an append does: the one
	// nobody answers saying the store failed, not only that it timed
	// out, once the store is found failed (not when the minute its
	// caller gave it runs out), and those after it at once.
	expired := false // the last put's time ran out
	put := func(key string) error {
		pctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		err := l.GuardWrite(pctx, "KV_recover", func(ctx context.Context) error {
			_, err := kv.Put(ctx, key, []byte(strings.Repeat("v", 4<<10)))
			return err
		})
		expired = pctx.Err() != nil
		return err
	}
	for j := 0; ; j++ {
		if j == 100 {
			t.Fatal("100 puts to a bucket on a full disk and none refused")
		}
		err := put(fmt.Sprintf("full%d", j))
		if err == nil {
			continue
		}
		if !errors.Is(err, eventlog.ErrNoStorage) || !strings.Contains(err.Error(), "KV_recover") {
			t.Fatalf("put %d to a bucket on a full disk: %v; want ErrNoStorage, naming its stream", j, err)
		}
		if expired {
			t.Fatalf("put %d to a bucket on a full disk waited out the minute it was given: %v", j, err)
		}
		t.Logf("put %d to a bucket on a full disk: %v", j, err)
		break
	}
	if err := put("refused"); !errors.Is(err, eventlog.ErrNoStorage) || errors.Is(err, eventlog.ErrStoreFailed) ||
		!strings.Contains(err.Error(), "stream KV_recover failed a write and stores nothing until its disk has room again") {
		t.Fatalf("a put to the bucket after its store failed: %v; want ErrNoStorage at once, until the disk has room", err)
	}
	if err := l.StorageError(ctx); err == nil || !strings.Contains(err.Error(), "it restarts by itself once the disk has room") {
		t.Fatalf("StorageError on a full disk = %v; want the write error, saying it restarts by itself", err)
	}
	if err := appendOne(i + 1); !errors.Is(err, eventlog.ErrNoStorage) || !strings.Contains(err.Error(), "until its disk has room again") {
		t.Fatalf("an append to the failed stream: %v; want ErrNoStorage, until the disk has room", err)
	}
	if got := testutil.MetricValue(t, reg, "flowvault_eventlog_store_restarts_total", nil); got != 0 {
		t.Fatalf("store restarts while the disk is full: %v", got)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 2*time.Minute, 200*time.Millisecond, func() error {
		return appendOne(i + 2)
	})
	if err := l.StorageError(ctx); err != nil {
		t.Errorf("StorageError once the store restarted: %v", err)
	}
	if err := put("after"); err != nil {
		t.Errorf("a put to the bucket once the store restarted: %v", err)
	}
	if e, err := kv.Get(ctx, "before"); err != nil || string(e.Value()) != "kept" {
		t.Errorf("the bucket's entry put before the disk filled: %v", err)
	}
	if got := testutil.MetricValue(t, reg, "flowvault_eventlog_store_restarts_total", nil); got != 1 {
		t.Errorf("flowvault_eventlog_store_restarts_total = %v, want 1", got)
	}
	// Appends go on once the streams are checked; FV_DISPATCH is made
	// again, and the hooks run, after that (restoreLoop), a moment
	// later on a busy machine.
	testutil.Eventually(t, time.Minute, 100*time.Millisecond, func() error {
		if got := hooks.Load(); got != 1 {
			return fmt.Errorf("the OnReconnect hooks ran %d times after the store's restart, want 1", got)
		}
		if _, err := l.JetStream().Stream(ctx, eventlog.Dispatch.Name); err != nil {
			return fmt.Errorf("%s, kept in memory, after the store's restart: %v", eventlog.Dispatch.Name, err)
		}
		return nil
	})
	if got := hooks.Load(); got != 1 {
		t.Errorf("the OnReconnect hooks ran %d times after the store's restart, want 1", got)
	}
	for subject, seq := range acked {
		recs, err := l.ReadSubject(ctx, subject, 0)
		if err != nil || len(recs) != 1 || recs[0].Seq != seq {
			t.Errorf("%s, acknowledged at %d: %d records (%v)", subject, seq, len(recs), err)
		}
	}
}

// A stream whose first write the server refused on a full disk comes back
// beginning at sequence 2: the refused write took 1. The log acknowledged
// nothing of it, so nothing is lost, and it goes on once the disk has
// room, and opens again after a restart, where the check of its streams
// stopped it (and, at the next start, refused it, telling the operator to
// restore a backup).
func TestFirstWriteRefusedOnAFullDiskLosesNothing(t *testing.T) {
	disk, child := testutil.SmallDisk(t, 32<<20)
	if !child {
		return
	}
	cfg := testutil.LogConfig(filepath.Join(disk, "nats"))
	open := func() *eventlog.Log {
		l, err := eventlog.Open(testutil.Context(t, 30*time.Second), cfg, eventlog.Options{Logger: testutil.Logger(t)})
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		return l
	}
	l := open()
	ctx := testutil.Context(t, 4*time.Minute)
	appendOne := func(l *eventlog.Log, i int) (uint64, error) {
		env, err := schemas.Default.Encode(&testutil.Note{Text: "first", N: i})
		if err != nil {
			t.Fatal(err)
		}
		env.ID = fmt.Sprintf("first-%d", i)
		return l.Append(ctx, fmt.Sprintf("fv.wf.first%d", i), []schemas.Envelope{env}, 0)
	}

	filler := filepath.Join(disk, "filler")
	testutil.FillDisk(t, filler, 0)
	if _, err := appendOne(l, 0); !errors.Is(err, eventlog.ErrNoStorage) {
		t.Fatalf("the first append, on a full disk: %v; want ErrNoStorage", err)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	var seq uint64
	testutil.Eventually(t, 2*time.Minute, 200*time.Millisecond, func() error {
		var err error
		seq, err = appendOne(l, 1)
		if errors.Is(err, eventlog.ErrLogLost) {
			t.Fatalf("the log stopped once the disk had room: %v", err)
		}
		return err
	})
	if err := l.Err(); err != nil {
		t.Fatalf("the log once the disk had room: %v", err)
	}
	if seq < 2 {
		t.Fatalf("the append after the disk had room took sequence %d: the refused write took none, and this test shows nothing", seq)
	}
	l.Close()

	l = open()
	defer l.Close()
	if err := l.CheckKept(ctx, eventlog.Workflows.Name); err != nil {
		t.Fatalf("the stream after a restart: %v", err)
	}
	recs, err := l.ReadSubject(ctx, "fv.wf.first1", 0)
	if err != nil || len(recs) != 1 || recs[0].Seq != seq {
		t.Fatalf("the record acknowledged at %d after a restart: %d records (%v)", seq, len(recs), err)
	}
	if _, err := appendOne(l, 2); err != nil {
		t.Fatalf("an append after the restart: %v", err)
	}
}
