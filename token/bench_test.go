package token

// Benchmarks of the token package's hot steps, and beside them the bare
// crypto each is read against (BenchmarkCryptoBaseline: the standard
// library's hash and signature primitives alone, no JOSE layer). One run
// gives both sides of every ratio:
//
//	go test -run '^$' -bench . -benchmem ./token
//
// Verify*  / CryptoBaseline/VerifyRS256: what parsing, key lookup and claims
// decoding add to an RSA verification; Sign<alg> / CryptoBaseline/Sign<alg>:
// what header building and encoding add to a signature.

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
)

var benchClaims = []byte(`{"iss":"https://up.example/","sub":"svc","aud":"https://api.example.com","exp":4102444800,"iat":1700000000,"jti":"j","client_id":"svc","scope":"read:a write:a"}`)

// benchToken is an upstream RS256 access token, as the exchange receives it.
func benchToken(b *testing.B, up *upstream) string {
	return up.sign(b, jwa.RS256, up.key, "k1", map[string]any{"iss": "https://up.example/", "sub": "svc",
		"aud": "https://api.example.com", "exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Unix(),
		"jti": "j", "client_id": "svc", "scope": "read:a write:a"})
}

func benchVerify(b *testing.B, v *Verifier, tok string) {
	ctx := context.Background()
	if _, err := v.Verify(ctx, tok); err != nil { // warms a JWKS cache
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := v.Verify(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyRS256 is Verifier.Verify of an RS256 upstream token against
// a static key, built by NewStaticKeys as upstream_key is: parse, signature,
// claims, exp/nbf. Read it against BenchmarkCryptoBaseline/VerifyRS256.
func BenchmarkVerifyRS256(b *testing.B) {
	up := newUpstream(b, "k1")
	keys, err := NewStaticKeys([]jwk.Key{up.pub})
	if err != nil {
		b.Fatal(err)
	}
	benchVerify(b, &Verifier{Keys: keys, Leeway: 30 * time.Second}, benchToken(b, up))
}

// BenchmarkVerifyRS256JWKS is the same against a RemoteJWKS (upstream_jwks)
// whose set is cached, as on every exchange but the first: the cache lookup
// is all it adds to BenchmarkVerifyRS256. Baseline:
// BenchmarkCryptoBaseline/VerifyRS256.
func BenchmarkVerifyRS256JWKS(b *testing.B) {
	up := newUpstream(b, "k1")
	set := jwk.NewSet()
	_ = set.AddKey(up.pub)
	doc, _ := json.Marshal(set)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(doc)
	}))
	b.Cleanup(srv.Close)
	remote := &RemoteJWKS{URL: srv.URL, Client: srv.Client(), TTL: time.Hour, MinRefresh: 10 * time.Second, RetryAfter: time.Second}
	benchVerify(b, &Verifier{Keys: remote, Leeway: 30 * time.Second}, benchToken(b, up))
}

func benchSign(b *testing.B, key jwk.Key) {
	s, err := NewSigner(key, "")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := s.Sign("at+jwt", benchClaims); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSignRS256 is Signer.Sign with an RSA-2048 key: header, encoding,
// signature. Baseline: BenchmarkCryptoBaseline/SignRS256.
func BenchmarkSignRS256(b *testing.B) {
	k, _ := jwk.FromRaw(mustRSA(b, 2048))
	benchSign(b, k)
}

// BenchmarkSignES256 is Signer.Sign with a P-256 key. Baseline:
// BenchmarkCryptoBaseline/SignES256.
func BenchmarkSignES256(b *testing.B) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	k, _ := jwk.FromRaw(ec)
	benchSign(b, k)
}

// BenchmarkSignEdDSA is Signer.Sign with an Ed25519 key. Baseline:
// BenchmarkCryptoBaseline/SignEdDSA.
func BenchmarkSignEdDSA(b *testing.B) {
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	k, _ := jwk.FromRaw(ed)
	benchSign(b, k)
}

// BenchmarkCryptoBaseline is the crypto no implementation can avoid, with
// the standard library alone: SHA-256 and the signature primitive over a
// JWS signing input of the size the benchmarks above handle (for VerifyRS256
// also decoding the signature). It is the denominator of every ratio in this
// file.
func BenchmarkCryptoBaseline(b *testing.B) {
	up := newUpstream(b, "k1")
	tok := benchToken(b, up)
	dot := strings.LastIndexByte(tok, '.')
	input := []byte(tok[:dot])
	var rsaPub *rsa.PublicKey
	if err := up.pub.Raw(&rsaPub); err != nil {
		b.Fatal(err)
	}
	b.Run("VerifyRS256", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			sig, err := base64.RawURLEncoding.DecodeString(tok[dot+1:])
			if err != nil {
				b.Fatal(err)
			}
			digest := sha256.Sum256(input)
			if err := rsa.VerifyPKCS1v15(rsaPub, crypto.SHA256, digest[:], sig); err != nil {
				b.Fatal(err)
			}
		}
	})
	rsaKey := mustRSA(b, 2048)
	b.Run("SignRS256", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			digest := sha256.Sum256(input)
			if _, err := rsa.SignPKCS1v15(nil, rsaKey, crypto.SHA256, digest[:]); err != nil {
				b.Fatal(err)
			}
		}
	})
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	b.Run("SignES256", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			digest := sha256.Sum256(input)
			if _, err := ecdsa.SignASN1(rand.Reader, ecKey, digest[:]); err != nil {
				b.Fatal(err)
			}
		}
	})
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	b.Run("SignEdDSA", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			_ = ed25519.Sign(edKey, input)
		}
	})
}
