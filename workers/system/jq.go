package system

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"reflect"
	"regexp"
	"regexp/syntax"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/itchyny/gojq"

	"github.com/flowvault/flowvault/schemas/conductor"
)

// JQ runs Conductor's JSON_JQ_TRANSFORM task with github.com/itchyny/gojq:
// inputParameters.queryExpression runs over the task input without
// queryExpression itself. The output is {"result": first value,
// "resultList": every value}. A query that does not compile, raises an
// error or exceeds its budget fails the task (FAILED) with the error in
// reasonForIncompletion and in the output's "error".
//
// Queries see no environment ($ENV and env are empty), load no modules
// and read no further inputs.
type JQ struct {
	Budget Budget
}

// Execute runs the query.
func (j JQ) Execute(ctx context.Context, t *conductor.Task) conductor.TaskResult {
	b := j.Budget.withDefaults()
	src, ok := t.InputData["queryExpression"].(string)
	if !ok || strings.TrimSpace(src) == "" {
		return scriptFailed(t, errors.New("inputParameters.queryExpression is required"))
	}
	maxArray, maxString := scriptLimits(b)
	limits := jqLimits{maxArray: maxArray, maxString: maxString}
	code, err := compileJQ(src, limits)
	if err != nil {
		return scriptFailed(t, errors.New(jqCompileText(err)))
	}
	// The query reads the task's whole input, queryExpression included,
	// as Conductor's JsonJqTransform does (`.` shows it).
	input := make(map[string]any, len(t.InputData))
	for k, v := range t.InputData {
		input[k] = toJQ(v)
	}
	release, err := acquireSlot(ctx)
	if err != nil {
		return scriptFailed(t, err)
	}
	defer release()
	runCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	run := scriptHeap.begin(uint64(b.Memory))
	stopWatch := watch(ctx, b, run, func(reason error) { cancel(reason) })
	results, runErr := collect(runCtx, code, input)
	reason := stopWatch()
	scriptHeap.end(run) // the query's state went with collect
	if reason != nil {
		return scriptFailed(t, budgetError(b, reason))
	}
	if runErr != nil {
		return scriptFailed(t, errors.New(jqErrorText(runErr)))
	}
	out := map[string]any{"result": nil, "resultList": results}
	if len(results) > 0 {
		out["result"] = results[0]
	}
	if size, err := json.Marshal(out); err != nil {
		return scriptFailed(t, fmt.Errorf("result: %v", err))
	} else if len(size) > maxOutputBytes {
		return scriptFailed(t, fmt.Errorf("result of %d bytes exceeds the limit of %d", len(size), maxOutputBytes))
	}
	return conductor.TaskResult{Status: conductor.TaskCompleted, OutputData: out}
}

// collect runs the query and returns its results. Their JSON may not
// exceed maxOutputBytes: it is estimated before the results are converted
// (a result can hold one long string many times over, which JSON repeats).
func collect(ctx context.Context, code *gojq.Code, input any) (results []any, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("query aborted: %v", p)
		}
	}()
	results = []any{}
	size := 0
	iter := code.RunWithContext(ctx, input)
	for {
		v, ok := iter.Next()
		if !ok {
			return results, nil
		}
		if e, ok := v.(error); ok {
			var halt *gojq.HaltError
			if errors.As(e, &halt) && halt.Value() == nil {
				return results, nil // halt: stop without error
			}
			return nil, e
		}
		if size += jsonSize(v, maxOutputBytes-size); size > maxOutputBytes {
			return nil, fmt.Errorf("result of more than %d bytes exceeds the limit of %d", maxOutputBytes, maxOutputBytes)
		}
		results = append(results, fromJQ(v))
	}
}

// toJQ converts a task value to the types gojq works on: int, float64,
// *big.Int, string, bool, nil, []any and map[string]any.
func toJQ(v any) any {
	switch x := v.(type) {
	case int64:
		return int(x)
	case int32:
		return int(x)
	case int16:
		return int(x)
	case int8:
		return int(x)
	case uint64:
		if x > math.MaxInt64 {
			return new(big.Int).SetUint64(x)
		}
		return int(x)
	case uint32:
		return int(x)
	case uint16:
		return int(x)
	case uint8:
		return int(x)
	case uint:
		return toJQ(uint64(x))
	case float32:
		return float64(x)
	case json.Number:
		return toJQ(conductor.Normalize(x))
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = toJQ(e)
		}
		return m
	case []any:
		s := make([]any, len(x))
		for i, e := range x {
			s[i] = toJQ(e)
		}
		return s
	}
	return v
}

// fromJQ converts a gojq value back: integers (and integral floats) become
// int64 where they fit, other numbers float64. It copies arrays and
// objects: gojq may still hold them (a result is often part of the next
// one), and an int64 in a gojq value makes gojq panic.
func fromJQ(v any) any {
	switch x := v.(type) {
	case int:
		return int64(x)
	case *big.Int:
		if x.IsInt64() {
			return x.Int64()
		}
		f, _ := new(big.Float).SetInt(x).Float64()
		return f
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nil
		}
		return integral(x)
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = fromJQ(e)
		}
		return m
	case []any:
		a := make([]any, len(x))
		for i, e := range x {
			a[i] = fromJQ(e)
		}
		return a
	}
	return v
}

// jqCompileText describes why a query does not compile without quoting it:
// the query is the task's input with its secrets resolved, and gojq quotes
// the token it stopped at or the name it did not know, which for a secret
// holding a quote is the secret's tail (redaction knows whole values
// only). It keeps where and what kind of error: the author has the query.
func jqCompileText(err error) string {
	var pe *gojq.ParseError
	if errors.As(err, &pe) {
		kind, _, _ := strings.Cut(pe.Error(), `"`)
		return fmt.Sprintf("queryExpression does not parse: %s at byte %d", strings.TrimSpace(kind), pe.Offset)
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "queryExpression") { // gojq's, not compileJQ's own
		kind, _, _ := strings.Cut(msg, ":")
		return "queryExpression does not compile: " + kind
	}
	return msg
}

// jqErrorText is the message of a query's error with no preview of a
// value in it. gojq quotes a preview of the values an error is about, cut
// after ~30 bytes (`expected an object but got: string ("sk_live_51HxQzT8
// ...")`, `fromjson cannot be applied to "sk_live_51HxQzT8abcdefgh ...":
// invalid character…`, `repeat string result too large: "…" * 1e+10`):
// redaction finds a secret value whole, in any of its encodings, but not a
// prefix of it. Each preview gives way to *** (`string (***)`), and what
// the errors gojq wraps quote of their input (a JSON text's character, a
// regular expression) to '***'. A value the query raised itself
// (error(...)) is kept: it is whole, unless it is too large to show.
// An unknown @format is a name of the query, as jqCompileText words it.
func jqErrorText(err error) string {
	var raised gojq.ValueError
	if errors.As(err, &raised) {
		if n := jsonSize(raised.Value(), maxOutputBytes); n > maxOutputBytes {
			return fmt.Sprintf("error raised with a value of more than %d bytes", maxOutputBytes)
		}
		return err.Error()
	}
	msg := err.Error()
	if strings.HasPrefix(msg, jqFormatNotDefined) {
		// gojq compiles an unknown @format into a call that fails as it
		// runs, naming the format as the query spells it: a secret
		// spliced into the query ("p4ss" + @w0rd + "") had its part
		// after its quote quoted.
		return "queryExpression does not compile: format not defined"
	}
	var values []any
	foreign := jqErrorValues(reflect.ValueOf(err), &values)
	// The longest previews first: a short one may be part of a long one.
	previews := make([][2]string, 0, 2*len(values))
	for _, v := range values {
		switch v.(type) {
		case nil, bool: // null, true, false tell nothing
			continue
		}
		p, typ := gojq.Preview(v), gojq.TypeOf(v)
		previews = append(previews, [2]string{typ + " (" + p + ")", typ + " (***)"}, [2]string{p, "***"})
	}
	slices.SortStableFunc(previews, func(a, b [2]string) int { return cmp.Compare(len(b[0]), len(a[0])) })
	for _, p := range previews {
		msg = replaceToken(msg, p[0], p[1])
	}
	if foreign {
		msg = quoted.ReplaceAllStringFunc(msg, func(q string) string {
			if q == `"start"` || q == `"end"` { // gojq's own words
				return q
			}
			return q[:1] + "***" + q[len(q)-1:]
		})
	}
	return msg
}

// jqFormatNotDefined begins gojq's message for an unknown @format.
const jqFormatNotDefined = "format not defined: "

// quoted matches what an error message quotes.
var quoted = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|` + "`[^`]*`")

// jqErrorValues appends the values a gojq error (v, read through
// reflection: its fields are unexported) and the gojq errors it wraps
// show previews of: the fields of type any, the numbers, and
// repeatStringTooLargeError's string. It reports whether err is, or wraps,
// an error gojq did not make, whose text may quote the input otherwise.
func jqErrorValues(v reflect.Value, values *[]any) (foreign bool) {
	for v.Kind() == reflect.Interface || v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return false
		}
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct || v.Type().PkgPath() != gojqPkg {
		return true
	}
	for i := range v.NumField() {
		f, name := v.Field(i), v.Type().Field(i).Name
		switch {
		case f.Type() == errorType:
			foreign = jqErrorValues(f, values) || foreign
		case f.Kind() == reflect.Interface, f.Kind() == reflect.Int, f.Kind() == reflect.Float64,
			f.Kind() == reflect.String && name == "s":
			*values = append(*values, previewCopy(f))
		}
	}
	return foreign
}

var (
	gojqPkg    = reflect.TypeFor[gojq.Query]().PkgPath()
	errorType  = reflect.TypeFor[error]()
	bigIntType = reflect.TypeFor[*big.Int]()
)

// previewWidth is more than the bytes gojq.Preview shows of a value.
const previewWidth = 40

// previewCopy copies from v, a value read through reflection, what
// gojq.Preview shows of it: the first bytes of a string, the first elements
// of an array, the first members of an object in gojq's order (sorted).
func previewCopy(v reflect.Value) any {
	switch v.Kind() {
	case reflect.Interface:
		if v.IsNil() {
			return nil
		}
		return previewCopy(v.Elem())
	case reflect.Bool:
		return v.Bool()
	case reflect.Int, reflect.Int64:
		return int(v.Int())
	case reflect.Float64:
		return v.Float()
	case reflect.String:
		s := v.String()
		for i := range s {
			if i > previewWidth {
				s = s[:i]
				break
			}
		}
		if v.Type() != reflect.TypeFor[string]() {
			return json.Number(s)
		}
		return s
	case reflect.Slice:
		a := make([]any, min(v.Len(), previewWidth/2))
		for i := range a {
			a[i] = previewCopy(v.Index(i))
		}
		return a
	case reflect.Map:
		keys := v.MapKeys()
		slices.SortFunc(keys, func(a, b reflect.Value) int { return strings.Compare(a.String(), b.String()) })
		m := make(map[string]any, min(len(keys), previewWidth/2))
		for _, k := range keys[:min(len(keys), previewWidth/2)] {
			m[k.String()] = previewCopy(v.MapIndex(k))
		}
		return m
	case reflect.Pointer:
		if v.Type() == bigIntType && !v.IsNil() { // big.Int{neg bool, abs []Word}
			words := v.Elem().Field(1)
			abs := make([]big.Word, words.Len())
			for i := range abs {
				abs[i] = big.Word(words.Index(i).Uint())
			}
			n := new(big.Int).SetBits(abs)
			if v.Elem().Field(0).Bool() {
				n.Neg(n)
			}
			return n
		}
	}
	return nil
}

// replaceToken replaces the occurrences of old in s that are not part of a
// longer word (a preview 1 in "func1").
func replaceToken(s, old, new string) string {
	if old == "" {
		return s
	}
	var b strings.Builder
	for {
		i := strings.Index(s, old)
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		end := i + len(old)
		if (i > 0 && wordByte(s[i-1]) && wordByte(old[0])) || (end < len(s) && wordByte(s[end]) && wordByte(old[len(old)-1])) {
			b.WriteString(s[:end])
		} else {
			b.WriteString(s[:i])
			b.WriteString(new)
		}
		s = s[end:]
	}
}

func wordByte(c byte) bool {
	return c == '_' || c == '.' || '0' <= c && c <= '9' || 'a' <= c|0x20 && c|0x20 <= 'z'
}

// compileJQ parses and compiles a query after checking it against the
// source limits (see maxSourceBytes; gojq's parser does not recurse, its
// compiler does, on the syntax tree), with the calls and operators that can
// escape the budget guarded (see jqGuard).
func compileJQ(src string, limits jqLimits) (*gojq.Code, error) {
	if err := sourceSize("queryExpression", src); err != nil {
		return nil, err
	}
	q, err := gojq.Parse(src)
	if err != nil {
		return nil, err
	}
	var nodes []any
	if err := syntaxDepth("queryExpression", q, maxQueryDepth, func(node any) error {
		nodes = append(nodes, node)
		return nil
	}); err != nil {
		return nil, err
	}
	for _, n := range nodes {
		switch n := n.(type) {
		case *gojq.Query:
			guardOperator(n)
		case *gojq.Term:
			guardTerm(n)
		}
	}
	return gojq.Compile(q, limits.functions()...)
}

// A query runs with checks inserted where gojq would, in one step of Go
// that no budget interrupts, allocate far more than it is given, or build
// values deeper than the Go stack can walk (gojq compares, encodes,
// flattens and sets paths recursively):
//
//   - `*` (and `*=`, `_multiply`): a string repeated into more than
//     maxString bytes (`"x" * 2e9` made 2 GB);
//   - arrays and objects built by the query, to_entries and group_by: not
//     nested more than maxValueDepth (`reduce range(1e6) as $i (0; [.])`
//     then `. == .` overflowed the stack); nor the paths setpath, getpath,
//     delpaths and fromstream are given longer;
//   - tojson, tostring, @formats and string interpolation, join, add,
//     flatten: results of more than maxString bytes or maxArray elements
//     (an array holding one long string 1000 times);
//   - regular expressions: subjects longer than maxArray/16 (a match
//     object per character), maxArray for test (matching cannot be
//     interrupted: 1e8 characters took 7.7 s); matches whose subject's
//     bytes times their expression's instructions exceed maxRegexSteps;
//     global matches whose matches times their subject's length exceed
//     maxRegexWork (see guardRegex); explode, split and indices of
//     strings longer than maxArray, fromjson of texts that long.
//
// The functions that check have names a query cannot spell (fv#…): a query
// can neither call nor redefine them.
type jqGuard struct {
	input, output string // functions piped before and after the call
	args          string // function piped after each argument
}

// jqGuards are the guards of calls, by name/arity.
var jqGuards = func() map[string]jqGuard {
	m := map[string]jqGuard{}
	for _, g := range []struct {
		guard jqGuard
		calls string
	}{
		{jqGuard{output: "fv#deep"}, "to_entries/0 group_by/1 _group_by/1"},
		{jqGuard{args: "fv#path"}, "setpath/2 getpath/1"},
		{jqGuard{args: "fv#paths"}, "delpaths/1"},
		{jqGuard{args: "fv#event"}, "fromstream/1"},
		{jqGuard{input: "fv#size"}, "tojson/0 tostring/0"},
		{jqGuard{input: "fv#add"}, "add/0"},
		{jqGuard{input: "fv#flatten"}, "flatten/0 flatten/1"},
		{jqGuard{input: "fv#digits"}, "tonumber/0"},
		{jqGuard{input: "fv#chars"}, "explode/0 split/1 indices/1"},
		{jqGuard{input: "fv#chars", output: "fv#numbers"}, "fromjson/0"},
	} {
		for _, c := range strings.Fields(g.calls) {
			m[c] = g.guard
		}
	}
	return m
}()

// guardOperator rewrites `l * r` as `fv#mul(l; r) | .[0] * .[1]` (a
// function gets its arguments as the operator its operands), and
// `l *= r` as `r as $fv#mul | l |= (fv#mul(.; $fv#mul) | .[0] * .[1])`,
// as gojq compiles it.
func guardOperator(q *gojq.Query) {
	if _, ok := arithmetic[q.Op]; ok {
		g := guardedBinary(q.Op, q.Left, q.Right)
		q.Left, q.Op, q.Right = g.Left, g.Op, g.Right
		return
	}
	if op, ok := updates[q.Op]; ok {
		update := &gojq.Query{Left: q.Left, Op: gojq.OpModify,
			Right: guardedBinary(op, &gojq.Query{Term: &gojq.Term{Type: gojq.TermTypeIdentity}}, jqCall("$fv#rhs"))}
		q.Left, q.Op, q.Right, q.Patterns = q.Right, gojq.OpPipe, update, []*gojq.Pattern{{Name: "$fv#rhs"}}
	}
}

// arithmetic are the operators whose operands are checked first, by the
// check named, and how the operation is then written over them.
var arithmetic = map[gojq.Operator]struct{ check, apply string }{
	gojq.OpAdd: {"fv#add2", ".[0] + .[1]"},
	gojq.OpMul: {"fv#mul", ".[0] * .[1]"},
	gojq.OpSub: {"fv#arith", ".[0] - .[1]"},
	gojq.OpDiv: {"fv#arith", ".[0] / .[1]"},
	gojq.OpMod: {"fv#arith", ".[0] % .[1]"},
}

// updates are the update-assignments of those operators.
var updates = map[gojq.Operator]gojq.Operator{gojq.OpUpdateAdd: gojq.OpAdd, gojq.OpUpdateMul: gojq.OpMul,
	gojq.OpUpdateSub: gojq.OpSub, gojq.OpUpdateDiv: gojq.OpDiv, gojq.OpUpdateMod: gojq.OpMod}

// arithmeticFuncs are the functions that are those operators.
var arithmeticFuncs = map[string]gojq.Operator{"_add": gojq.OpAdd, "_multiply": gojq.OpMul,
	"_subtract": gojq.OpSub, "_divide": gojq.OpDiv, "_modulo": gojq.OpMod}

// guardedBinary is `l op r` with its operands checked first, as
// `fv#mul(l; r) | .[0] * .[1]`.
func guardedBinary(op gojq.Operator, l, r *gojq.Query) *gojq.Query {
	a := arithmetic[op]
	q, _ := gojq.Parse(a.apply)
	return &gojq.Query{Left: jqCall(a.check, l, r), Op: gojq.OpPipe, Right: q}
}

func jqCall(name string, args ...*gojq.Query) *gojq.Query {
	return &gojq.Query{Term: &gojq.Term{Type: gojq.TermTypeFunc, Func: &gojq.Func{Name: name, Args: args}}}
}

func jqPipe(l, r *gojq.Query) *gojq.Query {
	return &gojq.Query{Left: l, Op: gojq.OpPipe, Right: r}
}

// guardTerm inserts the checks a term needs (see jqGuard).
func guardTerm(t *gojq.Term) {
	guardIndices(t)
	var g jqGuard
	switch t.Type {
	case gojq.TermTypeArray, gojq.TermTypeObject:
		g.output = "fv#deep"
	case gojq.TermTypeString:
		guardInterpolation(t.Str)
		return
	case gojq.TermTypeFormat:
		if t.Str != nil {
			guardInterpolation(t.Str)
			return
		}
		g.input = "fv#size"
	case gojq.TermTypeFunc:
		if op, ok := arithmeticFuncs[t.Func.Name]; ok && len(t.Func.Args) == 2 {
			*t = gojq.Term{Type: gojq.TermTypeQuery, Query: guardedBinary(op, t.Func.Args[0], t.Func.Args[1]), SuffixList: t.SuffixList}
			guardIndices(t)
			return
		}
		if check, ok := map[string]string{"join": "fv#join", "contains": "fv#contains", "inside": "fv#contains"}[t.Func.Name]; ok && len(t.Func.Args) == 1 {
			guardWithArg(t, check)
			return
		}
		if rx, ok := regexCalls[t.Func.Name+"/"+strconv.Itoa(len(t.Func.Args))]; ok {
			guardRegex(t, rx)
			return
		}
		g = jqGuards[t.Func.Name+"/"+strconv.Itoa(len(t.Func.Args))]
		if g.args != "" {
			for i, a := range t.Func.Args {
				t.Func.Args[i] = jqPipe(a, jqCall(g.args))
			}
		}
	}
	if g.input == "" && g.output == "" {
		return
	}
	inner := *t
	inner.SuffixList = nil
	q := &gojq.Query{Term: &inner}
	if g.input != "" {
		q = jqPipe(jqCall(g.input), q)
	}
	if g.output != "" {
		q = jqPipe(q, jqCall(g.output))
	}
	*t = gojq.Term{Type: gojq.TermTypeQuery, Query: q, SuffixList: t.SuffixList}
}

// guardIndices checks the indices and slice bounds of t's suffixes (`.[i]`,
// `.[i:j]`): setting .[1e8] of an array grows it to that length at once.
func guardIndices(t *gojq.Term) {
	each := func(x *gojq.Index) {
		if x == nil {
			return
		}
		if x.Start != nil {
			x.Start = jqPipe(x.Start, jqCall("fv#index"))
		}
		if x.End != nil {
			x.End = jqPipe(x.End, jqCall("fv#index"))
		}
	}
	each(t.Index)
	for _, sfx := range t.SuffixList {
		each(sfx.Index)
	}
}

// guardInterpolation checks the values a string interpolates (the parts
// that are not text).
func guardInterpolation(s *gojq.String) {
	if s == nil {
		return
	}
	for i, q := range s.Queries {
		if q.Term == nil || q.Term.Str == nil {
			s.Queries[i] = &gojq.Query{Term: &gojq.Term{Type: gojq.TermTypeQuery, Query: jqPipe(q, jqCall("fv#size"))}}
		}
	}
}

// A regexCall is a call taking a regular expression: the positions of its
// regular expression and flags among its arguments (-1: none), and what
// it matches: regexTest, a yes or no; regexOne, one match object (or
// every match with the flag g); regexGlobal, every match whatever its
// flags.
type regexCall struct {
	re, flags int
	kind      string
}

const (
	regexTest   = "test"
	regexOne    = "one"
	regexGlobal = "global"
)

// regexCalls are jq's functions over regular expressions, but split/1
// (no regular expression).
var regexCalls = map[string]regexCall{
	"test/1": {0, -1, regexTest}, "test/2": {0, 1, regexTest},
	"match/1": {0, -1, regexOne}, "match/2": {0, 1, regexOne}, "capture/1": {0, -1, regexOne}, "capture/2": {0, 1, regexOne},
	"scan/1": {0, -1, regexGlobal}, "scan/2": {0, 1, regexGlobal}, "splits/1": {0, -1, regexGlobal}, "splits/2": {0, 1, regexGlobal},
	"split/2": {0, 1, regexGlobal}, "sub/2": {0, -1, regexOne}, "sub/3": {0, 2, regexOne}, "gsub/2": {0, -1, regexGlobal},
	"gsub/3": {0, 2, regexGlobal}, "_match/3": {0, 1, regexOne},
}

// guardRegex rewrites a call over a regular expression as
// `re as $fv#re | flags as $fv#flags | fv#regex($fv#re; $fv#flags; kind) | f($fv#re; …; $fv#flags)`,
// binding its regular expression and flags in the order jq binds them, so
// that the check sees the values the call will: gojq computes each match's
// offset by counting from the subject's start, one step of Go no budget
// interrupts (scan(".") of 250,000 characters took 124 s).
func guardRegex(t *gojq.Term, rx regexCall) {
	re, flags := jqCall("$fv#re"), jqCall("$fv#flags")
	args := slices.Clone(t.Func.Args)
	binds := []struct {
		at   int
		name string
	}{{rx.re, "$fv#re"}, {rx.flags, "$fv#flags"}}
	checkFlags := &gojq.Query{Term: &gojq.Term{Type: gojq.TermTypeNull}}
	if rx.flags >= 0 {
		checkFlags = flags
		args[rx.flags] = flags
	}
	args[rx.re] = re
	kind := &gojq.Query{Term: &gojq.Term{Type: gojq.TermTypeString, Str: &gojq.String{Str: rx.kind}}}
	q := jqPipe(jqCall("fv#regex", re, checkFlags, kind),
		&gojq.Query{Term: &gojq.Term{Type: gojq.TermTypeFunc, Func: &gojq.Func{Name: t.Func.Name, Args: args}}})
	for i := len(binds) - 1; i >= 0; i-- {
		if b := binds[i]; b.at >= 0 {
			q = &gojq.Query{Left: t.Func.Args[b.at], Op: gojq.OpPipe, Patterns: []*gojq.Pattern{{Name: b.name}}, Right: q}
		}
	}
	*t = gojq.Term{Type: gojq.TermTypeQuery, Query: q, SuffixList: t.SuffixList}
}

// maxRegexWork bounds a global match's matches times its subject's length
// in characters, times one more than its capture groups (gojq counts
// from the start for each): 1<<29 is about 0.3 s on a machine where
// scan(".") over 40,000 characters (1.6e9) took 0.9 s.
const maxRegexWork = 1 << 29

// maxRegexSteps bounds the steps of one match: its subject's bytes times
// its regular expression's instructions, each of which Go's matcher may
// take at every byte. One match is one step of Go that no budget
// interrupts: test("[ab]{1000}c") over 1,000,000 characters took 19 s
// under a budget of 200 ms. 1<<25 is about 0.5 s at its worst.
const maxRegexSteps = 1 << 25

// regex checks a call over a regular expression before it runs: its
// subject's length, a match's steps, and a global match's work. An
// argument the call would refuse (not a string, an invalid expression)
// passes, for the call to say what is wrong with it.
func (l jqLimits) regex(v any, args []any) any {
	s, ok := v.(string)
	if !ok {
		return v
	}
	kind, _ := args[2].(string)
	limit := l.maxArray / 16 // a match object per character
	if kind == regexTest {
		limit = l.maxArray
	}
	if err := l.chars(s, limit); err != nil {
		return err
	}
	re, flags := args[0], args[1]
	if a, ok := re.([]any); ok && len(a) > 0 && flags == nil { // match(["re", "flags"])
		re = a[0]
		if len(a) > 1 {
			flags = a[1]
		}
	}
	pattern, ok := re.(string)
	fl, _ := flags.(string)
	if !ok {
		return v
	}
	if strings.ContainsRune(fl, 'i') {
		pattern = "(?i)" + pattern
	}
	if strings.ContainsRune(fl, 'm') {
		pattern = "(?s)" + pattern
	}
	insts, ok := regexInsts(pattern)
	if !ok {
		return v
	}
	if int64(len(s))*insts > maxRegexSteps {
		return fmt.Errorf("a match in a string of %d bytes with a regular expression of %d instructions exceeds the limit of %d steps (bytes times instructions)",
			len(s), insts, maxRegexSteps)
	}
	if kind != regexGlobal && !strings.ContainsRune(fl, 'g') {
		return v
	}
	r, err := regexp.Compile(pattern)
	if err != nil {
		return v
	}
	// Counted up to one past what the limit allows: the count itself
	// allocates a pair of offsets per match.
	chars := int64(utf8.RuneCountInString(s))
	perMatch := max(chars*int64(1+r.NumSubexp()), 1)
	allowed := maxRegexWork/perMatch - 1
	matches := int64(len(r.FindAllStringIndex(s, int(min(allowed+1, chars+1)))))
	if matches > allowed {
		return fmt.Errorf("a global match of more than %d matches in a string of %d characters exceeds the limit of the work of %d (matches times characters times groups)",
			allowed, chars, maxRegexWork)
	}
	return v
}

// guardWithArg rewrites a call f(arg) whose check needs its input and its
// argument as `arg as $fv#arg | check($fv#arg) | f($fv#arg)`: join's
// separator sizes its result, contains' argument the comparisons.
func guardWithArg(t *gojq.Term, check string) {
	arg := jqCall("$fv#arg")
	call := &gojq.Query{Term: &gojq.Term{Type: gojq.TermTypeFunc, Func: &gojq.Func{Name: t.Func.Name, Args: []*gojq.Query{arg}}}}
	q := &gojq.Query{Left: t.Func.Args[0], Op: gojq.OpPipe, Patterns: []*gojq.Pattern{{Name: "$fv#arg"}},
		Right: jqPipe(jqCall(check, arg), call)}
	*t = gojq.Term{Type: gojq.TermTypeQuery, Query: q, SuffixList: t.SuffixList}
}

// jqLimits holds the limits of a query's guards, from its budget.
type jqLimits struct {
	maxArray, maxString int64
}

func (l jqLimits) functions() []gojq.CompilerOption {
	check := func(name string, f func(v any) error) gojq.CompilerOption {
		return gojq.WithFunction(name, 0, 0, func(v any, _ []any) any {
			if err := f(v); err != nil {
				return err
			}
			return v
		})
	}
	return []gojq.CompilerOption{
		gojq.WithFunction("fv#mul", 2, 2, l.mul),
		gojq.WithFunction("fv#add2", 2, 2, l.add2),
		gojq.WithFunction("fv#arith", 2, 2, l.arith),
		check("fv#numbers", numbers),
		check("fv#index", l.index),
		check("fv#digits", digits),
		gojq.WithFunction("fv#join", 1, 1, l.join),
		gojq.WithFunction("fv#contains", 1, 1, containsWithin),
		gojq.WithFunction("fv#regex", 3, 3, l.regex),
		check("fv#deep", func(v any) error { return checkDepth(v, 0) }),
		check("fv#path", l.path),
		check("fv#paths", func(v any) error { return eachOf(v, l.path) }),
		check("fv#event", func(v any) error { return firstOf(v, l.path) }),
		check("fv#size", l.size),
		check("fv#add", l.add),
		check("fv#flatten", l.flatten),
		check("fv#chars", func(v any) error { return l.chars(v, l.maxArray) }),
	}
}

// maxIntegerBits bounds the integers a query computes beyond 64 bits
// (about 20,000 digits): gojq's are of any size, and one product or
// conversion of numbers of millions of digits runs for minutes, out of
// reach of the time budget. jq's own numbers are doubles.
const maxIntegerBits = 1 << 16

// bits is the size of an integer operand, 0 for anything else; for a
// number fromjson read, which gojq converts when it computes with it, the
// size its digits make.
func bits(v any) int {
	switch x := v.(type) {
	case int:
		return 64
	case *big.Int:
		return x.BitLen()
	case json.Number:
		return len(x)*10/3 + 1
	}
	return 0
}

// maxDifference bounds the comparisons of an array difference, `a - b`,
// or of contains and inside, which compare every element of a with every
// one of b in one step.
const maxDifference = 50_000_000

// arith checks the operands of `-`, `/` and `%`; it returns them as an
// array.
func (l jqLimits) arith(_ any, args []any) any {
	if n := max(bits(args[0]), bits(args[1])); n > maxIntegerBits {
		return integerTooLarge(n)
	}
	a, okA := args[0].([]any)
	b, okB := args[1].([]any)
	if okA && okB && int64(len(a))*int64(len(b)) > maxDifference {
		return fmt.Errorf("a difference of %d by %d elements exceeds the limit of %d comparisons", len(a), len(b), maxDifference)
	}
	return args
}

// containsWithin checks contains and inside, which compare every element
// of one array with every one of the other in one step.
func containsWithin(v any, args []any) any {
	a, okA := v.([]any)
	b, okB := args[0].([]any)
	if okA && okB && int64(len(a))*int64(len(b)) > maxDifference {
		return fmt.Errorf("arrays of %d and %d elements compared exceed the limit of %d comparisons", len(a), len(b), maxDifference)
	}
	return v
}

// numbers checks the numbers of what fromjson read: none longer than an
// integer of maxIntegerBits.
func numbers(v any) error {
	var err error
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case json.Number:
			if n := bits(x); n > maxIntegerBits && err == nil {
				err = integerTooLarge(n)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		case map[string]any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	walk(v)
	return err
}

func integerTooLarge(n int) error {
	return fmt.Errorf("an integer of %d bits exceeds the limit of %d", n, maxIntegerBits)
}

// add2 checks the operands of `+`: strings and arrays concatenate, and a
// value added to itself doubles each time (`reduce range(40) as $i ("a";
// . + .)` asked for a terabyte); it returns them as an array.
func (l jqLimits) add2(_ any, args []any) any {
	switch x := args[0].(type) {
	case string:
		if y, ok := args[1].(string); ok && int64(len(x))+int64(len(y)) > l.maxString {
			return fmt.Errorf("a sum of %d bytes exceeds the script memory budget", int64(len(x))+int64(len(y)))
		}
	case []any:
		if y, ok := args[1].([]any); ok && int64(len(x))+int64(len(y)) > l.maxArray {
			return fmt.Errorf("a sum of %d elements exceeds the script memory budget", int64(len(x))+int64(len(y)))
		}
	}
	if n := max(bits(args[0]), bits(args[1])) + 1; n > maxIntegerBits && (bits(args[0]) > 0 || bits(args[1]) > 0) {
		return integerTooLarge(n)
	}
	return args
}

// index checks an index or slice bound: past maxArray, setting it would
// grow an array that far in one step.
func (l jqLimits) index(v any) error {
	if n, ok := gojq.ToFloat64(v); ok && math.Abs(n) > float64(l.maxArray) {
		return fmt.Errorf("index %.0f exceeds the limit of %d elements", n, l.maxArray)
	}
	return nil
}

// digits checks what tonumber converts: a string of more digits than an
// integer of maxIntegerBits has.
func digits(v any) error {
	if s, ok := v.(string); ok && len(s) > maxIntegerBits*30/100+16 {
		return fmt.Errorf("a number of %d characters exceeds the limit of %d bits", len(s), maxIntegerBits)
	}
	return nil
}

// mul checks the operands of `*`; it returns them as an array.
func (l jqLimits) mul(_ any, args []any) any {
	if a, b := bits(args[0]), bits(args[1]); a > 0 && b > 0 && a+b > maxIntegerBits {
		return integerTooLarge(a + b)
	}
	s, ok := args[0].(string)
	n, isNumber := gojq.ToFloat64(args[1])
	if !ok {
		s, ok = args[1].(string)
		n, isNumber = gojq.ToFloat64(args[0])
	}
	if ok && isNumber && float64(len(s))*n > float64(l.maxString) {
		return fmt.Errorf("string repeated into %.0f bytes exceeds the script memory budget", float64(len(s))*n)
	}
	return args
}

func (l jqLimits) join(v any, args []any) any {
	a, ok := v.([]any)
	sep, isString := args[0].(string)
	if !ok || !isString || len(a) == 0 {
		return v
	}
	n := int64(len(a)-1) * int64(len(sep))
	for _, e := range a {
		if n > l.maxString {
			break
		}
		n += int64(jsonSize(e, int(l.maxString)))
	}
	if n > l.maxString {
		return fmt.Errorf("join of more than %d bytes exceeds the script memory budget", l.maxString)
	}
	return v
}

func (l jqLimits) size(v any) error {
	if n := jsonSize(v, int(l.maxString)); int64(n) > l.maxString {
		return fmt.Errorf("string of more than %d bytes exceeds the script memory budget", l.maxString)
	}
	return nil
}

// add checks what add would concatenate: strings, or arrays.
func (l jqLimits) add(v any) error {
	var chars, elems int64
	return eachOf(v, func(e any) error {
		switch e := e.(type) {
		case string:
			chars += int64(len(e))
		case []any:
			elems += int64(len(e))
		}
		if chars > l.maxString || elems > l.maxArray {
			return fmt.Errorf("add of more than %d bytes or %d elements exceeds the script memory budget", l.maxString, l.maxArray)
		}
		return nil
	})
}

// flatten checks how many elements flatten would make, counting the
// arrays nested in v.
func (l jqLimits) flatten(v any) error {
	n := int64(0)
	stack := []any{v}
	for len(stack) > 0 {
		a, ok := stack[len(stack)-1].([]any)
		stack = stack[:len(stack)-1]
		if !ok {
			continue
		}
		if n += int64(len(a)); n > l.maxArray {
			return fmt.Errorf("flatten of more than %d elements exceeds the script memory budget", l.maxArray)
		}
		stack = append(stack, a...)
	}
	return nil
}

func (l jqLimits) chars(v any, limit int64) error {
	if s, ok := v.(string); ok && int64(len(s)) > limit {
		return fmt.Errorf("string of %d bytes exceeds the limit of %d for this function", len(s), limit)
	}
	return nil
}

// path checks a path setpath, getpath, delpaths or fromstream is given:
// its length, and its indices (setting .[1e8] grows an array that far).
func (l jqLimits) path(v any) error {
	p, ok := v.([]any)
	if !ok {
		return nil
	}
	if len(p) > maxValueDepth {
		return fmt.Errorf("path of %d keys exceeds the limit of %d", len(p), maxValueDepth)
	}
	for _, k := range p {
		if err := l.index(k); err != nil {
			return err
		}
	}
	return nil
}

func eachOf(v any, f func(any) error) error {
	switch v := v.(type) {
	case []any:
		for _, e := range v {
			if err := f(e); err != nil {
				return err
			}
		}
	case map[string]any:
		for _, e := range v {
			if err := f(e); err != nil {
				return err
			}
		}
	}
	return nil
}

func firstOf(v any, f func(any) error) error {
	if a, ok := v.([]any); ok && len(a) > 0 {
		return f(a[0])
	}
	return nil
}

// checkDepth reports a value nested deeper than maxValueDepth (below
// depth levels already), walking it without recursion.
func checkDepth(v any, depth int) error {
	type item struct {
		v     any
		depth int
	}
	stack := []item{{v, depth}}
	for len(stack) > 0 {
		it := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		switch x := it.v.(type) {
		case []any:
			if it.depth >= maxValueDepth {
				return fmt.Errorf("value nested more than %d levels deep", maxValueDepth)
			}
			for _, e := range x {
				stack = append(stack, item{e, it.depth + 1})
			}
		case map[string]any:
			if it.depth >= maxValueDepth {
				return fmt.Errorf("value nested more than %d levels deep", maxValueDepth)
			}
			for _, e := range x {
				stack = append(stack, item{e, it.depth + 1})
			}
		}
	}
	return nil
}

// jsonSize estimates the bytes of v's JSON, without recursion, stopping
// once past limit: a value can hold one string many times, and its JSON
// repeats it.
func jsonSize(v any, limit int) int {
	n := 0
	stack := []any{v}
	for len(stack) > 0 && n <= limit {
		x := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		switch x := x.(type) {
		case string:
			n += len(x) + 2
		case []any:
			n += len(x) + 1
			stack = append(stack, x...)
		case map[string]any:
			n += len(x) + 1
			for k, e := range x {
				n += len(k) + 3
				stack = append(stack, e)
			}
		case *big.Int:
			n += len(x.Bits())*20 + 1
		case int:
			n += intDigits(x)
		case nil:
			n += 4
		default:
			n += 24 // a float, a boolean
		}
	}
	return n
}

func intDigits(i int) int {
	n := 1
	for ; i >= 10 || i <= -10; i /= 10 {
		n++
	}
	if i < 0 {
		n++
	}
	return n
}

// regexInsts is the size of the program Go's matcher runs for pattern,
// as regexp.Compile builds it; false if pattern does not compile.
func regexInsts(pattern string) (int64, bool) {
	re, err := syntax.Parse(pattern, syntax.Perl)
	if err != nil {
		return 0, false
	}
	prog, err := syntax.Compile(re.Simplify())
	if err != nil {
		return 0, false
	}
	return int64(len(prog.Inst)), true
}
