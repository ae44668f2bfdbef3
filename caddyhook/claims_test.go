package caddyhook

import "testing"

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
		{"https://auth0.com/claim", false, true},
		{"https://AUTH0.com/claim", false, true},
		{"https://tenant.auth0.com/claim", false, true},
		{"https://a.b.auth0.com/claim", false, true},
		{"https://auth0.com./claim", false, true},
		{"https://webtask.io/claim", false, true},
		{"https://x.webtask.io/claim", false, true},
		{"https://webtask.run/claim", false, true},
		{"https://x.webtask.run/claim", false, true},
		{"https://myauth0.com/claim", true, true},
		{"https://auth0.com.example.org/claim", true, true},
		{"https://notwebtask.io/claim", true, true},
		{"https://webtask.io.evil.example/claim", true, true},
		{"ftp://example.com/claim", false, true},
		{"urn:example:claim", false, true},
		{"urn:auth0:claim", false, true},
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
		if ok, why := Namespaced.Check(tc.name); ok != tc.namespaced {
			t.Errorf("namespaced %q = %v (%s), want %v", tc.name, ok, why, tc.namespaced)
		}
		if ok, why := Open.Check(tc.name); ok != tc.open {
			t.Errorf("open %q = %v (%s), want %v", tc.name, ok, why, tc.open)
		}
	}
}

func TestParseClaimsPolicy(t *testing.T) {
	for in, want := range map[string]ClaimsPolicy{"": Namespaced, "namespaced": Namespaced, "open": Open} {
		got, err := ParseClaimsPolicy(in)
		if err != nil || got != want {
			t.Errorf("ParseClaimsPolicy(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := ParseClaimsPolicy("strict"); err == nil {
		t.Error("unknown policy accepted")
	}
}
