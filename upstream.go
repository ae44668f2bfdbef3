package credentialsexchange

import (
	"bytes"
	"errors"
	"mime"
	"net/http"
	"strings"
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
