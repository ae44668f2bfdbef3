package caddyhook

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
)

func TestClaimsPolicy(t *testing.T) {
	cases := []struct {
		name       string
		namespaced bool
		open       bool
	}{
		{"https://example.com/claim", true, true},
		{"http://example.com/claim", true, true},
		{"HTTPS://Example.COM/claim", true, true},
		{"https://example.com", true, true},
		{"https://example.com:8443/claim", true, true},
		{"https://auth0.com/claim", false, false},
		{"https://AUTH0.com/claim", false, false},
		{"https://tenant.auth0.com/claim", false, false},
		{"https://a.b.auth0.com/claim", false, false},
		{"https://auth0.com./claim", false, false},
		{"https://webtask.io/claim", false, false},
		{"https://x.webtask.io/claim", false, false},
		{"https://webtask.run/claim", false, false},
		{"https://x.webtask.run/claim", false, false},
		{"https://myauth0.com/claim", true, true},
		{"https://auth0.com.example.org/claim", true, true},
		{"https://notwebtask.io/claim", true, true},
		{"https://webtask.io.evil.example/claim", true, true},
		{"ftp://example.com/claim", false, true},
		{"urn:example:claim", false, true},
		{"urn:auth0:claim", false, false},
		{"URN:Auth0:claim", false, false},
		{"urn:auth0", false, false},
		{"urn:auth0x:claim", false, true},
		{"urn:example:auth0.com", false, true},
		{"auth0.com/claim", false, false},
		{"//tenant.auth0.com/claim", false, false},
		{"x.webtask.run/claim", false, false},
		{"auth0.com:443/claim", false, false},
		{"tenant.auth0.com:8443/claim", false, false},
		{"example.com:443/claim", false, true},
		{"ftp://auth0.com/claim", false, false},
		{"tenant_id", false, true},
		{"auth0", false, true},
		{"https://example.com/auth0.com", true, true},
		{"mailto:a@example.com", false, true},
		{"example.com/claim", false, true},
		{"//example.com/claim", false, true},
		{"https:///path", false, true},
		{"claim", false, true},
		{"tier", false, true},
		{"", false, false},
		// Restricted names are refused under both policies.
		{"iss", false, false},
		{"sub", false, false},
		{"aud", false, false},
		{"exp", false, false},
		{"scope", false, false},
		{"scp", false, false},
		{"client_id", false, false},
		{"cnf", false, false},
		{"permissions", false, false},
		{"org_id", false, false},
		{"x5t#S256", false, false},
	}
	for _, tc := range cases {
		if ok, why := policyNamespaced.check(tc.name); ok != tc.namespaced {
			t.Errorf("namespaced %q = %v (%s), want %v", tc.name, ok, why, tc.namespaced)
		}
		if ok, why := policyOpen.check(tc.name); ok != tc.open {
			t.Errorf("open %q = %v (%s), want %v", tc.name, ok, why, tc.open)
		}
	}
}

func TestParseClaimsPolicy(t *testing.T) {
	for in, want := range map[string]ClaimsPolicy{"": policyOpen, "namespaced": policyNamespaced, "open": policyOpen} {
		got, err := ParseClaimsPolicy(in)
		if err != nil || got != want {
			t.Errorf("ParseClaimsPolicy(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := ParseClaimsPolicy("strict"); err == nil {
		t.Error("unknown policy accepted")
	}
}

// TestClaimWarningsRateLimited: a dropped claim is warned about once a
// minute per script and claim, and a flood of distinct names stays bounded.
func TestClaimWarningsRateLimited(t *testing.T) {
	now := time.Unix(1700000000, 0)
	w := newClaimWarnings(func() time.Time { return now })
	log, logs := observed(t, zap.NewAtomicLevelAt(zap.DebugLevel))
	w.warn(log, "a.js", "x", "why")
	w.warn(log, "a.js", "x", "why")
	w.warn(log, "b.js", "x", "why")
	if n := logs.FilterMessage("custom claim dropped").Len(); n != 2 {
		t.Fatalf("%d warnings, want one per script", n)
	}
	now = now.Add(claimWarnEvery)
	w.warn(log, "a.js", "x", "why")
	if n := logs.FilterMessage("custom claim dropped").Len(); n != 3 {
		t.Fatalf("%d warnings, want another after a minute", n)
	}
	for i := 0; i < 3*maxClaimWarnKeys; i++ {
		w.warn(log, "a.js", "n"+strconv.Itoa(i), "why")
	}
	if n := logs.FilterMessage("custom claim dropped").Len(); n > maxClaimWarnKeys+3 {
		t.Fatalf("%d warnings for a flood of names", n)
	}
	if len(w.last) > maxClaimWarnKeys {
		t.Fatalf("%d names remembered", len(w.last))
	}
	if n := logs.Len() - logs.FilterMessage("custom claim dropped").Len(); n != 1 {
		t.Fatalf("%d overflow lines, want 1", n)
	}
}

// TestDefaultPolicyThroughEngine: with no claims_policy, a private claim
// and a URN arrive; a restricted name, an Auth0 domain and urn:auth0 do not,
// and each dropped claim is warned about once however many exchanges drop it.
func TestDefaultPolicyThroughEngine(t *testing.T) {
	log, logs := observed(t, zap.NewAtomicLevelAt(zap.InfoLevel))
	e := engine(t, compileHook(t, `module.exports = function (client, scope, audience, context, cb) {
		cb(null, { scope, tenant_id: 'acme-eu', 'urn:example:tier': 'gold',
			roles: ['admin'], 'https://x.auth0.com/claim': 1, 'urn:auth0:x': 1 });
	};`), func(c *Config) { c.Logger = log })
	for i := 0; i < 3; i++ {
		res, err := e.Run(context.Background(), input())
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Claims) != 2 || string(res.Claims["tenant_id"]) != `"acme-eu"` || string(res.Claims["urn:example:tier"]) != `"gold"` {
			t.Fatalf("claims = %v", res.Claims)
		}
		// Every exchange reports what it dropped, warned about or not.
		if res.DroppedTotal != 3 || len(res.Dropped) != 3 {
			t.Fatalf("dropped = %d %+v, want 3", res.DroppedTotal, res.Dropped)
		}
		for _, d := range res.Dropped {
			if d.Script != "hook.js" || d.Reason == "" || d.Name == "" {
				t.Fatalf("dropped claim %+v", d)
			}
		}
	}
	warned := map[string]int{}
	for _, entry := range logs.FilterMessage("custom claim dropped").All() {
		if entry.Level != zap.WarnLevel || entry.ContextMap()["script"] != "hook.js" {
			t.Fatalf("warning %v", entry)
		}
		warned[entry.ContextMap()["claim"].(string)]++
	}
	for _, name := range []string{"roles", "https://x.auth0.com/claim", "urn:auth0:x"} {
		if warned[name] != 1 {
			t.Errorf("%s warned %d times over 3 exchanges, want 1", name, warned[name])
		}
	}
}

// TestClaimCheckCache: the engine's remembered checks answer as check does,
// and stay bounded.
func TestClaimCheckCache(t *testing.T) {
	names := []string{"https://example.com/claim", "https://auth0.com/x", "iss", "urn:auth0:x", "", "tier", strings.Repeat("n", 300)}
	for i := 0; i < maxCachedClaimChecks+10; i++ {
		names = append(names, "https://example.com/c"+strconv.Itoa(i))
	}
	for _, p := range []ClaimsPolicy{policyNamespaced, policyOpen} {
		var c claimCheckCache
		for round := 0; round < 2; round++ {
			for _, name := range names {
				ok, why := c.check(p, name)
				if wantOK, wantWhy := p.check(name); ok != wantOK || why != wantWhy {
					t.Fatalf("%v %q: %v %q, want %v %q", p, name, ok, why, wantOK, wantWhy)
				}
			}
		}
		if len(c.results) != maxCachedClaimChecks {
			t.Fatalf("%d names remembered", len(c.results))
		}
	}
}

// TestDroppedReportBounded: a run that drops claims under many names reports
// the first maxDroppedReported of them and counts them all.
func TestDroppedReportBounded(t *testing.T) {
	e := engine(t, compileHook(t, `module.exports = function (client, scope, audience, context, cb) {
		const out = { scope };
		for (let i = 0; i < 100; i++) out['urn:auth0:c' + i] = i;
		cb(null, out);
	};`), nil)
	res, err := e.Run(context.Background(), input())
	if err != nil {
		t.Fatal(err)
	}
	if res.DroppedTotal != 100 || len(res.Dropped) != maxDroppedReported || !strings.HasPrefix(res.Dropped[0].Name, "urn:auth0:c") {
		t.Fatalf("dropped = %d, %d reported, first %+v", res.DroppedTotal, len(res.Dropped), res.Dropped[0])
	}
}
