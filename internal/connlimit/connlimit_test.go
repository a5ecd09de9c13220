package connlimit_test

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/flowvault/flowvault/internal/connlimit"
	"github.com/flowvault/flowvault/internal/testutil"
)

// A full listener refuses the next connection at once, with its refusal
// or without a word, and takes connections again once some close.
func TestListenerRefusesBeyondMax(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		refusal []byte
	}{
		{"http", connlimit.HTTPRefusal},
		{"tls (closed silently)", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			const max = 3
			inner, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			refusals := make(chan struct{}, 10)
			ln := connlimit.NewListener(inner, max, tc.refusal, func() { refusals <- struct{}{} })
			t.Cleanup(func() { ln.Close() })
			accepted := make(chan net.Conn, 10)
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					accepted <- c
				}
			}()
			dial := func() net.Conn {
				c, err := net.Dial("tcp", ln.Addr().String())
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { c.Close() })
				return c
			}
			var held []net.Conn
			for range max {
				dial()
				held = append(held, <-accepted)
			}
			if ln.Open() != max {
				t.Fatalf("open = %d, want %d", ln.Open(), max)
			}
			// The server writes its refusal and closes: the client reads
			// it and then the end, with no wait for a timeout.
			over := dial()
			got, err := io.ReadAll(over)
			if err != nil {
				t.Fatalf("read the refused connection: %v", err)
			}
			if string(got) != string(tc.refusal) {
				t.Fatalf("refused connection read %q, want %q", got, tc.refusal)
			}
			<-refusals
			if ln.Refused() != 1 || ln.Open() != max {
				t.Fatalf("refused %d, open %d; want 1, %d", ln.Refused(), ln.Open(), max)
			}
			// Closing a connection twice gives its slot back once.
			held[0].Close()
			held[0].Close()
			testutil.Eventually(t, 5*time.Second, 10*time.Millisecond, func() error {
				if ln.Open() != max-1 {
					return errors.New("the closed connection's slot is still held")
				}
				return nil
			})
			dial()
			held[0] = <-accepted
			if ln.Open() != max {
				t.Fatalf("open = %d after a close and a new connection, want %d", ln.Open(), max)
			}
			if len(refusals) != 0 {
				t.Fatal("a connection within the bound was refused")
			}
		})
	}
}

// The budget leaves the stores their reserve, splits the rest, and takes
// an operator's numbers as given; the workers leave the engines room.
// The refusal of a full HTTP listener is an HTTP answer a client reads
// whole, and carries the headers every answer of the API carries.
func TestHTTPRefusalIsACompleteAnswer(t *testing.T) {
	t.Parallel()
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(connlimit.HTTPRefusal)), nil)
	if err != nil {
		t.Fatalf("read the refusal as an HTTP answer: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read the refusal's body: %v", err)
	}
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("status %d, want 503", resp.StatusCode)
	}
	if int64(len(body)) != resp.ContentLength || len(body) == 0 {
		t.Errorf("body of %d bytes, Content-Length %d", len(body), resp.ContentLength)
	}
	if !resp.Close {
		t.Error("the refusal does not say Connection: close")
	}
	for _, h := range []struct{ name, want string }{
		{"Retry-After", "1"},
		{"Cache-Control", "no-store"},
		{"X-Content-Type-Options", "nosniff"},
	} {
		if got := resp.Header.Get(h.name); got != h.want {
			t.Errorf("%s: %q, want %q", h.name, got, h.want)
		}
	}
}

func TestNewBudget(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name               string
		files              uint64
		http, nats         int
		wantHTTP, wantNATS int
		fits               bool
	}{
		{"the reproduction's 20000", 20000, 0, 0, 7500, 7500, true},
		{"a small limit keeps the reserve", 8192, 0, 0, 2048, 2048, true},
		{"docker's 1M caps at 64K", 1 << 20, 0, 0, 64 << 10, 64 << 10, true},
		{"1024: below the reserve, a few each", 1024, 0, 0, 64, 64, true},
		{"unknown limit: nats-server's default", 0, 0, 0, 64 << 10, 64 << 10, true},
		{"given numbers are kept", 20000, 100, 200, 100, 200, true},
		{"given numbers that leave no reserve", 20000, 10000, 8000, 10000, 8000, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := connlimit.NewBudget(tc.files, tc.http, tc.nats)
			if b.HTTP != tc.wantHTTP || b.NATS != tc.wantNATS {
				t.Fatalf("budget %+v; want http %d, nats %d", b, tc.wantHTTP, tc.wantNATS)
			}
			if b.Fits() != tc.fits {
				t.Fatalf("budget %+v fits = %v, want %v", b, b.Fits(), tc.fits)
			}
			if b.Workers >= b.NATS || b.Workers < 1 {
				t.Fatalf("workers %d of %d NATS connections: want fewer, at least 1", b.Workers, b.NATS)
			}
			if tc.files > 0 && tc.http == 0 && b.HTTP+b.NATS > int(tc.files) {
				t.Fatalf("budget %+v: more connections than open files", b)
			}
		})
	}
}
