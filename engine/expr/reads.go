package expr

import (
	"slices"
	"strings"
)

// Keys names keys of one field of a source: some of them, or all.
type Keys struct {
	Names []string
	All   bool
}

// Add adds o's keys to k.
func (k *Keys) Add(o Keys) { k.add(o.Names, o.All) }

func (k *Keys) add(names []string, all bool) {
	k.Names, k.All = append(k.Names, names...), k.All || all
}

// Reads reports the keys of source.field that the template string s
// reads: copied, those whose values it copies (for source "workflow" and
// field "input", "${workflow.input.a.b}" and "${workflow.input['a']}"
// copy from a, "${workflow.input}" and "${workflow.input.*}" from every
// key), and named, those it reads to choose a path or a name (a nested
// expression, as in ${workflow.secrets.${workflow.input.name}}, whose
// value names the secret).
//
// It errs on the side of more: a path chosen at run time that may lead
// into source.field copies every key. A string that does not parse reads
// nothing (the definition is refused before it runs).
func Reads(s, source, field string) (copied, named Keys) {
	if !hasExpr(s) {
		return Keys{}, Keys{}
	}
	nodes, err := parse(s)
	if err != nil {
		return Keys{}, Keys{}
	}
	for _, n := range nodes {
		if !n.expr {
			continue
		}
		if !namesDeferred(n.body) {
			copied.add(bodyKeys(n.body, source, field))
		}
		nestedReads(n.body, source, field, &named)
	}
	return copied, named
}

// nestedReads adds what the expressions nested in body read, at any depth.
func nestedReads(body []node, source, field string, named *Keys) {
	for _, n := range body {
		if n.expr {
			named.add(bodyKeys(n.body, source, field))
			nestedReads(n.body, source, field, named)
		}
	}
}

// bodyKeys returns the keys of source.field one expression body copies.
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
