// Package credentialsexchange registers a Caddy HTTP handler module that runs
// Auth0 credentials-exchange Hooks in front of any OAuth 2.0 server: it
// intercepts client credentials token responses, verifies the upstream's JWT
// access token, runs the operator's hook, re-signs the token with the amended
// scope and claims, and publishes its signing key in the upstream's JWKS.
package credentialsexchange

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddyhook/caddyhook/caddyhook"
	"github.com/caddyhook/caddyhook/token"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Defaults for the handler's config fields.
const (
	DefaultTokenPath       = "/oauth/token"
	DefaultJWKSPath        = "/.well-known/jwks.json"
	DefaultMaxBodySize     = 64 * 1024
	DefaultJWKSMaxAge      = 5 * time.Minute
	DefaultSigningAlg      = "RS256"
	maxUpstreamResponse    = 1 << 20
	upstreamJWKSTTL        = 5 * time.Minute
	upstreamJWKSRetryAfter = time.Second
	upstreamJWKSMinRefetch = 10 * time.Second
	clockLeeway            = 30 * time.Second
)

// Handler is the credentials_exchange HTTP handler. It wraps the handler
// that reaches the OAuth server (normally reverse_proxy).
type Handler struct {
	// Hook is the path of the Auth0 Hook script
	// (module.exports = function(client, scope, audience, context, cb) {...}).
	// A hook or at least one action is required.
	Hook string `json:"hook,omitempty"`

	// Actions are paths of Auth0 Action scripts
	// (exports.onExecuteCredentialsExchange = async (event, api) => {...}),
	// run after the hook in this order, each seeing what the earlier ones did.
	Actions []string `json:"actions,omitempty"`

	// ModulesDir is a folder of plain-JS CommonJS packages (a node_modules
	// folder, or a folder holding one) that scripts may require. Resolution
	// never leaves it. Default: none; only the built-in modules are available.
	ModulesDir string `json:"modules_dir,omitempty"`

	// FetchAllow are the URL prefixes scripts may call with fetch, request,
	// axios and node-fetch: absolute http or https URLs, matched on scheme,
	// host and port exactly and on the path at a segment boundary (as a
	// plain prefix when it ends in "/"), again on every redirect.
	// Link-local and cloud metadata addresses are refused unless a prefix
	// names them. Placeholders such as {env.API_BASE} are replaced at
	// provisioning. Default: none; every call fails.
	FetchAllow []string `json:"fetch_allow,omitempty"`

	// TokenPath is the path of the OAuth token endpoint whose client
	// credentials responses are rewritten. Default: /oauth/token.
	TokenPath string `json:"token_path,omitempty"`

	// JSONBody says what happens to a token request sent as JSON: "form"
	// re-encodes it as application/x-www-form-urlencoded for the upstream, as
	// RFC 6749 servers require; "keep" forwards it as it came. Default: form.
	JSONBody string `json:"json_body,omitempty"`

	// AudienceParam is the name under which the request's audience parameter
	// is forwarded to the upstream, for example "resource" for RFC 8707
	// servers. The hook still sees it as audience. Default: audience.
	AudienceParam string `json:"audience_param,omitempty"`

	// JWKSPath is the path at which the upstream's JWKS is served with the
	// proxy's public key merged in. Default: the path of the jwks_uri that
	// upstream_issuer discovers, else /.well-known/jwks.json.
	JWKSPath string `json:"jwks_path,omitempty"`

	// UpstreamIssuer is the upstream's issuer identifier, an http(s) URL
	// without query or fragment. The proxy reads the upstream's metadata
	// from it, OpenID Connect Discovery (<issuer>/.well-known/openid-configuration)
	// or else RFC 8414 (/.well-known/oauth-authorization-server inserted
	// before the issuer's path), whose issuer must be identical to this
	// value, and takes from it: the jwks_uri that verifies upstream tokens
	// (unless upstream_jwks, upstream_key or insecure_skip_verify is set),
	// the path at which the merged JWKS is served, the path of that
	// jwks_uri (unless jwks_path is set), and the issuer every upstream
	// token's iss claim must equal (always, once this is set). The document
	// is fetched in the background from start-up, when first needed, and
	// again after 5 minutes; until it has been read, exchanges fail with 502
	// and requests to the discovered path go to the upstream untouched.
	// Redirects are not followed.
	UpstreamIssuer string `json:"upstream_issuer,omitempty"`

	// UpstreamJWKS is the URL of the upstream's JWKS, used to verify its
	// tokens. It is fetched when first needed, cached, and fetched again when
	// a token names an unknown key. At most one of UpstreamJWKS, UpstreamKey
	// and InsecureSkipVerify may be set, and one of them is required unless
	// UpstreamIssuer discovers the upstream's JWKS.
	UpstreamJWKS string `json:"upstream_jwks,omitempty"`

	// UpstreamKey is the path of a file with the upstream's public key(s):
	// PEM (public key or certificate), a JWK or a JWK set.
	UpstreamKey string `json:"upstream_key,omitempty"`

	// InsecureSkipVerify accepts upstream tokens without checking their
	// signature. Only for trying things out. Default: false.
	InsecureSkipVerify bool `json:"insecure_skip_verify,omitempty"`

	// SigningKey is the path of the private key that re-signs tokens: PEM
	// (PKCS#1, PKCS#8 or SEC1) or a JWK; RSA, EC P-256/P-384/P-521 or
	// Ed25519. Default: none; keys are generated and kept in Caddy's
	// storage, shared by every instance that shares the storage.
	SigningKey string `json:"signing_key,omitempty"`

	// SigningAlg is the signing algorithm. With signing_key it overrides the
	// key's default (the key's "alg" member, else RS256 for RSA, the curve's
	// ES algorithm for EC, EdDSA for Ed25519). For generated keys it is one
	// of RS256, PS256, ES256, ES384 or EdDSA. Default: RS256.
	SigningAlg string `json:"signing_alg,omitempty"`

	// PublishKeys are paths of public keys (PEM, JWK or JWK set) published in
	// the JWKS beside the signing key(s) but never used to sign: the old key
	// during a manual rotation, or the next one before it is switched in.
	PublishKeys []string `json:"publish_keys,omitempty"`

	// KeyRotation is how long a generated key signs before the next one
	// takes over. Default: 0, never rotate.
	KeyRotation caddy.Duration `json:"key_rotation,omitempty"`

	// KeyPublishAhead is how long before it starts signing a generated key
	// is published in the JWKS. It must be at least jwks_max_age, so every
	// cached JWKS holds a key before any token is signed with it. Default:
	// jwks_max_age plus the keyring refresh interval.
	KeyPublishAhead caddy.Duration `json:"key_publish_ahead,omitempty"`

	// KeyRetainMax bounds how long a retired generated key stays published:
	// until the longest token lifetime seen has passed, but no longer than
	// this. Default: 24h.
	KeyRetainMax caddy.Duration `json:"key_retain_max,omitempty"`

	// JWKSMaxAge is the max-age of the JWKS response's Cache-Control.
	// Default: 5m.
	JWKSMaxAge caddy.Duration `json:"jwks_max_age,omitempty"`

	// ClaimsPolicy decides which custom claims a hook may add: "open"
	// (Auth0's rule since 2022/23: any name that is not restricted, except
	// namespaces in Auth0's domains and urn:auth0) or "namespaced" (the
	// legacy rule: only http/https URLs not on Auth0's domains). A dropped
	// claim is logged at warn, once a minute per script and claim.
	// Default: open.
	ClaimsPolicy string `json:"claims_policy,omitempty"`

	// IsolateRuns gives every exchange a fresh JavaScript runtime, whose
	// module top level runs again, instead of a warm one whose module
	// state persists between exchanges as on Auth0. Default: false.
	IsolateRuns bool `json:"isolate_runs,omitempty"`

	// Timeout limits one run of the hook and the actions together; past it
	// the exchange fails with 500 server_error "hook timed out". Default: 5s.
	Timeout caddy.Duration `json:"timeout,omitempty"`

	// MemoryLimit is the Go heap size, in bytes, past which running scripts
	// are stopped with 500 server_error "memory limit exceeded": goja cannot
	// bound one runtime's memory, so the bound is on the process's heap
	// (see caddyhook.DefaultMemoryLimit). Default: 1 GiB, or 3/4 of
	// GOMEMLIMIT when that is lower.
	MemoryLimit int64 `json:"memory_limit,omitempty"`

	// Tenant is the name handed to hooks as client.tenant.
	Tenant string `json:"tenant,omitempty"`

	// StorageDocument names the hook's context.webtask.storage document
	// in Caddy's storage. Handlers and instances with the same tenant and
	// document name share it. Default: a name derived from the tenant and
	// the hook file's absolute path, so two hook files never share one.
	StorageDocument string `json:"storage_document,omitempty"`

	// Secrets are handed to hooks as context.webtask.secrets. Values may use
	// the {env.X} and {file.X} placeholders.
	Secrets map[string]string `json:"secrets,omitempty"`

	// ActionSecrets are secrets that belong to one action, as Auth0 keeps
	// secrets per action: {"<action path, as in actions>": {"NAME":
	// "value"}}. The action gets them in event.secrets beside Secrets, its
	// own winning on a name both have; the hook and the other actions never
	// see them. Values may use the {env.X} and {file.X} placeholders.
	// Default: none.
	ActionSecrets map[string]map[string]string `json:"action_secrets,omitempty"`

	// Clients describes OAuth clients by client ID, handed to hooks as
	// client.name and client.metadata. Unknown clients get "" and {}.
	Clients map[string]ClientInfo `json:"clients,omitempty"`

	// ClientsFile is the path of a JSON file of more clients, in the form
	// {"<client_id>": {"name": "...", "metadata": {"k": "v"},
	// "grant_scopes": ["read:x"]}}. Entries in Clients take precedence.
	ClientsFile string `json:"clients_file,omitempty"`

	// GeoIPDB is the path of a MaxMind database (GeoIP2 or GeoLite2 City
	// or Country, .mmdb) from which actions get event.request.geoip for the
	// client's address, as Caddy's trusted_proxies rules determine it.
	// Default: none; event.request.geoip is {}.
	GeoIPDB string `json:"geoip_db,omitempty"`

	// MaxBodySize is the largest token request body accepted, in bytes; a
	// larger one is refused with 413. Default: 65536.
	MaxBodySize int64 `json:"max_body_size,omitempty"`

	// ScriptsDigest is a digest of the contents of the files this handler
	// reads at provisioning (hook, actions, everything under modules_dir,
	// clients_file, key files and geoip_db), which the Caddyfile adapter
	// writes. The handler does not use it except to log it; it is there so
	// that editing a script changes the adapted config, and `caddy reload`,
	// which skips a config equal to the running one, loads the new script.
	// With a JSON config, change it (any string) whenever a file changes,
	// or reload with --force.
	ScriptsDigest string `json:"scripts_digest,omitempty"`

	engine       *caddyhook.Engine
	tokenRoute   string // routePath(TokenPath), computed once
	cacheKey     string // this handler's api.cache in actionCaches
	keys         keySource
	stopRefresh  context.CancelFunc
	verifier     *token.Verifier
	discovery    *token.Discovery   // nil without upstream_issuer, or when nothing needs it
	stopDiscover context.CancelFunc // the background start-up discovery
	clients      map[string]ClientInfo
	geoip        *geoIPDB // nil without geoip_db
	tenant       string
	logger       *zap.Logger
}

// ClientInfo is what the operator tells hooks about one OAuth client.
type ClientInfo struct {
	// Name is handed to hooks as client.name.
	Name string `json:"name,omitempty"`
	// Metadata is handed to hooks as client.metadata; values are strings, as
	// on Auth0.
	Metadata map[string]string `json:"metadata,omitempty"`
	// GrantScopes are the scopes the client is granted, as an Auth0 client
	// grant lists them: scopes actions add with api.transaction.* outside
	// them are dropped from the token, as Auth0 drops them (a hook's own
	// scope result is not cut). Default: the scopes the upstream issued.
	GrantScopes []string `json:"grant_scopes,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.credentials_exchange",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision sets defaults, compiles the hook and loads the keys and clients.
// Every file is read here, once per config load.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	h.setDefaults()
	// Caddy calls Validate only after Provision, which compiles scripts,
	// joins actionCaches and may write a keyring to storage: a config that
	// is wrong on its face must fail before any of that.
	if err := h.checkConfig(); err != nil {
		return err
	}
	if err := provisionMetrics(ctx); err != nil {
		return err
	}
	var err error
	if h.engine, err = h.buildEngine(ctx.Storage(), h.logger.Named("hook")); err != nil {
		return err
	}
	if h.verifier, err = h.buildVerifier(); err != nil {
		return err
	}
	if h.clients, err = h.loadClients(); err != nil {
		return err
	}
	if h.GeoIPDB != "" {
		if h.geoip, err = openGeoIP(h.GeoIPDB); err != nil {
			return err
		}
	}
	// Last, because it may start the keyring's background refresher, which
	// only Cleanup stops.
	if err := h.provisionKeys(ctx); err != nil {
		return err
	}
	h.startDiscovery(ctx)
	h.logger.Info("credentials exchange ready",
		zap.String("hook", h.Hook),
		zap.Strings("actions", h.Actions),
		zap.String("token_path", h.TokenPath),
		zap.String("jwks_path", cmp.Or(h.JWKSPath, "(the path of the discovered jwks_uri)")),
		zap.String("upstream_issuer", h.UpstreamIssuer),
		zap.String("scripts_digest", h.ScriptsDigest),
		zap.String("kid", h.keys.Signer().KeyID()),
		zap.String("alg", h.keys.Signer().Algorithm()),
		zap.Bool("generated_keys", h.SigningKey == ""),
		zap.Bool("verify_upstream", h.verifier.Keys != nil))
	return nil
}

// setDefaults fills in the defaults of unset fields; every default that
// depends on no file is set here, once.
func (h *Handler) setDefaults() {
	if h.TokenPath == "" {
		h.TokenPath = DefaultTokenPath
	}
	h.tokenRoute = routePath(h.TokenPath)
	if h.JWKSPath == "" && h.UpstreamIssuer == "" {
		// With upstream_issuer, the path of the discovered jwks_uri.
		h.JWKSPath = DefaultJWKSPath
	}
	if h.JSONBody == "" {
		h.JSONBody = "form"
	}
	if h.MaxBodySize == 0 {
		h.MaxBodySize = DefaultMaxBodySize
	}
	if h.Timeout == 0 {
		h.Timeout = caddy.Duration(caddyhook.DefaultTimeout)
	}
	if h.JWKSMaxAge == 0 {
		h.JWKSMaxAge = caddy.Duration(DefaultJWKSMaxAge)
	}
	if h.KeyPublishAhead == 0 && h.SigningKey == "" {
		h.KeyPublishAhead = h.JWKSMaxAge + caddy.Duration(h.keyRefreshInterval())
	}
}

// Validate checks that the configuration is consistent. Provision has
// already done so, before any work; the check is cheap and depends on the
// config alone, so it is simply made again.
func (h *Handler) Validate() error { return h.checkConfig() }

// checkConfig checks every rule that needs no file, on a config whose
// defaults are set. Provision calls it first and Validate again; the
// Caddyfile adapter reports values with their line through the same rules
// (checkJSONBody, parseClaimsPolicy, checkScripts).
func (h *Handler) checkConfig() error {
	if err := checkJSONBody(h.JSONBody); err != nil {
		return err
	}
	if err := h.checkScripts(); err != nil {
		return err
	}
	if err := checkModulesDir(h.ModulesDir); err != nil {
		return err
	}
	n := 0
	for _, set := range []bool{h.UpstreamJWKS != "", h.UpstreamKey != "", h.InsecureSkipVerify} {
		if set {
			n++
		}
	}
	// upstream_issuer names the keys too, but an explicit source wins.
	if n > 1 || (n == 0 && h.UpstreamIssuer == "") {
		return errors.New("exactly one of upstream_jwks, upstream_key or insecure_skip_verify is required, or upstream_issuer to discover the upstream's JWKS: the proxy must know how to verify the upstream's tokens")
	}
	if h.UpstreamIssuer != "" {
		if _, err := token.ParseIssuer(h.UpstreamIssuer); err != nil {
			return fmt.Errorf("upstream_issuer: %w", err)
		}
	}
	if h.TokenPath == h.JWKSPath {
		return errors.New("token_path and jwks_path must differ")
	}
	if !strings.HasPrefix(h.TokenPath, "/") || (h.JWKSPath != "" && !strings.HasPrefix(h.JWKSPath, "/")) {
		return fmt.Errorf("token_path (%q) and jwks_path (%q) must be paths starting with /", h.TokenPath, h.JWKSPath)
	}
	if h.UpstreamJWKS != "" {
		u, err := url.Parse(h.UpstreamJWKS)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("upstream_jwks %q must be an http:// or https:// URL", h.UpstreamJWKS)
		}
	}
	if h.StorageDocument != "" && h.Hook == "" {
		return errors.New("storage_document names the hook's context.webtask.storage document, and there is no hook")
	}
	if h.MaxBodySize < 0 {
		return errors.New("max_body_size must be positive")
	}
	if h.Timeout < 0 {
		return errors.New("timeout must be positive")
	}
	if h.MemoryLimit < 0 {
		return errors.New("memory_limit must be positive")
	}
	if h.KeyRotation < 0 || h.KeyRetainMax < 0 || h.JWKSMaxAge < 0 {
		return errors.New("key_rotation, key_retain_max and jwks_max_age must be positive")
	}
	if h.SigningKey != "" {
		if h.KeyRotation != 0 || h.KeyPublishAhead != 0 || h.KeyRetainMax != 0 {
			return errors.New("key_rotation, key_publish_ahead and key_retain_max apply to generated keys; with signing_key, rotate by hand with publish_key")
		}
		return nil
	}
	if h.SigningAlg != "" {
		// Before OpenKeyring makes or writes any key with it.
		if err := token.CheckGenerable(h.SigningAlg); err != nil {
			return fmt.Errorf("signing_alg %w", err)
		}
	}
	if h.KeyPublishAhead < h.JWKSMaxAge {
		return fmt.Errorf("key_publish_ahead (%s) must be at least jwks_max_age (%s): a key must be in every cached JWKS before it signs",
			time.Duration(h.KeyPublishAhead), time.Duration(h.JWKSMaxAge))
	}
	if h.KeyRotation != 0 && h.KeyRotation <= h.KeyPublishAhead {
		return fmt.Errorf("key_rotation (%s) must be longer than key_publish_ahead (%s)", time.Duration(h.KeyRotation), time.Duration(h.KeyPublishAhead))
	}
	return nil
}

// Cleanup stops the keyring refresher of this config, closes its GeoIP
// database and releases its api.cache, which lives on while a newer config
// still uses it.
func (h *Handler) Cleanup() error {
	if h.engine != nil {
		// The warm runtimes belong to this config only.
		h.engine.Close()
	}
	if h.stopRefresh != nil {
		h.stopRefresh()
	}
	if h.stopDiscover != nil {
		h.stopDiscover()
	}
	if err := h.geoip.close(); err != nil {
		h.logger.Warn("closing the GeoIP database", zap.String("geoip_db", h.GeoIPDB), zap.Error(err))
	}
	if h.cacheKey != "" {
		_, _ = actionCaches.Delete(h.cacheKey)
	}
	return nil
}

// buildEngine compiles the scripts and builds the engine that runs them, as
// configured; the handler's exchanges and `caddy credentials-exchange run`
// both run scripts through it. It sets h.tenant, and takes an api.cache
// from actionCaches that Cleanup gives back.
func (h *Handler) buildEngine(storage caddyhook.Storage, logger *zap.Logger) (*caddyhook.Engine, error) {
	repl := caddy.NewReplacer()

	// Provision has checked the config; `caddy credentials-exchange run`
	// comes here without Provision, and the rules about scripts matter to it.
	if err := h.checkScripts(); err != nil {
		return nil, err
	}
	policy, err := parseClaimsPolicy(h.ClaimsPolicy)
	if err != nil {
		return nil, err
	}
	var hook *caddyhook.Script
	if h.Hook != "" {
		if hook, err = compileFile(h.Hook, caddyhook.HookKind); err != nil {
			return nil, err
		}
	}
	actions := make([]*caddyhook.Script, len(h.Actions))
	for i, path := range h.Actions {
		if actions[i], err = compileFile(path, caddyhook.ActionKind); err != nil {
			return nil, err
		}
	}
	h.tenant = repl.ReplaceKnown(h.Tenant, "")
	secrets := replaceAll(repl, h.Secrets)
	actionSecrets := map[*caddyhook.Script]map[string]string{}
	for i, path := range h.Actions { // an action listed twice gets them both times
		if own, ok := h.ActionSecrets[path]; ok {
			actionSecrets[actions[i]] = replaceAll(repl, own)
		}
	}
	fetchAllow := make([]string, len(h.FetchAllow))
	for i, p := range h.FetchAllow {
		fetchAllow[i] = repl.ReplaceKnown(p, "")
	}
	cache, err := h.actionCache()
	if err != nil {
		return nil, err
	}
	return caddyhook.NewEngine(caddyhook.Config{
		Hook:             hook,
		Actions:          actions,
		Policy:           policy,
		Timeout:          time.Duration(h.Timeout),
		MemoryLimit:      h.MemoryLimit,
		Secrets:          secrets,
		ActionSecrets:    actionSecrets,
		ModulesDir:       h.ModulesDir,
		FetchAllow:       fetchAllow,
		Storage:          storage,
		StorageNamespace: h.tenant,
		StorageKey:       h.StorageDocument,
		Cache:            cache,
		IsolateRuns:      h.IsolateRuns,
		OnOutboundCall:   metrics().outboundCall,
		Logger:           logger,
	})
}

// errNoScripts is the rule that there is something to run.
var errNoScripts = errors.New("credentials_exchange needs a hook or an action: hook <file.js> or action <file.js>")

// checkScripts checks the rules about what runs: a hook or an action,
// a known claims_policy, and action_secrets only for configured actions.
func (h *Handler) checkScripts() error {
	if h.Hook == "" && len(h.Actions) == 0 {
		return errNoScripts
	}
	if _, err := parseClaimsPolicy(h.ClaimsPolicy); err != nil {
		return err
	}
	for path := range h.ActionSecrets {
		if !slices.Contains(h.Actions, path) {
			return fmt.Errorf("action_secrets: %s is not one of the actions", path)
		}
	}
	return nil
}

// parseClaimsPolicy reads claims_policy; the allowed values are
// caddyhook.ParseClaimsPolicy's.
func parseClaimsPolicy(s string) (caddyhook.ClaimsPolicy, error) {
	p, err := caddyhook.ParseClaimsPolicy(s)
	if err != nil {
		return 0, fmt.Errorf("claims_policy: %w", err)
	}
	return p, nil
}

// checkModulesDir is the modules_dir rule: a folder Caddy can read. The
// engine reads it again when it loads the packages, but its errors do not
// name the option.
func checkModulesDir(dir string) error {
	if dir == "" {
		return nil
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return fmt.Errorf("modules_dir %s is not a readable directory", dir)
	}
	return nil
}

// checkJSONBody checks a json_body value (set; Provision defaults it to form).
func checkJSONBody(v string) error {
	switch v {
	case "form", "keep":
		return nil
	}
	return fmt.Errorf("json_body must be form or keep, not %q", v)
}

// actionCaches keeps each handler's api.cache across config reloads: a
// reload builds a new handler with the same tenant and actions, which gets
// the same cache; the cache goes when no config uses it any more.
var actionCaches = caddy.NewUsagePool()

type pooledCache struct{ *caddyhook.ActionCache }

func (pooledCache) Destruct() error { return nil }

func (h *Handler) actionCache() (*caddyhook.ActionCache, error) {
	key := h.tenant + "\x00" + strings.Join(h.Actions, "\x00")
	v, _, err := actionCaches.LoadOrNew(key, func() (caddy.Destructor, error) {
		return pooledCache{caddyhook.NewActionCache()}, nil
	})
	if err != nil {
		return nil, err
	}
	h.cacheKey = key
	return v.(pooledCache).ActionCache, nil
}

// ServeHTTP rewrites client credentials token responses and JWKS responses;
// every other request goes to next untouched. A path reaches the token
// endpoint when routePath reads it as the token path: a request it matches
// is hooked or refused, never let through unseen.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	route := routePath(r.URL.Path)
	switch {
	case route == h.tokenRoute:
		return h.serveToken(w, r, next)
	case r.Method == http.MethodPost && strings.Contains(route, h.tokenRoute):
		// Not the token path as we route, but holding it (a prefix mount,
		// /api/oauth/token): some server may route it there, so what comes
		// back is checked, though the request is not read. Only POST, so
		// that large downloads under such paths are not held in memory.
		return h.passThrough(w, r, next)
	case (r.Method == http.MethodGet || r.Method == http.MethodHead) && h.isJWKSPath(r):
		return h.serveJWKS(w, r, next)
	}
	return next.ServeHTTP(w, r)
}

// replaceAll resolves the {env.X} and {file.X} placeholders in secret values.
func replaceAll(repl *caddy.Replacer, secrets map[string]string) map[string]string {
	out := make(map[string]string, len(secrets))
	for name, v := range secrets {
		out[name] = repl.ReplaceKnown(v, "")
	}
	return out
}

// compileFile reads and compiles a script, naming the file in every error.
func compileFile(path string, kind caddyhook.Kind) (*caddyhook.Script, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading script: %w", err)
	}
	return caddyhook.Compile(path, src, kind)
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
