package credentialsexchange

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"path"
	"strings"
)

// tokenRequest is a request to the token path as the client sent it, and
// what the handler decided to do with it.
type tokenRequest struct {
	raw    []byte
	isJSON bool
	// params are the body's parameters when the body is a form or a JSON
	// object: a string per form field (a []any for a repeated one), or
	// whatever JSON value the client sent.
	params map[string]any
	// grant is what the handler does with the request; refusal says why a
	// refused request is refused, for the client and the log.
	grant   grantDecision
	refusal string
}

// grantDecision is the handler's reading of a token request. The rule is
// one-sided on purpose: only a request that every OAuth server would read as
// some other grant goes to the upstream untouched; a client credentials
// request is hooked; anything a server could read either way is refused and
// never forwarded, since the upstream might issue a token the hook never saw.
type grantDecision int

const (
	grantOther             grantDecision = iota // unambiguously another grant: forwarded as it came
	grantClientCredentials                      // hooked
	grantRefused                                // 400 invalid_request, never forwarded
)

func (t *tokenRequest) stringParam(name string) string {
	s, _ := t.params[name].(string)
	return s
}

// errBodyTooLarge is returned for a body over the handler's limit.
var errBodyTooLarge = errors.New("request body too large")

// readTokenRequest reads the body of a request to the token path and decides
// what to do with it. err is only for a body that cannot be read or is over
// limit; every other problem is a refusal in req.
func readTokenRequest(r *http.Request, limit int64) (req *tokenRequest, err error) {
	if r.ContentLength > limit {
		return nil, errBodyTooLarge
	}
	raw, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("reading request body: %w", err)
	}
	if int64(len(raw)) > limit {
		return nil, errBodyTooLarge
	}
	req = &tokenRequest{raw: raw}
	req.grant, req.refusal = req.classify(r)
	return req, nil
}

// routePath reads a request path the way the most lenient OAuth server
// routes it, so that every spelling some server sends to its token endpoint
// compares equal: backslashes as slashes (IIS), path parameters dropped
// (/token;jsessionid=1: servlet containers), trailing dots and spaces
// trimmed from segments (IIS), repeated slashes and dot segments resolved,
// one trailing slash ignored, case folded (oidc-provider), and one format
// extension dropped from the last segment (/token.json: Rails, Spring MVC's
// suffix matching).
func routePath(p string) string {
	segs := strings.Split(strings.ReplaceAll(p, "\\", "/"), "/")
	for i, seg := range segs {
		seg, _, _ = strings.Cut(seg, ";")
		if seg != "." && seg != ".." {
			seg = strings.TrimRight(seg, ". ")
		}
		segs[i] = seg
	}
	clean := path.Clean("/" + strings.Join(segs, "/"))
	dir, last := path.Split(clean)
	if i := strings.LastIndexByte(last, '.'); i > 0 {
		last = last[:i]
	}
	return strings.ToLower(dir + last)
}

// grantParam is one occurrence of a parameter that some server could read as
// grant_type.
type grantParam struct {
	name   string // as sent, decoded
	value  string
	string bool // false for a JSON value that is not a string
	inBody bool
}

// tokenParams are the parameters a token request carries in its body; in the
// query string of a client credentials request they are refused, since
// servers differ on which of query and body wins (go-oauth2's FormValue reads
// both).
var tokenParams = []string{"grant_type", "client_id", "client_secret", "client_assertion",
	"client_assertion_type", "scope", "audience", "resource"}

// classify decides what the handler does with a request to the token path,
// from everything an OAuth server might read: query, body (form, JSON or
// multipart), method and headers.
func (req *tokenRequest) classify(r *http.Request) (grantDecision, string) {
	var grants []grantParam
	query, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return grantRefused, "the query string is malformed"
	}
	for name, values := range query {
		if isGrantName(name) {
			for _, v := range values {
				grants = append(grants, grantParam{name: name, value: v, string: true})
			}
		}
	}
	for _, enc := range r.Header.Values("Content-Encoding") {
		if !strings.EqualFold(strings.TrimSpace(enc), "identity") {
			// body-parser and others inflate request bodies; this handler
			// cannot read what they would.
			return grantRefused, "token requests must not be content-encoded"
		}
	}
	if len(r.Header.Values("Content-Type")) > 1 {
		// Go reads the first, gunicorn the last.
		return grantRefused, "the request has more than one Content-Type"
	}

	if len(req.raw) > 0 {
		mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
		switch {
		case err != nil:
			return grantRefused, "the request has a body without a valid Content-Type"
		case !utf8Charset(params["charset"]):
			// Django and servlet containers decode the body in the
			// declared charset (utf-7, IBM037...) before parsing it.
			return grantRefused, fmt.Sprintf("token requests must be UTF-8, not %q", params["charset"])
		case mt == "application/x-www-form-urlencoded":
			values, err := url.ParseQuery(string(req.raw))
			if err != nil {
				return grantRefused, "the form body is malformed"
			}
			req.params = formParams(values)
			for name, vs := range values {
				if isGrantName(name) {
					for _, v := range vs {
						grants = append(grants, grantParam{name: name, value: v, string: true, inBody: true})
					}
				}
			}
		case mt == "application/json" || strings.HasSuffix(mt, "+json"):
			obj, dup, err := parseJSONObject(req.raw)
			if err != nil {
				return grantRefused, "the JSON body is malformed: it must be one JSON object"
			}
			if dup != "" {
				return grantRefused, fmt.Sprintf("the JSON body has the member %q more than once", dup)
			}
			req.params, req.isJSON = obj, true
			for name, v := range obj {
				if isGrantName(name) {
					s, ok := v.(string)
					grants = append(grants, grantParam{name: name, value: s, string: ok, inBody: true})
				}
			}
		case mt == "multipart/form-data":
			found, err := multipartGrants(req.raw, params["boundary"])
			if err != nil {
				return grantRefused, "the multipart body is malformed"
			}
			grants = append(grants, found...)
		default:
			return grantRefused, fmt.Sprintf("token requests must be application/x-www-form-urlencoded or application/json, not %q", mt)
		}
	}

	switch {
	case len(grants) == 0 && r.Method == http.MethodPost:
		return grantRefused, "grant_type is required"
	case len(grants) == 0:
		return grantOther, ""
	case len(grants) > 1:
		return grantRefused, "grant_type must appear exactly once"
	}
	g := grants[0]
	switch {
	case g.name != "grant_type":
		return grantRefused, fmt.Sprintf("the parameter %q is ambiguous: use grant_type", g.name)
	case !g.string:
		return grantRefused, "grant_type must be a string"
	case g.value == "client_credentials":
		switch {
		case r.Method != http.MethodPost:
			return grantRefused, "token requests must use POST"
		case !g.inBody:
			return grantRefused, "grant_type must be in the request body"
		case req.params == nil: // neither a form nor JSON
			return grantRefused, "client credentials requests must be application/x-www-form-urlencoded or application/json"
		}
		for _, name := range tokenParams {
			if query.Has(name) {
				return grantRefused, fmt.Sprintf("the token request parameter %q must be in the request body, not the query string", name)
			}
		}
		if why := req.oneClientAuthentication(r); why != "" {
			return grantRefused, why
		}
		return grantClientCredentials, ""
	case foldName(g.value) == "clientcredentials" || strings.ContainsFunc(g.value, notGrantChar):
		// Client_Credentials, " client_credentials", client_credentials\x00,
		// clıent_credentials: some server may read it as client credentials.
		// RFC 6749 §A.10: a grant type is a name or a URI.
		return grantRefused, "grant_type must be written exactly as client_credentials, or be another grant's name"
	}
	return grantOther, ""
}

// oneClientAuthentication refuses a client credentials request that
// authenticates the client in more than one way (RFC 6749 §2.3: a client
// must use one method per request). Servers differ on which one wins, and
// the hook must be told the client the upstream authenticated.
func (req *tokenRequest) oneClientAuthentication(r *http.Request) string {
	if len(r.Header.Values("Authorization")) > 1 {
		return "the request has more than one Authorization header"
	}
	for _, name := range []string{"client_id", "client_secret", "client_assertion", "client_assertion_type"} {
		if v, has := req.params[name]; has {
			if _, ok := v.(string); !ok {
				return name + " must be a string, given once"
			}
		}
	}
	_, hasSecret := req.params["client_secret"]
	_, hasAssertion := req.params["client_assertion"]
	if hasSecret && hasAssertion {
		return "the client must authenticate with one of client_secret and client_assertion"
	}
	user, _, basic := r.BasicAuth()
	if !basic {
		return ""
	}
	if hasSecret || hasAssertion {
		return "the client must authenticate with one of HTTP Basic and the request body"
	}
	if id, has := req.params["client_id"]; has && id != decodeBasicUser(user) {
		return "client_id differs from the HTTP Basic user"
	}
	return ""
}

// utf8Charset reports whether a charset parameter leaves the body UTF-8.
func utf8Charset(cs string) bool {
	switch strings.ToLower(cs) {
	case "", "utf-8", "utf8", "us-ascii":
		return true
	}
	return false
}

// notGrantChar reports a character that is neither in a grant name nor in
// a URI's usual characters.
func notGrantChar(c rune) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return false
	}
	return !strings.ContainsRune("-._~:/", c)
}

// isGrantName reports whether some server could read a parameter name as
// grant_type: any name whose letters and digits, case folded, hold
// "granttype". That covers Go's case-insensitive JSON names, PHP's
// "grant.type" and "grant[type" (read as grant_type) and "grant_type\x00x"
// (cut at the NUL), array suffixes (grant_type[]) and ASP.NET's model
// prefixes (request.grant_type).
func isGrantName(name string) bool {
	return strings.Contains(foldName(name), "granttype")
}

// foldName keeps the ASCII letters and digits of s, lower-cased.
func foldName(s string) string {
	var b strings.Builder
	for _, c := range s {
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
			b.WriteRune(c)
		case c >= 'A' && c <= 'Z':
			b.WriteRune(c + 'a' - 'A')
		case c == 'ſ': // folds to s in Go's EqualFold
			b.WriteByte('s')
		case c == 'K': // Kelvin sign, folds to k
			b.WriteByte('k')
		}
	}
	return b.String()
}

func formParams(values url.Values) map[string]any {
	params := make(map[string]any, len(values))
	for k, v := range values {
		if len(v) == 1 {
			params[k] = v[0]
			continue
		}
		list := make([]any, len(v))
		for i, s := range v {
			list[i] = s
		}
		params[k] = list
	}
	return params
}

// parseJSONObject decodes a body that must be exactly one JSON object. dup
// names a member that appears twice: parsers differ on which one wins, so
// such a body is refused rather than read one way.
func parseJSONObject(raw []byte) (obj map[string]any, dup string, err error) {
	obj = map[string]any{}
	err = eachMember(raw, func(name string, value json.RawMessage) error {
		var v any
		if len(value) > 0 && value[0] == '"' {
			// Most members are strings: no decoder (and its buffer) for
			// them; a string decodes the same either way.
			str, err := jsonString(value)
			if err != nil {
				return err
			}
			v = str
		} else {
			dec := json.NewDecoder(bytes.NewReader(value))
			dec.UseNumber()
			if err := dec.Decode(&v); err != nil {
				return err
			}
		}
		if _, seen := obj[name]; seen && dup == "" {
			dup = name
		}
		obj[name] = v
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	return obj, dup, nil
}

// maxMultipartParts bounds the parts read from a multipart body.
const maxMultipartParts = 1000

// multipartGrants returns the grant parameters of a multipart/form-data
// body, as go-oauth2's FormValue would read them.
func multipartGrants(raw []byte, boundary string) ([]grantParam, error) {
	if boundary == "" {
		return nil, errors.New("no boundary")
	}
	mr := multipart.NewReader(bytes.NewReader(raw), boundary)
	var out []grantParam
	for n := 0; ; n++ {
		if n > maxMultipartParts {
			return nil, errors.New("too many parts")
		}
		part, err := mr.NextRawPart()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		// Django decodes base64 and quoted-printable parts, and parts in
		// their own charset: refuse what this reader would see otherwise.
		if part.Header.Get("Content-Transfer-Encoding") != "" {
			return nil, errors.New("a part has a Content-Transfer-Encoding")
		}
		if ct := part.Header.Get("Content-Type"); ct != "" {
			if _, params, err := mime.ParseMediaType(ct); err != nil || !utf8Charset(params["charset"]) {
				return nil, errors.New("a part is not UTF-8")
			}
		}
		name := part.FormName()
		if isGrantName(name) {
			v, err := io.ReadAll(part)
			if err != nil {
				return nil, err
			}
			out = append(out, grantParam{name: name, value: string(v), string: true, inBody: true})
		}
	}
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
		return decodeBasicUser(user)
	}
	if id := req.stringParam("client_id"); id != "" {
		return id
	}
	return assertionSubject(req.stringParam("client_assertion"))
}

// decodeBasicUser form-decodes an HTTP Basic user name (RFC 6749 §2.3.1);
// one that does not decode is taken as it is.
func decodeBasicUser(user string) string {
	if decoded, err := url.QueryUnescape(user); err == nil {
		return decoded
	}
	return user
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
