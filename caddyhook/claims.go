package caddyhook

import (
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
)

// ClaimsPolicy decides which names a hook may add to the access token.
type ClaimsPolicy int

const (
	// Open is Auth0's rule for Rules, Hooks and Actions since 2022/23: any
	// name that is not restricted, except namespaces in Auth0's own domains
	// (auth0.com, webtask.io, webtask.run and their subdomains) and the
	// urn:auth0 URN namespace. It is the zero value, so a Config that says
	// nothing gets today's rule.
	Open ClaimsPolicy = iota
	// Namespaced is the legacy rule of Auth0's credentials-exchange
	// extensibility point: only http: and https: URLs whose host is not one
	// of Auth0's.
	Namespaced
)

// ParseClaimsPolicy reads a claims_policy value; empty means Open.
func ParseClaimsPolicy(s string) (ClaimsPolicy, error) {
	switch s {
	case "", "open":
		return Open, nil
	case "namespaced":
		return Namespaced, nil
	}
	return 0, fmt.Errorf("unknown claims policy %q (want open or namespaced)", s)
}

func (p ClaimsPolicy) String() string {
	if p == Namespaced {
		return "namespaced"
	}
	return "open"
}

// restrictedClaims may never be set or overwritten by a hook or an action:
// they carry the token's identity, lifetime, binding and scope, which only the
// upstream (and, for scope, the hook's result) decides. It is Auth0's
// published list of restricted claims plus scope and scp.
var restrictedClaims = map[string]bool{
	"acr": true, "act": true, "active": true, "amr": true, "at_hash": true, "ath": true,
	"attest": true, "aud": true, "auth_time": true, "authorization_details": true, "azp": true,
	"c_hash": true, "client_id": true, "cnf": true, "cty": true, "dest": true, "entitlements": true,
	"events": true, "exp": true, "groups": true, "gty": true, "htm": true, "htu": true, "iat": true,
	"internalService": true, "iss": true, "jcard": true, "jku": true, "jti": true, "jwe": true,
	"jwk": true, "kid": true, "may_act": true, "mky": true, "nbf": true, "nonce": true,
	"object_id": true, "org_id": true, "org_name": true, "orig": true, "origid": true,
	"permissions": true, "roles": true, "rph": true, "s_hash": true, "scope": true, "scp": true,
	"sid": true, "sip_callid": true, "sip_cseq_num": true, "sip_date": true, "sip_from_tag": true,
	"sip_via_branch": true, "sub": true, "sub_jwk": true, "toe": true, "txn": true, "typ": true,
	"uuid": true, "vot": true, "vtm": true, "x5t#S256": true,
}

// reservedHosts are Auth0's own domains; claims namespaced under them are
// ignored, as Auth0 does.
var reservedHosts = []string{"auth0.com", "webtask.io", "webtask.run"}

// reservedURN is the URN namespace Auth0 keeps for itself.
const reservedURN = "urn:auth0"

// Check reports whether name may be added under the policy and, when it may
// not, why (for the warning that tells operators what was dropped).
func (p ClaimsPolicy) Check(name string) (ok bool, reason string) {
	if restrictedClaims[name] {
		return false, "restricted claim"
	}
	if p == Namespaced {
		return checkNamespaced(name)
	}
	if name == "" {
		return false, "empty claim name"
	}
	lower := strings.ToLower(name)
	if lower == reservedURN || strings.HasPrefix(lower, reservedURN+":") {
		return false, "the urn:auth0 namespace is reserved by Auth0"
	}
	// A namespace in one of Auth0's domains, written as a URL or as a bare
	// host ("auth0.com/claim", "//x.webtask.io/claim"), is Auth0's.
	host := ""
	if u, err := url.Parse(name); err == nil && u.Host != "" {
		host = u.Hostname()
	} else {
		host, _, _ = strings.Cut(strings.TrimLeft(lower, "/"), "/")
		// A bare host may carry a port ("auth0.com:443/claim"), which
		// url.Parse reads as a scheme.
		if i := strings.LastIndexByte(host, ':'); i >= 0 && strings.Trim(host[i+1:], "0123456789") == "" {
			host = host[:i]
		}
	}
	if reservedHost(host) {
		return false, "the namespace " + capText(host, 256) + " is reserved by Auth0"
	}
	return true, ""
}

// claimCheckCache remembers an engine's Check results: a script sets the
// same few claim names on every exchange, and Check parses each as a URL
// (about 4% of a warm starter run). It holds at most maxCachedClaimChecks
// names of at most maxCachedClaimName bytes, so that a script inventing
// names cannot grow it; other names are checked every time.
type claimCheckCache struct {
	mu      sync.Mutex
	results map[string]claimCheck
}

type claimCheck struct {
	ok     bool
	reason string
}

const (
	maxCachedClaimChecks = 256
	maxCachedClaimName   = 256
)

// check is p.Check(name), remembered; p must be the same on every call.
func (c *claimCheckCache) check(p ClaimsPolicy, name string) (bool, string) {
	c.mu.Lock()
	res, found := c.results[name]
	c.mu.Unlock()
	if found {
		return res.ok, res.reason
	}
	ok, reason := p.Check(name)
	c.mu.Lock()
	if c.results == nil {
		c.results = map[string]claimCheck{}
	}
	if len(c.results) < maxCachedClaimChecks && len(name) <= maxCachedClaimName {
		c.results[name] = claimCheck{ok, reason}
	}
	c.mu.Unlock()
	return ok, reason
}

// checkNamespaced is the legacy rule: an http: or https: URL whose host is
// not Auth0's.
func checkNamespaced(name string) (bool, string) {
	u, err := url.Parse(name)
	if err != nil || u.Opaque != "" {
		return false, "not a URL (the namespaced policy needs an http: or https: URL)"
	}
	scheme := strings.ToLower(u.Scheme)
	if scheme != "http" && scheme != "https" {
		return false, "not an http: or https: URL (the namespaced policy needs one)"
	}
	host := u.Hostname()
	if strings.TrimSuffix(host, ".") == "" {
		return false, "URL has no host"
	}
	if reservedHost(host) {
		return false, "URL host " + capText(host, 256) + " is reserved by Auth0"
	}
	return true, ""
}

// reservedHost reports whether host is one of Auth0's domains or under one.
func reservedHost(host string) bool {
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	for _, r := range reservedHosts {
		if host == r || strings.HasSuffix(host, "."+r) {
			return true
		}
	}
	return false
}

// claimWarnEvery is how often one script's dropped claim of one name is
// logged: a changed token must never be silent, and a hook that drops the
// same claim on every exchange must not flood the log.
const claimWarnEvery = time.Minute

// maxClaimWarnKeys bounds the (script, claim) pairs remembered; a script
// inventing a new claim name per exchange cannot grow the map past it.
const maxClaimWarnKeys = 4096

// claimWarnings rate-limits the warnings about dropped claims, per engine.
type claimWarnings struct {
	mu           sync.Mutex
	last         map[claimWarnKey]time.Time
	lastOverflow time.Time
	now          func() time.Time
}

type claimWarnKey struct{ script, claim string }

func newClaimWarnings(now func() time.Time) *claimWarnings {
	return &claimWarnings{last: map[claimWarnKey]time.Time{}, now: now}
}

// warn logs that a script (named in log's fields) dropped claim, unless it
// did within the last claimWarnEvery.
func (w *claimWarnings) warn(log *zap.Logger, script, claim, why string) {
	claim = capText(claim, 256)
	now := w.now()
	key := claimWarnKey{script, claim}
	w.mu.Lock()
	if t, seen := w.last[key]; seen && now.Sub(t) < claimWarnEvery {
		w.mu.Unlock()
		return
	}
	if len(w.last) >= maxClaimWarnKeys {
		for k, t := range w.last {
			if now.Sub(t) >= claimWarnEvery {
				delete(w.last, k)
			}
		}
	}
	if len(w.last) >= maxClaimWarnKeys {
		// Too many distinct names this minute to remember each: say so
		// once a minute instead.
		overflow := now.Sub(w.lastOverflow) >= claimWarnEvery
		if overflow {
			w.lastOverflow = now
		}
		w.mu.Unlock()
		if overflow {
			log.Warn("custom claims dropped under too many distinct names to log each; the next are not logged this minute",
				zap.String("claim", claim), zap.String("reason", capText(why, 512)), zap.Int("distinct_names", maxClaimWarnKeys))
		}
		return
	}
	w.last[key] = now
	w.mu.Unlock()
	log.Warn("custom claim dropped", zap.String("claim", claim), zap.String("reason", capText(why, 512)))
}
