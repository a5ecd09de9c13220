package e2e_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/events"
	"github.com/flowvault/flowvault/executor"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/secrets"
)

// A follower made while its cluster has no meta leader is lost
// (ErrFollowerLost), which its read model follows again from. A server
// that knows its meta leader gone answers the making of a consumer with
// "JetStream system temporarily unavailable" (10008) until another is
// elected, seconds after a kill: the follow failed with that answer, and
// its read model stopped for good. Here the other two servers are gone,
// so server 0 stays without one: the follower asks for a meta leader
// before it makes its consumer, and is lost with that answer once it has
// waited long enough for an election.
func TestNATSClusterFollowWithoutAMetaLeaderIsLost(t *testing.T) {
	c := startNATSCluster(t)
	l := c.openClusterLog(0)
	for i := 1; i < 3; i++ {
		c.servers[i].Shutdown()
		c.servers[i].WaitForShutdown()
	}
	c.awaitNoMetaLeader(0)

	ctx := testutil.Context(t, 30*time.Second)
	f, err := l.Follow(ctx, eventlog.Metadata.Name, 0)
	if err == nil {
		f.Stop()
		t.Fatal("followed without a meta leader")
	}
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) || apiErr.ErrorCode != 10008 {
		t.Fatalf("follow without a meta leader: %v, want the server's 10008 answer", err)
	}
	if !errors.Is(err, eventlog.ErrFollowerLost) {
		t.Fatalf("follow without a meta leader: %v, want it lost (followed again)", err)
	}
}

// awaitNoMetaLeader waits until server i answers a consumer's making with
// "JetStream system temporarily unavailable" (10008): it knows it has no
// meta leader (once its meta group has lived 10 s, nats-server's
// lostQuorumInterval).
func (c *natsCluster) awaitNoMetaLeader(i int) {
	c.t.Helper()
	nc := c.conn(i, clusterEngineUser, clusterEnginePass)
	req, err := json.Marshal(map[string]any{"stream_name": eventlog.Metadata.Name,
		"config": map[string]any{"ack_policy": "none", "mem_storage": true, "num_replicas": 1}})
	if err != nil {
		c.t.Fatal(err)
	}
	testutil.Eventually(c.t, 60*time.Second, 200*time.Millisecond, func() error {
		msg, err := nc.Request("$JS.API.CONSUMER.CREATE."+eventlog.Metadata.Name, req, 2*time.Second)
		if err != nil {
			return err
		}
		var resp struct {
			Error *jetstream.APIError `json:"error"`
		}
		if err := json.Unmarshal(msg.Data, &resp); err != nil {
			return err
		}
		if resp.Error == nil || resp.Error.ErrorCode != 10008 {
			return fmt.Errorf("answered %s, want error 10008", msg.Data)
		}
		return nil
	})
}

// A durable subscription (the start commands', a dispatch queue's
// consumer) made while its cluster has no meta leader waits for one, then
// delivers what its stream held and what comes after, once each: it
// failed with the server's 10008 answer (an engine started during an
// election failed its start). Here the other two servers are gone until
// the subscription has been answered so twice.
func TestNATSClusterSubscribeWaitsForAMetaLeader(t *testing.T) {
	c := startNATSCluster(t)
	l := c.openClusterLog(0)
	ctx := testutil.Context(t, 2*time.Minute)
	const subject = "fv.cmd.start.leaderless"
	if _, _, err := l.Publish(ctx, &nats.Msg{Subject: subject, Data: []byte("before")}); err != nil {
		t.Fatal(err)
	}
	for i := 1; i < 3; i++ {
		c.servers[i].Shutdown()
		c.servers[i].WaitForShutdown()
	}
	c.awaitNoMetaLeader(0)
	var mu sync.Mutex
	var got []string
	var sub *eventlog.Subscription
	c.waitsForAMetaLeader("subscribe", func() (err error) {
		sub, err = l.Subscribe(ctx, eventlog.ConsumerConfig{Stream: eventlog.Commands.Name, Durable: "leaderless",
			Filter: subject, AckWait: time.Minute, MaxDeliver: -1}, func(_ context.Context, d eventlog.Delivery) error {
			mu.Lock()
			defer mu.Unlock()
			got = append(got, string(d.Data))
			return nil
		})
		return err
	})
	defer sub.Stop()
	// The stream's leader may still be elected: its answer lost, the
	// publish is sent again under one message id, stored once.
	after := &nats.Msg{Subject: subject, Data: []byte("after"), Header: nats.Header{nats.MsgIdHdr: []string{"leaderless-after"}}}
	testutil.Eventually(t, 60*time.Second, 100*time.Millisecond, func() error {
		_, _, err := l.Publish(ctx, after)
		return err
	})
	stream, err := l.JetStream().Stream(ctx, eventlog.Commands.Name)
	if err != nil {
		t.Fatal(err)
	}
	// Acknowledged, a work queue's message is gone.
	testutil.Eventually(t, 30*time.Second, 20*time.Millisecond, func() error {
		info, err := stream.Info(ctx)
		if err != nil {
			return err
		}
		if info.State.Msgs != 0 {
			return fmt.Errorf("%d messages not acknowledged", info.State.Msgs)
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(got, ",") != "before,after" {
		t.Fatalf("delivered %q, want each message once", got)
	}
}

// waitsForAMetaLeader runs do while server 0 has no meta leader (servers
// 1 and 2 down), sees it wait rather than end, its request answered
// 10008 twice (server 0 counts each as an error of its API), then starts
// servers 1 and 2 again and fails the test unless do succeeds.
func (c *natsCluster) waitsForAMetaLeader(what string, do func() error) {
	c.t.Helper()
	apiErrors := func() uint64 {
		jsz, err := c.servers[0].Jsz(nil)
		if err != nil {
			c.t.Fatal(err)
		}
		return jsz.API.Errors
	}
	before := apiErrors()
	done := make(chan error, 1)
	go func() { done <- do() }()
	testutil.Eventually(c.t, 30*time.Second, 20*time.Millisecond, func() error {
		select {
		case err := <-done:
			c.t.Fatalf("%s without a meta leader: %v, want it to wait for one", what, err)
		default:
		}
		if apiErrors() < before+2 {
			return fmt.Errorf("%s has not been answered twice yet", what)
		}
		return nil
	})
	c.servers[1], c.servers[2] = c.run(1), c.run(2)
	if err := <-done; err != nil {
		c.t.Fatalf("%s once a meta leader is back: %v", what, err)
	}
}

// What an engine's start makes next to the log (its secrets' key buckets,
// its presence, the event handlers' bucket), made while its cluster has
// no meta leader, waits for one: an engine started during an election
// failed its start ("KV_FV_KEYS_WF10: context deadline exceeded", in 2 of
// 8 runs of a helper's kills), although the same request succeeds seconds
// later. Here the other two servers are gone until the making has been
// answered 10008 twice.
func TestNATSClusterStartsMakeTheirBucketsOnceThereIsAMetaLeader(t *testing.T) {
	for _, tc := range []struct {
		what   string
		stream string
		make   func(ctx context.Context, t *testing.T, l *eventlog.Log) error
	}{
		{"the secrets' key buckets", "KV_" + secrets.KeyBucket + "_WF15", func(ctx context.Context, t *testing.T, l *eventlog.Log) error {
			_, err := secrets.OpenKeys(ctx, l.JetStream(), nil, secrets.KeysOptions{Replicas: 3,
				DevKeyFile: filepath.Join(t.TempDir(), "dev.key"), Guard: l, Forming: l})
			return err
		}},
		{"the event handlers' bucket", "KV_" + events.SeenBucket, func(ctx context.Context, t *testing.T, l *eventlog.Log) error {
			_, err := events.OpenSeen(ctx, l.JetStream(), 3, l, testutil.Logger(t))
			return err
		}},
		{"an engine's presence", "KV_FV_ENGINES", func(ctx context.Context, t *testing.T, l *eventlog.Log) error {
			e := executor.New(l, undefined{}, nil, executor.Config{Logger: testutil.Logger(t)})
			if err := e.Start(ctx); err != nil {
				return err
			}
			e.Stop()
			return nil
		}},
	} {
		t.Run(tc.what, func(t *testing.T) {
			t.Parallel() // mostly waits, for an election and for answers
			c := startNATSCluster(t)
			l := c.openClusterLog(0)
			ctx := testutil.Context(t, 2*time.Minute)
			for i := 1; i < 3; i++ {
				c.servers[i].Shutdown()
				c.servers[i].WaitForShutdown()
			}
			c.awaitNoMetaLeader(0)
			c.waitsForAMetaLeader("make "+tc.what, func() error { return tc.make(ctx, t, l) })
			st, err := l.JetStream().Stream(ctx, tc.stream)
			if err != nil {
				t.Fatalf("%s: %v", tc.stream, err)
			}
			if got := st.CachedInfo().Config.Replicas; got != 3 {
				t.Fatalf("%s keeps %d copies, want 3", tc.stream, got)
			}
		})
	}
}

// undefined defines nothing: an engine that is only started.
type undefined struct{}

func (undefined) LookupWorkflowDef(_ context.Context, name string, _ *int) (*conductor.WorkflowDef, error) {
	return nil, fault.NotFound("workflow definition %s not found", name)
}

func (undefined) LookupTaskDef(context.Context, string) (*conductor.TaskDef, bool, error) {
	return nil, false, nil
}

func (undefined) CheckWorkflowDef(*conductor.WorkflowDef) error { return nil }

func (undefined) WorkflowOwner(_ context.Context, name string) (string, error) {
	return "", fault.NotFound("workflow definition %s not found", name)
}
