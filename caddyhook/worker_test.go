package caddyhook

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
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
		setInterval(() => { global.leaked = (global.leaked || 0) + 1; }, 5);
		setImmediate(() => { global.immediateRan = true; });
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
			wantError(t, err, 500, CodeServerError, "")
			claims, err := runMode(t, e, "")
			if err != nil {
				t.Fatal(err)
			}
			if got := servedCount(t, claims); got != 1 && got != 3 {
				t.Fatalf("counter after %s = %d", mode, got)
			} else if got == 3 {
				t.Fatalf("the %s runtime was reused", mode)
			}
		})
	}
}

// TestPendingWorkNeverCrossesExchanges: timers, intervals and immediates an
// exchange leaves behind are dropped when it ends; none of them runs in the
// next exchange the runtime serves, however long that one waits.
func TestPendingWorkNeverCrossesExchanges(t *testing.T) {
	e := engine(t, compileHook(t, counterHook), nil)
	if _, err := runMode(t, e, "leave-timer"); err != nil {
		t.Fatal(err)
	}
	claims, err := runMode(t, e, "wait")
	if err != nil {
		t.Fatal(err)
	}
	if servedCount(t, claims) != 2 {
		t.Fatalf("the runtime was not reused: %s", claims["served"])
	}
	if got := string(claims["leaked"]); got != "0" {
		t.Fatalf("a timer of the first exchange ran in the second: leaked = %s", got)
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
	e, err := NewEngine(Config{Actions: []*Script{act}, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
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
		if (context.body.mode === 'fire') {
			fetch(context.body.url).then((r) => { global.calledBack = true; });
			return cb(null, { scope });
		}
		setTimeout(() => cb(null, { scope, calledBack: global.calledBack === true }), 400);
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
}
