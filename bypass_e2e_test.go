package credentialsexchange_test

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jwt"

	credentialsexchange "github.com/caddyhook/caddyhook"
	"github.com/caddyhook/caddyhook/internal/oauthserver"
)

// The hook of the bypass test (add-claim.js) writes this claim; no upstream
// ever does, so a token carrying it, signed by the proxy's own key, went
// through the hook.
const (
	bypassHookClaim = "https://example.com/foo"
	bypassHookValue = "bar"

	bypassClient = "svc-bypass"
	bypassSecret = "bypass-secret"
	bypassCreds  = "client_id=" + bypassClient + "&client_secret=" + bypassSecret
	formType     = "application/x-www-form-urlencoded"
)

// bypassRow is one request shape. The client's credentials are valid in
// every row, so an upstream that reads the request as a client credentials
// request issues a token.
type bypassRow struct {
	name     string
	method   string // default POST
	target   string // path and query; default /oauth/token
	ctype    string // Content-Type; none when empty
	body     string
	basic    bool              // credentials in HTTP Basic as well
	header   map[string]string // more headers
	encode   string            // gzip or deflate: compress the body and say so
	chunked  bool              // send the body without a Content-Length
	mustHook bool              // a plain request that has to be hooked
}

func bypassRows() []bypassRow {
	mpBoth, mpBothType := credentialsexchange.MultipartBody("grant_type", "client_credentials", "client_id", bypassClient, "client_secret", bypassSecret)
	mpGrant, mpGrantType := credentialsexchange.MultipartBody("grant_type", "client_credentials")
	jsonCreds := `"client_id":"` + bypassClient + `","client_secret":"` + bypassSecret + `"`
	ccForm := "grant_type=client_credentials&" + bypassCreds
	cc := "grant_type=client_credentials"

	rows := []bypassRow{
		// Plain, well-formed requests: these must be hooked.
		{name: "plain form, basic auth", ctype: formType, body: cc + "&scope=read", basic: true, mustHook: true},
		{name: "plain form, client_secret_post", ctype: formType, body: ccForm, mustHook: true},
		{name: "plain JSON body", ctype: "application/json", body: `{"grant_type":"client_credentials",` + jsonCreds + `}`, mustHook: true},
		{name: "form, charset=utf-8", ctype: formType + "; charset=utf-8", body: ccForm, mustHook: true},

		// Form bodies Go's url.ParseQuery refuses.
		{name: "form: invalid escape %zz", ctype: formType, body: bypassCreds + "&grant_type=client_credentials&x=%zz"},
		{name: "form: invalid escape %zz, basic", ctype: formType, body: "grant_type=client_credentials&x=%zz", basic: true},
		{name: "form: semicolon in grant pair", ctype: formType, body: bypassCreds + "&grant_type=client_credentials;x=1"},
		{name: "form: semicolon in another pair", ctype: formType, body: bypassCreds + "&grant_type=client_credentials&a=b;c"},
		{name: "form: lone percent", ctype: formType, body: bypassCreds + "&grant_type=client_credentials&%"},
		{name: "form: invalid escape in the first pair", ctype: formType, body: "%zz=1&" + ccForm},

		// The grant in the query string.
		{name: "query grant, empty body, basic", target: "/oauth/token?grant_type=client_credentials", basic: true},
		{name: "query grant and credentials, empty body", target: "/oauth/token?grant_type=client_credentials&" + bypassCreds},
		{name: "query grant, form body with credentials", target: "/oauth/token?grant_type=client_credentials", ctype: formType, body: bypassCreds},
		{name: "query grant, empty form body, basic", target: "/oauth/token?grant_type=client_credentials", ctype: formType, basic: true},
		{name: "query grant, JSON body with credentials", target: "/oauth/token?grant_type=client_credentials", ctype: "application/json", body: "{" + jsonCreds + "}", basic: true},

		// multipart/form-data.
		{name: "multipart: grant and credentials", ctype: mpBothType, body: mpBoth},
		{name: "multipart: grant, basic", ctype: mpGrantType, body: mpGrant, basic: true},

		// Repeated and conflicting grant_type.
		{name: "repeated grant: cc, cc", ctype: formType, body: cc + "&" + ccForm},
		{name: "repeated grant: password, cc", ctype: formType, body: "grant_type=password&" + ccForm},
		{name: "repeated grant: cc, password", ctype: formType, body: ccForm + "&grant_type=password"},
		{name: "repeated grant: cc, empty", ctype: formType, body: ccForm + "&grant_type="},
		{name: "repeated grant: empty, cc", ctype: formType, body: "grant_type=&" + ccForm},
		{name: "grant in query and body, identical", target: "/oauth/token?grant_type=client_credentials", ctype: formType, body: ccForm},
		{name: "grant in query (password) and body (cc)", target: "/oauth/token?grant_type=password", ctype: formType, body: ccForm},
		{name: "grant in query (cc) and body (password)", target: "/oauth/token?grant_type=client_credentials", ctype: formType, body: "grant_type=password&" + bypassCreds},
		{name: "grant in query (cc) and JSON body (password)", target: "/oauth/token?grant_type=client_credentials", ctype: "application/json", body: `{"grant_type":"password",` + jsonCreds + `}`, basic: true},
		{name: "grant in query (password) and JSON body (cc)", target: "/oauth/token?grant_type=password", ctype: "application/json", body: `{"grant_type":"client_credentials",` + jsonCreds + `}`, basic: true},

		// Path spellings.
		{name: "path /OAUTH/TOKEN", target: "/OAUTH/TOKEN", ctype: formType, body: ccForm},
		{name: "path /oauth/Token", target: "/oauth/Token", ctype: formType, body: ccForm},
		{name: "path /Oauth/Token/", target: "/Oauth/Token/", ctype: formType, body: ccForm},
		{name: "path /oauth/token/", target: "/oauth/token/", ctype: formType, body: ccForm},
		{name: "path /oauth/token//", target: "/oauth/token//", ctype: formType, body: ccForm},
		{name: "path //oauth/token", target: "//oauth/token", ctype: formType, body: ccForm},
		{name: "path /oauth/./token", target: "/oauth/./token", ctype: formType, body: ccForm},
		{name: "path /oauth/x/../token", target: "/oauth/x/../token", ctype: formType, body: ccForm},
		{name: "path /oauth/%74oken", target: "/oauth/%74oken", ctype: formType, body: ccForm},
		{name: "path /oauth%2Ftoken", target: "/oauth%2Ftoken", ctype: formType, body: ccForm},
		{name: "path /oauth/token%2F", target: "/oauth/token%2F", ctype: formType, body: ccForm},
		{name: "path /oauth/token, empty query", target: "/oauth/token?", ctype: formType, body: ccForm},

		// Content types and encodings of the body.
		{name: "no Content-Type, form body", body: ccForm},
		{name: "text/plain, form body", ctype: "text/plain", body: ccForm},
		{name: "upper-case form content type", ctype: "APPLICATION/X-WWW-FORM-URLENCODED", body: ccForm},
		{name: "form content type with spaces and quoted charset", ctype: formType + ` ; charset="UTF-8"`, body: ccForm},
		{name: "JSON charset=utf-8", ctype: "application/json; charset=utf-8", body: `{"grant_type":"client_credentials",` + jsonCreds + `}`},
		{name: "application/vnd.api+json", ctype: "application/vnd.api+json", body: `{"grant_type":"client_credentials",` + jsonCreds + `}`},
		{name: "JSON duplicate keys: password, cc", ctype: "application/json", body: `{"grant_type":"password","grant_type":"client_credentials",` + jsonCreds + `}`},
		{name: "JSON duplicate keys: cc, password", ctype: "application/json", body: `{"grant_type":"client_credentials","grant_type":"password",` + jsonCreds + `}`},
		{name: "JSON GRANT_TYPE", ctype: "application/json", body: `{"GRANT_TYPE":"client_credentials",` + jsonCreds + `}`},
		{name: "JSON grant array [cc]", ctype: "application/json", body: `{"grant_type":["client_credentials"],` + jsonCreds + `}`},
		{name: "JSON grant array [password, cc]", ctype: "application/json", body: `{"grant_type":["password","client_credentials"],` + jsonCreds + `}`},
		{name: "JSON unicode-escaped key", ctype: "application/json", body: `{"grant\u005ftype":"client_credentials",` + jsonCreds + `}`},
		{name: "JSON body as text/plain", ctype: "text/plain", body: `{"grant_type":"client_credentials",` + jsonCreds + `}`},
		{name: "form body as application/json", ctype: "application/json", body: ccForm},
		{name: "gzip form body", ctype: formType, body: ccForm, encode: "gzip"},
		{name: "deflate form body", ctype: formType, body: ccForm, encode: "deflate"},
		{name: "gzip JSON body", ctype: "application/json", body: `{"grant_type":"client_credentials",` + jsonCreds + `}`, encode: "gzip"},
		{name: "Content-Encoding identity", ctype: formType, body: ccForm, header: map[string]string{"Content-Encoding": "identity"}},
		{name: "chunked form body", ctype: formType, body: ccForm, chunked: true},

		// Encodings of names and values.
		{name: "grant%5Ftype", ctype: formType, body: "grant%5Ftype=client_credentials&" + bypassCreds},
		{name: "client%5Fcredentials", ctype: formType, body: "grant_type=client%5Fcredentials&" + bypassCreds},
		{name: "Client_Credentials", ctype: formType, body: "grant_type=Client_Credentials&" + bypassCreds},
		{name: "client_credentials%00", ctype: formType, body: "grant_type=client_credentials%00&" + bypassCreds},
		{name: "+client_credentials", ctype: formType, body: "grant_type=+client_credentials&" + bypassCreds},
		{name: "grant_type[]", ctype: formType, body: "grant_type[]=client_credentials&" + bypassCreds},
		{name: "query grant%5Ftype, basic", target: "/oauth/token?grant%5Ftype=client_credentials", basic: true},

		// Methods.
		{name: "GET with query", method: http.MethodGet, target: "/oauth/token?grant_type=client_credentials&" + bypassCreds},
		{name: "PUT form body", method: http.MethodPut, ctype: formType, body: ccForm},
		{name: "PATCH form body", method: http.MethodPatch, ctype: formType, body: ccForm},
		{name: "lower-case post", method: "post", ctype: formType, body: ccForm},
		{name: "POST with X-HTTP-Method-Override: PUT", ctype: formType, body: ccForm, header: map[string]string{"X-HTTP-Method-Override": "PUT"}},
		{name: "PUT with X-HTTP-Method-Override: POST", method: http.MethodPut, ctype: formType, body: ccForm, header: map[string]string{"X-HTTP-Method-Override": "POST"}},
		{name: "GET with X-HTTP-Method-Override: POST", method: http.MethodGet, target: "/oauth/token?grant_type=client_credentials&" + bypassCreds, header: map[string]string{"X-HTTP-Method-Override": "POST"}},
	}
	return rows
}

func (row bypassRow) request(t testing.TB, base string) *http.Request {
	t.Helper()
	method, target := row.method, row.target
	if method == "" {
		method = http.MethodPost
	}
	if target == "" {
		target = "/oauth/token"
	}
	body := []byte(row.body)
	switch row.encode {
	case "gzip":
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		_, _ = zw.Write(body)
		_ = zw.Close()
		body = buf.Bytes()
	case "deflate":
		var buf bytes.Buffer
		zw := zlib.NewWriter(&buf)
		_, _ = zw.Write(body)
		_ = zw.Close()
		body = buf.Bytes()
	}
	var rd io.Reader
	if len(body) > 0 {
		rd = bytes.NewReader(body)
		if row.chunked {
			rd = io.MultiReader(rd) // hides the length: sent chunked
		}
	}
	req, err := http.NewRequest(method, base+target, rd)
	if err != nil {
		t.Fatalf("building request: %v", err)
	}
	if got := req.URL.RequestURI(); got != target {
		t.Fatalf("the client would send %q, not %q", got, target)
	}
	if row.ctype != "" {
		req.Header.Set("Content-Type", row.ctype)
	}
	if row.encode != "" {
		req.Header.Set("Content-Encoding", row.encode)
	}
	for k, v := range row.header {
		req.Header.Set(k, v)
	}
	if row.basic {
		req.SetBasicAuth(bypassClient, bypassSecret)
	}
	return req
}

// bypassSend sends a request as an ordinary client does, following
// redirects, and says where it ended.
func bypassSend(t testing.TB, req *http.Request) (rawResponse, string) {
	t.Helper()
	var hops []string
	client := &http.Client{Timeout: 30 * time.Second, CheckRedirect: func(r *http.Request, via []*http.Request) error {
		hops = append(hops, r.Method+" "+r.URL.RequestURI())
		if len(via) >= 5 {
			return http.ErrUseLastResponse
		}
		return nil
	}}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("sending request: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading response: %v", err)
	}
	redirected := ""
	if len(hops) > 0 {
		redirected = " after redirect to " + strings.Join(hops, ", ")
	}
	return rawResponse{resp.StatusCode, resp.Header.Get("Content-Type"), body}, redirected
}

var jwtPattern = regexp.MustCompile(`eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+`)

// bypassJudge tells a response's outcome.
type bypassJudge struct {
	proxyOnly    jwk.Set // the proxy's own keys, without the upstream's it also publishes
	upstreamKeys jwk.Set // every upstream's keys
}

// outcome classifies a response: "hooked", "oauth-error NNN code", or one
// that breaks the invariant, and then bad says why. "UNHOOKED TOKEN" is a
// bypass: the upstream's own token reached the client. "no-token" is an
// answer with no token in it that is not an OAuth error either, such as an
// upstream's catch-all page for a path it does not route: not a bypass, but
// a request to the token path must end in a hooked token or an OAuth error.
func (j bypassJudge) outcome(r rawResponse) (outcome, bad string) {
	for _, tok := range jwtPattern.FindAllString(string(r.body), -1) {
		if parsed, err := jwt.Parse([]byte(tok), jwt.WithKeySet(j.upstreamKeys), jwt.WithValidate(true)); err == nil {
			claims, _ := parsed.AsMap(context.Background())
			return fmt.Sprintf("UNHOOKED TOKEN %d", r.status),
				fmt.Sprintf("BYPASS: status %d, the client got the upstream's own token: it verifies against the upstream's JWKS and has no hook claim; claims %v", r.status, claims)
		}
	}
	var obj map[string]any
	isObj := json.Unmarshal(r.body, &obj) == nil && obj != nil
	if isObj && obj["access_token"] != nil {
		access, _ := obj["access_token"].(string)
		parsed, err := jwt.Parse([]byte(access), jwt.WithKeySet(j.proxyOnly), jwt.WithValidate(true))
		if err != nil {
			return fmt.Sprintf("unverifiable token %d", r.status),
				fmt.Sprintf("access_token does not verify against the proxy's own key: %v: %d %s", err, r.status, r.body)
		}
		if v, _ := parsed.Get(bypassHookClaim); v != bypassHookValue {
			return fmt.Sprintf("proxy token without the hook's claim %d", r.status),
				fmt.Sprintf("token signed by the proxy lacks the hook's claim: %d %s", r.status, r.body)
		}
		if r.status != http.StatusOK {
			return fmt.Sprintf("hooked %d", r.status), fmt.Sprintf("hooked token with status %d: %s", r.status, r.body)
		}
		return "hooked", ""
	}
	if bytes.Contains(r.body, []byte("access_token")) {
		return fmt.Sprintf("access_token in body %d", r.status),
			fmt.Sprintf("an access_token that is not a hooked token: %d %s", r.status, r.body)
	}
	if isObj {
		if code, ok := obj["error"].(string); ok && code != "" {
			if r.status < 400 {
				return fmt.Sprintf("oauth-error %d", r.status),
					fmt.Sprintf("OAuth error with status %d: %s", r.status, r.body)
			}
			return fmt.Sprintf("oauth-error %d %s", r.status, code), ""
		}
	}
	if r.status == http.StatusOK && isObj {
		return fmt.Sprintf("other JSON %d", r.status), fmt.Sprintf("a 200 JSON answer that is neither a token nor an error: %s", r.body)
	}
	return fmt.Sprintf("no-token %d %q", r.status, firstLine(r.body)),
		fmt.Sprintf("not a bypass, but neither a hooked token nor an OAuth error: %d %s %q", r.status, r.ctype, firstLine(r.body))
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(string(b), "\n")
	if len(s) > 60 {
		s = s[:60] + "..."
	}
	return s
}

// directOutcome says what an upstream answers a row with when asked without
// the proxy: "token" or the status and OAuth error. It is logged so a
// reader sees which request shapes the upstream itself accepts.
func directOutcome(r rawResponse) string {
	var obj map[string]any
	if json.Unmarshal(r.body, &obj) == nil && obj != nil {
		if _, ok := obj["access_token"]; ok {
			return "token"
		}
		if code, ok := obj["error"].(string); ok {
			return fmt.Sprintf("%d %s", r.status, code)
		}
	}
	return fmt.Sprintf("%d %q", r.status, firstLine(r.body))
}

// TestBypass runs a real Caddy with credentials_exchange in front of two
// upstreams that read token requests differently (go-oauth2's own FormValue,
// and a Node-style router and body reader in front of the same go-oauth2),
// and sends each the same odd request shapes. Whatever the shape, the client
// must get a hooked token or an error, never the upstream's own token.
func TestBypass(t *testing.T) {
	type upstreamSite struct {
		name     string
		upstream *oauthserver.Server
		proxy    string
		judge    bypassJudge
	}
	clients := []oauthserver.Client{{ID: bypassClient, Secret: bypassSecret}}
	stock := startOAuthServer(t, oauthserver.Options{Clients: clients})
	lenient := startOAuthServer(t, oauthserver.Options{Clients: clients, Lenient: true})

	sites := []*upstreamSite{{name: "stock", upstream: stock}, {name: "lenient", upstream: lenient}}
	cfg := globalOptions(t)
	for _, s := range sites {
		port := freePort(t)
		s.proxy = site{port: port}.url()
		cfg += siteBlock(port, s.upstream.URL,
			exchangeDirective(hookPath(t, "add-claim.js"), writeKey(t, "rsa"), s.upstream.URL))
	}
	startCaddy(t, cfg)

	allUpstreamKeys := jwk.NewSet()
	upstreamKIDs := map[string]bool{}
	for _, s := range sites {
		raw, err := s.upstream.PublicKeysJSON()
		if err != nil {
			t.Fatal(err)
		}
		set, err := jwk.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < set.Len(); i++ {
			k, _ := set.Key(i)
			upstreamKIDs[k.KeyID()] = true
			_ = allUpstreamKeys.AddKey(k)
		}
	}
	for _, s := range sites {
		proxyOnly := jwk.NewSet()
		all := fetchJWKS(t, s.proxy)
		for i := 0; i < all.Len(); i++ {
			k, _ := all.Key(i)
			if !upstreamKIDs[k.KeyID()] {
				_ = proxyOnly.AddKey(k)
			}
		}
		if proxyOnly.Len() != 1 {
			t.Fatalf("%s: the proxy publishes %d keys of its own, want 1", s.name, proxyOnly.Len())
		}
		s.judge = bypassJudge{proxyOnly: proxyOnly, upstreamKeys: allUpstreamKeys}
	}

	type result struct{ row, upstream, direct, outcome, bad string }
	var results []result
	for _, row := range bypassRows() {
		t.Run(row.name, func(t *testing.T) {
			for _, s := range sites {
				t.Run(s.name, func(t *testing.T) {
					direct, _ := bypassSend(t, row.request(t, s.upstream.URL))
					resp, redirected := bypassSend(t, row.request(t, s.proxy))
					outcome, bad := s.judge.outcome(resp)
					if bad == "" && row.mustHook && outcome != "hooked" {
						bad = fmt.Sprintf("a plain client credentials request was not hooked: %d %s", resp.status, resp.body)
					}
					results = append(results, result{row.name, s.name, directOutcome(direct), outcome + redirected, bad})
					t.Logf("%-50s %-8s upstream alone: %-32s through the proxy: %s%s", row.name, s.name, directOutcome(direct), outcome, redirected)
					if bad != "" {
						t.Error(bad)
					}
				})
			}
		})
	}

	var failed []string
	for _, r := range results {
		if r.bad != "" {
			failed = append(failed, fmt.Sprintf("  %-50s %-8s upstream alone: %-32s through the proxy: %s", r.row, r.upstream, r.direct, r.outcome))
		}
	}
	if len(failed) > 0 {
		t.Logf("%d of %d row/upstream pairs break the invariant:\n%s", len(failed), len(results), strings.Join(failed, "\n"))
	}
}

// TestBypassLenientUpstream checks, without the proxy, that the lenient
// upstream reads requests the way lenient.go says, so that TestBypass
// really does test a server that parses differently.
func TestBypassLenientUpstream(t *testing.T) {
	clients := []oauthserver.Client{{ID: bypassClient, Secret: bypassSecret}}
	lenient := startOAuthServer(t, oauthserver.Options{Clients: clients, Lenient: true})
	stock := startOAuthServer(t, oauthserver.Options{Clients: clients})

	// Rows by name, and whether each upstream alone issues a token for it.
	want := map[string][2]bool{ // {stock, lenient}
		"plain form, basic auth":                       {true, true},
		"plain JSON body":                              {false, true},
		"form: invalid escape %zz":                     {true, true},
		"form: semicolon in grant pair":                {false, false},
		"form: semicolon in another pair":              {true, true},
		"query grant, empty body, basic":               {true, true},
		"multipart: grant and credentials":             {true, false},
		"repeated grant: password, cc":                 {false, true},
		"repeated grant: cc, password":                 {true, false},
		"grant in query (cc) and body (password)":      {false, false},
		"grant in query (cc) and JSON body (password)": {true, false},
		"path /OAUTH/TOKEN":                            {false, true},
		"path /oauth/token/":                           {false, true},
		"path /oauth/token//":                          {false, false},
		"path /oauth/%74oken":                          {true, true},
		"path /oauth%2Ftoken":                          {false, true},
		"no Content-Type, form body":                   {false, false},
		"JSON duplicate keys: password, cc":            {false, true},
		"JSON grant array [password, cc]":              {false, true},
		"JSON unicode-escaped key":                     {false, true},
		"gzip form body":                               {false, true},
		"deflate form body":                            {false, true},
		"grant_type[]":                                 {false, false},
		"GET with query":                               {false, false},
	}
	seen := 0
	for _, row := range bypassRows() {
		w, ok := want[row.name]
		if !ok {
			continue
		}
		seen++
		for i, up := range []*oauthserver.Server{stock, lenient} {
			r, _ := bypassSend(t, row.request(t, up.URL))
			got := directOutcome(r) == "token"
			if got != w[i] {
				t.Errorf("%s, %s upstream alone: token issued = %v, want %v (%d %s)",
					row.name, []string{"stock", "lenient"}[i], got, w[i], r.status, r.body)
			}
		}
	}
	if seen != len(want) {
		t.Fatalf("only %d of the %d rows named here exist", seen, len(want))
	}
}
