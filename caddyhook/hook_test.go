package caddyhook

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddyhook/caddyhook/internal/logscan"
)

func compileHook(t *testing.T, src string) *Script {
	t.Helper()
	s, err := Compile("hook.js", []byte(src), HookKind)
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	return s
}

func hookFile(t *testing.T, name string) *Script {
	t.Helper()
	path := filepath.Join("..", "testdata", "hooks", name)
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Compile(path, src, HookKind)
	if err != nil {
		t.Fatalf("compile %s: %v", name, err)
	}
	return s
}

func engine(t *testing.T, s *Script, mod func(*Config)) *Engine {
	t.Helper()
	// A panic Run recovers is logged at error level; observed fails the
	// test on one.
	log, _ := observed(t, zap.NewAtomicLevelAt(zap.ErrorLevel))
	cfg := Config{Hook: s, Timeout: 2 * time.Second, Logger: log}
	if mod != nil {
		mod(&cfg)
	}
	e, err := NewEngine(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func input() *Input {
	return &Input{
		Client:   Client{ID: "svc-1", Name: "Billing", Tenant: "acme", Metadata: map[string]string{"tier": "gold"}},
		Scope:    []string{"read:a", "write:a"},
		Audience: "https://api.example.com",
		Request: Request{IP: "203.0.113.9", UserAgent: "curl/8", Hostname: "auth.example.com", Method: "POST",
			Body: map[string]any{"grant_type": "client_credentials", "audience": "https://api.example.com"}},
		TokenClaims: map[string]json.RawMessage{"iss": []byte(`"u"`), "sub": []byte(`"s"`), "https://example.com/existing": []byte(`"x"`)},
	}
}

func wantError(t *testing.T, err error, code, desc string) {
	t.Helper()
	var he *Error
	if !errors.As(err, &he) {
		t.Fatalf("error = %v (%T), want *Error", err, err)
	}
	if he.Code != code || (desc != "" && he.Description != desc) {
		t.Fatalf("error = %+v, want %s %q", he, code, desc)
	}
}

func TestDocumentationSamples(t *testing.T) {
	ctx := context.Background()
	t.Run("starter code keeps the scope", func(t *testing.T) {
		res, err := engine(t, hookFile(t, "starter.js"), nil).Run(ctx, input())
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(res.Scope, []string{"read:a", "write:a"}) || len(res.Claims) != 0 {
			t.Fatalf("result = %+v", res)
		}
	})
	t.Run("starter code with no scope", func(t *testing.T) {
		in := input()
		in.Scope = nil
		res, err := engine(t, hookFile(t, "starter.js"), nil).Run(ctx, in)
		if err != nil || res.Scope != nil {
			t.Fatalf("result = %+v, %v", res, err)
		}
	})
	t.Run("add a scope", func(t *testing.T) {
		res, err := engine(t, hookFile(t, "add-scope.js"), nil).Run(ctx, input())
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(res.Scope, []string{"read:a", "write:a", "read:resource"}) {
			t.Fatalf("scope = %v", res.Scope)
		}
	})
	t.Run("add a claim drops the scope", func(t *testing.T) {
		res, err := engine(t, hookFile(t, "add-claim.js"), nil).Run(ctx, input())
		if err != nil {
			t.Fatal(err)
		}
		if res.Scope != nil || string(res.Claims["https://example.com/foo"]) != `"bar"` || len(res.Claims) != 1 {
			t.Fatalf("result = %+v", res)
		}
	})
	for _, tc := range []struct {
		file, code, desc string
	}{
		{"deny-invalid-scope.js", CodeInvalidScope, "Not authorized for this scope."},
		{"deny-invalid-request.js", CodeInvalidRequest, "Not a valid request."},
		{"deny-server-error.js", CodeServerError, "A server error occurred."},
		{"deny-error.js", CodeServerError, "An error occurred."},
	} {
		t.Run(tc.file, func(t *testing.T) {
			res, err := engine(t, hookFile(t, tc.file), nil).Run(ctx, input())
			if res != nil {
				t.Fatalf("a denied exchange returned a result: %+v", res)
			}
			wantError(t, err, tc.code, tc.desc)
		})
	}
}

// TestErrorMapping has one case per row of SPEC §5 that the runtime owns.
func TestErrorMapping(t *testing.T) {
	cases := []struct {
		name, src    string
		code, desc   string
		timeoutLimit time.Duration
	}{
		{"InvalidScopeError", `module.exports=function(c,s,a,x,cb){cb(new InvalidScopeError('no way'))}`, CodeInvalidScope, "no way", 0},
		{"InvalidRequestError", `module.exports=function(c,s,a,x,cb){cb(new InvalidRequestError('bad'))}`, CodeInvalidRequest, "bad", 0},
		{"InvalidScopeError with code", `module.exports=function(c,s,a,x,cb){cb(new InvalidScopeError('E42', 'coded'))}`, CodeInvalidScope, "coded", 0},
		{"ServerError", `module.exports=function(c,s,a,x,cb){cb(new ServerError('down'))}`, CodeServerError, "down", 0},
		{"Error", `module.exports=function(c,s,a,x,cb){cb(new Error('plain'))}`, CodeServerError, "plain", 0},
		{"string", `module.exports=function(c,s,a,x,cb){cb('text')}`, CodeServerError, "text", 0},
		{"thrown exception", `module.exports=function(c,s,a,x,cb){ throw new Error('thrown') }`, CodeServerError, "thrown", 0},
		{"thrown non-error", `module.exports=function(c,s,a,x,cb){ throw 'str' }`, CodeServerError, "str", 0},
		{"rejected promise", `module.exports=async function(c,s,a,x,cb){ await null; throw new Error('rejected') }`, CodeServerError, "rejected", 0},
		{"async cb error", `module.exports=function(c,s,a,x,cb){ setTimeout(function(){ cb(new InvalidScopeError('later')) }, 5) }`, CodeInvalidScope, "later", 0},
		{"promise cb error", `module.exports=function(c,s,a,x,cb){ Promise.resolve().then(function(){ cb(new InvalidRequestError('micro')) }) }`, CodeInvalidRequest, "micro", 0},
		{"throw inside setTimeout", `module.exports=function(c,s,a,x,cb){ setTimeout(function(){ throw new Error('in timer') }, 1) }`, CodeServerError, "in timer", 0},
		{"never calls cb", `module.exports=function(c,s,a,x,cb){}`, CodeServerError, "hook timed out", 200 * time.Millisecond},
		{"endless loop", `module.exports=function(c,s,a,x,cb){ for(;;){} }`, CodeServerError, "hook timed out", 200 * time.Millisecond},
		{"endless loop in timer", `module.exports=function(c,s,a,x,cb){ setTimeout(function(){ while(true){} }, 1) }`, CodeServerError, "hook timed out", 200 * time.Millisecond},
		{"never-settling promise", `module.exports=async function(c,s,a,x,cb){ await new Promise(function(){}) }`, CodeServerError, "hook timed out", 200 * time.Millisecond},
		{"deep recursion", `module.exports=function(c,s,a,x,cb){ function f(){ return f() + 1 } f() }`, CodeServerError, "", 0},
		{"oversized claims", `module.exports=function(c,s,a,x,cb){ cb(null, {'https://x.example/big': 'x'.repeat(101*1024)}) }`, CodeServerError, "", 0},
		{"scope not an array", `module.exports=function(c,s,a,x,cb){ cb(null, {scope: 'a b'}) }`, CodeServerError, "", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := engine(t, compileHook(t, tc.src), func(c *Config) {
				if tc.timeoutLimit > 0 {
					c.Timeout = tc.timeoutLimit
				}
			})
			res, err := e.Run(context.Background(), input())
			if res != nil {
				t.Fatalf("failed exchange returned a result: %+v", res)
			}
			wantError(t, err, tc.code, tc.desc)
		})
	}
}

func TestCallbackStyles(t *testing.T) {
	cases := map[string]string{
		"sync":         `module.exports=function(c,s,a,x,cb){ cb(null,{scope:['x'],'https://e.example/n':1}) }`,
		"setTimeout":   `module.exports=function(c,s,a,x,cb){ setTimeout(function(){ cb(null,{scope:['x'],'https://e.example/n':1}) }, 2) }`,
		"setImmediate": `module.exports=function(c,s,a,x,cb){ setImmediate(function(){ cb(null,{scope:['x'],'https://e.example/n':1}) }) }`,
		"promise":      `module.exports=function(c,s,a,x,cb){ Promise.resolve({scope:['x'],'https://e.example/n':1}).then(function(r){ cb(null, r) }) }`,
		"async await":  `module.exports=async function(c,s,a,x,cb){ await new Promise(function(r){ setTimeout(r, 2) }); cb(null,{scope:['x'],'https://e.example/n':1}) }`,
		"cb twice":     `module.exports=function(c,s,a,x,cb){ cb(null,{scope:['x'],'https://e.example/n':1}); cb(new Error('second')) }`,
	}
	for name, src := range cases {
		t.Run(name, func(t *testing.T) {
			res, err := engine(t, compileHook(t, src), nil).Run(context.Background(), input())
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(res.Scope, []string{"x"}) || string(res.Claims["https://e.example/n"]) != "1" {
				t.Fatalf("result = %+v", res)
			}
		})
	}
}

func TestHookArguments(t *testing.T) {
	src := `module.exports = function (client, scope, audience, context, cb) {
		var out = { scope: scope };
		out['https://t.example/args'] = {
			client: client, audience: audience, ip: context.ip, ua: context.userAgent,
			host: context.hostname, body: context.body, secret: context.webtask.secrets.API_KEY,
		};
		cb(null, out);
	};`
	e := engine(t, compileHook(t, src), func(c *Config) { c.Secrets = map[string]string{"API_KEY": "s3cret"} })
	res, err := e.Run(context.Background(), input())
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(res.Claims["https://t.example/args"], &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"client":   map[string]any{"id": "svc-1", "name": "Billing", "tenant": "acme", "metadata": map[string]any{"tier": "gold"}},
		"audience": "https://api.example.com", "ip": "203.0.113.9", "ua": "curl/8", "host": "auth.example.com",
		"body":   map[string]any{"grant_type": "client_credentials", "audience": "https://api.example.com"},
		"secret": "s3cret",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("hook saw\n%v\nwant\n%v", got, want)
	}
}

func TestResultClaimRules(t *testing.T) {
	src := `module.exports = function (client, scope, audience, context, cb) {
		cb(null, {
			scope: ['a', 'a', 'b'],
			'https://example.com/ok': {nested: [1, 2]},
			'https://example.com/existing': 'collides',
			'https://tenant.auth0.com/x': 'reserved host',
			'plain': 'not namespaced',
			'iss': 'forged',
			'fn': function () {},
		});
	};`
	for _, tc := range []struct {
		policy ClaimsPolicy
		want   []string
	}{
		{policyNamespaced, []string{"https://example.com/ok"}},
		{policyOpen, []string{"https://example.com/ok", "plain"}},
	} {
		t.Run(tc.policy.String(), func(t *testing.T) {
			core, logs := observer.New(zap.DebugLevel)
			e := engine(t, compileHook(t, src), func(c *Config) { c.Policy = tc.policy; c.Logger = logscan.Tee(core) })
			res, err := e.Run(context.Background(), input())
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for n := range res.Claims {
				names = append(names, n)
			}
			if !sameSet(names, tc.want) {
				t.Fatalf("claims = %v, want %v", names, tc.want)
			}
			if !reflect.DeepEqual(res.Scope, []string{"a", "b"}) {
				t.Fatalf("scope = %v", res.Scope)
			}
			if string(res.Claims["https://example.com/ok"]) != `{"nested":[1,2]}` {
				t.Fatalf("claim value = %s", res.Claims["https://example.com/ok"])
			}
			if logs.FilterMessage("custom claim dropped").FilterLevelExact(zap.WarnLevel).Len() == 0 {
				t.Fatal("dropped claims were not logged at warn")
			}
		})
	}
}

func TestNonObjectResultCountsAsEmpty(t *testing.T) {
	for _, src := range []string{
		`module.exports=function(c,s,a,x,cb){ cb() }`,
		`module.exports=function(c,s,a,x,cb){ cb(null, 'str') }`,
		`module.exports=function(c,s,a,x,cb){ cb(null, [1]) }`,
	} {
		core, logs := observer.New(zap.WarnLevel)
		res, err := engine(t, compileHook(t, src), func(c *Config) { c.Logger = logscan.Tee(core) }).Run(context.Background(), input())
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		if res.Scope != nil || len(res.Claims) != 0 {
			t.Fatalf("%s: result = %+v", src, res)
		}
		if logs.Len() == 0 {
			t.Fatalf("%s: no warning logged", src)
		}
	}
}

func TestCompileErrors(t *testing.T) {
	_, err := Compile("bad.js", []byte("module.exports = function (client) {\n  var x = ;\n};"), HookKind)
	if err == nil || !strings.Contains(err.Error(), "bad.js") || !strings.Contains(err.Error(), "Line 2") {
		t.Fatalf("syntax error = %v, want file and line 2", err)
	}
	for src, want := range map[string]string{
		"var x = 1;":                 "must export a function",
		"throw new Error('at load')": "at load",
		"for(;;){}":                  "took longer",
		"var m = require('fs');":     "module 'fs' is not available",
		"exports.onExecutePostLogin = async () => {}": "must export a function",
	} {
		s, err := Compile("top.js", []byte(src), HookKind)
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		if _, err := NewEngine(Config{Hook: s}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error = %v, want %q", src, err, want)
		}
	}
	s, _ := Compile("action.js", []byte("exports.onExecutePostLogin = async () => {}"), ActionKind)
	if _, err := NewEngine(Config{Actions: []*Script{s}}); err == nil || !strings.Contains(err.Error(), "onExecuteCredentialsExchange") {
		t.Errorf("action without the credentials-exchange export: %v", err)
	}
}

func TestConsoleGoesToLog(t *testing.T) {
	core, logs := observer.New(zap.DebugLevel)
	src := `module.exports=function(c,s,a,x,cb){ console.log('hello', {a:1}); console.error('bad'); cb(null,{}) }`
	_, err := engine(t, compileHook(t, src), func(c *Config) { c.Logger = logscan.Tee(core) }).Run(context.Background(), input())
	if err != nil {
		t.Fatal(err)
	}
	if logs.FilterMessage(`hello {"a":1}`).Len() != 1 || logs.FilterMessage("bad").FilterField(zap.String("script", "hook.js")).Len() != 1 {
		t.Fatalf("logs = %v", logs.All())
	}
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	m := map[string]int{}
	for _, s := range a {
		m[s]++
	}
	for _, s := range b {
		m[s]--
	}
	for _, v := range m {
		if v != 0 {
			return false
		}
	}
	return true
}

// TestScriptErrorIsTheScripts: the failures that are the script's own (a
// syntax error, no entry point, a top level that throws) are ScriptErrors,
// so a caller tells them from configuration problems without reading their
// text; a configuration problem is not one.
func TestScriptErrorIsTheScripts(t *testing.T) {
	var se *ScriptError
	if _, err := Compile("bad.js", []byte("module.exports = function ( {"), HookKind); !errors.As(err, &se) {
		t.Errorf("syntax error: %v is not a ScriptError", err)
	}
	noEntry, err := Compile("none.js", []byte("module.exports = 1;"), HookKind)
	if err != nil {
		t.Fatal(err)
	}
	throws, err := Compile("throws.js", []byte("throw new Error('at load');"), HookKind)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []*Script{noEntry, throws} {
		if _, err := NewEngine(Config{Hook: s, Timeout: time.Second, Logger: zap.NewNop()}); !errors.As(err, &se) {
			t.Errorf("%s: %v is not a ScriptError", s.Name, err)
		}
	}
	if _, err := NewEngine(Config{Timeout: time.Second, Logger: zap.NewNop()}); err == nil || errors.As(err, &se) {
		t.Errorf("no script configured: %v, want a configuration error", err)
	}
}
