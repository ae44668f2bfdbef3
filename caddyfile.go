package credentialsexchange

import (
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/dustin/go-humanize"

	"github.com/caddyhook/caddyhook/caddyhook"
	"github.com/caddyhook/caddyhook/token"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("credentials_exchange", parseCaddyfile)
	// Ahead of the routing directives, so that it wraps reverse_proxy wherever
	// the site puts it, inside handle and route blocks included.
	httpcaddyfile.RegisterDirectiveOrder("credentials_exchange", httpcaddyfile.Before, "invoke")
}

func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	m := new(Handler)
	err := m.UnmarshalCaddyfile(h.Dispenser)
	return m, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Files named
// here are read and checked at once, so that `caddy adapt` and `caddy
// validate` report a script that does not compile or a bad key with the
// Caddyfile line; what a script exports is checked at provisioning, where
// its require() calls can be resolved. Syntax:
//
//	credentials_exchange [<matcher>] {
//		hook          <file.js>
//		action        <file.js> [{          # repeatable; runs after the hook, in order
//			secret <NAME> <value>           # repeatable; this action's own secrets
//		}]
//		token_path    <path>                # default /oauth/token
//		json_body     form|keep             # default form
//		audience_param <name>               # default: forwarded as audience
//		jwks_path     <path>                # default: discovered, else /.well-known/jwks.json
//		upstream_issuer <url>               # discovery: jwks_uri, JWKS path, required iss
//		upstream_jwks <url>
//		upstream_key  <file>
//		insecure_skip_verify
//		signing_key   <file> [<alg>]        # default: generated, kept in Caddy's storage
//		signing_alg   <alg>                 # RS256 (default), PS256, ES256, ES384, EdDSA
//		key_rotation  <duration>            # generated keys; default off
//		key_publish_ahead <duration>        # default jwks_max_age + refresh interval
//		key_retain_max <duration>           # default 24h
//		publish_key   <file>                # repeatable; published, never signs (alias verify_key)
//		jwks_max_age  <duration>            # default 5m
//		claims_policy open|namespaced       # default open
//		isolate_runs                        # a fresh runtime per exchange
//		timeout       <duration>            # default 5s
//		tenant        <name>
//		storage_document <name>             # default: per tenant and hook file path
//		modules_dir   <dir>
//		fetch_allow   <url-prefix>...       # repeatable; what fetch/request/axios may call
//		secret        <NAME> <value>        # repeatable
//		client <client_id> {                # repeatable
//			name     <text>
//			metadata <key> <value>          # repeatable
//			grant_scopes <scope>...         # default: the scopes the upstream issued
//		}
//		clients_file  <file.json>
//		geoip_db      <file.mmdb>           # MaxMind City/Country; default: geoip is {}
//		max_body_size <size>                # default 64KiB
//		memory_limit  <size>                # default 1GiB, or 3/4 of GOMEMLIMIT
//	}
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the directive's name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		sub := d.Val()
		switch sub {
		case "hook":
			if err := oneArg(d, &h.Hook); err != nil {
				return err
			}
			if _, err := compileFile(h.Hook, caddyhook.HookKind); err != nil {
				return d.Errf("hook: %v", err)
			}
		case "action":
			if err := h.unmarshalAction(d); err != nil {
				return err
			}
		case "modules_dir":
			if err := oneArg(d, &h.ModulesDir); err != nil {
				return err
			}
			if err := checkModulesDir(h.ModulesDir); err != nil {
				return d.Err(err.Error())
			}
		case "fetch_allow":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			for _, p := range args {
				// A placeholder is checked once replaced, at provisioning.
				if strings.Contains(p, "{") {
					continue
				}
				if err := caddyhook.CheckFetchAllow(p); err != nil {
					return d.Errf("%v", err)
				}
			}
			h.FetchAllow = append(h.FetchAllow, args...)
		case "token_path":
			if err := oneArg(d, &h.TokenPath); err != nil {
				return err
			}
		case "json_body":
			if err := oneArg(d, &h.JSONBody); err != nil {
				return err
			}
			if err := checkJSONBody(h.JSONBody); err != nil {
				return d.Errf("%v", err)
			}
		case "audience_param":
			if err := oneArg(d, &h.AudienceParam); err != nil {
				return err
			}
		case "jwks_path":
			if err := oneArg(d, &h.JWKSPath); err != nil {
				return err
			}
		case "upstream_issuer":
			if err := oneArg(d, &h.UpstreamIssuer); err != nil {
				return err
			}
			if _, err := token.ParseIssuer(h.UpstreamIssuer); err != nil {
				return d.Errf("upstream_issuer: %v", err)
			}
		case "upstream_jwks":
			if err := oneArg(d, &h.UpstreamJWKS); err != nil {
				return err
			}
		case "upstream_key":
			if err := oneArg(d, &h.UpstreamKey); err != nil {
				return err
			}
			if _, err := loadUpstreamKeys(h.UpstreamKey); err != nil {
				return d.Errf("%v", err)
			}
		case "insecure_skip_verify":
			if d.NextArg() {
				return d.ArgErr()
			}
			if h.InsecureSkipVerify {
				return d.Err("insecure_skip_verify already specified")
			}
			h.InsecureSkipVerify = true
		case "isolate_runs":
			if d.NextArg() {
				return d.ArgErr()
			}
			if h.IsolateRuns {
				return d.Err("isolate_runs already specified")
			}
			h.IsolateRuns = true
		case "signing_key":
			if h.SigningKey != "" {
				return d.Err("signing_key already specified")
			}
			args := d.RemainingArgs()
			if len(args) < 1 || len(args) > 2 {
				return d.ArgErr()
			}
			h.SigningKey = args[0]
			if len(args) == 2 {
				if h.SigningAlg != "" {
					return d.Err("signing_alg already specified")
				}
				h.SigningAlg = args[1]
			}
			if _, err := loadSigner(h.SigningKey, h.SigningAlg); err != nil {
				return d.Errf("%v", err)
			}
		case "signing_alg":
			if err := oneArg(d, &h.SigningAlg); err != nil {
				return err
			}
		case "publish_key", "verify_key":
			var p string
			if err := oneArg(d, &p); err != nil {
				return err
			}
			if _, err := loadPublishKeys([]string{p}); err != nil {
				return d.Errf("%v", err)
			}
			h.PublishKeys = append(h.PublishKeys, p)
		case "key_rotation", "key_publish_ahead", "key_retain_max", "jwks_max_age":
			field := map[string]*caddy.Duration{
				"key_rotation": &h.KeyRotation, "key_publish_ahead": &h.KeyPublishAhead,
				"key_retain_max": &h.KeyRetainMax, "jwks_max_age": &h.JWKSMaxAge,
			}[sub]
			if err := durationArg(d, field); err != nil {
				return err
			}
		case "claims_policy":
			if err := oneArg(d, &h.ClaimsPolicy); err != nil {
				return err
			}
			if _, err := parseClaimsPolicy(h.ClaimsPolicy); err != nil {
				return d.Errf("%v", err)
			}
		case "timeout":
			if err := durationArg(d, &h.Timeout); err != nil {
				return err
			}
		case "tenant":
			if err := oneArg(d, &h.Tenant); err != nil {
				return err
			}
		case "storage_document":
			if err := oneArg(d, &h.StorageDocument); err != nil {
				return err
			}
		case "secret":
			if err := pairArg(d, &h.Secrets); err != nil {
				return err
			}
		case "client":
			if err := h.unmarshalClient(d); err != nil {
				return err
			}
		case "clients_file":
			if err := oneArg(d, &h.ClientsFile); err != nil {
				return err
			}
			if _, err := loadClientsFile(h.ClientsFile); err != nil {
				return d.Errf("%v", err)
			}
		case "geoip_db":
			if err := oneArg(d, &h.GeoIPDB); err != nil {
				return err
			}
			db, err := openGeoIP(h.GeoIPDB)
			if err != nil {
				return d.Errf("%v", err)
			}
			_ = db.close()
		case "max_body_size":
			if err := sizeArg(d, &h.MaxBodySize); err != nil {
				return err
			}
		case "memory_limit":
			if err := sizeArg(d, &h.MemoryLimit); err != nil {
				return err
			}
		default:
			return d.Errf("unrecognized subdirective '%s'", sub)
		}
	}
	if err := h.checkScripts(); err != nil {
		return d.Errf("%v", err)
	}
	// Last, once every file is named: `caddy reload` loads a config only
	// when it differs from the running one, and the files' contents are
	// not otherwise in it.
	digest, err := h.scriptsDigest()
	if err != nil {
		return d.Errf("%v", err)
	}
	h.ScriptsDigest = digest
	return nil
}

// pairArg reads the <name> <value> arguments of the current subdirective
// into *m, refusing a name given twice.
func pairArg(d *caddyfile.Dispenser, m *map[string]string) error {
	sub := d.Val()
	args := d.RemainingArgs()
	if len(args) != 2 {
		return d.ArgErr()
	}
	if *m == nil {
		*m = map[string]string{}
	}
	if _, dup := (*m)[args[0]]; dup {
		return d.Errf("%s %s already specified", sub, args[0])
	}
	(*m)[args[0]] = args[1]
	return nil
}

// sizeArg reads the single positive size argument (64KiB, 512MiB) of the
// current subdirective into dst, refusing a second occurrence.
func sizeArg(d *caddyfile.Dispenser, dst *int64) error {
	return positiveArg(d, dst, "a size", func(s string) (int64, bool) {
		n, err := humanize.ParseBytes(s)
		return int64(n), err == nil && n > 0 && n <= 1<<62
	})
}

// durationArg reads the single positive duration argument of the current
// subdirective into dst, refusing a second occurrence.
func durationArg(d *caddyfile.Dispenser, dst *caddy.Duration) error {
	return positiveArg(d, dst, "a positive duration", func(s string) (caddy.Duration, bool) {
		dur, err := caddy.ParseDuration(s)
		return caddy.Duration(dur), err == nil && dur > 0
	})
}

// positiveArg reads the single argument of the current subdirective with
// parse into dst, refusing a second occurrence and a value parse refuses.
func positiveArg[T int64 | caddy.Duration](d *caddyfile.Dispenser, dst *T, what string, parse func(string) (T, bool)) error {
	name := d.Val()
	if *dst != 0 {
		return d.Errf("%s already specified", name)
	}
	var s string
	if err := oneArg(d, &s); err != nil {
		return err
	}
	v, ok := parse(s)
	if !ok {
		return d.Errf("%s: %q is not %s", name, s, what)
	}
	*dst = v
	return nil
}

// unmarshalAction reads action <file.js> [{ secret <NAME> <value>... }].
func (h *Handler) unmarshalAction(d *caddyfile.Dispenser) error {
	var path string
	if err := oneArg(d, &path); err != nil {
		return err
	}
	if _, err := compileFile(path, caddyhook.ActionKind); err != nil {
		return d.Errf("action: %v", err)
	}
	h.Actions = append(h.Actions, path)
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "secret":
			if h.ActionSecrets == nil {
				h.ActionSecrets = map[string]map[string]string{}
			}
			own := h.ActionSecrets[path]
			if err := pairArg(d, &own); err != nil {
				return err
			}
			h.ActionSecrets[path] = own
		default:
			return d.Errf("unrecognized action subdirective '%s'", d.Val())
		}
	}
	return nil
}

func (h *Handler) unmarshalClient(d *caddyfile.Dispenser) error {
	var id string
	if err := oneArg(d, &id); err != nil {
		return err
	}
	if _, dup := h.Clients[id]; dup {
		return d.Errf("client %s already specified", id)
	}
	info := ClientInfo{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "name":
			if err := oneArg(d, &info.Name); err != nil {
				return err
			}
		case "metadata":
			if err := pairArg(d, &info.Metadata); err != nil {
				return err
			}
		case "grant_scopes":
			if info.GrantScopes != nil {
				return d.Err("grant_scopes already specified")
			}
			if info.GrantScopes = d.RemainingArgs(); len(info.GrantScopes) == 0 {
				return d.ArgErr()
			}
		default:
			return d.Errf("unrecognized client subdirective '%s'", d.Val())
		}
	}
	if h.Clients == nil {
		h.Clients = map[string]ClientInfo{}
	}
	h.Clients[id] = info
	return nil
}

// oneArg reads the single argument of the current subdirective into dst,
// refusing a second occurrence of the subdirective.
func oneArg(d *caddyfile.Dispenser, dst *string) error {
	name := d.Val()
	if *dst != "" {
		return d.Errf("%s already specified", name)
	}
	if !d.NextArg() {
		return d.ArgErr()
	}
	*dst = d.Val()
	if d.NextArg() {
		return d.ArgErr()
	}
	return nil
}

// Interface guard
var _ caddyfile.Unmarshaler = (*Handler)(nil)
