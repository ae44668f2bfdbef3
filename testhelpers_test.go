package credentialsexchange

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	_ "github.com/caddyserver/caddy/v2/modules/filestorage"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
)

func base64URL(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// upstreamKey is an RSA key that plays the upstream's signing key in these
// tests; it is generated once per test run.
type testUpstream struct {
	key     jwk.Key
	keyFile string // public key, PEM
}

func newTestUpstream(t testing.TB) *testUpstream {
	t.Helper()
	raw, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := jwk.FromRaw(raw)
	_ = key.Set(jwk.KeyIDKey, "up-1")
	der, _ := x509.MarshalPKIXPublicKey(&raw.PublicKey)
	path := filepath.Join(t.TempDir(), "upstream.pub.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return &testUpstream{key: key, keyFile: path}
}

func (u *testUpstream) sign(t testing.TB, alg jwa.SignatureAlgorithm, key any, claims map[string]any) string {
	t.Helper()
	payload, _ := json.Marshal(claims)
	hdr := jws.NewHeaders()
	_ = hdr.Set(jws.TypeKey, "at+jwt")
	_ = hdr.Set(jws.KeyIDKey, "up-1")
	out, err := jws.Sign(payload, jws.WithKey(alg, key, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func (u *testUpstream) token(t testing.TB, mod func(map[string]any)) string {
	claims := map[string]any{
		"iss": "https://up.example/", "sub": "svc", "aud": "https://api.example.com",
		"exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Unix(), "jti": "j1",
		"client_id": "svc", "scope": "read:a",
	}
	if mod != nil {
		mod(claims)
	}
	return u.sign(t, jwa.RS256, u.key, claims)
}

func writeSigningKey(t *testing.T) string {
	t.Helper()
	k, _ := rsa.GenerateKey(rand.Reader, 2048)
	der, _ := x509.MarshalPKCS8PrivateKey(k)
	p := filepath.Join(t.TempDir(), "signing.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func provision(t testing.TB, h *Handler) *Handler {
	t.Helper()
	return provisionWithStorage(t, h, t.TempDir())
}

// provisionWithStorage provisions h in a context whose storage is Caddy's
// file_system module at root, as under caddy run with a storage option.
func provisionWithStorage(t testing.TB, h *Handler, root string) *Handler {
	t.Helper()
	return provisionIn(t, h, storageContext(t, root))
}

// provisionIn provisions and validates h in ctx, cleaning it up after t.
func provisionIn(t testing.TB, h *Handler, ctx caddy.Context) *Handler {
	t.Helper()
	if err := h.Provision(ctx); err != nil {
		t.Fatalf("provision: %v", err)
	}
	t.Cleanup(func() { _ = h.Cleanup() })
	if err := h.Validate(); err != nil {
		t.Fatalf("validate: %v", err)
	}
	return h
}

// storageContext makes a Caddy context with file_system storage at root.
// Caddy's ProvisionContext sets package globals, so call it from one
// goroutine at a time.
func storageContext(t testing.TB, root string) caddy.Context {
	t.Helper()
	return storageContextLogging(t, root, nil)
}

// storageContextLogging is storageContext with Caddy's logging set to logs
// (nil: Caddy's default).
func storageContextLogging(t testing.TB, root string, logs *caddy.Logging) caddy.Context {
	t.Helper()
	storage, _ := json.Marshal(map[string]string{"module": "file_system", "root": root})
	base, err := caddy.ProvisionContext(&caddy.Config{StorageRaw: storage, Logging: logs})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := caddy.NewContext(base)
	t.Cleanup(cancel)
	return ctx
}

func writeScript(t testing.TB, src string) string {
	p := filepath.Join(t.TempDir(), "hook.js")
	if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// scriptedUpstream answers like an upstream token endpoint would, with a
// response the test chooses, and records what it received.
type scriptedUpstream struct {
	status  int
	header  http.Header
	body    string
	gotBody string
	gotType string
	gotAE   string
}

func (s *scriptedUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) error {
	b, _ := io.ReadAll(r.Body)
	s.gotBody, s.gotType, s.gotAE = string(b), r.Header.Get("Content-Type"), r.Header.Get("Accept-Encoding")
	for k, v := range s.header {
		w.Header()[k] = v
	}
	if w.Header().Get("Content-Type") == "" {
		w.Header().Set("Content-Type", "application/json")
	}
	w.WriteHeader(s.status)
	_, _ = io.WriteString(w, s.body)
	return nil
}

func tokenResponse(tok string) string {
	b, _ := json.Marshal(map[string]any{"access_token": tok, "token_type": "Bearer", "expires_in": 3600, "scope": "read:a"})
	return string(b)
}

func serve(t testing.TB, h *Handler, next caddyhttp.Handler, req *http.Request) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	if err := h.ServeHTTP(rec, req, next); err != nil {
		t.Fatalf("ServeHTTP: %v", err)
	}
	return rec
}

// issuedClaims returns the claims of the token in a successful token
// response.
func issuedClaims(t testing.TB, rec *httptest.ResponseRecorder) map[string]json.RawMessage {
	t.Helper()
	var resp map[string]json.RawMessage
	_ = json.Unmarshal(rec.Body.Bytes(), &resp)
	var compact string
	_ = json.Unmarshal(resp["access_token"], &compact)
	msg, err := jws.Parse([]byte(compact))
	if err != nil {
		t.Fatalf("no token in the response: %d %s", rec.Code, rec.Body)
	}
	var claims map[string]json.RawMessage
	if err := json.Unmarshal(msg.Payload(), &claims); err != nil {
		t.Fatal(err)
	}
	return claims
}

func formRequest(form url.Values) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/oauth/token", strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return r
}

var ccForm = url.Values{"grant_type": {"client_credentials"}, "client_id": {"svc"}, "client_secret": {"s"}}

// provisionScopeHook provisions a handler in front of up whose hook grants
// the requested scope and nothing else.
func provisionScopeHook(t *testing.T, up *testUpstream) *Handler {
	t.Helper()
	return provision(t, &Handler{
		Hook:        writeScript(t, `module.exports=function(c,s,a,x,cb){cb(null,{scope:s})}`),
		SigningKey:  writeSigningKey(t),
		UpstreamKey: up.keyFile,
	})
}

func unsignedToken(t *testing.T) string {
	enc := func(v any) string {
		b, _ := json.Marshal(v)
		return strings.TrimRight(base64URL(b), "=")
	}
	return enc(map[string]any{"alg": "none", "typ": "JWT"}) + "." + enc(map[string]any{"sub": "x", "exp": time.Now().Add(time.Hour).Unix()}) + "."
}

func checkErrorResponse(t *testing.T, rec *httptest.ResponseRecorder, code string) {
	t.Helper()
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	if cc := rec.Header().Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control = %q", cc)
	}
	var body map[string]string
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatalf("error body %q: %v", rec.Body, err)
	}
	if body["error"] != code || body["error_description"] == "" {
		t.Errorf("body = %v, want error %s with a description", body, code)
	}
	if strings.Contains(rec.Body.String(), "eyJ") {
		t.Errorf("error response holds a token: %s", rec.Body)
	}
}

var _ caddyhttp.Handler = (*scriptedUpstream)(nil)

// writeGeoDB builds a small database in GeoIP2 City layout: a full record
// for 203.0.113.0/24, a country-only record for 2001:db8::/32.
func writeGeoDB(t *testing.T, databaseType string) string {
	t.Helper()
	w, err := mmdbwriter.New(mmdbwriter.Options{DatabaseType: databaseType, RecordSize: 24, IncludeReservedNetworks: true})
	if err != nil {
		t.Fatal(err)
	}
	en := func(s string) mmdbtype.Map { return mmdbtype.Map{"en": mmdbtype.String(s), "de": mmdbtype.String("x")} }
	city := mmdbtype.Map{
		"city":      mmdbtype.Map{"names": en("Zurich")},
		"continent": mmdbtype.Map{"code": mmdbtype.String("EU"), "names": en("Europe")},
		"country":   mmdbtype.Map{"iso_code": mmdbtype.String("CH"), "names": en("Switzerland")},
		"location": mmdbtype.Map{"latitude": mmdbtype.Float64(47.3682), "longitude": mmdbtype.Float64(8.5671),
			"time_zone": mmdbtype.String("Europe/Zurich"), "accuracy_radius": mmdbtype.Uint16(20)},
		"subdivisions": mmdbtype.Slice{
			mmdbtype.Map{"iso_code": mmdbtype.String("ZH"), "names": en("Zurich")},
			mmdbtype.Map{"iso_code": mmdbtype.String("XX"), "names": en("Smaller")},
		},
	}
	country := mmdbtype.Map{
		"continent": mmdbtype.Map{"code": mmdbtype.String("NA")},
		"country":   mmdbtype.Map{"iso_code": mmdbtype.String("US"), "names": en("United States")},
	}
	for cidr, rec := range map[string]mmdbtype.Map{"203.0.113.0/24": city, "2001:db8::/32": country} {
		_, network, err := net.ParseCIDR(cidr)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Insert(network, rec); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(t.TempDir(), "geo.mmdb")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteTo(f); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}
