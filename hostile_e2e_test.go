package credentialsexchange_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// hostileUpstream is a deliberately odd upstream, not an OAuth server: it
// answers the token path the way a broken or compromised one might, chosen
// by the request's X-Mode header, so the proxy's response side can be tested
// against answers no real server library gives.
type hostileUpstream struct {
	url         string
	lastAE      atomic.Value // Accept-Encoding of the last request
	bigWritten  atomic.Int64 // bytes of the oversized answer the proxy accepted
	bigFinished atomic.Bool
}

// fakeJWT returns a compact JWT with the given claims and a junk signature:
// the response guard reads claims, it never verifies.
func fakeJWT(claims map[string]any) string {
	enc := func(v any) string {
		b, _ := json.Marshal(v)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	return enc(map[string]any{"alg": "RS256", "typ": "at+jwt"}) + "." + enc(claims) + ".c2ln"
}

func startHostileUpstream(t *testing.T) *hostileUpstream {
	t.Helper()
	u := &hostileUpstream{}
	exp := time.Now().Add(time.Hour).Unix()
	ccToken := fakeJWT(map[string]any{"sub": "svc", "client_id": "svc", "exp": exp})
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/jwks.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"keys":[]}`)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		u.lastAE.Store(r.Header.Get("Accept-Encoding"))
		w.Header().Set("Content-Type", "application/json")
		switch r.Header.Get("X-Mode") {
		case "cc-token": // an unhooked client credentials token, whatever was asked
			_, _ = fmt.Fprintf(w, `{"access_token":%q,"token_type":"Bearer"}`, ccToken)
		case "cc-token-escaped-name":
			_, _ = fmt.Fprintf(w, `{"access\u005ftoken":%q}`, ccToken)
		case "cc-token-form":
			w.Header().Set("Content-Type", "application/x-www-form-urlencoded")
			_, _ = io.WriteString(w, "access_token="+ccToken+"&token_type=bearer")
		case "user-token": // a token issued to a user: passes
			_, _ = fmt.Fprintf(w, `{"access_token":%q}`, fakeJWT(map[string]any{"sub": "user-1", "client_id": "svc", "exp": exp}))
		case "opaque":
			_, _ = io.WriteString(w, `{"access_token":"opaque-value"}`)
		case "created": // a 201 with a token for a client credentials request
			w.WriteHeader(http.StatusCreated)
			_, _ = fmt.Fprintf(w, `{"access_token":%q}`, ccToken)
		case "abort": // promise 1000 bytes, send 10, hang up
			w.Header().Set("Content-Length", "1000")
			w.WriteHeader(http.StatusOK)
			_, _ = io.WriteString(w, `{"access_`)
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		case "big": // far over the proxy's limit
			chunk := bytes.Repeat([]byte(" "), 64<<10)
			_, _ = io.WriteString(w, `{"access_token":"x","pad":"`)
			for i := 0; i < 1024; i++ { // 64 MiB
				n, err := w.Write(chunk)
				u.bigWritten.Add(int64(n))
				if err != nil {
					return
				}
			}
			u.bigFinished.Store(true)
		default:
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, `{"error":"invalid_request"}`)
		}
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	u.url = "http://" + ln.Addr().String()
	return u
}

// TestHostileUpstream checks the response side: whatever the upstream
// answers, no client credentials token reaches the client without the hook,
// and a broken answer is a 502 OAuth error, not an empty reply.
func TestHostileUpstream(t *testing.T) {
	up := startHostileUpstream(t)
	port := freePort(t)
	cfg := globalOptions(t) + siteBlock(port, up.url,
		exchangeDirective(hookPath(t, "starter.js"), writeKey(t, "p256"), up.url))
	startCaddy(t, cfg)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)

	send := func(t *testing.T, mode, body string) rawResponse {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, base+"/oauth/token", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Accept-Encoding", "gzip")
		req.Header.Set("X-Mode", mode)
		return do(t, req)
	}
	password := url.Values{"grant_type": {"password"}, "username": {"u"}, "password": {"p"}, "client_id": {"svc"}}.Encode()
	cc := url.Values{"grant_type": {"client_credentials"}, "client_id": {"svc"}, "client_secret": {"s"}}.Encode()

	blocked := func(t *testing.T, r rawResponse) {
		t.Helper()
		var body map[string]any
		if err := json.Unmarshal(r.body, &body); err != nil || r.status != http.StatusBadGateway || body["error"] != "server_error" {
			t.Fatalf("got %d %s, want a 502 server_error", r.status, r.body)
		}
		if bytes.Contains(r.body, []byte("access_token")) || bytes.Contains(r.body, []byte("eyJ")) {
			t.Fatalf("a token leaked: %s", r.body)
		}
	}
	cases := []struct {
		name, mode, body string
		pass             bool
	}{
		{"other grant answered with a client credentials token", "cc-token", password, false},
		{"the same with an escaped member name", "cc-token-escaped-name", password, false},
		{"the same, form-encoded", "cc-token-form", password, false},
		{"other grant answered with a user's token", "user-token", password, true},
		{"other grant answered with an opaque token", "opaque", password, true},
		{"client credentials answered 201 with a token", "created", cc, false},
		{"client credentials, upstream aborts mid-body", "abort", cc, false},
		{"other grant, upstream aborts mid-body", "abort", password, false},
		{"client credentials, answer over the limit", "big", cc, false},
		{"other grant, answer over the limit", "big", password, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := send(t, c.mode, c.body)
			if c.pass {
				if r.status != 200 || !bytes.Contains(r.body, []byte("access_token")) {
					t.Fatalf("got %d %s, want the upstream's answer", r.status, r.body)
				}
			} else {
				blocked(t, r)
			}
			if ae, _ := up.lastAE.Load().(string); ae != "identity" {
				t.Errorf("upstream was asked for Accept-Encoding %q, want identity", ae)
			}
		})
	}
	if up.bigFinished.Load() {
		t.Errorf("the proxy read all %d bytes of an over-limit answer instead of stopping", up.bigWritten.Load())
	}
}
