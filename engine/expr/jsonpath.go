package expr

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// The JSONPath dialect is the subset of Jayway JsonPath that Conductor
// definitions use:
//
//	.name  ['name']  ["name"]   member (a missing member is no result)
//	['a','b']                   several members; as the last step Jayway
//	                            merges them into one map, and so does this
//	[2]  [-1]  [0,2]            index, negative from the end, several indices
//	[1:3]  [:2]  [-2:]          slice (no step)
//	*  [*]                      every member value (in key order) or element
//	..name  ..[0]  ..*          deep scan: the next step at every depth
//	[?(<filter>)]               filter, see filter.go
//	.name(args)                 one of Jayway's functions: see functions.go
//
// A function ends the path and applies to what the path before it
// selects: the value of a definite path, the list of an indefinite one.
//
// A path is definite when every step selects at most one value; it then
// yields that value or nil. Any other path yields a list, empty when nothing
// matched. Stepping into the wrong type (an index into a map, a member of a
// string) selects nothing. A path Jayway cannot read fails to compile, and
// the expression yields nil as it does in Conductor.
// See README.md, "Parameter expressions", for every difference from Jayway.

type stepKind uint8

const (
	stepMember stepKind = iota
	stepIndex
	stepSlice
	stepWildcard
	stepScan // ".."; the next step applies at every depth
	stepFilter
)

type step struct {
	kind     stepKind
	names    []string
	indices  []int
	from, to *int
	filter   filter
}

type jsonPath struct {
	steps    []step
	definite bool
	fn       *fnCall // the function the path ends in, if any
}

var errPath = errors.New("invalid JSONPath")

// compilePath compiles a path that starts with root ('$' or '@').
func compilePath(s string, root byte) (*jsonPath, error) { return compilePathAt(s, root, 0) }

// compilePathAt is compilePath for a path that is an argument of depth
// functions.
func compilePathAt(s string, root byte, depth int) (*jsonPath, error) {
	if s == "" || s[0] != root {
		return nil, fmt.Errorf("%w: must start with %q", errPath, root)
	}
	p := &pathParser{s: s, i: 1, depth: depth}
	jp := &jsonPath{definite: true}
	for p.i < len(s) {
		var st step
		var err error
		switch {
		case strings.HasPrefix(s[p.i:], ".."):
			p.i += 2
			jp.steps = append(jp.steps, step{kind: stepScan})
			if p.i < len(s) && s[p.i] == '[' {
				continue
			}
			st, err = p.member()
		case s[p.i] == '.':
			p.i++
			if p.i < len(s) && s[p.i] == '[' {
				continue
			}
			if isCall(s[p.i:]) {
				if jp.fn, err = compileCall(s, p.i, depth); err != nil {
					return nil, err
				}
				p.i = len(s)
				continue
			}
			st, err = p.member()
		case s[p.i] == '[':
			st, err = p.bracket()
		default:
			err = fmt.Errorf("%w: unexpected %q at offset %d", errPath, s[p.i], p.i)
		}
		if err != nil {
			return nil, err
		}
		jp.steps = append(jp.steps, st)
	}
	if n := len(jp.steps); n > 0 && jp.steps[n-1].kind == stepScan {
		return nil, fmt.Errorf("%w: \"..\" needs a following step", errPath)
	}
	for i, st := range jp.steps {
		last := i == len(jp.steps)-1
		switch {
		case st.kind == stepMember && (len(st.names) == 1 || last):
		case st.kind == stepIndex && len(st.indices) == 1:
		default:
			jp.definite = false
		}
	}
	return jp, nil
}

// isCall reports whether s starts with a name and "(": a function.
func isCall(s string) bool {
	i := 0
	for i < len(s) && (s[i] == '_' || 'a' <= s[i] && s[i] <= 'z' || 'A' <= s[i] && s[i] <= 'Z' || i > 0 && '0' <= s[i] && s[i] <= '9') {
		i++
	}
	return i > 0 && i < len(s) && s[i] == '('
}

type pathParser struct {
	s     string
	i     int
	depth int // the filters and functions the path is within
}

// member parses a dot-notation step: a name or "*".
func (p *pathParser) member() (step, error) {
	start := p.i
	for p.i < len(p.s) && p.s[p.i] != '.' && p.s[p.i] != '[' {
		p.i++
	}
	name := p.s[start:p.i]
	switch {
	case name == "":
		return step{}, fmt.Errorf("%w: empty member name at offset %d", errPath, start)
	case name == "*":
		return step{kind: stepWildcard}, nil
	case strings.HasSuffix(name, ")"):
		return step{}, fmt.Errorf("%w: unsupported function %q", errPath, name)
	}
	return step{kind: stepMember, names: []string{name}}, nil
}

// bracket parses a "[...]" step; p.i is at the "[".
func (p *pathParser) bracket() (step, error) {
	p.i++
	p.skipSpace()
	if p.i >= len(p.s) {
		return step{}, fmt.Errorf("%w: unterminated \"[\"", errPath)
	}
	switch c := p.s[p.i]; {
	case c == '?':
		return p.filterStep()
	case c == '\'' || c == '"':
		var names []string
		for {
			name, err := p.quoted()
			if err != nil {
				return step{}, err
			}
			names = append(names, name)
			p.skipSpace()
			if p.i < len(p.s) && p.s[p.i] == ',' {
				p.i++
				p.skipSpace()
				continue
			}
			return step{kind: stepMember, names: names}, p.closeBracket()
		}
	case c == '*':
		p.i++
		p.skipSpace()
		return step{kind: stepWildcard}, p.closeBracket()
	}
	end := strings.IndexByte(p.s[p.i:], ']')
	if end < 0 {
		return step{}, fmt.Errorf("%w: unterminated \"[\"", errPath)
	}
	body := p.s[p.i : p.i+end]
	p.i += end + 1
	if from, to, ok := strings.Cut(body, ":"); ok {
		st := step{kind: stepSlice}
		var err error
		if st.from, err = optInt(from); err != nil {
			return step{}, err
		}
		if st.to, err = optInt(to); err != nil {
			return step{}, err
		}
		return st, nil
	}
	st := step{kind: stepIndex}
	for part := range strings.SplitSeq(body, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(part))
		if err != nil {
			return step{}, fmt.Errorf("%w: bad index %q", errPath, part)
		}
		st.indices = append(st.indices, n)
	}
	return st, nil
}

// filterStep parses "?(...)]"; p.i is at the "?".
func (p *pathParser) filterStep() (step, error) {
	if !strings.HasPrefix(p.s[p.i:], "?(") {
		return step{}, fmt.Errorf("%w: expected \"?(\" at offset %d", errPath, p.i)
	}
	start := p.i + 2
	depth := 0
	for i := start; i < len(p.s); i++ {
		switch p.s[i] {
		case '\'', '"':
			end, err := skipQuoted(p.s, i)
			if err != nil {
				return step{}, err
			}
			i = end - 1
		case '(':
			depth++
		case ')':
			if depth > 0 {
				depth--
				continue
			}
			// A filter's paths may hold filters of their own; each level
			// counts, as nested parentheses and functions do, or a
			// definition of "[?(@[?(@…" compiles in quadratic time and
			// deep enough overflows the goroutine's stack.
			if p.depth >= maxNesting {
				return step{}, fmt.Errorf("%w: filter nested too deeply", errPath)
			}
			f, err := compileFilter(p.s[start:i], p.depth)
			if err != nil {
				return step{}, err
			}
			p.i = i + 1
			p.skipSpace()
			return step{kind: stepFilter, filter: f}, p.closeBracket()
		}
	}
	return step{}, fmt.Errorf("%w: unterminated filter", errPath)
}

func (p *pathParser) closeBracket() error {
	if p.i >= len(p.s) || p.s[p.i] != ']' {
		return fmt.Errorf("%w: expected \"]\" at offset %d", errPath, p.i)
	}
	p.i++
	return nil
}

func (p *pathParser) skipSpace() {
	for p.i < len(p.s) && p.s[p.i] == ' ' {
		p.i++
	}
}

// quoted reads a '...' or "..." string at p.i; a backslash escapes the next
// character.
func (p *pathParser) quoted() (string, error) {
	if p.i >= len(p.s) || p.s[p.i] != '\'' && p.s[p.i] != '"' {
		// A list of names cut short (['a',) reached past the text: an
		// index out of range, which ended the server when the decider
		// evaluated it.
		return "", fmt.Errorf("%w: expected a quoted name at offset %d", errPath, p.i)
	}
	end, err := skipQuoted(p.s, p.i)
	if err != nil {
		return "", err
	}
	raw := p.s[p.i+1 : end-1]
	p.i = end
	if !strings.Contains(raw, `\`) {
		return raw, nil
	}
	var b strings.Builder
	for i := 0; i < len(raw); i++ {
		if raw[i] == '\\' && i+1 < len(raw) {
			i++
		}
		b.WriteByte(raw[i])
	}
	return b.String(), nil
}

// skipQuoted returns the index just past the quoted string starting at i.
func skipQuoted(s string, i int) (int, error) {
	q := s[i]
	for j := i + 1; j < len(s); j++ {
		switch s[j] {
		case '\\':
			j++
		case q:
			return j + 1, nil
		}
	}
	return 0, fmt.Errorf("%w: unterminated string at offset %d", errPath, i)
}

func optInt(s string) (*int, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return nil, fmt.Errorf("%w: bad slice bound %q", errPath, s)
	}
	return &n, nil
}
