package expr

import (
	"slices"
	"strings"
)

// FieldKeys reports the keys of source.field whose values the template
// string s may copy: for source "workflow" and field "input",
// "${workflow.input.a.b}" and "${workflow.input['a']}" copy from a,
// "${workflow.input}" and "${workflow.input.*}" from every key (all).
//
// It errs on the side of more: a path chosen at run time (a nested
// expression) that may lead into source.field counts as every key. A
// nested expression's own value names a path or a secret, it is not
// copied, so it is not counted; nor is a deferred expression, which
// names a secret or an environment value. A string that does not parse
// copies nothing (the definition is refused before it runs).
func FieldKeys(s, source, field string) (keys []string, all bool) {
	if !hasExpr(s) {
		return nil, false
	}
	nodes, err := parse(s)
	if err != nil {
		return nil, false
	}
	for _, n := range nodes {
		if !n.expr || namesDeferred(n.body) {
			continue
		}
		k, a := bodyKeys(n.body, source, field)
		if a {
			return nil, true
		}
		keys = append(keys, k...)
	}
	return keys, false
}

// bodyKeys is FieldKeys for one expression body.
func bodyKeys(body []node, source, field string) (keys []string, all bool) {
	if len(body) == 0 {
		return nil, false
	}
	if len(body) > 1 || body[0].expr {
		// The path is made at run time: only its literal start, if it has
		// one, tells it stays clear of the source.
		return nil, body[0].expr || strings.Contains(body[0].text, source)
	}
	text := strings.TrimSpace(body[0].text)
	if text == "" {
		return nil, false
	}
	if text[0] != '$' {
		text = "$." + text
	}
	jp, err := compilePath(text, '$')
	if err != nil || len(jp.steps) == 0 {
		return nil, false
	}
	// The steps as evaluator.lookup walks them: the first names a source.
	if first := jp.steps[0]; first.kind != stepMember || len(first.names) != 1 || first.names[0] != source {
		return nil, false
	}
	if len(jp.steps) == 1 {
		return nil, true
	}
	switch second := jp.steps[1]; second.kind {
	case stepIndex, stepSlice:
		return nil, false // an index into an object selects nothing
	case stepMember:
		if !slices.Contains(second.names, field) {
			return nil, false
		}
	default:
		return nil, true // a wildcard, scan or filter may select field
	}
	if len(jp.steps) == 2 {
		return nil, true
	}
	switch third := jp.steps[2]; third.kind {
	case stepMember:
		return third.names, false
	case stepIndex, stepSlice:
		return nil, false
	default:
		return nil, true
	}
}
