package projections_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/projections"
	"github.com/flowvault/flowvault/schemas"
)

const crashChildEnv = "FLOWVAULT_CRASH_CHILD_DIR"

func TestMain(m *testing.M) {
	if dir := os.Getenv(crashChildEnv); dir != "" {
		crashChild(dir)
		return
	}
	os.Exit(m.Run())
}

// crashChild appends forever while a projection follows, printing every
// acknowledged append. The parent kills it with SIGKILL.
func crashChild(dir string) {
	ctx := context.Background()
	l, err := eventlog.Open(ctx, testutil.LogConfig(filepath.Join(dir, "nats")), eventlog.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	// Memtables small enough to be flushed several times before the kill:
	// the store keeps no write-ahead log, and what it flushed is all a
	// crash leaves of it.
	s, err := projections.OpenStore(filepath.Join(dir, "pebble"), projections.StoreOptions{MemTableSize: 32 << 10})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	go projections.NewRunner(l, s, noteProjection{}, projections.RunnerConfig{Stream: eventlog.Workflows.Name, MaxBatch: 7}).Run(ctx)
	out := bufio.NewWriter(os.Stdout)
	seqs := map[string]uint64{}
	for i := 0; ; i++ {
		subj := fmt.Sprintf("fv.wf.crash%d", i%5)
		id := fmt.Sprintf("c%d", i)
		env, _ := schemas.Default.Encode(&testutil.Note{Text: id, N: i})
		env.ID, env.Time = id, time.Now().UnixNano()
		seq, err := l.Append(ctx, subj, []schemas.Envelope{env}, seqs[subj])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(3)
		}
		seqs[subj] = seq
		fmt.Fprintf(out, "ack %s %d %s\n", subj, seq, id)
		out.Flush()
	}
}

// Kill -9 a process that appends in a loop with a projection running; after
// restart every acknowledged event is in the log, in order, exactly once, and
// the projection's checkpoint matches its contents.
func TestCrashMidAppend(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+dir)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	type ack struct {
		subject string
		seq     uint64
		id      string
	}
	var acks []ack
	sc := bufio.NewScanner(stdout)
	for len(acks) < 400 && sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 4 || f[0] != "ack" {
			t.Fatalf("child said %q", sc.Text())
		}
		seq, _ := strconv.ParseUint(f[2], 10, 64)
		acks = append(acks, ack{f[1], seq, f[3]})
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// The child kept appending until the signal landed: collect the acks it
	// printed meanwhile (it flushes each one), up to EOF at its death.
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 4 || f[0] != "ack" {
			continue // a line cut short by the kill
		}
		seq, _ := strconv.ParseUint(f[2], 10, 64)
		acks = append(acks, ack{f[1], seq, f[3]})
	}
	_ = cmd.Wait()
	if len(acks) < 400 {
		t.Fatalf("child stopped after %d acks", len(acks))
	}

	l := testutil.OpenLog(t, filepath.Join(dir, "nats"))
	ctx := testutil.Context(t, time.Minute)
	stored := map[uint64]string{} // seq -> event id, over all subjects
	for s := 0; s < 5; s++ {
		subj := fmt.Sprintf("fv.wf.crash%d", s)
		recs, err := l.ReadSubject(ctx, subj, 0)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for i, r := range recs {
			if r.Err != nil || len(r.Events) != 1 {
				t.Fatalf("%s #%d: %v", subj, r.Seq, r.Err)
			}
			id := r.Events[0].ID
			if seen[id] {
				t.Fatalf("%s: event %s stored twice", subj, id)
			}
			seen[id] = true
			if i > 0 && r.Seq <= recs[i-1].Seq {
				t.Fatalf("%s: out of order", subj)
			}
			stored[r.Seq] = id
		}
	}
	for _, a := range acks {
		if stored[a.seq] != a.id {
			t.Fatalf("acknowledged %s at %s #%d, log has %q", a.id, a.subject, a.seq, stored[a.seq])
		}
	}
	// At most the one append in flight at the kill may exist unacknowledged.
	if extra := len(stored) - len(acks); extra < 0 || extra > 1 {
		t.Fatalf("log holds %d records for %d acknowledged appends", len(stored), len(acks))
	}

	s := openStore(t, filepath.Join(dir, "pebble"))
	defer s.Close()
	cp, err := s.Checkpoint("notes")
	if err != nil {
		t.Fatal(err)
	}
	if cp == 0 {
		t.Fatal("nothing of the read model was flushed before the kill")
	}
	var upTo uint64
	for seq := range stored {
		if seq <= cp {
			upTo++
		}
	}
	if got := noteCount(t, s); got != upTo {
		t.Fatalf("checkpoint %d covers %d events, projection counted %d", cp, upTo, got)
	}
	last, err := l.StreamLastSeq(ctx, eventlog.Workflows.Name)
	if err != nil {
		t.Fatal(err)
	}
	r, stop := run(t, l, s, projections.RunnerConfig{})
	if err := r.WaitFor(ctx, last); err != nil {
		t.Fatal(err)
	}
	stop()
	if got := noteCount(t, s); got != uint64(len(stored)) {
		t.Fatalf("after catch-up count = %d, want %d", got, len(stored))
	}
	t.Logf("killed after %d acks; checkpoint at kill %d of %d", len(acks), cp, last)
}
