package credentialsexchange_test

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"runtime/pprof"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
)

// upstream_issuer's background discovery lives as long as its handler and
// no longer: after reloads of a config whose issuer never answers with a
// document (the goroutine retries) goroutines are back at their baseline.
func TestReloadsStopDiscovery(t *testing.T) {
	issuer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down", http.StatusServiceUnavailable)
	}))
	t.Cleanup(issuer.Close)
	hook := writeDiscoveryHook(t)
	port := freePort(t)
	global := globalOptions(t)
	config := func(i int) []byte {
		t.Helper()
		site := fmt.Sprintf("http://127.0.0.1:%d {\n\tbind 127.0.0.1\n\tcredentials_exchange {\n\t\thook %s\n\t\tupstream_issuer %s\n\t\ttimeout %ds\n\t}\n\trespond 404\n}\n",
			port, hook, issuer.URL, 5+i)
		cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(global+site), nil)
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	if err := caddy.Load(config(0), true); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = caddy.Stop() })
	settle := func() int {
		http.DefaultClient.CloseIdleConnections()
		time.Sleep(500 * time.Millisecond)
		return runtime.NumGoroutine()
	}
	baseline := settle()
	const reloads = 10
	for i := 1; i <= reloads; i++ {
		if err := caddy.Load(config(i), true); err != nil {
			t.Fatalf("reload %d: %v", i, err)
		}
	}
	const slack = 2
	var now int
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		http.DefaultClient.CloseIdleConnections()
		now = runtime.NumGoroutine()
		if now <= baseline+slack || time.Now().After(deadline) {
			break
		}
	}
	if now > baseline+slack {
		var stacks bytes.Buffer
		_ = pprof.Lookup("goroutine").WriteTo(&stacks, 1)
		t.Fatalf("%d goroutines after %d reloads, baseline %d (+%d allowed):\n%s", now, reloads, baseline, slack, stacks.String())
	}
}
