package credentialsexchange_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jwt"

	_ "github.com/caddyhook/caddyhook"
	"github.com/caddyhook/caddyhook/internal/oauthserver"
)

// writeKey writes a fresh private key of the given kind as PEM and returns
// its path. Keys are made by the test, never committed.
func writeKey(t testing.TB, kind string) string {
	t.Helper()
	var der []byte
	var err error
	switch kind {
	case "rsa":
		var k *rsa.PrivateKey
		if k, err = rsa.GenerateKey(rand.Reader, 2048); err == nil {
			der, err = x509.MarshalPKCS8PrivateKey(k)
		}
	case "p256", "p384":
		curve := elliptic.P256()
		if kind == "p384" {
			curve = elliptic.P384()
		}
		var k *ecdsa.PrivateKey
		if k, err = ecdsa.GenerateKey(curve, rand.Reader); err == nil {
			der, err = x509.MarshalPKCS8PrivateKey(k)
		}
	case "ed25519":
		var k ed25519.PrivateKey
		if _, k, err = ed25519.GenerateKey(rand.Reader); err == nil {
			der, err = x509.MarshalPKCS8PrivateKey(k)
		}
	}
	if err != nil || der == nil {
		t.Fatalf("generating %s key: %v", kind, err)
	}
	path := filepath.Join(t.TempDir(), kind+".pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startCaddy runs a real Caddy, in this process, from a Caddyfile; it is
// stopped when the test ends.
func startCaddy(t testing.TB, caddyfile string) {
	t.Helper()
	cfgJSON, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), nil)
	if err != nil {
		t.Fatalf("adapting Caddyfile: %v\n%s", err, caddyfile)
	}
	for _, w := range warnings {
		t.Logf("adapt warning: %s", w.String())
	}
	if err := caddy.Load(cfgJSON, true); err != nil {
		t.Fatalf("loading config: %v", err)
	}
	t.Cleanup(func() { _ = caddy.Stop() })
}

func globalOptions(t testing.TB) string {
	t.Setenv("XDG_DATA_HOME", t.TempDir())
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	return fmt.Sprintf(`{
	admin off
	auto_https off
	persist_config off
	storage file_system %s
	log {
		level ERROR
	}
%s}
`, t.TempDir(), logSink())
}

// logSink is the global option that copies every Caddy log entry, at debug
// level, into the file TestMain scans for tokens and secrets
// (logscan_main_test.go); none when it runs without one.
func logSink() string {
	path := os.Getenv(logSinkEnv)
	if path == "" {
		return ""
	}
	return fmt.Sprintf("\tlog logscan {\n\t\toutput file %s {\n\t\t\troll_disabled\n\t\t}\n\t\tformat json\n\t\tlevel DEBUG\n\t}\n", path)
}

func hookPath(t testing.TB, name string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("testdata", "hooks", name))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

type site struct {
	name  string
	port  int
	block string
}

func (s site) url() string { return fmt.Sprintf("http://127.0.0.1:%d", s.port) }

func siteBlock(port int, upstream, directive string) string {
	return fmt.Sprintf("http://127.0.0.1:%d {\n\tbind 127.0.0.1\n\t%s\n\treverse_proxy %s\n}\n",
		port, strings.ReplaceAll(directive, "\n", "\n\t"), strings.TrimPrefix(upstream, "http://"))
}

func exchangeDirective(hook, signingKey, upstream string, extra ...string) string {
	return fmt.Sprintf("credentials_exchange {\n\thook %s\n\tsigning_key %s\n\tupstream_jwks %s/.well-known/jwks.json\n\t%s\n}",
		hook, signingKey, upstream, strings.Join(extra, "\n\t"))
}

func fetchJWKS(t testing.TB, base string) jwk.Set {
	t.Helper()
	resp, err := http.Get(base + "/.well-known/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("JWKS: %d %s", resp.StatusCode, body)
	}
	set, err := jwk.Parse(body)
	if err != nil {
		t.Fatalf("JWKS: %v\n%s", err, body)
	}
	return set
}

// verify checks a token against a JWKS the way a resource server would.
func verify(t testing.TB, set jwk.Set, tok string) jwt.Token {
	t.Helper()
	parsed, err := jwt.Parse([]byte(tok), jwt.WithKeySet(set), jwt.WithValidate(true))
	if err != nil {
		t.Fatalf("token does not verify against the proxy's JWKS: %v", err)
	}
	return parsed
}

func claim(t testing.TB, tok jwt.Token, name string) any {
	t.Helper()
	v, ok := tok.Get(name)
	if !ok {
		t.Fatalf("token has no %s claim", name)
	}
	return v
}

type rawResponse struct {
	status int
	ctype  string
	body   []byte
}

func do(t testing.TB, req *http.Request) rawResponse {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return rawResponse{resp.StatusCode, resp.Header.Get("Content-Type"), body}
}

func postForm(t testing.TB, base, path string, form url.Values, basicUser, basicPass string) rawResponse {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if basicUser != "" {
		req.SetBasicAuth(basicUser, basicPass)
	}
	return do(t, req)
}

func writeDiscoveryHook(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "hook.js")
	if err := os.WriteFile(p, []byte(discoveryHook), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func tokenOf(t *testing.T, body []byte) string {
	t.Helper()
	var resp struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(body, &resp); err != nil || resp.AccessToken == "" {
		t.Fatalf("no access_token in %s: %v", body, err)
	}
	return resp.AccessToken
}

// startOAuthServer starts the test OAuth server with opts and closes it
// after t.
func startOAuthServer(t testing.TB, opts oauthserver.Options) *oauthserver.Server {
	t.Helper()
	upstream, err := oauthserver.Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = upstream.Close() })
	return upstream
}

// exchangeAcrossReload sends svc-billing's client credentials request to
// base with client and returns the status and body. A request that races
// the old server's shutdown right after a reload can meet a closed
// connection (EOF); that is Caddy's reload, not what the tests look at, so
// it is sent again, on a new connection, up to three times.
func exchangeAcrossReload(t *testing.T, client *http.Client, base string) (int, []byte) {
	t.Helper()
	for try := 0; ; try++ {
		req, _ := http.NewRequest(http.MethodPost, base+"/oauth/token",
			strings.NewReader(url.Values{"grant_type": {"client_credentials"}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth("svc-billing", "billing-secret")
		resp, err := client.Do(req)
		if err == nil {
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			return resp.StatusCode, body
		}
		if try == 3 {
			t.Fatal(err)
		}
		client.CloseIdleConnections()
		time.Sleep(50 * time.Millisecond)
	}
}
