package credentialsexchange

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
)

// tokenRequest is a token request as the client sent it.
type tokenRequest struct {
	raw    []byte
	isJSON bool
	// params are the request parameters: a string per form field (a []any
	// for a repeated one), or whatever JSON value the client sent.
	params map[string]any
}

// grantType returns the grant_type parameter, or "" when it is not a string.
func (t *tokenRequest) grantType() string { return t.stringParam("grant_type") }

func (t *tokenRequest) stringParam(name string) string {
	s, _ := t.params[name].(string)
	return s
}

// errBodyTooLarge is returned for a body over the handler's limit.
var errBodyTooLarge = errors.New("request body too large")

// readTokenRequest reads and parses the request body. ok is false for a body
// this handler cannot read as a token request (another content type,
// malformed data); such a request goes to the upstream as it came.
func readTokenRequest(r *http.Request, limit int64) (req *tokenRequest, ok bool, err error) {
	if r.ContentLength > limit {
		return nil, false, errBodyTooLarge
	}
	raw, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return nil, false, fmt.Errorf("reading request body: %w", err)
	}
	if int64(len(raw)) > limit {
		return nil, false, errBodyTooLarge
	}
	req = &tokenRequest{raw: raw}
	switch {
	case mediaType(r.Header) == "application/x-www-form-urlencoded":
		values, err := url.ParseQuery(string(raw))
		if err != nil {
			return req, false, nil
		}
		req.params = make(map[string]any, len(values))
		for k, v := range values {
			if len(v) == 1 {
				req.params[k] = v[0]
			} else {
				list := make([]any, len(v))
				for i, s := range v {
					list[i] = s
				}
				req.params[k] = list
			}
		}
	case isJSON(r.Header):
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		if err := dec.Decode(&req.params); err != nil || req.params == nil {
			return req, false, nil
		}
		req.isJSON = true
	default:
		return req, false, nil
	}
	return req, true, nil
}

// restoreBody puts body back on r for the next handler, with the length and
// GetBody (used by reverse_proxy to retry) kept right.
func restoreBody(r *http.Request, body []byte) {
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	r.TransferEncoding = nil
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	if len(body) > 0 {
		r.Header.Set("Content-Length", fmt.Sprint(len(body)))
	}
}

// forwardBody returns the body and content type to send upstream: the
// original bytes unless the JSON request must become a form or the audience
// parameter must be renamed.
func (h *Handler) forwardBody(req *tokenRequest) ([]byte, string, error) {
	rename := h.AudienceParam != "" && h.AudienceParam != "audience"
	if _, has := req.params["audience"]; !has {
		rename = false
	}
	if !rename && (!req.isJSON || h.JSONBody == "keep") {
		return req.raw, "", nil
	}
	params := make(map[string]any, len(req.params))
	for k, v := range req.params {
		params[k] = v
	}
	if rename {
		if _, taken := params[h.AudienceParam]; !taken {
			params[h.AudienceParam] = params["audience"]
			delete(params, "audience")
		}
	}
	if req.isJSON && h.JSONBody == "keep" {
		b, err := json.Marshal(params)
		return b, "application/json", err
	}
	form := url.Values{}
	for k, v := range params {
		vals, err := formValues(v)
		if err != nil {
			return nil, "", fmt.Errorf("parameter %s: %w", k, err)
		}
		form[k] = vals
	}
	return []byte(form.Encode()), "application/x-www-form-urlencoded", nil
}

// formValues turns a JSON parameter into form values: strings, numbers and
// booleans as text, arrays as repeated fields, objects as JSON text.
func formValues(v any) ([]string, error) {
	switch x := v.(type) {
	case string:
		return []string{x}, nil
	case json.Number:
		return []string{x.String()}, nil
	case bool:
		return []string{fmt.Sprint(x)}, nil
	case nil:
		return []string{""}, nil
	case []any:
		var out []string
		for _, e := range x {
			vals, err := formValues(e)
			if err != nil {
				return nil, err
			}
			out = append(out, vals...)
		}
		return out, nil
	default:
		b, err := json.Marshal(x)
		return []string{string(b)}, err
	}
}

// hookBody returns the request parameters a hook sees as context.body: all of
// them but the client's credentials.
func (req *tokenRequest) hookBody() map[string]any {
	out := make(map[string]any, len(req.params))
	for k, v := range req.params {
		if k == "client_secret" || k == "client_assertion" {
			continue
		}
		out[k] = v
	}
	return out
}

// clientIDFromRequest finds the client ID the request authenticated with:
// HTTP Basic (form-decoded, RFC 6749 §2.3.1), the client_id parameter, or
// the sub of a client_assertion. The upstream has already checked the
// credentials, or it would not have issued a token.
func clientIDFromRequest(r *http.Request, req *tokenRequest) string {
	if user, _, ok := r.BasicAuth(); ok && user != "" {
		if decoded, err := url.QueryUnescape(user); err == nil {
			return decoded
		}
		return user
	}
	if id := req.stringParam("client_id"); id != "" {
		return id
	}
	return assertionSubject(req.stringParam("client_assertion"))
}

// assertionSubject returns the sub of a client_assertion JWT (RFC 7523),
// unverified: the upstream verified it before it issued the token.
func assertionSubject(assertion string) string {
	parts := strings.Split(assertion, ".")
	if len(parts) != 3 {
		return ""
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return ""
	}
	var c struct {
		Sub string `json:"sub"`
	}
	_ = json.Unmarshal(payload, &c)
	return c.Sub
}

// mediaType returns the media type of a Content-Type header, lower-cased and
// without parameters.
func mediaType(h http.Header) string {
	mt, _, _ := mime.ParseMediaType(h.Get("Content-Type"))
	return mt
}

// isJSON reports whether a request or response carries JSON.
func isJSON(h http.Header) bool {
	mt := mediaType(h)
	return mt == "application/json" || strings.HasSuffix(mt, "+json")
}

// requestedAudiences returns the audience (Auth0) and resource (RFC 8707)
// parameters the client sent, in that order.
func (req *tokenRequest) requestedAudiences() []string {
	var out []string
	for _, name := range []string{"audience", "resource"} {
		switch v := req.params[name].(type) {
		case string:
			out = append(out, v)
		case []any:
			for _, e := range v {
				if s, ok := e.(string); ok {
					out = append(out, s)
				}
			}
		}
	}
	return out
}
