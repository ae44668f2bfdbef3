package credentialsexchange

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/caddyhook/caddyhook/token"
)

// TestJWKSRouteDoesNotFetch: routing a GET before discovery has succeeded
// does not fetch the document in the request. Every GET and HEAD on the
// site is routed, and with an upstream that does not answer such a fetch
// held unrelated requests up to its time-outs; the start-up goroutine does
// the fetching.
func TestJWKSRouteDoesNotFetch(t *testing.T) {
	var requests atomic.Int32
	issuer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		http.Error(w, "down", http.StatusServiceUnavailable)
	}))
	t.Cleanup(issuer.Close)
	h := &Handler{
		UpstreamIssuer: issuer.URL,
		logger:         zap.NewNop(),
		discovery:      &token.Discovery{Issuer: issuer.URL, TTL: time.Minute},
	}
	for _, path := range []string{"/", "/health", "/keys"} {
		r := httptest.NewRequest(http.MethodGet, path, nil)
		if p := h.jwksRoute(r); p != "" {
			t.Fatalf("JWKS path %q before discovery", p)
		}
	}
	if n := requests.Load(); n != 0 {
		t.Fatalf("routing GETs made %d requests to the issuer", n)
	}
}
