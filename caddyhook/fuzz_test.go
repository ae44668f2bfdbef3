package caddyhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/caddyhook/caddyhook/internal/logscan"
)

// FuzzClaimsPolicy checks that ClaimsPolicy.check never panics, never
// accepts a restricted claim or an empty name, gives a reason exactly when
// it refuses, and accepts under policyNamespaced only http(s) URLs whose
// host is not Auth0's, all of which policyOpen accepts too.
//
//	go test -run='^$' -fuzz='^FuzzClaimsPolicy$' -fuzztime=20s ./caddyhook/
func FuzzClaimsPolicy(f *testing.F) {
	for _, s := range []string{"https://example.com/claim", "iss", "", "https://auth0.com./x", "urn:x", "HTTPS://A.WEBTASK.IO/x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		for _, p := range []ClaimsPolicy{policyNamespaced, policyOpen} {
			ok, why := p.check(name)
			if ok && restrictedClaims[name] {
				t.Fatalf("%s accepted the restricted claim %q", p, name)
			}
			if ok && name == "" {
				t.Fatalf("%s accepted the empty name", p)
			}
			if ok != (why == "") {
				t.Fatalf("%s: check(%q) = %v with reason %q", p, name, ok, why)
			}
		}
		if ok, _ := policyNamespaced.check(name); ok {
			if open, _ := policyOpen.check(name); !open {
				t.Fatalf("namespaced accepts %q but open does not", name)
			}
			u, err := url.Parse(name)
			if err != nil {
				t.Fatalf("namespaced accepted %q, which is not a URL: %v", name, err)
			}
			if s := strings.ToLower(u.Scheme); s != "http" && s != "https" {
				t.Fatalf("namespaced accepted the %q URL %q", s, name)
			}
			host := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
			for _, r := range reservedHosts {
				if host == r || strings.HasSuffix(host, "."+r) {
					t.Fatalf("namespaced accepted %q on Auth0's host %s", name, host)
				}
			}
		}
	})
}

// fuzzHook hands every member of the request body back as claims and, when
// it can be one, as a scope; fuzzAction does the same through api.
const (
	fuzzHook = `module.exports = function (client, scope, audience, context, cb) {
		const b = context.body, out = { scope: [] };
		for (const k of Object.keys(b)) {
			if (/^[\x21\x23-\x5b\x5d-\x7e]+$/.test(k)) out.scope.push(k);
			out['https://t.example/' + k] = b[k];
			out[k] = b[k];
		}
		out['https://t.example/body'] = b;
		try { console.log(b, String(JSON.stringify(b)).length); } catch (e) {}
		cb(null, out);
	};`
	fuzzAction = `const qs = require('querystring');
	exports.onExecuteCredentialsExchange = async (event, api) => {
		const b = event.request.body;
		api.accessToken.setCustomClaim('https://t.example/act', b);
		for (const k of Object.keys(b)) {
			try { api.transaction.addTargetScope(k); } catch (e) {}
			try { api.accessToken.setCustomClaim(k, b[k]); } catch (e) {}
		}
		try { api.accessToken.setCustomClaim('https://t.example/qs', qs.stringify(b)); } catch (e) {}
		api.accessToken.setCustomClaim('https://t.example/scope', event.accessToken.scope);
	};`
)

// FuzzValueConversion decodes fuzz bytes as encoding/json does for a token
// request (UseNumber), hands them to a hook and an action as the request
// body, and checks what comes back: the run succeeds with claims that are
// valid JSON and scopes that are valid scope tokens, or fails with an
// *Error; it never panics.
//
//	go test -run='^$' -fuzz='^FuzzValueConversion$' -fuzztime=20s ./caddyhook/
func FuzzValueConversion(f *testing.F) {
	for _, s := range []string{`{"grant_type":"client_credentials"}`, `{"n":1e999999}`, `[1,"a",null]`, "\"\xff\"", `{"a":{"b":[{}]}}`} {
		f.Add([]byte(s))
	}
	hook, err := Compile("fuzz-hook.js", []byte(fuzzHook), HookKind)
	if err != nil {
		f.Fatal(err)
	}
	act, err := Compile("fuzz-action.js", []byte(fuzzAction), ActionKind)
	if err != nil {
		f.Fatal(err)
	}
	e, err := NewEngine(Config{Hook: hook, Actions: []*Script{act}, Timeout: 10 * time.Second, Logger: logscan.Logger()})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var body map[string]any
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		var v any
		switch err := dec.Decode(&v); {
		case err != nil:
			body = map[string]any{"raw": string(data)}
		default:
			if obj, ok := v.(map[string]any); ok {
				body = obj
			} else {
				body = map[string]any{"v": v}
			}
		}
		in := input()
		in.Request.Body = body
		res, err := e.Run(context.Background(), in)
		if err != nil {
			var he *Error
			if !errors.As(err, &he) {
				t.Fatalf("error %v (%T) is not an *Error", err, err)
			}
			if he.Code != CodeInvalidRequest && he.Code != CodeInvalidScope && he.Code != CodeServerError {
				t.Fatalf("error %+v has code %q", he, he.Code)
			}
			if !utf8.ValidString(he.Description) || len(he.Description) > 4*maxDescription {
				t.Fatalf("description %q", he.Description)
			}
			return
		}
		for name, raw := range res.Claims {
			if ok, why := policyOpen.check(name); !ok {
				t.Fatalf("claim %q reached the token: %s", name, why)
			}
			if !json.Valid(raw) || !utf8.Valid(raw) {
				t.Fatalf("claim %q is not valid JSON: %q", name, raw)
			}
		}
		for _, s := range res.Scope {
			if !validScope(s) {
				t.Fatalf("scope %q reached the token", s)
			}
		}
		if err := checkScopeLimits(res.Scope); err != nil {
			t.Fatal(err)
		}
	})
}
