package credentialsexchange

import (
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddyhook/caddyhook/caddyhook"
	"github.com/caddyhook/caddyhook/token"
)

// The hook's input (SPEC §3): which client the exchange is for, and what
// the hook sees of the client, the token, the request and its caller.

// exchangeClientID decides, once the upstream's token is verified, which
// client the exchange is for: the one the token was issued to (client_id,
// else azp), else fromRequest, the one the request authenticated as, which
// serveToken read before forwarding it. The hook's input and the exchange's
// log line both take this one value, so the log names the client the hook
// saw.
func exchangeClientID(tok *token.Token, fromRequest string) string {
	if id := tok.ClientID(); id != "" {
		return id
	}
	return fromRequest
}

// hookInput gathers what the hook sees, as SPEC §3 lays out, for the
// client clientID (exchangeClientID).
func (h *Handler) hookInput(r *http.Request, req *tokenRequest, tok *token.Token, clientID string) *caddyhook.Input {
	info := h.clients[clientID]
	aud := tok.Audiences()
	audience := ""
	for _, requested := range req.requestedAudiences() {
		if slices.Contains(aud, requested) {
			audience = requested
			break
		}
	}
	if audience == "" && len(aud) > 0 {
		audience = aud[0]
	}

	ip, _ := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string)
	return &caddyhook.Input{
		Client:   caddyhook.Client{ID: clientID, Name: info.Name, Tenant: h.tenant, Metadata: info.Metadata},
		Scope:    tok.Scope(),
		Audience: audience,
		Request: caddyhook.Request{
			IP: ip, Method: r.Method, Hostname: r.Host, UserAgent: r.UserAgent(), Body: req.hookBody(),
			Language: preferredLanguage(r.Header.Values("Accept-Language")),
			GeoIP:    h.geoip.lookup(ip, h.logger),
		},
		RequestedScopes: strings.Fields(req.stringParam("scope")),
		GrantScopes:     grantScopes(info),
		TokenClaims:     tok.Claims,
	}
}

// preferredLanguage is the language tag an Accept-Language header (RFC 9110
// §12.5.4) prefers: the first with the highest weight, written as the
// client wrote it. Auth0's event.request.language is one tag ("en"), not
// the header. "*", tags weighted 0 and malformed entries are skipped; ""
// when none is left.
func preferredLanguage(headers []string) string {
	best, bestQ := "", 0.0
	for _, h := range headers {
		for _, part := range strings.Split(h, ",") {
			tag, params, _ := strings.Cut(part, ";")
			tag = strings.TrimSpace(tag)
			if tag == "" || tag == "*" || !validLanguageTag(tag) {
				continue
			}
			q := 1.0
			for _, p := range strings.Split(params, ";") {
				name, value, ok := strings.Cut(strings.TrimSpace(p), "=")
				if ok && strings.EqualFold(strings.TrimSpace(name), "q") {
					v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
					if err != nil || v < 0 || v > 1 {
						v = 0
					}
					q = v
				}
			}
			if q > bestQ {
				best, bestQ = tag, q
			}
		}
	}
	return best
}

// validLanguageTag accepts the language-range syntax of RFC 4647 §2.1:
// 1-8 letters, then subtags of 1-8 letters or digits.
func validLanguageTag(tag string) bool {
	for i, sub := range strings.Split(tag, "-") {
		if len(sub) < 1 || len(sub) > 8 {
			return false
		}
		for _, c := range sub {
			letter := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
			if !letter && (i == 0 || c < '0' || c > '9') {
				return false
			}
		}
	}
	return true
}

// grantScopes is the client's configured grant; nil, which makes the
// upstream's scope the grant, when none is configured. An empty list, as a
// clients_file or JSON config may give ("grant_scopes": []), is a grant of
// nothing: read as "none configured" it would widen the grant to whatever
// the upstream issued.
func grantScopes(info ClientInfo) []string {
	if info.GrantScopes == nil {
		return nil
	}
	return append([]string{}, info.GrantScopes...)
}
