package api

import (
	"bytes"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strings"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/secrets"
)

// maxValueBody bounds the body of a value PUT: a value of the largest
// allowed size sent as a JSON string literal, every byte escaped.
const maxValueBody = 6*secrets.MaxValueLen + 2

// readValueBody reads the value of PUT /api/secrets/{key} or
// /api/environment/{key}. The body is the value itself (text/plain, the
// Java, Go and Python SDKs), except that an application/json body that is
// one JSON string literal is decoded (the JS SDK and the documented curl
// send "value" with the quotes): orkes-secrets.md §1.3. Any other JSON (an
// object, say) is a JSON value and is stored as sent. The caller wipes the
// result. Errors name the limit and never quote the body.
func readValueBody(w http.ResponseWriter, r *http.Request, kind string) ([]byte, error) {
	// Read so that the body wiped is the one copy of the value read.
	body, err := secrets.ReadValue(maxBytesReader(w, r.Body, maxValueBody))
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return nil, fmt.Errorf("%s value is over the limit of %d bytes: %w", kind, secrets.MaxValueLen, fault.ErrTooLarge)
	case err != nil:
		return nil, fault.Invalid("read %s value: %v", kind, err)
	}
	if !isJSON(r.Header.Get("Content-Type")) {
		return body, nil
	}
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 || trimmed[0] != '"' {
		return body, nil
	}
	v, ok := unquoteJSON(trimmed)
	if !ok {
		return body, nil
	}
	wipeBytes(body)
	return v, nil
}

func isJSON(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	return mt == "application/json" || strings.HasSuffix(mt, "+json")
}

func wipeBytes(b []byte) { clear(b) }

// unquoteJSON decodes b if it is exactly one JSON string literal (RFC 8259
// §7), into a new slice the caller can wipe; encoding/json would decode
// into a string, which cannot be wiped. ok is false for anything else.
func unquoteJSON(b []byte) (out []byte, ok bool) {
	if len(b) < 2 || b[0] != '"' || b[len(b)-1] != '"' {
		return nil, false
	}
	s := b[1 : len(b)-1]
	out = make([]byte, 0, len(s))
	fail := func() ([]byte, bool) { wipeBytes(out); return nil, false }
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '"' || c < 0x20:
			return fail()
		case c != '\\':
			r, size := utf8.DecodeRune(s[i:])
			if r == utf8.RuneError && size == 1 {
				return fail()
			}
			out = append(out, s[i:i+size]...)
			i += size
			continue
		}
		if i+1 >= len(s) {
			return fail()
		}
		switch e := s[i+1]; e {
		case '"', '\\', '/':
			out = append(out, e)
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, n := hex4(s[i+2:])
			if n < 0 {
				return fail()
			}
			i += 6
			if utf16.IsSurrogate(r) {
				r2 := rune(-1)
				if i+1 < len(s) && s[i] == '\\' && s[i+1] == 'u' {
					if r2, n = hex4(s[i+2:]); n < 0 {
						return fail()
					}
				}
				if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
					r = dec
					i += 6
				} else {
					r = utf8.RuneError // a lone surrogate, as encoding/json decodes it
				}
			}
			out = utf8.AppendRune(out, r)
			continue
		default:
			return fail()
		}
		i += 2
	}
	return out, true
}

// hex4 reads four hex digits; n is -1 when they are not there.
func hex4(b []byte) (r rune, n int) {
	if len(b) < 4 {
		return 0, -1
	}
	for _, c := range b[:4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, -1
		}
		r = r<<4 | rune(c)
	}
	return r, 4
}

// writeValue answers with a value as text/plain (never cached, as no
// answer is: see Server.ServeHTTP).
func writeValue(w http.ResponseWriter, value []byte) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Content-Length", fmt.Sprint(len(value)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(value)
}
