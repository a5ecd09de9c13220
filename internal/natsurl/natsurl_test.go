package natsurl

import (
	"errors"
	"net"
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
)

// Servers names a list's servers without anything of a userinfo, however
// the userinfo is written: a ',' or an '@' in it, where nats.go splits
// the list and a URL's userinfo ends, cut it short, and the text past
// the first was named.
func TestServers(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ urls, want string }{
		{"nats://127.0.0.1:4222", "nats://127.0.0.1:4222"},
		{"nats://a:4222,nats://b:4222", "nats://a:4222,nats://b:4222"},
		{"nats://svc:Zq9v@host:4222", "nats://host:4222"},
		{"nats://tok3nZq9v@host", "nats://host"},
		{"tok3nZq9v@host", "host"},
		{" tls://svc:Zq9v@host", "tls://host"},
		{"NATS://svc:Zq9v@host", "NATS://host"},
		// A ',' in a password or a token.
		{"nats://svc:Zq9v,Lm2p@host:4222", "nats://host:4222"},
		{"nats://tok3n,Zq9v@host:4222", "nats://host:4222"},
		{"nats://svc:Zq9v,@host", "nats://host"},
		{"nats://svc:Zq9v,nats://Lm2p@host", "nats://host"},
		// An '@', and both.
		{"nats://svc:Zq9v@Lm2p@host", "nats://host"},
		{"nats://svc:Zq9v@Lm2p,pT8@host", "nats://host"},
		// Escaped, or an escape that does not decode.
		{"nats://svc:Zq9v%2CLm2p@host", "nats://host"},
		{"nats://svc:50%of-Zq9v@host", "nats://host"},
		// A "://" in a token without a scheme, the scheme not nats.go's.
		{"svc:Zq9v://Lm2p@host", "host"},
		{"Zq9v://Lm2p@host", "host"},
		// Several servers, some with userinfo: none before the last '@'
		// is named, as any of it may be a password.
		{"nats://svc:Zq9v@a:4222,nats://svc:Zq9v@b:4222", "nats://b:4222"},
		{"nats://svc:Zq9v@a:4222,nats://b:4222", "nats://a:4222,nats://b:4222"},
		{"nats://a:4222,nats://tok3nZq9v@b:4222", "nats://b:4222"},
		{"nats://a:4222,nats://svc:Zq9v,Lm2p@b:4222,nats://c:4222", "nats://b:4222,nats://c:4222"},
	} {
		if got := Servers(tc.urls); got != tc.want {
			t.Errorf("Servers(%q) = %q, want %q", tc.urls, got, tc.want)
		}
	}
}

// A connection's error quotes nothing of a userinfo: net/url's, which
// quotes the server URL it failed on (nats.go cut a password at its ','
// into one whose port is what precedes the ',', the port then quoted),
// nor a dial's naming the host or the port of such a URL.
func TestConnectError(t *testing.T) {
	t.Parallel()
	dns := func(host string) error {
		return &net.OpError{Op: "dial", Net: "tcp", Err: &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}}
	}
	dial := func(port int) error {
		return &net.OpError{Op: "dial", Net: "tcp", Addr: &net.TCPAddr{IP: net.IPv4(10, 0, 0, 9), Port: port}, Err: errors.New("i/o timeout")}
	}
	for _, tc := range []struct {
		name   string
		urls   string
		err    error // nil: nats.Connect's, which fails parsing before it dials
		quoted bool  // err returned as it is
	}{
		{name: "a password cut at its ','", urls: "nats://svc:Zq9v,Lm2p@127.0.0.1:1"},
		{name: "a password cut at its '@' and its ',' as a host", urls: "nats://svc:Zq9v@Lm2p,pT8@127.0.0.1:1", err: dns("Lm2p")},
		{name: "an escape that does not decode", urls: "nats://svc:50%of-Zq9v@127.0.0.1:1"},
		{name: "a token cut at its ',' as a host", urls: "nats://tok3nZq9v,Lm2p@127.0.0.1:1", err: dns("tok3nZq9v")},
		{name: "a password cut at its ',' as a port", urls: "nats://svc:1234,Lm2p@127.0.0.1:1", err: dial(1234)},
		{name: "a server before the last '@'", urls: "nats://svc:Zq9v@a:4222,nats://svc:Zq9v@b:4222", err: dns("a")},
		{name: "the server past the last '@'", urls: "nats://svc:Zq9v@a:4222,nats://svc:Zq9v@b:4222", err: dns("b"), quoted: true},
		{name: "a port past the last '@'", urls: "nats://svc:Zq9v@127.0.0.1:1234", err: dial(1234), quoted: true},
		{name: "a host named within a longer name", urls: "nats://a,Zq9v@b", err: dns("ab"), quoted: true},
		{name: "a port named within a longer one", urls: "nats://svc:123,Zq9v@b", err: dial(1234), quoted: true},
		// url.Parse ends the authority at a '/', '?' or '#', so a token
		// or password holding one is dialed up to it, not cut at a ','.
		{name: "a token cut at its '#' as a host", urls: "nats://tok3nZq9v#Lm2p@127.0.0.1:1", err: dns("tok3nZq9v")},
		{name: "a password cut at its '/' as a port", urls: "nats://svc:1234/Lm2p@127.0.0.1:1", err: dial(1234)},
		{name: "a password cut at its '?' past an '@' as a host", urls: "nats://svc:Zq9v@Lm2p?pT8@127.0.0.1:1", err: dns("Lm2p")},
		{name: "no servers", urls: "nats://tok3nZq9v,Lm2p@127.0.0.1:1", err: nats.ErrNoServers, quoted: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.err
			if err == nil {
				nc, cerr := nats.Connect(tc.urls)
				if cerr == nil {
					nc.Close()
					t.Fatalf("%s: connected, want it refused", tc.urls)
				}
				err = cerr
			}
			got := ConnectError(err, tc.urls)
			if quoted := got == err; quoted != tc.quoted {
				t.Errorf("ConnectError(%q) = %q, want the error as it is %v", err, got, tc.quoted)
			}
			if !tc.quoted {
				for _, secret := range []string{"Zq9v", "Lm2p", "pT8", "%of", "1234"} {
					if strings.Contains(got.Error(), secret) {
						t.Errorf("ConnectError(%q) = %q, which quotes %q", err, got, secret)
					}
				}
			}
		})
	}
}

// Split splits as nats.go does, and a server that ends before the list's
// last '@' may be cut from a userinfo.
func TestSplit(t *testing.T) {
	t.Parallel()
	type server struct {
		url string
		cut bool
	}
	for _, tc := range []struct {
		urls string
		want []server
	}{
		{"nats://a:4222, nats://b:4222,", []server{{"nats://a:4222", false}, {"nats://b:4222", false}}},
		{"nats://tok,en@h", []server{{"nats://tok", true}, {"en@h", false}}},
		{"nats://u:p@a,nats://u:p@b,c", []server{{"nats://u:p@a", true}, {"nats://u:p@b", false}, {"c", false}}},
		{"nats://u:p,@h", []server{{"nats://u:p", true}, {"@h", false}}},
		// An '@' url.Parse finds past the authority, which a '/', '?' or
		// '#' of a userinfo ended: the host dialed is cut from it.
		{"nats://tok#en@h", []server{{"nats://tok#en@h", true}}},
		{"nats://u:p@ss?w@h,c", []server{{"nats://u:p@ss?w@h", true}, {"c", false}}},
		{"tok/en@h", []server{{"tok/en@h", true}}},
		{"nats://u:p@h/x", []server{{"nats://u:p@h/x", false}}},
	} {
		var got []server
		for s, cut := range Split(tc.urls) {
			got = append(got, server{s, cut})
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("Split(%q) = %v, want %v", tc.urls, got, tc.want)
		}
	}
}
