package credentialsexchange_test

import (
	"context"
	"fmt"
	"testing"

	"golang.org/x/oauth2/clientcredentials"

	"github.com/caddyhook/caddyhook/internal/oauthserver"
)

// BenchmarkTokenDirect is the baseline for BenchmarkTokenThroughCaddy: the
// same client asking the go-oauth2 server directly. Compare the two from one
// run (go test -bench Token -count 5 . | benchstat) to see what the proxy and
// the hook add to a token request.
func BenchmarkTokenDirect(b *testing.B) {
	upstream := benchUpstream(b)
	benchTokens(b, upstream.URL)
}

// BenchmarkTokenThroughCaddy is a full exchange: Caddy, reverse_proxy, the
// upstream, verification, the hook, re-signing with an RSA-2048 key (RS256).
func BenchmarkTokenThroughCaddy(b *testing.B) {
	upstream := benchUpstream(b)
	port := freePort(b)
	s := siteBlock(port, upstream.URL, exchangeDirective(hookPath(b, "e2e.js"), writeKey(b, "rsa"), upstream.URL))
	startCaddy(b, globalOptions(b)+s)
	benchTokens(b, site{port: port}.url())
}

// BenchmarkTokenThroughCaddyES256 is the same with a generated ES256 key, as
// in Caddyfile.example: ECDSA signing costs a fraction of RSA's.
func BenchmarkTokenThroughCaddyES256(b *testing.B) {
	upstream := benchUpstream(b)
	port := freePort(b)
	s := siteBlock(port, upstream.URL, fmt.Sprintf("credentials_exchange {\n\thook %s\n\tsigning_alg ES256\n\tupstream_jwks %s/.well-known/jwks.json\n}",
		hookPath(b, "e2e.js"), upstream.URL))
	startCaddy(b, globalOptions(b)+s)
	benchTokens(b, site{port: port}.url())
}

func benchUpstream(b *testing.B) *oauthserver.Server {
	upstream, err := oauthserver.Start(oauthserver.Options{Clients: []oauthserver.Client{{ID: "svc-billing", Secret: "billing-secret"}}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = upstream.Close() })
	return upstream
}

func benchTokens(b *testing.B, base string) {
	cc := clientcredentials.Config{ClientID: "svc-billing", ClientSecret: "billing-secret",
		TokenURL: base + "/oauth/token", Scopes: []string{"read:a"}}
	ctx := context.Background()
	if _, err := cc.Token(ctx); err != nil { // warm the JWKS cache and connections
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := cc.Token(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
