package eventlog_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/internal/testutil"
)

// Scan reads across batches, filters by subject (wildcards too), starts at
// a stored time and stops at a sequence or at fn's error.
func TestScan(t *testing.T) {
	t.Parallel()
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, 60*time.Second)
	const n = 600 // more than two direct-get batches
	seqs := make([]uint64, n)
	for i := range seqs {
		subj := "fv.wf.even"
		if i%2 == 1 {
			subj = "fv.wf.odd"
		}
		var err error
		if seqs[i], err = l.Append(ctx, subj, notes(t, fmt.Sprintf("s%d", i), 1), eventlog.ExpectAny); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := l.Append(ctx, "fv.meta.wfdef.x", notes(t, "other-stream", 1), 0); err != nil {
		t.Fatal(err)
	}
	all, err := l.ReadSubject(ctx, "fv.wf.even", 0)
	if err != nil {
		t.Fatal(err)
	}
	mid := all[len(all)/2] // its stored time is the Since of a case

	errStop := errors.New("stop")
	tests := []struct {
		name      string
		opts      eventlog.ScanOptions
		stopAfter int // fn fails on this record (0: never)
		first     uint64
		count     int
		err       error
	}{
		{"whole stream", eventlog.ScanOptions{Subject: "fv.wf.>"}, 0, seqs[0], n, nil},
		{"one subject", eventlog.ScanOptions{Subject: "fv.wf.odd"}, 0, seqs[1], n / 2, nil},
		{"since a stored time", eventlog.ScanOptions{Subject: "fv.wf.even", Since: mid.Time}, 0, mid.Seq, n / 4, nil},
		{"up to a sequence", eventlog.ScanOptions{Subject: "fv.wf.>", UpTo: seqs[299]}, 0, seqs[0], 300, nil},
		{"since the future", eventlog.ScanOptions{Subject: "fv.wf.>", Since: time.Now().Add(time.Hour)}, 0, 0, 0, nil},
		{"fn stops it", eventlog.ScanOptions{Subject: "fv.wf.>"}, 10, seqs[0], 10, errStop},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []uint64
			err := l.Scan(ctx, tt.opts, func(r eventlog.Record) error {
				if r.Err != nil {
					t.Fatalf("record %d: %v", r.Seq, r.Err)
				}
				got = append(got, r.Seq)
				if len(got) == tt.stopAfter {
					return errStop
				}
				return nil
			})
			if !errors.Is(err, tt.err) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if len(got) != tt.count || (tt.count > 0 && got[0] != tt.first) {
				t.Fatalf("scanned %d records from %v, want %d from %d", len(got), got[:min(len(got), 1)], tt.count, tt.first)
			}
			for i := 1; i < len(got); i++ {
				if got[i] <= got[i-1] {
					t.Fatalf("out of order at %d", i)
				}
			}
		})
	}
	if err := l.Scan(ctx, eventlog.ScanOptions{Subject: "nope.>"}, func(eventlog.Record) error { return nil }); !errors.Is(err, eventlog.ErrInvalidSubject) {
		t.Fatalf("scan outside the streams = %v", err)
	}
}
