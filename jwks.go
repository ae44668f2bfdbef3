package credentialsexchange

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddyhook/caddyhook/token"
)

// serveJWKS serves the upstream's JWKS with the proxy's public keys merged
// in, so resource servers keep validating through the URL they already use;
// when the upstream has no JWKS there, the proxy's keys are served alone.
func (h *Handler) serveJWKS(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	r.Header.Del("Accept-Encoding")
	up := newCapture(maxUpstreamResponse)
	var upstream []byte
	if err := next.ServeHTTP(up, r); err != nil {
		h.logger.Warn("upstream JWKS unavailable; serving the proxy's keys alone", zap.Error(err))
	} else if up.statusCode() == http.StatusOK && !up.overflow && isJSON(up.header) && up.header.Get("Content-Encoding") == "" {
		upstream = up.body.Bytes()
	}

	keys := h.keys.PublicKeys()
	body, err := token.MergeJWKS(upstream, keys)
	if err != nil {
		h.logger.Warn("upstream JWKS unusable; serving the proxy's keys alone", zap.Error(err))
		if body, err = token.MergeJWKS(nil, keys); err != nil {
			return caddyhttp.Error(http.StatusInternalServerError, err)
		}
	}
	hdr := w.Header()
	hdr.Set("Content-Type", "application/json")
	hdr.Set("Cache-Control", fmt.Sprintf("public, max-age=%d", int(time.Duration(h.JWKSMaxAge).Seconds())))
	hdr.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
	return nil
}
