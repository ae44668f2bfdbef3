package caddyhook

import (
	"context"
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
)

func compileAction(t *testing.T, name, src string) *Script {
	t.Helper()
	s, err := Compile(name, []byte(src), ActionKind)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// actionsEngine is engine for actions without a hook.
func actionsEngine(t *testing.T, actions ...*Script) *Engine {
	t.Helper()
	return engine(t, nil, func(c *Config) { c.Actions = actions })
}

func runActions(t *testing.T, hook *Script, actions ...*Script) (*Result, error) {
	t.Helper()
	e := engine(t, hook, func(c *Config) { c.Actions = actions; c.Secrets = map[string]string{"K": "v"} })
	in := input()
	in.RequestedScopes = []string{"read:a", "write:a"}
	return e.Run(context.Background(), in)
}

func TestActionEvent(t *testing.T) {
	hook := compileHook(t, `module.exports = function (c, s, a, x, cb) { cb(null, {scope: s.concat('from:hook'), 'https://t.example/h': 1}); };`)
	act := compileAction(t, "a.js", `exports.onExecuteCredentialsExchange = async (event, api) => {
		api.accessToken.setCustomClaim('https://t.example/event', event);
	};`)
	res, err := runActions(t, hook, act)
	if err != nil {
		t.Fatal(err)
	}
	var ev map[string]any
	_ = json.Unmarshal(res.Claims["https://t.example/event"], &ev)
	want := map[string]any{
		"client":          map[string]any{"client_id": "svc-1", "name": "Billing", "metadata": map[string]any{"tier": "gold"}},
		"tenant":          map[string]any{"id": "acme"},
		"resource_server": map[string]any{"identifier": "https://api.example.com"},
		"accessToken": map[string]any{"scope": []any{"read:a", "write:a", "from:hook"},
			"customClaims": map[string]any{"https://t.example/h": float64(1)}},
		"transaction": map[string]any{"requested_scopes": []any{"read:a", "write:a"},
			"target_scopes": []any{"read:a", "write:a", "from:hook"}},
		"request": map[string]any{"ip": "203.0.113.9", "method": "POST", "hostname": "auth.example.com", "user_agent": "curl/8",
			"body": map[string]any{"grant_type": "client_credentials", "audience": "https://api.example.com"}, "geoip": map[string]any{}},
		"secrets": map[string]any{"K": "v"},
	}
	if !reflect.DeepEqual(ev, want) {
		got, _ := json.MarshalIndent(ev, "", " ")
		t.Fatalf("event =\n%s", got)
	}
}

func TestActionsChainAfterHook(t *testing.T) {
	hook := compileHook(t, `module.exports = function (c, s, a, x, cb) { cb(null, {scope: s, 'https://t.example/who': ['hook']}); };`)
	first := compileAction(t, "first.js", `exports.onExecuteCredentialsExchange = async (event, api) => {
		const who = event.accessToken.customClaims['https://t.example/who'];
		api.accessToken.setCustomClaim('https://t.example/who', who.concat('first'));
		api.transaction.addTargetScope('added:first');
		api.transaction.removeTargetScope('write:a');
		api.accessToken.setCustomClaim('https://x.auth0.com/claim', 'reserved by Auth0');
		api.accessToken.setCustomClaim('iss', 'forged');
		api.accessToken.setCustomClaim('https://example.com/existing', 'collides');
	};`)
	second := compileAction(t, "second.js", `exports.onExecuteCredentialsExchange = async (event, api) => {
		await new Promise((r) => setTimeout(r, 2));
		const who = event.accessToken.customClaims['https://t.example/who'];
		api.accessToken.setCustomClaim('https://t.example/who', who.concat('second'));
		api.accessToken.setCustomClaim('https://t.example/scope-seen', event.accessToken.scope);
	};`)
	res, err := runActions(t, hook, first, second)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(res.Claims["https://t.example/who"]); got != `["hook","first","second"]` {
		t.Errorf("who = %s", got)
	}
	if got := string(res.Claims["https://t.example/scope-seen"]); got != `["read:a","added:first"]` {
		t.Errorf("second action saw scope %s", got)
	}
	// added:first is outside the client's grant (the upstream's scope,
	// here): the second action still sees it as a target scope, but the
	// token does not get it.
	if !reflect.DeepEqual(res.Scope, []string{"read:a"}) {
		t.Errorf("scope = %v", res.Scope)
	}
	for _, n := range []string{"https://x.auth0.com/claim", "iss", "https://example.com/existing"} {
		if _, ok := res.Claims[n]; ok {
			t.Errorf("claim %s should have been ignored", n)
		}
	}
}

func TestActionScopeOperations(t *testing.T) {
	act := compileAction(t, "a.js", `exports.onExecuteCredentialsExchange = async (event, api) => {
		api.transaction.clearTargetScopes();
		api.transaction.addTargetScope('x');
		api.transaction.addTargetScope('x');
		api.transaction.setTargetScopes(api.transaction ? ['p', 'q', 'p'] : []);
		api.transaction.addTargetScope('r');
		api.transaction.removeTargetScope('p');
	};`)
	e := actionsEngine(t, act)
	in := input()
	in.GrantScopes = []string{"p", "q", "r", "x"}
	res, err := e.Run(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(res.Scope, []string{"q", "r"}) {
		t.Fatalf("scope = %v", res.Scope)
	}
	bad := compileAction(t, "bad.js", `exports.onExecuteCredentialsExchange = async (event, api) => { api.transaction.addTargetScope('has space'); };`)
	_, err = runActions(t, nil, bad)
	wantError(t, err, CodeServerError, "")
}

func TestActionDeny(t *testing.T) {
	later := compileAction(t, "later.js", `exports.onExecuteCredentialsExchange = async (event, api) => { throw new Error('later action ran'); };`)
	for _, tc := range []struct {
		code, want string
	}{
		{"invalid_scope", CodeInvalidScope},
		{"invalid_request", CodeInvalidRequest},
		{"server_error", CodeServerError},
		{"access_denied", CodeServerError},
	} {
		deny := compileAction(t, "deny.js", `exports.onExecuteCredentialsExchange = async (event, api) => {
			api.access.deny('`+tc.code+`', 'denied by policy');
		};`)
		res, err := runActions(t, nil, deny, later)
		if res != nil {
			t.Fatalf("%s: denied exchange returned a result", tc.code)
		}
		wantError(t, err, tc.want, "denied by policy")
	}
	syncDeny := compileAction(t, "sync.js", `exports.onExecuteCredentialsExchange = function (event, api) { api.access.deny('invalid_scope', 'sync'); };`)
	_, err := runActions(t, nil, syncDeny, later)
	wantError(t, err, CodeInvalidScope, "sync")
}

func TestActionFailures(t *testing.T) {
	for name, src := range map[string]string{
		"throws":          `exports.onExecuteCredentialsExchange = async () => { throw new Error('action broke'); };`,
		"throws sync":     `exports.onExecuteCredentialsExchange = () => { throw new Error('action broke'); };`,
		"rejects later":   `exports.onExecuteCredentialsExchange = () => new Promise((_, no) => setTimeout(() => no(new Error('action broke')), 1));`,
		"throws in timer": `exports.onExecuteCredentialsExchange = () => new Promise(() => setTimeout(() => { throw new Error('action broke'); }, 1));`,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := runActions(t, nil, compileAction(t, "a.js", src))
			wantError(t, err, CodeServerError, "action broke")
		})
	}
}

func TestActionCache(t *testing.T) {
	act := compileAction(t, "cache.js", `exports.onExecuteCredentialsExchange = async (event, api) => {
		const before = api.cache.get('token');
		const out = { before: before ? before.value : null };
		if (!before) out.set = api.cache.set('token', 'v-' + event.request.body.n, { ttl: 60000 }).type;
		out.badKey = api.cache.set('k'.repeat(65), 'v').code;
		out.badValue = api.cache.set('big', 'v'.repeat(4097)).code;
		out.notString = api.cache.set('num', 42).code;
		out.badTTL = api.cache.set('t', 'v', { ttl: -1 }).code;
		out.missing = api.cache.get('nope') === undefined;
		api.accessToken.setCustomClaim('https://t.example/cache', out);
	};`)
	e := actionsEngine(t, act)
	run := func(n string) map[string]any {
		in := input()
		in.Request.Body = map[string]any{"n": n}
		res, err := e.Run(context.Background(), in)
		if err != nil {
			t.Fatal(err)
		}
		var out map[string]any
		_ = json.Unmarshal(res.Claims["https://t.example/cache"], &out)
		return out
	}
	first := run("1")
	want := map[string]any{"before": nil, "set": "success", "badKey": cacheKeySizeExceeded, "badValue": cacheValueSizeExceeded,
		"notString": cacheValueSizeExceeded, "badTTL": cacheInvalidExpiry, "missing": true}
	if !reflect.DeepEqual(first, want) {
		t.Fatalf("first run: %v", first)
	}
	if second := run("2"); second["before"] != "v-1" {
		t.Fatalf("the cache did not persist between runs of one engine: %v", second)
	}
}

func TestActionCacheLimits(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	c := newActionCache(func() time.Time { return now })
	for i := 0; i < 30; i++ {
		if _, code := c.set(string(rune('a'+i%26))+string(rune('A'+i/26)), "v", time.Duration(i+1)*time.Minute, time.Time{}, nil); code != "" {
			t.Fatal(code)
		}
	}
	if len(c.entries) != cacheMaxEntries {
		t.Fatalf("%d entries, want at most %d", len(c.entries), cacheMaxEntries)
	}
	if _, ok := c.get("aA"); ok {
		t.Error("the entry closest to expiry was not the one evicted")
	}
	big := string(make([]byte, 4000))
	c.set("big1", big, 0, time.Time{}, nil)
	c.set("big2", big, 0, time.Time{}, nil)
	c.set("big3", big, 0, time.Time{}, nil)
	if c.size() > cacheMaxTotal {
		t.Errorf("cache holds %d bytes, more than %d", c.size(), cacheMaxTotal)
	}
	e, _ := c.set("long", "v", 48*time.Hour, time.Time{}, nil)
	if !e.expiresAt.Equal(now.Add(cacheMaxTTL)) {
		t.Errorf("lifetime not capped at 24h: %v", e.expiresAt.Sub(now))
	}
	e, _ = c.set("default", "v", 0, time.Time{}, nil)
	if !e.expiresAt.Equal(now.Add(cacheDefaultTTL)) {
		t.Errorf("default lifetime %v", e.expiresAt.Sub(now))
	}
	now = now.Add(16 * time.Minute)
	if _, ok := c.get("default"); ok {
		t.Error("an expired entry was returned")
	}
	if _, code := c.set("past", "v", 0, now.Add(-time.Second), nil); code != cacheItemAlreadyExpired {
		t.Errorf("expires_at in the past: %q", code)
	}
}

func TestWebtaskStorageSharedBetweenInstances(t *testing.T) {
	dir := t.TempDir()
	counter := compileHook(t, `module.exports = function (client, scope, audience, context, cb) {
		const storage = context.webtask.storage;
		storage.get(function (error, data) {
			if (error) return cb(error);
			data = data || { count: 0, by: [] };
			data.count++;
			data.by.push(context.body.instance);
			storage.set(data, function (error) {
				if (error) return cb(error);
				cb(null, { 'https://t.example/count': data.count, 'https://t.example/by': data.by });
			});
		});
	};`)
	instance := func() *Engine {
		e, err := NewEngine(Config{Hook: counter, Storage: &certmagic.FileStorage{Path: dir}, StorageNamespace: "acme"})
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	a, b := instance(), instance()
	run := func(e *Engine, name string) *Result {
		in := input()
		in.Request.Body = map[string]any{"instance": name}
		res, err := e.Run(context.Background(), in)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	run(a, "a")
	run(b, "b")
	res := run(a, "a")
	if string(res.Claims["https://t.example/count"]) != "3" || string(res.Claims["https://t.example/by"]) != `["a","b","a"]` {
		t.Fatalf("instances did not share storage: %s %s", res.Claims["https://t.example/count"], res.Claims["https://t.example/by"])
	}
}

func TestWebtaskStorageConflictAndLimits(t *testing.T) {
	st := &certmagic.FileStorage{Path: t.TempDir()}
	key := storageKey("acme", "hook.js", "")
	hook := compileHook(t, `module.exports = function (client, scope, audience, context, cb) {
		const storage = context.webtask.storage, out = {};
		storage.get(function (error, data) {
			storage.set({ mine: true }, function (error) {
				out.conflict = error ? error.code : 'none';
				storage.set({ mine: true }, { force: 1 }, function (error) {
					out.forced = error ? error.message : 'ok';
					storage.set({ big: 'x'.repeat(600 * 1024) }, { force: 1 }, function (error) {
						out.tooBig = error ? error.code : 'stored';
						cb(null, { 'https://t.example/out': out });
					});
				});
			});
		});
	};`)
	// Another instance writes right after the hook's get.
	racing := &writesAfterFirstLoad{FileStorage: st, data: []byte(`{"theirs":true}`)}
	e, err := NewEngine(Config{Hook: hook, Storage: racing, StorageNamespace: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	res, err := e.Run(context.Background(), input())
	if err != nil {
		t.Fatal(err)
	}
	if got := string(res.Claims["https://t.example/out"]); got != `{"conflict":409,"forced":"ok","tooBig":400}` {
		t.Fatalf("out = %s", got)
	}
	stored, _ := st.Load(context.Background(), key)
	if string(stored) != `{"mine":true}` {
		t.Fatalf("stored = %s", stored)
	}
}

// writesAfterFirstLoad is a file storage that another instance writes to
// right after the first read, which is the race a storage conflict guards.
type writesAfterFirstLoad struct {
	*certmagic.FileStorage
	once sync.Once
	data []byte
}

func (w *writesAfterFirstLoad) Load(ctx context.Context, key string) ([]byte, error) {
	data, err := w.FileStorage.Load(ctx, key)
	w.once.Do(func() { _ = w.FileStorage.Store(ctx, key, w.data) })
	return data, err
}

// TestActionCacheExpiryAndCodes: the earlier of ttl and expires_at wins, as
// Auth0 documents, and every refusal carries Auth0's error code.
func TestActionCacheExpiryAndCodes(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	c := newActionCache(func() time.Time { return now })
	for _, tc := range []struct {
		name      string
		ttl       time.Duration
		expiresAt time.Time
		want      time.Duration
	}{
		{"ttl earlier", time.Minute, now.Add(time.Hour), time.Minute},
		{"expires_at earlier", time.Hour, now.Add(time.Minute), time.Minute},
		{"expires_at alone", 0, now.Add(2 * time.Hour), 2 * time.Hour},
		{"both past the cap", 30 * time.Hour, now.Add(40 * time.Hour), cacheMaxTTL},
	} {
		e, code := c.set(tc.name, "v", tc.ttl, tc.expiresAt, nil)
		if code != "" || !e.expiresAt.Equal(now.Add(tc.want)) {
			t.Errorf("%s: expires in %v (%q), want %v", tc.name, e.expiresAt.Sub(now), code, tc.want)
		}
	}

	act := compileAction(t, "codes.js", `exports.onExecuteCredentialsExchange = async (event, api) => {
		const out = {
			key: api.cache.set('k'.repeat(65), 'v').code,
			emptyKey: api.cache.set('', 'v').code,
			keyNotString: api.cache.set(7, 'v').code,
			value: api.cache.set('v', 'v'.repeat(4097)).code,
			ttl: api.cache.set('t', 'v', { ttl: 'soon' }).code,
			expiresAt: api.cache.set('e', 'v', { expires_at: NaN }).code,
			expired: api.cache.set('x', 'v', { expires_at: Date.now() - 1 }).code,
			both: api.cache.set('b', 'v', { ttl: 60000, expires_at: Date.now() + 3600000 }).record.expires_at - Date.now() <= 60000,
		};
		api.accessToken.setCustomClaim('https://t.example/codes', out);
	};`)
	res, err := runActions(t, nil, act)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	_ = json.Unmarshal(res.Claims["https://t.example/codes"], &got)
	want := map[string]any{
		"key": "CacheKeySizeExceeded", "emptyKey": "CacheKeySizeExceeded", "keyNotString": "CacheKeySizeExceeded",
		"value": "CacheValueSizeExceeded", "ttl": "InvalidExpiry", "expiresAt": "InvalidExpiry",
		"expired": "ItemAlreadyExpired", "both": true,
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %v\nwant %v", got, want)
	}
}

// TestActionCacheFullOfOwnWrites: entries other runs set are evicted to make
// room, but an action that fills the cache itself in one run is told
// (cacheSizeExceeded) rather than losing its own earlier writes.
func TestActionCacheFullOfOwnWrites(t *testing.T) {
	act := compileAction(t, "fill.js", `exports.onExecuteCredentialsExchange = async (event, api) => {
		const codes = [];
		for (let i = 0; i < 21; i++) {
			codes.push(api.cache.set(event.request.body.run + i, 'v').type);
		}
		const r = api.cache.set(event.request.body.run + 20, 'v');
		api.cache.delete(event.request.body.run + 0);
		codes.push(api.cache.set(event.request.body.run + 20, 'v').type);
		api.accessToken.setCustomClaim('https://t.example/fill', {
			codes, code: r.code, first: api.cache.get(event.request.body.run + 1) !== undefined,
		});
	};`)
	e := actionsEngine(t, act)
	for _, run := range []string{"a", "b"} {
		in := input()
		in.Request.Body = map[string]any{"run": run}
		res, err := e.Run(context.Background(), in)
		if err != nil {
			t.Fatal(err)
		}
		var got struct {
			Codes []string
			Code  string
			First bool
		}
		_ = json.Unmarshal(res.Claims["https://t.example/fill"], &got)
		want := append(slices.Repeat([]string{"success"}, 20), "error", "success")
		if !slices.Equal(got.Codes, want) || got.Code != cacheSizeExceeded || !got.First {
			t.Fatalf("run %s: %+v", run, got)
		}
	}
	if n := len(e.cache.entries); n != cacheMaxEntries {
		t.Errorf("cache holds %d entries, want %d", n, cacheMaxEntries)
	}
}

// TestActionTargetScopesCutToGrant: what actions add outside the client's
// grant is dropped when the run ends (Auth0: "Unauthorized additions are
// silently dropped"), while event.transaction.target_scopes shows every
// change as it happens. A scope the hook set is not dropped: Auth0 never
// filtered a Hook's scope result.
func TestActionTargetScopesCutToGrant(t *testing.T) {
	hook := compileHook(t, `module.exports = function (c, s, a, x, cb) {
		cb(null, {scope: s.filter((v) => v !== 'write:a').concat('hook:extra')});
	};`)
	first := compileAction(t, "first.js", `exports.onExecuteCredentialsExchange = async (event, api) => {
		api.transaction.addTargetScope('granted:b');
		api.transaction.addTargetScope('not:granted');
		api.transaction.removeTargetScope('write:a');
	};`)
	second := compileAction(t, "second.js", `exports.onExecuteCredentialsExchange = async (event, api) => {
		api.accessToken.setCustomClaim('https://t.example/target', event.transaction.target_scopes);
		api.transaction.addTargetScope('write:a');
	};`)
	for _, tc := range []struct {
		name  string
		hook  *Script
		grant []string
		token []string
		want  []string
	}{
		{"grant given", hook, []string{"read:a", "granted:b"}, []string{"read:a", "write:a"},
			[]string{"read:a", "hook:extra", "granted:b"}},
		{"upstream scope is the grant", hook, nil, []string{"read:a", "write:a", "granted:b"},
			[]string{"read:a", "granted:b", "hook:extra", "write:a"}},
		{"no hook: the upstream's scope is cut to the grant too", nil, []string{"granted:b"}, []string{"read:a", "write:a"},
			[]string{"granted:b"}},
		{"no hook, empty grant", nil, []string{}, []string{"read:a"}, []string{}},
		{"no hook, no scope in the token", nil, nil, nil, []string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := NewEngine(Config{Hook: tc.hook, Actions: []*Script{first, second}})
			if err != nil {
				t.Fatal(err)
			}
			in := input()
			in.Scope, in.GrantScopes = tc.token, tc.grant
			res, err := e.Run(context.Background(), in)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(res.Scope, tc.want) {
				t.Errorf("scope = %q, want %q", res.Scope, tc.want)
			}
			var seen []string
			_ = json.Unmarshal(res.Claims["https://t.example/target"], &seen)
			if !slices.Contains(seen, "not:granted") || slices.Contains(seen, "write:a") {
				t.Errorf("second action saw target scopes %q, want the first's changes unfiltered", seen)
			}
		})
	}
}

// TestActionEventLanguage: event.request.language is the client's language
// when it stated one, and absent otherwise, as Auth0's optional field.
func TestActionEventLanguage(t *testing.T) {
	act := compileAction(t, "lang.js", `exports.onExecuteCredentialsExchange = async (event, api) => {
		api.accessToken.setCustomClaim('https://t.example/lang', 'language' in event.request ? event.request.language : 'absent');
	};`)
	e := actionsEngine(t, act)
	for lang, want := range map[string]string{"de-CH": `"de-CH"`, "": `"absent"`} {
		in := input()
		in.Request.Language = lang
		res, err := e.Run(context.Background(), in)
		if err != nil {
			t.Fatal(err)
		}
		if got := string(res.Claims["https://t.example/lang"]); got != want {
			t.Errorf("language %q: the action saw %s, want %s", lang, got, want)
		}
	}
}

// TestActionSecrets: an action's own secrets reach only that action, over
// the global ones; the hook and the other actions see the global ones.
func TestActionSecrets(t *testing.T) {
	hook := compileHook(t, `module.exports = function (c, s, a, x, cb) { cb(null, {scope: s, 'https://t.example/hook': x.webtask.secrets}); };`)
	mk := func(name string) *Script {
		return compileAction(t, name+".js", `exports.onExecuteCredentialsExchange = async (event, api) => {
			api.accessToken.setCustomClaim('https://t.example/`+name+`', event.secrets);
		};`)
	}
	first, second := mk("first"), mk("second")
	e, err := NewEngine(Config{Hook: hook, Actions: []*Script{first, second},
		Secrets:       map[string]string{"SHARED": "global", "REGION": "eu"},
		ActionSecrets: map[*Script]map[string]string{first: {"SHARED": "own", "API_KEY": "k1"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	res, err := e.Run(context.Background(), input())
	if err != nil {
		t.Fatal(err)
	}
	global := `{"REGION":"eu","SHARED":"global"}`
	for claim, want := range map[string]string{
		"https://t.example/hook":   global,
		"https://t.example/first":  `{"API_KEY":"k1","REGION":"eu","SHARED":"own"}`,
		"https://t.example/second": global,
	} {
		if got := string(res.Claims[claim]); got != want {
			t.Errorf("%s saw secrets %s, want %s", claim, got, want)
		}
	}
	if _, err := NewEngine(Config{Actions: []*Script{second}, ActionSecrets: map[*Script]map[string]string{first: {"A": "b"}}}); err == nil ||
		!strings.Contains(err.Error(), "first.js") {
		t.Errorf("secrets for a script that is not an action: %v", err)
	}
}

// TestKeptCacheSparesNothing: a warm runtime's script that keeps api past
// its exchange cannot pin cache entries with it: only a live run's own
// writes are spared from eviction.
func TestKeptCacheSparesNothing(t *testing.T) {
	act := compileAction(t, "keep-cache.js", `
	let kept;
	exports.onExecuteCredentialsExchange = async (event, api) => {
		if (kept) {
			const codes = [];
			for (let i = 0; i < 25; i++) codes.push(kept.cache.set('late' + i, 'v').type);
			api.accessToken.setCustomClaim('https://t.example/late', codes);
		}
		kept = api;
		for (let i = 0; i < 20; i++) api.cache.set('own' + i, 'v');
	};`)
	e := actionsEngine(t, act)
	if _, err := e.Run(context.Background(), input()); err != nil {
		t.Fatal(err)
	}
	res, err := e.Run(context.Background(), input())
	if err != nil {
		t.Fatal(err)
	}
	var codes []string
	_ = json.Unmarshal(res.Claims["https://t.example/late"], &codes)
	if len(codes) != 25 || slices.ContainsFunc(codes, func(c string) bool { return c != "success" }) {
		t.Fatalf("a kept api's sets = %v, want 25 successes evicting the ended run's entries", codes)
	}
}
