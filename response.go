package credentialsexchange

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/caddyhook/caddyhook/caddyhook"
)

// capture is a ResponseWriter that keeps the next handler's response in
// memory so it can be inspected before anything reaches the client. Nothing
// is passed through: a token that the hook has not approved must never be
// written, and a response over the limit is dropped, not truncated.
type capture struct {
	header   http.Header
	status   int
	body     bytes.Buffer
	limit    int
	overflow bool
}

// errResponseTooLarge stops the next handler from copying an over-limit
// response.
var errResponseTooLarge = errors.New("upstream response over the limit")

func newCapture(limit int) *capture {
	return &capture{header: http.Header{}, limit: limit}
}

func (c *capture) Header() http.Header { return c.header }

func (c *capture) WriteHeader(status int) {
	// 1xx responses are informational; the final status is what counts.
	if c.status == 0 && status >= 200 {
		c.status = status
	}
}

func (c *capture) Write(p []byte) (int, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	if c.overflow || c.body.Len()+len(p) > c.limit {
		// Stop the copy rather than read the rest: the caller fails the
		// exchange whatever follows.
		c.overflow = true
		return 0, errResponseTooLarge
	}
	return c.body.Write(p)
}

// FlushError lets reverse_proxy flush without effect: nothing is sent until
// the exchange is done.
func (c *capture) FlushError() error { return nil }

// statusCode returns the status, with the implicit 200 of a handler that
// wrote nothing.
func (c *capture) statusCode() int {
	if c.status == 0 {
		return http.StatusOK
	}
	return c.status
}

// replay writes the captured response to w unchanged.
func (c *capture) replay(w http.ResponseWriter) {
	copyHeader(w.Header(), c.header)
	w.WriteHeader(c.statusCode())
	_, _ = w.Write(c.body.Bytes())
}

func copyHeader(dst, src http.Header) {
	for k, v := range src {
		dst[k] = append([]string(nil), v...)
	}
}

// The OAuth error codes (RFC 6749 §5.2) of the answers the handler makes
// itself rather than passes on from the scripts: a request it refuses (400,
// or 413 for a body over the limit) and a failure of its own or of the
// upstream (500, 502).
const (
	codeInvalidRequest = "invalid_request"
	codeServerError    = "server_error"
)

// oauthStatus is the HTTP status of the answer to an OAuth error the
// scripts produced (caddyhook.Error.Code), which knows nothing of HTTP: the
// client's errors are 400, and any other code is a failure of ours, 500,
// so that a code we do not expect never blames the client.
func oauthStatus(code string) int {
	switch code {
	case caddyhook.CodeInvalidRequest, caddyhook.CodeInvalidScope:
		return http.StatusBadRequest
	}
	return http.StatusInternalServerError
}

// writeOAuthError sends an RFC 6749 §5.2 error response.
func writeOAuthError(w http.ResponseWriter, status int, code, description string) {
	body, _ := json.Marshal(map[string]string{"error": code, "error_description": description})
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
