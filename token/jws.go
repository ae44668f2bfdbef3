package token

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strings"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
)

// Upstream tokens are parsed and verified here by hand rather than with
// jws.Verify, which for every token decodes the header through a JSON token
// stream, converts the jwk.Key to a crypto key (allocating its big.Ints),
// re-encodes header and payload to rebuild the signing input, and builds a
// verifier object: together about half again the cost of the RSA
// verification itself. The tests check this code against jws.Verify.
//
// Where it differs from jwx it is stricter, never laxer:
//   - every segment must be canonical unpadded base64url (jwx also takes
//     standard base64, padding, line breaks and non-zero trailing bits, and
//     then verifies the signature over its own re-encoding);
//   - the protected header must be one JSON object and nothing else, not
//     even white space (jwx ignores what surrounds the object, and verifies
//     the signature over its re-encoding of the object alone), with no
//     member twice (jwx keeps the last);
//   - alg, kid and typ must be strings (jwx reads null as absent);
//   - a crit member is refused whatever its value (jwx reads null as
//     absent).

// b64url decodes JWS segments: unpadded base64url whose unused trailing
// bits are zero, so that each token has exactly one encoding. Line breaks,
// which encoding/base64 skips even in strict mode, are refused by
// parseCompact.
var b64url = base64.RawURLEncoding.Strict()

// compactJWS is a compact JWS whose header has been read and whose segments
// have been decoded, not yet verified.
type compactJWS struct {
	input     []byte // the signing input: header and payload segments as received
	payload   []byte
	signature []byte
	alg       jwa.SignatureAlgorithm
	kid, typ  string
	crit      []string
	hasCrit   bool
	hasB64    bool
}

// parseCompact splits compact, which holds exactly two dots, and decodes
// its segments and its header, in the order jws.Parse does so that a token
// that is wrong in several ways is refused for the same reason.
func parseCompact(compact string) (*compactJWS, error) {
	if strings.IndexByte(compact, '\n') >= 0 || strings.IndexByte(compact, '\r') >= 0 {
		return nil, errors.New("line break in a segment")
	}
	d1 := strings.IndexByte(compact, '.')
	d2 := d1 + 1 + strings.IndexByte(compact[d1+1:], '.')
	hLen := b64url.DecodedLen(d1)
	pLen := b64url.DecodedLen(d2 - d1 - 1)
	sLen := b64url.DecodedLen(len(compact) - d2 - 1)
	// One allocation holds the token and its decoded segments.
	buf := make([]byte, len(compact)+hLen+pLen+sLen)
	copy(buf, compact)
	src, dst := buf[:len(compact)], buf[len(compact):]
	decode := func(seg []byte, n int) ([]byte, error) {
		out := dst[:n:n]
		dst = dst[n:]
		m, err := b64url.Decode(out, seg)
		return out[:m:m], err
	}
	hdr, err := decode(src[:d1], hLen)
	if err != nil {
		return nil, fmt.Errorf("decoding the protected header: %w", err)
	}
	c, err := parseHeader(hdr)
	if err != nil {
		return nil, err
	}
	if c.payload, err = decode(src[d1+1:d2], pLen); err != nil {
		return nil, fmt.Errorf("decoding the payload: %w", err)
	}
	if c.signature, err = decode(src[d2+1:], sLen); err != nil {
		return nil, fmt.Errorf("decoding the signature: %w", err)
	}
	c.input = src[:d2:d2]
	return c, nil
}

// Header members, as bits of a set.
const (
	memberAlg = 1 << iota
	memberKid
	memberTyp
	memberCrit
	memberB64
)

// parseHeader reads the protected header: alg, kid and typ, and whether it
// has crit or b64. Member names are exact (case-sensitive) after JSON
// unescaping, as in jwx. Members it does not read, which jwx would check
// (x5c must be certificates, jwk a key, cty a string, ...), are checked by
// jwx's own header parser: those headers are rare, and must not pass here
// when jwx would refuse them.
func parseHeader(hdr []byte) (*compactJWS, error) {
	if !json.Valid(hdr) {
		return nil, errors.New("the protected header is not valid JSON")
	}
	// Nor white space around the object: jwx would verify the signature
	// over the object alone, re-encoded.
	if hdr[0] != '{' || hdr[len(hdr)-1] != '}' {
		return nil, errors.New("the protected header is not a JSON object, or has white space around it")
	}
	members, _ := membersOf(hdr)
	c := &compactJWS{}
	var (
		seen   int
		others map[string]struct{} // made at the first member not read here
	)
	for {
		quoted, escaped, value, ok := members.next()
		if !ok {
			break
		}
		key := quoted[1 : len(quoted)-1]
		if escaped {
			key = []byte(jsonString(quoted, true))
		}
		bit := 0
		switch string(key) { // allocates nothing
		case "alg":
			bit = memberAlg
		case "kid":
			bit = memberKid
		case "typ":
			bit = memberTyp
		case "crit":
			bit = memberCrit
		case "b64":
			bit = memberB64
		}
		if bit == 0 {
			name := jsonString(quoted, escaped)
			if _, dup := others[name]; dup {
				return nil, fmt.Errorf("the protected header has two %q members", name)
			}
			if others == nil {
				others = make(map[string]struct{})
			}
			others[name] = struct{}{}
			continue
		}
		if seen&bit != 0 {
			return nil, fmt.Errorf("the protected header has two %q members", jsonString(quoted, escaped))
		}
		seen |= bit
		switch bit {
		case memberAlg, memberKid, memberTyp:
			if value[0] != '"' {
				return nil, fmt.Errorf("the protected header member %s is not a string", quoted)
			}
			_, vEscaped := skipString(value, 0)
			s := jsonString(value, vEscaped)
			switch bit {
			case memberAlg:
				c.alg = jwa.SignatureAlgorithm(s)
			case memberKid:
				c.kid = s
			case memberTyp:
				c.typ = s
			}
		case memberCrit:
			c.hasCrit = true
			if err := json.Unmarshal(value, &c.crit); err != nil {
				return nil, errors.New("the protected header member crit is not a list of strings")
			}
		case memberB64:
			c.hasB64 = true
		}
	}
	if len(others) > 0 {
		if err := json.Unmarshal(hdr, jws.NewHeaders()); err != nil {
			return nil, fmt.Errorf("the protected header: %w", err)
		}
	}
	return c, nil
}

// checkHeader applies the header rules Verify depends on, whether or not
// it verifies the signature: only asymmetric algorithms, no critical
// extensions, no b64. It returns the token's header facts.
func (c *compactJWS) checkHeader() (*Token, error) {
	if !asymmetricAlgorithms[c.alg] {
		return nil, fmt.Errorf("token algorithm %q is refused: only RSA, ECDSA and EdDSA signatures are accepted", c.alg)
	}
	if c.hasCrit {
		// RFC 7515 §4.1.11: extensions listed in crit must be understood,
		// and this verifier understands none (b64=false would even change
		// what the signature covers).
		return nil, fmt.Errorf("token header lists critical extensions %q that are not understood", c.crit)
	}
	if c.hasB64 {
		// jwx honours b64 even outside crit (RFC 7797 §6 requires it
		// there), and b64=false makes the signature cover the raw payload:
		// refused so that no reading of the token depends on it.
		return nil, errors.New("token header has a b64 member")
	}
	return &Token{Alg: c.alg.String(), KeyID: c.kid, Type: c.typ}, nil
}

// preparedKey is an upstream public key with what verification needs from
// it worked out once, when the key is loaded (NewStaticKeys) or fetched
// (RemoteJWKS): the key as the crypto packages take it, and the algorithms
// its type allows. It is still a jwk.Key, so that KeyProvider keeps its
// type; keys that are not prepared are converted on each verification.
type preparedKey struct {
	jwk.Key
	pub  crypto.PublicKey // *rsa.PublicKey, *ecdsa.PublicKey or ed25519.PublicKey
	algs []jwa.SignatureAlgorithm
}

// MarshalJSON writes the key as its jwk.Key does; without it encoding/json
// would see the embedded field.
func (p *preparedKey) MarshalJSON() ([]byte, error) { return json.Marshal(p.Key) }

// prepareKey converts key once for verification. It fails for keys that
// cannot verify a signature (symmetric, unsupported type or size).
func prepareKey(key jwk.Key) (*preparedKey, error) {
	if p, ok := key.(*preparedKey); ok {
		return p, nil
	}
	var raw any
	if err := key.Raw(&raw); err != nil {
		return nil, fmt.Errorf("reading key: %w", err)
	}
	algs, err := rawAlgorithms(raw)
	if err != nil {
		return nil, err
	}
	var pub crypto.PublicKey
	switch k := raw.(type) {
	case *rsa.PrivateKey:
		pub = &k.PublicKey
	case *ecdsa.PrivateKey:
		pub = &k.PublicKey
	case ed25519.PrivateKey:
		pub = k.Public()
	default:
		pub = raw
	}
	return &preparedKey{Key: key, pub: pub, algs: algs}, nil
}

// prepareKeys prepares keys, which verificationKeys has checked.
func prepareKeys(keys []jwk.Key) []jwk.Key {
	out := make([]jwk.Key, 0, len(keys))
	for _, k := range keys {
		if p, err := prepareKey(k); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// digestFor hashes the JWS signing input with the hash alg names (RFC 7518
// §3.1), or returns a nil digest when alg is not an RSA or ECDSA algorithm.
// Signer and verifier share it.
func digestFor(alg jwa.SignatureAlgorithm, input []byte) (crypto.Hash, []byte) {
	switch alg {
	case jwa.RS256, jwa.PS256, jwa.ES256:
		d := sha256.Sum256(input)
		return crypto.SHA256, d[:]
	case jwa.RS384, jwa.PS384, jwa.ES384:
		d := sha512.Sum384(input)
		return crypto.SHA384, d[:]
	case jwa.RS512, jwa.PS512, jwa.ES512:
		d := sha512.Sum512(input)
		return crypto.SHA512, d[:]
	}
	return 0, nil
}

// verifySignature reports whether sig is a valid alg signature of input by
// pub, as RFC 7518 §3 defines it and as jwx checks it (RSASSA-PSS with the
// salt length read from the signature).
func verifySignature(alg jwa.SignatureAlgorithm, pub crypto.PublicKey, input, sig []byte) bool {
	if alg == jwa.EdDSA {
		k, ok := pub.(ed25519.PublicKey)
		return ok && len(k) == ed25519.PublicKeySize && ed25519.Verify(k, input, sig)
	}
	h, digest := digestFor(alg, input)
	if digest == nil {
		return false
	}
	switch k := pub.(type) {
	case *rsa.PublicKey:
		switch alg {
		case jwa.RS256, jwa.RS384, jwa.RS512:
			return rsa.VerifyPKCS1v15(k, h, digest, sig) == nil
		case jwa.PS256, jwa.PS384, jwa.PS512:
			return rsa.VerifyPSS(k, h, digest, sig, nil) == nil
		}
	case *ecdsa.PublicKey:
		switch alg {
		case jwa.ES256, jwa.ES384, jwa.ES512:
			// R and S, each left-padded to the curve's size (RFC 7518 §3.4).
			size := (k.Curve.Params().BitSize + 7) / 8
			if len(sig) != 2*size {
				return false
			}
			r := new(big.Int).SetBytes(sig[:size])
			s := new(big.Int).SetBytes(sig[size:])
			return ecdsa.Verify(k, digest, r, s)
		}
	}
	return false
}
