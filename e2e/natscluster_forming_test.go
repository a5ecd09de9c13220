package e2e_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas"
)

// An engine started while its cluster cannot place its streams (here two
// servers of three down, before the streams exist) waits for the cluster
// rather than failing its start: the server it reached answered "no
// suitable peers for placement, peer offline", and the start failed at
// once, although it succeeds as soon as the peers are back (make test met
// it under load, every server up but one not yet heard from).
func TestNATSClusterEngineStartsOnceItsPeersAreBack(t *testing.T) {
	c := startNATSCluster(t)
	for _, i := range []int{1, 2} {
		c.servers[i].Shutdown()
		c.servers[i].WaitForShutdown()
	}
	logger, logs := testutil.CapturingLogger()
	cfg := eventlog.DefaultConfig()
	cfg.URL, cfg.User, cfg.Password = c.servers[0].ClientURL(), clusterEngineUser, clusterEnginePass
	cfg.Replicas = 3
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	type opened struct {
		l   *eventlog.Log
		err error
	}
	done := make(chan opened, 1)
	go func() {
		l, err := eventlog.Open(ctx, cfg, eventlog.Options{Logger: logger})
		done <- opened{l, err}
	}()
	testutil.Eventually(t, 30*time.Second, 20*time.Millisecond, func() error {
		select {
		case o := <-done:
			done <- o
			t.Fatalf("the log opened, or failed to, with two peers down: %v", o.err)
		default:
		}
		if !strings.Contains(logs.String(), "the NATS cluster is not ready") {
			return errors.New("no warning of a cluster not ready yet")
		}
		return nil
	})

	c.servers[1], c.servers[2] = c.run(1), c.run(2)
	o := <-done
	if o.err != nil {
		t.Fatalf("open once the peers are back: %v", o.err)
	}
	defer o.l.Close()
	env, err := schemas.Default.Encode(&testutil.Note{Text: "after"})
	if err != nil {
		t.Fatal(err)
	}
	env.ID = "forming-1"
	if _, err := o.l.Append(ctx, "fv.wf.forming", []schemas.Envelope{env}, 0); err != nil {
		t.Fatalf("append: %v", err)
	}
}
