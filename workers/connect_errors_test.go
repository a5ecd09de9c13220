package workers_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/workers"
)

// recordHandler hands each record logged to c.
type recordHandler struct{ c chan slog.Record }

func (h recordHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h recordHandler) Handle(_ context.Context, r slog.Record) error {
	h.c <- r.Clone()
	return nil
}
func (h recordHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h recordHandler) WithGroup(string) slog.Handler      { return h }

// Connect's connection logs its asynchronous errors (here a slow
// consumer's) through slog's default logger, with the SDK's keys, where
// nats.go's default handler wrote them to stderr; a caller's
// nats.ErrorHandler still takes them instead. Not parallel: it sets the
// default logger.
func TestConnectLogsAsyncErrors(t *testing.T) {
	url := testutil.StartNATS(t, t.TempDir(), 0).ClientURL()
	creds := userCreds(t)
	records := make(chan slog.Record, 16)
	defer slog.SetDefault(slog.Default())
	slog.SetDefault(slog.New(recordHandler{records}))
	for _, tc := range []struct {
		name   string
		caller bool // passes its own nats.ErrorHandler
	}{
		{name: "default"},
		{name: "caller's", caller: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for len(records) > 0 {
				<-records // a row's before
			}
			callerGot := make(chan error, 16)
			var opts []nats.Option
			if tc.caller {
				opts = append(opts, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { callerGot <- err }))
			}
			nc, err := workers.Connect(url, creds, opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			subject := "slow." + tc.name[:3]
			sub, err := nc.SubscribeSync(subject)
			if err != nil {
				t.Fatal(err)
			}
			if err := sub.SetPendingLimits(1, -1); err != nil {
				t.Fatal(err)
			}
			for range 3 {
				if err := nc.Publish(subject, []byte("x")); err != nil {
					t.Fatal(err)
				}
			}
			if err := nc.Flush(); err != nil {
				t.Fatal(err)
			}
			timeout := time.After(20 * time.Second)
			if tc.caller {
				select {
				case err := <-callerGot:
					if !errors.Is(err, nats.ErrSlowConsumer) {
						t.Fatalf("the caller's handler got %v, want a slow consumer", err)
					}
				case <-timeout:
					t.Fatal("the caller's handler got no error")
				}
				if len(records) > 0 {
					r := <-records
					t.Fatalf("logged %q besides the caller's handler", r.Message)
				}
				return
			}
			select {
			case r := <-records:
				attrs := map[string]string{}
				r.Attrs(func(a slog.Attr) bool { attrs[a.Key] = a.Value.String(); return true })
				if r.Level != slog.LevelError || attrs["component"] != "worker" || attrs["subject"] != subject || attrs["err"] != nats.ErrSlowConsumer.Error() {
					t.Fatalf("logged %s %q %v, want an error with the worker component, the subject and the slow consumer", r.Level, r.Message, attrs)
				}
			case <-timeout:
				t.Fatal("the slow consumer was not logged")
			}
		})
	}
}

// A connection that fails names the servers it was given without their
// URLs' userinfo, a token or a password: the caller logs the error. So
// does one whose URL's userinfo does not parse (an unescaped '%' or a
// space in a password), where net/url's error quotes the URL whole, and
// an escape that does not decode its bytes, and one whose password holds
// an unescaped '/', '#' or '?', which ends the authority there: net/url
// quotes the password up to it as a port that is not one, and the URL
// up to a '#' as the URL, and one whose password holds a ',', at which
// nats.go splits the list: the URL before it, whose port does not parse,
// was named with the password up to the ','.
func TestConnectErrorQuotesNoCredentials(t *testing.T) {
	t.Parallel()
	creds := userCreds(t)
	for _, tc := range []struct {
		url       string
		noServers bool // false: the URL does not parse
	}{
		{"nats://tok3n-Zq9vLm2pT8@127.0.0.1:1", true},
		{"nats://svc:p4ssw0rd-Zq9vLm2pT8@127.0.0.1:1", true},
		{"nats://127.0.0.2:1,nats://tok3n-Zq9vLm2pT8@127.0.0.1:1", true},
		{"nats://svc:50%of-Zq9vLm2pT8@127.0.0.1:1", false},
		{"nats://svc:p4ss Zq9vLm2pT8@127.0.0.1:1", false},
		{"nats://127.0.0.2:1,nats://tok3n%Zq9vLm2pT8@127.0.0.1:1", false},
		{"nats://svc:Zq9v/Lm2pT8@127.0.0.1:1", false},
		{"nats://svc:Zq9v#Lm2pT8@127.0.0.1:1", false},
		{"nats://127.0.0.2:1,nats://svc:Zq9v?Lm2pT8@127.0.0.1:1", false},
		{"nats://svc:Zq9v,Lm2pT8@127.0.0.1:1", false},
	} {
		nc, err := workers.Connect(tc.url, creds)
		if err == nil {
			nc.Close()
			t.Fatalf("%s: connected, want it refused", tc.url)
		}
		msg := err.Error()
		if errors.Is(err, nats.ErrNoServers) != tc.noServers || !strings.Contains(msg, "127.0.0.1:1") || strings.Contains(msg, "Zq9v") || strings.Contains(msg, "%of") {
			t.Errorf("connecting failed with %q, want no servers %v, named without their credentials", err, tc.noServers)
		}
	}
}
