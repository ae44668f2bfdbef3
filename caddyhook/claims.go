package caddyhook

import (
	"fmt"
	"net/url"
	"strings"
)

// ClaimsPolicy decides which names a hook may add to the access token.
type ClaimsPolicy int

const (
	// Namespaced accepts only http: and https: URLs whose host is not
	// auth0.com, webtask.io, webtask.run or a subdomain of them, the rule of
	// Auth0's credentials-exchange extensibility point.
	Namespaced ClaimsPolicy = iota
	// Open accepts any name that is not restricted.
	Open
)

// ParseClaimsPolicy reads a claims_policy value; empty means Namespaced.
func ParseClaimsPolicy(s string) (ClaimsPolicy, error) {
	switch s {
	case "", "namespaced":
		return Namespaced, nil
	case "open":
		return Open, nil
	}
	return 0, fmt.Errorf("unknown claims policy %q (want namespaced or open)", s)
}

func (p ClaimsPolicy) String() string {
	if p == Open {
		return "open"
	}
	return "namespaced"
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

// reservedHosts are Auth0's own domains; namespaced claims under them are
// ignored, as Auth0 does.
var reservedHosts = []string{"auth0.com", "webtask.io", "webtask.run"}

// Check reports whether name may be added under the policy and, when it may
// not, why (for the debug log that tells operators what was dropped).
func (p ClaimsPolicy) Check(name string) (ok bool, reason string) {
	if restrictedClaims[name] {
		return false, "restricted claim"
	}
	if p == Open {
		if name == "" {
			return false, "empty claim name"
		}
		return true, ""
	}
	u, err := url.Parse(name)
	if err != nil || u.Opaque != "" {
		return false, "not a URL (the namespaced policy needs an http: or https: URL)"
	}
	scheme := strings.ToLower(u.Scheme)
	if scheme != "http" && scheme != "https" {
		return false, "not an http: or https: URL"
	}
	host := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
	if host == "" {
		return false, "URL has no host"
	}
	for _, r := range reservedHosts {
		if host == r || strings.HasSuffix(host, "."+r) {
			return false, "URL host " + host + " is reserved by Auth0"
		}
	}
	return true, ""
}
