package system

import (
	"cmp"
	"encoding/json"
	"slices"
	"strconv"
	"strings"

	"github.com/dop251/goja"
)

// lazyJSON marks a JSON object in a script's scope whose members become
// JavaScript only when the script reads them. A DO_WHILE's output holds an
// entry per iteration, which its condition rarely reads: converting them
// all at every check made a loop of n iterations cost O(n²).
//
// To the script it is an ordinary object: members read, written, deleted,
// listed (array indexes in order, then names in order, then the names the
// script added, as an object parsed from sorted JSON lists them) and
// stringified. Its source map is never modified.
type lazyJSON map[string]any

// lazyObject is a lazyJSON as a goja dynamic object.
type lazyObject struct {
	r    *jsRun
	src  lazyJSON
	vals map[string]goja.Value // members read or written
	gone map[string]bool       // members of src the script deleted
	// added are the names the script added to src's, in order.
	added []string
}

func newLazyObject(r *jsRun, src lazyJSON) *lazyObject {
	return &lazyObject{r: r, src: src, vals: map[string]goja.Value{}, gone: map[string]bool{}}
}

func (o *lazyObject) Get(key string) goja.Value {
	if v, ok := o.vals[key]; ok {
		return v
	}
	x, ok := o.src[key]
	if !ok || o.gone[key] {
		return nil
	}
	v, err := o.r.fromJSON(x)
	if err != nil {
		panic(o.r.vm.NewGoError(err))
	}
	o.vals[key] = v
	return v
}

func (o *lazyObject) Set(key string, val goja.Value) bool {
	_, inSrc := o.src[key]
	if _, set := o.vals[key]; !inSrc && !set {
		o.added = append(o.added, key)
	}
	delete(o.gone, key)
	o.vals[key] = val
	return true
}

func (o *lazyObject) Has(key string) bool {
	if _, ok := o.vals[key]; ok {
		return true
	}
	_, ok := o.src[key]
	return ok && !o.gone[key]
}

func (o *lazyObject) Delete(key string) bool {
	delete(o.vals, key)
	if _, ok := o.src[key]; ok {
		o.gone[key] = true
	}
	o.added = slices.DeleteFunc(o.added, func(k string) bool { return k == key })
	return true
}

func (o *lazyObject) Keys() []string {
	var indexes, names []string
	for k := range o.src {
		if o.gone[k] {
			continue
		}
		if isArrayIndex(k) {
			indexes = append(indexes, k)
		} else {
			names = append(names, k)
		}
	}
	slices.Sort(names)
	for _, k := range o.added {
		if isArrayIndex(k) {
			indexes = append(indexes, k)
		} else {
			names = append(names, k)
		}
	}
	slices.SortFunc(indexes, func(a, b string) int { // canonical decimals: shorter is smaller
		if c := cmp.Compare(len(a), len(b)); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	return append(indexes, names...)
}

// touched calls fn with each member the script read or wrote, in no
// particular order: the only ones that can differ from src.
func (o *lazyObject) touched(fn func(key string, val goja.Value) error) error {
	for k, v := range o.vals {
		if err := fn(k, v); err != nil {
			return err
		}
	}
	return nil
}

// deleted returns, sorted, the members of src the script deleted and did
// not set again.
func (o *lazyObject) deleted() []string {
	var keys []string
	for k := range o.gone {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// isArrayIndex reports whether JavaScript orders key as an array index:
// the canonical decimal form of an integer below 2³²-1.
func isArrayIndex(key string) bool {
	n, err := strconv.ParseUint(key, 10, 32)
	return err == nil && n < 1<<32-1 && strconv.FormatUint(n, 10) == key
}

// fromJSON converts a JSON value to JavaScript as the scope is converted:
// through JSON.parse as it was before the script ran.
func (r *jsRun) fromJSON(x any) (goja.Value, error) {
	js, err := json.Marshal(x)
	if err != nil {
		return nil, err
	}
	v, err := r.parse(goja.Undefined(), r.vm.ToValue(string(js)))
	if err != nil {
		return nil, jsError(err)
	}
	return v, nil
}
