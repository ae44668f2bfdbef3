package caddyhook

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
)

// outOf runs a hook whose body builds `out` and returns what it built.
func outOf(t *testing.T, body string, mods ...func(*Config)) map[string]any {
	t.Helper()
	src := `module.exports = async function (client, scope, audience, context, cb) {
		const out = {};
		const caught = (f) => { try { return f(); } catch (e) { return e && (e.name + (e.code !== undefined ? ' ' + e.code : '') + ': ' + e.message); } };
		` + body + `
		cb(null, {'https://t.example/out': out});
	};`
	got, ok := claimOf(t, src, func(c *Config) {
		for _, mod := range mods {
			mod(c)
		}
	}).(map[string]any)
	if !ok {
		t.Fatalf("out is not an object")
	}
	return got
}

// checkThrown checks that each of the n results in got is the message of an
// exception the script caught (not a promise that resolved, nor a Go
// error leaking through), and that those in want are as given.
func checkThrown(t *testing.T, got map[string]any, n int, want map[string]any) {
	t.Helper()
	for k, v := range got {
		s, ok := v.(string)
		if !ok || s == "" || s == "resolved" || strings.Contains(s, "goja") || strings.Contains(s, "0x") {
			t.Errorf("%s: %#v, want an exception for the script", k, v)
		}
	}
	checkOut(t, got, want)
	if len(got) != n {
		t.Errorf("%d results, want %d: %v", len(got), n, got)
	}
}

func checkOut(t *testing.T, got, want map[string]any) {
	t.Helper()
	for k, w := range want {
		if g := got[k]; !reflect.DeepEqual(g, w) {
			t.Errorf("%s = %#v, want %#v", k, g, w)
		}
	}
}

func TestGlobalGlobalAndProcess(t *testing.T) {
	got := outOf(t, `
		global.token = global.token || 'cached';
		out.global = global === globalThis && token === 'cached';
		out.envEmpty = JSON.stringify(process.env);
		process.env.FOO = 'bar';
		out.envWritable = process.env.FOO;
		out.version = /^v22\.\d+\.\d+$/.test(process.version) && process.versions.node === process.version.slice(1);
		out.platform = process.platform;
		out.arch = typeof process.arch === 'string' && process.arch.length > 0;
		out.tag = Object.prototype.toString.call(process);
		const t0 = process.hrtime();
		const d = process.hrtime(t0);
		out.hrtime = t0.length === 2 && Number.isInteger(t0[0]) && t0[1] >= 0 && t0[1] < 1e9 && d[0] >= 0 && d[1] >= 0;
		out.hrtimeBad = [caught(() => process.hrtime(1)), caught(() => process.hrtime([1]))];
		out.bigint = typeof process.hrtime.bigint() === 'bigint' && process.hrtime.bigint() > 0n;
		out.uptime = typeof process.uptime() === 'number' && process.uptime() >= 0;
		out.absent = ['exit', 'kill', 'abort', 'cwd', 'chdir', 'binding', 'dlopen', 'memoryUsage', 'pid', 'stdout']
			.filter((k) => process[k] !== undefined);
		out.events = process.on('exit', () => {}) === process && process.emit('exit') === false;
		const order = [];
		await new Promise((resolve) => {
			process.nextTick((a, b) => { order.push(a + b); resolve(); }, 'tick', '!');
			order.push('sync');
		});
		out.nextTick = order;
		out.nextTickBad = caught(() => process.nextTick(42));
		process.emitWarning('careful', 'DeprecationWarning', 'DEP0001');
		process.emitWarning(new Error('as error'));
		out.emitWarningBad = caught(() => process.emitWarning(Symbol('s')));
	`)
	checkOut(t, got, map[string]any{
		"global": true, "envEmpty": "{}", "envWritable": "bar", "version": true, "platform": "linux", "arch": true,
		"tag": "[object process]", "hrtime": true, "bigint": true, "uptime": true, "absent": []any{}, "events": true,
		"hrtimeBad": []any{
			"TypeError ERR_INVALID_ARG_TYPE: The \"time\" argument must be an instance of Array. Received type number (1)",
			"RangeError ERR_OUT_OF_RANGE: The value of \"time\" is out of range. It must be 2. Received 1",
		},
		"nextTick":       []any{"sync", "tick!"},
		"nextTickBad":    "TypeError ERR_INVALID_ARG_TYPE: The \"callback\" argument must be of type function. Received type number (42)",
		"emitWarningBad": "TypeError ERR_INVALID_ARG_TYPE: The \"warning\" argument must be of type string or an instance of Error. Received type symbol (Symbol())",
	})
}

func TestGlobalProcessWarningsAndTickErrors(t *testing.T) {
	log, logs := observed(t, zap.NewAtomicLevelAt(zap.InfoLevel))
	s := compileHook(t, `module.exports = function (client, scope, audience, context, cb) {
		process.emitWarning('careful', 'DeprecationWarning', 'DEP0001');
		cb(null, {});
	};`)
	if _, err := engine(t, s, func(c *Config) { c.Logger = log }).Run(context.Background(), input()); err != nil {
		t.Fatal(err)
	}
	if lines := logs.FilterMessage("[DEP0001] DeprecationWarning: careful").FilterLevelExact(zap.WarnLevel).Len(); lines != 1 {
		t.Errorf("emitWarning logged %d warn lines: %v", lines, logs.All())
	}

	// A callback that throws is an uncaught exception, as in Node: the run
	// fails whatever the script does next.
	s = compileHook(t, `module.exports = function (client, scope, audience, context, cb) {
		process.nextTick(() => { throw new Error('tick failed'); });
		setTimeout(() => cb(null, {}), 5);
	};`)
	_, err := engine(t, s, nil).Run(context.Background(), input())
	wantError(t, err, CodeServerError, "tick failed")
}

func TestGlobalURL(t *testing.T) {
	got := outOf(t, `
		out.same = URL === require('url').URL && URLSearchParams === require('url').URLSearchParams;
		const u = new URL('/v1/items?x=1&y=two', 'https://api.example.com');
		out.href = u.href;
		out.x = u.searchParams.get('y');
		const p = new URLSearchParams({ a: '1 2', b: 'é' });
		p.append('a', '3');
		out.params = p.toString();
		out.bad = caught(() => new URL('not a url'));
		out.desc = typeof Object.getOwnPropertyDescriptor(globalThis, 'URL').value;
	`)
	checkOut(t, got, map[string]any{
		"same": true, "href": "https://api.example.com/v1/items?x=1&y=two", "x": "two",
		"params": "a=1+2&b=%C3%A9&a=3", "desc": "function",
	})
	if bad, _ := got["bad"].(string); !strings.HasPrefix(bad, "TypeError") {
		t.Errorf("new URL('not a url') threw %q, want a TypeError", bad)
	}
}

func TestGlobalTextEncoder(t *testing.T) {
	got := outOf(t, `
		const enc = new TextEncoder();
		out.encoding = enc.encoding;
		const bytes = enc.encode('héllo€😀');
		out.isU8 = bytes instanceof Uint8Array;
		out.bytes = Array.from(bytes);
		out.lone = Array.from(enc.encode('a\ud800b\udc00'));
		out.empty = enc.encode().length;
		out.coerced = Array.from(enc.encode({ toString() { return 'ok'; } }));
		const dest = new Uint8Array(4);
		out.into = enc.encodeInto('héllo', dest);
		out.intoBytes = Array.from(dest);
		out.intoPair = enc.encodeInto('😀😀', new Uint8Array(6));
	`)
	checkOut(t, got, map[string]any{
		"encoding": "utf-8", "isU8": true,
		"bytes": []any{104.0, 195.0, 169.0, 108.0, 108.0, 111.0, 226.0, 130.0, 172.0, 240.0, 159.0, 152.0, 128.0},
		"lone":  []any{97.0, 239.0, 191.0, 189.0, 98.0, 239.0, 191.0, 189.0}, "empty": 0.0,
		"coerced":   []any{111.0, 107.0},
		"into":      map[string]any{"read": 3.0, "written": 4.0},
		"intoBytes": []any{104.0, 195.0, 169.0, 108.0},
		"intoPair":  map[string]any{"read": 2.0, "written": 4.0},
	})
}

func TestGlobalTextDecoder(t *testing.T) {
	got := outOf(t, `
		const bytes = [104, 195, 169, 108, 108, 111, 226, 130, 172];
		const d = new TextDecoder();
		out.props = [d.encoding, d.fatal, d.ignoreBOM, new TextDecoder(' UTF8 ').encoding];
		out.u8 = d.decode(new Uint8Array(bytes));
		out.ab = d.decode(new Uint8Array(bytes).buffer);
		out.view = d.decode(new DataView(new Uint8Array(bytes).buffer, 1, 2));
		out.u16 = d.decode(new Uint16Array([0x6968]));
		out.buffer = d.decode(Buffer.from('buffer'));
		out.none = d.decode();
		out.invalid = d.decode(new Uint8Array([0xE2, 0x82, 0x41, 0xFF, 0xC0, 0xAF, 0xED, 0xA0, 0x80]));
		out.truncated = d.decode(new Uint8Array([0x61, 0xF0, 0x9F, 0x98]));
		out.fatal = caught(() => new TextDecoder('utf-8', { fatal: true }).decode(new Uint8Array([0xFF])));
		out.bom = d.decode(new Uint8Array([0xEF, 0xBB, 0xBF, 0x61]));
		out.keepBOM = new TextDecoder('utf-8', { ignoreBOM: true }).decode(new Uint8Array([0xEF, 0xBB, 0xBF, 0x61])).length;
		const s = new TextDecoder();
		out.stream = s.decode(new Uint8Array([0xEF, 0xBB]), { stream: true }) + '|' +
			s.decode(new Uint8Array([0xBF, 0xE2, 0x82]), { stream: true }) + '|' + s.decode(new Uint8Array([0xAC]));
		out.streamEnd = s.decode(new Uint8Array([0xE2]), { stream: true }) + '|' + s.decode();
		out.unsupported = caught(() => new TextDecoder('utf-32'));
		const u16 = new TextDecoder('UTF-16');
		const b = (...x) => new Uint8Array(x);
		out.utf16 = [u16.encoding, u16.decode(b(0x68, 0, 0x69, 0, 0x3D, 0xD8, 0x00, 0xDE)), u16.decode(b(0x00, 0xD8, 0x41, 0x00)),
			u16.decode(b(0x41, 0x00, 0x42)), u16.decode(b(0xFF, 0xFE, 0x41, 0x00)), u16.decode(b(0x00, 0xDC))];
		out.utf16Stream = u16.decode(b(0x3D), { stream: true }) + '|' + u16.decode(b(0xD8, 0x00), { stream: true }) + '|' + u16.decode(b(0xDE));
		out.utf16Fatal = caught(() => new TextDecoder('utf-16le', { fatal: true }).decode(b(0x41)));
		out.badInput = caught(() => d.decode('text'));
		out.badOptions = caught(() => new TextDecoder('utf-8', 1));
	`)
	checkOut(t, got, map[string]any{
		"props": []any{"utf-8", false, false, "utf-8"},
		"u8":    "héllo€", "ab": "héllo€", "view": "é", "u16": "hi", "buffer": "buffer", "none": "",
		"invalid":     "\uFFFDA\uFFFD\uFFFD\uFFFD\uFFFD\uFFFD\uFFFD",
		"truncated":   "a\uFFFD",
		"fatal":       "TypeError ERR_ENCODING_INVALID_ENCODED_DATA: The encoded data was not valid for encoding utf-8",
		"bom":         "a",
		"keepBOM":     2.0,
		"stream":      "||€",
		"streamEnd":   "|\uFFFD",
		"unsupported": "RangeError ERR_ENCODING_NOT_SUPPORTED: The \"utf-32\" encoding is not supported",
		"utf16":       []any{"utf-16le", "hi😀", "\uFFFDA", "A\uFFFD", "A", "\uFFFD"},
		"utf16Stream": "||😀",
		"utf16Fatal":  "TypeError ERR_ENCODING_INVALID_ENCODED_DATA: The encoded data was not valid for encoding utf-16le",
		"badInput":    "TypeError ERR_INVALID_ARG_TYPE: The \"input\" argument must be an instance of ArrayBuffer or ArrayBufferView. Received type string ('text')",
		"badOptions":  "TypeError ERR_INVALID_ARG_TYPE: The \"options\" argument must be of type object. Received type number (1)",
	})
}

func TestGlobalBase64(t *testing.T) {
	got := outOf(t, `
		out.btoa = [btoa('hello'), btoa('\u00ff\u00fe'), btoa(''), btoa(12)];
		out.atob = [atob('aGVsbG8='), atob(' aGVs\tbG8\n'), atob('aGVsbG8'), atob('/w==').charCodeAt(0), atob('YQ'), atob('YR==')];
		out.btoaWide = caught(() => btoa('€'));
		const e = (() => { try { btoa('€'); } catch (e) { return e; } })();
		out.domException = [e instanceof DOMException, e instanceof Error, e.code, e.name];
		out.atobBad = [caught(() => atob('a$==')), caught(() => atob('a')), caught(() => atob('ab=c')), caught(() => atob('ab===')), caught(() => atob('abc=='))];
		out.missing = [caught(() => atob()), caught(() => btoa())];
		const abort = new DOMException('stopped', 'AbortError');
		out.abort = [abort.name, abort.message, abort.code, new DOMException().name];
	`)
	checkOut(t, got, map[string]any{
		"btoa":         []any{"aGVsbG8=", "//4=", "", "MTI="},
		"atob":         []any{"hello", "hello", "hello", 255.0, "a", "a"},
		"btoaWide":     "InvalidCharacterError 5: Invalid character",
		"domException": []any{true, true, 5.0, "InvalidCharacterError"},
		"atobBad": []any{
			"InvalidCharacterError 5: Invalid character",
			"InvalidCharacterError 5: The string to be decoded is not correctly encoded.",
			"InvalidCharacterError 5: Invalid character",
			"InvalidCharacterError 5: Invalid character",
			"InvalidCharacterError 5: Invalid character",
		},
		"missing": []any{
			"TypeError ERR_MISSING_ARGS: The \"input\" argument must be specified",
			"TypeError ERR_MISSING_ARGS: The \"input\" argument must be specified",
		},
		"abort": []any{"AbortError", "stopped", 20.0, "Error"},
	})
}

// TestGlobalHostileArguments hands every new global the values scripts use
// to break natives: none may panic, and each must throw to the script.
func TestGlobalHostileArguments(t *testing.T) {
	got := outOf(t, `
		const { proxy: revoked, revoke } = Proxy.revocable({}, {});
		revoke();
		const throwing = { toString() { throw new Error('toString threw'); } };
		const getter = { get fatal() { throw new Error('getter threw'); } };
		const liar = new Proxy(new Uint8Array(4), {});
		const arrayLike = { length: 2 ** 32, 0: 1 };
		const enc = new TextEncoder(), dec = new TextDecoder();
		const all = {
			encodeSymbol: () => enc.encode(Symbol('s')),
			encodeThrowing: () => enc.encode(throwing),
			encodeRevoked: () => enc.encode(revoked),
			encodeIntoProxy: () => enc.encodeInto('x', liar),
			encodeIntoArrayLike: () => enc.encodeInto('x', arrayLike),
			encodeIntoRevoked: () => enc.encodeInto('x', revoked),
			decodeProxy: () => dec.decode(liar),
			decodeArrayLike: () => dec.decode(arrayLike),
			decodeRevoked: () => dec.decode(revoked),
			decodeOptionsGetter: () => dec.decode(new Uint8Array(1), { get stream() { throw new Error('getter threw'); } }),
			decoderOptionsGetter: () => new TextDecoder('utf-8', getter),
			decoderOptionsRevoked: () => new TextDecoder('utf-8', revoked),
			decoderLabelSymbol: () => new TextDecoder(Symbol('s')),
			decodeOtherThis: () => TextDecoder.prototype.decode.call({}, new Uint8Array(1)),
			atobSymbol: () => atob(Symbol('s')),
			atobThrowing: () => atob(throwing),
			btoaRevoked: () => btoa(revoked),
			hrtimeRevoked: () => process.hrtime(revoked),
			hrtimeProxy: () => process.hrtime(new Proxy([1, 2], { get() { throw new Error('trap threw'); } })),
			nextTickSymbol: () => process.nextTick(Symbol('s')),
			warningRevoked: () => process.emitWarning('w', revoked),
			domRevoked: () => new DOMException('m', revoked),
		};
		for (const [k, f] of Object.entries(all)) out[k] = caught(f);
	`)
	checkThrown(t, got, 22, map[string]any{
		"encodeThrowing":  "Error: toString threw",
		"encodeIntoProxy": "TypeError: The \"dest\" argument must be an instance of Uint8Array.",
		"decodeProxy":     "TypeError ERR_INVALID_ARG_TYPE: The \"input\" argument must be an instance of ArrayBuffer or ArrayBufferView. Received an instance of Uint8Array",
		"hrtimeProxy":     "Error: trap threw",
	})
}

// TestGlobalAllocationCaps checks that no new global allocates more than the
// caps in one call, whatever string the script built.
func TestGlobalAllocationCaps(t *testing.T) {
	got := outOf(t, `
		const big = '€'.repeat(2 ** 25);
		out.encode = caught(() => new TextEncoder().encode(big).length);
		const ascii = 'A'.repeat(2 ** 25);
		out.btoa = caught(() => btoa(ascii).length);
		out.atob = caught(() => atob(ascii + ascii).length);
		out.atobFits = atob(ascii).length;
	`, func(c *Config) { c.Timeout = 60 * time.Second }) // strings of 32 Mi units are slow under -race
	checkOut(t, got, map[string]any{
		"encode": "RangeError: Array buffer allocation failed",
		"btoa":   "RangeError: Invalid string length",
		"atob":   "RangeError: Invalid string length",
		// 2^25 base64 characters decode to 3/4 as many bytes.
		"atobFits": float64(3 << 23),
	})
}

func TestGlobalConsoleMethods(t *testing.T) {
	log, logs := observed(t, zap.NewAtomicLevelAt(zap.DebugLevel))
	s := compileHook(t, `module.exports = function (client, scope, audience, context, cb) {
		console.dir({ a: 1 }, { depth: 0 });
		console.table([{ a: 1 }]);
		console.time(); console.timeLog(undefined, 'mid'); console.timeEnd();
		console.timeEnd('never');
		console.time('t'); console.time('t');
		console.count(); console.count(); console.count('x'); console.countReset(); console.count();
		console.countReset('nope');
		console.assert(true, 'not logged');
		console.assert(0, 'failed %s', 'here');
		console.assert(false);
		console.group('grouped'); console.group(); console.groupCollapsed('c'); console.groupEnd();
		let threw;
		try { console.count(Symbol('s')); } catch (e) { threw = e.name; }
		for (let i = 0; i < 2000; i++) console.count('label' + i);
		cb(null, {'https://t.example/out': threw});
	};`)
	res, err := engine(t, s, func(c *Config) { c.Logger = log }).Run(context.Background(), input())
	if err != nil {
		t.Fatal(err)
	}
	if string(res.Claims["https://t.example/out"]) != `"TypeError"` {
		t.Errorf("console.count(Symbol) threw %s, want TypeError", res.Claims["https://t.example/out"])
	}
	var lines []string
	for _, e := range logs.All()[:22] {
		lines = append(lines, e.Level.String()+" "+e.ContextMap()["source"].(string)+" "+e.Message)
	}
	want := []string{
		`info console.dir {"a":1}`,
		`info console.table [{"a":1}]`,
		`info console.timeLog default: `,
		`info console.timeEnd default: `,
		`warn console.timeEnd Warning: No such label 'never' for console.timeEnd()`,
		`warn console.time Warning: Label 't' already exists for console.time()`,
		`info console.count default: 1`,
		`info console.count default: 2`,
		`info console.count x: 1`,
		`info console.count default: 1`,
		`warn console.countReset Warning: Count for 'nope' does not exist`,
		`error console.assert Assertion failed: failed %s here`,
		`error console.assert Assertion failed`,
		`info console.group grouped`,
		`info console.groupCollapsed c`,
	}
	for i, w := range want {
		if i >= len(lines) || !strings.HasPrefix(lines[i], w) {
			t.Fatalf("line %d = %q, want prefix %q\nall: %q", i, lines[min(i, len(lines)-1)], w, lines)
		}
	}
	if !strings.HasSuffix(lines[2], "ms mid") || !strings.HasSuffix(lines[3], "ms") {
		t.Errorf("timers: %q %q", lines[2], lines[3])
	}
	// The line budget holds for the new methods too.
	if n := logs.Len(); n > maxConsoleLines+1 {
		t.Errorf("%d lines logged, over the budget of %d", n, maxConsoleLines)
	}
}

func TestGlobalExtensibilityUserError(t *testing.T) {
	got := outOf(t, `
		const e = new ExtensibilityUserError('a', 'b');
		out.base = [e.name, e.message, e instanceof Error];
		out.hierarchy = [new InvalidScopeError('x') instanceof ExtensibilityUserError,
			new InvalidRequestError('x') instanceof ExtensibilityUserError, new ServerError('x') instanceof ExtensibilityUserError];
		class Custom extends ExtensibilityUserError {}
		out.subclass = new Custom('m').name;
	`)
	checkOut(t, got, map[string]any{
		"base": []any{"ExtensibilityUserError", "a", true}, "hierarchy": []any{true, true, true}, "subclass": "Custom",
	})
	for _, c := range []struct{ src, desc string }{
		{`cb(new ExtensibilityUserError('not for you'))`, "not for you"},
		{`throw new ExtensibilityUserError('thrown')`, "thrown"},
		// Still 4xx through the base: the subclass's name picks the code.
		{`cb(new InvalidScopeError('bad scope'))`, "bad scope"},
	} {
		s := compileHook(t, `module.exports = function (client, scope, audience, context, cb) { `+c.src+` };`)
		_, err := engine(t, s, nil).Run(context.Background(), input())
		if c.desc == "bad scope" {
			wantError(t, err, CodeInvalidScope, c.desc)
			continue
		}
		wantError(t, err, CodeServerError, c.desc)
	}
}

// TestGlobalBuiltAfterScriptsReplacedBuiltins: the globals are built on
// first use, after the script may have replaced the builtins they use.
// What they capture before any script ran still works, and anything else
// fails as script code, never as a Go panic.
func TestGlobalBuiltAfterScriptsReplacedBuiltins(t *testing.T) {
	got := outOf(t, `
		const saved = Object.defineProperty;
		globalThis.ArrayBuffer = { isView() { throw new Error('fake isView'); } };
		globalThis.Uint8Array = function () { return 'fake'; };
		for (const name of ['encode', 'decoder', 'atob', 'btoa', 'hrtime', 'process', 'text']) {
			Object.defineProperty(Object.prototype, name, { set() { throw new Error('setter ran'); }, configurable: true });
		}
		Object.defineProperty = function () { throw new Error('defineProperty replaced'); };
		out.first = caught(() => btoa('€'));
		Object.defineProperty = saved;
		out.again = caught(() => btoa('€'));
		out.proc = typeof process;
		const bytes = new TextEncoder().encode('hi');
		out.enc = [typeof bytes, bytes.length, bytes[0]];
		out.decode = new TextDecoder().decode(bytes);
		out.base64 = atob('aGk=');
		out.hr = process.hrtime().length;
	`)
	checkOut(t, got, map[string]any{
		"first": "Error: defineProperty replaced", "again": "InvalidCharacterError 5: Invalid character", "proc": "object",
		"enc": []any{"object", 2.0, 104.0}, "decode": "hi", "base64": "hi", "hr": 2.0,
	})
}

// TestGlobalsAtTopLevel: the top level runs twice, once at config load in a
// runtime without a loop, and the globals work in both.
func TestGlobalsAtTopLevel(t *testing.T) {
	got := claimOf(t, `
		let ticked = false;
		process.nextTick(() => { ticked = true; });
		const encoded = btoa(new TextDecoder().decode(new TextEncoder().encode('top')));
		module.exports = function (client, scope, audience, context, cb) {
			cb(null, {'https://t.example/out': [ticked, encoded, typeof process.env]});
		};`, nil)
	if !reflect.DeepEqual(got, []any{true, "dG9w", "object"}) {
		t.Errorf("got %v", got)
	}
}

// hexOf is a script helper: the hex of an ArrayBuffer.
const hexOf = `const hex = (ab) => Array.from(new Uint8Array(ab), (b) => b.toString(16).padStart(2, '0')).join('');`

func TestGlobalCrypto(t *testing.T) {
	got := outOf(t, hexOf+`
		out.uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/.test(crypto.randomUUID()) && crypto.randomUUID() !== crypto.randomUUID();
		out.tags = [Object.prototype.toString.call(crypto), Object.prototype.toString.call(crypto.subtle)];
		const u8 = new Uint8Array(64);
		out.same = crypto.getRandomValues(u8) === u8 && u8.some((b) => b !== 0);
		out.types = [new Int8Array(2), new Uint8ClampedArray(2), new Int16Array(2), new Uint16Array(2), new Int32Array(2),
			new Uint32Array(2), new BigInt64Array(2), new BigUint64Array(2)].map((a) => crypto.getRandomValues(a) === a);
		out.quota = [crypto.getRandomValues(new Uint8Array(65536)).length, caught(() => crypto.getRandomValues(new Uint8Array(65537))),
			caught(() => crypto.getRandomValues(new Uint32Array(16385)))];
		out.mismatch = [new Float32Array(1), new Float64Array(1), new DataView(new ArrayBuffer(1)), new ArrayBuffer(1), [1], 'x', null]
			.map((a) => caught(() => crypto.getRandomValues(a)));
		out.missing = caught(() => crypto.getRandomValues());
		const { getRandomValues, randomUUID } = crypto;
		out.unbound = [caught(() => getRandomValues(new Uint8Array(1))), caught(() => randomUUID())];
		out.bound = crypto.getRandomValues.bind(crypto)(new Uint8Array(2)).length;
		const data = new TextEncoder().encode('abc');
		const digest = crypto.subtle.digest('SHA-256', data);
		out.promise = digest instanceof Promise;
		const ab = await digest;
		out.arrayBuffer = ab instanceof ArrayBuffer;
		out.digests = await Promise.all(['SHA-1', 'sha-256', { name: 'SHA-384' }, 'Sha-512'].map(async (a) => hex(await crypto.subtle.digest(a, data))));
		out.views = [hex(await crypto.subtle.digest('SHA-256', data.buffer)), hex(await crypto.subtle.digest('SHA-256', new DataView(data.buffer))),
			hex(await crypto.subtle.digest('SHA-256', Buffer.from('abc')))].every((h) => h === out.digests[1]);
		const rejected = async (p) => { try { await p; return 'resolved'; } catch (e) { return e.name + (e.code !== undefined ? ' ' + e.code : '') + ': ' + e.message; } };
		out.digestBad = [await rejected(crypto.subtle.digest('SHA256', data)), await rejected(crypto.subtle.digest('MD5', data)),
			await rejected(crypto.subtle.digest('SHA-256', 'abc')), await rejected(crypto.subtle.digest('SHA-256'))];
		out.unsupported = await rejected(crypto.subtle.sign('HMAC', {}, data));
		out.methods = ['encrypt', 'decrypt', 'verify', 'generateKey', 'deriveKey', 'deriveBits', 'importKey', 'exportKey', 'wrapKey', 'unwrapKey']
			.every((m) => typeof crypto.subtle[m] === 'function' && crypto.subtle[m]() instanceof Promise);
		const mod = require('crypto');
		out.module = [mod.webcrypto === crypto, require('node:crypto').webcrypto === crypto, typeof mod.createHash, mod !== crypto];
		// The old polyfill: the global replaced by the module, whose
		// webcrypto stays the runtime's own.
		const web = crypto;
		global.crypto = mod;
		out.polyfill = [crypto === mod, mod.webcrypto === web];
	`)
	h := []any{
		"a9993e364706816aba3e25717850c26c9cd0d89d",
		"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
		"cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed8086072ba1e7cc2358baeca134c825a7",
		"ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
	}
	mismatch := "TypeMismatchError 17: The data argument must be an integer-type TypedArray"
	quota := "QuotaExceededError 22: The requested length exceeds 65,536 bytes"
	checkOut(t, got, map[string]any{
		"uuid": true, "tags": []any{"[object Crypto]", "[object SubtleCrypto]"}, "same": true,
		"types":    []any{true, true, true, true, true, true, true, true},
		"quota":    []any{65536.0, quota, quota},
		"mismatch": []any{mismatch, mismatch, mismatch, mismatch, mismatch, mismatch, mismatch},
		"missing":  "TypeError ERR_MISSING_ARGS: The \"typedArray\" argument must be specified",
		"unbound": []any{
			"TypeError ERR_INVALID_THIS: Value of \"this\" must be of type Crypto",
			"TypeError ERR_INVALID_THIS: Value of \"this\" must be of type Crypto",
		},
		"bound": 2.0, "promise": true, "arrayBuffer": true, "digests": h, "views": true,
		"digestBad": []any{
			"NotSupportedError 9: Unrecognized algorithm name",
			"NotSupportedError 9: Unrecognized algorithm name",
			"TypeError ERR_INVALID_ARG_TYPE: Failed to execute 'digest' on 'SubtleCrypto': 2nd argument is not instance of ArrayBuffer, Buffer, TypedArray, or DataView.",
			"TypeError ERR_MISSING_ARGS: The \"algorithm\" and \"data\" arguments must be specified",
		},
		"unsupported": "NotSupportedError 9: crypto.subtle.sign is not supported by this runtime (only digest is)",
		"methods":     true,
		"module":      []any{true, true, "function", true},
		"polyfill":    []any{true, true},
	})
}

func TestGlobalPerformance(t *testing.T) {
	got := outOf(t, `
		const t0 = performance.now();
		let x = 0;
		for (let i = 0; i < 10000; i++) x += i;
		const t1 = performance.now();
		out.now = typeof t0 === 'number' && t0 >= 0 && t1 >= t0 && t1 !== Math.trunc(t1);
		out.origin = Math.abs(performance.timeOrigin + performance.now() - Date.now()) < 1000;
		out.tag = Object.prototype.toString.call(performance);
		const m = performance.mark('start');
		out.mark = [m.name, m.entryType, m.duration, m.startTime <= performance.now()];
		performance.mark('end', { startTime: m.startTime + 5 });
		const d = performance.measure('span', 'start', 'end');
		// startTime+5-startTime is 5 only up to rounding, as in Node.
		out.measure = [d.name, d.entryType, Math.round(d.duration * 1e6) / 1e6];
		out.measureObject = Math.round(performance.measure('o', { start: 'start', duration: 2 }).duration * 1e6) / 1e6;
		out.measureNow = performance.measure('all').startTime;
		out.unknown = caught(() => performance.measure('x', 'never'));
		performance.clearMarks('start');
		out.cleared = caught(() => performance.measure('x', 'start'));
		out.entries = [performance.getEntries().length, performance.getEntriesByName('span').length];
		out.json = Object.keys(performance.toJSON());
		out.symbol = caught(() => performance.mark(Symbol('s')));
		for (let i = 0; i < 1000; i++) performance.mark('m' + i);
		out.oldest = [caught(() => performance.measure('x', 'm0')), typeof performance.measure('x', 'm999').duration];
	`)
	checkOut(t, got, map[string]any{
		"now": true, "origin": true, "tag": "[object Performance]", "mark": []any{"start", "mark", 0.0, true},
		"measure": []any{"span", "measure", 5.0}, "measureObject": 2.0, "measureNow": 0.0,
		"unknown": "SyntaxError 12: The \"never\" performance mark has not been set",
		"cleared": "SyntaxError 12: The \"start\" performance mark has not been set",
		"entries": []any{0.0, 0.0}, "json": []any{"timeOrigin"},
		"symbol": "TypeError: Cannot convert a Symbol value to a string",
		"oldest": []any{"SyntaxError 12: The \"m0\" performance mark has not been set", "number"},
	})
}

func TestGlobalStructuredClone(t *testing.T) {
	got := outOf(t, `
		const shared = { s: 1 };
		const src = { n: 1, s: 'x', b: true, u: undefined, z: null, big: 10n, neg: -0, nan: NaN, shared, again: shared,
			arr: [1, , 3], date: new Date(86400000), re: /a+b/gi, map: new Map([[shared, 'k'], ['v', shared]]), set: new Set([1, shared]),
			boxed: [new Number(2), new String('s'), new Boolean(false)], [Symbol('skipped')]: 1, ['__proto__']: { polluted: true } };
		Object.defineProperty(src, 'hidden', { value: 1, enumerable: false });
		src.self = src;
		const c = structuredClone(src);
		out.fresh = c !== src && c.map !== src.map && c.shared !== shared;
		out.primitives = [c.n, c.s, c.b, 'u' in c && c.u === undefined, c.z, typeof c.big, Object.is(c.neg, -0), Number.isNaN(c.nan)];
		out.sharing = [c.shared === c.again, c.self === c, c.map.get('v') === c.shared, [...c.map.keys()][0] === c.shared, c.set.has(c.shared)];
		out.holes = [c.arr.length, 1 in c.arr, Array.isArray(c.arr)];
		out.date = [c.date instanceof Date, c.date.getTime(), c.date !== src.date];
		out.re = [String(c.re), c.re !== src.re, c.re.lastIndex];
		out.boxed = c.boxed.map((b) => [typeof b, b.valueOf()]);
		out.own = [Object.getOwnPropertySymbols(c).length, 'hidden' in c, Object.getPrototypeOf(c) === Object.prototype,
			Object.prototype.hasOwnProperty.call(c, '__proto__'), ({}).polluted];
		class Point { constructor() { this.x = 1; } get y() { return 2; } }
		const p = structuredClone(new Point());
		out.classInstance = [p instanceof Point, Object.getPrototypeOf(p) === Object.prototype, JSON.stringify(p)];
		const ab = new ArrayBuffer(8);
		const u8 = new Uint8Array(ab, 2, 4);
		u8.set([1, 2, 3, 4]);
		const views = structuredClone({ ab, u8, f64: new Float64Array([1.5]), dv: new DataView(ab, 1, 3), buf: Buffer.from('hi') });
		out.buffers = [views.ab !== ab, views.u8.buffer === views.ab, views.u8.byteOffset, Array.from(views.u8), views.f64[0],
			views.dv instanceof DataView, views.dv.byteLength, views.dv.buffer === views.ab, views.buf instanceof Uint8Array, Array.from(views.buf)];
		u8[0] = 9;
		out.copied = views.u8[0];
		const e = new TypeError('bad', { cause: shared });
		e.extra = 1;
		const ec = structuredClone(e);
		out.error = [ec instanceof TypeError, ec.name, ec.message, typeof ec.stack, ec.cause.s, 'extra' in ec];
		class MyError extends Error {}
		out.custom = [structuredClone(new MyError('m')) instanceof MyError, structuredClone(new MyError('m')).constructor === Error];
		out.primitiveRoots = [structuredClone(1), structuredClone('s'), structuredClone(null), structuredClone(undefined) === undefined];
		out.errors = [() => 1, function named() {}, Symbol('sym'), { f() {} }, [Symbol()], new Map([[1, () => 2]]), new WeakMap(), new WeakSet(),
			Promise.resolve(), Object(Symbol()), Object(1n)].map((v) => caught(() => structuredClone(v)));
		out.missing = caught(() => structuredClone());
		out.options = [caught(() => structuredClone(1, 'x')), caught(() => structuredClone(ab, { transfer: [ab] })), structuredClone(1, { transfer: [] })];
	`)
	checkOut(t, got, map[string]any{
		"fresh":          true,
		"primitives":     []any{1.0, "x", true, true, nil, "bigint", true, true},
		"sharing":        []any{true, true, true, true, true},
		"holes":          []any{3.0, false, true},
		"date":           []any{true, 86400000.0, true},
		"re":             []any{"/a+b/gi", true, 0.0},
		"boxed":          []any{[]any{"object", 2.0}, []any{"object", "s"}, []any{"object", false}},
		"own":            []any{0.0, false, true, true, nil},
		"classInstance":  []any{false, true, `{"x":1}`},
		"buffers":        []any{true, true, 2.0, []any{1.0, 2.0, 3.0, 4.0}, 1.5, true, 3.0, true, true, []any{104.0, 105.0}},
		"copied":         1.0,
		"error":          []any{true, "TypeError", "bad", "string", 1.0, false},
		"custom":         []any{false, true},
		"primitiveRoots": []any{1.0, "s", nil, true},
		"errors": []any{
			"DataCloneError 25: () => 1 could not be cloned.",
			"DataCloneError 25: function named() {} could not be cloned.",
			"DataCloneError 25: Symbol(sym) could not be cloned.",
			"DataCloneError 25: f() {} could not be cloned.",
			"DataCloneError 25: Symbol() could not be cloned.",
			"DataCloneError 25: () => 2 could not be cloned.",
			"DataCloneError 25: #<WeakMap> could not be cloned.",
			"DataCloneError 25: #<WeakSet> could not be cloned.",
			"DataCloneError 25: #<Promise> could not be cloned.",
			"DataCloneError 25: #<Symbol> could not be cloned.",
			"DataCloneError 25: #<BigInt> could not be cloned.",
		},
		"missing": "TypeError ERR_MISSING_ARGS: The \"value\" argument must be specified",
		"options": []any{
			"TypeError ERR_INVALID_ARG_TYPE: The \"options\" argument must be of type object. Received type string ('x')",
			"DataCloneError 25: Transferring is not supported by this runtime",
			1.0,
		},
	})
}

// TestGlobalWebHostileArguments hands crypto, performance and
// structuredClone the values scripts use to break natives: none may panic,
// and each must throw (or reject) to the script.
func TestGlobalWebHostileArguments(t *testing.T) {
	got := outOf(t, `
		const { proxy: revoked, revoke } = Proxy.revocable({}, {});
		revoke();
		const throwing = { get boom() { throw new Error('getter threw'); } };
		const trapped = new Proxy({ a: 1 }, { ownKeys() { throw new Error('trap ran'); }, get() { throw new Error('trap ran'); } });
		const liar = new Proxy(new Uint8Array(4), {});
		const rejected = async (p) => { try { await p; return 'resolved'; } catch (e) { return e && (e.name + (e.code !== undefined ? ' ' + e.code : '') + ': ' + e.message); } };
		const all = {
			cloneRevoked: () => structuredClone(revoked),
			cloneRevokedInside: () => structuredClone({ a: [revoked] }),
			cloneProxy: () => structuredClone(trapped),
			cloneProxyInMap: () => structuredClone(new Map([[1, trapped]])),
			cloneProxyArray: () => structuredClone(new Proxy([1, 2], {})),
			cloneProxyFunction: () => structuredClone(new Proxy(() => 1, {})),
			cloneThrowingGetter: () => structuredClone(throwing),
			cloneThrowingName: () => structuredClone(Object.defineProperty(new Error('e'), 'name', { get() { throw new Error('name threw'); } })),
			cloneOptionsRevoked: () => structuredClone(1, revoked),
			cloneTransferGetter: () => structuredClone(1, { get transfer() { throw new Error('transfer threw'); } }),
			cloneLiarView: () => structuredClone(liar),
			randomProxy: () => crypto.getRandomValues(liar),
			randomRevoked: () => crypto.getRandomValues(revoked),
			randomArrayLike: () => crypto.getRandomValues({ length: 2 ** 32, 0: 1 }),
			markRevoked: () => performance.mark(revoked),
			markOptionsGetter: () => performance.mark('m', { get startTime() { throw new Error('startTime threw'); } }),
			measureRevoked: () => performance.measure('m', revoked),
			measureSymbol: () => performance.measure('m', Symbol('s')),
		};
		for (const [k, f] of Object.entries(all)) out[k] = caught(f);
		const async = {
			digestRevokedAlgorithm: () => crypto.subtle.digest(revoked, new Uint8Array(1)),
			digestThrowingName: () => crypto.subtle.digest({ get name() { throw new Error('name threw'); } }, new Uint8Array(1)),
			digestSymbol: () => crypto.subtle.digest(Symbol('s'), new Uint8Array(1)),
			digestProxyData: () => crypto.subtle.digest('SHA-256', liar),
			digestRevokedData: () => crypto.subtle.digest('SHA-256', revoked),
		};
		for (const [k, f] of Object.entries(async)) out[k] = await rejected(f());
	`)
	proxy := "DataCloneError 25: #<Object> could not be cloned."
	mismatch := "TypeMismatchError 17: The data argument must be an integer-type TypedArray"
	checkThrown(t, got, 23, map[string]any{
		"cloneRevoked": proxy, "cloneRevokedInside": proxy, "cloneProxy": proxy, "cloneProxyInMap": proxy,
		"cloneProxyArray": proxy, "cloneProxyFunction": proxy, "cloneLiarView": proxy,
		"cloneThrowingGetter": "Error: getter threw", "cloneThrowingName": "Error: name threw",
		"cloneTransferGetter": "Error: transfer threw",
		"randomProxy":         mismatch, "randomRevoked": mismatch, "randomArrayLike": mismatch,
		"markOptionsGetter":  "Error: startTime threw",
		"digestThrowingName": "Error: name threw",
		"digestSymbol":       "NotSupportedError 9: Unrecognized algorithm name",
		"digestProxyData":    "TypeError ERR_INVALID_ARG_TYPE: Failed to execute 'digest' on 'SubtleCrypto': 2nd argument is not instance of ArrayBuffer, Buffer, TypedArray, or DataView.",
	})
}

// TestGlobalStructuredCloneCaps: nesting, entries and copied bytes are
// bounded, and passing a bound throws to the script instead of exhausting
// the stack or the heap.
func TestGlobalStructuredCloneCaps(t *testing.T) {
	defer func(n int) { maxCloneEntries = n }(maxCloneEntries)
	maxCloneEntries = 100000
	got := outOf(t, `
		const nest = (n) => { let v = {}; for (let i = 0; i < n; i++) v = { v }; return v; };
		const nestArrays = (n) => { let v = []; for (let i = 0; i < n; i++) v = [v]; return v; };
		let d = 0;
		for (let v = structuredClone(nest(9000)); v.v; v = v.v) d++;
		out.deepFits = d;
		out.tooDeep = caught(() => structuredClone(nest(20000)));
		out.tooDeepArrays = caught(() => structuredClone(nestArrays(100000)));
		const m = new Map(); let inner = m;
		for (let i = 0; i < 20000; i++) { const next = new Map(); inner.set(i, next); inner = next; }
		out.tooDeepMaps = caught(() => structuredClone(m));
		out.manyFit = structuredClone(Array.from({ length: 50000 }, (_, i) => i)).length;
		out.tooMany = caught(() => structuredClone(Array.from({ length: 100001 }, (_, i) => i)));
		out.tooManyObjects = caught(() => structuredClone(Array.from({ length: 60000 }, () => ({}))));
		out.tooManySet = caught(() => structuredClone(new Set(Array.from({ length: 100001 }, (_, i) => i))));
		out.sparse = structuredClone(new Array(2 ** 32 - 1)).length;
		const big = new ArrayBuffer(2 ** 25);
		out.sharedBuffer = structuredClone([big, new Uint8Array(big), big]).length;
		out.tooManyBytes = caught(() => structuredClone([big, big.slice(0), new ArrayBuffer(1)]));
	`, func(c *Config) { c.Timeout = 60 * time.Second })
	tooLarge := "DataCloneError 25: The value is too large or too deeply nested to be cloned"
	checkOut(t, got, map[string]any{
		"deepFits": 9000.0, "tooDeep": tooLarge, "tooDeepArrays": tooLarge, "tooDeepMaps": tooLarge,
		"manyFit": 50000.0, "tooMany": tooLarge, "tooManyObjects": tooLarge, "tooManySet": tooLarge,
		"sparse": 4294967295.0, "sharedBuffer": 3.0, "tooManyBytes": tooLarge,
	})
}

// TestGlobalStructuredCloneAfterBuiltinsReplaced: once built, structuredClone
// uses the intrinsics it captured, whatever the script replaces afterwards.
func TestGlobalStructuredCloneAfterBuiltinsReplaced(t *testing.T) {
	got := outOf(t, `
		const clone = structuredClone;
		const m = new Map([[1, { b: 2 }]]), s = new Set(['x']), d = new Date(5);
		const broken = () => { throw new Error('replaced builtin ran'); };
		Object.defineProperty(Object.prototype, 'get', { get() { throw new Error('descriptor read'); }, configurable: true });
		globalThis.Map = broken; globalThis.Set = broken; globalThis.Date = broken; Object.keys = broken; Reflect.apply = broken;
		Array.prototype.push = broken; Array.prototype.pop = broken; Object.getPrototypeOf = broken; Object.defineProperty = broken;
		const c = clone({ a: [1, { b: 2 }], m, s, d });
		out.c = [JSON.stringify(c.a), [...c.m][0][1].b, [...c.s][0], c.d.getTime(), c.m !== m];
	`)
	checkOut(t, got, map[string]any{"c": []any{`[1,{"b":2}]`, 2.0, "x", 5.0, true}})
}

// TestGlobalStructuredCloneCapsAfterIntrinsicsReplaced: the intrinsics
// structuredClone counts and remembers with are the runtime's own even when
// a script replaced them before its first use, so that its caps hold: here
// a Reflect.apply that forgets shared buffers and says they are empty
// made one call copy a buffer once per reference, past maxBufferBytes and
// without end.
func TestGlobalStructuredCloneCapsAfterIntrinsicsReplaced(t *testing.T) {
	got := outOf(t, `
		const realApply = Reflect.apply, has = Map.prototype.has;
		const byteLength = Object.getOwnPropertyDescriptor(ArrayBuffer.prototype, 'byteLength').get;
		Reflect.apply = function (f, self, args) {
			if (f === has) return false;
			if (f === byteLength) return 0;
			return realApply(f, self, args);
		};
		const big = new ArrayBuffer(2 ** 25);
		out.copies = caught(() => { const c = structuredClone([big, big, big]); return c[0] !== c[1] ? 'copied ' + c.length : 'shared'; });
		Reflect.apply = realApply;
	`)
	checkOut(t, got, map[string]any{"copies": "shared"})
}

// TestGlobalStructuredCloneCauseChain: an error's cause goes through the
// work list like any nesting. Cloned by recursion, a chain of 5,000 causes
// took the run past its time limit (each level's new Error captured a
// stack as deep as the recursion) before it could overflow the stack.
func TestGlobalStructuredCloneCauseChain(t *testing.T) {
	got := outOf(t, `
		let e = new Error('root');
		for (let i = 0; i < 5000; i++) e = new Error('e' + i, { cause: e });
		out.chain = caught(() => {
			let c = structuredClone(e), n = 0;
			for (; c.cause instanceof Error; c = c.cause) n++;
			return [n, c.message];
		});
		let deep = new Error('root');
		for (let i = 0; i < 20000; i++) deep = new Error('', { cause: deep });
		out.tooDeep = caught(() => structuredClone(deep));
	`, func(c *Config) { c.Timeout = 30 * time.Second }) // 25,000 errors are slow to build under -race
	checkOut(t, got, map[string]any{
		"chain":   []any{5000.0, "root"},
		"tooDeep": "DataCloneError 25: The value is too large or too deeply nested to be cloned",
	})
}
