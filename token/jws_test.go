package token

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
)

// The compact JWS verification in jws.go is written by hand; these tests
// hold it against jws.Verify, given the same key and the header's alg. It
// may refuse what jwx accepts, for a reason strictRefusal names; it must
// never accept what jwx refuses.

// jwxVerify is jws.Verify of compact with key, tried with the algorithm its
// header names (as this package does).
func jwxVerify(compact string, key any) error {
	msg, err := jws.Parse([]byte(compact), jws.WithCompact())
	if err != nil {
		return err
	}
	alg := msg.Signatures()[0].ProtectedHeaders().Algorithm()
	_, err = jws.Verify([]byte(compact), jws.WithCompact(), jws.WithKey(alg, key))
	return err
}

// jwxHeader returns the header facts jwx reads from compact.
func jwxHeader(t testing.TB, compact string) (alg, kid, typ string) {
	msg, err := jws.Parse([]byte(compact), jws.WithCompact())
	if err != nil {
		t.Fatalf("jws.Parse of a token jws.Verify accepted: %v", err)
	}
	h := msg.Signatures()[0].ProtectedHeaders()
	return h.Algorithm().String(), h.KeyID(), h.Type()
}

// jwxDecode decodes a segment as jwx does: standard or URL alphabet, padded
// or not as the text looks, line breaks skipped.
func jwxDecode(seg string) ([]byte, error) {
	enc := base64.RawURLEncoding
	switch raw, url := !strings.HasSuffix(seg, "="), !strings.ContainsAny(seg, "+/"); {
	case !raw && url:
		enc = base64.URLEncoding
	case raw && !url:
		enc = base64.RawStdEncoding
	case !raw && !url:
		enc = base64.StdEncoding
	}
	return enc.DecodeString(seg)
}

// strictRefusal says why this package may refuse compact, which jws.Verify
// accepts with key, or returns "" when it must accept it. It is written
// apart from jws.go, from the rules that file states.
func strictRefusal(compact string, key jwk.Key) string {
	segs := strings.Split(compact, ".")
	if len(segs) != 3 {
		return "not three segments"
	}
	var decoded [3][]byte
	for i, seg := range segs {
		b, err := jwxDecode(seg)
		if err != nil {
			return "a segment jwx cannot decode"
		}
		if base64.RawURLEncoding.EncodeToString(b) != seg {
			return "non-canonical base64 (padding, standard alphabet, line breaks, trailing bits): jwx verifies its re-encoding of the segments, not the token as received"
		}
		decoded[i] = b
	}
	hdr := decoded[0]
	if !json.Valid(hdr) {
		return "header is not exactly one JSON value: jwx ignores what follows the object"
	}
	if t := bytes.TrimSpace(hdr); len(t) != len(hdr) {
		return "white space around the header object: jwx verifies its re-encoding of the object alone"
	}
	dec := json.NewDecoder(bytes.NewReader(hdr))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return "header is not an object"
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, _ := dec.Token()
		name, _ := tok.(string)
		if seen[name] {
			return "a header member appears twice: jwx keeps the last"
		}
		seen[name] = true
		var skip json.RawMessage
		_ = dec.Decode(&skip)
	}
	var members map[string]json.RawMessage
	_ = json.Unmarshal(hdr, &members)
	if _, ok := members["crit"]; ok {
		return "crit: no extension is understood (jwx ignores crit, and reads crit null as absent)"
	}
	if _, ok := members["b64"]; ok {
		return "b64: refused whatever its value (RFC 7797 changes what the signature covers)"
	}
	for _, name := range []string{"alg", "kid", "typ"} {
		if raw, ok := members[name]; ok && raw[0] != '"' {
			return name + " is not a string (jwx reads null as absent)"
		}
	}
	var alg, kid string
	_ = json.Unmarshal(members["alg"], &alg)
	_ = json.Unmarshal(members["kid"], &kid)
	switch alg {
	case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA":
	default:
		return "alg " + alg + " is not an asymmetric signature algorithm (no none, no HMAC)"
	}
	if kid != "" && key.KeyID() != "" && kid != key.KeyID() {
		return "kid names another key: only keys with that kid (or none) are tried"
	}
	if !keyAllows(key, jwa.SignatureAlgorithm(alg)) {
		return "the key's type or curve does not fit alg " + alg
	}
	return ""
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// jwxSign signs input with jwx's signer for alg, apart from this package.
func jwxSign(t testing.TB, alg jwa.SignatureAlgorithm, key any, input string) string {
	s, err := jws.NewSigner(alg)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := s.Sign([]byte(input), key)
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// testKeys are upstream keys of every supported type, each with a kid.
type testKeys struct {
	priv map[string]crypto.Signer
	pub  map[string]jwk.Key
	all  []jwk.Key
}

func newTestKeys(t testing.TB) *testKeys {
	k := &testKeys{priv: map[string]crypto.Signer{}, pub: map[string]jwk.Key{}}
	add := func(kid string, priv crypto.Signer) {
		pub, err := jwk.FromRaw(priv.Public())
		if err != nil {
			t.Fatal(err)
		}
		_ = pub.Set(jwk.KeyIDKey, kid)
		k.priv[kid], k.pub[kid] = priv, pub
		k.all = append(k.all, pub)
	}
	add("rsa", mustRSA(t, 2048))
	for kid, c := range map[string]elliptic.Curve{"p256": elliptic.P256(), "p384": elliptic.P384(), "p521": elliptic.P521()} {
		ec, err := ecdsa.GenerateKey(c, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		add(kid, ec)
	}
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	add("ed", ed)
	return k
}

// diffCase is a token, what jws.Verify and this package make of it, and
// why this package refuses it when jwx does not.
type diffCase struct {
	name   string
	token  string
	jwxKey any // the key jws.Verify is given; nil: the public key of kid
	kid    string
	jwx    bool // jws.Verify accepts it
	accept bool // this package accepts it
	why    string
	// sigOnly: refused for its signature or key alone, so that
	// insecure_skip_verify reads it.
	sigOnly bool
}

func differentialCases(t *testing.T, k *testKeys) []diffCase {
	const payload = `{"sub":"a","exp":4102444800}`
	sign := func(alg jwa.SignatureAlgorithm, kid, hdr, payload string) string {
		return jwxSign(t, alg, k.priv[kid], b64(hdr)+"."+b64(payload))
	}
	rs := func(hdr string) string { return sign(jwa.RS256, "rsa", hdr, payload) }
	good := rs(`{"alg":"RS256","kid":"rsa","typ":"at+jwt"}`)
	seg := strings.Split(good, ".")

	var cases []diffCase
	for _, v := range []struct {
		alg jwa.SignatureAlgorithm
		kid string
	}{
		{jwa.RS256, "rsa"}, {jwa.RS384, "rsa"}, {jwa.RS512, "rsa"},
		{jwa.PS256, "rsa"}, {jwa.PS384, "rsa"}, {jwa.PS512, "rsa"},
		{jwa.ES256, "p256"}, {jwa.ES384, "p384"}, {jwa.ES512, "p521"}, {jwa.EdDSA, "ed"},
	} {
		cases = append(cases, diffCase{name: "valid " + v.alg.String(), kid: v.kid, jwx: true, accept: true,
			token: sign(v.alg, v.kid, `{"alg":"`+v.alg.String()+`","kid":"`+v.kid+`","typ":"at+jwt"}`, payload)})
	}

	other := mustRSA(t, 2048)
	pubDER, _ := x509.MarshalPKIXPublicKey(k.priv["rsa"].Public())
	pemSecret := pemOf("PUBLIC KEY", pubDER)
	jwkSecret, _ := json.Marshal(k.pub["rsa"])
	hmac := func(secret []byte) string {
		return jwxSign(t, jwa.HS256, secret, b64(`{"alg":"HS256","kid":"rsa"}`)+"."+b64(payload))
	}
	p256 := k.priv["p256"].(*ecdsa.PrivateKey)
	digest := sha256.Sum256([]byte(seg[0] + "." + seg[1]))
	der, _ := ecdsa.SignASN1(rand.Reader, p256, digest[:])
	esHeader := b64(`{"alg":"ES256","kid":"p256"}`) + "." + seg[1]
	esDER := esHeader + "." + base64.RawURLEncoding.EncodeToString(der)

	// A header whose encoding has a '-' or '_', and one whose length
	// leaves room for padding.
	var urlOnly, padHeader string
	for i := 0; urlOnly == "" || padHeader == ""; i++ {
		h := `{"alg":"RS256","kid":"rsa","x":"` + strings.Repeat("?", i) + `>"}`
		if e := b64(h); urlOnly == "" && strings.ContainsAny(e, "-_") {
			urlOnly = h
		}
		if e := b64(h); padHeader == "" && len(e)%4 != 0 {
			padHeader = h
		}
	}
	stdTok := strings.NewReplacer("-", "+", "_", "/").Replace(rs(urlOnly))
	padded := func(s string) string { return s + strings.Repeat("=", (4-len(s)%4)%4) }
	padTok := rs(padHeader)
	padSeg := strings.Split(padTok, ".")
	padSignedAsSent := jwxSign(t, jwa.RS256, k.priv["rsa"], padded(padSeg[0])+"."+padSeg[1])

	cases = append(cases, []diffCase{
		{name: "valid RS256 without kid", kid: "rsa", jwx: true, accept: true, token: rs(`{"alg":"RS256"}`)},
		{name: "wrong key", kid: "rsa", sigOnly: true, token: jwxSign(t, jwa.RS256, other, seg[0]+"."+seg[1])},
		{name: "tampered payload", kid: "rsa", sigOnly: true, token: seg[0] + "." + b64(`{"sub":"b","exp":4102444800}`) + "." + seg[2]},
		{name: "tampered signature", kid: "rsa", sigOnly: true, token: seg[0] + "." + seg[1] + "." + flip(seg[2], 10)},
		{name: "tampered header", kid: "rsa", sigOnly: true, token: b64(`{"alg":"RS256","kid":"rsa","typ":"JWT"}`) + "." + seg[1] + "." + seg[2]},
		{name: "empty signature", kid: "rsa", sigOnly: true, token: seg[0] + "." + seg[1] + "."},
		{name: "alg none", kid: "rsa", token: b64(`{"alg":"none"}`) + "." + seg[1] + "."},
		{name: "alg none with kid and a signature", kid: "rsa", token: b64(`{"alg":"none","kid":"rsa"}`) + "." + seg[1] + "." + seg[2]},
		{name: "HS256, public key PEM as the secret", jwxKey: pemSecret, jwx: true, token: hmac(pemSecret),
			why: "HMAC is refused: the upstream key is public"},
		{name: "HS256, public JWK as the secret", jwxKey: jwkSecret, jwx: true, token: hmac(jwkSecret),
			why: "HMAC is refused: the upstream key is public"},
		{name: "ES256 signature in ASN.1 DER", kid: "p256", sigOnly: true, token: esDER},
		{name: "ES256 header, P-384 key", kid: "p384", jwx: true, sigOnly: true, token: sign(jwa.ES256, "p384", `{"alg":"ES256","kid":"p384"}`, payload),
			why: "a P-384 key verifies ES384 only; jwx hashes with the header's SHA-256 and the key's curve"},
		{name: "EdDSA header, RSA signature", kid: "rsa", sigOnly: true, token: b64(`{"alg":"EdDSA","kid":"rsa"}`) + "." + seg[1] + "." + seg[2]},
		{name: "kid names another key", kid: "rsa", jwx: true, sigOnly: true, token: rs(`{"alg":"RS256","kid":"p256"}`),
			why: "only keys with the token's kid (or none) are tried"},
		{name: "unknown kid", kid: "rsa", jwx: true, sigOnly: true, token: rs(`{"alg":"RS256","kid":"nope"}`),
			why: "only keys with the token's kid (or none) are tried"},
		{name: "crit", kid: "rsa", jwx: true, token: rs(`{"alg":"RS256","kid":"rsa","crit":["urn:x"],"urn:x":1}`),
			why: "no critical extension is understood; jws.Verify does not check crit"},
		{name: "crit null", kid: "rsa", jwx: true, token: rs(`{"alg":"RS256","kid":"rsa","crit":null}`),
			why: "a crit member is refused whatever its value; jwx reads null as absent"},
		{name: "b64 false", kid: "rsa", jwx: true,
			token: jwxSign(t, jwa.RS256, k.priv["rsa"], b64(`{"alg":"RS256","kid":"rsa","b64":false,"crit":["b64"]}`)+"."+payload),
			why:   "b64 and crit are refused: RFC 7797 changes what the signature covers"},
		{name: "b64 true", kid: "rsa", jwx: true, token: rs(`{"alg":"RS256","kid":"rsa","b64":true}`),
			why: "a b64 member is refused whatever its value"},
		{name: "duplicate alg", kid: "rsa", jwx: true, token: rs(`{"alg":"HS256","alg":"RS256","kid":"rsa"}`),
			why: "a member twice is refused; jwx keeps the last"},
		{name: "duplicate alg, same value", kid: "rsa", jwx: true, token: rs(`{"alg":"RS256","alg":"RS256","kid":"rsa"}`),
			why: "a member twice is refused; jwx keeps the last"},
		{name: "duplicate kid", kid: "rsa", jwx: true, token: rs(`{"alg":"RS256","kid":"p256","kid":"rsa"}`),
			why: "a member twice is refused; jwx keeps the last"},
		{name: "duplicate alg, once escaped", kid: "rsa", jwx: true, token: rs(`{"alg":"HS256","\u0061lg":"RS256","kid":"rsa"}`),
			why: "a member twice is refused; jwx keeps the last"},
		{name: "duplicate private member", kid: "rsa", jwx: true, token: rs(`{"alg":"RS256","kid":"rsa","x":1,"x":2}`),
			why: "a member twice is refused; jwx keeps the last"},
		{name: "ALG upper-case", kid: "rsa", token: rs(`{"ALG":"RS256","kid":"rsa"}`)},
		{name: "ALG beside alg", kid: "rsa", jwx: true, accept: true, token: rs(`{"alg":"RS256","ALG":"none","kid":"rsa"}`)},
		{name: "escaped member name", kid: "rsa", jwx: true, accept: true, token: rs(`{"\u0061lg":"RS256","kid":"rsa"}`)},
		{name: "escaped alg value", kid: "rsa", jwx: true, accept: true, token: rs(`{"alg":"RS\u0032\u00356","kid":"rsa"}`)},
		{name: "alg not a string", kid: "rsa", token: rs(`{"alg":["RS256"],"kid":"rsa"}`)},
		{name: "alg null", kid: "rsa", token: rs(`{"alg":null,"kid":"rsa"}`)},
		{name: "alg empty", kid: "rsa", token: rs(`{"alg":"","kid":"rsa"}`)},
		{name: "kid not a string", kid: "rsa", token: rs(`{"alg":"RS256","kid":1}`)},
		{name: "kid null", kid: "rsa", jwx: true, token: rs(`{"alg":"RS256","kid":null}`),
			why: "kid must be a string; jwx reads null as absent"},
		{name: "typ not a string", kid: "rsa", token: rs(`{"alg":"RS256","kid":"rsa","typ":{}}`)},
		{name: "header an array", kid: "rsa", token: rs(`["RS256"]`)},
		{name: "header a string", kid: "rsa", token: rs(`"RS256"`)},
		{name: "header null", kid: "rsa", token: rs(`null`)},
		{name: "header empty", kid: "rsa", token: rs(``)},
		{name: "header not JSON", kid: "rsa", token: rs(`{"alg":"RS256",}`)},
		// jwx reads the header's first JSON value and verifies the
		// signature over its re-encoding of that value alone.
		{name: "data after the header", kid: "rsa", token: rs(`{"alg":"RS256","kid":"rsa"} {"alg":"none"}`)},
		{name: "data after the header, signed without it", kid: "rsa", jwx: true,
			token: b64(`{"alg":"RS256","kid":"rsa"} {"alg":"none"}`) + "." + strings.SplitN(rs(`{"alg":"RS256","kid":"rsa"}`), ".", 2)[1],
			why:   "the header must be one JSON object; jwx ignores what follows it, and verifies without it"},
		{name: "header with white space", kid: "rsa", jwx: true, accept: true, token: rs("{ \"alg\" : \"RS256\" ,\n\"kid\":\"rsa\" }")},
		{name: "white space around the header", kid: "rsa", token: rs(` {"alg":"RS256","kid":"rsa"}` + "\n")},
		{name: "white space around the header, signed without it", kid: "rsa", jwx: true,
			token: b64(` {"alg":"RS256","kid":"rsa"}`+"\n") + "." + strings.SplitN(rs(`{"alg":"RS256","kid":"rsa"}`), ".", 2)[1],
			why:   "the header must be one JSON object; jwx ignores white space around it, and verifies without it"},
		{name: "x5t member", kid: "rsa", jwx: true, accept: true, token: rs(`{"alg":"RS256","kid":"rsa","x5t":"abc"}`)},
		{name: "x5t not a string", kid: "rsa", token: rs(`{"alg":"RS256","kid":"rsa","x5t":1}`)},
		{name: "jwk member that is no key", kid: "rsa", token: rs(`{"alg":"RS256","kid":"rsa","jwk":"nope"}`)},
		{name: "number out of range in a private member", kid: "rsa", token: rs(`{"alg":"RS256","kid":"rsa","x":[1e999]}`)},
		{name: "invalid UTF-8 in a private member", kid: "rsa", jwx: true, accept: true, token: rs("{\"alg\":\"RS256\",\"kid\":\"rsa\",\"x\":\"\xff\"}")},
		{name: "payload not JSON (refused by Verify later)", kid: "rsa", jwx: true, accept: true, token: sign(jwa.RS256, "rsa", `{"alg":"RS256"}`, "not json")},
		{name: "empty payload", kid: "rsa", jwx: true, accept: true, token: sign(jwa.RS256, "rsa", `{"alg":"RS256"}`, "")},
		{name: "extra dot at the end", kid: "rsa", token: good + "."},
		{name: "four segments", kid: "rsa", token: seg[0] + "." + seg[1] + ".x." + seg[2]},
		{name: "two segments", kid: "rsa", token: seg[0] + "." + seg[1]},
		{name: "padded header", kid: "rsa", jwx: true, token: padded(padSeg[0]) + "." + padSeg[1] + "." + padSeg[2],
			why: "non-canonical base64: jwx verifies its re-encoding of the segments"},
		{name: "padded header, signed as sent", kid: "rsa", token: padSignedAsSent},
		{name: "padded signature", kid: "rsa", jwx: true, token: seg[0] + "." + seg[1] + "." + padded(seg[2]),
			why: "non-canonical base64: jwx verifies its re-encoding of the segments"},
		{name: "standard base64 alphabet", kid: "rsa", jwx: true, token: stdTok,
			why: "non-canonical base64: jwx verifies its re-encoding of the segments"},
		{name: "non-zero trailing bits in the header", kid: "rsa", jwx: true, token: dirtyTail(t, padSeg[0]) + "." + padSeg[1] + "." + padSeg[2],
			why: "non-canonical base64: jwx verifies its re-encoding of the segments"},
		{name: "non-zero trailing bits in the signature", kid: "rsa", jwx: true, token: seg[0] + "." + seg[1] + "." + dirtyTail(t, seg[2]),
			why: "non-canonical base64: jwx verifies its re-encoding of the segments"},
		{name: "line break in the signature", kid: "rsa", jwx: true, token: seg[0] + "." + seg[1] + "." + seg[2][:40] + "\r\n" + seg[2][40:],
			why: "non-canonical base64: line breaks are skipped by encoding/base64, and by jwx"},
		{name: "trailing newline", kid: "rsa", jwx: true, token: good + "\n",
			why: "non-canonical base64: line breaks are skipped by encoding/base64, and by jwx"},
		{name: "leading space", kid: "rsa", token: " " + good},
		{name: "space in a segment", kid: "rsa", token: seg[0] + "." + seg[1][:5] + " " + seg[1][5:] + "." + seg[2]},
		{name: "JSON serialization", kid: "rsa", token: jsonSerialized(t, jwkOf(t, k.priv["rsa"], "rsa"))},
	}...)
	return cases
}

func jwkOf(t testing.TB, raw any, kid string) jwk.Key {
	key, err := jwk.FromRaw(raw)
	if err != nil {
		t.Fatal(err)
	}
	_ = key.Set(jwk.KeyIDKey, kid)
	return key
}

// flip changes the character at i of a base64url segment.
func flip(s string, i int) string {
	c := byte('A')
	if s[i] == 'A' {
		c = 'B'
	}
	return s[:i] + string(c) + s[i+1:]
}

// dirtyTail returns seg with its last character changed so that its unused
// bits are not zero: non-strict decoding reads the same bytes.
func dirtyTail(t *testing.T, seg string) string {
	want, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil || len(seg)%4 == 0 {
		t.Fatalf("segment %q has no unused bits", seg)
	}
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	for _, c := range alphabet {
		s := seg[:len(seg)-1] + string(c)
		if got, err := base64.RawURLEncoding.DecodeString(s); s != seg && err == nil && bytes.Equal(got, want) {
			return s
		}
	}
	t.Fatalf("no other encoding of %q", seg)
	return ""
}

// TestVerifyAgainstJWX holds the hand-written verification against
// jws.Verify, with keys prepared by NewStaticKeys and with keys converted on
// each verification (a StaticKeys literal), and checks that
// insecure_skip_verify refuses what the header rules refuse.
func TestVerifyAgainstJWX(t *testing.T) {
	k := newTestKeys(t)
	prepared, err := NewStaticKeys(k.all)
	if err != nil {
		t.Fatal(err)
	}
	verifiers := map[string]*Verifier{"prepared keys": {Keys: prepared}, "keys as loaded": {Keys: StaticKeys(k.all)}}
	insecure := &Verifier{}
	ctx := context.Background()
	for _, tc := range differentialCases(t, k) {
		jwxKey := tc.jwxKey
		if jwxKey == nil {
			jwxKey = k.pub[tc.kid]
		}
		jerr := jwxVerify(tc.token, jwxKey)
		if (jerr == nil) != tc.jwx {
			t.Errorf("%s: jws.Verify: %v, want accepted = %v", tc.name, jerr, tc.jwx)
		}
		for vname, v := range verifiers {
			tok, _, err := v.verifyJWS(ctx, tc.token)
			if (err == nil) != tc.accept {
				t.Errorf("%s (%s): %v, want accepted = %v", tc.name, vname, err, tc.accept)
				continue
			}
			if err == nil {
				if jerr != nil {
					t.Errorf("%s (%s): accepted what jws.Verify refuses: %v", tc.name, vname, jerr)
				} else if alg, kid, typ := jwxHeader(t, tc.token); tok.Alg != alg || tok.KeyID != kid || tok.Type != typ {
					t.Errorf("%s: header %q %q %q, jwx reads %q %q %q", tc.name, tok.Alg, tok.KeyID, tok.Type, alg, kid, typ)
				}
			}
		}
		if !tc.accept && jerr == nil {
			if tc.why == "" {
				t.Errorf("%s: refused what jws.Verify accepts, and the table does not say why", tc.name)
			}
			if key, ok := jwxKey.(jwk.Key); ok && strictRefusal(tc.token, key) == "" {
				t.Errorf("%s: refused what jws.Verify accepts, for no reason strictRefusal knows", tc.name)
			}
		}
		if tc.accept != (strictRefusal(tc.token, k.pub[tc.kid]) == "") && tc.jwx && tc.jwxKey == nil {
			t.Errorf("%s: strictRefusal says %q", tc.name, strictRefusal(tc.token, k.pub[tc.kid]))
		}
		_, _, err := insecure.verifyJWS(ctx, tc.token)
		if want := tc.accept || tc.sigOnly; (err == nil) != want {
			t.Errorf("%s: insecure_skip_verify: %v, want accepted = %v", tc.name, err, want)
		}
	}
}

// TestVerifyErrors pins the messages an operator reads for each refusal.
func TestVerifyErrors(t *testing.T) {
	k := newTestKeys(t)
	keys, _ := NewStaticKeys(k.all)
	v := &Verifier{Keys: keys}
	rs := func(hdr string) string {
		return jwxSign(t, jwa.RS256, k.priv["rsa"], b64(hdr)+"."+b64(`{"exp":4102444800}`))
	}
	for tok, want := range map[string]string{
		"a.b":                                    errNotJWT.Error(),
		"!.b.c":                                  errNotJWT.Error() + ": decoding the protected header",
		rs(`{"alg":"RS256","alg":"RS256"}`):      `the protected header has two "alg" members`,
		rs(`{"alg":"HS256"}`):                    `token algorithm "HS256" is refused`,
		rs(`{"alg":"RS256","crit":["x"]}`):       `token header lists critical extensions ["x"] that are not understood`,
		rs(`{"alg":"RS256","b64":true}`):         "token header has a b64 member",
		rs(`{"alg":"RS256","kid":"nope"}`):       `no upstream key fits the token (kid "nope", alg RS256)`,
		rs(`{"alg":"ES256","kid":"p256"}`):       `token signature does not verify against the upstream keys (kid "p256", alg ES256)`,
		rs(`{"alg":"RS256","kid":"rsa"}`) + "\n": "line break",
	} {
		_, err := v.Verify(context.Background(), tok)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%.40q: %v, want %q", tok, err, want)
		}
	}
	_, err := v.Verify(context.Background(), "!.b.c")
	if !errors.Is(err, errNotJWT) {
		t.Errorf("undecodable header: %v is not errNotJWT", err)
	}
}

// TestPreparedKey checks that a prepared key is still the jwk.Key it was
// made from: as JSON, to jwx, and to keyAllows.
func TestPreparedKey(t *testing.T) {
	k := newTestKeys(t)
	keys, err := NewStaticKeys(k.all)
	if err != nil {
		t.Fatal(err)
	}
	for i, key := range keys {
		if _, ok := key.(*preparedKey); !ok {
			t.Fatalf("NewStaticKeys returned a %T", key)
		}
		got, _ := json.Marshal(key)
		want, _ := json.Marshal(k.all[i])
		if !bytes.Equal(got, want) {
			t.Errorf("prepared key marshals as %s, want %s", got, want)
		}
		for _, alg := range []jwa.SignatureAlgorithm{jwa.RS256, jwa.PS512, jwa.ES256, jwa.ES384, jwa.ES512, jwa.EdDSA, jwa.HS256} {
			if keyAllows(key, alg) != keyAllows(k.all[i], alg) {
				t.Errorf("%s: keyAllows(%s) differs once prepared", key.KeyID(), alg)
			}
		}
	}
	srv, _ := jwksServer(t, func() []jwk.Key { return k.all }, nil)
	remote := &RemoteJWKS{URL: srv.URL, TTL: time.Hour}
	fetched, err := remote.LookupKeys(context.Background(), "")
	if err != nil || len(fetched) != len(k.all) {
		t.Fatalf("RemoteJWKS: %d keys, %v", len(fetched), err)
	}
	for _, key := range fetched {
		if _, ok := key.(*preparedKey); !ok {
			t.Errorf("RemoteJWKS caches a %T", key)
		}
	}
	p256 := matchKID(keys, "p256")[0]
	tok := jwxSign(t, jwa.ES256, k.priv["p256"], b64(`{"alg":"ES256"}`)+"."+b64(`{}`))
	if _, err := jws.Verify([]byte(tok), jws.WithKey(jwa.ES256, p256)); err != nil {
		t.Errorf("jwx cannot verify with a prepared key: %v", err)
	}
}

// TestParseClaimsMatchesUnmarshal holds parseClaims and jsonFloat against
// encoding/json, which they replace.
func TestParseClaimsMatchesUnmarshal(t *testing.T) {
	for _, payload := range []string{
		`{"sub":"a","exp":4102444800}`, `{}`, ` { "a" : [1, {"b":"}"}] , "c":null } `, `{"a":1,"a":2}`,
		`{"\u0061":"x","a\"b":"y","\ud800":1}`, "{\"\xff\":\"\xfe\"}", `{"a":"\\"}`, `{"a":{"b":{"c":[]}}}`,
		`null`, `[]`, `"x"`, `1`, `{"a":1} x`, `{"a":1}{}`, `{"a":}`, ``, ` `, `{"a":1,}`, "{\"a\":1}\n",
	} {
		checkClaims(t, []byte(payload))
	}
	for _, raw := range []string{
		`4102444800`, `-1`, `0`, `1.5`, `1e19`, `-1e19`, `1e999`, `1e-999`, `1E+2`, ` 1 `, `null`, `"1"`, `01`, `1.`,
		`.5`, `-`, `+1`, `0x10`, `1_0`, `Infinity`, `NaN`, `true`, `[1]`, ``, `1e`, `9007199254740993`,
	} {
		checkFloat(t, []byte(raw))
	}
}

func checkClaims(t testing.TB, payload []byte) {
	t.Helper()
	var want map[string]json.RawMessage
	werr := json.Unmarshal(payload, &want)
	got, ok := parseClaims(payload)
	if wantOK := werr == nil && want != nil; ok != wantOK || !reflect.DeepEqual(got, want) && ok {
		t.Fatalf("parseClaims(%q) = %q, %v; json.Unmarshal: %q, %v", payload, got, ok, want, werr)
	}
}

func checkFloat(t testing.TB, raw []byte) {
	t.Helper()
	var want float64
	werr := json.Unmarshal(raw, &want)
	got, err := jsonFloat(raw)
	if (err == nil) != (werr == nil) || err == nil && got != want {
		t.Fatalf("jsonFloat(%q) = %v, %v; json.Unmarshal: %v, %v", raw, got, err, want, werr)
	}
}

// FuzzVerifySigned signs any header and payload with an Ed25519 upstream
// key, so that the signature is valid and what is tested is the header
// parse: this package must accept what jws.Verify accepts unless
// strictRefusal says why not, and never accept what it refuses. It also holds
// the claims parse against encoding/json.
func FuzzVerifySigned(f *testing.F) {
	for _, h := range []string{
		`{"alg":"EdDSA","kid":"ed","typ":"at+jwt"}`, `{"alg":"EdDSA"}`, `{"alg":"EdDSA","alg":"EdDSA"}`, `{"\u0061lg":"EdDSA"}`,
		`{"ALG":"EdDSA"}`, `{"alg":"EdDSA","crit":null}`, `{"alg":"EdDSA","b64":true}`, `{"alg":"EdDSA","kid":null}`,
		`{"alg":"EdDSA"} x`, `{"alg":"EdDSA","x5c":["AAAA"]}`, `{"alg":"EdDSA","jwk":{"kty":"OKP"}}`, `{"alg":"EdDSA","x":{"y":[1,"}"]}}`,
		`{"alg":"EdDSA","kid":"other"}`, `{"alg":"none"}`, `[]`, `{"alg":"EdDSA","x":1e999}`,
	} {
		f.Add(h, `{"sub":"a","exp":4102444800}`)
	}
	f.Add(`{"alg":"EdDSA"}`, `{"a":1,"a":"\u00e9","b":[null,{}]} `)
	priv := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	pub := jwkOf(f, priv.Public(), "ed")
	keys, err := NewStaticKeys([]jwk.Key{pub})
	if err != nil {
		f.Fatal(err)
	}
	v := &Verifier{Keys: keys}
	f.Fuzz(func(t *testing.T, header, payload string) {
		checkClaims(t, []byte(payload))
		if claims, ok := parseClaims([]byte(payload)); ok {
			for _, raw := range claims {
				checkFloat(t, raw)
			}
		}
		input := b64(header) + "." + b64(payload)
		compact := input + "." + base64.RawURLEncoding.EncodeToString(ed25519.Sign(priv, []byte(input)))
		agreeWithJWX(t, v, compact, pub)
	})
}

// agreeWithJWX checks v's verification of compact against jws.Verify with
// key.
func agreeWithJWX(t *testing.T, v *Verifier, compact string, key jwk.Key) {
	t.Helper()
	tok, _, err := v.verifyJWS(context.Background(), compact)
	jerr := jwxVerify(compact, key)
	switch {
	case err == nil && jerr != nil:
		t.Fatalf("accepted %q, which jws.Verify refuses: %v", compact, jerr)
	case err == nil:
		if alg, kid, typ := jwxHeader(t, compact); tok.Alg != alg || tok.KeyID != kid || tok.Type != typ {
			t.Fatalf("%q: header %q %q %q, jwx reads %q %q %q", compact, tok.Alg, tok.KeyID, tok.Type, alg, kid, typ)
		}
	case jerr == nil && strictRefusal(compact, key) == "":
		t.Fatalf("refused %q, which jws.Verify accepts: %v", compact, err)
	}
}

// TestHeaderManyMembers reads a header of 16,000 members the verifier does
// not use, as an upstream could send, and still finds a name repeated far
// from its first use. (The names are kept in a map: a pairwise check took
// seconds for such a header. How long it takes is not asserted here; the
// machine is shared.)
func TestHeaderManyMembers(t *testing.T) {
	v := &Verifier{}
	header := func(n int, extra string) string {
		var b strings.Builder
		b.WriteString(`{"alg":"RS256"`)
		for i := 0; i < n; i++ {
			fmt.Fprintf(&b, `,"m%x":0`, i)
		}
		b.WriteString(extra + "}")
		return b64(b.String()) + "." + b64(`{"exp":4102444800}`) + ".AAAA"
	}
	if _, err := v.Verify(context.Background(), header(16000, "")); err != nil {
		t.Fatalf("16,000 distinct members: %v", err)
	}
	for _, dup := range []string{`,"m64":1`, `,"m3e7f":1`, `,"m\u0036\u0034":1`} {
		if _, err := v.Verify(context.Background(), header(16000, dup)); err == nil {
			t.Errorf("a header repeating a member (%s) after 16,000 others was accepted", dup)
		}
	}
}

// keyFunc is a KeyProvider that is neither StaticKeys nor RemoteJWKS, as a
// caller of this package may write.
type keyFunc func(kid string) []jwk.Key

func (f keyFunc) LookupKeys(_ context.Context, kid string) ([]jwk.Key, error) { return f(kid), nil }

// TestVerifyRefusesEncryptionKeys checks that a key published for
// encryption ("use":"enc") verifies no token, however the verifier got it:
// NewStaticKeys and RemoteJWKS drop such keys, but a StaticKeys literal or
// another KeyProvider hands them to Verify as they are.
func TestVerifyRefusesEncryptionKeys(t *testing.T) {
	up := newUpstream(t, "k1")
	enc, _ := up.pub.Clone()
	_ = enc.Set(jwk.KeyUsageKey, jwk.ForEncryption)
	tok := up.sign(t, jwa.RS256, up.key, "k1", map[string]any{"exp": future()})
	for name, keys := range map[string]KeyProvider{
		"StaticKeys literal": StaticKeys{enc},
		"KeyProvider":        keyFunc(func(string) []jwk.Key { return []jwk.Key{enc} }),
	} {
		if _, err := (&Verifier{Keys: keys}).Verify(context.Background(), tok); err == nil {
			t.Errorf("%s: a key with use enc verified a token", name)
		}
	}
	sig, _ := up.pub.Clone()
	_ = sig.Set(jwk.KeyUsageKey, jwk.ForSignature)
	if _, err := (&Verifier{Keys: StaticKeys{sig}}).Verify(context.Background(), tok); err != nil {
		t.Errorf("a key with use sig: %v", err)
	}
}
