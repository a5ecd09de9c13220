package executor

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/workers"
)

// holdDefinitions stores one workflow, hold, which waits: producers may
// start only stored workflows.
type holdDefinitions struct{ noDefinitions }

func (holdDefinitions) LookupWorkflowDef(ctx context.Context, name string, v *int) (*conductor.WorkflowDef, error) {
	if name != "hold" {
		return noDefinitions{}.LookupWorkflowDef(ctx, name, v)
	}
	def := &conductor.WorkflowDef{}
	err := conductor.Unmarshal([]byte(`{"name":"hold","version":1,"tasks":[{"name":"h","taskReferenceName":"h","type":"WAIT"}]}`), def)
	return def, err
}

// publishStart publishes principal's request to start hold, as a producer
// does, on a connection of the engines' account.
func publishStart(ctx context.Context, t *testing.T, l *eventlog.Log, principal, msgID string, body []byte) (*jetstream.PubAck, error) {
	t.Helper()
	nc, err := l.ConnectInProcess()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	return publishStartOn(ctx, t, nc, principal, msgID, body)
}

// publishStartOn is publishStart on nc, with no message id when msgID is
// "".
func publishStartOn(ctx context.Context, t *testing.T, nc *nats.Conn, principal, msgID string, body []byte) (*jetstream.PubAck, error) {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	m := &nats.Msg{Subject: workers.StartSubject("hold", principal), Data: body, Header: nats.Header{}}
	if msgID != "" {
		m.Header.Set(jetstream.MsgIDHeader, msgID)
	}
	return js.PublishMsg(ctx, m)
}

// A producer's request that an earlier version let the commands stream
// capture as published (fv.cmd.start.<workflow>.<principal>), still
// waiting when the engines are upgraded, starts its workflow, once: the
// stream and its consumer are changed at start, and a request published
// again under its id by the same producer is the same start.
func TestProducerStartStoredByAnEarlierVersion(t *testing.T) {
	dir := t.TempDir()
	ctx := testutil.Context(t, 60*time.Second)
	old := testutil.OpenLog(t, dir)
	js := old.JetStream()
	captureAsEarlierVersions(ctx, t, old)
	if _, err := js.CreateOrUpdateConsumer(ctx, eventlog.Commands.Name, jetstream.ConsumerConfig{Durable: "fv-engine-start",
		FilterSubject: workers.StartCommandPrefix + ">", AckPolicy: jetstream.AckExplicitPolicy, AckWait: time.Minute,
		MaxDeliver: -1, DeliverPolicy: jetstream.DeliverAllPolicy}); err != nil {
		t.Fatal(err)
	}
	if _, err := publishStart(ctx, t, old, "alice", "m-1", []byte(`{"input":{"n":1}}`)); err != nil {
		t.Fatal(err)
	}
	old.Close()

	l := testutil.OpenLog(t, dir)
	e := New(l, holdDefinitions{}, nothingScheduled{}, Config{Logger: testutil.Logger(t)})
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Stop)
	id := engine.DeriveID("start-command", "alice", "m-1")
	testutil.Eventually(t, 20*time.Second, 20*time.Millisecond, func() error {
		if w, err := e.State(ctx, id); err != nil || w == nil {
			return fmt.Errorf("workflow %s: %v, %v", id, w, err)
		}
		return nil
	})
	ack, err := publishStart(ctx, t, l, "alice", "m-1", []byte(`{"input":{"n":1}}`))
	if err != nil {
		t.Fatal(err)
	}
	waitCommandsHandled(ctx, t, l)
	if w, err := e.State(ctx, engine.DeriveID("start-command", "alice", "m-1")); err != nil || w == nil || fmt.Sprint(w.Input["n"]) != "1" {
		t.Fatalf("workflow %s: %v, %v", id, w, err)
	}
	info, err := l.JetStream().Stream(ctx, eventlog.Commands.Name)
	if err != nil {
		t.Fatal(err)
	}
	if subjects := info.CachedInfo().Config.Subjects; strings.Join(subjects, " ") != strings.Join(eventlog.Commands.Subjects, " ") {
		t.Errorf("stream subjects %v, want %v", subjects, eventlog.Commands.Subjects)
	}
	if ack.Sequence == 0 {
		t.Errorf("the request published again was not stored: %+v", ack)
	}
}

// earlierSubjects are those an engine of an earlier version gives the
// commands stream at its start.
var earlierSubjects = []string{"fv.cmd.>"}

// captureAsEarlierVersions sets the commands stream's subjects as an
// engine of an earlier version does at its start.
func captureAsEarlierVersions(ctx context.Context, t *testing.T, l *eventlog.Log) {
	t.Helper()
	s, err := l.JetStream().Stream(ctx, eventlog.Commands.Name)
	if err != nil {
		t.Fatal(err)
	}
	sc := s.CachedInfo().Config
	sc.Subjects = earlierSubjects
	if _, err := l.JetStream().UpdateStream(ctx, sc); err != nil {
		t.Fatal(err)
	}
}

// commandsSubjects returns the subjects the commands stream captures.
func commandsSubjects(ctx context.Context, t *testing.T, l *eventlog.Log) []string {
	t.Helper()
	s, err := l.JetStream().Stream(ctx, eventlog.Commands.Name)
	if err != nil {
		t.Fatal(err)
	}
	return s.CachedInfo().Config.Subjects
}

// During a rolling upgrade, an engine of the version before this one sets
// the commands stream's subjects back to fv.cmd.> at its start, and the
// stream captures producers' requests as published again, while they
// also reach this version's engines: each request still starts one
// workflow, answered by the stream, and each producer's message ids stay
// its own. A later start of this version narrows the subjects again once
// it takes the requests, not as it opens the log; the engines that run
// meanwhile take them from then on.
func TestProducerStartsThroughARollingUpgrade(t *testing.T) {
	ctx := testutil.Context(t, 90*time.Second)
	ns := testutil.StartNATS(t, t.TempDir(), 0)
	l := testutil.OpenExternalLog(t, ns)
	e := New(l, holdDefinitions{}, nothingScheduled{}, Config{Logger: testutil.Logger(t)})
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Stop)
	sees := func(want []string) {
		t.Helper()
		testutil.Eventually(t, 20*time.Second, 10*time.Millisecond, func() error {
			if got := e.commandsSubjects.Load(); got == nil || !slices.Equal(*got, want) {
				return fmt.Errorf("the engine sees the subjects %v, want %v", got, want)
			}
			return nil
		})
	}
	started := 0
	// start publishes principal's request, under msgID unless "", and
	// checks that it starts one workflow.
	start := func(principal, msgID string) {
		t.Helper()
		nc, err := nats.Connect(ns.ClientURL())
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		if _, err := publishStartOn(ctx, t, nc, principal, msgID, []byte(`{"input":{}}`)); err != nil {
			t.Fatalf("%s's request %q: %v", principal, msgID, err)
		}
		started++
		testutil.Eventually(t, 20*time.Second, 20*time.Millisecond, func() error {
			if n := testutil.WorkflowsInLog(t, l); n != started {
				return fmt.Errorf("%d workflows, want %d", n, started)
			}
			return nil
		})
		waitCommandsHandled(ctx, t, l)
	}

	captureAsEarlierVersions(ctx, t, l)
	sees(earlierSubjects)
	start("alice", "")
	start("alice", "m-1")
	start("bob", "m-1")
	if n := testutil.WorkflowsInLog(t, l); n != started {
		t.Fatalf("%d workflows, want %d", n, started)
	}

	l2 := testutil.OpenExternalLog(t, ns)
	if got := commandsSubjects(ctx, t, l2); !slices.Equal(got, earlierSubjects) {
		t.Fatalf("a log opened narrowed the subjects to %v before its engine takes producers' requests", got)
	}
	e2 := New(l2, holdDefinitions{}, nothingScheduled{}, Config{Logger: testutil.Logger(t)})
	if err := e2.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if got := commandsSubjects(ctx, t, l2); !slices.Equal(got, eventlog.Commands.Subjects) {
		t.Errorf("subjects %v once an engine of this version started, want %v", got, eventlog.Commands.Subjects)
	}
	e2.Stop()
	sees(eventlog.Commands.Subjects)
	start("alice", "")
	start("carol", "m-1")
}

// waitCommandsHandled waits until the commands stream holds nothing.
func waitCommandsHandled(ctx context.Context, t *testing.T, l *eventlog.Log) {
	t.Helper()
	testutil.Eventually(t, 20*time.Second, 20*time.Millisecond, func() error {
		s, err := l.JetStream().Stream(ctx, eventlog.Commands.Name)
		if err != nil {
			return err
		}
		info, err := s.Info(ctx)
		if err != nil {
			return err
		}
		if info.State.Msgs != 0 {
			return fmt.Errorf("%d commands left", info.State.Msgs)
		}
		return nil
	})
}

// A producer's request the commands stream refuses is answered with the
// stream's refusal, as a publish into the stream would be, not left to
// time out.
func TestProducerStartRefusedByTheStreamSaysWhy(t *testing.T) {
	ctx := testutil.Context(t, 30*time.Second)
	l := testutil.OpenLog(t, "")
	startExecutor(t, l, nothingScheduled{}, Config{})
	s, err := l.JetStream().Stream(ctx, eventlog.Commands.Name)
	if err != nil {
		t.Fatal(err)
	}
	sc := s.CachedInfo().Config
	sc.MaxMsgSize = 256
	if _, err := l.JetStream().UpdateStream(ctx, sc); err != nil {
		t.Fatal(err)
	}
	_, err = publishStart(ctx, t, l, "alice", "big", []byte(`{"input":{"x":"`+strings.Repeat("x", 1024)+`"}}`))
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) || !strings.Contains(apiErr.Description, "maximum") {
		t.Fatalf("publish of a request over the stream's limit: %v, want the stream's refusal", err)
	}
}
