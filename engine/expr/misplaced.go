package expr

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/flowvault/flowvault/internal/valuename"
)

// ErrDeferredInPath is wrapped by the errors of MisplacedDeferred.
var ErrDeferredInPath = errors.New("reads a secret or environment value where the engine evaluates the expression")

// MisplacedDeferred walks tmpl as ValidateTemplate does and returns one
// error per string that reads a secret or an environment value where
// nothing resolves it: as a path read from the document
// ($.workflow.env.X, workflow['secrets'].X, a JSONPath function's
// argument, a filter's operand) or as an expression nested in another
// (${workflow.input.${workflow.env.X}}). The engine evaluates such an
// expression when it schedules the task, and the document has no
// secrets or environment values (they are resolved at hand-off, from a
// ${workflow.secrets.X} or ${workflow.env.X} of their own): it would read
// null. A string that does not parse is left to ValidateTemplate.
func MisplacedDeferred(tmpl any) []PathError {
	return expressionErrors(tmpl, func(body []node) error {
		if what := misplaced(body); what != "" {
			return fmt.Errorf("%w: %s, which reads null there "+
				"(secrets and environment values are resolved at hand-off, from a ${workflow.secrets.NAME} or ${workflow.env.NAME} of their own: "+
				"pass one as a parameter of its own and compute from it in the task)", ErrDeferredInPath, what)
		}
		return nil
	})
}

// expressionErrors walks tmpl as ValidateTemplate does and returns, per
// string that parses, the first error check finds in the bodies of its
// expressions (not those nested in them), in order.
func expressionErrors(tmpl any, check func(body []node) error) []PathError {
	var errs []PathError
	eachString(tmpl, func(s string, p Path) {
		if !hasExpr(s) {
			return
		}
		nodes, err := parse(s)
		if err != nil {
			return
		}
		for _, n := range nodes {
			if !n.expr {
				continue
			}
			if err := check(n.body); err != nil {
				errs = append(errs, PathError{Path: p.String(), Err: err})
				return
			}
		}
	})
	return errs
}

// ErrImpossibleName is wrapped by the errors of ImpossibleNames.
var ErrImpossibleName = errors.New("can never resolve")

// ImpossibleNames walks tmpl as ValidateTemplate does and returns one
// error per string holding a reference to a secret or an environment
// value by a name the template spells itself (${workflow.secrets.NAME},
// ${workflow.env.NAME.field}) that none can have (valuename.Check): every
// run would fail at the hand-off, where the name is first looked up. The
// name is the reference's text up to its first dot, as the hand-off reads
// it; what follows is a path into the value. A name made at run time
// (${workflow.secrets.${workflow.input.n}}) is known only at the hand-off,
// which judges it; a reference nested in another expression is
// MisplacedDeferred's. Nothing is resolved.
func ImpossibleNames(tmpl any) []PathError {
	return expressionErrors(tmpl, func(body []node) error {
		if len(body) != 1 || !namesDeferred(body) {
			return nil
		}
		// As evaluator.expr reads it.
		text := strings.TrimSpace(body[0].text)
		ns, kind, ref := "secrets", "secret", strings.TrimPrefix(text, secretsPrefix)
		if r, ok := strings.CutPrefix(text, envPrefix); ok {
			ns, kind, ref = "env", "environment variable", r
		}
		name, _, _ := strings.Cut(ref, ".")
		if err := valuename.Check(kind, name); err != nil {
			return fmt.Errorf("${workflow.%s.%s} %w: %w", ns, valuename.Shorten(name), ErrImpossibleName, err)
		}
		return nil
	})
}

// misplaced describes the first misplaced read of a secret or environment
// value in an expression body, "" for none.
func misplaced(body []node) string {
	deferred := namesDeferred(body)
	for _, n := range body {
		if !n.expr {
			continue
		}
		if !deferred && namesDeferred(n.body) {
			return fmt.Sprintf("${%s} is nested in another expression", strings.TrimSpace(n.body[0].text))
		}
		if what := misplaced(n.body); what != "" {
			return what
		}
	}
	if deferred || len(body) != 1 {
		// A path made at run time is known only then.
		return ""
	}
	text := strings.TrimSpace(body[0].text)
	if text == "" {
		return ""
	}
	if text[0] != '$' {
		text = "$." + text
	}
	jp, err := compilePath(text, '$')
	if err != nil {
		return ""
	}
	if name, ok := deferredPath(jp, true); ok {
		return fmt.Sprintf("%s is read as a path", name)
	}
	return ""
}

// deferredPath reports a path in jp, or in its filters and function
// arguments, that reads workflow.secrets or workflow.env from the root;
// fromRoot says whether jp itself starts there.
func deferredPath(jp *jsonPath, fromRoot bool) (string, bool) {
	if fromRoot && len(jp.steps) >= 2 && names(jp.steps[0], "workflow") {
		for _, ns := range []string{"secrets", "env"} {
			if names(jp.steps[1], ns) {
				name := "workflow." + ns
				if len(jp.steps) > 2 && jp.steps[2].kind == stepMember && len(jp.steps[2].names) == 1 {
					name += "." + jp.steps[2].names[0]
				}
				return name, true
			}
		}
	}
	for _, st := range jp.steps {
		if st.kind == stepFilter {
			if name, ok := deferredFilter(st.filter); ok {
				return name, true
			}
		}
	}
	if jp.fn != nil {
		for _, a := range jp.fn.args {
			if a.path != nil {
				if name, ok := deferredPath(a.path, true); ok {
					return name, true
				}
			}
		}
	}
	return "", false
}

func deferredFilter(f filter) (string, bool) {
	switch f := f.(type) {
	case orFilter:
		return firstDeferred(f.l, f.r)
	case andFilter:
		return firstDeferred(f.l, f.r)
	case notFilter:
		return deferredFilter(f.f)
	case existsFilter:
		return deferredOperand(f.o)
	case cmpFilter:
		if name, ok := deferredOperand(f.l); ok {
			return name, true
		}
		return deferredOperand(f.r)
	}
	return "", false
}

func firstDeferred(l, r filter) (string, bool) {
	if name, ok := deferredFilter(l); ok {
		return name, true
	}
	return deferredFilter(r)
}

func deferredOperand(o operand) (string, bool) {
	if o.path == nil {
		return "", false
	}
	return deferredPath(o.path, o.root)
}

// names reports whether s is a member step that selects name.
func names(s step, name string) bool {
	return s.kind == stepMember && slices.Contains(s.names, name)
}
