package credentialsexchange

import (
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
)

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

func TestValidation(t *testing.T) {
	hook := writeScript(t, `module.exports=function(c,s,a,x,cb){cb(null,{})}`)
	up := newTestUpstream(t)
	// Each case names the rule that must refuse it, so that a case refused
	// for another reason (a script, a key file) does not pass for it.
	cases := map[string]struct {
		h    *Handler
		want string
	}{
		"publish ahead under max age":  {&Handler{KeyPublishAhead: caddy.Duration(time.Minute), JWKSMaxAge: caddy.Duration(5 * time.Minute)}, "key_publish_ahead (1m0s) must be at least jwks_max_age"},
		"rotation under publish ahead": {&Handler{KeyRotation: caddy.Duration(5 * time.Minute), KeyPublishAhead: caddy.Duration(10 * time.Minute)}, "key_rotation (5m0s) must be longer than key_publish_ahead"},
		"rotation with signing_key":    {&Handler{KeyRotation: caddy.Duration(time.Hour), SigningKey: writeSigningKey(t)}, "apply to generated keys"},
		"HS256 generated":              {&Handler{SigningAlg: "HS256"}, "signing_alg"},
		"token_path not a path":        {&Handler{TokenPath: "oauth/token"}, "must be paths starting with /"},
		"upstream_jwks not a URL":      {&Handler{UpstreamJWKS: "127.0.0.1:9096/jwks"}, "must be an http:// or https:// URL"},
	}
	for name, tc := range cases {
		h := tc.h
		h.Hook = hook
		if h.UpstreamJWKS == "" {
			h.UpstreamKey = up.keyFile
		}
		err := h.Provision(storageContext(t, t.TempDir()))
		if err == nil {
			err = h.Validate()
		}
		_ = h.Cleanup()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error with %q", name, err, tc.want)
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

// TestConfigCheckedBeforeWork: Caddy calls Validate after Provision, so a
// config that is wrong on its face must fail in Provision before any script
// is compiled, any api.cache is taken or any key is written to storage.
func TestConfigCheckedBeforeWork(t *testing.T) {
	up := newTestUpstream(t)
	broken := writeScript(t, `module.exports = function (`) // does not compile
	cases := map[string]struct {
		h    *Handler
		want string
	}{
		"json_body":      {&Handler{JSONBody: "xml"}, "json_body must be form or keep"},
		"claims_policy":  {&Handler{ClaimsPolicy: "strict"}, "claims_policy: "},
		"action_secrets": {&Handler{ActionSecrets: map[string]map[string]string{"other.js": {"K": "v"}}}, "action_secrets: "},
		"signing_alg":    {&Handler{SigningAlg: "HS256"}, "signing_alg"},
		"key_rotation":   {&Handler{KeyRotation: caddy.Duration(time.Minute), KeyPublishAhead: caddy.Duration(time.Hour)}, "key_rotation"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			h := tc.h
			h.Hook, h.UpstreamKey = broken, up.keyFile
			storage := t.TempDir()
			err := h.Provision(storageContext(t, storage))
			_ = h.Cleanup()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Provision: %v, want the config error %q before the script is compiled", err, tc.want)
			}
			if h.cacheKey != "" {
				t.Error("an api.cache was taken before the config was checked")
			}
			if entries, _ := os.ReadDir(storage); len(entries) != 0 {
				t.Errorf("storage written before the config was checked: %v", entries)
			}
		})
	}
	noScripts := &Handler{UpstreamKey: up.keyFile}
	if err := noScripts.Provision(storageContext(t, t.TempDir())); !errors.Is(err, errNoScripts) {
		t.Errorf("Provision without a hook or an action: %v, want %v", err, errNoScripts)
	}
}
