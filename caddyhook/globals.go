package caddyhook

import (
	"bytes"
	"encoding/base64"
	"reflect"
	"runtime"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/dop251/goja"
	"github.com/google/uuid"
)

// Node's globals that goja lacks and that scripts written for Node 22 (and
// for Auth0, which ran them on Node) use: global, process, TextEncoder,
// TextDecoder, atob, btoa, DOMException, crypto, performance and
// structuredClone here, installed by newVM (their Go halves in
// webglobals.go); URL,
// URLSearchParams and Buffer, which are modules' exports, loaded lazily by
// modules.enable through lazyGlobal.
//
// process is Node's in shape, not in reach: env is an empty object (the
// sandbox has no host environment), platform is always linux, hrtime and
// uptime count from the runtime's creation, and nothing that would reach or
// end the host is there: no exit, abort, kill, cwd, chdir, umask, binding,
// dlopen, memoryUsage, resourceUsage, pid, stdout or stderr. A script calling
// one of those fails with a TypeError, which fails the exchange closed. Its
// event methods (on, once, emit...) exist so that packages registering
// handlers at load time still load, but no process event ever fires.
// nextTick queues a microtask (through the loop's queueMicrotask, looked up
// when called), so unlike Node's it does not run ahead of promise jobs
// already queued.
//
// crypto is Web Crypto as far as scripts use it: randomUUID,
// getRandomValues (integer typed arrays of at most 65536 bytes) and
// subtle.digest (SHA-1, SHA-256, SHA-384, SHA-512, resolving to an
// ArrayBuffer). subtle's other methods are present but reject with a
// NotSupportedError naming the method, so that a script using one fails
// clearly rather than with "not a function". performance has now (ms since
// the runtime's creation: a warm runtime serves many exchanges),
// timeOrigin, and mark and measure returning their entries, which are not
// kept (getEntries is always empty); at most 256 marks are remembered for
// measure. structuredClone copies what V8 does (objects, arrays, Date,
// RegExp, Map, Set, ArrayBuffer and views, Error, boxed primitives; cycles
// and shared references kept) and throws a DataCloneError for the rest, a
// Proxy included; it walks the value without recursion and within
// maxArrayLength entries, maxInputDepth levels and maxBufferBytes of
// copied buffers. transfer is refused.

// nodeVersion is the Node release scripts are told they run on: Auth0's
// newest runtime is Node 22.
const nodeVersion = "22.12.0"

// nodeArch is process.arch: Node's name for the host's architecture.
var nodeArch = map[string]string{"amd64": "x64", "386": "ia32", "arm64": "arm64", "arm": "arm"}[runtime.GOARCH]

// nodeGlobals maps each global globalsProgram builds to its group: the
// globals of a group are built together, the first time a script reads one
// of them.
var nodeGlobals = map[string]string{
	"process": "process", "TextEncoder": "text", "TextDecoder": "text",
	"atob": "base64", "btoa": "base64", "DOMException": "base64",
	"crypto": "crypto", "performance": "performance", "structuredClone": "clone",
}

// installNodeGlobals installs the globals above in vm. It runs once per
// runtime, before any script, after the allocation caps: the Uint8Array it
// takes is the capped one. Building all of them costs about as much as the
// rest of a runtime's setup and most scripts use few or none, so each group
// is built on the first read of one of its globals (global, which costs
// nothing, at once). The builder it returns serves require('crypto')'s
// webcrypto.
func installNodeGlobals(vm *goja.Runtime) *globalsBuilder {
	_ = vm.GlobalObject().DefineDataProperty("global", vm.GlobalObject(), goja.FLAG_TRUE, goja.FLAG_TRUE, goja.FLAG_FALSE)
	// The intrinsics the globals rely on are taken now, before any script
	// can replace them.
	b := &globalsBuilder{vm: vm,
		start:      time.Now(),
		isView:     nativeOf(vm.Get("ArrayBuffer").ToObject(vm).Get("isView")),
		uint8Array: vm.Get("Uint8Array"),
		built:      map[string]*goja.Object{},
	}
	fn, err := vm.RunProgram(cloneIntrinsics)
	if err != nil {
		rethrow(vm, err)
	}
	take, _ := goja.AssertFunction(fn)
	if b.cloneIntrinsics, err = take(goja.Undefined()); err != nil {
		rethrow(vm, err)
	}
	for name, group := range nodeGlobals {
		lazyGlobal(vm, name, func() goja.Value { return b.group(group).Get(name) })
	}
	return b
}

// webCrypto is the runtime's own Web Crypto object, the global crypto
// before any script could replace it: Node 22's require('crypto').webcrypto.
func (b *globalsBuilder) webCrypto() goja.Value { return b.group("crypto").Get("crypto") }

// globalsBuilder builds the groups of one runtime's Node globals.
type globalsBuilder struct {
	vm         *goja.Runtime
	start      time.Time // the runtime's creation, where hrtime and uptime count from
	isView     func(goja.FunctionCall) goja.Value
	uint8Array goja.Value // the capped constructor
	builders   *goja.Object
	// what structuredClone counts and remembers through (cloneIntrinsics)
	cloneIntrinsics goja.Value
	built           map[string]*goja.Object
}

// group returns the globals of group, building them (and, the first time,
// running globalsProgram) if need be.
func (b *globalsBuilder) group(group string) *goja.Object {
	if obj := b.built[group]; obj != nil {
		return obj
	}
	vm := b.vm
	if b.builders == nil {
		fn, err := vm.RunProgram(globalsProgram)
		if err != nil {
			rethrow(vm, err)
		}
		program, _ := goja.AssertFunction(fn)
		v, err := program(goja.Undefined(), vm.GlobalObject(), b.uint8Array, vm.ToValue(nodeVersion), vm.ToValue(nodeArch))
		if err != nil {
			rethrow(vm, err)
		}
		b.builders = v.ToObject(vm)
	}
	// Defined, not set: the script may have put setters on Object.prototype
	// by now.
	natives := vm.NewObject()
	set := func(name string, f func(goja.FunctionCall) goja.Value) { define(vm, natives, name, f) }
	switch group {
	case "text":
		set("encode", func(c goja.FunctionCall) goja.Value { return encodeUTF8(vm, c.Argument(0)) })
		set("encodeInto", func(c goja.FunctionCall) goja.Value { return encodeUTF8Into(vm, c.Argument(0), c.Argument(1)) })
		set("decoder", func(c goja.FunctionCall) goja.Value {
			d := &textDecoder{utf16: c.Argument(0).ToBoolean(), fatal: c.Argument(1).ToBoolean(), ignoreBOM: c.Argument(2).ToBoolean()}
			return vm.ToValue(func(c goja.FunctionCall) goja.Value {
				return d.decode(vm, b.isView, c.Argument(0), c.Argument(1).ToBoolean())
			})
		})
	case "base64":
		set("atob", func(c goja.FunctionCall) goja.Value { return atob(vm, c.Argument(0)) })
		set("btoa", func(c goja.FunctionCall) goja.Value { return btoa(vm, c.Argument(0)) })
	case "process":
		set("hrtime", func(goja.FunctionCall) goja.Value {
			d := time.Since(b.start)
			return vm.NewArray(int64(d/time.Second), int64(d%time.Second))
		})
		set("uptime", func(goja.FunctionCall) goja.Value { return vm.ToValue(time.Since(b.start).Seconds()) })
	case "performance":
		set("now", func(goja.FunctionCall) goja.Value {
			return vm.ToValue(float64(time.Since(b.start)) / float64(time.Millisecond))
		})
		define(vm, natives, "timeOrigin", float64(b.start.UnixMicro())/1000)
		define(vm, natives, "DOMException", b.group("base64").Get("DOMException"))
	case "crypto":
		set("randomUUID", func(goja.FunctionCall) goja.Value { return vm.ToValue(uuid.NewString()) })
		set("fill", func(c goja.FunctionCall) goja.Value { return fillRandom(vm, c.Argument(0)) })
		set("digest", func(c goja.FunctionCall) goja.Value {
			name, _ := scriptString(c.Argument(0))
			return digest(vm, b.isView, name, c.Argument(1))
		})
		// Ours, not the global a script may have replaced.
		define(vm, natives, "DOMException", b.group("base64").Get("DOMException"))
	case "clone":
		set("kind", func(c goja.FunctionCall) goja.Value { return vm.ToValue(cloneKind(b.isView, c.Argument(0))) })
		set("copyBuffer", func(c goja.FunctionCall) goja.Value { return copyBuffer(vm, c.Argument(0), c.Argument(1).ToInteger()) })
		define(vm, natives, "intrinsics", b.cloneIntrinsics)
		define(vm, natives, "maxEntries", maxCloneEntries)
		define(vm, natives, "maxDepth", maxInputDepth)
		define(vm, natives, "maxBytes", maxBufferBytes)
		define(vm, natives, "DOMException", b.group("base64").Get("DOMException"))
	}
	build, _ := goja.AssertFunction(b.builders.Get(group))
	v, err := build(goja.Undefined(), natives)
	if err != nil {
		rethrow(vm, err)
	}
	obj := v.ToObject(vm)
	b.built[group] = obj
	return obj
}

// lazyGlobal defines the global name as an accessor that calls load on the
// first read and then replaces itself with the value, so that a runtime
// pays for a module only if a script uses it. A script that assigns the
// global first gets its own value, as with any global.
func lazyGlobal(vm *goja.Runtime, name string, load func() goja.Value) {
	global := vm.GlobalObject()
	_ = global.DefineAccessorProperty(name,
		vm.ToValue(func(goja.FunctionCall) goja.Value {
			v := load()
			_ = global.DefineDataProperty(name, v, goja.FLAG_TRUE, goja.FLAG_TRUE, goja.FLAG_FALSE)
			return v
		}),
		vm.ToValue(func(call goja.FunctionCall) goja.Value {
			_ = global.DefineDataProperty(name, call.Argument(0), goja.FLAG_TRUE, goja.FLAG_TRUE, goja.FLAG_FALSE)
			return goja.Undefined()
		}),
		goja.FLAG_TRUE, goja.FLAG_FALSE)
}

// The JavaScript half, run at most once per runtime, when a script first
// reads one of the globals: it returns a builder per group, which builds
// the group's globals from the Go natives it is given and returns them,
// leaving the global object alone. It receives the capped Uint8Array; the
// other builtins it uses (Error, Object.defineProperty...) are looked up
// when used, so a script that replaced one of those changes these globals
// as it would change a Node library, and gets them back by restoring it.
// Every conversion of a script's value (`${input}`, options.fatal) happens
// here, in script code, where a throwing getter, a Symbol or a revoked
// Proxy simply throws to the script; the natives receive only strings,
// booleans and the objects they check themselves.
var globalsProgram = goja.MustCompile("caddyhook:globals", `(function (g, U8, nodeVersion, arch) {
	'use strict';
	const hide = (obj, name, value) => Object.defineProperty(obj, name, { value, writable: true, configurable: true, enumerable: false });

	// received describes a wrong argument the way Node's errors do.
	function received(v) {
		if (v === undefined || v === null) return ' Received ' + v;
		if (typeof v === 'function') return ' Received function';
		if (typeof v === 'object') {
			let name = 'Object';
			try { const c = Object.getPrototypeOf(v); name = (c && typeof c.constructor === 'function' && typeof c.constructor.name === 'string') ? c.constructor.name : name; } catch (e) {}
			return ' Received an instance of ' + name;
		}
		let s = typeof v === 'symbol' ? 'Symbol()' : '' + v;
		if (s.length > 28) s = s.slice(0, 25) + '...';
		if (typeof v === 'string') s = "'" + s + "'";
		return ' Received type ' + typeof v + ' (' + s + ')';
	}
	function nodeError(Ctor, code, message) {
		const e = new Ctor(message);
		hide(e, 'code', code);
		return e;
	}
	const argType = (what, v) => nodeError(TypeError, 'ERR_INVALID_ARG_TYPE', 'The ' + what + '.' + received(v));
	const missing = (name) => nodeError(TypeError, 'ERR_MISSING_ARGS', 'The "' + name + '" argument must be specified');

	return {
		process(n) {
			function hrtime(time) {
				const now = n.hrtime();
				if (time === undefined) return now;
				if (!Array.isArray(time)) throw argType('"time" argument must be an instance of Array', time);
				if (time.length !== 2) throw nodeError(RangeError, 'ERR_OUT_OF_RANGE', 'The value of "time" is out of range. It must be 2. Received ' + time.length);
				let s = now[0] - time[0], ns = now[1] - time[1];
				if (ns < 0) { s--; ns += 1e9; }
				return [s, ns];
			}
			hide(hrtime, 'bigint', function bigint() {
				const now = n.hrtime();
				return BigInt(now[0]) * 1000000000n + BigInt(now[1]);
			});
			function nextTick(callback, ...args) {
				if (typeof callback !== 'function') throw argType('"callback" argument must be of type function', callback);
				const run = () => callback(...args);
				// Without the loop's queueMicrotask (the scratch runtime that
				// checks a script's exports at load time has no loop), a promise
				// job, whose exceptions nothing reports.
				const queue = g.queueMicrotask;
				if (typeof queue === 'function') queue(run);
				else Promise.resolve().then(run);
			}
			function emitWarning(warning, type, code) {
				let name = 'Warning', text;
				if (type !== null && typeof type === 'object') { if (type.type !== undefined) name = '' + type.type; code = type.code; }
				else if (typeof type === 'string') name = type;
				if (warning instanceof Error) { name = '' + warning.name; text = '' + warning.message; }
				else if (typeof warning === 'string') text = warning;
				else throw argType('"warning" argument must be of type string or an instance of Error', warning);
				const console = g.console;
				if (console && typeof console.warn === 'function') console.warn((code !== undefined ? '[' + code + '] ' : '') + name + ': ' + text);
			}
			// Node's process is an EventEmitter; these let packages that
			// register handlers load, though no event ever fires.
			const self = function () { return this; };
			const emitter = {
				on: self, once: self, off: self, addListener: self, removeListener: self, removeAllListeners: self,
				prependListener: self, prependOnceListener: self, setMaxListeners: self,
				emit() { return false; }, listeners() { return []; }, listenerCount() { return 0; },
				[Symbol.toStringTag]: 'process',
			};
			const process = {
				__proto__: emitter,
				title: 'node', version: 'v' + nodeVersion, versions: { node: nodeVersion }, release: { name: 'node' },
				platform: 'linux', arch, env: {}, argv: [], execArgv: [],
				nextTick, hrtime, emitWarning, uptime() { return n.uptime(); },
			};
			return { __proto__: null, process };
		},
		text(n) {
			class TextEncoder {
				get encoding() { return 'utf-8'; }
				encode(input = '') { return new U8(n.encode('' + input)); }
				encodeInto(src, dest) {
					if (typeof src !== 'string') throw argType('"src" argument must be of type string', src);
					return n.encodeInto(src, dest);
				}
			}

			// The labels WHATWG's Encoding standard gives UTF-8 and UTF-16LE,
			// the encodings Node decodes without ICU.
			const labels = { __proto__: null, 'utf-8': 'utf-8', 'utf8': 'utf-8', 'unicode-1-1-utf-8': 'utf-8',
				'unicode11utf8': 'utf-8', 'unicode20utf8': 'utf-8', 'x-unicode20utf8': 'utf-8',
				'utf-16le': 'utf-16le', 'utf-16': 'utf-16le', 'ucs-2': 'utf-16le', 'unicode': 'utf-16le',
				'csunicode': 'utf-16le', 'iso-10646-ucs-2': 'utf-16le', 'unicodefeff': 'utf-16le' };
			class TextDecoder {
				#decode; #encoding; #fatal; #ignoreBOM;
				constructor(encoding = 'utf-8', options = undefined) {
					encoding = '' + encoding;
					const name = labels[encoding.replace(/^[\t\n\f\r ]+|[\t\n\f\r ]+$/g, '').toLowerCase()];
					if (name === undefined) throw nodeError(RangeError, 'ERR_ENCODING_NOT_SUPPORTED', 'The "' + encoding + '" encoding is not supported');
					if (options !== undefined && options !== null && typeof options !== 'object') throw argType('"options" argument must be of type object', options);
					this.#encoding = name;
					this.#fatal = !!(options && options.fatal);
					this.#ignoreBOM = !!(options && options.ignoreBOM);
					this.#decode = n.decoder(name === 'utf-16le', this.#fatal, this.#ignoreBOM);
				}
				get encoding() { return this.#encoding; }
				get fatal() { return this.#fatal; }
				get ignoreBOM() { return this.#ignoreBOM; }
				decode(input = undefined, options = undefined) {
					if (options !== undefined && options !== null && typeof options !== 'object') throw argType('"options" argument must be of type object', options);
					const stream = !!(options && options.stream);
					const s = this.#decode(input, stream);
					if (typeof s === 'string') return s;
					if (s === 1) throw argType('"input" argument must be an instance of ArrayBuffer or ArrayBufferView', input);
					throw nodeError(TypeError, 'ERR_ENCODING_INVALID_ENCODED_DATA', 'The encoded data was not valid for encoding ' + this.#encoding);
				}
			}
			return { __proto__: null, TextEncoder, TextDecoder };
		},
		base64(n) {
			const domCodes = { __proto__: null, IndexSizeError: 1, HierarchyRequestError: 3, WrongDocumentError: 4,
				InvalidCharacterError: 5, NoModificationAllowedError: 7, NotFoundError: 8, NotSupportedError: 9,
				InvalidStateError: 11, SyntaxError: 12, InvalidModificationError: 13, NamespaceError: 14,
				InvalidAccessError: 15, TypeMismatchError: 17, SecurityError: 18, NetworkError: 19, AbortError: 20,
				URLMismatchError: 21, QuotaExceededError: 22, TimeoutError: 23, InvalidNodeTypeError: 24, DataCloneError: 25 };
			class DOMException extends Error {
				constructor(message = '', options = 'Error') {
					super('' + message);
					let name = 'Error';
					if (options !== null && typeof options === 'object') {
						if ('name' in options) name = '' + options.name;
						if ('cause' in options) hide(this, 'cause', options.cause);
					} else if (options !== undefined) {
						name = '' + options;
					}
					hide(this, 'name', name);
					hide(this, 'code', domCodes[name] || 0);
				}
			}
			const invalidCharacter = (msg) => new DOMException(msg, 'InvalidCharacterError');

			function atob(input) {
				if (arguments.length === 0) throw missing('input');
				const r = n.atob('' + input);
				if (r === 1) throw invalidCharacter('Invalid character');
				if (r === 2) throw invalidCharacter('The string to be decoded is not correctly encoded.');
				return r;
			}
			function btoa(input) {
				if (arguments.length === 0) throw missing('input');
				const r = n.btoa('' + input);
				if (r === 1) throw invalidCharacter('Invalid character');
				return r;
			}
			return { __proto__: null, atob, btoa, DOMException };
		},
		performance(n) {
			const { DOMException } = n;
			// Marks are kept for measure, at most maxMarks of them (the
			// oldest goes first): the runtime, and so the marks, outlive
			// the exchange that made them.
			const maxMarks = 256;
			const marks = new Map();
			const entry = (name, entryType, startTime, duration) => ({ name, entryType, startTime, duration, detail: null });
			const time = (m) => {
				if (m === undefined || typeof m === 'number') return m;
				const name = '' + m;
				const t = marks.get(name);
				if (t === undefined) throw new DOMException('The "' + name + '" performance mark has not been set', 'SyntaxError');
				return t;
			};
			const performance = {
				timeOrigin: n.timeOrigin,
				now() { return n.now(); },
				mark(name, options = undefined) {
					name = '' + name;
					const startTime = options !== null && typeof options === 'object' && options.startTime !== undefined ? +options.startTime : n.now();
					marks.delete(name);
					if (marks.size >= maxMarks) marks.delete(marks.keys().next().value);
					marks.set(name, startTime);
					return entry(name, 'mark', startTime, 0);
				},
				measure(name, start = undefined, end = undefined) {
					name = '' + name;
					let s, e;
					if (start !== null && typeof start === 'object') {
						s = time(start.start);
						e = time(start.end);
						if (e === undefined && start.duration !== undefined) e = (s || 0) + +start.duration;
					} else {
						s = time(start);
						e = time(end);
					}
					if (s === undefined) s = 0;
					if (e === undefined) e = n.now();
					return entry(name, 'measure', s, e - s);
				},
				clearMarks(name = undefined) { if (name === undefined) marks.clear(); else marks.delete('' + name); },
				clearMeasures() {},
				getEntries() { return []; },
				getEntriesByName() { return []; },
				getEntriesByType() { return []; },
				toJSON() { return { timeOrigin: n.timeOrigin }; },
				[Symbol.toStringTag]: 'Performance',
			};
			return { __proto__: null, performance };
		},
		crypto(n) {
			const { DOMException } = n;
			let crypto;
			// As in Node, the methods work only on crypto itself.
			const check = (self) => {
				if (self !== crypto) throw nodeError(TypeError, 'ERR_INVALID_THIS', 'Value of "this" must be of type Crypto');
			};
			const unrecognized = () => new DOMException('Unrecognized algorithm name', 'NotSupportedError');
			const subtle = {
				async digest(algorithm, data) {
					if (arguments.length < 2) throw nodeError(TypeError, 'ERR_MISSING_ARGS', 'The "algorithm" and "data" arguments must be specified');
					const name = algorithm !== null && typeof algorithm === 'object' ? algorithm.name : algorithm;
					if (typeof name !== 'string') throw unrecognized();
					const r = n.digest(name.toUpperCase(), data);
					if (r === 1) throw unrecognized();
					if (r === 2) throw nodeError(TypeError, 'ERR_INVALID_ARG_TYPE', "Failed to execute 'digest' on 'SubtleCrypto': 2nd argument is not instance of ArrayBuffer, Buffer, TypedArray, or DataView.");
					return r;
				},
				[Symbol.toStringTag]: 'SubtleCrypto',
			};
			// The rest of Web Crypto is not offered: each method rejects,
			// naming itself, rather than being absent, so that a script
			// fails with a clear error whatever it checks first.
			for (const method of ['encrypt', 'decrypt', 'sign', 'verify', 'generateKey', 'deriveKey', 'deriveBits',
				'importKey', 'exportKey', 'wrapKey', 'unwrapKey']) {
				hide(subtle, method, {
					async [method]() { throw new DOMException('crypto.subtle.' + method + ' is not supported by this runtime (only digest is)', 'NotSupportedError'); },
				}[method]);
			}
			crypto = {
				subtle,
				getRandomValues(typedArray) {
					check(this);
					if (arguments.length === 0) throw missing('typedArray');
					const r = n.fill(typedArray);
					if (r === 1) throw new DOMException('The data argument must be an integer-type TypedArray', 'TypeMismatchError');
					if (r === 2) throw new DOMException('The requested length exceeds 65,536 bytes', 'QuotaExceededError');
					return typedArray;
				},
				randomUUID() { check(this); return n.randomUUID(); },
				[Symbol.toStringTag]: 'Crypto',
			};
			return { __proto__: null, crypto };
		},
		clone(n) {
			const { DOMException, kind, copyBuffer, maxEntries, maxDepth, maxBytes } = n;
			// What the clone counts and remembers through, taken before any
			// script ran (cloneIntrinsics); what it reads and builds through,
			// taken now, so that a script's later changes do not reach them.
			const { apply, keys, push, pop, SafeMap, mapGet, mapSet, mapHas, mapForEach, setForEach, abLength } = n.intrinsics;
			const defineProperty = Object.defineProperty;
			const hasOwn = Object.prototype.hasOwnProperty, fnToString = Function.prototype.toString, toObject = Object;
			const symToString = Symbol.prototype.toString, slice = String.prototype.slice;
			const SafeSet = Set, SafeDate = Date, SafeRegExp = RegExp;
			const setAdd = Set.prototype.add, getTime = Date.prototype.getTime;
			// goja's WeakMap and WeakSet look like plain objects to Go; their
			// prototype gives them away, unless a script changed it.
			const getPrototypeOf = Object.getPrototypeOf, weak = [WeakMap.prototype, WeakSet.prototype];
			const getter = (o, k) => Object.getOwnPropertyDescriptor(o, k).get;
			const reSource = getter(RegExp.prototype, 'source'), reFlags = getter(RegExp.prototype, 'flags');
			const taProto = Object.getPrototypeOf(U8.prototype);
			const taTag = getter(taProto, Symbol.toStringTag), taBuffer = getter(taProto, 'buffer'),
				taOffset = getter(taProto, 'byteOffset'), taLength = getter(taProto, 'length');
			const DV = g.DataView, dvBuffer = getter(DV.prototype, 'buffer'), dvOffset = getter(DV.prototype, 'byteOffset'),
				dvLength = getter(DV.prototype, 'byteLength');
			const views = { __proto__: null };
			for (const name of ['Int8Array', 'Uint8Array', 'Uint8ClampedArray', 'Int16Array', 'Uint16Array', 'Int32Array',
				'Uint32Array', 'Float32Array', 'Float64Array', 'BigInt64Array', 'BigUint64Array']) views[name] = g[name];
			const boxed = { __proto__: null, Number: Number.prototype.valueOf, String: String.prototype.valueOf, Boolean: Boolean.prototype.valueOf };
			const errors = { __proto__: null, Error, EvalError, RangeError, ReferenceError, SyntaxError, TypeError, URIError };

			const cannot = (what) => new DOMException(what + ' could not be cloned.', 'DataCloneError');
			const tooLarge = () => new DOMException('The value is too large or too deeply nested to be cloned', 'DataCloneError');
			const text = (s) => s.length > 100 ? apply(slice, s, [0, 97]) + '...' : s;
			const put = (o, k, value) => defineProperty(o, k, { __proto__: null, value, writable: true, enumerable: true, configurable: true });

			// structuredClone walks the value breadth-first through a work
			// list, not by recursion, so that nesting costs neither the Go
			// nor the JavaScript stack (whose overflow no script can catch);
			// entries (objects, properties, Map and Set items), nesting and
			// the bytes of copied ArrayBuffers are bounded. Strings are
			// shared, not copied.
			function structuredClone(value, options = undefined) {
				if (arguments.length === 0) throw missing('value');
				if (options !== undefined && options !== null) {
					if (typeof options !== 'object') throw argType('"options" argument must be of type object', options);
					const transfer = options.transfer;
					if (transfer !== undefined && transfer !== null && transfer.length > 0) throw new DOMException('Transferring is not supported by this runtime', 'DataCloneError');
				}
				const memory = new SafeMap();
				const work = [];
				let entries = 0, bytes = 0;
				const count = (n, depth) => {
					if ((entries += n) > maxEntries || depth > maxDepth) throw tooLarge();
				};
				function shell(v, depth) {
					const t = typeof v;
					if (t === 'symbol') throw cannot(text(apply(symToString, v, [])));
					if ((t !== 'object' && t !== 'function') || v === null) return v;
					if (apply(mapHas, memory, [v])) return apply(mapGet, memory, [v]);
					count(1, depth);
					const k = kind(v);
					if (k === 'proxy') throw cannot('#<Object>');
					if (t === 'function') throw cannot(text(apply(fnToString, v, [])));
					let out;
					switch (k) {
						case 'Object': {
							const p = getPrototypeOf(v);
							if (p === weak[0] || p === weak[1]) throw cannot('#<' + p[Symbol.toStringTag] + '>');
							out = {};
							apply(push, work, [v, out, depth, 0]);
							break;
						}
						case 'Array': out = []; out.length = v.length; apply(push, work, [v, out, depth, 0]); break;
						case 'Map': out = new SafeMap(); apply(push, work, [v, out, depth, 1]); break;
						case 'Set': out = new SafeSet(); apply(push, work, [v, out, depth, 2]); break;
						case 'Date': out = new SafeDate(apply(getTime, v, [])); break;
						case 'RegExp': out = new SafeRegExp(apply(reSource, v, []), apply(reFlags, v, [])); break;
						case 'Number': case 'String': case 'Boolean': out = toObject(apply(boxed[k], v, [])); break;
						case 'ArrayBuffer':
							out = copyBuffer(v, maxBytes - bytes);
							if (out === null) throw tooLarge();
							bytes += apply(abLength, out, []);
							break;
						case 'view': {
							const tag = apply(taTag, v, []);
							if (tag === undefined) {
								out = new DV(shell(apply(dvBuffer, v, []), depth + 1), apply(dvOffset, v, []), apply(dvLength, v, []));
							} else {
								out = new views[tag](shell(apply(taBuffer, v, []), depth + 1), apply(taOffset, v, []), apply(taLength, v, []));
							}
							break;
						}
						case 'Error': {
							// As V8: the class from the name, if a standard one;
							// message, stack and cause, own or not.
							const name = v.name;
							out = new (typeof name === 'string' && errors[name] || errors.Error)();
							apply(mapSet, memory, [v, out]);
							if (apply(hasOwn, v, ['message'])) hide(out, 'message', '' + v.message);
							const stack = v.stack;
							if (typeof stack === 'string') hide(out, 'stack', stack);
							// The cause through the work list too: a chain of
							// causes is nesting like any other.
							if (apply(hasOwn, v, ['cause'])) apply(push, work, [v, out, depth, 3]);
							return out;
						}
						default: throw cannot('#<' + k + '>');
					}
					apply(mapSet, memory, [v, out]);
					return out;
				}
				const root = shell(value, 0);
				while (work.length > 0) {
					const mode = apply(pop, work, []), depth = apply(pop, work, []) + 1, out = apply(pop, work, []), src = apply(pop, work, []);
					if (mode === 0) {
						const ks = keys(src);
						count(ks.length, depth);
						for (let i = 0; i < ks.length; i++) put(out, ks[i], shell(src[ks[i]], depth));
					} else if (mode === 1) {
						apply(mapForEach, src, [(v, k) => { count(1, depth); apply(mapSet, out, [shell(k, depth), shell(v, depth)]); }]);
					} else if (mode === 2) {
						apply(setForEach, src, [(v) => { count(1, depth); apply(setAdd, out, [shell(v, depth)]); }]);
					} else {
						hide(out, 'cause', shell(src.cause, depth));
					}
				}
				return root;
			}
			return { __proto__: null, structuredClone };
		},
	};
})`, false)

// cloneIntrinsics takes, before any script runs, the intrinsics
// structuredClone counts and remembers through, so that a script's changes,
// before or after its first use, do not reach its caps on entries, nesting
// and copied bytes. (What it only reads and builds through is taken when it
// is built: a script that changed those first changes only its results, and
// taking them all here would build most of the runtime's builtins for every
// runtime.)
var cloneIntrinsics = goja.MustCompile("caddyhook:clone-intrinsics", `(function () {
	'use strict';
	const { get, set, has, forEach } = Map.prototype;
	return {
		__proto__: null, apply: Reflect.apply, keys: Object.keys, push: Array.prototype.push, pop: Array.prototype.pop,
		SafeMap: Map, mapGet: get, mapSet: set, mapHas: has, mapForEach: forEach, setForEach: Set.prototype.forEach,
		abLength: Object.getOwnPropertyDescriptor(ArrayBuffer.prototype, 'byteLength').get,
	};
})`, false)

// maxAtobInput bounds atob's input, which can be any string the script has
// built, to what decodes within maxStringLength.
const maxAtobInput = maxStringLength / 3 * 4

// encodeUTF8 returns the UTF-8 bytes of s as an ArrayBuffer, lone surrogates
// as U+FFFD, as TextEncoder does; it refuses more than maxBufferBytes.
func encodeUTF8(vm *goja.Runtime, v goja.Value) goja.Value {
	s, ok := v.(goja.String)
	if !ok {
		throwTypeError(vm, "not a string")
	}
	n := utf8Length(s)
	if n > maxBufferBytes {
		panic(lazyError(vm, "RangeError")(msgBufferAlloc))
	}
	b := make([]byte, 0, n)
	b, _ = appendUTF8(b, s, n)
	return vm.ToValue(vm.NewArrayBuffer(b))
}

// utf8Length is the length in bytes of s encoded as UTF-8 with lone
// surrogates replaced.
func utf8Length(s goja.String) int {
	n, l := 0, s.Length()
	for i := 0; i < l; i++ {
		c := s.CharAt(i)
		switch {
		case c < 0x80:
			n++
		case c < 0x800:
			n += 2
		case pairAt(s, i):
			n += 4
			i++
		default:
			n += 3 // including U+FFFD for a lone surrogate
		}
	}
	return n
}

func isHighSurrogate(c uint16) bool { return c >= 0xD800 && c < 0xDC00 }

func isLowSurrogate(c uint16) bool { return c >= 0xDC00 && c <= 0xDFFF }

// pairAt says whether s has a surrogate pair, one character, at i.
func pairAt(s goja.String, i int) bool {
	return i+1 < s.Length() && isHighSurrogate(s.CharAt(i)) && isLowSurrogate(s.CharAt(i+1))
}

// appendUTF8 appends to b the UTF-8 encoding of s, whole characters only,
// until b would pass room bytes; it returns b and the UTF-16 units read.
func appendUTF8(b []byte, s goja.String, room int) ([]byte, int) {
	l := s.Length()
	var buf [4]byte
	i := 0
	for i < l {
		c, units := rune(s.CharAt(i)), 1
		if pairAt(s, i) {
			c, units = utf16.DecodeRune(c, rune(s.CharAt(i+1))), 2
		} else if utf16.IsSurrogate(c) {
			c = 0xFFFD
		}
		w := utf8.EncodeRune(buf[:], c)
		if len(b)+w > room {
			break
		}
		b = append(b, buf[:w]...)
		i += units
	}
	return b, i
}

var typeBytes = reflect.TypeOf([]byte(nil))

// encodeUTF8Into is TextEncoder.encodeInto: it writes into dest, which must
// be a genuine Uint8Array (not a Proxy for one), as many whole characters
// as fit.
func encodeUTF8Into(vm *goja.Runtime, src, dest goja.Value) goja.Value {
	obj, ok := dest.(*goja.Object)
	if !ok || obj.ExportType() != typeBytes {
		panic(vm.NewTypeError("The \"dest\" argument must be an instance of Uint8Array."))
	}
	b, _ := obj.Export().([]byte) // shares the typed array's memory
	s, ok := src.(goja.String)
	if !ok {
		throwTypeError(vm, "not a string")
	}
	out, read := appendUTF8(b[:0], s, len(b))
	res := vm.NewObject()
	define(vm, res, "read", read)
	define(vm, res, "written", len(out))
	return res
}

// viewBytes returns the bytes of an ArrayBuffer, typed array, DataView or
// Buffer without running any script code: a Proxy, or any other object, is
// refused, since reading it as an array-like would run its traps and could
// make a slice as long as its length claims.
func viewBytes(vm *goja.Runtime, isView func(goja.FunctionCall) goja.Value, v goja.Value) ([]byte, bool) {
	obj, ok := v.(*goja.Object)
	if !ok {
		return nil, false
	}
	if obj.ExportType() == typeArrayBuffer {
		return obj.Export().(goja.ArrayBuffer).Bytes(), true
	}
	if !isView(goja.FunctionCall{This: goja.Undefined(), Arguments: []goja.Value{obj}}).ToBoolean() {
		return nil, false
	}
	var b []byte
	if err := vm.ExportTo(obj, &b); err != nil {
		return nil, false
	}
	return b, true
}

// textDecoder is one TextDecoder's state: its encoding (UTF-8, or UTF-16LE
// when utf16), the bytes of a character that a streaming decode left
// incomplete, and whether the BOM is still to be looked for.
type textDecoder struct {
	utf16, fatal, ignoreBOM bool
	pending                 []byte
	bomSeen                 bool
}

// decode returns the decoded text, or 1 for an input of the wrong type and
// 2 for invalid data when fatal (the JavaScript side throws Node's errors).
func (d *textDecoder) decode(vm *goja.Runtime, isView func(goja.FunctionCall) goja.Value, input goja.Value, stream bool) goja.Value {
	var in []byte
	if !goja.IsUndefined(input) {
		b, ok := viewBytes(vm, isView, input)
		if !ok {
			return vm.ToValue(1)
		}
		in = b
	}
	if len(d.pending) > 0 {
		in = append(append([]byte(nil), d.pending...), in...)
	}
	decode := decodeUTF8
	if d.utf16 {
		decode = decodeUTF16LE
	}
	out, rest, status := decode(in, d.fatal, stream, maxStringLength)
	d.pending = append([]byte(nil), rest...)
	if status != decodeOK || !stream {
		// A decode that does not stream, or fails, starts the next afresh.
		d.pending, d.bomSeen = nil, false
	}
	switch status {
	case decodeInvalid:
		return vm.ToValue(2)
	case decodeTooLong:
		panic(lazyError(vm, "RangeError")(msgStringLength))
	}
	if !d.ignoreBOM && !d.bomSeen && len(out) > 0 {
		if out[0] == 0xFEFF {
			out = out[1:]
		}
		d.bomSeen = stream
	}
	return goja.StringFromUTF16(out)
}

const (
	decodeOK = iota
	decodeInvalid
	decodeTooLong
)

// decodeUTF8 decodes in as WHATWG's UTF-8 decoder does: each maximal
// invalid subpart becomes one U+FFFD (or fails, when fatal). When stream is
// true, an incomplete character at the end is returned in rest instead.
func decodeUTF8(in []byte, fatal, stream bool, max int) (out []uint16, rest []byte, status int) {
	out = make([]uint16, 0, min(len(in), max+1))
	for i := 0; i < len(in); {
		if len(out) > max {
			return nil, nil, decodeTooLong
		}
		b := in[i]
		if b < 0x80 {
			out = append(out, uint16(b))
			i++
			continue
		}
		var need int
		var cp rune
		lower, upper := secondByteRange(b)
		switch {
		case b >= 0xC2 && b <= 0xDF:
			need, cp = 1, rune(b&0x1F)
		case b >= 0xE0 && b <= 0xEF:
			need, cp = 2, rune(b&0x0F)
		case b >= 0xF0 && b <= 0xF4:
			need, cp = 3, rune(b&0x07)
		default:
			if fatal {
				return nil, nil, decodeInvalid
			}
			out = append(out, 0xFFFD)
			i++
			continue
		}
		j := i + 1
		for k := 0; k < need; k++ {
			if j >= len(in) {
				if stream {
					return out, in[i:], decodeOK
				}
				break
			}
			c := in[j]
			if c < lower || c > upper {
				break
			}
			lower, upper = 0x80, 0xBF
			cp = cp<<6 | rune(c&0x3F)
			j++
		}
		if j-i != need+1 {
			if fatal {
				return nil, nil, decodeInvalid
			}
			out = append(out, 0xFFFD)
			i = j
			continue
		}
		if cp >= 0x10000 {
			r1, r2 := utf16.EncodeRune(cp)
			out = append(out, uint16(r1), uint16(r2))
		} else {
			out = append(out, uint16(cp))
		}
		i = j
	}
	if len(out) > max {
		return nil, nil, decodeTooLong
	}
	return out, nil, decodeOK
}

// secondByteRange is the range WHATWG's UTF-8 decoder allows for the byte
// after lead byte b, narrowed for the leads that would otherwise start an
// overlong form, a surrogate or a code point past U+10FFFF.
func secondByteRange(b byte) (lower, upper byte) {
	switch b {
	case 0xE0:
		return 0xA0, 0xBF
	case 0xED:
		return 0x80, 0x9F
	case 0xF0:
		return 0x90, 0xBF
	case 0xF4:
		return 0x80, 0x8F
	}
	return 0x80, 0xBF
}

// decodeUTF16LE decodes in as WHATWG's UTF-16LE decoder does: a lone
// surrogate, or an odd byte at the end, becomes U+FFFD (or fails, when
// fatal). When stream is true, an odd byte or a lead surrogate at the end
// is returned in rest instead.
func decodeUTF16LE(in []byte, fatal, stream bool, max int) (out []uint16, rest []byte, status int) {
	if len(in)/2 > max {
		return nil, nil, decodeTooLong
	}
	out = make([]uint16, 0, len(in)/2+1)
	n := len(in) &^ 1
	if stream {
		if len(in) != n {
			rest = in[n:]
		}
		if n >= 2 && isHighSurrogate(uint16(in[n-2])|uint16(in[n-1])<<8) {
			n -= 2
			rest = in[n:]
		}
	}
	for i := 0; i < n; i += 2 {
		c := uint16(in[i]) | uint16(in[i+1])<<8
		switch {
		case isHighSurrogate(c) && i+3 < n && isLowSurrogate(uint16(in[i+2])|uint16(in[i+3])<<8):
			out = append(out, c, uint16(in[i+2])|uint16(in[i+3])<<8)
			i += 2
		case utf16.IsSurrogate(rune(c)):
			if fatal {
				return nil, nil, decodeInvalid
			}
			out = append(out, 0xFFFD)
		default:
			out = append(out, c)
		}
	}
	if !stream && len(in) != n {
		if fatal {
			return nil, nil, decodeInvalid
		}
		out = append(out, 0xFFFD)
	}
	return out, rest, decodeOK
}

// btoa returns the base64 of s read as Latin-1, or 1 when s has a character
// above U+00FF.
func btoa(vm *goja.Runtime, v goja.Value) goja.Value {
	s, ok := v.(goja.String)
	if !ok {
		throwTypeError(vm, "not a string")
	}
	l := s.Length()
	if base64.StdEncoding.EncodedLen(l) > maxStringLength {
		panic(lazyError(vm, "RangeError")(msgStringLength))
	}
	b := make([]byte, l)
	for i := 0; i < l; i++ {
		c := s.CharAt(i)
		if c > 0xFF {
			return vm.ToValue(1)
		}
		b[i] = byte(c)
	}
	return vm.ToValue(base64.StdEncoding.EncodeToString(b))
}

// atob is WHATWG's forgiving-base64 decode: ASCII whitespace is ignored, the
// padding is optional, and the result is a string of Latin-1 characters. It
// returns 1 for a character that is not base64 and 2 for a length that
// cannot be base64, as Node tells them apart.
func atob(vm *goja.Runtime, v goja.Value) goja.Value {
	s, ok := v.(goja.String)
	if !ok {
		throwTypeError(vm, "not a string")
	}
	l := s.Length()
	if l > maxAtobInput*2 {
		panic(lazyError(vm, "RangeError")(msgStringLength))
	}
	data := make([]byte, 0, l)
	for i := 0; i < l; i++ {
		c := s.CharAt(i)
		switch {
		case c == '\t' || c == '\n' || c == '\f' || c == '\r' || c == ' ':
			continue
		case c == '=' || c == '+' || c == '/' || c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z':
			data = append(data, byte(c))
		default:
			return vm.ToValue(1)
		}
	}
	if len(data)%4 == 0 {
		data = dropPadding(data)
	}
	if bytes.IndexByte(data, '=') >= 0 {
		return vm.ToValue(1)
	}
	if len(data)%4 == 1 {
		return vm.ToValue(2)
	}
	if len(data) > maxAtobInput {
		panic(lazyError(vm, "RangeError")(msgStringLength))
	}
	// Non-strict decoding ignores the unused bits of the last character,
	// as forgiving-base64 does.
	out := make([]byte, base64.RawStdEncoding.DecodedLen(len(data)))
	n, err := base64.RawStdEncoding.Decode(out, data)
	if err != nil {
		return vm.ToValue(1)
	}
	u := make([]uint16, n)
	for i, c := range out[:n] {
		u[i] = uint16(c)
	}
	return goja.StringFromUTF16(u)
}

// dropPadding removes one or two trailing '=' from data.
func dropPadding(data []byte) []byte {
	for k := 0; k < 2 && len(data) > 0 && data[len(data)-1] == '='; k++ {
		data = data[:len(data)-1]
	}
	return data
}
