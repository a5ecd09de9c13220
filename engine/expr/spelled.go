package expr

import "strings"

// Spelled reports whether the template string s spells any of its value
// itself, as Evaluate reads it: literal text beside or instead of an
// expression ("pw-${x}", and "$${x}", whose value is the text "${x}"), or
// a literal that a path's function adds to what it reads
// (${$.concat('x')}, ${$.a.sum(4)}). Only a string made of expressions
// and nothing else, each reading its value from the document, spells
// none; so an empty string spells itself, as does one that does not
// parse, whose expressions nothing evaluates.
//
// A path made at run time (an expression nested in the body) is known
// only then, and what the event gives may open a function's arguments
// before the path's own text and quote or close them after it: it counts
// as spelled when its own text may call a function, or may be an
// argument of one the event opens (see spelledRuntime).
func Spelled(s string) bool {
	if !hasExpr(s) {
		return true
	}
	nodes, err := parse(s)
	if err != nil {
		return true
	}
	for _, n := range nodes {
		if !n.expr || spelledBody(n.body) {
			return true
		}
	}
	return false
}

// spelledBody reports whether the expression body may add a literal of
// its own to the value it reads.
func spelledBody(body []node) bool {
	if len(body) != 1 || body[0].expr {
		return spelledRuntime(body)
	}
	// As evaluator.lookup reads it.
	text := strings.TrimSpace(body[0].text)
	if text == "" {
		return false // the empty string
	}
	if text[0] != '$' {
		text = "$." + text
	}
	jp, err := compilePath(text, '$')
	return err == nil && spelledCall(jp.fn)
}

// spelledCall reports whether c, or a function an argument path of it
// ends in, takes a literal argument into its result: every function's
// literals but index's, which only chooses an element.
func spelledCall(c *fnCall) bool {
	if c == nil {
		return false
	}
	for _, a := range c.args {
		if a.path == nil && c.name != "index" || a.path != nil && spelledCall(a.path.fn) {
			return true
		}
	}
	return false
}

// spelledRuntime is spelledBody for a path made at run time. Its text
// may call a function itself ("("). Past the first nested expression,
// its text may be an argument of one the event's value opens, when the
// path may end in the ")" a function ends in (its last text does, or a
// nested expression's value may); text of a path's punctuation alone
// (".", "[", "]", "*") is no value of anyone's.
func spelledRuntime(body []node) bool {
	if len(body) == 0 {
		return false // ${}, the empty string
	}
	last := body[len(body)-1]
	closes := last.expr || strings.HasSuffix(strings.TrimSpace(last.text), ")")
	nested := false
	for _, n := range body {
		switch {
		case n.expr && spelledBody(n.body):
			return true
		case n.expr:
			nested = true
		case strings.Contains(n.text, "("),
			nested && closes && strings.Trim(n.text, ".[]* \t\r\n") != "":
			return true
		}
	}
	return false
}
