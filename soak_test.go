package credentialsexchange

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// Issue 9's memory target: RSS after 200,000 exchanges within 30 MB of RSS
// after 20,000. The exchanges go through the provisioned Handler.ServeHTTP
// in-process, with an in-memory upstream as the next handler: everything the
// handler does per exchange (parsing, verifying the upstream's RS256 token,
// the warm runtimes of the hook and the action, re-signing) runs for real,
// without the loopback HTTP that would only add time and the kernel's
// socket buffers to what is measured. The counts and the RSS bound are in
// soak_race_test.go and soak_norace_test.go: under -race an exchange is
// several times slower and the race runtime's own memory grows, so there
// the soak is shorter and its RSS bound looser (those files say why).
const (
	soakMaxHeapGrowth = 8 << 20 // live Go heap after a collection
	soakClients       = 4       // concurrent exchanges: more than one warm runtime in use
	soakTokens        = 8       // distinct upstream tokens, served in turn
)

// soakHook is the starter hook with what long-lived scripts do between
// exchanges: module state that stays bounded (a counter), global state, and
// timers left behind unref'd (as AbortSignal.timeout leaves them), which
// the loop must drop, time.Timer and all, when each exchange ends.
const soakHook = `
let served = 0;
module.exports = function (client, scope, audience, context, cb) {
	served++;
	global.lastClient = client.id;
	setTimeout(function () { global.late = served; }, 60000).unref();
	setInterval(function () {}, 30000).unref();
	var access_token = {};
	access_token.scope = (scope || []).filter(function (s) { return s !== 'admin'; });
	if (client.metadata.tier === 'gold') {
		access_token.scope.push('reports:read');
	}
	access_token['https://example.com/tier'] = client.metadata.tier || 'standard';
	access_token['https://example.com/served'] = served;
	cb(null, access_token);
};`

// fixedUpstream answers every request with one of a few token responses in
// turn; unlike scriptedUpstream it records nothing, so it holds no memory
// and is safe for concurrent use.
type fixedUpstream struct {
	bodies [][]byte
	n      atomic.Uint64
}

func (u *fixedUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) error {
	_, _ = io.Copy(io.Discard, r.Body)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(u.bodies[u.n.Add(1)%uint64(len(u.bodies))])
	return nil
}

var _ caddyhttp.Handler = (*fixedUpstream)(nil)

// writeP256Key writes an EC P-256 signing key: ES256 signs in a fraction of
// RS256's time, so the soak's time goes to the handler, not to RSA.
func writeP256Key(t *testing.T) string {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(k)
	p := filepath.Join(t.TempDir(), "p256.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// rssBytes is the process's resident set (VmRSS in /proc/self/status).
func rssBytes(t *testing.T) uint64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skipf("no /proc/self/status: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("VmRSS line %q: %v", line, err)
			}
			return kb << 10
		}
	}
	t.Skip("no VmRSS in /proc/self/status")
	return 0
}

type memSample struct{ rss, heapInuse, goroutines uint64 }

// settle collects garbage and returns what it can to the OS, so that RSS
// and the heap count what is live, not what the collector has yet to free.
// Twice: the first collection runs finalizers that free more.
func settle(t *testing.T) memSample {
	t.Helper()
	for range 2 {
		runtime.GC()
		debug.FreeOSMemory()
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return memSample{rss: rssBytes(t), heapInuse: ms.HeapInuse, goroutines: uint64(runtime.NumGoroutine())}
}

func mib(n uint64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// TestSoakMemoryBounded runs soakTotal exchanges and checks that the
// process's RSS and live heap after them are within bounds of what they
// were after soakWarm: memory a warm runtime, the action cache, the loop's
// dropped timers or the key and JWKS caches keep per exchange would show
// as growth proportional to the exchanges between the two samples.
func TestSoakMemoryBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("soak: not in -short")
	}
	up := newTestUpstream(t)
	bodies := make([][]byte, soakTokens)
	for i := range bodies {
		tok := up.token(t, func(c map[string]any) {
			c["jti"] = fmt.Sprintf("soak-%d", i)
			c["scope"] = "read:a admin"
		})
		bodies[i] = []byte(tokenResponse(tok))
	}
	next := &fixedUpstream{bodies: bodies}
	// examples/action.js: an async action that keeps a count in api.cache,
	// one key rewritten on every exchange.
	action, err := filepath.Abs(filepath.Join("examples", "action.js"))
	if err != nil {
		t.Fatal(err)
	}
	h := provision(t, &Handler{
		Hook:        writeScript(t, soakHook),
		Actions:     []string{action},
		UpstreamKey: up.keyFile,
		SigningKey:  writeP256Key(t),
		Clients:     map[string]ClientInfo{"svc": {Name: "Service", Metadata: map[string]string{"tier": "gold"}}},
	})
	body := []byte(ccForm.Encode())

	var failed atomic.Value // first failure, as a string
	exchange := func(w *httptest.ResponseRecorder) {
		r := httptest.NewRequest(http.MethodPost, "/oauth/token", bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if err := h.ServeHTTP(w, r, next); err != nil {
			failed.CompareAndSwap(nil, "ServeHTTP: "+err.Error())
		} else if w.Code != http.StatusOK {
			failed.CompareAndSwap(nil, fmt.Sprintf("status %d: %s", w.Code, w.Body))
		}
	}
	// run does n more exchanges from soakClients goroutines.
	run := func(n int) {
		var wg sync.WaitGroup
		var left atomic.Int64
		left.Store(int64(n))
		for range soakClients {
			wg.Go(func() {
				for left.Add(-1) >= 0 && failed.Load() == nil {
					exchange(httptest.NewRecorder())
				}
			})
		}
		wg.Wait()
		if f := failed.Load(); f != nil {
			t.Fatalf("an exchange failed: %s", f)
		}
	}

	// The first exchange shows the hook and the action both ran.
	rec := httptest.NewRecorder()
	exchange(rec)
	if f := failed.Load(); f != nil {
		t.Fatal(f)
	}
	claims := issuedClaims(t, rec)
	if string(claims["https://example.com/issued_here"]) != "1" || string(claims["https://example.com/tier"]) != `"gold"` {
		t.Fatalf("first exchange's claims: %v", claims)
	}

	start := time.Now()
	run(soakWarm - 1)
	warm := settle(t)
	warmTook := time.Since(start)
	run(soakTotal - soakWarm)
	end := settle(t)
	t.Logf("%d exchanges in %s (%s per exchange, %d at once)", soakTotal, time.Since(start).Round(time.Millisecond),
		(time.Since(start) / soakTotal).Round(time.Microsecond), soakClients)
	t.Logf("after %d: RSS %s, heap in use %s, %d goroutines (%s)", soakWarm, mib(warm.rss), mib(warm.heapInuse), warm.goroutines, warmTook.Round(time.Millisecond))
	t.Logf("after %d: RSS %s, heap in use %s, %d goroutines", soakTotal, mib(end.rss), mib(end.heapInuse), end.goroutines)

	if end.rss > warm.rss+soakMaxRSSGrowth {
		t.Errorf("RSS grew by %s between %d and %d exchanges, more than %s", mib(end.rss-warm.rss), soakWarm, soakTotal, mib(soakMaxRSSGrowth))
	}
	// The hook leaves two unref'd timers per exchange; dropped ones must
	// not hold goroutines (heap they hold shows in the bound above).
	if end.goroutines > warm.goroutines+2 {
		t.Errorf("goroutines went from %d to %d between %d and %d exchanges", warm.goroutines, end.goroutines, soakWarm, soakTotal)
	}
	if end.heapInuse > warm.heapInuse+soakMaxHeapGrowth {
		t.Errorf("live heap grew by %s between %d and %d exchanges, more than %s", mib(end.heapInuse-warm.heapInuse), soakWarm, soakTotal, mib(soakMaxHeapGrowth))
	}
}
