// Package query parses Conductor's search syntax (the `query`, `sort` and
// `freeText` parameters of /api/workflow/search and /api/tasks/search) and
// evaluates it against documents.
//
// The query language is the one Conductor's index DAOs accept:
//
//	status IN (RUNNING, FAILED) AND workflowType = order_flow
//	correlationId = "c-1" OR (startTime > 1732939000000 AND priority >= 5)
//	startTime BETWEEN 1732939000000 AND 1732940000000
//	reasonForIncompletion IS NOT NULL
//	workflowType STARTS_WITH order_
//
// Comparisons are =, ==, !=, <>, >, >=, <, <=, IN (...), NOT IN (...),
// BETWEEN a AND b, STARTS_WITH, IS [NOT] NULL; they combine with AND (which
// binds tighter), OR and parentheses. Keywords are case-insensitive. Values
// are double- or single-quoted strings (backslash escapes the next
// character) or bare words. A Schema names the fields a search supports and
// their kinds: numbers compare numerically, times accept epoch milliseconds
// or RFC 3339 / yyyy-MM-dd dates. Every error wraps fault.ErrInvalid.
package query

import (
	"cmp"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/flowvault/flowvault/fault"
)

// Search is a search request, as Conductor's search endpoints take it.
type Search struct {
	Query    string
	FreeText string
	Sort     []string
	// Start and Size select the page: results [Start, Start+Size).
	Start, Size int
	// Visible, when set, keeps only the workflows (and their tasks) it
	// accepts, by workflow name and creator, before paging: the caller's
	// access.
	Visible func(workflowName, createdBy string) bool
}

// Kind is the type of a field.
type Kind int

const (
	// String fields compare as text.
	String Kind = iota
	// Number fields are integers.
	Number
	// Time fields are epoch milliseconds; literals may also be dates.
	// 0 is none: a value the document lacks.
	Time
	// EpochTime fields are Time fields whose 0 is a value, the epoch:
	// Conductor's TaskSummary formats every time of a task, set or not,
	// so its index holds a task not yet started as started in 1970, and
	// startTime < t finds it where startTime IS NULL finds nothing.
	EpochTime
)

// lacks reports whether v is no value of a field of kind k: nil, "" text
// or a zero Time, as Conductor's WorkflowSummary leaves an unset
// correlation id or end time out of the index document. A Number's 0 is
// a value: the summaries hold their numbers (priority, version,
// executionTime) as Java primitives, which are always indexed, so
// priority IS NULL finds no workflow. An EpochTime's 0 is the epoch.
func (k Kind) lacks(v any) bool {
	switch k {
	case String:
		s, _ := v.(string)
		return s == ""
	case Time:
		n, _ := v.(int64)
		return n == 0
	}
	return v == nil
}

// Schema maps the field names a search supports to their kinds.
type Schema map[string]Kind

// lookup finds a field case-insensitively and returns its canonical name.
func (s Schema) lookup(name string) (string, Kind, bool) {
	if k, ok := s[name]; ok {
		return name, k, true
	}
	for f, k := range s {
		if strings.EqualFold(f, name) {
			return f, k, true
		}
	}
	return "", 0, false
}

// Op is a comparison operator.
type Op string

// Operators.
const (
	Eq         Op = "="
	Ne         Op = "!="
	Gt         Op = ">"
	Ge         Op = ">="
	Lt         Op = "<"
	Le         Op = "<="
	In         Op = "IN"
	NotIn      Op = "NOT IN"
	Between    Op = "BETWEEN"
	StartsWith Op = "STARTS_WITH"
	IsNull     Op = "IS NULL"
	IsNotNull  Op = "IS NOT NULL"
)

// Cond is one comparison. Values are strings for String fields and int64
// for the others: one for the binary operators, two for Between, any
// number for In and NotIn, none for the null tests.
type Cond struct {
	Field  string
	Kind   Kind
	Op     Op
	Values []any
	// set holds the Values of a long IN or NOT IN list: a query of its
	// 64 KiB may list thousands, each compared with every candidate.
	set map[any]struct{}
}

// setFrom is the length of an IN list from which it is matched as a set.
const setFrom = 16

// contains reports whether v is one of c's values.
func (c *Cond) contains(v any) bool {
	if c.set != nil {
		switch c.Values[0].(type) {
		case string:
			s, _ := v.(string)
			v = s
		case int64:
			n, _ := v.(int64)
			v = n
		}
		_, ok := c.set[v]
		return ok
	}
	for _, x := range c.Values {
		if compare(v, x) == 0 {
			return true
		}
	}
	return false
}

// Doc gives a document's field values: a string for String fields, an
// int64 for the others. nil, "" for a String field and 0 for a Time
// field are a value the document lacks (see Kind.lacks), as a field
// missing from Conductor's index: only IS NULL, != and NOT IN match it,
// so that endTime < t does not find the workflows that have not ended.
type Doc func(field string) any

// Query is a parsed query. The zero Query (and a nil *Query) matches every
// document.
type Query struct {
	root node
}

type node interface{ match(Doc) bool }

type and []node
type or []node

func (a and) match(d Doc) bool {
	for _, n := range a {
		if !n.match(d) {
			return false
		}
	}
	return true
}

func (o or) match(d Doc) bool {
	for _, n := range o {
		if n.match(d) {
			return true
		}
	}
	return false
}

// Match reports whether d satisfies the query.
func (q *Query) Match(d Doc) bool {
	if q == nil || q.root == nil {
		return true
	}
	return q.root.match(d)
}

// Conjuncts returns the comparisons that every match satisfies: the query's
// top-level AND terms that are comparisons (a single comparison is its own
// conjunct). Planners pick an index from them; the query still has to be
// matched against each candidate.
func (q *Query) Conjuncts() []Cond {
	if q == nil || q.root == nil {
		return nil
	}
	switch n := q.root.(type) {
	case *Cond:
		return []Cond{*n}
	case and:
		var out []Cond
		for _, c := range n {
			if c, ok := c.(*Cond); ok {
				out = append(out, *c)
			}
		}
		return out
	}
	return nil
}

// Conjunctive reports whether the query is its Conjuncts: comparisons
// joined by AND, with no OR.
func (q *Query) Conjunctive() bool {
	if q == nil || q.root == nil {
		return true
	}
	switch n := q.root.(type) {
	case *Cond:
		return true
	case and:
		return len(q.Conjuncts()) == len(n)
	}
	return false
}

func (c *Cond) match(d Doc) bool {
	v := d(c.Field)
	if c.Kind.lacks(v) {
		return c.Op == IsNull || c.Op == Ne || c.Op == NotIn
	}
	switch c.Op {
	case IsNull:
		return false
	case IsNotNull:
		return true
	case In, NotIn:
		return c.contains(v) == (c.Op == In)
	case Between:
		return compare(v, c.Values[0]) >= 0 && compare(v, c.Values[1]) <= 0
	case StartsWith:
		s, _ := v.(string)
		p, _ := c.Values[0].(string)
		return strings.HasPrefix(s, p)
	}
	r := compare(v, c.Values[0])
	switch c.Op {
	case Eq:
		return r == 0
	case Ne:
		return r != 0
	case Gt:
		return r > 0
	case Ge:
		return r >= 0
	case Lt:
		return r < 0
	case Le:
		return r <= 0
	}
	return false
}

// compare orders a document value against a literal of the same kind.
func compare(v, lit any) int {
	switch l := lit.(type) {
	case string:
		s, _ := v.(string)
		return strings.Compare(s, l)
	case int64:
		n, _ := v.(int64)
		return cmp.Compare(n, l)
	}
	return -1
}

// Parse parses a query against schema. A blank query matches everything.
func Parse(s string, schema Schema) (*Query, error) {
	if len(s) > maxQueryBytes {
		return nil, fault.Invalid("query of %d bytes: at most %d", len(s), maxQueryBytes)
	}
	toks, err := lex(s)
	if err != nil {
		return nil, err
	}
	if len(toks) == 0 {
		return &Query{}, nil
	}
	p := &parser{toks: toks, schema: schema, src: s}
	root, err := p.or()
	if err != nil {
		return nil, err
	}
	if !p.done() {
		return nil, p.errorf("unexpected %q", p.peek().text)
	}
	return &Query{root: root}, nil
}

type parser struct {
	toks   []token
	pos    int
	schema Schema
	src    string
	depth  int // parentheses open at pos
	terms  int // comparisons parsed
}

// maxQueryBytes and maxComparisons bound a query's work: each comparison
// of a disjunction is matched against every candidate, and one of 20,000
// comparisons took a minute over 66,000 workflows.
const (
	maxQueryBytes  = 64 << 10
	maxComparisons = 256
)

// maxNesting bounds how deep parentheses nest. The parser and Match
// recurse once per level: a query of a megabyte of "(" took a gigabyte of
// stack to parse.
const maxNesting = 32

func (p *parser) done() bool  { return p.pos >= len(p.toks) }
func (p *parser) peek() token { return p.toks[p.pos] }
func (p *parser) next() token { t := p.toks[p.pos]; p.pos++; return t }
func (p *parser) keyword(k string) bool {
	if !p.done() && p.peek().kind == tokWord && strings.EqualFold(p.peek().text, k) {
		p.pos++
		return true
	}
	return false
}

func (p *parser) errorf(format string, args ...any) error {
	at := len(p.src)
	if !p.done() {
		at = p.peek().pos
	}
	return fault.Invalid("query %q at offset %d: %s", excerpt(p.src), at, fmt.Sprintf(format, args...))
}

// excerpt is a query, or a sort, as an error quotes it: its first 200
// bytes, so that the refusal of one of 64 KiB does not repeat it.
func excerpt(s string) string {
	if len(s) > 200 {
		return s[:200] + "…"
	}
	return s
}

func (p *parser) expect(kind tokKind, what string) (token, error) {
	if p.done() || p.peek().kind != kind {
		if p.done() {
			return token{}, p.errorf("want %s, got the end of the query", what)
		}
		return token{}, p.errorf("want %s, got %q", what, p.peek().text)
	}
	return p.next(), nil
}

func (p *parser) or() (node, error) {
	var terms or
	for {
		t, err := p.and()
		if err != nil {
			return nil, err
		}
		terms = append(terms, t)
		if !p.keyword("OR") {
			break
		}
	}
	if len(terms) == 1 {
		return terms[0], nil
	}
	return terms, nil
}

func (p *parser) and() (node, error) {
	var terms and
	for {
		t, err := p.term()
		if err != nil {
			return nil, err
		}
		terms = append(terms, t)
		if !p.keyword("AND") {
			break
		}
	}
	if len(terms) == 1 {
		return terms[0], nil
	}
	return terms, nil
}

func (p *parser) term() (node, error) {
	if p.done() {
		return nil, p.errorf("want a comparison, got the end of the query")
	}
	if p.peek().kind == tokLParen {
		if p.depth == maxNesting {
			return nil, p.errorf("parentheses nest more than %d deep", maxNesting)
		}
		p.next()
		p.depth++
		defer func() { p.depth-- }()
		n, err := p.or()
		if err != nil {
			return nil, err
		}
		if _, err := p.expect(tokRParen, "')'"); err != nil {
			return nil, err
		}
		return n, nil
	}
	return p.comparison()
}

func (p *parser) comparison() (node, error) {
	if p.terms++; p.terms > maxComparisons {
		return nil, p.errorf("more than %d comparisons", maxComparisons)
	}
	ft, err := p.expect(tokWord, "a field name")
	if err != nil {
		return nil, err
	}
	field, kind, ok := p.schema.lookup(ft.text)
	if !ok && strings.EqualFold(ft.text, "NOT") {
		p.pos--
		return nil, p.errorf("NOT does not negate a comparison: use !=, NOT IN (...) or IS NULL")
	}
	if !ok {
		p.pos--
		return nil, p.errorf("unknown field %q (known: %s)", ft.text, strings.Join(p.schema.names(), ", "))
	}
	c := &Cond{Field: field, Kind: kind}
	switch {
	case !p.done() && p.peek().kind == tokOp:
		c.Op = normalizeOp(p.next().text)
		v, err := p.value(kind)
		if err != nil {
			return nil, err
		}
		c.Values = []any{v}
	case p.keyword("IN"):
		c.Op = In
		c.Values, err = p.list(kind)
	case p.keyword("NOT"):
		if !p.keyword("IN") {
			return nil, p.errorf("want IN after NOT")
		}
		c.Op = NotIn
		c.Values, err = p.list(kind)
	case p.keyword("BETWEEN"):
		c.Op = Between
		var lo, hi any
		if lo, err = p.value(kind); err == nil {
			if !p.keyword("AND") {
				return nil, p.errorf("want AND in BETWEEN")
			}
			hi, err = p.value(kind)
		}
		c.Values = []any{lo, hi}
	case p.keyword("STARTS_WITH"):
		if kind != String {
			return nil, p.errorf("STARTS_WITH needs a text field, %s is not one", field)
		}
		c.Op = StartsWith
		var v any
		v, err = p.value(kind)
		c.Values = []any{v}
	case p.keyword("IS"):
		c.Op = IsNull
		if p.keyword("NOT") {
			c.Op = IsNotNull
		}
		if !p.keyword("NULL") {
			return nil, p.errorf("want NULL after IS")
		}
	default:
		return nil, p.errorf("want an operator after %s", field)
	}
	if err != nil {
		return nil, err
	}
	if (c.Op == In || c.Op == NotIn) && len(c.Values) >= setFrom {
		c.set = make(map[any]struct{}, len(c.Values))
		for _, v := range c.Values {
			c.set[v] = struct{}{}
		}
	}
	return c, nil
}

func normalizeOp(op string) Op {
	switch op {
	case "==":
		return Eq
	case "<>":
		return Ne
	}
	return Op(op)
}

func (p *parser) list(kind Kind) ([]any, error) {
	if _, err := p.expect(tokLParen, "'(' after IN"); err != nil {
		return nil, err
	}
	var out []any
	for {
		v, err := p.value(kind)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
		if p.done() || p.peek().kind != tokComma {
			break
		}
		p.next()
	}
	if _, err := p.expect(tokRParen, "')' or ','"); err != nil {
		return nil, err
	}
	return out, nil
}

// value reads one literal and converts it to the field's kind.
func (p *parser) value(kind Kind) (any, error) {
	if p.done() || (p.peek().kind != tokWord && p.peek().kind != tokString) {
		if p.done() {
			return nil, p.errorf("want a value, got the end of the query")
		}
		return nil, p.errorf("want a value, got %q", p.peek().text)
	}
	t := p.next()
	switch kind {
	case Number:
		n, err := strconv.ParseInt(t.text, 10, 64)
		if err != nil {
			p.pos--
			return nil, p.errorf("%q is not an integer", t.text)
		}
		return n, nil
	case Time, EpochTime:
		n, err := ParseTime(t.text)
		if err != nil {
			p.pos--
			return nil, p.errorf("%v", err)
		}
		return n, nil
	}
	return t.text, nil
}

// ParseTime reads a time literal: epoch milliseconds, RFC 3339, or a date.
func ParseTime(s string) (int64, error) {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return n, nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UnixMilli(), nil
		}
	}
	return 0, fmt.Errorf("%q is not a time: want epoch milliseconds, RFC 3339 or yyyy-MM-dd", s)
}

func (s Schema) names() []string {
	out := make([]string, 0, len(s))
	for f := range s {
		out = append(out, f)
	}
	sortStrings(out)
	return out
}
