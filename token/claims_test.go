package token

import (
	"encoding/json"
	"maps"
	"slices"
	"testing"
)

// payloadOf is tok.Payload(scope, claims) read back as claims.
func payloadOf(t *testing.T, tok *Token, scope []string, claims map[string]json.RawMessage) map[string]json.RawMessage {
	t.Helper()
	payload, err := tok.Payload(scope, claims)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]json.RawMessage
	if err := json.Unmarshal(payload, &out); err != nil {
		t.Fatalf("Payload = %s: %v", payload, err)
	}
	return out
}

// claimsToken is a token with the claims of payload, read as Verify reads
// a verified token's payload.
func claimsToken(t *testing.T, payload string) *Token {
	t.Helper()
	claims, ok := parseClaims([]byte(payload))
	if !ok {
		t.Fatalf("payload %s is not a JSON object", payload)
	}
	return &Token{Claims: claims}
}

// TestTokenScope pins the forms of a token's scope: what the hook sees
// (nil, which it sees as undefined, only without a scope claim) and the
// member the payload of the token signed in its place writes it back in.
func TestTokenScope(t *testing.T) {
	for _, tc := range []struct {
		name, payload string
		scope         string // Scope() as JSON: null for nil
		form          string // the member Payload writes a scope in
	}{
		{"scope string", `{"scope":"a b"}`, `["a","b"]`, "scope"},
		{"scope with extra white space", `{"scope":" a \t b  "}`, `["a","b"]`, "scope"},
		{"empty scope", `{"scope":""}`, `[]`, "scope"},
		{"scope not a string", `{"scope":7}`, `null`, "scope"},
		{"scope an array", `{"scope":["a","b"]}`, `null`, "scope"},
		// encoding/json reads null into a string as "", without an error.
		{"scope null", `{"scope":null}`, `[]`, "scope"},
		{"scp array", `{"scp":["a","b"]}`, `["a","b"]`, "scp"},
		{"scp string", `{"scp":"a b"}`, `["a","b"]`, "scp"},
		{"scp empty array", `{"scp":[]}`, `[]`, "scp"},
		{"scp not a string or array", `{"scp":7}`, `[]`, "scp"},
		{"scp array with a number", `{"scp":["a",1]}`, `[]`, "scp"},
		{"scp null", `{"scp":null}`, `[]`, "scp"},
		{"scope and scp: scope is read", `{"scope":"a","scp":["b"]}`, `["a"]`, "scope"},
		{"no scope", `{"sub":"x"}`, `null`, "scope"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok := claimsToken(t, tc.payload)
			before := maps.Clone(tok.Claims)
			got, _ := json.Marshal(tok.Scope())
			if string(got) != tc.scope {
				t.Errorf("Scope() = %s, want %s", got, tc.scope)
			}

			amended := payloadOf(t, tok, []string{"x", "y"}, nil)
			other := map[string]string{"scope": "scp", "scp": "scope"}[tc.form]
			want := map[string]string{"scope": `"x y"`, "scp": `["x","y"]`}[tc.form]
			if string(amended[tc.form]) != want || amended[other] != nil {
				t.Errorf("Payload wrote the scope as scope=%s scp=%s, want %s=%s", amended["scope"], amended["scp"], tc.form, want)
			}
			if sub, ok := tok.Claims["sub"]; ok && string(amended["sub"]) != string(sub) {
				t.Errorf("Payload dropped a claim: sub = %s", amended["sub"])
			}

			for _, empty := range [][]string{nil, {}} {
				amended = payloadOf(t, tok, empty, nil)
				if amended["scope"] != nil || amended["scp"] != nil {
					t.Errorf("Payload(%#v) kept a scope: scope=%s scp=%s", empty, amended["scope"], amended["scp"])
				}
			}
			if !maps.EqualFunc(tok.Claims, before, func(a, b json.RawMessage) bool { return string(a) == string(b) }) {
				t.Errorf("Payload changed the token's claims: %v", tok.Claims)
			}
		})
	}
}

// TestTokenPayloadClaims: the hook's claims are set over the token's, and
// every claim it did not set is kept as the upstream wrote it (compacted,
// as json.Marshal writes it).
func TestTokenPayloadClaims(t *testing.T) {
	tok := claimsToken(t, `{"sub":"svc","exp":1e10,"aud":["a", "b"],"scope":"read"}`)
	got := payloadOf(t, tok, []string{"read", "write"}, map[string]json.RawMessage{
		"sub":                 json.RawMessage(`"other"`),
		"https://t.example/k": json.RawMessage(`{"n":1}`),
	})
	want := map[string]string{
		"sub": `"other"`, "exp": `1e10`, "aud": `["a","b"]`, "scope": `"read write"`,
		"https://t.example/k": `{"n":1}`,
	}
	if len(got) != len(want) {
		t.Errorf("Payload = %s, want the members %v", got, want)
	}
	for k, v := range want {
		if string(got[k]) != v {
			t.Errorf("Payload[%q] = %s, want %s", k, got[k], v)
		}
	}
}

func TestTokenAudiences(t *testing.T) {
	for _, tc := range []struct {
		name, payload string
		want          []string
	}{
		{"string", `{"aud":"https://api"}`, []string{"https://api"}},
		{"array", `{"aud":["https://a","https://b"]}`, []string{"https://a", "https://b"}},
		{"empty array", `{"aud":[]}`, nil},
		{"not a string", `{"aud":7}`, nil},
		{"an object", `{"aud":{"a":"b"}}`, nil},
		{"null", `{"aud":null}`, nil},
		{"array with a number", `{"aud":[1,"https://a"]}`, nil},
		{"none", `{"sub":"x"}`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := claimsToken(t, tc.payload).Audiences(); !slices.Equal(got, tc.want) {
				t.Errorf("Audiences() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestTokenClientID(t *testing.T) {
	for _, tc := range []struct {
		name, payload, want string
	}{
		{"client_id", `{"client_id":"svc"}`, "svc"},
		{"azp", `{"azp":"svc"}`, "svc"},
		{"client_id before azp", `{"client_id":"svc","azp":"other"}`, "svc"},
		{"empty client_id: azp", `{"client_id":"","azp":"svc"}`, "svc"},
		{"client_id not a string: azp", `{"client_id":7,"azp":"svc"}`, "svc"},
		{"azp not a string", `{"azp":["svc"]}`, ""},
		{"neither", `{"sub":"svc"}`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := claimsToken(t, tc.payload).ClientID(); got != tc.want {
				t.Errorf("ClientID() = %q, want %q", got, tc.want)
			}
		})
	}
}

// FuzzTokenClaims reads any JSON object as a token's claims: the readers
// must not panic, and the payload of the token signed in its place must be
// a JSON object that writes the new scope in exactly one of scope and scp
// and keeps every other claim.
func FuzzTokenClaims(f *testing.F) {
	for _, s := range []string{
		`{"scope":"a b","aud":"x","client_id":"c"}`, `{"scp":["a","b"],"aud":["x","y"],"azp":"c"}`,
		`{"scp":"a b","aud":7}`, `{"scope":null,"scp":[1]}`, `{"scope":["a"],"aud":[null,"x"]}`, `{}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		claims, ok := parseClaims(payload)
		if !ok {
			return
		}
		tok := &Token{Claims: claims}
		_, _, _ = tok.ClientID(), tok.Audiences(), tok.Scope()
		out, err := tok.Payload([]string{"x"}, map[string]json.RawMessage{"k": json.RawMessage(`1`)})
		if err != nil {
			t.Fatalf("Payload: %v", err)
		}
		var got map[string]json.RawMessage
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("Payload = %s: %v", out, err)
		}
		if (got["scope"] == nil) == (got["scp"] == nil) {
			t.Fatalf("Payload = %s: the scope must be in exactly one of scope and scp", out)
		}
		for name := range claims {
			if _, kept := got[name]; !kept && name != "scope" && name != "scp" {
				t.Fatalf("Payload = %s dropped %q", out, name)
			}
		}
	})
}
