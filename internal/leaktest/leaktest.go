// Package leaktest searches everything a flowvault process leaves behind
// for a planted secret: HTTP responses, log output, metrics, every message
// of every JetStream stream, every file of a data directory (and its
// name) and every key and value of a Pebble store. It looks for the plaintext and for the
// encodings a leak would take on the way (base64 at every alignment, hex,
// URL escaping, JSON and Go quoting), and reports where it found one,
// never the secret itself.
//
// Typical use:
//
//	secret := leaktest.RandomSecret(32)
//	sc := leaktest.New(secret)
//	client := sc.Client(func(r *http.Request) bool { return r.URL.Path == "/api/secrets/k" && r.Method == "GET" })
//	... drive the server with client ...
//	sc.ScanStreams(t, js)
//	sc.Scan("log", []byte(logs.String()))
//	sc.ScanDir(t, dataDir)
//	sc.Check(t)
package leaktest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf16"

	"github.com/cockroachdb/pebble/v2"
	"github.com/nats-io/nats.go/jetstream"
)

// MinFormLen is the shortest encoded form searched for: shorter ones would
// match unrelated bytes.
const MinFormLen = 8

// Form is one encoding of the secret.
type Form struct {
	Name  string
	Bytes []byte
}

// Hit is one place a form was found.
type Hit struct {
	Where  string
	Form   string
	Offset int
}

func (h Hit) String() string { return fmt.Sprintf("%s: %s form at byte %d", h.Where, h.Form, h.Offset) }

// secretAlphabet mixes characters that JSON, URLs and Go quote differently
// from raw text, so that each encoded form differs from the plaintext.
const secretAlphabet = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789\"\\/+&=%<> ?#'"

// RandomSecret returns n random printable ASCII bytes, including
// characters that JSON, URL and Go quoting escape. It always contains at
// least one of each of '"', '\\' and '&' so that those forms differ, and
// never starts or ends with a space.
func RandomSecret(n int) []byte {
	b := make([]byte, n)
	r := make([]byte, n)
	_, _ = rand.Read(r)
	for i := range b {
		b[i] = secretAlphabet[int(r[i])%len(secretAlphabet)]
	}
	if n >= 8 {
		b[n/4], b[n/2], b[3*n/4] = '"', '\\', '&'
	}
	// HTTP trims a header value's outer whitespace: a secret sent in one
	// (the leak test's Authorization header) would arrive without it.
	for _, i := range []int{0, n - 1} {
		if n > 0 && b[i] == ' ' {
			b[i] = 'x'
		}
	}
	return b
}

// Forms returns the encodings of secret to search for, each at least
// MinFormLen bytes, without duplicates.
func Forms(secret []byte) []Form {
	var out []Form
	seen := map[string]bool{}
	add := func(name string, b []byte) {
		if len(b) < MinFormLen || seen[string(b)] {
			return
		}
		seen[string(b)] = true
		out = append(out, Form{name, b})
	}
	add("raw", secret)
	add("hex", []byte(hex.EncodeToString(secret)))
	add("HEX", []byte(strings.ToUpper(hex.EncodeToString(secret))))
	for _, enc := range []struct {
		name string
		e    *base64.Encoding
	}{{"base64", base64.StdEncoding}, {"base64url", base64.URLEncoding}} {
		for off := 0; off < 3; off++ {
			add(fmt.Sprintf("%s@%d", enc.name, off), base64Core(enc.e, secret, off))
		}
	}
	add("url-query", []byte(url.QueryEscape(string(secret))))
	add("url-path", []byte(url.PathEscape(string(secret))))
	j, _ := json.Marshal(string(secret))
	add("json", j[1:len(j)-1])
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(string(secret))
	add("json-no-html", bytes.TrimSuffix(bytes.TrimSpace(b.Bytes()), []byte(`"`))[1:])
	q := strconv.Quote(string(secret))
	add("go-quoted", []byte(q[1:len(q)-1]))
	add("json-dotnet", []byte(DotNetJSON(string(secret))))
	jj, _ := json.Marshal(string(j)) // JSON inside JSON (a log line quoting a JSON body)
	add("json-in-json", jj[3:len(jj)-3])
	jq, _ := json.Marshal(q) // a Go-quoted value inside JSON (an error's %q in a JSON log line or body)
	add("go-quoted-in-json", jq[3:len(jq)-3])
	qq := strconv.Quote(q) // a Go-quoted value quoted again (an error's %q in a text log line)
	add("go-quoted-twice", []byte(qq[3:len(qq)-3]))
	if len(secret) >= 24 {
		add("raw-first-half", secret[:len(secret)/2])
		add("raw-second-half", secret[len(secret)/2:])
	}
	return out
}

// DotNetJSON is s as .NET's System.Text.Json writes it in a JSON string,
// without its quotes: its default encoder escapes quotes, '+', '`' and
// HTML's specials as \uXXXX, in upper case, as it does every non-ASCII
// character.
func DotNetJSON(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\b' || r == '\f' || r == '\n' || r == '\r' || r == '\t':
			q := strconv.Quote(string(r))
			b.WriteString(q[1 : len(q)-1])
		case r == '"' || r == '\'' || r == '+' || r == '`' || r == '<' || r == '>' || r == '&' || r < 0x20 || r >= 0x7f:
			for _, u := range utf16.Encode([]rune{r}) {
				fmt.Fprintf(&b, `\u%04X`, u)
			}
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// base64Core is the part of the base64 encoding of secret, placed off bytes
// into a larger buffer, that depends only on the secret: whatever precedes
// or follows it, these characters appear in the encoding of the buffer.
func base64Core(e *base64.Encoding, secret []byte, off int) []byte {
	buf := append(make([]byte, off), secret...)
	s := e.EncodeToString(buf)
	start := (off + 2) / 3 * 4
	end := len(buf) / 3 * 4
	if start >= end {
		return nil
	}
	return []byte(s[start:end])
}

// Scanner records where the forms of one secret were found. It is safe for
// concurrent use.
type Scanner struct {
	forms []Form

	mu      sync.Mutex
	hits    []Hit
	scanned map[string]int // category -> bytes scanned
	streams []string
}

// New returns a Scanner for secret.
func New(secret []byte) *Scanner {
	return &Scanner{forms: Forms(secret), scanned: map[string]int{}}
}

// Scan searches data, found at where, for every form.
func (s *Scanner) Scan(where string, data []byte) {
	var hits []Hit
	for _, f := range s.forms {
		if i := bytes.Index(data, f.Bytes); i >= 0 {
			hits = append(hits, Hit{Where: where, Form: f.Name, Offset: i})
		}
	}
	cat, _, _ := strings.Cut(where, " ")
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hits = append(s.hits, hits...)
	s.scanned[cat] += len(data)
}

// Hits returns what was found so far.
func (s *Scanner) Hits() []Hit {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Hit(nil), s.hits...)
}

// Scanned returns how many bytes were scanned per category (the first word
// of where).
func (s *Scanner) Scanned() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]int{}
	for k, v := range s.scanned {
		out[k] = v
	}
	return out
}

// Streams returns the streams ScanStreams read.
func (s *Scanner) Streams() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.streams...)
}

// Check fails tb if any form was found anywhere. The report names the
// places and forms, never the secret.
func (s *Scanner) Check(tb testing.TB) {
	tb.Helper()
	hits := s.Hits()
	if len(hits) == 0 {
		return
	}
	lines := make([]string, len(hits))
	for i, h := range hits {
		lines[i] = h.String()
	}
	sort.Strings(lines)
	tb.Fatalf("the secret leaked in %d places:\n%s", len(hits), strings.Join(lines, "\n"))
}

// Client returns an HTTP client whose responses are scanned, except those
// to requests for which exempt returns true (the one request that must
// return the value). Response headers are scanned too.
func (s *Scanner) Client(exempt func(*http.Request) bool) *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &scanTransport{s: s, exempt: exempt, next: http.DefaultTransport}}
}

type scanTransport struct {
	s      *Scanner
	exempt func(*http.Request) bool
	next   http.RoundTripper
}

func (t *scanTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(r)
	if err != nil || (t.exempt != nil && t.exempt(r)) {
		return resp, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	where := fmt.Sprintf("http %s %s -> %d", r.Method, r.URL.RequestURI(), resp.StatusCode)
	var hdr bytes.Buffer
	_ = resp.Header.Write(&hdr)
	t.s.Scan(where+" (headers)", hdr.Bytes())
	t.s.Scan(where, body)
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return resp, nil
}

// ScanStreams reads every message of every stream through the JetStream
// API (subject, headers and data), whatever the stream's retention.
func (s *Scanner) ScanStreams(tb testing.TB, js jetstream.JetStream) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	names := js.StreamNames(ctx)
	var all []string
	for n := range names.Name() {
		all = append(all, n)
	}
	if err := names.Err(); err != nil {
		tb.Fatalf("list streams: %v", err)
	}
	sort.Strings(all)
	for _, name := range all {
		st, err := js.Stream(ctx, name)
		if err != nil {
			tb.Fatalf("stream %s: %v", name, err)
		}
		info, err := st.Info(ctx)
		if err != nil {
			tb.Fatalf("stream %s: %v", name, err)
		}
		for seq := info.State.FirstSeq; seq > 0 && seq <= info.State.LastSeq; seq++ {
			m, err := st.GetMsg(ctx, seq)
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				continue
			}
			if err != nil {
				tb.Fatalf("stream %s #%d: %v", name, seq, err)
			}
			where := fmt.Sprintf("stream %s #%d %s", name, seq, m.Subject)
			var hdr bytes.Buffer
			_ = http.Header(m.Header).Write(&hdr)
			s.Scan(where, append(append([]byte(m.Subject+"\n"), hdr.Bytes()...), m.Data...))
		}
		s.mu.Lock()
		s.streams = append(s.streams, name)
		s.mu.Unlock()
	}
}

// ScanDir reads every regular file under dir, raw, and the name of every
// file and directory under it: a name made of the secret (a key or a
// subject a store keeps as a file) is as readable as a file's contents.
func (s *Scanner) ScanDir(tb testing.TB, dir string) {
	tb.Helper()
	n := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		if rel != "." {
			s.scanName(rel)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		s.Scan("file "+rel, b)
		n++
		return nil
	})
	if err != nil {
		tb.Fatalf("scan %s: %v", dir, err)
	}
	if n == 0 {
		tb.Fatalf("scan %s: no files", dir)
	}
}

// scanName searches the path of an entry for every form; the hit names
// the path with each form found in it read as ***, never the secret.
func (s *Scanner) scanName(rel string) {
	masked := rel
	for _, f := range s.forms {
		masked = strings.ReplaceAll(masked, string(f.Bytes), "***")
	}
	s.Scan("filename "+masked, []byte(rel))
}

// ScanPebble opens the (closed) Pebble store in dir read-only and scans
// every key and value, which catches what block compression would hide
// from ScanDir.
func (s *Scanner) ScanPebble(tb testing.TB, dir string) {
	tb.Helper()
	db, err := pebble.Open(dir, &pebble.Options{ReadOnly: true, Logger: quietLogger{tb}})
	if err != nil {
		tb.Fatalf("open pebble %s: %v", dir, err)
	}
	defer db.Close()
	it, err := db.NewIter(nil)
	if err != nil {
		tb.Fatal(err)
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			tb.Fatal(err)
		}
		s.Scan(fmt.Sprintf("pebble %q", it.Key()), append(append([]byte(nil), it.Key()...), v...))
	}
	if err := it.Error(); err != nil {
		tb.Fatal(err)
	}
}

// quietLogger keeps Pebble's informational output out of test logs.
type quietLogger struct{ tb testing.TB }

func (quietLogger) Infof(string, ...any)                {}
func (l quietLogger) Errorf(format string, args ...any) { l.tb.Logf("pebble: "+format, args...) }
func (l quietLogger) Fatalf(format string, args ...any) { l.tb.Fatalf("pebble: "+format, args...) }
