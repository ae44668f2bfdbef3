package credentialsexchange

import (
	"os"
	"path/filepath"
	"testing"
)

func TestPreferredLanguage(t *testing.T) {
	for _, tc := range []struct {
		headers []string
		want    string
	}{
		{nil, ""},
		{[]string{""}, ""},
		{[]string{"en"}, "en"},
		{[]string{"fr-CH, fr;q=0.9, en;q=0.8, de;q=0.7, *;q=0.5"}, "fr-CH"},
		{[]string{"de;q=0.7, en-US;q=0.9"}, "en-US"},
		{[]string{"da, en-GB;q=0.8"}, "da"},
		{[]string{"en;q=0.5, fr;q=0.5"}, "en"},            // the first of equal weight
		{[]string{"*"}, ""},                               // no language stated
		{[]string{"de;q=0"}, ""},                          // "not acceptable"
		{[]string{"de;q=2, it;q=0.1"}, "it"},              // a weight out of range counts as 0
		{[]string{"<script>, es;q=0.3"}, "es"},            // malformed tags skipped
		{[]string{"zh-Hant-TW ;Q=0.8", "pt;q=0.9"}, "pt"}, // header lines combine
		{[]string{"x-toolongsubtag"}, ""},
	} {
		if got := preferredLanguage(tc.headers); got != tc.want {
			t.Errorf("preferredLanguage(%q) = %q, want %q", tc.headers, got, tc.want)
		}
	}
}

// TestScopeAsTheHookSeesIt pins how the token's scope claim reaches the hook:
// undefined only when there is none, and the form it is written back in.
func TestScopeAsTheHookSeesIt(t *testing.T) {
	up := newTestUpstream(t)
	h := provision(t, &Handler{
		Hook: writeScript(t, `module.exports=function(c,scope,a,x,cb){
			cb(null,{scope:['out'],'https://t.example/saw':scope === undefined ? 'undefined' : scope})}`),
		UpstreamKey: up.keyFile, SigningKey: writeSigningKey(t),
	})
	for _, tc := range []struct {
		name      string
		set       func(map[string]any)
		saw, form string
	}{
		{"scope string", func(c map[string]any) { c["scope"] = "a  b" }, `["a","b"]`, "scope"},
		{"empty scope", func(c map[string]any) { c["scope"] = "" }, `[]`, "scope"},
		{"scope not a string", func(c map[string]any) { c["scope"] = 7 }, `"undefined"`, "scope"},
		{"scp array", func(c map[string]any) { delete(c, "scope"); c["scp"] = []string{"a", "b"} }, `["a","b"]`, "scp"},
		{"scp string", func(c map[string]any) { delete(c, "scope"); c["scp"] = "a b" }, `["a","b"]`, "scp"},
		{"no scope", func(c map[string]any) { delete(c, "scope") }, `"undefined"`, "scope"},
	} {
		rec := serve(t, h, &scriptedUpstream{status: 200, body: tokenResponse(up.token(t, tc.set))}, formRequest(ccForm))
		claims := issuedClaims(t, rec)
		if got := string(claims["https://t.example/saw"]); got != tc.saw {
			t.Errorf("%s: the hook saw %s, want %s", tc.name, got, tc.saw)
		}
		other := map[string]string{"scope": "scp", "scp": "scope"}[tc.form]
		if _, ok := claims[tc.form]; !ok || claims[other] != nil {
			t.Errorf("%s: the scope was written back as %v, want %s", tc.name, claims, tc.form)
		}
	}
}

// TestGrantScopes: scopes actions add outside the client's grant do not
// reach the token; the grant comes from the client block, else the
// clients_file entry, else the scopes the upstream issued.
func TestGrantScopes(t *testing.T) {
	up := newTestUpstream(t)
	clients := filepath.Join(t.TempDir(), "clients.json")
	if err := os.WriteFile(clients, []byte(`{"from-file":{"grant_scopes":["read:a","write:b"]},"svc":{"grant_scopes":["write:b"]},"none":{"grant_scopes":[]}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	h := provision(t, &Handler{
		Actions: []string{writeScript(t, `exports.onExecuteCredentialsExchange = async (event, api) => {
			api.transaction.addTargetScope('write:b');
			api.transaction.addTargetScope('admin');
		};`)},
		UpstreamKey: up.keyFile, SigningKey: writeSigningKey(t), ClientsFile: clients,
		Clients: map[string]ClientInfo{"svc": {GrantScopes: []string{"read:a", "write:b", "write:c"}}},
	})
	for _, tc := range []struct{ client, want string }{
		{"svc", `"read:a write:b"`},       // the client block wins over the file
		{"from-file", `"read:a write:b"`}, // the clients_file entry
		{"unknown", `"read:a"`},           // the upstream's scope is the grant
		{"none", ``},                      // an empty grant grants nothing
	} {
		tok := up.token(t, func(c map[string]any) { c["client_id"] = tc.client })
		rec := serve(t, h, &scriptedUpstream{status: 200, body: tokenResponse(tok)}, formRequest(ccForm))
		if got := string(issuedClaims(t, rec)["scope"]); got != tc.want {
			t.Errorf("%s: scope %s, want %s", tc.client, got, tc.want)
		}
	}
}

// TestEventRequestLanguage: actions see the client's preferred language.
func TestEventRequestLanguage(t *testing.T) {
	up := newTestUpstream(t)
	h := provision(t, &Handler{
		Actions: []string{writeScript(t, `exports.onExecuteCredentialsExchange = async (event, api) => {
			api.accessToken.setCustomClaim('https://t.example/lang', String(event.request.language));
		};`)},
		UpstreamKey: up.keyFile, SigningKey: writeSigningKey(t),
	})
	for header, want := range map[string]string{"es-MX, es;q=0.9, en;q=0.5": `"es-MX"`, "": `"undefined"`} {
		req := formRequest(ccForm)
		if header != "" {
			req.Header.Set("Accept-Language", header)
		}
		rec := serve(t, h, &scriptedUpstream{status: 200, body: tokenResponse(up.token(t, nil))}, req)
		if got := string(issuedClaims(t, rec)["https://t.example/lang"]); got != want {
			t.Errorf("Accept-Language %q: language %s, want %s", header, got, want)
		}
	}
}
