package system

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/dlclark/regexp2/v2"
	"github.com/dop251/goja"

	"github.com/flowvault/flowvault/schemas/conductor"
)

// JavaScript runs in github.com/dop251/goja, one fresh runtime per run, so
// that nothing a script does (globals, prototypes) outlives it. goja offers
// no network, filesystem or process access; this package adds only a
// console whose methods do nothing.
//
// A run is bounded by its Budget:
//
//   - time: the runtime is interrupted when the budget passes (goja checks
//     for interrupts between instructions);
//   - call depth: goja's SetMaxCallStackSize;
//   - memory: the heap watch (watch), which interrupts a run whose
//     retained heap grows past the budget.
//
// Interrupts are only noticed between instructions, and some goja
// built-ins loop in Go over an array's length: `new Array(1e9).join()`
// allocates gigabytes in one step. The prelude below closes the known
// amplifiers of that kind before the script runs: every Array.prototype
// method, Array.from, Function.prototype.apply, Reflect.apply and
// Reflect.construct, array and string iteration (spread), JSON.stringify,
// and the string methods that build large strings refuse inputs or results
// past limits derived from the memory budget; typed arrays and
// ArrayBuffer, which allocate their whole size at once, are removed.
// Regular expressions that need backtracking (regexp2) time out on their
// own (regexpTimeout). Complete isolation of hostile code would need a
// separate process; these guards stop runaway and careless scripts, which
// is what a workflow engine meets.

// maxOutputBytes bounds the JSON of a script's result.
const maxOutputBytes = 4 << 20

// regexpTimeout bounds one match of a backtracking regular expression.
const regexpTimeout = 2 * time.Second

func init() {
	// goja compiles the regular expressions RE2 cannot run with regexp2,
	// whose matches otherwise never time out. The variable is read when a
	// pattern is compiled; nothing else in flowvault uses regexp2.
	regexp2.DefaultMatchTimeout = regexpTimeout
}

// scriptLimits derives the largest array (elements) and string (UTF-16
// units) one built-in call may produce from the memory budget.
func scriptLimits(b Budget) (maxArray, maxString int64) {
	return max(b.Memory/16, 1024), max(b.Memory/2, 1024)
}

const preludeSrc = `(function (maxArray, maxString) {
	"use strict";
	var g = globalThis;
	var apply = Reflect.apply, construct = Reflect.construct, defineProperty = Object.defineProperty;
	var getNames = Object.getOwnPropertyNames, keys = Object.keys, isArray = Array.isArray;
	function tooLarge(what, n) {
		throw new RangeError(what + " " + n + " exceeds the script memory budget");
	}
	function checkObject(o) {
		if (o !== null && (typeof o === "object" || typeof o === "function")) {
			var n = o.length;
			if (typeof n === "number" && n > maxArray) tooLarge("array length", n);
		}
	}
	function checkThisAndArgs(self, args) {
		checkObject(self);
		for (var i = 0; i < args.length; i++) checkObject(args[i]);
	}
	function wrap(obj, key, check) {
		var f = obj[key];
		if (typeof f !== "function") return;
		var w = function () {
			check(this, arguments);
			return new.target ? construct(f, arguments, new.target) : apply(f, this, arguments);
		};
		obj[key] = w; // built-in methods are writable and stay non-enumerable
	}
	// Built-ins that loop in Go over an array's length.
	var AP = Array.prototype;
	var names = getNames(AP);
	for (var i = 0; i < names.length; i++) if (names[i] !== "constructor") wrap(AP, names[i], checkThisAndArgs);
	wrap(AP, Symbol.iterator, checkThisAndArgs);
	// goja's flat recurses in Go without bound: a cyclic array flattened
	// to Infinity overflowed the Go stack, which kills the process. This
	// one keeps its own stack, bounded, and is interruptible.
	var maxFlatDepth = 1000;
	defineProperty(AP, "flat", {writable: true, configurable: true, enumerable: false, value: function flat() {
		var d = arguments.length > 0 && arguments[0] !== undefined ? Math.trunc(Number(arguments[0])) : 1;
		if (d !== d) d = 0;
		var src = Object(this), out = [], stack = [{a: src, i: 0, n: Number(src.length) || 0, d: d}];
		while (stack.length > 0) {
			var top = stack[stack.length - 1];
			if (top.i >= top.n) { stack.pop(); continue; }
			var i = top.i++;
			if (!(i in top.a)) continue;
			var x = top.a[i];
			if (top.d > 0 && isArray(x)) {
				if (stack.length >= maxFlatDepth) throw new RangeError("flat: arrays nested more than " + maxFlatDepth + " levels deep (circular?)");
				stack.push({a: x, i: 0, n: x.length, d: top.d - 1});
				continue;
			}
			if (out.length >= maxArray) tooLarge("array length", out.length + 1);
			out.push(x);
		}
		return out;
	}});
	wrap(Array, "from", function (self, args) { checkObject(args[0]); });
	wrap(Array, "of", function (self, args) { checkObject(args); });
	wrap(Function.prototype, "apply", function (self, args) { checkObject(args[1]); });
	wrap(Reflect, "apply", function (self, args) { checkObject(args[2]); });
	wrap(Reflect, "construct", function (self, args) { checkObject(args[1]); });
	// Strings.
	var SP = String.prototype;
	function len(s) { return String(s).length; }
	wrap(SP, Symbol.iterator, function (self) { if (len(self) > maxArray) tooLarge("string length", len(self)); });
	wrap(SP, "repeat", function (self, args) {
		var n = len(self) * Number(args[0]);
		if (n > maxString) tooLarge("string length", n);
	});
	function checkPad(self, args) { if (Number(args[0]) > maxString) tooLarge("string length", Number(args[0])); }
	wrap(SP, "padStart", checkPad);
	wrap(SP, "padEnd", checkPad);
	wrap(SP, "split", function (self, args) {
		if (args[0] === "" && len(self) > maxArray) tooLarge("string length", len(self));
	});
	function checkReplace(self, args) {
		var r = args[1];
		if (typeof r === "string" && r.length > 1 && len(self) * r.length > maxString) tooLarge("string length", len(self) * r.length);
	}
	wrap(SP, "replace", checkReplace);
	wrap(SP, "replaceAll", checkReplace);
	// JSON.stringify walks nested arrays in Go: count what it would visit
	// (repeated references included) before letting it. A structure nested
	// deeper than maxDepth is most likely circular.
	var stringify = JSON.stringify, maxDepth = 1000;
	defineProperty(JSON, "stringify", {writable: true, configurable: true, enumerable: false, value: function stringify_(v) {
		var todo = [v], depths = [0], n = 0;
		while (todo.length > 0) {
			var x = todo.pop(), d = depths.pop() + 1;
			if (x === null || typeof x !== "object") continue;
			if (d > maxDepth) throw new TypeError("JSON.stringify: value nested more than " + maxDepth + " levels deep (circular?)");
			var ks = isArray(x) ? null : keys(x), m = ks === null ? x.length : ks.length;
			n += m;
			if (n > maxArray) tooLarge("JSON of", n + " elements");
			for (var i = 0; i < m; i++) {
				todo.push(ks === null ? x[i] : x[ks[i]]);
				depths.push(d);
			}
		}
		return apply(stringify, JSON, arguments);
	}});
	// Buffers allocate their whole size at once; workflow scripts have no
	// use for them.
	["ArrayBuffer", "SharedArrayBuffer", "DataView", "Int8Array", "Uint8Array", "Uint8ClampedArray", "Int16Array",
		"Uint16Array", "Int32Array", "Uint32Array", "Float16Array", "Float32Array", "Float64Array", "BigInt64Array",
		"BigUint64Array"].forEach(function (k) { g[k] = undefined; });
	var nop = function () {};
	g.console = {log: nop, info: nop, warn: nop, error: nop, debug: nop, trace: nop};
	return JSON.stringify;
})`

var prelude = goja.MustCompile("prelude.js", preludeSrc, true)

// Limits on a script's or a query's source, checked before it is parsed:
// the parsers recurse once or more per level of nesting, and a source
// nested deep enough (400,000 parentheses) overflowed the Go stack, which
// kills the process before any budget applies.
const (
	maxSourceBytes   = 64 << 10
	maxSourceNesting = 256
)

// checkSource refuses a source longer than maxSourceBytes or whose
// brackets nest deeper than maxSourceNesting (counted in strings too: a
// conservative bound, which no real script comes near).
func checkSource(src string) error {
	if len(src) > maxSourceBytes {
		return fmt.Errorf("the script is %d bytes, over the limit of %d", len(src), maxSourceBytes)
	}
	depth := 0
	for i := 0; i < len(src); i++ {
		switch src[i] {
		case '(', '[', '{':
			if depth++; depth > maxSourceNesting {
				return fmt.Errorf("the script nests brackets more than %d deep", maxSourceNesting)
			}
		case ')', ']', '}':
			depth--
		}
	}
	return nil
}

// jsRun is one JavaScript evaluation in a fresh runtime.
type jsRun struct {
	vm *goja.Runtime
	// stringify (the guarded one) and parse are captured before user
	// code runs, which may replace them.
	stringify, parse goja.Callable
}

// runJS evaluates src as a script, with `$` bound to scope (a JSON-like
// map, copied into the runtime as native JavaScript values). finish turns
// the script's completion value into the run's result; it runs under the
// same budget (converting a value may run user code, toJSON methods).
// Errors name what went wrong: the JavaScript error, a syntax error, or
// the budget exceeded.
func runJS(ctx context.Context, b Budget, src string, scope map[string]any,
	finish func(r *jsRun, v goja.Value) (any, error)) (result any, err error) {
	b = b.withDefaults()
	if err := checkSource(src); err != nil {
		return nil, err
	}
	prog, err := goja.Compile("script", src, false)
	if err != nil {
		return nil, fmt.Errorf("%s", compileMessage(err))
	}
	release, err := acquireSlot(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	vm := goja.New()
	vm.SetMaxCallStackSize(b.MaxCallStack)
	stopWatch := watch(ctx, b, func(reason error) { vm.Interrupt(reason) })
	defer func() {
		if p := recover(); p != nil {
			result, err = nil, fmt.Errorf("script aborted: %v", p)
		}
		if reason := stopWatch(); reason != nil {
			result, err = nil, budgetError(b, reason)
		}
	}()
	r := &jsRun{vm: vm}
	if err := r.setup(b, scope); err != nil {
		return nil, err
	}
	v, err := vm.RunProgram(prog)
	if err != nil {
		return nil, jsError(err)
	}
	return finish(r, v)
}

func (r *jsRun) setup(b Budget, scope map[string]any) error {
	r.parse, _ = goja.AssertFunction(r.vm.Get("JSON").ToObject(r.vm).Get("parse"))
	f, err := r.vm.RunProgram(prelude)
	if err != nil {
		return fmt.Errorf("script prelude: %w", err)
	}
	init, _ := goja.AssertFunction(f)
	maxArray, maxString := scriptLimits(b)
	sv, err := init(goja.Undefined(), r.vm.ToValue(maxArray), r.vm.ToValue(maxString))
	if err != nil {
		return fmt.Errorf("script prelude: %w", err)
	}
	r.stringify, _ = goja.AssertFunction(sv)
	var lazy map[string]lazyJSON
	for k, v := range scope {
		if l, ok := v.(lazyJSON); ok {
			if lazy == nil {
				lazy, scope = map[string]lazyJSON{}, maps.Clone(scope)
			}
			lazy[k] = l
			scope[k] = nil // holds the member's place in $'s order
		}
	}
	dollar, err := r.fromJSON(scope)
	if err != nil {
		return fmt.Errorf("script input: %w", err)
	}
	for k, l := range lazy {
		if err := dollar.ToObject(r.vm).Set(k, r.vm.NewDynamicObject(newLazyObject(r, l))); err != nil {
			return fmt.Errorf("script input: %w", err)
		}
	}
	return r.vm.Set("$", dollar)
}

// toJSON converts a JavaScript value to a JSON value as JSON.stringify
// sees it: integral numbers become int64, other numbers float64, NaN and
// infinities null, dates strings, functions and undefined nil.
func (r *jsRun) toJSON(v goja.Value) (any, error) {
	if v == nil || goja.IsUndefined(v) {
		return nil, nil
	}
	s, err := r.stringify(goja.Undefined(), v)
	if err != nil {
		return nil, jsError(err)
	}
	if goja.IsUndefined(s) {
		return nil, nil
	}
	str := s.String()
	if len(str) > maxOutputBytes {
		return nil, fmt.Errorf("script result of %d bytes exceeds the limit of %d", len(str), maxOutputBytes)
	}
	var out any
	if err := conductor.Unmarshal([]byte(str), &out); err != nil {
		return nil, fmt.Errorf("script result: %w", err)
	}
	return integral(out), nil
}

// integral turns float64 values without a fractional part into int64
// (JavaScript has only doubles: 2**40 is an integer to the user).
func integral(v any) any {
	switch x := v.(type) {
	case float64:
		if x == float64(int64(x)) && x >= -(1<<63) && x < 1<<63 {
			return int64(x)
		}
	case map[string]any:
		for k, e := range x {
			x[k] = integral(e)
		}
	case []any:
		for i, e := range x {
			x[i] = integral(e)
		}
	}
	return v
}

// jsError words a goja error for a task's reasonForIncompletion.
func jsError(err error) error {
	var so *goja.StackOverflowError
	var ie *goja.InterruptedError
	var ex *goja.Exception
	switch {
	case errors.As(err, &so):
		return errors.New("RangeError: maximum call stack size exceeded")
	case errors.As(err, &ie):
		if e, ok := ie.Value().(error); ok {
			return e
		}
		return fmt.Errorf("script interrupted: %v", ie.Value())
	case errors.As(err, &ex):
		return errors.New(ex.Error())
	}
	return err
}

func compileMessage(err error) string {
	var se *goja.CompilerSyntaxError
	if errors.As(err, &se) {
		return "SyntaxError: " + se.Error()
	}
	return err.Error()
}
