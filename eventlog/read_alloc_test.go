package eventlog_test

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/flowvault/flowvault/internal/testutil"
)

// A read asks through the log's reply subscription. One of its own for
// each read (nats.go's SubscribeSync) made and zeroed a channel of 65,536
// messages, half a megabyte a read, which the engine's lookups of absent
// task definitions paid dozens of times a second in the benchmark.
//
// Not parallel: it counts the whole process's allocations, and parallel
// tests start only once the package's sequential ones are done.
func TestReadsAllocateLittle(t *testing.T) {
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, 30*time.Second)
	var seq uint64
	var err error
	for i := range 3 {
		if seq, err = l.Append(ctx, "fv.wf.small", notes(t, fmt.Sprintf("n%d", i), 1), seq); err != nil {
			t.Fatal(err)
		}
	}
	read := func() {
		if recs, err := l.ReadSubject(ctx, "fv.wf.small", 0); err != nil || len(recs) != 3 {
			t.Fatalf("read = %d records, %v", len(recs), err)
		}
	}
	read()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	const reads = 50
	for range reads {
		read()
	}
	runtime.ReadMemStats(&after)
	if per := (after.TotalAlloc - before.TotalAlloc) / reads; per > 128<<10 {
		t.Fatalf("a read of 3 small records allocated %d bytes, want under 128 KiB", per)
	}
}
