package eventlog_test

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas"
)

// lagFollower answers the direct gets sent to prefix as a follower that
// has applied the stream up to sequence upTo and no further: it passes
// each on to the server's direct get and withholds every message past
// upTo, ending the answer there as a replica that has nothing more would.
func lagFollower(t *testing.T, nc *nats.Conn, prefix string, upTo *atomic.Uint64) {
	t.Helper()
	sub, err := nc.Subscribe(prefix+">", func(m *nats.Msg) {
		go func() {
			inbox := nc.NewRespInbox()
			replies, err := nc.SubscribeSync(inbox)
			if err != nil {
				return
			}
			defer replies.Unsubscribe()
			if err := nc.PublishRequest(eventlog.DirectGetAPI+strings.TrimPrefix(m.Subject, prefix), inbox, m.Data); err != nil {
				return
			}
			var last uint64
			sent := 0
			for {
				r, err := replies.NextMsg(5 * time.Second)
				if err != nil {
					return
				}
				seq, _ := strconv.ParseUint(r.Header.Get(jetstream.SequenceHeader), 10, 64)
				if r.Header.Get("Status") != "" || seq <= upTo.Load() {
					_ = nc.PublishMsg(&nats.Msg{Subject: m.Reply, Header: r.Header, Data: r.Data})
					// A batch's messages name what is pending; a single
					// get's answer is one message.
					if r.Header.Get("Status") != "" || r.Header.Get("Nats-Num-Pending") == "" {
						return
					}
					last, sent = seq, sent+1
					continue
				}
				end := nats.NewMsg(m.Reply)
				if sent == 0 {
					end.Header.Set("Status", "404")
				} else {
					end.Header.Set("Status", "204")
					end.Header.Set("Nats-Num-Pending", "0")
					end.Header.Set(jetstream.LastSequenceHeader, strconv.FormatUint(last, 10))
				}
				_ = nc.PublishMsg(end)
				return
			}
		}()
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
}

// On a cluster a follower answers direct gets, maybe before it applied the
// newest acknowledged records: a subject's reads end at the stream's
// leader, and return every record acknowledged before them however far
// behind the answering replica is.
func TestReadsCatchUpWithTheLeader(t *testing.T) {
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, time.Minute)
	var upTo atomic.Uint64
	lagFollower(t, l.Conn(), "lag.DIRECT.GET.", &upTo)
	eventlog.LagDirectGets(l, "lag.DIRECT.GET.")

	const subj = "fv.wf.lagged"
	var seqs []uint64
	for i := range 6 {
		env, err := schemas.Default.Encode(&testutil.Note{Text: "x", N: i})
		if err != nil {
			t.Fatal(err)
		}
		env.ID = fmt.Sprintf("note-%d", i)
		var last uint64
		if len(seqs) > 0 {
			last = seqs[len(seqs)-1]
		}
		seq, err := l.Append(ctx, subj, []schemas.Envelope{env}, last)
		if err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, seq)
		env.ID = fmt.Sprintf("other-%d", i)
		if _, err := l.Append(ctx, fmt.Sprintf("fv.wf.other-%d", i), []schemas.Envelope{env}, 0); err != nil {
			t.Fatal(err)
		}
	}

	for _, lag := range []struct {
		name string
		upTo uint64
	}{
		{"follower has none of the subject", 0},
		{"follower has half of it", seqs[2]},
		{"follower has all but the last", seqs[4]},
		{"follower is current", seqs[5]},
	} {
		t.Run(lag.name, func(t *testing.T) {
			upTo.Store(lag.upTo)
			for _, after := range []int{-1, 0, 3, 5} {
				var from uint64
				want := seqs
				if after >= 0 {
					from, want = seqs[after], seqs[after+1:]
				}
				recs, err := l.ReadSubject(ctx, subj, from)
				if err != nil {
					t.Fatalf("read after %d: %v", from, err)
				}
				var got []uint64
				for _, r := range recs {
					got = append(got, r.Seq)
					if r.Err != nil || len(r.Events) != 1 || !strings.HasPrefix(r.MsgID, "note-") || r.Subject != subj || r.Stream != "FV_WF" || r.Time.IsZero() {
						t.Errorf("read after %d: record %d %+v", from, r.Seq, r)
					}
				}
				if !slices.Equal(got, want) {
					t.Errorf("read after %d: sequences %v, want %v", from, got, want)
				}
			}
			first, found, err := l.FirstRecord(ctx, subj)
			if err != nil || !found || first.Seq != seqs[0] || len(first.Events) != 1 {
				t.Errorf("first record: #%d found %v, %v; want #%d", first.Seq, found, err, seqs[0])
			}
			if last, err := l.LastSeq(ctx, subj); err != nil || last != seqs[5] {
				t.Errorf("last sequence %d, %v; want %d", last, err, seqs[5])
			}
			if _, found, err := l.FirstRecord(ctx, "fv.wf.never"); err != nil || found {
				t.Errorf("first record of an empty subject: found %v, %v", found, err)
			}
			if last, err := l.LastSeq(ctx, "fv.wf.never"); err != nil || last != 0 {
				t.Errorf("last sequence of an empty subject: %d, %v", last, err)
			}
		})
	}
}

// A single server answers direct gets itself, always current: its reads
// ask no leader.
func TestSingleServerReadsAskNoLeader(t *testing.T) {
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, time.Minute)
	var asked atomic.Int64
	sub, err := l.Conn().Subscribe("$JS.API.STREAM.MSG.GET.>", func(*nats.Msg) { asked.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	env, err := schemas.Default.Encode(&testutil.Note{Text: "x"})
	if err != nil {
		t.Fatal(err)
	}
	env.ID = "one"
	seq, err := l.Append(ctx, "fv.wf.single", []schemas.Envelope{env}, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, after := range []uint64{0, seq} {
		if _, err := l.ReadSubject(ctx, "fv.wf.single", after); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := l.FirstRecord(ctx, "fv.wf.none"); err != nil {
		t.Fatal(err)
	}
	if _, err := l.LastSeq(ctx, "fv.wf.single"); err != nil {
		t.Fatal(err)
	}
	if err := l.Scan(ctx, eventlog.ScanOptions{Subject: "fv.wf.>"}, func(eventlog.Record) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if err := l.Conn().Flush(); err != nil {
		t.Fatal(err)
	}
	if n := asked.Load(); n != 0 {
		t.Errorf("%d requests to a stream leader on a single server", n)
	}
}

// A scan on a cluster (the audit trail's listings) ends at the leader
// too: every record acknowledged before it is listed, from the start or
// from a time, however far behind the answering replica is.
func TestScanCatchesUpWithTheLeader(t *testing.T) {
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, time.Minute)
	var upTo atomic.Uint64
	lagFollower(t, l.Conn(), "lag.DIRECT.GET.", &upTo)
	eventlog.LagDirectGets(l, "lag.DIRECT.GET.")

	var seqs []uint64
	for i := range 6 {
		env, err := schemas.Default.Encode(&testutil.Note{Text: "x", N: i})
		if err != nil {
			t.Fatal(err)
		}
		env.ID = fmt.Sprintf("scan-%d", i)
		seq, err := l.Append(ctx, fmt.Sprintf("fv.wf.scan-%d", i), []schemas.Envelope{env}, 0)
		if err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, seq)
	}
	for _, lag := range []struct {
		name string
		upTo uint64
	}{
		{"follower has none of them", 0},
		{"follower has half of them", seqs[2]},
		{"follower has all but the last", seqs[4]},
		{"follower is current", seqs[5]},
	} {
		t.Run(lag.name, func(t *testing.T) {
			upTo.Store(lag.upTo)
			for _, o := range []eventlog.ScanOptions{
				{Subject: "fv.wf.>"},
				{Subject: "fv.wf.>", Since: time.Now().Add(-time.Hour)},
				{Subject: "fv.wf.scan-5"},
			} {
				var got []uint64
				err := l.Scan(ctx, o, func(r eventlog.Record) error {
					got = append(got, r.Seq)
					if r.Err != nil || !strings.HasPrefix(r.MsgID, "scan-") {
						t.Errorf("scan %s: record %d %+v", o.Subject, r.Seq, r)
					}
					return nil
				})
				want := seqs
				if o.Subject == "fv.wf.scan-5" {
					want = seqs[5:]
				}
				if err != nil || !slices.Equal(got, want) {
					t.Errorf("scan %s since %v: sequences %v, %v; want %v", o.Subject, o.Since, got, err, want)
				}
			}
		})
	}
}

// A reconnection checks that the server still holds the last record the
// log saw. On a cluster the server may be a follower that has not applied
// it yet: that record is not lost, and the log goes on (without asking the
// leader it stopped for good, ErrLogLost).
func TestReconnectionCheckAsksTheLeader(t *testing.T) {
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, time.Minute)
	var upTo atomic.Uint64
	lagFollower(t, l.Conn(), "lag.DIRECT.GET.", &upTo)
	env, err := schemas.Default.Encode(&testutil.Note{Text: "x"})
	if err != nil {
		t.Fatal(err)
	}
	env.ID = "seen"
	seq, err := l.Append(ctx, "fv.wf.seen", []schemas.Envelope{env}, 0)
	if err != nil {
		t.Fatal(err)
	}
	upTo.Store(seq - 1)
	eventlog.LagDirectGets(l, "lag.DIRECT.GET.")
	if err := eventlog.CheckStreams(ctx, l); err != nil {
		t.Fatalf("a follower behind the last record seen: %v", err)
	}
}

// A get sent to a stream's leader as it crashed is never answered: the
// followers do not answer it, and for seconds (their election timeout)
// do not know the leader is gone. The read asks again, and the leader
// elected meanwhile answers. Waiting for the lost request's answer held
// every tick and schedule fire of a crashed leader's failover for the
// whole read timeout (10 s) past the election, which took 7 s.
func TestLeaderGetLostWithItsLeaderIsAskedAgain(t *testing.T) {
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, time.Minute)
	const subj = "fv.wf.leader-lost"
	first, err := l.Append(ctx, subj, []schemas.Envelope{testutil.NoteEnvelope(t, "note-0", 0)}, 0)
	if err != nil {
		t.Fatal(err)
	}
	second, err := l.Append(ctx, subj, []schemas.Envelope{testutil.NoteEnvelope(t, "note-1", 1)}, first)
	if err != nil {
		t.Fatal(err)
	}
	seqs := []uint64{first, second}

	// The stand-in drops every other request, the first of each get (its
	// leader died with it), and passes the others on to the server.
	nc := l.Conn()
	var asked atomic.Int32
	sub, err := nc.Subscribe("lost.MSG.GET.>", func(m *nats.Msg) {
		if asked.Add(1)%2 == 1 {
			return
		}
		_ = nc.PublishRequest(eventlog.LeaderGetAPI+strings.TrimPrefix(m.Subject, "lost.MSG.GET."), m.Reply, m.Data)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	eventlog.LeaderGetsTo(l, "lost.MSG.GET.")

	for _, tt := range []struct {
		name  string
		after uint64
		want  []uint64
	}{
		{"the next record", seqs[0], seqs[1:]},
		{"nothing past the last", seqs[1], nil},
		{"a whole subject", 0, seqs},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := asked.Load()
			recs, err := l.ReadSubject(ctx, subj, tt.after)
			if err != nil {
				t.Fatalf("read after %d: %v", tt.after, err)
			}
			var got []uint64
			for _, r := range recs {
				got = append(got, r.Seq)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("read after %d: %v, want %v", tt.after, got, tt.want)
			}
			if asked.Load()-before < 2 {
				t.Errorf("the leader was asked %d times, want the lost request and another", asked.Load()-before)
			}
		})
	}
}
