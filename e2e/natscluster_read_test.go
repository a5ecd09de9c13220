package e2e_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas"
)

// openClusterLog opens the event log through server i, as an engine with
// replicas 3.
func (c *natsCluster) openClusterLog(i int) *eventlog.Log {
	c.t.Helper()
	cfg := eventlog.DefaultConfig()
	cfg.URL, cfg.User, cfg.Password = c.servers[i].ClientURL(), clusterEngineUser, clusterEnginePass
	cfg.Replicas = 3
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := eventlog.Open(ctx, cfg, eventlog.Options{Logger: testutil.Logger(c.t)})
	if err != nil {
		c.t.Fatalf("open the log through server %d: %v", i, err)
	}
	c.t.Cleanup(func() { l.Close() })
	return l
}

// A record appended through the stream's leader is read at once through a
// follower's server, whose replica answers direct gets and may not have
// applied it yet: every read returns it (without the reads' end at the
// leader, 96 to 444 of the 800 missed it).
func TestNATSClusterReadsAfterWrite(t *testing.T) {
	c := startNATSCluster(t)
	c.openClusterLog(0) // makes the streams
	leader := c.leaderOf(eventlog.Workflows.Name)
	if leader < 0 {
		t.Fatal("FV_WF has no leader")
	}
	w := c.openClusterLog(leader)
	r := c.openClusterLog((leader + 1) % 3)
	ctx := testutil.Context(t, 2*time.Minute)
	// Eight at a time: a follower lags behind a busy leader.
	const workers, each = 8, 100
	var stale atomic.Int64
	var wg sync.WaitGroup
	for g := range workers {
		wg.Go(func() {
			for i := range each {
				if check(ctx, t, w, r, fmt.Sprintf("fv.wf.raw-%d-%d", g, i)) {
					stale.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if n := stale.Load(); n > 0 {
		t.Errorf("%d of %d reads through server %d (a follower of FV_WF) missed a record acknowledged by the leader", n, workers*each, (leader+1)%3)
	}
}

// check appends to subj through w and reads it at once through r; it
// reports whether a read missed an acknowledged record.
func check(ctx context.Context, t *testing.T, w, r *eventlog.Log, subj string) bool {
	{
		env, err := schemas.Default.Encode(&testutil.Note{Text: subj})
		if err != nil {
			t.Error(err)
			return false
		}
		env.ID = subj
		seq, err := w.Append(ctx, subj, []schemas.Envelope{env}, 0)
		if err != nil {
			t.Error(err)
			return false
		}
		var problems []string
		recs, err := r.ReadSubject(ctx, subj, 0)
		if err != nil || len(recs) != 1 || recs[0].Seq != seq {
			problems = append(problems, fmt.Sprintf("read: %d records, %v", len(recs), err))
		}
		if first, found, err := r.FirstRecord(ctx, subj); err != nil || !found || first.Seq != seq {
			problems = append(problems, fmt.Sprintf("first record found %v, %v", found, err))
		}
		if last, err := r.LastSeq(ctx, subj); err != nil || last != seq {
			problems = append(problems, fmt.Sprintf("last sequence %d, %v", last, err))
		}
		var scanned []uint64
		err = r.Scan(ctx, eventlog.ScanOptions{Subject: subj}, func(rec eventlog.Record) error {
			scanned = append(scanned, rec.Seq)
			return nil
		})
		if err != nil || len(scanned) != 1 || scanned[0] != seq {
			problems = append(problems, fmt.Sprintf("scan: sequences %v, %v", scanned, err))
		}
		env.ID = subj + "-2"
		seq2, err := w.Append(ctx, subj, []schemas.Envelope{env}, seq)
		if err != nil {
			t.Error(err)
			return false
		}
		if recs, err := r.ReadSubject(ctx, subj, seq); err != nil || len(recs) != 1 || recs[0].Seq != seq2 {
			problems = append(problems, fmt.Sprintf("read after %d: %d records, %v", seq, len(recs), err))
		}
		if len(problems) > 0 {
			t.Logf("%s #%d: %v", subj, seq, problems)
		}
		return len(problems) > 0
	}
}
