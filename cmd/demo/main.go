// Command demo runs caddyhook end to end on this machine: a real OAuth 2.0
// server (go-oauth2) on 127.0.0.1, Caddy configured from Caddyfile.example in
// front of it, and a client that asks both for a token, so the difference the
// hook makes is printed side by side. It keeps serving until interrupted
// (or exits at once with -once) and prints a curl command to try.
//
// Caddy's admin API is turned off in the demo's config, whatever the
// Caddyfile says, so the demo never collides with a Caddy already running on
// the machine (which holds the default admin address localhost:2019).
// -upstream-only starts just the OAuth server, on -upstream-port, for running
// your own Caddy in front of it.
package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
	"golang.org/x/oauth2/clientcredentials"

	_ "github.com/caddyhook/caddyhook"
	"github.com/caddyhook/caddyhook/internal/oauthserver"
)

func main() {
	once := flag.Bool("once", false, "exit after the demo requests instead of serving until interrupted")
	config := flag.String("config", "Caddyfile.example", "the Caddyfile to run")
	port := flag.String("port", "8080", "the port Caddy listens on, on 127.0.0.1")
	upstreamPort := flag.Int("upstream-port", 0, "the port the OAuth server listens on, on 127.0.0.1 (0: a free port)")
	upstreamOnly := flag.Bool("upstream-only", false, "start only the OAuth server, for your own Caddy in front of it (use with -upstream-port)")
	flag.Parse()
	log.SetFlags(0)
	if err := run(*config, *port, *upstreamPort, *once, *upstreamOnly); err != nil {
		log.Fatalf("demo: %v", err)
	}
}

func run(config, port string, upstreamPort int, once, upstreamOnly bool) error {
	upstream, err := oauthserver.Start(oauthserver.Options{
		Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(upstreamPort)),
		Clients: []oauthserver.Client{
			{ID: "demo-client", Secret: "demo-secret"},
			{ID: "gold-client", Secret: "gold-secret"},
		},
	})
	if err != nil {
		return fmt.Errorf("starting the OAuth server: %w", err)
	}
	defer upstream.Close()

	if upstreamOnly {
		fmt.Printf(`OAuth server (go-oauth2): %[1]s
  clients: demo-client:demo-secret, gold-client:gold-secret
  token:   %[1]s/oauth/token
  JWKS:    %[1]s/.well-known/jwks.json

Run your own Caddy in front of it, from the repository root:
  CADDYHOOK_UPSTREAM=%[2]s caddy run --config Caddyfile.example
`, upstream.URL, strings.TrimPrefix(upstream.URL, "http://"))
		if once {
			return nil
		}
		return waitForSignal()
	}

	// Caddyfile.example reads these; anything set by the caller wins.
	setDefault("CADDYHOOK_UPSTREAM", strings.TrimPrefix(upstream.URL, "http://"))
	setDefault("CADDYHOOK_PORT", port)
	setDefault("DEMO_API_KEY", "demo-api-key")

	caddyfile, err := os.ReadFile(config)
	if err != nil {
		return fmt.Errorf("%w (run the demo from the repository root)", err)
	}
	cfgJSON, _, err := caddyconfig.GetAdapter("caddyfile").Adapt(caddyfile, map[string]any{"filename": config})
	if err != nil {
		return fmt.Errorf("adapting %s: %w", config, err)
	}
	if cfgJSON, err = withoutAdmin(cfgJSON); err != nil {
		return fmt.Errorf("adapting %s: %w", config, err)
	}
	if err := caddy.Load(cfgJSON, true); err != nil {
		return fmt.Errorf("starting Caddy: %w", err)
	}
	defer caddy.Stop() //nolint:errcheck

	proxy := "http://127.0.0.1:" + os.Getenv("CADDYHOOK_PORT")
	fmt.Printf("\nOAuth server (go-oauth2):  %s\nCaddy + credentials_exchange: %s\n", upstream.URL, proxy)
	for _, c := range []struct{ id, secret string }{{"demo-client", "demo-secret"}, {"gold-client", "gold-secret"}} {
		if err := compare(upstream.URL, proxy, c.id, c.secret); err != nil {
			return err
		}
	}
	fmt.Printf(`
Try it yourself:
  curl -s %[1]s/oauth/token -d grant_type=client_credentials \
       -u gold-client:gold-secret -d scope='read:data admin'
  curl -s %[1]s/.well-known/jwks.json

Edit examples/hook.js and run the demo again to see your change.
`, proxy)
	if once {
		return nil
	}
	return waitForSignal()
}

func waitForSignal() error {
	fmt.Println("Serving; press Ctrl-C to stop.")
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, os.Interrupt, syscall.SIGTERM)
	<-stop
	return nil
}

// withoutAdmin turns Caddy's admin API off in an adapted config. The demo
// needs no admin endpoint, and the default one (localhost:2019) is taken
// whenever another Caddy runs on the machine, which would stop the demo
// from starting.
func withoutAdmin(cfgJSON []byte) ([]byte, error) {
	var cfg map[string]any
	if err := json.Unmarshal(cfgJSON, &cfg); err != nil {
		return nil, err
	}
	cfg["admin"] = map[string]any{"disabled": true}
	return json.Marshal(cfg)
}

// compare asks the upstream and the proxy for a token with the same
// credentials and prints both tokens' claims.
func compare(upstream, proxy, id, secret string) error {
	cfg := clientcredentials.Config{ClientID: id, ClientSecret: secret, Scopes: []string{"read:data", "admin"}}
	fmt.Printf("\n== client %s asks for scope %q\n", id, strings.Join(cfg.Scopes, " "))
	for _, side := range []struct{ name, base string }{{"straight from the OAuth server", upstream}, {"through Caddy: hook applied, re-signed", proxy}} {
		cfg.TokenURL = side.base + "/oauth/token"
		tok, err := cfg.Token(context.Background())
		if err != nil {
			return fmt.Errorf("token from %s: %w", side.base, err)
		}
		claims, err := decodeClaims(tok.AccessToken)
		if err != nil {
			return err
		}
		fmt.Printf("-- %s:\n%s\n", side.name, claims)
	}
	resp, err := http.Get(proxy + "/.well-known/jwks.json")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var jwks struct {
		Keys []struct {
			Kid string `json:"kid"`
		} `json:"keys"`
	}
	body, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(body, &jwks); err != nil {
		return fmt.Errorf("JWKS: %w", err)
	}
	kids := make([]string, len(jwks.Keys))
	for i, k := range jwks.Keys {
		kids[i] = k.Kid
	}
	fmt.Printf("-- JWKS served by Caddy holds the OAuth server's and Caddy's keys: %s\n", strings.Join(kids, ", "))
	return nil
}

// decodeClaims shows a JWT's payload; verification is the proxy's and the
// resource server's business, this is only for reading.
func decodeClaims(jwt string) (string, error) {
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return "", errors.New("not a JWT")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", err
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		return "", err
	}
	out, _ := json.MarshalIndent(claims, "   ", "  ")
	return "   " + string(out), nil
}

func setDefault(name, value string) {
	if os.Getenv(name) == "" {
		_ = os.Setenv(name, value)
	}
}
