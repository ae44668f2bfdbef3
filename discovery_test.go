package credentialsexchange

import (
	"context"
	"fmt"
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

// TestJWKSRouteDoesNotRefresh: once a document has been read, routing a
// GET uses it even when it is stale, and leaves the refresh to the
// background: a refresh in the request held it up to the fetch time-outs
// whenever the upstream stopped answering.
func TestJWKSRouteDoesNotRefresh(t *testing.T) {
	var requests atomic.Int32
	var issuerURL string
	issuer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = fmt.Fprintf(w, `{"issuer":%q,"jwks_uri":%q}`, issuerURL, issuerURL+"/keys")
	}))
	t.Cleanup(issuer.Close)
	issuerURL = issuer.URL
	now := time.Now()
	d := &token.Discovery{Issuer: issuer.URL, TTL: time.Minute, Now: func() time.Time { return now }}
	if _, err := d.Get(context.Background()); err != nil {
		t.Fatal(err)
	}
	h := &Handler{UpstreamIssuer: issuer.URL, logger: zap.NewNop(), discovery: d}
	now = now.Add(time.Hour) // stale
	before := requests.Load()
	for _, path := range []string{"/", "/health", "/keys"} {
		r := httptest.NewRequest(http.MethodGet, path, nil)
		if p := h.jwksRoute(r); p != "/keys" {
			t.Fatalf("JWKS path %q, want the discovered /keys", p)
		}
	}
	if n := requests.Load() - before; n != 0 {
		t.Fatalf("routing GETs made %d requests to the issuer", n)
	}
}
