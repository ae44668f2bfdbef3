package credentialsexchange_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jwt"
	"github.com/zitadel/oidc/v3/example/server/storage"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// zitadelJWTStorage is zitadel/oidc's in-memory example storage, whose
// client credentials clients (the service user sid1/verysecret) get opaque
// access tokens; its clients are given JWT access tokens instead, which is
// all this proxy can re-sign.
type zitadelJWTStorage struct{ *storage.Storage }

func (s zitadelJWTStorage) ClientCredentials(ctx context.Context, id, secret string) (op.Client, error) {
	c, err := s.Storage.ClientCredentials(ctx, id, secret)
	if err != nil {
		return nil, err
	}
	return jwtClient{c}, nil
}

type jwtClient struct{ op.Client }

func (jwtClient) AccessTokenType() op.AccessTokenType { return op.AccessTokenTypeJWT }

const (
	zitadelClient = "sid1"
	zitadelSecret = "verysecret"
)

// startZitadel runs a zitadel/oidc OpenID provider on 127.0.0.1:port (0: a
// free one) until the test ends. Its issuer is taken from each request's
// Host, as a multi-tenant or proxied deployment does, so a token requested
// under another host name carries another iss. It serves discovery at
// /.well-known/openid-configuration, its keys at /keys and tokens at
// /oauth/token.
func startZitadel(t *testing.T, port int) string {
	t.Helper()
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	store := zitadelJWTStorage{storage.NewStorage(storage.NewUserStore(base))}
	provider, err := op.NewProvider(&op.Config{CryptoKey: sha256.Sum256([]byte("test"))}, store,
		op.IssuerFromHost(""), op.WithAllowInsecure())
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: provider, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return base
}

const discoveryHook = `module.exports = function (client, scope, audience, context, cb) {
	cb(null, { 'https://example.com/via': 'caddyhook' });
};`

func zitadelToken(t *testing.T, base string) rawResponse {
	t.Helper()
	return postForm(t, base, "/oauth/token", url.Values{"grant_type": {"client_credentials"}}, zitadelClient, zitadelSecret)
}

func getJWKS(t *testing.T, u string) jwk.Set {
	t.Helper()
	r := do(t, mustRequest(t, http.MethodGet, u))
	if r.status != http.StatusOK {
		t.Fatalf("GET %s: %d %s", u, r.status, r.body)
	}
	set, err := jwk.Parse(r.body)
	if err != nil {
		t.Fatalf("GET %s: %v\n%s", u, err, r.body)
	}
	return set
}

func mustRequest(t *testing.T, method, u string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// eventually polls f until it reports done or a generous deadline passes;
// only the outcome is asserted, never how long it took.
func eventually(t *testing.T, what string, f func() (bool, string)) {
	t.Helper()
	var last string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		var done bool
		if done, last = f(); done {
			return
		}
	}
	t.Fatalf("%s: never happened; last: %s", what, last)
}

// upstream_issuer against zitadel/oidc, whose JWKS is at /keys: one line
// configures verification, the JWKS path and the issuer check.
func TestUpstreamIssuerZitadel(t *testing.T) {
	issuer := startZitadel(t, 0)
	hook := writeDiscoveryHook(t)
	direct, viaHost, self := freePort(t), freePort(t), freePort(t)
	directive := func(issuer string) string {
		return fmt.Sprintf("credentials_exchange {\n\thook %s\n\tupstream_issuer %s\n}", hook, issuer)
	}
	sites := []string{
		// The upstream is told its own name, so its tokens carry the issuer
		// upstream_issuer names.
		hostSite(direct, issuer, directive(issuer)),
		// The upstream sees the proxy's Host and names itself after it: its
		// tokens carry an issuer other than upstream_issuer's.
		siteBlock(viaHost, issuer, directive(issuer)),
		// The issuer is the proxy's own address, as when the proxy serves
		// the upstream under its public name: discovery and the jwks_uri are
		// fetched through the proxy itself, whose JWKS holds its own key.
		siteBlock(self, issuer, directive(fmt.Sprintf("http://127.0.0.1:%d", self))),
	}
	logFile := filepath.Join(t.TempDir(), "caddy.log")
	global := strings.Replace(globalOptions(t), "\tlog {\n", "\tlog {\n\t\toutput file "+logFile+"\n\t\tformat json\n", 1)
	startCaddy(t, global+strings.Join(sites, ""))

	for _, port := range []int{direct, self} {
		base := site{port: port}.url()
		t.Run(fmt.Sprintf("port %d", port), func(t *testing.T) {
			// Discovery runs in the background from start-up: the exchange
			// and the JWKS path work once it has read the document.
			var r rawResponse
			eventually(t, "a token through the proxy", func() (bool, string) {
				r = zitadelToken(t, base)
				return r.status == http.StatusOK, fmt.Sprintf("%d %s", r.status, r.body)
			})
			accessToken := tokenOf(t, r.body)

			// The proxy serves its JWKS at the discovered path, /keys,
			// not at /.well-known/jwks.json.
			served := getJWKS(t, base+"/keys")
			upstreamSet := getJWKS(t, issuer+"/keys")
			tok := verify(t, served, accessToken)
			if v := claim(t, tok, "https://example.com/via"); v != "caddyhook" {
				t.Fatalf("the hook's claim = %v", v)
			}
			if tok.Issuer() != fmt.Sprintf("http://127.0.0.1:%d", port) && tok.Issuer() != issuer {
				t.Fatalf("iss = %q", tok.Issuer())
			}
			if _, err := jwt.Parse([]byte(accessToken), jwt.WithKeySet(upstreamSet)); err == nil {
				t.Fatal("the re-signed token verifies against the upstream's own keys: it was not re-signed")
			}
			if served.Len() != upstreamSet.Len()+1 {
				t.Fatalf("served JWKS has %d keys, the upstream's %d: want the upstream's plus the proxy's", served.Len(), upstreamSet.Len())
			}
			// What the upstream serves at the default path is not the
			// proxy's concern: the proxy does not claim it.
			if r := do(t, mustRequest(t, http.MethodGet, base+"/.well-known/jwks.json")); r.status == http.StatusOK {
				t.Fatalf("/.well-known/jwks.json answered 200 %s; the JWKS path is /keys", r.body)
			}
		})
	}

	t.Run("other issuer", func(t *testing.T) {
		base := site{port: viaHost}.url()
		// The token itself is good, so the same request succeeds where the
		// issuer is right: the refusal is the iss claim's doing.
		eventually(t, "discovery read", func() (bool, string) {
			r := zitadelToken(t, site{port: direct}.url())
			return r.status == http.StatusOK, string(r.body)
		})
		r := zitadelToken(t, base)
		if r.status != http.StatusBadGateway || strings.Contains(string(r.body), "access_token") {
			t.Fatalf("token with iss http://127.0.0.1:%d: %d %s; want 502 without a token", viaHost, r.status, r.body)
		}
		// The log says which issuer came and which was expected.
		logs, err := os.ReadFile(logFile)
		if err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf(`token issuer is \"http://127.0.0.1:%d\"; expected \"%s\"`, viaHost, issuer)
		if !strings.Contains(string(logs), want) {
			t.Fatalf("the log does not say %s:\n%s", want, logs)
		}
	})
}

// An upstream that is down when Caddy starts is no config error: the config
// loads, exchanges fail with 502, and once the upstream is up they work.
func TestUpstreamIssuerDownAtStart(t *testing.T) {
	upPort, port := freePort(t), freePort(t)
	issuer := fmt.Sprintf("http://127.0.0.1:%d", upPort)
	hook := writeDiscoveryHook(t)
	startCaddy(t, globalOptions(t)+hostSite(port, issuer,
		fmt.Sprintf("credentials_exchange {\n\thook %s\n\tupstream_issuer %s\n}", hook, issuer)))
	base := site{port: port}.url()

	r := zitadelToken(t, base)
	if r.status != http.StatusBadGateway || strings.Contains(string(r.body), "access_token") {
		t.Fatalf("upstream down: %d %s; want 502", r.status, r.body)
	}

	upstream := startZitadel(t, upPort)
	// The JWKS path is recognised without any exchange having run: until
	// discovery succeeds /keys is the upstream's alone, then it holds the
	// proxy's key too.
	upstreamKeys := getJWKS(t, upstream+"/keys").Len()
	eventually(t, "the proxy's key at the discovered /keys", func() (bool, string) {
		r := do(t, mustRequest(t, http.MethodGet, base+"/keys"))
		set, err := jwk.Parse(r.body)
		return err == nil && set.Len() == upstreamKeys+1, fmt.Sprintf("%d %s", r.status, r.body)
	})
	eventually(t, "a token once the upstream is up", func() (bool, string) {
		r = zitadelToken(t, base)
		return r.status == http.StatusOK, fmt.Sprintf("%d %s", r.status, r.body)
	})
	verify(t, getJWKS(t, base+"/keys"), tokenOf(t, r.body))
}

// hostSite is siteBlock with the upstream told its own name (Host), so that
// a Host-named issuer names itself as upstream_issuer does.
func hostSite(port int, upstream, directive string) string {
	return fmt.Sprintf("http://127.0.0.1:%d {\n\tbind 127.0.0.1\n\t%s\n\treverse_proxy %s {\n\t\theader_up Host {upstream_hostport}\n\t}\n}\n",
		port, strings.ReplaceAll(directive, "\n", "\n\t"), strings.TrimPrefix(upstream, "http://"))
}
