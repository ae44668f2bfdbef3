package credentialsexchange

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
	"github.com/lestrrat-go/jwx/v2/jwt"
)

func TestUpstreamFailuresAre502(t *testing.T) {
	up := newTestUpstream(t)
	h := provisionScopeHook(t, up)
	otherKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	pubJWK, _ := jwk.FromRaw(otherKey.Public())
	pubBytes, _ := json.Marshal(pubJWK)

	cases := map[string]*scriptedUpstream{
		"not a JWT":       {status: 200, body: tokenResponse("opaque-token-value")},
		"bad signature":   {status: 200, body: tokenResponse(up.sign(t, jwa.RS256, otherKey, map[string]any{"exp": time.Now().Add(time.Hour).Unix()}))},
		"expired":         {status: 200, body: tokenResponse(up.token(t, func(c map[string]any) { c["exp"] = time.Now().Add(-time.Hour).Unix() }))},
		"no exp":          {status: 200, body: tokenResponse(up.token(t, func(c map[string]any) { delete(c, "exp") }))},
		"malformed JSON":  {status: 200, body: `{"access_token": "abc`},
		"no access_token": {status: 200, body: `{"token_type":"Bearer"}`},
		"not JSON":        {status: 200, header: http.Header{"Content-Type": {"text/plain"}}, body: "access_token=x"},
		"compressed":      {status: 200, header: http.Header{"Content-Encoding": {"gzip"}}, body: tokenResponse(up.token(t, nil))},
		"alg none":        {status: 200, body: tokenResponse(unsignedToken(t))},
		// A token the hook would not see beside the one it does, or on a
		// status the exchange replays.
		"a second token in another member": {status: 200, body: `{"access_token":"` + up.token(t, nil) + `","token":"` + up.token(t, nil) + `"}`},
		"a token in a header":              {status: 200, header: http.Header{"X-Token": {up.token(t, nil)}}, body: tokenResponse(up.token(t, nil))},
		"201 with a token elsewhere":       {status: 201, body: `{"token":"` + up.token(t, nil) + `"}`},
		"400 with a form token and a ;": {status: 400, header: http.Header{"Content-Type": {"application/x-www-form-urlencoded"}},
			body: "access_token=opaque&x=a;b"},
		// HS256 with the upstream's public key as the HMAC secret: key confusion.
		"hmac with public key": {status: 200, body: tokenResponse(up.sign(t, jwa.HS256, pubBytes, map[string]any{"exp": time.Now().Add(time.Hour).Unix()}))},
	}
	for name, next := range cases {
		t.Run(name, func(t *testing.T) {
			rec := serve(t, h, next, formRequest(ccForm))
			if rec.Code != http.StatusBadGateway {
				t.Fatalf("status = %d, body %s", rec.Code, rec.Body)
			}
			checkErrorResponse(t, rec, "server_error")
		})
	}
}

func TestRequestHandling(t *testing.T) {
	up := newTestUpstream(t)
	echo := writeScript(t, `module.exports=function(client,scope,audience,context,cb){
		cb(null,{scope:scope,'https://t.example/in':{id:client.id,audience:audience,body:context.body}})
	}`)
	newHandler := func(mod func(*Handler)) *Handler {
		h := &Handler{Hook: echo, SigningKey: writeSigningKey(t), UpstreamKey: up.keyFile, ClaimsPolicy: "namespaced"}
		if mod != nil {
			mod(h)
		}
		return provision(t, h)
	}
	hookSaw := func(t *testing.T, rec *httptest.ResponseRecorder) map[string]any {
		t.Helper()
		if rec.Code != 200 {
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
		var resp map[string]any
		_ = json.Unmarshal(rec.Body.Bytes(), &resp)
		msg, err := jws.Parse([]byte(resp["access_token"].(string)))
		if err != nil {
			t.Fatal(err)
		}
		var claims map[string]any
		_ = json.Unmarshal(msg.Payload(), &claims)
		return claims["https://t.example/in"].(map[string]any)
	}

	t.Run("JSON is re-encoded as a form, audience renamed", func(t *testing.T) {
		h := newHandler(func(h *Handler) { h.AudienceParam = "resource" })
		next := &scriptedUpstream{status: 200, body: tokenResponse(up.token(t, nil))}
		r := httptest.NewRequest(http.MethodPost, "/oauth/token", strings.NewReader(
			`{"grant_type":"client_credentials","client_id":"svc","client_secret":"s","audience":"https://api.example.com"}`))
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("Accept-Encoding", "gzip")
		in := hookSaw(t, serve(t, h, next, r))
		form, err := url.ParseQuery(next.gotBody)
		if err != nil || next.gotType != "application/x-www-form-urlencoded" {
			t.Fatalf("upstream got %q %q", next.gotType, next.gotBody)
		}
		if form.Get("resource") != "https://api.example.com" || form.Has("audience") || form.Get("client_secret") != "s" {
			t.Fatalf("upstream form = %v", form)
		}
		if next.gotAE != "identity" {
			t.Errorf("upstream was asked for %q, want identity", next.gotAE)
		}
		if in["audience"] != "https://api.example.com" {
			t.Errorf("hook audience = %v", in["audience"])
		}
		body := in["body"].(map[string]any)
		if body["audience"] != "https://api.example.com" || body["client_secret"] != nil {
			t.Errorf("hook body = %v", body)
		}
	})

	t.Run("json_body keep forwards JSON", func(t *testing.T) {
		h := newHandler(func(h *Handler) { h.JSONBody = "keep" })
		next := &scriptedUpstream{status: 200, body: tokenResponse(up.token(t, nil))}
		raw := `{"grant_type":"client_credentials","client_id":"svc","client_secret":"s"}`
		r := httptest.NewRequest(http.MethodPost, "/oauth/token", strings.NewReader(raw))
		r.Header.Set("Content-Type", "application/json")
		hookSaw(t, serve(t, h, next, r))
		if next.gotBody != raw || next.gotType != "application/json" {
			t.Fatalf("upstream got %q %q", next.gotType, next.gotBody)
		}
	})

	t.Run("client id from the request when the token has none", func(t *testing.T) {
		h := newHandler(nil)
		noClient := func(c map[string]any) { delete(c, "client_id") }
		cases := map[string]func() *http.Request{
			"basic auth, form-decoded": func() *http.Request {
				r := formRequest(url.Values{"grant_type": {"client_credentials"}})
				r.SetBasicAuth(url.QueryEscape("svc:with/odd chars"), "s")
				return r
			},
			"client_id parameter": func() *http.Request {
				return formRequest(url.Values{"grant_type": {"client_credentials"}, "client_id": {"svc:with/odd chars"}})
			},
			"client_assertion sub": func() *http.Request {
				assertion := base64URL([]byte(`{"alg":"RS256"}`)) + "." + base64URL([]byte(`{"sub":"svc:with/odd chars"}`)) + ".sig"
				return formRequest(url.Values{"grant_type": {"client_credentials"}, "client_assertion": {assertion},
					"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}})
			},
		}
		for name, req := range cases {
			next := &scriptedUpstream{status: 200, body: tokenResponse(up.token(t, noClient))}
			in := hookSaw(t, serve(t, h, next, req()))
			if in["id"] != "svc:with/odd chars" {
				t.Errorf("%s: client.id = %v", name, in["id"])
			}
			if body := in["body"].(map[string]any); body["client_assertion"] != nil {
				t.Errorf("%s: client_assertion reached the hook", name)
			}
		}
	})

	t.Run("audience prefers the requested one when the token has it", func(t *testing.T) {
		h := newHandler(nil)
		multi := func(c map[string]any) { c["aud"] = []string{"https://a.example", "https://b.example"} }
		next := &scriptedUpstream{status: 200, body: tokenResponse(up.token(t, multi))}
		form := url.Values{"grant_type": {"client_credentials"}, "client_id": {"svc"}, "resource": {"https://b.example"}}
		if in := hookSaw(t, serve(t, h, next, formRequest(form))); in["audience"] != "https://b.example" {
			t.Errorf("audience = %v", in["audience"])
		}
		next = &scriptedUpstream{status: 200, body: tokenResponse(up.token(t, multi))}
		form.Set("resource", "https://not-granted.example")
		if in := hookSaw(t, serve(t, h, next, formRequest(form))); in["audience"] != "https://a.example" {
			t.Errorf("audience = %v", in["audience"])
		}
	})

	t.Run("response keeps other fields and scope becomes the final scope", func(t *testing.T) {
		h := provision(t, &Handler{
			Hook:       writeScript(t, `module.exports=function(c,s,a,x,cb){cb(null,{'https://t.example/x':1})}`),
			SigningKey: writeSigningKey(t), UpstreamKey: up.keyFile,
		})
		next := &scriptedUpstream{status: 200, header: http.Header{"X-Upstream": {"1"}},
			body: `{"access_token":"` + up.token(t, nil) + `","token_type":"Bearer","expires_in":3600,"scope":"read:a","issued_token_type":"x","refresh_token":"rt"}`}
		rec := serve(t, h, next, formRequest(ccForm))
		var resp map[string]any
		_ = json.Unmarshal(rec.Body.Bytes(), &resp)
		if _, has := resp["scope"]; has {
			t.Errorf("response scope = %v, want absent", resp["scope"])
		}
		if resp["token_type"] != "Bearer" || resp["expires_in"] != float64(3600) || resp["issued_token_type"] != "x" {
			t.Errorf("response lost fields: %v", resp)
		}
		if _, has := resp["refresh_token"]; has {
			t.Error("a refresh token would let the client mint tokens the hook never saw")
		}
		if rec.Header().Get("X-Upstream") != "1" || rec.Header().Get("Cache-Control") != "no-store" {
			t.Errorf("headers = %v", rec.Header())
		}
		msg, _ := jws.Parse([]byte(resp["access_token"].(string)))
		hdr := msg.Signatures()[0].ProtectedHeaders()
		if hdr.Type() != "at+jwt" || hdr.KeyID() != h.keys.Signer().KeyID() {
			t.Errorf("header typ=%q kid=%q", hdr.Type(), hdr.KeyID())
		}
		var claims map[string]any
		_ = json.Unmarshal(msg.Payload(), &claims)
		if _, has := claims["scope"]; has || claims["jti"] != "j1" || claims["iss"] != "https://up.example/" {
			t.Errorf("claims = %v", claims)
		}
	})

	t.Run("unparseable body is refused, not forwarded", func(t *testing.T) {
		h := newHandler(nil)
		next := &scriptedUpstream{status: 200, body: tokenResponse(up.token(t, nil))}
		r := httptest.NewRequest(http.MethodPost, "/oauth/token", strings.NewReader(`{"grant_type":`))
		r.Header.Set("Content-Type", "application/json")
		rec := serve(t, h, next, r)
		if rec.Code != 400 || next.gotType != "" {
			t.Fatalf("got %d, upstream saw %q", rec.Code, next.gotBody)
		}
		checkErrorResponse(t, rec, "invalid_request")
	})
}

func TestJWKSWithoutUpstreamKeys(t *testing.T) {
	up := newTestUpstream(t)
	h := provision(t, &Handler{Hook: writeScript(t, `module.exports=function(c,s,a,x,cb){cb(null,{})}`),
		SigningKey: writeSigningKey(t), UpstreamKey: up.keyFile})
	for name, next := range map[string]*scriptedUpstream{
		"404":      {status: 404, body: "not found"},
		"not JSON": {status: 200, header: http.Header{"Content-Type": {"text/html"}}, body: "<html>"},
		"no keys":  {status: 200, body: `{"issuer":"x"}`},
	} {
		rec := serve(t, h, next, httptest.NewRequest(http.MethodGet, "/.well-known/jwks.json", nil))
		set, err := jwk.Parse(rec.Body.Bytes())
		if rec.Code != 200 || err != nil || set.Len() != 1 {
			t.Fatalf("%s: %d %s", name, rec.Code, rec.Body)
		}
		if k, _ := set.Key(0); k.KeyID() != h.keys.Signer().KeyID() {
			t.Fatalf("%s: served key %q", name, k.KeyID())
		}
		if !strings.Contains(rec.Header().Get("Cache-Control"), "max-age=") {
			t.Errorf("%s: Cache-Control = %q", name, rec.Header().Get("Cache-Control"))
		}
	}
}

func TestStorageSharedByHandlerInstances(t *testing.T) {
	up := newTestUpstream(t)
	shared := t.TempDir()
	hook := writeScript(t, `const util = require('util');
	module.exports = async function (client, scope, audience, context, cb) {
		const storage = context.webtask.storage;
		const data = (await util.promisify(storage.get)()) || { seen: [] };
		data.seen.push(context.body.instance);
		await util.promisify(storage.set)(data);
		cb(null, { scope: scope, 'https://t.example/seen': data.seen });
	};`)
	newInstance := func() *Handler {
		return provisionWithStorage(t, &Handler{Hook: hook, SigningKey: writeSigningKey(t), UpstreamKey: up.keyFile, Tenant: "acme"}, shared)
	}
	a, b := newInstance(), newInstance()
	exchange := func(h *Handler, instance string) string {
		form := url.Values{"grant_type": {"client_credentials"}, "client_id": {"svc"}, "instance": {instance}}
		rec := serve(t, h, &scriptedUpstream{status: 200, body: tokenResponse(up.token(t, nil))}, formRequest(form))
		return string(issuedClaims(t, rec)["https://t.example/seen"])
	}
	exchange(a, "a")
	exchange(b, "b")
	if got := exchange(a, "a"); got != `["a","b","a"]` {
		t.Fatalf("instances sharing a storage folder saw %s", got)
	}

	// The same hook source at another path (x/hook.js, y/hook.js) is
	// another hook: it must not read the first one's document...
	other := filepath.Join(t.TempDir(), filepath.Base(hook))
	src, _ := os.ReadFile(hook)
	if err := os.WriteFile(other, src, 0o644); err != nil {
		t.Fatal(err)
	}
	c := provisionWithStorage(t, &Handler{Hook: other, SigningKey: writeSigningKey(t), UpstreamKey: up.keyFile, Tenant: "acme"}, shared)
	if got := exchange(c, "c"); got != `["c"]` {
		t.Fatalf("a hook with the same file name in another folder saw %s", got)
	}
	// ...unless the operator names one document for both.
	named := func(path string) *Handler {
		return provisionWithStorage(t, &Handler{Hook: path, SigningKey: writeSigningKey(t), UpstreamKey: up.keyFile,
			Tenant: "acme", StorageDocument: "shared-doc"}, shared)
	}
	exchange(named(hook), "d")
	if got := exchange(named(other), "e"); got != `["d","e"]` {
		t.Fatalf("two hooks naming one storage_document saw %s", got)
	}
}

// TestTwoInstancesShareGeneratedKeys starts two handler instances, each in
// its own Caddy context with its own config, at the same moment, sharing one
// storage folder: they must end with one key, serve the same JWKS, and
// verify each other's tokens.
func TestTwoInstancesShareGeneratedKeys(t *testing.T) {
	up := newTestUpstream(t)
	shared := t.TempDir()
	hook := writeScript(t, `module.exports=function(c,s,a,x,cb){cb(null,{scope:s})}`)
	instances := []*Handler{
		{Hook: hook, UpstreamKey: up.keyFile, SigningAlg: "ES256"},
		{Hook: hook, UpstreamKey: up.keyFile, SigningAlg: "ES256"},
	}
	contexts := []caddy.Context{storageContext(t, shared), storageContext(t, shared)}
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make([]error, len(instances))
	for i := range instances {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			<-start
			errs[i] = instances[i].Provision(contexts[i])
		}(i)
	}
	close(start)
	wg.Wait()
	for i, h := range instances {
		t.Cleanup(func() { _ = h.Cleanup() })
		if errs[i] != nil {
			t.Fatalf("instance %d: %v", i, errs[i])
		}
	}
	a, b := instances[0], instances[1]
	if a.keys.Signer().KeyID() != b.keys.Signer().KeyID() {
		t.Fatalf("instances sign with different keys: %s and %s", a.keys.Signer().KeyID(), b.keys.Signer().KeyID())
	}
	jwks := func(h *Handler) []byte {
		rec := serve(t, h, &scriptedUpstream{status: 404}, httptest.NewRequest(http.MethodGet, "/.well-known/jwks.json", nil))
		return rec.Body.Bytes()
	}
	if ja, jb := jwks(a), jwks(b); string(ja) != string(jb) {
		t.Fatalf("instances serve different JWKS:\n%s\n%s", ja, jb)
	}
	for _, pair := range [][2]*Handler{{a, b}, {b, a}} {
		rec := serve(t, pair[0], &scriptedUpstream{status: 200, body: tokenResponse(up.token(t, nil))}, formRequest(ccForm))
		var resp map[string]string
		_ = json.Unmarshal(rec.Body.Bytes(), &resp)
		set, err := jwk.Parse(jwks(pair[1]))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := jwt.Parse([]byte(resp["access_token"]), jwt.WithKeySet(set)); err != nil {
			t.Fatalf("a token signed by one instance does not verify with the other's JWKS: %v", err)
		}
	}
	// Private keys stay in storage: the JWKS has no private members.
	if strings.Contains(string(jwks(a)), `"d":`) {
		t.Fatal("the JWKS holds a private key")
	}
}

func TestValidation(t *testing.T) {
	hook := writeScript(t, `module.exports=function(c,s,a,x,cb){cb(null,{})}`)
	up := newTestUpstream(t)
	cases := map[string]*Handler{
		"publish ahead under max age":  {KeyPublishAhead: caddy.Duration(time.Minute), JWKSMaxAge: caddy.Duration(5 * time.Minute)},
		"rotation under publish ahead": {KeyRotation: caddy.Duration(5 * time.Minute), KeyPublishAhead: caddy.Duration(10 * time.Minute)},
		"rotation with signing_key":    {KeyRotation: caddy.Duration(time.Hour), SigningKey: writeSigningKey(t)},
		"HS256 generated":              {SigningAlg: "HS256"},
		"token_path not a path":        {TokenPath: "oauth/token"},
		"upstream_jwks not a URL":      {UpstreamJWKS: "127.0.0.1:9096/jwks"},
	}
	for name, h := range cases {
		h.Hook = hook
		if h.UpstreamJWKS == "" {
			h.UpstreamKey = up.keyFile
		}
		err := h.Provision(storageContext(t, t.TempDir()))
		if err == nil {
			err = h.Validate()
		}
		_ = h.Cleanup()
		if err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestSecretPlaceholders(t *testing.T) {
	up := newTestUpstream(t)
	t.Setenv("CADDYHOOK_TEST_SECRET", "from-env")
	file := filepath.Join(t.TempDir(), "secret.txt")
	if err := os.WriteFile(file, []byte("from-file"), 0o600); err != nil {
		t.Fatal(err)
	}
	h := provision(t, &Handler{
		Hook:        writeScript(t, `module.exports=function(c,s,a,x,cb){cb(null,{'https://t.example/s':x.webtask.secrets})}`),
		UpstreamKey: up.keyFile, SigningKey: writeSigningKey(t),
		Secrets: map[string]string{"ENV": "{env.CADDYHOOK_TEST_SECRET}", "FILE": "{file." + file + "}", "PLAIN": "literal"},
	})
	rec := serve(t, h, &scriptedUpstream{status: 200, body: tokenResponse(up.token(t, nil))}, formRequest(ccForm))
	if got := string(issuedClaims(t, rec)["https://t.example/s"]); got != `{"ENV":"from-env","FILE":"from-file","PLAIN":"literal"}` {
		t.Fatalf("secrets = %s", got)
	}
}

// TestActionCacheSurvivesReload provisions a handler, fills api.cache, then
// provisions the same config again (what caddy reload does: the new config is
// provisioned before the old one is cleaned up) and finds the entry there.
func TestActionCacheSurvivesReload(t *testing.T) {
	up := newTestUpstream(t)
	dir := t.TempDir()
	action := filepath.Join(dir, "count.js")
	src := `exports.onExecuteCredentialsExchange = async (event, api) => {
		const r = api.cache.get('n');
		const n = r ? Number(r.value) + 1 : 1;
		api.cache.set('n', String(n));
		api.accessToken.setCustomClaim('https://t.example/n', n);
	};`
	if err := os.WriteFile(action, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	count := func(h *Handler) string {
		rec := serve(t, h, &scriptedUpstream{status: 200, body: tokenResponse(up.token(t, nil))}, formRequest(ccForm))
		return string(issuedClaims(t, rec)["https://t.example/n"])
	}
	config := func() *Handler {
		return &Handler{Actions: []string{action}, UpstreamKey: up.keyFile, SigningKey: writeSigningKey(t), Tenant: "reload-test"}
	}
	old := config()
	if err := old.Provision(storageContext(t, dir)); err != nil {
		t.Fatal(err)
	}
	count(old)
	count(old)
	reloaded := config()
	if err := reloaded.Provision(storageContext(t, dir)); err != nil {
		t.Fatal(err)
	}
	_ = old.Cleanup()
	if got := count(reloaded); got != "3" {
		t.Fatalf("after a reload the cache counted %s, want 3", got)
	}
	_ = reloaded.Cleanup()
	fresh := config()
	if err := fresh.Provision(storageContext(t, dir)); err != nil {
		t.Fatal(err)
	}
	defer fresh.Cleanup()
	if got := count(fresh); got != "1" {
		t.Fatalf("once no config used it the cache should be gone, counted %s", got)
	}
}

// TestScopeAsTheHookSeesIt pins how the token's scope claim reaches the hook:
// undefined only when there is none, and the form it is written back in.
func TestScopeAsTheHookSeesIt(t *testing.T) {
	up := newTestUpstream(t)
	h := provision(t, &Handler{
		Hook: writeScript(t, `module.exports=function(c,scope,a,x,cb){
			cb(null,{scope:['out'],'https://t.example/saw':scope === undefined ? 'undefined' : scope})}`),
		UpstreamKey: up.keyFile, SigningKey: writeSigningKey(t),
	})
	for _, tc := range []struct {
		name      string
		set       func(map[string]any)
		saw, form string
	}{
		{"scope string", func(c map[string]any) { c["scope"] = "a  b" }, `["a","b"]`, "scope"},
		{"empty scope", func(c map[string]any) { c["scope"] = "" }, `[]`, "scope"},
		{"scope not a string", func(c map[string]any) { c["scope"] = 7 }, `"undefined"`, "scope"},
		{"scp array", func(c map[string]any) { delete(c, "scope"); c["scp"] = []string{"a", "b"} }, `["a","b"]`, "scp"},
		{"scp string", func(c map[string]any) { delete(c, "scope"); c["scp"] = "a b" }, `["a","b"]`, "scp"},
		{"no scope", func(c map[string]any) { delete(c, "scope") }, `"undefined"`, "scope"},
	} {
		rec := serve(t, h, &scriptedUpstream{status: 200, body: tokenResponse(up.token(t, tc.set))}, formRequest(ccForm))
		claims := issuedClaims(t, rec)
		if got := string(claims["https://t.example/saw"]); got != tc.saw {
			t.Errorf("%s: the hook saw %s, want %s", tc.name, got, tc.saw)
		}
		other := map[string]string{"scope": "scp", "scp": "scope"}[tc.form]
		if _, ok := claims[tc.form]; !ok || claims[other] != nil {
			t.Errorf("%s: the scope was written back as %v, want %s", tc.name, claims, tc.form)
		}
	}
}

// TestGrantScopes: scopes actions add outside the client's grant do not
// reach the token; the grant comes from the client block, else the
// clients_file entry, else the scopes the upstream issued.
func TestGrantScopes(t *testing.T) {
	up := newTestUpstream(t)
	clients := filepath.Join(t.TempDir(), "clients.json")
	if err := os.WriteFile(clients, []byte(`{"from-file":{"grant_scopes":["read:a","write:b"]},"svc":{"grant_scopes":["write:b"]},"none":{"grant_scopes":[]}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	h := provision(t, &Handler{
		Actions: []string{writeScript(t, `exports.onExecuteCredentialsExchange = async (event, api) => {
			api.transaction.addTargetScope('write:b');
			api.transaction.addTargetScope('admin');
		};`)},
		UpstreamKey: up.keyFile, SigningKey: writeSigningKey(t), ClientsFile: clients,
		Clients: map[string]ClientInfo{"svc": {GrantScopes: []string{"read:a", "write:b", "write:c"}}},
	})
	for _, tc := range []struct{ client, want string }{
		{"svc", `"read:a write:b"`},       // the client block wins over the file
		{"from-file", `"read:a write:b"`}, // the clients_file entry
		{"unknown", `"read:a"`},           // the upstream's scope is the grant
		{"none", ``},                      // an empty grant grants nothing
	} {
		tok := up.token(t, func(c map[string]any) { c["client_id"] = tc.client })
		rec := serve(t, h, &scriptedUpstream{status: 200, body: tokenResponse(tok)}, formRequest(ccForm))
		if got := string(issuedClaims(t, rec)["scope"]); got != tc.want {
			t.Errorf("%s: scope %s, want %s", tc.client, got, tc.want)
		}
	}
}

// TestEventRequestLanguage: actions see the client's preferred language.
func TestEventRequestLanguage(t *testing.T) {
	up := newTestUpstream(t)
	h := provision(t, &Handler{
		Actions: []string{writeScript(t, `exports.onExecuteCredentialsExchange = async (event, api) => {
			api.accessToken.setCustomClaim('https://t.example/lang', String(event.request.language));
		};`)},
		UpstreamKey: up.keyFile, SigningKey: writeSigningKey(t),
	})
	for header, want := range map[string]string{"es-MX, es;q=0.9, en;q=0.5": `"es-MX"`, "": `"undefined"`} {
		req := formRequest(ccForm)
		if header != "" {
			req.Header.Set("Accept-Language", header)
		}
		rec := serve(t, h, &scriptedUpstream{status: 200, body: tokenResponse(up.token(t, nil))}, req)
		if got := string(issuedClaims(t, rec)["https://t.example/lang"]); got != want {
			t.Errorf("Accept-Language %q: language %s, want %s", header, got, want)
		}
	}
}

// TestActionSecrets: action_secrets reach only their action, over the
// global secrets, with placeholders resolved; naming a script that is not
// one of the actions is a config error.
func TestActionSecrets(t *testing.T) {
	up := newTestUpstream(t)
	t.Setenv("CADDYHOOK_TEST_ACTION_SECRET", "from-env")
	show := func(name string) string {
		return writeScript(t, `exports.onExecuteCredentialsExchange = async (event, api) => {
			api.accessToken.setCustomClaim('https://t.example/`+name+`', event.secrets);
		};`)
	}
	first, second := show("first"), show("second")
	h := provision(t, &Handler{
		Actions: []string{first, second}, UpstreamKey: up.keyFile, SigningKey: writeSigningKey(t),
		Secrets:       map[string]string{"REGION": "eu", "SHARED": "global"},
		ActionSecrets: map[string]map[string]string{first: {"SHARED": "own", "KEY": "{env.CADDYHOOK_TEST_ACTION_SECRET}"}},
	})
	claims := issuedClaims(t, serve(t, h, &scriptedUpstream{status: 200, body: tokenResponse(up.token(t, nil))}, formRequest(ccForm)))
	if got := string(claims["https://t.example/first"]); got != `{"KEY":"from-env","REGION":"eu","SHARED":"own"}` {
		t.Errorf("first action's secrets = %s", got)
	}
	if got := string(claims["https://t.example/second"]); got != `{"REGION":"eu","SHARED":"global"}` {
		t.Errorf("second action's secrets = %s", got)
	}

	bad := &Handler{Actions: []string{first}, UpstreamKey: up.keyFile, SigningKey: writeSigningKey(t),
		ActionSecrets: map[string]map[string]string{"other.js": {"A": "b"}}}
	err := bad.Provision(storageContext(t, t.TempDir()))
	_ = bad.Cleanup()
	if err == nil || !strings.Contains(err.Error(), "action_secrets: other.js is not one of the actions") {
		t.Errorf("secrets for an unknown action: %v", err)
	}
}

// upstream_issuer is a key source of its own, which an explicit one
// overrides; an unreachable issuer is no config error.
func TestValidationUpstreamIssuer(t *testing.T) {
	hook := writeScript(t, `module.exports=function(c,s,a,x,cb){cb(null,{})}`)
	up := newTestUpstream(t)
	// Port 1 on loopback: nothing listens, the connection is refused.
	const down = "http://127.0.0.1:1/realms/acme"
	for name, tc := range map[string]struct {
		h       Handler
		wantErr string
	}{
		"no key source":            {Handler{}, "or upstream_issuer to discover"},
		"issuer alone, down":       {Handler{UpstreamIssuer: down}, ""},
		"issuer and upstream_key":  {Handler{UpstreamIssuer: down, UpstreamKey: up.keyFile}, ""},
		"issuer and jwks_path":     {Handler{UpstreamIssuer: down, JWKSPath: "/certs"}, ""},
		"issuer, key and path":     {Handler{UpstreamIssuer: down, UpstreamKey: up.keyFile, JWKSPath: "/certs"}, ""},
		"issuer with a query":      {Handler{UpstreamIssuer: down + "?x=1"}, "must not have a query"},
		"issuer not http":          {Handler{UpstreamIssuer: "ftp://127.0.0.1"}, "must be an http:// or https:// URL"},
		"two explicit sources":     {Handler{UpstreamIssuer: down, UpstreamKey: up.keyFile, InsecureSkipVerify: true}, "exactly one of"},
		"jwks_path on token_path":  {Handler{UpstreamIssuer: down, JWKSPath: DefaultTokenPath}, "must differ"},
		"jwks_path not a path":     {Handler{UpstreamIssuer: down, JWKSPath: "certs"}, "must be paths starting with /"},
		"default path without one": {Handler{UpstreamKey: up.keyFile}, ""},
	} {
		t.Run(name, func(t *testing.T) {
			h := tc.h
			h.Hook = hook
			err := h.Provision(storageContext(t, t.TempDir()))
			if err == nil {
				err = h.Validate()
			}
			defer func() { _ = h.Cleanup() }()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			case err != nil:
				return
			}
			// Without jwks_path the served path is the discovered one, not
			// the default.
			wantPath := tc.h.JWKSPath
			if wantPath == "" && tc.h.UpstreamIssuer == "" {
				wantPath = DefaultJWKSPath
			}
			if h.JWKSPath != wantPath {
				t.Fatalf("jwks_path = %q, want %q", h.JWKSPath, wantPath)
			}
			if h.verifier.Issuer != tc.h.UpstreamIssuer {
				t.Fatalf("verifier issuer = %q", h.verifier.Issuer)
			}
			// The document is read only for what is not configured: with
			// the keys and the path given, the issuer check alone remains.
			needed := tc.h.UpstreamIssuer != "" && (tc.h.UpstreamKey == "" || tc.h.JWKSPath == "")
			if (h.discovery != nil) != needed {
				t.Fatalf("discovery used: %v, want %v", h.discovery != nil, needed)
			}
		})
	}
}
