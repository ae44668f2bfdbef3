package credentialsexchange

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// rewindBody is a request body a benchmark refills without allocating.
type rewindBody struct{ strings.Reader }

func (*rewindBody) Close() error { return nil }

// BenchmarkReadTokenRequest reads a client credentials token request the way
// serveToken does before forwarding it: readTokenRequest (body, classify)
// and forwardBody (for JSON, re-encoding it as a form). It has no crypto;
// read it as a share of BenchmarkExchangeBaseline/ES256 (the exchange's
// unavoidable verify + sign, exchange_bench_test.go).
func BenchmarkReadTokenRequest(b *testing.B) {
	for _, tc := range []struct{ name, contentType, body string }{
		{"Form", "application/x-www-form-urlencoded",
			"grant_type=client_credentials&client_id=svc&client_secret=s&audience=https%3A%2F%2Fapi.example.com&scope=read%3Aa+write%3Aa"},
		{"JSON", "application/json",
			`{"grant_type":"client_credentials","client_id":"svc","client_secret":"s","audience":"https://api.example.com","scope":"read:a write:a"}`},
	} {
		b.Run(tc.name, func(b *testing.B) {
			h := &Handler{JSONBody: "form", MaxBodySize: DefaultMaxBodySize}
			r := httptest.NewRequest(http.MethodPost, "/oauth/token", nil)
			r.Header.Set("Content-Type", tc.contentType)
			body := &rewindBody{}
			r.Body = body
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				body.Reset(tc.body)
				req, err := readTokenRequest(r, h.MaxBodySize)
				if err != nil || req.grant != grantClientCredentials {
					b.Fatalf("%v %v %s", err, req.grant, req.refusal)
				}
				if _, _, err := h.forwardBody(req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
