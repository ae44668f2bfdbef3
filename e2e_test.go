package credentialsexchange_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/caddyhook/caddyhook/internal/oauthserver"
)

func TestEndToEnd(t *testing.T) {
	upstream, err := oauthserver.Start(oauthserver.Options{Clients: []oauthserver.Client{
		{ID: "svc-billing", Secret: "billing-secret"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = upstream.Close() })
	scpUpstream, err := oauthserver.Start(oauthserver.Options{ScopeArray: true, Clients: []oauthserver.Client{
		{ID: "svc-billing", Secret: "billing-secret"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = scpUpstream.Close() })

	key := writeKey(t, "rsa")
	good := exchangeDirective(hookPath(t, "e2e.js"), key, upstream.URL,
		"tenant acme", "secret REGION eu-west-1",
		"client svc-billing {\n\t\tname \"Billing service\"\n\t\tmetadata tier gold\n\t}")
	sites := map[string]site{}
	add := func(name, upstreamURL, directive string) {
		p := freePort(t)
		sites[name] = site{name, p, siteBlock(p, upstreamURL, directive)}
	}
	add("good", upstream.URL, good)
	add("scp", scpUpstream.URL, exchangeDirective(hookPath(t, "add-scope.js"), key, scpUpstream.URL))
	add("deny", upstream.URL, exchangeDirective(hookPath(t, "deny-invalid-scope.js"), key, upstream.URL))
	add("throw", upstream.URL, exchangeDirective(hookPath(t, "throws.js"), key, upstream.URL))
	add("timeout", upstream.URL, exchangeDirective(hookPath(t, "endless.js"), key, upstream.URL, "timeout 300ms"))
	actionsDir, _ := filepath.Abs(filepath.Join("testdata", "actions"))
	modulesDir, _ := filepath.Abs(filepath.Join("testdata", "modules"))
	add("actions", upstream.URL, exchangeDirective(hookPath(t, "e2e.js"), key, upstream.URL,
		"action "+filepath.Join(actionsDir, "tier-lifetime.js"), "action "+filepath.Join(actionsDir, "narrow-scope.js"),
		"modules_dir "+modulesDir, "client svc-billing {\n\t\tmetadata tier gold\n\t\tgrant_scopes read:a audit:write\n\t}"))
	add("action-deny", upstream.URL, exchangeDirective(hookPath(t, "starter.js"), key, upstream.URL,
		"action "+filepath.Join(actionsDir, "deny.js")))
	// A static upstream key that did not sign the upstream's tokens.
	add("wrongkey", upstream.URL, fmt.Sprintf("credentials_exchange {\n\thook %s\n\tsigning_key %s\n\tupstream_key %s\n}",
		hookPath(t, "starter.js"), key, writeKey(t, "rsa")))

	cfg := globalOptions(t)
	for _, s := range sites {
		cfg += s.block
	}
	startCaddy(t, cfg)
	proxy := sites["good"].url()

	ctx := context.Background()
	checkGoodToken := func(t *testing.T, access string, resp map[string]any) {
		t.Helper()
		tok := verify(t, fetchJWKS(t, proxy), access)
		if got := claim(t, tok, "scope"); got != "read:a read:resource" {
			t.Errorf("scope claim = %v", got)
		}
		if resp != nil && resp["scope"] != "read:a read:resource" {
			t.Errorf("response scope = %v", resp["scope"])
		}
		if tok.Issuer() != upstream.URL+"/" || tok.Subject() != "svc-billing" {
			t.Errorf("iss/sub = %q/%q, want the upstream's", tok.Issuer(), tok.Subject())
		}
		if exp := time.Until(tok.Expiration()); exp < 50*time.Minute || exp > 61*time.Minute {
			t.Errorf("exp is %v away, want the upstream's hour", exp)
		}
		if got := claim(t, tok, "client_id"); got != "svc-billing" {
			t.Errorf("client_id = %v", got)
		}
		wantClient := map[string]any{"id": "svc-billing", "name": "Billing service", "tenant": "acme", "tier": "gold"}
		if got := claim(t, tok, "https://example.com/client"); fmt.Sprint(got) != fmt.Sprint(wantClient) {
			t.Errorf("client claim = %v, want %v", got, wantClient)
		}
		if got := claim(t, tok, "https://example.com/audience"); got != "https://api.example.com" {
			t.Errorf("audience claim = %v", got)
		}
		if got := claim(t, tok, "https://example.com/has_secret"); got != false {
			t.Errorf("the hook saw client_secret in context.body")
		}
		if got := claim(t, tok, "https://example.com/region"); got != "eu-west-1" {
			t.Errorf("secret claim = %v", got)
		}
		if got := claim(t, tok, "tenant_id"); got != "acme-eu" {
			t.Errorf("non-namespaced claim tenant_id = %v", got)
		}
		for _, absent := range []string{"https://tenant.auth0.com/ignored", "urn:auth0:ignored"} {
			if _, ok := tok.Get(absent); ok {
				t.Errorf("claim %s should have been ignored", absent)
			}
		}
	}

	for _, style := range []struct {
		name  string
		style oauth2.AuthStyle
	}{{"basic auth", oauth2.AuthStyleInHeader}, {"client_secret_post", oauth2.AuthStyleInParams}} {
		t.Run(style.name, func(t *testing.T) {
			cc := clientcredentials.Config{
				ClientID: "svc-billing", ClientSecret: "billing-secret", TokenURL: proxy + "/oauth/token",
				Scopes: []string{"read:a", "admin"}, AuthStyle: style.style,
			}
			tok, err := cc.Token(ctx)
			if err != nil {
				t.Fatal(err)
			}
			checkGoodToken(t, tok.AccessToken, map[string]any{"scope": tok.Extra("scope")})
			if got := tok.Extra("https://example.com/audience"); got != nil {
				t.Errorf("hook claims leaked into the response body")
			}
		})
	}

	t.Run("JSON body", func(t *testing.T) {
		body := `{"grant_type":"client_credentials","client_id":"svc-billing","client_secret":"billing-secret","audience":"https://api.example.com","scope":"read:a admin"}`
		req, _ := http.NewRequest(http.MethodPost, proxy+"/oauth/token", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		r := do(t, req)
		if r.status != 200 {
			t.Fatalf("JSON token request: %d %s", r.status, r.body)
		}
		var resp map[string]any
		if err := json.Unmarshal(r.body, &resp); err != nil {
			t.Fatal(err)
		}
		checkGoodToken(t, resp["access_token"].(string), resp)
		if resp["token_type"] != "Bearer" || resp["expires_in"] == nil {
			t.Errorf("upstream response fields lost: %v", resp)
		}
	})

	t.Run("scp array kept as array", func(t *testing.T) {
		cc := clientcredentials.Config{ClientID: "svc-billing", ClientSecret: "billing-secret",
			TokenURL: sites["scp"].url() + "/oauth/token", Scopes: []string{"read:a"}}
		tok, err := cc.Token(ctx)
		if err != nil {
			t.Fatal(err)
		}
		parsed := verify(t, fetchJWKS(t, sites["scp"].url()), tok.AccessToken)
		if got := claim(t, parsed, "scp"); fmt.Sprint(got) != "[read:a read:resource]" {
			t.Errorf("scp = %#v", got)
		}
		if _, ok := parsed.Get("scope"); ok {
			t.Error("token has both scp and scope")
		}
	})

	t.Run("JWKS merges upstream and proxy keys", func(t *testing.T) {
		set := fetchJWKS(t, proxy)
		upstreamSet, _ := upstream.PublicKeysJSON()
		up, _ := jwk.Parse(upstreamSet)
		if set.Len() != up.Len()+1 {
			t.Fatalf("JWKS has %d keys, want upstream's %d + 1", set.Len(), up.Len())
		}
		for i := 0; i < set.Len(); i++ {
			k, _ := set.Key(i)
			if isPriv, _ := jwk.IsPrivateKey(k); isPriv {
				t.Fatal("JWKS holds a private key")
			}
		}
	})

	t.Run("hook and two actions", func(t *testing.T) {
		cc := clientcredentials.Config{ClientID: "svc-billing", ClientSecret: "billing-secret",
			TokenURL: sites["actions"].url() + "/oauth/token", Scopes: []string{"read:a", "admin"}}
		tok, err := cc.Token(ctx)
		if err != nil {
			t.Fatal(err)
		}
		parsed := verify(t, fetchJWKS(t, sites["actions"].url()), tok.AccessToken)
		if got := claim(t, parsed, "scope"); got != "read:a audit:write" {
			t.Errorf("scope = %v (hook added read:resource, the action swapped it for audit:write)", got)
		}
		if got := tok.Extra("scope"); got != "read:a audit:write" {
			t.Errorf("response scope = %v", got)
		}
		if got := claim(t, parsed, "https://example.com/max_session_seconds"); got != float64(7200) {
			t.Errorf("max_session_seconds = %v (from the tenant-rules package, gold tier)", got)
		}
		if got := claim(t, parsed, "https://example.com/hook_saw"); fmt.Sprint(got) == "" || got == nil {
			t.Errorf("the action did not see the hook's claim: %v", got)
		}
		if got := claim(t, parsed, "https://example.com/requested"); fmt.Sprint(got) != "[read:a admin]" {
			t.Errorf("requested scopes = %v", got)
		}
		if got := claim(t, parsed, "https://example.com/audience"); got != "https://api.example.com" {
			t.Errorf("the hook's own claims are gone: %v", got)
		}
	})

	for _, tc := range []struct {
		site, code, desc string
		status           int
	}{
		{"action-deny", "invalid_scope", "admin is not granted to machine clients", 400},
		{"deny", "invalid_scope", "Not authorized for this scope.", 400},
		{"throw", "server_error", "boom", 500},
		{"timeout", "server_error", "hook timed out", 500},
		{"wrongkey", "server_error", "", 502},
	} {
		t.Run("fails closed: "+tc.site, func(t *testing.T) {
			form := url.Values{"grant_type": {"client_credentials"}, "scope": {"read:a admin"}}
			r := postForm(t, sites[tc.site].url(), "/oauth/token", form, "svc-billing", "billing-secret")
			if r.status != tc.status || r.ctype != "application/json" {
				t.Fatalf("got %d %s %s", r.status, r.ctype, r.body)
			}
			var resp map[string]any
			if err := json.Unmarshal(r.body, &resp); err != nil {
				t.Fatal(err)
			}
			if _, leaked := resp["access_token"]; leaked || bytes.Contains(r.body, []byte("eyJ")) {
				t.Fatalf("a failed exchange returned a token: %s", r.body)
			}
			if resp["error"] != tc.code || (tc.desc != "" && resp["error_description"] != tc.desc) {
				t.Fatalf("error = %s", r.body)
			}
		})
	}

	t.Run("passes other traffic through byte for byte", func(t *testing.T) {
		cases := []struct {
			name string
			req  func(base string) *http.Request
		}{
			{"other grant", func(base string) *http.Request {
				r, _ := http.NewRequest(http.MethodPost, base+"/oauth/token",
					strings.NewReader("grant_type=password&username=u&password=p&client_id=svc-billing&client_secret=billing-secret"))
				r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				return r
			}},
			{"other path", func(base string) *http.Request {
				r, _ := http.NewRequest(http.MethodPost, base+"/other?x=1", strings.NewReader("grant_type=client_credentials"))
				r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				return r
			}},
			{"other method", func(base string) *http.Request {
				r, _ := http.NewRequest(http.MethodGet, base+"/oauth/token?x=1", nil)
				return r
			}},
			{"upstream 401", func(base string) *http.Request {
				r, _ := http.NewRequest(http.MethodPost, base+"/oauth/token",
					strings.NewReader("grant_type=client_credentials&client_id=svc-billing&client_secret=wrong"))
				r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				return r
			}},
		}
		for _, c := range cases {
			direct := do(t, c.req(upstream.URL))
			proxied := do(t, c.req(proxy))
			if direct.status != proxied.status || direct.ctype != proxied.ctype || !bytes.Equal(direct.body, proxied.body) {
				t.Errorf("%s: proxied %d %q %q, upstream sent %d %q %q", c.name,
					proxied.status, proxied.ctype, proxied.body, direct.status, direct.ctype, direct.body)
			}
		}
	})

	t.Run("oversized body is refused", func(t *testing.T) {
		form := url.Values{"grant_type": {"client_credentials"}, "pad": {strings.Repeat("x", 70*1024)}}
		r := postForm(t, proxy, "/oauth/token", form, "svc-billing", "billing-secret")
		if r.status != http.StatusRequestEntityTooLarge || !bytes.Contains(r.body, []byte(`"invalid_request"`)) {
			t.Fatalf("got %d %s", r.status, r.body)
		}
	})
}

// TestGeneratedKeysEveryAlgorithm runs an exchange through Caddy with a
// generated key of every supported algorithm and checks the token with an
// independent verifier (jwx's jwt.Parse) against the JWKS Caddy serves.
func TestGeneratedKeysEveryAlgorithm(t *testing.T) {
	upstream, err := oauthserver.Start(oauthserver.Options{Clients: []oauthserver.Client{{ID: "svc", Secret: "s"}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = upstream.Close() })
	algs := []string{"RS256", "PS256", "ES256", "ES384", "EdDSA"}
	ports := map[string]int{}
	cfg := globalOptions(t)
	for _, alg := range algs {
		ports[alg] = freePort(t)
		cfg += siteBlock(ports[alg], upstream.URL, fmt.Sprintf(
			"credentials_exchange {\n\thook %s\n\tsigning_alg %s\n\ttenant %s\n\tupstream_jwks %s/.well-known/jwks.json\n}",
			hookPath(t, "add-scope.js"), alg, "tenant-"+alg, upstream.URL))
	}
	startCaddy(t, cfg)
	for _, alg := range algs {
		t.Run(alg, func(t *testing.T) {
			base := site{port: ports[alg]}.url()
			cc := clientcredentials.Config{ClientID: "svc", ClientSecret: "s", TokenURL: base + "/oauth/token", Scopes: []string{"read:a"}}
			tok, err := cc.Token(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			msg, err := jws.Parse([]byte(tok.AccessToken))
			if err != nil {
				t.Fatal(err)
			}
			if got := msg.Signatures()[0].ProtectedHeaders().Algorithm().String(); got != alg {
				t.Fatalf("token signed with %s, want %s", got, alg)
			}
			parsed := verify(t, fetchJWKS(t, base), tok.AccessToken)
			if got := claim(t, parsed, "scope"); got != "read:a read:resource" {
				t.Errorf("scope = %v", got)
			}
		})
	}
}

// TestUpstreamKeyRotationAndOutage starts Caddy while the upstream's JWKS is
// unreachable (Caddy must start; exchanges get 502 and no token), brings it
// up (exchanges recover), then rotates the upstream's signing key mid-run
// (the next token, with the new kid, is verified after one refetch).
func TestUpstreamKeyRotationAndOutage(t *testing.T) {
	upstream, err := oauthserver.Start(oauthserver.Options{Clients: []oauthserver.Client{{ID: "svc", Secret: "s"}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = upstream.Close() })

	// The JWKS is served from a port nothing listens on yet.
	jwksPort := freePort(t)
	var fetches atomic.Int32
	port := freePort(t)
	startCaddy(t, globalOptions(t)+siteBlock(port, upstream.URL, fmt.Sprintf(
		"credentials_exchange {\n\thook %s\n\tupstream_jwks http://127.0.0.1:%d/jwks\n}", hookPath(t, "starter.js"), jwksPort)))
	base := site{port: port}.url()

	exchange := func() rawResponse {
		return postForm(t, base, "/oauth/token", url.Values{"grant_type": {"client_credentials"}, "scope": {"read:a"}}, "svc", "s")
	}
	if r := exchange(); r.status != http.StatusBadGateway || bytes.Contains(r.body, []byte("access_token")) {
		t.Fatalf("with the upstream JWKS unreachable: %d %s", r.status, r.body)
	}

	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", jwksPort))
	if err != nil {
		t.Skipf("the reserved port was taken meanwhile: %v", err)
	}
	jwksServer := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		body, _ := upstream.PublicKeysJSON()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	})}
	go func() { _ = jwksServer.Serve(ln) }()
	t.Cleanup(func() { _ = jwksServer.Close() })

	// Failed fetches are retried after a short back-off; poll until the
	// exchange succeeds, without asserting how long it takes.
	deadline := time.Now().Add(15 * time.Second)
	for {
		r := exchange()
		if r.status == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("exchanges did not recover after the upstream JWKS came back: %d %s", r.status, r.body)
		}
		time.Sleep(200 * time.Millisecond)
	}

	before := fetches.Load()
	if err := upstream.RotateKey(); err != nil {
		t.Fatal(err)
	}
	if r := exchange(); r.status != http.StatusOK {
		t.Fatalf("first exchange after the upstream rotated: %d %s", r.status, r.body)
	}
	if got := fetches.Load() - before; got != 1 {
		t.Fatalf("the upstream JWKS was fetched %d times after the rotation, want 1", got)
	}
	if r := exchange(); r.status != http.StatusOK || fetches.Load()-before != 1 {
		t.Fatalf("later exchange: %d, fetches %d", r.status, fetches.Load()-before)
	}
}
