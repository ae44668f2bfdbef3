// Package oauthserver runs a real OAuth 2.0 authorization server, built from
// github.com/go-oauth2/oauth2/v4, that issues RS256 JWT access tokens in the
// shape of RFC 9068 through the library's own AccessGenerate extension point.
// The built-in demo and the end-to-end tests put credentials_exchange in front
// of it; it is not part of the plugin.
package oauthserver

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/go-oauth2/oauth2/v4"
	"github.com/go-oauth2/oauth2/v4/manage"
	"github.com/go-oauth2/oauth2/v4/models"
	"github.com/go-oauth2/oauth2/v4/server"
	"github.com/go-oauth2/oauth2/v4/store"
	"github.com/google/uuid"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
)

// Client is a registered OAuth client.
type Client struct {
	ID     string
	Secret string
}

// Options configures a Server.
type Options struct {
	// Addr to listen on; default 127.0.0.1:0 (a free port).
	Addr    string
	Clients []Client
	// ScopeArray writes the scope as an "scp" array, as fosite's JWT strategy
	// does, instead of RFC 9068's space-separated "scope" string.
	ScopeArray bool
	// DefaultAudience is the aud of tokens requested without an audience.
	DefaultAudience string
	// TokenLifetime defaults to one hour.
	TokenLifetime time.Duration
	// Lenient puts a Node-style router and parameter reader in front of the
	// token endpoint instead of go-oauth2's r.FormValue: the path matches
	// case-insensitively with one optional trailing slash, bodies are read
	// like Node's querystring and body-parser (JSON too, gzip inflated),
	// the last of repeated parameters wins and the body's override the
	// query's. Tokens, keys and the JWKS are the same. See lenient.go; it
	// exists to test that a proxy's reading of a request matches servers
	// that parse differently.
	Lenient bool
}

// secrets are the client secrets of every server started in this process,
// for tests that check no log line holds one (ClientSecrets).
var (
	secretsMu sync.Mutex
	secrets   = map[string]bool{}
)

// ClientSecrets returns the client secret of every client of every server
// started in this process so far.
func ClientSecrets() []string {
	secretsMu.Lock()
	defer secretsMu.Unlock()
	out := make([]string, 0, len(secrets))
	for s := range secrets {
		out = append(out, s)
	}
	return out
}

// Server is a running authorization server.
type Server struct {
	// URL is the server's base URL, such as http://127.0.0.1:41234.
	URL string

	opts     Options
	http     *http.Server
	listener net.Listener

	mu   sync.RWMutex
	keys []jwk.Key // private; the last one signs, all are published
}

// Start starts a server; Close stops it.
func Start(opts Options) (*Server, error) {
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	if opts.TokenLifetime == 0 {
		opts.TokenLifetime = time.Hour
	}
	if opts.DefaultAudience == "" {
		opts.DefaultAudience = "https://api.example.com"
	}
	s := &Server{opts: opts}
	secretsMu.Lock()
	for _, c := range opts.Clients {
		secrets[c.Secret] = true
	}
	secretsMu.Unlock()
	if err := s.RotateKey(); err != nil {
		return nil, err
	}

	manager := manage.NewDefaultManager()
	manager.SetClientTokenCfg(&manage.Config{AccessTokenExp: opts.TokenLifetime})
	manager.MustTokenStorage(store.NewMemoryTokenStore())
	clients := store.NewClientStore()
	for _, c := range opts.Clients {
		if err := clients.Set(c.ID, &models.Client{ID: c.ID, Secret: c.Secret}); err != nil {
			return nil, err
		}
	}
	manager.MapClientStorage(clients)
	manager.MapAccessGenerate(&jwtGenerator{srv: s})

	oauth := server.NewServer(server.NewConfig(), manager)
	oauth.SetAllowedGrantType(oauth2.ClientCredentials)
	oauth.SetClientInfoHandler(func(r *http.Request) (string, string, error) {
		if _, _, ok := r.BasicAuth(); ok {
			return server.ClientBasicHandler(r)
		}
		return server.ClientFormHandler(r)
	})

	tokenHandler := func(w http.ResponseWriter, r *http.Request) {
		if err := oauth.HandleTokenRequest(w, r); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
		}
	}
	otherHandler := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("X-Upstream", "oauthserver")
		fmt.Fprintf(w, "upstream saw %s %s\n", r.Method, r.URL.RequestURI())
	}
	var handler http.Handler
	if opts.Lenient {
		handler = lenientRouter{token: tokenHandler, jwks: s.serveJWKS, other: otherHandler}
	} else {
		mux := http.NewServeMux()
		mux.HandleFunc("/oauth/token", tokenHandler)
		mux.HandleFunc("/.well-known/jwks.json", s.serveJWKS)
		mux.HandleFunc("/", otherHandler)
		handler = mux
	}

	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return nil, err
	}
	s.listener = ln
	s.URL = "http://" + ln.Addr().String()
	s.http = &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = s.http.Serve(ln) }()
	return s, nil
}

// Close stops the server.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return s.http.Shutdown(ctx)
}

// RotateKey makes a new signing key; earlier keys stay published.
func (s *Server) RotateKey() error {
	raw, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	key, err := jwk.FromRaw(raw)
	if err != nil {
		return err
	}
	if err := jwk.AssignKeyID(key); err != nil {
		return err
	}
	_ = key.Set(jwk.AlgorithmKey, jwa.RS256)
	s.mu.Lock()
	s.keys = append(s.keys, key)
	s.mu.Unlock()
	return nil
}

// PublicKeysJSON returns the JWKS document the server publishes.
func (s *Server) PublicKeysJSON() ([]byte, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	set := jwk.NewSet()
	for _, k := range s.keys {
		pub, err := k.PublicKey()
		if err != nil {
			return nil, err
		}
		_ = pub.Set(jwk.KeyUsageKey, jwk.ForSignature)
		_ = set.AddKey(pub)
	}
	return json.Marshal(set)
}

func (s *Server) serveJWKS(w http.ResponseWriter, r *http.Request) {
	body, err := s.PublicKeysJSON()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(body)
}

func (s *Server) signingKey() jwk.Key {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.keys[len(s.keys)-1]
}

// jwtGenerator issues RFC 9068 access tokens. go-oauth2's stock JWT generator
// writes only aud, sub and exp; resource servers need iss, iat, jti,
// client_id and scope as well.
type jwtGenerator struct{ srv *Server }

func (g *jwtGenerator) Token(_ context.Context, data *oauth2.GenerateBasic, _ bool) (string, string, error) {
	if data.Request == nil {
		return "", "", errors.New("no request")
	}
	ti := data.TokenInfo
	created := ti.GetAccessCreateAt()
	if created.IsZero() {
		created = data.CreateAt
	}
	audience := g.srv.opts.DefaultAudience
	for _, p := range []string{"audience", "resource"} {
		if v := data.Request.FormValue(p); v != "" {
			audience = v
			break
		}
	}
	claims := map[string]any{
		"iss":       g.srv.URL + "/",
		"sub":       data.Client.GetID(),
		"aud":       audience,
		"exp":       created.Add(ti.GetAccessExpiresIn()).Unix(),
		"iat":       created.Unix(),
		"jti":       uuid.NewString(),
		"client_id": data.Client.GetID(),
	}
	if scope := strings.Fields(ti.GetScope()); len(scope) > 0 {
		if g.srv.opts.ScopeArray {
			claims["scp"] = scope
		} else {
			claims["scope"] = strings.Join(scope, " ")
		}
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", "", err
	}
	key := g.srv.signingKey()
	hdr := jws.NewHeaders()
	_ = hdr.Set(jws.TypeKey, "at+jwt")
	_ = hdr.Set(jws.KeyIDKey, key.KeyID())
	signed, err := jws.Sign(payload, jws.WithKey(jwa.RS256, key, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		return "", "", err
	}
	return string(signed), "", nil
}
