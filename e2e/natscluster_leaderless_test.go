package e2e_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

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
	// The premise: server 0 answers a consumer's making with 10008 (once
	// its meta group has lived 10 s, nats-server's lostQuorumInterval).
	nc := c.conn(0, clusterEngineUser, clusterEnginePass)
	req, err := json.Marshal(map[string]any{"stream_name": eventlog.Metadata.Name,
		"config": map[string]any{"ack_policy": "none", "mem_storage": true, "num_replicas": 1}})
	if err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 60*time.Second, 200*time.Millisecond, func() error {
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
