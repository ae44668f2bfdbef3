package credentialsexchange

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/caddyhook/caddyhook/caddyhook"
)

// The error label takes registered OAuth codes only: whatever else an
// upstream sends is "other", so the label cannot grow without bound.
func TestErrorLabelIsBounded(t *testing.T) {
	for code, want := range map[string]string{
		"": "", "invalid_client": "invalid_client", "invalid_target": "invalid_target",
		"temporarily_unavailable": "temporarily_unavailable", "invalid_dpop_proof": "invalid_dpop_proof",
		"made_up": "other", "INVALID_CLIENT": "other", strings.Repeat("x", 500): "other",
	} {
		if got := errorLabel(code); got != want {
			t.Errorf("errorLabel(%.20q) = %q, want %q", code, got, want)
		}
	}
}

func TestScriptOutcome(t *testing.T) {
	for err, want := range map[error]string{
		nil: "ok",
		&caddyhook.Error{Code: "invalid_request"}: "denied",
		&caddyhook.Error{Code: "server_error"}:    "error",
		errors.New("internal"):                    "error",
	} {
		if got := scriptOutcome(err); got != want {
			t.Errorf("scriptOutcome(%v) = %q, want %q", err, got, want)
		}
	}
}

// provisionMetrics registers the process's collectors in a config's
// registry: a second handler of the same config gets no error, a new
// config's registry gets the same collectors (their counts kept), and a
// foreign collector of one of our names is an error, not a silent skip.
func TestProvisionMetrics(t *testing.T) {
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	for range 2 {
		if err := provisionMetrics(ctx); err != nil {
			t.Fatal(err)
		}
	}
	metrics().guardBlocked.Inc()
	want := testCounter(t, ctx.GetMetricsRegistry(), "caddy_credentials_exchange_passthrough_blocked_total")

	next, cancelNext := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancelNext()
	if err := provisionMetrics(next); err != nil {
		t.Fatal(err)
	}
	if got := testCounter(t, next.GetMetricsRegistry(), "caddy_credentials_exchange_passthrough_blocked_total"); got != want || got < 1 {
		t.Fatalf("the next config's registry reads %v, want the %v counted before", got, want)
	}

	foreign, cancelForeign := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancelForeign()
	foreign.GetMetricsRegistry().MustRegister(prometheus.NewCounter(prometheus.CounterOpts{
		Name: "caddy_credentials_exchange_passthrough_blocked_total", Help: "someone else's",
	}))
	if err := provisionMetrics(foreign); err == nil {
		t.Fatal("a foreign collector under our name was accepted")
	}
}

func testCounter(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name {
			return f.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("%s not gathered", name)
	return 0
}
