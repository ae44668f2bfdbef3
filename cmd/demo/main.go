// Command demo runs caddyhook end to end on this machine: a real OAuth 2.0
// server (go-oauth2) on 127.0.0.1, Caddy configured from Caddyfile.example in
// front of it, and a client that asks both for a token, so the difference the
// hook makes is printed side by side. It keeps serving until interrupted
// (or exits at once with -once) and prints a curl command to try.
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
	"net/http"
	"os"
	"os/signal"
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
	flag.Parse()
	log.SetFlags(0)
	if err := run(*config, *port, *once); err != nil {
		log.Fatalf("demo: %v", err)
	}
}

func run(config, port string, once bool) error {
	upstream, err := oauthserver.Start(oauthserver.Options{Clients: []oauthserver.Client{
		{ID: "demo-client", Secret: "demo-secret"},
		{ID: "gold-client", Secret: "gold-secret"},
	}})
	if err != nil {
		return fmt.Errorf("starting the OAuth server: %w", err)
	}
	defer upstream.Close()

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
	fmt.Println("Serving; press Ctrl-C to stop.")
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, os.Interrupt, syscall.SIGTERM)
	<-stop
	return nil
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
