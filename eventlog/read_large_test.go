package eventlog_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas"
)

// A subject whose records add up to more than 64 MiB reads whole, every
// time: a direct-get batch that the server capped only at its max_pending
// (64 MiB) made it close the engine's connection as a slow consumer, and
// the read then hung, or (the reply inbox subscribed again on
// reconnection) returned the records before and after a gap, with no
// error.
func TestReadSubjectOfLargeRecords(t *testing.T) {
	l := testutil.OpenLog(t, "")
	// The bounds catch a read that hangs; under the race detector on a
	// loaded machine a whole read of 80 MiB took more than 30 s.
	ctx := testutil.Context(t, 10*time.Minute)
	subj := "fv.wf.big"
	big := strings.Repeat("x", 2<<20) // 2 MiB a record
	var seq uint64
	const n = 40 // 80 MiB on the subject
	for i := range n {
		env, err := schemas.Default.Encode(&testutil.Note{Text: big, N: i})
		if err != nil {
			t.Fatal(err)
		}
		env.ID = fmt.Sprintf("big-%d", i)
		if seq, err = l.Append(ctx, subj, []schemas.Envelope{env}, seq); err != nil {
			t.Fatal(err)
		}
	}
	var failures []string
	for try := range 4 {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		recs, err := l.ReadSubject(rctx, subj, 0)
		cancel()
		var seqs []uint64
		gap := false
		for i, r := range recs {
			seqs = append(seqs, r.Seq)
			if i > 0 && r.Seq != recs[i-1].Seq+1 {
				gap = true
			}
		}
		switch {
		case err != nil:
			failures = append(failures, fmt.Sprintf("read %d: %v", try, err))
		case len(recs) != n || gap:
			failures = append(failures, fmt.Sprintf("read %d: nil error but %d of %d records, seqs %v", try, len(recs), n, seqs))
		}
	}
	if rc := l.Conn().Reconnects; rc > 0 {
		failures = append(failures, fmt.Sprintf("the engine's connection was dropped %d times", rc))
	}
	if len(failures) > 0 {
		t.Fatalf("%d of 4 reads wrong:\n%s", len(failures), strings.Join(failures, "\n"))
	}
}
