package eventlog_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas"
)

// BenchmarkReadSubjectUpToDate reads a subject whose reader holds its last
// record already, as a SUB_WORKFLOW's start reads its parent after the
// fork's record (which holds every child's task) and the children's own
// records were appended: last is the size of that record, after the
// records of other subjects that follow it.
func BenchmarkReadSubjectUpToDate(b *testing.B) {
	for _, c := range []struct{ last, after int }{
		{1 << 10, 1000}, {100 << 10, 1000}, {1 << 20, 10000},
	} {
		b.Run(fmt.Sprintf("last=%dKiB/after=%d", c.last>>10, c.after), func(b *testing.B) {
			l := testutil.OpenLog(b, "")
			ctx := testutil.Context(b, 5*time.Minute)
			appendNote := func(subj string, text string, n int) uint64 {
				env, err := schemas.Default.Encode(&testutil.Note{Text: text, N: n})
				if err != nil {
					b.Fatal(err)
				}
				env.ID = fmt.Sprintf("%s-%d", subj, n)
				seq, err := l.Append(ctx, subj, []schemas.Envelope{env}, 0)
				if err != nil {
					b.Fatal(err)
				}
				return seq
			}
			seq := appendNote("fv.wf.parent", strings.Repeat("x", c.last), 0)
			small := strings.Repeat("y", 300)
			for i := range c.after {
				appendNote(fmt.Sprintf("fv.wf.child-%d", i), small, i)
			}
			b.ResetTimer()
			for b.Loop() {
				recs, err := l.ReadSubject(ctx, "fv.wf.parent", seq)
				if err != nil || len(recs) != 0 {
					b.Fatalf("read: %d records, %v", len(recs), err)
				}
			}
		})
	}
}

// A reader up to date with a subject learns it without the subject's
// last record: that record was fetched whole to compare sequences, a
// megabyte for a fork of a few thousand branches, by each of its children
// that read their parent.
func TestReadSubjectUpToDateFetchesNoRecord(t *testing.T) {
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, time.Minute)
	const subj = "fv.wf.parent"
	env, err := schemas.Default.Encode(&testutil.Note{Text: strings.Repeat("x", 1<<20)})
	if err != nil {
		t.Fatal(err)
	}
	env.ID = "fork"
	seq, err := l.Append(ctx, subj, []schemas.Envelope{env}, 0)
	if err != nil {
		t.Fatal(err)
	}
	before := l.Conn().InBytes
	for range 3 {
		recs, err := l.ReadSubject(ctx, subj, seq)
		if err != nil || len(recs) != 0 {
			t.Fatalf("read after %d: %d records, %v", seq, len(recs), err)
		}
	}
	if got := l.Conn().InBytes - before; got > 64<<10 {
		t.Errorf("three reads of an up-to-date subject received %d bytes: its 1 MiB record, fetched again", got)
	}
	// Behind, the reader gets the first record it lacks from that look,
	// and the rest from a batch, in order, each once.
	env.ID = "next"
	seq2, err := l.Append(ctx, subj, []schemas.Envelope{env}, seq)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := l.ReadSubject(ctx, subj, seq-1)
	if err != nil || len(recs) != 2 || recs[0].Seq != seq || recs[1].Seq != seq2 ||
		recs[0].MsgID == "" || recs[0].Err != nil || len(recs[0].Events) != 1 {
		t.Fatalf("read after %d: %d records, %v", seq-1, len(recs), err)
	}
}
