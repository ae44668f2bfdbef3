package credentialsexchange

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// TestClientIDOnceForHookAndLog: an exchange decides its client once, from
// the token (client_id, else azp), else from the request, and the hook and
// the exchange's log line name the same one, whether the hook issues or
// denies.
func TestClientIDOnceForHookAndLog(t *testing.T) {
	up := newTestUpstream(t)
	h := provision(t, &Handler{
		Hook: writeScript(t, `module.exports=function(c,s,a,x,cb){
			if (c.id === 'denied') return cb(new InvalidRequestError('no'));
			cb(null,{'https://t.example/client':c.id})}`),
		UpstreamKey: up.keyFile, SigningKey: writeSigningKey(t),
	})
	core, logs := observer.New(zapcore.InfoLevel)
	h.logger = zap.New(core)
	for _, tc := range []struct {
		name string
		set  func(map[string]any)
		want string
	}{
		{"client_id", func(c map[string]any) { c["client_id"] = "from-token" }, "from-token"},
		{"azp", func(c map[string]any) { delete(c, "client_id"); c["azp"] = "from-azp" }, "from-azp"},
		{"neither: the request's", func(c map[string]any) { delete(c, "client_id") }, "svc"},
		{"denied", func(c map[string]any) { c["client_id"] = "denied" }, "denied"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := serve(t, h, &scriptedUpstream{status: 200, body: tokenResponse(up.token(t, tc.set))}, formRequest(ccForm))
			if tc.want == "denied" {
				if rec.Code != http.StatusBadRequest {
					t.Fatalf("status %d, want the hook's denial: %s", rec.Code, rec.Body)
				}
			} else if got := string(issuedClaims(t, rec)["https://t.example/client"]); got != `"`+tc.want+`"` {
				t.Errorf("the hook saw client %s, want %q", got, tc.want)
			}
			var lines []observer.LoggedEntry
			for _, e := range logs.TakeAll() {
				if e.Message == "credentials exchange" {
					lines = append(lines, e)
				}
			}
			if len(lines) != 1 {
				t.Fatalf("%d exchange log lines, want 1", len(lines))
			}
			if got := lines[0].ContextMap()["client_id"]; got != tc.want {
				t.Errorf("the log line names client %v, want %q (the hook's)", got, tc.want)
			}
		})
	}
}

func TestUpstreamFailuresAre502(t *testing.T) {
	up := newTestUpstream(t)
	h := provisionScopeHook(t, up)
	otherKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	pubJWK, _ := jwk.FromRaw(otherKey.Public())
	pubBytes, _ := json.Marshal(pubJWK)

	cases := map[string]*scriptedUpstream{
		"not a JWT":       {status: 200, body: tokenResponse("opaque-token-value")},
		"bad signature":   {status: 200, body: tokenResponse(up.sign(t, jwa.RS256, otherKey, map[string]any{"exp": time.Now().Add(time.Hour).Unix()}))},
		"expired":         {status: 200, body: tokenResponse(up.token(t, func(c map[string]any) { c["exp"] = time.Now().Add(-time.Hour).Unix() }))},
		"no exp":          {status: 200, body: tokenResponse(up.token(t, func(c map[string]any) { delete(c, "exp") }))},
		"malformed JSON":  {status: 200, body: `{"access_token": "abc`},
		"no access_token": {status: 200, body: `{"token_type":"Bearer"}`},
		"not JSON":        {status: 200, header: http.Header{"Content-Type": {"text/plain"}}, body: "access_token=x"},
		"compressed":      {status: 200, header: http.Header{"Content-Encoding": {"gzip"}}, body: tokenResponse(up.token(t, nil))},
		"alg none":        {status: 200, body: tokenResponse(unsignedToken(t))},
		// A token the hook would not see beside the one it does, or on a
		// status the exchange replays.
		"a second token in another member": {status: 200, body: `{"access_token":"` + up.token(t, nil) + `","token":"` + up.token(t, nil) + `"}`},
		"a token in a header":              {status: 200, header: http.Header{"X-Token": {up.token(t, nil)}}, body: tokenResponse(up.token(t, nil))},
		"201 with a token elsewhere":       {status: 201, body: `{"token":"` + up.token(t, nil) + `"}`},
		"400 with a form token and a ;": {status: 400, header: http.Header{"Content-Type": {"application/x-www-form-urlencoded"}},
			body: "access_token=opaque&x=a;b"},
		// HS256 with the upstream's public key as the HMAC secret: key confusion.
		"hmac with public key": {status: 200, body: tokenResponse(up.sign(t, jwa.HS256, pubBytes, map[string]any{"exp": time.Now().Add(time.Hour).Unix()}))},
	}
	for name, next := range cases {
		t.Run(name, func(t *testing.T) {
			rec := serve(t, h, next, formRequest(ccForm))
			if rec.Code != http.StatusBadGateway {
				t.Fatalf("status = %d, body %s", rec.Code, rec.Body)
			}
			checkErrorResponse(t, rec, "server_error")
		})
	}
}

// TestPanicIsOneCountedServerError: a panic in the exchange (here the
// engine, gone) is a bug, but it still ends as it must: a 500 OAuth error
// without a token, and exactly one log line (with the Go stack) and one
// count, from serveToken's deferred finish.
func TestPanicIsOneCountedServerError(t *testing.T) {
	up := newTestUpstream(t)
	h := provisionScopeHook(t, up)
	h.engine = nil // Engine.Run panics on a nil engine
	core, logs := observer.New(zapcore.InfoLevel)
	h.logger = zap.New(core)
	counter := metrics().exchanges.WithLabelValues(outcomeError, codeServerError)
	count := func() float64 {
		var m dto.Metric
		if err := counter.Write(&m); err != nil {
			t.Fatal(err)
		}
		return m.GetCounter().GetValue()
	}
	before := count()

	rec := serve(t, h, &scriptedUpstream{status: 200, body: tokenResponse(up.token(t, nil))}, formRequest(ccForm))
	if rec.Code != http.StatusInternalServerError {
		t.Fatalf("status %d, want 500: %s", rec.Code, rec.Body)
	}
	checkErrorResponse(t, rec, codeServerError)
	if got := count() - before; got != 1 {
		t.Errorf("counted %v times, want once", got)
	}
	lines := logs.FilterMessage("credentials exchange").All()
	if len(lines) != 1 {
		t.Fatalf("%d exchange log lines, want 1", len(lines))
	}
	fields := lines[0].ContextMap()
	if fields["outcome"] != outcomeError || fields["stack"] == nil {
		t.Errorf("the log line is %v, want outcome error with the stack", fields)
	}
}

// TestNoRefreshTokenInAnyCase: the upstream's refresh token is dropped
// (a refresh would mint tokens the hook never saw), and so is its scope,
// whatever case the member is spelt in: a client reading the answer with
// encoding/json matches "Refresh_Token" and "SCOPE" as refresh_token and
// scope.
func TestNoRefreshTokenInAnyCase(t *testing.T) {
	up := newTestUpstream(t)
	h := provision(t, &Handler{
		Hook:       writeScript(t, `module.exports=function(c,s,a,x,cb){cb(null,{})}`),
		SigningKey: writeSigningKey(t), UpstreamKey: up.keyFile,
	})
	next := &scriptedUpstream{status: 200, body: `{"access_token":"` + up.token(t, nil) +
		`","token_type":"Bearer","Refresh_Token":"rt1","REFRESH_TOKEN":"rt2","SCOPE":"admin"}`}
	rec := serve(t, h, next, formRequest(ccForm))
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	var client struct {
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
		Scope        string `json:"scope"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &client); err != nil {
		t.Fatal(err)
	}
	if client.AccessToken == "" || client.RefreshToken != "" || client.Scope != "" {
		t.Errorf("a Go client reads %+v from %s", client, rec.Body)
	}
}
