package system

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"math/big"
	"regexp"
	"regexp/syntax"
	"slices"
	"strings"
	"time"

	"github.com/dlclark/regexp2/v2"
	rxsyntax "github.com/dlclark/regexp2/v2/syntax"
	"github.com/dop251/goja"
	"github.com/dop251/goja/ast"
	"github.com/dop251/goja/token"

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
// Reflect.construct, array and string iteration (spread), split, match,
// replace, the keys of a string, JSON.parse and JSON.stringify, and the
// string methods that build large strings refuse inputs or results past
// limits derived from the memory budget; typed arrays and ArrayBuffer,
// which allocate their whole size at once, are removed.
//
// The Go stack is the other resource a script could exhaust, and running
// out of it kills the process (fatal error: stack overflow), not the run.
// goja recurses in Go where it parses and compiles (the source limits,
// see maxSourceBytes, apply to scripts, eval, Function and regular
// expressions), where a built-in walks nested data (flat, JSON.parse and
// its reviver, JSON.stringify: rewritten or bounded to maxValueDepth; a
// Proxy: removed), and where a built-in calls a method of its this that
// leads back to it (e.message = e; String(e)): goja counts JavaScript
// frames against the call stack limit, so the prelude puts those built-ins
// behind JavaScript frames.
//
// Regular expressions that need backtracking (regexp2) time out on their
// own (regexpTimeout). Complete isolation of hostile code would need a
// separate process; these guards stop runaway and careless scripts, which
// is what a workflow engine meets.

// maxOutputBytes bounds the JSON of a script's result.
const maxOutputBytes = 4 << 20

// regexpTimeout bounds one match of a backtracking regular expression.
// goja reads a match that timed out as no match, which would send a SWITCH
// down the wrong case without a word: the bound is past the script's time
// budget, whose watch has then already failed the script, naming the
// budget.
const regexpTimeout = DefaultScriptTime + time.Second

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

// maxValueDepth bounds how deep the values a built-in walks may nest
// (JSON.stringify, JSON.parse, Array.prototype.flat; a jq query's results):
// deeper is most likely circular, and Go code walking it recursively
// would need that much stack.
const maxValueDepth = 1000

// preludeSrc runs before a script, in its runtime: it guards built-ins (see
// the comment at the top of this file) and returns the guarded
// JSON.stringify. host holds the checks done in Go (checkSource,
// checkPattern and checkJSON return what is wrong with a source, a regular
// expression or a JSON text, or ""), maxSourceBytes, and whether the
// script makes generator or async functions.
const preludeSrc = `(function (maxArray, maxString, maxDepth, host) {
	"use strict";
	var g = globalThis;
	var apply = Reflect.apply, construct = Reflect.construct, defineProperty = Object.defineProperty,
		getDescriptor = Object.getOwnPropertyDescriptor, getDescriptors = Object.getOwnPropertyDescriptors,
		defineProperties = Object.defineProperties, getProto = Object.getPrototypeOf,
		setProto = Object.setPrototypeOf, create = Object.create, keys = Object.keys, ownKeys = Reflect.ownKeys,
		defineOwn = Reflect.defineProperty, deleteOwn = Reflect.deleteProperty, isArray = Array.isArray,
		objectToString = Object.prototype.toString, fnToString = Function.prototype.toString,
		nativeBind = Function.prototype.bind, stringValueOf = String.prototype.valueOf,
		endsWith = String.prototype.endsWith, indexOf = String.prototype.indexOf, floor = Math.floor,
		Object_ = Object, Array_ = Array, String_ = String, Number_ = Number, RangeError_ = RangeError,
		TypeError_ = TypeError, SyntaxError_ = SyntaxError, stringify = JSON.stringify, parse = JSON.parse, symSpecies = Symbol.species,
		symIterator = Symbol.iterator, symMatch = Symbol.match, symMatchAll = Symbol.matchAll,
		symSearch = Symbol.search, symSplit = Symbol.split, symReplace = Symbol.replace,
		symSpreadable = Symbol.isConcatSpreadable;
	var AP = Array.prototype, SP = String.prototype, RP = RegExp.prototype, FP = Function.prototype;
	// maxArray counts elements of 16 bytes. A string made by a built-in
	// (split, match, a key) costs ~40 bytes, an object (an entry, a
	// descriptor) ~600.
	var maxStrings = floor(maxArray / 4), maxObjects = floor(maxArray / 64);

	function tooLarge(what, n) {
		throw new RangeError_(what + " " + n + " exceeds the script memory budget");
	}
	function tooDeep(what) {
		throw new RangeError_(what + " nested more than " + maxDepth + " levels deep (circular?)");
	}
	// refuse throws what a host check reports ("" is fine).
	function refuse(msg) {
		if (msg !== "") throw new RangeError_(msg);
	}
	// The guards keep their state in arrays and objects without prototypes:
	// a script's setters on Array.prototype or Object.prototype cannot see
	// or change it.
	function stack() {
		var s = [];
		setProto(s, null);
		return s;
	}
	function isObject(o) {
		return o !== null && (typeof o === "object" || typeof o === "function");
	}
	function toIntegerOrInfinity(x) {
		var n = +x;
		return n !== n ? 0 : n === Infinity || n === -Infinity ? n : n < 0 ? -floor(-n) : floor(n);
	}
	function toLength(x) {
		var n = toIntegerOrInfinity(x);
		return n <= 0 ? 0 : n < 9007199254740991 ? n : 9007199254740991;
	}
	// stringLength is the length of a string or String object, 0 for
	// anything else.
	function stringLength(o) {
		if (typeof o === "string") return o.length;
		if (typeof o !== "object" || o === null || apply(objectToString, o, []) !== "[object String]") return 0;
		try {
			return apply(stringValueOf, o, []).length;
		} catch (e) {
			return 0; // a toStringTag pretending
		}
	}
	function checkObject(o) {
		if (isObject(o)) {
			var n = o.length;
			if (typeof n === "number" && n > maxArray) tooLarge("array length", n);
		}
	}
	function checkThisAndArgs(self, args) {
		checkObject(self);
		if (typeof self === "string" && self.length > maxStrings) tooLarge("string length", self.length);
		for (var i = 0; i < args.length; i++) checkObject(args[i]);
	}

	// frame returns a JavaScript function that runs check, if any, and calls
	// f. Goja counts JavaScript frames against the call stack limit, not
	// calls from one built-in to another: a built-in that calls a method of
	// its this (Error.prototype.toString reads this.message, converting it
	// to a string calls its toString...) installed on an object that leads
	// back to it (e.message = e) recursed in Go until the process died.
	// Every built-in that calls methods of an object it does not check the
	// type of is reached through a frame; bind (below) makes sure a bound
	// function does not get around it.
	function frame(f, check) {
		return function () {
			if (check !== undefined) check(this, arguments);
			return new.target ? construct(f, arguments, new.target) : apply(f, this, arguments);
		};
	}
	// guard replaces obj[key], a method or an accessor, by frames, keeping
	// its attributes.
	function guard(obj, key, check) {
		try {
			var v = obj[key];
			if (typeof v === "function") {
				obj[key] = frame(v, check); // a writable method: keeps its attributes
				return;
			}
		} catch (e) {
			// a getter that throws for the prototype itself, a read-only method
		}
		var d = getDescriptor(obj, key);
		if (d === undefined || !d.configurable && !d.writable) return; // Function.prototype[Symbol.hasInstance]
		if (typeof d.value === "function") {
			d.value = frame(d.value, check);
		} else {
			if (d.get === undefined && d.set === undefined) return;
			if (d.get !== undefined) d.get = frame(d.get);
			if (d.set !== undefined) d.set = frame(d.set);
		}
		defineProperty(obj, key, d);
	}
	// guardAll guards every method and accessor of obj but its constructor
	// and those in except, with the check in checks under its key, or check.
	function guardAll(obj, check, checks, except) {
		var ks = ownKeys(obj);
		for (var i = 0; i < ks.length; i++) {
			var k = ks[i];
			if (k !== "constructor" && !(except !== undefined && k in except)) guard(obj, k, checks !== undefined && k in checks ? checks[k] : check);
		}
	}
	// replace sets obj[key] to f, keeping the attributes.
	function replace(obj, key, f) {
		var d = getDescriptor(obj, key);
		d.value = f;
		defineProperty(obj, key, d);
	}
	// replaceConstructor makes f stand for the constructor c: its prototype,
	// static members and the prototype's constructor.
	function replaceConstructor(c, f) {
		var ds = getDescriptors(c);
		delete ds.prototype;
		defineProperties(f, ds);
		f.prototype = c.prototype;
		replace(c.prototype, "constructor", f);
	}

	// Arrays. Built-ins loop in Go over an array's length, or a string's:
	// new Array(1e9).join() allocates gigabytes in one step.
	function spreadLength(o) {
		if (!isObject(o)) return 1;
		var s = o[symSpreadable];
		return (s === undefined ? isArray(o) : s) ? toLength(o.length) : 1;
	}
	var arrayChecks = create(null);
	arrayChecks.concat = function (self, args) {
		checkThisAndArgs(self, args);
		var n = spreadLength(self);
		for (var i = 0; i < args.length; i++) n += spreadLength(args[i]);
		if (n > maxArray) tooLarge("array length", n);
	};
	// join copies its string elements: 1000 references to one long string
	// make a result 1000 times as long.
	arrayChecks.join = function (self, args) {
		checkThisAndArgs(self, args);
		var sep = args[0] === undefined ? 1 : (args[0] = String_(args[0])).length;
		var len = toLength(self.length), n = len > 0 ? (len - 1) * sep : 0;
		for (var i = 0; i < len && n <= maxString; i++) {
			var e = self[i];
			if (typeof e === "string") n += e.length;
		}
		if (n > maxString) tooLarge("string length", n);
	};
	guardAll(AP, checkThisAndArgs, arrayChecks);
	guard(Array, "from", function (self, args) { checkObject(args[0]); });
	guard(Array, "of", function (self, args) { checkObject(args); });
	guard(Reflect, "apply", function (self, args) { checkObject(args[2]); });
	guard(Reflect, "construct", function (self, args) { checkObject(args[1]); });
	// flat, in JavaScript: goja's recursed in Go, without end on an array
	// that holds itself (a[0] = a; a.flat(Infinity)). This one keeps its
	// own stack, refuses to go deeper than maxDepth and to make more than
	// maxArray elements, and can be interrupted.
	function speciesCreate(o) {
		if (!isArray(o)) return [];
		var c = o.constructor;
		if (isObject(c)) {
			c = c[symSpecies];
			if (c === null) c = undefined;
		}
		return c === undefined || c === Array_ ? [] : construct(c, [0]);
	}
	replace(AP, "flat", function flat() {
		if (this === undefined || this === null) throw new TypeError_("Array.prototype.flat called on null or undefined");
		checkThisAndArgs(this, arguments);
		var o = Object_(this);
		var depth = arguments[0] === undefined ? 1 : toIntegerOrInfinity(arguments[0]);
		var a = speciesCreate(o), plain = isArray(a) && getProto(a) === AP;
		// A plain array without its prototype takes elements as
		// CreateDataProperty would, whatever setters Array.prototype has.
		if (plain) setProto(a, null);
		try {
			var sources = stack(), lengths = stack(), next = stack(), depths = stack(), n = 0;
			sources[0] = o, lengths[0] = toLength(o.length), next[0] = 0, depths[0] = depth;
			while (sources.length > 0) {
				var top = sources.length - 1, i = next[top];
				if (i >= lengths[top]) {
					sources.length = lengths.length = next.length = depths.length = top;
					continue;
				}
				next[top] = i + 1;
				var src = sources[top];
				if (!(i in src)) continue;
				var e = src[i];
				if (depths[top] > 0 && isArray(e)) {
					if (sources.length >= maxDepth) tooDeep("Array.prototype.flat: array");
					sources[top + 1] = e, lengths[top + 1] = toLength(e.length), next[top + 1] = 0, depths[top + 1] = depths[top] - 1;
					continue;
				}
				if (n >= maxArray) tooLarge("array length", n + 1);
				if (plain) {
					a[n] = e;
				} else if (!defineOwn(a, n, {__proto__: null, value: e, writable: true, enumerable: true, configurable: true})) {
					throw new TypeError_("Array.prototype.flat: cannot define element " + n);
				}
				n++;
			}
		} finally {
			if (plain) setProto(a, AP);
		}
		return a;
	});

	// Strings.
	function checkPattern(self, args, sym) {
		// A pattern that is not a regular expression is compiled as one.
		var p = args[0];
		if (p === undefined || p === null) return;
		var m = p[sym];
		if (m !== undefined && m !== null) return;
		args[0] = String_(p);
		refuse(host.checkPattern(args[0]));
	}
	// compiling is f, a built-in that compiles a pattern (or source, which
	// may hold a regular expression literal) the script gives, throwing
	// goja's SyntaxError for a pattern it cannot compile in the words of
	// host.regexpError (see regexpError).
	function compiling(f) {
		return function () {
			try {
				return new.target ? construct(f, arguments, new.target) : apply(f, this, arguments);
			} catch (e) {
				if (isObject(e) && getProto(e) === SyntaxError_.prototype) {
					var m = e.message, r;
					if (typeof m === "string" && (r = host.regexpError(m)) !== m) throw new SyntaxError_(r);
				}
				throw e;
			}
		};
	}
	// checkReplace: each match may be replaced by a long replacement.
	function checkReplace(subject, args) {
		var r = args[1];
		if (typeof r !== "string" || r.length < 2) return;
		var n = String_(subject).length * r.length;
		if (n > maxString) tooLarge("string length", n);
	}
	function checkPad(self, args) {
		if (Number_(args[0]) > maxString) tooLarge("string length", Number_(args[0]));
	}
	var stringChecks = create(null);
	stringChecks[symIterator] = function (self) {
		if (String_(self).length > maxStrings) tooLarge("string length", String_(self).length);
	};
	stringChecks.repeat = function (self, args) {
		var n = String_(self).length * Number_(args[0]);
		if (n > maxString) tooLarge("string length", n);
	};
	stringChecks.padStart = stringChecks.padEnd = checkPad;
	stringChecks.replace = stringChecks.replaceAll = checkReplace;
	stringChecks.concat = function (self, args) {
		var n = String_(self).length;
		for (var i = 0; i < args.length; i++) n += (args[i] = String_(args[i])).length;
		if (n > maxString) tooLarge("string length", n);
	};
	stringChecks.match = function (self, args) { checkPattern(self, args, symMatch); };
	stringChecks.matchAll = function (self, args) { checkPattern(self, args, symMatchAll); };
	stringChecks.search = function (self, args) { checkPattern(self, args, symSearch); };
	// split with a limit stops once it has that many parts: asking for one
	// more than maxStrings bounds what it allocates, without refusing a
	// long string that splits into few parts.
	function splitWithin(nativeSplit, regexp) {
		return function split(separator, limit) {
			var lim = limit === undefined ? 4294967295 : limit >>> 0;
			if (lim <= maxStrings) return apply(nativeSplit, this, [separator, lim]);
			// goja finds every match of a regular expression before it
			// applies the limit.
			if (regexp && (separator = String_(separator)).length > maxStrings) tooLarge("split of a string of length", separator.length);
			var parts = apply(nativeSplit, this, [separator, maxStrings + 1]);
			if (parts.length > maxStrings) tooLarge("split into more than", maxStrings + " parts");
			return parts;
		};
	}
	var nativeStringSplit = SP.split;
	guardAll(SP, undefined, stringChecks);
	replace(SP, "split", splitWithin(nativeStringSplit));
	["match", "matchAll", "search"].forEach(function (k) { replace(SP, k, compiling(SP[k])); });

	// Regular expressions.
	var nativeRegExpSplit = RP[symSplit], sourceOf = getDescriptor(RP, "source").get;
	function originalSource(o) {
		try {
			return apply(sourceOf, o, []);
		} catch (e) {
			return undefined; // not a regular expression
		}
	}
	var regexpChecks = create(null);
	regexpChecks[symMatch] = function (self, args) {
		var s = args[0] = String_(args[0]);
		if (s.length > maxStrings && apply(indexOf, String_(self.flags), ["g"]) >= 0) tooLarge("string length", s.length);
	};
	// A global replace finds every match before it replaces any.
	regexpChecks[symReplace] = function (self, args) {
		var s = args[0] = String_(args[0]);
		if (s.length > maxStrings && apply(indexOf, String_(self.flags), ["g"]) >= 0) tooLarge("string length", s.length);
		checkReplace(s, args);
	};
	regexpChecks.compile = function (self, args) {
		var p = args[0];
		if (isObject(p) && originalSource(p) !== undefined) return;
		if (p !== undefined) refuse(host.checkPattern(args[0] = String_(p)));
	};
	// Redefining exec or a flag getter would turn off goja's fast paths
	// for every regular expression (checkStdRegexp); they check the type of
	// their this, and, as getters, get a trampoline (below).
	guardAll(RP, undefined, regexpChecks, {__proto__: null, exec: 1, global: 1, multiline: 1, ignoreCase: 1, unicode: 1, sticky: 1});
	replace(RP, symSplit, splitWithin(nativeRegExpSplit, true));
	replace(RP, "compile", compiling(RP.compile));
	var NativeRegExp = RegExp, newRegExp = compiling(NativeRegExp);
	var RegExp_ = function RegExp(pattern, flags) {
		if (isObject(pattern) && originalSource(pattern) !== undefined) {
			// compiled already
		} else if (isObject(pattern) && pattern[symMatch]) {
			if (flags === undefined) flags = pattern.flags;
			refuse(host.checkPattern(pattern = String_(pattern.source)));
		} else if (pattern !== undefined) {
			refuse(host.checkPattern(pattern = String_(pattern)));
		}
		return new.target ? construct(newRegExp, [pattern, flags], new.target) : newRegExp(pattern, flags);
	};
	replaceConstructor(NativeRegExp, RegExp_);
	g.RegExp = RegExp_;

	// The methods of the other prototypes that use their this, or call what
	// they are given with a this and arguments the script chooses (forEach),
	// and Number's, whose TypeError converts their this to a string by
	// calling its toString. The other built-ins check the type of their this
	// and only read its Symbol.toStringTag for their TypeError: a getter
	// that is the method itself led back to it, and getters get a
	// trampoline (below).
	["toString", "toLocaleString", "valueOf", "__proto__"].forEach(function (k) { guard(Object.prototype, k); });
	["then", "catch", "finally"].forEach(function (k) { guard(Promise.prototype, k); });
	// goja's toLocaleString is toString, which reads a locale as a radix:
	// (1234.5).toLocaleString('en-US') threw a RangeError. Scripts have no
	// Intl, and ECMA-262 has an implementation without it ignore the
	// locale and options, as goja's Date and String toLocale… methods do.
	var numberToString = Number.prototype.toString;
	replace(Number.prototype, "toLocaleString", function toLocaleString() { return apply(numberToString, this, []); });
	guardAll(Number.prototype);
	guard(Error.prototype, "toString");
	guard(Date.prototype, "toJSON");
	guard(Date.prototype, Symbol.toPrimitive);
	guard(Map.prototype, "forEach");
	guard(Set.prototype, "forEach");
	// Spreading matchAll's matches runs in Go: a frame per match lets the
	// watch interrupt it.
	guard(getProto("".matchAll(/(?:)/g)), "next");
	guard(FP, "call");
	guard(FP, "apply", function (self, args) { checkObject(args[1]); });
	// A function bound by the built-in bind calls its target from Go: bind
	// a built-in through a JavaScript trampoline instead.
	function isBuiltIn(f) {
		return apply(endsWith, apply(fnToString, f, []), ["{ [native code] }"]);
	}
	function trampoline(f) {
		var t = function () {
			if (new.target === undefined) return apply(f, this, arguments);
			return construct(f, arguments, new.target === t ? f : new.target);
		};
		defineProperty(t, "name", {__proto__: null, value: f.name, configurable: true});
		defineProperty(t, "length", {__proto__: null, value: f.length, configurable: true});
		return t;
	}
	replace(FP, "bind", function bind() {
		var target = typeof this === "function" && isBuiltIn(this) ? trampoline(this) : this;
		return apply(nativeBind, target, arguments);
	});
	// A built-in made a getter or a setter runs with its this the object
	// the script chose, called from Go: define it through a trampoline.
	function accessor(f) {
		return typeof f === "function" && isBuiltIn(f) ? trampoline(f) : f;
	}
	function descriptor(d) {
		if (!isObject(d)) return d;
		var c = {__proto__: null};
		["value", "writable", "enumerable", "configurable"].forEach(function (k) { if (k in d) c[k] = d[k]; });
		if ("get" in d) c.get = accessor(d.get);
		if ("set" in d) c.set = accessor(d.set);
		return c;
	}
	function descriptors(ds) {
		if (!isObject(ds)) return ds;
		var c = {__proto__: null}, ks = ownKeys(ds);
		for (var i = 0; i < ks.length; i++) {
			var d = getDescriptor(ds, ks[i]);
			if (d !== undefined && d.enumerable) c[ks[i]] = descriptor(ds[ks[i]]);
		}
		return c;
	}
	guard(Object, "defineProperty", function (self, args) { args[2] = descriptor(args[2]); });
	guard(Reflect, "defineProperty", function (self, args) { args[2] = descriptor(args[2]); });
	guard(Object, "defineProperties", function (self, args) { args[1] = descriptors(args[1]); });
	guard(Object, "create", function (self, args) { if (args[1] !== undefined) args[1] = descriptors(args[1]); });
	guard(Object.prototype, "__defineGetter__", function (self, args) { args[1] = accessor(args[1]); });
	guard(Object.prototype, "__defineSetter__", function (self, args) { args[1] = accessor(args[1]); });

	// Objects: a string has a property per character.
	function checkStringKeys(limit) {
		return function (self, args) {
			var n = stringLength(args[0]);
			if (n > limit) tooLarge("string length", n);
		};
	}
	guard(Object, "keys", checkStringKeys(maxStrings));
	guard(Object, "values", checkStringKeys(maxStrings));
	guard(Object, "getOwnPropertyNames", checkStringKeys(maxStrings));
	guard(Reflect, "ownKeys", checkStringKeys(maxStrings));
	guard(Object, "entries", checkStringKeys(maxObjects));
	guard(Object, "getOwnPropertyDescriptors", checkStringKeys(maxObjects));
	guard(Object, "assign", function (self, args) {
		var n = 0;
		for (var i = 1; i < args.length; i++) n += stringLength(args[i]);
		if (n > maxObjects) tooLarge("string length", n);
	});

	// Compiling: eval and the Function constructors parse and compile
	// source, which goes through the same limits as a script's. A script's
	// eval is indirect (runs in the global scope).
	function checkSource(src) {
		guardGenerators(); // the source may make generator or async functions
		if (src.length > host.maxSource) refuse("source of " + src.length + " characters is over the limit of " + host.maxSource + " bytes");
		refuse(host.checkSource(src));
	}
	var nativeEval = g.eval, evalCompiling = compiling(nativeEval);
	replace(g, "eval", function (x) {
		if (typeof x === "string") checkSource(x);
		return evalCompiling(x);
	});
	defineProperty(g.eval, "name", {__proto__: null, value: "eval", configurable: true});
	function compiler(c, prefix) {
		var compile = compiling(c);
		var f = function () {
			var n = arguments.length, args = stack(), size = prefix.length;
			for (var i = 0; i < n; i++) size += (args[i] = String_(arguments[i])).length + 1;
			if (size > host.maxSource) refuse("function source of " + size + " characters is over the limit of " + host.maxSource + " bytes");
			var params = "";
			for (var j = 0; j + 1 < n; j++) params += (j > 0 ? "," : "") + args[j];
			checkSource(prefix + params + "\n) {\n" + (n > 0 ? args[n - 1] : "") + "\n})");
			return construct(compile, args, new.target === undefined ? c : new.target);
		};
		replaceConstructor(c, f);
		return f;
	}
	g.Function = compiler(Function, "(function anonymous(");
	// Only a generator or an async function leads to their constructors,
	// which goja builds when first asked for: guarded when the script makes
	// one, or compiles source that might.
	var generatorsGuarded = false;
	function guardGenerators() {
		if (generatorsGuarded) return;
		generatorsGuarded = true;
		compiler(getProto(function* () {}).constructor, "(function* anonymous(");
		compiler(getProto(async function () {}).constructor, "(async function anonymous(");
	}
	if (host.generators) guardGenerators();

	// JSON.stringify walks values in Go, calling toJSON methods and the
	// replacer: it is given a replacer that counts what it walks (1000
	// references to one long string included), and how deep. Deeper than
	// maxDepth is most likely circular.
	function propertyList(r) {
		var list = stack(), seen = create(null), len = toLength(r.length);
		if (len > maxArray) tooLarge("array length", len);
		for (var i = 0; i < len; i++) {
			var v = r[i], item;
			if (typeof v === "string") {
				item = v;
			} else if (typeof v === "number" || stringLength(v) > 0 || (typeof v === "object" && v !== null && apply(objectToString, v, []) === "[object Number]")) {
				item = String_(v);
			} else {
				continue;
			}
			if (!(item in seen)) seen[item] = true, list[list.length] = item;
		}
		return list;
	}
	function pick(v, list) {
		var o = create(null);
		for (var i = 0; i < list.length; i++) o[list[i]] = v[list[i]];
		return o;
	}
	defineProperty(JSON, "stringify", {__proto__: null, writable: true, configurable: true, enumerable: false, value: function stringify_(value, replacer, space) {
		var fn = typeof replacer === "function" ? replacer : undefined;
		var list = fn === undefined && isArray(replacer) ? propertyList(replacer) : undefined;
		var path = stack(), n = 0, chars = 0, indent = space === undefined || space === null ? 0 : 10;
		function visit(key, v) {
			if (fn !== undefined) v = apply(fn, this, [key, v]);
			while (path.length > 0 && path[path.length - 1] !== this) path.length--;
			if (!isArray(this)) n++;
			chars += key.length + indent * path.length;
			if (typeof v === "string") {
				chars += v.length;
			} else if (typeof v === "object" && v !== null) {
				if (path.length >= maxDepth) tooDeep("JSON.stringify: value");
				if (isArray(v)) n += toLength(v.length);
				else if (list !== undefined) v = pick(v, list);
				path[path.length] = v;
			}
			if (n > maxArray) tooLarge("JSON of", n + " elements");
			if (chars > maxString) tooLarge("JSON of", chars + " characters");
			return v;
		}
		return apply(stringify, JSON, [value, visit, space]);
	}});
	// JSON.parse builds values in Go, recursing on nested arrays: long text
	// is measured first (text up to 2×maxDepth characters cannot nest
	// deeper or hold more values). The reviver is walked here, with its own
	// stack: goja's walked in Go, without end if the reviver made a value
	// hold itself.
	function revive(value, reviver) {
		var root = {};
		defineOwn(root, "", {__proto__: null, value: value, writable: true, enumerable: true, configurable: true});
		var frames = stack();
		frames[0] = {__proto__: null, holder: root, name: "", val: undefined, names: undefined, len: 0, next: -1};
		for (;;) {
			var f = frames[frames.length - 1];
			if (f.next < 0) {
				f.val = f.holder[f.name], f.next = 0;
				if (isObject(f.val)) {
					if (isArray(f.val)) f.len = toLength(f.val.length);
					else f.names = keys(f.val), f.len = f.names.length;
				}
			}
			if (f.next < f.len) {
				var name = f.names === undefined ? String_(f.next) : f.names[f.next];
				f.next++;
				if (frames.length >= maxDepth) tooDeep("JSON.parse: value");
				frames[frames.length] = {__proto__: null, holder: f.val, name: name, val: undefined, names: undefined, len: 0, next: -1};
				continue;
			}
			var v = apply(reviver, f.holder, [f.name, f.val]);
			frames.length--;
			if (frames.length === 0) return v;
			if (v === undefined) deleteOwn(f.holder, f.name);
			else defineOwn(f.holder, f.name, {__proto__: null, value: v, writable: true, enumerable: true, configurable: true});
		}
	}
	defineProperty(JSON, "parse", {__proto__: null, writable: true, configurable: true, enumerable: false, value: function parse_(text, reviver) {
		var s = String_(text);
		if (s.length > 2 * maxDepth) refuse(host.checkJSON(s));
		var v;
		try {
			v = apply(parse, JSON, [s]);
		} catch (e) {
			// In the words of host.jsonError (see jsonError).
			if (isObject(e) && getProto(e) === SyntaxError_.prototype && typeof e.message === "string") throw new SyntaxError_(host.jsonError(e.message));
			throw e;
		}
		return typeof reviver === "function" ? revive(v, reviver) : v;
	}});

	// A loop in Go that iterates (a spread, Array.from, new Map(...))
	// until the iterator is done never ends, and cannot be interrupted, if
	// the iterator's next is a built-in that returns a fresh object or its
	// this: those go behind frames too (the others throw, or are framed
	// already).
	[Array, Map, Set, RegExp_, Promise].forEach(function (c) { guard(c, symSpecies); }); // returns its this
	[Object, Array, Error, EvalError, RangeError, ReferenceError, SyntaxError, TypeError, URIError, AggregateError, GoError].forEach(function (c) {
		var f = frame(c);
		replaceConstructor(c, f);
		g[c.name] = f;
		var proto = getProto(c);
		if (proto !== FP) setProto(f, g[proto.name]); // TypeError extends Error
	});
	guard(getProto(getProto([][symIterator]())), symIterator);

	// Buffers allocate their whole size at once; workflow scripts have no
	// use for them. A Proxy forwards to its target in Go, without end when
	// the target's prototype is the proxy. BigInt arithmetic runs in Go
	// without interruption (2n ** 10n ** 10n): without the constructor,
	// and with literals refused (parseJS), a script has no BigInt.
	["ArrayBuffer", "SharedArrayBuffer", "DataView", "Int8Array", "Uint8Array", "Uint8ClampedArray", "Int16Array",
		"Uint16Array", "Int32Array", "Uint32Array", "Float16Array", "Float32Array", "Float64Array", "BigInt64Array",
		"BigUint64Array", "Proxy", "BigInt"].forEach(function (k) { g[k] = undefined; });
	var nop = function () {};
	g.console = {log: nop, info: nop, warn: nop, error: nop, debug: nop, trace: nop};
	return JSON.stringify;
})`

var prelude = goja.MustCompile("prelude.js", preludeSrc, true)

// jsRun is one JavaScript evaluation in a fresh runtime.
type jsRun struct {
	vm *goja.Runtime
	// stringify (the guarded one, but in a plain script) and parse (the
	// runtime's own) are captured before user code runs, which may
	// replace them.
	stringify, parse goja.Callable
	// lazy are the objects bound for $'s lazyJSON members, by name: what
	// the script did to them, whatever $ holds by then.
	lazy map[string]*lazyObject
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
	prog, traits, err := compileJS(src)
	if err != nil {
		return nil, err
	}
	release, err := acquireSlot(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	run := scriptHeap.begin(uint64(b.Memory))
	defer scriptHeap.end(run) // once the runtime is dropped
	return runProgram(ctx, b, run, prog, traits, scope, finish)
}

// runProgram runs prog in a fresh runtime (see runJS). A plain script
// runs without the prelude, which costs about a millisecond and most of
// a run's allocations: every guard it installs is on a built-in reached
// by a call, a constructor, an iteration or an assignment, and a plain
// script makes none of those (plainNode). It reads $, whose values are
// JSON data, and computes with operators: the conversions those make
// (an array's toString) walk no more than the data, and the time and
// memory budgets hold as for every script.
func runProgram(ctx context.Context, b Budget, run *memRun, prog *goja.Program, traits scriptTraits, scope map[string]any,
	finish func(r *jsRun, v goja.Value) (any, error)) (result any, err error) {
	vm := goja.New()
	vm.SetMaxCallStackSize(b.MaxCallStack)
	stopWatch := watch(ctx, b, run, func(reason error) { vm.Interrupt(reason) })
	defer func() {
		if p := recover(); p != nil {
			result, err = nil, fmt.Errorf("script aborted: %v", p)
		}
		if reason := stopWatch(); reason != nil {
			result, err = nil, budgetError(b, reason)
		}
	}()
	json := vm.Get("JSON").ToObject(vm)
	r := &jsRun{vm: vm}
	r.parse, _ = goja.AssertFunction(json.Get("parse"))
	r.stringify, _ = goja.AssertFunction(json.Get("stringify"))
	if traits.plain {
		err = r.bind(scope)
	} else {
		err = r.setup(b, traits.generators, scope)
	}
	if err != nil {
		return nil, err
	}
	v, err := vm.RunProgram(prog)
	if err != nil {
		return nil, jsError(err)
	}
	return finish(r, v)
}

// setup runs the prelude, which guards the built-ins and replaces
// stringify by the guarded one, then binds $.
func (r *jsRun) setup(b Budget, generators bool, scope map[string]any) error {
	f, err := r.vm.RunProgram(prelude)
	if err != nil {
		return fmt.Errorf("script prelude: %w", err)
	}
	init, _ := goja.AssertFunction(f)
	maxArray, maxString := scriptLimits(b)
	host := r.vm.NewObject()
	for k, v := range map[string]any{
		"maxSource":    maxSourceBytes,
		"generators":   generators,
		"checkSource":  func(src string) string { return sourceLimit(src) },
		"checkPattern": func(src string) string { return patternLimit(src) },
		"regexpError":  func(msg string) string { return regexpError(msg) },
		"checkJSON":    func(text string) string { return jsonLimit(text, maxArray) },
		"jsonError":    func(msg string) string { return jsonError(msg) },
	} {
		if err := host.Set(k, v); err != nil {
			return fmt.Errorf("script prelude: %w", err)
		}
	}
	sv, err := init(goja.Undefined(), r.vm.ToValue(maxArray), r.vm.ToValue(maxString), r.vm.ToValue(maxValueDepth), host)
	if err != nil {
		return fmt.Errorf("script prelude: %w", err)
	}
	r.stringify, _ = goja.AssertFunction(sv)
	return r.bind(scope)
}

// bind binds $ to scope.
func (r *jsRun) bind(scope map[string]any) error {
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
		o := newLazyObject(r, l)
		if err := dollar.ToObject(r.vm).Set(k, r.vm.NewDynamicObject(o)); err != nil {
			return fmt.Errorf("script input: %w", err)
		}
		if r.lazy == nil {
			r.lazy = map[string]*lazyObject{}
		}
		r.lazy[k] = o
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
		// The thrown value's text alone, as GraalJS words Conductor's
		// (Error: boom, not goja's Error: boom at construct (native)): an
		// error's text is what a workflow's later tasks match on.
		if ex.Value() != nil {
			return errors.New(ex.Value().String())
		}
		return errors.New(ex.Error())
	}
	return err
}

// compileJS compiles a script after checking its source against the source
// limits (see maxSourceBytes).
func compileJS(src string) (prog *goja.Program, traits scriptTraits, err error) {
	prg, traits, err := parseJS("script", src)
	if err != nil {
		return nil, traits, errors.New(compileMessage(err))
	}
	if prog, err = goja.CompileAST(prg, false); err != nil {
		return nil, traits, errors.New(compileMessage(err))
	}
	return prog, traits, nil
}

// scriptTraits are what parseJS learns of a script from its syntax tree.
type scriptTraits struct {
	// generators: it makes generator or async functions.
	generators bool
	// plain: every node of its tree is one plainNode allows.
	plain bool
}

// plainNode reports whether a node of a syntax tree may be part of a
// plain script: one that reads $ and computes with operators, as most
// loop conditions and switch cases do ($.loop['iteration'] < $.n, if …
// else …). It has no call, new, assignment, update, delete, function,
// class, loop, declaration, spread, regular expression, tagged template,
// this, or name but $ and the global constants. Built-ins are reachable
// as values all the same ("".constructor.prototype.repeat), and the
// language calls some of an object's own members by their names: an
// object literal whose key is computed, or a name such a call looks up
// (toJSON, when the result is stringified, with the key as argument;
// valueOf and toString, converting it; __proto__, which would give it
// Array.prototype's join and a length of its choosing), is not plain.
func plainNode(node any) bool {
	switch n := node.(type) {
	case *ast.Program, *ast.ExpressionStatement, *ast.IfStatement, *ast.BlockStatement, *ast.EmptyStatement,
		*ast.StringLiteral, *ast.NumberLiteral, *ast.BooleanLiteral, *ast.NullLiteral, *ast.TemplateElement,
		*ast.DotExpression, *ast.BracketExpression, *ast.Optional, *ast.OptionalChain, *ast.ConditionalExpression,
		*ast.SequenceExpression, *ast.ArrayLiteral, *ast.ObjectLiteral:
		return true
	case *ast.Identifier:
		return n.Name == "$" || n.Name == "undefined" || n.Name == "NaN" || n.Name == "Infinity"
	case *ast.TemplateLiteral:
		return n.Tag == nil
	case *ast.UnaryExpression:
		switch n.Operator {
		case token.NOT, token.MINUS, token.PLUS, token.BITWISE_NOT, token.TYPEOF, token.VOID:
			return true
		}
	case *ast.BinaryExpression:
		return n.Operator != token.INSTANCEOF // it may call Symbol.hasInstance
	case *ast.PropertyKeyed:
		if n.Kind != ast.PropertyKindValue || n.Computed {
			return false
		}
		switch k := n.Key.(type) {
		case *ast.NumberLiteral:
			return true
		case *ast.StringLiteral:
			switch k.Value {
			case "__proto__", "toJSON", "toString", "valueOf", "toLocaleString":
				return false
			}
			return true
		}
	}
	return false
}

// parseJS parses src if it keeps within the source limits: its size, how
// deep it nests (on the text, before goja's parser recurses on it; on the
// syntax tree, before the compiler does), and chains of && || ?? over
// constants. It reports whether the source makes generator or async
// functions. A syntax error is a *goja.CompilerSyntaxError.
func parseJS(what, src string) (prg *ast.Program, traits scriptTraits, err error) {
	if err := sourceSize(what, src); err != nil {
		return nil, traits, err
	}
	if jsNesting(src) > maxSourceNesting {
		return nil, traits, fmt.Errorf("%s nests brackets, braces, parentheses or arrow functions more than %d levels deep", what, maxSourceNesting)
	}
	if prg, err = goja.Parse(what, src); err != nil {
		return nil, traits, err
	}
	if err := syntaxDepth(what, prg, maxSyntaxDepth, nil); err != nil {
		return nil, traits, err
	}
	// Within the depth, the checks may recurse.
	traits.plain = true
	err = syntaxDepth(what, prg, maxSyntaxDepth, func(node any) error {
		traits.plain = traits.plain && plainNode(node)
		switch n := node.(type) {
		case *ast.FunctionLiteral:
			traits.generators = traits.generators || n.Generator || n.Async
		case *ast.ArrowFunctionLiteral:
			traits.generators = traits.generators || n.Async
		case *ast.BinaryExpression:
			return constantChain(what, n)
		case *ast.NumberLiteral:
			if _, isBig := n.Value.(*big.Int); isBig {
				return fmt.Errorf("%s has a BigInt literal (%s): scripts have no BigInt, whose arithmetic cannot be interrupted", what, n.Literal)
			}
		}
		return nil
	})
	return prg, traits, err
}

// sourceLimit is what is wrong with the source of an eval or a Function
// constructor, or "". Syntax errors are left for goja to report.
func sourceLimit(src string) string {
	var se *goja.CompilerSyntaxError
	if _, _, err := parseJS("source", src); err != nil && !errors.As(err, &se) {
		return err.Error()
	}
	return ""
}

// constantChain refuses a chain of && || ?? longer than maxConstantChain
// whose first operand is a constant (`1 || 1 || …`): goja's compiler
// evaluates such a chain's prefixes again at every term.
func constantChain(what string, b *ast.BinaryExpression) error {
	n := 0
	e := ast.Expression(b)
	for ok := true; ok && logical(b.Operator); b, ok = e.(*ast.BinaryExpression) {
		n++
		e = b.Left
	}
	if n > maxConstantChain && constant(e) {
		return fmt.Errorf("%s chains %d && || ?? operators after a constant, more than %d", what, n, maxConstantChain)
	}
	return nil
}

func logical(op token.Token) bool {
	return op == token.LOGICAL_AND || op == token.LOGICAL_OR || op == token.COALESCE
}

// constant reports whether goja's compiler folds e into a constant. The
// syntax tree has been checked for depth: the recursion is bounded.
func constant(e ast.Expression) bool {
	switch x := e.(type) {
	case *ast.NumberLiteral, *ast.StringLiteral, *ast.BooleanLiteral, *ast.NullLiteral:
		return true
	case *ast.UnaryExpression:
		return constant(x.Operand)
	case *ast.BinaryExpression:
		return constant(x.Left) && constant(x.Right)
	}
	return false
}

// jsNesting returns how deep brackets, braces, parentheses, template
// substitutions, regular expression groups and arrow functions nest in
// JavaScript source, which is how deep goja's parser recurses, or a number
// past maxSourceNesting as soon as it is that deep. It reads strings,
// templates, comments and regular expressions well enough to skip what
// they hold; where it guesses wrong (a regular expression taken for a
// division), it miscounts, and maxSourceBytes still bounds the parser.
func jsNesting(src string) int {
	var s jsScan
	s.src = src
	s.arrows = []int{0}
	for s.i = 0; s.i < len(src) && s.deepest <= maxSourceNesting; s.i++ {
		s.step()
	}
	return s.deepest
}

// jsScan is jsNesting's state.
type jsScan struct {
	src string
	i   int
	// open holds the brackets open: '(', '[', '{', '$' (a template
	// substitution), 'c' (the parenthesis after if, while, for or with).
	open []byte
	// arrows counts the arrow functions whose body is open, at each level
	// of open; inArrows is their sum.
	arrows   []int
	inArrows int
	deepest  int
	// regexp: a '/' here starts a regular expression; word is the
	// identifier just read; arrow: the last token was =>.
	regexp bool
	word   string
	arrow  bool
}

func (s *jsScan) depth(extra int) {
	s.deepest = max(s.deepest, len(s.open)+s.inArrows+extra)
}

func (s *jsScan) push(kind byte) {
	s.open = append(s.open, kind)
	s.arrows = append(s.arrows, 0)
	s.depth(0)
}

// endArrows closes the arrow functions of the current level: a comma, a
// semicolon or a line ends their bodies.
func (s *jsScan) endArrows() {
	top := len(s.arrows) - 1
	s.inArrows -= s.arrows[top]
	s.arrows[top] = 0
}

func (s *jsScan) step() {
	src, c := s.src, s.src[s.i]
	word, arrow := s.word, s.arrow
	s.word, s.arrow = "", false
	switch {
	case c == '\n':
		if !arrow {
			s.endArrows()
		}
		s.word, s.arrow = word, arrow
	case c == ' ' || c == '\t' || c == '\r':
		s.word, s.arrow = word, arrow
	case c == '/' && s.i+1 < len(src) && src[s.i+1] == '/':
		s.i = skipTo(src, s.i, "\n") - 1 // the newline is read next
		s.word, s.arrow = word, arrow
	case c == '/' && s.i+1 < len(src) && src[s.i+1] == '*':
		s.i = skipTo(src, s.i+2, "*/") + 1
		s.word, s.arrow = word, arrow
	case c == '/' && s.regexp:
		s.regexpLiteral()
		s.regexp = false
	case c == '\'' || c == '"':
		s.i = skipString(src, s.i)
		s.regexp = false
	case c == '`':
		s.template()
	case c == '(' || c == '[' || c == '{':
		if c == '(' && (word == "if" || word == "while" || word == "for" || word == "with") {
			c = 'c'
		}
		s.push(c)
		s.regexp = true
	case c == ')' || c == ']' || c == '}':
		s.close(c)
	case c == '=' && s.i+1 < len(src) && src[s.i+1] == '>':
		s.i++
		s.arrows[len(s.arrows)-1]++
		s.inArrows++
		s.depth(0)
		s.regexp, s.arrow = true, true
	case c == ',' || c == ';':
		s.endArrows()
		s.regexp = true
	case c == '\\':
		s.i++ // an escape in an identifier
	case c == '_' || c == '$' || c >= 0x80 || 'a' <= c|0x20 && c|0x20 <= 'z' || '0' <= c && c <= '9':
		j := s.i
		for j < len(src) && (src[j] == '_' || src[j] == '$' || src[j] >= 0x80 || 'a' <= src[j]|0x20 && src[j]|0x20 <= 'z' || '0' <= src[j] && src[j] <= '9') {
			j++
		}
		s.word = src[s.i:j]
		s.i = j - 1
		s.regexp = regexpKeywords[s.word]
	default: // an operator
		s.regexp = true
	}
}

// regexpKeywords are the keywords after which a '/' starts a regular
// expression.
var regexpKeywords = map[string]bool{"return": true, "typeof": true, "instanceof": true, "in": true, "of": true,
	"new": true, "delete": true, "void": true, "throw": true, "case": true, "do": true, "else": true,
	"yield": true, "await": true}

func (s *jsScan) close(c byte) {
	if len(s.open) == 0 {
		return // unbalanced: a misread, or a syntax error for the parser
	}
	kind := s.open[len(s.open)-1]
	s.endArrows()
	s.open = s.open[:len(s.open)-1]
	s.arrows = s.arrows[:len(s.arrows)-1]
	switch {
	case kind == '$' && c == '}':
		s.template() // the template goes on
		return
	case c == ')':
		s.regexp = kind == 'c' // if (x) /re/.test(y)
	case c == ']':
		s.regexp = false
	default:
		s.regexp = true
	}
}

// template reads template text from s.i (at the backquote, or at the brace
// that ends a substitution) to its end or its next substitution.
func (s *jsScan) template() {
	src := s.src
	for s.i++; s.i < len(src); s.i++ {
		switch {
		case src[s.i] == '\\':
			s.i++
		case src[s.i] == '`':
			s.regexp = false
			return
		case src[s.i] == '$' && s.i+1 < len(src) && src[s.i+1] == '{':
			s.i++
			s.push('$')
			s.regexp = true
			return
		}
	}
}

// regexpLiteral reads a regular expression literal from s.i (at its '/'),
// whose groups nest in the parser too.
func (s *jsScan) regexpLiteral() {
	src := s.src
	groups, class := 0, false
	for s.i++; s.i < len(src) && src[s.i] != '\n'; s.i++ {
		switch c := src[s.i]; {
		case c == '\\':
			s.i++
		case class:
			class = c != ']'
		case c == '[':
			class = true
		case c == '(':
			groups++
			s.depth(groups)
		case c == ')':
			groups = max(groups-1, 0)
		case c == '/':
			return
		}
	}
}

// skipTo returns the index of the first end in src from i, or len(src).
func skipTo(src string, i int, end string) int {
	if j := strings.Index(src[i:], end); j >= 0 {
		return i + j
	}
	return len(src)
}

// skipString returns the index of the quote that ends the string literal
// starting at i, or of the line or source end.
func skipString(src string, i int) int {
	q := src[i]
	for i++; i < len(src) && src[i] != q && src[i] != '\n'; i++ {
		if src[i] == '\\' {
			i++
		}
	}
	return i
}

// patternLimit is what is wrong with a regular expression's source, or "":
// its size, and how deep its groups nest (goja's parser recurses on them;
// regexp2's compile time grows with them).
func patternLimit(src string) string {
	if err := sourceSize("regular expression", src); err != nil {
		return err.Error()
	}
	depth, class := 0, false
	for i := 0; i < len(src); i++ {
		switch c := src[i]; {
		case c == '\\':
			i++
		case class:
			class = c != ']'
		case c == '[':
			class = true
		case c == '(':
			if depth++; depth > maxSourceNesting {
				return fmt.Sprintf("regular expression nests groups more than %d levels deep", maxSourceNesting)
			}
		case c == ')':
			depth = max(depth-1, 0)
		}
	}
	return ""
}

// jsonError is goja's message for a text JSON.parse could not read
// (encoding/json's "invalid character 'Z' looking for beginning of object
// key string") without the character it quotes: the text may be a secret,
// read from the input or written into the script at hand-off
// (JSON.parse('${workflow.secrets.creds}')), and redaction finds a whole
// value, not one of its characters. jqErrorText hides fromjson's so.
func jsonError(msg string) string {
	return jsonCharacter.ReplaceAllString(msg, "invalid character '***'")
}

// jsonCharacter is the character encoding/json's syntax errors quote,
// between single quotes: x, ", \x01, or \' for a single quote.
var jsonCharacter = regexp.MustCompile(`invalid character '(?:\\'|[^']*)'`)

// regexpError is goja's message for a pattern it could not compile
// ("Invalid regular expression (re2): … (error parsing regexp: …)") in
// words of the engines' alone: goja quotes the pattern as it rewrote it for
// them, and their errors the piece of it they stopped at (missing closing
// ): `(…`), which for a pattern built from a secret is the secret's tail or
// a rewritten form of it, neither of which redaction, finding whole values,
// recognizes. What is left is the kind of error. goja's parser's own
// messages (Unterminated group) quote nothing and are kept. eval and the
// Function constructors throw a literal's with "SyntaxError: " before it.
func regexpError(msg string) string {
	if !strings.Contains(msg, "Invalid regular expression (") {
		return msg
	}
	for _, k := range regexpErrorKinds {
		if k.re.MatchString(msg) {
			return "Invalid regular expression: " + k.text
		}
	}
	return "Invalid regular expression"
}

// regexpErrorKinds are the kinds of error Go's regexp/syntax and regexp2
// name, the longest first (one may begin with another), each matched in a
// message with its arguments (regexp2's %v, %c: pieces of the pattern)
// shown as "…".
var regexpErrorKinds = func() []regexpErrorKind {
	codes := []string{
		string(syntax.ErrInternalError), string(syntax.ErrInvalidCharClass), string(syntax.ErrInvalidCharRange),
		string(syntax.ErrInvalidEscape), string(syntax.ErrInvalidNamedCapture), string(syntax.ErrInvalidPerlOp),
		string(syntax.ErrInvalidRepeatOp), string(syntax.ErrInvalidRepeatSize), string(syntax.ErrInvalidUTF8),
		string(syntax.ErrMissingBracket), string(syntax.ErrMissingParen), string(syntax.ErrMissingRepeatArgument),
		string(syntax.ErrTrailingBackslash), string(syntax.ErrUnexpectedParen), string(syntax.ErrNestingDepth),
		string(syntax.ErrLarge),
		string(rxsyntax.ErrInternalError), rxsyntax.ErrUnterminatedComment, rxsyntax.ErrInvalidCharRange,
		rxsyntax.ErrInvalidRepeatSize, rxsyntax.ErrInvalidUTF8, rxsyntax.ErrCaptureGroupOutOfRange,
		rxsyntax.ErrUnexpectedParen, rxsyntax.ErrMissingParen, rxsyntax.ErrMissingBrace, rxsyntax.ErrInvalidRepeatOp,
		rxsyntax.ErrMissingRepeatArgument, rxsyntax.ErrConditionalExpression, rxsyntax.ErrTooManyAlternates,
		rxsyntax.ErrUnrecognizedGrouping, rxsyntax.ErrInvalidGroupName, rxsyntax.ErrInvalidECMAGroupName,
		rxsyntax.ErrDuplicateGroupName, rxsyntax.ErrCapNumNotZero, rxsyntax.ErrUndefinedBackRef,
		rxsyntax.ErrUndefinedNameRef, rxsyntax.ErrAlternationCantCapture, rxsyntax.ErrAlternationCantHaveComment,
		rxsyntax.ErrMalformedReference, rxsyntax.ErrUndefinedReference, rxsyntax.ErrIllegalEndEscape,
		rxsyntax.ErrMalformedSlashP, rxsyntax.ErrIncompleteSlashP, rxsyntax.ErrUnknownSlashP,
		rxsyntax.ErrUnrecognizedEscape, rxsyntax.ErrMissingControl, rxsyntax.ErrUnrecognizedControl,
		rxsyntax.ErrTooFewHex, rxsyntax.ErrInvalidHex, rxsyntax.ErrMalformedNameRef, rxsyntax.ErrBadClassInCharRange,
		rxsyntax.ErrShorthandClassInCharRange, rxsyntax.ErrUnterminatedBracket, rxsyntax.ErrSubtractionMustBeLast,
		rxsyntax.ErrReversedCharRange,
	}
	slices.SortStableFunc(codes, func(a, b string) int { return cmp.Compare(len(b), len(a)) })
	verb := regexp.MustCompile(`%[vc]`)
	kinds := make([]regexpErrorKind, 0, len(codes))
	for _, c := range codes {
		pieces := verb.Split(c, -1)
		for i, p := range pieces {
			pieces[i] = regexp.QuoteMeta(p)
		}
		kinds = append(kinds, regexpErrorKind{text: verb.ReplaceAllString(c, "…"),
			re: regexp.MustCompile("error parsing regexp: " + strings.Join(pieces, "(?s:.*?)"))})
	}
	return kinds
}()

type regexpErrorKind struct {
	text string
	re   *regexp.Regexp
}

// jsonLimit is what is wrong with a JSON text goja's JSON.parse would
// build, or "": nesting deeper than maxValueDepth (it recurses in Go), more
// values than maxArray/4 (a value takes 20 to 50 bytes, an element of
// maxArray 16), or more arrays and objects than maxArray/64 (an empty
// array takes ~600 bytes). It counts the structural characters outside
// strings, which bounds the values of valid text.
func jsonLimit(text string, maxArray int64) string {
	maxValues, maxContainers := maxArray/4, maxArray/64
	depth, values, containers := 0, int64(1), int64(0)
	for i := 0; i < len(text); i++ {
		switch text[i] {
		case '"':
			for i++; i < len(text) && text[i] != '"'; i++ {
				if text[i] == '\\' {
					i++
				}
			}
		case '[', '{':
			if depth++; depth > maxValueDepth {
				return fmt.Sprintf("JSON.parse: text nested more than %d levels deep", maxValueDepth)
			}
			if containers++; containers > maxContainers {
				return fmt.Sprintf("JSON.parse: text of more than %d arrays and objects exceeds the script memory budget", maxContainers)
			}
			values++
		case ']', '}':
			depth--
		case ',':
			if values++; values > maxValues {
				return fmt.Sprintf("JSON.parse: text of more than %d values exceeds the script memory budget", maxValues)
			}
		}
	}
	return ""
}

func compileMessage(err error) string {
	var se *goja.CompilerSyntaxError
	if !errors.As(err, &se) {
		return err.Error()
	}
	// A regular expression literal's pattern may be a secret's value: an
	// INLINE task's expression is input, resolved at hand-off.
	reworded := *se
	reworded.Message = regexpError(se.Message)
	msg := reworded.Error()
	if !strings.HasPrefix(msg, "SyntaxError") {
		msg = "SyntaxError: " + msg
	}
	return msg
}
