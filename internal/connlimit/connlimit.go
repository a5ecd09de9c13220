// Package connlimit bounds the connections a server holds open, and sizes
// the bounds from the process's file descriptor limit: every connection
// is a descriptor, and the descriptors are shared with the stores (the
// embedded JetStream's block files, Pebble's tables), which fail their
// writes, and stop taking any until a restart, when none is left.
package connlimit

import (
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Listener is a net.Listener that holds at most a fixed number of
// connections open. One accepted beyond it is refused at once: sent
// Refusal, when set, and closed. It is not left waiting in the kernel's
// accept queue (golang.org/x/net/netutil.LimitListener's way), where its
// client would stall until its own timeout with no word of why.
type Listener struct {
	net.Listener
	slots chan struct{}
	// refusal is written to a connection refused; nil closes it silently
	// (a TLS listener's clients would read plaintext as a broken
	// handshake).
	refusal []byte
	refused atomic.Uint64
	// onRefuse, when set, is called after each refusal: for a
	// rate-limited log line.
	onRefuse func()
}

// HTTPRefusal is the answer of an HTTP listener that is full: a 503 its
// client can tell apart from a dead server, and may retry. Its length is
// counted, not written by hand: one byte too many and clients read an
// unexpected EOF instead of the 503.
var HTTPRefusal = []byte("HTTP/1.1 503 Service Unavailable\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n" +
	"Retry-After: 1\r\nConnection: close\r\n" +
	"Content-Length: " + strconv.Itoa(len(httpRefusalBody)) + "\r\n\r\n" + httpRefusalBody)

const httpRefusalBody = "too many connections are open to this server; retry\n"

// refusalWriteTimeout bounds the write of a refusal: it fits a fresh
// socket's send buffer, so it never waits in practice, but the accept
// loop must not wait on a client.
const refusalWriteTimeout = 100 * time.Millisecond

// NewListener bounds ln to max open connections (max > 0). refusal is
// what a connection beyond it is sent before it is closed (nil: nothing);
// onRefuse, when not nil, is called after each refusal.
func NewListener(ln net.Listener, max int, refusal []byte, onRefuse func()) *Listener {
	return &Listener{Listener: ln, slots: make(chan struct{}, max), refusal: refusal, onRefuse: onRefuse}
}

// Accept returns the next connection there is room for, refusing those
// there is none for.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		select {
		case l.slots <- struct{}{}:
			return &conn{Conn: c, release: func() { <-l.slots }}, nil
		default:
			l.refuse(c)
		}
	}
}

func (l *Listener) refuse(c net.Conn) {
	if l.refusal != nil {
		_ = c.SetWriteDeadline(time.Now().Add(refusalWriteTimeout))
		_, _ = c.Write(l.refusal)
	}
	_ = c.Close()
	l.refused.Add(1)
	if l.onRefuse != nil {
		l.onRefuse()
	}
}

// Open is how many accepted connections are open.
func (l *Listener) Open() int { return len(l.slots) }

// Max is the most connections open at once.
func (l *Listener) Max() int { return cap(l.slots) }

// Refused is how many connections were refused since the listener was
// made.
func (l *Listener) Refused() uint64 { return l.refused.Load() }

// conn gives its slot back when closed, once.
type conn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
