package credentialsexchange

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"regexp"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

// passThrough forwards a request that is unambiguously another grant, and
// checks the answer before the client sees it: the second half of the
// invariant that no client credentials token leaves without the hook. The
// request side (request.go) may be wrong about how some upstream reads a
// request; this side looks at what the upstream actually issued.
func (h *Handler) passThrough(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	up, err := h.forward(r, next)
	if err != nil {
		var herr caddyhttp.HandlerError
		if errors.As(err, &herr) {
			// reverse_proxy's own error (no upstream, dial failure): Caddy's
			// error handling answers it as for any other path.
			return herr
		}
		h.logger.Error("upstream answer to a passed-through request could not be read",
			zap.String("method", r.Method), zap.String("path", r.URL.Path), zap.NamedError("cause", err))
		writeUpstreamFailure(w)
		return nil
	}
	if why := up.unhookedToken(); why != "" {
		metrics().guardBlocked.Inc()
		h.logger.Error("blocked a client credentials token that did not go through the hook",
			zap.String("method", r.Method), zap.String("path", r.URL.Path), zap.String("reason", why))
		writeOAuthError(w, http.StatusBadGateway, codeServerError,
			"the authorization server issued a token for a request that was not recognised as a client credentials request")
		return nil
	}
	up.replay(w)
	return nil
}

// unhookedToken says why a passed-through answer must not reach the client,
// or "" when it may. Every JWT-shaped string in it is checked — in the raw
// body, in the body's JSON strings once unescaped, in its form values, and in
// the headers — whatever the answer's format (a BOM, an array, JSONP, XML, a
// member called "token"). It is blocked when one reads as a client
// credentials token (clientCredentialsToken), or when it cannot be checked
// (content-encoded, an access_token member that is not a string, too many
// tokens). An opaque token, or a JWT whose payload is not JSON, cannot be
// told apart and passes: SECURITY.md says so.
func (c *capture) unhookedToken() string { return unhookedIn(c.body.Bytes(), c.header) }

// unhookedIn is unhookedToken for an answer's body and headers.
func unhookedIn(body []byte, header http.Header) string {
	if enc := header.Get("Content-Encoding"); enc != "" && !strings.EqualFold(enc, "identity") && len(body) > 0 {
		return "the response is content-encoded (" + enc + ") and cannot be checked"
	}
	named, ok := accessTokens(body)
	if !ok {
		return "the response's access_token is not a string"
	}
	// A set: the raw body, its JSON strings and its form values mostly
	// hold the same tokens.
	found := map[string]struct{}{}
	// An access_token member is checked whatever its shape: a lenient
	// resource server may read the claims of a token whose header is odd
	// or empty (found by fuzzing: ".eyJ…." slipped past jwtShape).
	for _, tok := range named {
		found[tok] = struct{}{}
	}
	add := func(s string) {
		// Both shapes contain "eyJ" (a JSON object's first bytes in
		// base64url); most strings do not, and the patterns, which can
		// start anywhere, cost far more than this search.
		if !strings.Contains(s, "eyJ") {
			return
		}
		// All matches: the answer is at most 1 MiB, and a cap here would
		// let a token after many repeated ones go unseen.
		for _, tok := range jwtShape.FindAllString(s, -1) {
			found[tok] = struct{}{}
		}
		for _, tok := range payloadShape.FindAllString(s, -1) {
			found[tok] = struct{}{}
		}
	}
	add(string(body))
	var doc any
	if json.Unmarshal(bytes.TrimPrefix(body, []byte("\xef\xbb\xbf")), &doc) == nil {
		eachString(doc, add)
	}
	values, _ := url.ParseQuery(string(body)) // the pairs that parse, even if some do not
	for _, vs := range values {
		for _, v := range vs {
			add(v)
		}
	}
	for _, vs := range header {
		for _, v := range vs {
			add(v)
		}
	}
	if len(found) > maxCheckedTokens {
		return "the response holds too many tokens to check"
	}
	for tok := range found {
		if why := clientCredentialsToken(tok); why != "" {
			return why
		}
	}
	return ""
}

// jwtShape matches a compact JWS whose header is a JSON object: what a
// resource server would accept as a JWT access token. payloadShape matches
// one whose claims are a JSON object, whatever its header, which a
// resource server that only decodes the payload would read.
var (
	jwtShape     = regexp.MustCompile(`eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*`)
	payloadShape = regexp.MustCompile(`[A-Za-z0-9_-]*\.eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*`)
)

// maxCheckedTokens bounds the distinct tokens decoded for one answer; an
// answer with more is blocked.
const maxCheckedTokens = 1000

// eachString calls fn with every string in a decoded JSON document, member
// names included.
func eachString(v any, fn func(string)) {
	switch x := v.(type) {
	case string:
		fn(x)
	case []any:
		for _, e := range x {
			eachString(e, fn)
		}
	case map[string]any:
		for k, e := range x {
			fn(k)
			eachString(e, fn)
		}
	}
}

// carriesAccessToken reports whether an answer has an access_token member
// (JSON or form), or cannot be read to tell.
func (c *capture) carriesAccessToken() bool {
	tokens, ok := accessTokens(c.body.Bytes())
	return !ok || len(tokens) > 0
}

// accessTokens returns the access_token values of a token response body,
// read as JSON (every member, duplicates too, with the name matched
// case-insensitively, as Go's encoding/json does) or, failing that, as a form, as some servers answer.
// ok is false for an access_token member that is not a string.
func accessTokens(body []byte) (tokens []string, ok bool) {
	var named namedTokens
	if eachMember(body, func(name string, raw json.RawMessage) error {
		named.add(name, raw)
		return nil
	}) == nil {
		return named.tokens, !named.notString
	}
	values, _ := url.ParseQuery(string(body)) // the pairs that parse, even if some do not
	for name, vs := range values {
		if strings.EqualFold(name, "access_token") {
			tokens = append(tokens, vs...)
		}
	}
	return tokens, true
}

// namedTokens collects the access_token members of a JSON answer, the name
// matched case-insensitively as encoding/json matches it, so that no
// spelling of the member is missed.
type namedTokens struct {
	tokens    []string
	notString bool // a member that is not a JSON string
}

func (n *namedTokens) add(name string, raw json.RawMessage) {
	if !strings.EqualFold(name, "access_token") {
		return
	}
	s, err := jsonString(raw)
	n.notString = n.notString || err != nil
	n.tokens = append(n.tokens, s)
}

// clientCredentialsToken says why a JWT access token reads as issued by the
// client credentials grant, or "" when it does not: Auth0's gty claim, a
// subject that is the client itself (sub equal to client_id, azp or cid:
// go-oauth2, Hydra, Okta, oidc-provider; or to aud: Spring Authorization
// Server, league/oauth2-server 9), an empty subject (league 8), a client but
// no subject, Entra ID's idtyp app, or a Keycloak service-account user.
func clientCredentialsToken(compact string) string {
	parts := strings.Split(compact, ".")
	if len(parts) != 3 {
		return "" // opaque, or a JWE: cannot be told
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return ""
	}
	var claims map[string]any
	if json.Unmarshal(payload, &claims) != nil {
		return ""
	}
	str := func(name string) string { s, _ := claims[name].(string); return s }
	switch gty := str("gty"); gty {
	case "client-credentials", "client_credentials":
		return "the token's gty claim is " + gty
	}
	if str("idtyp") == "app" { // Microsoft Entra ID
		return "the token's idtyp claim is app"
	}
	_, hasSub := claims["sub"]
	subject := str("sub")
	if hasSub && subject == "" { // league/oauth2-server 8 (Laravel Passport)
		return "the token's subject is empty"
	}
	for _, name := range []string{"client_id", "azp", "cid", "clientId"} {
		id := str(name)
		if id == "" {
			continue
		}
		if !hasSub {
			return "the token has a " + name + " claim and no subject"
		}
		if subject == id {
			return "the token's subject is its " + name
		}
	}
	// Spring Authorization Server and league 9 name the client as both
	// subject and audience.
	switch aud := claims["aud"].(type) {
	case string:
		if aud == subject {
			return "the token's subject is its audience"
		}
	case []any:
		for _, a := range aud {
			if a == subject {
				return "the token's subject is in its audience"
			}
		}
	}
	if strings.HasPrefix(str("preferred_username"), "service-account-") {
		return "the token's subject is a service account"
	}
	return ""
}
