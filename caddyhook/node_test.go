package caddyhook

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddyhook/caddyhook/internal/logscan"
)

var modulesDir = filepath.Join("..", "testdata", "modules")

// claimOf runs a hook that puts its findings in one claim and returns it.
func claimOf(t *testing.T, src string, mod func(*Config)) any {
	t.Helper()
	res, err := engine(t, compileHook(t, src), mod).Run(context.Background(), input())
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal(res.Claims["https://t.example/out"], &v); err != nil {
		t.Fatalf("claim: %v (%s)", err, res.Claims["https://t.example/out"])
	}
	return v
}

func withModules(c *Config) { c.ModulesDir = modulesDir }

func TestBuiltinModules(t *testing.T) {
	src := `
	const util = require('util'), url = require('url'), qs = require('querystring');
	const crypto = require('node:crypto'), { Buffer: B } = require('buffer');
	module.exports = async function (client, scope, audience, context, cb) {
		const u = new url.URL('https://api.example.com/v1?x=1');
		cb(null, {'https://t.example/out': {
			format: util.format('%s has %d scopes', client.id, scope.length),
			host: u.host, param: u.searchParams.get('x'),
			qs: qs.stringify({a: 'b c', list: [1, 2]}), parsed: qs.parse('a=1&a=2&b=x%20y'),
			sha256: crypto.createHash('sha256').update('abc').digest('hex'),
			hmac: crypto.createHmac('sha256', 'key').update('msg').digest('base64'),
			uuid: /^[0-9a-f-]{36}$/.test(crypto.randomUUID()),
			random: crypto.randomBytes(16).length,
			buffer: Buffer.from('hello').toString('base64') + '/' + B.from('aGk=', 'base64').toString(),
			inspect: util.inspect({a: [1]}),
			promisified: await util.promisify(function (n, cb) { setTimeout(function () { cb(null, n * 2); }, 1); })(21),
		}});
	};`
	got := claimOf(t, src, nil)
	want := map[string]any{
		"format": "svc-1 has 2 scopes", "host": "api.example.com", "param": "1",
		"qs": "a=b%20c&list=1&list=2", "parsed": map[string]any{"a": []any{"1", "2"}, "b": "x y"},
		"sha256": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
		"hmac":   "LZPLwb4We8sWN6SiPL/wGnh48MUO6DOVTqUiG7G4xig=",
		"uuid":   true, "random": float64(16), "buffer": "aGVsbG8=/hi", "inspect": `{"a":[1]}`, "promisified": float64(42),
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %v\nwant %v", got, want)
	}
}

func TestModulesDir(t *testing.T) {
	src := `
	const ms = require('ms');
	const rules = require('tenant-rules');
	module.exports = function (client, scope, audience, context, cb) {
		cb(null, {'https://t.example/out': {
			ms: ms('2 days'), gold: rules.lifetimeSeconds('gold'), standard: rules.lifetimeSeconds('other'),
			same: require('ms') === ms,
		}});
	};`
	got := claimOf(t, src, withModules)
	want := map[string]any{"ms": float64(172800000), "gold": float64(7200), "standard": float64(1800), "same": true}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func TestForbiddenModules(t *testing.T) {
	t.Setenv("CADDYHOOK_HOST_SECRET", "must-not-be-seen")
	outside, _ := filepath.Abs(filepath.Join("..", "testdata", "hooks", "starter.js"))
	names := []string{
		"fs", "fs/promises", "net", "http", "https", "child_process", "process", "os", "path", "vm",
		"worker_threads", "dns", "tls", "events", "console", "node:fs", "node:child_process", "node:anything",
		"/etc/passwd", "../../../../../../etc/passwd", "./local-file", "not-installed", outside,
	}
	src := `module.exports = function (client, scope, audience, context, cb) {
		const out = {};
		for (const name of JSON.parse(context.body.names)) {
			try { require(name); out[name] = 'LOADED'; } catch (e) { out[name] = e.message; }
		}
		try { out.escape = require('tenant-rules').tryToEscape('../../../../../../etc/hostname'); } catch (e) { out.escape = e.message; }
		out.processGlobal = typeof process;
		out.env = JSON.stringify(process.env) + Object.getOwnPropertyNames(process.env).length;
		cb(null, {'https://t.example/out': out});
	};`
	namesJSON, _ := json.Marshal(names)
	for _, dir := range []string{"", modulesDir} {
		in := input()
		in.Request.Body = map[string]any{"names": string(namesJSON)}
		res, err := engine(t, compileHook(t, src), func(c *Config) { c.ModulesDir = dir }).Run(context.Background(), in)
		if err != nil {
			t.Fatal(err)
		}
		var out map[string]string
		_ = json.Unmarshal(res.Claims["https://t.example/out"], &out)
		for _, name := range names {
			if want := fmt.Sprintf("module '%s' is not available", name); !strings.Contains(out[name], want) {
				t.Errorf("modules_dir %q: require(%q) = %q, want %q", dir, name, out[name], want)
			}
		}
		if dir != "" && !strings.Contains(out["escape"], "is not available") {
			t.Errorf("a package escaped modules_dir: %q", out["escape"])
		}
		// The process global is Node's shape without the host: its env
		// is empty whatever the host's is (globals.go).
		if out["processGlobal"] != "object" || out["env"] != "{}0" {
			t.Errorf("process = %v, env = %v; want an object with an empty env", out["processGlobal"], out["env"])
		}
	}
}

func TestNodeStyle(t *testing.T) {
	t.Run("exports shorthand and implicit globals", func(t *testing.T) {
		got := claimOf(t, `counter = 0;
			exports = module.exports = function (c, s, a, x, cb) { counter++; setTimeout(function () { counter++; cb(null, {'https://t.example/out': counter}); }, 1); };`, nil)
		if got != float64(2) {
			t.Fatalf("got %v", got)
		}
	})
	t.Run("await a setTimeout promise", func(t *testing.T) {
		got := claimOf(t, `const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
			module.exports = async function (c, s, a, x, cb) { const t0 = Date.now(); await sleep(20); cb(null, {'https://t.example/out': Date.now() - t0 >= 15}); };`, nil)
		if got != true {
			t.Fatalf("got %v", got)
		}
	})
	t.Run("clearTimeout, setInterval, setImmediate order", func(t *testing.T) {
		got := claimOf(t, `module.exports = function (c, s, a, x, cb) {
			const seen = [];
			const t = setTimeout(() => seen.push('cleared timer ran'), 1); clearTimeout(t);
			let n = 0; const iv = setInterval(() => { seen.push('tick' + (++n)); if (n === 3) { clearInterval(iv); cb(null, {'https://t.example/out': seen}); } }, 1);
			setImmediate(() => seen.push('immediate'));
			Promise.resolve().then(() => seen.push('microtask'));
			seen.push('sync');
		};`, nil)
		want := []any{"sync", "microtask", "immediate", "tick1", "tick2", "tick3"}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("got %v, want %v", got, want)
		}
	})
	t.Run("cb twice: first wins, warning logged", func(t *testing.T) {
		core, logs := observer.New(zap.WarnLevel)
		got := claimOf(t, `module.exports = function (c, s, a, x, cb) { cb(null, {'https://t.example/out': 'first'}); cb(null, {'https://t.example/out': 'second'}); };`,
			func(c *Config) { c.Logger = logscan.Tee(core) })
		if got != "first" || logs.FilterMessageSnippet("more than once").Len() != 1 {
			t.Fatalf("got %v, logs %v", got, logs.All())
		}
	})
}

func TestTimeLimitEndsRunaways(t *testing.T) {
	const limit = 200 * time.Millisecond
	for name, src := range map[string]string{
		"endless loop":           `module.exports = function (c, s, a, x, cb) { while (true) {} };`,
		"never-settling promise": `module.exports = async function (c, s, a, x, cb) { await new Promise(() => {}); };`,
		"never calls cb":         `module.exports = function (c, s, a, x, cb) {};`,
		"action endless loop":    ``,
	} {
		t.Run(name, func(t *testing.T) {
			cfg := func(c *Config) { c.Timeout = limit }
			var e *Engine
			if src == "" {
				act, err := Compile("a.js", []byte(`exports.onExecuteCredentialsExchange = async () => { for (;;) {} };`), ActionKind)
				if err != nil {
					t.Fatal(err)
				}
				e, err = NewEngine(Config{Actions: []*Script{act}, Timeout: limit})
				if err != nil {
					t.Fatal(err)
				}
			} else {
				e = engine(t, compileHook(t, src), cfg)
			}
			start := time.Now()
			_, err := e.Run(context.Background(), input())
			elapsed := time.Since(start)
			wantError(t, err, CodeServerError, "hook timed out")
			// A generous margin: the point is that the run ends, not how fast.
			if elapsed > limit+2*time.Second {
				t.Fatalf("run took %v with a %v limit", elapsed, limit)
			}
		})
	}
}

// TestIsolationBetweenRuns: with isolate_runs, nothing a script does to its
// runtime reaches the next exchange.
func TestIsolationBetweenRuns(t *testing.T) {
	src := `module.exports = function (client, scope, audience, context, cb) {
		const dirty = [
			typeof leaked !== 'undefined', Object.prototype.polluted === true, Array.prototype.push.hacked === true,
			JSON.stringify.hacked === true, typeof Math.random() !== 'number', String(globalThis.InvalidScopeError).includes('hacked'),
		];
		leaked = 1;
		Object.prototype.polluted = true;
		const push = Array.prototype.push; Array.prototype.push = function () { return push.apply(this, arguments); }; Array.prototype.push.hacked = true;
		const stringify = JSON.stringify; JSON.stringify = function () { return stringify.apply(this, arguments); }; JSON.stringify.hacked = true;
		Math.random = function () { return 'hacked'; };
		InvalidScopeError = 'hacked';
		cb(null, { scope: dirty.some(Boolean) ? ['contaminated'] : ['clean'] });
	};`
	// isolate_runs: a fresh runtime for every exchange.
	e := engine(t, compileHook(t, src), func(c *Config) { c.IsolateRuns = true })
	for i := 0; i < 3; i++ {
		res, err := e.Run(context.Background(), input())
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(res.Scope, []string{"clean"}) {
			t.Fatalf("run %d saw state left by an earlier run", i)
		}
	}
}

// TestConcurrentRunsGetTheirOwnClaims: 1,000 exchanges at once on one
// engine's warm runtimes each get their own claims and scope, though hook
// and action wait on a timer and a promise between reading their input and
// answering; the pool stays bounded. Run under -race.
func TestConcurrentRunsGetTheirOwnClaims(t *testing.T) {
	hook := compileHook(t, `module.exports = function (client, scope, audience, context, cb) {
		setTimeout(function () {
			cb(null, { scope: [client.id], 'https://t.example/id': client.id, 'https://t.example/n': context.body.n });
		}, Number(context.body.n) % 3);
	};`)
	act, err := Compile("act.js", []byte(`exports.onExecuteCredentialsExchange = async (event, api) => {
		await null;
		api.accessToken.setCustomClaim('https://t.example/echo', event.client.client_id + ':' + event.request.body.n);
	};`), ActionKind)
	if err != nil {
		t.Fatal(err)
	}
	e, err := NewEngine(Config{Hook: hook, Actions: []*Script{act}, Timeout: 30 * time.Second, ModulesDir: modulesDir})
	if err != nil {
		t.Fatal(err)
	}
	const n = 1000
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			in := input()
			in.Client.ID = fmt.Sprintf("client-%d", i)
			in.Request.Body = map[string]any{"n": fmt.Sprint(i)}
			res, err := e.Run(context.Background(), in)
			if err != nil {
				errs <- err
				return
			}
			want := map[string]string{
				"https://t.example/id": fmt.Sprintf("%q", in.Client.ID), "https://t.example/n": fmt.Sprintf(`"%d"`, i),
				"https://t.example/echo": fmt.Sprintf(`"%s:%d"`, in.Client.ID, i),
			}
			for k, v := range want {
				if string(res.Claims[k]) != v {
					errs <- fmt.Errorf("run %d: %s = %s, want %s", i, k, res.Claims[k], v)
				}
			}
			if !reflect.DeepEqual(res.Scope, []string{in.Client.ID}) {
				errs <- fmt.Errorf("run %d: scope %v", i, res.Scope)
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := e.pool.size(); got < 1 || got > defaultIdleWorkers() {
		t.Errorf("%d idle runtimes, want 1 to %d", got, defaultIdleWorkers())
	}
}

func TestConsoleLevelsAndCap(t *testing.T) {
	core, logs := observer.New(zap.DebugLevel)
	src := `module.exports = function (c, s, a, x, cb) {
		console.log('log'); console.info('info'); console.warn('warn'); console.error('error'); console.debug('debug');
		console.log('x'.repeat(10000));
		cb(null, {});
	};`
	if _, err := engine(t, compileHook(t, src), func(c *Config) { c.Logger = logscan.Tee(core) }).Run(context.Background(), input()); err != nil {
		t.Fatal(err)
	}
	levels := map[string]string{}
	for _, e := range logs.All() {
		levels[e.Message] = e.Level.String()
		if e.ContextMap()["client_id"] != "svc-1" || e.ContextMap()["script"] != "hook.js" {
			t.Errorf("log entry lacks script or client id: %v", e.ContextMap())
		}
		if len(e.Message) > maxLogMessage+20 {
			t.Errorf("message of %d bytes was not capped", len(e.Message))
		}
	}
	want := map[string]string{"log": "info", "info": "info", "warn": "warn", "error": "error", "debug": "debug"}
	for msg, lvl := range want {
		if levels[msg] != lvl {
			t.Errorf("console.%s logged at %q", msg, levels[msg])
		}
	}
}

func TestWarnsWhenNothingCanCallCb(t *testing.T) {
	for src, warns := range map[string]bool{
		`module.exports = function (c, s, a, x, cb) {};`:                                    true,
		`module.exports = async function (c, s, a, x, cb) { await new Promise(() => {}) };`: true,
		`module.exports = function (c, s, a, x, cb) { setTimeout(function () {}, 5000) };`:  false,
	} {
		core, logs := observer.New(zap.WarnLevel)
		_, err := engine(t, compileHook(t, src), func(c *Config) { c.Timeout = 50 * time.Millisecond; c.Logger = logscan.Tee(core) }).Run(context.Background(), input())
		wantError(t, err, CodeServerError, "hook timed out")
		if got := logs.FilterMessageSnippet("nothing scheduled").Len() == 1; got != warns {
			t.Errorf("%s: warned = %v, want %v", src, got, warns)
		}
	}
}
