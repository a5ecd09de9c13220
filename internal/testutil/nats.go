package testutil

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/workers"
)

// StartNATS runs a standalone JetStream server storing under dir, on
// port (a FreePort when 0, which RestartNATS can listen on again), until
// the test ends or it is shut down: the external server of --nats, which
// a test can restart. set changes its options.
func StartNATS(tb testing.TB, dir string, port int, set ...func(*server.Options)) *server.Server {
	tb.Helper()
	if port == 0 {
		port = FreePort(tb)
	}
	opts := &server.Options{Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: dir,
		MaxPayload: 16 << 20, NoSigs: true, NoLog: true}
	for _, f := range set {
		f(opts)
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		tb.Fatal(err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		tb.Fatal("nats server not ready")
	}
	tb.Cleanup(ns.Shutdown)
	return ns
}

// RestartNATS shuts ns down, if it still runs, and starts another server
// on its port, storing under dir, where ns stored.
func RestartNATS(tb testing.TB, ns *server.Server, dir string) *server.Server {
	tb.Helper()
	u, err := url.Parse(ns.ClientURL())
	if err != nil {
		tb.Fatal(err)
	}
	port, err := strconv.Atoi(u.Port())
	if err != nil {
		tb.Fatal(err)
	}
	ns.Shutdown()
	ns.WaitForShutdown()
	return StartNATS(tb, dir, port)
}

// OpenExternalLog opens a log on the server ns, closed when the test
// ends.
func OpenExternalLog(tb testing.TB, ns *server.Server) *eventlog.Log {
	tb.Helper()
	cfg := eventlog.DefaultConfig()
	cfg.URL, cfg.Name = ns.ClientURL(), "flowvault-test"
	ctx := Context(tb, 30*time.Second)
	l, err := eventlog.Open(ctx, cfg, eventlog.Options{Logger: Logger(tb)})
	if err != nil {
		tb.Fatalf("open event log on %s: %v", ns.ClientURL(), err)
	}
	tb.Cleanup(func() { l.Close() })
	return l
}

// StreamDir returns the directory where the embedded server that stores
// under storeDir keeps stream.
func StreamDir(tb testing.TB, storeDir, stream string) string {
	tb.Helper()
	dirs, err := filepath.Glob(filepath.Join(storeDir, "*", "*", "streams", stream))
	if err != nil || len(dirs) != 1 {
		tb.Fatalf("the directory of stream %s under %s: %v %v", stream, storeDir, dirs, err)
	}
	return dirs[0]
}

// CutLastBlock cuts the last message block of the stream in streamDir to
// size bytes, or to half its size when size is negative: a store that
// lost the end of what it wrote.
func CutLastBlock(tb testing.TB, streamDir string, size int64) {
	tb.Helper()
	blocks, err := filepath.Glob(filepath.Join(streamDir, "msgs", "*.blk"))
	if err != nil || len(blocks) == 0 {
		tb.Fatalf("no block under %s: %v", streamDir, err)
	}
	last := blocks[len(blocks)-1]
	if size < 0 {
		st, err := os.Stat(last)
		if err != nil {
			tb.Fatal(err)
		}
		size = st.Size() / 2
	}
	if err := os.Truncate(last, size); err != nil {
		tb.Fatal(err)
	}
}

// FailStreamStore makes stream's store in log l (an embedded server under
// dataDir) fail a write, as a full disk does: its block directory is
// removed and a secure delete of seq, which rewrites the block through a
// new file, fails. The stream then neither stores nor answers anything
// until the server restarts.
func FailStreamStore(tb testing.TB, l *eventlog.Log, dataDir, stream string, seq uint64) {
	tb.Helper()
	ctx := Context(tb, 30*time.Second)
	if err := os.RemoveAll(filepath.Join(StreamDir(tb, dataDir, stream), "msgs")); err != nil {
		tb.Fatal(err)
	}
	js, err := jetstream.New(l.Conn())
	if err != nil {
		tb.Fatal(err)
	}
	s, err := js.Stream(ctx, stream)
	if err != nil {
		tb.Fatal(err)
	}
	if err := s.SecureDeleteMsg(ctx, seq); err == nil {
		tb.Fatal("a secure delete in a removed directory succeeded")
	}
}

// WorkflowsInLog counts the workflows log l holds, one subject each in
// its workflows stream: a workflow started twice under two ids counts
// two.
func WorkflowsInLog(tb testing.TB, l *eventlog.Log) int {
	tb.Helper()
	ctx := Context(tb, 30*time.Second)
	s, err := l.JetStream().Stream(ctx, eventlog.Workflows.Name)
	if err != nil {
		tb.Fatal(err)
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(eventlog.Workflows.Subjects[0]))
	if err != nil {
		tb.Fatal(err)
	}
	return len(info.State.Subjects)
}

// FillLog appends records of 64 KiB to l, each on a subject of its own,
// until an append fails (at most 400, 25 MiB), and returns that failure:
// on a server whose store is bounded (JetStreamMaxStore, or an embedded
// log's smallest MaxStore, 16 MiB), ErrNoStorage.
func FillLog(tb testing.TB, l *eventlog.Log) error {
	tb.Helper()
	ctx := Context(tb, 60*time.Second)
	for i := range 400 {
		env, err := schemas.Default.Encode(&Note{Text: strings.Repeat("x", 64<<10)})
		if err != nil {
			tb.Fatal(err)
		}
		env.ID = fmt.Sprintf("fill-%d", i)
		if _, err := l.Append(ctx, fmt.Sprintf("fv.wf.fill%d", i), []schemas.Envelope{env}, 0); err != nil {
			return err
		}
	}
	return nil
}

// PublishEvents publishes events from to to-1 on subject as an EVENT task
// does, each {} under the message id prefix and its number, and returns
// once the server has them.
func PublishEvents(tb testing.TB, nc *nats.Conn, subject, prefix string, from, to int) {
	tb.Helper()
	for i := from; i < to; i++ {
		m := nats.NewMsg(subject)
		m.Data = []byte(`{}`)
		m.Header.Set(nats.MsgIdHdr, prefix+strconv.Itoa(i))
		m.Header.Set(workers.EventHeader, prefix+strconv.Itoa(i))
		if err := nc.PublishMsg(m); err != nil {
			tb.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		tb.Fatal(err)
	}
}
