package expr

import (
	"maps"
	"slices"
	"strings"
)

// Doc is what expressions read: "workflow" and every task reference name are
// top-level sources. Lookup returns the JSON-like value of a source
// (map[string]any), or false if there is no such source.
type Doc interface {
	Lookup(name string) (any, bool)
}

// MapDoc is a Doc over a plain map (tests, simple callers).
type MapDoc map[string]any

// Lookup returns d[name].
func (d MapDoc) Lookup(name string) (any, bool) {
	v, ok := d[name]
	return v, ok
}

// Evaluate resolves every ${...} in tmpl (recursively through maps and
// slices, never in map keys) against doc and returns a new value; tmpl is not
// modified, and every map and slice of the result is a fresh copy that the
// caller may keep.
//
// Expressions in the deferred namespaces ("workflow.secrets." and
// "workflow.env.") are not resolved: they stay in place as literal text
// "${workflow.secrets.NAME...}" (after resolving any nested expressions inside
// them, so ${workflow.secrets.${workflow.input.n}} becomes
// ${workflow.secrets.db} when workflow.input.n == "db"), and the path of every
// string that still contains one is returned in deferred, in template order.
// Such strings are in the deferred encoding (see ResolveDeferred), in which
// data substituted around the expression can never become an expression.
//
// Evaluate returns an error (a PathError wrapping ErrSyntax) only for syntax
// errors such as an unterminated "${"; a path that resolves to nothing
// yields nil, as Conductor does.
func Evaluate(tmpl any, doc Doc) (value any, deferred []Path, err error) {
	e := &evaluator{doc: doc}
	v, err := e.value(tmpl)
	if err != nil {
		return nil, nil, err
	}
	return v, e.deferred, nil
}

// EvaluateShared is Evaluate for a caller that only reads the result: a
// string that is exactly one expression yields the value it names as the
// document holds it, not a copy, and the result may share maps and slices
// with the document. Reading one element of a long list (a DO_WHILE's
// items, at every iteration) copied the whole list each time.
func EvaluateShared(tmpl any, doc Doc) (value any, deferred []Path, err error) {
	e := &evaluator{doc: doc, shared: true}
	v, err := e.value(tmpl)
	if err != nil {
		return nil, nil, err
	}
	return v, e.deferred, nil
}

// ValidateTemplate walks tmpl and returns one error per invalid string, each
// naming its path relative to the template root (e.g.
// `http_request.headers.Authorization` or `items[2]`), in key order.
func ValidateTemplate(tmpl any) []PathError {
	var errs []PathError
	var walk func(v any, p Path)
	walk = func(v any, p Path) {
		switch x := v.(type) {
		case string:
			if err := Validate(x); err != nil {
				errs = append(errs, PathError{Path: p.String(), Err: err})
			}
		case map[string]any:
			for _, k := range slices.Sorted(maps.Keys(x)) {
				walk(x[k], append(p, k))
			}
		case []any:
			for i, e := range x {
				walk(e, append(p, i))
			}
		}
	}
	walk(tmpl, nil)
	return errs
}

type evaluator struct {
	doc      Doc
	path     Path // of the value being evaluated; reused as a stack
	deferred []Path
	shared   bool // see EvaluateShared
}

// value evaluates one node of the template. Map keys are visited in sorted
// order so that deferred paths and the reported error are deterministic.
func (e *evaluator) value(v any) (any, error) {
	switch x := v.(type) {
	case string:
		out, deferred, err := e.str(x)
		if err != nil {
			return nil, PathError{Path: e.path.String(), Err: err}
		}
		if deferred {
			e.deferred = append(e.deferred, append(Path{}, e.path...))
		}
		return out, nil
	case map[string]any:
		if x == nil {
			return x, nil
		}
		out := make(map[string]any, len(x))
		for _, k := range slices.Sorted(maps.Keys(x)) {
			e.path = append(e.path, k)
			v, err := e.value(x[k])
			e.path = e.path[:len(e.path)-1]
			if err != nil {
				return nil, err
			}
			out[k] = v
		}
		return out, nil
	case []any:
		if x == nil {
			return x, nil
		}
		out := make([]any, len(x))
		for i, elem := range x {
			e.path = append(e.path, i)
			v, err := e.value(elem)
			e.path = e.path[:len(e.path)-1]
			if err != nil {
				return nil, err
			}
			out[i] = v
		}
		return out, nil
	}
	return v, nil
}

// str evaluates one template string and reports whether the result still
// holds a deferred expression. A string that is exactly one expression yields
// the raw value; otherwise the values are interpolated.
func (e *evaluator) str(s string) (any, bool, error) {
	if !hasExpr(s) {
		return s, false, nil
	}
	nodes, err := parse(s)
	if err != nil {
		return nil, false, err
	}
	if len(nodes) == 1 && nodes[0].expr {
		r := e.expr(nodes[0].body)
		if !r.deferred {
			if e.shared {
				return r.value, false, nil
			}
			return deepCopy(r.value), false, nil
		}
		var w deferredWriter
		w.expr(r.body)
		return w.String(), true, nil
	}
	results := make([]result, len(nodes))
	anyDeferred := false
	sd, _ := e.doc.(SealedDoc)
	for i, n := range nodes {
		if n.expr {
			results[i] = e.expr(n.body)
			if sd != nil && !results[i].deferred {
				if ref, ok := sd.SealedRef(results[i].value); ok && !strings.ContainsAny(ref, "{}") {
					// A sealed value embedded in text: the text is made
					// at hand-off, where the value is opened (a
					// whole-string expression carries the value itself).
					results[i] = result{deferred: true, body: SealedPrefix + ref}
				}
			}
			anyDeferred = anyDeferred || results[i].deferred
		}
	}
	if !anyDeferred {
		var b strings.Builder
		for i, n := range nodes {
			if n.expr {
				b.WriteString(interpolate(results[i].value))
			} else {
				b.WriteString(n.text)
			}
		}
		return b.String(), false, nil
	}
	var w deferredWriter
	for i, n := range nodes {
		switch {
		case !n.expr:
			w.literal(n.text)
		case results[i].deferred:
			w.expr(results[i].body)
		default:
			w.literal(interpolate(results[i].value))
		}
	}
	return w.String(), true, nil
}

// result is the outcome of one expression: a value (not copied), or the body
// of a deferred expression.
type result struct {
	value    any
	body     string
	deferred bool
}

// SealedDoc is a Doc whose values may be sealed (encrypted until a task's
// hand-off). An embedded expression that reads one is written as a
// deferred expression "${sealed:REF}" instead of the sealed value's mask,
// for the hand-off to find the value by REF and open it.
type SealedDoc interface {
	Doc
	// SealedRef returns the reference of v when it is a sealed value.
	SealedRef(v any) (string, bool)
}

// SealedPrefix starts the body of a deferred read of sealed data.
const SealedPrefix = "sealed:"

// expr evaluates one expression body. Nested expressions are resolved first
// and interpolated into the path; a blank path yields "" as in OSS.
func (e *evaluator) expr(body []node) result {
	text, ok := e.bodyText(body)
	switch {
	case !ok && namesDeferred(body):
		// A secret or environment value named by another (its name is
		// not known before the hand-off, which resolves one level):
		// deferred without a name, which the hand-off refuses. Never a
		// null.
		return result{deferred: true, body: deferredNamespace(body)}
	case !ok:
		return result{}
	}
	text = strings.TrimSpace(text)
	switch {
	case text == "":
		return result{value: ""}
	case namesDeferred(body):
		if !isDeferred(text) || strings.ContainsAny(text, "{}") {
			// Braces would let the body end the expression early when
			// ResolveDeferred scans it; no secret or env name has them.
			// Deferred without a name, which the hand-off refuses as it
			// refuses a name that is not there: never a null.
			return result{deferred: true, body: deferredNamespace(body)}
		}
		return result{deferred: true, body: text}
	}
	return result{value: e.lookup(text)}
}

// bodyText resolves the nested expressions of a body into its path text. A
// deferred expression cannot be nested inside another: its value is not
// known yet, so the enclosing expression is unresolvable (false).
func (e *evaluator) bodyText(body []node) (string, bool) {
	if len(body) == 1 && !body[0].expr {
		return body[0].text, true
	}
	var b strings.Builder
	for _, n := range body {
		if !n.expr {
			b.WriteString(n.text)
			continue
		}
		r := e.expr(n.body)
		if r.deferred {
			return "", false
		}
		b.WriteString(interpolate(r.value))
	}
	return b.String(), true
}

// lookup reads SOURCE.PATH from the document: the JSONPath "$." + text, in
// which the first member names the source. There is deliberately no fallback
// to process environment variables or system properties (OSS's bare
// ${NAME}): an unknown source is nil.
func (e *evaluator) lookup(text string) any {
	if text[0] != '$' {
		text = "$." + text
	}
	jp, err := compilePath(text, '$')
	if err != nil || e.doc == nil || len(jp.steps) == 0 {
		return nil
	}
	first := jp.steps[0]
	if first.kind != stepMember || len(first.names) != 1 {
		return nil // the sources cannot be enumerated
	}
	var out []any
	if src, ok := e.doc.Lookup(first.names[0]); ok {
		jp.walk(src, 1, &out)
	}
	return jp.result(out)
}
