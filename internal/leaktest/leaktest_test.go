package leaktest

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Every way a careless path could write the secret is found; unrelated
// data is not.
func TestFindsEncodedForms(t *testing.T) {
	secret := RandomSecret(32)
	jsonBody, _ := json.Marshal(map[string]string{"token": string(secret)})
	var logLine bytes.Buffer
	slog.New(slog.NewJSONHandler(&logLine, nil)).Info("request", "body", string(jsonBody))
	var textLine bytes.Buffer
	slog.New(slog.NewTextHandler(&textLine, nil)).Info("request", "v", string(secret))
	// An error that quotes the value (%q), logged: JSON-escaped or quoted
	// again around Go's escapes.
	quoting := fmt.Errorf("token %q refused", secret)
	var errJSON, errText bytes.Buffer
	slog.New(slog.NewJSONHandler(&errJSON, nil)).Error("call failed", "err", quoting)
	slog.New(slog.NewTextHandler(&errText, nil)).Error("call failed", "err", quoting)
	cases := map[string][]byte{
		"raw":           append([]byte("prefix "), append(secret, " suffix"...)...),
		"hex":           []byte(hex.EncodeToString(append([]byte("x"), secret...))),
		"query":         []byte("https://h/p?token=" + url.QueryEscape(string(secret)) + "&x=1"),
		"path":          []byte("/api/" + url.PathEscape(string(secret))),
		"json":          jsonBody,
		"json-in-json":  logLine.Bytes(),
		"json-dotnet":   []byte(`{"token":"` + DotNetJSON(string(secret)) + `"}`),
		"slog-text":     textLine.Bytes(),
		"fmt-q":         []byte(fmt.Sprintf("%q", secret)),
		"fmt-q-in-json": errJSON.Bytes(),
		"fmt-q-in-text": errText.Bytes(),
		"truncated":     secret[:20],
	}
	for off := 0; off < 3; off++ {
		for _, suffix := range []string{"", "a", "ab", "abc"} {
			buf := append(append(bytes.Repeat([]byte("p"), off), secret...), suffix...)
			cases[fmt.Sprintf("base64@%d+%d", off, len(suffix))] = []byte(base64.StdEncoding.EncodeToString(buf))
			cases[fmt.Sprintf("base64url@%d+%d", off, len(suffix))] = []byte(base64.RawURLEncoding.EncodeToString(buf))
		}
	}
	for name, data := range cases {
		s := New(secret)
		s.Scan("case "+name, data)
		if len(s.Hits()) == 0 {
			t.Errorf("%s: not found", name)
		}
	}
	s := New(secret)
	s.Scan("unrelated", bytes.Repeat([]byte(base64.StdEncoding.EncodeToString(RandomSecret(64))), 10))
	s.Scan("other secret", RandomSecret(32))
	if len(s.Hits()) != 0 {
		t.Fatalf("false positives: %v", s.Hits())
	}
	for _, f := range Forms(secret) {
		if len(f.Bytes) < MinFormLen {
			t.Errorf("form %s is %d bytes", f.Name, len(f.Bytes))
		}
	}
}

// A failing Check names places and forms, never the secret.
func TestCheckReport(t *testing.T) {
	secret := RandomSecret(32)
	s := New(secret)
	s.Scan("file x", secret)
	ft := &fakeTB{}
	s.Check(ft)
	if !ft.failed || !strings.Contains(ft.msg, "file x: raw form") || strings.Contains(ft.msg, string(secret)) {
		t.Fatalf("report %q (failed %v)", ft.msg, ft.failed)
	}
}

type fakeTB struct {
	testing.TB
	failed bool
	msg    string
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.failed, f.msg = true, fmt.Sprintf(format, args...)
}

// A secret travels in HTTP headers, whose values lose their outer
// whitespace: a random secret has none.
func TestRandomSecretHasNoOuterSpace(t *testing.T) {
	for range 2000 {
		s := RandomSecret(32)
		if s[0] == ' ' || s[len(s)-1] == ' ' {
			t.Fatalf("%q starts or ends with a space", s)
		}
	}
}

// A file or directory named with the secret is found, whatever it holds,
// and the report reads the name without it.
func TestScanDirFindsNames(t *testing.T) {
	t.Parallel()
	secret := []byte(strings.ToLower(hex.EncodeToString(RandomSecret(16))))
	for _, tc := range []struct{ name, path string }{
		{"file", "kv/" + string(secret) + ".blk"},
		{"directory", "streams/s-" + string(secret) + "/msgs/1.blk"},
		{"base64 in a name", "keys/" + base64.RawURLEncoding.EncodeToString(secret)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			path := filepath.Join(dir, filepath.FromSlash(tc.path))
			if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte("nothing secret"), 0o600); err != nil {
				t.Fatal(err)
			}
			s := New(secret)
			s.ScanDir(t, dir)
			ft := &fakeTB{}
			s.Check(ft)
			if !ft.failed || !strings.Contains(ft.msg, "filename ") || strings.Contains(ft.msg, string(secret)) {
				t.Fatalf("report %q (failed %v)", ft.msg, ft.failed)
			}
		})
	}
}
