package caddyhook

import (
	"context"
	"testing"

	"github.com/dop251/goja"
)

// BenchmarkNewRuntime is the baseline: a bare goja runtime.
func BenchmarkNewRuntime(b *testing.B) {
	for i := 0; i < b.N; i++ {
		_ = goja.New()
	}
}

// BenchmarkRunStarter runs Auth0's starter hook: a fresh runtime with the
// prelude, loading the module, building the arguments, cb, and claim rules.
func BenchmarkRunStarter(b *testing.B) {
	s, err := Compile("starter.js", []byte(`module.exports = function(client, scope, audience, context, cb) {
		var access_token = {};
		access_token.scope = scope;
		access_token['https://example.com/tier'] = client.metadata.tier;
		cb(null, access_token);
	};`), HookKind)
	if err != nil {
		b.Fatal(err)
	}
	benchRun(b, s)
}

func benchRun(b *testing.B, s *Script) {
	e, err := NewEngine(Config{Hook: s})
	if err != nil {
		b.Fatal(err)
	}
	in := input()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := e.Run(context.Background(), in); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRunAsync is the same hook calling cb from a timer.
func BenchmarkRunAsync(b *testing.B) {
	s, err := Compile("async.js", []byte(`module.exports = async function(client, scope, audience, context, cb) {
		await new Promise(function (r) { setImmediate(r) });
		cb(null, { scope: scope });
	};`), HookKind)
	if err != nil {
		b.Fatal(err)
	}
	benchRun(b, s)
}
