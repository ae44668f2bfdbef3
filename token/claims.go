package token

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/caddyhook/caddyhook/internal/jsonobject"
)

// What the claims of an OAuth access token mean, as the exchange reads and
// rewrites them: who the token was issued to, for which audiences, with
// which scope, and the payload of the token the proxy signs in its place.
// Upstreams write these claims in more than one form (RFC 9068's "scope"
// string, fosite's and Azure AD's "scp" array, aud as a string or an
// array); the rest of the module sees only the meaning.

// ClientID is the client the token was issued to: its client_id claim
// (RFC 9068 §2.2), else its azp (OpenID Connect Core §2), which upstreams
// without client_id write instead; "" when neither is a non-empty string.
func (t *Token) ClientID() string {
	if id := claimString(t.Claims["client_id"]); id != "" {
		return id
	}
	return claimString(t.Claims["azp"])
}

// Audiences is the token's aud claim as a list: a string is one audience,
// an array of strings several; any other value, or no aud, is none.
func (t *Token) Audiences() []string {
	return claimStrings(t.Claims["aud"])
}

// scopeForm is how a token writes its scope, so that the token signed in
// its place writes it the same way.
type scopeForm int

const (
	scopeString scopeForm = iota // "scope": "a b" (RFC 9068, RFC 8693)
	scopeArray                   // "scp": ["a", "b"] (fosite, Azure AD)
)

// form is the scope form of t: scp only when t has no scope claim and an
// scp one, since a token with both is read by its scope.
func (t *Token) form() scopeForm {
	if _, ok := t.Claims["scope"]; ok {
		return scopeString
	}
	if _, ok := t.Claims["scp"]; ok {
		return scopeArray
	}
	return scopeString
}

// Scope is the token's scope as a list of scope tokens: nil only when the
// token has no scope claim, so that a hook can tell a token without a
// scope from one with an empty scope. "scope": "a b", "scp": ["a", "b"]
// and "scp": "a b" all read as ["a", "b"]. A scope claim that is not a
// string reads as none (nil), an scp claim that is neither a string nor
// an array of strings as an empty scope.
func (t *Token) Scope() []string {
	if raw, ok := t.Claims["scope"]; ok {
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return nil
		}
		return scopeTokens(s)
	}
	if raw, ok := t.Claims["scp"]; ok {
		return scopeTokens(claimStrings(raw)...)
	}
	return nil
}

// Payload is the JSON payload of the token to sign in t's place: t's
// claims, with scope in place of t's scope, written in the form t wrote its
// own (no scope claim when scope is empty), and claims set over them, as
// json.Marshal writes an object. t is not changed.
func (t *Token) Payload(scope []string, claims map[string]json.RawMessage) ([]byte, error) {
	// The map stays in this frame (jsonobject.Encode keeps no reference),
	// so it costs no allocation of its own on the exchange's path.
	out := make(map[string]json.RawMessage, len(t.Claims)+len(claims))
	for k, v := range t.Claims {
		out[k] = v
	}
	delete(out, "scope")
	delete(out, "scp")
	if len(scope) > 0 {
		if t.form() == scopeArray {
			out["scp"], _ = json.Marshal(scope)
		} else {
			out["scope"], _ = json.Marshal(strings.Join(scope, " "))
		}
	}
	for k, v := range claims {
		out[k] = v
	}
	payload, err := jsonobject.Encode(out)
	if err != nil {
		return nil, fmt.Errorf("encoding claims: %w", err)
	}
	return payload, nil
}

// scopeTokens splits scope strings into tokens; never nil, since a token
// with an empty scope has a scope, unlike one without the claim.
func scopeTokens(parts ...string) []string {
	return append([]string{}, strings.Fields(strings.Join(parts, " "))...)
}

// claimString reads a string claim; anything else reads as "".
func claimString(raw json.RawMessage) string {
	var s string
	_ = json.Unmarshal(raw, &s)
	return s
}

// claimStrings reads a claim that is a string or an array of strings (aud,
// scp); anything else reads as none. The array is tried first, so that
// null (which encoding/json reads into a string as "") is none, and an
// array with a member that is not a string is none as a whole, not its
// string members with "" for the others.
func claimStrings(raw json.RawMessage) []string {
	var list []string
	if json.Unmarshal(raw, &list) == nil {
		return list
	}
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return []string{one}
	}
	return nil
}
