package query

import (
	"cmp"
	"slices"
	"strings"

	"github.com/flowvault/flowvault/fault"
)

type tokKind int

const (
	tokWord   tokKind = iota // field names, keywords, bare values
	tokString                // a quoted value, unquoted
	tokOp                    // = == != <> > >= < <=
	tokLParen
	tokRParen
	tokComma
)

type token struct {
	kind tokKind
	text string
	pos  int
}

// lex splits a query into tokens.
func lex(s string) ([]token, error) {
	var out []token
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '(':
			out = append(out, token{tokLParen, "(", i})
			i++
		case c == ')':
			out = append(out, token{tokRParen, ")", i})
			i++
		case c == ',':
			out = append(out, token{tokComma, ",", i})
			i++
		case c == '"' || c == '\'':
			text, n, err := quoted(s[i:])
			if err != nil {
				return nil, fault.Invalid("query %q at offset %d: %v", excerpt(s), i, err)
			}
			out = append(out, token{tokString, text, i})
			i += n
		case strings.ContainsRune("=!<>", rune(c)):
			j := i + 1
			if j < len(s) && (s[j] == '=' || (c == '<' && s[j] == '>')) {
				j++
			}
			op := s[i:j]
			if op == "!" {
				return nil, fault.Invalid("query %q at offset %d: want != ", excerpt(s), i)
			}
			out = append(out, token{tokOp, op, i})
			i = j
		default:
			j := i
			for j < len(s) && !strings.ContainsRune(" \t\r\n(),=!<>\"'", rune(s[j])) {
				j++
			}
			out = append(out, token{tokWord, s[i:j], i})
			i = j
		}
	}
	return out, nil
}

// quoted reads a quoted string at the start of s and returns its text and
// length. A backslash escapes the next character.
func quoted(s string) (string, int, error) {
	q := s[0]
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '\\':
			if i+1 < len(s) {
				i++
				b.WriteByte(s[i])
			}
		case q:
			return b.String(), i + 1, nil
		default:
			b.WriteByte(s[i])
		}
	}
	return "", 0, fault.Invalid("unterminated string")
}

// SortKey orders results by one field.
type SortKey struct {
	Field string
	Kind  Kind
	Desc  bool
}

// ParseSort reads sort parameters: each is "field", "field:ASC" or
// "field:DESC", and one parameter may list several, separated by "|" (as
// Conductor's server splits its sort parameter) or by commas (as Spring
// joins a repeated one).
func ParseSort(params []string, schema Schema) ([]SortKey, error) {
	var out []SortKey
	for _, p := range params {
		for _, part := range strings.FieldsFunc(p, func(r rune) bool { return r == ',' || r == '|' }) {
			part = strings.TrimSpace(part)
			if part == "" {
				continue
			}
			name, dir, _ := strings.Cut(part, ":")
			field, kind, ok := schema.lookup(strings.TrimSpace(name))
			if !ok {
				return nil, fault.Invalid("sort %q: unknown field %q (known: %s)", excerpt(p), excerpt(name), strings.Join(schema.names(), ", "))
			}
			k := SortKey{Field: field, Kind: kind}
			switch strings.ToUpper(strings.TrimSpace(dir)) {
			case "", "ASC":
			case "DESC":
				k.Desc = true
			default:
				return nil, fault.Invalid("sort %q: direction %q, want ASC or DESC", excerpt(p), excerpt(dir))
			}
			out = append(out, k)
		}
	}
	return out, nil
}

// Compare orders two documents by keys: negative when a comes first, 0
// for a tie. A value a document lacks (see Kind.lacks) comes after
// every value in either direction, as Elasticsearch sorts a field missing
// from Conductor's index: a running workflow's endTime, a workflow
// without a correlation id.
func Compare(keys []SortKey, a, b Doc) int {
	for _, k := range keys {
		av, bv := a(k.Field), b(k.Field)
		am, bm := k.Kind.lacks(av), k.Kind.lacks(bv)
		var r int
		switch {
		case am && bm:
			continue
		case am:
			return 1
		case bm:
			return -1
		case k.Kind == String:
			as, _ := av.(string)
			bs, _ := bv.(string)
			r = strings.Compare(as, bs)
		default:
			an, _ := av.(int64)
			bn, _ := bv.(int64)
			r = cmp.Compare(an, bn)
		}
		if r == 0 {
			continue
		}
		if k.Desc {
			return -r
		}
		return r
	}
	return 0
}

// Less reports whether a comes before b (see Compare); ties keep their
// order.
func Less(keys []SortKey, a, b Doc) bool { return Compare(keys, a, b) < 0 }

// FreeText is a parsed freeText parameter: "" and "*" match everything,
// anything else matches documents whose text contains it, ignoring case
// (leading and trailing * wildcards are dropped, surrounding quotes too).
type FreeText struct {
	needle string
}

// ParseFreeText reads a freeText parameter.
func ParseFreeText(s string) FreeText {
	s = strings.TrimSpace(s)
	if len(s) >= 2 && (s[0] == '"' && s[len(s)-1] == '"') {
		s = s[1 : len(s)-1]
	}
	s = strings.Trim(s, "*")
	return FreeText{needle: strings.ToLower(strings.TrimSpace(s))}
}

// All reports whether the free text matches every document.
func (f FreeText) All() bool { return f.needle == "" }

// Match reports whether any of the texts contains the free text.
func (f FreeText) Match(texts ...string) bool {
	if f.All() {
		return true
	}
	return slices.ContainsFunc(texts, func(t string) bool { return strings.Contains(strings.ToLower(t), f.needle) })
}

func sortStrings(s []string) { slices.Sort(s) }
