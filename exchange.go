package credentialsexchange

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddyhook/caddyhook/caddyhook"
	"github.com/caddyhook/caddyhook/internal/jsonobject"
	"github.com/caddyhook/caddyhook/token"
)

// upstreamFailure is a problem with what the upstream sent; the client gets a
// 502 and the log gets the cause.
type upstreamFailure struct{ cause error }

func (u upstreamFailure) Error() string { return u.cause.Error() }

func (u upstreamFailure) Unwrap() error { return u.cause }

func upstreamErrorf(format string, args ...any) error {
	return upstreamFailure{fmt.Errorf(format, args...)}
}

// serveToken handles every request to the token path: it decides the grant
// (request.go), hooks client credentials requests, and lets only
// unambiguously other grants through, behind the response guard (guard.go).
// Every request it answers itself, or forwards as client credentials, ends
// in exactly one log line and one count (exchangeRecord.finish).
func (h *Handler) serveToken(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) (err error) {
	rec := &exchangeRecord{start: time.Now()}
	defer func() {
		// Nothing has been written to w when a panic can happen: the
		// response is written last, in one go. A panic is a bug; it must
		// still end as an OAuth error without a token, not an empty reply.
		if p := recover(); p != nil {
			rec.counted = true // whatever the request was, the bug is logged
			rec.panicStack = zap.Stack("stack")
			rec.fail(w, http.StatusInternalServerError, codeServerError, "the token could not be issued",
				fmt.Errorf("panic in the token exchange: %v", p))
			err = nil
		}
		if rec.counted {
			rec.finish(h.logger, metrics())
		}
	}()

	req, err := readTokenRequest(r, h.MaxBodySize)
	if err != nil {
		rec.counted = true
		rec.clientID = basicClientID(r)
		if errors.Is(err, errBodyTooLarge) {
			rec.fail(w, http.StatusRequestEntityTooLarge, codeInvalidRequest,
				fmt.Sprintf("the token request body is larger than %d bytes", h.MaxBodySize), err)
			return nil
		}
		// Caddy's error handling answers it, as before; the record
		// counts it as the invalid_request it is.
		rec.outcome, rec.code, rec.status, rec.cause = outcomeDenied, codeInvalidRequest, http.StatusBadRequest, err
		return caddyhttp.Error(http.StatusBadRequest, err)
	}
	if req.grant == grantOther {
		// Not an exchange: neither counted nor logged here (the guard
		// counts what it blocks).
		restoreBody(r, req.raw)
		return h.passThrough(w, r, next)
	}
	rec.counted = true
	rec.clientID = clientIDFromRequest(r, req)
	if aud := req.requestedAudiences(); len(aud) > 0 {
		rec.audience = aud[0]
	}
	if req.grant == grantRefused {
		rec.fail(w, http.StatusBadRequest, codeInvalidRequest, req.refusal,
			errors.New("token request refused; not forwarded"))
		return nil
	}

	body, contentType, err := h.forwardBody(req)
	if err != nil {
		rec.fail(w, http.StatusBadRequest, codeInvalidRequest, err.Error(), err)
		return nil
	}
	restoreBody(r, body)
	if contentType != "" {
		r.Header.Set("Content-Type", contentType)
	}

	upStart := time.Now()
	up, err := h.forward(r, next)
	rec.upstream = time.Since(upStart)
	if err != nil {
		rec.failUpstream(w, err)
		return nil
	}
	if up.statusCode() != http.StatusOK {
		if up.carriesAccessToken() || up.unhookedToken() != "" {
			rec.failUpstream(w, upstreamErrorf("upstream answered a client credentials request with status %d and a token", up.statusCode()))
			return nil
		}
		up.replay(w) // the upstream's own error, such as invalid_client
		rec.replayed(up)
		return nil
	}

	out, err := h.exchange(r, req, up, rec)
	if err != nil {
		rec.failWith(w, err)
		return nil
	}

	copyHeader(w.Header(), up.header)
	w.Header().Del("Content-Encoding")
	w.Header().Set("Content-Length", strconv.Itoa(len(out)))
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(out)
	rec.outcome, rec.status = outcomeIssued, http.StatusOK
	return nil
}

// forward sends r to next and captures the whole answer. The upstream is
// asked for an unencoded response, since an encoded one cannot be read. An
// upstream that fails or aborts mid-body (reverse_proxy then panics with
// http.ErrAbortHandler) is an upstreamFailure: the client gets a 502 OAuth
// error, never a partial answer.
func (h *Handler) forward(r *http.Request, next caddyhttp.Handler) (up *capture, err error) {
	// "identity" rather than no header: without one, Go's transport asks
	// for gzip on its own and decodes the answer behind our back.
	r.Header.Set("Accept-Encoding", "identity")
	up = newCapture(maxUpstreamResponse)
	defer func() {
		if p := recover(); p != nil {
			err = upstreamErrorf("the upstream response could not be read: %v", p)
		}
	}()
	err = next.ServeHTTP(up, r)
	switch {
	case up.overflow: // the copy was stopped by the capture, whatever next says
		return nil, upstreamErrorf("upstream token response is larger than %d bytes", maxUpstreamResponse)
	case err != nil:
		return nil, upstreamFailure{err}
	}
	return up, nil
}

// writeUpstreamFailure answers a request whose upstream answer cannot be
// used.
func writeUpstreamFailure(w http.ResponseWriter) {
	writeOAuthError(w, http.StatusBadGateway, codeServerError,
		"the authorization server's token response could not be processed")
}

// exchange verifies the upstream token, runs the hook and returns the
// rewritten response body.
func (h *Handler) exchange(r *http.Request, req *tokenRequest, up *capture, rec *exchangeRecord) ([]byte, error) {
	if enc := up.header.Get("Content-Encoding"); enc != "" && !strings.EqualFold(enc, "identity") {
		return nil, upstreamErrorf("upstream token response is encoded (%s)", enc)
	}
	if !isJSON(up.header) {
		return nil, upstreamErrorf("upstream token response is %q, not JSON", up.header.Get("Content-Type"))
	}
	// One pass over the answer gives both the members by name (the last
	// of a repeated name, as encoding/json keeps) and every access_token
	// spelling, which accessTokens reads the same way.
	resp := map[string]json.RawMessage{}
	var named namedTokens
	err := eachMember(up.body.Bytes(), func(name string, raw json.RawMessage) error {
		named.add(name, raw)
		resp[name] = raw
		return nil
	})
	if err != nil {
		return nil, upstreamErrorf("upstream token response is not a JSON object")
	}
	tokens := named.tokens
	if _, exact := resp["access_token"]; named.notString || len(tokens) != 1 || !exact || tokens[0] == "" {
		// Two access_token members, or one spelt differently, would leave
		// a token the hook never saw beside the one it did.
		return nil, upstreamErrorf("upstream token response must have exactly one access_token string")
	}
	accessToken := tokens[0]
	// The hook rewrites access_token, and refresh_token is dropped below;
	// any other member or header that carries a client credentials token
	// would reach the client unhooked.
	rest := maps.Clone(resp)
	delete(rest, "access_token")
	deleteFold(rest, "refresh_token")
	restJSON, err := jsonobject.Encode(rest)
	if err != nil {
		return nil, upstreamErrorf("upstream token response could not be re-encoded: %w", err)
	}
	if why := unhookedIn(restJSON, up.header); why != "" {
		return nil, upstreamErrorf("upstream token response carries a second token: %s", why)
	}
	m := metrics()
	start := time.Now()
	tok, err := h.verifier.Verify(r.Context(), accessToken)
	rec.verify = time.Since(start)
	if err != nil {
		m.verifyFailures.WithLabelValues(token.FailureReason(err)).Inc()
		return nil, upstreamErrorf("upstream access token: %w", err)
	}

	rec.clientID = exchangeClientID(tok, rec.clientID)
	in := h.hookInput(r, req, tok, rec.clientID)
	rec.audience, rec.scopeBefore = in.Audience, in.Scope
	start = time.Now()
	result, err := h.engine.Run(r.Context(), in)
	rec.scripts = time.Since(start)
	m.scripts.WithLabelValues(scriptOutcome(err)).Observe(rec.scripts.Seconds())
	if err != nil {
		return nil, err
	}
	rec.result = result

	start = time.Now()
	signed, err := h.resign(tok, result)
	rec.sign = time.Since(start)
	if err != nil {
		return nil, err
	}
	m.sign.Observe(rec.sign.Seconds())
	// A compact JWS is base64url and dots: quoted, it is its JSON string.
	if jsonobject.PlainString(signed) {
		resp["access_token"] = json.RawMessage(`"` + signed + `"`)
	} else {
		resp["access_token"], _ = json.Marshal(signed)
	}
	// The refresh grant is not hooked, so a refresh token would mint
	// access tokens the hook never saw; RFC 6749 §4.4.3 says client
	// credentials responses should not carry one anyway.
	if deleteFold(resp, "refresh_token") {
		h.logger.Debug("dropped the upstream's refresh_token from a client credentials response")
	}
	deleteFold(resp, "scope")
	if len(result.Scope) > 0 {
		resp["scope"], _ = json.Marshal(strings.Join(result.Scope, " "))
	}
	return jsonobject.Encode(resp)
}

// deleteFold deletes every member named name in any case: a client that
// reads the answer with encoding/json matches member names that way, so a
// "Refresh_Token" or a "SCOPE" left behind would be read as the member
// dropped or replaced.
func deleteFold(resp map[string]json.RawMessage, name string) (deleted bool) {
	for k := range resp {
		if strings.EqualFold(k, name) {
			delete(resp, k)
			deleted = true
		}
	}
	return deleted
}

// resign signs, with the proxy's key, the upstream's token amended with the
// hook's scope and claims, keeping the header typ.
func (h *Handler) resign(tok *token.Token, result *caddyhook.Result) (string, error) {
	payload, err := tok.Payload(result.Scope, result.Claims)
	if err != nil {
		return "", err
	}
	if exp, ok := tok.Expiry(); ok {
		h.keys.ObserveLifetime(time.Until(exp))
	}
	return h.keys.Signer().Sign(tok.Type, payload)
}
