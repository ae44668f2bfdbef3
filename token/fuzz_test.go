package token

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
)

// FuzzVerify decodes and verifies any string as an upstream access token,
// with and without keys. It must never panic, and with keys it must accept
// nothing that the upstream key did not sign, nothing that jws.Verify
// refuses, and refuse nothing that jws.Verify accepts unless strictRefusal
// says why.
func FuzzVerify(f *testing.F) {
	up := newUpstream(f, "k1")
	good := up.sign(f, jwa.RS256, up.key, "k1", map[string]any{"sub": "a", "exp": time.Now().Add(24 * time.Hour).Unix()})
	f.Add(good)
	f.Add(good + "\n")
	f.Add(good + "==")
	f.Add(strings.NewReplacer("-", "+", "_", "/").Replace(good))
	f.Add(noneToken())
	f.Add("a.b.c")
	f.Add("eyJhbGciOiJSUzI1NiIsImNyaXQiOlsieCJdfQ.e30.c2ln")
	f.Add("eyJhbGciOiJSUzI1NiJ9.eyJleHAiOjFlMTksIm5iZiI6MWUxOX0.c2ln")
	keyed := &Verifier{Keys: StaticKeys{up.pub}, Leeway: time.Minute}
	insecure := &Verifier{}
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, compact string) {
		agreeWithJWX(t, keyed, compact, up.pub)
		if tok, err := keyed.Verify(ctx, compact); err == nil && string(tok.Claims["sub"]) != `"a"` {
			// Only a token signed by the upstream key verifies, and the
			// fuzzer cannot forge a signature: another re-encoding of the
			// good token may pass, but never other claims.
			t.Fatalf("accepted %q as %+v", compact, tok)
		}
		if tok, err := insecure.Verify(ctx, compact); err == nil {
			if _, ok := tok.Expiry(); !ok {
				t.Fatalf("accepted a token without a readable exp: %q", compact)
			}
		}
	})
}
