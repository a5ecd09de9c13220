package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"time"
)

// benchDisk measures the latency of a synced write where the benchmark's
// nodes keep their data: one 4 KiB write and fsync at a time, a few
// milliseconds apart, so that the disk is nearly idle. A durable append
// waits for such a sync, so the tail of this distribution is a floor
// under the engine's durable latency: each workflow waits for 4 of them,
// and a slow one holds every workflow in flight.
func benchDisk(ctx context.Context, _ opts) error {
	const (
		span = 10 * time.Second
		gap  = 5 * time.Millisecond
	)
	dir, err := os.MkdirTemp("", "fvbench-disk-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	f, err := os.Create(dir + "/probe")
	if err != nil {
		return err
	}
	defer f.Close()
	block := make([]byte, 4096)
	var lat []time.Duration
	for end := time.Now().Add(span); time.Now().Before(end) && ctx.Err() == nil; {
		start := time.Now()
		if _, err := f.Write(block); err != nil {
			return err
		}
		if err := f.Sync(); err != nil {
			return err
		}
		lat = append(lat, time.Since(start))
		time.Sleep(gap)
	}
	slices.Sort(lat)
	at := func(q float64) time.Duration { return lat[min(len(lat)-1, int(q*float64(len(lat))))] }
	round := func(d time.Duration) time.Duration { return d.Round(10 * time.Microsecond) }
	fmt.Printf("disk: %d synced 4 KiB writes, one every %s: p50 %s  p99 %s  p99.9 %s  max %s  (a floor under durable latency: 4 syncs a workflow)\n",
		len(lat), gap, round(at(0.5)), round(at(0.99)), round(at(0.999)), round(lat[len(lat)-1]))
	return nil
}
