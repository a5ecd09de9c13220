package nodetest

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// Client sends requests to a node as one principal: Token goes in
// X-Authorization ("" sends none).
type Client struct {
	TB    testing.TB
	Base  string
	Token string
	// HTTP is the client requests go through (nil: http.DefaultClient);
	// a leaktest.Scanner's Client scans every response.
	HTTP *http.Client
}

// Do sends one request, with a JSON body unless body is "", and returns
// the status and the response body.
func (c Client) Do(method, path, body string) (int, string) {
	c.TB.Helper()
	return c.Send(method, path, "application/json", body)
}

// Send is Do with a body of the given content type.
func (c Client) Send(method, path, contentType, body string) (int, string) {
	c.TB.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, c.Base+path, r)
	if err != nil {
		c.TB.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if c.Token != "" {
		req.Header.Set("X-Authorization", c.Token)
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	res, err := hc.Do(req)
	if err != nil {
		c.TB.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		c.TB.Fatal(err)
	}
	return res.StatusCode, string(b)
}

// Must sends a request that must be answered with status, and returns the
// body.
func (c Client) Must(status int, method, path, body string) string {
	c.TB.Helper()
	got, out := c.Do(method, path, body)
	if got != status {
		c.TB.Fatalf("%s %s = %d %s, want %d", method, path, got, out, status)
	}
	return out
}
