package expr

import (
	"fmt"
	"math"
	"regexp"
	"regexp/syntax"
	"slices"
	"strconv"
	"strings"
	"unicode/utf16"
)

// Filters ([?(...)]) support a small, predictable subset of Jayway's
// predicate language:
//
//	filter  := and ("||" and)*
//	and     := primary ("&&" primary)*
//	primary := "(" filter ")" | "!" path | "!" primary | operand [op operand]
//	operand := path | literal | "[" literal ("," literal)* "]" | /regexp/flags
//	path    := @-path | $-path (from the document's root; either may end
//	           in a function)
//	literal := 'string' | "string" | number | true | false | null
//	op      := == | != | < | <= | > | >= | =~ | in | nin | contains |
//	           size | empty | anyof | noneof | subsetof
//
// A lone path tests that the path exists (its value may be null), and
// "!" that it does not; "!" before anything else negates it, as Jayway's
// does ([?(!(@.a == 1 || @.b))]). Numbers
// compare numerically whatever their Go type; strings compare bytewise; bools
// and null support only == and !=. Values of different kinds are unequal, so
// only != holds between them (Jayway's coercion of "1" to 1 is deliberately
// not reproduced). Maps and lists are unequal to everything. A comparison
// with a path that does not exist is false, whatever the operator.
//
// The word operators are Jayway's: "l in r" holds when list r has an
// element equal to l, nin is its negation; "l contains r" when string l
// contains string r or list l has an element equal to r; "l size n" when
// the string, list or map l has n characters, elements or keys; "l empty
// b" when whether l is empty is b; anyof, noneof and subsetof compare two
// lists by their elements. Each is false where an operand is not of the
// kind it needs. "l =~ /re/" holds when the regular expression matches the
// whole of l (a string, number or boolean as written, or an element of a
// list): see regexp.

// A filter's match takes its steps from w (see work), and is false once
// w is spent.
type filter interface {
	match(cur any, w *work) bool
}

type orFilter struct{ l, r filter }

func (f orFilter) match(cur any, w *work) bool { return f.l.match(cur, w) || f.r.match(cur, w) }

type andFilter struct{ l, r filter }

func (f andFilter) match(cur any, w *work) bool { return f.l.match(cur, w) && f.r.match(cur, w) }

// notFilter negates f; a match that ran out of steps stays false.
type notFilter struct{ f filter }

func (f notFilter) match(cur any, w *work) bool { return !f.f.match(cur, w) && !w.spent() }

// existsFilter tests that a path exists, or with not that it does not.
type existsFilter struct {
	o   operand
	not bool
}

func (f existsFilter) match(cur any, w *work) bool {
	_, ok := f.o.value(cur, w)
	return ok != f.not && !w.spent()
}

type cmpFilter struct {
	l, r operand
	op   string
}

func (f cmpFilter) match(cur any, w *work) bool {
	l, ok := f.l.value(cur, w)
	if !ok {
		return false
	}
	r, ok := f.r.value(cur, w)
	if !ok {
		return false
	}
	if fd, ok := w.doc.(FuncDoc); ok {
		fd.CompareOver(f.op, l, r)
	}
	return compare(l, r, f.op, w)
}

// operand is a literal, a regular expression (=~'s) or, when path is set,
// a path relative to "@", or to the document with root.
type operand struct {
	path *jsonPath
	root bool
	lit  any
	re   *pattern
}

// pattern is a compiled =~ regular expression. Matching a value costs its
// length times the instructions the pattern runs per byte (up to insts):
// a pattern of thousands of alternatives held a core for seconds over a
// megabyte that 32-byte steps counted as 32,768.
type pattern struct {
	re    *regexp.Regexp
	insts int
}

// instBytes is how many bytes times instructions of a match make a step:
// about what one of the other steps costs.
const instBytes = 512

// compileStepsPerInst is the steps of compiling a pattern, per instruction
// of its program: one of 8,000 alternatives took a tenth of a second, and
// a path's patterns are compiled at each evaluation of it.
const compileStepsPerInst = 16

// patternInsts returns the instructions of the patterns of jp's filters,
// those of its functions' arguments included.
func (jp *jsonPath) patternInsts() int {
	n := 0
	for _, st := range jp.steps {
		if st.filter != nil {
			n += filterInsts(st.filter)
		}
	}
	if jp.fn != nil {
		for _, a := range jp.fn.args {
			if a.path != nil {
				n += a.path.patternInsts()
			}
		}
	}
	return n
}

func filterInsts(f filter) int {
	switch f := f.(type) {
	case orFilter:
		return filterInsts(f.l) + filterInsts(f.r)
	case andFilter:
		return filterInsts(f.l) + filterInsts(f.r)
	case notFilter:
		return filterInsts(f.f)
	case existsFilter:
		return f.o.insts()
	case cmpFilter:
		return f.l.insts() + f.r.insts()
	}
	return 0
}

func (o operand) insts() int {
	n := 0
	if o.re != nil {
		n += o.re.insts
	}
	if o.path != nil {
		n += o.path.patternInsts()
	}
	return n
}

func (o operand) value(cur any, w *work) (any, bool) {
	switch {
	case o.re != nil:
		return o.re, true
	case o.path == nil:
		return o.lit, true
	case o.root:
		return w.readRootOK(o.path)
	}
	return o.path.eval(cur, w)
}

// compileFilter compiles a filter's text, within depth filters, functions
// and parentheses.
func compileFilter(s string, depth int) (filter, error) {
	p := &filterParser{s: s}
	f, err := p.or(depth)
	if err != nil {
		return nil, err
	}
	if p.skipSpace(); p.i < len(s) {
		return nil, fmt.Errorf("%w: unexpected %q in filter", errPath, s[p.i:])
	}
	return f, nil
}

type filterParser struct {
	s string
	i int
}

func (p *filterParser) or(depth int) (filter, error) {
	l, err := p.and(depth)
	for err == nil && p.consume("||") {
		var r filter
		if r, err = p.and(depth); err == nil {
			l = orFilter{l, r}
		}
	}
	return l, err
}

func (p *filterParser) and(depth int) (filter, error) {
	l, err := p.primary(depth)
	for err == nil && p.consume("&&") {
		var r filter
		if r, err = p.primary(depth); err == nil {
			l = andFilter{l, r}
		}
	}
	return l, err
}

func (p *filterParser) primary(depth int) (filter, error) {
	if p.consume("!") {
		if p.skipSpace(); p.i < len(p.s) && p.s[p.i] != '@' && p.s[p.i] != '$' {
			// Jayway's "!" before a parenthesis, a literal or another
			// "!" negates what follows: [?(!(@.a == 1))].
			if depth >= maxNesting {
				return nil, fmt.Errorf("%w: filter nested too deeply", errPath)
			}
			f, err := p.primary(depth + 1)
			if err != nil {
				return nil, err
			}
			return notFilter{f}, nil
		}
		// Before a path, "!" is an existence test: [?(!@.isbn)].
		o, err := p.operand(depth)
		if err != nil {
			return nil, err
		}
		if o.path == nil {
			return nil, fmt.Errorf("%w: \"!\" needs a path", errPath)
		}
		return existsFilter{o: o, not: true}, nil
	}
	if p.consume("(") {
		if depth >= maxNesting {
			return nil, fmt.Errorf("%w: filter nested too deeply", errPath)
		}
		f, err := p.or(depth + 1)
		if err != nil {
			return nil, err
		}
		if !p.consume(")") {
			return nil, fmt.Errorf("%w: missing \")\" in filter", errPath)
		}
		return f, nil
	}
	l, err := p.operand(depth)
	if err != nil {
		return nil, err
	}
	op := p.op()
	if op == "" {
		if l.path == nil {
			return nil, fmt.Errorf("%w: a literal needs a comparison", errPath)
		}
		return existsFilter{o: l}, nil
	}
	r, err := p.operand(depth)
	if err != nil {
		return nil, err
	}
	if (l.re != nil || r.re != nil) != (op == "=~") || l.re != nil && r.re != nil {
		return nil, fmt.Errorf("%w: =~ compares a value with one regular expression", errPath)
	}
	return cmpFilter{l: l, r: r, op: op}, nil
}

// wordOps are the operators written as words; each needs a space or the
// start of its right operand after it.
var wordOps = []string{"nin", "in", "contains", "size", "empty", "anyof", "noneof", "subsetof"}

func (p *filterParser) op() string {
	p.skipSpace()
	for _, op := range []string{"==", "!=", "<=", ">=", "=~", "<", ">"} {
		if strings.HasPrefix(p.s[p.i:], op) {
			p.i += len(op)
			return op
		}
	}
	for _, op := range wordOps {
		rest, ok := strings.CutPrefix(p.s[p.i:], op)
		if ok && rest != "" && strings.IndexByte(" ['\"@", rest[0]) >= 0 {
			p.i += len(op)
			return op
		}
	}
	return ""
}

// operand parses a path, a literal or a list of literals at p.i; depth
// counts the parentheses and lists it is in.
func (p *filterParser) operand(depth int) (operand, error) {
	p.skipSpace()
	if p.i >= len(p.s) {
		return operand{}, fmt.Errorf("%w: filter ends early", errPath)
	}
	switch c := p.s[p.i]; {
	case c == '@' || c == '$':
		end, err := p.pathEnd()
		if err != nil {
			return operand{}, err
		}
		jp, err := compilePathAt(p.s[p.i:end], c, depth+1)
		p.i = end
		return operand{path: jp, root: c == '$'}, err
	case c == '/':
		return p.regexp()
	case c == '[':
		// Bounded as parentheses are: each nested list is a call deeper,
		// and a definition of a few megabytes of "[" overflowed the
		// goroutine's stack, which ends the process.
		if depth >= maxNesting {
			return operand{}, fmt.Errorf("%w: filter nested too deeply", errPath)
		}
		var list []any
		p.i++
		for !p.consume("]") {
			if len(list) > 0 && !p.consume(",") {
				return operand{}, fmt.Errorf("%w: expected \",\" or \"]\" in a filter's list", errPath)
			}
			o, err := p.operand(depth + 1)
			if err != nil {
				return operand{}, err
			}
			if o.path != nil || o.re != nil {
				return operand{}, fmt.Errorf("%w: a filter's list holds literals only", errPath)
			}
			list = append(list, o.lit)
		}
		return operand{lit: list}, nil
	}
	return p.literal()
}

// literal parses a string, number, boolean or null at p.i.
func (p *filterParser) literal() (operand, error) {
	if c := p.s[p.i]; c == '\'' || c == '"' {
		pp := &pathParser{s: p.s, i: p.i}
		s, err := pp.quoted()
		p.i = pp.i
		return operand{lit: s}, err
	}
	start := p.i
	for p.i < len(p.s) && strings.IndexByte(" =!<>&|(),]", p.s[p.i]) < 0 {
		p.i++
	}
	word := p.s[start:p.i]
	switch word {
	case "true", "false":
		return operand{lit: word == "true"}, nil
	case "null":
		return operand{lit: nil}, nil
	}
	if n, err := strconv.ParseInt(word, 10, 64); err == nil {
		return operand{lit: n}, nil
	}
	if f, err := strconv.ParseFloat(word, 64); err == nil && !math.IsInf(f, 0) && !math.IsNaN(f) {
		return operand{lit: f}, nil
	}
	return operand{}, fmt.Errorf("%w: bad filter operand %q", errPath, word)
}

// pathEnd returns the end of the @-path at p.i: the first space, operator or
// parenthesis outside brackets and quotes.
func (p *filterParser) pathEnd() (int, error) {
	brackets := 0
	for i := p.i; i < len(p.s); i++ {
		switch c := p.s[i]; {
		case c == '\'' || c == '"':
			end, err := skipQuoted(p.s, i)
			if err != nil {
				return 0, err
			}
			i = end - 1
		case c == '[':
			brackets++
		case c == ']':
			brackets--
		case brackets == 0 && c == '.' && isCall(p.s[i+1:]):
			// A function ends the path: its arguments hold anything.
			end, err := closeParen(p.s, i+1+strings.IndexByte(p.s[i+1:], '('))
			if err != nil {
				return 0, err
			}
			return end, nil
		case brackets == 0 && strings.IndexByte(" =!<>&|()", c) >= 0:
			return i, nil
		}
	}
	return len(p.s), nil
}

// closeParen returns the index just past the ")" that closes the "(" at
// i, outside quotes.
func closeParen(s string, i int) (int, error) {
	depth := 0
	for ; i < len(s); i++ {
		switch s[i] {
		case '\'', '"':
			end, err := skipQuoted(s, i)
			if err != nil {
				return 0, err
			}
			i = end - 1
		case '(':
			depth++
		case ')':
			if depth--; depth == 0 {
				return i + 1, nil
			}
		}
	}
	return 0, fmt.Errorf("%w: unterminated \"(\"", errPath)
}

// regexp parses Jayway's /pattern/flags at p.i. Java's matches() must
// match the whole value, so the pattern is anchored. Of Java's flags, i,
// m and s mean what they mean to Go; u (Unicode case) is Go's i already.
// Go's syntax is RE2's: no backreferences nor lookaround, which fail to
// compile as Jayway's other mistakes do.
func (p *filterParser) regexp() (operand, error) {
	end := -1
	for i := p.i + 1; i < len(p.s); i++ {
		if p.s[i] == '\\' {
			i++
			continue
		}
		if p.s[i] == '/' {
			end = i
			break
		}
	}
	if end < 0 {
		return operand{}, fmt.Errorf("%w: unterminated regular expression", errPath)
	}
	body := p.s[p.i+1 : end]
	p.i = end + 1
	var flags string
	for ; p.i < len(p.s) && strings.IndexByte(" &|)", p.s[p.i]) < 0; p.i++ {
		switch f := p.s[p.i]; f {
		case 'i', 'm', 's':
			if !strings.ContainsRune(flags, rune(f)) {
				flags += string(f)
			}
		case 'u':
		default:
			return operand{}, fmt.Errorf("%w: unsupported regular expression flag %q", errPath, f)
		}
	}
	if flags != "" {
		flags = "(?" + flags + ")"
	}
	src := flags + `\A(?:` + body + `)\z`
	re, err := regexp.Compile(src)
	if err != nil {
		return operand{}, fmt.Errorf("%w: bad regular expression: %w", errPath, err)
	}
	// What regexp.Compile did once more, for the size of its program.
	parsed, err := syntax.Parse(src, syntax.Perl)
	if err != nil {
		return operand{}, fmt.Errorf("%w: bad regular expression: %w", errPath, err)
	}
	prog, err := syntax.Compile(parsed.Simplify())
	if err != nil {
		return operand{}, fmt.Errorf("%w: bad regular expression: %w", errPath, err)
	}
	return operand{re: &pattern{re: re, insts: len(prog.Inst)}}, nil
}

func (p *filterParser) consume(tok string) bool {
	p.skipSpace()
	if strings.HasPrefix(p.s[p.i:], tok) {
		p.i += len(tok)
		return true
	}
	return false
}

func (p *filterParser) skipSpace() {
	for p.i < len(p.s) && p.s[p.i] == ' ' {
		p.i++
	}
}

// compare applies op to two JSON values, as described at the top of the
// file, taking its steps from w: an element of a list compared, 32 bytes
// of a string read. It is false once w is spent.
func compare(l, r any, op string, w *work) bool {
	if !w.take(1) {
		return false
	}
	switch op {
	case "=~":
		return matches(l, r, w)
	case "in", "nin":
		return holds(r, l, w) == (op == "in") && !w.spent()
	case "contains":
		if s, ok := l.(string); ok {
			sub, ok := r.(string)
			return ok && w.text(s) && strings.Contains(s, sub)
		}
		return holds(l, r, w)
	case "size":
		n, ok := toNumber(r)
		if !ok {
			return false
		}
		size, ok := sizeOf(l, w)
		return ok && n.isInt && int64(size) == n.i
	case "empty":
		b, ok := r.(bool)
		size, sized := sizeOf(l, w)
		return ok && sized && (size == 0) == b
	case "anyof", "noneof", "subsetof":
		la, ok := l.([]any)
		if !ok {
			return false
		}
		if _, ok := r.([]any); !ok {
			return false
		}
		n := 0
		for _, e := range la {
			if holds(r, e, w) {
				n++
			}
			if w.spent() {
				return false
			}
		}
		switch op {
		case "anyof":
			return n > 0
		case "noneof":
			return n == 0
		}
		return n == len(la)
	}
	switch l.(type) {
	case bool, nil:
		if op != "==" && op != "!=" {
			return false
		}
	}
	if !w.compared(l, r) {
		return false
	}
	c, ok := order(l, r)
	if !ok {
		return op == "!="
	}
	switch op {
	case "==":
		return c == 0
	case "!=":
		return c != 0
	case "<":
		return c < 0
	case "<=":
		return c <= 0
	case ">":
		return c > 0
	case ">=":
		return c >= 0
	}
	return false
}

// matches is Jayway's =~: the regular expression on one side matches the
// whole text of the value on the other (a string, a number or a boolean
// as written), or of one element of a list.
func matches(l, r any, w *work) bool {
	p, ok := r.(*pattern)
	if !ok {
		p, l = l.(*pattern), r
	}
	one := func(v any) bool {
		switch v.(type) {
		case string, bool:
		default:
			if _, ok := toNumber(v); !ok {
				return false
			}
		}
		s := interpolate(v)
		return w.text(s) && w.take(len(s)*p.insts/instBytes) && p.re.MatchString(s)
	}
	if a, ok := l.([]any); ok {
		if !w.take(len(a)) {
			return false
		}
		return slices.ContainsFunc(a, one) && !w.spent()
	}
	return one(l)
}

// order compares two values of the same kind; values that cannot be ordered
// (different kinds, unequal bools, NaN) report false.
func order(l, r any) (int, bool) {
	if ln, ok := toNumber(l); ok {
		rn, ok := toNumber(r)
		if !ok {
			return 0, false
		}
		return ln.cmp(rn)
	}
	switch x := l.(type) {
	case string:
		if y, ok := r.(string); ok {
			return strings.Compare(x, y), true
		}
	case bool:
		if y, ok := r.(bool); ok && x == y {
			return 0, true
		}
	case nil:
		if r == nil {
			return 0, true
		}
	}
	return 0, false
}

// holds reports whether list has an element equal to v (false when list
// is not a list), taking a step an element of list from w, all of them
// before it looks.
func holds(list, v any, w *work) bool {
	a, ok := list.([]any)
	if !ok || !w.take(len(a)) {
		return false
	}
	for _, e := range a {
		if !w.compared(e, v) {
			return false
		}
		if c, ok := order(e, v); ok && c == 0 {
			return true
		}
	}
	return false
}

// sizeOf is the length of a string in characters, as Java counts them
// (UTF-16 units), or of a list or map; a string's takes its steps from w.
func sizeOf(v any, w *work) (int, bool) {
	switch x := v.(type) {
	case string:
		if !w.text(x) {
			return 0, false
		}
		n := 0
		for _, r := range x {
			n += utf16.RuneLen(r)
		}
		return n, true
	case []any:
		return len(x), true
	case map[string]any:
		return len(x), true
	}
	return 0, false
}
