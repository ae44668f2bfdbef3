package credentialsexchange

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddyhook/caddyhook/caddyhook"
	"github.com/caddyhook/caddyhook/token"
)

// Exit codes of `caddy credentials-exchange run`, beside Caddy's own
// (caddy.ExitCodeSuccess, and caddy.ExitCodeFailedStartup for bad usage or
// a config that does not load). A denial and a failed run differ from bad
// usage so that a script can tell "the hook said no" from "the command line
// is wrong".
const (
	ExitCodeScriptError = 2 // the run failed: exception, syntax error, time-out, server_error
	ExitCodeDenied      = 3 // the scripts denied the exchange with a 4xx OAuth error
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "credentials-exchange",
		Usage: "run|keygen|jwks [flags]",
		Short: "Runs credentials_exchange hooks offline, makes signing keys, prints JWKS",
		Long: `
Tools for the http.handlers.credentials_exchange module:

  run     runs the hook and actions offline, exactly as the handler runs
          them for one client credentials exchange, and prints the token's
          scope and claims, the claims dropped and why, and the scripts'
          console output (the Auth0 hook editor's Runner);
  keygen  makes a private key for signing_key and prints its public JWK;
  jwks    prints the public JWKS the handler publishes for key files.

Run 'caddy credentials-exchange <command> --help' for the flags of each.
`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.AddCommand(runCommand(), keygenCommand(), jwksCommand())
		},
	})
}

// exitWith turns f into a RunE that exits with f's code. Caddy's wrapper
// logs an error and exits with the code; a code above 1 without an error
// (a denial or a failed run, already printed) exits quietly.
func exitWith(f func(cmd *cobra.Command, args []string) (int, error)) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		code, err := f(cmd, args)
		if err == nil && code > caddy.ExitCodeFailedStartup {
			cmd.SilenceErrors = true
		}
		return caddycmd.WrapCommandFuncForCobra(func(caddycmd.Flags) (int, error) { return code, err })(cmd, args)
	}
}

func runCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "run (--hook <file> | --action <file>... | --config <file> [--site <host>]) --client-id <id> [--scope <\"a b\">] [--audience <aud>] [flags]",
		Short: "Runs the hook and actions offline and prints the token they would give",
		Long: `
Runs the credentials_exchange hook and actions for one client credentials
exchange, without an upstream, a request or a key: the scripts run in the
same engine as in the handler (same globals, modules, claim rules, time and
memory limits, fetch allow-list), with the input the handler would give them
for a token issued to --client-id with --scope and --audience.

It prints the token's resulting scope; the claims the token would get (the
upstream claims the command makes up: sub, client_id, aud, scope, iat, exp
and any --upstream-claim, plus the custom claims the scripts added); the
claims the scripts set that the token does not get, with the reason; and the
scripts' console output. Warnings the engine logs go to stderr.

The input:
  --client-id is client.id (event.client.client_id); --client-name and
  --metadata k=v (repeatable) are client.name and client.metadata, over
  what the config's client/clients_file say for that client.
  --scope "a b" is the scope the upstream issued and the client asked for;
  without it the hook sees scope undefined, as for a client that asks for no
  scope. --audience is the token's audience. --grant-scopes "a b" is the
  client's grant (grant_scopes), to which actions' target scopes are cut;
  by default the upstream's scope. --tenant is client.tenant.
  --ip is the client's address (default 127.0.0.1); with the config's
  geoip_db, event.request.geoip is looked up for it.
  --body k=v (repeatable; a repeated k gives an array) adds token request
  parameters to context.body / event.request.body, beside grant_type,
  client_id, audience and scope.
  --secret K=V (repeatable) sets context.webtask.secrets / event.secrets.
  Values may be {env.X} or {file.X} placeholders, which keep the secret out
  of shell history and the process list. Secret values are never printed
  (a script that logs one prints it, as in the handler's log).
  --upstream-claim name=value (repeatable) is a claim of the upstream token,
  value as JSON (else a string): a custom claim of that name is dropped.
  It replaces the claim the command made up, and the hook reads the token
  as the handler does: an upstream client_id or scope is the one it sees.

--config reads a Caddyfile (or JSON with --adapter json or a .json name),
finds its credentials_exchange handler (--site <host> picks one by the
site's host when there are several) and takes from it the hook, actions,
modules_dir, secrets, action_secrets, clients and clients_file, tenant,
claims_policy, timeout, memory_limit and fetch_allow. Flags given beside it
win (--action replaces the config's actions, with their own secrets;
--secret and --metadata add to the config's). Relative paths resolve
against the current directory, as they do for 'caddy run' started here.

Nothing is written to Caddy's storage: context.webtask.storage is a
throwaway in-memory storage that starts empty, and api.cache starts empty.
Outbound calls (fetch, request, axios) are made for real, within the
config's fetch_allow.

Exit codes: 0 the token is issued; 1 bad usage or a config that does not
load; 2 the run failed (an exception, a syntax error, a time-out, a
server_error), with the script's file:line where known; 3 the scripts
denied the exchange (a 4xx OAuth error such as invalid_scope), with the
OAuth error code and description printed.
`,
		Example: `  $ caddy credentials-exchange run --hook hook.js --client-id my-client --scope "read:a"
  $ caddy credentials-exchange run --config /etc/caddy/Caddyfile --site auth.example.com \
      --client-id my-client --scope "read:a" --audience https://api.example.com --json`,
		Args: cobra.NoArgs,
	}
	f := cmd.Flags()
	f.SortFlags = false
	f.String("hook", "", "Auth0 Hook script")
	f.StringArray("action", nil, "Auth0 Action script (repeatable; runs after the hook, in order)")
	f.String("client-id", "", "client ID the token is issued to (required)")
	f.String("client-name", "", "client.name")
	f.StringArray("metadata", nil, "client metadata key=value (repeatable)")
	f.String("scope", "", "space-separated scope of the upstream token; unset: the hook sees undefined")
	f.String("audience", "", "audience of the token")
	f.String("grant-scopes", "", "space-separated scopes the client is granted (actions' target scopes are cut to them); default: the upstream's scope")
	f.String("tenant", "", "tenant name: client.tenant, event.tenant.id")
	f.String("ip", "127.0.0.1", "the client's address: context.ip, event.request.ip, and event.request.geoip with the config's geoip_db")
	f.StringArray("body", nil, "token request parameter key=value (repeatable)")
	f.StringArray("secret", nil, "secret NAME=value (repeatable; {env.X} and {file.X} are replaced)")
	f.String("claims-policy", "", "open (default) or namespaced")
	f.String("modules-dir", "", "folder of CommonJS packages scripts may require")
	f.Duration("timeout", 0, "time limit of the run, as the config's timeout (default 5s)")
	f.StringArray("upstream-claim", nil, "claim of the upstream token name=value, value as JSON else a string (repeatable)")
	f.StringP("config", "c", "", "Caddyfile (or JSON config) to take the handler's settings from")
	f.StringP("adapter", "a", "", "config adapter for --config (default: caddyfile, none for .json)")
	f.String("site", "", "with --config: the site (host) whose credentials_exchange to run")
	f.Bool("json", false, "print the result as JSON")
	cmd.RunE = exitWith(cmdRun)
	return cmd
}

// cmdRun is `caddy credentials-exchange run`.
func cmdRun(cmd *cobra.Command, _ []string) (int, error) {
	fl := cmd.Flags()
	str := func(name string) string { v, _ := fl.GetString(name); return v }
	arr := func(name string) []string { v, _ := fl.GetStringArray(name); return v }
	clientID := str("client-id")
	if clientID == "" {
		return caddy.ExitCodeFailedStartup, errors.New("--client-id is required")
	}

	h := new(Handler)
	host := "localhost"
	if cfg := str("config"); cfg != "" {
		found, err := handlerFromConfig(cfg, str("adapter"), str("site"), cmd.ErrOrStderr())
		if err != nil {
			return caddy.ExitCodeFailedStartup, err
		}
		h = found.handler
		if len(found.hosts) > 0 {
			host = found.hosts[0]
		}
	} else if str("site") != "" || str("adapter") != "" {
		return caddy.ExitCodeFailedStartup, errors.New("--site and --adapter go with --config")
	}
	if s := str("site"); s != "" {
		host = s
	}

	// Flags given beside --config win over it.
	if fl.Changed("hook") {
		h.Hook = str("hook")
	}
	if fl.Changed("action") {
		h.Actions = arr("action")
		// The config's secrets of actions no longer run go with them.
		for path := range h.ActionSecrets {
			if !slices.Contains(h.Actions, path) {
				delete(h.ActionSecrets, path)
			}
		}
	}
	if fl.Changed("tenant") {
		h.Tenant = str("tenant")
	}
	if fl.Changed("modules-dir") {
		h.ModulesDir = str("modules-dir")
	}
	if fl.Changed("claims-policy") {
		h.ClaimsPolicy = str("claims-policy")
	}
	if fl.Changed("timeout") {
		d, _ := fl.GetDuration("timeout")
		if d <= 0 {
			return caddy.ExitCodeFailedStartup, errors.New("--timeout must be positive")
		}
		h.Timeout = caddy.Duration(d)
	}
	secrets, err := keyValues("secret", arr("secret"))
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	h.Secrets = overriddenBy(h.Secrets, secrets)
	if h.Hook == "" && len(h.Actions) == 0 {
		return caddy.ExitCodeFailedStartup, errors.New("--hook or --action (or a --config with a credentials_exchange) is required")
	}

	// The client, as Provision and hookInput read it, then the flags.
	clients, err := h.loadClients()
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	info := clients[clientID]
	if fl.Changed("client-name") {
		info.Name = str("client-name")
	}
	if fl.Changed("grant-scopes") {
		info.GrantScopes = strings.Fields(str("grant-scopes"))
	}
	metadata, err := keyValues("metadata", arr("metadata"))
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	info.Metadata = overriddenBy(info.Metadata, metadata)
	clients[clientID] = info
	h.clients = clients
	upstreamClaims, err := keyValues("upstream-claim", arr("upstream-claim"))
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	body, err := keyValues("body", arr("body"))
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}

	asJSON, _ := fl.GetBool("json")
	out := &runReport{}
	logger := zap.New(&reportCore{report: out, stderr: cmd.ErrOrStderr()})
	h.logger = logger
	// Cleanup gives back the api.cache buildEngine takes, even when the
	// engine is not built after all.
	defer func() { _ = h.Cleanup() }()
	eng, err := h.buildEngine(newMemStorage(), logger.Named("hook"))
	if err != nil {
		// A script that does not compile or whose top level throws is the
		// script's fault, not the command line's.
		if se := (*caddyhook.ScriptError)(nil); errors.As(err, &se) {
			out.fail(ExitCodeScriptError, "error", codeServerError, err.Error(), "")
			return out.print(cmd.OutOrStdout(), asJSON)
		}
		return caddy.ExitCodeFailedStartup, err
	}
	h.engine = eng
	if h.GeoIPDB != "" {
		if h.geoip, err = openGeoIP(h.GeoIPDB); err != nil {
			return caddy.ExitCodeFailedStartup, err
		}
	}
	var scope []string // nil: the token has no scope, the hook sees undefined
	if fl.Changed("scope") {
		scope = strings.Fields(str("scope")) // never nil: --scope "" is an empty scope
	}
	in := h.offlineInput(clientID, scope, str("audience"), host, str("ip"), body, upstreamClaims)

	result, err := eng.Run(context.Background(), in)
	if err != nil {
		var hookErr *caddyhook.Error
		if !errors.As(err, &hookErr) {
			hookErr = &caddyhook.Error{Code: codeServerError, Description: err.Error()}
		}
		if oauthStatus(hookErr.Code) < 500 {
			out.fail(ExitCodeDenied, "denied", hookErr.Code, hookErr.Description, "")
		} else {
			var where []string
			if hookErr.Where != nil {
				for _, frame := range strings.Split(hookErr.Where.Stack, "\n") {
					where = append(where, strings.TrimSpace(frame))
				}
			}
			out.fail(ExitCodeScriptError, "error", hookErr.Code, hookErr.Description, strings.Join(where, "\n"))
		}
		return out.print(cmd.OutOrStdout(), asJSON)
	}
	out.issued(in, result)
	return out.print(cmd.OutOrStdout(), asJSON)
}

// offlineInput is the caddyhook.Input hookInput builds for a token issued
// to clientID with scope and audience, requested from ip at host: the
// token's claims are made up (sub, client_id, aud, scope, iat, exp, then
// upstreamClaims), so that a custom claim the upstream token would carry is
// dropped as it is in the handler. It reads h.clients, h.tenant and h.geoip
// as hookInput does.
func (h *Handler) offlineInput(clientID string, scope []string, audience, host, ip string, body, upstreamClaims map[string][]string) *caddyhook.Input {
	now := time.Now().Unix()
	claims := map[string]json.RawMessage{}
	set := func(name string, v any) { claims[name], _ = json.Marshal(v) }
	set("sub", clientID)
	set("client_id", clientID)
	if audience != "" {
		set("aud", audience)
	}
	if scope != nil {
		set("scope", strings.Join(scope, " "))
	}
	set("iat", now)
	set("exp", now+3600)
	for name, vs := range upstreamClaims {
		v := vs[len(vs)-1]
		if json.Valid([]byte(v)) {
			claims[name] = json.RawMessage(v)
		} else {
			set(name, v)
		}
	}

	// The token request's parameters as hookBody hands them over: strings,
	// an array for a repeated name, client secrets never.
	params := map[string]any{"grant_type": "client_credentials", "client_id": clientID}
	if audience != "" {
		params["audience"] = audience
	}
	if scope != nil {
		params["scope"] = strings.Join(scope, " ")
	}
	for k, vs := range body {
		if len(vs) == 1 {
			params[k] = vs[0]
		} else {
			list := make([]any, len(vs))
			for i, v := range vs {
				list[i] = v
			}
			params[k] = list
		}
	}
	req := &tokenRequest{params: params}

	// The request as serveToken sees it: its host, user agent and the
	// client's address Caddy's server sets.
	r, _ := http.NewRequestWithContext(context.WithValue(context.Background(), caddyhttp.VarsCtxKey,
		map[string]any{caddyhttp.ClientIPVarKey: ip}), http.MethodPost, "/", nil)
	r.Host = host
	r.Header.Set("User-Agent", "caddy credentials-exchange run")
	tok := &token.Token{Claims: claims}
	return h.hookInput(r, req, tok, exchangeClientID(tok, clientID))
}

// keyValues reads repeated name=value flags; a name given twice keeps both
// values, in order.
func keyValues(flag string, args []string) (map[string][]string, error) {
	out := map[string][]string{}
	for _, a := range args {
		k, v, ok := strings.Cut(a, "=")
		if !ok || k == "" {
			if flag == "secret" { // what was given may be the secret itself
				return nil, errors.New("--secret: want NAME=value")
			}
			return nil, fmt.Errorf("--%s %q: want name=value", flag, capFlag(a))
		}
		out[k] = append(out[k], v)
	}
	return out, nil
}

// overriddenBy is m with the flags' name=value pairs over it (the last of
// a repeated name wins), as a copy: m may be the config's own map. m itself
// when no flag was given.
func overriddenBy(m map[string]string, flags map[string][]string) map[string]string {
	if len(flags) == 0 {
		return m
	}
	out := maps.Clone(m)
	if out == nil {
		out = map[string]string{}
	}
	for k, v := range flags {
		out[k] = v[len(v)-1]
	}
	return out
}

// capFlag shortens a malformed flag value for the error message.
func capFlag(a string) string {
	if len(a) > 64 {
		return strings.ToValidUTF8(a[:64], "") + "…"
	}
	return a
}

// foundHandler is a credentials_exchange handler in a config, with the hosts
// of the route that holds it.
type foundHandler struct {
	handler *Handler
	hosts   []string
}

// handlerFromConfig adapts the config at path and returns its
// credentials_exchange handler: the one under site's host matcher when site
// is given, else the only one.
func handlerFromConfig(path, adapter, site string, warnings io.Writer) (*foundHandler, error) {
	body, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	if adapter == "" && !strings.EqualFold(filepath.Ext(path), ".json") {
		adapter = "caddyfile"
	}
	if adapter != "" && adapter != "json" {
		a := caddyconfig.GetAdapter(adapter)
		if a == nil {
			return nil, fmt.Errorf("unrecognized config adapter: %s", adapter)
		}
		var warns []caddyconfig.Warning
		body, warns, err = a.Adapt(body, map[string]any{"filename": path})
		if err != nil {
			return nil, fmt.Errorf("adapting config using %s: %w", adapter, err)
		}
		for _, w := range warns {
			fmt.Fprintf(warnings, "warning: %s\n", w.String())
		}
	}
	var cfg struct {
		Apps struct {
			HTTP struct {
				Servers map[string]struct {
					Routes []json.RawMessage `json:"routes"`
				} `json:"servers"`
			} `json:"http"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(body, &cfg); err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	var all []foundHandler
	names := slices.Sorted(maps.Keys(cfg.Apps.HTTP.Servers))
	for _, name := range names {
		if err := findHandlers(cfg.Apps.HTTP.Servers[name].Routes, nil, &all); err != nil {
			return nil, err
		}
	}
	var picked []foundHandler
	for _, f := range all {
		if site == "" || slices.ContainsFunc(f.hosts, func(h string) bool { return strings.EqualFold(h, site) }) {
			picked = append(picked, f)
		}
	}
	describe := func(fs []foundHandler) string {
		var s []string
		for _, f := range fs {
			if len(f.hosts) == 0 {
				s = append(s, "(any host)")
			} else {
				s = append(s, strings.Join(f.hosts, ","))
			}
		}
		return strings.Join(s, "; ")
	}
	switch {
	case len(all) == 0:
		return nil, fmt.Errorf("%s has no credentials_exchange handler", path)
	case len(picked) == 0:
		return nil, fmt.Errorf("%s has no credentials_exchange handler for site %q; its sites with one: %s", path, site, describe(all))
	case len(picked) > 1 && site == "":
		return nil, fmt.Errorf("%s has %d credentials_exchange handlers; pick one with --site (sites: %s)", path, len(picked), describe(picked))
	case len(picked) > 1:
		return nil, fmt.Errorf("%s has %d credentials_exchange handlers for site %q; run accepts one", path, len(picked), site)
	}
	return &picked[0], nil
}

// findHandlers walks routes, and the routes of subroute handlers (the
// Caddyfile's handle, route and handle_path blocks), collecting every
// credentials_exchange handler with the host matchers above it.
func findHandlers(routes []json.RawMessage, hosts []string, out *[]foundHandler) error {
	for _, raw := range routes {
		var route struct {
			Match  []map[string]json.RawMessage `json:"match"`
			Handle []json.RawMessage            `json:"handle"`
		}
		if json.Unmarshal(raw, &route) != nil {
			continue
		}
		routeHosts := hosts
		for _, m := range route.Match {
			var hs []string
			if json.Unmarshal(m["host"], &hs) == nil && len(hs) > 0 {
				routeHosts = append(slices.Clone(routeHosts), hs...)
			}
		}
		for _, hraw := range route.Handle {
			var head struct {
				Handler string            `json:"handler"`
				Routes  []json.RawMessage `json:"routes"`
			}
			if json.Unmarshal(hraw, &head) != nil {
				continue
			}
			switch head.Handler {
			case "credentials_exchange":
				h := new(Handler)
				if err := json.Unmarshal(hraw, h); err != nil {
					return fmt.Errorf("reading the credentials_exchange handler: %w", err)
				}
				*out = append(*out, foundHandler{handler: h, hosts: routeHosts})
			case "subroute":
				if err := findHandlers(head.Routes, routeHosts, out); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// runReport is what `run` prints.
type runReport struct {
	code int

	Outcome          string                     `json:"outcome"` // issued, denied or error
	Scope            []string                   `json:"scope"`
	UpstreamScope    []string                   `json:"upstream_scope"`
	Claims           map[string]json.RawMessage `json:"claims,omitempty"`
	CustomClaims     []string                   `json:"custom_claims,omitempty"`
	Dropped          []caddyhook.DroppedClaim   `json:"dropped,omitempty"`
	DroppedTotal     int                        `json:"dropped_total,omitempty"`
	Error            string                     `json:"error,omitempty"`
	ErrorDescription string                     `json:"error_description,omitempty"`
	Where            string                     `json:"where,omitempty"`
	Console          []consoleLine              `json:"console"`

	mu sync.Mutex
}

type consoleLine struct {
	Script  string `json:"script"`
	Level   string `json:"level"`
	Source  string `json:"source"`
	Message string `json:"message"`
}

func (r *runReport) fail(code int, outcome, oauthCode, description, where string) {
	r.code, r.Outcome, r.Error, r.ErrorDescription, r.Where = code, outcome, oauthCode, description, where
}

// issued records the token's scope and claims as resign writes them: the
// upstream's claims, the scope replaced, the custom claims added.
func (r *runReport) issued(in *caddyhook.Input, res *caddyhook.Result) {
	r.code, r.Outcome = caddy.ExitCodeSuccess, "issued"
	r.Scope, r.UpstreamScope = res.Scope, in.Scope
	if r.Scope == nil {
		r.Scope = []string{}
	}
	r.Claims = maps.Clone(in.TokenClaims)
	delete(r.Claims, "scope")
	delete(r.Claims, "scp")
	if len(res.Scope) > 0 {
		r.Claims["scope"], _ = json.Marshal(strings.Join(res.Scope, " "))
	}
	maps.Copy(r.Claims, res.Claims)
	r.CustomClaims = slices.Sorted(maps.Keys(res.Claims))
	r.Dropped = slices.Clone(res.Dropped)
	r.DroppedTotal = res.DroppedTotal
}

func (r *runReport) print(w io.Writer, asJSON bool) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.Console == nil {
		r.Console = []consoleLine{}
	}
	if asJSON {
		b, err := json.MarshalIndent(r, "", "  ")
		if err != nil {
			return caddy.ExitCodeFailedStartup, err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return r.code, err
	}
	var b bytes.Buffer
	switch r.Outcome {
	case "issued":
		fmt.Fprintf(&b, "issued\n\nscope: %s\n", scopeText(r.Scope))
		fmt.Fprintf(&b, "  (upstream: %s)\n", scopeText(r.UpstreamScope))
		fmt.Fprintf(&b, "\nclaims:\n")
		for _, name := range slices.Sorted(maps.Keys(r.Claims)) {
			mark := " "
			if slices.Contains(r.CustomClaims, name) {
				mark = "+"
			}
			fmt.Fprintf(&b, "  %s %s: %s\n", mark, name, compactJSON(r.Claims[name]))
		}
		if len(r.CustomClaims) > 0 {
			fmt.Fprintf(&b, "  (+ added by the scripts; the others stand for the upstream token's)\n")
		}
		if r.DroppedTotal > 0 {
			fmt.Fprintf(&b, "\ndropped claims (%d):\n", r.DroppedTotal)
			for _, d := range r.Dropped {
				fmt.Fprintf(&b, "  %s (set by %s): %s\n", d.Name, d.Script, d.Reason)
			}
			if n := r.DroppedTotal - len(r.Dropped); n > 0 {
				fmt.Fprintf(&b, "  … and %d more\n", n)
			}
		}
	case "denied":
		fmt.Fprintf(&b, "denied: %s: %s\n", r.Error, r.ErrorDescription)
	default:
		fmt.Fprintf(&b, "error: %s: %s\n", r.Error, r.ErrorDescription)
		if r.Where != "" {
			fmt.Fprintf(&b, "%s\n", indent(r.Where, "  "))
		}
	}
	if len(r.Console) > 0 {
		fmt.Fprintf(&b, "\nconsole:\n")
		for _, l := range r.Console {
			fmt.Fprintf(&b, "  [%s] %s: %s\n", filepath.Base(l.Script), strings.TrimPrefix(l.Source, "console."), indent(l.Message, "    ")[4:])
		}
	}
	_, err := w.Write(b.Bytes())
	return r.code, err
}

func scopeText(scope []string) string {
	switch {
	case scope == nil:
		return "(undefined)"
	case len(scope) == 0:
		return "(none)"
	}
	return strings.Join(scope, " ")
}

func compactJSON(raw json.RawMessage) string {
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		return string(raw)
	}
	return b.String()
}

func indent(s, prefix string) string {
	return prefix + strings.ReplaceAll(s, "\n", "\n"+prefix)
}

// reportCore is the engine's logger for `run`: console.* lines go into the
// report, anything else the engine logs (warnings, errors) to stderr as a
// readable line. Every level is on, so console.debug shows too.
type reportCore struct {
	report *runReport
	stderr io.Writer
	fields []zapcore.Field
}

func (c *reportCore) Enabled(zapcore.Level) bool { return true }

func (c *reportCore) With(fields []zapcore.Field) zapcore.Core {
	return &reportCore{report: c.report, stderr: c.stderr, fields: append(slices.Clone(c.fields), fields...)}
}

func (c *reportCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	return ce.AddCore(e, c)
}

func (c *reportCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range append(slices.Clone(c.fields), fields...) {
		f.AddTo(enc)
	}
	source, _ := enc.Fields["source"].(string)
	script, _ := enc.Fields["script"].(string)
	if strings.HasPrefix(source, "console.") {
		c.report.mu.Lock()
		c.report.Console = append(c.report.Console, consoleLine{Script: script, Level: e.Level.String(), Source: source, Message: e.Message})
		c.report.mu.Unlock()
		return nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s", e.Level.String(), e.Message)
	delete(enc.Fields, "client_id") // the command line's own
	for _, k := range slices.Sorted(maps.Keys(enc.Fields)) {
		fmt.Fprintf(&b, " %s=%v", k, enc.Fields[k])
	}
	if e.Stack != "" {
		b.WriteString("\n" + e.Stack)
	}
	b.WriteByte('\n')
	c.report.mu.Lock() // the fetch client may log from a goroutine of its own
	defer c.report.mu.Unlock()
	_, err := io.WriteString(c.stderr, b.String())
	return err
}

func (c *reportCore) Sync() error { return nil }

// memStorage is the throwaway context.webtask.storage of `run`: the user's
// real Caddy storage is never read or written.
type memStorage struct {
	mu   sync.Mutex
	data map[string][]byte
}

func newMemStorage() *memStorage { return &memStorage{data: map[string][]byte{}} }

func (s *memStorage) Load(_ context.Context, key string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.data[key]
	if !ok {
		return nil, fs.ErrNotExist
	}
	return slices.Clone(v), nil
}

func (s *memStorage) Store(_ context.Context, key string, value []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.data[key] = slices.Clone(value)
	return nil
}

// Lock and Unlock are no-ops: one process, one run.
func (s *memStorage) Lock(context.Context, string) error   { return nil }
func (s *memStorage) Unlock(context.Context, string) error { return nil }

func keygenCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "keygen [--alg RS256|PS256|ES256|ES384|EdDSA] [--out <file>]",
		Short: "Makes a private key for signing_key and prints its public JWK",
		Long: `
Makes a new private key for the algorithm, as the handler makes its own
keys (RSA 2048 for RS256 and PS256, P-256 for ES256, P-384 for ES384,
Ed25519 for EdDSA), and writes it as PKCS#8 PEM to stdout, or to --out
(created with mode 0600; an existing file is never overwritten).

Its public JWK goes to stderr: the kid is the key's RFC 7638 thumbprint,
the kid the handler computes for it as signing_key, with alg and use "sig".
A PEM key holds no algorithm: for PS256, configure 'signing_key <file> PS256'
(or signing_alg PS256); RSA keys otherwise sign with RS256.
`,
		Example: `  $ caddy credentials-exchange keygen --alg ES256 --out /etc/caddy/signing.pem 2>signing.jwk`,
		Args:    cobra.NoArgs,
	}
	cmd.Flags().String("alg", DefaultSigningAlg, "algorithm: RS256, PS256, ES256, ES384 or EdDSA")
	cmd.Flags().StringP("out", "o", "", "file to write the private key to (mode 0600, not overwritten); default stdout")
	cmd.RunE = exitWith(cmdKeygen)
	return cmd
}

func cmdKeygen(cmd *cobra.Command, _ []string) (int, error) {
	alg, _ := cmd.Flags().GetString("alg")
	out, _ := cmd.Flags().GetString("out")
	if err := token.CheckGenerable(alg); err != nil {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("--alg %w", err)
	}
	key, err := token.GenerateKey(alg)
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	signer, err := token.NewSigner(key, alg)
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	var raw any
	if err := key.Raw(&raw); err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(raw)
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	jwkJSON, err := json.Marshal(signer.PublicKey())
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}

	if out == "" {
		if _, err := cmd.OutOrStdout().Write(pemBytes); err != nil {
			return caddy.ExitCodeFailedStartup, err
		}
	} else if err := writeNewFile(out, pemBytes); err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	_, err = fmt.Fprintf(cmd.ErrOrStderr(), "%s\n", jwkJSON)
	return caddy.ExitCodeSuccess, err
}

// writeNewFile writes a private key to a file that must not exist yet,
// readable by its owner only.
func writeNewFile(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%s exists; not overwriting a key file", path)
		}
		return err
	}
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		_ = os.Remove(path)
		return err
	}
	if err := f.Close(); err != nil {
		_ = os.Remove(path)
		return err
	}
	return nil
}

func jwksCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "jwks --key <file> [--key <file>]... [--alg <alg>]",
		Short: "Prints the public JWKS the handler publishes for key files",
		Long: `
Prints the JWKS the handler serves for these keys, public members only.

Each --key file is read as the handler reads it: a file holding one private
key (PEM or JWK) is read as signing_key, its kid and alg as the handler
signs with them (--alg is signing_alg: the algorithm for private keys that
allow several, such as RSA, whose default is RS256); any other file (public
keys, certificates, JWK sets) is read as publish_key. Every key gets the
kid the handler gives it (its own "kid", else its RFC 7638 thumbprint),
use "sig", and alg where it is known.
`,
		Example: `  $ caddy credentials-exchange jwks --key signing.pem --key next.pub.pem`,
		Args:    cobra.NoArgs,
	}
	cmd.Flags().StringArray("key", nil, "key file: PEM, JWK or JWK set (repeatable)")
	cmd.Flags().String("alg", "", "signing_alg for private keys (default: the key's alg, else RS256 for RSA, ES* by curve, EdDSA)")
	cmd.RunE = exitWith(cmdJWKS)
	return cmd
}

func cmdJWKS(cmd *cobra.Command, _ []string) (int, error) {
	paths, _ := cmd.Flags().GetStringArray("key")
	alg, _ := cmd.Flags().GetString("alg")
	if len(paths) == 0 {
		return caddy.ExitCodeFailedStartup, errors.New("--key is required")
	}
	var keys []jwk.Key
	for _, p := range paths {
		pubs, err := publishedKeys(p, alg)
		if err != nil {
			return caddy.ExitCodeFailedStartup, err
		}
		keys = append(keys, pubs...)
	}
	body, err := token.MergeJWKS(nil, keys)
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	_, err = fmt.Fprintf(cmd.OutOrStdout(), "%s\n", body)
	return caddy.ExitCodeSuccess, err
}

// publishedKeys is what the handler publishes for a key file: as signing_key
// when it holds one private key, as publish_key otherwise. The file is read
// once; errors name it as --key.
func publishedKeys(path, alg string) ([]jwk.Key, error) {
	keys, err := readKeys("--key", path)
	if err != nil {
		return nil, err
	}
	if len(keys) == 1 {
		if private, _ := jwk.IsPrivateKey(keys[0]); private {
			s, err := token.NewSigner(keys[0], alg)
			if err != nil {
				return nil, fmt.Errorf("--key %s: %w", path, err)
			}
			return []jwk.Key{s.PublicKey()}, nil
		}
	}
	pubs, err := token.PublishableKeys(keys)
	if err != nil {
		return nil, fmt.Errorf("--key %s: %w", path, err)
	}
	return pubs, nil
}
