package credentialsexchange

import (
	"context"
	"net/http"
	"net/url"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"go.uber.org/zap"

	"github.com/caddyhook/caddyhook/token"
)

// How upstream_issuer's document is fetched: refreshed like the upstream
// JWKS, tried at most once a second while it fails, and in the background
// from start-up with a growing pause up to discoveryMaxBackoff.
const (
	discoveryTTL        = upstreamJWKSTTL
	discoveryRetryAfter = upstreamJWKSRetryAfter
	discoveryMaxBackoff = time.Minute
)

// newDiscovery returns the discovery of upstream_issuer when something
// needs it: the upstream's keys (no explicit key source) or the JWKS path
// (no jwks_path). The issuer check needs only the configured value.
func (h *Handler) newDiscovery() *token.Discovery {
	if h.UpstreamIssuer == "" {
		return nil
	}
	explicitKeys := h.UpstreamJWKS != "" || h.UpstreamKey != "" || h.InsecureSkipVerify
	if explicitKeys && h.JWKSPath != "" {
		return nil
	}
	return &token.Discovery{
		Issuer:     h.UpstreamIssuer,
		Client:     &http.Client{Timeout: 10 * time.Second},
		TTL:        discoveryTTL,
		RetryAfter: discoveryRetryAfter,
	}
}

// publicKeys returns the proxy's published keys, nil before they are
// provisioned (no exchange runs before then).
func (h *Handler) publicKeys() []jwk.Key {
	if h.keys == nil {
		return nil
	}
	return h.keys.PublicKeys()
}

// startDiscovery reads the upstream's metadata in the background for the
// handler's life: from start-up, retrying with a growing pause until it
// succeeds, so that the discovered JWKS path is served from the start
// rather than after the first exchange, and then again every discoveryTTL,
// so that routing (jwksRoute) never fetches in a request. Cleanup stops it.
// Provision does not wait: an upstream that is down at start-up is not a
// config error, and the document's URL may lead back through this very
// server, which is not listening yet.
func (h *Handler) startDiscovery(ctx caddy.Context) {
	if h.discovery == nil {
		return
	}
	bg, cancel := context.WithCancel(ctx)
	h.stopDiscover = cancel
	go func() {
		pause := discoveryRetryAfter
		var logged string // the jwks_uri last logged
		for {
			wait := discoveryTTL
			m, err := h.discovery.Get(bg)
			switch {
			case bg.Err() != nil:
				return
			case err != nil:
				h.logger.Warn("upstream discovery failed; exchanges fail with 502 and the discovered JWKS path is not served until it succeeds",
					zap.String("upstream_issuer", h.UpstreamIssuer), zap.Duration("retry_in", pause), zap.Error(err))
				wait, pause = pause, min(2*pause, discoveryMaxBackoff)
			default:
				pause = discoveryRetryAfter
				if m.JWKSURI != logged {
					h.logDiscovered(m)
					logged = m.JWKSURI
				}
			}
			t := time.NewTimer(wait)
			select {
			case <-bg.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
	}()
}

// logDiscovered says what the document gave, and warns when resource
// servers that follow its jwks_uri will not reach this proxy's JWKS.
func (h *Handler) logDiscovered(m *token.Metadata) {
	fields := []zap.Field{
		zap.String("upstream_issuer", m.Issuer),
		zap.String("metadata", m.Source),
		zap.String("jwks_uri", m.JWKSURI),
		zap.String("jwks_path", h.servedJWKSPath(m)),
	}
	h.logger.Info("upstream discovery read", fields...)
	if h.servedJWKSPath(m) == "" {
		h.logger.Warn("the discovered jwks_uri has no path of its own, and serving the JWKS at / would shadow the site: the merged JWKS is not served; set jwks_path",
			fields...)
	}
	iu, _ := url.Parse(m.Issuer)
	ju, _ := url.Parse(m.JWKSURI)
	if h.JWKSPath == "" && iu != nil && ju != nil && iu.Host != ju.Host {
		h.logger.Warn("the discovered jwks_uri is on another host than the issuer: resource servers that follow it fetch the upstream's keys from there, not from this proxy, and will not find the proxy's key; point them at this proxy's jwks_path",
			fields...)
	}
}

// servedJWKSPath is the path of m's jwks_uri, unless jwks_path is set; ""
// when that path cannot be served without shadowing the site's root.
func (h *Handler) servedJWKSPath(m *token.Metadata) string {
	if h.JWKSPath != "" {
		return h.JWKSPath
	}
	if m.JWKSPath == "" || m.JWKSPath == "/" {
		return ""
	}
	return m.JWKSPath
}

// isJWKSPath reports whether r asks for the merged JWKS.
func (h *Handler) isJWKSPath(r *http.Request) bool {
	p := h.jwksRoute(r)
	return p != "" && r.URL.Path == p
}

// jwksRoute returns the path at which the merged JWKS is served: jwks_path,
// or the discovered one. It never fetches: every GET and HEAD the site
// serves comes here, and a fetch in the request would hold up unrelated
// requests (up to the fetch time-outs, when the upstream does not answer);
// startDiscovery keeps the document read and warns while it cannot. Before
// the first document a request is let through: its path may be the JWKS
// path, which then goes out without the proxy's key.
func (h *Handler) jwksRoute(r *http.Request) string {
	if h.JWKSPath != "" {
		return h.JWKSPath
	}
	if h.discovery == nil {
		return ""
	}
	m := h.discovery.Current()
	if m == nil {
		h.logger.Debug("the JWKS path is not known yet (upstream discovery has not succeeded): this request goes to the upstream untouched, and if it asks for the upstream's JWKS, the answer lacks the proxy's key",
			zap.String("method", r.Method), zap.String("path", r.URL.Path))
		return ""
	}
	return h.servedJWKSPath(m)
}
