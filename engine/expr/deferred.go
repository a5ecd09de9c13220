package expr

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"unicode"
)

// Deferred namespaces are resolved late, at task hand-off, so that their
// values are never stored with the execution.
const (
	secretsPrefix = "workflow.secrets."
	envPrefix     = "workflow.env."
)

func isDeferred(body string) bool {
	return strings.HasPrefix(body, secretsPrefix) || strings.HasPrefix(body, envPrefix)
}

// deferredNamespace is the namespace a body that namesDeferred names.
func deferredNamespace(body []node) string {
	if strings.HasPrefix(strings.TrimLeftFunc(body[0].text, unicode.IsSpace), envPrefix) {
		return envPrefix
	}
	return secretsPrefix
}

// namesDeferred reports whether an expression body names a deferred
// namespace in its own literal text. A namespace that only appears after
// nested substitution (${${workflow.input.ref}}) came from data, and data
// must not be able to turn an ordinary lookup into a secret reference; such a
// body is looked up in the document like any other path (and finds nothing).
func namesDeferred(body []node) bool {
	return len(body) > 0 && !body[0].expr && isDeferred(strings.TrimLeftFunc(body[0].text, unicode.IsSpace))
}

// The deferred encoding is how Evaluate writes a string that still holds
// deferred expressions, and what ResolveDeferred reads. In it, a run of k
// "$" followed by "{" means:
//
//	k odd:  (k-1)/2 literal "$", then a deferred expression "${body}"
//	k even: k/2 literal "$", then a literal "{"
//
// and "$" anywhere else is literal. So "${workflow.secrets.t}" is an
// expression, "$${x}" is the literal text "${x}" (the familiar escape), and a
// literal "$" right before an expression is "$$${...}". Evaluate writes all
// template text and substituted data through deferredWriter.literal, which
// doubles every such run; the only expressions in the result are therefore
// the ones the template itself wrote in a deferred namespace.

// deferredWriter builds a string in the deferred encoding.
type deferredWriter struct {
	b       strings.Builder
	dollars int // "$" held back until the next byte shows whether "{" follows
}

func (w *deferredWriter) literal(s string) {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '$':
			w.dollars++
		case '{':
			w.flush(2)
			w.b.WriteByte(c)
		default:
			w.flush(1)
			w.b.WriteByte(c)
		}
	}
}

// expr writes a deferred expression; body must not contain braces.
func (w *deferredWriter) expr(body string) {
	w.flush(2)
	w.b.WriteString("${")
	w.b.WriteString(body)
	w.b.WriteByte('}')
}

func (w *deferredWriter) flush(factor int) {
	w.b.WriteString(strings.Repeat("$", w.dollars*factor))
	w.dollars = 0
}

func (w *deferredWriter) String() string {
	w.flush(1)
	return w.b.String()
}

// piece is a decoded part of a deferred string: literal text, or the body
// of a deferred expression.
type piece struct {
	text string
	expr bool
}

var errMalformed = errors.New("malformed deferred string")

// decodeDeferred splits a string in the deferred encoding into pieces.
func decodeDeferred(s string) ([]piece, error) {
	var (
		pieces []piece
		lit    strings.Builder
	)
	for i := 0; i < len(s); {
		if s[i] != '$' {
			j := strings.IndexByte(s[i:], '$')
			if j < 0 {
				j = len(s) - i
			}
			lit.WriteString(s[i : i+j])
			i += j
			continue
		}
		j := i
		for j < len(s) && s[j] == '$' {
			j++
		}
		k := j - i
		if j == len(s) || s[j] != '{' {
			lit.WriteString(s[i:j])
			i = j
			continue
		}
		lit.WriteString(strings.Repeat("$", k/2))
		if k%2 == 0 {
			lit.WriteByte('{')
			i = j + 1
			continue
		}
		end := strings.IndexByte(s[j+1:], '}')
		if end < 0 {
			return nil, fmt.Errorf("%w: unterminated \"${\" at offset %d", errMalformed, j-1)
		}
		body := s[j+1 : j+1+end]
		if strings.Contains(body, "{") || !isDeferred(body) && !strings.HasPrefix(body, SealedPrefix) {
			return nil, fmt.Errorf("%w: %q is not a deferred expression", errMalformed, body)
		}
		if lit.Len() > 0 {
			pieces = append(pieces, piece{text: lit.String()})
			lit.Reset()
		}
		pieces = append(pieces, piece{text: body, expr: true})
		i = j + 2 + end
	}
	if lit.Len() > 0 {
		pieces = append(pieces, piece{text: lit.String()})
	}
	return pieces, nil
}

// ErrNoDeferredString is a deferred path that does not hold a string in
// the value given to ResolveDeferred: one inside data sealed since, not
// opened for the resolution.
var ErrNoDeferredString = errors.New("no deferred string here")

// Resolver returns the value of a deferred expression body, e.g.
// "workflow.secrets.db_creds.password" or "workflow.env.region".
type Resolver interface {
	Resolve(body string) (any, error)
}

// ResolveDeferred returns a copy of value in which the strings at the
// deferred paths have their deferred expressions replaced via r (a
// whole-string expression keeps the resolver's JSON type; embedded ones
// interpolate) and "$${" escapes turned into "${". Only the given paths are
// touched, and they are read from value, never from the result, so resolved
// text is never scanned again. Errors from r, and a path that does not hold a
// string, are returned as a PathError naming the path.
//
// What the resolved values add is bounded by DefaultLimit, counted as in
// EvaluateWithin: a string repeating a reference to a large secret (a
// stored input of a few megabytes of references to one 64 KiB value is
// gigabytes resolved) is refused with a PathError wrapping ErrTooLarge as
// soon as it passes the bound, before it is whole.
//
// An embedded expression that resolves to nil contributes "", as OSS
// substituteSecrets does (Objects.toString(v, "")); elsewhere nil
// interpolates as "null".
func ResolveDeferred(value any, deferred []Path, r Resolver) (any, error) {
	out := deepCopy(value)
	e := &evaluator{limit: DefaultLimit, left: DefaultLimit, room: DefaultLimit}
	for _, p := range deferred {
		v, ok := get(value, p)
		s, isStr := v.(string)
		if !ok || !isStr {
			return nil, PathError{Path: p.String(), Err: ErrNoDeferredString}
		}
		resolved, err := e.resolveString(s, r)
		if err != nil {
			return nil, PathError{Path: p.String(), Err: err}
		}
		out = set(out, p, resolved)
	}
	return out, nil
}

func (e *evaluator) resolveString(s string, r Resolver) (any, error) {
	pieces, err := decodeDeferred(s)
	if err != nil {
		return nil, err
	}
	if len(pieces) == 1 && pieces[0].expr {
		v, err := r.Resolve(pieces[0].text)
		if err != nil {
			return nil, fmt.Errorf("resolve %s: %w", pieces[0].text, err)
		}
		c, ok := e.copy(v)
		if !ok {
			return nil, e.tooLarge()
		}
		return c, nil
	}
	var b strings.Builder
	for _, pc := range pieces {
		if !pc.expr {
			b.WriteString(pc.text)
			continue
		}
		v, err := r.Resolve(pc.text)
		if err != nil {
			return nil, fmt.Errorf("resolve %s: %w", pc.text, err)
		}
		if v != nil {
			b.WriteString(interpolate(v))
		}
		if b.Len() > e.room {
			return nil, e.tooLarge()
		}
	}
	e.room -= b.Len()
	return b.String(), nil
}

// get returns the value at p inside v.
func get(v any, p Path) (any, bool) {
	for _, k := range p {
		switch c := v.(type) {
		case map[string]any:
			key, ok := k.(string)
			if !ok {
				return nil, false
			}
			if v, ok = c[key]; !ok {
				return nil, false
			}
		case []any:
			i, ok := Index(k)
			if !ok || i < 0 || i >= len(c) {
				return nil, false
			}
			v = c[i]
		default:
			return nil, false
		}
	}
	return v, true
}

// set stores x at p inside v and returns v (or x, for the root). The path
// must exist, as get has checked on a value with the same containers.
func set(v any, p Path, x any) any {
	if len(p) == 0 {
		return x
	}
	parent, _ := get(v, p[:len(p)-1])
	switch c := parent.(type) {
	case map[string]any:
		c[p[len(p)-1].(string)] = x
	case []any:
		i, _ := Index(p[len(p)-1])
		c[i] = x
	}
	return v
}

// Index is a path's step into a list as an int. A path read back from the
// log or a state snapshot has its indices decoded by msgpack as the
// smallest integer type that holds them (int8 for 0, uint16 for 300), not
// as the int Evaluate wrote.
func Index(step any) (int, bool) {
	if i, ok := step.(int); ok {
		return i, true
	}
	switch v := reflect.ValueOf(step); {
	case v.CanInt():
		return int(v.Int()), true
	case v.CanUint() && v.Uint() <= math.MaxInt:
		return int(v.Uint()), true
	}
	return 0, false
}

// DeferSealed rewrites s, a string of a task's input (in the deferred
// encoding when encoded is set: its path is among the deferred ones), so
// that every occurrence of value in its literal text becomes the deferred
// read "${sealed:ref}", and reports whether value occurred. The result is
// in the deferred encoding. It is how a value sealed in the decision that
// also copied it into text stays sealed there and still reaches the taker.
func DeferSealed(s string, encoded bool, value, ref string) (string, bool) {
	if value == "" || strings.ContainsAny(ref, "{}") {
		return s, false
	}
	pieces := []piece{{text: s}}
	if encoded {
		var err error
		if pieces, err = decodeDeferred(s); err != nil {
			return s, false
		}
	}
	var w deferredWriter
	found := false
	for _, pc := range pieces {
		if pc.expr {
			w.expr(pc.text)
			continue
		}
		for i, part := range strings.Split(pc.text, value) {
			if i > 0 {
				w.expr(SealedPrefix + ref)
				found = true
			}
			w.literal(part)
		}
	}
	if !found {
		return s, false
	}
	return w.String(), true
}

// SealedRefs returns the REF of every deferred read of sealed data
// ("${sealed:REF}") in the string at deferred path p of v, in order: a
// workflow started with v is handed the sealed values they read, which it
// cannot look up in its starter's state.
func SealedRefs(v any, p Path) []string {
	if s, _ := p.In(v); !isStringWith(s, SealedPrefix) {
		return nil
	}
	var refs []string
	for _, body := range DeferredReads(v, p) {
		if ref, ok := strings.CutPrefix(body, SealedPrefix); ok {
			refs = append(refs, ref)
		}
	}
	return refs
}

// DeferredReads returns the body of every deferred expression in the string at
// deferred path p of v ("workflow.secrets.x", "sealed:REF"), in order.
func DeferredReads(v any, p Path) []string {
	s, _ := p.In(v)
	str, ok := s.(string)
	if !ok {
		return nil
	}
	pieces, err := decodeDeferred(str)
	if err != nil {
		return nil
	}
	var bodies []string
	for _, pc := range pieces {
		if pc.expr {
			bodies = append(bodies, pc.text)
		}
	}
	return bodies
}

func isStringWith(v any, sub string) bool {
	s, ok := v.(string)
	return ok && strings.Contains(s, sub)
}
