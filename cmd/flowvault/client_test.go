package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeServer stands in for a flowvault server: POST /api/token mints the
// token "tok" for the key of testKeyFile, and the other requests, which
// must carry that token, are answered from routes ("GET /path" → JSON
// body) or with 404. It records every request.
type fakeServer struct {
	URL string
	mu  sync.Mutex
	got []string
}

func newFakeServer(t *testing.T, routes map[string]string) *fakeServer {
	t.Helper()
	f := &fakeServer{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		route := r.Method + " " + r.URL.EscapedPath()
		body, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.got = append(f.got, route)
		f.mu.Unlock()
		switch {
		case route == "POST /api/token" && string(body) == `{"keyId":"k","keySecret":"s"}`:
			io.WriteString(w, `{"token":"tok"}`)
		case route == "POST /api/token" || r.Header.Get("X-Authorization") != "tok":
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"status":401,"message":"missing token"}`)
		case routes[route] != "":
			io.WriteString(w, routes[route])
		default:
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"status":404,"message":"not found"}`)
		}
	}))
	t.Cleanup(srv.Close)
	f.URL = srv.URL
	return f
}

// requests returns the requests received so far, as "METHOD /path".
func (f *fakeServer) requests() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.got)
}

// testKeyFile writes the fake server's access key to a 0600 key file.
func testKeyFile(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "key.json")
	if err := os.WriteFile(path, []byte(`{"keyId":"k","keySecret":"s"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// runCLI runs the command line in this process.
func runCLI(args ...string) (stdout, stderr string, code int) {
	var o, e bytes.Buffer
	code = run(context.Background(), args, &o, &e)
	return o.String(), e.String(), code
}

// The client follows no redirect: a redirected request would carry its
// token, or POST /api/token's key secret, to wherever the answer points.
// The redirect is an error that names its status and target.
func TestClientFollowsNoRedirect(t *testing.T) {
	t.Parallel()
	elsewhere := newFakeServer(t, map[string]string{"GET /api/secrets-v2": `[]`})
	for _, status := range []int{http.StatusMovedPermanently, http.StatusFound, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, elsewhere.URL+r.URL.Path, status)
		}))
		t.Cleanup(redirector.Close)
		for _, tt := range []struct {
			name  string
			key   *accessKey
			token string
		}{
			{"signing in", &accessKey{KeyID: "k", KeySecret: "s"}, ""},
			{"with a token", nil, "tok"},
		} {
			c, err := newAPIClient(redirector.URL)
			if err != nil {
				t.Fatal(err)
			}
			c.key, c.token = tt.key, tt.token
			_, err = c.do(context.Background(), "GET", "/api/secrets-v2", "", nil)
			if err == nil || !strings.Contains(err.Error(), "HTTP "+strconv.Itoa(status)) || !strings.Contains(err.Error(), elsewhere.URL) {
				t.Errorf("%d %s: %v; want an error naming the status and the target", status, tt.name, err)
			}
		}
	}
	if got := elsewhere.requests(); len(got) > 0 {
		t.Fatalf("the redirect target received %v", got)
	}
}

// A sign-in the server rate-limits (429) is tried again after the
// Retry-After it names, within a budget of a few seconds: every run of the
// CLI mints a token, and a script runs it in a loop.
func TestTokenRetriesRateLimit(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		retryAfter []string // the Retry-After of each 429 before a token; "-" for none
		wantWaits  []time.Duration
		wantErr    string
	}{
		{"twice", []string{"1", "1"}, []time.Duration{time.Second, time.Second}, ""},
		{"without Retry-After", []string{"-"}, []time.Duration{time.Second}, ""},
		{"at once", []string{"0"}, []time.Duration{0}, ""},
		{"beyond the budget", []string{"30"}, nil, "HTTP 429"},
		{"budget spent", []string{"2", "2", "2"}, []time.Duration{2 * time.Second, 2 * time.Second}, "HTTP 429"},
		{"tries bounded", []string{"0", "0", "0", "0", "0"}, []time.Duration{0, 0, 0}, "HTTP 429"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var mu sync.Mutex
			tries := 0
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				defer mu.Unlock()
				if tries++; tries <= len(tt.retryAfter) {
					if v := tt.retryAfter[tries-1]; v != "-" {
						w.Header().Set("Retry-After", v)
					}
					w.WriteHeader(http.StatusTooManyRequests)
					io.WriteString(w, `{"status":429,"message":"too many token requests"}`)
					return
				}
				io.WriteString(w, `{"token":"tok"}`)
			}))
			defer srv.Close()
			c, err := newAPIClient(srv.URL)
			if err != nil {
				t.Fatal(err)
			}
			c.key = &accessKey{KeyID: "k", KeySecret: "s"}
			var waits []time.Duration
			c.wait = func(_ context.Context, d time.Duration) error { waits = append(waits, d); return nil }
			err = c.authenticate(context.Background())
			if tt.wantErr == "" && (err != nil || c.token != "tok") {
				t.Fatalf("sign in: %v, token %q", err, c.token)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("sign in: %v; want an error mentioning %q", err, tt.wantErr)
			}
			if !slices.Equal(waits, tt.wantWaits) {
				t.Fatalf("waited %v, want %v", waits, tt.wantWaits)
			}
		})
	}
}

// A --key-file given on the command line wins over every credential of
// the environment. Not parallel: it sets the environment.
func TestKeyFileFlagWinsOverEnvironment(t *testing.T) {
	srv := newFakeServer(t, map[string]string{"GET /api/secrets-v2": `[]`})
	keyFile := testKeyFile(t)
	for _, env := range [][]string{
		{"FLOWVAULT_TOKEN", "env-token"},
		{"FLOWVAULT_KEY_ID", "env-key", "FLOWVAULT_KEY_SECRET", "env-secret"},
		{"FLOWVAULT_KEY_FILE", filepath.Join(t.TempDir(), "absent.json")},
	} {
		t.Run(env[0], func(t *testing.T) {
			for i := 0; i < len(env); i += 2 {
				t.Setenv(env[i], env[i+1])
			}
			if _, errOut, code := runCLI("secret", "list", "--server", srv.URL, "--key-file", keyFile); code != 0 {
				t.Fatalf("exit %d %q; want the flag's key to sign in", code, errOut)
			}
		})
	}
}

// clearCredentialEnv unsets (for the test) the variables the CLI reads
// credentials from.
func clearCredentialEnv(t *testing.T) {
	t.Helper()
	for _, name := range []string{"FLOWVAULT_TOKEN", "FLOWVAULT_KEY_ID", "FLOWVAULT_KEY_SECRET", "FLOWVAULT_KEY_FILE"} {
		t.Setenv(name, "")
		os.Unsetenv(name)
	}
}

// With no credentials anywhere, the server's 401 comes with the sources
// that were tried. Not parallel: it sets the environment and the working
// directory.
func TestNoCredentialsNamesTheSources(t *testing.T) {
	clearCredentialEnv(t)
	t.Chdir(t.TempDir())
	srv := newFakeServer(t, nil)
	_, errOut, code := runCLI("secret", "list", "--server", srv.URL)
	if code != 1 {
		t.Fatalf("exit %d %q; want 1", code, errOut)
	}
	for _, want := range []string{"missing token", "--key-file", "$FLOWVAULT_TOKEN", "$FLOWVAULT_KEY_ID", "$FLOWVAULT_KEY_FILE",
		filepath.Join("data", "bootstrap-admin.json")} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr %q does not mention %s", errOut, want)
		}
	}
}

// A refused token or key (401) comes with where it was taken from: a
// variable set long ago, or the default key file of an older data
// directory, wins silently otherwise. The refused secret is not repeated.
// Not parallel: it sets the environment and the working directory.
func TestRefusedCredentialsNameTheirSource(t *testing.T) {
	srv := newFakeServer(t, nil)
	wrongKey := filepath.Join(t.TempDir(), "wrong.json")
	if err := os.WriteFile(wrongKey, []byte(`{"keyId":"k","keySecret":"old-secret"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"token", []string{"FLOWVAULT_TOKEN", "old-secret"}, nil, "the token is $FLOWVAULT_TOKEN's"},
		{"key variables", []string{"FLOWVAULT_KEY_ID", "k", "FLOWVAULT_KEY_SECRET", "old-secret"}, nil, "the key is $FLOWVAULT_KEY_ID's"},
		{"key file variable", []string{"FLOWVAULT_KEY_FILE", wrongKey}, nil, "the key is from $FLOWVAULT_KEY_FILE " + wrongKey},
		{"default key file", nil, nil, "the key is from the default key file " + defaultKeyFile},
		{"--key-file", nil, []string{"--key-file", wrongKey}, "the key is from " + wrongKey},
	} {
		t.Run(tt.name, func(t *testing.T) {
			clearCredentialEnv(t)
			for i := 0; i < len(tt.env); i += 2 {
				t.Setenv(tt.env[i], tt.env[i+1])
			}
			dir := t.TempDir()
			t.Chdir(dir)
			if err := os.Mkdir(filepath.Join(dir, "data"), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(defaultKeyFile, []byte(`{"keyId":"k","keySecret":"old-secret"}`), 0o600); err != nil {
				t.Fatal(err)
			}
			_, errOut, code := runCLI(append([]string{"secret", "list", "--server", srv.URL}, tt.args...)...)
			if code != 1 || !strings.Contains(errOut, "(HTTP 401); "+tt.want) || strings.Contains(errOut, "old-secret") {
				t.Fatalf("exit %d %q; want 1 saying %q, without the secret", code, errOut, tt.want)
			}
		})
	}
}

// A key file other users may read draws a warning, as a master key file
// does; a private one does not.
func TestKeyFileModeWarning(t *testing.T) {
	t.Parallel()
	srv := newFakeServer(t, map[string]string{"GET /api/secrets-v2": `[]`})
	for _, tt := range []struct {
		mode os.FileMode
		warn bool
	}{{0o600, false}, {0o640, true}, {0o644, true}, {0o400, false}} {
		keyFile := testKeyFile(t)
		if err := os.Chmod(keyFile, tt.mode); err != nil {
			t.Fatal(err)
		}
		_, errOut, code := runCLI("secret", "list", "--server", srv.URL, "--key-file", keyFile)
		if code != 0 || strings.Contains(errOut, "readable by other users") != tt.warn {
			t.Errorf("mode %v: exit %d %q; want a warning: %v", tt.mode, code, errOut, tt.warn)
		}
	}
}

// A --server without a scheme is refused with the form wanted, and the
// password of a URL's userinfo is never repeated in an error.
func TestServerURL(t *testing.T) {
	t.Parallel()
	keyFile := testKeyFile(t)
	for _, tt := range []struct {
		server string
		want   string
	}{
		{"127.0.0.1:8080", "want http://host:port"},
		{"localhost:8080", "want http://host:port"},
		{"ftp://127.0.0.1:8080", "want http://host:port"},
		{"http://", "want http://host:port"},
		{"user:hunter2@127.0.0.1:1", "want http://host:port"},
		{"http://user:hunter2@127.0.0.1:1", "server http://user:xxxxx@127.0.0.1:1"},
	} {
		_, errOut, code := runCLI("secret", "list", "--server", tt.server, "--key-file", keyFile)
		if code != 1 || !strings.Contains(errOut, tt.want) || strings.Contains(errOut, "hunter2") {
			t.Errorf("--server %s: exit %d %q; want 1 mentioning %q, without the password", tt.server, code, errOut, tt.want)
		}
	}
}

// Plain http to a host beyond loopback would carry the access key's
// secret in the clear: refused unless --insecure-plaintext accepts it,
// before anything is sent (192.0.2.1, TEST-NET-1, is never dialled).
// 0.0.0.0 counts as beyond loopback, as it does for the server's
// listeners, and reaches this machine when accepted.
func TestPlainHTTPBeyondLoopbackRefused(t *testing.T) {
	t.Parallel()
	keyFile := testKeyFile(t)
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--server", "http://192.0.2.1:1"}, "plain http to a host other than this machine"},
		{[]string{"--server", "http://0.0.0.0:1"}, "plain http to a host other than this machine"},
		{[]string{"--server", "http://[::1]:1"}, "connection refused"},
		{[]string{"--server", "http://localhost:1"}, "connection refused"},
		{[]string{"--server", "http://0.0.0.0:1", "--insecure-plaintext"}, "connection refused"},
	} {
		_, errOut, code := runCLI(append([]string{"secret", "list", "--key-file", keyFile}, tt.args...)...)
		if code != 1 || !strings.Contains(errOut, tt.want) {
			t.Errorf("%v: exit %d %q; want 1 mentioning %q", tt.args, code, errOut, tt.want)
		}
	}
}
