package credentialsexchange_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyhook/caddyhook/internal/oauthserver"
)

// TestWarmRuntimesPerHandler drives a real Caddy with two sites running the
// same hook file: module state persists within each site's handler, is
// never shared between the two, and starts again after a config reload.
func TestWarmRuntimesPerHandler(t *testing.T) {
	upstream := startOAuthServer(t, oauthserver.Options{Clients: []oauthserver.Client{
		{ID: "svc-billing", Secret: "billing-secret"},
	}})
	hook := filepath.Join(t.TempDir(), "counter.js")
	if err := os.WriteFile(hook, []byte(`
let served = 0; // module state: once per runtime, as on Auth0
module.exports = function (client, scope, audience, context, cb) {
	served++;
	global.seen = (global.seen || 0) + 1;
	cb(null, { scope: scope, served: served, seen: global.seen });
};`), 0o600); err != nil {
		t.Fatal(err)
	}
	key := writeKey(t, "p256")
	a, b := freePort(t), freePort(t)
	config := func(extra string) string {
		return globalOptions(t) +
			siteBlock(a, upstream.URL, exchangeDirective(hook, key, upstream.URL, extra)) +
			siteBlock(b, upstream.URL, exchangeDirective(hook, key, upstream.URL, extra))
	}
	served := func(port int) (int, int) {
		t.Helper()
		base := site{port: port}.url()
		// A request racing the old servers' shutdown right after a reload
		// can meet a connection they close or reset; that is Caddy's
		// reload, not what is under test, so it is tried again.
		var resp *http.Response
		for try := 0; ; try++ {
			req, _ := http.NewRequest(http.MethodPost, base+"/oauth/token",
				strings.NewReader(url.Values{"grant_type": {"client_credentials"}}.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.SetBasicAuth("svc-billing", "billing-secret")
			var err error
			if resp, err = http.DefaultClient.Do(req); err == nil {
				break
			} else if try == 3 {
				t.Fatal(err)
			}
			http.DefaultClient.CloseIdleConnections()
			time.Sleep(50 * time.Millisecond)
		}
		defer resp.Body.Close()
		var body struct {
			AccessToken string `json:"access_token"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != 200 {
			t.Fatalf("status %d: %v", resp.StatusCode, err)
		}
		tok := verify(t, fetchJWKS(t, base), body.AccessToken)
		return int(claim(t, tok, "served").(float64)), int(claim(t, tok, "seen").(float64))
	}

	startCaddy(t, config(""))
	for want := 1; want <= 3; want++ {
		if n, g := served(a); n != want || g != want {
			t.Fatalf("site A exchange %d: module counter %d, global %d", want, n, g)
		}
	}
	if n, g := served(b); n != 1 || g != 1 {
		t.Fatalf("site B saw site A's runtime: module counter %d, global %d", n, g)
	}

	// A reload builds new handlers, with runtimes of their own.
	startCaddy(t, config("timeout 4s"))
	// The old servers closed the client's kept-alive connections.
	http.DefaultClient.CloseIdleConnections()
	if n, g := served(a); n != 1 || g != 1 {
		t.Fatalf("after a reload, module counter %d, global %d: the old config's runtime served", n, g)
	}
}
