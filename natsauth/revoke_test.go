package natsauth_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/flowvault/flowvault/natsauth"
)

// A server starts with its workers account closed: credentials revoked
// before a restart must not work until the log's revocations are back.
// Admit opens it; the engine's own account is open all along.
func TestWorkersAccountClosedUntilAdmitted(t *testing.T) {
	t.Parallel()
	s := openServer(t)
	a, l := s.authority, s.log
	w, err := a.IssueWorker(natsauth.WorkerSpec{TaskTypes: []string{"a"}})
	if err != nil {
		t.Fatal(err)
	}
	if nc, err := nats.Connect(l.ClientURL(), patient(append(w.Options(), nats.NoReconnect())...)...); err == nil {
		nc.Close()
		t.Fatal("a worker connected before the workers account was admitted")
	} else if !strings.Contains(err.Error(), "maximum account active connections") {
		t.Fatalf("refused with %v, want the account's connection limit", err)
	}
	engine, err := a.EngineCredentials()
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(l.ClientURL(), patient(engine.Options()...)...)
	if err != nil {
		t.Fatalf("engine refused: %v", err)
	}
	nc.Close()

	if err := a.Admit(l.EmbeddedServer(), nil); err != nil {
		t.Fatal(err)
	}
	nc, err = nats.Connect(l.ClientURL(), patient(w.Options()...)...)
	if err != nil {
		t.Fatalf("worker refused after admission: %v", err)
	}
	nc.Close()
}

// A revocation closes the revoked user's live connection and refuses its
// next one; other users stay. Each Admit replaces the list: a user left
// out of it connects again.
func TestRevocationClosesAndRefuses(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	revoked, err := s.authority.IssueWorker(natsauth.WorkerSpec{TaskTypes: []string{"a"}, Expires: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	kept, err := s.authority.IssueWorker(natsauth.WorkerSpec{TaskTypes: []string{"a"}, Expires: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	closed := make(chan struct{})
	gone := s.connect(t, revoked, nats.NoReconnect(), nats.ClosedHandler(func(*nats.Conn) { close(closed) }))
	stays := s.connect(t, kept, nats.NoReconnect())

	if err := s.authority.Admit(s.log.EmbeddedServer(), map[string]int64{revoked.User: revoked.Expires.Unix()}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-closed:
	case <-time.After(30 * time.Second):
		t.Fatal("the revoked user's connection is still open")
	}
	if !gone.IsClosed() {
		t.Fatal("closed handler called on an open connection")
	}
	if err := stays.Flush(); err != nil {
		t.Fatalf("another user's connection: %v", err)
	}
	if nc, err := nats.Connect(s.log.ClientURL(), patient(append(revoked.Options(), nats.NoReconnect())...)...); err == nil {
		nc.Close()
		t.Fatal("a revoked user connected")
	} else if !errors.Is(err, nats.ErrAuthorization) && !strings.Contains(strings.ToLower(err.Error()), "authorization") {
		t.Fatalf("refused with %v, want an authorization error", err)
	}

	if err := s.authority.Admit(s.log.EmbeddedServer(), nil); err != nil {
		t.Fatal(err)
	}
	s.connect(t, revoked).Close()
}
