package natsauth_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/natsauth"
	"github.com/flowvault/flowvault/secrets"
	"github.com/flowvault/flowvault/workers"
)

// server is an embedded event log whose NATS server listens and requires
// credentials signed by authority.
type server struct {
	log       *eventlog.Log
	authority *natsauth.Authority
}

// startServer opens a server and admits workers, as a node does once it
// has read the revocations.
func startServer(t *testing.T) *server {
	t.Helper()
	s := openServer(t)
	if err := s.authority.Admit(s.log.EmbeddedServer(), nil); err != nil {
		t.Fatal(err)
	}
	return s
}

// openServer opens a server whose workers account is still closed.
func openServer(t *testing.T) *server {
	t.Helper()
	mk := secrets.GenerateMasterKey()
	t.Cleanup(mk.Wipe)
	a, err := natsauth.New(mk)
	if err != nil {
		t.Fatal(err)
	}
	cfg := testutil.LogConfig(t.TempDir())
	cfg.Listen = "127.0.0.1:0"
	l, err := eventlog.Open(testutil.Context(t, 30*time.Second), cfg, eventlog.Options{Auth: a})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return &server{log: l, authority: a}
}

// refused reports whether the server refused the connection's last
// operation on subject. Flush makes it deterministic: the server answers
// an operation it refuses with -ERR before the PONG of the PING after it,
// and the client records the error before Flush returns.
func refused(t *testing.T, nc *nats.Conn, subject string) {
	t.Helper()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	err := nc.LastError()
	if !errors.Is(err, nats.ErrPermissionViolation) || !strings.Contains(err.Error(), `"`+subject+`"`) {
		t.Fatalf("%s: last error %v, want a permissions violation for it", subject, err)
	}
}

// patient gives a connection more than nats.go's 2 s to connect, short on
// a loaded machine (the whole suite on two cores): a handshake read timed
// out there, where a refusal or an admission was expected.
func patient(opts ...nats.Option) []nats.Option {
	return append([]nats.Option{nats.Timeout(15 * time.Second)}, opts...)
}

// connect connects to s's server with c.
func (s *server) connect(t *testing.T, c *natsauth.Credentials, opts ...nats.Option) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(s.log.ClientURL(), patient(append(c.Options(), opts...)...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// dispatch creates the queue consumer of taskType, as the engine does, and
// announces one task on it.
func (s *server) dispatch(t *testing.T, ctx context.Context, taskType string) jetstream.Consumer {
	t.Helper()
	cons, err := s.log.EnsureConsumer(ctx, eventlog.ConsumerConfig{Stream: eventlog.Dispatch.Name, Durable: workers.ConsumerName(taskType, ""),
		Filter: workers.DispatchSubject(taskType, ""), AckWait: time.Minute, MaxDeliver: -1})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(workers.Dispatch{TaskID: "task-" + taskType, WorkflowInstanceID: "wf-1", TaskType: taskType})
	if _, err := s.log.JetStream().Publish(ctx, workers.DispatchSubject(taskType, ""), body); err != nil {
		t.Fatal(err)
	}
	return cons
}

func TestAnonymousAndForgedConnectionsRefused(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	other, err := natsauth.New(secrets.GenerateMasterKey())
	if err != nil {
		t.Fatal(err)
	}
	forged, err := other.IssueWorker(natsauth.WorkerSpec{TaskTypes: []string{"a"}})
	if err != nil {
		t.Fatal(err)
	}
	expired, err := s.authority.IssueWorker(natsauth.WorkerSpec{TaskTypes: []string{"a"}, Expires: time.Now().Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	valid, err := s.authority.IssueWorker(natsauth.WorkerSpec{TaskTypes: []string{"a"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name    string
		opts    []nats.Option
		refused bool
	}{
		{"anonymous", nil, true},
		{"user and password", []nats.Option{nats.UserInfo("flowvault", "flowvault")}, true},
		{"token", []nats.Option{nats.Token("flowvault")}, true},
		{"another master key's account", forged.Options(), true},
		{"expired", expired.Options(), true},
		{"worker credentials", valid.Options(), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			nc, err := nats.Connect(s.log.ClientURL(), patient(append(tt.opts, nats.NoReconnect())...)...)
			if err == nil {
				defer nc.Close()
			}
			switch {
			case tt.refused && err == nil:
				t.Fatal("connected")
			case tt.refused && !errors.Is(err, nats.ErrAuthorization) && !errors.Is(err, nats.ErrAuthExpired):
				t.Fatalf("refused with %v, want an authorization violation", err)
			case !tt.refused && err != nil:
				t.Fatalf("refused: %v", err)
			}
		})
	}
}

// A worker of type A takes A's tasks, and nothing else: B's queue, B's
// dispatch subject, the event streams and the JetStream API are refused
// by the server.
func TestWorkerPermissions(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	ctx := testutil.Context(t, 60*time.Second)
	consA := s.dispatch(t, ctx, "type_a")
	consB := s.dispatch(t, ctx, "type_b")
	c, err := s.authority.IssueWorker(natsauth.WorkerSpec{TaskTypes: []string{"type_a"}, Name: "worker-a"})
	if err != nil {
		t.Fatal(err)
	}
	nc := s.connect(t, c)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}

	// Its own queue works: the rules below are not refusing everything.
	own, err := js.Consumer(ctx, eventlog.Dispatch.Name, workers.ConsumerName("type_a", ""))
	if err != nil {
		t.Fatalf("own queue: %v", err)
	}
	m, err := own.Next(jetstream.FetchMaxWait(10 * time.Second))
	if err != nil {
		t.Fatalf("own queue: %v", err)
	}
	if !strings.Contains(string(m.Data()), "task-type_a") {
		t.Fatalf("own queue gave %s", m.Data())
	}
	if err := m.DoubleAck(ctx); err != nil {
		t.Fatalf("ack: %v", err)
	}
	if info, err := consA.Info(ctx); err != nil || info.NumPending != 0 || info.NumAckPending != 0 {
		t.Fatalf("type_a queue after the take: %+v %v", info, err)
	}

	// Requests the server must refuse, as a JetStream or NATS client would
	// send them.
	for _, tt := range []struct{ name, subject, body string }{
		{"pull from type_b's queue", "$JS.API.CONSUMER.MSG.NEXT.FV_DISPATCH.fvq_type_b", `{"batch":1,"no_wait":true}`},
		{"type_b's queue info", "$JS.API.CONSUMER.INFO.FV_DISPATCH.fvq_type_b", ""},
		{"take a type_b task", workers.TakeSubject("type_b", ""), `{"taskId":"task-type_b"}`},
		{"report a type_b result", workers.ResultSubject("type_b", ""), `{"taskId":"task-type_b"}`},
		{"wait for a type_b task", workers.PollSubject("type_b", ""), `{}`},
		{"wait for a type_a task of a domain it was not given", workers.PollSubject("type_a", "eu"), `{}`},
		{"take a type_a task of that domain", workers.TakeSubject("type_a", "eu"), `{"taskId":"task-type_a"}`},
		{"report a type_a result of that domain", workers.ResultSubject("type_a", "eu"), `{"taskId":"task-type_a"}`},
		{"pull from type_a's queue of that domain", "$JS.API.CONSUMER.MSG.NEXT.FV_DISPATCH." + workers.ConsumerName("type_a", "eu"), `{"batch":1,"no_wait":true}`},
		{"end a type_b poll", workers.PollEndSubject("type_b"), `{"pollId":"p1"}`},
		{"workflow event stream info", "$JS.API.STREAM.INFO." + eventlog.Workflows.Name, ""},
		{"consumer on the workflow events", "$JS.API.CONSUMER.CREATE." + eventlog.Workflows.Name + ".spy", `{"stream_name":"FV_WF","config":{"name":"spy"}}`},
		{"durable consumer on the workflow events", "$JS.API.CONSUMER.DURABLE.CREATE." + eventlog.Workflows.Name + ".spy", `{"stream_name":"FV_WF","config":{"durable_name":"spy"}}`},
		{"secret event stream info", "$JS.API.STREAM.INFO." + eventlog.Secrets.Name, ""},
		{"read a stored event", "$JS.API.STREAM.MSG.GET." + eventlog.Access.Name, `{"seq":1}`},
		{"direct get", "$JS.API.DIRECT.GET." + eventlog.Audit.Name, `{"seq":1}`},
		{"list streams", "$JS.API.STREAM.NAMES", ""},
		{"account info", "$JS.API.INFO", ""},
		{"delete its own queue", "$JS.API.CONSUMER.DELETE.FV_DISPATCH.fvq_type_a", ""},
		{"plant a type_b task", workers.DispatchSubject("type_b", ""), `{}`},
		{"forge a workflow event", "fv.wf.forged", `{}`},
		{"start a workflow", "fv.cmd.start.any", `{}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := nc.PublishRequest(tt.subject, nc.NewRespInbox(), []byte(tt.body)); err != nil {
				t.Fatal(err)
			}
			refused(t, nc, tt.subject)
		})
	}
	// Subscriptions outside its inbox are refused, and type_b's tasks never
	// reach it: the engine's answer to a take, sent after a type_b
	// announcement, arrives with nothing delivered before it.
	for _, subject := range []string{workers.DispatchSubject("type_b", ""), "fv.task.>", "fv.>", ">", "_INBOX.>", "_INBOX_>", "$JS.API.>"} {
		if _, err := nc.SubscribeSync(subject); err != nil {
			t.Fatal(err)
		}
		refused(t, nc, subject)
	}
	engine, err := s.log.Conn().Subscribe(workers.TakeSubject("type_a", ""), func(m *nats.Msg) { _ = m.Respond([]byte("marker")) })
	if err != nil {
		t.Fatal(err)
	}
	defer engine.Unsubscribe()
	if err := s.log.Conn().Flush(); err != nil {
		t.Fatal(err)
	}
	stolen := make(chan *nats.Msg, 16)
	if _, err := nc.ChanSubscribe(workers.DispatchSubject("type_b", ""), stolen); err != nil {
		t.Fatal(err)
	}
	refused(t, nc, workers.DispatchSubject("type_b", ""))
	// Acknowledged by the stream, so the queue count below is exact; it
	// still travels the subject a forbidden subscription would catch.
	if _, err := s.log.JetStream().Publish(ctx, workers.DispatchSubject("type_b", ""), []byte(`{"taskId":"task-type_b-2"}`)); err != nil {
		t.Fatal(err)
	}
	if m, err := nc.Request(workers.TakeSubject("type_a", ""), []byte(`{}`), 10*time.Second); err != nil || string(m.Data) != "marker" {
		t.Fatalf("the marker did not arrive: %v", err)
	}
	if len(stolen) != 0 {
		t.Fatalf("worker of type_a received %s", (<-stolen).Data)
	}
	// type_b's announcements are all still queued for type_b's workers.
	// (The consumer counts a stored message a moment after the stream
	// acknowledged it: under load, 1 was read here.)
	testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() error {
		if info, err := consB.Info(ctx); err != nil || info.NumPending != 2 || info.NumAckPending != 0 {
			return fmt.Errorf("type_b queue: %+v %v", info, err)
		}
		return nil
	})
}

// A worker's connection holds at most MaxClientSubscriptions
// subscriptions: the server refuses the next.
func TestWorkerSubscriptionsBounded(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	c, err := s.authority.IssueWorker(natsauth.WorkerSpec{TaskTypes: []string{"type_a"}, Name: "worker-a"})
	if err != nil {
		t.Fatal(err)
	}
	nc := s.connect(t, c, nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
	inbox := nc.NewRespInbox()
	for i := range natsauth.MaxClientSubscriptions {
		if _, err := nc.SubscribeSync(fmt.Sprintf("%s.%d", inbox, i)); err != nil {
			t.Fatal(err)
		}
	}
	// Flush's own 10 s ran out on a loaded machine (a full make test and
	// more) before the server had taken them all in.
	if err := nc.FlushTimeout(time.Minute); err != nil || nc.LastError() != nil {
		t.Fatalf("within the bound: %v %v", err, nc.LastError())
	}
	if _, err := nc.SubscribeSync(inbox + ".one-more"); err != nil {
		t.Fatal(err)
	}
	_ = nc.FlushTimeout(time.Minute)
	if err := nc.LastError(); err == nil || !strings.Contains(strings.ToLower(err.Error()), "maximum subscriptions") {
		t.Fatalf("subscription past the bound: last error %v", err)
	}
}

func TestWorkerSpecValidate(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 257)
	many := make([]string, 101)
	for i := range many {
		many[i] = fmt.Sprint("t", i)
	}
	for _, tt := range []struct {
		name  string
		spec  natsauth.WorkerSpec
		field string // "" valid
	}{
		{"valid", natsauth.WorkerSpec{TaskTypes: []string{"a", "b"}, Domains: []string{"d"}, Name: "w"}, ""},
		{"no types", natsauth.WorkerSpec{}, "taskTypes"},
		{"empty type", natsauth.WorkerSpec{TaskTypes: []string{"a", ""}}, "taskTypes[1]"},
		{"long type", natsauth.WorkerSpec{TaskTypes: []string{long}}, "taskTypes[0]"},
		{"too many types", natsauth.WorkerSpec{TaskTypes: many}, "taskTypes"},
		{"empty domain", natsauth.WorkerSpec{TaskTypes: []string{"a"}, Domains: []string{""}}, "domains[0]"},
		{"domains only", natsauth.WorkerSpec{TaskTypes: []string{"a"}, Domains: []string{"d"}, DomainsOnly: true}, ""},
		{"domains only without domains", natsauth.WorkerSpec{TaskTypes: []string{"a"}, DomainsOnly: true}, "domainsOnly"},
		{"domains only without types", natsauth.WorkerSpec{StartWorkflows: []string{"w"}, Principal: "p", Domains: []string{"d"},
			DomainsOnly: true}, "domainsOnly"},
		{"long name", natsauth.WorkerSpec{TaskTypes: []string{"a"}, Name: long}, "name"},
		{"events only", natsauth.WorkerSpec{Subscribe: []string{"orders.>", "billing.*.eu"}}, ""},
		{"every subject", natsauth.WorkerSpec{Subscribe: []string{"orders.>", ">"}}, "subscribe[1]"},
		{"engine subjects", natsauth.WorkerSpec{Subscribe: []string{"fv.task.>"}}, "subscribe[0]"},
		{"inboxes", natsauth.WorkerSpec{Subscribe: []string{"_INBOX_U1.>"}}, "subscribe[0]"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.spec.Validate()
			switch {
			case tt.field == "" && err != nil:
				t.Fatal(err)
			case tt.field != "" && (err == nil || !strings.Contains(err.Error(), tt.field)):
				t.Fatalf("error %v, want one about %s", err, tt.field)
			}
		})
	}
}

// Credentials reach the queues without domain and their domains', or,
// domainsOnly, their domains' alone.
func TestWorkerSpecQueues(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		spec natsauth.WorkerSpec
		want []string
	}{
		{"no domain", natsauth.WorkerSpec{TaskTypes: []string{"a"}}, []string{""}},
		{"domains", natsauth.WorkerSpec{TaskTypes: []string{"a"}, Domains: []string{"eu", "us"}}, []string{"", "eu", "us"}},
		{"domains only", natsauth.WorkerSpec{TaskTypes: []string{"a"}, Domains: []string{"eu"}, DomainsOnly: true}, []string{"eu"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.spec.Queues(); !slices.Equal(got, tt.want) {
				t.Errorf("queues %q, want %q", got, tt.want)
			}
		})
	}
}

// EVENT tasks publish as a user of the workers account: a subscriber whose
// credentials name the subject receives the events, a worker without
// that grant cannot listen, and the publisher itself can reach none of
// the subjects of flowvault or the server, nor listen anywhere.
func TestEventsReachOnlyGrantedSubscribers(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	pc, err := s.authority.EventPublisherCredentials()
	if err != nil {
		t.Fatal(err)
	}
	pub := s.connect(t, pc)
	sc, err := s.authority.IssueWorker(natsauth.WorkerSpec{Subscribe: []string{"orders.>"}, Name: "consumer"})
	if err != nil {
		t.Fatal(err)
	}
	sub := s.connect(t, sc)
	events, err := sub.SubscribeSync("orders.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := sub.Flush(); err != nil || sub.LastError() != nil {
		t.Fatalf("subscribe: %v %v", err, sub.LastError())
	}
	if err := pub.Publish("orders.created", []byte(`{"order":1}`)); err != nil {
		t.Fatal(err)
	}
	if m, err := events.NextMsg(10 * time.Second); err != nil || string(m.Data) != `{"order":1}` {
		t.Fatalf("the subscriber got %v, %v", m, err)
	}
	if _, err := sub.SubscribeSync("billing.>"); err != nil {
		t.Fatal(err)
	}
	refused(t, sub, "billing.>")
	// Nor may it join a queue group the engines' event handlers listen
	// in, which would take a share of the events away from them. A group
	// of its own it may.
	handlers := workers.EventHandlerQueues + ".0123456789abcdef"
	if _, err := sub.QueueSubscribeSync("orders.>", handlers); err != nil {
		t.Fatal(err)
	}
	if err := sub.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := sub.LastError(); !errors.Is(err, nats.ErrPermissionViolation) || !strings.Contains(err.Error(), handlers) {
		t.Fatalf("joining the handlers' queue group: last error %v, want a permissions violation for it", err)
	}
	team, err := sub.QueueSubscribeSync("orders.>", "billing-team")
	if err != nil {
		t.Fatal(err)
	}
	if err := sub.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish("orders.shipped", []byte(`{"order":3}`)); err != nil {
		t.Fatal(err)
	}
	if m, err := team.NextMsg(10 * time.Second); err != nil || string(m.Data) != `{"order":3}` {
		t.Fatalf("the subscriber's own queue group got %v, %v", m, err)
	}

	wc, err := s.authority.IssueWorker(natsauth.WorkerSpec{TaskTypes: []string{"type_a"}})
	if err != nil {
		t.Fatal(err)
	}
	worker := s.connect(t, wc)
	if _, err := worker.SubscribeSync("orders.created"); err != nil {
		t.Fatal(err)
	}
	refused(t, worker, "orders.created")

	for _, subject := range []string{workers.TakeSubject("type_a", ""), workers.StartSubject("w", "p"), "fv.wf.forged",
		"$JS.API.STREAM.NAMES", "$KV.FV_KEYS.x", "_INBOX.x"} {
		if err := pub.Publish(subject, []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
		refused(t, pub, subject)
	}
	if _, err := pub.SubscribeSync("orders.>"); err != nil {
		t.Fatal(err)
	}
	refused(t, pub, "orders.>")

	// The event handlers' listener is the publisher's mirror image.
	lc, err := s.authority.EventListenerCredentials()
	if err != nil {
		t.Fatal(err)
	}
	listener := s.connect(t, lc)
	heard, err := listener.QueueSubscribeSync("orders.>", "handlers")
	if err != nil {
		t.Fatal(err)
	}
	if err := listener.Flush(); err != nil || listener.LastError() != nil {
		t.Fatalf("listen: %v %v", err, listener.LastError())
	}
	if err := pub.Publish("orders.paid", []byte(`{"order":2}`)); err != nil {
		t.Fatal(err)
	}
	if m, err := heard.NextMsg(10 * time.Second); err != nil || string(m.Data) != `{"order":2}` {
		t.Fatalf("the listener got %v, %v", m, err)
	}
	for _, subject := range []string{workers.TakeSubject("type_a", ""), "fv.>", "$JS.API.>", "_INBOX.>"} {
		if _, err := listener.SubscribeSync(subject); err != nil {
			t.Fatal(err)
		}
		refused(t, listener, subject)
	}
	if err := listener.Publish("orders.created", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	refused(t, listener, "orders.created")
}

// An event subscriber's pattern becomes a subscribe permission, which
// the server splits at any Unicode white space into a subject and a queue
// group: credentials for ">\u00a0q", a pattern of one token that is no
// wildcard, would allow ">" (in queue group q), every worker's replies,
// take replies with resolved secrets among them. They are not issued.
func TestSubscribePatternsSplitNowhere(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	wc, err := s.authority.IssueWorker(natsauth.WorkerSpec{TaskTypes: []string{"type_a"}})
	if err != nil {
		t.Fatal(err)
	}
	worker := s.connect(t, wc)
	engine, err := s.log.Conn().Subscribe(workers.TakeSubject("type_a", ""), func(m *nats.Msg) { _ = m.Respond([]byte(`{"secret":"s3cret"}`)) })
	if err != nil {
		t.Fatal(err)
	}
	defer engine.Unsubscribe()
	if err := s.log.Conn().Flush(); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ pattern, subject string }{
		{">\u00a0q", ">"},
		{"*\u2003q", "*"},
		{"orders.>\u0085q", "orders.>"},
	} {
		t.Run(tt.subject, func(t *testing.T) {
			c, err := s.authority.IssueWorker(natsauth.WorkerSpec{Subscribe: []string{tt.pattern}})
			if err == nil {
				spy := s.connect(t, c)
				heard, err := spy.QueueSubscribeSync(tt.subject, "q")
				if err != nil {
					t.Fatal(err)
				}
				if err := spy.Flush(); err != nil {
					t.Fatal(err)
				}
				if _, err := worker.Request(workers.TakeSubject("type_a", ""), []byte(`{}`), 10*time.Second); err != nil {
					t.Fatal(err)
				}
				// Delivered before the reply's flush returns, if at all.
				if err := spy.Flush(); err != nil {
					t.Fatal(err)
				}
				n, _, _ := heard.Pending()
				t.Fatalf("credentials for %q issued: subscribed to %q (last error %v), %d of the worker's messages received",
					tt.pattern, tt.subject, spy.LastError(), n)
			}
			if !errors.Is(err, fault.ErrInvalid) || !strings.Contains(err.Error(), "subscribe[0]") {
				t.Fatalf("refused with %v, want a validation error of subscribe[0]", err)
			}
		})
	}
}

// Engines holding one master key derive one account (they share a log);
// another key derives another.
func TestAccountDerivedFromMasterKey(t *testing.T) {
	t.Parallel()
	mk := secrets.GenerateMasterKey()
	a1, err1 := natsauth.New(mk)
	a2, err2 := natsauth.New(mk)
	b, err3 := natsauth.New(secrets.GenerateMasterKey())
	if err := errors.Join(err1, err2, err3); err != nil {
		t.Fatal(err)
	}
	if a1.Account() != a2.Account() || a1.Account() == b.Account() || !strings.HasPrefix(a1.Account(), "A") {
		t.Fatalf("accounts %s %s %s", a1.Account(), a2.Account(), b.Account())
	}
}

// Key-bearing values print as *** however they are printed or logged.
func TestSecretsRedacted(t *testing.T) {
	t.Parallel()
	a, err := natsauth.New(secrets.GenerateMasterKey())
	if err != nil {
		t.Fatal(err)
	}
	c, err := a.IssueWorker(natsauth.WorkerSpec{TaskTypes: []string{"a"}})
	if err != nil {
		t.Fatal(err)
	}
	file, err := c.File()
	if err != nil {
		t.Fatal(err)
	}
	seed := strings.TrimSpace(strings.SplitN(strings.SplitN(string(file), "-----BEGIN USER NKEY SEED-----", 2)[1], "------END USER NKEY SEED------", 2)[0])
	if !strings.HasPrefix(seed, "SU") {
		t.Fatalf("no seed in the creds file:\n%s", file)
	}
	var logged strings.Builder
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("x", "creds", c, "authority", a)
	js, _ := json.Marshal(map[string]any{"c": c, "a": a})
	for _, tt := range []struct{ name, out string }{
		{"%v", fmt.Sprintf("%v %v", c, a)},
		{"%+v", fmt.Sprintf("%+v %+v", c, a)},
		{"%#v", fmt.Sprintf("%#v %#v", c, a)},
		{"%s", fmt.Sprintf("%s %s", c, a)},
		{"json", string(js)},
		{"slog", logged.String()},
	} {
		if strings.Contains(tt.out, seed) || strings.Contains(tt.out, "eyJ") || !strings.Contains(tt.out, "***") {
			t.Errorf("%s: %s", tt.name, tt.out)
		}
	}
}

// A worker cannot aim an answer at a stream: a request's reply subject is
// the requester's choice, and whoever answers (an engine, the JetStream
// API) publishes there. Aimed at a producer's start subject, at a
// workflow's log or at the audit trail, nothing reaches the engines or
// lands in any stream.
func TestWorkerRepliesReachNoStream(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	ctx := testutil.Context(t, 60*time.Second)
	s.dispatch(t, ctx, "type_a")
	c, err := s.authority.IssueWorker(natsauth.WorkerSpec{TaskTypes: []string{"type_a"}, Name: "worker-a"})
	if err != nil {
		t.Fatal(err)
	}
	nc := s.connect(t, c)
	engine, err := s.log.Conn().Subscribe(workers.TakeSubject("type_a", ""), func(m *nats.Msg) {
		_ = m.Respond([]byte(`{"task":{"inputData":{"token":"resolved-secret"}}}`))
	})
	if err != nil {
		t.Fatal(err)
	}
	defer engine.Unsubscribe()
	// Engines take producers' start requests from this subject to store
	// them (no stream captures it).
	starts := make(chan string, 8)
	proxy, err := s.log.Conn().Subscribe(workers.StartCommandPrefix+"*.*", func(m *nats.Msg) { starts <- m.Subject })
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Unsubscribe()
	if err := s.log.Conn().Flush(); err != nil {
		t.Fatal(err)
	}
	const startAsAdmin = "fv.cmd.start.victim_wf.admin"
	for _, aim := range []struct{ subject, body, reply string }{
		{workers.TakeSubject("type_a", ""), `{"taskId":"t"}`, startAsAdmin},
		{workers.TakeSubject("type_a", ""), `{"taskId":"t"}`, "fv.wf.victim"},
		{"$JS.API.CONSUMER.INFO.FV_DISPATCH." + workers.ConsumerName("type_a", ""), "", startAsAdmin},
		{"$JS.API.CONSUMER.INFO.FV_DISPATCH." + workers.ConsumerName("type_a", ""), "", "fv.audit.forged"},
		{"$JS.API.CONSUMER.MSG.NEXT.FV_DISPATCH." + workers.ConsumerName("type_a", ""), `{"batch":1,"no_wait":true}`, "fv.wf.victim"},
	} {
		if err := nc.PublishRequest(aim.subject, aim.reply, []byte(aim.body)); err != nil {
			t.Fatal(err)
		}
	}
	// A round trip after them: their answers, if any, were sent before.
	if _, err := nc.Request(workers.TakeSubject("type_a", ""), []byte(`{}`), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	select {
	case subject := <-starts:
		t.Errorf("an answer aimed at %s reached the engines", subject)
	default:
	}
	for _, st := range []eventlog.Stream{eventlog.Commands, eventlog.Workflows, eventlog.Audit} {
		str, err := s.log.JetStream().Stream(ctx, st.Name)
		if err != nil {
			t.Fatal(err)
		}
		if info, err := str.Info(ctx); err != nil || info.State.Msgs != 0 {
			t.Errorf("%s holds %d messages (%v), want none", st.Name, info.State.Msgs, err)
		}
	}
}

// A worker waiting at an engine answers the engine's offer of a task: the
// offer is the poll's answer and carries a reply subject of its own, on
// which the worker, in the other account, may answer once. So does one
// whose credentials also receive events.
func TestWorkerAnswersOffers(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	eng := s.log.Conn()
	answers := make(chan string, 1)
	sub, err := eng.QueueSubscribe(workers.PollSubject("type_a", ""), workers.EngineQueue, func(m *nats.Msg) {
		ans, err := eng.Request(m.Reply, []byte(`{"task":{"taskId":"t1"}}`), 10*time.Second)
		if err != nil {
			answers <- "no answer: " + err.Error()
			return
		}
		answers <- string(ans.Data)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := eng.Flush(); err != nil {
		t.Fatal(err)
	}
	for _, spec := range []natsauth.WorkerSpec{
		{TaskTypes: []string{"type_a"}, Name: "worker-a"},
		{TaskTypes: []string{"type_a"}, Subscribe: []string{"orders.>"}, Name: "worker-a-and-events"},
	} {
		c, err := s.authority.IssueWorker(spec)
		if err != nil {
			t.Fatal(err)
		}
		nc := s.connect(t, c)
		inbox := nc.NewInbox()
		offers, err := nc.SubscribeSync(inbox)
		if err != nil {
			t.Fatal(err)
		}
		if err := nc.PublishRequest(workers.PollSubject("type_a", ""), inbox, []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
		offer, err := offers.NextMsg(10 * time.Second)
		if err != nil {
			t.Fatalf("%s: no offer: %v", spec.Name, err)
		}
		if err := offer.Respond([]byte(`{"accept":true}`)); err != nil {
			t.Fatal(err)
		}
		if err := nc.Flush(); err != nil || nc.LastError() != nil {
			t.Fatalf("%s: answering the offer: %v %v", spec.Name, err, nc.LastError())
		}
		if got := <-answers; got != `{"accept":true}` {
			t.Fatalf("%s: the engine heard %q", spec.Name, got)
		}
	}
}

// An event subscriber answers nothing and publishes nothing: a request a
// worker aims at an event subject (its reply subject is the worker's
// choice) reaches the subscriber with the answerer's reply subject, here
// a queue's announcement with its acknowledgement subject, which the
// subscriber would publish on with a permission to answer, and take the
// task out of the queue.
func TestEventSubscriberAnswersNothing(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	ctx := testutil.Context(t, 60*time.Second)
	cons := s.dispatch(t, ctx, "type_a")
	w, err := s.authority.IssueWorker(natsauth.WorkerSpec{TaskTypes: []string{"type_a"}, Name: "worker-a"})
	if err != nil {
		t.Fatal(err)
	}
	sc, err := s.authority.IssueWorker(natsauth.WorkerSpec{Subscribe: []string{"orders.>"}, Name: "orders"})
	if err != nil {
		t.Fatal(err)
	}
	snc := s.connect(t, sc)
	events, err := snc.SubscribeSync("orders.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := snc.Flush(); err != nil {
		t.Fatal(err)
	}
	wnc := s.connect(t, w)
	if err := wnc.PublishRequest("$JS.API.CONSUMER.MSG.NEXT.FV_DISPATCH."+workers.ConsumerName("type_a", ""), "orders.pulled", []byte(`{"batch":1,"no_wait":true}`)); err != nil {
		t.Fatal(err)
	}
	m, err := events.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatalf("the announcement did not reach the subscriber: %v", err)
	}
	if !strings.HasPrefix(m.Reply, "$JS.ACK.FV_DISPATCH.") {
		t.Fatalf("the announcement came with reply %q, want its acknowledgement subject", m.Reply)
	}
	if err := m.Ack(); err != nil {
		t.Fatal(err)
	}
	refused(t, snc, m.Reply)
	if info, err := cons.Info(ctx); err != nil || info.NumAckPending != 1 {
		t.Fatalf("the queue's consumer: %+v %v, want the announcement still pending", info, err)
	}
	// Events come from EVENT tasks alone.
	if err := snc.Publish("orders.forged", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	refused(t, snc, "orders.forged")
}

// A worker's poll end reaches every engine: a plain subscription in the
// flowvault account, not the queue group a poll goes to.
func TestWorkerEndsItsPolls(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	heard := make(chan *nats.Msg, 4)
	for range 2 {
		sub, err := s.log.Conn().ChanSubscribe(workers.PollEndPrefix+">", heard)
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Unsubscribe()
	}
	if err := s.log.Conn().Flush(); err != nil {
		t.Fatal(err)
	}
	c, err := s.authority.IssueWorker(natsauth.WorkerSpec{TaskTypes: []string{"type_a"}, Name: "worker-a"})
	if err != nil {
		t.Fatal(err)
	}
	nc := s.connect(t, c)
	if err := nc.Publish(workers.PollEndSubject("type_a"), []byte(`{"pollId":"p1"}`)); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil || nc.LastError() != nil {
		t.Fatalf("ending a poll: %v %v", err, nc.LastError())
	}
	for i := range 2 {
		select {
		case m := <-heard:
			if m.Subject != workers.PollEndSubject("type_a") || string(m.Data) != `{"pollId":"p1"}` {
				t.Fatalf("engine %d heard %s: %s", i, m.Subject, m.Data)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("engine %d did not hear the poll end", i)
		}
	}
}
