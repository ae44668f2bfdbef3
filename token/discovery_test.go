package token

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
)

func TestMetadataURLs(t *testing.T) {
	for _, tc := range []struct{ issuer, oidc, rfc8414 string }{
		{"https://as.example", "https://as.example/.well-known/openid-configuration", "https://as.example/.well-known/oauth-authorization-server"},
		{"https://as.example/", "https://as.example/.well-known/openid-configuration", "https://as.example/.well-known/oauth-authorization-server"},
		// RFC 8414 §3.1: inserted between the host and the path.
		{"https://kc.example/realms/acme", "https://kc.example/realms/acme/.well-known/openid-configuration", "https://kc.example/.well-known/oauth-authorization-server/realms/acme"},
		{"http://127.0.0.1:4444/t%20x/", "http://127.0.0.1:4444/t%20x/.well-known/openid-configuration", "http://127.0.0.1:4444/.well-known/oauth-authorization-server/t%20x"},
	} {
		got, err := metadataURLs(tc.issuer)
		if err != nil || len(got) != 2 || got[0] != tc.oidc || got[1] != tc.rfc8414 {
			t.Errorf("metadataURLs(%q) = %q, %v; want [%q %q]", tc.issuer, got, err, tc.oidc, tc.rfc8414)
		}
	}
	for _, bad := range []string{"", "as.example", "ftp://as.example", "https://", "https://as.example/?tenant=a",
		"https://as.example/?", "https://as.example/#x", "https://user:pw@as.example", "mailto:a@as.example", "https://as.example/%zz"} {
		if _, err := metadataURLs(bad); err == nil {
			t.Errorf("issuer %q accepted", bad)
		}
	}
}

// metadataServer serves documents by path from a map the test may change;
// other paths are 404. It counts every request.
type metadataServer struct {
	*httptest.Server
	mu   sync.Mutex
	docs map[string]string
	hits atomic.Int32
}

func newMetadataServer(t *testing.T) *metadataServer {
	m := &metadataServer{docs: map[string]string{}}
	m.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.hits.Add(1)
		m.mu.Lock()
		doc, ok := m.docs[r.URL.Path]
		m.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(doc))
	}))
	t.Cleanup(m.Close)
	return m
}

func (m *metadataServer) set(path, doc string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if doc == "" {
		delete(m.docs, path)
	} else {
		m.docs[path] = doc
	}
}

func doc(issuer, jwksURI string) string {
	b, _ := json.Marshal(map[string]any{"issuer": issuer, "jwks_uri": jwksURI, "token_endpoint": issuer + "/token"})
	return string(b)
}

func TestDiscoveryOIDCThenRFC8414(t *testing.T) {
	srv := newMetadataServer(t)
	issuer := srv.URL + "/realms/acme"
	ctx := context.Background()

	// Only RFC 8414's document: found after OIDC's 404.
	srv.set("/.well-known/oauth-authorization-server/realms/acme", doc(issuer, srv.URL+"/realms/acme/certs"))
	d := &Discovery{Issuer: issuer, TTL: time.Hour, RetryAfter: time.Second}
	m, err := d.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if m.JWKSURI != srv.URL+"/realms/acme/certs" || m.Issuer != issuer || !strings.HasSuffix(m.Source, "/.well-known/oauth-authorization-server/realms/acme") {
		t.Fatalf("metadata = %+v", m)
	}

	// OIDC's document wins when both exist.
	srv.set("/realms/acme/.well-known/openid-configuration", doc(issuer, srv.URL+"/oidc/certs"))
	d = &Discovery{Issuer: issuer, TTL: time.Hour, RetryAfter: time.Second}
	if m, err = d.Get(ctx); err != nil || m.JWKSURI != srv.URL+"/oidc/certs" {
		t.Fatalf("metadata = %+v, %v; want OIDC's", m, err)
	}
	if d.Current() != m {
		t.Fatal("Current does not return the document Get fetched")
	}
}

func TestDiscoveryRefuses(t *testing.T) {
	srv := newMetadataServer(t)
	issuer := srv.URL
	good := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(doc(issuer, issuer+"/keys")))
	}))
	defer good.Close()
	redirect := httptest.NewServer(http.RedirectHandler(good.URL+"/.well-known/openid-configuration", http.StatusFound))
	defer redirect.Close()
	huge := `{"issuer":"` + issuer + `","jwks_uri":"` + issuer + `/keys","pad":"` + strings.Repeat("x", maxMetadataSize) + `"}`

	for name, tc := range map[string]struct {
		issuer, doc, want string
	}{
		"other issuer":          {issuer, doc("https://evil.example", issuer+"/keys"), `the document's issuer is "https://evil.example"`},
		"trailing slash":        {issuer, doc(issuer+"/", issuer+"/keys"), "must be identical"},
		"no issuer":             {issuer, `{"jwks_uri":"` + issuer + `/keys"}`, "has no issuer"},
		"issuer not a string":   {issuer, `{"issuer":5,"jwks_uri":"` + issuer + `/keys"}`, "not a JSON object with string issuer"},
		"not JSON":              {issuer, `<html>`, "not a JSON object"},
		"array":                 {issuer, `[]`, "not a JSON object"},
		"no jwks_uri":           {issuer, `{"issuer":"` + issuer + `"}`, "has no jwks_uri"},
		"file jwks_uri":         {issuer, doc(issuer, "file:///etc/passwd"), "is not an absolute URL"},
		"javascript jwks_uri":   {issuer, doc(issuer, "javascript://x/%0aalert(1)"), "must be an http:// or https:// URL"},
		"relative jwks_uri":     {issuer, doc(issuer, "/keys"), "is not an absolute URL"},
		"jwks_uri with creds":   {issuer, doc(issuer, "http://u:p@127.0.0.1/keys"), "without user info"},
		"too large":             {issuer, huge, "larger than"},
		"redirect not followed": {redirect.URL, "", "redirects are not followed"},
		"nothing there":         {srv.URL + "/nothing", "", "404 Not Found"},
	} {
		t.Run(name, func(t *testing.T) {
			srv.set("/.well-known/openid-configuration", tc.doc)
			d := &Discovery{Issuer: tc.issuer, TTL: time.Hour, RetryAfter: time.Second}
			m, err := d.Get(context.Background())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Get = %+v, %v; want an error containing %q", m, err, tc.want)
			}
			if d.Current() != nil {
				t.Fatal("a refused document is current")
			}
		})
	}

	// An https issuer's document may not send keys over http.
	if _, err := parseMetadata([]byte(doc("https://as.example", "http://as.example/keys")), "https://as.example", ""); err == nil ||
		!strings.Contains(err.Error(), "is http while the issuer is https") {
		t.Fatalf("http jwks_uri under an https issuer: %v", err)
	}
}

// A document for another issuer is not looked for at RFC 8414's URL too:
// the server has said who it is.
func TestDiscoveryWrongIssuerStops(t *testing.T) {
	srv := newMetadataServer(t)
	srv.set("/.well-known/openid-configuration", doc("https://other.example", srv.URL+"/keys"))
	d := &Discovery{Issuer: srv.URL, TTL: time.Hour, RetryAfter: time.Second}
	if _, err := d.Get(context.Background()); err == nil || strings.Contains(err.Error(), "oauth-authorization-server") {
		t.Fatalf("err = %v, want the OIDC document's issuer error alone", err)
	}
	if srv.hits.Load() != 1 {
		t.Fatalf("%d requests, want 1", srv.hits.Load())
	}
}

func TestDiscoveryCachesAndRetries(t *testing.T) {
	srv := newMetadataServer(t)
	now := time.Now()
	clock := func() time.Time { return now }
	d := &Discovery{Issuer: srv.URL, TTL: time.Hour, RetryAfter: 10 * time.Second, Now: clock}
	ctx := context.Background()

	// Down at start: one attempt per RetryAfter, however many callers.
	for range 5 {
		if _, err := d.Get(ctx); err == nil {
			t.Fatal("no document, yet Get succeeded")
		}
	}
	if n := srv.hits.Load(); n != 2 { // both URLs, once
		t.Fatalf("%d requests while failing within RetryAfter, want 2", n)
	}
	srv.set("/.well-known/openid-configuration", doc(srv.URL, srv.URL+"/keys"))
	now = now.Add(11 * time.Second)
	m, err := d.Get(ctx)
	if err != nil || m.JWKSURI != srv.URL+"/keys" {
		t.Fatalf("after recovery: %+v, %v", m, err)
	}
	base := srv.hits.Load()
	for range 5 {
		_, _ = d.Get(ctx)
	}
	if srv.hits.Load() != base {
		t.Fatal("a fresh document was fetched again")
	}

	// Past TTL it is fetched again; a failing refresh keeps the last good
	// document.
	srv.set("/.well-known/openid-configuration", "")
	now = now.Add(time.Hour)
	if m2, err := d.Get(ctx); err != nil || m2 != m {
		t.Fatalf("failed refresh: %+v, %v; want the last good document", m2, err)
	}
	if srv.hits.Load() == base {
		t.Fatal("a stale document was not fetched again")
	}
	// A changed document replaces it.
	srv.set("/.well-known/openid-configuration", doc(srv.URL, srv.URL+"/keys2"))
	now = now.Add(11 * time.Second)
	if m3, err := d.Get(ctx); err != nil || m3.JWKSURI != srv.URL+"/keys2" {
		t.Fatalf("refresh: %+v, %v", m3, err)
	}
}

func TestVerifierIssuer(t *testing.T) {
	up := newUpstream(t, "k1")
	v := &Verifier{Keys: StaticKeys{up.pub}, Issuer: "https://as.example"}
	ctx := context.Background()
	sign := func(claims map[string]any) string {
		claims["exp"] = future()
		return up.sign(t, jwa.RS256, up.key, "k1", claims)
	}
	if _, err := v.Verify(ctx, sign(map[string]any{"iss": "https://as.example"})); err != nil {
		t.Fatalf("matching iss: %v", err)
	}
	for name, tc := range map[string]struct {
		claims map[string]any
		want   string
	}{
		"other":          {map[string]any{"iss": "https://evil.example"}, `token issuer is "https://evil.example"; expected "https://as.example"`},
		"trailing slash": {map[string]any{"iss": "https://as.example/"}, "expected"},
		"case":           {map[string]any{"iss": "https://AS.example"}, "expected"},
		"missing":        {map[string]any{}, "token has no iss claim"},
		"not a string":   {map[string]any{"iss": []string{"https://as.example"}}, "iss is not a string"},
		"huge":           {map[string]any{"iss": strings.Repeat("x", 10000)}, "expected"},
	} {
		_, err := v.Verify(ctx, sign(tc.claims))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", name, err, tc.want)
		}
		if r := FailureReason(err); r != reasonIssuer {
			t.Errorf("%s: counted as %q, want %q", name, r, reasonIssuer)
		}
		if err != nil && len(err.Error()) > 400 {
			t.Errorf("%s: error of %d bytes; the claim must be cut short", name, len(err.Error()))
		}
	}
	// No Issuer: not checked, as before.
	v.Issuer = ""
	if _, err := v.Verify(ctx, sign(map[string]any{"iss": "https://evil.example"})); err != nil {
		t.Fatal(err)
	}
}

// The proxy's own keys, published in a JWKS it may be asked to fetch through
// itself, never verify an upstream token.
func TestExcludeKeys(t *testing.T) {
	up, own := newUpstream(t, "up"), newUpstream(t, "own")
	// The proxy's key, published under another kid, is still its key.
	renamed, _ := own.pub.PublicKey()
	_ = renamed.Set(jwk.KeyIDKey, "up")
	v := &Verifier{Keys: &ExcludeKeys{
		Keys: StaticKeys{up.pub, own.pub, renamed},
		Own:  func() []jwk.Key { return []jwk.Key{own.key} },
	}}
	ctx := context.Background()
	if _, err := v.Verify(ctx, up.sign(t, jwa.RS256, up.key, "up", map[string]any{"exp": future()})); err != nil {
		t.Fatalf("upstream key: %v", err)
	}
	for _, kid := range []string{"own", "up", ""} {
		if _, err := v.Verify(ctx, own.sign(t, jwa.RS256, own.key, kid, map[string]any{"exp": future()})); err == nil {
			t.Fatalf("a token signed with the proxy's own key (kid %q) verified", kid)
		}
	}
}

// DiscoveredJWKS verifies with the keys at the discovered jwks_uri and
// follows it when the document names another one.
func TestDiscoveredJWKS(t *testing.T) {
	k1, k2 := newUpstream(t, "k1"), newUpstream(t, "k2")
	srv := newMetadataServer(t)
	set := func(path string, k *upstream) {
		b, _ := json.Marshal(map[string]any{"keys": []jwk.Key{k.pub}})
		srv.set(path, string(b))
	}
	set("/jwks/one", k1)
	set("/jwks/two", k2)
	srv.set("/.well-known/openid-configuration", doc(srv.URL, srv.URL+"/jwks/one"))
	now := time.Now()
	d := &Discovery{Issuer: srv.URL, TTL: time.Hour, RetryAfter: time.Second, Now: func() time.Time { return now }}
	v := &Verifier{Issuer: srv.URL, Keys: &DiscoveredJWKS{Discovery: d, New: func(u string) *RemoteJWKS {
		return &RemoteJWKS{URL: u, TTL: time.Hour, MinRefresh: time.Second, RetryAfter: time.Second}
	}}}
	ctx := context.Background()
	claims := map[string]any{"iss": srv.URL, "exp": future()}
	if _, err := v.Verify(ctx, k1.sign(t, jwa.RS256, k1.key, "k1", claims)); err != nil {
		t.Fatal(err)
	}
	srv.set("/.well-known/openid-configuration", doc(srv.URL, srv.URL+"/jwks/two"))
	now = now.Add(2 * time.Hour)
	if _, err := v.Verify(ctx, k2.sign(t, jwa.RS256, k2.key, "k2", claims)); err != nil {
		t.Fatalf("after the document moved the JWKS: %v", err)
	}

	// No document: every lookup fails, closed.
	d2 := &Discovery{Issuer: srv.URL + "/gone", TTL: time.Hour, RetryAfter: time.Second}
	v2 := &Verifier{Keys: &DiscoveredJWKS{Discovery: d2, New: func(u string) *RemoteJWKS { return &RemoteJWKS{URL: u} }}}
	if _, err := v2.Verify(ctx, k1.sign(t, jwa.RS256, k1.key, "k1", claims)); err == nil || !strings.Contains(err.Error(), "upstream discovery") {
		t.Fatalf("without a document: %v", err)
	}
}

// ExcludeKeys remembers thumbprints by key object, so a key that becomes
// the proxy's after a lookup (a rotation) is excluded from the next one,
// and the memory stays bounded however many key objects pass through.
func TestExcludeKeysRemembersByObject(t *testing.T) {
	up, own := newUpstream(t, "up"), newUpstream(t, "own")
	current := []jwk.Key{}
	e := &ExcludeKeys{Keys: StaticKeys{up.pub, own.pub}, Own: func() []jwk.Key { return current }}
	ctx := context.Background()
	if keys, _ := e.LookupKeys(ctx, "own"); len(keys) != 1 {
		t.Fatalf("before the rotation, own's key is an upstream key: %d keys", len(keys))
	}
	current = []jwk.Key{own.key} // now the proxy's: published after a rotation
	if keys, _ := e.LookupKeys(ctx, "own"); len(keys) != 0 {
		t.Fatalf("after the rotation the proxy's key is still offered as upstream's")
	}
	for i := 0; i < 3*maxThumbprints; i++ {
		clone, err := up.pub.Clone()
		if err != nil {
			t.Fatal(err)
		}
		e.thumbprint(clone)
	}
	if n := len(e.thumbprints); n > maxThumbprints {
		t.Fatalf("%d thumbprints remembered", n)
	}
}
