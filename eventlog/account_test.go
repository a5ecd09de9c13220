package eventlog_test

import (
	"errors"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/natsauth"
	"github.com/flowvault/flowvault/secrets"
)

// A store written before the server required credentials (the anonymous
// account) opens under the authenticated account with its history; a
// store of another account (another master key) does not open.
func TestStoreMovesIntoAccount(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ctx := testutil.Context(t, 60*time.Second)
	old, err := eventlog.Open(ctx, testutil.LogConfig(dir), eventlog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := old.Append(ctx, "fv.wf.before", notes(t, "before", 2), eventlog.ExpectAny); err != nil {
		t.Fatal(err)
	}
	old.Close()

	open := func(a *natsauth.Authority) (*eventlog.Log, error) {
		cfg := testutil.LogConfig(dir)
		cfg.Listen = "127.0.0.1:0"
		return eventlog.Open(ctx, cfg, eventlog.Options{Auth: a})
	}
	mk := secrets.GenerateMasterKey()
	a, err := natsauth.New(mk)
	if err != nil {
		t.Fatal(err)
	}
	l, err := open(a)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := l.ReadSubject(ctx, "fv.wf.before", 0)
	l.Close()
	if err != nil || len(recs) != 1 || len(recs[0].Events) != 2 {
		t.Fatalf("history after the move: %d records, %v", len(recs), err)
	}

	other, err := natsauth.New(secrets.GenerateMasterKey())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := open(other); !errors.Is(err, eventlog.ErrAccountMismatch) {
		t.Fatalf("another account's key: %v, want ErrAccountMismatch", err)
	}
	// The same key opens it again.
	if l, err = open(a); err != nil {
		t.Fatal(err)
	}
	l.Close()
}

// An embedded server listens only with an authenticator, and takes no
// external server's credentials.
func TestEmbeddedServerNeedsAuthenticator(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, 30*time.Second)
	for _, tt := range []struct {
		name string
		edit func(*eventlog.Config)
		want string
	}{
		{"listening without authenticator", func(c *eventlog.Config) { c.Listen = "127.0.0.1:0" }, "needs an authenticator"},
		{"user and password", func(c *eventlog.Config) { c.User, c.Password = "u", "p" }, "credentials are for an external server"},
		{"creds file", func(c *eventlog.Config) { c.CredsFile = "x.creds" }, "credentials are for an external server"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testutil.LogConfig(t.TempDir())
			tt.edit(&cfg)
			l, err := eventlog.Open(ctx, cfg, eventlog.Options{})
			if err == nil {
				l.Close()
				t.Fatal("opened")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("%v, want %q", err, tt.want)
			}
		})
	}
}

// A listen address already taken is said at once, not after the embedded
// server's readiness wait.
func TestEmbeddedServerPortTaken(t *testing.T) {
	t.Parallel()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	a, err := natsauth.New(secrets.GenerateMasterKey())
	if err != nil {
		t.Fatal(err)
	}
	cfg := testutil.LogConfig(t.TempDir())
	cfg.Listen = taken.Addr().String()
	_, err = eventlog.Open(testutil.Context(t, time.Minute), cfg, eventlog.Options{Auth: a})
	if !errors.Is(err, syscall.EADDRINUSE) || !strings.Contains(err.Error(), taken.Addr().String()) {
		t.Fatalf("open on a taken port: %v, want the bind error naming the address", err)
	}
}
