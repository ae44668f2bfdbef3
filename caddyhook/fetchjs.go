package caddyhook

import (
	"github.com/dop251/goja"
)

// fetchLayers are the JavaScript APIs scripts call out with: WHATWG fetch
// (with Headers, Request, Response, AbortController, AbortSignal), and the
// request, axios and node-fetch modules, all written on one native
// primitive, native.call(spec, cb), that does the call in Go where every
// rule is enforced (fetch.go). They shape what a script sees, as Node 22
// and those libraries do; they hold no rule, so a script tampering with
// them gains nothing. They run before any script and keep the intrinsics
// they use, so a script replacing a global does not break them.
var fetchLayers = goja.MustCompile("caddyhook:fetch", `(function (native, I) {
'use strict';
var _defineProperty = I.defineProperty, _keys = I.keys, _create = I.create,
	_Promise = I.Promise, _resolve = I.resolve, _reject = I.reject, _all = I.all,
	_Error = I.Error, _DOMException = I.DOMException, _TypeError = I.TypeError, _RangeError = I.RangeError, _String = I.String,
	_parse = I.parse, _stringify = I.stringify, _isArray = I.isArray,
	_ArrayBuffer = I.ArrayBuffer, _isView = I.isView, _Uint8Array = I.Uint8Array, _Date = I.Date, _floor = I.floor,
	_iterator = I.iterator, _toStringTag = I.toStringTag, _Symbol = I.Symbol, _encodeURIComponent = I.encodeURIComponent,
	lower = I.lower, upper = I.upper, sliceStr = I.sliceStr, indexOf = I.indexOf, replace = I.replace, test = I.test,
	join = I.join, sort = I.sort, arrayValues = I.arrayValues, then = I.then,
	toISO = I.toISO, callFn = I.callFn, applyFn = I.applyFn, setTimeout = I.setTimeout,
	call = native.call, utf8 = native.utf8, bytes = native.bytes, base64 = native.base64,
	toBuffer = native.toBuffer, isSearchParams = native.isSearchParams, shown = native.shown;
var S = _Symbol('state');

// The getters of views and buffers, called on them directly: a view's own
// "buffer" property, or a species a script set on the constructors, could
// otherwise hand the layer something that is not an ArrayBuffer.
function getter(o, name) { return I.getOwnPropertyDescriptor(o, name).get; }
var TypedArrayProto = I.getPrototypeOf(_Uint8Array.prototype), DataViewProto = I.DataView.prototype,
	taTag = getter(TypedArrayProto, _toStringTag), taBuffer = getter(TypedArrayProto, 'buffer'),
	taOffset = getter(TypedArrayProto, 'byteOffset'), taLength = getter(TypedArrayProto, 'byteLength'),
	dvBuffer = getter(DataViewProto, 'buffer'), dvOffset = getter(DataViewProto, 'byteOffset'),
	dvLength = getter(DataViewProto, 'byteLength'), abLength = getter(_ArrayBuffer.prototype, 'byteLength'),
	setU8 = TypedArrayProto.set;

function push(a, v) { a[a.length] = v; }
function hidden(o, name, value) { _defineProperty(o, name, { value: value, writable: true, configurable: true, enumerable: false }); }
function isObject(v) { return v !== null && (typeof v === 'object' || typeof v === 'function'); }

// DOMException is the global one (globals.go), captured before any script.
function abortError() { return new _DOMException('This operation was aborted', 'AbortError'); }

// AbortSignal and AbortController.
var KEY = {};
class AbortSignal {
	constructor(key) {
		if (key !== KEY) throw new _TypeError('Illegal constructor');
		hidden(this, S, { aborted: false, reason: undefined, listeners: [] });
		this.onabort = null;
	}
	get aborted() { return this[S].aborted; }
	get reason() { return this[S].reason; }
	throwIfAborted() { if (this[S].aborted) throw this[S].reason; }
	addEventListener(type, fn, opts) {
		if (type !== 'abort' || (typeof fn !== 'function' && !(isObject(fn) && typeof fn.handleEvent === 'function'))) return;
		var list = this[S].listeners;
		for (var i = 0; i < list.length; i++) if (list[i].fn === fn) return;
		push(list, { fn: fn, once: isObject(opts) && !!opts.once });
	}
	removeEventListener(type, fn) {
		if (type !== 'abort') return;
		var list = this[S].listeners, kept = [];
		for (var i = 0; i < list.length; i++) if (list[i].fn !== fn) push(kept, list[i]);
		this[S].listeners = kept;
	}
	dispatchEvent(ev) { return true; }
	static abort(reason) { var s = new AbortSignal(KEY); signalAbort(s, reason === undefined ? abortError() : reason); return s; }
	static timeout(ms) {
		var s = new AbortSignal(KEY);
		// Unref'd, as Node's is: the program need not wait for it, so a
		// runtime it outlives its exchange in stays warm (loop.go).
		setTimeout(function () { signalAbort(s, new _DOMException('The operation was aborted due to timeout', 'TimeoutError')); }, ms).unref();
		return s;
	}
	static any(signals) {
		var s = new AbortSignal(KEY);
		for (var sig of signals) {
			if (!(sig instanceof AbortSignal)) throw new _TypeError('The "signals" argument must be an instance of AbortSignal[]');
			if (sig.aborted) { signalAbort(s, sig.reason); return s; }
		}
		for (var sig2 of signals) {
			(function (src) { onAbort(src, function () { signalAbort(s, src.reason); }); })(sig2);
		}
		return s;
	}
}
hidden(AbortSignal.prototype, _toStringTag, 'AbortSignal');
function onAbort(signal, fn) { push(signal[S].listeners, { fn: fn, once: true, internal: true }); }
function offAbort(signal, fn) {
	var list = signal[S].listeners, kept = [];
	for (var i = 0; i < list.length; i++) if (list[i].fn !== fn) push(kept, list[i]);
	signal[S].listeners = kept;
}
// signalAbort runs every listener even if one throws, then rethrows the
// first exception, which fails the run as an uncaught one would in Node.
function signalAbort(signal, reason) {
	var st = signal[S];
	if (st.aborted) return;
	st.aborted = true;
	st.reason = reason;
	var ev = { type: 'abort', target: signal, currentTarget: signal }, failed = false, failure;
	var list = st.listeners;
	st.listeners = [];
	var run = function (f) {
		try { if (typeof f === 'function') callFn(f, signal, ev); else callFn(f.handleEvent, f, ev); }
		catch (e) { if (!failed) { failed = true; failure = e; } }
	};
	if (typeof signal.onabort === 'function') run(signal.onabort);
	for (var i = 0; i < list.length; i++) run(list[i].fn);
	if (failed) throw failure;
}
class AbortController {
	constructor() { hidden(this, S, new AbortSignal(KEY)); }
	get signal() { return this[S]; }
	abort(reason) { signalAbort(this[S], reason === undefined ? abortError() : reason); }
}
hidden(AbortController.prototype, _toStringTag, 'AbortController');

// Headers: a list of [lower-case name, value], combined when read.
var tokenRE = /^[!#$%&'*+\-.^_\x60|~0-9A-Za-z]+$/, badValueRE = /[\0\r\n]/;
function headerName(n) {
	n = _String(n);
	// Neither the name nor the value is quoted, unlike undici: a script
	// that gets them wrong may have put a key in either, and the message
	// can end up in error_description.
	if (!test(tokenRE, n)) throw new _TypeError('Headers.append: invalid header name.');
	return lower(n);
}
function headerValue(v) {
	v = replace(_String(v), /^[\t\n\r ]+|[\t\n\r ]+$/g, '');
	if (test(badValueRE, v)) throw new _TypeError('Headers.append: invalid header value.');
	return v;
}
class Headers {
	constructor(init) {
		hidden(this, S, []);
		if (init === undefined || init === null) return;
		if (!isObject(init)) throw new _TypeError("Failed to construct 'Headers': The provided value is not of type 'HeadersInit'");
		if (init instanceof Headers) {
			var src = init[S];
			for (var i = 0; i < src.length; i++) push(this[S], [src[i][0], src[i][1]]);
		} else if (typeof init[_iterator] === 'function') {
			for (var pair of init) {
				if (!isObject(pair) || pair.length !== 2) throw new _TypeError('Headers constructor: expected name/value pair to be length 2, found ' + (pair && pair.length) + '.');
				this.append(pair[0], pair[1]);
			}
		} else {
			var ks = _keys(init);
			for (var j = 0; j < ks.length; j++) this.append(ks[j], init[ks[j]]);
		}
	}
	append(name, value) { push(this[S], [headerName(name), headerValue(value)]); }
	set(name, value) {
		name = headerName(name); value = headerValue(value);
		this.delete(name);
		push(this[S], [name, value]);
	}
	delete(name) {
		name = headerName(name);
		var kept = [], list = this[S];
		for (var i = 0; i < list.length; i++) if (list[i][0] !== name) push(kept, list[i]);
		hidden(this, S, kept);
	}
	get(name) {
		name = headerName(name);
		var found = [], list = this[S];
		for (var i = 0; i < list.length; i++) if (list[i][0] === name) push(found, list[i][1]);
		return found.length ? join(found, ', ') : null;
	}
	getSetCookie() {
		var found = [], list = this[S];
		for (var i = 0; i < list.length; i++) if (list[i][0] === 'set-cookie') push(found, list[i][1]);
		return found;
	}
	has(name) { return this.get(name) !== null; }
	forEach(fn, thisArg) {
		var all = combined(this);
		for (var i = 0; i < all.length; i++) callFn(fn, thisArg, all[i][1], all[i][0], this);
	}
	entries() { return arrayValues(combined(this)); }
	keys() { var all = combined(this), out = []; for (var i = 0; i < all.length; i++) push(out, all[i][0]); return arrayValues(out); }
	values() { var all = combined(this), out = []; for (var i = 0; i < all.length; i++) push(out, all[i][1]); return arrayValues(out); }
	[_iterator]() { return this.entries(); }
}
hidden(Headers.prototype, _toStringTag, 'Headers');
// combined is the sorted, combined view fetch iterates; set-cookie stays
// one entry per value.
function combined(h) {
	var list = h[S], names = [], seen = {}, out = [];
	for (var i = 0; i < list.length; i++) if (!seen['$' + list[i][0]]) { seen['$' + list[i][0]] = true; push(names, list[i][0]); }
	sort(names);
	for (var j = 0; j < names.length; j++) {
		if (names[j] === 'set-cookie') {
			var cookies = h.getSetCookie();
			for (var k = 0; k < cookies.length; k++) push(out, ['set-cookie', cookies[k]]);
		} else push(out, [names[j], h.get(names[j])]);
	}
	return out;
}

// Bodies are kept as a string or an ArrayBuffer; null is no body.
function extractBody(body) {
	if (body === undefined || body === null) return { data: null, type: null };
	if (typeof body === 'string') return { data: body, type: 'text/plain;charset=UTF-8' };
	if (isSearchParams(body)) return { data: _String(body), type: 'application/x-www-form-urlencoded;charset=UTF-8' };
	if (body instanceof _ArrayBuffer) return { data: copyAB(body), type: null };
	if (_isView(body)) return { data: viewBytes(body), type: null };
	return { data: _String(body), type: 'text/plain;charset=UTF-8' };
}
// viewBytes and copyAB copy into a new ArrayBuffer without slice, whose
// species a script may have changed.
function viewBytes(v) {
	var ta = callFn(taTag, v) !== undefined;
	var len = callFn(ta ? taLength : dvLength, v);
	return copyBytes(new _Uint8Array(callFn(ta ? taBuffer : dvBuffer, v), callFn(ta ? taOffset : dvOffset, v), len), len);
}
function copyAB(ab) { var len = callFn(abLength, ab); return copyBytes(new _Uint8Array(ab, 0, len), len); }
function copyBytes(src, len) { var out = new _ArrayBuffer(len); callFn(setU8, new _Uint8Array(out), src); return out; }
function bodyText(data) { return data === null ? '' : typeof data === 'string' ? data : utf8(data); }
function bodyBytes(data) { return data === null ? new _ArrayBuffer(0) : typeof data === 'string' ? bytes(data) : copyAB(data); }

function consume(self) {
	var st = self[S];
	if (st.used) return _reject(new _TypeError('Body is unusable: Body has already been read'));
	if (st.data !== null) st.used = true;
	return _resolve(st.data);
}
var bodyMethods = {
	text() { return then(consume(this), bodyText); },
	json() { return then(consume(this), function (d) { return _parse(bodyText(d)); }); },
	arrayBuffer() { return then(consume(this), bodyBytes); },
	bytes() { return then(consume(this), function (d) { return new _Uint8Array(bodyBytes(d)); }); },
};
function mixBody(proto) {
	var names = _keys(bodyMethods);
	for (var i = 0; i < names.length; i++) hidden(proto, names[i], bodyMethods[names[i]]);
	_defineProperty(proto, 'bodyUsed', { get: function () { return this[S].used; }, configurable: true });
}

var redirectModes = { follow: true, manual: true, error: true };
var upperMethods = { DELETE: true, GET: true, HEAD: true, OPTIONS: true, POST: true, PUT: true, PATCH: true };
// Every message built from a URL shows it as Go's shownURL does: no
// query, no credentials.
function parseURL(u) {
	if (!test(/^[a-zA-Z][a-zA-Z0-9+.\-]*:/, u)) throw new _TypeError('Failed to parse URL from ' + shown(u));
	return u;
}

class Request {
	constructor(input, init) {
		if (init === undefined || init === null) init = {};
		if (!isObject(init)) throw new _TypeError("Failed to construct 'Request': cannot convert init to dictionary");
		var st = { url: '', method: 'GET', headers: null, data: null, used: false, redirect: 'follow', signal: null };
		var fromReq = input instanceof Request;
		if (fromReq) {
			var src = input[S];
			st.url = src.url; st.method = src.method; st.data = src.data; st.redirect = src.redirect; st.signal = src.signal;
		} else {
			st.url = parseURL(_String(input));
		}
		if (init.method !== undefined) {
			var m = _String(init.method);
			if (!test(tokenRE, m)) throw new _TypeError("'" + m + "' is not a valid HTTP method.");
			st.method = upperMethods[upper(m)] ? upper(m) : m;
		}
		st.headers = new Headers(init.headers !== undefined ? init.headers : fromReq ? input[S].headers : undefined);
		if (init.redirect !== undefined) {
			if (!redirectModes[init.redirect]) throw new _TypeError("Failed to construct 'Request': '" + init.redirect + "' is not a valid redirect mode");
			st.redirect = init.redirect;
		}
		if (init.signal !== undefined && init.signal !== null) {
			if (!(init.signal instanceof AbortSignal)) throw new _TypeError("Failed to construct 'Request': member signal is not of type AbortSignal.");
			st.signal = init.signal;
		}
		if (init.body !== undefined && init.body !== null) {
			if (st.method === 'GET' || st.method === 'HEAD') throw new _TypeError('Request with GET/HEAD method cannot have body.');
			var b = extractBody(init.body);
			st.data = b.data;
			if (b.type && !st.headers.has('content-type')) st.headers.set('content-type', b.type);
		}
		hidden(this, S, st);
	}
	get url() { return this[S].url; }
	get method() { return this[S].method; }
	get headers() { return this[S].headers; }
	get redirect() { return this[S].redirect; }
	get signal() { var st = this[S]; if (!st.signal) st.signal = new AbortSignal(KEY); return st.signal; }
	clone() {
		if (this[S].used) throw new _TypeError('Request.clone: Body has already been consumed.');
		return new Request(this);
	}
}
mixBody(Request.prototype);
hidden(Request.prototype, _toStringTag, 'Request');

var nullBodyStatus = { 101: true, 103: true, 204: true, 205: true, 304: true };
class Response {
	constructor(body, init) {
		if (init === undefined || init === null) init = {};
		var status = init.status === undefined ? 200 : +init.status;
		if (!(status >= 200 && status <= 599) || status !== _floor(status)) throw new _RangeError('init["status"] must be in the range of 200 to 599, inclusive.');
		var st = { status: status, statusText: init.statusText === undefined ? '' : _String(init.statusText),
			headers: new Headers(init.headers), data: null, used: false, url: '', redirected: false, type: 'default' };
		if (body !== undefined && body !== null) {
			if (nullBodyStatus[status]) throw new _TypeError('Response constructor: Invalid response status code ' + status);
			var b = extractBody(body);
			st.data = b.data;
			if (b.type && !st.headers.has('content-type')) st.headers.set('content-type', b.type);
		}
		hidden(this, S, st);
	}
	get status() { return this[S].status; }
	get statusText() { return this[S].statusText; }
	get ok() { return this[S].status >= 200 && this[S].status <= 299; }
	get headers() { return this[S].headers; }
	get url() { return this[S].url; }
	get redirected() { return this[S].redirected; }
	get type() { return this[S].type; }
	clone() {
		var st = this[S];
		if (st.used) throw new _TypeError('Response.clone: Body has already been consumed.');
		var r = _create(Response.prototype);
		hidden(r, S, { status: st.status, statusText: st.statusText, headers: new Headers(st.headers), data: st.data,
			used: false, url: st.url, redirected: st.redirected, type: st.type });
		return r;
	}
	static json(data, init) {
		var r = new Response(_stringify(data), init);
		r.headers.set('content-type', 'application/json');
		return r;
	}
	static error() {
		var r = _create(Response.prototype);
		hidden(r, S, { status: 0, statusText: '', headers: new Headers(), data: null, used: false, url: '', redirected: false, type: 'error' });
		return r;
	}
	static redirect(url, status) {
		var r = new Response(null, { status: status === undefined ? 302 : status, headers: { location: _String(url) } });
		return r;
	}
}
mixBody(Response.prototype);
hidden(Response.prototype, _toStringTag, 'Response');

function responseOf(res) {
	var h = new Headers(), list = res.headers;
	for (var i = 0; i < list.length; i++) push(h[S], [list[i][0], list[i][1]]);
	var r = _create(Response.prototype);
	hidden(r, S, { status: res.status, statusText: res.statusText, headers: h, data: res.body, used: false,
		url: res.url, redirected: res.redirected, type: 'basic' });
	return r;
}

// send makes one call through Go. signal (ours, or null) aborts it: the
// callback then gets the signal's reason at once, and the Go side stops.
function send(spec, signal, cb) {
	if (signal && signal.aborted) { cb({ aborted: true, reason: signal.reason }); return; }
	var settled = false, cancel = null;
	var abort = function () {
		if (settled) return;
		settled = true;
		if (cancel) cancel();
		cb({ aborted: true, reason: signal.reason });
	};
	if (signal) onAbort(signal, abort);
	cancel = call(spec, function (err, res) {
		if (settled) return;
		settled = true;
		if (signal) offAbort(signal, abort);
		cb(err, res);
	});
}

function withCause(e, err) {
	var cause = new _Error(err.message);
	if (err.code) cause.code = err.code;
	hidden(e, 'cause', cause);
	return e;
}

// fetch fails as undici does: a TypeError 'fetch failed' whose cause says
// why, or the abort reason. A call a rule refused says so in the message.
function fetch(input, init) {
	var req;
	try { req = new Request(input, init); } catch (e) { return _reject(e); }
	var st = req[S];
	var headers = new Headers(st.headers);
	if (!headers.has('accept')) headers.set('accept', '*/*');
	if (!headers.has('user-agent')) headers.set('user-agent', 'node');
	return new _Promise(function (resolve, reject) {
		send({ method: st.method, url: st.url, headers: combined(headers), body: st.data, redirect: st.redirect },
			st.signal, function (err, res) {
				if (!err) resolve(responseOf(res));
				else if (err.aborted) reject(err.reason);
				else reject(withCause(new _TypeError(err.refused ? err.message : 'fetch failed'), err));
			});
	});
}


// Lower-cased header object as Node's IncomingMessage has: repeated
// values joined with ", ", set-cookie as an array.
function nodeHeaders(list) {
	var out = {};
	for (var i = 0; i < list.length; i++) {
		var n = list[i][0], v = list[i][1];
		if (n === 'set-cookie') { if (!out[n]) out[n] = []; push(out[n], v); }
		else out[n] = out[n] === undefined ? v : out[n] + ', ' + v;
	}
	return out;
}
function findHeader(headers, name) {
	var ks = _keys(headers);
	for (var i = 0; i < ks.length; i++) if (lower(ks[i]) === name) return ks[i];
	return undefined;
}
function setDefaultHeader(headers, name, value) { if (findHeader(headers, lower(name)) === undefined) headers[name] = value; }
function pairsOf(headers) {
	var out = [], ks = _keys(headers);
	for (var i = 0; i < ks.length; i++) {
		var v = headers[ks[i]];
		if (v === undefined || v === null) continue;
		if (_isArray(v)) { for (var j = 0; j < v.length; j++) push(out, [ks[i], _String(v[j])]); }
		else push(out, [ks[i], _String(v)]);
	}
	return out;
}
function assign(target) {
	for (var i = 1; i < arguments.length; i++) {
		var src = arguments[i];
		if (!isObject(src)) continue;
		var ks = _keys(src);
		for (var j = 0; j < ks.length; j++) target[ks[j]] = src[ks[j]];
	}
	return target;
}
function isBinary(v) { return v instanceof _ArrayBuffer || _isView(v); }
function rawBody(v) { return v instanceof _ArrayBuffer ? copyAB(v) : viewBytes(v); }
function appendQuery(url, q) {
	if (!q) return url;
	var hash = indexOf(url, '#');
	if (hash >= 0) url = sliceStr(url, 0, hash);
	return url + (indexOf(url, '?') >= 0 ? '&' : '?') + q;
}

// qsStringify is the qs package's default, which request uses:
// a[0]=1&a[1]=2, a[b]=c, brackets percent-encoded.
function qsStringify(obj, prefix) {
	var parts = [];
	var add = function (key, v) {
		if (v === undefined) return;
		if (v === null) { push(parts, _encodeURIComponent(key) + '='); return; }
		if (v instanceof _Date) v = toISO(v);
		if (isObject(v)) { var inner = qsStringify(v, key); if (inner) push(parts, inner); return; }
		push(parts, _encodeURIComponent(key) + '=' + _encodeURIComponent(_String(v)));
	};
	if (_isArray(obj)) { for (var i = 0; i < obj.length; i++) add(prefix + '[' + i + ']', obj[i]); }
	else { var ks = _keys(obj); for (var j = 0; j < ks.length; j++) add(prefix === undefined ? ks[j] : prefix + '[' + ks[j] + ']', obj[ks[j]]); }
	return join(parts, '&');
}

function nodeError(err) {
	var e = new _Error(err.message);
	if (err.code) { e.code = err.code; e.errno = err.code; }
	return e;
}

// The request package: request(uri[, options], callback).
function initParams(uri, options, callback) {
	if (typeof options === 'function') callback = options;
	var params = {};
	if (isObject(options) && typeof options !== 'function') assign(params, options, { uri: uri });
	else if (typeof uri === 'string') params.uri = uri;
	else assign(params, uri);
	params.callback = callback || params.callback;
	return params;
}
function makeRequest(defaults) {
	function request(uri, options, callback) {
		if (uri === undefined) throw new _Error('undefined is not a valid uri or options object.');
		var params = initParams(uri, options, callback);
		var opts = assign({}, defaults, params);
		opts.headers = assign({}, defaults.headers, params.headers);
		return runRequest(opts, params.callback);
	}
	var verb = function (method) {
		return function (uri, options, callback) {
			var params = initParams(uri, options, callback);
			params.method = method;
			return request(params, params.callback);
		};
	};
	request.get = verb('GET'); request.head = verb('HEAD'); request.options = verb('OPTIONS');
	request.post = verb('POST'); request.put = verb('PUT'); request.patch = verb('PATCH');
	request.del = verb('DELETE'); request['delete'] = verb('DELETE');
	request.defaults = function (opts) {
		var merged = assign({}, defaults, opts);
		merged.headers = assign({}, defaults.headers, isObject(opts) ? opts.headers : undefined);
		return makeRequest(merged);
	};
	request.jar = function () { return {}; };
	request.initParams = initParams;
	return request;
}
function runRequest(opts, callback) {
	var cb = typeof callback === 'function' ? callback : function () {};
	var uri = opts.url !== undefined ? opts.url : opts.uri;
	if (isObject(uri) && uri.href !== undefined) uri = uri.href;
	var handle = { method: upper(_String(opts.method || 'GET')), abort: function () {} };
	var fail = function (e) { setTimeout(function () { cb(e); }, 0); return handle; };
	if (typeof uri !== 'string' || uri === '') return fail(new _Error('options.uri is a required argument'));
	if (opts.baseUrl !== undefined) {
		if (typeof opts.baseUrl !== 'string') return fail(new _Error('options.baseUrl must be a string'));
		if (test(/^[a-z][a-z0-9+.\-]*:\/\//i, uri)) return fail(new _Error('options.uri must be a path when using options.baseUrl'));
		var base = opts.baseUrl, slash = base[base.length - 1] === '/', lead = uri[0] === '/';
		uri = slash && lead ? base + sliceStr(uri, 1) : !slash && !lead && uri !== '' ? base + '/' + uri : base + uri;
	}
	if (isObject(opts.qs)) uri = appendQuery(uri, qsStringify(opts.qs));
	var headers = assign({}, opts.headers);
	var body = null;
	if (opts.form !== undefined) {
		body = typeof opts.form === 'string' ? opts.form : qsStringify(opts.form);
		setDefaultHeader(headers, 'content-type', 'application/x-www-form-urlencoded');
	} else if (opts.json !== undefined && opts.json !== false && opts.json !== true) {
		body = _stringify(opts.json);
		setDefaultHeader(headers, 'content-type', 'application/json');
	} else if (opts.body !== undefined && opts.body !== null) {
		if (opts.json === true && !isBinary(opts.body) && typeof opts.body !== 'string') {
			body = _stringify(opts.body);
			setDefaultHeader(headers, 'content-type', 'application/json');
		} else body = isBinary(opts.body) ? rawBody(opts.body) : _String(opts.body);
	}
	if (opts.json) setDefaultHeader(headers, 'accept', 'application/json');
	if (isObject(opts.auth)) {
		var a = opts.auth;
		if (a.bearer !== undefined) {
			var token = typeof a.bearer === 'function' ? a.bearer() : a.bearer;
			headers.authorization = 'Bearer ' + token;
		} else {
			var user = a.user !== undefined ? a.user : a.username, pass = a.pass !== undefined ? a.pass : a.password;
			headers.authorization = 'Basic ' + base64((user === undefined ? '' : _String(user)) + ':' + (pass === undefined ? '' : _String(pass)));
		}
	}
	var follow = opts.followRedirect !== false && (handle.method === 'GET' || handle.method === 'HEAD' || !!opts.followAllRedirects);
	if (opts.maxRedirects === 0) follow = false;
	var signal = new AbortSignal(KEY);
	handle.abort = function () { signalAbort(signal, abortError()); };
	handle.uri = { href: uri };
	send({ method: handle.method, url: uri, headers: pairsOf(headers), body: body,
		redirect: follow ? 'follow' : 'manual', timeout: opts.timeout }, signal, function (err, res) {
		if (err) {
			if (err.aborted) return;
			var e = nodeError(err);
			if (err.code === 'ETIMEDOUT' && opts.timeout) e.connect = false;
			cb(e);
			return;
		}
		var resBody = opts.encoding === null ? toBuffer(res.body) : utf8(res.body);
		if (opts.json && typeof resBody === 'string' && resBody !== '') {
			try { resBody = _parse(resBody); } catch (e) { /* request keeps a body that is not JSON as text */ }
		}
		var response = { statusCode: res.status, statusMessage: res.statusText, headers: nodeHeaders(res.headers),
			body: resBody, url: '', httpVersion: '1.1', request: { uri: { href: res.url }, method: handle.method, href: res.url } };
		hidden(response, 'toJSON', function () {
			return { statusCode: this.statusCode, body: this.body, headers: this.headers, request: this.request };
		});
		cb(null, response, resBody);
	});
	return handle;
}

// axios, as its Node adapter behaves.
class AxiosError extends _Error {
	constructor(message, code, config, request, response) {
		super(message);
		hidden(this, 'name', 'AxiosError');
		this.isAxiosError = true;
		if (code) this.code = code;
		if (config) this.config = config;
		if (request) this.request = request;
		if (response) { this.response = response; this.status = response.status; }
	}
	toJSON() {
		return { message: this.message, name: this.name, code: this.code, status: this.status,
			config: this.config, stack: this.stack };
	}
}
var axiosCodes = ['ERR_BAD_OPTION_VALUE', 'ERR_BAD_OPTION', 'ECONNABORTED', 'ETIMEDOUT', 'ERR_NETWORK',
	'ERR_FR_TOO_MANY_REDIRECTS', 'ERR_DEPRECATED', 'ERR_BAD_RESPONSE', 'ERR_BAD_REQUEST', 'ERR_CANCELED',
	'ERR_NOT_SUPPORT', 'ERR_INVALID_URL'];
for (var ac = 0; ac < axiosCodes.length; ac++) AxiosError[axiosCodes[ac]] = axiosCodes[ac];
class CanceledError extends AxiosError {
	constructor(message, config, request) {
		super(message === undefined || message === null ? 'canceled' : message, 'ERR_CANCELED', config, request);
		hidden(this, 'name', 'CanceledError');
		this.__CANCEL__ = true;
	}
}
var axiosMethodKeys = ['common', 'delete', 'get', 'head', 'post', 'put', 'patch', 'options', 'purge', 'link', 'unlink'];
var isMethodKey = {};
for (var mk = 0; mk < axiosMethodKeys.length; mk++) isMethodKey[axiosMethodKeys[mk]] = true;
function axiosDefaults() {
	return { timeout: 0, maxRedirects: 21, maxContentLength: -1, responseType: 'json',
		validateStatus: function (s) { return s >= 200 && s < 300; },
		headers: { common: { Accept: 'application/json, text/plain, */*' } } };
}
function mergeConfig(a, b) {
	var out = assign({}, a, b);
	var ha = isObject(a) ? a.headers : undefined, hb = isObject(b) ? b.headers : undefined;
	out.headers = assign({}, ha, hb);
	for (var i = 0; i < axiosMethodKeys.length; i++) {
		var k = axiosMethodKeys[i];
		if (isObject(ha && ha[k]) || isObject(hb && hb[k])) out.headers[k] = assign({}, ha && ha[k], hb && hb[k]);
	}
	return out;
}
function axiosEncode(v) {
	return replace(replace(replace(replace(replace(replace(_encodeURIComponent(v), /%3A/gi, ':'), /%24/g, '$'),
		/%2C/gi, ','), /%20/g, '+'), /%5B/gi, '['), /%5D/gi, ']');
}
function axiosParams(params, serializer) {
	if (typeof serializer === 'function') return serializer(params);
	if (isObject(serializer) && typeof serializer.serialize === 'function') return serializer.serialize(params);
	if (isSearchParams(params)) return _String(params);
	var parts = [], ks = _keys(params);
	for (var i = 0; i < ks.length; i++) {
		var key = ks[i], val = params[key];
		if (val === null || val === undefined) continue;
		var list = _isArray(val) ? val : [val];
		if (_isArray(val)) key = key + '[]';
		for (var j = 0; j < list.length; j++) {
			var v = list[j];
			if (v instanceof _Date) v = toISO(v);
			else if (isObject(v)) v = _stringify(v);
			push(parts, axiosEncode(key) + '=' + axiosEncode(v));
		}
	}
	return join(parts, '&');
}
function axiosDispatch(config) {
	return new _Promise(function (resolve, reject) {
		var method = lower(_String(config.method || 'get'));
		config.method = method;
		var url = config.url === undefined ? '' : _String(config.url);
		if (config.baseURL && !test(/^([a-z][a-z\d+\-.]*:)?\/\//i, url)) {
			url = url ? replace(config.baseURL, /\/?\/$/, '') + '/' + replace(url, /^\/+/, '') : config.baseURL;
		}
		if (config.params) url = appendQuery(url, axiosParams(config.params, config.paramsSerializer));
		var hs = config.headers || {}, headers = {};
		assign(headers, hs.common, hs[method]);
		var ks = _keys(hs);
		for (var i = 0; i < ks.length; i++) if (!isMethodKey[ks[i]]) headers[ks[i]] = hs[ks[i]];
		var data = config.data, body = null;
		if (data !== undefined && data !== null) {
			if (isSearchParams(data)) { body = _String(data); setDefaultHeader(headers, 'Content-Type', 'application/x-www-form-urlencoded;charset=utf-8'); }
			else if (isBinary(data)) body = rawBody(data);
			else if (isObject(data)) { body = _stringify(data); setDefaultHeader(headers, 'Content-Type', 'application/json'); }
			else body = _String(data);
		}
		if (isObject(config.auth)) {
			var ah = findHeader(headers, 'authorization');
			if (ah !== undefined) delete headers[ah];
			headers.Authorization = 'Basic ' + base64((config.auth.username || '') + ':' + (config.auth.password || ''));
		}
		setDefaultHeader(headers, 'User-Agent', 'axios/1.7.9');
		var signal = config.signal;
		if (signal !== undefined && signal !== null && !(signal instanceof AbortSignal)) signal = null;
		var request = { method: upper(method), path: url };
		var timeout = +config.timeout > 0 ? +config.timeout : undefined;
		send({ method: upper(method), url: url, headers: pairsOf(headers), body: body,
			redirect: config.maxRedirects === 0 ? 'manual' : 'follow', timeout: timeout }, signal || null, function (err, res) {
			if (err) {
				if (err.aborted) { reject(new CanceledError(null, config, request)); return; }
				if (err.code === 'ETIMEDOUT' && timeout) {
					reject(new AxiosError(config.timeoutErrorMessage || 'timeout of ' + timeout + 'ms exceeded',
						'ECONNABORTED', config, request));
					return;
				}
				reject(new AxiosError(err.message, err.code || 'ERR_NETWORK', config, request));
				return;
			}
			var rt = config.responseType, out;
			if (rt === 'arraybuffer') out = toBuffer(res.body);
			else {
				out = utf8(res.body);
				if ((rt === undefined || rt === 'json') && out !== '') {
					try { out = _parse(out); } catch (e) { /* axios keeps a body that is not JSON as text */ }
				}
			}
			var response = { data: out, status: res.status, statusText: res.statusText,
				headers: nodeHeaders(res.headers), config: config, request: request };
			var validate = config.validateStatus;
			if (!res.status || !validate || validate(res.status)) { resolve(response); return; }
			var kind = _floor(res.status / 100) - 4;
			reject(new AxiosError('Request failed with status code ' + res.status,
				kind === 0 ? 'ERR_BAD_REQUEST' : kind === 1 ? 'ERR_BAD_RESPONSE' : undefined, config, request, response));
		});
	});
}
function interceptors() {
	var list = [];
	return { handlers: list,
		use: function (fulfilled, rejected) { push(list, { fulfilled: fulfilled, rejected: rejected }); return list.length - 1; },
		eject: function (id) { if (list[id]) list[id] = null; },
		clear: function () { list.length = 0; } };
}
function createAxios(defaults) {
	var ic = { request: interceptors(), response: interceptors() };
	function axiosRequest(configOrUrl, config) {
		if (typeof configOrUrl === 'string') config = assign({}, config, { url: configOrUrl });
		else config = configOrUrl || {};
		var merged = mergeConfig(axios.defaults, config);
		var p = _resolve(merged);
		var reqs = ic.request.handlers;
		for (var i = reqs.length - 1; i >= 0; i--) if (reqs[i]) p = then(p, reqs[i].fulfilled, reqs[i].rejected);
		p = then(p, axiosDispatch);
		var ress = ic.response.handlers;
		for (var j = 0; j < ress.length; j++) if (ress[j]) p = then(p, ress[j].fulfilled, ress[j].rejected);
		return p;
	}
	var axios = function (configOrUrl, config) { return axiosRequest(configOrUrl, config); };
	axios.defaults = defaults;
	axios.interceptors = ic;
	axios.request = axiosRequest;
	var noData = ['get', 'delete', 'head', 'options'], withData = ['post', 'put', 'patch'];
	for (var i = 0; i < noData.length; i++) {
		(function (method) {
			axios[method] = function (url, config) { return axiosRequest(assign({}, config, { method: method, url: url })); };
		})(noData[i]);
	}
	for (var j = 0; j < withData.length; j++) {
		(function (method) {
			axios[method] = function (url, data, config) { return axiosRequest(assign({}, config, { method: method, url: url, data: data })); };
		})(withData[j]);
	}
	axios.getUri = function (config) {
		var c = mergeConfig(axios.defaults, config), url = c.url || '';
		if (c.baseURL && !test(/^([a-z][a-z\d+\-.]*:)?\/\//i, url)) url = replace(c.baseURL, /\/?\/$/, '') + '/' + replace(url, /^\/+/, '');
		return c.params ? appendQuery(url, axiosParams(c.params, c.paramsSerializer)) : url;
	};
	axios.create = function (config) { return createAxios(mergeConfig(axios.defaults, config)); };
	axios.isAxiosError = function (e) { return isObject(e) && e.isAxiosError === true; };
	axios.isCancel = function (e) { return !!(isObject(e) && e.__CANCEL__); };
	axios.AxiosError = AxiosError;
	axios.CanceledError = CanceledError;
	axios.all = function (ps) { return _all(ps); };
	axios.spread = function (fn) { return function (arr) { return applyFn(fn, null, arr); }; };
	axios.VERSION = '1.7.9';
	axios.default = axios;
	axios.axios = axios;
	return axios;
}

// node-fetch 2: the module is fetch; failures are FetchError, aborts
// AbortError, and its own timeout option.
class FetchError extends _Error {
	constructor(message, type, systemError) {
		super(message);
		hidden(this, 'name', 'FetchError');
		this.type = type;
		if (systemError) { this.code = this.errno = systemError.code; this.erroredSysCall = systemError.syscall; }
	}
}
class NodeFetchAbortError extends _Error {
	constructor(message) { super(message); hidden(this, 'name', 'AbortError'); this.type = 'aborted'; }
}
function nodeFetch(input, init) {
	var req;
	try { req = new Request(input, init); } catch (e) { return _reject(e); }
	var st = req[S], timeout = isObject(init) && +init.timeout > 0 ? +init.timeout : undefined;
	var headers = new Headers(st.headers);
	if (!headers.has('accept')) headers.set('accept', '*/*');
	if (!headers.has('user-agent')) headers.set('user-agent', 'node-fetch/1.0 (+https://github.com/bitinn/node-fetch)');
	var redirect = isObject(init) && init.follow === 0 ? 'error' : st.redirect;
	return new _Promise(function (resolve, reject) {
		send({ method: st.method, url: st.url, headers: combined(headers), body: st.data, redirect: redirect, timeout: timeout },
			st.signal, function (err, res) {
				if (!err) { resolve(responseOf(res)); return; }
				if (err.aborted) { reject(new NodeFetchAbortError('The user aborted a request.')); return; }
				if (err.code === 'ETIMEDOUT' && timeout) { reject(new FetchError('network timeout at: ' + shown(st.url), 'request-timeout')); return; }
				if (err.refused) { reject(new FetchError(err.message, 'system', err)); return; }
				reject(new FetchError('request to ' + shown(st.url) + ' failed, reason: ' + err.message, 'system', err));
			});
	});
}
nodeFetch.default = nodeFetch;
nodeFetch.Headers = Headers;
nodeFetch.Request = Request;
nodeFetch.Response = Response;
nodeFetch.FetchError = FetchError;
nodeFetch.AbortError = NodeFetchAbortError;
nodeFetch.isRedirect = function (code) { return code === 301 || code === 302 || code === 303 || code === 307 || code === 308; };

return {
	globals: { fetch: fetch, Headers: Headers, Request: Request, Response: Response,
		AbortController: AbortController, AbortSignal: AbortSignal },
	modules: {
		request: function () { return makeRequest({}); },
		axios: function () { return createAxios(axiosDefaults()); },
		'node-fetch': function () { return nodeFetch; },
	},
};
})`, true)

// fetchGlobals are the globals the layers define, as Node 22 has them.
var fetchGlobals = []string{"fetch", "Headers", "Request", "Response", "AbortController", "AbortSignal"}

// installFetchJS captures the intrinsics now and defines the globals as
// accessors that run the layers on first use, each then becoming a plain
// global as in Node (a script may replace or delete it). It returns the
// module providers; each module is built on its first require and then
// kept.
func installFetchJS(vm *goja.Runtime, native func() *goja.Object) map[string]func() goja.Value {
	global := vm.GlobalObject()
	intrinsics := captureIntrinsics(vm)
	var layers *goja.Object
	load := func() *goja.Object {
		if layers == nil {
			layers = runLayer(vm, fetchLayers, native(), intrinsics()).ToObject(vm)
		}
		return layers
	}
	for _, name := range fetchGlobals {
		set := func(v goja.Value) {
			_ = global.DefineDataProperty(name, v, goja.FLAG_TRUE, goja.FLAG_TRUE, goja.FLAG_FALSE)
		}
		_ = global.DefineAccessorProperty(name,
			vm.ToValue(func(goja.FunctionCall) goja.Value {
				v := load().Get("globals").ToObject(vm).Get(name)
				set(v)
				return v
			}),
			vm.ToValue(func(c goja.FunctionCall) goja.Value { set(c.Argument(0)); return goja.Undefined() }),
			goja.FLAG_TRUE, goja.FLAG_FALSE)
	}
	providers := map[string]func() goja.Value{}
	for _, name := range []string{"request", "axios", "node-fetch"} {
		var built goja.Value
		providers[name] = func() goja.Value {
			if built == nil {
				build, _ := goja.AssertFunction(load().Get("modules").ToObject(vm).Get(name))
				v, err := build(goja.Undefined())
				if err != nil {
					rethrow(vm, err)
				}
				built = v
			}
			return built
		}
	}
	return providers
}

// captureIntrinsics keeps, before any script runs, what the layers use
// that a script could replace, and returns what builds the layers' view
// of them when they load. It only reads values: touching Date, RegExp or
// the typed arrays would make goja build them in every runtime, for the
// few exchanges that call out, so those are read when the layers load.
// Methods are handed over uncurried, method(this, ...args), by Go, so no
// script's Function.prototype.bind or call is involved.
//
// The scratch runtime that checks exports at config load has no timers:
// there setTimeout is undefined, and AbortSignal.timeout throws.
func captureIntrinsics(vm *goja.Runtime) func() *goja.Object {
	get := func(path ...string) goja.Value {
		v := vm.Get(path[0])
		if v == nil {
			return goja.Undefined()
		}
		for _, p := range path[1:] {
			v = v.ToObject(vm).Get(p)
		}
		return v
	}
	values := map[string]goja.Value{
		"defineProperty": get("Object", "defineProperty"), "keys": get("Object", "keys"),
		"create": get("Object", "create"), "getOwnPropertyDescriptor": get("Object", "getOwnPropertyDescriptor"),
		"getPrototypeOf": get("Object", "getPrototypeOf"), "Promise": get("Promise"), "Error": get("Error"),
		"DOMException": get("DOMException"), // loads the lazy global, before any script
		"TypeError":    get("TypeError"), "RangeError": get("RangeError"), "String": get("String"),
		"parse": get("JSON", "parse"), "stringify": get("JSON", "stringify"), "isArray": get("Array", "isArray"),
		"floor": get("Math", "floor"), "encodeURIComponent": get("encodeURIComponent"), "setTimeout": get("setTimeout"),
	}
	statics := map[string]goja.Value{ // called with their object as this
		"resolve": get("Promise", "resolve"), "reject": get("Promise", "reject"), "all": get("Promise", "all"),
	}
	methods := map[string]goja.Value{
		"lower": get("String", "prototype", "toLowerCase"), "upper": get("String", "prototype", "toUpperCase"),
		"sliceStr": get("String", "prototype", "slice"), "indexOf": get("String", "prototype", "indexOf"),
		"replace": get("String", "prototype", "replace"), "join": get("Array", "prototype", "join"),
		"sort": get("Array", "prototype", "sort"), "then": get("Promise", "prototype", "then"),
		"callFn": get("Function", "prototype", "call"), "applyFn": get("Function", "prototype", "apply"),
	}
	promise := values["Promise"]
	return func() *goja.Object {
		for name, path := range map[string][]string{
			"ArrayBuffer": {"ArrayBuffer"}, "isView": {"ArrayBuffer", "isView"}, "Uint8Array": {"Uint8Array"}, "DataView": {"DataView"},
			"Date": {"Date"}, "iterator": {"Symbol", "iterator"}, "toStringTag": {"Symbol", "toStringTag"}, "Symbol": {"Symbol"},
		} {
			values[name] = get(path...)
		}
		for name, path := range map[string][]string{
			"test": {"RegExp", "prototype", "test"}, "arrayValues": {"Array", "prototype", "values"},
			"toISO": {"Date", "prototype", "toISOString"},
		} {
			methods[name] = get(path...)
		}
		o := vm.NewObject()
		for name, v := range values {
			define(vm, o, name, v)
		}
		for name, v := range statics {
			f, _ := goja.AssertFunction(v)
			define(vm, o, name, func(c goja.FunctionCall) goja.Value {
				out, err := f(promise, c.Arguments...)
				if err != nil {
					rethrow(vm, err)
				}
				return out
			})
		}
		for name, v := range methods {
			f, _ := goja.AssertFunction(v)
			define(vm, o, name, func(c goja.FunctionCall) goja.Value {
				var rest []goja.Value
				if len(c.Arguments) > 1 {
					rest = c.Arguments[1:]
				}
				out, err := f(c.Argument(0), rest...)
				if err != nil {
					rethrow(vm, err)
				}
				return out
			})
		}
		return o
	}
}

// runLayer runs one of the programs above, which evaluates to a function,
// with args. They are ours and run before any script or on a script's
// first use; an exception from them is a bug, or a time-out.
func runLayer(vm *goja.Runtime, p *goja.Program, args ...goja.Value) goja.Value {
	fn, err := vm.RunProgram(p)
	if err != nil {
		rethrow(vm, err)
	}
	f, _ := goja.AssertFunction(fn)
	v, err := f(goja.Undefined(), args...)
	if err != nil {
		rethrow(vm, err)
	}
	return v
}
