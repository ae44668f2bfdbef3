package credentialsexchange_test

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"

	"github.com/caddyhook/caddyhook/internal/oauthserver"
)

// reloadHook keeps module state and leaves unref'd timers behind, as the
// soak's hook does: a reload must drop the old handler's warm runtimes with
// whatever their loops still hold.
const reloadHook = `
let served = 0;
module.exports = function (client, scope, audience, context, cb) {
	served++;
	setTimeout(function () { global.late = served; }, 60000).unref();
	cb(null, { scope: scope, 'https://example.com/served': served });
};`

// Issue 9's goroutine target: goroutines back to their baseline after 10
// config reloads. A real Caddy in this process serves a handler with
// generated ES256 keys (a keyring refresh goroutine per handler), the
// upstream's JWKS fetched over HTTP, a hook and an action with api.cache;
// each reload provisions a new handler and cleans up the old one, with
// exchanges between reloads so every handler builds warm runtimes and
// registers runs with the memory watchdog. Whatever a handler starts and
// its Cleanup does not stop shows as goroutines above the baseline.
func TestReloadsLeaveNoGoroutines(t *testing.T) {
	upstream := startOAuthServer(t, oauthserver.Options{Clients: []oauthserver.Client{
		{ID: "svc-billing", Secret: "billing-secret"},
	}})
	dir := t.TempDir()
	hook := filepath.Join(dir, "hook.js")
	if err := os.WriteFile(hook, []byte(reloadHook), 0o600); err != nil {
		t.Fatal(err)
	}
	action, err := filepath.Abs(filepath.Join("examples", "action.js"))
	if err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	global := globalOptions(t)
	config := func(i int) []byte {
		t.Helper()
		// A different timeout each time: every reload is a new config.
		directive := fmt.Sprintf("credentials_exchange {\n\thook %s\n\taction %s\n\tsigning_alg ES256\n\tupstream_jwks %s/.well-known/jwks.json\n\ttimeout %ds\n}",
			hook, action, upstream.URL, 5+i)
		// A declared transport (keepalive 2m is Caddy's default): Caddy
		// v2.11.9's reverse_proxy builds its default transport outside the
		// module system (reverseproxy.go, "set up transport"), so no config
		// unload closes its kept-alive upstream connections - a client and a
		// server goroutine pair per reload, until the 2 min idle timeout;
		// plain reverse_proxy without credentials_exchange shows it as well.
		// Declared (with an option; an empty block adapts to nothing), the
		// transport is a module whose Cleanup closes them, and what is left
		// is this module's own.
		site := fmt.Sprintf("http://127.0.0.1:%d {\n\tbind 127.0.0.1\n\t%s\n\treverse_proxy %s {\n\t\ttransport http {\n\t\t\tkeepalive 2m\n\t\t}\n\t}\n}\n",
			port, strings.ReplaceAll(directive, "\n", "\n\t"), strings.TrimPrefix(upstream.URL, "http://"))
		cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(global+site), nil)
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	// The test's own client, so that its kept-alive connections (a
	// goroutine each side) can be closed before counting.
	client := &http.Client{Transport: &http.Transport{}, Timeout: 30 * time.Second}
	base := site{port: port}.url()
	exchange := func() {
		t.Helper()
		status, body := exchangeAcrossReload(t, client, base)
		if status != http.StatusOK || !bytes.Contains(body, []byte("access_token")) {
			t.Fatalf("exchange: %d %s", status, body)
		}
	}
	// quiesce closes the kept-alive connections that are no leak of a
	// reload: the test client's, and those of http.DefaultTransport (which
	// fetches the upstream JWKS), bounded per host and closed after 90 s
	// idle anyway. The server's side of each ends soon after.
	quiesce := func() {
		client.CloseIdleConnections()
		http.DefaultClient.CloseIdleConnections()
	}

	if err := caddy.Load(config(0), true); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = caddy.Stop() })
	for range 5 {
		exchange()
	}
	quiesce()
	// The baseline: Caddy serving one config, after the server's side of
	// the closed connections and the watchdog (it stops when no run is
	// registered) have had a moment to end.
	time.Sleep(500 * time.Millisecond)
	baseline := runtime.NumGoroutine()

	const reloads = 10
	for i := 1; i <= reloads; i++ {
		if err := caddy.Load(config(i), true); err != nil {
			t.Fatalf("reload %d: %v", i, err)
		}
		// The old server closed the client's connections to it.
		quiesce()
		for range 5 {
			exchange()
		}
	}
	quiesce()

	// Poll: goroutines of closed connections, stopped timers and the
	// watchdog end asynchronously. The deadline is generous; only the count
	// is asserted.
	const slack = 2
	var now int
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		now = runtime.NumGoroutine()
		if now <= baseline+slack || time.Now().After(deadline) {
			break
		}
	}
	t.Logf("goroutines: %d after one config, %d after %d reloads", baseline, now, reloads)
	if now > baseline+slack {
		var stacks bytes.Buffer
		_ = pprof.Lookup("goroutine").WriteTo(&stacks, 1)
		t.Fatalf("%d goroutines after %d reloads, baseline %d (+%d allowed); they are:\n%s", now, reloads, baseline, slack, stacks.String())
	}
}
