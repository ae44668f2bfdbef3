package credentialsexchange

import (
	"errors"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/caddyhook/caddyhook/caddyhook"
)

// The handler's metrics, all under caddy_credentials_exchange_.
//
// How they survive a reload follows what Caddy v2.11.9 does, read from its
// source: every config load gets a fresh registry (caddy.NewContextWithCause
// makes a prometheus.NewPedanticRegistry for the new context, and the admin
// API's /metrics and the metrics handler serve the registry of the config
// that provisioned them). Into each new registry Caddy registers the same
// process-wide collectors again (Context.initMetrics: caddy_admin_http_*,
// caddy_config_last_reload_*), and reverse_proxy does the same with its
// package-level caddy_reverse_proxy_upstreams_healthy, ignoring the
// AlreadyRegisteredError a second handler in one config gets. Those keep
// their values across reloads. (caddy_http_request_* are the exception:
// the http app builds them anew per config, so they restart at zero on
// every reload.) The counters here are counts of events a dashboard takes
// rates of, so they follow the first pattern: one set of collectors for the
// process, registered into each config's registry, so that a reload neither
// fails with a duplicate registration nor resets them.
//
// No label carries a client ID or anything else a client chooses; the
// error label holds registered OAuth codes only.
type exchangeMetrics struct {
	exchanges        *prometheus.CounterVec   // outcome, error
	scripts          *prometheus.HistogramVec // outcome
	sign             prometheus.Histogram
	jwksFetches      *prometheus.CounterVec // outcome
	jwksFetchSeconds prometheus.Histogram
	verifyFailures   *prometheus.CounterVec // reason
	outboundCalls    *prometheus.CounterVec // outcome
	guardBlocked     prometheus.Counter
}

// The outcomes of an exchange, the outcome label of exchanges_total.
const (
	outcomeIssued        = "issued"         // a token went out
	outcomeDenied        = "denied"         // a 4xx OAuth error: a script's denial, a refused request, the upstream's own error
	outcomeError         = "error"          // a 5xx caddyhook produced: a script failed or timed out, an internal error
	outcomeUpstreamError = "upstream_error" // what the upstream sent could not be used (502), or its own 5xx answer
)

// metrics are the process's; see exchangeMetrics for why.
var metrics = sync.OnceValue(newExchangeMetrics)

func newExchangeMetrics() *exchangeMetrics {
	const ns, sub = "caddy", "credentials_exchange"
	// Scripts run from well under a millisecond (warm) to the time limit
	// (5s by default); signing from tens of microseconds (EdDSA) to a few
	// milliseconds (RSA).
	scriptBuckets := []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
	signBuckets := []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05}
	return &exchangeMetrics{
		exchanges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "exchanges_total",
			Help: "Client credentials token requests answered, by outcome (issued, denied, error, upstream_error) and OAuth error code.",
		}, []string{"outcome", "error"}),
		scripts: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "scripts_duration_seconds",
			Help:    "Time one exchange's hook and actions took together, by outcome (ok, denied, error).",
			Buckets: scriptBuckets,
		}, []string{"outcome"}),
		sign: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "sign_duration_seconds",
			Help:    "Time taken to sign one re-issued token.",
			Buckets: signBuckets,
		}),
		jwksFetches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "upstream_jwks_fetches_total",
			Help: "Fetches of the upstream's JWKS (upstream_jwks), by outcome (ok, error).",
		}, []string{"outcome"}),
		jwksFetchSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "upstream_jwks_fetch_duration_seconds",
			Help:    "Time taken by one fetch of the upstream's JWKS, successful or not.",
			Buckets: prometheus.DefBuckets,
		}),
		verifyFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "upstream_token_rejected_total",
			Help: "Upstream access tokens that failed verification, by reason.",
		}, []string{"reason"}),
		outboundCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "outbound_calls_total",
			Help: "Outbound calls made by scripts (fetch, request, axios, node-fetch), by outcome (ok, http_error, refused, timeout, failed).",
		}, []string{"outcome"}),
		guardBlocked: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "passthrough_blocked_total",
			Help: "Answers to requests that were not hooked (other grants, prefixed token paths) that were blocked because they carried a client credentials token.",
		}),
	}
}

func (m *exchangeMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.exchanges, m.scripts, m.sign, m.jwksFetches, m.jwksFetchSeconds,
		m.verifyFailures, m.outboundCalls, m.guardBlocked}
}

// provisionMetrics registers the process's collectors in the registry of
// the config being loaded. Another handler of the same config has done so
// already when the registry answers AlreadyRegisteredError with our own
// collector; anything else (a collector of the same name from elsewhere) is
// a config error.
func provisionMetrics(ctx caddy.Context) error {
	reg := ctx.GetMetricsRegistry()
	if reg == nil { // a context not made by caddy.NewContext
		return nil
	}
	m := metrics()
	for _, c := range m.collectors() {
		var dup prometheus.AlreadyRegisteredError
		if err := reg.Register(c); err != nil && !(errors.As(err, &dup) && dup.ExistingCollector == c) {
			return err
		}
	}
	return nil
}

// jwksFetched counts one fetch of an upstream JWKS, configured or
// discovered; RemoteJWKS.OnFetch.
func (m *exchangeMetrics) jwksFetched(err error, d time.Duration) {
	outcome := "ok"
	if err != nil {
		outcome = "error"
	}
	m.jwksFetches.WithLabelValues(outcome).Inc()
	m.jwksFetchSeconds.Observe(d.Seconds())
}

// outboundCall counts one outbound call; Config.OnOutboundCall.
func (m *exchangeMetrics) outboundCall(outcome string) {
	m.outboundCalls.WithLabelValues(outcome).Inc()
}

// scriptOutcome is the outcome label of scripts_duration_seconds for what
// Engine.Run returned.
func scriptOutcome(err error) string {
	var he *caddyhook.Error
	switch {
	case err == nil:
		return "ok"
	case errors.As(err, &he) && oauthStatus(he.Code) < 500:
		return "denied"
	}
	return "error"
}

// oauthCodes are the registered OAuth error codes the error label may take
// (RFC 6749 §5.2 and §4.1.2.1, RFC 6750 §3.1, RFC 8693 §2.2.2, RFC 8707
// §2, RFC 9449 §12.2, RFC 8628 §3.5); any other code is counted as "other",
// so that an upstream cannot grow the label without bound.
var oauthCodes = map[string]bool{
	"invalid_request": true, "invalid_client": true, "invalid_grant": true, "unauthorized_client": true,
	"unsupported_grant_type": true, "invalid_scope": true, "access_denied": true,
	"unsupported_response_type": true, "server_error": true, "temporarily_unavailable": true,
	"invalid_token": true, "insufficient_scope": true, "invalid_target": true,
	"invalid_dpop_proof": true, "use_dpop_nonce": true,
	"authorization_pending": true, "slow_down": true, "expired_token": true,
}

// errorLabel is code as the error label takes it.
func errorLabel(code string) string {
	if code == "" || oauthCodes[code] {
		return code
	}
	return "other"
}
