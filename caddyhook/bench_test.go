package caddyhook

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/dop251/goja"
)

// Benchmarks of script runs. The targets for them are absolute (a
// starter hook on a warm runtime at most 10 µs median) or relative to
// BenchmarkRunStarter (an Actions run at most twice that), so the runs
// report their median and 99th percentile per run (p50-ns/op, p99-ns/op)
// beside the mean ns/op:
//
//	go test -run '^$' -bench 'Run' -benchmem ./caddyhook
//
// The bare crypto an exchange cannot avoid, the baseline of the exchange's
// ratios, is BenchmarkCryptoBaseline in ../token and BenchmarkExchangeBaseline
// in the root package.

// BenchmarkNewRuntime is the baseline of BenchmarkRunStarterIsolated: a bare
// goja runtime, without prelude or modules.
func BenchmarkNewRuntime(b *testing.B) {
	for i := 0; i < b.N; i++ {
		_ = goja.New()
	}
}

const starterHook = `module.exports = function(client, scope, audience, context, cb) {
	var access_token = {};
	access_token.scope = scope;
	access_token['https://example.com/tier'] = client.metadata.tier;
	cb(null, access_token);
};`

// BenchmarkRunStarter runs Auth0's starter hook (plus one claim) on a warm
// runtime from the engine's pool: building the arguments, cb, and claim
// rules. Target: p50 at most 10 µs.
func BenchmarkRunStarter(b *testing.B) {
	s := benchScript(b, "starter.js", starterHook, HookKind)
	benchRun(b, s)
}

// BenchmarkRunStarterIsolated is the same with isolate_runs: a fresh
// runtime, with the prelude and loading the module, for every run. Read it
// against BenchmarkRunStarter (what warm runtimes save) and
// BenchmarkNewRuntime.
func BenchmarkRunStarterIsolated(b *testing.B) {
	s := benchScript(b, "starter.js", starterHook, HookKind)
	benchRun(b, s, func(c *Config) { c.IsolateRuns = true })
}

// benchScript compiles src, failing the benchmark when it does not compile.
func benchScript(b *testing.B, name, src string, kind Kind) *Script {
	s, err := Compile(name, []byte(src), kind)
	if err != nil {
		b.Fatal(err)
	}
	return s
}

// benchEngine returns a warm engine running s (a hook, or nil) and an input.
func benchEngine(b *testing.B, s *Script, mods ...func(*Config)) (*Engine, *Input) {
	cfg := Config{Hook: s}
	for _, mod := range mods {
		mod(&cfg)
	}
	e, err := NewEngine(cfg)
	if err != nil {
		b.Fatal(err)
	}
	in := input()
	in.RequestedScopes = []string{"read:a"}
	if _, err := e.Run(context.Background(), in); err != nil { // warms the pool
		b.Fatal(err)
	}
	return e, in
}

func benchRun(b *testing.B, s *Script, mods ...func(*Config)) {
	e, in := benchEngine(b, s, mods...)
	ctx := context.Background()
	// Per-run times for the median: two clock reads (tens of ns) per run
	// are noise beside a run.
	times := make([]time.Duration, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		if _, err := e.Run(ctx, in); err != nil {
			b.Fatal(err)
		}
		times[i] = time.Since(start)
	}
	b.StopTimer()
	reportPercentiles(b, times)
}

// reportPercentiles adds the median and 99th percentile of times to the
// benchmark's output.
func reportPercentiles(b *testing.B, times []time.Duration) {
	b.ReportMetric(float64(median(times).Nanoseconds()), "p50-ns/op")
	b.ReportMetric(float64(times[len(times)*99/100].Nanoseconds()), "p99-ns/op")
}

// median sorts times and returns the middle one.
func median(times []time.Duration) time.Duration {
	slices.Sort(times)
	return times[len(times)/2]
}

// BenchmarkRunAsync is an async hook that awaits a setImmediate before
// calling cb: the event loop's turn on top of a warm run. Read it against
// BenchmarkRunStarter.
func BenchmarkRunAsync(b *testing.B) {
	s := benchScript(b, "async.js", `module.exports = async function(client, scope, audience, context, cb) {
		await new Promise(function (r) { setImmediate(r) });
		cb(null, { scope: scope });
	};`, HookKind)
	benchRun(b, s)
}

// typicalAction is what an Auth0 credentials-exchange Action typically does:
// one custom claim from the event and one scope.
const typicalAction = `exports.onExecuteCredentialsExchange = async (event, api) => {
	api.accessToken.setCustomClaim('https://example.com/tier', event.client.metadata.tier);
	api.transaction.addTargetScope('read:a');
};`

// BenchmarkRunAction is an Actions run on a warm runtime: a typical action
// (setCustomClaim + addTargetScope), no hook. Target: p50 at most twice
// BenchmarkRunStarter's.
func BenchmarkRunAction(b *testing.B) {
	a := benchScript(b, "action.js", typicalAction, ActionKind)
	benchRun(b, nil, func(c *Config) { c.Actions = []*Script{a} })
}

// BenchmarkRunStarterAndAction is the starter hook followed by the typical
// action in one run, as a configuration with both runs them. Read it against
// BenchmarkRunStarter + BenchmarkRunAction.
func BenchmarkRunStarterAndAction(b *testing.B) {
	s := benchScript(b, "starter.js", starterHook, HookKind)
	a := benchScript(b, "action.js", typicalAction, ActionKind)
	benchRun(b, s, func(c *Config) { c.Actions = []*Script{a} })
}

// BenchmarkRunActionRatio runs BenchmarkRunStarter's hook and
// BenchmarkRunAction's action on two warm engines, interleaved one run each
// per iteration so both see the same load on the shared cores. It reports
// both medians (starter-p50-ns, action-p50-ns) and action-p50 / starter-p50
// (x-starter); ns/op is the two runs together. Target: x-starter <= 2.
func BenchmarkRunActionRatio(b *testing.B) {
	hook := benchScript(b, "starter.js", starterHook, HookKind)
	act := benchScript(b, "action.js", typicalAction, ActionKind)
	starter, in := benchEngine(b, hook)
	action, _ := benchEngine(b, nil, func(c *Config) { c.Actions = []*Script{act} })
	ctx := context.Background()
	st, at := make([]time.Duration, b.N), make([]time.Duration, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if _, err := starter.Run(ctx, in); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if _, err := action.Run(ctx, in); err != nil {
			b.Fatal(err)
		}
		st[i], at[i] = t1.Sub(t0), time.Since(t1)
	}
	b.StopTimer()
	sp, ap := median(st), median(at)
	b.ReportMetric(float64(sp.Nanoseconds()), "starter-p50-ns")
	b.ReportMetric(float64(ap.Nanoseconds()), "action-p50-ns")
	b.ReportMetric(float64(ap)/float64(sp), "x-starter")
}
