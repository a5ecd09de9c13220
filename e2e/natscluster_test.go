package e2e_test

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flowvault/flowvault/internal/nodetest"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/node"
	"github.com/flowvault/flowvault/secrets"
)

// natsCluster is three nats-servers in the test's process, routed to each
// other, configured as the README tells an operator of --nats: JetStream
// with sync_interval always, max_payload of 8 MB, and an account of
// flowvault's own holding the engines' user and a workers' user.
type natsCluster struct {
	t       testing.TB
	servers []*server.Server
	dirs    []string
}

const (
	clusterEngineUser, clusterEnginePass = "engine", "engine-pass"
	clusterWorkerUser, clusterWorkerPass = "worker", "worker-pass"
)

// natsClusterConf is one server's configuration: its name, store dir,
// cluster port and routes.
const natsClusterConf = `
listen: 127.0.0.1:-1
server_name: %s
max_payload: 8MB
jetstream { store_dir: '%s', sync_interval: always, max_file_store: 1GB, max_memory_store: 256MB }
cluster { name: fv, listen: 127.0.0.1:%d, routes: [%s] }
accounts {
  FLOWVAULT {
    jetstream: enabled
    users: [
      { user: %s, password: %s }
      # The worker protocol's subjects (docs/worker-protocol.md), for any
      # task type: a test's workers share one user.
      { user: %s, password: %s, permissions: {
          publish: ["fv.engine.take.>", "fv.engine.poll.>", "fv.engine.result.>", "fv.engine.pollend.>",
                    "$JS.API.CONSUMER.INFO.FV_DISPATCH.>", "$JS.API.CONSUMER.MSG.NEXT.FV_DISPATCH.>", "$JS.ACK.FV_DISPATCH.>"]
          subscribe: ["_INBOX.>"]
          allow_responses: { max: 1, expires: "1m" } } }
    ]
  }
  SYS { users: [ { user: sys, password: sys } ] }
}
system_account: SYS
`

func startNATSCluster(t testing.TB) *natsCluster {
	t.Helper()
	const n = 3
	ports := make([]int, n)
	for i := range ports {
		ports[i] = freePort(t)
	}
	c := &natsCluster{t: t}
	for i := range n {
		var routes []string
		for j, p := range ports {
			if j != i {
				routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", p))
			}
		}
		dir := t.TempDir()
		conf := filepath.Join(dir, "server.conf")
		text := fmt.Sprintf(natsClusterConf, fmt.Sprintf("s%d", i), filepath.Join(dir, "js"), ports[i], strings.Join(routes, ", "),
			clusterEngineUser, clusterEnginePass, clusterWorkerUser, clusterWorkerPass)
		if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		opts, err := server.ProcessConfigFile(conf)
		if err != nil {
			t.Fatalf("nats config: %v", err)
		}
		opts.NoLog, opts.NoSigs = true, true
		s, err := server.NewServer(opts)
		if err != nil {
			t.Fatalf("nats server %d: %v", i, err)
		}
		go s.Start()
		if !s.ReadyForConnections(10 * time.Second) {
			t.Fatalf("nats server %d not ready", i)
		}
		c.servers = append(c.servers, s)
		c.dirs = append(c.dirs, filepath.Join(dir, "js"))
	}
	t.Cleanup(func() {
		for _, s := range c.servers {
			s.Shutdown()
			s.WaitForShutdown()
		}
	})
	testutil.Eventually(t, 20*time.Second, 50*time.Millisecond, func() error {
		leaders := 0
		for i, s := range c.servers {
			if !s.JetStreamIsCurrent() {
				return fmt.Errorf("server %d's JetStream is not current", i)
			}
			if s.JetStreamIsLeader() {
				leaders++
			}
		}
		if leaders != 1 {
			return fmt.Errorf("%d meta leaders", leaders)
		}
		return nil
	})
	return c
}

// url is server i's client URL, with user's password.
func (c *natsCluster) url(i int, user, pass string) string {
	u, err := url.Parse(c.servers[i].ClientURL())
	if err != nil {
		c.t.Fatal(err)
	}
	u.User = url.UserPassword(user, pass)
	return u.String()
}

// conn connects to server i as user (an engine or the workers).
func (c *natsCluster) conn(i int, user, pass string) *nats.Conn {
	c.t.Helper()
	nc, err := nats.Connect(c.url(i, user, pass), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(nc.Close)
	return nc
}

// startNode starts a flowvault node on server i, keeping replicas copies.
func (c *natsCluster) startNode(i, replicas int, tweak func(*node.Config)) (*node.Node, node.Config) {
	c.t.Helper()
	cfg := nodetest.Config(filepath.Join(c.t.TempDir(), "data"))
	cfg.NATSURL = c.url(i, clusterEngineUser, clusterEnginePass)
	cfg.NATSReplicas = replicas
	if tweak != nil {
		tweak(&cfg)
	}
	n, _ := nodetest.StartConfig(c.t, cfg)
	return n, cfg
}

// leaderOf is the index of the server leading stream, or -1.
func (c *natsCluster) leaderOf(stream string) int {
	for i, s := range c.servers {
		if s.Running() && s.JetStreamIsStreamLeader("FLOWVAULT", stream) {
			return i
		}
	}
	return -1
}

// Every stream and bucket a node creates on a cluster keeps the replicas
// it was given.
func TestNATSClusterStreamsKeepReplicas(t *testing.T) {
	c := startNATSCluster(t)
	c.startNode(0, 3, nil)
	js, err := jetstream.New(c.conn(1, clusterEngineUser, clusterEnginePass))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	l := js.ListStreams(ctx)
	var seen []string
	for info := range l.Info() {
		seen = append(seen, fmt.Sprintf("%s R%d %s peers=%d", info.Config.Name, info.Config.Replicas, info.Config.Storage, 1+len(info.Cluster.Replicas)))
		if strings.HasPrefix(info.Config.Name, "KV_"+secrets.KeyBucket) && info.Config.AllowDirect {
			t.Errorf("%s: followers answer direct gets, and may not have a key just created yet", info.Config.Name)
		}
	}
	if l.Err() != nil {
		t.Fatal(l.Err())
	}
	for _, line := range seen {
		if !strings.Contains(line, " R3 ") || !strings.HasSuffix(line, "peers=3") {
			t.Errorf("stream %s: want R3 on three peers", line)
		}
	}
	if len(seen) < 8 {
		t.Errorf("streams:\n%s", strings.Join(seen, "\n"))
	}
}
