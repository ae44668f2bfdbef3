package credentialsexchange

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jwt"
)

// TestTwoInstancesShareGeneratedKeys starts two handler instances, each in
// its own Caddy context with its own config, at the same moment, sharing one
// storage folder: they must end with one key, serve the same JWKS, and
// verify each other's tokens.
func TestTwoInstancesShareGeneratedKeys(t *testing.T) {
	up := newTestUpstream(t)
	shared := t.TempDir()
	hook := writeScript(t, `module.exports=function(c,s,a,x,cb){cb(null,{scope:s})}`)
	instances := []*Handler{
		{Hook: hook, UpstreamKey: up.keyFile, SigningAlg: "ES256"},
		{Hook: hook, UpstreamKey: up.keyFile, SigningAlg: "ES256"},
	}
	contexts := []caddy.Context{storageContext(t, shared), storageContext(t, shared)}
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make([]error, len(instances))
	for i := range instances {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			<-start
			errs[i] = instances[i].Provision(contexts[i])
		}(i)
	}
	close(start)
	wg.Wait()
	for i, h := range instances {
		t.Cleanup(func() { _ = h.Cleanup() })
		if errs[i] != nil {
			t.Fatalf("instance %d: %v", i, errs[i])
		}
	}
	a, b := instances[0], instances[1]
	if a.keys.Signer().KeyID() != b.keys.Signer().KeyID() {
		t.Fatalf("instances sign with different keys: %s and %s", a.keys.Signer().KeyID(), b.keys.Signer().KeyID())
	}
	jwks := func(h *Handler) []byte {
		rec := serve(t, h, &scriptedUpstream{status: 404}, httptest.NewRequest(http.MethodGet, "/.well-known/jwks.json", nil))
		return rec.Body.Bytes()
	}
	if ja, jb := jwks(a), jwks(b); string(ja) != string(jb) {
		t.Fatalf("instances serve different JWKS:\n%s\n%s", ja, jb)
	}
	for _, pair := range [][2]*Handler{{a, b}, {b, a}} {
		rec := serve(t, pair[0], &scriptedUpstream{status: 200, body: tokenResponse(up.token(t, nil))}, formRequest(ccForm))
		var resp map[string]string
		_ = json.Unmarshal(rec.Body.Bytes(), &resp)
		set, err := jwk.Parse(jwks(pair[1]))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := jwt.Parse([]byte(resp["access_token"]), jwt.WithKeySet(set)); err != nil {
			t.Fatalf("a token signed by one instance does not verify with the other's JWKS: %v", err)
		}
	}
	// Private keys stay in storage: the JWKS has no private members.
	if strings.Contains(string(jwks(a)), `"d":`) {
		t.Fatal("the JWKS holds a private key")
	}
}
