package testutil

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"testing"
)

// FreePort returns a port for a server that must listen on it again (a
// restarted process, RestartNATS, a cluster's routes, which name their
// peers' ports) or that others name before it listens (a cluster's other
// servers). A port the kernel gave a listener on port 0 is one of its
// ephemeral range, which the local end of any connection may take
// meanwhile: a cluster's second server, whose route port a connection
// took while the first server started, never became ready ("nats server
// 1 not ready in 30 s", stop 68's CI). The ports handed out lie below
// that range, each once per test process, from a random start so that
// processes rarely meet.
func FreePort(t testing.TB) int {
	t.Helper()
	ports.Lock()
	defer ports.Unlock()
	if ports.next == 0 {
		ports.below = lowestEphemeralPort()
		ports.next = ports.from + rand.IntN(ports.below-ports.from)
	}
	for range ports.below - ports.from {
		p := ports.next
		if ports.next++; ports.next >= ports.below {
			ports.next = ports.from
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue // another process's
		}
		l.Close()
		return p
	}
	t.Fatalf("no free port from %d to %d", ports.from, ports.below)
	return 0
}

var ports = struct {
	sync.Mutex
	from, below, next int
}{from: 20000}

// lowestEphemeralPort is the start of the kernel's ephemeral port range
// (Linux's default when it cannot be read).
func lowestEphemeralPort() int {
	lo := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if _, err := fmt.Sscan(string(b), &lo); err != nil || lo <= ports.from+1000 {
			lo = 32768
		}
	}
	return lo
}
