package e2e_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/internal/testutil"
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
	// Server 0 counts each 10008 it answers as an error of its API.
	apiErrors := func() uint64 {
		jsz, err := c.servers[0].Jsz(nil)
		if err != nil {
			t.Fatal(err)
		}
		return jsz.API.Errors
	}
	before := apiErrors()

	var mu sync.Mutex
	var got []string
	type subscribed struct {
		sub *eventlog.Subscription
		err error
	}
	done := make(chan subscribed, 1)
	go func() {
		sub, err := l.Subscribe(ctx, eventlog.ConsumerConfig{Stream: eventlog.Commands.Name, Durable: "leaderless",
			Filter: subject, AckWait: time.Minute, MaxDeliver: -1}, func(_ context.Context, d eventlog.Delivery) error {
			mu.Lock()
			defer mu.Unlock()
			got = append(got, string(d.Data))
			return nil
		})
		done <- subscribed{sub, err}
	}()
	testutil.Eventually(t, 30*time.Second, 20*time.Millisecond, func() error {
		select {
		case s := <-done:
			t.Fatalf("subscribed without a meta leader: %v, want it to wait for one", s.err)
		default:
		}
		// Its first request answered 10008, and another since.
		if apiErrors() < before+2 {
			return errors.New("the subscription has not been answered twice yet")
		}
		return nil
	})
	c.servers[1], c.servers[2] = c.run(1), c.run(2)
	s := <-done
	if s.err != nil {
		t.Fatalf("subscribe once a meta leader is back: %v", s.err)
	}
	defer s.sub.Stop()
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
