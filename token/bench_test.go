package token

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
)

var benchClaims = []byte(`{"iss":"https://up.example/","sub":"svc","aud":"https://api.example.com","exp":4102444800,"iat":1700000000,"jti":"j","client_id":"svc","scope":"read:a write:a"}`)

func BenchmarkVerifyRS256(b *testing.B) {
	up := newUpstream(b, "k1")
	tok := up.sign(b, jwa.RS256, up.key, "k1", map[string]any{"sub": "svc", "exp": time.Now().Add(time.Hour).Unix(), "scope": "a b"})
	v := &Verifier{Keys: StaticKeys{up.pub}}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := v.Verify(context.Background(), tok); err != nil {
			b.Fatal(err)
		}
	}
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

func BenchmarkSignRS256(b *testing.B) {
	k, _ := jwk.FromRaw(mustRSA(b, 2048))
	benchSign(b, k)
}

func BenchmarkSignES256(b *testing.B) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	k, _ := jwk.FromRaw(ec)
	benchSign(b, k)
}
