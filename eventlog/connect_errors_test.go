package eventlog_test

import (
	"context"
	"strings"
	"testing"

	"github.com/flowvault/flowvault/eventlog"
)

// An external server's URL whose userinfo does not parse (a password
// with an unescaped '%' or a space in it, or a '/', '#' or '?', which
// ends the authority there) fails the open naming the server without its
// userinfo: net/url's error quotes the URL whole (or up to a '#'), an
// escape that does not decode its bytes, and the password up to a '/'
// as a port, which the caller logs; nor does one with a ',', at which
// the list of servers is split, and the URL before it fails to parse.
func TestOpenErrorQuotesNoCredentials(t *testing.T) {
	t.Parallel()
	for _, url := range []string{
		"nats://svc:50%of-Zq9vLm2pT8@127.0.0.1:1",
		"nats://svc:p4ss Zq9vLm2pT8@127.0.0.1:1",
		"nats://tok3n%Zq9vLm2pT8@127.0.0.1:1",
		"nats://svc:Zq9v/Lm2pT8@127.0.0.1:1",
		"nats://svc:Zq9v#Lm2pT8@127.0.0.1:1",
		"nats://svc:Zq9v?Lm2pT8@127.0.0.1:1",
		"nats://svc:Zq9v,Lm2pT8@127.0.0.1:1",
	} {
		cfg := eventlog.DefaultConfig()
		cfg.URL = url
		l, err := eventlog.Open(context.Background(), cfg, eventlog.Options{})
		if err == nil {
			l.Close()
			t.Fatalf("%s: opened, want it refused", url)
		}
		if msg := err.Error(); !strings.Contains(msg, "127.0.0.1:1") || strings.Contains(msg, "Zq9v") || strings.Contains(msg, "%of") {
			t.Errorf("opening failed with %q, want the server named without its credentials", err)
		}
	}
}
