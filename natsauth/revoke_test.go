package natsauth_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/natsauth"
	"github.com/flowvault/flowvault/projections"
	"github.com/flowvault/flowvault/schemas"
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
	revoked, gone, closed, _, stays := connectTwo(t, s)

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

// Credentials issued with an event pattern refused since (Unicode white
// space, which the server splits a subscribe permission at: ">\u00a0q"
// allowed ">") stop working: the gate refuses them as it refuses revoked
// ones, and closes their connections; others stay. The ledger, not the
// JWT, is what the gate reads: the credentials connected with are
// issued for a task type, as no pattern of that kind is issued now.
func TestGateRefusesPatternsRefusedSinceIssued(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	spy, _, closed, kept, stays := connectTwo(t, s)

	store := testutil.OpenStore(t)
	rec := testutil.Record(t, natsauth.AuditSubject, 1,
		&schemas.WorkerCredentialsIssued{User: spy.User, By: "app:a", Subscribe: []string{">\u00a0q"}, Expires: spy.Expires.Unix(), Time: 1},
		&schemas.WorkerCredentialsIssued{User: kept.User, By: "app:a", Subscribe: []string{"orders.>"}, Expires: kept.Expires.Unix(), Time: 1})
	if err := store.Update(natsauth.ProjectionName, func(b *projections.Batch) error { return natsauth.Projection{}.Apply(b, rec) }); err != nil {
		t.Fatal(err)
	}
	if err := natsauth.NewGate(s.authority, s.log.EmbeddedServer(), natsauth.NewLedger(store), nil).Sync(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-closed:
	case <-time.After(30 * time.Second):
		t.Fatal("the connection of credentials for \">\\u00a0q\" is still open")
	}
	if err := stays.Flush(); err != nil {
		t.Fatalf("another user's connection: %v", err)
	}
	if nc, err := nats.Connect(s.log.ClientURL(), patient(append(spy.Options(), nats.NoReconnect())...)...); err == nil {
		nc.Close()
		t.Fatal("credentials for \">\\u00a0q\" connected again")
	}
}

// connectTwo issues two workers' credentials, valid for an hour, and
// connects with each, without reconnecting; closed is closed when the
// first's connection is.
func connectTwo(t *testing.T, s *server) (first *natsauth.Credentials, firstConn *nats.Conn, closed <-chan struct{}, second *natsauth.Credentials, secondConn *nats.Conn) {
	t.Helper()
	var creds [2]*natsauth.Credentials
	for i := range creds {
		c, err := s.authority.IssueWorker(natsauth.WorkerSpec{TaskTypes: []string{"a"}, Expires: time.Now().Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		creds[i] = c
	}
	done := make(chan struct{})
	firstConn = s.connect(t, creds[0], nats.NoReconnect(), nats.ClosedHandler(func(*nats.Conn) { close(done) }))
	return creds[0], firstConn, done, creds[1], s.connect(t, creds[1], nats.NoReconnect())
}

// brokenRights fails to read the rights of one principal while broken,
// and lets every principal hold its credentials otherwise.
type brokenRights struct {
	principal string
	broken    atomic.Bool
}

func (b *brokenRights) MayHold(_ context.Context, c natsauth.Issued) (bool, error) {
	if c.IssuedBy == b.principal && b.broken.Load() {
		return false, errors.New("principal record unreadable")
	}
	return true, nil
}

// One principal whose rights cannot be read holds back no one else's
// revocation: the revoked credentials' connection is closed, and those
// of the unreadable principal are refused too (closed, as no answer is
// no right) until a later Sync reads its rights, which Run tries again
// soon, not at its next interval. Sync says which it could not check,
// once it has applied the list.
func TestGateRevokesPastAnUnreadablePrincipal(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	revoked, _, closed, unread, unreadConn := connectTwo(t, s)
	unreadClosed := make(chan struct{})
	unreadConn.SetClosedHandler(func(*nats.Conn) { close(unreadClosed) })

	rights := &brokenRights{principal: "app:broken"}
	rights.broken.Store(true)
	g := newGate(t, s, rights,
		&schemas.WorkerCredentialsIssued{User: revoked.User, By: "app:a", TaskTypes: []string{"a"}, Expires: revoked.Expires.Unix(), Time: 1},
		&schemas.WorkerCredentialsIssued{User: unread.User, By: rights.principal, TaskTypes: []string{"a"}, Expires: unread.Expires.Unix(), Time: 1},
		&schemas.WorkerCredentialsRevoked{User: revoked.User, By: "app:a", Time: 2})
	if err := g.Sync(); !errors.Is(err, natsauth.ErrUnchecked) || !strings.Contains(err.Error(), unread.User) {
		t.Errorf("Sync: %v, want ErrUnchecked naming %s", err, unread.User)
	}
	for name, done := range map[string]<-chan struct{}{"revoked": closed, "unreadable principal's": unreadClosed} {
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Fatalf("the %s credentials' connection is still open", name)
		}
	}

	rights.broken.Store(false)
	runGate(t, g)
	waitAdmitted(t, s, unread, "credentials whose principal's rights are readable again")
	if nc, err := nats.Connect(s.log.ClientURL(), patient(append(revoked.Options(), nats.NoReconnect())...)...); err == nil {
		nc.Close()
		t.Fatal("revoked credentials connected")
	}
}

// A Sync that fails outside Run (RevokeWorker's, after Run's own
// succeeded) is tried again soon too: Run, waiting with no retry armed,
// hears of it. Nothing changes afterwards that would make it sync.
func TestGateRetriesASyncThatFailedOutsideRun(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	c, err := s.authority.IssueWorker(natsauth.WorkerSpec{TaskTypes: []string{"a"}, Expires: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	rights := &brokenRights{principal: "app:broken"}
	g := newGate(t, s, rights,
		&schemas.WorkerCredentialsIssued{User: c.User, By: rights.principal, TaskTypes: []string{"a"}, Expires: c.Expires.Unix(), Time: 1})
	runGate(t, g)
	g.Notify()
	waitAdmitted(t, s, c, "credentials admitted by Run's Sync")

	rights.broken.Store(true)
	if err := g.Sync(); !errors.Is(err, natsauth.ErrUnchecked) {
		t.Fatalf("Sync: %v, want ErrUnchecked", err)
	}
	if nc, err := nats.Connect(s.log.ClientURL(), patient(append(c.Options(), nats.NoReconnect())...)...); err == nil {
		nc.Close()
		t.Fatal("credentials whose principal's rights could not be read connected")
	}
	rights.broken.Store(false)
	waitAdmitted(t, s, c, "credentials whose principal's rights are readable again")
}

// newGate returns a gate over a ledger of events, refusing the
// credentials rights says may not be held. It has not synced.
func newGate(t *testing.T, s *server, rights *brokenRights, events ...schemas.Event) *natsauth.Gate {
	t.Helper()
	store := testutil.OpenStore(t)
	rec := testutil.Record(t, natsauth.AuditSubject, 1, events...)
	if err := store.Update(natsauth.ProjectionName, func(b *projections.Batch) error { return natsauth.Projection{}.Apply(b, rec) }); err != nil {
		t.Fatal(err)
	}
	g := natsauth.NewGate(s.authority, s.log.EmbeddedServer(), natsauth.NewLedger(store), nil)
	g.RefuseUnentitled(rights)
	return g
}

// runGate runs g until the test ends, with an interval no test reaches:
// it syncs when told to, or to retry a failed Sync.
func runGate(t *testing.T, g *natsauth.Gate) {
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() {
		defer close(ran)
		g.Run(ctx, time.Hour, 10*time.Millisecond)
	}()
	t.Cleanup(func() { cancel(); <-ran })
}

// waitAdmitted waits until c connects, failing the test after 30 s.
func waitAdmitted(t *testing.T, s *server, c *natsauth.Credentials, what string) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		nc, err := nats.Connect(s.log.ClientURL(), patient(append(c.Options(), nats.NoReconnect())...)...)
		if err == nil {
			nc.Close()
			return
		}
		select {
		case <-deadline:
			t.Fatalf("%s still refused: %v", what, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
