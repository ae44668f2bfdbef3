package credentialsexchange_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyhook/caddyhook/internal/oauthserver"
)

// The values the scripts' calls carry in their bodies and headers; none of
// them may reach Caddy's log.
var fetchSecrets = []string{"request-body-secret", "request-header-secret", "response-body-secret", "response-header-secret"}

// fetchE2EHook is a hook calling out with request, as a callback and
// through util.promisify.
const fetchE2EHook = `const request = require('request');
const util = require('util');
module.exports = function (client, scope, audience, context, cb) {
	const base = context.webtask.secrets.BASE;
	if (context.body.mode !== 'request') return cb(null, { scope: scope });
	request.post({ url: base + '/v1/echo', json: { note: 'request-body-secret' },
		headers: { 'X-Note': 'request-header-secret' } }, function (err, res, body) {
		if (err) return cb(err);
		util.promisify(request)({ url: base + '/v1/echo', qs: { q: 1 }, json: true }).then(function (res2) {
			cb(null, { scope: scope, 'https://example.com/request': [res.statusCode, body.got.note, body.header,
				res.headers['x-reply'], res2.statusCode, res2.body.query] });
		}, cb);
	});
};
`

// fetchE2EAction calls out with fetch, axios and node-fetch, by mode.
const fetchE2EAction = `const axios = require('axios');
const nodeFetch = require('node-fetch');
exports.onExecuteCredentialsExchange = async (event, api) => {
	const base = event.secrets.BASE, mode = event.request.body.mode, set = (v) => api.accessToken.setCustomClaim('https://example.com/fetch', v);
	switch (mode) {
	case 'fetch-timeout': {
		const ok = await (await fetch(base + '/v1/echo', { method: 'POST', body: 'request-body-secret',
			headers: { 'X-Note': 'request-header-secret' }, signal: AbortSignal.timeout(1000) })).json();
		const slow = await fetch(base + '/v1/slow', { signal: AbortSignal.timeout(100) }).catch(e => e.name);
		return set([ok.got, ok.header, slow]);
	}
	case 'axios-404': {
		const e = await axios.get(base + '/v1/missing').catch(e => e);
		return set([e.isAxiosError, e.code, e.message, e.response.status, e.response.data.error]);
	}
	case 'node-fetch': {
		const res = await nodeFetch(base + '/v1/echo', { method: 'PUT', body: 'request-body-secret' });
		return set([res.status, (await res.json()).got]);
	}
	case 'refused-caught':
		return set(await fetch(base + '/admin/secret').catch(e => e.message));
	case 'refused':
		await fetch(base + '/admin/secret');
		return set('not refused');
	case 'redirect-out':
		await fetch(base + '/v1/redirect-out');
		return set('not refused');
	case 'metadata':
		await axios.get('http://169.254.169.254/latest/meta-data/iam/security-credentials/');
		return set('not refused');
	case 'slow':
		await fetch(base + '/v1/slow');
		return set('not timed out');
	case 'huge':
		await (await fetch(base + '/v1/huge')).text();
		return set('not refused');
	}
};
`

// TestFetchEndToEnd runs, through a real Caddy in front of the go-oauth2
// server, scripts that call a local service: the calls that are allowed
// reach the token, the ones a rule refuses end in an OAuth error (or an
// error the script catches), and nothing the calls carried reaches
// Caddy's log, at debug level.
func TestFetchEndToEnd(t *testing.T) {
	upstream, err := oauthserver.Start(oauthserver.Options{Clients: []oauthserver.Client{{ID: "svc", Secret: "s"}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = upstream.Close() })

	service := httptest.NewServer(fetchService(t))
	t.Cleanup(service.Close)

	dir := t.TempDir()
	hook, action, logFile := filepath.Join(dir, "hook.js"), filepath.Join(dir, "action.js"), filepath.Join(dir, "caddy.log")
	for path, src := range map[string]string{hook: fetchE2EHook, action: fetchE2EAction} {
		if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	port := freePort(t)
	global := strings.Replace(globalOptions(t), "\tlog {\n\t\tlevel ERROR\n\t}",
		fmt.Sprintf("\tlog {\n\t\toutput file %s\n\t\tlevel DEBUG\n\t}", logFile), 1)
	startCaddy(t, global+siteBlock(port, upstream.URL, exchangeDirective(hook, writeKey(t, "p256"), upstream.URL,
		"action "+action, "timeout 2s", "secret BASE "+service.URL, "fetch_allow "+service.URL+"/v1/")))
	base := fmt.Sprintf("http://127.0.0.1:%d", port)

	exchange := func(t *testing.T, mode string) (int, map[string]any) {
		t.Helper()
		r := postForm(t, base, "/oauth/token", url.Values{"grant_type": {"client_credentials"}, "mode": {mode}}, "svc", "s")
		var body map[string]any
		if err := json.Unmarshal(r.body, &body); err != nil {
			t.Fatalf("%d %s", r.status, r.body)
		}
		return r.status, body
	}
	notAllowed := func(path string) string {
		return "fetch to " + service.URL + path + " is not allowed: add its URL prefix to fetch_allow"
	}
	for _, c := range []struct {
		mode, claim string // claim: the JSON of the token's https://example.com/fetch (or /request)
		status      int
		description string
	}{
		{mode: "request", claim: `[200,"request-body-secret","request-header-secret","response-header-secret",200,"q=1"]`},
		{mode: "fetch-timeout", claim: `["request-body-secret","request-header-secret","TimeoutError"]`},
		{mode: "axios-404", claim: `[true,"ERR_BAD_REQUEST","Request failed with status code 404",404,"no such thing"]`},
		{mode: "node-fetch", claim: `[200,"request-body-secret"]`},
		{mode: "refused-caught", claim: fmt.Sprintf("%q", notAllowed("/admin/secret"))},
		{mode: "refused", status: 500, description: notAllowed("/admin/secret")},
		{mode: "redirect-out", status: 500, description: notAllowed("/admin/secret")},
		{mode: "metadata", status: 500, description: "fetch to http://169.254.169.254/latest/meta-data/iam/security-credentials/ is not allowed: add its URL prefix to fetch_allow"},
		{mode: "slow", status: 500, description: "hook timed out"},
		{mode: "huge", status: 500, description: fmt.Sprintf("fetch to %s/v1/huge: the response body is more than the 4194304 bytes allowed", service.URL)},
	} {
		t.Run(c.mode, func(t *testing.T) {
			status, body := exchange(t, c.mode)
			if c.status != 0 {
				if status != c.status || body["error"] != "server_error" || body["error_description"] != c.description {
					t.Fatalf("got %d %v, want %d server_error %q", status, body, c.status, c.description)
				}
				return
			}
			if status != 200 {
				t.Fatalf("got %d %v", status, body)
			}
			tok := verify(t, fetchJWKS(t, base), body["access_token"].(string))
			name := "https://example.com/fetch"
			if c.mode == "request" {
				name = "https://example.com/request"
			}
			got, _ := json.Marshal(claim(t, tok, name))
			if string(got) != c.claim {
				t.Fatalf("claim %s = %s, want %s", name, got, c.claim)
			}
		})
	}

	// Caddy's file log is written as it goes, unbuffered.
	logs, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatalf("reading Caddy's log: %v", err)
	}
	if !strings.Contains(string(logs), `"msg":"fetch"`) {
		t.Errorf("no debug line for the calls in Caddy's log:\n%s", logs)
	}
	for _, secret := range fetchSecrets {
		if strings.Contains(string(logs), secret) {
			t.Errorf("Caddy's log holds %q", secret)
		}
	}
}

// fetchService is the local API the scripts call.
func fetchService(t *testing.T) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/echo", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var got any = string(body)
		_ = json.Unmarshal(body, &got)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Reply", "response-header-secret")
		_ = json.NewEncoder(w).Encode(map[string]any{"got": got, "header": r.Header.Get("X-Note"),
			"query": r.URL.RawQuery, "note": "response-body-secret"})
	})
	mux.HandleFunc("/v1/missing", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, `{"error":"no such thing"}`)
	})
	mux.HandleFunc("/v1/slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(30 * time.Second):
		}
	})
	mux.HandleFunc("/v1/huge", func(w http.ResponseWriter, r *http.Request) {
		chunk := strings.Repeat("x", 64<<10)
		for i := 0; i < 80; i++ { // 5 MiB, past the 4 MiB cap
			if _, err := io.WriteString(w, chunk); err != nil {
				return
			}
		}
	})
	mux.HandleFunc("/v1/redirect-out", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/admin/secret", http.StatusFound)
	})
	mux.HandleFunc("/admin/secret", func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("a script reached %s, outside fetch_allow", r.URL)
	})
	return mux
}
