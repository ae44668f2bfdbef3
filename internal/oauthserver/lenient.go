// This file is a second front end for the same go-oauth2 server: a router and
// parameter reader that are DELIBERATELY DIFFERENT from go-oauth2's own
// r.FormValue, and from each other's edge cases, in the ways Node-style
// authorization servers differ (oidc-provider on koa, express with
// body-parser):
//
//   - the token path matches ASCII-case-insensitively and with one optional
//     trailing slash (/OAUTH/TOKEN, /oauth/Token, /oauth/token/), as
//     oidc-provider's router does; it is matched against the percent-decoded
//     path, as routers that decode before routing do;
//   - an application/x-www-form-urlencoded body is split on '&' only, '+' is a
//     space, malformed percent-escapes are kept literally and pairs without a
//     name are skipped instead of failing the whole body (Node's
//     querystring), where Go's url.ParseQuery reports an error and
//     credentials_exchange may give up on the body;
//   - an application/json (or +json) body is turned into parameters
//     (body-parser.json); a JSON array parameter counts as its last element;
//   - a gzip or deflate Content-Encoding is inflated first (body-parser and
//     koa-bodyparser inflate by default);
//   - a repeated parameter takes its LAST value (qs arrays; many apps take the
//     last), where Go's FormValue takes the first;
//   - query parameters are merged under the body's: the body wins.
//
// The request is then rebuilt as a clean form POST to /oauth/token and handed
// to go-oauth2, so tokens are issued, signed and published exactly as the
// stock server does it.
//
// Why: credentials_exchange decides from the request whether a response is a
// client-credentials token that must go through the hook. If it reads a
// request differently from the authorization server behind it, the server can
// issue a client-credentials token the proxy never looks at, and the client
// gets the upstream's own token with the hook bypassed. Testing the proxy in
// front of both this server and the stock one checks that its decision holds
// for servers that parse differently, not only for the one it was written
// against. Nothing here is meant as an example of how to parse requests.

package oauthserver

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// lenientBodyLimit caps a token request body, before and after inflating.
const lenientBodyLimit = 1 << 20

// lenientRouter is the Node-style front end of a Server started with
// Options.Lenient.
type lenientRouter struct {
	token http.HandlerFunc // go-oauth2's token endpoint
	jwks  http.HandlerFunc
	other http.HandlerFunc
}

func (l lenientRouter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case isLenientTokenPath(r.URL.Path):
		l.serveToken(w, r)
	case r.URL.Path == "/.well-known/jwks.json":
		l.jwks(w, r)
	default:
		l.other(w, r)
	}
}

// isLenientTokenPath matches /oauth/token ignoring ASCII case, with at most
// one trailing slash. The folding is ASCII-only, like a JavaScript regular
// expression with the i flag and without u.
func isLenientTokenPath(p string) bool {
	p = strings.TrimSuffix(p, "/")
	const want = "/oauth/token"
	if len(p) != len(want) {
		return false
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != want[i] {
			return false
		}
	}
	return true
}

// serveToken reads the parameters the Node way and hands go-oauth2 a clean
// form request carrying them. The method is kept, so go-oauth2 still refuses
// anything but POST.
func (l lenientRouter) serveToken(w http.ResponseWriter, r *http.Request) {
	params, status, err := lenientParams(r)
	if err != nil {
		writeLenientError(w, status, err.Error())
		return
	}
	form := url.Values{}
	for k, v := range params {
		form.Set(k, v)
	}
	body := form.Encode()
	clean, err := http.NewRequestWithContext(r.Context(), r.Method, "/oauth/token", strings.NewReader(body))
	if err != nil {
		writeLenientError(w, http.StatusBadRequest, err.Error())
		return
	}
	clean.Header = r.Header.Clone()
	clean.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	clean.Header.Set("Content-Length", strconv.Itoa(len(body)))
	clean.Header.Del("Content-Encoding")
	clean.Header.Del("Transfer-Encoding")
	clean.Host = r.Host
	clean.RemoteAddr = r.RemoteAddr
	clean.RequestURI = "/oauth/token"
	l.token(w, clean)
}

// lenientParams returns the request's parameters as the lenient server reads
// them: query parameters overlaid by the body's, one value each, the last
// one given. The status goes with an error: 400 for a malformed JSON body,
// 413 for one too large, 415 for an unknown Content-Encoding.
func lenientParams(r *http.Request) (map[string]string, int, error) {
	params := parseNodeQuery(r.URL.RawQuery)
	body, status, err := readLenientBody(r)
	if err != nil {
		return nil, status, err
	}
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		// No Content-Type, or one that does not parse: the body is not read,
		// as type-is would not match it.
		return params, 0, nil
	}
	switch {
	case mt == "application/x-www-form-urlencoded":
		for k, v := range parseNodeQuery(string(body)) {
			params[k] = v
		}
	case mt == "application/json" || strings.HasSuffix(mt, "+json"):
		if len(bytes.TrimSpace(body)) == 0 {
			break // body-parser leaves an empty body as {}
		}
		var doc any
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.UseNumber()
		if err := dec.Decode(&doc); err != nil {
			return nil, http.StatusBadRequest, fmt.Errorf("malformed JSON body: %v", err)
		}
		obj, _ := doc.(map[string]any) // a top-level array or scalar carries no parameters
		for k, v := range obj {
			if s, ok := lastScalar(v); ok {
				params[k] = s
			}
		}
	}
	return params, 0, nil
}

// readLenientBody reads the body, inflating gzip and deflate.
func readLenientBody(r *http.Request) ([]byte, int, error) {
	if r.Body == nil {
		return nil, 0, nil
	}
	raw, err := io.ReadAll(io.LimitReader(r.Body, lenientBodyLimit+1))
	if err != nil {
		return nil, http.StatusBadRequest, fmt.Errorf("reading body: %v", err)
	}
	if len(raw) > lenientBodyLimit {
		return nil, http.StatusRequestEntityTooLarge, errors.New("request body too large")
	}
	var zr io.Reader
	switch enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))); enc {
	case "", "identity":
		return raw, 0, nil
	case "gzip":
		zr, err = gzip.NewReader(bytes.NewReader(raw))
	case "deflate":
		zr, err = zlib.NewReader(bytes.NewReader(raw))
	default:
		return nil, http.StatusUnsupportedMediaType, fmt.Errorf("unsupported content encoding %q", enc)
	}
	if err != nil {
		return nil, http.StatusBadRequest, fmt.Errorf("inflating body: %v", err)
	}
	body, err := io.ReadAll(io.LimitReader(zr, lenientBodyLimit+1))
	if err != nil {
		return nil, http.StatusBadRequest, fmt.Errorf("inflating body: %v", err)
	}
	if len(body) > lenientBodyLimit {
		return nil, http.StatusRequestEntityTooLarge, errors.New("request body too large")
	}
	return body, 0, nil
}

// parseNodeQuery parses a query string or form body the way Node's
// querystring.parse does, keeping the last value of a repeated name: split
// on '&' only (never ';'), the name ends at the first '=', '+' is a space,
// valid %XX escapes are decoded and malformed ones kept as they are. Pairs
// with an empty name are skipped. It never fails.
func parseNodeQuery(s string) map[string]string {
	out := map[string]string{}
	for _, pair := range strings.Split(s, "&") {
		name, value, _ := strings.Cut(pair, "=")
		name = nodeUnescape(name)
		if name == "" {
			continue
		}
		out[name] = nodeUnescape(value)
	}
	return out
}

// nodeUnescape is querystring.unescape: '+' is a space, %XX is a byte, and a
// '%' not followed by two hex digits is itself; bytes that are not UTF-8
// become U+FFFD, as Buffer.toString makes them.
func nodeUnescape(s string) string {
	s = strings.ReplaceAll(s, "+", " ")
	if !strings.Contains(s, "%") {
		return strings.ToValidUTF8(s, "\uFFFD")
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
			b.WriteByte(unhex(s[i+1])<<4 | unhex(s[i+2]))
			i += 2
			continue
		}
		b.WriteByte(s[i])
	}
	return strings.ToValidUTF8(b.String(), "\uFFFD")
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c >= 'a':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

// lastScalar turns a JSON value into a parameter the way an app that takes
// the last element of an array does: strings as they are, numbers and
// booleans as text, an array as its last element; null and objects are no
// parameter.
func lastScalar(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case json.Number:
		return x.String(), true
	case bool:
		return strconv.FormatBool(x), true
	case []any:
		if len(x) == 0 {
			return "", false
		}
		return lastScalar(x[len(x)-1])
	default:
		return "", false
	}
}

func writeLenientError(w http.ResponseWriter, status int, description string) {
	body, _ := json.Marshal(map[string]string{"error": "invalid_request", "error_description": description})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
