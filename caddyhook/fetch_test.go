package caddyhook

import (
	"bufio"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dop251/goja"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddyhook/caddyhook/internal/logscan"
)

// fetchService is the API scripts call in these tests. It records what
// it received, so tests can check what was sent.
func fetchService(t *testing.T) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/echo", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Reply", "reply-header-secret")
		w.Header().Add("Set-Cookie", "a=1")
		w.Header().Add("Set-Cookie", "b=2")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"method": r.Method, "path": r.URL.Path, "query": r.URL.RawQuery, "body": string(body),
			"auth": r.Header.Get("Authorization"), "type": r.Header.Get("Content-Type"),
			"x": r.Header.Get("X-Custom"), "secret": "response-body-secret",
		})
	})
	mux.HandleFunc("/v1/missing", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, `{"error":"no such thing"}`)
	})
	mux.HandleFunc("/v1/text", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "plain text")
	})
	mux.HandleFunc("/v1/redirect-in", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/v1/echo?from=redirect", http.StatusFound)
	})
	mux.HandleFunc("/v1/redirect-out", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/admin/secret", http.StatusFound)
	})
	mux.HandleFunc("/v1/redirect-metadata", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://169.254.169.254/latest/meta-data/", http.StatusFound)
	})
	mux.HandleFunc("/admin/secret", func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("a script reached %s, outside the allow-list", r.URL)
	})
	mux.HandleFunc("/v1/slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	})
	mux.HandleFunc("/v1/huge", func(w http.ResponseWriter, r *http.Request) {
		chunk := strings.Repeat("x", 64<<10)
		for i := 0; i < (maxFetchResponseSize/len(chunk))+2; i++ {
			if _, err := io.WriteString(w, chunk); err != nil {
				return
			}
		}
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// fetchEngine is engine with actions, a longer time limit, and scripts
// that may call srv under /v1/.
func fetchEngine(t *testing.T, srv *httptest.Server, hook *Script, actions []*Script, mod func(*Config)) *Engine {
	t.Helper()
	return engine(t, hook, func(cfg *Config) {
		cfg.Actions, cfg.Timeout, cfg.FetchAllow = actions, 5*time.Second, []string{srv.URL + "/v1/"}
		if mod != nil {
			mod(cfg)
		}
	})
}

// claimsOf runs e and returns the claims of the result as Go values.
func claimsOf(t *testing.T, e *Engine) map[string]any {
	t.Helper()
	res, err := e.Run(context.Background(), input())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]any{}
	for k, v := range res.Claims {
		var x any
		_ = json.Unmarshal(v, &x)
		out[strings.TrimPrefix(k, "https://t.example/")] = x
	}
	return out
}

func wantClaims(t *testing.T, got map[string]any, want map[string]any) {
	t.Helper()
	for k, w := range want {
		gj, _ := json.Marshal(got[k])
		wj, _ := json.Marshal(w)
		if string(gj) != string(wj) {
			t.Errorf("claim %s = %s, want %s", k, gj, wj)
		}
	}
}

// scriptURL puts the server's URL in a script.
func scriptURL(src string, srv *httptest.Server) string {
	return strings.ReplaceAll(src, "BASE", srv.URL)
}

func TestFetchRequestHook(t *testing.T) {
	srv := fetchService(t)
	hook := compileHook(t, scriptURL(`
const request = require('request');
const util = require('util');
module.exports = function (client, scope, audience, context, cb) {
	request.post({ url: 'BASE/v1/echo', qs: { a: [1, 2], b: 'x y' }, form: { k: 'v&w' },
		auth: { user: 'u', pass: 'p' }, headers: { 'X-Custom': 'c' }, json: true }, function (err, res, body) {
		if (err) return cb(err);
		const get = util.promisify(request.defaults({ baseUrl: 'BASE/v1', json: true }).get);
		get('/echo?q=1').then(function (res2) {
			cb(null, { scope: scope,
				'https://t.example/status': res.statusCode,
				'https://t.example/sent': body,
				'https://t.example/same': res.body === body,
				'https://t.example/type': res.headers['content-type'],
				'https://t.example/cookies': res.headers['set-cookie'],
				'https://t.example/promisified': [res2.statusCode, res2.body.path, res2.body.query] });
		}, cb);
	});
};`, srv))
	got := claimsOf(t, fetchEngine(t, srv, hook, nil, nil))
	wantClaims(t, got, map[string]any{
		"status": 200,
		"sent": map[string]any{"method": "POST", "path": "/v1/echo", "query": "a%5B0%5D=1&a%5B1%5D=2&b=x%20y",
			"body": "k=v%26w", "auth": "Basic dTpw", "type": "application/x-www-form-urlencoded", "x": "c",
			"secret": "response-body-secret"},
		"same":        true,
		"type":        "application/json",
		"cookies":     []string{"a=1", "b=2"},
		"promisified": []any{200, "/v1/echo", "q=1"},
	})
}

func TestFetchGlobalAction(t *testing.T) {
	srv := fetchService(t)
	act := compileAction(t, "a.js", scriptURL(`
exports.onExecuteCredentialsExchange = async (event, api) => {
	const h = new Headers({ 'X-Custom': 'one' });
	h.append('x-custom', 'two');
	const res = await fetch('BASE/v1/echo', { method: 'POST', headers: h, body: JSON.stringify({ a: 1 }),
		signal: AbortSignal.timeout(3000) });
	const body = await res.json();
	let reused;
	try { await res.text(); } catch (e) { reused = e.name; }
	const text = await (await fetch(new Request('BASE/v1/text'))).text();
	const ac = new AbortController();
	const aborted = fetch('BASE/v1/slow', { signal: ac.signal }).catch(e => e.name);
	ac.abort();
	let timedOut;
	try { await fetch('BASE/v1/slow', { signal: AbortSignal.timeout(50) }); } catch (e) { timedOut = [e.name, e.code]; }
	const redirected = await fetch('BASE/v1/redirect-in');
	const manual = await fetch('BASE/v1/redirect-in', { redirect: 'manual' });
	const built = new Response('{"x":1}', { status: 201, headers: { 'content-type': 'application/json' } });
	api.accessToken.setCustomClaim('https://t.example/r', {
		status: res.status, ok: res.ok, statusText: res.statusText, url: res.url,
		type: res.headers.get('Content-Type'), x: body.x, body: body.body, cookies: res.headers.getSetCookie(),
		reused, text, aborted: await aborted, timedOut,
		redirected: [redirected.redirected, (await redirected.json()).query], manual: manual.status,
		built: [built.status, (await built.clone().json()).x, built.headers.get('content-type')],
		keys: [...h.keys()],
	});
};`, srv))
	got := claimsOf(t, fetchEngine(t, srv, nil, []*Script{act}, nil))
	wantClaims(t, got, map[string]any{"r": map[string]any{
		"status": 200, "ok": true, "statusText": "OK", "url": srv.URL + "/v1/echo",
		"type": "application/json", "x": "one, two", "body": `{"a":1}`, "cookies": []string{"a=1", "b=2"},
		"reused": "TypeError", "text": "plain text", "aborted": "AbortError", "timedOut": []any{"TimeoutError", 23},
		"redirected": []any{true, "from=redirect"}, "manual": 302,
		"built": []any{201, 1, "application/json"}, "keys": []string{"x-custom"},
	}})
}

func TestFetchAxiosAndNodeFetch(t *testing.T) {
	srv := fetchService(t)
	act := compileAction(t, "a.js", scriptURL(`
const axios = require('axios');
const nodeFetch = require('node-fetch');
exports.onExecuteCredentialsExchange = async (event, api) => {
	const client = axios.create({ baseURL: 'BASE/v1', headers: { 'X-Custom': 'inst' }, timeout: 3000 });
	const ok = await client.post('/echo', { n: 1 }, { params: { ids: [1, 2] }, auth: { username: 'a', password: 'b' } });
	let missing;
	try { await axios.get('BASE/v1/missing'); } catch (e) {
		missing = { msg: e.message, code: e.code, isAxios: axios.isAxiosError(e), status: e.response.status, data: e.response.data };
	}
	const accepted = await axios('BASE/v1/missing', { validateStatus: () => true });
	let timeout;
	try { await axios.get('BASE/v1/slow', { timeout: 50 }); } catch (e) { timeout = [e.code, e.message]; }
	const nf = await nodeFetch('BASE/v1/echo', { method: 'PUT', body: 'raw', headers: { 'Content-Type': 'text/plain' } });
	const nfBody = await nf.json();
	let nfTimeout;
	try { await nodeFetch.default('BASE/v1/slow', { timeout: 50 }); } catch (e) { nfTimeout = [e.name, e.type]; }
	api.accessToken.setCustomClaim('https://t.example/r', {
		ok: [ok.status, ok.data.method, ok.data.query, ok.data.body, ok.data.type, ok.data.x, ok.data.auth, ok.headers['content-type']],
		missing, accepted: [accepted.status, accepted.data.error], timeout,
		nf: [nf.status, nfBody.method, nfBody.body, nf instanceof nodeFetch.Response], nfTimeout,
		same: axios.default === axios,
	});
};`, srv))
	got := claimsOf(t, fetchEngine(t, srv, nil, []*Script{act}, nil))
	wantClaims(t, got, map[string]any{"r": map[string]any{
		"ok": []any{200, "POST", "ids[]=1&ids[]=2", `{"n":1}`, "application/json", "inst", "Basic YTpi", "application/json"},
		"missing": map[string]any{"msg": "Request failed with status code 404", "code": "ERR_BAD_REQUEST", "isAxios": true,
			"status": 404, "data": map[string]any{"error": "no such thing"}},
		"accepted":  []any{404, "no such thing"},
		"timeout":   []any{"ECONNABORTED", "timeout of 50ms exceeded"},
		"nf":        []any{200, "PUT", "raw", true},
		"nfTimeout": []any{"FetchError", "request-timeout"},
		"same":      true,
	}})
}

// TestFetchRefused: each call a rule refuses is an error the script can
// catch, with a message that says which rule.
func TestFetchRefused(t *testing.T) {
	srv := fetchService(t)
	act := compileAction(t, "a.js", scriptURL(`
const request = require('request');
const axios = require('axios');
const msg = p => p.then(() => 'no error', e => (e.cause && e.message === 'fetch failed' ? 'fetch failed: ' + e.cause.message : e.message));
exports.onExecuteCredentialsExchange = async (event, api) => {
	const r = {};
	r.outside = await msg(fetch('BASE/admin/secret'));
	r.prefixTrick = await msg(fetch('BASE/v1x/echo'));
	r.dotdot = await msg(fetch('BASE/v1/../admin/secret'));
	r.encoded = await msg(fetch('BASE/v1/%2e%2e/admin/secret'));
	r.redirectOut = await msg(fetch('BASE/v1/redirect-out'));
	r.redirectMeta = await msg(fetch('BASE/v1/redirect-metadata'));
	r.metadata = await msg(fetch('http://169.254.169.254/latest/meta-data/'));
	r.userinfo = await msg(fetch('http://u:p@127.0.0.1/v1/'));
	r.huge = await msg(fetch('BASE/v1/huge'));
	r.connect = await msg(fetch('BASE/v1/echo', { method: 'CONNECT' }));
	r.request = await new Promise(res => request('BASE/admin/secret', (err) => res(err && [err.message, err.code])));
	r.axios = await axios.get('BASE/admin/secret').catch(e => [e.message, e.code, e.isAxiosError]);
	api.accessToken.setCustomClaim('https://t.example/r', r);
};`, srv))
	got := claimsOf(t, fetchEngine(t, srv, nil, []*Script{act}, nil))
	notAllowed := func(u string) string {
		return "fetch to " + u + " is not allowed: add its URL prefix to fetch_allow"
	}
	wantClaims(t, got, map[string]any{"r": map[string]any{
		"outside":      notAllowed(srv.URL + "/admin/secret"),
		"prefixTrick":  notAllowed(srv.URL + "/v1x/echo"),
		"dotdot":       notAllowed(srv.URL + "/admin/secret"),
		"encoded":      notAllowed(srv.URL + "/admin/secret"),
		"redirectOut":  notAllowed(srv.URL + "/admin/secret"),
		"redirectMeta": notAllowed("http://169.254.169.254/latest/meta-data/"),
		"metadata":     notAllowed("http://169.254.169.254/latest/meta-data/"),
		"userinfo":     "invalid URL http://…@127.0.0.1/v1/: it must not carry credentials (use an Authorization header)",
		"huge":         fmt.Sprintf("fetch to %s/v1/huge: the response body is more than the %d bytes allowed", srv.URL, maxFetchResponseSize),
		"connect":      "fetch to " + srv.URL + "/v1/echo: the method CONNECT is not allowed",
		"request":      []any{notAllowed(srv.URL + "/admin/secret"), "ERR_FETCH_NOT_ALLOWED"},
		"axios":        []any{notAllowed(srv.URL + "/admin/secret"), "ERR_FETCH_NOT_ALLOWED", true},
	}})
}

// TestFetchUncaught: a refused call the script does not catch fails the
// exchange as any other rejection does.
func TestFetchUncaught(t *testing.T) {
	srv := fetchService(t)
	act := compileAction(t, "a.js", scriptURL(`
exports.onExecuteCredentialsExchange = async (event, api) => { await fetch('BASE/admin/secret'); };`, srv))
	_, err := fetchEngine(t, srv, nil, []*Script{act}, nil).Run(context.Background(), input())
	wantError(t, err, CodeServerError, "fetch to "+srv.URL+"/admin/secret is not allowed: add its URL prefix to fetch_allow")
}

// TestFetchNoAllowList: without fetch_allow every call fails, naming the
// directive.
func TestFetchNoAllowList(t *testing.T) {
	hook := compileHook(t, `module.exports = function (c, s, a, ctx, cb) {
		require('request')('https://api.example.com/v1?key=secret', function (err) { cb(err); });
	};`)
	e := engine(t, hook, nil)
	_, err := e.Run(context.Background(), input())
	wantError(t, err, CodeServerError, "fetch to https://api.example.com/v1 is not allowed: add its URL prefix to fetch_allow")
}

// TestFetchPastTheTimeLimit: a call still running when the exchange's
// time is up ends the exchange with "hook timed out", like any other
// script still running then; it cannot be caught, as the runtime is
// stopped.
func TestFetchPastTheTimeLimit(t *testing.T) {
	srv := fetchService(t)
	act := compileAction(t, "a.js", scriptURL(`
exports.onExecuteCredentialsExchange = async (event, api) => {
	try { await fetch('BASE/v1/slow'); } catch (e) { api.accessToken.setCustomClaim('https://t.example/caught', e.message); }
};`, srv))
	e := fetchEngine(t, srv, nil, []*Script{act}, func(c *Config) { c.Timeout = 300 * time.Millisecond })
	_, err := e.Run(context.Background(), input())
	wantError(t, err, CodeServerError, "hook timed out")
}

// TestFetchFireAndForget: a call the script does not await still reaches
// the service after the exchange has ended.
func TestFetchFireAndForget(t *testing.T) {
	// The service answers only once Run has returned: were the exchange
	// to wait for the call, the handler would give up instead.
	got, ran := make(chan string, 1), make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-ran:
		case <-time.After(3 * time.Second):
			got <- "the exchange waited for the call"
			return
		}
		b, _ := io.ReadAll(r.Body)
		got <- string(b)
	}))
	t.Cleanup(srv.Close)
	act := compileAction(t, "a.js", scriptURL(`
exports.onExecuteCredentialsExchange = async (event, api) => {
	fetch('BASE/v1/audit', { method: 'POST', body: 'audit entry' });
};`, srv))
	_, err := fetchEngine(t, srv, nil, []*Script{act}, nil).Run(context.Background(), input())
	close(ran)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case b := <-got:
		if b != "audit entry" {
			t.Fatalf("audit body = %q", b)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the fire-and-forget call never arrived")
	}
}

// TestFetchMetadataGuard: a name that resolves to a link-local or
// metadata address is refused when dialled, whatever prefix allowed the
// name; a prefix naming the address itself allows it.
func TestFetchMetadataGuard(t *testing.T) {
	f, err := newFetcher([]string{"http://rebind.test/", "http://169.254.169.254/latest/", "http://metadata.google.internal/"}, nil, logscan.Logger())
	if err != nil {
		t.Fatal(err)
	}
	resolved := map[string]netip.Addr{
		"rebind.test":              netip.MustParseAddr("169.254.169.254"),
		"metadata.google.internal": netip.MustParseAddr("127.0.0.1"),
	}
	f.lookup = func(_ context.Context, host string) ([]netip.Addr, error) {
		return []netip.Addr{resolved[host]}, nil
	}
	ctx := context.Background()
	for _, tc := range []struct {
		addr    string
		refused bool
	}{
		{"rebind.test:80", true},
		{"169.254.169.254:80", false}, // named by a prefix
		{"169.254.170.2:80", true},
		{"[fe80::1]:80", true},
		{"[fd00:ec2::254]:80", true},
		{"[::ffff:169.254.169.254]:80", false}, // the same address, named
		{"100.100.100.200:80", true},
		{"[64:ff9b::a9fe:a9fe]:80", true},         // 169.254.169.254 through NAT64
		{"[fd00:ec2::23]:80", true},               // EKS Pod Identity
		{"[64:ff9b:1::a9fe:a9fe]:80", true},       // NAT64 local-use prefix, /96 form
		{"[64:ff9b:1:a9fe:a9:fe00::]:80", true},   // NAT64 local-use prefix, /48 form
		{"[64:ff9b:1:a9:fe:a9fe:0:1]:80", true},   // NAT64 local-use prefix, /56 form
		{"[64:ff9b:1:0:a9:fea9:fe00:1]:80", true}, // NAT64 local-use prefix, /64 form
		{"[::ffff:0:a9fe:a9fe]:80", true},         // IPv4-translated (SIIT)
		{"[::a9fe:a9fe]:80", true},                // IPv4-compatible
		{"[fec0::1]:80", true},                    // deprecated site-local
		{"0.0.0.0:80", true},
		{"metadata.goog:80", true},
	} {
		ctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		conn, err := f.dial(ctx, "tcp", tc.addr)
		cancel()
		if conn != nil {
			conn.Close()
		}
		var fe *fetchError
		if refused := errors.As(err, &fe) && fe.code == "ERR_FETCH_ADDRESS_REFUSED"; refused != tc.refused {
			t.Errorf("dial %s: err = %v, want refused = %v", tc.addr, err, tc.refused)
		}
	}
}

// TestFetchMetadataThroughRun: the guard's refusal reaches the script as
// a catchable error.
func TestFetchMetadataThroughRun(t *testing.T) {
	act := compileAction(t, "a.js", `
exports.onExecuteCredentialsExchange = async (event, api) => {
	const e = await fetch('http://rebind.test/x').catch(e => e);
	api.accessToken.setCustomClaim('https://t.example/r', [e.name, e.message, e.cause.code]);
};`)
	e, err := NewEngine(Config{Actions: []*Script{act}, FetchAllow: []string{"http://rebind.test/"}})
	if err != nil {
		t.Fatal(err)
	}
	e.fetcher.lookup = func(context.Context, string) ([]netip.Addr, error) {
		return []netip.Addr{netip.MustParseAddr("169.254.169.254")}, nil
	}
	got := claimsOf(t, e)
	wantClaims(t, got, map[string]any{"r": []any{"TypeError",
		"fetch to 169.254.169.254 refused: it is a link-local or cloud metadata address (name it in fetch_allow to allow it)",
		"ERR_FETCH_ADDRESS_REFUSED"}})
}

// TestFetchTLS: https calls verify the server against the configured roots.
func TestFetchTLS(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "over tls")
	}))
	t.Cleanup(srv.Close)
	act := compileAction(t, "a.js", scriptURL(`
exports.onExecuteCredentialsExchange = async (event, api) => {
	api.accessToken.setCustomClaim('https://t.example/r', await (await fetch('BASE/v1/x')).text());
};`, srv))
	pool := srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	e := fetchEngine(t, srv, nil, []*Script{act}, func(c *Config) { c.fetchRootCAs = pool; c.FetchAllow = []string{srv.URL} })
	wantClaims(t, claimsOf(t, e), map[string]any{"r": "over tls"})

	untrusted := fetchEngine(t, srv, nil, []*Script{act}, func(c *Config) { c.FetchAllow = []string{srv.URL} })
	_, err := untrusted.Run(context.Background(), input())
	wantError(t, err, CodeServerError, "fetch failed")
}

// TestFetchLogs: the bodies and headers of calls never reach the logs,
// even at debug level.
func TestFetchLogs(t *testing.T) {
	srv := fetchService(t)
	core, logs := observer.New(zap.DebugLevel)
	act := compileAction(t, "a.js", scriptURL(`
exports.onExecuteCredentialsExchange = async (event, api) => {
	const res = await fetch('BASE/v1/echo?key=query-secret', { method: 'POST', headers: { 'X-Custom': 'request-header-secret' },
		body: 'request-body-secret' });
	await res.text();
	await fetch('BASE/v1/missing?key=query-secret', { headers: { Authorization: 'Bearer request-header-secret' } });
	await fetch('BASE/admin?key=query-secret', { body: 'request-body-secret', method: 'POST' }).catch(() => {});
};`, srv))
	e := fetchEngine(t, srv, nil, []*Script{act}, func(c *Config) { c.Logger = logscan.Tee(core) })
	if _, err := e.Run(context.Background(), input()); err != nil {
		t.Fatal(err)
	}
	calls := 0
	for _, entry := range logs.All() {
		// Every value the calls carry has "secret" in it.
		if line := entry.Message + fmt.Sprint(entry.ContextMap()); strings.Contains(line, "secret") {
			t.Errorf("log line holds a secret: %s", line)
		}
		if entry.Message == "fetch" {
			calls++
		}
	}
	if calls != 2 {
		t.Errorf("%d fetch lines logged, want 2", calls)
	}
}

// TestFetchAllowConfig: fetch_allow entries that are not absolute http(s)
// URL prefixes fail NewEngine, naming the directive.
func TestFetchAllowConfig(t *testing.T) {
	hook := compileHook(t, `module.exports = function (c, s, a, ctx, cb) { cb(null, {}); };`)
	for _, p := range []string{"api.example.com", "ftp://api.example.com/", "https://u:p@api.example.com/",
		"https:///x", "https://api.example.com/?a=1", "https://[fe80::1%25eth0]/", "https://api.example.com/%2F"} {
		_, err := NewEngine(Config{Hook: hook, FetchAllow: []string{p}})
		if err == nil || !strings.HasPrefix(err.Error(), "fetch_allow ") {
			t.Errorf("fetch_allow %q: err = %v", p, err)
		}
	}
}

// TestFetchAllowMatching checks the allow-list against what an attacker
// would try.
func TestFetchAllowMatching(t *testing.T) {
	f, err := newFetcher([]string{
		"https://api.example.com/v1",
		"https://Files.Example.com./pub/",
		"http://127.0.0.1:8080/",
		"https://[2001:db8::1]/",
		"http://intranet.example.com:80/hooks",
	}, nil, logscan.Logger())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		url  string
		sent string // "" when refused
	}{
		{"https://api.example.com/v1", "https://api.example.com/v1"},
		{"https://api.example.com/v1/users?id=1", "https://api.example.com/v1/users?id=1"},
		{"https://API.EXAMPLE.COM./v1/x", "https://api.example.com/v1/x"},
		{"https://api.example.com:443/v1/x", "https://api.example.com/v1/x"},
		{"https://api.example.com/v1#frag", "https://api.example.com/v1"},
		// Encoded as WHATWG encodes a query; Go would send these bytes raw.
		{`https://api.example.com/v1?q=a b"<>'é&r=%20`, "https://api.example.com/v1?q=a%20b%22%3C%3E%27%C3%A9&r=%20"},
		{"https://api.example.com/v1x", ""},
		{"https://api.example.com/v2", ""},
		{"https://api.example.com/", ""},
		{"http://api.example.com/v1", ""},
		{"https://api.example.com:8443/v1", ""},
		{"https://api.example.com.evil.com/v1", ""},
		{"https://api.example.com@evil.com/v1", ""},
		{"https://evil.com#@api.example.com/v1", ""},
		{"https://evil.com?@api.example.com/v1", ""},
		{`https://api.example.com\@evil.com/v1`, ""},
		{`https://evil.com\@api.example.com/v1`, ""},
		{"https://api.example.com/v1/../admin", ""},
		{"https://api.example.com/v1/%2e%2e/admin", ""},
		{"https://api.example.com/v1/.%2E/admin", ""},
		{`https://api.example.com/v1\..\admin`, ""},
		{"https://api.example.com/v1/%2F..%2Fadmin", ""},
		{"https://api.example.com/v1/..%5cadmin", ""},
		{"https://api.example.com/v1/..;/admin", ""},
		{"https://api.example.com/v1/%2e%2E;x/admin", ""},
		{"https://api.example.com/v1/a;b", "https://api.example.com/v1/a;b"},
		// Segments some server reads as "..".
		{"https://api.example.com/v1/..%00/admin", ""},
		{"https://api.example.com/v1/.%00./admin", ""},
		{"https://api.example.com/v1/x%00", ""},
		{"https://api.example.com/v1/..%20/admin", ""},
		{"https://api.example.com/v1/.. /admin", ""},
		{"https://api.example.com/v1/.../admin", ""},
		{"https://api.example.com/v1/..%2e/admin", ""},
		{"https://api.example.com/v1/%252e%252e/admin", ""},
		{"https://api.example.com/v1/.%252e/admin", ""},
		{"https://api.example.com/v1/%25%32%65%25%32%65/admin", ""},
		{"https://api.example.com/v1/%c0%ae%c0%ae/admin", ""},
		{"https://api.example.com/v1/%e0%80%ae%e0%80%ae/admin", ""},
		{"https://api.example.com/v1/%252fadmin", ""},
		{"https://api.example.com/v1/%2500", ""},
		{"https://api.example.com/v1/...;x/admin", ""},
		// A decoding proxy hands these to Tomcat or Jetty as "..;/".
		{"https://api.example.com/v1/..%3b/admin", ""},
		{"https://api.example.com/v1/%2e%2e%3Bx/admin", ""},
		{"https://api.example.com/v1/..%253b/admin", ""},
		{"https://api.example.com/v1/..a/b", "https://api.example.com/v1/..a/b"},
		{"https://api.example.com/v1/a.b.", "https://api.example.com/v1/a.b."},
		{"https://api.example.com/v1/caf%C3%A9", "https://api.example.com/v1/caf%C3%A9"},
		{"https://api.example.com/v1/a%20b", "https://api.example.com/v1/a%20b"},
		{"https://api.example.com/v1/./x/../y", "https://api.example.com/v1/y"},
		{`https://api.example.com/v1\x`, "https://api.example.com/v1/x"},
		{"https://api.example.com/admin/../v1/x", "https://api.example.com/v1/x"},
		{"https://files.example.com/pub/a.json", "https://files.example.com/pub/a.json"},
		{"https://files.example.com/pub", ""},
		{"https://files.example.com/public", ""},
		{"http://127.0.0.1:8080/x", "http://127.0.0.1:8080/x"},
		{"http://2130706433:8080/x", "http://127.0.0.1:8080/x"},
		{"http://0x7f.1:8080/x", "http://127.0.0.1:8080/x"},
		{"http://0177.0.0.1:8080/x", "http://127.0.0.1:8080/x"},
		{"http://127.1:8080/x", "http://127.0.0.1:8080/x"},
		{"http://127.0.0.1:80/x", ""},
		{"http://127.0.0.1/x", ""},
		{"http://[::ffff:127.0.0.1]:8080/x", "http://127.0.0.1:8080/x"}, // the same address
		{"http://localhost:8080/x", ""},
		{"http://127.0.0.1:08080/x", "http://127.0.0.1:8080/x"},
		{"https://[2001:db8::1]/x", "https://[2001:db8::1]/x"},
		{"https://[2001:DB8:0::1]/x", "https://[2001:db8::1]/x"},
		{"https://[2001:db8::1%25eth0]/x", ""},
		{"https://[fe80::1%25eth0]/x", ""},
		{"http://intranet.example.com/hooks/a", "http://intranet.example.com/hooks/a"},
		{"http://intranet.example.com:80/hooks", "http://intranet.example.com/hooks"},
		{"http://u:p@intranet.example.com/hooks", ""},
		{"http://@intranet.example.com/hooks", ""},
		{"javascript:alert(1)", ""},
		{"//api.example.com/v1", ""},
		{"https:api.example.com/v1", ""},
		{"http://256.0.0.1:8080/x", ""},
		{"http://1.2.3.4.5/x", ""},
	} {
		u, err := f.check(tc.url)
		switch {
		case tc.sent == "" && err == nil:
			t.Errorf("%s: allowed as %s, want refused", tc.url, u)
		case tc.sent != "" && err != nil:
			t.Errorf("%s: %v, want %s", tc.url, err, tc.sent)
		case tc.sent != "" && u.String() != tc.sent:
			t.Errorf("%s: sent as %s, want %s", tc.url, u, tc.sent)
		}
	}
}

// TestFetchLimits: calls in flight at once, request size and redirects
// are bounded, each failure an error the script can catch.
func TestFetchLimits(t *testing.T) {
	// The first 16 calls are held until the script aborts them, after the
	// next two have been refused, so the limit is reached whatever the
	// timing.
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/wait", func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	})
	mux.HandleFunc("/v1/loop", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/v1/loop", http.StatusFound)
	})
	mux.HandleFunc("/v1/go", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/v1/wait", http.StatusFound)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	act := compileAction(t, "a.js", scriptURL(`
const cause = e => e.cause ? e.cause.code : e.message;
exports.onExecuteCredentialsExchange = async (event, api) => {
	const r = {};
	const calls = [];
	const held = new AbortController();
	for (let i = 0; i < 18; i++) calls.push(fetch('BASE/v1/wait', { signal: held.signal }));
	await Promise.allSettled(calls.slice(16));
	held.abort();
	const settled = await Promise.allSettled(calls);
	r.inflight = settled.map(s => s.reason.name === 'AbortError' ? 'aborted' : s.reason.message).slice(15);
	// An aborted call's promise settles at once, but the call leaves the
	// count only when its goroutine returns: wait for that.
	const full = () => fetch('BASE/v1/x').then(() => false, e => e.message.startsWith('more than 16'));
	for (let i = 0; i < 250 && await full(); i++) await new Promise(res => setTimeout(res, 20));
	r.body = await fetch('BASE/v1/x', { method: 'POST', body: 'x'.repeat(1048577) }).catch(e => e.message);
	r.loop = await fetch('BASE/v1/loop').catch(e => [e.message, e.cause.message, e.cause.code]);
	r.redirectError = await fetch('BASE/v1/go', { redirect: 'error' }).catch(cause);
	api.accessToken.setCustomClaim('https://t.example/r', r);
};`, srv))
	e := fetchEngine(t, srv, nil, []*Script{act}, func(c *Config) { c.Timeout = 10 * time.Second })
	wantClaims(t, claimsOf(t, e), map[string]any{"r": map[string]any{
		"inflight":      []any{"aborted", "more than 16 outbound calls in flight at once", "more than 16 outbound calls in flight at once"},
		"body":          fmt.Sprintf("fetch to %s/v1/x: the request body is more than the %d bytes allowed", srv.URL, maxFetchRequestSize),
		"loop":          []any{"fetch failed", "redirect count exceeded", "ERR_FETCH_REDIRECT"},
		"redirectError": "ERR_FETCH_REDIRECT",
	}})
}

// TestFetchModulesWinOverModulesDir: request, axios and node-fetch are the
// built-in ones even when modules_dir holds packages of those names, and
// with a webtask-style version pinned.
func TestFetchModulesWinOverModulesDir(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"axios", "request", "node-fetch"} {
		pkg := filepath.Join(dir, "node_modules", name)
		if err := os.MkdirAll(pkg, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(pkg, "index.js"), []byte(`module.exports = 'from modules_dir';`), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	hook := compileHook(t, `module.exports = function (c, s, a, ctx, cb) {
		cb(null, { 'https://t.example/types': [typeof require('axios').get, typeof require('request').post, typeof require('node-fetch').Headers,
			require('axios') === require('axios'), typeof fetch, typeof AbortSignal.timeout,
			require('request@2.88.0') === require('request'), require('axios@1.6.0') === require('axios')] });
	};`)
	got := claimsOf(t, engine(t, hook, func(c *Config) { c.ModulesDir = dir }))
	wantClaims(t, got, map[string]any{"types": []any{"function", "function", "function", true, "function", "function", true, true}})
}

// TestFetchBodies: each kind of body fetch takes is sent as Node sends it,
// and a compressed response is decompressed, the size cap counting what
// the script would get.
func TestFetchBodies(t *testing.T) {
	srv := fetchService(t)
	mux := http.NewServeMux()
	mux.Handle("/v1/", srv.Config.Handler)
	mux.HandleFunc("/v1/gzip-bomb", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Encoding", "gzip")
		zw := gzip.NewWriter(w)
		_, _ = zw.Write(make([]byte, maxFetchResponseSize+1))
		_ = zw.Close()
	})
	mux.HandleFunc("/v1/gzip", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Encoding", "gzip")
		zw := gzip.NewWriter(w)
		_, _ = zw.Write([]byte("compressed"))
		_ = zw.Close()
	})
	both := httptest.NewServer(mux)
	t.Cleanup(both.Close)
	act := compileAction(t, "a.js", scriptURL(`
const { URLSearchParams } = require('url');
exports.onExecuteCredentialsExchange = async (event, api) => {
	const send = async (body) => {
		const got = await (await fetch('BASE/v1/echo', { method: 'POST', body })).json();
		return [got.body, got.type];
	};
	const view = new Uint8Array([0, 104, 105, 0]).subarray(1, 3);
	api.accessToken.setCustomClaim('https://t.example/r', {
		string: await send('héllo'),
		params: await send(new URLSearchParams({ a: '1 2', b: 'é' })),
		buffer: await send(Buffer.from('buf')),
		view: await send(view),
		arrayBuffer: await send(new Uint8Array([97, 98]).buffer),
		gzip: await (await fetch('BASE/v1/gzip', { headers: { 'Accept-Encoding': 'br' } })).text(),
		bomb: await fetch('BASE/v1/gzip-bomb').then(r => r.text(), e => e.message),
	});
};`, both))
	got := claimsOf(t, fetchEngine(t, both, nil, []*Script{act}, nil))
	wantClaims(t, got, map[string]any{"r": map[string]any{
		"string":      []any{"héllo", "text/plain;charset=UTF-8"},
		"params":      []any{"a=1+2&b=%C3%A9", "application/x-www-form-urlencoded;charset=UTF-8"},
		"buffer":      []any{"buf", ""},
		"view":        []any{"hi", ""},
		"arrayBuffer": []any{"ab", ""},
		"gzip":        "compressed",
		"bomb":        fmt.Sprintf("fetch to %s/v1/gzip-bomb: the response body is more than the %d bytes allowed", both.URL, maxFetchResponseSize),
	}})
}

// BenchmarkRunFetch is the starter hook (BenchmarkRunStarter, the
// baseline) with one fetch to a local service: what the layers cost to
// load on first use, plus one round trip.
func BenchmarkRunFetch(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, `{"tier":"gold"}`)
	}))
	defer srv.Close()
	s, err := Compile("fetch.js", []byte(`module.exports = async function (client, scope, audience, context, cb) {
		const data = await (await fetch('`+srv.URL+`/v1/tier')).json();
		cb(null, { scope: scope, 'https://example.com/tier': data.tier });
	};`), HookKind)
	if err != nil {
		b.Fatal(err)
	}
	e, err := NewEngine(Config{Hook: s, FetchAllow: []string{srv.URL + "/v1/"}})
	if err != nil {
		b.Fatal(err)
	}
	in := input()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := e.Run(context.Background(), in); err != nil {
			b.Fatal(err)
		}
	}
}

// TestFetchMethodCase: the methods that are never sent are refused in
// any case, in do itself, whatever the layer above did.
func TestFetchMethodCase(t *testing.T) {
	srv := fetchService(t)
	f, err := newFetcher([]string{srv.URL + "/v1/"}, nil, logscan.Logger())
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"connect", "Connect", "trace", "TrAcK"} {
		_, err := f.do(context.Background(), &fetchSpec{method: m, url: srv.URL + "/v1/echo"})
		var fe *fetchError
		if !errors.As(err, &fe) || !strings.Contains(fe.msg, "is not allowed") {
			t.Errorf("method %s: err = %v, want refused", m, err)
		}
	}
}

// TestFetchSpeciesBody: a script that makes typed arrays' species answer
// with a view whose buffer is not an ArrayBuffer gets its body read as
// the bytes it gave, not a panic in Go.
func TestFetchSpeciesBody(t *testing.T) {
	act := compileAction(t, "a.js", `
exports.onExecuteCredentialsExchange = async (event, api) => {
	const view = new Uint8Array([0, 104, 105]).subarray(1);
	Object.defineProperty(view, 'buffer', { value: {} });
	class Evil extends Uint8Array { constructor(n) { super(n); Object.defineProperty(this, 'buffer', { value: {} }); } }
	Uint8Array.prototype.constructor = { [Symbol.species]: Evil };
	ArrayBuffer.prototype.constructor = { [Symbol.species]: function () { return {}; } };
	const r = [await new Response(new Uint8Array([104, 105])).text(), await new Response(view).text(),
		await new Response(new Uint8Array([104, 105]).buffer).text(),
		new Uint8Array(await new Response('hi').arrayBuffer()).length];
	api.accessToken.setCustomClaim('https://t.example/r', r);
};`)
	e, err := NewEngine(Config{Actions: []*Script{act}})
	if err != nil {
		t.Fatal(err)
	}
	wantClaims(t, claimsOf(t, e), map[string]any{"r": []any{"hi", "hi", "hi", 2}})
}

// TestFetchNativeChecksTypes: the natives the layer calls throw a
// TypeError, not a Go panic, when handed something else than they expect.
func TestFetchNativeChecksTypes(t *testing.T) {
	vm := newVM()
	native := fetchNative(vm, nil)
	for _, name := range []string{"utf8", "toBuffer"} {
		fn, _ := goja.AssertFunction(native.Get(name))
		_, err := fn(goja.Undefined(), vm.NewObject())
		var ex *goja.Exception
		if !errors.As(err, &ex) || !strings.Contains(ex.Error(), "TypeError") {
			t.Errorf("%s({}): err = %v, want a TypeError", name, err)
		}
	}
}

// TestFetchRedirectReferer: a redirect sends no Referer, as Node's fetch
// does: Go's would carry the previous URL, query and all, to the next
// host. One the script set itself is kept.
func TestFetchRedirectReferer(t *testing.T) {
	referers := make(chan []string, 2)
	land := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		referers <- r.Header.Values("Referer")
	}))
	t.Cleanup(land.Close)
	hop := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, land.URL+"/v1/land", http.StatusFound)
	}))
	t.Cleanup(hop.Close)
	act := compileAction(t, "a.js", scriptURL(`
exports.onExecuteCredentialsExchange = async (event, api) => {
	await fetch('BASE/v1/hop?api_key=QUERY-SECRET');
	await fetch('BASE/v1/hop?api_key=QUERY-SECRET', { headers: { Referer: 'https://mine.example/' } });
};`, hop))
	e := fetchEngine(t, hop, nil, []*Script{act}, func(c *Config) { c.FetchAllow = []string{hop.URL + "/v1/", land.URL + "/v1/"} })
	if _, err := e.Run(context.Background(), input()); err != nil {
		t.Fatal(err)
	}
	if got := <-referers; len(got) != 0 {
		t.Errorf("Referer after a redirect = %q, want none", got)
	}
	if got := <-referers; len(got) != 1 || got[0] != "https://mine.example/" {
		t.Errorf("Referer the script set = %q, want it kept", got)
	}
}

// TestFetchRedirectCredentials: a redirect to another origin (here the
// same host on another port, which Go's client treats as the same) drops
// the credentials the script set, as Node's fetch does; one that stays on
// the origin keeps them, and they stay dropped if the chain comes back.
func TestFetchRedirectCredentials(t *testing.T) {
	got := make(chan string, 3)
	record := func(r *http.Request) {
		got <- r.URL.Path + " " + r.Header.Get("Authorization") + r.Header.Get("Cookie") + r.Header.Get("Proxy-Authorization")
	}
	var hopURL string
	land := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/bounce" {
			http.Redirect(w, r, hopURL+"/v1/back", http.StatusFound)
			return
		}
		record(r)
	}))
	t.Cleanup(land.Close)
	hop := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/away":
			http.Redirect(w, r, land.URL+"/v1/land", http.StatusFound)
		case "/v1/stay":
			http.Redirect(w, r, "/v1/here", http.StatusFound)
		default:
			record(r)
		}
	}))
	t.Cleanup(hop.Close)
	hopURL = hop.URL
	act := compileAction(t, "a.js", strings.ReplaceAll(scriptURL(`
const h = { headers: { Authorization: 'Bearer SECRET', Cookie: 'c=SECRET', 'Proxy-Authorization': 'SECRET' } };
exports.onExecuteCredentialsExchange = async (event, api) => {
	await fetch('BASE/v1/away', h);
	await fetch('BASE/v1/stay', h);
	await fetch('LAND/v1/bounce', h);
};`, hop), "LAND", land.URL))
	e := fetchEngine(t, hop, nil, []*Script{act}, func(c *Config) { c.FetchAllow = []string{hop.URL + "/v1/", land.URL + "/v1/"} })
	if _, err := e.Run(context.Background(), input()); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"/v1/land ", "/v1/here Bearer SECRETc=SECRETSECRET", "/v1/back "} {
		if g := <-got; g != want {
			t.Errorf("after a redirect: %q, want %q", g, want)
		}
	}
}

// rawServer answers each connection with the bytes replies holds for the
// request's path, then closes it: responses no HTTP server library sends.
func rawServer(t *testing.T, replies map[string]string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				req, err := http.ReadRequest(bufio.NewReader(conn))
				if err != nil {
					return
				}
				_, _ = io.WriteString(conn, replies[req.URL.Path])
			}()
		}
	}()
	return "http://" + ln.Addr().String()
}

// TestFetchNetworkErrorText: what a server sent never reaches a script's
// error, the exchange's error_description or the logs through Go's error
// text; failures are named by class, with Node's codes.
func TestFetchNetworkErrorText(t *testing.T) {
	base := rawServer(t, map[string]string{
		"/v1/header":   "HTTP/1.1 200 OK\r\nX-Upstream-Token RESPONSE-HEADER-SECRET\r\n\r\n",
		"/v1/status":   "HTTP/1.1 2X0 STATUS-LINE-SECRET\r\n\r\n",
		"/v1/location": "HTTP/1.1 302 Found\r\nLocation: http://[LOCATION-SECRET\r\nContent-Length: 0\r\n\r\n",
		"/v1/closed":   "",
	})
	src := strings.ReplaceAll(`
const axios = require('axios');
const request = require('request');
const nodeFetch = require('node-fetch');
exports.onExecuteCredentialsExchange = async (event, api) => {
	const r = {};
	for (const p of ['header', 'status', 'location', 'closed']) {
		const u = 'BASE/v1/' + p;
		r[p] = [
			await fetch(u).catch(e => [e.message, e.cause.message, e.cause.code]),
			await axios.get(u).catch(e => [e.message, e.code]),
			await new Promise(res => request(u, e => res([e.message, e.code]))),
			await nodeFetch(u).catch(e => [e.message, e.code]),
		];
	}
	api.accessToken.setCustomClaim('https://t.example/r', r);
	if (event.throw) await nodeFetch('BASE/v1/header');
};`, "BASE", base)
	act := compileAction(t, "a.js", strings.Replace(src, "event.throw", "true", 1))
	core, logs := observer.New(zap.DebugLevel)
	e, err := NewEngine(Config{Actions: []*Script{act}, FetchAllow: []string{base + "/v1/"}, Logger: logscan.Tee(core)})
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.Run(context.Background(), input())
	proto := "the server's response is not valid HTTP"
	wantError(t, err, CodeServerError, "request to "+base+"/v1/header failed, reason: "+proto)
	for _, l := range logs.All() {
		if line := l.Message + fmt.Sprint(l.ContextMap()); strings.Contains(line, "SECRET") {
			t.Errorf("log line holds what the server sent: %s", line)
		}
	}
	// The claims are not returned with the error; run the collecting part
	// alone.
	act2 := compileAction(t, "a.js", strings.Replace(src, "event.throw", "false", 1))
	e2, err := NewEngine(Config{Actions: []*Script{act2}, FetchAllow: []string{base + "/v1/"}})
	if err != nil {
		t.Fatal(err)
	}
	got := claimsOf(t, e2)
	j, _ := json.Marshal(got)
	if strings.Contains(string(j), "SECRET") {
		t.Errorf("a script's error holds what the server sent: %s", j)
	}
	class := func(msg, code string) []any {
		return []any{
			[]any{"fetch failed", msg, code},
			[]any{msg, code},
			[]any{msg, code},
			[]any{"request to " + base + "/v1/" + "PATH" + " failed, reason: " + msg, code},
		}
	}
	want := map[string]any{}
	for p, c := range map[string][2]string{
		"header":   {proto, "EPROTO"},
		"status":   {proto, "EPROTO"},
		"location": {"a redirect's Location is not a valid URL", "ERR_FETCH_REDIRECT"},
		"closed":   {"the server closed the connection", "UND_ERR_SOCKET"},
	} {
		v := class(c[0], c[1])
		v[3].([]any)[0] = strings.Replace(v[3].([]any)[0].(string), "PATH", p, 1)
		want[p] = v
	}
	wantClaims(t, got, map[string]any{"r": want})
}

// TestShownURL: what an error message shows of a URL a script gave has no
// query and nothing that may be a password, however the URL is written.
func TestShownURL(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"https://api.example.com/v1/x?api_key=k", "https://api.example.com/v1/x"},
		{"https://API.example.com:443/v1/../v2#f", "https://api.example.com/v2"},
		{"https://user:hunter2@host.example/v1", "https://…@host.example/v1"},
		{`https:\\user:hunter2@host.example/v1`, "https://…@host.example/v1"},
		{"https:user:hunter2@host.example/v1", "https:…"},
		{"https:/user:hunter2@host.example/v1", "https:…"},
		{"https://user:hun/ter2@host.example/v1", "https:…"},
		{"https://user:hun?ter2@host.example/v1", "https:…"},
		{"https://user:hun#ter2@host.example/v1", "https:…"},
		{"api.example.com/v1/x?api_key=k", "api.example.com/v1/x"},
		{"user:hunter2@host.example/v1", "user:…"},
		{"@hunter2", "…"},
	} {
		if got := shownURL(tc.in); got != tc.want {
			t.Errorf("shownURL(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestFetchErrorURLs: no error a layer builds from a URL or a header
// shows the query, or a header's value.
func TestFetchErrorURLs(t *testing.T) {
	srv := fetchService(t)
	act := compileAction(t, "a.js", scriptURL(`
const nodeFetch = require('node-fetch');
exports.onExecuteCredentialsExchange = async (event, api) => {
	const r = {};
	r.parse = await fetch('api.example.com/v1/x?api_key=QUERY-SECRET').catch(e => e.message);
	r.header = await fetch('BASE/v1/echo', { headers: { 'X-Key': 'HEADER-SECRET\nX: y' } }).catch(e => e.message);
	r.name = await fetch('BASE/v1/echo', { headers: { 'Bearer HEADER-SECRET': 'x' } }).catch(e => e.message);
	r.refused = await nodeFetch('BASE/admin?api_key=QUERY-SECRET').catch(e => e.message);
	api.accessToken.setCustomClaim('https://t.example/r', r);
};`, srv))
	got := claimsOf(t, fetchEngine(t, srv, nil, []*Script{act}, nil))
	wantClaims(t, got, map[string]any{"r": map[string]any{
		"parse":   "Failed to parse URL from api.example.com/v1/x",
		"header":  "Headers.append: invalid header value.",
		"name":    "Headers.append: invalid header name.",
		"refused": "fetch to " + srv.URL + "/admin is not allowed: add its URL prefix to fetch_allow",
	}})
	for _, src := range []string{
		`await require('node-fetch')('BASE/v1/slow?api_key=QUERY-SECRET', { timeout: 50 });`,
		`await require('node-fetch')('http://127.0.0.1:1/v1/x?api_key=QUERY-SECRET');`,
		`await fetch('api.example.com/v1/x?api_key=QUERY-SECRET');`,
		`await fetch('https://user:QUERY-SECRET@api.example.com/v1/x');`,
	} {
		act := compileAction(t, "a.js", scriptURL("exports.onExecuteCredentialsExchange = async () => { "+src+" };", srv))
		e := fetchEngine(t, srv, nil, []*Script{act}, func(c *Config) { c.FetchAllow = append(c.FetchAllow, "http://127.0.0.1:1/v1/") })
		_, err := e.Run(context.Background(), input())
		var he *Error
		if !errors.As(err, &he) || strings.Contains(he.Description, "SECRET") || he.Description == "" {
			t.Errorf("%s: error = %v, want one without the secret", src, err)
		}
	}
}

// TestFetchSpecCaps: the URL and headers a script hands over are measured
// before they are copied to Go, so a huge one costs nothing.
func TestFetchSpecCaps(t *testing.T) {
	vm := newVM()
	var spec *fetchSpec
	vm.Set("probe", func(c goja.FunctionCall) goja.Value { spec = fetchSpecOf(vm, c.Argument(0)); return goja.Undefined() })
	if _, err := vm.RunString(`probe({ url: 'http://x/', headers: [['x-a', 'a'.repeat(40000)], ['x-b', 'b'.repeat(1 << 20)], ['x-c', 'c']] })`); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, h := range spec.headers {
		n += len(h[0]) + len(h[1])
	}
	if n > maxFetchHeaderBytes {
		t.Errorf("%d bytes of headers copied, want at most %d", n, maxFetchHeaderBytes)
	}
	_, err := vm.RunString(`probe({ url: 'http://x/?' + 'q'.repeat(1 << 20) })`)
	if err == nil || !strings.Contains(err.Error(), "TypeError") {
		t.Errorf("a 1 Mi-unit URL: err = %v, want a TypeError", err)
	}

	srv := fetchService(t)
	act := compileAction(t, "a.js", scriptURL(`
exports.onExecuteCredentialsExchange = async (event, api) => {
	api.accessToken.setCustomClaim('https://t.example/r', [
		await fetch('BASE/v1/echo?' + 'q'.repeat(20000)).then(r => r.status, e => e.message),
		await fetch('BASE/v1/echo', { headers: { 'x-big': 'b'.repeat(1 << 20) } }).then(r => r.status, e => e.message),
	]);
};`, srv))
	got := claimsOf(t, fetchEngine(t, srv, nil, []*Script{act}, nil))
	wantClaims(t, got, map[string]any{"r": []any{
		fmt.Sprintf("fetch: the URL is longer than the %d characters allowed", maxFetchURLLength),
		fmt.Sprintf("fetch to %s/v1/echo: the request headers are more than the %d bytes allowed", srv.URL, maxFetchHeaderBytes),
	}})
}

// TestFetchInflightPerExchange: the cap on calls in flight counts one
// exchange's calls; the calls an exchange left behind do not refuse those
// of the next exchange.
func TestFetchInflightPerExchange(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/held" {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	act := compileAction(t, "a.js", scriptURL(`
exports.onExecuteCredentialsExchange = async (event, api) => {
	// api.cache, not module state: the runtime the first exchange leaves
	// with calls under way is not reused (worker.go).
	if (!api.cache.get('fired')) {
		api.cache.set('fired', '1');
		for (let i = 0; i < 16; i++) fetch('BASE/v1/held').catch(() => {});
		return;
	}
	api.accessToken.setCustomClaim('https://t.example/r', await fetch('BASE/v1/ok').then(r => r.status, e => e.message));
};`, srv))
	e := fetchEngine(t, srv, nil, []*Script{act}, nil)
	if _, err := e.Run(context.Background(), input()); err != nil {
		t.Fatal(err)
	}
	wantClaims(t, claimsOf(t, e), map[string]any{"r": 200})
}

// TestFetchCloseIdle: closing the engine closes the connections its calls
// left idle, rather than holding them for the idle time-out.
func TestFetchCloseIdle(t *testing.T) {
	closed := make(chan struct{}, 1)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateClosed {
			closed <- struct{}{}
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	act := compileAction(t, "a.js", scriptURL(`
exports.onExecuteCredentialsExchange = async () => { await (await fetch('BASE/v1/x')).text(); };`, srv))
	e := fetchEngine(t, srv, nil, []*Script{act}, nil)
	if _, err := e.Run(context.Background(), input()); err != nil {
		t.Fatal(err)
	}
	e.Close()
	select {
	case <-closed:
	case <-time.After(2 * time.Second):
		t.Fatal("the idle connection is still open after Close")
	}
}
