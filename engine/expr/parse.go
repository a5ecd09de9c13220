package expr

import (
	"fmt"
	"strings"

	"github.com/flowvault/flowvault/fault"
)

// ErrSyntax is wrapped by every error Evaluate, Validate and ValidateTemplate
// report. It wraps fault.ErrInvalid, so a definition with a broken template
// maps to a 400 like any other validation failure.
var ErrSyntax = fmt.Errorf("expression syntax: %w", fault.ErrInvalid)

// maxNesting bounds how deeply ${...} may nest. Real templates nest two or
// three levels; the bound keeps a hostile definition from exhausting the
// stack of the recursive scanner.
const maxNesting = 32

// node is one piece of a scanned template: literal text with escapes already
// applied, or an expression whose body is itself a sequence of nodes.
type node struct {
	text string
	body []node
	expr bool
}

// parse scans a template string the way OSS ParametersUtils does:
//
//   - "${" opens an expression that ends at the matching "}"; braces inside
//     the body nest, so literal "{...}" pairs and nested "${...}" are kept
//     whole.
//   - "$${" is an escape for a literal "${". Only the "${" is escaped: an
//     expression nested after it is still evaluated, as in OSS.
//   - anything else, including a stray "}", is literal text.
//
// An unterminated "${" is the only syntax error (OSS leaves it as text, but
// it is always a mistake in a definition, so flowvault rejects it).
func parse(s string) ([]node, error) {
	nodes, _, err := parseSeq(s, 0, 0)
	return nodes, err
}

// parseSeq scans s from i. At depth 0 it runs to the end of s; inside an
// expression body (depth > 0) it stops after the "}" that closes the body and
// returns the index following it.
func parseSeq(s string, i, depth int) ([]node, int, error) {
	if depth > maxNesting {
		return nil, 0, fmt.Errorf("%w: expressions nested deeper than %d at offset %d", ErrSyntax, maxNesting, i)
	}
	open := i - 2 // offset of the "${" that opened this body, for errors
	var (
		nodes  []node
		lit    strings.Builder
		braces int // unmatched literal "{" inside a body
	)
	flush := func() {
		if lit.Len() > 0 {
			nodes = append(nodes, node{text: lit.String()})
			lit.Reset()
		}
	}
	for i < len(s) {
		c := s[i]
		switch {
		case c == '$' && strings.HasPrefix(s[i:], "$${"):
			lit.WriteString("${")
			i += 3
			if depth > 0 {
				braces++
			}
		case c == '$' && strings.HasPrefix(s[i:], "${"):
			flush()
			body, next, err := parseSeq(s, i+2, depth+1)
			if err != nil {
				return nil, 0, err
			}
			nodes = append(nodes, node{body: body, expr: true})
			i = next
		case depth > 0 && c == '{':
			braces++
			lit.WriteByte(c)
			i++
		case depth > 0 && c == '}':
			if braces == 0 {
				flush()
				return nodes, i + 1, nil
			}
			braces--
			lit.WriteByte(c)
			i++
		default:
			lit.WriteByte(c)
			i++
		}
	}
	if depth > 0 {
		return nil, 0, fmt.Errorf("%w: unterminated \"${\" at offset %d", ErrSyntax, open)
	}
	flush()
	return nodes, i, nil
}

// hasExpr reports whether s may hold an expression or an escape; strings
// without "${" are returned as they are, without scanning.
func hasExpr(s string) bool { return strings.Contains(s, "${") }

// Validate reports syntax errors in one template string: exactly the errors
// Evaluate would return for it. JSONPath mistakes are not syntax errors:
// Conductor evaluates them to null, and so does Evaluate.
func Validate(s string) error {
	if !hasExpr(s) {
		return nil
	}
	_, err := parse(s)
	return err
}
