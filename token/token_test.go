package token

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
	"github.com/lestrrat-go/jwx/v2/jwt"
)

func pemOf(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func mustRSA(t testing.TB, bits int) *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestParseKeysFormats(t *testing.T) {
	rsaKey := mustRSA(t, 2048)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(rsaKey)
	sec1, _ := x509.MarshalECPrivateKey(ecKey)
	edPKCS8, _ := x509.MarshalPKCS8PrivateKey(edKey)
	pkix, _ := x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)
	jwkKey, _ := jwk.FromRaw(ecKey)
	jwkJSON, _ := json.Marshal(jwkKey)
	set := jwk.NewSet()
	pub, _ := jwk.FromRaw(&rsaKey.PublicKey)
	_ = set.AddKey(pub)
	_ = set.AddKey(jwkKey)
	setJSON, _ := json.Marshal(set)

	cases := map[string]struct {
		data    []byte
		n       int
		private bool
	}{
		"PKCS#1":            {pemOf("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey)), 1, true},
		"PKCS#8 RSA":        {pemOf("PRIVATE KEY", pkcs8), 1, true},
		"SEC1":              {pemOf("EC PRIVATE KEY", sec1), 1, true},
		"PKCS#8 Ed25519":    {pemOf("PRIVATE KEY", edPKCS8), 1, true},
		"PKIX public":       {pemOf("PUBLIC KEY", pkix), 1, false},
		"certificate":       {selfSigned(t, rsaKey), 1, false},
		"JWK":               {jwkJSON, 1, true},
		"JWK set":           {setJSON, 2, false},
		"two PEM blocks":    {append(pemOf("PUBLIC KEY", pkix), pemOf("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey))...), 2, false},
		"PEM with comments": {append([]byte("# upstream key\n"), pemOf("PUBLIC KEY", pkix)...), 1, false},
	}
	for name, tc := range cases {
		keys, err := ParseKeys(tc.data)
		if err != nil || len(keys) != tc.n {
			t.Errorf("%s: %d keys, %v", name, len(keys), err)
			continue
		}
		if priv, _ := jwk.IsPrivateKey(keys[0]); priv != tc.private && tc.n == 1 {
			t.Errorf("%s: private = %v", name, priv)
		}
	}
	for name, bad := range map[string]string{
		"empty": "", "garbage": "not a key", "bad JSON": "{nope", "empty set": `{"keys":[]}`,
		"bad PEM body": string(pemOf("PRIVATE KEY", []byte("junk"))),
	} {
		if _, err := ParseKeys([]byte(bad)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func selfSigned(t *testing.T, k *rsa.PrivateKey) []byte {
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "upstream"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	return pemOf("CERTIFICATE", der)
}

func TestSignerAlgorithms(t *testing.T) {
	rsaKey, _ := jwk.FromRaw(mustRSA(t, 2048))
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	k256, _ := jwk.FromRaw(p256)
	k384, _ := jwk.FromRaw(p384)
	k521, _ := jwk.FromRaw(p521)
	ked, _ := jwk.FromRaw(ed)

	good := []struct {
		key       jwk.Key
		alg, want string
	}{
		{rsaKey, "", "RS256"}, {rsaKey, "RS384", "RS384"}, {rsaKey, "RS512", "RS512"},
		{rsaKey, "PS256", "PS256"}, {rsaKey, "PS384", "PS384"}, {rsaKey, "PS512", "PS512"},
		{k256, "", "ES256"}, {k384, "", "ES384"}, {k521, "", "ES512"}, {ked, "", "EdDSA"},
	}
	for _, tc := range good {
		s, err := NewSigner(tc.key, tc.alg)
		if err != nil {
			t.Errorf("%s: %v", tc.want, err)
			continue
		}
		if s.Algorithm() != tc.want {
			t.Errorf("alg = %s, want %s", s.Algorithm(), tc.want)
		}
		tp, _ := thumbprint(tc.key)
		if s.KeyID() != tp {
			t.Errorf("%s: kid %q is not the RFC 7638 thumbprint %q", tc.want, s.KeyID(), tp)
		}
		signed, err := s.Sign("at+jwt", []byte(`{"sub":"x","exp":4102444800}`))
		if err != nil {
			t.Fatal(err)
		}
		set := jwk.NewSet()
		_ = set.AddKey(s.PublicKey())
		if _, err := jwt.Parse([]byte(signed), jwt.WithKeySet(set)); err != nil {
			t.Errorf("%s: independent verification failed: %v", tc.want, err)
		}
		// Sign is written out by hand: jwx must read what it wrote, header
		// and all, with and without typ.
		for _, typ := range []string{"at+jwt", ""} {
			signed, err := s.Sign(typ, []byte(`{"sub":"x"}`))
			if err != nil {
				t.Fatal(err)
			}
			msg, err := jws.Parse([]byte(signed))
			if err != nil {
				t.Fatalf("%s: jws.Parse: %v", tc.want, err)
			}
			h := msg.Signatures()[0].ProtectedHeaders()
			if h.Algorithm().String() != tc.want || h.KeyID() != s.KeyID() || h.Type() != typ {
				t.Errorf("%s: header alg %s kid %s typ %q", tc.want, h.Algorithm(), h.KeyID(), h.Type())
			}
			var alg jwa.SignatureAlgorithm
			_ = alg.Accept(tc.want)
			if payload, err := jws.Verify([]byte(signed), jws.WithKey(alg, s.PublicKey())); err != nil || string(payload) != `{"sub":"x"}` {
				t.Errorf("%s: jws.Verify = %q, %v", tc.want, payload, err)
			}
		}
		if priv, _ := jwk.IsPrivateKey(s.PublicKey()); priv {
			t.Errorf("%s: PublicKey is private", tc.want)
		}
	}

	bad := []struct {
		name string
		key  jwk.Key
		alg  string
	}{
		{"ES256 with RSA", rsaKey, "ES256"},
		{"ES384 with P-256", k256, "ES384"},
		{"HS256 with RSA", rsaKey, "HS256"},
		{"none", rsaKey, "none"},
		{"RS256 with Ed25519", ked, "RS256"},
		{"unknown alg", rsaKey, "XX999"},
	}
	for _, tc := range bad {
		if _, err := NewSigner(tc.key, tc.alg); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
	small, _ := jwk.FromRaw(mustRSA(t, 1024))
	if _, err := NewSigner(small, ""); err == nil || !strings.Contains(err.Error(), "2048") {
		t.Errorf("1024-bit RSA: %v", err)
	}
	oct, _ := jwk.FromRaw([]byte("secret-secret-secret-secret-1234"))
	if _, err := NewSigner(oct, ""); err == nil {
		t.Error("symmetric key accepted")
	}
	pubOnly, _ := rsaKey.PublicKey()
	if _, err := NewSigner(pubOnly, ""); err == nil {
		t.Error("public key accepted for signing")
	}
	withKID, _ := jwk.FromRaw(p256)
	_ = withKID.Set(jwk.KeyIDKey, "configured")
	if s, _ := NewSigner(withKID, ""); s.KeyID() != "configured" {
		t.Errorf("configured kid not kept: %q", s.KeyID())
	}
}

type upstream struct {
	key jwk.Key
	pub jwk.Key
}

func newUpstream(t testing.TB, kid string) *upstream {
	k, _ := jwk.FromRaw(mustRSA(t, 2048))
	_ = k.Set(jwk.KeyIDKey, kid)
	pub, _ := k.PublicKey()
	return &upstream{k, pub}
}

func (u *upstream) sign(t testing.TB, alg jwa.SignatureAlgorithm, key any, kid string, claims map[string]any) string {
	// jwx writes a JWK's own kid into the header; sign with the raw key so
	// the header carries exactly the kid the test asks for.
	if k, ok := key.(jwk.Key); ok {
		var raw any
		if err := k.Raw(&raw); err != nil {
			t.Fatal(err)
		}
		key = raw
	}
	payload, _ := json.Marshal(claims)
	hdr := jws.NewHeaders()
	if kid != "" {
		_ = hdr.Set(jws.KeyIDKey, kid)
	}
	_ = hdr.Set(jws.TypeKey, "at+jwt")
	out, err := jws.Sign(payload, jws.WithKey(alg, key, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func future() int64 { return time.Now().Add(time.Hour).Unix() }

func TestVerify(t *testing.T) {
	up := newUpstream(t, "k1")
	v := &Verifier{Keys: StaticKeys{up.pub}, Leeway: 30 * time.Second}
	ctx := context.Background()

	tok, err := v.Verify(ctx, up.sign(t, jwa.RS256, up.key, "k1", map[string]any{"sub": "a", "exp": future(), "big": json.RawMessage("12345678901234567890")}))
	if err != nil {
		t.Fatal(err)
	}
	if tok.Type != "at+jwt" || tok.KeyID != "k1" || tok.Alg != "RS256" || string(tok.Claims["big"]) != "12345678901234567890" {
		t.Fatalf("token = %+v (claims must be kept as written)", tok)
	}
	if _, err := v.Verify(ctx, up.sign(t, jwa.PS256, up.key, "", map[string]any{"exp": future()})); err != nil {
		t.Errorf("PS256 without kid: %v", err)
	}

	pubJSON, _ := json.Marshal(up.pub)
	var rawPub any
	_ = up.pub.Raw(&rawPub)
	pubDER, _ := x509.MarshalPKIXPublicKey(rawPub)
	other := newUpstream(t, "k1")
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	refused := map[string]string{
		"expired":                  up.sign(t, jwa.RS256, up.key, "k1", map[string]any{"exp": time.Now().Add(-time.Minute).Unix()}),
		"no exp":                   up.sign(t, jwa.RS256, up.key, "k1", map[string]any{"sub": "a"}),
		"exp not a number":         up.sign(t, jwa.RS256, up.key, "k1", map[string]any{"exp": "tomorrow"}),
		"not yet valid":            up.sign(t, jwa.RS256, up.key, "k1", map[string]any{"exp": future(), "nbf": time.Now().Add(10 * time.Minute).Unix()}),
		"other key":                up.sign(t, jwa.RS256, other.key, "k1", map[string]any{"exp": future()}),
		"HS256 with JWK as secret": up.sign(t, jwa.HS256, pubJSON, "k1", map[string]any{"exp": future()}),
		"HS256 with PEM as secret": up.sign(t, jwa.HS256, pemOf("PUBLIC KEY", pubDER), "k1", map[string]any{"exp": future()}),
		"ES256 against RSA key":    up.sign(t, jwa.ES256, ecKey, "k1", map[string]any{"exp": future()}),
		"alg none":                 noneToken(),
		"not a JWT":                "opaque",
		"JWE-shaped":               "a.b.c.d.e",
		"payload not an object":    up.sign(t, jwa.RS256, up.key, "k1", nil),
		"unknown crit extension":   critToken(t, up.key),
		"JSON serialization":       jsonSerialized(t, up.key),
		"b64 false without crit":   b64Token(t, up.key),
		// int64(1e19) overflows to the distant past; the nbf must not pass.
		"nbf 1e19":   up.sign(t, jwa.RS256, up.key, "k1", map[string]any{"exp": future(), "nbf": json.RawMessage("1e19")}),
		"exp 1e999":  up.sign(t, jwa.RS256, up.key, "k1", map[string]any{"exp": json.RawMessage("1e999")}),
		"exp -1e19":  up.sign(t, jwa.RS256, up.key, "k1", map[string]any{"exp": json.RawMessage("-1e19")}),
		"nbf 9.3e18": up.sign(t, jwa.RS256, up.key, "k1", map[string]any{"exp": future(), "nbf": json.RawMessage("9300000000000000000")}),
	}
	if _, err := v.Verify(ctx, up.sign(t, jwa.RS256, up.key, "k1", map[string]any{"exp": json.RawMessage("1e19"), "nbf": json.RawMessage("-1e19")})); err != nil {
		t.Errorf("exp 1e19 (far future) and nbf -1e19 (far past): %v", err)
	}
	for name, compact := range refused {
		if _, err := v.Verify(ctx, compact); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}

	insecure := &Verifier{}
	if _, err := insecure.Verify(ctx, up.sign(t, jwa.RS256, other.key, "k1", map[string]any{"exp": future()})); err != nil {
		t.Errorf("insecure verifier refused a well-formed token: %v", err)
	}
	for _, name := range []string{"alg none", "HS256 with JWK as secret", "expired", "unknown crit extension", "nbf 1e19", "JSON serialization", "b64 false without crit"} {
		if _, err := insecure.Verify(ctx, refused[name]); err == nil {
			t.Errorf("insecure verifier accepted %s", name)
		}
	}
}

// jsonSerialized signs a valid token in the JWS JSON serialization, with an
// unprotected header member holding two dots, so that it passes Verify's
// dot count: jwx parses either serialization unless told which, and an
// access token must be a compact JWS.
func jsonSerialized(t *testing.T, key jwk.Key) string {
	payload, _ := json.Marshal(map[string]any{"sub": "a", "exp": future()})
	hdr := jws.NewHeaders()
	_ = hdr.Set(jws.KeyIDKey, "k1")
	out, err := jws.Sign(payload, jws.WithJSON(), jws.WithKey(jwa.RS256, key, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(out), `"payload"`, `"header":{"x":"a.b.c"},"payload"`, 1)
	if strings.Count(s, ".") != 2 {
		t.Fatalf("JSON serialization has %d dots: %s", strings.Count(s, "."), s)
	}
	return s
}

// b64Token signs a valid token with b64=false in its header but not in
// crit, which jwx still honours: the signature covers the raw payload.
func b64Token(t *testing.T, key jwk.Key) string {
	payload, _ := json.Marshal(map[string]any{"sub": "a", "exp": future()})
	hdr := jws.NewHeaders()
	_ = hdr.Set(jws.KeyIDKey, "k1")
	_ = hdr.Set("b64", false)
	out, err := jws.Sign(payload, jws.WithKey(jwa.RS256, key, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// critToken signs a token whose header lists an extension in crit.
func critToken(t *testing.T, key jwk.Key) string {
	hdr := jws.NewHeaders()
	_ = hdr.Set(jws.KeyIDKey, "k1")
	_ = hdr.Set(jws.CriticalKey, []string{"urn:example:ext"})
	_ = hdr.Set("urn:example:ext", true)
	payload, _ := json.Marshal(map[string]any{"exp": future()})
	out, err := jws.Sign(payload, jws.WithKey(jwa.RS256, key, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func noneToken() string {
	b64 := func(s string) string { return strings.TrimRight(encodeSegment([]byte(s)), "=") }
	return b64(`{"alg":"none"}`) + "." + b64(`{"exp":4102444800}`) + "."
}

func TestKeyAlgMustMatchHeader(t *testing.T) {
	up := newUpstream(t, "k1")
	_ = up.pub.Set(jwk.AlgorithmKey, jwa.PS256)
	v := &Verifier{Keys: StaticKeys{up.pub}}
	if _, err := v.Verify(context.Background(), up.sign(t, jwa.RS256, up.key, "k1", map[string]any{"exp": future()})); err == nil {
		t.Fatal("a key published for PS256 verified an RS256 token")
	}
}

func jwksServer(t *testing.T, keys func() []jwk.Key, up *atomic.Bool) (*httptest.Server, *atomic.Int32) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if up != nil && !up.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		set := jwk.NewSet()
		for _, k := range keys() {
			_ = set.AddKey(k)
		}
		_ = json.NewEncoder(w).Encode(set)
	}))
	t.Cleanup(srv.Close)
	return srv, &hits
}

func TestRemoteJWKS(t *testing.T) {
	k1, k2 := newUpstream(t, "k1"), newUpstream(t, "k2")
	published := []jwk.Key{k1.pub}
	srv, hits := jwksServer(t, func() []jwk.Key { return published }, nil)
	now := time.Now()
	clock := func() time.Time { return now }
	remote := &RemoteJWKS{URL: srv.URL, TTL: time.Hour, MinRefresh: 10 * time.Second, Now: clock}
	v := &Verifier{Keys: remote}
	ctx := context.Background()

	for i := 0; i < 3; i++ {
		if _, err := v.Verify(ctx, k1.sign(t, jwa.RS256, k1.key, "k1", map[string]any{"exp": future()})); err != nil {
			t.Fatal(err)
		}
	}
	if hits.Load() != 1 {
		t.Fatalf("JWKS fetched %d times for one kid, want 1 (cached)", hits.Load())
	}

	// The upstream rotates: the first token with the new kid triggers one
	// refetch at once.
	published = []jwk.Key{k1.pub, k2.pub}
	now = now.Add(time.Second)
	tok2 := k2.sign(t, jwa.RS256, k2.key, "k2", map[string]any{"exp": future()})
	if _, err := v.Verify(ctx, tok2); err != nil {
		t.Fatalf("after rotation: %v", err)
	}
	if hits.Load() != 2 {
		t.Fatalf("fetches = %d, want 2", hits.Load())
	}
	// Made-up kids do not hammer the upstream: one refetch per MinRefresh.
	for i := 0; i < 20; i++ {
		_, _ = v.Verify(ctx, k2.sign(t, jwa.RS256, k2.key, fmt.Sprintf("made-up-%d", i), map[string]any{"exp": future()}))
	}
	if hits.Load() != 2 {
		t.Fatalf("fetches = %d after 20 unknown kids within MinRefresh, want 2", hits.Load())
	}
	now = now.Add(11 * time.Second)
	_, _ = v.Verify(ctx, k2.sign(t, jwa.RS256, k2.key, "made-up-again", map[string]any{"exp": future()}))
	if hits.Load() != 3 {
		t.Fatalf("fetches = %d, want one more after MinRefresh", hits.Load())
	}
}

func TestRemoteJWKSUnreachableThenRecovers(t *testing.T) {
	k1 := newUpstream(t, "k1")
	var up atomic.Bool
	srv, _ := jwksServer(t, func() []jwk.Key { return []jwk.Key{k1.pub} }, &up)
	now := time.Now()
	remote := &RemoteJWKS{URL: srv.URL, TTL: time.Hour, MinRefresh: 10 * time.Second, RetryAfter: time.Second, Now: func() time.Time { return now }}
	v := &Verifier{Keys: remote}
	tok := k1.sign(t, jwa.RS256, k1.key, "k1", map[string]any{"exp": future()})
	if _, err := v.Verify(context.Background(), tok); err == nil || !strings.Contains(err.Error(), "unavailable") {
		t.Fatalf("with the upstream down: %v", err)
	}
	up.Store(true)
	now = now.Add(2 * time.Second)
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatalf("after the upstream came back: %v", err)
	}
}

func TestMergeJWKS(t *testing.T) {
	ours := newUpstream(t, "ours")
	priv := ours.key // MergeJWKS must publish only the public part
	upstreamDoc := `{"keys":[{"kty":"RSA","kid":"theirs","n":"AQAB","e":"AQAB"},{"kty":"RSA","kid":"ours","n":"stale","e":"AQAB"}],"extra":1}`
	out, err := MergeJWKS([]byte(upstreamDoc), []jwk.Key{priv})
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Keys  []map[string]any `json:"keys"`
		Extra int              `json:"extra"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Keys) != 2 || doc.Keys[0]["kid"] != "theirs" || doc.Keys[1]["kid"] != "ours" || doc.Extra != 1 {
		t.Fatalf("merged = %s", out)
	}
	for _, member := range []string{"d", "p", "q", "dp", "dq", "qi"} {
		if _, ok := doc.Keys[1][member]; ok {
			t.Fatalf("private member %s published", member)
		}
	}
	alone, err := MergeJWKS(nil, []jwk.Key{priv})
	if err != nil || !strings.Contains(string(alone), `"ours"`) {
		t.Fatalf("alone = %s, %v", alone, err)
	}
	for _, bad := range []string{`[]`, `{"keys":{}}`, `{"issuer":"x"}`, `nope`} {
		if _, err := MergeJWKS([]byte(bad), []jwk.Key{priv}); err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
}

// Every way Verify fails names its reason, from a bounded set, and keeps
// its text.
func TestFailureReason(t *testing.T) {
	if got := FailureReason(errors.New("x")); got != reasonOther {
		t.Fatalf("FailureReason(other) = %q", got)
	}
	v := &Verifier{}
	for compact, want := range map[string]string{
		"abc":                      reasonMalformed,
		"a.b.c":                    reasonMalformed,
		"eyJhbGciOiJub25lIn0.e30.": reasonHeader,
	} {
		_, err := v.Verify(context.Background(), compact)
		if err == nil || FailureReason(err) != want {
			t.Errorf("Verify(%q) = %v (%s), want reason %s", compact, err, FailureReason(err), want)
		}
	}
}
