package node_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flowvault/flowvault/internal/nodetest"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/node"
)

// A request still in its handler when a stop's budget runs out is
// answered 503 once the read models' store is closed: the stop goes on
// closing Pebble behind the handler, whose read of it panicked (answered
// 500, or a crash for a read outside the API's recovery).
func TestHandlerPastTheStopBudgetAnswersUnavailable(t *testing.T) {
	t.Parallel()
	cfg := nodetest.Config(filepath.Join(t.TempDir(), "data"))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := node.Start(ctx, cfg, testutil.Logger(t))
	if err != nil {
		t.Fatalf("start node: %v", err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = n.Stop(context.Background())
		}
	})
	conn, err := net.Dial("tcp", strings.TrimPrefix(n.URL(), "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// The server asks for the body once the handler reads it (Expect:
	// 100-continue): the handler runs from then on, waiting for a body
	// the test sends once the node has stopped.
	body := `{"held":true}`
	if _, err := fmt.Fprintf(conn, "POST /api/workflow/held HTTP/1.1\r\nHost: node\r\nContent-Type: application/json\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n", len(body)); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	answers := bufio.NewReader(conn)
	if res, err := http.ReadResponse(answers, nil); err != nil || res.StatusCode != http.StatusContinue {
		t.Fatalf("the handler did not ask for the body: %v %v", res, err)
	}
	budget, cancelBudget := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancelBudget()
	if err := n.Stop(budget); err == nil || !strings.Contains(err.Error(), "the HTTP server") {
		t.Fatalf("stop with a request held in its handler = %v, want the budget ran out in the HTTP server", err)
	}
	// The stop goes on past its budget; a second waits for its end: the
	// store is closed then.
	if err := n.Stop(context.Background()); err == nil {
		t.Fatal("the stop's end reported no error, want the budget's")
	}
	stopped = true
	if _, err := conn.Write([]byte(body)); err != nil {
		t.Fatal(err)
	}
	res, err := http.ReadResponse(answers, nil)
	if err != nil {
		t.Fatalf("the held request got no answer: %v", err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("the held request = %d, want 503", res.StatusCode)
	}
}
