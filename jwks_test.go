package credentialsexchange

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/lestrrat-go/jwx/v2/jwk"
)

func TestJWKSWithoutUpstreamKeys(t *testing.T) {
	up := newTestUpstream(t)
	h := provision(t, &Handler{Hook: writeScript(t, `module.exports=function(c,s,a,x,cb){cb(null,{})}`),
		SigningKey: writeSigningKey(t), UpstreamKey: up.keyFile})
	for name, next := range map[string]*scriptedUpstream{
		"404":      {status: 404, body: "not found"},
		"not JSON": {status: 200, header: http.Header{"Content-Type": {"text/html"}}, body: "<html>"},
		"no keys":  {status: 200, body: `{"issuer":"x"}`},
	} {
		rec := serve(t, h, next, httptest.NewRequest(http.MethodGet, "/.well-known/jwks.json", nil))
		set, err := jwk.Parse(rec.Body.Bytes())
		if rec.Code != 200 || err != nil || set.Len() != 1 {
			t.Fatalf("%s: %d %s", name, rec.Code, rec.Body)
		}
		if k, _ := set.Key(0); k.KeyID() != h.keys.Signer().KeyID() {
			t.Fatalf("%s: served key %q", name, k.KeyID())
		}
		if !strings.Contains(rec.Header().Get("Cache-Control"), "max-age=") {
			t.Errorf("%s: Cache-Control = %q", name, rec.Header().Get("Cache-Control"))
		}
	}
}
