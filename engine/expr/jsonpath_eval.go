package expr

import "slices"

// eval applies the path to root and reports whether anything matched. The
// value is not copied.
func (jp *jsonPath) eval(root any, w *work) (any, bool) {
	var out []any
	jp.walk(root, 0, &out, w)
	return jp.result(out, w), len(out) > 0
}

// result turns the matches into the value Jayway returns for the path.
// A function applies to what the path before it selects: the value of a
// definite path (nil when there is none, as Jayway's read fails), the list
// of an indefinite one. Jayway applies it to each match instead: see
// README.md, "Parameter expressions".
func (jp *jsonPath) result(out []any, w *work) any {
	var v any
	switch {
	case !jp.definite:
		if out == nil {
			out = []any{}
		}
		v = out
	case len(out) > 0:
		v = out[0]
	case jp.fn != nil:
		return nil
	}
	if jp.fn != nil {
		r, _ := jp.fn.call(v, w)
		return r
	}
	return v
}

// walk applies step i and those after it at node; each node it is called
// at takes a step of w, and it does nothing once w is spent.
func (jp *jsonPath) walk(node any, i int, out *[]any, w *work) {
	if !w.take(1) {
		return
	}
	if i == len(jp.steps) {
		*out = append(*out, node)
		return
	}
	st := &jp.steps[i]
	switch st.kind {
	case stepMember:
		m, ok := node.(map[string]any)
		if !ok {
			return
		}
		if len(st.names) > 1 && i == len(jp.steps)-1 {
			merged := make(map[string]any, len(st.names))
			for _, n := range st.names {
				if v, ok := m[n]; ok {
					merged[n] = v
				}
			}
			*out = append(*out, merged)
			return
		}
		for _, n := range st.names {
			if v, ok := m[n]; ok {
				jp.walk(v, i+1, out, w)
			}
		}
	case stepIndex:
		a, ok := node.([]any)
		if !ok {
			return
		}
		for _, n := range st.indices {
			if n < 0 {
				n += len(a)
			}
			if n >= 0 && n < len(a) {
				jp.walk(a[n], i+1, out, w)
			}
		}
	case stepSlice:
		a, ok := node.([]any)
		if !ok {
			return
		}
		from, to := bound(st.from, 0, len(a)), bound(st.to, len(a), len(a))
		for j := from; j < to && !w.spent(); j++ {
			jp.walk(a[j], i+1, out, w)
		}
	case stepWildcard:
		forEachChild(node, w, func(v any) { jp.walk(v, i+1, out, w) })
	case stepScan:
		jp.scan(node, i+1, out, w)
	case stepFilter:
		switch x := node.(type) {
		case map[string]any:
			if st.filter.match(x, w) {
				jp.walk(x, i+1, out, w)
			}
		case []any:
			for _, v := range x {
				if w.spent() {
					return
				}
				if st.filter.match(v, w) {
					jp.walk(v, i+1, out, w)
				}
			}
		}
	}
}

// scan applies step i at node and at every node below it.
func (jp *jsonPath) scan(node any, i int, out *[]any, w *work) {
	jp.walk(node, i, out, w)
	forEachChild(node, w, func(v any) { jp.scan(v, i, out, w) })
}

// forEachChild visits the elements of an array, or the values of a map in
// key order so that results are deterministic, until w is spent. A map
// takes steps for what it costs beyond its values' visits: iterating it,
// sorting its keys and reading each (a scan of a scan spends most of its
// time there).
func forEachChild(node any, w *work, fn func(any)) {
	switch x := node.(type) {
	case []any:
		for _, v := range x {
			if w.spent() {
				return
			}
			fn(v)
		}
	case map[string]any:
		if !w.take(4 + 2*len(x)) {
			return
		}
		// A scan of a scan visits each map many times: sorting its keys
		// in place of slices.Sorted's allocation halved the cost of a step.
		var small [8]string
		keys := small[:0]
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			if w.spent() {
				return
			}
			fn(x[k])
		}
	}
}

// bound resolves an optional slice bound against length n, counting negative
// bounds from the end and clamping to [0, n].
func bound(b *int, def, n int) int {
	if b == nil {
		return def
	}
	v := *b
	if v < 0 {
		v += n
	}
	return max(0, min(v, n))
}
