package node

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/flowvault/flowvault/internal/natsurl"
)

// validateTLS checks the certificate settings, and that nothing would
// serve or connect in plaintext beyond loopback unless InsecurePlaintext
// says so.
func (c Config) validateTLS() []error {
	var errs []error
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		errs = append(errs, errors.New("tls: give both --tls-cert-file and --tls-key-file, or neither"))
	}
	if c.TLSClientCAFile != "" && c.TLSCertFile == "" {
		errs = append(errs, errors.New("tls: --tls-client-ca-file needs --tls-cert-file and --tls-key-file: client certificates are asked for in a TLS handshake"))
	}
	if c.InsecurePlaintext {
		return errs
	}
	if !c.Eventlog().Embedded() {
		errs = append(errs, plaintextServers(c.NATSURL)...)
	}
	if c.TLSCertFile != "" {
		return errs
	}
	listeners := []struct{ name, addr string }{{"http address", c.HTTPAddr}}
	if c.Eventlog().Embedded() && c.NATSListen != "" {
		listeners = append(listeners, struct{ name, addr string }{"nats listen address", c.NATSListen})
	}
	for _, l := range listeners {
		if host, _, err := net.SplitHostPort(l.addr); err == nil && !Loopback(host) {
			errs = append(errs, fmt.Errorf("%s %q is not a loopback address: without TLS, tokens, secret values and the "+
				"task inputs handed to workers would cross the network in the clear; give --tls-cert-file and --tls-key-file, "+
				"or --insecure-plaintext to accept that", l.name, l.addr))
		}
	}
	return errs
}

// plaintextServers refuses the servers of an external NATS URL list that
// the engine would reach in plaintext beyond loopback: its own messages
// (task inputs handed to workers, with resolved values) cross the
// connection. One tls:// URL makes nats.go use TLS with every server of
// the list. A server is named without its userinfo, the engine's
// password or token, and by its place in the list alone when it may be
// part of one (natsurl.Split): nats.go splits a password holding a ','
// there, and dials what comes before it as a server.
func plaintextServers(list string) []error {
	var plain []string
	i := 0
	for u, cut := range natsurl.Split(list) {
		i++
		if !strings.Contains(u, "://") {
			u = "nats://" + u
		}
		parsed, err := url.Parse(u)
		if err != nil {
			continue // the connection reports it
		}
		if parsed.Scheme == "tls" {
			return nil
		}
		switch {
		case Loopback(parsed.Hostname()):
		case cut:
			plain = append(plain, fmt.Sprintf("number %d of the list (not named: it comes before a userinfo's '@')", i))
		default:
			parsed.User = nil
			plain = append(plain, strconv.Quote(parsed.String()))
		}
	}
	var errs []error
	for _, u := range plain {
		errs = append(errs, fmt.Errorf("nats server %s is neither a tls:// URL nor a loopback address: the task inputs "+
			"handed to workers would cross the network in the clear; use a tls:// URL, or --insecure-plaintext to accept that", u))
	}
	return errs
}

// Loopback reports whether a host reaches this machine only. An
// empty host listens on every interface; a name other than localhost
// could resolve anywhere.
func Loopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// loadTLS reads the certificate, when there is one: a server that cannot
// read it stops before it touches its data directory.
func (c Config) loadTLS() (*tls.Config, error) {
	if c.TLSCertFile == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(c.TLSCertFile, c.TLSKeyFile)
	if err != nil {
		return nil, fmt.Errorf("tls: load --tls-cert-file %s and --tls-key-file %s: %w", c.TLSCertFile, c.TLSKeyFile, err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if c.TLSClientCAFile != "" {
		pem, err := os.ReadFile(c.TLSClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("tls: read --tls-client-ca-file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls: --tls-client-ca-file %s holds no PEM certificate", c.TLSClientCAFile)
		}
		cfg.ClientAuth, cfg.ClientCAs = tls.RequireAndVerifyClientCert, pool
	}
	return cfg, nil
}
