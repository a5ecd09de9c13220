package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/projections"
	"github.com/flowvault/flowvault/schemas"
)

const publishers = 32

type benchEvent struct {
	N int `msgpack:"n"`
}

func (*benchEvent) EventType() string { return "bench.event" }

func init() { schemas.Default.Register(&benchEvent{}, 1) }

func openLog(ctx context.Context, dir string, fsync eventlog.FsyncMode, groupCommit bool) (*eventlog.Log, error) {
	cfg := eventlog.DefaultConfig()
	cfg.StoreDir, cfg.Listen, cfg.Fsync, cfg.GroupCommit = dir, "", fsync, groupCommit // in-process only
	return eventlog.Open(ctx, cfg, eventlog.Options{})
}

func envelope(id string, n int) schemas.Envelope {
	env, _ := schemas.Default.Encode(&benchEvent{N: n})
	env.ID, env.Time = id, time.Now().UnixNano()
	return env
}

// throughput runs fn from 32 goroutines for d and returns calls per second.
// Each goroutine appends to its own subjects, 4 records per subject, the
// shape of a short workflow.
func throughput(d time.Duration, fn func(p, i int, expected uint64) (uint64, error)) (float64, error) {
	var n atomic.Int64
	var wg sync.WaitGroup
	var firstErr atomic.Value
	deadline := time.Now().Add(d)
	for p := 0; p < publishers; p++ {
		wg.Add(1)
		go func(p int) {
			defer wg.Done()
			var seq uint64
			for i := 0; time.Now().Before(deadline); i++ {
				if i%4 == 0 {
					seq = 0
				}
				s, err := fn(p, i, seq)
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				seq = s
				n.Add(1)
			}
		}(p)
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return 0, err
	}
	return float64(n.Load()) / d.Seconds(), nil
}

// The variants of the append benchmark: what eventlog.Append adds to a
// publish, with and without group commit. These 32 publishers each wait
// for their append, too few to fill a batch (minBatch): group commit must
// cost them nothing.
var appendVariants = []struct {
	mode        eventlog.FsyncMode
	groupCommit bool
	label, note string
}{
	{eventlog.FsyncAlways, false, "eventlog.Append, group commit off", "(target >= 0.90)"},
	{eventlog.FsyncAlways, true, "eventlog.Append, group commit (the default)", "(target >= 0.90)"},
	{eventlog.FsyncRelaxed, false, "eventlog.Append", "(target >= 0.90)"},
}

func benchEventlog(ctx context.Context, o opts) error {
	for _, v := range appendVariants {
		mode := v.mode
		dir, err := os.MkdirTemp("", "fvbench-log")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		l, err := openLog(ctx, dir, mode, v.groupCommit)
		if err != nil {
			return err
		}
		js := l.JetStream()
		record, _ := schemas.EncodeRecord([]schemas.Envelope{envelope("x", 1)})
		run := 0
		raw := func(p, i int, expected uint64) (uint64, error) {
			msg := &nats.Msg{Subject: fmt.Sprintf("fv.wf.raw%d-%d-%d", run, p, i/4), Data: record, Header: nats.Header{}}
			msg.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("raw%d-%d-%d", run, p, i))
			msg.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(expected, 10))
			ack, err := js.PublishMsg(ctx, msg)
			if err != nil {
				return 0, err
			}
			return ack.Sequence, nil
		}
		appendFn := func(p, i int, expected uint64) (uint64, error) {
			id := fmt.Sprintf("log%d-%d-%d", run, p, i)
			return l.Append(ctx, fmt.Sprintf("fv.wf.log%d-%d-%d", run, p, i/4), []schemas.Envelope{envelope(id, i)}, expected)
		}
		// Interleave so that drift (page cache, compaction) hits both alike.
		var rawRate, logRate float64
		for run = 0; run < 2; run++ {
			r, err := throughput(o.duration/2, raw)
			if err != nil {
				return fmt.Errorf("raw: %w", err)
			}
			a, err := throughput(o.duration/2, appendFn)
			if err != nil {
				return fmt.Errorf("append: %w", err)
			}
			rawRate, logRate = rawRate+r/2, logRate+a/2
		}
		l.Close()
		fmt.Printf("fsync=%-7s raw JetStream publish (expected-last-subject-seq, %d publishers): %8.0f appends/s\n", mode, publishers, rawRate)
		fmt.Printf("fsync=%-7s %-60s: %8.0f appends/s  ratio %.2f %s\n", mode, v.label, logRate, logRate/rawRate, v.note)
	}
	return nil
}

// noopProjection writes one small key per event: the cost of a real
// projection's bookkeeping without its domain logic.
type counterProjection struct{}

func (counterProjection) Name() string { return "bench" }

func (counterProjection) Apply(b *projections.Batch, rec eventlog.Record) error {
	for _, env := range rec.Events {
		if err := b.Set([]byte(env.ID), []byte{1}); err != nil {
			return err
		}
	}
	return nil
}

func benchReplay(ctx context.Context, o opts) error {
	dir, err := os.MkdirTemp("", "fvbench-replay")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	// Loading is not what is measured: write relaxed and asynchronously.
	l, err := openLog(ctx, filepath.Join(dir, "nats"), eventlog.FsyncRelaxed, false)
	if err != nil {
		return err
	}
	defer l.Close()
	js := l.JetStream()
	start := time.Now()
	for i := 0; i < o.events; i++ {
		rec, _ := schemas.EncodeRecord([]schemas.Envelope{envelope(fmt.Sprintf("e%09d", i), i)})
		if _, err := js.PublishAsync(fmt.Sprintf("fv.wf.r%d", i%1000), rec); err != nil {
			return err
		}
		if i%10000 == 0 {
			<-js.PublishAsyncComplete()
		}
	}
	<-js.PublishAsyncComplete()
	last, err := l.StreamLastSeq(ctx, eventlog.Workflows.Name)
	if err != nil {
		return err
	}
	fmt.Printf("loaded %d events in %s\n", o.events, time.Since(start).Round(time.Millisecond))

	store, err := projections.OpenStore(filepath.Join(dir, "pebble"), projections.StoreOptions{})
	if err != nil {
		return err
	}
	defer store.Close()
	r := projections.NewRunner(l, store, counterProjection{}, projections.RunnerConfig{Stream: eventlog.Workflows.Name})
	rctx, cancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	start = time.Now()
	go func() { errc <- r.Run(rctx) }()
	if err := r.WaitFor(ctx, last); err != nil {
		cancel()
		return err
	}
	elapsed := time.Since(start)
	cancel()
	if err := <-errc; err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	fmt.Printf("projection replay into pebble: %d events in %s = %8.0f events/s (target >= 150000)\n",
		o.events, elapsed.Round(time.Millisecond), float64(o.events)/elapsed.Seconds())
	return nil
}
