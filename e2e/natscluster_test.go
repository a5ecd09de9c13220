package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
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
	servers []*server.Server  // nil for the server run as a process
	opts    []*server.Options // each in-process server's, for restart
	dirs    []string
	// proc is the index of the server run as a child process (-1: none):
	// kill ends it with SIGKILL, a crash, where an in-process server's
	// Shutdown first hands its raft leaderships over.
	proc     int
	procCmd  *exec.Cmd
	procURL  string
	procDone chan struct{} // closed once the process has exited
	apiMu    sync.Mutex
	api      jetstream.JetStream // leaderOf's questions about the process
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
	return startNATSClusterProc(t, -1)
}

// startNATSClusterProc is startNATSCluster with server proc run as a
// child process, a nats-server built from the module's version (-1:
// none).
func startNATSClusterProc(t testing.TB, proc int) *natsCluster {
	t.Helper()
	const n = 3
	ports := make([]int, n)
	for i := range ports {
		ports[i] = testutil.FreePort(t)
	}
	c := &natsCluster{t: t, proc: proc}
	for i := range n {
		var routes []string
		for j, p := range ports {
			if j != i {
				routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", p))
			}
		}
		dir := t.TempDir()
		conf := filepath.Join(dir, "server.conf")
		text := fmt.Sprintf(natsClusterConf, c.name(i), filepath.Join(dir, "js"), ports[i], strings.Join(routes, ", "),
			clusterEngineUser, clusterEnginePass, clusterWorkerUser, clusterWorkerPass)
		if i == proc {
			c.startProc(conf, text)
			c.servers, c.opts = append(c.servers, nil), append(c.opts, nil)
			c.dirs = append(c.dirs, filepath.Join(dir, "js"))
			continue
		}
		if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		opts, err := server.ProcessConfigFile(conf)
		if err != nil {
			t.Fatalf("nats config: %v", err)
		}
		opts.NoLog, opts.NoSigs = true, true
		c.opts = append(c.opts, opts)
		c.servers = append(c.servers, c.run(i))
		c.dirs = append(c.dirs, filepath.Join(dir, "js"))
	}
	t.Cleanup(func() {
		for _, s := range c.servers {
			if s != nil {
				s.Shutdown()
				s.WaitForShutdown()
			}
		}
	})
	testutil.Eventually(t, 20*time.Second, 50*time.Millisecond, func() error {
		leaders := 0
		for i, s := range c.servers {
			if s == nil {
				continue
			}
			if !s.JetStreamIsCurrent() {
				return fmt.Errorf("server %d's JetStream is not current", i)
			}
			if s.JetStreamIsLeader() {
				leaders++
			}
		}
		if leaders == 0 && proc >= 0 {
			// The process may lead the meta group: an answer from the
			// JetStream API says there is a leader.
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			if _, err := c.jsAPI().AccountInfo(ctx); err != nil {
				return fmt.Errorf("no meta leader: %w", err)
			}
			leaders = 1
		}
		if leaders != 1 {
			return fmt.Errorf("%d meta leaders", leaders)
		}
		return nil
	})
	return c
}

// run starts in-process server i with its options, and waits until it
// takes connections.
func (c *natsCluster) run(i int) *server.Server {
	c.t.Helper()
	s, err := server.NewServer(c.opts[i].Clone())
	if err != nil {
		c.t.Fatalf("nats server %d: %v", i, err)
	}
	go s.Start()
	// Under make test's load beside a fuzzer, 10 s were not enough.
	if !s.ReadyForConnections(30 * time.Second) {
		c.t.Fatalf("nats server %d not ready in 30 s", i)
	}
	return s
}

// startProc runs a server as a child process with the configuration text
// (its client port fixed, to know its URL), and waits until it takes
// connections.
func (c *natsCluster) startProc(conf, text string) {
	c.t.Helper()
	port := testutil.FreePort(c.t)
	text = strings.Replace(text, "listen: 127.0.0.1:-1", fmt.Sprintf("listen: 127.0.0.1:%d", port), 1)
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		c.t.Fatal(err)
	}
	bin := buildNATSServer(c.t)
	logf, err := os.Create(filepath.Join(filepath.Dir(conf), "server.log"))
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { logf.Close() })
	c.procCmd = exec.Command(bin, "-c", conf)
	c.procCmd.Stdout, c.procCmd.Stderr = logf, logf
	if err := c.procCmd.Start(); err != nil {
		c.t.Fatalf("nats server process: %v", err)
	}
	c.procDone = make(chan struct{})
	go func() {
		_ = c.procCmd.Wait()
		close(c.procDone)
	}()
	c.t.Cleanup(func() { c.kill() })
	c.procURL = fmt.Sprintf("nats://127.0.0.1:%d", port)
	testutil.Eventually(c.t, 20*time.Second, 50*time.Millisecond, func() error {
		nc, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err != nil {
			return err
		}
		return nc.Close()
	})
}

// kill ends the server run as a process with SIGKILL, and waits until it
// has exited.
func (c *natsCluster) kill() {
	if c.procCmd == nil {
		return
	}
	_ = c.procCmd.Process.Kill()
	<-c.procDone
}

// buildNATSServer compiles the module's nats-server into a temporary
// directory.
func buildNATSServer(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "nats-server")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/nats-io/nats-server/v2")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build nats-server: %v\n%s", err, out)
	}
	return bin
}

// jsAPI is a JetStream client on an in-process server, for what only the
// API tells of the server run as a process.
func (c *natsCluster) jsAPI() jetstream.JetStream {
	c.apiMu.Lock()
	defer c.apiMu.Unlock()
	if c.api == nil {
		i := (c.proc + 1) % len(c.servers)
		nc, err := nats.Connect(c.servers[i].ClientURL(), nats.UserInfo(clusterEngineUser, clusterEnginePass), nats.MaxReconnects(-1))
		if err != nil {
			c.t.Fatal(err)
		}
		c.t.Cleanup(nc.Close)
		if c.api, err = jetstream.New(nc); err != nil {
			c.t.Fatal(err)
		}
	}
	return c.api
}

// url is server i's client URL, with user's password.
func (c *natsCluster) url(i int, user, pass string) string {
	addr := c.procURL
	if i != c.proc {
		addr = c.servers[i].ClientURL()
	}
	u, err := url.Parse(addr)
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
		if s != nil && s.Running() && s.JetStreamIsStreamLeader("FLOWVAULT", stream) {
			return i
		}
	}
	if c.proc < 0 {
		return -1
	}
	select {
	case <-c.procDone:
		return -1
	default:
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	s, err := c.jsAPI().Stream(ctx, stream)
	if err != nil {
		return -1
	}
	if info := s.CachedInfo(); info.Cluster != nil && info.Cluster.Leader == c.name(c.proc) {
		return c.proc
	}
	return -1
}

// name is server i's server_name.
func (c *natsCluster) name(i int) string { return fmt.Sprintf("s%d", i) }

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

// leadMeta moves the JetStream meta group's leadership, which creates
// consumers and streams, to server i.
func (c *natsCluster) leadMeta(i int) {
	c.t.Helper()
	nc := c.conn((i+1)%len(c.servers), "sys", "sys")
	req, _ := json.Marshal(map[string]any{"placement": map[string]any{"preferred": c.name(i)}})
	testutil.Eventually(c.t, 30*time.Second, 200*time.Millisecond, func() error {
		leader := -1
		for j, s := range c.servers {
			if s != nil && s.JetStreamIsLeader() {
				leader = j
			}
		}
		if leader < 0 && (c.servers[i] == nil || c.servers[i].JetStreamIsLeader()) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			if _, err := c.jsAPI().AccountInfo(ctx); err == nil {
				return nil // led by the process, which is server i
			}
		}
		if leader == i {
			return nil
		}
		m, err := nc.Request("$JS.API.META.LEADER.STEPDOWN", req, 5*time.Second)
		if err != nil {
			return fmt.Errorf("meta step down: %w", err)
		}
		return fmt.Errorf("meta led by server %d after a step down (%s)", leader, m.Data)
	})
}
