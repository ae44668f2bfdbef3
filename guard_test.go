package credentialsexchange

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func testJWT(claims map[string]any) string {
	enc := func(v any) string {
		b, _ := json.Marshal(v)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	return enc(map[string]any{"alg": "RS256"}) + "." + enc(claims) + ".c2ln"
}

// TestResponseGuard pins which passed-through answers are blocked: every
// token shape a client credentials grant issues, wherever it sits in the
// answer, and none of the tokens other grants issue.
func TestResponseGuard(t *testing.T) {
	cc := map[string]map[string]any{
		"Auth0 gty":                  {"sub": "svc@clients", "gty": "client-credentials"},
		"go-oauth2/Hydra sub=client": {"sub": "svc", "client_id": "svc"},
		"Okta cid":                   {"sub": "svc", "cid": "svc"},
		"client, no subject":         {"azp": "svc"},
		"Spring sub=aud":             {"sub": "svc", "aud": []string{"svc"}},
		"league 8 empty sub":         {"aud": "svc", "sub": "", "scopes": []string{}},
		"league 9 sub=aud":           {"aud": "svc", "sub": "svc"},
		"Entra app":                  {"sub": "0000", "idtyp": "app", "aud": "api"},
		"Keycloak service account":   {"sub": "5e1b", "azp": "svc", "preferred_username": "service-account-svc"},
	}
	other := map[string]map[string]any{
		"a user's token":           {"sub": "user-1", "client_id": "svc", "aud": "api"},
		"a user's token, Keycloak": {"sub": "5e1b", "azp": "svc", "preferred_username": "alice"},
	}
	wrap := map[string]func(tok string) (string, string){
		"JSON":            func(tok string) (string, string) { return fmt.Sprintf(`{"access_token":%q}`, tok), "" },
		"JSON with a BOM": func(tok string) (string, string) { return "\ufeff" + fmt.Sprintf(`{"access_token":%q}`, tok), "" },
		"escaped JSON": func(tok string) (string, string) {
			return `{"access_token":"\u0065` + tok[1:] + `"}`, ""
		},
		"nested, other name": func(tok string) (string, string) { return fmt.Sprintf(`{"data":{"accessToken":%q}}`, tok), "" },
		"JSON array":         func(tok string) (string, string) { return fmt.Sprintf(`[{"access_token":%q}]`, tok), "" },
		"JSONP":              func(tok string) (string, string) { return fmt.Sprintf(`cb({"access_token":%q})`, tok), "" },
		"XML": func(tok string) (string, string) {
			return "<OAuth2><access_token>" + tok + "</access_token></OAuth2>", ""
		},
		"form with a ;": func(tok string) (string, string) { return "access_token=" + tok + "&x=a;b&y=%zz", "" },
		"form, percent-encoded": func(tok string) (string, string) {
			return "access_token=%65" + tok[1:], ""
		},
		"a header": func(tok string) (string, string) { return `{"ok":true}`, tok },
	}
	check := func(t *testing.T, claims map[string]any, wantBlocked bool) {
		tok := testJWT(claims)
		for wname, w := range wrap {
			body, header := w(tok)
			c := newCapture(1 << 20)
			if header != "" {
				c.header.Set("Set-Cookie", "at="+header)
			}
			_, _ = c.Write([]byte(body))
			if why := c.unhookedToken(); (why != "") != wantBlocked {
				t.Errorf("%s: blocked = %q, want blocked %v", wname, why, wantBlocked)
			}
		}
	}
	for name, claims := range cc {
		t.Run(name, func(t *testing.T) { check(t, claims, true) })
	}
	for name, claims := range other {
		t.Run(name, func(t *testing.T) { check(t, claims, false) })
	}

	// Repeats are checked once: a client credentials token after many
	// copies of a user's token is still found.
	user := testJWT(map[string]any{"sub": "user-1", "client_id": "svc"})
	hidden := strings.Repeat(user+" ", 2*maxCheckedTokens) + testJWT(map[string]any{"sub": "svc", "client_id": "svc"})
	c := newCapture(1 << 20)
	_, _ = c.Write([]byte(hidden))
	if c.unhookedToken() == "" {
		t.Error("a client credentials token behind repeated user tokens was not found")
	}

	for name, body := range map[string]string{
		"opaque token":  `{"access_token":"2YotnFZFEjr1zCsicMWpAA"}`,
		"no token":      `{"error":"invalid_grant"}`,
		"not JSON text": "<html>hello</html>",
	} {
		c := newCapture(1 << 20)
		_, _ = c.Write([]byte(body))
		if why := c.unhookedToken(); why != "" {
			t.Errorf("%s: blocked: %s", name, why)
		}
	}
	for name, body := range map[string]string{
		"access_token a number": `{"access_token":1}`,
		"too many tokens":       manyTokens(maxCheckedTokens + 1),
	} {
		c := newCapture(1 << 20)
		_, _ = c.Write([]byte(body))
		if why := c.unhookedToken(); why == "" {
			t.Errorf("%s: not blocked", name)
		}
	}
}

// TestGuardOnPathsHoldingTheTokenPath checks that a POST to a path that
// holds the token path, which some server may route to its token endpoint,
// has its answer checked, and that other requests there are left alone.
func TestGuardOnPathsHoldingTheTokenPath(t *testing.T) {
	up := newTestUpstream(t)
	h := provisionScopeHook(t, up)
	ccAnswer := tokenResponse(testJWT(map[string]any{"sub": "svc", "client_id": "svc"}))
	post := httptest.NewRequest(http.MethodPost, "/api/oauth/token", strings.NewReader("anything"))
	if rec := serve(t, h, &scriptedUpstream{status: 200, body: ccAnswer}, post); rec.Code != http.StatusBadGateway {
		t.Errorf("POST /api/oauth/token: %d %s, want the token blocked", rec.Code, rec.Body)
	}
	big := strings.Repeat("x", 2<<20)
	get := httptest.NewRequest(http.MethodGet, "/api/oauth/token/export", nil)
	if rec := serve(t, h, &scriptedUpstream{status: 200, body: big}, get); rec.Code != 200 || rec.Body.Len() != len(big) {
		t.Errorf("GET under the token path: %d, %d bytes", rec.Code, rec.Body.Len())
	}
	user := tokenResponse(testJWT(map[string]any{"sub": "user-1", "client_id": "svc"}))
	post = httptest.NewRequest(http.MethodPost, "/api/oauth/token", strings.NewReader("anything"))
	if rec := serve(t, h, &scriptedUpstream{status: 200, body: user}, post); rec.Code != 200 {
		t.Errorf("a user's token under the token path: %d %s", rec.Code, rec.Body)
	}
}

func manyTokens(n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "eyJ.a%d.b ", i)
	}
	return b.String()
}
