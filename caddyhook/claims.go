package caddyhook

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/caddyhook/caddyhook/internal/textcap"
	"go.uber.org/zap"
)

// ClaimsPolicy decides which names a hook may add to the access token.
type ClaimsPolicy int

const (
	// policyOpen is Auth0's rule for Rules, Hooks and Actions since
	// 2022/23: any name that is not restricted, except namespaces in
	// Auth0's own domains (auth0.com, webtask.io, webtask.run and their
	// subdomains) and the urn:auth0 URN namespace. It is the zero value, so
	// a Config that says nothing gets today's rule.
	policyOpen ClaimsPolicy = iota
	// policyNamespaced is the legacy rule of Auth0's credentials-exchange
	// extensibility point: only http: and https: URLs whose host is not one
	// of Auth0's.
	policyNamespaced
)

// ParseClaimsPolicy reads a claims policy, "open" or "namespaced"; empty
// means open.
func ParseClaimsPolicy(s string) (ClaimsPolicy, error) {
	switch s {
	case "", "open":
		return policyOpen, nil
	case "namespaced":
		return policyNamespaced, nil
	}
	return 0, fmt.Errorf("unknown claims policy %q (want open or namespaced)", s)
}

func (p ClaimsPolicy) String() string {
	if p == policyNamespaced {
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

// check reports whether name may be added under the policy and, when it may
// not, why (for the warning that tells operators what was dropped).
func (p ClaimsPolicy) check(name string) (ok bool, reason string) {
	if restrictedClaims[name] {
		return false, "restricted claim"
	}
	if p == policyNamespaced {
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
		return false, "the namespace " + textcap.Cap(host, 256) + " is reserved by Auth0"
	}
	return true, ""
}

// claimCheckCache remembers an engine's check results: a script sets the
// same few claim names on every exchange, and check parses each as a URL
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

// check is p.check(name), remembered; p must be the same on every call.
func (c *claimCheckCache) check(p ClaimsPolicy, name string) (bool, string) {
	c.mu.Lock()
	res, found := c.results[name]
	c.mu.Unlock()
	if found {
		return res.ok, res.reason
	}
	ok, reason := p.check(name)
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
		return false, "URL host " + textcap.Cap(host, 256) + " is reserved by Auth0"
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
	claim = textcap.Cap(claim, 256)
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
				zap.String("claim", claim), zap.String("reason", textcap.Cap(why, 512)), zap.Int("distinct_names", maxClaimWarnKeys))
		}
		return
	}
	w.last[key] = now
	w.mu.Unlock()
	log.Warn("custom claim dropped", zap.String("claim", claim), zap.String("reason", textcap.Cap(why, 512)))
}

// maxClaimsSize is Auth0's limit on the custom claims one token may carry.
const maxClaimsSize = 100 * 1024

// applyHookResult applies cb's result object: its scope replaces the token's,
// and its other members are custom claims, subject to the claim rules.
func (r *run) applyHookResult(log *scriptLog, raw json.RawMessage) error {
	var buf [8]jsonMember
	members := buf[:0]
	if raw != nil {
		var ok bool
		if members, ok = objectMembers(raw, members); !ok {
			log.Warn("hook result is not an object; treating it as {} (the token gets no scope)")
			members = buf[:0]
		}
	}
	var scopeRaw json.RawMessage
	for _, m := range members {
		if string(m.name) == "scope" {
			scopeRaw = m.value
		}
	}
	scope, err := parseScope(scopeRaw)
	if err != nil {
		return errorFor(CodeServerError, "hook result: "+err.Error())
	}
	r.scope = scope
	for _, m := range members {
		if string(m.name) != "scope" {
			value := json.RawMessage(m.value)
			if len(raw) > maxSharedResult {
				// A claim kept must not keep the whole of a large result.
				value = bytes.Clone(value)
			}
			r.setClaim(log, string(m.name), value)
		}
	}
	return nil
}

// maxSharedResult is the largest hook result whose claims are slices of
// it rather than copies.
const maxSharedResult = 4 << 10

// setClaim adds a custom claim when the policy accepts its name and the
// upstream token does not already carry it; otherwise it is dropped, as on
// Auth0 ("the transaction won't fail"), and a warning says so.
func (r *run) setClaim(log *scriptLog, name string, value json.RawMessage) {
	if ok, why := r.eng.claimChecks.check(r.eng.cfg.Policy, name); !ok {
		r.dropClaim(log, name, why)
		return
	}
	if _, taken := r.in.TokenClaims[name]; taken {
		r.dropClaim(log, name, "the upstream token already has it")
		return
	}
	r.claims[name] = value
}

// maxDroppedClaimLogs is how many dropped claims one run hands to the
// rate-limited warning; past it they are only counted.
const maxDroppedClaimLogs = 10

func (r *run) dropClaim(log *scriptLog, name, why string) {
	r.droppedClaims++
	script := ""
	if r.script != nil {
		script = r.script.Name
	}
	if len(r.dropped) < maxDroppedReported {
		r.dropped = append(r.dropped, DroppedClaim{Name: textcap.Cap(name, 256), Reason: why, Script: script})
	}
	if r.droppedClaims <= maxDroppedClaimLogs {
		r.eng.warnings.warn(log.logger(), script, name, why)
	}
}

func (r *run) checkSize() error {
	if r.fault != nil {
		return r.fault
	}
	total := 0
	for name, v := range r.claims {
		total += len(name) + len(v)
	}
	if total > maxClaimsSize {
		return errorFor(CodeServerError, fmt.Sprintf("custom claims are %d bytes, more than the %d allowed", total, maxClaimsSize))
	}
	if err := checkScopeLimits(r.scope); err != nil {
		return errorFor(CodeServerError, err.Error())
	}
	return nil
}

// Limits on the scope a token may get: past them the exchange fails, rather
// than the scope being cut.
const (
	// maxScopes is the most scope tokens one access token may carry.
	maxScopes = 1000
	// maxScopeSize is the most bytes the token's scope may have, as the
	// space-separated string a scope claim holds.
	maxScopeSize = 16 * 1024
)

// scopeLimitError is a scope past maxScopes or maxScopeSize.
type scopeLimitError string

func (e scopeLimitError) Error() string { return string(e) }

// checkScopeLimits fails a scope past maxScopes or maxScopeSize.
func checkScopeLimits(scope []string) error {
	if len(scope) > maxScopes {
		return scopeLimitError(fmt.Sprintf("the token would have more than the %d scopes allowed", maxScopes))
	}
	if size := scopeSize(scope); size > maxScopeSize {
		return scopeLimitError(fmt.Sprintf("the token's scope would be %d bytes, more than the %d allowed", size, maxScopeSize))
	}
	return nil
}

func scopeSize(scope []string) int {
	n := 0
	for i, s := range scope {
		if i > 0 {
			n++
		}
		n += len(s)
	}
	return n
}

// parseScope reads a result's scope: absent or null is no scope, otherwise an
// array of strings. Duplicates are dropped, order kept. A scope past the
// limits is an error.
func parseScope(raw json.RawMessage) ([]string, error) {
	if raw == nil || string(raw) == "null" {
		return nil, nil
	}
	// The common case, plain strings, is read in place, each converted only
	// when kept.
	if n, ok := plainStrings(raw); ok {
		b := scopeBuilder{out: make([]string, 0, min(n, maxScopes+1))}
		for item := range eachPlainString(raw) {
			if len(item) == 0 || b.hasBytes(item) {
				continue
			}
			if b.add(string(item)); b.err != nil {
				return nil, b.err
			}
		}
		return b.finish()
	}
	var list []any
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, errors.New("scope must be an array of strings")
	}
	b := scopeBuilder{out: make([]string, 0, min(len(list), maxScopes+1))}
	for _, v := range list {
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("scope must be an array of strings, it holds %s", jsonKind(v))
		}
		if s == "" || b.has(s) {
			continue
		}
		if b.add(s); b.err != nil {
			return nil, b.err
		}
	}
	return b.finish()
}

// scopeBuilder collects a scope token by token, in order.
type scopeBuilder struct {
	out []string
	// seen indexes out once it is too long for a linear search.
	seen map[string]bool
	err  error
}

const scopeLinearSearch = 16

func (b *scopeBuilder) has(s string) bool {
	if b.seen != nil {
		return b.seen[s]
	}
	return slices.Contains(b.out, s)
}

func (b *scopeBuilder) hasBytes(s []byte) bool {
	if b.seen != nil {
		return b.seen[string(s)]
	}
	for _, t := range b.out {
		if t == string(s) {
			return true
		}
	}
	return false
}

// add adds s, neither empty nor already there; an invalid token, or one
// too many, sets err.
func (b *scopeBuilder) add(s string) {
	if !validScope(s) {
		b.err = fmt.Errorf("scope %q holds a character a scope token cannot have", textcap.Cap(s, 64))
		return
	}
	b.out = append(b.out, s)
	switch {
	case b.seen != nil:
		b.seen[s] = true
	case len(b.out) > scopeLinearSearch:
		b.seen = make(map[string]bool, 2*len(b.out))
		for _, t := range b.out {
			b.seen[t] = true
		}
	}
	if len(b.out) > maxScopes {
		b.err = checkScopeLimits(b.out)
	}
}

func (b *scopeBuilder) finish() ([]string, error) {
	if err := checkScopeLimits(b.out); err != nil {
		return nil, err
	}
	return b.out, nil
}

// jsonKind names the JSON type of a value decoded by encoding/json.
func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case float64, json.Number:
		return "a number"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return "a value that is not a string"
}

// validScope reports whether s is one scope token (RFC 6749 §3.3): not
// empty, printable ASCII only, no spaces, quotes or backslashes. Anything
// else could split into more scopes for a resource server that splits on
// any white space.
func validScope(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}
