package credentialsexchange_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/caddyhook/caddyhook/internal/oauthserver"
)

// TestMisbehavingScripts sends, through a real Caddy in front of the
// go-oauth2 server, requests that make the hook or the action misbehave:
// hostile values thrown or passed back, a thenable that denies, a
// catastrophic regular expression on a client-supplied value, and two memory
// bombs. Each must end in an OAuth error without a token, within the time
// limit plus a loose margin, and the next request on the same handler must
// get a hooked token.
func TestMisbehavingScripts(t *testing.T) {
	upstream, err := oauthserver.Start(oauthserver.Options{Clients: []oauthserver.Client{{ID: "svc", Secret: "s"}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = upstream.Close() })
	dir, _ := filepath.Abs(filepath.Join("testdata", "hostile"))
	// Two handlers: one whose time limit is short, for everything but the
	// memory bombs, and one whose time limit is long enough that only the
	// memory limit can stop a bomb.
	const timeout, bombTimeout = time.Second, 20 * time.Second
	port, bombPort := freePort(t), freePort(t)
	key := writeKey(t, "p256")
	site := func(port int, timeout time.Duration, memory string) string {
		return siteBlock(port, upstream.URL, exchangeDirective(filepath.Join(dir, "hook.js"), key, upstream.URL,
			"action "+filepath.Join(dir, "action.js"), "timeout "+timeout.String(), "memory_limit "+memory))
	}
	startCaddy(t, globalOptions(t)+site(port, timeout, "1GiB")+site(bombPort, bombTimeout, "256MiB"))
	bases := map[bool]string{
		false: fmt.Sprintf("http://127.0.0.1:%d", port),
		true:  fmt.Sprintf("http://127.0.0.1:%d", bombPort),
	}

	exchange := func(t *testing.T, base string, extra url.Values) (rawResponse, time.Duration) {
		t.Helper()
		form := url.Values{"grant_type": {"client_credentials"}}
		for k, v := range extra {
			form[k] = v
		}
		start := time.Now()
		r := postForm(t, base, "/oauth/token", form, "svc", "s")
		return r, time.Since(start)
	}
	hooked := func(t *testing.T, base string) {
		t.Helper()
		r, _ := exchange(t, base, nil)
		var resp map[string]any
		if err := json.Unmarshal(r.body, &resp); err != nil || r.status != 200 {
			t.Fatalf("the next request: %d %s", r.status, r.body)
		}
		tok := verify(t, fetchJWKS(t, base), resp["access_token"].(string))
		if claim(t, tok, "https://example.com/hooked") != true || claim(t, tok, "https://example.com/action") != true {
			t.Fatal("the next request's token did not go through the hook and the action")
		}
	}
	hooked(t, bases[false])
	hooked(t, bases[true])

	// A client's JSON number that overflows a float64 reaches the hook as
	// Infinity, as Node's JSON.parse gives it; it panicked the handler.
	t.Run("JSON number 1e999999", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPost, bases[false]+"/oauth/token", strings.NewReader(
			`{"grant_type":"client_credentials","client_id":"svc","client_secret":"s","n":1e999999,"m":-1e999999}`))
		req.Header.Set("Content-Type", "application/json")
		r := do(t, req)
		if r.status != 200 || !bytes.Contains(r.body, []byte("access_token")) {
			t.Fatalf("got %d %s", r.status, r.body)
		}
	})

	heapAfterGC := func() uint64 {
		runtime.GC()
		debug.FreeOSMemory()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	baseline := heapAfterGC()

	cases := []struct {
		mode   string
		extra  url.Values
		status int
		code   string
		bomb   bool
	}{
		{mode: "cb-null-proto"},
		{mode: "cb-throwing"},
		{mode: "cb-proxy"},
		{mode: "cb-symbol"},
		{mode: "throw-null-proto"},
		{mode: "throw-throwing"},
		{mode: "timer-throw"},
		{mode: "reject-throwing"},
		{mode: "async-reject"},
		{mode: "thenable-deny", status: 400, code: "invalid_request"},
		{mode: "deny-throwing-args"},
		{mode: "action-throw-null-proto"},
		{mode: "action-reject-throwing"},
		{mode: "regex", extra: url.Values{"org": {strings.Repeat("a", 28) + "!"}}},
		{mode: "string-bomb", bomb: true},
		{mode: "array-bomb", bomb: true},
	}
	for _, c := range cases {
		t.Run(c.mode, func(t *testing.T) {
			if c.status == 0 {
				c.status, c.code = 500, "server_error"
			}
			extra := url.Values{"mode": {c.mode}}
			for k, v := range c.extra {
				extra[k] = v
			}
			base, limit := bases[c.bomb], timeout
			if c.bomb {
				limit = bombTimeout
			}
			r, took := exchange(t, base, extra)
			var body map[string]any
			if err := json.Unmarshal(r.body, &body); err != nil || r.status != c.status || body["error"] != c.code {
				t.Fatalf("got %d %s, want %d %s", r.status, r.body, c.status, c.code)
			}
			if bytes.Contains(r.body, []byte("access_token")) || bytes.Contains(r.body, []byte("0x")) {
				t.Fatalf("the error response leaks: %s", r.body)
			}
			// Loose on purpose: the machine is shared; the point is that a
			// runaway script does not run on for its own length of time.
			if took > limit+5*time.Second {
				t.Errorf("took %v, the time limit is %v", took, limit)
			}
			if c.bomb && body["error_description"] != "memory limit exceeded" {
				t.Errorf("a bomb ended with %q, want the memory limit", body["error_description"])
			}
			t.Logf("%s: %d %s in %v", c.mode, r.status, body["error_description"], took.Round(time.Millisecond))
			hooked(t, base)
		})
	}
	if after := heapAfterGC(); after > baseline+200<<20 {
		t.Errorf("heap after the bombs is %d MiB, %d MiB before", after>>20, baseline>>20)
	}
}
