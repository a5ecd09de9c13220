package node

import (
	"fmt"
	"os"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/flowvault/flowvault/schemas"
)

// TuneRuntime sets the configured GC target, unless $GOGC chose one. Not
// parallel: the GC target is the process's.
func TestTuneRuntime(t *testing.T) {
	restore := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(restore) })
	gogc, had := os.LookupEnv("GOGC")
	os.Unsetenv("GOGC")
	t.Cleanup(func() {
		if had {
			os.Setenv("GOGC", gogc)
		}
	})

	c := DefaultConfig()
	c.GCPercent = 250
	c.TuneRuntime()
	if got := debug.SetGCPercent(100); got != 250 {
		t.Fatalf("GC target %d, want the configured 250", got)
	}
	t.Setenv("GOGC", "150")
	c.TuneRuntime()
	if got := debug.SetGCPercent(100); got != 100 {
		t.Fatalf("GC target %d with $GOGC set, want it left alone (100)", got)
	}
}

// Validate refuses an HTTP address whose port is not a number from 0 to
// 65535 (net.SplitHostPort alone passes any text after the colon), so that
// it fails before the data directory is opened, not at listen time.
func TestValidateHTTPAddr(t *testing.T) {
	t.Parallel()
	tests := []struct {
		addr string
		ok   bool
	}{
		{"127.0.0.1:8080", true},
		{"127.0.0.1:0", true},
		{"127.0.0.1:65535", true},
		{":8080", true},
		{"[::1]:8080", true},
		{"localhost:80", true},
		{"127.0.0.1:99999", false},
		{"127.0.0.1:65536", false},
		{"127.0.0.1:-1", false},
		{"127.0.0.1:abc", false},
		{"127.0.0.1:http", false},
		{"127.0.0.1:", false},
		{"127.0.0.1", false},
		{"", false},
	}
	for _, tt := range tests {
		c := DefaultConfig()
		c.HTTPAddr = tt.addr
		c.InsecurePlaintext = true // ":8080" is about its port here
		err := c.Validate()
		switch {
		case tt.ok && err != nil:
			t.Errorf("HTTPAddr %q: %v; want valid", tt.addr, err)
		case !tt.ok && (err == nil || !strings.Contains(err.Error(), "http address")):
			t.Errorf("HTTPAddr %q: %v; want an http address error", tt.addr, err)
		}
	}
}

// The record format is one this version writes: a log shared with older
// servers is written in the newest format they read.
func TestValidateRecordFormat(t *testing.T) {
	t.Parallel()
	for format, ok := range map[int]bool{1: true, 2: true, 0: false, 3: false, 258: false, -254: false} {
		c := DefaultConfig()
		c.RecordFormat = format
		err := c.Validate()
		switch {
		case ok && err != nil:
			t.Errorf("record format %d: %v; want valid", format, err)
		case !ok && (err == nil || !strings.Contains(err.Error(), fmt.Sprintf("record format %d: want 1..2", format))):
			t.Errorf("record format %d: %v; want a record format error naming it", format, err)
		case ok && c.Eventlog().RecordFormat != schemas.RecordFormat(format):
			t.Errorf("record format %d: the event log writes %d", format, c.Eventlog().RecordFormat)
		}
	}
}

// The flags of an external NATS server, given without one or half, are
// refused naming the flag, not in the event log's terms.
func TestValidateNATSFlags(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		set  func(c *Config)
		want string
	}{
		{"creds without --nats", func(c *Config) { c.NATSCreds = "w.creds" }, "--nats-creds is for an external NATS server (--nats)"},
		{"certificate without --nats", func(c *Config) { c.NATSTLSCert = "c.pem" }, "--nats-tls-cert is for an external NATS server (--nats)"},
		{"CA without --nats", func(c *Config) { c.NATSCA = "ca.pem" }, "--nats-ca is for an external NATS server (--nats)"},
		{"certificate without key", func(c *Config) { c.NATSURL, c.NATSTLSCert = "tls://127.0.0.1:4222", "c.pem" },
			"give both --nats-tls-cert and --nats-tls-key, or neither"},
		{"external server", func(c *Config) { c.NATSURL, c.NATSCreds = "tls://127.0.0.1:4222", "w.creds" }, ""},
		{"replicas without --nats", func(c *Config) { c.NATSReplicas = 3 }, "--nats-replicas is for an external NATS cluster (--nats); the embedded server keeps one copy"},
		{"no replicas", func(c *Config) { c.NATSURL, c.NATSReplicas = "nats://127.0.0.1:4222", 0 }, "--nats-replicas 0: want 1..5"},
		{"six replicas", func(c *Config) { c.NATSURL, c.NATSReplicas = "nats://127.0.0.1:4222", 6 }, "--nats-replicas 6: want 1..5"},
		{"three replicas", func(c *Config) { c.NATSURL, c.NATSReplicas = "nats://127.0.0.1:4222", 3 }, ""},
	} {
		c := DefaultConfig()
		tt.set(&c)
		err := c.Validate()
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s: %v; want valid", tt.name, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "Options.Auth")):
			t.Errorf("%s: %v; want %q", tt.name, err, tt.want)
		}
	}
}

// Without a certificate, the API and the NATS listener serve plaintext:
// tokens, secret values and task inputs cross them. Only loopback
// addresses may, unless the operator says otherwise.
func TestValidatePlaintextBeyondLoopback(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		tweak func(*Config)
		want  string // "" for valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"ipv6 loopback", func(c *Config) { c.HTTPAddr, c.NATSListen = "[::1]:8080", "[::1]:4222" }, ""},
		{"localhost", func(c *Config) { c.HTTPAddr = "localhost:8080" }, ""},
		{"127.0.0.2", func(c *Config) { c.HTTPAddr = "127.0.0.2:8080" }, ""},
		{"http on every interface", func(c *Config) { c.HTTPAddr = ":8080" }, `http address ":8080" is not a loopback address`},
		{"http on 0.0.0.0", func(c *Config) { c.HTTPAddr = "0.0.0.0:8080" }, `http address "0.0.0.0:8080" is not a loopback address`},
		{"http on a name", func(c *Config) { c.HTTPAddr = "flowvault.internal:8080" }, "is not a loopback address"},
		{"nats on 0.0.0.0", func(c *Config) { c.NATSListen = "0.0.0.0:4222" }, `nats listen address "0.0.0.0:4222" is not a loopback address`},
		// With an external server the embedded one does not listen, and
		// the connection to it must be TLS beyond loopback.
		{"external nats over tls", func(c *Config) { c.NATSListen, c.NATSURL = "0.0.0.0:4222", "tls://nats.internal:4222" }, ""},
		{"external nats on loopback", func(c *Config) { c.NATSURL = "nats://127.0.0.1:4222" }, ""},
		{"external nats in plaintext", func(c *Config) { c.NATSURL = "nats://nats.internal:4222" }, `nats server "nats://nats.internal:4222" is neither`},
		{"external nats without scheme", func(c *Config) { c.NATSURL = "nats.internal:4222" }, `nats server "nats://nats.internal:4222" is neither`},
		// The error names the server without the engine's credentials.
		{"external nats in plaintext, with a password", func(c *Config) { c.NATSURL = "nats://fv:url-secret@nats.internal:4222" },
			`nats server "nats://nats.internal:4222" is neither`},
		{"external nats in plaintext, with a token", func(c *Config) { c.NATSURL = "url-secret@nats.internal:4222" },
			`nats server "nats://nats.internal:4222" is neither`},
		// A ',' in a token or a password, where nats.go splits the list:
		// what comes before it is dialed as a server, and not named.
		{"external nats in plaintext, a token holding a ','", func(c *Config) { c.NATSURL = "nats://url-secret,more@127.0.0.1:4222" },
			`nats server number 1 of the list (not named`},
		// A '#', '?' or '/' in one ends the authority url.Parse reads: nats.go
		// dials what comes before it as the host.
		{"external nats in plaintext, a token holding a '#'", func(c *Config) { c.NATSURL = "nats://url-secret#more@127.0.0.1:4222" },
			`nats server number 1 of the list (not named`},
		{"external nats in plaintext, a password holding a '?'", func(c *Config) { c.NATSURL = "fv:4222?url-secret@127.0.0.1:4222" },
			`nats server number 1 of the list (not named`},
		{"a cluster in plaintext, with passwords", func(c *Config) {
			c.NATSURL = "nats://fv:url-secret@a.internal:4222,nats://fv:url-secret@b.internal:4222"
		}, `nats server number 1 of the list (not named`},
		// nats.go speaks TLS with every server of a list that names one tls://.
		{"a cluster named with tls:// once", func(c *Config) { c.NATSURL = "nats://a.internal:4222, tls://b.internal:4222" }, ""},
		{"a cluster in plaintext", func(c *Config) { c.NATSURL = "nats://127.0.0.1:4222,nats://b.internal:4222" }, `"nats://b.internal:4222"`},
		{"external nats in plaintext, accepted", func(c *Config) { c.NATSURL, c.InsecurePlaintext = "nats://nats.internal:4222", true }, ""},
		{"external nats in plaintext, with a certificate", func(c *Config) {
			c.NATSURL, c.TLSCertFile, c.TLSKeyFile = "nats://nats.internal:4222", "cert.pem", "key.pem"
		}, "is neither a tls:// URL"},
		{"operator accepts plaintext", func(c *Config) { c.HTTPAddr, c.InsecurePlaintext = "0.0.0.0:8080", true }, ""},
		{"certificate", func(c *Config) { c.HTTPAddr, c.TLSCertFile, c.TLSKeyFile = "0.0.0.0:8080", "cert.pem", "key.pem" }, ""},
		{"certificate without key", func(c *Config) { c.TLSCertFile = "cert.pem" }, "give both --tls-cert-file and --tls-key-file"},
		{"key without certificate", func(c *Config) { c.TLSKeyFile = "key.pem" }, "give both --tls-cert-file and --tls-key-file"},
		{"client CA", func(c *Config) { c.TLSCertFile, c.TLSKeyFile, c.TLSClientCAFile = "cert.pem", "key.pem", "ca.pem" }, ""},
		{"client CA without certificate", func(c *Config) { c.TLSClientCAFile = "ca.pem" }, "--tls-client-ca-file needs --tls-cert-file"},
	}
	for _, tt := range tests {
		c := DefaultConfig()
		tt.tweak(&c)
		err := c.Validate()
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s: %v; want valid", tt.name, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%s: %v; want an error containing %q", tt.name, err, tt.want)
		case tt.want != "" && !strings.Contains(err.Error(), "--insecure-plaintext") && !strings.Contains(err.Error(), "--tls-cert-file"):
			t.Errorf("%s: %v; want the way out named", tt.name, err)
		case err != nil && strings.Contains(err.Error(), "url-secret"):
			t.Errorf("%s: %v; holds the URL's credentials", tt.name, err)
		}
	}
}

// The streams and buckets of a cluster keep as many copies as
// --nats-replicas says: before it, every one was R1 on any cluster, and an
// operator's R3 streams were scaled down to R1 at start.
func TestEventlogReplicas(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		set  func(c *Config)
		want int
	}{
		{"embedded", func(*Config) {}, 1},
		{"external, default", func(c *Config) { c.NATSURL = "nats://127.0.0.1:4222" }, 1},
		{"external, three", func(c *Config) { c.NATSURL, c.NATSReplicas = "nats://127.0.0.1:4222", 3 }, 3},
	} {
		c := DefaultConfig()
		tt.set(&c)
		if err := c.Validate(); err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if got := c.Eventlog().Replicas; got != tt.want {
			t.Errorf("%s: the event log keeps %d replicas; want %d", tt.name, got, tt.want)
		}
	}
}
