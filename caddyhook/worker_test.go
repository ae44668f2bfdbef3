package caddyhook

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
)

// counterHook counts, at module level and in global, the exchanges its
// runtime served, and tells the exchange in claims. A body member "mode"
// makes it misbehave.
const counterHook = `
let served = 0;
const loadedAt = ++globalThis.loads || (globalThis.loads = 1);
module.exports = function (client, scope, audience, context, cb) {
	served++;
	global.total = (global.total || 0) + 1;
	switch (context.body.mode) {
	case 'spin': for (;;) {}
	case 'throw': throw new Error('boom');
	case 'leave-timer':
		setTimeout(() => { global.leaked = (global.leaked || 0) + 1; }, 20);
		break;
	case 'leave-immediate':
		setImmediate(() => { global.leaked = (global.leaked || 0) + 1; });
		break;
	case 'leave-unref':
		setTimeout(() => { global.leaked = (global.leaked || 0) + 1; }, 20).unref();
		setInterval(() => { global.leaked = (global.leaked || 0) + 1; }, 5).unref();
		AbortSignal.timeout(30);
		break;
	case 'wait':
		return setTimeout(() => cb(null, { scope, served, leaked: global.leaked || 0 }), 80);
	case 'keep-cb':
		global.keptCb = cb;
		break;
	}
	cb(null, { scope, served, total: global.total, client: client.id });
};`

func runMode(t *testing.T, e *Engine, mode string) (map[string]json.RawMessage, error) {
	t.Helper()
	in := input()
	if mode != "" {
		in.Request.Body = map[string]any{"mode": mode}
	}
	res, err := e.Run(context.Background(), in)
	if err != nil {
		return nil, err
	}
	return res.Claims, nil
}

func servedCount(t *testing.T, claims map[string]json.RawMessage) int {
	t.Helper()
	n, err := strconv.Atoi(string(claims["served"]))
	if err != nil {
		t.Fatalf("served = %s", claims["served"])
	}
	return n
}

// TestModuleStatePersists: module-level variables and global persist
// between the exchanges one engine serves, and the top level runs once.
func TestModuleStatePersists(t *testing.T) {
	e := engine(t, compileHook(t, counterHook), nil)
	for want := 1; want <= 5; want++ {
		claims, err := runMode(t, e, "")
		if err != nil {
			t.Fatal(err)
		}
		if got := servedCount(t, claims); got != want {
			t.Fatalf("exchange %d: module counter = %d", want, got)
		}
		if got := string(claims["total"]); got != strconv.Itoa(want) {
			t.Fatalf("exchange %d: global counter = %s", want, got)
		}
	}
	// A script error is an ordinary outcome: the runtime stays warm.
	if _, err := runMode(t, e, "throw"); err == nil {
		t.Fatal("throw succeeded")
	}
	claims, err := runMode(t, e, "")
	if err != nil {
		t.Fatal(err)
	}
	if got := servedCount(t, claims); got != 7 {
		t.Fatalf("after a thrown error, counter = %d, want 7", got)
	}
}

// TestModuleStateNotShared: two engines built from the same script (two
// sites, or a config and its reload) never share a runtime.
func TestModuleStateNotShared(t *testing.T) {
	hook := compileHook(t, counterHook)
	a, b := engine(t, hook, nil), engine(t, hook, nil)
	for i := 0; i < 3; i++ {
		if _, err := runMode(t, a, ""); err != nil {
			t.Fatal(err)
		}
	}
	claims, err := runMode(t, b, "")
	if err != nil {
		t.Fatal(err)
	}
	if got := servedCount(t, claims); got != 1 {
		t.Fatalf("second engine's counter = %d, want 1", got)
	}
	a.Close()
	if a.pool.size() != 0 {
		t.Fatal("Close kept idle runtimes")
	}
	claims, err = runMode(t, a, "")
	if err != nil {
		t.Fatal(err)
	}
	if got := servedCount(t, claims); got != 1 {
		t.Fatalf("after Close, counter = %d, want a fresh runtime", got)
	}
}

// TestInterruptedRuntimeNotReused: a runtime whose run timed out, or was
// stopped by the memory guard, is discarded; the next exchange gets a
// fresh one whose top level runs again.
func TestInterruptedRuntimeNotReused(t *testing.T) {
	cases := map[string]func(*Config){
		"spin": func(c *Config) { c.Timeout = 300 * time.Millisecond },
		"bomb": func(c *Config) { c.Timeout = 20 * time.Second; c.MemoryLimit = testMemoryLimit },
	}
	for mode, mod := range cases {
		t.Run(mode, func(t *testing.T) {
			src := counterHook + `
			const bomb = () => { const a = []; for (;;) a.push('x'.repeat(1 << 16) + a.length); };
			const inner = module.exports;
			module.exports = function (c, s, a, ctx, cb) { if (ctx.body.mode === 'bomb') bomb(); return inner.apply(this, arguments); };`
			e := engine(t, compileHook(t, src), mod)
			for i := 0; i < 2; i++ {
				if _, err := runMode(t, e, ""); err != nil {
					t.Fatal(err)
				}
			}
			_, err := runMode(t, e, mode)
			wantError(t, err, CodeServerError, "")
			claims, err := runMode(t, e, "")
			if err != nil {
				t.Fatal(err)
			}
			if got := servedCount(t, claims); got != 1 {
				t.Fatalf("the %s runtime was reused: counter = %d, want 1", mode, got)
			}
		})
	}
}

// TestPendingWorkNeverCrossesExchanges: what an exchange leaves scheduled
// never runs in the next exchange. A timer or immediate the program would
// wait for in Node leaves the runtime half-way (a promise waiting on it
// would never settle), so the runtime is not reused; unref'd timers (and
// AbortSignal.timeout's) are dropped and the runtime stays warm.
func TestPendingWorkNeverCrossesExchanges(t *testing.T) {
	for mode, reused := range map[string]bool{"leave-timer": false, "leave-immediate": false, "leave-unref": true} {
		t.Run(mode, func(t *testing.T) {
			e := engine(t, compileHook(t, counterHook), nil)
			if _, err := runMode(t, e, mode); err != nil {
				t.Fatal(err)
			}
			claims, err := runMode(t, e, "wait")
			if err != nil {
				t.Fatal(err)
			}
			if got, want := servedCount(t, claims) == 2, reused; got != want {
				t.Fatalf("runtime reused = %v, want %v", got, want)
			}
			if got := string(claims["leaked"]); got != "0" {
				t.Fatalf("work of the first exchange ran in the second: leaked = %s", got)
			}
		})
	}
}

// TestKeptCallbacksCannotReachLaterExchanges: a script that keeps the api
// of one exchange and calls it in a later one cannot change what the
// earlier exchange returned, nor the later one's token.
func TestKeptCallbacksCannotReachLaterExchanges(t *testing.T) {
	act := compileAction(t, "keep.js", `
	let kept;
	exports.onExecuteCredentialsExchange = async (event, api) => {
		if (kept) {
			let threw = false;
			try { kept.accessToken.setCustomClaim('late', 1); } catch (e) { threw = true; }
			try { kept.access.deny('invalid_request', 'late'); } catch (e) { threw = threw && true; }
			api.accessToken.setCustomClaim('kept_threw', threw);
		}
		kept = api;
		api.accessToken.setCustomClaim('n', event.client.client_id);
	};`)
	e := actionsEngine(t, act)
	first, err := e.Run(context.Background(), input())
	if err != nil {
		t.Fatal(err)
	}
	second, err := e.Run(context.Background(), input())
	if err != nil {
		t.Fatalf("a kept api's deny reached a later exchange: %v", err)
	}
	if _, ok := first.Claims["late"]; ok {
		t.Fatal("a later exchange changed an earlier one's claims")
	}
	if _, ok := second.Claims["late"]; ok {
		t.Fatal("a kept api set a claim on the later exchange")
	}
	if got := string(second.Claims["kept_threw"]); got != "true" {
		t.Fatalf("calling a kept api did not throw: %s", got)
	}
}

// TestIsolateRunsFreshRuntime: isolate_runs gives every exchange a fresh
// runtime and keeps none.
func TestIsolateRunsFreshRuntime(t *testing.T) {
	e := engine(t, compileHook(t, counterHook), func(c *Config) { c.IsolateRuns = true })
	for i := 0; i < 3; i++ {
		claims, err := runMode(t, e, "")
		if err != nil {
			t.Fatal(err)
		}
		if got := servedCount(t, claims); got != 1 {
			t.Fatalf("exchange %d: counter = %d, want 1", i, got)
		}
	}
	if e.pool.size() != 0 {
		t.Fatal("isolate_runs kept a runtime")
	}
}

// TestKeptStorageRefuses: a hook that keeps context.webtask.storage cannot
// use it in a later exchange.
func TestKeptStorageRefuses(t *testing.T) {
	e := engine(t, compileHook(t, `
	let kept;
	module.exports = function (client, scope, audience, context, cb) {
		let threw = null;
		if (kept) {
			threw = false;
			try { kept.get(() => {}); } catch (e) { threw = String(e.message); }
		}
		kept = context.webtask.storage;
		cb(null, { scope, threw });
	};`), func(c *Config) { c.Storage = &certmagic.FileStorage{Path: t.TempDir()} })
	if _, err := e.Run(context.Background(), input()); err != nil {
		t.Fatal(err)
	}
	res, err := e.Run(context.Background(), input())
	if err != nil {
		t.Fatal(err)
	}
	if got := string(res.Claims["threw"]); got != strconv.Quote(string(errExchangeEnded)) {
		t.Fatalf("kept storage: %s", got)
	}
}

// TestCallInFlightNeverCallsBackInNextExchange: an outbound call one
// exchange does not await still reaches the service, but its callback never
// runs in the next exchange the runtime serves.
func TestCallInFlightNeverCallsBackInNextExchange(t *testing.T) {
	arrived := make(chan struct{}, 4)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		time.Sleep(150 * time.Millisecond)
		_, _ = w.Write([]byte("late"))
	}))
	t.Cleanup(srv.Close)
	e := engine(t, compileHook(t, `
	module.exports = function (client, scope, audience, context, cb) {
		global.served = (global.served || 0) + 1;
		if (context.body.mode === 'fire') {
			fetch(context.body.url).then((r) => { global.calledBack = true; });
			return cb(null, { scope });
		}
		setTimeout(() => cb(null, { scope, calledBack: global.calledBack === true, served: global.served }), 400);
	};`), func(c *Config) { c.FetchAllow = []string{srv.URL + "/"} })
	in := input()
	in.Request.Body = map[string]any{"mode": "fire", "url": srv.URL + "/audit"}
	if _, err := e.Run(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	res, err := e.Run(context.Background(), input())
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-arrived:
	default:
		t.Fatal("the call the first exchange did not await never reached the service")
	}
	if got := string(res.Claims["calledBack"]); got != "false" {
		t.Fatalf("the first exchange's callback ran in the second: calledBack = %s", got)
	}
	// Its promise could never settle: the runtime was not reused.
	if got := string(res.Claims["served"]); got != "1" {
		t.Fatalf("a runtime with a call under way was reused: served = %s", got)
	}
}

// TestStackOverflowRuntimeNotReused: goja runs no catch or finally block
// when the stack overflows, so a runtime that overflowed is half-way
// through the script and never serves another exchange, even when the
// overflow was swallowed by Go code describing a value and the exchange
// succeeded. (Found by review: a finally that drops an elevated scope
// never ran, and the next client got it.)
func TestStackOverflowRuntimeNotReused(t *testing.T) {
	e := engine(t, compileHook(t, `
	let elevated = null, served = 0;
	function withAdmin(fn) { elevated = ['admin:all']; try { return fn(); } finally { elevated = null; } }
	const deep = (n) => deep(n + 1);
	module.exports = function (client, scope, audience, context, cb) {
		served++;
		switch (context.body.mode) {
		case 'overflow': try { withAdmin(() => deep(0)); } catch (e) {} break;
		case 'swallowed': withAdmin(() => console.log({ toJSON() { return deep(0); } })); break;
		}
		cb(null, { scope: elevated || scope, served });
	};`), func(c *Config) {
		c.Logger, _ = observed(t, zap.NewAtomicLevelAt(zap.InfoLevel)) // console.log formats its value
	})
	for _, mode := range []string{"overflow", "swallowed"} {
		_, _ = runMode(t, e, mode)
		claims, err := runMode(t, e, "")
		if err != nil {
			t.Fatal(err)
		}
		if got := servedCount(t, claims); got != 1 {
			t.Fatalf("%s: the runtime was reused (served %d)", mode, got)
		}
	}
}

// TestTopLevelFaultsFailAtLoad: a top level whose microtask throws, or
// that takes longer than an exchange may, fails at config load instead of
// failing every exchange that gets a fresh runtime.
func TestTopLevelFaultsFailAtLoad(t *testing.T) {
	for name, src := range map[string]string{
		"microtask": `queueMicrotask(() => { throw new Error('top-level microtask failed'); });
			module.exports = function (c, s, a, x, cb) { cb(null, {}); };`,
		"slow": `const end = Date.now() + 400; while (Date.now() < end) {}
			module.exports = function (c, s, a, x, cb) { cb(null, {}); };`,
	} {
		_, err := NewEngine(Config{Hook: compileHook(t, src), Timeout: 200 * time.Millisecond})
		if err == nil || !strings.Contains(err.Error(), "running top level") {
			t.Errorf("%s: NewEngine error = %v", name, err)
		}
	}
}

// TestKeptCbRefuses: a hook that keeps cb cannot call it in a later
// exchange.
func TestKeptCbRefuses(t *testing.T) {
	e := engine(t, compileHook(t, `
	let kept;
	module.exports = function (client, scope, audience, context, cb) {
		let threw = null;
		if (kept) { try { kept(null, {}); threw = false; } catch (e) { threw = e.message; } }
		kept = cb;
		cb(null, { scope, threw });
	};`), nil)
	for i := 0; i < 2; i++ {
		res, err := e.Run(context.Background(), input())
		if err != nil {
			t.Fatal(err)
		}
		if i == 1 && string(res.Claims["threw"]) != strconv.Quote(string(errExchangeEnded)) {
			t.Fatalf("kept cb: %s", res.Claims["threw"])
		}
	}
}

// TestLateApiCalls: an action's api called after its run is over, from a
// timer while a later action still runs, refuses to add claims, and a late
// deny is never lost: it fails the exchange. (Found by review: late grants
// took effect and late denials did not.)
func TestLateApiCalls(t *testing.T) {
	first := compileAction(t, "first.js", `exports.onExecuteCredentialsExchange = async (event, api) => {
		setTimeout(() => {
			try { api.accessToken.setCustomClaim('late', 'landed'); } catch (e) {}
			if (event.request.body.deny) api.access.deny('invalid_request', 'late');
		}, 5);
	};`)
	second := compileAction(t, "second.js", `exports.onExecuteCredentialsExchange = async () => { await new Promise((r) => setTimeout(r, 60)); };`)
	e := actionsEngine(t, first, second)
	res, err := e.Run(context.Background(), input())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := res.Claims["late"]; ok {
		t.Fatal("a claim set after its action returned reached the token")
	}
	in := input()
	in.Request.Body = map[string]any{"deny": true}
	_, err = e.Run(context.Background(), in)
	wantError(t, err, CodeInvalidRequest, "late")
}

// TestTopLevelPendingWorkWarns: a top level that leaves a timer the
// program waits for keeps every runtime from being reused; the operator is
// told at load, and exchanges still succeed on fresh runtimes.
func TestTopLevelPendingWorkWarns(t *testing.T) {
	for src, warns := range map[string]bool{
		`setInterval(() => {}, 60000);`:         true,
		`setInterval(() => {}, 60000).unref();`: false,
	} {
		log, logs := observed(t, zap.NewAtomicLevelAt(zap.WarnLevel))
		e := engine(t, compileHook(t, src+counterHook), func(c *Config) { c.Logger = log })
		if got := logs.FilterMessageSnippet("no runtime is reused").Len() > 0; got != warns {
			t.Errorf("%s: warned = %v, want %v", src, got, warns)
		}
		for want := 1; want <= 2; want++ {
			claims, err := runMode(t, e, "")
			if err != nil {
				t.Fatal(err)
			}
			if got, fresh := servedCount(t, claims), warns; fresh && got != 1 || !fresh && got != want {
				t.Errorf("%s: exchange %d served as number %d", src, want, got)
			}
		}
	}
}
