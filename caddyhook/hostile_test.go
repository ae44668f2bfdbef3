package caddyhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddyhook/caddyhook/internal/logscan"
)

// The tests in this file hand the engine values a hostile (or merely
// careless) script produces, and check the promise the product makes: the
// exchange fails closed, nothing panics, and the engine keeps working.

// hostileValues are JavaScript expressions whose value cannot be read
// naively: getters that throw, null prototypes, Proxies, Symbols.
var hostileValues = map[string]string{
	"null prototype":           `Object.create(null)`,
	"throwing getters":         `({ get message() { throw new Error('m') }, get name() { throw new Error('n') } })`,
	"getter throws null-proto": `({ get message() { throw Object.create(null) } })`,
	"toString throws":          `({ message: undefined, toString() { throw new Error('t') } })`,
	"proxy get throws":         `new Proxy({}, { get() { throw new Error('p') } })`,
	"proxy returns null-proto": `new Proxy({}, { get() { return Object.create(null) } })`,
	"revoked proxy":            `(function () { const p = Proxy.revocable({}, {}); p.revoke(); return p.proxy; })()`,
	"symbol":                   `Symbol('s')`,
	"symbol message":           `({ message: Symbol('m'), name: Symbol('n') })`,
	"object message":           `({ message: Object.create(null), name: Object.create(null) })`,
	"null-proto error":         `(function () { const e = new Error('x'); Object.setPrototypeOf(e, null); return e; })()`,
	"error with getter name":   `(function () { const e = new Error('x'); Object.defineProperty(e, 'name', { get() { throw e; } }); return e; })()`,
	"huge message":             `({ message: 'x'.repeat(1 << 20) })`,
	"huge string":              `'y'.repeat(1 << 20)`,
	"empty object":             `({})`,
}

// observed returns a logger whose entries the test checks for panics when it
// ends: no panic may reach the log, which is where Run reports the ones it
// recovers.
func observed(t *testing.T, level zap.AtomicLevel) (*zap.Logger, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(level)
	t.Cleanup(func() {
		for _, e := range logs.All() {
			if strings.Contains(strings.ToLower(e.Message), "panic") {
				t.Errorf("a panic was logged: %s %v", e.Message, e.ContextMap())
			}
		}
	})
	return logscan.Tee(core), logs
}

// failsThenRecovers runs e with a body that makes its script misbehave and
// wants an error; then with {ok: true} and wants success, so that a failure
// cannot have broken the engine.
func failsThenRecovers(t *testing.T, e *Engine, code string) *Error {
	t.Helper()
	in := input()
	in.Request.Body = map[string]any{"ok": false}
	res, err := e.Run(context.Background(), in)
	if res != nil {
		t.Fatalf("a failing script produced a result: %+v", res)
	}
	var he *Error
	if !errors.As(err, &he) {
		t.Fatalf("error = %v (%T), want *Error", err, err)
	}
	if he.Code != code {
		t.Fatalf("error = %+v, want %s", he, code)
	}
	checkDescription(t, he.Description)
	in = input()
	in.Request.Body = map[string]any{"ok": true}
	if res, err = e.Run(context.Background(), in); err != nil {
		t.Fatalf("the next run failed: %v", err)
	}
	if res == nil {
		t.Fatal("the next run returned no result")
	}
	return he
}

// checkDescription checks what a client may be shown.
func checkDescription(t *testing.T, d string) {
	t.Helper()
	if len(d) > maxDescription {
		t.Errorf("description of %d bytes, more than %d", len(d), maxDescription)
	}
	for _, bad := range []string{"&{", "goja.", "0xc0", "panic"} {
		if strings.Contains(d, bad) {
			t.Errorf("description %q holds %q", d, bad)
		}
	}
}

func hookEngine(t *testing.T, src string) *Engine {
	t.Helper()
	log, _ := observed(t, zap.NewAtomicLevelAt(zap.DebugLevel))
	return engine(t, compileHook(t, src), func(c *Config) { c.Logger = log; c.Timeout = 5 * time.Second })
}

func actionEngine(t *testing.T, src string) *Engine {
	t.Helper()
	log, _ := observed(t, zap.NewAtomicLevelAt(zap.DebugLevel))
	return engine(t, nil, func(c *Config) {
		c.Actions = []*Script{compileAction(t, "act.js", src)}
		c.Logger = log
		c.Timeout = 5 * time.Second
	})
}

// TestHostileErrorValuesFailClosed passes every hostile value to every way a
// hook or an action can fail: each run must end in a 500 server_error.
func TestHostileErrorValuesFailClosed(t *testing.T) {
	hooks := map[string]string{
		"cb":                    `cb(V);`,
		"cb, exception caught":  `try { cb(V); } catch (e) {}`,
		"throw":                 `throw V;`,
		"cb from a timer":       `setTimeout(function () { try { cb(V); } catch (e) {} }, 1);`,
		"throw in a timer":      `setTimeout(function () { throw V; }, 1);`,
		"throw in an immediate": `setImmediate(function () { throw V; });`,
		"rejected promise":      `return Promise.reject(V);`,
		"rejecting thenable":    `return { then: function (res, rej) { rej(V); } };`,
		"throw in a microtask":  `queueMicrotask(function () { throw V; }); setTimeout(function () { cb(null, {}); }, 50);`,
	}
	asyncHooks := map[string]string{
		"async throw":           `await null; throw V;`,
		"async throw at once":   `throw V;`,
		"async rejected await":  `await Promise.reject(V);`,
		"async cb, then return": `try { cb(V); } catch (e) {}`,
	}
	actions := map[string]string{
		"throw":                `throw V;`,
		"reject":               `return Promise.reject(V);`,
		"throw in a timer":     `return new Promise(function () { setTimeout(function () { throw V; }, 1); });`,
		"rejecting thenable":   `return { then: function (res, rej) { rej(V); } };`,
		"thenable then throws": `return { then: function () { throw V; } };`,
		"deny":                 `try { api.access.deny(V, V); } catch (e) {}`,
		"deny in a timer":      `return new Promise(function (res) { setTimeout(function () { try { api.access.deny(V, V); } catch (e) {} res(); }, 1); });`,
		"throw in a microtask": `queueMicrotask(function () { throw V; });`,
	}
	asyncActions := map[string]string{
		"async throw": `await null; throw V;`,
		"async deny":  `await null; try { api.access.deny(V, V); } catch (e) {}`,
	}
	const (
		hookHead = `function (client, scope, audience, context, cb) {
					if (context.body.ok) return cb(null, { scope: ['ok'] });
					`
		actionHead = `function (event, api) {
					if (event.request.body.ok) return;
					`
	)
	kinds := []struct {
		name, head string
		bodies     map[string]string
		engine     func(*testing.T, string) *Engine
	}{
		{"hook", "module.exports = " + hookHead, hooks, hookEngine},
		{"async hook", "module.exports = async " + hookHead, asyncHooks, hookEngine},
		{"action", "exports.onExecuteCredentialsExchange = " + actionHead, actions, actionEngine},
		{"async action", "exports.onExecuteCredentialsExchange = async " + actionHead, asyncActions, actionEngine},
	}
	for vname, v := range hostileValues {
		for _, k := range kinds {
			for how, body := range k.bodies {
				t.Run(k.name+"/"+how+"/"+vname, func(t *testing.T) {
					src := k.head + strings.ReplaceAll(body, "V", v) + `
				};`
					failsThenRecovers(t, k.engine(t, src), CodeServerError)
				})
			}
		}
	}
}

// TestHostileDescriptions checks what the client is told: a generic text
// where the value says nothing, never a Go struct dump, never more than the
// cap.
func TestHostileDescriptions(t *testing.T) {
	for _, tc := range []struct {
		body, want string
	}{
		{`cb(Object.create(null))`, hookFailed},
		{`cb(new Proxy({}, { get() { throw new Error('p') } }))`, hookFailed},
		{`cb(Symbol('s'))`, hookFailed},
		{`cb({})`, hookFailed},
		{`throw Object.create(null)`, hookFailed},
		{`cb(new Error('plain'))`, "plain"},
		{`cb({ message: 'own message', get name() { throw 1 } })`, "own message"},
		{`try { String(Object.create(null)); } catch (e) { cb(e); }`, "Cannot convert object to primitive value"},
	} {
		t.Run(tc.body, func(t *testing.T) {
			src := `module.exports = function (client, scope, audience, context, cb) {
				if (context.body.ok) return cb(null, {});
				` + tc.body + `;
			};`
			he := failsThenRecovers(t, hookEngine(t, src), CodeServerError)
			if he.Description != tc.want {
				t.Errorf("description = %q, want %q", he.Description, tc.want)
			}
		})
	}
	src := `module.exports = function (client, scope, audience, context, cb) {
		if (context.body.ok) return cb(null, {});
		cb(new Error('é'.repeat(5000)));
	};`
	he := failsThenRecovers(t, hookEngine(t, src), CodeServerError)
	if !strings.HasSuffix(he.Description, "…") || len(he.Description) > maxDescription {
		t.Errorf("long description not capped: %d bytes", len(he.Description))
	}
}

// TestHostileErrorClassesKeepTheirCode: the injected classes still map, even
// when other parts of the error misbehave.
func TestHostileErrorClassesKeepTheirCode(t *testing.T) {
	src := `module.exports = function (client, scope, audience, context, cb) {
		if (context.body.ok) return cb(null, {});
		const e = new InvalidScopeError('no');
		Object.defineProperty(e, 'stack', { get() { throw 1 } });
		e.toString = function () { throw 2 };
		cb(e);
	};`
	he := failsThenRecovers(t, hookEngine(t, src), CodeInvalidScope)
	if he.Description != "no" {
		t.Errorf("description = %q", he.Description)
	}
}

// TestDenyAlwaysDenies: any call to api.access.deny denies, whatever its
// arguments; a code that is not one of ours is a server error.
func TestDenyAlwaysDenies(t *testing.T) {
	for _, tc := range []struct {
		call string
		code string
		desc string
	}{
		{`api.access.deny({ toString() { throw new Error('c') } }, { toString() { throw new Error('r') } })`, CodeServerError, actionDenied},
		{`api.access.deny(Object.create(null), Object.create(null))`, CodeServerError, actionDenied},
		{`api.access.deny(Symbol('c'), Symbol('r'))`, CodeServerError, actionDenied},
		{`api.access.deny()`, CodeServerError, actionDenied},
		{`api.access.deny('invalid_request', { toString() { throw 1 } })`, CodeInvalidRequest, actionDenied},
		{`api.access.deny('invalid_request', { toString() { return 'from toString' } })`, CodeInvalidRequest, "from toString"},
		{`api.access.deny('invalid_scope', 42)`, CodeInvalidScope, "42"},
		{`api.access.deny('invalid_scope'.repeat(100), 'r')`, CodeServerError, "r"},
		{`api.access.deny(new Proxy({}, { get() { throw 1 } }), new Proxy({}, { get() { throw 1 } }))`, CodeServerError, actionDenied},
	} {
		t.Run(tc.call, func(t *testing.T) {
			src := `exports.onExecuteCredentialsExchange = async (event, api) => {
				if (event.request.body.ok) return;
				try { ` + tc.call + `; } catch (e) {}
			};`
			he := failsThenRecovers(t, actionEngine(t, src), tc.code)
			if he.Description != tc.desc {
				t.Errorf("description = %q, want %q", he.Description, tc.desc)
			}
		})
	}
}

// TestThenablesAreAwaited: what an action or hook returns is awaited as
// await would, through the intrinsic Promise.resolve.
func TestThenablesAreAwaited(t *testing.T) {
	t.Run("action thenable denies", func(t *testing.T) {
		e := actionEngine(t, `exports.onExecuteCredentialsExchange = (event, api) => {
			if (event.request.body.ok) return;
			return { then(res) { api.access.deny('invalid_request', 'no'); res(); } };
		};`)
		he := failsThenRecovers(t, e, CodeInvalidRequest)
		if he.Description != "no" {
			t.Errorf("description = %q", he.Description)
		}
	})
	t.Run("action thenable denies although Promise is replaced", func(t *testing.T) {
		e := actionEngine(t, `Promise = function () { throw new Error('replaced'); };
		Promise.resolve = function (v) { return { then(f) { f(); } }; };
		exports.onExecuteCredentialsExchange = (event, api) => {
			if (event.request.body.ok) return;
			return { then(res) { setTimeout(() => { api.access.deny('invalid_scope', 'late'); res(); }, 1); } };
		};`)
		failsThenRecovers(t, e, CodeInvalidScope)
	})
	for name, ret := range map[string]string{
		"then getter throws":                `({ get then() { throw new Error('then') } })`,
		"then throws":                       `({ then() { throw Object.create(null) } })`,
		"then rejects later":                `({ then(res, rej) { setTimeout(() => rej(new Error('later')), 1) } })`,
		"promise constructor getter throws": `(function () { const p = Promise.resolve(); Object.defineProperty(p, 'constructor', { get() { throw 1 } }); return p; })()`,
	} {
		t.Run("action "+name, func(t *testing.T) {
			e := actionEngine(t, `exports.onExecuteCredentialsExchange = (event, api) => {
				if (event.request.body.ok) return;
				return `+ret+`;
			};`)
			failsThenRecovers(t, e, CodeServerError)
		})
		t.Run("hook "+name, func(t *testing.T) {
			e := hookEngine(t, `module.exports = function (client, scope, audience, context, cb) {
				if (context.body.ok) return cb(null, {});
				return `+ret+`;
			};`)
			failsThenRecovers(t, e, CodeServerError)
		})
	}
	t.Run("action thenable resolves", func(t *testing.T) {
		e := actionEngine(t, `exports.onExecuteCredentialsExchange = (event, api) => ({
			then(res) { setTimeout(() => { api.accessToken.setCustomClaim('https://t.example/t', 1); res(); }, 1); },
		});`)
		res, err := e.Run(context.Background(), input())
		if err != nil || string(res.Claims["https://t.example/t"]) != "1" {
			t.Fatalf("result = %+v, %v", res, err)
		}
	})
	t.Run("hook cb wins over a later rejection", func(t *testing.T) {
		e := hookEngine(t, `module.exports = async function (client, scope, audience, context, cb) {
			cb(null, { scope: ['first'] });
			throw new Error('after cb');
		};`)
		res, err := e.Run(context.Background(), input())
		if err != nil || !reflect.DeepEqual(res.Scope, []string{"first"}) {
			t.Fatalf("result = %+v, %v", res, err)
		}
	})
}

// panicky is request data whose encoding panics: the closest a test gets to
// a bug in the engine's own Go code.
type panicky struct{}

func (panicky) MarshalJSON() ([]byte, error) { panic(errors.New("secret-value-in-panic")) }

// TestRunRecoversPanics: a panic inside Run fails the exchange with a 500,
// is logged with its stack but without its value, and the engine goes on.
func TestRunRecoversPanics(t *testing.T) {
	core, logs := observer.New(zap.DebugLevel)
	e := engine(t, compileHook(t, `module.exports = function (c, s, a, x, cb) { cb(null, { scope: ['ok'] }); };`),
		func(c *Config) { c.Logger = logscan.Tee(core) })
	in := input()
	in.Request.Body = map[string]any{"x": panicky{}}
	res, err := e.Run(context.Background(), in)
	if res != nil {
		t.Fatalf("result = %+v", res)
	}
	wantError(t, err, CodeServerError, "internal error")
	entries := logs.FilterMessageSnippet("panic").All()
	if len(entries) != 1 || entries[0].Level != zap.ErrorLevel {
		t.Fatalf("panic logs = %v", logs.All())
	}
	fields := entries[0].ContextMap()
	if !strings.Contains(fmt.Sprint(fields["stack"]), "MarshalJSON") {
		t.Errorf("no stack in %v", fields)
	}
	for _, e := range logs.All() {
		if strings.Contains(fmt.Sprint(e.ContextMap()), "secret-value-in-panic") || strings.Contains(e.Message, "secret-value-in-panic") {
			t.Errorf("the panic value reached the log: %v", e)
		}
	}
	if _, err := e.Run(context.Background(), input()); err != nil {
		t.Fatalf("the next run failed: %v", err)
	}
}

// TestStorageModulePanicFailsTheRun: a storage module that panics (on its
// own goroutine) fails the run, not the process.
func TestStorageModulePanicFailsTheRun(t *testing.T) {
	e := engine(t, compileHook(t, `module.exports = function (c, s, a, x, cb) {
		x.webtask.storage.get(function (err, data) { cb(null, { scope: ['got'] }); });
	};`), func(c *Config) { c.Storage = panickyStorage{} })
	_, err := e.Run(context.Background(), input())
	wantError(t, err, CodeServerError, "a background operation failed")
}

type panickyStorage struct{}

func (panickyStorage) Load(context.Context, string) ([]byte, error) { panic("storage bug") }
func (panickyStorage) Store(context.Context, string, []byte) error  { panic("storage bug") }
func (panickyStorage) Lock(context.Context, string) error           { panic("storage bug") }
func (panickyStorage) Unlock(context.Context, string) error         { panic("storage bug") }

// TestTopLevelHostileThrows: a script whose top level throws a hostile
// value fails at config load with a message, and a script whose exports
// misbehave only at run time fails the run.
func TestTopLevelHostileThrows(t *testing.T) {
	for name, v := range hostileValues {
		s, err := Compile("top.js", []byte(`throw `+v+`;`), HookKind)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := NewEngine(Config{Hook: s}); err == nil || strings.Contains(err.Error(), "&{") {
			t.Errorf("%s: NewEngine error = %v", name, err)
		}
	}
	// Scripts whose exports getter throws a value without a prototype fail
	// at config load, with a message and no Go dump.
	for _, src := range []struct{ name, src string }{
		{"getter.js", `Object.defineProperty(module, 'exports', { get() { throw Object.create(null); } });`},
		{"getter-action.js", `Object.defineProperty(exports, 'onExecuteCredentialsExchange', { get() { throw Object.create(null); } });`},
	} {
		kind := HookKind
		if strings.Contains(src.name, "action") {
			kind = ActionKind
		}
		s, err := Compile(src.name, []byte(src.src), kind)
		if err != nil {
			t.Fatal(err)
		}
		cfg := Config{Hook: s}
		if kind == ActionKind {
			cfg = Config{Actions: []*Script{s}}
		}
		if _, err := NewEngine(cfg); err == nil || strings.Contains(err.Error(), "&{") || !strings.Contains(err.Error(), "running top level") {
			t.Errorf("%s: NewEngine error = %v", src.name, err)
		}
	}
}

// TestRequestBodyValues: whatever Go's encoding/json decodes from a client
// reaches the script as Node's JSON.parse would give it, or fails the run
// with a 400; never a panic.
func TestRequestBodyValues(t *testing.T) {
	src := `module.exports = function (client, scope, audience, context, cb) {
		const b = context.body, out = {};
		for (const k of Object.keys(b)) out[k] = { type: typeof b[k], str: String(b[k]) };
		cb(null, { 'https://t.example/out': out });
	};`
	act := `exports.onExecuteCredentialsExchange = async (event, api) => {
		const b = event.request.body, out = {};
		for (const k of Object.keys(b)) out[k] = typeof b[k] === 'number' ? String(b[k]) : typeof b[k];
		api.accessToken.setCustomClaim('https://t.example/act', out);
	};`
	log, _ := observed(t, zap.NewAtomicLevelAt(zap.DebugLevel))
	e, err := NewEngine(Config{Hook: compileHook(t, src), Actions: []*Script{compileAction(t, "act.js", act)}, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	run := func(body map[string]any) (map[string]map[string]string, map[string]string, error) {
		in := input()
		in.Request.Body = body
		res, err := e.Run(context.Background(), in)
		if err != nil {
			return nil, nil, err
		}
		var out map[string]map[string]string
		var act map[string]string
		if err := json.Unmarshal(res.Claims["https://t.example/out"], &out); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(res.Claims["https://t.example/act"], &act); err != nil {
			t.Fatal(err)
		}
		return out, act, nil
	}
	out, acts, err := run(map[string]any{
		"inf": json.Number("1e999999"), "ninf": json.Number("-1e999999"), "tiny": json.Number("1e-999999"),
		"big":  json.Number("123456789012345678901234567890"),
		"neg0": json.Number("-0"), "n": json.Number("42.5"),
		"bad": "\xff\xfe", "lone": "\xed\xa0\x80", "str": "plain",
		"list": []any{json.Number("1e999999"), "x", nil, true}, "obj": map[string]any{"__proto__": "own", "k\xff": json.Number("1")},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]map[string]string{
		"inf": {"type": "number", "str": "Infinity"}, "ninf": {"type": "number", "str": "-Infinity"},
		"tiny": {"type": "number", "str": "0"}, "big": {"type": "number", "str": "1.2345678901234568e+29"},
		"neg0": {"type": "number", "str": "0"}, "n": {"type": "number", "str": "42.5"},
		"bad": {"type": "string", "str": "\uFFFD\uFFFD"}, "lone": {"type": "string", "str": "\uFFFD\uFFFD\uFFFD"},
		"str": {"type": "string", "str": "plain"}, "list": {"type": "object", "str": "Infinity,x,,true"},
		"obj": {"type": "object", "str": "[object Object]"},
	}
	if !reflect.DeepEqual(out, want) {
		t.Errorf("hook saw %v\nwant %v", out, want)
	}
	if acts["inf"] != "Infinity" || acts["ninf"] != "-Infinity" || acts["big"] != "1.2345678901234568e+29" {
		t.Errorf("action saw %v", acts)
	}

	deep := func(n int) any {
		var v any = "leaf"
		for i := 0; i < n; i++ {
			if i%2 == 0 {
				v = []any{v}
			} else {
				v = map[string]any{"d": v}
			}
		}
		return v
	}
	if _, _, err := run(map[string]any{"deep": deep(5000)}); err != nil {
		t.Errorf("5000 deep: %v", err)
	}
	for name, v := range map[string]any{
		"too deep": deep(maxInputDepth + 5), "NaN number": json.Number("NaN"), "empty number": json.Number(""),
		"hex number": json.Number("0x10"), "number with spaces": json.Number(" 1"), "plus number": json.Number("+1"),
		"unsupported": make(chan int),
	} {
		in := input()
		in.Request.Body = map[string]any{"v": v}
		res, err := e.Run(context.Background(), in)
		if res != nil {
			t.Errorf("%s: result %+v", name, res)
		}
		wantError(t, err, CodeInvalidRequest, "the request body cannot be given to the hook")
	}
	if _, _, err := run(map[string]any{"ok": true}); err != nil {
		t.Fatalf("the next run failed: %v", err)
	}
}

func TestIsJSONNumber(t *testing.T) {
	for s, want := range map[string]bool{
		"0": true, "-0": true, "1": true, "10": true, "1.5": true, "-1.5e10": true, "1E+2": true, "1e-2": true,
		"": false, "-": false, "01": false, "1.": false, ".5": false, "+1": false, "1e": false, "1e+": false,
		"NaN": false, "Infinity": false, "0x1": false, "1_000": false, " 1": false, "1 ": false, "--1": false,
	} {
		if got := isJSONNumber(s); got != want {
			t.Errorf("isJSONNumber(%q) = %v", s, got)
		}
	}
}

// TestCacheLifetimesDoNotOverflow: huge ttl and expires_at values are capped
// at 24 hours before they are converted; NaN, zero and negative ones are
// invalid.
func TestCacheLifetimesDoNotOverflow(t *testing.T) {
	act := compileAction(t, "cache.js", `exports.onExecuteCredentialsExchange = async (event, api) => {
		const out = {};
		const cases = {
			ttlHuge: { ttl: 1e15 }, ttlInf: { ttl: Infinity }, ttlMax: { ttl: Number.MAX_VALUE }, ttlString: { ttl: '60000' },
			ttlNaN: { ttl: NaN }, ttlZero: { ttl: 0 }, ttlNeg: { ttl: -1 }, ttlNegHuge: { ttl: -1e19 }, ttlObj: { ttl: { valueOf() { return 5 } } },
			ttlSym: { ttl: Symbol() }, ttlNull: { ttl: null }, ttlBigInt: { ttl: 10n },
			expHuge: { expires_at: 1e19 }, expInf: { expires_at: Infinity }, expNegHuge: { expires_at: -1e19 }, expNaN: { expires_at: NaN },
			expPast: { expires_at: Date.now() - 1000 }, expSoon: { expires_at: Date.now() + 60000 },
		};
		for (const [k, opts] of Object.entries(cases)) {
			const r = api.cache.set(k, 'v', opts);
			out[k] = r.type === 'success' ? Math.round((r.record.expires_at - Date.now()) / 60000) : r.code;
		}
		try { api.cache.set('p', 'v', new Proxy({}, { get() { throw new Error('opts') } })); out.proxy = 'no throw'; } catch (e) { out.proxy = 'threw'; }
		api.accessToken.setCustomClaim('https://t.example/cache', out);
	};`)
	log, _ := observed(t, zap.NewAtomicLevelAt(zap.DebugLevel))
	e, err := NewEngine(Config{Actions: []*Script{act}, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	res, err := e.Run(context.Background(), input())
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(res.Claims["https://t.example/cache"], &got); err != nil {
		t.Fatal(err)
	}
	day := float64(24 * 60)
	want := map[string]any{
		"ttlHuge": day, "ttlInf": day, "ttlMax": day, "ttlString": float64(1),
		"ttlNaN": cacheInvalidExpiry, "ttlZero": cacheInvalidExpiry, "ttlNeg": cacheInvalidExpiry, "ttlNegHuge": cacheInvalidExpiry,
		"ttlObj": cacheInvalidExpiry, "ttlSym": cacheInvalidExpiry, "ttlNull": cacheInvalidExpiry, "ttlBigInt": cacheInvalidExpiry,
		"expHuge": day, "expInf": day, "expNegHuge": cacheItemAlreadyExpired, "expNaN": cacheInvalidExpiry,
		"expPast": cacheItemAlreadyExpired, "expSoon": float64(1), "proxy": "threw",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %v\nwant %v", got, want)
	}
}

func TestCacheLifetimeConversions(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	for _, ms := range []float64{1e15, 1e300, 9.3e15, float64(cacheMaxTTL / time.Millisecond)} {
		if d, ok := ttlFromMillis(ms, true); !ok || d != cacheMaxTTL {
			t.Errorf("ttl %g = %v, %v", ms, d, ok)
		}
	}
	for _, ms := range []float64{0, -1, -1e19} {
		if _, ok := ttlFromMillis(ms, true); ok {
			t.Errorf("ttl %g accepted", ms)
		}
	}
	if d, ok := ttlFromMillis(1e-9, true); !ok || d <= 0 {
		t.Errorf("tiny ttl = %v, %v", d, ok)
	}
	for _, ms := range []float64{1e19, 1e300} {
		if at, ok := expiryFromMillis(ms, true, now); !ok || !at.Equal(now.Add(cacheMaxTTL)) {
			t.Errorf("expires_at %g = %v, %v", ms, at, ok)
		}
	}
	for _, ms := range []float64{-1e19, 0, float64(now.UnixMilli())} {
		if at, ok := expiryFromMillis(ms, true, now); !ok || at.After(now) {
			t.Errorf("expires_at %g = %v, %v; want a time set refuses as expired", ms, at, ok)
		}
	}
	if _, ok := expiryFromMillis(math.NaN(), true, now); ok {
		t.Error("expires_at NaN accepted")
	}
}

// TestDroppedClaimsLogBounded: 200,000 dropped claims make a bounded number
// of log lines, the rest counted in one.
func TestDroppedClaimsLogBounded(t *testing.T) {
	log, logs := observed(t, zap.NewAtomicLevelAt(zap.DebugLevel))
	e := engine(t, compileHook(t, `module.exports = function (c, s, a, x, cb) {
		const out = { scope: ['a'] };
		for (let i = 0; i < 200000; i++) out['c' + i] = i;
		cb(null, out);
	};`), func(c *Config) { c.Logger = log; c.Timeout = 20 * time.Second; c.Policy = policyNamespaced })
	res, err := e.Run(context.Background(), input())
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Claims) != 0 {
		t.Fatalf("%d claims accepted", len(res.Claims))
	}
	if n := logs.FilterMessage("custom claim dropped").Len(); n != maxDroppedClaimLogs {
		t.Errorf("%d lines for single dropped claims, want %d", n, maxDroppedClaimLogs)
	}
	summary := logs.FilterMessage("more custom claims dropped").All()
	if len(summary) != 1 || summary[0].ContextMap()["dropped"] != int64(200000) {
		t.Errorf("summary = %v", summary)
	}
	if logs.Len() > maxDroppedClaimLogs+2 {
		t.Errorf("%d log lines", logs.Len())
	}
}

// TestConsoleLinesBounded: a script logging in a loop makes a bounded
// number of lines per run.
func TestConsoleLinesBounded(t *testing.T) {
	log, logs := observed(t, zap.NewAtomicLevelAt(zap.DebugLevel))
	e := engine(t, compileHook(t, `module.exports = function (c, s, a, x, cb) {
		for (let i = 0; i < 5000; i++) console.log('line', i);
		cb(null, {});
	};`), func(c *Config) { c.Logger = log })
	if _, err := e.Run(context.Background(), input()); err != nil {
		t.Fatal(err)
	}
	if n := logs.FilterMessageSnippet("line ").Len(); n != maxConsoleLines {
		t.Errorf("%d console lines, want %d", n, maxConsoleLines)
	}
	if cut := logs.FilterMessage("console output of the run was cut").All(); len(cut) != 1 || cut[0].ContextMap()["lines_dropped"] != int64(4000) {
		t.Errorf("summary = %v", cut)
	}
}

// TestScopeLimits: past maxScopes or maxScopeSize the exchange fails, for
// hook results and for actions, even when the action catches the exception.
func TestScopeLimits(t *testing.T) {
	for name, build := range map[string]string{
		"200000 scopes": `for (let i = 0; i < 200000; i++) list.push('s' + i);`,
		"1001 scopes":   `for (let i = 0; i < 1001; i++) list.push('s' + i);`,
		"17 KiB scope":  `for (let i = 0; i < 17; i++) list.push(String(i).padEnd(1024, 'x'));`,
	} {
		t.Run("hook "+name, func(t *testing.T) {
			e := hookEngine(t, `module.exports = function (c, s, a, x, cb) {
				const list = [];
				if (!x.body.ok) { `+build+` }
				cb(null, { scope: list });
			};`)
			he := failsThenRecovers(t, e, CodeServerError)
			if !strings.Contains(he.Description, "allowed") {
				t.Errorf("description %q does not name the limit", he.Description)
			}
		})
		t.Run("action setTargetScopes "+name, func(t *testing.T) {
			e := actionEngine(t, `exports.onExecuteCredentialsExchange = async (event, api) => {
				const list = [];
				if (!event.request.body.ok) { `+build+` }
				try { api.transaction.setTargetScopes(list); } catch (e) {}
			};`)
			failsThenRecovers(t, e, CodeServerError)
		})
		t.Run("action addTargetScope "+name, func(t *testing.T) {
			e := actionEngine(t, `exports.onExecuteCredentialsExchange = async (event, api) => {
				const list = [];
				if (!event.request.body.ok) { `+build+` }
				for (const s of list) { try { api.transaction.addTargetScope(s); } catch (e) {} }
			};`)
			failsThenRecovers(t, e, CodeServerError)
		})
	}
	t.Run("1000 scopes pass", func(t *testing.T) {
		e := hookEngine(t, `module.exports = function (c, s, a, x, cb) {
			const list = [];
			for (let i = 0; i < 1000; i++) list.push('s' + i);
			cb(null, { scope: list });
		};`)
		res, err := e.Run(context.Background(), input())
		if err != nil || len(res.Scope) != 1000 {
			t.Fatalf("%v", err)
		}
	})
	t.Run("upstream scope past the limit", func(t *testing.T) {
		e := hookEngine(t, `module.exports = function (c, s, a, x, cb) { cb(null, { scope: s }); };`)
		in := input()
		for i := 0; i < 1001; i++ {
			in.Scope = append(in.Scope, fmt.Sprint("u", i))
		}
		_, err := e.Run(context.Background(), in)
		wantError(t, err, CodeServerError, "")
	})
	t.Run("oversized claim in an action", func(t *testing.T) {
		e := actionEngine(t, `exports.onExecuteCredentialsExchange = async (event, api) => {
			if (event.request.body.ok) return;
			try { api.accessToken.setCustomClaim('https://t.example/big', 'x'.repeat(200 * 1024)); } catch (e) {}
		};`)
		failsThenRecovers(t, e, CodeServerError)
	})
}

func TestValidScope(t *testing.T) {
	for s, want := range map[string]bool{
		"read:a": true, "https://api.example.com/read": true, "a!#$%&'()*+,-./:;<=>?@[]^_`{|}~": true,
		"": false, "a b": false, "a\tb": false, "a\rb": false, "a\fb": false, "a\vb": false, "a\x00b": false,
		"a\"b": false, "a\\b": false, "é": false, "a\u00a0b": false, "a\u2028b": false, "a\x7fb": false,
	} {
		if got := validScope(s); got != want {
			t.Errorf("validScope(%q) = %v", s, got)
		}
	}
}

// TestQueueMicrotaskThrowFailsTheRun: an exception nothing can catch fails
// the exchange, as it would crash a Node process.
func TestQueueMicrotaskThrowFailsTheRun(t *testing.T) {
	e := hookEngine(t, `module.exports = function (c, s, a, x, cb) {
		if (!x.body.ok) queueMicrotask(() => { throw new Error('in microtask'); });
		cb(null, {});
	};`)
	he := failsThenRecovers(t, e, CodeServerError)
	if he.Description != "in microtask" {
		t.Errorf("description = %q", he.Description)
	}
}

// TestHostileArgumentsToNatives calls every function the engine gives
// scripts with hostile arguments: each either works or throws an exception
// the script catches; none panics, and the run goes on to succeed.
func TestHostileArgumentsToNatives(t *testing.T) {
	calls := []string{
		`console.log(Object.create(null), Symbol('s'), new Proxy({}, { get() { throw 1 } }), { toJSON() { throw 1 } }, 10n, function f() {}, 'x'.repeat(1e6))`,
		`console.log(REVOKED)`, `console.error({ get a() { throw 1 } })`, `console.log(new Proxy(function () {}, { get() { throw 1 } }))`,
		`require('querystring').stringify(new Proxy({}, { ownKeys() { throw 1 } }))`,
		`require('querystring').stringify({ a: Object.create(null), b: Symbol(), c: 10n, d: NaN, e: [Object.create(null), 1] })`,
		`require('querystring').stringify({ a: (function () { const a = []; a.length = 4294967295; return a; })() })`,
		`require('querystring').parse(Object.create(null))`, `require('querystring').parse(Symbol())`,
		`require('querystring').parse('a=1', Object.create(null), Symbol())`,
		`if (Object.getPrototypeOf(require('querystring').parse('__proto__=x&a=1&a=2')) !== null) throw 'proto'`,
		`require('querystring').escape(Object.create(null))`, `require('querystring').unescape(Symbol())`,
		`require('crypto').createHash(Object.create(null))`, `require('crypto').createHash(Symbol())`,
		`require('crypto').createHmac('sha256', Object.create(null))`, `require('crypto').createHmac(REVOKED, 'k')`,
		`require('crypto').createHash('sha256').update(Object.create(null))`, `require('crypto').createHash('sha256').update(Symbol())`,
		`require('crypto').createHash('sha256').update('x', Object.create(null))`, `require('crypto').createHash('sha256').digest(Object.create(null))`,
		`require('crypto').randomBytes(Symbol())`, `require('crypto').randomBytes({ valueOf() { throw 1 } })`, `require('crypto').randomBytes(1e300)`,
		`require('crypto').randomBytes(8, function () { throw Object.create(null) })`,
		`require('crypto').timingSafeEqual(Object.create(null), REVOKED)`,
		`require(Object.create(null))`, `require(Symbol())`, `require(REVOKED)`, `require('')`,
		`require('util').format(Object.create(null), Symbol())`, `require('util').inspect(Object.create(null))`,
		`Buffer.from(Object.create(null))`, `Buffer.from(REVOKED)`,
		`setTimeout(Object.create(null))`, `setTimeout(function () {}, Symbol())`, `setTimeout(function () {}, Object.create(null))`,
		`clearTimeout(Object.create(null))`, `clearTimeout(Symbol())`, `setImmediate(Symbol())`, `clearImmediate(REVOKED)`,
		`setInterval(REVOKED, 1)`, `queueMicrotask(Object.create(null))`, `queueMicrotask(Symbol())`,
		`new (require('url').URL)(Object.create(null))`,
	}
	hookCalls := []string{
		`x.webtask.storage.get(Object.create(null))`, `x.webtask.storage.set(Object.create(null), Symbol())`,
		`x.webtask.storage.set({ toJSON() { throw 1 } }, function () {})`,
		`x.webtask.storage.set({}, { get force() { throw 1 } }, function () {})`,
		`x.webtask.storage.set({}, new Proxy({}, { get() { throw 1 } }), function () {})`,
	}
	actionCalls := []string{
		`api.cache.get(Object.create(null))`, `api.cache.get(Symbol())`, `api.cache.set(REVOKED, 'v')`,
		`api.cache.set('k', Object.create(null))`, `api.cache.set('k', 'v', REVOKED)`, `api.cache.delete(Symbol())`,
		`api.cache.set('k', 'v', { get ttl() { throw 1 } })`,
		`api.accessToken.setCustomClaim(Object.create(null), 1)`, `api.accessToken.setCustomClaim(Symbol(), 1)`,
		`api.accessToken.setCustomClaim('https://t.example/x', { toJSON() { throw Object.create(null) } })`,
		`api.accessToken.setCustomClaim('https://t.example/x', REVOKED)`, `api.accessToken.setCustomClaim('https://t.example/x', 10n)`,
		`api.transaction.addTargetScope(Object.create(null))`, `api.transaction.addTargetScope(Symbol())`,
		`api.transaction.removeTargetScope(REVOKED)`, `api.transaction.setTargetScopes(REVOKED)`,
		`api.transaction.setTargetScopes(new Proxy([], { get() { throw 1 } }))`, `api.transaction.setTargetScopes([Object.create(null)])`,
		`api.transaction.setTargetScopes({ toJSON() { return ['a'] } })`,
	}
	const revoked = `(function () { const p = Proxy.revocable({}, {}); p.revoke(); return p.proxy; })()`
	wrap := func(list []string) string {
		var b strings.Builder
		for i, c := range list {
			fmt.Fprintf(&b, "try { %s; } catch (e) { describe(e); }\n", strings.ReplaceAll(c, "REVOKED", revoked))
			_ = i
		}
		return b.String()
	}
	// describe reads what a caught exception says, as a script would; the
	// point is that reading it works too.
	const describe = `function describe(e) { try { return String(e && e.message); } catch (x) { return '?'; } }`
	t.Run("hook", func(t *testing.T) {
		e := hookEngine(t, describe+`
		module.exports = function (c, s, a, x, cb) {
			`+wrap(append(calls, hookCalls...))+`
			setTimeout(function () { cb(null, { scope: ['done'] }); }, 20);
		};`)
		res, err := e.Run(context.Background(), input())
		if err != nil || !reflect.DeepEqual(res.Scope, []string{"done"}) {
			t.Fatalf("result = %+v, %v", res, err)
		}
	})
	t.Run("action", func(t *testing.T) {
		e := actionEngine(t, describe+`
		exports.onExecuteCredentialsExchange = async (event, api) => {
			`+wrap(append(calls, actionCalls...))+`
			await new Promise((r) => setTimeout(r, 20));
			api.transaction.setTargetScopes(['done']);
		};`)
		in := input()
		in.GrantScopes = []string{"done"}
		res, err := e.Run(context.Background(), in)
		if err != nil || !reflect.DeepEqual(res.Scope, []string{"done"}) {
			t.Fatalf("result = %+v, %v", res, err)
		}
	})
}

// TestPrototypeSettersDoNotReachTheEngine: setters a script puts on
// Object.prototype are not run by the engine's own objects.
func TestPrototypeSettersDoNotReachTheEngine(t *testing.T) {
	e := actionEngine(t, `
	const ks = ['accessToken', 'access', 'transaction', 'cache', 'secrets', 'type', 'code', 'record', 'expires_at', 'ref', 'storage', 'webtask', 'statusCode', 'value'];
	for (let i = 0; i < ks.length; i++) {
		const k = ks[i];
		Object.defineProperty(Object.prototype, k, { set: function () { throw new Error('setter ran for ' + k); }, configurable: true });
	}
	exports.onExecuteCredentialsExchange = async (event, api) => {
		if (event.request.body.ok) return;
		api.cache.set('k', 'v');
		setTimeout(() => {}, 1);
		api.access.deny('invalid_scope', 'denied');
	};`)
	failsThenRecovers(t, e, CodeInvalidScope)
}

// TestLoopingGettersEndWithTheRun: an error whose getters loop for ever,
// read from Go after the script returned, ends with the time limit.
func TestLoopingGettersEndWithTheRun(t *testing.T) {
	const v = `{ get message() { for (;;) {} }, get name() { for (;;) {} } }`
	for name, body := range map[string]string{
		"async throw":      `module.exports = async function (c, s, a, x, cb) { if (x.body.ok) return cb(null, {}); throw ` + v + `; };`,
		"throw":            `module.exports = function (c, s, a, x, cb) { if (x.body.ok) return cb(null, {}); throw ` + v + `; };`,
		"timer throw":      `module.exports = function (c, s, a, x, cb) { if (x.body.ok) return cb(null, {}); setTimeout(() => { throw ` + v + `; }, 1); };`,
		"cb":               `module.exports = function (c, s, a, x, cb) { if (x.body.ok) return cb(null, {}); cb(` + v + `); };`,
		"thenable rejects": `module.exports = function (c, s, a, x, cb) { if (x.body.ok) return cb(null, {}); return { then(res, rej) { rej(` + v + `); } }; };`,
	} {
		t.Run(name, func(t *testing.T) {
			log, _ := observed(t, zap.NewAtomicLevelAt(zap.DebugLevel))
			e := engine(t, compileHook(t, body), func(c *Config) { c.Logger = log; c.Timeout = 100 * time.Millisecond })
			failsThenRecovers(t, e, CodeServerError)
		})
	}
}

// TestTimersBounded: a run cannot schedule timers without bound.
func TestTimersBounded(t *testing.T) {
	e := hookEngine(t, `module.exports = function (c, s, a, x, cb) {
		let n = 0, threw = '';
		try { for (; n < 20000; n++) setTimeout(function () {}, 100000); } catch (e) { threw = e.message; }
		cb(null, { 'https://t.example/n': n, 'https://t.example/threw': threw });
	};`)
	res, err := e.Run(context.Background(), input())
	if err != nil {
		t.Fatal(err)
	}
	if got := string(res.Claims["https://t.example/n"]); got != fmt.Sprint(maxPending) {
		t.Errorf("%s timers scheduled, want %d", got, maxPending)
	}
	if !strings.Contains(string(res.Claims["https://t.example/threw"]), "too many timers") {
		t.Errorf("threw %s", res.Claims["https://t.example/threw"])
	}
}
