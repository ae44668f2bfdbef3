package credentialsexchange_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"

	"github.com/caddyhook/caddyhook/internal/oauthserver"
)

// The client secrets and the hook secret of TestMetricsAndExchangeLog:
// distinctive, so that the log scan (logscan_test.go) finds them if any
// line carries them.
const (
	obsOKSecret    = "obs-ok-client-secret-5c1d"
	obsDenySecret  = "obs-deny-client-secret-5c1d"
	obsThrowSecret = "obs-throw-client-secret-5c1d"
	obsHookSecret  = "obs-hook-secret-value-5c1d"
)

// obsHook issues with an outbound call, denies svc-deny and throws for
// svc-throw at obsThrowLine, at the column of "new Error".
const obsHook = `'use strict';
module.exports = function (client, scope, audience, context, cb) {
  if (client.id === 'svc-deny') {
    return cb(new InvalidRequestError('this client may not have tokens'));
  }
  if (client.id === 'svc-throw') {
    throw new Error('the hook broke');
  }
  fetch(SERVICE + '/ok', { headers: { authorization: 'Bearer ' + context.webtask.secrets.HOOK_TOKEN } }).then(function () {
    cb(null, { scope: ['read:a', 'extra:b'], 'https://example.com/tier': 'gold', 'https://tenant.auth0.com/x': 1 });
  }, cb);
};
`

const obsThrowLine = 7

// metricsSnapshot is one scrape of Caddy's /metrics: each sample by its
// series as the text format writes it, name{labels}.
type metricsSnapshot map[string]float64

var sampleLine = regexp.MustCompile(`^(caddy_credentials_exchange_[a-z_]+(?:\{[^}]*\})?) (\S+)$`)

func scrape(t *testing.T, adminURL string) metricsSnapshot {
	t.Helper()
	resp, err := http.Get(adminURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("/metrics: %d %s", resp.StatusCode, b)
	}
	snap := metricsSnapshot{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if m := sampleLine.FindStringSubmatch(sc.Text()); m != nil {
			v, err := strconv.ParseFloat(m[2], 64)
			if err != nil {
				t.Fatalf("sample %q: %v", sc.Text(), err)
			}
			snap[m[1]] = v
		}
	}
	return snap
}

// sum adds the samples of every series whose text starts with prefix.
func (s metricsSnapshot) sum(prefix string) float64 {
	total := 0.0
	for k, v := range s {
		if strings.HasPrefix(k, prefix) {
			total += v
		}
	}
	return total
}

// TestMetricsAndExchangeLog runs exchanges that are issued, denied (by the
// hook and by the upstream), fail in the hook and fail on the upstream's
// token, through a real Caddy with its admin API on a free port, in front of
// the real OAuth server; then reloads a changed config twice. Every metric
// must move as the exchanges go, through Caddy's own /metrics; the reloads
// must load (no duplicate registration) and keep the counts, as Caddy keeps
// its own process-wide metrics; and every exchange must log exactly one
// "credentials exchange" line with its fields, to a Caddy log sink.
func TestMetricsAndExchangeLog(t *testing.T) {
	upstream := startOAuthServer(t, oauthserver.Options{Clients: []oauthserver.Client{
		{ID: "svc-ok", Secret: obsOKSecret}, {ID: "svc-deny", Secret: obsDenySecret}, {ID: "svc-throw", Secret: obsThrowSecret},
	}})
	service := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, `{"ok":true}`)
	}))
	t.Cleanup(service.Close)

	dir := t.TempDir()
	hook := filepath.Join(dir, "hook.js")
	if err := os.WriteFile(hook, []byte(strings.Replace(obsHook, "SERVICE", strconv.Quote(service.URL), 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	throwColumn := strings.Index(strings.Split(obsHook, "\n")[obsThrowLine-1], "new Error") + 1
	logFile := filepath.Join(dir, "caddy.log")
	adminPort, port, rejectPort := freePort(t), freePort(t), freePort(t)
	adminURL := fmt.Sprintf("http://127.0.0.1:%d", adminPort)
	key, otherKey := writeKey(t, "p256"), writeKey(t, "rsa")
	t.Setenv("XDG_DATA_HOME", t.TempDir())
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	storage := t.TempDir()
	config := func(i int) []byte {
		t.Helper()
		global := fmt.Sprintf(`{
	admin 127.0.0.1:%d
	auto_https off
	persist_config off
	storage file_system %s
	log {
		output file %s {
			roll_disabled
		}
		format json
		level DEBUG
	}
}
`, adminPort, storage, logFile)
		// A different timeout each load: each is a changed config.
		main := exchangeDirective(hook, key, upstream.URL, "fetch_allow "+service.URL+"/",
			"secret HOOK_TOKEN "+obsHookSecret, fmt.Sprintf("timeout %ds", 5+i))
		// A static upstream key that did not sign the upstream's tokens:
		// every token it gets is rejected (502, upstream_error).
		reject := fmt.Sprintf("credentials_exchange {\n\thook %s\n\tsigning_key %s\n\tupstream_key %s\n}", hook, key, otherKey)
		cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(global+siteBlock(port, upstream.URL, main)+siteBlock(rejectPort, upstream.URL, reject)), nil)
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	if err := caddy.Load(config(0), true); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = caddy.Stop() })
	proxy, rejecting := site{port: port}.url(), site{port: rejectPort}.url()

	form := url.Values{"grant_type": {"client_credentials"}, "audience": {"https://api.example.com"}, "scope": {"read:a"}}
	exchanges := 0
	exchange := func(base, id, secret string, wantStatus int) rawResponse {
		t.Helper()
		exchanges++
		r := postForm(t, base, "/oauth/token", form, id, secret)
		if r.status != wantStatus {
			t.Fatalf("%s at %s: %d %s, want %d", id, base, r.status, r.body, wantStatus)
		}
		return r
	}
	round := func() {
		t.Helper()
		before := scrape(t, adminURL)
		exchange(proxy, "svc-ok", obsOKSecret, http.StatusOK)
		exchange(proxy, "svc-ok", obsOKSecret, http.StatusOK)
		exchange(proxy, "svc-deny", obsDenySecret, http.StatusBadRequest)
		thrown := exchange(proxy, "svc-throw", obsThrowSecret, http.StatusInternalServerError)
		for _, internal := range []string{"github.com", "GoError", "(native)", ".go:", "hook.js"} {
			if bytes.Contains(thrown.body, []byte(internal)) {
				t.Errorf("the client's error holds %q: %s", internal, thrown.body)
			}
		}
		exchange(proxy, "svc-ok", "not-the-secret", http.StatusUnauthorized) // the upstream's own invalid_client
		exchange(rejecting, "svc-ok", obsOKSecret, http.StatusBadGateway)
		after := scrape(t, adminURL)

		const p = "caddy_credentials_exchange_"
		for series, want := range map[string]float64{
			p + `exchanges_total{error="",outcome="issued"}`:                     2,
			p + `exchanges_total{error="invalid_request",outcome="denied"}`:      1,
			p + `exchanges_total{error="invalid_client",outcome="denied"}`:       1,
			p + `exchanges_total{error="server_error",outcome="error"}`:          1,
			p + `exchanges_total{error="server_error",outcome="upstream_error"}`: 1,
			p + `scripts_duration_seconds_count{outcome="ok"}`:                   2,
			p + `scripts_duration_seconds_count{outcome="denied"}`:               1,
			p + `scripts_duration_seconds_count{outcome="error"}`:                1,
			p + `sign_duration_seconds_count`:                                    2,
			p + `outbound_calls_total{outcome="ok"}`:                             2,
			p + `upstream_token_rejected_total`:                                  1, // by prefix: whichever reason
		} {
			got := after.sum(series) - before.sum(series)
			if strings.HasSuffix(series, "_total") && !strings.Contains(series, "{") {
				got = after.sum(series+"{") - before.sum(series+"{")
			}
			if got != want {
				t.Errorf("%s moved by %v, want %v", series, got, want)
			}
		}
		if after.sum(p+`upstream_jwks_fetches_total{outcome="ok"}`) < 1 || after.sum(p+"upstream_jwks_fetch_duration_seconds_count") < 1 {
			t.Errorf("no upstream JWKS fetch counted: %v", after)
		}
	}

	round()
	for i := 1; i <= 2; i++ {
		before := scrape(t, adminURL)
		if err := caddy.Load(config(i), true); err != nil {
			t.Fatalf("reload %d: %v", i, err)
		}
		after := scrape(t, adminURL)
		// Kept across the reload, as Caddy's process-wide metrics are.
		for _, series := range []string{"caddy_credentials_exchange_exchanges_total", "caddy_credentials_exchange_sign_duration_seconds_count"} {
			if before.sum(series) == 0 || after.sum(series) != before.sum(series) {
				t.Errorf("reload %d: %s went from %v to %v", i, series, before.sum(series), after.sum(series))
			}
		}
		round()
	}

	checkExchangeLog(t, logFile, exchanges, hook, throwColumn)
}

// checkExchangeLog reads the Caddy log sink: one "credentials exchange"
// line per exchange, with the fields of each kind of outcome.
func checkExchangeLog(t *testing.T, logFile string, exchanges int, hook string, throwColumn int) {
	t.Helper()
	data, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	var lines []map[string]any
	for _, line := range bytes.Split(data, []byte("\n")) {
		var entry map[string]any
		if json.Unmarshal(line, &entry) == nil && entry["msg"] == "credentials exchange" {
			lines = append(lines, entry)
		}
	}
	if len(lines) != exchanges {
		t.Fatalf("%d exchange log lines for %d exchanges", len(lines), exchanges)
	}
	byOutcome := map[string]map[string]any{}
	for _, l := range lines {
		key := fmt.Sprint(l["outcome"], "/", l["error"])
		byOutcome[key] = l
		d, _ := l["duration"].(map[string]any)
		if _, ok := d["total"]; !ok {
			t.Errorf("no duration.total in %v", l)
		}
	}
	want := func(key string, fields map[string]any) map[string]any {
		t.Helper()
		l, ok := byOutcome[key]
		if !ok {
			t.Fatalf("no %s line among %v", key, lines)
		}
		for k, v := range fields {
			if fmt.Sprint(l[k]) != fmt.Sprint(v) {
				t.Errorf("%s: %s = %v, want %v", key, k, l[k], v)
			}
		}
		return l
	}

	issued := want("issued/<nil>", map[string]any{"level": "info", "client_id": "svc-ok", "audience": "https://api.example.com",
		"scope_after": "read:a extra:b", "claims_added": []any{"https://example.com/tier"}, "status": 200})
	if _, ok := issued["scope_before"]; !ok {
		t.Errorf("issued: no scope_before in %v", issued)
	}
	dropped, _ := issued["claims_dropped"].([]any)
	if len(dropped) != 1 || !strings.Contains(fmt.Sprint(dropped[0]), "https://tenant.auth0.com/x") ||
		!strings.Contains(fmt.Sprint(dropped[0]), "reason:") {
		t.Errorf("issued: claims_dropped = %v", issued["claims_dropped"])
	}
	d := issued["duration"].(map[string]any)
	for _, step := range []string{"upstream", "verify", "scripts", "sign", "total"} {
		if _, ok := d[step]; !ok {
			t.Errorf("issued: no duration.%s in %v", step, d)
		}
	}

	want("denied/invalid_request", map[string]any{"level": "info", "client_id": "svc-deny", "status": 400,
		"error_description": "this client may not have tokens"})
	want("denied/invalid_client", map[string]any{"level": "info", "client_id": "svc-ok", "status": 401})
	thrown := want("error/server_error", map[string]any{"level": "error", "client_id": "svc-throw", "status": 500,
		"script": hook, "line": obsThrowLine, "column": throwColumn, "error_description": "the hook broke"})
	if stack := fmt.Sprint(thrown["js_stack"]); !strings.Contains(stack, fmt.Sprintf("%s:%d:%d", hook, obsThrowLine, throwColumn)) ||
		strings.Contains(stack, "github.com") || strings.Contains(stack, "native") {
		t.Errorf("js_stack = %q", stack)
	}
	up := want("upstream_error/server_error", map[string]any{"level": "error", "status": 502})
	if cause := fmt.Sprint(up["cause"]); !strings.Contains(cause, "upstream access token") {
		t.Errorf("upstream_error cause = %q", cause)
	}
}
