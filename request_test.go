package credentialsexchange

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/lestrrat-go/jwx/v2/jws"
)

// multipartBody encodes name/value pairs as multipart/form-data and returns
// the body and its Content-Type. The external tests use it as
// MultipartBody (export_test.go).
func multipartBody(fields ...string) (string, string) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for i := 0; i+1 < len(fields); i += 2 {
		_ = mw.WriteField(fields[i], fields[i+1])
	}
	_ = mw.Close()
	return buf.String(), mw.FormDataContentType()
}

// TestClassify pins how the handler reads a request to the token path. The
// rule: client credentials written exactly once, in a form or JSON body of a
// POST, is hooked; unambiguously another grant passes; everything a server
// could read either way is refused.
func TestClassify(t *testing.T) {
	const form = "application/x-www-form-urlencoded"
	mpBody, mpType := multipartBody("grant_type", "client_credentials", "client_id", "svc")
	mpOther, mpOtherType := multipartBody("grant_type", "password")
	mpTwice, mpTwiceType := multipartBody("grant_type", "password", "grant_type", "client_credentials")
	mpB64 := "--XX\r\nContent-Disposition: form-data; name=\"grant_type\"\r\nContent-Transfer-Encoding: base64\r\n\r\nY2xpZW50X2NyZWRlbnRpYWxz\r\n--XX--\r\n"
	basic := func(user string) http.Header {
		return http.Header{"Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte(user+":s"))}}
	}
	cases := []struct {
		name, method, target, ctype, body string
		header                            http.Header
		want                              grantDecision
	}{
		{"form", "POST", "/oauth/token", form, "grant_type=client_credentials&client_id=a", nil, grantClientCredentials},
		{"form with charset", "POST", "/oauth/token", form + "; charset=utf-8", "grant_type=client_credentials", nil, grantClientCredentials},
		{"form type in capitals", "POST", "/oauth/token", "APPLICATION/X-WWW-FORM-URLENCODED", "grant_type=client_credentials", nil, grantClientCredentials},
		{"encoded key", "POST", "/oauth/token", form, "grant%5Ftype=client_credentials", nil, grantClientCredentials},
		{"encoded value", "POST", "/oauth/token", form, "grant_type=client%5Fcredentials", nil, grantClientCredentials},
		{"JSON", "POST", "/oauth/token", "application/json", `{"grant_type":"client_credentials","n":1e999999}`, nil, grantClientCredentials},
		{"JSON escaped key", "POST", "/oauth/token", "application/json", `{"grant\u005ftype":"client_credentials"}`, nil, grantClientCredentials},
		{"other grant", "POST", "/oauth/token", form, "grant_type=password&username=u", nil, grantOther},
		{"other grant as JSON", "POST", "/oauth/token", "application/json", `{"grant_type":"refresh_token"}`, nil, grantOther},
		{"other grant as multipart", "POST", "/oauth/token", mpOtherType, mpOther, nil, grantOther},
		{"GET without grant", "GET", "/oauth/token?x=1", "", "", nil, grantOther},
		{"other grant in the query", "POST", "/oauth/token?grant_type=password", "", "", nil, grantOther},

		{"bad escape", "POST", "/oauth/token", form, "grant_type=client_credentials&x=%zz", nil, grantRefused},
		{"semicolon", "POST", "/oauth/token", form, "grant_type=client_credentials;x=1", nil, grantRefused},
		{"semicolon later", "POST", "/oauth/token", form, "grant_type=client_credentials&a=b;c", nil, grantRefused},
		{"query only", "POST", "/oauth/token?grant_type=client_credentials", "", "", nil, grantRefused},
		{"query and body", "POST", "/oauth/token?grant_type=client_credentials", form, "grant_type=client_credentials", nil, grantRefused},
		{"query other, body cc", "POST", "/oauth/token?grant_type=password", form, "grant_type=client_credentials", nil, grantRefused},
		{"credentials in the query", "POST", "/oauth/token?client_secret=s", form, "grant_type=client_credentials", nil, grantRefused},
		{"bad query", "POST", "/oauth/token?a=%zz", form, "grant_type=client_credentials", nil, grantRefused},
		{"multipart", "POST", "/oauth/token", mpType, mpBody, nil, grantRefused},
		{"multipart twice", "POST", "/oauth/token", mpTwiceType, mpTwice, nil, grantRefused},
		{"multipart without boundary", "POST", "/oauth/token", "multipart/form-data", mpBody, nil, grantRefused},
		{"repeated", "POST", "/oauth/token", form, "grant_type=client_credentials&grant_type=client_credentials", nil, grantRefused},
		{"repeated differently", "POST", "/oauth/token", form, "grant_type=password&grant_type=client_credentials", nil, grantRefused},
		{"case variant name", "POST", "/oauth/token", form, "GRANT_TYPE=client_credentials", nil, grantRefused},
		{"case variant beside", "POST", "/oauth/token", form, "grant_type=password&Grant_Type=client_credentials", nil, grantRefused},
		{"array name", "POST", "/oauth/token", form, "grant_type[]=client_credentials", nil, grantRefused},
		{"dotted name", "POST", "/oauth/token", form, "grant.type=client_credentials", nil, grantRefused},
		{"case variant value", "POST", "/oauth/token", form, "grant_type=Client_Credentials", nil, grantRefused},
		{"padded value", "POST", "/oauth/token", form, "grant_type=+client_credentials", nil, grantRefused},
		{"NUL in value", "POST", "/oauth/token", form, "grant_type=client_credentials%00", nil, grantRefused},
		{"long s", "POST", "/oauth/token", form, "grant_type=client_credential%C5%BF", nil, grantRefused},
		{"control char in other grant", "POST", "/oauth/token", form, "grant_type=password%0a", nil, grantRefused},
		{"JSON duplicate", "POST", "/oauth/token", "application/json", `{"grant_type":"password","grant_type":"client_credentials"}`, nil, grantRefused},
		{"JSON duplicate other member", "POST", "/oauth/token", "application/json", `{"grant_type":"password","scope":"a","scope":"b"}`, nil, grantRefused},
		{"JSON name in capitals", "POST", "/oauth/token", "application/json", `{"GRANT_TYPE":"client_credentials"}`, nil, grantRefused},
		{"JSON grant array", "POST", "/oauth/token", "application/json", `{"grant_type":["client_credentials"]}`, nil, grantRefused},
		{"JSON grant null", "POST", "/oauth/token", "application/json", `{"grant_type":null}`, nil, grantRefused},
		{"JSON trailing data", "POST", "/oauth/token", "application/json", `{"grant_type":"password"}{"grant_type":"client_credentials"}`, nil, grantRefused},
		{"JSON array", "POST", "/oauth/token", "application/json", `[{"grant_type":"client_credentials"}]`, nil, grantRefused},
		{"JSON with BOM", "POST", "/oauth/token", "application/json", "\ufeff{\"grant_type\":\"client_credentials\"}", nil, grantRefused},
		{"no content type", "POST", "/oauth/token", "", "grant_type=client_credentials", nil, grantRefused},
		{"text/plain", "POST", "/oauth/token", "text/plain", "grant_type=client_credentials", nil, grantRefused},
		{"bad content type", "POST", "/oauth/token", "application/x-www-form-urlencoded; ;;", "grant_type=password", nil, grantRefused},
		{"gzip", "POST", "/oauth/token", form, "grant_type=password", http.Header{"Content-Encoding": {"gzip"}}, grantRefused},
		{"GET with cc", "GET", "/oauth/token?grant_type=client_credentials", "", "", nil, grantRefused},
		{"PUT with cc", "PUT", "/oauth/token", form, "grant_type=client_credentials", nil, grantRefused},
		{"POST without grant", "POST", "/oauth/token", form, "client_id=a", nil, grantRefused},
		{"POST empty", "POST", "/oauth/token", "", "", nil, grantRefused},
		// Found by review: what PHP, Django, servlet containers and ASP.NET
		// read as grant_type or client credentials.
		{"PHP NUL-cut name", "POST", "/oauth/token", form, "grant_type=password&grant_type%00x=client_credentials", nil, grantRefused},
		{"PHP unterminated bracket", "POST", "/oauth/token", form, "grant_type=password&grant[type=client_credentials", nil, grantRefused},
		{"ASP.NET model prefix", "POST", "/oauth/token", form, "grant_type=password&request.grant_type=client_credentials", nil, grantRefused},
		{"utf-7 body", "POST", "/oauth/token", form + "; charset=utf-7", "grant_type=password&grant+AF8-type=client+AF8-credentials", nil, grantRefused},
		{"EBCDIC body", "POST", "/oauth/token", form + "; charset=IBM037", "grant_type=password", nil, grantRefused},
		{"two content types", "POST", "/oauth/token", "", `{"grant_type":"password"}`, http.Header{"Content-Type": {"application/json", form}}, grantRefused},
		{"base64 multipart part", "POST", "/oauth/token", "multipart/form-data; boundary=XX", mpB64, nil, grantRefused},
		{"dotless i", "POST", "/oauth/token", form, "grant_type=cl%C4%B1ent_credent%C4%B1als", nil, grantRefused},
		{"URN grant passes", "POST", "/oauth/token", form, "grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer", nil, grantOther},
		{"Basic and client_secret", "POST", "/oauth/token", form, "grant_type=client_credentials&client_id=attacker&client_secret=a", basic("svc"), grantRefused},
		{"Basic and another client_id", "POST", "/oauth/token", form, "grant_type=client_credentials&client_id=attacker", basic("svc"), grantRefused},
		{"Basic and the same client_id", "POST", "/oauth/token", form, "grant_type=client_credentials&client_id=svc", basic("svc"), grantClientCredentials},
		{"secret and assertion", "POST", "/oauth/token", form, "grant_type=client_credentials&client_secret=a&client_assertion=b.c.d", nil, grantRefused},
		{"client_id twice", "POST", "/oauth/token", form, "grant_type=client_credentials&client_id=a&client_id=b", nil, grantRefused},
		{"two Authorization headers", "POST", "/oauth/token", form, "grant_type=client_credentials", http.Header{"Authorization": {"Basic c3ZjOnM=", "Basic YXR0YWNrZXI6YQ=="}}, grantRefused},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest(c.method, c.target, strings.NewReader(c.body))
			if c.ctype != "" {
				r.Header.Set("Content-Type", c.ctype)
			}
			for k, v := range c.header {
				r.Header[k] = append(r.Header[k], v...)
			}
			req, err := readTokenRequest(r, 1<<16)
			if err != nil {
				t.Fatal(err)
			}
			if req.grant != c.want {
				t.Fatalf("decision = %d (%s), want %d", req.grant, req.refusal, c.want)
			}
			if (req.grant == grantRefused) != (req.refusal != "") {
				t.Errorf("refusal reason %q for decision %d", req.refusal, req.grant)
			}
		})
	}
}

// TestRoutePath pins which spellings reach the token endpoint. Paths that
// merely hold it are tested through the handler, in guard_test.go.
func TestRoutePath(t *testing.T) {
	token := routePath("/oauth/token")
	for _, p := range []string{"/oauth/token", "/OAUTH/TOKEN", "/oauth/Token", "/oauth/token/", "/oauth/token//",
		"//oauth/token", "/oauth/./token", "/x/../oauth/token", "oauth/token",
		"/oauth/token.json", "/oauth/token;jsessionid=1", "/oauth;x/token", "/oauth\\token", "/oauth/token.",
		"/oauth/token ", "/oauth/token;a/"} {
		if routePath(p) != token {
			t.Errorf("%q should reach the token endpoint", p)
		}
	}
	for _, p := range []string{"/oauth/tokens", "/oauth", "/oauth/token/x", "/.well-known/jwks.json", "/", "/api/oauth/token"} {
		if routePath(p) == token {
			t.Errorf("%q is not the token endpoint", p)
		}
	}
}

func TestRequestHandling(t *testing.T) {
	up := newTestUpstream(t)
	echo := writeScript(t, `module.exports=function(client,scope,audience,context,cb){
		cb(null,{scope:scope,'https://t.example/in':{id:client.id,audience:audience,body:context.body}})
	}`)
	newHandler := func(mod func(*Handler)) *Handler {
		h := &Handler{Hook: echo, SigningKey: writeSigningKey(t), UpstreamKey: up.keyFile, ClaimsPolicy: "namespaced"}
		if mod != nil {
			mod(h)
		}
		return provision(t, h)
	}
	hookSaw := func(t *testing.T, rec *httptest.ResponseRecorder) map[string]any {
		t.Helper()
		if rec.Code != 200 {
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
		var resp map[string]any
		_ = json.Unmarshal(rec.Body.Bytes(), &resp)
		msg, err := jws.Parse([]byte(resp["access_token"].(string)))
		if err != nil {
			t.Fatal(err)
		}
		var claims map[string]any
		_ = json.Unmarshal(msg.Payload(), &claims)
		return claims["https://t.example/in"].(map[string]any)
	}

	t.Run("JSON is re-encoded as a form, audience renamed", func(t *testing.T) {
		h := newHandler(func(h *Handler) { h.AudienceParam = "resource" })
		next := &scriptedUpstream{status: 200, body: tokenResponse(up.token(t, nil))}
		r := httptest.NewRequest(http.MethodPost, "/oauth/token", strings.NewReader(
			`{"grant_type":"client_credentials","client_id":"svc","client_secret":"s","audience":"https://api.example.com"}`))
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("Accept-Encoding", "gzip")
		in := hookSaw(t, serve(t, h, next, r))
		form, err := url.ParseQuery(next.gotBody)
		if err != nil || next.gotType != "application/x-www-form-urlencoded" {
			t.Fatalf("upstream got %q %q", next.gotType, next.gotBody)
		}
		if form.Get("resource") != "https://api.example.com" || form.Has("audience") || form.Get("client_secret") != "s" {
			t.Fatalf("upstream form = %v", form)
		}
		if next.gotAE != "identity" {
			t.Errorf("upstream was asked for %q, want identity", next.gotAE)
		}
		if in["audience"] != "https://api.example.com" {
			t.Errorf("hook audience = %v", in["audience"])
		}
		body := in["body"].(map[string]any)
		if body["audience"] != "https://api.example.com" || body["client_secret"] != nil {
			t.Errorf("hook body = %v", body)
		}
	})

	t.Run("json_body keep forwards JSON", func(t *testing.T) {
		h := newHandler(func(h *Handler) { h.JSONBody = "keep" })
		next := &scriptedUpstream{status: 200, body: tokenResponse(up.token(t, nil))}
		raw := `{"grant_type":"client_credentials","client_id":"svc","client_secret":"s"}`
		r := httptest.NewRequest(http.MethodPost, "/oauth/token", strings.NewReader(raw))
		r.Header.Set("Content-Type", "application/json")
		hookSaw(t, serve(t, h, next, r))
		if next.gotBody != raw || next.gotType != "application/json" {
			t.Fatalf("upstream got %q %q", next.gotType, next.gotBody)
		}
	})

	t.Run("client id from the request when the token has none", func(t *testing.T) {
		h := newHandler(nil)
		noClient := func(c map[string]any) { delete(c, "client_id") }
		cases := map[string]func() *http.Request{
			"basic auth, form-decoded": func() *http.Request {
				r := formRequest(url.Values{"grant_type": {"client_credentials"}})
				r.SetBasicAuth(url.QueryEscape("svc:with/odd chars"), "s")
				return r
			},
			"client_id parameter": func() *http.Request {
				return formRequest(url.Values{"grant_type": {"client_credentials"}, "client_id": {"svc:with/odd chars"}})
			},
			"client_assertion sub": func() *http.Request {
				assertion := base64URL([]byte(`{"alg":"RS256"}`)) + "." + base64URL([]byte(`{"sub":"svc:with/odd chars"}`)) + ".sig"
				return formRequest(url.Values{"grant_type": {"client_credentials"}, "client_assertion": {assertion},
					"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}})
			},
		}
		for name, req := range cases {
			next := &scriptedUpstream{status: 200, body: tokenResponse(up.token(t, noClient))}
			in := hookSaw(t, serve(t, h, next, req()))
			if in["id"] != "svc:with/odd chars" {
				t.Errorf("%s: client.id = %v", name, in["id"])
			}
			if body := in["body"].(map[string]any); body["client_assertion"] != nil {
				t.Errorf("%s: client_assertion reached the hook", name)
			}
		}
	})

	t.Run("audience prefers the requested one when the token has it", func(t *testing.T) {
		h := newHandler(nil)
		multi := func(c map[string]any) { c["aud"] = []string{"https://a.example", "https://b.example"} }
		next := &scriptedUpstream{status: 200, body: tokenResponse(up.token(t, multi))}
		form := url.Values{"grant_type": {"client_credentials"}, "client_id": {"svc"}, "resource": {"https://b.example"}}
		if in := hookSaw(t, serve(t, h, next, formRequest(form))); in["audience"] != "https://b.example" {
			t.Errorf("audience = %v", in["audience"])
		}
		next = &scriptedUpstream{status: 200, body: tokenResponse(up.token(t, multi))}
		form.Set("resource", "https://not-granted.example")
		if in := hookSaw(t, serve(t, h, next, formRequest(form))); in["audience"] != "https://a.example" {
			t.Errorf("audience = %v", in["audience"])
		}
	})

	t.Run("response keeps other fields and scope becomes the final scope", func(t *testing.T) {
		h := provision(t, &Handler{
			Hook:       writeScript(t, `module.exports=function(c,s,a,x,cb){cb(null,{'https://t.example/x':1})}`),
			SigningKey: writeSigningKey(t), UpstreamKey: up.keyFile,
		})
		next := &scriptedUpstream{status: 200, header: http.Header{"X-Upstream": {"1"}},
			body: `{"access_token":"` + up.token(t, nil) + `","token_type":"Bearer","expires_in":3600,"scope":"read:a","issued_token_type":"x","refresh_token":"rt"}`}
		rec := serve(t, h, next, formRequest(ccForm))
		var resp map[string]any
		_ = json.Unmarshal(rec.Body.Bytes(), &resp)
		if _, has := resp["scope"]; has {
			t.Errorf("response scope = %v, want absent", resp["scope"])
		}
		if resp["token_type"] != "Bearer" || resp["expires_in"] != float64(3600) || resp["issued_token_type"] != "x" {
			t.Errorf("response lost fields: %v", resp)
		}
		if _, has := resp["refresh_token"]; has {
			t.Error("a refresh token would let the client mint tokens the hook never saw")
		}
		if rec.Header().Get("X-Upstream") != "1" || rec.Header().Get("Cache-Control") != "no-store" {
			t.Errorf("headers = %v", rec.Header())
		}
		msg, _ := jws.Parse([]byte(resp["access_token"].(string)))
		hdr := msg.Signatures()[0].ProtectedHeaders()
		if hdr.Type() != "at+jwt" || hdr.KeyID() != h.keys.Signer().KeyID() {
			t.Errorf("header typ=%q kid=%q", hdr.Type(), hdr.KeyID())
		}
		var claims map[string]any
		_ = json.Unmarshal(msg.Payload(), &claims)
		if _, has := claims["scope"]; has || claims["jti"] != "j1" || claims["iss"] != "https://up.example/" {
			t.Errorf("claims = %v", claims)
		}
	})

	t.Run("unparseable body is refused, not forwarded", func(t *testing.T) {
		h := newHandler(nil)
		next := &scriptedUpstream{status: 200, body: tokenResponse(up.token(t, nil))}
		r := httptest.NewRequest(http.MethodPost, "/oauth/token", strings.NewReader(`{"grant_type":`))
		r.Header.Set("Content-Type", "application/json")
		rec := serve(t, h, next, r)
		if rec.Code != 400 || next.gotType != "" {
			t.Fatalf("got %d, upstream saw %q", rec.Code, next.gotBody)
		}
		checkErrorResponse(t, rec, "invalid_request")
	})
}
