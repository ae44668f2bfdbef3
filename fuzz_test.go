package credentialsexchange

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// FuzzTokenRequest drives the request-side decision with any method, query,
// content type and body. It must never panic, and a request it hooks must
// be one every reader agrees on: exactly one grant_type, written exactly as
// client_credentials, in a form or JSON body of a POST.
func FuzzTokenRequest(f *testing.F) {
	f.Add("POST", "", "application/x-www-form-urlencoded", []byte("grant_type=client_credentials&client_id=a"))
	f.Add("POST", "", "application/json", []byte(`{"grant_type":"client_credentials","n":1e999999}`))
	f.Add("POST", "grant_type=client_credentials", "", []byte(""))
	f.Add("POST", "", "multipart/form-data; boundary=x", []byte("--x\r\nContent-Disposition: form-data; name=\"grant_type\"\r\n\r\nclient_credentials\r\n--x--\r\n"))
	f.Add("GET", "a=%zz", "text/plain", []byte("grant_type=client_credentials;x"))
	f.Fuzz(func(t *testing.T, method, query, ctype string, body []byte) {
		if !validMethod(method) {
			return
		}
		r := httptest.NewRequest(http.MethodPost, "/oauth/token", bytes.NewReader(body))
		r.Method = method
		r.URL.RawQuery = query
		r.Header.Set("Content-Type", ctype)
		req, err := readTokenRequest(r, 1<<16)
		if err != nil {
			return
		}
		if req.grant != grantClientCredentials {
			return
		}
		if method != http.MethodPost || (!req.isJSON && req.params == nil) {
			t.Fatalf("hooked a %s request without a form or JSON body", method)
		}
		if g, _ := req.params["grant_type"].(string); g != "client_credentials" {
			t.Fatalf("hooked a request whose grant_type is %q", req.params["grant_type"])
		}
		n := 0
		for name := range req.params {
			if isGrantName(name) {
				n++
			}
		}
		q, _ := url.ParseQuery(query)
		for name := range q {
			if isGrantName(name) {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("hooked a request with %d grant parameters", n)
		}
		h := &Handler{JSONBody: "form", AudienceParam: "resource"}
		if _, _, err := h.forwardBody(req); err != nil && !req.isJSON {
			t.Fatalf("a form body could not be forwarded: %v", err)
		}
		_ = req.hookBody()
		_ = req.requestedAudiences()
	})
}

func validMethod(m string) bool {
	if m == "" {
		return false
	}
	for _, c := range m {
		if c <= ' ' || c >= 0x7f || strings.ContainsRune("()<>@,;:\\\"/[]?={}", c) {
			return false
		}
	}
	return true
}

// FuzzBasicAuth reads the client ID from any Authorization header and
// client_assertion; it must never panic.
func FuzzBasicAuth(f *testing.F) {
	f.Add("Basic c3ZjOnM=", "")
	f.Add("Basic "+"%zz", "a.eyJzdWIiOiJzdmMifQ.c")
	f.Add("Basic !!!", "...")
	f.Fuzz(func(t *testing.T, authorization, assertion string) {
		r := httptest.NewRequest(http.MethodPost, "/oauth/token", nil)
		r.Header.Set("Authorization", authorization)
		_ = clientIDFromRequest(r, &tokenRequest{params: map[string]any{"client_assertion": assertion}})
	})
}

// FuzzUpstreamResponse reads any upstream answer the way the exchange and
// the response guard do; it must never panic, and an answer whose
// access_token reads as a client credentials token is never let through.
func FuzzUpstreamResponse(f *testing.F) {
	f.Add([]byte(`{"access_token":"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIiwiY2xpZW50X2lkIjoiYSJ9.c2ln","token_type":"Bearer"}`), "application/json")
	f.Add([]byte(`{"access\u005ftoken":1}`), "application/json")
	f.Add([]byte("access_token=a.b.c&x=%zz"), "application/x-www-form-urlencoded")
	f.Add([]byte(`{"ACCESS_TOKEN":"x","access_token":"y"}`), "")
	f.Fuzz(func(t *testing.T, body []byte, ctype string) {
		c := newCapture(1 << 20)
		c.header.Set("Content-Type", ctype)
		_, _ = c.Write(body)
		why := c.unhookedToken()
		_ = c.carriesAccessToken()
		tokens, ok := accessTokens(body)
		if ok && why == "" {
			for _, tok := range tokens {
				if clientCredentialsToken(tok) != "" {
					t.Fatalf("let through a client credentials token %q", tok)
				}
			}
		}
	})
}

// FuzzEachMember holds eachMember, which slices text json.Valid accepted,
// to what a json.Decoder reads from the same bytes (decoderMembers): the
// same verdict, and the same names and values in the same order.
func FuzzEachMember(f *testing.F) {
	for _, s := range []string{
		`{}`, ` { "a" : 1 , "b":[1,{"c":"}"}] ,"a":"x\"y"} `, `{"a\u005fb":true,"\ud800":null}`,
		`{"a":1}x`, `[1]`, `{"a":1,}`, `"s"`, "{\"\xff\":-0.5e+3}", `{"a":{"b":[[]]},"c":"\\"}`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		type member struct{ name, value string }
		var got []member
		err := eachMember(body, func(name string, value json.RawMessage) error {
			got = append(got, member{name, string(value)})
			return nil
		})
		want, werr := decoderMembers(body)
		if (err == nil) != (werr == nil) {
			t.Fatalf("eachMember error %v, decoder error %v", err, werr)
		}
		if err != nil {
			return
		}
		if len(got) != len(want) {
			t.Fatalf("eachMember read %d members, decoder %d", len(got), len(want))
		}
		for i := range got {
			if got[i].name != want[i][0] || got[i].value != want[i][1] {
				t.Fatalf("member %d: eachMember %q, decoder %q", i, got[i], want[i])
			}
		}
	})
}

// decoderMembers reads a JSON object's members with json.Decoder, as
// eachMember did before it sliced validated text: the reference it is
// fuzzed against.
func decoderMembers(raw []byte) (members [][2]string, err error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, errors.New("not a JSON object")
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		name, _ := tok.(string)
		var value json.RawMessage
		if err := dec.Decode(&value); err != nil {
			return nil, err
		}
		members = append(members, [2]string{name, string(value)})
	}
	if _, err := dec.Token(); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the JSON object")
	}
	return members, nil
}

// FuzzJSONString holds jsonString's fast path to json.Unmarshal's reading
// of the same bytes.
func FuzzJSONString(f *testing.F) {
	for _, s := range []string{`"a"`, `"a\"b"`, "\"\x01\"", "\"\xff\"", `"""`, ` "a"`, `1`, `"`, `"\u00e9"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		got, err := jsonString(raw)
		var want string
		werr := json.Unmarshal(raw, &want)
		if (err == nil) != (werr == nil) || got != want {
			t.Fatalf("jsonString = %q, %v; json.Unmarshal = %q, %v", got, err, want, werr)
		}
	})
}
