package expr

import (
	"fmt"
	"strconv"
	"strings"
)

// Path locates a value inside an evaluated template: map keys (string) and
// slice indices (int), from the root.
type Path []any

// In returns the value at p inside v, and whether there is one.
func (p Path) In(v any) (any, bool) { return get(v, p) }

// String renders p in JSONPath-like form relative to the template root:
// `http_request.headers.Authorization`, `items[2]`, `headers['X Key']`. The
// root itself is "".
func (p Path) String() string {
	var b strings.Builder
	for _, e := range p {
		switch k := e.(type) {
		case int:
			b.WriteString("[" + strconv.Itoa(k) + "]")
		case string:
			if isPlainKey(k) {
				if b.Len() > 0 {
					b.WriteByte('.')
				}
				b.WriteString(k)
			} else {
				b.WriteString("['" + strings.ReplaceAll(strings.ReplaceAll(k, `\`, `\\`), "'", `\'`) + "']")
			}
		default:
			fmt.Fprintf(&b, "[%v]", k)
		}
	}
	return b.String()
}

// isPlainKey reports whether k can be written in dot notation.
func isPlainKey(k string) bool {
	if k == "" {
		return false
	}
	for _, c := range k {
		if !(c == '_' || c == '-' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// PathError is an error in the string at Path (as Path.String renders it) of
// a template or value.
type PathError struct {
	Path string
	Err  error
}

func (e PathError) Error() string {
	if e.Path == "" {
		return e.Err.Error()
	}
	return e.Path + ": " + e.Err.Error()
}

// Unwrap returns the underlying error, so errors.Is(err, ErrSyntax) holds for
// syntax errors.
func (e PathError) Unwrap() error { return e.Err }
